/* SIGHUP reloads against a running arqonbusd: generations built aside and swapped; unchanged
 * instances carried over with their state; RELOADABLE changes through reconfigure; other
 * changes replace the instance; bad configurations keep the running generation; 100 reloads
 * leak neither memory nor file descriptors. The probe plugin records every step of its life
 * with a serial number in its state_file, so the tests see which object is which, and, being a
 * telemetry sink, the host's reload_ok and reload_failed events with their counts and errors.
 * The verdict of each reload comes from the notify socket (h_reload). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus_client.h"
#include "harness.h"

/* The probes' state file: every instance of the fixture appends to the same one. */
static const char *state_file(const struct fixture *f)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/probe.jsonl", f->logs);
    return path;
}

/* conf.d/10-host.yaml plus 20-p1.yaml with the given probe config lines (then state_file, so
 * that the given lines keep their line numbers). */
static void write_p1(const struct fixture *f, const char *config)
{
    h_write(f->dir, "10-host.yaml", "host:\n  plugin_dir: %s\n", ARQ_TEST_PLUGIN_DIR);
    h_write(f->dir, "20-p1.yaml",
            "plugins:\n  p1:\n    module: probe\n    config:\n%s      state_file: %s\n", config,
            state_file(f));
}

/* DIR/NAME declaring probe instance `name` with the given config lines. */
static void write_probe(const struct fixture *f, const char *file, const char *name,
                        const char *config)
{
    h_write(f->dir, file,
            "plugins:\n  %s:\n    module: probe\n    config:\n%s      state_file: %s\n", name,
            config, state_file(f));
}

static void start(struct fixture *f)
{
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    assert_int_equal(h_wait_ready(&f->p), 0);
    assert_int_equal(h_generation(&f->p), 1);
}

/* The probes' records so far (decref). */
static json_t *records(const struct fixture *f)
{
    return h_jsonl(state_file(f));
}

/* The host's reload_ok event, as a probe was given it, for generation `gen` with these
 * counts. */
static void expect_reload_ok(struct fixture *f, int gen, int carried, int reconfigured,
                             int replaced, int added, int removed)
{
    assert_int_equal(h_generation(&f->p), gen);
    assert_int_equal(h_wait_jsonl(state_file(f), 1, 10000,
                                  "{s:s, s:s, s:{s:i, s:i, s:i, s:i, s:i, s:i}}", "event",
                                  "telemetry", "type", "reload_ok", "data", "generation", gen,
                                  "carried", carried, "reconfigured", reconfigured, "replaced",
                                  replaced, "added", added, "removed", removed),
                     0);
}

/* The errors of the n-th (1-based) reload_failed event, which kept generation `gen`, as one
 * JSON text (free it); the event must say how many errors it carries: `nerrors`, or any when
 * negative. */
static char *reload_failed_errors(const struct fixture *f, int n, int gen, int nerrors)
{
    assert_int_equal(h_wait_jsonl(state_file(f), n, 10000, "{s:s, s:s}", "event", "telemetry",
                                  "type", "reload_failed"),
                     0);
    json_t *lines = records(f);
    int at = -1;
    for (int i = 0; i < n; i++)
        at = h_jsonl_find(lines, at + 1, "{s:s, s:s}", "event", "telemetry", "type",
                          "reload_failed");
    const json_t *data = json_object_get(json_array_get(lines, (size_t)at), "data");
    assert_int_equal(json_integer_value(json_object_get(data, "generation")), gen);
    const json_t *errors = json_object_get(data, "errors");
    assert_true(json_is_array(errors));
    if (nerrors >= 0)
        assert_int_equal(json_array_size(errors), nerrors);
    char *text = json_dumps(errors, 0);
    json_decref(lines);
    return text;
}

/* `text` has `needle` (printed when not). */
static int has(const char *text, const char *needle)
{
    if (strstr(text, needle))
        return 1;
    fprintf(stderr, "not found: %s\nin: %s\n", needle, text);
    return 0;
}

/* The index of the host's system_stopping event in the records: what an instance did before
 * it, it did while the process was running. */
static int stop_marker(const json_t *lines)
{
    int at = h_jsonl_find(lines, 0, "{s:s, s:s}", "event", "telemetry", "type", "system_stopping");
    assert_true(at >= 0);
    return at;
}

