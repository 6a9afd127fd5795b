/* What a client's frame does in the bus, in process: the welcome, every envelope error with its
 * code (the connection stays open), the payload depth bound, message telemetry, server-side
 * publishing, readiness and the status query. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus_fixture.h"

/* --- a command set with a marker ------------------------------------------------------------ */

static void cmd__ping(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    (void)self;
    (void)conn;
    (void)args;
    commands_svc_reply_ok(req, "pong", NULL);
}

static const struct arq_option echo_params[] = {ARQ_OPT("value", ARQ_OPT_JSON, NULL, 0, "any"),
                                                ARQ_OPT_END};

static void cmd__echo(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    (void)self;
    (void)conn;
    commands_svc_reply_ok(req, "echo", args);
}

static const struct arq_command commands[] = {{"ping", "marker", NULL, "guest", cmd__ping},
                                              {"echo", "echo", echo_params, "guest", cmd__echo},
                                              {NULL, NULL, NULL, NULL, NULL}};

static const struct arq_commands_ops cmds_ops = {.struct_size = sizeof cmds_ops,
                                                 .commands = commands};

/* The fixture plus the marker command set. */
static int setup(void **state)
{
    int rc = bus_fx_setup(state);
    struct bus_fx *f = *state;
    fx_instance(f, "cmds", ARQ_KIND_COMMANDS, &cmds_ops, NULL);
    return rc;
}

/* --- helpers --------------------------------------------------------------------------------- */

/* The connection is still open and answering: the marker's response is its next frame. */
static void assert_still_open(struct fake_client *c)
{
    assert_false(c->closed);
    assert_non_null(c->conn);
    fx_send(c, "{\"type\":\"command\",\"command\":\"ping\"}");
    json_t *r = fx_next(c);
    assert_string_equal(fx_str(r, "type"), "response");
    assert_string_equal(fx_str(r, "payload.message"), "pong");
    assert_int_equal(fx_unread(c), 0);
}

/* The id form of every server frame: arq_ + 26 Crockford base32 characters. */
static void assert_server_frame(const json_t *fr)
{
    const char *id = fx_str(fr, "id");
    assert_int_equal(strlen(id), 30);
    assert_memory_equal(id, "arq_", 4);
    assert_int_equal(strspn(id + 4, "0123456789ABCDEFGHJKMNPQRSTVWXYZ"), 26);
    assert_string_equal(fx_str(fr, "timestamp"), "2026-01-01T00:00:00.000Z");
    assert_string_equal(fx_str(fr, "version"), "1.0");
}

static void publish(struct bus_fx *f, struct fx_result *res, const char *json)
{
    json_error_t jerr;
    json_t *msg = json_loads(json, JSON_DECODE_ANY, &jerr);
    assert_non_null(msg);
    res->calls = 0;
    bus_svc_publish(&f->transport->ctx, msg, fx_result_cb, res);
    json_decref(msg);
    assert_int_equal(res->calls, 1); /* once, and at once without storage */
}

/* --- the welcome --------------------------------------------------------------------------- */

static void the_welcome_names_the_client_and_the_node(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *c = fx_connect(f, NULL);
    assert_non_null(c->conn);
    json_t *w = fx_next(c);
    assert_non_null(w);
    assert_server_frame(w);
    assert_string_equal(fx_str(w, "type"), "message");
    assert_string_equal(fx_str(w, "sender"), "arqonbus");
    assert_string_equal(fx_str(w, "payload.welcome"), "Connected to ArqonBus");
    const char *id = conn_svc_client_id(c->conn);
    assert_string_equal(fx_str(w, "payload.client_id"), id);
    assert_int_equal(strlen(id), strlen("arq_client_") + 32);
    assert_string_equal(fx_str(w, "payload.server.node"), "test-node");
    assert_string_equal(fx_str(w, "payload.server.version"), ARQ_VERSION);
    assert_int_equal(fx_unread(c), 0);
    assert_int_equal(fx_events(f, "client_connected"), 1);
    assert_int_equal(fx_metric(f, "arqonbus_connections{transport=\"ws\"}"), 1);
}

/* --- envelope errors ----------------------------------------------------------------------- */

struct bad_frame {
    const char *text;
    const char *code;
    const char *error;   /* the error frame's `error`                               */
    const char *problem; /* the first of payload.errors, or NULL when it has none     */
};

