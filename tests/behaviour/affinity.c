/* affinity.md behaviour, run on memory:// (unit) and a real Redis (integration). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "harness.h"

#define AK "3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f"
#define GM "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e"

static acache *c;

static void setup(void)
{
    th_set_time(1800000000.0);
    c = th_open(NULL);
    size_t n;
    cr_assert_eq(acache__affinity_clear_all(&n, c), ACACHE_OK);
}

static void teardown(void)
{
    acache_close(c);
}

static acache_touch_result touch(const char *ak, const char *fmt, const char *model,
                                 const char *prov, const char *ep, const char *key,
                                 uint32_t ttl)
{
    acache_touch_result r;
    int rc = acache__affinity_set(&r, c, ak, fmt, model, prov, ep, key, 1, ttl);
    cr_assert_eq(rc, ACACHE_OK, "touch: %s", acache_last_error());
    return r;
}

static acache_stats stats(void)
{
    acache_stats s = {.version = ACACHE_STATS_VERSION};
    cr_assert_eq(acache_stats_get(&s, c), ACACHE_OK, "%s", acache_last_error());
    return s;
}

/* The admin bodies of the invalidations, through acache_invalidate_json(). */
static int clear_single_json(acache_buf *b, const char *ak, const char *ep,
                             const char *model, const char *fmt)
{
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_SINGLE;
    t.affinity_key = ak;
    t.endpoint_id = ep;
    t.model_name = model;
    t.api_format = fmt;
    return acache_invalidate_json(b, c, &t);
}

static int clear_provider_json(acache_buf *b, const char *provider_id)
{
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_PROVIDER;
    t.provider_id = provider_id;
    return acache_invalidate_json(b, c, &t);
}

static int clear_all_json(acache_buf *b)
{
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_ALL;
    return acache_invalidate_json(b, c, &t);
}

TestSuite(affinity, .init = setup, .fini = teardown, .timeout = 60);

Test(affinity, get_missing_is_not_found_and_counts_a_miss)
{
    acache_affinity *a = (acache_affinity *)1;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", GM), ACACHE_ENOTFOUND);
    cr_assert_null(a);
    acache_stats s = stats();
    cr_assert_eq(s.cache_misses, 1);
    cr_assert_eq(s.cache_hits, 0);
    cr_assert_float_eq(s.cache_hit_rate, 0.0, 1e-12);
}

Test(affinity, touch_creates_then_get_reads_every_field)
{
    cr_assert_eq(touch(AK, "claude", GM, "prov-1", "endp-1", "pkey-1", 0),
                 ACACHE_TOUCH_CREATED);
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", GM), ACACHE_OK);
    cr_assert_str_eq(acache_affinity_client_key(a), AK);
    cr_assert_str_eq(acache_affinity_api_format(a), "claude");
    cr_assert_str_eq(acache_affinity_model_name(a), GM);
    cr_assert_str_eq(acache_affinity_provider_id(a), "prov-1");
    cr_assert_str_eq(acache_affinity_endpoint_id(a), "endp-1");
    cr_assert_str_eq(acache_affinity_key_id(a), "pkey-1");
    cr_assert_float_eq(acache_affinity_created_at(a), th_time(), 1e-3);
    cr_assert_float_eq(acache_affinity_expire_at(a), th_time() + 300, 1e-3);
    cr_assert_eq(acache_affinity_request_count(a), 1);
    acache_affinity_free(a);
    acache_stats s = stats();
    cr_assert_eq(s.total_affinities, 1);
    cr_assert_eq(s.cache_hits, 1);
    cr_assert_eq(s.active_affinities, 1);
    cr_assert_eq(s.default_ttl_s, 300);
}

Test(affinity, refresh_keeps_created_at_counts_and_slides_ttl)
{
    double t0 = th_time();
    touch(AK, "claude", GM, "p", "e", "k", 60);
    th_advance(30);
    cr_assert_eq(touch(AK, "claude", GM, "p", "e", "k", 60), ACACHE_TOUCH_REFRESHED);
    th_advance(30);
    cr_assert_eq(touch(AK, "claude", GM, "p", "e", "k", 60), ACACHE_TOUCH_REFRESHED);
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", GM), ACACHE_OK);
    cr_assert_float_eq(acache_affinity_created_at(a), t0, 1e-3);
    cr_assert_float_eq(acache_affinity_expire_at(a), t0 + 120, 1e-3);
    cr_assert_eq(acache_affinity_request_count(a), 3);
    acache_affinity_free(a);
    acache_stats s = stats();
    cr_assert_eq(s.total_affinities, 1);
    cr_assert_eq(s.key_switches, 0);
}

