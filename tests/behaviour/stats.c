/* Stats, scheduler counters, Prometheus text and config JSON (admin-api.md). */
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
    acache_affinity_clear_all(&n, c);
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
    acache_affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k", 1, 0);
    acache_affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k2", 1, 0);
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
    cr_assert_float_eq(json_real_value(json_object_get(d, "cache_reservation_ratio")), 0.1, 1e-12);
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
    cr_assert_float_eq(json_real_value(json_object_get(as, "cache_hit_rate")), 1.0 / 3, 1e-12);
    cr_assert_eq(json_integer_value(json_object_get(as, "active_affinities")), 1);
    cr_assert_eq(json_integer_value(json_object_get(as, "provider_switches")), 0);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(as, "config"), "default_ttl")),
                 300);
    json_t *sm = json_object_get(d, "scheduler_metrics");
    cr_assert_eq(json_integer_value(json_object_get(sm, "total_batches")), 2);
    cr_assert_eq(json_integer_value(json_object_get(sm, "last_batch_size")), 2);
    cr_assert_eq(json_integer_value(json_object_get(sm, "total_candidates")), 9);
    cr_assert_eq(json_integer_value(json_object_get(sm, "last_candidate_count")), 3);
    cr_assert_eq(json_integer_value(json_object_get(sm, "concurrency_denied")), 1);
    cr_assert_float_eq(json_real_value(json_object_get(sm, "avg_candidates_per_batch")), 4.5, 1e-12);
    cr_assert_float_eq(json_real_value(json_object_get(sm, "cache_hit_rate")), 2.0 / 3, 1e-12);
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
    cr_assert_float_eq(json_real_value(json_object_get(sm, "avg_candidates_per_batch")), 0.0, 0);
    json_decref(o);
}

Test(stats, metrics_text_names_help_and_order)
{
    acache_affinity_set(NULL, c, "ak", "claude", "m", "p", "e", "k", 1, 0);
    acache_scheduler_record_batch(c, 12);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_metrics_text(&b, c), ACACHE_OK);
    static const char *names[] = {
        "cache_scheduler_total_batches", "cache_scheduler_last_batch_size",
        "cache_scheduler_total_candidates", "cache_scheduler_last_candidate_count",
        "cache_scheduler_cache_hits", "cache_scheduler_cache_misses",
        "cache_scheduler_cache_hit_rate", "cache_scheduler_concurrency_denied",
        "cache_scheduler_avg_candidates_per_batch", "cache_affinity_total",
        "cache_affinity_hits", "cache_affinity_misses", "cache_affinity_hit_rate",
        "cache_affinity_invalidations", "cache_affinity_provider_switches",
        "cache_affinity_key_switches", "cache_scheduler_info"};
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
    cr_assert_not_null(strstr(b.ptr, "\ncache_scheduler_info{scheduler=\"cache_aware\"} 1\n"));
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
    cr_assert_float_eq(json_real_value(json_object_get(cfg, "stable_max_reservation")), 0.35, 0);
    cr_assert_float_eq(json_real_value(json_object_get(cfg, "high_load_threshold")), 0.8, 0);
    json_t *desc = json_object_get(json_object_get(d, "dynamic_reservation"), "description");
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
