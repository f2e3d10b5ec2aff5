/* Every vector of testdata/fernet and testdata/aether-crypto, each asserted,
 * with the number of cases run checked against the file and the README. */
#include "crypto_test.h"

/* ---- testdata/fernet: the Fernet spec's own vectors ---- */

Test(crypto_fernet, generate_vectors)
{
    json_t *arr = ct_load("fernet/generate.json");
    size_t i, run = 0;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        unsigned char key[32], iv[16];
        ct_fernet_key(key, ct_str(v, "secret"));
        json_t *ivs = ct_get(v, "iv");
        cr_assert_eq(json_array_size(ivs), 16);
        for (size_t j = 0; j < 16; j++)
            iv[j] = (unsigned char)json_number_value(json_array_get(ivs, j));
        uint64_t now = ct_rfc3339(ct_str(v, "now"));
        const char *src = ct_str(v, "src");

        char *token = NULL;
        cr_assert_eq(acache__fernet_encrypt(key, (const unsigned char *)src, strlen(src),
                                            now, iv, &token),
                     ACACHE_OK);
        cr_expect_str_eq(token, ct_str(v, "token"), "generate case %zu", i);

        unsigned char *plain = NULL;
        size_t n = 0;
        cr_assert_eq(acache__fernet_decrypt(key, token, strlen(token), &plain, &n),
                     ACACHE_OK);
        cr_expect_eq(n, strlen(src));
        cr_expect_eq(memcmp(plain, src, n), 0);
        acache__secret_free(plain, n);
        free(token);
        run++;
    }
    cr_expect_eq(run, json_array_size(arr));
    cr_expect_eq(run, 1);
    json_decref(arr);
}

Test(crypto_fernet, verify_vectors)
{
    json_t *arr = ct_load("fernet/verify.json");
    size_t i, run = 0;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        unsigned char key[32];
        ct_fernet_key(key, ct_str(v, "secret"));
        const char *token = ct_str(v, "token"), *src = ct_str(v, "src");
        uint64_t now = ct_rfc3339(ct_str(v, "now"));
        uint64_t ttl = (uint64_t)ct_num(v, "ttl_sec");

        unsigned char *plain = NULL;
        size_t n = 0;
        cr_assert_eq(
            acache__fernet_decrypt_ttl(key, token, strlen(token), now, ttl, &plain, &n),
            ACACHE_OK, "verify case %zu: %s", i, acache_last_error());
        cr_expect_eq(n, strlen(src));
        cr_expect_eq(memcmp(plain, src, n), 0);
        acache__secret_free(plain, n);

        /* Aether's no-TTL path accepts it too. */
        cr_assert_eq(acache__fernet_decrypt(key, token, strlen(token), &plain, &n),
                     ACACHE_OK);
        cr_expect_eq(n, strlen(src));
        acache__secret_free(plain, n);
        run++;
    }
    cr_expect_eq(run, json_array_size(arr));
    cr_expect_eq(run, 1);
    json_decref(arr);
}

Test(crypto_fernet, invalid_vectors)
{
    json_t *arr = ct_load("fernet/invalid.json");
    size_t i, run = 0, time_only = 0;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        unsigned char key[32];
        ct_fernet_key(key, ct_str(v, "secret"));
        const char *token = ct_str(v, "token"), *desc = ct_str(v, "desc");
        uint64_t now = ct_rfc3339(ct_str(v, "now"));
        uint64_t ttl = (uint64_t)ct_num(v, "ttl_sec");

        unsigned char *plain = NULL;
        size_t n = 0;
        cr_expect_eq(
            acache__fernet_decrypt_ttl(key, token, strlen(token), now, ttl, &plain, &n),
            ACACHE_ECRYPTO, "with TTL, \"%s\" must fail", desc);
        cr_expect_null(plain);

        /* Without a TTL (Aether), the two time-only cases decrypt to "". */
        int timing = strcmp(desc, "far-future TS (unacceptable clock skew)") == 0 ||
                     strcmp(desc, "expired TTL") == 0;
        int rc = acache__fernet_decrypt(key, token, strlen(token), &plain, &n);
        if (timing) {
            time_only++;
            cr_expect_eq(rc, ACACHE_OK, "no TTL, \"%s\": %s", desc, acache_last_error());
            cr_expect_eq(n, 0);
            acache__secret_free(plain, n);
        } else {
            cr_expect_eq(rc, ACACHE_ECRYPTO, "no TTL, \"%s\" must fail", desc);
            cr_expect_null(plain);
        }
        run++;
    }
    cr_expect_eq(run, json_array_size(arr));
    cr_expect_eq(run, 8);
    cr_expect_eq(time_only, 2);
    json_decref(arr);
}

