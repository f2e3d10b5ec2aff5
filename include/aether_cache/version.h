/* libaethercache: version numbers. */
#ifndef ACACHE_VERSION_H
#define ACACHE_VERSION_H

#include "common.h"

#define ACACHE_VERSION_MAJOR 0
#define ACACHE_VERSION_MINOR 2
#define ACACHE_VERSION_PATCH 0
#define ACACHE_VERSION_STRING "0.2.0"
/** MAJOR*10000 + MINOR*100 + PATCH, for compile-time comparisons. */
#define ACACHE_VERSION_NUMBER                                                            \
    (ACACHE_VERSION_MAJOR * 10000 + ACACHE_VERSION_MINOR * 100 + ACACHE_VERSION_PATCH)

ACACHE_BEGIN_DECL

/**
 * Version of the library actually loaded (may differ from the header's).
 * @return static text such as "0.2.0", never NULL.
 * Thread-safety: safe from any thread.   Since: 0.1
 */
ACACHE_EXTERN const char *acache_version(void);

/** Loaded library version as MAJOR*10000 + MINOR*100 + PATCH.  Since: 0.1 */
ACACHE_EXTERN int acache_version_number(void);

ACACHE_END_DECL
#endif
