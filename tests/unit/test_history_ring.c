/* plugins/common/history_ring: one ring per room/channel (and per room for room-wide messages)
 * with increasing offsets and an epoch; bounded per ring, in total bytes (the globally oldest
 * goes first) and by age; history queries with and without recovery as struct
 * arq_history_query documents; mirroring offsets and epochs decided elsewhere; new limits
 * applied in place. Times are given by the tests (microseconds). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history_ring.h"

/* Every message put() stores counts MSG_BYTES against max_bytes: its id "i<2 digits>" and its
 * JSON {"n":"<2 digits>"}. */
#define MSG_BYTES (3 + 10)

static struct hring *ring_new(size_t max_history, size_t max_bytes, int64_t ttl_us)
{
    struct hring_limits lim = {max_history, max_bytes, ttl_us};
    struct hring *r = hring_new(&lim);
    assert_non_null(r);
    return r;
}

/* Append message number `n` (< 100) to room/channel at time `now`; returns its offset. */
static uint64_t put_at(struct hring *r, const char *room, const char *channel, int n, int64_t now)
{
    char id[8], json[16];
    snprintf(id, sizeof id, "i%02d", n);
    snprintf(json, sizeof json, "{\"n\":\"%02d\"}", n);
    assert_int_equal(strlen(id) + strlen(json), MSG_BYTES);
    struct arq_stored msg = {.struct_size = sizeof msg,
                             .room = room,
                             .channel = channel,
                             .id = id,
                             .timestamp_us = 1000 + n,
                             .json = json,
                             .json_len = strlen(json)};
    uint64_t offset = 0;
    const char *epoch = NULL;
    assert_int_equal(hring_append(r, &msg, 0, NULL, now, &offset, &epoch), 0);
    assert_non_null(epoch);
    return offset;
}

static uint64_t put(struct hring *r, const char *room, const char *channel, int n)
{
    return put_at(r, room, channel, n, 1000000 + n);
}

struct answer {
    const struct arq_stored *const *e;
    size_t n;
    const char *epoch;
    int recovered;
};

static struct answer ask_q(struct hring *r, const struct arq_history_query *q, int64_t now)
{
    struct answer a = {NULL, 99, NULL, -1};
    assert_int_equal(hring_query(r, q, now, &a.e, &a.n, &a.epoch, &a.recovered), 0);
    assert_non_null(a.epoch);
    assert_true(a.recovered == 0 || a.recovered == 1);
    return a;
}

/* The newest `limit` stored in [since, until]. */
static struct answer ask(struct hring *r, const char *room, const char *channel, unsigned limit,
                         int64_t since, int64_t until)
{
    struct arq_history_query q = {.struct_size = sizeof q,
                                  .room = room,
                                  .channel = channel,
                                  .limit = limit,
                                  .since_us = since,
                                  .until_us = until};
    return ask_q(r, &q, 2000000);
}

static struct answer recover(struct hring *r, const char *room, const char *channel, unsigned limit,
                             uint64_t since_offset, const char *epoch)
{
    struct arq_history_query q = {.struct_size = sizeof q,
                                  .room = room,
                                  .channel = channel,
                                  .limit = limit,
                                  .recover = 1,
                                  .since_offset = since_offset,
                                  .epoch = epoch};
    return ask_q(r, &q, 2000000);
}

/* The answer holds exactly these offsets, in this order. */
static void expect_offsets(struct answer a, const uint64_t *want, size_t n)
{
    char got[256] = "", exp[256] = "";
    for (size_t i = 0; i < a.n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%llu ",
                 (unsigned long long)a.e[i]->offset);
    for (size_t i = 0; i < n; i++)
        snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%llu ", (unsigned long long)want[i]);
    assert_string_equal(got, exp);
}
#define EXPECT(a, ...)                                                                             \
    expect_offsets((a), (const uint64_t[]){__VA_ARGS__},                                           \
                   sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t))
#define EXPECT_NONE(a) assert_int_equal((a).n, 0)

static char *epoch_of(struct hring *r, const char *room, const char *channel)
{
    char *e = strdup(ask(r, room, channel, 1, 0, 0).epoch);
    assert_non_null(e);
    return e;
}

/* --- appending and bounds ------------------------------------------------------------------ */

