/* Stats, scheduler counters, Prometheus text and config JSON (admin-api.md). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "harness.h"

static acache *c;

static void setup(void)
{
    c = th_open(NULL);
    size_t n;
    acache__affinity_clear_all(&n, c);
}

static void teardown(void)
{
    acache_close(c);
}

TestSuite(stats, .init = setup, .fini = teardown, .timeout = 60);

static json_t *load(acache_buf *b)
{
    json_error_t e;
    json_t *o = json_loads(b->ptr, 0, &e);
    cr_assert_not_null(o, "invalid JSON (%s): %s", e.text, b->ptr);
    acache_buf_dispose(b);
    return o;
}

Test(stats, json_has_the_admin_shape_and_counts)
{
    acache__affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k", 1, 0);
    acache__affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k2", 1, 0);
    acache_affinity *a = NULL;
    acache_affinity_get(&a, c, "ak", "claude", "m");
    acache_affinity_free(a);
    acache_affinity_get(&a, c, "ak", "claude", "none");
    acache_affinity_get(&a, c, "ak", "claude", "none2");
    acache_scheduler_record_batch(c, 4);
    acache_scheduler_record_candidates(c, 6);
    acache_scheduler_record_batch(c, 2);
    acache_scheduler_record_candidates(c, 3);
    acache_scheduler_record_cache(c, 1);
    acache_scheduler_record_cache(c, 0);
    acache_scheduler_record_cache(c, 1);
    acache_scheduler_record_concurrency_denied(c);
    acache_scheduler_record_request(c, "claude", "sonnet");

    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_stats_json(&b, c), ACACHE_OK);
    json_t *o = load(&b);
    cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "ok");
    json_t *d = json_object_get(o, "data");
    cr_assert_str_eq(json_string_value(json_object_get(d, "scheduler")), "cache_aware");
    cr_assert_float_eq(json_real_value(json_object_get(d, "cache_reservation_ratio")),
                       0.1, 1e-12);
    json_t *dr = json_object_get(d, "dynamic_reservation");
    cr_assert(json_is_true(json_object_get(dr, "enabled")));
    cr_assert_eq(json_object_size(json_object_get(dr, "config")), 6);
    json_t *as = json_object_get(d, "affinity_stats");
    cr_assert_str_eq(json_string_value(json_object_get(as, "storage_type")),
                     th_is_redis() ? "redis" : "memory");
    cr_assert_eq(json_integer_value(json_object_get(as, "total_affinities")), 1);
    cr_assert_eq(json_integer_value(json_object_get(as, "key_switches")), 1);
    cr_assert_eq(json_integer_value(json_object_get(as, "cache_hits")), 1);
    cr_assert_eq(json_integer_value(json_object_get(as, "cache_misses")), 2);
    cr_assert_float_eq(json_real_value(json_object_get(as, "cache_hit_rate")), 1.0 / 3,
                       1e-12);
    cr_assert_eq(json_integer_value(json_object_get(as, "active_affinities")), 1);
    cr_assert_eq(json_integer_value(json_object_get(as, "provider_switches")), 0);
    cr_assert_eq(
        json_integer_value(json_object_get(json_object_get(as, "config"), "default_ttl")),
        300);
    json_t *sm = json_object_get(d, "scheduler_metrics");
    cr_assert_eq(json_integer_value(json_object_get(sm, "total_batches")), 2);
    cr_assert_eq(json_integer_value(json_object_get(sm, "last_batch_size")), 2);
    cr_assert_eq(json_integer_value(json_object_get(sm, "total_candidates")), 9);
    cr_assert_eq(json_integer_value(json_object_get(sm, "last_candidate_count")), 3);
    cr_assert_eq(json_integer_value(json_object_get(sm, "concurrency_denied")), 1);
    cr_assert_float_eq(json_real_value(json_object_get(sm, "avg_candidates_per_batch")),
                       4.5, 1e-12);
    cr_assert_float_eq(json_real_value(json_object_get(sm, "cache_hit_rate")), 2.0 / 3,
                       1e-12);
    cr_assert_str_eq(json_string_value(json_object_get(sm, "last_model_name")), "sonnet");
    json_decref(o);
}

Test(stats, zero_counters_give_zero_rates_not_nan)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_stats_json(&b, c), ACACHE_OK);
    cr_assert_null(strstr(b.ptr, "NaN"));
    json_t *o = load(&b);
    json_t *sm = json_object_get(json_object_get(o, "data"), "scheduler_metrics");
    cr_assert_float_eq(json_real_value(json_object_get(sm, "avg_candidates_per_batch")),
                       0.0, 0);
    json_decref(o);
}

Test(stats, metrics_text_names_help_and_order)
{
    acache__affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k", 1, 0);
    acache_scheduler_record_batch(c, 12);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_metrics_text(&b, c), ACACHE_OK);
    static const char *names[] = {"cache_scheduler_total_batches",
                                  "cache_scheduler_last_batch_size",
                                  "cache_scheduler_total_candidates",
                                  "cache_scheduler_last_candidate_count",
                                  "cache_scheduler_cache_hits",
                                  "cache_scheduler_cache_misses",
                                  "cache_scheduler_cache_hit_rate",
                                  "cache_scheduler_concurrency_denied",
                                  "cache_scheduler_avg_candidates_per_batch",
                                  "cache_affinity_total",
                                  "cache_affinity_hits",
                                  "cache_affinity_misses",
                                  "cache_affinity_hit_rate",
                                  "cache_affinity_invalidations",
                                  "cache_affinity_provider_switches",
                                  "cache_affinity_key_switches",
                                  "cache_scheduler_info"};
    const char *p = b.ptr;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char help[128], type[128];
        snprintf(help, sizeof help, "# HELP %s ", names[i]);
        snprintf(type, sizeof type, "# TYPE %s gauge\n", names[i]);
        const char *h = strstr(p, help);
        cr_assert_not_null(h, "%s missing or out of order", names[i]);
        cr_assert_not_null(strstr(h, type));
        p = h + 1;
    }
    cr_assert_not_null(strstr(b.ptr, "\ncache_scheduler_last_batch_size 12.0\n"));
    cr_assert_not_null(strstr(b.ptr, "\ncache_affinity_total 1.0\n"));
    cr_assert_not_null(strstr(b.ptr, "# HELP cache_affinity_hits Affinity cache hits\n"));
    cr_assert_not_null(
        strstr(b.ptr, "\ncache_scheduler_info{scheduler=\"cache_aware\"} 1\n"));
    acache_buf_dispose(&b);
}

Test(stats, config_json_shape)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_config_json(&b, c), ACACHE_OK);
    json_t *o = load(&b);
    json_t *d = json_object_get(o, "data");
    cr_assert_eq(json_integer_value(json_object_get(d, "cache_ttl_seconds")), 300);
    json_t *cfg = json_object_get(json_object_get(d, "dynamic_reservation"), "config");
    cr_assert_eq(json_integer_value(json_object_get(cfg, "probe_phase_requests")), 100);
    cr_assert_float_eq(json_real_value(json_object_get(cfg, "stable_max_reservation")),
                       0.35, 0);
    cr_assert_float_eq(json_real_value(json_object_get(cfg, "high_load_threshold")), 0.8,
                       0);
    json_t *desc =
        json_object_get(json_object_get(d, "dynamic_reservation"), "description");
    cr_assert_eq(json_object_size(desc), 6);
    cr_assert_eq(json_object_size(json_object_get(d, "description")), 3);
    json_decref(o);
}

Test(stats, error_json_escapes)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_error_json(&b, "bad \"thing\"\n\xff"), ACACHE_OK);
    json_t *o = load(&b);
    cr_assert(json_is_string(json_object_get(o, "detail")));
    json_decref(o);
    cr_assert_eq(acache_http_status(ACACHE_EINVALID), 422);
    cr_assert_eq(acache_http_status(ACACHE_ESTORE), 503);
    cr_assert_eq(acache_http_status(ACACHE_EUNSUPPORTED), 503);
    cr_assert_eq(acache_http_status(ACACHE_ECATALOG), 500);
}

static void *reserve_many(void *p)
{
    (void)p;
    for (int i = 0; i < 1000; i++) {
        acache_scheduler_record_reservation(c, 0.25, ACACHE_RESERVATION_PROBE, 0.5, 0.5);
        acache_scheduler_record_reservation(c, 0.25, ACACHE_RESERVATION_STABLE, 0.5, 0.5);
    }
    return NULL;
}

static const char *const sched_order[] = {"total_batches",
                                          "last_batch_size",
                                          "total_candidates",
                                          "last_candidate_count",
                                          "cache_hits",
                                          "cache_misses",
                                          "concurrency_denied",
                                          "last_api_format",
                                          "last_model_name",
                                          "last_updated_at",
                                          "reservation_probe_count",
                                          "reservation_stable_count",
                                          "avg_reservation_ratio",
                                          "last_reservation_result",
                                          "cache_hit_rate",
                                          "avg_candidates_per_batch"};

/* Issue 8 item 16: the reservation checks were absent (scheduler_metrics) or
 * frozen at 0/null (dynamic_reservation), with no way to report one. */
