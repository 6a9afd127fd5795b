/* broker-redis: state shared by the plugin's files.
 *
 *   broker_redis.c  options, life cycle, the broker table (publish, subscribe, registry,
 *                   presence), heartbeat, health, metrics, the descriptor
 *   bredis_shard.c  one Redis server: two raw RESP connections on the host loop (commands,
 *                   and pub/sub), handshake, timeouts, loss, reconnection with backoff
 *   bredis_wire.c   the message format on the wire, RESP command building, string sets
 *   bredis_query.c  cluster-wide queries, merged over the shards
 *   bredis_lua.c    the Lua scripts
 *
 * Everything runs on the host's loop thread. README.md has the key and channel layout. */
#ifndef ARQ_BROKER_REDIS_H
#define ARQ_BROKER_REDIS_H

#include <arqonbus/plugin.h>
#include <stddef.h>
#include <stdint.h>

#include "redis_url.h"

struct br_conn;
struct br_resolve;
struct br_query;
struct br_shard;

#define BR_TICK_MS          100  /* housekeeping: timeouts, retries, coalesced heartbeats */
#define BR_BACKOFF_FIRST_MS 100  /* first reconnection delay, doubled up to ...           */
#define BR_BACKOFF_MAX_MS   5000 /* ... this                                              */
#define BR_REPLY_TIMEOUT_MS 5000 /* least wait for a reply before the server counts as down */
#define BR_NAME_MAX         1024 /* longest channel or key name built */

enum br_script {
    BR_LUA_PRESENCE,
    BR_LUA_UNREGISTER,
    BR_LUA_HEARTBEAT,
    BR_LUA_DIRECT,
    BR_LUA_QUERY
};
#define BR_LUA_COUNT 5

/* A reply, or NULL when the connection ended before it came (or the instance is closing). */
typedef void (*br_reply_fn)(struct br_shard *sh, const void *reply, void *arg);

enum br_state {
    BR_IDLE,       /* not started, or stopped                          */
    BR_RESOLVING,  /* looking the host name up (libuv's thread pool)   */
    BR_CONNECTING, /* TCP connects and the handshakes are in flight    */
    BR_UP,         /* both connections ready, the node channel subscribed */
    BR_WAITING     /* down: the next attempt is due at retry_at_us     */
};

struct br_shard {
    struct broker *b;
    size_t index;
    struct redis_url url;
    char where[300]; /* "host:port/db": never the password */
    enum br_state state;
    struct br_conn *cmd, *sub; /* NULL when not connected */
    struct br_resolve *resolve;
    int handshake; /* replies awaited before the shard is up */
    int64_t attempt_us, retry_at_us, backoff_ms;
    int ever_up; /* was up once: the next up is a reconnection */
    int outage;  /* down since the last up (or never up): loss logged once */
    char last_error[256];
    char sha[BR_LUA_COUNT][41];
};

/* A set of strings, each with the shard it belongs to. */
struct br_set {
    struct br_entry **buckets;
    size_t nbuckets, n;
};

struct broker {
    const struct arq_host *host;
    arq_ctx *ctx;

    struct {
        const char *url, *password, *prefix; /* borrowed from the create cfg */
        _Bool sharded;
        int64_t node_ttl_ms, connect_timeout_ms;
    } cfg;
    const char *publish_cmd; /* "SPUBLISH" or "PUBLISH" */
    char *node;              /* host->node_name, copied */
    char inc[17];            /* this incarnation: registrations of an older one are dead */
    char *value;             /* "<inc> <node>": what registry and presence entries hold */

    size_t nshards;
    struct br_shard *shards;

    struct br_set subs;    /* pub/sub channels subscribed on an up shard */
    struct br_set clients; /* local clients registered */
    struct br_query *queries;
    arq_timer *tick;
    int64_t next_beat_us;
    int beat_due; /* the client count changed: beat at the next tick */
    int stopping;
    char detail[1024];

    arq_series *m_published, *m_received, *m_lost, *m_malformed, *m_reconnects, *m_connected;
    uint64_t n_own; /* own messages echoed back by Redis, dropped */
};

/* broker_redis.c */
int64_t broker__mono_us(void);
void broker__shard_up(struct broker *b, struct br_shard *sh);   /* after the handshakes */
void broker__shard_down(struct broker *b, struct br_shard *sh); /* its subscriptions are gone */
void broker__lost(struct broker *b, uint64_t n);
size_t broker__shard_of(const struct broker *b, const char *name);
/* Names: kind "room" (pub/sub channel of a room or of one of its channels), "node" (pub/sub
 * channel of a node), and the keys "members" (room-wide, or a channel's), "channels",
 * "rooms", "clients", "nodes", "nodekey", "sweep". -1 when it does not fit. */
int broker__name(const struct broker *b, char *out, size_t size, const char *kind, const char *room,
                 const char *channel);

/* bredis_shard.c */
void shard__start(struct br_shard *sh);
void shard__tick(struct br_shard *sh, int64_t now_us);
void shard__close(struct br_shard *sh); /* now: awaited replies get NULL */
/* Send a command on the command (sub 0) or subscriber (sub 1) connection of an up shard (or
 * one in its handshake, with `early`): `buf` (taken: freed here) is the RESP text. `fn` gets
 * the reply once unless this fails (-1: not connected). `publish`: counted as lost if the
 * connection ends first. */
int shard__send(struct br_shard *sh, int sub, char *buf, size_t len, br_reply_fn fn, void *arg,
                int publish, int early);
/* Write `len` bytes of RESP text on the command connection of an up shard now, if the socket
 * takes them at once (nothing queued before them), and expect no reply: a last word before
 * shard__close. 0, or -1 when not written. */
int shard__send_last(struct br_shard *sh, const char *buf, size_t len);
/* EVALSHA script `which` with `nkeys` keys then arguments, on the command connection. */
int shard__eval(struct br_shard *sh, enum br_script which, int argc, const char **argv,
                const size_t *lens, br_reply_fn fn, void *arg, int publish);

/* bredis_wire.c: RESP text of a command (malloc'd, length in *len), NULL on allocation
 * failure. */
char *wire__command(int argc, const char **argv, const size_t *lens, size_t *len);
/* The message as it travels: header, strings and frame. NULL on allocation failure. */
unsigned char *wire__encode(const struct arq_broker_msg *msg, size_t *len);
/* Decode `data` in place into msg (strings point into data). 0, or -1 when malformed. */
int wire__decode(const unsigned char *data, size_t len, struct arq_broker_msg *msg);
int set__add(struct br_set *s, const char *key, size_t shard); /* 1 added, 0 had it, -1 ENOMEM */
int set__remove(struct br_set *s, const char *key);            /* 1 removed, 0 absent */
int set__has(const struct br_set *s, const char *key);
void set__remove_shard(struct br_set *s, size_t shard);
void set__free(struct br_set *s);
uint32_t wire__hash(const char *s); /* FNV-1a */

/* bredis_query.c */
int queries__query(struct broker *b, const char *what, const char *room, const char *channel,
                   arq_result_cb cb, void *arg);
void queries__close(struct broker *b);

/* bredis_lua.c */
extern const char *const lua__src[BR_LUA_COUNT];

#endif
