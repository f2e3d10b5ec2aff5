/* Pin lifecycle (docs/affinity.md "Pin lifecycle"): acache_affinity_report()
 * and the invalidations by provider key and endpoint, run on memory://
 * (unit) and a real Redis (integration). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "harness.h"

#define AK "3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f"
#define KEY "cache_affinity:" AK ":claude:m"

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

TestSuite(lifecycle, .init = setup, .fini = teardown, .timeout = 120);

static acache_report_result report_on(acache *h, int outcome, const char *prov,
                                      const char *ep, const char *key)
{
    acache_report r = ACACHE_REPORT_INIT;
    r.affinity_key = AK;
    r.api_format = "claude";
    r.model_name = "m";
    r.provider_id = prov;
    r.endpoint_id = ep;
    r.key_id = key;
    r.outcome = outcome;
    acache_report_result res = ACACHE_REPORT_RESULT_INIT;
    int rc = acache_affinity_report(&res, h, &r);
    cr_assert_eq(rc, ACACHE_OK, "report: %s", acache_last_error());
    return res;
}

static acache_report_result report(int outcome, const char *key)
{
    return report_on(c, outcome, "p", "e", key);
}

static int pinned_to(const char *key)
{
    acache_affinity *a = NULL;
    int rc = acache_affinity_get(&a, c, AK, "claude", "m");
    int yes = rc == ACACHE_OK && strcmp(acache_affinity_key_id(a), key) == 0;
    acache_affinity_free(a);
    return yes;
}

static int pinned(void)
{
    acache_affinity *a = NULL;
    int rc = acache_affinity_get(&a, c, AK, "claude", "m");
    acache_affinity_free(a);
    return rc == ACACHE_OK;
}

static acache_stats stats_of(acache *h)
{
    acache_stats s = {.version = ACACHE_STATS_VERSION};
    cr_assert_eq(acache_stats_get(&s, h), ACACHE_OK, "%s", acache_last_error());
    return s;
}

Test(lifecycle, success_is_a_touch)
{
    acache_report_result r = report(ACACHE_OUTCOME_SUCCESS, "k");
    cr_assert_eq(r.action, ACACHE_REPORT_CREATED);
    r = report(ACACHE_OUTCOME_SUCCESS, "k");
    cr_assert_eq(r.action, ACACHE_REPORT_REFRESHED);
    r = report(ACACHE_OUTCOME_SUCCESS, "k2");
    cr_assert_eq(r.action, ACACHE_REPORT_SWITCHED);
    cr_assert(pinned_to("k2"));
    acache_stats s = stats_of(c);
    cr_assert_eq(s.report_successes, 3);
    cr_assert_eq(s.total_affinities, 1);
    cr_assert_eq(s.key_switches, 1);
}

Test(lifecycle, transient_n_minus_1_keeps_the_pin_n_drops_it)
{
    report(ACACHE_OUTCOME_SUCCESS, "k");
    for (uint32_t i = 1; i <= 2; i++) {
        acache_report_result r = report(ACACHE_OUTCOME_TRANSIENT, "k");
        cr_assert_eq(r.action, ACACHE_REPORT_KEPT, "failure %u", i);
        cr_assert_eq(r.failures, i);
        cr_assert(pinned_to("k"), "kept after %u of 3", i);
    }
    acache_report_result r = report(ACACHE_OUTCOME_TRANSIENT, "k");
    cr_assert_eq(r.action, ACACHE_REPORT_DROPPED);
    cr_assert_eq(r.failures, 3);
    cr_assert_not(pinned());
    acache_stats s = stats_of(c);
    cr_assert_eq(s.report_transient_failures, 3);
    cr_assert_eq(s.pins_dropped_transient, 1);
    cr_assert_eq(s.pins_dropped_terminal, 0);
    cr_assert_eq(s.cache_invalidations, 1, "a drop is an invalidation");
    /* Nothing left to fail: not pinned, nothing else changes. */
    r = report(ACACHE_OUTCOME_TRANSIENT, "k");
    cr_assert_eq(r.action, ACACHE_REPORT_NOT_PINNED);
    cr_assert_eq(r.failures, 0);
    cr_assert_eq(stats_of(c).report_not_pinned, 1);
}

