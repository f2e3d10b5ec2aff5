/* The model-mapping cache (model-mapping.md): stats over the `model:*` and
 * `global_model:*` keys Aether's gateway writes, and clearing them. The
 * library never fills this cache. Store access is through the raw slots;
 * catalog joins are three batched look-ups (global_models by id, models by
 * global_model_id, providers by id), never one per entry.
 *
 * Keys and values come from a shared Redis that anyone may write to, so they
 * are bytes with a length everywhere here (a key may hold a NUL): never
 * strlen/strchr/strdup on them. The two scans bring the values with them
 * (SCAN + MGET, binary safe), so no key is read back by name: the store's
 * get/ttl slots take NUL-terminated names, and a truncated name would read
 * another key. The one slot that still needs a name is ttl: a key holding a
 * NUL gets ttl null (unknown) instead. The getters hand out NUL-terminated
 * copies (a C caller sees such a name up to its first NUL); the JSON output
 * keeps every byte. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../core/core.h"
#include "../crypto/crypto.h"
#include "../util/json.h"
#include "mapping_priv.h"

#define P_MODEL "model:"
#define P_MODEL_ID "model:id:"
#define P_PG "model:provider_global:"
#define P_PG_HITS "model:provider_global:hits:"
#define P_GM "global_model:"
#define P_GM_ID "global_model:id:"
#define P_GM_NAME "global_model:name:"
#define P_GM_RESOLVE "global_model:resolve:"
#define LIT_LEN(s) (sizeof(s) - 1)

#define NOT_ENABLED "Redis not enabled"
/* Aether's JSON of store values: any top-level value, "\u0000" allowed in
 * strings (Python's json.loads accepts both). */
#define STORE_JSON_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

/* A byte string: `p` is a heap copy with a NUL after the `n` bytes (for the
 * getters); p == NULL is JSON null. */
typedef struct bstr {
    char *p;
    size_t n;
} bstr;

typedef struct mm_mapping {
    bstr name, gm_id, gm_name, gm_display;
    char **providers; /* catalog display names */
    size_t nprov;
    int64_t ttl;
} mm_mapping;

typedef struct mm_unmapped {
    bstr name;
    int status;
    int64_t ttl;
} mm_unmapped;

typedef struct mm_pm {
    bstr provider_id, gm_id, pmn;
    char *provider_name, *gm_name, *gm_display; /* from the catalog */
    bstr *aliases;
    size_t nal;
    int64_t ttl, hits;
} mm_pm;

struct acache__model_mapping_stats {
    int available;
    char *message;
    uint32_t ttl_s;
    uint64_t breakdown[5];
    mm_mapping *maps;
    size_t nmaps;
    mm_unmapped *unm;
    size_t nunm;
    mm_pm *pms;
    size_t npms;
};

/* ---- small helpers ---- */

static int bs_set(bstr *b, const char *p, size_t n)
{
    b->p = NULL;
    b->n = 0;
    if (!p)
        return ACACHE_OK;
    if (!(b->p = acache__strndup(p, n)))
        return acache__oom();
    b->n = n;
    return ACACHE_OK;
}

static void bs_free(bstr *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

static int mem_cmp(const char *a, size_t an, const char *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    int r = n ? memcmp(a, b, n) : 0;
    return r ? r : (an > bn) - (an < bn);
}

/* Byte order, which for UTF-8 is Python's code point order. */
static int bs_cmp(const bstr *a, const bstr *b)
{
    return mem_cmp(a->p, a->n, b->p, b->n);
}

/* Bytes equal to a catalog string (catalog strings are NUL-terminated). */
static int bytes_eq_cstr(const char *p, size_t n, const char *c)
{
    return p && c && strlen(c) == n && (n == 0 || memcmp(p, c, n) == 0);
}

static int has_nul(const bstr *b)
{
    return b->p && memchr(b->p, '\0', b->n) != NULL;
}

/* A JSON string member as bytes; anything else is null. */
static int bs_json(bstr *b, json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return bs_set(b, json_string_value(v), json_string_length(v));
}

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

static int sv_push(strvec *s, const char *p, size_t len)
{
    if (acache__grow(&s->v, &s->cap, s->n, sizeof *s->v))
        return ACACHE_ENOMEM;
    char *d = acache__strndup(p, len);
    if (!d)
        return acache__oom();
    s->v[s->n++] = d;
    return ACACHE_OK;
}

static void sv_free(strvec *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* For catalog strings (NUL-terminated by the catalog vtable). */
static void sv_sort_unique(strvec *s)
{
    if (s->n < 2)
        return;
    qsort(s->v, s->n, sizeof *s->v, str_cmp);
    size_t w = 1;
    for (size_t i = 1; i < s->n; i++) {
        if (strcmp(s->v[i], s->v[w - 1]) == 0)
            free(s->v[i]);
        else
            s->v[w++] = s->v[i];
    }
    s->n = w;
}

static int has_prefix(const char *s, size_t len, const char *p, size_t pl)
{
    return len >= pl && memcmp(s, p, pl) == 0;
}

/* The feature gate: a store whose raw slots reach the gateway's keys (Redis;
 * the memory store is in-process, the gateway never writes there). Without
 * it the answer is Aether's "Redis not enabled". */
static int has_raw_keys(const acache *c)
{
    return (acache__store_caps(c->store) & ACACHE_STORE_CAP_RAW_KEYS) != 0;
}

static int check_slots(acache *c, const char *what)
{
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "%s: handle is NULL", what);
    acache_store *s = c->store;
    if (!s || !s->get || !s->del || !s->scan || !s->ttl)
        return acache_error_set(ACACHE_EUNSUPPORTED,
                                "%s: the store has no raw key access", what);
    return ACACHE_OK;
}

static char *dup_or_null(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *d = acache__strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

static int is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!memchr(" \t\r\n\f\v", p[i], 6))
            return 0;
    return 1;
}

/* Mapping names of a cached Model's provider_model_mappings (schema: entries
 * that are objects with a non-blank string `name`). */
static int mapping_names(json_t *arr, bstr **out, size_t *nout)
{
    size_t i, cap = 0;
    json_t *e;
    *out = NULL;
    *nout = 0;
    if (!json_is_array(arr))
        return ACACHE_OK;
    json_array_foreach(arr, i, e)
    {
        json_t *n = json_is_object(e) ? json_object_get(e, "name") : NULL;
        if (!json_is_string(n) || is_blank(json_string_value(n), json_string_length(n)))
            continue;
        if (acache__grow(out, &cap, *nout, sizeof **out))
            return ACACHE_ENOMEM;
        int rc = bs_set(&(*out)[*nout], json_string_value(n), json_string_length(n));
        if (rc < 0)
            return rc;
        (*nout)++;
    }
    return ACACHE_OK;
}

/* Whether a catalog Model's provider_model_mappings (JSON text) has an entry
 * named `name` (bytes). */
