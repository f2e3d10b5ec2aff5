/* The touch script (lib/store/redis/scripts/touch.lua, issue 12 item 1) on a
 * private Redis: request_count added as exact decimal text (beyond 2^53),
 * saturating at INT64_MAX; counts another writer wrote as reals, negatives
 * or with leading zeros; created_at kept byte for byte on both paths; a
 * count delta; and the memory store's saturation (no signed overflow). */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "aether_cache/aether_cache.h"
#include "aether_cache/sys/store.h"
#include "core/core.h"
#include "redis_server.h"

TEST_REDIS_SUITE(touch_script, 60);

#define KEY "cache_affinity:ak:claude:m"
#define HEAD                                                                             \
    "{\"provider_id\": \"p\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "               \
    "\"api_format\": \"claude\", \"model_name\": \"m\", "

typedef struct got {
    int64_t count;
    double created_at;
} got;

static void got_cb(const acache_record *r, void *payload)
{
    got *g = payload;
    g->count = r->request_count;
    g->created_at = r->created_at;
}

static acache_store *store(void)
{
    acache_store *s = NULL;
    cr_assert_eq(acache__store_redis_new(&s, srv.uri, 1000, 1000), ACACHE_OK, "%s",
                 acache_last_error());
    return s;
}

/* Store `value`, touch it once (delta 0 = 1) as p/e/k at now=1800000000.5. */
static int touch_value(acache_store *s, const char *value, uint64_t delta, got *g,
                       char *after, size_t cap)
{
    cr_assert_eq(s->set(s, KEY, value, strlen(value), 0), ACACHE_OK);
    acache_touch_req req = {.key = KEY,
                            .provider_id = "p",
                            .endpoint_id = "e",
                            .key_id = "k",
                            .api_format = "claude",
                            .model_name = "m",
                            .now = 1800000000.5,
                            .ttl_s = 300,
                            .count_delta = delta};
    int result = 0;
    cr_assert_eq(s->affinity_touch(s, &req, &result, got_cb, g), ACACHE_OK, "%s",
                 acache_last_error());
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(s->get(s, KEY, &b), ACACHE_OK);
    snprintf(after, cap, "%.*s", (int)b.size, b.ptr);
    acache_buf_dispose(&b);
    return result;
}

static void expect_count(const char *count_text, const char *want, const char *layout)
{
    acache_store *s = store();
    char value[512], after[512], tail[64];
    if (layout)
        snprintf(value, sizeof value, layout, count_text);
    else
        snprintf(value, sizeof value,
                 HEAD "\"created_at\": 1800000000.25, \"expire_at\": 1800000900.0, "
                      "\"request_count\": %s}",
                 count_text);
    got g = {0, 0};
    cr_assert_eq(touch_value(s, value, 0, &g, after, sizeof after),
                 ACACHE_TOUCH_REFRESHED, "%s", value);
    snprintf(tail, sizeof tail, "\"request_count\": %s}", want);
    cr_expect(strstr(after, tail) != NULL, "%s -> %s, want %s", count_text, after, want);
    cr_expect(strstr(after, "\"created_at\": 1800000000.25, ") != NULL, "%s", after);
    s->free(s);
}

Test(touch_script, counts_are_exact_decimal_and_saturate)
{
    /* fast path (this library's layout) */
    expect_count("1", "2", NULL);
    expect_count("0", "1", NULL);
    expect_count("999999999999999", "1000000000000000", NULL);
    expect_count("9007199254740993", "9007199254740994", NULL); /* 2^53 + 1 */
    expect_count("999999999999999999", "1000000000000000000", NULL);
    expect_count("9223372036854775806", "9223372036854775807", NULL);
    expect_count("9223372036854775807", "9223372036854775807", NULL); /* saturated */
    expect_count("99999999999999999999", "9223372036854775807", NULL);
    /* slow path: another writer's forms */
    expect_count("5.0", "6", NULL);
    expect_count("1e3", "1001", NULL);
    expect_count("-3", "1", NULL);
    expect_count("007", "8", NULL);
    expect_count("1e300", "9223372036854775807", NULL);
    const char *compact = "{\"provider_id\":\"p\",\"endpoint_id\":\"e\",\"key_id\":\"k\","
                          "\"created_at\": 1800000000.25,\"expire_at\":1800000900.0,"
                          "\"request_count\": %s}";
    expect_count("9007199254740993", "9007199254740994", compact);
    expect_count("12", "13", compact);
}