Test(lifecycle, a_success_resets_the_count)
{
    report(ACACHE_OUTCOME_SUCCESS, "k");
    report(ACACHE_OUTCOME_TRANSIENT, "k");
    report(ACACHE_OUTCOME_TRANSIENT, "k");
    cr_assert_eq(report(ACACHE_OUTCOME_SUCCESS, "k").action, ACACHE_REPORT_REFRESHED);
    /* Two more in a row are still below three. */
    cr_assert_eq(report(ACACHE_OUTCOME_TRANSIENT, "k").failures, 1);
    cr_assert_eq(report(ACACHE_OUTCOME_TRANSIENT, "k").action, ACACHE_REPORT_KEPT);
    cr_assert(pinned_to("k"));
    cr_assert_eq(report(ACACHE_OUTCOME_TRANSIENT, "k").action, ACACHE_REPORT_DROPPED);
    /* A refresh keeps created_at and the request count as touch does. */
}

Test(lifecycle, a_refresh_after_failures_keeps_counting_requests)
{
    report(ACACHE_OUTCOME_SUCCESS, "k");
    th_advance(1);
    report(ACACHE_OUTCOME_TRANSIENT, "k");
    report(ACACHE_OUTCOME_SUCCESS, "k");
    acache_affinity *a = NULL;
    cr_assert_eq(acache_affinity_get(&a, c, AK, "claude", "m"), ACACHE_OK);
    cr_assert_eq(acache_affinity_request_count(a), 2);
    cr_assert_float_eq(acache_affinity_created_at(a), 1800000000.0, 1e-6);
    acache_affinity_free(a);
}

Test(lifecycle, terminal_drops_at_once)
{
    report(ACACHE_OUTCOME_SUCCESS, "k");
    acache_report_result r = report(ACACHE_OUTCOME_TERMINAL, "k");
    cr_assert_eq(r.action, ACACHE_REPORT_DROPPED);
    cr_assert_eq(r.failures, 1);
    cr_assert_not(pinned());
    acache_stats s = stats_of(c);
    cr_assert_eq(s.report_terminal_failures, 1);
    cr_assert_eq(s.pins_dropped_terminal, 1);
}

Test(lifecycle, a_failure_of_another_target_leaves_the_pin_alone)
{
    /* The pin moved to k2 (another process switched it); k's failures come
     * late and must neither count on nor delete the new pin. */
    report(ACACHE_OUTCOME_SUCCESS, "k2");
    cr_assert_eq(report(ACACHE_OUTCOME_TERMINAL, "k").action, ACACHE_REPORT_NOT_PINNED);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(report(ACACHE_OUTCOME_TRANSIENT, "k").action,
                     ACACHE_REPORT_NOT_PINNED);
    cr_assert_eq(report_on(c, ACACHE_OUTCOME_TERMINAL, "p", "e2", "k2").action,
                 ACACHE_REPORT_NOT_PINNED, "endpoint must match too");
    cr_assert_eq(report_on(c, ACACHE_OUTCOME_TERMINAL, "p2", "e", "k2").action,
                 ACACHE_REPORT_NOT_PINNED, "provider must match too");
    cr_assert(pinned_to("k2"));
    /* and k2's own count was never touched */
    cr_assert_eq(report(ACACHE_OUTCOME_TRANSIENT, "k2").failures, 1);
}

Test(lifecycle, an_expired_pin_is_not_pinned)
{
    acache_report r = ACACHE_REPORT_INIT;
    r.affinity_key = AK;
    r.api_format = "claude";
    r.model_name = "m";
    r.provider_id = "p";
    r.endpoint_id = "e";
    r.key_id = "k";
    r.outcome = ACACHE_OUTCOME_SUCCESS;
    r.ttl_s = 60;
    cr_assert_eq(acache_affinity_report(NULL, c, &r), ACACHE_OK);
    th_advance(61);
    cr_assert_eq(report(ACACHE_OUTCOME_TRANSIENT, "k").action, ACACHE_REPORT_NOT_PINNED);
    cr_assert_eq(report(ACACHE_OUTCOME_TERMINAL, "k").action, ACACHE_REPORT_NOT_PINNED);
}

Test(lifecycle, the_threshold_is_an_option)
{
    acache_options o = ACACHE_OPTIONS_INIT;
    o.max_transient_failures = 1;
    acache *one = th_open(&o);
    report_on(one, ACACHE_OUTCOME_SUCCESS, "p", "e", "k");
    cr_assert_eq(report_on(one, ACACHE_OUTCOME_TRANSIENT, "p", "e", "k").action,
                 ACACHE_REPORT_DROPPED);
    acache_close(one);

    o.max_transient_failures = 5;
    acache *five = th_open(&o);
    report_on(five, ACACHE_OUTCOME_SUCCESS, "p", "e", "k");
    for (int i = 1; i < 5; i++)
        cr_assert_eq(report_on(five, ACACHE_OUTCOME_TRANSIENT, "p", "e", "k").action,
                     ACACHE_REPORT_KEPT);
    cr_assert_eq(report_on(five, ACACHE_OUTCOME_TRANSIENT, "p", "e", "k").action,
                 ACACHE_REPORT_DROPPED);
    acache_close(five);
}

