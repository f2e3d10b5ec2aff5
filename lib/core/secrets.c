/* The handle's side of the secrets module: decrypt with the key the handle
 * was opened with (lib/crypto does not know the handle). */
#include "../crypto/crypto.h"
#include "core.h"

int acache_decrypt_and_mask(acache_buf *out, acache *c, const char *stored)
{
    if (!out || !c)
        return acache_error_set(ACACHE_EINVALID,
                                "decrypt_and_mask: out or handle is NULL");
    if (!stored || !*stored)
        return ACACHE_ENOTFOUND;
    if (!c->crypto)
        return acache_error_set(ACACHE_ECRYPTO,
                                "decrypt_and_mask: no encryption key configured");
    return acache__crypto_decrypt_and_mask(c->crypto, stored, out);
}
