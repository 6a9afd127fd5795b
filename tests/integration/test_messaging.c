/* Messaging over real WebSocket connections to a real arqonbusd: the welcome, routing to
 * channels, rooms and single clients, every validation error, the built-in commands, slow
 * consumers, a thousand clients, and clients kept across a reload. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus_client.h"
#include "http_client.h"
#include "prom_parse.h"
#include "scrape.h"

/* conf.d with the WebSocket transport on a free port, the built-in and example commands, and
 * `bus_extra` lines under `bus:`. */
static void write_config(struct fixture *f, const char *bus_extra, const char *ws_extra)
{
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\nbus:\n%s", ARQ_BUILD_PLUGIN_DIR,
            bus_extra ? bus_extra : "  auto_create: true\n");
    h_write(f->dir, "10-ws.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n%s",
            h_port(&f->p, "ws"), ws_extra ? ws_extra : "");
    h_write(f->dir, "20-commands.yaml",
            "plugins:\n  builtin:\n    module: commands-builtin\n"
            "  example:\n    module: commands-example\n");
}

/* The HTTP API too, for /metrics. */
static void write_http(struct fixture *f)
{
    h_write(f->dir, "30-http.yaml",
            "plugins:\n  http:\n    module: transport-http\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n",
            h_port(&f->p, "http"));
}

static int start(struct fixture *f, const char *bus_extra, const char *ws_extra)
{
    write_config(f, bus_extra, ws_extra);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    return bc_port(&f->p);
}

static void test_welcome_gives_a_client_id_and_the_server(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL, NULL);
    struct bus_client *a = bc_connect(port, "/");
    struct bus_client *b = bc_connect(port, "/any/path?x=1");
    regex_t re;
    assert_int_equal(regcomp(&re, "^arq_client_[0-9a-f]{32}$", REG_EXTENDED | REG_NOSUB), 0);
    assert_int_equal(regexec(&re, a->id, 0, NULL, 0), 0);
    assert_int_equal(regexec(&re, b->id, 0, NULL, 0), 0);
    regfree(&re);
    assert_string_not_equal(a->id, b->id);
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(f), 0);
}

static void test_channel_message_reaches_exactly_its_members(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL, NULL);
    struct bus_client *a = bc_connect(port, NULL), *b = bc_connect(port, NULL);
    struct bus_client *other_room = bc_connect(port, NULL), *other_channel = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    bc_join(b, "lobby", "general");
    bc_join(other_room, "attic", "general");
    bc_join(other_channel, "lobby", "random");

    bc_send(a, "{s:s, s:s, s:s, s:s, s:{s:s}, s:s, s:{s:i}}", "id", "arq_1700000000000_1_0a0b0c",
            "type", "message", "room", "lobby", "channel", "general", "payload", "text", "hi",
            "sender", "forged", "metadata", "sequence", 1);
    json_t *ack = bc_expect(a, "message_response", 5000);
    assert_string_equal(bc_str(ack, "request_id"), "arq_1700000000000_1_0a0b0c");
    assert_string_equal(bc_str(ack, "status"), "success");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(ack, "payload"), "delivered")), 1);
    json_decref(ack);

    json_t *m = bc_expect(b, "message", 5000);
    assert_string_equal(bc_str(m, "id"), "arq_1700000000000_1_0a0b0c");
    assert_string_equal(bc_str(m, "sender"), a->id); /* overwritten */
    assert_string_equal(bc_str(m, "room"), "lobby");
    assert_string_equal(bc_str(m, "channel"), "general");
    assert_string_equal(bc_str(json_object_get(m, "payload"), "text"), "hi");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(m, "metadata"), "sequence")), 1);
    json_decref(m);
    bc_expect_nothing(other_room);
    bc_expect_nothing(other_channel);
    bc_expect_nothing(a); /* not to the sender */

    /* After leaving, nothing more arrives. */
    json_t *r;
    bc_command_ok(b, &r, "leave_channel", "{s:s, s:s}", "room", "lobby", "channel", "general");
    json_decref(r);
    bc_send(a, "{s:s, s:s, s:s, s:{}}", "type", "message", "room", "lobby", "channel", "general",
            "payload");
    ack = bc_expect(a, "message_response", 5000);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(ack, "payload"), "delivered")), 0);
    json_decref(ack);
    bc_expect_nothing(b);
    bc_free(a);
    bc_free(b);
    bc_free(other_room);
    bc_free(other_channel);
    assert_int_equal(h_stop(f), 0);
}

