/* config_load: the .yaml and .yml files of a directory read in lexical order and merged, the
 * typed host section, plugin declarations with their positions, module path resolution, and
 * every configuration error with its exact file:line:col text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "diag.h"
#include "mock_host.h"

struct fx {
    char dir[64];
    struct diag_list diags;
    struct config *conf;
};

static const char *fake_getenv(const char *name, void *arg)
{
    static const char *const env[][2] = {
        {"MODULE", "probe"},
        {"LEVEL", "warn"},
        {"NODE", "edge-7"},
    };
    (void)arg;
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
        if (strcmp(env[i][0], name) == 0)
            return env[i][1];
    return NULL;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    mock_host_tmpdir(f->dir, sizeof f->dir, "arq_config");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    /* The plugin_dir default reads the process environment: start from a known one. */
    unsetenv("ARQONBUS_PLUGIN_DIR");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    config_free(f->conf);
    diag_clear(&f->diags);
    mock_host_remove_tmpdir(f->dir);
    unsetenv("ARQONBUS_PLUGIN_DIR");
    free(f);
    return 0;
}

static void write_file(struct fx *f, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

/* "<dir>/<rest>" into buf. */
static const char *in_dir(struct fx *f, char *buf, size_t size, const char *rest)
{
    snprintf(buf, size, "%s/%s", f->dir, rest);
    return buf;
}

/* The section of the layer above the runtime, as arqonbusd registers the bus's (the spec is
 * the test's own: the runtime knows nothing of the bus's options). */
static const struct arq_option section_options[] = {
    ARQ_OPT("auto_create", ARQ_OPT_BOOL, "true", ARQ_OPT_RELOADABLE, "create on join"),
    ARQ_OPT_RANGE("max_rooms", ARQ_OPT_INT, "10", 1, 100, ARQ_OPT_RELOADABLE, "rooms"),
    ARQ_OPT_END};
static const struct config_section section = {"bus", section_options};

static struct config *load(struct fx *f)
{
    config_free(f->conf);
    f->conf = config_load(f->dir, fake_getenv, NULL, &section, &f->diags);
    return f->conf;
}

static void load_ok(struct fx *f)
{
    if (!load(f)) {
        for (size_t i = 0; i < f->diags.n; i++)
            print_message("diag: %s\n", f->diags.items[i]);
        fail_msg("config_load failed");
    }
    assert_int_equal(f->diags.n, 0);
}

/* The diagnostics, exactly and in order; each expected text may hold "%1$s" for the dir. */
static void check_diags(struct fx *f, const char *const *want)
{
    size_t n = 0;
    while (want[n])
        n++;
    for (size_t i = 0; i < f->diags.n; i++)
        print_message("diag: %s\n", f->diags.items[i]);
    assert_int_equal(f->diags.n, n);
    for (size_t i = 0; i < n; i++) {
        char expected[1024];
        snprintf(expected, sizeof expected, want[i], f->dir);
        assert_string_equal(f->diags.items[i], expected);
    }
}
#define CHECK_DIAGS(f, ...) check_diags((f), (const char *const[]){__VA_ARGS__, NULL})

static void check_pos(const struct cfg_pos *p, const char *file, int line, int col)
{
    assert_string_equal(p->file, file);
    assert_int_equal(p->line, line);
    assert_int_equal(p->col, col);
}

/* --- merging and declarations ------------------------------------------------------------ */

static void files_are_read_in_lexical_order_and_plugins_keep_declaration_order(void **state)
{
    struct fx *f = *state;
    char a[256], b[256];
    write_file(f, "20-b.yml",
               "plugins:\n"
               "  zeta:\n"
               "    module: probe\n");
    write_file(f, "10-a.yaml",
               "plugins:\n"
               "  beta:\n"
               "    module: probe\n"
               "  alpha:\n"
               "    module: probe\n");
    write_file(f, "notes.txt", "this: is not read\n");
    load_ok(f);
    assert_int_equal(f->conf->nplugins, 3);
    assert_string_equal(f->conf->plugins[0].name, "beta");
    assert_string_equal(f->conf->plugins[1].name, "alpha");
    assert_string_equal(f->conf->plugins[2].name, "zeta");
    in_dir(f, a, sizeof a, "10-a.yaml");
    in_dir(f, b, sizeof b, "20-b.yml");
    check_pos(&f->conf->plugins[0].pos, a, 2, 3);
    check_pos(&f->conf->plugins[1].pos, a, 4, 3);
    check_pos(&f->conf->plugins[2].pos, b, 2, 3);
    assert_string_equal(f->conf->dir, f->dir);
}

static void declaration_has_module_enabled_config_and_positions(void **state)
{
    struct fx *f = *state;
    char file[256];
    write_file(f, "a.yaml",
               "plugins:\n"
               "  audit-log:\n"
               "    module: probe\n"
               "    enabled: no\n"
               "    config:\n"
               "      label: audit\n"
               "  bare:\n"
               "    module: probe\n");
    load_ok(f);
    in_dir(f, file, sizeof file, "a.yaml");
    const struct plugin_decl *d = config_find(f->conf, "audit-log");
    assert_ptr_equal(d, &f->conf->plugins[0]);
    assert_string_equal(d->module, "probe");
    assert_int_equal(d->enabled, 0);
    assert_true(json_is_object(d->config_node));
    assert_string_equal(json_string_value(json_object_get(d->config_node, "label")), "audit");
    check_pos(&d->pos, file, 2, 3);
    check_pos(&d->config_pos, file, 5, 5);

    const struct plugin_decl *bare = config_find(f->conf, "bare");
    assert_ptr_equal(bare, &f->conf->plugins[1]);
    assert_int_equal(bare->enabled, 1);
    assert_null(bare->config_node);
    /* Without `config:`, problems in the (default) config point at the instance. */
    check_pos(&bare->config_pos, file, 7, 3);
    assert_null(config_find(f->conf, "nope"));
}

static void empty_plugins_section_declares_nothing(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "host:\n  log_level: info\nplugins:\n");
    load_ok(f);
    assert_int_equal(f->conf->nplugins, 0);
}

