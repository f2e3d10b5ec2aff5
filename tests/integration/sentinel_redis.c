/* redis-sentinel:// failover and the circuit breaker, on real servers
 * (docs/redis.md "Sentinel", "Circuit breaker"). One Sentinel set per test
 * binary run: the failover test is the only one that starts it. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <aether_cache/aether_cache.h>
#include <aether_cache/sys/store.h>

#include "redis_server.h"

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int touch(acache *c, const char *key, const char *model)
{
    acache_touch t = ACACHE_TOUCH_INIT;
    t.affinity_key = key;
    t.api_format = "openai";
    t.model_name = model;
    t.provider_id = "prov";
    t.endpoint_id = "ep";
    t.key_id = "key";
    return acache_affinity_touch(NULL, c, &t);
}

static acache *open_uri(const char *uri, uint32_t timeout_ms, uint32_t threshold,
                        uint32_t cooldown_ms)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = uri;
    o.l1_ttl_ms = ACACHE_L1_OFF;
    o.stats_flush_ms = ACACHE_FLEET_OFF;
    o.connect_timeout_ms = timeout_ms;
    o.command_timeout_ms = timeout_ms;
    o.breaker_threshold = threshold;
    o.breaker_cooldown_ms = cooldown_ms;
    acache *c = NULL;
    int rc = acache_open(&c, &o);
    cr_assert_eq(rc, ACACHE_OK, "open %s: %s", uri, acache_last_error());
    return c;
}

/* ---- URIs ---- */

Test(sentinel, bad_uris_are_einvalid_and_never_echo_secrets)
{
    const char *bad[] = {
        "redis-sentinel://",
        "redis-sentinel://h:0?service=x",
        "redis-sentinel://h:99999",
        "redis-sentinel://h,?service=x",
        "redis-sentinel://h?service=",
        "redis-sentinel://h?tls=maybe",
        "redis-sentinel://h?wait_replicas=99",
        "redis-sentinel://h?sentinel_user=u",
        "redis-sentinel://u:s3cret@h?bogus=1",
        "redis-sentinel://h?sentinel_password=s3cret%zz",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        acache_options o = ACACHE_OPTIONS_INIT;
        o.store_uri = bad[i];
        acache *c = NULL;
        cr_expect_eq(acache_open(&c, &o), ACACHE_EINVALID, "%s: %s", bad[i],
                     acache_last_error());
        cr_expect_null(strstr(acache_last_error(), "s3cret"), "%s", acache_last_error());
    }
}

Test(sentinel, no_sentinel_answers_within_the_connect_timeout)
{
    /* Nothing listens on these ports: refused at once, each in turn. */
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = "redis-sentinel://127.0.0.1:1,127.0.0.1:2?service=acache";
    o.connect_timeout_ms = 300;
    acache *c = NULL;
    int64_t t0 = mono_us();
    cr_assert_eq(acache_open(&c, &o), ACACHE_ESTORE);
    cr_expect_lt(mono_us() - t0, 400000);
    cr_expect_not_null(strstr(acache_last_error(), "127.0.0.1:1"), "%s",
                       acache_last_error());
    cr_expect_not_null(strstr(acache_last_error(), "127.0.0.1:2"), "%s",
                       acache_last_error());
}

/* ---- failover ---- */

#define THREADS 4
#define PINS_PER_THREAD 8

typedef struct loop_ctx {
    acache *c;
    int id;
    atomic_int *stop;
    uint64_t ok[PINS_PER_THREAD], failed;
    int64_t last_fail_us, first_ok_after_fail_us;
} loop_ctx;

static void *touch_loop(void *p)
{
    loop_ctx *l = p;
    for (uint64_t i = 0; !atomic_load(l->stop); i++) {
        char key[64];
        int pin = (int)(i % PINS_PER_THREAD);
        snprintf(key, sizeof key, "ak-%d-%d", l->id, pin);
        int rc = touch(l->c, key, "gpt-4");
        if (rc == ACACHE_OK) {
            l->ok[pin]++;
        } else {
            l->failed++;
            l->last_fail_us = mono_us();
        }
    }
    return NULL;
}

