/* Counters, scheduler metrics and their JSON / Prometheus renderings. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/json.h"
#include "core.h"

/* Aether's reservation constants (affinity.md "Defaults"). */
#define RESERVATION_RATIO 0.1
#define PROBE_PHASE_REQUESTS 100
#define PROBE_RESERVATION 0.1
#define STABLE_MIN_RESERVATION 0.1
#define STABLE_MAX_RESERVATION 0.35
#define LOW_LOAD_THRESHOLD 0.5
#define HIGH_LOAD_THRESHOLD 0.8

static double rate(uint64_t hits, uint64_t misses)
{
    return hits + misses ? (double)hits / (double)(hits + misses) : 0.0;
}

/* Counter `name` of a fleet view (fleet.c's table). */
/* a - b, or 0: two counters read a moment apart may cross */
static uint64_t sub0(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

static uint64_t vv(const acache__fleet_view *v, const char *name)
{
    size_t i = acache__fleet_index(name);
    return i == (size_t)-1 ? 0 : v->values[i];
}

/* Every field of `out` (a full-size struct) from the fleet view `fv` (fleet
 * totals, or this handle's counters without fleet counters). `cached`: the
 * active count from the cache (acache_stats_json) rather than counted now.
 * Returns the count's status (ACACHE_OK or the store's error). */
static int stats_fill(acache_stats *out, acache *c, const acache__fleet_view *fv,
                      int cached)
{
    /* cached < 0: the store just failed (the fleet read): do not wait on it a
     * second time for the count (acache_stats_json answers with null). */
    memset(out, 0, sizeof *out);
    out->version = ACACHE_STATS_VERSION;
    out->report_successes = vv(fv, "report_success");
    out->report_transient_failures = vv(fv, "report_transient");
    out->report_terminal_failures = vv(fv, "report_terminal");
    out->report_not_pinned = vv(fv, "report_not_pinned");
    out->pins_dropped_transient = vv(fv, "dropped_transient");
    out->pins_dropped_terminal = vv(fv, "dropped_terminal");
    out->total_affinities = vv(fv, "created");
    out->cache_hits = vv(fv, "hits");
    out->cache_misses = vv(fv, "misses");
    out->cache_hit_rate = rate(out->cache_hits, out->cache_misses);
    out->cache_invalidations = vv(fv, "invalidations");
    out->provider_switches = vv(fv, "provider_switches");
    out->key_switches = vv(fv, "key_switches");
    out->malformed_records = vv(fv, "malformed");
    out->refreshed = vv(fv, "refreshed");
    out->fleet = fv->fleet;
    out->instances = fv->fleet ? (uint32_t)fv->ninst : 0;
    out->default_ttl_s = c->default_ttl_s;
    acache__deferred_counts(c, &out->touches_deferred, &out->touch_flushes,
                            &out->touch_flush_failures, &out->touches_pending);
    int rc = ACACHE_OK;
    if (cached < 0) {
        out->active_affinities = -1;
    } else if (cached) {
        out->active_affinities = acache__active_cached(c, &out->active_age_s);
    } else {
        out->active_affinities = acache__active_count_now(c, &rc);
        out->active_age_s = 0.0;
    }
    return rc;
}

int acache_stats_get(acache_stats *out, acache *c)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID, "acache_stats_get: NULL argument");
    if (out->version == 0 || out->version > ACACHE_STATS_VERSION)
        return acache_error_set(ACACHE_EINVALID, "acache_stats version %u unknown",
                                out->version);
    unsigned int v = out->version;
    /* Only the caller's version's fields: an older struct is shorter. */
    size_t size = v < 2 ? offsetof(acache_stats, report_successes) : sizeof(acache_stats);
    acache__fleet_view fv;
    int frc = acache__fleet_view_get(&fv, c);
    if (frc == ACACHE_ENOMEM)
        return frc;
    acache_stats full;
    int rc = stats_fill(&full, c, &fv, 0);
    acache__fleet_view_free(&fv);
    full.version = v;
    memcpy(out, &full, size);
    if (rc == ACACHE_EUNSUPPORTED)
        rc = ACACHE_OK;
    /* A fleet read that failed leaves this handle's counters (fleet 0). */
    return rc ? rc : frc;
}

