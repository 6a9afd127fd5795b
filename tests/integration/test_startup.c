/* Start-up and --check-config against real configuration directories: every defect of the
 * bad-plugin corpus and of the configuration is refused with its exact message and exit code,
 * both by `arqonbusd --check-config` and by a normal start. */
#include <arqonbus/plugin.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* A config with one plugin instance "broken" of `module`, at line 4, column 3. */
static void write_one_plugin(const struct fixture *f, const char *module)
{
    h_write(f->dir, "10-plugins.yaml",
            "host:\n"
            "  plugin_dir: %s\n"
            "plugins:\n"
            "  broken:\n"
            "    module: %s\n",
            ARQ_TEST_PLUGIN_DIR, module);
}

/* The text as it appears as a logfmt value: quotes and backslashes escaped. */
static char *logfmt_escaped(const char *text)
{
    char *out = malloc(strlen(text) * 2 + 1), *o = out;
    for (const char *s = text; *s; s++) {
        if (*s == '"' || *s == '\\')
            *o++ = '\\';
        *o++ = *s;
    }
    *o = '\0';
    return out;
}

static int contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle))
        return 1;
    fprintf(stderr, "expected to find:\n  %s\nin:\n%s\n", needle, haystack);
    return 0;
}

/* `--check-config` prints `expected` on a line of its own and exits 1; a normal start exits 1
 * without ever telling its service manager it is ready, and reports `expected` (as a logfmt
 * value) to the operator: that error text is the subject here, not the wording around it. */
static void expect_refused(const struct fixture *f, const char *expected, size_t nerrors)
{
    char *out;
    const char *check[] = {"--check-config", "-c", f->dir, NULL};
    assert_int_equal(h_run(check, &out), 1);
    char line[4096];
    snprintf(line, sizeof line, "%s\n", expected);
    assert_true(contains(out, line));
    char summary[700];
    snprintf(summary, sizeof summary, "arqonbusd: %zu error%s in %s\n", nerrors,
             nerrors == 1 ? "" : "s", f->dir);
    assert_true(contains(out, summary));
    assert_null(strstr(out, "configuration OK"));
    free(out);

    struct proc p = {0};
    h_spawn(&p, f->dir, f->logs, NULL, NULL);
    assert_int_equal(h_wait_ready(&p), -1); /* it exits first */
    assert_int_equal(h_wait_exit(&p, 10000), 1);
    h_notify_poll(&p);
    assert_int_equal(p.notified.ready, 0);
    assert_int_equal(p.notified.generation, -1);
    h_release(&p);
    out = h_slurp(p.out);
    char *escaped = logfmt_escaped(expected);
    assert_true(contains(out, escaped));
    free(escaped);
    free(out);
}

static void expect_plugin_refused(void **state, const char *module, const char *why)
{
    struct fixture *f = *state;
    write_one_plugin(f, module);
    char expected[2048];
    snprintf(expected, sizeof expected,
             "%s/10-plugins.yaml:4:3: plugin \"broken\" (module %s): \"%s/%s.so\": %s", f->dir,
             module, ARQ_TEST_PLUGIN_DIR, module, why);
    expect_refused(f, expected, 1);
}

static void test_missing_module_is_refused_with_a_suggestion(void **state)
{
    struct fixture *f = *state;
    write_one_plugin(f, "prob");
    char expected[2048];
    snprintf(expected, sizeof expected,
             "%s/10-plugins.yaml:4:3: plugin \"broken\" (module prob): cannot load "
             "\"%s/prob.so\": No such file or directory (did you mean \"probe\"?)",
             f->dir, ARQ_TEST_PLUGIN_DIR);
    expect_refused(f, expected, 1);
}

static void test_library_without_entry_symbol_is_refused(void **state)
{
    expect_plugin_refused(state, "bad_no_entry",
                          "not an ArqonBus plugin: it does not export arq_plugin_v1()");
}

static void test_wrong_abi_major_is_refused_naming_both_versions(void **state)
{
    char why[512];
    snprintf(why, sizeof why,
             "built for plugin ABI %d.%d; this arqonbusd supports ABI %d.%d (the major version "
             "must match: rebuild the plugin against this SDK)",
             ARQ_ABI_MAJOR + 1, ARQ_ABI_MINOR, ARQ_ABI_MAJOR, ARQ_ABI_MINOR);
    expect_plugin_refused(state, "bad_abi_major", why);
}

