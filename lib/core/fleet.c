/* Fleet counters (docs/fleet.md): a background thread per handle adds the
 * handle's counter deltas to the store (stores with the counters slots), so
 * that every process's stats show fleet totals; and the cached count of
 * stored records behind /stats.
 *
 * The hot path only does atomic adds on the handle's counters (affinity.c);
 * the flusher reads them, so nothing here is on the hot path. Memory is
 * constant: the handle keeps, per counter, its running total and the part of
 * it the store confirmed; a failed flush just leaves the difference for the
 * next one. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

/* ---- the counter table ---- */

enum { SRC_ATOMIC, SRC_SCHED };

typedef struct {
    const char *name; /* Redis hash field */
    int src;
    size_t off; /* SRC_ATOMIC: atomic_uint_fast64_t in struct acache;
                   SRC_SCHED: uint64_t in acache__sched */
} ctr_def;

#define A(name, field)                                                                   \
    {                                                                                    \
        name, SRC_ATOMIC, offsetof(struct acache, field)                                 \
    }
#define S(name, field)                                                                   \
    {                                                                                    \
        name, SRC_SCHED, offsetof(acache__sched, field)                                  \
    }

static const ctr_def CTRS[] = {
    A("hits", cache_hits),
    A("misses", cache_misses),
    A("created", total_affinities),
    A("refreshed", refreshed),
    A("provider_switches", provider_switches),
    A("key_switches", key_switches),
    A("invalidations", cache_invalidations),
    A("malformed", malformed_records),
    A("inval_api_key", inval_cause[ACACHE__CAUSE_API_KEY]),
    A("inval_user", inval_cause[ACACHE__CAUSE_USER]),
    A("inval_provider", inval_cause[ACACHE__CAUSE_PROVIDER]),
    A("inval_key", inval_cause[ACACHE__CAUSE_KEY]),
    A("inval_endpoint", inval_cause[ACACHE__CAUSE_ENDPOINT]),
    A("inval_all", inval_cause[ACACHE__CAUSE_ALL]),
    A("report_success", report_successes),
    A("report_transient", report_transient),
    A("report_terminal", report_terminal),
    A("report_not_pinned", report_not_pinned),
    A("dropped_transient", dropped_transient),
    A("dropped_terminal", dropped_terminal),
    S("sched_batches", total_batches),
    S("sched_candidates", total_candidates),
    S("sched_cache_hits", cache_hits),
    S("sched_cache_misses", cache_misses),
    S("sched_concurrency_denied", concurrency_denied),
    S("sched_reservation_probe", reservation_probe_count),
    S("sched_reservation_stable", reservation_stable_count),
};
#undef A
#undef S

#define NC (sizeof CTRS / sizeof CTRS[0])

size_t acache__fleet_ncounters(void)
{
    return NC;
}

const char *acache__fleet_counter_name(size_t i)
{
    return i < NC ? CTRS[i].name : NULL;
}

size_t acache__fleet_index(const char *name)
{
    for (size_t i = 0; i < NC; i++)
        if (strcmp(CTRS[i].name, name) == 0)
            return i;
    return (size_t)-1;
}

static const char *names_tab[NC];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void names_init(void)
{
    for (size_t i = 0; i < NC; i++)
        names_tab[i] = CTRS[i].name;
}

static const char *const *counter_names(void)
{
    pthread_once(&names_once, names_init);
    return names_tab;
}

/* This handle's running totals. */
static void local_values(acache *c, uint64_t *v)
{
    pthread_mutex_lock(&c->sched.lock);
    for (size_t i = 0; i < NC; i++)
        if (CTRS[i].src == SRC_SCHED)
            v[i] = *(const uint64_t *)((const char *)&c->sched + CTRS[i].off);
    pthread_mutex_unlock(&c->sched.lock);
    for (size_t i = 0; i < NC; i++)
        if (CTRS[i].src == SRC_ATOMIC)
            v[i] = atomic_load((atomic_uint_fast64_t *)((char *)c + CTRS[i].off));
}

/* ---- the flusher ---- */