static int has_mapping_name(const char *mappings_json, const char *name, size_t nlen)
{
    if (!mappings_json)
        return 0;
    json_t *arr =
        json_loadb(mappings_json, strlen(mappings_json), STORE_JSON_FLAGS, NULL);
    int found = 0;
    size_t i;
    json_t *e;
    if (json_is_array(arr))
        json_array_foreach(arr, i, e)
        {
            json_t *n = json_is_object(e) ? json_object_get(e, "name") : NULL;
            if (json_is_string(n) &&
                mem_cmp(json_string_value(n), json_string_length(n), name, nlen) == 0) {
                found = 1;
                break;
            }
        }
    json_decref(arr);
    return found;
}

/* ---- stats: key census (pure: entries in, lists out) ---- */

/* One scanned key with its value (has_val 0: gone between SCAN and MGET). */
typedef struct raw {
    bstr key, val;
    int has_val;
    int family; /* census.seen only: the breakdown slot the key counts in */
    int64_t ttl;
} raw;

typedef struct rawvec {
    raw *v;
    size_t n, cap;
} rawvec;

static int rv_push(rawvec *r, const acache_entry *e)
{
    if (acache__grow(&r->v, &r->cap, r->n, sizeof *r->v))
        return ACACHE_ENOMEM;
    raw *x = &r->v[r->n];
    memset(x, 0, sizeof *x);
    x->ttl = -1;
    x->has_val = e->value != NULL;
    int rc = bs_set(&x->key, e->key, e->key_len);
    if (rc == ACACHE_OK && e->value)
        rc = bs_set(&x->val, e->value, e->value_len);
    if (rc < 0) {
        bs_free(&x->key);
        return rc;
    }
    r->n++;
    return ACACHE_OK;
}

static void rv_free(rawvec *r)
{
    for (size_t i = 0; i < r->n; i++) {
        bs_free(&r->v[i].key);
        bs_free(&r->v[i].val);
    }
    free(r->v);
    memset(r, 0, sizeof *r);
}

static int raw_cmp(const void *a, const void *b)
{
    return bs_cmp(&((const raw *)a)->key, &((const raw *)b)->key);
}

/* Sort by key, drop repeats (SCAN may return a key twice) and keep the first
 * `cap`: Aether takes the first 100 SCAN returns, an arbitrary order; sorting
 * first makes the choice deterministic. cap 0 keeps everything. */
static void rv_sort_cap(rawvec *r, size_t cap)
{
    if (r->n > 1)
        qsort(r->v, r->n, sizeof *r->v, raw_cmp);
    size_t w = 0;
    for (size_t i = 0; i < r->n; i++) {
        if ((w > 0 && raw_cmp(&r->v[i], &r->v[w - 1]) == 0) || (cap && w >= cap)) {
            bs_free(&r->v[i].key);
            bs_free(&r->v[i].val);
        } else {
            r->v[w++] = r->v[i];
        }
    }
    r->n = w;
}

typedef struct census {
    uint64_t breakdown[5];
    rawvec seen;    /* every counted key (no value): SCAN may repeat a key, so
                       the breakdown is counted over the distinct ones */
    rawvec resolve; /* global_model:resolve:* */
    rawvec pg;      /* provider_global keys whose remainder is exactly p:g */
    rawvec hits;    /* provider_global hits keys */
} census;

static void census_free(census *cs)
{
    rv_free(&cs->seen);
    rv_free(&cs->resolve);
    rv_free(&cs->pg);
    rv_free(&cs->hits);
}

/* Remember a counted key of breakdown slot `family` (its value is not kept). */
static int seen_push(census *cs, const acache_entry *e, int family)
{
    acache_entry k = {.key = e->key, .key_len = e->key_len};
    int rc = rv_push(&cs->seen, &k);
    if (rc == ACACHE_OK)
        cs->seen.v[cs->seen.n - 1].family = family;
    return rc;
}

/* The remainder after P_PG splits into exactly two parts at ':' (Python's
 * split(":") giving 2). Returns the offset of the colon in the key, or 0. */
static size_t pg_split(const char *k, size_t len)
{
    const char *rest = k + LIT_LEN(P_PG);
    size_t rlen = len - LIT_LEN(P_PG);
    const char *colon = memchr(rest, ':', rlen);
    if (!colon)
        return 0;
    size_t after = rlen - (size_t)(colon + 1 - rest);
    if (memchr(colon + 1, ':', after))
        return 0;
    return (size_t)(colon - k);
}

static int census_add(census *cs, const acache_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *k = e[i].key;
        size_t len = e[i].key_len;
        int rc = ACACHE_OK, family = -1;
        if (!k)
            continue;
        if (has_prefix(k, len, P_MODEL_ID, LIT_LEN(P_MODEL_ID))) {
            family = ACACHE_MM_MODEL_BY_ID;
        } else if (has_prefix(k, len, P_PG_HITS, LIT_LEN(P_PG_HITS))) {
            rc = rv_push(&cs->hits, &e[i]); /* not counted */
        } else if (has_prefix(k, len, P_PG, LIT_LEN(P_PG))) {
            family = ACACHE_MM_MODEL_BY_PROVIDER_GLOBAL;
            if (pg_split(k, len))
                rc = rv_push(&cs->pg, &e[i]);
        } else if (has_prefix(k, len, P_GM_ID, LIT_LEN(P_GM_ID))) {
            family = ACACHE_MM_GLOBAL_MODEL_BY_ID;
        } else if (has_prefix(k, len, P_GM_NAME, LIT_LEN(P_GM_NAME))) {
            family = ACACHE_MM_GLOBAL_MODEL_BY_NAME;
        } else if (has_prefix(k, len, P_GM_RESOLVE, LIT_LEN(P_GM_RESOLVE))) {
            family = ACACHE_MM_GLOBAL_MODEL_RESOLVE;
            rc = rv_push(&cs->resolve, &e[i]);
        }
        if (rc == ACACHE_OK && family >= 0)
            rc = seen_push(cs, &e[i], family);
        if (rc < 0)
            return rc;
    }
    return ACACHE_OK;
}

static int census_cb(const acache_entry *e, size_t n, void *payload)
{
    return census_add(payload, e, n);
}

/* Remaining TTLs of the listed keys (pipelined). A key holding a NUL cannot
 * be named to the ttl slot without naming another key: its ttl stays -1. */
static int fetch_ttls(acache_store *st, rawvec *r)
{
    if (r->n == 0)
        return ACACHE_OK;
    const char **keys = acache__calloc(r->n, sizeof *keys);
    size_t *idx = acache__calloc(r->n, sizeof *idx);
    int64_t *ttls = acache__calloc(r->n, sizeof *ttls);
    int rc = ACACHE_OK;
    if (!keys || !idx || !ttls) {
        rc = acache__oom();
        goto out;
    }
    size_t m = 0;
    for (size_t i = 0; i < r->n; i++)
        if (!has_nul(&r->v[i].key)) {
            keys[m] = r->v[i].key.p;
            idx[m++] = i;
        }
    if (m && (rc = st->ttl(st, keys, m, ttls)) == ACACHE_OK)
        for (size_t i = 0; i < m; i++)
            r->v[idx[i]].ttl = ttls[i];
out:
    free(keys);
    free(idx);
    free(ttls);
    return rc;
}

