/* The PostgreSQL catalog's analysis slot (catalog version 2): each analysis
 * of usage-analysis.md as one SQL statement, answered as the rows of
 * aether_cache/sys/catalog.h. lib/analysis adds the user look-ups, rounding
 * and JSON, and runs the same figures in C on catalogs without this slot; the
 * statements use the C path's arithmetic, so both give identical doubles. */
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/core.h"
#include "postgres.h"

/* timestamptz text parameter of an instant in microseconds (floor division,
 * so instants before 1970 work too). */
static void fmt_pg_ts(char *buf, size_t size, int64_t us)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf, size, "%s.%06lld+00", base, (long long)frac);
}

/* Parameters shared by the statements: $1 = the window start, then
 * " AND user_id = $n" / " AND api_key_id = $n" for the filters given. */
typedef struct pg_window {
    char ts[64];
    const char *params[3];
    int n;
    char filt[128];
} pg_window;

static void window_init(pg_window *w, const acache_analysis_query *q, int with_key)
{
    fmt_pg_ts(w->ts, sizeof w->ts, q->min_created_us);
    w->params[0] = w->ts;
    w->params[1] = w->params[2] = NULL;
    w->n = 1;
    w->filt[0] = '\0';
    const char *cols[2] = {"user_id", "api_key_id"};
    const char *vals[2] = {q->user_id, with_key ? q->api_key_id : NULL};
    for (int i = 0; i < 2; i++) {
        if (!vals[i])
            continue;
        w->params[w->n++] = vals[i];
        size_t used = strlen(w->filt);
        snprintf(w->filt + used, sizeof w->filt - used, " AND %s = $%d", cols[i], w->n);
    }
}

/* Run `sql`; on ACACHE_OK *out is a PGresult the caller PQclear()s. */
static int run(acache_catalog *self, const char *sql, int n, const char *const *params,
               PGresult **out)
{
    void *res = NULL;
    int rc = acache__pg_query(self, sql, n, params, &res);
    *out = res;
    return rc;
}

