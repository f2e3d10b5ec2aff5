/* The enriched affinity listing (admin-api.md "Enriched listing").
 *
 * Order of work, chosen so that catalog and crypto costs follow the page, not
 * the store: select raw records (rules 1-2 need only the keyword's own
 * look-ups), filter (rule 3 needs api_keys + users for every record), sort and
 * paginate on raw fields, then enrich only the page. Each table is looked up
 * at most once for the enrichment, with every distinct value in one batch, and
 * each distinct ciphertext is decrypted once. Everything a listing hands out
 * lives in one arena freed by acache__listing_free().
 *
 * The record fields (affinity_key, api_format, model_name from the storage
 * key; provider_id, endpoint_id, key_id) are carried as bytes with a length:
 * a key from Redis may hold a NUL byte, and must neither be shown nor matched
 * nor enriched under its truncated prefix. Such a value is never sent to the
 * catalog (whose look-ups take C strings) and so is never enriched. */
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <unicase.h>
#include <unistr.h>

#include "../core/core.h"
#include "../crypto/crypto.h"
#include "../util/json.h"
#include "listing_priv.h"

#define LIMIT_MAX 1000

/* ---- arena ---- */

typedef struct blk {
    struct blk *next;
    size_t used, cap;
    char *mem;
} blk;

typedef struct {
    blk *head;
} arena;

#define ARENA_ALIGN (alignof(max_align_t))
#define ARENA_BLOCK 16384

