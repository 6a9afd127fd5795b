/* envelope: parsing, validation rules and texts, normalisation, ids, timestamps, serialisation
 * and the error frame (docs/protocol.md, "The envelope" and "Errors"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

/* 2026-11-27T14:03:05.123Z */
#define NOW     ((int64_t)1795788185123)
#define NOW_TS  "2026-11-27T14:03:05.123Z"
#define NOW_ULT "01M8EN27H3" /* the ULID time characters of NOW */
#define Y2K     ((int64_t)946684800000)

static void parse_ok(const char *text, struct envelope *env)
{
    struct env_error err;
    int rc = envelope_parse(text, strlen(text), NOW, NULL, env, &err);
    if (rc != 0)
        fail_msg("unexpected %s: %s", err.code, err.text);
    assert_null(err.code);
    assert_null(err.payload);
}

/* Parses `text` with `lim` and checks the VALIDATION_ERROR list is exactly `want` (NULL-ended). */
static void expect_errors_lim(const char *text, const struct env_limits *lim,
                              const char *const *want)
{
    struct envelope env;
    struct env_error err;
    assert_int_equal(envelope_parse(text, strlen(text), NOW, lim, &env, &err), -1);
    assert_null(env.root);
    assert_non_null(err.code);
    assert_string_equal(err.code, "VALIDATION_ERROR");
    json_t *errors = json_object_get(err.payload, "errors");
    assert_true(json_is_array(errors));
    assert_int_equal(json_object_size(err.payload), 1);
    size_t n = 0;
    while (want[n])
        n++;
    for (size_t i = 0; i < json_array_size(errors); i++)
        if (i >= n || strcmp(json_string_value(json_array_get(errors, i)), want[i]) != 0)
            fail_msg("error %zu of %s: got '%s', want '%s'", i, text,
                     json_string_value(json_array_get(errors, i)), i < n ? want[i] : "(none)");
    assert_int_equal(json_array_size(errors), n);
    envelope_error_clear(&err);
}

#define EXPECT_ERRORS(text, ...)                                                                   \
    do {                                                                                           \
        const char *const want_[] = {__VA_ARGS__, NULL};                                           \
        expect_errors_lim(text, NULL, want_);                                                      \
    } while (0)

static void expect_invalid_json(const char *text, size_t len, const char *want_text, int line,
                                int column, int position)
{
    struct envelope env;
    struct env_error err;
    assert_int_equal(envelope_parse(text, len, NOW, NULL, &env, &err), -1);
    assert_null(env.root);
    assert_string_equal(err.code, "INVALID_JSON");
    if (want_text)
        assert_string_equal(err.text, want_text);
    assert_null(err.id);
    assert_int_equal(json_object_size(err.payload), 3);
    assert_int_equal(json_integer_value(json_object_get(err.payload, "line")), line);
    assert_int_equal(json_integer_value(json_object_get(err.payload, "column")), column);
    assert_int_equal(json_integer_value(json_object_get(err.payload, "position")), position);
    envelope_error_clear(&err);
}

static void assert_valid_utf8_text(const char *s)
{
    json_t *j = json_string(s); /* jansson refuses invalid UTF-8 */
    assert_non_null(j);
    json_decref(j);
}

/* --- accepted envelopes and normalisation ------------------------------------------------- */

static void message_with_room_and_channel_is_accepted_with_views_into_root(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"id\":\"arq_1700000000000_1_abc123\",\"timestamp\":\"2026-11-27T14:00:00Z\","
             "\"type\":\"message\",\"version\":\"1.0\",\"room\":\"lobby\",\"channel\":\"general\","
             "\"to_client\":\"arq_client_x\",\"request_id\":\"r1\",\"payload\":{\"text\":\"hi\"},"
             "\"metadata\":{\"sequence\":1}}",
             &env);
    assert_int_equal(env.type, ENV_MESSAGE);
    assert_string_equal(env.id, "arq_1700000000000_1_abc123");
    assert_string_equal(env.timestamp, "2026-11-27T14:00:00Z");
    assert_int_equal(env.timestamp_ms, NOW - (3 * 60 + 5) * 1000 - 123);
    assert_string_equal(env.room, "lobby");
    assert_string_equal(env.channel, "general");
    assert_string_equal(env.to_client, "arq_client_x");
    assert_string_equal(env.request_id, "r1");
    assert_null(env.command);
    assert_null(env.args);
    assert_ptr_equal(env.payload, json_object_get(env.root, "payload"));
    assert_ptr_equal(env.metadata, json_object_get(env.root, "metadata"));
    assert_ptr_equal(env.id, json_string_value(json_object_get(env.root, "id")));
    assert_int_equal(json_object_size(env.root), 10);
    envelope_release(&env);
    assert_null(env.root);
    envelope_release(&env); /* safe twice */
}

static void absent_id_timestamp_and_version_are_generated(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"type\":\"message\",\"room\":\"r\",\"payload\":1}", &env);
    assert_true(envelope_valid_id(env.id));
    assert_int_equal(strlen(env.id), 30);
    assert_memory_equal(env.id, "arq_" NOW_ULT, 14);
    assert_string_equal(env.timestamp, NOW_TS);
    assert_int_equal(env.timestamp_ms, NOW);
    assert_string_equal(json_string_value(json_object_get(env.root, "version")), "1.0");
    assert_ptr_equal(env.id, json_string_value(json_object_get(env.root, "id")));
    assert_ptr_equal(env.timestamp, json_string_value(json_object_get(env.root, "timestamp")));
    envelope_release(&env);
}

static void given_id_timestamp_and_version_are_kept_as_sent(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok(
        "{\"id\":\"arq_01ARZ3NDEKTSV4RRFFQ69G5FAV\",\"timestamp\":\"2026-11-27T16:03:05+02:00\","
        "\"version\":\"1.0\",\"type\":\"telemetry\"}",
        &env);
    assert_int_equal(env.type, ENV_TELEMETRY);
    assert_string_equal(env.id, "arq_01ARZ3NDEKTSV4RRFFQ69G5FAV");
    assert_string_equal(env.timestamp, "2026-11-27T16:03:05+02:00");
    assert_int_equal(env.timestamp_ms, NOW - 123);
    assert_int_equal(json_object_size(env.root), 4);
    envelope_release(&env);
}

static void null_fields_count_as_absent(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok(
        "{\"id\":null,\"timestamp\":null,\"version\":null,\"type\":\"telemetry\",\"room\":null,"
        "\"channel\":null,\"sender\":null,\"to_client\":null,\"payload\":null,\"args\":null,"
        "\"metadata\":null,\"status\":null}",
        &env);
    assert_true(envelope_valid_id(env.id));
    assert_string_equal(env.timestamp, NOW_TS);
    assert_string_equal(json_string_value(json_object_get(env.root, "version")), "1.0");
    assert_null(env.room);
    assert_null(env.channel);
    assert_null(env.payload);
    assert_null(env.args);
    assert_null(env.metadata);
    envelope_release(&env);

    EXPECT_ERRORS("{\"type\":\"message\",\"room\":\"r\",\"payload\":null}",
                  "Field 'payload' is required for message messages");
}