/* ---- testdata/aether-crypto ---- */

static json_t *aether;

static void load_aether(void)
{
    aether = ct_load("aether-crypto/vectors.json");
}

static void unload_aether(void)
{
    json_decref(aether);
}

static json_t *cases(const char *list, size_t documented)
{
    json_t *arr = ct_get(aether, list);
    cr_assert(json_is_array(arr));
    cr_expect_eq(json_array_size(arr), documented, "%s: %zu cases, README says %zu", list,
                 json_array_size(arr), documented);
    return arr;
}

/* Key setup is slow (PBKDF2): one acache__crypto per distinct key string. */
#define MAX_KEYS 16
static struct {
    char *text;
    acache__crypto *k;
} keys[MAX_KEYS];

static acache__crypto *key_for(const char *text)
{
    size_t i;
    for (i = 0; i < MAX_KEYS && keys[i].text; i++)
        if (strcmp(keys[i].text, text) == 0)
            return keys[i].k;
    cr_assert_lt(i, MAX_KEYS);
    keys[i].text = strdup(text);
    cr_assert_eq(acache__crypto_new(&keys[i].k, text, strlen(text)), ACACHE_OK, "%s",
                 acache_last_error());
    return keys[i].k;
}

static void free_keys(void)
{
    for (size_t i = 0; i < MAX_KEYS; i++) {
        acache__crypto_free(keys[i].k);
        free(keys[i].text);
        keys[i].k = NULL;
        keys[i].text = NULL;
    }
    unload_aether();
}

TestSuite(crypto_aether, .init = load_aether, .fini = free_keys);

Test(crypto_aether, parameters)
{
    json_t *p = ct_get(aether, "parameters");
    cr_expect_str_eq(ct_str(aether, "format"), "aether-crypto-vectors/1");
    cr_expect_str_eq(ct_str(p, "dev_default_passphrase"), acache__dev_encryption_key());
    cr_expect_str_eq(ct_str(p, "kdf"), "PBKDF2-HMAC-SHA256");
    cr_expect_eq(ct_num(p, "kdf_iterations"), 100000);
    cr_expect_eq(ct_num(p, "kdf_length"), 32);
    cr_expect_str_eq(ct_str(p, "mask_stars"), "********");
    cr_expect_eq(ct_num(p, "default_prefix_len"), ACACHE__MASK_PREFIX);
    cr_expect_eq(ct_num(p, "default_suffix_len"), ACACHE__MASK_SUFFIX);
    cr_expect(json_is_null(ct_get(p, "ttl")));

    unsigned char h[32], want[16];
    crypto_hash_sha256(h, (const unsigned char *)"aether-v1", 9);
    ct_hex(want, 16, ct_str(p, "kdf_salt_hex"));
    cr_expect_eq(memcmp(h, want, 16), 0);
}

Test(crypto_aether, derivation, .timeout = 60)
{
    json_t *arr = cases("derivation", 12);
    size_t i, run = 0;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *id = ct_str(v, "id");
        const char *pass = ct_str(v, "passphrase");
        acache__crypto *k = key_for(pass);
        unsigned char got[32], want[32];
        int direct = -1;
        acache__crypto_key_export(k, got, &direct);
        ct_hex(want, 16, ct_str(v, "signing_key_hex"));
        ct_hex(want + 16, 16, ct_str(v, "encryption_key_hex"));
        cr_expect_eq(memcmp(got, want, 32), 0, "%s: key bytes differ", id);
        cr_expect_eq(direct, json_is_true(ct_get(v, "used_directly")),
                     "%s: used_directly", id);
        if (direct) {
            cr_expect_str_eq(ct_str(v, "fernet_key"), pass, "%s", id);
        } else {
            char *text = acache__b64url_encode(got, 32);
            cr_expect_str_eq(text, ct_str(v, "fernet_key"), "%s", id);
            free(text);
        }
        run++;
    }
    cr_expect_eq(run, json_array_size(arr));
}

/* decrypt(stored) must equal `want` (a JSON string that may hold NUL). */
static void expect_plain(acache__crypto *k, const char *id, const char *stored,
                         json_t *want)
{
    char *plain = NULL;
    size_t n = 0;
    int rc = acache__crypto_decrypt(k, stored, strlen(stored), &plain, &n);
    cr_expect_eq(rc, ACACHE_OK, "%s: %s", id, acache_last_error());
    if (rc != ACACHE_OK)
        return;
    cr_expect_eq(n, json_string_length(want), "%s: plaintext length", id);
    cr_expect(n == json_string_length(want) &&
                  memcmp(plain, json_string_value(want), n) == 0,
              "%s: plaintext differs", id);
    cr_expect_eq(plain[n], '\0');
    acache__secret_free(plain, n);
}

