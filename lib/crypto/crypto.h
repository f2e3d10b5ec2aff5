/* Private to lib/: Aether-compatible secrets (Fernet, key setup, masking).
 * spec/crypto.md is the contract; testdata/aether-crypto/README.md pins the
 * details (lenient base64, key parsing, masking). */
#ifndef ACACHE_CRYPTO_PRIV_H
#define ACACHE_CRYPTO_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "aether_cache/buffer.h"

typedef struct acache__crypto acache__crypto; /* also declared in core/core.h */

#define ACACHE__FERNET_KEY_LEN 32
#define ACACHE__MASK_PREFIX 8
#define ACACHE__MASK_SUFFIX 4

/* sodium_init() once per process (pthread_once). ACACHE_OK or ACACHE_ECRYPTO. */
int acache__crypto_init(void);

/* Key setup from an ENCRYPTION_KEY string of `len` bytes: the Fernet key when
 * it base64url-decodes (Python's lenient decoder) to 32 bytes, else
 * PBKDF2-HMAC-SHA256 (salt = SHA-256("aether-v1")[0:16], 100000 iterations).
 * Slow (tens of ms): once per handle. The key lives in sodium_malloc'd,
 * read-only memory. Returns ACACHE_OK, ACACHE_ECRYPTO (NULL/empty key),
 * ACACHE_EINVALID (longer than INT_MAX) or ACACHE_ENOMEM. */
int acache__crypto_new(acache__crypto **out, const char *encryption_key, size_t len);
/* Wipe and free; NULL-safe. */
void acache__crypto_free(acache__crypto *k);

/* Test hook: copy the 32 key bytes out (signing key first) and say whether
 * the string was used as a Fernet key directly (1) or derived (0). */
void acache__crypto_key_export(const acache__crypto *k, unsigned char out[32],
                               int *used_directly);

/* Decrypt Aether's stored form (base64url of the Fernet token text; no TTL)
 * and check the plaintext is strict UTF-8. An empty `stored` gives an empty
 * plaintext, as Aether does. `*plain` is NUL-terminated but may hold NULs:
 * use `*plain_len`; release with acache__secret_free(*plain, *plain_len).
 * Returns ACACHE_OK, ACACHE_ECRYPTO (reason in the last error, never the
 * secret) or ACACHE_ENOMEM. Safe concurrently on one key. */
int acache__crypto_decrypt(acache__crypto *k, const char *stored, size_t len,
                           char **plain, size_t *plain_len);

/* mask(decrypt(stored)) with prefix 8, suffix 4 into `out`.
 * Returns ACACHE_OK, ACACHE_ENOTFOUND (NULL/empty stored, or an empty
 * plaintext: the mask is null), ACACHE_ECRYPTO or ACACHE_ENOMEM. `out` is
 * only written on ACACHE_OK. */
int acache__crypto_decrypt_and_mask(acache__crypto *k, const char *stored,
                                    acache_buf *out);

/* Aether's stored form of `plain`, with the given timestamp and IV (tests,
 * bench, catalog seeding). `*stored` is a NUL-terminated heap string, free(). */
int acache__crypto_encrypt(acache__crypto *k, const char *plain, size_t len,
                           uint64_t timestamp, const unsigned char iv[16], char **stored);

/* The raw Fernet layer: `token` is Fernet token text (single base64url),
 * decoded leniently like Python; no TTL. Output as acache__crypto_decrypt
 * (no UTF-8 check). Returns ACACHE_OK, ACACHE_ECRYPTO or ACACHE_ENOMEM. */
int acache__fernet_decrypt(const unsigned char key32[32], const char *token, size_t len,
                           unsigned char **plain, size_t *plain_len);
/* Same, also enforcing the Fernet spec's time rules: fails when
 * timestamp + ttl_sec < now or timestamp > now + 60 (clock skew). */
int acache__fernet_decrypt_ttl(const unsigned char key32[32], const char *token,
                               size_t len, uint64_t now, uint64_t ttl_sec,
                               unsigned char **plain, size_t *plain_len);
/* Fernet token text (base64url with padding) for `plain`; free() it. */
int acache__fernet_encrypt(const unsigned char key32[32], const unsigned char *plain,
                           size_t len, uint64_t timestamp, const unsigned char iv[16],
                           char **token);

/* Python's base64.urlsafe_b64decode (non-strict binascii): both alphabets,
 * junk skipped, stops at a complete '=' padding, padding required. On
 * success `*out` (heap, free() or acache__secret_free) holds `*out_len`
 * bytes; on failure returns ACACHE_ECRYPTO and `*why` (static text) says
 * why, without setting the last error. ACACHE_ENOMEM on allocation failure. */
int acache__b64_decode_lenient(unsigned char **out, size_t *out_len, const char *in,
                               size_t len, const char **why);
/* base64url with '=' padding; NUL-terminated heap string, free(). */
char *acache__b64url_encode(const unsigned char *bin, size_t len);

/* Length (1-4) of the strict UTF-8 sequence (as Python's decoder accepts:
 * no overlongs, no surrogates, <= U+10FFFF) at s[0..n), or 0 if invalid. */
size_t acache__utf8_strict_seq_len(const unsigned char *s, size_t n);
/* Nonzero when s[0..n) is entirely strict UTF-8. */
int acache__utf8_strict_valid(const unsigned char *s, size_t n);

/* Aether's mask over `len` bytes (code points; each invalid UTF-8 byte counts
 * as one character and is shown as U+FFFD). ACACHE_ENOTFOUND when key is
 * NULL or len is 0 (`out` untouched). */
int acache__mask(acache_buf *out, const char *key, size_t len, unsigned int prefix_len,
                 unsigned int suffix_len);

/* sodium_memzero(p, len) then free(p); NULL-safe. */
void acache__secret_free(void *p, size_t len);

/* Test hook: called by acache__secret_free with the buffer after wiping and
 * just before free(), so a test can check every byte is zero. NULL unsets.
 * Process-wide; only tests set it. */
typedef void (*acache__secret_free_hook_fn)(const void *p, size_t len, void *payload);
void acache__secret_free_set_hook(acache__secret_free_hook_fn fn, void *payload);

/* Aether's development passphrase; only used when a caller asks for it. */
const char *acache__dev_encryption_key(void);

#endif