struct acache__fleet {
    int running; /* the thread exists */
    pthread_t thread;
    pthread_mutex_t lock; /* confirmed[], flush state; held across a flush so
                             a fleet view never counts an in-flight delta twice */
    pthread_cond_t cond;
    int stop;
    uint32_t flush_ms, ttl_ms;
    char id[256];
    double started_at; /* wall clock */
    uint64_t confirmed[NC];
    uint64_t flushes, failures;
    int last_ok; /* the last flush succeeded (1 before the first) */

    /* The cached active count. */
    pthread_mutex_t active_lock;
    int have_active;
    int64_t active;
    double active_at, asked_at;          /* monotonic seconds */
    double active_dur;                   /* how long that count took */
    uint64_t base_created, base_removed; /* local_moves() when counted */
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int has_fleet_slots(const acache_store *s)
{
    return s && s->version >= 3 && s->counters_flush && s->counters_read;
}

/* One flush; called with f->lock held. */
static void flush_once(acache *c, int final)
{
    acache__fleet *f = c->fleet;
    uint64_t now_v[NC], delta[NC];
    local_values(c, now_v);
    for (size_t i = 0; i < NC; i++)
        delta[i] = now_v[i] - f->confirmed[i];
    acache_counter_flush req = {
        .instance_id = f->id,
        .version = ACACHE_VERSION_STRING,
        .started_at = f->started_at,
        .now = acache__wallclock(),
        .ttl_ms = f->ttl_ms,
        .final = final,
        .n = NC,
        .names = counter_names(),
        .deltas = delta,
        .totals = now_v,
    };
    int sent = 0;
    int rc = c->store->counters_flush(c->store, &req, &sent);
    if (rc == ACACHE_OK || sent) {
        /* Delivered, or maybe: never replayed, so never counted twice. */
        memcpy(f->confirmed, now_v, sizeof now_v);
    }
    f->last_ok = rc == ACACHE_OK;
    if (rc == ACACHE_OK)
        f->flushes++;
    else
        f->failures++;
}

static void background_recount(acache *c);

static void *flusher(void *arg)
{
    acache *c = arg;
    acache__fleet *f = c->fleet;
    pthread_mutex_lock(&f->lock);
    while (!f->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)f->flush_ms * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        while (!f->stop && pthread_cond_timedwait(&f->cond, &f->lock, &ts) != ETIMEDOUT)
            ;
        if (f->stop)
            break;
        flush_once(c, 0);
        pthread_mutex_unlock(&f->lock);
        background_recount(c);
        pthread_mutex_lock(&f->lock);
    }
    /* At acache_close; skipped when the last flush failed, so that closing
     * never waits on a store known to be unreachable a second time (those
     * deltas are lost: at most one interval, docs/fleet.md). */
    if (f->last_ok)
        flush_once(c, 1);
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

static void default_id(char *buf, size_t cap)
{
    static atomic_uint handles;
    unsigned n = atomic_fetch_add(&handles, 1) + 1;
    char host[128] = "localhost";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    if (n == 1)
        snprintf(buf, cap, "%s:%ld", host, (long)getpid());
    else
        snprintf(buf, cap, "%s:%ld#%u", host, (long)getpid(), n);
}

int acache__fleet_start(acache *c)
{
    acache__fleet *f = acache__calloc(1, sizeof *f);
    if (!f)
        return acache__oom();
    pthread_mutex_init(&f->lock, NULL);
    pthread_mutex_init(&f->active_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &ca);
    pthread_condattr_destroy(&ca);
    c->fleet = f;
    f->last_ok = 1;
    uint32_t ms = c->opts.stats_flush_ms;
    f->flush_ms = ms == 0 ? 1000 : ms;
    /* A few intervals, so one slow flush does not make an instance look dead. */
    uint64_t ttl = (uint64_t)f->flush_ms * 3 + 1000;
    f->ttl_ms = ttl > 86400000u ? 86400000u : (uint32_t)ttl;
    f->started_at = acache__wallclock();
    const char *id = c->opts.instance_id;
    if (id && *id) {
        if (strlen(id) > 200)
            return acache_error_set(ACACHE_EINVALID,
                                    "options.instance_id is longer than 200 bytes");
        snprintf(f->id, sizeof f->id, "%s", id);
    } else {
        default_id(f->id, sizeof f->id);
    }
    c->opts.instance_id = f->id; /* the caller's string is not kept */
    if (ms == ACACHE_FLEET_OFF || !has_fleet_slots(c->store))
        return ACACHE_OK;
    if (pthread_create(&f->thread, NULL, flusher, c) != 0)
        return acache_error_set(ACACHE_ERROR, "cannot start the fleet counter thread");
    f->running = 1;
    return ACACHE_OK;
}

void acache__fleet_stop(acache *c)
{
    acache__fleet *f = c->fleet;
    if (!f)
        return;
    if (f->running) {
        pthread_mutex_lock(&f->lock);
        f->stop = 1;
        pthread_cond_signal(&f->cond);
        pthread_mutex_unlock(&f->lock);
        pthread_join(f->thread, NULL);
    }
    pthread_mutex_destroy(&f->lock);
    pthread_mutex_destroy(&f->active_lock);
    pthread_cond_destroy(&f->cond);
    free(f);
    c->fleet = NULL;
}

/* ---- the fleet view ---- */

typedef struct {
    acache__fleet_view *v;
    int oom;
} inst_ctx;

static int inst_cb(const acache_instance_info *in, void *payload)
{
    inst_ctx *x = payload;
    acache__fleet_view *v = x->v;
    acache__instance *grown = acache__realloc(v->inst, (v->ninst + 1) * sizeof *grown);
    if (!grown) {
        x->oom = 1;
        return 1;
    }
    v->inst = grown;
    acache__instance *d = &v->inst[v->ninst];
    memset(d, 0, sizeof *d);
    d->instance_id = acache__strdup(in->instance_id ? in->instance_id : "");
    d->version = acache__strdup(in->version ? in->version : "");
    d->values = acache__malloc(NC * sizeof *d->values);
    d->started_at = in->started_at;
    d->last_flush = in->last_flush;
    v->ninst++;
    if (!d->instance_id || !d->version || !d->values) {
        x->oom = 1;
        return 1;
    }
    memcpy(d->values, in->totals, NC * sizeof *d->values);
    return 0;
}

void acache__fleet_view_free(acache__fleet_view *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->ninst; i++) {
        free(v->inst[i].instance_id);
        free(v->inst[i].version);
        free(v->inst[i].values);
    }
    free(v->inst);
    free(v->values);
    memset(v, 0, sizeof *v);
}

