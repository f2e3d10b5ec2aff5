/* Interval timeline (usage-analysis.md §3): one point per gap of at most
 * 120 minutes between a user's consecutive completed requests. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/json.h"
#include "analysis.h"
#include "results.h"

typedef struct tpoint {
    char x[48];
    double y;
    char *user_id;
    char *model; /* NULL when empty */
} tpoint;

struct acache__timeline {
    int hours;
    int multi;
    size_t n, cap;
    tpoint *pts;
    size_t nmodels;
    char **models;
    size_t nusers;
    char **user_ids, **user_names;
};

void acache__timeline_free(acache__timeline *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->pts[i].user_id);
        free(t->pts[i].model);
    }
    free(t->pts);
    for (size_t i = 0; i < t->nmodels; i++)
        free(t->models[i]);
    free(t->models);
    for (size_t i = 0; i < t->nusers; i++) {
        free(t->user_ids[i]);
        free(t->user_names[i]);
    }
    free(t->user_ids);
    free(t->user_names);
    free(t);
}

static int add_point(acache__timeline *t, int64_t us, double minutes, const char *user_id,
                     const char *model)
{
    if (acache__grow(&t->pts, &t->cap, t->n, sizeof *t->pts))
        return ACACHE_ENOMEM;
    tpoint *p = &t->pts[t->n];
    memset(p, 0, sizeof *p);
    acache__fmt_iso_utc(p->x, sizeof p->x, us);
    p->y = acache__round_py(minutes, 2);
    t->n++; /* counted first so a partial point is freed */
    p->user_id = acache__strdup(user_id);
    if (!p->user_id)
        return acache__oom();
    if (model && *model && !(p->model = acache__strdup(model)))
        return acache__oom();
    return ACACHE_OK;
}

/* ---- C path: §5 by hand ---- */

typedef struct {
    size_t row; /* later row of the pair */
    double m;
    size_t rank; /* 0-based among its user's surviving intervals */
} kept;

static int kept_cmp_r(const kept *a, const kept *b, const acache__urows *rows)
{
    const acache__urow *x = &rows->v[a->row], *y = &rows->v[b->row];
    if (x->us != y->us)
        return x->us < y->us ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* Merge sort: qsort has no payload argument and the handle is shared by
 * threads, so no file-level state. */
static void sort_kept(kept *v, kept *tmp, size_t n, const acache__urows *rows)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    sort_kept(v, tmp, h, rows);
    sort_kept(v + h, tmp, n - h, rows);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = kept_cmp_r(&v[j], &v[i], rows) < 0 ? v[j++] : v[i++];
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

static int compute_c(acache__timeline *t, acache *c, int64_t since_us, int limit,
                     const char *user_id)
{
    acache_usage_filter f = {0};
    acache__filter_window(&f, since_us, 0);
    f.user_id = user_id;
    f.require_user_id = 1;
    acache__urows rows;
    int rc = acache__usage_collect(c, &f, 0, 1, &rows);
    if (rc < 0)
        return rc;
    kept *v = acache__malloc((rows.n ? rows.n : 1) * sizeof *v);
    kept *tmp = acache__malloc((rows.n ? rows.n : 1) * sizeof *tmp);
    if (!v || !tmp) {
        rc = acache__oom();
        goto out;
    }
    size_t n = 0;
    for (size_t j = 1; j < rows.n; j++) {
        if (strcmp(rows.v[j].group, rows.v[j - 1].group) != 0)
            continue;
        double m = acache__gap_minutes(rows.v[j - 1].us, rows.v[j].us);
        if (m > 120.0) /* [keep] dropped, but row j stays the next predecessor */
            continue;
        size_t rank = (n > 0 && strcmp(rows.v[v[n - 1].row].group, rows.v[j].group) == 0)
                          ? v[n - 1].rank + 1
                          : 0;
        v[n++] = (kept){j, m, rank};
    }
    size_t total = n, lim = (size_t)limit;
    if (t->multi && total > lim) {
        /* Quota per user: max(1, ceil(c_u * L / T)), earliest intervals first.
         * v is grouped by user with ranks ascending. */
        size_t w = 0;
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && strcmp(rows.v[v[j].row].group, rows.v[v[i].row].group) == 0)
                j++;
            uint64_t cu = j - i;
            uint64_t q = (cu * (uint64_t)lim + total - 1) / total;
            if (q < 1)
                q = 1;
            for (size_t k = i; k < j; k++)
                if (v[k].rank < q)
                    v[w++] = v[k];
            i = j;
        }
        n = w;
    }
    sort_kept(v, tmp, n, &rows);
    if (!t->multi && n > lim)
        n = lim;
    for (size_t i = 0; i < n && rc == ACACHE_OK; i++) {
        const acache__urow *r = &rows.v[v[i].row];
        rc = add_point(t, r->us, v[i].m, r->group, r->model);
    }