static void test_room_message_reaches_every_member_of_the_room_once(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL, NULL);
    struct bus_client *a = bc_connect(port, NULL), *two = bc_connect(port, NULL);
    struct bus_client *room_level = bc_connect(port, NULL), *outsider = bc_connect(port, NULL);
    bc_join(a, "lobby", NULL);
    bc_join(two, "lobby", "general");
    bc_join(two, "lobby", "random"); /* in two channels: still one copy */
    bc_join(room_level, "lobby", NULL);
    bc_join(outsider, "attic", NULL);
    bc_send(a, "{s:s, s:s, s:{s:i}}", "type", "message", "room", "lobby", "payload", "n", 7);
    json_t *ack = bc_expect(a, "message_response", 5000);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(ack, "payload"), "delivered")), 2);
    json_decref(ack);
    json_t *m = bc_expect(two, "message", 5000);
    json_decref(m);
    bc_expect_nothing(two);
    m = bc_expect(room_level, "message", 5000);
    assert_string_equal(bc_str(m, "sender"), a->id);
    json_decref(m);
    bc_expect_nothing(outsider);
    bc_expect_nothing(a);
    bc_free(a);
    bc_free(two);
    bc_free(room_level);
    bc_free(outsider);
    assert_int_equal(h_stop(f), 0);
}

static void test_direct_message_reaches_one_client(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL, NULL);
    struct bus_client *a = bc_connect(port, NULL), *b = bc_connect(port, NULL);
    struct bus_client *c = bc_connect(port, NULL);
    bc_send(a, "{s:s, s:s, s:s}", "type", "message", "to_client", b->id, "payload", "psst");
    json_t *m = bc_expect(b, "message", 5000);
    assert_string_equal(bc_str(m, "payload"), "psst");
    assert_string_equal(bc_str(m, "sender"), a->id);
    json_decref(m);
    json_t *ack = bc_expect(a, "message_response", 5000);
    json_decref(ack);
    bc_expect_nothing(c);

    bc_send(a, "{s:s, s:s, s:s, s:s}", "id", "arq_1700000000000_2_abcdef", "type", "message",
            "to_client", "arq_client_00000000000000000000000000000000", "payload", "x");
    json_t *e = bc_expect(a, "error", 5000);
    assert_string_equal(bc_str(e, "error_code"), "NOT_FOUND");
    assert_string_equal(bc_str(e, "request_id"), "arq_1700000000000_2_abcdef");
    json_decref(e);
    bc_free(a);
    bc_free(b);
    bc_free(c);
    assert_int_equal(h_stop(f), 0);
}

/* Send raw text; expect an error frame with `code` whose errors (when given) contain
 * `problem`; then the connection still works. */
static void expect_error(struct bus_client *c, const char *text, const char *code,
                         const char *problem)
{
    assert_int_equal(ws_send_text(c->ws, text, strlen(text)), 0);
    json_t *e = bc_expect(c, "error", 5000);
    if (strcmp(bc_str(e, "error_code"), code) != 0) {
        char *dump = json_dumps(e, JSON_COMPACT);
        fail_msg("for %s expected %s, got %s", text, code, dump);
    }
    if (problem) {
        const json_t *errors = json_object_get(json_object_get(e, "payload"), "errors");
        int found = 0;
        size_t i;
        json_t *v;
        json_array_foreach(errors, i, v) found |= strstr(json_string_value(v), problem) != NULL;
        if (!found) {
            char *dump = json_dumps(e, JSON_COMPACT);
            fail_msg("for %s expected problem \"%s\" in %s", text, problem, dump);
        }
    }
    json_decref(e);
    json_t *r;
    bc_command_ok(c, &r, "ping", NULL);
    json_decref(r);
}

static void test_every_validation_error_keeps_the_connection(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL, NULL);
    struct bus_client *c = bc_connect(port, NULL);
    expect_error(c, "{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"foo\":1}",
                 "VALIDATION_ERROR", "Unknown field 'foo'");
    expect_error(c, "{\"id\":\"nope\",\"type\":\"message\",\"room\":\"r\",\"payload\":1}",
                 "VALIDATION_ERROR", "Invalid message ID format: nope");
    expect_error(c, "{\"type\":\"message\",\"version\":\"2.0\",\"room\":\"r\",\"payload\":1}",
                 "VALIDATION_ERROR", "Unsupported protocol version: 2.0");
    expect_error(c, "{\"type\":\"shout\",\"room\":\"r\",\"payload\":1}", "VALIDATION_ERROR",
                 "Unsupported message type: shout");
    expect_error(c, "{\"type\":\"message\",\"room\":\"r\"}", "VALIDATION_ERROR",
                 "Field 'payload' is required for message messages");
    expect_error(c,
                 "{\"type\":\"message\",\"timestamp\":\"yesterday\",\"room\":\"r\",\"payload\":1}",
                 "VALIDATION_ERROR", "Invalid timestamp: yesterday");
    expect_error(c,
                 "{\"type\":\"message\",\"timestamp\":\"2999-01-01T00:00:00Z\",\"room\":\"r\","
                 "\"payload\":1}",
                 "VALIDATION_ERROR", "Timestamp is too far in the future");
    expect_error(c, "[1,2,3]", "INVALID_JSON", NULL);
    expect_error(c, "{\"type\":", "INVALID_JSON", NULL);
    expect_error(c, "{\"type\":\"message\",\"payload\":1}", "VALIDATION_ERROR",
                 "A message needs room, room+channel or to_client");
    expect_error(c, "{\"type\":\"message\",\"room\":\"nowhere\",\"payload\":1}", "ROOM_NOT_FOUND",
                 NULL);
    expect_error(c, "{\"type\":\"command\",\"command\":\"no_such_command\"}", "UNKNOWN_COMMAND",
                 NULL);

    /* The JSON error says where the parser stopped. */
    const char *bad = "{\"type\": nope}";
    assert_int_equal(ws_send_text(c->ws, bad, strlen(bad)), 0);
    json_t *e = bc_expect(c, "error", 5000);
    const json_t *payload = json_object_get(e, "payload");
    assert_int_equal(json_integer_value(json_object_get(payload, "line")), 1);
    assert_true(json_integer_value(json_object_get(payload, "column")) > 0);
    json_decref(e);

    /* Binary frames have no codec. */
    assert_int_equal(ws_send_frame(c->ws, WS_OP_BINARY, 1, "\x01\x02", 2), 0);
    e = bc_expect(c, "error", 5000);
    assert_string_equal(bc_str(e, "error_code"), "UNSUPPORTED_FRAME");
    json_decref(e);
    bc_free(c);
    assert_int_equal(h_stop(f), 0);
}

