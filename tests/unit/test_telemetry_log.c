/* telemetry-log (the built plugins/telemetry-log.so) against the mock host: stderr by default,
 * a file with `path`, one JSON line per event as the host's event_json writes it, the `events`
 * filter, reconfigure switching path and filter together (or not at all), and its counter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader.h"
#include "mock_host.h"
#include "telemetry.h"

#define PLUGIN  ARQ_BUILD_PLUGIN_DIR "/telemetry-log.so"
#define COUNTER "arqonbus_telemetry_log_events_total"

static void *handle;
static const struct arq_plugin *desc;

static int load_plugin(void **state)
{
    (void)state;
    desc = mock_host_load_plugin(PLUGIN, &handle);
    return desc ? 0 : -1;
}

static int unload_plugin(void **state)
{
    (void)state;
    return mock_host_unload_plugin(handle);
}

struct fx {
    struct mock_host *mh;
    void *self; /* the instance, destroyed by teardown */
    char dir[64];
    char path[128]; /* <dir>/events.log */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    mock_host_tmpdir(f->dir, sizeof f->dir, "arq_tlog");
    if (!mkdtemp(f->dir) || !(f->mh = mock_host_new("audit"))) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/events.log", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->self)
        desc->destroy(f->self);
    mock_host_free(f->mh);
    mock_host_remove_tmpdir(f->dir);
    free(f);
    return 0;
}