static const char *cell(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static const char *cell0(PGresult *r, int row, int col)
{
    const char *s = cell(r, row, col);
    return s ? s : "0";
}

static double num_or_nan(const char *s)
{
    return s ? strtod(s, NULL) : NAN;
}

static int hits(acache_catalog *self, const acache_analysis_query *q,
                acache_analysis_cb cb, void *payload)
{
    pg_window w;
    window_init(&w, q, 1);
    char *sql = acache__sprintf(
        "SELECT count(id), count(id) FILTER (WHERE cache_read_input_tokens > 0),"
        " COALESCE(sum(input_tokens), 0), COALESCE(sum(cache_read_input_tokens), 0),"
        " COALESCE(sum(cache_creation_input_tokens), 0),"
        " COALESCE(sum(cache_read_cost_usd), 0), COALESCE(sum(cache_creation_cost_usd), "
        "0)"
        " FROM usage WHERE status = 'completed' AND created_at >= $1::timestamptz%s",
        w.filt);
    if (!sql)
        return ACACHE_ENOMEM;
    PGresult *r;
    int rc = run(self, sql, w.n, w.params, &r);
    free(sql);
    if (rc < 0)
        return rc;
    if (PQntuples(r) != 1 || PQnfields(r) != 7) {
        PQclear(r);
        return acache_error_set(ACACHE_ECATALOG, "hit analysis: unexpected result shape");
    }
    acache_analysis_row row = {.kind = ACACHE_ANALYSIS_HITS};
    acache_analysis_hits *h = &row.as.hits;
    h->requests = strtoull(cell0(r, 0, 0), NULL, 10);
    h->requests_with_hit = strtoull(cell0(r, 0, 1), NULL, 10);
    h->input_tokens = strtoll(cell0(r, 0, 2), NULL, 10);
    h->cache_read_tokens = strtoll(cell0(r, 0, 3), NULL, 10);
    h->cache_creation_tokens = strtoll(cell0(r, 0, 4), NULL, 10);
    h->cache_read_cost_usd = strtod(cell0(r, 0, 5), NULL);
    h->cache_creation_cost_usd = strtod(cell0(r, 0, 6), NULL);
    PQclear(r);
    return cb(&row, payload);
}

static int ttl(acache_catalog *self, const acache_analysis_query *q,
               acache_analysis_cb cb, void *payload)
{
    pg_window w;
    window_init(&w, q, 1);
    const char *g = q->api_key_id ? "api_key_id" : "user_id";
    /* Gaps in whole microseconds (us), and us / 6e7 as float8 (m): the same
     * arithmetic as the C path, so both backends give identical doubles. The
     * average is exact decimal as in Aether (numeric): sum of us over
     * count * 6e7, with 20 decimals kept so strtod gives the nearest double
     * (7.025 for gaps of 6 s and 837 s, where avg(m) gives 7.0249999...). */
    char *sql = acache__sprintf(
        "WITH f AS (SELECT %s AS g, id, created_at FROM usage"
        " WHERE status = 'completed' AND created_at >= $1::timestamptz"
        " AND %s IS NOT NULL%s),"
        " d AS (SELECT g, round(EXTRACT(EPOCH FROM created_at - LAG(created_at) OVER"
        " (PARTITION BY g ORDER BY created_at, id COLLATE \"C\")) * 1000000)::int8"
        " AS us FROM f),"
        " iv AS (SELECT g, us, us::float8 / 60000000.0::float8 AS m FROM d)"
        " SELECT g, count(*),"
        " count(*) FILTER (WHERE m <= 5),"
        " count(*) FILTER (WHERE m > 5 AND m <= 15),"
        " count(*) FILTER (WHERE m > 15 AND m <= 30),"
        " count(*) FILTER (WHERE m > 30 AND m <= 60),"
        " count(*) FILTER (WHERE m > 60),"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY m),"
        " percentile_cont(0.75) WITHIN GROUP (ORDER BY m),"
        " percentile_cont(0.9) WITHIN GROUP (ORDER BY m),"
        " sum(us)::numeric(40, 20) / (count(*) * 60000000), min(m), max(m)"
        " FROM iv WHERE m IS NOT NULL GROUP BY g HAVING count(*) >= 2"
        " ORDER BY count(*) DESC, g COLLATE \"C\"",
        g, g, w.filt);
    if (!sql)
        return ACACHE_ENOMEM;
    PGresult *r;
    int rc = run(self, sql, w.n, w.params, &r);
    free(sql);
    if (rc < 0)
        return rc;
    if (PQntuples(r) > 0 && PQnfields(r) != 13) {
        PQclear(r);
        return acache_error_set(ACACHE_ECATALOG, "ttl analysis: unexpected result shape");
    }
    for (int i = 0; i < PQntuples(r) && rc == ACACHE_OK; i++) {
        acache_analysis_row row = {.kind = ACACHE_ANALYSIS_TTL};
        acache_analysis_ttl_group *t = &row.as.ttl;
        if (!(t->group_id = cell(r, i, 0)))
            continue;
        t->gaps = strtoull(cell0(r, i, 1), NULL, 10);
        for (int b = 0; b < 5; b++)
            t->buckets[b] = strtoull(cell0(r, i, 2 + b), NULL, 10);
        t->p50 = num_or_nan(cell(r, i, 7));
        t->p75 = num_or_nan(cell(r, i, 8));
        t->p90 = num_or_nan(cell(r, i, 9));
        t->avg = num_or_nan(cell(r, i, 10));
        t->min = num_or_nan(cell(r, i, 11));
        t->max = num_or_nan(cell(r, i, 12));
        rc = cb(&row, payload);
    }
    PQclear(r);
    return rc;
}