static void test_publishing_needs_membership(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL, NULL);
    struct bus_client *a = bc_connect(port, NULL), *b = bc_connect(port, NULL);
    bc_join(b, "lobby", "general");
    expect_error(a,
                 "{\"type\":\"message\",\"room\":\"lobby\",\"channel\":\"general\",\"payload\":1}",
                 "AUTHORIZATION_ERROR", NULL);
    expect_error(a, "{\"type\":\"message\",\"room\":\"lobby\",\"channel\":\"nope\",\"payload\":1}",
                 "CHANNEL_NOT_FOUND", NULL);
    bc_expect_nothing(b);
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(f), 0);
}

static void test_builtin_commands(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL, NULL);
    struct bus_client *a = bc_connect(port, NULL), *b = bc_connect(port, NULL);
    json_t *r;
    const json_t *d;

    d = bc_command_ok(a, &r, "ping", NULL);
    assert_true(json_is_true(json_object_get(d, "pong")));
    assert_string_equal(bc_str(d, "client_id"), a->id);
    assert_string_equal(bc_str(r, "command"), "ping");
    json_decref(r);

    bc_join(a, "lobby", "general");
    bc_join(b, "lobby", "general");
    d = bc_command_ok(a, &r, "status", NULL);
    assert_int_equal(json_integer_value(json_object_get(d, "clients")), 2);
    assert_int_equal(json_integer_value(json_object_get(d, "rooms")), 1);
    assert_int_equal(json_integer_value(json_object_get(d, "channels")), 1);
    /* every plugin with its health */
    const json_t *plugins = json_object_get(d, "plugins");
    assert_true(json_array_size(plugins) >= 3);
    size_t pi;
    json_t *pv;
    json_array_foreach(plugins, pi, pv) assert_string_equal(bc_str(pv, "health"), "healthy");
    json_decref(r);

    d = bc_command_ok(a, &r, "whoami", NULL);
    assert_string_equal(bc_str(d, "client_id"), a->id);
    assert_string_equal(bc_str(d, "role"), "user");
    assert_int_equal(json_array_size(json_object_get(d, "memberships")), 1);
    json_decref(r);

    d = bc_command_ok(a, &r, "list_rooms", NULL);
    assert_string_equal(bc_str(json_array_get(json_object_get(d, "rooms"), 0), "room"), "lobby");
    json_decref(r);
    d = bc_command_ok(a, &r, "list_channels", "{s:s}", "room", "lobby");
    assert_string_equal(bc_str(json_array_get(json_object_get(d, "channels"), 0), "channel"),
                        "general");
    json_decref(r);
    d = bc_command_ok(a, &r, "channel_info", "{s:s, s:s}", "room", "lobby", "channel", "general");
    assert_int_equal(json_integer_value(json_object_get(d, "members")), 2);
    json_decref(r);

    d = bc_command_ok(a, &r, "create_channel", "{s:s, s:s, s:s}", "room", "lobby", "channel",
                      "news", "description", "announcements");
    json_decref(r);
    r = bc_command(a, "create_channel", "{s:s, s:s}", "room", "lobby", "channel", "news");
    assert_string_equal(bc_str(r, "error_code"), "CHANNEL_EXISTS");
    json_decref(r);

    r = bc_command(a, "leave_channel", "{s:s, s:s}", "room", "lobby", "channel", "news");
    assert_string_equal(bc_str(r, "error_code"), "NOT_FOUND");
    json_decref(r);
    r = bc_command(a, "list_channels", "{s:s}", "room", "nowhere");
    assert_string_equal(bc_str(r, "error_code"), "ROOM_NOT_FOUND");
    json_decref(r);
    r = bc_command(a, "join_channel", "{s:s}", "room", "lobby");
    assert_string_equal(bc_str(r, "error_code"), "VALIDATION_ERROR");
    json_decref(r);
    r = bc_command(a, "join_channel", "{s:s, s:s}", "room", "lobby", "channel", "bad name!");
    assert_string_equal(bc_str(r, "error_code"), "VALIDATION_ERROR");
    json_decref(r);

    /* Admin commands are refused to ordinary clients. */
    r = bc_command(a, "delete_channel", "{s:s, s:s}", "room", "lobby", "channel", "news");
    assert_string_equal(bc_str(r, "error_code"), "AUTHORIZATION_ERROR");
    json_decref(r);
    r = bc_command(a, "disconnect_client", "{s:s}", "client_id", b->id);
    assert_string_equal(bc_str(r, "error_code"), "AUTHORIZATION_ERROR");
    json_decref(r);
    r = bc_command(a, "reload", NULL);
    assert_string_equal(bc_str(r, "error_code"), "AUTHORIZATION_ERROR");
    json_decref(r);
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(f), 0);
}