static void test_unchanged_instance_is_carried_over_with_its_state(void **state)
{
    struct fixture *f = *state;
    write_p1(f, "      label: one\n      interval: 10ms\n");
    start(f);
    assert_int_equal(h_wait_jsonl(state_file(f), 1, 10000, "{s:s, s:i, s:s, s:i}", "event", "tick",
                                  "serial", 1, "label", "one", "ticks", 20),
                     0);
    assert_int_equal(h_reload(f), 1);
    expect_reload_ok(f, 2, 1, 0, 0, 0, 0);
    /* The same object keeps counting: its tick counter was not reset. */
    assert_int_equal(h_wait_jsonl(state_file(f), 1, 10000, "{s:s, s:i, s:s, s:i}", "event", "tick",
                                  "serial", 1, "label", "one", "ticks", 40),
                     0);
    assert_int_equal(h_stop(f), 0);
    json_t *lines = records(f);
    assert_int_equal(h_jsonl_count(lines, "{s:s}", "event", "created"), 1);
    /* Destroyed once, and only by the stop. */
    assert_int_equal(h_jsonl_count(lines, "{s:s}", "event", "destroyed"), 1);
    assert_true(h_jsonl_find(lines, 0, "{s:s}", "event", "destroyed") > stop_marker(lines));
    json_decref(lines);
}

static void test_reloadable_change_goes_through_reconfigure(void **state)
{
    struct fixture *f = *state;
    write_p1(f, "      label: one\n");
    start(f);
    write_p1(f, "      label: two\n");
    assert_int_equal(h_reload(f), 1);
    expect_reload_ok(f, 2, 0, 1, 0, 0, 0);
    json_t *lines = records(f);
    assert_true(h_jsonl_find(lines, 0, "{s:s, s:s, s:i, s:s}", "event", "reconfigured", "instance",
                             "p1", "serial", 1, "label", "two") >= 0);
    assert_int_equal(h_jsonl_count(lines, "{s:s}", "event", "created"), 1);
    json_decref(lines);
    assert_int_equal(h_stop(f), 0);
}

static void test_other_change_replaces_the_instance_after_creating_the_new_one(void **state)
{
    struct fixture *f = *state;
    write_p1(f, "      tag: a\n");
    start(f);
    write_p1(f, "      tag: b\n");
    assert_int_equal(h_reload(f), 1);
    expect_reload_ok(f, 2, 0, 0, 1, 0, 0);
    assert_int_equal(h_stop(f), 0);
    json_t *lines = records(f);
    int created = h_jsonl_find(lines, 0, "{s:s, s:i}", "event", "created", "serial", 2);
    int takes = h_jsonl_find(lines, 0, "{s:s, s:i, s:i}", "event", "takes_over", "serial", 2,
                             "predecessor", 1);
    int old_stopped = h_jsonl_find(lines, 0, "{s:s, s:i}", "event", "stopped", "serial", 1);
    int old_gone = h_jsonl_find(lines, 0, "{s:s, s:i}", "event", "destroyed", "serial", 1);
    assert_true(created >= 0 && takes >= 0 && old_stopped >= 0 && old_gone >= 0);
    assert_true(created < takes && takes < old_stopped && old_stopped < old_gone);
    /* ... all of it during the reload, not at the stop. */
    assert_true(old_gone < stop_marker(lines));
    json_decref(lines);
}

static void test_invalid_yaml_keeps_the_running_generation(void **state)
{
    struct fixture *f = *state;
    write_p1(f, "      label: one\n      interval: 10ms\n");
    start(f);
    h_write(f->dir, "30-broken.yaml", "plugins:\n  p2: [unclosed\n");
    assert_int_equal(h_reload(f), 0);
    assert_int_equal(h_generation(&f->p), 1);
    char *errors = reload_failed_errors(f, 1, 1, 1);
    char want[700];
    snprintf(want, sizeof want, "[\"%s/30-broken.yaml:", f->dir);
    assert_true(has(errors, want));
    free(errors);
    /* Still up, same instance, still working. */
    assert_int_equal(h_wait_jsonl(state_file(f), 1, 10000, "{s:s, s:i, s:s, s:i}", "event", "tick",
                                  "serial", 1, "label", "one", "ticks", 20),
                     0);
    json_t *lines = records(f);
    assert_int_equal(h_jsonl_count(lines, "{s:s}", "event", "created"), 1);
    json_decref(lines);

    h_unlink(f->dir, "30-broken.yaml");
    assert_int_equal(h_reload(f), 1);
    expect_reload_ok(f, 2, 1, 0, 0, 0, 0);
    assert_int_equal(h_stop(f), 0);
}

