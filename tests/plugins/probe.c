/* probe: a test plugin that makes its life cycle visible. It logs every step with a serial
 * number unique to the instance, ticks a counter on a timer (so a test can see that state
 * survives a reload), emits a telemetry event per tick, and can be told to fail at each step.
 * It is a telemetry sink, so it also records how many events it was given.
 *
 * With `state_file:` it also appends each step as one JSON line, so that a test waits on a
 * structured record rather than on log wording: {"event":"created"|"takes_over"|"started"|
 * "reconfigured"|"tick"|"stopped"|"destroyed", "instance", "serial", "label", "ticks"} (a tick
 * line every 10 ticks; "predecessor" with takes_over), and {"event":"telemetry", "instance",
 * "serial", "type", "source", "data"} for every event it is given other than its own ticks. */
#include <arqonbus/plugin.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static const char *const modes[] = {"normal", "loud", NULL};

static const struct arq_option options[] = {
    ARQ_OPT("label", ARQ_OPT_STRING, "probe", ARQ_OPT_RELOADABLE, "shown in every log line"),
    ARQ_OPT_RANGE("interval", ARQ_OPT_DURATION, "50ms", 1, 60000, ARQ_OPT_RELOADABLE,
                  "tick period"),
    ARQ_OPT("tag", ARQ_OPT_STRING, "a", 0, "a non-reloadable option: changing it replaces"),
    ARQ_OPT_RANGE("port", ARQ_OPT_INT, "9100", 0, 65535, 0, "an integer with a range"),
    ARQ_OPT_CHOICE("mode", modes, "normal", 0, "an enum"),
    ARQ_OPT("limit", ARQ_OPT_SIZE, "1MiB", 0, "a size"),
    ARQ_OPT("ratio", ARQ_OPT_DOUBLE, "0.5", 0, "a number"),
    ARQ_OPT("verbose", ARQ_OPT_BOOL, "false", 0, "a bool"),
    ARQ_OPT("names", ARQ_OPT_STRING_LIST, NULL, 0, "a list"),
    ARQ_OPT("extra", ARQ_OPT_JSON, NULL, 0, "any value"),
    ARQ_OPT("password", ARQ_OPT_STRING, NULL, ARQ_OPT_SECRET, "a secret"),
    ARQ_OPT("fail_create", ARQ_OPT_BOOL, "false", 0, "make create fail"),
    ARQ_OPT("fail_start", ARQ_OPT_BOOL, "false", 0, "make start fail"),
    ARQ_OPT("fail_reconfigure", ARQ_OPT_BOOL, "false", ARQ_OPT_RELOADABLE, "make reconfigure fail"),
    ARQ_OPT("forget_handle", ARQ_OPT_BOOL, "false", 0,
            "misbehave: leave a libuv timer running after destroy"),
    ARQ_OPT("state_file", ARQ_OPT_STRING, NULL, 0,
            "append each life-cycle step and telemetry event here as a JSON line"),
    ARQ_OPT_END};

struct probe {
    const struct arq_host *host;
    arq_ctx *ctx;
    unsigned serial;
    unsigned long ticks;
    unsigned long events_seen;
    char label[64];
    int state_fd; /* the state_file, open for the instance's life: a steady descriptor count */
    uint64_t interval;
    int fail_start;
    int forget_handle;
    arq_timer *timer;
};

/* The handle a misbehaving instance forgets; static so that it outlives the instance. */
static uv_timer_t forgotten;

static void forgotten_tick(uv_timer_t *t)
{
    (void)t;
}

static unsigned next_serial(void)
{
    /* Unique per process for the life of the module (which is never unloaded). */
    static unsigned serial;
    return ++serial;
}

static void plog(struct probe *p, const char *msg)
{
    char serial[16], ticks[24];
    snprintf(serial, sizeof serial, "%u", p->serial);
    snprintf(ticks, sizeof ticks, "%lu", p->ticks);
    ARQ_LOG(p->host, p->ctx, ARQ_LOG_INFO, msg, "serial", serial, "label", p->label, "ticks",
            ticks);
}

/* One JSON line appended with a single write(2), so that lines of instances sharing the file
 * never interleave; `extra` (stolen) adds members. */
static void record(struct probe *p, const char *event, json_t *extra)
{
    json_t *line = json_pack("{s:s, s:s, s:I, s:s, s:I}", "event", event, "instance",
                             p->host->instance_name(p->ctx), "serial", (json_int_t)p->serial,
                             "label", p->label, "ticks", (json_int_t)p->ticks);
    if (line && extra)
        json_object_update(line, extra);
    json_decref(extra);
    char *text = line && p->state_fd >= 0 ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    if (!text)
        return;
    size_t len = strlen(text);
    text[len] = '\n'; /* json_dumps's terminator becomes the line's end */
    if (write(p->state_fd, text, len + 1) != (ssize_t)(len + 1))
        plog(p, "probe cannot write its state_file");
    free(text);
}

