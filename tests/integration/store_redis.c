/* Redis store against a private redis-server: URIs, failures and reconnects,
 * the Lua touch / compare-and-delete, SCAN listings, Aether's own values. */
#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "aether_cache/aether_cache.h"
#include "aether_cache/sys/store.h"
#include "core/core.h"
#include "redis_server.h"

TEST_REDIS_SUITE(store_redis, 60);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A side connection to the test server, to look at what the store wrote. */
static redisContext *raw(void)
{
    redisContext *c = redisConnect("127.0.0.1", srv.port);
    cr_assert(c && !c->err, "raw connect");
    return c;
}

static redisReply *rcmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert(r, "raw command failed: %s", c->errstr);
    return r;
}

static acache_store *open_store(uint32_t connect_ms, uint32_t command_ms)
{
    acache_store *s = NULL;
    int rc = acache__store_redis_new(&s, srv.uri, connect_ms, command_ms);
    cr_assert_eq(rc, ACACHE_OK, "store open: %s", acache_last_error());
    return s;
}

static acache *open_handle(const char *uri, acache_clock_fn clock, void *clock_payload)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = uri ? uri : srv.uri;
    o.l1_ttl_ms = -1; /* these tests look at the store, not the L1 cache */
    o.clock = clock;
    o.clock_payload = clock_payload;
    o.command_timeout_ms = 1000;
    o.connect_timeout_ms = 1000;
    acache *c = NULL;
    int rc = acache_open(&c, &o);
    cr_assert_eq(rc, ACACHE_OK, "acache_open: %s", acache_last_error());
    return c;
}

/* ---- record capture ---- */

typedef struct captured {
    char provider[128], endpoint[128], key[128], fmt[128], model[256];
    double created_at, expire_at;
    int64_t count;
    int seen;
} captured;

static void copy_or_empty(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s ? s : "(null)");
}

static void capture_cb(const acache_record *r, void *payload)
{
    captured *c = payload;
    copy_or_empty(c->provider, sizeof c->provider, r->provider_id);
    copy_or_empty(c->endpoint, sizeof c->endpoint, r->endpoint_id);
    copy_or_empty(c->key, sizeof c->key, r->key_id);
    copy_or_empty(c->fmt, sizeof c->fmt, r->api_format);
    copy_or_empty(c->model, sizeof c->model, r->model_name);
    c->created_at = r->created_at;
    c->expire_at = r->expire_at;
    c->count = r->request_count;
    c->seen++;
}

static int touch(acache_store *s, const char *key, const char *p, const char *e,
                 const char *k, const char *model, double now, uint32_t ttl,
                 captured *out)
{
    acache_touch_req req = {.key = key,
                            .provider_id = p,
                            .endpoint_id = e,
                            .key_id = k,
                            .api_format = "claude",
                            .model_name = model,
                            .now = now,
                            .ttl_s = ttl};
    int result = -1;
    int rc = s->affinity_touch(s, &req, &result, capture_cb, out);
    cr_assert_eq(rc, ACACHE_OK, "touch: %s", acache_last_error());
    return result;
}

/* Keys as the delete slots take them (bytes + length); free() the array. */
static acache_key *key_array(const char *const *strs, size_t n)
{
    acache_key *k = calloc(n ? n : 1, sizeof *k);
    cr_assert_not_null(k);
    for (size_t i = 0; i < n; i++)
        k[i] = (acache_key){strs[i], strlen(strs[i])};
    return k;
}

/* ---- URIs ---- */

Test(store_redis, uri_junk_is_invalid)
{
    const char *bad[] = {
        "redis://",
        "redis://:6379",
        "redis://host:0",
        "redis://host:65536",
        "redis://host:12ab",
        "redis://host:",
        "redis://host/abc",
        "redis://host/0?foo=bar",
        "redis://ho st",
        "redis://user@host",
        "redis://[::1",
        "http://host",
        "redis://host?cacert=/tmp/ca.pem",
        "redis://host?verify=no",
        "rediss://host?verify=maybe",
        "rediss://host?cert=/tmp/c.pem",
        "rediss://host?key=/tmp/k.pem",
        "rediss://host?tls=1",
        "unix://",
        "unix://relative/path",
        "unix:///",
        "redis://host/0#frag",
        "redis://:pw%zz@host",
        "redis://host/-1",
        "redis://host/0?db=x",
        "redis:/host",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        acache_store *s = NULL;
        int rc = acache__store_redis_new(&s, bad[i], 500, 500);
        cr_expect_eq(rc, ACACHE_EINVALID, "%s gave %d (%s)", bad[i], rc,
                     acache_last_error());
        cr_expect_null(s);
    }
    /* The message never repeats the password. */
    acache_store *s = NULL;
    cr_assert_eq(acache__store_redis_new(&s, "redis://:s3cret-pw@host:99x", 500, 500),
                 ACACHE_EINVALID);
    cr_expect_null(strstr(acache_last_error(), "s3cret"), "%s", acache_last_error());
}

