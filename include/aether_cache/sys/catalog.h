/* libaethercache backend authors: the catalog vtable (PostgreSQL, JSON file, yours).
 *
 * A catalog answers batched look-ups over the Aether entities of
 * aether-schema.md. Every look-up takes an array of values and calls `cb` once
 * per matching row, with strings borrowed for the duration of the call (NULL
 * for SQL NULL). Rows come in no particular order; values that match nothing
 * produce no call. Ids are compared as text, case-sensitively.
 *
 * Threading: slots are called concurrently from many threads; the backend
 * synchronises. A lost connection is reported as ACACHE_ECATALOG and
 * re-established on the next call.
 *
 * Timeouts: a slot must not block without bound (callers include HTTP worker
 * threads); give up with ACACHE_ECATALOG. The vtable carries no timeout: a
 * backend takes its own at construction. The built-in PostgreSQL backend
 * uses the handle's connect_timeout_ms and command_timeout_ms (statement
 * timeout on the server and a client deadline on every statement).
 */
#ifndef ACACHE_SYS_CATALOG_H
#define ACACHE_SYS_CATALOG_H

#include "../cache.h"
#include "../common.h"
#include "store.h"
#include <stddef.h>
#include <stdint.h>

ACACHE_BEGIN_DECL

typedef struct acache_cat_user {
    const char *id;
    const char *username;
    const char *email;
} acache_cat_user;

typedef struct acache_cat_api_key {
    const char *id;
    const char *user_id;
    const char *name;
    const char *key_encrypted;
    int is_standalone;
} acache_cat_api_key;

typedef struct acache_cat_provider {
    const char *id;
    const char *name;
    const char *display_name;
    int is_active;
} acache_cat_provider;

typedef struct acache_cat_endpoint {
    const char *id;
    const char *provider_id;
    const char *api_format;
    const char *base_url;
} acache_cat_endpoint;

typedef struct acache_cat_provider_key {
    const char *id;
    const char *endpoint_id;
    const char *name;
    const char *api_key; /* encrypted */
    double rate_multiplier;
} acache_cat_provider_key;

typedef struct acache_cat_global_model {
    const char *id;
    const char *name;
    const char *display_name;
    int is_active;
} acache_cat_global_model;

typedef struct acache_cat_model {
    const char *id;
    const char *provider_id;
    const char *global_model_id;
    const char *provider_model_name;
    const char *provider_model_mappings; /* JSON text or NULL */
    int is_active;
} acache_cat_model;

/** One `usage` row (usage-analysis.md). */
typedef struct acache_cat_usage {
    const char *id;
    const char *user_id;    /* NULL allowed */
    const char *api_key_id; /* NULL allowed */
    const char *model;
    const char *status;
    double created_at;    /* seconds since epoch, microsecond precision */
    int64_t input_tokens; /* -1 = NULL */
    int64_t cache_read_input_tokens;
    int64_t cache_creation_input_tokens;
    double cache_read_cost_usd;     /* NAN = NULL */
    double cache_creation_cost_usd; /* NAN = NULL */
} acache_cat_usage;

/** Which column a look-up matches on. */
typedef enum acache_cat_by {
    ACACHE_BY_ID = 0,
    ACACHE_BY_USERNAME = 1,       /* users */
    ACACHE_BY_EMAIL = 2,          /* users */
    ACACHE_BY_USER_ID = 3,        /* api_keys */
    ACACHE_BY_NAME = 4,           /* global_models */
    ACACHE_BY_GLOBAL_MODEL_ID = 5 /* models */
} acache_cat_by;

/** Filter for usage_scan: status = 'completed' always. */
typedef struct acache_usage_filter {
    double since;           /* window start, seconds since epoch */
    int since_inclusive;    /* 1: created_at >= since, 0: created_at > since */
    const char *user_id;    /* NULL = any */
    const char *api_key_id; /* NULL = any */
    int require_user_id;    /* 1: skip rows with NULL user_id */
} acache_usage_filter;

