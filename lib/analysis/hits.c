/* Cache-hit analysis (usage-analysis.md §2): token and cost totals over the
 * completed requests of the window, in one pass (one snapshot). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/json.h"
#include "analysis.h"
#include "results.h"

typedef struct {
    uint64_t total, hits;
    int64_t input, read, creation;
    double read_cost, creation_cost;
} sums;

static int sum_cb(const acache_cat_usage *row, void *payload)
{
    sums *s = payload;
    s->total++;
    if (row->input_tokens >= 0)
        s->input += row->input_tokens;
    if (row->cache_read_input_tokens >= 0)
        s->read += row->cache_read_input_tokens;
    if (row->cache_creation_input_tokens >= 0)
        s->creation += row->cache_creation_input_tokens;
    if (!isnan(row->cache_read_cost_usd))
        s->read_cost += row->cache_read_cost_usd;
    if (!isnan(row->cache_creation_cost_usd))
        s->creation_cost += row->cache_creation_cost_usd;
    if (row->cache_read_input_tokens > 0)
        s->hits++;
    return 0;
}

static int hits_cb(const acache_analysis_row *row, void *payload)
{
    sums *s = payload;
    if (row->kind != ACACHE_ANALYSIS_HITS)
        return 0;
    const acache_analysis_hits *h = &row->as.hits;
    s->total = h->requests;
    s->hits = h->requests_with_hit;
    s->input = h->input_tokens;
    s->read = h->cache_read_tokens;
    s->creation = h->cache_creation_tokens;
    s->read_cost = h->cache_read_cost_usd;
    s->creation_cost = h->cache_creation_cost_usd;
    return 0;
}

int acache__hit_analysis_compute(acache__hit_analysis *out, acache *c, int hours,
                                 const char *user_id, const char *api_key_id)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "hit analysis: out is NULL");
    if (out->version != ACACHE_HIT_ANALYSIS_VERSION)
        return acache_error_set(ACACHE_EINVALID,
                                "hit analysis: unknown struct version %u", out->version);
    int64_t since_us;
    int rc = acache__analysis_begin(c, "hit analysis", hours, &since_us);
    if (rc < 0)
        return rc;
    user_id = acache__opt_str(user_id);
    api_key_id = acache__opt_str(api_key_id);
    sums s = {0};
    acache_analysis_query q = {ACACHE_ANALYSIS_HITS,
                               acache__window_min_us(since_us, 1),
                               user_id,
                               api_key_id,
                               0,
                               0};
    rc = acache__analysis_query(c, &q, hits_cb, &s);
    if (rc == ACACHE_EUNSUPPORTED) {
        acache_usage_filter f = {0};
        acache__filter_window(&f, since_us, 1); /* [keep] ">=" here, ">" elsewhere */
        f.user_id = user_id;
        f.api_key_id = api_key_id;
        rc = c->catalog->usage_scan(c->catalog, &f, sum_cb, &s);
    }
    if (rc < 0)
        return rc;
    memset(out, 0, sizeof *out);
    out->version = ACACHE_HIT_ANALYSIS_VERSION;
    out->analysis_period_hours = hours;
    out->total_requests = s.total;
    out->requests_with_cache_hit = s.hits;
    out->request_cache_hit_rate =
        s.total ? acache__round_py((double)s.hits / (double)s.total * 100.0, 2) : 0.0;
    out->total_input_tokens = s.input;
    out->total_cache_read_tokens = s.read;
    out->total_cache_creation_tokens = s.creation;
    int64_t denom = s.input + s.read;
    out->token_cache_hit_rate =
        denom > 0 ? acache__round_py((double)s.read / (double)denom * 100.0, 2) : 0.0;
    out->total_cache_read_cost_usd = acache__round_py(s.read_cost, 4);
    out->total_cache_creation_cost_usd = acache__round_py(s.creation_cost, 4);
    out->estimated_savings_usd = acache__round_py(s.read_cost * 9, 4);
    return ACACHE_OK;
}

int acache_hit_analysis(acache_buf *out, acache *c, int hours, const char *user_id,
                        const char *api_key_id)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "hit analysis: out is NULL");
    acache__hit_analysis h = {.version = ACACHE_HIT_ANALYSIS_VERSION};
    int rc = acache__hit_analysis_compute(&h, c, hours, user_id, api_key_id);
    if (rc < 0)
        return rc;
    json_t *o = json_object();
    if (!o)
        return acache__oom();
    int bad = 0;
    bad |= acache__json_set(o, "analysis_period_hours", json_integer(hours));
    bad |=
        acache__json_set(o, "total_requests", json_integer((json_int_t)h.total_requests));
    bad |= acache__json_set(o, "requests_with_cache_hit",
                            json_integer((json_int_t)h.requests_with_cache_hit));
    /* [keep] Aether answers the integer 0 when there are no requests. */
    bad |= acache__json_set(o, "request_cache_hit_rate",
                            h.total_requests ? json_real(h.request_cache_hit_rate)
                                             : json_integer(0));
    bad |= acache__json_set(o, "total_input_tokens", json_integer(h.total_input_tokens));
    bad |= acache__json_set(o, "total_cache_read_tokens",
                            json_integer(h.total_cache_read_tokens));
    bad |= acache__json_set(o, "total_cache_creation_tokens",
                            json_integer(h.total_cache_creation_tokens));
    bad |= acache__json_set(o, "token_cache_hit_rate", json_real(h.token_cache_hit_rate));
    bad |= acache__json_set(o, "total_cache_read_cost_usd",
                            json_real(h.total_cache_read_cost_usd));
    bad |= acache__json_set(o, "total_cache_creation_cost_usd",
                            json_real(h.total_cache_creation_cost_usd));
    bad |=
        acache__json_set(o, "estimated_savings_usd", json_real(h.estimated_savings_usd));
    rc = bad ? acache__oom() : acache__json_dump(out, o, 0);
    json_decref(o);
    return rc;
}
