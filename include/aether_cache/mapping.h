/* libaethercache: the model-mapping cache (model-mapping.md): inspection and
 * clearing of the `model:*` / `global_model:*` keys the gateway writes, as
 * the admin JSON bodies.
 *
 * Only a store that reaches those raw keys holds this cache (Redis; a store
 * with ACACHE_STORE_CAP_RAW_KEYS, sys/store.h). On any other store the stats
 * report available false with a message, and the clear functions return
 * ACACHE_EUNSUPPORTED ("Redis not enabled"; HTTP 503).
 */
#ifndef ACACHE_MAPPING_H
#define ACACHE_MAPPING_H

#include "buffer.h"
#include "cache.h"
#include "common.h"

ACACHE_BEGIN_DECL

/**
 * The HTTP body of GET .../model-mapping/stats: {"status": "ok", "data":
 * {available, message?, ttl_seconds, total_keys, breakdown, mappings,
 * unmapped, provider_model_mappings}} (model-mapping.md "Stats").
 * SCANs `model:*` and `global_model:*` (never KEYS), reads at most the
 * handle's mapping_list_cap resolve and provider_global entries (the first
 * ones in key order), and joins them with the catalog in three batched
 * look-ups; without a catalog, catalog-derived fields are empty or null.
 * @param out filled with NUL-terminated JSON; release with acache_buf_dispose().
 *        Untouched on failure.
 * @return ACACHE_OK (also on a store without the cache: available false),
 *         ACACHE_ESTORE, ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently.   Since: 0.2 (was acache_model_mapping_stats_json)
 */
ACACHE_EXTERN int acache_model_mapping_stats(acache_buf *out, acache *c);

/**
 * Delete every `model:*` and `global_model:*` key (hits counters included),
 * by SCAN and batched deletes. Body: {status, message, deleted_count}.
 * @return ACACHE_OK, ACACHE_EUNSUPPORTED (no model-mapping cache), ACACHE_ESTORE.
 * Thread-safety: safe concurrently.   Since: 0.2 (was ..._clear_all_json)
 */
ACACHE_EXTERN int acache_model_mapping_clear_all(acache_buf *out, acache *c);

/**
 * Delete `global_model:resolve:{model_name}` and `global_model:name:{model_name}`
 * (the name is a literal: glob characters are not patterns). Body: {status,
 * message, model_name, deleted_keys (the keys that existed, in that order)}.
 * @return ACACHE_OK (also when nothing existed), ACACHE_EINVALID (NULL/empty
 *         name), ACACHE_EUNSUPPORTED, ACACHE_ESTORE.
 * Thread-safety: safe concurrently.   Since: 0.2 (was ..._clear_model_json)
 */
ACACHE_EXTERN int acache_model_mapping_clear_model(acache_buf *out, acache *c,
                                                   const char *model_name);

/**
 * Delete `model:provider_global:{provider_id}:{global_model_id}` and its hits
 * key. Body: {status, message, provider_id, global_model_id, deleted_keys}.
 * @return ACACHE_OK, ACACHE_EINVALID, ACACHE_EUNSUPPORTED, ACACHE_ESTORE.
 * Thread-safety: safe concurrently.   Since: 0.2 (was ..._clear_provider_json)
 */
ACACHE_EXTERN int acache_model_mapping_clear_provider(acache_buf *out, acache *c,
                                                      const char *provider_id,
                                                      const char *global_model_id);

ACACHE_END_DECL
#endif
