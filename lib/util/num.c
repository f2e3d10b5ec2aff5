#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

/* Python prints floats with repr(): the shortest digits that read back to the
 * same double, fixed notation for exponents in [-4, 16), always with a '.'. */
int acache__fmt_double(char *buf, size_t size, double v)
{
    if (isnan(v))
        return snprintf(buf, size, "NaN");
    if (isinf(v))
        return snprintf(buf, size, v > 0 ? "Infinity" : "-Infinity");
    if (v == 0.0)
        return snprintf(buf, size, signbit(v) ? "-0.0" : "0.0");
    char tmp[40];
    /* The fewest significant digits (1..17) that read back: a binary search
     * (4-5 snprintf/strtod pairs instead of up to 17; a timestamp needs 16),
     * valid because a round trip at p digits implies one at every q > p. */
    int lo = 1, hi = 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        snprintf(tmp, sizeof tmp, "%.*e", mid - 1, v);
        if (strtod(tmp, NULL) == v)
            hi = mid;
        else
            lo = mid + 1;
    }
    int prec = lo;
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
    int exp10 = atoi(strchr(tmp, 'e') + 1);
    if (exp10 >= -4 && exp10 < 16) {
        int decimals = prec - 1 - exp10;
        if (decimals < 0)
            decimals = 0;
        int n = snprintf(buf, size, "%.*f", decimals, v);
        if (!strchr(buf, '.') && (size_t)n + 2 < size) {
            memcpy(buf + n, ".0", 3);
            n += 2;
        }
        return n;
    }
    /* Python: mantissa digits, 'e', sign, at least two exponent digits. */
    char mant[40];
    snprintf(mant, sizeof mant, "%.*e", prec - 1, v);
    *strchr(mant, 'e') = '\0';
    return snprintf(buf, size, "%se%c%02d", mant, exp10 < 0 ? '-' : '+', abs(exp10));
}

double acache__wallclock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000) / 1e6;
}

int64_t acache__monotonic_ms(void)
{
    /* Millisecond deadlines (L1 TTL, memory-store expiry) need no more than
     * the coarse clock's tick, and it costs a quarter of the precise one. */
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t acache__hash(const void *data, size_t len)
{
    /* Eight bytes per step with a multiply-xorshift mix: keys are ~100 bytes,
     * and a byte-wise FNV was a third of an L1 hit. Not for hostile-collision
     * resistance; buckets are chained and bounded by the key count. */
    const unsigned char *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, len);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

double acache__round_py(double x, int digits)
{
    /* glibc prints the exact binary value rounded half-to-even, which is
     * what Python's round() does; floor(x*10^d+0.5) is not (2.125 -> 2.13).
     * Both calls use the same locale, so the round trip is exact. */
    char buf[512];
    if (!isfinite(x))
        return x;
    snprintf(buf, sizeof buf, "%.*f", digits, x);
    return strtod(buf, NULL);
}