static void test_invalid_option_keeps_the_running_generation(void **state)
{
    struct fixture *f = *state;
    write_p1(f, "      label: one\n");
    start(f);
    write_p1(f, "      label: two\n      port: 99999\n");
    assert_int_equal(h_reload(f), 0);
    char *errors = reload_failed_errors(f, 1, 1, 1);
    char want[900];
    snprintf(want, sizeof want,
             "%s/20-p1.yaml:6:13: plugin \\\"p1\\\" (module probe): option \\\"port\\\": "
             "99999 is out of range 0..65535\"",
             f->dir);
    assert_true(has(errors, want));
    free(errors);
    /* The failure event came after anything the reload did to the probe: it did nothing. */
    json_t *lines = records(f);
    assert_int_equal(h_jsonl_count(lines, "{s:s}", "event", "reconfigured"), 0);
    assert_int_equal(h_jsonl_count(lines, "{s:s}", "event", "created"), 1);
    json_decref(lines);
    assert_int_equal(h_stop(f), 0);
}

static void test_added_plugin_starts_and_removed_plugin_stops(void **state)
{
    struct fixture *f = *state;
    write_p1(f, "      label: one\n");
    start(f);
    write_probe(f, "30-p2.yaml", "p2", "");
    assert_int_equal(h_reload(f), 1);
    expect_reload_ok(f, 2, 1, 0, 0, 1, 0);
    json_t *lines = records(f);
    assert_true(h_jsonl_find(lines, 0, "{s:s, s:s, s:i}", "event", "started", "instance", "p2",
                             "serial", 2) >= 0);
    json_decref(lines);

    h_unlink(f->dir, "30-p2.yaml");
    assert_int_equal(h_reload(f), 1);
    expect_reload_ok(f, 3, 1, 0, 0, 0, 1);
    lines = records(f);
    assert_true(h_jsonl_find(lines, 0, "{s:s, s:s, s:i}", "event", "stopped", "instance", "p2",
                             "serial", 2) >= 0);
    assert_true(h_jsonl_find(lines, 0, "{s:s, s:s, s:i}", "event", "destroyed", "instance", "p2",
                             "serial", 2) >= 0);
    /* The reload_ok event reached p1 after the reload's work: p1 was not destroyed by it. */
    assert_int_equal(h_jsonl_count(lines, "{s:s, s:s}", "event", "destroyed", "instance", "p1"), 0);
    json_decref(lines);

    /* enabled: false retires an instance as well. */
    h_write(f->dir, "20-p1.yaml", "plugins:\n  p1:\n    module: probe\n    enabled: false\n");
    assert_int_equal(h_reload(f), 1);
    assert_int_equal(h_generation(&f->p), 4);
    assert_int_equal(h_wait_jsonl(state_file(f), 1, 10000, "{s:s, s:s, s:i}", "event", "destroyed",
                                  "instance", "p1", "serial", 1),
                     0);
    assert_int_equal(h_stop(f), 0);
}