static void entries_are_copies_with_every_field(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    char room[] = "lobby", channel[] = "general", id[] = "msg-1", json[] = "{\"a\":1}";
    struct arq_stored msg = {.struct_size = sizeof msg,
                             .room = room,
                             .channel = channel,
                             .id = id,
                             .timestamp_us = 123,
                             .json = json,
                             .json_len = strlen(json)};
    uint64_t off = 0;
    const char *epoch = NULL;
    assert_int_equal(hring_append(r, &msg, 0, NULL, 456, &off, &epoch), 0);
    assert_int_equal(off, 1);
    char *ep = strdup(epoch);
    /* Borrowed arguments: scribbling over them afterwards changes nothing stored. */
    memset(room, 'x', 5);
    memset(channel, 'x', 7);
    memset(id, 'x', 5);
    memset(json, 'x', 7);
    struct answer a = ask(r, "lobby", "general", 10, 0, 0);
    assert_int_equal(a.n, 1);
    const struct arq_stored *e = a.e[0];
    assert_true(e->struct_size >= sizeof *e);
    assert_string_equal(e->room, "lobby");
    assert_string_equal(e->channel, "general");
    assert_string_equal(e->id, "msg-1");
    assert_int_equal(e->timestamp_us, 123);
    assert_int_equal(e->json_len, 7);
    assert_memory_equal(e->json, "{\"a\":1}", 7);
    assert_int_equal(e->offset, 1);
    assert_int_equal(e->stored_us, 456);
    assert_string_equal(a.epoch, ep);
    assert_int_equal(a.recovered, 0);
    free(ep);
    hring_free(r);
}

static void epoch_is_16_lowercase_hex_and_differs_per_ring(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    char *a = epoch_of(r, "lobby", "a"), *b = epoch_of(r, "lobby", "b");
    assert_int_equal(strlen(a), 16);
    assert_int_equal(strspn(a, "0123456789abcdef"), 16);
    assert_string_not_equal(a, b);
    /* A ring keeps its epoch as it fills and empties. */
    put(r, "lobby", "a", 1);
    char *again = epoch_of(r, "lobby", "a");
    assert_string_equal(a, again);
    free(a);
    free(b);
    free(again);
    hring_free(r);
}

static void wrap_around_drops_the_oldest_and_offsets_keep_increasing(void **state)
{
    (void)state;
    struct hring *r = ring_new(3, 0, 0);
    for (int i = 1; i <= 7; i++)
        assert_int_equal(put(r, "lobby", "general", i), (uint64_t)i);
    EXPECT(ask(r, "lobby", "general", 100, 0, 0), 5, 6, 7);
    assert_int_equal(hring_messages(r), 3);
    assert_int_equal(hring_bytes(r), 3 * MSG_BYTES);
    struct answer a = ask(r, "lobby", "general", 100, 0, 0);
    assert_string_equal(a.e[0]->id, "i05");
    assert_string_equal(a.e[2]->id, "i07");
    hring_free(r);
}

static void offsets_are_counted_per_ring(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    assert_int_equal(put(r, "a", "x", 1), 1);
    assert_int_equal(put(r, "a", "y", 2), 1);
    assert_int_equal(put(r, "b", "x", 3), 1);
    assert_int_equal(put(r, "a", "x", 4), 2);
    assert_int_equal(put(r, "b", "x", 5), 2);
    assert_int_equal(put(r, "a", "x", 6), 3);
    EXPECT(ask(r, "a", "x", 10, 0, 0), 1, 2, 3);
    EXPECT(ask(r, "a", "y", 10, 0, 0), 1);
    EXPECT(ask(r, "b", "x", 10, 0, 0), 1, 2);
    assert_string_equal(ask(r, "b", "x", 10, 0, 0).e[1]->id, "i05");
    assert_int_equal(hring_rings(r), 3);
    hring_free(r);
}

static void room_wide_ring_is_separate_from_the_channel_rings(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    assert_int_equal(put(r, "lobby", NULL, 1), 1);
    assert_int_equal(put(r, "lobby", "general", 2), 1);
    assert_int_equal(put(r, "lobby", NULL, 3), 2);
    struct answer room = ask(r, "lobby", NULL, 10, 0, 0);
    EXPECT(room, 1, 2);
    assert_null(room.e[0]->channel);
    assert_string_equal(room.e[1]->id, "i03");
    struct answer ch = ask(r, "lobby", "general", 10, 0, 0);
    EXPECT(ch, 1);
    assert_string_equal(ch.e[0]->id, "i02");
    assert_int_equal(hring_rings(r), 2);
    hring_free(r);
}

