/* libaethercache: the enriched affinity listing, identifier resolution, one
 * user's affinities and invalidation by identifier (admin-api.md). */
#ifndef ACACHE_LISTING_H
#define ACACHE_LISTING_H

#include "buffer.h"
#include "cache.h"
#include "common.h"
#include <stddef.h>
#include <stdint.h>

ACACHE_BEGIN_DECL

/** Inputs of acache_list_affinities(); initialise with ACACHE_LIST_QUERY_INIT. */
typedef struct acache_list_query {
    unsigned int version; /* ACACHE_LIST_QUERY_VERSION */
    const char *keyword;  /* NULL or "" = no keyword (a blank one is matched as is) */
    int64_t limit;        /* 1..1000; the INIT value is 100 */
    int64_t offset;       /* >= 0 */
} acache_list_query;

#define ACACHE_LIST_QUERY_VERSION 1
#define ACACHE_LIST_QUERY_INIT                                                           \
    {                                                                                    \
        .version = ACACHE_LIST_QUERY_VERSION, .limit = 100, .offset = 0                  \
    }

/** One page of the enriched listing; opaque, read through the getters. */
typedef struct acache_listing acache_listing;
/** One item of a listing; borrowed from its acache_listing. */
typedef struct acache_listing_item acache_listing_item;

/**
 * Build the enriched, filtered, sorted, paginated listing (admin-api.md
 * "Enriched listing"). As in Aether, the keyword is trimmed only to resolve a
 * user: an api_keys.id equal to the keyword as given selects that key's pins;
 * else the trimmed keyword resolved as a user identifier (id, username,
 * email, API key id) selects the pins of all the user's keys; else every pin
 * whose affinity_key, user_api_key_name, user_id, username, email,
 * provider_id or key_id contains the keyword as given, both lower-cased like
 * Python's str.lower() (full Unicode mapping, libunistring). Bytes of the
 * data that are not valid UTF-8 are compared as they are, and a match starts
 * and ends on character boundaries. Key fields holding a NUL byte are matched
 * and rendered in JSON with every byte; the C getters stop at the NUL, and
 * such a key is never enriched. Items are sorted by expire_at
 * descending, ties by (affinity_key, api_format, model_name) ascending (byte
 * order), then paginated. Catalog look-ups are batched (at most one per table
 * for the enrichment), and each distinct encrypted key is decrypted once.
 * Without a catalog, enrichment fields are NULL and only raw fields match.
 * @param out receives the listing; free with acache_listing_free().
 * @param q   NULL = ACACHE_LIST_QUERY_INIT.
 * @return ACACHE_OK, ACACHE_EINVALID (version, limit outside 1..1000, offset < 0:
 *         never clamped), ACACHE_ESTORE, ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently on one handle; a listing is immutable and
 * may be read from any thread.   Since: 0.1
 */
ACACHE_EXTERN int acache_list_affinities(acache_listing **out, acache *c,
                                         const acache_list_query *q);

/** Items after filtering, before pagination (meta.total).  Since: 0.1 */
ACACHE_EXTERN size_t acache_listing_total(const acache_listing *l);
/** Items on this page (meta.count).  Since: 0.1 */
ACACHE_EXTERN size_t acache_listing_count(const acache_listing *l);
/** The limit and offset the listing was built with.  Since: 0.1 */
ACACHE_EXTERN int64_t acache_listing_limit(const acache_listing *l);
ACACHE_EXTERN int64_t acache_listing_offset(const acache_listing *l);
/** The user the keyword resolved to (selection rules 1 and 2), else NULL.
 *  Borrowed until acache_listing_free().  Since: 0.1 */
ACACHE_EXTERN const char *acache_listing_matched_user_id(const acache_listing *l);
/** Item `i` (< count), borrowed until acache_listing_free(); NULL if out of range. */
ACACHE_EXTERN const acache_listing_item *acache_listing_at(const acache_listing *l,
                                                           size_t i);
/** Free a listing. NULL is a no-op.  Since: 0.1 */
ACACHE_EXTERN void acache_listing_free(acache_listing *l);

/* Item getters (admin-api.md item table). Strings are borrowed from the
 * listing and are NULL where the JSON field is null. */
ACACHE_EXTERN const char *acache_listing_item_affinity_key(const acache_listing_item *it);
ACACHE_EXTERN const char *
acache_listing_item_user_api_key_name(const acache_listing_item *it);
/** api_keys.key_encrypted decrypted and masked (crypto.md); NULL when absent or
 *  undecryptable, or when no encryption key is configured. */