static void *arena_alloc(arena *a, size_t n)
{
    n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (a->head) /* packed strings may have left it unaligned */
        a->head->used = (a->head->used + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (!a->head || a->head->used > a->head->cap || a->head->cap - a->head->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        blk *b = acache__malloc(sizeof *b);
        if (!b)
            return NULL;
        b->mem = acache__malloc(cap);
        if (!b->mem) {
            free(b);
            return NULL;
        }
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = a->head->mem + a->head->used;
    a->head->used += n;
    return p;
}

/* Unaligned bytes (strings): packed after the block's last allocation. */
static char *arena_alloc_packed(arena *a, size_t n)
{
    if (a->head && a->head->cap - a->head->used >= n) {
        char *p = a->head->mem + a->head->used;
        a->head->used += n;
        return p;
    }
    return arena_alloc(a, n);
}

static void arena_free(arena *a)
{
    blk *b = a->head;
    while (b) {
        blk *next = b->next;
        free(b->mem);
        free(b);
        b = next;
    }
    a->head = NULL;
}

/* Copy `s` (NULL stays NULL) into the arena. */
static int adup(arena *a, const char *s, const char **dst)
{
    if (!s) {
        *dst = NULL;
        return ACACHE_OK;
    }
    size_t len = strlen(s);
    char *p = arena_alloc_packed(a, len + 1);
    if (!p)
        return acache__oom();
    memcpy(p, s, len + 1);
    *dst = p;
    return ACACHE_OK;
}

/* Bytes with a length; p == NULL: absent. Arena copies are NUL-terminated. */
typedef struct {
    const char *p;
    size_t n;
} bytes;

/* The value as a catalog id: NULL when absent or holding a NUL byte (it can
 * equal no C-string id, and must not match its truncated prefix). */
static const char *as_id(bytes b)
{
    return b.p && !memchr(b.p, '\0', b.n) ? b.p : NULL;
}

static json_t *bytes_json(bytes b)
{
    return acache__json_strn(b.p, b.n);
}

/* ---- catalog rows: each struct starts with its id, so tables sort by it ---- */

typedef struct {
    const char *id, *user_id, *name, *enc;
    int standalone;
    int match; /* rule 3: -1 not yet known, else whether its own fields match */
} key_row;
typedef struct {
    const char *id, *username, *email;
} user_row;
typedef struct {
    const char *id, *display_name;
} prov_row;
typedef struct {
    const char *id, *api_format, *base_url;
} ep_row;
typedef struct {
    const char *id, *name, *enc;
    double rate_multiplier;
} pkey_row;
typedef struct {
    const char *id, *name, *display_name;
} gm_row;

enum { T_KEYS, T_USERS, T_PROVS, T_EPS, T_PKEYS, T_GMS, T_COUNT };

typedef struct {
    void **v;
    size_t n, cap;
    int fetched;
} table;

static const char *row_id(const void *row)
{
    return *(const char *const *)row;
}

static int push(void ***v, size_t *n, size_t *cap, void *p)
{
    if (acache__grow(v, cap, *n, sizeof **v))
        return ACACHE_ENOMEM;
    (*v)[(*n)++] = p;
    return ACACHE_OK;
}

static int row_cmp(const void *a, const void *b)
{
    return strcmp(row_id(*(void *const *)a), row_id(*(void *const *)b));
}

static const void *table_find(const table *t, const char *id)
{
    if (!id)
        return NULL;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(id, row_id(t->v[mid]));
        if (r == 0)
            return t->v[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ---- the listing ---- */

struct acache__listing_item {
    bytes affinity_key, api_format, raw_model, provider_id, endpoint_id, key_id;
    double created_at, expire_at;
    int64_t request_count;

    const char *user_api_key_name, *user_api_key_prefix, *user_id, *username, *email;
    const char *provider_name, *endpoint_api_format, *endpoint_url;
    const char *key_name, *key_prefix, *model_display_name;
    bytes model_name; /* global_models.name, else raw_model */
    int is_standalone;
    double rate_multiplier;

    const char *key_enc, *pkey_enc; /* ciphertexts, for the mask pass */
    key_row *krow;                  /* the api_keys row, for rule 3's memo */
};

/* An item in the sort: expire_at and the affinity key's first 8 bytes
 * inline, so most comparisons (ties on expire_at are common: TTLs repeat)
 * neither move whole items nor follow a pointer. */
typedef struct {
    double expire_at;
    uint64_t key8; /* big-endian, zero-padded: orders like bytes_cmp */
    acache__listing_item *it;
} sort_ref;

typedef struct lsnap lsnap;

struct acache__listing {
    arena ar;
    acache__listing_item *items; /* every selected item, sorted; a page served
                                    from a snapshot holds only its page */
    size_t n, cap;
    sort_ref *ord;       /* a snapshot's sorted order of items[0 .. n) (they stay
                            where the walk put them); NULL: items are sorted */
    lsnap *snap;         /* the snapshot the page's raw fields borrow from, or NULL */
    size_t start, count; /* the page: items[start .. start + count) */
    int64_t limit, offset;
    const char *matched_user_id;
    unsigned long decrypts;
};

typedef struct {
    acache *c;
    acache__listing *l;
    table t[T_COUNT];
    const char **sel; /* sorted affinity keys of rules 1-2; NULL = all */
    size_t nsel;
    int select_none;
} ctx;

static void ctx_free(ctx *x)
{
    for (int i = 0; i < T_COUNT; i++)
        free(x->t[i].v);
    free(x->sel);
}

/* ---- catalog look-ups ---- */

typedef struct {
    acache__listing *l;
    table *t;
} sink;

static int sink_push(sink *s, void *row)
{
    if (!row)
        return acache__oom();
    return push(&s->t->v, &s->t->n, &s->t->cap, row);
}

#define ADUP(field, src)                                                                 \
    do {                                                                                 \
        if (adup(&s->l->ar, (src), &(field)) < 0)                                        \
            return ACACHE_ENOMEM;                                                        \
    } while (0)

static int key_cb(const acache_cat_api_key *r, void *payload)
{
    sink *s = payload;
    key_row *k = arena_alloc(&s->l->ar, sizeof *k);
    if (!k)
        return acache__oom();
    ADUP(k->id, r->id);
    ADUP(k->user_id, r->user_id);
    ADUP(k->name, r->name);
    ADUP(k->enc, r->key_encrypted);
    k->standalone = r->is_standalone != 0;
    k->match = -1;
    return k->id ? sink_push(s, k) : 0;
}

static int user_cb(const acache_cat_user *r, void *payload)
{
    sink *s = payload;
    user_row *u = arena_alloc(&s->l->ar, sizeof *u);
    if (!u)
        return acache__oom();
    ADUP(u->id, r->id);
    ADUP(u->username, r->username);
    ADUP(u->email, r->email);
    return u->id ? sink_push(s, u) : 0;
}

static int prov_cb(const acache_cat_provider *r, void *payload)
{
    sink *s = payload;
    prov_row *p = arena_alloc(&s->l->ar, sizeof *p);
    if (!p)
        return acache__oom();
    ADUP(p->id, r->id);
    ADUP(p->display_name, r->display_name);
    return p->id ? sink_push(s, p) : 0;
}

static int ep_cb(const acache_cat_endpoint *r, void *payload)
{
    sink *s = payload;
    ep_row *e = arena_alloc(&s->l->ar, sizeof *e);
    if (!e)
        return acache__oom();
    ADUP(e->id, r->id);
    ADUP(e->api_format, r->api_format);
    ADUP(e->base_url, r->base_url);
    return e->id ? sink_push(s, e) : 0;
}

static int pkey_cb(const acache_cat_provider_key *r, void *payload)
{
    sink *s = payload;
    pkey_row *k = arena_alloc(&s->l->ar, sizeof *k);
    if (!k)
        return acache__oom();
    ADUP(k->id, r->id);
    ADUP(k->name, r->name);
    ADUP(k->enc, r->api_key);
    k->rate_multiplier = r->rate_multiplier;
    return k->id ? sink_push(s, k) : 0;
}

static int gm_cb(const acache_cat_global_model *r, void *payload)
{
    sink *s = payload;
    gm_row *g = arena_alloc(&s->l->ar, sizeof *g);
    if (!g)
        return acache__oom();
    ADUP(g->id, r->id);
    ADUP(g->name, r->name);
    ADUP(g->display_name, r->display_name);
    return g->id ? sink_push(s, g) : 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sort `v`, drop NULLs and duplicates; returns the new length. */
static size_t distinct(const char **v, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i])
            v[m++] = v[i];
    if (m < 2)
        return m;
    qsort(v, m, sizeof *v, str_cmp);
    size_t u = 1;
    for (size_t i = 1; i < m; i++)
        if (strcmp(v[i], v[u - 1]) != 0)
            v[u++] = v[i];
    return u;
}

/* One batched look-up of table `k`; `vals` is reordered. Marks the table
 * fetched. A slot the backend leaves NULL finds nothing. */
static int fetch(ctx *x, int k, int by, const char **vals, size_t n)
{
    acache_catalog *cat = x->c->catalog;
    table *t = &x->t[k];
    n = distinct(vals, n);
    t->fetched = 1;
    if (!cat || n == 0)
        return ACACHE_OK;
    sink s = {x->l, t};
    const char *const *cv = vals;
    int rc = ACACHE_OK;
    switch (k) {
    case T_KEYS:
        if (cat->api_keys)
            rc = cat->api_keys(cat, by, cv, n, key_cb, &s);
        break;
    case T_USERS:
        if (cat->users)
            rc = cat->users(cat, by, cv, n, user_cb, &s);
        break;
    case T_PROVS:
        if (cat->providers)
            rc = cat->providers(cat, by, cv, n, prov_cb, &s);
        break;
    case T_EPS:
        if (cat->endpoints)
            rc = cat->endpoints(cat, by, cv, n, ep_cb, &s);
        break;
    case T_PKEYS:
        if (cat->provider_keys)
            rc = cat->provider_keys(cat, by, cv, n, pkey_cb, &s);
        break;
    case T_GMS:
        if (cat->global_models)
            rc = cat->global_models(cat, by, cv, n, gm_cb, &s);
        break;
    default:
        break;
    }
    if (rc < 0)
        return rc;
    if (t->n > 1)
        qsort(t->v, t->n, sizeof *t->v, row_cmp);
    return ACACHE_OK;
}

typedef const char *(*item_id_fn)(const acache__listing_item *it);

static const char *id_affinity_key(const acache__listing_item *it)
{
    return as_id(it->affinity_key);
}
static const char *id_user(const acache__listing_item *it)
{
    return it->user_id;
}
static const char *id_provider(const acache__listing_item *it)
{
    return as_id(it->provider_id);
}
static const char *id_endpoint(const acache__listing_item *it)
{
    return as_id(it->endpoint_id);
}
static const char *id_key(const acache__listing_item *it)
{
    return as_id(it->key_id);
}
static const char *id_model(const acache__listing_item *it)
{
    return as_id(it->raw_model);
}

/* Collect one id of items[from .. to) into a scratch array and fetch. */
static int fetch_items(ctx *x, int k, size_t from, size_t to, item_id_fn get)
{
    if (to <= from) {
        x->t[k].fetched = 1;
        return ACACHE_OK;
    }
    const char **vals = acache__malloc((to - from) * sizeof *vals);
    if (!vals)
        return acache__oom();
    for (size_t i = from; i < to; i++)
        vals[i - from] = get(&x->l->items[i]);
    int rc = fetch(x, k, ACACHE_BY_ID, vals, to - from);
    free(vals);
    return rc;
}

/* ---- selection ---- */

static int in_sel(const ctx *x, const char *ak, size_t akl)
{
    if (memchr(ak, '\0', akl))
        return 0; /* the selection holds C-string ids */
    return bsearch(&ak, x->sel, x->nsel, sizeof *x->sel, str_cmp) != NULL;
}

static int walk_cb(const acache_affinity *a, void *payload)
{
    ctx *x = payload;
    acache__listing *l = x->l;
    size_t akl;
    const char *ak = acache__affinity_field(a, ACACHE__F_AFFINITY_KEY, &akl);
    if (!ak || !akl)
        return 0;
    if (x->sel && !in_sel(x, ak, akl))
        return 0;
    if (acache__grow(&l->items, &l->cap, l->n, sizeof *l->items))
        return ACACHE_ENOMEM;
    acache__listing_item *it = &l->items[l->n];
    memset(it, 0, sizeof *it);
    bytes *dst[ACACHE__F_COUNT] = {&it->affinity_key, &it->api_format,  &it->raw_model,
                                   &it->provider_id,  &it->endpoint_id, &it->key_id};
    /* The six fields in one allocation, each NUL-terminated: one arena call
     * and no alignment padding per field (this runs once per pin). */
    const char *v[ACACHE__F_COUNT];
    size_t n[ACACHE__F_COUNT], total = 0;
    for (int f = 0; f < ACACHE__F_COUNT; f++) {
        v[f] = acache__affinity_field(a, f, &n[f]);
        total += v[f] ? n[f] + 1 : 0;
    }
    char *p = total ? arena_alloc_packed(&l->ar, total) : NULL;
    if (total && !p)
        return acache__oom();
    for (int f = 0; f < ACACHE__F_COUNT; f++) {
        if (!v[f]) {
            *dst[f] = (bytes){NULL, 0};
            continue;
        }
        if (n[f])
            memcpy(p, v[f], n[f]);
        p[n[f]] = '\0';
        *dst[f] = (bytes){p, n[f]};
        p += n[f] + 1;
    }
    it->created_at = acache_affinity_created_at(a);
    it->expire_at = acache_affinity_expire_at(a);
    it->request_count = acache_affinity_request_count(a);
    it->rate_multiplier = 1.0;
    it->model_name = it->raw_model;
    l->n++;
    return 0;
}

/* Walking one key's prefix is cheaper in the memory store; an id with ':' could
 * not have pins anyway but would make an ambiguous prefix, so walk all then. */
static int walk(ctx *x)
{
    if (x->select_none)
        return ACACHE_OK;
    const char *prefix = NULL;
    if (x->nsel == 1 && *x->sel[0] && !strchr(x->sel[0], ':'))
        prefix = x->sel[0];
    return acache__affinity_walk(x->c, prefix, walk_cb, x);
}

static int set_sel(ctx *x, const char *const *keys, size_t n)
{
    x->sel = acache__malloc((n ? n : 1) * sizeof *x->sel);
    if (!x->sel)
        return acache__oom();
    if (n)
        memcpy(x->sel, keys, n * sizeof *keys);
    x->nsel = distinct(x->sel, n);
    x->select_none = x->nsel == 0;
    return ACACHE_OK;
}

/* Byte order, a prefix first; absent sorts like empty. */
static int bytes_cmp(bytes a, bytes b)
{
    size_t n = a.n < b.n ? a.n : b.n;
    int r = n ? memcmp(a.p, b.p, n) : 0;
    if (r == 0 && a.n != b.n)
        r = a.n < b.n ? -1 : 1;
    return r;
}

static int item_cmp(const void *pa, const void *pb)
{
    const acache__listing_item *a = pa, *b = pb;
    if (a->expire_at > b->expire_at)
        return -1;
    if (a->expire_at < b->expire_at)
        return 1;
    int r = bytes_cmp(a->affinity_key, b->affinity_key);
    if (r == 0)
        r = bytes_cmp(a->api_format, b->api_format);
    if (r == 0)
        r = bytes_cmp(a->raw_model, b->raw_model);
    return r;
}

static uint64_t key8(bytes b)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = v << 8 | (i < b.n ? (unsigned char)b.p[i] : 0u);
    return v;
}

/* item_cmp's order. Equal prefixes say nothing (a short key and one with NUL
 * bytes after it pad alike), so they fall back to item_cmp. */
static int ref_cmp(const void *pa, const void *pb)
{
    const sort_ref *a = pa, *b = pb;
    if (a->expire_at > b->expire_at)
        return -1;
    if (a->expire_at < b->expire_at)
        return 1;
    if (a->key8 != b->key8)
        return a->key8 < b->key8 ? -1 : 1;
    return item_cmp(a->it, b->it);
}

/* SCAN may return a key twice (while the server rehashes): keep one item of
 * each run of equal ones, which item_cmp's order puts side by side. Items
 * live in the listing's arena, so dropping one frees nothing. */
static size_t drop_repeats(sort_ref *v, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || item_cmp(v[i].it, v[w - 1].it) != 0)
            v[w++] = v[i];
    return w;
}

/* Sort items[0 .. n) and drop repeats. keep_order (a snapshot): the order
 * is l->ord and the items stay in place; else they are moved into order. */
static int sort_items(acache__listing *l, int keep_order)
{
    if (l->n < 2 && !keep_order)
        return ACACHE_OK;
    sort_ref *ord = acache__malloc((l->n ? l->n : 1) * sizeof *ord);
    if (!ord)
        return acache__oom();
    for (size_t i = 0; i < l->n; i++)
        ord[i] = (sort_ref){l->items[i].expire_at, key8(l->items[i].affinity_key),
                            &l->items[i]};
    if (l->n > 1) {
        qsort(ord, l->n, sizeof *ord, ref_cmp);
        l->n = drop_repeats(ord, l->n);
    }
    if (keep_order) {
        l->ord = ord;
        return ACACHE_OK;
    }
    acache__listing_item *v = acache__malloc(l->n * sizeof *v);
    if (!v) {
        free(ord);
        return acache__oom();
    }
    for (size_t i = 0; i < l->n; i++)
        v[i] = *ord[i].it;
    free(ord);
    free(l->items);
    l->items = v;
    l->cap = l->n;
    return ACACHE_OK;
}

/* ---- enrichment ---- */

static void set_key(acache__listing_item *it, key_row *k)
{
    it->krow = k;
    if (k) {
        it->user_api_key_name = k->name;
        it->user_id = k->user_id;
        it->is_standalone = k->standalone;
        it->key_enc = k->enc;
    }
}

static void set_user(acache__listing_item *it, const user_row *u)
{
    if (u) {
        it->username = u->username;
        it->email = u->email;
    }
}

static void enrich_key(ctx *x, acache__listing_item *it)
{
    set_key(it, (key_row *)table_find(&x->t[T_KEYS], as_id(it->affinity_key)));
}

static void enrich_user(ctx *x, acache__listing_item *it)
{
    set_user(it, table_find(&x->t[T_USERS], it->user_id));
}

static void enrich_rest(ctx *x, acache__listing_item *it)
{
    const prov_row *p = table_find(&x->t[T_PROVS], as_id(it->provider_id));
    if (p)
        it->provider_name = p->display_name;
    const ep_row *e = table_find(&x->t[T_EPS], as_id(it->endpoint_id));
    if (e) {
        it->endpoint_api_format = e->api_format;
        it->endpoint_url = e->base_url;
    }
    const pkey_row *k = table_find(&x->t[T_PKEYS], as_id(it->key_id));
    if (k) {
        it->key_name = k->name;
        it->rate_multiplier = k->rate_multiplier;
        it->pkey_enc = k->enc;
    }
    const gm_row *g = table_find(&x->t[T_GMS], as_id(it->raw_model));
    if (g) {
        it->model_name = (bytes){g->name, g->name ? strlen(g->name) : 0};
        it->model_display_name = g->display_name;
    }
}

/* Fetch api_keys then users for items[from .. to) and fill the client fields. */
static int enrich_clients(ctx *x, size_t from, size_t to)
{
    int rc;
    if (!x->t[T_KEYS].fetched &&
        (rc = fetch_items(x, T_KEYS, from, to, id_affinity_key)) < 0)
        return rc;
    for (size_t i = from; i < to; i++)
        enrich_key(x, &x->l->items[i]);
    if (!x->t[T_USERS].fetched && (rc = fetch_items(x, T_USERS, from, to, id_user)) < 0)
        return rc;
    for (size_t i = from; i < to; i++)
        enrich_user(x, &x->l->items[i]);
    return ACACHE_OK;
}

static int item_key_cmp(const void *a, const void *b)
{
    const acache__listing_item *x = *(const acache__listing_item *const *)a,
                               *y = *(const acache__listing_item *const *)b;
    return bytes_cmp(x->affinity_key, y->affinity_key);
}

/* enrich_clients over every item (rule 3), with the look-ups per distinct
 * affinity key rather than per pin: the items are grouped by key once, each
 * group finds its api_keys row and that row's user once, and the users
 * batch holds the user ids of the rows fetched. Same fields as
 * enrich_clients(x, 0, n). */
static int enrich_clients_all(ctx *x)
{
    acache__listing *l = x->l;
    size_t n = l->n;
    if (n < 2)
        return enrich_clients(x, 0, n);
    acache__listing_item **v = acache__malloc(n * sizeof *v);
    const char **ids = acache__malloc(n * sizeof *ids);
    int rc = v && ids ? ACACHE_OK : acache__oom();
    size_t m = 0;
    if (rc == ACACHE_OK) {
        for (size_t i = 0; i < n; i++)
            v[i] = &l->items[i];
        qsort(v, n, sizeof *v, item_key_cmp);
        for (size_t i = 0; i < n; i++)
            if ((i == 0 || item_key_cmp(&v[i], &v[i - 1]) != 0) &&
                (ids[m] = as_id(v[i]->affinity_key)) != NULL)
                m++;
        if (!x->t[T_KEYS].fetched)
            rc = fetch(x, T_KEYS, ACACHE_BY_ID, ids, m);
    }
    if (rc == ACACHE_OK && !x->t[T_USERS].fetched) {
        table *kt = &x->t[T_KEYS];
        const char **uids = acache__malloc((kt->n ? kt->n : 1) * sizeof *uids);
        if (!uids) {
            rc = acache__oom();
        } else {
            for (size_t i = 0; i < kt->n; i++)
                uids[i] = ((const key_row *)kt->v[i])->user_id;
            rc = fetch(x, T_USERS, ACACHE_BY_ID, uids, kt->n);
            free(uids);
        }
    }
    key_row *k = NULL;
    const user_row *u = NULL;
    for (size_t i = 0; rc == ACACHE_OK && i < n; i++) {
        if (i == 0 || item_key_cmp(&v[i], &v[i - 1]) != 0) {
            k = (key_row *)table_find(&x->t[T_KEYS], as_id(v[i]->affinity_key));
            u = k ? table_find(&x->t[T_USERS], k->user_id) : NULL;
        }
        set_key(v[i], k);
        set_user(v[i], u);
    }
    free(v);
    free(ids);
    return rc;
}

/* Decrypt and mask each distinct ciphertext of the page once. Failures give
 * NULL masks, never an error; the caller's last error is kept, since the
 * listing as a whole succeeds. */
static int mask_page(ctx *x)
{
    acache__listing *l = x->l;
    acache__crypto *k = x->c->crypto;
    if (!k || l->count == 0)
        return ACACHE_OK;
    size_t n = 0;
    const char **vals = acache__malloc(2 * l->count * sizeof *vals);
    if (!vals)
        return acache__oom();
    for (size_t i = l->start; i < l->start + l->count; i++) {
        vals[n++] = l->items[i].key_enc;
        vals[n++] = l->items[i].pkey_enc;
    }
    n = distinct(vals, n);
    const char **masks = acache__calloc(n ? n : 1, sizeof *masks);
    if (!masks) {
        free(vals);
        return acache__oom();
    }
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", acache_last_error());
    int failed = 0, rc = ACACHE_OK;
    for (size_t i = 0; i < n && rc == ACACHE_OK; i++) {
        acache_buf m = ACACHE_BUF_INIT;
        l->decrypts++;
        int r = acache__crypto_decrypt_and_mask(k, vals[i], &m);
        if (r == ACACHE_OK)
            rc = adup(&l->ar, m.ptr, &masks[i]);
        else if (r == ACACHE_ENOMEM)
            rc = r;
        else
            failed = 1;
        acache_buf_dispose(&m);
    }
    if (failed && rc == ACACHE_OK) {
        if (saved[0])
            acache_error_set(ACACHE_OK, "%s", saved);
        else
            acache_clear_error();
    }
    for (size_t i = l->start; rc == ACACHE_OK && i < l->start + l->count; i++) {
        acache__listing_item *it = &l->items[i];
        const char **hit;
        if (it->key_enc &&
            (hit = bsearch(&it->key_enc, vals, n, sizeof *vals, str_cmp)) != NULL)
            it->user_api_key_prefix = masks[hit - vals];
        if (it->pkey_enc &&
            (hit = bsearch(&it->pkey_enc, vals, n, sizeof *vals, str_cmp)) != NULL)
            it->key_prefix = masks[hit - vals];
    }
    free(masks);
    free(vals);
    return rc;
}

static int enrich_page(ctx *x)
{
    acache__listing *l = x->l;
    size_t from = l->start, to = l->start + l->count;
    int rc;
    if (to == from)
        return ACACHE_OK;
    if ((rc = enrich_clients(x, from, to)) < 0)
        return rc;
    if ((rc = fetch_items(x, T_PROVS, from, to, id_provider)) < 0 ||
        (rc = fetch_items(x, T_EPS, from, to, id_endpoint)) < 0 ||
        (rc = fetch_items(x, T_PKEYS, from, to, id_key)) < 0 ||
        (rc = fetch_items(x, T_GMS, from, to, id_model)) < 0)
        return rc;
    for (size_t i = from; i < to; i++)
        enrich_rest(x, &l->items[i]);
    return mask_page(x);
}

/* ---- keyword ---- */

/* Rule 3 lower-cases both sides as Python's str.lower() does (Aether):
 * libunistring's full Unicode lower-case mapping, language-independent, no
 * normalisation ('ZOË' -> 'zoë', KELVIN SIGN -> 'k', 'İ' -> "i\u0307").
 * Bytes that are not valid UTF-8 (data is bytes) are kept as they are and
 * compared byte for byte, each one a character of its own; a match must start
 * and end on character boundaries of the data, so an invalid byte of the
 * keyword never matches part of a valid character (nor the reverse). */
typedef struct {
    uint8_t *s;         /* folded bytes */
    unsigned char *bnd; /* bnd[i] != 0: a character starts at s[i]; bnd[len] = 1 */
    size_t len, cap;
} folded;

static void folded_free(folded *f)
{
    free(f->s);
    free(f->bnd);
}

/* Room for `more` bytes plus the final boundary flag. */
static int folded_reserve(folded *f, size_t more)
{
    if (f->cap - f->len > more)
        return ACACHE_OK;
    size_t cap = f->cap ? f->cap : 64;
    while (cap - f->len <= more)
        cap *= 2;
    uint8_t *s = realloc(f->s, cap);
    if (s)
        f->s = s;
    unsigned char *b = s ? realloc(f->bnd, cap) : NULL;
    if (!b)
        return acache__oom();
    f->bnd = b;
    f->cap = cap;
    return ACACHE_OK;
}

/* Fold s[0..n) into f (replacing its contents). */
static int fold(folded *f, const char *str, size_t n)
{
    const uint8_t *p = (const uint8_t *)str, *end = p + n;
    f->len = 0;
    while (p < end) {
        const uint8_t *bad = u8_check(p, (size_t)(end - p));
        size_t run = bad ? (size_t)(bad - p) : (size_t)(end - p);
        size_t ascii = 0;
        while (ascii < run && p[ascii] < 0x80)
            ascii++;
        if (ascii == run) { /* the common case: no allocation */
            if (folded_reserve(f, run) < 0)
                return ACACHE_ENOMEM;
            for (size_t i = 0; i < run; i++) {
                uint8_t ch = p[i];
                f->s[f->len] = (ch >= 'A' && ch <= 'Z') ? (uint8_t)(ch - 'A' + 'a') : ch;
                f->bnd[f->len++] = 1;
            }
        } else {
            /* The whole valid run at once: Final_Sigma looks at its context. */
            uint8_t tmp[256];
            size_t olen = sizeof tmp;
            uint8_t *r = u8_tolower(p, run, NULL, NULL, tmp, &olen);
            if (!r)
                return acache__oom(); /* the run is valid: only ENOMEM is left */
            int rc = folded_reserve(f, olen);
            if (rc == ACACHE_OK) {
                memcpy(f->s + f->len, r, olen);
                for (size_t i = 0; i < olen; i++)
                    f->bnd[f->len + i] = (r[i] & 0xC0) != 0x80;
                f->len += olen;
            }
            if (r != tmp)
                free(r);
            if (rc < 0)
                return rc;
        }
        p += run;
        if (bad) {
            if (folded_reserve(f, 1) < 0)
                return ACACHE_ENOMEM;
            f->s[f->len] = *p++;
            f->bnd[f->len++] = 1;
        }
    }
    if (folded_reserve(f, 0) < 0)
        return ACACHE_ENOMEM;
    f->bnd[f->len] = 1;
    return ACACHE_OK;
}

/* Does the folded `hay` contain the folded keyword, on character boundaries?
 * 1, 0, or ACACHE_ENOMEM. `tmp` is scratch space. */
static int contains(folded *tmp, const char *hay, size_t hlen, const folded *kw)
{
    if (!hay)
        return 0;
    if (fold(tmp, hay, hlen) < 0)
        return ACACHE_ENOMEM;
    if (kw->len == 0 || kw->len > tmp->len)
        return kw->len == 0;
    /* memmem is not POSIX: scan for the first byte, compare the rest. */
    const uint8_t *s = tmp->s, *last = tmp->s + (tmp->len - kw->len);
    while (s <= last) {
        const uint8_t *hit = memchr(s, kw->s[0], (size_t)(last - s) + 1);
        if (!hit)
            return 0;
        size_t at = (size_t)(hit - tmp->s);
        if (tmp->bnd[at] && tmp->bnd[at + kw->len] && memcmp(hit, kw->s, kw->len) == 0)
            return 1;
        s = hit + 1;
    }
    return 0;
}

static int any_contains(folded *tmp, const bytes *f, size_t n, const folded *kw)
{
    for (size_t i = 0; i < n; i++) {
        int r = contains(tmp, f[i].p, f[i].n, kw);
        if (r)
            return r;
    }
    return 0;
}

/* The first five fields follow from the api_keys row (its id is the
 * affinity key; user fields come from its user_id), so their answer is
 * computed once per row, not once per pin. */
static int item_matches(folded *tmp, const acache__listing_item *it, const folded *kw)
{
    key_row *k = it->krow;
    int r = k ? k->match : -1;
    if (r < 0) {
        const bytes f[] = {
            it->affinity_key,
            {it->user_api_key_name,
             it->user_api_key_name ? strlen(it->user_api_key_name) : 0},
            {it->user_id, it->user_id ? strlen(it->user_id) : 0},
            {it->username, it->username ? strlen(it->username) : 0},
            {it->email, it->email ? strlen(it->email) : 0},
        };
        r = any_contains(tmp, f, sizeof f / sizeof f[0], kw);
        if (r < 0)
            return r;
        if (k)
            k->match = r;
    }
    if (r)
        return r;
    const bytes g[] = {it->provider_id, it->key_id};
    return any_contains(tmp, g, sizeof g / sizeof g[0], kw);
}

/* Rule 3 over items[0 .. n): keep the matching ones, in place. */
static int keyword_filter(acache__listing *l, const char *kw)
{
    folded k = {0}, tmp = {0};
    int rc = fold(&k, kw, strlen(kw));
    size_t m = 0;
    for (size_t i = 0; rc == ACACHE_OK && i < l->n; i++) {
        int r = item_matches(&tmp, &l->items[i], &k);
        if (r < 0)
            rc = r;
        else if (r)
            l->items[m++] = l->items[i];
    }
    if (rc == ACACHE_OK)
        l->n = m;
    folded_free(&k);
    folded_free(&tmp);
    return rc;
}

/* Rules 1 and 2: the keyword names an API key, or a user. Sets the selection
 * and the tables they already fetched (reused by the enrichment). As in
 * Aether, only the user resolution trims the keyword: rule 1 and rule 3 see
 * it as given. */
static int select_by_keyword(ctx *x, const char *kw, int *selected)
{
    acache_catalog *cat = x->c->catalog;
    acache__listing *l = x->l;
    int rc;
    *selected = 0;
    if (!cat)
        return ACACHE_OK;

    const char *v[1] = {kw};
    if ((rc = fetch(x, T_KEYS, ACACHE_BY_ID, v, 1)) < 0)
        return rc;
    const key_row *k = table_find(&x->t[T_KEYS], kw);
    if (k) {
        l->matched_user_id = k->user_id;
        *selected = 1;
        return set_sel(x, &kw, 1);
    }
    /* A failed rule 1 leaves api_keys un-fetched for the enrichment. */
    x->t[T_KEYS].fetched = 0;

    /* Resolution steps 1-4 on the trimmed keyword; step 4 (api_keys.id) is
     * rule 1 again, already answered, unless trimming changed the keyword. */
    char *trimmed = acache__trim_dup(kw);
    if (!trimmed)
        return ACACHE_ENOMEM;
    acache__user_info u = {0};
    rc = acache__resolve_ident(&u, x->c, trimmed, strcmp(trimmed, kw) != 0);
    free(trimmed);
    if (rc == ACACHE_ENOTFOUND)
        return ACACHE_OK;
    if (rc < 0)
        return rc;
    sink s = {l, &x->t[T_USERS]};
    acache_cat_user row = {u.id, u.username, u.email};
    rc = user_cb(&row, &s);
    acache__user_info_clear(&u);
    if (rc < 0)
        return rc;
    x->t[T_USERS].fetched = 1;
    if (x->t[T_USERS].n == 0) /* a user row without an id selects no pin */
        return ACACHE_OK;
    const user_row *ur = x->t[T_USERS].v[0];
    l->matched_user_id = ur->id;
    *selected = 1;

    const char *uv[1] = {ur->id};
    if ((rc = fetch(x, T_KEYS, ACACHE_BY_USER_ID, uv, 1)) < 0)
        return rc;
    table *kt = &x->t[T_KEYS];
    const char **ids = acache__malloc((kt->n ? kt->n : 1) * sizeof *ids);
    if (!ids)
        return acache__oom();
    for (size_t i = 0; i < kt->n; i++)
        ids[i] = row_id(kt->v[i]);
    rc = set_sel(x, ids, kt->n);
    free(ids);
    return rc;
}

/* Copy the page (limit, offset of `l`) of the sorted `all` into `l`: the raw
 * fields stay borrowed from `all`'s arena (the caller keeps it alive). */
static int cut_page(acache__listing *l, const acache__listing *all)
{
    uint64_t off = (uint64_t)l->offset;
    size_t start = off >= all->n ? all->n : (size_t)off, left = all->n - start;
    l->count = (uint64_t)l->limit < left ? (size_t)l->limit : left;
    l->start = 0;
    l->n = all->n;
    l->matched_user_id = all->matched_user_id;
    if (!l->count)
        return ACACHE_OK;
    if (!(l->items = acache__malloc(l->count * sizeof *l->items)))
        return acache__oom();
    l->cap = l->count;
    if (all->ord)
        for (size_t i = 0; i < l->count; i++)
            l->items[i] = *all->ord[start + i].it;
    else
        memcpy(l->items, all->items + start, l->count * sizeof *l->items);
    return ACACHE_OK;
}

/* `filter`: only the pins of keys[0 .. nkeys), none when nkeys == 0 (an empty
 * list selects nothing, it is not "no filter"). Else `kw` (NULL: none)
 * selects by the rules. */
static int build(acache__listing *l, acache *c, const char *kw, int filter,
                 const char *const *keys, size_t nkeys, int enrich, acache__listing *page)
{
    ctx x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.l = l;
    int rc = ACACHE_OK, selected = 0;

    if (filter)
        rc = set_sel(&x, keys, nkeys);
    else if (kw)
        rc = select_by_keyword(&x, kw, &selected);
    if (rc == ACACHE_OK)
        rc = walk(&x);
    if (rc > 0) /* our callbacks only stop with a negative status */
        rc = ACACHE_ERROR;

    if (rc == ACACHE_OK && kw && !selected) {
        /* Rule 3: the filter needs the client fields of every record. */
        rc = enrich_clients_all(&x);
        if (rc == ACACHE_OK)
            rc = keyword_filter(l, kw);
        /* A snapshot keeps the array: give back what the filter emptied. */
        acache__listing_item *v;
        if (rc == ACACHE_OK && l->n && l->n < l->cap / 2 &&
            (v = realloc(l->items, l->n * sizeof *v)) != NULL) {
            l->items = v;
            l->cap = l->n;
        }
    }
    if (rc == ACACHE_OK)
        rc = sort_items(l, page != NULL);
    if (rc == ACACHE_OK) {
        uint64_t off = (uint64_t)l->offset;
        l->start = off >= l->n ? l->n : (size_t)off;
        size_t left = l->n - l->start;
        l->count = (uint64_t)l->limit < left ? (size_t)l->limit : left;
        if (page) {
            /* A snapshot's first page: enriched with the tables the selection
             * already fetched. */
            rc = cut_page(page, l);
            x.l = page;
            if (rc == ACACHE_OK)
                rc = enrich_page(&x);
        } else if (enrich) {
            rc = enrich_page(&x);
        }
    }
    ctx_free(&x);
    return rc;
}

/* ---- listing snapshots ----
 * Sorting (and, for a rule-3 keyword, filtering) every pin is the O(N) part
 * of a listing; the page's enrichment is small. So the sorted selection is
 * kept per keyword for SNAPSHOT_TTL_S seconds from when it was ready (or as
 * long as building it took, if longer) and the next page, another
 * page size or a refresh is cut from it (docs/fleet.md "Admin at scale").
 * Any invalidation or write through this handle drops every snapshot; writes
 * by other processes show after at most SNAPSHOT_TTL_S. */
#define SNAPSHOT_TTL_S 5.0
#define SNAPSHOT_KEYWORDS 8

struct lsnap {
    atomic_int refs;      /* the cache's one + one per page built from it */
    char *kw;             /* NULL: no keyword */
    double built_mono;    /* monotonic seconds, when it was ready */
    double ttl_s;         /* SNAPSHOT_TTL_S, or the build's duration if longer */
    double built_clock;   /* the handle's clock (tests move it) */
    uint64_t gen;         /* snapshot_gen() when built */
    acache__listing *all; /* sorted, filtered, not enriched (start 0, all) */
};

struct acache__admin_cache {
    lsnap *s[SNAPSHOT_KEYWORDS];
};

static void snap_release(lsnap *sn)
{
    if (sn && atomic_fetch_sub(&sn->refs, 1) == 1) {
        acache__listing_free(sn->all);
        free(sn->kw);
        free(sn);
    }
}

static void admin_cache_free(acache__admin_cache *ac)
{
    for (int i = 0; i < SNAPSHOT_KEYWORDS; i++)
        snap_release(ac->s[i]);
    free(ac);
}

/* Changes with every write this handle makes or counts. */
static uint64_t snapshot_gen(acache *c)
{
    return atomic_load(&c->admin_gen) + atomic_load(&c->cache_invalidations) +
           atomic_load(&c->total_affinities) + atomic_load(&c->key_switches) +
           atomic_load(&c->refreshed);
}

static double mono_now(void)
{
    return (double)acache__monotonic_ms() / 1000.0;
}

static int kw_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int snap_fresh(const lsnap *sn, acache *c, uint64_t gen)
{
    double age = mono_now() - sn->built_mono;
    double clock_age = acache__now(c) - sn->built_clock;
    return sn->gen == gen && age <= sn->ttl_s && clock_age >= 0 && clock_age <= sn->ttl_s;
}

/* A live snapshot of `kw` (one reference for the caller), or NULL. */
static lsnap *snap_get(acache *c, const char *kw)
{
    lsnap *found = NULL;
    uint64_t gen = snapshot_gen(c);
    pthread_mutex_lock(&c->admin_cache_lock);
    acache__admin_cache *ac = c->admin_cache;
    for (int i = 0; ac && i < SNAPSHOT_KEYWORDS; i++) {
        lsnap *sn = ac->s[i];
        if (!sn)
            continue;
        if (!snap_fresh(sn, c, gen)) {
            ac->s[i] = NULL;
            snap_release(sn);
        } else if (kw_eq(sn->kw, kw)) {
            atomic_fetch_add(&sn->refs, 1);
            found = sn;
        }
    }
    pthread_mutex_unlock(&c->admin_cache_lock);
    return found;
}

/* Keep `sn` (takes the caller's reference), replacing the same keyword's or
 * the oldest one. */
static void snap_put(acache *c, lsnap *sn)
{
    pthread_mutex_lock(&c->admin_cache_lock);
    if (!c->admin_cache) {
        c->admin_cache = acache__calloc(1, sizeof *c->admin_cache);
        c->admin_cache_free = admin_cache_free;
    }
    acache__admin_cache *ac = c->admin_cache;
    if (!ac) {
        pthread_mutex_unlock(&c->admin_cache_lock);
        snap_release(sn);
        return;
    }
    int slot = 0;
    for (int i = 0; i < SNAPSHOT_KEYWORDS; i++) {
        if (!ac->s[i] || kw_eq(ac->s[i]->kw, sn->kw)) {
            slot = i;
            break;
        }
        if (ac->s[i]->built_mono < ac->s[slot]->built_mono)
            slot = i;
    }
    snap_release(ac->s[slot]);
    ac->s[slot] = sn;
    pthread_mutex_unlock(&c->admin_cache_lock);
}

static acache__listing *listing_new(void);

/* Build the snapshot of `kw` (the whole sorted selection, not enriched) and
 * `page` from it. */
static int snap_build(lsnap **out, acache *c, const char *kw, acache__listing *page)
{
    *out = NULL;
    lsnap *sn = acache__calloc(1, sizeof *sn);
    if (!sn)
        return acache__oom();
    atomic_init(&sn->refs, 1);
    sn->gen = snapshot_gen(c);
    double t0 = mono_now();
    if (kw && !(sn->kw = acache__strdup(kw))) {
        free(sn);
        return ACACHE_ENOMEM;
    }
    if (!(sn->all = listing_new())) {
        snap_release(sn);
        return ACACHE_ENOMEM;
    }
    sn->all->limit = INT64_MAX;
    int rc = build(sn->all, c, kw, 0, NULL, 0, 0, page);
    if (rc < 0) {
        snap_release(sn);
        return rc;
    }
    /* Aged from when it is ready: at 1M pins a build takes longer than 5 s,
     * and a snapshot must outlive the time it took to make. */
    sn->built_mono = mono_now();
    sn->built_clock = acache__now(c);
    sn->ttl_s =
        sn->built_mono - t0 > SNAPSHOT_TTL_S ? sn->built_mono - t0 : SNAPSHOT_TTL_S;
    *out = sn;
    return ACACHE_OK;
}

/* The page of `l` (limit, offset set) from a snapshot of `kw`, built now if
 * there is no live one. */
static int list_from_snapshot(acache__listing *l, acache *c, const char *kw)
{
    lsnap *sn = snap_get(c, kw);
    if (!sn) {
        int rc = snap_build(&sn, c, kw, l);
        if (sn) {
            l->snap = sn;
            atomic_fetch_add(&sn->refs, 1); /* the page's; snap_put takes the other */
            if (rc == ACACHE_OK)
                snap_put(c, sn);
            else
                snap_release(sn);
        }
        return rc;
    }
    l->snap = sn;
    int rc = cut_page(l, sn->all);
    if (rc < 0)
        return rc;
    ctx x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.l = l;
    rc = enrich_page(&x);
    ctx_free(&x);
    return rc;
}

static acache__listing *listing_new(void)
{
    acache__listing *l = acache__calloc(1, sizeof *l);
    if (!l)
        acache__oom();
    return l;
}

/* Validate `q` (NULL: defaults), clear *out, and make the empty page `*l`. */
static int list_begin(acache__listing **out, acache__listing **l, acache *c,
                      const acache_list_query *q, const char **kw)
{
    acache_list_query def = ACACHE_LIST_QUERY_INIT;
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID, "list_affinities: NULL argument");
    *out = NULL;
    if (!q)
        q = &def;
    if (q->version == 0 || q->version > ACACHE_LIST_QUERY_VERSION)
        return acache_error_set(ACACHE_EINVALID,
                                "list_affinities: unknown query version %u", q->version);
    if (q->limit < 1 || q->limit > LIMIT_MAX)
        return acache_error_set(
            ACACHE_EINVALID, "list_affinities: limit must be between 1 and %d, got %lld",
            LIMIT_MAX, (long long)q->limit);
    if (q->offset < 0)
        return acache_error_set(ACACHE_EINVALID,
                                "list_affinities: offset must be >= 0, got %lld",
                                (long long)q->offset);

    if (!(*l = listing_new()))
        return ACACHE_ENOMEM;
    (*l)->limit = q->limit;
    (*l)->offset = q->offset;
    /* Only "" is no keyword: a blank one is matched as given (rule 3). */
    *kw = q->keyword && *q->keyword ? q->keyword : NULL;
    return ACACHE_OK;
}

