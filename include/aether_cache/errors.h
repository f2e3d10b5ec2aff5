/* libaethercache: status codes and the thread-local last error message. */
#ifndef ACACHE_ERRORS_H
#define ACACHE_ERRORS_H

#include "common.h"

ACACHE_BEGIN_DECL

/** Every function that can fail returns one of these (0 or negative).
 *  Append only, never renumber: the values are part of the ABI. */
typedef enum acache_status {
    ACACHE_OK = 0,
    ACACHE_ERROR = -1,       /* generic: see acache_last_error() */
    ACACHE_ENOTFOUND = -2,   /* no such pin / user / key */
    ACACHE_EINVALID = -3,    /* bad argument, URI or struct version */
    ACACHE_ESTORE = -4,      /* Redis down or failed mid-operation */
    ACACHE_ECATALOG = -5,    /* PostgreSQL / JSON catalog failed */
    ACACHE_ECRYPTO = -6,     /* token did not verify or decrypt */
    ACACHE_ENOMEM = -7,      /* allocation failed */
    ACACHE_EUNSUPPORTED = -8 /* the configured store/catalog cannot do this
                                (e.g. model-mapping cache without Redis) */
} acache_status;

/**
 * Short static description of a status code ("not found", ...).
 * @return static text, never NULL (unknown codes give "unknown status").
 * Thread-safety: safe from any thread.   Since: 0.1
 */
ACACHE_EXTERN const char *acache_strerror(int status);

/**
 * Message describing the last failure on the calling thread, e.g.
 * "redis GET cache_affinity:...: Connection refused". Set by every failing
 * call; successful calls leave it unchanged.
 * @return thread-local text valid until the next library call on this thread;
 *         "" when no error has been recorded. Never NULL.
 * Thread-safety: per thread.   Since: 0.1
 */
ACACHE_EXTERN const char *acache_last_error(void);

/** Forget this thread's last error message.  Since: 0.1 */
ACACHE_EXTERN void acache_clear_error(void);

ACACHE_END_DECL
#endif