Test(store_redis, uri_forms_that_work)
{
    char uri[512];
    const char *fmts[] = {"redis://127.0.0.1:%d", "redis://localhost:%d/",
                          "redis://127.0.0.1:%d/3", "redis://127.0.0.1:%d?db=4"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(uri, sizeof uri, fmts[i], srv.port);
        acache_store *s = NULL;
        cr_assert_eq(acache__store_redis_new(&s, uri, 1000, 1000), ACACHE_OK, "%s: %s",
                     uri, acache_last_error());
        cr_assert_eq(s->set(s, "uri-test", "v", 1, 0), ACACHE_OK);
        s->free(s);
    }
    redisContext *c = raw();
    redisReply *r = rcmd(c, "SELECT 3");
    freeReplyObject(r);
    r = rcmd(c, "EXISTS uri-test");
    cr_expect_eq(r->integer, 1, "redis://host/3 selects db 3");
    freeReplyObject(r);
    r = rcmd(c, "SELECT 4");
    freeReplyObject(r);
    r = rcmd(c, "EXISTS uri-test");
    cr_expect_eq(r->integer, 1, "?db=4 selects db 4");
    freeReplyObject(r);

    /* unix socket, with a database */
    snprintf(uri, sizeof uri, "unix://%s/redis.sock?db=2", srv.dir);
    acache_store *s = NULL;
    cr_assert_eq(acache__store_redis_new(&s, uri, 1000, 1000), ACACHE_OK, "%s: %s", uri,
                 acache_last_error());
    cr_assert_eq(s->set(s, "unix-test", "v", 1, 0), ACACHE_OK);
    s->free(s);
    r = rcmd(c, "SELECT 2");
    freeReplyObject(r);
    r = rcmd(c, "EXISTS unix-test");
    cr_expect_eq(r->integer, 1, "unix socket ?db=2");
    freeReplyObject(r);

    /* password (default user) and an ACL user; percent-escapes decoded */
    r = rcmd(c, "ACL SETUSER alice on >p@ss:word ~* +@all");
    freeReplyObject(r);
    r = rcmd(c, "CONFIG SET requirepass top/secret");
    freeReplyObject(r);
    snprintf(uri, sizeof uri, "redis://:top%%2Fsecret@127.0.0.1:%d/0", srv.port);
    cr_expect_eq(acache__store_redis_new(&s, uri, 1000, 1000), ACACHE_OK, "%s",
                 acache_last_error());
    if (s)
        s->free(s);
    snprintf(uri, sizeof uri, "redis://alice:p%%40ss:word@127.0.0.1:%d", srv.port);
    s = NULL;
    cr_expect_eq(acache__store_redis_new(&s, uri, 1000, 1000), ACACHE_OK, "%s",
                 acache_last_error());
    if (s)
        s->free(s);
    snprintf(uri, sizeof uri, "redis://:wrong-pw@127.0.0.1:%d", srv.port);
    s = NULL;
    cr_expect_eq(acache__store_redis_new(&s, uri, 1000, 1000), ACACHE_ESTORE);
    cr_expect_null(strstr(acache_last_error(), "wrong-pw"), "%s", acache_last_error());
    s = NULL;
    cr_expect_eq(acache__store_redis_new(&s, srv.uri, 1000, 1000), ACACHE_ESTORE,
                 "no password while one is required");
    cr_expect_null(s);
    redisFree(c);
}

/* ---- failures ---- */

Test(store_redis, server_down_at_open_fails_fast)
{
    char uri[sizeof srv.uri];
    snprintf(uri, sizeof uri, "%s", srv.uri);
    test_redis_stop(&srv);
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = uri;
    acache *c = NULL;
    int64_t t0 = mono_ms();
    cr_assert_eq(acache_open(&c, &o), ACACHE_ESTORE);
    cr_expect_lt(mono_ms() - t0, 1000);
    cr_expect_null(c);
    cr_expect(strstr(acache_last_error(), "redis connect 127.0.0.1:"), "%s",
              acache_last_error());
    cr_expect(strstr(acache_last_error(), "refused"), "%s", acache_last_error());
}

Test(store_redis, paused_server_times_out_then_recovers)
{
    acache_store *s = open_store(300, 300);
    cr_assert_eq(s->set(s, "k", "v", 1, 0), ACACHE_OK);
    cr_assert_eq(test_redis_pause(&srv), 0);
    acache_buf b = ACACHE_BUF_INIT;
    int64_t t0 = mono_ms();
    int rc = s->get(s, "k", &b);
    int64_t took = mono_ms() - t0;
    cr_expect_eq(rc, ACACHE_ESTORE);
    cr_expect_lt(took, 1500, "took %lld ms", (long long)took);
    cr_expect(strstr(acache_last_error(), "redis GET k: timed out after 300 ms"), "%s",
              acache_last_error());
    /* A touch on a paused server also gives up after the timeout. */
    captured cap = {0};
    acache_touch_req req = {.key = "cache_affinity:a:claude:m",
                            .provider_id = "p",
                            .endpoint_id = "e",
                            .key_id = "k",
                            .api_format = "claude",
                            .model_name = "m",
                            .now = now_s(),
                            .ttl_s = 300};
    int result;
    t0 = mono_ms();
    cr_expect_eq(s->affinity_touch(s, &req, &result, capture_cb, &cap), ACACHE_ESTORE);
    cr_expect_lt(mono_ms() - t0, 1500);
    cr_expect(strstr(acache_last_error(), "timed out after 300 ms"), "%s",
              acache_last_error());
    cr_assert_eq(test_redis_resume(&srv), 0);
    cr_expect_eq(s->get(s, "k", &b), ACACHE_OK, "%s", acache_last_error());
    cr_expect_eq(b.size, 1);
    acache_buf_dispose(&b);
    s->free(s);
}

Test(store_redis, stopped_server_gives_clear_error)
{
    acache *c = open_handle(NULL, NULL, NULL);
    cr_assert_eq(acache__affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k", 1, 0),
                 ACACHE_OK);
    test_redis_stop(&srv);
    acache_affinity *a = NULL;
    cr_expect_eq(acache_affinity_get(&a, c, "ak", "claude", "m"), ACACHE_ESTORE);
    cr_expect(strstr(acache_last_error(), "redis "), "%s", acache_last_error());
    cr_expect_eq(acache__affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k", 1, 0),
                 ACACHE_ESTORE);
    size_t n;
    cr_expect_eq(acache__affinity_clear_all(&n, c), ACACHE_ESTORE);
    acache_close(c);
}