typedef int (*acache_cat_user_cb)(const acache_cat_user *row, void *payload);
typedef int (*acache_cat_api_key_cb)(const acache_cat_api_key *row, void *payload);
typedef int (*acache_cat_provider_cb)(const acache_cat_provider *row, void *payload);
typedef int (*acache_cat_endpoint_cb)(const acache_cat_endpoint *row, void *payload);
typedef int (*acache_cat_provider_key_cb)(const acache_cat_provider_key *row,
                                          void *payload);
typedef int (*acache_cat_global_model_cb)(const acache_cat_global_model *row,
                                          void *payload);
typedef int (*acache_cat_model_cb)(const acache_cat_model *row, void *payload);
typedef int (*acache_cat_usage_cb)(const acache_cat_usage *row, void *payload);

/* ---- the analysis query (catalog version 2, optional) ----
 *
 * A catalog that can aggregate usage rows itself (PostgreSQL: one SQL
 * statement) answers an analysis in rows shaped by `kind`; the library then
 * adds the user look-ups, the rounding and the JSON. A catalog without the
 * slot, or one answering ACACHE_EUNSUPPORTED for a kind, gets the generic
 * path: the library computes the same figures in C over usage_scan. Both
 * paths must give the same rows (docs/backends.md "The analysis query"). */

/** What an analysis query asks for. */
typedef enum acache_analysis_kind {
    ACACHE_ANALYSIS_HITS = 1,    /* one acache_analysis_hits row */
    ACACHE_ANALYSIS_TTL = 2,     /* one acache_analysis_ttl_group per group, any order */
    ACACHE_ANALYSIS_TIMELINE = 3 /* acache_analysis_point rows, by (created_at, id) */
} acache_analysis_kind;

/** Inputs of an analysis query. Only completed usage rows count. */
typedef struct acache_analysis_query {
    int kind;               /* acache_analysis_kind */
    int64_t min_created_us; /* a row passes when its created_at, in whole
                               microseconds since the epoch, is >= this */
    const char *user_id;    /* NULL = any */
    const char *api_key_id; /* NULL = any; TTL: groups by api_key_id when set,
                               else by user_id (rows without one skipped) */
    int limit;              /* TIMELINE: at most this many points (1..50000) */
    int multi_user;         /* TIMELINE: when more than `limit` points, keep per
                               user the earliest max(1, ceil(c_u * limit / total)) */
} acache_analysis_query;

/** HITS: sums over the window (NULL columns add nothing). */
typedef struct acache_analysis_hits {
    uint64_t requests;          /* rows */
    uint64_t requests_with_hit; /* rows with cache_read_input_tokens > 0 */
    int64_t input_tokens, cache_read_tokens, cache_creation_tokens;
    double cache_read_cost_usd, cache_creation_cost_usd;
} acache_analysis_hits;

/** TTL: one group (user or API key) with >= 2 gaps between its consecutive
 *  rows ordered by (created_at, id); gaps in minutes = whole microseconds /
 *  6e7. Buckets: <= 5, (5, 15], (15, 30], (30, 60], > 60 minutes. */
typedef struct acache_analysis_ttl_group {
    const char *group_id;
    uint64_t gaps;
    uint64_t buckets[5];
    double p50, p75, p90; /* percentile_cont of the gaps */
    double avg;           /* sum of gap microseconds / (gaps * 6e7), exact decimal */
    double min, max;
} acache_analysis_ttl_group;

/** TIMELINE: one gap of at most 120 minutes between a user's consecutive
 *  rows (a longer gap is dropped; its later row still starts the next). */
typedef struct acache_analysis_point {
    const char *user_id;
    const char *model;     /* the later row's model; NULL allowed */
    int64_t created_at_us; /* the later row's created_at */
    double gap_minutes;
} acache_analysis_point;

/** One answer row; `kind` says which member is set. */
typedef struct acache_analysis_row {
    int kind;
    union {
        acache_analysis_hits hits;
        acache_analysis_ttl_group ttl;
        acache_analysis_point point;
    } as;
} acache_analysis_row;

/** Receives one row borrowed for the call; nonzero stops the query. */
typedef int (*acache_analysis_cb)(const acache_analysis_row *row, void *payload);

typedef struct acache_catalog acache_catalog;

/* Every look-up: (self, by, values, n, cb, payload). A callback returning
 * nonzero stops the look-up, which then returns that value. */
