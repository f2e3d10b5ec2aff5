/* Helpers shared by the crypto unit tests (vectors read at run time). */
#ifndef ACACHE_TEST_CRYPTO_TEST_H
#define ACACHE_TEST_CRYPTO_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <sodium.h>

#include "aether_cache/aether_cache.h"
#include "crypto/crypto.h"
#include "util/util.h"

/* NULs are allowed in the vectors' strings; the one 2^64-1 timestamp does not
 * fit jansson's integers, so integers load as reals (the tests take exact
 * timestamps from the tokens themselves). */
static inline json_t *ct_load(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/testdata/%s", ACACHE_SHARED_DIR, rel);
    json_error_t err;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
    cr_assert_not_null(j, "%s: %s (line %d)", path, err.text, err.line);
    return j;
}

static inline json_t *ct_get(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert_not_null(v, "vector lacks \"%s\"", key);
    return v;
}

static inline const char *ct_str(json_t *o, const char *key)
{
    json_t *v = ct_get(o, key);
    cr_assert(json_is_string(v), "\"%s\" is not a string", key);
    return json_string_value(v);
}

static inline size_t ct_strlen(json_t *o, const char *key)
{
    return json_string_length(ct_get(o, key));
}

static inline double ct_num(json_t *o, const char *key)
{
    json_t *v = ct_get(o, key);
    cr_assert(json_is_number(v), "\"%s\" is not a number", key);
    return json_number_value(v);
}

static inline void ct_hex(unsigned char *out, size_t n, const char *hex)
{
    size_t got = 0;
    cr_assert_eq(sodium_hex2bin(out, n, hex, strlen(hex), NULL, &got, NULL), 0, "hex %s",
                 hex);
    cr_assert_eq(got, n, "hex %s: %zu bytes, want %zu", hex, got, n);
}

/* RFC 3339 with a numeric offset, e.g. 1985-10-26T01:20:00-07:00. */
static inline uint64_t ct_rfc3339(const char *s)
{
    int y, mo, d, h, mi, se, oh, om;
    char sign;
    cr_assert_eq(
        sscanf(s, "%d-%d-%dT%d:%d:%d%c%d:%d", &y, &mo, &d, &h, &mi, &se, &sign, &oh, &om),
        9, "time %s", s);
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    long off = (oh * 3600L + om * 60L) * (sign == '-' ? -1 : 1);
    return (uint64_t)((long long)timegm(&tm) - off);
}

/* The 32 bytes of a Fernet key text, decoded the way Python does. */
static inline void ct_fernet_key(unsigned char key[32], const char *text)
{
    unsigned char *raw = NULL;
    size_t n = 0;
    const char *why = NULL;
    cr_assert_eq(acache__b64_decode_lenient(&raw, &n, text, strlen(text), &why),
                 ACACHE_OK, "key %s: %s", text, why ? why : "");
    cr_assert_eq(n, 32);
    memcpy(key, raw, 32);
    acache__secret_free(raw, n);
}

/* Count code points of valid UTF-8. */
static inline size_t ct_codepoints(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            c++;
    return c;
}

#endif
