#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "util.h"

static atomic_ulong fail_countdown;

void acache__alloc_fail_at(unsigned long n)
{
    atomic_store(&fail_countdown, n);
}

/* Decrement the countdown and report whether this allocation must fail. */
static int should_fail(void)
{
    unsigned long cur = atomic_load(&fail_countdown);
    while (cur != 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &cur, cur - 1))
            return cur == 1;
    }
    return 0;
}

void *acache__malloc(size_t n)
{
    if (should_fail())
        return NULL;
    return malloc(n ? n : 1);
}

void *acache__calloc(size_t count, size_t n)
{
    if (should_fail())
        return NULL;
    return calloc(count ? count : 1, n ? n : 1);
}

void *acache__realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    return realloc(p, n ? n : 1);
}

char *acache__strndup(const char *s, size_t n)
{
    char *d = acache__malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *acache__strdup(const char *s)
{
    return s ? acache__strndup(s, strlen(s)) : NULL;
}

char *acache__sprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? acache__malloc((size_t)n + 1) : NULL;
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, ap2);
    else
        acache__oom();
    va_end(ap2);
    return s;
}

int acache__grow(void *pptr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return ACACHE_OK;
    size_t nc = *cap ? *cap * 2 : 16;
    if (nc < n + 1)
        nc = n + 1;
    if (elem && nc > SIZE_MAX / elem)
        return acache__oom();
    void *old;
    memcpy(&old, pptr, sizeof old);
    void *nv = acache__realloc(old, nc * elem);
    if (!nv)
        return acache__oom();
    memcpy(pptr, &nv, sizeof nv);
    *cap = nc;
    return ACACHE_OK;
}

void acache__wipe_free(char *s)
{
    if (!s)
        return;
    sodium_memzero(s, strlen(s)); /* not memset: the compiler may drop it */
    free(s);
}
