/* A running arqonbusd: graceful stop on SIGTERM and SIGINT (exit 0, every instance stopped and
 * destroyed, sanitizer-clean in the ASan build), telemetry events reaching telemetry-log, the
 * log file reopened on SIGUSR1, and ${VAR} expansion from the real environment. The probe's
 * state_file and the notify socket say what happened; only the SIGUSR1 test reads a log file,
 * because the log file is its subject, and then only its JSON structure, not its wording. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

/* The probe's state file in the fixture's log directory. */
static const char *state_file(const struct fixture *f)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/probe.jsonl", f->logs);
    return path;
}

static void write_probe_config(const struct fixture *f)
{
    h_write(f->dir, "10-probe.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  p1:\n    module: probe\n"
            "    config:\n      label: ${ARQ_TEST_LABEL:-unset}\n      state_file: %s\n",
            ARQ_TEST_PLUGIN_DIR, state_file(f));
}

static void stops_cleanly_on(void **state, int sig)
{
    struct fixture *f = *state;
    write_probe_config(f);
    const char *env[] = {"ARQ_TEST_LABEL=from-env", NULL};
    h_spawn(&f->p, f->dir, f->logs, NULL, env);
    assert_int_equal(h_wait_ready(&f->p), 0);
    json_t *lines = h_jsonl(state_file(f));
    assert_true(h_jsonl_find(lines, 0, "{s:s, s:i, s:s}", "event", "started", "serial", 1, "label",
                             "from-env") >= 0);
    json_decref(lines);
    h_kill(&f->p, sig);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
    /* A graceful stop, announced to the service manager. */
    h_notify_poll(&f->p);
    assert_int_equal(f->p.notified.stopping, 1);
    /* The host announced the stop to its sinks, then stopped and destroyed the instance. */
    lines = h_jsonl(state_file(f));
    int stopping =
        h_jsonl_find(lines, 0, "{s:s, s:s}", "event", "telemetry", "type", "system_stopping");
    int stopped = h_jsonl_find(lines, 0, "{s:s, s:i}", "event", "stopped", "serial", 1);
    int destroyed = h_jsonl_find(lines, 0, "{s:s, s:i}", "event", "destroyed", "serial", 1);
    assert_true(stopping >= 0 && stopped >= 0 && destroyed >= 0);
    assert_true(stopping < stopped && stopped < destroyed);
    assert_int_equal((int)json_array_size(lines), destroyed + 1); /* nothing after it */
    json_decref(lines);
    /* Sanitizer builds report leaks and errors on stderr at exit. */
    char *out = h_slurp(f->p.out);
    assert_null(strstr(out, "ERROR: AddressSanitizer"));
    assert_null(strstr(out, "ERROR: LeakSanitizer"));
    assert_null(strstr(out, "runtime error:"));
    free(out);
}

static void test_sigterm_stops_gracefully_with_exit_0(void **state)
{
    stops_cleanly_on(state, SIGTERM);
}

static void test_sigint_stops_gracefully_with_exit_0(void **state)
{
    stops_cleanly_on(state, SIGINT);
}

/* Lines of a JSON-lines file whose event_type is `type`. */
static int count_events(const char *path, const char *type)
{
    char *text = h_slurp(path);
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t err;
        json_t *ev = json_loads(line, 0, &err);
        assert_non_null(ev); /* every line is a complete JSON object */
        assert_true(json_is_object(ev));
        assert_non_null(json_object_get(ev, "timestamp"));
        assert_non_null(json_object_get(ev, "node"));
        if (!strcmp(json_string_value(json_object_get(ev, "event_type")), type))
            n++;
        json_decref(ev);
    }
    free(text);
    return n;
}

static void test_telemetry_log_writes_filtered_json_lines(void **state)
{
    struct fixture *f = *state;
    char all[600], some[600];
    snprintf(all, sizeof all, "%s/all.jsonl", f->logs);
    snprintf(some, sizeof some, "%s/some.jsonl", f->logs);
    h_write(f->dir, "10-t.yaml",
            "host:\n  plugin_dir: %s\n  node: node-a\n"
            "plugins:\n"
            "  p1:\n    module: probe\n    config:\n      interval: 20ms\n"
            "  everything:\n    module: %s/telemetry-log.so\n    config:\n      path: %s\n"
            "  lifecycle:\n    module: %s/telemetry-log.so\n    config:\n      path: %s\n"
            "      events: [system_started, system_stopping]\n",
            ARQ_TEST_PLUGIN_DIR, ARQ_BUILD_PLUGIN_DIR, all, ARQ_BUILD_PLUGIN_DIR, some);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    assert_int_equal(h_wait_jsonl(all, 20, 10000, "{s:s}", "event_type", "probe_tick"), 0);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);

    assert_int_equal(count_events(all, "system_started"), 1);
    assert_int_equal(count_events(all, "system_stopping"), 1);
    assert_true(count_events(all, "probe_tick") >= 20);
    assert_int_equal(count_events(some, "system_started"), 1);
    assert_int_equal(count_events(some, "system_stopping"), 1);
    assert_int_equal(count_events(some, "probe_tick"), 0);

    char *text = h_slurp(all);
    assert_non_null(strstr(text, "{\"event_type\":\"system_started\",\"timestamp\":\""));
    assert_non_null(strstr(text, "\"node\":\"node-a\",\"source\":\"host\""));
    assert_non_null(strstr(text, "\"event_type\":\"probe_tick\""));
    assert_non_null(strstr(text, "\"source\":\"p1\""));
    free(text);
}

