/* acache-admin operational pieces: see admin_ops.h. */
#include "admin_ops.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <aether_cache/sys/catalog.h>
#include <aether_cache/sys/store.h>
#include <jansson.h>
#include <sodium.h>

/* ------------------------------------------------------------ access log */

/* Printable ASCII only, so a hostile method or URL cannot forge log lines
 * (or make the JSON line invalid UTF-8); long values end in "...". */
static void sanitize(char *out, size_t cap, const char *in)
{
    size_t n = 0;
    const char *p = in ? in : "-";
    for (; *p && n + 4 < cap; p++)
        out[n++] = (*p >= 0x21 && *p <= 0x7e) ? *p : '?';
    if (*p) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

void ops_access_log(log_format fmt, const struct timespec *wall, const char *client,
                    const char *method, const char *path, unsigned status, size_t bytes,
                    double duration_us)
{
    char when[40], m[32], p[512];
    struct tm tm;
    time_t sec = wall->tv_sec;
    if (gmtime_r(&sec, &tm) &&
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm) > 0) {
        size_t l = strlen(when);
        snprintf(when + l, sizeof(when) - l, ".%03ldZ", wall->tv_nsec / 1000000L);
    } else {
        strcpy(when, "-");
    }
    sanitize(m, sizeof(m), method);
    sanitize(p, sizeof(p), path);
    long long us = (long long)(duration_us + 0.5);
    if (fmt == LOG_TEXT) {
        fprintf(stderr, "%s %s %s %s %u %zu %lldus\n", when, client ? client : "-", m, p,
                status, bytes, us);
        return;
    }
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "time", when, "client",
                          client ? client : "-", "method", m, "path", p, "status",
                          (json_int_t)status, "bytes", (json_int_t)bytes, "duration_us",
                          (json_int_t)us);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (line)
        fprintf(stderr, "%s\n", line); /* one fprintf: one write on unbuffered stderr */
    free(line);
    json_decref(o);
}

void ops_addr_string(const struct sockaddr *sa, char *out, size_t n)
{
    const char *r = NULL;
    if (sa && sa->sa_family == AF_INET)
        r = inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
                      (socklen_t)n);
    else if (sa && sa->sa_family == AF_INET6)
        r = inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
                      (socklen_t)n);
    if (!r && n > 1)
        strcpy(out, "-");
}

bool ops_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

/* ------------------------------------------------------------ readiness */

enum { P_PENDING, P_OK, P_ERROR, P_NONE };

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    acache *c;
    unsigned timeout_ms;
    bool running;
    unsigned long started, done; /* probe generations */
    int store, catalog;          /* states of the running or last probe */
} g_probe = {.mu = PTHREAD_MUTEX_INITIALIZER};

void ops_probe_init(acache *c, unsigned timeout_ms)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&g_probe.cv, &a);
    pthread_condattr_destroy(&a);
    g_probe.c = c;
    g_probe.timeout_ms = timeout_ms;
}

static int ignore_user(const acache_cat_user *row, void *payload)
{
    (void)row;
    (void)payload;
    return 0;
}

/* A read of one absent key through the store vtable (no hit/miss counted,
 * no L1), then a one-row look-up in the catalog: either answering, found or
 * not, means reachable. Failures are logged here: the /readyz body, served
 * without authentication, names states only, never addresses or messages. */