static void since_and_until_bounds_are_inclusive_on_the_stored_time(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    for (int i = 1; i <= 4; i++)
        put_at(r, "lobby", "general", i, 100 * i); /* stored at 100, 200, 300, 400 */
    EXPECT(ask(r, "lobby", "general", 10, 200, 300), 2, 3);
    EXPECT(ask(r, "lobby", "general", 10, 201, 300), 3);
    EXPECT(ask(r, "lobby", "general", 10, 200, 299), 2);
    EXPECT(ask(r, "lobby", "general", 10, 300, 0), 3, 4);
    EXPECT(ask(r, "lobby", "general", 10, 0, 200), 1, 2);
    EXPECT(ask(r, "lobby", "general", 10, 300, 300), 3);
    EXPECT_NONE(ask(r, "lobby", "general", 10, 401, 0));
    EXPECT_NONE(ask(r, "lobby", "general", 10, 0, 99));
    EXPECT_NONE(ask(r, "lobby", "general", 10, 301, 399));
    hring_free(r);
}

static void limit_gives_the_newest_oldest_first(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    for (int i = 1; i <= 6; i++)
        put_at(r, "lobby", "general", i, 100 * i);
    EXPECT(ask(r, "lobby", "general", 2, 0, 0), 5, 6);
    EXPECT(ask(r, "lobby", "general", 1, 0, 0), 6);
    EXPECT(ask(r, "lobby", "general", 6, 0, 0), 1, 2, 3, 4, 5, 6);
    /* Within a window: the newest of the window. */
    EXPECT(ask(r, "lobby", "general", 2, 0, 400), 3, 4);
    EXPECT(ask(r, "lobby", "general", 2, 200, 500), 4, 5);
    EXPECT_NONE(ask(r, "lobby", "general", 0, 0, 0));
    EXPECT_NONE(ask(r, "lobby", "empty", 5, 0, 0));
    hring_free(r);
}

/* --- recovery ------------------------------------------------------------------------------ */

static void recover_with_the_epoch_gives_exactly_the_missed_messages(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    for (int i = 1; i <= 5; i++)
        put(r, "lobby", "general", i);
    char *ep = epoch_of(r, "lobby", "general");
    struct answer a = recover(r, "lobby", "general", 50, 2, ep);
    EXPECT(a, 3, 4, 5);
    assert_int_equal(a.recovered, 1);
    assert_string_equal(a.epoch, ep);
    /* At most `limit`: the oldest missed first, so the client can continue from there. */
    a = recover(r, "lobby", "general", 2, 2, ep);
    EXPECT(a, 3, 4);
    assert_int_equal(a.recovered, 1);
    a = recover(r, "lobby", "general", 50, 4, ep);
    EXPECT(a, 5);
    assert_int_equal(a.recovered, 1);
    /* With the epoch, since_offset 0 means "everything" while the ring still holds it. */
    a = recover(r, "lobby", "general", 50, 0, ep);
    EXPECT(a, 1, 2, 3, 4, 5);
    assert_int_equal(a.recovered, 1);
    free(ep);
    hring_free(r);
}

static void recover_after_the_offset_fell_out_gives_the_newest(void **state)
{
    (void)state;
    struct hring *r = ring_new(3, 0, 0);
    for (int i = 1; i <= 6; i++)
        put(r, "lobby", "general", i); /* holds 4, 5, 6 */
    char *ep = epoch_of(r, "lobby", "general");
    struct answer a = recover(r, "lobby", "general", 2, 2, ep);
    EXPECT(a, 5, 6);
    assert_int_equal(a.recovered, 0);
    a = recover(r, "lobby", "general", 50, 0, ep);
    EXPECT(a, 4, 5, 6);
    assert_int_equal(a.recovered, 0);
    a = recover(r, "lobby", "general", 50, 0, NULL);
    EXPECT(a, 4, 5, 6);
    assert_int_equal(a.recovered, 0);
    /* Offset 3 was seen: what follows (4) is still held. */
    a = recover(r, "lobby", "general", 50, 3, ep);
    EXPECT(a, 4, 5, 6);
    assert_int_equal(a.recovered, 1);
    free(ep);
    hring_free(r);
}