/* The bus keeps a channel's description as long as the channel and sends it in every listing:
 * at most 1024 bytes (docs/protocol.md); longer is VALIDATION_ERROR and nothing is created. */
static void test_a_channel_description_has_a_bound(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL, NULL);
    struct bus_client *a = bc_connect(port, NULL);
    json_t *r;
    char *text = malloc(100 * 1024 + 1);
    assert_non_null(text);
    memset(text, 'd', 100 * 1024);
    text[100 * 1024] = '\0';

    r = bc_command(a, "create_channel", "{s:s, s:s, s:s}", "room", "lobby", "channel", "big",
                   "description", text);
    assert_string_equal(bc_str(r, "status"), "error");
    assert_string_equal(bc_str(r, "error_code"), "VALIDATION_ERROR");
    assert_non_null(strstr(bc_str(r, "error"), "1024"));
    json_decref(r);
    text[1025] = '\0';
    r = bc_command(a, "create_channel", "{s:s, s:s, s:s}", "room", "lobby", "channel", "big",
                   "description", text);
    assert_string_equal(bc_str(r, "error_code"), "VALIDATION_ERROR");
    json_decref(r);
    /* Nothing was created by the refusals. */
    r = bc_command(a, "list_channels", "{s:s}", "room", "lobby");
    assert_string_equal(bc_str(r, "error_code"), "ROOM_NOT_FOUND");
    json_decref(r);

    /* 1024 bytes (of UTF-8: 512 two-byte characters) is kept whole. */
    for (size_t i = 0; i < 1024; i += 2)
        memcpy(text + i, "\xc3\xa9", 2);
    text[1024] = '\0';
    const json_t *d = bc_command_ok(a, &r, "create_channel", "{s:s, s:s, s:s}", "room", "lobby",
                                    "channel", "big", "description", text);
    assert_string_equal(bc_str(d, "description"), text);
    json_decref(r);
    d = bc_command_ok(a, &r, "list_channels", "{s:s}", "room", "lobby");
    assert_string_equal(bc_str(json_array_get(json_object_get(d, "channels"), 0), "description"),
                        text);
    json_decref(r);
    free(text);
    bc_free(a);
    assert_int_equal(h_stop(f), 0);
}

static void test_help_lists_the_commands_of_every_command_set(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL, NULL);
    struct bus_client *a = bc_connect(port, NULL);
    json_t *r;
    const json_t *d = bc_command_ok(a, &r, "help", NULL);
    const json_t *list = json_is_array(d) ? d : json_object_get(d, "commands");
    int ping = 0, echo = 0;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        ping |= !strcmp(bc_str(v, "name"), "ping");
        echo |= !strcmp(bc_str(v, "name"), "echo");
    }
    assert_true(ping && echo);
    json_decref(r);
    d = bc_command_ok(a, &r, "echo", "{s:s}", "text", "hello");
    json_decref(r);
    bc_free(a);
    assert_int_equal(h_stop(f), 0);
}

static void test_admin_commands_for_an_admin(void **state)
{
    struct fixture *f = *state;
    int port = start(f, "  anonymous_role: admin\n", NULL);
    struct bus_client *a = bc_connect(port, NULL), *b = bc_connect(port, NULL);
    bc_join(b, "lobby", "general");
    json_t *r =
        bc_command(a, "delete_channel", "{s:s, s:s}", "room", "lobby", "channel", "general");
    assert_string_equal(bc_str(r, "error_code"), "EXECUTION_ERROR");
    json_decref(r);
    bc_command_ok(a, &r, "delete_channel", "{s:s, s:s, s:b}", "room", "lobby", "channel", "general",
                  "force", 1);
    json_decref(r);

    bc_command_ok(a, &r, "reload", NULL);
    json_decref(r);

    bc_command_ok(a, &r, "disconnect_client", "{s:s, s:s}", "client_id", b->id, "reason", "bye");
    json_decref(r);
    for (int i = 0; i < 10 && ws_recv(b->ws, NULL, NULL, h_ms(2000)) != WS_OP_CLOSE; i++)
        ;
    assert_int_equal(ws_close_code(b->ws), 1008);
    assert_string_equal(ws_close_reason(b->ws), "bye");
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(f), 0);
}