/* ---- scheduler counters ---- */

static void sched_touch(acache *c)
{
    c->sched.last_updated_at = acache__now(c);
}

void acache_scheduler_record_batch(acache *c, uint64_t batch_size)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->sched.lock);
    c->sched.total_batches++;
    c->sched.last_batch_size = batch_size;
    sched_touch(c);
    pthread_mutex_unlock(&c->sched.lock);
}

void acache_scheduler_record_candidates(acache *c, uint64_t count)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->sched.lock);
    c->sched.total_candidates += count;
    c->sched.last_candidate_count = count;
    sched_touch(c);
    pthread_mutex_unlock(&c->sched.lock);
}

void acache_scheduler_record_cache(acache *c, int hit)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->sched.lock);
    if (hit)
        c->sched.cache_hits++;
    else
        c->sched.cache_misses++;
    sched_touch(c);
    pthread_mutex_unlock(&c->sched.lock);
}

void acache_scheduler_record_concurrency_denied(acache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->sched.lock);
    c->sched.concurrency_denied++;
    sched_touch(c);
    pthread_mutex_unlock(&c->sched.lock);
}

static void replace_str(char **slot, const char *v)
{
    if (!v)
        return;
    char *d = acache__strdup(v);
    if (!d)
        return; /* keep the old value: these are informational */
    free(*slot);
    *slot = d;
}

void acache_scheduler_record_request(acache *c, const char *api_format,
                                     const char *model_name)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->sched.lock);
    replace_str(&c->sched.last_api_format, api_format);
    replace_str(&c->sched.last_model_name, model_name);
    sched_touch(c);
    pthread_mutex_unlock(&c->sched.lock);
}

int acache_scheduler_record_reservation(acache *c, double ratio,
                                        acache_reservation_phase phase, double confidence,
                                        double load_factor)
{
    if (!c)
        return acache_error_set(ACACHE_EINVALID,
                                "acache_scheduler_record_reservation: NULL handle");
    if (phase != ACACHE_RESERVATION_PROBE && phase != ACACHE_RESERVATION_STABLE)
        return acache_error_set(ACACHE_EINVALID, "reservation phase %d unknown",
                                (int)phase);
    /* One NaN would poison the moving average for good (and JSON has no NaN). */
    if (!isfinite(ratio) || !isfinite(confidence) || !isfinite(load_factor))
        return acache_error_set(ACACHE_EINVALID,
                                "reservation check values must be finite");
    pthread_mutex_lock(&c->sched.lock);
    if (phase == ACACHE_RESERVATION_PROBE)
        c->sched.reservation_probe_count++;
    else
        c->sched.reservation_stable_count++;
    c->sched.avg_reservation_ratio = 0.1 * ratio + 0.9 * c->sched.avg_reservation_ratio;
    c->sched.has_last_reservation = 1;
    c->sched.last_res_phase = phase;
    c->sched.last_res_ratio = ratio;
    c->sched.last_res_confidence = confidence;
    c->sched.last_res_load_factor = load_factor;
    sched_touch(c);
    pthread_mutex_unlock(&c->sched.lock);
    return ACACHE_OK;
}

/* A consistent copy of the scheduler counters (strings duplicated). */
typedef struct {
    acache__sched s;
} sched_snap;

static void sched_snapshot(acache *c, sched_snap *o)
{
    pthread_mutex_lock(&c->sched.lock);
    o->s = c->sched;
    o->s.last_api_format = acache__strdup(c->sched.last_api_format);
    o->s.last_model_name = acache__strdup(c->sched.last_model_name);
    pthread_mutex_unlock(&c->sched.lock);
}

static void sched_snap_free(sched_snap *o)
{
    free(o->s.last_api_format);
    free(o->s.last_model_name);
}

static double avg_candidates(const acache__sched *s)
{
    return s->total_batches ? (double)s->total_candidates / (double)s->total_batches
                            : 0.0;
}

/* ---- JSON ---- */

/* last_reservation_result: {ratio, phase, confidence, load_factor} or null. */
static json_t *last_reservation(const acache__sched *s)
{
    if (!s->has_last_reservation)
        return json_null();
    return json_pack("{s:f, s:s, s:f, s:f}", "ratio", s->last_res_ratio, "phase",
                     s->last_res_phase == ACACHE_RESERVATION_PROBE ? "probe" : "stable",
                     "confidence", s->last_res_confidence, "load_factor",
                     s->last_res_load_factor);
}

