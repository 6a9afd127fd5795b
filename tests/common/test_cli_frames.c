/* arqonbus-cli: the frames it sends, how it classifies replies, how it prints frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "cli_frames.h"

#define ID "arq_1732700000000_4242_00beef"

/* Parse a command line (NULL-terminated) into o; fails the test if it is refused. */
static void opts(struct cli_opts *o, ...)
{
    char *argv[16] = {"arqonbus-cli"}, err[256];
    int argc = 1;
    va_list ap;
    va_start(ap, o);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 15;)
        argv[argc++] = a;
    va_end(ap);
    if (cli_parse(argc, argv, NULL, o, err, sizeof err) != CLI_PARSE_OK)
        fail_msg("cli_parse: %s", err);
}

/* Build the request for a command line and compare it with `want`. */
static void request_is(const char *want, ...)
{
    char *argv[16] = {"arqonbus-cli"}, err[256];
    int argc = 1;
    va_list ap;
    va_start(ap, want);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 15;)
        argv[argc++] = a;
    va_end(ap);
    struct cli_opts o;
    if (cli_parse(argc, argv, NULL, &o, err, sizeof err) != CLI_PARSE_OK)
        fail_msg("cli_parse: %s", err);
    char *got = cli_build_request(&o, ID);
    assert_non_null(got);
    json_error_t je;
    json_t *back = json_loads(got, 0, &je); /* whatever is sent is valid JSON */
    if (!back)
        fail_msg("not JSON: %s (%s)", got, je.text);
    json_decref(back);
    assert_string_equal(got, want);
    free(got);
    cli_opts_free(&o);
}

static void ids_have_the_arqonbus_1_0_shape(void **state)
{
    (void)state;
    char id[CLI_ID_SIZE];
    cli_make_id(id, sizeof id, 1732700000123ULL, 4242, 0xABCDEF12UL);
    assert_string_equal(id, "arq_1732700000123_4242_cdef12"); /* 24 low bits, 6 hex digits */
    cli_make_id(id, sizeof id, 1, 2, 0x5);
    assert_string_equal(id, "arq_1_2_000005");
}

static void sub_room_sends_join_room(void **state)
{
    (void)state;
    request_is("{\"type\":\"command\",\"id\":\"" ID "\",\"command\":\"join_room\","
               "\"args\":{\"room\":\"science\"}}",
               "sub", "science", NULL);
}

static void sub_channel_sends_join_channel_with_both_names(void **state)
{
    (void)state;
    request_is("{\"type\":\"command\",\"id\":\"" ID "\",\"command\":\"join_channel\","
               "\"args\":{\"room\":\"science\",\"channel\":\"lab\"}}",
               "sub", "science", "lab", NULL);
}

static void pub_sends_the_payload_as_written_and_omits_an_absent_channel(void **state)
{
    (void)state;
    request_is("{\"type\":\"message\",\"id\":\"" ID "\",\"room\":\"science\","
               "\"payload\":{\"reading\":0.1,\"n\":1e3,\"s\":\"a b\\n\"}}",
               "pub", "science", "{ \"reading\": 0.1,\n \"n\": 1e3, \"s\": \"a b\\n\" }", NULL);
    request_is("{\"type\":\"message\",\"id\":\"" ID "\",\"room\":\"science\","
               "\"channel\":\"lab\",\"payload\":\"hello\"}",
               "pub", "science", "lab", "\"hello\"", NULL);
    request_is("{\"type\":\"message\",\"id\":\"" ID "\",\"room\":\"r\",\"payload\":-5}", "pub", "r",
               "-5", NULL);
}

static void names_are_json_escaped(void **state)
{
    (void)state;
    request_is("{\"type\":\"command\",\"id\":\"" ID "\",\"command\":\"join_room\","
               "\"args\":{\"room\":\"a\\\"b\"}}",
               "sub", "a\"b", NULL);
}

