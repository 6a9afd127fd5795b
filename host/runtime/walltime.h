/* The host's wall clock and its one time formatter: every timestamp the host writes (log lines,
 * telemetry events, protocol frames) is read from walltime_now_us() and written by
 * walltime_format(). Any thread; no state. */
#ifndef ARQ_HOST_WALLTIME_H
#define ARQ_HOST_WALLTIME_H

#include <stddef.h>
#include <stdint.h>

/* Microseconds since the Unix epoch, now (CLOCK_REALTIME). */
int64_t walltime_now_us(void);
/* Milliseconds since the Unix epoch, now: walltime_now_us() / 1000. */
int64_t walltime_now_ms(void);

/* Room for any text of walltime_format(), NUL included. */
#define WALLTIME_TEXT_MAX 40

/* `us` (microseconds since the epoch) as RFC 3339 UTC: "YYYY-MM-DDThh:mm:ss", then `.` and
 * `digits` (1 to 6) digits of the fraction of a second, or nothing for 0, then "Z".
 * The fraction is cut, not rounded, and times before 1970 round toward the past, so the text
 * never shows a later instant than `us`. Years outside 0000-9999 are written as glibc's
 * gmtime() with "%04d" writes them (a minus sign, or more digits): a caller that must stay
 * within RFC 3339 clamps first. NUL-terminated; returns the length. */
size_t walltime_format(int64_t us, int digits, char out[WALLTIME_TEXT_MAX]);

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1-12; day not checked). */
int64_t walltime_days_from_civil(int64_t year, int month, int day);

#endif