static json_t *reservation_config(void)
{
    return json_pack("{s:i, s:f, s:f, s:f, s:f, s:f}", "probe_phase_requests",
                     PROBE_PHASE_REQUESTS, "probe_reservation", PROBE_RESERVATION,
                     "stable_min_reservation", STABLE_MIN_RESERVATION,
                     "stable_max_reservation", STABLE_MAX_RESERVATION,
                     "low_load_threshold", LOW_LOAD_THRESHOLD, "high_load_threshold",
                     HIGH_LOAD_THRESHOLD);
}

static json_t *ok_envelope(json_t *data)
{
    return data ? json_pack("{s:s, s:o}", "status", "ok", "data", data) : NULL;
}

static int dump_owned(acache_buf *out, json_t *root)
{
    if (!root)
        return acache__oom();
    int rc = acache__json_dump(out, root, 0);
    json_decref(root);
    return rc;
}

/* The summable scheduler counters as fleet totals (the last_* values and the
 * moving average stay this handle's: they do not add up across processes). */
static void sched_fleet(acache__sched *s, const acache__fleet_view *fv)
{
    if (!fv->fleet)
        return;
    s->total_batches = vv(fv, "sched_batches");
    s->total_candidates = vv(fv, "sched_candidates");
    s->cache_hits = vv(fv, "sched_cache_hits");
    s->cache_misses = vv(fv, "sched_cache_misses");
    s->concurrency_denied = vv(fv, "sched_concurrency_denied");
    s->reservation_probe_count = vv(fv, "sched_reservation_probe");
    s->reservation_stable_count = vv(fv, "sched_reservation_stable");
}

/* Invalidations by cause: "single" is what the counted causes leave of
 * cache_invalidations (fleet.c counts the others where they happen). */
static const struct {
    const char *cause, *counter;
} CAUSES[] = {
    {"api_key", "inval_api_key"},
    {"user", "inval_user"},
    {"provider", "inval_provider"},
    {"key", "inval_key"},
    {"endpoint", "inval_endpoint"},
    {"clear_all", "inval_all"},
    {"report_transient", "dropped_transient"},
    {"report_terminal", "dropped_terminal"},
};
#define NCAUSES (sizeof CAUSES / sizeof CAUSES[0])

static uint64_t cause_single(const acache__fleet_view *fv)
{
    uint64_t total = vv(fv, "invalidations"), rest = 0;
    /* Every counted cause but clear-all is part of cache_invalidations
     * (report drops are, affinity.md). */
    for (size_t i = 0; i < NCAUSES; i++)
        if (strcmp(CAUSES[i].cause, "clear_all") != 0)
            rest += vv(fv, CAUSES[i].counter);
    return total > rest ? total - rest : 0;
}

static json_t *inst_json(const acache__instance *in)
{
    acache__fleet_view one = {.values = in->values};
    return json_pack(
        "{s:s, s:s, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "instance_id",
        in->instance_id, "version", in->version, "started_at", in->started_at,
        "last_flush", in->last_flush, "total_affinities", (json_int_t)vv(&one, "created"),
        "cache_hits", (json_int_t)vv(&one, "hits"), "cache_misses",
        (json_int_t)vv(&one, "misses"), "refreshed", (json_int_t)vv(&one, "refreshed"),
        "cache_invalidations", (json_int_t)vv(&one, "invalidations"), "provider_switches",
        (json_int_t)vv(&one, "provider_switches"), "key_switches",
        (json_int_t)vv(&one, "key_switches"), "malformed_records",
        (json_int_t)vv(&one, "malformed"));
}

