/* memory:// — the embedded store: one process, no server.
 *
 * Records are kept parsed (acache_affinity) so the hot path never touches
 * JSON; raw values (model-mapping keys, Aether JSON loaded by tests) are kept
 * as bytes. 64 shards, each a chained hash table under its own mutex, so
 * threads touching different pins rarely contend. Expiry follows Redis:
 * a deadline on the monotonic clock, checked lazily on access. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/core.h"

#define NSHARDS 64

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    int64_t deadline_ms;  /* 0 = no expiry */
    acache_affinity *rec; /* parsed affinity, or NULL */
    char *raw;            /* raw bytes, or NULL (rendered from rec on demand) */
    size_t raw_len;
    uint32_t failures; /* consecutive transient failures (affinity_fail); a
                          touch writes a new entry, so it starts at 0 */
    size_t key_len;
    char key[];
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    entry **buckets;
    size_t nbuckets, count;
} shard;

typedef struct memory_store {
    acache_store parent;
    shard shards[NSHARDS];
} memory_store;

static uint64_t hash_key(const char *s, size_t len)
{
    return acache__hash(s, len);
}

static shard *shard_for(memory_store *m, uint64_t h)
{
    return &m->shards[(h >> 58) % NSHARDS];
}

static void entry_free(entry *e)
{
    if (!e)
        return;
    acache_affinity_free(e->rec);
    free(e->raw);
    free(e);
}

static int expired(const entry *e, int64_t now_ms)
{
    return e->deadline_ms && e->deadline_ms <= now_ms;
}

/* Find (and reap if expired) under the shard lock. Returns the slot pointer. */
static entry **find_slot(shard *s, const char *key, size_t len, uint64_t h)
{
    if (!s->nbuckets)
        return NULL;
    entry **pp = &s->buckets[h & (s->nbuckets - 1)];
    int64_t now = acache__monotonic_ms();
    while (*pp) {
        entry *e = *pp;
        if (expired(e, now)) {
            *pp = e->next;
            s->count--;
            entry_free(e);
            continue;
        }
        if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0)
            return pp;
        pp = &e->next;
    }
    return NULL;
}