/* decrypt_and_mask(stored): `want` a string, or JSON null for the null mask. */
static void expect_mask(acache__crypto *k, const char *id, const char *stored,
                        json_t *want, int raises)
{
    acache_buf out = ACACHE_BUF_INIT;
    int rc = acache__crypto_decrypt_and_mask(k, stored, &out);
    if (json_is_null(want)) {
        cr_expect_neq(rc, ACACHE_OK, "%s: mask must be null", id);
        cr_expect_eq(rc, raises ? ACACHE_ECRYPTO : ACACHE_ENOTFOUND, "%s: rc %d", id, rc);
        cr_expect_null(out.ptr, "%s: out written on failure", id);
    } else {
        cr_expect_eq(rc, ACACHE_OK, "%s: %s", id, acache_last_error());
        cr_expect_eq(out.size, json_string_length(want), "%s: mask length", id);
        cr_expect(out.size == json_string_length(want) &&
                      memcmp(out.ptr, json_string_value(want), out.size) == 0,
                  "%s: mask \"%s\", want \"%s\"", id, out.ptr ? out.ptr : "(null)",
                  json_string_value(want));
    }
    acache_buf_dispose(&out);
}

Test(crypto_aether, decrypt, .timeout = 60)
{
    json_t *arr = cases("decrypt", 26);
    size_t i, run = 0;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *id = ct_str(v, "id");
        acache__crypto *k = key_for(ct_str(v, "encryption_key"));
        unsigned char key[32], fk[32];
        acache__crypto_key_export(k, key, NULL);
        ct_fernet_key(fk, ct_str(v, "fernet_key"));
        cr_expect_eq(memcmp(key, fk, 32), 0, "%s: key setup", id);

        const char *stored = ct_str(v, "stored"), *token = ct_str(v, "fernet_token");
        json_t *want = ct_get(v, "plaintext");
        expect_plain(k, id, stored, want);
        expect_mask(k, id, stored, ct_get(v, "masked"), 0);
        cr_expect_eq(ct_num(v, "plaintext_utf8_bytes"), (double)json_string_length(want),
                     "%s", id);
        cr_expect_eq(
            ct_num(v, "plaintext_codepoints"),
            (double)ct_codepoints(json_string_value(want), json_string_length(want)),
            "%s", id);

        /* The inner layer alone. */
        unsigned char *p = NULL;
        size_t n = 0;
        cr_expect_eq(acache__fernet_decrypt(key, token, strlen(token), &p, &n), ACACHE_OK,
                     "%s", id);
        cr_expect(n == json_string_length(want) &&
                      memcmp(p, json_string_value(want), n) == 0,
                  "%s: inner layer", id);
        acache__secret_free(p, n);

        /* Encrypting with the same timestamp and IV reproduces both layers.
         * The exact timestamp comes from the token (2^64-1 is not exact as a
         * JSON real); it must agree with the vector's field. */
        unsigned char *raw = NULL;
        size_t raw_len = 0;
        const char *why = NULL;
        cr_assert_eq(
            acache__b64_decode_lenient(&raw, &raw_len, token, strlen(token), &why),
            ACACHE_OK);
        cr_assert_gt(raw_len, 25);
        uint64_t ts = 0;
        for (int b = 1; b <= 8; b++)
            ts = (ts << 8) | raw[b];
        free(raw);
        cr_expect_eq((double)ts, ct_num(v, "timestamp"), "%s: timestamp", id);
        unsigned char iv[16];
        ct_hex(iv, 16, ct_str(v, "iv_hex"));
        char *again = NULL;
        cr_assert_eq(acache__crypto_encrypt(k, json_string_value(want),
                                            json_string_length(want), ts, iv, &again),
                     ACACHE_OK);
        cr_expect_str_eq(again, stored, "%s: re-encryption", id);
        free(again);
        char *tok = NULL;
        cr_assert_eq(
            acache__fernet_encrypt(key, (const unsigned char *)json_string_value(want),
                                   json_string_length(want), ts, iv, &tok),
            ACACHE_OK);
        cr_expect_str_eq(tok, token, "%s: inner token", id);
        free(tok);
        run++;
    }
    cr_expect_eq(run, json_array_size(arr));
}