static void *probe_main(void *arg)
{
    (void)arg;
    acache_store *st = acache_handle_store(g_probe.c);
    acache_buf b = ACACHE_BUF_INIT;
    int rc = st->get(st, "aether_cache:readyz-probe", &b);
    acache_buf_dispose(&b);
    int s = (rc == ACACHE_OK || rc == ACACHE_ENOTFOUND) ? P_OK : P_ERROR;
    if (s == P_ERROR)
        fprintf(stderr, "acache-admin: readyz: store: %s: %s\n", acache_strerror(rc),
                acache_last_error());
    pthread_mutex_lock(&g_probe.mu);
    g_probe.store = s;
    pthread_mutex_unlock(&g_probe.mu);

    acache_catalog *cat = acache_handle_catalog(g_probe.c);
    int cs = P_NONE;
    if (cat) {
        const char *const ids[] = {""};
        rc = cat->users(cat, ACACHE_BY_ID, ids, 1, ignore_user, NULL);
        cs = (rc == ACACHE_OK || rc == ACACHE_ENOTFOUND) ? P_OK : P_ERROR;
        if (cs == P_ERROR)
            fprintf(stderr, "acache-admin: readyz: catalog: %s: %s\n",
                    acache_strerror(rc), acache_last_error());
    }
    pthread_mutex_lock(&g_probe.mu);
    g_probe.catalog = cs;
    g_probe.running = false;
    g_probe.done = g_probe.started;
    pthread_cond_broadcast(&g_probe.cv);
    pthread_mutex_unlock(&g_probe.mu);
    return NULL;
}

static const char *state_name(int s, bool finished)
{
    switch (s) {
    case P_OK:
        return "ok";
    case P_ERROR:
        return "error";
    case P_NONE:
        return "none";
    default:
        return finished ? "error" : "timeout";
    }
}

void ops_probe_run(ops_ready *out)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += g_probe.timeout_ms / 1000;
    deadline.tv_nsec += (long)(g_probe.timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    acache_catalog *cat = acache_handle_catalog(g_probe.c);
    out->store_type = acache_store_type(g_probe.c);
    out->catalog_type = cat ? cat->scheme : NULL;

    pthread_mutex_lock(&g_probe.mu);
    bool failed_start = false;
    if (!g_probe.running) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        g_probe.started++;
        g_probe.store = g_probe.catalog = P_PENDING;
        g_probe.running = true;
        if (pthread_create(&t, &a, probe_main, NULL) != 0) {
            g_probe.running = false;
            g_probe.done = g_probe.started;
            failed_start = true;
        }
        pthread_attr_destroy(&a);
    }
    unsigned long want = g_probe.started;
    while (g_probe.done < want) {
        if (pthread_cond_timedwait(&g_probe.cv, &g_probe.mu, &deadline) == ETIMEDOUT)
            break;
    }
    bool finished = g_probe.done >= want;
    out->store_state = failed_start ? "error" : state_name(g_probe.store, finished);
    out->catalog_state = failed_start ? "error" : state_name(g_probe.catalog, finished);
    pthread_mutex_unlock(&g_probe.mu);
    if (failed_start)
        fprintf(stderr, "acache-admin: readyz: cannot start the probe thread\n");
    out->ready =
        strcmp(out->store_state, "ok") == 0 && (strcmp(out->catalog_state, "ok") == 0 ||
                                                strcmp(out->catalog_state, "none") == 0);
}

void ops_probe_shutdown(void)
{
    pthread_mutex_lock(&g_probe.mu);
    while (g_probe.running)
        pthread_cond_wait(&g_probe.cv, &g_probe.mu);
    pthread_mutex_unlock(&g_probe.mu);
}

char *ops_ready_json(const ops_ready *r, bool draining, size_t *len)
{
    const char *status = draining ? "draining" : r->ready ? "ready" : "not_ready";
    json_t *o = json_pack("{s:s, s:{s:s, s:s}, s:{s:s?, s:s}}", "status", status, "store",
                          "type", r->store_type, "state", r->store_state, "catalog",
                          "type", r->catalog_type, "state", r->catalog_state);
    char *s = o ? json_dumps(o, 0) : NULL;
    json_decref(o);
    if (s)
        *len = strlen(s); /* our own NUL-terminated rendering */
    return s;
}

/* ------------------------------------------------------------ CORS */

static struct {
    char **origins;
    size_t n;
    bool any;
} g_cors;

/* scheme "://" host [":" port], no path, no trailing slash: what a browser
 * sends in Origin (RFC 6454 serialisation), compared byte for byte. */
