/* Usage analyses: rounding and percentile rules, boundaries, ties, sampling,
 * empty data and argument checks (usage-analysis.md §0-§3), JSON catalog. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include <aether_cache/aether_cache.h>

#include "analysis/analysis.h"
#include "harness.h"

#define NOW 1800000000.0

static char path[64];

/* A catalog whose usage rows come from `usage` (a JSON array, stolen). */
static acache *open_usage(json_t *users, json_t *usage)
{
    json_t *root = json_object();
    json_object_set_new(root, "users", users ? users : json_array());
    json_object_set_new(root, "usage", usage);
    strcpy(path, "/tmp/acache-analysis-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);
    th_set_time(NOW);
    acache_options o = ACACHE_OPTIONS_INIT;
    o.catalog_uri = path;
    return th_open(&o);
}

static void done(acache *c)
{
    acache_close(c);
    unlink(path);
}

static json_t *row(const char *id, const char *user, const char *key, const char *model,
                   double created_at)
{
    json_t *r = json_pack("{s:s, s:s?, s:s?, s:s, s:s, s:f}", "id", id, "user_id", user,
                          "api_key_id", key, "model", model, "status", "completed",
                          "created_at", created_at);
    cr_assert_not_null(r);
    return r;
}

static char *json_of(int rc, acache_buf *b)
{
    cr_assert_eq(rc, ACACHE_OK, "%s", acache_last_error());
    return b->ptr;
}

/* ---- §0 rounding and percentile ---- */

Test(analysis_rules, python_rounding)
{
    cr_assert_eq(acache__round_py(2.125, 2), 2.12);
    cr_assert_eq(acache__round_py(2.675, 2), 2.67);
    cr_assert_eq(acache__round_py(21.25, 1), 21.2);
    cr_assert_eq(acache__round_py(13.75, 1), 13.8);
    cr_assert_eq(acache__round_py(6.25, 1), 6.2);
    cr_assert_eq(acache__round_py(0.001, 2), 0.0);
    cr_assert_eq(acache__round_py(200.0 / 3.0, 1), 66.7);
    char buf[32];
    acache__fmt_fixed(buf, sizeof buf, 1, 21.25);
    cr_assert_str_eq(buf, "21.2");
}

Test(analysis_rules, percentile_cont)
{
    const double a[] = {2, 4.5, 8};
    cr_assert_eq(acache__percentile_cont(a, 3, 0.5), 4.5);
    cr_assert_eq(acache__percentile_cont(a, 3, 0.75), 6.25);
    cr_assert_eq(acache__round_py(acache__percentile_cont(a, 3, 0.9), 2), 7.3);
    const double b[] = {1, 5.0 / 3.0, 2, 10};
    cr_assert_eq(acache__percentile_cont(b, 4, 0.9), 7.600000000000001);
    const double one[] = {3.5};
    cr_assert_eq(acache__percentile_cont(one, 1, 0.9), 3.5);
}

Test(analysis_rules, iso_timestamps)
{
    char buf[48];
    acache__fmt_iso_utc(buf, sizeof buf, 1800000000LL * 1000000);
    cr_assert_str_eq(buf, "2027-01-15T08:00:00+00:00");
    acache__fmt_iso_utc(buf, sizeof buf, 1800000000LL * 1000000 + 1230);
    cr_assert_str_eq(buf, "2027-01-15T08:00:00.001230+00:00");
    acache__fmt_iso_utc(buf, sizeof buf, -1);
    cr_assert_str_eq(buf, "1969-12-31T23:59:59.999999+00:00");
}

/* ---- arguments ---- */

Test(analysis_args, no_catalog_is_unsupported)
{
    th_set_time(NOW);
    acache *c = th_open(NULL);
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_ttl_analysis(&b, c, 24, NULL, NULL), ACACHE_EUNSUPPORTED);
    cr_assert_eq(acache_hit_analysis(&b, c, 24, NULL, NULL), ACACHE_EUNSUPPORTED);
    cr_assert_eq(acache_interval_timeline(&b, c, 24, 100, NULL, 0), ACACHE_EUNSUPPORTED);
    cr_assert_null(b.ptr);
    acache_close(c);
}