Test(affinity, different_key_is_a_switch)
{
    touch(AK, "claude", GM, "p", "e", "k1", 0);
    touch(AK, "claude", GM, "p", "e", "k1", 0);
    th_advance(10);
    cr_assert_eq(touch(AK, "claude", GM, "p", "e", "k2", 0), ACACHE_TOUCH_SWITCHED);
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", GM), ACACHE_OK);
    cr_assert_str_eq(acache_affinity_key_id(a), "k2");
    cr_assert_eq(acache_affinity_request_count(a), 1);
    cr_assert_float_eq(acache_affinity_created_at(a), th_time(), 1e-3);
    acache_affinity_free(a);
    /* Switching endpoint or provider also counts. */
    cr_assert_eq(touch(AK, "claude", GM, "p", "e2", "k2", 0), ACACHE_TOUCH_SWITCHED);
    cr_assert_eq(touch(AK, "claude", GM, "p2", "e2", "k2", 0), ACACHE_TOUCH_SWITCHED);
    acache_stats s = stats();
    cr_assert_eq(s.key_switches, 3); /* every switch, as Aether counts */
    cr_assert_eq(s.provider_switches, 1, "p -> p2 is a provider switch");
    cr_assert_eq(s.total_affinities, 1);
    /* Prometheus splits the switches by kind, summing to all of them. */
    acache_buf m = ACACHE_BUF_INIT;
    cr_assert_eq(acache_metrics_text(&m, c), ACACHE_OK);
    cr_assert(strstr(m.ptr, "acache_affinity_switches_total{kind=\"provider\"} 1\n"),
              "%s", m.ptr);
    cr_assert(strstr(m.ptr, "acache_affinity_switches_total{kind=\"key\"} 2\n"), "%s",
              m.ptr);
    acache_buf_dispose(&m);
}

Test(affinity, supports_caching_false_writes_nothing)
{
    acache_touch_result r = ACACHE_TOUCH_CREATED;
    cr_assert_eq(acache__affinity_set(&r, c, AK, "claude", GM, "p", "e", "k", 0, 0),
                 ACACHE_OK);
    cr_assert_eq(r, ACACHE_TOUCH_SKIPPED);
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", GM), ACACHE_ENOTFOUND);
    cr_assert_eq(stats().active_affinities, 0);
}

Test(affinity, expired_by_expire_at_is_deleted_on_get)
{
    touch(AK, "claude", GM, "p", "e", "k", 100);
    th_advance(100.5); /* the store may still hold the key: expire_at rules */
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", GM), ACACHE_ENOTFOUND);
    cr_assert_eq(stats().active_affinities, 0, "expired pin must be deleted by get");
    /* and a later touch starts a fresh pin, not a refresh */
    cr_assert_eq(touch(AK, "claude", GM, "p", "e", "k", 100), ACACHE_TOUCH_CREATED);
}

Test(affinity, listing_skips_expired)
{
    touch(AK, "claude", "m1", "p", "e", "k", 100);
    touch(AK, "claude", "m2", "p", "e", "k", 1000);
    th_advance(500);
    acache__affinity_list *l = NULL;
    cr_assert_eq(acache__affinity_list_fetch(&l, c, NULL), ACACHE_OK);
    cr_assert_eq(acache__affinity_list_count(l), 1);
    cr_assert_str_eq(acache_affinity_model_name(acache__affinity_list_at(l, 0)), "m2");
    cr_assert_null(acache__affinity_list_at(l, 1));
    acache__affinity_list_free(l);
}

Test(affinity, invalid_fields_are_rejected)
{
    acache_touch_result r;
    cr_assert_eq(acache__affinity_set(&r, c, "a:b", "claude", GM, "p", "e", "k", 1, 0),
                 ACACHE_EINVALID);
    cr_assert(strstr(acache_last_error(), "affinity_key"));
    cr_assert_eq(acache__affinity_set(&r, c, AK, "cl:aude", GM, "p", "e", "k", 1, 0),
                 ACACHE_EINVALID);
    cr_assert_eq(acache__affinity_set(&r, c, "", "claude", GM, "p", "e", "k", 1, 0),
                 ACACHE_EINVALID);
    cr_assert_eq(acache__affinity_set(&r, c, AK, "claude", "", "p", "e", "k", 1, 0),
                 ACACHE_EINVALID);
    cr_assert_eq(acache__affinity_set(&r, c, AK, "claude", GM, NULL, "e", "k", 1, 0),
                 ACACHE_EINVALID);
    cr_assert_eq(acache__affinity_set(&r, c, AK, "claude", GM, "p", "", "k", 1, 0),
                 ACACHE_EINVALID);
    acache_affinity *a;
    cr_assert_eq(acache_affinity_get(&a, c, NULL, "claude", GM), ACACHE_EINVALID);
    cr_assert_eq(acache_affinity_get(NULL, c, AK, "claude", GM), ACACHE_EINVALID);
    acache_touch t = ACACHE_TOUCH_INIT;
    t.version = 99;
    cr_assert_eq(acache_affinity_touch(&r, c, &t), ACACHE_EINVALID);
    cr_assert_eq(stats().active_affinities, 0);
}

