/* Deferred touch (write-behind, options.touch_flush_ms; issue 12 item 2).
 *
 * A touch of a pin this handle already knows live with the same provider /
 * endpoint / key only adds one to the pin's pending count here and returns
 * REFRESHED; a background thread applies each pin's pending touches at most
 * every touch_flush_ms in one store call (acache_touch_req.count_delta, the
 * same atomic script as a synchronous touch), so counts are exact after the
 * flush. Creations and switches stay synchronous (other processes see a new
 * target at once); before one, this handle's pending touches of that pin are
 * applied first so that their order is kept. A removal through this handle
 * first forgets the removed keys' pending touches (a refresh followed by a
 * delete is a delete), so a flush cannot bring a removed pin back.
 *
 * Bounded: at most touch_pending_max pins are known (more pins touch
 * synchronously). Redis down: a failed flush keeps the pending counts and
 * retries next interval (counted: touch_flush_failures); pins keep being
 * refreshed locally while they are known live, nothing grows but counters.
 * acache_close makes one last flush.
 *
 * Locking: NSHARD shards, each a mutex over its chains; the caller's path is
 * one lock, one hash look-up, three strcmp. An entry being flushed is marked
 * in flight: a synchronous touch or a removal of that pin waits for it. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

enum { NSHARD = 16, NBUCKET = 256 /* per shard */ };

typedef struct dentry {
    struct dentry *next;
    uint64_t hash;
    char *key, *prov, *ep, *kid, *fmt, *model; /* one allocation: key first */
    uint64_t delta;                            /* touches not yet sent */
    double now;                                /* the latest of them */
    uint32_t ttl_s;
    /* A batch sent whose outcome is unknown (a failed call may still have
     * run: a timeout on a stalled Redis). It is resent as it was, under the
     * same sequence number, which the store applies at most once. */
    uint64_t unconf;
    double unconf_now;
    uint32_t unconf_ttl;
    uint64_t seq;      /* of the last batch formed */
    double live_until; /* expiry as this handle last wrote it */
    double used;       /* last touch (idle entries are dropped) */
    int inflight;
} dentry;

typedef struct dshard {
    pthread_mutex_t lock;
    pthread_cond_t done; /* an in-flight flush finished */
    dentry *b[NBUCKET];
    size_t count;
} dshard;

struct acache__deferred {
    dshard shard[NSHARD];
    uint32_t flush_ms;
    size_t max;
    atomic_size_t known;  /* entries, at most max */
    pthread_mutex_t lock; /* the thread's sleep */
    pthread_cond_t wake;
    int stop, running;
    pthread_t thread;
    atomic_uint_fast64_t deferred, flushes, failures, pending;
    atomic_uint_fast64_t seq; /* batches formed */
    char once_prefix[96];     /* "acache_touch_once:<handle nonce>:" */
};

