/* Gateway hot path and raw admin operations on affinities. */
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define DELETE_BATCH 500

typedef struct {
    const char *key;
    acache_affinity *out;
} build_ctx;

static void build_cb(const acache_record *rec, void *payload)
{
    build_ctx *b = payload;
    b->out = acache__affinity_from_record(rec, b->key, strlen(b->key));
}

static void drop_expired(acache *c, const acache_affinity *a, const char *key)
{
    /* Compare-and-delete on the expired pin's own provider/endpoint/key, so a
     * concurrent touch that switched it survives. (A refresh of the same pin
     * racing here is lost: it would itself have seen an expired pin.) */
    const acache_key keys[1] = {{key, strlen(key)}};
    size_t n = 0;
    acache_match m = {acache_affinity_provider_id(a), acache_affinity_endpoint_id(a),
                      acache_affinity_key_id(a)};
    acache__deferred_forget(c, keys, 1);
    c->store->affinity_delete_if(c->store, keys, 1, &m, &n);
}

int acache_affinity_get(acache_affinity **out, acache *c, const char *affinity_key,
                        const char *api_format, const char *model_name)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID, "acache_affinity_get: NULL argument");
    *out = NULL;
    int rc;
    char kbuf[ACACHE__KEYBUF];
    char *key = acache__affinity_storage_key(kbuf, sizeof kbuf, affinity_key, api_format,
                                             model_name, &rc);
    if (!key)
        return rc;
    size_t klen = strlen(key);
    acache_affinity *a = c->l1 ? acache__l1_get(c->l1, key, klen) : NULL;
    /* The hit's expiry check may err early, never late (acache__now_late):
     * a pin about to expire is looked up in the store with the precise clock. */
    if (a && acache_affinity_expire_at(a) <= acache__now_late(c)) {
        acache__l1_remove(c->l1, key);
        acache_affinity_free(a);
        a = NULL;
    }
    if (!a) {
        double now = acache__now(c);
        uint64_t epoch = c->l1 ? acache__l1_epoch(c->l1, key, klen) : 0;
        build_ctx b = {key, NULL};
        rc = c->store->affinity_get(c->store, key, build_cb, &b);
        if (rc == ACACHE_OK && !b.out)
            rc = ACACHE_ENOMEM;
        if (rc == ACACHE_ERROR) {
            /* Unreadable value: Aether treats it as no pin. */
            atomic_fetch_add(&c->malformed_records, 1);
            rc = ACACHE_ENOTFOUND;
        }
        if (rc == ACACHE_OK && acache_affinity_expire_at(b.out) <= now) {
            drop_expired(c, b.out, key);
            acache_affinity_free(b.out);
            b.out = NULL;
            rc = ACACHE_ENOTFOUND;
        }
        if (rc == ACACHE_ENOTFOUND) {
            atomic_fetch_add(&c->cache_misses, 1);
            ACACHE__KEY_FREE(key, kbuf);
            return acache_error_set(ACACHE_ENOTFOUND, "no live affinity for %s:%s:%s",
                                    affinity_key, api_format, model_name);
        }
        if (rc) {
            ACACHE__KEY_FREE(key, kbuf);
            return rc;
        }
        a = b.out;
        if (c->l1)
            acache__l1_put(c->l1, key, klen, a, epoch);
    }
    ACACHE__KEY_FREE(key, kbuf);
    atomic_fetch_add(&c->cache_hits, 1);
    *out = a;
    return ACACHE_OK;
}