Test(store_redis, restart_reconnects_and_reloads_scripts)
{
    acache_store *s = open_store(1000, 1000);
    const char *key = "cache_affinity:ak:claude:m";
    captured cap = {0};
    double t = now_s();
    cr_expect_eq(touch(s, key, "p", "e", "k", "m", t, 300, &cap), ACACHE_TOUCH_CREATED);
    cr_expect_eq(touch(s, key, "p", "e", "k", "m", t, 300, &cap), ACACHE_TOUCH_REFRESHED);
    cr_assert_eq(test_redis_restart(&srv), 0);
    /* Data is gone, the pooled connection is dead: the very next touch must
     * notice before sending, redial, reload the script and create. */
    cr_expect_eq(touch(s, key, "p", "e", "k", "m", t, 300, &cap), ACACHE_TOUCH_CREATED);
    cr_expect_eq(cap.count, 1);
    acache_buf b = ACACHE_BUF_INIT;
    cr_expect_eq(s->get(s, key, &b), ACACHE_OK, "%s", acache_last_error());
    acache_buf_dispose(&b);

    /* Scripts flushed behind our back: NOSCRIPT falls back to EVAL. */
    redisContext *c = raw();
    freeReplyObject(rcmd(c, "SCRIPT FLUSH"));
    cr_expect_eq(touch(s, key, "p", "e", "k", "m", t, 300, &cap), ACACHE_TOUCH_REFRESHED);
    cr_expect_eq(cap.count, 2);
    freeReplyObject(rcmd(c, "SCRIPT FLUSH"));
    acache_match m = {.provider_id = "p"};
    size_t deleted = 0;
    const acache_key keys[] = {{key, strlen(key)}};
    cr_expect_eq(s->affinity_delete_if(s, keys, 1, &m, &deleted), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(deleted, 1);
    redisFree(c);

    /* Through the public API too. */
    acache *h = open_handle(NULL, NULL, NULL);
    cr_assert_eq(acache__affinity_set(NULL, h, "ak", "claude", "m", "p", "e", "k", 1, 0),
                 ACACHE_OK);
    cr_assert_eq(test_redis_restart(&srv), 0);
    acache_touch_result res;
    cr_expect_eq(acache__affinity_set(&res, h, "ak", "claude", "m", "p", "e", "k", 1, 0),
                 ACACHE_OK, "%s", acache_last_error());
    cr_expect_eq(res, ACACHE_TOUCH_CREATED);
    acache_close(h);
    s->free(s);
}

/* ---- Lua touch ---- */

Test(store_redis, touch_semantics_and_exact_value)
{
    acache_store *s = open_store(1000, 1000);
    const char *key = "cache_affinity:ak:claude:m/x";
    captured cap = {0};
    double t0 = 1732262400.123456;
    cr_expect_eq(touch(s, key, "p1", "e1", "k1", "m/x", t0, 300, &cap),
                 ACACHE_TOUCH_CREATED);
    cr_expect_eq(cap.seen, 1);
    cr_expect_str_eq(cap.provider, "p1");
    cr_expect_str_eq(cap.model, "m/x");
    cr_expect_eq(cap.created_at, t0);
    cr_expect_eq(cap.expire_at, t0 + 300);
    cr_expect_eq(cap.count, 1);

    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(s->get(s, key, &b), ACACHE_OK);
    cr_expect_str_eq(
        b.ptr, "{\"provider_id\": \"p1\", \"endpoint_id\": \"e1\", \"key_id\": \"k1\", "
               "\"api_format\": \"claude\", \"model_name\": \"m/x\", "
               "\"created_at\": 1732262400.123456, \"expire_at\": 1732262700.123456, "
               "\"request_count\": 1}");
    /* The core renders the same record byte for byte. */
    acache_record rec = {"p1", "e1", "k1", "claude", "m/x", t0, t0 + 300, 1};
    acache_buf r2 = ACACHE_BUF_INIT;
    cr_assert_eq(acache_record_render(&r2, &rec), ACACHE_OK);
    cr_expect_str_eq(b.ptr, r2.ptr);
    acache_buf_dispose(&r2);

    int64_t ttl = 0;
    const char *keys[] = {key};
    cr_assert_eq(s->ttl(s, keys, 1, &ttl), ACACHE_OK);
    cr_expect(ttl > 290 && ttl <= 300, "ttl %lld", (long long)ttl);

    /* refresh: created_at kept, count + 1, expire slid */
    double t1 = t0 + 10.5;
    cr_expect_eq(touch(s, key, "p1", "e1", "k1", "m/x", t1, 600, &cap),
                 ACACHE_TOUCH_REFRESHED);
    cr_expect_eq(cap.created_at, t0);
    cr_expect_eq(cap.expire_at, t1 + 600);
    cr_expect_eq(cap.count, 2);
    cr_assert_eq(s->ttl(s, keys, 1, &ttl), ACACHE_OK);
    cr_expect(ttl > 590, "ttl slid to %lld", (long long)ttl);

    /* switch: another key on a live pin */
    cr_expect_eq(touch(s, key, "p1", "e1", "k2", "m/x", t1 + 1, 300, &cap),
                 ACACHE_TOUCH_SWITCHED);
    cr_expect_eq(cap.created_at, t1 + 1);
    cr_expect_eq(cap.count, 1);

    /* expired by expire_at (key still present) counts as none */
    cr_expect_eq(touch(s, key, "p1", "e1", "k2", "m/x", t1 + 1000, 300, &cap),
                 ACACHE_TOUCH_CREATED);
    cr_expect_eq(cap.count, 1);

    /* an unreadable existing value counts as none */
    const char *junk[] = {"{\"provider_id\": \"p", "[1,2]", "42", "{}",
                          ("{\"provider_id\": \"p1\", \"endpoint_id\": \"e1\", "
                           "\"key_id\": \"k1\", \"expire_at\": \"soon\"}")};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
        cr_assert_eq(s->set(s, key, junk[i], strlen(junk[i]), 0), ACACHE_OK);
        cr_expect_eq(touch(s, key, "p1", "e1", "k1", "m/x", t1, 300, &cap),
                     ACACHE_TOUCH_CREATED, "junk %zu", i);
    }
    /* a value written by Aether (7 decimals) is refreshed keeping its digits */
    const char *aether = "{\"provider_id\": \"p1\", \"endpoint_id\": \"e1\", \"key_id\": "
                         "\"k1\", \"api_format\": \"claude\", \"model_name\": \"m/x\", "
                         "\"created_at\": 1795309733.4665794, \"expire_at\": "
                         "1795313333.4671035, \"request_count\": 2}";
    cr_assert_eq(s->set(s, key, aether, strlen(aether), 3600), ACACHE_OK);
    cr_expect_eq(touch(s, key, "p1", "e1", "k1", "m/x", 1795309800.25, 300, &cap),
                 ACACHE_TOUCH_REFRESHED);
    cr_expect_eq(cap.count, 3);
    cr_assert_eq(s->get(s, key, &b), ACACHE_OK);
    cr_expect(strstr(b.ptr, "\"created_at\": 1795309733.4665794, \"expire_at\": "
                            "1795310100.25, \"request_count\": 3}"),
              "%s", b.ptr);

    /* strings that need escaping come out as json.dumps writes them */
    cr_expect_eq(touch(s, "cache_affinity:ak:claude:q", "p\"1\\", "e\n1", "k\t1", "q", t0,
                       300, &cap),
                 ACACHE_TOUCH_CREATED);
    cr_assert_eq(s->get(s, "cache_affinity:ak:claude:q", &b), ACACHE_OK);
    cr_expect(strstr(b.ptr,
                     "{\"provider_id\": \"p\\\"1\\\\\", \"endpoint_id\": \"e\\n1\", "
                     "\"key_id\": \"k\\t1\""),
              "%s", b.ptr);
    captured got = {0};
    cr_expect_eq(s->affinity_get(s, "cache_affinity:ak:claude:q", capture_cb, &got),
                 ACACHE_OK);
    cr_expect_str_eq(got.provider, "p\"1\\");
    acache_buf_dispose(&b);
    s->free(s);
}

