/* Redis store: Aether's keys and JSON values in a shared redis-server.
 *
 * Connections: a small pool of blocking hiredis contexts, created lazily and
 * checked out under a mutex, so that concurrent callers do not serialise on
 * one socket. A context that saw an I/O error is dropped and the next call
 * dials a new one (AUTH, SELECT and SCRIPT LOAD again).
 *
 * Retries: a pooled context whose server went away (restart) is detected
 * before use by a zero-timeout poll() (an idle RESP connection never has
 * bytes to read, so readability means EOF or garbage), so no command is ever
 * sent on a known-dead socket. If a connection still breaks mid-command,
 * reads (GET, MGET, SCAN, TTL) and SET (same bytes again) are retried once on
 * a fresh connection; touch, delete_if and UNLINK are not, since the server
 * may have run them before the connection broke and a replay would count a
 * request twice or misreport the deleted count. Timeouts are never retried
 * (the caller already waited command_timeout_ms).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "../core/core.h"
#include "../util/json.h"
#include "redis_scripts.h"

#define POOL_MAX 16
#define DEL_BATCH 500    /* keys per UNLINK / delete_if script call */
#define PIPE_GROUP 16    /* batches appended before reading replies */
#define TTL_BATCH 1000   /* TTL commands appended before reading replies */
#define SCAN_COUNT "500" /* keeps each SCAN/MGET well under 10 ms at 1M keys */

typedef struct redis_store {
    acache_store parent;
    char *host; /* TCP, or NULL for a unix socket */
    int port;
    char *path; /* unix socket */
    char *user, *password;
    int db;
    char where[300]; /* host:port or path, for messages (no secrets) */
    struct timeval connect_tv, command_tv;
    uint32_t command_ms;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    redisContext *idle[POOL_MAX];
    int n_idle, n_total;

    /* Set by the first dial in acache__store_redis_new (before any sharing),
     * read-only afterwards: the SHA1 of a script is the same on every server. */
    char touch_sha[41], delete_sha[41];
} redis_store;

/* ---- errors ---- */

static int is_timeout(const redisContext *c, int err)
{
    return c->err == REDIS_ERR_IO && (err == EAGAIN || err == EWOULDBLOCK);
}

/* The connection broke (rather than timed out): a replay on a new one is
 * meaningful. */
static int is_broken(const redisContext *c, int err)
{
    return c->err == REDIS_ERR_EOF ||
           (c->err == REDIS_ERR_IO && (err == ECONNRESET || err == EPIPE));
}

static int io_fail(redis_store *s, const redisContext *c, int err, const char *cmd,
                   const char *what)
{
    if (is_timeout(c, err))
        return acache_error_set(ACACHE_ESTORE, "redis %s %s: timed out after %u ms (%s)",
                                cmd, what, (unsigned)s->command_ms, s->where);
    return acache_error_set(ACACHE_ESTORE, "redis %s %s: %s (%s)", cmd, what,
                            c->errstr[0] ? c->errstr : "connection failed", s->where);
}

static int reply_fail(const redisReply *r, const char *cmd, const char *what)
{
    if (r && r->type == REDIS_REPLY_ERROR)
        return acache_error_set(ACACHE_ESTORE, "redis %s %s: %s", cmd, what, r->str);
    return acache_error_set(ACACHE_ESTORE, "redis %s %s: unexpected reply type %d", cmd,
                            what, r ? r->type : -1);
}

/* ---- SIGPIPE ----
 * hiredis writes with write(2), so a peer that vanished raises SIGPIPE and
 * would kill the host process. Block it on this thread for the duration of
 * an operation and swallow one we caused (the technique of libpq's
 * pq_block_sigpipe), leaving the process's disposition alone. */