int acache_affinity_touch(acache_touch_result *result, acache *c, const acache_touch *t)
{
    if (result)
        *result = ACACHE_TOUCH_SKIPPED;
    if (!c || !t)
        return acache_error_set(ACACHE_EINVALID, "acache_affinity_touch: NULL argument");
    if (t->version == 0 || t->version > ACACHE_TOUCH_VERSION)
        return acache_error_set(ACACHE_EINVALID, "acache_touch version %u unknown",
                                t->version);
    int rc;
    char kbuf[ACACHE__KEYBUF];
    char *key = acache__affinity_storage_key(kbuf, sizeof kbuf, t->affinity_key,
                                             t->api_format, t->model_name, &rc);
    if (!key)
        return rc;
    if ((rc = acache__check_field("provider_id", t->provider_id, 0)) ||
        (rc = acache__check_field("endpoint_id", t->endpoint_id, 0)) ||
        (rc = acache__check_field("key_id", t->key_id, 0))) {
        ACACHE__KEY_FREE(key, kbuf);
        return rc;
    }
    if (!t->supports_caching) {
        ACACHE__KEY_FREE(key, kbuf);
        return ACACHE_OK;
    }
    acache_touch_req req = {
        .key = key,
        .provider_id = t->provider_id,
        .endpoint_id = t->endpoint_id,
        .key_id = t->key_id,
        .api_format = t->api_format,
        .model_name = t->model_name,
        .now = acache__now(c),
        .ttl_s = t->ttl_s ? t->ttl_s : c->default_ttl_s,
    };
    int outcome = 0;
    if (c->deferred) {
        /* A known live pin of the same target: counted locally, applied by
         * the flusher (lib/core/deferred.c). The L1 copy stays: same target. */
        if (acache__deferred_touch(c, &req)) {
            ACACHE__KEY_FREE(key, kbuf);
            atomic_fetch_add(&c->refreshed, 1);
            if (result)
                *result = ACACHE_TOUCH_REFRESHED;
            return ACACHE_OK;
        }
        /* Synchronous: this pin's pending touches go first, in order. */
        if ((rc = acache__deferred_before_sync(c, &req))) {
            ACACHE__KEY_FREE(key, kbuf);
            return rc;
        }
    }
    rc = c->store->affinity_touch(c->store, &req, &outcome, NULL, NULL);
    if (!rc && c->deferred)
        acache__deferred_after_sync(c, &req);
    /* Forget rather than fill: concurrent touches may finish in any order, and
     * only the store knows the latest count. The next get refills. */
    if (c->l1)
        acache__l1_remove(c->l1, key);
    ACACHE__KEY_FREE(key, kbuf);
    if (rc)
        return rc;
    outcome = acache__touch_count(c, outcome);
    if (result)
        *result = (acache_touch_result)outcome;
    return ACACHE_OK;
}

int acache__touch_count(acache *c, int outcome)
{
    switch (outcome) {
    case ACACHE_TOUCH_CREATED:
        atomic_fetch_add(&c->total_affinities, 1);
        break;
    case ACACHE_TOUCH_SWITCHED_PROVIDER:
        /* also a key switch: key_switches counts every switch, as Aether's */
        atomic_fetch_add(&c->provider_switches, 1);
        atomic_fetch_add(&c->key_switches, 1);
        outcome = ACACHE_TOUCH_SWITCHED;
        break;
    case ACACHE_TOUCH_SWITCHED:
        atomic_fetch_add(&c->key_switches, 1);
        break;
    case ACACHE_TOUCH_REFRESHED:
        atomic_fetch_add(&c->refreshed, 1); /* fleet counters */
        break;
    default:
        break;
    }
    return outcome;
}

int acache__affinity_set(acache_touch_result *result, acache *c, const char *affinity_key,
                         const char *api_format, const char *model_name,
                         const char *provider_id, const char *endpoint_id,
                         const char *key_id, int supports_caching, uint32_t ttl_s)
{
    acache_touch t = ACACHE_TOUCH_INIT;
    t.affinity_key = affinity_key;
    t.api_format = api_format;
    t.model_name = model_name;
    t.provider_id = provider_id;
    t.endpoint_id = endpoint_id;
    t.key_id = key_id;
    t.supports_caching = supports_caching;
    t.ttl_s = ttl_s;
    return acache_affinity_touch(result, c, &t);
}

