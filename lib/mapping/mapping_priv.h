/* Private to lib/mapping and the tests: the stats logic without a store.
 *
 * The public acache_model_mapping_* functions work on any store with
 * ACACHE_STORE_CAP_RAW_KEYS (Redis; tests grant it to a memory store) and
 * answer "Redis not enabled" / ACACHE_EUNSUPPORTED on the others, as Aether
 * does without Redis. */
#ifndef ACACHE_MAPPING_PRIV_H
#define ACACHE_MAPPING_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "aether_cache/aether_cache.h"
#include "aether_cache/sys/catalog.h"
#include "aether_cache/sys/store.h"

/* ---- the typed snapshot and clears behind the JSON bodies of
 * include/aether_cache/mapping.h: private since 0.2, kept for the renderer
 * and the C tests ---- */

/** Key families counted in the stats breakdown, in output order. */
typedef enum acache__mm_family {
    ACACHE_MM_MODEL_BY_ID = 0, /* model:id:{id} */
    ACACHE_MM_MODEL_BY_PROVIDER_GLOBAL =
        1,                              /* model:provider_global:{p}:{g}, hits excluded */
    ACACHE_MM_GLOBAL_MODEL_BY_ID = 2,   /* global_model:id:{id} */
    ACACHE_MM_GLOBAL_MODEL_BY_NAME = 3, /* global_model:name:{name} */
    ACACHE_MM_GLOBAL_MODEL_RESOLVE = 4  /* global_model:resolve:{name} */
} acache__mm_family;

/** Why a resolve entry is listed as unmapped. */
typedef enum acache__mm_unmapped_status {
    ACACHE_MM_NOT_FOUND = 1, /* the raw value NOT_FOUND ("not_found") */
    ACACHE_MM_INVALID = 2,   /* not a JSON object ("invalid") */
    ACACHE_MM_ERROR = 3      /* could not be read ("error"); ttl is -1 */
} acache__mm_unmapped_status;

/**
 * A snapshot of the model-mapping cache (model-mapping.md "Stats"). Opaque;
 * read it through the getters. Strings returned are borrowed and live until
 * acache__model_mapping_stats_free(). Index arguments out of range give NULL,
 * 0 or -1. A ttl of -1 means JSON null (no expiry, gone, or not readable).
 */
typedef struct acache__model_mapping_stats acache__model_mapping_stats;

/**
 * Take a snapshot: SCANs `model:*` and `global_model:*` (never KEYS), reads
 * at most the handle's mapping_list_cap resolve entries and provider_global
 * entries (the first ones in key order), and joins them with the catalog in
 * three batched look-ups. Without a catalog, catalog-derived fields are
 * empty/NULL.
 * @param out receives the snapshot; free with acache__model_mapping_stats_free().
 *        On a non-Redis store it is a snapshot with available() == 0.
 * @return ACACHE_OK, ACACHE_ESTORE, ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently on one handle.   Since: 0.1
 */
int acache__model_mapping_stats_get(acache__model_mapping_stats **out, acache *c);
/** Free a snapshot. NULL is a no-op.  Since: 0.1 */
void acache__model_mapping_stats_free(acache__model_mapping_stats *s);

/** 1 when the store holds a model-mapping cache (Redis), else 0. */
int acache__model_mapping_stats_available(const acache__model_mapping_stats *s);
/** Why the cache is unavailable; NULL when available. */
const char *acache__model_mapping_stats_message(const acache__model_mapping_stats *s);
/** The configured cache TTL in seconds (options.mapping_ttl_s, default 300). */
uint32_t acache__model_mapping_stats_ttl_seconds(const acache__model_mapping_stats *s);
/** Sum of the five breakdown counts. */
uint64_t acache__model_mapping_stats_total_keys(const acache__model_mapping_stats *s);
/** Count of one key family (an acache__mm_family). */
uint64_t acache__model_mapping_stats_breakdown(const acache__model_mapping_stats *s,
                                               int family);

/* "mappings": resolve names that map to a differently named GlobalModel,
 * sorted by mapping_name. */
size_t acache__model_mapping_stats_mapping_count(const acache__model_mapping_stats *s);
const char *acache__model_mapping_stats_mapping_name(const acache__model_mapping_stats *s,
                                                     size_t i);
const char *acache__model_mapping_stats_mapping_global_model_name(
    const acache__model_mapping_stats *s, size_t i);
const char *acache__model_mapping_stats_mapping_global_model_display_name(
    const acache__model_mapping_stats *s, size_t i);
/** Number of provider display names of mapping `i` (sorted, de-duplicated). */
size_t
acache__model_mapping_stats_mapping_provider_count(const acache__model_mapping_stats *s,
                                                   size_t i);
const char *
acache__model_mapping_stats_mapping_provider(const acache__model_mapping_stats *s,
                                             size_t i, size_t j);
int64_t acache__model_mapping_stats_mapping_ttl(const acache__model_mapping_stats *s,
                                                size_t i);

