/* storage-memory: message history kept in this process's memory, one ring per channel (and one
 * per room for room-wide messages), with offsets and an epoch per ring for recovery (see
 * plugins/common/history_ring.h). Nothing survives a restart: a restarted bus gives every
 * channel a new epoch, so clients learn that their offsets no longer apply.
 *
 * Every answer is synchronous: append and query call their callback before returning. All
 * three limits are RELOADABLE and change in place, so a SIGHUP keeps the history. */
#include <arqonbus/plugin.h>
#include <jansson.h>
#include <stdlib.h>
#include <time.h>

#include "history_ring.h"

/* 1. Options, bound to the struct the host fills (their defaults are here only). */
struct memstore_cfg {
    size_t max_history;
    size_t max_bytes;
    int64_t ttl_ms;
};

static const struct arq_option options[] = {
    ARQ_OPT_RANGE_FIELD("max_history", ARQ_OPT_INT, "10000", 1, 10000000, ARQ_OPT_RELOADABLE,
                        "messages kept per channel (and per room for room-wide messages)",
                        ARQ_FIELD(struct memstore_cfg, max_history)),
    ARQ_OPT_RANGE_FIELD("max_bytes", ARQ_OPT_SIZE, "256MiB", 0, 1099511627776.0, ARQ_OPT_RELOADABLE,
                        "message bytes kept in all, the oldest message going first; 0: unbounded",
                        ARQ_FIELD(struct memstore_cfg, max_bytes)),
    ARQ_OPT_RANGE_FIELD("ttl", ARQ_OPT_DURATION, "0", 0, 31622400000.0, ARQ_OPT_RELOADABLE,
                        "older messages are dropped; 0: kept until pushed out",
                        ARQ_FIELD(struct memstore_cfg, ttl_ms)),
    ARQ_OPT_END};

/* 2. Instance state. */
struct memstore {
    const struct arq_host *host;
    arq_ctx *ctx;
    struct hring *ring;
};

static int memstore__limits(const struct arq_host *host, const json_t *cfg,
                            struct hring_limits *lim, struct arq_error *err)
{
    struct memstore_cfg c = {0};
    int rc = host->opt_fill(cfg, options, &c, err);
    if (rc != ARQ_OK)
        return rc;
    *lim = (struct hring_limits){
        .max_history = c.max_history,
        .max_bytes = c.max_bytes,
        .ttl_us = c.ttl_ms * 1000,
    };
    return ARQ_OK;
}

/* stored_at is wall-clock time: clients compare it, and since/until, with their own clocks. */
static int64_t memstore__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* 3. Life cycle. */
static int memstore_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg,
                           void **self, struct arq_error *err)
{
    struct memstore *m = calloc(1, sizeof *m);
    if (!m)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    m->host = host;
    m->ctx = ctx;
    struct hring_limits lim;
    int rc = memstore__limits(host, cfg, &lim, err);
    if (rc != ARQ_OK) {
        free(m);
        return rc;
    }
    if (!(m->ring = hring_new(&lim))) {
        free(m);
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    }
    *self = m;
    return ARQ_OK;
}

/* Every option is RELOADABLE: new limits apply to the history already held. */
static int memstore_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct memstore *m = self;
    struct hring_limits lim;
    int rc = memstore__limits(m->host, cfg, &lim, err);
    if (rc == ARQ_OK)
        hring_set_limits(m->ring, &lim);
    return rc;
}

static void memstore_destroy(void *self)
{
    struct memstore *m = self;
    hring_free(m->ring);
    free(m);
}

/* 4. The storage work. */
static int memstore_append(void *self, const struct arq_stored *msg, arq_append_cb cb, void *arg)
{
    struct memstore *m = self;
    uint64_t offset = 0;
    const char *epoch = NULL;
    int rc = hring_append(m->ring, msg, 0, NULL, memstore__now_us(), &offset, &epoch);
    if (rc != 0) {
        ARQ_LOG(m->host, m->ctx, ARQ_LOG_WARN, "cannot store a message", "room",
                msg && msg->room ? msg->room : "-", "channel",
                msg && msg->channel ? msg->channel : "-", "error",
                rc == ARQ_ENOMEM ? "out of memory" : "invalid message");
        return rc; /* refused at once: the callback does not come */
    }
    if (cb)
        cb(arg, ARQ_OK, offset, epoch);
    return ARQ_OK;
}

static int memstore_query(void *self, const struct arq_history_query *q, arq_history_cb cb,
                          void *arg)
{
    struct memstore *m = self;
    const struct arq_stored *const *entries = NULL;
    const char *epoch = NULL;
    size_t n = 0;
    int recovered = 0;
    int rc = hring_query(m->ring, q, memstore__now_us(), &entries, &n, &epoch, &recovered);
    if (rc != 0) {
        ARQ_LOG(m->host, m->ctx, ARQ_LOG_WARN, "cannot answer a history query", "room",
                q && q->room ? q->room : "-", "channel", q && q->channel ? q->channel : "-",
                "error", rc == ARQ_ENOMEM ? "out of memory" : "invalid query");
        return rc; /* refused at once: the callback does not come */
    }
    cb(arg, ARQ_OK, entries, n, epoch, recovered);
    return ARQ_OK;
}

static int memstore_health(void *self, const char **detail)
{
    (void)self;
    if (detail)
        *detail = NULL;
    return 0;
}

static json_t *memstore_stats(void *self)
{
    struct memstore *m = self;
    return json_pack("{s:I, s:I, s:I}", "messages", (json_int_t)hring_messages(m->ring), "bytes",
                     (json_int_t)hring_bytes(m->ring), "rings", (json_int_t)hring_rings(m->ring));
}

static const struct arq_storage_ops ops = {
    .struct_size = sizeof ops,
    .append = memstore_append,
    .query = memstore_query,
    .health = memstore_health,
    .stats = memstore_stats,
};

/* 5. The descriptor, and the one exported symbol. */
static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "storage-memory",
    .version = "1.0.0",
    .summary = "message history in memory, per channel, with offsets for recovery",
    .kind = ARQ_KIND_STORAGE,
    .options = options,
    .create = memstore_create,
    .reconfigure = memstore_reconfigure,
    .destroy = memstore_destroy,
    .ops = &ops,
};

ARQ_PLUGIN(descriptor)