static void wrong_epoch_is_not_recovered(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    for (int i = 1; i <= 4; i++)
        put(r, "lobby", "general", i);
    struct answer a = recover(r, "lobby", "general", 3, 1, "0123456789abcdef");
    EXPECT(a, 2, 3, 4);
    assert_int_equal(a.recovered, 0);
    a = recover(r, "lobby", "general", 2, 0, "0123456789abcdef");
    EXPECT(a, 3, 4);
    assert_int_equal(a.recovered, 0);
    /* No epoch with an offset: the offset cannot be trusted. */
    a = recover(r, "lobby", "general", 2, 1, NULL);
    EXPECT(a, 3, 4);
    assert_int_equal(a.recovered, 0);
    /* The epoch of another channel is not this one's. */
    char *other = epoch_of(r, "lobby", "other");
    a = recover(r, "lobby", "general", 10, 1, other);
    assert_int_equal(a.recovered, 0);
    free(other);
    hring_free(r);
}

static void since_offset_zero_without_epoch_on_a_fresh_ring_recovers_all(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    /* A channel nothing was stored in yet: recovered, nothing, and an epoch to keep. */
    struct answer a = recover(r, "lobby", "general", 10, 0, NULL);
    EXPECT_NONE(a);
    assert_int_equal(a.recovered, 1);
    char *ep = strdup(a.epoch);
    assert_int_equal(hring_rings(r), 1);
    for (int i = 1; i <= 3; i++)
        put(r, "lobby", "general", i);
    a = recover(r, "lobby", "general", 10, 0, NULL);
    EXPECT(a, 1, 2, 3);
    assert_int_equal(a.recovered, 1);
    /* The epoch handed out before the first message still holds. */
    assert_string_equal(a.epoch, ep);
    a = recover(r, "lobby", "general", 10, 0, ep);
    EXPECT(a, 1, 2, 3);
    assert_int_equal(a.recovered, 1);
    free(ep);
    hring_free(r);
}

static void since_offset_equal_to_the_last_recovers_nothing(void **state)
{
    (void)state;
    struct hring *r = ring_new(2, 0, 1000);
    for (int i = 1; i <= 3; i++)
        put_at(r, "lobby", "general", i, 1999000 + 100 * i); /* young when asked at 2000000 */
    char *ep = epoch_of(r, "lobby", "general");
    struct answer a = recover(r, "lobby", "general", 10, 3, ep);
    EXPECT_NONE(a);
    assert_int_equal(a.recovered, 1);
    /* Beyond the last offset: not from this history. */
    a = recover(r, "lobby", "general", 10, 4, ep);
    EXPECT(a, 2, 3);
    assert_int_equal(a.recovered, 0);
    /* Even once the ttl emptied the ring, a client that saw the last message missed nothing. */
    struct arq_history_query q = {.struct_size = sizeof q,
                                  .room = "lobby",
                                  .channel = "general",
                                  .limit = 10,
                                  .recover = 1,
                                  .since_offset = 3,
                                  .epoch = ep};
    a = ask_q(r, &q, 3000000);
    EXPECT_NONE(a);
    assert_int_equal(a.recovered, 1);
    assert_int_equal(hring_messages(r), 0);
    q.since_offset = 2;
    a = ask_q(r, &q, 3000000);
    assert_int_equal(a.recovered, 0);
    /* The next message continues the offsets. */
    assert_int_equal(put_at(r, "lobby", "general", 4, 3000000), 4);
    free(ep);
    hring_free(r);
}

/* --- bytes and age ------------------------------------------------------------------------- */

static void byte_cap_drops_the_globally_oldest_across_rings(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 3 * MSG_BYTES, 0);
    put(r, "a", "x", 1);
    put(r, "b", "x", 2);
    put(r, "a", "x", 3);
    assert_int_equal(hring_bytes(r), 3 * MSG_BYTES);
    put(r, "b", "x", 4); /* a/x's first goes */
    EXPECT(ask(r, "a", "x", 10, 0, 0), 2);
    EXPECT(ask(r, "b", "x", 10, 0, 0), 1, 2);
    assert_int_equal(hring_messages(r), 3);
    assert_int_equal(hring_bytes(r), 3 * MSG_BYTES);
    put(r, "c", NULL, 5); /* then b/x's first */
    EXPECT(ask(r, "a", "x", 10, 0, 0), 2);
    EXPECT(ask(r, "b", "x", 10, 0, 0), 2);
    EXPECT(ask(r, "c", NULL, 10, 0, 0), 1);
    assert_int_equal(hring_bytes(r), 3 * MSG_BYTES);
    /* What the cap dropped cannot be recovered; what follows it can. */
    char *ep = epoch_of(r, "a", "x");
    assert_int_equal(recover(r, "a", "x", 10, 0, ep).recovered, 0);
    struct answer a = recover(r, "a", "x", 10, 1, ep);
    EXPECT(a, 2);
    assert_int_equal(a.recovered, 1);
    free(ep);
    hring_free(r);
}

