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
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
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
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