static void empty_file_is_a_valid_configuration(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "# nothing yet\n");
    load_ok(f);
    assert_int_equal(f->conf->nplugins, 0);
    assert_int_equal(f->conf->host.log_level, ARQ_LOG_INFO);
}

static void empty_file_is_named_in_a_warning(void **state)
{
    struct fx *f = *state;
    char want[512];
    write_file(f, "10-a.yaml", "plugins:\n  p:\n    module: probe\n");
    write_file(f, "20-empty.yaml", "");
    write_file(f, "30-comments.yaml", "# host:\n#   log_level: debug\n");
    write_file(f, "40-section.yaml", "plugins:\n");
    load_ok(f);
    assert_int_equal(f->conf->warnings.n, 2);
    snprintf(want, sizeof want,
             "%s/20-empty.yaml: warning: the file is empty: it sets nothing, and what it does "
             "not set has its default",
             f->dir);
    assert_string_equal(f->conf->warnings.items[0], want);
    assert_non_null(strstr(f->conf->warnings.items[1], "/30-comments.yaml: warning: "));
    /* Every file is remembered with what it sets. */
    assert_int_equal(f->conf->nfiles, 4);
    assert_string_equal(f->conf->files[0].held, "plugins.p");
    assert_null(f->conf->files[1].held);
    assert_null(f->conf->files[3].held);
}

