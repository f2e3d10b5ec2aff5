/* libaethercache backend authors: the store vtable (memory, redis, yours).
 *
 * A store keeps string keys with optional TTLs. Affinity records live under
 * `cache_affinity:{affinity_key}:{api_format}:{model_name}`; their values are
 * JSON (affinity.md), but the vtable deals in parsed records so that a store
 * may keep them in any form (the memory store keeps structs, Redis keeps
 * Aether's JSON). The read-modify-write operations (affinity_touch,
 * affinity_delete_if) must be atomic with respect to every other writer of
 * the same store, including other processes.
 *
 * Threading: the core calls every slot concurrently from many threads; the
 * backend synchronises (the memory store uses a lock, Redis a connection pool).
 */
#ifndef ACACHE_SYS_STORE_H
#define ACACHE_SYS_STORE_H

#include "../buffer.h"
#include "../cache.h"
#include "../common.h"
#include <stddef.h>
#include <stdint.h>

ACACHE_BEGIN_DECL

#define ACACHE_AFFINITY_PREFIX "cache_affinity:"

/** A parsed affinity value. Strings are borrowed; NULL when the value lacks
 *  the field (older writers omit api_format / model_name). */
typedef struct acache_record {
    const char *provider_id;
    const char *endpoint_id;
    const char *key_id;
    const char *api_format;
    const char *model_name;
    double created_at;
    double expire_at;
    int64_t request_count;
} acache_record;

/** One scanned entry. For affinity scans `record` is NULL when the value was
 *  unreadable (malformed JSON, not an object, missing provider/endpoint/key):
 *  the core skips and counts it. For raw scans `value` is the stored bytes
 *  (NULL when the key vanished between SCAN and MGET, or values not asked for). */
typedef struct acache_entry {
    const char *key;
    size_t key_len;
    const acache_record *record; /* affinity scans only */
    const char *value;           /* raw scans only */
    size_t value_len;
} acache_entry;

/** Receives scanned entries in batches (borrowed for the call only).
 *  Return 0 to go on, nonzero to stop (that value is returned by the scan). */
typedef int (*acache_entry_batch_cb)(const acache_entry *entries, size_t n,
                                     void *payload);

/** Receives a record borrowed for the duration of the call. */
typedef void (*acache_record_cb)(const acache_record *rec, void *payload);

/** Inputs of an atomic touch (affinity.md "set / touch"). */
typedef struct acache_touch_req {
    const char *key; /* full storage key */
    const char *provider_id;
    const char *endpoint_id;
    const char *key_id;
    const char *api_format;
    const char *model_name;
    double now; /* seconds since epoch */
    uint32_t ttl_s;
    /* How many touches this one applies (a deferred flush's sum; 0 means 1).
     * Set by the core only for stores with ACACHE_STORE_CAP_TOUCH_DELTA:
     * refresh adds it to request_count, create/switch writes it.  Since: 0.2 */
    uint64_t count_delta;
    /* At most once (a deferred flush resends a batch whose first call failed
     * and may still have run): a store that can half-fail records once_seq
     * under once_key with the write and skips a call whose once_seq is
     * already there (reporting REFRESHED). NULL = no such record.  Since: 0.2 */
    const char *once_key;
    uint64_t once_seq;
} acache_touch_req;

/** A key as bytes with a length: keys found by a scan may hold any byte,
 *  NUL included (another writer of a shared Redis may create them), and must
 *  still be deletable. `ptr` need not be NUL-terminated.   Since: 0.1
 *  (store version 2). */
typedef struct acache_key {
    const char *ptr;
    size_t len;
} acache_key;

/** Filters of an atomic compare-and-delete; NULL fields match anything. */
typedef struct acache_match {
    const char *provider_id;
    const char *endpoint_id;
    const char *key_id;
} acache_match;

/** Inputs of an atomic failure report on one pin (affinity_fail; the core's
 *  acache_affinity_report() fills it).   Since: 0.2 (store version 3). */
typedef struct acache_fail_req {
    const char *key;         /* full storage key */
    const char *provider_id; /* the target that failed: the pin must name */
    const char *endpoint_id; /* exactly these three to be counted or dropped */
    const char *key_id;
    double now;            /* seconds since epoch: live means expire_at > now */
    uint32_t max_failures; /* drop when the count reaches it (>= 1; 1 = at once) */
} acache_fail_req;

/* `*result` of affinity_fail. */
#define ACACHE_FAIL_NOT_PINNED 0 /* no live pin to that target: nothing changed */
#define ACACHE_FAIL_KEPT 1       /* count written back, the key's TTL kept */
#define ACACHE_FAIL_DROPPED 2    /* the pin was deleted */