static int list_end(acache__listing **out, acache__listing *l, int rc)
{
    if (rc < 0) {
        acache__listing_free(l);
        return rc;
    }
    *out = l;
    return ACACHE_OK;
}

int acache__list_affinities(acache__listing **out, acache *c, const acache_list_query *q)
{
    acache__listing *l = NULL;
    const char *kw = NULL;
    int rc = list_begin(out, &l, c, q, &kw);
    if (rc < 0)
        return rc;
    return list_end(out, l, list_from_snapshot(l, c, kw));
}

int acache__list_affinities_fresh(acache__listing **out, acache *c,
                                  const acache_list_query *q)
{
    acache__listing *l = NULL;
    const char *kw = NULL;
    int rc = list_begin(out, &l, c, q, &kw);
    if (rc < 0)
        return rc;
    return list_end(out, l, build(l, c, kw, 0, NULL, 0, 1, NULL));
}

int acache__listing_for_keys(acache__listing **out, acache *c, const char *const *keys,
                             size_t n)
{
    *out = NULL;
    acache__listing *l = listing_new();
    if (!l)
        return ACACHE_ENOMEM;
    l->limit = INT64_MAX;
    int rc = build(l, c, NULL, 1, keys, n, 0, NULL);
    if (rc < 0) {
        acache__listing_free(l);
        return rc;
    }
    l->limit = (int64_t)l->n;
    *out = l;
    return ACACHE_OK;
}

