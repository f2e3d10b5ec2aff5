/* Catalog factory by URI, and the helpers both backends share. */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "../core/core.h"
#include "internal.h"
#include "postgres.h"

static int has_prefix(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

int acache__catalog_open(acache_catalog **out, const char *uri)
{
    return acache__catalog_open_ex(out, uri, 0, 0);
}

int acache__catalog_open_ex(acache_catalog **out, const char *uri,
                            uint32_t connect_timeout_ms, uint32_t command_timeout_ms)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "catalog: out is NULL");
    *out = NULL;
    if (!uri || !*uri)
        return acache_error_set(ACACHE_EINVALID, "catalog: empty URI");
    if (has_prefix(uri, "postgresql://") || has_prefix(uri, "postgres://"))
        return acache__catalog_pg_new(out, uri, connect_timeout_ms, command_timeout_ms);
    if (has_prefix(uri, "json://")) {
        const char *path = uri + strlen("json://");
        /* Only json:///abs/path: a host part (json://host/x) has no meaning. */
        if (path[0] != '/')
            return acache_error_set(ACACHE_EINVALID,
                                    "catalog: json URI needs an absolute path "
                                    "(json:///path/catalog.json)");
        return acache__catalog_json_new(out, path);
    }
    if (strstr(uri, "://"))
        return acache_error_set(ACACHE_EINVALID,
                                "catalog: unsupported URI scheme (want postgresql://, "
                                "postgres://, json:/// or a file path)");
    return acache__catalog_json_new(out, uri);
}

int64_t acache__usage_min_us(const acache_usage_filter *f)
{
    /* Far outside any timestamptz: saturate rather than overflow int64. */
    const double lim = 9.0e18;
    double s = f->since * 1e6;
    if (isnan(s) || s < -lim)
        return INT64_MIN;
    if (s > lim)
        return INT64_MAX;
    if (f->since_inclusive)
        return (int64_t)ceil(s);
    return (int64_t)floor(s) + 1;
}

int acache__utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s;
        size_t len;
        unsigned cp;
        if (c < 0x80) {
            s++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t i = 1; i < len; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
            (len == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        s += len;
    }
    return 1;
}
