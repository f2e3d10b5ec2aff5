/* Internal helpers shared by every lib/ area (never installed). */
#ifndef ACACHE_UTIL_H
#define ACACHE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "aether_cache/buffer.h"
#include "aether_cache/errors.h"
#include "aether_cache/sys/errors.h"

/* Allocation goes through these so tests can fail the Nth one
 * (acache__alloc_fail_at) and check every error path cleans up. */
void *acache__malloc(size_t n);
void *acache__calloc(size_t count, size_t n);
void *acache__realloc(void *p, size_t n);
char *acache__strdup(const char *s);
/* Wipe a NUL-terminated copy we own (it may hold a password), then free it. */
void acache__wipe_free(char *s);
char *acache__strndup(const char *s, size_t n);
/* printf into a fresh heap string; NULL on ENOMEM (message set). */
char *acache__sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Make room for element `n` of the array *pptr (any T **), doubling `*cap`.
 * Returns ACACHE_OK or ACACHE_ENOMEM (message set; the array is kept). */
int acache__grow(void *pptr, size_t *cap, size_t n, size_t elem);
/* Test hook: the Nth allocation from now (1-based) fails; 0 disables. */
void acache__alloc_fail_at(unsigned long n);

/* Record an out-of-memory error (static text, no allocation). */
int acache__oom(void);

/* For the clang static analyzer only (scripts/analyze.sh): it cannot see into
 * errors.c, so it took `return acache__oom();` or `return acache_error_set(...)`
 * for a possible success. These tell it what they return. */
#ifdef __clang_analyzer__
#define acache_error_set(status, ...)                                                    \
    ((void)acache_error_set(status, __VA_ARGS__), (status))
#define acache__oom() ((void)acache__oom(), ACACHE_ENOMEM)
#endif

/* acache_buf helpers: dispose `out` then take ownership of / copy bytes. */
int acache__buf_set(acache_buf *out, const char *data, size_t len);
void acache__buf_take(acache_buf *out, char *ptr, size_t len);

/* Python repr() of a double (shortest round-trip text, "12.0", "1e-05"),
 * into buf (>= 32 bytes). Returns the length. */
int acache__fmt_double(char *buf, size_t size, double v);

/* Python round(x, digits) on a double: half-to-even on the exact binary
 * value, which is what glibc's "%.*f" does; strtod reads it back. */
double acache__round_py(double x, int digits);

/* Wall clock, seconds since epoch, microsecond resolution. */
double acache__wallclock(void);
/* Fast non-cryptographic hash for in-process tables. */
uint64_t acache__hash(const void *data, size_t len);
/* Monotonic milliseconds. */
int64_t acache__monotonic_ms(void);

#endif