static void test_failures_while_committing_roll_back(void **state)
{
    struct fixture *f = *state;
    write_p1(f, "      label: one\n");
    start(f);

    /* A new instance that cannot start: the reload fails and nothing else changes. */
    write_probe(f, "30-p3.yaml", "p3", "      fail_start: true\n");
    write_p1(f, "      label: two\n");
    assert_int_equal(h_reload(f), 0);
    char *errors = reload_failed_errors(f, 1, 1, -1);
    assert_true(has(errors, "plugin \\\"p3\\\" (module probe) ("));
    assert_true(has(errors, "cannot start: the probe was told to fail (fail_start: true)"));
    free(errors);
    json_t *lines = records(f);
    assert_true(h_jsonl_find(lines, 0, "{s:s, s:s}", "event", "destroyed", "instance", "p3") >= 0);
    /* p1 had been reconfigured to "two" and is put back to "one". */
    int two = h_jsonl_find(lines, 0, "{s:s, s:s, s:i, s:s}", "event", "reconfigured", "instance",
                           "p1", "serial", 1, "label", "two");
    assert_true(two >= 0);
    assert_true(h_jsonl_find(lines, two + 1, "{s:s, s:s, s:i, s:s}", "event", "reconfigured",
                             "instance", "p1", "serial", 1, "label", "one") > two);
    json_decref(lines);
    h_unlink(f->dir, "30-p3.yaml");

    /* A reconfigure that refuses: the old options stay in force. */
    write_p1(f, "      label: three\n      fail_reconfigure: true\n");
    assert_int_equal(h_reload(f), 0);
    errors = reload_failed_errors(f, 2, 1, -1);
    assert_true(has(errors, "cannot apply the new options: the probe was told to refuse"));
    free(errors);
    lines = records(f);
    assert_int_equal(h_jsonl_count(lines, "{s:s}", "label", "three"), 0);
    assert_int_equal(h_jsonl_count(lines, "{s:s, s:s}", "event", "created", "instance", "p1"), 1);
    json_decref(lines);
    assert_int_equal(h_stop(f), 0);
}

static void test_reload_failure_in_create_keeps_the_old_instance(void **state)
{
    struct fixture *f = *state;
    write_p1(f, "      tag: a\n");
    start(f);
    write_p1(f, "      tag: b\n      fail_create: true\n");
    assert_int_equal(h_reload(f), 0);
    char *errors = reload_failed_errors(f, 1, 1, -1);
    assert_true(has(errors, "(module probe): cannot create instance: the probe was told to fail "
                            "(fail_create: true)"));
    free(errors);
    /* The old instance ticks on after the failure, and was never stopped. */
    json_t *lines = records(f);
    int ticks =
        h_jsonl_count(lines, "{s:s, s:i, s:s}", "event", "tick", "serial", 1, "label", "probe");
    json_decref(lines);
    assert_int_equal(h_wait_jsonl(state_file(f), ticks + 1, 10000, "{s:s, s:i, s:s}", "event",
                                  "tick", "serial", 1, "label", "probe"),
                     0);
    lines = records(f);
    assert_int_equal(h_jsonl_count(lines, "{s:s}", "event", "stopped"), 0);
    json_decref(lines);
    assert_int_equal(h_stop(f), 0);
}

static void test_hundred_reloads_leak_no_memory_and_no_descriptors(void **state)
{
    struct fixture *f = *state;
    char tlog[600];
    snprintf(tlog, sizeof tlog, "%s/events.jsonl", f->logs);
    write_p1(f, "      label: even\n");
    h_write(f->dir, "30-tlog.yaml",
            "plugins:\n  events:\n    module: %s/telemetry-log.so\n    config:\n"
            "      path: %s\n",
            ARQ_BUILD_PLUGIN_DIR, tlog);
    start(f);
    /* Telemetry reaches the sinks after the notify message's socket is closed again: count
     * descriptors once a probe has the event that follows it. */
    assert_int_equal(h_wait_jsonl(state_file(f), 1, 10000, "{s:s, s:s}", "event", "telemetry",
                                  "type", "system_started"),
                     0);
    int fds_before = h_fd_count(f->p.pid);
    long rss_at_20 = 0;
    for (int i = 1; i <= 100; i++) {
        /* Every kind of transition: reconfigure p1, add/remove p2, replace the sink. */
        write_p1(f, i % 2 ? "      label: odd\n" : "      label: even\n");
        if (i % 2)
            h_write(f->dir, "40-p2.yaml", "plugins:\n  p2:\n    module: probe\n");
        else
            h_unlink(f->dir, "40-p2.yaml");
        if (i % 10 == 0)
            h_write(f->dir, "30-tlog.yaml",
                    "plugins:\n  events:\n    module: %s/telemetry-log.so\n    config:\n"
                    "      path: %s\n      events: [reload_ok%s]\n",
                    ARQ_BUILD_PLUGIN_DIR, tlog, i % 20 ? ", system_started" : "");
        assert_int_equal(h_reload(f), 1);
        if (i == 20)
            rss_at_20 = h_rss_kib(f->p.pid);
    }
    assert_int_equal(f->p.notified.reloads_ok, 100);
    assert_int_equal(h_wait_jsonl(state_file(f), 1, 10000, "{s:s, s:s, s:{s:i}}", "event",
                                  "telemetry", "type", "reload_ok", "data", "generation", 101),
                     0);
    assert_int_equal(h_fd_count(f->p.pid), fds_before);
    long rss_at_100 = h_rss_kib(f->p.pid);
    const char *sanitized = getenv("ARQ_TEST_SANITIZED");
    if (!sanitized || !*sanitized) {
        /* Allocator noise is far below this; one leaked generation per reload is not. */
        fprintf(stderr, "rss after 20 reloads: %ld KiB, after 100: %ld KiB\n", rss_at_20,
                rss_at_100);
        assert_true(rss_at_100 - rss_at_20 < 512);
    }
    /* Exit 0 also means LeakSanitizer found nothing in the sanitizer build. */
    assert_int_equal(h_stop(f), 0);
    char *out = h_slurp(f->p.out);
    assert_null(strstr(out, "LeakSanitizer"));
    free(out);
}