ACACHE_EXTERN const char *
acache_listing_item_user_api_key_prefix(const acache_listing_item *it);
/** api_keys.is_standalone; 0 when the key is unknown. */
ACACHE_EXTERN int acache_listing_item_is_standalone(const acache_listing_item *it);
ACACHE_EXTERN const char *acache_listing_item_user_id(const acache_listing_item *it);
ACACHE_EXTERN const char *acache_listing_item_username(const acache_listing_item *it);
ACACHE_EXTERN const char *acache_listing_item_email(const acache_listing_item *it);
ACACHE_EXTERN const char *acache_listing_item_provider_id(const acache_listing_item *it);
/** providers.display_name. */
ACACHE_EXTERN const char *
acache_listing_item_provider_name(const acache_listing_item *it);
ACACHE_EXTERN const char *acache_listing_item_endpoint_id(const acache_listing_item *it);
ACACHE_EXTERN const char *
acache_listing_item_endpoint_api_format(const acache_listing_item *it);
/** provider_endpoints.base_url. */
ACACHE_EXTERN const char *acache_listing_item_endpoint_url(const acache_listing_item *it);
ACACHE_EXTERN const char *acache_listing_item_key_id(const acache_listing_item *it);
ACACHE_EXTERN const char *acache_listing_item_key_name(const acache_listing_item *it);
/** provider_api_keys.api_key decrypted and masked; NULL as for user_api_key_prefix. */
ACACHE_EXTERN const char *acache_listing_item_key_prefix(const acache_listing_item *it);
/** provider_api_keys.rate_multiplier; 1.0 when the key is unknown. */
ACACHE_EXTERN double acache_listing_item_rate_multiplier(const acache_listing_item *it);
/** The record's model_name, raw. */
ACACHE_EXTERN const char *
acache_listing_item_global_model_id(const acache_listing_item *it);
/** global_models.name when the record's model_name is a known GlobalModel id,
 *  else the raw value. */
ACACHE_EXTERN const char *acache_listing_item_model_name(const acache_listing_item *it);
ACACHE_EXTERN const char *
acache_listing_item_model_display_name(const acache_listing_item *it);
ACACHE_EXTERN const char *acache_listing_item_api_format(const acache_listing_item *it);
ACACHE_EXTERN double acache_listing_item_created_at(const acache_listing_item *it);
ACACHE_EXTERN double acache_listing_item_expire_at(const acache_listing_item *it);
ACACHE_EXTERN int64_t acache_listing_item_request_count(const acache_listing_item *it);

/**
 * The listing's `data` object: {"items": [...], "meta": {"total", "limit",
 * "offset", "count"}, "matched_user_id": string|null}.
 * @param out filled with NUL-terminated JSON; release with acache_buf_dispose().
 * @return ACACHE_OK or ACACHE_ENOMEM.   Since: 0.1
 */
ACACHE_EXTERN int acache_listing_to_json(acache_buf *out, const acache_listing *l);

/**
 * The HTTP body of GET .../affinities: {"status": "ok", "data": <listing>}.
 * Plain arguments for FFI callers (keyword may be NULL).
 * @return as acache_list_affinities(); `out` is untouched on failure.
 * Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_list_affinities_json(acache_buf *out, acache *c,
                                              const char *keyword, int64_t limit,
                                              int64_t offset);

/**
 * Resolve a user identifier (admin-api.md "Identifier resolution"): trimmed,
 * then users.id, users.username, users.email, api_keys.id -> its user_id;
 * first match wins.
 * @param user_id_out receives the user id (NUL-terminated).
 * @return ACACHE_OK, ACACHE_ENOTFOUND (no match, or no catalog), ACACHE_EINVALID
 *         (NULL identifier), ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_resolve_user(acache_buf *user_id_out, acache *c,
                                      const char *identifier);

/**
 * The HTTP body of GET .../affinity/{identifier}: {status ("ok", or
 * "not_found" when the user has no pins), message (only when none), user_info
 * {user_id, username, email}, affinities [{provider_id, endpoint_id, key_id,
 * api_format, model_name, created_at, expire_at, request_count}],
 * total_endpoints}. Pins are those of the user's API keys, sorted like the
 * listing.
 * @return ACACHE_OK, ACACHE_ENOTFOUND (HTTP 404: identifier unknown; the last
 *         error names it and the accepted kinds; `out` untouched),
 *         ACACHE_EINVALID, ACACHE_ESTORE, ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_user_affinity_json(acache_buf *out, acache *c,
                                            const char *identifier);

/**
 * DELETE .../users/{identifier}: when the trimmed identifier is an api_keys.id,
 * remove that key's pins (user_info: user_id, username, email, api_key_id,
 * api_key_name); else resolve it as a user and remove the pins of all the
 * user's keys (user_info: user_id, username, email). Body: {status "ok",
 * message, user_info, count (records removed)}.
 * @return ACACHE_OK, ACACHE_ENOTFOUND (HTTP 404, `out` untouched),
 *         ACACHE_EINVALID, ACACHE_ESTORE, ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_clear_user_json(acache_buf *out, acache *c,
                                         const char *identifier);

ACACHE_END_DECL
#endif