Test(affinity, colon_model_name_round_trips)
{
    touch(AK, "claude", "qwen2.5:7b:instruct", "p", "e", "k", 0);
    acache__affinity_list *l = NULL;
    cr_assert_eq(acache__affinity_list_fetch(&l, c, AK), ACACHE_OK);
    cr_assert_eq(acache__affinity_list_count(l), 1);
    cr_assert_str_eq(acache_affinity_model_name(acache__affinity_list_at(l, 0)),
                     "qwen2.5:7b:instruct");
    acache__affinity_list_free(l);
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", "qwen2.5:7b:instruct"),
                 ACACHE_OK);
    acache_affinity_free(a);
    cr_assert_eq(acache_affinity_invalidate(c, AK, "claude", "qwen2.5:7b:instruct", NULL,
                                            NULL, NULL),
                 ACACHE_OK);
}

Test(affinity, huge_and_hostile_names_round_trip)
{
    size_t n = 20000;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    const char *odd = "m*?[]\\ \"quoted\" ünïcödé \xF0\x9F\x98\x80";
    touch(AK, "claude", big, "p", "e", "k", 0);
    touch(AK, "claude", odd, "p*", "e?", "k[", 0);
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", big), ACACHE_OK);
    cr_assert_eq(strlen(acache_affinity_model_name(a)), n);
    acache_affinity_free(a);
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", odd), ACACHE_OK);
    cr_assert_str_eq(acache_affinity_model_name(a), odd);
    cr_assert_str_eq(acache_affinity_provider_id(a), "p*");
    acache_affinity_free(a);
    free(big);
}

Test(affinity, invalidate_with_filters_is_compare_and_delete)
{
    touch(AK, "claude", GM, "p", "e", "k", 0);
    cr_assert_eq(acache_affinity_invalidate(c, AK, "claude", GM, "other", NULL, NULL),
                 ACACHE_ENOTFOUND);
    cr_assert_eq(acache_affinity_invalidate(c, AK, "claude", GM, NULL, "other", NULL),
                 ACACHE_ENOTFOUND);
    cr_assert_eq(acache_affinity_invalidate(c, AK, "claude", GM, NULL, NULL, "other"),
                 ACACHE_ENOTFOUND);
    cr_assert_eq(stats().active_affinities, 1, "a mismatching filter must not delete");
    cr_assert_eq(stats().cache_invalidations, 0);
    cr_assert_eq(acache_affinity_invalidate(c, AK, "claude", GM, "k", "p", "e"),
                 ACACHE_OK);
    cr_assert_eq(stats().active_affinities, 0);
    cr_assert_eq(stats().cache_invalidations, 1);
    cr_assert_eq(acache_affinity_invalidate(c, AK, "claude", GM, NULL, NULL, NULL),
                 ACACHE_ENOTFOUND);
}

