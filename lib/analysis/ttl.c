/* TTL analysis (usage-analysis.md §1): gaps between a group's consecutive
 * completed requests, their distribution and a recommended affinity TTL. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/json.h"
#include "analysis.h"
#include "results.h"

enum { ST_P50, ST_P75, ST_P90, ST_AVG, ST_MIN, ST_MAX, ST_N };

struct acache__ttl_group {
    char *group_id, *username, *email;
    uint64_t n;
    uint64_t buckets[5];
    double pct[5];
    double raw[ST_N];     /* unrounded: the TTL rule and the reason use these */
    double rounded[ST_N]; /* what the JSON shows */
    int ttl;
    char *reason;
};

struct acache__ttl_analysis {
    int hours;
    int by_key;
    size_t n, cap;
    acache__ttl_group *groups;
    size_t dist[4];
};

static void group_dispose(acache__ttl_group *g)
{
    free(g->group_id);
    free(g->username);
    free(g->email);
    free(g->reason);
}

void acache__ttl_analysis_free(acache__ttl_analysis *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        group_dispose(&a->groups[i]);
    free(a->groups);
    free(a);
}

/* §1.4 + §1.5, from the unrounded p75/p90. */
static int recommend(acache__ttl_group *g)
{
    double p75 = g->raw[ST_P75], p90 = g->raw[ST_P90];
    char num[64];
    const char *pre, *post = " 分钟内";
    double v;
    if (isnan(p75) || isnan(p90)) {
        g->ttl = 5;
        g->reason = acache__strdup("数据不足，使用默认值");
        return g->reason ? ACACHE_OK : acache__oom();
    }
    if (p90 <= 5) {
        g->ttl = 5;
        pre = "高频用户：90% 的请求间隔在 ";
        v = p90;
    } else if (p75 <= 15) {
        g->ttl = 15;
        pre = "中高频用户：75% 的请求间隔在 ";
        v = p75;
    } else if (p75 <= 30) {
        g->ttl = 30;
        pre = "中频用户：75% 的请求间隔在 ";
        v = p75;
    } else {
        g->ttl = 60;
        pre = "低频用户：75% 的请求间隔为 ";
        post = " 分钟，建议使用长 TTL";
        v = p75;
    }
    acache__fmt_fixed(num, sizeof num, 1, v);
    g->reason = acache__sprintf("%s%s%s", pre, num, post);
    return g->reason ? ACACHE_OK : ACACHE_ENOMEM;
}

/* Fill percentages, rounded values, TTL and reason from n, buckets and raw. */
static int finish_group(acache__ttl_analysis *a, acache__ttl_group *g)
{
    for (int b = 0; b < 5; b++)
        g->pct[b] = acache__round_py((double)g->buckets[b] / (double)g->n * 100.0, 1);
    for (int s = 0; s < ST_N; s++)
        g->rounded[s] = acache__round_py(g->raw[s], 2);
    int rc = recommend(g);
    if (rc < 0)
        return rc;
    a->dist[g->ttl <= 5 ? 0 : g->ttl <= 15 ? 1 : g->ttl <= 30 ? 2 : 3]++;
    return ACACHE_OK;
}

static acache__ttl_group *new_group(acache__ttl_analysis *a, const char *id)
{
    if (acache__grow(&a->groups, &a->cap, a->n, sizeof *a->groups))
        return NULL;
    acache__ttl_group *g = &a->groups[a->n];
    memset(g, 0, sizeof *g);
    if (!(g->group_id = acache__strdup(id)))
        return NULL;
    a->n++;
    return g;
}