static int timeline(acache_catalog *self, const acache_analysis_query *q,
                    acache_analysis_cb cb, void *payload)
{
    char ts[64], lim[32];
    fmt_pg_ts(ts, sizeof ts, q->min_created_us);
    snprintf(lim, sizeof lim, "%d", q->limit);
    const char *params[3] = {ts, lim, q->user_id};
    int np = q->user_id ? 3 : 2;
    const char *head =
        "WITH f AS (SELECT id, user_id, model, created_at FROM usage"
        " WHERE status = 'completed' AND created_at >= $1::timestamptz"
        " AND user_id IS NOT NULL%s),"
        " iv AS (SELECT id, user_id, model, created_at,"
        " (EXTRACT(EPOCH FROM created_at - LAG(created_at) OVER"
        " (PARTITION BY user_id ORDER BY created_at, id COLLATE \"C\")) * "
        "1000000)::float8"
        " / 60000000.0::float8 AS m FROM f),"
        " s AS (SELECT * FROM iv WHERE m IS NOT NULL AND m <= 120.0::float8)";
    const char *tail_plain =
        " SELECT user_id, model, (EXTRACT(EPOCH FROM created_at) * 1000000)::bigint, m"
        " FROM s ORDER BY created_at, id COLLATE \"C\" LIMIT $2::bigint";
    const char *tail_multi =
        ", r AS (SELECT s.*, ROW_NUMBER() OVER (PARTITION BY user_id"
        " ORDER BY created_at, id COLLATE \"C\") AS rn,"
        " count(*) OVER (PARTITION BY user_id) AS cu, count(*) OVER () AS t FROM s)"
        " SELECT user_id, model, (EXTRACT(EPOCH FROM created_at) * 1000000)::bigint, m"
        " FROM r WHERE t <= $2::bigint"
        " OR rn <= GREATEST(1, (cu * $2::bigint + t - 1) / t)"
        " ORDER BY created_at, id COLLATE \"C\"";
    char *h = acache__sprintf(head, q->user_id ? " AND user_id = $3" : "");
    char *sql =
        h ? acache__sprintf("%s%s", h, q->multi_user ? tail_multi : tail_plain) : NULL;
    free(h);
    if (!sql)
        return ACACHE_ENOMEM;
    PGresult *r;
    int rc = run(self, sql, np, params, &r);
    free(sql);
    if (rc < 0)
        return rc;
    if (PQntuples(r) > 0 && PQnfields(r) != 4) {
        PQclear(r);
        return acache_error_set(ACACHE_ECATALOG,
                                "interval timeline: unexpected result shape");
    }
    for (int i = 0; i < PQntuples(r) && rc == ACACHE_OK; i++) {
        const char *uid = cell(r, i, 0), *us = cell(r, i, 2), *m = cell(r, i, 3);
        if (!uid || !us || !m)
            continue;
        acache_analysis_row row = {.kind = ACACHE_ANALYSIS_TIMELINE};
        row.as.point.user_id = uid;
        row.as.point.model = cell(r, i, 1);
        row.as.point.created_at_us = strtoll(us, NULL, 10);
        row.as.point.gap_minutes = strtod(m, NULL);
        rc = cb(&row, payload);
    }
    PQclear(r);
    return rc;
}

int acache__pg_analysis(acache_catalog *self, const acache_analysis_query *q,
                        acache_analysis_cb cb, void *payload)
{
    if (!self || !q || !cb)
        return acache_error_set(ACACHE_EINVALID, "analysis query: NULL argument");
    switch (q->kind) {
    case ACACHE_ANALYSIS_HITS:
        return hits(self, q, cb, payload);
    case ACACHE_ANALYSIS_TTL:
        return ttl(self, q, cb, payload);
    case ACACHE_ANALYSIS_TIMELINE:
        return timeline(self, q, cb, payload);
    default:
        return ACACHE_EUNSUPPORTED; /* a newer kind: the generic path runs */
    }
}