Test(lifecycle, version_1_options_get_the_default_threshold)
{
    /* A caller built against 0.1's header: its struct ends before
     * max_transient_failures; the bytes after it must not be read. */
    acache_options *o = malloc(offsetof(acache_options, max_transient_failures));
    cr_assert_not_null(o);
    memset(o, 0, offsetof(acache_options, max_transient_failures));
    cr_assert_eq(acache_options_init(o, 1), ACACHE_OK);
    /* memcpy, not o->store_uri: the compiler rightly sees `o` as a short object */
    const char *uri = th_store_uri();
    memcpy((char *)o + offsetof(acache_options, store_uri), &uri, sizeof uri);
    acache *h = NULL;
    cr_assert_eq(acache_open(&h, o), ACACHE_OK, "%s", acache_last_error());
    free(o);
    report_on(h, ACACHE_OUTCOME_SUCCESS, "p", "e", "k");
    cr_assert_eq(report_on(h, ACACHE_OUTCOME_TRANSIENT, "p", "e", "k").action,
                 ACACHE_REPORT_KEPT);
    cr_assert_eq(report_on(h, ACACHE_OUTCOME_TRANSIENT, "p", "e", "k").action,
                 ACACHE_REPORT_KEPT);
    cr_assert_eq(report_on(h, ACACHE_OUTCOME_TRANSIENT, "p", "e", "k").action,
                 ACACHE_REPORT_DROPPED);
    /* a version 1 stats struct gets only its fields */
    struct {
        acache_stats s;
        unsigned char guard[64];
    } st;
    memset(&st, 0xAB, sizeof st);
    st.s.version = 1;
    cr_assert_eq(acache_stats_get(&st.s, h), ACACHE_OK);
    const unsigned char *p = (const unsigned char *)&st.s;
    for (size_t i = offsetof(acache_stats, report_successes); i < sizeof st; i++)
        cr_assert_eq(p[i], 0xAB, "byte %zu past a version 1 struct was written", i);
    acache_close(h);
}

Test(lifecycle, bad_reports_are_rejected)
{
    acache_report r = ACACHE_REPORT_INIT;
    r.affinity_key = AK;
    r.api_format = "claude";
    r.model_name = "m";
    r.provider_id = "p";
    r.endpoint_id = "e";
    r.key_id = "k";
    acache_report_result res = ACACHE_REPORT_RESULT_INIT;
    r.outcome = 0;
    cr_assert_eq(acache_affinity_report(&res, c, &r), ACACHE_EINVALID);
    r.outcome = 4;
    cr_assert_eq(acache_affinity_report(&res, c, &r), ACACHE_EINVALID);
    r.outcome = ACACHE_OUTCOME_TRANSIENT;
    r.key_id = NULL;
    cr_assert_eq(acache_affinity_report(&res, c, &r), ACACHE_EINVALID);
    r.key_id = "k";
    r.affinity_key = "a:b";
    cr_assert_eq(acache_affinity_report(&res, c, &r), ACACHE_EINVALID);
    r.affinity_key = AK;
    r.version = 99;
    cr_assert_eq(acache_affinity_report(&res, c, &r), ACACHE_EINVALID);
    r.version = ACACHE_REPORT_VERSION;
    res.version = 0;
    cr_assert_eq(acache_affinity_report(&res, c, &r), ACACHE_EINVALID);
    cr_assert_eq(acache_affinity_report(NULL, NULL, &r), ACACHE_EINVALID);
    cr_assert_eq(acache_affinity_report(NULL, c, NULL), ACACHE_EINVALID);
    cr_assert_eq(acache_affinity_report(NULL, c, &r), ACACHE_OK, "NULL out is allowed");
}

