/* Counters, scheduler metrics and their JSON / Prometheus renderings. */
#include <math.h>
#include <stdarg.h>
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

typedef struct {
    size_t n;
} count_ctx;

static int count_batch(const acache_entry *e, size_t n, void *payload)
{
    (void)e;
    ((count_ctx *)payload)->n += n;
    return 0;
}

int acache_stats_get(acache_stats *out, acache *c)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID, "acache_stats_get: NULL argument");
    if (out->version == 0 || out->version > ACACHE_STATS_VERSION)
        return acache_error_set(ACACHE_EINVALID, "acache_stats version %u unknown",
                                out->version);
    unsigned int v = out->version;
    memset(out, 0, sizeof *out);
    out->version = v;
    out->total_affinities = atomic_load(&c->total_affinities);
    out->cache_hits = atomic_load(&c->cache_hits);
    out->cache_misses = atomic_load(&c->cache_misses);
    out->cache_hit_rate = rate(out->cache_hits, out->cache_misses);
    out->cache_invalidations = atomic_load(&c->cache_invalidations);
    out->provider_switches = atomic_load(&c->provider_switches);
    out->key_switches = atomic_load(&c->key_switches);
    out->default_ttl_s = c->default_ttl_s;
    /* Keys only (no MGET): counting must not cost a value transfer. Expired
     * but not yet reaped records are counted, as Redis DBSIZE would. */
    count_ctx cc = {0};
    int rc = c->store->scan ? c->store->scan(c->store, ACACHE_AFFINITY_PREFIX, 0,
                                             count_batch, &cc)
                            : ACACHE_EUNSUPPORTED;
    out->active_affinities = rc ? -1 : (int64_t)cc.n;
    out->malformed_records = atomic_load(&c->malformed_records);
    return rc == ACACHE_EUNSUPPORTED ? ACACHE_OK : rc;
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
    return s->total_batches ? (double)s->total_candidates / (double)s->total_batches : 0.0;
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
                     "stable_max_reservation", STABLE_MAX_RESERVATION, "low_load_threshold",
                     LOW_LOAD_THRESHOLD, "high_load_threshold", HIGH_LOAD_THRESHOLD);
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

int acache_stats_json(acache_buf *out, acache *c)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID, "acache_stats_json: NULL argument");
    acache_stats st = {.version = ACACHE_STATS_VERSION};
    acache_stats_get(&st, c); /* a store failure leaves active_affinities null */
    sched_snap ss;
    sched_snapshot(c, &ss);
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
    uint64_t checks = s->reservation_probe_count + s->reservation_stable_count;
    json_t *sched = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:I, s:I, s:f, s:o, s:f, s:f}",
        "total_batches",
        (json_int_t)s->total_batches, "last_batch_size", (json_int_t)s->last_batch_size,
        "total_candidates", (json_int_t)s->total_candidates, "last_candidate_count",
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
    json_t *data = affinity && sched
                       ? json_pack("{s:s, s:f, s:{s:b, s:o, s:f, s:f, s:I, s:o}, s:o, s:o}",
                                   "scheduler", "cache_aware", "cache_reservation_ratio",
                                   RESERVATION_RATIO, "dynamic_reservation", "enabled", 1,
                                   "config", reservation_config(), "current_avg_ratio",
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

int acache_metrics_text(acache_buf *out, acache *c)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID, "acache_metrics_text: NULL argument");
    sched_snap ss;
    sched_snapshot(c, &ss);
    const acache__sched *s = &ss.s;
    uint64_t hits = atomic_load(&c->cache_hits), misses = atomic_load(&c->cache_misses);
    metric m[] = {
        {"cache_scheduler_total_batches", "Total batches pulled from provider list",
         (double)s->total_batches},
        {"cache_scheduler_last_batch_size", "Size of the latest candidate batch",
         (double)s->last_batch_size},
        {"cache_scheduler_total_candidates", "Total candidates enumerated by scheduler",
         (double)s->total_candidates},
        {"cache_scheduler_last_candidate_count",
         "Number of candidates in the most recent batch", (double)s->last_candidate_count},
        {"cache_scheduler_cache_hits", "Cache hits counted during scheduling",
         (double)s->cache_hits},
        {"cache_scheduler_cache_misses", "Cache misses counted during scheduling",
         (double)s->cache_misses},
        {"cache_scheduler_cache_hit_rate", "Cache hit rate during scheduling",
         rate(s->cache_hits, s->cache_misses)},
        {"cache_scheduler_concurrency_denied",
         "Times candidate rejected due to concurrency limits", (double)s->concurrency_denied},
        {"cache_scheduler_avg_candidates_per_batch", "Average candidates per batch",
         avg_candidates(s)},
        {"cache_affinity_total", "Total cache affinities stored",
         (double)atomic_load(&c->total_affinities)},
        {"cache_affinity_hits", "Affinity cache hits", (double)hits},
        {"cache_affinity_misses", "Affinity cache misses", (double)misses},
        {"cache_affinity_hit_rate", "Affinity cache hit rate", rate(hits, misses)},
        {"cache_affinity_invalidations", "Affinity invalidations",
         (double)atomic_load(&c->cache_invalidations)},
        {"cache_affinity_provider_switches", "Affinity provider switches",
         (double)atomic_load(&c->provider_switches)},
        {"cache_affinity_key_switches", "Affinity key switches",
         (double)atomic_load(&c->key_switches)},
    };
    sched_snap_free(&ss);
    size_t len = 0, cap = 4096;
    char *buf = acache__malloc(cap);
    if (!buf)
        return acache__oom();
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
    if (rc) {
        free(buf);
        return rc;
    }
    acache__buf_take(out, buf, len);
    out->reserved = cap;
    return ACACHE_OK;
}
