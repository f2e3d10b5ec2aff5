/* Secrets handling beyond the vectors: wiping, truncation, malformed and huge
 * inputs, NULs, argument checks, allocation failures, the handle. */
#include <limits.h>
#include <pthread.h>

#include "crypto_test.h"

/* A Fernet key (no KDF) so each test sets up fast. */
#define KEY_TEXT "ZTM5exU11TMqw4iK0gLgeSYoG5wtLu2yHGxy4RTZrno="
#define SECRET "sk-ant-api03-THIS-IS-THE-SECRET-PART-0123456789"

static const unsigned char IV[16] = {1, 2,  3,  4,  5,  6,  7,  8,
                                     9, 10, 11, 12, 13, 14, 15, 16};

static acache__crypto *new_key(void)
{
    acache__crypto *k = NULL;
    cr_assert_eq(acache__crypto_new(&k, KEY_TEXT, strlen(KEY_TEXT)), ACACHE_OK);
    return k;
}

static char *seal(acache__crypto *k, const char *plain, size_t len)
{
    char *stored = NULL;
    cr_assert_eq(acache__crypto_encrypt(k, plain, len, 1700000000, IV, &stored),
                 ACACHE_OK);
    return stored;
}

/* An exact-size heap copy without a NUL, so ASan flags any over-read. */
static char *exact(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    cr_assert_not_null(p);
    memcpy(p, s, n);
    return p;
}

static void expect_mask(const char *key, size_t len, unsigned prefix, unsigned suffix,
                        const char *want, size_t want_len)
{
    char *in = exact(key, len);
    acache_buf out = ACACHE_BUF_INIT;
    cr_assert_eq(acache_mask_key(&out, in, len, prefix, suffix), ACACHE_OK);
    cr_expect_eq(out.size, want_len, "size %zu, want %zu (%s)", out.size, want_len,
                 out.ptr);
    cr_expect(out.size == want_len && memcmp(out.ptr, want, want_len) == 0, "got \"%s\"",
              out.ptr);
    cr_expect_eq(out.ptr[out.size], '\0');
    acache_buf_dispose(&out);
    free(in);
}
#define EXPECT_MASK(key, p, s, want)                                                     \
    expect_mask(key, sizeof key - 1, p, s, want, sizeof want - 1)

/* ---- wiping ---- */

static struct {
    size_t calls, dirty, max_len;
} wipes;

static void wipe_hook(const void *p, size_t len, void *payload)
{
    (void)payload;
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i]) {
            wipes.dirty++;
            break;
        }
    wipes.calls++;
    if (len > wipes.max_len)
        wipes.max_len = len;
}

Test(crypto_secrets, plaintext_is_wiped_before_free)
{
    acache__crypto *k = new_key();
    char *stored = seal(k, SECRET, strlen(SECRET));
    acache__secret_free_set_hook(wipe_hook, NULL);

    acache_buf out = ACACHE_BUF_INIT;
    cr_assert_eq(acache__crypto_decrypt_and_mask(k, stored, &out), ACACHE_OK);
    cr_expect_str_eq(out.ptr, "sk-ant-a********6789");
    cr_expect_geq(wipes.calls, 1);
    cr_expect_geq(wipes.max_len, strlen(SECRET), "the plaintext went through the wipe");
    cr_expect_eq(wipes.dirty, 0, "a buffer was freed unwiped");

    /* Failure paths wipe too. */
    wipes.calls = 0;
    stored[10] ^= 1;
    cr_expect_neq(acache__crypto_decrypt_and_mask(k, stored, &out), ACACHE_OK);
    cr_expect_str_eq(out.ptr, "sk-ant-a********6789", "out untouched on failure");
    cr_expect_eq(wipes.dirty, 0);

    acache__secret_free_set_hook(NULL, NULL);
    acache_buf_dispose(&out);
    free(stored);
    acache__crypto_free(k);
}

Test(crypto_secrets, key_parse_buffers_are_wiped)
{
    acache__secret_free_set_hook(wipe_hook, NULL);
    acache__crypto *k = new_key();
    cr_expect_geq(wipes.calls, 1);
    cr_expect_eq(wipes.dirty, 0);
    acache__secret_free_set_hook(NULL, NULL);
    acache__crypto_free(k);
}