Test(analysis_args, ranges)
{
    acache *c = open_usage(NULL, json_array());
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_ttl_analysis(&b, c, 0, NULL, NULL), ACACHE_EINVALID);
    cr_assert_eq(acache_ttl_analysis(&b, c, 721, NULL, NULL), ACACHE_EINVALID);
    cr_assert_eq(acache_hit_analysis(&b, c, -1, NULL, NULL), ACACHE_EINVALID);
    cr_assert_eq(acache_interval_timeline(&b, c, 24, 0, NULL, 0), ACACHE_EINVALID);
    cr_assert_eq(acache_interval_timeline(&b, c, 24, 50001, NULL, 0), ACACHE_EINVALID);
    cr_assert_eq(acache_interval_timeline(&b, c, 721, 100, NULL, 0), ACACHE_EINVALID);
    cr_assert_eq(acache_ttl_analysis(&b, c, 720, NULL, NULL), ACACHE_OK);
    acache_buf_dispose(&b);
    cr_assert_eq(acache_ttl_analysis(NULL, c, 24, NULL, NULL), ACACHE_EINVALID);
    done(c);
}

/* ---- empty data ---- */

Test(analysis_empty, zero_rows)
{
    acache *c = open_usage(NULL, json_array());
    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_str_eq(json_of(acache_ttl_analysis(&b, c, 168, NULL, NULL), &b),
                     "{\"analysis_period_hours\": 168, \"total_users_analyzed\": 0, "
                     "\"ttl_distribution\": {\"5min\": 0, \"15min\": 0, \"30min\": 0, "
                     "\"60min\": 0}, \"users\": []}");
    cr_assert_str_eq(
        json_of(acache_interval_timeline(&b, c, 24, 100, NULL, 0), &b),
        "{\"analysis_period_hours\": 24, \"total_points\": 0, \"points\": []}");
    cr_assert_str_eq(
        json_of(acache_interval_timeline(&b, c, 24, 100, NULL, 1), &b),
        "{\"analysis_period_hours\": 24, \"total_points\": 0, \"points\": [], "
        "\"users\": {}}");
    cr_assert_str_eq(
        json_of(acache_hit_analysis(&b, c, 5, NULL, NULL), &b),
        "{\"analysis_period_hours\": 5, \"total_requests\": 0, "
        "\"requests_with_cache_hit\": 0, \"request_cache_hit_rate\": 0, "
        "\"total_input_tokens\": 0, \"total_cache_read_tokens\": 0, "
        "\"total_cache_creation_tokens\": 0, \"token_cache_hit_rate\": 0.0, "
        "\"total_cache_read_cost_usd\": 0.0, "
        "\"total_cache_creation_cost_usd\": 0.0, \"estimated_savings_usd\": 0.0}");
    acache_buf_dispose(&b);
    done(c);
}

/* ---- boundaries ---- */

Test(analysis_bounds, buckets_closed_on_the_right)
{
    /* gaps 5, 15, 30, 60, 60.5 minutes -> one per bucket */
    double t = NOW - 200 * 60;
    double gaps[] = {0, 5, 15, 30, 60, 60.5};
    json_t *u = json_array();
    char id[8];
    for (int i = 0; i < 6; i++) {
        t += gaps[i] * 60;
        snprintf(id, sizeof id, "r%d", i);
        json_array_append_new(u, row(id, "u1", "k1", "m", t));
    }
    acache *c = open_usage(NULL, u);
    acache__ttl_analysis *a = NULL;
    cr_assert_eq(acache__ttl_analysis_compute(&a, c, 24, NULL, NULL), ACACHE_OK);
    const acache__ttl_group *g = acache__ttl_analysis_group_at(a, 0);
    for (int k = 0; k < 5; k++) {
        cr_assert_eq(acache__ttl_group_bucket(g, k), 1, "bucket %d", k);
        cr_assert_eq(acache__ttl_group_percentage(g, k), 20.0);
    }
    /* no users row: username/email null */
    cr_assert_null(acache__ttl_group_username(g));
    cr_assert_null(acache__ttl_group_email(g));
    cr_assert_eq(acache__ttl_group_recommended_ttl_minutes(g), 60);
    acache__ttl_analysis_free(a);
    done(c);
}

