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

#include <stddef.h>
#include <stdint.h>
#include "../common.h"
#include "../cache.h"
#include "store.h"

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
    double created_at;      /* seconds since epoch, microsecond precision */
    int64_t input_tokens;   /* -1 = NULL */
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
    double since;             /* window start, seconds since epoch */
    int since_inclusive;      /* 1: created_at >= since, 0: created_at > since */
    const char *user_id;      /* NULL = any */
    const char *api_key_id;   /* NULL = any */
    int require_user_id;      /* 1: skip rows with NULL user_id */
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
    /* version 2 slots go below */
};

#define ACACHE_CATALOG_VERSION 1
#define ACACHE_CATALOG_VERSION_MIN 1

/** The handle's catalog (borrowed), or NULL when none is configured. */
ACACHE_EXTERN acache_catalog *acache_get_catalog(acache *c);

/**
 * Open a handle with a catalog you built (opts->catalog_uri is ignored).
 * `store` may be NULL to open opts->store_uri. The handle owns what it was
 * given after success; on failure the caller keeps them.   Since: 0.1
 */
ACACHE_EXTERN int acache_open_with_backends(acache **out, const acache_options *opts,
                                            acache_store *store, acache_catalog *catalog);

ACACHE_END_DECL
#endif
