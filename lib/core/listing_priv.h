/* Private to lib/core: what listing.c, resolve.c and affinity_obj.c share. */
#ifndef ACACHE_LISTING_PRIV_H
#define ACACHE_LISTING_PRIV_H

#include <stddef.h>

#include "core.h"

/* The string fields of an acache_affinity, in storage order. */
enum {
    ACACHE__F_AFFINITY_KEY,
    ACACHE__F_API_FORMAT,
    ACACHE__F_MODEL_NAME,
    ACACHE__F_PROVIDER_ID,
    ACACHE__F_ENDPOINT_ID,
    ACACHE__F_KEY_ID,
    ACACHE__F_COUNT
};

/* Field `field` (ACACHE__F_*) of `a` and its length in bytes. The key fields
 * come from a storage key, which is bytes: they may hold a NUL, so callers
 * that compare or render them use the length, never strlen. The string is
 * NUL-terminated after `*len` bytes. */
const char *acache__affinity_field(const acache_affinity *a, int field, size_t *len);

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
int acache__listing_for_keys(acache_listing **out, acache *c, const char *const *keys,
                             size_t n);

/* Test hook: how many decrypt_and_mask calls built this listing. */
unsigned long acache__listing_decrypt_count(const acache_listing *l);

#endif