static int64_t ttl_or_null(int64_t t)
{
    return t > 0 ? t : -1;
}

/* ---- stats: classification (pure) ---- */

void acache__model_mapping_stats_free(acache__model_mapping_stats *s)
{
    if (!s)
        return;
    free(s->message);
    for (size_t i = 0; i < s->nmaps; i++) {
        mm_mapping *m = &s->maps[i];
        bs_free(&m->name);
        bs_free(&m->gm_id);
        bs_free(&m->gm_name);
        bs_free(&m->gm_display);
        for (size_t k = 0; k < m->nprov; k++)
            free(m->providers[k]);
        free(m->providers);
    }
    free(s->maps);
    for (size_t i = 0; i < s->nunm; i++)
        bs_free(&s->unm[i].name);
    free(s->unm);
    for (size_t i = 0; i < s->npms; i++) {
        mm_pm *p = &s->pms[i];
        bs_free(&p->provider_id);
        bs_free(&p->gm_id);
        bs_free(&p->pmn);
        free(p->provider_name);
        free(p->gm_name);
        free(p->gm_display);
        for (size_t k = 0; k < p->nal; k++)
            bs_free(&p->aliases[k]);
        free(p->aliases);
    }
    free(s->pms);
    free(s);
}

static int utf8_ok(const bstr *b)
{
    return acache__utf8_strict_valid((const unsigned char *)b->p, b->n);
}

/* Resolve entries, as Aether reads each one (model-mapping.md "Stats"):
 * - no value (gone) or an empty one: omitted (Aether skips a falsy value);
 * - not UTF-8: "error", ttl null (Aether's decode() raises);
 * - the text NOT_FOUND: "not_found";
 * - not JSON: "invalid";
 * - JSON but not an object (an array, a string, null...): "error", ttl
 *   null (Aether's `.get` on it raises into its per-entry handler);
 * - an object whose `name` is the resolve name: a direct match, skipped;
 * - any other object: a mapping. */
static int classify_resolve(acache__model_mapping_stats *s, const rawvec *r)
{
    if (r->n == 0)
        return ACACHE_OK;
    s->maps = acache__calloc(r->n, sizeof *s->maps);
    s->unm = acache__calloc(r->n, sizeof *s->unm);
    if (!s->maps || !s->unm)
        return acache__oom();
    for (size_t i = 0; i < r->n; i++) {
        const raw *x = &r->v[i];
        const char *name = x->key.p + LIT_LEN(P_GM_RESOLVE);
        size_t nlen = x->key.n - LIT_LEN(P_GM_RESOLVE);
        if (!x->has_val || x->val.n == 0)
            continue;
        int status = 0;
        int64_t ttl = ttl_or_null(x->ttl);
        json_t *gm = NULL;
        if (!utf8_ok(&x->val)) {
            status = ACACHE_MM_ERROR;
        } else if (mem_cmp(x->val.p, x->val.n, "NOT_FOUND", 9) == 0) {
            status = ACACHE_MM_NOT_FOUND;
        } else if (!(gm = json_loadb(x->val.p, x->val.n, STORE_JSON_FLAGS, NULL))) {
            status = ACACHE_MM_INVALID;
        } else if (!json_is_object(gm)) {
            status = ACACHE_MM_ERROR;
        }
        if (status) {
            json_decref(gm);
            mm_unmapped *u = &s->unm[s->nunm];
            int rc = bs_set(&u->name, name, nlen);
            if (rc < 0)
                return rc;
            u->status = status;
            u->ttl = status == ACACHE_MM_ERROR ? -1 : ttl;
            s->nunm++;
            continue;
        }
        json_t *gname = json_object_get(gm, "name");
        if (json_is_string(gname) &&
            mem_cmp(json_string_value(gname), json_string_length(gname), name, nlen) ==
                0) {
            json_decref(gm); /* a direct match, not a mapping */
            continue;
        }
        mm_mapping *m = &s->maps[s->nmaps++];
        int rc = bs_set(&m->name, name, nlen);
        if (rc == ACACHE_OK)
            rc = bs_json(&m->gm_id, gm, "id");
        if (rc == ACACHE_OK)
            rc = bs_json(&m->gm_name, gm, "name");
        if (rc == ACACHE_OK)
            rc = bs_json(&m->gm_display, gm, "display_name");
        m->ttl = ttl;
        json_decref(gm);
        if (rc < 0)
            return rc;
    }
    return ACACHE_OK;
}

