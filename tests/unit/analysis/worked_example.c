/* usage-analysis.md §4 on the JSON catalog: every expected value, to the digit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <aether_cache/aether_cache.h>

#include "harness.h"
#include "worked_data.h"

static char catalog_path[64];

static void write_catalog(const char *json)
{
    strcpy(catalog_path, "/tmp/acache-analysis-XXXXXX");
    int fd = mkstemp(catalog_path);
    cr_assert(fd >= 0);
    size_t len = strlen(json);
    cr_assert_eq(write(fd, json, len), (ssize_t)len);
    close(fd);
}

static acache *open_with(const char *json)
{
    write_catalog(json);
    th_set_time(WORKED_NOW);
    acache_options o = ACACHE_OPTIONS_INIT;
    o.catalog_uri = catalog_path;
    return th_open(&o);
}

static void done(acache *c)
{
    acache_close(c);
    unlink(catalog_path);
}

#define EXPECT_JSON(call, expected)                                                      \
    do {                                                                                 \
        acache_buf b_ = ACACHE_BUF_INIT;                                                 \
        int rc_ = (call);                                                                \
        cr_assert_eq(rc_, ACACHE_OK, "%s: %s", #call, acache_last_error());              \
        cr_assert_str_eq(b_.ptr, (expected));                                            \
        acache_buf_dispose(&b_);                                                         \
    } while (0)

/* ---- TTL analysis §4.1 ---- */

Test(analysis_worked, ttl_all_groups)
{
    acache *c = open_with(WORKED_EPOCH);
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, NULL, NULL), TTL_ALL);
    /* Empty strings mean "absent", as Aether's truthiness test. */
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, "", ""), TTL_ALL);
    done(c);
}

Test(analysis_worked, ttl_created_at_with_time_zones)
{
    acache *c = open_with(WORKED_ISO);
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, NULL, NULL), TTL_ALL);
    EXPECT_JSON(acache_hit_analysis(&b_, c, 168, NULL, NULL), HIT_ALL);
    EXPECT_JSON(acache_interval_timeline(&b_, c, 24, 10000, NULL, 0), TL_PLAIN);
    done(c);
}

Test(analysis_worked, ttl_by_api_key)
{
    acache *c = open_with(WORKED_EPOCH);
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, NULL, "k-alice"), TTL_KEY);
    /* [C: fix] both given: group by key, keep that user's rows. */
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, "u-alice", "k-alice"), TTL_KEY);
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, "u-bob", "k-alice"), TTL_DAVE);
    done(c);
}

Test(analysis_worked, ttl_user_filter_and_short_window)
{
    acache *c = open_with(WORKED_EPOCH);
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, "u-dave", NULL), TTL_DAVE);
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 1, NULL, NULL), TTL_H1);
    done(c);
}

Test(analysis_worked, ttl_structured_getters)
{
    acache *c = open_with(WORKED_EPOCH);
    acache__ttl_analysis *a = NULL;
    cr_assert_eq(acache__ttl_analysis_compute(&a, c, 168, NULL, NULL), ACACHE_OK);
    cr_assert_eq(acache__ttl_analysis_group_count(a), 5);
    cr_assert_eq(acache__ttl_analysis_ttl_distribution(a, 5), 2);
    cr_assert_eq(acache__ttl_analysis_ttl_distribution(a, 15), 1);
    cr_assert_eq(acache__ttl_analysis_ttl_distribution(a, 30), 1);
    cr_assert_eq(acache__ttl_analysis_ttl_distribution(a, 60), 1);
    cr_assert_eq(acache__ttl_analysis_ttl_distribution(a, 7), 0);
    const acache__ttl_group *bob = acache__ttl_analysis_group_at(a, 1);
    cr_assert_str_eq(acache__ttl_group_id(bob), "u-bob");
    cr_assert_str_eq(acache__ttl_group_username(bob), "bob");
    cr_assert_eq(acache__ttl_group_request_count(bob), 4);
    cr_assert_eq(acache__ttl_group_bucket(bob, ACACHE_TTL_WITHIN_15MIN), 2);
    cr_assert_eq(acache__ttl_group_stat(bob, ACACHE_TTL_P75), 21.25);
    cr_assert_eq(acache__ttl_group_percentage(bob, ACACHE_TTL_WITHIN_30MIN), 50.0);
    cr_assert_eq(acache__ttl_group_recommended_ttl_minutes(bob), 30);
    cr_assert_str_eq(acache__ttl_group_reason(bob),
                     "中频用户：75% 的请求间隔在 21.2 分钟内");
    cr_assert_null(acache__ttl_analysis_group_at(a, 5));
    cr_assert(isnan(acache__ttl_group_stat(bob, 99)));
    acache__ttl_analysis_free(a);
    done(c);
}

