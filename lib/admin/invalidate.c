/* The invalidation dispatcher (acache_invalidate: one entry point for every
 * target kind) and the admin bodies of the raw invalidations. The hot-path
 * removals live in lib/core/affinity.c; this room adds what needs the catalog
 * (the user target resolves an identifier first, resolve.c). */
#include <stdio.h>

#include <jansson.h>

#include "../util/json.h"
#include "listing_priv.h"

int acache_invalidate(size_t *removed, acache *c, const acache_target *t)
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
        return acache_affinity_invalidate_api_key(removed, c, t->affinity_key);
    case ACACHE_TARGET_USER:
        return acache__invalidate_user(removed, c, t->identifier);
    case ACACHE_TARGET_PROVIDER:
        return acache_affinity_invalidate_provider(removed, c, t->provider_id);
    case ACACHE_TARGET_ALL:
        return acache_affinity_clear_all(removed, c);
    default:
        return acache_error_set(ACACHE_EINVALID, "acache_target kind %d unknown",
                                t->kind);
    }
}

/* ---- admin bodies of the raw invalidations ---- */

int acache_clear_single_json(acache_buf *out, acache *c, const char *affinity_key,
                             const char *endpoint_id, const char *model_id,
                             const char *api_format)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID,
                                "acache_clear_single_json: NULL argument");
    int rc = acache__check_field("endpoint_id", endpoint_id, 0);
    if (!rc)
        rc = acache_affinity_invalidate(c, affinity_key, api_format, model_id, NULL, NULL,
                                        endpoint_id);
    if (rc == ACACHE_ENOTFOUND)
        return acache_error_set(ACACHE_ENOTFOUND,
                                "affinity not found: affinity_key=%s endpoint_id=%s "
                                "model_id=%s api_format=%s",
                                affinity_key, endpoint_id, model_id, api_format);
    if (rc)
        return rc;
    json_t *o = json_object();
    if (!o)
        return acache__oom();
    int bad = 0;
    bad |= acache__json_set(o, "status", json_string("ok"));
    bad |= acache__json_set(o, "message", json_string("Cache affinity cleared"));
    bad |= acache__json_set(o, "affinity_key", acache__json_str(affinity_key));
    bad |= acache__json_set(o, "endpoint_id", acache__json_str(endpoint_id));
    bad |= acache__json_set(o, "model_id", acache__json_str(model_id));
    if (bad) {
        json_decref(o);
        return acache__oom();
    }
    return acache__admin_dump(out, o);
}

int acache_clear_provider_json(acache_buf *out, acache *c, const char *provider_id)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID,
                                "acache_clear_provider_json: NULL argument");
    size_t n = 0;
    int rc = acache_affinity_invalidate_provider(&n, c, provider_id);
    if (rc)
        return rc;
    char msg[128];
    snprintf(msg, sizeof msg, "Cleared %zu cache affinities of the provider", n);
    json_t *o = json_object();
    if (!o)
        return acache__oom();
    int bad = 0;
    bad |= acache__json_set(o, "status", json_string("ok"));
    bad |= acache__json_set(o, "message", json_string(msg));
    bad |= acache__json_set(o, "provider_id", acache__json_str(provider_id));
    bad |= acache__json_set(o, "count", json_integer((json_int_t)n));
    if (bad) {
        json_decref(o);
        return acache__oom();
    }
    return acache__admin_dump(out, o);
}

int acache_clear_all_json(acache_buf *out, acache *c)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID, "acache_clear_all_json: NULL argument");
    size_t n = 0;
    int rc = acache_affinity_clear_all(&n, c);
    if (rc)
        return rc;
    char msg[128];
    snprintf(msg, sizeof msg, "Cleared all cache affinities (%zu)", n);
    return acache__admin_dump(out, json_pack("{s:s, s:s, s:I}", "status", "ok", "message",
                                             msg, "count", (json_int_t)n));
}
