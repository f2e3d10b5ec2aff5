/* PostgreSQL catalog: batched look-ups over an Aether database with libpq.
 *
 * Every statement is a constant SQL text with $n parameters; a batch is one
 * statement with `= ANY($1::text[])`, the values passed as one text-array
 * literal. Connections come from a small pool so that a usage_scan callback
 * (which runs while its connection streams rows) can still call other slots.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
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
 * once; further callers wait (up to the command timeout) for a connection to
 * come back. */
#define PG_MAX_CONNS 4

/* Timed-out statements are cancelled from a detached thread, because libpq
 * 15's PQcancel blocks until the postmaster answers, which a paused server
 * never does. The connection is dropped anyway, so the cancel only spares the
 * server work; past this many outstanding, skip it (statement_timeout ends
 * the statement server-side). Process-wide, so no catalog has to outlive it. */
#define PG_MAX_CANCELS 8
static atomic_int pg_cancels_running;

typedef struct pg_conn {
    PGconn *conn;          /* NULL after a timeout: reconnect before the next use */
    unsigned gen;          /* pool generation it was (re)connected in */
    uint32_t stmt_timeout; /* the session's statement_timeout, ms (0 = none) */
    struct pg_conn *next;
} pg_conn;

typedef struct pg_catalog {
    acache_catalog parent;
    char *uri;
    uint32_t connect_ms, command_ms;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    pg_conn *idle;
    unsigned open_count;
    /* Bumped when a connection is found dead: the server probably restarted,
     * so every idle connection is reset before its next use instead of each
     * failing once. */
    unsigned gen;
    atomic_ulong statements;
} pg_catalog;

static void pg_free(acache_catalog *self);

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

static int conn_error(PGconn *conn, const char *what)
{
    char buf[512];
    return acache_error_set(
        ACACHE_ECATALOG, "postgresql %s: %s", what,
        trim_msg(conn ? PQerrorMessage(conn) : NULL, buf, sizeof buf));
}

/* Wait until the connection's socket is ready for `events` or `deadline`
 * (mono_ms) passes. 1 ready, 0 timed out, -1 socket error. */
static int wait_socket(PGconn *conn, short events, int64_t deadline)
{
    int fd = PQsocket(conn);
    if (fd < 0)
        return -1;
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0)
            return 1; /* POLLERR/POLLHUP too: libpq reports the error */
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

static void *cancel_thread(void *arg)
{
    char ebuf[256];
    PQcancel(arg, ebuf, sizeof ebuf);
    PQfreeCancel(arg);
    atomic_fetch_sub(&pg_cancels_running, 1);
    return NULL;
}

/* Ask the server to stop the statement running on `conn`, without waiting. */
static void cancel_async(PGconn *conn)
{
    if (atomic_fetch_add(&pg_cancels_running, 1) >= PG_MAX_CANCELS) {
        atomic_fetch_sub(&pg_cancels_running, 1);
        return;
    }
    PGcancel *cn = PQgetCancel(conn);
    pthread_t th;
    pthread_attr_t attr;
    int ok = 0;
    if (cn && pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        ok = pthread_create(&th, &attr, cancel_thread, cn) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!ok) {
        PQfreeCancel(cn);
        atomic_fetch_sub(&pg_cancels_running, 1);
    }
}

/* The deadline passed with a statement in flight: cancel it, drop the
 * connection (its protocol state is unknown) so the next use reconnects. */
static int abandon(pg_conn *pc, const char *what, uint32_t ms)
{
    cancel_async(pc->conn);
    PQfinish(pc->conn);
    pc->conn = NULL;
    return acache_error_set(
        ACACHE_ECATALOG,
        "postgresql %s: catalog query timed out after %u ms (connection "
        "dropped; reconnects on the next call)",
        what, (unsigned)ms);
}

/* Flush what PQsend* queued (the socket is nonblocking) before `deadline`.
 * ACACHE_OK, or ACACHE_ECATALOG with the connection abandoned/broken. */
static int flush_out(pg_conn *pc, const char *what, uint32_t ms, int64_t deadline)
{
    for (;;) {
        int f = PQflush(pc->conn);
        if (f == 0)
            return ACACHE_OK;
        if (f < 0)
            return conn_error(pc->conn, what);
        int w = wait_socket(pc->conn, POLLIN | POLLOUT, deadline);
        if (w == 0)
            return abandon(pc, what, ms);
        if (w < 0 || !PQconsumeInput(pc->conn))
            return conn_error(pc->conn, what);
    }
}

