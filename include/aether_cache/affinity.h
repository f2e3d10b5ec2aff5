/* libaethercache: the gateway hot path and raw affinity operations. */
#ifndef ACACHE_AFFINITY_H
#define ACACHE_AFFINITY_H

#include "buffer.h"
#include "cache.h"
#include "common.h"
#include <stddef.h>
#include <stdint.h>

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
    unsigned int version;     /* ACACHE_TOUCH_VERSION */
    const char *affinity_key; /* client API key id: required, no ':' */
    const char *api_format;   /* required, no ':' */
    const char *model_name;   /* required; may contain ':' */
    const char *provider_id;  /* required */
    const char *endpoint_id;  /* required */
    const char *key_id;       /* required */
    int supports_caching;     /* 0: do nothing (ACACHE_TOUCH_SKIPPED) */
    uint32_t ttl_s;           /* 0 = the handle's default TTL */
} acache_touch;

#define ACACHE_TOUCH_VERSION 1
#define ACACHE_TOUCH_INIT                                                                \
    {                                                                                    \
        .version = ACACHE_TOUCH_VERSION, .supports_caching = 1                           \
    }

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

/* ---- pin lifecycle: the outcome of a request served through a pin ---- */

/** How a request served through a pin ended (acache_affinity_report()). */
typedef enum acache_outcome {
    ACACHE_OUTCOME_SUCCESS = 1, /* as acache_affinity_touch(); clears the failure count */
    ACACHE_OUTCOME_TRANSIENT = 2, /* timeout, 5xx, 429: counted on the pin, which is
                                     dropped at options.max_transient_failures in a row */
    ACACHE_OUTCOME_TERMINAL = 3   /* 401/403, key disabled: the pin is dropped at once */
} acache_outcome;

/** What acache_affinity_report() did. 1..3 are acache_touch_result's values. */
typedef enum acache_report_action {
    ACACHE_REPORT_SKIPPED = 0,   /* nothing written (success with supports_caching 0,
                                    or an error) */
    ACACHE_REPORT_CREATED = 1,   /* success: as ACACHE_TOUCH_CREATED */
    ACACHE_REPORT_REFRESHED = 2, /* success: as ACACHE_TOUCH_REFRESHED */
    ACACHE_REPORT_SWITCHED = 3,  /* success: as ACACHE_TOUCH_SWITCHED */
    ACACHE_REPORT_KEPT = 4,      /* transient failure counted, pin kept */
    ACACHE_REPORT_DROPPED = 5,   /* failure: the pin was deleted */
    ACACHE_REPORT_NOT_PINNED = 6 /* failure, but no live pin to that provider /
                                    endpoint / key (absent, expired, or already
                                    moved elsewhere): nothing changed */
} acache_report_action;

/** Inputs of acache_affinity_report(); initialise with ACACHE_REPORT_INIT. */
typedef struct acache_report {
    unsigned int version;     /* ACACHE_REPORT_VERSION */
    const char *affinity_key; /* client API key id: required, no ':' */
    const char *api_format;   /* required, no ':' */
    const char *model_name;   /* required; may contain ':' */
    const char *provider_id;  /* the target the request went to: required */
    const char *endpoint_id;  /* required */
    const char *key_id;       /* required */
    int outcome;              /* acache_outcome */
    int supports_caching;     /* success only, as in acache_touch (INIT: 1) */
    uint32_t ttl_s;           /* success only: 0 = the handle's default TTL */
} acache_report;

#define ACACHE_REPORT_VERSION 1
#define ACACHE_REPORT_INIT                                                               \
    {                                                                                    \
        .version = ACACHE_REPORT_VERSION, .supports_caching = 1                          \
    }

/** What acache_affinity_report() did; the caller sets `version`. */
typedef struct acache_report_result {
    unsigned int version; /* ACACHE_REPORT_RESULT_VERSION */
    int action;           /* acache_report_action */
    uint32_t failures;    /* consecutive transient failures on the pin after the
                             call: the kept count, or the count that dropped it
                             (1 for a terminal drop); 0 otherwise */
} acache_report_result;

#define ACACHE_REPORT_RESULT_VERSION 1
#define ACACHE_REPORT_RESULT_INIT                                                        \
    {                                                                                    \
        .version = ACACHE_REPORT_RESULT_VERSION                                          \
    }

/**
 * Report how a request served through (provider, endpoint, key) ended, so
 * that the pin follows the key's health (docs/affinity.md "Pin lifecycle"):
 *   SUCCESS    exactly acache_affinity_touch() (create, refresh or switch); a
 *              refresh clears the pin's failure count.
 *   TRANSIENT  if the live pin points at exactly this provider/endpoint/key,
 *              its failure count goes up by one (kept in the pin's value as
 *              "failure_count", which Aether ignores); at
 *              options.max_transient_failures in a row (default 3) the pin
 *              is dropped. The pin's TTL is not extended.
 *   TERMINAL   the pin is dropped at once if it points at this target.
 * Every step is atomic in the store (one Lua script on Redis), and a drop is
 * a compare-and-delete on the failed target: a pin another process already
 * moved elsewhere is never deleted (ACACHE_REPORT_NOT_PINNED). Drops count as
 * cache_invalidations, and by cause in the stats (report_*, pins_dropped_*).
 * @param out optional: receives what happened (its version set by the caller;
 *        action ACACHE_REPORT_SKIPPED on any error).
 * @return ACACHE_OK, ACACHE_EINVALID (field, outcome or struct version),
 *         ACACHE_EUNSUPPORTED (a transient failure on a custom store without
 *         the affinity_fail slot), ACACHE_ESTORE (outcome unknown, not counted).
 * Thread-safety: safe concurrently.   Since: 0.2
 */
ACACHE_EXTERN int acache_affinity_report(acache_report_result *out, acache *c,
                                         const acache_report *r);

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
                                             const char *model_name, const char *key_id,
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