int acache__fleet_view_get(acache__fleet_view *v, acache *c)
{
    memset(v, 0, sizeof *v);
    acache__fleet *f = c->fleet;
    v->self_id = f->id;
    v->flush_ms = f->flush_ms;
    if (!(v->values = acache__malloc(NC * sizeof *v->values)))
        return acache__oom();
    if (!f->running) {
        local_values(c, v->values);
        return ACACHE_OK;
    }
    uint64_t totals[NC];
    inst_ctx x = {v, 0};
    /* Under the flush lock: the store's totals and confirmed[] agree. */
    pthread_mutex_lock(&f->lock);
    int rc = c->store->counters_read(c->store, counter_names(), NC, totals, inst_cb, &x);
    uint64_t local[NC];
    local_values(c, local);
    for (size_t i = 0; i < NC; i++)
        v->values[i] = rc ? local[i] : totals[i] + (local[i] - f->confirmed[i]);
    pthread_mutex_unlock(&f->lock);
    if (x.oom) {
        acache__fleet_view_free(v);
        return acache__oom();
    }
    if (rc) {
        for (size_t i = 0; i < v->ninst; i++) {
            free(v->inst[i].instance_id);
            free(v->inst[i].version);
            free(v->inst[i].values);
        }
        free(v->inst);
        v->inst = NULL;
        v->ninst = 0;
        return rc; /* per-process values, fleet 0 */
    }
    v->fleet = 1;
    return ACACHE_OK;
}

/* ---- the cached active count ---- */

typedef struct {
    size_t n;
} count_ctx;

static int count_batch(const acache_entry *e, size_t n, void *payload)
{
    (void)e;
    ((count_ctx *)payload)->n += n;
    return 0;
}

