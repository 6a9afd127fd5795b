/* arqonbus-cli: the command line, parsed and validated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "cli_args.h"

static const struct cli_env no_env = {NULL, NULL, NULL};

/* cli_parse() on "arqonbus-cli" followed by the NULL-terminated arguments. */
static int parse_env(struct cli_opts *o, char *err, size_t errsz, const struct cli_env *env, ...)
{
    char *argv[32] = {"arqonbus-cli"};
    int argc = 1;
    va_list ap;
    va_start(ap, env);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = a;
    va_end(ap);
    return cli_parse(argc, argv, env, o, err, errsz);
}

#define PARSE(o, err, ...) parse_env((o), (err), sizeof(err), &no_env, __VA_ARGS__, (char *)NULL)

/* The command line must be refused with an error containing `want`. */
#define REFUSED(want, ...)                                                                         \
    do {                                                                                           \
        struct cli_opts o_;                                                                        \
        char err_[256];                                                                            \
        assert_int_equal(PARSE(&o_, err_, __VA_ARGS__), CLI_PARSE_ERROR);                          \
        if (!strstr(err_, (want)))                                                                 \
            fail_msg("error \"%s\" does not contain \"%s\"", err_, (want));                        \
        assert_null(o_.json);                                                                      \
    } while (0)

static void defaults_are_local_port_9100_root_path_and_10_seconds(void **state)
{
    (void)state;
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "cmd", "status"), CLI_PARSE_OK);
    assert_string_equal(o.host, "127.0.0.1");
    assert_int_equal(o.port, 9100);
    assert_string_equal(o.path, "/");
    assert_null(o.token);
    assert_true(o.timeout_s == 10.0);
    assert_int_equal(o.count, 0);
    assert_int_equal(o.verbose, 0);
    assert_int_equal(o.tls, 0);
    assert_int_equal(o.command, CLI_CMD);
    assert_string_equal(o.name, "status");
    assert_true(json_is_object(o.json) && json_object_size(o.json) == 0);
    assert_null(o.json_text);
    cli_opts_free(&o);
}

static void environment_overrides_defaults_and_options_override_environment(void **state)
{
    (void)state;
    struct cli_env env = {"bus.internal", "9200", "envtoken"};
    struct cli_opts o;
    char err[256];
    assert_int_equal(parse_env(&o, err, sizeof err, &env, "cmd", "ping", (char *)NULL),
                     CLI_PARSE_OK);
    assert_string_equal(o.host, "bus.internal");
    assert_int_equal(o.port, 9200);
    assert_string_equal(o.token, "envtoken");
    cli_opts_free(&o);
    assert_int_equal(parse_env(&o, err, sizeof err, &env, "-H", "10.0.0.1", "-p", "9300", "--token",
                               "flagtoken", "cmd", "ping", (char *)NULL),
                     CLI_PARSE_OK);
    assert_string_equal(o.host, "10.0.0.1");
    assert_int_equal(o.port, 9300);
    assert_string_equal(o.token, "flagtoken");
    cli_opts_free(&o);
}

static void empty_environment_values_count_as_unset(void **state)
{
    (void)state;
    struct cli_env env = {"", "", ""};
    struct cli_opts o;
    char err[256];
    assert_int_equal(parse_env(&o, err, sizeof err, &env, "cmd", "ping", (char *)NULL),
                     CLI_PARSE_OK);
    assert_string_equal(o.host, "127.0.0.1");
    assert_int_equal(o.port, 9100);
    assert_null(o.token);
    cli_opts_free(&o);
}

static void bad_environment_port_is_an_error_unless_a_port_option_replaces_it(void **state)
{
    (void)state;
    struct cli_env env = {NULL, "nine", NULL};
    struct cli_opts o;
    char err[256];
    assert_int_equal(parse_env(&o, err, sizeof err, &env, "cmd", "ping", (char *)NULL),
                     CLI_PARSE_ERROR);
    assert_non_null(strstr(err, "ARQONBUS_SERVER_PORT"));
    assert_int_equal(
        parse_env(&o, err, sizeof err, &env, "-p", "9100", "cmd", "ping", (char *)NULL),
        CLI_PARSE_OK);
    cli_opts_free(&o);
}

