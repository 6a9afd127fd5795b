/* storage-redis: message history in Redis Streams, shared by every arqonbusd that uses the
 * same Redis and key_prefix: one stream per channel (and per room for room-wide messages),
 * offsets and epochs decided by Redis in one Lua script per append, so that all nodes agree.
 *
 * When Redis is unreachable (at start or later), mode `degraded` keeps the bus storing: acks
 * and history come from an in-memory ring with its own epochs, and the buffered appends are
 * replayed to Redis, in order and exactly once, when it is back. Mode `strict` refuses instead
 * (appends and queries answer ARQ_EAGAIN). See README.md for the key layout and the rules. */
#include <arqonbus/plugin.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "history_ring.h"
#include "sredis.h"

/* 1. Options. */
static const char *const modes[] = {"degraded", "strict", NULL};

static const struct arq_option options[] = {
    ARQ_OPT("url", ARQ_OPT_STRING, "redis://127.0.0.1:6379", 0,
            "redis://host:port[/db] of the Redis server (no password here: see `password`)"),
    ARQ_OPT("password", ARQ_OPT_STRING, NULL, ARQ_OPT_SECRET,
            "password sent with AUTH after connecting; absent or empty: none"),
    ARQ_OPT("key_prefix", ARQ_OPT_STRING, "arqonbus", 0,
            "first part of every key; nodes sharing one history use the same prefix"),
    ARQ_OPT_RANGE("max_history", ARQ_OPT_INT, "10000", 1, 10000000, ARQ_OPT_RELOADABLE,
                  "messages kept per channel (and per room for room-wide messages)"),
    ARQ_OPT_RANGE("ttl", ARQ_OPT_DURATION, "0", 0, 31622400000.0, ARQ_OPT_RELOADABLE,
                  "older messages are not returned, and a channel idle this long is deleted; "
                  "0: kept until pushed out"),
    ARQ_OPT_RANGE("connect_timeout", ARQ_OPT_DURATION, "2s", 10, 600000, 0,
                  "how long a connection attempt may take before Redis counts as down"),
    ARQ_OPT_CHOICE("mode", modes, "degraded", 0,
                   "while Redis is down: degraded (keep history in memory and replay it "
                   "later) or strict (refuse to store or answer)"),
    ARQ_OPT_RANGE("max_fallback_bytes", ARQ_OPT_SIZE, "64MiB", 1024, 1099511627776.0, 0,
                  "messages waiting for Redis, in bytes; beyond it appends are refused"),
    ARQ_OPT_RANGE("dedupe_window", ARQ_OPT_DURATION, "1h", 1000, 31622400000.0, ARQ_OPT_RELOADABLE,
                  "how long Redis remembers a message id, so that a replayed append is stored "
                  "once; an outage longer than this may duplicate the few appends in flight "
                  "when it began"),
    ARQ_OPT_END};

/* 2. Helpers shared by the plugin's files. */
int64_t sredis__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t sredis__mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* splitmix64: candidate epochs need to differ between nodes and restarts, not to be secret. */
void sredis__new_epoch(struct sredis *s, char out[SR_EPOCH_LEN + 1])
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    snprintf(out, SR_EPOCH_LEN + 1, "%016llx", (unsigned long long)z);
}

/* Braces would move the hash tag off the room; the rest keeps keys readable in redis-cli. */
static int sredis__check_prefix(const char *prefix, struct arq_error *err)
{
    size_t n = strlen(prefix);
    if (n == 0 || n > 100)
        return arq_error_set(err, ARQ_EINVAL, "key_prefix: 1 to 100 characters, got %zu", n);
    for (const unsigned char *p = (const unsigned char *)prefix; *p; p++)
        if (*p == '{' || *p == '}' || *p <= ' ' || *p == 0x7f)
            return arq_error_set(err, ARQ_EINVAL,
                                 "key_prefix: braces, spaces and control characters are not "
                                 "allowed (\"%s\")",
                                 prefix);
    return ARQ_OK;
}

static void sredis__read_reloadable(struct sredis *s, const json_t *cfg)
{
    s->max_history = (uint64_t)s->host->opt_int(cfg, "max_history", 10000);
    s->ttl_ms = s->host->opt_int(cfg, "ttl", 0);
    s->dedupe_ms = s->host->opt_int(cfg, "dedupe_window", 3600000);
}