static void tick(void *arg)
{
    struct probe *p = arg;
    p->ticks++;
    if (p->ticks % 10 == 0) {
        plog(p, "probe tick");
        record(p, "tick", NULL);
    }
    struct arq_event ev = {.struct_size = sizeof ev, .event_type = "probe_tick"};
    p->host->emit(p->ctx, &ev);
}

static void apply(struct probe *p, const json_t *cfg)
{
    snprintf(p->label, sizeof p->label, "%s", p->host->opt_str(cfg, "label", "probe"));
    p->interval = (uint64_t)p->host->opt_int(cfg, "interval", 50);
    p->fail_start = p->host->opt_bool(cfg, "fail_start", 0);
    p->forget_handle = p->host->opt_bool(cfg, "forget_handle", 0);
}

static int probe_create(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                        struct arq_error *err)
{
    if (host->opt_bool(cfg, "fail_create", 0))
        return arq_error_set(err, ARQ_EIO, "the probe was told to fail (fail_create: true)");
    struct probe *p = calloc(1, sizeof *p);
    if (!p)
        return arq_error_set(err, ARQ_ENOMEM, "out of memory");
    p->host = host;
    p->ctx = ctx;
    p->serial = next_serial();
    apply(p, cfg);
    const char *state_file = host->opt_str(cfg, "state_file", NULL);
    p->state_fd =
        state_file ? open(state_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    if (state_file && p->state_fd < 0) {
        free(p);
        return arq_error_set(err, ARQ_EIO, "cannot open the state_file %s", state_file);
    }
    plog(p, "probe created");
    record(p, "created", NULL);
    *self = p;
    return 0;
}

static int probe_start(void *self, void *predecessor, struct arq_error *err)
{
    struct probe *p = self;
    if (p->fail_start)
        return arq_error_set(err, ARQ_EIO, "the probe was told to fail (fail_start: true)");
    if (predecessor) {
        char pred[16];
        snprintf(pred, sizeof pred, "%u", ((struct probe *)predecessor)->serial);
        ARQ_LOG(p->host, p->ctx, ARQ_LOG_INFO, "probe takes over", "predecessor", pred);
        record(
            p, "takes_over",
            json_pack("{s:I}", "predecessor", (json_int_t)((struct probe *)predecessor)->serial));
    }
    p->timer = p->host->timer_start(p->ctx, p->interval, p->interval, tick, p);
    if (!p->timer)
        return arq_error_set(err, ARQ_ENOMEM, "no timer");
    if (p->forget_handle) {
        uv_timer_init(p->host->uv_loop(p->ctx), &forgotten);
        uv_timer_start(&forgotten, forgotten_tick, 1000, 1000);
    }
    plog(p, "probe started");
    record(p, "started", NULL);
    return 0;
}

static int probe_reconfigure(void *self, const json_t *cfg, struct arq_error *err)
{
    struct probe *p = self;
    if (p->host->opt_bool(cfg, "fail_reconfigure", 0))
        return arq_error_set(err, ARQ_EINVAL, "the probe was told to refuse (fail_reconfigure)");
    uint64_t old_interval = p->interval;
    apply(p, cfg);
    if (p->timer && p->interval != old_interval) {
        p->host->timer_stop(p->timer);
        p->timer = p->host->timer_start(p->ctx, p->interval, p->interval, tick, p);
    }
    plog(p, "probe reconfigured");
    record(p, "reconfigured", NULL);
    return 0;
}

static void probe_stop(void *self)
{
    struct probe *p = self;
    p->host->timer_stop(p->timer);
    p->timer = NULL;
    plog(p, "probe stopped");
    record(p, "stopped", NULL);
}

static void probe_destroy(void *self)
{
    struct probe *p = self;
    plog(p, "probe destroyed");
    record(p, "destroyed", NULL);
    if (p->state_fd >= 0)
        close(p->state_fd);
    free(p);
}

static void probe_emit_batch(void *self, const struct arq_event *const *events, size_t n)
{
    struct probe *p = self;
    p->events_seen += n;
    for (size_t i = 0; p->state_fd >= 0 && i < n; i++) {
        const struct arq_event *ev = events[i];
        if (!strcmp(ev->event_type, "probe_tick"))
            continue;
        record(p, "telemetry",
               json_pack("{s:s, s:s?, s:O?}", "type", ev->event_type, "source", ev->source, "data",
                         ev->data));
    }
}

static const struct arq_telemetry_ops ops = {
    .struct_size = sizeof ops,
    .emit_batch = probe_emit_batch,
};

/* Two builds of this file that differ in their version stand for a plugin rebuilt on disk. */
#ifndef PROBE_VERSION
#define PROBE_VERSION "1.0.0"
#endif

static const struct arq_plugin descriptor = {
    ARQ_PLUGIN_HEAD,
    .name = "probe",
    .version = PROBE_VERSION,
    .summary = "test plugin that logs its life cycle",
    .kind = ARQ_KIND_TELEMETRY,
    .options = options,
    .create = probe_create,
    .start = probe_start,
    .reconfigure = probe_reconfigure,
    .stop = probe_stop,
    .destroy = probe_destroy,
    .ops = &ops,
};

ARQ_PLUGIN(descriptor)
