/* jansson helpers shared by the JSON renderers. */
#ifndef ACACHE_UTIL_JSON_H
#define ACACHE_UTIL_JSON_H

#include <jansson.h>

#include "aether_cache/buffer.h"

/* Dump `root` (borrowed) into `out` like Python's json.dumps: ", " and ": "
 * separators, insertion order, non-ASCII kept as UTF-8 (ensure_ascii off),
 * reals in repr() form (0.1, 12.0). `indent` > 0 pretty-prints.
 * Returns ACACHE_OK or ACACHE_ENOMEM. */
int acache__json_dump(acache_buf *out, json_t *root, int indent);

/* json_string() that maps NULL to json null, and invalid UTF-8 to a copy with
 * U+FFFD replacements instead of failing. Never returns NULL except on ENOMEM. */
json_t *acache__json_str(const char *s);
json_t *acache__json_strn(const char *s, size_t len);

/* Set key to value, stealing the reference; returns -1 on NULL value (ENOMEM). */
int acache__json_set(json_t *obj, const char *key, json_t *value);

#endif