typedef struct sigpipe_guard {
    int active; /* 0: SIGPIPE was ignored already, nothing to undo */
    sigset_t old;
    int was_pending;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g)
{
    /* Most hosts (CPython, Go, servers) ignore SIGPIPE already: one query
     * instead of four syscalls around every command. */
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

static void sigpipe_restore(sigpipe_guard *g)
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

static redisReply *command(redisContext *c, int argc, const char **argv,
                           const size_t *lens, int *err)
{
    errno = 0;
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    *err = errno;
    return r;
}

static int load_script(redis_store *s, redisContext *c, const char *text, char *sha,
                       int first)
{
    const char *argv[] = {"SCRIPT", "LOAD", text};
    int err;
    redisReply *r = command(c, 3, argv, NULL, &err);
    if (!r)
        return io_fail(s, c, err, "SCRIPT", "LOAD");
    int rc = ACACHE_OK;
    if (r->type != REDIS_REPLY_STRING || r->len != 40)
        rc = reply_fail(r, "SCRIPT", "LOAD");
    else if (first)
        memcpy(sha, r->str, 41);
    freeReplyObject(r);
    return rc;
}

/* Connect, authenticate, select the database and load the scripts. */
static int dial(redis_store *s, redisContext **out, int first)
{
    redisContext *c = s->path ? redisConnectUnixWithTimeout(s->path, s->connect_tv)
                              : redisConnectWithTimeout(s->host, s->port, s->connect_tv);
    if (!c)
        return acache__oom();
    int rc = ACACHE_OK, err;
    if (c->err) {
        rc = acache_error_set(ACACHE_ESTORE, "redis connect %s: %s", s->where, c->errstr);
        goto fail;
    }
    if (redisSetTimeout(c, s->command_tv) != REDIS_OK) {
        rc = acache_error_set(ACACHE_ESTORE, "redis connect %s: cannot set timeout: %s",
                              s->where, c->errstr);
        goto fail;
    }
    if (!s->path)
        redisEnableKeepAlive(c);
    if (s->password) {
        const char *argv[3];
        int argc = 0;
        argv[argc++] = "AUTH";
        if (s->user)
            argv[argc++] = s->user;
        argv[argc++] = s->password;
        redisReply *r = command(c, argc, argv, NULL, &err);
        if (!r) {
            rc = io_fail(s, c, err, "AUTH", s->user ? s->user : "(default user)");
            goto fail;
        }
        if (r->type == REDIS_REPLY_ERROR)
            rc = reply_fail(r, "AUTH", s->user ? s->user : "(default user)");
        freeReplyObject(r);
        if (rc)
            goto fail;
    }
    if (s->db) {
        char dbs[16];
        snprintf(dbs, sizeof dbs, "%d", s->db);
        const char *argv[] = {"SELECT", dbs};
        redisReply *r = command(c, 2, argv, NULL, &err);
        if (!r) {
            rc = io_fail(s, c, err, "SELECT", dbs);
            goto fail;
        }
        if (r->type == REDIS_REPLY_ERROR)
            rc = reply_fail(r, "SELECT", dbs);
        freeReplyObject(r);
        if (rc)
            goto fail;
    }
    if ((rc = load_script(s, c, ACACHE_REDIS_TOUCH_LUA, s->touch_sha, first)) ||
        (rc = load_script(s, c, ACACHE_REDIS_DELETE_IF_LUA, s->delete_sha, first)))
        goto fail;
    *out = c;
    return ACACHE_OK;
fail:
    redisFree(c);
    return rc;
}

/* An idle connection must have nothing to read; if it does, the server
 * closed it (EOF) or it is out of step: unusable either way. */
static int conn_stale(redisContext *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return c->err != 0 || poll(&p, 1, 0) != 0;
}

static int conn_get(redis_store *s, redisContext **out)
{
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if (s->n_idle > 0) {
            redisContext *c = s->idle[--s->n_idle];
            pthread_mutex_unlock(&s->lock);
            if (!conn_stale(c)) {
                *out = c;
                return ACACHE_OK;
            }
            redisFree(c);
            pthread_mutex_lock(&s->lock);
            s->n_total--;
            continue;
        }
        if (s->n_total < POOL_MAX) {
            s->n_total++;
            pthread_mutex_unlock(&s->lock);
            int rc = dial(s, out, 0);
            if (rc) {
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

/* Return a connection; one that failed (or still owes replies) is closed. */
static void conn_put(redis_store *s, redisContext *c, int discard)
{
    if (discard || c->err) {
        redisFree(c);
        pthread_mutex_lock(&s->lock);
        s->n_total--;
    } else {
        pthread_mutex_lock(&s->lock);
        s->idle[s->n_idle++] = c;
    }
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* One command on a pooled connection; `retry` replays it once on a fresh
 * connection when the old one broke. Error replies are returned as replies
 * (the caller decides); I/O failures set the message and return ESTORE. */
static int run(redis_store *s, int retry, const char *cmd, const char *what, int argc,
               const char **argv, const size_t *lens, redisReply **out)
{
    sigpipe_guard g;
    sigpipe_block(&g);
    int rc;
    for (int attempt = 0;; attempt++) {
        redisContext *c;
        if ((rc = conn_get(s, &c)))
            break;
        int err;
        redisReply *r = command(c, argc, argv, lens, &err);
        if (r) {
            conn_put(s, c, 0);
            *out = r;
            rc = ACACHE_OK;
            break;
        }
        int again = retry && attempt == 0 && is_broken(c, err);
        rc = io_fail(s, c, err, cmd, what);
        conn_put(s, c, 1);
        if (!again)
            break;
    }
    sigpipe_restore(&g);
    return rc;
}

/* ---- raw keys ---- */

static int r_get(acache_store *self, const char *key, acache_buf *out)
{
    redis_store *s = (redis_store *)self;
    const char *argv[] = {"GET", key};
    redisReply *r;
    int rc = run(s, 1, "GET", key, 2, argv, NULL, &r);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_NIL)
        rc = acache_error_set(ACACHE_ENOTFOUND, "no such key: %s", key);
    else if (r->type == REDIS_REPLY_STRING)
        rc = acache__buf_set(out, r->str, r->len);
    else
        rc = reply_fail(r, "GET", key);
    freeReplyObject(r);
    return rc;
}

static int r_set(acache_store *self, const char *key, const char *value, size_t len,
                 uint32_t ttl_s)
{
    redis_store *s = (redis_store *)self;
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%u", (unsigned)ttl_s);
    const char *argv[] = {"SET", key, value, "EX", ttl};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
    redisReply *r;
    int rc = run(s, 1, "SET", key, ttl_s ? 5 : 3, argv, lens, &r);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_ERROR)
        rc = reply_fail(r, "SET", key);
    freeReplyObject(r);
    return rc;
}

/* A key for an error message: bytes up to the first NUL, at most 200. */
typedef struct label {
    char text[208];
} label;

static const char *key_label(label *l, const acache_key *k)
{
    size_t n = k->len < 200 ? k->len : 200;
    const char *nul = memchr(k->ptr, '\0', n);
    if (nul)
        n = (size_t)(nul - k->ptr);
    memcpy(l->text, k->ptr, n);
    l->text[n] = '\0';
    return l->text;
}

/* Everything appended on `c` must be read before it can be reused; on an
 * early exit the connection is discarded instead. */
static int r_del(acache_store *self, const acache_key *keys, size_t n, size_t *deleted)
{
    redis_store *s = (redis_store *)self;
    *deleted = 0;
    if (n == 0)
        return ACACHE_OK;
    size_t cap = (n < DEL_BATCH ? n : DEL_BATCH) + 1;
    const char **argv = acache__malloc(cap * sizeof *argv);
    size_t *lens = acache__malloc(cap * sizeof *lens);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return acache__oom();
    }
    sigpipe_guard g;
    sigpipe_block(&g);
    redisContext *c = NULL;
    int rc = conn_get(s, &c);
    size_t done = 0;
    label lb;
    while (!rc && done < n) {
        size_t group_start = done;
        int appended = 0;
        for (; appended < PIPE_GROUP && done < n; appended++) {
            size_t m = n - done < DEL_BATCH ? n - done : DEL_BATCH;
            argv[0] = "UNLINK";
            lens[0] = 6;
            for (size_t i = 0; i < m; i++) {
                argv[i + 1] = keys[done + i].ptr;
                lens[i + 1] = keys[done + i].len;
            }
            redisAppendCommandArgv(c, (int)(m + 1), argv, lens);
            done += m;
        }
        for (int i = 0; i < appended; i++) {
            redisReply *r;
            errno = 0;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                rc = io_fail(s, c, errno, "UNLINK", key_label(&lb, &keys[group_start]));
                break;
            }
            if (r->type == REDIS_REPLY_INTEGER)
                *deleted += (size_t)r->integer;
            else if (!rc)
                rc = reply_fail(r, "UNLINK", key_label(&lb, &keys[group_start]));
            freeReplyObject(r);
        }
    }
    if (c)
        conn_put(s, c, rc != 0);
    sigpipe_restore(&g);
    free(argv);
    free(lens);
    return rc;
}

static int r_ttl(acache_store *self, const char *const *keys, size_t n, int64_t *out)
{
    redis_store *s = (redis_store *)self;
    int rc = ACACHE_OK;
    sigpipe_guard g;
    sigpipe_block(&g);
    for (int attempt = 0; attempt < 2; attempt++) {
        redisContext *c;
        if ((rc = conn_get(s, &c)))
            break;
        int again = 0;
        for (size_t done = 0; !rc && done < n;) {
            size_t m = n - done < TTL_BATCH ? n - done : TTL_BATCH;
            for (size_t i = 0; i < m; i++) {
                const char *argv[] = {"TTL", keys[done + i]};
                redisAppendCommandArgv(c, 2, argv, NULL);
            }
            for (size_t i = 0; i < m; i++) {
                redisReply *r;
                errno = 0;
                if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                    again = attempt == 0 && is_broken(c, errno);
                    rc = io_fail(s, c, errno, "TTL", keys[done + i]);
                    break;
                }
                if (r->type == REDIS_REPLY_INTEGER)
                    out[done + i] = r->integer;
                else if (!rc)
                    rc = reply_fail(r, "TTL", keys[done + i]);
                freeReplyObject(r);
            }
            done += m;
        }
        conn_put(s, c, rc != 0);
        if (!again)
            break;
        rc = ACACHE_OK;
    }
    sigpipe_restore(&g);
    return rc;
}