Test(lifecycle, stats_json_carries_the_lifecycle_counters)
{
    report(ACACHE_OUTCOME_SUCCESS, "k");
    report(ACACHE_OUTCOME_TERMINAL, "k");
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_stats_json(&b, c), ACACHE_OK);
    json_t *o = json_loads(b.ptr, 0, NULL);
    cr_assert_not_null(o);
    json_t *l = json_object_get(
        json_object_get(json_object_get(o, "data"), "affinity_stats"), "lifecycle");
    cr_assert(json_is_object(l), "%s", b.ptr);
    cr_assert_eq(json_integer_value(json_object_get(l, "report_successes")), 1);
    cr_assert_eq(json_integer_value(json_object_get(l, "report_terminal_failures")), 1);
    cr_assert_eq(json_integer_value(json_object_get(l, "pins_dropped_terminal")), 1);
    json_decref(o);
    acache_buf_dispose(&b);
}

/* The count is kept in the value Aether reads; on every store the raw value
 * stays Aether's record, and on Redis every byte but the count is kept. */
Test(lifecycle, the_counted_pin_stays_readable_by_aether)
{
    report(ACACHE_OUTCOME_SUCCESS, "k");
    acache_store *s = acache_handle_store(c);
    acache_buf before = ACACHE_BUF_INIT, after = ACACHE_BUF_INIT;
    cr_assert_eq(s->get(s, KEY, &before), ACACHE_OK);
    report(ACACHE_OUTCOME_TRANSIENT, "k");
    report(ACACHE_OUTCOME_TRANSIENT, "k");
    cr_assert_eq(s->get(s, KEY, &after), ACACHE_OK);
    json_t *o = json_loads(after.ptr, 0, NULL);
    cr_assert_not_null(o, "%s", after.ptr);
    const char *fields[] = {"provider_id", "endpoint_id", "key_id",    "api_format",
                            "model_name",  "created_at",  "expire_at", "request_count"};
    for (size_t i = 0; i < 8; i++)
        cr_assert_not_null(json_object_get(o, fields[i]), "%s kept: %s", fields[i],
                           after.ptr);
    if (th_is_redis()) {
        cr_assert_eq(json_integer_value(json_object_get(o, "failure_count")), 2, "%s",
                     after.ptr);
        /* Aether's layout, the count appended before the closing brace. */
        cr_assert_eq(after.size, before.size - 1 + strlen(", \"failure_count\": 2}"));
        cr_assert_eq(memcmp(after.ptr, before.ptr, before.size - 1), 0, "%s", after.ptr);
        int64_t ttl = 0;
        const char *k[] = {KEY};
        cr_assert_eq(s->ttl(s, k, 1, &ttl), ACACHE_OK);
        cr_assert(ttl > 0 && ttl <= 300, "TTL kept: %lld", (long long)ttl);
        /* This library's parser reads it back. */
        cr_assert(pinned_to("k"));
        /* A touch rewrites the value without the count. */
        report(ACACHE_OUTCOME_SUCCESS, "k");
        acache_buf again = ACACHE_BUF_INIT;
        cr_assert_eq(s->get(s, KEY, &again), ACACHE_OK);
        cr_assert_null(strstr(again.ptr, "failure_count"), "%s", again.ptr);
        acache_buf_dispose(&again);
    }
    json_decref(o);
    acache_buf_dispose(&before);
    acache_buf_dispose(&after);
}

/* ---- invalidate by provider key and by endpoint ---- */

#define NPINS 100000
#define NKEYS 50
#define NENDPOINTS 20

typedef struct {
    char ep[NPINS], key[NPINS]; /* indexes, 255 = removed */
} pinset;

static void load_pins(pinset *ps)
{
    acache_store *s = acache_handle_store(c);
    unsigned seed = 12345;
    char key[96], val[512];
    for (int i = 0; i < NPINS; i++) {
        seed = seed * 1103515245u + 12345u;
        ps->key[i] = (char)((seed >> 8) % NKEYS);
        ps->ep[i] = (char)((seed >> 20) % NENDPOINTS);
        snprintf(key, sizeof key, "cache_affinity:ak%d:claude:m", i);
        int n =
            snprintf(val, sizeof val,
                     "{\"provider_id\": \"p%d\", \"endpoint_id\": \"e%d\", \"key_id\": "
                     "\"k%d\", \"api_format\": \"claude\", \"model_name\": \"m\", "
                     "\"created_at\": 1800000000.0, \"expire_at\": 1800000300.0, "
                     "\"request_count\": 1}",
                     i % 3, ps->ep[i], ps->key[i]);
        cr_assert_eq(s->set(s, key, val, (size_t)n, 300), ACACHE_OK, "%s",
                     acache_last_error());
    }
}

typedef struct {
    const pinset *ps;
    size_t seen;
    int wrong;
} check_ctx;

