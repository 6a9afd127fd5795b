/* example-minimal: the smallest useful ArqonBus plugin, a telemetry sink that counts events by
 * type and logs a summary every `interval`. Read it top to bottom: options, instance state,
 * life cycle, the kind's work, and the descriptor at the bottom.
 *
 * Build against the installed SDK:
 *   cc -std=c11 -fPIC -shared $(pkg-config --cflags arqonbus-sdk) minimal.c -o example-minimal.so
 * and install it into $(pkg-config --variable=plugindir arqonbus-sdk). */
#include <arqonbus/plugin.h>
#include <stdio.h>
#include <stdlib.h>

/* 1. Options: the host validates these before create() sees the config, and fills the struct
 * they are bound to (opt_fill), so each default is written once, here. */
struct minimal_cfg {
    uint64_t interval_ms;
    const char *label; /* borrowed from the cfg in force (see arq_host.opt_fill) */
};

static const struct arq_option options[] = {
    ARQ_OPT_RANGE_FIELD("interval", ARQ_OPT_DURATION, "10s", 100, 3600000, ARQ_OPT_RELOADABLE,
                        "how often to log the summary", ARQ_FIELD(struct minimal_cfg, interval_ms)),
    ARQ_OPT_FIELD("label", ARQ_OPT_STRING, "events", ARQ_OPT_RELOADABLE, "word used in the summary",
                  ARQ_FIELD(struct minimal_cfg, label)),
    ARQ_OPT_END};

/* 2. Instance state: everything lives here, nothing in globals. */
struct minimal {
    const struct arq_host *host;
    arq_ctx *ctx;
    arq_timer *timer;
    struct minimal_cfg cfg;
    unsigned long seen;
    arq_series *seen_total;
};

static void summary(void *arg)
{
    struct minimal *m = arg;
    char seen[24];
    snprintf(seen, sizeof seen, "%lu", m->seen);
    ARQ_LOG(m->host, m->ctx, ARQ_LOG_INFO, "summary", "label", m->cfg.label, "seen", seen);
}

/* 3. Life cycle. create() builds; start() begins work; the host frees timers we forget. */
static int minimal_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                          struct arq_error *err)
{
    struct minimal *m = calloc(1, sizeof *m);
    if (!m)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    m->host = host;
    m->ctx = ctx;
    int rc = host->opt_fill(cfg, options, &m->cfg, err);
    if (rc != ARQ_OK) {
        free(m);
        return rc;
    }
    arq_metric *fam =
        host->metric_register(ctx, ARQ_METRIC_COUNTER, "arqonbus_example_events_total",
                              "Events seen by example-minimal.", NULL, NULL, 0);
    m->seen_total = fam ? host->metric_series(fam, NULL) : NULL;
    *self = m;
    return ARQ_OK;
}

static int minimal_start(void *self, void *predecessor, struct arq_error *err)
{
    struct minimal *m = self;
    (void)predecessor;
    m->timer = m->host->timer_start(m->ctx, m->cfg.interval_ms, m->cfg.interval_ms, summary, m);
    return m->timer ? ARQ_OK : arq_error_set(err, ARQ_ENOMEM, "cannot start a timer");
}

/* All or nothing: fill a new struct, switch to it once nothing can fail. */
static int minimal_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct minimal *m = self;
    struct minimal_cfg next = m->cfg;
    int rc = m->host->opt_fill(cfg, options, &next, err);
    if (rc != ARQ_OK)
        return rc;
    arq_timer *t = m->host->timer_start(m->ctx, next.interval_ms, next.interval_ms, summary, m);
    if (!t)
        return arq_error_set(err, ARQ_ENOMEM, "cannot start a timer");
    m->host->timer_stop(m->timer);
    m->timer = t;
    m->cfg = next;
    return ARQ_OK;
}

static void minimal_destroy(void *self)
{
    free(self);
}

/* 4. The kind's work: a telemetry sink receives batches of events. */
static void minimal_emit_batch(void *self, const struct arq_event *const *events, size_t n)
{
    struct minimal *m = self;
    (void)events;
    m->seen += n;
    if (m->seen_total)
        m->host->metric_add(m->seen_total, (double)n);
}

static const struct arq_telemetry_ops ops = {
    .struct_size = sizeof ops,
    .emit_batch = minimal_emit_batch,
};

/* 5. The descriptor, and the one exported symbol. */
static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "example-minimal",
    .version = "1.0.0",
    .summary = "counts telemetry events and logs a summary",
    .kind = ARQ_KIND_TELEMETRY,
    .options = options,
    .create = minimal_create,
    .start = minimal_start,
    .reconfigure = minimal_reconfigure,
    .destroy = minimal_destroy,
    .ops = &ops,
};

ARQ_PLUGIN(descriptor)
