/* broker-redis: several arqonbusd nodes as one bus, through Redis pub/sub (sharded pub/sub,
 * SSUBSCRIBE/SPUBLISH, by default). Each room has one pub/sub channel per room and per channel
 * of the room; a node subscribes to those it has local members of, and to its own node channel
 * for direct messages. A registry (client -> node) and presence sets, kept alive by a
 * heartbeat of the node's liveness key, answer lookups and cluster-wide listings. Several
 * servers in `url` are shards: a room lives on the server its name hashes to. README.md has
 * the options, the key and channel layout, the wire format and what each failure costs. */
#include <arqonbus/plugin.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bredis.h"

/* 1. Options. */
static const struct arq_option options[] = {
    ARQ_OPT_FIELD("url", ARQ_OPT_STRING, "redis://127.0.0.1:6379", 0,
                  "redis://[[user]:password@]host[:port][/db]; several, separated by commas or "
                  "spaces: shards, each room on the one its name hashes to",
                  ARQ_FIELD(struct broker, cfg.url)),
    ARQ_OPT_FIELD("password", ARQ_OPT_STRING, NULL, ARQ_OPT_SECRET,
                  "password sent with AUTH to servers whose url has none",
                  ARQ_FIELD(struct broker, cfg.password)),
    ARQ_OPT_FIELD("prefix", ARQ_OPT_STRING, "arqonbus", 0,
                  "first part of every key and pub/sub channel; nodes of one cluster share it",
                  ARQ_FIELD(struct broker, cfg.prefix)),
    ARQ_OPT_FIELD("sharded", ARQ_OPT_BOOL, "true", 0,
                  "Redis 7 sharded pub/sub (SSUBSCRIBE/SPUBLISH); false: SUBSCRIBE/PUBLISH",
                  ARQ_FIELD(struct broker, cfg.sharded)),
    ARQ_OPT_RANGE_FIELD("node_ttl", ARQ_OPT_DURATION, "10s", 300, 3600000, 0,
                        "a node that stops beating (every node_ttl/3) leaves the cluster's "
                        "listings and lookups after this long",
                        ARQ_FIELD(struct broker, cfg.node_ttl_ms)),
    ARQ_OPT_RANGE_FIELD("connect_timeout", ARQ_OPT_DURATION, "2s", 10, 600000, 0,
                        "how long a connection attempt may take before the server counts as down",
                        ARQ_FIELD(struct broker, cfg.connect_timeout_ms)),
    ARQ_OPT_END};

/* 2. Helpers shared by the plugin's files. */
int64_t broker__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

size_t broker__shard_of(const struct broker *b, const char *name)
{
    return b->nshards > 1 ? wire__hash(name) % b->nshards : 0;
}

int broker__name(const struct broker *b, char *out, size_t size, const char *kind, const char *room,
                 const char *channel)
{
    const char *p = b->cfg.prefix;
    int n;
    if (strcmp(kind, "room") == 0)
        n = channel ? snprintf(out, size, "%s:{%s}:%s", p, room, channel)
                    : snprintf(out, size, "%s:{%s}", p, room);
    else if (strcmp(kind, "node") == 0 || strcmp(kind, "nodekey") == 0)
        n = snprintf(out, size, "%s:node:{%s}", p, room);
    else if (strcmp(kind, "members") == 0)
        n = channel ? snprintf(out, size, "%s:{%s}#members:%s", p, room, channel)
                    : snprintf(out, size, "%s:{%s}#members", p, room);
    else if (strcmp(kind, "channels") == 0)
        n = snprintf(out, size, "%s:{%s}#channels", p, room);
    else
        n = snprintf(out, size, "%s#%s", p, kind); /* rooms, clients, nodes, sweep */
    return n < 0 || (size_t)n >= size ? -1 : n;
}

void broker__lost(struct broker *b, uint64_t n)
{
    b->host->metric_add(b->m_lost, (double)n);
}

static void broker__gauge(struct broker *b)
{
    size_t up = 0;
    for (size_t i = 0; i < b->nshards; i++)
        up += b->shards[i].state == BR_UP;
    b->host->metric_set(b->m_connected, (double)up);
}

