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

/* 1. Options: the host validates these before create() sees the config. */
static const struct arq_option options[] = {
    ARQ_OPT_RANGE("interval", ARQ_OPT_DURATION, "10s", 100, 3600000, ARQ_OPT_RELOADABLE,
                  "how often to log the summary"),
    ARQ_OPT("label", ARQ_OPT_STRING, "events", ARQ_OPT_RELOADABLE, "word used in the summary"),
    ARQ_OPT_END};

/* 2. Instance state: everything lives here, nothing in globals. */
struct minimal {
    const struct arq_host *host;
    arq_ctx *ctx;
    arq_timer *timer;
    uint64_t interval_ms;
    char label[32];
    unsigned long seen;
    arq_series *seen_total;
};

static void summary(void *arg)
{
    struct minimal *m = arg;
    char seen[24];
    snprintf(seen, sizeof seen, "%lu", m->seen);
    ARQ_LOG(m->host, m->ctx, ARQ_LOG_INFO, "summary", "label", m->label, "seen", seen);
}

static void apply(struct minimal *m, const json_t *cfg)
{
    m->interval_ms = (uint64_t)m->host->opt_int(cfg, "interval", 10000);
    snprintf(m->label, sizeof m->label, "%s", m->host->opt_str(cfg, "label", "events"));
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
    apply(m, cfg);
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
    m->timer = m->host->timer_start(m->ctx, m->interval_ms, m->interval_ms, summary, m);
    return m->timer ? ARQ_OK : arq_error_set(err, ARQ_ENOMEM, "cannot start a timer");
}

static int minimal_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct minimal *m = self;
    (void)err;
    m->host->timer_stop(m->timer);
    apply(m, cfg);
    m->timer = m->host->timer_start(m->ctx, m->interval_ms, m->interval_ms, summary, m);
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
