/* --describe-options: what it reads from real modules through the daemon's loader (a 1.1
 * plugin, a 1.0 command set read through the loader's upgrade), the modules a configuration
 * enables (a disabled instance's module may be missing), a module the loader refuses failing
 * the description as it fails a start, and the markdown and man renderings of one option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "describe.h"
#include "mock_host.h"

struct fx {
    char dir[512];
    struct loader loader;
    struct diag_list diags;
};

static const struct arq_option section_spec[] = {ARQ_OPT_RANGE("queue", ARQ_OPT_SIZE, "16MiB", 4096,
                                                               1073741824, ARQ_OPT_RELOADABLE,
                                                               "a | in help, and <angle> brackets"),
                                                 ARQ_OPT_END};
static const struct config_section section = {"routing", section_spec};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    mock_host_tmpdir(f->dir, sizeof f->dir, "arq_describe");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < f->diags.n; i++)
        fprintf(stderr, "diag: %s\n", f->diags.items[i]);
    diag_clear(&f->diags);
    loader_free(&f->loader);
    mock_host_remove_tmpdir(f->dir);
    free(f);
    return 0;
}

static void link_module(struct fx *f, const char *module, const char *as)
{
    char from[600], to[600];
    snprintf(from, sizeof from, "%s/%s.so", ARQ_TEST_PLUGIN_DIR, module);
    snprintf(to, sizeof to, "%s/%s", f->dir, as);
    assert_int_equal(symlink(from, to), 0);
}

static void write_file(struct fx *f, const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* The option `name` of `spec` (a JSON array); the test fails when there is none. */
static const json_t *option(const json_t *spec, const char *name)
{
    size_t i;
    const json_t *o;
    json_array_foreach(spec, i, o)
    {
        if (!strcmp(json_string_value(json_object_get(o, "name")), name))
            return o;
    }
    fail_msg("no option \"%s\"", name);
    return NULL;
}

static void describe_plugin_dir_reads_every_module_through_the_loader(void **state)
{
    struct fx *f = *state;
    link_module(f, "sdk10", "sdk10.so");
    link_module(f, "probe", "probe.so");
    write_file(f, "README", "not a module\n");
    json_t *d = describe_build(&f->loader, NULL, f->dir, &section, &f->diags);
    assert_non_null(d);
    assert_int_equal(f->diags.n, 0);

    const json_t *sections = json_object_get(d, "sections");
    assert_int_equal(json_array_size(sections), 2);
    const json_t *host = json_array_get(sections, 0);
    assert_string_equal(json_string_value(json_object_get(host, "name")), "host");
    const json_t *level = option(json_object_get(host, "options"), "log_level");
    assert_string_equal(json_string_value(json_object_get(level, "default")), "info");
    assert_true(json_is_true(json_object_get(level, "reloadable")));
    assert_int_equal(json_array_size(json_object_get(level, "choices")), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(sections, 1), "name")),
                        "routing");

    /* In name order: probe before sdk10, whatever the directory's order. */
    const json_t *modules = json_object_get(d, "modules");
    assert_int_equal(json_array_size(modules), 2);
    const json_t *probe = json_array_get(modules, 0), *sdk10 = json_array_get(modules, 1);
    assert_string_equal(json_string_value(json_object_get(probe, "name")), "probe");
    assert_string_equal(json_string_value(json_object_get(probe, "kind")), "telemetry");
    assert_non_null(json_string_value(json_object_get(probe, "version")));
    const json_t *interval = option(json_object_get(probe, "options"), "interval");
    assert_string_equal(json_string_value(json_object_get(interval, "type")), "duration");
    assert_string_equal(json_string_value(json_object_get(interval, "default")), "50ms");
    assert_true(json_number_value(json_object_get(interval, "min")) == 1);
    assert_true(json_number_value(json_object_get(interval, "max")) == 60000);
    assert_true(json_is_true(json_object_get(interval, "reloadable")));
    const json_t *password = option(json_object_get(probe, "options"), "password");
    assert_true(json_is_true(json_object_get(password, "secret")));
    assert_null(json_object_get(password, "default"));
    assert_null(json_object_get(option(json_object_get(probe, "options"), "tag"), "min"));
    assert_null(json_object_get(probe, "commands"));

    /* A 1.0 command set: its specs read with the 1.0 stride, by the loader's upgrade. */
    assert_string_equal(json_string_value(json_object_get(sdk10, "abi")), "1.0");
    const json_t *mode = option(json_object_get(sdk10, "options"), "mode");
    assert_string_equal(json_string_value(json_array_get(json_object_get(mode, "choices"), 0)),
                        "quiet");
    assert_true(json_number_value(json_object_get(
                    option(json_object_get(sdk10, "options"), "interval"), "max")) == 60000);
    const json_t *say = json_array_get(json_object_get(sdk10, "commands"), 0);
    assert_string_equal(json_string_value(json_object_get(say, "name")), "say");
    assert_string_equal(json_string_value(json_object_get(say, "role")), "guest");
    const json_t *params = json_object_get(say, "params");
    assert_true(json_is_true(json_object_get(option(params, "text"), "required")));
    assert_true(json_number_value(json_object_get(option(params, "times"), "max")) == 10);
    assert_string_equal(json_string_value(json_object_get(option(params, "loud"), "default")),
                        "false");
    json_decref(d);
}