Test(analysis_bounds, window_start_strict_vs_inclusive)
{
    json_t *u = json_array();
    /* r0 exactly at the window start (hours=1), then three more */
    json_array_append_new(u, row("r0", "u1", "k1", "m", NOW - 3600));
    json_array_append_new(u, row("r1", "u1", "k1", "m", NOW - 3000));
    json_array_append_new(u, row("r2", "u1", "k1", "m", NOW - 2400));
    json_array_append_new(u, row("r3", "u1", "k1", "m", NOW - 1800));
    acache *c = open_usage(NULL, u);
    acache__hit_analysis h = {.version = ACACHE_HIT_ANALYSIS_VERSION};
    cr_assert_eq(acache__hit_analysis_compute(&h, c, 1, NULL, NULL), ACACHE_OK);
    cr_assert_eq(h.total_requests, 4); /* >= start */
    acache__ttl_analysis *a = NULL;
    cr_assert_eq(acache__ttl_analysis_compute(&a, c, 1, NULL, NULL), ACACHE_OK);
    /* > start: r0 is out, so 2 intervals, not 3 */
    cr_assert_eq(acache__ttl_group_request_count(acache__ttl_analysis_group_at(a, 0)), 2);
    acache__ttl_analysis_free(a);
    acache__timeline *t = NULL;
    cr_assert_eq(acache__timeline_compute(&t, c, 1, 100, NULL, 0), ACACHE_OK);
    cr_assert_eq(acache__timeline_point_count(t), 2);
    acache__timeline_free(t);
    done(c);
}

Test(analysis_bounds, timeline_drops_gaps_over_120_minutes)
{
    json_t *u = json_array();
    json_array_append_new(u, row("r0", "u1", "k1", "m", NOW - 600 * 60));
    json_array_append_new(u,
                          row("r1", "u1", "k1", "m", NOW - 480 * 60)); /* 120.0: kept */
    json_array_append_new(
        u, row("r2", "u1", "k1", "m", NOW - 359.5 * 60)); /* 120.5: dropped */
    json_array_append_new(u,
                          row("r3", "u1", "k1", "m", NOW - 359 * 60)); /* 0.5 from r2 */
    acache *c = open_usage(NULL, u);
    acache__timeline *t = NULL;
    cr_assert_eq(acache__timeline_compute(&t, c, 24, 100, NULL, 0), ACACHE_OK);
    cr_assert_eq(acache__timeline_point_count(t), 2);
    cr_assert_eq(acache__timeline_point_y(t, 0), 120.0);
    cr_assert_eq(acache__timeline_point_y(t, 1), 0.5);
    acache__timeline_free(t);
    /* the TTL analysis keeps it (over_60min) */
    acache__ttl_analysis *a = NULL;
    cr_assert_eq(acache__ttl_analysis_compute(&a, c, 24, NULL, NULL), ACACHE_OK);
    cr_assert_eq(acache__ttl_group_bucket(acache__ttl_analysis_group_at(a, 0),
                                          ACACHE_TTL_OVER_60MIN),
                 2);
    acache__ttl_analysis_free(a);
    done(c);
}

Test(analysis_bounds, microseconds_in_x)
{
    json_t *u = json_array();
    json_array_append_new(u, row("r0", "u1", "k1", "m", NOW - 60));
    json_array_append_new(u, row("r1", "u1", "k1", "m", NOW - 30.25));
    acache *c = open_usage(NULL, u);
    acache__timeline *t = NULL;
    cr_assert_eq(acache__timeline_compute(&t, c, 1, 100, NULL, 0), ACACHE_OK);
    cr_assert_str_eq(acache__timeline_point_x(t, 0), "2027-01-15T07:59:29.750000+00:00");
    cr_assert_eq(acache__timeline_point_y(t, 0), 0.5); /* 29.75 s = 0.4958 min */
    acache__timeline_free(t);
    done(c);
}

/* ---- ties ---- */

