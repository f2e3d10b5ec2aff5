/* Private to lib/admin: what listing.c, resolve.c and invalidate.c share. */
#ifndef ACACHE_LISTING_PRIV_H
#define ACACHE_LISTING_PRIV_H

#include <stddef.h>

#include "../core/core.h"

/* ---- the typed listing behind acache_list_affinities() and
 * acache_user_affinities(): private since 0.2 (the public form is the JSON
 * body), kept for the renderers and the C tests. Strings returned are
 * borrowed from the listing and NULL where the JSON field is null; the C
 * getters stop at a NUL inside a key field. ---- */

/** One page of the enriched listing; opaque, read through the getters. */
typedef struct acache__listing acache__listing;
/** One item of a listing; borrowed from its acache__listing. */
typedef struct acache__listing_item acache__listing_item;

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
 * @param out receives the listing; free with acache__listing_free().
 * @param q   NULL = ACACHE_LIST_QUERY_INIT.
 * @return ACACHE_OK, ACACHE_EINVALID (version, limit outside 1..1000, offset < 0:
 *         never clamped), ACACHE_ESTORE, ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently on one handle; a listing is immutable and
 * may be read from any thread.   Since: 0.1
 */
int acache__list_affinities(acache__listing **out, acache *c, const acache_list_query *q);

/** The same listing built now, neither read from nor kept as a snapshot:
 *  what every call cost before snapshots (bench and tests compare the two). */
int acache__list_affinities_fresh(acache__listing **out, acache *c,
                                  const acache_list_query *q);

/** Items after filtering, before pagination (meta.total).  Since: 0.1 */
size_t acache__listing_total(const acache__listing *l);
/** Items on this page (meta.count).  Since: 0.1 */
size_t acache__listing_count(const acache__listing *l);
/** The limit and offset the listing was built with.  Since: 0.1 */
int64_t acache__listing_limit(const acache__listing *l);
int64_t acache__listing_offset(const acache__listing *l);
/** The user the keyword resolved to (selection rules 1 and 2), else NULL.
 *  Borrowed until acache__listing_free().  Since: 0.1 */
const char *acache__listing_matched_user_id(const acache__listing *l);
/** Item `i` (< count), borrowed until acache__listing_free(); NULL if out of range. */
const acache__listing_item *acache__listing_at(const acache__listing *l, size_t i);
/** Free a listing. NULL is a no-op.  Since: 0.1 */
void acache__listing_free(acache__listing *l);

/* Item getters (admin-api.md item table). Strings are borrowed from the
 * listing and are NULL where the JSON field is null. */
const char *acache__listing_item_affinity_key(const acache__listing_item *it);
const char *acache__listing_item_user_api_key_name(const acache__listing_item *it);
/** api_keys.key_encrypted decrypted and masked (crypto.md); NULL when absent or
 *  undecryptable, or when no encryption key is configured. */
const char *acache__listing_item_user_api_key_prefix(const acache__listing_item *it);
/** api_keys.is_standalone; 0 when the key is unknown. */
int acache__listing_item_is_standalone(const acache__listing_item *it);
const char *acache__listing_item_user_id(const acache__listing_item *it);
const char *acache__listing_item_username(const acache__listing_item *it);
const char *acache__listing_item_email(const acache__listing_item *it);
const char *acache__listing_item_provider_id(const acache__listing_item *it);
/** providers.display_name. */
const char *acache__listing_item_provider_name(const acache__listing_item *it);
const char *acache__listing_item_endpoint_id(const acache__listing_item *it);
const char *acache__listing_item_endpoint_api_format(const acache__listing_item *it);
/** provider_endpoints.base_url. */
const char *acache__listing_item_endpoint_url(const acache__listing_item *it);
const char *acache__listing_item_key_id(const acache__listing_item *it);
const char *acache__listing_item_key_name(const acache__listing_item *it);
/** provider_api_keys.api_key decrypted and masked; NULL as for user_api_key_prefix. */
const char *acache__listing_item_key_prefix(const acache__listing_item *it);
/** provider_api_keys.rate_multiplier; 1.0 when the key is unknown. */
double acache__listing_item_rate_multiplier(const acache__listing_item *it);
/** The record's model_name, raw. */
const char *acache__listing_item_global_model_id(const acache__listing_item *it);
/** global_models.name when the record's model_name is a known GlobalModel id,
 *  else the raw value. */
const char *acache__listing_item_model_name(const acache__listing_item *it);
const char *acache__listing_item_model_display_name(const acache__listing_item *it);
const char *acache__listing_item_api_format(const acache__listing_item *it);
double acache__listing_item_created_at(const acache__listing_item *it);
double acache__listing_item_expire_at(const acache__listing_item *it);
int64_t acache__listing_item_request_count(const acache__listing_item *it);

/**
 * The listing's `data` object: {"items": [...], "meta": {"total", "limit",
 * "offset", "count"}, "matched_user_id": string|null}.
 * @param out filled with NUL-terminated JSON; release with acache_buf_dispose().
 * @return ACACHE_OK or ACACHE_ENOMEM.   Since: 0.1
 */
int acache__listing_to_json(acache_buf *out, const acache__listing *l);

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
int acache__clear_user_json(acache_buf *out, acache *c, const char *identifier);

/* A users row, copied (heap strings, NULL for SQL NULL). */
typedef struct acache__user_info {
    char *id, *username, *email;
} acache__user_info;

void acache__user_info_clear(acache__user_info *u);

/* Heap copy of `s` without leading/trailing ASCII whitespace (" \t\n\v\f\r").
 * NULL on ENOMEM (message set). */
char *acache__trim_dup(const char *s);

/* users.id, then users.username, then users.email equal to `ident` (already
 * trimmed); first match wins. No api_keys step: callers that want it do it
 * themselves, before or after, as the spec orders it.
 * @return ACACHE_OK, ACACHE_ENOTFOUND (no match or no catalog), ACACHE_ECATALOG,
 *         ACACHE_ENOMEM. */
int acache__find_user(acache__user_info *out, acache *c, const char *ident);

/* Identifier resolution (admin-api.md) of an already trimmed `ident`: steps
 * 1-3 (acache__find_user), then, when `key_step`, step 4 (api_keys.id ->
 * its user_id). out->id is the user id; username/email are set when that
 * user's row exists. Same returns as acache__find_user. */
int acache__resolve_ident(acache__user_info *out, acache *c, const char *ident,
                          int key_step);

/* Every live pin whose affinity_key is one of keys[0..n), sorted like the
 * listing, not enriched, not paginated (count == total). The list is always
 * a filter: n == 0 (keys may then be NULL) selects nothing, as do NULL
 * entries. */
int acache__listing_for_keys(acache__listing **out, acache *c, const char *const *keys,
                             size_t n);

/* Remove the pins of every API key of a user identifier (resolve.c). */
int acache__invalidate_user(size_t *removed, acache *c, const char *identifier);

/* The raw listing as a JSON array of records (all fields of affinity.md),
 * sorted by storage key (bodies.c). Private since 0.2: the public raw form is
 * acache_affinity_foreach() + acache_affinity_to_json(). */
int acache__affinity_list_json(acache_buf *out, acache *c, const char *affinity_key);

/* Dump `root` (owned; NULL = ENOMEM) into `out` as a compact admin body. */
struct json_t;
int acache__admin_dump(acache_buf *out, struct json_t *root);

/* Test hook: how many decrypt_and_mask calls built this listing. */
unsigned long acache__listing_decrypt_count(const acache__listing *l);

#endif
