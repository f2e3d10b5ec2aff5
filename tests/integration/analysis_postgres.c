/* usage-analysis.md §4 on a real PostgreSQL (the SQL path): the same
 * expected bodies as on the JSON catalog. Run through with-postgres.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <aether_cache/aether_cache.h>

#include "../unit/analysis/worked_data.h"
#include "analysis/results.h"
#include "catalog/postgres.h"
#include "core/core.h"
#include "pg_server.h"

static double fixed_clock(void *payload)
{
    (void)payload;
    return WORKED_NOW;
}

typedef struct pgfix {
    char *uri;
    acache *c;
} pgfix;

/* A fresh database seeded with `catalog_json`; the session time zone is set
 * far from UTC to show the output does not depend on it. */
static pgfix pg_open(const char *catalog_json)
{
    pgfix f = {0};
    f.uri = acache_test_pg_new_db(NULL);
    char path[] = "/tmp/acache-pgseed-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, catalog_json, strlen(catalog_json)),
                 (ssize_t)strlen(catalog_json));
    close(fd);
    acache_test_pg_seed_json(f.uri, path);
    unlink(path);
    acache_test_pg_exec(f.uri, "DO $$ BEGIN EXECUTE 'ALTER DATABASE ' || "
                               "quote_ident(current_database()) || "
                               "' SET timezone = ''Asia/Shanghai'''; END $$;");
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = "memory://";
    o.catalog_uri = f.uri;
    o.clock = fixed_clock;
    cr_assert_eq(acache_open(&f.c, &o), ACACHE_OK, "%s", acache_last_error());
    cr_assert(acache__catalog_is_postgres(acache_handle_catalog(f.c)));
    return f;
}

static void pg_close(pgfix *f)
{
    acache_close(f->c);
    acache_test_pg_drop_db(f->uri);
}

#define EXPECT_JSON(call, expected)                                                      \
    do {                                                                                 \
        acache_buf b_ = ACACHE_BUF_INIT;                                                 \
        int rc_ = (call);                                                                \
        cr_assert_eq(rc_, ACACHE_OK, "%s: %s", #call, acache_last_error());              \
        cr_assert_str_eq(b_.ptr, (expected));                                            \
        acache_buf_dispose(&b_);                                                         \
    } while (0)

Test(analysis_postgres, ttl, .timeout = 60)
{
    pgfix f = pg_open(WORKED_EPOCH);
    acache *c = f.c;
    unsigned long before = acache__pg_statement_count(acache_handle_catalog(c));
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, NULL, NULL), TTL_ALL);
    /* one aggregate query plus one batched users look-up */
    cr_assert_eq(acache__pg_statement_count(acache_handle_catalog(c)) - before, 2);
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, NULL, "k-alice"), TTL_KEY);
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, "u-alice", "k-alice"), TTL_KEY);
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, "u-dave", ""), TTL_DAVE);
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 1, NULL, NULL), TTL_H1);
    pg_close(&f);
}

Test(analysis_postgres, hits, .timeout = 60)
{
    pgfix f = pg_open(WORKED_EPOCH);
    acache *c = f.c;
    EXPECT_JSON(acache_hit_analysis(&b_, c, 168, NULL, NULL), HIT_ALL);
    EXPECT_JSON(acache_hit_analysis(&b_, c, 168, "u-alice", "k-alice"), HIT_ALICE_KEY);
    EXPECT_JSON(acache_hit_analysis(&b_, c, 168, "u-nobody", NULL), HIT_NOBODY);
    pg_close(&f);
}

Test(analysis_postgres, timeline, .timeout = 60)
{
    pgfix f = pg_open(WORKED_EPOCH);
    acache *c = f.c;
    EXPECT_JSON(acache_interval_timeline(&b_, c, 24, 10000, NULL, 0), TL_PLAIN);
    EXPECT_JSON(acache_interval_timeline(&b_, c, 24, 5, NULL, 0), TL_FIVE);
    EXPECT_JSON(acache_interval_timeline(&b_, c, 24, 10000, NULL, 1), TL_MULTI);
    pg_close(&f);
}

Test(analysis_postgres, created_at_with_offsets, .timeout = 60)
{
    pgfix f = pg_open(WORKED_ISO);
    acache *c = f.c;
    EXPECT_JSON(acache_ttl_analysis(&b_, c, 168, NULL, NULL), TTL_ALL);
    EXPECT_JSON(acache_interval_timeline(&b_, c, 24, 10000, NULL, 1), TL_MULTI);
    pg_close(&f);
}

