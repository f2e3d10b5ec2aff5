/* libaethercache: masking and decrypting the API keys Aether stores. */
#ifndef ACACHE_CRYPTO_H
#define ACACHE_CRYPTO_H

#include "buffer.h"
#include "cache.h"
#include "common.h"
#include <stddef.h>

ACACHE_BEGIN_DECL

/**
 * Mask a key for display the way Aether does: the first `prefix_len`
 * characters, then "********", then the last `suffix_len` characters; a key
 * of at most prefix_len + suffix_len characters shows only its first
 * prefix_len characters and the stars. A `suffix_len` of 0 shows no suffix.
 * Characters are Unicode code points of the UTF-8 text; a multi-byte
 * character is never split. Each byte that is not part of a valid UTF-8
 * sequence counts as one character and is shown as U+FFFD, so the output is
 * always valid UTF-8 and never contains raw bytes of a malformed key. `key`
 * may contain NUL bytes: only `key_len` is used.
 * @param out      receives the masked text (NUL-terminated; `size` excludes
 *                 the NUL); release with acache_buf_dispose(). Written only
 *                 on ACACHE_OK.
 * @param key      the key, `key_len` bytes (not necessarily NUL-terminated).
 * @return ACACHE_OK, ACACHE_ENOTFOUND when key is NULL or key_len is 0 (the
 *         mask is null; `out` untouched), ACACHE_EINVALID (out NULL) or
 *         ACACHE_ENOMEM.
 * Thread-safety: safe from any thread.   Since: 0.1
 */
ACACHE_EXTERN int acache_mask_key(acache_buf *out, const char *key, size_t key_len,
                                  unsigned int prefix_len, unsigned int suffix_len);

/**
 * Decrypt a stored key column (Aether's double-base64url Fernet token, no
 * TTL) with the handle's encryption key and mask it (prefix 8, suffix 4).
 * The plaintext is wiped before returning and never leaves the library.
 * @param out     receives the masked key; release with acache_buf_dispose().
 *                Written only on ACACHE_OK.
 * @param stored  NUL-terminated stored value.
 * @return ACACHE_OK; ACACHE_ENOTFOUND when stored is NULL or empty, or
 *         decrypts to an empty key (the mask is null); ACACHE_ECRYPTO when it
 *         does not decrypt to valid UTF-8 or the handle has no encryption key
 *         (reason in acache_last_error(), never the secret); ACACHE_EINVALID
 *         (out or c NULL); ACACHE_ENOMEM.
 * Thread-safety: safe concurrently on one acache.   Since: 0.1
 */
ACACHE_EXTERN int acache_decrypt_and_mask(acache_buf *out, acache *c, const char *stored);

/**
 * As acache_decrypt_and_mask(), with an ENCRYPTION_KEY string given per
 * call. Slow: a passphrase goes through PBKDF2 (100000 iterations, tens of
 * milliseconds) on every call, so use it for one-off command-line lookups
 * and open a handle with options.encryption_key for anything repeated.
 * @param encryption_key  Aether's ENCRYPTION_KEY (Fernet key or passphrase).
 * @return as acache_decrypt_and_mask(); ACACHE_EINVALID when out or
 *         encryption_key is NULL, ACACHE_ECRYPTO when it is empty.
 * Thread-safety: safe from any thread.   Since: 0.1
 */
ACACHE_EXTERN int acache_decrypt_and_mask_with_key(acache_buf *out,
                                                   const char *encryption_key,
                                                   const char *stored);

ACACHE_END_DECL
#endif