out:
    free(v);
    free(tmp);
    acache__urows_free(&rows);
    return rc;
}

/* ---- the catalog's analysis slot, else the C path ---- */

static int point_cb(const acache_analysis_row *row, void *payload)
{
    const acache_analysis_point *p = &row->as.point;
    if (row->kind != ACACHE_ANALYSIS_TIMELINE || !p->user_id)
        return 0;
    return add_point(payload, p->created_at_us, p->gap_minutes, p->user_id, p->model);
}

static int compute(acache__timeline *t, acache *c, int64_t since_us, int limit,
                   const char *user_id)
{
    acache_analysis_query q = {ACACHE_ANALYSIS_TIMELINE,
                               acache__window_min_us(since_us, 0),
                               user_id,
                               NULL,
                               limit,
                               t->multi};
    int rc = acache__analysis_query(c, &q, point_cb, t);
    return rc == ACACHE_EUNSUPPORTED ? compute_c(t, c, since_us, limit, user_id) : rc;
}

/* ---- models and users ---- */

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int fill_models(acache__timeline *t)
{
    if (t->n == 0)
        return ACACHE_OK;
    t->models = acache__calloc(t->n, sizeof *t->models);
    if (!t->models)
        return acache__oom();
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->pts[i].model)
            t->models[k++] = t->pts[i].model; /* borrowed until deduplicated */
    qsort(t->models, k, sizeof *t->models, str_cmp);
    size_t w = 0;
    for (size_t i = 0; i < k; i++)
        if (w == 0 || strcmp(t->models[w - 1], t->models[i]) != 0)
            t->models[w++] = t->models[i];
    for (size_t i = 0; i < w; i++) {
        char *d = acache__strdup(t->models[i]);
        if (!d) {
            for (size_t j = i; j < w; j++)
                t->models[j] = NULL;
            t->nmodels = i;
            return acache__oom();
        }
        t->models[i] = d;
    }
    t->nmodels = w;
    return ACACHE_OK;
}

/* "users": ids in order of first appearance in the points, with a username. */
static int fill_users(acache__timeline *t, acache *c)
{
    if (!t->multi || t->n == 0)
        return ACACHE_OK;
    const char **ids = acache__calloc(t->n, sizeof *ids);
    char **names = acache__calloc(t->n, sizeof *names);
    char **emails = acache__calloc(t->n, sizeof *emails);
    unsigned char *found = acache__calloc(t->n, 1);
    int rc = ACACHE_OK;
    size_t k = 0;
    if (!ids || !names || !emails || !found) {
        rc = acache__oom();
        goto out;
    }
    /* Distinct ids in first-appearance order; `seen` (sorted) finds repeats. */
    const char **seen = acache__calloc(t->n, sizeof *seen);
    if (!seen) {
        rc = acache__oom();
        goto out;
    }
    for (size_t i = 0; i < t->n; i++) {
        const char *u = t->pts[i].user_id;
        size_t lo = 0, hi = k;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(seen[mid], u) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < k && strcmp(seen[lo], u) == 0)
            continue;
        memmove(seen + lo + 1, seen + lo, (k - lo) * sizeof *seen);
        seen[lo] = u;
        ids[k++] = u;
    }
    free(seen);
    rc = acache__users_lookup(c, ids, k, names, emails, found);
    if (rc < 0)
        goto out;
    t->user_ids = acache__calloc(k ? k : 1, sizeof *t->user_ids);
    t->user_names = acache__calloc(k ? k : 1, sizeof *t->user_names);
    if (!t->user_ids || !t->user_names) {
        rc = acache__oom();
        goto out;
    }
    for (size_t i = 0; i < k; i++) {
        if (!found[i] || !names[i] || !*names[i])
            continue;
        t->user_ids[t->nusers] = acache__strdup(ids[i]);
        if (!t->user_ids[t->nusers]) {
            rc = acache__oom();
            goto out;
        }
        t->user_names[t->nusers++] = names[i];
        names[i] = NULL;
    }
out:
    if (names)
        for (size_t i = 0; i < k; i++)
            free(names[i]);
    if (emails)
        for (size_t i = 0; i < k; i++)
            free(emails[i]);
    free(ids);
    free(names);
    free(emails);
    free(found);
    return rc;
}