static void every_envelope_error_has_its_code_and_keeps_the_connection(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *c = fx_client(f), *other = fx_client(f);
    fx_join(other, "lobby", "general");
    static const struct bad_frame bad[] = {
        {"{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"foo\":1}", "VALIDATION_ERROR",
         "Unknown field 'foo'", "Unknown field 'foo'"},
        {"{\"type\":\"message\",\"foo\":1,\"bar\":2,\"room\":\"r\",\"payload\":1}",
         "VALIDATION_ERROR", "Unknown field 'foo' (and 1 more)", "Unknown field 'foo'"},
        {"{\"id\":\"nope\",\"type\":\"message\",\"room\":\"r\",\"payload\":1}", "VALIDATION_ERROR",
         "Invalid message ID format: nope", "Invalid message ID format: nope"},
        {"{\"type\":\"message\",\"version\":\"2.0\",\"room\":\"r\",\"payload\":1}",
         "VALIDATION_ERROR", "Unsupported protocol version: 2.0",
         "Unsupported protocol version: 2.0"},
        {"{\"type\":\"shout\",\"room\":\"r\",\"payload\":1}", "VALIDATION_ERROR",
         "Unsupported message type: shout", "Unsupported message type: shout"},
        {"{\"room\":\"r\",\"payload\":1}", "VALIDATION_ERROR", NULL, NULL},
        {"{\"type\":\"message\",\"room\":\"r\"}", "VALIDATION_ERROR",
         "Field 'payload' is required for message messages",
         "Field 'payload' is required for message messages"},
        {"{\"type\":\"command\"}", "VALIDATION_ERROR", NULL, NULL},
        {"{\"type\":\"message\",\"timestamp\":\"yesterday\",\"room\":\"r\",\"payload\":1}",
         "VALIDATION_ERROR", "Invalid timestamp: yesterday", "Invalid timestamp: yesterday"},
        {"{\"type\":\"message\",\"timestamp\":\"2026-01-02T00:00:01Z\",\"room\":\"r\","
         "\"payload\":1}",
         "VALIDATION_ERROR", "Timestamp is too far in the future: 2026-01-02T00:00:01Z",
         "Timestamp is too far in the future: 2026-01-02T00:00:01Z"},
        {"{\"type\":\"message\",\"timestamp\":\"1999-12-31T23:59:59Z\",\"room\":\"r\","
         "\"payload\":1}",
         "VALIDATION_ERROR", "Timestamp is before 2000-01-01: 1999-12-31T23:59:59Z",
         "Timestamp is before 2000-01-01: 1999-12-31T23:59:59Z"},
        {"{\"type\":\"message\",\"room\":\"a b\",\"payload\":1}", "VALIDATION_ERROR",
         "Invalid room name: a b", "Invalid room name: a b"},
        {"{\"type\":\"message\",\"channel\":\"general\",\"payload\":1}", "VALIDATION_ERROR",
         "Field 'channel' requires 'room'", "Field 'channel' requires 'room'"},
        {"{\"type\":\"message\",\"payload\":1}", "VALIDATION_ERROR",
         "A message needs room, room+channel or to_client",
         "A message needs room, room+channel or to_client"},
        {"{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"sender\":5}", "VALIDATION_ERROR",
         NULL, NULL},
        {"[1,2,3]", "INVALID_JSON", "Message must be a JSON object", NULL},
        {"{\"type\":", "INVALID_JSON", NULL, NULL},
        {"{\"type\":\"message\",\"type\":\"message\",\"room\":\"r\",\"payload\":1}", "INVALID_JSON",
         NULL, NULL},
        {"{\"type\":\"message\",\"room\":\"nowhere\",\"payload\":1}", "ROOM_NOT_FOUND",
         "Room nowhere does not exist", NULL},
        {"{\"type\":\"message\",\"room\":\"lobby\",\"channel\":\"nope\",\"payload\":1}",
         "CHANNEL_NOT_FOUND", "Channel lobby/nope does not exist", NULL},
        {"{\"type\":\"message\",\"room\":\"lobby\",\"channel\":\"general\",\"payload\":1}",
         "AUTHORIZATION_ERROR", "Not a member of channel lobby/general", NULL},
        {"{\"type\":\"message\",\"room\":\"lobby\",\"payload\":1}", "AUTHORIZATION_ERROR",
         "Not a member of room lobby", NULL},
        {"{\"type\":\"message\",\"to_client\":\"arq_client_00000000000000000000000000000000\","
         "\"payload\":1}",
         "NOT_FOUND", "Client arq_client_00000000000000000000000000000000 is not connected", NULL},
        {"{\"type\":\"command\",\"command\":\"no_such_command\"}", "UNKNOWN_COMMAND",
         "Unknown command: no_such_command", NULL},
    };
    size_t n = sizeof bad / sizeof bad[0];
    for (size_t i = 0; i < n; i++) {
        fx_send(c, bad[i].text);
        json_t *e = fx_next(c);
        assert_non_null(e);
        if (strcmp(fx_str(e, "error_code"), bad[i].code) ||
            (bad[i].error && strcmp(fx_str(e, "error"), bad[i].error)) ||
            (bad[i].problem &&
             strcmp(fx_str(json_array_get(fx_get(e, "payload.errors"), 0), ""), bad[i].problem))) {
            char *dump = json_dumps(e, JSON_COMPACT);
            fail_msg("for %s expected %s \"%s\", got %s", bad[i].text, bad[i].code,
                     bad[i].error ? bad[i].error : "", dump);
        }
        assert_string_equal(fx_str(e, "type"), "error");
        assert_server_frame(e);
        assert_true(json_is_object(fx_get(e, "payload")));
        assert_still_open(c);
    }
    /* None of them reached anyone. */
    assert_int_equal(fx_unread(other), 0);
    assert_int_equal(fx_metric(f, "arqonbus_messages_rejected_total"), (double)n);
    assert_int_equal(fx_metric(f, "arqonbus_messages_delivered_total"), 0);
}