static void sredis__free(struct sredis *s)
{
    free(s->name);
    free(s->password);
    free(s->prefix);
    free(s);
}

/* 3. Life cycle. */
static int sredis_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                         struct arq_error *err)
{
    struct sredis *s = calloc(1, sizeof *s);
    if (!s)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    s->host = host;
    s->ctx = ctx;
    /* No credentials in the url: it shows in logs and status (`password` is SECRET). */
    int rc = redis_url_parse(host->opt_str(cfg, "url", "redis://127.0.0.1:6379"), &s->url, 0, "url",
                             err);
    if (rc != ARQ_OK)
        goto fail;
    const char *prefix = host->opt_str(cfg, "key_prefix", "arqonbus");
    if ((rc = sredis__check_prefix(prefix, err)) != ARQ_OK)
        goto fail;
    const char *password = host->opt_str(cfg, "password", NULL);
    s->name = strdup(host->instance_name(ctx));
    s->prefix = strdup(prefix);
    if (password && *password)
        s->password = strdup(password);
    if (!s->name || !s->prefix || (password && *password && !s->password)) {
        rc = arq_error_set(err, ARQ_ENOMEM, "out of memory");
        goto fail;
    }
    redis_url_where(&s->url, s->where, sizeof s->where);
    sredis__read_reloadable(s, cfg);
    s->connect_timeout_ms = host->opt_int(cfg, "connect_timeout", 2000);
    s->mode = strcmp(host->opt_str(cfg, "mode", "degraded"), "strict") == 0 ? SR_MODE_STRICT
                                                                            : SR_MODE_DEGRADED;
    s->max_fallback_bytes = (size_t)host->opt_int(cfg, "max_fallback_bytes", 64 << 20);
    if (getrandom(&s->rng, sizeof s->rng, GRND_NONBLOCK) != (ssize_t)sizeof s->rng)
        s->rng = (uint64_t)sredis__now_us() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)s;
    s->state = SR_IDLE;
    *self = s;
    return ARQ_OK;
fail:
    sredis__free(s);
    return rc;
}

static int sredis_start(void *self, void *predecessor, struct arq_error *err)
{
    struct sredis *s = self;
    static const char *const by_result[] = {"instance", "result", NULL};
    static const char *const by_instance[] = {"instance", NULL};
    arq_metric *appends = s->host->metric_register(
        s->ctx, ARQ_METRIC_COUNTER, "arqonbus_storage_appends_total",
        "Messages given to storage, by outcome: stored, buffered (kept in memory while the "
        "backend is down), replayed (buffered, then stored), failed, unavailable, overflow",
        by_result, NULL, 0);
    arq_metric *fallback = s->host->metric_register(
        s->ctx, ARQ_METRIC_GAUGE, "arqonbus_storage_fallback",
        "1 while storage answers from its in-memory fallback", by_instance, NULL, 0);
    arq_metric *buffered = s->host->metric_register(
        s->ctx, ARQ_METRIC_GAUGE, "arqonbus_storage_buffered_messages",
        "Messages kept in memory for the storage backend, not yet written to it", by_instance, NULL,
        0);
    if (appends) {
        const char *const results[] = {"stored", "buffered",    "replayed",
                                       "failed", "unavailable", "overflow"};
        arq_series **series[] = {&s->m_stored, &s->m_buffered_total, &s->m_replayed,
                                 &s->m_failed, &s->m_unavailable,    &s->m_overflow};
        for (size_t i = 0; i < sizeof results / sizeof results[0]; i++) {
            const char *labels[] = {s->name, results[i], NULL}; /* NULL: for hosts that count */
            *series[i] = s->host->metric_series(appends, labels);
        }
    }
    const char *labels[] = {s->name, NULL};
    if (fallback)
        s->m_fallback = s->host->metric_series(fallback, labels);
    if (buffered)
        s->m_buffered = s->host->metric_series(buffered, labels);
    if (predecessor)
        appends__take(s, predecessor);
    appends__gauges(s);
    if (link__start(s) != ARQ_OK)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    return ARQ_OK;
}

