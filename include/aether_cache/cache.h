/* libaethercache: the handle, its options, stats and scheduler counters. */
#ifndef ACACHE_CACHE_H
#define ACACHE_CACHE_H

#include "buffer.h"
#include "common.h"
#include <stddef.h>
#include <stdint.h>

ACACHE_BEGIN_DECL

/**
 * The library handle. One handle may be shared by any number of threads:
 * every function taking an `acache *` is safe to call concurrently on the
 * same handle, except acache_close(), which must be the last call (see
 * docs/threading.md).
 */
typedef struct acache acache;

/** Clock hook: seconds since the epoch, as a double (tests set fixed times). */
typedef double (*acache_clock_fn)(void *payload);

/**
 * Options for acache_open(). Initialise with ACACHE_OPTIONS_INIT or
 * acache_options_init(); zero/NULL fields take the documented defaults.
 * Strings are copied by acache_open() (the encryption key is wiped after use).
 * Fields are only ever appended, with ACACHE_OPTIONS_VERSION bumped.
 */
typedef struct acache_options {
    unsigned int version;        /* ACACHE_OPTIONS_VERSION, always first */
    const char *store_uri;       /* NULL = "memory://"; or redis://, rediss-less
                                    redis://[:pw@]host[:port][/db], unix:///path */
    const char *catalog_uri;     /* NULL = no catalog; json:///path, a path, or
                                    postgresql://... */
    uint32_t default_ttl_s;      /* affinity TTL; 0 = 300 */
    int32_t l1_ttl_ms;           /* L1 cache in front of Redis; 0 = 3000,
                                    ACACHE_L1_OFF (or any value < 0) = no L1 */
    int32_t l1_max_entries;      /* 0 = 1000, ACACHE_L1_OFF = no L1 */
    uint32_t connect_timeout_ms; /* 0 = 2000 */
    uint32_t command_timeout_ms; /* 0 = 2000 */
    const char *encryption_key;  /* Aether ENCRYPTION_KEY (Fernet key or
                                    passphrase); NULL = no decryption */
    int use_dev_encryption_key;  /* nonzero: with no encryption_key, use Aether's
                                    development default passphrase */
    uint32_t mapping_list_cap;   /* model-mapping stats entries listed; 0 = 100 */
    uint32_t mapping_ttl_s;      /* model-mapping cache TTL reported; 0 = 300 */
    acache_clock_fn clock;       /* NULL = wall clock */
    void *clock_payload;
    /* --- version 2 (0.2) --- */
    uint32_t max_transient_failures; /* transient failures in a row that drop a
                                        pin (acache_affinity_report); 0 = 3 */
    uint32_t stats_flush_ms;      /* fleet counters (docs/fleet.md): at most this often a
                                     background thread adds this handle's counter deltas
                                     to a store that keeps them (Redis); 0 = 1000,
                                     ACACHE_FLEET_OFF = per-process counters only */
    const char *instance_id;      /* this handle's name in the fleet view; NULL =
                                     "<hostname>:<pid>" (a second handle in one process
                                     gets "#2", ...); at most 200 bytes */
    uint32_t touch_flush_ms;      /* deferred touch (docs/affinity.md "Deferred
                                     touch"): 0 = off, every touch is one atomic
                                     store call; N = a refresh of a pin this handle
                                     knows live returns at once and a background
                                     thread applies each pin's refreshes at most
                                     every N ms (100 is a good value). Stores
                                     without ACACHE_STORE_CAP_TOUCH_DELTA: off */
    uint32_t touch_pending_max;   /* pins a deferred handle keeps; 0 = 100000 */
    uint32_t breaker_threshold;   /* Redis circuit breaker (docs/redis.md): connection
                                     failures in a row that open it; 0 = 5 */
    uint32_t breaker_cooldown_ms; /* calls fail fast this long once open, then one
                                     probe goes through; 0 = 5000 */
    int32_t l1_invalidation;      /* how the L1 learns of other processes' writes
                                     (docs/redis.md "L1 invalidation"): ACACHE_L1_AUTO
                                     (0) = server-assisted tracking when the store
                                     offers it (Redis >= 6 single node / Sentinel),
                                     else TTL only with a one-time warning;
                                     ACACHE_L1_TTL_ONLY = the time-based L1 of 0.1;
                                     ACACHE_L1_TRACKING = tracking or acache_open
                                     fails with ACACHE_EUNSUPPORTED */
} acache_options;