static void file_emptied_since_the_running_configuration_is_an_error(void **state)
{
    struct fx *f = *state;
    write_file(f, "10-host.yaml", "host:\n  log_level: debug\n  node: west\n");
    write_file(f, "20-p.yaml", "plugins:\n  p:\n    module: probe\n");
    write_file(f, "30-empty.yaml", "");
    load_ok(f);
    struct config *running = f->conf;
    f->conf = NULL;

    /* Unchanged, an empty file that held nothing before is fine. */
    load_ok(f);
    assert_int_equal(config_check_emptied(f->conf, running, &f->diags), 0);
    assert_int_equal(f->diags.n, 0);

    /* Truncated by a failed write, or left with comments only: the reload must not reset
     * what the file set. */
    write_file(f, "10-host.yaml", "");
    write_file(f, "20-p.yaml", "# plugins:\n");
    load_ok(f);
    assert_int_equal(config_check_emptied(f->conf, running, &f->diags), -1);
    CHECK_DIAGS(f,
                "%1$s/10-host.yaml: the file sets nothing now, but the running configuration has "
                "settings from it (host.log_level, host.node): reloading would drop them. Delete "
                "the file to drop them on purpose",
                "%1$s/20-p.yaml: the file sets nothing now, but the running configuration has "
                "settings from it (plugins.p): reloading would drop them. Delete the file to "
                "drop them on purpose");
    diag_clear(&f->diags);

    /* Deleted, they are dropped on purpose. */
    char path[256];
    assert_int_equal(unlink(in_dir(f, path, sizeof path, "10-host.yaml")), 0);
    assert_int_equal(unlink(in_dir(f, path, sizeof path, "20-p.yaml")), 0);
    load_ok(f);
    assert_int_equal(config_check_emptied(f->conf, running, &f->diags), 0);
    config_free(running);
}

static void log_file_in_a_missing_directory_is_an_error(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "host:\n  log_file: /nonexistent-arq/logs/arqonbusd.log\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "%1$s/a.yaml:2:13: host section: option \"log_file\": the directory "
                   "\"/nonexistent-arq/logs\" does not exist");
    diag_clear(&f->diags);

    char dir_as_file[256];
    write_file(f, "a.yaml", "host:\n  log_file: /tmp\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "%1$s/a.yaml:2:13: host section: option \"log_file\": \"/tmp\" is a "
                   "directory");
    diag_clear(&f->diags);

    /* A file that does not exist yet, in a directory that does, is created at start. */
    snprintf(dir_as_file, sizeof dir_as_file, "host:\n  log_file: %s/new.log\n", f->dir);
    write_file(f, "a.yaml", dir_as_file);
    load_ok(f);
    char path[256];
    assert_int_equal(access(in_dir(f, path, sizeof path, "new.log"), F_OK), -1);
}

/* --- the host section ---------------------------------------------------------------------- */

static void host_section_is_typed(void **state)
{
    struct fx *f = *state;
    write_file(f, "00-host.yaml",
               "host:\n"
               "  log_level: debug\n"
               "  log_format: json\n"
               "  log_file: /var/log/arq.log\n"
               "  node: n1\n"
               "  plugin_dir: /opt/arq/plugins\n"
               "  drain_timeout: 1.5s\n"
               "  telemetry_queue_size: 32\n"
               "  telemetry_batch_size: 8\n");
    load_ok(f);
    const struct host_settings *h = &f->conf->host;
    assert_int_equal(h->log_level, ARQ_LOG_DEBUG);
    assert_int_equal(h->log_format, LOG_FORMAT_JSON);
    assert_string_equal(h->log_file, "/var/log/arq.log");
    assert_string_equal(h->node, "n1");
    assert_string_equal(h->plugin_dir, "/opt/arq/plugins");
    assert_int_equal(h->drain_timeout_ms, 1500);
    assert_int_equal(h->telemetry_queue_size, 32);
    assert_int_equal(h->telemetry_batch_size, 8);
    assert_int_equal(json_integer_value(json_object_get(f->conf->host_values, "drain_timeout")),
                     1500);
}