static void a_message_larger_than_the_byte_cap_is_kept_alone(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, MSG_BYTES / 2, 0);
    put(r, "a", "x", 1);
    assert_int_equal(hring_messages(r), 1);
    put(r, "b", "x", 2);
    assert_int_equal(hring_messages(r), 1);
    EXPECT_NONE(ask(r, "a", "x", 10, 0, 0));
    EXPECT(ask(r, "b", "x", 10, 0, 0), 1);
    hring_free(r);
}

static void ttl_drops_old_messages_at_append_and_at_query(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 1000);
    put_at(r, "a", "x", 1, 0);
    put_at(r, "b", "x", 2, 0);
    put_at(r, "a", "x", 3, 500);
    put_at(r, "a", "x", 4, 1000);
    /* At 1500: 1 is 1500us old (dropped), 3 exactly 1000us (kept). */
    struct arq_history_query q = {
        .struct_size = sizeof q, .room = "a", .channel = "x", .limit = 10};
    EXPECT(ask_q(r, &q, 1500), 2, 3);
    /* The query dropped b/x's old one as well: the globally oldest were all expired. */
    assert_int_equal(hring_messages(r), 2);
    /* An append expires other rings too. */
    put_at(r, "c", "x", 5, 2600);
    assert_int_equal(hring_messages(r), 1);
    EXPECT_NONE(ask_q(r, &q, 2600));
    hring_free(r);
}

/* --- mirroring offsets and epochs decided elsewhere --------------------------------------- */

static int mirror(struct hring *r, const char *channel, int n, uint64_t offset, const char *epoch,
                  uint64_t *off_out, const char **epoch_out)
{
    char json[16];
    snprintf(json, sizeof json, "{\"n\":%d}", n);
    struct arq_stored msg = {.struct_size = sizeof msg,
                             .room = "lobby",
                             .channel = channel,
                             .id = "m",
                             .json = json,
                             .json_len = strlen(json)};
    return hring_append(r, &msg, offset, epoch, 1000 + n, off_out, epoch_out);
}

static void mirror_mode_keeps_the_given_offsets_and_epoch(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    uint64_t off = 0;
    const char *ep = NULL;
    assert_int_equal(mirror(r, "general", 1, 10, "1700000000000-0", &off, &ep), 0);
    assert_int_equal(off, 10);
    assert_string_equal(ep, "1700000000000-0");
    assert_int_equal(mirror(r, "general", 2, 11, "1700000000000-0", &off, &ep), 0);
    assert_int_equal(off, 11);
    /* epoch NULL: the ring's (mirrored) epoch; offset 0: the ring's next. */
    assert_int_equal(mirror(r, "general", 3, 0, NULL, &off, &ep), 0);
    assert_int_equal(off, 12);
    assert_string_equal(ep, "1700000000000-0");
    /* Offsets must increase; a refused append changes nothing. */
    assert_int_equal(mirror(r, "general", 4, 12, NULL, &off, &ep), ARQ_EINVAL);
    assert_int_equal(mirror(r, "general", 4, 5, "1700000000000-0", &off, &ep), ARQ_EINVAL);
    EXPECT(ask(r, "lobby", "general", 10, 0, 0), 10, 11, 12);
    /* Before the first mirrored offset nothing is known here: 9 can recover, 8 cannot. */
    struct answer a = recover(r, "lobby", "general", 10, 9, "1700000000000-0");
    EXPECT(a, 10, 11, 12);
    assert_int_equal(a.recovered, 1);
    assert_int_equal(recover(r, "lobby", "general", 10, 8, "1700000000000-0").recovered, 0);
    hring_free(r);
}