Test(sentinel, failover_keeps_every_acknowledged_touch, .timeout = 120)
{
    test_sentinel_set set;
    cr_assert_eq(test_sentinel_start(&set), 0, "could not start the sentinel set");
    /* wait_replicas=1: a touch is acknowledged once the replica holds it
     * (WAIT), so the promoted replica has every acknowledged touch; after the
     * failover the new primary has no replica and nothing is waited for. */
    char uri[700];
    snprintf(uri, sizeof uri, "%s&wait_replicas=1", set.uri);
    acache *c = open_uri(uri, 500, 5, 500);

    /* The handle talks to the primary: a pin written is on it. */
    cr_assert_eq(touch(c, "first", "m"), ACACHE_OK, "%s", acache_last_error());

    atomic_int stop = 0;
    loop_ctx l[THREADS];
    pthread_t th[THREADS];
    memset(l, 0, sizeof l);
    for (int i = 0; i < THREADS; i++) {
        l[i] = (loop_ctx){.c = c, .id = i, .stop = &stop};
        pthread_create(&th[i], NULL, touch_loop, &l[i]);
    }
    sleep_ms(500);
    int old_port = set.primary.port;
    int64_t killed = mono_us();
    cr_assert_eq(test_redis_kill(&set.primary), 0);
    /* Wait for the sentinels to promote the replica. */
    int new_port = -1;
    for (int i = 0; i < 200 && (new_port = test_sentinel_primary_port(&set)) == old_port;
         i++)
        sleep_ms(50);
    cr_assert_eq(new_port, set.replica.port, "no failover (primary port %d)", new_port);
    int64_t promoted = mono_us();
    /* Then the loop must run against the new primary: every thread succeeds
     * again within down-after + failover (seen above) + one breaker
     * cool-down (500 ms) + a dial (500 ms). */
    sleep_ms(1500);
    int64_t quiet_from = mono_us();
    sleep_ms(1000);
    atomic_store(&stop, 1);
    uint64_t failed = 0, ok = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        failed += l[i].failed;
        for (int k = 0; k < PINS_PER_THREAD; k++)
            ok += l[i].ok[k];
        cr_expect_lt(l[i].last_fail_us, quiet_from,
                     "thread %d still failing %.0f ms after the promotion", i,
                     (l[i].last_fail_us - promoted) / 1000.0);
    }
    fprintf(stderr,
            "sentinel failover: promoted %.0f ms after SIGKILL; %llu touches OK, %llu "
            "failed\n",
            (promoted - killed) / 1000.0, (unsigned long long)ok,
            (unsigned long long)failed);
    cr_expect_gt(failed, 0, "the kill went unnoticed?");

    acache_store_health h;
    acache_store *st = acache_handle_store(c);
    cr_assert_not_null(st->health);
    st->health(st, &h);
    cr_expect_geq(h.primary_changes, 1);

    /* Every acknowledged touch is on the new primary: request_count >= OK
     * touches (a touch that failed with its outcome unknown may have counted
     * too). Without wait_replicas a few acknowledged in the primary's last
     * moments could be lost (asynchronous replication, docs/redis.md). */
    uint64_t lost = 0;
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < PINS_PER_THREAD; k++) {
            char key[64];
            snprintf(key, sizeof key, "ak-%d-%d", i, k);
            acache_affinity *a = NULL;
            cr_assert_eq(acache_affinity_get(&a, c, key, "openai", "gpt-4"), ACACHE_OK,
                         "%s: %s", key, acache_last_error());
            uint64_t have = (uint64_t)acache_affinity_request_count(a);
            if (have < l[i].ok[k])
                lost += l[i].ok[k] - have;
            acache_affinity_free(a);
        }
    fprintf(stderr,
            "sentinel failover: %llu acknowledged touch(es) not on the new primary\n",
            (unsigned long long)lost);
    cr_expect_eq(lost, 0, "%llu acknowledged touches lost in the failover",
                 (unsigned long long)lost);
    acache_close(c);
    test_sentinel_stop(&set);
}

/* ---- circuit breaker ---- */

