/* Python-compatible base64url decoding. Aether decodes both layers of a stored
 * key (and the ENCRYPTION_KEY string) with base64.urlsafe_b64decode, whose
 * non-strict decoder skips junk, stops at a complete padding and ignores
 * unused bits. libsodium's decoder is strict about all three, so the input is
 * first reduced to the characters Python would actually use (state machine in
 * testdata/aether-crypto/README.md), then handed to sodium_base642bin. */
#include <string.h>

#include <sodium.h>

#include "../util/util.h"
#include "crypto.h"

static const char URL_ALPHABET[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* urlsafe_b64decode maps '-'/'_' onto '+'/'/', so both alphabets count; the
 * result is canonicalised to the URL-safe one for libsodium. -1: not base64. */
static int alphabet_index(unsigned char ch)
{
    if (ch == '+')
        ch = '-';
    else if (ch == '/')
        ch = '_';
    const char *p = memchr(URL_ALPHABET, ch, sizeof URL_ALPHABET);
    return p ? (int)(p - URL_ALPHABET) : -1;
}

int acache__b64_decode_lenient(unsigned char **out, size_t *out_len, const char *in,
                               size_t len, const char **why)
{
    *out = NULL;
    *out_len = 0;
    *why = NULL;
    if (len > SIZE_MAX / 2) {
        *why = "input too large";
        return ACACHE_ECRYPTO;
    }

    char *clean = acache__malloc(len + 1);
    if (!clean)
        return acache__oom();

    size_t n = 0;
    unsigned pos = 0, pads = 0;
    int last = -1, stopped = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '=') {
            /* Only '=' after 2 or 3 characters of a quad counts as padding;
             * once the quad is complete nothing after it is read. */
            if (pos >= 2 && pos + ++pads >= 4) {
                stopped = 1;
                break;
            }
            continue;
        }
        int v = alphabet_index(ch);
        if (v < 0)
            continue;
        pads = 0;
        clean[n++] = URL_ALPHABET[v];
        last = v;
        pos = (pos + 1) & 3;
    }

    int rc = ACACHE_OK;
    if (!stopped && pos == 1) {
        *why = "1 more than a multiple of 4 base64 characters";
        rc = ACACHE_ECRYPTO;
    } else if (!stopped && pos != 0) {
        *why = "incorrect base64 padding";
        rc = ACACHE_ECRYPTO;
    }
    if (rc == ACACHE_OK && pos != 0) {
        /* Python drops the unused low bits of the last character; libsodium
         * rejects them unless zero, so clear them. */
        unsigned unused = pos == 2 ? 0x0f : 0x03;
        clean[n - 1] = URL_ALPHABET[(unsigned)last & ~unused];
    }

    unsigned char *bin = NULL;
    size_t bin_len = 0;
    if (rc == ACACHE_OK) {
        size_t cap = n / 4 * 3 + 3;
        bin = acache__malloc(cap);
        if (!bin) {
            rc = acache__oom();
        } else if (n > 0 &&
                   sodium_base642bin(bin, cap, clean, n, NULL, &bin_len, NULL,
                                     sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
            /* Unreachable after the filter above; kept as a guard. */
            *why = "base64 decoding failed";
            rc = ACACHE_ECRYPTO;
        }
    }
    /* The input may be an ENCRYPTION_KEY: do not leave a copy behind. */
    sodium_memzero(clean, len + 1);
    free(clean);
    if (rc != ACACHE_OK) {
        acache__secret_free(bin, bin ? n / 4 * 3 + 3 : 0);
        return rc;
    }
    *out = bin;
    *out_len = bin_len;
    return ACACHE_OK;
}

char *acache__b64url_encode(const unsigned char *bin, size_t len)
{
    const int variant = sodium_base64_VARIANT_URLSAFE;
    if (len > (SIZE_MAX - 4) / 4 * 3 - 3) {
        acache__oom();
        return NULL;
    }
    size_t cap = sodium_base64_ENCODED_LEN(len, variant);
    char *s = acache__malloc(cap);
    if (!s) {
        acache__oom();
        return NULL;
    }
    sodium_bin2base64(s, cap, bin, len, variant);
    return s;
}
