/* libaethercache: operator invalidation with one entry point (acache_invalidate)
 * and its admin JSON body (acache_invalidate_json), the HTTP status of a
 * library status, and the JSON helpers acache-admin forwards bodies with. */
#ifndef ACACHE_ADMIN_H
#define ACACHE_ADMIN_H

#include "buffer.h"
#include "cache.h"
#include "common.h"
#include <stddef.h>
#include <stdint.h>

ACACHE_BEGIN_DECL

/** What acache_invalidate() removes. */
typedef enum acache_target_kind {
    ACACHE_TARGET_SINGLE = 1,   /* affinity_key + api_format + model_name, with optional
                                   endpoint_id / key_id / provider_id filters */
    ACACHE_TARGET_API_KEY = 2,  /* affinity_key: every pin of that client key */
    ACACHE_TARGET_USER = 3,     /* identifier: an api_keys.id, else a user (id,
                                   username, email) resolved through the catalog */
    ACACHE_TARGET_PROVIDER = 4, /* provider_id */
    ACACHE_TARGET_ALL = 5,
    ACACHE_TARGET_KEY = 6,     /* key_id: every pin to that provider API key
                                  ("key disabled"). Since: 0.2 */
    ACACHE_TARGET_ENDPOINT = 7 /* endpoint_id: every pin to that provider
                                  endpoint ("endpoint removed"). Since: 0.2 */
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
#define ACACHE_TARGET_INIT                                                               \
    {                                                                                    \
        .version = ACACHE_TARGET_VERSION                                                 \
    }

/**
 * Remove the pins named by `t`.
 * @param removed optional: receives how many records were removed.
 * @return ACACHE_OK, ACACHE_ENOTFOUND (single: absent or filter mismatch; user:
 *         identifier unknown), ACACHE_EINVALID, ACACHE_ESTORE, ACACHE_ECATALOG.
 * Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_invalidate(size_t *removed, acache *c, const acache_target *t);

/**
 * Remove the pins named by `t` as acache_invalidate() does and fill `out`
 * with the body acache-admin answers for that kind (admin-api.md):
 *   SINGLE    {status, message, affinity_key, endpoint_id, model_id}
 *             (DELETE .../affinity/{key}/{endpoint}/{model}/{format})
 *   USER      {status, message, user_info, count}  (DELETE .../users/{id}:
 *             an api_keys.id removes that key's pins and user_info names the
 *             key too; else the identifier is resolved as a user)
 *   PROVIDER  {status, message, provider_id, count}
 *   ALL       {status, message, count}             (DELETE .../cache)
 *   API_KEY   {status, message, affinity_key, count} (no Aether route; the
 *             same shape as PROVIDER)
 *   KEY       {status, message, key_id, count}       (extension: DELETE
 *             .../cache/keys/{key_id}; the same shape as PROVIDER)
 *   ENDPOINT  {status, message, endpoint_id, count}  (extension: DELETE
 *             .../cache/endpoints/{endpoint_id})
 * A NULL endpoint_id of a SINGLE target is no filter and shows as null.
 * @param out filled with NUL-terminated JSON; release with acache_buf_dispose().
 *        Untouched on failure.
 * @return as acache_invalidate(); ACACHE_ENOTFOUND (HTTP 404) for a SINGLE
 *         pin that is absent or whose filters differ, and for an unknown
 *         USER identifier (the last error names it).
 * Thread-safety: safe concurrently.   Since: 0.2
 */
ACACHE_EXTERN int acache_invalidate_json(acache_buf *out, acache *c,
                                         const acache_target *t);

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
