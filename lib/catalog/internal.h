/* Private to lib/catalog/: constructors and helpers the two backends share. */
#ifndef ACACHE_CATALOG_INTERNAL_H
#define ACACHE_CATALOG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "aether_cache/sys/catalog.h"

/* JSON file catalog (json.c). `path` is a filesystem path, copied. */
int acache__catalog_json_new(acache_catalog **out, const char *path);

/* Test hook: run the reload check now instead of waiting for the next
 * once-a-second stat. Returns what a look-up would have returned for it
 * (ACACHE_OK, or ACACHE_ECATALOG once for a file that became invalid). */
int acache__json_catalog_recheck(acache_catalog *cat);

/* ISO 8601 timestamp text s[0..len) (not NUL-terminated; never read past
 * len) to microseconds since the epoch: 0, or -1 when it is not one. */
int acache__iso8601_parse(const char *s, size_t len, int64_t *out_us);

/* usage_scan window: a row passes when its created_at, in whole
 * microseconds since the epoch, is >= the value returned. Both backends use
 * this so the strict/inclusive boundary is identical. */
int64_t acache__usage_min_us(const acache_usage_filter *f);

/* Nonzero when s is well-formed UTF-8 (no overlongs, no surrogates), the same
 * rule PostgreSQL applies to text in a UTF8 database. */
int acache__utf8_valid(const char *s);

#endif