/* Next result of the statement in flight, waiting until `deadline`. *out is
 * NULL once the statement is complete. */
static int next_result(pg_conn *pc, const char *what, uint32_t ms, int64_t deadline,
                       PGresult **out)
{
    *out = NULL;
    while (PQisBusy(pc->conn)) {
        int w = wait_socket(pc->conn, POLLIN, deadline);
        if (w == 0)
            return abandon(pc, what, ms);
        if (w < 0 || !PQconsumeInput(pc->conn))
            return ACACHE_ECATALOG; /* the caller reports it from the conn */
    }
    *out = PQgetResult(pc->conn);
    return ACACHE_OK;
}

static int result_error(PGconn *conn, const PGresult *r, const char *what)
{
    char buf[512];
    const char *m = r ? PQresultErrorMessage(r) : NULL;
    if ((!m || !*m) && conn)
        m = PQerrorMessage(conn);
    trim_msg(m, buf, sizeof buf);
    if (!conn || PQstatus(conn) != CONNECTION_OK)
        return acache_error_set(ACACHE_ECATALOG,
                                "postgresql %s: connection lost (will reconnect on the "
                                "next call): %s",
                                what, buf);
    return acache_error_set(ACACHE_ECATALOG, "postgresql %s: %s", what, buf);
}

/* Send one statement and collect its results before `deadline`. On ACACHE_OK
 * *out is the statement's result (TUPLES_OK or COMMAND_OK). The connection
 * is idle again afterwards, or NULL (abandoned) / broken on failure. */
static int run_statement(pg_conn *pc, const char *what, uint32_t ms, int64_t deadline,
                         const char *sql, int nparams, const char *const *params,
                         PGresult **out)
{
    *out = NULL;
    int sent = nparams >= 0 ? PQsendQueryParams(pc->conn, sql, nparams, NULL, params,
                                                NULL, NULL, 0)
                            : PQsendQuery(pc->conn, sql);
    if (!sent)
        return result_error(pc->conn, NULL, what);
    int rc = flush_out(pc, what, ms, deadline);
    if (rc < 0)
        return rc;
    PGresult *keep = NULL, *r;
    int err = 0;
    for (;;) {
        rc = next_result(pc, what, ms, deadline, &r);
        if (rc < 0) {
            PQclear(keep);
            return pc->conn ? result_error(pc->conn, NULL, what) : rc;
        }
        if (!r)
            break;
        ExecStatusType st = PQresultStatus(r);
        if (!err && st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
            err = result_error(pc->conn, r, what);
            PQclear(keep);
            keep = NULL;
        }
        if (!err && !keep) {
            keep = r;
            continue;
        }
        PQclear(r);
    }
    if (err)
        return err;
    if (!keep)
        return result_error(pc->conn, NULL, what);
    *out = keep;
    return ACACHE_OK;
}

/* Make the session's statement_timeout `want` ms (a round trip only when it
 * changes: usage_scan runs without one, everything else with command_ms). */
static int set_stmt_timeout(pg_conn *pc, const char *what, uint32_t want, uint32_t ms,
                            int64_t deadline)
{
    if (pc->stmt_timeout == want)
        return ACACHE_OK;
    char set[64];
    snprintf(set, sizeof set, "SET statement_timeout = %u", (unsigned)want);
    PGresult *r;
    int rc = run_statement(pc, what, ms, deadline, set, -1, NULL, &r);
    if (rc < 0)
        return rc;
    PQclear(r);
    pc->stmt_timeout = want;
    return ACACHE_OK;
}

/* (Re)connect pc without blocking past the connect timeout, then set the
 * session's statement_timeout. Keywords are applied in order, so anything
 * set in the URI overrides these defaults; the connect deadline is ours
 * (libpq does not apply connect_timeout to PQconnectPoll). */
