/* Deferred touch (options.touch_flush_ms, lib/core/deferred.c; issue 12
 * item 2) on a private Redis: exact counts after a flush, one script call
 * per pin per interval, the flush at acache_close, switches and creations
 * synchronous (pending touches first), removals forget pending touches,
 * Redis dying (kept, retried, counted), the bound on known pins, and no lost
 * count with 2 processes x 8 threads. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "aether_cache/aether_cache.h"
#include "aether_cache/sys/store.h"
#include "core/core.h"
#include "redis_server.h"

TEST_REDIS_SUITE(touch_deferred, 120);

static acache *open_deferred_at(const char *uri, uint32_t flush_ms, uint32_t max,
                                uint32_t timeout_ms)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = uri;
    o.touch_flush_ms = flush_ms;
    o.touch_pending_max = max;
    o.command_timeout_ms = timeout_ms;
    o.l1_ttl_ms = ACACHE_L1_OFF;
    o.stats_flush_ms = ACACHE_FLEET_OFF;
    acache *c = NULL;
    cr_assert_eq(acache_open(&c, &o), ACACHE_OK, "%s", acache_last_error());
    return c;
}

static acache *open_deferred(uint32_t flush_ms, uint32_t max, uint32_t timeout_ms)
{
    return open_deferred_at(srv.uri, flush_ms, max, timeout_ms);
}

static redisContext *raw(void)
{
    redisContext *r = redisConnect("127.0.0.1", srv.port);
    cr_assert(r && !r->err);
    return r;
}

/* request_count in Redis of pin model `m` (ak-d / claude), -1 if absent;
 * `prov` receives its provider_id when given. */
static long long stored_count(const char *m, char *prov, size_t cap)
{
    redisContext *r = raw();
    redisReply *rep = redisCommand(r, "GET cache_affinity:ak-d:claude:%s", m);
    long long n = -1;
    if (rep && rep->type == REDIS_REPLY_STRING) {
        const char *p = strstr(rep->str, "\"request_count\": ");
        cr_assert(p);
        n = atoll(p + strlen("\"request_count\": "));
        const char *q = strstr(rep->str, "\"provider_id\": \"");
        if (prov && q)
            snprintf(prov, cap, "%.*s", (int)strcspn(q + 16, "\""), q + 16);
    }
    freeReplyObject(rep);
    redisFree(r);
    return n;
}

static long long evalsha_calls(void)
{
    redisContext *r = raw();
    redisReply *rep = redisCommand(r, "INFO commandstats");
    const char *p = strstr(rep->str, "cmdstat_evalsha:calls=");
    long long n = p ? atoll(p + strlen("cmdstat_evalsha:calls=")) : 0;
    freeReplyObject(rep);
    redisFree(r);
    return n;
}

static void reset_stats(void)
{
    redisContext *r = raw();
    freeReplyObject(redisCommand(r, "CONFIG RESETSTAT"));
    redisFree(r);
}

static int touch(acache *c, const char *m, const char *prov, acache_touch_result *res)
{
    return acache__affinity_set(res, c, "ak-d", "claude", m, prov, "ep", "key", 1, 300);
}

static acache_stats stats_of(acache *c)
{
    acache_stats st = {.version = ACACHE_STATS_VERSION};
    acache_stats_get(&st, c);
    return st;
}

Test(touch_deferred, hot_pin_is_one_call_per_interval_and_exact_after_flush)
{
    acache *c = open_deferred(600000, 0, 2000); /* the thread never fires here */
    reset_stats();
    acache_touch_result res;
    cr_assert_eq(touch(c, "hot", "p", &res), ACACHE_OK);
    cr_expect_eq(res, ACACHE_TOUCH_CREATED, "a creation is synchronous");
    cr_expect_eq(stored_count("hot", NULL, 0), 1);
    for (int i = 0; i < 999; i++) {
        cr_assert_eq(touch(c, "hot", "p", &res), ACACHE_OK);
        cr_assert_eq(res, ACACHE_TOUCH_REFRESHED);
    }
    cr_expect_eq(stored_count("hot", NULL, 0), 1, "not applied before the flush");
    acache_stats st = stats_of(c);
    cr_expect_eq(st.touches_deferred, 999);
    cr_expect_eq(st.touches_pending, 999);
    cr_assert_eq(acache__deferred_flush(c), ACACHE_OK, "%s", acache_last_error());
    cr_expect_eq(stored_count("hot", NULL, 0), 1000, "exact after the flush");
    cr_expect_eq(evalsha_calls(), 2, "one create + one flush call for 1000 touches");
    st = stats_of(c);
    cr_expect_eq(st.touches_pending, 0);
    cr_expect_eq(st.touch_flushes, 1);
    acache_close(c);
}

