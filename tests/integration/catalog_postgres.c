/* PostgreSQL catalog: the shared catalog suite on a real server, plus what
 * only a server can show (statement counts, connection loss, streaming). */
#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <aether_cache/aether_cache.h>

#include "admin/listing_priv.h"
#include "analysis/results.h"
#include "catalog/internal.h"
#include "catalog/postgres.h"
#include "catalog_suite.h"
#include "core/core.h"
#include "pg_server.h"

static acache_catalog *g_cat;
static char *g_uri;

static void open_catalog(const char *uri)
{
    int rc = acache__catalog_open(&g_cat, uri);
    cr_assert_eq(rc, ACACHE_OK, "open: %s", acache_last_error());
    cr_assert_str_eq(g_cat->scheme, "postgresql");
    cr_assert(acache__catalog_is_postgres(g_cat));
}

static void setup(void)
{
    g_uri = acache_test_pg_new_db(NULL);
    acache_test_pg_seed_json(g_uri, ACACHE_CATALOG_SEED);
    open_catalog(g_uri);
}

static void teardown(void)
{
    if (g_cat)
        g_cat->free(g_cat);
    g_cat = NULL;
    acache_test_pg_drop_db(g_uri);
    g_uri = NULL;
}

#define T(name)                                                                          \
    Test(catalog_postgres, name, .init = setup, .fini = teardown)                        \
    {                                                                                    \
        acache_catsuite_##name(g_cat);                                                   \
    }
ACACHE_CATALOG_SUITE(T)
#undef T

static int nop_user(const acache_cat_user *u, void *p)
{
    (void)u;
    ++*(size_t *)p;
    return 0;
}

Test(catalog_postgres, one_statement_per_lookup, .init = setup, .fini = teardown)
{
    const char *v[1000];
    acache_catsuite_batch_values(v, 1000);
    size_t rows = 0;
    unsigned long before = acache__pg_statement_count(g_cat);
    cr_assert_eq(g_cat->users(g_cat, ACACHE_BY_ID, v, 1000, nop_user, &rows), 0);
    cr_assert_eq(acache__pg_statement_count(g_cat) - before, 1);
    cr_assert_eq(rows, 6);

    /* Nothing that could match: nothing is sent. */
    const char *none[] = {"\xff", NULL};
    before = acache__pg_statement_count(g_cat);
    cr_assert_eq(g_cat->users(g_cat, ACACHE_BY_ID, none, 2, nop_user, &rows), 0);
    cr_assert_eq(g_cat->users(g_cat, ACACHE_BY_ID, v, 0, nop_user, &rows), 0);
    cr_assert_eq(acache__pg_statement_count(g_cat) - before, 0);
}

Test(catalog_postgres, pg_query_for_analyses, .init = setup, .fini = teardown)
{
    const char *params[] = {"x' OR '1'='1"};
    void *res = NULL;
    int rc = acache__pg_query(g_cat, "SELECT id FROM users WHERE username = $1", 1,
                              params, &res);
    cr_assert_eq(rc, ACACHE_OK, "%s", acache_last_error());
    PGresult *r = res;
    cr_assert_eq(PQntuples(r), 1);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "33333333-3333-4333-8333-333333333333");
    PQclear(r);

    rc = acache__pg_query(g_cat, "SELECT * FROM no_such_table", 0, NULL, &res);
    cr_assert_eq(rc, ACACHE_ECATALOG);
    cr_assert_null(res);
    cr_assert(strstr(acache_last_error(), "no_such_table"), "%s", acache_last_error());
    /* A failed statement leaves the connection usable. */
    size_t rows = 0;
    const char *v[] = {"11111111-1111-4111-8111-111111111111"};
    cr_assert_eq(g_cat->users(g_cat, ACACHE_BY_ID, v, 1, nop_user, &rows), 0);
    cr_assert_eq(rows, 1);
}

Test(catalog_postgres, connect_failure_at_open)
{
    acache_catalog *cat = (acache_catalog *)1;
    int rc = acache__catalog_open(&cat, "postgresql://postgres:s3cr3t-pw@127.0.0.1:1/x");
    cr_assert_eq(rc, ACACHE_ECATALOG);
    cr_assert_null(cat);
    const char *msg = acache_last_error();
    cr_assert(strstr(msg, "postgresql"), "%s", msg);
    cr_assert_null(strstr(msg, "s3cr3t-pw"), "password leaked: %s", msg);
}