unsigned long acache__listing_decrypt_count(const acache__listing *l)
{
    return l ? l->decrypts : 0;
}

void acache__listing_free(acache__listing *l)
{
    if (!l)
        return;
    arena_free(&l->ar);
    free(l->items);
    free(l->ord);
    snap_release(l->snap);
    free(l);
}

size_t acache__listing_total(const acache__listing *l)
{
    return l ? l->n : 0;
}

size_t acache__listing_count(const acache__listing *l)
{
    return l ? l->count : 0;
}

int64_t acache__listing_limit(const acache__listing *l)
{
    return l ? l->limit : 0;
}

int64_t acache__listing_offset(const acache__listing *l)
{
    return l ? l->offset : 0;
}

const char *acache__listing_matched_user_id(const acache__listing *l)
{
    return l ? l->matched_user_id : NULL;
}

const acache__listing_item *acache__listing_at(const acache__listing *l, size_t i)
{
    if (!l || i >= l->count)
        return NULL;
    return &l->items[l->start + i];
}

#define GETTER(type, name, expr, dflt)                                                   \
    type acache__listing_item_##name(const acache__listing_item *it)                     \
    {                                                                                    \
        return it ? (expr) : (dflt);                                                     \
    }

GETTER(const char *, affinity_key, it->affinity_key.p, NULL)
GETTER(const char *, user_api_key_name, it->user_api_key_name, NULL)
GETTER(const char *, user_api_key_prefix, it->user_api_key_prefix, NULL)
GETTER(int, is_standalone, it->is_standalone, 0)
GETTER(const char *, user_id, it->user_id, NULL)
GETTER(const char *, username, it->username, NULL)
GETTER(const char *, email, it->email, NULL)
GETTER(const char *, provider_id, it->provider_id.p, NULL)
GETTER(const char *, provider_name, it->provider_name, NULL)
GETTER(const char *, endpoint_id, it->endpoint_id.p, NULL)
GETTER(const char *, endpoint_api_format, it->endpoint_api_format, NULL)
GETTER(const char *, endpoint_url, it->endpoint_url, NULL)
GETTER(const char *, key_id, it->key_id.p, NULL)
GETTER(const char *, key_name, it->key_name, NULL)
GETTER(const char *, key_prefix, it->key_prefix, NULL)
GETTER(double, rate_multiplier, it->rate_multiplier, 1.0)
GETTER(const char *, global_model_id, it->raw_model.p, NULL)
GETTER(const char *, model_name, it->model_name.p, NULL)
GETTER(const char *, model_display_name, it->model_display_name, NULL)
GETTER(const char *, api_format, it->api_format.p, NULL)
GETTER(double, created_at, it->created_at, 0.0)
GETTER(double, expire_at, it->expire_at, 0.0)
GETTER(int64_t, request_count, it->request_count, 0)

