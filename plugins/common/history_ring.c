/* In-memory history rings (see history_ring.h).
 *
 * Every entry is one allocation (its struct arq_stored view, id and JSON together) and sits in
 * two orders at once: its ring's circular array (oldest at `head`) and one doubly linked list
 * across all rings in append order, whose head is the globally oldest entry. Because both
 * orders are append orders, the globally oldest entry is always the oldest of its ring, so
 * every drop (per-ring bound, byte cap, ttl, epoch reset) removes a ring's oldest entry.
 *
 * A ring remembers `floor`: every offset in (floor, last] is still held. A client that has
 * seen offset s can recover when floor <= s <= last. Offsets at or below floor were dropped,
 * or (mirroring) never seen here. */
#include "history_ring.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define HRING_MIN_BUCKETS 64
#define HRING_MIN_SLOTS   8
#define HRING_EPOCH_LEN   16

struct hring_ring;

struct hring_entry {
    struct arq_stored st; /* the view handed out; room/channel point into the ring       */
    struct hring_ring *ring;
    struct hring_entry *older, *newer; /* the global append order                        */
    size_t bytes;                      /* counted against max_bytes: id + json            */
    char data[];                       /* id NUL json NUL                                 */
};

struct hring_ring {
    struct hring_ring *next; /* in its hash bucket                                      */
    uint64_t hash;
    const char *room, *channel; /* point into key                                        */
    char *epoch;
    struct hring_entry **slot; /* circular, `cap` long; entries [head, head + count)     */
    size_t cap, head, count;
    uint64_t last;  /* the newest offset given (0: none yet)                             */
    uint64_t floor; /* every offset in (floor, last] is held                             */
    char key[];     /* room NUL [channel NUL]                                            */
};

struct hring {
    struct hring_limits lim;
    struct hring_ring **buckets;
    size_t nbuckets, nrings;
    struct hring_entry *oldest, *newest;
    size_t messages, bytes;
    const struct arq_stored **out; /* the last query's answer                           */
    size_t out_cap;
    uint64_t seq; /* varies epochs when getrandom is unavailable                        */
};

/* --- epochs, hashing ------------------------------------------------------------------------ */

static uint64_t hring__mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* 16 lowercase hex digits from getrandom; should it fail (no entropy yet, no syscall), the
 * clock, the address and a counter still make it differ per ring and per run. */
static char *hring__new_epoch(struct hring *r)
{
    unsigned char b[8];
    char *epoch = malloc(HRING_EPOCH_LEN + 1);
    if (!epoch)
        return NULL;
    if (getrandom(b, sizeof b, GRND_NONBLOCK) != (ssize_t)sizeof b) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = hring__mix((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
                     hring__mix((uint64_t)(uintptr_t)r + ++r->seq);
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)(x >> (8 * i));
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof b; i++) {
        epoch[2 * i] = hex[b[i] >> 4];
        epoch[2 * i + 1] = hex[b[i] & 15];
    }
    epoch[HRING_EPOCH_LEN] = '\0';
    return epoch;
}

/* FNV-1a over room, then a marker telling "no channel" from any channel, then the channel. */
static uint64_t hring__hash(const char *room, const char *channel)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (const unsigned char *p = (const unsigned char *)room; *p; p++)
        h = (h ^ *p) * 0x100000001b3u;
    h = (h ^ (channel ? 1u : 2u)) * 0x100000001b3u;
    for (const unsigned char *p = (const unsigned char *)(channel ? channel : ""); *p; p++)
        h = (h ^ *p) * 0x100000001b3u;
    return h;
}

/* --- rings ---------------------------------------------------------------------------------- */

static struct hring_entry *hring__at(const struct hring_ring *g, size_t i)
{
    return g->slot[(g->head + i) % g->cap];
}