static void mirror_gap_is_not_recoverable_across(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    uint64_t off;
    const char *ep;
    assert_int_equal(mirror(r, "general", 1, 1, "E1", &off, &ep), 0);
    assert_int_equal(mirror(r, "general", 2, 2, "E1", &off, &ep), 0);
    assert_int_equal(mirror(r, "general", 3, 6, "E1", &off, &ep), 0); /* 3..5 never seen */
    assert_int_equal(recover(r, "lobby", "general", 10, 2, "E1").recovered, 0);
    struct answer a = recover(r, "lobby", "general", 10, 5, "E1");
    EXPECT(a, 6);
    assert_int_equal(a.recovered, 1);
    hring_free(r);
}

static void mirror_epoch_change_resets_the_ring(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    uint64_t off;
    const char *ep;
    for (int i = 1; i <= 3; i++)
        assert_int_equal(mirror(r, "general", i, (uint64_t)i, "E1", &off, &ep), 0);
    assert_int_equal(mirror(r, "other", 9, 1, "X", &off, &ep), 0);
    assert_int_equal(hring_messages(r), 4);
    /* The history was lost elsewhere (a stream deleted): offsets start again. */
    assert_int_equal(mirror(r, "general", 4, 1, "E2", &off, &ep), 0);
    assert_int_equal(off, 1);
    assert_string_equal(ep, "E2");
    struct answer a = ask(r, "lobby", "general", 10, 0, 0);
    EXPECT(a, 1);
    assert_string_equal(a.epoch, "E2");
    assert_int_equal(hring_messages(r), 2);
    assert_int_equal(hring_bytes(r), 2 * (1 + 7)); /* id "m", {"n":N} */
    assert_int_equal(recover(r, "lobby", "general", 10, 3, "E1").recovered, 0);
    a = recover(r, "lobby", "general", 10, 0, "E2");
    EXPECT(a, 1);
    assert_int_equal(a.recovered, 1);
    /* Own offsets continue after a reset too. */
    assert_int_equal(mirror(r, "general", 5, 0, NULL, &off, &ep), 0);
    assert_int_equal(off, 2);
    hring_free(r);
}

/* --- limits and scale ---------------------------------------------------------------------- */

static void set_limits_trims_in_place(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    for (int i = 1; i <= 10; i++)
        put(r, "a", "x", i);
    put(r, "b", "x", 11);
    char *ep = epoch_of(r, "a", "x");
    struct hring_limits lim = {4, 0, 0};
    hring_set_limits(r, &lim);
    EXPECT(ask(r, "a", "x", 100, 0, 0), 7, 8, 9, 10);
    EXPECT(ask(r, "b", "x", 100, 0, 0), 1);
    assert_int_equal(hring_messages(r), 5);
    assert_int_equal(put(r, "a", "x", 12), 11);
    EXPECT(ask(r, "a", "x", 100, 0, 0), 8, 9, 10, 11);
    /* The epoch stays: recovery continues where the ring still reaches. */
    assert_int_equal(recover(r, "a", "x", 10, 7, ep).recovered, 1);
    assert_int_equal(recover(r, "a", "x", 10, 6, ep).recovered, 0);
    /* Raised again: the ring grows back. */
    lim.max_history = 6;
    hring_set_limits(r, &lim);
    for (int i = 13; i <= 16; i++)
        put(r, "a", "x", i);
    EXPECT(ask(r, "a", "x", 100, 0, 0), 10, 11, 12, 13, 14, 15);
    /* A byte cap: the globally oldest go first (a/x's 10, stored before b/x's only message,
     * then that one). */
    lim.max_bytes = 5 * MSG_BYTES;
    hring_set_limits(r, &lim);
    EXPECT_NONE(ask(r, "b", "x", 100, 0, 0));
    EXPECT(ask(r, "a", "x", 100, 0, 0), 11, 12, 13, 14, 15);
    assert_int_equal(hring_bytes(r), 5 * MSG_BYTES);
    /* A ttl applies from the next append or query. */
    lim.ttl_us = 1;
    hring_set_limits(r, &lim);
    assert_int_equal(hring_messages(r), 5);
    EXPECT_NONE(ask(r, "a", "x", 100, 0, 0));
    assert_int_equal(hring_messages(r), 0);
    free(ep);
    hring_free(r);
}