static void every_client_type_is_accepted(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        enum env_type type;
        const char *name;
    } cases[] = {
        {"{\"type\":\"message\",\"payload\":{}}", ENV_MESSAGE, "message"},
        {"{\"type\":\"command\",\"command\":\"ping\"}", ENV_COMMAND, "command"},
        {"{\"type\":\"response\",\"request_id\":\"x\",\"status\":\"pending\"}", ENV_RESPONSE,
         "response"},
        {"{\"type\":\"error\",\"error\":\"boom\",\"error_code\":\"X\"}", ENV_ERROR, "error"},
        {"{\"type\":\"telemetry\"}", ENV_TELEMETRY, "telemetry"},
        {"{\"type\":\"operator.join\",\"payload\":[]}", ENV_OPERATOR_JOIN, "operator.join"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct envelope env;
        parse_ok(cases[i].json, &env);
        assert_int_equal(env.type, cases[i].type);
        assert_string_equal(envelope_type_name(env.type), cases[i].name);
        envelope_release(&env);
    }
}

static void response_status_accepts_success_error_and_pending(void **state)
{
    (void)state;
    static const char *const ok[] = {"success", "error", "pending"};
    char buf[128];
    for (size_t i = 0; i < 3; i++) {
        struct envelope env;
        snprintf(buf, sizeof buf, "{\"type\":\"response\",\"request_id\":\"q\",\"status\":\"%s\"}",
                 ok[i]);
        parse_ok(buf, &env);
        envelope_release(&env);
    }
    EXPECT_ERRORS("{\"type\":\"response\",\"request_id\":\"q\",\"status\":\"done\"}",
                  "Invalid status: done");
    EXPECT_ERRORS("{\"type\":\"response\",\"request_id\":\"q\",\"status\":\"Success\"}",
                  "Invalid status: Success");
}

static void text_need_not_be_nul_terminated(void **state)
{
    (void)state;
    const char text[] = "{\"type\":\"telemetry\"}garbage";
    struct envelope env;
    struct env_error err;
    assert_int_equal(envelope_parse(text, 20, NOW, NULL, &env, &err), 0);
    assert_int_equal(env.type, ENV_TELEMETRY);
    envelope_release(&env);
}

/* --- field rules and their texts ---------------------------------------------------------- */

static void each_unknown_field_is_named_in_document_order(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"foo\":1,\"type\":\"telemetry\",\"Room\":\"x\",\"bar\":null,\"\":2}",
                  "Unknown field 'foo'", "Unknown field 'Room'", "Unknown field 'bar'",
                  "Unknown field ''");
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"parameters\":{}}", "Unknown field 'parameters'");
}

static void every_listed_field_is_known(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok(
        "{\"id\":\"arq_1_2_abcdef\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"type\":\"response\","
        "\"version\":\"1.0\",\"room\":\"r\",\"channel\":\"c\",\"sender\":\"s\","
        "\"from_client\":\"f\",\"to_client\":\"t\",\"payload\":0,\"command\":\"x\",\"args\":{},"
        "\"request_id\":\"q\",\"status\":\"error\",\"error\":\"e\",\"error_code\":\"E\","
        "\"metadata\":{}}",
        &env);
    assert_int_equal(json_object_size(env.root), 17);
    envelope_release(&env);
}

static void each_string_field_must_be_a_string(void **state)
{
    (void)state;
    static const char *const fields[] = {
        "id",        "timestamp", "version",    "room",   "channel", "sender",    "from_client",
        "to_client", "command",   "request_id", "status", "error",   "error_code"};
    static const char *const bad[] = {"1", "true", "{}", "[\"x\"]", "1.5"};
    char text[160], want[80];
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        for (size_t j = 0; j < sizeof bad / sizeof *bad; j++) {
            /* a room keeps "channel" from adding its own problem */
            snprintf(text, sizeof text, "{\"type\":\"telemetry\",%s\"%s\":%s}",
                     strcmp(fields[i], "channel") ? "" : "\"room\":\"r\",", fields[i], bad[j]);
            snprintf(want, sizeof want, "Field '%s' must be a string", fields[i]);
            EXPECT_ERRORS(text, want);
        }
    }
    EXPECT_ERRORS("{\"type\":7}", "Field 'type' must be a string");
}

static void args_and_metadata_must_be_objects(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"type\":\"command\",\"command\":\"x\",\"args\":[]}",
                  "Field 'args' must be an object");
    EXPECT_ERRORS("{\"type\":\"command\",\"command\":\"x\",\"args\":\"a=1\"}",
                  "Field 'args' must be an object");
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"metadata\":[1]}",
                  "Field 'metadata' must be an object");
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"metadata\":5}", "Field 'metadata' must be an object");
}

static void payload_may_be_any_json(void **state)
{
    (void)state;
    static const char *const payloads[] = {"1", "\"s\"", "true", "false", "[1,2]", "{}", "2.5"};
    char text[96];
    for (size_t i = 0; i < sizeof payloads / sizeof *payloads; i++) {
        struct envelope env;
        snprintf(text, sizeof text, "{\"type\":\"message\",\"payload\":%s}", payloads[i]);
        parse_ok(text, &env);
        assert_non_null(env.payload);
        envelope_release(&env);
    }
}

static void type_is_required_and_must_be_a_client_type(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"payload\":{}}", "Field 'type' is required");
    EXPECT_ERRORS("{\"type\":\"chat\"}", "Unsupported message type: chat");
    EXPECT_ERRORS("{\"type\":\"message_response\"}", "Unsupported message type: message_response");
    EXPECT_ERRORS("{\"type\":\"Message\",\"payload\":1}", "Unsupported message type: Message");
    EXPECT_ERRORS("{\"type\":\"\"}", "Unsupported message type: ");
}

static void version_must_be_1_0(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"version\":\"2.0\"}",
                  "Unsupported protocol version: 2.0");
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"version\":\"1\"}", "Unsupported protocol version: 1");
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"version\":1.0}", "Field 'version' must be a string");
}

static void required_fields_per_type(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"type\":\"message\",\"room\":\"r\"}",
                  "Field 'payload' is required for message messages");
    EXPECT_ERRORS("{\"type\":\"command\"}", "Field 'command' is required for command messages");
    EXPECT_ERRORS("{\"type\":\"response\"}", "Field 'request_id' is required for response messages",
                  "Field 'status' is required for response messages");
    EXPECT_ERRORS("{\"type\":\"response\",\"status\":\"success\"}",
                  "Field 'request_id' is required for response messages");
    EXPECT_ERRORS("{\"type\":\"response\",\"request_id\":\"q\"}",
                  "Field 'status' is required for response messages");
    EXPECT_ERRORS("{\"type\":\"error\",\"error_code\":\"X\"}",
                  "Field 'error' is required for error messages");
    EXPECT_ERRORS("{\"type\":\"operator.join\"}",
                  "Field 'payload' is required for operator.join messages");
}

static void required_check_is_skipped_when_type_is_unusable(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"type\":\"nope\"}", "Unsupported message type: nope");
    EXPECT_ERRORS("{\"type\":[\"message\"]}", "Field 'type' must be a string");
}

static void invalid_id_is_reported_and_echoed(void **state)
{
    (void)state;
    struct envelope env;
    struct env_error err;
    const char *text = "{\"id\":\"msg-1\",\"type\":\"telemetry\"}";
    assert_int_equal(envelope_parse(text, strlen(text), NOW, NULL, &env, &err), -1);
    assert_string_equal(err.code, "VALIDATION_ERROR");
    assert_string_equal(err.text, "Invalid message ID format: msg-1");
    assert_string_equal(err.id, "msg-1");
    envelope_error_clear(&err);
    assert_null(err.id);
    assert_null(err.payload);

    EXPECT_ERRORS("{\"id\":\"arq_01arz3ndektsv4rrffq69g5fav\",\"type\":\"telemetry\"}",
                  "Invalid message ID format: arq_01arz3ndektsv4rrffq69g5fav");
    EXPECT_ERRORS("{\"id\":\"\",\"type\":\"telemetry\"}", "Invalid message ID format: ");
}

