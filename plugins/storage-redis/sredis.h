/* storage-redis: state shared by the plugin's files.
 *
 *   storage_redis.c  options, url, life cycle, health, stats, the descriptor
 *   redis_link.c     the hiredis connection on the host loop: connect, handshake (AUTH, SELECT,
 *                    SCRIPT LOAD), timeouts, loss, reconnection with backoff
 *   redis_append.c   appends: the ordered queue, the fallback ring of degraded mode, replay
 *   redis_query.c    history queries through the query script, or from the fallback ring
 *   redis_lua.c      the two Lua scripts and the key names
 *
 * Everything runs on the host's loop thread. README.md has the key layout and the rules. */
#ifndef ARQ_STORAGE_REDIS_H
#define ARQ_STORAGE_REDIS_H

#include <arqonbus/plugin.h>
#include <stddef.h>
#include <stdint.h>

#include "redis_url.h"

struct hring;
struct sr_link;
struct sr_query;
struct sr_resolve;

#define SR_TICK_MS          100  /* housekeeping period: timeouts and reconnection */
#define SR_BACKOFF_FIRST_MS 100  /* first reconnection delay, doubled up to ...     */
#define SR_BACKOFF_MAX_MS   5000 /* ... this                                        */
#define SR_REPLY_TIMEOUT_MS 5000 /* least wait for a reply before the link is dropped */
#define SR_ID_KEY_MAX       200  /* longer message ids are hashed in their dedupe key */
#define SR_KEY_MAX          640  /* longest key: prefix, room, channel, message id */
#define SR_EPOCH_LEN        16   /* hex digits of an epoch */

enum sr_mode { SR_MODE_DEGRADED = 0, SR_MODE_STRICT };

enum sr_state {
    SR_IDLE,       /* not started, or stopped                                       */
    SR_RESOLVING,  /* looking the host name up (libuv's thread pool)                */
    SR_CONNECTING, /* TCP connect and the handshake are in flight                   */
    SR_READY,      /* the scripts are loaded: appends and queries go to Redis       */
    SR_WAITING     /* down: the next attempt is due at retry_at_us                  */
};

/* One append not yet answered by Redis: waiting for a connection, in flight, or buffered for
 * replay (already acknowledged from the fallback ring). One allocation with its strings. */
struct sr_pending {
    struct sr_pending *next;
    const char *room, *channel, *id, *json; /* channel NULL: room-wide */
    size_t json_len;
    size_t bytes; /* what it counts against max_fallback_bytes */
    int64_t timestamp_us, stored_us;
    arq_append_cb cb;
    void *arg;
    int acked; /* cb was called (from the fallback ring): Redis' answer is not awaited */
    int sent;  /* written to the current link */
};

struct sredis {
    const struct arq_host *host;
    arq_ctx *ctx;
    char *name; /* instance name, copied (metric labels, logs) */

    /* Options. */
    struct redis_url url;
    char where[300]; /* "host:port/db" for logs and health: never the password */
    char *password;  /* NULL: no AUTH */
    char *prefix;
    uint64_t max_history; /* RELOADABLE */
    int64_t ttl_ms;       /* RELOADABLE; 0: keys do not expire */
    int64_t dedupe_ms;    /* RELOADABLE */
    int64_t connect_timeout_ms;
    enum sr_mode mode;
    size_t max_fallback_bytes;

    /* The connection (redis_link.c). */
    enum sr_state state;
    struct sr_link *link;  /* the current link, NULL when none */
    struct sr_link *links; /* every link not yet freed (the current one and dying ones) */
    struct sr_resolve *resolve;
    int64_t attempt_us;  /* when the current attempt began */
    int64_t retry_at_us; /* SR_WAITING: when to try again */
    int64_t backoff_ms;
    int down;             /* an attempt failed or the link was lost, and none is ready since */
    int stopping;         /* stop or destroy began: no new work, no reconnection */
    char last_error[256]; /* why the last attempt failed or the link was lost */
    char sha_append[41];  /* SCRIPT LOAD results */
    char sha_query[41];
    arq_timer *tick;
    uint64_t reconnects;

