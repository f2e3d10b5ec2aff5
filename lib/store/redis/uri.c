/* redis://, rediss:// and unix:// URIs of the Redis store (docs/redis.md). Never echo a
 * URI in a message: it may hold a password. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_priv.h"

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
    return acache_error_set(
        ACACHE_EINVALID,
        "invalid store URI: %s (expected redis[s]://[[user]:password@]"
        "host[:port][/db][?options] or unix:///path[?db=N])",
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

/* name=value: 1 when `q` (n bytes) starts with `name=`. */
static int param_is(const char *q, size_t n, const char *name)
{
    size_t l = strlen(name);
    return n > l && strncmp(q, name, l) == 0 && q[l] == '=';
}

/* A percent-decoded option value into *dst (replacing an earlier one). */
static int param_str(char **dst, const char *v, size_t n, const char *what)
{
    int rc = ACACHE_OK;
    char *d = pct_decode(v, n, what, &rc);
    if (!d)
        return rc;
    free(*dst);
    *dst = d;
    return ACACHE_OK;
}

static int parse_query(redis_store *s, const char *q)
{
    /* Unknown parameters are typos worth reporting, not ignoring. */
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        const char *v = eq ? eq + 1 : q + n;
        size_t vn = (size_t)(q + n - v);
        long iv;
        int rc = ACACHE_OK;
        if (param_is(q, n, "db")) {
            if (parse_uint(v, vn, INT_MAX, &iv) != 0)
                return bad_uri("db must be a number");
            s->db = (int)iv;
        } else if (param_is(q, n, "cacert") || param_is(q, n, "cert") ||
                   param_is(q, n, "key") || param_is(q, n, "sni") ||
                   param_is(q, n, "verify")) {
            if (!s->tls)
                return bad_uri("cacert, cert, key, sni and verify need rediss://");
            if (param_is(q, n, "cacert"))
                rc = param_str(&s->cacert, v, vn, "cacert");
            else if (param_is(q, n, "cert"))
                rc = param_str(&s->cert, v, vn, "cert");
            else if (param_is(q, n, "key"))
                rc = param_str(&s->key, v, vn, "key");
            else if (param_is(q, n, "sni"))
                rc = param_str(&s->sni, v, vn, "sni");
            else if (vn == 3 && strncmp(v, "yes", 3) == 0)
                s->verify = 1;
            else if (vn == 2 && strncmp(v, "no", 2) == 0)
                s->verify = 0;
            else
                return bad_uri("verify must be yes or no");
            if (rc)
                return rc;
        } else if (param_is(q, n, "touch")) {
            /* docs/redis.md "Touch": swap (SET ... GET + repair) or script */
            if (vn == 4 && strncmp(v, "swap", 4) == 0)
                s->touch_script = 0;
            else if (vn == 6 && strncmp(v, "script", 6) == 0)
                s->touch_script = 1;
            else
                return bad_uri("touch must be swap or script");
        } else if (param_is(q, n, "touch_contended_ms")) {
            if (parse_uint(v, vn, 3600000, &iv) != 0)
                return bad_uri("touch_contended_ms must be a number of ms up to 3600000");
            s->touch_contended_ms = (uint32_t)iv;
        } else {
            return bad_uri(
                "unknown or malformed query parameter (db, touch, "
                "touch_contended_ms, and with rediss:// cacert, cert, key, sni, "
                "verify)");
        }
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

int acache__redis_parse_uri(redis_store *s, const char *uri)
{
    if (!uri)
        return bad_uri("missing");
    if (!s->cluster && !s->sentinel) /* the outer call of a nested parse */
        s->touch_contended_ms = 1000;
    for (const char *p = uri; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f)
            return bad_uri("spaces or control characters");
    if (strncmp(uri, "redis://", 8) == 0)
        return parse_redis_uri(s, uri + 8);
    if (strncmp(uri, "redis-cluster://", 16) == 0 && !s->cluster)
        return acache__redis_cluster_parse_uri(s, uri + 16); /* cluster.c */
    if (strncmp(uri, "unix://", 7) == 0)
        return parse_unix_uri(s, uri + 7);
    if (strncmp(uri, "redis-sentinel://", 17) == 0 && !s->sentinel)
        return acache__redis_sentinel_parse(s, uri); /* sentinel.c */
    if (strncmp(uri, "rediss://", 9) == 0) {
        s->tls = 1;
        s->verify = 1;
        return parse_redis_uri(s, uri + 9);
    }
    return bad_uri("unknown scheme");
}