/* affinity_stats.fleet: an extension after Aether's fields (docs/fleet.md). */
static json_t *fleet_json(const acache__fleet_view *fv, const acache_stats *st)
{
    json_t *per = json_array(), *causes = json_object();
    if (!per || !causes) {
        json_decref(per);
        json_decref(causes);
        return NULL;
    }
    for (size_t i = 0; i < fv->ninst; i++)
        if (json_array_append_new(per, inst_json(&fv->inst[i])) < 0)
            goto fail;
    if (json_object_set_new(causes, "single",
                            json_integer((json_int_t)cause_single(fv))) < 0)
        goto fail;
    for (size_t i = 0; i < NCAUSES; i++)
        if (json_object_set_new(causes, CAUSES[i].cause,
                                json_integer((json_int_t)vv(fv, CAUSES[i].counter))) < 0)
            goto fail;
    return json_pack(
        "{s:s, s:s, s:I, s:i, s:f, s:I, s:o, s:o}", "scope",
        fv->fleet ? "fleet" : "process", "instance_id", fv->self_id, "instances",
        (json_int_t)(fv->fleet ? fv->ninst : 1), "flush_interval_ms", (int)fv->flush_ms,
        "active_affinities_age_s", acache__round_py(st->active_age_s, 3), "refreshed",
        (json_int_t)st->refreshed, "invalidations_by_cause", causes, "per_instance", per);
fail:
    json_decref(per);
    json_decref(causes);
    return NULL;
}

/* The store's circuit breaker (docs/redis.md "Circuit breaker"): 0 with *h
 * filled, -1 when the store has none. Never does I/O. */
static int store_health(acache *c, acache_store_health *h)
{
    acache_store *st = c->store;
    if (!st || st->version < 3 || !st->health)
        return -1;
    st->health(st, h);
    return 0;
}

static const char *breaker_name(int state)
{
    return state == ACACHE_BREAKER_OPEN        ? "open"
           : state == ACACHE_BREAKER_HALF_OPEN ? "half_open"
                                               : "closed";
}

