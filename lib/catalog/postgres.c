/* PostgreSQL catalog: batched look-ups over an Aether database with libpq.
 *
 * Every statement is a constant SQL text with $n parameters; a batch is one
 * statement with `= ANY($1::text[])`, the values passed as one text-array
 * literal. Connections come from a small pool so that a usage_scan callback
 * (which runs while its connection streams rows) can still call other slots.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "../core/core.h"
#include "internal.h"
#include "postgres.h"

/* Enough for an admin listing and a scan with nested look-ups running at
 * once; further callers wait for a connection to come back. */
#define PG_MAX_CONNS 4

typedef struct pg_conn {
    PGconn *conn;
    unsigned gen; /* pool generation it was (re)connected in */
    struct pg_conn *next;
} pg_conn;

typedef struct pg_catalog {
    acache_catalog parent;
    char *uri;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pg_conn *idle;
    unsigned open_count;
    /* Bumped when a connection is found dead: the server probably restarted,
     * so every idle connection is reset before its next use instead of each
     * failing once. */
    unsigned gen;
    atomic_ulong statements;
} pg_catalog;

static void pg_free(acache_catalog *self);

/* libpq messages end with a newline; keep the error text on one line. */
static const char *trim_msg(const char *m, char *buf, size_t size)
{
    if (!m || !*m)
        return "unknown error";
    snprintf(buf, size, "%s", m);
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    size_t len = strlen(buf);
    while (len && buf[len - 1] == ' ')
        buf[--len] = '\0';
    return buf;
}

