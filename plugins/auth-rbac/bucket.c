/* Token buckets: see bucket.h for the units and why they make refills exact. */
#include "bucket.h"

/* Microseconds until `deficit` units have been added at `per_minute` (> 0), rounded up. */
static int64_t bucket__time_for(int64_t deficit, int64_t per_minute)
{
    return deficit / per_minute + (deficit % per_minute != 0);
}

void bucket_init(struct bucket *b, int64_t now_us)
{
    b->level = INT64_MAX;
    b->stamp_us = now_us;
    b->rate = (struct bucket_rate){0, 0};
}

void bucket_refill(struct bucket *b, const struct bucket_rate *r, int64_t now_us)
{
    b->rate = *r;
    if (bucket_unlimited(r)) {
        b->level = INT64_MAX;
        if (now_us > b->stamp_us)
            b->stamp_us = now_us;
        return;
    }
    int64_t cap = (r->burst > 0 ? r->burst : 0) * BUCKET_UNIT;
    if (now_us > b->stamp_us) {
        int64_t dt = now_us - b->stamp_us;
        if (b->level < cap) {
            /* Compare times rather than multiply, so that a long idle time cannot overflow:
             * per_minute * dt stays below the deficit (< 2^63) when it is added. */
            int64_t deficit = cap - b->level;
            if (dt >= bucket__time_for(deficit, r->per_minute))
                b->level = cap;
            else
                b->level += r->per_minute * dt;
        }
        b->stamp_us = now_us;
    }
    if (b->level > cap)
        b->level = cap;
}

int64_t bucket_wait_us(struct bucket *b, const struct bucket_rate *r, int64_t now_us)
{
    bucket_refill(b, r, now_us);
    if (bucket_unlimited(r) || b->level >= BUCKET_UNIT)
        return 0;
    if (r->burst < 1)
        return INT64_MAX;
    return bucket__time_for(BUCKET_UNIT - b->level, r->per_minute);
}

void bucket_take(struct bucket *b)
{
    if (!bucket_unlimited(&b->rate) && b->level >= BUCKET_UNIT)
        b->level -= BUCKET_UNIT;
}

int bucket_full(const struct bucket *b, int64_t now_us)
{
    if (bucket_unlimited(&b->rate) || b->level == INT64_MAX)
        return 1;
    int64_t cap = (b->rate.burst > 0 ? b->rate.burst : 0) * BUCKET_UNIT;
    if (b->level >= cap)
        return 1;
    int64_t dt = now_us - b->stamp_us;
    return dt > 0 && dt >= bucket__time_for(cap - b->level, b->rate.per_minute);
}

int64_t bucket_tokens(struct bucket *b, const struct bucket_rate *r, int64_t now_us)
{
    bucket_refill(b, r, now_us);
    if (bucket_unlimited(r))
        return INT64_MAX;
    return b->level / BUCKET_UNIT;
}