int acache_affinity_invalidate(acache *c, const char *affinity_key,
                               const char *api_format, const char *model_name,
                               const char *key_id, const char *provider_id,
                               const char *endpoint_id)
{
    if (!c)
        return acache_error_set(ACACHE_EINVALID,
                                "acache_affinity_invalidate: NULL handle");
    int rc;
    char kbuf[ACACHE__KEYBUF];
    char *key = acache__affinity_storage_key(kbuf, sizeof kbuf, affinity_key, api_format,
                                             model_name, &rc);
    if (!key)
        return rc;
    acache_match m = {provider_id, endpoint_id, key_id};
    const acache_key keys[1] = {{key, strlen(key)}};
    size_t n = 0;
    if (c->l1)
        acache__l1_remove(c->l1, key);
    /* A pin past its expire_at is no pin, even while its Redis key lives on
     * (Aether reads it through get_affinity, which answers none): reap it as
     * get does and report not found. */
    build_ctx b = {key, NULL};
    rc = c->store->affinity_get(c->store, key, build_cb, &b);
    if (rc == ACACHE_OK && !b.out)
        rc = ACACHE_ENOMEM;
    if (rc == ACACHE_OK && acache_affinity_expire_at(b.out) <= acache__now(c)) {
        drop_expired(c, b.out, key);
        rc = ACACHE_ENOTFOUND;
    } else if (rc == ACACHE_OK || rc == ACACHE_ERROR) {
        /* Live, or unreadable (deleted only when no filter is given): the
         * store compares and deletes atomically. */
        acache__deferred_forget(c, keys, 1);
        rc = c->store->affinity_delete_if(c->store, keys, 1, &m, &n);
        if (!rc && n == 0)
            rc = ACACHE_ENOTFOUND;
    }
    acache_affinity_free(b.out);
    /* Again after the delete, whatever it answered: a get of this handle that
     * read the store before the delete must not cache the pin back. The bump
     * of the stripe's epoch makes its fill drop (l1.c). */
    if (c->l1)
        acache__l1_remove(c->l1, key);
    ACACHE__KEY_FREE(key, kbuf);
    if (rc == ACACHE_ENOTFOUND)
        return acache_error_set(ACACHE_ENOTFOUND,
                                "no live affinity %s:%s:%s matching the given filters",
                                affinity_key, api_format, model_name);
    if (rc)
        return rc;
    atomic_fetch_add(&c->cache_invalidations, 1);
    return ACACHE_OK;
}

/* ---- enumeration ---- */

typedef int (*take_cb)(acache_affinity *a, void *payload); /* takes ownership */

typedef struct {
    acache *c;
    double now;
    acache_affinity_cb cb; /* borrows each record... */
    take_cb take;          /* ...or keeps it (saves a copy per record) */
    void *payload;
    int stop;
} walk_ctx;

static int walk_batch(const acache_entry *e, size_t n, void *payload)
{
    walk_ctx *w = payload;
    for (size_t i = 0; i < n; i++) {
        if (!e[i].record) {
            atomic_fetch_add(&w->c->malformed_records, 1);
            continue;
        }
        if (e[i].record->expire_at <= w->now)
            continue;
        acache_affinity *a =
            acache__affinity_from_record(e[i].record, e[i].key, e[i].key_len);
        if (!a)
            return ACACHE_ENOMEM;
        int rc;
        if (w->take) {
            rc = w->take(a, w->payload);
        } else {
            rc = w->cb(a, w->payload);
            acache_affinity_free(a);
        }
        if (rc) {
            w->stop = 1;
            return rc;
        }
    }
    return 0;
}

/* Literal key prefix for one client key (or all). */
static char *scan_prefix(const char *affinity_key, int *rc)
{
    *rc = ACACHE_OK;
    if (!affinity_key)
        return acache__strdup(ACACHE_AFFINITY_PREFIX);
    if ((*rc = acache__check_field("affinity_key", affinity_key, 1)))
        return NULL;
    char *p = acache__sprintf("%s%s:", ACACHE_AFFINITY_PREFIX, affinity_key);
    if (!p)
        *rc = ACACHE_ENOMEM;
    return p;
}