Test(affinity, invalidation_is_visible_to_the_same_handle_at_once)
{
    touch(AK, "claude", GM, "p", "e", "k", 0);
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", GM), ACACHE_OK); /* fills L1 */
    acache_affinity_free(a);
    cr_assert_eq(acache_affinity_invalidate(c, AK, "claude", GM, NULL, NULL, NULL),
                 ACACHE_OK);
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", GM), ACACHE_ENOTFOUND);
    touch(AK, "claude", GM, "p", "e", "k", 0);
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", GM), ACACHE_OK);
    acache_affinity_free(a);
    size_t n = 0;
    cr_assert_eq(acache__affinity_clear_all(&n, c), ACACHE_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", GM), ACACHE_ENOTFOUND);
}

Test(affinity, clear_single_json_requires_matching_endpoint)
{
    touch(AK, "claude", GM, "p", "e", "k", 0);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(clear_single_json(&b, AK, "wrong", GM, "claude"), ACACHE_ENOTFOUND);
    cr_assert_eq(acache_http_status(ACACHE_ENOTFOUND), 404);
    cr_assert_eq(clear_single_json(&b, AK, "e", GM, "claude"), ACACHE_OK);
    json_t *o = json_loads(b.ptr, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "ok");
    cr_assert_str_eq(json_string_value(json_object_get(o, "affinity_key")), AK);
    cr_assert_str_eq(json_string_value(json_object_get(o, "endpoint_id")), "e");
    cr_assert_str_eq(json_string_value(json_object_get(o, "model_id")), GM);
    cr_assert_not_null(json_object_get(o, "message"));
    json_decref(o);
    acache_buf_dispose(&b);
    cr_assert_eq(clear_single_json(&b, AK, "e", GM, "claude"), ACACHE_ENOTFOUND);
}

/* Issue 8 item 12: an expired pin whose store key is still alive is not a
 * live pin (Aether: 404); it was deleted and answered 200. */
Test(affinity, clear_single_on_an_expired_pin_is_not_found)
{
    touch(AK, "claude", GM, "p", "e", "k", 100);
    touch(AK, "claude", "other", "p", "e", "k", 100);
    th_advance(100.5); /* past expire_at; the store's own TTL is 100 s of wall time */
    cr_assert_eq(stats().active_affinities, 2, "the store must still hold both keys");
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(clear_single_json(&b, AK, "e", GM, "claude"), ACACHE_ENOTFOUND);
    cr_assert_null(b.ptr);
    cr_assert_eq(acache_http_status(ACACHE_ENOTFOUND), 404);
    cr_assert_eq(acache_affinity_invalidate(c, AK, "claude", "other", NULL, NULL, NULL),
                 ACACHE_ENOTFOUND);
    acache_stats s = stats();
    cr_assert_eq(s.cache_invalidations, 0);
    cr_assert_eq(s.active_affinities, 0, "the expired pins are reaped, as get does");
    /* A live pin at the same place is cleared as before. */
    cr_assert_eq(touch(AK, "claude", GM, "p", "e", "k", 100), ACACHE_TOUCH_CREATED);
    cr_assert_eq(clear_single_json(&b, AK, "e", GM, "claude"), ACACHE_OK);
    acache_buf_dispose(&b);
    cr_assert_eq(stats().cache_invalidations, 1);
}

/* Issue 8 item 13: Aether's clear_all does not count invalidations (the web
 * UI labels that figure "invalidations because a provider was unavailable"). */
Test(affinity, clear_all_is_not_counted_as_invalidations)
{
    touch("k1", "claude", "m", "p", "e", "k", 0);
    touch("k2", "claude", "m", "p", "e", "k", 0);
    touch("k3", "claude", "m", "p", "e", "k", 0);
    cr_assert_eq(acache_affinity_invalidate(c, "k1", "claude", "m", NULL, NULL, NULL),
                 ACACHE_OK);
    cr_assert_eq(stats().cache_invalidations, 1);
    size_t n = 0;
    cr_assert_eq(acache__affinity_clear_all(&n, c), ACACHE_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(stats().cache_invalidations, 1);
    touch("k4", "claude", "m", "p", "e", "k", 0);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(clear_all_json(&b), ACACHE_OK);
    acache_buf_dispose(&b);
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_ALL;
    touch("k5", "claude", "m", "p", "e", "k", 0);
    cr_assert_eq(acache_invalidate(&n, c, &t), ACACHE_OK);
    cr_assert_eq(n, 1);
    acache_stats s = stats();
    cr_assert_eq(s.cache_invalidations, 1);
    cr_assert_eq(s.active_affinities, 0);
    cr_assert_eq(acache_stats_json(&b, c), ACACHE_OK);
    json_t *o = json_loads(b.ptr, 0, NULL);
    acache_buf_dispose(&b);
    json_t *as = json_object_get(json_object_get(o, "data"), "affinity_stats");
    cr_assert_eq(json_integer_value(json_object_get(as, "cache_invalidations")), 1);
    json_decref(o);
}

Test(affinity, invalidate_api_key_is_a_literal_prefix)
{
    touch("ab", "claude", "m", "p", "e", "k", 0);
    touch("ab", "openai", "m:x", "p", "e", "k", 0);
    touch("abc", "claude", "m", "p", "e", "k", 0);
    touch("a*", "claude", "m", "p", "e", "k", 0);
    size_t n = 0;
    cr_assert_eq(acache__affinity_invalidate_api_key(&n, c, "a*"), ACACHE_OK);
    cr_assert_eq(n, 1, "'a*' is a literal, not a pattern");
    cr_assert_eq(acache__affinity_invalidate_api_key(&n, c, "ab"), ACACHE_OK);
    cr_assert_eq(n, 2, "must not remove the pins of 'abc'");
    acache__affinity_list *l = NULL;
    cr_assert_eq(acache__affinity_list_fetch(&l, c, NULL), ACACHE_OK);
    cr_assert_eq(acache__affinity_list_count(l), 1);
    cr_assert_str_eq(acache_affinity_client_key(acache__affinity_list_at(l, 0)), "abc");
    acache__affinity_list_free(l);
    cr_assert_eq(stats().cache_invalidations, 3);
    cr_assert_eq(acache__affinity_invalidate_api_key(&n, c, "a:b"), ACACHE_EINVALID);
}

Test(affinity, invalidate_by_provider_and_clear_all_count)
{
    char ak[32];
    for (int i = 0; i < 1200; i++) {
        snprintf(ak, sizeof ak, "key-%04d", i);
        touch(ak, "claude", "m", i % 10 == 0 ? "victim" : "other", "e", "k", 0);
    }
    size_t n = 0;
    cr_assert_eq(acache__affinity_invalidate_provider(&n, c, "victim"), ACACHE_OK);
    cr_assert_eq(n, 120);
    cr_assert_eq(stats().active_affinities, 1080);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(clear_provider_json(&b, "victim"), ACACHE_OK);
    json_t *o = json_loads(b.ptr, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(o, "count")), 0);
    cr_assert_str_eq(json_string_value(json_object_get(o, "provider_id")), "victim");
    json_decref(o);
    cr_assert_eq(clear_all_json(&b), ACACHE_OK);
    o = json_loads(b.ptr, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(o, "count")), 1080);
    cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "ok");
    json_decref(o);
    acache_buf_dispose(&b);
    cr_assert_eq(stats().active_affinities, 0);
}

