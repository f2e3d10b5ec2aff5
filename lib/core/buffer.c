#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../util/util.h"

void acache_buf_dispose(acache_buf *buf)
{
    if (!buf)
        return;
    if (buf->ptr && buf->reserved) {
        /* Buffers may have carried masked keys or JSON with secrets nearby. */
        sodium_memzero(buf->ptr, buf->reserved);
        free(buf->ptr);
    }
    buf->ptr = NULL;
    buf->size = 0;
    buf->reserved = 0;
}

void acache__buf_take(acache_buf *out, char *ptr, size_t len)
{
    acache_buf_dispose(out);
    out->ptr = ptr;
    out->size = len;
    out->reserved = len + 1;
}

int acache__buf_set(acache_buf *out, const char *data, size_t len)
{
    char *p = acache__malloc(len + 1);
    if (!p)
        return acache__oom();
    memcpy(p, data, len);
    p[len] = '\0';
    acache__buf_take(out, p, len);
    return ACACHE_OK;
}
