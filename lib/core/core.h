/* Private to lib/: the handle's layout and the helpers core modules share.
 * Core is the bottom room: it includes nothing from lib/admin, lib/mapping or
 * lib/analysis (those include this header). */
#ifndef ACACHE_CORE_H
#define ACACHE_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "aether_cache/aether_cache.h"
#include "aether_cache/sys/catalog.h"
#include "aether_cache/sys/store.h"

#include "../util/util.h"

typedef struct acache__l1 acache__l1;
typedef struct acache__crypto acache__crypto; /* lib/crypto/crypto.h */

typedef struct acache__sched {
    pthread_mutex_t lock;
    uint64_t total_batches, last_batch_size, total_candidates, last_candidate_count;
    uint64_t cache_hits, cache_misses, concurrency_denied;
    char *last_api_format, *last_model_name;
    double last_updated_at; /* 0 = never */
    /* Reservation checks (affinity.md "Scheduler counters"). */
    uint64_t reservation_probe_count, reservation_stable_count;
    double avg_reservation_ratio; /* EMA, alpha 0.1, from 0.0 */
    int has_last_reservation;     /* 0: last_reservation_result is null */
    acache_reservation_phase last_res_phase;
    double last_res_ratio, last_res_confidence, last_res_load_factor;
} acache__sched;

/* Invalidation causes counted apart (fleet counters, /metrics). "single" is
 * not counted here: it is cache_invalidations minus the counted causes, so a
 * gateway's direct acache_affinity_invalidate needs no extra add. */
enum {
    ACACHE__CAUSE_API_KEY,
    ACACHE__CAUSE_USER,
    ACACHE__CAUSE_PROVIDER,
    ACACHE__CAUSE_KEY,      /* by provider key (key_id) */
    ACACHE__CAUSE_ENDPOINT, /* by endpoint */
    ACACHE__CAUSE_ALL,      /* clear-all: not in cache_invalidations */
    ACACHE__CAUSE_COUNT
};

typedef struct acache__fleet acache__fleet;             /* lib/core/fleet.c */
typedef struct acache__deferred acache__deferred;       /* lib/core/deferred.c */
typedef struct acache__admin_cache acache__admin_cache; /* lib/admin/listing.c */

struct acache {
    acache_options opts; /* string fields point at the copies below */
    char *store_uri, *catalog_uri;
    acache_store *store;
    acache_catalog *catalog; /* NULL: no catalog */
    acache__crypto *crypto;  /* NULL: no encryption key configured */
    acache__l1 *l1;          /* NULL: disabled (memory store, or options) */

    uint32_t default_ttl_s;
    uint32_t mapping_list_cap, mapping_ttl_s;
    uint32_t max_transient_failures; /* acache_affinity_report; >= 1 */

    atomic_uint_fast64_t total_affinities, cache_hits, cache_misses;
    atomic_uint_fast64_t cache_invalidations, provider_switches, key_switches;
    atomic_uint_fast64_t malformed_records;
    /* acache_affinity_report (lib/core/report.c): outcomes applied, drops by cause */
    atomic_uint_fast64_t report_successes, report_transient, report_terminal;
    atomic_uint_fast64_t report_not_pinned, dropped_transient, dropped_terminal;
    /* Fleet counters (lib/core/fleet.c, docs/fleet.md). */
    atomic_uint_fast64_t refreshed;
    atomic_uint_fast64_t inval_cause[ACACHE__CAUSE_COUNT];
    /* Bumped by every acache_invalidate through this handle: drops the cached
     * listing snapshots and active count. */
    atomic_uint_fast64_t admin_gen;
    acache__fleet *fleet;       /* never NULL after open: also the cached count */
    acache__deferred *deferred; /* NULL: synchronous touch (lib/core/deferred.c) */
    /* The admin room's caches (listing snapshots), freed by acache_close
     * through the hook the admin room sets (core includes no admin header). */
    acache__admin_cache *admin_cache;
    void (*admin_cache_free)(acache__admin_cache *cache);
    pthread_mutex_t admin_cache_lock;

    acache__sched sched;
};

/* The capability word of a store (ACACHE_STORE_CAP_*); 0 for none or NULL.
 * Core, admin, mapping and analysis ask this, never the store's scheme. */
static inline unsigned int acache__store_caps(const acache_store *s)
{
    return s && s->version >= 2 ? s->caps : 0;
}

