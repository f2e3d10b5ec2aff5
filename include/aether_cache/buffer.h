/* libaethercache: byte buffers handed to the caller. */
#ifndef ACACHE_BUFFER_H
#define ACACHE_BUFFER_H

#include "common.h"
#include <stddef.h>

ACACHE_BEGIN_DECL

/**
 * Bytes returned by the library (JSON, Prometheus text, masked keys).
 * `ptr` is NUL-terminated (the NUL is not counted in `size`). Initialise
 * with ACACHE_BUF_INIT (or zero it); release with acache_buf_dispose(), the
 * one release function of this type. A buffer may be reused: functions that
 * fill one dispose of its previous content first. The layout (three fields
 * in this order: pointer, size_t, size_t) is part of the ABI, so FFI callers
 * declare the struct themselves (Python ctypes, Go cgo do).
 */
typedef struct acache_buf {
    char *ptr;
    size_t size;
    size_t reserved; /* allocated bytes; 0 when ptr is not owned */
} acache_buf;

#define ACACHE_BUF_INIT                                                                  \
    {                                                                                    \
        NULL, 0, 0                                                                       \
    }

/** Free the buffer's memory (wiped first) and reset it to ACACHE_BUF_INIT.
 *  NULL and already disposed buffers are no-ops.  Since: 0.1 */
ACACHE_EXTERN void acache_buf_dispose(acache_buf *buf);

ACACHE_END_DECL
#endif
