/* The guard around every vtable slot of the Redis store (docs/redis.md):
 *
 *  - a circuit breaker, as Aether's: after `threshold` connection failures in
 *    a row (connect refused or timed out, a command timed out or broke) it
 *    opens, and calls fail at once with ACACHE_ESTORE ("circuit open") for
 *    the cool-down instead of each waiting for the timeouts; then one call
 *    goes through as a probe (half-open): success closes the breaker, a
 *    connection failure opens it for another cool-down. Any answer from the
 *    server (an error reply, ENOTFOUND) counts as a success: the server is up.
 *  - Sentinel: a call that surely did not run (its dial failed, or the server
 *    answered -READONLY / -LOADING) and left no visible effect is retried
 *    once when the sentinels name a new primary. A connection lost
 *    mid-command is never retried here (outcome unknown, docs/affinity.md).
 *
 * State is in atomics: the hot path costs one load when closed. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redis_priv.h"

typedef struct redis_guard {
    acache_store inner; /* the slots as store.c set them */
    uint32_t threshold, cooldown_ms;
    atomic_int state;                /* ACACHE_BREAKER_* */
    atomic_uint fails;               /* connection failures in a row */
    atomic_llong open_until;         /* CLOCK_MONOTONIC ms */
    atomic_ullong opens, fast_fails; /* counters */
} redis_guard;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct guard_call {
    redis_store *s;
    redis_guard *g;
    int probe;   /* this call is the half-open probe */
    int retried; /* the Sentinel retry was spent */
    unsigned saved;
} guard_call;

static int enter(guard_call *gc, acache_store *self)
{
    gc->s = (redis_store *)self;
    gc->g = gc->s->guard;
    gc->probe = gc->retried = 0;
    gc->saved = acache__redis_notes; /* a slot called from a scan callback */
    acache__redis_notes = 0;
    redis_guard *g = gc->g;
    int st = atomic_load(&g->state);
    if (st == ACACHE_BREAKER_CLOSED)
        return ACACHE_OK;
    int64_t left = atomic_load(&g->open_until) - now_ms();
    if (st == ACACHE_BREAKER_OPEN && left <= 0) {
        int expect = ACACHE_BREAKER_OPEN;
        if (atomic_compare_exchange_strong(&g->state, &expect,
                                           ACACHE_BREAKER_HALF_OPEN)) {
            gc->probe = 1;
            return ACACHE_OK;
        }
    }
    atomic_fetch_add(&g->fast_fails, 1);
    acache__redis_notes = gc->saved;
    return acache_error_set(ACACHE_ESTORE,
                            "redis %s: circuit open after %u connection failures in a "
                            "row; failing fast for %lld ms more",
                            gc->s->where, (unsigned)g->threshold,
                            (long long)(left > 0 ? left : 0));
}

/* After an attempt: 1 to run it again (Sentinel, once, when it did not run,
 * had no visible effect and a new primary was found). */
static int again(guard_call *gc, int rc, int effect)
{
    if (rc != ACACHE_ESTORE || effect || gc->retried || !gc->s->sentinel ||
        !(acache__redis_notes & RNOTE_NOT_RUN))
        return 0;
    gc->retried = 1;
    if (!acache__redis_sentinel_recheck(gc->s))
        return 0;
    acache__redis_notes = 0;
    return 1;
}

static int leave(guard_call *gc, int rc)
{
    redis_guard *g = gc->g;
    int conn = rc != ACACHE_OK && (acache__redis_notes & RNOTE_CONN);
    if (!conn) {
        if (atomic_load(&g->fails)) /* no write on the hot path */
            atomic_store(&g->fails, 0);
        if (atomic_load(&g->state) != ACACHE_BREAKER_CLOSED)
            atomic_store(&g->state, ACACHE_BREAKER_CLOSED);
    } else {
        unsigned n = atomic_fetch_add(&g->fails, 1) + 1;
        int expect = ACACHE_BREAKER_CLOSED;
        if (gc->probe ||
            (n >= g->threshold &&
             atomic_compare_exchange_strong(&g->state, &expect, ACACHE_BREAKER_OPEN))) {
            atomic_store(&g->open_until, now_ms() + g->cooldown_ms);
            atomic_store(&g->state, ACACHE_BREAKER_OPEN);
            atomic_fetch_add(&g->opens, 1);
        }
    }
    acache__redis_notes |= gc->saved;
    return rc;
}

#define INNER(gc) ((gc).g->inner)

/* ---- the wrapped slots ---- */

static int w_affinity_get(acache_store *self, const char *key, acache_record_cb cb,
                          void *payload)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc)
        return rc;
    do
        rc = INNER(gc).affinity_get(self, key, cb, payload);
    while (again(&gc, rc, 0));
    return leave(&gc, rc);
}

static int w_affinity_touch(acache_store *self, const acache_touch_req *req, int *result,
                            acache_record_cb cb, void *payload)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc)
        return rc;
    do
        rc = INNER(gc).affinity_touch(self, req, result, cb, payload);
    while (again(&gc, rc, 0));
    return leave(&gc, rc);
}

static int w_affinity_delete_if(acache_store *self, const acache_key *keys, size_t n,
                                const acache_match *m, size_t *deleted)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc)
        return rc;
    *deleted = 0;
    do
        rc = INNER(gc).affinity_delete_if(self, keys, n, m, deleted);
    while (again(&gc, rc, *deleted != 0));
    return leave(&gc, rc);
}

