/* commands-example (the built plugins/commands-example.so) against the mock host: a command
 * set the loader accepts, `echo` returning its text and refusing text over `max_text` (which
 * reconfigure changes in place), `time` returning the server clock in both forms, and neither
 * touching the bus. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "diag.h"
#include "loader.h"
#include "mock_host.h"

#define PLUGIN ARQ_BUILD_PLUGIN_DIR "/commands-example.so"

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
    arq_conn *conn;
    void *self;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f || !(f->mh = mock_host_new("example"))) {
        free(f);
        return -1;
    }
    f->conn = mock_host_conn(f->mh, "arq_client_00000000000000000000000000000001");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->self)
        desc->destroy(f->self);
    /* The example never touches the bus. */
    assert_int_equal(mock_host_bus_call_count(f->mh), 0);
    mock_host_free(f->mh);
    free(f);
    return 0;
}

static void create(struct fx *f, const char *yaml)
{
    mock_host_create_plugin(f->mh, desc, mock_host_validate(desc->options, yaml, NULL), &f->self);
}

/* Run `name` with args given as a JSON object (typed, as a client sends them). */
static arq_request *run(struct fx *f, const char *name, json_t *args_take)
{
    arq_request *req = mock_host_request(f->mh);
    mock_host_command(desc, name)->handler(f->self, req, f->conn, args_take);
    json_decref(args_take);
    return req;
}

/* --- tests --------------------------------------------------------------------------------- */

static void descriptor_is_a_command_set_the_loader_accepts(void **state)
{
    (void)state;
    char err[600] = "";
    if (loader_check_descriptor(desc, err, sizeof err) != 0)
        fail_msg("refused: %s", err);
    assert_string_equal(desc->name, "commands-example");
    assert_int_equal(desc->kind, ARQ_KIND_COMMANDS);
    const struct arq_commands_ops *ops = desc->ops;
    assert_string_equal(ops->commands[0].name, "echo");
    assert_string_equal(ops->commands[0].role, "guest");
    assert_string_equal(ops->commands[0].params[0].name, "text");
    assert_true(ops->commands[0].params[0].flags & ARQ_OPT_REQUIRED);
    assert_null(ops->commands[0].params[1].name);
    assert_string_equal(ops->commands[1].name, "time");
    assert_null(ops->commands[1].params);
    assert_null(ops->commands[2].name);
}

static void echo_needs_text(void **state)
{
    (void)state;
    struct diag_list diags = {0};
    assert_null(mock_host_validate(mock_host_command(desc, "echo")->params, "", &diags));
    assert_int_equal(diags.n, 1);
    assert_non_null(strstr(diags.items[0], "text"));
    diag_clear(&diags);
}

static void echo_returns_its_text(void **state)
{
    struct fx *f = *state;
    create(f, "");
    const json_t *data = mock_host_assert_ok(
        run(f, "echo", json_pack("{s:s}", "text", "h\xc3\xa9llo \"you\"")), "echo");
    json_t *want = json_pack("{s:s}", "text", "h\xc3\xa9llo \"you\"");
    assert_true(json_equal(data, want));
    json_decref(want);
}

static void echo_refuses_text_over_max_text(void **state)
{
    struct fx *f = *state;
    create(f, "max_text: 4\n");
    mock_host_assert_ok(run(f, "echo", json_pack("{s:s}", "text", "four")), "echo");
    mock_host_assert_error(run(f, "echo", json_pack("{s:s}", "text", "fives")), "VALIDATION_ERROR",
                           "text is 5 bytes; the limit is 4");
}

static void max_text_defaults_to_1KiB(void **state)
{
    struct fx *f = *state;
    char text[1026];
    create(f, "");
    memset(text, 'x', sizeof text - 1);
    text[1024] = '\0';
    mock_host_assert_ok(run(f, "echo", json_pack("{s:s}", "text", text)), "echo");
    text[1024] = 'x';
    text[1025] = '\0';
    mock_host_assert_error(run(f, "echo", json_pack("{s:s}", "text", text)), "VALIDATION_ERROR",
                           "text is 1025 bytes; the limit is 1024");
}

static void reconfigure_changes_max_text_in_place(void **state)
{
    struct fx *f = *state;
    create(f, "max_text: 4\n");
    json_t *cfg = mock_host_validate(desc->options, "max_text: 8\n", NULL);
    struct arq_error err = {""};
    assert_int_equal(desc->reconfigure(f->self, cfg, &err), 0);
    json_decref(cfg);
    mock_host_assert_ok(run(f, "echo", json_pack("{s:s}", "text", "eight ok")), "echo");
}

static void time_returns_rfc3339_and_unix_ms_of_the_same_instant(void **state)
{
    struct fx *f = *state;
    create(f, "");
    struct timespec before, after;
    timespec_get(&before, TIME_UTC);
    const json_t *data = mock_host_assert_ok(run(f, "time", json_object()), "server time");
    timespec_get(&after, TIME_UTC);
    assert_int_equal(json_object_size(data), 2);
    const char *t = json_string_value(json_object_get(data, "time"));
    const json_t *unix_ms = json_object_get(data, "unix_ms");
    assert_non_null(t);
    assert_true(json_is_integer(unix_ms));

    struct tm tm = {0};
    int ms = -1, end = 0;
    assert_int_equal(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%n", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &end),
                     7);
    assert_int_equal(strlen(t), 24);
    assert_string_equal(t + end, "Z");
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    long long from_text = (long long)timegm(&tm) * 1000 + ms;
    assert_true(from_text == (long long)json_integer_value(unix_ms));
    long long lo = (long long)before.tv_sec * 1000 + before.tv_nsec / 1000000;
    long long hi = (long long)after.tv_sec * 1000 + after.tv_nsec / 1000000;
    assert_true(from_text >= lo && from_text <= hi);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(descriptor_is_a_command_set_the_loader_accepts),
        cmocka_unit_test(echo_needs_text),
        cmocka_unit_test_setup_teardown(echo_returns_its_text, setup, teardown),
        cmocka_unit_test_setup_teardown(echo_refuses_text_over_max_text, setup, teardown),
        cmocka_unit_test_setup_teardown(max_text_defaults_to_1KiB, setup, teardown),
        cmocka_unit_test_setup_teardown(reconfigure_changes_max_text_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(time_returns_rfc3339_and_unix_ms_of_the_same_instant, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
