/* The handle: options, backends by URI, counters. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../crypto/crypto.h"
#include "core.h"

const char *acache_version(void)
{
    return ACACHE_VERSION_STRING;
}

int acache_version_number(void)
{
    return ACACHE_VERSION_NUMBER;
}

/* Bytes of acache_options a caller of `version` has: an older caller's struct
 * ends before the fields appended since, which are never read or written. */
static size_t options_size_for(unsigned int version)
{
    return version < 2 ? offsetof(acache_options, max_transient_failures)
                       : sizeof(acache_options);
}

int acache_options_init(acache_options *opts, unsigned int version)
{
    if (!opts)
        return acache_error_set(ACACHE_EINVALID, "acache_options_init: NULL options");
    if (version == 0 || version > ACACHE_OPTIONS_VERSION)
        return acache_error_set(ACACHE_EINVALID,
                                "acache_options_init: unknown options version %u (this "
                                "library knows 1..%d)",
                                version, ACACHE_OPTIONS_VERSION);
    memset(opts, 0, options_size_for(version));
    opts->version = version;
    return ACACHE_OK;
}

size_t acache_options_size(void)
{
    return sizeof(acache_options);
}

double acache__now(const acache *c)
{
    return c->opts.clock ? c->opts.clock(c->opts.clock_payload) : acache__wallclock();
}

/* The coarse wall clock is the time of the last tick: behind the precise one
 * by at most its resolution (one jiffy, 1-10 ms), unless the timekeeping
 * update is late (nohz). Adding the resolution plus a 20 ms margin makes the
 * result an upper bound, so an expiry check with it can only err early: an
 * L1 hit on a pin in its last ~25 ms of life goes to the store, where the
 * precise clock decides (lib/core/affinity.c). Costs a few ns, the precise
 * clock_gettime a quarter of an L1 hit. */
double acache__now_late(const acache *c)
{
    if (c->opts.clock)
        return c->opts.clock(c->opts.clock_payload);
#ifdef CLOCK_REALTIME_COARSE
    static _Atomic double res; /* 0 until first read; racing readers agree */
    double r = res;
    struct timespec ts;
    if (r == 0.0) {
        r = clock_getres(CLOCK_REALTIME_COARSE, &ts) == 0 && ts.tv_sec == 0
                ? (double)ts.tv_nsec / 1e9
                : -1.0;
        res = r;
    }
    if (r > 0.0 && clock_gettime(CLOCK_REALTIME_COARSE, &ts) == 0)
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + r + 0.020;
#endif
    return acache__wallclock();
}

static int has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static int open_store(acache_store **out, const acache_options *o)
{
    const char *uri = o->store_uri ? o->store_uri : "memory://";
    if (strcmp(uri, "memory://") == 0 || strcmp(uri, "memory") == 0)
        return acache__store_memory_new(out);
    if (has_prefix(uri, "redis://") || has_prefix(uri, "rediss://") ||
        has_prefix(uri, "unix://") || has_prefix(uri, "redis-sentinel://") ||
        has_prefix(uri, "redis-cluster://"))
        return acache__store_redis_new_ex(
            out, uri, o->connect_timeout_ms ? o->connect_timeout_ms : 2000,
            o->command_timeout_ms ? o->command_timeout_ms : 2000, o->breaker_threshold,
            o->breaker_cooldown_ms);
    return acache_error_set(ACACHE_EINVALID,
                            "unknown store URI scheme in \"%.200s\" (expected memory://, "
                            "redis[s]://host[:port][/db] or unix:///path)",
                            uri);
}

int acache_store_init(acache_store *store, unsigned int version)
{
    if (!store)
        return acache_error_set(ACACHE_EINVALID, "acache_store_init: NULL store");
    if (version < ACACHE_STORE_VERSION_MIN || version > ACACHE_STORE_VERSION)
        return acache_error_set(ACACHE_EINVALID,
                                "acache_store_init: store version %u outside [%u, %u]",
                                version, ACACHE_STORE_VERSION_MIN, ACACHE_STORE_VERSION);
    memset(store, 0, sizeof *store);
    store->version = version;
    return ACACHE_OK;
}