/* --- operator faults: a module broken or replaced on disk ---------------------------------- */

/* Put at `to` (through a rename, as install(1) does) the first `keep` bytes of `from` (all
 * when it is shorter), then pseudo-random bytes up to `total`. */
static size_t size_of(const char *path);

static void put_module(const char *from, size_t keep, size_t total, const char *to)
{
    if (keep > size_of(from))
        keep = size_of(from);
    FILE *in = fopen(from, "rb");
    assert_non_null(in);
    size_t cap = keep > total ? keep : total;
    unsigned char *buf = calloc(1, cap + 1);
    assert_non_null(buf);
    size_t n = fread(buf, 1, keep, in);
    assert_int_equal(fclose(in), 0);
    uint32_t x = 88172645u;
    for (; n < total; n++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        buf[n] = (unsigned char)x;
    }
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.new", to);
    FILE *out = fopen(tmp, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(buf, 1, n, out), n);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(rename(tmp, to), 0);
    free(buf);
}

static size_t size_of(const char *path)
{
    FILE *in = fopen(path, "rb");
    assert_non_null(in);
    assert_int_equal(fseek(in, 0, SEEK_END), 0);
    long n = ftell(in);
    assert_int_equal(fclose(in), 0);
    return (size_t)n;
}

#define PROBE_SO    ARQ_TEST_PLUGIN_DIR "/probe.so"
#define PROBE_V2_SO ARQ_TEST_PLUGIN_DIR "/probe_v2.so"

/* What the `status` command says (a promise of the protocol): reload counts, the last error,
 * and the version of each running instance's module. */
struct status {
    long succeeded, failed;
    char last_error[1024];
    char victim_version[32];
};

static struct status status_of(struct bus_client *c)
{
    struct status st = {0};
    json_t *r;
    const json_t *d = bc_command_ok(c, &r, "status", NULL);
    const json_t *rl = json_object_get(d, "reloads");
    st.succeeded = (long)json_integer_value(json_object_get(rl, "succeeded"));
    st.failed = (long)json_integer_value(json_object_get(rl, "failed"));
    snprintf(st.last_error, sizeof st.last_error, "%s", bc_str(rl, "last_error"));
    size_t i;
    const json_t *pl;
    json_array_foreach(json_object_get(d, "plugins"), i, pl)
    {
        if (!strcmp(bc_str(pl, "name"), "victim"))
            snprintf(st.victim_version, sizeof st.victim_version, "%s", bc_str(pl, "version"));
    }
    json_decref(r);
    return st;
}

/* SIGHUP, the verdict on the notify socket, then the status, which counts that reload. */
static struct status reload_via_status(struct fixture *f, struct bus_client *c)
{
    assert_true(h_reload(f) >= 0);
    return status_of(c);
}

