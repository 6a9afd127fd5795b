/* A running arqonbusd: graceful stop on SIGTERM and SIGINT (exit 0, every instance stopped and
 * destroyed, sanitizer-clean in the ASan build), telemetry events reaching telemetry-log, the
 * log file reopened on SIGUSR1, and ${VAR} expansion from the real environment. */
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
#include <jansson.h>

#include "harness.h"

static void write_probe_config(const struct fixture *f)
{
    h_write(f->dir, "10-probe.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  p1:\n    module: probe\n"
            "    config:\n      label: ${ARQ_TEST_LABEL:-unset}\n",
            ARQ_TEST_PLUGIN_DIR);
}

static void stops_cleanly_on(void **state, int sig)
{
    struct fixture *f = *state;
    write_probe_config(f);
    const char *env[] = {"ARQ_TEST_LABEL=from-env", NULL};
    h_spawn(&f->p, f->dir, f->logs, NULL, env);
    assert_int_equal(h_wait_count(&f->p, "msg=started", 1, 10000), 0);
    assert_int_equal(h_wait_count(&f->p, "msg=\"probe started\" serial=1 label=from-env", 1, 10000),
                     0);
    h_kill(&f->p, sig);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
    char *out = h_slurp(f->p.out);
    char want[64];
    snprintf(want, sizeof want, "msg=stopping signal=%s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    assert_non_null(strstr(out, want));
    /* stop, then destroy, then the host's last word, in that order */
    const char *stopped = strstr(out, "msg=\"probe stopped\"");
    const char *destroyed = strstr(out, "msg=\"probe destroyed\"");
    const char *last = strstr(out, "msg=stopped");
    assert_non_null(stopped);
    assert_non_null(destroyed);
    assert_non_null(last);
    assert_true(stopped < destroyed && destroyed < last);
    /* Sanitizer builds report leaks and errors on stderr at exit. */
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
    assert_int_equal(h_wait_count(&f->p, "msg=\"probe tick\"", 2, 10000), 0);
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
    struct proc file_view = f->p;
    snprintf(file_view.out, sizeof file_view.out, "%s", log);
    assert_int_equal(h_wait_count(&file_view, "\"msg\":\"probe tick\"", 1, 10000), 0);

    assert_int_equal(rename(log, rotated), 0);
    h_kill(&f->p, SIGUSR1);
    assert_int_equal(h_wait_count(&file_view, "\"msg\":\"log file reopened\"", 1, 10000), 0);
    assert_int_equal(h_wait_count(&file_view, "\"msg\":\"probe tick\"", 1, 10000), 0);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);

    char *before = h_slurp(rotated);
    char *after = h_slurp(log);
    assert_non_null(strstr(before, "{\"ts\":\""));
    assert_non_null(
        strstr(before, "\"level\":\"info\",\"component\":\"host\",\"msg\":\"started\""));
    assert_null(strstr(before, "log file reopened"));
    assert_non_null(strstr(after, "\"msg\":\"stopped\""));
    free(before);
    free(after);
}

static void test_a_forgotten_handle_cannot_hold_up_shutdown(void **state)
{
    struct fixture *f = *state;
    h_write(f->dir, "10-p.yaml",
            "host:\n  plugin_dir: %s\n  drain_timeout: 300ms\n"
            "plugins:\n  p1:\n    module: probe\n    config:\n      forget_handle: true\n",
            ARQ_TEST_PLUGIN_DIR);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    assert_int_equal(h_wait_count(&f->p, "msg=\"probe started\"", 1, 10000), 0);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 5000), 0);
    char *out = h_slurp(f->p.out);
    const char *destroyed = strstr(out, "msg=\"probe destroyed\"");
    const char *expired = strstr(out, "msg=\"work still pending when drain_timeout expired; "
                                      "closing it\"");
    const char *closed = strstr(out, "msg=\"closing a handle left open at shutdown\" type=timer");
    assert_non_null(destroyed);
    assert_non_null(expired);
    assert_non_null(closed);
    assert_true(destroyed < expired && expired < closed);
    free(out);
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