static void an_error_answers_the_frames_own_id(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *c = fx_client(f);
    /* Refused by the parser, and refused by routing: both name the frame they answer. */
    fx_send(c, "{\"id\":\"arq_1_2_abcdef\",\"type\":\"message\",\"room\":\"r\",\"payload\":1,"
               "\"foo\":1}");
    json_t *e = fx_next(c);
    assert_string_equal(fx_str(e, "error_code"), "VALIDATION_ERROR");
    assert_string_equal(fx_str(e, "request_id"), "arq_1_2_abcdef");
    fx_send(c, "{\"id\":\"arq_1_3_abcdef\",\"type\":\"message\",\"room\":\"nowhere\","
               "\"payload\":1}");
    e = fx_next(c);
    assert_string_equal(fx_str(e, "error_code"), "ROOM_NOT_FOUND");
    assert_string_equal(fx_str(e, "request_id"), "arq_1_3_abcdef");
    fx_send(c, "{\"id\":\"arq_1_4_abcdef\",\"type\":\"command\",\"command\":\"nope\"}");
    e = fx_next(c);
    assert_string_equal(fx_str(e, "error_code"), "UNKNOWN_COMMAND");
    assert_string_equal(fx_str(e, "request_id"), "arq_1_4_abcdef");
    /* An id that is not a string is not echoed. */
    fx_send(c, "{\"id\":5,\"type\":\"message\",\"room\":\"r\",\"payload\":1}");
    e = fx_next(c);
    assert_string_equal(fx_str(e, "error_code"), "VALIDATION_ERROR");
    assert_null(fx_get(e, "request_id"));
    assert_still_open(c);
}

static void a_binary_frame_is_unsupported_and_the_connection_stays(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *c = fx_client(f);
    conn_svc_recv(c->conn, "\x01\x02", 2, 1);
    json_t *e = fx_next(c);
    assert_string_equal(fx_str(e, "type"), "error");
    assert_string_equal(fx_str(e, "error_code"), "UNSUPPORTED_FRAME");
    assert_still_open(c);
}

static void an_invalid_json_error_says_where_the_parser_stopped(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *c = fx_client(f);
    fx_send(c, "{\"type\":\n nope}");
    json_t *e = fx_next(c);
    assert_string_equal(fx_str(e, "error_code"), "INVALID_JSON");
    assert_int_equal(json_integer_value(fx_get(e, "payload.line")), 2);
    assert_true(json_integer_value(fx_get(e, "payload.column")) > 0);
    assert_true(json_integer_value(fx_get(e, "payload.position")) > 0);
    assert_still_open(c);
}

/* --- max_payload_depth --------------------------------------------------------------------- */

/* `levels` nested objects {"a":{"a":...{"a":1}}}. */
static void nested(char *out, size_t size, int levels)
{
    size_t len = 0;
    for (int i = 0; i < levels; i++)
        len += (size_t)snprintf(out + len, size - len, "{\"a\":");
    len += (size_t)snprintf(out + len, size - len, "1");
    for (int i = 0; i < levels; i++)
        len += (size_t)snprintf(out + len, size - len, "}");
}

