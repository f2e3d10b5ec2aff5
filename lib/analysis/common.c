/* Helpers shared by the usage analyses: percentile_cont, timestamps, the
 * catalog's analysis query (or the generic path's row collection) and the
 * batched users look-up. No backend header here: a catalog that computes an
 * analysis itself does so behind its `analysis` slot (catalog version 2). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analysis.h"

void acache__fmt_fixed(char *buf, size_t size, int digits, double x)
{
    snprintf(buf, size, "%.*f", digits, x);
    for (char *p = buf; *p; p++)
        if (*p == ',')
            *p = '.';
}

double acache__percentile_cont(const double *v, size_t n, double p)
{
    double pos = p * (double)(n - 1);
    double lo = floor(pos), hi = ceil(pos);
    size_t l = (size_t)lo, h = (size_t)hi;
    if (l == h)
        return v[l];
    return v[l] + (pos - lo) * (v[h] - v[l]);
}

/* Split microseconds since the epoch into a UTC broken-down time and the
 * microsecond remainder (floor division, so times before 1970 work too). */
static int64_t split_us(int64_t us, struct tm *tm)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    gmtime_r(&t, tm);
    return frac;
}

void acache__fmt_iso_utc(char *buf, size_t size, int64_t us)
{
    struct tm tm;
    int64_t frac = split_us(us, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    /* Python's isoformat(): microseconds only when non-zero. */
    if (frac)
        snprintf(buf, size, "%s.%06lld+00:00", base, (long long)frac);
    else
        snprintf(buf, size, "%s+00:00", base);
}

int64_t acache__seconds_to_us(double s)
{
    return (int64_t)llround(s * 1e6);
}

const char *acache__opt_str(const char *s)
{
    return (s && *s) ? s : NULL;
}

int acache__analysis_begin(acache *c, const char *what, int hours, int64_t *since_us)
{
    if (!c)
        return acache_error_set(ACACHE_EINVALID, "%s: handle is NULL", what);
    if (hours < 1 || hours > 720)
        return acache_error_set(ACACHE_EINVALID, "%s: hours must be 1..720, got %d", what,
                                hours);
    if (!c->catalog)
        return acache_error_set(ACACHE_EUNSUPPORTED,
                                "%s: no catalog configured (usage rows needed)", what);
    if (!c->catalog->usage_scan && (c->catalog->version < 2 || !c->catalog->analysis))
        return acache_error_set(ACACHE_EUNSUPPORTED, "%s: the catalog has no usage rows",
                                what);
    *since_us = acache__seconds_to_us(acache__now(c)) - (int64_t)hours * 3600 * 1000000;
    return ACACHE_OK;
}

void acache__filter_window(acache_usage_filter *f, int64_t since_us, int inclusive)
{
    int64_t target = inclusive ? since_us : since_us + 1;
    f->since_inclusive = 1;
    f->since = (double)target / 1e6;
    /* µs / 1e6 * 1e6 need not round-trip; step to the neighbouring double. */
    for (int i = 0; i < 16; i++) {
        int64_t got = acache__usage_min_us(f);
        if (got == target)
            break;
        f->since = nextafter(f->since, got < target ? INFINITY : -INFINITY);
    }
}

int acache__analysis_query(acache *c, const acache_analysis_query *q,
                           acache_analysis_cb cb, void *payload)
{
    acache_catalog *cat = c->catalog;
    /* A version 1 catalog has no field past `free`: do not read one. */
    if (!cat || cat->version < 2 || !cat->analysis)
        return ACACHE_EUNSUPPORTED;
    int rc = cat->analysis(cat, q, cb, payload);
    if (rc == ACACHE_EUNSUPPORTED)
        acache_clear_error(); /* the generic path answers instead */
    return rc;
}

int64_t acache__window_min_us(int64_t since_us, int inclusive)
{
    acache_usage_filter f = {0};
    acache__filter_window(&f, since_us, inclusive);
    return acache__usage_min_us(&f);
}

double acache__gap_minutes(int64_t earlier_us, int64_t later_us)
{
    return (double)(later_us - earlier_us) / 60000000.0;
}

/* ---- usage rows ---- */

typedef struct {
    acache__urows *rows;
    int group_by_key, want_model;
} collect_ctx;

static int collect_cb(const acache_cat_usage *row, void *payload)
{
    collect_ctx *x = payload;
    const char *g = x->group_by_key ? row->api_key_id : row->user_id;
    if (!g || !row->id)
        return 0;
    acache__urows *r = x->rows;
    if (acache__grow(&r->v, &r->cap, r->n, sizeof *r->v))
        return ACACHE_ENOMEM;
    acache__urow *u = &r->v[r->n];
    memset(u, 0, sizeof *u);
    u->group = acache__strdup(g);
    u->id = acache__strdup(row->id);
    if (x->want_model && row->model && *row->model)
        u->model = acache__strdup(row->model);
    u->us = acache__seconds_to_us(row->created_at);
    r->n++; /* counted first so a partial row is freed */
    if (!u->group || !u->id || (x->want_model && row->model && *row->model && !u->model))
        return acache__oom();
    return 0;
}

static int urow_cmp(const void *a, const void *b)
{
    const acache__urow *x = a, *y = b;
    int c = strcmp(x->group, y->group);
    if (c)
        return c;
    if (x->us != y->us)
        return x->us < y->us ? -1 : 1;
    return strcmp(x->id, y->id);
}

int acache__usage_collect(acache *c, const acache_usage_filter *f, int group_by_key,
                          int want_model, acache__urows *out)
{
    memset(out, 0, sizeof *out);
    if (!c->catalog->usage_scan)
        return acache_error_set(ACACHE_EUNSUPPORTED, "the catalog has no usage rows");
    collect_ctx x = {out, group_by_key, want_model};
    int rc = c->catalog->usage_scan(c->catalog, f, collect_cb, &x);
    if (rc < 0) {
        acache__urows_free(out);
        return rc;
    }
    if (out->n > 1)
        qsort(out->v, out->n, sizeof *out->v, urow_cmp);
    return ACACHE_OK;
}

void acache__urows_free(acache__urows *rows)
{
    if (!rows)
        return;
    for (size_t i = 0; i < rows->n; i++) {
        free(rows->v[i].group);
        free(rows->v[i].id);
        free(rows->v[i].model);
    }
    free(rows->v);
    memset(rows, 0, sizeof *rows);
}

/* ---- users ---- */

typedef struct {
    const char *id;
    size_t idx;
} id_ref;

typedef struct {
    id_ref *order; /* sorted by id */
    size_t n;
    char **names, **emails;
    unsigned char *found;
} users_ctx;

static int ref_cmp(const void *a, const void *b)
{
    const id_ref *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int users_cb(const acache_cat_user *row, void *payload)
{
    users_ctx *x = payload;
    if (!row->id)
        return 0;
    /* First match, then the equal run (ids may repeat). */
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(x->order[mid].id, row->id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = lo; k < x->n && strcmp(x->order[k].id, row->id) == 0; k++) {
        size_t i = x->order[k].idx;
        if (x->found[i])
            continue;
        x->found[i] = 1;
        if (row->username && !(x->names[i] = acache__strdup(row->username)))
            return acache__oom();
        if (row->email && !(x->emails[i] = acache__strdup(row->email)))
            return acache__oom();
    }
    return 0;
}

int acache__users_lookup(acache *c, const char *const *ids, size_t n, char **names,
                         char **emails, unsigned char *found)
{
    for (size_t i = 0; i < n; i++) {
        names[i] = emails[i] = NULL;
        found[i] = 0;
    }
    if (n == 0 || !c->catalog || !c->catalog->users)
        return ACACHE_OK;
    id_ref *order = acache__malloc(n * sizeof *order);
    if (!order)
        return acache__oom();
    for (size_t i = 0; i < n; i++) {
        order[i].id = ids[i];
        order[i].idx = i;
    }
    qsort(order, n, sizeof *order, ref_cmp);
    users_ctx x = {order, n, names, emails, found};
    int rc = c->catalog->users(c->catalog, ACACHE_BY_ID, ids, n, users_cb, &x);
    free(order);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++) {
            free(names[i]);
            free(emails[i]);
            names[i] = emails[i] = NULL;
            found[i] = 0;
        }
        return rc;
    }
    return ACACHE_OK;
}