/* a publishes to ops/c and b, still connected, gets it. */
static void still_delivers(struct bus_client *a, struct bus_client *b, int n)
{
    bc_send(a, "{s:s, s:s, s:s, s:{s:i}}", "type", "message", "room", "ops", "channel", "c",
            "payload", "n", n);
    json_t *m = bc_expect(b, "message", 5000);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "payload"), "n")), n);
    json_decref(m);
    json_decref(bc_expect(a, "message_response", 5000));
}

/* --check-config on the directory fails, names `path` and `why`, and does not crash. */
static void check_config_refuses(const struct fixture *f, const char *path, const char *why)
{
    const char *const args[] = {"--check-config", "-c", f->dir, NULL};
    char *out;
    int rc = h_run(args, &out);
    if (rc != 1 || !strstr(out, path) || !strstr(out, why))
        fail_msg("--check-config exited %d (want 1, naming %s and \"%s\"):\n%s", rc, path, why,
                 out);
    free(out);
}

/* The reload failed because of `path` (and `why`), and everything kept running: the module in
 * force is still the first build, and clients still talk. */
static void check_refused(const struct status *st, long failed, const char *path, const char *why)
{
    if (st->failed != failed || !strstr(st->last_error, path) || !strstr(st->last_error, why))
        fail_msg("reloads failed=%ld (want %ld), last error: %s (want \"%s\" and \"%s\")",
                 st->failed, failed, st->last_error, path, why);
    assert_int_equal(st->succeeded, 0);
    assert_string_equal(st->victim_version, "1.0.0");
}

static void write_bus(const struct fixture *f)
{
    h_write(f->dir, "10-bus.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: 0\n"
            "  builtin:\n    module: commands-builtin\n");
}

/* The bus (WebSocket, built-in commands) and the probe as instance "victim" of module
 * `victim`; clients a and b joined to ops/c. */
static void start_bus(struct fixture *f, const char *victim, struct bus_client **a,
                      struct bus_client **b)
{
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\nbus:\n  auto_create: true\n",
            ARQ_BUILD_PLUGIN_DIR);
    write_bus(f);
    h_write(f->dir, "20-victim.yaml", "plugins:\n  victim:\n    module: %s\n", victim);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    int port = bc_port(&f->p);
    *a = bc_connect(port, "/");
    *b = bc_connect(port, "/");
    json_t *r;
    bc_command_ok(*a, &r, "join_channel", "{s:s, s:s}", "room", "ops", "channel", "c");
    json_decref(r);
    bc_command_ok(*b, &r, "join_channel", "{s:s, s:s}", "room", "ops", "channel", "c");
    json_decref(r);
}

static void test_broken_or_replaced_module_on_sighup(void **state)
{
    struct fixture *f = *state;
    char victim[600], extra[600];
    snprintf(victim, sizeof victim, "%s/victim.so", f->logs);
    snprintf(extra, sizeof extra, "%s/extra.so", f->logs);
    put_module(PROBE_SO, SIZE_MAX, 0, victim);
    struct bus_client *a, *b;
    start_bus(f, victim, &a, &b);
    assert_string_equal(status_of(a).victim_version, "1.0.0");
    size_t full = size_of(PROBE_SO);
    struct status st;

    /* A new instance whose module is truncated (the dynamic loader would SIGBUS on it). */
    put_module(PROBE_SO, 4096 + 600, 0, extra);
    h_write(f->dir, "30-extra.yaml", "plugins:\n  extra:\n    module: %s\n", extra);
    st = reload_via_status(f, a);
    check_refused(&st, 1, extra, "truncated or corrupt");
    check_config_refuses(f, extra, "truncated or corrupt");
    still_delivers(a, b, 1);
    h_unlink(f->dir, "30-extra.yaml");

    /* The running module replaced by a truncated copy. */
    put_module(PROBE_SO, full / 3, 0, victim);
    st = reload_via_status(f, a);
    check_refused(&st, 2, victim, "truncated");
    check_config_refuses(f, victim, "truncated");
    still_delivers(a, b, 2);

    /* Valid headers, garbage behind them: the dynamic loader crashes on it (in a child). */
    FILE *in = fopen(PROBE_SO, "rb");
    assert_non_null(in);
    unsigned char ehdr[64];
    assert_int_equal(fread(ehdr, 1, sizeof ehdr, in), sizeof ehdr);
    assert_int_equal(fclose(in), 0);
    size_t headers = 64 + (size_t)(ehdr[56] | ehdr[57] << 8) * 56; /* e_phnum, 64-bit ELF */
    put_module(PROBE_SO, headers, full, victim);
    st = reload_via_status(f, a);
    check_refused(&st, 3, victim, "cannot load");
    check_config_refuses(f, victim, "cannot load");
    still_delivers(a, b, 3);

    /* Garbage behind the ELF magic. */
    put_module(PROBE_SO, 4, full, victim);
    st = reload_via_status(f, a);
    check_refused(&st, 4, victim, "corrupt");
    check_config_refuses(f, victim, "corrupt");

    /* A valid ELF header whose program headers lie past the end of the file. */
    put_module(PROBE_SO, 64 + 56, 0, victim);
    st = reload_via_status(f, a);
    check_refused(&st, 5, victim, "program headers end at byte");
    check_config_refuses(f, victim, "program headers end at byte");
    still_delivers(a, b, 5);

    /* A rebuilt module takes effect: the new code runs. */
    put_module(PROBE_V2_SO, SIZE_MAX, 0, victim);
    st = reload_via_status(f, a);
    assert_int_equal(st.succeeded, 1);
    assert_string_equal(st.victim_version, "2.0.0");
    still_delivers(a, b, 6);
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(f), 0);
}