int acache_catalog_init(acache_catalog *catalog, unsigned int version)
{
    if (!catalog)
        return acache_error_set(ACACHE_EINVALID, "acache_catalog_init: NULL catalog");
    if (version < ACACHE_CATALOG_VERSION_MIN || version > ACACHE_CATALOG_VERSION)
        return acache_error_set(
            ACACHE_EINVALID, "acache_catalog_init: catalog version %u outside [%u, %u]",
            version, ACACHE_CATALOG_VERSION_MIN, ACACHE_CATALOG_VERSION);
    memset(catalog, 0, sizeof *catalog);
    catalog->version = version;
    return ACACHE_OK;
}

static int check_backend_version(const char *what, unsigned int v, unsigned int lo,
                                 unsigned int hi)
{
    if (v < lo || v > hi)
        return acache_error_set(ACACHE_EINVALID, "%s backend version %u outside [%u, %u]",
                                what, v, lo, hi);
    return ACACHE_OK;
}

static int check_store(const acache_store *s)
{
    int rc = check_backend_version("store", s->version, ACACHE_STORE_VERSION_MIN,
                                   ACACHE_STORE_VERSION);
    if (rc)
        return rc;
    if (!s->affinity_get || !s->affinity_touch || !s->affinity_delete_if ||
        !s->affinity_scan || !s->free)
        return acache_error_set(ACACHE_EINVALID, "store backend lacks a required slot");
    return ACACHE_OK;
}

static int check_catalog(const acache_catalog *cat)
{
    int rc = check_backend_version("catalog", cat->version, ACACHE_CATALOG_VERSION_MIN,
                                   ACACHE_CATALOG_VERSION);
    if (!rc && !cat->free)
        rc = acache_error_set(ACACHE_EINVALID, "catalog backend lacks free()");
    return rc;
}

/* Copy options (strings included) and apply defaults. */
static int copy_options(acache *c, const acache_options *o)
{
    memset(&c->opts, 0, sizeof c->opts);
    memcpy(&c->opts, o, options_size_for(o->version));
    c->opts.encryption_key = NULL; /* never kept: the derived key is */
    if (o->store_uri && !(c->store_uri = acache__strdup(o->store_uri)))
        return acache__oom();
    if (o->catalog_uri && !(c->catalog_uri = acache__strdup(o->catalog_uri)))
        return acache__oom();
    c->opts.store_uri = c->store_uri;
    c->opts.catalog_uri = c->catalog_uri;
    c->default_ttl_s = o->default_ttl_s ? o->default_ttl_s : 300;
    c->mapping_list_cap = o->mapping_list_cap ? o->mapping_list_cap : 100;
    c->mapping_ttl_s = o->mapping_ttl_s ? o->mapping_ttl_s : 300;
    c->max_transient_failures =
        c->opts.max_transient_failures ? c->opts.max_transient_failures : 3;
    return ACACHE_OK;
}