Test(affinity, invalidate_entry_point_dispatches_every_kind)
{
    touch("k1", "claude", "m", "p1", "e", "k", 0);
    touch("k2", "claude", "m", "p2", "e", "k", 0);
    touch("k3", "claude", "m", "p3", "e", "k", 0);
    touch("k4", "claude", "m", "p4", "e", "k", 0);
    acache_target t = ACACHE_TARGET_INIT;
    size_t n = 0;
    t.kind = ACACHE_TARGET_SINGLE;
    t.affinity_key = "k1", t.api_format = "claude", t.model_name = "m",
    t.endpoint_id = "e";
    cr_assert_eq(acache_invalidate(&n, c, &t), ACACHE_OK);
    cr_assert_eq(n, 1);
    t = (acache_target)ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_API_KEY, t.affinity_key = "k2";
    cr_assert_eq(acache_invalidate(&n, c, &t), ACACHE_OK);
    cr_assert_eq(n, 1);
    t = (acache_target)ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_PROVIDER, t.provider_id = "p3";
    cr_assert_eq(acache_invalidate(&n, c, &t), ACACHE_OK);
    cr_assert_eq(n, 1);
    t = (acache_target)ACACHE_TARGET_INIT;
    t.kind = 42;
    cr_assert_eq(acache_invalidate(&n, c, &t), ACACHE_EINVALID);
    t.kind = ACACHE_TARGET_ALL;
    cr_assert_eq(acache_invalidate(&n, c, &t), ACACHE_OK);
    cr_assert_eq(n, 1);
}

/* Values exactly as Aether writes them. The file's pins were written on one
 * day: the clock is set to just after that. */