int64_t acache__active_count_now(acache *c, int *status)
{
    /* Keys only (no MGET): counting must not cost a value transfer. Expired
     * but not yet reaped records are counted, as Redis DBSIZE would. */
    count_ctx cc = {0};
    int rc = c->store->scan
                 ? c->store->scan(c->store, ACACHE_AFFINITY_PREFIX, 0, count_batch, &cc)
                 : ACACHE_EUNSUPPORTED;
    if (status)
        *status = rc;
    return rc ? -1 : (int64_t)cc.n;
}

/* This handle's own creations and removals, to adjust a count between
 * recounts without rescanning. */
static void local_moves(acache *c, uint64_t *created, uint64_t *removed)
{
    *created = atomic_load(&c->total_affinities);
    *removed = atomic_load(&c->cache_invalidations) +
               atomic_load(&c->inval_cause[ACACHE__CAUSE_ALL]);
}

/* Store a count taken with the moves `cr`/`rm` read just before it. */
static void active_set(acache__fleet *f, int64_t n, double at, double dur, uint64_t cr,
                       uint64_t rm)
{
    f->active = n;
    f->active_at = at;
    f->active_dur = dur;
    f->base_created = cr;
    f->base_removed = rm;
    f->have_active = 1;
}

static int64_t count_timed(acache *c, double *at, double *dur, uint64_t *cr, uint64_t *rm)
{
    local_moves(c, cr, rm);
    *at = mono_s();
    int64_t n = acache__active_count_now(c, NULL);
    *dur = mono_s() - *at;
    return n;
}

int64_t acache__active_cached(acache *c, double *age_s)
{
    acache__fleet *f = c->fleet;
    pthread_mutex_lock(&f->active_lock);
    double now = mono_s();
    f->asked_at = now;
    /* With a background thread, an old value is served while the thread
     * recounts (the request path never scans once a count exists); without
     * one (memory store, fleet off) it recounts here when too old. */
    if (!f->have_active ||
        (!f->running && now - f->active_at > ACACHE__ACTIVE_MAX_AGE_S)) {
        /* Under the lock: concurrent callers wait for one count, not N. */
        double at, dur;
        uint64_t cr, rm;
        int64_t n = count_timed(c, &at, &dur, &cr, &rm);
        if (n < 0) {
            pthread_mutex_unlock(&f->active_lock);
            if (age_s)
                *age_s = 0;
            return -1;
        }
        active_set(f, n, at, dur, cr, rm);
    }
    uint64_t cr, rm;
    local_moves(c, &cr, &rm);
    int64_t n =
        f->active + (int64_t)(cr - f->base_created) - (int64_t)(rm - f->base_removed);
    if (n < 0)
        n = 0;
    if (age_s)
        *age_s = mono_s() - f->active_at;
    pthread_mutex_unlock(&f->active_lock);
    return n;
}

/* From the flusher: recount before the cached value gets ACACHE__ACTIVE_MAX_AGE_S
 * old, but only while someone reads it (an admin polling /stats), so a
 * gateway that never serves /stats never scans; and never more than a third
 * of the time on a store where a count is slow (1M pins). */
#define RECOUNT_AFTER_S (ACACHE__ACTIVE_MAX_AGE_S - 1.5)
#define READERS_WINDOW_S 60.0

static void background_recount(acache *c)
{
    acache__fleet *f = c->fleet;
    pthread_mutex_lock(&f->active_lock);
    double now = mono_s();
    double after =
        RECOUNT_AFTER_S > 2 * f->active_dur ? RECOUNT_AFTER_S : 2 * f->active_dur;
    int due = f->have_active && now - f->asked_at < READERS_WINDOW_S &&
              now - f->active_at >= after;
    pthread_mutex_unlock(&f->active_lock);
    if (!due)
        return;
    double at, dur;
    uint64_t cr, rm;
    int64_t n = count_timed(c, &at, &dur, &cr, &rm);
    if (n < 0)
        return;
    pthread_mutex_lock(&f->active_lock);
    if (at > f->active_at)
        active_set(f, n, at, dur, cr, rm);
    pthread_mutex_unlock(&f->active_lock);
}