/* 3. The heartbeat: the node's liveness key and client count, on every shard. */
/* cppcheck-suppress constParameter
 * (a br_reply_fn: its type is the shard's, shared with callbacks that write through arg) */
static void broker__on_beat(struct br_shard *sh, const void *reply, void *arg)
{
    const redisReply *r = reply;
    if (!r || !sh)
        return;
    struct broker *b = sh->b;
    if (r->type == REDIS_REPLY_ERROR) {
        ARQ_LOG(b->host, b->ctx, ARQ_LOG_WARN, "heartbeat refused", "redis", sh->where, "error",
                r->str);
        return;
    }
    /* The key had expired while we were up: this node was taken for dead, and others may
     * have swept its registrations. Tell the cluster everything again. */
    if (!arg && r->type == REDIS_REPLY_INTEGER && r->integer == 0 && sh->state == BR_UP) {
        ARQ_LOG(b->host, b->ctx, ARQ_LOG_WARN, "node expired in redis; registering again", "redis",
                sh->where);
        set__remove_shard(&b->subs, sh->index);
        b->host->broker_resync(b->ctx);
    }
}

static void broker__beat_shard(struct broker *b, struct br_shard *sh, int first)
{
    char key[BR_NAME_MAX], nodes[BR_NAME_MAX], clients[BR_NAME_MAX], sweep[BR_NAME_MAX];
    char value[64], ttl[32];
    snprintf(value, sizeof value, "%s %zu", b->inc, b->clients.n);
    snprintf(ttl, sizeof ttl, "%lld", (long long)b->cfg.node_ttl_ms);
    if (broker__name(b, key, sizeof key, "nodekey", b->node, NULL) < 0 ||
        broker__name(b, nodes, sizeof nodes, "nodes", NULL, NULL) < 0 ||
        broker__name(b, clients, sizeof clients, "clients", NULL, NULL) < 0 ||
        broker__name(b, sweep, sizeof sweep, "sweep", NULL, NULL) < 0)
        return;
    const char *argv[] = {"4", key, nodes, clients, sweep, b->cfg.prefix, b->node, value, ttl};
    shard__eval(sh, BR_LUA_HEARTBEAT, 9, argv, NULL, broker__on_beat, first ? b : NULL, 0);
}

static void broker__beat(struct broker *b)
{
    for (size_t i = 0; i < b->nshards; i++)
        if (b->shards[i].state == BR_UP)
            broker__beat_shard(b, &b->shards[i], 0);
    b->beat_due = 0;
    b->next_beat_us = broker__mono_us() + b->cfg.node_ttl_ms * 1000 / 3;
}

static void broker__tick(void *arg)
{
    struct broker *b = arg;
    int64_t now = broker__mono_us();
    for (size_t i = 0; i < b->nshards; i++)
        shard__tick(&b->shards[i], now);
    if (b->beat_due || now >= b->next_beat_us)
        broker__beat(b);
}

void broker__shard_up(struct broker *b, struct br_shard *sh)
{
    int again = sh->ever_up;
    sh->ever_up = 1;
    ARQ_LOG(b->host, b->ctx, ARQ_LOG_INFO, again ? "redis reachable again" : "redis connected",
            "redis", sh->where);
    if (again)
        b->host->metric_add(b->m_reconnects, 1);
    broker__gauge(b);
    broker__beat_shard(b, sh, 1);
    /* What this shard held may be gone (a restarted Redis is empty; subscriptions die with
     * the connection): the host replays subscriptions, registrations and presence. */
    set__remove_shard(&b->subs, sh->index);
    b->host->broker_resync(b->ctx);
}

void broker__shard_down(struct broker *b, struct br_shard *sh)
{
    set__remove_shard(&b->subs, sh->index);
    broker__gauge(b);
}

/* 4. The broker table. */
static void broker__on_published(struct br_shard *sh, const void *reply, void *arg)
{
    const redisReply *r = reply;
    (void)arg;
    if (!r || !sh)
        return; /* counted as lost by the connection */
    struct broker *b = sh->b;
    if (r->type == REDIS_REPLY_ERROR) {
        broker__lost(b, 1);
        ARQ_LOG(b->host, b->ctx, ARQ_LOG_WARN, "publish refused", "redis", sh->where, "error",
                r->str);
        return;
    }
    b->host->metric_add(b->m_published, 1);
}