Test(affinity, aether_written_values_read_back_per_spec)
{
    th_set_time(1795309733.4665794 + 5);
    th_load_jsonl(c, TH_TESTDATA("aether-redis/affinities.jsonl"));
    acache__affinity_list *l = NULL;
    cr_assert_eq(acache__affinity_list_fetch(&l, c, NULL), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_eq(acache__affinity_list_count(l), 5, "5 readable, 2 malformed");
    int seen_colon = 0, seen_old = 0;
    for (size_t i = 0; i < acache__affinity_list_count(l); i++) {
        const acache_affinity *a = acache__affinity_list_at(l, i);
        if (strcmp(acache_affinity_model_name(a), "qwen2.5:7b") == 0) {
            seen_colon = 1;
            cr_assert_str_eq(acache_affinity_client_key(a),
                             "8d7e6f5a-4b3c-4d2e-8f1a-0b9c8d7e6f5a");
            cr_assert_str_eq(acache_affinity_api_format(a), "claude");
        }
        if (strcmp(acache_affinity_provider_id(a), "prov-0009-zzzz") == 0) {
            seen_old = 1; /* value lacks api_format/model_name: taken from the key */
            cr_assert_str_eq(acache_affinity_api_format(a), "claude");
            cr_assert_str_eq(acache_affinity_model_name(a), GM);
            cr_assert_eq(acache_affinity_request_count(a), 7);
            cr_assert_float_eq(acache_affinity_created_at(a), 1732262400.123456, 1e-6);
        }
        if (strcmp(acache_affinity_key_id(a), "pkey-0001-aaaa") == 0) {
            cr_assert_eq(acache_affinity_request_count(a), 2);
            cr_assert_float_eq(acache_affinity_expire_at(a), 1795313333.4671035, 1e-6);
        }
    }
    cr_assert(seen_colon && seen_old);
    acache__affinity_list_free(l);
    acache_stats s = stats();
    cr_assert_eq(s.malformed_records, 2);
    cr_assert_eq(s.active_affinities, 7);

    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", "broken-json-model"),
                 ACACHE_ENOTFOUND);
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", "not-an-object"),
                 ACACHE_ENOTFOUND);
    cr_assert_eq(acache_affinity_get(&a, c, "8d7e6f5a-4b3c-4d2e-8f1a-0b9c8d7e6f5a",
                                     "claude", "qwen2.5:7b"),
                 ACACHE_OK);
    acache_affinity_free(a);
    /* A refresh of an Aether-written pin keeps its created_at and counts on. */
    cr_assert_eq(
        touch(AK, "claude", GM, "prov-0001-aaaa", "endp-0001-aaaa", "pkey-0001-aaaa", 0),
        ACACHE_TOUCH_REFRESHED);
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", GM), ACACHE_OK);
    cr_assert_eq(acache_affinity_request_count(a), 3);
    cr_assert_float_eq(acache_affinity_created_at(a), 1795309733.4665794, 1e-6);
    acache_affinity_free(a);
    /* Malformed values never abort bulk operations; clear-all removes them too. */
    size_t n = 0;
    cr_assert_eq(acache__affinity_invalidate_provider(&n, c, "prov-0001-aaaa"),
                 ACACHE_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(acache__affinity_clear_all(&n, c), ACACHE_OK);
    cr_assert_eq(n, 5);
}

Test(affinity, values_we_write_are_what_aether_reads)
{
    th_set_time(1795309733.25);
    touch(AK, "claude", "qwen2.5:7b", "p", "e", "k", 0);
    acache_store *s = acache_handle_store(c);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(s->get(s, "cache_affinity:" AK ":claude:qwen2.5:7b", &b), ACACHE_OK);
    json_t *o = json_loads(b.ptr, 0, NULL);
    cr_assert_not_null(o, "value is JSON: %s", b.ptr);
    const char *order[] = {"provider_id", "endpoint_id", "key_id",    "api_format",
                           "model_name",  "created_at",  "expire_at", "request_count"};
    const char *k;
    json_t *v;
    int i = 0;
    json_object_foreach(o, k, v)
    {
        cr_assert_lt(i, 8);
        cr_assert_str_eq(k, order[i++], "field order as Python json.dumps");
    }
    cr_assert_eq(i, 8);
    cr_assert(json_is_real(json_object_get(o, "created_at")));
    cr_assert(json_is_integer(json_object_get(o, "request_count")));
    cr_assert_str_eq(json_string_value(json_object_get(o, "model_name")), "qwen2.5:7b");
    cr_assert(strstr(b.ptr, "\"provider_id\": \"p\", \"endpoint_id\""), "separators: %s",
              b.ptr);
    json_decref(o);
    acache_buf_dispose(&b);
}

/* ---- concurrency: real threads on one handle ---- */

#define THREADS 8
#define PER_THREAD 400

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        acache_touch_result r;
        if (acache__affinity_set(&r, c, AK, "claude", i % 2 ? "m-odd" : "m-even", "p",
                                 "e", "k", 1, 0) != ACACHE_OK)
            return (void *)1;
        acache_affinity *a = NULL;
        int rc = acache_affinity_get(&a, c, AK, "claude", "m-odd");
        acache_affinity_free(a);
        if (rc != ACACHE_OK && rc != ACACHE_ENOTFOUND)
            return (void *)1;
    }
    return NULL;
}

Test(affinity, threads_sharing_a_handle_lose_no_count)
{
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        cr_assert_null(ret, "a thread saw an error: %s", acache_last_error());
    }
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", "m-even"), ACACHE_OK);
    cr_assert_eq(acache_affinity_request_count(a), THREADS * PER_THREAD / 2);
    acache_affinity_free(a);
    cr_assert_eq(stats().total_affinities, 2);
}

