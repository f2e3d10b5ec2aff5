/* libaethercache: the enriched affinity listing, identifier resolution and
 * one user's affinities (admin-api.md), as the admin JSON bodies.
 * Invalidation by identifier: acache_invalidate() with ACACHE_TARGET_USER. */
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

/**
 * The HTTP body of GET .../affinities: {"status": "ok", "data": {"items":
 * [...], "meta": {"total", "limit", "offset", "count"}, "matched_user_id":
 * string|null}} (admin-api.md "Enriched listing"): the enriched, filtered,
 * sorted, paginated listing.
 *
 * Selection: as in Aether, the keyword is trimmed only to resolve a user: an
 * api_keys.id equal to the keyword as given selects that key's pins; else
 * the trimmed keyword resolved as a user identifier (id, username, email,
 * API key id) selects the pins of all the user's keys; else every pin whose
 * affinity_key, user_api_key_name, user_id, username, email, provider_id or
 * key_id contains the keyword as given, both lower-cased like Python's
 * str.lower() (full Unicode mapping, libunistring). Bytes of the data that
 * are not valid UTF-8 are compared as they are, and a match starts and ends
 * on character boundaries. Key fields holding a NUL byte are matched and
 * rendered with every byte (JSON "\u0000"), and such a key is never enriched.
 * Items are sorted by expire_at descending, ties by (affinity_key,
 * api_format, model_name) ascending (byte order), then paginated. Catalog
 * look-ups are batched (at most one per table for the enrichment), and each
 * distinct encrypted key is decrypted once. Without a catalog, enrichment
 * fields are null and only raw fields match.
 * @param out filled with NUL-terminated JSON; release with acache_buf_dispose().
 *        Untouched on failure.
 * @param q   NULL = ACACHE_LIST_QUERY_INIT.
 * @return ACACHE_OK, ACACHE_EINVALID (version, limit outside 1..1000, offset < 0:
 *         never clamped), ACACHE_ESTORE, ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently on one handle.   Since: 0.2 (0.1 had a
 * typed listing under this name and this body as acache_list_affinities_json)
 */
ACACHE_EXTERN int acache_list_affinities(acache_buf *out, acache *c,
                                         const acache_list_query *q);

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
 * Thread-safety: safe concurrently.   Since: 0.2 (was acache_user_affinity_json)
 */
ACACHE_EXTERN int acache_user_affinities(acache_buf *out, acache *c,
                                         const char *identifier);

ACACHE_END_DECL
#endif