/* ---- SCAN ---- */

/* SCAN's MATCH is a glob: escape so that the prefix is matched literally. */
static char *match_pattern(const char *prefix)
{
    size_t n = strlen(prefix);
    char *p = acache__malloc(2 * n + 2), *o = p;
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (strchr("*?[]\\", prefix[i]))
            *o++ = '\\';
        *o++ = prefix[i];
    }
    *o++ = '*';
    *o = '\0';
    return p;
}

/* Buffers reused across pages so the listing does no per-key allocation
 * beyond what hiredis and the JSON parser do. */
typedef struct scan_bufs {
    const char **argv;
    size_t *lens;
    acache_entry *entries;
    acache_record *recs;
    size_t cap;
    /* record strings copied out of the parser (offsets into arena, fixed up
     * into pointers once the page is parsed: the arena may move while growing) */
    size_t (*offs)[5];
    char *arena;
    size_t arena_len, arena_cap;
} scan_bufs;

static int bufs_reserve(scan_bufs *b, size_t n)
{
    if (n <= b->cap)
        return ACACHE_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < n)
        cap *= 2;
    void *p;
    if (!(p = acache__realloc(b->argv, (cap + 1) * sizeof *b->argv)))
        return acache__oom();
    b->argv = p;
    if (!(p = acache__realloc(b->lens, (cap + 1) * sizeof *b->lens)))
        return acache__oom();
    b->lens = p;
    if (!(p = acache__realloc(b->entries, cap * sizeof *b->entries)))
        return acache__oom();
    b->entries = p;
    if (!(p = acache__realloc(b->recs, cap * sizeof *b->recs)))
        return acache__oom();
    b->recs = p;
    if (!(p = acache__realloc(b->offs, cap * sizeof *b->offs)))
        return acache__oom();
    b->offs = p;
    b->cap = cap;
    return ACACHE_OK;
}

static void bufs_free(scan_bufs *b)
{
    free(b->argv);
    free(b->lens);
    free(b->entries);
    free(b->recs);
    free(b->offs);
    free(b->arena);
}

#define NO_STR ((size_t)-1)

typedef struct parse_ctx {
    scan_bufs *b;
    size_t i;
    int oom;
} parse_ctx;

static size_t arena_put(parse_ctx *p, const char *str)
{
    if (!str)
        return NO_STR;
    scan_bufs *b = p->b;
    size_t n = strlen(str) + 1;
    if (b->arena_len + n > b->arena_cap) {
        size_t cap = b->arena_cap ? b->arena_cap : 64 * 1024;
        while (cap < b->arena_len + n)
            cap *= 2;
        char *a = acache__realloc(b->arena, cap);
        if (!a) {
            p->oom = 1;
            return NO_STR;
        }
        b->arena = a;
        b->arena_cap = cap;
    }
    size_t off = b->arena_len;
    memcpy(b->arena + off, str, n);
    b->arena_len += n;
    return off;
}