/* Hit counter: integer text, 0 when absent or not an integer. */
static int64_t hit_count(const rawvec *hits, const raw *pg)
{
    size_t rlen = pg->key.n - LIT_LEN(P_PG);
    const char *rest = pg->key.p + LIT_LEN(P_PG);
    size_t lo = 0, hi = hits->n;
    const raw *h = NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const bstr *k = &hits->v[mid].key;
        int r = mem_cmp(k->p + LIT_LEN(P_PG_HITS), k->n - LIT_LEN(P_PG_HITS), rest, rlen);
        if (r == 0) {
            h = &hits->v[mid];
            break;
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    char buf[32];
    if (!h || !h->has_val || h->val.n == 0 || h->val.n >= sizeof buf ||
        memchr(h->val.p, '\0', h->val.n))
        return 0;
    memcpy(buf, h->val.p, h->val.n);
    buf[h->val.n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    return (end != buf && end == buf + h->val.n && errno == 0) ? v : 0;
}

/* provider_global entries with a non-empty provider_model_name (catalog
 * filtering happens in enrich). Values that are gone, empty, not UTF-8, not
 * JSON or not an object are skipped, as Aether does. */
static int classify_pg(acache__model_mapping_stats *s, const rawvec *pg,
                       const rawvec *hits)
{
    if (pg->n == 0)
        return ACACHE_OK;
    if (!(s->pms = acache__calloc(pg->n, sizeof *s->pms)))
        return acache__oom();
    for (size_t i = 0; i < pg->n; i++) {
        const raw *x = &pg->v[i];
        if (!x->has_val || x->val.n == 0 || !utf8_ok(&x->val))
            continue;
        json_t *m = json_loadb(x->val.p, x->val.n, STORE_JSON_FLAGS, NULL);
        json_t *pmn =
            json_is_object(m) ? json_object_get(m, "provider_model_name") : NULL;
        if (!json_is_string(pmn) || json_string_length(pmn) == 0) {
            json_decref(m);
            continue;
        }
        size_t colon = pg_split(x->key.p, x->key.n);
        const char *rest = x->key.p + LIT_LEN(P_PG);
        mm_pm *p = &s->pms[s->npms++];
        int rc = bs_set(&p->provider_id, rest, (size_t)(x->key.p + colon - rest));
        if (rc == ACACHE_OK)
            rc = bs_set(&p->gm_id, x->key.p + colon + 1, x->key.n - colon - 1);
        if (rc == ACACHE_OK)
            rc = bs_set(&p->pmn, json_string_value(pmn), json_string_length(pmn));
        if (rc == ACACHE_OK)
            rc = mapping_names(json_object_get(m, "provider_model_mappings"), &p->aliases,
                               &p->nal);
        json_decref(m);
        if (rc < 0)
            return rc;
        p->ttl = ttl_or_null(x->ttl);
        p->hits = hit_count(hits, x);
    }
    return ACACHE_OK;
}

/* ---- catalog joins ---- */

typedef struct cat_model {
    char *provider_id, *gm_id, *pmn, *mappings;
} cat_model;

typedef struct join {
    /* models by global_model_id (active only) */
    cat_model *models;
    size_t nmodels, capm;
    /* providers by id */
    acache_cat_provider *provs; /* strings owned */
    size_t nprovs, capp;
    /* global models by id */
    acache_cat_global_model *gms; /* strings owned */
    size_t ngms, capg;
} join;

/* Providers and global models are both (id, name, display_name) rows:
 * one copy and one free for the three strings of either. */
static int named_dup(const char **id, const char **name, const char **dn, const char *sid,
                     const char *sname, const char *sdn)
{
    int oom = 0;
    *id = dup_or_null(sid, &oom);
    *name = dup_or_null(sname, &oom);
    *dn = dup_or_null(sdn, &oom);
    return oom ? acache__oom() : 0;
}

static void named_free(const char *id, const char *name, const char *dn)
{
    free((char *)id);
    free((char *)name);
    free((char *)dn);
}

static int model_cb(const acache_cat_model *row, void *payload)
{
    join *j = payload;
    if (!row->is_active)
        return 0;
    if (acache__grow(&j->models, &j->capm, j->nmodels, sizeof *j->models))
        return ACACHE_ENOMEM;
    int oom = 0;
    cat_model *m = &j->models[j->nmodels++];
    m->provider_id = dup_or_null(row->provider_id, &oom);
    m->gm_id = dup_or_null(row->global_model_id, &oom);
    m->pmn = dup_or_null(row->provider_model_name, &oom);
    m->mappings = dup_or_null(row->provider_model_mappings, &oom);
    return oom ? acache__oom() : 0;
}

static int provider_cb(const acache_cat_provider *row, void *payload)
{
    join *j = payload;
    if (acache__grow(&j->provs, &j->capp, j->nprovs, sizeof *j->provs))
        return ACACHE_ENOMEM;
    acache_cat_provider *p = &j->provs[j->nprovs++];
    p->is_active = row->is_active;
    return named_dup(&p->id, &p->name, &p->display_name, row->id, row->name,
                     row->display_name);
}

static int gm_cb(const acache_cat_global_model *row, void *payload)
{
    join *j = payload;
    if (acache__grow(&j->gms, &j->capg, j->ngms, sizeof *j->gms))
        return ACACHE_ENOMEM;
    acache_cat_global_model *g = &j->gms[j->ngms++];
    g->is_active = row->is_active;
    return named_dup(&g->id, &g->name, &g->display_name, row->id, row->name,
                     row->display_name);
}

static void join_free(join *j)
{
    for (size_t i = 0; i < j->nmodels; i++) {
        free(j->models[i].provider_id);
        free(j->models[i].gm_id);
        free(j->models[i].pmn);
        free(j->models[i].mappings);
    }
    free(j->models);
    for (size_t i = 0; i < j->nprovs; i++)
        named_free(j->provs[i].id, j->provs[i].name, j->provs[i].display_name);
    free(j->provs);
    for (size_t i = 0; i < j->ngms; i++)
        named_free(j->gms[i].id, j->gms[i].name, j->gms[i].display_name);
    free(j->gms);
}

/* Look-ups by an id from the store (bytes): a catalog id never holds a NUL,
 * so an id from a key with one matches nothing rather than its prefix. */
static const acache_cat_provider *find_provider(const join *j, const bstr *id)
{
    for (size_t i = 0; id->p && i < j->nprovs; i++)
        if (bytes_eq_cstr(id->p, id->n, j->provs[i].id))
            return &j->provs[i];
    return NULL;
}

static const acache_cat_global_model *find_gm(const join *j, const bstr *id)
{
    for (size_t i = 0; id->p && i < j->ngms; i++)
        if (bytes_eq_cstr(id->p, id->n, j->gms[i].id))
            return &j->gms[i];
    return NULL;
}

static const acache_cat_provider *find_provider_c(const join *j, const char *id)
{
    for (size_t i = 0; id && i < j->nprovs; i++)
        if (j->provs[i].id && strcmp(j->provs[i].id, id) == 0)
            return &j->provs[i];
    return NULL;
}

static const char *provider_label(const acache_cat_provider *p)
{
    return p->display_name && *p->display_name ? p->display_name : p->name;
}

/* Push a store id usable as a catalog look-up key (non-empty, no NUL). */
static int push_id(strvec *v, const bstr *id)
{
    if (!id->p || id->n == 0 || has_nul(id))
        return ACACHE_OK;
    return sv_push(v, id->p, id->n);
}

static void pm_dispose(mm_pm *p)
{
    bs_free(&p->provider_id);
    bs_free(&p->gm_id);
    bs_free(&p->pmn);
    free(p->provider_name);
    free(p->gm_name);
    free(p->gm_display);
    for (size_t k = 0; k < p->nal; k++)
        bs_free(&p->aliases[k]);
    free(p->aliases);
    memset(p, 0, sizeof *p);
}

static int str_or_empty_cmp(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

/* (provider_name, global_model_name) as Aether sorts; the ids break ties so
 * the order does not depend on qsort (without a catalog all names are null). */
static int pm_cmp(const void *a, const void *b)
{
    const mm_pm *x = a, *y = b;
    int r = str_or_empty_cmp(x->provider_name, y->provider_name);
    if (!r)
        r = str_or_empty_cmp(x->gm_name, y->gm_name);
    if (!r)
        r = bs_cmp(&x->provider_id, &y->provider_id);
    return r ? r : bs_cmp(&x->gm_id, &y->gm_id);
}

static int map_cmp(const void *a, const void *b)
{
    return bs_cmp(&((const mm_mapping *)a)->name, &((const mm_mapping *)b)->name);
}

static int unm_cmp(const void *a, const void *b)
{
    return bs_cmp(&((const mm_unmapped *)a)->name, &((const mm_unmapped *)b)->name);
}

/* The three batched catalog look-ups, then providers per mapping and the
 * provider_global filter. `cat` may be NULL (no catalog). */
static int enrich(acache__model_mapping_stats *s, acache_catalog *cat)
{
    join j = {0};
    strvec gm_ids = {0}, prov_ids = {0}, pm_gm_ids = {0};
    int rc = ACACHE_OK;
    if (cat) {
        for (size_t i = 0; i < s->nmaps && rc == ACACHE_OK; i++)
            rc = push_id(&gm_ids, &s->maps[i].gm_id);
        sv_sort_unique(&gm_ids);
        if (rc == ACACHE_OK && gm_ids.n && cat->models)
            rc = cat->models(cat, ACACHE_BY_GLOBAL_MODEL_ID,
                             (const char *const *)gm_ids.v, gm_ids.n, model_cb, &j);
        for (size_t i = 0; i < j.nmodels && rc == ACACHE_OK; i++)
            if (j.models[i].provider_id)
                rc = sv_push(&prov_ids, j.models[i].provider_id,
                             strlen(j.models[i].provider_id));
        for (size_t i = 0; i < s->npms && rc == ACACHE_OK; i++) {
            rc = push_id(&prov_ids, &s->pms[i].provider_id);
            if (rc == ACACHE_OK)
                rc = push_id(&pm_gm_ids, &s->pms[i].gm_id);
        }
        sv_sort_unique(&prov_ids);
        sv_sort_unique(&pm_gm_ids);
        if (rc == ACACHE_OK && prov_ids.n && cat->providers)
            rc = cat->providers(cat, ACACHE_BY_ID, (const char *const *)prov_ids.v,
                                prov_ids.n, provider_cb, &j);
        if (rc == ACACHE_OK && pm_gm_ids.n && cat->global_models)
            rc = cat->global_models(cat, ACACHE_BY_ID, (const char *const *)pm_gm_ids.v,
                                    pm_gm_ids.n, gm_cb, &j);
        if (rc < 0)
            goto out;
    }

    /* mappings: providers with an active Model for that GlobalModel whose
     * provider_model_name or mapping names include the mapping name. */
    for (size_t i = 0; i < s->nmaps && rc == ACACHE_OK; i++) {
        mm_mapping *m = &s->maps[i];
        strvec names = {0};
        for (size_t k = 0; k < j.nmodels && rc == ACACHE_OK && m->gm_id.p; k++) {
            cat_model *cm = &j.models[k];
            if (!bytes_eq_cstr(m->gm_id.p, m->gm_id.n, cm->gm_id))
                continue;
            if (!(bytes_eq_cstr(m->name.p, m->name.n, cm->pmn) ||
                  has_mapping_name(cm->mappings, m->name.p, m->name.n)))
                continue;
            const acache_cat_provider *p = find_provider_c(&j, cm->provider_id);
            if (!p || !p->is_active || !provider_label(p))
                continue;
            rc = sv_push(&names, provider_label(p), strlen(provider_label(p)));
        }
        sv_sort_unique(&names);
        m->providers = names.v;
        m->nprov = names.n;
    }
    if (rc < 0)
        goto out;

    /* provider_model_mappings: shown only when provider and GlobalModel exist
     * and are active and the Model really maps something. Without a catalog
     * nothing can be checked: entries are listed with catalog fields NULL. */
    size_t w = 0;
    for (size_t i = 0; i < s->npms; i++) {
        mm_pm *p = &s->pms[i];
        int keep = 1, oom = 0;
        if (cat) {
            const acache_cat_provider *pv = find_provider(&j, &p->provider_id);
            const acache_cat_global_model *g = find_gm(&j, &p->gm_id);
            keep =
                pv && pv->is_active && g && g->is_active &&
                (p->nal > 0 || !g->name || !bytes_eq_cstr(p->pmn.p, p->pmn.n, g->name));
            if (keep) {
                p->provider_name = dup_or_null(provider_label(pv), &oom);
                p->gm_name = dup_or_null(g->name, &oom);
                p->gm_display = dup_or_null(g->display_name, &oom);
                if (!oom && p->nal == 0 && g->name) {
                    p->aliases = acache__calloc(1, sizeof *p->aliases);
                    if (p->aliases &&
                        bs_set(&p->aliases[0], g->name, strlen(g->name)) == 0)
                        p->nal = 1;
                    else
                        oom = 1;
                }
            }
        }
        if (oom) {
            rc = acache__oom();
            /* keep the entries so they are freed with the snapshot */
            s->pms[w++] = *p;
            for (size_t k = i + 1; k < s->npms; k++)
                s->pms[w++] = s->pms[k];
            s->npms = w;
            goto out;
        }
        if (keep)
            s->pms[w++] = *p;
        else
            pm_dispose(p);
    }
    s->npms = w;
    if (s->npms > 1)
        qsort(s->pms, s->npms, sizeof *s->pms, pm_cmp);
out:
    join_free(&j);
    sv_free(&gm_ids);
    sv_free(&prov_ids);
    sv_free(&pm_gm_ids);
    return rc;
}

/* ---- stats ---- */

/* Census lists (capped, TTLs filled) to a finished snapshot. */
static int build(acache__model_mapping_stats *s, census *cs, acache_catalog *cat)
{
    memcpy(s->breakdown, cs->breakdown, sizeof s->breakdown);
    int rc = classify_resolve(s, &cs->resolve);
    if (rc == ACACHE_OK)
        rc = classify_pg(s, &cs->pg, &cs->hits);
    if (rc == ACACHE_OK)
        rc = enrich(s, cat);
    if (rc < 0)
        return rc;
    if (s->nmaps > 1)
        qsort(s->maps, s->nmaps, sizeof *s->maps, map_cmp);
    if (s->nunm > 1)
        qsort(s->unm, s->nunm, sizeof *s->unm, unm_cmp);
    return ACACHE_OK;
}

static void census_cap(census *cs, size_t cap)
{
    rv_sort_cap(&cs->seen, 0); /* distinct keys */
    memset(cs->breakdown, 0, sizeof cs->breakdown);
    for (size_t i = 0; i < cs->seen.n; i++)
        cs->breakdown[cs->seen.v[i].family]++;
    rv_sort_cap(&cs->resolve, cap);
    rv_sort_cap(&cs->pg, cap);
    rv_sort_cap(&cs->hits, 0); /* sorted for hit_count's binary search */
}

int acache__model_mapping_stats_from_entries(acache__model_mapping_stats **out,
                                             const acache_entry *entries, size_t n,
                                             acache_catalog *cat, uint32_t ttl_seconds,
                                             size_t cap, int64_t ttl)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "model mapping stats: out is NULL");
    *out = NULL;
    acache__model_mapping_stats *s = acache__calloc(1, sizeof *s);
    if (!s)
        return acache__oom();
    s->available = 1;
    s->ttl_s = ttl_seconds;
    census cs;
    memset(&cs, 0, sizeof cs);
    int rc = census_add(&cs, entries, n);
    if (rc == ACACHE_OK) {
        census_cap(&cs, cap ? cap : 100);
        for (size_t i = 0; i < cs.resolve.n; i++)
            cs.resolve.v[i].ttl = ttl;
        for (size_t i = 0; i < cs.pg.n; i++)
            cs.pg.v[i].ttl = ttl;
        rc = build(s, &cs, cat);
    }
    census_free(&cs);
    if (rc < 0) {
        acache__model_mapping_stats_free(s);
        return rc;
    }
    *out = s;
    return ACACHE_OK;
}

static int stats_impl(acache__model_mapping_stats **out, acache *c)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "model mapping stats: out is NULL");
    *out = NULL;
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "model mapping stats: handle is NULL");
    acache__model_mapping_stats *s = acache__calloc(1, sizeof *s);
    if (!s)
        return acache__oom();
    s->ttl_s = c->mapping_ttl_s;
    if (!has_raw_keys(c)) {
        if (!(s->message = acache__strdup(NOT_ENABLED))) {
            free(s);
            return acache__oom();
        }
        *out = s;
        return ACACHE_OK;
    }
    int rc = check_slots(c, "model mapping stats");
    if (rc < 0) {
        acache__model_mapping_stats_free(s);
        return rc;
    }
    s->available = 1;
    census cs;
    memset(&cs, 0, sizeof cs);
    /* With values: nothing is read back by (NUL-terminated) name. */
    rc = c->store->scan(c->store, P_MODEL, 1, census_cb, &cs);
    if (rc == ACACHE_OK)
        rc = c->store->scan(c->store, P_GM, 1, census_cb, &cs);
    if (rc == ACACHE_OK) {
        census_cap(&cs, c->mapping_list_cap ? c->mapping_list_cap : 100);
        rc = fetch_ttls(c->store, &cs.resolve);
    }
    if (rc == ACACHE_OK)
        rc = fetch_ttls(c->store, &cs.pg);
    if (rc == ACACHE_OK)
        rc = build(s, &cs, c->catalog);
    census_free(&cs);
    if (rc < 0) {
        acache__model_mapping_stats_free(s);
        return rc;
    }
    *out = s;
    return ACACHE_OK;
}