Test(analysis_ties, groups_by_id_and_rows_by_usage_id)
{
    json_t *u = json_array();
    /* u-b and u-a both have 2 intervals; u-a must come first. Equal
     * created_at rows give 0-minute intervals, ordered by usage.id. */
    json_array_append_new(u, row("b1", "u-b", "kb", "m", NOW - 300));
    json_array_append_new(u, row("b2", "u-b", "kb", "m", NOW - 200));
    json_array_append_new(u, row("b3", "u-b", "kb", "m", NOW - 100));
    json_array_append_new(u, row("a3", "u-a", "ka", "z", NOW - 50));
    json_array_append_new(u, row("a1", "u-a", "ka", "m", NOW - 50));
    json_array_append_new(u, row("a2", "u-a", "ka", "y", NOW - 50));
    json_t *users =
        json_pack("[{s:s, s:s, s:s}]", "id", "u-a", "username", "a", "email", "");
    acache *c = open_usage(users, u);
    acache__ttl_analysis *a = NULL;
    cr_assert_eq(acache__ttl_analysis_compute(&a, c, 1, NULL, NULL), ACACHE_OK);
    cr_assert_str_eq(acache__ttl_group_id(acache__ttl_analysis_group_at(a, 0)), "u-a");
    cr_assert_str_eq(acache__ttl_group_email(acache__ttl_analysis_group_at(a, 0)), "");
    cr_assert_str_eq(acache__ttl_group_id(acache__ttl_analysis_group_at(a, 1)), "u-b");
    /* all-zero intervals: 0.0 (not null), TTL 5, reason with 0.0 */
    const acache__ttl_group *ga = acache__ttl_analysis_group_at(a, 0);
    cr_assert_eq(acache__ttl_group_stat(ga, ACACHE_TTL_MIN), 0.0);
    cr_assert_str_eq(acache__ttl_group_reason(ga),
                     "高频用户：90% 的请求间隔在 0.0 分钟内");
    acache__ttl_analysis_free(a);
    acache__timeline *t = NULL;
    cr_assert_eq(acache__timeline_compute(&t, c, 1, 100, NULL, 1), ACACHE_OK);
    /* u-b's points (earlier) first; then u-a's tied points by id: a2, a3 */
    cr_assert_eq(acache__timeline_point_count(t), 4);
    cr_assert_str_eq(acache__timeline_point_model(t, 2), "y");
    cr_assert_str_eq(acache__timeline_point_model(t, 3), "z");
    /* users map: only named users (u-b has no users row) */
    cr_assert_eq(acache__timeline_user_count(t), 1);
    cr_assert_str_eq(acache__timeline_user_id(t, 0), "u-a");
    acache__timeline_free(t);
    done(c);
}

/* ---- §4.3 sampling vector ---- */

static acache *open_sampling(void)
{
    json_t *u = json_array();
    char id[16];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "a%03d", i);
        json_array_append_new(u, row(id, "user-a", "ka", "m1", NOW - (600 - i) * 60));
    }
    json_array_append_new(u, row("b1", "user-b", "kb", "m2", NOW - 100 * 60));
    json_array_append_new(u, row("b2", "user-b", "kb", "m2", NOW - 99 * 60));
    json_array_append_new(u, row("c1", "user-c", "kc", "", NOW - 50 * 60));
    json_array_append_new(u, row("c2", "user-c", "kc", "", NOW - 49 * 60));
    json_t *users = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "id", "user-c",
                              "username", "carl", "email", "c@x", "id", "user-a",
                              "username", "ann", "email", "a@x");
    return open_usage(users, u);
}

Test(analysis_sampling, multi_user_overshoots_limit)
{
    acache *c = open_sampling();
    acache__timeline *t = NULL;
    cr_assert_eq(acache__timeline_compute(&t, c, 24, 100, NULL, 1), ACACHE_OK);
    cr_assert_eq(acache__timeline_point_count(t), 102);
    cr_assert_str_eq(acache__timeline_point_user_id(t, 99), "user-a");
    cr_assert_str_eq(acache__timeline_point_user_id(t, 100), "user-b");
    cr_assert_str_eq(acache__timeline_point_user_id(t, 101), "user-c");
    cr_assert_null(acache__timeline_point_model(t, 101));
    cr_assert_eq(acache__timeline_model_count(t), 2);
    cr_assert_str_eq(acache__timeline_model_at(t, 1), "m2");
    acache__timeline_free(t);

    acache_buf b = ACACHE_BUF_INIT;
    cr_assert_eq(acache_interval_timeline(&b, c, 24, 100, NULL, 1), ACACHE_OK);
    const char *tail = b.ptr + b.size - 80;
    cr_assert(strstr(b.ptr, "\"users\": {\"user-a\": \"ann\", \"user-c\": \"carl\"}, "
                            "\"models\": [\"m1\", \"m2\"]}") != NULL,
              "%s", tail);
    /* user-c's point has no model key */
    cr_assert(strstr(b.ptr, "\"user_id\": \"user-c\"}") != NULL);
    acache_buf_dispose(&b);
    done(c);
}