/* max_history, ttl and dedupe_window apply to the next script call and to the ring. */
static int sredis_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct sredis *s = self;
    (void)err;
    sredis__read_reloadable(s, cfg);
    if (s->ring) {
        struct hring_limits lim = {.max_history = (size_t)s->max_history,
                                   .max_bytes = s->max_fallback_bytes,
                                   .ttl_us = s->ttl_ms * 1000};
        hring_set_limits(s->ring, &lim);
    }
    return ARQ_OK;
}

static void sredis_stop(void *self)
{
    link__stop(self);
}

static void sredis_destroy(void *self)
{
    struct sredis *s = self;
    link__close(s);
    queries__close(s);
    appends__close(s);
    sredis__free(s);
}

/* 4. The storage work. */
static int sredis_append(void *self, const struct arq_stored *msg, arq_append_cb cb, void *arg)
{
    return appends__append(self, msg, cb, arg);
}

static int sredis_query(void *self, const struct arq_history_query *q, arq_history_cb cb, void *arg)
{
    return queries__query(self, q, cb, arg);
}

static int sredis_health(void *self, const char **detail)
{
    struct sredis *s = self;
    const char *text = NULL;
    int health = 0;
    if (s->mode == SR_MODE_STRICT && s->down) {
        health = 2;
        snprintf(s->detail, sizeof s->detail, "redis at %s unreachable (%s): history unavailable",
                 s->where, s->last_error);
        text = s->detail;
    } else if (s->fallback && s->state == SR_READY) {
        health = 1;
        snprintf(s->detail, sizeof s->detail, "replaying %zu buffered messages to redis at %s",
                 s->buffered, s->where);
        text = s->detail;
    } else if (s->fallback || (s->down && s->mode == SR_MODE_DEGRADED)) {
        health = 1;
        snprintf(s->detail, sizeof s->detail,
                 "redis at %s unreachable (%s): history kept in memory, %zu messages buffered",
                 s->where, s->last_error, s->buffered);
        text = s->detail;
    } else if (s->state == SR_RESOLVING || s->state == SR_CONNECTING) {
        snprintf(s->detail, sizeof s->detail, "connecting to redis at %s", s->where);
        text = s->detail;
    }
    if (detail)
        *detail = text;
    return health;
}

static json_t *sredis_stats(void *self)
{
    struct sredis *s = self;
    static const char *const states[] = {"idle", "resolving", "connecting", "ready", "waiting"};
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:s?, s:{s:I, s:I, s:I, s:I, s:I, s:I},"
        " s:{s:I, s:I}}",
        "backend", "redis", "redis", s->where, "state", states[s->state], "mode",
        s->mode == SR_MODE_STRICT ? "strict" : "degraded", "fallback", s->fallback, "queued",
        (json_int_t)s->queued, "queued_bytes", (json_int_t)s->queued_bytes, "buffered",
        (json_int_t)s->buffered, "connect_attempts", (json_int_t)s->reconnects, "last_error",
        s->last_error[0] ? s->last_error : NULL, "appends", "stored", (json_int_t)s->n_stored,
        "buffered", (json_int_t)s->n_buffered, "replayed", (json_int_t)s->n_replayed, "failed",
        (json_int_t)s->n_failed, "unavailable", (json_int_t)s->n_unavailable, "overflow",
        (json_int_t)s->n_overflow, "fallback_ring", "messages",
        (json_int_t)(s->ring ? hring_messages(s->ring) : 0), "bytes",
        (json_int_t)(s->ring ? hring_bytes(s->ring) : 0));
}

static const struct arq_storage_ops ops = {
    .struct_size = sizeof ops,
    .append = sredis_append,
    .query = sredis_query,
    .health = sredis_health,
    .stats = sredis_stats,
};

/* 5. The descriptor, and the one exported symbol. */
static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "storage-redis",
    .version = "1.0.0",
    .summary = "message history in Redis Streams, shared by nodes, with an in-memory fallback",
    .kind = ARQ_KIND_STORAGE,
    .options = options,
    .create = sredis_create,
    .start = sredis_start,
    .reconfigure = sredis_reconfigure,
    .stop = sredis_stop,
    .destroy = sredis_destroy,
    .ops = &ops,
};

ARQ_PLUGIN(descriptor)