static void sub_takes_a_room_and_an_optional_channel(void **state)
{
    (void)state;
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "sub", "science"), CLI_PARSE_OK);
    assert_int_equal(o.command, CLI_SUB);
    assert_string_equal(o.room, "science");
    assert_null(o.channel);
    assert_null(o.json);
    cli_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "sub", "science", "lab"), CLI_PARSE_OK);
    assert_string_equal(o.channel, "lab");
    cli_opts_free(&o);
    REFUSED("sub takes ROOM [CHANNEL], got 0 arguments", "sub");
    REFUSED("sub takes ROOM [CHANNEL], got 3 arguments", "sub", "a", "b", "c");
}

static void pub_takes_room_optional_channel_and_the_json_last(void **state)
{
    (void)state;
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "pub", "science", "{\"t\": 21.5}"), CLI_PARSE_OK);
    assert_int_equal(o.command, CLI_PUB);
    assert_string_equal(o.room, "science");
    assert_null(o.channel);
    assert_string_equal(o.json_text, "{\"t\": 21.5}");
    assert_true(json_real_value(json_object_get(o.json, "t")) == 21.5);
    cli_opts_free(&o);
    assert_null(o.json);
    assert_int_equal(PARSE(&o, err, "pub", "science", "lab", "[1,2]"), CLI_PARSE_OK);
    assert_string_equal(o.channel, "lab");
    assert_true(json_is_array(o.json));
    cli_opts_free(&o);
    REFUSED("pub takes ROOM [CHANNEL] JSON, got 1 argument", "pub", "science");
    REFUSED("pub takes ROOM [CHANNEL] JSON, got 4 arguments", "pub", "a", "b", "{}", "x");
}

static void pub_payload_may_be_any_json_value_including_negative_numbers(void **state)
{
    (void)state;
    const char *ok[] = {"\"hello\"", "42", "-5", "-0.5", "null", "true", "[]", "{}"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct cli_opts o;
        char err[256];
        if (PARSE(&o, err, "pub", "r", ok[i]) != CLI_PARSE_OK)
            fail_msg("payload %s refused: %s", ok[i], err);
        assert_non_null(o.json);
        cli_opts_free(&o);
    }
}

static void pub_refuses_invalid_json_and_says_where(void **state)
{
    (void)state;
    REFUSED("the payload is not valid JSON", "pub", "r", "hello");
    REFUSED("line 1, column", "pub", "r", "{\"a\": }");
    REFUSED("not valid JSON", "pub", "r", "{\"a\":1} trailing");
    REFUSED("not valid JSON", "pub", "r", "");
    REFUSED("duplicate", "pub", "r", "{\"a\":1,\"a\":2}");
}

static void cmd_args_default_to_an_empty_object_and_must_be_an_object(void **state)
{
    (void)state;
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "cmd", "history", "{\"room\":\"a\",\"limit\":5}"),
                     CLI_PARSE_OK);
    assert_string_equal(o.name, "history");
    assert_int_equal(json_integer_value(json_object_get(o.json, "limit")), 5);
    cli_opts_free(&o);
    REFUSED("JSON-ARGS must be a JSON object", "cmd", "history", "[1]");
    REFUSED("JSON-ARGS must be a JSON object", "cmd", "history", "\"a\"");
    REFUSED("JSON-ARGS is not valid JSON", "cmd", "history", "{room:a}");
    REFUSED("cmd takes NAME [JSON-ARGS], got 0 arguments", "cmd");
    REFUSED("cmd takes NAME [JSON-ARGS], got 3 arguments", "cmd", "a", "{}", "{}");
}

