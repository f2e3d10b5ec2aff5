/* Fernet as Aether uses it (cryptography's Fernet, no TTL), Aether's key setup
 * and its doubly base64url-encoded stored form. */
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "../util/util.h"
#include "crypto.h"

#define FERNET_VERSION 0x80
#define FERNET_HEADER 25 /* version (1) + timestamp (8) + IV (16) */
#define FERNET_MAC 32
#define FERNET_MAX_SKEW 60 /* cryptography's _MAX_CLOCK_SKEW */
#define KDF_ITERATIONS 100000
#define KDF_SALT_LEN 16

struct acache__crypto {
    unsigned char *key; /* sodium_malloc'd, read-only: signing key, then AES key */
    int used_directly;
};

/* ---- process setup, wiping ---- */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_ready;

static void sodium_setup(void)
{
    sodium_ready = sodium_init() >= 0;
}

int acache__crypto_init(void)
{
    pthread_once(&sodium_once, sodium_setup);
    return sodium_ready ? ACACHE_OK
                        : acache_error_set(ACACHE_ECRYPTO, "crypto: sodium_init failed");
}

static acache__secret_free_hook_fn free_hook;
static void *free_hook_payload;

void acache__secret_free_set_hook(acache__secret_free_hook_fn fn, void *payload)
{
    free_hook = fn;
    free_hook_payload = payload;
}

void acache__secret_free(void *p, size_t len)
{
    if (!p)
        return;
    sodium_memzero(p, len);
    if (free_hook)
        free_hook(p, len, free_hook_payload);
    free(p);
}

const char *acache__dev_encryption_key(void)
{
    return "dev-encryption-key-do-not-use-in-production";
}

/* ---- key setup ---- */

int acache__crypto_new(acache__crypto **out, const char *encryption_key, size_t len)
{
    *out = NULL;
    int rc = acache__crypto_init();
    if (rc != ACACHE_OK)
        return rc;
    if (!encryption_key || len == 0)
        return acache_error_set(ACACHE_ECRYPTO, "encryption key: empty");
    if (len > INT_MAX)
        return acache_error_set(ACACHE_EINVALID, "encryption key: too long");

    acache__crypto *k = acache__calloc(1, sizeof *k);
    if (!k)
        return acache__oom();
    k->key = sodium_malloc(ACACHE__FERNET_KEY_LEN);
    if (!k->key) {
        free(k);
        return acache__oom();
    }

    /* As Fernet(key) does: a string that decodes to 32 bytes is the key. */
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    const char *why = NULL;
    rc = acache__b64_decode_lenient(&raw, &raw_len, encryption_key, len, &why);
    if (rc == ACACHE_ENOMEM) {
        acache__crypto_free(k);
        return rc;
    }
    if (rc == ACACHE_OK && raw_len == ACACHE__FERNET_KEY_LEN) {
        memcpy(k->key, raw, ACACHE__FERNET_KEY_LEN);
        k->used_directly = 1;
    } else {
        unsigned char salt[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(salt, (const unsigned char *)"aether-v1", 9);
        if (PKCS5_PBKDF2_HMAC(encryption_key, (int)len, salt, KDF_SALT_LEN,
                              KDF_ITERATIONS, EVP_sha256(), ACACHE__FERNET_KEY_LEN,
                              k->key) != 1) {
            acache__secret_free(raw, raw_len);
            acache__crypto_free(k);
            return acache_error_set(ACACHE_ECRYPTO, "encryption key: PBKDF2 failed");
        }
    }
    acache__secret_free(raw, raw_len);
    /* Read-only from here: concurrent decrypts only read it, and a stray
     * write faults instead of corrupting the key. */
    sodium_mprotect_readonly(k->key);
    *out = k;
    return ACACHE_OK;
}

void acache__crypto_free(acache__crypto *k)
{
    if (!k)
        return;
    sodium_free(k->key); /* wipes, and checks the guard pages */
    free(k);
}

void acache__crypto_key_export(const acache__crypto *k, unsigned char out[32],
                               int *used_directly)
{
    memcpy(out, k->key, ACACHE__FERNET_KEY_LEN);
    if (used_directly)
        *used_directly = k->used_directly;
}

/* ---- the Fernet layer ---- */

static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void fernet_mac(unsigned char mac[FERNET_MAC], const unsigned char key32[32],
                       const unsigned char *data, size_t len)
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key32, 16);
    crypto_auth_hmacsha256_update(&st, data, len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
}