/** One flush of a handle's counters (docs/fleet.md). Names are short
 *  [a-z0-9_] words; the arrays have `n` entries.   Since: 0.2 (store version 3) */
typedef struct acache_counter_flush {
    const char *instance_id; /* NUL-terminated, at most 200 bytes */
    const char *version;     /* library version of the instance */
    double started_at, now;  /* wall clock, seconds since the epoch */
    uint32_t ttl_ms;         /* the instance record expires after this */
    int final;               /* 1 at acache_close: add the deltas, then drop the
                                instance record (it is no longer live) */
    size_t n;
    const char *const *names;
    const uint64_t *deltas; /* added to the fleet totals (0: nothing to add) */
    const uint64_t *totals; /* this instance's own totals since it started */
} acache_counter_flush;

/** One live instance, borrowed for the callback.   Since: 0.2 */
typedef struct acache_instance_info {
    const char *instance_id, *version;
    double started_at, last_flush;
    const uint64_t *totals; /* the names asked, in order */
} acache_instance_info;

/** Receives each live instance; return 0 to go on. */
typedef int (*acache_instance_cb)(const acache_instance_info *inst, void *payload);

/** Where a store delivers invalidations of the handle's L1 (docs/redis.md
 *  "L1 invalidation"). Called from the store's own thread, concurrently with
 *  every other call.   Since: 0.2 (store version 3) */
typedef struct acache_invalidation_sink {
    /** Another writer (any process) changed or removed `key` (bytes). */
    void (*key)(const char *key, size_t len, void *payload);
    /** Every key may have changed (FLUSHDB / FLUSHALL). */
    void (*all)(void *payload);
    /** live 0: invalidations may be lost from now on (subscription down), so
     *  the L1 must be flushed and bypassed; 1: every change from now on is
     *  delivered again (flush once more: changes made while down were lost). */
    void (*state)(int live, void *payload);
    void *payload;
} acache_invalidation_sink;

/** A remote store's connection health (docs/redis.md "Circuit breaker").
 *  Since: 0.2 (store version 3) */
typedef struct acache_store_health {
    int breaker_state;             /* ACACHE_BREAKER_CLOSED / _OPEN / _HALF_OPEN */
    uint32_t consecutive_failures; /* connection failures in a row */
    uint64_t breaker_opens;        /* times the breaker opened */
    uint64_t fast_failures;        /* calls refused at once while open */
    uint64_t primary_changes;      /* Sentinel: times a new primary was found */
} acache_store_health;
#define ACACHE_BREAKER_CLOSED 0    /* calls go through */
#define ACACHE_BREAKER_OPEN 1      /* calls fail fast until the cool-down ends */
#define ACACHE_BREAKER_HALF_OPEN 2 /* one probe call is through; the others fail fast */

typedef struct acache_store acache_store;

/** Store-level touch outcome: a switch to another provider. Callers of
 *  acache_affinity_touch() see ACACHE_TOUCH_SWITCHED; the core counts it in
 *  key_switches (every switch, as Aether counts) and in provider_switches. */
#define ACACHE_TOUCH_SWITCHED_PROVIDER 4

struct acache_store {
    unsigned int version; /* ACACHE_STORE_VERSION */
    const char *scheme;   /* "memory", "redis": static string */

    /* --- affinity records --- */

    /** Read and parse one record; `cb` sees it while it is valid.
     *  @return OK, ENOTFOUND (absent), ACACHE_ERROR with a message when the
     *  value is unreadable (the core counts it as malformed), ESTORE. */
    int (*affinity_get)(acache_store *self, const char *key, acache_record_cb cb,
                        void *payload);

    /** Atomic create / refresh / switch. `*result` receives an
     *  acache_touch_result, or ACACHE_TOUCH_SWITCHED_PROVIDER for a switch
     *  whose provider_id changed (optional: a store that cannot tell answers
     *  ACACHE_TOUCH_SWITCHED); `cb` (may be NULL) sees the record written. A
     *  live pin is one whose expire_at > req->now. */
    int (*affinity_touch)(acache_store *self, const acache_touch_req *req, int *result,
                          acache_record_cb cb, void *payload);

    /** Atomic compare-and-delete of `n` keys: each is deleted if it exists and
     *  matches `m` (an unreadable value never matches a non-empty filter, and
     *  is deleted when all filters are NULL). `*deleted` = how many went. */
    int (*affinity_delete_if)(acache_store *self, const acache_key *keys, size_t n,
                              const acache_match *m, size_t *deleted);