Test(analysis_sampling, plain_keeps_oldest)
{
    acache *c = open_sampling();
    acache__timeline *t = NULL;
    cr_assert_eq(acache__timeline_compute(&t, c, 24, 100, NULL, 0), ACACHE_OK);
    cr_assert_eq(acache__timeline_point_count(t), 100);
    cr_assert_str_eq(acache__timeline_point_user_id(t, 99), "user-a");
    cr_assert_eq(acache__timeline_model_count(t), 1);
    cr_assert_str_eq(acache__timeline_model_at(t, 0), "m1");
    acache__timeline_free(t);
    /* limit above T keeps everything: 199 + 1 + 1 */
    cr_assert_eq(acache__timeline_compute(&t, c, 24, 50000, NULL, 1), ACACHE_OK);
    cr_assert_eq(acache__timeline_point_count(t), 201);
    acache__timeline_free(t);
    done(c);
}

Test(analysis_bounds, window_start_exact_to_the_microsecond)
{
    /* A wall clock has microseconds: the boundary row must still be in for
     * the hit analysis (>=) and out for the other two (>), for any fraction. */
    static const double fracs[] = {0.123457, 0.999999, 0.000001, 0.5, 0.1, 0.7};
    for (size_t k = 0; k < sizeof fracs / sizeof *fracs; k++) {
        double now = NOW + fracs[k];
        json_t *u = json_array();
        json_array_append_new(u, row("r0", "u1", "k1", "m", now - 3600));
        json_array_append_new(u, row("r1", "u1", "k1", "m", now - 3000));
        json_array_append_new(u, row("r2", "u1", "k1", "m", now - 2400));
        json_array_append_new(u, row("r3", "u1", "k1", "m", now - 1800));
        acache *c = open_usage(NULL, u);
        th_set_time(now);
        acache__hit_analysis h = {.version = ACACHE_HIT_ANALYSIS_VERSION};
        cr_assert_eq(acache__hit_analysis_compute(&h, c, 1, NULL, NULL), ACACHE_OK);
        cr_assert_eq(h.total_requests, 4, "frac %f", fracs[k]);
        acache__timeline *t = NULL;
        cr_assert_eq(acache__timeline_compute(&t, c, 1, 100, NULL, 0), ACACHE_OK);
        cr_assert_eq(acache__timeline_point_count(t), 2, "frac %f", fracs[k]);
        acache__timeline_free(t);
        done(c);
    }
}

/* Issue 8 item 15: Aether averages the gaps in exact decimal, then rounds.
 * u1: 6 s + 837 s -> 7.025 exactly -> 7.03 (a double sum of minutes gives
 * 7.0249999... -> 7.02). u2: 3 s + 6 s -> 0.075 exactly, whose nearest double
 * is below it -> 0.07 (the double sum 0.07500000000000001 gave 0.08). */
Test(analysis_ties, average_is_exact_decimal)
{
    double t0 = NOW - 3600;
    json_t *u = json_array();
    json_array_append_new(u, row("a0", "u1", "k1", "m", t0));
    json_array_append_new(u, row("a1", "u1", "k1", "m", t0 + 6));
    json_array_append_new(u, row("a2", "u1", "k1", "m", t0 + 843));
    json_array_append_new(u, row("b0", "u2", "k2", "m", t0));
    json_array_append_new(u, row("b1", "u2", "k2", "m", t0 + 3));
    json_array_append_new(u, row("b2", "u2", "k2", "m", t0 + 9));
    acache *c = open_usage(NULL, u);
    acache__ttl_analysis *a = NULL;
    cr_assert_eq(acache__ttl_analysis_compute(&a, c, 24, NULL, NULL), ACACHE_OK);
    cr_assert_eq(acache__ttl_analysis_group_count(a), 2);
    const acache__ttl_group *g1 = acache__ttl_analysis_group_at(a, 0);
    const acache__ttl_group *g2 = acache__ttl_analysis_group_at(a, 1);
    cr_assert_str_eq(acache__ttl_group_id(g1), "u1");
    cr_assert_eq(acache__ttl_group_stat(g1, ACACHE_TTL_AVG), 7.03);
    cr_assert_eq(acache__ttl_group_stat(g2, ACACHE_TTL_AVG), 0.07);
    acache__ttl_analysis_free(a);
    acache_buf b = ACACHE_BUF_INIT;
    char *j = json_of(acache_ttl_analysis(&b, c, 24, "u1", NULL), &b);
    cr_assert(strstr(j, "\"avg_interval_minutes\": 7.03,") != NULL, "%s", j);
    acache_buf_dispose(&b);
    done(c);
}