Test(crypto_secrets, secret_free_null_is_noop)
{
    acache__secret_free(NULL, 10);
}

/* ---- truncation and malformed tokens ---- */

Test(crypto_secrets, every_truncation_of_stored_fails)
{
    acache__crypto *k = new_key();
    char *stored = seal(k, SECRET, strlen(SECRET));
    size_t len = strlen(stored);
    for (size_t n = 1; n < len; n++) {
        char *cut = exact(stored, n);
        char *plain = NULL;
        size_t pl = 0;
        cr_expect_eq(acache__crypto_decrypt(k, cut, n, &plain, &pl), ACACHE_ECRYPTO,
                     "prefix of %zu bytes decrypted", n);
        cr_expect_null(plain);
        free(cut);
    }
    /* The whole value, without a NUL after it, still decrypts. */
    char *whole = exact(stored, len);
    char *plain = NULL;
    size_t pl = 0;
    cr_expect_eq(acache__crypto_decrypt(k, whole, len, &plain, &pl), ACACHE_OK);
    cr_expect_eq(pl, strlen(SECRET));
    acache__secret_free(plain, pl);
    free(whole);
    free(stored);
    acache__crypto_free(k);
}

Test(crypto_secrets, every_truncation_of_token_fails)
{
    unsigned char key[32];
    ct_fernet_key(key, KEY_TEXT);
    char *token = NULL;
    cr_assert_eq(acache__fernet_encrypt(key, (const unsigned char *)SECRET,
                                        strlen(SECRET), 1, IV, &token),
                 ACACHE_OK);
    size_t len = strlen(token);
    for (size_t n = 0; n < len; n++) {
        char *cut = exact(token, n);
        unsigned char *plain = NULL;
        size_t pl = 0;
        cr_expect_eq(acache__fernet_decrypt(key, cut, n, &plain, &pl), ACACHE_ECRYPTO,
                     "token prefix of %zu bytes decrypted", n);
        free(cut);
    }
    free(token);
}