static void broker__on_done(struct br_shard *sh, const void *reply, void *arg)
{
    const redisReply *r = reply;
    if (r && sh && r->type == REDIS_REPLY_ERROR)
        ARQ_LOG(sh->b->host, sh->b->ctx, ARQ_LOG_WARN, "redis refused a registration", "redis",
                sh->where, "what", (const char *)arg, "error", r->str);
}

static int broker_publish(void *self, const struct arq_broker_msg *msg)
{
    struct broker *b = self;
    if ((!msg->room && !msg->to_client) || b->stopping)
        return ARQ_EINVAL;
    struct br_shard *sh =
        &b->shards[broker__shard_of(b, msg->to_client ? msg->to_client : msg->room)];
    if (sh->state != BR_UP) {
        broker__lost(b, 1);
        return ARQ_EAGAIN;
    }
    struct arq_broker_msg m = *msg;
    m.origin = b->node;
    size_t plen;
    unsigned char *payload = wire__encode(&m, &plen);
    if (!payload) {
        broker__lost(b, 1);
        return ARQ_ENOMEM;
    }
    char chan[BR_NAME_MAX];
    int rc;
    if (msg->to_client) {
        if (broker__name(b, chan, sizeof chan, "clients", NULL, NULL) < 0) {
            free(payload);
            broker__lost(b, 1);
            return ARQ_EINVAL;
        }
        const char *argv[] = {
            "1", chan, b->cfg.prefix, msg->to_client, (const char *)payload, b->publish_cmd};
        size_t lens[] = {1,    strlen(chan),          strlen(b->cfg.prefix), strlen(msg->to_client),
                         plen, strlen(b->publish_cmd)};
        rc = shard__eval(sh, BR_LUA_DIRECT, 6, argv, lens, broker__on_published, NULL, 1);
    } else {
        if (broker__name(b, chan, sizeof chan, "room", msg->room, msg->channel) < 0) {
            free(payload);
            broker__lost(b, 1);
            return ARQ_EINVAL;
        }
        const char *argv[] = {b->publish_cmd, chan, (const char *)payload};
        size_t lens[] = {strlen(b->publish_cmd), strlen(chan), plen};
        size_t len;
        char *cmd = wire__command(3, argv, lens, &len);
        rc = cmd ? shard__send(sh, 0, cmd, len, broker__on_published, NULL, 1, 0) : -1;
    }
    free(payload);
    if (rc != 0) {
        broker__lost(b, 1);
        return ARQ_EAGAIN;
    }
    return ARQ_OK;
}

static int broker__subscription(struct broker *b, const char *room, const char *channel, int on)
{
    char chan[BR_NAME_MAX];
    if (!room || broker__name(b, chan, sizeof chan, "room", room, channel) < 0)
        return ARQ_EINVAL;
    size_t shard = broker__shard_of(b, room);
    struct br_shard *sh = &b->shards[shard];
    if (on ? set__has(&b->subs, chan) : !set__remove(&b->subs, chan))
        return ARQ_OK; /* already live (a resync), or not live (lost with its shard) */
    if (sh->state != BR_UP)
        return ARQ_EAGAIN; /* the resync after reconnecting subscribes it */
    const char *verb =
        b->cfg.sharded ? (on ? "SSUBSCRIBE" : "SUNSUBSCRIBE") : (on ? "SUBSCRIBE" : "UNSUBSCRIBE");
    const char *argv[] = {verb, chan};
    size_t len;
    char *cmd = wire__command(2, argv, NULL, &len);
    if (!cmd || shard__send(sh, 1, cmd, len, broker__on_done, "subscription", 0, 0) != 0)
        return ARQ_EAGAIN;
    if (on && set__add(&b->subs, chan, shard) < 0)
        return ARQ_ENOMEM;
    return ARQ_OK;
}