static int walk(acache *c, const char *affinity_key, acache_affinity_cb cb, take_cb take,
                void *payload)
{
    int rc;
    char *prefix = scan_prefix(affinity_key, &rc);
    if (!prefix)
        return rc ? rc : acache__oom();
    walk_ctx w = {c, acache__now(c), cb, take, payload, 0};
    rc = c->store->affinity_scan(c->store, prefix, walk_batch, &w);
    free(prefix);
    return rc;
}

int acache__affinity_walk(acache *c, const char *affinity_key, acache_affinity_cb cb,
                          void *payload)
{
    return walk(c, affinity_key, cb, NULL, payload);
}

int acache_affinity_foreach(acache *c, const char *affinity_key, acache_affinity_cb cb,
                            void *payload)
{
    if (!c || !cb)
        return acache_error_set(ACACHE_EINVALID,
                                "acache_affinity_foreach: NULL argument");
    return acache__affinity_walk(c, affinity_key, cb, payload);
}

struct acache__affinity_list {
    acache_affinity **items;
    size_t n, cap;
};

static int list_add(acache_affinity *a, void *payload)
{
    acache__affinity_list *l = payload;
    if (acache__grow(&l->items, &l->cap, l->n, sizeof *l->items)) {
        acache_affinity_free(a);
        return ACACHE_ENOMEM;
    }
    l->items[l->n++] = a;
    return 0;
}

static int cmp_str(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "");
}

int acache__affinity_cmp_key(const acache_affinity *a, const acache_affinity *b)
{
    int r = cmp_str(acache_affinity_client_key(a), acache_affinity_client_key(b));
    if (!r)
        r = cmp_str(acache_affinity_api_format(a), acache_affinity_api_format(b));
    if (!r)
        r = cmp_str(acache_affinity_model_name(a), acache_affinity_model_name(b));
    return r;
}

static int cmp_items(const void *x, const void *y)
{
    return acache__affinity_cmp_key(*(acache_affinity *const *)x,
                                    *(acache_affinity *const *)y);
}

int acache__affinity_list_fetch(acache__affinity_list **out, acache *c,
                                const char *affinity_key)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID, "acache__affinity_list: NULL argument");
    *out = NULL;
    acache__affinity_list *l = acache__calloc(1, sizeof *l);
    if (!l)
        return acache__oom();
    int rc = walk(c, affinity_key, NULL, list_add, l);
    if (rc) {
        acache__affinity_list_free(l);
        return rc;
    }
    if (l->n > 1)
        qsort(l->items, l->n, sizeof *l->items, cmp_items);
    *out = l;
    return ACACHE_OK;
}

size_t acache__affinity_list_count(const acache__affinity_list *l)
{
    return l ? l->n : 0;
}

const acache_affinity *acache__affinity_list_at(const acache__affinity_list *l, size_t i)
{
    return l && i < l->n ? l->items[i] : NULL;
}

void acache__affinity_list_free(acache__affinity_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        acache_affinity_free(l->items[i]);
    free(l->items);
    free(l);
}

/* ---- bulk invalidation: scan keys, delete in batches ---- */

typedef struct {
    acache *c;
    const acache_match *match; /* NULL: delete every scanned key */
    const char *needle;        /* raw scans: the one filter's "\"value\"" as JSON bytes */
    size_t needle_len;
    size_t skip[256]; /* Horspool shifts for `needle` */
    size_t removed;
    acache_key keys[DELETE_BATCH]; /* with lengths: a scanned key may hold a NUL */
    char *owned[DELETE_BATCH];
    size_t n;
} bulk_ctx;