/* AES-128-CBC with PKCS#7 unpadding into a fresh buffer (ct_len + 1 bytes,
 * NUL-terminated). EVP's padding check is the same as cryptography's PKCS7
 * unpadder (1..16 bytes, all equal); the MAC was checked before, so there is
 * no padding oracle. */
static int aes_cbc_decrypt(const unsigned char key16[16], const unsigned char iv[16],
                           const unsigned char *ct, size_t ct_len, unsigned char **plain,
                           size_t *plain_len)
{
    if (ct_len > INT_MAX - 32)
        return acache_error_set(ACACHE_ECRYPTO, "fernet token: too large");
    size_t cap = ct_len + 16 + 1;
    unsigned char *buf = acache__malloc(cap);
    if (!buf)
        return acache__oom();
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx) {
        free(buf);
        return acache__oom();
    }
    int n1 = 0, n2 = 0;
    int ok = EVP_DecryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, key16, iv) == 1 &&
             EVP_DecryptUpdate(ctx, buf, &n1, ct, (int)ct_len) == 1 &&
             EVP_DecryptFinal_ex(ctx, buf + n1, &n2) == 1;
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
    if (!ok) {
        acache__secret_free(buf, cap);
        return acache_error_set(ACACHE_ECRYPTO, "fernet token: bad PKCS#7 padding");
    }
    size_t n = (size_t)n1 + (size_t)n2;
    sodium_memzero(buf + n, cap - n);
    *plain = buf;
    *plain_len = n;
    return ACACHE_OK;
}

static int fernet_open(const unsigned char key32[32], const char *token, size_t len,
                       int check_time, uint64_t now, uint64_t ttl_sec,
                       unsigned char **plain, size_t *plain_len)
{
    *plain = NULL;
    *plain_len = 0;
    int rc = acache__crypto_init();
    if (rc != ACACHE_OK)
        return rc;
    if (!token)
        return acache_error_set(ACACHE_ECRYPTO, "fernet token: missing");

    unsigned char *data = NULL;
    size_t n = 0;
    const char *why = NULL;
    rc = acache__b64_decode_lenient(&data, &n, token, len, &why);
    if (rc == ACACHE_ENOMEM)
        return rc;
    if (rc != ACACHE_OK)
        return acache_error_set(ACACHE_ECRYPTO, "fernet token: %s", why);

    if (n < 1 || data[0] != FERNET_VERSION) {
        rc = acache_error_set(ACACHE_ECRYPTO, "fernet token: bad version byte");
        goto out;
    }
    if (n < FERNET_HEADER + FERNET_MAC) {
        rc = acache_error_set(ACACHE_ECRYPTO, "fernet token: too short (%zu bytes)", n);
        goto out;
    }
    if (check_time) {
        uint64_t ts = get_be64(data + 1);
        /* ts + ttl < now and now + skew < ts, without overflowing. */
        if ((ts < now && now - ts > ttl_sec) ||
            (ts > now && ts - now > FERNET_MAX_SKEW)) {
            rc = acache_error_set(ACACHE_ECRYPTO,
                                  "fernet token: expired or from the future");
            goto out;
        }
    }

    unsigned char mac[FERNET_MAC];
    fernet_mac(mac, key32, data, n - FERNET_MAC);
    int mac_ok = sodium_memcmp(mac, data + n - FERNET_MAC, FERNET_MAC) == 0;
    sodium_memzero(mac, sizeof mac);
    if (!mac_ok) {
        rc = acache_error_set(ACACHE_ECRYPTO, "fernet token: HMAC mismatch (wrong key or "
                                              "tampered token)");
        goto out;
    }

    size_t ct_len = n - FERNET_HEADER - FERNET_MAC;
    if (ct_len == 0 || ct_len % 16 != 0) {
        rc = acache_error_set(
            ACACHE_ECRYPTO,
            "fernet token: ciphertext length %zu not a positive multiple "
            "of 16",
            ct_len);
        goto out;
    }
    rc = aes_cbc_decrypt(key32 + 16, data + 9, data + FERNET_HEADER, ct_len, plain,
                         plain_len);
out:
    acache__secret_free(data, n);
    return rc;
}