static void test_newer_abi_minor_is_refused_naming_both_versions(void **state)
{
    char why[512];
    snprintf(why, sizeof why,
             "built for plugin ABI %d.%d, newer than this arqonbusd's %d.%d (upgrade arqonbusd "
             "or rebuild the plugin against SDK %d.%d)",
             ARQ_ABI_MAJOR, ARQ_ABI_MINOR + 1, ARQ_ABI_MAJOR, ARQ_ABI_MINOR, ARQ_ABI_MAJOR,
             ARQ_ABI_MINOR);
    expect_plugin_refused(state, "bad_abi_minor", why);
}

static void test_short_struct_size_is_refused(void **state)
{
    char why[512];
    snprintf(why, sizeof why,
             "the descriptor is %zu bytes; plugin ABI %d.%d needs at least %zu (set struct_size "
             "to sizeof(struct arq_plugin))",
             offsetof(struct arq_plugin, create), ARQ_ABI_MAJOR, ARQ_ABI_MINOR,
             offsetof(struct arq_plugin, ops) + sizeof(void *));
    expect_plugin_refused(state, "bad_short_size", why);
}

static void test_null_create_is_refused(void **state)
{
    expect_plugin_refused(state, "bad_null_create",
                          "the descriptor has no create function (mandatory)");
}

static void test_null_mandatory_vtable_entry_is_refused(void **state)
{
    expect_plugin_refused(state, "bad_null_emit",
                          "the telemetry table has no emit_batch function (mandatory)");
}

static void test_failing_create_is_reported_with_the_plugins_reason(void **state)
{
    struct fixture *f = *state;
    write_one_plugin(f, "bad_create_fails");
    char expected[2048];
    snprintf(expected, sizeof expected,
             "%s/10-plugins.yaml:4:3: plugin \"broken\" (module bad_create_fails): cannot create "
             "instance: cannot reach the frobnicator at 127.0.0.1:1",
             f->dir);
    expect_refused(f, expected, 1);
}

static void test_duplicate_instance_name_across_files_is_refused(void **state)
{
    struct fixture *f = *state;
    h_write(f->dir, "10-a.yaml", "host:\n  plugin_dir: %s\nplugins:\n  dup:\n    module: probe\n",
            ARQ_TEST_PLUGIN_DIR);
    h_write(f->dir, "20-b.yaml", "plugins:\n  dup:\n    module: probe\n");
    char expected[2048];
    snprintf(expected, sizeof expected,
             "%s/20-b.yaml:2:3: plugin instance \"dup\" is already declared at %s/10-a.yaml:4:3",
             f->dir, f->dir);
    expect_refused(f, expected, 1);
}

static void test_unknown_option_names_allowed_keys_and_suggests(void **state)
{
    struct fixture *f = *state;
    h_write(f->dir, "10-p.yaml",
            "host:\n"
            "  plugin_dir: %s\n"
            "plugins:\n"
            "  p:\n"
            "    module: probe\n"
            "    config:\n"
            "      prot: 80\n",
            ARQ_TEST_PLUGIN_DIR);
    char expected[2048];
    snprintf(expected, sizeof expected,
             "%s/10-p.yaml:7:7: plugin \"p\" (module probe): unknown option \"prot\"; allowed: "
             "label, interval, tag, port, mode, limit, ratio, verbose, names, extra, password, "
             "fail_create, fail_start, fail_reconfigure, forget_handle, state_file (did you mean "
             "\"port\"?)",
             f->dir);
    expect_refused(f, expected, 1);
}

static void test_every_error_is_reported_not_only_the_first(void **state)
{
    struct fixture *f = *state;
    h_write(f->dir, "10-p.yaml",
            "host:\n"
            "  plugin_dir: %s\n"
            "plugins:\n"
            "  p:\n"
            "    module: probe\n"
            "    config:\n"
            "      port: 70000\n"
            "      mode: fastest\n"
            "  q:\n"
            "    module: bad_abi_major\n",
            ARQ_TEST_PLUGIN_DIR);
    char *out;
    const char *check[] = {"--check-config", "-c", f->dir, NULL};
    assert_int_equal(h_run(check, &out), 1);
    char want[3][1024];
    snprintf(want[0], sizeof want[0],
             "%s/10-p.yaml:7:13: plugin \"p\" (module probe): option \"port\": 70000 is out of "
             "range 0..65535\n",
             f->dir);
    snprintf(want[1], sizeof want[1],
             "%s/10-p.yaml:8:13: plugin \"p\" (module probe): option \"mode\": \"fastest\" is "
             "not one of: normal, loud\n",
             f->dir);
    snprintf(want[2], sizeof want[2], "%s/10-p.yaml:9:3: plugin \"q\" (module bad_abi_major)",
             f->dir);
    for (int i = 0; i < 3; i++)
        assert_true(contains(out, want[i]));
    assert_true(contains(out, "arqonbusd: 3 errors in "));
    free(out);
}