static int bulk_flush(bulk_ctx *b)
{
    if (!b->n)
        return ACACHE_OK;
    size_t d = 0;
    acache__deferred_forget(b->c, b->keys, b->n);
    int rc = b->c->store->affinity_delete_if(b->c->store, b->keys, b->n, b->match, &d);
    for (size_t i = 0; i < b->n; i++)
        free(b->owned[i]);
    b->n = 0;
    b->removed += d;
    return rc;
}

/* Whether a raw JSON value may have a string field equal to the quoted
 * `needle`. Without any backslash in the value every JSON string is its bytes
 * between quotes, so a value lacking the quoted bytes cannot match; a value
 * with escapes is passed on (false positives only cost a re-check). */
static int may_name(const char *v, size_t len, const char *needle, size_t nlen,
                    const size_t skip[256])
{
    if (memchr(v, '\\', len))
        return 1;
    /* Horspool: the needle starts with a quote, the commonest byte of JSON,
     * so a memchr for its first byte stopped ~30 times per value. */
    const unsigned char *t = (const unsigned char *)v;
    for (size_t at = 0; nlen && at + nlen <= len;) {
        unsigned char last = t[at + nlen - 1];
        if (last == (unsigned char)needle[nlen - 1] &&
            memcmp(t + at, needle, nlen - 1) == 0)
            return 1;
        at += skip[last];
    }
    return 0;
}

static void horspool_init(size_t skip[256], const char *needle, size_t nlen)
{
    for (int i = 0; i < 256; i++)
        skip[i] = nlen;
    for (size_t i = 0; i + 1 < nlen; i++)
        skip[(unsigned char)needle[i]] = nlen - 1 - i;
}

static int field_is(const char *want, const char *have)
{
    return !want || (have && strcmp(want, have) == 0);
}

/* Pre-filter of a parsed scan entry (the store's delete re-checks). */
static int record_matches(const acache_record *r, const acache_match *m)
{
    return r && field_is(m->provider_id, r->provider_id) &&
           field_is(m->endpoint_id, r->endpoint_id) && field_is(m->key_id, r->key_id);
}