static void id_of_a_non_string_is_not_echoed(void **state)
{
    (void)state;
    struct envelope env;
    struct env_error err;
    const char *text = "{\"id\":12,\"type\":\"telemetry\"}";
    assert_int_equal(envelope_parse(text, strlen(text), NOW, NULL, &env, &err), -1);
    assert_string_equal(err.text, "Field 'id' must be a string");
    assert_null(err.id);
    envelope_error_clear(&err);
}

static void room_and_channel_names_are_checked(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"type\":\"message\",\"room\":\"a b\",\"payload\":1}",
                  "Invalid room name: a b");
    EXPECT_ERRORS("{\"type\":\"message\",\"room\":\"\",\"payload\":1}", "Invalid room name: ");
    EXPECT_ERRORS("{\"type\":\"message\",\"room\":\"r\",\"channel\":\"c/d\",\"payload\":1}",
                  "Invalid channel name: c/d");
    EXPECT_ERRORS("{\"type\":\"message\",\"room\":\"r!\",\"channel\":\"#c\",\"payload\":1}",
                  "Invalid room name: r!", "Invalid channel name: #c");
}

static void channel_requires_room(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"type\":\"message\",\"channel\":\"general\",\"payload\":1}",
                  "Field 'channel' requires 'room'");
    EXPECT_ERRORS("{\"type\":\"message\",\"channel\":\"bad name\",\"payload\":1}",
                  "Invalid channel name: bad name", "Field 'channel' requires 'room'");
    /* an invalid room is still a room: only its own problem is reported */
    EXPECT_ERRORS("{\"type\":\"message\",\"room\":\"x y\",\"channel\":\"c\",\"payload\":1}",
                  "Invalid room name: x y");
}

static void metadata_sequence_must_be_an_integer_of_at_least_one(void **state)
{
    (void)state;
    static const char *const bad[] = {"0", "-1", "1.5", "1.0", "\"1\"", "true", "[]"};
    char text[96];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(text, sizeof text, "{\"type\":\"telemetry\",\"metadata\":{\"sequence\":%s}}",
                 bad[i]);
        EXPECT_ERRORS(text, "Field 'metadata.sequence' must be an integer >= 1");
    }
    struct envelope env;
    parse_ok("{\"type\":\"telemetry\",\"metadata\":{\"sequence\":1,\"other\":[1]}}", &env);
    envelope_release(&env);
    parse_ok("{\"type\":\"telemetry\",\"metadata\":{\"sequence\":9223372036854775807}}", &env);
    envelope_release(&env);
}

static void metadata_vector_clock_maps_non_empty_names_to_non_negative_integers(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"type\":\"telemetry\",\"metadata\":{\"vector_clock\":{\"a\":0,\"node-2\":7}}}",
             &env);
    envelope_release(&env);
    parse_ok("{\"type\":\"telemetry\",\"metadata\":{\"vector_clock\":{}}}", &env);
    envelope_release(&env);
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"metadata\":{\"vector_clock\":[1]}}",
                  "Field 'metadata.vector_clock' must be an object");
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"metadata\":{\"vector_clock\":{\"\":1}}}",
                  "Field 'metadata.vector_clock' must not have an empty key");
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"metadata\":{\"vector_clock\":"
                  "{\"a\":-1,\"b\":1.5,\"c\":\"3\",\"d\":2}}}",
                  "Field 'metadata.vector_clock.a' must be an integer >= 0",
                  "Field 'metadata.vector_clock.b' must be an integer >= 0",
                  "Field 'metadata.vector_clock.c' must be an integer >= 0");
}

static void metadata_causal_parent_id_must_be_a_message_id(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"type\":\"telemetry\",\"metadata\":{\"causal_parent_id\":\"arq_1_2_ABCDEF\"}}",
             &env);
    envelope_release(&env);
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"metadata\":{\"causal_parent_id\":\"p1\"}}",
                  "Invalid message ID format in 'metadata.causal_parent_id': p1");
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"metadata\":{\"causal_parent_id\":3}}",
                  "Field 'metadata.causal_parent_id' must be a string");
}

static void all_metadata_problems_are_collected(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"metadata\":{\"causal_parent_id\":\"x\","
                  "\"vector_clock\":{\"n\":-2},\"sequence\":0}}",
                  "Field 'metadata.sequence' must be an integer >= 1",
                  "Field 'metadata.vector_clock.n' must be an integer >= 0",
                  "Invalid message ID format in 'metadata.causal_parent_id': x");
}

/* Builds {<type_fields>"<field>":{"a":{"a":...{}}}} with `depth` levels of objects. */
static char *nested(const char *field, const char *type_fields, int depth)
{
    size_t cap = 128 + 6 * (size_t)depth + strlen(type_fields);
    char *s = malloc(cap);
    assert_non_null(s);
    int n = snprintf(s, cap, "{%s\"%s\":", type_fields, field);
    for (int i = 0; i < depth - 1; i++)
        n += snprintf(s + n, cap - (size_t)n, "{\"a\":");
    n += snprintf(s + n, cap - (size_t)n, "{}");
    for (int i = 0; i < depth - 1; i++)
        s[n++] = '}';
    s[n++] = '}';
    s[n] = '\0';
    return s;
}

static void payload_args_and_metadata_nest_at_most_32_levels(void **state)
{
    (void)state;
    struct envelope env;
    static const struct {
        const char *field, *type_fields;
    } cases[] = {{"payload", "\"type\":\"message\","},
                 {"args", "\"type\":\"command\",\"command\":\"x\","},
                 {"metadata", "\"type\":\"telemetry\","}};
    char want[80];
    for (size_t i = 0; i < 3; i++) {
        char *ok = nested(cases[i].field, cases[i].type_fields, 32);
        parse_ok(ok, &env);
        envelope_release(&env);
        free(ok);
        char *deep = nested(cases[i].field, cases[i].type_fields, 33);
        snprintf(want, sizeof want, "Field '%s' is nested deeper than 32 levels", cases[i].field);
        EXPECT_ERRORS(deep, want);
        free(deep);
    }
}

static void nesting_limit_comes_from_the_limits(void **state)
{
    (void)state;
    struct env_limits lim = ENV_LIMITS_DEFAULT;
    lim.max_depth = 2;
    const char *const want[] = {"Field 'payload' is nested deeper than 2 levels", NULL};
    expect_errors_lim("{\"type\":\"message\",\"payload\":{\"a\":[{}]}}", &lim, want);
    struct envelope env;
    struct env_error err;
    expect_errors_lim("{\"type\":\"message\",\"payload\":[[[]]]}", &lim, want);
    const char *ok = "{\"type\":\"message\",\"payload\":{\"a\":[1,2],\"b\":{\"c\":\"d\"}}}";
    assert_int_equal(envelope_parse(ok, strlen(ok), NOW, &lim, &env, &err), 0);
    envelope_release(&env);
}

/* --- timestamps ---------------------------------------------------------------------------- */

