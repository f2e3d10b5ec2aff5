/* Private to lib/admin: what listing.c, resolve.c and invalidate.c share. */
#ifndef ACACHE_LISTING_PRIV_H
#define ACACHE_LISTING_PRIV_H

#include <stddef.h>

#include "../core/core.h"

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

/* Remove the pins of every API key of a user identifier (resolve.c). */
int acache__invalidate_user(size_t *removed, acache *c, const char *identifier);

/* Dump `root` (owned; NULL = ENOMEM) into `out` as a compact admin body. */
struct json_t;
int acache__admin_dump(acache_buf *out, struct json_t *root);

/* Test hook: how many decrypt_and_mask calls built this listing. */
unsigned long acache__listing_decrypt_count(const acache_listing *l);

#endif
