/* Token buckets, as pure arithmetic: time is a parameter (int64 microseconds from a monotonic
 * clock), nothing is read from the system.
 *
 * A bucket holds up to `burst` tokens and refills at `per_minute` tokens a minute; taking one
 * costs one. Rates are whole numbers of tokens per minute (n per second is 60n per minute),
 * and the level is kept in 1/60,000,000ths of a token. Over dt microseconds a bucket gains
 * exactly per_minute * dt of those units, an integer: no rounding anywhere, so a thousand
 * refills of 1 µs give exactly what one refill of 1 ms gives, and nothing drifts.
 *
 * A rate of 0 tokens a minute means "no limit", whatever the burst (that is what a role
 * without a limit has; it is never "nothing allowed": forbidding an action is the role's
 * permissions' job). A positive rate with burst 0 is a bucket that can never hold a token
 * and refuses everything; configuration refuses such a limit before it gets here. */
#ifndef ARQ_AUTH_RBAC_BUCKET_H
#define ARQ_AUTH_RBAC_BUCKET_H

#include <stdint.h>

/* Units of level in one token. */
#define BUCKET_UNIT INT64_C(60000000)
/* Largest rate (tokens a minute) and burst accepted; within these nothing overflows. */
#define BUCKET_MAX_PER_MINUTE INT64_C(60000000000)
#define BUCKET_MAX_BURST      INT64_C(1000000000)

struct bucket_rate {
    int64_t per_minute; /* tokens added a minute; 0: no limit                           */
    int64_t burst;      /* most tokens the bucket holds                                  */
};

struct bucket {
    int64_t level;           /* in BUCKET_UNITs; INT64_MAX: full, whatever the burst     */
    int64_t stamp_us;        /* when `level` was last brought up to date                  */
    struct bucket_rate rate; /* the rate of the last refill (what bucket_full() uses)     */
};

/* 1 when `r` limits nothing. */
static inline int bucket_unlimited(const struct bucket_rate *r)
{
    return r->per_minute <= 0;
}

/* A new bucket: full (of whatever burst the first refill brings), as of `now_us`. */
void bucket_init(struct bucket *b, int64_t now_us);

/* Bring `b` up to `now_us` at rate `r`: add what the time since the last refill brought,
 * capped at r->burst. A rate or burst different from the last refill's applies to all of that
 * time, and a level above a smaller burst is clamped to it. Time going backwards adds
 * nothing. */
void bucket_refill(struct bucket *b, const struct bucket_rate *r, int64_t now_us);

/* Refill, then: 0 when a token is available now, else the microseconds until one is (>= 1,
 * rounded up), or INT64_MAX when none ever will be (burst 0). Takes nothing. An unlimited
 * rate always answers 0. */
int64_t bucket_wait_us(struct bucket *b, const struct bucket_rate *r, int64_t now_us);

/* Take one token; only after bucket_wait_us() answered 0 for the same rate and time. A no-op
 * at an unlimited rate. */
void bucket_take(struct bucket *b);

/* 1 when the bucket, refilled at the rate of its last refill, would be full at `now_us`:
 * such a bucket is indistinguishable from a new one. Does not change `b`. */
int bucket_full(const struct bucket *b, int64_t now_us);

/* Tokens held after a refill at `now_us`, rounded down (for tests and status). */
int64_t bucket_tokens(struct bucket *b, const struct bucket_rate *r, int64_t now_us);

#endif
