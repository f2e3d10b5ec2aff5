/* Connection pool of the Redis store: a small set of connections, created
 * lazily and checked out under a mutex, so that concurrent callers do not
 * serialise on one socket. A connection that saw an I/O error is dropped and
 * the next call dials a new one (AUTH, SELECT and SCRIPT LOAD again). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redis_priv.h"

/* ---- errors ---- */

#undef acache__redis_io_fail /* the definitions, not redis_priv.h's analyzer hints */
#undef acache__redis_reply_fail

int acache__redis_io_fail(redis_store *s, const rconn *c, const char *cmd,
                          const char *what)
{
    acache__redis_conn_failed(s); /* breaker.c, sentinel.c */
    if (rconn_err(c) == RIO_TIMEOUT)
        return acache_error_set(ACACHE_ESTORE, "redis %s %s: timed out after %u ms (%s)",
                                cmd, what, (unsigned)s->command_ms, s->where);
    const char *e = rconn_errstr(c);
    return acache_error_set(ACACHE_ESTORE, "redis %s %s: %s (%s)", cmd, what,
                            e && e[0] ? e : "connection failed", s->where);
}

int acache__redis_reply_fail(const redisReply *r, const char *cmd, const char *what)
{
    acache__redis_note_reply(r);   /* -READONLY / -LOADING: sentinel.c */
    acache__redis_cluster_note(r); /* -MOVED / -ASK / -TRYAGAIN: cluster.c */
    if (r && r->type == REDIS_REPLY_ERROR)
        return acache_error_set(ACACHE_ESTORE, "redis %s %s: %s", cmd, what, r->str);
    return acache_error_set(ACACHE_ESTORE, "redis %s %s: unexpected reply type %d", cmd,
                            what, r ? r->type : -1);
}

/* ---- SIGPIPE ----
 * A peer that vanished raises SIGPIPE on write(2), which would kill the
 * host process. Block it on this thread for the duration of an operation and swallow one
 * we caused (the technique of libpq's pq_block_sigpipe), leaving the
 * process's disposition alone. */

void acache__redis_sigpipe_block(const redis_store *s, sigpipe_guard *g)
{
    /* Plain sockets are written with send(MSG_NOSIGNAL); OpenSSL writes with
     * write(2). Most hosts (CPython, Go, servers) ignore SIGPIPE already: one
     * query instead of four syscalls around every command. */
    g->active = 0;
    if (!s->tls)
        return;
    struct sigaction cur;
    g->active = !(sigaction(SIGPIPE, NULL, &cur) == 0 && cur.sa_handler == SIG_IGN);
    if (!g->active)
        return;
    sigset_t set, pending;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
}