Test(touch_deferred, background_flush_and_flush_at_close)
{
    acache *c = open_deferred(50, 0, 2000);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(touch(c, "bg", "p", NULL), ACACHE_OK);
    usleep(300 * 1000);
    cr_expect_eq(stored_count("bg", NULL, 0), 10,
                 "the thread flushed within an interval");
    acache_close(c);

    c = open_deferred(600000, 0, 2000);
    for (int i = 0; i < 25; i++)
        cr_assert_eq(touch(c, "closing", "p", NULL), ACACHE_OK);
    cr_expect_eq(stored_count("closing", NULL, 0), 1);
    acache_close(c);
    cr_expect_eq(stored_count("closing", NULL, 0), 25, "flushed at acache_close");
}

Test(touch_deferred, switch_is_synchronous_after_the_pending_touches)
{
    acache *c = open_deferred(600000, 0, 2000);
    acache_touch_result res;
    for (int i = 0; i < 5; i++)
        cr_assert_eq(touch(c, "sw", "p", NULL), ACACHE_OK);
    cr_assert_eq(touch(c, "sw", "q", &res), ACACHE_OK);
    cr_expect_eq(res, ACACHE_TOUCH_SWITCHED);
    char prov[32] = "";
    cr_expect_eq(stored_count("sw", prov, sizeof prov), 1);
    cr_expect_str_eq(prov, "q", "other processes see the new target at once");
    cr_assert_eq(acache__deferred_flush(c), ACACHE_OK);
    cr_expect_eq(stored_count("sw", prov, sizeof prov), 1, "p's touches went before");
    cr_expect_str_eq(prov, "q");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(touch(c, "sw", "q", &res), ACACHE_OK);
        cr_expect_eq(res, ACACHE_TOUCH_REFRESHED);
    }
    cr_assert_eq(acache__deferred_flush(c), ACACHE_OK);
    cr_expect_eq(stored_count("sw", NULL, 0), 4);
    /* Another process switched it meanwhile: our flush re-pins, counted. */
    redisContext *r = raw();
    freeReplyObject(redisCommand(r, "DEL cache_affinity:ak-d:claude:sw"));
    redisFree(r);
    cr_assert_eq(touch(c, "sw", "q", &res), ACACHE_OK);
    cr_expect_eq(res, ACACHE_TOUCH_REFRESHED, "known live locally");
    cr_assert_eq(acache__deferred_flush(c), ACACHE_OK);
    cr_expect_eq(stored_count("sw", NULL, 0), 1, "created again with its one touch");
    acache_close(c);
}

Test(touch_deferred, removal_forgets_pending_touches)
{
    acache *c = open_deferred(600000, 0, 2000);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(touch(c, "gone", "p", NULL), ACACHE_OK);
    cr_assert_eq(
        acache_affinity_invalidate(c, "ak-d", "claude", "gone", NULL, NULL, NULL),
        ACACHE_OK, "%s", acache_last_error());
    cr_assert_eq(acache__deferred_flush(c), ACACHE_OK);
    cr_expect_eq(stored_count("gone", NULL, 0), -1, "no flush brings it back");
    acache_touch_result res;
    cr_assert_eq(touch(c, "gone", "p", &res), ACACHE_OK);
    cr_expect_eq(res, ACACHE_TOUCH_CREATED, "forgotten: the next touch is synchronous");
    /* bulk removal too */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(touch(c, "gone", "p", NULL), ACACHE_OK);
    size_t n = 0;
    cr_assert_eq(acache__affinity_clear_all(&n, c), ACACHE_OK);
    acache_close(c);
    cr_expect_eq(stored_count("gone", NULL, 0), -1, "not even at close");
}