static int bucket_of(double m)
{
    return m <= 5 ? 0 : m <= 15 ? 1 : m <= 30 ? 2 : m <= 60 ? 3 : 4;
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int group_cmp(const void *a, const void *b)
{
    const acache__ttl_group *x = a, *y = b;
    if (x->n != y->n)
        return x->n > y->n ? -1 : 1;
    return strcmp(x->group_id, y->group_id);
}

/* §5 by hand: rows sorted by (group, created_at, id) -> per-group stats. */
static int compute_rows(acache__ttl_analysis *a, const acache__urows *rows)
{
    double *iv = acache__malloc((rows->n ? rows->n : 1) * sizeof *iv);
    if (!iv)
        return acache__oom();
    int rc = ACACHE_OK;
    for (size_t i = 0; i < rows->n && rc == ACACHE_OK;) {
        size_t j = i + 1, n = 0;
        uint64_t buckets[5] = {0};
        for (; j < rows->n && strcmp(rows->v[j].group, rows->v[i].group) == 0; j++) {
            double m = acache__gap_minutes(rows->v[j - 1].us, rows->v[j].us);
            iv[n++] = m;
            buckets[bucket_of(m)]++;
        }
        /* The gaps telescope: their exact sum in microseconds is last - first. */
        int64_t sum_us = rows->v[j - 1].us - rows->v[i].us;
        if (n >= 2) {
            acache__ttl_group *g = new_group(a, rows->v[i].group);
            if (!g) {
                rc = acache__oom();
                break;
            }
            g->n = n;
            memcpy(g->buckets, buckets, sizeof buckets);
            /* Aether averages exact decimals (numeric) and converts once:
             * one division of two exact doubles (both < 2^53) is that same
             * nearest double, where a double sum of minutes is not (6 s and
             * 837 s: 7.025 exactly -> 7.03, not 7.0249999... -> 7.02). */
            g->raw[ST_AVG] = (double)sum_us / ((double)n * 60000000.0);
            qsort(iv, n, sizeof *iv, dbl_cmp);
            g->raw[ST_MIN] = iv[0];
            g->raw[ST_MAX] = iv[n - 1];
            g->raw[ST_P50] = acache__percentile_cont(iv, n, 0.5);
            g->raw[ST_P75] = acache__percentile_cont(iv, n, 0.75);
            g->raw[ST_P90] = acache__percentile_cont(iv, n, 0.9);
            rc = finish_group(a, g);
        }
        i = j;
    }
    free(iv);
    return rc;
}

static int compute_c(acache__ttl_analysis *a, acache *c, int64_t since_us,
                     const char *user_id, const char *api_key_id)
{
    acache_usage_filter f = {0};
    acache__filter_window(&f, since_us, 0);
    f.user_id = user_id;
    f.api_key_id = api_key_id;
    f.require_user_id = api_key_id ? 0 : 1;
    acache__urows rows;
    int rc = acache__usage_collect(c, &f, api_key_id != NULL, 0, &rows);
    if (rc < 0)
        return rc;
    rc = compute_rows(a, &rows);
    acache__urows_free(&rows);
    return rc;
}

static int ttl_cb(const acache_analysis_row *row, void *payload)
{
    acache__ttl_analysis *a = payload;
    if (row->kind != ACACHE_ANALYSIS_TTL || !row->as.ttl.group_id)
        return 0;
    const acache_analysis_ttl_group *t = &row->as.ttl;
    acache__ttl_group *grp = new_group(a, t->group_id);
    if (!grp)
        return acache__oom();
    grp->n = t->gaps;
    memcpy(grp->buckets, t->buckets, sizeof grp->buckets);
    grp->raw[ST_P50] = t->p50;
    grp->raw[ST_P75] = t->p75;
    grp->raw[ST_P90] = t->p90;
    grp->raw[ST_AVG] = t->avg;
    grp->raw[ST_MIN] = t->min;
    grp->raw[ST_MAX] = t->max;
    return finish_group(a, grp);
}

/* The catalog's analysis slot when it has one, else compute_c. Same
 * boundary rule either way (strict ">" start, as usage_scan). */
static int compute(acache__ttl_analysis *a, acache *c, int64_t since_us,
                   const char *user_id, const char *api_key_id)
{
    acache_analysis_query q = {ACACHE_ANALYSIS_TTL,
                               acache__window_min_us(since_us, 0),
                               user_id,
                               api_key_id,
                               0,
                               0};
    int rc = acache__analysis_query(c, &q, ttl_cb, a);
    return rc == ACACHE_EUNSUPPORTED ? compute_c(a, c, since_us, user_id, api_key_id)
                                     : rc;
}

/* One batched users look-up for every user group (§1.6). */
static int fill_users(acache__ttl_analysis *a, acache *c)
{
    if (a->by_key || a->n == 0)
        return ACACHE_OK;
    const char **ids = acache__calloc(a->n, sizeof *ids);
    char **names = acache__calloc(a->n, sizeof *names);
    char **emails = acache__calloc(a->n, sizeof *emails);
    unsigned char *found = acache__calloc(a->n, 1);
    int rc = ACACHE_OK;
    if (!ids || !names || !emails || !found) {
        rc = acache__oom();
        goto out;
    }
    for (size_t i = 0; i < a->n; i++)
        ids[i] = a->groups[i].group_id;
    rc = acache__users_lookup(c, ids, a->n, names, emails, found);
    if (rc < 0)
        goto out;
    for (size_t i = 0; i < a->n; i++) {
        if (!found[i])
            continue;
        a->groups[i].username = names[i];
        /* Aether: `user.email or ""`. */
        a->groups[i].email = emails[i] ? emails[i] : acache__strdup("");
        names[i] = emails[i] = NULL;
        if (!a->groups[i].email) {
            rc = acache__oom();
            break;
        }
    }
    for (size_t i = 0; i < a->n; i++) {
        free(names[i]);
        free(emails[i]);
    }
out:
    free(ids);
    free(names);
    free(emails);
    free(found);
    return rc;
}

int acache__ttl_analysis_compute(acache__ttl_analysis **out, acache *c, int hours,
                                 const char *user_id, const char *api_key_id)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "ttl analysis: out is NULL");
    *out = NULL;
    int64_t since_us;
    int rc = acache__analysis_begin(c, "ttl analysis", hours, &since_us);
    if (rc < 0)
        return rc;
    user_id = acache__opt_str(user_id);
    api_key_id = acache__opt_str(api_key_id);
    acache__ttl_analysis *a = acache__calloc(1, sizeof *a);
    if (!a)
        return acache__oom();
    a->hours = hours;
    a->by_key = api_key_id != NULL;
    rc = compute(a, c, since_us, user_id, api_key_id);
    if (rc == ACACHE_OK) {
        if (a->n > 1)
            qsort(a->groups, a->n, sizeof *a->groups, group_cmp);
        rc = fill_users(a, c);
    }
    if (rc < 0) {
        acache__ttl_analysis_free(a);
        return rc;
    }
    *out = a;
    return ACACHE_OK;
}