int acache_stats_json(acache_buf *out, acache *c)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID, "acache_stats_json: NULL argument");
    acache__fleet_view fv;
    int frc = acache__fleet_view_get(&fv, c);
    if (frc == ACACHE_ENOMEM)
        return ACACHE_ENOMEM; /* a store failure leaves this handle's counters */
    acache_stats st;
    /* A store failure leaves active_affinities null. */
    stats_fill(&st, c, &fv, frc == ACACHE_ESTORE ? -1 : 1);
    sched_snap ss;
    sched_snapshot(c, &ss);
    sched_fleet(&ss.s, &fv);
    const acache__sched *s = &ss.s;
    json_t *affinity = json_pack(
        "{s:s, s:I, s:o, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:{s:i}}", "storage_type",
        acache_store_type(c), "total_affinities", (json_int_t)st.total_affinities,
        "active_affinities",
        st.active_affinities < 0 ? json_null() : json_integer(st.active_affinities),
        "cache_hits", (json_int_t)st.cache_hits, "cache_misses",
        (json_int_t)st.cache_misses, "cache_hit_rate", st.cache_hit_rate,
        "cache_invalidations", (json_int_t)st.cache_invalidations, "provider_switches",
        (json_int_t)st.provider_switches, "key_switches", (json_int_t)st.key_switches,
        "malformed_records", (json_int_t)st.malformed_records, "config", "default_ttl",
        (int)st.default_ttl_s);
    /* acache_affinity_report() counters, an extension after Aether's fields
     * (its web UI reads affinity_stats by name). */
    if (affinity &&
        json_object_set_new(
            affinity, "lifecycle",
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "report_successes",
                      (json_int_t)st.report_successes, "report_transient_failures",
                      (json_int_t)st.report_transient_failures,
                      "report_terminal_failures", (json_int_t)st.report_terminal_failures,
                      "report_not_pinned", (json_int_t)st.report_not_pinned,
                      "pins_dropped_transient", (json_int_t)st.pins_dropped_transient,
                      "pins_dropped_terminal", (json_int_t)st.pins_dropped_terminal)) <
            0) {
        json_decref(affinity);
        affinity = NULL;
    }
    if (affinity && json_object_set_new(affinity, "fleet", fleet_json(&fv, &st)) < 0) {
        json_decref(affinity);
        affinity = NULL;
    }
    acache_store_health h;
    if (affinity && store_health(c, &h) == 0 &&
        json_object_set_new(
            affinity, "circuit_breaker",
            json_pack("{s:s, s:I, s:I, s:I, s:I}", "state", breaker_name(h.breaker_state),
                      "consecutive_failures", (json_int_t)h.consecutive_failures, "opens",
                      (json_int_t)h.breaker_opens, "fast_failures",
                      (json_int_t)h.fast_failures, "primary_changes",
                      (json_int_t)h.primary_changes)) < 0) {
        json_decref(affinity);
        affinity = NULL;
    }
    acache__fleet_view_free(&fv);
    uint64_t checks = s->reservation_probe_count + s->reservation_stable_count;
    json_t *sched = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:I, s:I, s:f, s:o, s:f, "
        "s:f}",
        "total_batches", (json_int_t)s->total_batches, "last_batch_size",
        (json_int_t)s->last_batch_size, "total_candidates",
        (json_int_t)s->total_candidates, "last_candidate_count",
        (json_int_t)s->last_candidate_count, "cache_hits", (json_int_t)s->cache_hits,
        "cache_misses", (json_int_t)s->cache_misses, "concurrency_denied",
        (json_int_t)s->concurrency_denied, "last_api_format",
        acache__json_str(s->last_api_format), "last_model_name",
        acache__json_str(s->last_model_name), "last_updated_at",
        s->last_updated_at > 0 ? json_real(s->last_updated_at) : json_null(),
        "reservation_probe_count", (json_int_t)s->reservation_probe_count,
        "reservation_stable_count", (json_int_t)s->reservation_stable_count,
        "avg_reservation_ratio", s->avg_reservation_ratio, "last_reservation_result",
        last_reservation(s), "cache_hit_rate", rate(s->cache_hits, s->cache_misses),
        "avg_candidates_per_batch", avg_candidates(s));
    /* The reservation manager runs in the gateway's scheduler, which reports
     * its checks (acache_scheduler_record_reservation); Aether's get_stats
     * derives these figures from the same counters. */
    double probe_ratio =
        checks ? acache__round_py((double)s->reservation_probe_count / (double)checks, 3)
               : 0.0;
    json_t *data =
        affinity && sched
            ? json_pack("{s:s, s:f, s:{s:b, s:o, s:f, s:f, s:I, s:o}, s:o, s:o}",
                        "scheduler", "cache_aware", "cache_reservation_ratio",
                        RESERVATION_RATIO, "dynamic_reservation", "enabled", 1, "config",
                        reservation_config(), "current_avg_ratio",
                        acache__round_py(s->avg_reservation_ratio, 3),
                        "probe_phase_ratio", probe_ratio, "total_checks",
                        (json_int_t)checks, "last_result", last_reservation(s),
                        "affinity_stats", affinity, "scheduler_metrics", sched)
            : NULL;
    sched_snap_free(&ss);
    if (!data) {
        json_decref(affinity);
        json_decref(sched);
    }
    return dump_owned(out, ok_envelope(data));
}

int acache_config_json(acache_buf *out, acache *c)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID, "acache_config_json: NULL argument");
    json_t *data = json_pack(
        "{s:i, s:f, s:{s:b, s:o, s:{s:s, s:s, s:s, s:s, s:s, s:s}}, s:{s:s, s:s, s:s}}",
        "cache_ttl_seconds", (int)c->default_ttl_s, "cache_reservation_ratio",
        RESERVATION_RATIO, "dynamic_reservation", "enabled", 1, "config",
        reservation_config(), "description", "probe_phase_requests",
        "Requests per key during the probe phase, before its success rate is trusted",
        "probe_reservation", "Share of capacity reserved for cached users while probing",
        "stable_min_reservation", "Lowest reservation once a key is stable",
        "stable_max_reservation", "Highest reservation once a key is stable",
        "low_load_threshold", "Load below which the reservation shrinks to its minimum",
        "high_load_threshold", "Load above which the reservation grows to its maximum",
        "description", "cache_ttl",
        "Seconds a client stays pinned to a provider key after its last request",
        "cache_reservation_ratio",
        "Static share of each key's concurrency reserved for clients pinned to it",
        "dynamic_reservation",
        "Adapts the reservation to load and to each key's observed cache success");
    return dump_owned(out, ok_envelope(data));
}

/* ---- Prometheus ---- */

typedef struct {
    const char *name, *help;
    double value;
} metric;

