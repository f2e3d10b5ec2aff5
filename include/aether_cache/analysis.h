/* libaethercache: usage analyses over the catalog's `usage` rows
 * (usage-analysis.md): TTL recommendation, cache-hit analysis, interval
 * timeline, as the admin JSON bodies.
 *
 * "now" is the handle's clock (options.clock). Every analysis needs a catalog:
 * without one they return ACACHE_EUNSUPPORTED. A catalog that runs the
 * analysis query itself (PostgreSQL: window functions, percentile_cont) does
 * the work in SQL; on other catalogs it is done in C from the rows of the
 * catalog's usage_scan. Both give the same results. Numbers are rounded
 * half-to-even like Python's round(), as Aether shows them.
 */
#ifndef ACACHE_ANALYSIS_H
#define ACACHE_ANALYSIS_H

#include "buffer.h"
#include "cache.h"
#include "common.h"

ACACHE_BEGIN_DECL

/**
 * The TTL analysis body (a bare object, usage-analysis.md §1.7):
 * {analysis_period_hours, total_users_analyzed, ttl_distribution, users}.
 * Per user (or per API key when `api_key_id` is given) the distribution of
 * gaps between consecutive completed requests in the last `hours`, and a
 * recommended affinity TTL; groups ordered by request_count descending, then
 * group_id.
 * @param hours 1..720.
 * @param user_id NULL or "" = any user.
 * @param api_key_id NULL or "" = group by user; else group by that key
 *        (and, when user_id is also given, keep only that user's rows).
 * @param out filled with NUL-terminated JSON; release with acache_buf_dispose().
 * @return ACACHE_OK, ACACHE_EINVALID (hours out of range), ACACHE_EUNSUPPORTED
 *         (no catalog), ACACHE_ECATALOG, ACACHE_ENOMEM.
 * Thread-safety: safe concurrently.   Since: 0.2 (was acache_ttl_analysis_json)
 */
ACACHE_EXTERN int acache_ttl_analysis(acache_buf *out, acache *c, int hours,
                                      const char *user_id, const char *api_key_id);

/**
 * The cache-hit analysis body (a bare object, §2.4) of the last `hours`
 * (window start inclusive): request and token hit rates, cache costs and the
 * estimated savings. Parameters and returns as acache_ttl_analysis().
 * Thread-safety: safe concurrently.   Since: 0.2 (was acache_hit_analysis_json)
 */
ACACHE_EXTERN int acache_hit_analysis(acache_buf *out, acache *c, int hours,
                                      const char *user_id, const char *api_key_id);

/**
 * The interval timeline body (a bare object, §3.6): one point per gap
 * (<= 120 min) between a user's consecutive completed requests. Multi-user
 * mode (include_user_info nonzero and no user_id) samples each user
 * proportionally, can return up to limit + users - 1 points and adds
 * user_id per point and "users"; plain mode keeps the oldest `limit` points.
 * @param hours 1..720.
 * @param limit 1..50000 (the HTTP route itself accepts 100..50000).
 * @return ACACHE_OK, ACACHE_EINVALID, ACACHE_EUNSUPPORTED, ACACHE_ECATALOG,
 *         ACACHE_ENOMEM.
 * Thread-safety: safe concurrently.   Since: 0.2 (was acache_interval_timeline_json)
 */
ACACHE_EXTERN int acache_interval_timeline(acache_buf *out, acache *c, int hours,
                                           int limit, const char *user_id,
                                           int include_user_info);

ACACHE_END_DECL
#endif