struct acache_catalog {
    unsigned int version; /* ACACHE_CATALOG_VERSION */
    const char *scheme;   /* "json", "postgresql": static string */

    /** by: ID, USERNAME or EMAIL. */
    int (*users)(acache_catalog *self, int by, const char *const *values, size_t n,
                 acache_cat_user_cb cb, void *payload);
    /** by: ID or USER_ID. */
    int (*api_keys)(acache_catalog *self, int by, const char *const *values, size_t n,
                    acache_cat_api_key_cb cb, void *payload);
    /** by: ID. */
    int (*providers)(acache_catalog *self, int by, const char *const *values, size_t n,
                     acache_cat_provider_cb cb, void *payload);
    /** by: ID. */
    int (*endpoints)(acache_catalog *self, int by, const char *const *values, size_t n,
                     acache_cat_endpoint_cb cb, void *payload);
    /** by: ID. */
    int (*provider_keys)(acache_catalog *self, int by, const char *const *values,
                         size_t n, acache_cat_provider_key_cb cb, void *payload);
    /** by: ID or NAME. */
    int (*global_models)(acache_catalog *self, int by, const char *const *values,
                         size_t n, acache_cat_global_model_cb cb, void *payload);
    /** by: ID or GLOBAL_MODEL_ID. */
    int (*models)(acache_catalog *self, int by, const char *const *values, size_t n,
                  acache_cat_model_cb cb, void *payload);
    /** Completed usage rows passing `f`, ordered by created_at then id. */
    int (*usage_scan)(acache_catalog *self, const acache_usage_filter *f,
                      acache_cat_usage_cb cb, void *payload);

    /** Free the backend. Required. */
    void (*free)(acache_catalog *self);

    /* --- version 2 --- */

    /** Optional (NULL: the library computes every analysis in C over
     *  usage_scan). Answer `q` through `cb`. @return ACACHE_OK,
     *  ACACHE_EUNSUPPORTED (this kind is not implemented: the C path runs),
     *  ACACHE_ECATALOG, ACACHE_ENOMEM, or what `cb` returned.   Since: 0.2 */
    int (*analysis)(acache_catalog *self, const acache_analysis_query *q,
                    acache_analysis_cb cb, void *payload);
    /* later slots go below; the library checks `version` before using them */
};

/* Catalog vtable versions (pre-1.0: sys/ may change between 0.y releases).
 *   1  (0.1) the look-ups, usage_scan and free.
 *   2  adds the optional `analysis` slot.
 * Version 1 catalogs are still accepted: the library reads no field past
 * `free` from them (no analysis slot = the generic C path). */
#define ACACHE_CATALOG_VERSION 2
#define ACACHE_CATALOG_VERSION_MIN 1

/** Static initialiser of a catalog vtable at the current version (every
 *  slot NULL), like libgit2's GIT_ODB_BACKEND_INIT. */
#define ACACHE_CATALOG_INIT                                                              \
    {                                                                                    \
        .version = ACACHE_CATALOG_VERSION                                                \
    }

/**
 * Zero `catalog` and set its version (1 or 2), for a catalog embedded in a
 * larger struct or allocated at run time. Fill the slots afterwards.
 * @return ACACHE_OK, or ACACHE_EINVALID (catalog NULL, or `version` outside
 *         [ACACHE_CATALOG_VERSION_MIN, ACACHE_CATALOG_VERSION]).   Since: 0.2
 */
ACACHE_EXTERN int acache_catalog_init(acache_catalog *catalog, unsigned int version);

/** The handle's catalog (borrowed), or NULL when none is configured.
 *  Since: 0.2 (was acache_get_catalog: the noun first, as everywhere else) */
ACACHE_EXTERN acache_catalog *acache_handle_catalog(acache *c);

/**
 * Open a handle with a catalog you built (opts->catalog_uri is ignored).
 * `store` may be NULL to open opts->store_uri. The handle owns what it was
 * given after success; on failure the caller keeps them.   Since: 0.1
 */
ACACHE_EXTERN int acache_open_with_backends(acache **out, const acache_options *opts,
                                            acache_store *store, acache_catalog *catalog);

ACACHE_END_DECL
#endif