/* invalid and lenient_decoding share one shape. */
static size_t run_outcome_cases(json_t *arr)
{
    size_t i, run = 0;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *id = ct_str(v, "id");
        acache__crypto *k = key_for(ct_str(v, "encryption_key"));
        const char *stored = ct_str(v, "stored");
        int raises = json_is_true(ct_get(v, "decrypt_raises"));
        if (raises) {
            char *plain = NULL;
            size_t n = 0;
            cr_expect_eq(acache__crypto_decrypt(k, stored, strlen(stored), &plain, &n),
                         ACACHE_ECRYPTO, "%s: must not decrypt", id);
            cr_expect_null(plain, "%s", id);
            cr_expect_neq(acache_last_error()[0], '\0', "%s: no reason given", id);
        } else {
            expect_plain(k, id, stored, ct_get(v, "decrypt_returns"));
        }
        expect_mask(k, id, stored, ct_get(v, "masked"), raises);
        run++;
    }
    return run;
}

Test(crypto_aether, invalid, .timeout = 60)
{
    json_t *arr = cases("invalid", 32);
    cr_expect_eq(run_outcome_cases(arr), json_array_size(arr));
}

Test(crypto_aether, lenient_decoding, .timeout = 60)
{
    json_t *arr = cases("lenient_decoding", 13);
    cr_expect_eq(run_outcome_cases(arr), json_array_size(arr));
}

Test(crypto_aether, mask)
{
    json_t *arr = cases("mask", 34);
    size_t i, run = 0;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        json_t *in = ct_get(v, "input"), *want = ct_get(v, "output");
        unsigned prefix = (unsigned)ct_num(v, "prefix_len");
        unsigned suffix = (unsigned)ct_num(v, "suffix_len");
        acache_buf out = ACACHE_BUF_INIT;
        int rc = acache_mask_key(&out, json_string_value(in), json_string_length(in),
                                 prefix, suffix);
        if (json_is_null(want)) {
            cr_expect_eq(rc, ACACHE_ENOTFOUND, "case %zu: mask must be null", i);
            cr_expect_null(out.ptr);
        } else {
            cr_expect_eq(rc, ACACHE_OK, "case %zu", i);
            cr_expect(out.size == json_string_length(want) &&
                          memcmp(out.ptr, json_string_value(want), out.size) == 0,
                      "case %zu (%s, %u, %u): got \"%s\", want \"%s\"", i,
                      json_string_value(in), prefix, suffix, out.ptr ? out.ptr : "(null)",
                      json_string_value(want));
            if (suffix == 0 && json_object_get(v, "aether_output"))
                cr_expect_str_neq(out.ptr, ct_str(v, "aether_output"));
        }
        acache_buf_dispose(&out);
        run++;
    }
    cr_expect_eq(run, json_array_size(arr));
}

/* The per-call public entry point. It runs PBKDF2 on every call (~0.1 s), so
 * it gets the first case of each list under each distinct key; the rest are
 * covered through the handle-level function above. */
Test(crypto_aether, decrypt_and_mask_with_key, .timeout = 60)
{
    const char *lists[] = {"decrypt", "lenient_decoding", "invalid"};
    size_t run = 0, ok = 0;
    for (size_t l = 0; l < 3; l++) {
        json_t *arr = ct_get(aether, lists[l]);
        const char *seen[MAX_KEYS] = {0};
        size_t nseen = 0, i;
        json_t *v;
        json_array_foreach(arr, i, v)
        {
            const char *id = ct_str(v, "id"), *stored = ct_str(v, "stored");
            const char *key = ct_str(v, "encryption_key");
            size_t j;
            for (j = 0; j < nseen && strcmp(seen[j], key) != 0; j++)
                ;
            if (j < nseen)
                continue;
            cr_assert_lt(nseen, MAX_KEYS);
            seen[nseen++] = key;

            json_t *want = ct_get(v, "masked");
            acache_buf out = ACACHE_BUF_INIT;
            int rc = acache_decrypt_and_mask_with_key(&out, key, stored);
            if (json_is_null(want)) {
                cr_expect_neq(rc, ACACHE_OK, "%s", id);
                cr_expect_null(out.ptr, "%s", id);
            } else {
                cr_expect_eq(rc, ACACHE_OK, "%s: %s", id, acache_last_error());
                cr_expect(out.size == json_string_length(want) &&
                              memcmp(out.ptr, json_string_value(want), out.size) == 0,
                          "%s", id);
                ok++;
            }
            acache_buf_dispose(&out);
            run++;
        }
    }
    /* Four keys in decrypt (dev, two passphrases, a Fernet key), one in
     * lenient_decoding, and at least two in invalid. */
    cr_expect_geq(run, 7);
    cr_expect_geq(ok, 5);
}