/* ---- deferred touch (lib/core/deferred.c, options.touch_flush_ms) ---- */

/* Start the flusher when touch_flush_ms != 0 and the store honours
 * count_delta (ACACHE_STORE_CAP_TOUCH_DELTA); else c->deferred stays NULL. */
int acache__deferred_start(acache *c);
/* Stop the thread, flush once more, free. */
void acache__deferred_stop(acache *c);
/* 1: a known live pin of the same target, counted locally (REFRESHED);
 * 0: the caller must touch synchronously. */
int acache__deferred_touch(acache *c, const acache_touch_req *req);
/* Before a synchronous touch: apply this pin's pending touches first. */
int acache__deferred_before_sync(acache *c, const acache_touch_req *req);
/* After a successful synchronous touch: the pin is known live (if room). */
void acache__deferred_after_sync(acache *c, const acache_touch_req *req);
/* Before removing `keys`: forget their pending touches (no-op when off). */
void acache__deferred_forget(acache *c, const acache_key *keys, size_t n);
/* Apply every pending touch now (the caller's thread); first failure. */
int acache__deferred_flush(acache *c);
void acache__deferred_counts(const acache *c, uint64_t *deferred, uint64_t *flushes,
                             uint64_t *failures, uint64_t *pending);

/* ---- fleet counters and the cached active count (lib/core/fleet.c) ---- */

/* Start the flusher (stores with counters slots and stats_flush_ms !=
 * ACACHE_FLEET_OFF) or just the per-process state. */
int acache__fleet_start(acache *c);
/* Final flush (bounded by the store's timeouts), stop the thread, free. */
void acache__fleet_stop(acache *c);
/* Add `n` removals of `cause` (ACACHE__CAUSE_*). */
static inline void acache__count_cause(acache *c, int cause, uint64_t n)
{
    atomic_fetch_add(&c->inval_cause[cause], n);
}
/* The number of local counters and their names (fleet.c's table). */
size_t acache__fleet_ncounters(void);
const char *acache__fleet_counter_name(size_t i);
/* Index of a counter by name; (size_t)-1 if none. */
size_t acache__fleet_index(const char *name);
/* A fleet view: values[ncounters] (fleet totals plus this handle's unflushed
 * deltas, or this handle's own when !fleet), and the live instances. */
typedef struct acache__instance {
    char *instance_id, *version;
    double started_at, last_flush;
    uint64_t *values; /* ncounters */
} acache__instance;
typedef struct acache__fleet_view {
    int fleet; /* 0: per process (values = this handle's) */
    uint64_t *values;
    acache__instance *inst;
    size_t ninst;
    const char *self_id; /* borrowed from the handle */
    uint32_t flush_ms;
} acache__fleet_view;
/* Fills `v`; a store failure falls back to this handle's counters (fleet 0)
 * and returns ACACHE_ESTORE. ENOMEM. Free with acache__fleet_view_free. */
int acache__fleet_view_get(acache__fleet_view *v, acache *c);
void acache__fleet_view_free(acache__fleet_view *v);
/* active_affinities from the cached count (at most ACACHE__ACTIVE_MAX_AGE_S
 * old, recounted when older or after a write through this handle); -1 when
 * it cannot be counted. `*age_s` = its age. */
#define ACACHE__ACTIVE_MAX_AGE_S 5.0
int64_t acache__active_cached(acache *c, double *age_s);
/* Count the stored records now (keys only). -1 on failure. */
int64_t acache__active_count_now(acache *c, int *status);

/* The handle's clock (options.clock or the wall clock). */
double acache__now(const acache *c);
/* A time never earlier than acache__now() at the call (the coarse wall clock
 * plus a margin; options.clock exactly): for checks that may err early, never
 * late, such as an L1 hit's expiry (lib/core/cache.c). */
double acache__now_late(const acache *c);

/* cache_affinity:{ak}:{fmt}:{model} into `buf` when it fits in `cap`, else a
 * new allocation (free it when the result != buf); NULL + error on bad fields
 * or ENOMEM. */
/* Count a store's touch outcome in the handle's counters; returns what the
 * caller sees (ACACHE_TOUCH_SWITCHED_PROVIDER becomes ACACHE_TOUCH_SWITCHED). */
int acache__touch_count(acache *c, int outcome);