static void test_message_telemetry_when_asked_for(void **state)
{
    struct fixture *f = *state;
    char events[600];
    snprintf(events, sizeof events, "%s/events.jsonl", f->logs);
    h_write(f->dir, "30-tlog.yaml",
            "plugins:\n  events:\n    module: telemetry-log\n    config:\n      path: %s\n"
            "      events: [message_routed, message_rejected]\n",
            events);
    int port = start(f, "  telemetry_messages: true\n", NULL);
    struct bus_client *a = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    bc_send(a, "{s:s, s:s, s:s, s:i}", "type", "message", "room", "lobby", "channel", "general",
            "payload", 1);
    json_decref(bc_expect(a, "message_response", 5000));
    expect_error(a, "{\"type\":\"message\"}", "VALIDATION_ERROR", NULL);
    bc_free(a);
    assert_int_equal(h_stop(f), 0);
    char *text = h_slurp(events);
    assert_non_null(strstr(text, "\"event_type\":\"message_routed\""));
    assert_non_null(strstr(text, "\"room\":\"lobby\",\"channel\":\"general\""));
    assert_non_null(strstr(text, "\"delivered\":0"));
    assert_non_null(strstr(text, "\"event_type\":\"message_rejected\""));
    assert_non_null(strstr(text, "\"error_code\":\"VALIDATION_ERROR\""));
    free(text);
}

static void test_presence_events_in_the_rooms_configured(void **state)
{
    struct fixture *f = *state;
    int port = start(f, "  presence: [lobby]\n", NULL);
    struct bus_client *a = bc_connect(port, NULL), *b = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    bc_join(b, "lobby", "general");
    json_t *m = bc_expect(a, "message", 5000);
    assert_string_equal(bc_str(m, "sender"), "arqonbus");
    assert_string_equal(bc_str(m, "room"), "lobby");
    assert_string_equal(bc_str(m, "channel"), "general");
    assert_string_equal(bc_str(json_object_get(m, "payload"), "event"), "joined");
    assert_string_equal(bc_str(json_object_get(m, "payload"), "client_id"), b->id);
    json_decref(m);
    /* A disconnect is a leave. */
    bc_free(b);
    m = bc_expect(a, "message", 5000);
    assert_string_equal(bc_str(json_object_get(m, "payload"), "event"), "left");
    json_decref(m);
    /* Not in rooms that are not listed. */
    struct bus_client *c = bc_connect(port, NULL), *d = bc_connect(port, NULL);
    bc_join(c, "attic", "general");
    bc_join(d, "attic", "general");
    bc_expect_nothing(c);
    bc_free(a);
    bc_free(c);
    bc_free(d);
    assert_int_equal(h_stop(f), 0);
}

static void test_channels_are_created_by_joins_unless_auto_create_is_off(void **state)
{
    struct fixture *f = *state;
    int port = start(f, "  auto_create: false\n", NULL);
    struct bus_client *a = bc_connect(port, NULL);
    json_t *r = bc_command(a, "join_channel", "{s:s, s:s}", "room", "lobby", "channel", "new");
    assert_string_equal(bc_str(r, "error_code"), "CHANNEL_NOT_FOUND");
    json_decref(r);
    bc_command_ok(a, &r, "create_channel", "{s:s, s:s}", "room", "lobby", "channel", "new");
    json_decref(r);
    bc_join(a, "lobby", "new");
    /* A created channel stays when its last member leaves... */
    bc_command_ok(a, &r, "leave_channel", "{s:s, s:s}", "room", "lobby", "channel", "new");
    json_decref(r);
    const json_t *d = bc_command_ok(a, &r, "list_channels", "{s:s}", "room", "lobby");
    assert_int_equal(json_array_size(json_object_get(d, "channels")), 1);
    json_decref(r);
    bc_free(a);
    assert_int_equal(h_stop(f), 0);

    /* ...while one made by a join goes, and its room with it. */
    port = start(f, NULL, NULL);
    a = bc_connect(port, NULL);
    bc_join(a, "lobby", "temp");
    d = bc_command_ok(a, &r, "list_rooms", NULL);
    assert_int_equal(json_array_size(json_object_get(d, "rooms")), 1);
    json_decref(r);
    bc_command_ok(a, &r, "leave_channel", "{s:s, s:s}", "room", "lobby", "channel", "temp");
    json_decref(r);
    d = bc_command_ok(a, &r, "list_rooms", NULL);
    assert_int_equal(json_array_size(json_object_get(d, "rooms")), 0);
    json_decref(r);
    bc_free(a);
    assert_int_equal(h_stop(f), 0);
}

