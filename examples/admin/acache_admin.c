/* acache-admin: the example admin HTTP server (Aether's admin cache routes
 * and cache-affinity usage routes), on libmicrohttpd.
 *
 * The library renders every JSON body; this program only authenticates,
 * routes, validates query parameters and maps library statuses to HTTP
 * statuses (acache_http_status). docs/http-api.md describes the routes;
 * health, readiness, access log, CORS and TLS helpers are in admin_ops.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <sodium.h>

#include <aether_cache/aether_cache.h>
#include <jansson.h>

#include "admin_ops.h"
#include "secret_file.h"
#include "store_env.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_Result_t;
#else
typedef enum MHD_Result MHD_Result_t;
#endif

#define MONITORING_PREFIX "/api/admin/monitoring/cache"
#define USAGE_PREFIX "/api/admin/usage/cache-affinity"
#define MAX_BODY_BYTES (64 * 1024)
#define MAX_SEGMENTS 8
#define JSON_TYPE "application/json; charset=utf-8"
#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ------------------------------------------------------------ state */

typedef struct server {
    acache *cache;
    bool auth;                                          /* false: --insecure-no-auth */
    unsigned char token_hash[crypto_generichash_BYTES]; /* never the token itself */
} server;

/* Per-request state, created by the URI log callback (which alone sees the
 * raw, still percent-encoded URI) and freed by the completion callback. */
typedef struct request {
    char *raw_path; /* the URI up to '?', as sent */
    struct timespec start;
    struct timespec wall; /* arrival, for the access log */
    char client[INET6_ADDRSTRLEN];
    bool started;  /* the access handler has seen this request */
    bool answered; /* a response was queued */
    bool logged;
    size_t body_bytes; /* request body received so far (discarded) */
} request;

/* One per TCP connection (MHD's socket context), on a list the head reaper
 * walks. `since` is when the connection last started waiting for a request
 * head: its accept, or the end of the previous response (keep-alive). */
typedef struct conn_ctx {
    struct conn_ctx *prev, *next;
    int fd;
    bool busy;   /* a request head is complete and not yet answered */
    bool reaped; /* shut down by the reaper already */
    struct timespec since;
} conn_ctx;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    conn_ctx *head;
    unsigned timeout_s; /* --head-timeout */
    bool stop;
} g_conns = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 10, false};

static volatile sig_atomic_t g_stop; /* number of SIGINT/SIGTERM received */
static int g_sigpipe[2] = {-1, -1};
static atomic_int g_inflight;   /* requests whose head was complete, not yet done */
static atomic_bool g_draining;  /* shutting down: answer with Connection: close */
static log_format g_log_format; /* --log-format */

/* ------------------------------------------------------------ utilities */

static double elapsed_us(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) * 1e6 +
           (double)(now.tv_nsec - start->tv_nsec) / 1e3;
}

/* One line per request on stderr (admin_ops.c: text or JSON). The path is
 * the raw (encoded) one. A HEAD answer logs 0 bytes: no body is sent. */
static void access_log(struct MHD_Connection *conn, request *rq, const char *method,
                       unsigned int status, size_t bytes)
{
    (void)conn;
    if (!rq || rq->logged)
        return;
    rq->logged = true;
    if (method && strcmp(method, "HEAD") == 0)
        bytes = 0;
    ops_access_log(g_log_format, &rq->wall, rq->client, method, rq->raw_path, status,
                   bytes, elapsed_us(&rq->start));
}

/* Access-Control-Allow-Origin (and Vary) when --cors-origin allows the
 * request's Origin; nothing otherwise. */
static void add_cors(struct MHD_Response *resp, struct MHD_Connection *conn)
{
    if (!ops_cors_enabled())
        return;
    bool vary;
    const char *allow = ops_cors_allow(
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"), &vary);
    if (vary)
        MHD_add_response_header(resp, "Vary", "Origin");
    if (allow)
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", allow);
}

static MHD_Result_t send_body(struct MHD_Connection *conn, request *rq,
                              const char *method, unsigned int status, const char *ctype,
                              const char *body, size_t len, const char *extra_name,
                              const char *extra_value)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    if (ctype) /* NULL: no body (204) */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (extra_name)
        MHD_add_response_header(resp, extra_name, extra_value);
    add_cors(resp, conn);
    if (atomic_load(&g_draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    MHD_Result_t ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    if (rq)
        rq->answered = true;
    access_log(conn, rq, method, status, len);
    return ret;
}

/* {"detail": message, "error": {...}} (acache_error_json), rendered by the
 * library so escaping is right. */
static MHD_Result_t send_error_hdr(struct MHD_Connection *conn, request *rq,
                                   const char *method, unsigned int status,
                                   const char *message, const char *hname,
                                   const char *hvalue)
{
    acache_buf buf = ACACHE_BUF_INIT;
    MHD_Result_t ret;
    if (acache_error_json(&buf, message) == ACACHE_OK) {
        ret = send_body(conn, rq, method, status, JSON_TYPE, buf.ptr, buf.size, hname,
                        hvalue);
    } else {
        static const char fallback[] = "{\"detail\": \"internal error\", \"error\": "
                                       "{\"type\": \"http_error\", \"message\": "
                                       "\"internal error\"}}";
        ret = send_body(conn, rq, method, 500, JSON_TYPE, fallback, sizeof(fallback) - 1,
                        NULL, NULL);
    }
    acache_buf_dispose(&buf);
    return ret;
}

static MHD_Result_t send_error(struct MHD_Connection *conn, request *rq,
                               const char *method, unsigned int status, const char *fmt,
                               ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return send_error_hdr(conn, rq, method, status, msg, NULL, NULL);
}

/* Answer a library call: 200 with its body, or the mapped status with
 * the error body of the last error. Must run right after the call, on its thread,
 * because the last error is thread-local. */
static MHD_Result_t send_result(struct MHD_Connection *conn, request *rq,
                                const char *method, int rc, acache_buf *buf,
                                const char *ctype)
{
    MHD_Result_t ret;
    if (rc == ACACHE_OK) {
        ret = send_body(conn, rq, method, 200, ctype, buf->ptr ? buf->ptr : "", buf->size,
                        NULL, NULL);
    } else {
        const char *msg = acache_last_error();
        if (!msg[0])
            msg = acache_strerror(rc);
        ret = send_error_hdr(conn, rq, method, (unsigned int)acache_http_status(rc), msg,
                             NULL, NULL);
    }
    acache_buf_dispose(buf);
    return ret;
}

/* Percent-decode one path segment in place. Returns false on a malformed
 * escape or an encoded NUL; the segment was split from the raw path before
 * decoding, so an encoded '/' stays part of it. */
static bool pct_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r != '%') {
            *w++ = *r;
            continue;
        }
        int hi, lo;
        char a = r[1], b = a ? r[2] : '\0';
        hi = (a >= '0' && a <= '9')   ? a - '0'
             : (a >= 'a' && a <= 'f') ? a - 'a' + 10
             : (a >= 'A' && a <= 'F') ? a - 'A' + 10
                                      : -1;
        lo = (b >= '0' && b <= '9')   ? b - '0'
             : (b >= 'a' && b <= 'f') ? b - 'a' + 10
             : (b >= 'A' && b <= 'F') ? b - 'A' + 10
                                      : -1;
        if (hi < 0 || lo < 0)
            return false;
        int v = hi * 16 + lo;
        if (v == 0)
            return false;
        *w++ = (char)v;
        r += 2;
    }
    *w = '\0';
    return true;
}