    /* Appends (redis_append.c), in append order: those sent on the link first. */
    struct sr_pending *head, *tail;
    size_t queued, queued_bytes;
    size_t buffered; /* of the queue: acked from the ring, not yet in Redis */
    int fallback;    /* degraded since an outage began, until replayed */
    uint64_t outage_buffered, outage_replayed; /* this outage, for storage_recovered */
    int overflow_logged;
    struct hring *ring; /* degraded mode's store, own offsets and epochs; NULL when unused */

    /* Queries waiting for the first connection (redis_query.c). */
    struct sr_query *parked;
    struct sr_query *inflight; /* sent, not yet answered */

    uint64_t rng; /* for candidate epochs */
    char detail[1024];

    /* Metrics and counters. */
    arq_series *m_stored, *m_buffered_total, *m_replayed, *m_failed, *m_unavailable, *m_overflow;
    arq_series *m_fallback, *m_buffered;
    uint64_t n_stored, n_buffered, n_replayed, n_failed, n_unavailable, n_overflow;
};

/* storage_redis.c */
int64_t sredis__now_us(void);  /* wall clock: stored_at is compared with clients' clocks */
int64_t sredis__mono_us(void); /* monotonic: timeouts */
void sredis__new_epoch(struct sredis *s, char out[SR_EPOCH_LEN + 1]);

/* redis_link.c */
int link__start(struct sredis *s);  /* first attempt, and the tick; ARQ_ENOMEM */
void link__stop(struct sredis *s);  /* graceful: pending replies may still come */
void link__close(struct sredis *s); /* now: pending callbacks run, failed */
/* Send one command on the ready link; `fn` gets (link, reply or NULL, privdata) exactly once
 * unless this returns non-zero. */
typedef void (*link_reply_fn)(struct sr_link *l, void *reply, void *privdata);
int link__send(struct sredis *s, link_reply_fn fn, void *privdata, int argc, const char **argv,
               const size_t *lens);
/* The instance behind `l`, or NULL once it let go (destroy). */
struct sredis *link__owner(const struct sr_link *l);
/* Drop the link (a protocol surprise, a refused script): the loss is handled at once. */
void link__fail(struct sr_link *l, const char *why);
/* A reply arrived: the link makes progress. */
void link__progress(struct sr_link *l);
/* Whether a Redis error reply means "not now" (the command did not run; try on a new link). */
int link__transient(const char *err);

/* redis_append.c */
int appends__append(struct sredis *s, const struct arq_stored *msg, arq_append_cb cb, void *arg);
void appends__ready(struct sredis *s); /* the link is ready: send (replay) the queue */
void appends__lost(struct sredis *s);  /* the link is gone or the first attempt failed */
void appends__take(struct sredis *s, struct sredis *predecessor);
void appends__close(struct sredis *s); /* destroy: every waiting callback gets ARQ_ECLOSED */
void appends__gauges(struct sredis *s);
int appends__ring(struct sredis *s); /* make the ring if there is none; 0 or ARQ_ENOMEM */

/* redis_query.c */
int queries__query(struct sredis *s, const struct arq_history_query *q, arq_history_cb cb,
                   void *arg);
void queries__ready(struct sredis *s); /* send the parked queries */
void queries__lost(struct sredis *s);  /* answer the parked queries from the fallback */
void queries__close(struct sredis *s); /* destroy: parked queries get ARQ_ECLOSED */

/* redis_lua.c */
extern const char lua__append_src[];
extern const char lua__query_src[];
/* The stream key of room/channel ("<prefix>:{<room>}:<channel>", room-wide
 * "<prefix>:{<room>}:*room*") plus `suffix` ("" or "#seq", "#epoch", "#id:<id>"). Returns
 * the length, or -1 when it does not fit `size`. */
int keys__build(char *out, size_t size, const char *prefix, const char *room, const char *channel,
                const char *suffix, const char *id);

#endif