Test(affinity, list_json_is_sorted_by_storage_key)
{
    touch("b", "openai", "m", "p", "e", "k", 0);
    touch("a", "openai", "z:1", "p", "e", "k", 0);
    touch("a", "claude", "m", "p2", "e", "k", 0);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache__affinity_list_json(&b, c, NULL), ACACHE_OK, "%s",
                 acache_last_error());
    json_t *arr = json_loads(b.ptr, 0, NULL);
    cr_assert(json_is_array(arr));
    cr_assert_eq(json_array_size(arr), 3);
    const char *want[3][3] = {
        {"a", "claude", "m"}, {"a", "openai", "z:1"}, {"b", "openai", "m"}};
    for (size_t i = 0; i < 3; i++) {
        json_t *o = json_array_get(arr, i);
        cr_assert_str_eq(json_string_value(json_object_get(o, "affinity_key")),
                         want[i][0]);
        cr_assert_str_eq(json_string_value(json_object_get(o, "api_format")), want[i][1]);
        cr_assert_str_eq(json_string_value(json_object_get(o, "model_name")), want[i][2]);
    }
    cr_assert_str_eq(
        json_string_value(json_object_get(json_array_get(arr, 0), "provider_id")), "p2");
    json_decref(arr);
    cr_assert_eq(acache__affinity_list_json(&b, c, "b"), ACACHE_OK);
    arr = json_loads(b.ptr, 0, NULL);
    cr_assert_eq(json_array_size(arr), 1);
    json_decref(arr);
    acache_buf_dispose(&b);
}

/* ---- the 0.2 surface: acache_invalidate_json, the raw foreach, client_key ---- */

static json_t *body_of(acache_buf *b)
{
    json_t *o = json_loadb(b->ptr, b->size, 0, NULL);
    cr_assert_not_null(o, "not JSON: %s", b->ptr ? b->ptr : "(null)");
    acache_buf_dispose(b);
    return o;
}

Test(affinity, invalidate_json_api_key_body_counts_the_key_s_pins)
{
    touch("ak-1", "claude", "m1", "p", "e", "k", 0);
    touch("ak-1", "openai", "m2", "p", "e", "k", 0);
    touch("ak-2", "claude", "m1", "p", "e", "k", 0);
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_API_KEY;
    t.affinity_key = "ak-1";
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_invalidate_json(&b, c, &t), ACACHE_OK, "%s", acache_last_error());
    cr_assert_str_eq(b.ptr,
                     "{\"status\": \"ok\", \"message\": \"Cleared 2 cache affinities "
                     "of the API key\", \"affinity_key\": \"ak-1\", \"count\": 2}");
    acache_buf_dispose(&b);
    acache_stats s = stats();
    cr_assert_eq(s.cache_invalidations, 2);
    cr_assert_eq(s.active_affinities, 1);
}

/* The bodies acache-admin forwards, byte for byte (admin-api.md). */
Test(affinity, invalidate_json_bodies_are_the_admin_bodies)
{
    touch(AK, "claude", GM, "p", "e", "k", 0);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(clear_single_json(&b, AK, "e", GM, "claude"), ACACHE_OK);
    cr_assert_str_eq(b.ptr,
                     "{\"status\": \"ok\", \"message\": \"Cache affinity cleared\", "
                     "\"affinity_key\": \"" AK "\", \"endpoint_id\": \"e\", "
                     "\"model_id\": \"" GM "\"}");
    touch(AK, "claude", GM, "victim", "e", "k", 0);
    cr_assert_eq(clear_provider_json(&b, "victim"), ACACHE_OK);
    cr_assert_str_eq(b.ptr,
                     "{\"status\": \"ok\", \"message\": \"Cleared 1 cache affinities "
                     "of the provider\", \"provider_id\": \"victim\", \"count\": 1}");
    touch(AK, "claude", GM, "p", "e", "k", 0);
    cr_assert_eq(clear_all_json(&b), ACACHE_OK);
    cr_assert_str_eq(b.ptr, "{\"status\": \"ok\", \"message\": \"Cleared all cache "
                            "affinities (1)\", \"count\": 1}");
    acache_buf_dispose(&b);
}

/* A SINGLE target without endpoint_id is no filter (the body shows null);
 * its key_id / provider_id filters apply as in acache_invalidate(). */
Test(affinity, invalidate_json_single_filters)
{
    touch(AK, "claude", GM, "p", "e", "k", 0);
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_SINGLE;
    t.affinity_key = AK;
    t.api_format = "claude";
    t.model_name = GM;
    t.key_id = "other";
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_invalidate_json(&b, c, &t), ACACHE_ENOTFOUND);
    cr_assert_null(b.ptr, "untouched on failure");
    cr_assert(strstr(acache_last_error(), "endpoint_id=(any)") != NULL, "%s",
              acache_last_error());
    t.key_id = "k";
    t.endpoint_id = "";
    cr_assert_eq(acache_invalidate_json(&b, c, &t), ACACHE_EINVALID, "an empty endpoint");
    t.endpoint_id = NULL;
    cr_assert_eq(acache_invalidate_json(&b, c, &t), ACACHE_OK, "%s", acache_last_error());
    json_t *o = body_of(&b);
    cr_assert(json_is_null(json_object_get(o, "endpoint_id")));
    cr_assert_str_eq(json_string_value(json_object_get(o, "model_id")), GM);
    json_decref(o);
    cr_assert_eq(stats().active_affinities, 0);
}