static void host_defaults_apply_when_nothing_is_set(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "plugins:\n");
    load_ok(f);
    const struct host_settings *h = &f->conf->host;
    assert_int_equal(h->log_level, ARQ_LOG_INFO);
    assert_int_equal(h->log_format, LOG_FORMAT_LOGFMT);
    assert_null(h->log_file);
    assert_null(h->node);
    assert_string_equal(h->plugin_dir, config_default_plugin_dir());
    assert_int_equal(h->drain_timeout_ms, 10000);
    assert_int_equal(h->telemetry_queue_size, 8192);
    assert_int_equal(h->telemetry_batch_size, 256);
}

static void host_options_may_be_spread_over_files(void **state)
{
    struct fx *f = *state;
    write_file(f, "10-log.yaml", "host:\n  log_level: error\n");
    write_file(f, "20-node.yaml", "host:\n  node: west\n");
    load_ok(f);
    assert_int_equal(f->conf->host.log_level, ARQ_LOG_ERROR);
    assert_string_equal(f->conf->host.node, "west");
}

static void plugin_dir_default_comes_from_the_environment(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "plugins:\n  p:\n    module: probe\n");
    assert_int_equal(setenv("ARQONBUS_PLUGIN_DIR", "/srv/arq/mods", 1), 0);
    load_ok(f);
    assert_string_equal(f->conf->host.plugin_dir, "/srv/arq/mods");
    assert_string_equal(f->conf->plugins[0].module_path, "/srv/arq/mods/probe.so");
}

static void empty_plugin_dir_variable_means_the_installed_directory(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "plugins:\n");
    assert_int_equal(setenv("ARQONBUS_PLUGIN_DIR", "", 1), 0);
    load_ok(f);
    assert_string_equal(f->conf->host.plugin_dir, config_default_plugin_dir());
}

static void relative_plugin_dir_is_resolved_beside_the_declaring_file(void **state)
{
    struct fx *f = *state;
    char want[256];
    write_file(f, "a.yaml", "host:\n  plugin_dir: ../lib/plugins\n");
    assert_int_equal(setenv("ARQONBUS_PLUGIN_DIR", "/ignored", 1), 0);
    load_ok(f);
    assert_string_equal(f->conf->host.plugin_dir, in_dir(f, want, sizeof want, "../lib/plugins"));
}

static void absolute_plugin_dir_is_kept(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "host:\n  plugin_dir: /usr/lib/arq\n");
    load_ok(f);
    assert_string_equal(f->conf->host.plugin_dir, "/usr/lib/arq");
}

/* --- module paths -------------------------------------------------------------------------- */

static void module_paths_are_resolved(void **state)
{
    struct fx *f = *state;
    char want[256];
    write_file(f, "00-host.yaml", "host:\n  plugin_dir: /opt/arq\n");
    write_file(f, "10-plugins.yaml",
               "plugins:\n"
               "  by-name:\n"
               "    module: telemetry-log\n"
               "  by-file-name:\n"
               "    module: telemetry-log.so\n"
               "  relative:\n"
               "    module: mods/custom.so\n"
               "  dotted:\n"
               "    module: ./custom.so\n"
               "  absolute:\n"
               "    module: /usr/lib/x/custom.so\n");
    load_ok(f);
    assert_int_equal(f->conf->nplugins, 5);
    assert_string_equal(f->conf->plugins[0].module, "telemetry-log");
    assert_string_equal(f->conf->plugins[0].module_path, "/opt/arq/telemetry-log.so");
    assert_string_equal(f->conf->plugins[1].module_path, "/opt/arq/telemetry-log.so");
    assert_string_equal(f->conf->plugins[2].module, "mods/custom.so");
    assert_string_equal(f->conf->plugins[2].module_path,
                        in_dir(f, want, sizeof want, "mods/custom.so"));
    assert_string_equal(f->conf->plugins[3].module_path,
                        in_dir(f, want, sizeof want, "./custom.so"));
    assert_string_equal(f->conf->plugins[4].module_path, "/usr/lib/x/custom.so");
}

static void module_name_with_so_inside_still_gets_the_suffix(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml",
               "host:\n"
               "  plugin_dir: /opt/arq\n"
               "plugins:\n"
               "  s:\n"
               "    module: storage.sound\n");
    load_ok(f);
    assert_string_equal(f->conf->plugins[0].module_path, "/opt/arq/storage.sound.so");
}