static void parse_cb(const acache_record *rec, void *payload)
{
    parse_ctx *p = payload;
    size_t *o = p->b->offs[p->i];
    p->b->recs[p->i] = *rec;
    o[0] = arena_put(p, rec->provider_id);
    o[1] = arena_put(p, rec->endpoint_id);
    o[2] = arena_put(p, rec->key_id);
    o[3] = arena_put(p, rec->api_format);
    o[4] = arena_put(p, rec->model_name);
}

static const char *arena_ptr(const scan_bufs *b, size_t off)
{
    return off == NO_STR ? NULL : b->arena + off;
}

/* Turn one page (keys from SCAN, values from MGET or NULL) into entries. */
static int build_page(scan_bufs *b, const redisReply *keys, const redisReply *vals,
                      int parse, size_t *count)
{
    size_t n = keys->elements;
    if (vals && (vals->type != REDIS_REPLY_ARRAY || vals->elements != n))
        return acache_error_set(ACACHE_ESTORE, "redis MGET: unexpected reply");
    b->arena_len = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *k = keys->element[i];
        acache_entry *e = &b->entries[i];
        memset(e, 0, sizeof *e);
        e->key = k->str;
        e->key_len = k->len;
        const redisReply *v = vals ? vals->element[i] : NULL;
        if (!v || v->type != REDIS_REPLY_STRING)
            continue;
        if (!parse) {
            e->value = v->str;
            e->value_len = v->len;
            continue;
        }
        parse_ctx p = {b, i, 0};
        if (acache_record_parse(v->str, v->len, parse_cb, &p) == ACACHE_OK) {
            if (p.oom)
                return acache__oom();
            e->record = &b->recs[i]; /* strings fixed up below */
        }
    }
    if (parse) {
        for (size_t i = 0; i < n; i++) {
            if (!b->entries[i].record)
                continue;
            acache_record *r = &b->recs[i];
            r->provider_id = arena_ptr(b, b->offs[i][0]);
            r->endpoint_id = arena_ptr(b, b->offs[i][1]);
            r->key_id = arena_ptr(b, b->offs[i][2]);
            r->api_format = arena_ptr(b, b->offs[i][3]);
            r->model_name = arena_ptr(b, b->offs[i][4]);
        }
    }
    *count = n;
    return ACACHE_OK;
}

static int valid_scan_reply(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
           r->element[0]->type == REDIS_REPLY_STRING &&
           r->element[1]->type == REDIS_REPLY_ARRAY;
}

/* Queue the requests that follow a SCAN page: the MGET of its keys (when
 * values are wanted) and the SCAN of the next page (unless it was the last). */
static int queue_page(redisContext *c, scan_bufs *b, const redisReply *page,
                      const char **scan_argv, int with_values, int *want_vals,
                      int *want_scan)
{
    const redisReply *keys = page->element[1];
    size_t n = keys->elements;
    int rc = bufs_reserve(b, n);
    if (rc)
        return rc;
    *want_vals = with_values && n > 0;
    if (*want_vals) {
        b->argv[0] = "MGET";
        b->lens[0] = 4;
        for (size_t i = 0; i < n; i++) {
            b->argv[i + 1] = keys->element[i]->str;
            b->lens[i + 1] = keys->element[i]->len;
        }
        redisAppendCommandArgv(c, (int)(n + 1), b->argv, b->lens);
    }
    *want_scan = strcmp(page->element[0]->str, "0") != 0;
    if (*want_scan) {
        scan_argv[1] = page->element[0]->str;
        redisAppendCommandArgv(c, 6, scan_argv, NULL);
    }
    return ACACHE_OK;
}

static int check_page(const redisReply *page, const char *pat)
{
    if (!valid_scan_reply(page))
        return reply_fail(page, "SCAN", pat);
    const redisReply *keys = page->element[1];
    for (size_t i = 0; i < keys->elements; i++)
        if (keys->element[i]->type != REDIS_REPLY_STRING)
            return reply_fail(keys->element[i], "SCAN", pat);
    return ACACHE_OK;
}

/* SCAN pages with their values, pipelined one page ahead: the MGET of page
 * k+1 and the SCAN of page k+2 are on the wire while page k is parsed and
 * handed to the callback, so Redis and the JSON parser work at the same time
 * (parsing is most of a listing's cost). `*called` tells the caller whether
 * the callback ran (after which a retry would repeat entries). */
