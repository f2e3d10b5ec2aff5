/* acache-admin: the operational pieces kept out of the routing code
 * (acache_admin.c): access log lines, client addresses, the readiness probe,
 * CORS origins and PEM files for TLS. docs/http-api.md documents them. */
#ifndef ACACHE_ADMIN_OPS_H
#define ACACHE_ADMIN_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>

#include <aether_cache/aether_cache.h>

/* ---- access log ---- */

typedef enum { LOG_TEXT = 0, LOG_JSON = 1 } log_format;

/* One line on stderr: `TIME CLIENT METHOD PATH STATUS BYTES DURATION` (text)
 * or one JSON object (json). `wall` is when the request arrived; method and
 * path are logged with bytes outside printable ASCII shown as '?'. */
void ops_access_log(log_format fmt, const struct timespec *wall, const char *client,
                    const char *method, const char *path, unsigned status, size_t bytes,
                    double duration_us);

/* Numeric text of an IPv4/IPv6 address ("-" otherwise). */
void ops_addr_string(const struct sockaddr *sa, char *out, size_t n);

/* 127.0.0.0/8, ::1 or an IPv4-mapped 127.x address. */
bool ops_is_loopback(const struct sockaddr_storage *ss);

/* ---- readiness (/readyz) ---- */

typedef struct ops_ready {
    bool ready;
    const char *store_type;    /* "memory", "redis" */
    const char *store_state;   /* "ok", "error", "timeout" */
    const char *catalog_type;  /* "json", "postgresql", NULL when none */
    const char *catalog_state; /* "ok", "error", "timeout", "none" */
} ops_ready;

/* Call once before serving. Probes use `c` and wait `timeout_ms` at most. */
void ops_probe_init(acache *c, unsigned timeout_ms);

/* Probe the store and the catalog. At most one probe runs at a time: a
 * request arriving while one runs waits for that one. A probe outliving the
 * timeout finishes in the background (bounded by the handle's own timeouts). */
void ops_probe_run(ops_ready *out);

/* Wait for a probe still running; call before acache_close(). */
void ops_probe_shutdown(void);

/* The /readyz body, malloc'd (NULL when out of memory). `draining` adds the
 * shutdown state. */
char *ops_ready_json(const ops_ready *r, bool draining, size_t *len);

/* ---- CORS ---- */

/* Add an allowed origin ("*" = any). Returns false (message printed) when it
 * is not `scheme://host[:port]`. */
bool ops_cors_add(const char *origin);
bool ops_cors_enabled(void);
/* The Access-Control-Allow-Origin value for a request's Origin header, or
 * NULL when CORS is off or the origin is not allowed. *vary is set when the
 * value depends on the request (Vary: Origin). */
const char *ops_cors_allow(const char *origin, bool *vary);
void ops_cors_free(void);

/* ---- PEM files (--tls-cert, --tls-key) ---- */

/* The whole file, NUL-terminated, in a sodium_malloc'd buffer (wiped on
 * free). `secret`: warn when group/other can read it, refuse when they can
 * write it. Prints why and returns NULL on failure. */
char *ops_read_pem(const char *path, const char *what, bool secret);
void ops_free_pem(char *p);

#endif
