#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

/* jansson prints reals with %.17g (0.1 -> 0.10000000000000001). Python clients
 * and golden files expect repr() form, so reals are swapped for marker strings
 * before dumping and the markers replaced by acache__fmt_double() text after.
 * A document whose own strings contain the marker byte falls back to jansson's
 * digits, which parse to the same doubles. */
#define MARK '\x01'

typedef struct {
    double *vals;
    size_t n, cap;
    int collision;
} reals;

static int has_mark(const char *s, size_t len)
{
    return memchr(s, MARK, len) != NULL;
}

/* Returns a new tree with reals replaced, or NULL on ENOMEM. */
static json_t *swap_reals(json_t *v, reals *r)
{
    switch (json_typeof(v)) {
    case JSON_REAL: {
        if (acache__grow(&r->vals, &r->cap, r->n, sizeof *r->vals))
            return NULL;
        char tag[32];
        snprintf(tag, sizeof tag, "%c%zu%c", MARK, r->n, MARK);
        r->vals[r->n++] = json_real_value(v);
        return json_string(tag);
    }
    case JSON_STRING:
        if (has_mark(json_string_value(v), json_string_length(v)))
            r->collision = 1;
        return json_incref(v);
    case JSON_OBJECT: {
        json_t *o = json_object();
        const char *k;
        json_t *child;
        if (!o)
            return NULL;
        json_object_foreach(v, k, child)
        {
            if (has_mark(k, strlen(k)))
                r->collision = 1;
            json_t *c = swap_reals(child, r);
            if (!c || json_object_set_new(o, k, c) < 0) {
                json_decref(o);
                return NULL;
            }
        }
        return o;
    }
    case JSON_ARRAY: {
        json_t *a = json_array();
        size_t i;
        json_t *child;
        if (!a)
            return NULL;
        json_array_foreach(v, i, child)
        {
            json_t *c = swap_reals(child, r);
            if (!c || json_array_append_new(a, c) < 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    default:
        return json_incref(v);
    }
}

static int dump_plain(acache_buf *out, json_t *root, size_t flags)
{
    char *s = json_dumps(root, flags);
    if (!s)
        return acache__oom();
    int rc = acache__buf_set(out, s, strlen(s));
    free(s);
    return rc;
}

int acache__json_dump(acache_buf *out, json_t *root, int indent)
{
    size_t flags = JSON_ENCODE_ANY | (indent > 0 ? JSON_INDENT(indent) : 0);
    reals r = {0};
    json_t *swapped = swap_reals(root, &r);
    if (!swapped) {
        free(r.vals);
        return acache__oom();
    }
    if (r.collision || r.n == 0) {
        json_decref(swapped);
        free(r.vals);
        return dump_plain(out, root, flags);
    }
    char *s = json_dumps(swapped, flags);
    json_decref(swapped);
    if (!s) {
        free(r.vals);
        return acache__oom();
    }
    /* Each marker is dumped as "\u0001<index>\u0001" (quotes included). */
    static const char open[] = "\"\\u0001";
    size_t len = strlen(s), cap = len + r.n * 32 + 1, o = 0;
    char *dst = acache__malloc(cap);
    if (!dst) {
        free(s);
        free(r.vals);
        return acache__oom();
    }
    for (size_t i = 0; i < len;) {
        if (strncmp(s + i, open, sizeof open - 1) == 0) {
            char *end;
            size_t idx = strtoul(s + i + sizeof open - 1, &end, 10);
            if (strncmp(end, "\\u0001\"", 7) == 0 && idx < r.n) {
                o += (size_t)acache__fmt_double(dst + o, cap - o, r.vals[idx]);
                i = (size_t)(end - s) + 7;
                continue;
            }
        }
        dst[o++] = s[i++];
    }
    dst[o] = '\0';
    free(s);
    free(r.vals);
    acache__buf_take(out, dst, o);
    return ACACHE_OK;
}

json_t *acache__json_strn(const char *s, size_t len)
{
    if (!s)
        return json_null();
    json_t *j = json_stringn(s, len);
    if (j)
        return j;
    /* Invalid UTF-8: replace each bad byte with U+FFFD rather than dropping
     * the field, so a hostile value is visible but harmless. */
    char *fixed = acache__malloc(len * 3 + 1);
    if (!fixed)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80         ? 1
                   : (c >> 5) == 6  ? 2
                   : (c >> 4) == 14 ? 3
                   : (c >> 3) == 30 ? 4
                                    : 0;
        json_t *probe = n && i + n <= len ? json_stringn(s + i, n) : NULL;
        if (probe) {
            memcpy(fixed + o, s + i, n);
            o += n;
            i += n;
            json_decref(probe);
        } else {
            memcpy(fixed + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    j = json_stringn(fixed, o);
    free(fixed);
    return j;
}

json_t *acache__json_str(const char *s)
{
    return s ? acache__json_strn(s, strlen(s)) : json_null();
}

int acache__json_set(json_t *obj, const char *key, json_t *value)
{
    if (!value)
        return -1;
    return json_object_set_new(obj, key, value);
}
