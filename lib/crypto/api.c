/* Public entry points of the secrets module that need no handle (the one
 * that reads a handle's key is lib/core/secrets.c: crypto stays below core). */
#include <string.h>

#include "aether_cache/aether_cache.h"
#include "aether_cache/sys/errors.h"
#include "crypto.h"

int acache__crypto_decrypt_and_mask(acache__crypto *k, const char *stored,
                                    acache_buf *out)
{
    if (!stored || !*stored)
        return ACACHE_ENOTFOUND;
    char *plain = NULL;
    size_t plain_len = 0;
    int rc = acache__crypto_decrypt(k, stored, strlen(stored), &plain, &plain_len);
    if (rc != ACACHE_OK)
        return rc;
    rc = acache__mask(out, plain, plain_len, ACACHE__MASK_PREFIX, ACACHE__MASK_SUFFIX);
    acache__secret_free(plain, plain_len);
    return rc;
}

int acache_mask_key(acache_buf *out, const char *key, size_t key_len,
                    unsigned int prefix_len, unsigned int suffix_len)
{
    if (!out)
        return acache_error_set(ACACHE_EINVALID, "mask: out is NULL");
    return acache__mask(out, key, key_len, prefix_len, suffix_len);
}

int acache_decrypt_and_mask_with_key(acache_buf *out, const char *encryption_key,
                                     const char *stored)
{
    if (!out || !encryption_key)
        return acache_error_set(ACACHE_EINVALID,
                                "decrypt_and_mask_with_key: out or key is NULL");
    /* Checked before the (slow) key setup, as Aether skips decrypt for it. */
    if (!stored || !*stored)
        return ACACHE_ENOTFOUND;
    acache__crypto *k = NULL;
    int rc = acache__crypto_new(&k, encryption_key, strlen(encryption_key));
    if (rc != ACACHE_OK)
        return rc;
    rc = acache__crypto_decrypt_and_mask(k, stored, out);
    acache__crypto_free(k);
    return rc;
}