/* "unmapped": NOT_FOUND, invalid or unreadable resolve entries, by name. */
size_t acache__model_mapping_stats_unmapped_count(const acache__model_mapping_stats *s);
const char *
acache__model_mapping_stats_unmapped_name(const acache__model_mapping_stats *s, size_t i);
/** An acache__mm_unmapped_status, or 0 when out of range. */
int acache__model_mapping_stats_unmapped_status(const acache__model_mapping_stats *s,
                                                size_t i);
int64_t acache__model_mapping_stats_unmapped_ttl(const acache__model_mapping_stats *s,
                                                 size_t i);

/* "provider_model_mappings": cached provider Models whose name differs from
 * the GlobalModel's or that carry mapping names, sorted by (provider_name,
 * global_model_name). */
size_t acache__model_mapping_stats_pm_count(const acache__model_mapping_stats *s);
const char *
acache__model_mapping_stats_pm_provider_id(const acache__model_mapping_stats *s,
                                           size_t i);
const char *
acache__model_mapping_stats_pm_provider_name(const acache__model_mapping_stats *s,
                                             size_t i);
const char *
acache__model_mapping_stats_pm_global_model_id(const acache__model_mapping_stats *s,
                                               size_t i);
const char *
acache__model_mapping_stats_pm_global_model_name(const acache__model_mapping_stats *s,
                                                 size_t i);
const char *acache__model_mapping_stats_pm_global_model_display_name(
    const acache__model_mapping_stats *s, size_t i);
const char *
acache__model_mapping_stats_pm_provider_model_name(const acache__model_mapping_stats *s,
                                                   size_t i);
size_t acache__model_mapping_stats_pm_alias_count(const acache__model_mapping_stats *s,
                                                  size_t i);
const char *acache__model_mapping_stats_pm_alias(const acache__model_mapping_stats *s,
                                                 size_t i, size_t j);
int64_t acache__model_mapping_stats_pm_ttl(const acache__model_mapping_stats *s,
                                           size_t i);
int64_t acache__model_mapping_stats_pm_hit_count(const acache__model_mapping_stats *s,
                                                 size_t i);

/**
 * Delete every `model:*` and `global_model:*` key (hits counters included),
 * by SCAN and batched deletes.
 * @param deleted optional: receives how many keys were deleted.
 * @return ACACHE_OK, ACACHE_EUNSUPPORTED (not Redis), ACACHE_ESTORE.
 * Thread-safety: safe concurrently.   Since: 0.1
 */
int acache__model_mapping_clear_all(size_t *deleted, acache *c);

/** Bits reported by acache__model_mapping_clear_model(). */
#define ACACHE_MM_CLEARED_RESOLVE 1u /* global_model:resolve:{name} */
#define ACACHE_MM_CLEARED_NAME 2u    /* global_model:name:{name} */

/**
 * Delete `global_model:resolve:{model_name}` and `global_model:name:{model_name}`.
 * The name is a literal (glob characters are not patterns).
 * @param cleared optional: receives ACACHE_MM_CLEARED_* bits of the keys that existed.
 * @return ACACHE_OK (also when nothing existed), ACACHE_EINVALID (NULL/empty
 *         name), ACACHE_EUNSUPPORTED, ACACHE_ESTORE.   Since: 0.1
 */
int acache__model_mapping_clear_model(unsigned int *cleared, acache *c,
                                      const char *model_name);

/** Bits reported by acache__model_mapping_clear_provider(). */
#define ACACHE_MM_CLEARED_PROVIDER_GLOBAL 1u /* model:provider_global:{p}:{g} */
#define ACACHE_MM_CLEARED_HITS 2u            /* model:provider_global:hits:{p}:{g} */

/**
 * Delete `model:provider_global:{provider_id}:{global_model_id}` and its hits key.
 * @param cleared optional: receives ACACHE_MM_CLEARED_* bits of the keys that existed.
 * @return ACACHE_OK, ACACHE_EINVALID, ACACHE_EUNSUPPORTED, ACACHE_ESTORE.  Since: 0.1
 */
int acache__model_mapping_clear_provider(unsigned int *cleared, acache *c,
                                         const char *provider_id,
                                         const char *global_model_id);

/* The stats logic without a store, for tests and the fuzzer: `entries` are
 * what the scans of `model:*` and `global_model:*` would hand over (keys and
 * values as bytes with lengths, value NULL = gone), `cat` the catalog or
 * NULL, `cap` the list cap (0: 100) and `ttl` every listed key's remaining
 * TTL. Same result as acache__model_mapping_stats_get() on such a store. */
int acache__model_mapping_stats_from_entries(acache__model_mapping_stats **out,
                                             const acache_entry *entries, size_t n,
                                             acache_catalog *cat, uint32_t ttl_seconds,
                                             size_t cap, int64_t ttl);
/* The stats JSON ({"status": "ok", "data": ...}) of a snapshot. */
int acache__model_mapping_stats_render(acache_buf *out,
                                       const acache__model_mapping_stats *s);

#endif