/* ------------------------------------------------------------ parameters */

typedef enum { PARAM_OK, PARAM_ABSENT, PARAM_BAD } param_status;

static const char *query(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

/* An optional integer query parameter in [lo, hi]; absent -> `def`. Only
 * [+-]digits parse (an empty value does not): 422 otherwise, as FastAPI. */
static param_status int_param(struct MHD_Connection *conn, const char *name, long long lo,
                              long long hi, long long def, long long *out)
{
    const char *v = query(conn, name);
    *out = def;
    if (!v)
        return PARAM_ABSENT;
    const char *p = v;
    if (*p == '+' || *p == '-')
        p++;
    if (!*p)
        return PARAM_BAD;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return PARAM_BAD;
    errno = 0;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (errno == ERANGE || *end || n < lo || n > hi)
        return PARAM_BAD;
    *out = n;
    return PARAM_OK;
}

/* Aether's (FastAPI's) booleans: true/false/1/0/yes/no/on/off/t/f/y/n, any case. */
static param_status bool_param(struct MHD_Connection *conn, const char *name, int *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on", "t", "y"};
    static const char *const no[] = {"false", "0", "no", "off", "f", "n"};
    const char *v = query(conn, name);
    *out = 0;
    if (!v)
        return PARAM_ABSENT;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return PARAM_OK;
        }
        if (strcasecmp(v, no[i]) == 0)
            return PARAM_OK;
    }
    return PARAM_BAD;
}

/* Optional string: empty means absent (Aether tests truthiness). */
static const char *str_param(struct MHD_Connection *conn, const char *name)
{
    const char *v = query(conn, name);
    return (v && v[0]) ? v : NULL;
}

/* ------------------------------------------------------------ routes */

typedef struct call {
    server *srv;
    struct MHD_Connection *conn;
    request *rq;
    const char *method;
    char **seg; /* decoded segments after the route prefix */
    size_t nseg;
} call;

typedef MHD_Result_t (*route_fn)(call *k);

static MHD_Result_t bad_param(call *k, const char *name, const char *why)
{
    return send_error(k->conn, k->rq, k->method, 422, "query parameter %s: %s", name,
                      why);
}