/* ---- compare-and-delete ---- */

/* lib/store/redis/affinity.c: runs between the optimistic delete's read
 * (WATCH + MGET) and its EXEC. */
extern void (*acache__redis_delete_hook)(void);
static redisContext *race_conn;
static int race_calls;

static void race_switch_one(void)
{
    /* another process switches pin 5 to provider pC after the read */
    if (race_calls++ == 0)
        freeReplyObject(rcmd(race_conn, "SET %s %s", "cache_affinity:race5:claude:m",
                             "{\"provider_id\": \"pC\", \"endpoint_id\": \"e\", "
                             "\"key_id\": \"k\", \"api_format\": \"claude\", "
                             "\"model_name\": \"m\", \"created_at\": 1.0, "
                             "\"expire_at\": 9999999999.0, \"request_count\": 1}"));
}

/* A batch's optimistic delete decides on the values it read; a pin switched
 * between that read and the delete must survive (EXEC refused, the script
 * re-checks the batch), and the other pins still go. */
Test(store_redis, delete_if_keeps_a_pin_switched_after_the_read)
{
    acache_store *s = open_store(1000, 1000);
    enum { N = 250 };
    char *keys[N];
    captured cap;
    double t = now_s();
    for (int i = 0; i < N; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "cache_affinity:race%d:claude:m", i);
        keys[i] = strdup(buf);
        touch(s, keys[i], "pB", "e", "k", "m", t, 300, &cap);
    }
    race_conn = raw();
    race_calls = 0;
    acache__redis_delete_hook = race_switch_one;
    acache_key *ks = key_array((const char *const *)keys, N);
    acache_match m = {.provider_id = "pB"};
    size_t deleted = 0;
    int rc = s->affinity_delete_if(s, ks, N, &m, &deleted);
    acache__redis_delete_hook = NULL;
    cr_assert_eq(rc, ACACHE_OK, "%s", acache_last_error());
    cr_expect_gt(race_calls, 0, "the optimistic path ran");
    cr_expect_eq(deleted, N - 1);
    redisReply *r = rcmd(race_conn, "GET %s", "cache_affinity:race5:claude:m");
    cr_expect(r->type == REDIS_REPLY_STRING && strstr(r->str, "\"pC\""),
              "the switched pin survives");
    freeReplyObject(r);
    r = rcmd(race_conn, "EXISTS %s %s", keys[4], keys[N - 1]);
    cr_expect_eq(r->integer, 0);
    freeReplyObject(r);
    redisFree(race_conn);
    for (int i = 0; i < N; i++)
        free(keys[i]);
    free(ks);
    s->free(s);
}

Test(store_redis, delete_if_filters_and_batches)
{
    acache_store *s = open_store(1000, 1000);
    enum { N = 1203 };
    char **keys = calloc(N + 1, sizeof *keys);
    captured cap;
    double t = now_s();
    for (int i = 0; i < N; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "cache_affinity:ak%d:claude:m", i);
        keys[i] = strdup(buf);
        touch(s, keys[i], i % 3 ? "pA" : "pB", "e", i % 2 ? "k1" : "k2", "m", t, 300,
              &cap);
    }
    keys[N] = strdup("cache_affinity:missing:claude:m");
    const char *junk = "not json";
    cr_assert_eq(s->set(s, keys[0], junk, strlen(junk), 0), ACACHE_OK);

    size_t deleted = 0;
    acache_key *ks = key_array((const char *const *)keys, N + 1);
    acache_match m = {.provider_id = "pB", .key_id = "k2"}; /* i % 6 == 0, minus junk 0 */
    cr_assert_eq(s->affinity_delete_if(s, ks, N + 1, &m, &deleted), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(deleted, (N + 5) / 6 - 1);
    acache_match none = {.endpoint_id = "other"};
    cr_assert_eq(s->affinity_delete_if(s, ks, N + 1, &none, &deleted), ACACHE_OK);
    cr_expect_eq(deleted, 0);
    /* all filters NULL: everything given goes, junk included */
    acache_match any = {0};
    cr_assert_eq(s->affinity_delete_if(s, ks, N + 1, &any, &deleted), ACACHE_OK);
    cr_expect_eq(deleted, N - ((N + 5) / 6 - 1));
    for (int i = 0; i <= N; i++)
        free(keys[i]);
    free(keys);
    free(ks);
    s->free(s);
}

/* ---- raw keys and SCAN ---- */

typedef struct scan_acc {
    size_t entries, batches, records, nulls, values;
    char seen[8][128];
} scan_acc;

static int scan_cb(const acache_entry *e, size_t n, void *payload)
{
    scan_acc *a = payload;
    a->batches++;
    for (size_t i = 0; i < n; i++) {
        if (a->entries < 8)
            snprintf(a->seen[a->entries], sizeof a->seen[0], "%.*s", (int)e[i].key_len,
                     e[i].key);
        a->entries++;
        if (e[i].record)
            a->records++;
        else
            a->nulls++;
        if (e[i].value)
            a->values++;
    }
    return 0;
}

static int stop_cb(const acache_entry *e, size_t n, void *payload)
{
    (void)e;
    (void)n;
    (*(int *)payload)++;
    return 7;
}