static int bulk_batch(const acache_entry *e, size_t n, void *payload)
{
    bulk_ctx *b = payload;
    for (size_t i = 0; i < n; i++) {
        /* Pre-filter on the scanned value; the store re-checks atomically. */
        if (b->match && b->needle) {
            if (!e[i].value ||
                !may_name(e[i].value, e[i].value_len, b->needle, b->needle_len, b->skip))
                continue;
        } else if (b->match && !record_matches(e[i].record, b->match)) {
            continue;
        }
        char *k = acache__strndup(e[i].key, e[i].key_len);
        if (!k)
            return acache__oom();
        b->owned[b->n] = k;
        b->keys[b->n].ptr = k;
        b->keys[b->n++].len = e[i].key_len;
        if (b->n == DELETE_BATCH) {
            int rc = bulk_flush(b);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* `count`: add the removals to cache_invalidations (clear-all does not, as
 * Aether's clear_all does not). On failure `*removed` and the counter hold the
 * removals the store confirmed; the batch in flight (at most DELETE_BATCH
 * keys) may have been applied too, unreported. */
static int bulk_invalidate(acache *c, const char *affinity_key, const acache_match *m,
                           int count, size_t *removed)
{
    int rc;
    char *prefix = scan_prefix(affinity_key, &rc);
    if (!prefix)
        return rc ? rc : acache__oom();
    bulk_ctx *b = acache__calloc(1, sizeof *b);
    if (!b) {
        free(prefix);
        return acache__oom();
    }
    b->c = c;
    b->match = m;
    /* Without a filter every scanned key goes, whatever its value: scan keys
     * only (no MGET, no JSON parsing) when the store can. With a provider
     * filter on a store whose values are the JSON bytes (CAP_JSON_VALUES), a
     * byte pre-filter replaces parsing every value (the store's atomic delete
     * decides anyway). */
    char *needle = NULL;
    /* One filter (provider, endpoint or provider key): its quoted value is
     * the byte needle. */
    const char *only = !m                                                ? NULL
                       : m->provider_id && !m->endpoint_id && !m->key_id ? m->provider_id
                       : !m->provider_id && m->endpoint_id && !m->key_id ? m->endpoint_id
                       : !m->provider_id && !m->endpoint_id && m->key_id ? m->key_id
                                                                         : NULL;
    int raw_filter = only && c->store->scan &&
                     (acache__store_caps(c->store) & ACACHE_STORE_CAP_JSON_VALUES);
    if (raw_filter && !(needle = acache__sprintf("\"%s\"", only))) {
        free(b);
        free(prefix);
        return ACACHE_ENOMEM;
    }
    b->needle = needle;
    b->needle_len = needle ? strlen(needle) : 0;
    if (needle)
        horspool_init(b->skip, needle, b->needle_len);
    if (!m && c->store->scan)
        rc = c->store->scan(c->store, prefix, 0, bulk_batch, b);
    else if (needle)
        rc = c->store->scan(c->store, prefix, 1, bulk_batch, b);
    else
        rc = c->store->affinity_scan(c->store, prefix, bulk_batch, b);
    free(needle);
    int rc2 = bulk_flush(b);
    if (!rc)
        rc = rc2;
    for (size_t i = 0; i < b->n; i++)
        free(b->owned[i]);
    /* Bulk removals can hit any cached pin: forget them all. */
    if (c->l1)
        acache__l1_clear(c->l1);
    if (removed)
        *removed = b->removed;
    if (count)
        atomic_fetch_add(&c->cache_invalidations, b->removed);
    free(b);
    free(prefix);
    return rc;
}

int acache__affinity_invalidate_api_key(size_t *removed, acache *c,
                                        const char *affinity_key)
{
    if (removed)
        *removed = 0;
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "NULL handle");
    int rc = acache__check_field("affinity_key", affinity_key, 1);
    return rc ? rc : bulk_invalidate(c, affinity_key, NULL, 1, removed);
}

int acache__invalidate_api_keys(acache *c, const char *const *affinity_keys, size_t n,
                                size_t *removed)
{
    size_t total = 0;
    int rc = ACACHE_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        size_t r = 0;
        /* A key id with ':' cannot own pins (writes reject it): skip it. */
        if (!affinity_keys[i] || !*affinity_keys[i] || strchr(affinity_keys[i], ':'))
            continue;
        rc = bulk_invalidate(c, affinity_keys[i], NULL, 1, &r);
        total += r;
    }
    if (removed)
        *removed = total;
    return rc;
}

int acache__affinity_invalidate_provider(size_t *removed, acache *c,
                                         const char *provider_id)
{
    if (removed)
        *removed = 0;
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "NULL handle");
    int rc = acache__check_field("provider_id", provider_id, 0);
    if (rc)
        return rc;
    acache_match m = {provider_id, NULL, NULL};
    return bulk_invalidate(c, NULL, &m, 1, removed);
}

int acache__affinity_invalidate_key(size_t *removed, acache *c, const char *key_id)
{
    if (removed)
        *removed = 0;
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "NULL handle");
    int rc = acache__check_field("key_id", key_id, 0);
    if (rc)
        return rc;
    acache_match m = {NULL, NULL, key_id};
    return bulk_invalidate(c, NULL, &m, 1, removed);
}

int acache__affinity_invalidate_endpoint(size_t *removed, acache *c,
                                         const char *endpoint_id)
{
    if (removed)
        *removed = 0;
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "NULL handle");
    int rc = acache__check_field("endpoint_id", endpoint_id, 0);
    if (rc)
        return rc;
    acache_match m = {NULL, endpoint_id, NULL};
    return bulk_invalidate(c, NULL, &m, 1, removed);
}

int acache__affinity_clear_all(size_t *removed, acache *c)
{
    if (removed)
        *removed = 0;
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "NULL handle");
    return bulk_invalidate(c, NULL, NULL, 0, removed);
}
