/* The wall clock and RFC 3339 text. The date is computed here (H. Hinnant's civil-from-days)
 * rather than with gmtime_r(): it is exact for every int64 input, needs no time_t range check,
 * and formatting a timestamp per frame stays a few divisions. */
#include "walltime.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t walltime_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t walltime_now_ms(void)
{
    return walltime_now_us() / 1000;
}

int64_t walltime_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void walltime__civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* `v` in exactly `width` digits (v < 10^width). */
static char *walltime__digits(char *o, unsigned v, int width)
{
    for (int k = width - 1; k >= 0; k--, v /= 10)
        o[k] = (char)('0' + v % 10);
    return o + width;
}

size_t walltime_format(int64_t us, int digits, char out[WALLTIME_TEXT_MAX])
{
    /* The text up to the second changes once a second: it is kept (per thread), which makes
     * a timestamp per telemetry event or frame a copy and six digits. */
    static _Thread_local struct {
        int64_t sec;
        int valid;
        size_t len;
        char text[WALLTIME_TEXT_MAX]; /* "YYYY-MM-DDThh:mm:ss" */
    } cache;
    int64_t sec = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        sec -= 1;
    }
    if (!cache.valid || cache.sec != sec) {
        int64_t days = sec / 86400, rem = sec % 86400;
        if (rem < 0) {
            rem += 86400;
            days -= 1;
        }
        int64_t y;
        int m, d;
        walltime__civil_from_days(days, &y, &m, &d);
        char *o = cache.text;
        if (y >= 0 && y <= 9999)
            o = walltime__digits(o, (unsigned)y, 4);
        else /* |us| < 2^63 keeps the year within ±300,000 */
            o += snprintf(o, 16, "%04lld", (long long)y);
        *o++ = '-';
        o = walltime__digits(o, (unsigned)m, 2);
        *o++ = '-';
        o = walltime__digits(o, (unsigned)d, 2);
        *o++ = 'T';
        o = walltime__digits(o, (unsigned)(rem / 3600), 2);
        *o++ = ':';
        o = walltime__digits(o, (unsigned)(rem / 60 % 60), 2);
        *o++ = ':';
        o = walltime__digits(o, (unsigned)(rem % 60), 2);
        cache.len = (size_t)(o - cache.text);
        cache.sec = sec;
        cache.valid = 1;
    }
    memcpy(out, cache.text, cache.len);
    char *o = out + cache.len;
    if (digits > 6)
        digits = 6;
    if (digits > 0) {
        unsigned f = (unsigned)frac;
        for (int k = digits; k < 6; k++)
            f /= 10;
        *o++ = '.';
        o = walltime__digits(o, f, digits);
    }
    *o++ = 'Z';
    *o = '\0';
    return (size_t)(o - out);
}