static void test_slow_consumer_is_cut_while_others_keep_receiving(void **state)
{
    struct fixture *f = *state;
    write_http(f);
    int port = start(f, NULL, "      max_queued_bytes: 1MiB\n");
    struct bus_client *pub = bc_connect(port, "/?ack=0");
    struct bus_client *fast = bc_connect(port, NULL), *slow = bc_connect(port, NULL);
    bc_join(pub, "feed", "ticks");
    bc_join(fast, "feed", "ticks");
    bc_join(slow, "feed", "ticks");
    char *blob = malloc(8192);
    memset(blob, 'x', 8191);
    blob[8191] = '\0';
    enum { TOTAL = 4000 };
    int received = 0;
    for (int i = 0; i < TOTAL; i++) {
        bc_send(pub, "{s:s, s:s, s:s, s:{s:i, s:s}}", "type", "message", "room", "feed", "channel",
                "ticks", "payload", "n", i, "blob", blob);
        /* the fast client keeps up */
        char *data;
        size_t len;
        int op;
        while ((op = ws_poll_message(fast->ws, &data, &len)) == WS_OP_TEXT) {
            json_t *m = json_loadb(data, len, 0, NULL);
            assert_int_equal(
                json_integer_value(json_object_get(json_object_get(m, "payload"), "n")), received);
            received++;
            json_decref(m);
            free(data);
        }
    }
    while (received < TOTAL) {
        json_t *m = bc_recv(fast, 5000);
        assert_non_null(m);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "payload"), "n")),
                         received);
        received++;
        json_decref(m);
    }
    /* The slow one finds, after what reached its socket, a 1013 close. */
    int op;
    while ((op = ws_recv(slow->ws, NULL, NULL, h_ms(5000))) == WS_OP_TEXT)
        ;
    if (op != WS_OP_CLOSE)
        fail_msg("the slow client saw %d, not a close (errno %d: %s)", op, errno,
                 ws_error(slow->ws));
    assert_int_equal(op, WS_OP_CLOSE);
    assert_int_equal(ws_close_code(slow->ws), 1013);
    assert_true(
        h_metric(h_component_port(&f->p, "http"), "arqonbus_slow_consumer_disconnects_total") == 1);
    free(blob);
    bc_free(pub);
    bc_free(fast);
    bc_free(slow);
    assert_int_equal(h_stop(f), 0);
}

/* `n` messages of about 200 bytes to room `room`, numbered from 0 in payload.n, in ONE
 * send(): on loopback they are all in the server's socket before it reads any. */
static void send_burst(struct bus_client *pub, const char *room, int n)
{
    static const unsigned char mask[4] = {1, 2, 3, 4};
    size_t cap = (size_t)n * 256, len = 0;
    unsigned char *burst = malloc(cap);
    assert_non_null(burst);
    for (int i = 0; i < n; i++) {
        char msg[256];
        int ml = snprintf(msg, sizeof msg,
                          "{\"type\":\"message\",\"room\":\"%s\",\"payload\":{\"n\":%d,"
                          "\"pad\":\"%0120d\"}}",
                          room, i, 0);
        size_t fl;
        unsigned char *frame = ws_build_frame(0x81, mask, msg, (size_t)ml, &fl);
        assert_non_null(frame);
        assert_true(len + fl <= cap);
        memcpy(burst + len, frame, fl);
        len += fl;
        free(frame);
    }
    assert_int_equal(ws_send_raw(pub->ws, burst, len), 0);
    free(burst);
}

/* The subscriber receives messages 0..n-1 of a burst, in order. */
static void expect_burst(struct bus_client *sub, int n)
{
    for (int i = 0; i < n; i++) {
        json_t *m = bc_expect(sub, "message", 5000);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "payload"), "n")),
                         i);
        json_decref(m);
    }
}

/* lws reads a socket rx_buffer_size (1 KiB) at a time, once per loop turn. The transport reads
 * on while a connection's reads come back full, so a publisher's burst is routed in one turn
 * and reaches each subscriber in one write, not one write per kilobyte. Writes are counted in
 * arqonbus_ws_writes_total. */
static void test_a_burst_is_read_in_one_turn_and_reaches_a_subscriber_in_one_write(void **state)
{
    struct fixture *f = *state;
    write_http(f);
    int port = start(f, NULL, NULL);
    int http = h_component_port(&f->p, "http");
    struct bus_client *pub = bc_connect(port, "/?ack=0"), *sub = bc_connect(port, NULL);
    bc_join(pub, "burst", NULL);
    bc_join(sub, "burst", NULL);
    bc_expect_nothing(sub); /* the join's replies are written */

    /* 40 messages, ~9 KB: nine reads of 1 KiB. */
    double before = h_metric(http, "arqonbus_ws_writes_total");
    send_burst(pub, "burst", 40);
    expect_burst(sub, 40);
    double writes = h_metric(http, "arqonbus_ws_writes_total") - before;
    fprintf(stderr, "40 messages (~9 KB) in one send: %.0f write(s) to the subscriber\n", writes);
    assert_true(writes == 1);

    bc_expect_nothing(sub);
    bc_free(pub);
    bc_free(sub);
    assert_int_equal(h_stop(f), 0);
}