static int broker_subscribe(void *self, const char *room, const char *channel)
{
    return broker__subscription(self, room, channel, 1);
}

static int broker_unsubscribe(void *self, const char *room, const char *channel)
{
    return broker__subscription(self, room, channel, 0);
}

static int broker__registry(struct broker *b, const char *client_id, int on)
{
    if (!client_id)
        return ARQ_EINVAL;
    if (on ? set__add(&b->clients, client_id, 0) < 0 : 0)
        return ARQ_ENOMEM;
    if (!on && set__remove(&b->clients, client_id))
        b->beat_due = 1;
    if (on)
        b->beat_due = 1;
    struct br_shard *sh = &b->shards[broker__shard_of(b, client_id)];
    char key[BR_NAME_MAX];
    if (broker__name(b, key, sizeof key, "clients", NULL, NULL) < 0)
        return ARQ_EINVAL;
    if (sh->state != BR_UP)
        return ARQ_EAGAIN;
    if (on) {
        const char *argv[] = {"HSET", key, client_id, b->value};
        size_t len;
        char *cmd = wire__command(4, argv, NULL, &len);
        if (!cmd || shard__send(sh, 0, cmd, len, broker__on_done, "client", 0, 0) != 0)
            return ARQ_EAGAIN;
        return ARQ_OK;
    }
    const char *argv[] = {"1", key, b->cfg.prefix, client_id, b->value};
    if (shard__eval(sh, BR_LUA_UNREGISTER, 5, argv, NULL, broker__on_done, "client", 0) != 0)
        return ARQ_EAGAIN;
    return ARQ_OK;
}

static int broker_register_client(void *self, const char *client_id)
{
    return broker__registry(self, client_id, 1);
}

static int broker_unregister_client(void *self, const char *client_id)
{
    return broker__registry(self, client_id, 0);
}

static int broker_presence(void *self, const char *client_id, const char *room, const char *channel,
                           int joined)
{
    struct broker *b = self;
    if (!client_id || !room)
        return ARQ_EINVAL;
    struct br_shard *sh = &b->shards[broker__shard_of(b, room)];
    if (sh->state != BR_UP)
        return ARQ_EAGAIN;
    char target[BR_NAME_MAX], roomwide[BR_NAME_MAX], channels[BR_NAME_MAX], rooms[BR_NAME_MAX];
    if (broker__name(b, target, sizeof target, "members", room, channel) < 0 ||
        broker__name(b, roomwide, sizeof roomwide, "members", room, NULL) < 0 ||
        broker__name(b, channels, sizeof channels, "channels", room, NULL) < 0 ||
        broker__name(b, rooms, sizeof rooms, "rooms", NULL, NULL) < 0)
        return ARQ_EINVAL;
    const char *argv[] = {"4",
                          target,
                          roomwide,
                          channels,
                          rooms,
                          b->cfg.prefix,
                          client_id,
                          b->value,
                          joined ? "1" : "0",
                          room,
                          channel ? channel : ""};
    if (shard__eval(sh, BR_LUA_PRESENCE, 11, argv, NULL, broker__on_done, "presence", 0) != 0)
        return ARQ_EAGAIN;
    return ARQ_OK;
}

static int broker_query(void *self, const char *what, const char *room, const char *channel,
                        arq_result_cb cb, void *arg)
{
    return queries__query(self, what, room, channel, cb, arg);
}

/* 0 every server up, 1 some down, 2 all down (or none connected yet). */
static int broker_health(void *self, const char **detail)
{
    struct broker *b = self;
    size_t up = 0, at = 0;
    b->detail[0] = '\0';
    for (size_t i = 0; i < b->nshards; i++) {
        const struct br_shard *sh = &b->shards[i];
        if (sh->state == BR_UP) {
            up++;
            continue;
        }
        const char *why = sh->state == BR_RESOLVING || sh->state == BR_CONNECTING || !sh->outage
                              ? "connecting"
                              : sh->last_error;
        int n = snprintf(b->detail + at, sizeof b->detail - at, "%sredis %s: %s", at ? "; " : "",
                         sh->where, why);
        if (n > 0 && (size_t)n < sizeof b->detail - at)
            at += (size_t)n;
    }
    if (detail)
        *detail = b->detail[0] ? b->detail : NULL;
    return up == b->nshards ? 0 : up ? 1 : 2;
}

