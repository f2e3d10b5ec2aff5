/* The L1 cache in front of a real Redis under concurrent readers: an
 * invalidation made through a handle is final for that handle (affinity.md
 * "get"), even while other threads of the same handle are filling the L1. */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

#define READERS 4
#define ROUNDS 1000
#define MAX_SECONDS 15.0

static acache *c;

static void setup(void)
{
    c = th_open(NULL); /* Redis store: L1 on with its defaults (3 s) */
    size_t n;
    cr_assert_eq(acache__affinity_clear_all(&n, c), ACACHE_OK);
}

static void teardown(void)
{
    acache_close(c);
}

TestSuite(l1_redis, .init = setup, .fini = teardown, .timeout = 90);

typedef struct {
    atomic_int stop;
    atomic_uint_fast64_t done[READERS]; /* gets completed per reader */
    atomic_int errors;
} hammer;

typedef struct {
    hammer *h;
    int id;
} reader_arg;

static void *reader(void *p)
{
    reader_arg *r = p;
    while (!atomic_load(&r->h->stop)) {
        acache_affinity *a = NULL;
        int rc = acache_affinity_get(&a, c, "ak", "claude", "m");
        if (rc != ACACHE_OK && rc != ACACHE_ENOTFOUND)
            atomic_fetch_add(&r->h->errors, 1);
        acache_affinity_free(a);
        atomic_fetch_add(&r->h->done[r->id], 1);
    }
    return NULL;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Issue 8 item 6: invalidate dropped the L1 entry before the store delete, so
 * a reader that read the store in between cached the deleted pin again and
 * the handle served it for up to the L1 TTL (1-2 % of rounds). */
Test(l1_redis, invalidated_pin_is_never_served_again_under_concurrent_gets)
{
    hammer h = {0};
    pthread_t t[READERS];
    reader_arg args[READERS];
    for (int i = 0; i < READERS; i++) {
        args[i] = (reader_arg){&h, i};
        cr_assert_eq(pthread_create(&t[i], NULL, reader, &args[i]), 0);
    }
    int rounds = 0, stale = 0;
    double deadline = mono_s() + MAX_SECONDS;
    for (; rounds < ROUNDS && mono_s() < deadline; rounds++) {
        cr_assert_eq(
            acache__affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k", 1, 0),
            ACACHE_OK, "%s", acache_last_error());
        /* Let the readers see the pin (some from the store, some from L1). */
        uint64_t seen0 = atomic_load(&h.done[0]);
        while (atomic_load(&h.done[0]) < seen0 + 2)
            sched_yield();
        cr_assert_eq(acache_affinity_invalidate(c, "ak", "claude", "m", NULL, NULL, NULL),
                     ACACHE_OK, "%s", acache_last_error());
        /* Wait until every get in flight during the invalidation has finished
         * (and possibly filled the L1): each reader completes two more. */
        uint64_t mark[READERS];
        for (int i = 0; i < READERS; i++)
            mark[i] = atomic_load(&h.done[i]);
        for (int i = 0; i < READERS; i++)
            while (atomic_load(&h.done[i]) < mark[i] + 2)
                sched_yield();
        acache_affinity *a = NULL;
        int rc = acache_affinity_get(&a, c, "ak", "claude", "m");
        if (rc == ACACHE_OK)
            stale++;
        else
            cr_assert_eq(rc, ACACHE_ENOTFOUND, "%s", acache_last_error());
        acache_affinity_free(a);
    }
    atomic_store(&h.stop, 1);
    for (int i = 0; i < READERS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&h.errors), 0);
    cr_assert_geq(rounds, 200, "only %d rounds in %.0f s", rounds, MAX_SECONDS);
    cr_assert_eq(stale, 0, "the handle served an invalidated pin after %d of %d rounds",
                 stale, rounds);
}

/* ---- writes that fail on a timeout (docs/affinity.md "Errors") ---- */

#include "redis_server.h"

static acache *open_on(const test_redis *r, uint32_t command_ms)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = r->uri;
    o.command_timeout_ms = command_ms;
    o.connect_timeout_ms = command_ms;
    /* These tests pause the server on purpose: a short breaker cool-down lets
     * the first calls after the resume reach it again. */
    o.breaker_cooldown_ms = 50;
    acache *h = NULL;
    cr_assert_eq(acache_open(&h, &o), ACACHE_OK, "%s", acache_last_error());
    return h;
}

static int64_t stored(acache *h)
{
    acache_stats s = {.version = ACACHE_STATS_VERSION};
    /* -1 while the store cannot answer yet (callers retry): the breaker may
     * still be open for a moment after the server resumes. */
    if (acache_stats_get(&s, h) != ACACHE_OK)
        return -1;
    return s.active_affinities;
}

static acache_stats counters(acache *h)
{
    acache_stats s = {.version = ACACHE_STATS_VERSION};
    acache_stats_get(&s, h);
    return s;
}

/* Issue 8 item 10: a write that returned an error may still be applied when
 * the server resumes; the counters must count only what the store confirmed. */