Test(breaker, opens_fails_fast_then_probes, .timeout = 60)
{
    test_redis srv;
    cr_assert_eq(test_redis_start(&srv), 0);
    acache *c = open_uri(srv.uri, 200, 3, 1000);
    acache_store *st = acache_handle_store(c);
    acache_affinity *a = NULL;
    cr_assert_eq(touch(c, "b", "m"), ACACHE_OK);

    cr_assert_eq(test_redis_pause(&srv), 0);
    /* The first calls wait for the timeout. */
    for (int i = 0; i < 3; i++) {
        int64_t t0 = mono_us();
        cr_expect_eq(acache_affinity_get(&a, c, "b", "openai", "m"), ACACHE_ESTORE);
        int64_t us = mono_us() - t0;
        cr_expect_geq(us, 150000, "call %d took %lld us", i, (long long)us);
        cr_expect_lt(us, 1000000, "call %d took %lld us", i, (long long)us);
    }
    acache_store_health h;
    st->health(st, &h);
    cr_expect_eq(h.breaker_state, ACACHE_BREAKER_OPEN);
    cr_expect_eq(h.breaker_opens, 1);
    /* Then they fail at once, with a message that says why. */
    int64_t t0 = mono_us();
    for (int i = 0; i < 100; i++) {
        int64_t t1 = mono_us();
        cr_expect_eq(acache_affinity_get(&a, c, "b", "openai", "m"), ACACHE_ESTORE);
        cr_expect_lt(mono_us() - t1, 1000, "fast failure %d took %lld us", i,
                     (long long)(mono_us() - t1));
    }
    cr_expect_not_null(strstr(acache_last_error(), "circuit open"), "%s",
                       acache_last_error());
    cr_expect_lt(mono_us() - t0, 100000);
    st->health(st, &h);
    cr_expect_eq(h.fast_failures, 100);

    /* Still down at the end of the cool-down: the probe fails, open again. */
    sleep_ms(1100);
    cr_expect_eq(acache_affinity_get(&a, c, "b", "openai", "m"), ACACHE_ESTORE);
    st->health(st, &h);
    cr_expect_eq(h.breaker_state, ACACHE_BREAKER_OPEN);
    cr_expect_eq(h.breaker_opens, 2);

    /* Back: after the cool-down the first call succeeds and closes it. */
    cr_assert_eq(test_redis_resume(&srv), 0);
    cr_expect_eq(acache_affinity_get(&a, c, "b", "openai", "m"), ACACHE_ESTORE,
                 "still within the cool-down");
    sleep_ms(1100);
    cr_expect_eq(acache_affinity_get(&a, c, "b", "openai", "m"), ACACHE_OK, "%s",
                 acache_last_error());
    acache_affinity_free(a);
    a = NULL;
    st->health(st, &h);
    cr_expect_eq(h.breaker_state, ACACHE_BREAKER_CLOSED);
    cr_expect_eq(h.consecutive_failures, 0);

    /* Visible in the stats JSON and /metrics. */
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_stats_json(&b, c), ACACHE_OK);
    cr_expect_not_null(strstr(b.ptr, "\"circuit_breaker\""), "%s", b.ptr);
    acache_buf_dispose(&b);
    cr_assert_eq(acache_metrics_text(&b, c), ACACHE_OK);
    cr_expect_not_null(strstr(b.ptr, "acache_store_breaker_opens_total 2"), "%s", b.ptr);
    cr_expect_not_null(strstr(b.ptr, "acache_store_breaker_fast_failures_total 101"),
                       "%s", b.ptr);
    acache_buf_dispose(&b);
    acache_close(c);
    test_redis_stop(&srv);
}

Test(breaker, answers_from_the_server_are_not_failures)
{
    test_redis srv;
    cr_assert_eq(test_redis_start(&srv), 0);
    acache *c = open_uri(srv.uri, 500, 2, 60000);
    acache_affinity *a = NULL;
    for (int i = 0; i < 10; i++)
        cr_expect_eq(acache_affinity_get(&a, c, "none", "openai", "m"), ACACHE_ENOTFOUND);
    acache_store_health h;
    acache_store *st = acache_handle_store(c);
    st->health(st, &h);
    cr_expect_eq(h.breaker_state, ACACHE_BREAKER_CLOSED);
    cr_expect_eq(h.breaker_opens, 0);
    acache_close(c);
    test_redis_stop(&srv);
}
