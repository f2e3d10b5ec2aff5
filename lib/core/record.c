/* Affinity values as Aether writes them, and storage keys. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "../util/json.h"
#include "core.h"

static const char *opt_string(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static double opt_number(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

/* request_count written as a real by another writer (Aether's Python would
 * keep a float). Casting an out-of-range double to int64_t is undefined, so:
 * the fraction is dropped (toward zero), values beyond int64 saturate at
 * INT64_MIN/INT64_MAX, and NaN (jansson never yields it) reads as 0. The pin
 * itself stays valid: a silly counter must not drop a routing decision. */
static int64_t count_of_real(double v)
{
    if (isnan(v))
        return 0;
    /* 2^63 is exact in a double; every double below it converts. */
    if (v >= 9223372036854775808.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

int acache_record_parse(const char *json, size_t len, acache_record_cb cb, void *payload)
{
    json_error_t err;
    /* JSON_ALLOW_NUL: a hostile value with \u0000 must not abort parsing of
     * the listing; the strings are then truncated at the NUL when used. */
    json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &err);
    if (!root)
        return acache_error_set(ACACHE_ERROR, "affinity value is not valid JSON: %s",
                                err.text);
    int rc = ACACHE_OK;
    if (!json_is_object(root)) {
        rc = acache_error_set(ACACHE_ERROR, "affinity value is not a JSON object");
        goto out;
    }
    acache_record rec = {
        .provider_id = opt_string(root, "provider_id"),
        .endpoint_id = opt_string(root, "endpoint_id"),
        .key_id = opt_string(root, "key_id"),
        .api_format = opt_string(root, "api_format"),
        .model_name = opt_string(root, "model_name"),
        .created_at = opt_number(root, "created_at"),
        .expire_at = opt_number(root, "expire_at"),
    };
    json_t *count = json_object_get(root, "request_count");
    if (json_is_integer(count))
        rec.request_count = (int64_t)json_integer_value(count);
    else if (json_is_real(count))
        rec.request_count = count_of_real(json_real_value(count));
    if (!rec.provider_id || !rec.endpoint_id || !rec.key_id) {
        rc = acache_error_set(ACACHE_ERROR,
                              "affinity value lacks provider_id, endpoint_id or key_id");
        goto out;
    }
    if (cb)
        cb(&rec, payload);
out:
    json_decref(root);
    return rc;
}

int acache_record_render(acache_buf *out, const acache_record *rec)
{
    /* Field order and separators as Python's json.dumps of Aether's dict. */
    json_t *o = json_object();
    if (!o)
        return acache__oom();
    int bad = 0;
    bad |= acache__json_set(o, "provider_id", acache__json_str(rec->provider_id));
    bad |= acache__json_set(o, "endpoint_id", acache__json_str(rec->endpoint_id));
    bad |= acache__json_set(o, "key_id", acache__json_str(rec->key_id));
    bad |= acache__json_set(o, "api_format", acache__json_str(rec->api_format));
    bad |= acache__json_set(o, "model_name", acache__json_str(rec->model_name));
    bad |= acache__json_set(o, "created_at", json_real(rec->created_at));
    bad |= acache__json_set(o, "expire_at", json_real(rec->expire_at));
    bad |= acache__json_set(o, "request_count", json_integer(rec->request_count));
    int rc = bad ? acache__oom() : acache__json_dump(out, o, 0);
    json_decref(o);
    return rc;
}

int acache__check_field(const char *name, const char *value, int no_colon)
{
    if (!value || !*value)
        return acache_error_set(ACACHE_EINVALID, "%s must not be empty", name);
    if (no_colon && strchr(value, ':'))
        return acache_error_set(ACACHE_EINVALID,
                                "%s must not contain ':' (the storage key would be ambiguous)",
                                name);
    return ACACHE_OK;
}

char *acache__affinity_storage_key(char *buf, size_t cap, const char *affinity_key,
                                   const char *api_format, const char *model_name,
                                   int *status)
{
    int rc = acache__check_field("affinity_key", affinity_key, 1);
    if (!rc)
        rc = acache__check_field("api_format", api_format, 1);
    if (!rc)
        rc = acache__check_field("model_name", model_name, 0);
    if (rc) {
        *status = rc;
        return NULL;
    }
    size_t a = strlen(affinity_key), f = strlen(api_format), m = strlen(model_name);
    size_t plen = sizeof ACACHE_AFFINITY_PREFIX - 1;
    size_t need = plen + a + f + m + 3;
    /* The hot path passes a stack buffer: no allocation for ordinary keys. */
    char *key = buf && need <= cap ? buf : acache__malloc(need);
    if (!key) {
        *status = acache__oom();
        return NULL;
    }
    char *p = key;
    memcpy(p, ACACHE_AFFINITY_PREFIX, plen);
    p += plen;
    memcpy(p, affinity_key, a);
    p += a;
    *p++ = ':';
    memcpy(p, api_format, f);
    p += f;
    *p++ = ':';
    memcpy(p, model_name, m + 1);
    *status = ACACHE_OK;
    return key;
}

int acache__split_storage_key(const char *key, size_t key_len, const char **ak,
                              size_t *ak_len, const char **fmt, size_t *fmt_len,
                              const char **model, size_t *model_len)
{
    size_t plen = sizeof ACACHE_AFFINITY_PREFIX - 1;
    if (key_len < plen || memcmp(key, ACACHE_AFFINITY_PREFIX, plen) != 0)
        return -1;
    const char *p = key + plen, *end = key + key_len;
    const char *c1 = memchr(p, ':', (size_t)(end - p));
    if (!c1)
        return -1;
    const char *c2 = memchr(c1 + 1, ':', (size_t)(end - c1 - 1));
    if (!c2)
        return -1;
    *ak = p;
    *ak_len = (size_t)(c1 - p);
    *fmt = c1 + 1;
    *fmt_len = (size_t)(c2 - c1 - 1);
    /* The model name is everything after the 3rd colon: it may hold ':'. */
    *model = c2 + 1;
    *model_len = (size_t)(end - c2 - 1);
    return 0;
}
