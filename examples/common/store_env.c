/* Store URI from Aether's environment variables (store_env.h). */
#include "store_env.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "secret_file.h"

static const char *val(const char *(*get)(const char *), const char *name)
{
    const char *v = get(name);
    return v && v[0] ? v : NULL;
}

/* A growing buffer wiped on every reallocation (it holds a password). */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (n >= SIZE_MAX - b->len) { /* len + n + 1 would wrap */
        b->oom = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = malloc(cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        if (b->p) {
            memcpy(p, b->p, b->len);
            sodium_memzero(b->p, b->cap);
            free(b->p);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* RFC 3986 userinfo/query-safe: unreserved characters kept, the rest %XX. */
static void put_encoded(sbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
            ch == '~') {
            put(b, s, 1);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            put(b, e, 3);
        }
    }
}

static char *finish(sbuf *b, int *err)
{
    char *out = b->oom ? NULL : secret_dup(b->p ? b->p : "");
    if (b->p) {
        sodium_memzero(b->p, b->cap);
        free(b->p);
    }
    if (!out)
        *err = 1;
    return out;
}

static char *from_sentinel(const char *prog, const char *(*get)(const char *),
                           const char *hosts, int *err)
{
    sbuf b = {0};
    const char *pw = val(get, "REDIS_PASSWORD");
    const char *spw = val(get, "REDIS_SENTINEL_PASSWORD");
    const char *svc = val(get, "REDIS_SENTINEL_SERVICE_NAME");
    puts_(&b, "redis-sentinel://");
    if (pw) {
        puts_(&b, ":");
        put_encoded(&b, pw);
        puts_(&b, "@");
    }
    /* "h1:p1, h2:p2": spaces around the commas are dropped. */
    int n = 0;
    for (const char *p = hosts; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (!len)
            break;
        for (size_t i = 0; i < len; i++) {
            char ch = p[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || strchr(".-_:[]", ch))) {
                fprintf(stderr, "%s: REDIS_SENTINEL_HOSTS: bad character in \"%.*s\"\n",
                        prog, (int)len, p);
                *err = 1;
                secret_free(finish(&b, err));
                return NULL;
            }
        }
        if (n++)
            puts_(&b, ",");
        put(&b, p, len);
        p += len;
    }
    if (!n) {
        fprintf(stderr, "%s: REDIS_SENTINEL_HOSTS names no host\n", prog);
        *err = 1;
        secret_free(finish(&b, err));
        return NULL;
    }
    puts_(&b, "/0?service=");
    put_encoded(&b, svc ? svc : "mymaster");
    if (spw) {
        puts_(&b, "&sentinel_password=");
        put_encoded(&b, spw);
    }
    return finish(&b, err);
}

static char *from_url(const char *(*get)(const char *), const char *url, int *err)
{
    const char *pw = val(get, "REDIS_PASSWORD");
    const char *sep = strstr(url, "://");
    sbuf b = {0};
    if (!pw || !sep || strncmp(url, "unix://", 7) == 0) {
        puts_(&b, url);
        return finish(&b, err);
    }
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++)
        if (*p == '@')
            at = p;
    if (at && memchr(auth, ':', (size_t)(at - auth))) { /* the URL has a password */
        puts_(&b, url);
        return finish(&b, err);
    }
    put(&b, url, (size_t)(auth - url));
    if (at)
        put(&b, auth, (size_t)(at - auth)); /* the user */
    puts_(&b, ":");
    put_encoded(&b, pw);
    puts_(&b, "@");
    puts_(&b, at ? at + 1 : auth);
    return finish(&b, err);
}

char *store_uri_from_env(const char *prog, const char *(*get)(const char *name),
                         const char **source, int *err)
{
    *err = 0;
    const char *v;
    if ((v = val(get, "ACACHE_STORE"))) {
        *source = "ACACHE_STORE";
        char *out = secret_dup(v);
        *err = !out;
        return out;
    }
    if ((v = val(get, "REDIS_SENTINEL_HOSTS"))) {
        *source = "REDIS_SENTINEL_HOSTS";
        return from_sentinel(prog, get, v, err);
    }
    if ((v = val(get, "REDIS_URL"))) {
        *source = "REDIS_URL";
        return from_url(get, v, err);
    }
    *source = "";
    return NULL;
}
