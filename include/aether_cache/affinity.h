/* libaethercache: the gateway hot path and raw affinity operations. */
#ifndef ACACHE_AFFINITY_H
#define ACACHE_AFFINITY_H

#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "buffer.h"
#include "cache.h"

ACACHE_BEGIN_DECL

/** One pin (affinity.md "The record"); opaque, read through the getters.
 *  Strings returned by getters are borrowed and live until acache_affinity_free(). */
typedef struct acache_affinity acache_affinity;

/** The client API key id the pin belongs to: the record's `affinity_key`
 *  field (JSON keeps that name).   Since: 0.2 (was acache_affinity_affinity_key) */
ACACHE_EXTERN const char *acache_affinity_client_key(const acache_affinity *a);
ACACHE_EXTERN const char *acache_affinity_api_format(const acache_affinity *a);
ACACHE_EXTERN const char *acache_affinity_model_name(const acache_affinity *a);
ACACHE_EXTERN const char *acache_affinity_provider_id(const acache_affinity *a);
ACACHE_EXTERN const char *acache_affinity_endpoint_id(const acache_affinity *a);
ACACHE_EXTERN const char *acache_affinity_key_id(const acache_affinity *a);
ACACHE_EXTERN double acache_affinity_created_at(const acache_affinity *a);
ACACHE_EXTERN double acache_affinity_expire_at(const acache_affinity *a);
ACACHE_EXTERN int64_t acache_affinity_request_count(const acache_affinity *a);
/** The record as one JSON object (all fields above). */
ACACHE_EXTERN int acache_affinity_to_json(acache_buf *out, const acache_affinity *a);
/** Free a record. NULL is a no-op.  Since: 0.1 */
ACACHE_EXTERN void acache_affinity_free(acache_affinity *a);

/**
 * Look up the pin for (affinity_key, api_format, model_name). A pin past its
 * expire_at is deleted and reported as not found. Counts a hit or a miss.
 * Served from the handle's L1 cache when fresh there (Redis store only).
 * @param out receives the record; free with acache_affinity_free().
 * @return ACACHE_OK, ACACHE_ENOTFOUND (no live pin, or an unreadable value),
 *         ACACHE_EINVALID (empty field or ':' in affinity_key/api_format),
 *         ACACHE_ESTORE.
 * Thread-safety: safe concurrently on one handle.   Since: 0.1
 */
ACACHE_EXTERN int acache_affinity_get(acache_affinity **out, acache *c,
                                      const char *affinity_key, const char *api_format,
                                      const char *model_name);

/** What acache_affinity_touch() did. */
typedef enum acache_touch_result {
    ACACHE_TOUCH_SKIPPED = 0,   /* supports_caching was false: nothing written */
    ACACHE_TOUCH_CREATED = 1,   /* no live pin: a new one (request_count 1) */
    ACACHE_TOUCH_REFRESHED = 2, /* same provider/endpoint/key: count + 1, TTL slid */
    ACACHE_TOUCH_SWITCHED = 3   /* a live pin to another key was replaced */
} acache_touch_result;

/** Inputs of acache_affinity_touch(); initialise with ACACHE_TOUCH_INIT. */
typedef struct acache_touch {
    unsigned int version;      /* ACACHE_TOUCH_VERSION */
    const char *affinity_key;  /* client API key id: required, no ':' */
    const char *api_format;    /* required, no ':' */
    const char *model_name;    /* required; may contain ':' */
    const char *provider_id;   /* required */
    const char *endpoint_id;   /* required */
    const char *key_id;        /* required */
    int supports_caching;      /* 0: do nothing (ACACHE_TOUCH_SKIPPED) */
    uint32_t ttl_s;            /* 0 = the handle's default TTL */
} acache_touch;

#define ACACHE_TOUCH_VERSION 1
#define ACACHE_TOUCH_INIT {.version = ACACHE_TOUCH_VERSION, .supports_caching = 1}

/**
 * Record that a request was served through (provider, endpoint, key):
 * create, refresh or switch the pin atomically in the store (a Lua script on
 * Redis), so concurrent touches from any number of processes lose no count.
 * @param result optional: receives what happened (ACACHE_TOUCH_SKIPPED on
 *        any error, which then says nothing about the store).
 * @return ACACHE_OK, ACACHE_EINVALID, ACACHE_ESTORE (outcome unknown: a
 *         timed-out touch may still be applied; it is not counted).
 * Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_affinity_touch(acache_touch_result *result, acache *c,
                                        const acache_touch *t);

/**
 * Delete the pin if it is live and every non-NULL filter matches its value
 * (atomic compare-and-delete). A pin past its expire_at is not live, even if
 * its Redis key has not expired yet: it is reaped as by acache_affinity_get()
 * and reported not found. Counts an invalidation when one is removed.
 * @return ACACHE_OK (removed), ACACHE_ENOTFOUND (absent, expired, or a filter
 *         differs), ACACHE_EINVALID, ACACHE_ESTORE (outcome unknown: the
 *         delete may still have happened, see docs/affinity.md).
 * Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_affinity_invalidate(acache *c, const char *affinity_key,
                                             const char *api_format,
                                             const char *model_name,
                                             const char *key_id,
                                             const char *provider_id,
                                             const char *endpoint_id);

/**
 * The raw listing: calls `cb` once per live record (unexpired, readable), in
 * no particular order, with affinity_key / api_format / model_name filled
 * from the storage key when the value lacks them. The record is borrowed for
 * the call. Return nonzero from `cb` to stop early (that value is then
 * returned). Removing pins by key, provider or all: acache_invalidate()
 * (admin.h); the enriched, sorted listing: acache_list_affinities().
 * @param affinity_key NULL for all, or only that client key's records.
 * @return ACACHE_OK, the callback's nonzero value, ACACHE_ESTORE, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently.   Since: 0.1
 */
typedef int (*acache_affinity_cb)(const acache_affinity *a, void *payload);
ACACHE_EXTERN int acache_affinity_foreach(acache *c, const char *affinity_key,
                                          acache_affinity_cb cb, void *payload);

ACACHE_END_DECL
#endif
