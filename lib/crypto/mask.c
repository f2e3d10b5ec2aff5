/* Aether's key masking, counted in code points as Python slices strings. */
#include <string.h>

#include "../util/util.h"
#include "crypto.h"

#define STARS "********"
#define STARS_LEN 8
/* What an invalid byte is shown as: output stays valid UTF-8 for JSON, and
 * no raw byte of a malformed (possibly binary) secret is copied out. */
#define REPLACEMENT "\xef\xbf\xbd"
#define REPLACEMENT_LEN 3

size_t acache__utf8_strict_seq_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned char b0 = s[0];
    if (b0 < 0x80)
        return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (b0 >= 0xc2 && b0 <= 0xdf) {
        need = 2;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
        need = 3;
        if (b0 == 0xe0)
            lo = 0xa0; /* overlong */
        else if (b0 == 0xed)
            hi = 0x9f; /* UTF-16 surrogates */
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
        need = 4;
        if (b0 == 0xf0)
            lo = 0x90; /* overlong */
        else if (b0 == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (n < need || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < need; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return need;
}

int acache__utf8_strict_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t l = acache__utf8_strict_seq_len(s + i, n - i);
        if (l == 0)
            return 0;
        i += l;
    }
    return 1;
}

/* Walk the characters of key, copying those with index < keep_head or
 * >= skip_to (and the stars after the head) into dst; with dst NULL only
 * count. Returns the output size in bytes. */
static size_t emit(char *dst, const unsigned char *key, size_t len, size_t keep_head,
                   size_t skip_to)
{
    size_t o = 0, idx = 0, i = 0;
    int starred = 0;
    while (i < len) {
        if (idx >= keep_head && !starred) {
            if (dst)
                memcpy(dst + o, STARS, STARS_LEN);
            o += STARS_LEN;
            starred = 1;
        }
        size_t l = acache__utf8_strict_seq_len(key + i, len - i);
        if (idx < keep_head || idx >= skip_to) {
            if (l == 0) {
                if (dst)
                    memcpy(dst + o, REPLACEMENT, REPLACEMENT_LEN);
                o += REPLACEMENT_LEN;
            } else {
                if (dst)
                    memcpy(dst + o, key + i, l);
                o += l;
            }
        }
        i += l ? l : 1;
        idx++;
    }
    if (!starred) {
        if (dst)
            memcpy(dst + o, STARS, STARS_LEN);
        o += STARS_LEN;
    }
    return o;
}

int acache__mask(acache_buf *out, const char *key, size_t len, unsigned int prefix_len,
                 unsigned int suffix_len)
{
    if (!key || len == 0)
        return ACACHE_ENOTFOUND;
    const unsigned char *k = (const unsigned char *)key;

    size_t chars = 0;
    for (size_t i = 0; i < len; chars++) {
        size_t l = acache__utf8_strict_seq_len(k + i, len - i);
        i += l ? l : 1;
    }
    size_t prefix = prefix_len, suffix = suffix_len;
    size_t keep_head, skip_to;
    if (chars <= prefix || chars - prefix <= suffix) {
        /* Short key: the head only (all of it when shorter than prefix). */
        keep_head = prefix;
        skip_to = SIZE_MAX;
    } else {
        /* Suffix 0 shows nothing after the stars (Aether's s[-0:] leaks the
         * whole key there; we do not copy that). */
        keep_head = prefix;
        skip_to = suffix ? chars - suffix : SIZE_MAX;
    }

    size_t n = emit(NULL, k, len, keep_head, skip_to);
    char *buf = acache__malloc(n + 1);
    if (!buf)
        return acache__oom();
    emit(buf, k, len, keep_head, skip_to);
    buf[n] = '\0';
    acache__buf_take(out, buf, n);
    return ACACHE_OK;
}