static int usage_count(const acache_cat_usage *u, void *p)
{
    (void)u;
    ++*(size_t *)p;
    return 0;
}

Test(catalog_postgres, server_stopped_mid_run, .timeout = 120)
{
    acache_test_pg_instance inst;
    acache_test_pg_instance_create(&inst);
    char *uri = acache_test_pg_new_db(inst.uri);
    acache_test_pg_seed_json(uri, ACACHE_CATALOG_SEED);
    acache_catalog *cat = NULL;
    cr_assert_eq(acache__catalog_open(&cat, uri), ACACHE_OK, "%s", acache_last_error());

    const char *v[] = {"11111111-1111-4111-8111-111111111111"};
    size_t rows = 0;
    cr_assert_eq(cat->users(cat, ACACHE_BY_ID, v, 1, nop_user, &rows), 0);

    acache_test_pg_instance_stop(&inst);
    int rc = cat->users(cat, ACACHE_BY_ID, v, 1, nop_user, &rows);
    cr_assert_eq(rc, ACACHE_ECATALOG);
    cr_assert(strstr(acache_last_error(), "postgresql"), "%s", acache_last_error());
    /* Still down: the reconnect attempt fails cleanly too. */
    acache_usage_filter f = {.since = 0};
    size_t n = 0;
    cr_assert_eq(cat->usage_scan(cat, &f, usage_count, &n), ACACHE_ECATALOG);
    void *res = NULL;
    cr_assert_eq(acache__pg_query(cat, "SELECT 1", 0, NULL, &res), ACACHE_ECATALOG);

    acache_test_pg_instance_start(&inst);
    rows = 0;
    rc = cat->users(cat, ACACHE_BY_ID, v, 1, nop_user, &rows);
    cr_assert_eq(rc, ACACHE_OK, "after restart: %s", acache_last_error());
    cr_assert_eq(rows, 1);
    n = 0;
    cr_assert_eq(cat->usage_scan(cat, &f, usage_count, &n), ACACHE_OK, "%s",
                 acache_last_error());
    cr_assert_eq(n, 8);

    /* Restarted while idle: the stale connection fails at most one call. */
    acache_test_pg_instance_stop(&inst);
    acache_test_pg_instance_start(&inst);
    rc = cat->users(cat, ACACHE_BY_ID, v, 1, nop_user, &rows);
    if (rc != ACACHE_OK) {
        cr_assert_eq(rc, ACACHE_ECATALOG);
        cr_assert(strstr(acache_last_error(), "connection lost"), "%s",
                  acache_last_error());
        rc = cat->users(cat, ACACHE_BY_ID, v, 1, nop_user, &rows);
    }
    cr_assert_eq(rc, ACACHE_OK, "%s", acache_last_error());

    cat->free(cat);
    acache_test_pg_drop_db(uri);
    acache_test_pg_instance_destroy(&inst);
}

typedef struct scan_state {
    size_t n;
    double last;
    int ordered;
    size_t stop_at;
} scan_state;

static int scan_cb(const acache_cat_usage *u, void *p)
{
    scan_state *s = p;
    if (s->n && u->created_at < s->last)
        s->ordered = 0;
    s->last = u->created_at;
    s->n++;
    return s->stop_at && s->n >= s->stop_at ? 1 : 0;
}

