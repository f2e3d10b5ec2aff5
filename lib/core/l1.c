/* Per-handle L1 cache in front of a shared store (Aether: 3 s, 1000 entries).
 * This handle's own invalidations remove entries at once. Another handle's
 * are seen after at most the TTL, or, with a store that pushes invalidations
 * (Redis CLIENT TRACKING: options.l1_invalidation, docs/redis.md "L1
 * invalidation"), as soon as the store's message arrives; while that
 * subscription is down the L1 is empty and bypassed, so a get never serves a
 * pin whose change it could have missed. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

typedef struct l1_entry {
    struct l1_entry *next;
    uint64_t hash;
    int64_t fetched_ms;
    acache_affinity *a; /* one reference, shared with the gets that hit it */
    size_t klen;
    char key[];
} l1_entry;

#define L1_STRIPES 256

/* A fill races with writes: get reads the store, a touch or invalidation of
 * the same key lands, then get's older copy would be cached. Each write bumps
 * its key's stripe epoch; a fill whose epoch moved meanwhile is dropped. The
 * bump must come after the store write has returned (touch and invalidate
 * call acache__l1_remove then): a bump before it only covers gets that read
 * the epoch earlier, and one that reads the epoch between the bump and the
 * write could cache the pin the write just removed. */
struct acache__l1 {
    pthread_mutex_t lock;
    uint64_t epoch[L1_STRIPES];
    l1_entry **buckets;
    size_t nbuckets, count, max, evict_cursor;
    int64_t ttl_ms;
    int bypass;   /* under lock: get misses, put drops (subscription down) */
    int tracking; /* the store's invalidations are subscribed (stop at close) */
    atomic_uint_fast64_t inval_keys, inval_all, lost, live;
};

acache__l1 *acache__l1_new(int32_t ttl_ms, int32_t max_entries)
{
    acache__l1 *l = acache__calloc(1, sizeof *l);
    if (!l)
        return NULL;
    size_t n = 16;
    while (n < (size_t)max_entries)
        n <<= 1;
    l->buckets = acache__calloc(n, sizeof *l->buckets);
    if (!l->buckets) {
        free(l);
        return NULL;
    }
    l->nbuckets = n;
    l->max = (size_t)max_entries;
    l->ttl_ms = ttl_ms;
    pthread_mutex_init(&l->lock, NULL);
    return l;
}

static void drop(acache__l1 *l, l1_entry **pp)
{
    l1_entry *e = *pp;
    *pp = e->next;
    acache_affinity_free(e->a);
    free(e);
    l->count--;
}