static void options_may_come_after_the_command(void **state)
{
    (void)state;
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "sub", "science", "-n", "5", "lab", "-v", "--timeout", "2.5"),
                     CLI_PARSE_OK);
    assert_string_equal(o.room, "science");
    assert_string_equal(o.channel, "lab");
    assert_int_equal(o.count, 5);
    assert_int_equal(o.verbose, 1);
    assert_true(o.timeout_s == 2.5);
    cli_opts_free(&o);
}

static void long_options_take_equals_and_short_options_attached_values(void **state)
{
    (void)state;
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--host=bus", "--port=9200", "--path=/ws?ack=0", "--count=3",
                           "--token=t", "sub", "r"),
                     CLI_PARSE_OK);
    assert_string_equal(o.host, "bus");
    assert_int_equal(o.port, 9200);
    assert_string_equal(o.path, "/ws?ack=0");
    assert_int_equal(o.count, 3);
    assert_string_equal(o.token, "t");
    cli_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "-Hbus2", "-p9300", "-n7", "sub", "r"), CLI_PARSE_OK);
    assert_string_equal(o.host, "bus2");
    assert_int_equal(o.port, 9300);
    assert_int_equal(o.count, 7);
    cli_opts_free(&o);
}

static void double_dash_ends_the_options(void **state)
{
    (void)state;
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "cmd", "--", "--odd-name"), CLI_PARSE_OK);
    assert_string_equal(o.name, "--odd-name");
    cli_opts_free(&o);
}

static void tls_and_insecure_are_flags_and_insecure_needs_tls(void **state)
{
    (void)state;
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--tls", "--insecure", "cmd", "ping"), CLI_PARSE_OK);
    assert_int_equal(o.tls, 1);
    assert_int_equal(o.insecure, 1);
    cli_opts_free(&o);
    REFUSED("--insecure needs --tls", "--insecure", "cmd", "ping");
}

static void help_is_reported_whatever_else_is_there(void **state)
{
    (void)state;
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--help"), CLI_PARSE_HELP);
    assert_int_equal(PARSE(&o, err, "sub", "-h"), CLI_PARSE_HELP);
    assert_int_equal(PARSE(&o, err, "pub", "r", "not json", "--help"), CLI_PARSE_HELP);
    assert_null(o.json);
}

static void unknown_options_and_missing_values_are_usage_errors(void **state)
{
    (void)state;
    REFUSED("unknown option '--prot'", "--prot", "1", "cmd", "ping");
    REFUSED("unknown option '-x'", "-x", "cmd", "ping");
    REFUSED("unknown option '-vv'", "-vv", "cmd", "ping");
    REFUSED("--port needs a value", "cmd", "ping", "--port");
    REFUSED("-H needs a value", "cmd", "ping", "-H");
    REFUSED("--verbose takes no value", "--verbose=1", "cmd", "ping");
}

static void bad_option_values_are_refused_naming_the_value(void **state)
{
    (void)state;
    REFUSED("invalid port '0'", "-p", "0", "cmd", "ping");
    REFUSED("invalid port '65536'", "-p", "65536", "cmd", "ping");
    REFUSED("invalid port '80x'", "--port", "80x", "cmd", "ping");
    REFUSED("invalid port '+80'", "--port", "+80", "cmd", "ping");
    REFUSED("invalid port ''", "--port=", "cmd", "ping");
    REFUSED("invalid timeout '0'", "--timeout", "0", "cmd", "ping");
    REFUSED("invalid timeout '-1'", "--timeout", "-1", "cmd", "ping");
    REFUSED("invalid timeout 'nan'", "--timeout", "nan", "cmd", "ping");
    REFUSED("invalid timeout 'inf'", "--timeout", "inf", "cmd", "ping");
    REFUSED("invalid timeout '1s'", "--timeout", "1s", "cmd", "ping");
    REFUSED("invalid count '0'", "-n", "0", "sub", "r");
    REFUSED("invalid count '-3'", "--count", "-3", "sub", "r");
    REFUSED("the path must start with '/'", "--path", "ws", "cmd", "ping");
    REFUSED("the host must not be empty", "-H", "", "cmd", "ping");
    REFUSED("the token must not be empty", "--token", "", "cmd", "ping");
}

