/* libaethercache: byte buffers handed to the caller. */
#ifndef ACACHE_BUFFER_H
#define ACACHE_BUFFER_H

#include <stddef.h>
#include "common.h"

ACACHE_BEGIN_DECL

/**
 * Bytes returned by the library (JSON, Prometheus text, masked keys).
 * `ptr` is NUL-terminated (the NUL is not counted in `size`). Initialise
 * with ACACHE_BUF_INIT; release with acache_buf_dispose(). A buffer may be
 * reused: functions that fill one dispose of its previous content first.
 */
typedef struct acache_buf {
    char *ptr;
    size_t size;
    size_t reserved; /* allocated bytes; 0 when ptr is not owned */
} acache_buf;

#define ACACHE_BUF_INIT {NULL, 0, 0}

/** Free the buffer's memory (wiped first) and reset it to ACACHE_BUF_INIT.
 *  NULL and already disposed buffers are no-ops.  Since: 0.1 */
ACACHE_EXTERN void acache_buf_dispose(acache_buf *buf);

/** Allocate a zeroed acache_buf on the heap, for FFI callers that cannot lay
 *  out the struct themselves; free with acache_buf_free().  Since: 0.1 */
ACACHE_EXTERN acache_buf *acache_buf_new(void);
/** Dispose of the content and free a buffer from acache_buf_new(). NULL-safe. */
ACACHE_EXTERN void acache_buf_free(acache_buf *buf);
/** Data pointer of a buffer (NULL when empty); for FFI callers. */
ACACHE_EXTERN const char *acache_buf_data(const acache_buf *buf);
/** Size in bytes of a buffer's data; for FFI callers. */
ACACHE_EXTERN size_t acache_buf_size(const acache_buf *buf);

ACACHE_END_DECL
#endif