char *acache__affinity_storage_key(char *buf, size_t cap, const char *affinity_key,
                                   const char *api_format, const char *model_name,
                                   int *status);
#define ACACHE__KEYBUF 256
/* Free a key from acache__affinity_storage_key unless it is the caller's buffer. */
#define ACACHE__KEY_FREE(key, buf)                                                       \
    do {                                                                                 \
        if ((key) != (buf))                                                              \
            free(key);                                                                   \
    } while (0)
/* Reject NULL, empty, or ':' (when no_colon) identifiers with EINVALID. */
int acache__check_field(const char *name, const char *value, int no_colon);

/* Split a storage key into its fields (model = everything after the 3rd ':').
 * Pointers/lengths refer into `key`. Returns 0 on success, -1 if malformed. */
int acache__split_storage_key(const char *key, size_t key_len, const char **ak,
                              size_t *ak_len, const char **fmt, size_t *fmt_len,
                              const char **model, size_t *model_len);

/* acache_record_parse() without its strict fast path: jansson alone (the
 * fast path's reference, tests/fuzz/fuzz_record_fast.c). */
int acache__record_parse_jansson(const char *json, size_t len, acache_record_cb cb,
                                 void *payload);

/* Build an acache_affinity from a store record plus its storage key (fields the
 * value lacks come from the key). NULL on ENOMEM. */
acache_affinity *acache__affinity_from_record(const acache_record *rec, const char *key,
                                              size_t key_len);

/* Another reference to `a` (immutable, reference counted): never fails. */
acache_affinity *acache__affinity_dup(const acache_affinity *a);
/* A refresh in place (new expire_at and request_count) of a record nobody
 * else references: 1 done, 0 shared (make a new one). */
int acache__affinity_refresh(acache_affinity *a, double expire_at, int64_t count);

/* The string fields of an acache_affinity, in storage order. */
enum {
    ACACHE__F_AFFINITY_KEY,
    ACACHE__F_API_FORMAT,
    ACACHE__F_MODEL_NAME,
    ACACHE__F_PROVIDER_ID,
    ACACHE__F_ENDPOINT_ID,
    ACACHE__F_KEY_ID,
    ACACHE__F_COUNT
};

/* Field `field` (ACACHE__F_*) of `a` and its length in bytes. The key fields
 * come from a storage key, which is bytes: they may hold a NUL, so callers
 * that compare or render them use the length, never strlen. The string is
 * NUL-terminated after `*len` bytes. */
const char *acache__affinity_field(const acache_affinity *a, int field, size_t *len);
void acache__affinity_to_record(const acache_affinity *a, acache_record *rec);
/* New jansson object of a record's fields (affinity_key first); NULL on ENOMEM. */
struct json_t;
struct json_t *acache__affinity_json(const acache_affinity *a);

/* L1 cache (lib/core/l1.c). Entries hold a reference to an immutable record;
 * keys are passed with their length (strlen of a storage key). */
acache__l1 *acache__l1_new(int32_t ttl_ms, int32_t max_entries);
void acache__l1_free(acache__l1 *l1);
/* Returns a new reference on hit (caller frees), NULL on miss. */
acache_affinity *acache__l1_get(acache__l1 *l1, const char *key, size_t klen);
/* Epoch of `key`'s stripe: read it before the store, pass it to put, which
 * drops the fill if a remove/clear of that stripe happened since (l1.c). */
uint64_t acache__l1_epoch(acache__l1 *l1, const char *key, size_t klen);
void acache__l1_put(acache__l1 *l1, const char *key, size_t klen,
                    const acache_affinity *a, uint64_t epoch);
void acache__l1_remove(acache__l1 *l1, const char *key);
void acache__l1_clear(acache__l1 *l1);
/* Server-assisted invalidation (options.l1_invalidation, lib/core/l1.c):
 * remove a key given as bytes; flush and bypass (on) or flush and use again. */
void acache__l1_remove_bytes(acache__l1 *l1, const char *key, size_t len);
void acache__l1_set_bypass(acache__l1 *l1, int on);
/* At open, after the store: subscribe to the store's invalidations when the
 * mode and the store allow (warns once and keeps the TTL when the server
 * refuses); stop at close, before the store goes. */
