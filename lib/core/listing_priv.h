/* Private to lib/core: what listing.c and resolve.c share. */
#ifndef ACACHE_LISTING_PRIV_H
#define ACACHE_LISTING_PRIV_H

#include <stddef.h>

#include "core.h"

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

/* Every live pin whose affinity_key is one of keys[0..n), sorted like the
 * listing, not enriched, not paginated (count == total). */
int acache__listing_for_keys(acache_listing **out, acache *c, const char *const *keys,
                             size_t n);

/* Test hook: how many decrypt_and_mask calls built this listing. */
unsigned long acache__listing_decrypt_count(const acache_listing *l);

#endif
