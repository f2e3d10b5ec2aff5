/* libaethercache backend authors: recording errors. */
#ifndef ACACHE_SYS_ERRORS_H
#define ACACHE_SYS_ERRORS_H

#include "../common.h"

ACACHE_BEGIN_DECL

/**
 * Record a printf-style message as this thread's last error and return
 * `status` (so `return acache_error_set(ACACHE_ESTORE, "...", ...);` works).
 * The message must not contain secrets.   Since: 0.1
 */
ACACHE_EXTERN int acache_error_set(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

ACACHE_END_DECL
#endif