static void module_paths_use_the_plugin_dir_declared_in_another_file(void **state)
{
    struct fx *f = *state;
    write_file(f, "10-plugins.yaml", "plugins:\n  p:\n    module: probe\n");
    write_file(f, "90-host.yaml", "host:\n  plugin_dir: /late/dir\n");
    load_ok(f);
    assert_string_equal(f->conf->plugins[0].module_path, "/late/dir/probe.so");
}

/* --- ${VAR} -------------------------------------------------------------------------------- */

static void env_references_are_expanded_through_the_callback(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml",
               "host:\n"
               "  log_level: ${LEVEL}\n"
               "  node: ${NODE}-${ZONE:-a}\n"
               "  plugin_dir: /opt/arq\n"
               "plugins:\n"
               "  p:\n"
               "    module: ${MODULE}\n");
    load_ok(f);
    assert_int_equal(f->conf->host.log_level, ARQ_LOG_WARN);
    assert_string_equal(f->conf->host.node, "edge-7-a");
    assert_string_equal(f->conf->plugins[0].module, "probe");
    assert_string_equal(f->conf->plugins[0].module_path, "/opt/arq/probe.so");
}

static void unset_env_reference_is_an_error_at_the_scalar(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "plugins:\n  p:\n    module: ${NO_SUCH_MODULE}\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "%1$s/a.yaml:3:13: environment variable \"NO_SUCH_MODULE\" is not set (use "
                   "${NO_SUCH_MODULE:-default} to give a default)");
}

/* --- errors -------------------------------------------------------------------------------- */

static void empty_directory_is_an_error(void **state)
{
    struct fx *f = *state;
    write_file(f, "readme.txt", "plugins: {}\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "no configuration files (*.yaml, *.yml) in \"%1$s\"");
}

static void missing_directory_is_an_error(void **state)
{
    struct fx *f = *state;
    char dir[256];
    in_dir(f, dir, sizeof dir, "nope");
    f->conf = config_load(dir, NULL, NULL, &section, &f->diags);
    assert_null(f->conf);
    CHECK_DIAGS(f, "cannot read configuration directory \"%1$s/nope\": No such file or directory");
}

static void duplicate_host_option_across_files_names_both_places(void **state)
{
    struct fx *f = *state;
    write_file(f, "10-a.yaml", "host:\n  node: one\n  log_level: info\n");
    write_file(f, "20-b.yaml", "plugins:\n\nhost:\n  log_level: debug\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "%1$s/20-b.yaml:4:3: host option \"log_level\" is already declared at "
                   "%1$s/10-a.yaml:3:3");
}

static void duplicate_plugin_instance_across_files_names_both_places(void **state)
{
    struct fx *f = *state;
    write_file(f, "10-a.yaml", "plugins:\n  one:\n    module: probe\n  dup:\n    module: probe\n");
    write_file(f, "20-b.yaml", "plugins:\n  dup:\n    module: other\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "%1$s/20-b.yaml:2:3: plugin instance \"dup\" is already declared at "
                   "%1$s/10-a.yaml:4:3");
}

static void unknown_top_level_key_suggests_the_closest(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "host:\n  node: x\nplugin:\n  p:\n    module: probe\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "%1$s/a.yaml:3:1: unknown top-level key \"plugin\"; allowed: host, bus, plugins "
                   "(did you mean \"plugins\"?)");
}

static void unknown_top_level_key_without_a_close_match_lists_the_allowed(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "listeners:\n  - 9100\n");
    assert_null(load(f));
    CHECK_DIAGS(
        f, "%1$s/a.yaml:1:1: unknown top-level key \"listeners\"; allowed: host, bus, plugins");
}