static void cmd_sends_its_args_or_an_empty_object(void **state)
{
    (void)state;
    request_is("{\"type\":\"command\",\"id\":\"" ID "\",\"command\":\"status\",\"args\":{}}", "cmd",
               "status", NULL);
    request_is("{\"type\":\"command\",\"id\":\"" ID "\",\"command\":\"history\","
               "\"args\":{\"room\":\"science\",\"limit\":5}}",
               "cmd", "history", "{\"room\": \"science\", \"limit\": 5}", NULL);
}

static void built_without_raw_text_the_json_value_is_used(void **state)
{
    (void)state;
    struct cli_opts o;
    opts(&o, "pub", "r", "[1, 2]", NULL);
    o.json_text = NULL; /* a caller that filled the struct by hand */
    char *got = cli_build_request(&o, ID);
    assert_string_equal(got, "{\"type\":\"message\",\"id\":\"" ID
                             "\",\"room\":\"r\",\"payload\":[1,2]}");
    free(got);
    cli_opts_free(&o);
}

#define CLASSIFY(text) cli_classify((text), strlen(text), ID)

static void welcome_is_recognised(void **state)
{
    (void)state;
    assert_int_equal(CLASSIFY("{\"type\":\"message\",\"sender\":\"arqonbus\",\"payload\":"
                              "{\"welcome\":\"Connected to ArqonBus\",\"client_id\":\"x\"}}"),
                     CLI_FRAME_WELCOME);
    /* the same shape from another sender is just a message */
    assert_int_equal(CLASSIFY("{\"type\":\"message\",\"sender\":\"arq_client_1\",\"payload\":"
                              "{\"welcome\":\"hi\"}}"),
                     CLI_FRAME_OTHER);
}

static void success_replies_to_our_id_are_ok(void **state)
{
    (void)state;
    assert_int_equal(CLASSIFY("{\"type\":\"response\",\"request_id\":\"" ID
                              "\",\"status\":\"success\",\"payload\":{}}"),
                     CLI_REPLY_OK);
    assert_int_equal(CLASSIFY("{\"type\":\"message_response\",\"request_id\":\"" ID
                              "\",\"status\":\"success\",\"payload\":{\"delivered\":2}}"),
                     CLI_REPLY_OK);
}

static void error_status_and_error_frames_are_errors(void **state)
{
    (void)state;
    assert_int_equal(CLASSIFY("{\"type\":\"response\",\"request_id\":\"" ID
                              "\",\"status\":\"error\",\"error_code\":\"NOT_FOUND\"}"),
                     CLI_REPLY_ERROR);
    assert_int_equal(CLASSIFY("{\"type\":\"response\",\"request_id\":\"" ID "\"}"),
                     CLI_REPLY_ERROR);
    assert_int_equal(CLASSIFY("{\"type\":\"error\",\"request_id\":\"" ID
                              "\",\"error\":\"x\",\"error_code\":\"VALIDATION_ERROR\"}"),
                     CLI_REPLY_ERROR);
    /* an error naming no request can only be about the one we sent */
    assert_int_equal(
        CLASSIFY("{\"type\":\"error\",\"error\":\"x\",\"error_code\":\"INVALID_JSON\"}"),
        CLI_REPLY_ERROR);
    assert_int_equal(CLASSIFY("{\"type\":\"error\",\"request_id\":null,\"error\":\"x\"}"),
                     CLI_REPLY_ERROR);
}

static void pending_is_not_final(void **state)
{
    (void)state;
    assert_int_equal(
        CLASSIFY("{\"type\":\"response\",\"request_id\":\"" ID "\",\"status\":\"pending\"}"),
        CLI_REPLY_PENDING);
}

static void frames_about_other_requests_or_not_replies_are_other(void **state)
{
    (void)state;
    assert_int_equal(CLASSIFY("{\"type\":\"response\",\"request_id\":\"arq_1_2_000000\","
                              "\"status\":\"success\"}"),
                     CLI_FRAME_OTHER);
    assert_int_equal(CLASSIFY("{\"type\":\"error\",\"request_id\":\"arq_1_2_000000\"}"),
                     CLI_FRAME_OTHER);
    assert_int_equal(CLASSIFY("{\"type\":\"message\",\"request_id\":\"" ID "\"}"), CLI_FRAME_OTHER);
    assert_int_equal(CLASSIFY("{\"request_id\":\"" ID "\",\"status\":\"success\"}"),
                     CLI_FRAME_OTHER);
    assert_int_equal(CLASSIFY("[1,2]"), CLI_FRAME_OTHER);
    assert_int_equal(CLASSIFY("not json"), CLI_FRAME_OTHER);
    assert_int_equal(cli_classify("{\"type\":\"error\"}", 5, ID), CLI_FRAME_OTHER); /* cut */
}