static int pg_connect(pg_catalog *pg, pg_conn *pc, const char *what)
{
    PQfinish(pc->conn);
    pc->conn = NULL;
    char ct[16], idle[16], intvl[16], user_to[16];
    uint32_t cs = (pg->command_ms + 999) / 1000;
    snprintf(ct, sizeof ct, "%u",
             (unsigned)((pg->connect_ms + 999) / 1000 < 2
                            ? 2
                            : (pg->connect_ms + 999) / 1000));
    /* An idle pooled connection to a vanished host is found dead in about
     * idle + 3 * interval; tcp_user_timeout bounds unacknowledged writes. */
    snprintf(idle, sizeof idle, "%u", (unsigned)(cs < 1 ? 1 : cs));
    snprintf(intvl, sizeof intvl, "%u", (unsigned)(cs / 3 < 1 ? 1 : cs / 3));
    snprintf(user_to, sizeof user_to, "%u", (unsigned)pg->command_ms);
    const char *const keys[] = {"connect_timeout",  "keepalives",
                                "keepalives_idle",  "keepalives_interval",
                                "keepalives_count", "tcp_user_timeout",
                                "client_encoding",  "application_name",
                                "dbname",           NULL};
    const char *const vals[] = {
        ct, "1", idle, intvl, "3", user_to, "UTF8", "libaethercache", pg->uri, NULL};
    int64_t deadline = mono_ms() + pg->connect_ms;
    PGconn *conn = PQconnectStartParams(keys, vals, 1);
    if (!conn)
        return acache__oom();
    pc->conn = conn;
    if (PQstatus(conn) == CONNECTION_BAD)
        return conn_error(conn, what);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED)
            return conn_error(conn, what);
        int w =
            wait_socket(conn, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (w == 0)
            return acache_error_set(ACACHE_ECATALOG,
                                    "postgresql %s: timed out after %u ms", what,
                                    (unsigned)pg->connect_ms);
        st = PQconnectPoll(conn);
    }
    PQsetNoticeProcessor(conn, ignore_notice, NULL);
    if (PQsetnonblocking(conn, 1) != 0)
        return conn_error(conn, what);
    /* Server-side bound for every statement of the session. */
    pc->stmt_timeout = UINT32_MAX;
    return set_stmt_timeout(pc, what, pg->command_ms, pg->connect_ms, deadline);
}

/* Take a usable connection before `deadline`: an idle one (reconnected first
 * if it was dropped, is dead or from an older generation) or a new one while
 * under the cap. */
