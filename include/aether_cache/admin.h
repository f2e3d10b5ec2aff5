/* libaethercache: operator invalidation with one entry point, and the admin
 * JSON bodies of the affinity invalidations (admin-api.md). */
#ifndef ACACHE_ADMIN_H
#define ACACHE_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "buffer.h"
#include "cache.h"

ACACHE_BEGIN_DECL

/** What acache_invalidate() removes. */
typedef enum acache_target_kind {
    ACACHE_TARGET_SINGLE = 1,   /* affinity_key + api_format + model_name, with optional
                                   endpoint_id / key_id / provider_id filters */
    ACACHE_TARGET_API_KEY = 2,  /* affinity_key: every pin of that client key */
    ACACHE_TARGET_USER = 3,     /* identifier: an api_keys.id, else a user (id,
                                   username, email) resolved through the catalog */
    ACACHE_TARGET_PROVIDER = 4, /* provider_id */
    ACACHE_TARGET_ALL = 5
} acache_target_kind;

typedef struct acache_target {
    unsigned int version; /* ACACHE_TARGET_VERSION */
    int kind;             /* acache_target_kind */
    const char *affinity_key;
    const char *api_format;
    const char *model_name;
    const char *endpoint_id;
    const char *key_id;
    const char *provider_id;
    const char *identifier;
} acache_target;

#define ACACHE_TARGET_VERSION 1
#define ACACHE_TARGET_INIT {.version = ACACHE_TARGET_VERSION}

/**
 * Remove the pins named by `t`.
 * @param removed optional: receives how many records were removed.
 * @return ACACHE_OK, ACACHE_ENOTFOUND (single: absent or filter mismatch; user:
 *         identifier unknown), ACACHE_EINVALID, ACACHE_ESTORE, ACACHE_ECATALOG.
 * Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_invalidate(size_t *removed, acache *c, const acache_target *t);

/**
 * Admin "clear single affinity" body: {status, message, affinity_key,
 * endpoint_id, model_id}. @return ACACHE_ENOTFOUND (HTTP 404) when no pin or
 * its endpoint differs; `out` is then untouched.   Since: 0.1
 */
ACACHE_EXTERN int acache_clear_single_json(acache_buf *out, acache *c,
                                           const char *affinity_key,
                                           const char *endpoint_id, const char *model_id,
                                           const char *api_format);
/** Admin "clear provider" body: {status, message, provider_id, count}. */
ACACHE_EXTERN int acache_clear_provider_json(acache_buf *out, acache *c,
                                             const char *provider_id);
/** Admin "clear all" body: {status, message, count}. */
ACACHE_EXTERN int acache_clear_all_json(acache_buf *out, acache *c);

/** Raw listing as a JSON array of records (all fields of affinity.md). */
ACACHE_EXTERN int acache_affinity_list_json(acache_buf *out, acache *c,
                                            const char *affinity_key);

/**
 * HTTP status an admin server should answer for a library status:
 * 200 OK, 404 ENOTFOUND, 422 EINVALID, 503 ESTORE/EUNSUPPORTED, 500 otherwise.
 */
ACACHE_EXTERN int acache_http_status(int status);

/**
 * Re-indent a JSON document produced by this library (`indent` spaces, 0 =
 * one line), keeping its numbers in the same Python-style text.
 * @return ACACHE_OK, ACACHE_EINVALID (not JSON), ACACHE_ENOMEM.  Since: 0.1
 */
ACACHE_EXTERN int acache_json_reformat(acache_buf *out, const char *json, size_t len,
                                       int indent);

/**
 * Error body {"detail": message, "error": {"type": "http_error", "message":
 * message}} with JSON escaping (both FastAPI's and Aether's shapes).  Since: 0.1
 */
ACACHE_EXTERN int acache_error_json(acache_buf *out, const char *message);

ACACHE_END_DECL
#endif