static void count_applies_to_sub_only(void **state)
{
    (void)state;
    REFUSED("--count applies to sub only", "-n", "2", "cmd", "ping");
    REFUSED("--count applies to sub only", "-n", "2", "pub", "r", "{}");
}

static void empty_room_channel_and_name_are_refused(void **state)
{
    (void)state;
    REFUSED("ROOM must not be empty", "sub", "");
    REFUSED("CHANNEL must not be empty", "sub", "r", "");
    REFUSED("ROOM must not be empty", "pub", "", "{}");
    REFUSED("NAME must not be empty", "cmd", "");
}

/* The path's query turns acks off as arqonbusd reads it (docs/protocol.md, Transport). */
static void the_path_query_turns_acks_off_as_the_server_reads_it(void **state)
{
    (void)state;
    static const char *const off[] = {"/?ack=0",   "/?ack=false",   "/?ack=no",
                                      "/?ack=off", "/ws?x=1&ack=0", "/?token=t&ack=no&y",
                                      "/?ack=%30", "/?%61ck=off",   NULL};
    static const char *const on[] = {"/",        "/?ack=1",   "/?ack=",     "/?ack",
                                     "/?ack=0x", "/?ack=OFF", "/?xack=0",   "/?back=0&a=0",
                                     "/ack=0",   "/?ack=%3",  "/?ack=%zz0", NULL};
    for (size_t i = 0; off[i]; i++)
        if (!cli_path_acks_off(off[i]))
            fail_msg("%s: acks should be off", off[i]);
    for (size_t i = 0; on[i]; i++)
        if (cli_path_acks_off(on[i]))
            fail_msg("%s: acks should be on", on[i]);
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--path", "/?ack=0", "pub", "r", "1"), CLI_PARSE_OK);
    assert_int_equal(o.acks_off, 1);
    cli_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "pub", "r", "1"), CLI_PARSE_OK);
    assert_int_equal(o.acks_off, 0);
    cli_opts_free(&o);
}

static void a_missing_or_unknown_command_is_a_usage_error(void **state)
{
    (void)state;
    REFUSED("missing COMMAND", "-n", "2");
    REFUSED("-i takes no COMMAND", "-i", "cmd", "ping");
    /* No COMMAND at all: the interactive mode (main() refuses it without a terminal). */
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "-v"), CLI_PARSE_OK);
    assert_int_equal(o.command, CLI_NONE);
    cli_opts_free(&o);
    REFUSED("unknown command 'publish'", "publish", "r", "{}");
    REFUSED("too many arguments, starting at 'i'", "pub", "a", "b", "c", "d", "e", "f", "g", "i");
}