static l1_entry **find(acache__l1 *l, const char *key, size_t klen, uint64_t h)
{
    l1_entry **pp = &l->buckets[h & (l->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0)
            return pp;
    return NULL;
}

acache_affinity *acache__l1_get(acache__l1 *l, const char *key, size_t klen)
{
    uint64_t h = acache__hash(key, klen);
    acache_affinity *copy = NULL;
    pthread_mutex_lock(&l->lock);
    l1_entry **pp = l->bypass ? NULL : find(l, key, klen, h);
    if (pp) {
        if (acache__monotonic_ms() - (*pp)->fetched_ms >= l->ttl_ms)
            drop(l, pp);
        else
            copy = acache__affinity_dup((*pp)->a); /* a reference: no copy */
    }
    pthread_mutex_unlock(&l->lock);
    return copy;
}

uint64_t acache__l1_epoch(acache__l1 *l, const char *key, size_t klen)
{
    uint64_t h = acache__hash(key, klen);
    pthread_mutex_lock(&l->lock);
    uint64_t e = l->epoch[h % L1_STRIPES];
    pthread_mutex_unlock(&l->lock);
    return e;
}

void acache__l1_put(acache__l1 *l, const char *key, size_t klen, const acache_affinity *a,
                    uint64_t epoch)
{
    uint64_t h = acache__hash(key, klen);
    l1_entry *e = acache__malloc(sizeof *e + klen + 1);
    acache_affinity *copy = e ? acache__affinity_dup(a) : NULL;
    if (!copy) { /* the L1 is an optimisation: failing to fill it is harmless */
        free(e);
        return;
    }
    memcpy(e->key, key, klen);
    e->key[klen] = '\0';
    e->klen = klen;
    e->hash = h;
    e->a = copy;
    e->fetched_ms = acache__monotonic_ms();
    pthread_mutex_lock(&l->lock);
    if (l->epoch[h % L1_STRIPES] != epoch || l->bypass) {
        pthread_mutex_unlock(&l->lock);
        acache_affinity_free(copy);
        free(e);
        return;
    }
    l1_entry **pp = find(l, key, klen, h);
    if (pp)
        drop(l, pp);
    while (l->count >= l->max && l->count > 0) {
        /* Evict round-robin by bucket: O(1) amortised, no LRU bookkeeping on hits. */
        l1_entry **b = &l->buckets[l->evict_cursor++ & (l->nbuckets - 1)];
        if (*b)
            drop(l, b);
    }
    l1_entry **b = &l->buckets[h & (l->nbuckets - 1)];
    e->next = *b;
    *b = e;
    l->count++;
    pthread_mutex_unlock(&l->lock);
}

void acache__l1_remove(acache__l1 *l, const char *key)
{
    size_t klen = strlen(key);
    uint64_t h = acache__hash(key, klen);
    pthread_mutex_lock(&l->lock);
    l->epoch[h % L1_STRIPES]++;
    l1_entry **pp = find(l, key, klen, h);
    if (pp)
        drop(l, pp);
    pthread_mutex_unlock(&l->lock);
}

static void clear_locked(acache__l1 *l)
{
    for (size_t i = 0; i < L1_STRIPES; i++)
        l->epoch[i]++;
    for (size_t i = 0; i < l->nbuckets; i++)
        while (l->buckets[i])
            drop(l, &l->buckets[i]);
}

void acache__l1_clear(acache__l1 *l)
{
    pthread_mutex_lock(&l->lock);
    clear_locked(l);
    pthread_mutex_unlock(&l->lock);
}

/* A key named by the store's message: bytes (no L1 key holds a NUL, but its
 * stripe's epoch still moves so that no fill in flight survives). */
void acache__l1_remove_bytes(acache__l1 *l, const char *key, size_t len)
{
    uint64_t h = acache__hash(key, len);
    int plain = memchr(key, 0, len) == NULL;
    pthread_mutex_lock(&l->lock);
    l->epoch[h % L1_STRIPES]++;
    l1_entry **pp = plain ? find(l, key, len, h) : NULL;
    if (pp)
        drop(l, pp);
    pthread_mutex_unlock(&l->lock);
}

/* Both directions flush: going down, entries may miss changes from now on;
 * coming back, changes made while down were never announced, and a fill that
 * read the store meanwhile must not land (the epochs move). */
void acache__l1_set_bypass(acache__l1 *l, int on)
{
    pthread_mutex_lock(&l->lock);
    l->bypass = on;
    clear_locked(l);
    pthread_mutex_unlock(&l->lock);
}

/* ---- the store's invalidations (options.l1_invalidation) ---- */

static void on_key(const char *key, size_t len, void *payload)
{
    acache__l1 *l = payload;
    atomic_fetch_add(&l->inval_keys, 1);
    acache__l1_remove_bytes(l, key, len);
}

static void on_all(void *payload)
{
    acache__l1 *l = payload;
    atomic_fetch_add(&l->inval_all, 1);
    acache__l1_clear(l);
}

static void on_state(int live, void *payload)
{
    acache__l1 *l = payload;
    atomic_fetch_add(live ? &l->live : &l->lost, 1);
    acache__l1_set_bypass(l, !live);
}

int acache__l1_tracking_start(acache *c)
{
    acache__l1 *l = c->l1;
    int mode = c->opts.l1_invalidation;
    if (!l || mode == ACACHE_L1_TTL_ONLY)
        return ACACHE_OK;
    acache_store *s = c->store;
    if (s->version < 3 || !s->invalidations_subscribe || !s->invalidations_stop) {
        if (mode == ACACHE_L1_TRACKING)
            return acache_error_set(
                ACACHE_EUNSUPPORTED,
                "l1_invalidation: the %s store pushes no invalidations "
                "(the L1 stays time-based)",
                s->scheme ? s->scheme : "configured");
        return ACACHE_OK; /* documented per store: no warning */
    }
    acache_invalidation_sink sink = {on_key, on_all, on_state, l};
    int rc = s->invalidations_subscribe(s, &sink);
    if (rc == ACACHE_EUNSUPPORTED && mode != ACACHE_L1_TRACKING) {
        static atomic_int warned;
        if (!atomic_exchange(&warned, 1))
            fprintf(
                stderr,
                "libaethercache: warning: %s; the L1 falls back to time-based "
                "invalidation (other processes' changes are seen after up to %lld ms; "
                "options.l1_invalidation = ACACHE_L1_TTL_ONLY silences this)\n",
                acache_last_error(), (long long)l->ttl_ms);
        acache__l1_set_bypass(l, 0);
        acache_clear_error();
        return ACACHE_OK;
    }
    if (rc)
        return rc;
    l->tracking = 1;
    return ACACHE_OK;
}

void acache__l1_tracking_stop(acache *c)
{
    if (c->l1 && c->l1->tracking && c->store) {
        c->store->invalidations_stop(c->store);
        c->l1->tracking = 0;
    }
}

void acache__l1_tracking_info(const acache *c, acache__l1_tracking *out)
{
    memset(out, 0, sizeof *out);
    acache__l1 *l = c->l1;
    if (!l)
        return;
    pthread_mutex_lock(&l->lock);
    out->tracking = l->tracking;
    out->bypass = l->bypass;
    pthread_mutex_unlock(&l->lock);
    out->keys = atomic_load(&l->inval_keys);
    out->flushes = atomic_load(&l->inval_all);
    out->lost = atomic_load(&l->lost);
    out->live = atomic_load(&l->live);
}

void acache__l1_free(acache__l1 *l)
{
    if (!l)
        return;
    acache__l1_clear(l);
    free(l->buckets);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