Test(store_redis, raw_ops_and_literal_prefixes)
{
    acache_store *s = open_store(1000, 1000);
    enum { N = 2500 };
    const char **keys = calloc(N, sizeof *keys);
    for (int i = 0; i < N; i++) {
        char k[64], v[32];
        snprintf(k, sizeof k, "model:id:%05d", i);
        snprintf(v, sizeof v, "{\"id\": %d}", i);
        keys[i] = strdup(k);
        cr_assert_eq(s->set(s, k, v, strlen(v), i % 2 ? 300 : 0), ACACHE_OK);
    }
    /* names with glob characters and ':' are literals */
    const char *odd[] = {"global_model:resolve:a*", "global_model:resolve:a*b",
                         "global_model:resolve:a?[x]\\y", "global_model:resolve:ab",
                         "global_model:resolve:qwen2.5:7b"};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(s->set(s, odd[i], "NOT_FOUND", 9, 0), ACACHE_OK);

    scan_acc a = {0};
    cr_assert_eq(s->scan(s, "model:id:", 1, scan_cb, &a), ACACHE_OK);
    cr_expect_eq(a.entries, N);
    cr_expect_eq(a.values, N);
    cr_expect_gt(a.batches, 1, "one callback per SCAN page");
    memset(&a, 0, sizeof a);
    cr_assert_eq(s->scan(s, "global_model:resolve:a*", 0, scan_cb, &a), ACACHE_OK);
    cr_expect_eq(a.entries, 2, "a* is a literal prefix: a* and a*b");
    cr_expect_eq(a.values, 0);
    memset(&a, 0, sizeof a);
    cr_assert_eq(s->scan(s, "global_model:resolve:a?[x]\\", 1, scan_cb, &a), ACACHE_OK);
    cr_expect_eq(a.entries, 1);
    cr_expect_str_eq(a.seen[0], "global_model:resolve:a?[x]\\y");
    memset(&a, 0, sizeof a);
    cr_assert_eq(s->scan(s, "global_model:resolve:qwen2.5:", 1, scan_cb, &a), ACACHE_OK);
    cr_expect_eq(a.entries, 1);
    int calls = 0;
    cr_expect_eq(s->scan(s, "model:", 1, stop_cb, &calls), 7, "callback's stop code");
    cr_expect_eq(calls, 1);
    /* the connection is still usable after stopping early */
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(s->get(s, "global_model:resolve:a*", &b), ACACHE_OK);
    cr_expect_str_eq(b.ptr, "NOT_FOUND");
    cr_expect_eq(s->get(s, "global_model:resolve:zzz", &b), ACACHE_ENOTFOUND);
    acache_buf_dispose(&b);

    int64_t *ttls = calloc(N + 1, sizeof *ttls);
    const char **tk = calloc(N + 1, sizeof *tk);
    memcpy(tk, keys, N * sizeof *keys);
    tk[N] = "nope";
    cr_assert_eq(s->ttl(s, tk, N + 1, ttls), ACACHE_OK);
    cr_expect_eq(ttls[0], -1);
    cr_expect(ttls[1] > 290 && ttls[1] <= 300);
    cr_expect_eq(ttls[N], -2);
    size_t deleted = 0;
    acache_key *dk = key_array(tk, N + 1);
    cr_assert_eq(s->del(s, dk, N + 1, &deleted), ACACHE_OK);
    free(dk);
    cr_expect_eq(deleted, N, "counts only what existed");
    const acache_key star[] = {{"global_model:resolve:a*", 23}};
    cr_assert_eq(s->del(s, star, 1, &deleted), ACACHE_OK);
    cr_expect_eq(deleted, 1);
    cr_expect_eq(s->get(s, "global_model:resolve:a*b", &b), ACACHE_OK,
                 "a* deleted only a*");
    acache_buf_dispose(&b);
    for (int i = 0; i < N; i++)
        free((char *)keys[i]);
    free(keys);
    free(tk);
    free(ttls);
    s->free(s);
}

/* ---- Aether's own values ---- */

static double fixture_clock(void *payload)
{
    return *(double *)payload;
}

Test(store_redis, reads_values_as_aether_writes_them)
{
    acache_store *s = open_store(1000, 1000);
    json_error_t err;
    FILE *f = fopen(ACACHE_SHARED_DIR "/testdata/aether-redis/affinities.jsonl", "r");
    cr_assert(f);
    char line[8192];
    size_t n = 0, readable = 0;
    double latest_created = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, &err);
        cr_assert(o, "%s", err.text);
        const char *k = json_string_value(json_object_get(o, "key"));
        const char *v = json_string_value(json_object_get(o, "value"));
        cr_assert_eq(s->set(s, k, v, strlen(v), 0), ACACHE_OK);
        n++;
        captured cap = {0};
        if (s->affinity_get(s, k, capture_cb, &cap) == ACACHE_OK) {
            readable++;
            if (cap.created_at > latest_created)
                latest_created = cap.created_at;
        } else {
            cr_expect_eq(s->affinity_get(s, k, NULL, NULL), ACACHE_ERROR);
        }
        json_decref(o);
    }
    fclose(f);
    cr_assert_gt(n, 5);
    cr_expect_eq(readable, n - 2, "malformed JSON and non-object are unreadable");

    scan_acc a = {0};
    cr_assert_eq(s->affinity_scan(s, ACACHE_AFFINITY_PREFIX, scan_cb, &a), ACACHE_OK);
    cr_expect_eq(a.entries, n);
    cr_expect_eq(a.records, readable);
    cr_expect_eq(a.nulls, 2);

    /* the colon model name survives both ways */
    captured cap = {0};
    cr_assert_eq(s->affinity_get(s,
                                 "cache_affinity:8d7e6f5a-4b3c-4d2e-8f1a-0b9c8d7e6f5a:"
                                 "claude:qwen2.5:7b",
                                 capture_cb, &cap),
                 ACACHE_OK);
    cr_expect_str_eq(cap.model, "qwen2.5:7b");
    s->free(s);

    /* Through the public API, at the time the file was written. */
    double clock = latest_created + 1;
    acache *c = open_handle(NULL, fixture_clock, &clock);
    acache__affinity_list *l = NULL;
    cr_assert_eq(acache__affinity_list_fetch(&l, c, NULL), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(acache__affinity_list_count(l), readable);
    int found_colon = 0;
    for (size_t i = 0; i < acache__affinity_list_count(l); i++) {
        const acache_affinity *x = acache__affinity_list_at(l, i);
        cr_expect(acache_affinity_model_name(x) && *acache_affinity_model_name(x));
        cr_expect(acache_affinity_api_format(x) && *acache_affinity_api_format(x));
        if (!strcmp(acache_affinity_model_name(x), "qwen2.5:7b"))
            found_colon = 1;
    }
    cr_expect(found_colon);
    acache__affinity_list_free(l);
    acache_close(c);
}