/* options.stats_flush_ms: no fleet counters (no thread, nothing written). */
#define ACACHE_FLEET_OFF UINT32_MAX

/* Disables the L1 cache. Zero means "default" in every options field, so a
 * zero-initialised struct (or one from an older caller) gets Aether's 3 s /
 * 1000 entries; switching the L1 off is this explicit value. */
#define ACACHE_L1_OFF (-1)

/* options.l1_invalidation */
#define ACACHE_L1_AUTO 0
#define ACACHE_L1_TTL_ONLY 1
#define ACACHE_L1_TRACKING 2

#define ACACHE_OPTIONS_VERSION 2
#define ACACHE_OPTIONS_INIT                                                              \
    {                                                                                    \
        .version = ACACHE_OPTIONS_VERSION                                                \
    }

/**
 * Initialise `opts` to the defaults for `version` (FFI callers that cannot
 * expand ACACHE_OPTIONS_INIT).
 * @return ACACHE_OK, or ACACHE_EINVALID for an unknown version.  Since: 0.1
 */
ACACHE_EXTERN int acache_options_init(acache_options *opts, unsigned int version);

/** sizeof(acache_options) of the loaded library, for FFI allocation. */
ACACHE_EXTERN size_t acache_options_size(void);

/**
 * Open a handle on the store and catalog named by `opts` (NULL = defaults).
 * Connects to Redis/PostgreSQL now, so a bad URI or a server that is down
 * fails here with ACACHE_ESTORE / ACACHE_ECATALOG.
 * @param out receives the handle; close with acache_close().
 * @return ACACHE_OK, ACACHE_EINVALID, ACACHE_ESTORE, ACACHE_ECATALOG,
 *         ACACHE_ECRYPTO (unusable encryption key) or ACACHE_ENOMEM.
 * Thread-safety: safe from any thread.   Since: 0.1
 */
ACACHE_EXTERN int acache_open(acache **out, const acache_options *opts);

/** Close a handle and free everything it owns. NULL is a no-op. No other call
 *  on the handle may run concurrently or follow.  Since: 0.1 */
ACACHE_EXTERN void acache_close(acache *c);

/** "memory" or "redis" (static text).  Since: 0.1 */
ACACHE_EXTERN const char *acache_store_type(const acache *c);

/** Affinity counters since the handle was opened (affinity.md "stats"). */
typedef struct acache_stats {
    unsigned int version;      /* set by the caller: ACACHE_STATS_VERSION */
    uint64_t total_affinities; /* pins newly created */
    uint64_t cache_hits;
    uint64_t cache_misses;
    double cache_hit_rate;        /* hits / (hits + misses), 0.0 when none */
    uint64_t cache_invalidations; /* pins removed by invalidations (single, API key,
                                     user, provider); not by clear-all */
    uint64_t provider_switches;
    uint64_t key_switches;
    uint64_t malformed_records; /* unreadable values met by get/list */
    int64_t active_affinities;  /* records stored now; -1 if it could not be counted */
    uint32_t default_ttl_s;
    /* --- version 2 (0.2): acache_affinity_report() outcomes and drops --- */
    uint64_t report_successes;          /* SUCCESS outcomes applied */
    uint64_t report_transient_failures; /* TRANSIENT outcomes applied */
    uint64_t report_terminal_failures;  /* TERMINAL outcomes applied */
    uint64_t report_not_pinned;         /* failures on no live pin to that target */
    uint64_t pins_dropped_transient;    /* drops at max_transient_failures in a row */
    uint64_t pins_dropped_terminal;     /* drops by a terminal failure */
    /* --- version 2 (0.2): the fleet view (docs/fleet.md) --- */
    int fleet;           /* 1: the counters above are fleet totals (every instance's
                            flushed deltas plus this handle's unflushed ones);
                            0: this handle's own (store without fleet counters) */
    uint32_t instances;  /* live instances (records not expired); 0 when !fleet */
    uint64_t refreshed;  /* touches that extended a live pin */
    double active_age_s; /* age of active_affinities in seconds (0: counted now) */
    /* --- version 2 (0.2): deferred touch (options.touch_flush_ms), this
     * handle's own; all 0 when touch is synchronous --- */
    uint64_t touches_deferred;     /* touches counted locally for the flusher */
    uint64_t touch_flushes;        /* store calls that applied them */
    uint64_t touch_flush_failures; /* failed store calls (touches kept, retried) */
    uint64_t touches_pending;      /* counted locally, not yet in the store */
} acache_stats;

