/* Admin JSON bodies that are not a listing, a user or an invalidation: the
 * raw affinity list, the error body, the status -> HTTP code mapping and the
 * reformatter acache-admin and the CLI pretty-print with. */
#include <jansson.h>

#include "../util/json.h"
#include "listing_priv.h"

int acache__admin_dump(acache_buf *out, json_t *root)
{
    if (!root)
        return acache__oom();
    int rc = acache__json_dump(out, root, 0);
    json_decref(root);
    return rc;
}

int acache__affinity_list_json(acache_buf *out, acache *c, const char *affinity_key)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID,
                                "acache__affinity_list_json: NULL argument");
    acache__affinity_list *l = NULL;
    int rc = acache__affinity_list_fetch(&l, c, affinity_key); /* sorted by storage key */
    if (rc)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < acache__affinity_list_count(l); i++) {
        json_t *o = acache__affinity_json(acache__affinity_list_at(l, i));
        if (!o || json_array_append_new(arr, o) < 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    acache__affinity_list_free(l);
    return acache__admin_dump(out, arr);
}

int acache_http_status(int status)
{
    switch (status) {
    case ACACHE_OK:
        return 200;
    case ACACHE_ENOTFOUND:
        return 404;
    case ACACHE_EINVALID:
        return 422;
    case ACACHE_ESTORE:
    case ACACHE_EUNSUPPORTED:
        return 503;
    default:
        return 500;
    }
}

int acache_error_json(acache_buf *out, const char *message)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "acache_error_json: NULL buffer");
    /* Both shapes (admin-api.md): FastAPI clients and Aether's web UI read
     * "detail", Aether's own exception handler sends "error". */
    const char *m = message ? message : "";
    return acache__admin_dump(
        out, json_pack("{s:o,s:{s:s,s:o}}", "detail", acache__json_str(m), "error",
                       "type", "http_error", "message", acache__json_str(m)));
}

int acache_json_reformat(acache_buf *out, const char *json, size_t len, int indent)
{
    if (!out || !json)
        return acache_error_set(ACACHE_EINVALID, "acache_json_reformat: NULL argument");
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!root)
        return acache_error_set(ACACHE_EINVALID, "not JSON: %s (line %d, column %d)",
                                err.text, err.line, err.column);
    int rc = acache__json_dump(out, root, indent < 0 ? 0 : indent > 16 ? 16 : indent);
    json_decref(root);
    return rc;
}