    /** Every affinity record whose key starts with the literal `prefix`
     *  (glob characters in it are not patterns), in batches. */
    int (*affinity_scan)(acache_store *self, const char *prefix, acache_entry_batch_cb cb,
                         void *payload);

    /* --- raw keys (model-mapping cache, test loading) --- */

    /** Raw value of `key` into `out`. @return OK, ENOTFOUND, ESTORE. */
    int (*get)(acache_store *self, const char *key, acache_buf *out);
    /** Store raw bytes; ttl_s 0 = no expiry. Affinity keys written this way
     *  are read back as Aether JSON. */
    int (*set)(acache_store *self, const char *key, const char *value, size_t len,
               uint32_t ttl_s);
    /** Delete keys (batched UNLINK); `*deleted` = how many existed. */
    int (*del)(acache_store *self, const acache_key *keys, size_t n, size_t *deleted);
    /** Keys starting with the literal `prefix`, in batches, with values when
     *  `with_values` (SCAN + MGET), else value = NULL. Never KEYS. */
    int (*scan)(acache_store *self, const char *prefix, int with_values,
                acache_entry_batch_cb cb, void *payload);
    /** Remaining TTL in seconds of `n` keys (pipelined): -1 no expiry,
     *  -2 missing, as Redis TTL answers. */
    int (*ttl)(acache_store *self, const char *const *keys, size_t n, int64_t *out);

    /** Free the backend and everything it owns. Required. */
    void (*free)(acache_store *self);

    /* --- version 2 --- */

    /** What the store can do: ACACHE_STORE_CAP_* bits; 0 = none of them.
     *  The core asks these, never `scheme`.   Since: 0.2 (store version 2). */
    unsigned int caps;

    /* --- version 3 --- */

    /** Atomic failure report: if `req->key` holds a live pin to exactly
     *  req's provider/endpoint/key, add one to its consecutive failure count
     *  and delete it when the count reaches `max_failures`, else store the
     *  count with the pin (Redis: a "failure_count" field in the JSON value,
     *  every other byte and the key's TTL kept). Anything else (absent,
     *  expired, unreadable, another target) is left alone. A touch that
     *  rewrites the pin clears the count. `*result` = ACACHE_FAIL_*,
     *  `*failures` = the count after the call (0 when not pinned).
     *  Optional (NULL): the core then drops terminal failures with
     *  affinity_delete_if and answers ACACHE_EUNSUPPORTED for transient ones.
     *  Since: 0.2 (store version 3). */
    int (*affinity_fail)(acache_store *self, const acache_fail_req *req, int *result,
                         uint32_t *failures);

    /* Optional fleet counters (docs/fleet.md); both NULL (the memory store,
     * ACACHE_STORE_INIT): counters stay per process, as in version 2. */

    /** Add `f->deltas` to the fleet totals and write the instance record, in
     *  one batch. Must not double count: on failure `*sent` = 0 when nothing
     *  can have reached the store (the core keeps the deltas and retries),
     *  1 when some or all may have (the core counts them as delivered, since
     *  a replay could add them twice).   Since: 0.2 (store version 3) */
    int (*counters_flush)(acache_store *self, const acache_counter_flush *f, int *sent);
    /** Fleet totals of `names` into `totals[n]` (0 where never written), then
     *  `cb` (may be NULL) for each live instance.   Since: 0.2 (store version 3) */
    int (*counters_read)(acache_store *self, const char *const *names, size_t n,
                         uint64_t *totals, acache_instance_cb cb, void *payload);
    /** Optional: the state of the store's circuit breaker and failover, for
     *  the stats JSON and /metrics; never does I/O.  Since: 0.2 (store version 3) */
    void (*health)(acache_store *self, acache_store_health *out);
    /** Optional: push invalidations of affinity keys written by anyone into
     *  `sink` (copied) until invalidations_stop. Reports the initial state
     *  through sink->state before returning ACACHE_OK (when the store is
     *  unreachable now it reports 0 and keeps trying in the background);
     *  ACACHE_EUNSUPPORTED: the server cannot (Redis < 6, CLIENT refused by
     *  an ACL), nothing is running and the core keeps its time-based L1.
     *  Redis: CLIENT TRACKING BCAST on one subscriber connection (Cluster:
     *  one per primary). NULL (memory): time-based L1.   Since: 0.2 (store version 3) */
    int (*invalidations_subscribe)(acache_store *self,
                                   const acache_invalidation_sink *sink);
    /** Stop delivering (joins the store's thread); no sink call after it
     *  returns. Required when invalidations_subscribe is set; idempotent. */
    void (*invalidations_stop)(acache_store *self);
    /* later slots go below; the core checks `version` before using them */
};