/* 1: up to default_ttl_s; 2: the report counters. A caller's older version
 * gets only its fields written. */
#define ACACHE_STATS_VERSION 2

/**
 * Fill `out` (whose version the caller sets) with the counters (fleet totals
 * when the store keeps fleet counters, else this handle's: docs/fleet.md) and
 * the number of stored records, counted now (a SCAN on Redis: O(N), not for
 * the hot path; acache_stats_json serves a cached count instead).
 * @return ACACHE_OK, ACACHE_EINVALID (version), or ACACHE_ESTORE (then
 *         active_affinities is -1 and the counters are still filled).
 * Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_stats_get(acache_stats *out, acache *c);

/* ---- scheduler counters (affinity.md "Scheduler counters") ---- */

/** A candidate batch of `batch_size` was pulled.  Since: 0.1 */
ACACHE_EXTERN void acache_scheduler_record_batch(acache *c, uint64_t batch_size);
/** `count` candidates were enumerated.  Since: 0.1 */
ACACHE_EXTERN void acache_scheduler_record_candidates(acache *c, uint64_t count);
/** A cache hit (hit != 0) or miss seen while scheduling.  Since: 0.1 */
ACACHE_EXTERN void acache_scheduler_record_cache(acache *c, int hit);
/** A candidate was rejected for concurrency.  Since: 0.1 */
ACACHE_EXTERN void acache_scheduler_record_concurrency_denied(acache *c);
/** Remember the last request's api_format and model (copied; NULL keeps). */
ACACHE_EXTERN void acache_scheduler_record_request(acache *c, const char *api_format,
                                                   const char *model_name);

/** Phase of the scheduler's dynamic reservation when it made a check. */
typedef enum acache_reservation_phase {
    ACACHE_RESERVATION_PROBE = 0, /* "probe": the key's first requests */
    ACACHE_RESERVATION_STABLE = 1 /* "stable": the key's success rate is trusted */
} acache_reservation_phase;

/**
 * The scheduler's dynamic reservation made a check and chose `ratio`
 * (share of the key's concurrency reserved for pinned clients) in `phase`,
 * with `confidence` and `load_factor` as it computed them. Counts it in
 * reservation_probe_count or reservation_stable_count, folds `ratio` into
 * avg_reservation_ratio (avg = 0.1 * ratio + 0.9 * avg, from 0.0), keeps the
 * four values as last_reservation_result and sets last_updated_at.
 * @return ACACHE_OK, or ACACHE_EINVALID (NULL handle, unknown phase, or a
 *         value that is NaN or infinite; nothing is recorded).
 * Thread-safety: safe concurrently.   Since: 0.1
 */
ACACHE_EXTERN int acache_scheduler_record_reservation(acache *c, double ratio,
                                                      acache_reservation_phase phase,
                                                      double confidence,
                                                      double load_factor);

/* ---- JSON / text renderings (admin-api.md), for FFI and HTTP ---- */

/**
 * Stats response body: {"status":"ok","data":{scheduler, cache_reservation_ratio,
 * dynamic_reservation, affinity_stats, scheduler_metrics}}. With fleet
 * counters, affinity_stats and scheduler_metrics hold fleet totals and
 * affinity_stats.fleet the per-instance breakdown; active_affinities comes
 * from a cached count refreshed in the background (docs/fleet.md: at most
 * 5 s old on all but the largest stores), so no call but a handle's first
 * walks the keyspace.
 * @param out filled with NUL-terminated JSON; release with acache_buf_dispose().
 * @return ACACHE_OK or ACACHE_ENOMEM (a store failure leaves
 *         active_affinities null rather than failing).   Since: 0.1
 */
ACACHE_EXTERN int acache_stats_json(acache_buf *out, acache *c);

/** Config response body (admin-api.md "Config").  Since: 0.1 */
ACACHE_EXTERN int acache_config_json(acache_buf *out, acache *c);

/** Prometheus text exposition (format 0.0.4) of the scheduler and affinity
 *  metrics, in admin-api.md order.  Since: 0.1 */
ACACHE_EXTERN int acache_metrics_text(acache_buf *out, acache *c);

ACACHE_END_DECL
#endif