static void describe_refuses_a_module_the_loader_refuses(void **state)
{
    struct fx *f = *state;
    link_module(f, "probe", "probe.so");
    link_module(f, "bad_abi_major", "bad_abi_major.so");
    assert_null(describe_build(&f->loader, NULL, f->dir, NULL, &f->diags));
    assert_int_equal(f->diags.n, 1);
    assert_non_null(strstr(f->diags.items[0], "bad_abi_major.so"));
    assert_non_null(strstr(f->diags.items[0], "built for plugin ABI 2."));
    diag_clear(&f->diags);
}

static void describe_configuration_names_the_modules_it_enables(void **state)
{
    struct fx *f = *state;
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "plugins:\n"
             "  first:\n    module: %s/probe.so\n"
             "  old:\n    module: %s/sdk10.so\n"
             "  second:\n    module: %s/probe.so\n    config:\n      port: 1\n"
             "  off:\n    module: not-installed\n    enabled: false\n",
             ARQ_TEST_PLUGIN_DIR, ARQ_TEST_PLUGIN_DIR, ARQ_TEST_PLUGIN_DIR);
    write_file(f, "10-plugins.yaml", yaml);
    write_file(f, "00-routing.yaml", "routing:\n  queue: 1MiB\n");
    json_t *d = describe_build(&f->loader, f->dir, NULL, &section, &f->diags);
    assert_non_null(d);
    const json_t *modules = json_object_get(d, "modules");
    assert_int_equal(json_array_size(modules), 2);
    const json_t *probe = json_array_get(modules, 0);
    assert_string_equal(json_string_value(json_object_get(probe, "name")), "probe");
    const json_t *instances = json_object_get(probe, "instances");
    assert_int_equal(json_array_size(instances), 2);
    assert_string_equal(json_string_value(json_array_get(instances, 0)), "first");
    assert_string_equal(json_string_value(json_array_get(instances, 1)), "second");
    assert_string_equal(json_string_value(json_object_get(json_array_get(modules, 1), "name")),
                        "sdk10");
    json_decref(d);

    /* The configuration is checked as at start: a bad value is an error, with its place. */
    write_file(f, "00-routing.yaml", "routing:\n  queue: 1\n");
    assert_null(describe_build(&f->loader, f->dir, NULL, &section, &f->diags));
    assert_int_equal(f->diags.n, 1);
    assert_non_null(strstr(f->diags.items[0], "00-routing.yaml:2:10:"));
    diag_clear(&f->diags);
}

static char *render(const json_t *d, enum describe_format fmt)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(describe_print(out, d, fmt), 0);
    fclose(out);
    return text;
}

static void describe_writes_markdown_and_man(void **state)
{
    struct fx *f = *state;
    link_module(f, "sdk10", "sdk10.so");
    json_t *d = describe_build(&f->loader, NULL, f->dir, &section, &f->diags);
    assert_non_null(d);

    char *md = render(d, DESCRIBE_MARKDOWN);
    assert_non_null(
        strstr(md, "### `routing:`\n\n| option | type | default | reload | meaning |\n"));
    assert_non_null(strstr(md, "| `queue` | size 4KiB..1GiB | `16MiB` | yes | a \\| in help, and "
                               "&lt;angle&gt; brackets |\n"));
    assert_non_null(strstr(md, "| `interval` | duration 1ms..1m | `2s` | no | a duration |\n"));
    assert_non_null(strstr(md, "| `mode` | `quiet`, `loud` | `quiet` | yes | an enum |\n"));
    assert_non_null(strstr(md, "| `say` | guest | `text` (string, required): what to say<br>"));
    assert_null(strstr(md, f->dir)); /* nothing of this machine */
    free(md);

    char *man = render(d, DESCRIBE_MAN);
    assert_non_null(strstr(man, ".SS \"routing:\"\n.TP\n\\fBqueue\\fR\nsize 4KiB..1GiB; default "
                                "\\fB16MiB\\fR; reloadable.\n.br\na | in help, and <angle> "
                                "brackets\n"));
    assert_non_null(strstr(man, ".SS \"Module sdk10\"\n"));
    assert_non_null(strstr(man, "\\fBlog_level\\fR\nenum: \\fBdebug\\fR, "));
    assert_null(strstr(man, f->dir));
    free(man);

    char *text = render(d, DESCRIBE_TEXT);
    assert_non_null(strstr(text, f->dir)); /* text says which file each module is */
    free(text);
    json_decref(d);
}

static void describe_format_names(void **state)
{
    (void)state;
    enum describe_format fmt;
    assert_int_equal(describe_format_parse("man", &fmt), 0);
    assert_int_equal(fmt, DESCRIBE_MAN);
    assert_int_equal(describe_format_parse("json", &fmt), 0);
    assert_int_equal(fmt, DESCRIBE_JSON);
    assert_int_equal(describe_format_parse("yaml", &fmt), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(describe_plugin_dir_reads_every_module_through_the_loader,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(describe_refuses_a_module_the_loader_refuses, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(describe_configuration_names_the_modules_it_enables, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(describe_writes_markdown_and_man, setup, teardown),
        cmocka_unit_test(describe_format_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