static bool origin_valid(const char *o)
{
    const char *sep = strstr(o, "://");
    if (!sep || sep == o || !sep[3])
        return false;
    for (const char *p = o; p < sep; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '+' ||
              *p == '-' || *p == '.'))
            return false;
    for (const char *p = sep + 3; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == '/' || *p == '?' || *p == '#' || *p == ',')
            return false;
    return true;
}

bool ops_cors_add(const char *origin)
{
    if (strcmp(origin, "*") == 0) {
        g_cors.any = true;
        return true;
    }
    if (!origin_valid(origin)) {
        fprintf(stderr,
                "acache-admin: --cors-origin %s: expected SCHEME://HOST[:PORT] "
                "(e.g. https://admin.example.com) or *\n",
                origin);
        return false;
    }
    char **grown = realloc(g_cors.origins, (g_cors.n + 1) * sizeof(*grown));
    if (!grown)
        return false;
    g_cors.origins = grown;
    if (!(g_cors.origins[g_cors.n] = strdup(origin)))
        return false;
    g_cors.n++;
    return true;
}

bool ops_cors_enabled(void)
{
    return g_cors.any || g_cors.n > 0;
}

const char *ops_cors_allow(const char *origin, bool *vary)
{
    *vary = false;
    if (!origin || !ops_cors_enabled())
        return NULL;
    if (g_cors.any)
        return "*"; /* bearer tokens, no cookies: "*" is allowed with Authorization */
    *vary = true;   /* the answer depends on Origin: caches must key on it */
    for (size_t i = 0; i < g_cors.n; i++)
        if (strcmp(g_cors.origins[i], origin) == 0)
            return g_cors.origins[i];
    return NULL;
}

void ops_cors_free(void)
{
    for (size_t i = 0; i < g_cors.n; i++)
        free(g_cors.origins[i]);
    free(g_cors.origins);
    g_cors.origins = NULL;
    g_cors.n = 0;
}

/* ------------------------------------------------------------ PEM files */

#define PEM_MAX (1024 * 1024)

char *ops_read_pem(const char *path, const char *what, bool secret)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "acache-admin: %s %s: %s\n", what, path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        fprintf(stderr, "acache-admin: %s %s: %s\n", what, path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (secret && S_ISREG(sb.st_mode)) {
        if (sb.st_mode & (S_IWGRP | S_IWOTH)) {
            fprintf(stderr,
                    "acache-admin: %s %s is writable by group or others: refusing it "
                    "(chmod go-w)\n",
                    what, path);
            close(fd);
            return NULL;
        }
        if (sb.st_mode & (S_IRGRP | S_IROTH))
            fprintf(stderr,
                    "acache-admin: warning: %s %s is readable by group or others "
                    "(chmod 600)\n",
                    what, path);
    }
    char *buf = sodium_malloc(PEM_MAX + 1);
    if (!buf) {
        close(fd);
        return NULL;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, PEM_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "acache-admin: %s %s: %s\n", what, path, strerror(errno));
            close(fd);
            ops_free_pem(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > PEM_MAX) {
            fprintf(stderr, "acache-admin: %s %s: larger than %d bytes\n", what, path,
                    PEM_MAX);
            close(fd);
            ops_free_pem(buf);
            return NULL;
        }
    }
    close(fd);
    /* GnuTLS takes PEM as a C string: refuse an embedded NUL, which would cut
     * it short; past that check the buffer is a C string. */
    buf[n] = '\0';
    if (n == 0 || memchr(buf, '\0', n) || !strstr(buf, "-----BEGIN ")) {
        fprintf(stderr, "acache-admin: %s %s: not a PEM file\n", what, path);
        ops_free_pem(buf);
        return NULL;
    }
    return buf;
}

void ops_free_pem(char *p)
{
    if (p)
        sodium_free(p); /* sodium_free wipes the whole allocation */
}