static uint64_t hash_of(const char *s)
{
    uint64_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static dentry **slot(dshard *s, const char *key, uint64_t h)
{
    dentry **pp = &s->b[(h >> 4) % NBUCKET];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
            return pp;
    return pp;
}

static int same_target(const dentry *e, const acache_touch_req *r)
{
    return strcmp(e->prov, r->provider_id) == 0 && strcmp(e->ep, r->endpoint_id) == 0 &&
           strcmp(e->kid, r->key_id) == 0;
}

static dentry *entry_new(const acache_touch_req *r, uint64_t h)
{
    const char *f[6] = {r->key,    r->provider_id, r->endpoint_id,
                        r->key_id, r->api_format,  r->model_name};
    size_t len[6], total = 0;
    for (int i = 0; i < 6; i++)
        total += (len[i] = strlen(f[i])) + 1;
    dentry *e = acache__calloc(1, sizeof *e + total);
    if (!e)
        return NULL;
    char *p = (char *)(e + 1),
         **dst[6] = {&e->key, &e->prov, &e->ep, &e->kid, &e->fmt, &e->model};
    for (int i = 0; i < 6; i++) {
        memcpy(p, f[i], len[i] + 1);
        *dst[i] = p;
        p += len[i] + 1;
    }
    e->hash = h;
    return e;
}

/* Apply `delta` pending touches of `e` as batch `seq` (in flight, not under
 * the lock). */
static int apply(acache *c, const dentry *e, uint64_t delta, double now, uint32_t ttl,
                 uint64_t seq)
{
    acache__deferred *d = c->deferred;
    size_t pl = strlen(d->once_prefix), kl = strlen(e->key);
    char small[512];
    char *once = pl + kl < sizeof small ? small : malloc(pl + kl + 1);
    if (!once)
        return acache__oom();
    memcpy(once, d->once_prefix, pl);
    memcpy(once + pl, e->key, kl + 1);
    acache_touch_req req = {
        .key = e->key,
        .provider_id = e->prov,
        .endpoint_id = e->ep,
        .key_id = e->kid,
        .api_format = e->fmt,
        .model_name = e->model,
        .now = now,
        .ttl_s = ttl,
        .count_delta = delta,
        .once_key = once,
        .once_seq = seq,
    };
    int outcome = 0;
    int rc = c->store->affinity_touch(c->store, &req, &outcome, NULL, NULL);
    /* Refreshes were counted when touch returned; a flush that finds the pin
     * gone or moved counts as the creation or switch it turned into. */
    if (!rc && outcome != ACACHE_TOUCH_REFRESHED)
        (void)acache__touch_count(c, outcome);
    if (once != small)
        free(once);
    return rc;
}

/* Send `e`'s unconfirmed batch, then its pending touches as a new batch.
 * Called and returns with the shard locked, `e` not in flight. A failure
 * leaves the batch unconfirmed (resent first next time) and stops. */
static int flush_entry(acache *c, dshard *s, dentry *e)
{
    acache__deferred *d = c->deferred;
    while (e->unconf || e->delta) {
        if (!e->unconf) {
            e->unconf = e->delta;
            e->unconf_now = e->now;
            e->unconf_ttl = e->ttl_s;
            e->delta = 0;
            e->seq = atomic_fetch_add(&d->seq, 1) + 1;
        }
        uint64_t n = e->unconf;
        double now = e->unconf_now;
        uint32_t ttl = e->unconf_ttl;
        e->inflight = 1;
        pthread_mutex_unlock(&s->lock);
        int rc = apply(c, e, n, now, ttl, e->seq);
        pthread_mutex_lock(&s->lock);
        e->inflight = 0;
        pthread_cond_broadcast(&s->done);
        if (rc) {
            atomic_fetch_add(&d->failures, 1);
            return rc;
        }
        e->unconf = 0;
        atomic_fetch_sub(&d->pending, n);
        atomic_fetch_add(&d->flushes, 1);
        if (e->live_until < now + ttl)
            e->live_until = now + ttl;
    }
    return ACACHE_OK;
}

/* One pass over every shard: each pending pin in one store call; with
 * `drop_idle`, idle and expired entries are forgotten. Returns the first
 * failure. */
static int flush_all(acache *c, int drop_idle)
{
    acache__deferred *d = c->deferred;
    double wall = acache__now(c);
    int first = ACACHE_OK;
    for (size_t i = 0; i < NSHARD; i++) {
        dshard *s = &d->shard[i];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < NBUCKET; b++) {
            for (dentry **pp = &s->b[b]; *pp;) {
                dentry *e = *pp;
                if (e->inflight) {
                    pp = &e->next;
                    continue;
                }
                if (e->delta || e->unconf) {
                    int rc = flush_entry(c, s, e);
                    if (rc && !first)
                        first = rc;
                    /* The chain may have changed while unlocked (e could not:
                     * it was in flight). */
                    pp = slot(s, e->key, e->hash);
                }
                /* Idle for ten intervals, or known expired: forget it (the
                 * next touch is synchronous and learns it again). */
                if (drop_idle && !e->delta && !e->unconf && !e->inflight &&
                    (e->live_until <= wall || wall - e->used > d->flush_ms * 0.01)) {
                    *pp = e->next;
                    s->count--;
                    atomic_fetch_sub(&d->known, 1);
                    free(e);
                    continue;
                }
                pp = &e->next;
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    return first;
}

static void *flusher(void *arg)
{
    acache *c = arg;
    acache__deferred *d = c->deferred;
    pthread_mutex_lock(&d->lock);
    while (!d->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)d->flush_ms * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        while (!d->stop && pthread_cond_timedwait(&d->wake, &d->lock, &ts) != ETIMEDOUT)
            ;
        if (d->stop)
            break;
        pthread_mutex_unlock(&d->lock);
        flush_all(c, 1);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

int acache__deferred_start(acache *c)
{
    uint32_t ms = c->opts.touch_flush_ms;
    if (!ms || !(acache__store_caps(c->store) & ACACHE_STORE_CAP_TOUCH_DELTA))
        return ACACHE_OK; /* synchronous touch */
    acache__deferred *d = acache__calloc(1, sizeof *d);
    if (!d)
        return acache__oom();
    d->flush_ms = ms;
    d->max = c->opts.touch_pending_max ? c->opts.touch_pending_max : 100000;
    for (size_t i = 0; i < NSHARD; i++) {
        pthread_mutex_init(&d->shard[i].lock, NULL);
        pthread_cond_init(&d->shard[i].done, NULL);
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->wake, &ca);
    pthread_condattr_destroy(&ca);
    /* Unique per handle (pid, clock, a counter): the at-most-once keys of
     * two handles never collide. */
    static atomic_uint handles;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(d->once_prefix, sizeof d->once_prefix,
             "acache_touch_once:%ld-%lx-%lx-%u:", (long)getpid(),
             (unsigned long)ts.tv_sec, (unsigned long)ts.tv_nsec,
             atomic_fetch_add(&handles, 1));
    c->deferred = d;
    if (pthread_create(&d->thread, NULL, flusher, c) != 0)
        return acache_error_set(ACACHE_ERROR, "cannot start the deferred touch thread");
    d->running = 1;
    return ACACHE_OK;
}

void acache__deferred_stop(acache *c)
{
    acache__deferred *d = c->deferred;
    if (!d)
        return;
    if (d->running) {
        pthread_mutex_lock(&d->lock);
        d->stop = 1;
        pthread_cond_signal(&d->wake);
        pthread_mutex_unlock(&d->lock);
        pthread_join(d->thread, NULL);
    }
    flush_all(c, 0); /* at acache_close: one last attempt */
    for (size_t i = 0; i < NSHARD; i++) {
        dshard *s = &d->shard[i];
        for (size_t b = 0; b < NBUCKET; b++)
            for (dentry *e = s->b[b], *n; e; e = n) {
                n = e->next;
                free(e);
            }
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->done);
    }
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    free(d);
    c->deferred = NULL;
}

int acache__deferred_touch(acache *c, const acache_touch_req *req)
{
    acache__deferred *d = c->deferred;
    uint64_t h = hash_of(req->key);
    dshard *s = &d->shard[h % NSHARD];
    pthread_mutex_lock(&s->lock);
    dentry *e = *slot(s, req->key, h);
    int ok = e && e->live_until > req->now && same_target(e, req) &&
             e->delta < UINT64_C(1000000000000000);
    if (ok) {
        e->delta++;
        if (e->now < req->now)
            e->now = req->now;
        e->ttl_s = req->ttl_s;
        e->used = req->now;
        e->live_until = req->now + req->ttl_s;
    }
    pthread_mutex_unlock(&s->lock);
    if (ok) {
        atomic_fetch_add(&d->deferred, 1);
        atomic_fetch_add(&d->pending, 1);
    }
    return ok;
}

/* The pin's entry once no flight of it is under way (shard locked). */
static dentry *settled(dshard *s, const char *key, uint64_t h)
{
    dentry *e;
    while ((e = *slot(s, key, h)) && e->inflight)
        pthread_cond_wait(&s->done, &s->lock);
    return e;
}

int acache__deferred_before_sync(acache *c, const acache_touch_req *req)
{
    acache__deferred *d = c->deferred;
    uint64_t h = hash_of(req->key);
    dshard *s = &d->shard[h % NSHARD];
    pthread_mutex_lock(&s->lock);
    dentry *e = settled(s, req->key, h);
    int rc = e ? flush_entry(c, s, e) : ACACHE_OK;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void acache__deferred_after_sync(acache *c, const acache_touch_req *req)
{
    acache__deferred *d = c->deferred;
    uint64_t h = hash_of(req->key);
    dshard *s = &d->shard[h % NSHARD];
    pthread_mutex_lock(&s->lock);
    dentry **pp = slot(s, req->key, h);
    dentry *e = *pp;
    if (e && !e->inflight && !e->delta && !e->unconf && !same_target(e, req)) {
        *pp = e->next; /* known under another target: learn the new one */
        s->count--;
        atomic_fetch_sub(&d->known, 1);
        free(e);
        e = NULL;
    }
    if (!e && atomic_load(&d->known) < d->max && (e = entry_new(req, h))) {
        e->next = s->b[(h >> 4) % NBUCKET];
        s->b[(h >> 4) % NBUCKET] = e;
        s->count++;
        atomic_fetch_add(&d->known, 1);
    }
    if (e && same_target(e, req)) {
        e->ttl_s = req->ttl_s;
        e->used = req->now;
        e->live_until = req->now + req->ttl_s;
    }
    pthread_mutex_unlock(&s->lock);
}

void acache__deferred_forget(acache *c, const acache_key *keys, size_t n)
{
    acache__deferred *d = c->deferred;
    if (!d)
        return;
    char small[256];
    for (size_t i = 0; i < n; i++) {
        /* Our keys never hold a NUL; a scanned one that does is not ours. */
        if (memchr(keys[i].ptr, '\0', keys[i].len))
            continue;
        char *k = keys[i].len < sizeof small ? small : malloc(keys[i].len + 1);
        if (!k)
            continue; /* a known pin stays known: at worst its flush re-pins it */
        memcpy(k, keys[i].ptr, keys[i].len);
        k[keys[i].len] = '\0';
        uint64_t h = hash_of(k);
        dshard *s = &d->shard[h % NSHARD];
        pthread_mutex_lock(&s->lock);
        dentry *e = settled(s, k, h);
        if (e) {
            *slot(s, k, h) = e->next;
            s->count--;
            atomic_fetch_sub(&d->known, 1);
            atomic_fetch_sub(&d->pending, e->delta + e->unconf);
            free(e);
        }
        pthread_mutex_unlock(&s->lock);
        if (k != small)
            free(k);
    }
}

int acache__deferred_flush(acache *c)
{
    return c->deferred ? flush_all(c, 0) : ACACHE_OK;
}

void acache__deferred_counts(const acache *c, uint64_t *deferred, uint64_t *flushes,
                             uint64_t *failures, uint64_t *pending)
{
    acache__deferred *d = c->deferred;
    *deferred = d ? atomic_load(&d->deferred) : 0;
    *flushes = d ? atomic_load(&d->flushes) : 0;
    *failures = d ? atomic_load(&d->failures) : 0;
    *pending = d ? atomic_load(&d->pending) : 0;
}