/* ---- SCAN, never KEYS; slow log ---- */

static void fill(redisContext *c, int n, const char *fmt, const char *value)
{
    for (int i = 0; i < n; i++)
        redisAppendCommand(c, fmt, i, value);
    for (int i = 0; i < n; i++) {
        redisReply *r;
        cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
        cr_assert_neq(r->type, REDIS_REPLY_ERROR, "%s", r->str);
        freeReplyObject(r);
    }
}

Test(store_redis, clear_all_uses_scan_and_stays_fast, .timeout = 120)
{
    redisContext *c = raw();
    enum { N = 100000 };
    fill(c, N, "SET cache_affinity:ak%d:claude:m %s",
         "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
         "\"created_at\": 1.0, \"expire_at\": 9999999999.0, \"request_count\": 1}");
    fill(c, 10, "SET model:id:%d %s", "x");
    freeReplyObject(rcmd(c, "CONFIG RESETSTAT"));
    freeReplyObject(rcmd(c, "CONFIG SET slowlog-log-slower-than 10000"));
    freeReplyObject(rcmd(c, "SLOWLOG RESET"));

    acache *h = open_handle(NULL, NULL, NULL);
    acache_stats st = {.version = ACACHE_STATS_VERSION};
    cr_assert_eq(acache_stats_get(&st, h), ACACHE_OK, "%s", acache_last_error());
    cr_expect_eq(st.active_affinities, N);
    size_t removed = 0;
    cr_assert_eq(acache__affinity_invalidate_provider(&removed, h, "nobody"), ACACHE_OK);
    cr_expect_eq(removed, 0);
    cr_assert_eq(acache__affinity_clear_all(&removed, h), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(removed, N);
    acache_close(h);

    redisReply *r = rcmd(c, "DBSIZE");
    cr_expect_eq(r->integer, 10, "model:* keys untouched");
    freeReplyObject(r);
    r = rcmd(c, "INFO commandstats");
    cr_expect_null(strstr(r->str, "cmdstat_keys"), "KEYS was used");
    cr_expect(strstr(r->str, "cmdstat_scan"));
    /* Average server time per command stays far below 10 ms. */
    for (const char *p = strstr(r->str, "cmdstat_"); p; p = strstr(p + 1, "cmdstat_")) {
        const char *u = strstr(p, "usec_per_call=");
        cr_assert(u);
        double per = strtod(u + strlen("usec_per_call="), NULL);
        cr_expect_lt(per, 10000.0, "%.40s: %.0f us per call", p, per);
    }
    freeReplyObject(r);
    /* The slow log measures wall time, so on a loaded machine (CI, two test
     * jobs on two cores) a descheduled redis-server logs outliers: the
     * strict check (no command over 10 ms) runs with ACACHE_TEST_SLOWLOG=1
     * on a quiet machine; otherwise the entries are only printed. */
    int strict = getenv("ACACHE_TEST_SLOWLOG") != NULL;
    r = rcmd(c, "SLOWLOG GET 128");
    if (strict)
        cr_expect_eq(r->elements, 0, "%zu commands took over 10 ms", r->elements);
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->elements >= 4 && e->element[3]->elements > 0)
            fprintf(stderr, "slow: %lld us %s\n", e->element[2]->integer,
                    e->element[3]->element[0]->str);
    }
    freeReplyObject(r);
    redisFree(c);
}

/* Issue 8 item 3: a key with a NUL byte (written by another client of the
 * shared Redis) is found by SCAN with its length and must be deletable. */
static void set_nul_pin(redisContext *c, const char *provider)
{
    static const char key[] = "cache_affinity:a\0b:claude:m";
    char value[256];
    int n = snprintf(value, sizeof value,
                     "{\"provider_id\": \"%s\", \"endpoint_id\": \"e\", \"key_id\": "
                     "\"k\", \"api_format\": \"claude\", \"model_name\": \"m\", "
                     "\"created_at\": 1.0, \"expire_at\": 9999999999.0, "
                     "\"request_count\": 1}",
                     provider);
    freeReplyObject(rcmd(c, "SET %b %b", key, sizeof key - 1, value, (size_t)n));
}