static MHD_Result_t r_stats(call *k)
{
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_stats_json(&b, k->srv->cache);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

static MHD_Result_t r_config(call *k)
{
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_config_json(&b, k->srv->cache);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

static MHD_Result_t r_metrics(call *k)
{
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_metrics_text(&b, k->srv->cache);
    return send_result(k->conn, k->rq, k->method, rc, &b,
                       rc == ACACHE_OK ? METRICS_TYPE : JSON_TYPE);
}

static MHD_Result_t r_user_affinity(call *k)
{
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_user_affinities(&b, k->srv->cache, k->seg[1]);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

static MHD_Result_t r_affinities(call *k)
{
    long long limit, offset;
    if (int_param(k->conn, "limit", 1, 1000, 100, &limit) == PARAM_BAD)
        return bad_param(k, "limit", "must be an integer in 1..1000");
    if (int_param(k->conn, "offset", 0, LLONG_MAX, 0, &offset) == PARAM_BAD)
        return bad_param(k, "offset", "must be an integer >= 0");
    acache_list_query q = ACACHE_LIST_QUERY_INIT;
    q.keyword = str_param(k->conn, "keyword");
    q.limit = (int64_t)limit;
    q.offset = (int64_t)offset;
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_list_affinities(&b, k->srv->cache, &q);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

/* Every DELETE route: remove the target's pins, answer the library's body. */
static MHD_Result_t send_invalidation(call *k, const acache_target *t)
{
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_invalidate_json(&b, k->srv->cache, t);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

static MHD_Result_t r_clear_user(call *k)
{
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_USER;
    t.identifier = k->seg[1];
    return send_invalidation(k, &t);
}

static MHD_Result_t r_clear_single(call *k)
{
    /* DELETE .../affinity/{affinity_key}/{endpoint_id}/{model_id}/{api_format} */
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_SINGLE;
    t.affinity_key = k->seg[1];
    t.endpoint_id = k->seg[2];
    t.model_name = k->seg[3];
    t.api_format = k->seg[4];
    return send_invalidation(k, &t);
}

static MHD_Result_t r_clear_all(call *k)
{
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_ALL;
    return send_invalidation(k, &t);
}

static MHD_Result_t r_clear_provider(call *k)
{
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_PROVIDER;
    t.provider_id = k->seg[1];
    return send_invalidation(k, &t);
}

/* Extensions beside Aether's routes (docs/http-api.md): every pin to one
 * provider key ("key disabled") or one endpoint ("endpoint removed"). */
static MHD_Result_t r_clear_key(call *k)
{
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_KEY;
    t.key_id = k->seg[1];
    return send_invalidation(k, &t);
}

static MHD_Result_t r_clear_endpoint(call *k)
{
    acache_target t = ACACHE_TARGET_INIT;
    t.kind = ACACHE_TARGET_ENDPOINT;
    t.endpoint_id = k->seg[1];
    return send_invalidation(k, &t);
}

static MHD_Result_t r_mm_stats(call *k)
{
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_model_mapping_stats(&b, k->srv->cache);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

static MHD_Result_t r_mm_clear_all(call *k)
{
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_model_mapping_clear_all(&b, k->srv->cache);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

static MHD_Result_t r_mm_clear_model(call *k)
{
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_model_mapping_clear_model(&b, k->srv->cache, k->seg[1]);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

static MHD_Result_t r_mm_clear_provider(call *k)
{
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_model_mapping_clear_provider(&b, k->srv->cache, k->seg[2], k->seg[3]);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

/* hours / user_id / api_key_id of the TTL and hit analyses (§1.1, §2.1). */
static bool analysis_params(call *k, int *hours, const char **user_id,
                            const char **api_key_id, MHD_Result_t *ret)
{
    long long h;
    if (int_param(k->conn, "hours", 1, 720, 168, &h) == PARAM_BAD) {
        *ret = bad_param(k, "hours", "must be an integer in 1..720");
        return false;
    }
    *hours = (int)h;
    *user_id = str_param(k->conn, "user_id");
    *api_key_id = str_param(k->conn, "api_key_id");
    return true;
}

static MHD_Result_t r_ttl_analysis(call *k)
{
    int hours;
    const char *uid, *kid;
    MHD_Result_t ret;
    if (!analysis_params(k, &hours, &uid, &kid, &ret))
        return ret;
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_ttl_analysis(&b, k->srv->cache, hours, uid, kid);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

static MHD_Result_t r_hit_analysis(call *k)
{
    int hours;
    const char *uid, *kid;
    MHD_Result_t ret;
    if (!analysis_params(k, &hours, &uid, &kid, &ret))
        return ret;
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_hit_analysis(&b, k->srv->cache, hours, uid, kid);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

static MHD_Result_t r_interval_timeline(call *k)
{
    long long hours, limit;
    int with_users;
    if (int_param(k->conn, "hours", 1, 720, 24, &hours) == PARAM_BAD)
        return bad_param(k, "hours", "must be an integer in 1..720");
    if (int_param(k->conn, "limit", 100, 50000, 10000, &limit) == PARAM_BAD)
        return bad_param(k, "limit", "must be an integer in 100..50000");
    if (bool_param(k->conn, "include_user_info", &with_users) == PARAM_BAD)
        return bad_param(k, "include_user_info", "must be a boolean");
    acache_buf b = ACACHE_BUF_INIT;
    int rc = acache_interval_timeline(&b, k->srv->cache, (int)hours, (int)limit,
                                      str_param(k->conn, "user_id"), with_users);
    return send_result(k->conn, k->rq, k->method, rc, &b, JSON_TYPE);
}

/* A pattern segment of "*" is a (non-empty) parameter. Order matters only for
 * the fallback to 405: every route whose path matches is considered. */
typedef struct route {
    int prefix; /* 0 monitoring, 1 usage */
    const char *method;
    const char *pattern[MAX_SEGMENTS];
    size_t n;
    route_fn fn;
} route;

static const route ROUTES[] = {
    {0, "DELETE", {0}, 0, r_clear_all},
    {0, "GET", {"stats"}, 1, r_stats},
    {0, "GET", {"config"}, 1, r_config},
    {0, "GET", {"metrics"}, 1, r_metrics},
    {0, "GET", {"affinity", "*"}, 2, r_user_affinity},
    {0, "GET", {"affinities"}, 1, r_affinities},
    {0, "DELETE", {"users", "*"}, 2, r_clear_user},
    {0, "DELETE", {"affinity", "*", "*", "*", "*"}, 5, r_clear_single},
    {0, "DELETE", {"providers", "*"}, 2, r_clear_provider},
    {0, "DELETE", {"keys", "*"}, 2, r_clear_key},
    {0, "DELETE", {"endpoints", "*"}, 2, r_clear_endpoint},
    {0, "GET", {"model-mapping", "stats"}, 2, r_mm_stats},
    {0, "DELETE", {"model-mapping"}, 1, r_mm_clear_all},
    {0, "DELETE", {"model-mapping", "*"}, 2, r_mm_clear_model},
    {0, "DELETE", {"model-mapping", "provider", "*", "*"}, 4, r_mm_clear_provider},
    {1, "GET", {"ttl-analysis"}, 1, r_ttl_analysis},
    {1, "GET", {"hit-analysis"}, 1, r_hit_analysis},
    {1, "GET", {"interval-timeline"}, 1, r_interval_timeline},
};

static bool route_matches(const route *r, int prefix, char **seg, size_t nseg)
{
    if (r->prefix != prefix || r->n != nseg)
        return false;
    for (size_t i = 0; i < nseg; i++) {
        if (strcmp(r->pattern[i], "*") == 0) {
            if (!seg[i][0])
                return false;
        } else if (strcmp(r->pattern[i], seg[i]) != 0) {
            return false;
        }
    }
    return true;
}

static MHD_Result_t dispatch(server *srv, struct MHD_Connection *conn, request *rq,
                             const char *method)
{
    static const char *const prefixes[] = {MONITORING_PREFIX, USAGE_PREFIX};
    const char *raw = rq->raw_path;
    int prefix = -1;
    const char *rest = NULL;
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(raw, prefixes[i], n) == 0 && (raw[n] == '\0' || raw[n] == '/')) {
            prefix = i;
            rest = raw + n;
            break;
        }
    }
    if (prefix < 0)
        return send_error(conn, rq, method, 404, "Not Found");

    /* Split the raw remainder on '/' first, then decode each segment. */
    char *copy = strdup(rest);
    if (!copy)
        return send_error(conn, rq, method, 500, "out of memory");
    char *seg[MAX_SEGMENTS];
    size_t nseg = 0;
    MHD_Result_t ret;
    if (copy[0] == '/') {
        char *p = copy + 1;
        for (;;) {
            if (nseg == MAX_SEGMENTS) {
                free(copy);
                return send_error(conn, rq, method, 404, "Not Found");
            }
            seg[nseg++] = p;
            char *slash = strchr(p, '/');
            if (!slash)
                break;
            *slash = '\0';
            p = slash + 1;
        }
    }
    for (size_t i = 0; i < nseg; i++) {
        if (!pct_decode(seg[i])) {
            free(copy);
            return send_error(conn, rq, method, 422,
                              "path segment %zu: invalid percent-encoding", i + 1);
        }
    }

    /* HEAD runs the GET route (same status and headers); libmicrohttpd
     * sends no body for HEAD. Allow lists HEAD wherever GET is. */
    const char *want = strcmp(method, "HEAD") == 0 ? "GET" : method;
    const route *hit = NULL;
    char allow[64] = "";
    for (size_t i = 0; i < sizeof(ROUTES) / sizeof(ROUTES[0]); i++) {
        const route *r = &ROUTES[i];
        if (!route_matches(r, prefix, seg, nseg))
            continue;
        if (strcmp(r->method, want) == 0) {
            hit = r;
            break;
        }
        if (!strstr(allow, r->method)) {
            if (allow[0])
                strcat(allow, ", ");
            strcat(allow, strcmp(r->method, "GET") == 0 ? "GET, HEAD" : r->method);
        }
    }
    if (hit) {
        call k = {srv, conn, rq, method, seg, nseg};
        ret = hit->fn(&k);
    } else if (allow[0]) {
        ret = send_error_hdr(conn, rq, method, 405, "Method Not Allowed", "Allow", allow);
    } else {
        ret = send_error(conn, rq, method, 404, "Not Found");
    }
    free(copy);
    return ret;
}

/* ------------------------------------------------------------ MHD glue */

/* Constant time: both sides are hashed to fixed-size digests first, so
 * neither the token's bytes nor its length leak through timing. */
static bool authorized(server *srv, struct MHD_Connection *conn)
{
    if (!srv->auth)
        return true;
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    unsigned char got[crypto_generichash_BYTES];
    crypto_generichash(got, sizeof(got), (const unsigned char *)tok, strlen(tok), NULL,
                       0);
    bool ok = sodium_memcmp(got, srv->token_hash, sizeof(got)) == 0;
    sodium_memzero(got, sizeof(got));
    return ok;
}

/* CORS preflight (OPTIONS with an allowed Origin): 204, whatever the path;
 * add_cors() adds Access-Control-Allow-Origin. */
static MHD_Result_t send_preflight(struct MHD_Connection *conn, request *rq,
                                   const char *method)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    add_cors(resp, conn);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                            "GET, HEAD, DELETE, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    if (atomic_load(&g_draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    MHD_Result_t ret = MHD_queue_response(conn, 204, resp);
    MHD_destroy_response(resp);
    rq->answered = true;
    access_log(conn, rq, method, 204, 0);
    return ret;
}

/* GET/HEAD /healthz: the process answers. GET/HEAD /readyz: the store and
 * the catalog answer within --ready-timeout (admin_ops.c), and the server is
 * not draining; 503 otherwise. No authentication, no library data. */
static MHD_Result_t send_health(struct MHD_Connection *conn, request *rq,
                                const char *method, bool ready)
{
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return send_error_hdr(conn, rq, method, 405, "Method Not Allowed", "Allow",
                              "GET, HEAD");
    if (!ready) {
        static const char ok[] = "{\"status\": \"ok\"}";
        return send_body(conn, rq, method, 200, JSON_TYPE, ok, sizeof(ok) - 1, NULL,
                         NULL);
    }
    ops_ready r;
    ops_probe_run(&r);
    bool draining = atomic_load(&g_draining);
    size_t len = 0;
    char *body = ops_ready_json(&r, draining, &len);
    if (!body)
        return send_error(conn, rq, method, 500, "out of memory");
    MHD_Result_t ret = send_body(conn, rq, method, r.ready && !draining ? 200 : 503,
                                 JSON_TYPE, body, len, NULL, NULL);
    free(body);
    return ret;
}

static void *uri_logger(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    request *rq = calloc(1, sizeof(*rq));
    if (!rq)
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, &rq->start);
    clock_gettime(CLOCK_REALTIME, &rq->wall);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    ops_addr_string(ci ? ci->client_addr : NULL, rq->client, sizeof(rq->client));
    size_t n = strcspn(uri, "?#");
    rq->raw_path = malloc(n + 1);
    if (rq->raw_path) {
        memcpy(rq->raw_path, uri, n);
        rq->raw_path[n] = '\0';
    }
    return rq;
}

static conn_ctx *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void set_busy(struct MHD_Connection *conn, bool busy)
{
    conn_ctx *cc = conn_of(conn);
    if (!cc)
        return;
    pthread_mutex_lock(&g_conns.mu);
    cc->busy = busy;
    if (!busy)
        clock_gettime(CLOCK_MONOTONIC, &cc->since);
    pthread_mutex_unlock(&g_conns.mu);
}

/* Connections enter the reaper's list on accept and leave it in
 * NOTIFY_CLOSED, which libmicrohttpd calls before it closes the socket: so
 * the reaper, holding the same mutex, never shuts down a reused fd. */
static void notify_connection(void *cls, struct MHD_Connection *conn,
                              void **socket_context,
                              enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_ctx *cc = calloc(1, sizeof(*cc));
        if (!cc || !ci) {
            free(cc); /* untracked: still bounded by --idle-timeout */
            *socket_context = NULL;
            return;
        }
        cc->fd = ci->connect_fd;
        clock_gettime(CLOCK_MONOTONIC, &cc->since);
        pthread_mutex_lock(&g_conns.mu);
        cc->next = g_conns.head;
        if (g_conns.head)
            g_conns.head->prev = cc;
        g_conns.head = cc;
        pthread_mutex_unlock(&g_conns.mu);
        *socket_context = cc;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_ctx *cc = *socket_context;
        if (!cc)
            return;
        pthread_mutex_lock(&g_conns.mu);
        if (cc->prev)
            cc->prev->next = cc->next;
        else
            g_conns.head = cc->next;
        if (cc->next)
            cc->next->prev = cc->prev;
        pthread_mutex_unlock(&g_conns.mu);
        free(cc);
        *socket_context = NULL;
    }
}

/* libmicrohttpd's timeout is one of inactivity: a client sending a byte now
 * and then keeps a connection forever (slowloris). This thread closes every
 * connection that has not completed a request head within --head-timeout of
 * starting to wait for one; shutdown() makes the worker see EOF and close it
 * through its normal path. */
static void *head_reaper(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_conns.mu);
    while (!g_conns.stop) {
        struct timespec now, wake;
        clock_gettime(CLOCK_MONOTONIC, &now);
        unsigned n = 0;
        for (conn_ctx *cc = g_conns.head; cc; cc = cc->next) {
            long long waited_ns =
                (long long)(now.tv_sec - cc->since.tv_sec) * 1000000000LL +
                (now.tv_nsec - cc->since.tv_nsec);
            if (cc->busy || cc->reaped ||
                waited_ns < (long long)g_conns.timeout_s * 1000000000LL)
                continue;
            shutdown(cc->fd, SHUT_RDWR);
            cc->reaped = true;
            n++;
        }
        if (n)
            fprintf(stderr,
                    "acache-admin: closed %u connection(s) with no complete request head "
                    "after %us\n",
                    n, g_conns.timeout_s);
        clock_gettime(CLOCK_REALTIME, &wake); /* the cond uses the default clock */
        wake.tv_nsec += 250 * 1000000L;
        if (wake.tv_nsec >= 1000000000L) {
            wake.tv_sec++;
            wake.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g_conns.cv, &g_conns.mu, &wake);
    }
    pthread_mutex_unlock(&g_conns.mu);
    return NULL;
}

static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)toe;
    request *rq = *con_cls;
    if (!rq)
        return;
    if (rq->started) {
        set_busy(conn, false); /* keep-alive: the next head has --head-timeout */
        atomic_fetch_sub(&g_inflight, 1);
    }
    free(rq->raw_path);
    free(rq);
    *con_cls = NULL;
}

static MHD_Result_t handler(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version,
                            const char *upload_data, size_t *upload_data_size,
                            void **con_cls)
{
    (void)url; /* already unescaped by MHD, which would merge %2F: use raw_path */
    (void)version;
    (void)upload_data;
    server *srv = cls;
    request *rq = *con_cls;
    if (!rq || !rq->raw_path)
        return MHD_NO; /* out of memory in uri_logger: drop the connection */

    if (!rq->started) {
        rq->started = true;
        atomic_fetch_add(&g_inflight, 1);
        set_busy(conn, true);
        /* Before authentication: a browser's preflight carries no token, and
         * probes (kubelet, load balancers) have none either. */
        if (strcmp(method, "OPTIONS") == 0 && ops_cors_enabled()) {
            bool vary;
            if (ops_cors_allow(
                    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"), &vary))
                return send_preflight(conn, rq, method);
        }
        if (strcmp(rq->raw_path, "/healthz") == 0 || strcmp(rq->raw_path, "/readyz") == 0)
            return send_health(conn, rq, method, rq->raw_path[1] == 'r');
        if (!authorized(srv, conn))
            return send_error_hdr(conn, rq, method, 401, "Not authenticated",
                                  MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end = NULL;
            errno = 0;
            unsigned long long len = strtoull(cl, &end, 10);
            if (errno || end == cl || *end || len > MAX_BODY_BYTES)
                return send_error(conn, rq, method, 413,
                                  "request body larger than %d bytes", MAX_BODY_BYTES);
        }
        return MHD_YES; /* wait for the (ignored) body, if any */
    }
    if (rq->answered)
        return MHD_YES;
    if (*upload_data_size) {
        rq->body_bytes += *upload_data_size;
        *upload_data_size = 0;
        /* A chunked body with no length announced: MHD 0.9.x cannot queue a
         * response mid-upload, so refuse by closing the connection (logged
         * as 413 with no bytes sent). */
        if (rq->body_bytes > MAX_BODY_BYTES) {
            access_log(conn, rq, method, 413, 0);
            return MHD_NO;
        }
        return MHD_YES;
    }
    return dispatch(srv, conn, rq, method);
}

/* ------------------------------------------------------------ startup */

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    if (g_stop < 2)
        g_stop++;
    if (g_sigpipe[1] >= 0) {
        char c = 1;
        ssize_t w = write(g_sigpipe[1], &c, 1);
        (void)w;
    }
    errno = saved;
}

/* Secret files go through examples/common/secret_file.c: open/read into a
 * wiped buffer, a warning when group/other can read the file, a refusal when
 * they can write it. Buffers are freed (and wiped) with free_secret(). */
static char *read_secret(const char *path, const char *what)
{
    return secret_file_read("acache-admin", what, path, SECRET_FILE_MAX, NULL);
}

static char *dup_secret(const char *s)
{
    return secret_dup(s);
}

static void free_secret(char *s)
{
    secret_free(s);
}

/* HOST:PORT, [IPv6]:PORT. Numeric hosts or names resolved once at start. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *sslen)
{
    char host[256];
    const char *colon;
    const char *h = spec;
    size_t hl;
    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = spec + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - spec);
    }
    if (hl == 0 || hl >= sizeof(host))
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535)
        return -1;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        return -1;
    return 0;
}

static void usage(FILE *to)
{
    fprintf(
        to,
        "usage: acache-admin [options]\n"
        "  --store URI                 store (default $ACACHE_STORE, else Aether's\n"
        "                              $REDIS_SENTINEL_HOSTS (+ _SERVICE_NAME, "
        "$REDIS_PASSWORD),\n"
        "                              else $REDIS_URL (+ $REDIS_PASSWORD), else "
        "memory://)\n"
        "  --catalog URI               catalog: json:///path or postgresql://...\n"
        "  --encryption-key-file PATH  Aether ENCRYPTION_KEY (or "
        "$ACACHE_ENCRYPTION_KEY)\n"
        "  --listen HOST:PORT          default 127.0.0.1:8084 (port 0 = any free port)\n"
        "  --port-file PATH            write the bound port to PATH once listening\n"
        "  --token-file PATH           admin bearer token (or $ACACHE_ADMIN_TOKEN)\n"
        "  --insecure-no-auth          serve without a token (local testing only)\n"
        "  --threads N                 worker threads (default 4)\n"
        "  --max-connections N         open connections at most (default 256)\n"
        "  --per-ip-limit N            connections per client address (default 32, 0 = "
        "none)\n"
        "  --head-timeout SECONDS      close a connection whose request head is not "
        "complete\n"
        "                              this long after accept or the last response "
        "(default 10)\n"
        "  --idle-timeout SECONDS      close a connection idle this long (default 30)\n"
        "  --shutdown-grace SECONDS    on SIGTERM/SIGINT, wait this long for in-flight\n"
        "                              requests (default 10; a second signal stops at "
        "once)\n"
        "  --replay FILE               record JSON-lines traffic (acache-replay format)\n"
        "                              before serving: fills a memory:// store\n"
        "  --tls-cert PATH             serve HTTPS with this PEM certificate (chain)\n"
        "  --tls-key PATH              and this PEM private key (both or neither)\n"
        "  --cors-origin ORIGIN        allow browser calls from ORIGIN "
        "(scheme://host[:port]);\n"
        "                              repeatable; * allows any origin (default: none)\n"
        "  --log-format text|json      access log lines on stderr (default text)\n"
        "  --ready-timeout MS          /readyz waits this long for the store and "
        "catalog\n"
        "                              (default 1000)\n"
        "  --version                   print the version and exit\n");
}

/* A decimal option value in [lo, hi]; prints the error itself. */
static bool num_opt(const char *name, const char *v, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) {
        fprintf(stderr, "acache-admin: %s must be an integer in %ld..%ld\n", name, lo,
                hi);
        return false;
    }
    *out = n;
    return true;
}

/* Touch every pin of an acache-replay file, so a memory:// server has data. */
static int replay_file(acache *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "acache-admin: --replay %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    unsigned long n = 0, bad = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *ttl = json_object_get(o, "ttl");
        acache_touch t = ACACHE_TOUCH_INIT;
        t.affinity_key = json_string_value(json_object_get(o, "affinity_key"));
        t.api_format = json_string_value(json_object_get(o, "api_format"));
        t.model_name = json_string_value(json_object_get(o, "model"));
        t.provider_id = json_string_value(json_object_get(o, "provider_id"));
        t.endpoint_id = json_string_value(json_object_get(o, "endpoint_id"));
        t.key_id = json_string_value(json_object_get(o, "key_id"));
        if (json_is_integer(ttl) && json_integer_value(ttl) > 0 &&
            json_integer_value(ttl) <= UINT32_MAX)
            t.ttl_s = (uint32_t)json_integer_value(ttl);
        int rc = acache_affinity_touch(NULL, c, &t);
        if (rc == ACACHE_OK)
            n++;
        else if (bad++ < 3)
            fprintf(stderr, "acache-admin: --replay: %s\n", acache_last_error());
        json_decref(o);
    }
    free(line);
    fclose(f);
    fprintf(stderr, "acache-admin: replayed %lu requests (%lu rejected)\n", n, bad);
    return 0;
}

static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -1;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

int main(int argc, char **argv)
{
    const char *store = NULL; /* --store, else the environment (store_env.h) */
    const char *catalog = NULL, *key_file = NULL, *token_file = NULL, *port_file = NULL,
               *replay = NULL;
    const char *listen_spec = "127.0.0.1:8084";
    const char *tls_cert_path = NULL, *tls_key_path = NULL;
    long ready_timeout = 1000;
    int insecure = 0;
    long threads = 4, max_conns = 256, per_ip = 32, head_timeout = 10, idle_timeout = 30,
         grace = 10;
    static const struct option longopts[] = {
        {"store", required_argument, NULL, 's'},
        {"catalog", required_argument, NULL, 'c'},
        {"encryption-key-file", required_argument, NULL, 'k'},
        {"listen", required_argument, NULL, 'l'},
        {"port-file", required_argument, NULL, 'p'},
        {"replay", required_argument, NULL, 'R'},
        {"token-file", required_argument, NULL, 't'},
        {"insecure-no-auth", no_argument, NULL, 'I'},
        {"threads", required_argument, NULL, 'T'},
        {"max-connections", required_argument, NULL, 'M'},
        {"per-ip-limit", required_argument, NULL, 'P'},
        {"head-timeout", required_argument, NULL, 'H'},
        {"idle-timeout", required_argument, NULL, 'D'},
        {"shutdown-grace", required_argument, NULL, 'G'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"cors-origin", required_argument, NULL, 'O'},
        {"log-format", required_argument, NULL, 'L'},
        {"ready-timeout", required_argument, NULL, 'Y'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            store = optarg;
            break;
        case 'c':
            catalog = optarg;
            break;
        case 'k':
            key_file = optarg;
            break;
        case 'l':
            listen_spec = optarg;
            break;
        case 'p':
            port_file = optarg;
            break;
        case 'R':
            replay = optarg;
            break;
        case 't':
            token_file = optarg;
            break;
        case 'I':
            insecure = 1;
            break;
        case 'C':
            tls_cert_path = optarg;
            break;
        case 'K':
            tls_key_path = optarg;
            break;
        case 'O':
            if (!ops_cors_add(optarg)) {
                ops_cors_free();
                return 2;
            }
            break;
        case 'L':
            if (strcmp(optarg, "text") == 0) {
                g_log_format = LOG_TEXT;
            } else if (strcmp(optarg, "json") == 0) {
                g_log_format = LOG_JSON;
            } else {
                fprintf(stderr, "acache-admin: --log-format must be text or json\n");
                ops_cors_free();
                return 2;
            }
            break;
        case 'Y':
            if (!num_opt("--ready-timeout", optarg, 10, 60000, &ready_timeout)) {
                ops_cors_free();
                return 2;
            }
            break;
        case 'T':
            if (!num_opt("--threads", optarg, 1, 64, &threads))
                return 2;
            break;
        case 'M':
            if (!num_opt("--max-connections", optarg, 1, 65536, &max_conns))
                return 2;
            break;
        case 'P':
            if (!num_opt("--per-ip-limit", optarg, 0, 65536, &per_ip))
                return 2;
            break;
        case 'H':
            if (!num_opt("--head-timeout", optarg, 1, 3600, &head_timeout))
                return 2;
            break;
        case 'D':
            if (!num_opt("--idle-timeout", optarg, 1, 86400, &idle_timeout))
                return 2;
            break;
        case 'G':
            if (!num_opt("--shutdown-grace", optarg, 0, 3600, &grace))
                return 2;
            break;
        case 'V':
            printf("acache-admin %s (libaethercache %s, libmicrohttpd %s)\n",
                   ACACHE_VERSION_STRING, acache_version(), MHD_get_version());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!tls_cert_path != !tls_key_path) {
        fprintf(stderr, "acache-admin: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (tls_cert_path && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        fprintf(stderr,
                "acache-admin: --tls-cert: this libmicrohttpd (%s) was built without "
                "TLS support; rebuild it with GnuTLS or put a TLS reverse proxy in "
                "front (docs/http-api.md)\n",
                MHD_get_version());
        return 1;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "acache-admin: libsodium init failed\n");
        return 1;
    }
    /* Read before anything else starts: a bad file fails fast. The buffers
     * stay until MHD_stop_daemon (libmicrohttpd keeps the pointers). */
    char *tls_cert = NULL, *tls_key = NULL;
    if (tls_cert_path) {
        tls_cert = ops_read_pem(tls_cert_path, "TLS certificate", false);
        tls_key = tls_cert ? ops_read_pem(tls_key_path, "TLS key", true) : NULL;
        if (!tls_key) {
            ops_free_pem(tls_cert);
            return 1;
        }
    }

    static server srv;
    char *token = NULL;
    if (token_file)
        token = read_secret(token_file, "admin token file");
    else if (getenv("ACACHE_ADMIN_TOKEN"))
        token = dup_secret(getenv("ACACHE_ADMIN_TOKEN"));
    if ((token_file || getenv("ACACHE_ADMIN_TOKEN")) && (!token || !token[0])) {
        fprintf(stderr, "acache-admin: the admin token is empty or unreadable\n");
        free_secret(token);
        return 1;
    }
    if (!token && !insecure) {
        fprintf(stderr, "acache-admin: refusing to start without an admin token "
                        "(--token-file or $ACACHE_ADMIN_TOKEN; --insecure-no-auth "
                        "to serve without one)\n");
        return 2; /* a usage error, like every other missing or bad option */
    }
    srv.auth = token != NULL;
    if (token) {
        crypto_generichash(srv.token_hash, sizeof(srv.token_hash),
                           (const unsigned char *)token, strlen(token), NULL, 0);
        free_secret(token);
    }

    char *enc_key = NULL;
    if (key_file) {
        if (!(enc_key = read_secret(key_file, "encryption key file")))
            return 1;
    } else if (getenv("ACACHE_ENCRYPTION_KEY")) {
        enc_key = dup_secret(getenv("ACACHE_ENCRYPTION_KEY"));
    }

    struct sockaddr_storage addr;
    socklen_t addrlen = 0;
    if (parse_listen(listen_spec, &addr, &addrlen) != 0) {
        fprintf(stderr, "acache-admin: --listen %s: expected HOST:PORT\n", listen_spec);
        free_secret(enc_key);
        return 2;
    }

    char *env_store = NULL;
    if (!store) {
        const char *source;
        int bad = 0;
        env_store = store_uri_from_env("acache-admin", env_get, &source, &bad);
        if (bad) {
            free_secret(enc_key);
            return 2;
        }
        store = env_store;
    }
    acache_options opts = ACACHE_OPTIONS_INIT;
    opts.store_uri = (store && store[0]) ? store : "memory://";
    opts.catalog_uri = catalog;
    opts.encryption_key = (enc_key && enc_key[0]) ? enc_key : NULL;
    int rc = acache_open(&srv.cache, &opts);
    free_secret(enc_key); /* acache_open copied (and wiped) what it needed */
    secret_free(env_store);
    if (rc != ACACHE_OK) {
        fprintf(stderr, "acache-admin: open: %s: %s\n", acache_strerror(rc),
                acache_last_error());
        return 1;
    }

    if (replay && replay_file(srv.cache, replay) != 0) {
        acache_close(srv.cache);
        return 1;
    }

    if (pipe(g_sigpipe) != 0) {
        perror("acache-admin: pipe");
        acache_close(srv.cache);
        return 1;
    }
    fcntl(g_sigpipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* ITC: MHD_quiesce_daemon needs it with a thread pool. */
    unsigned int flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    struct MHD_OptionItem tls_opts[3] = {{MHD_OPTION_END, 0, NULL}};
    if (tls_cert) {
        flags |= MHD_USE_TLS;
        tls_opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, tls_cert};
        tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, tls_key};
        tls_opts[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    ops_probe_init(srv.cache, (unsigned)ready_timeout);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, handler, &srv, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)max_conns,
        /* Per client address: one client cannot take every connection. */
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)idle_timeout,
        MHD_OPTION_NOTIFY_CONNECTION, notify_connection, NULL,
        /* Bounds the request line + headers: longer ones get 414/431. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)128, MHD_OPTION_URI_LOG_CALLBACK,
        uri_logger, NULL, MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL,
        MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "acache-admin: cannot listen on %s%s\n", listen_spec,
                tls_cert ? " (or the TLS certificate and key were refused)" : "");
        ops_free_pem(tls_cert);
        ops_free_pem(tls_key);
        acache_close(srv.cache);
        return 1;
    }
    g_conns.timeout_s = (unsigned)head_timeout;
    pthread_t reaper;
    if (pthread_create(&reaper, NULL, head_reaper, NULL) != 0) {
        fprintf(stderr, "acache-admin: cannot start the reaper thread\n");
        MHD_stop_daemon(d);
        acache_close(srv.cache);
        return 1;
    }

    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage bound = {0}; /* AF_UNSPEC when the address is unknown */
    socklen_t blen = sizeof(bound);
    unsigned port = 0;
    char hoststr[INET6_ADDRSTRLEN] = "?";
    if (info && getsockname(info->listen_fd, (struct sockaddr *)&bound, &blen) == 0) {
        if (bound.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&bound;
            port = ntohs(in->sin_port);
            inet_ntop(AF_INET, &in->sin_addr, hoststr, sizeof(hoststr));
        } else if (bound.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&bound;
            port = ntohs(in6->sin6_port);
            inet_ntop(AF_INET6, &in6->sin6_addr, hoststr, sizeof(hoststr));
        }
    }
    if (port_file && write_port_file(port_file, port) != 0)
        fprintf(stderr, "acache-admin: cannot write %s\n", port_file);
    const char *scheme = tls_cert ? "https" : "http";
    if (bound.ss_family == AF_INET6)
        printf("listening on %s://[%s]:%u\n", scheme, hoststr, port);
    else
        printf("listening on %s://%s:%u\n", scheme, hoststr, port);
    if (!srv.auth)
        fprintf(stderr, "acache-admin: WARNING: serving without authentication\n");
    if (!tls_cert && !ops_is_loopback(&bound))
        fprintf(stderr,
                "acache-admin: WARNING: listening on %s, outside loopback, without TLS: "
                "the bearer token and all data cross the network in clear text; use "
                "--tls-cert/--tls-key or a TLS reverse proxy (docs/http-api.md)\n",
                listen_spec);
    fflush(stdout);

    while (!g_stop) {
        char c;
        ssize_t r = read(g_sigpipe[0], &c, 1);
        if (r < 0 && errno != EINTR)
            break;
    }
    /* Drain: stop accepting, let in-flight requests finish (their responses
     * say Connection: close) for up to --shutdown-grace, then stop. */
    atomic_store(&g_draining, true);
    MHD_socket lfd = MHD_quiesce_daemon(d);
    fprintf(stderr, "acache-admin: shutting down (%d request(s) in flight, grace %lds)\n",
            atomic_load(&g_inflight), grace);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (atomic_load(&g_inflight) > 0 && g_stop < 2 &&
           elapsed_us(&t0) < (double)grace * 1e6) {
        struct pollfd pfd = {g_sigpipe[0], POLLIN, 0};
        if (poll(&pfd, 1, 50) > 0) {
            char c;
            ssize_t r = read(g_sigpipe[0], &c, 1);
            (void)r;
        }
    }
    if (atomic_load(&g_inflight) > 0)
        fprintf(stderr, "acache-admin: %d request(s) still in flight, stopping anyway\n",
                atomic_load(&g_inflight));
    pthread_mutex_lock(&g_conns.mu);
    g_conns.stop = true;
    pthread_cond_signal(&g_conns.cv);
    pthread_mutex_unlock(&g_conns.mu);
    pthread_join(reaper, NULL);
    MHD_stop_daemon(d);
    if (lfd != MHD_INVALID_SOCKET)
        close(lfd);       /* ours after quiesce, closed only after MHD_stop_daemon */
    ops_probe_shutdown(); /* a detached probe may still use the handle */
    ops_free_pem(tls_cert);
    ops_free_pem(tls_key);
    ops_cors_free();
    acache_close(srv.cache);
    close(g_sigpipe[0]);
    close(g_sigpipe[1]);
    return 0;
}