static void timestamp_forms_parse_to_the_same_instant(void **state)
{
    (void)state;
    static const char *const forms[] = {
        "2026-11-27T14:03:05.123Z",       "2026-11-27T14:03:05.123",
        "2026-11-27T16:03:05.123+02:00",  "2026-11-27T08:33:05.123-05:30",
        "2026-11-27t14:03:05.123z",       "2026-11-27 14:03:05.123Z",
        "2026-11-27T14:03:05.123456Z",    "2026-11-27T14:03:05.123999999+00:00",
        "2026-11-27T14:03:05.1239-00:00", "2026-11-28T00:03:05.123+10:00",
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        int64_t ms = 0;
        if (envelope_parse_timestamp(forms[i], &ms) != 0 || ms != NOW)
            fail_msg("%s -> %lld", forms[i], (long long)ms);
    }
}

static void timestamp_fractions_of_any_precision(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(envelope_parse_timestamp("2026-11-27T14:03:05Z", &ms), 0);
    assert_int_equal(ms, NOW - 123);
    assert_int_equal(envelope_parse_timestamp("2026-11-27T14:03:05.5Z", &ms), 0);
    assert_int_equal(ms, NOW - 123 + 500);
    assert_int_equal(envelope_parse_timestamp("2026-11-27T14:03:05.05Z", &ms), 0);
    assert_int_equal(ms, NOW - 123 + 50);
    assert_int_equal(envelope_parse_timestamp("2026-11-27T14:03:05.000000001Z", &ms), 0);
    assert_int_equal(ms, NOW - 123);
}

static void timestamp_known_instants(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(envelope_parse_timestamp("1970-01-01T00:00:00Z", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(envelope_parse_timestamp("2000-01-01T00:00:00Z", &ms), 0);
    assert_int_equal(ms, Y2K);
    assert_int_equal(envelope_parse_timestamp("2024-02-29T00:00:00Z", &ms), 0);
    assert_int_equal(ms, (int64_t)1709164800000);
    assert_int_equal(envelope_parse_timestamp("1969-12-31T23:59:59.999Z", &ms), 0);
    assert_int_equal(ms, -1);
    assert_int_equal(envelope_parse_timestamp("2016-12-31T23:59:60Z", &ms), 0); /* leap second */
    assert_int_equal(ms, (int64_t)1483228800000);
}

static void malformed_timestamps_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2026-11-27",
        "2026-11-27T14:03Z",
        "2026-11-27T14:03:05.Z",
        "2026-11-27T24:00:00Z",
        "2026-11-27T14:60:00Z",
        "2026-11-27T14:03:61Z",
        "2026-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-27T14:03:05+24:00",
        "2026-11-27T14:03:05+02:60",
        "2026-11-27T14:03:05+0200",
        "2026-11-27T14:03:05+02",
        "2026-11-27T14:03:05ZZ",
        "2026-11-27T14:03:05 ",
        "26-11-27T14:03:05Z",
        "2026-1-27T14:03:05Z",
        "2026/11/27T14:03:05Z",
        "2026-11-27X14:03:05Z",
        "1764252185",
        "+2026-11-27T14:03:05Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ms;
        if (envelope_parse_timestamp(bad[i], &ms) == 0)
            fail_msg("accepted '%s'", bad[i]);
    }
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"timestamp\":\"yesterday\"}",
                  "Invalid timestamp: yesterday");
}

static void timestamp_before_2000_is_refused(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"timestamp\":\"1999-12-31T23:59:59.999Z\"}",
                  "Timestamp is before 2000-01-01: 1999-12-31T23:59:59.999Z");
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"timestamp\":\"2000-01-01T00:30:00+01:00\"}",
                  "Timestamp is before 2000-01-01: 2000-01-01T00:30:00+01:00");
    struct envelope env;
    parse_ok("{\"type\":\"telemetry\",\"timestamp\":\"2000-01-01T00:00:00Z\"}", &env);
    assert_int_equal(env.timestamp_ms, Y2K);
    envelope_release(&env);
}

static void timestamp_more_than_the_skew_in_the_future_is_refused(void **state)
{
    (void)state;
    struct envelope env;
    /* exactly 24 h ahead is allowed, one millisecond more is not */
    parse_ok("{\"type\":\"telemetry\",\"timestamp\":\"2026-11-28T14:03:05.123Z\"}", &env);
    envelope_release(&env);
    EXPECT_ERRORS("{\"type\":\"telemetry\",\"timestamp\":\"2026-11-28T14:03:05.124Z\"}",
                  "Timestamp is too far in the future: 2026-11-28T14:03:05.124Z");
    /* the past has no bound but 2000 */
    parse_ok("{\"type\":\"telemetry\",\"timestamp\":\"2001-01-01T00:00:00Z\"}", &env);
    envelope_release(&env);

    struct env_limits lim = ENV_LIMITS_DEFAULT;
    lim.max_clock_skew_ms = 1000;
    const char *const want[] = {"Timestamp is too far in the future: 2026-11-27T14:03:06.124Z",
                                NULL};
    expect_errors_lim("{\"type\":\"telemetry\",\"timestamp\":\"2026-11-27T14:03:06.124Z\"}", &lim,
                      want);
    struct env_error err;
    const char *ok = "{\"type\":\"telemetry\",\"timestamp\":\"2026-11-27T14:03:06.123Z\"}";
    assert_int_equal(envelope_parse(ok, strlen(ok), NOW, &lim, &env, &err), 0);
    envelope_release(&env);
}