/* 5. Life cycle. */
static void broker__free(struct broker *b)
{
    free(b->shards);
    free(b->node);
    free(b->value);
    set__free(&b->subs);
    set__free(&b->clients);
    free(b);
}

/* The shards of `url`: one per URL, separated by commas and/or spaces. */
static int broker__shards(struct broker *b, const char *url, struct arq_error *err)
{
    size_t n = 0;
    for (const char *p = url; *p;) {
        p += strspn(p, ", \t");
        if (!*p)
            break;
        n++;
        p += strcspn(p, ", \t");
    }
    if (n == 0)
        return arq_error_set(err, ARQ_EINVAL, "url: no server given");
    if (!(b->shards = calloc(n, sizeof *b->shards)))
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    b->nshards = n;
    size_t i = 0;
    for (const char *p = url; *p;) {
        p += strspn(p, ", \t");
        if (!*p)
            break;
        size_t len = strcspn(p, ", \t");
        char one[1024];
        if (len >= sizeof one)
            return arq_error_set(err, ARQ_EINVAL, "url: server %zu is too long", i + 1);
        memcpy(one, p, len);
        one[len] = '\0';
        struct br_shard *sh = &b->shards[i];
        int rc = redis_url_parse(one, &sh->url, 1, "url", err);
        if (rc != ARQ_OK)
            return rc;
        sh->b = b;
        sh->index = i++;
        sh->state = BR_IDLE;
        redis_url_where(&sh->url, sh->where, sizeof sh->where);
        p += len;
    }
    return ARQ_OK;
}

static int broker__check_name(const char *what, const char *s, struct arq_error *err)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200)
        return arq_error_set(err, ARQ_EINVAL, "%s: 1 to 200 characters, got %zu", what, n);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == '{' || *p == '}' || *p == '#' || *p <= ' ' || *p == 0x7f)
            return arq_error_set(err, ARQ_EINVAL,
                                 "%s: braces, '#', spaces and control characters are not allowed "
                                 "(\"%s\")",
                                 what, s);
    return ARQ_OK;
}

static int broker_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                         struct arq_error *err)
{
    if (!ARQ_HOST_HAS(host, broker_deliver) || !ARQ_HOST_HAS(host, broker_resync))
        return arq_error_set(err, ARQ_ENOTSUP,
                             "this arqonbusd does not route through a broker (no broker_deliver)");
    struct broker *b = calloc(1, sizeof *b);
    if (!b)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    b->host = host;
    b->ctx = ctx;
    int rc = host->opt_fill(cfg, options, b, err);
    if (rc != ARQ_OK)
        goto fail;
    if ((rc = broker__check_name("prefix", b->cfg.prefix, err)) != ARQ_OK)
        goto fail;
    if ((rc = broker__shards(b, b->cfg.url, err)) != ARQ_OK)
        goto fail;
    if (b->cfg.password && !*b->cfg.password)
        b->cfg.password = NULL;
    b->publish_cmd = b->cfg.sharded ? "SPUBLISH" : "PUBLISH";
    const char *node = host->node_name(ctx);
    if (!node)
        node = "";
    if ((rc = broker__check_name("node name", node, err)) != ARQ_OK)
        goto fail;
    uint64_t inc;
    if (getrandom(&inc, sizeof inc, GRND_NONBLOCK) != (ssize_t)sizeof inc)
        inc = (uint64_t)broker__mono_us() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)b;
    snprintf(b->inc, sizeof b->inc, "%016llx", (unsigned long long)inc);
    size_t vlen = strlen(b->inc) + 1 + strlen(node) + 1;
    b->node = strdup(node);
    b->value = malloc(vlen);
    if (!b->node || !b->value) {
        rc = arq_error_set(err, ARQ_ENOMEM, "out of memory");
        goto fail;
    }
    snprintf(b->value, vlen, "%s %s", b->inc, node);
    *self = b;
    return ARQ_OK;