static int scan_once(redis_store *s, redisContext *c, const char *pat, int with_values,
                     int parse, acache_entry_batch_cb cb, void *payload, scan_bufs *b,
                     int *called, int *broken)
{
    redisReply *page = NULL, *vals = NULL, *next = NULL;
    int rc, want_vals = 0, want_scan = 0;
    const char *scan_argv[] = {"SCAN", "0", "MATCH", pat, "COUNT", SCAN_COUNT};
    redisAppendCommandArgv(c, 6, scan_argv, NULL);
    errno = 0;
    if (redisGetReply(c, (void **)&page) != REDIS_OK) {
        *broken = is_broken(c, errno);
        return io_fail(s, c, errno, "SCAN", pat);
    }
    if ((rc = check_page(page, pat)) ||
        (rc = queue_page(c, b, page, scan_argv, with_values, &want_vals, &want_scan)))
        goto out;
    while (page) {
        errno = 0;
        if (want_vals && redisGetReply(c, (void **)&vals) != REDIS_OK) {
            rc = io_fail(s, c, errno, "MGET", pat);
            goto out;
        }
        want_vals = 0;
        errno = 0;
        if (want_scan && redisGetReply(c, (void **)&next) != REDIS_OK) {
            rc = io_fail(s, c, errno, "SCAN", pat);
            goto out;
        }
        want_scan = 0;
        if (vals && vals->type == REDIS_REPLY_ERROR) {
            rc = reply_fail(vals, "MGET", pat);
            goto out;
        }
        /* Put the following page's requests on the wire before parsing. */
        if (next) {
            if ((rc = check_page(next, pat)) ||
                (rc = queue_page(c, b, next, scan_argv, with_values, &want_vals,
                                 &want_scan)))
                goto out;
            for (int done = 0; !done;) {
                errno = 0;
                if (redisBufferWrite(c, &done) != REDIS_OK) {
                    rc = io_fail(s, c, errno, "SCAN", pat);
                    goto out;
                }
            }
        }
        size_t count = 0;
        if ((rc = build_page(b, page->element[1], vals, parse, &count)))
            goto out;
        if (count > 0) {
            *called = 1;
            if ((rc = cb(b->entries, count, payload)))
                goto out;
        }
        freeReplyObject(page);
        page = next;
        next = NULL;
        if (vals)
            freeReplyObject(vals);
        vals = NULL;
    }
out:
    /* Stopped early with replies still owed: read them so the connection
     * goes back to the pool clean (an I/O error discards it instead). */
    while (!c->err && (want_vals || want_scan)) {
        redisReply *junk = NULL;
        if (redisGetReply(c, (void **)&junk) != REDIS_OK)
            break;
        freeReplyObject(junk);
        if (want_vals)
            want_vals = 0;
        else
            want_scan = 0;
    }
    if (page)
        freeReplyObject(page);
    if (next)
        freeReplyObject(next);
    if (vals)
        freeReplyObject(vals);
    return rc;
}

static int do_scan(redis_store *s, const char *prefix, int with_values, int parse,
                   acache_entry_batch_cb cb, void *payload)
{
    char *pat = match_pattern(prefix ? prefix : "");
    if (!pat)
        return acache__oom();
    scan_bufs b;
    memset(&b, 0, sizeof b);
    sigpipe_guard g;
    sigpipe_block(&g);
    int rc;
    for (int attempt = 0;; attempt++) {
        redisContext *c;
        if ((rc = conn_get(s, &c)))
            break;
        int called = 0, broken = 0;
        rc = scan_once(s, c, pat, with_values, parse, cb, payload, &b, &called, &broken);
        /* Only an I/O failure leaves replies owed; keep the connection
         * otherwise (a callback's stop code or an error reply is fine). */
        conn_put(s, c, c->err != 0);
        if (!(rc && broken && !called && attempt == 0))
            break;
    }
    sigpipe_restore(&g);
    bufs_free(&b);
    free(pat);
    return rc;
}

static int r_scan(acache_store *self, const char *prefix, int with_values,
                  acache_entry_batch_cb cb, void *payload)
{
    return do_scan((redis_store *)self, prefix, with_values, 0, cb, payload);
}

/* ---- affinity records ---- */

static int r_affinity_scan(acache_store *self, const char *prefix,
                           acache_entry_batch_cb cb, void *payload)
{
    return do_scan((redis_store *)self, prefix, 1, 1, cb, payload);
}

static int r_affinity_get(acache_store *self, const char *key, acache_record_cb cb,
                          void *payload)
{
    redis_store *s = (redis_store *)self;
    const char *argv[] = {"GET", key};
    redisReply *r;
    int rc = run(s, 1, "GET", key, 2, argv, NULL, &r);
    if (rc)
        return rc;
    if (r->type == REDIS_REPLY_NIL)
        rc = acache_error_set(ACACHE_ENOTFOUND, "no affinity at %s", key);
    else if (r->type == REDIS_REPLY_STRING)
        rc = acache_record_parse(r->str, r->len, cb, payload);
    else
        rc = reply_fail(r, "GET", key);
    freeReplyObject(r);
    return rc;
}

static int is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* The value of a touched pin, rendered in C so the script only concatenates:
 * `full` is a new pin's value; `head`/`tail` frame created_at and
 * request_count for a refresh. One allocation holds all three. */
typedef struct {
    char *mem;
    const char *full, *head, *tail, *pin; /* pin: `{"provider_id": .., "key_id": .., ` */
} touch_text;

static int render_touch(touch_text *t, const acache_touch_req *req)
{
    json_t *o = json_object();
    int bad = !o;
    if (o) {
        bad |= acache__json_set(o, "provider_id", acache__json_str(req->provider_id));
        bad |= acache__json_set(o, "endpoint_id", acache__json_str(req->endpoint_id));
        bad |= acache__json_set(o, "key_id", acache__json_str(req->key_id));
        bad |= acache__json_set(o, "api_format", acache__json_str(req->api_format));
        bad |= acache__json_set(o, "model_name", acache__json_str(req->model_name));
    }
    /* Strings only: jansson's own output has Python's separators. */
    char *strs = bad ? NULL : json_dumps(o, 0);
    json_decref(o);
    if (!strs)
        return acache__oom();
    size_t slen = strlen(strs) - 1; /* without the closing brace */
    /* The pin prefix ends right before ", \"api_format\": " (searched from the
     * end: the value strings before it cannot contain that unescaped). */
    static const char fmt_key[] = ", \"api_format\": ";
    char *fk = strstr(strs, fmt_key);
    for (char *n = fk; n; n = strstr(n + 1, fmt_key))
        fk = n;
    size_t plen = fk ? (size_t)(fk - strs) + 2 : 0;
    char now[40], exp[40];
    acache__fmt_double(now, sizeof now, req->now);
    acache__fmt_double(exp, sizeof exp, req->now + req->ttl_s);
    static const char c_at[] = ", \"created_at\": ", e_at[] = ", \"expire_at\": ",
                      r_ct[] = ", \"request_count\": ";
    size_t cap = 3 * slen + 2 * sizeof c_at + 2 * sizeof e_at + 2 * sizeof r_ct +
                 strlen(now) + 2 * strlen(exp) + 16;
    char *m = acache__malloc(cap);
    if (!m) {
        free(strs);
        return acache__oom();
    }
    int a =
        snprintf(m, cap, "%.*s%s%s%s%s%s1}", (int)slen, strs, c_at, now, e_at, exp, r_ct);
    int b = snprintf(m + a + 1, cap - (size_t)a - 1, "%.*s%s", (int)slen, strs, c_at);
    int c = snprintf(m + a + b + 2, cap - (size_t)(a + b) - 2, "%s%s%s", e_at, exp, r_ct);
    /* No prefix found (cannot happen for our own rendering): an empty prefix
     * disables the script's fast path rather than matching everything. */
    snprintf(m + a + b + c + 3, cap - (size_t)(a + b + c) - 3, "%.*s", (int)plen,
             plen ? strs : "");
    free(strs);
    t->mem = m;
    t->full = m;
    t->head = m + a + 1;
    t->tail = m + a + b + 2;
    t->pin = m + a + b + c + 3;
    return ACACHE_OK;
}