Test(catalog_postgres, usage_scan_streams_many_rows, .init = setup, .fini = teardown,
     .timeout = 120)
{
    acache_test_pg_exec(g_uri,
                        "INSERT INTO usage (id, user_id, api_key_id, model, status, "
                        "created_at) SELECT 'g-' || i, "
                        "NULL, NULL, 'm', " /* no FK checks: fast insert */
                        "CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END, "
                        "timestamptz '2025-03-01 00:00:00+00' + i * interval '1 ms' "
                        "FROM generate_series(1, 100000) AS i");
    acache_usage_filter f = {.since = 1740787200.0,
                             .since_inclusive = 1}; /* 2025-03-01 */
    scan_state s = {.ordered = 1};
    unsigned long before = acache__pg_statement_count(g_cat);
    cr_assert_eq(g_cat->usage_scan(g_cat, &f, scan_cb, &s), 0, "%s", acache_last_error());
    cr_assert_eq(acache__pg_statement_count(g_cat) - before, 1);
    cr_assert_eq(s.n, 90000);
    cr_assert(s.ordered);

    /* Stopping early cancels the rest instead of reading 100k rows. */
    scan_state s2 = {.ordered = 1, .stop_at = 10};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(g_cat->usage_scan(g_cat, &f, scan_cb, &s2), 1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_eq(s2.n, 10);
    double secs =
        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert_lt(secs, 5.0);
    size_t rows = 0;
    const char *v[] = {"11111111-1111-4111-8111-111111111111"};
    cr_assert_eq(g_cat->users(g_cat, ACACHE_BY_ID, v, 1, nop_user, &rows), 0);
    cr_assert_eq(rows, 1);
}

static void *hammer(void *arg)
{
    acache_catalog *cat = arg;
    const char *v[] = {"11111111-1111-4111-8111-111111111111",
                       "22222222-2222-4222-8222-222222222222"};
    for (int i = 0; i < 100; i++) {
        size_t rows = 0;
        if (cat->users(cat, ACACHE_BY_ID, v, 2, nop_user, &rows) != 0 || rows != 2)
            return (void *)1;
    }
    return NULL;
}

Test(catalog_postgres, concurrent_lookups, .init = setup, .fini = teardown)
{
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, hammer, g_cat), 0);
    for (int i = 0; i < 8; i++) {
        void *res;
        pthread_join(th[i], &res);
        cr_assert_null(res);
    }
}

/* ---- issue 8 item 7: a paused (SIGSTOP) server ----
 * Every catalog call must give ACACHE_ECATALOG within the handle's timeouts
 * instead of blocking for as long as the server is frozen; the next call
 * after the server resumes works. Without the fix each call blocks until the
 * pause ends: the watchdog ends it after PAUSE_MAX_MS, so the test fails on
 * its timing assertions instead of hanging (and .timeout guards the rest). */

#define PAUSE_CONNECT_MS 400
#define PAUSE_COMMAND_MS 500
#define PAUSE_SLACK_MS 1500 /* ASan on 2 shared cores */
#define PAUSE_MAX_MS 8000