static void test_file_emptied_on_disk_keeps_its_settings_on_sighup(void **state)
{
    struct fixture *f = *state;
    struct bus_client *a, *b;
    start_bus(f, PROBE_SO, &a, &b);
    struct status st;

    /* A failed write leaves the file that declares the transport empty: applying it would
     * close every connection. */
    h_write(f->dir, "10-bus.yaml", "%s", "");
    st = reload_via_status(f, a);
    char want[700];
    snprintf(want, sizeof want,
             "%s/10-bus.yaml: the file sets nothing now, but the running configuration has "
             "settings from it (plugins.ws, plugins.builtin)",
             f->dir);
    if (st.failed != 1 || !strstr(st.last_error, want))
        fail_msg("failed=%ld, last error: %s", st.failed, st.last_error);
    still_delivers(a, b, 1);
    /* --check-config has no running configuration to compare with: it names the file. */
    const char *const args[] = {"--check-config", "-c", f->dir, NULL};
    char *out;
    assert_int_equal(h_run(args, &out), 0);
    snprintf(want, sizeof want, "%s/10-bus.yaml: warning: the file is empty", f->dir);
    if (!strstr(out, want) || !strstr(out, "configuration OK, with 1 warning"))
        fail_msg("--check-config said:\n%s", out);
    free(out);

    /* An empty file that held nothing before is fine. */
    write_bus(f);
    h_write(f->dir, "90-nothing-yet.yaml", "%s", "");
    st = reload_via_status(f, a);
    assert_int_equal(st.succeeded, 1);
    still_delivers(a, b, 2);

    /* Deleting the file is how its settings are dropped on purpose. */
    h_write(f->dir, "20-victim.yaml", "%s", "");
    st = reload_via_status(f, a);
    assert_int_equal(st.failed, 2);
    assert_string_equal(st.victim_version, "1.0.0");
    h_unlink(f->dir, "20-victim.yaml");
    st = reload_via_status(f, a);
    assert_int_equal(st.succeeded, 2);
    assert_string_equal(st.victim_version, "");
    still_delivers(a, b, 3);
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unchanged_instance_is_carried_over_with_its_state,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_reloadable_change_goes_through_reconfigure, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(
            test_other_change_replaces_the_instance_after_creating_the_new_one, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_yaml_keeps_the_running_generation, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_option_keeps_the_running_generation, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_added_plugin_starts_and_removed_plugin_stops, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_failures_while_committing_roll_back, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_reload_failure_in_create_keeps_the_old_instance,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_hundred_reloads_leak_no_memory_and_no_descriptors,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_broken_or_replaced_module_on_sighup, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_file_emptied_on_disk_keeps_its_settings_on_sighup,
                                        h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