Test(touch_script, created_at_text_is_kept_and_reply_parsed)
{
    acache_store *s = store();
    char after[512];
    got g = {0, 0};
    /* An integer created_at (a writer that is not Python) stays an integer. */
    int r = touch_value(s,
                        HEAD "\"created_at\": 1800000000, \"expire_at\": 1800000900.0, "
                             "\"request_count\": 4}",
                        0, &g, after, sizeof after);
    cr_assert_eq(r, ACACHE_TOUCH_REFRESHED);
    cr_expect_eq(g.count, 5);
    cr_expect_eq(g.created_at, 1800000000.0);
    cr_expect_str_eq(after, HEAD "\"created_at\": 1800000000, \"expire_at\": "
                                 "1800000300.5, \"request_count\": 5}");
    /* Slow path (key order): created_at's text kept too. */
    r = touch_value(s,
                    "{\"endpoint_id\": \"e\", \"provider_id\": \"p\", \"key_id\": \"k\", "
                    "\"created_at\": 1.8e9, \"expire_at\": 1800000900.0, "
                    "\"request_count\": 2}",
                    0, &g, after, sizeof after);
    cr_assert_eq(r, ACACHE_TOUCH_REFRESHED);
    cr_expect_eq(g.count, 3);
    cr_expect_str_eq(after, HEAD "\"created_at\": 1.8e9, \"expire_at\": 1800000300.5, "
                                 "\"request_count\": 3}");
    s->free(s);
}

Test(touch_script, delta_adds_and_new_pins_start_at_it)
{
    acache_store *s = store();
    char after[512];
    got g = {0, 0};
    int r =
        touch_value(s,
                    HEAD "\"created_at\": 1800000000.25, \"expire_at\": 1800000900.0, "
                         "\"request_count\": 10}",
                    1000, &g, after, sizeof after);
    cr_assert_eq(r, ACACHE_TOUCH_REFRESHED);
    cr_expect_eq(g.count, 1010);
    /* expired: created with the delta as its count */
    r = touch_value(
        s, HEAD "\"created_at\": 1.0, \"expire_at\": 2.0, \"request_count\": 10}", 7, &g,
        after, sizeof after);
    cr_assert_eq(r, ACACHE_TOUCH_CREATED);
    cr_expect_eq(g.count, 7);
    cr_expect_str_eq(after, HEAD "\"created_at\": 1800000000.5, \"expire_at\": "
                                 "1800000300.5, \"request_count\": 7}");
    /* another target: switched, count = delta */
    r = touch_value(
        s,
        "{\"provider_id\": \"q\", \"endpoint_id\": \"e\", \"key_id\": \"k\", "
        "\"api_format\": \"claude\", \"model_name\": \"m\", \"created_at\": 1.0, "
        "\"expire_at\": 1800000900.0, \"request_count\": 10}",
        3, &g, after, sizeof after);
    /* the store says which switch: this one changed the provider (q -> p) */
    cr_assert_eq(r, ACACHE_TOUCH_SWITCHED_PROVIDER);
    cr_expect_eq(g.count, 3);
    /* big delta near the top saturates */
    r = touch_value(s,
                    HEAD "\"created_at\": 1.0, \"expire_at\": 1800000900.0, "
                         "\"request_count\": 9223372036854775000}",
                    1000000000000000, &g, after, sizeof after);
    cr_expect_eq(g.count, INT64_MAX);
    s->free(s);
}

/* lib/store/memory.c: request_count + 1 at INT64_MAX was signed overflow
 * (UBSan aborts); it saturates like the Redis script. */
Test(touch_script, memory_store_count_saturates)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    acache *c = NULL;
    cr_assert_eq(acache_open(&c, &o), ACACHE_OK);
    acache_store *s = acache_handle_store(c);
    const char *v = HEAD "\"created_at\": 1800000000.25, \"expire_at\": 1800000900.0, "
                         "\"request_count\": 9223372036854775807}";
    cr_assert_eq(s->set(s, KEY, v, strlen(v), 0), ACACHE_OK, "%s", acache_last_error());
    acache_touch_req req = {.key = KEY,
                            .provider_id = "p",
                            .endpoint_id = "e",
                            .key_id = "k",
                            .api_format = "claude",
                            .model_name = "m",
                            .now = 1800000000.5,
                            .ttl_s = 300};
    int result = 0;
    got g = {0, 0};
    cr_assert_eq(s->affinity_touch(s, &req, &result, got_cb, &g), ACACHE_OK);
    cr_expect_eq(result, ACACHE_TOUCH_REFRESHED);
    cr_expect_eq(g.count, INT64_MAX);
    req.count_delta = 5;
    cr_assert_eq(s->affinity_touch(s, &req, &result, got_cb, &g), ACACHE_OK);
    cr_expect_eq(g.count, INT64_MAX);
    acache_close(c);
}