/* ---- hit analysis §4.2 ---- */

Test(analysis_worked, hits)
{
    acache *c = open_with(WORKED_EPOCH);
    EXPECT_JSON(acache_hit_analysis(&b_, c, 168, NULL, NULL), HIT_ALL);
    EXPECT_JSON(acache_hit_analysis(&b_, c, 168, "u-alice", "k-alice"), HIT_ALICE_KEY);
    EXPECT_JSON(acache_hit_analysis(&b_, c, 168, "u-nobody", NULL), HIT_NOBODY);
    acache__hit_analysis h = {.version = ACACHE_HIT_ANALYSIS_VERSION};
    cr_assert_eq(acache__hit_analysis_compute(&h, c, 168, NULL, NULL), ACACHE_OK);
    cr_assert_eq(h.total_requests, 24);
    cr_assert_eq(h.estimated_savings_usd, 0.0186);
    acache__hit_analysis bad = {.version = 99};
    cr_assert_eq(acache__hit_analysis_compute(&bad, c, 168, NULL, NULL), ACACHE_EINVALID);
    done(c);
}

/* ---- timeline §4.3 ---- */

Test(analysis_worked, timeline_plain)
{
    acache *c = open_with(WORKED_EPOCH);
    EXPECT_JSON(acache_interval_timeline(&b_, c, 24, 10000, NULL, 0), TL_PLAIN);
    /* include_user_info with a user_id is plain mode too. */
    acache__timeline *t = NULL;
    cr_assert_eq(acache__timeline_compute(&t, c, 24, 10000, "u-carol", 1), ACACHE_OK);
    cr_assert_eq(acache__timeline_multi_user(t), 0);
    cr_assert_eq(acache__timeline_point_count(t), 2);
    cr_assert_eq(acache__timeline_point_y(t, 0), 90.0);
    cr_assert_eq(acache__timeline_point_y(t, 1), 45.0);
    acache__timeline_free(t);
    done(c);
}

Test(analysis_worked, timeline_limit_keeps_oldest)
{
    acache *c = open_with(WORKED_EPOCH);
    EXPECT_JSON(acache_interval_timeline(&b_, c, 24, 5, NULL, 0), TL_FIVE);
    done(c);
}

Test(analysis_worked, timeline_multi_user)
{
    acache *c = open_with(WORKED_EPOCH);
    EXPECT_JSON(acache_interval_timeline(&b_, c, 24, 10000, NULL, 1), TL_MULTI);
    EXPECT_JSON(acache_interval_timeline(&b_, c, 24, 10000, "", 1), TL_MULTI);
    acache__timeline *t = NULL;
    cr_assert_eq(acache__timeline_compute(&t, c, 24, 10000, NULL, 1), ACACHE_OK);
    cr_assert_eq(acache__timeline_user_count(t), 6);
    cr_assert_str_eq(acache__timeline_user_id(t, 0), "u-carol");
    cr_assert_str_eq(acache__timeline_user_name(t, 5), "erin");
    cr_assert_eq(acache__timeline_model_count(t), 3);
    cr_assert_str_eq(acache__timeline_model_at(t, 0), "claude-haiku-4");
    cr_assert_str_eq(acache__timeline_point_x(t, 0), "2027-01-14T23:30:00+00:00");
    acache__timeline_free(t);
    done(c);
}