static void test_thousand_clients_in_hundred_rooms_get_exactly_their_messages(void **state)
{
    struct fixture *f = *state;
    enum { ROOMS = 100, PER_ROOM = 10, N = ROOMS * PER_ROOM };
    ws_raise_fd_limit(N + 200);
    int port = start(f, NULL, NULL);
    struct bus_client **c = calloc(N, sizeof *c);
    for (int i = 0; i < N; i++) {
        c[i] = bc_connect(port, "/?ack=0");
        char room[16];
        snprintf(room, sizeof room, "room%d", i % ROOMS);
        bc_join(c[i], room, "main");
    }
    /* The first member of each room publishes one message naming its room. */
    for (int r = 0; r < ROOMS; r++) {
        char room[16];
        snprintf(room, sizeof room, "room%d", r);
        bc_send(c[r], "{s:s, s:s, s:s, s:{s:s}}", "type", "message", "room", room, "channel",
                "main", "payload", "room", room);
    }
    /* Every other member receives exactly the one message of its room. */
    int *got = calloc(N, sizeof *got);
    int pending = N - ROOMS;
    struct pollfd *pfd = calloc(N, sizeof *pfd);
    for (int waited = 0; pending > 0 && waited < h_ms(20000); waited += 50) {
        for (int i = 0; i < N; i++) {
            char *data;
            size_t len;
            while (ws_poll_message(c[i]->ws, &data, &len) == WS_OP_TEXT) {
                json_t *m = json_loadb(data, len, 0, NULL);
                char want[16];
                snprintf(want, sizeof want, "room%d", i % ROOMS);
                assert_string_equal(bc_str(json_object_get(m, "payload"), "room"), want);
                assert_true(i >= ROOMS); /* senders get nothing back */
                if (got[i]++ == 0)
                    pending--;
                json_decref(m);
                free(data);
            }
            pfd[i] = (struct pollfd){.fd = ws_fd(c[i]->ws), .events = POLLIN};
        }
        if (pending > 0)
            poll(pfd, N, 50);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(got[i], i < ROOMS ? 0 : 1);
    for (int i = 0; i < N; i++)
        bc_free(c[i]);
    free(c);
    free(got);
    free(pfd);
    assert_int_equal(h_stop(f), 0);
}

static void test_clients_and_memberships_survive_a_reload(void **state)
{
    struct fixture *f = *state;
    const char *events = h_events_probe(f);
    int port = start(f, NULL, NULL);
    struct bus_client *a = bc_connect(port, NULL), *b = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    bc_join(b, "lobby", "general");

    /* A RELOADABLE transport change, and a bus change: both apply in place. */
    write_config(f, "  auto_create: true\n  max_memberships: 500\n",
                 "      max_message_bytes: 2MiB\n");
    assert_int_equal(h_reload(f), 1);
    assert_int_equal(h_wait_jsonl(events, 1, 10000, "{s:s, s:s, s:{s:i, s:i, s:i}}", "event",
                                  "telemetry", "type", "reload_ok", "data", "generation", 2,
                                  "reconfigured", 1, "replaced", 0),
                     0);

    bc_send(a, "{s:s, s:s, s:s, s:s}", "type", "message", "room", "lobby", "channel", "general",
            "payload", "after reload");
    json_t *m = bc_expect(b, "message", 5000);
    assert_string_equal(bc_str(m, "payload"), "after reload");
    assert_string_equal(bc_str(m, "sender"), a->id);
    json_decref(m);
    json_t *r;
    const json_t *d = bc_command_ok(b, &r, "whoami", NULL);
    assert_string_equal(bc_str(d, "client_id"), b->id);
    json_decref(r);
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(f), 0);
}