int acache_open_with_backends(acache **out, const acache_options *opts,
                              acache_store *store, acache_catalog *catalog)
{
    acache_options defaults = ACACHE_OPTIONS_INIT;
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "acache_open: NULL out");
    *out = NULL;
    if (!opts)
        opts = &defaults;
    if (opts->version == 0 || opts->version > ACACHE_OPTIONS_VERSION)
        return acache_error_set(
            ACACHE_EINVALID,
            "acache_open: options version %u unknown (expected 1..%d); "
            "initialise with ACACHE_OPTIONS_INIT",
            opts->version, ACACHE_OPTIONS_VERSION);
    if (store && check_store(store))
        return ACACHE_EINVALID;
    if (catalog && check_catalog(catalog))
        return ACACHE_EINVALID;

    acache *c = acache__calloc(1, sizeof *c);
    if (!c)
        return acache__oom();
    pthread_mutex_init(&c->sched.lock, NULL);
    pthread_mutex_init(&c->admin_cache_lock, NULL);
    int rc = copy_options(c, opts);
    acache_store *own_store = NULL;
    acache_catalog *own_catalog = NULL;
    if (!rc && !store) {
        rc = open_store(&own_store, &c->opts); /* sized copy: no overrun of a v1 struct */
        if (!rc && check_store(own_store))
            rc = ACACHE_EINVALID;
    }
    if (!rc && !catalog && opts->catalog_uri)
        rc = acache__catalog_open_ex(&own_catalog, opts->catalog_uri,
                                     opts->connect_timeout_ms, opts->command_timeout_ms);
    if (!rc && (opts->encryption_key || opts->use_dev_encryption_key)) {
        const char *k =
            opts->encryption_key ? opts->encryption_key : acache__dev_encryption_key();
        rc = acache__crypto_new(&c->crypto, k, strlen(k));
    }
    acache_store *s = store ? store : own_store;
    /* The L1 only pays off in front of a remote store. */
    if (!rc && s && (acache__store_caps(s) & ACACHE_STORE_CAP_REMOTE) &&
        opts->l1_ttl_ms >= 0 && opts->l1_max_entries >= 0) {
        c->l1 = acache__l1_new(opts->l1_ttl_ms ? opts->l1_ttl_ms : 3000,
                               opts->l1_max_entries ? opts->l1_max_entries : 1000);
        if (!c->l1)
            rc = acache__oom();
    }
    if (rc) {
        if (own_store)
            own_store->free(own_store);
        if (own_catalog)
            own_catalog->free(own_catalog);
        acache_close(c); /* c owns neither caller backend yet */
        return rc;
    }
    c->store = s;
    c->catalog = catalog ? catalog : own_catalog;
    /* Tracking last: a failure after it would leave its thread on a caller's store. */
    if ((rc = acache__fleet_start(c)) || (rc = acache__deferred_start(c)) ||
        (rc = acache__l1_tracking_start(c))) {
        if (store)
            c->store = NULL; /* on failure the caller keeps its backends */
        if (catalog)
            c->catalog = NULL;
        acache_close(c);
        return rc;
    }
    *out = c;
    return ACACHE_OK;
}

int acache_open(acache **out, const acache_options *opts)
{
    return acache_open_with_backends(out, opts, NULL, NULL);
}

int acache_open_with_store(acache **out, const acache_options *opts, acache_store *store)
{
    if (!store)
        return acache_error_set(ACACHE_EINVALID, "acache_open_with_store: NULL store");
    return acache_open_with_backends(out, opts, store, NULL);
}

void acache_close(acache *c)
{
    if (!c)
        return;
    acache__l1_tracking_stop(c); /* no invalidation arrives after this */
    acache__deferred_stop(c);    /* pending touches first: the fleet flush counts them */
    acache__fleet_stop(c);       /* the last flush needs the store */
    if (c->admin_cache_free && c->admin_cache)
        c->admin_cache_free(c->admin_cache);
    pthread_mutex_destroy(&c->admin_cache_lock);
    if (c->store)
        c->store->free(c->store);
    if (c->catalog)
        c->catalog->free(c->catalog);
    acache__crypto_free(c->crypto);
    acache__l1_free(c->l1);
    /* The URIs may carry passwords: wipe before freeing. */
    acache__wipe_free(c->store_uri);
    acache__wipe_free(c->catalog_uri);
    free(c->sched.last_api_format);
    free(c->sched.last_model_name);
    pthread_mutex_destroy(&c->sched.lock);
    free(c);
}

const char *acache_store_type(const acache *c)
{
    return c && c->store ? c->store->scheme : "none";
}

acache_store *acache_handle_store(acache *c)
{
    return c ? c->store : NULL;
}

acache_catalog *acache_handle_catalog(acache *c)
{
    return c ? c->catalog : NULL;
}