int acache__model_mapping_stats_get(acache__model_mapping_stats **out, acache *c)
{
    return stats_impl(out, c);
}

/* ---- stats JSON ---- */

static json_t *ttl_json(int64_t t)
{
    return t > 0 ? json_integer(t) : json_null();
}

static json_t *bs_json_str(const bstr *b)
{
    return acache__json_strn(b->p, b->n);
}

static json_t *cstr_array(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, acache__json_str(v[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *bstr_array(const bstr *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, bs_json_str(&v[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static const char *unmapped_status_text(int st)
{
    switch (st) {
    case ACACHE_MM_NOT_FOUND:
        return "not_found";
    case ACACHE_MM_INVALID:
        return "invalid";
    default:
        return "error";
    }
}

/* `data` in Aether's key order: available, ttl_seconds, total_keys,
 * breakdown, mappings, provider_model_mappings, unmapped. */
static json_t *stats_data(const acache__model_mapping_stats *s)
{
    json_t *d = json_object();
    if (!d)
        return NULL;
    int bad = 0;
    bad |= acache__json_set(d, "available", json_boolean(s->available));
    if (!s->available) {
        bad |= acache__json_set(d, "message", acache__json_str(s->message));
        if (bad) {
            json_decref(d);
            return NULL;
        }
        return d;
    }
    uint64_t total = 0;
    for (int i = 0; i < 5; i++)
        total += s->breakdown[i];
    json_t *b = json_object();
    static const char *const bk[5] = {"model_by_id", "model_by_provider_global",
                                      "global_model_by_id", "global_model_by_name",
                                      "global_model_resolve"};
    for (int i = 0; b && i < 5; i++)
        bad |= acache__json_set(b, bk[i], json_integer((json_int_t)s->breakdown[i]));
    bad |= acache__json_set(d, "ttl_seconds", json_integer(s->ttl_s));
    bad |= acache__json_set(d, "total_keys", json_integer((json_int_t)total));
    bad |= acache__json_set(d, "breakdown", b);

    json_t *maps = json_array();
    for (size_t i = 0; maps && i < s->nmaps && !bad; i++) {
        const mm_mapping *m = &s->maps[i];
        json_t *o = json_object();
        if (!o) {
            bad = 1;
            break;
        }
        bad |= acache__json_set(o, "mapping_name", bs_json_str(&m->name));
        bad |= acache__json_set(o, "global_model_name", bs_json_str(&m->gm_name));
        bad |=
            acache__json_set(o, "global_model_display_name", bs_json_str(&m->gm_display));
        bad |= acache__json_set(o, "providers", cstr_array(m->providers, m->nprov));
        bad |= acache__json_set(o, "ttl", ttl_json(m->ttl));
        bad |= json_array_append_new(maps, o);
    }
    bad |= acache__json_set(d, "mappings", maps);

    json_t *pms = s->npms ? json_array() : json_null();
    for (size_t i = 0; pms && i < s->npms && !bad; i++) {
        const mm_pm *p = &s->pms[i];
        json_t *o = json_object();
        if (!o) {
            bad = 1;
            break;
        }
        bad |= acache__json_set(o, "provider_id", bs_json_str(&p->provider_id));
        bad |= acache__json_set(o, "provider_name", acache__json_str(p->provider_name));
        bad |= acache__json_set(o, "global_model_id", bs_json_str(&p->gm_id));
        bad |= acache__json_set(o, "global_model_name", acache__json_str(p->gm_name));
        bad |= acache__json_set(o, "global_model_display_name",
                                acache__json_str(p->gm_display));
        bad |= acache__json_set(o, "provider_model_name", bs_json_str(&p->pmn));
        bad |= acache__json_set(o, "aliases", bstr_array(p->aliases, p->nal));
        bad |= acache__json_set(o, "ttl", ttl_json(p->ttl));
        bad |= acache__json_set(o, "hit_count", json_integer(p->hits));
        bad |= json_array_append_new(pms, o);
    }
    bad |= acache__json_set(d, "provider_model_mappings", pms);

    json_t *unm = s->nunm ? json_array() : json_null();
    for (size_t i = 0; unm && i < s->nunm && !bad; i++) {
        json_t *o = json_object();
        if (!o) {
            bad = 1;
            break;
        }
        bad |= acache__json_set(o, "mapping_name", bs_json_str(&s->unm[i].name));
        bad |= acache__json_set(o, "status",
                                json_string(unmapped_status_text(s->unm[i].status)));
        bad |= acache__json_set(o, "ttl", ttl_json(s->unm[i].ttl));
        bad |= json_array_append_new(unm, o);
    }
    bad |= acache__json_set(d, "unmapped", unm);
    if (bad) {
        json_decref(d);
        return NULL;
    }
    return d;
}

int acache__model_mapping_stats_render(acache_buf *out,
                                       const acache__model_mapping_stats *s)
{
    if (!out || !s)
        return acache_error_set(ACACHE_EINVALID, "model mapping stats: NULL argument");
    json_t *root = json_object(), *d = stats_data(s);
    if (!root || !d || acache__json_set(root, "status", json_string("ok")) < 0) {
        json_decref(root);
        json_decref(d);
        return acache__oom();
    }
    if (acache__json_set(root, "data", d) < 0) {
        json_decref(root);
        return acache__oom();
    }
    int rc = acache__json_dump(out, root, 0);
    json_decref(root);
    return rc;
}

static int stats_json_impl(acache_buf *out, acache *c)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "model mapping stats: out is NULL");
    acache__model_mapping_stats *s = NULL;
    int rc = stats_impl(&s, c);
    if (rc < 0)
        return rc;
    rc = acache__model_mapping_stats_render(out, s);
    acache__model_mapping_stats_free(s);
    return rc;
}

int acache_model_mapping_stats(acache_buf *out, acache *c)
{
    return stats_json_impl(out, c);
}

/* ---- getters ---- */

#define S_OK(s) ((s) != NULL)

int acache__model_mapping_stats_available(const acache__model_mapping_stats *s)
{
    return S_OK(s) ? s->available : 0;
}

const char *acache__model_mapping_stats_message(const acache__model_mapping_stats *s)
{
    return S_OK(s) ? s->message : NULL;
}

uint32_t acache__model_mapping_stats_ttl_seconds(const acache__model_mapping_stats *s)
{
    return S_OK(s) ? s->ttl_s : 0;
}

uint64_t acache__model_mapping_stats_total_keys(const acache__model_mapping_stats *s)
{
    uint64_t t = 0;
    for (int i = 0; S_OK(s) && i < 5; i++)
        t += s->breakdown[i];
    return t;
}

uint64_t acache__model_mapping_stats_breakdown(const acache__model_mapping_stats *s,
                                               int family)
{
    return S_OK(s) && family >= 0 && family < 5 ? s->breakdown[family] : 0;
}

size_t acache__model_mapping_stats_mapping_count(const acache__model_mapping_stats *s)
{
    return S_OK(s) ? s->nmaps : 0;
}

#define MAP(s, i) (S_OK(s) && (i) < (s)->nmaps ? &(s)->maps[i] : NULL)

const char *acache__model_mapping_stats_mapping_name(const acache__model_mapping_stats *s,
                                                     size_t i)
{
    const mm_mapping *m = MAP(s, i);
    return m ? m->name.p : NULL;
}

const char *acache__model_mapping_stats_mapping_global_model_name(
    const acache__model_mapping_stats *s, size_t i)
{
    const mm_mapping *m = MAP(s, i);
    return m ? m->gm_name.p : NULL;
}

const char *acache__model_mapping_stats_mapping_global_model_display_name(
    const acache__model_mapping_stats *s, size_t i)
{
    const mm_mapping *m = MAP(s, i);
    return m ? m->gm_display.p : NULL;
}

size_t
acache__model_mapping_stats_mapping_provider_count(const acache__model_mapping_stats *s,
                                                   size_t i)
{
    const mm_mapping *m = MAP(s, i);
    return m ? m->nprov : 0;
}

const char *
acache__model_mapping_stats_mapping_provider(const acache__model_mapping_stats *s,
                                             size_t i, size_t j)
{
    const mm_mapping *m = MAP(s, i);
    return m && j < m->nprov ? m->providers[j] : NULL;
}

int64_t acache__model_mapping_stats_mapping_ttl(const acache__model_mapping_stats *s,
                                                size_t i)
{
    const mm_mapping *m = MAP(s, i);
    return m ? m->ttl : -1;
}

size_t acache__model_mapping_stats_unmapped_count(const acache__model_mapping_stats *s)
{
    return S_OK(s) ? s->nunm : 0;
}

const char *
acache__model_mapping_stats_unmapped_name(const acache__model_mapping_stats *s, size_t i)
{
    return S_OK(s) && i < s->nunm ? s->unm[i].name.p : NULL;
}

int acache__model_mapping_stats_unmapped_status(const acache__model_mapping_stats *s,
                                                size_t i)
{
    return S_OK(s) && i < s->nunm ? s->unm[i].status : 0;
}

int64_t acache__model_mapping_stats_unmapped_ttl(const acache__model_mapping_stats *s,
                                                 size_t i)
{
    return S_OK(s) && i < s->nunm ? s->unm[i].ttl : -1;
}

size_t acache__model_mapping_stats_pm_count(const acache__model_mapping_stats *s)
{
    return S_OK(s) ? s->npms : 0;
}

#define PM(s, i) (S_OK(s) && (i) < (s)->npms ? &(s)->pms[i] : NULL)

const char *
acache__model_mapping_stats_pm_provider_id(const acache__model_mapping_stats *s, size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->provider_id.p : NULL;
}

const char *
acache__model_mapping_stats_pm_provider_name(const acache__model_mapping_stats *s,
                                             size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->provider_name : NULL;
}

const char *
acache__model_mapping_stats_pm_global_model_id(const acache__model_mapping_stats *s,
                                               size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->gm_id.p : NULL;
}

const char *
acache__model_mapping_stats_pm_global_model_name(const acache__model_mapping_stats *s,
                                                 size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->gm_name : NULL;
}

const char *acache__model_mapping_stats_pm_global_model_display_name(
    const acache__model_mapping_stats *s, size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->gm_display : NULL;
}

const char *
acache__model_mapping_stats_pm_provider_model_name(const acache__model_mapping_stats *s,
                                                   size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->pmn.p : NULL;
}

size_t acache__model_mapping_stats_pm_alias_count(const acache__model_mapping_stats *s,
                                                  size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->nal : 0;
}

const char *acache__model_mapping_stats_pm_alias(const acache__model_mapping_stats *s,
                                                 size_t i, size_t j)
{
    const mm_pm *p = PM(s, i);
    return p && j < p->nal ? p->aliases[j].p : NULL;
}

int64_t acache__model_mapping_stats_pm_ttl(const acache__model_mapping_stats *s, size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->ttl : -1;
}

int64_t acache__model_mapping_stats_pm_hit_count(const acache__model_mapping_stats *s,
                                                 size_t i)
{
    const mm_pm *p = PM(s, i);
    return p ? p->hits : 0;
}

/* ---- clearing ---- */

static int gate(acache *c, const char *what)
{
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "%s: handle is NULL", what);
    if (!has_raw_keys(c))
        return acache_error_set(ACACHE_EUNSUPPORTED, "%s: " NOT_ENABLED, what);
    return check_slots(c, what);
}

typedef struct keyvec {
    bstr *v;
    size_t n, cap;
} keyvec;

static int collect_keys_cb(const acache_entry *e, size_t n, void *payload)
{
    keyvec *v = payload;
    for (size_t i = 0; i < n; i++) {
        if (acache__grow(&v->v, &v->cap, v->n, sizeof *v->v))
            return ACACHE_ENOMEM;
        int rc = bs_set(&v->v[v->n], e[i].key, e[i].key_len);
        if (rc < 0)
            return rc;
        v->n++;
    }
    return 0;
}

static int clear_all_impl(size_t *deleted, acache *c)
{
    if (deleted)
        *deleted = 0;
    int rc = gate(c, "model mapping clear");
    if (rc < 0)
        return rc;
    /* Collect first, then delete: deleting while a SCAN is open is allowed
     * on Redis but would make the memory store's snapshot semantics matter.
     * Keys keep their lengths: one holding a NUL is deleted too. */
    keyvec keys = {0};
    rc = c->store->scan(c->store, P_MODEL, 0, collect_keys_cb, &keys);
    if (rc == ACACHE_OK)
        rc = c->store->scan(c->store, P_GM, 0, collect_keys_cb, &keys);
    size_t total = 0;
    for (size_t i = 0; i < keys.n && rc == ACACHE_OK; i += 500) {
        size_t n = keys.n - i < 500 ? keys.n - i : 500, d = 0;
        acache_key batch[500];
        for (size_t j = 0; j < n; j++)
            batch[j] = (acache_key){keys.v[i + j].p, keys.v[i + j].n};
        rc = c->store->del(c->store, batch, n, &d);
        total += d;
    }
    for (size_t i = 0; i < keys.n; i++)
        bs_free(&keys.v[i]);
    free(keys.v);
    if (deleted)
        *deleted = total;
    return rc;
}

/* Delete each key on its own so the caller learns which ones existed. The
 * keys are built from the caller's NUL-terminated names. */
static int del_each(acache *c, const char *const *keys, size_t n, unsigned int *bits)
{
    *bits = 0;
    for (size_t i = 0; i < n; i++) {
        size_t d = 0;
        acache_key k = {keys[i], strlen(keys[i])};
        int rc = c->store->del(c->store, &k, 1, &d);
        if (rc < 0)
            return rc;
        if (d)
            *bits |= 1u << i;
    }
    return ACACHE_OK;
}

static int clear_model_impl(unsigned int *cleared, acache *c, const char *name)
{
    if (cleared)
        *cleared = 0;
    int rc = gate(c, "model mapping clear");
    if (rc < 0)
        return rc;
    if (!name || !*name)
        return acache_error_set(ACACHE_EINVALID, "model mapping clear: empty model name");
    char *k0 = acache__sprintf("%s%s", P_GM_RESOLVE, name);
    char *k1 = acache__sprintf("%s%s", P_GM_NAME, name);
    unsigned int bits = 0;
    if (!k0 || !k1)
        rc = ACACHE_ENOMEM;
    else
        rc = del_each(c, (const char *const[]){k0, k1}, 2, &bits);
    free(k0);
    free(k1);
    if (cleared)
        *cleared = bits;
    return rc;
}

static int clear_provider_impl(unsigned int *cleared, acache *c, const char *provider_id,
                               const char *global_model_id)
{
    if (cleared)
        *cleared = 0;
    int rc = gate(c, "model mapping clear");
    if (rc < 0)
        return rc;
    if (!provider_id || !*provider_id || !global_model_id || !*global_model_id)
        return acache_error_set(
            ACACHE_EINVALID, "model mapping clear: empty provider_id or global_model_id");
    char *k0 = acache__sprintf("%s%s:%s", P_PG, provider_id, global_model_id);
    char *k1 = acache__sprintf("%s%s:%s", P_PG_HITS, provider_id, global_model_id);
    unsigned int bits = 0;
    if (!k0 || !k1)
        rc = ACACHE_ENOMEM;
    else
        rc = del_each(c, (const char *const[]){k0, k1}, 2, &bits);
    free(k0);
    free(k1);
    if (cleared)
        *cleared = bits;
    return rc;
}

int acache__model_mapping_clear_all(size_t *deleted, acache *c)
{
    return clear_all_impl(deleted, c);
}

int acache__model_mapping_clear_model(unsigned int *cleared, acache *c,
                                      const char *model_name)
{
    return clear_model_impl(cleared, c, model_name);
}

int acache__model_mapping_clear_provider(unsigned int *cleared, acache *c,
                                         const char *provider_id,
                                         const char *global_model_id)
{
    return clear_provider_impl(cleared, c, provider_id, global_model_id);
}

/* ---- clearing JSON ---- */

static int dump_owned(acache_buf *out, json_t *o, int bad)
{
    int rc = (bad || !o) ? acache__oom() : acache__json_dump(out, o, 0);
    json_decref(o);
    return rc;
}

static int clear_all_json_impl(acache_buf *out, acache *c)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "model mapping clear: out is NULL");
    size_t n = 0;
    int rc = clear_all_impl(&n, c);
    if (rc < 0)
        return rc;
    char *msg = acache__sprintf("Cleared %zu model mapping cache keys", n);
    json_t *o = json_object();
    int bad = !msg || !o;
    if (o) {
        bad |= acache__json_set(o, "status", json_string("ok"));
        bad |= acache__json_set(o, "message", acache__json_str(msg));
        bad |= acache__json_set(o, "deleted_count", json_integer((json_int_t)n));
    }
    free(msg);
    return dump_owned(out, o, bad);
}

/* deleted_keys: the keys that existed, in the order they were named. */
static json_t *deleted_keys(unsigned int bits, const char *k0, const char *k1)
{
    json_t *a = json_array();
    if (a && (bits & 1u) && json_array_append_new(a, acache__json_str(k0)) < 0)
        goto fail;
    if (a && (bits & 2u) && json_array_append_new(a, acache__json_str(k1)) < 0)
        goto fail;
    return a;
fail:
    json_decref(a);
    return NULL;
}

static int clear_model_json_impl(acache_buf *out, acache *c, const char *name)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "model mapping clear: out is NULL");
    unsigned int bits = 0;
    int rc = clear_model_impl(&bits, c, name);
    if (rc < 0)
        return rc;
    char *k0 = acache__sprintf("%s%s", P_GM_RESOLVE, name);
    char *k1 = acache__sprintf("%s%s", P_GM_NAME, name);
    char *msg = acache__sprintf("Cleared model mapping cache for %s", name);
    json_t *o = json_object();
    int bad = !k0 || !k1 || !msg || !o;
    if (!bad) {
        bad |= acache__json_set(o, "status", json_string("ok"));
        bad |= acache__json_set(o, "message", acache__json_str(msg));
        bad |= acache__json_set(o, "model_name", acache__json_str(name));
        bad |= acache__json_set(o, "deleted_keys", deleted_keys(bits, k0, k1));
    }
    free(k0);
    free(k1);
    free(msg);
    return dump_owned(out, o, bad);
}