static void test_port_change_opens_a_new_listener_and_drains_the_old(void **state)
{
    struct fixture *f = *state;
    const char *events = h_events_probe(f);
    int old_port = start(f, NULL, "      retire_timeout: 1500ms\n");
    struct bus_client *old_client = bc_connect(old_port, NULL);
    bc_join(old_client, "lobby", "general");

    /* Move to another free port. */
    h_port_forget(&f->p, "ws");
    int want = h_port(&f->p, "ws");
    h_write(f->dir, "10-ws.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n      retire_timeout: 1500ms\n",
            want);
    assert_int_equal(h_reload(f), 1);
    assert_int_equal(h_wait_jsonl(events, 1, 10000, "{s:s, s:s, s:{s:i, s:i}}", "event",
                                  "telemetry", "type", "reload_ok", "data", "generation", 2,
                                  "replaced", 1),
                     0);
    /* The successor listens on the new port; the old listener is closed, while its client is
     * still served (below). */
    int new_port = h_component_port(&f->p, "ws");
    assert_int_equal(new_port, want);
    assert_int_not_equal(new_port, old_port);
    struct h_listener l;
    assert_int_equal(h_listener(f->p.pid, new_port, &l), 0);
    assert_string_equal(l.addr, "127.0.0.1");
    assert_int_equal(h_wait_no_listener(f->p.pid, old_port, 5000), 0);

    /* Clients of both listeners talk to each other while the old one drains. */
    struct bus_client *new_client = bc_connect(new_port, NULL);
    bc_join(new_client, "lobby", "general");
    bc_send(new_client, "{s:s, s:s, s:s, s:s}", "type", "message", "room", "lobby", "channel",
            "general", "payload", "across");
    json_t *m = bc_expect(old_client, "message", 5000);
    assert_string_equal(bc_str(m, "payload"), "across");
    json_decref(m);

    /* After retire_timeout the old listener's client is asked to reconnect. */
    int op;
    while ((op = ws_recv(old_client->ws, NULL, NULL, h_ms(5000))) == WS_OP_TEXT)
        ;
    assert_int_equal(op, WS_OP_CLOSE);
    assert_int_equal(ws_close_code(old_client->ws), 1001);
    assert_string_equal(ws_close_reason(old_client->ws), "listener retired: reconnect");

    /* The new listener's client is untouched. */
    json_t *r;
    bc_command_ok(new_client, &r, "ping", NULL);
    json_decref(r);
    bc_free(old_client);
    bc_free(new_client);
    assert_int_equal(h_stop(f), 0);
}

static void test_retire_keep_serves_old_clients_until_they_leave(void **state)
{
    struct fixture *f = *state;
    const char *ticks = h_daemon_clock(f);
    int old_port = start(f, NULL, NULL);
    /* Descriptors once started (the clock has the event that follows the notify message, whose
     * socket is closed by then): one transport instance, no client. */
    assert_int_equal(
        h_wait_jsonl(ticks, 1, 10000, "{s:s, s:s}", "event", "telemetry", "type", "system_started"),
        0);
    int fds_alone = h_fd_count(f->p.pid);
    struct bus_client *old_client = bc_connect(old_port, NULL);
    h_port_forget(&f->p, "ws");
    h_write(f->dir, "10-ws.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n      retire: keep\n"
            "      retire_timeout: 100ms\n",
            h_port(&f->p, "ws"));
    assert_int_equal(h_reload(f), 1);
    assert_int_equal(h_wait_jsonl(ticks, 1, 10000, "{s:s, s:s, s:{s:i, s:i}}", "event", "telemetry",
                                  "type", "reload_ok", "data", "generation", 2, "replaced", 1),
                     0);
    assert_int_equal(h_wait_no_listener(f->p.pid, old_port, 5000), 0);
    h_component_port(&f->p, "ws");
    /* Well past retire_timeout, which `keep` ignores, the old client is still served: the
     * daemon's own clock says when. */
    h_wait_daemon_ms(ticks, 200);
    json_t *r;
    bc_command_ok(old_client, &r, "ping", NULL);
    json_decref(r);
    /* The retired instance is still there: the process holds more than the old client's
     * connection on top of what one instance holds. */
    assert_true(h_fd_count(f->p.pid) > fds_alone + 1);
    /* When it leaves, the old instance goes, and everything it held with it. */
    ws_close(old_client->ws, 1000, NULL);
    int fds = h_fd_count(f->p.pid);
    for (int waited = 0; fds != fds_alone && waited < h_ms(5000); waited += 10) {
        usleep(10 * 1000);
        fds = h_fd_count(f->p.pid);
    }
    assert_int_equal(fds, fds_alone);
    bc_free(old_client);
    assert_int_equal(h_stop(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_welcome_gives_a_client_id_and_the_server, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_channel_message_reaches_exactly_its_members, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_room_message_reaches_every_member_of_the_room_once,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_direct_message_reaches_one_client, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_every_validation_error_keeps_the_connection, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_publishing_needs_membership, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_builtin_commands, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_a_channel_description_has_a_bound, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_help_lists_the_commands_of_every_command_set, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_admin_commands_for_an_admin, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_presence_events_in_the_rooms_configured, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_message_telemetry_when_asked_for, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_channels_are_created_by_joins_unless_auto_create_is_off, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_slow_consumer_is_cut_while_others_keep_receiving,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_thousand_clients_in_hundred_rooms_get_exactly_their_messages, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_burst_is_read_in_one_turn_and_reaches_a_subscriber_in_one_write, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(test_clients_and_memberships_survive_a_reload, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_port_change_opens_a_new_listener_and_drains_the_old,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_retire_keep_serves_old_clients_until_they_leave,
                                        h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
