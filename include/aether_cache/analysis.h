/* libaethercache: usage analyses over the catalog's `usage` rows
 * (usage-analysis.md): TTL recommendation, cache-hit analysis, interval
 * timeline.
 *
 * "now" is the handle's clock (options.clock). Every analysis needs a catalog:
 * without one they return ACACHE_EUNSUPPORTED. On PostgreSQL the work is done
 * in SQL (window functions, percentile_cont); on other catalogs it is done in
 * C from the rows of the catalog's usage_scan. Both give the same results.
 *
 * Numbers handed out by the getters are the values the JSON shows (already
 * rounded half-to-even like Python's round()).
 */
#ifndef ACACHE_ANALYSIS_H
#define ACACHE_ANALYSIS_H

#include "buffer.h"
#include "cache.h"
#include "common.h"
#include <stddef.h>
#include <stdint.h>

ACACHE_BEGIN_DECL

/* clang-format off: each declaration keeps "ACACHE_EXTERN type name(" on one
 * line, which tests/scripts/check-symbols.sh relies on. */

/* ---------------------------------------------------------------- TTL */

/** Interval buckets, in output order (closed on the right). */
typedef enum acache_ttl_bucket {
    ACACHE_TTL_WITHIN_5MIN = 0,
    ACACHE_TTL_WITHIN_15MIN = 1,
    ACACHE_TTL_WITHIN_30MIN = 2,
    ACACHE_TTL_WITHIN_60MIN = 3,
    ACACHE_TTL_OVER_60MIN = 4
} acache_ttl_bucket;

/** Statistics selectable with acache_ttl_group_stat(). */
typedef enum acache_ttl_stat {
    ACACHE_TTL_P50 = 0,
    ACACHE_TTL_P75 = 1,
    ACACHE_TTL_P90 = 2,
    ACACHE_TTL_AVG = 3,
    ACACHE_TTL_MIN = 4,
    ACACHE_TTL_MAX = 5
} acache_ttl_stat;

/** Result of a TTL analysis (opaque). Free with acache_ttl_analysis_free(). */
typedef struct acache_ttl_analysis acache_ttl_analysis;
/** One reported group, borrowed from its acache_ttl_analysis. */
typedef struct acache_ttl_group acache_ttl_group;

/**
 * TTL analysis (usage-analysis.md §1): per user (or per API key when
 * `api_key_id` is given) the distribution of gaps between consecutive
 * completed requests in the last `hours`, and a recommended affinity TTL.
 * @param hours 1..720.
 * @param user_id NULL or "" = any user.
 * @param api_key_id NULL or "" = group by user; else group by that key
 *        (and, when user_id is also given, keep only that user's rows).
 * @param out receives the result; free with acache_ttl_analysis_free().
 * @return ACACHE_OK, ACACHE_EINVALID (hours out of range), ACACHE_EUNSUPPORTED
 *         (no catalog), ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently on one handle.   Since: 0.1
 */
ACACHE_EXTERN int acache_ttl_analysis_compute(acache_ttl_analysis **out, acache *c,
                                              int hours, const char *user_id,
                                              const char *api_key_id);
/** Free a result. NULL is a no-op.  Since: 0.1 */
ACACHE_EXTERN void acache_ttl_analysis_free(acache_ttl_analysis *a);
ACACHE_EXTERN int acache_ttl_analysis_hours(const acache_ttl_analysis *a);
/** Number of reported groups (total_users_analyzed). */
ACACHE_EXTERN size_t acache_ttl_analysis_group_count(const acache_ttl_analysis *a);
/** Groups ordered by request_count descending, then group_id; NULL if out of range. */
ACACHE_EXTERN const acache_ttl_group *acache_ttl_analysis_group_at(
    const acache_ttl_analysis *a, size_t i);
/** Groups whose recommended TTL is `minutes` (5, 15, 30 or 60; other values: 0). */
ACACHE_EXTERN size_t acache_ttl_analysis_ttl_distribution(const acache_ttl_analysis *a,
                                                          int minutes);

ACACHE_EXTERN const char *acache_ttl_group_id(const acache_ttl_group *g);
/** Username / email when grouped by user and the user exists, else NULL. */
ACACHE_EXTERN const char *acache_ttl_group_username(const acache_ttl_group *g);
ACACHE_EXTERN const char *acache_ttl_group_email(const acache_ttl_group *g);
/** The number of intervals (requests - 1), as Aether's request_count. */
ACACHE_EXTERN uint64_t acache_ttl_group_request_count(const acache_ttl_group *g);
/** Count of intervals in an acache_ttl_bucket (0 when out of range). */
ACACHE_EXTERN uint64_t acache_ttl_group_bucket(const acache_ttl_group *g, int bucket);
/** Share of a bucket in percent, rounded to 1 decimal. */
ACACHE_EXTERN double acache_ttl_group_percentage(const acache_ttl_group *g, int bucket);
/** An acache_ttl_stat in minutes, rounded to 2 decimals (NAN when out of range). */
ACACHE_EXTERN double acache_ttl_group_stat(const acache_ttl_group *g, int stat);
ACACHE_EXTERN int acache_ttl_group_recommended_ttl_minutes(const acache_ttl_group *g);
/** Aether's Chinese recommendation text (UTF-8). */
ACACHE_EXTERN const char *acache_ttl_group_reason(const acache_ttl_group *g);