static void format_timestamp_is_rfc3339_utc_with_milliseconds(void **state)
{
    (void)state;
    char out[32];
    envelope_format_timestamp(NOW, out);
    assert_string_equal(out, NOW_TS);
    envelope_format_timestamp(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    envelope_format_timestamp(-1, out);
    assert_string_equal(out, "1969-12-31T23:59:59.999Z");
    envelope_format_timestamp(1709164800000 + 86399999, out);
    assert_string_equal(out, "2024-02-29T23:59:59.999Z");
    envelope_format_timestamp(INT64_MAX, out);
    assert_string_equal(out, "9999-12-31T23:59:59.999Z");
    envelope_format_timestamp(INT64_MIN, out);
    assert_string_equal(out, "0000-01-01T00:00:00.000Z");
    int64_t back;
    envelope_format_timestamp(NOW + 7, out);
    assert_int_equal(envelope_parse_timestamp(out, &back), 0);
    assert_int_equal(back, NOW + 7);
}

/* --- ids and names ------------------------------------------------------------------------- */

static void message_id_forms(void **state)
{
    (void)state;
    static const char *const good[] = {
        "arq_1700000000000_1_abc123",
        "arq_1700000000000_42_ABCDEF",
        "arq_0_0_000000",
        "arq_12345678901234567890_12345678901234567890_aBcDeF",
        "arq_01ARZ3NDEKTSV4RRFFQ69G5FAV",
        "arq_7ZZZZZZZZZZZZZZZZZZZZZZZZZ",
        "arq_00000000000000000000000000",
    };
    static const char *const bad[] = {
        "",
        "arq_",
        "ARQ_1_2_abcdef",
        "arq_1_2_abcde",
        "arq_1_2_abcdefa",
        "arq_1_2_abcdeg",
        "arq__2_abcdef",
        "arq_1__abcdef",
        "arq_1_2",
        "arq_1-2-abcdef",
        "arq_123456789012345678901_2_abcdef",
        "arq_1_2_abcdef ",
        "msg_1_2_abcdef",
        "arq_01ARZ3NDEKTSV4RRFFQ69G5FA",
        "arq_01ARZ3NDEKTSV4RRFFQ69G5FAVX",
        "arq_01arz3ndektsv4rrffq69g5fav",
        "arq_01ARZ3NDEKTSV4RRFFQ69G5FAI",
        "arq_01ARZ3NDEKTSV4RRFFQ69G5FAL",
        "arq_01ARZ3NDEKTSV4RRFFQ69G5FAO",
        "arq_01ARZ3NDEKTSV4RRFFQ69G5FAU",
        "arq_81ARZ3NDEKTSV4RRFFQ69G5FAV",
        "arq_client_0123456789abcdef0123456789abcdef",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!envelope_valid_id(good[i]))
            fail_msg("refused %s", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (envelope_valid_id(bad[i]))
            fail_msg("accepted %s", bad[i]);
    assert_false(envelope_valid_id(NULL));
}

static void room_and_channel_name_rule(void **state)
{
    (void)state;
    char name[130];
    memset(name, 'a', 128);
    name[128] = '\0';
    assert_true(envelope_valid_name(name, 128));
    name[128] = 'a';
    name[129] = '\0';
    assert_false(envelope_valid_name(name, 128));
    assert_true(envelope_valid_name("a", 128));
    assert_true(envelope_valid_name("Az09_.:-", 128));
    assert_true(envelope_valid_name("team:eu-west.1", 128));
    assert_true(envelope_valid_name("..", 128));
    static const char *const bad[] = {"", "a b", "a/b", "a#", "é", "a\tb", "a*", "a,b", "~"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (envelope_valid_name(bad[i], 128))
            fail_msg("accepted '%s'", bad[i]);
    assert_false(envelope_valid_name(NULL, 128));
}

static void new_ids_are_ulids_in_the_crockford_alphabet(void **state)
{
    (void)state;
    char id[32];
    for (int i = 0; i < 2000; i++) {
        envelope_new_id(id, NOW + i / 7);
        assert_int_equal(strlen(id), 30);
        assert_true(envelope_valid_id(id));
        assert_null(strpbrk(id + 4, "ILOUilou"));
        assert_memory_equal(id, "arq_", 4);
    }
    envelope_new_id(id, NOW);
    assert_memory_equal(id + 4, NOW_ULT, 10);
    envelope_new_id(id, 0);
    assert_memory_equal(id + 4, "0000000000", 10);
    envelope_new_id(id, -5);
    assert_memory_equal(id + 4, "0000000000", 10);
    envelope_new_id(id, INT64_MAX);
    assert_memory_equal(id + 4, "7ZZZZZZZZZ", 10);
}

static void ids_made_in_one_millisecond_increase(void **state)
{
    (void)state;
    char prev[32], id[32];
    envelope_new_id(prev, NOW + 1000);
    for (int i = 0; i < 1000; i++) {
        envelope_new_id(id, NOW + 1000);
        assert_true(strcmp(id, prev) > 0);
        memcpy(prev, id, sizeof id);
    }
    envelope_new_id(id, NOW + 1001);
    assert_true(strcmp(id, prev) > 0);
}

static void ids_differ_across_milliseconds_in_their_random_part(void **state)
{
    (void)state;
    char a[32], b[32];
    envelope_new_id(a, NOW + 5000);
    envelope_new_id(b, NOW + 5000 + 1);
    assert_memory_not_equal(a + 14, b + 14, 16); /* 2^-80 chance of a false failure */
}

/* --- legacy command shape ------------------------------------------------------------------ */

static void legacy_command_shape_becomes_command_and_args(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok(
        "{\"type\":\"command\",\"id\":\"arq_1_2_abcdef\",\"payload\":{\"command\":\"join_channel\","
        "\"parameters\":{\"room\":\"r\",\"channel\":\"c\"}}}",
        &env);
    assert_int_equal(env.type, ENV_COMMAND);
    assert_string_equal(env.command, "join_channel");
    assert_non_null(env.args);
    assert_string_equal(json_string_value(json_object_get(env.args, "room")), "r");
    assert_null(env.payload);
    assert_null(json_object_get(env.root, "payload"));
    assert_ptr_equal(env.args, json_object_get(env.root, "args"));
    assert_ptr_equal(env.command, json_string_value(json_object_get(env.root, "command")));
    char *text = envelope_dump(env.root, NULL);
    assert_non_null(text);
    assert_string_equal(text, "{\"type\":\"command\",\"id\":\"arq_1_2_abcdef\",\"command\":"
                              "\"join_channel\",\"args\":{\"room\":\"r\",\"channel\":\"c\"},"
                              "\"timestamp\":\"" NOW_TS "\",\"version\":\"1.0\"}");
    free(text);
    envelope_release(&env);
}

static void legacy_command_without_parameters_has_no_args(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"type\":\"command\",\"payload\":{\"command\":\"ping\"}}", &env);
    assert_string_equal(env.command, "ping");
    assert_null(env.args);
    assert_null(env.payload);
    envelope_release(&env);
    parse_ok("{\"type\":\"command\",\"payload\":{\"command\":\"ping\",\"parameters\":null}}", &env);
    assert_null(env.args);
    envelope_release(&env);
}

static void legacy_parameters_do_not_replace_top_level_args(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"type\":\"command\",\"args\":{\"a\":1},"
             "\"payload\":{\"command\":\"x\",\"parameters\":{\"b\":2}}}",
             &env);
    assert_string_equal(env.command, "x");
    assert_non_null(json_object_get(env.args, "a"));
    assert_null(json_object_get(env.args, "b"));
    envelope_release(&env);
}

static void top_level_command_wins_over_the_legacy_shape(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"type\":\"command\",\"command\":\"a\",\"payload\":{\"command\":\"b\"}}", &env);
    assert_string_equal(env.command, "a");
    assert_non_null(env.payload); /* not a legacy frame: payload stays */
    envelope_release(&env);
}

static void legacy_shape_problems(void **state)
{
    (void)state;
    EXPECT_ERRORS("{\"type\":\"command\",\"payload\":{\"command\":\"x\",\"parameters\":[1]}}",
                  "Field 'payload.parameters' must be an object");
    EXPECT_ERRORS("{\"type\":\"command\",\"payload\":{\"command\":7}}",
                  "Field 'command' is required for command messages");
    EXPECT_ERRORS("{\"type\":\"command\",\"payload\":[\"ping\"]}",
                  "Field 'command' is required for command messages");
}

static void legacy_shape_only_applies_to_commands(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"type\":\"message\",\"payload\":{\"command\":\"x\",\"parameters\":{}}}", &env);
    assert_null(env.command);
    assert_non_null(json_object_get(env.payload, "command"));
    envelope_release(&env);
}

/* --- collecting every problem -------------------------------------------------------------- */