/* ---- JSON ---- */

static json_t *item_json(const acache__listing_item *it)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (acache__json_set(o, "affinity_key", bytes_json(it->affinity_key)) < 0 ||
        acache__json_set(o, "user_api_key_name",
                         acache__json_str(it->user_api_key_name)) < 0 ||
        acache__json_set(o, "user_api_key_prefix",
                         acache__json_str(it->user_api_key_prefix)) < 0 ||
        acache__json_set(o, "is_standalone", json_boolean(it->is_standalone)) < 0 ||
        acache__json_set(o, "user_id", acache__json_str(it->user_id)) < 0 ||
        acache__json_set(o, "username", acache__json_str(it->username)) < 0 ||
        acache__json_set(o, "email", acache__json_str(it->email)) < 0 ||
        acache__json_set(o, "provider_id", bytes_json(it->provider_id)) < 0 ||
        acache__json_set(o, "provider_name", acache__json_str(it->provider_name)) < 0 ||
        acache__json_set(o, "endpoint_id", bytes_json(it->endpoint_id)) < 0 ||
        acache__json_set(o, "endpoint_api_format",
                         acache__json_str(it->endpoint_api_format)) < 0 ||
        acache__json_set(o, "endpoint_url", acache__json_str(it->endpoint_url)) < 0 ||
        acache__json_set(o, "key_id", bytes_json(it->key_id)) < 0 ||
        acache__json_set(o, "key_name", acache__json_str(it->key_name)) < 0 ||
        acache__json_set(o, "key_prefix", acache__json_str(it->key_prefix)) < 0 ||
        acache__json_set(o, "rate_multiplier", json_real(it->rate_multiplier)) < 0 ||
        acache__json_set(o, "global_model_id", bytes_json(it->raw_model)) < 0 ||
        acache__json_set(o, "model_name", bytes_json(it->model_name)) < 0 ||
        acache__json_set(o, "model_display_name",
                         acache__json_str(it->model_display_name)) < 0 ||
        acache__json_set(o, "api_format", bytes_json(it->api_format)) < 0 ||
        acache__json_set(o, "created_at", json_real(it->created_at)) < 0 ||
        acache__json_set(o, "expire_at", json_real(it->expire_at)) < 0 ||
        acache__json_set(o, "request_count", json_integer(it->request_count)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* acache__json_set and json_array_append_new take the reference even when they
 * fail, so containers are attached first and filled after. */
static json_t *data_json(const acache__listing *l)
{
    json_t *data = json_object();
    if (!data)
        return NULL;
    json_t *items = json_array(), *meta = json_object();
    if (acache__json_set(data, "items", items) < 0) {
        json_decref(meta);
        goto fail;
    }
    if (acache__json_set(data, "meta", meta) < 0)
        goto fail;
    for (size_t i = 0; i < l->count; i++)
        if (json_array_append_new(items, item_json(&l->items[l->start + i])) < 0)
            goto fail;
    if (acache__json_set(meta, "total", json_integer((json_int_t)l->n)) < 0 ||
        acache__json_set(meta, "limit", json_integer(l->limit)) < 0 ||
        acache__json_set(meta, "offset", json_integer(l->offset)) < 0 ||
        acache__json_set(meta, "count", json_integer((json_int_t)l->count)) < 0 ||
        acache__json_set(data, "matched_user_id", acache__json_str(l->matched_user_id)) <
            0)
        goto fail;
    return data;
fail:
    json_decref(data);
    return NULL;
}

int acache__listing_to_json(acache_buf *out, const acache__listing *l)
{
    if (!out || !l)
        return acache_error_set(ACACHE_EINVALID, "listing_to_json: NULL argument");
    json_t *data = data_json(l);
    if (!data)
        return acache__oom();
    int rc = acache__json_dump(out, data, 0);
    json_decref(data);
    return rc;
}

int acache_list_affinities(acache_buf *out, acache *c, const acache_list_query *q)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "acache_list_affinities: NULL out");
    acache__listing *l = NULL;
    int rc = acache__list_affinities(&l, c, q);
    if (rc < 0)
        return rc;
    json_t *body = json_object();
    json_t *data = data_json(l);
    acache__listing_free(l);
    if (!body || acache__json_set(body, "status", json_string("ok")) < 0 ||
        acache__json_set(body, "data", data) < 0) {
        if (!body)
            json_decref(data);
        json_decref(body);
        return acache__oom();
    }
    rc = acache__json_dump(out, body, 0);
    json_decref(body);
    return rc;
}