static void compact_drops_whitespace_outside_strings_only(void **state)
{
    (void)state;
    const char *in = "{ \"a b\" : [ 1 ,\t2 ],\r\n  \"c\\\" d\" : \" x \\\\\" , \"e\": 1e3 }";
    char *out = cli_compact(in, strlen(in));
    assert_string_equal(out, "{\"a b\":[1,2],\"c\\\" d\":\" x \\\\\",\"e\":1e3}");
    free(out);
}

static void compact_escapes_raw_line_breaks_inside_strings(void **state)
{
    (void)state;
    const char in[] = "{\"a\":\"line1\nline2\r\"}";
    char *out = cli_compact(in, sizeof in - 1);
    assert_string_equal(out, "{\"a\":\"line1\\nline2\\r\"}");
    assert_null(strchr(out, '\n'));
    free(out);
}

static void compact_of_an_empty_frame_is_empty(void **state)
{
    (void)state;
    char *out = cli_compact("", 0);
    assert_string_equal(out, "");
    free(out);
}

static void formats_pretty_and_raw_keep_the_spelling(void **state)
{
    (void)state;
    const char *f = "{\"type\":\"message\", \"payload\":{\"x\":0.1,\"e\":[],\"s\":\"a,b\"}}";
    char *s = cli_format(f, strlen(f), CLI_FORMAT_LINE);
    assert_string_equal(s, "{\"type\":\"message\",\"payload\":{\"x\":0.1,\"e\":[],\"s\":\"a,b\"}}");
    free(s);
    s = cli_format(f, strlen(f), CLI_FORMAT_PRETTY);
    assert_string_equal(s, "{\n  \"type\": \"message\",\n  \"payload\": {\n    \"x\": 0.1,\n"
                           "    \"e\": [],\n    \"s\": \"a,b\"\n  }\n}");
    free(s);
    s = cli_format(f, strlen(f), CLI_FORMAT_RAW);
    assert_string_equal(s, "{\"x\":0.1,\"e\":[],\"s\":\"a,b\"}");
    free(s);
    const char *str = "{\"payload\":\"line\\none\",\"type\":\"message\"}";
    s = cli_format(str, strlen(str), CLI_FORMAT_RAW);
    assert_string_equal(s, "line\none");
    free(s);
    const char *none = "{\"type\":\"pong\"}";
    s = cli_format(none, strlen(none), CLI_FORMAT_RAW);
    assert_string_equal(s, none);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(formats_pretty_and_raw_keep_the_spelling),
        cmocka_unit_test(ids_have_the_arqonbus_1_0_shape),
        cmocka_unit_test(sub_room_sends_join_room),
        cmocka_unit_test(sub_channel_sends_join_channel_with_both_names),
        cmocka_unit_test(pub_sends_the_payload_as_written_and_omits_an_absent_channel),
        cmocka_unit_test(names_are_json_escaped),
        cmocka_unit_test(cmd_sends_its_args_or_an_empty_object),
        cmocka_unit_test(built_without_raw_text_the_json_value_is_used),
        cmocka_unit_test(welcome_is_recognised),
        cmocka_unit_test(success_replies_to_our_id_are_ok),
        cmocka_unit_test(error_status_and_error_frames_are_errors),
        cmocka_unit_test(pending_is_not_final),
        cmocka_unit_test(frames_about_other_requests_or_not_replies_are_other),
        cmocka_unit_test(compact_drops_whitespace_outside_strings_only),
        cmocka_unit_test(compact_escapes_raw_line_breaks_inside_strings),
        cmocka_unit_test(compact_of_an_empty_frame_is_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