static struct hring_ring *hring__find(const struct hring *r, const char *room, const char *channel,
                                      uint64_t hash)
{
    for (struct hring_ring *g = r->buckets[hash & (r->nbuckets - 1)]; g; g = g->next) {
        if (g->hash != hash || strcmp(g->room, room) != 0)
            continue;
        if (channel ? g->channel && strcmp(g->channel, channel) == 0 : !g->channel)
            return g;
    }
    return NULL;
}

/* Double the bucket array; on allocation failure the map simply stays more loaded. */
static void hring__grow_buckets(struct hring *r)
{
    size_t n = r->nbuckets * 2;
    struct hring_ring **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < r->nbuckets; i++) {
        for (struct hring_ring *g = r->buckets[i], *next; g; g = next) {
            next = g->next;
            g->next = b[g->hash & (n - 1)];
            b[g->hash & (n - 1)] = g;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->nbuckets = n;
}

/* The ring of room/channel, made (empty, with a new epoch) when missing. NULL: out of memory. */
static struct hring_ring *hring__ring(struct hring *r, const char *room, const char *channel)
{
    uint64_t hash = hring__hash(room, channel);
    struct hring_ring *g = hring__find(r, room, channel, hash);
    if (g)
        return g;
    size_t rlen = strlen(room), clen = channel ? strlen(channel) + 1 : 0;
    g = calloc(1, sizeof *g + rlen + 1 + clen);
    if (!g)
        return NULL;
    if (!(g->epoch = hring__new_epoch(r))) {
        free(g);
        return NULL;
    }
    memcpy(g->key, room, rlen + 1);
    g->room = g->key;
    if (channel) {
        memcpy(g->key + rlen + 1, channel, clen);
        g->channel = g->key + rlen + 1;
    }
    g->hash = hash;
    if (r->nrings >= r->nbuckets)
        hring__grow_buckets(r);
    g->next = r->buckets[hash & (r->nbuckets - 1)];
    r->buckets[hash & (r->nbuckets - 1)] = g;
    r->nrings++;
    return g;
}

/* The capacity `g` needs for `want` entries (at most `max`), or 0 when it has it. */
static size_t hring__grown_cap(const struct hring_ring *g, size_t want, size_t max)
{
    if (want <= g->cap)
        return 0;
    size_t cap = g->cap ? g->cap : HRING_MIN_SLOTS;
    while (cap < want)
        cap *= 2;
    return cap < max ? cap : max;
}

static int hring__resize(struct hring_ring *g, size_t cap)
{
    struct hring_entry **slot = malloc(cap * sizeof *slot);
    if (!slot)
        return ARQ_ENOMEM;
    for (size_t i = 0; i < g->count; i++)
        slot[i] = hring__at(g, i);
    free(g->slot);
    g->slot = slot;
    g->cap = cap;
    g->head = 0;
    return 0;
}

/* Drop the oldest entry of `g` (which must have one). */
static void hring__drop_oldest(struct hring *r, struct hring_ring *g)
{
    /* The analyzer lets hring_append drop from an empty ring, as if max_history could be 0;
     * hring__store_limits keeps it >= 1 (reported as a NULL and an uninitialised slot).
     * NOLINTNEXTLINE(clang-analyzer-core.*) */
    struct hring_entry *e = g->slot[g->head];
    g->slot[g->head] = NULL;
    g->head = (g->head + 1) % g->cap;
    g->count--;
    if (e->st.offset > g->floor)
        g->floor = e->st.offset;
    if (e->older)
        e->older->newer = e->newer;
    else
        r->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        r->newest = e->older;
    r->messages--;
    r->bytes -= e->bytes;
    free(e);
}

static int hring__expired(const struct hring *r, const struct hring_entry *e, int64_t now_us)
{
    return r->lim.ttl_us > 0 && now_us - e->st.stored_us > r->lim.ttl_us;
}

/* Drop what the ttl says is too old: from the global oldest on, then from the front of `g`
 * (which catches a ring's entries behind a newer one should the clock have stepped back). */
static void hring__expire(struct hring *r, struct hring_ring *g, int64_t now_us)
{
    while (r->oldest && hring__expired(r, r->oldest, now_us))
        hring__drop_oldest(r, r->oldest->ring);
    while (g && g->count && hring__expired(r, g->slot[g->head], now_us))
        hring__drop_oldest(r, g);
}

/* The byte cap drops the globally oldest first, but never the newest message of all. */
static void hring__cap_bytes(struct hring *r)
{
    while (r->lim.max_bytes && r->bytes > r->lim.max_bytes && r->oldest != r->newest)
        hring__drop_oldest(r, r->oldest->ring);
}

/* --- public --------------------------------------------------------------------------------- */

static void hring__store_limits(struct hring *r, const struct hring_limits *limits)
{
    if (limits)
        r->lim = *limits;
    else
        r->lim = (struct hring_limits){.max_history = 10000};
    if (r->lim.max_history < 1)
        r->lim.max_history = 1;
    if (r->lim.ttl_us < 0)
        r->lim.ttl_us = 0;
}

struct hring *hring_new(const struct hring_limits *limits)
{
    struct hring *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->buckets = calloc(HRING_MIN_BUCKETS, sizeof *r->buckets);
    if (!r->buckets) {
        free(r);
        return NULL;
    }
    r->nbuckets = HRING_MIN_BUCKETS;
    hring__store_limits(r, limits);
    return r;
}

void hring_free(struct hring *r)
{
    if (!r)
        return;
    for (struct hring_entry *e = r->oldest, *next; e; e = next) {
        next = e->newer;
        free(e);
    }
    for (size_t i = 0; i < r->nbuckets; i++) {
        for (struct hring_ring *g = r->buckets[i], *next; g; g = next) {
            next = g->next;
            free(g->epoch);
            free(g->slot);
            free(g);
        }
    }
    free(r->buckets);
    free(r->out);
    free(r);
}

void hring_set_limits(struct hring *r, const struct hring_limits *limits)
{
    hring__store_limits(r, limits);
    for (size_t i = 0; i < r->nbuckets; i++) {
        for (struct hring_ring *g = r->buckets[i]; g; g = g->next) {
            while (g->count > r->lim.max_history)
                hring__drop_oldest(r, g);
            /* Give back slots beyond the new bound (should that fail, the larger array serves). */
            if (g->cap > r->lim.max_history)
                (void)hring__resize(g, r->lim.max_history);
        }
    }
    hring__cap_bytes(r);
}

int hring_append(struct hring *r, const struct arq_stored *msg, uint64_t offset, const char *epoch,
                 int64_t now_us, uint64_t *offset_out, const char **epoch_out)
{
    if (!r || !msg || !msg->room || (!msg->json && msg->json_len))
        return ARQ_EINVAL;
    struct hring_ring *g = hring__ring(r, msg->room, msg->channel);
    if (!g)
        return ARQ_ENOMEM;

    /* Everything that can fail comes first, so that a failure leaves the ring as it was. */
    int reset = epoch && strcmp(epoch, g->epoch) != 0;
    if (offset && offset <= (reset ? 0 : g->last))
        return ARQ_EINVAL;
    size_t idlen = msg->id ? strlen(msg->id) : 0;
    struct hring_entry *e = malloc(sizeof *e + idlen + 1 + msg->json_len + 1);
    char *new_epoch = reset ? strdup(epoch) : NULL;
    size_t count_after = reset ? 0 : g->count;
    size_t want = count_after < r->lim.max_history ? count_after + 1 : r->lim.max_history;
    size_t cap = hring__grown_cap(g, want, r->lim.max_history);
    if (!e || (reset && !new_epoch) || (cap && hring__resize(g, cap) != 0)) {
        free(e);
        free(new_epoch);
        return ARQ_ENOMEM;
    }

    if (reset) {
        while (g->count)
            hring__drop_oldest(r, g);
        free(g->epoch);
        g->epoch = new_epoch;
        g->last = g->floor = 0;
    }
    hring__expire(r, NULL, now_us);
    uint64_t off = offset ? offset : g->last + 1;
    if (off - 1 > g->last)
        g->floor = off - 1; /* a mirror's gap: offsets this ring never saw */
    if (g->count == r->lim.max_history)
        hring__drop_oldest(r, g);

    char *id = e->data, *json = e->data + idlen + 1;
    if (msg->id)
        memcpy(id, msg->id, idlen + 1);
    if (msg->json_len)
        memcpy(json, msg->json, msg->json_len);
    json[msg->json_len] = '\0';
    e->st = (struct arq_stored){.struct_size = sizeof e->st,
                                .room = g->room,
                                .channel = g->channel,
                                .id = msg->id ? id : NULL,
                                .timestamp_us = msg->timestamp_us,
                                .json = json,
                                .json_len = msg->json_len,
                                .offset = off,
                                .stored_us = now_us};
    e->ring = g;
    e->bytes = idlen + msg->json_len;
    e->newer = NULL;
    e->older = r->newest;
    if (r->newest)
        r->newest->newer = e;
    else
        r->oldest = e;
    r->newest = e;
    /* cap >= 1: the ring was grown above for want >= 1 entries (max_history >= 1, see
     * hring__store_limits). NOLINTNEXTLINE(clang-analyzer-core.DivideZero) */
    g->slot[(g->head + g->count) % g->cap] = e;
    g->count++;
    g->last = off;
    r->messages++;
    r->bytes += e->bytes;
    hring__cap_bytes(r);

    if (offset_out)
        *offset_out = off;
    if (epoch_out)
        *epoch_out = g->epoch;
    return 0;
}

/* The index in `g` of the first entry with an offset above `offset` (count if none). */
static size_t hring__first_after(const struct hring_ring *g, uint64_t offset)
{
    size_t lo = 0, hi = g->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (hring__at(g, mid)->st.offset <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int hring__in_window(const struct arq_stored *st, const struct arq_history_query *q)
{
    return (!q->since_us || st->stored_us >= q->since_us) &&
           (!q->until_us || st->stored_us <= q->until_us);
}

int hring_query(struct hring *r, const struct arq_history_query *q, int64_t now_us,
                const struct arq_stored *const **entries, size_t *n, const char **epoch,
                int *recovered)
{
    if (!r || !q || !q->room)
        return ARQ_EINVAL;
    struct hring_ring *g = hring__ring(r, q->room, q->channel);
    if (!g)
        return ARQ_ENOMEM;
    hring__expire(r, g, now_us);

    size_t want = q->limit < g->count ? q->limit : g->count;
    if (want > r->out_cap) {
        const struct arq_stored **out = realloc(r->out, want * sizeof *out);
        if (!out)
            return ARQ_ENOMEM;
        r->out = out;
        r->out_cap = want;
    }

    int epoch_ok = q->epoch ? strcmp(q->epoch, g->epoch) == 0 : q->since_offset == 0;
    size_t first = 0, got = 0;
    *recovered = 0;
    if (q->recover && epoch_ok && q->since_offset >= g->floor && q->since_offset <= g->last) {
        /* Exactly what came after since_offset, oldest first. */
        size_t from = hring__first_after(g, q->since_offset);
        for (size_t i = from; i < g->count && got < want; i++)
            r->out[got++] = &hring__at(g, i)->st;
        *recovered = 1;
    } else {
        /* The newest `want` in the window, gathered newest first from the end of `out`. */
        first = want;
        for (size_t i = g->count; i > 0 && first > 0; i--) {
            const struct arq_stored *st = &hring__at(g, i - 1)->st;
            if (hring__in_window(st, q))
                r->out[--first] = st;
        }
        got = want - first;
    }
    *entries = got ? (const struct arq_stored *const *)r->out + first : NULL;
    *n = got;
    *epoch = g->epoch;
    return 0;
}

size_t hring_messages(const struct hring *r)
{
    return r->messages;
}

size_t hring_bytes(const struct hring *r)
{
    return r->bytes;
}

size_t hring_rings(const struct hring *r)
{
    return r->nrings;
}