/* Capability bits of acache_store.caps (docs/backends.md "Capabilities"). */
/** Remote store: a round trip per call, so the handle puts its in-process
 *  L1 in front of it by default (options.l1_ttl_ms / l1_max_entries). */
#define ACACHE_STORE_CAP_REMOTE 0x1u
/** Raw scans (`scan` with values) hand back Aether's JSON bytes of affinity
 *  records, so the core may pre-filter them on bytes (a provider invalidation
 *  skips values that cannot name the provider) before the atomic
 *  affinity_delete_if re-checks. */
#define ACACHE_STORE_CAP_JSON_VALUES 0x2u
/** The raw slots (get/set/del/scan/ttl) reach the keys Aether's gateway
 *  writes (`model:*`, `global_model:*`): the model-mapping cache works on
 *  this store. Without it those functions answer ACACHE_EUNSUPPORTED. */
#define ACACHE_STORE_CAP_RAW_KEYS 0x4u
/** affinity_touch honours acache_touch_req.count_delta (at most 10^15), so
 *  the handle may defer refreshes (options.touch_flush_ms) and apply a pin's
 *  accumulated touches in one call. */
#define ACACHE_STORE_CAP_TOUCH_DELTA 0x8u

/* Store vtable versions (pre-1.0: sys/ may change between 0.y releases).
 *   1  (0.1) keys of affinity_delete_if and del were NUL-terminated strings.
 *   2  affinity_delete_if and del take acache_key arrays (bytes + length), so
 *      that keys with a NUL byte found by a scan can be deleted (issue 8);
 *      `caps` says what the store can do (the core no longer reads `scheme`).
 * Version 1 is no longer accepted: its delete slots have another signature,
 * so a version 1 store does not compile against this header anyway and a
 * binary one would be called with the wrong argument types. Port it by
 * taking `keys[i].ptr` / `keys[i].len` (never strlen) in those two slots.
 *   3  (0.2) the optional affinity_fail slot (pin lifecycle); a version 2
 *      store is still accepted and runs without it.
 */
#define ACACHE_STORE_VERSION 3
#define ACACHE_STORE_VERSION_MIN 2

/** Static initialiser of a store vtable at the current version (every slot
 *  NULL, caps 0), like libgit2's GIT_ODB_BACKEND_INIT:
 *  `acache_store s = ACACHE_STORE_INIT;` then fill the slots. */
#define ACACHE_STORE_INIT                                                                \
    {                                                                                    \
        .version = ACACHE_STORE_VERSION                                                  \
    }

/**
 * Zero `store` and set its version, for a store embedded in a larger
 * struct or allocated at run time. Fill the slots afterwards.
 * @return ACACHE_OK, or ACACHE_EINVALID (store NULL, or `version` outside
 *         [ACACHE_STORE_VERSION_MIN, ACACHE_STORE_VERSION]).   Since: 0.2
 */
ACACHE_EXTERN int acache_store_init(acache_store *store, unsigned int version);

/**
 * Open a handle on a store you built (instead of options.store_uri). The
 * handle owns `store` after a successful call (freed by acache_close()); on
 * failure the caller keeps it. opts->store_uri is ignored.
 * @return ACACHE_OK, ACACHE_EINVALID (version outside
 *         [ACACHE_STORE_VERSION_MIN, ACACHE_STORE_VERSION] or a required slot
 *         NULL), or what acache_open() returns.   Since: 0.1
 */
ACACHE_EXTERN int acache_open_with_store(acache **out, const acache_options *opts,
                                         acache_store *store);

/** The handle's store (borrowed), e.g. for tests that load raw values.
 *  Since: 0.2 (was acache_get_store; `acache_store` names the vtable type) */
ACACHE_EXTERN acache_store *acache_handle_store(acache *c);

/** Parse an Aether affinity JSON value. `cb` sees the record while valid.
 *  @return OK, or ACACHE_ERROR (with a message) when unreadable. */
ACACHE_EXTERN int acache_record_parse(const char *json, size_t len, acache_record_cb cb,
                                      void *payload);

/** Render a record as Aether writes it (Python json.dumps field order and
 *  separators). @return OK or ENOMEM. */
ACACHE_EXTERN int acache_record_render(acache_buf *out, const acache_record *rec);

ACACHE_END_DECL
#endif