static void payload_args_and_metadata_nest_at_most_max_payload_depth(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_payload_depth: 3");
    struct fake_client *a = fx_client(f), *b = fx_client(f);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");
    char ok[256], deep[256];
    nested(ok, sizeof ok, 3);
    nested(deep, sizeof deep, 4);

    fx_sendf(a, "{\"type\":\"message\",\"room\":\"lobby\",\"channel\":\"general\",\"payload\":%s}",
             ok);
    assert_int_equal(json_integer_value(fx_get(fx_expect(b, "message"), "payload.a.a.a")), 1);
    assert_string_equal(fx_str(fx_next(a), "type"), "message_response");

    static const char *const shapes[] = {
        "{\"type\":\"message\",\"room\":\"lobby\",\"channel\":\"general\",\"payload\":%s}",
        "{\"type\":\"message\",\"room\":\"lobby\",\"channel\":\"general\",\"payload\":[%s]}",
        "{\"type\":\"message\",\"room\":\"lobby\",\"channel\":\"general\",\"payload\":1,"
        "\"metadata\":%s}",
        "{\"type\":\"command\",\"command\":\"echo\",\"args\":{\"value\":%s}}",
    };
    static const char *const field[] = {"payload", "payload", "metadata", "args"};
    for (size_t i = 0; i < 4; i++) {
        /* Four levels each: the array, or args' own object, is the fourth around `ok`. */
        const char *arg = i == 1 || i == 3 ? ok : deep;
        fx_sendf(a, shapes[i], arg);
        json_t *e = fx_next(a);
        char want[128];
        snprintf(want, sizeof want, "Field '%s' is nested deeper than 3 levels", field[i]);
        assert_string_equal(fx_str(e, "error_code"), "VALIDATION_ERROR");
        assert_string_equal(fx_str(e, "error"), want);
        assert_still_open(a);
    }
    assert_int_equal(fx_unread(b), 0);

    /* A reload raises the bound; the same frame passes. */
    fx_configure(f, "max_payload_depth: 4");
    fx_sendf(a, shapes[0], deep);
    assert_string_equal(fx_str(fx_next(a), "type"), "message_response");
    assert_int_equal(json_integer_value(fx_get(fx_expect(b, "message"), "payload.a.a.a.a")), 1);
}

/* --- message telemetry --------------------------------------------------------------------- */

static json_t *event(struct bus_fx *f, const char *type)
{
    fx_events(f, type); /* drains */
    size_t i;
    json_t *ev;
    json_array_foreach(f->events, i, ev) if (!strcmp(fx_str(ev, "event_type"), type)) return ev;
    return NULL;
}

static void routed_and_rejected_messages_are_events_only_when_asked_for(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *a = fx_client(f), *b = fx_client(f);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");
    const char *msg = "{\"type\":\"message\",\"id\":\"arq_1_1_aaaaaa\",\"room\":\"lobby\","
                      "\"channel\":\"general\",\"payload\":1}";
    const char *bad = "{\"type\":\"message\",\"id\":\"arq_1_2_aaaaaa\",\"payload\":1}";
    fx_send(a, msg);
    fx_send(a, bad);
    assert_int_equal(fx_unread(a), 2);
    assert_int_equal(fx_events(f, "message_routed"), 0);
    assert_int_equal(fx_events(f, "message_rejected"), 0);

    fx_configure(f, "telemetry_messages: true");
    fx_send(a, msg);
    fx_send(a, bad);
    assert_int_equal(fx_events(f, "message_routed"), 1);
    assert_int_equal(fx_events(f, "message_rejected"), 1);
    json_t *ev = event(f, "message_routed");
    assert_string_equal(fx_str(ev, "client_id"), conn_svc_client_id(a->conn));
    assert_string_equal(fx_str(ev, "room"), "lobby");
    assert_string_equal(fx_str(ev, "channel"), "general");
    assert_string_equal(fx_str(ev, "source"), "host");
    assert_string_equal(fx_str(ev, "node"), "test-node");
    assert_string_equal(fx_str(ev, "data.id"), "arq_1_1_aaaaaa");
    assert_int_equal(json_integer_value(fx_get(ev, "data.delivered")), 1);
    ev = event(f, "message_rejected");
    assert_string_equal(fx_str(ev, "client_id"), conn_svc_client_id(a->conn));
    assert_string_equal(fx_str(ev, "data.error_code"), "VALIDATION_ERROR");
    assert_string_equal(fx_str(ev, "data.request_id"), "arq_1_2_aaaaaa");

    /* A server-side publish is routed too, with no client. */
    struct fx_result res = {0};
    publish(f, &res, "{\"room\":\"lobby\",\"channel\":\"general\",\"payload\":2}");
    assert_int_equal(fx_events(f, "message_routed"), 2);
    json_t *last = json_array_get(f->events, json_array_size(f->events) - 1);
    assert_string_equal(fx_str(last, "event_type"), "message_routed");
    assert_null(fx_get(last, "client_id"));
    assert_int_equal(json_integer_value(fx_get(last, "data.delivered")), 2);
    json_decref(res.data);
}