static int r_affinity_touch(acache_store *self, const acache_touch_req *req, int *result,
                            acache_record_cb cb, void *payload)
{
    redis_store *s = (redis_store *)self;
    char now[40], ttl[16];
    snprintf(now, sizeof now, "%.17g", req->now);
    snprintf(ttl, sizeof ttl, "%u", (unsigned)req->ttl_s);
    touch_text tt = {NULL, NULL, NULL, NULL, NULL};
    int rc = render_touch(&tt, req);
    if (rc)
        return rc;
    const char *argv[] = {
        "EVALSHA",        s->touch_sha, "1",   req->key, req->provider_id,
        req->endpoint_id, req->key_id,  now,   ttl,      tt.full,
        tt.head,          tt.tail,      tt.pin};
    const int argc = (int)(sizeof argv / sizeof argv[0]);
    redisReply *r;
    /* Not retried (see the top of the file): a replay could count twice. */
    rc = run(s, 0, "EVALSHA", req->key, argc, argv, NULL, &r);
    if (!rc && is_noscript(r)) {
        /* Script cache flushed under us: the script did not run, so EVAL
         * (which also caches it again) is safe. */
        freeReplyObject(r);
        argv[0] = "EVAL";
        argv[1] = ACACHE_REDIS_TOUCH_LUA;
        rc = run(s, 0, "EVAL", req->key, argc, argv, NULL, &r);
    }
    free(tt.mem);
    if (rc)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[2]->type != REDIS_REPLY_STRING) {
        rc = reply_fail(r, "EVALSHA", req->key);
        freeReplyObject(r);
        return rc;
    }
    int outcome = (int)r->element[0]->integer;
    acache_record rec = {
        .provider_id = req->provider_id,
        .endpoint_id = req->endpoint_id,
        .key_id = req->key_id,
        .api_format = req->api_format,
        .model_name = req->model_name,
        .created_at = outcome == ACACHE_TOUCH_REFRESHED ? strtod(r->element[1]->str, NULL)
                                                        : req->now,
        .expire_at = req->now + req->ttl_s,
        .request_count = strtoll(r->element[2]->str, NULL, 10),
    };
    if (result)
        *result = outcome;
    freeReplyObject(r);
    if (cb)
        cb(&rec, payload);
    return ACACHE_OK;
}

/* argv of one compare-and-delete call: cmd script nkeys KEYS... filters. */
static void fill_delete_args(const char **argv, size_t *lens, const char *cmd,
                             const char *script, const char *nkeys,
                             const acache_key *keys, size_t k, char *const filt[3])
{
    argv[0] = cmd;
    argv[1] = script;
    argv[2] = nkeys;
    for (size_t i = 0; i < 3; i++)
        lens[i] = strlen(argv[i]);
    for (size_t i = 0; i < k; i++) {
        argv[3 + i] = keys[i].ptr;
        lens[3 + i] = keys[i].len;
    }
    for (size_t i = 0; i < 3; i++) {
        argv[3 + k + i] = filt[i];
        lens[3 + k + i] = strlen(filt[i]);
    }
}