static void test_yaml_syntax_error_is_located(void **state)
{
    struct fixture *f = *state;
    h_write(f->dir, "10-bad.yaml", "plugins:\n  p:\n    module: [probe\n");
    char *out;
    const char *check[] = {"--check-config", "-c", f->dir, NULL};
    assert_int_equal(h_run(check, &out), 1);
    char prefix[700];
    snprintf(prefix, sizeof prefix, "%s/10-bad.yaml:", f->dir);
    assert_true(contains(out, prefix));
    assert_true(contains(out, "arqonbusd: 1 error in "));
    free(out);
}

static void test_unknown_top_level_and_host_keys_are_refused(void **state)
{
    struct fixture *f = *state;
    h_write(f->dir, "10-x.yaml", "host:\n  log_levle: debug\nplugin:\n  p:\n    module: probe\n");
    char *out;
    const char *check[] = {"--check-config", "-c", f->dir, NULL};
    assert_int_equal(h_run(check, &out), 1);
    char want[2][1024];
    snprintf(
        want[0], sizeof want[0],
        "%s/10-x.yaml:3:1: unknown top-level key \"plugin\"; allowed: host, bus, plugins (did you "
        "mean \"plugins\"?)\n",
        f->dir);
    assert_true(contains(out, want[0]));
    free(out);

    h_write(f->dir, "10-x.yaml", "host:\n  log_levle: debug\n");
    assert_int_equal(h_run(check, &out), 1);
    snprintf(
        want[1], sizeof want[1],
        "%s/10-x.yaml:2:3: host section: unknown option \"log_levle\"; allowed: log_level, "
        "log_format, log_file, node, plugin_dir, drain_delay, drain_timeout, telemetry_queue_size, "
        "telemetry_batch_size (did you mean \"log_level\"?)\n",
        f->dir);
    assert_true(contains(out, want[1]));
    free(out);
}

static void test_unset_environment_variable_is_located(void **state)
{
    struct fixture *f = *state;
    h_write(f->dir, "10-env.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  p:\n    module: probe\n    config:\n"
            "      label: ${ARQ_TEST_SURELY_UNSET_VARIABLE}\n",
            ARQ_TEST_PLUGIN_DIR);
    char *out;
    const char *check[] = {"--check-config", "-c", f->dir, NULL};
    assert_int_equal(h_run(check, &out), 1);
    char want[1024];
    snprintf(want, sizeof want,
             "%s/10-env.yaml:7:14: environment variable \"ARQ_TEST_SURELY_UNSET_VARIABLE\" is "
             "not set",
             f->dir);
    assert_true(contains(out, want));
    free(out);
}

static void test_valid_config_checks_ok_without_starting_anything(void **state)
{
    struct fixture *f = *state;
    char states[600];
    snprintf(states, sizeof states, "%s/probe.jsonl", f->logs);
    h_write(f->dir, "10-p.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  p:\n    module: probe\n    config:\n"
            "      state_file: %s\n"
            "  off:\n    module: not_installed_anywhere\n    enabled: false\n",
            ARQ_TEST_PLUGIN_DIR, states);
    char *out;
    const char *check[] = {"--check-config", "-c", f->dir, NULL};
    assert_int_equal(h_run(check, &out), 0);
    char want[700];
    snprintf(want, sizeof want, "arqonbusd: configuration OK: %s\n", f->dir);
    assert_true(contains(out, want));
    assert_null(strstr(out, "not_installed_anywhere"));
    free(out);
    /* Instances are created to validate them, and destroyed without being started. */
    json_t *lines = h_jsonl(states);
    assert_int_equal(json_array_size(lines), 2);
    assert_int_equal(h_jsonl_find(lines, 0, "{s:s}", "event", "created"), 0);
    assert_int_equal(h_jsonl_find(lines, 0, "{s:s}", "event", "destroyed"), 1);
    json_decref(lines);
}