void acache__redis_sigpipe_restore(sigpipe_guard *g)
{
    if (!g->active)
        return;
    if (!g->was_pending) {
        sigset_t set, pending;
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE)) {
            struct timespec zero = {0, 0};
            sigemptyset(&set);
            sigaddset(&set, SIGPIPE);
            while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- connections ---- */

int acache__redis_command(rconn *c, int argc, const char **argv, const size_t *lens,
                          redisReply **out)
{
    *out = NULL;
    if (rconn_append(c, argc, argv, lens) != 0)
        return -1;
    return rconn_read(c, out);
}

/* A command of the dial sequence: an error reply fails the dial. */
static int dial_step(redis_store *s, rconn *c, int argc, const char **argv,
                     const char *what)
{
    redisReply *r;
    if (acache__redis_command(c, argc, argv, NULL, &r) != 0)
        return acache__redis_io_fail(s, c, argv[0], what);
    int rc = ACACHE_OK;
    if (r->type == REDIS_REPLY_ERROR)
        rc = acache__redis_reply_fail(r, argv[0], what);
    freeReplyObject(r);
    return rc;
}

/* AUTH: a refusal names the server and the user, never the password. */
static int dial_auth(redis_store *s, rconn *c, int argc, const char **argv)
{
    const char *who = s->user ? s->user : "default";
    redisReply *r;
    if (acache__redis_command(c, argc, argv, NULL, &r) != 0)
        return acache__redis_io_fail(s, c, "AUTH", who);
    int rc = ACACHE_OK;
    if (r->type == REDIS_REPLY_ERROR) {
        /* The server's text is kept to tell WRONGPASS from NOPERM etc.; it
         * never echoes the password. */
        rc = acache_error_set(ACACHE_ESTORE,
                              "redis %s: authentication failed for user \"%s\" (%.*s)",
                              s->where, who, (int)(r->len < 200 ? r->len : 200), r->str);
    } else if (r->type != REDIS_REPLY_STATUS) {
        rc = acache__redis_reply_fail(r, "AUTH", who);
    }
    freeReplyObject(r);
    return rc;
}

int acache__redis_dial(redis_store *s, rconn **out, int first)
{
    int rc0;
    rconn_target t = {s->host,       s->port,    s->path, s->connect_ms,
                      s->command_ms, s->tls_ctx, s->sni,  s->verify};
    char err[256], primary[256];
    /* Sentinel: the address is the primary's, resolved by sentinel.c. */
    if (s->sentinel &&
        (rc0 = acache__redis_sentinel_target(s, &t, primary, sizeof primary)))
        return rc0;
    rconn *c = rconn_open(&t, err, sizeof err);
    if (!c) {
        if (!err[0])
            return acache__oom();
        acache__redis_conn_failed(s);
        if (s->sentinel)
            return acache_error_set(ACACHE_ESTORE, "redis connect %s: primary %s:%d: %s",
                                    s->where, t.host, t.port, err);
        return acache_error_set(ACACHE_ESTORE, "redis connect %s: %s", s->where, err);
    }
    int rc = ACACHE_OK;
    if (s->password) {
        const char *argv[3];
        int argc = 0;
        argv[argc++] = "AUTH";
        if (s->user)
            argv[argc++] = s->user;
        argv[argc++] = s->password;
        rc = dial_auth(s, c, argc, argv);
    }
    if (!rc && s->sentinel)
        rc = acache__redis_sentinel_check_role(s, c, &t);
    if (!rc && s->db) {
        char dbs[16];
        snprintf(dbs, sizeof dbs, "%d", s->db);
        const char *argv[] = {"SELECT", dbs};
        rc = dial_step(s, c, 2, argv, dbs);
    }
    if (!rc)
        rc = acache__redis_load_scripts(s, c, first);
    if (rc) {
        rconn_close(c);
        return rc;
    }
    *out = c;
    return ACACHE_OK;
}

/* `check`: poll an idle connection for a close or stray bytes before use
 * (one syscall). Callers that retry a broken connection once (idempotent
 * reads, acache__redis_run) skip it on their first attempt. */
static int pool_take(redis_store *s, rconn **out, int check)
{
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->n_idle > 0) {
            rconn *c = s->idle[--s->n_idle];
            pthread_mutex_unlock(&s->lock);
            if (!check || !rconn_stale(c)) {
                *out = c;
                return ACACHE_OK;
            }
            rconn_close(c);
            pthread_mutex_lock(&s->lock);
            s->n_total--;
            continue;
        }
        if (s->n_total < POOL_MAX) {
            s->n_total++;
            pthread_mutex_unlock(&s->lock);
            int rc = acache__redis_dial(s, out, 0);
            if (rc) {
                acache__redis_notes |= RNOTE_NOT_RUN; /* nothing was sent */
                pthread_mutex_lock(&s->lock);
                s->n_total--;
                pthread_cond_signal(&s->cond);
                pthread_mutex_unlock(&s->lock);
            }
            return rc;
        }
        pthread_cond_wait(&s->cond, &s->lock);
    }
}

static int conn_take(redis_store *s, rconn **out, int check)
{
    int rc = pool_take(s, out, check);
    /* redis-cluster://: ASKING before the command an -ASK redirects (cluster.c). */
    if (!rc && (rc = acache__redis_cluster_asking(s, *out)))
        acache__redis_conn_put(s, *out, 1);
    return rc;
}

int acache__redis_conn_get(redis_store *s, rconn **out)
{
    return conn_take(s, out, 1);
}

void acache__redis_conn_put(redis_store *s, rconn *c, int discard)
{
    if (discard || rconn_err(c) != RIO_OK) {
        rconn_close(c);
        pthread_mutex_lock(&s->lock);
        s->n_total--;
    } else {
        pthread_mutex_lock(&s->lock);
        s->idle[s->n_idle++] = c;
    }
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

int acache__redis_run(redis_store *s, int retry, const char *cmd, const char *what,
                      int argc, const char **argv, const size_t *lens, redisReply **out)
{
    sigpipe_guard g;
    acache__redis_sigpipe_block(s, &g);
    int rc;
    for (int attempt = 0;; attempt++) {
        rconn *c;
        if ((rc = conn_take(s, &c, !(retry && attempt == 0))))
            break;
        redisReply *r;
        if (acache__redis_command(c, argc, argv, lens, &r) == 0) {
            acache__redis_conn_put(s, c, 0);
            *out = r;
            rc = ACACHE_OK;
            break;
        }
        int again = retry && attempt == 0 && rconn_err(c) == RIO_BROKEN;
        rc = acache__redis_io_fail(s, c, cmd, what);
        acache__redis_conn_put(s, c, 1);
        if (!again)
            break;
    }
    acache__redis_sigpipe_restore(&g);
    return rc;
}
