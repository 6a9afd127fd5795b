/* The rate-limit state of clients and subjects: token buckets in two hash maps (one keyed by
 * client id, one by tenant and subject), and each client's recent refusals for the abuse
 * threshold. Pure: time is a parameter.
 *
 * An entry is made the first time a limited action needs it and lives until a sweep finds it
 * indistinguishable from a new one: every bucket full again, and no refusal within the abuse
 * window. A client that left is therefore forgotten at most burst/rate (plus the window, plus
 * one sweep period) after its last action, and the maps do not grow with the clients that
 * come and go. */
#ifndef ARQ_AUTH_RBAC_LIMITER_H
#define ARQ_AUTH_RBAC_LIMITER_H

#include <stddef.h>
#include <stdint.h>

#include "bucket.h"

struct limiter_entry {
    char *key; /* client id; or tenant '\0' subject (tenant "" when none)   */
    uint64_t hash;
    struct bucket messages; /* a subject uses only this one                     */
    struct bucket commands;
    /* The newest refusals, a ring of `cap` timestamps (NULL until the first refusal). */
    int64_t *refusals;
    size_t cap, n, head; /* head: where the next one goes                       */
};

/* A map of entries (open addressing, linear probing). */
struct limiter_map {
    struct limiter_entry **slots;
    size_t cap, len; /* cap: 0 or a power of two */
};

struct limiter {
    struct limiter_map clients, subjects;
};

/* The entry of client `client_id`, made (with full buckets as of `now_us`) when missing.
 * NULL only when out of memory. No allocation when it exists. */
struct limiter_entry *limiter_client(struct limiter *l, const char *client_id, int64_t now_us);
/* The entry of `subject` of `tenant` (NULL: none), likewise. */
struct limiter_entry *limiter_subject(struct limiter *l, const char *tenant, const char *subject,
                                      int64_t now_us);

/* Record a refusal of `e` at `now_us`; 1 when it makes `threshold` refusals within `window_us`
 * (the abuse threshold passed), else 0. `threshold` 0 never answers 1. When out of memory the
 * refusal is not recorded and the answer is 0. */
int limiter_refused(struct limiter_entry *e, int64_t now_us, size_t threshold, int64_t window_us);

/* Free the entries that are full and have no refusal newer than `window_us`; the maps shrink
 * when mostly empty. Returns how many were freed. */
size_t limiter_sweep(struct limiter *l, int64_t now_us, int64_t window_us);

/* Entries held, and the maps' slot counts (for tests and status). */
size_t limiter_clients(const struct limiter *l);
size_t limiter_subjects(const struct limiter *l);
size_t limiter_slots(const struct limiter *l);

void limiter_free(struct limiter *l);

#endif