/* Every line of a JSON log file is an object with the format's fields; how many there are. */
static size_t json_log_lines(const char *path)
{
    json_t *lines = h_jsonl(path);
    char *text = h_slurp(path);
    size_t n = 0;
    for (const char *c = text; *c; c++)
        n += *c == '\n';
    free(text);
    assert_int_equal(json_array_size(lines), n); /* no line that is not JSON */
    size_t i;
    const json_t *line;
    json_array_foreach(lines, i, line)
    {
        assert_true(json_is_string(json_object_get(line, "ts")));
        assert_true(json_is_string(json_object_get(line, "level")));
        assert_true(json_is_string(json_object_get(line, "component")));
        assert_true(json_is_string(json_object_get(line, "msg")));
    }
    json_decref(lines);
    return n;
}

/* Wait until the file has at least `n` complete lines; 0, or -1 after 10 s (scaled). */
static int wait_lines(const char *path, size_t n)
{
    return h_wait_jsonl(path, (int)n, 10000, "{}");
}

/* The subject of this test is the log file itself: it counts and parses its lines (the JSON
 * format's fields), never their wording. */
static void test_sigusr1_reopens_the_log_file(void **state)
{
    struct fixture *f = *state;
    char log[600], rotated[600];
    snprintf(log, sizeof log, "%s/arqonbus.log", f->logs);
    snprintf(rotated, sizeof rotated, "%s/arqonbus.log.1", f->logs);
    h_write(f->dir, "10-p.yaml",
            "host:\n  plugin_dir: %s\n  log_file: %s\n  log_format: json\n"
            "plugins:\n  p1:\n    module: probe\n",
            ARQ_TEST_PLUGIN_DIR, log);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    assert_int_equal(h_wait_ready(&f->p), 0);
    assert_int_equal(wait_lines(log, 1), 0);

    assert_int_equal(rename(log, rotated), 0);
    h_kill(&f->p, SIGUSR1);
    /* Reopened: a new file at the old path gets lines ... */
    assert_int_equal(wait_lines(log, 1), 0);
    /* ... and from then on the renamed one none: compared once the process is gone. */
    char *before = h_slurp(rotated);
    size_t rotated_size = strlen(before);
    free(before);
    size_t running = json_log_lines(log);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);

    before = h_slurp(rotated);
    assert_int_equal(strlen(before), rotated_size);
    free(before);
    assert_true(json_log_lines(rotated) >= 1);
    /* The stop wrote to the reopened file. */
    assert_true(json_log_lines(log) > running);
}

static void test_a_forgotten_handle_cannot_hold_up_shutdown(void **state)
{
    struct fixture *f = *state;
    h_write(f->dir, "10-p.yaml",
            "host:\n  plugin_dir: %s\n  drain_timeout: 300ms\n"
            "plugins:\n  p1:\n    module: probe\n    config:\n      forget_handle: true\n"
            "      state_file: %s\n",
            ARQ_TEST_PLUGIN_DIR, state_file(f));
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    assert_int_equal(h_wait_ready(&f->p), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 5000), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* The instance went, the timer it forgot held the loop until drain_timeout expired, and
     * then the host closed it: a clean exit, no sooner than the drain_timeout. */
    json_t *lines = h_jsonl(state_file(f));
    assert_true(h_jsonl_find(lines, 0, "{s:s, s:i}", "event", "destroyed", "serial", 1) >= 0);
    json_decref(lines);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000L + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
    assert_true(ms >= 300);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigterm_stops_gracefully_with_exit_0, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_sigint_stops_gracefully_with_exit_0, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_telemetry_log_writes_filtered_json_lines, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_sigusr1_reopens_the_log_file, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_a_forgotten_handle_cannot_hold_up_shutdown, h_setup,
                                        h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