static int check_pin(const acache_affinity *a, void *payload)
{
    check_ctx *k = payload;
    int i = atoi(acache_affinity_client_key(a) + 2);
    char want_ep[8], want_key[8];
    snprintf(want_ep, sizeof want_ep, "e%d", k->ps->ep[i]);
    snprintf(want_key, sizeof want_key, "k%d", k->ps->key[i]);
    if (k->ps->ep[i] == (char)-1 || strcmp(acache_affinity_endpoint_id(a), want_ep) ||
        strcmp(acache_affinity_key_id(a), want_key))
        k->wrong++;
    k->seen++;
    return 0;
}

/* Exactly the pins the brute-force filter names go, and nothing else. */
static void remove_and_check(pinset *ps, int kind, int which, size_t *left)
{
    size_t expect = 0;
    for (int i = 0; i < NPINS; i++) {
        int hit = ps->ep[i] != (char)-1 &&
                  (kind == ACACHE_TARGET_KEY ? ps->key[i] : ps->ep[i]) == which;
        if (hit) {
            ps->ep[i] = (char)-1;
            expect++;
        }
    }
    char id[8];
    snprintf(id, sizeof id, kind == ACACHE_TARGET_KEY ? "k%d" : "e%d", which);
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = kind;
    if (kind == ACACHE_TARGET_KEY)
        t.key_id = id;
    else
        t.endpoint_id = id;
    size_t removed = 0;
    cr_assert_eq(acache_invalidate(&removed, c, &t), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_gt(expect, 0);
    cr_assert_eq(removed, expect, "%s: removed %zu, brute force says %zu", id, removed,
                 expect);
    *left -= expect;
    check_ctx k = {ps, 0, 0};
    cr_assert_eq(acache_affinity_foreach(c, NULL, check_pin, &k), ACACHE_OK);
    cr_assert_eq(k.wrong, 0, "%d pins survived that should not have, or changed",
                 k.wrong);
    cr_assert_eq(k.seen, *left);
}

Test(lifecycle, invalidate_by_key_and_endpoint_removes_exactly_the_matching_pins,
     .timeout = 300)
{
    pinset *ps = calloc(1, sizeof *ps);
    cr_assert_not_null(ps);
    load_pins(ps);
    size_t left = NPINS;
    remove_and_check(ps, ACACHE_TARGET_KEY, 7, &left);
    remove_and_check(ps, ACACHE_TARGET_ENDPOINT, 3, &left);
    /* "k1" must not take "k17"'s pins (the byte pre-filter is quoted). */
    remove_and_check(ps, ACACHE_TARGET_KEY, 1, &left);
    remove_and_check(ps, ACACHE_TARGET_ENDPOINT, 1, &left);
    cr_assert_eq(stats_of(c).cache_invalidations, NPINS - left);
    free(ps);
}

Test(lifecycle, invalidate_json_key_and_endpoint_bodies)
{
    report(ACACHE_OUTCOME_SUCCESS, "k");
    report_on(c, ACACHE_OUTCOME_SUCCESS, "p", "e", "k"); /* same pin */
    acache__affinity_set(NULL, c, "other", "claude", "m", "p", "e9", "k", 1, 0);
    acache__affinity_set(NULL, c, "third", "claude", "m", "p", "e9", "k3", 1, 0);
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_KEY;
    t.key_id = "k";
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_invalidate_json(&b, c, &t), ACACHE_OK, "%s", acache_last_error());
    cr_assert_str_eq(b.ptr,
                     "{\"status\": \"ok\", \"message\": \"Cleared 2 cache affinities "
                     "of the provider key\", \"key_id\": \"k\", \"count\": 2}");
    acache_buf_dispose(&b);
    t.kind = ACACHE_TARGET_ENDPOINT;
    t.key_id = NULL;
    t.endpoint_id = "e9";
    cr_assert_eq(acache_invalidate_json(&b, c, &t), ACACHE_OK, "%s", acache_last_error());
    cr_assert_str_eq(b.ptr,
                     "{\"status\": \"ok\", \"message\": \"Cleared 1 cache affinities "
                     "of the endpoint\", \"endpoint_id\": \"e9\", \"count\": 1}");
    acache_buf_dispose(&b);
    t.endpoint_id = "";
    cr_assert_eq(acache_invalidate_json(&b, c, &t), ACACHE_EINVALID);
    t.endpoint_id = NULL;
    cr_assert_eq(acache_invalidate(NULL, c, &t), ACACHE_EINVALID);
    t.kind = ACACHE_TARGET_KEY;
    cr_assert_eq(acache_invalidate(NULL, c, &t), ACACHE_EINVALID);
}