static void test_daemon_in_its_build_tree_finds_the_plugins_built_beside_it(void **state)
{
    struct fixture *f = *state;
    /* Neither host.plugin_dir nor ARQONBUS_PLUGIN_DIR: the default directory. */
    unsetenv("ARQONBUS_PLUGIN_DIR");
    h_write(f->dir, "10-p.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: 0\n  builtin:\n    module: commands-builtin\n");
    char *out;
    const char *check[] = {"--check-config", "-c", f->dir, NULL};
    assert_int_equal(h_run(check, &out), 0);
    assert_null(strstr(out, "cannot load"));
    free(out);
    /* The README's own example: the repository's conf.d. */
    const char *readme[] = {"--check-config", "-c", ARQ_SOURCE_DIR "/conf.d", NULL};
    int rc = h_run(readme, &out);
    if (rc != 0)
        fail_msg("arqonbusd --check-config -c conf.d exited %d:\n%s", rc, out);
    free(out);
}

static void test_log_file_in_a_missing_directory_is_refused(void **state)
{
    struct fixture *f = *state;
    h_write(f->dir, "10-host.yaml",
            "host:\n  log_file: %s/no/such/dir/arqonbusd.log\n  plugin_dir: %s\n"
            "plugins:\n  p:\n    module: probe\n",
            f->logs, ARQ_TEST_PLUGIN_DIR);
    char expected[2048];
    snprintf(expected, sizeof expected,
             "%s/10-host.yaml:2:13: host section: option \"log_file\": the directory "
             "\"%s/no/such/dir\" does not exist",
             f->dir, f->logs);
    expect_refused(f, expected, 1);
}

static void test_secret_option_values_never_appear_in_output(void **state)
{
    struct fixture *f = *state;
    h_write(f->dir, "10-p.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  p:\n    module: probe\n    config:\n"
            "      password: [hunter2-secret]\n",
            ARQ_TEST_PLUGIN_DIR);
    char *out;
    const char *check[] = {"--check-config", "-c", f->dir, NULL};
    assert_int_equal(h_run(check, &out), 1);
    assert_true(contains(out, "option \"password\": invalid string value (not shown: the option "
                              "is secret)"));
    assert_null(strstr(out, "hunter2"));
    free(out);
}

static void test_command_line(void **state)
{
    (void)state;
    char *out;
    const char *version[] = {"--version", NULL};
    assert_int_equal(h_run(version, &out), 0);
    char want[128];
    snprintf(want, sizeof want, "(plugin ABI %d.%d)\n", ARQ_ABI_MAJOR, ARQ_ABI_MINOR);
    assert_true(contains(out, "arqonbusd "));
    assert_true(contains(out, want));
    free(out);

    const char *help[] = {"--help", NULL};
    assert_int_equal(h_run(help, &out), 0);
    assert_true(contains(out, "--check-config"));
    free(out);

    const char *bad[] = {"--no-such-flag", NULL};
    assert_int_equal(h_run(bad, &out), 2);
    free(out);

    const char *level[] = {"--log-level", "loud", NULL};
    assert_int_equal(h_run(level, &out), 2);
    assert_true(contains(out, "--log-level: \"loud\" is not one of: debug, info, warn, error"));
    free(out);

    const char *missing[] = {"--check-config", "-c", "/nonexistent/arqonbus.d", NULL};
    assert_int_equal(h_run(missing, &out), 1);
    assert_true(contains(out, "cannot read configuration directory \"/nonexistent/arqonbus.d\""));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_module_is_refused_with_a_suggestion, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_library_without_entry_symbol_is_refused, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_abi_major_is_refused_naming_both_versions,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_newer_abi_minor_is_refused_naming_both_versions,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_short_struct_size_is_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_null_create_is_refused, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_null_mandatory_vtable_entry_is_refused, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_failing_create_is_reported_with_the_plugins_reason,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_instance_name_across_files_is_refused,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_option_names_allowed_keys_and_suggests,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_every_error_is_reported_not_only_the_first, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_yaml_syntax_error_is_located, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_top_level_and_host_keys_are_refused, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_unset_environment_variable_is_located, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_valid_config_checks_ok_without_starting_anything,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_secret_option_values_never_appear_in_output, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(
            test_daemon_in_its_build_tree_finds_the_plugins_built_beside_it, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_log_file_in_a_missing_directory_is_refused, h_setup,
                                        h_teardown),
        cmocka_unit_test(test_command_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