static int r_affinity_delete_if(acache_store *self, const acache_key *keys, size_t n,
                                const acache_match *m, size_t *deleted)
{
    redis_store *s = (redis_store *)self;
    *deleted = 0;
    if (!m || (!m->provider_id && !m->endpoint_id && !m->key_id))
        return r_del(self, keys, n, deleted);
    if (n == 0)
        return ACACHE_OK;
    char *filt[3] = {NULL, NULL, NULL};
    const char *fv[3] = {m->provider_id, m->endpoint_id, m->key_id};
    size_t cap = (n < DEL_BATCH ? n : DEL_BATCH) + 6;
    const char **argv = acache__malloc(cap * sizeof *argv);
    size_t *lens = acache__malloc(cap * sizeof *lens);
    int rc = (argv && lens) ? ACACHE_OK : acache__oom();
    for (int i = 0; i < 3 && !rc; i++)
        if (!(filt[i] = acache__sprintf("%s%s", fv[i] ? "=" : "", fv[i] ? fv[i] : "")))
            rc = ACACHE_ENOMEM;
    if (rc)
        goto out;

    sigpipe_guard g;
    sigpipe_block(&g);
    redisContext *c = NULL;
    rc = conn_get(s, &c);
    char nkeys[24];
    label lb;
    size_t done = 0;
    while (!rc && done < n) {
        /* Remember each batch's bounds: a NOSCRIPT batch is re-sent with EVAL. */
        size_t starts[PIPE_GROUP], counts[PIPE_GROUP];
        int appended = 0;
        for (; appended < PIPE_GROUP && done < n; appended++) {
            size_t k = n - done < DEL_BATCH ? n - done : DEL_BATCH;
            starts[appended] = done;
            counts[appended] = k;
            snprintf(nkeys, sizeof nkeys, "%zu", k);
            fill_delete_args(argv, lens, "EVALSHA", s->delete_sha, nkeys, keys + done, k,
                             filt);
            redisAppendCommandArgv(c, (int)(k + 6), argv, lens);
            done += k;
        }
        int noscript[PIPE_GROUP] = {0};
        for (int i = 0; i < appended; i++) {
            redisReply *r;
            errno = 0;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                rc = io_fail(s, c, errno, "EVALSHA", key_label(&lb, &keys[starts[i]]));
                break;
            }
            if (r->type == REDIS_REPLY_INTEGER)
                *deleted += (size_t)r->integer;
            else if (is_noscript(r))
                noscript[i] = 1;
            else if (!rc)
                rc = reply_fail(r, "EVALSHA", key_label(&lb, &keys[starts[i]]));
            freeReplyObject(r);
        }
        for (int i = 0; i < appended && !rc; i++) {
            if (!noscript[i])
                continue;
            size_t k = counts[i];
            snprintf(nkeys, sizeof nkeys, "%zu", k);
            fill_delete_args(argv, lens, "EVAL", ACACHE_REDIS_DELETE_IF_LUA, nkeys,
                             keys + starts[i], k, filt);
            int err;
            redisReply *r = command(c, (int)(k + 6), argv, lens, &err);
            if (!r) {
                rc = io_fail(s, c, err, "EVAL", key_label(&lb, &keys[starts[i]]));
                break;
            }
            if (r->type == REDIS_REPLY_INTEGER)
                *deleted += (size_t)r->integer;
            else
                rc = reply_fail(r, "EVAL", key_label(&lb, &keys[starts[i]]));
            freeReplyObject(r);
        }
    }
    if (c)
        conn_put(s, c, rc != 0 && c->err != 0);
    sigpipe_restore(&g);
out:
    for (int i = 0; i < 3; i++)
        free(filt[i]);
    free(argv);
    free(lens);
    return rc;
}

/* ---- lifetime ---- */

static void r_free(acache_store *self)
{
    redis_store *s = (redis_store *)self;
    if (!s)
        return;
    for (int i = 0; i < s->n_idle; i++)
        redisFree(s->idle[i]);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->host);
    free(s->path);
    free(s->user);
    if (s->password) {
        memset(s->password, 0, strlen(s->password));
        free(s->password);
    }
    free(s);
}

/* ---- URI ---- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Copy [p, p+n) percent-decoded; NULL with *rc set on a bad escape/ENOMEM. */
static char *pct_decode(const char *p, size_t n, const char *what, int *rc)
{
    char *out = acache__malloc(n + 1), *o = out;
    if (!out) {
        *rc = acache__oom();
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '%') {
            *o++ = p[i];
            continue;
        }
        /* %00 would cut the string short: refuse it with the malformed ones. */
        if (i + 2 >= n || hexval(p[i + 1]) < 0 || hexval(p[i + 2]) < 0 ||
            (p[i + 1] == '0' && p[i + 2] == '0')) {
            free(out);
            *rc = acache_error_set(ACACHE_EINVALID,
                                   "invalid store URI: bad %% escape in %s", what);
            return NULL;
        }
        *o++ = (char)(hexval(p[i + 1]) * 16 + hexval(p[i + 2]));
        i += 2;
    }
    *o = '\0';
    return out;
}