static void many_rings_keep_their_own_offsets_and_epochs(void **state)
{
    (void)state;
    enum { RINGS = 5000 };
    struct hring *r = ring_new(4, 0, 0);
    char room[32], channel[32];
    for (int round = 1; round <= 6; round++) {
        for (int i = 0; i < RINGS; i++) {
            snprintf(room, sizeof room, "room-%d", i % 50);
            snprintf(channel, sizeof channel, "ch-%d", i);
            uint64_t off = put(r, room, i % 10 ? channel : NULL, round);
            if (i % 10)
                assert_int_equal(off, (uint64_t)round);
        }
    }
    /* Rooms 0..49 get their room-wide ring from i % 10 == 0 (i % 50 = 0, 10, 20, 30, 40). */
    assert_int_equal(hring_rings(r), RINGS - RINGS / 10 + 5);
    assert_int_equal(hring_messages(r), (RINGS - RINGS / 10) * 4 + 5 * 4);
    for (int i = 1; i < RINGS; i += 97) {
        if (i % 10 == 0)
            continue;
        snprintf(room, sizeof room, "room-%d", i % 50);
        snprintf(channel, sizeof channel, "ch-%d", i);
        EXPECT(ask(r, room, channel, 10, 0, 0), 3, 4, 5, 6);
    }
    /* The room-wide ring of room-0 got 6 * 100 messages (i = 0, 50, 100, ...). */
    EXPECT(ask(r, "room-0", NULL, 10, 0, 0), 597, 598, 599, 600);
    char *a = epoch_of(r, "room-1", "ch-1"), *b = epoch_of(r, "room-1", "ch-51");
    assert_string_not_equal(a, b);
    free(a);
    free(b);
    hring_free(r);
}

static void bad_arguments_are_refused(void **state)
{
    (void)state;
    struct hring *r = ring_new(10, 0, 0);
    struct arq_stored msg = {.struct_size = sizeof msg, .json = "{}", .json_len = 2};
    uint64_t off = 7;
    const char *ep = NULL;
    assert_int_equal(hring_append(r, &msg, 0, NULL, 0, &off, &ep), ARQ_EINVAL);
    assert_int_equal(hring_append(r, NULL, 0, NULL, 0, &off, &ep), ARQ_EINVAL);
    struct arq_history_query q = {.struct_size = sizeof q, .limit = 10};
    const struct arq_stored *const *e;
    size_t n;
    int rec;
    assert_int_equal(hring_query(r, &q, 0, &e, &n, &ep, &rec), ARQ_EINVAL);
    assert_int_equal(hring_rings(r), 0);
    /* An id is optional. */
    msg.room = "lobby";
    assert_int_equal(hring_append(r, &msg, 0, NULL, 0, &off, &ep), 0);
    assert_null(ask(r, "lobby", NULL, 1, 0, 0).e[0]->id);
    hring_free(r);
    hring_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(entries_are_copies_with_every_field),
        cmocka_unit_test(epoch_is_16_lowercase_hex_and_differs_per_ring),
        cmocka_unit_test(wrap_around_drops_the_oldest_and_offsets_keep_increasing),
        cmocka_unit_test(offsets_are_counted_per_ring),
        cmocka_unit_test(room_wide_ring_is_separate_from_the_channel_rings),
        cmocka_unit_test(since_and_until_bounds_are_inclusive_on_the_stored_time),
        cmocka_unit_test(limit_gives_the_newest_oldest_first),
        cmocka_unit_test(recover_with_the_epoch_gives_exactly_the_missed_messages),
        cmocka_unit_test(recover_after_the_offset_fell_out_gives_the_newest),
        cmocka_unit_test(wrong_epoch_is_not_recovered),
        cmocka_unit_test(since_offset_zero_without_epoch_on_a_fresh_ring_recovers_all),
        cmocka_unit_test(since_offset_equal_to_the_last_recovers_nothing),
        cmocka_unit_test(byte_cap_drops_the_globally_oldest_across_rings),
        cmocka_unit_test(a_message_larger_than_the_byte_cap_is_kept_alone),
        cmocka_unit_test(ttl_drops_old_messages_at_append_and_at_query),
        cmocka_unit_test(mirror_mode_keeps_the_given_offsets_and_epoch),
        cmocka_unit_test(mirror_gap_is_not_recoverable_across),
        cmocka_unit_test(mirror_epoch_change_resets_the_ring),
        cmocka_unit_test(set_limits_trims_in_place),
        cmocka_unit_test(many_rings_keep_their_own_offsets_and_epochs),
        cmocka_unit_test(bad_arguments_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
