/* Private to lib/mapping and the tests: the stats logic without a store.
 *
 * The public acache_model_mapping_* functions work on any store with
 * ACACHE_STORE_CAP_RAW_KEYS (Redis; tests grant it to a memory store) and
 * answer "Redis not enabled" / ACACHE_EUNSUPPORTED on the others, as Aether
 * does without Redis. */
#ifndef ACACHE_MAPPING_PRIV_H
#define ACACHE_MAPPING_PRIV_H

#include <stddef.h>

#include "aether_cache/aether_cache.h"
#include "aether_cache/sys/catalog.h"
#include "aether_cache/sys/store.h"

/* The stats logic without a store, for tests and the fuzzer: `entries` are
 * what the scans of `model:*` and `global_model:*` would hand over (keys and
 * values as bytes with lengths, value NULL = gone), `cat` the catalog or
 * NULL, `cap` the list cap (0: 100) and `ttl` every listed key's remaining
 * TTL. Same result as acache_model_mapping_stats_get() on such a store. */
int acache__model_mapping_stats_from_entries(acache_model_mapping_stats **out,
                                             const acache_entry *entries, size_t n,
                                             acache_catalog *cat, uint32_t ttl_seconds,
                                             size_t cap, int64_t ttl);
/* The stats JSON ({"status": "ok", "data": ...}) of a snapshot. */
int acache__model_mapping_stats_render(acache_buf *out,
                                       const acache_model_mapping_stats *s);

#endif