/* Scans are retried only if no batch reached the caller. */
typedef struct scan_wrap {
    acache_entry_batch_cb cb;
    void *payload;
    int delivered;
} scan_wrap;

static int scan_cb(const acache_entry *e, size_t n, void *p)
{
    scan_wrap *w = p;
    w->delivered = 1;
    return w->cb(e, n, w->payload);
}

static int w_affinity_scan(acache_store *self, const char *prefix,
                           acache_entry_batch_cb cb, void *payload)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc)
        return rc;
    scan_wrap w = {cb, payload, 0};
    do
        rc = INNER(gc).affinity_scan(self, prefix, scan_cb, &w);
    while (again(&gc, rc, w.delivered));
    return leave(&gc, rc);
}

static int w_get(acache_store *self, const char *key, acache_buf *out)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc)
        return rc;
    do
        rc = INNER(gc).get(self, key, out);
    while (again(&gc, rc, 0));
    return leave(&gc, rc);
}

static int w_set(acache_store *self, const char *key, const char *value, size_t len,
                 uint32_t ttl_s)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc)
        return rc;
    do
        rc = INNER(gc).set(self, key, value, len, ttl_s);
    while (again(&gc, rc, 0));
    return leave(&gc, rc);
}

static int w_del(acache_store *self, const acache_key *keys, size_t n, size_t *deleted)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc)
        return rc;
    *deleted = 0;
    do
        rc = INNER(gc).del(self, keys, n, deleted);
    while (again(&gc, rc, *deleted != 0));
    return leave(&gc, rc);
}

static int w_scan(acache_store *self, const char *prefix, int with_values,
                  acache_entry_batch_cb cb, void *payload)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc)
        return rc;
    scan_wrap w = {cb, payload, 0};
    do
        rc = INNER(gc).scan(self, prefix, with_values, scan_cb, &w);
    while (again(&gc, rc, w.delivered));
    return leave(&gc, rc);
}

static int w_ttl(acache_store *self, const char *const *keys, size_t n, int64_t *out)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc)
        return rc;
    do
        rc = INNER(gc).ttl(self, keys, n, out);
    while (again(&gc, rc, 0));
    return leave(&gc, rc);
}

static int w_affinity_fail(acache_store *self, const acache_fail_req *req, int *result,
                           uint32_t *failures)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc)
        return rc;
    do
        rc = INNER(gc).affinity_fail(self, req, result, failures);
    while (again(&gc, rc, 0));
    return leave(&gc, rc);
}

static int w_counters_flush(acache_store *self, const acache_counter_flush *f, int *sent)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc) {
        *sent = 0; /* refused before anything was sent */
        return rc;
    }
    *sent = 0;
    do
        rc = INNER(gc).counters_flush(self, f, sent);
    while (again(&gc, rc, *sent != 0));
    return leave(&gc, rc);
}

static int w_counters_read(acache_store *self, const char *const *names, size_t n,
                           uint64_t *totals, acache_instance_cb cb, void *payload)
{
    guard_call gc;
    int rc = enter(&gc, self);
    if (rc)
        return rc;
    /* Not retried: `cb` may have seen instances before the failure. */
    rc = INNER(gc).counters_read(self, names, n, totals, cb, payload);
    return leave(&gc, rc);
}

static void r_health(acache_store *self, acache_store_health *out)
{
    redis_store *s = (redis_store *)self;
    redis_guard *g = s->guard;
    memset(out, 0, sizeof *out);
    out->breaker_state = atomic_load(&g->state);
    out->consecutive_failures = atomic_load(&g->fails);
    out->breaker_opens = atomic_load(&g->opens);
    out->fast_failures = atomic_load(&g->fast_fails);
    out->primary_changes = acache__redis_sentinel_changes(s);
}

int acache__redis_guard_install(redis_store *s, uint32_t threshold, uint32_t cooldown_ms)
{
    redis_guard *g = acache__calloc(1, sizeof *g);
    if (!g)
        return acache__oom();
    g->inner = s->parent;
    g->threshold = threshold ? threshold : 5;
    g->cooldown_ms = cooldown_ms ? cooldown_ms : 5000;
    atomic_init(&g->state, ACACHE_BREAKER_CLOSED);
    atomic_init(&g->fails, 0);
    atomic_init(&g->open_until, 0);
    atomic_init(&g->opens, 0);
    atomic_init(&g->fast_fails, 0);
    s->guard = g;
    acache_store *p = &s->parent;
#define WRAP(slot)                                                                       \
    if (p->slot)                                                                         \
    p->slot = w_##slot
    WRAP(affinity_get);
    WRAP(affinity_touch);
    WRAP(affinity_delete_if);
    WRAP(affinity_scan);
    WRAP(get);
    WRAP(set);
    WRAP(del);
    WRAP(scan);
    WRAP(ttl);
    WRAP(affinity_fail);
    WRAP(counters_flush);
    WRAP(counters_read);
#undef WRAP
    p->health = r_health;
    return ACACHE_OK;
}

void acache__redis_guard_free(redis_store *s)
{
    free(s->guard);
    s->guard = NULL;
}
