/* Private to lib/analysis and the C tests: the typed results behind the JSON
 * bodies of include/aether_cache/analysis.h (public until 0.1; since 0.2 the
 * reports are JSON only). Numbers handed out by the getters are the values
 * the JSON shows (already rounded half-to-even like Python's round()). */
#ifndef ACACHE_ANALYSIS_RESULTS_H
#define ACACHE_ANALYSIS_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "aether_cache/aether_cache.h"

/* ---------------------------------------------------------------- TTL */

/** Interval buckets, in output order (closed on the right). */
typedef enum acache__ttl_bucket {
    ACACHE_TTL_WITHIN_5MIN = 0,
    ACACHE_TTL_WITHIN_15MIN = 1,
    ACACHE_TTL_WITHIN_30MIN = 2,
    ACACHE_TTL_WITHIN_60MIN = 3,
    ACACHE_TTL_OVER_60MIN = 4
} acache__ttl_bucket;

/** Statistics selectable with acache__ttl_group_stat(). */
typedef enum acache__ttl_stat {
    ACACHE_TTL_P50 = 0,
    ACACHE_TTL_P75 = 1,
    ACACHE_TTL_P90 = 2,
    ACACHE_TTL_AVG = 3,
    ACACHE_TTL_MIN = 4,
    ACACHE_TTL_MAX = 5
} acache__ttl_stat;

/** Result of a TTL analysis (opaque). Free with acache__ttl_analysis_free(). */
typedef struct acache__ttl_analysis acache__ttl_analysis;
/** One reported group, borrowed from its acache__ttl_analysis. */
typedef struct acache__ttl_group acache__ttl_group;

/**
 * TTL analysis (usage-analysis.md §1): per user (or per API key when
 * `api_key_id` is given) the distribution of gaps between consecutive
 * completed requests in the last `hours`, and a recommended affinity TTL.
 * @param hours 1..720.
 * @param user_id NULL or "" = any user.
 * @param api_key_id NULL or "" = group by user; else group by that key
 *        (and, when user_id is also given, keep only that user's rows).
 * @param out receives the result; free with acache__ttl_analysis_free().
 * @return ACACHE_OK, ACACHE_EINVALID (hours out of range), ACACHE_EUNSUPPORTED
 *         (no catalog), ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently on one handle.
 */
int acache__ttl_analysis_compute(acache__ttl_analysis **out, acache *c, int hours,
                                 const char *user_id, const char *api_key_id);
/** Free a result. NULL is a no-op. */
void acache__ttl_analysis_free(acache__ttl_analysis *a);
int acache__ttl_analysis_hours(const acache__ttl_analysis *a);
/** Number of reported groups (total_users_analyzed). */
size_t acache__ttl_analysis_group_count(const acache__ttl_analysis *a);
/** Groups ordered by request_count descending, then group_id; NULL if out of range. */
const acache__ttl_group *acache__ttl_analysis_group_at(const acache__ttl_analysis *a,
                                                       size_t i);
/** Groups whose recommended TTL is `minutes` (5, 15, 30 or 60; other values: 0). */
size_t acache__ttl_analysis_ttl_distribution(const acache__ttl_analysis *a, int minutes);

const char *acache__ttl_group_id(const acache__ttl_group *g);
/** Username / email when grouped by user and the user exists, else NULL. */
const char *acache__ttl_group_username(const acache__ttl_group *g);
const char *acache__ttl_group_email(const acache__ttl_group *g);
/** The number of intervals (requests - 1), as Aether's request_count. */
uint64_t acache__ttl_group_request_count(const acache__ttl_group *g);
/** Count of intervals in an acache__ttl_bucket (0 when out of range). */
uint64_t acache__ttl_group_bucket(const acache__ttl_group *g, int bucket);
/** Share of a bucket in percent, rounded to 1 decimal. */
double acache__ttl_group_percentage(const acache__ttl_group *g, int bucket);
/** An acache__ttl_stat in minutes, rounded to 2 decimals (NAN when out of range). */
double acache__ttl_group_stat(const acache__ttl_group *g, int stat);
int acache__ttl_group_recommended_ttl_minutes(const acache__ttl_group *g);
/** Aether's Chinese recommendation text (UTF-8). */
const char *acache__ttl_group_reason(const acache__ttl_group *g);

/* ---------------------------------------------------------------- hits */

/** Cache-hit analysis (usage-analysis.md §2). Caller allocates and sets version. */
typedef struct acache__hit_analysis {
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
} acache__hit_analysis;

#define ACACHE_HIT_ANALYSIS_VERSION 1

/**
 * Compute the cache-hit analysis of the last `hours` (window start inclusive).
 * @param out caller-owned; out->version must be ACACHE_HIT_ANALYSIS_VERSION.
 * @return ACACHE_OK, ACACHE_EINVALID (hours 1..720, version), ACACHE_EUNSUPPORTED,
 *         ACACHE_ECATALOG.   Thread-safety: safe concurrently.
 */
int acache__hit_analysis_compute(acache__hit_analysis *out, acache *c, int hours,
                                 const char *user_id, const char *api_key_id);

/* ---------------------------------------------------------------- timeline */

/** Interval timeline (opaque). Free with acache__timeline_free(). */
typedef struct acache__timeline acache__timeline;

/**
 * Interval timeline (usage-analysis.md §3): one point per gap (<= 120 min)
 * between a user's consecutive completed requests. Multi-user mode
 * (include_user_info nonzero and no user_id) samples each user
 * proportionally and can return up to limit + users - 1 points; plain mode
 * keeps the oldest `limit` points.
 * @param hours 1..720.
 * @param limit 1..50000 (the HTTP route itself accepts 100..50000).
 * @return ACACHE_OK, ACACHE_EINVALID, ACACHE_EUNSUPPORTED, ACACHE_ECATALOG,
 *         ACACHE_ENOMEM.   Thread-safety: safe concurrently.
 */
int acache__timeline_compute(acache__timeline **out, acache *c, int hours, int limit,
                             const char *user_id, int include_user_info);
void acache__timeline_free(acache__timeline *t);
size_t acache__timeline_point_count(const acache__timeline *t);
/** The later request's created_at, ISO 8601 in UTC ("...+00:00"); NULL if out of range.
 */
const char *acache__timeline_point_x(const acache__timeline *t, size_t i);
/** Interval in minutes, 2 decimals (NAN if out of range). */
double acache__timeline_point_y(const acache__timeline *t, size_t i);
/** The point's user id (every mode). */
const char *acache__timeline_point_user_id(const acache__timeline *t, size_t i);
/** The later request's model, NULL when empty. */
const char *acache__timeline_point_model(const acache__timeline *t, size_t i);
/** 1 in multi-user mode (the JSON then has user_id per point and "users"). */
int acache__timeline_multi_user(const acache__timeline *t);
/** Distinct non-empty models of the points, sorted by code point. */
size_t acache__timeline_model_count(const acache__timeline *t);
const char *acache__timeline_model_at(const acache__timeline *t, size_t i);

/** Multi-user mode "users": ids with a non-empty username, in order of first
 *  appearance in the points. */
size_t acache__timeline_user_count(const acache__timeline *t);
const char *acache__timeline_user_id(const acache__timeline *t, size_t i);
const char *acache__timeline_user_name(const acache__timeline *t, size_t i);

#endif
