/* telemetry-log: writes telemetry events as JSON lines to stderr or a file. */
#include <arqonbus/plugin.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct arq_option options[] = {
    ARQ_OPT("path", ARQ_OPT_STRING, NULL, ARQ_OPT_RELOADABLE,
            "append events to this file (created if missing); default: stderr"),
    ARQ_OPT("events", ARQ_OPT_STRING_LIST, NULL, ARQ_OPT_RELOADABLE,
            "event types to write, e.g. [reload_ok, reload_failed]; default: all"),
    ARQ_OPT_END};

struct tlog {
    const struct arq_host *host;
    arq_ctx *ctx;
    FILE *out;      /* stderr or owned file */
    json_t *events; /* array of wanted event types, or NULL for all */
    arq_series *written;
};

static int open_output(const json_t *cfg, const struct arq_host *host, FILE **out,
                       struct arq_error *err)
{
    const char *path = host->opt_str(cfg, "path", NULL);
    if (!path) {
        *out = stderr;
        return 0;
    }
    *out = fopen(path, "ae");
    if (!*out)
        return arq_error_set(err, ARQ_EIO, "cannot open \"%s\": %s", path, strerror(errno));
    return 0;
}

static void close_output(FILE *out)
{
    if (out && out != stderr)
        fclose(out);
}

static int tlog_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                       struct arq_error *err)
{
    struct tlog *t = calloc(1, sizeof *t);
    if (!t)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    t->host = host;
    t->ctx = ctx;
    if (open_output(cfg, host, &t->out, err) != 0) {
        free(t);
        return ARQ_EIO;
    }
    const json_t *events = host->opt_json(cfg, "events");
    t->events = events && json_array_size(events) ? json_incref((json_t *)events) : NULL;
    t->written =
        arq_instance_series(host, ctx, ARQ_METRIC_COUNTER, "arqonbus_telemetry_log_events_total",
                            "Telemetry events written by telemetry-log.");
    *self = t;
    return 0;
}

static int tlog_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct tlog *t = self;
    FILE *out;
    if (open_output(cfg, t->host, &out, err) != 0)
        return ARQ_EIO;
    close_output(t->out);
    t->out = out;
    json_decref(t->events);
    const json_t *events = t->host->opt_json(cfg, "events");
    t->events = events && json_array_size(events) ? json_incref((json_t *)events) : NULL;
    return 0;
}

static void tlog_destroy(void *self)
{
    struct tlog *t = self;
    close_output(t->out);
    json_decref(t->events);
    free(t);
}

static int wanted(const struct tlog *t, const char *type)
{
    if (!t->events)
        return 1;
    size_t i;
    json_t *v;
    json_array_foreach(t->events, i, v)
    {
        if (!strcmp(json_string_value(v), type))
            return 1;
    }
    return 0;
}

static void tlog_emit_batch(void *self, const struct arq_event *const *events, size_t n)
{
    struct tlog *t = self;
    size_t written = 0;
    for (size_t i = 0; i < n; i++) {
        if (!wanted(t, events[i]->event_type))
            continue;
        char *line = t->host->event_json(events[i]);
        if (!line)
            continue;
        fputs(line, t->out);
        fputc('\n', t->out);
        t->host->free(line);
        written++;
    }
    if (written) {
        fflush(t->out);
        if (t->written)
            t->host->metric_add(t->written, (double)written);
    }
}

static const struct arq_telemetry_ops ops = {
    .struct_size = sizeof ops,
    .emit_batch = tlog_emit_batch,
};

static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "telemetry-log",
    .version = "1.0.0",
    .summary = "writes telemetry events as JSON lines to stderr or a file",
    .kind = ARQ_KIND_TELEMETRY,
    .options = options,
    .create = tlog_create,
    .reconfigure = tlog_reconfigure,
    .destroy = tlog_destroy,
    .ops = &ops,
};

ARQ_PLUGIN(descriptor)