Test(crypto_secrets, every_single_bit_flip_fails)
{
    unsigned char key[32];
    ct_fernet_key(key, KEY_TEXT);
    char *token = NULL;
    cr_assert_eq(
        acache__fernet_encrypt(key, (const unsigned char *)"x", 1, 1, IV, &token),
        ACACHE_OK);
    unsigned char *raw = NULL;
    size_t n = 0;
    const char *why;
    cr_assert_eq(acache__b64_decode_lenient(&raw, &n, token, strlen(token), &why),
                 ACACHE_OK);
    for (size_t bit = 0; bit < n * 8; bit++) {
        raw[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        char *t = acache__b64url_encode(raw, n);
        unsigned char *plain = NULL;
        size_t pl = 0;
        cr_expect_eq(acache__fernet_decrypt(key, t, strlen(t), &plain, &pl),
                     ACACHE_ECRYPTO, "bit %zu", bit);
        free(t);
        raw[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    free(raw);
    free(token);
}

Test(crypto_secrets, errors_never_contain_the_secret)
{
    const char *pass = "my-very-secret-passphrase-XYZZY";
    acache__crypto *k = NULL, *other = NULL;
    cr_assert_eq(acache__crypto_new(&k, pass, strlen(pass)), ACACHE_OK);
    cr_assert_eq(acache__crypto_new(&other, KEY_TEXT, strlen(KEY_TEXT)), ACACHE_OK);
    /* Valid Fernet, invalid UTF-8 plaintext that still contains the secret. */
    const char bad[] = SECRET "\xff";
    char *stored = seal(k, bad, sizeof bad - 1);
    char *plain = NULL;
    size_t pl = 0;
    cr_expect_eq(acache__crypto_decrypt(k, stored, strlen(stored), &plain, &pl),
                 ACACHE_ECRYPTO);
    cr_expect_null(strstr(acache_last_error(), "SECRET"), "%s", acache_last_error());
    cr_expect_eq(acache__crypto_decrypt(other, stored, strlen(stored), &plain, &pl),
                 ACACHE_ECRYPTO);
    cr_expect_null(strstr(acache_last_error(), "XYZZY"), "%s", acache_last_error());
    cr_expect_null(strstr(acache_last_error(), KEY_TEXT));
    free(stored);
    acache__crypto_free(k);
    acache__crypto_free(other);
}

/* ---- masking edge cases ---- */

Test(crypto_secrets, mask_invalid_utf8_counts_bytes_as_replacement_chars)
{
    /* Each invalid byte is one character shown as U+FFFD. */
    EXPECT_MASK("\xff\xfe", 8, 4, "\xef\xbf\xbd\xef\xbf\xbd********");
    EXPECT_MASK("abcdefgh\xffijklm", 8, 4, "abcdefgh********jklm");
    EXPECT_MASK("abcdefghijkl\xff", 8, 4, "abcdefgh********jkl\xef\xbf\xbd");
    /* A surrogate (ED A0 80) and an overlong NUL (C0 80) are 3 and 2 chars. */
    EXPECT_MASK("\xed\xa0\x80z", 2, 0, "\xef\xbf\xbd\xef\xbf\xbd********");
    EXPECT_MASK("\xc0\x80", 1, 1, "\xef\xbf\xbd********");
    /* Truncated sequences at the very end of an exact-size buffer. */
    EXPECT_MASK("0123456789abcd\xe2\x82", 2, 2, "01********\xef\xbf\xbd\xef\xbf\xbd");
    EXPECT_MASK("0123456789abcd\xf0\x9f\x94", 2, 1, "01********\xef\xbf\xbd");
    /* A lone continuation byte, and a valid 4-byte char kept whole. */
    EXPECT_MASK("\x80"
                "abc\xf0\x9f\x94\x91",
                1, 1, "\xef\xbf\xbd********\xf0\x9f\x94\x91");
    EXPECT_MASK("\xf4\x90\x80\x80", 8, 4,
                "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd********");
}

Test(crypto_secrets, mask_nul_bytes_use_the_length)
{
    EXPECT_MASK("sk-nul\0inside-0123", 8, 4, "sk-nul\0i********0123");
    EXPECT_MASK("\0", 8, 4, "\0********");
    EXPECT_MASK("\0\0\0\0\0\0\0\0\0\0\0\0\0", 1, 1, "\0********\0");
}

Test(crypto_secrets, mask_suffix_zero_and_extremes)
{
    EXPECT_MASK("sk-1234567890abcdef", 6, 0, "sk-123********");
    EXPECT_MASK("sk-1234567890abcdef", 0, 0, "********");
    EXPECT_MASK("sk-1234567890abcdef", UINT_MAX, 0, "sk-1234567890abcdef********");
    EXPECT_MASK("sk-1234567890abcdef", UINT_MAX, UINT_MAX, "sk-1234567890abcdef********");
    EXPECT_MASK("sk-1234567890abcdef", 0, UINT_MAX, "********");
    EXPECT_MASK("sk-1234567890abcdef", 2, 16, "sk********1234567890abcdef");
    EXPECT_MASK("sk-1234567890abcdef", 2, 17, "sk********");
    EXPECT_MASK("sk-1234567890abcdef", 2, 15, "sk********234567890abcdef");
}

Test(crypto_secrets, mask_null_and_empty)
{
    acache_buf out = ACACHE_BUF_INIT;
    cr_assert_eq(acache__buf_set(&out, "keep", 4), ACACHE_OK);
    cr_expect_eq(acache_mask_key(&out, NULL, 5, 8, 4), ACACHE_ENOTFOUND);
    cr_expect_eq(acache_mask_key(&out, "abc", 0, 8, 4), ACACHE_ENOTFOUND);
    cr_expect_str_eq(out.ptr, "keep", "out untouched");
    cr_expect_eq(acache_mask_key(NULL, "abc", 3, 8, 4), ACACHE_EINVALID);
    /* A filled buffer is reused. */
    cr_expect_eq(acache_mask_key(&out, "abc", 3, 8, 4), ACACHE_OK);
    cr_expect_str_eq(out.ptr, "abc********");
    acache_buf_dispose(&out);
}

/* ---- huge and odd inputs ---- */

Test(crypto_secrets, huge_mask)
{
    size_t n = 8u << 20;
    char *big = malloc(n);
    cr_assert_not_null(big);
    for (size_t i = 0; i < n; i += 4)
        memcpy(big + i, "\xf0\x9f\x94\x91", 4); /* 2M emoji */
    acache_buf out = ACACHE_BUF_INIT;
    cr_assert_eq(acache_mask_key(&out, big, n, 8, 4), ACACHE_OK);
    cr_expect_eq(out.size, 12 * 4 + 8);
    big[n - 1] = 'x'; /* last char now 3 invalid bytes then 'x' */
    cr_assert_eq(acache_mask_key(&out, big, n, 0, 2), ACACHE_OK);
    cr_expect_eq(out.size, 8 + 3 + 1);
    acache_buf_dispose(&out);
    free(big);
}

Test(crypto_secrets, huge_roundtrip_and_junk)
{
    acache__crypto *k = new_key();
    size_t n = 1u << 20;
    char *big = malloc(n);
    cr_assert_not_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[100] = '\0';
    char *stored = seal(k, big, n);
    char *plain = NULL;
    size_t pl = 0;
    cr_assert_eq(acache__crypto_decrypt(k, stored, strlen(stored), &plain, &pl),
                 ACACHE_OK);
    cr_expect_eq(pl, n);
    cr_expect_eq(memcmp(plain, big, n), 0);
    acache__secret_free(plain, pl);
    free(stored);

    /* Megabytes of junk: rejected, no crash. */
    memset(big, '%', n);
    cr_expect_eq(acache__crypto_decrypt(k, big, n, &plain, &pl), ACACHE_ECRYPTO);
    memset(big, 'A', n);
    cr_expect_eq(acache__crypto_decrypt(k, big, n, &plain, &pl), ACACHE_ECRYPTO);
    free(big);
    acache__crypto_free(k);
}

Test(crypto_secrets, roundtrip_lengths_around_blocks)
{
    acache__crypto *k = new_key();
    char buf[70];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)('A' + i % 26);
    for (size_t n = 0; n <= sizeof buf; n++) {
        char *stored = seal(k, buf, n);
        char *plain = NULL;
        size_t pl = 0;
        cr_expect_eq(acache__crypto_decrypt(k, stored, strlen(stored), &plain, &pl),
                     ACACHE_OK, "%zu", n);
        cr_expect_eq(pl, n);
        cr_expect_eq(memcmp(plain, buf, n), 0);
        acache__secret_free(plain, pl);
        free(stored);
    }
    acache__crypto_free(k);
}

Test(crypto_secrets, lenient_decoder_states)
{
    struct {
        const char *in;
        int ok;
        const char *out;
    } t[] = {
        {"", 1, ""},
        {"%%%", 1, ""},
        {"QQ==", 1, "A"},
        {"QQ=", 0, NULL},
        {"QQ", 0, NULL},
        {"Q", 0, NULL},
        {"QUI=", 1, "AB"},
        {"QUJD", 1, "ABC"},
        {"QR==", 1, "A"},
        {"=Q=Q==", 1, "A"},
        {"QQ=\n=junk", 1, "A"},
        {"Q Q = =", 1, "A"},
        {"QUJD====", 1, "ABC"},
        {"-_-_", 1, "\xfb\xff\xbf"},
        {"+/+/", 1, "\xfb\xff\xbf"},
        {"QQ=a=", 1, "A\x06"},
        {"QUJDQ", 0, NULL},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        unsigned char *out = NULL;
        size_t n = 0;
        const char *why = NULL;
        char *in = exact(t[i].in, strlen(t[i].in));
        int rc = acache__b64_decode_lenient(&out, &n, in, strlen(t[i].in), &why);
        free(in);
        if (!t[i].ok) {
            cr_expect_eq(rc, ACACHE_ECRYPTO, "\"%s\" accepted", t[i].in);
            cr_expect_not_null(why);
            continue;
        }
        cr_expect_eq(rc, ACACHE_OK, "\"%s\": %s", t[i].in, why ? why : "");
        cr_expect(n == strlen(t[i].out) && memcmp(out, t[i].out, n) == 0, "\"%s\"",
                  t[i].in);
        free(out);
    }
}

/* ---- key setup and public entry points ---- */

Test(crypto_secrets, key_setup_arguments)
{
    acache__crypto *k = (acache__crypto *)1;
    cr_expect_eq(acache__crypto_new(&k, "", 0), ACACHE_ECRYPTO);
    cr_expect_null(k);
    cr_expect_eq(acache__crypto_new(&k, NULL, 3), ACACHE_ECRYPTO);
    acache__crypto_free(NULL);

    /* Only `len` bytes are read: an exact-size buffer with no NUL. */
    char *key = exact(KEY_TEXT, strlen(KEY_TEXT));
    cr_assert_eq(acache__crypto_new(&k, key, strlen(KEY_TEXT)), ACACHE_OK);
    int direct = 0;
    unsigned char bytes[32];
    acache__crypto_key_export(k, bytes, &direct);
    cr_expect_eq(direct, 1);
    acache__crypto_free(k);
    free(key);

    char *plain = NULL;
    size_t pl = 1;
    cr_expect_eq(acache__crypto_decrypt(NULL, "abcd", 4, &plain, &pl), ACACHE_ECRYPTO);
    /* Empty stored value: "" as Aether returns it. */
    k = new_key();
    cr_expect_eq(acache__crypto_decrypt(k, "", 0, &plain, &pl), ACACHE_OK);
    cr_expect_eq(pl, 0);
    cr_expect_str_eq(plain, "");
    acache__secret_free(plain, pl);
    acache__crypto_free(k);
}

Test(crypto_secrets, public_with_key_arguments)
{
    acache_buf out = ACACHE_BUF_INIT;
    cr_expect_eq(acache_decrypt_and_mask_with_key(NULL, KEY_TEXT, "x"), ACACHE_EINVALID);
    cr_expect_eq(acache_decrypt_and_mask_with_key(&out, NULL, "x"), ACACHE_EINVALID);
    cr_expect_eq(acache_decrypt_and_mask_with_key(&out, "", "QUJD"), ACACHE_ECRYPTO);
    cr_expect_eq(acache_decrypt_and_mask_with_key(&out, KEY_TEXT, NULL),
                 ACACHE_ENOTFOUND);
    cr_expect_eq(acache_decrypt_and_mask_with_key(&out, KEY_TEXT, ""), ACACHE_ENOTFOUND);
    cr_expect_eq(acache_decrypt_and_mask_with_key(&out, KEY_TEXT, "not a token"),
                 ACACHE_ECRYPTO);
    cr_expect_null(out.ptr);

    acache__crypto *k = new_key();
    char *stored = seal(k, SECRET, strlen(SECRET));
    acache__crypto_free(k);
    cr_expect_eq(acache_decrypt_and_mask_with_key(&out, KEY_TEXT, stored), ACACHE_OK);
    cr_expect_str_eq(out.ptr, "sk-ant-a********6789");
    free(stored);
    acache_buf_dispose(&out);
    cr_expect_eq(acache_decrypt_and_mask(&out, NULL, "x"), ACACHE_EINVALID);
}

Test(crypto_secrets, handle_uses_its_key)
{
    acache__crypto *k = new_key();
    char *stored = seal(k, SECRET, strlen(SECRET));
    acache__crypto_free(k);

    acache_options o = ACACHE_OPTIONS_INIT;
    o.encryption_key = KEY_TEXT;
    acache *c = NULL;
    cr_assert_eq(acache_open(&c, &o), ACACHE_OK, "%s", acache_last_error());
    acache_buf out = ACACHE_BUF_INIT;
    cr_expect_eq(acache_decrypt_and_mask(&out, c, stored), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_str_eq(out.ptr, "sk-ant-a********6789");
    cr_expect_eq(acache_decrypt_and_mask(&out, c, ""), ACACHE_ENOTFOUND);
    cr_expect_eq(acache_decrypt_and_mask(&out, c, NULL), ACACHE_ENOTFOUND);
    cr_expect_eq(acache_decrypt_and_mask(&out, c, "Z0E9PQ=="), ACACHE_ECRYPTO);
    cr_expect_str_eq(out.ptr, "sk-ant-a********6789", "untouched on failure");
    acache_close(c);

    /* No key configured: every stored value is ECRYPTO, never a crash. */
    acache_options plain = ACACHE_OPTIONS_INIT;
    cr_assert_eq(acache_open(&c, &plain), ACACHE_OK, "%s", acache_last_error());
    cr_expect_eq(acache_decrypt_and_mask(&out, c, stored), ACACHE_ECRYPTO);
    acache_close(c);
    acache_buf_dispose(&out);
    free(stored);
}

Test(crypto_secrets, handle_dev_key_only_when_asked, .timeout = 30)
{
    acache__crypto *k = NULL;
    const char *dev = acache__dev_encryption_key();
    cr_assert_eq(acache__crypto_new(&k, dev, strlen(dev)), ACACHE_OK);
    char *stored = seal(k, SECRET, strlen(SECRET));
    acache__crypto_free(k);

    acache_options o = ACACHE_OPTIONS_INIT;
    o.use_dev_encryption_key = 1;
    acache *c = NULL;
    cr_assert_eq(acache_open(&c, &o), ACACHE_OK, "%s", acache_last_error());
    acache_buf out = ACACHE_BUF_INIT;
    cr_expect_eq(acache_decrypt_and_mask(&out, c, stored), ACACHE_OK, "%s",
                 acache_last_error());
    cr_expect_str_eq(out.ptr, "sk-ant-a********6789");
    acache_close(c);
    acache_buf_dispose(&out);
    free(stored);
}

/* Every allocation in decrypt+mask may fail: ENOMEM, no leak (ASan), no crash. */
Test(crypto_secrets, allocation_failures)
{
    acache__crypto *k = new_key();
    char *stored = seal(k, SECRET, strlen(SECRET));
    int ok = 0;
    for (unsigned long n = 1; n < 50 && !ok; n++) {
        acache_buf out = ACACHE_BUF_INIT;
        acache__alloc_fail_at(n);
        int rc = acache__crypto_decrypt_and_mask(k, stored, &out);
        acache__alloc_fail_at(0);
        if (rc == ACACHE_OK) {
            ok = 1;
            cr_expect_str_eq(out.ptr, "sk-ant-a********6789");
        } else {
            cr_expect_eq(rc, ACACHE_ENOMEM, "failing allocation %lu gave %d", n, rc);
            cr_expect_null(out.ptr);
        }
        acache_buf_dispose(&out);
    }
    cr_expect(ok);
    for (unsigned long n = 1; n < 10; n++) {
        acache__crypto *k2 = NULL;
        acache__alloc_fail_at(n);
        int rc = acache__crypto_new(&k2, KEY_TEXT, strlen(KEY_TEXT));
        acache__alloc_fail_at(0);
        cr_expect(rc == ACACHE_OK || rc == ACACHE_ENOMEM);
        acache__crypto_free(k2);
    }
    free(stored);
    acache__crypto_free(k);
}

struct worker {
    acache__crypto *k;
    const char *stored;
    int failures;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 200; i++) {
        acache_buf out = ACACHE_BUF_INIT;
        if (acache__crypto_decrypt_and_mask(w->k, w->stored, &out) != ACACHE_OK ||
            strcmp(out.ptr, "sk-ant-a********6789") != 0)
            w->failures++;
        acache_buf_dispose(&out);
    }
    return NULL;
}

Test(crypto_secrets, concurrent_decrypts_share_a_key)
{
    acache__crypto *k = new_key();
    char *stored = seal(k, SECRET, strlen(SECRET));
    pthread_t th[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){k, stored, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(w[i].failures, 0);
    }
    free(stored);
    acache__crypto_free(k);
}
