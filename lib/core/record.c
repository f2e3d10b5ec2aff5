/* Affinity values as Aether writes them, and storage keys. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
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

/* ---- strict fast path ----
 * The exact bytes Python's json.dumps writes for Aether's dict, which this
 * library writes too (acache_record_render, the touch script):
 *   {"provider_id": "S", "endpoint_id": "S", "key_id": "S", "api_format": "S",
 *    "model_name": "S", "created_at": N, "expire_at": N, "request_count": I}
 * on one line, nothing after the brace. S holds printable ASCII without a
 * backslash or quote (no escape to decode, no UTF-8 to validate); N and I
 * follow JSON's number grammar (I an integer) and read back exactly as
 * jansson reads them (strtoll for integers, strtod for reals, no range
 * error). Any other byte -- an escape, another key order, a missing or extra
 * field, whitespace, a real count -- returns 0 and jansson decides. The two
 * are differentially fuzzed (tests/fuzz/fuzz_record_fast.c). */

enum { FAST_STACK = 512 };

/* A JSON number at p (< end): its length, or 0. *is_int: no fraction/exponent. */
static size_t json_number_len(const char *p, const char *end, int *is_int)
{
    const char *q = p;
    if (q < end && *q == '-')
        q++;
    if (q >= end)
        return 0;
    if (*q == '0')
        q++;
    else if (*q >= '1' && *q <= '9')
        while (q < end && *q >= '0' && *q <= '9')
            q++;
    else
        return 0;
    *is_int = 1;
    if (q < end && *q == '.') {
        *is_int = 0;
        const char *d = ++q;
        while (q < end && *q >= '0' && *q <= '9')
            q++;
        if (q == d)
            return 0;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        *is_int = 0;
        q++;
        if (q < end && (*q == '+' || *q == '-'))
            q++;
        const char *d = q;
        while (q < end && *q >= '0' && *q <= '9')
            q++;
        if (q == d)
            return 0;
    }
    return (size_t)(q - p);
}

/* Number at *pp in the NUL-safe copy (it is followed by ',' or '}', which
 * stop strtod/strtoll). 0 = not in the strict form. */
static int fast_number(char **pp, const char *end, int want_int, double *d, int64_t *i)
{
    int is_int = 0;
    size_t n = json_number_len(*pp, end, &is_int);
    if (!n || (want_int && !is_int))
        return 0;
    char *stop;
    errno = 0;
    if (is_int) {
        long long v = strtoll(*pp, &stop, 10);
        if (errno || stop != *pp + n)
            return 0; /* out of int64: jansson fails the value ("too big") */
        if (i)
            *i = (int64_t)v;
        if (d)
            *d = (double)v; /* as json_number_value() of an integer */
    } else {
        double v = strtod(*pp, &stop);
        if (errno || stop != *pp + n)
            return 0; /* range error or a locale's decimal point: jansson */
        *d = v;
    }
    *pp += n;
    return 1;
}

static int fast_lit(char **pp, const char *end, const char *lit, size_t n)
{
    if ((size_t)(end - *pp) < n || memcmp(*pp, lit, n) != 0)
        return 0;
    *pp += n;
    return 1;
}

/* A string body up to its closing quote, which becomes the NUL. */
static const char *fast_string(char **pp, const char *end)
{
    char *p = *pp, *s = p;
    for (; p < end; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"') {
            *p = '\0';
            *pp = p + 1;
            return s;
        }
        if (ch < 0x20 || ch >= 0x80 || ch == '\\')
            return NULL;
    }
    return NULL;
}

#define LIT(pp, end, text) fast_lit(pp, end, text, sizeof text - 1)

/* 1: parsed (cb called), 0: not the strict layout, -1: ENOMEM. */
static int parse_fast(const char *json, size_t len, acache_record_cb cb, void *payload)
{
    /* The shortest strict value has 141 bytes; the cheap checks first, so
     * that other inputs cost almost nothing. */
    if (len < 141 || json[0] != '{' || json[len - 1] != '}')
        return 0;
    char stack[FAST_STACK];
    char *buf = len <= sizeof stack ? stack : malloc(len);
    if (!buf)
        return -1;
    memcpy(buf, json, len);
    char *p = buf, *end = buf + len;
    acache_record rec = {0};
    int ok =
        LIT(&p, end, "{\"provider_id\": \"") &&
        (rec.provider_id = fast_string(&p, end)) &&
        LIT(&p, end, ", \"endpoint_id\": \"") &&
        (rec.endpoint_id = fast_string(&p, end)) && LIT(&p, end, ", \"key_id\": \"") &&
        (rec.key_id = fast_string(&p, end)) && LIT(&p, end, ", \"api_format\": \"") &&
        (rec.api_format = fast_string(&p, end)) && LIT(&p, end, ", \"model_name\": \"") &&
        (rec.model_name = fast_string(&p, end)) && LIT(&p, end, ", \"created_at\": ") &&
        fast_number(&p, end, 0, &rec.created_at, NULL) &&
        LIT(&p, end, ", \"expire_at\": ") &&
        fast_number(&p, end, 0, &rec.expire_at, NULL) &&
        LIT(&p, end, ", \"request_count\": ") &&
        fast_number(&p, end, 1, NULL, &rec.request_count) && p == end - 1;
    if (ok && cb)
        cb(&rec, payload);
    if (buf != stack)
        free(buf);
    return ok;
}

int acache_record_parse(const char *json, size_t len, acache_record_cb cb, void *payload)
{
    int fast = json ? parse_fast(json, len, cb, payload) : 0;
    if (fast < 0)
        return acache__oom();
    if (fast)
        return ACACHE_OK;
    return acache__record_parse_jansson(json, len, cb, payload);
}

int acache__record_parse_jansson(const char *json, size_t len, acache_record_cb cb,
                                 void *payload)
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
        return acache_error_set(
            ACACHE_EINVALID,
            "%s must not contain ':' (the storage key would be ambiguous)", name);
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