static int acquire(pg_catalog *pg, const char *what, int64_t deadline, pg_conn **out)
{
    pthread_mutex_lock(&pg->lock);
    while (!pg->idle && pg->open_count >= PG_MAX_CONNS) {
        int64_t at = deadline;
        struct timespec ts = {.tv_sec = (time_t)(at / 1000),
                              .tv_nsec = (long)(at % 1000) * 1000000};
        if (pthread_cond_timedwait(&pg->cond, &pg->lock, &ts) == ETIMEDOUT && !pg->idle &&
            pg->open_count >= PG_MAX_CONNS) {
            pthread_mutex_unlock(&pg->lock);
            return acache_error_set(ACACHE_ECATALOG,
                                    "postgresql %s: catalog query timed out after %u ms "
                                    "waiting for a connection (all %d busy)",
                                    what, (unsigned)pg->command_ms, PG_MAX_CONNS);
        }
    }
    pg_conn *pc = pg->idle;
    unsigned gen = pg->gen;
    if (pc)
        pg->idle = pc->next;
    else
        pg->open_count++;
    pthread_mutex_unlock(&pg->lock);

    if (!pc) {
        pc = acache__calloc(1, sizeof *pc);
        int rc = pc ? pg_connect(pg, pc, "connect") : acache__oom();
        if (rc < 0) {
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
    } else if (!pc->conn || PQstatus(pc->conn) != CONNECTION_OK || pc->gen != gen) {
        pc->gen = gen;
        int rc = pg_connect(pg, pc, "reconnect");
        if (rc < 0) {
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
    /* A dropped (timed-out) connection does not mean the server restarted:
     * only a broken one bumps the generation. */
    if (pc->conn && PQstatus(pc->conn) != CONNECTION_OK)
        pg->gen++;
    pc->next = pg->idle;
    pg->idle = pc;
    pthread_cond_signal(&pg->cond);
    pthread_mutex_unlock(&pg->lock);
}

/* The one way a statement is run: a pooled connection (waiting at most
 * command_ms for one, plus connect_ms when it has to be (re)made), then
 * command_ms for send + results on the client and statement_timeout on the
 * server. */
static int pg_exec(pg_catalog *pg, const char *what, const char *sql, int nparams,
                   const char *const *params, PGresult **out)
{
    pg_conn *pc;
    int rc = acquire(pg, what, mono_ms() + pg->command_ms, &pc);
    if (rc < 0)
        return rc;
    int64_t deadline = mono_ms() + pg->command_ms;
    rc = set_stmt_timeout(pc, what, pg->command_ms, pg->command_ms, deadline);
    if (rc == ACACHE_OK) {
        atomic_fetch_add(&pg->statements, 1);
        rc = run_statement(pc, what, pg->command_ms, deadline, sql, nparams, params, out);
    }
    release(pg, pc);
    return rc;
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
        [ACACHE_BY_ID] =
            "SELECT id, username, email FROM users WHERE id = ANY($1::text[])",
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
    int rc =
        lookup((pg_catalog *)self, "endpoints",
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
        acache_cat_model m = {col(r, i, 0), col(r, i, 1), col(r, i, 2),
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

    const uint32_t ms = pg->command_ms;
    pg_conn *pc;
    int rc = acquire(pg, "usage_scan", mono_ms() + ms, &pc);
    if (rc < 0)
        return rc;
    /* A scan streams rows to a callback for as long as the window is large:
     * no statement_timeout; the client deadline applies to each wait. */
    rc = set_stmt_timeout(pc, "usage_scan", 0, ms, mono_ms() + ms);
    if (rc < 0) {
        release(pg, pc);
        return rc;
    }
    atomic_fetch_add(&pg->statements, 1);
    if (!PQsendQueryParams(pc->conn, USAGE_SQL, 4, NULL, params, NULL, NULL, 0)) {
        rc = result_error(pc->conn, NULL, "usage_scan");
        release(pg, pc);
        return rc;
    }
    /* One row per PGresult: a million-row window never sits in memory. */
    PQsetSingleRowMode(pc->conn);
    rc = flush_out(pc, "usage_scan", ms, mono_ms() + ms);
    if (rc < 0) {
        release(pg, pc);
        return rc;
    }

    /* The client waits at most ms for each row (a scan may stream for longer
     * than that in all). */
    int err = 0;
    PGresult *r;
    for (;;) {
        err = next_result(pc, "usage_scan", ms, mono_ms() + ms, &r);
        if (err < 0) {
            if (pc->conn)
                err = result_error(pc->conn, NULL, "usage_scan");
            break;
        }
        if (!r)
            break;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
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
            PQclear(r);
            if (rc != 0) {
                /* Stop the server producing rows nobody will read: cancel and
                 * drop the connection rather than drain it (a paused server
                 * would make either wait unbounded). */
                cancel_async(pc->conn);
                PQfinish(pc->conn);
                pc->conn = NULL;
                break;
            }
            continue;
        }
        if (st != PGRES_TUPLES_OK && !err)
            err = result_error(pc->conn, r, "usage_scan");
        PQclear(r);
        if (err)
            break;
    }
    if (err && pc->conn && PQstatus(pc->conn) == CONNECTION_OK) {
        /* An error result: read up to the end so the connection is idle. */
        for (;;) {
            if (next_result(pc, "usage_scan", ms, mono_ms() + ms, &r) < 0 || !r)
                break;
            PQclear(r);
        }
    }
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

int acache__catalog_pg_new(acache_catalog **out, const char *uri,
                           uint32_t connect_timeout_ms, uint32_t command_timeout_ms)
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
    pg->connect_ms = connect_timeout_ms ? connect_timeout_ms : 2000;
    pg->command_ms = command_timeout_ms ? command_timeout_ms : 2000;
    pthread_mutex_init(&pg->lock, NULL);
    /* acquire() waits against mono_ms() deadlines. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&pg->cond, &ca);
    pthread_condattr_destroy(&ca);
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
    pg->parent.analysis = acache__pg_analysis;

    /* Connect now so a wrong URI or a server that is down fails acache_open. */
    pg_conn *pc;
    int rc = acquire(pg, "connect", mono_ms() + pg->command_ms, &pc);
    if (rc < 0) {
        pg_free(&pg->parent);
        return rc;
    }
    release(pg, pc);
    *out = &pg->parent;
    return ACACHE_OK;
}