Test(l1_redis, timed_out_writes_are_not_counted)
{
    test_redis r = {0};
    cr_assert_eq(test_redis_start(&r), 0);
    acache *h = open_on(&r, 200);
    char ak[32];
    for (int i = 0; i < 4; i++) {
        snprintf(ak, sizeof ak, "keep-%d", i);
        cr_assert_eq(
            acache__affinity_set(NULL, h, ak, "claude", "m", "p", "e", "k", 1, 0),
            ACACHE_OK);
    }
    cr_assert_eq(test_redis_pause(&r), 0);
    int failed = 0;
    for (int i = 0; i < 6; i++) {
        snprintf(ak, sizeof ak, "new-%d", i);
        acache_touch_result res = ACACHE_TOUCH_CREATED;
        int rc = acache__affinity_set(&res, h, ak, "claude", "m", "p", "e", "k", 1, 0);
        cr_assert_eq(rc, ACACHE_ESTORE, "touch on a paused server: %d", rc);
        cr_assert_eq(res, ACACHE_TOUCH_SKIPPED);
        failed++;
    }
    for (int i = 0; i < 2; i++) {
        snprintf(ak, sizeof ak, "keep-%d", i);
        cr_assert_eq(acache_affinity_invalidate(h, ak, "claude", "m", NULL, NULL, NULL),
                     ACACHE_ESTORE);
    }
    size_t n = 99;
    cr_assert_eq(acache__affinity_invalidate_api_key(&n, h, "keep-2"), ACACHE_ESTORE);
    cr_assert_eq(n, 0);
    acache_stats s = counters(h);
    cr_assert_eq(s.total_affinities, 4, "failed touches must not count as creations");
    cr_assert_eq(s.cache_invalidations, 0, "failed invalidations must not count");
    cr_assert_eq(test_redis_resume(&r), 0);
    /* Whatever the server did with them, the counters stay as they were. */
    int64_t now = -1;
    for (int tries = 0; tries < 50 && (now = stored(h)) < 0; tries++)
        usleep(20000);
    cr_assert_geq(now, 2, "%" PRId64 " pins stored", now);
    cr_assert_leq(now, 4 + failed);
    s = counters(h);
    cr_assert_eq(s.total_affinities, 4);
    cr_assert_eq(s.cache_invalidations, 0);
    acache_close(h);
    test_redis_stop(&r);
}

typedef struct {
    test_redis *r;
    int delay_us;
} pauser;

static void *pause_later(void *p)
{
    pauser *pa = p;
    usleep((useconds_t)pa->delay_us);
    test_redis_pause(pa->r);
    return NULL;
}

/* A bulk removal cut by a timeout reports (and counts) what the store
 * confirmed; the batch in flight may have gone too: at most 500 more. */
Test(l1_redis, bulk_removal_cut_by_a_timeout_under_reports_by_one_batch_at_most,
     .timeout = 120)
{
    test_redis r = {0};
    cr_assert_eq(test_redis_start(&r), 0);
    acache *h = open_on(&r, 300);
    const int total = 20000;
    acache_store *st = acache_handle_store(h);
    char key[64], val[256];
    for (int i = 0; i < total; i++) {
        snprintf(key, sizeof key, "cache_affinity:k-%05d:claude:m", i);
        int len = snprintf(val, sizeof val,
                           "{\"provider_id\": \"victim\", \"endpoint_id\": \"e\", "
                           "\"key_id\": \"k\", \"created_at\": 1.0, "
                           "\"expire_at\": 9999999999.0, \"request_count\": 1}");
        cr_assert_eq(st->set(st, key, val, (size_t)len, 600), ACACHE_OK);
    }
    int cut = 0;
    /* Pause later and later until the pause lands after some deletes. */
    for (int delay = 5000; delay <= 320000 && !cut; delay *= 2) {
        int64_t before = stored(h);
        pauser pa = {&r, delay};
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, pause_later, &pa), 0);
        size_t removed = 0;
        uint64_t inv0 = counters(h).cache_invalidations;
        int rc = acache__affinity_invalidate_provider(&removed, h, "victim");
        pthread_join(t, NULL);
        cr_assert_eq(test_redis_resume(&r), 0);
        int64_t after = -1;
        for (int tries = 0; tries < 50 && (after = stored(h)) < 0; tries++)
            usleep(20000);
        cr_assert_geq(after, 0);
        int64_t gone = before - after;
        cr_assert_eq(counters(h).cache_invalidations - inv0, removed);
        cr_assert_leq((int64_t)removed, gone,
                      "claimed %zu removals, %" PRId64 " happened", removed, gone);
        cr_assert_leq(gone - (int64_t)removed, 500, "under-reported by %" PRId64,
                      gone - (int64_t)removed);
        cr_log_info("pause after %d us: rc %d, reported %zu, removed %" PRId64, delay, rc,
                    removed, gone);
        if (rc == ACACHE_ESTORE)
            cut = gone > 0;
        else
            cr_assert_eq(rc, ACACHE_OK, "%s", acache_last_error());
        if (after == 0)
            break; /* all gone before the pause: nothing left to cut */
    }
    if (!cut)
        cr_log_warn("no pause landed between two delete batches: bounds checked only");
    acache_close(h);
    test_redis_stop(&r);
}