static long long dbsize(redisContext *c)
{
    redisReply *r = rcmd(c, "DBSIZE");
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

Test(store_redis, keys_with_nul_bytes_are_deleted)
{
    redisContext *c = raw();
    acache *h = open_handle(NULL, NULL, NULL);
    size_t removed = 0;

    set_nul_pin(c, "p");
    cr_assert_eq(dbsize(c), 1);
    cr_assert_eq(acache__affinity_clear_all(&removed, h), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(removed, 1);
    cr_expect_eq(dbsize(c), 0, "clear-all left the key with a NUL byte");

    set_nul_pin(c, "p");
    cr_assert_eq(acache__affinity_invalidate_provider(&removed, h, "other"), ACACHE_OK);
    cr_expect_eq(removed, 0);
    cr_expect_eq(dbsize(c), 1);
    cr_assert_eq(acache__affinity_invalidate_provider(&removed, h, "p"), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(removed, 1);
    cr_expect_eq(dbsize(c), 0, "invalidate by provider left the key with a NUL byte");

    /* The raw slots take the length too. */
    static const char raw_key[] = "model:id:x\0y";
    freeReplyObject(rcmd(c, "SET %b v", raw_key, sizeof raw_key - 1));
    acache_store *s = acache_handle_store(h);
    const acache_key k = {raw_key, sizeof raw_key - 1};
    size_t deleted = 0;
    cr_assert_eq(s->del(s, &k, 1, &deleted), ACACHE_OK);
    cr_expect_eq(deleted, 1);
    cr_expect_eq(dbsize(c), 0);
    acache_close(h);
    redisFree(c);
}

/* ---- concurrency: no lost count across processes and threads ---- */

enum { PROCS = 2, THREADS = 8, TOUCHES = 150, PINS = 3 };

typedef struct worker {
    acache *c;
    int id;
    int created, refreshed, failed;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < TOUCHES; i++) {
        char model[32];
        snprintf(model, sizeof model, "model-%d", (i + w->id) % PINS);
        acache_touch_result res;
        if (acache__affinity_set(&res, w->c, "ak-shared", "claude", model, "p", "e", "k",
                                 1, 300) != ACACHE_OK)
            w->failed++;
        else if (res == ACACHE_TOUCH_CREATED)
            w->created++;
        else if (res == ACACHE_TOUCH_REFRESHED)
            w->refreshed++;
        else
            w->failed++;
    }
    return NULL;
}

Test(store_redis, concurrent_touches_lose_no_count, .timeout = 120)
{
    pid_t kids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        fflush(NULL);
        kids[p] = fork();
        cr_assert_geq(kids[p], 0);
        if (kids[p] == 0) {
            acache_options o = ACACHE_OPTIONS_INIT;
            o.store_uri = srv.uri;
            acache *c = NULL;
            if (acache_open(&c, &o) != ACACHE_OK)
                _exit(100);
            pthread_t th[THREADS];
            worker w[THREADS];
            for (int t = 0; t < THREADS; t++) {
                w[t] = (worker){.c = c, .id = p * THREADS + t};
                pthread_create(&th[t], NULL, worker_main, &w[t]);
            }
            int failed = 0, created = 0;
            for (int t = 0; t < THREADS; t++) {
                pthread_join(th[t], NULL);
                failed += w[t].failed;
                created += w[t].created;
            }
            acache_close(c);
            /* exit code: failures -> 101, else number of creations (<= PINS) */
            _exit(failed ? 101 : created);
        }
    }
    int created = 0;
    for (int p = 0; p < PROCS; p++) {
        int st;
        cr_assert_eq(waitpid(kids[p], &st, 0), kids[p]);
        cr_assert(WIFEXITED(st), "worker crashed");
        cr_assert_leq(WEXITSTATUS(st), PINS, "worker status %d", WEXITSTATUS(st));
        created += WEXITSTATUS(st);
    }
    cr_expect_eq(created, PINS, "each pin created exactly once");
    acache_store *s = open_store(1000, 1000);
    int64_t total = 0;
    for (int m = 0; m < PINS; m++) {
        char key[96];
        snprintf(key, sizeof key, "cache_affinity:ak-shared:claude:model-%d", m);
        captured cap = {0};
        cr_assert_eq(s->affinity_get(s, key, capture_cb, &cap), ACACHE_OK);
        total += cap.count;
    }
    cr_expect_eq(total, (int64_t)PROCS * THREADS * TOUCHES,
                 "request_count = refreshes + 1 per pin");
    s->free(s);
}

/* Many threads on one store: the pool hands each its own connection. */
static void *pool_main(void *arg)
{
    acache_store *s = arg;
    for (int i = 0; i < 200; i++) {
        acache_buf b = ACACHE_BUF_INIT;
        if (s->get(s, "pool-key", &b) != ACACHE_OK || b.size != 2)
            return (void *)1;
        acache_buf_dispose(&b);
    }
    return NULL;
}

Test(store_redis, pool_serves_many_threads)
{
    acache_store *s = open_store(1000, 1000);
    cr_assert_eq(s->set(s, "pool-key", "ok", 2, 0), ACACHE_OK);
    pthread_t th[24];
    for (int i = 0; i < 24; i++)
        pthread_create(&th[i], NULL, pool_main, s);
    for (int i = 0; i < 24; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        cr_expect_null(ret);
    }
    redisContext *c = raw();
    redisReply *r = rcmd(c, "INFO clients");
    const char *p = strstr(r->str, "connected_clients:");
    cr_assert(p);
    int clients = atoi(p + strlen("connected_clients:"));
    cr_expect_leq(clients, 17, "pool is capped at 16 (+1 for this check)");
    freeReplyObject(r);
    redisFree(c);
    s->free(s);
}

/* ---- rediss:// on a private TLS server (certificates made by openssl) ---- */

static test_redis tsrv;

static void tls_teardown(void)
{
    test_redis_stop(&tsrv);
}

TestSuite(store_rediss, .fini = tls_teardown, .timeout = 60);

static void tls_start(int mtls, int expired)
{
    if (!test_redis_has_tls())
        cr_skip_test("redis-server was built without TLS");
    test_redis_tls o = {.require_client_cert = mtls, .expired_cert = expired};
    cr_assert_eq(test_redis_start_tls(&tsrv, &o), 0, "TLS redis-server did not start");
}

/* Side access over the server's plain unix socket. */
static redisContext *tls_raw(void)
{
    redisContext *c = redisConnectUnix(tsrv.sock);
    cr_assert(c && !c->err, "raw unix connect");
    return c;
}

static int open_uri(const char *uri, acache_store **out)
{
    *out = NULL;
    return acache__store_redis_new(out, uri, 2000, 2000);
}

static void expect_fails(const char *uri, const char *needle)
{
    acache_store *s = NULL;
    int rc = open_uri(uri, &s);
    cr_expect_eq(rc, ACACHE_ESTORE, "%s opened (%d)", uri, rc);
    cr_expect_null(s);
    const char *e = acache_last_error();
    char where[64];
    snprintf(where, sizeof where, "127.0.0.1:%d", tsrv.port);
    cr_expect(strstr(e, where), "message does not name the server: %s", e);
    cr_expect(strstr(e, needle), "message lacks \"%s\": %s", needle, e);
}

Test(store_rediss, works_over_tls)
{
    tls_start(0, 0);
    acache_store *s;
    cr_assert_eq(open_uri(tsrv.uri, &s), ACACHE_OK, "%s", acache_last_error());
    captured cap;
    double t = now_s();
    const char *key = "cache_affinity:ak:claude:m";
    cr_expect_eq(touch(s, key, "p", "e", "k", "m", t, 300, &cap), ACACHE_TOUCH_CREATED);
    cr_expect_eq(touch(s, key, "p", "e", "k", "m", t + 1, 300, &cap),
                 ACACHE_TOUCH_REFRESHED);
    cr_expect_eq(cap.count, 2);
    /* A pipelined listing bigger than one TLS record and one SCAN page. */
    redisContext *c = tls_raw();
    fill(c, 3000, "SET cache_affinity:bulk%d:claude:m %s",
         "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
         "\"created_at\": 1.0, \"expire_at\": 9999999999.0, \"request_count\": 1}");
    scan_acc acc = {0};
    cr_assert_eq(s->affinity_scan(s, "cache_affinity:", scan_cb, &acc), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(acc.entries, 3001);
    s->free(s);
    /* The name in the certificate, and the hostname form of the URI. */
    char uri[700];
    snprintf(uri, sizeof uri, "rediss://localhost:%d?cacert=%s", tsrv.port, tsrv.ca);
    cr_assert_eq(open_uri(uri, &s), ACACHE_OK, "%s", acache_last_error());
    acache_buf b = ACACHE_BUF_INIT;
    cr_expect_eq(s->get(s, key, &b), ACACHE_OK);
    acache_buf_dispose(&b);
    s->free(s);
    redisFree(c);
}

Test(store_rediss, wrong_ca_fails)
{
    tls_start(0, 0);
    char uri[700];
    snprintf(uri, sizeof uri, "rediss://127.0.0.1:%d?cacert=%s", tsrv.port,
             tsrv.other_ca);
    expect_fails(uri, "certificate verification failed");
    /* No cacert: the system trust store does not know the test CA either. */
    snprintf(uri, sizeof uri, "rediss://127.0.0.1:%d", tsrv.port);
    expect_fails(uri, "certificate verification failed");
    /* verify=no accepts it (with a warning on stderr). */
    snprintf(uri, sizeof uri, "rediss://127.0.0.1:%d?cacert=%s&verify=no", tsrv.port,
             tsrv.other_ca);
    acache_store *s;
    cr_assert_eq(open_uri(uri, &s), ACACHE_OK, "%s", acache_last_error());
    s->free(s);
}

Test(store_rediss, expired_certificate_fails)
{
    tls_start(0, 1);
    expect_fails(tsrv.uri, "expired");
}

Test(store_rediss, hostname_mismatch_fails)
{
    tls_start(0, 0);
    char uri[700];
    snprintf(uri, sizeof uri, "rediss://127.0.0.1:%d?cacert=%s&sni=elsewhere.example",
             tsrv.port, tsrv.ca);
    expect_fails(uri, "mismatch");
}

Test(store_rediss, client_certificate_required)
{
    tls_start(1, 0);
    acache_store *s;
    cr_assert_eq(open_uri(tsrv.uri, &s), ACACHE_OK, "with cert/key: %s",
                 acache_last_error());
    cr_expect_eq(s->set(s, "mtls", "v", 1, 0), ACACHE_OK, "%s", acache_last_error());
    s->free(s);
    char uri[700];
    snprintf(uri, sizeof uri, "rediss://127.0.0.1:%d?cacert=%s", tsrv.port, tsrv.ca);
    expect_fails(uri, "TLS");
}

Test(store_rediss, acl_user_and_passwords)
{
    tls_start(0, 0);
    redisContext *c = tls_raw();
    /* Aether's key families only; '%' and '@' in the password are sent
     * percent-encoded in the URI. */
    freeReplyObject(rcmd(c, "ACL SETUSER gw on >p%%w@d-Gw1 ~cache_affinity:* ~model:* "
                            "~global_model:* +@all"));
    freeReplyObject(rcmd(c, "SET other:key x"));
    char uri[800];
    snprintf(uri, sizeof uri, "rediss://gw:p%%25w%%40d-Gw1@127.0.0.1:%d/0?cacert=%s",
             tsrv.port, tsrv.ca);
    acache *h = open_handle(uri, NULL, NULL);
    acache_touch t = ACACHE_TOUCH_INIT;
    t.affinity_key = "ak";
    t.api_format = "claude";
    t.model_name = "m";
    t.provider_id = "p";
    t.endpoint_id = "e";
    t.key_id = "k";
    cr_assert_eq(acache_affinity_touch(NULL, h, &t), ACACHE_OK, "%s",
                 acache_last_error());
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, h, "ak", "claude", "m"), ACACHE_OK, "%s",
                 acache_last_error());
    acache_affinity_free(a);
    size_t removed = 0;
    cr_assert_eq(acache__affinity_clear_all(&removed, h), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_eq(removed, 1);
    /* The ACL really limits the user: another key family is refused. */
    acache_store *s = acache_handle_store(h);
    cr_expect_eq(s->set(s, "other:key", "y", 1, 0), ACACHE_ESTORE);
    cr_expect(strstr(acache_last_error(), "NOPERM"), "%s", acache_last_error());
    acache_close(h);

    /* A wrong password: a clear message naming the server, never the password. */
    snprintf(uri, sizeof uri, "rediss://gw:Wr0ng-Secret-77@127.0.0.1:%d/0?cacert=%s",
             tsrv.port, tsrv.ca);
    expect_fails(uri, "authentication failed");
    cr_expect_null(strstr(acache_last_error(), "Wr0ng-Secret-77"), "%s",
                   acache_last_error());

    /* :password@ authenticates the default user with AUTH password. */
    freeReplyObject(rcmd(c, "CONFIG SET requirepass Def-Pass-9"));
    snprintf(uri, sizeof uri, "rediss://:Def-Pass-9@127.0.0.1:%d?cacert=%s", tsrv.port,
             tsrv.ca);
    acache_store *d;
    cr_assert_eq(open_uri(uri, &d), ACACHE_OK, "%s", acache_last_error());
    d->free(d);
    snprintf(uri, sizeof uri, "rediss://:Not-Def-Pass@127.0.0.1:%d?cacert=%s", tsrv.port,
             tsrv.ca);
    expect_fails(uri, "authentication failed");
    cr_expect_null(strstr(acache_last_error(), "Not-Def-Pass"), "%s",
                   acache_last_error());
    redisFree(c);
}
