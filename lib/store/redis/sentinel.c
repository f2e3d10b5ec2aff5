/* redis-sentinel:// (docs/redis.md "Sentinel"): the primary of a Sentinel
 * service is asked of the sentinels (SENTINEL get-master-addr-by-name, each
 * sentinel in turn, all within the connect timeout), checked with ROLE after
 * every connect, and forgotten when a connection fails or a reply says
 * -READONLY / -LOADING, so that the next dial asks again. When the answer
 * changes, the pooled connections to the old primary are dropped.
 *
 * The rest of the URI (credentials, /db, TLS options) is the primary's and is
 * parsed by uri.c from an equivalent redis[s]:// URI. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "redis_priv.h"

#define SENTINEL_MAX 16

_Thread_local unsigned acache__redis_notes;

typedef struct redis_sentinel {
    size_t n;
    char *host[SENTINEL_MAX];
    int port[SENTINEL_MAX];
    char *service, *user, *password; /* password/user: the sentinels' (AUTH) */

    pthread_mutex_t resolve; /* one resolution at a time */
    pthread_mutex_t lock;    /* the fields below */
    char primary[256];       /* "" while unknown */
    int primary_port;
    int stale;        /* ask again at the next dial */
    size_t first;     /* the sentinel that answered last: asked first */
    uint64_t changes; /* times the primary's address changed (failovers seen) */
} redis_sentinel;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- notes (used by every store, not only Sentinel) ---- */

void acache__redis_conn_failed(redis_store *s)
{
    acache__redis_notes |= RNOTE_CONN;
    redis_sentinel *st = s->sentinel;
    if (st) {
        pthread_mutex_lock(&st->lock);
        st->stale = 1;
        pthread_mutex_unlock(&st->lock);
    }
}

static int starts(const redisReply *r, const char *w)
{
    size_t n = strlen(w);
    return r->len >= n && memcmp(r->str, w, n) == 0;
}

void acache__redis_note_reply(const redisReply *r)
{
    /* Both mean the command did not run: a replica refuses writes before
     * doing any (a script fails at its first write, and ours write only
     * after every read), and a loading server refuses everything. */
    if (r && r->type == REDIS_REPLY_ERROR &&
        (starts(r, "READONLY") || starts(r, "LOADING")))
        acache__redis_notes |= RNOTE_NOT_RUN | RNOTE_READONLY;
}

/* ---- URI ---- */

static int bad(const char *why)
{
    /* Never echo the URI: it may hold passwords. */
    return acache_error_set(ACACHE_EINVALID,
                            "invalid store URI: %s (expected redis-sentinel://[[user]:"
                            "password@]host[:port][,host[:port]...][/db]?service=NAME"
                            "[&sentinel_user=U][&sentinel_password=P][&tls=yes...])",
                            why);
}

static int hexv(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static char *decode(const char *p, size_t n, int *rc)
{
    char *o = acache__malloc(n + 1), *q = o;
    if (!o) {
        *rc = acache__oom();
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '%') {
            *q++ = p[i];
            continue;
        }
        if (i + 2 >= n || hexv(p[i + 1]) < 0 || hexv(p[i + 2]) < 0 ||
            (p[i + 1] == '0' && p[i + 2] == '0')) {
            free(o);
            *rc = bad("bad % escape");
            return NULL;
        }
        *q++ = (char)(hexv(p[i + 1]) * 16 + hexv(p[i + 2]));
        i += 2;
    }
    *q = '\0';
    return o;
}

static int host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
}

