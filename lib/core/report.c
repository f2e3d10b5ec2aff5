/* Pin lifecycle: acache_affinity_report(), the gateway's word on how a
 * request served through a pin ended (docs/affinity.md "Pin lifecycle").
 * Success is a touch; a failure is one atomic step in the store (the
 * affinity_fail slot), always compared against the target that failed, so a
 * pin another process already moved elsewhere is never counted or dropped. */
#include <stdlib.h>
#include <string.h>

#include "core.h"

static int has_fail_slot(const acache_store *s)
{
    return s->version >= 3 && s->affinity_fail;
}

/* A store without affinity_fail (a version 2 custom store): a terminal
 * failure is still an atomic compare-and-delete on the full target; a
 * transient one has nowhere to keep its count. */
static int fail_fallback(acache *c, const acache_fail_req *req, int *result,
                         uint32_t *failures)
{
    if (req->max_failures > 1)
        return acache_error_set(ACACHE_EUNSUPPORTED,
                                "store \"%s\" cannot count transient failures (no "
                                "affinity_fail slot)",
                                c->store->scheme ? c->store->scheme : "?");
    const acache_key keys[1] = {{req->key, strlen(req->key)}};
    acache_match m = {req->provider_id, req->endpoint_id, req->key_id};
    size_t n = 0;
    int rc = c->store->affinity_delete_if(c->store, keys, 1, &m, &n);
    if (rc)
        return rc;
    *result = n ? ACACHE_FAIL_DROPPED : ACACHE_FAIL_NOT_PINNED;
    *failures = n ? 1 : 0;
    return ACACHE_OK;
}

static int report_failure(acache_report_result *res, acache *c, const acache_report *r)
{
    int rc;
    char kbuf[ACACHE__KEYBUF];
    char *key = acache__affinity_storage_key(kbuf, sizeof kbuf, r->affinity_key,
                                             r->api_format, r->model_name, &rc);
    if (!key)
        return rc;
    if ((rc = acache__check_field("provider_id", r->provider_id, 0)) ||
        (rc = acache__check_field("endpoint_id", r->endpoint_id, 0)) ||
        (rc = acache__check_field("key_id", r->key_id, 0))) {
        ACACHE__KEY_FREE(key, kbuf);
        return rc;
    }
    int terminal = r->outcome == ACACHE_OUTCOME_TERMINAL;
    acache_fail_req req = {
        .key = key,
        .provider_id = r->provider_id,
        .endpoint_id = r->endpoint_id,
        .key_id = r->key_id,
        .now = acache__now(c),
        .max_failures = terminal ? 1 : c->max_transient_failures,
    };
    int result = ACACHE_FAIL_NOT_PINNED;
    uint32_t failures = 0;
    /* Deferred touch: this pin's pending refreshes happened first; a drop
     * then forgets the pin, so that no flush brings it back. */
    if (c->deferred) {
        acache_touch_req tr = {.key = key};
        acache__deferred_before_sync(c, &tr);
    }
    rc = has_fail_slot(c->store)
             ? c->store->affinity_fail(c->store, &req, &result, &failures)
             : fail_fallback(c, &req, &result, &failures);
    if (!rc && c->deferred && result == ACACHE_FAIL_DROPPED) {
        const acache_key k1[1] = {{key, strlen(key)}};
        acache__deferred_forget(c, k1, 1);
    }
    /* After the store step, whatever it answered (as invalidate does): the
     * stripe's epoch bump keeps a concurrent get from caching the old pin. */
    if (c->l1)
        acache__l1_remove(c->l1, key);
    ACACHE__KEY_FREE(key, kbuf);
    if (rc)
        return rc;
    atomic_fetch_add(terminal ? &c->report_terminal : &c->report_transient, 1);
    switch (result) {
    case ACACHE_FAIL_DROPPED:
        atomic_fetch_add(terminal ? &c->dropped_terminal : &c->dropped_transient, 1);
        /* A drop is an invalidation, as Aether's gateway counts the
         * invalidate_affinity it calls when a key fails. */
        atomic_fetch_add(&c->cache_invalidations, 1);
        res->action = ACACHE_REPORT_DROPPED;
        break;
    case ACACHE_FAIL_KEPT:
        res->action = ACACHE_REPORT_KEPT;
        break;
    default:
        atomic_fetch_add(&c->report_not_pinned, 1);
        res->action = ACACHE_REPORT_NOT_PINNED;
        failures = 0;
        break;
    }
    res->failures = failures;
    return ACACHE_OK;
}

int acache_affinity_report(acache_report_result *out, acache *c, const acache_report *r)
{
    if (out) {
        if (out->version == 0 || out->version > ACACHE_REPORT_RESULT_VERSION)
            return acache_error_set(
                ACACHE_EINVALID, "acache_report_result version %u unknown", out->version);
        out->action = ACACHE_REPORT_SKIPPED;
        out->failures = 0;
    }
    if (!c || !r)
        return acache_error_set(ACACHE_EINVALID, "acache_affinity_report: NULL argument");
    if (r->version == 0 || r->version > ACACHE_REPORT_VERSION)
        return acache_error_set(ACACHE_EINVALID, "acache_report version %u unknown",
                                r->version);
    acache_report_result res = {.version = ACACHE_REPORT_RESULT_VERSION};
    int rc;
    switch (r->outcome) {
    case ACACHE_OUTCOME_SUCCESS: {
        acache_touch t = ACACHE_TOUCH_INIT;
        t.affinity_key = r->affinity_key;
        t.api_format = r->api_format;
        t.model_name = r->model_name;
        t.provider_id = r->provider_id;
        t.endpoint_id = r->endpoint_id;
        t.key_id = r->key_id;
        t.supports_caching = r->supports_caching;
        t.ttl_s = r->ttl_s;
        acache_touch_result tr = ACACHE_TOUCH_SKIPPED;
        rc = acache_affinity_touch(&tr, c, &t);
        if (!rc) {
            atomic_fetch_add(&c->report_successes, 1);
            res.action = (int)tr;
        }
        break;
    }
    case ACACHE_OUTCOME_TRANSIENT:
    case ACACHE_OUTCOME_TERMINAL:
        rc = report_failure(&res, c, r);
        break;
    default:
        return acache_error_set(ACACHE_EINVALID, "acache_report outcome %d unknown",
                                r->outcome);
    }
    if (!rc && out) {
        out->action = res.action;
        out->failures = res.failures;
    }
    return rc;
}