/* libpq prints NOTICEs to stderr by default; a library must not. */
static void ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static PGconn *pg_connect(const char *uri)
{
    /* Keywords are applied in order, so anything set in the URI (including
     * its own connect_timeout) overrides these defaults. */
    const char *const keys[] = {"connect_timeout", "client_encoding", "application_name",
                                "dbname", NULL};
    const char *const vals[] = {"5", "UTF8", "libaethercache", uri, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (conn)
        PQsetNoticeProcessor(conn, ignore_notice, NULL);
    return conn;
}

static int conn_error(PGconn *conn, const char *what)
{
    char buf[512];
    return acache_error_set(ACACHE_ECATALOG, "postgresql %s: %s", what,
                            trim_msg(conn ? PQerrorMessage(conn) : NULL, buf, sizeof buf));
}

/* Take a usable connection: an idle one (reset first if it is dead or from an
 * older generation) or a new one while under the cap. */
static int acquire(pg_catalog *pg, pg_conn **out)
{
    pthread_mutex_lock(&pg->lock);
    while (!pg->idle && pg->open_count >= PG_MAX_CONNS)
        pthread_cond_wait(&pg->cond, &pg->lock);
    pg_conn *pc = pg->idle;
    unsigned gen = pg->gen;
    if (pc)
        pg->idle = pc->next;
    else
        pg->open_count++;
    pthread_mutex_unlock(&pg->lock);

    if (!pc) {
        pc = acache__calloc(1, sizeof *pc);
        if (pc)
            pc->conn = pg_connect(pg->uri);
        if (!pc || !pc->conn || PQstatus(pc->conn) != CONNECTION_OK) {
            int rc = pc ? conn_error(pc->conn, "connect") : acache__oom();
            if (pc) {
                PQfinish(pc->conn);
                free(pc);
            }
            pthread_mutex_lock(&pg->lock);
            pg->open_count--;
            pthread_cond_signal(&pg->cond);
            pthread_mutex_unlock(&pg->lock);
            return rc;
        }
        pc->gen = gen;
    } else if (PQstatus(pc->conn) != CONNECTION_OK || pc->gen != gen) {
        PQreset(pc->conn);
        pc->gen = gen;
        if (PQstatus(pc->conn) != CONNECTION_OK) {
            int rc = conn_error(pc->conn, "reconnect");
            pthread_mutex_lock(&pg->lock);
            pc->next = pg->idle;
            pg->idle = pc;
            pthread_cond_signal(&pg->cond);
            pthread_mutex_unlock(&pg->lock);
            return rc;
        }
    }
    *out = pc;
    return ACACHE_OK;
}

static void release(pg_catalog *pg, pg_conn *pc)
{
    pthread_mutex_lock(&pg->lock);
    if (PQstatus(pc->conn) != CONNECTION_OK)
        pg->gen++;
    pc->next = pg->idle;
    pg->idle = pc;
    pthread_cond_signal(&pg->cond);
    pthread_mutex_unlock(&pg->lock);
}

static int result_error(PGconn *conn, const PGresult *r, const char *what)
{
    char buf[512];
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    if (!m || !*m)
        m = PQerrorMessage(conn);
    trim_msg(m, buf, sizeof buf);
    if (PQstatus(conn) != CONNECTION_OK)
        return acache_error_set(ACACHE_ECATALOG,
                                "postgresql %s: connection lost (will reconnect on the "
                                "next call): %s",
                                what, buf);
    return acache_error_set(ACACHE_ECATALOG, "postgresql %s: %s", what, buf);
}

static int pg_exec(pg_catalog *pg, const char *what, const char *sql, int nparams,
                   const char *const *params, PGresult **out)
{
    pg_conn *pc;
    int rc = acquire(pg, &pc);
    if (rc < 0)
        return rc;
    atomic_fetch_add(&pg->statements, 1);
    PGresult *r = PQexecParams(pc->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        rc = result_error(pc->conn, r, what);
        PQclear(r);
        release(pg, pc);
        return rc;
    }
    release(pg, pc);
    *out = r;
    return ACACHE_OK;
}

int acache__catalog_is_postgres(const acache_catalog *cat)
{
    return cat && cat->free == pg_free;
}

int acache__pg_query(acache_catalog *self, const char *sql, int nparams,
                     const char *const *params, void **pgresult_out)
{
    if (!acache__catalog_is_postgres(self) || !sql || !pgresult_out || nparams < 0 ||
        (nparams > 0 && !params))
        return acache_error_set(ACACHE_EINVALID, "postgresql query: bad arguments");
    PGresult *r = NULL;
    int rc = pg_exec((pg_catalog *)self, "query", sql, nparams, params, &r);
    *pgresult_out = rc < 0 ? NULL : r;
    return rc;
}

unsigned long acache__pg_statement_count(acache_catalog *self)
{
    if (!acache__catalog_is_postgres(self))
        return 0;
    return atomic_load(&((pg_catalog *)self)->statements);
}

/* ---- batched look-ups ---- */

/* Text-array literal {"v1","v2"} with " and \ escaped. Values that cannot be
 * stored in a UTF8 database (NULL, invalid UTF-8) cannot match any row, so
 * they are left out rather than failing the whole batch. *count gets the
 * number kept. */
static char *array_literal(const char *const *values, size_t n, size_t *count)
{
    size_t len = 3, kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (!values[i] || !acache__utf8_valid(values[i]))
            continue;
        len += 3;
        for (const char *p = values[i]; *p; p++)
            len += (*p == '"' || *p == '\\') ? 2 : 1;
    }
    char *lit = acache__malloc(len);
    if (!lit)
        return NULL;
    char *w = lit;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (!values[i] || !acache__utf8_valid(values[i]))
            continue;
        if (kept++)
            *w++ = ',';
        *w++ = '"';
        for (const char *p = values[i]; *p; p++) {
            if (*p == '"' || *p == '\\')
                *w++ = '\\';
            *w++ = *p;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    *count = kept;
    return lit;
}

/* Run `sql` with $1 = the values as text[]. *out is NULL when no value could
 * match (nothing is sent). */
static int lookup(pg_catalog *pg, const char *what, const char *sql,
                  const char *const *values, size_t n, PGresult **out)
{
    *out = NULL;
    if (n == 0)
        return ACACHE_OK;
    if (!values)
        return acache_error_set(ACACHE_EINVALID, "postgresql %s: values is NULL", what);
    size_t kept = 0;
    char *lit = array_literal(values, n, &kept);
    if (!lit)
        return acache__oom();
    int rc = ACACHE_OK;
    if (kept) {
        const char *params[1] = {lit};
        rc = pg_exec(pg, what, sql, 1, params, out);
    }
    free(lit);
    return rc;
}

static const char *col(const PGresult *r, int row, int c)
{
    return PQgetisnull(r, row, c) ? NULL : PQgetvalue(r, row, c);
}

static int col_bool(const PGresult *r, int row, int c)
{
    const char *v = col(r, row, c);
    return v && v[0] == 't';
}

static double col_double(const PGresult *r, int row, int c, double null_value)
{
    const char *v = col(r, row, c);
    return v ? strtod(v, NULL) : null_value;
}

static int64_t col_int(const PGresult *r, int row, int c)
{
    const char *v = col(r, row, c);
    return v ? (int64_t)strtoll(v, NULL, 10) : -1;
}

static int bad_by(const char *what, int by)
{
    return acache_error_set(ACACHE_EINVALID, "catalog %s: unsupported look-up column %d",
                            what, by);
}

#define CHECK_CB(what)                                                                   \
    do {                                                                                 \
        if (!cb)                                                                         \
            return acache_error_set(ACACHE_EINVALID, "catalog %s: callback is NULL",     \
                                    what);                                               \
    } while (0)

static int pg_users(acache_catalog *self, int by, const char *const *values, size_t n,
                    acache_cat_user_cb cb, void *payload)
{
    static const char *const sql[] = {
        [ACACHE_BY_ID] = "SELECT id, username, email FROM users WHERE id = ANY($1::text[])",
        [ACACHE_BY_USERNAME] =
            "SELECT id, username, email FROM users WHERE username = ANY($1::text[])",
        [ACACHE_BY_EMAIL] =
            "SELECT id, username, email FROM users WHERE email = ANY($1::text[])",
    };
    CHECK_CB("users");
    if (by != ACACHE_BY_ID && by != ACACHE_BY_USERNAME && by != ACACHE_BY_EMAIL)
        return bad_by("users", by);
    PGresult *r;
    int rc = lookup((pg_catalog *)self, "users", sql[by], values, n, &r);
    for (int i = 0; r && rc == 0 && i < PQntuples(r); i++) {
        acache_cat_user u = {col(r, i, 0), col(r, i, 1), col(r, i, 2)};
        rc = cb(&u, payload);
    }
    PQclear(r);
    return rc;
}

static int pg_api_keys(acache_catalog *self, int by, const char *const *values, size_t n,
                       acache_cat_api_key_cb cb, void *payload)
{
    static const char *const sql[] = {
        [ACACHE_BY_ID] = "SELECT id, user_id, name, key_encrypted, is_standalone "
                         "FROM api_keys WHERE id = ANY($1::text[])",
        [ACACHE_BY_USER_ID] = "SELECT id, user_id, name, key_encrypted, is_standalone "
                              "FROM api_keys WHERE user_id = ANY($1::text[])",
    };
    CHECK_CB("api_keys");
    if (by != ACACHE_BY_ID && by != ACACHE_BY_USER_ID)
        return bad_by("api_keys", by);
    PGresult *r;
    int rc = lookup((pg_catalog *)self, "api_keys", sql[by], values, n, &r);
    for (int i = 0; r && rc == 0 && i < PQntuples(r); i++) {
        acache_cat_api_key k = {col(r, i, 0), col(r, i, 1), col(r, i, 2), col(r, i, 3),
                                col_bool(r, i, 4)};
        rc = cb(&k, payload);
    }
    PQclear(r);
    return rc;
}

static int pg_providers(acache_catalog *self, int by, const char *const *values, size_t n,
                        acache_cat_provider_cb cb, void *payload)
{
    CHECK_CB("providers");
    if (by != ACACHE_BY_ID)
        return bad_by("providers", by);
    PGresult *r;
    int rc = lookup((pg_catalog *)self, "providers",
                    "SELECT id, name, display_name, is_active FROM providers "
                    "WHERE id = ANY($1::text[])",
                    values, n, &r);
    for (int i = 0; r && rc == 0 && i < PQntuples(r); i++) {
        acache_cat_provider p = {col(r, i, 0), col(r, i, 1), col(r, i, 2),
                                 col_bool(r, i, 3)};
        rc = cb(&p, payload);
    }
    PQclear(r);
    return rc;
}

static int pg_endpoints(acache_catalog *self, int by, const char *const *values, size_t n,
                        acache_cat_endpoint_cb cb, void *payload)
{
    CHECK_CB("endpoints");
    if (by != ACACHE_BY_ID)
        return bad_by("endpoints", by);
    PGresult *r;
    int rc = lookup((pg_catalog *)self, "endpoints",
                    "SELECT id, provider_id, api_format, base_url FROM provider_endpoints "
                    "WHERE id = ANY($1::text[])",
                    values, n, &r);
    for (int i = 0; r && rc == 0 && i < PQntuples(r); i++) {
        acache_cat_endpoint e = {col(r, i, 0), col(r, i, 1), col(r, i, 2), col(r, i, 3)};
        rc = cb(&e, payload);
    }
    PQclear(r);
    return rc;
}

static int pg_provider_keys(acache_catalog *self, int by, const char *const *values,
                            size_t n, acache_cat_provider_key_cb cb, void *payload)
{
    CHECK_CB("provider_keys");
    if (by != ACACHE_BY_ID)
        return bad_by("provider_keys", by);
    PGresult *r;
    int rc = lookup((pg_catalog *)self, "provider_keys",
                    "SELECT id, endpoint_id, name, api_key, rate_multiplier "
                    "FROM provider_api_keys WHERE id = ANY($1::text[])",
                    values, n, &r);
    for (int i = 0; r && rc == 0 && i < PQntuples(r); i++) {
        acache_cat_provider_key k = {col(r, i, 0), col(r, i, 1), col(r, i, 2),
                                     col(r, i, 3), col_double(r, i, 4, 1.0)};
        rc = cb(&k, payload);
    }
    PQclear(r);
    return rc;
}

static int pg_global_models(acache_catalog *self, int by, const char *const *values,
                            size_t n, acache_cat_global_model_cb cb, void *payload)
{
    static const char *const sql[] = {
        [ACACHE_BY_ID] = "SELECT id, name, display_name, is_active FROM global_models "
                         "WHERE id = ANY($1::text[])",
        [ACACHE_BY_NAME] = "SELECT id, name, display_name, is_active FROM global_models "
                           "WHERE name = ANY($1::text[])",
    };
    CHECK_CB("global_models");
    if (by != ACACHE_BY_ID && by != ACACHE_BY_NAME)
        return bad_by("global_models", by);
    PGresult *r;
    int rc = lookup((pg_catalog *)self, "global_models", sql[by], values, n, &r);
    for (int i = 0; r && rc == 0 && i < PQntuples(r); i++) {
        acache_cat_global_model g = {col(r, i, 0), col(r, i, 1), col(r, i, 2),
                                     col_bool(r, i, 3)};
        rc = cb(&g, payload);
    }
    PQclear(r);
    return rc;
}

static int pg_models(acache_catalog *self, int by, const char *const *values, size_t n,
                     acache_cat_model_cb cb, void *payload)
{
    static const char *const sql[] = {
        [ACACHE_BY_ID] = "SELECT id, provider_id, global_model_id, provider_model_name, "
                         "provider_model_mappings::text, is_active FROM models "
                         "WHERE id = ANY($1::text[])",
        [ACACHE_BY_GLOBAL_MODEL_ID] =
            "SELECT id, provider_id, global_model_id, provider_model_name, "
            "provider_model_mappings::text, is_active FROM models "
            "WHERE global_model_id = ANY($1::text[])",
    };
    CHECK_CB("models");
    if (by != ACACHE_BY_ID && by != ACACHE_BY_GLOBAL_MODEL_ID)
        return bad_by("models", by);
    PGresult *r;
    int rc = lookup((pg_catalog *)self, "models", sql[by], values, n, &r);
    for (int i = 0; r && rc == 0 && i < PQntuples(r); i++) {
        acache_cat_model m = {col(r, i, 0), col(r, i, 1),     col(r, i, 2),
                              col(r, i, 3), col(r, i, 4), col_bool(r, i, 5)};
        rc = cb(&m, payload);
    }
    PQclear(r);
    return rc;
}

/* ---- usage_scan ---- */

/* created_at is compared against a timestamptz literal built from whole
 * microseconds, so the boundary is exact and ix_usage_created_at is usable. */
static void format_min_ts(char *buf, size_t size, int64_t us)
{
    /* Year 1 .. 9999 covers any real row; beyond, use PostgreSQL's infinities. */
    const int64_t lo = -62135596800LL * 1000000, hi = 253402300799LL * 1000000;
    if (us <= lo) {
        snprintf(buf, size, "-infinity");
        return;
    }
    if (us > hi) {
        snprintf(buf, size, "infinity");
        return;
    }
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(buf, size, "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long long)frac);
}

static const char USAGE_SQL[] =
    "SELECT id, user_id, api_key_id, model, status,"
    " (EXTRACT(EPOCH FROM created_at) * 1000000)::int8,"
    " input_tokens, cache_read_input_tokens, cache_creation_input_tokens,"
    " cache_read_cost_usd, cache_creation_cost_usd"
    " FROM usage"
    " WHERE status = 'completed' AND created_at >= $1::timestamptz"
    " AND ($2::text IS NULL OR user_id = $2::text)"
    " AND ($3::text IS NULL OR api_key_id = $3::text)"
    " AND ($4::bool = false OR user_id IS NOT NULL)"
    " ORDER BY created_at, id COLLATE \"C\"";

static int pg_usage_scan(acache_catalog *self, const acache_usage_filter *f,
                         acache_cat_usage_cb cb, void *payload)
{
    pg_catalog *pg = (pg_catalog *)self;
    CHECK_CB("usage_scan");
    if (!f)
        return acache_error_set(ACACHE_EINVALID, "catalog usage_scan: filter is NULL");
    /* A filter value PostgreSQL cannot even parse matches no row. */
    if ((f->user_id && !acache__utf8_valid(f->user_id)) ||
        (f->api_key_id && !acache__utf8_valid(f->api_key_id)))
        return ACACHE_OK;

    char since[64];
    format_min_ts(since, sizeof since, acache__usage_min_us(f));
    const char *params[4] = {since, f->user_id, f->api_key_id,
                             f->require_user_id ? "true" : "false"};

    pg_conn *pc;
    int rc = acquire(pg, &pc);
    if (rc < 0)
        return rc;
    atomic_fetch_add(&pg->statements, 1);
    if (!PQsendQueryParams(pc->conn, USAGE_SQL, 4, NULL, params, NULL, NULL, 0)) {
        rc = result_error(pc->conn, NULL, "usage_scan");
        release(pg, pc);
        return rc;
    }
    /* One row per PGresult: a million-row window never sits in memory. */
    PQsetSingleRowMode(pc->conn);

    int err = 0, stopped = 0;
    PGresult *r;
    while ((r = PQgetResult(pc->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && !stopped && !err) {
            acache_cat_usage u = {
                .id = col(r, 0, 0),
                .user_id = col(r, 0, 1),
                .api_key_id = col(r, 0, 2),
                .model = col(r, 0, 3),
                .status = col(r, 0, 4),
                .created_at = (double)strtoll(PQgetvalue(r, 0, 5), NULL, 10) / 1e6,
                .input_tokens = col_int(r, 0, 6),
                .cache_read_input_tokens = col_int(r, 0, 7),
                .cache_creation_input_tokens = col_int(r, 0, 8),
                .cache_read_cost_usd = col_double(r, 0, 9, NAN),
                .cache_creation_cost_usd = col_double(r, 0, 10, NAN),
            };
            rc = cb(&u, payload);
            if (rc != 0) {
                /* Stop the server producing rows nobody will read, then drain. */
                stopped = 1;
                char ebuf[256];
                PGcancel *cancel = PQgetCancel(pc->conn);
                if (cancel) {
                    PQcancel(cancel, ebuf, sizeof ebuf);
                    PQfreeCancel(cancel);
                }
            }
        } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && !stopped &&
                   !err) {
            err = result_error(pc->conn, r, "usage_scan");
        }
        PQclear(r);
        if (PQstatus(pc->conn) != CONNECTION_OK)
            break;
    }
    if (!err && !stopped && PQstatus(pc->conn) != CONNECTION_OK)
        err = result_error(pc->conn, NULL, "usage_scan");
    release(pg, pc);
    return err ? err : rc;
}

/* ---- lifetime ---- */

static void pg_free(acache_catalog *self)
{
    pg_catalog *pg = (pg_catalog *)self;
    if (!pg)
        return;
    while (pg->idle) {
        pg_conn *pc = pg->idle;
        pg->idle = pc->next;
        PQfinish(pc->conn);
        free(pc);
    }
    pthread_cond_destroy(&pg->cond);
    pthread_mutex_destroy(&pg->lock);
    free(pg->uri);
    free(pg);
}

int acache__catalog_pg_new(acache_catalog **out, const char *uri)
{
    *out = NULL;
    pg_catalog *pg = acache__calloc(1, sizeof *pg);
    if (!pg)
        return acache__oom();
    pg->uri = acache__strdup(uri);
    if (!pg->uri) {
        free(pg);
        return acache__oom();
    }
    pthread_mutex_init(&pg->lock, NULL);
    pthread_cond_init(&pg->cond, NULL);
    atomic_init(&pg->statements, 0);
    pg->parent.version = ACACHE_CATALOG_VERSION;
    pg->parent.scheme = "postgresql";
    pg->parent.users = pg_users;
    pg->parent.api_keys = pg_api_keys;
    pg->parent.providers = pg_providers;
    pg->parent.endpoints = pg_endpoints;
    pg->parent.provider_keys = pg_provider_keys;
    pg->parent.global_models = pg_global_models;
    pg->parent.models = pg_models;
    pg->parent.usage_scan = pg_usage_scan;
    pg->parent.free = pg_free;

    /* Connect now so a wrong URI or a server that is down fails acache_open. */
    pg_conn *pc;
    int rc = acquire(pg, &pc);
    if (rc < 0) {
        pg_free(&pg->parent);
        return rc;
    }
    release(pg, pc);
    *out = &pg->parent;
    return ACACHE_OK;
}