static void the_layers_section_is_validated_against_its_spec(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "bus:\n  max_rooms: 5\n");
    load_ok(f);
    assert_int_equal(json_integer_value(json_object_get(f->conf->section_values, "max_rooms")), 5);
    assert_true(json_is_true(json_object_get(f->conf->section_values, "auto_create")));
    write_file(f, "a.yaml", "bus:\n  max_rooms: 500\n");
    assert_null(load(f));
    assert_int_equal(f->diags.n, 1);
    print_message("%s\n", f->diags.items[0]);
    assert_non_null(strstr(f->diags.items[0], "a.yaml:2:14: bus section: option \"max_rooms\""));
    diag_clear(&f->diags);
    write_file(f, "a.yaml", "bus:\n  max_rooms: 5\n");
    write_file(f, "b.yaml", "bus:\n  max_rooms: 6\n");
    assert_null(load(f));
    CHECK_DIAGS(f,
                "%1$s/b.yaml:2:3: bus option \"max_rooms\" is already declared at %1$s/a.yaml:2:3");
}

static void without_a_section_its_key_is_unknown(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "bus:\n  max_rooms: 5\n");
    f->conf = config_load(f->dir, fake_getenv, NULL, NULL, &f->diags);
    assert_null(f->conf);
    CHECK_DIAGS(f, "%1$s/a.yaml:1:1: unknown top-level key \"bus\"; allowed: host, plugins");
}

static void unknown_host_option_suggests_the_closest(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "host:\n  log_levl: debug\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "%1$s/a.yaml:2:3: host section: unknown option \"log_levl\"; allowed: "
                   "log_level, log_format, log_file, node, plugin_dir, drain_delay, drain_timeout, "
                   "telemetry_queue_size, telemetry_batch_size (did you mean \"log_level\"?)");
}

static void invalid_host_value_is_reported_at_the_value(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "host:\n  log_level: loud\n  telemetry_batch_size: 0\n");
    assert_null(load(f));
    CHECK_DIAGS(f,
                "%1$s/a.yaml:2:14: host section: option \"log_level\": \"loud\" is not one of: "
                "debug, info, warn, error",
                "%1$s/a.yaml:3:25: host section: option \"telemetry_batch_size\": 0 is out of "
                "range 1..65536");
}

static void unknown_instance_key_suggests_the_closest(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "plugins:\n  p:\n    modul: probe\n");
    assert_null(load(f));
    CHECK_DIAGS(f,
                "%1$s/a.yaml:3:5: plugin \"p\": unknown option \"modul\"; allowed: module, "
                "enabled, config (did you mean \"module\"?)",
                "%1$s/a.yaml:2:3: plugin \"p\": missing required option \"module\"");
}

static void missing_module_is_reported_at_the_instance(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml",
               "plugins:\n"
               "  p:\n"
               "    config:\n"
               "      label: x\n"
               "  q:\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "%1$s/a.yaml:2:3: plugin \"p\": missing required option \"module\"",
                "%1$s/a.yaml:5:3: plugin \"q\": missing required option \"module\"");
}

static void invalid_enabled_value_is_reported_at_the_value(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "plugins:\n  p:\n    module: probe\n    enabled: maybe\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "%1$s/a.yaml:4:14: plugin \"p\": \"enabled\": expected true, false, or a "
                   "comparison such as \"${ARQONBUS_STORAGE_BACKEND:-memory} == memory\", got "
                   "\"maybe\"");
}

/* `enabled: A == B` lets an environment variable pick one of several instances. */
static void enabled_comparisons_pick_instances(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml",
               "plugins:\n"
               "  mem:\n    module: probe\n    enabled: ${MODULE} == probe\n"
               "  red:\n    module: probe\n    enabled: ${MODULE} == redis\n"
               "  not:\n    module: probe\n    enabled: ${MODULE} != redis\n"
               "  off:\n    module: probe\n    enabled: \"no\"\n");
    struct config *conf = load(f);
    assert_non_null(conf);
    assert_int_equal(config_find(conf, "mem")->enabled, 1);
    assert_int_equal(config_find(conf, "red")->enabled, 0);
    assert_int_equal(config_find(conf, "not")->enabled, 1);
    assert_int_equal(config_find(conf, "off")->enabled, 0);
}