static acache_test_pg_instance p_inst;
static char *p_uri;
static acache *p_c;

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
           (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void paused_setup(void)
{
    acache_test_pg_instance_create(&p_inst);
    p_uri = acache_test_pg_new_db(p_inst.uri);
    acache_test_pg_seed_json(p_uri, ACACHE_CATALOG_SEED);
    acache_options o = ACACHE_OPTIONS_INIT;
    o.store_uri = "memory://";
    o.catalog_uri = p_uri;
    o.connect_timeout_ms = PAUSE_CONNECT_MS;
    o.command_timeout_ms = PAUSE_COMMAND_MS;
    o.use_dev_encryption_key = 1;
    cr_assert_eq(acache_open(&p_c, &o), ACACHE_OK, "%s", acache_last_error());
    cr_assert(acache__catalog_is_postgres(acache_handle_catalog(p_c)));
}

static void paused_teardown(void)
{
    /* Always continue the server, whatever the test did or failed at. */
    acache_test_pg_instance_resume(&p_inst);
    acache_close(p_c);
    p_c = NULL;
    free(p_uri); /* its schema goes with the instance */
    p_uri = NULL;
    acache_test_pg_instance_destroy(&p_inst);
}

static const char *const ALICE[] = {"11111111-1111-4111-8111-111111111111"};

/* The calls a paused server can block: user look-up, listing enrichment,
 * user resolution, an analysis (SQL path) and a usage scan. */
enum { OP_USERS, OP_LIST, OP_RESOLVE, OP_ANALYSIS, OP_SCAN, OP_COUNT };
static const char *const op_names[] = {"users", "listing", "resolve_user", "hit_analysis",
                                       "usage_scan"};

static int run_op(int op)
{
    acache_catalog *cat = acache_handle_catalog(p_c);
    size_t rows = 0;
    switch (op) {
    case OP_USERS:
        return cat->users(cat, ACACHE_BY_ID, ALICE, 1, nop_user, &rows);
    case OP_LIST: {
        acache__listing *l = NULL;
        int rc = acache__list_affinities(&l, p_c, NULL);
        acache__listing_free(l);
        return rc;
    }
    case OP_RESOLVE: {
        acache_buf b = ACACHE_BUF_INIT;
        int rc = acache_resolve_user(&b, p_c, "alice");
        acache_buf_dispose(&b);
        return rc;
    }
    case OP_ANALYSIS: {
        acache__hit_analysis h = {.version = ACACHE_HIT_ANALYSIS_VERSION};
        return acache__hit_analysis_compute(&h, p_c, 24, NULL, NULL);
    }
    default: {
        acache_usage_filter f = {.since = 0};
        return cat->usage_scan(cat, &f, usage_count, &rows);
    }
    }
}

static void *paused_worker(void *arg)
{
    double *ms = arg;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = run_op(OP_USERS);
    *ms = ms_since(&t0);
    return rc == ACACHE_ECATALOG ? NULL : (void *)1;
}

Test(catalog_postgres, paused_server_times_out, .init = paused_setup,
     .fini = paused_teardown, .timeout = 120)
{
    /* A pin, so the listing has something to enrich from the catalog. */
    acache_touch_result tr;
    cr_assert_eq(acache__affinity_set(&tr, p_c, "a0000001-0000-4000-8000-000000000001",
                                      "claude", "claude-sonnet-4", "p", "e", "k", 1, 300),
                 ACACHE_OK, "%s", acache_last_error());
    for (int op = 0; op < OP_COUNT; op++)
        cr_assert_eq(run_op(op), ACACHE_OK, "%s before the pause: %s", op_names[op],
                     acache_last_error());
    /* Open several pooled connections, so that calls in the pause meet live
     * idle connections (statement deadline) as well as dropped ones
     * (reconnect deadline). */
    pthread_t warm[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&warm[i], NULL, hammer, acache_handle_catalog(p_c)),
                     0);
    for (int i = 0; i < 4; i++) {
        void *res;
        pthread_join(warm[i], &res);
        cr_assert_null(res);
    }

    acache_test_pg_instance_pause(&p_inst, PAUSE_MAX_MS);
    /* The first call finds an idle connection: the statement deadline. Later
     * ones may have to reconnect first (connect deadline, then statement). */
    const double bound = PAUSE_CONNECT_MS + PAUSE_COMMAND_MS + PAUSE_SLACK_MS;
    for (int op = 0; op < OP_COUNT; op++) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = run_op(op);
        double ms = ms_since(&t0);
        cr_assert_eq(rc, ACACHE_ECATALOG, "%s on a paused server: rc %d after %.0f ms",
                     op_names[op], rc, ms);
        cr_assert_lt(ms, bound, "%s took %.0f ms", op_names[op], ms);
        const char *msg = acache_last_error();
        cr_assert(strstr(msg, "timed out after"), "%s: %s", op_names[op], msg);
        if (op == OP_USERS) {
            cr_assert(strstr(msg, "catalog query timed out after 500 ms"), "%s", msg);
            cr_assert_lt(ms, PAUSE_COMMAND_MS + PAUSE_SLACK_MS, "%.0f ms", ms);
        }
    }

    /* Four callers at once (all of acache-admin's workers): none is held. */
    pthread_t th[4];
    double took[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, paused_worker, &took[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *res;
        pthread_join(th[i], &res);
        cr_assert_null(res, "thread %d did not get ACACHE_ECATALOG", i);
        cr_assert_lt(took[i], bound, "thread %d took %.0f ms", i, took[i]);
    }

    acache_test_pg_instance_resume(&p_inst);
    for (int op = 0; op < OP_COUNT; op++)
        cr_assert_eq(run_op(op), ACACHE_OK, "%s after resume: %s", op_names[op],
                     acache_last_error());
}
