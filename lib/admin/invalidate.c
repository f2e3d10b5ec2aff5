/* The invalidation dispatcher (acache_invalidate: one entry point for every
 * target kind) and the admin bodies of the raw invalidations. The hot-path
 * removals live in lib/core/affinity.c; this room adds what needs the catalog
 * (the user target resolves an identifier first, resolve.c). */
#include <stdio.h>

#include <jansson.h>

#include "../util/json.h"
#include "listing_priv.h"

static int invalidate_kind(size_t *removed, acache *c, const acache_target *t)
{
    if (removed)
        *removed = 0;
    if (!c || !t)
        return acache_error_set(ACACHE_EINVALID, "acache_invalidate: NULL argument");
    if (t->version == 0 || t->version > ACACHE_TARGET_VERSION)
        return acache_error_set(ACACHE_EINVALID, "acache_target version %u unknown",
                                t->version);
    switch (t->kind) {
    case ACACHE_TARGET_SINGLE: {
        int rc =
            acache_affinity_invalidate(c, t->affinity_key, t->api_format, t->model_name,
                                       t->key_id, t->provider_id, t->endpoint_id);
        if (!rc && removed)
            *removed = 1;
        return rc;
    }
    case ACACHE_TARGET_API_KEY:
        return acache__affinity_invalidate_api_key(removed, c, t->affinity_key);
    case ACACHE_TARGET_USER:
        return acache__invalidate_user(removed, c, t->identifier);
    case ACACHE_TARGET_PROVIDER:
        return acache__affinity_invalidate_provider(removed, c, t->provider_id);
    case ACACHE_TARGET_ALL:
        return acache__affinity_clear_all(removed, c);
    case ACACHE_TARGET_KEY:
        return acache__affinity_invalidate_key(removed, c, t->key_id);
    case ACACHE_TARGET_ENDPOINT:
        return acache__affinity_invalidate_endpoint(removed, c, t->endpoint_id);
    default:
        return acache_error_set(ACACHE_EINVALID, "acache_target kind %d unknown",
                                t->kind);
    }
}

/* Fleet counters by cause (docs/fleet.md); "single" is derived. */
static int target_cause(int kind)
{
    switch (kind) {
    case ACACHE_TARGET_API_KEY:
        return ACACHE__CAUSE_API_KEY;
    case ACACHE_TARGET_USER:
        return ACACHE__CAUSE_USER;
    case ACACHE_TARGET_PROVIDER:
        return ACACHE__CAUSE_PROVIDER;
    case ACACHE_TARGET_ALL:
        return ACACHE__CAUSE_ALL;
    case ACACHE_TARGET_KEY:
        return ACACHE__CAUSE_KEY;
    case ACACHE_TARGET_ENDPOINT:
        return ACACHE__CAUSE_ENDPOINT;
    default:
        return -1;
    }
}

int acache_invalidate(size_t *removed, acache *c, const acache_target *t)
{
    size_t n = 0;
    int rc = invalidate_kind(&n, c, t);
    if (removed)
        *removed = n;
    if (c && t) {
        int cause = target_cause(t->kind);
        if (cause >= 0 && n)
            acache__count_cause(c, cause, n);
        /* Even a failed one may have removed pins: drop the listing
         * snapshots and the cached active count (listing.c, fleet.c). */
        atomic_fetch_add(&c->admin_gen, 1);
    }
    return rc;
}

/* ---- acache_invalidate_json: the admin body of each target kind ---- */

static int single_body(acache_buf *out, acache *c, const acache_target *t)
{
    /* The route's endpoint segment is never empty; a NULL one is no filter. */
    int rc = t->endpoint_id ? acache__check_field("endpoint_id", t->endpoint_id, 0) : 0;
    if (!rc)
        rc = acache_invalidate(NULL, c, t);
    if (rc == ACACHE_ENOTFOUND)
        return acache_error_set(ACACHE_ENOTFOUND,
                                "affinity not found: affinity_key=%s endpoint_id=%s "
                                "model_id=%s api_format=%s",
                                t->affinity_key,
                                t->endpoint_id ? t->endpoint_id : "(any)", t->model_name,
                                t->api_format);
    if (rc)
        return rc;
    json_t *o = json_object();
    if (!o)
        return acache__oom();
    int bad = 0;
    bad |= acache__json_set(o, "status", json_string("ok"));
    bad |= acache__json_set(o, "message", json_string("Cache affinity cleared"));
    bad |= acache__json_set(o, "affinity_key", acache__json_str(t->affinity_key));
    bad |= acache__json_set(o, "endpoint_id", acache__json_str(t->endpoint_id));
    bad |= acache__json_set(o, "model_id", acache__json_str(t->model_name));
    if (bad) {
        json_decref(o);
        return acache__oom();
    }
    return acache__admin_dump(out, o);
}

/* {status, message, <what>: <value>, count}: provider (Aether's body), API key,
 * provider key and endpoint. */
static int counted_body(acache_buf *out, acache *c, const acache_target *t,
                        const char *field, const char *value, const char *of_what)
{
    size_t n = 0;
    int rc = acache_invalidate(&n, c, t);
    if (rc)
        return rc;
    char msg[128];
    snprintf(msg, sizeof msg, "Cleared %zu cache affinities of the %s", n, of_what);
    json_t *o = json_object();
    if (!o)
        return acache__oom();
    int bad = 0;
    bad |= acache__json_set(o, "status", json_string("ok"));
    bad |= acache__json_set(o, "message", json_string(msg));
    bad |= acache__json_set(o, field, acache__json_str(value));
    bad |= acache__json_set(o, "count", json_integer((json_int_t)n));
    if (bad) {
        json_decref(o);
        return acache__oom();
    }
    return acache__admin_dump(out, o);
}

static int all_body(acache_buf *out, acache *c, const acache_target *t)
{
    size_t n = 0;
    int rc = acache_invalidate(&n, c, t);
    if (rc)
        return rc;
    char msg[128];
    snprintf(msg, sizeof msg, "Cleared all cache affinities (%zu)", n);
    return acache__admin_dump(out, json_pack("{s:s, s:s, s:I}", "status", "ok", "message",
                                             msg, "count", (json_int_t)n));
}

int acache_invalidate_json(acache_buf *out, acache *c, const acache_target *t)
{
    if (!out || !c || !t)
        return acache_error_set(ACACHE_EINVALID, "acache_invalidate_json: NULL argument");
    if (t->version == 0 || t->version > ACACHE_TARGET_VERSION)
        return acache_error_set(ACACHE_EINVALID, "acache_target version %u unknown",
                                t->version);
    switch (t->kind) {
    case ACACHE_TARGET_SINGLE:
        return single_body(out, c, t);
    case ACACHE_TARGET_API_KEY:
        return counted_body(out, c, t, "affinity_key", t->affinity_key, "API key");
    case ACACHE_TARGET_USER:
        return acache__clear_user_json(out, c, t->identifier);
    case ACACHE_TARGET_PROVIDER:
        return counted_body(out, c, t, "provider_id", t->provider_id, "provider");
    case ACACHE_TARGET_ALL:
        return all_body(out, c, t);
    case ACACHE_TARGET_KEY:
        return counted_body(out, c, t, "key_id", t->key_id, "provider key");
    case ACACHE_TARGET_ENDPOINT:
        return counted_body(out, c, t, "endpoint_id", t->endpoint_id, "endpoint");
    default:
        return acache_error_set(ACACHE_EINVALID, "acache_target kind %d unknown",
                                t->kind);
    }
}