/* The validated config the host would hand over for `config:` holding `yaml`. */
static json_t *config(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *config(const char *fmt, ...)
{
    char yaml[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(yaml, sizeof yaml, fmt, ap);
    va_end(ap);
    json_t *cfg = mock_host_validate(desc->options, yaml, NULL);
    assert_non_null(cfg);
    return cfg;
}

static void create(struct fx *f, json_t *cfg_take)
{
    mock_host_create_plugin(f->mh, desc, cfg_take, &f->self);
}

static int reconfigure(struct fx *f, json_t *cfg_take, struct arq_error *err)
{
    int rc = desc->reconfigure(f->self, cfg_take, err);
    json_decref(cfg_take);
    return rc;
}

/* One batch of events of the given types (NULL-terminated), timestamps 1, 2, ... us. */
static void emit_types(struct fx *f, const char *const *types)
{
    struct arq_event evs[16];
    const struct arq_event *ptrs[16];
    size_t n = 0;
    for (; types[n]; n++) {
        assert_true(n < 16);
        evs[n] = (struct arq_event){.struct_size = sizeof evs[n],
                                    .event_type = types[n],
                                    .timestamp_us = (int64_t)n + 1,
                                    .node = "n1",
                                    .source = "host"};
        ptrs[n] = &evs[n];
    }
    const struct arq_telemetry_ops *ops = desc->ops;
    ops->emit_batch(f->self, ptrs, n);
}
#define EMIT(f, ...) emit_types((f), (const char *const[]){__VA_ARGS__, NULL})

/* The line emit_types writes for the event of `type` at position `i` of its batch. */
static const char *line_of(char *buf, size_t size, const char *type, int i)
{
    snprintf(buf, size,
             "{\"event_type\":\"%s\",\"timestamp\":\"1970-01-01T00:00:00.00000%dZ\","
             "\"node\":\"n1\",\"source\":\"host\"}\n",
             type, i + 1);
    return buf;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return NULL;
    char *text = NULL;
    size_t cap = 0, len = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) {
        text = realloc(text, (cap = len + n + 1));
        assert_non_null(text);
        memcpy(text + len, chunk, n);
        len += n;
    }
    fclose(fp);
    if (!text)
        text = calloc(1, 1);
    else
        text[len] = '\0';
    return text;
}

static void check_file(const char *path, const char *want)
{
    char *text = slurp(path);
    assert_non_null(text);
    assert_string_equal(text, want);
    free(text);
}

/* stderr into a file for the duration of a block. */
struct capture {
    int saved;
    char path[160];
};

static void capture_begin(struct fx *f, struct capture *c)
{
    snprintf(c->path, sizeof c->path, "%s/stderr.txt", f->dir);
    fflush(stderr);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
}

static char *capture_end(struct capture *c)
{
    fflush(stderr);
    assert_int_equal(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
    close(c->saved);
    return slurp(c->path);
}

/* --- tests --------------------------------------------------------------------------------- */

static void descriptor_is_a_telemetry_sink_with_reloadable_options(void **state)
{
    (void)state;
    char err[600] = "";
    assert_int_equal(loader_check_descriptor(desc, err, sizeof err), 0);
    assert_string_equal(desc->name, "telemetry-log");
    assert_int_equal(desc->kind, ARQ_KIND_TELEMETRY);
    assert_non_null(desc->reconfigure);
    assert_string_equal(desc->options[0].name, "path");
    assert_int_equal(desc->options[0].type, ARQ_OPT_STRING);
    assert_string_equal(desc->options[1].name, "events");
    assert_int_equal(desc->options[1].type, ARQ_OPT_STRING_LIST);
    assert_true(desc->options[0].flags & ARQ_OPT_RELOADABLE);
    assert_true(desc->options[1].flags & ARQ_OPT_RELOADABLE);
    assert_null(desc->options[2].name);
}

static void without_path_events_go_to_stderr_one_json_line_each(void **state)
{
    struct fx *f = *state;
    char a[256], b[256], want[512];
    create(f, config("%s", ""));
    struct capture c;
    capture_begin(f, &c);
    EMIT(f, "reload_ok", "client_connected");
    char *text = capture_end(&c);
    snprintf(want, sizeof want, "%s%s", line_of(a, sizeof a, "reload_ok", 0),
             line_of(b, sizeof b, "client_connected", 1));
    assert_string_equal(text, want);
    free(text);
}

static void path_appends_json_lines_to_the_file(void **state)
{
    struct fx *f = *state;
    char a[256], b[256], want[1024];
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs("earlier line\n", fp);
    assert_int_equal(fclose(fp), 0);
    create(f, config("path: %s\n", f->path));
    struct capture c;
    capture_begin(f, &c);
    EMIT(f, "reload_ok");
    EMIT(f, "reload_failed");
    char *err_text = capture_end(&c);
    assert_string_equal(err_text, "");
    free(err_text);
    snprintf(want, sizeof want, "earlier line\n%s%s", line_of(a, sizeof a, "reload_ok", 0),
             line_of(b, sizeof b, "reload_failed", 0));
    check_file(f->path, want);
}

static void missing_file_is_created(void **state)
{
    struct fx *f = *state;
    char a[256];
    create(f, config("path: %s\n", f->path));
    EMIT(f, "system_started");
    check_file(f->path, line_of(a, sizeof a, "system_started", 0));
}

static void line_is_the_hosts_event_json_with_every_field(void **state)
{
    struct fx *f = *state;
    create(f, config("path: %s\n", f->path));
    json_t *data = json_pack("{s:s, s:i}", "reason", "too \"big\"", "bytes", 70000);
    assert_non_null(data);
    struct arq_event ev = {.struct_size = sizeof ev,
                           .event_type = "message_rejected",
                           .timestamp_us = 1700000000123456,
                           .node = "node-a",
                           .source = "ws",
                           .client_id = "arq_client_0123",
                           .room = "lobby",
                           .channel = "general",
                           .command = "publish",
                           .data = data};
    const struct arq_event *batch[] = {&ev};
    const struct arq_telemetry_ops *ops = desc->ops;
    ops->emit_batch(f->self, batch, 1);
    json_decref(data);
    check_file(f->path,
               "{\"event_type\":\"message_rejected\",\"timestamp\":\"2023-11-14T22:13:20.123456Z\","
               "\"node\":\"node-a\",\"source\":\"ws\",\"client_id\":\"arq_client_0123\","
               "\"room\":\"lobby\",\"channel\":\"general\",\"command\":\"publish\","
               "\"data\":{\"reason\":\"too \\\"big\\\"\",\"bytes\":70000}}\n");
}

static void events_filter_writes_only_the_listed_types(void **state)
{
    struct fx *f = *state;
    char a[256], b[256], want[1024];
    create(f, config("path: %s\nevents: [reload_ok, client_connected]\n", f->path));
    EMIT(f, "reload_ok", "message_routed", "client_connected", "reload_failed");
    snprintf(want, sizeof want, "%s%s", line_of(a, sizeof a, "reload_ok", 0),
             line_of(b, sizeof b, "client_connected", 2));
    check_file(f->path, want);
}

static void events_filter_may_be_one_scalar(void **state)
{
    struct fx *f = *state;
    char a[256];
    create(f, config("path: %s\nevents: reload_failed\n", f->path));
    EMIT(f, "reload_ok", "reload_failed");
    check_file(f->path, line_of(a, sizeof a, "reload_failed", 1));
}

static void empty_events_list_writes_every_event(void **state)
{
    struct fx *f = *state;
    char a[256], b[256], want[1024];
    create(f, config("path: %s\nevents: []\n", f->path));
    EMIT(f, "reload_ok", "message_routed");
    snprintf(want, sizeof want, "%s%s", line_of(a, sizeof a, "reload_ok", 0),
             line_of(b, sizeof b, "message_routed", 1));
    check_file(f->path, want);
}

static void counter_counts_written_events_of_the_instance(void **state)
{
    struct fx *f = *state;
    create(f, config("path: %s\nevents: [reload_ok, reload_failed]\n", f->path));
    assert_int_equal(mock_host_metric_type(f->mh, COUNTER), ARQ_METRIC_COUNTER);
    assert_true(mock_host_metric(f->mh, COUNTER, "instance=\"audit\"") == 0);
    EMIT(f, "reload_ok", "message_routed", "reload_failed");
    assert_true(mock_host_metric(f->mh, COUNTER, "instance=\"audit\"") == 2);
    /* Filtered out entirely, and an empty batch: nothing counted. */
    EMIT(f, "message_routed");
    emit_types(f, (const char *const[]){NULL});
    assert_true(mock_host_metric(f->mh, COUNTER, "instance=\"audit\"") == 2);
    EMIT(f, "reload_ok");
    assert_true(mock_host_metric(f->mh, COUNTER, "instance=\"audit\"") == 3);
}

static void create_with_an_unopenable_path_fails_with_the_reason(void **state)
{
    struct fx *f = *state;
    char bad[192], want[512];
    snprintf(bad, sizeof bad, "%s/no/such/dir/events.log", f->dir);
    json_t *cfg = config("path: %s\n", bad);
    struct arq_error err = {""};
    void *self = NULL;
    assert_int_equal(desc->create(mock_host_api(), mock_host_ctx(f->mh), cfg, &self, &err),
                     ARQ_EIO);
    json_decref(cfg);
    assert_null(self);
    snprintf(want, sizeof want, "cannot open \"%s\": No such file or directory", bad);
    assert_string_equal(err.text, want);
    /* Nothing was registered for an instance that does not exist. */
    assert_int_equal(mock_host_metric_type(f->mh, COUNTER), 0);
}

static void reconfigure_switches_path_and_filter_together(void **state)
{
    struct fx *f = *state;
    char other[160], a[256], b[256];
    snprintf(other, sizeof other, "%s/other.log", f->dir);
    create(f, config("path: %s\nevents: [reload_ok]\n", f->path));
    EMIT(f, "reload_ok", "reload_failed");
    struct arq_error err = {""};
    assert_int_equal(reconfigure(f, config("path: %s\nevents: [reload_failed]\n", other), &err), 0);
    EMIT(f, "reload_ok", "reload_failed");
    check_file(f->path, line_of(a, sizeof a, "reload_ok", 0));
    check_file(other, line_of(b, sizeof b, "reload_failed", 1));
    assert_true(mock_host_metric(f->mh, COUNTER, "instance=\"audit\"") == 2);
}

static void failing_reconfigure_keeps_the_old_file_and_filter(void **state)
{
    struct fx *f = *state;
    char bad[192], want[512], a[256];
    snprintf(bad, sizeof bad, "%s/missing/events.log", f->dir);
    create(f, config("path: %s\nevents: [reload_ok]\n", f->path));
    struct arq_error err = {""};
    assert_int_equal(reconfigure(f, config("path: %s\nevents: [reload_failed]\n", bad), &err),
                     ARQ_EIO);
    snprintf(want, sizeof want, "cannot open \"%s\": No such file or directory", bad);
    assert_string_equal(err.text, want);
    EMIT(f, "reload_ok", "reload_failed");
    check_file(f->path, line_of(a, sizeof a, "reload_ok", 0));
}

static void reconfigure_without_path_returns_to_stderr(void **state)
{
    struct fx *f = *state;
    char a[256], b[256];
    create(f, config("path: %s\n", f->path));
    EMIT(f, "reload_ok");
    struct arq_error err = {""};
    assert_int_equal(reconfigure(f, config("%s", ""), &err), 0);
    struct capture c;
    capture_begin(f, &c);
    EMIT(f, "reload_failed");
    char *text = capture_end(&c);
    assert_string_equal(text, line_of(b, sizeof b, "reload_failed", 0));
    free(text);
    check_file(f->path, line_of(a, sizeof a, "reload_ok", 0));
}

static void sink_needs_no_timers_posts_or_logs(void **state)
{
    struct fx *f = *state;
    create(f, config("path: %s\n", f->path));
    EMIT(f, "reload_ok");
    assert_int_equal(mock_host_timers_active(f->mh), 0);
    assert_int_equal(mock_host_fire_timers(f->mh), 0);
    assert_int_equal(mock_host_run_posts(f->mh), 0);
    assert_int_equal(mock_host_log_count(f->mh), 0);
    assert_int_equal(mock_host_event_count(f->mh), 0);
}

/* --- the mock host's own contract (what the tests above rely on) -------------------------- */

struct ticker {
    const struct arq_host *host;
    arq_ctx *ctx;
    arq_timer *self_timer; /* stopped by its own callback when set */
    int ticks;
    int start_another; /* start a one-shot timer from inside the callback */
};

static void tick(void *arg)
{
    struct ticker *t = arg;
    t->ticks++;
    if (t->self_timer) {
        t->host->timer_stop(t->self_timer);
        t->self_timer = NULL;
    }
    if (t->start_another) {
        t->start_another = 0;
        assert_non_null(t->host->timer_start(t->ctx, 5, 0, tick, t));
    }
}

static void mock_timers_fire_only_when_the_test_says(void **state)
{
    struct fx *f = *state;
    const struct arq_host *host = mock_host_api();
    struct ticker rep = {host, mock_host_ctx(f->mh), NULL, 0, 0};
    struct ticker once = rep;
    arq_timer *r = host->timer_start(mock_host_ctx(f->mh), 100, 250, tick, &rep);
    arq_timer *o = host->timer_start(mock_host_ctx(f->mh), 10, 0, tick, &once);
    assert_int_equal(mock_host_timers_active(f->mh), 2);
    assert_int_equal(mock_host_timer_period(f->mh, 0, 0), 100);
    assert_int_equal(mock_host_timer_period(f->mh, 0, 1), 250);
    assert_int_equal(rep.ticks + once.ticks, 0);
    assert_int_equal(mock_host_fire_timers(f->mh), 2);
    /* A one-shot timer fires once but stays allocated until stopped. */
    assert_int_equal(mock_host_fire_timers(f->mh), 1);
    assert_int_equal(rep.ticks, 2);
    assert_int_equal(once.ticks, 1);
    assert_int_equal(mock_host_timers_active(f->mh), 2);
    host->timer_stop(o);
    host->timer_stop(r);
    host->timer_stop(NULL);
    assert_int_equal(mock_host_timers_active(f->mh), 0);
    assert_int_equal(mock_host_fire_timers(f->mh), 0);
}

static void mock_timer_may_stop_itself_and_start_others_from_its_callback(void **state)
{
    struct fx *f = *state;
    const struct arq_host *host = mock_host_api();
    struct ticker t = {host, mock_host_ctx(f->mh), NULL, 0, 1};
    t.self_timer = host->timer_start(mock_host_ctx(f->mh), 1, 1, tick, &t);
    /* The timer started inside the round waits for the next one. */
    assert_int_equal(mock_host_fire_timers(f->mh), 1);
    assert_int_equal(mock_host_timers_active(f->mh), 1);
    assert_int_equal(mock_host_fire_timers(f->mh), 1);
    assert_int_equal(t.ticks, 2);
    /* The one-shot one is left to mock_host_free. */
}

struct post_log {
    char seen[8];
    size_t n;
};

struct post_arg {
    struct post_log *log;
    char tag;
};

static void record_post(void *arg, int cancelled)
{
    struct post_arg *a = arg;
    a->log->seen[a->log->n++] = cancelled ? 'x' : a->tag;
}

static void mock_posts_run_in_order_when_asked_and_cancelled_at_free(void **state)
{
    struct fx *f = *state;
    const struct arq_host *host = mock_host_api();
    struct post_log log = {"", 0};
    struct post_arg args[] = {{&log, '1'}, {&log, '2'}, {&log, '3'}};
    assert_int_equal(host->post(mock_host_ctx(f->mh), record_post, &args[0]), ARQ_OK);
    assert_int_equal(host->post(mock_host_ctx(f->mh), record_post, &args[1]), ARQ_OK);
    assert_int_equal(log.n, 0);
    assert_int_equal(mock_host_run_posts(f->mh), 2);
    assert_string_equal(log.seen, "12");
    assert_int_equal(host->post(mock_host_ctx(f->mh), record_post, &args[2]), ARQ_OK);
    mock_host_free(f->mh);
    f->mh = mock_host_new("audit");
    assert_non_null(f->mh);
    assert_string_equal(log.seen, "12x");
}

static void mock_records_logs_events_and_metrics(void **state)
{
    struct fx *f = *state;
    const struct arq_host *host = mock_host_api();
    arq_ctx *ctx = mock_host_ctx(f->mh);
    assert_string_equal(host->instance_name(ctx), "audit");
    assert_string_equal(host->node_name(ctx), "test-node");

    ARQ_LOG(host, ctx, ARQ_LOG_WARN, "cannot open", "path", "/x", "error", "denied");
    mock_host_set_log_level(f->mh, ARQ_LOG_INFO);
    assert_false(host->log_enabled(ctx, ARQ_LOG_DEBUG));
    ARQ_LOG(host, ctx, ARQ_LOG_DEBUG, "not kept");
    assert_int_equal(mock_host_log_count(f->mh), 1);
    assert_string_equal(mock_host_log_line(f->mh, 0), "warn cannot open path=/x error=denied");
    assert_null(mock_host_log_line(f->mh, 1));
    assert_int_equal(mock_host_log_matching(f->mh, "path=/x"), 1);

    struct arq_event ev = {.struct_size = sizeof ev, .event_type = "probe_tick", .timestamp_us = 1};
    host->emit(ctx, &ev);
    ev.event_type = NULL;
    host->emit(ctx, &ev);
    assert_int_equal(mock_host_event_count(f->mh), 1);
    assert_string_equal(mock_host_event(f->mh, 0),
                        "{\"event_type\":\"probe_tick\",\"timestamp\":\"1970-01-01T00:00:00."
                        "000001Z\",\"node\":\"test-node\",\"source\":\"audit\"}");

    const char *labels[] = {"kind", NULL};
    arq_metric *m =
        host->metric_register(ctx, ARQ_METRIC_GAUGE, "arqonbus_x", "x", labels, NULL, 0);
    assert_non_null(m);
    assert_ptr_equal(
        host->metric_register(ctx, ARQ_METRIC_GAUGE, "arqonbus_x", "", labels, NULL, 0), m);
    assert_null(host->metric_register(ctx, ARQ_METRIC_COUNTER, "arqonbus_x", "", labels, NULL, 0));
    assert_null(host->metric_register(ctx, ARQ_METRIC_GAUGE, "arqonbus_x", "", NULL, NULL, 0));
    assert_null(host->metric_series(m, NULL));
    arq_series *s = host->metric_series(m, (const char *const[]){"a", NULL});
    assert_ptr_equal(host->metric_series(m, (const char *const[]){"a", NULL}), s);
    host->metric_set(s, 5);
    host->metric_add(s, -2);
    assert_true(mock_host_metric(f->mh, "arqonbus_x", "kind=\"a\"") == 3);
    assert_true(mock_host_metric(f->mh, "arqonbus_x", "kind=\"b\"") == -1);
    arq_metric *h =
        host->metric_register(ctx, ARQ_METRIC_HISTOGRAM, "arqonbus_h_seconds", "h", NULL, NULL, 0);
    arq_series *hs = host->metric_series(h, NULL);
    host->metric_observe(hs, 0.5);
    host->metric_observe(hs, 0.25);
    assert_true(mock_host_metric(f->mh, "arqonbus_h_seconds", "") == 2);
    assert_int_equal(mock_host_metric_type(f->mh, "arqonbus_h_seconds"), ARQ_METRIC_HISTOGRAM);
    char *text = host->metrics_render(ctx);
    assert_non_null(strstr(text, "arqonbus_x{kind=\"a\"} 3\n"));
    host->free(text);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(descriptor_is_a_telemetry_sink_with_reloadable_options),
        T(without_path_events_go_to_stderr_one_json_line_each),
        T(path_appends_json_lines_to_the_file),
        T(missing_file_is_created),
        T(line_is_the_hosts_event_json_with_every_field),
        T(events_filter_writes_only_the_listed_types),
        T(events_filter_may_be_one_scalar),
        T(empty_events_list_writes_every_event),
        T(counter_counts_written_events_of_the_instance),
        T(create_with_an_unopenable_path_fails_with_the_reason),
        T(reconfigure_switches_path_and_filter_together),
        T(failing_reconfigure_keeps_the_old_file_and_filter),
        T(reconfigure_without_path_returns_to_stderr),
        T(sink_needs_no_timers_posts_or_logs),
        T(mock_timers_fire_only_when_the_test_says),
        T(mock_timer_may_stop_itself_and_start_others_from_its_callback),
        T(mock_posts_run_in_order_when_asked_and_cancelled_at_free),
        T(mock_records_logs_events_and_metrics),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