Test(touch_deferred, redis_dying_keeps_retries_and_counts)
{
    acache *c = open_deferred(600000, 0, 300);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(touch(c, "dying", "p", NULL), ACACHE_OK);
    cr_assert_eq(test_redis_pause(&srv), 0);
    /* Known live: still answered locally while Redis does not answer. */
    for (int i = 0; i < 5; i++)
        cr_assert_eq(touch(c, "dying", "p", NULL), ACACHE_OK);
    cr_expect_eq(acache__deferred_flush(c), ACACHE_ESTORE);
    cr_expect_eq(acache__deferred_flush(c), ACACHE_ESTORE);
    acache_stats st = stats_of(c);
    cr_expect_eq(st.touch_flush_failures, 2);
    cr_expect_eq(st.touches_pending, 14, "kept");
    /* A new pin cannot be deferred: its touch fails now, as without deferral. */
    cr_expect_eq(touch(c, "new-while-down", "p", NULL), ACACHE_ESTORE);
    cr_assert_eq(test_redis_resume(&srv), 0);
    cr_expect_eq(acache__deferred_flush(c), ACACHE_OK, "%s", acache_last_error());
    cr_expect_eq(stored_count("dying", NULL, 0), 15, "retried: exact");
    st = stats_of(c);
    cr_expect_eq(st.touches_pending, 0);
    acache_close(c);
}

Test(touch_deferred, known_pins_are_bounded)
{
    /* touch=script: every synchronous touch is then one EVALSHA to count
     * (the swap path would refresh known pins with SET ... GET instead) */
    char uri[1400];
    snprintf(uri, sizeof uri, "%s?touch=script", srv.uri);
    acache *c = open_deferred_at(uri, 600000, 4, 2000);
    reset_stats();
    char m[32];
    for (int k = 0; k < 10; k++) {
        snprintf(m, sizeof m, "b%d", k);
        for (int i = 0; i < 3; i++)
            cr_assert_eq(touch(c, m, "p", NULL), ACACHE_OK);
    }
    acache_stats st = stats_of(c);
    cr_expect_eq(st.touches_deferred, 4 * 2, "only 4 pins known: the rest synchronous");
    cr_expect_eq(evalsha_calls(), 10 + 6 * 2);
    acache_close(c);
    for (int k = 0; k < 10; k++) {
        snprintf(m, sizeof m, "b%d", k);
        cr_expect_eq(stored_count(m, NULL, 0), 3, "%s", m);
    }
}

enum { PROCS = 2, THREADS = 8, PINS = 4, TOUCHES = 300 };

typedef struct worker {
    acache *c;
    int id, failed;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < TOUCHES; i++) {
        char m[32];
        snprintf(m, sizeof m, "shared-%d", (i + w->id) % PINS);
        if (touch(w->c, m, "p", NULL) != ACACHE_OK)
            w->failed++;
    }
    return NULL;
}

Test(touch_deferred, two_processes_eight_threads_lose_no_count)
{
    pid_t kids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        fflush(NULL);
        kids[p] = fork();
        cr_assert_geq(kids[p], 0);
        if (kids[p] == 0) {
            acache_options o = ACACHE_OPTIONS_INIT;
            o.store_uri = srv.uri;
            o.touch_flush_ms = 5;
            acache *c = NULL;
            if (acache_open(&c, &o) != ACACHE_OK)
                _exit(100);
            pthread_t th[THREADS];
            worker w[THREADS];
            for (int t = 0; t < THREADS; t++) {
                w[t] = (worker){.c = c, .id = p * THREADS + t};
                pthread_create(&th[t], NULL, worker_main, &w[t]);
            }
            int failed = 0;
            for (int t = 0; t < THREADS; t++) {
                pthread_join(th[t], NULL);
                failed += w[t].failed;
            }
            acache_close(c);
            _exit(failed ? 101 : 0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int st;
        cr_assert_eq(waitpid(kids[p], &st, 0), kids[p]);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker failed");
    }
    long long total = 0;
    for (int m = 0; m < PINS; m++) {
        char name[32];
        snprintf(name, sizeof name, "shared-%d", m);
        total += stored_count(name, NULL, 0);
    }
    cr_expect_eq(total, (long long)PROCS * THREADS * TOUCHES);
}