/* --- server-side publishing ---------------------------------------------------------------- */

static void a_server_side_publish_is_routed_as_the_server(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *a = fx_client(f), *b = fx_client(f);
    fx_join(a, "lobby", "general");
    struct fx_result res = {0};

    /* No membership needed; sender is the server; the envelope's fields are kept. */
    publish(f, &res,
            "{\"room\":\"lobby\",\"channel\":\"general\",\"payload\":{\"n\":1},"
            "\"metadata\":{\"sequence\":7}}");
    assert_string_equal(res.code, "");
    assert_int_equal(json_integer_value(fx_get(res.data, "delivered")), 1);
    assert_null(fx_get(res.data, "offset")); /* no storage */
    assert_null(fx_get(res.data, "epoch"));
    json_t *m = fx_next(a);
    assert_string_equal(fx_str(m, "type"), "message");
    assert_string_equal(fx_str(m, "sender"), "arqonbus");
    assert_string_equal(fx_str(m, "id"), fx_str(res.data, "id"));
    assert_string_equal(fx_str(m, "room"), "lobby");
    assert_string_equal(fx_str(m, "channel"), "general");
    assert_int_equal(json_integer_value(fx_get(m, "payload.n")), 1);
    assert_int_equal(json_integer_value(fx_get(m, "metadata.sequence")), 7);
    assert_string_equal(fx_str(m, "timestamp"), "2026-01-01T00:00:00.000Z");
    assert_int_equal(fx_unread(b), 0);

    /* A direct message. */
    char text[256];
    snprintf(text, sizeof text, "{\"to_client\":\"%s\",\"payload\":\"psst\"}",
             conn_svc_client_id(b->conn));
    publish(f, &res, text);
    assert_string_equal(res.code, "");
    assert_int_equal(json_integer_value(fx_get(res.data, "delivered")), 1);
    m = fx_next(b);
    assert_string_equal(fx_str(m, "payload"), "psst");
    assert_string_equal(fx_str(m, "sender"), "arqonbus");
    assert_int_equal(fx_unread(a), 0);
    assert_int_equal(fx_metric(f, "arqonbus_messages_delivered_total"), 2);
    json_decref(res.data);
}