int acache__fernet_decrypt(const unsigned char key32[32], const char *token, size_t len,
                           unsigned char **plain, size_t *plain_len)
{
    return fernet_open(key32, token, len, 0, 0, 0, plain, plain_len);
}

int acache__fernet_decrypt_ttl(const unsigned char key32[32], const char *token,
                               size_t len, uint64_t now, uint64_t ttl_sec,
                               unsigned char **plain, size_t *plain_len)
{
    return fernet_open(key32, token, len, 1, now, ttl_sec, plain, plain_len);
}

int acache__fernet_encrypt(const unsigned char key32[32], const unsigned char *plain,
                           size_t len, uint64_t timestamp, const unsigned char iv[16],
                           char **token)
{
    *token = NULL;
    int rc = acache__crypto_init();
    if (rc != ACACHE_OK)
        return rc;
    if (len > INT_MAX - 64)
        return acache_error_set(ACACHE_EINVALID, "fernet encrypt: plaintext too large");
    size_t padded = (len / 16 + 1) * 16;
    size_t total = FERNET_HEADER + padded + FERNET_MAC;
    unsigned char *data = acache__malloc(total);
    if (!data)
        return acache__oom();
    data[0] = FERNET_VERSION;
    put_be64(data + 1, timestamp);
    memcpy(data + 9, iv, 16);

    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n1 = 0, n2 = 0;
    int ok = ctx &&
             EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, key32 + 16, iv) == 1 &&
             EVP_EncryptUpdate(ctx, data + FERNET_HEADER, &n1, plain, (int)len) == 1 &&
             EVP_EncryptFinal_ex(ctx, data + FERNET_HEADER + n1, &n2) == 1 &&
             (size_t)n1 + (size_t)n2 == padded;
    EVP_CIPHER_CTX_free(ctx);
    if (!ok) {
        acache__secret_free(data, total);
        return acache_error_set(ACACHE_ECRYPTO, "fernet encrypt: AES-CBC failed");
    }
    fernet_mac(data + FERNET_HEADER + padded, key32, data, FERNET_HEADER + padded);
    *token = acache__b64url_encode(data, total);
    acache__secret_free(data, total);
    return *token ? ACACHE_OK : ACACHE_ENOMEM;
}

/* ---- Aether's stored form: base64url(token text) ---- */

int acache__crypto_decrypt(acache__crypto *k, const char *stored, size_t len,
                           char **plain, size_t *plain_len)
{
    *plain = NULL;
    *plain_len = 0;
    if (!k)
        return acache_error_set(ACACHE_ECRYPTO, "decrypt: no encryption key configured");
    if (!stored || len == 0) {
        /* Aether returns "" for an empty column without raising. */
        *plain = acache__calloc(1, 1);
        return *plain ? ACACHE_OK : acache__oom();
    }

    unsigned char *token = NULL;
    size_t token_len = 0;
    const char *why = NULL;
    int rc = acache__b64_decode_lenient(&token, &token_len, stored, len, &why);
    if (rc == ACACHE_ENOMEM)
        return rc;
    if (rc != ACACHE_OK)
        return acache_error_set(ACACHE_ECRYPTO, "stored key: %s", why);

    unsigned char *p = NULL;
    size_t n = 0;
    rc = acache__fernet_decrypt(k->key, (const char *)token, token_len, &p, &n);
    acache__secret_free(token, token_len);
    if (rc != ACACHE_OK)
        return rc;
    if (!acache__utf8_strict_valid(p, n)) {
        acache__secret_free(p, n);
        return acache_error_set(ACACHE_ECRYPTO, "decrypted key: not valid UTF-8");
    }
    *plain = (char *)p;
    *plain_len = n;
    return ACACHE_OK;
}

int acache__crypto_encrypt(acache__crypto *k, const char *plain, size_t len,
                           uint64_t timestamp, const unsigned char iv[16], char **stored)
{
    *stored = NULL;
    if (!k || (!plain && len))
        return acache_error_set(ACACHE_EINVALID, "encrypt: missing key or plaintext");
    char *token = NULL;
    int rc = acache__fernet_encrypt(k->key, (const unsigned char *)(plain ? plain : ""),
                                    len, timestamp, iv, &token);
    if (rc != ACACHE_OK)
        return rc;
    *stored = acache__b64url_encode((const unsigned char *)token, strlen(token));
    free(token);
    return *stored ? ACACHE_OK : ACACHE_ENOMEM;
}