static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return ACACHE_ERROR;
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return ACACHE_OK;
        }
        size_t ncap = (*cap + (size_t)n) * 2;
        char *nb = acache__realloc(*buf, ncap);
        if (!nb)
            return acache__oom();
        *buf = nb;
        *cap = ncap;
    }
}

/* The Prometheus counters beside Aether's gauges (docs/fleet.md): fleet
 * totals with a store that keeps fleet counters, else this process's. */
static int fleet_metrics(char **buf, size_t *len, size_t *cap,
                         const acache__fleet_view *fv)
{
    static const struct {
        const char *name, *help, *counter;
    } simple[] = {
        {"acache_affinity_hits_total", "Affinity lookups that found a live pin", "hits"},
        {"acache_affinity_misses_total", "Affinity lookups that found no live pin",
         "misses"},
        {"acache_affinity_created_total", "Pins created by touches", "created"},
        {"acache_affinity_refreshed_total", "Touches that extended a live pin",
         "refreshed"},
        {"acache_affinity_malformed_records_total", "Unreadable affinity values met",
         "malformed"},
    };
    int rc = ACACHE_OK;
    for (size_t i = 0; i < sizeof simple / sizeof simple[0] && !rc; i++)
        rc = append(buf, len, cap, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",
                    simple[i].name, simple[i].help, simple[i].name, simple[i].name,
                    (unsigned long long)vv(fv, simple[i].counter));
    if (!rc)
        rc = append(
            buf, len, cap,
            "# HELP acache_affinity_switches_total Touches that moved a live pin to "
            "another target\n"
            "# TYPE acache_affinity_switches_total counter\n"
            "acache_affinity_switches_total{kind=\"provider\"} %llu\n"
            "acache_affinity_switches_total{kind=\"key\"} %llu\n",
            (unsigned long long)vv(fv, "provider_switches"),
            /* key_switches counts every switch (Aether's meaning): the
             * labels split it, so that they sum to all switches */
            (unsigned long long)sub0(vv(fv, "key_switches"),
                                     vv(fv, "provider_switches")));
    if (!rc)
        rc = append(buf, len, cap,
                    "# HELP acache_affinity_invalidations_total Pins removed, by cause\n"
                    "# TYPE acache_affinity_invalidations_total counter\n"
                    "acache_affinity_invalidations_total{cause=\"single\"} %llu\n",
                    (unsigned long long)cause_single(fv));
    for (size_t i = 0; i < NCAUSES && !rc; i++)
        rc = append(buf, len, cap,
                    "acache_affinity_invalidations_total{cause=\"%s\"} %llu\n",
                    CAUSES[i].cause, (unsigned long long)vv(fv, CAUSES[i].counter));
    static const struct {
        const char *outcome, *counter;
    } reports[] = {{"success", "report_success"},
                   {"transient", "report_transient"},
                   {"terminal", "report_terminal"},
                   {"not_pinned", "report_not_pinned"}};
    if (!rc)
        rc = append(
            buf, len, cap,
            "# HELP acache_affinity_reports_total Request outcomes reported on pins\n"
            "# TYPE acache_affinity_reports_total counter\n");
    for (size_t i = 0; i < sizeof reports / sizeof reports[0] && !rc; i++)
        rc = append(buf, len, cap, "acache_affinity_reports_total{outcome=\"%s\"} %llu\n",
                    reports[i].outcome, (unsigned long long)vv(fv, reports[i].counter));
    if (!rc)
        rc = append(buf, len, cap,
                    "# HELP acache_instances Live library instances sharing the store's "
                    "counters\n"
                    "# TYPE acache_instances gauge\n"
                    "acache_instances %llu\n",
                    (unsigned long long)(fv->fleet ? fv->ninst : 1));
    return rc;
}