Test(affinity, invalidate_json_rejects_bad_targets)
{
    acache_buf b = ACACHE_BUF_INIT;
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = 99;
    cr_assert_eq(acache_invalidate_json(&b, c, &t), ACACHE_EINVALID);
    t.kind = ACACHE_TARGET_ALL;
    t.version = ACACHE_TARGET_VERSION + 1;
    cr_assert_eq(acache_invalidate_json(&b, c, &t), ACACHE_EINVALID);
    t.version = 0;
    cr_assert_eq(acache_invalidate_json(&b, c, &t), ACACHE_EINVALID);
    cr_assert_eq(acache_invalidate_json(NULL, c, &t), ACACHE_EINVALID);
    cr_assert_eq(acache_invalidate_json(&b, c, NULL), ACACHE_EINVALID);
    cr_assert_null(b.ptr);
}

typedef struct seen {
    int n;
    int stop_at;
    char keys[8][64];
} seen;

static int collect(const acache_affinity *a, void *payload)
{
    seen *s = payload;
    if (s->n < 8)
        snprintf(s->keys[s->n], sizeof s->keys[0], "%s/%s/%s/%s",
                 acache_affinity_client_key(a), acache_affinity_api_format(a),
                 acache_affinity_model_name(a), acache_affinity_key_id(a));
    s->n++;
    return s->n == s->stop_at ? 42 : 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* acache_affinity_foreach is the public raw listing since 0.2. */
Test(affinity, foreach_visits_every_live_pin_and_stops_early)
{
    touch("a", "claude", "m:1", "p", "e", "k1", 0);
    touch("a", "openai", "m", "p", "e", "k2", 0);
    touch("b", "claude", "m", "p", "e", "k3", 10);
    th_advance(11); /* b's pin expires */
    seen s = {0};
    cr_assert_eq(acache_affinity_foreach(c, NULL, collect, &s), ACACHE_OK);
    cr_assert_eq(s.n, 2, "the expired pin is not visited");
    qsort(s.keys, 2, sizeof s.keys[0], cmp_str);
    cr_assert_str_eq(s.keys[0], "a/claude/m:1/k1");
    cr_assert_str_eq(s.keys[1], "a/openai/m/k2");
    seen one = {0};
    cr_assert_eq(acache_affinity_foreach(c, "b", collect, &one), ACACHE_OK);
    cr_assert_eq(one.n, 0);
    seen stop = {.stop_at = 1};
    cr_assert_eq(acache_affinity_foreach(c, NULL, collect, &stop), 42,
                 "the callback's nonzero value is returned");
    cr_assert_eq(stop.n, 1);
}

/* acache_list_affinities answers the GET .../affinities body from a query
 * struct (NULL = ACACHE_LIST_QUERY_INIT); a struct from a newer library is
 * refused, never read past its end. */
Test(affinity, list_affinities_takes_a_versioned_query)
{
    touch("a", "claude", "m", "p", "e", "k", 0);
    touch("b", "claude", "m", "p", "e", "k", 0);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_list_affinities(&b, c, NULL), ACACHE_OK, "%s",
                 acache_last_error());
    json_t *o = body_of(&b);
    cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "ok");
    json_t *meta = json_object_get(json_object_get(o, "data"), "meta");
    cr_assert_eq(json_integer_value(json_object_get(meta, "total")), 2);
    cr_assert_eq(json_integer_value(json_object_get(meta, "limit")), 100);
    cr_assert_eq(json_integer_value(json_object_get(meta, "offset")), 0);
    json_decref(o);
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    q.keyword = "b";
    q.limit = 1;
    cr_assert_eq(acache_list_affinities(&b, c, &q), ACACHE_OK);
    o = body_of(&b);
    json_t *items = json_object_get(json_object_get(o, "data"), "items");
    cr_assert_eq(json_array_size(items), 1);
    cr_assert_str_eq(
        json_string_value(json_object_get(json_array_get(items, 0), "affinity_key")),
        "b");
    json_decref(o);
    q.version = ACACHE_LIST_QUERY_VERSION + 1;
    cr_assert_eq(acache_list_affinities(&b, c, &q), ACACHE_EINVALID);
    cr_assert_null(b.ptr);
}