int acache__ttl_analysis_hours(const acache__ttl_analysis *a)
{
    return a ? a->hours : 0;
}

size_t acache__ttl_analysis_group_count(const acache__ttl_analysis *a)
{
    return a ? a->n : 0;
}

const acache__ttl_group *acache__ttl_analysis_group_at(const acache__ttl_analysis *a,
                                                       size_t i)
{
    return a && i < a->n ? &a->groups[i] : NULL;
}

size_t acache__ttl_analysis_ttl_distribution(const acache__ttl_analysis *a, int minutes)
{
    if (!a)
        return 0;
    switch (minutes) {
    case 5:
        return a->dist[0];
    case 15:
        return a->dist[1];
    case 30:
        return a->dist[2];
    case 60:
        return a->dist[3];
    default:
        return 0;
    }
}

const char *acache__ttl_group_id(const acache__ttl_group *g)
{
    return g ? g->group_id : NULL;
}

const char *acache__ttl_group_username(const acache__ttl_group *g)
{
    return g ? g->username : NULL;
}

const char *acache__ttl_group_email(const acache__ttl_group *g)
{
    return g ? g->email : NULL;
}

uint64_t acache__ttl_group_request_count(const acache__ttl_group *g)
{
    return g ? g->n : 0;
}

uint64_t acache__ttl_group_bucket(const acache__ttl_group *g, int bucket)
{
    return g && bucket >= 0 && bucket < 5 ? g->buckets[bucket] : 0;
}

double acache__ttl_group_percentage(const acache__ttl_group *g, int bucket)
{
    return g && bucket >= 0 && bucket < 5 ? g->pct[bucket] : NAN;
}

double acache__ttl_group_stat(const acache__ttl_group *g, int stat)
{
    return g && stat >= 0 && stat < ST_N ? g->rounded[stat] : NAN;
}