int acache_metrics_text(acache_buf *out, acache *c)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID, "acache_metrics_text: NULL argument");
    acache__fleet_view fv;
    if (acache__fleet_view_get(&fv, c) == ACACHE_ENOMEM)
        return ACACHE_ENOMEM;
    sched_snap ss;
    sched_snapshot(c, &ss);
    sched_fleet(&ss.s, &fv);
    const acache__sched *s = &ss.s;
    uint64_t hits = vv(&fv, "hits"), misses = vv(&fv, "misses");
    metric m[] = {
        {"cache_scheduler_total_batches", "Total batches pulled from provider list",
         (double)s->total_batches},
        {"cache_scheduler_last_batch_size", "Size of the latest candidate batch",
         (double)s->last_batch_size},
        {"cache_scheduler_total_candidates", "Total candidates enumerated by scheduler",
         (double)s->total_candidates},
        {"cache_scheduler_last_candidate_count",
         "Number of candidates in the most recent batch",
         (double)s->last_candidate_count},
        {"cache_scheduler_cache_hits", "Cache hits counted during scheduling",
         (double)s->cache_hits},
        {"cache_scheduler_cache_misses", "Cache misses counted during scheduling",
         (double)s->cache_misses},
        {"cache_scheduler_cache_hit_rate", "Cache hit rate during scheduling",
         rate(s->cache_hits, s->cache_misses)},
        {"cache_scheduler_concurrency_denied",
         "Times candidate rejected due to concurrency limits",
         (double)s->concurrency_denied},
        {"cache_scheduler_avg_candidates_per_batch", "Average candidates per batch",
         avg_candidates(s)},
        {"cache_affinity_total", "Total cache affinities stored",
         (double)vv(&fv, "created")},
        {"cache_affinity_hits", "Affinity cache hits", (double)hits},
        {"cache_affinity_misses", "Affinity cache misses", (double)misses},
        {"cache_affinity_hit_rate", "Affinity cache hit rate", rate(hits, misses)},
        {"cache_affinity_invalidations", "Affinity invalidations",
         (double)vv(&fv, "invalidations")},
        {"cache_affinity_provider_switches", "Affinity provider switches",
         (double)vv(&fv, "provider_switches")},
        {"cache_affinity_key_switches", "Affinity key switches",
         (double)vv(&fv, "key_switches")},
    };
    sched_snap_free(&ss);
    size_t len = 0, cap = 4096;
    char *buf = acache__malloc(cap);
    if (!buf) {
        acache__fleet_view_free(&fv);
        return acache__oom();
    }
    int rc = ACACHE_OK;
    for (size_t i = 0; i < sizeof m / sizeof m[0] && !rc; i++) {
        char num[40];
        acache__fmt_double(num, sizeof num, m[i].value);
        rc = append(&buf, &len, &cap, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", m[i].name,
                    m[i].help, m[i].name, m[i].name, num);
    }
    /* The label value is a constant without characters needing escapes; Aether
     * omits HELP/TYPE here, which promtool rejects, so we add them. */
    if (!rc)
        rc = append(&buf, &len, &cap,
                    "# HELP cache_scheduler_info Cache scheduler information\n"
                    "# TYPE cache_scheduler_info gauge\n"
                    "cache_scheduler_info{scheduler=\"cache_aware\"} 1\n");
    if (!rc)
        rc = fleet_metrics(&buf, &len, &cap, &fv);
    acache_store_health h;
    if (!rc && store_health(c, &h) == 0)
        rc = append(
            &buf, &len, &cap,
            "# HELP acache_store_breaker_state Store circuit breaker: 0 closed, 1 "
            "open, 2 half-open\n# TYPE acache_store_breaker_state gauge\n"
            "acache_store_breaker_state %d\n"
            "# HELP acache_store_breaker_opens_total Times the store circuit breaker "
            "opened\n# TYPE acache_store_breaker_opens_total counter\n"
            "acache_store_breaker_opens_total %llu\n"
            "# HELP acache_store_breaker_fast_failures_total Store calls refused at "
            "once while the breaker was open\n"
            "# TYPE acache_store_breaker_fast_failures_total counter\n"
            "acache_store_breaker_fast_failures_total %llu\n"
            "# HELP acache_store_primary_changes_total New primaries found through "
            "Sentinel\n# TYPE acache_store_primary_changes_total counter\n"
            "acache_store_primary_changes_total %llu\n",
            h.breaker_state, (unsigned long long)h.breaker_opens,
            (unsigned long long)h.fast_failures, (unsigned long long)h.primary_changes);
    acache__fleet_view_free(&fv);
    if (rc) {
        free(buf);
        return rc;
    }
    acache__buf_take(out, buf, len);
    out->reserved = cap;
    return ACACHE_OK;
}
