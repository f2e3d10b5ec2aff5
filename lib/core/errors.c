#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../util/util.h"

/* The definitions below, not util.h's analyzer hints. */
#undef acache_error_set
#undef acache__oom

/* Thread-local so concurrent callers never see each other's messages
 * (Go and Python read it right after the failing call, on the same thread). */
static _Thread_local char last_error[1024];

int acache_error_set(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

int acache__oom(void)
{
    /* No formatting, no allocation. */
    memcpy(last_error, "out of memory", sizeof "out of memory");
    return ACACHE_ENOMEM;
}

const char *acache_last_error(void)
{
    return last_error;
}

void acache_clear_error(void)
{
    last_error[0] = '\0';
}

const char *acache_strerror(int status)
{
    switch (status) {
    case ACACHE_OK:
        return "ok";
    case ACACHE_ERROR:
        return "error";
    case ACACHE_ENOTFOUND:
        return "not found";
    case ACACHE_EINVALID:
        return "invalid argument";
    case ACACHE_ESTORE:
        return "store unavailable";
    case ACACHE_ECATALOG:
        return "catalog unavailable";
    case ACACHE_ECRYPTO:
        return "decryption failed";
    case ACACHE_ENOMEM:
        return "out of memory";
    case ACACHE_EUNSUPPORTED:
        return "not supported by this store or catalog";
    default:
        return "unknown status";
    }
}