static int parse_uint(const char *p, size_t n, long max, long *out)
{
    if (n == 0 || n > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int bad_uri(const char *why)
{
    /* Never echo the URI: it may hold a password. */
    return acache_error_set(ACACHE_EINVALID,
                            "invalid store URI: %s (expected redis://[[user]:password@]"
                            "host[:port][/db] or unix:///path[?db=N])",
                            why);
}

/* user:password@ (both percent-decoded). */
static int parse_userinfo(redis_store *s, const char *p, size_t n)
{
    const char *colon = memchr(p, ':', n);
    if (!colon)
        return bad_uri("credentials need a ':' before the password");
    int rc = ACACHE_OK;
    size_t ulen = (size_t)(colon - p);
    if (ulen > 0 && !(s->user = pct_decode(p, ulen, "user", &rc)))
        return rc;
    if (!(s->password = pct_decode(colon + 1, n - ulen - 1, "password", &rc)))
        return rc;
    if (!s->password[0]) {
        free(s->password);
        s->password = NULL;
        if (s->user)
            return bad_uri("user given without a password");
    }
    return ACACHE_OK;
}

static int parse_query(redis_store *s, const char *q)
{
    /* Only db=N is understood; anything else is a typo worth reporting. */
    while (*q) {
        size_t n = strcspn(q, "&");
        long v;
        if (n > 3 && strncmp(q, "db=", 3) == 0 &&
            parse_uint(q + 3, n - 3, INT_MAX, &v) == 0)
            s->db = (int)v;
        else
            return bad_uri("unknown or malformed query parameter (only db=N)");
        q += n;
        if (*q == '&')
            q++;
    }
    return ACACHE_OK;
}

static int parse_redis_uri(redis_store *s, const char *rest)
{
    if (strchr(rest, '#'))
        return bad_uri("fragments are not allowed");
    size_t alen = strcspn(rest, "/?");
    const char *auth = rest, *tail = rest + alen;
    const char *at = NULL;
    for (const char *p = auth; p < tail; p++)
        if (*p == '@')
            at = p;
    int rc;
    if (at) {
        if ((rc = parse_userinfo(s, auth, (size_t)(at - auth))))
            return rc;
        auth = at + 1;
    }
    const char *hend, *host = auth;
    const char *port = NULL;
    if (*auth == '[') {
        const char *rb = memchr(auth, ']', (size_t)(tail - auth));
        if (!rb)
            return bad_uri("unterminated [IPv6] host");
        host = auth + 1;
        hend = rb;
        if (rb + 1 < tail) {
            if (rb[1] != ':')
                return bad_uri("junk after ]");
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(auth, ':', (size_t)(tail - auth));
        hend = colon ? colon : tail;
        if (colon)
            port = colon + 1;
    }
    if (hend == host)
        return bad_uri("missing host");
    for (const char *p = host; p < hend; p++) {
        char ch = *p;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_' ||
                 (*auth == '[' && ch == ':');
        if (!ok)
            return bad_uri("bad character in host");
    }
    if (!(s->host = acache__strndup(host, (size_t)(hend - host))))
        return ACACHE_ENOMEM;
    s->port = 6379;
    if (port) {
        long v;
        if (parse_uint(port, (size_t)(tail - port), 65535, &v) != 0 || v == 0)
            return bad_uri("port must be a number in 1..65535");
        s->port = (int)v;
    }
    if (*tail == '/') {
        tail++;
        size_t dlen = strcspn(tail, "?");
        long v;
        if (dlen > 0) {
            if (parse_uint(tail, dlen, INT_MAX, &v) != 0)
                return bad_uri("database must be a number");
            s->db = (int)v;
        }
        tail += dlen;
    }
    if (*tail == '?' && (rc = parse_query(s, tail + 1)))
        return rc;
    snprintf(s->where, sizeof s->where, "%s%s%s:%d", *auth == '[' ? "[" : "", s->host,
             *auth == '[' ? "]" : "", s->port);
    return ACACHE_OK;
}

static int parse_unix_uri(redis_store *s, const char *rest)
{
    if (strchr(rest, '#'))
        return bad_uri("fragments are not allowed");
    int rc;
    if (*rest != '/') {
        /* unix://[user]:password@/path */
        const char *at = strchr(rest, '@');
        if (!at || at[1] != '/')
            return bad_uri("unix socket path must be absolute (unix:///path)");
        if ((rc = parse_userinfo(s, rest, (size_t)(at - rest))))
            return rc;
        rest = at + 1;
    }
    size_t plen = strcspn(rest, "?");
    if (plen < 2)
        return bad_uri("missing unix socket path");
    if (!(s->path = pct_decode(rest, plen, "path", &rc)))
        return rc;
    if (strlen(s->path) >= 108)
        return bad_uri("unix socket path too long");
    if (rest[plen] == '?' && (rc = parse_query(s, rest + plen + 1)))
        return rc;
    snprintf(s->where, sizeof s->where, "%s", s->path);
    return ACACHE_OK;
}

static int parse_uri(redis_store *s, const char *uri)
{
    if (!uri)
        return bad_uri("missing");
    for (const char *p = uri; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f)
            return bad_uri("spaces or control characters");
    if (strncmp(uri, "redis://", 8) == 0)
        return parse_redis_uri(s, uri + 8);
    if (strncmp(uri, "unix://", 7) == 0)
        return parse_unix_uri(s, uri + 7);
    if (strncmp(uri, "rediss://", 9) == 0)
        return bad_uri("TLS (rediss://) is not supported");
    return bad_uri("unknown scheme");
}

static struct timeval ms_tv(uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

int acache__store_redis_new(acache_store **out, const char *uri,
                            uint32_t connect_timeout_ms, uint32_t command_timeout_ms)
{
    *out = NULL;
    redis_store *s = acache__calloc(1, sizeof *s);
    if (!s)
        return acache__oom();
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return acache_error_set(ACACHE_ERROR, "redis store: cannot create a mutex");
    }
    if (pthread_cond_init(&s->cond, NULL) != 0) {
        pthread_mutex_destroy(&s->lock);
        free(s);
        return acache_error_set(ACACHE_ERROR, "redis store: cannot create a condvar");
    }
    s->parent.version = ACACHE_STORE_VERSION;
    s->parent.scheme = "redis";
    s->parent.affinity_get = r_affinity_get;
    s->parent.affinity_touch = r_affinity_touch;
    s->parent.affinity_delete_if = r_affinity_delete_if;
    s->parent.affinity_scan = r_affinity_scan;
    s->parent.get = r_get;
    s->parent.set = r_set;
    s->parent.del = r_del;
    s->parent.scan = r_scan;
    s->parent.ttl = r_ttl;
    s->parent.free = r_free;
    if (!connect_timeout_ms)
        connect_timeout_ms = 2000;
    if (!command_timeout_ms)
        command_timeout_ms = 2000;
    s->connect_tv = ms_tv(connect_timeout_ms);
    s->command_tv = ms_tv(command_timeout_ms);
    s->command_ms = command_timeout_ms;

    int rc = parse_uri(s, uri);
    if (rc) {
        r_free(&s->parent);
        return rc;
    }
    /* Connect now so that a wrong address or a server that is down fails the
     * open, not the first request. */
    sigpipe_guard g;
    sigpipe_block(&g);
    redisContext *c = NULL;
    rc = dial(s, &c, 1);
    sigpipe_restore(&g);
    if (rc) {
        r_free(&s->parent);
        return rc;
    }
    s->idle[s->n_idle++] = c;
    s->n_total = 1;
    *out = &s->parent;
    return ACACHE_OK;
}