int acache__ttl_group_recommended_ttl_minutes(const acache__ttl_group *g)
{
    return g ? g->ttl : 0;
}

const char *acache__ttl_group_reason(const acache__ttl_group *g)
{
    return g ? g->reason : NULL;
}

/* ---- JSON ---- */

static const char *const bucket_keys[5] = {"within_5min", "within_15min", "within_30min",
                                           "within_60min", "over_60min"};

/* A stat that exists is printed as a real, 0.0 included (Aether's null for
 * 0 is bug #2, fixed). */
static json_t *real_or_null(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

static json_t *group_json(const acache__ttl_group *g)
{
    json_t *o = json_object(), *dist = json_object(), *pct = json_object(),
           *pcs = json_object();
    if (!o || !dist || !pct || !pcs)
        goto fail;
    for (int b = 0; b < 5; b++)
        if (acache__json_set(dist, bucket_keys[b],
                             json_integer((json_int_t)g->buckets[b])) < 0 ||
            acache__json_set(pct, bucket_keys[b], json_real(g->pct[b])) < 0)
            goto fail;
    if (acache__json_set(pcs, "p50", real_or_null(g->rounded[ST_P50])) < 0 ||
        acache__json_set(pcs, "p75", real_or_null(g->rounded[ST_P75])) < 0 ||
        acache__json_set(pcs, "p90", real_or_null(g->rounded[ST_P90])) < 0)
        goto fail;
    int bad = 0;
    bad |= acache__json_set(o, "group_id", acache__json_str(g->group_id));
    bad |= acache__json_set(o, "username", acache__json_str(g->username));
    bad |= acache__json_set(o, "email", acache__json_str(g->email));
    bad |= acache__json_set(o, "request_count", json_integer((json_int_t)g->n));
    bad |= acache__json_set(o, "interval_distribution", dist);
    dist = NULL;
    bad |= acache__json_set(o, "interval_percentages", pct);
    pct = NULL;
    bad |= acache__json_set(o, "percentiles", pcs);
    pcs = NULL;
    bad |= acache__json_set(o, "avg_interval_minutes", real_or_null(g->rounded[ST_AVG]));
    bad |= acache__json_set(o, "min_interval_minutes", real_or_null(g->rounded[ST_MIN]));
    bad |= acache__json_set(o, "max_interval_minutes", real_or_null(g->rounded[ST_MAX]));
    bad |= acache__json_set(o, "recommended_ttl_minutes", json_integer(g->ttl));
    bad |= acache__json_set(o, "recommendation_reason", acache__json_str(g->reason));
    if (bad)
        goto fail;
    return o;
fail:
    json_decref(o);
    json_decref(dist);
    json_decref(pct);
    json_decref(pcs);
    return NULL;
}

int acache_ttl_analysis(acache_buf *out, acache *c, int hours, const char *user_id,
                        const char *api_key_id)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "ttl analysis: out is NULL");
    acache__ttl_analysis *a = NULL;
    int rc = acache__ttl_analysis_compute(&a, c, hours, user_id, api_key_id);
    if (rc < 0)
        return rc;
    json_t *root = json_object(), *dist = json_object(), *users = json_array();
    int bad = !root || !dist || !users;
    if (!bad) {
        static const char *const dk[4] = {"5min", "15min", "30min", "60min"};
        for (int i = 0; i < 4; i++)
            bad |=
                acache__json_set(dist, dk[i], json_integer((json_int_t)a->dist[i])) < 0;
        for (size_t i = 0; i < a->n && !bad; i++)
            bad |= json_array_append_new(users, group_json(&a->groups[i])) < 0;
        bad |= acache__json_set(root, "analysis_period_hours", json_integer(hours)) < 0;
        bad |= acache__json_set(root, "total_users_analyzed",
                                json_integer((json_int_t)a->n)) < 0;
        bad |= acache__json_set(root, "ttl_distribution", dist) < 0;
        dist = NULL;
        bad |= acache__json_set(root, "users", users) < 0;
        users = NULL;
    }
    acache__ttl_analysis_free(a);
    json_decref(dist);
    json_decref(users);
    rc = bad ? acache__oom() : acache__json_dump(out, root, 0);
    json_decref(root);
    return rc;
}
