/* libaethercache: the model-mapping cache (model-mapping.md): inspection and
 * clearing of the `model:*` / `global_model:*` keys the gateway writes.
 *
 * Only a Redis store holds this cache. On any other store the stats report
 * available = 0 with a message, and the clear functions return
 * ACACHE_EUNSUPPORTED ("Redis not enabled"; HTTP 503).
 */
#ifndef ACACHE_MAPPING_H
#define ACACHE_MAPPING_H

#include "buffer.h"
#include "cache.h"
#include "common.h"
#include <stddef.h>
#include <stdint.h>

ACACHE_BEGIN_DECL

/* clang-format off: each declaration keeps "ACACHE_EXTERN type name(" on one
 * line, which tests/scripts/check-symbols.sh relies on. */

/** Key families counted in the stats breakdown, in output order. */
typedef enum acache_mm_family {
    ACACHE_MM_MODEL_BY_ID = 0, /* model:id:{id} */
    ACACHE_MM_MODEL_BY_PROVIDER_GLOBAL =
        1,                              /* model:provider_global:{p}:{g}, hits excluded */
    ACACHE_MM_GLOBAL_MODEL_BY_ID = 2,   /* global_model:id:{id} */
    ACACHE_MM_GLOBAL_MODEL_BY_NAME = 3, /* global_model:name:{name} */
    ACACHE_MM_GLOBAL_MODEL_RESOLVE = 4  /* global_model:resolve:{name} */
} acache_mm_family;

/** Why a resolve entry is listed as unmapped. */
typedef enum acache_mm_unmapped_status {
    ACACHE_MM_NOT_FOUND = 1, /* the raw value NOT_FOUND ("not_found") */
    ACACHE_MM_INVALID = 2,   /* not a JSON object ("invalid") */
    ACACHE_MM_ERROR = 3      /* could not be read ("error"); ttl is -1 */
} acache_mm_unmapped_status;

/**
 * A snapshot of the model-mapping cache (model-mapping.md "Stats"). Opaque;
 * read it through the getters. Strings returned are borrowed and live until
 * acache_model_mapping_stats_free(). Index arguments out of range give NULL,
 * 0 or -1. A ttl of -1 means JSON null (no expiry, gone, or not readable).
 */
typedef struct acache_model_mapping_stats acache_model_mapping_stats;

/**
 * Take a snapshot: SCANs `model:*` and `global_model:*` (never KEYS), reads
 * at most the handle's mapping_list_cap resolve entries and provider_global
 * entries (the first ones in key order), and joins them with the catalog in
 * three batched look-ups. Without a catalog, catalog-derived fields are
 * empty/NULL.
 * @param out receives the snapshot; free with acache_model_mapping_stats_free().
 *        On a non-Redis store it is a snapshot with available() == 0.
 * @return ACACHE_OK, ACACHE_ESTORE, ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently on one handle.   Since: 0.1
 */
ACACHE_EXTERN int acache_model_mapping_stats_get(acache_model_mapping_stats **out,
                                                 acache *c);
/** Free a snapshot. NULL is a no-op.  Since: 0.1 */
ACACHE_EXTERN void acache_model_mapping_stats_free(acache_model_mapping_stats *s);

/** 1 when the store holds a model-mapping cache (Redis), else 0. */
ACACHE_EXTERN int acache_model_mapping_stats_available(
    const acache_model_mapping_stats *s);
/** Why the cache is unavailable; NULL when available. */
ACACHE_EXTERN const char *acache_model_mapping_stats_message(
    const acache_model_mapping_stats *s);
/** The configured cache TTL in seconds (options.mapping_ttl_s, default 300). */
ACACHE_EXTERN uint32_t acache_model_mapping_stats_ttl_seconds(
    const acache_model_mapping_stats *s);
/** Sum of the five breakdown counts. */
ACACHE_EXTERN uint64_t acache_model_mapping_stats_total_keys(
    const acache_model_mapping_stats *s);
/** Count of one key family (an acache_mm_family). */
ACACHE_EXTERN uint64_t acache_model_mapping_stats_breakdown(
    const acache_model_mapping_stats *s, int family);

/* "mappings": resolve names that map to a differently named GlobalModel,
 * sorted by mapping_name. */
ACACHE_EXTERN size_t acache_model_mapping_stats_mapping_count(
    const acache_model_mapping_stats *s);
ACACHE_EXTERN const char *acache_model_mapping_stats_mapping_name(
    const acache_model_mapping_stats *s, size_t i);
ACACHE_EXTERN const char *acache_model_mapping_stats_mapping_global_model_name(
    const acache_model_mapping_stats *s,
                                                     size_t i);
ACACHE_EXTERN const char *acache_model_mapping_stats_mapping_global_model_display_name(
    const acache_model_mapping_stats *s, size_t i);
/** Number of provider display names of mapping `i` (sorted, de-duplicated). */
ACACHE_EXTERN size_t acache_model_mapping_stats_mapping_provider_count(
    const acache_model_mapping_stats *s, size_t i);
ACACHE_EXTERN const char *acache_model_mapping_stats_mapping_provider(
    const acache_model_mapping_stats *s, size_t i,
                                            size_t j);
ACACHE_EXTERN int64_t acache_model_mapping_stats_mapping_ttl(
    const acache_model_mapping_stats *s, size_t i);

/* "unmapped": NOT_FOUND, invalid or unreadable resolve entries, by name. */
ACACHE_EXTERN size_t acache_model_mapping_stats_unmapped_count(
    const acache_model_mapping_stats *s);
