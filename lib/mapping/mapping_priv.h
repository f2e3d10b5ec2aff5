/* Private to lib/ and the tests: the model-mapping functions without the
 * "Redis only" gate.
 *
 * The public acache_model_mapping_* functions answer "unavailable" /
 * ACACHE_EUNSUPPORTED on any store but Redis, as Aether does. These
 * entry points run the same logic on whatever store the handle has (any
 * store with the raw get/set/del/scan/ttl slots), so unit tests can fill the
 * memory store with Aether's keys and check the logic without a server. */
#ifndef ACACHE_MAPPING_PRIV_H
#define ACACHE_MAPPING_PRIV_H

#include <stddef.h>

#include "aether_cache/aether_cache.h"
#include "aether_cache/sys/catalog.h"
#include "aether_cache/sys/store.h"

int acache__model_mapping_stats_any_store(acache_model_mapping_stats **out, acache *c);
int acache__model_mapping_stats_json_any_store(acache_buf *out, acache *c);
int acache__model_mapping_clear_all_any_store(size_t *deleted, acache *c);
int acache__model_mapping_clear_all_json_any_store(acache_buf *out, acache *c);
int acache__model_mapping_clear_model_any_store(unsigned int *cleared, acache *c,
                                                const char *model_name);
int acache__model_mapping_clear_model_json_any_store(acache_buf *out, acache *c,
                                                     const char *model_name);
int acache__model_mapping_clear_provider_any_store(unsigned int *cleared, acache *c,
                                                   const char *provider_id,
                                                   const char *global_model_id);
int acache__model_mapping_clear_provider_json_any_store(acache_buf *out, acache *c,
                                                        const char *provider_id,
                                                        const char *global_model_id);

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