fail:
    broker__free(b);
    return rc;
}

static int broker_start(void *self, void *predecessor, struct arq_error *err)
{
    struct broker *b = self;
    const struct arq_host *h = b->host;
    (void)predecessor;
    b->m_published =
        arq_instance_series(h, b->ctx, ARQ_METRIC_COUNTER, "arqonbus_broker_published_total",
                            "Messages this node published to the broker");
    b->m_received =
        arq_instance_series(h, b->ctx, ARQ_METRIC_COUNTER, "arqonbus_broker_received_total",
                            "Messages from other nodes handed to local delivery");
    b->m_lost = arq_instance_series(
        h, b->ctx, ARQ_METRIC_COUNTER, "arqonbus_broker_lost_total",
        "Messages not published because the broker was down, or in flight when it went down");
    b->m_malformed =
        arq_instance_series(h, b->ctx, ARQ_METRIC_COUNTER, "arqonbus_broker_malformed_total",
                            "Messages from the broker dropped because they could not be decoded");
    b->m_reconnects =
        arq_instance_series(h, b->ctx, ARQ_METRIC_COUNTER, "arqonbus_broker_reconnects_total",
                            "Times a broker server was connected again after a loss");
    b->m_connected = arq_instance_series(h, b->ctx, ARQ_METRIC_GAUGE, "arqonbus_broker_connected",
                                         "Broker servers (shards) connected");
    b->tick = h->timer_start(b->ctx, BR_TICK_MS, BR_TICK_MS, broker__tick, b);
    if (!b->tick)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    b->next_beat_us = broker__mono_us() + b->cfg.node_ttl_ms * 1000 / 3;
    broker__gauge(b);
    for (size_t i = 0; i < b->nshards; i++)
        shard__start(&b->shards[i]);
    return ARQ_OK;
}

/* A node that stops says so: its liveness key goes (if it is still this instance's: a
 * replacement after a reload already wrote its own), so that its clients and members leave
 * the cluster's listings now rather than after node_ttl. Best effort: a crash is what the
 * time to live is for. */
static void broker__leave(struct broker *b)
{
    static const char script[] = "local v = redis.call('GET', KEYS[1])\n"
                                 "if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then\n"
                                 "  return redis.call('DEL', KEYS[1])\n"
                                 "end\n"
                                 "return 0\n";
    char key[BR_NAME_MAX];
    if (broker__name(b, key, sizeof key, "nodekey", b->node, NULL) < 0)
        return;
    const char *argv[] = {"EVAL", script, "1", key, b->inc};
    size_t len;
    char *buf = wire__command(5, argv, NULL, &len);
    for (size_t i = 0; buf && i < b->nshards; i++)
        shard__send_last(&b->shards[i], buf, len);
    free(buf);
}

static void broker_stop(void *self)
{
    struct broker *b = self;
    if (b->stopping)
        return;
    b->stopping = 1;
    b->host->timer_stop(b->tick);
    b->tick = NULL;
    broker__leave(b);
    for (size_t i = 0; i < b->nshards; i++)
        shard__close(&b->shards[i]);
    queries__close(b);
    broker__gauge(b);
}

static void broker_destroy(void *self)
{
    struct broker *b = self;
    broker_stop(b);
    broker__free(b);
}

static const struct arq_broker_ops ops = {
    .struct_size = sizeof ops,
    .publish = broker_publish,
    .subscribe = broker_subscribe,
    .unsubscribe = broker_unsubscribe,
    .register_client = broker_register_client,
    .unregister_client = broker_unregister_client,
    .presence = broker_presence,
    .query = broker_query,
    .health = broker_health,
};

/* 6. The descriptor, and the one exported symbol. */
static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "broker-redis",
    .version = "1.0.0",
    .summary = "several nodes as one bus through Redis pub/sub, with a registry and presence",
    .kind = ARQ_KIND_BROKER,
    .options = options,
    .create = broker_create,
    .start = broker_start,
    .stop = broker_stop,
    .destroy = broker_destroy,
    .ops = &ops,
};

ARQ_PLUGIN(descriptor)