Test(stats, reservation_checks_feed_scheduler_metrics_and_dynamic_reservation)
{
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_stats_json(&b, c), ACACHE_OK);
    json_t *o = load(&b);
    json_t *d = json_object_get(o, "data");
    json_t *sm = json_object_get(d, "scheduler_metrics");
    cr_assert_eq(json_integer_value(json_object_get(sm, "reservation_probe_count")), 0);
    cr_assert_eq(json_integer_value(json_object_get(sm, "reservation_stable_count")), 0);
    cr_assert(json_is_real(json_object_get(sm, "avg_reservation_ratio")));
    cr_assert(json_is_null(json_object_get(sm, "last_reservation_result")));
    cr_assert(json_is_null(json_object_get(sm, "last_updated_at")));
    json_t *dr = json_object_get(d, "dynamic_reservation");
    cr_assert(json_is_null(json_object_get(dr, "last_result")));
    cr_assert_eq(json_integer_value(json_object_get(dr, "total_checks")), 0);
    cr_assert_float_eq(json_real_value(json_object_get(dr, "probe_phase_ratio")), 0.0, 0);
    json_decref(o);

    th_set_time(1800000123.5);
    cr_assert_eq(
        acache_scheduler_record_reservation(c, 0.1, ACACHE_RESERVATION_PROBE, 0.2, 0.3),
        ACACHE_OK);
    cr_assert_eq(
        acache_scheduler_record_reservation(c, 0.1, ACACHE_RESERVATION_PROBE, 0.4, 0.6),
        ACACHE_OK);
    cr_assert_eq(acache_scheduler_record_reservation(c, 0.35, ACACHE_RESERVATION_STABLE,
                                                     0.75, 0.9),
                 ACACHE_OK);
    /* Rejected checks change nothing. */
    cr_assert_eq(
        acache_scheduler_record_reservation(c, NAN, ACACHE_RESERVATION_STABLE, 1, 1),
        ACACHE_EINVALID);
    cr_assert_eq(
        acache_scheduler_record_reservation(c, 0.2, (acache_reservation_phase)7, 1, 1),
        ACACHE_EINVALID);
    cr_assert_eq(
        acache_scheduler_record_reservation(NULL, 0.2, ACACHE_RESERVATION_PROBE, 1, 1),
        ACACHE_EINVALID);
    /* avg = 0.1 r + 0.9 avg from 0.0, step by step as Aether's float arithmetic */
    double avg = 0.0;
    avg = 0.1 * 0.1 + 0.9 * avg;
    avg = 0.1 * 0.1 + 0.9 * avg;
    avg = 0.1 * 0.35 + 0.9 * avg;

    cr_assert_eq(acache_stats_json(&b, c), ACACHE_OK);
    o = load(&b);
    d = json_object_get(o, "data");
    sm = json_object_get(d, "scheduler_metrics");
    cr_assert_eq(json_integer_value(json_object_get(sm, "reservation_probe_count")), 2);
    cr_assert_eq(json_integer_value(json_object_get(sm, "reservation_stable_count")), 1);
    cr_assert_eq(json_real_value(json_object_get(sm, "avg_reservation_ratio")), avg);
    cr_assert_float_eq(json_real_value(json_object_get(sm, "last_updated_at")),
                       1800000123.5, 0);
    json_t *last = json_object_get(sm, "last_reservation_result");
    cr_assert_eq(json_object_size(last), 4);
    cr_assert_float_eq(json_real_value(json_object_get(last, "ratio")), 0.35, 0);
    cr_assert_str_eq(json_string_value(json_object_get(last, "phase")), "stable");
    cr_assert_float_eq(json_real_value(json_object_get(last, "confidence")), 0.75, 0);
    cr_assert_float_eq(json_real_value(json_object_get(last, "load_factor")), 0.9, 0);
    /* Field order: the four after last_updated_at, before the derived ones. */
    cr_assert_eq(json_object_size(sm), sizeof sched_order / sizeof sched_order[0]);
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(sm, k, v)
    {
        cr_assert_str_eq(k, sched_order[i], "scheduler_metrics field %zu", i);
        i++;
    }
    dr = json_object_get(d, "dynamic_reservation");
    cr_assert_float_eq(json_real_value(json_object_get(dr, "current_avg_ratio")), 0.052,
                       0, "round(%.17g, 3)", avg);
    cr_assert_float_eq(json_real_value(json_object_get(dr, "probe_phase_ratio")), 0.667,
                       0);
    cr_assert_eq(json_integer_value(json_object_get(dr, "total_checks")), 3);
    cr_assert(json_equal(json_object_get(dr, "last_result"), last));
    json_decref(o);

    /* The dump is in that order too (what HTTP clients see). */
    cr_assert_eq(acache_stats_json(&b, c), ACACHE_OK);
    const char *p = strstr(b.ptr, "\"last_updated_at\"");
    cr_assert_not_null(p);
    for (i = 10; i < sizeof sched_order / sizeof sched_order[0]; i++) {
        char q[64];
        snprintf(q, sizeof q, "\"%s\"", sched_order[i]);
        const char *n = strstr(p, q);
        cr_assert_not_null(n, "%s missing or out of order", sched_order[i]);
        p = n;
    }
    acache_buf_dispose(&b);
}

Test(stats, reservation_checks_from_many_threads_lose_no_count)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, reserve_many, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_stats_json(&b, c), ACACHE_OK);
    json_t *o = load(&b);
    json_t *d = json_object_get(o, "data");
    json_t *sm = json_object_get(d, "scheduler_metrics");
    cr_assert_eq(json_integer_value(json_object_get(sm, "reservation_probe_count")),
                 4000);
    cr_assert_eq(json_integer_value(json_object_get(sm, "reservation_stable_count")),
                 4000);
    json_t *dr = json_object_get(d, "dynamic_reservation");
    cr_assert_eq(json_integer_value(json_object_get(dr, "total_checks")), 8000);
    cr_assert_float_eq(json_real_value(json_object_get(dr, "probe_phase_ratio")), 0.5, 0);
    /* every ratio is 0.25: the average converges to it */
    cr_assert_float_eq(json_real_value(json_object_get(dr, "current_avg_ratio")), 0.25,
                       0);
    json_decref(o);
}