static void version_wait_formats_payload_sources_and_history_options(void **state)
{
    (void)state;
    struct cli_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "-V"), CLI_PARSE_VERSION);
    assert_int_equal(PARSE(&o, err, "--version", "--help"), CLI_PARSE_HELP);
    assert_int_equal(PARSE(&o, err, "-W", "1.5", "-n", "3", "--raw", "sub", "r", "c"),
                     CLI_PARSE_OK);
    assert_true(o.wait_s == 1.5 && o.count == 3 && o.format == CLI_FORMAT_RAW && o.reconnect);
    cli_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "pub", "r", "c", "-"), CLI_PARSE_OK);
    assert_int_equal(o.payload_from, CLI_PAYLOAD_STDIN);
    assert_string_equal(o.channel, "c");
    cli_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "pub", "r", "-l", "-f", "in.jsonl"), CLI_PARSE_OK);
    assert_int_equal(o.payload_from, CLI_PAYLOAD_FILE);
    assert_true(o.lines && o.channel == NULL);
    cli_opts_free(&o);
    assert_int_equal(
        PARSE(&o, err, "history", "r", "c", "--limit", "5", "--since-offset", "0", "--epoch", "e1"),
        CLI_PARSE_OK);
    assert_int_equal(o.command, CLI_HISTORY);
    assert_int_equal(json_integer_value(json_object_get(o.json, "limit")), 5);
    assert_int_equal(json_integer_value(json_object_get(o.json, "since_offset")), 0);
    assert_string_equal(json_string_value(json_object_get(o.json, "epoch")), "e1");
    cli_opts_free(&o);
    REFUSED("--pretty and --raw exclude each other", "--pretty", "--raw", "cmd", "ping");
    REFUSED("invalid wait '0'", "-W", "0", "sub", "r");
    REFUSED("--wait and --no-reconnect apply to sub only", "-W", "1", "cmd", "ping");
    REFUSED("--file and --lines apply to pub only", "-l", "sub", "r");
    REFUSED("pub with -f or -l takes ROOM [CHANNEL]", "-f", "x", "pub", "r", "c", "{}");
    REFUSED("apply to history only", "--limit", "3", "cmd", "history");
    REFUSED("invalid value '1001'", "--limit", "1001", "history", "r");
}

static void interactive_lines_split_as_a_shell_would(void **state)
{
    (void)state;
    char buf[128], *w[8];
    assert_int_equal(cli_split_words("  pub lobby 'a b' {\"x\":1}\t\"q\\\"t\" x\\ y ", buf, w, 8),
                     6);
    assert_string_equal(w[0], "pub");
    assert_string_equal(w[2], "a b");
    assert_string_equal(w[3], "{x:1}");
    assert_string_equal(w[4], "q\"t");
    assert_string_equal(w[5], "x y");
    assert_int_equal(cli_split_words("cmd ping '{}'", buf, w, 8), 3);
    assert_string_equal(w[2], "{}");
    assert_int_equal(cli_split_words("a 'b", buf, w, 8), -1);
    assert_int_equal(cli_split_words("a b c", buf, w, 2), -1);
    assert_int_equal(cli_split_words("   ", buf, w, 2), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_local_port_9100_root_path_and_10_seconds),
        cmocka_unit_test(environment_overrides_defaults_and_options_override_environment),
        cmocka_unit_test(empty_environment_values_count_as_unset),
        cmocka_unit_test(bad_environment_port_is_an_error_unless_a_port_option_replaces_it),
        cmocka_unit_test(sub_takes_a_room_and_an_optional_channel),
        cmocka_unit_test(pub_takes_room_optional_channel_and_the_json_last),
        cmocka_unit_test(pub_payload_may_be_any_json_value_including_negative_numbers),
        cmocka_unit_test(pub_refuses_invalid_json_and_says_where),
        cmocka_unit_test(cmd_args_default_to_an_empty_object_and_must_be_an_object),
        cmocka_unit_test(options_may_come_after_the_command),
        cmocka_unit_test(long_options_take_equals_and_short_options_attached_values),
        cmocka_unit_test(double_dash_ends_the_options),
        cmocka_unit_test(tls_and_insecure_are_flags_and_insecure_needs_tls),
        cmocka_unit_test(help_is_reported_whatever_else_is_there),
        cmocka_unit_test(unknown_options_and_missing_values_are_usage_errors),
        cmocka_unit_test(bad_option_values_are_refused_naming_the_value),
        cmocka_unit_test(count_applies_to_sub_only),
        cmocka_unit_test(empty_room_channel_and_name_are_refused),
        cmocka_unit_test(the_path_query_turns_acks_off_as_the_server_reads_it),
        cmocka_unit_test(a_missing_or_unknown_command_is_a_usage_error),
        cmocka_unit_test(version_wait_formats_payload_sources_and_history_options),
        cmocka_unit_test(interactive_lines_split_as_a_shell_would),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
