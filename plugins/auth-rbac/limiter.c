/* Client and subject rate-limit state (see limiter.h). */
#include "limiter.h"

#include <stdlib.h>
#include <string.h>

#define LIMITER_MIN_SLOTS 16

/* FNV-1a over `a`, and over '\0' and `b` when `b` is not NULL. */
static uint64_t limiter__hash(const char *a, const char *b)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)a; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    if (b) {
        h *= 0x100000001b3ull; /* the separator, a zero byte */
        for (const unsigned char *p = (const unsigned char *)b; *p; p++)
            h = (h ^ *p) * 0x100000001b3ull;
    }
    return h;
}

static int limiter__same(const struct limiter_entry *e, uint64_t hash, const char *a, const char *b)
{
    if (e->hash != hash || strcmp(e->key, a) != 0)
        return 0;
    return !b || strcmp(e->key + strlen(a) + 1, b) == 0;
}

/* Put `e` into `slots` (a free place exists). */
static void limiter__place(struct limiter_entry **slots, size_t cap, struct limiter_entry *e)
{
    size_t i = (size_t)e->hash & (cap - 1);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = e;
}

static int limiter__resize(struct limiter_map *m, size_t cap)
{
    struct limiter_entry **slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i])
            limiter__place(slots, cap, m->slots[i]);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

static struct limiter_entry *limiter__get(struct limiter_map *m, const char *a, const char *b,
                                          int64_t now_us)
{
    uint64_t hash = limiter__hash(a, b);
    if (m->cap) {
        for (size_t i = (size_t)hash & (m->cap - 1); m->slots[i]; i = (i + 1) & (m->cap - 1))
            if (limiter__same(m->slots[i], hash, a, b))
                return m->slots[i];
    }
    /* Missing: keep the load at most 3/4, then add. */
    if ((m->len + 1) * 4 > m->cap * 3 &&
        limiter__resize(m, m->cap ? m->cap * 2 : LIMITER_MIN_SLOTS) != 0)
        return NULL;
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    struct limiter_entry *e = calloc(1, sizeof *e);
    if (!e || !(e->key = malloc(la + 1 + lb + 1))) {
        free(e);
        return NULL;
    }
    memcpy(e->key, a, la + 1);
    if (b)
        memcpy(e->key + la + 1, b, lb + 1);
    else
        e->key[la + 1] = '\0';
    e->hash = hash;
    bucket_init(&e->messages, now_us);
    bucket_init(&e->commands, now_us);
    limiter__place(m->slots, m->cap, e);
    m->len++;
    return e;
}

struct limiter_entry *limiter_client(struct limiter *l, const char *client_id, int64_t now_us)
{
    return limiter__get(&l->clients, client_id, NULL, now_us);
}

struct limiter_entry *limiter_subject(struct limiter *l, const char *tenant, const char *subject,
                                      int64_t now_us)
{
    return limiter__get(&l->subjects, tenant ? tenant : "", subject, now_us);
}

/* The newest recorded refusal, or INT64_MIN. */
static int64_t limiter__last_refusal(const struct limiter_entry *e)
{
    return e->n ? e->refusals[(e->head + e->cap - 1) % e->cap] : INT64_MIN;
}

/* A ring of `cap` slots holding the newest min(n, cap) refusals of the old one, oldest first. */
static int limiter__resize_ring(struct limiter_entry *e, size_t cap)
{
    int64_t *ring = malloc(cap * sizeof *ring);
    if (!ring)
        return -1;
    size_t keep = e->n < cap ? e->n : cap;
    for (size_t k = 0; k < keep; k++)
        ring[k] = e->refusals[(e->head + e->cap - keep + k) % e->cap];
    free(e->refusals);
    e->refusals = ring;
    e->cap = cap;
    e->n = keep;
    e->head = keep % cap;
    return 0;
}

int limiter_refused(struct limiter_entry *e, int64_t now_us, size_t threshold, int64_t window_us)
{
    if (threshold == 0)
        return 0;
    if (e->cap != threshold && limiter__resize_ring(e, threshold) != 0)
        return 0;
    e->refusals[e->head] = now_us;
    e->head = (e->head + 1) % e->cap;
    if (e->n < e->cap)
        e->n++;
    if (e->n < threshold)
        return 0;
    /* The ring is full: the oldest of the last `threshold` refusals is where head points. */
    return now_us - e->refusals[e->head] < window_us;
}

static void limiter__free_entry(struct limiter_entry *e)
{
    free(e->refusals);
    free(e->key);
    free(e);
}

/* Remove slot i by shifting back the entries of its probe run (no tombstones). */
static void limiter__remove_at(struct limiter_map *m, size_t i)
{
    size_t mask = m->cap - 1;
    m->slots[i] = NULL;
    m->len--;
    for (size_t j = (i + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
        size_t home = (size_t)m->slots[j]->hash & mask;
        /* The entry at j may move to the hole at i unless its home lies in (i, j]. */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            m->slots[i] = m->slots[j];
            m->slots[j] = NULL;
            i = j;
        }
    }
}

static size_t limiter__sweep_map(struct limiter_map *m, int64_t now_us, int64_t window_us)
{
    size_t freed = 0;
    for (size_t i = 0; i < m->cap;) {
        struct limiter_entry *e = m->slots[i];
        int idle = e && bucket_full(&e->messages, now_us) && bucket_full(&e->commands, now_us) &&
                   !(limiter__last_refusal(e) != INT64_MIN &&
                     now_us - limiter__last_refusal(e) < window_us);
        if (idle) {
            limiter__remove_at(m, i);
            limiter__free_entry(e);
            freed++;
            continue; /* slot i may now hold an entry shifted back into it */
        }
        i++;
    }
    /* Shrink a mostly empty map to a quarter full; keep it as it is if memory is short. */
    if (m->cap > LIMITER_MIN_SLOTS && m->len * 8 < m->cap) {
        size_t cap = LIMITER_MIN_SLOTS;
        while (cap < m->len * 4)
            cap *= 2;
        if (cap < m->cap)
            (void)limiter__resize(m, cap);
    }
    return freed;
}

size_t limiter_sweep(struct limiter *l, int64_t now_us, int64_t window_us)
{
    return limiter__sweep_map(&l->clients, now_us, window_us) +
           limiter__sweep_map(&l->subjects, now_us, window_us);
}

size_t limiter_clients(const struct limiter *l)
{
    return l->clients.len;
}

size_t limiter_subjects(const struct limiter *l)
{
    return l->subjects.len;
}

size_t limiter_slots(const struct limiter *l)
{
    return l->clients.cap + l->subjects.cap;
}

static void limiter__free_map(struct limiter_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i])
            limiter__free_entry(m->slots[i]);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

void limiter_free(struct limiter *l)
{
    limiter__free_map(&l->clients);
    limiter__free_map(&l->subjects);
}