static void all_problems_are_collected_in_spec_field_order(void **state)
{
    (void)state;
    const char *text = "{\"metadata\":{\"sequence\":0},\"status\":\"maybe\",\"args\":1,\"zzz\":1,"
                       "\"to_client\":5,\"channel\":\"c d\",\"room\":\"r r\",\"version\":\"9\","
                       "\"type\":\"response\",\"timestamp\":\"bad\",\"id\":\"nope\",\"aaa\":2}";
    EXPECT_ERRORS(
        text, "Unknown field 'zzz'", "Unknown field 'aaa'", "Invalid message ID format: nope",
        "Invalid timestamp: bad", "Unsupported protocol version: 9", "Invalid room name: r r",
        "Invalid channel name: c d", "Field 'to_client' must be a string",
        "Field 'args' must be an object", "Field 'request_id' is required for response messages",
        "Invalid status: maybe", "Field 'metadata.sequence' must be an integer >= 1");

    struct envelope env;
    struct env_error err;
    assert_int_equal(envelope_parse(text, strlen(text), NOW, NULL, &env, &err), -1);
    assert_string_equal(err.text, "Unknown field 'zzz' (and 11 more)");
    assert_string_equal(err.id, "nope");
    envelope_error_clear(&err);
}

static void long_error_text_is_cut_at_a_character_boundary(void **state)
{
    (void)state;
    char text[1200];
    int n = snprintf(text, sizeof text, "{\"type\":\"telemetry\",\"room\":\"x");
    for (int i = 0; i < 300; i++) {
        memcpy(text + n, "\xc3\xa9", 2); /* é */
        n += 2;
    }
    snprintf(text + n, sizeof text - (size_t)n, "\"}");
    for (int shift = 0; shift < 2; shift++) {
        struct envelope env;
        struct env_error err;
        /* "x" shifts the é pairs so the cut falls on either byte */
        const char *t = text;
        char alt[1200];
        if (shift) {
            snprintf(alt, sizeof alt, "%s", text);
            memmove(alt + 30, alt + 29, strlen(alt + 29) + 1);
            alt[29] = 'y';
            t = alt;
        }
        assert_int_equal(envelope_parse(t, strlen(t), NOW, NULL, &env, &err), -1);
        assert_true(strlen(err.text) < sizeof err.text);
        assert_true(strlen(err.text) > 240);
        assert_memory_equal(err.text, "Invalid room name: x", 20);
        assert_valid_utf8_text(err.text);
        /* the list keeps the whole value */
        const char *full =
            json_string_value(json_array_get(json_object_get(err.payload, "errors"), 0));
        assert_int_equal(strlen(full), strlen("Invalid room name: x") + shift + 600);
        envelope_error_clear(&err);
    }
}

/* --- not JSON, not an object --------------------------------------------------------------- */

static void truncated_json_reports_line_column_and_position(void **state)
{
    (void)state;
    const char *t1 = "{\"type\":\"message\"";
    expect_invalid_json(t1, strlen(t1),
                        "Invalid JSON at line 1, column 17: '}' expected near end of file", 1, 17,
                        17);
    const char *t2 = "{\"type\":\"message\",\n \"payload\":";
    expect_invalid_json(t2, strlen(t2),
                        "Invalid JSON at line 2, column 11: unexpected token near end of file", 2,
                        11, 30);
    /* the declared length is what counts */
    const char *t3 = "{\"type\":\"telemetry\"}";
    expect_invalid_json(t3, 10, NULL, 1, 10, 10);
}

static void trailing_data_is_invalid_json(void **state)
{
    (void)state;
    const char *t = "{\"type\":\"telemetry\"} {}";
    expect_invalid_json(t, strlen(t),
                        "Invalid JSON at line 1, column 22: end of file expected near '{'", 1, 22,
                        22);
}

static void duplicate_keys_are_invalid_json(void **state)
{
    (void)state;
    const char *t = "{\"type\":\"message\",\"room\":\"a\",\"room\":\"b\",\"payload\":1}";
    expect_invalid_json(t, strlen(t),
                        "Invalid JSON at line 1, column 35: duplicate object key near '\"room\"'",
                        1, 35, 35);
}

static void invalid_utf8_is_invalid_json(void **state)
{
    (void)state;
    const char *t = "{\"type\":\"message\",\"payload\":\"a\xff\"}";
    expect_invalid_json(t, strlen(t), NULL, 1, 30, 30);
    struct envelope env;
    struct env_error err;
    assert_int_equal(envelope_parse(t, strlen(t), NOW, NULL, &env, &err), -1);
    assert_valid_utf8_text(err.text);
    envelope_error_clear(&err);
    const char *overlong = "{\"type\":\"message\",\"payload\":\"\xc0\xaf\"}";
    expect_invalid_json(overlong, strlen(overlong), NULL, 1, 29, 29);
}

static void nul_in_a_string_is_invalid_json(void **state)
{
    (void)state;
    const char *t = "{\"type\":\"message\",\"payload\":\"a\\u0000b\"}";
    expect_invalid_json(t, strlen(t), NULL, 1, 38, 38);
}

static void empty_frame_is_invalid_json(void **state)
{
    (void)state;
    expect_invalid_json("", 0, NULL, 1, 0, 0);
    expect_invalid_json(NULL, 0, NULL, 1, 0, 0);
    expect_invalid_json(" \n ", 3, NULL, 2, 1, 3);
}

static void non_object_json_must_be_an_object(void **state)
{
    (void)state;
    expect_invalid_json("[1,2]", 5, "Message must be a JSON object", 1, 1, 0);
    expect_invalid_json("\"hello\"", 7, "Message must be a JSON object", 1, 1, 0);
    expect_invalid_json("42", 2, "Message must be a JSON object", 1, 1, 0);
    expect_invalid_json("null", 4, "Message must be a JSON object", 1, 1, 0);
    expect_invalid_json("\n\n   true", 9, "Message must be a JSON object", 3, 4, 5);
}

/* --- sender -------------------------------------------------------------------------------- */

static void sender_is_overwritten_and_from_client_kept(void **state)
{
    (void)state;
    struct envelope env;
    parse_ok("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"sender\":\"admin\","
             "\"from_client\":\"someone\"}",
             &env);
    assert_int_equal(envelope_set_sender(&env, "arq_client_0123456789abcdef0123456789abcdef"), 0);
    assert_string_equal(json_string_value(json_object_get(env.root, "sender")),
                        "arq_client_0123456789abcdef0123456789abcdef");
    assert_string_equal(json_string_value(json_object_get(env.root, "from_client")), "someone");
    assert_string_equal(env.room, "r"); /* views stay valid */
    envelope_release(&env);

    parse_ok("{\"type\":\"telemetry\"}", &env);
    assert_int_equal(envelope_set_sender(&env, "c1"), 0);
    assert_string_equal(json_string_value(json_object_get(env.root, "sender")), "c1");
    assert_int_equal(envelope_set_sender(&env, "bad\xff"), -1);
    assert_string_equal(json_string_value(json_object_get(env.root, "sender")), "c1");
    assert_int_equal(envelope_set_sender(&env, NULL), -1);
    envelope_release(&env);
    assert_int_equal(envelope_set_sender(&env, "c1"), -1);
}

/* --- serialisation ------------------------------------------------------------------------- */