/* host[:port] or [v6][:port], n bytes. */
static int parse_node(redis_sentinel *st, const char *p, size_t n)
{
    if (st->n == SENTINEL_MAX)
        return bad("more than 16 sentinels");
    const char *h = p, *he, *port = NULL, *end = p + n;
    int v6 = n > 0 && *p == '[';
    if (v6) {
        const char *rb = memchr(p, ']', n);
        if (!rb)
            return bad("unterminated [IPv6] host");
        h = p + 1;
        he = rb;
        if (rb + 1 < end) {
            if (rb[1] != ':')
                return bad("junk after ]");
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', n);
        he = colon ? colon : end;
        port = colon ? colon + 1 : NULL;
    }
    if (he == h)
        return bad("missing sentinel host");
    for (const char *q = h; q < he; q++)
        if (!host_char(*q) && !(v6 && *q == ':'))
            return bad("bad character in a sentinel host");
    long pv = 26379;
    if (port) {
        pv = 0;
        if (port == end || end - port > 5)
            return bad("sentinel port must be a number in 1..65535");
        for (const char *q = port; q < end; q++) {
            if (*q < '0' || *q > '9')
                return bad("sentinel port must be a number in 1..65535");
            pv = pv * 10 + (*q - '0');
        }
        if (pv < 1 || pv > 65535)
            return bad("sentinel port must be a number in 1..65535");
    }
    if (!(st->host[st->n] = acache__strndup(h, (size_t)(he - h))))
        return ACACHE_ENOMEM;
    st->port[st->n++] = (int)pv;
    return ACACHE_OK;
}

static int opt_is(const char *q, size_t n, const char *name, const char **v, size_t *vn)
{
    size_t l = strlen(name);
    if (n <= l || strncmp(q, name, l) != 0 || q[l] != '=')
        return 0;
    *v = q + l + 1;
    *vn = n - l - 1;
    return 1;
}

int acache__redis_sentinel_parse(redis_store *s, const char *uri)
{
    redis_sentinel *st = acache__calloc(1, sizeof *st);
    if (!st)
        return acache__oom();
    pthread_mutex_init(&st->resolve, NULL);
    pthread_mutex_init(&st->lock, NULL);
    s->sentinel = st; /* freed with s */
    const char *rest = uri + strlen("redis-sentinel://");
    if (strchr(rest, '#'))
        return bad("fragments are not allowed");
    size_t alen = strcspn(rest, "/?");
    const char *auth = rest, *tail = rest + alen, *at = NULL;
    for (const char *p = auth; p < tail; p++)
        if (*p == '@')
            at = p;
    const char *nodes = at ? at + 1 : auth;
    for (const char *p = nodes; p <= tail;) {
        size_t n = strcspn(p, ",/?");
        if (p + n > tail)
            n = (size_t)(tail - p);
        int rc = parse_node(st, p, n);
        if (rc)
            return rc;
        p += n;
        if (p < tail && *p == ',')
            p++;
        else
            break;
    }
    /* The query: ours are taken out, the rest (db, TLS options) kept. */
    char *keep = acache__malloc(strlen(uri) + 64);
    if (!keep)
        return acache__oom();
    size_t kl = 0;
    int tls = 0, rc = ACACHE_OK;
    const char *q = strchr(tail, '?');
    size_t dblen = q ? (size_t)(q - tail) : strlen(tail);
    for (q = q ? q + 1 : NULL; q && *q && !rc;) {
        size_t n = strcspn(q, "&");
        const char *v;
        size_t vn;
        if (opt_is(q, n, "service", &v, &vn)) {
            free(st->service);
            if ((st->service = decode(v, vn, &rc)) && !st->service[0])
                rc = bad("empty service name");
        } else if (opt_is(q, n, "sentinel_password", &v, &vn)) {
            free(st->password);
            st->password = decode(v, vn, &rc);
        } else if (opt_is(q, n, "sentinel_user", &v, &vn)) {
            free(st->user);
            st->user = decode(v, vn, &rc);
        } else if (opt_is(q, n, "wait_replicas", &v, &vn)) {
            if (vn == 0 || vn > 2 || strspn(v, "0123456789") < vn ||
                (s->wait_replicas = atoi(v)) > 16)
                rc = bad("wait_replicas must be an integer in 0..16");
        } else if (opt_is(q, n, "tls", &v, &vn)) {
            if (vn == 3 && !strncmp(v, "yes", 3))
                tls = 1;
            else if (vn == 2 && !strncmp(v, "no", 2))
                tls = 0;
            else
                rc = bad("tls must be yes or no");
        } else {
            keep[kl] = kl ? '&' : '?';
            kl++;
            memcpy(keep + kl, q, n);
            kl += n;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    keep[kl] = '\0';
    if (!rc && !st->service && !(st->service = acache__strdup("mymaster")))
        rc = ACACHE_ENOMEM;
    if (!rc && st->user && !st->password)
        rc = bad("sentinel_user given without sentinel_password");
    char *eq = NULL;
    if (!rc) {
        /* The primary's part as redis[s]://[userinfo@]sentinel-primary/db?rest */
        eq = acache__sprintf("%s://%.*s%ssentinel-primary%.*s%s",
                             tls ? "rediss" : "redis", at ? (int)(at - auth) : 0, auth,
                             at ? "@" : "", (int)dblen, tail, keep);
        rc = eq ? acache__redis_parse_uri(s, eq) : ACACHE_ENOMEM;
        if (rc == ACACHE_EINVALID)
            rc = bad(strstr(acache_last_error(), "bad % escape")
                         ? "bad % escape in the credentials"
                         : "bad credentials, database or TLS option");
    }
    if (eq) {
        sodium_memzero(eq, strlen(eq));
        free(eq);
    }
    free(keep);
    if (rc)
        return rc;
    st->stale = 1;
    snprintf(s->where, sizeof s->where, "sentinel service %.100s via %.100s:%d%s",
             st->service, st->host[0], st->port[0], st->n > 1 ? ",..." : "");
    return ACACHE_OK;
}

void acache__redis_sentinel_free(redis_store *s)
{
    redis_sentinel *st = s->sentinel;
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++)
        free(st->host[i]);
    free(st->service);
    free(st->user);
    if (st->password) {
        sodium_memzero(st->password, strlen(st->password));
        free(st->password);
    }
    pthread_mutex_destroy(&st->resolve);
    pthread_mutex_destroy(&st->lock);
    free(st);
    s->sentinel = NULL;
}

/* ---- resolution ---- */

/* One sentinel: AUTH, SENTINEL get-master-addr-by-name. 0 with host/port
 * set, 1 when it does not know the service, -1 on failure (why in err). */
static int ask_one(redis_store *s, size_t i, int64_t deadline, char *host, size_t hostlen,
                   int *port, char *err, size_t errlen)
{
    redis_sentinel *st = s->sentinel;
    int64_t left = deadline - now_ms();
    if (left <= 0) {
        snprintf(err, errlen, "%s:%d: timed out", st->host[i], st->port[i]);
        return -1;
    }
    /* Two round trips at most, within what is left of the budget. */
    rconn_target t = {
        st->host[i], st->port[i], NULL,     (uint32_t)left, (uint32_t)(left / 2 + 1),
        s->tls_ctx,  NULL,        s->verify};
    char e[256];
    rconn *c = rconn_open(&t, e, sizeof e);
    if (!c) {
        /* A truncated message is fine; using the result says so to GCC. */
        if (snprintf(err, errlen, "%s:%d: %s", st->host[i], st->port[i],
                     e[0] ? e : "out of memory") < 0)
            err[0] = '\0';
        return -1;
    }
    int out = -1;
    redisReply *r = NULL;
    if (st->password) {
        const char *argv[] = {"AUTH", st->user ? st->user : st->password, st->password};
        int argc = st->user ? 3 : 2;
        if (acache__redis_command(c, argc, argv, NULL, &r) != 0) {
            snprintf(err, errlen, "%s:%d: AUTH: %s", st->host[i], st->port[i],
                     rconn_errstr(c));
            goto done;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "%s:%d: authentication failed (%.100s)", st->host[i],
                     st->port[i], r->str);
            goto done;
        }
        freeReplyObject(r);
        r = NULL;
    }
    const char *argv[] = {"SENTINEL", "get-master-addr-by-name", st->service};
    if (acache__redis_command(c, 3, argv, NULL, &r) != 0) {
        snprintf(err, errlen, "%s:%d: %s", st->host[i], st->port[i], rconn_errstr(c));
        goto done;
    }
    if (r->type == REDIS_REPLY_NIL ||
        (r->type == REDIS_REPLY_ARRAY && r->elements == 0)) {
        snprintf(err, errlen, "%s:%d: no service \"%.100s\"", st->host[i], st->port[i],
                 st->service);
        out = 1;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
               r->element[0]->type == REDIS_REPLY_STRING &&
               r->element[1]->type == REDIS_REPLY_STRING && r->element[0]->len > 0 &&
               r->element[0]->len < hostlen && r->element[1]->len < 6 &&
               !memchr(r->element[0]->str, '\0', r->element[0]->len)) {
        char pb[8];
        memcpy(pb, r->element[1]->str, r->element[1]->len);
        pb[r->element[1]->len] = '\0';
        char *end;
        long pv = strtol(pb, &end, 10);
        if (*end || pv < 1 || pv > 65535) {
            snprintf(err, errlen, "%s:%d: bad port in the answer", st->host[i],
                     st->port[i]);
        } else {
            memcpy(host, r->element[0]->str, r->element[0]->len);
            host[r->element[0]->len] = '\0';
            *port = (int)pv;
            out = 0;
        }
    } else {
        snprintf(err, errlen, "%s:%d: unexpected answer%s%.100s", st->host[i],
                 st->port[i], r->type == REDIS_REPLY_ERROR ? ": " : "",
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
    }
done:
    if (r)
        freeReplyObject(r);
    rconn_close(c);
    return out;
}

/* Close the idle connections (to the old primary); the checked-out ones
 * fail or answer -READONLY and are closed by their callers' guard. */
static void drain_pool(redis_store *s)
{
    rconn *old[POOL_MAX];
    pthread_mutex_lock(&s->lock);
    int n = s->n_idle;
    memcpy(old, s->idle, (size_t)n * sizeof *old);
    s->n_idle = 0;
    s->n_total -= n;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < n; i++)
        rconn_close(old[i]);
}

/* Ask the sentinels (each in turn, from the last one that answered) until
 * `deadline`. 1 when the primary changed, 0 same, or an error code. */
static int resolve(redis_store *s, int64_t deadline)
{
    redis_sentinel *st = s->sentinel;
    char host[256], why[SENTINEL_MAX][160];
    int port = 0, r = -1;
    size_t k = 0, start = st->first;
    for (; k < st->n; k++) {
        size_t i = (start + k) % st->n;
        r = ask_one(s, i, deadline, host, sizeof host, &port, why[k], sizeof why[k]);
        if (r == 0) {
            st->first = i;
            break;
        }
    }
    if (r != 0) {
        /* Every reason, no secrets: which sentinel said what. */
        char all[1200];
        size_t len = 0;
        for (size_t j = 0; j < k && len < sizeof all; j++)
            len += (size_t)snprintf(all + len, sizeof all - len, "%s%s", j ? "; " : "",
                                    why[j]);
        acache__redis_notes |= RNOTE_CONN;
        return acache_error_set(ACACHE_ESTORE,
                                "redis sentinel: no primary for service \"%s\" (%s)",
                                st->service, all);
    }
    pthread_mutex_lock(&st->lock);
    int changed = strcmp(st->primary, host) != 0 || st->primary_port != port;
    if (changed) {
        if (st->primary[0])
            st->changes++;
        snprintf(st->primary, sizeof st->primary, "%s", host);
        st->primary_port = port;
    }
    st->stale = 0;
    pthread_mutex_unlock(&st->lock);
    if (changed)
        drain_pool(s);
    return changed;
}

int acache__redis_sentinel_target(redis_store *s, rconn_target *t, char *host,
                                  size_t hostlen)
{
    redis_sentinel *st = s->sentinel;
    int64_t deadline = now_ms() + s->connect_ms;
    pthread_mutex_lock(&st->lock);
    int need = st->stale || !st->primary[0];
    pthread_mutex_unlock(&st->lock);
    if (need) {
        pthread_mutex_lock(&st->resolve);
        pthread_mutex_lock(&st->lock);
        need = st->stale || !st->primary[0]; /* another thread may have asked */
        pthread_mutex_unlock(&st->lock);
        int rc = need ? resolve(s, deadline) : 0;
        pthread_mutex_unlock(&st->resolve);
        if (rc < 0)
            return rc;
    }
    pthread_mutex_lock(&st->lock); /* copied: another resolution may change it */
    snprintf(host, hostlen, "%s", st->primary);
    t->host = host;
    t->port = st->primary_port;
    pthread_mutex_unlock(&st->lock);
    int64_t left = deadline - now_ms();
    t->connect_ms = left > 1 ? (uint32_t)left : 1;
    return ACACHE_OK;
}

int acache__redis_sentinel_check_role(redis_store *s, rconn *c, const rconn_target *t)
{
    const char *argv[] = {"ROLE"};
    redisReply *r;
    if (acache__redis_command(c, 1, argv, NULL, &r) != 0)
        return acache__redis_io_fail(s, c, "ROLE", t->host);
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
             r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len == 6 &&
             memcmp(r->element[0]->str, "master", 6) == 0;
    int rc = ACACHE_OK;
    if (ok && r->elements >= 3 && r->element[2]->type == REDIS_REPLY_ARRAY)
        s->replicas = (int)r->element[2]->elements; /* for wait_replicas */
    if (!ok) {
        /* The sentinels' answer is out of date (a failover under way). */
        acache__redis_conn_failed(s);
        acache__redis_notes |= RNOTE_READONLY;
        rc = acache_error_set(ACACHE_ESTORE,
                              "redis %s: %s:%d is not the primary (ROLE %.20s); the "
                              "sentinels will be asked again",
                              s->where, t->host, t->port,
                              r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                                      r->element[0]->type == REDIS_REPLY_STRING
                                  ? r->element[0]->str
                                  : "?");
    }
    freeReplyObject(r);
    return rc;
}

int acache__redis_sentinel_recheck(redis_store *s)
{
    redis_sentinel *st = s->sentinel;
    if (!st)
        return 0;
    /* The call's own failure (notes, message) is what the caller sees. */
    unsigned saved = acache__redis_notes;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", acache_last_error());
    pthread_mutex_lock(&st->resolve);
    int rc = resolve(s, now_ms() + s->connect_ms);
    pthread_mutex_unlock(&st->resolve);
    acache__redis_notes = saved;
    if (rc != 1)
        acache_error_set(ACACHE_ESTORE, "%s", msg);
    return rc == 1;
}

uint64_t acache__redis_sentinel_changes(const redis_store *s)
{
    redis_sentinel *st = s->sentinel;
    if (!st)
        return 0;
    pthread_mutex_lock(&st->lock);
    uint64_t n = st->changes;
    pthread_mutex_unlock(&st->lock);
    return n;
}