static int clear_provider_json_impl(acache_buf *out, acache *c, const char *provider_id,
                                    const char *global_model_id)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "model mapping clear: out is NULL");
    unsigned int bits = 0;
    int rc = clear_provider_impl(&bits, c, provider_id, global_model_id);
    if (rc < 0)
        return rc;
    char *k0 = acache__sprintf("%s%s:%s", P_PG, provider_id, global_model_id);
    char *k1 = acache__sprintf("%s%s:%s", P_PG_HITS, provider_id, global_model_id);
    char *msg = acache__sprintf("Cleared provider model mapping cache for %s:%s",
                                provider_id, global_model_id);
    json_t *o = json_object();
    int bad = !k0 || !k1 || !msg || !o;
    if (!bad) {
        bad |= acache__json_set(o, "status", json_string("ok"));
        bad |= acache__json_set(o, "message", acache__json_str(msg));
        bad |= acache__json_set(o, "provider_id", acache__json_str(provider_id));
        bad |= acache__json_set(o, "global_model_id", acache__json_str(global_model_id));
        bad |= acache__json_set(o, "deleted_keys", deleted_keys(bits, k0, k1));
    }
    free(k0);
    free(k1);
    free(msg);
    return dump_owned(out, o, bad);
}

int acache_model_mapping_clear_all(acache_buf *out, acache *c)
{
    return clear_all_json_impl(out, c);
}

int acache_model_mapping_clear_model(acache_buf *out, acache *c, const char *model_name)
{
    return clear_model_json_impl(out, c, model_name);
}

int acache_model_mapping_clear_provider(acache_buf *out, acache *c,
                                        const char *provider_id,
                                        const char *global_model_id)
{
    return clear_provider_json_impl(out, c, provider_id, global_model_id);
}
