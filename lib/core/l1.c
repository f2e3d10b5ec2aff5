/* Per-handle L1 cache in front of a shared store (Aether: 3 s, 1000 entries).
 * Bounded staleness: another handle's invalidation is seen after at most the
 * TTL; this handle's own invalidations remove entries at once. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

typedef struct l1_entry {
    struct l1_entry *next;
    uint64_t hash;
    int64_t fetched_ms;
    acache_affinity *a;
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
};

static uint64_t l1_hash(const char *s)
{
    return acache__hash(s, strlen(s));
}

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

static l1_entry **find(acache__l1 *l, const char *key, uint64_t h)
{
    l1_entry **pp = &l->buckets[h & (l->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
            return pp;
    return NULL;
}

acache_affinity *acache__l1_get(acache__l1 *l, const char *key)
{
    uint64_t h = l1_hash(key);
    acache_affinity *copy = NULL;
    pthread_mutex_lock(&l->lock);
    l1_entry **pp = find(l, key, h);
    if (pp) {
        if (acache__monotonic_ms() - (*pp)->fetched_ms >= l->ttl_ms)
            drop(l, pp);
        else
            copy = acache__affinity_dup((*pp)->a);
    }
    pthread_mutex_unlock(&l->lock);
    return copy;
}

uint64_t acache__l1_epoch(acache__l1 *l, const char *key)
{
    uint64_t h = l1_hash(key);
    pthread_mutex_lock(&l->lock);
    uint64_t e = l->epoch[h % L1_STRIPES];
    pthread_mutex_unlock(&l->lock);
    return e;
}

void acache__l1_put(acache__l1 *l, const char *key, const acache_affinity *a, uint64_t epoch)
{
    uint64_t h = l1_hash(key);
    size_t klen = strlen(key);
    l1_entry *e = acache__malloc(sizeof *e + klen + 1);
    acache_affinity *copy = e ? acache__affinity_dup(a) : NULL;
    if (!copy) { /* the L1 is an optimisation: failing to fill it is harmless */
        free(e);
        return;
    }
    memcpy(e->key, key, klen + 1);
    e->hash = h;
    e->a = copy;
    e->fetched_ms = acache__monotonic_ms();
    pthread_mutex_lock(&l->lock);
    if (l->epoch[h % L1_STRIPES] != epoch) {
        pthread_mutex_unlock(&l->lock);
        acache_affinity_free(copy);
        free(e);
        return;
    }
    l1_entry **pp = find(l, key, h);
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
    uint64_t h = l1_hash(key);
    pthread_mutex_lock(&l->lock);
    l->epoch[h % L1_STRIPES]++;
    l1_entry **pp = find(l, key, h);
    if (pp)
        drop(l, pp);
    pthread_mutex_unlock(&l->lock);
}

void acache__l1_clear(acache__l1 *l)
{
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < L1_STRIPES; i++)
        l->epoch[i]++;
    for (size_t i = 0; i < l->nbuckets; i++)
        while (l->buckets[i])
            drop(l, &l->buckets[i]);
    pthread_mutex_unlock(&l->lock);
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