static void a_server_side_publish_obeys_every_client_rule(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_payload_depth: 2");
    struct fake_client *a = fx_client(f);
    fx_join(a, "lobby", "general");
    static const struct {
        const char *json, *code, *text;
    } bad[] = {
        {"[1]", "VALIDATION_ERROR", "A publish is a JSON object"},
        {"\"text\"", "VALIDATION_ERROR", "A publish is a JSON object"},
        {"{\"room\":\"lobby\",\"payload\":1,\"type\":\"command\"}", "VALIDATION_ERROR",
         "Unknown field 'type'"},
        {"{\"room\":\"lobby\",\"payload\":1,\"sender\":\"me\"}", "VALIDATION_ERROR",
         "Unknown field 'sender'"},
        {"{\"room\":\"lobby\",\"payload\":1,\"id\":\"arq_1_1_aaaaaa\"}", "VALIDATION_ERROR",
         "Unknown field 'id'"},
        {"{\"room\":\"lobby\"}", "VALIDATION_ERROR",
         "Field 'payload' is required for message messages"},
        {"{\"room\":\"a b\",\"payload\":1}", "VALIDATION_ERROR", "Invalid room name: a b"},
        {"{\"room\":\"lobby\",\"payload\":{\"a\":{\"b\":{\"c\":1}}}}", "VALIDATION_ERROR",
         "Field 'payload' is nested deeper than 2 levels"},
        {"{\"payload\":1}", "VALIDATION_ERROR", "A message needs room, room+channel or to_client"},
        {"{\"room\":\"nowhere\",\"payload\":1}", "ROOM_NOT_FOUND", "Room nowhere does not exist"},
        {"{\"room\":\"lobby\",\"channel\":\"nope\",\"payload\":1}", "CHANNEL_NOT_FOUND",
         "Channel lobby/nope does not exist"},
        {"{\"to_client\":\"arq_client_00000000000000000000000000000000\",\"payload\":1}",
         "NOT_FOUND", "Client arq_client_00000000000000000000000000000000 is not connected"},
    };
    struct fx_result res = {0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        publish(f, &res, bad[i].json);
        if (strcmp(res.code, bad[i].code) || strcmp(res.text, bad[i].text))
            fail_msg("for %s expected %s \"%s\", got %s \"%s\"", bad[i].json, bad[i].code,
                     bad[i].text, res.code, res.text);
    }
    /* The envelope's problems travel as data, as a client's error frame carries them. */
    publish(f, &res, "{\"room\":\"lobby\",\"payload\":1,\"metadata\":{\"sequence\":0}}");
    assert_string_equal(res.code, "VALIDATION_ERROR");
    assert_true(json_array_size(fx_get(res.data, "errors")) >= 1);
    assert_int_equal(fx_unread(a), 0);
    assert_int_equal(fx_metric(f, "arqonbus_messages_delivered_total"), 0);
    json_decref(res.data);
}

/* --- readiness and status ------------------------------------------------------------------ */

static void ready_follows_whether_the_process_accepts_clients(void **state)
{
    struct bus_fx *f = *state;
    assert_int_equal(bus_svc_ready(&f->transport->ctx), 1);
    f->accepting = 0; /* stopping or draining */
    assert_int_equal(bus_svc_ready(&f->transport->ctx), 0);
    f->accepting = 1;
    assert_int_equal(bus_svc_ready(&f->transport->ctx), 1);
}

static void status_adds_clients_rooms_channels_and_storage_to_the_runtime_part(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *a = fx_client(f), *b = fx_client(f);
    fx_join(a, "lobby", "general");
    fx_join(a, "lobby", "random");
    fx_join(b, "kitchen", NULL);
    fx_client(f);
    const char *code = "unset";
    struct arq_error err = {""};
    json_t *st = bus_svc_query(&f->transport->ctx, NULL, "status", NULL, NULL, &code, &err);
    assert_null(code);
    assert_non_null(st);
    assert_int_equal(json_integer_value(fx_get(st, "clients")), 3);
    assert_int_equal(json_integer_value(fx_get(st, "rooms")), 2);
    assert_int_equal(json_integer_value(fx_get(st, "channels")), 2);
    assert_true(json_is_null(fx_get(st, "storage")));
    /* The runtime's part, as the environment gave it. */
    assert_string_equal(fx_str(st, "node"), "test-node");
    assert_string_equal(fx_str(st, "version"), "test");
    assert_int_equal(json_integer_value(fx_get(st, "uptime_seconds")), 1);
    assert_int_equal(json_integer_value(fx_get(st, "generation")), 1);
    assert_true(json_is_array(fx_get(st, "plugins")));
    assert_true(json_is_object(fx_get(st, "reloads")));
    json_decref(st);

    /* A client leaving is counted at once. */
    fx_disconnect(b, 1000);
    st = bus_svc_query(&f->transport->ctx, NULL, "status", NULL, NULL, &code, &err);
    assert_int_equal(json_integer_value(fx_get(st, "clients")), 2);
    assert_int_equal(json_integer_value(fx_get(st, "rooms")), 1);
    json_decref(st);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, bus_fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(the_welcome_names_the_client_and_the_node),
        T(every_envelope_error_has_its_code_and_keeps_the_connection),
        T(an_error_answers_the_frames_own_id),
        T(a_binary_frame_is_unsupported_and_the_connection_stays),
        T(an_invalid_json_error_says_where_the_parser_stopped),
        T(payload_args_and_metadata_nest_at_most_max_payload_depth),
        T(routed_and_rejected_messages_are_events_only_when_asked_for),
        T(a_server_side_publish_is_routed_as_the_server),
        T(a_server_side_publish_obeys_every_client_rule),
        T(ready_follows_whether_the_process_accepts_clients),
        T(status_adds_clients_rooms_channels_and_storage_to_the_runtime_part),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