static void error_frame_serialises_exactly(void **state)
{
    (void)state;
    json_t *payload = json_pack("{s:[s]}", "errors", "Unknown field 'foo'");
    json_t *f = envelope_error_frame("VALIDATION_ERROR", "Unknown field 'foo'", "arq_1_2_abcdef",
                                     payload, NOW);
    assert_non_null(f);
    size_t len;
    char *text = envelope_dump(f, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    /* the id's 16 random characters are the only part that varies */
    const char *id = json_string_value(json_object_get(f, "id"));
    assert_true(envelope_valid_id(id));
    assert_memory_equal(id, "arq_" NOW_ULT, 14);
    char want[512];
    snprintf(
        want, sizeof want,
        "{\"type\":\"error\",\"id\":\"%s\",\"timestamp\":\"" NOW_TS "\",\"version\":\"1.0\","
        "\"request_id\":\"arq_1_2_abcdef\",\"error\":\"Unknown field 'foo'\","
        "\"error_code\":\"VALIDATION_ERROR\",\"payload\":{\"errors\":[\"Unknown field 'foo'\"]}}",
        id);
    assert_string_equal(text, want);
    free(text);
    json_decref(f);
}

static void error_frame_without_request_id_or_payload(void **state)
{
    (void)state;
    json_t *f =
        envelope_error_frame("INVALID_JSON", "Message must be a JSON object", NULL, NULL, 0);
    assert_non_null(f);
    assert_null(json_object_get(f, "request_id"));
    assert_true(json_is_object(json_object_get(f, "payload")));
    assert_int_equal(json_object_size(json_object_get(f, "payload")), 0);
    assert_string_equal(json_string_value(json_object_get(f, "timestamp")),
                        "1970-01-01T00:00:00.000Z");
    assert_int_equal(json_object_size(f), 7);
    json_decref(f);
    /* a text that is not UTF-8 fails and still releases the payload */
    assert_null(envelope_error_frame("X", "bad\xff", NULL, json_object(), 0));
}

static void parse_error_becomes_an_error_frame(void **state)
{
    (void)state;
    struct envelope env;
    struct env_error err;
    const char *t = "{\"id\":\"arq_1_2_abcdef\",\"type\":\"message\",\"room\":\"r\"}";
    assert_int_equal(envelope_parse(t, strlen(t), NOW, NULL, &env, &err), -1);
    json_t *f = envelope_error_frame(err.code, err.text, err.id, err.payload, NOW);
    err.payload = NULL; /* taken */
    envelope_error_clear(&err);
    assert_non_null(f);
    char *text = envelope_dump(f, NULL);
    assert_non_null(strstr(text, "\"request_id\":\"arq_1_2_abcdef\",\"error\":\"Field 'payload' is "
                                 "required for message messages\",\"error_code\":"
                                 "\"VALIDATION_ERROR\",\"payload\":{\"errors\":[\"Field 'payload' "
                                 "is required for message messages\"]}}"));
    free(text);
    json_decref(f);
}

static void dump_round_trips_a_parsed_envelope(void **state)
{
    (void)state;
    const char *in =
        "{\"id\":\"arq_1_2_abcdef\",\"timestamp\":\"2026-11-27T14:00:00Z\",\"type\":\"message\","
        "\"version\":\"1.0\",\"room\":\"r\",\"payload\":{\"s\":"
        "\"q\\\"b\\\\s\\n\\t\\r\\b\\f\\u0001\\u001f/é€😀\","
        "\"i\":-9223372036854775808,\"j\":9223372036854775807,\"r\":0.1,\"x\":1.0,\"e\":1e+300,"
        "\"n\":-0.0,\"p\":3.14159,\"a\":[true,false,null,[],{}],\"k\\u0002\":0}}";
    struct envelope env;
    parse_ok(in, &env);
    size_t len;
    char *out = envelope_dump(env.root, &len);
    assert_non_null(out);
    assert_string_equal(out, "{\"id\":\"arq_1_2_abcdef\",\"timestamp\":\"2026-11-27T14:00:00Z\","
                             "\"type\":\"message\",\"version\":\"1.0\",\"room\":\"r\",\"payload\":"
                             "{\"s\":\"q\\\"b\\\\s\\n\\t\\r\\b\\f\\u0001\\u001f/é€😀\","
                             "\"i\":-9223372036854775808,\"j\":9223372036854775807,\"r\":0.1,"
                             "\"x\":1.0,\"e\":1e+300,\"n\":-0.0,\"p\":3.14159,"
                             "\"a\":[true,false,null,[],{}],\"k\\u0002\":0}}");
    struct envelope again;
    parse_ok(out, &again);
    assert_true(json_equal(env.root, again.root));
    free(out);
    envelope_release(&again);
    envelope_release(&env);
}

static void dump_writes_reals_that_read_back_exactly(void **state)
{
    (void)state;
    static const double values[] = {0.1,
                                    1.0 / 3,
                                    2.0 / 3,
                                    1e-7,
                                    123456789.125,
                                    5e-324,
                                    1.7976931348623157e308,
                                    0.30000000000000004,
                                    100.0};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        json_t *a = json_pack("[f]", values[i]);
        char *t = envelope_dump(a, NULL);
        assert_non_null(t);
        json_error_t e;
        json_t *b = json_loads(t, 0, &e);
        assert_non_null(b);
        assert_true(json_real_value(json_array_get(b, 0)) == values[i]);
        assert_true(json_is_real(json_array_get(b, 0)));
        free(t);
        json_decref(a);
        json_decref(b);
    }
}

/* A buffer too small gets the first bytes of the whole text (an escape or a character at its
 * end cut, not left out) and nothing past its end. */
static void a_short_buffer_gets_the_first_bytes_of_the_text(void **state)
{
    (void)state;
    static const char s[] = "a\"\xc3\xa9\n\x01z\xf0\x9f\x98\x80";
    static const char want[] = "\"a\\\"\xc3\xa9\\n\\u0001z\xf0\x9f\x98\x80\"";
    const size_t total = sizeof want - 1;
    assert_int_equal(envelope_write_string(s, sizeof s - 1, NULL, 0), total);
    json_t *v = json_pack("{s:[s,i]}", s, s, 7);
    assert_non_null(v);
    char *whole = envelope_dump(v, NULL);
    assert_non_null(whole);
    size_t vlen = strlen(whole);
    for (size_t size = 0; size <= total + 1; size++) {
        char buf[128];
        memset(buf, '#', sizeof buf);
        assert_int_equal(envelope_write_string(s, sizeof s - 1, buf, size), total);
        size_t k = size < total ? size : total;
        assert_memory_equal(buf, want, k);
        assert_int_equal(buf[k], '#');
    }
    for (size_t size = 0; size <= vlen; size++) {
        char buf[128];
        memset(buf, '#', sizeof buf);
        assert_int_equal(envelope_dumpb(v, buf, size), vlen);
        assert_memory_equal(buf, whole, size);
        assert_int_equal(buf[size], '#');
    }
    free(whole);
    json_decref(v);
}

static void dumpb_reports_the_full_length_for_a_small_buffer(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:s,s:i}", "a", "bcd", "e", 12);
    char buf[8];
    memset(buf, '#', sizeof buf);
    assert_int_equal(envelope_dumpb(o, buf, 5), strlen("{\"a\":\"bcd\",\"e\":12}"));
    assert_memory_equal(buf, "{\"a\":#", 6);
    assert_int_equal(envelope_dumpb(o, NULL, 0), 18);
    assert_int_equal(envelope_dumpb(NULL, buf, sizeof buf), 0);
    json_decref(o);
}

static void dump_of_a_large_value_uses_an_exact_buffer(void **state)
{
    (void)state;
    json_t *a = json_array();
    for (int i = 0; i < 3000; i++)
        json_array_append_new(a, json_integer(i));
    size_t len;
    char *t = envelope_dump(a, &len);
    assert_non_null(t);
    assert_true(len > 4096);
    assert_int_equal(strlen(t), len);
    char *j = json_dumps(a, JSON_COMPACT);
    assert_string_equal(t, j);
    free(j);
    free(t);
    json_decref(a);
}

