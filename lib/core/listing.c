/* The enriched affinity listing (admin-api.md "Enriched listing").
 *
 * Order of work, chosen so that catalog and crypto costs follow the page, not
 * the store: select raw records (rules 1-2 need only the keyword's own
 * look-ups), filter (rule 3 needs api_keys + users for every record), sort and
 * paginate on raw fields, then enrich only the page. Each table is looked up
 * at most once for the enrichment, with every distinct value in one batch, and
 * each distinct ciphertext is decrypted once. Everything a listing hands out
 * lives in one arena freed by acache_listing_free(). */
#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../crypto/crypto.h"
#include "../util/json.h"
#include "core.h"
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
    if (!a->head || a->head->cap - a->head->used < n) {
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
    char *p = arena_alloc(a, len + 1);
    if (!p)
        return acache__oom();
    memcpy(p, s, len + 1);
    *dst = p;
    return ACACHE_OK;
}

/* ---- catalog rows: each struct starts with its id, so tables sort by it ---- */

typedef struct {
    const char *id, *user_id, *name, *enc;
    int standalone;
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

struct acache_listing_item {
    const char *affinity_key, *api_format, *raw_model, *provider_id, *endpoint_id,
        *key_id;
    double created_at, expire_at;
    int64_t request_count;

    const char *user_api_key_name, *user_api_key_prefix, *user_id, *username, *email;
    const char *provider_name, *endpoint_api_format, *endpoint_url;
    const char *key_name, *key_prefix, *model_name, *model_display_name;
    int is_standalone;
    double rate_multiplier;

    const char *key_enc, *pkey_enc; /* ciphertexts, for the mask pass */
};

struct acache_listing {
    arena ar;
    acache_listing_item *items; /* every selected item, sorted */
    size_t n, cap;
    size_t start, count; /* the page: items[start .. start + count) */
    int64_t limit, offset;
    const char *matched_user_id;
    unsigned long decrypts;
};

typedef struct {
    acache *c;
    acache_listing *l;
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
    acache_listing *l;
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

/* Collect one field of items[from .. to) into a scratch array and fetch. */
static int fetch_items(ctx *x, int k, size_t from, size_t to, size_t field_off)
{
    if (to <= from) {
        x->t[k].fetched = 1;
        return ACACHE_OK;
    }
    const char **vals = acache__malloc((to - from) * sizeof *vals);
    if (!vals)
        return acache__oom();
    for (size_t i = from; i < to; i++)
        vals[i - from] =
            *(const char *const *)((const char *)&x->l->items[i] + field_off);
    int rc = fetch(x, k, ACACHE_BY_ID, vals, to - from);
    free(vals);
    return rc;
}

#define FIELD(f) offsetof(acache_listing_item, f)

/* ---- selection ---- */

static int in_sel(const ctx *x, const char *ak)
{
    return bsearch(&ak, x->sel, x->nsel, sizeof *x->sel, str_cmp) != NULL;
}

static int walk_cb(const acache_affinity *a, void *payload)
{
    ctx *x = payload;
    acache_listing *l = x->l;
    const char *ak = acache_affinity_affinity_key(a);
    if (!ak || !*ak)
        return 0;
    if (x->sel && !in_sel(x, ak))
        return 0;
    if (acache__grow(&l->items, &l->cap, l->n, sizeof *l->items))
        return ACACHE_ENOMEM;
    acache_listing_item *it = &l->items[l->n];
    memset(it, 0, sizeof *it);
    if (adup(&l->ar, ak, &it->affinity_key) < 0 ||
        adup(&l->ar, acache_affinity_api_format(a), &it->api_format) < 0 ||
        adup(&l->ar, acache_affinity_model_name(a), &it->raw_model) < 0 ||
        adup(&l->ar, acache_affinity_provider_id(a), &it->provider_id) < 0 ||
        adup(&l->ar, acache_affinity_endpoint_id(a), &it->endpoint_id) < 0 ||
        adup(&l->ar, acache_affinity_key_id(a), &it->key_id) < 0)
        return ACACHE_ENOMEM;
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

static const char *nz(const char *s)
{
    return s ? s : "";
}

static int item_cmp(const void *pa, const void *pb)
{
    const acache_listing_item *a = pa, *b = pb;
    if (a->expire_at > b->expire_at)
        return -1;
    if (a->expire_at < b->expire_at)
        return 1;
    int r = strcmp(a->affinity_key, b->affinity_key);
    if (r == 0)
        r = strcmp(nz(a->api_format), nz(b->api_format));
    if (r == 0)
        r = strcmp(nz(a->raw_model), nz(b->raw_model));
    return r;
}

/* ---- enrichment ---- */

static void enrich_client(ctx *x, acache_listing_item *it)
{
    const key_row *k = table_find(&x->t[T_KEYS], it->affinity_key);
    if (k) {
        it->user_api_key_name = k->name;
        it->user_id = k->user_id;
        it->is_standalone = k->standalone;
        it->key_enc = k->enc;
    }
    const user_row *u = table_find(&x->t[T_USERS], it->user_id);
    if (u) {
        it->username = u->username;
        it->email = u->email;
    }
}

static void enrich_rest(ctx *x, acache_listing_item *it)
{
    const prov_row *p = table_find(&x->t[T_PROVS], it->provider_id);
    if (p)
        it->provider_name = p->display_name;
    const ep_row *e = table_find(&x->t[T_EPS], it->endpoint_id);
    if (e) {
        it->endpoint_api_format = e->api_format;
        it->endpoint_url = e->base_url;
    }
    const pkey_row *k = table_find(&x->t[T_PKEYS], it->key_id);
    if (k) {
        it->key_name = k->name;
        it->rate_multiplier = k->rate_multiplier;
        it->pkey_enc = k->enc;
    }
    const gm_row *g = table_find(&x->t[T_GMS], it->raw_model);
    if (g) {
        it->model_name = g->name;
        it->model_display_name = g->display_name;
    }
}

/* Fetch api_keys then users for items[from .. to) and fill the client fields. */
static int enrich_clients(ctx *x, size_t from, size_t to)
{
    int rc;
    if (!x->t[T_KEYS].fetched &&
        (rc = fetch_items(x, T_KEYS, from, to, FIELD(affinity_key))) < 0)
        return rc;
    for (size_t i = from; i < to; i++)
        enrich_client(x, &x->l->items[i]);
    if (!x->t[T_USERS].fetched) {
        if ((rc = fetch_items(x, T_USERS, from, to, FIELD(user_id))) < 0)
            return rc;
        for (size_t i = from; i < to; i++)
            enrich_client(x, &x->l->items[i]);
    }
    return ACACHE_OK;
}

/* Decrypt and mask each distinct ciphertext of the page once. Failures give
 * NULL masks, never an error; the caller's last error is kept, since the
 * listing as a whole succeeds. */
static int mask_page(ctx *x)
{
    acache_listing *l = x->l;
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
        acache_listing_item *it = &l->items[i];
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
    acache_listing *l = x->l;
    size_t from = l->start, to = l->start + l->count;
    int rc;
    if (to == from)
        return ACACHE_OK;
    if ((rc = enrich_clients(x, from, to)) < 0)
        return rc;
    if ((rc = fetch_items(x, T_PROVS, from, to, FIELD(provider_id))) < 0 ||
        (rc = fetch_items(x, T_EPS, from, to, FIELD(endpoint_id))) < 0 ||
        (rc = fetch_items(x, T_PKEYS, from, to, FIELD(key_id))) < 0 ||
        (rc = fetch_items(x, T_GMS, from, to, FIELD(raw_model))) < 0)
        return rc;
    for (size_t i = from; i < to; i++)
        enrich_rest(x, &l->items[i]);
    return mask_page(x);
}

/* ---- keyword ---- */

static unsigned char lower(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') ? (unsigned char)(ch - 'A' + 'a') : ch;
}

/* Byte-wise ASCII case-insensitive substring test; `needle` is lower case. */
static int ci_contains(const char *hay, const char *needle, size_t nlen)
{
    if (!hay)
        return 0;
    size_t hlen = strlen(hay);
    if (nlen > hlen)
        return 0;
    for (size_t i = 0; i + nlen <= hlen; i++) {
        size_t j = 0;
        while (j < nlen && lower((unsigned char)hay[i + j]) == (unsigned char)needle[j])
            j++;
        if (j == nlen)
            return 1;
    }
    return 0;
}

static int item_matches(const acache_listing_item *it, const char *kw, size_t kwlen)
{
    return ci_contains(it->affinity_key, kw, kwlen) ||
           ci_contains(it->user_api_key_name, kw, kwlen) ||
           ci_contains(it->user_id, kw, kwlen) || ci_contains(it->username, kw, kwlen) ||
           ci_contains(it->email, kw, kwlen) || ci_contains(it->provider_id, kw, kwlen) ||
           ci_contains(it->key_id, kw, kwlen);
}

/* Rules 1 and 2: the keyword names an API key, or a user. Sets the selection
 * and the tables they already fetched (reused by the enrichment). */
static int select_by_keyword(ctx *x, const char *kw, int *selected)
{
    acache_catalog *cat = x->c->catalog;
    acache_listing *l = x->l;
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

    acache__user_info u = {0};
    rc = acache__find_user(&u, x->c, kw);
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

static int build(acache_listing *l, acache *c, const char *kw, const char *const *keys,
                 size_t nkeys, int enrich)
{
    ctx x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.l = l;
    int rc = ACACHE_OK, selected = 0;

    if (keys)
        rc = set_sel(&x, keys, nkeys);
    else if (kw)
        rc = select_by_keyword(&x, kw, &selected);
    if (rc == ACACHE_OK)
        rc = walk(&x);
    if (rc > 0) /* our callbacks only stop with a negative status */
        rc = ACACHE_ERROR;

    if (rc == ACACHE_OK && kw && !selected) {
        /* Rule 3: the filter needs the client fields of every record. */
        rc = enrich_clients(&x, 0, l->n);
        if (rc == ACACHE_OK) {
            size_t kwlen = strlen(kw);
            char *low = acache__malloc(kwlen + 1);
            if (!low) {
                rc = acache__oom();
            } else {
                for (size_t i = 0; i <= kwlen; i++)
                    low[i] = (char)lower((unsigned char)kw[i]);
                size_t m = 0;
                for (size_t i = 0; i < l->n; i++)
                    if (item_matches(&l->items[i], low, kwlen))
                        l->items[m++] = l->items[i];
                l->n = m;
                free(low);
            }
        }
    }
    if (rc == ACACHE_OK) {
        if (l->n > 1)
            qsort(l->items, l->n, sizeof *l->items, item_cmp);
        uint64_t off = (uint64_t)l->offset;
        l->start = off >= l->n ? l->n : (size_t)off;
        size_t left = l->n - l->start;
        l->count = (uint64_t)l->limit < left ? (size_t)l->limit : left;
        if (enrich)
            rc = enrich_page(&x);
    }
    ctx_free(&x);
    return rc;
}

static acache_listing *listing_new(void)
{
    acache_listing *l = acache__calloc(1, sizeof *l);
    if (!l)
        acache__oom();
    return l;
}

int acache_list_affinities(acache_listing **out, acache *c, const acache_list_query *q)
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

    acache_listing *l = listing_new();
    if (!l)
        return ACACHE_ENOMEM;
    l->limit = q->limit;
    l->offset = q->offset;

    char *kw = NULL;
    if (q->keyword) {
        kw = acache__trim_dup(q->keyword);
        if (!kw) {
            acache_listing_free(l);
            return ACACHE_ENOMEM;
        }
        if (!*kw) {
            free(kw);
            kw = NULL;
        }
    }
    int rc = build(l, c, kw, NULL, 0, 1);
    free(kw);
    if (rc < 0) {
        acache_listing_free(l);
        return rc;
    }
    *out = l;
    return ACACHE_OK;
}

int acache__listing_for_keys(acache_listing **out, acache *c, const char *const *keys,
                             size_t n)
{
    *out = NULL;
    acache_listing *l = listing_new();
    if (!l)
        return ACACHE_ENOMEM;
    l->limit = INT64_MAX;
    int rc = build(l, c, NULL, keys, n, 0);
    if (rc < 0) {
        acache_listing_free(l);
        return rc;
    }
    l->limit = (int64_t)l->n;
    *out = l;
    return ACACHE_OK;
}

unsigned long acache__listing_decrypt_count(const acache_listing *l)
{
    return l ? l->decrypts : 0;
}

void acache_listing_free(acache_listing *l)
{
    if (!l)
        return;
    arena_free(&l->ar);
    free(l->items);
    free(l);
}

size_t acache_listing_total(const acache_listing *l)
{
    return l ? l->n : 0;
}

size_t acache_listing_count(const acache_listing *l)
{
    return l ? l->count : 0;
}

int64_t acache_listing_limit(const acache_listing *l)
{
    return l ? l->limit : 0;
}

int64_t acache_listing_offset(const acache_listing *l)
{
    return l ? l->offset : 0;
}

const char *acache_listing_matched_user_id(const acache_listing *l)
{
    return l ? l->matched_user_id : NULL;
}

const acache_listing_item *acache_listing_at(const acache_listing *l, size_t i)
{
    if (!l || i >= l->count)
        return NULL;
    return &l->items[l->start + i];
}

#define GETTER(type, name, expr, dflt)                                                   \
    type acache_listing_item_##name(const acache_listing_item *it)                       \
    {                                                                                    \
        return it ? (expr) : (dflt);                                                     \
    }

GETTER(const char *, affinity_key, it->affinity_key, NULL)
GETTER(const char *, user_api_key_name, it->user_api_key_name, NULL)
GETTER(const char *, user_api_key_prefix, it->user_api_key_prefix, NULL)
GETTER(int, is_standalone, it->is_standalone, 0)
GETTER(const char *, user_id, it->user_id, NULL)
GETTER(const char *, username, it->username, NULL)
GETTER(const char *, email, it->email, NULL)
GETTER(const char *, provider_id, it->provider_id, NULL)
GETTER(const char *, provider_name, it->provider_name, NULL)
GETTER(const char *, endpoint_id, it->endpoint_id, NULL)
GETTER(const char *, endpoint_api_format, it->endpoint_api_format, NULL)
GETTER(const char *, endpoint_url, it->endpoint_url, NULL)
GETTER(const char *, key_id, it->key_id, NULL)
GETTER(const char *, key_name, it->key_name, NULL)
GETTER(const char *, key_prefix, it->key_prefix, NULL)
GETTER(double, rate_multiplier, it->rate_multiplier, 1.0)
GETTER(const char *, global_model_id, it->raw_model, NULL)
GETTER(const char *, model_name, it->model_name, NULL)
GETTER(const char *, model_display_name, it->model_display_name, NULL)
GETTER(const char *, api_format, it->api_format, NULL)
GETTER(double, created_at, it->created_at, 0.0)
GETTER(double, expire_at, it->expire_at, 0.0)
GETTER(int64_t, request_count, it->request_count, 0)

/* ---- JSON ---- */

static json_t *item_json(const acache_listing_item *it)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (acache__json_set(o, "affinity_key", acache__json_str(it->affinity_key)) < 0 ||
        acache__json_set(o, "user_api_key_name",
                         acache__json_str(it->user_api_key_name)) < 0 ||
        acache__json_set(o, "user_api_key_prefix",
                         acache__json_str(it->user_api_key_prefix)) < 0 ||
        acache__json_set(o, "is_standalone", json_boolean(it->is_standalone)) < 0 ||
        acache__json_set(o, "user_id", acache__json_str(it->user_id)) < 0 ||
        acache__json_set(o, "username", acache__json_str(it->username)) < 0 ||
        acache__json_set(o, "email", acache__json_str(it->email)) < 0 ||
        acache__json_set(o, "provider_id", acache__json_str(it->provider_id)) < 0 ||
        acache__json_set(o, "provider_name", acache__json_str(it->provider_name)) < 0 ||
        acache__json_set(o, "endpoint_id", acache__json_str(it->endpoint_id)) < 0 ||
        acache__json_set(o, "endpoint_api_format",
                         acache__json_str(it->endpoint_api_format)) < 0 ||
        acache__json_set(o, "endpoint_url", acache__json_str(it->endpoint_url)) < 0 ||
        acache__json_set(o, "key_id", acache__json_str(it->key_id)) < 0 ||
        acache__json_set(o, "key_name", acache__json_str(it->key_name)) < 0 ||
        acache__json_set(o, "key_prefix", acache__json_str(it->key_prefix)) < 0 ||
        acache__json_set(o, "rate_multiplier", json_real(it->rate_multiplier)) < 0 ||
        acache__json_set(o, "global_model_id", acache__json_str(it->raw_model)) < 0 ||
        acache__json_set(o, "model_name", acache__json_str(it->model_name)) < 0 ||
        acache__json_set(o, "model_display_name",
                         acache__json_str(it->model_display_name)) < 0 ||
        acache__json_set(o, "api_format", acache__json_str(it->api_format)) < 0 ||
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
static json_t *data_json(const acache_listing *l)
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

int acache_listing_to_json(acache_buf *out, const acache_listing *l)
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

int acache_list_affinities_json(acache_buf *out, acache *c, const char *keyword,
                                int64_t limit, int64_t offset)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "list_affinities_json: NULL out");
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    q.keyword = keyword;
    q.limit = limit;
    q.offset = offset;
    acache_listing *l = NULL;
    int rc = acache_list_affinities(&l, c, &q);
    if (rc < 0)
        return rc;
    json_t *body = json_object();
    json_t *data = data_json(l);
    acache_listing_free(l);
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