/**
 * The TTL analysis response body (bare object, usage-analysis.md §1.7).
 * @return as acache_ttl_analysis_compute().   Since: 0.1
 */
ACACHE_EXTERN int acache_ttl_analysis_json(acache_buf *out, acache *c, int hours,
                                           const char *user_id, const char *api_key_id);

/* ---------------------------------------------------------------- hits */

/** Cache-hit analysis (usage-analysis.md §2). Caller allocates and sets version. */
typedef struct acache_hit_analysis {
    unsigned int version; /* ACACHE_HIT_ANALYSIS_VERSION */
    int analysis_period_hours;
    uint64_t total_requests;
    uint64_t requests_with_cache_hit;
    double request_cache_hit_rate; /* percent, 2 decimals (JSON: integer 0 when no
                                      requests) */
    int64_t total_input_tokens;
    int64_t total_cache_read_tokens;
    int64_t total_cache_creation_tokens;
    double token_cache_hit_rate;
    double total_cache_read_cost_usd;     /* 4 decimals */
    double total_cache_creation_cost_usd; /* 4 decimals */
    double estimated_savings_usd;         /* round(9 x read cost, 4) */
} acache_hit_analysis;

#define ACACHE_HIT_ANALYSIS_VERSION 1

/**
 * Compute the cache-hit analysis of the last `hours` (window start inclusive).
 * @param out caller-owned; out->version must be ACACHE_HIT_ANALYSIS_VERSION.
 * @return ACACHE_OK, ACACHE_EINVALID (hours 1..720, version), ACACHE_EUNSUPPORTED,
 *         ACACHE_ECATALOG.   Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_hit_analysis_compute(acache_hit_analysis *out, acache *c,
                                              int hours, const char *user_id,
                                              const char *api_key_id);
/** The hit analysis response body (bare object, §2.4).  Since: 0.1 */
ACACHE_EXTERN int acache_hit_analysis_json(acache_buf *out, acache *c, int hours,
                                           const char *user_id, const char *api_key_id);

/* ---------------------------------------------------------------- timeline */

/** Interval timeline (opaque). Free with acache_timeline_free(). */
typedef struct acache_timeline acache_timeline;

/**
 * Interval timeline (usage-analysis.md §3): one point per gap (<= 120 min)
 * between a user's consecutive completed requests. Multi-user mode
 * (include_user_info nonzero and no user_id) samples each user
 * proportionally and can return up to limit + users - 1 points; plain mode
 * keeps the oldest `limit` points.
 * @param hours 1..720.
 * @param limit 1..50000 (the HTTP route itself accepts 100..50000).
 * @return ACACHE_OK, ACACHE_EINVALID, ACACHE_EUNSUPPORTED, ACACHE_ECATALOG,
 *         ACACHE_ENOMEM.   Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_timeline_compute(acache_timeline **out, acache *c, int hours,
                                          int limit, const char *user_id,
                                          int include_user_info);
ACACHE_EXTERN void acache_timeline_free(acache_timeline *t);
ACACHE_EXTERN size_t acache_timeline_point_count(const acache_timeline *t);
/** The later request's created_at, ISO 8601 in UTC ("...+00:00"); NULL if out of range.
 */
ACACHE_EXTERN const char *acache_timeline_point_x(const acache_timeline *t, size_t i);
/** Interval in minutes, 2 decimals (NAN if out of range). */
ACACHE_EXTERN double acache_timeline_point_y(const acache_timeline *t, size_t i);
/** The point's user id (every mode). */
ACACHE_EXTERN const char *acache_timeline_point_user_id(const acache_timeline *t,
                                                        size_t i);
/** The later request's model, NULL when empty. */
ACACHE_EXTERN const char *acache_timeline_point_model(const acache_timeline *t, size_t i);
/** 1 in multi-user mode (the JSON then has user_id per point and "users"). */
ACACHE_EXTERN int acache_timeline_multi_user(const acache_timeline *t);
/** Distinct non-empty models of the points, sorted by code point. */
ACACHE_EXTERN size_t acache_timeline_model_count(const acache_timeline *t);
ACACHE_EXTERN const char *acache_timeline_model_at(const acache_timeline *t, size_t i);

/** Multi-user mode "users": ids with a non-empty username, in order of first
 *  appearance in the points. */
ACACHE_EXTERN size_t acache_timeline_user_count(const acache_timeline *t);
ACACHE_EXTERN const char *acache_timeline_user_id(const acache_timeline *t, size_t i);
ACACHE_EXTERN const char *acache_timeline_user_name(const acache_timeline *t, size_t i);

/** The interval timeline response body (bare object, §3.6).  Since: 0.1 */
ACACHE_EXTERN int acache_interval_timeline_json(acache_buf *out, acache *c, int hours,
                                                int limit, const char *user_id,
                                                int include_user_info);

/* clang-format on */

ACACHE_END_DECL
#endif