static void invalid_instance_names_are_refused(void **state)
{
    struct fx *f = *state;
    char long_name[66], longest[65], yaml[512];
    memset(long_name, 'n', 65);
    long_name[65] = '\0';
    memset(longest, 'n', 64);
    longest[64] = '\0';
    snprintf(yaml, sizeof yaml,
             "plugins:\n"
             "  has space:\n"
             "    module: probe\n"
             "  a/b:\n"
             "    module: probe\n"
             "  \"\":\n"
             "    module: probe\n"
             "  %s:\n"
             "    module: probe\n"
             "  %s:\n"
             "    module: probe\n"
             "  ok_name.v2-B:\n"
             "    module: probe\n",
             long_name, longest);
    write_file(f, "a.yaml", yaml);
    assert_null(load(f));
    char want[512];
    snprintf(want, sizeof want,
             "%s/a.yaml:8:3: plugin \"%s\": instance names are 1 to 64 characters of letters, "
             "digits, '_', '.' and '-'",
             f->dir, long_name);
    CHECK_DIAGS(f,
                "%1$s/a.yaml:2:3: plugin \"has space\": instance names are 1 to 64 characters "
                "of letters, digits, '_', '.' and '-'",
                "%1$s/a.yaml:4:3: plugin \"a/b\": instance names are 1 to 64 characters of "
                "letters, digits, '_', '.' and '-'",
                "%1$s/a.yaml:6:3: plugin \"\": instance names are 1 to 64 characters of "
                "letters, digits, '_', '.' and '-'",
                want);
}

static void plugins_that_is_not_a_mapping_is_refused(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "plugins: [probe, telemetry-log]\n");
    write_file(f, "b.yaml", "host: debug\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "%1$s/a.yaml:1:10: \"plugins\" must be a mapping",
                "%1$s/b.yaml:1:7: \"host\" must be a mapping");
}

static void instance_that_is_not_a_mapping_is_refused(void **state)
{
    struct fx *f = *state;
    write_file(f, "a.yaml", "plugins:\n  p: probe\n");
    assert_null(load(f));
    CHECK_DIAGS(f, "%1$s/a.yaml:2:6: plugin \"p\": expected a mapping of options, got a scalar");
}

static void errors_of_every_file_are_reported_together(void **state)
{
    struct fx *f = *state;
    write_file(f, "10-a.yaml", "plugins:\n  p:\n    module: probe\n    enable: true\n");
    write_file(f, "20-b.yaml", "hots:\n  node: x\n");
    write_file(f, "30-c.yaml", "plugins:\n  p:\n    module: probe\n  q: [\n");
    assert_null(load(f));
    assert_int_equal(f->diags.n, 2);
    char want[512];
    snprintf(
        want, sizeof want,
        "%s/20-b.yaml:1:1: unknown top-level key \"hots\"; allowed: host, bus, plugins (did you "
        "mean \"host\"?)",
        f->dir);
    assert_string_equal(f->diags.items[0], want);
    /* The syntax error of the last file; the instance-level problem of the first is reported
     * once the files parse. */
    snprintf(want, sizeof want, "%s/30-c.yaml:", f->dir);
    assert_memory_equal(f->diags.items[1], want, strlen(want));
}

static void earlier_diagnostics_in_the_list_neither_fail_the_load_nor_vanish(void **state)
{
    struct fx *f = *state;
    diag_add(&f->diags, NULL, "earlier problem");
    write_file(f, "a.yaml", "plugins:\n  p:\n    module: probe\n");
    assert_non_null(load(f));
    CHECK_DIAGS(f, "earlier problem");
}

/* --- default directories ------------------------------------------------------------------ */

static void resolve(const char *dir, const char *rel, const char *want)
{
    char out[128];
    assert_int_equal(config_resolve_from(dir, rel, out, sizeof out), 0);
    assert_string_equal(out, want);
}