int acache__l1_tracking_start(acache *c);
void acache__l1_tracking_stop(acache *c);
typedef struct acache__l1_tracking {
    int tracking;           /* subscribed to the store's invalidations */
    int bypass;             /* the subscription is down: the L1 is empty and skipped */
    uint64_t keys, flushes; /* keys invalidated, flush-all messages */
    uint64_t lost, live;    /* subscription lost / (re-)established */
} acache__l1_tracking;
void acache__l1_tracking_info(const acache *c, acache__l1_tracking *out);

/* Collect every live affinity (used by listing.c and the JSON renderers).
 * Calls cb per record; expired and malformed ones are skipped (malformed
 * counted). affinity_key NULL = all. */
int acache__affinity_walk(acache *c, const char *affinity_key, acache_affinity_cb cb,
                          void *payload);

/* Remove every pin of each client key (batched) and invalidate L1. */
int acache__invalidate_api_keys(acache *c, const char *const *affinity_keys, size_t n,
                                size_t *removed);

/* Storage-key order of two records (affinity_key, api_format, model_name). */
int acache__affinity_cmp_key(const acache_affinity *a, const acache_affinity *b);

/* ---- raw typed operations behind the public surface; private since 0.2
 * (acache_invalidate and acache_affinity_foreach are the public forms),
 * kept for the dispatcher and the C tests ---- */

/* acache_affinity_touch() with plain arguments (the C tests' shorthand). */
int acache__affinity_set(acache_touch_result *result, acache *c, const char *affinity_key,
                         const char *api_format, const char *model_name,
                         const char *provider_id, const char *endpoint_id,
                         const char *key_id, int supports_caching, uint32_t ttl_s);

/* Remove every pin of one client API key; counts them as invalidations.
 * `removed` optional. On ACACHE_ESTORE it holds the removals the store
 * confirmed; the batch in flight (at most 500 keys) may also have gone
 * (docs/affinity.md "Errors"). The same holds for the two functions below. */
int acache__affinity_invalidate_api_key(size_t *removed, acache *c,
                                        const char *affinity_key);
/* Remove every pin whose value names `provider_id` (checked atomically per
 * pin); counts them as invalidations. */
int acache__affinity_invalidate_provider(size_t *removed, acache *c,
                                         const char *provider_id);
/* Remove every pin whose value names that provider key / endpoint (checked
 * atomically per pin); counted as invalidations. Since 0.2. */
int acache__affinity_invalidate_key(size_t *removed, acache *c, const char *key_id);
int acache__affinity_invalidate_endpoint(size_t *removed, acache *c,
                                         const char *endpoint_id);
/* Remove every cache_affinity:* record (SCAN + batched UNLINK, never KEYS).
 * Not counted in cache_invalidations (Aether's clear_all is not). */
int acache__affinity_clear_all(size_t *removed, acache *c);

/* A list of records, sorted by storage key: every live record (unexpired,
 * readable), key fields filled from the storage key when the value lacks
 * them; affinity_key NULL for all. ACACHE_OK, ACACHE_ESTORE, ACACHE_ENOMEM. */
typedef struct acache__affinity_list acache__affinity_list;
int acache__affinity_list_fetch(acache__affinity_list **out, acache *c,
                                const char *affinity_key);
size_t acache__affinity_list_count(const acache__affinity_list *l);
/* Borrowed record `i` (< count), valid until the list is freed; NULL if out of range. */
const acache_affinity *acache__affinity_list_at(const acache__affinity_list *l, size_t i);
void acache__affinity_list_free(acache__affinity_list *l);

/* Store and catalog factories, by URI (lib/store, lib/catalog). */
int acache__store_memory_new(acache_store **out);
int acache__store_redis_new(acache_store **out, const char *uri,
                            uint32_t connect_timeout_ms, uint32_t command_timeout_ms);
/* Same, with the circuit breaker's threshold and cool-down (0 = 5, 5000 ms). */
int acache__store_redis_new_ex(acache_store **out, const char *uri,
                               uint32_t connect_timeout_ms, uint32_t command_timeout_ms,
                               uint32_t breaker_threshold, uint32_t breaker_cooldown_ms);
int acache__catalog_open(acache_catalog **out, const char *uri);
/* Same, with the handle's timeouts for a PostgreSQL catalog (0 = 2000 ms; see
 * lib/catalog/postgres.h); acache__catalog_open uses the defaults. */
int acache__catalog_open_ex(acache_catalog **out, const char *uri,
                            uint32_t connect_timeout_ms, uint32_t command_timeout_ms);

#endif