int acache__timeline_compute(acache__timeline **out, acache *c, int hours, int limit,
                             const char *user_id, int include_user_info)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "interval timeline: out is NULL");
    *out = NULL;
    int64_t since_us;
    int rc = acache__analysis_begin(c, "interval timeline", hours, &since_us);
    if (rc < 0)
        return rc;
    if (limit < 1 || limit > 50000)
        return acache_error_set(
            ACACHE_EINVALID, "interval timeline: limit must be 1..50000, got %d", limit);
    user_id = acache__opt_str(user_id);
    acache__timeline *t = acache__calloc(1, sizeof *t);
    if (!t)
        return acache__oom();
    t->hours = hours;
    t->multi = include_user_info && !user_id;
    rc = compute(t, c, since_us, limit, user_id);
    if (rc == ACACHE_OK)
        rc = fill_models(t);
    if (rc == ACACHE_OK)
        rc = fill_users(t, c);
    if (rc < 0) {
        acache__timeline_free(t);
        return rc;
    }
    *out = t;
    return ACACHE_OK;
}

size_t acache__timeline_point_count(const acache__timeline *t)
{
    return t ? t->n : 0;
}

const char *acache__timeline_point_x(const acache__timeline *t, size_t i)
{
    return t && i < t->n ? t->pts[i].x : NULL;
}

double acache__timeline_point_y(const acache__timeline *t, size_t i)
{
    return t && i < t->n ? t->pts[i].y : NAN;
}

const char *acache__timeline_point_user_id(const acache__timeline *t, size_t i)
{
    return t && i < t->n ? t->pts[i].user_id : NULL;
}

const char *acache__timeline_point_model(const acache__timeline *t, size_t i)
{
    return t && i < t->n ? t->pts[i].model : NULL;
}

int acache__timeline_multi_user(const acache__timeline *t)
{
    return t ? t->multi : 0;
}

size_t acache__timeline_model_count(const acache__timeline *t)
{
    return t ? t->nmodels : 0;
}

const char *acache__timeline_model_at(const acache__timeline *t, size_t i)
{
    return t && i < t->nmodels ? t->models[i] : NULL;
}

size_t acache__timeline_user_count(const acache__timeline *t)
{
    return t ? t->nusers : 0;
}

const char *acache__timeline_user_id(const acache__timeline *t, size_t i)
{
    return t && i < t->nusers ? t->user_ids[i] : NULL;
}

const char *acache__timeline_user_name(const acache__timeline *t, size_t i)
{
    return t && i < t->nusers ? t->user_names[i] : NULL;
}

int acache_interval_timeline(acache_buf *out, acache *c, int hours, int limit,
                             const char *user_id, int include_user_info)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "interval timeline: out is NULL");
    acache__timeline *t = NULL;
    int rc = acache__timeline_compute(&t, c, hours, limit, user_id, include_user_info);
    if (rc < 0)
        return rc;
    json_t *root = json_object(), *pts = json_array();
    int bad = !root || !pts;
    for (size_t i = 0; i < t->n && !bad; i++) {
        const tpoint *p = &t->pts[i];
        json_t *o = json_object();
        if (!o) {
            bad = 1;
            break;
        }
        bad |= acache__json_set(o, "x", json_string(p->x)) < 0;
        bad |= acache__json_set(o, "y", json_real(p->y)) < 0;
        if (t->multi)
            bad |= acache__json_set(o, "user_id", acache__json_str(p->user_id)) < 0;
        if (p->model)
            bad |= acache__json_set(o, "model", acache__json_str(p->model)) < 0;
        bad |= json_array_append_new(pts, o) < 0;
    }
    if (!bad) {
        bad |= acache__json_set(root, "analysis_period_hours", json_integer(hours)) < 0;
        bad |= acache__json_set(root, "total_points", json_integer((json_int_t)t->n)) < 0;
        bad |= acache__json_set(root, "points", pts) < 0;
        pts = NULL;
        if (t->multi) {
            json_t *u = json_object();
            for (size_t i = 0; u && i < t->nusers && !bad; i++)
                bad |= acache__json_set(u, t->user_ids[i],
                                        acache__json_str(t->user_names[i])) < 0;
            bad |= acache__json_set(root, "users", u) < 0;
        }
        if (t->nmodels) {
            json_t *m = json_array();
            for (size_t i = 0; m && i < t->nmodels && !bad; i++)
                bad |= json_array_append_new(m, acache__json_str(t->models[i])) < 0;
            bad |= acache__json_set(root, "models", m) < 0;
        }
    }
    json_decref(pts);
    acache__timeline_free(t);
    rc = bad ? acache__oom() : acache__json_dump(out, root, 0);
    json_decref(root);
    return rc;
}