static int grow(shard *s)
{
    size_t n = s->nbuckets ? s->nbuckets * 2 : 64;
    entry **nb = acache__calloc(n, sizeof *nb);
    if (!nb)
        return acache__oom();
    for (size_t i = 0; i < s->nbuckets; i++) {
        entry *e = s->buckets[i];
        while (e) {
            entry *next = e->next;
            e->next = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
    return ACACHE_OK;
}

/* Insert or replace; takes ownership of e on success. */
static int put(shard *s, entry *e)
{
    entry **pp = find_slot(s, e->key, e->key_len, e->hash);
    if (pp) {
        entry *old = *pp;
        e->next = old->next;
        *pp = e;
        entry_free(old);
        return ACACHE_OK;
    }
    if (s->count + 1 > s->nbuckets) {
        int rc = grow(s);
        if (rc)
            return rc;
    }
    entry **b = &s->buckets[e->hash & (s->nbuckets - 1)];
    e->next = *b;
    *b = e;
    s->count++;
    return ACACHE_OK;
}

static entry *entry_new(const char *key, size_t len, uint64_t h, uint32_t ttl_s)
{
    entry *e = acache__calloc(1, sizeof *e + len + 1);
    if (!e) {
        acache__oom();
        return NULL;
    }
    memcpy(e->key, key, len);
    e->key[len] = '\0';
    e->key_len = len;
    e->hash = h;
    e->deadline_ms = ttl_s ? acache__monotonic_ms() + (int64_t)ttl_s * 1000 : 0;
    return e;
}

static int is_affinity_key(const char *key, size_t len)
{
    size_t p = sizeof ACACHE_AFFINITY_PREFIX - 1;
    return len >= p && memcmp(key, ACACHE_AFFINITY_PREFIX, p) == 0;
}

static void parsed_cb(const acache_record *rec, void *payload)
{
    entry *e = payload;
    e->rec = acache__affinity_from_record(rec, e->key, e->key_len);
}

/* ---- affinity slots ---- */

static int m_affinity_get(acache_store *self, const char *key, acache_record_cb cb,
                          void *payload)
{
    memory_store *m = (memory_store *)self;
    size_t len = strlen(key);
    uint64_t h = hash_key(key, len);
    shard *s = shard_for(m, h);
    int rc = ACACHE_ENOTFOUND;
    pthread_mutex_lock(&s->lock);
    entry **pp = find_slot(s, key, len, h);
    if (pp && (*pp)->rec) {
        acache_record rec;
        acache__affinity_to_record((*pp)->rec, &rec);
        cb(&rec, payload);
        rc = ACACHE_OK;
    } else if (pp) {
        rc = acache_error_set(ACACHE_ERROR,
                              "memory: value of %s is not a readable affinity", key);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int m_affinity_touch(acache_store *self, const acache_touch_req *req, int *result,
                            acache_record_cb cb, void *payload)
{
    memory_store *m = (memory_store *)self;
    size_t len = strlen(req->key);
    uint64_t h = hash_key(req->key, len);
    shard *s = shard_for(m, h);
    acache_record rec = {
        .provider_id = req->provider_id,
        .endpoint_id = req->endpoint_id,
        .key_id = req->key_id,
        .api_format = req->api_format,
        .model_name = req->model_name,
        .created_at = req->now,
        .expire_at = req->now + req->ttl_s,
        .request_count = 1,
    };
    /* count_delta: a deferred flush applies many touches at once (at most
     * 10^15, see ACACHE_STORE_CAP_TOUCH_DELTA). */
    if (req->count_delta > UINT64_C(1000000000000000))
        return acache_error_set(ACACHE_EINVALID, "touch count delta above 10^15");
    int64_t delta = req->count_delta ? (int64_t)req->count_delta : 1;
    rec.request_count = delta;
    pthread_mutex_lock(&s->lock);
    entry **pp = find_slot(s, req->key, len, h);
    const acache_affinity *old = pp ? (*pp)->rec : NULL;
    *result = ACACHE_TOUCH_CREATED;
    if (old && acache_affinity_expire_at(old) > req->now) {
        if (strcmp(acache_affinity_provider_id(old), req->provider_id) == 0 &&
            strcmp(acache_affinity_endpoint_id(old), req->endpoint_id) == 0 &&
            strcmp(acache_affinity_key_id(old), req->key_id) == 0) {
            rec.created_at = acache_affinity_created_at(old);
            /* Saturate: a count at INT64_MAX (another writer's value) must
             * not overflow (undefined behaviour), as the Redis script does. */
            int64_t was = acache_affinity_request_count(old);
            rec.request_count = was > INT64_MAX - delta ? INT64_MAX : was + delta;
            *result = ACACHE_TOUCH_REFRESHED;
        } else if (strcmp(acache_affinity_provider_id(old), req->provider_id) != 0) {
            *result = ACACHE_TOUCH_SWITCHED_PROVIDER;
        } else {
            *result = ACACHE_TOUCH_SWITCHED;
        }
    }
    /* The key's entry is rewritten in place (a touch leaves no raw bytes and
     * no failure count): a refresh allocates only the new record. */
    int rc = ACACHE_OK;
    if (pp && *result == ACACHE_TOUCH_REFRESHED && !(*pp)->raw &&
        acache__affinity_refresh((*pp)->rec, rec.expire_at, rec.request_count)) {
        /* the hot case: same target, a record only this entry holds */
        entry *e = *pp;
        e->failures = 0;
        e->deadline_ms =
            req->ttl_s ? acache__monotonic_ms() + (int64_t)req->ttl_s * 1000 : 0;
        pthread_mutex_unlock(&s->lock);
        if (cb)
            cb(&rec, payload);
        return ACACHE_OK;
    }
    acache_affinity *nrec = acache__affinity_from_record(&rec, req->key, len);
    if (!nrec) {
        rc = ACACHE_ENOMEM;
    } else if (pp) {
        entry *e = *pp;
        acache_affinity_free(e->rec);
        free(e->raw);
        e->rec = nrec;
        e->raw = NULL;
        e->raw_len = 0;
        e->failures = 0;
        e->deadline_ms =
            req->ttl_s ? acache__monotonic_ms() + (int64_t)req->ttl_s * 1000 : 0;
    } else {
        entry *e = entry_new(req->key, len, h, req->ttl_s);
        if (e) {
            e->rec = nrec;
            if ((rc = put(s, e)))
                entry_free(e);
        } else {
            acache_affinity_free(nrec);
            rc = ACACHE_ENOMEM;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (rc)
        return rc;
    if (cb)
        cb(&rec, payload);
    return ACACHE_OK;
}

static int field_matches(const char *want, const char *have)
{
    return !want || (have && strcmp(want, have) == 0);
}

static int m_affinity_delete_if(acache_store *self, const acache_key *keys, size_t n,
                                const acache_match *mt, size_t *deleted)
{
    memory_store *m = (memory_store *)self;
    int any_filter = mt && (mt->provider_id || mt->endpoint_id || mt->key_id);
    *deleted = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = hash_key(keys[i].ptr, keys[i].len);
        shard *s = shard_for(m, h);
        pthread_mutex_lock(&s->lock);
        entry **pp = find_slot(s, keys[i].ptr, keys[i].len, h);
        if (pp) {
            entry *e = *pp;
            int match = !any_filter;
            if (any_filter && e->rec)
                match =
                    field_matches(mt->provider_id, acache_affinity_provider_id(e->rec)) &&
                    field_matches(mt->endpoint_id, acache_affinity_endpoint_id(e->rec)) &&
                    field_matches(mt->key_id, acache_affinity_key_id(e->rec));
            if (match) {
                *pp = e->next;
                s->count--;
                entry_free(e);
                (*deleted)++;
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    return ACACHE_OK;
}

/* Pin lifecycle: count a failure on the live pin to exactly req's target,
 * dropping it at max_failures; the whole step under the shard lock. */
static int m_affinity_fail(acache_store *self, const acache_fail_req *req, int *result,
                           uint32_t *failures)
{
    memory_store *m = (memory_store *)self;
    size_t len = strlen(req->key);
    uint64_t h = hash_key(req->key, len);
    shard *s = shard_for(m, h);
    *result = ACACHE_FAIL_NOT_PINNED;
    *failures = 0;
    pthread_mutex_lock(&s->lock);
    entry **pp = find_slot(s, req->key, len, h);
    entry *e = pp ? *pp : NULL;
    if (e && e->rec && acache_affinity_expire_at(e->rec) > req->now &&
        strcmp(acache_affinity_provider_id(e->rec), req->provider_id) == 0 &&
        strcmp(acache_affinity_endpoint_id(e->rec), req->endpoint_id) == 0 &&
        strcmp(acache_affinity_key_id(e->rec), req->key_id) == 0) {
        *failures = e->failures + 1;
        if (*failures >= req->max_failures) {
            *pp = e->next;
            s->count--;
            entry_free(e);
            *result = ACACHE_FAIL_DROPPED;
        } else {
            e->failures = *failures;
            *result = ACACHE_FAIL_KEPT;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ACACHE_OK;
}

/* ---- scans: snapshot one shard under its lock, call back without it ---- */

typedef struct snap {
    entry **items;
    size_t n, cap;
} snap;

static entry *entry_copy(const entry *e, int with_values)
{
    entry *c = acache__calloc(1, sizeof *c + e->key_len + 1);
    if (!c)
        return NULL;
    memcpy(c->key, e->key, e->key_len + 1);
    c->key_len = e->key_len;
    if (with_values && e->rec && !(c->rec = acache__affinity_dup(e->rec)))
        goto fail;
    if (with_values && e->raw) {
        if (!(c->raw = acache__malloc(e->raw_len + 1)))
            goto fail;
        memcpy(c->raw, e->raw, e->raw_len + 1);
        c->raw_len = e->raw_len;
    }
    return c;
fail:
    entry_free(c);
    return NULL;
}

static int snapshot(shard *s, const char *prefix, size_t plen, int with_values, snap *out)
{
    int rc = ACACHE_OK;
    int64_t now = acache__monotonic_ms();
    pthread_mutex_lock(&s->lock);
    for (size_t b = 0; b < s->nbuckets && !rc; b++) {
        for (entry *e = s->buckets[b]; e && !rc; e = e->next) {
            if (expired(e, now) || e->key_len < plen || memcmp(e->key, prefix, plen) != 0)
                continue;
            if (out->n == out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 64;
                entry **ni = acache__realloc(out->items, cap * sizeof *ni);
                if (!ni) {
                    rc = acache__oom();
                    break;
                }
                out->items = ni;
                out->cap = cap;
            }
            entry *c = entry_copy(e, with_values);
            if (!c)
                rc = acache__oom();
            else
                out->items[out->n++] = c;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void snap_clear(snap *sn)
{
    for (size_t i = 0; i < sn->n; i++)
        entry_free(sn->items[i]);
    sn->n = 0;
}

static int scan_common(memory_store *m, const char *prefix, int affinity, int with_values,
                       acache_entry_batch_cb cb, void *payload)
{
    size_t plen = strlen(prefix);
    snap sn = {0};
    acache_entry *batch = NULL;
    acache_record *recs = NULL;
    int rc = ACACHE_OK;
    for (int i = 0; i < NSHARDS && !rc; i++) {
        rc = snapshot(&m->shards[i], prefix, plen, with_values || affinity, &sn);
        if (rc || sn.n == 0) {
            snap_clear(&sn);
            continue;
        }
        acache_entry *nb = acache__realloc(batch, sn.n * sizeof *nb);
        acache_record *nr = nb ? acache__realloc(recs, sn.n * sizeof *nr) : NULL;
        if (nb)
            batch = nb;
        if (nr)
            recs = nr;
        if (!nb || !nr) {
            rc = acache__oom();
            snap_clear(&sn);
            break;
        }
        size_t k = 0;
        for (size_t j = 0; j < sn.n; j++) {
            entry *e = sn.items[j];
            acache_entry *be = &batch[k];
            memset(be, 0, sizeof *be);
            be->key = e->key;
            be->key_len = e->key_len;
            if (affinity) {
                if (!is_affinity_key(e->key, e->key_len))
                    continue;
                if (e->rec) {
                    acache__affinity_to_record(e->rec, &recs[k]);
                    be->record = &recs[k];
                }
            } else if (with_values) {
                if (e->raw) {
                    be->value = e->raw;
                    be->value_len = e->raw_len;
                } else if (e->rec) {
                    acache_record r;
                    acache_buf b = ACACHE_BUF_INIT;
                    acache__affinity_to_record(e->rec, &r);
                    if (acache_record_render(&b, &r) == ACACHE_OK) {
                        e->raw = b.ptr; /* owned by the snapshot copy now */
                        e->raw_len = b.size;
                        be->value = e->raw;
                        be->value_len = e->raw_len;
                    }
                }
            }
            k++;
        }
        if (k)
            rc = cb(batch, k, payload);
        snap_clear(&sn);
    }
    free(sn.items);
    free(batch);
    free(recs);
    return rc;
}

static int m_affinity_scan(acache_store *self, const char *prefix,
                           acache_entry_batch_cb cb, void *payload)
{
    return scan_common((memory_store *)self, prefix, 1, 1, cb, payload);
}

static int m_scan(acache_store *self, const char *prefix, int with_values,
                  acache_entry_batch_cb cb, void *payload)
{
    return scan_common((memory_store *)self, prefix, 0, with_values, cb, payload);
}

/* ---- raw slots ---- */

static int m_get(acache_store *self, const char *key, acache_buf *out)
{
    memory_store *m = (memory_store *)self;
    size_t len = strlen(key);
    uint64_t h = hash_key(key, len);
    shard *s = shard_for(m, h);
    int rc = ACACHE_ENOTFOUND;
    pthread_mutex_lock(&s->lock);
    entry **pp = find_slot(s, key, len, h);
    if (pp && (*pp)->raw) {
        rc = acache__buf_set(out, (*pp)->raw, (*pp)->raw_len);
    } else if (pp && (*pp)->rec) {
        acache_record r;
        acache__affinity_to_record((*pp)->rec, &r);
        rc = acache_record_render(out, &r);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int m_set(acache_store *self, const char *key, const char *value, size_t vlen,
                 uint32_t ttl_s)
{
    memory_store *m = (memory_store *)self;
    size_t len = strlen(key);
    uint64_t h = hash_key(key, len);
    entry *e = entry_new(key, len, h, ttl_s);
    if (!e)
        return ACACHE_ENOMEM;
    if (!(e->raw = acache__malloc(vlen + 1))) {
        entry_free(e);
        return acache__oom();
    }
    memcpy(e->raw, value, vlen);
    e->raw[vlen] = '\0';
    e->raw_len = vlen;
    /* Aether JSON written raw is read back as a record; unreadable values stay
     * raw so listings can skip and count them, as on Redis. */
    if (is_affinity_key(key, len))
        acache_record_parse(value, vlen, parsed_cb, e);
    shard *s = shard_for(m, h);
    pthread_mutex_lock(&s->lock);
    int rc = put(s, e);
    pthread_mutex_unlock(&s->lock);
    if (rc)
        entry_free(e);
    return rc;
}

static int m_del(acache_store *self, const acache_key *keys, size_t n, size_t *deleted)
{
    return m_affinity_delete_if(self, keys, n, NULL, deleted);
}

static int m_ttl(acache_store *self, const char *const *keys, size_t n, int64_t *out)
{
    memory_store *m = (memory_store *)self;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(keys[i]);
        uint64_t h = hash_key(keys[i], len);
        shard *s = shard_for(m, h);
        pthread_mutex_lock(&s->lock);
        entry **pp = find_slot(s, keys[i], len, h);
        if (!pp)
            out[i] = -2;
        else if (!(*pp)->deadline_ms)
            out[i] = -1;
        else
            out[i] = ((*pp)->deadline_ms - acache__monotonic_ms() + 999) / 1000;
        pthread_mutex_unlock(&s->lock);
    }
    return ACACHE_OK;
}

static void m_free(acache_store *self)
{
    memory_store *m = (memory_store *)self;
    if (!m)
        return;
    for (int i = 0; i < NSHARDS; i++) {
        shard *s = &m->shards[i];
        for (size_t b = 0; b < s->nbuckets; b++) {
            entry *e = s->buckets[b];
            while (e) {
                entry *next = e->next;
                entry_free(e);
                e = next;
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(m);
}

int acache__store_memory_new(acache_store **out)
{
    memory_store *m = acache__calloc(1, sizeof *m);
    if (!m)
        return acache__oom();
    m->parent.version = ACACHE_STORE_VERSION;
    m->parent.scheme = "memory";
    m->parent.affinity_get = m_affinity_get;
    m->parent.affinity_touch = m_affinity_touch;
    m->parent.affinity_delete_if = m_affinity_delete_if;
    m->parent.affinity_scan = m_affinity_scan;
    m->parent.get = m_get;
    m->parent.set = m_set;
    m->parent.del = m_del;
    m->parent.scan = m_scan;
    m->parent.ttl = m_ttl;
    m->parent.free = m_free;
    m->parent.affinity_fail = m_affinity_fail;
    /* In process (no L1), keeps structs, and the gateway never writes here. */
    m->parent.caps = 0; /* honours count_delta, but in-process: nothing to defer */
    for (int i = 0; i < NSHARDS; i++)
        pthread_mutex_init(&m->shards[i].lock, NULL);
    *out = &m->parent;
    return ACACHE_OK;
}