static void dump_refuses_runaway_nesting(void **state)
{
    (void)state;
    json_t *root = json_array(), *cur = root;
    for (int i = 0; i < 2100; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    assert_int_equal(envelope_dumpb(root, NULL, 0), 0);
    assert_null(envelope_dump(root, NULL));
    json_decref(root);
}

/* --- allocation failure --------------------------------------------------------------------- */

static long allocs_left;

static void *failing_malloc(size_t size)
{
    if (allocs_left-- <= 0)
        return NULL;
    return malloc(size);
}

/* Every jansson allocation failing in turn: INTERNAL_ERROR (or, where jansson misreports the
 * failure as a syntax error, INVALID_JSON), never a crash or a leak, until enough allocations
 * succeed for the normal answer. */
static void allocation_failures_give_internal_error_and_leak_nothing(void **state)
{
    (void)state;
    static const char *const frames[] = {
        "{\"type\":\"message\",\"room\":\"r\",\"payload\":{\"a\":[1,2.5,\"x\"]}}",
        "{\"type\":\"command\",\"payload\":{\"command\":\"x\",\"parameters\":{\"k\":1}}}",
        "{\"id\":\"bad\",\"type\":\"nope\",\"foo\":1,\"room\":\"a b\"}",
        "{\"type\":\"message\"",
        "[1]",
    };
    for (size_t f = 0; f < sizeof frames / sizeof *frames; f++) {
        struct envelope env;
        struct env_error want, err;
        size_t len = strlen(frames[f]);
        int want_rc = envelope_parse(frames[f], len, NOW, NULL, &env, &want);
        envelope_release(&env);
        int done = 0, internal = 0;
        for (long n = 0; n < 1000 && !done; n++) {
            allocs_left = n;
            json_set_alloc_funcs(failing_malloc, free);
            int rc = envelope_parse(frames[f], len, NOW, NULL, &env, &err);
            if (rc == 0) {
                (void)envelope_set_sender(&env, "c");
                envelope_release(&env);
            } else {
                if (!strcmp(err.code, "INTERNAL_ERROR")) {
                    assert_null(err.payload);
                    assert_string_equal(err.text, "Out of memory");
                    internal++;
                } else {
                    assert_non_null(err.payload);
                }
                json_t *frame = envelope_error_frame(err.code, err.text, err.id, err.payload, NOW);
                err.payload = NULL;
                json_decref(frame);
            }
            json_set_alloc_funcs(malloc, free);
            done = rc == want_rc &&
                   (rc == 0 || (!strcmp(err.code, want.code) && !strcmp(err.text, want.text)));
            if (rc)
                envelope_error_clear(&err);
        }
        assert_true(done);
        assert_true(internal > 0);
        envelope_error_clear(&want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(message_with_room_and_channel_is_accepted_with_views_into_root),
        cmocka_unit_test(absent_id_timestamp_and_version_are_generated),
        cmocka_unit_test(given_id_timestamp_and_version_are_kept_as_sent),
        cmocka_unit_test(null_fields_count_as_absent),
        cmocka_unit_test(every_client_type_is_accepted),
        cmocka_unit_test(response_status_accepts_success_error_and_pending),
        cmocka_unit_test(text_need_not_be_nul_terminated),
        cmocka_unit_test(each_unknown_field_is_named_in_document_order),
        cmocka_unit_test(every_listed_field_is_known),
        cmocka_unit_test(each_string_field_must_be_a_string),
        cmocka_unit_test(args_and_metadata_must_be_objects),
        cmocka_unit_test(payload_may_be_any_json),
        cmocka_unit_test(type_is_required_and_must_be_a_client_type),
        cmocka_unit_test(version_must_be_1_0),
        cmocka_unit_test(required_fields_per_type),
        cmocka_unit_test(required_check_is_skipped_when_type_is_unusable),
        cmocka_unit_test(invalid_id_is_reported_and_echoed),
        cmocka_unit_test(id_of_a_non_string_is_not_echoed),
        cmocka_unit_test(room_and_channel_names_are_checked),
        cmocka_unit_test(channel_requires_room),
        cmocka_unit_test(metadata_sequence_must_be_an_integer_of_at_least_one),
        cmocka_unit_test(metadata_vector_clock_maps_non_empty_names_to_non_negative_integers),
        cmocka_unit_test(metadata_causal_parent_id_must_be_a_message_id),
        cmocka_unit_test(all_metadata_problems_are_collected),
        cmocka_unit_test(payload_args_and_metadata_nest_at_most_32_levels),
        cmocka_unit_test(nesting_limit_comes_from_the_limits),
        cmocka_unit_test(timestamp_forms_parse_to_the_same_instant),
        cmocka_unit_test(timestamp_fractions_of_any_precision),
        cmocka_unit_test(timestamp_known_instants),
        cmocka_unit_test(malformed_timestamps_are_refused),
        cmocka_unit_test(timestamp_before_2000_is_refused),
        cmocka_unit_test(timestamp_more_than_the_skew_in_the_future_is_refused),
        cmocka_unit_test(format_timestamp_is_rfc3339_utc_with_milliseconds),
        cmocka_unit_test(message_id_forms),
        cmocka_unit_test(room_and_channel_name_rule),
        cmocka_unit_test(new_ids_are_ulids_in_the_crockford_alphabet),
        cmocka_unit_test(ids_made_in_one_millisecond_increase),
        cmocka_unit_test(ids_differ_across_milliseconds_in_their_random_part),
        cmocka_unit_test(legacy_command_shape_becomes_command_and_args),
        cmocka_unit_test(legacy_command_without_parameters_has_no_args),
        cmocka_unit_test(legacy_parameters_do_not_replace_top_level_args),
        cmocka_unit_test(top_level_command_wins_over_the_legacy_shape),
        cmocka_unit_test(legacy_shape_problems),
        cmocka_unit_test(legacy_shape_only_applies_to_commands),
        cmocka_unit_test(all_problems_are_collected_in_spec_field_order),
        cmocka_unit_test(long_error_text_is_cut_at_a_character_boundary),
        cmocka_unit_test(truncated_json_reports_line_column_and_position),
        cmocka_unit_test(trailing_data_is_invalid_json),
        cmocka_unit_test(duplicate_keys_are_invalid_json),
        cmocka_unit_test(invalid_utf8_is_invalid_json),
        cmocka_unit_test(nul_in_a_string_is_invalid_json),
        cmocka_unit_test(empty_frame_is_invalid_json),
        cmocka_unit_test(non_object_json_must_be_an_object),
        cmocka_unit_test(sender_is_overwritten_and_from_client_kept),
        cmocka_unit_test(error_frame_serialises_exactly),
        cmocka_unit_test(error_frame_without_request_id_or_payload),
        cmocka_unit_test(parse_error_becomes_an_error_frame),
        cmocka_unit_test(dump_round_trips_a_parsed_envelope),
        cmocka_unit_test(dump_writes_reals_that_read_back_exactly),
        cmocka_unit_test(dumpb_reports_the_full_length_for_a_small_buffer),
        cmocka_unit_test(a_short_buffer_gets_the_first_bytes_of_the_text),
        cmocka_unit_test(dump_of_a_large_value_uses_an_exact_buffer),
        cmocka_unit_test(dump_refuses_runaway_nesting),
        cmocka_unit_test(allocation_failures_give_internal_error_and_leak_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