Test(analysis_postgres, sampling_overshoot, .timeout = 60)
{
    /* user A: 200 requests 1 minute apart; B and C: 2 each (§4.3 vector). */
    size_t cap = 64 * 1024, n = 0;
    char *json = malloc(cap);
    n += (size_t)snprintf(json + n, cap - n,
                          "{\"users\": [{\"id\": \"ua\", \"username\": \"a\", \"email\": "
                          "\"a@x\"}, {\"id\": \"ub\", \"username\": \"b\", \"email\": "
                          "\"b@x\"}, {\"id\": \"uc\", \"username\": \"\", \"email\": "
                          "\"c@x\"}], \"usage\": [");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(
            json + n, cap - n,
            "{\"id\": \"a%03d\", \"user_id\": \"ua\", \"model\": \"m1\", "
            "\"created_at\": %.0f},",
            i, WORKED_NOW - (600 - i) * 60);
    n += (size_t)snprintf(
        json + n, cap - n,
        "{\"id\": \"b1\", \"user_id\": \"ub\", \"model\": \"m2\", \"created_at\": %.0f},"
        "{\"id\": \"b2\", \"user_id\": \"ub\", \"model\": \"m2\", \"created_at\": %.0f},"
        "{\"id\": \"c1\", \"user_id\": \"uc\", \"model\": \"\", \"created_at\": %.0f},"
        "{\"id\": \"c2\", \"user_id\": \"uc\", \"model\": \"\", \"created_at\": %.0f}]}",
        WORKED_NOW - 6000, WORKED_NOW - 5940, WORKED_NOW - 3000, WORKED_NOW - 2940);
    pgfix f = pg_open(json);
    free(json);
    acache__timeline *t = NULL;
    cr_assert_eq(acache__timeline_compute(&t, f.c, 24, 100, NULL, 1), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_eq(acache__timeline_point_count(t), 102);
    cr_assert_str_eq(acache__timeline_point_user_id(t, 101), "uc");
    cr_assert_null(acache__timeline_point_model(t, 101));
    cr_assert_eq(acache__timeline_model_count(t), 2);
    /* uc's username is empty: left out of "users", its points keep user_id */
    cr_assert_eq(acache__timeline_user_count(t), 2);
    cr_assert_str_eq(acache__timeline_user_id(t, 1), "ub");
    acache__timeline_free(t);
    cr_assert_eq(acache__timeline_compute(&t, f.c, 24, 100, NULL, 0), ACACHE_OK);
    cr_assert_eq(acache__timeline_point_count(t), 100);
    cr_assert_eq(acache__timeline_model_count(t), 1);
    acache__timeline_free(t);
    pg_close(&f);
}

/* Issue 8 item 15 on the SQL path: exact decimal average, then rounding
 * (6 s + 837 s -> 7.03; 3 s + 6 s -> 0.07), as Aether's numeric avg. */
Test(analysis_postgres, average_is_exact_decimal, .timeout = 60)
{
    char json[1024];
    double t0 = WORKED_NOW - 3600;
    snprintf(
        json, sizeof json,
        "{\"users\": [{\"id\": \"u1\", \"username\": \"one\", \"email\": \"1@x\"},"
        " {\"id\": \"u2\", \"username\": \"two\", \"email\": \"2@x\"}],"
        " \"usage\": ["
        "{\"id\": \"a0\", \"user_id\": \"u1\", \"model\": \"m\", \"created_at\": %.0f},"
        "{\"id\": \"a1\", \"user_id\": \"u1\", \"model\": \"m\", \"created_at\": %.0f},"
        "{\"id\": \"a2\", \"user_id\": \"u1\", \"model\": \"m\", \"created_at\": %.0f},"
        "{\"id\": \"b0\", \"user_id\": \"u2\", \"model\": \"m\", \"created_at\": %.0f},"
        "{\"id\": \"b1\", \"user_id\": \"u2\", \"model\": \"m\", \"created_at\": %.0f},"
        "{\"id\": \"b2\", \"user_id\": \"u2\", \"model\": \"m\", \"created_at\": %.0f}]}",
        t0, t0 + 6, t0 + 843, t0, t0 + 3, t0 + 9);
    pgfix f = pg_open(json);
    acache__ttl_analysis *a = NULL;
    cr_assert_eq(acache__ttl_analysis_compute(&a, f.c, 24, NULL, NULL), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_eq(acache__ttl_analysis_group_count(a), 2);
    const acache__ttl_group *g1 = acache__ttl_analysis_group_at(a, 0);
    const acache__ttl_group *g2 = acache__ttl_analysis_group_at(a, 1);
    cr_assert_str_eq(acache__ttl_group_id(g1), "u1");
    cr_assert_eq(acache__ttl_group_stat(g1, ACACHE_TTL_AVG), 7.03);
    cr_assert_eq(acache__ttl_group_stat(g2, ACACHE_TTL_AVG), 0.07);
    /* min/max/percentiles stay double, as in Aether */
    cr_assert_eq(acache__ttl_group_stat(g1, ACACHE_TTL_MAX), 13.95);
    acache__ttl_analysis_free(a);
    pg_close(&f);
}