ACACHE_EXTERN const char *acache_model_mapping_stats_unmapped_name(
    const acache_model_mapping_stats *s, size_t i);
/** An acache_mm_unmapped_status, or 0 when out of range. */
ACACHE_EXTERN int acache_model_mapping_stats_unmapped_status(
    const acache_model_mapping_stats *s, size_t i);
ACACHE_EXTERN int64_t acache_model_mapping_stats_unmapped_ttl(
    const acache_model_mapping_stats *s, size_t i);

/* "provider_model_mappings": cached provider Models whose name differs from
 * the GlobalModel's or that carry mapping names, sorted by (provider_name,
 * global_model_name). */
ACACHE_EXTERN size_t acache_model_mapping_stats_pm_count(
    const acache_model_mapping_stats *s);
ACACHE_EXTERN const char *acache_model_mapping_stats_pm_provider_id(
    const acache_model_mapping_stats *s, size_t i);
ACACHE_EXTERN const char *acache_model_mapping_stats_pm_provider_name(
    const acache_model_mapping_stats *s,
                                            size_t i);
ACACHE_EXTERN const char *acache_model_mapping_stats_pm_global_model_id(
    const acache_model_mapping_stats *s,
                                              size_t i);
ACACHE_EXTERN const char *acache_model_mapping_stats_pm_global_model_name(
    const acache_model_mapping_stats *s,
                                                size_t i);
ACACHE_EXTERN const char *acache_model_mapping_stats_pm_global_model_display_name(
    const acache_model_mapping_stats *s, size_t i);
ACACHE_EXTERN const char *acache_model_mapping_stats_pm_provider_model_name(
    const acache_model_mapping_stats *s,
                                                  size_t i);
ACACHE_EXTERN size_t acache_model_mapping_stats_pm_alias_count(
    const acache_model_mapping_stats *s, size_t i);
ACACHE_EXTERN const char *acache_model_mapping_stats_pm_alias(
    const acache_model_mapping_stats *s, size_t i,
                                    size_t j);
ACACHE_EXTERN int64_t acache_model_mapping_stats_pm_ttl(
    const acache_model_mapping_stats *s, size_t i);
ACACHE_EXTERN int64_t acache_model_mapping_stats_pm_hit_count(
    const acache_model_mapping_stats *s, size_t i);

/**
 * The stats as the admin body {"status": "ok", "data": {...}} (model-mapping.md).
 * @param out filled with NUL-terminated JSON; release with acache_buf_dispose().
 * @return as acache_model_mapping_stats_get().   Since: 0.1
 */
ACACHE_EXTERN int acache_model_mapping_stats_json(acache_buf *out, acache *c);

/**
 * Delete every `model:*` and `global_model:*` key (hits counters included),
 * by SCAN and batched deletes.
 * @param deleted optional: receives how many keys were deleted.
 * @return ACACHE_OK, ACACHE_EUNSUPPORTED (not Redis), ACACHE_ESTORE.
 * Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_model_mapping_clear_all(size_t *deleted, acache *c);

/** Bits reported by acache_model_mapping_clear_model(). */
#define ACACHE_MM_CLEARED_RESOLVE 1u /* global_model:resolve:{name} */
#define ACACHE_MM_CLEARED_NAME 2u    /* global_model:name:{name} */

/**
 * Delete `global_model:resolve:{model_name}` and `global_model:name:{model_name}`.
 * The name is a literal (glob characters are not patterns).
 * @param cleared optional: receives ACACHE_MM_CLEARED_* bits of the keys that existed.
 * @return ACACHE_OK (also when nothing existed), ACACHE_EINVALID (NULL/empty
 *         name), ACACHE_EUNSUPPORTED, ACACHE_ESTORE.   Since: 0.1
 */
ACACHE_EXTERN int acache_model_mapping_clear_model(unsigned int *cleared, acache *c,
                                                   const char *model_name);

/** Bits reported by acache_model_mapping_clear_provider(). */
#define ACACHE_MM_CLEARED_PROVIDER_GLOBAL 1u /* model:provider_global:{p}:{g} */
#define ACACHE_MM_CLEARED_HITS 2u            /* model:provider_global:hits:{p}:{g} */

/**
 * Delete `model:provider_global:{provider_id}:{global_model_id}` and its hits key.
 * @param cleared optional: receives ACACHE_MM_CLEARED_* bits of the keys that existed.
 * @return ACACHE_OK, ACACHE_EINVALID, ACACHE_EUNSUPPORTED, ACACHE_ESTORE.  Since: 0.1
 */
ACACHE_EXTERN int acache_model_mapping_clear_provider(unsigned int *cleared, acache *c,
                                                      const char *provider_id,
                                                      const char *global_model_id);

/** Admin body of clear all: {status, message, deleted_count}.  Since: 0.1 */
ACACHE_EXTERN int acache_model_mapping_clear_all_json(acache_buf *out, acache *c);
/** Admin body of clear by name: {status, message, model_name, deleted_keys}. */
ACACHE_EXTERN int acache_model_mapping_clear_model_json(acache_buf *out, acache *c,
                                                        const char *model_name);
/** Admin body of clear provider+model: {status, message, provider_id,
 *  global_model_id, deleted_keys}.  Since: 0.1 */
ACACHE_EXTERN int acache_model_mapping_clear_provider_json(acache_buf *out, acache *c,
                                                           const char *provider_id,
                                                           const char *global_model_id);

/* clang-format on */

ACACHE_END_DECL
#endif