static void installed_directories_are_resolved_from_the_executable(void **state)
{
    (void)state;
    resolve("/opt/arq/bin", "../lib/arqonbus/plugins", "/opt/arq/lib/arqonbus/plugins");
    resolve("/usr/bin", "../lib/x86_64-linux-gnu/arqonbus/plugins",
            "/usr/lib/x86_64-linux-gnu/arqonbus/plugins");
    resolve("/usr/bin", "/etc/arqonbus/conf.d", "/etc/arqonbus/conf.d");
    resolve("/p/sbin/x", "../../etc/arqonbus/conf.d", "/p/etc/arqonbus/conf.d");
    resolve("/bin", "../etc/arqonbus/conf.d", "/etc/arqonbus/conf.d");
    resolve("/", "plugins", "/plugins");
    resolve("/w/build", "plugins", "/w/build/plugins");
    resolve("/w/build", "./plugins", "/w/build/plugins");
    resolve("/w/build", "..", "/w");
    char small[8];
    assert_int_equal(config_resolve_from("/usr/bin", "../lib/arqonbus", small, sizeof small), -1);

    /* This test program is not installed: the default is beside it or under its prefix. */
    const char *d = config_default_plugin_dir();
    assert_true(d[0] == '/');
    assert_non_null(strstr(d, "/plugins"));
    assert_ptr_equal(config_default_plugin_dir(), d);
    assert_non_null(strstr(config_default_conf_dir(), "arqonbus/conf.d"));
}

static void free_of_null_is_harmless(void **state)
{
    (void)state;
    config_free(NULL);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(files_are_read_in_lexical_order_and_plugins_keep_declaration_order),
        T(declaration_has_module_enabled_config_and_positions),
        T(empty_plugins_section_declares_nothing),
        T(the_layers_section_is_validated_against_its_spec),
        T(without_a_section_its_key_is_unknown),
        T(empty_file_is_a_valid_configuration),
        T(empty_file_is_named_in_a_warning),
        T(file_emptied_since_the_running_configuration_is_an_error),
        T(log_file_in_a_missing_directory_is_an_error),
        T(host_section_is_typed),
        T(host_defaults_apply_when_nothing_is_set),
        T(host_options_may_be_spread_over_files),
        T(plugin_dir_default_comes_from_the_environment),
        T(empty_plugin_dir_variable_means_the_installed_directory),
        T(relative_plugin_dir_is_resolved_beside_the_declaring_file),
        T(absolute_plugin_dir_is_kept),
        T(module_paths_are_resolved),
        T(module_name_with_so_inside_still_gets_the_suffix),
        T(module_paths_use_the_plugin_dir_declared_in_another_file),
        T(env_references_are_expanded_through_the_callback),
        T(unset_env_reference_is_an_error_at_the_scalar),
        T(empty_directory_is_an_error),
        T(missing_directory_is_an_error),
        T(duplicate_host_option_across_files_names_both_places),
        T(duplicate_plugin_instance_across_files_names_both_places),
        T(unknown_top_level_key_suggests_the_closest),
        T(unknown_top_level_key_without_a_close_match_lists_the_allowed),
        T(unknown_host_option_suggests_the_closest),
        T(invalid_host_value_is_reported_at_the_value),
        T(unknown_instance_key_suggests_the_closest),
        T(missing_module_is_reported_at_the_instance),
        T(invalid_enabled_value_is_reported_at_the_value),
        T(enabled_comparisons_pick_instances),
        T(invalid_instance_names_are_refused),
        T(plugins_that_is_not_a_mapping_is_refused),
        T(instance_that_is_not_a_mapping_is_refused),
        T(errors_of_every_file_are_reported_together),
        T(earlier_diagnostics_in_the_list_neither_fail_the_load_nor_vanish),
        cmocka_unit_test(installed_directories_are_resolved_from_the_executable),
        cmocka_unit_test(free_of_null_is_harmless),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
