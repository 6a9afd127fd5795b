/* In-memory message history, shared by storage-memory (its whole store) and storage-redis
 * (its fallback while Redis is away): one ring per room/channel (and one per room for
 * room-wide messages), each with its own increasing offsets (from 1) and an epoch made when the
 * ring is made. Bounded per ring (max_history), in total bytes (max_bytes: the globally oldest
 * message goes first), and optionally by age (ttl).
 *
 * Not thread-safe (loop thread). Static library linked into each plugin that needs it; no
 * global state. */
#ifndef ARQ_PLUGINS_HISTORY_RING_H
#define ARQ_PLUGINS_HISTORY_RING_H

#include <arqonbus/plugin.h>
#include <stddef.h>
#include <stdint.h>

struct hring;

struct hring_limits {
    size_t max_history; /* messages per ring (>= 1)                                  */
    size_t max_bytes;   /* all rings together; 0: unbounded                           */
    int64_t ttl_us;     /* older messages are dropped; 0: keep until pushed out        */
};

struct hring *hring_new(const struct hring_limits *limits);
void hring_free(struct hring *r);
/* New limits apply at once (trimming what no longer fits). */
void hring_set_limits(struct hring *r, const struct hring_limits *limits);

/* Copy `msg` into its ring. `offset` 0: the ring's next offset; else that offset (a mirror of
 * offsets decided elsewhere, e.g. Redis; must be greater than the ring's last). `epoch` NULL:
 * the ring's own (a new ring gets a random one); else the ring takes that epoch (mirroring),
 * and a different one than it had resets the ring. Fills *offset_out and *epoch_out (valid until
 * the next call that changes `r`). 0, or ARQ_ENOMEM / ARQ_EINVAL. */
int hring_append(struct hring *r, const struct arq_stored *msg, uint64_t offset, const char *epoch,
                 int64_t now_us, uint64_t *offset_out, const char **epoch_out);

/* Answer `q` as struct arq_history_query documents. *entries (n of them) and *epoch stay valid
 * until the next call that changes `r`. A ring that does not exist yet is created (it gets its
 * epoch), so that a client can recover from since_offset 0 later. 0 or ARQ_ENOMEM. */
int hring_query(struct hring *r, const struct arq_history_query *q, int64_t now_us,
                const struct arq_stored *const **entries, size_t *n, const char **epoch,
                int *recovered);

/* Totals, for stats and tests. */
size_t hring_messages(const struct hring *r);
size_t hring_bytes(const struct hring *r);
size_t hring_rings(const struct hring *r);

#endif
