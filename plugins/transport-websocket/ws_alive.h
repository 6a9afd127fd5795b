/* Keepalive bookkeeping: which connections are due a ping, and which did not answer one. Pure
 * list logic on a clock the caller passes in (whole seconds), so it is tested on its own
 * (tests/unit/test_ws_alive.c); ws_ping.c puts it on the loop.
 *
 * Every connection of a server shares one interval, so two FIFO lists replace a timer per
 * connection:
 *   live    ordered by the second of the last frame received: a received frame moves its
 *           connection to the tail, at most once per second (otherwise it costs a compare);
 *   pinged  ordered by the second the ping went out.
 * Both stay sorted because a node only ever joins a tail with the current second. Expiry reads
 * heads only: O(1) per received frame, O(expired) per tick, nothing allocated. */
#ifndef ARQ_WS_ALIVE_H
#define ARQ_WS_ALIVE_H

#include <stddef.h>
#include <stdint.h>

enum { WS_ALIVE_NONE = 0, WS_ALIVE_LIVE, WS_ALIVE_PINGED };

/* Embedded in the connection. Zeroed means on no list. */
struct ws_alive_node {
    struct ws_alive_node *prev, *next;
    uint32_t since; /* live: second of the last frame received; pinged: second of the ping */
    uint8_t list;   /* WS_ALIVE_* */
};

struct ws_alive_list {
    struct ws_alive_node *head, *tail;
    size_t n;
};

struct ws_alive {
    struct ws_alive_list live, pinged;
    uint32_t interval; /* seconds of silence before a ping; 0: nothing is tracked */
    uint32_t timeout;  /* seconds after the ping before the hangup (>= 1) */
};

typedef void (*ws_alive_cb)(struct ws_alive_node *n, void *arg);

void ws_alive__init(struct ws_alive *a, uint32_t interval, uint32_t timeout);
/* Start tracking `n` (zeroed, or removed before), as if a frame had arrived at `now`. Nothing
 * when the interval is 0. */
void ws_alive__add(struct ws_alive *a, struct ws_alive_node *n, uint32_t now);
/* Stop tracking `n`. Safe on a node on no list. */
void ws_alive__remove(struct ws_alive *a, struct ws_alive_node *n);
/* The slow half of ws_alive__seen: `n` moves to the tail of `live` with since = now. */
void ws_alive__relink(struct ws_alive *a, struct ws_alive_node *n, uint32_t now);

/* A frame arrived on `n` at `now`: a compare, and a relink at most once per second. */
static inline void ws_alive__seen(struct ws_alive *a, struct ws_alive_node *n, uint32_t now)
{
    if (n->list == WS_ALIVE_LIVE && n->since == now)
        return;
    if (n->list != WS_ALIVE_NONE)
        ws_alive__relink(a, n, now);
}

/* What is due at `now`: each pinged node whose ping is `timeout` seconds old leaves the lists
 * and gets `hangup`; then each live node silent for more than `interval` seconds (its last
 * frame came in second `since`, so since + interval + 1 <= now: a ping is never early, and at
 * most a second late) moves to `pinged` (since = now) and gets `ping`. Callbacks may remove
 * any node. Returns how many nodes were handled. */
size_t ws_alive__expire(struct ws_alive *a, uint32_t now, ws_alive_cb ping, ws_alive_cb hangup,
                        void *arg);
/* The earliest second at which ws_alive__expire has work, or UINT32_MAX when nothing is
 * tracked. */
uint32_t ws_alive__next(const struct ws_alive *a);

#endif
