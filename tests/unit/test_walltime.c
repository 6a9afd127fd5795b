#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "walltime.h"

static const char *fmt(int64_t us, int digits)
{
    static char out[WALLTIME_TEXT_MAX];
    size_t n = walltime_format(us, digits, out);
    assert_int_equal(n, strlen(out));
    return out;
}

/* What gmtime_r() and "%04d" give, the fraction cut to `digits`. */
static void reference(int64_t us, int digits, char *out, size_t size)
{
    int64_t sec = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        sec -= 1;
    }
    time_t tt = (time_t)sec;
    struct tm tm;
    assert_non_null(gmtime_r(&tt, &tm));
    int n = snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (digits > 0) {
        for (int k = digits; k < 6; k++)
            frac /= 10;
        n += snprintf(out + n, size - (size_t)n, ".%0*d", digits, (int)frac);
    }
    snprintf(out + n, size - (size_t)n, "Z");
}

static void format_known_instants(void **state)
{
    (void)state;
    assert_string_equal(fmt(0, 3), "1970-01-01T00:00:00.000Z");
    assert_string_equal(fmt(0, 6), "1970-01-01T00:00:00.000000Z");
    assert_string_equal(fmt(0, 0), "1970-01-01T00:00:00Z");
    assert_string_equal(fmt(1795788185123456, 3), "2026-11-27T14:03:05.123Z");
    assert_string_equal(fmt(1795788185123456, 6), "2026-11-27T14:03:05.123456Z");
    assert_string_equal(fmt(1795788185123456, 1), "2026-11-27T14:03:05.1Z");
    /* leap days: 2024 and 2000 have one, 1900 has none */
    assert_string_equal(fmt(1709251199999999, 6), "2024-02-29T23:59:59.999999Z");
    assert_string_equal(fmt(951782400000000, 0), "2000-02-29T00:00:00Z");
    assert_string_equal(fmt(-2203891200000000, 0), "1900-03-01T00:00:00Z");
    /* more than 6 digits is 6 */
    assert_string_equal(fmt(1, 9), "1970-01-01T00:00:00.000001Z");
}

static void fractions_are_cut_never_rounded_up(void **state)
{
    (void)state;
    assert_string_equal(fmt(999999, 3), "1970-01-01T00:00:00.999Z");
    assert_string_equal(fmt(1999, 3), "1970-01-01T00:00:00.001Z");
    assert_string_equal(fmt(999, 3), "1970-01-01T00:00:00.000Z");
    assert_string_equal(fmt(59999999, 0), "1970-01-01T00:00:59Z");
}

static void times_before_1970_round_toward_the_past(void **state)
{
    (void)state;
    assert_string_equal(fmt(-1, 6), "1969-12-31T23:59:59.999999Z");
    assert_string_equal(fmt(-1, 3), "1969-12-31T23:59:59.999Z");
    assert_string_equal(fmt(-1, 0), "1969-12-31T23:59:59Z");
    assert_string_equal(fmt(-1000000, 6), "1969-12-31T23:59:59.000000Z");
    assert_string_equal(fmt(-1000001, 6), "1969-12-31T23:59:58.999999Z");
    assert_string_equal(fmt(-86400000000, 3), "1969-12-31T00:00:00.000Z");
    assert_string_equal(fmt(-62167219200000000, 3), "0000-01-01T00:00:00.000Z");
}

static void years_outside_rfc3339_are_written_like_gmtime(void **state)
{
    (void)state;
    assert_string_equal(fmt(253402300799999999, 6), "9999-12-31T23:59:59.999999Z");
    assert_string_equal(fmt(253402300800000000, 6), "10000-01-01T00:00:00.000000Z");
    assert_string_equal(fmt(-62167219200000001, 3), "-001-12-31T23:59:59.999Z");
    char want[64];
    reference(INT64_MAX, 6, want, sizeof want);
    assert_string_equal(fmt(INT64_MAX, 6), want);
    reference(INT64_MIN, 6, want, sizeof want);
    assert_string_equal(fmt(INT64_MIN, 6), want);
    assert_true(strlen(want) < WALLTIME_TEXT_MAX);
}

/* Many instants over the whole int64 range and around today, every precision. */
static void format_matches_gmtime_everywhere(void **state)
{
    (void)state;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t us = (int64_t)x;
        if (i % 2)
            us %= (int64_t)4102444800000000; /* within 1840..2100 */
        int digits = i % 7;
        char want[64];
        reference(us, digits, want, sizeof want);
        if (strcmp(fmt(us, digits), want) != 0)
            fail_msg("%lld (%d digits): %s, gmtime says %s", (long long)us, digits, fmt(us, digits),
                     want);
    }
}

static void days_from_civil_known_dates(void **state)
{
    (void)state;
    assert_int_equal(walltime_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(walltime_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(walltime_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(walltime_days_from_civil(0, 1, 1), -719528);
    assert_int_equal(walltime_days_from_civil(9999, 12, 31), 2932896);
    /* and back through the formatter */
    int64_t days = walltime_days_from_civil(2024, 2, 29);
    assert_string_equal(fmt(days * 86400 * 1000000, 0), "2024-02-29T00:00:00Z");
}

static void now_is_the_realtime_clock(void **state)
{
    (void)state;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t before = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    int64_t now = walltime_now_us();
    int64_t ms = walltime_now_ms();
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t after = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    assert_true(now >= before && now <= after);
    assert_true(ms >= before / 1000 && ms <= after / 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(format_known_instants),
        cmocka_unit_test(fractions_are_cut_never_rounded_up),
        cmocka_unit_test(times_before_1970_round_toward_the_past),
        cmocka_unit_test(years_outside_rfc3339_are_written_like_gmtime),
        cmocka_unit_test(format_matches_gmtime_everywhere),
        cmocka_unit_test(days_from_civil_known_dates),
        cmocka_unit_test(now_is_the_realtime_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
