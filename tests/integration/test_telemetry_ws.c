/* The telemetry WebSocket (telemetry-websocket) against a real arqonbusd with the WebSocket
 * transport and the built-in commands: the greeting, a bus client's session as events in
 * telemetry_batch frames, batch_size and flush_interval, subscribe filters, ping, errors, a
 * telemetry client that stops reading (dropped with 1013 while the bus carries on),
 * max_clients, and the close at shutdown. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "bus_client.h"
#include "http_client.h"
#include "prom_parse.h"
#include "scrape.h"

/* The telemetry instance on 127.0.0.1:port, with `extra` lines under its config. */
static void write_telemetry(const struct fixture *f, int port, const char *extra)
{
    h_write(f->dir, "50-telemetry.yaml",
            "plugins:\n  telemetry:\n    module: telemetry-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n%s",
            port, extra ? extra : "");
}

/* conf.d: the WebSocket transport and the telemetry listener on free ports (h_port), the
 * built-in commands; `tel_extra` lines go under the telemetry instance's config. */
static void start(struct fixture *f, const char *tel_extra)
{
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\nbus:\n  auto_create: true\n",
            ARQ_BUILD_PLUGIN_DIR);
    h_write(f->dir, "10-ws.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n",
            h_port(&f->p, "ws"));
    h_write(f->dir, "20-commands.yaml", "plugins:\n  builtin:\n    module: commands-builtin\n");
    write_telemetry(f, h_port(&f->p, "telemetry"), tel_extra);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
}

/* --- a telemetry client ---------------------------------------------------------------------- */

struct tel {
    struct ws_client *ws;
    json_t *batch; /* events of the last batch not taken yet */
    size_t next;
    int frames; /* telemetry_batch frames received */
};

static json_t *tel_frame(struct tel *t, int timeout_ms)
{
    for (;;) {
        char *data = NULL;
        size_t len = 0;
        int op = ws_recv(t->ws, &data, &len, timeout_ms);
        if (op == WS_OP_TEXT) {
            json_t *o = json_loadb(data, len, 0, NULL);
            if (!o)
                fail_msg("telemetry sent invalid JSON: %s", data);
            free(data);
            return o;
        }
        free(data);
        if (op != WS_OP_PONG)
            return NULL;
    }
}

/* Connect and read the greeting; NULL when the upgrade is refused (err says why). */
static struct tel *tel_try_connect(int port, char *err, size_t errsz)
{
    struct ws_client *ws = ws_connect("127.0.0.1", port, "/", h_ms(5000), err, errsz);
    if (!ws)
        return NULL;
    struct tel *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->ws = ws;
    json_t *hello = tel_frame(t, h_ms(5000));
    assert_non_null(hello);
    assert_string_equal(bc_str(hello, "event_type"), "telemetry_connected");
    assert_true(strlen(bc_str(hello, "timestamp")) > 20); /* RFC 3339 */
    assert_true(strlen(bc_str(hello, "node")) > 0);
    json_decref(hello);
    return t;
}

static struct tel *tel_connect(int port)
{
    char err[256];
    struct tel *t = tel_try_connect(port, err, sizeof err);
    if (!t)
        fail_msg("telemetry connect: %s (HTTP %d)", err, ws_last_http_status());
    return t;
}

static void tel_free(struct tel *t)
{
    if (!t)
        return;
    json_decref(t->batch);
    ws_free(t->ws);
    free(t);
}

static void tel_send(struct tel *t, const char *text)
{
    assert_int_equal(ws_send_text(t->ws, text, strlen(text)), 0);
}

/* The next event (a new reference), or NULL when none comes within timeout_ms. Every frame in
 * between must be a telemetry_batch. */
static json_t *tel_event(struct tel *t, int timeout_ms)
{
    while (!t->batch || t->next == json_array_size(t->batch)) {
        json_t *o = tel_frame(t, timeout_ms);
        if (!o)
            return NULL;
        if (strcmp(bc_str(o, "type"), "telemetry_batch") != 0) {
            char *text = json_dumps(o, JSON_COMPACT);
            fail_msg("expected a telemetry_batch, got %s", text);
        }
        json_decref(t->batch);
        t->batch = json_incref(json_object_get(o, "events"));
        t->next = 0;
        t->frames++;
        assert_true(json_array_size(t->batch) > 0);
        json_decref(o);
    }
    return json_incref(json_array_get(t->batch, t->next++));
}

/* The next event about `client_id` (others are skipped); asserts it comes. */
static json_t *tel_event_of(struct tel *t, const char *client_id)
{
    for (;;) {
        json_t *e = tel_event(t, h_ms(5000));
        if (!e)
            fail_msg("no more telemetry about %s", client_id);
        if (!strcmp(bc_str(e, "client_id"), client_id))
            return e;
        json_decref(e);
    }
}

/* The next non-batch frame (a reply), after the events before it, which are counted into
 * *events_before when not NULL. */
static json_t *tel_reply(struct tel *t, size_t *events_before)
{
    if (events_before)
        *events_before = t->batch ? json_array_size(t->batch) - t->next : 0;
    json_decref(t->batch);
    t->batch = NULL;
    for (;;) {
        json_t *o = tel_frame(t, h_ms(5000));
        if (!o)
            fail_msg("no reply from the telemetry listener (%s)", ws_error(t->ws));
        if (strcmp(bc_str(o, "type"), "telemetry_batch") != 0)
            return o;
        if (events_before)
            *events_before += json_array_size(json_object_get(o, "events"));
        json_decref(o);
    }
}

static void expect_event(json_t *e_take, const char *type, const char *command)
{
    if (strcmp(bc_str(e_take, "event_type"), type) != 0 ||
        (command && strcmp(bc_str(e_take, "command"), command) != 0)) {
        char *text = json_dumps(e_take, JSON_COMPACT);
        fail_msg("expected %s %s, got %s", type, command ? command : "", text);
    }
    json_decref(e_take);
}

static void run_ok(struct bus_client *c, const char *name, const char *args_fmt, const char *room,
                   const char *channel)
{
    json_t *r;
    bc_command_ok(c, &r, name, args_fmt, "room", room, "channel", channel);
    json_decref(r);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- tests ----------------------------------------------------------------------------------- */

static void test_a_bus_session_arrives_as_events_in_batches(void **state)
{
    struct fixture *f = *state;
    start(f, NULL);
    int bus_port = h_component_port(&f->p, "ws"), tel_port = h_component_port(&f->p, "telemetry");
    struct tel *t = tel_connect(tel_port);

    struct bus_client *c = bc_connect(bus_port, NULL);
    char id[64];
    snprintf(id, sizeof id, "%s", c->id);
    run_ok(c, "join_channel", "{s:s, s:s}", "lobby", "general");
    json_t *r;
    bc_command_ok(c, &r, "ping", NULL);
    json_decref(r);
    r = bc_command(c, "leave_channel", "{s:s, s:s}", "room", "attic", "channel", "none");
    assert_string_equal(bc_str(r, "status"), "error");
    json_decref(r);
    bc_free(c);

    json_t *e = tel_event_of(t, id);
    assert_string_equal(bc_str(e, "event_type"), "client_connected");
    assert_true(strlen(bc_str(e, "timestamp")) > 20);
    assert_true(strlen(bc_str(e, "node")) > 0);
    json_decref(e);
    e = tel_event_of(t, id);
    assert_string_equal(bc_str(e, "event_type"), "client_joined");
    assert_string_equal(bc_str(e, "room"), "lobby");
    assert_string_equal(bc_str(e, "channel"), "general");
    json_decref(e);
    expect_event(tel_event_of(t, id), "command_executed", "join_channel");
    expect_event(tel_event_of(t, id), "command_executed", "ping");
    expect_event(tel_event_of(t, id), "command_failed", "leave_channel");
    expect_event(tel_event_of(t, id), "client_disconnected", NULL);
    assert_true(t->frames >= 1);
    tel_free(t);
    assert_int_equal(h_stop(f), 0);
}

static void test_full_batches_go_at_once_and_partial_ones_after_flush_interval(void **state)
{
    struct fixture *f = *state;
    start(f, "      batch_size: 4\n      flush_interval: 2s\n");
    int bus_port = h_component_port(&f->p, "ws");
    struct tel *t = tel_connect(h_component_port(&f->p, "telemetry"));

    /* client_connected, client_joined, command_executed: 3 of 4, the batch waits... */
    struct bus_client *c = bc_connect(bus_port, NULL);
    run_ok(c, "join_channel", "{s:s, s:s}", "lobby", "general");
    /* ...until the 4th event fills it: one frame of four, long before flush_interval. Its
     * first event is the session's first, so the three were held, not sent before it. */
    int64_t t0 = now_ms();
    json_t *r;
    bc_command_ok(c, &r, "ping", NULL);
    json_decref(r);
    json_t *o = tel_frame(t, h_ms(5000));
    assert_non_null(o);
    assert_true(now_ms() - t0 < 1500);
    assert_string_equal(bc_str(o, "type"), "telemetry_batch");
    const json_t *events = json_object_get(o, "events");
    assert_int_equal(json_array_size(events), 4);
    static const char *const held[] = {"client_connected", "client_joined", "command_executed",
                                       "command_executed"};
    for (size_t i = 0; i < 4; i++) {
        const json_t *e = json_array_get(events, i);
        assert_string_equal(bc_str(e, "event_type"), held[i]);
        assert_string_equal(bc_str(e, "client_id"), c->id);
    }
    assert_string_equal(bc_str(json_array_get(events, 3), "command"), "ping");
    json_decref(o);

    /* Two more events, once the timer armed by the first batch has run out: a partial batch,
     * sent flush_interval after the first of them. */
    struct timespec pause = {2, 100000000};
    nanosleep(&pause, NULL);
    run_ok(c, "leave_channel", "{s:s, s:s}", "lobby", "general");
    t0 = now_ms();
    o = tel_frame(t, h_ms(5000));
    assert_non_null(o);
    int64_t waited = now_ms() - t0;
    assert_true(waited >= 1500);
    assert_int_equal(json_array_size(json_object_get(o, "events")), 2);
    json_decref(o);
    bc_free(c);
    tel_free(t);
    assert_int_equal(h_stop(f), 0);
}

static void test_subscribe_limits_the_stream_to_the_types_asked_for(void **state)
{
    struct fixture *f = *state;
    start(f, "      flush_interval: 50ms\n");
    int bus_port = h_component_port(&f->p, "ws"), tel_port = h_component_port(&f->p, "telemetry");
    struct tel *all = tel_connect(tel_port), *some = tel_connect(tel_port);

    tel_send(some, "{\"type\":\"subscribe\",\"events\":[\"client_joined\",\"client_left\","
                   "\"client_joined\"]}");
    size_t before;
    json_t *a = tel_reply(some, &before);
    assert_int_equal(before, 0);
    assert_string_equal(bc_str(a, "type"), "subscribed");
    const json_t *ev = json_object_get(a, "events");
    assert_int_equal(json_array_size(ev), 2);
    assert_string_equal(json_string_value(json_array_get(ev, 0)), "client_joined");
    assert_string_equal(json_string_value(json_array_get(ev, 1)), "client_left");
    json_decref(a);

    struct bus_client *c = bc_connect(bus_port, NULL);
    char id[64];
    snprintf(id, sizeof id, "%s", c->id);
    run_ok(c, "join_channel", "{s:s, s:s}", "lobby", "general");
    run_ok(c, "leave_channel", "{s:s, s:s}", "lobby", "general");
    bc_free(c);
    /* The unfiltered client sees the whole session end... */
    json_t *e;
    while (strcmp(bc_str(e = tel_event_of(all, id), "event_type"), "client_disconnected") != 0)
        json_decref(e);
    json_decref(e);
    /* ...and the filtered one only its two types, before the answer to a new subscribe. */
    expect_event(tel_event(some, h_ms(5000)), "client_joined", NULL);
    expect_event(tel_event(some, h_ms(5000)), "client_left", NULL);
    tel_send(some, "{\"type\":\"subscribe\",\"events\":[]}");
    a = tel_reply(some, &before);
    assert_int_equal(before, 0);
    assert_string_equal(bc_str(a, "type"), "subscribed");
    assert_string_equal(json_string_value(json_array_get(json_object_get(a, "events"), 0)), "*");
    json_decref(a);

    /* [] (or ["*"]) is everything again. */
    c = bc_connect(bus_port, NULL);
    expect_event(tel_event_of(some, c->id), "client_connected", NULL);
    bc_free(c);

    /* A list that is not one is refused, and the filter stays. */
    tel_send(some, "{\"type\":\"subscribe\",\"events\":\"client_joined\"}");
    a = tel_reply(some, NULL);
    assert_string_equal(bc_str(a, "type"), "error");
    json_decref(a);
    tel_send(some, "{\"type\":\"subscribe\",\"events\":[\"client_joined\", 7]}");
    a = tel_reply(some, NULL);
    assert_string_equal(bc_str(a, "type"), "error");
    assert_non_null(strstr(bc_str(a, "error"), "events[1]"));
    json_decref(a);
    tel_free(all);
    tel_free(some);
    assert_int_equal(h_stop(f), 0);
}

static void test_ping_gets_pong_and_anything_else_an_error(void **state)
{
    struct fixture *f = *state;
    start(f, NULL);
    struct tel *t = tel_connect(h_component_port(&f->p, "telemetry"));
    static const char *const bad[] = {
        "{\"type\":\"publish\"}", "{\"events\":[]}", "not json", "[1,2]", "{\"type\":7}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tel_send(t, "{\"type\":\"ping\"}");
        json_t *o = tel_reply(t, NULL);
        assert_string_equal(bc_str(o, "type"), "pong");
        json_decref(o);
        tel_send(t, bad[i]);
        o = tel_reply(t, NULL);
        assert_string_equal(bc_str(o, "type"), "error");
        assert_true(strlen(bc_str(o, "error")) > 0);
        json_decref(o);
    }
    assert_int_equal(ws_send_frame(t->ws, WS_OP_BINARY, 1, "\x01", 1), 0);
    json_t *o = tel_reply(t, NULL);
    assert_string_equal(bc_str(o, "type"), "error");
    json_decref(o);
    /* Fragmented requests are joined. */
    assert_int_equal(ws_send_frame(t->ws, WS_OP_TEXT, 0, "{\"type\":", 8), 0);
    assert_int_equal(ws_send_frame(t->ws, WS_OP_CONT, 1, "\"ping\"}", 7), 0);
    o = tel_reply(t, NULL);
    assert_string_equal(bc_str(o, "type"), "pong");
    json_decref(o);
    tel_free(t);
    assert_int_equal(h_stop(f), 0);
}

/* `pairs` join_channel + leave_channel commands sent back to back, then their responses:
 * four events each, about 1.3 KB of telemetry with names this long. */
static void churn(struct bus_client *c, int pairs, const char *room, const char *channel)
{
    for (int i = 0; i < pairs; i++) {
        bc_send(c, "{s:s, s:s, s:{s:s, s:s}}", "type", "command", "command", "join_channel", "args",
                "room", room, "channel", channel);
        bc_send(c, "{s:s, s:s, s:{s:s, s:s}}", "type", "command", "command", "leave_channel",
                "args", "room", room, "channel", channel);
    }
    for (int i = 0; i < 2 * pairs; i++) {
        json_t *r = bc_expect(c, "response", 10000);
        assert_string_equal(bc_str(r, "status"), "success");
        json_decref(r);
    }
}

static void test_a_telemetry_client_that_stops_reading_is_dropped_with_1013(void **state)
{
    struct fixture *f = *state;
    /* The HTTP API, for the metric that counts the clients dropped. */
    h_write(f->dir, "40-http.yaml",
            "plugins:\n  http:\n    module: transport-http\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n",
            h_port(&f->p, "http"));
    start(f, "      max_queued_bytes: 256KiB\n      batch_size: 20\n      flush_interval: 20ms\n");
    int bus_port = h_component_port(&f->p, "ws"), tel_port = h_component_port(&f->p, "telemetry"),
        http_port = h_component_port(&f->p, "http");
    static const char dropped[] = "arqonbus_telemetry_ws_dropped_clients_total";
    assert_true(h_metric(http_port, dropped) == 0);
    struct tel *reader = tel_connect(tel_port), *stuck = tel_connect(tel_port);

    char room[121], channel[121];
    memset(room, 'r', sizeof room - 1);
    memset(channel, 'c', sizeof channel - 1);
    room[sizeof room - 1] = channel[sizeof channel - 1] = '\0';
    struct bus_client *c = bc_connect(bus_port, NULL);
    size_t events_read = 0;
    int rounds = 0;
    for (; rounds < 400 && h_metric(http_port, dropped) == 0; rounds++) {
        churn(c, 25, room, channel);
        /* The reading client keeps up: it is never dropped. */
        json_t *e;
        while ((e = tel_event(reader, 0))) {
            events_read++;
            json_decref(e);
        }
    }
    for (int64_t t0 = now_ms(); h_metric(http_port, dropped) == 0;)
        if (now_ms() - t0 > h_ms(5000))
            fail_msg("the client that stopped reading was not dropped after %d rounds", rounds);
    assert_true(events_read > 0);

    /* The bus still answers (the stuck reader holds nothing up). */
    json_t *r;
    bc_command_ok(c, &r, "ping", NULL);
    json_decref(r);

    /* What reached the stuck client's socket, then 1013. */
    int op;
    while ((op = ws_recv(stuck->ws, NULL, NULL, h_ms(5000))) == WS_OP_TEXT)
        ;
    assert_int_equal(op, WS_OP_CLOSE);
    assert_int_equal(ws_close_code(stuck->ws), 1013);
    assert_true(h_metric(http_port, dropped) == 1);

    /* The one that read is still served. */
    churn(c, 1, room, channel);
    json_t *e;
    while (strcmp(bc_str(e = tel_event_of(reader, c->id), "command"), "leave_channel") != 0 ||
           strcmp(bc_str(e, "event_type"), "command_executed") != 0)
        json_decref(e);
    json_decref(e);
    bc_free(c);
    tel_free(reader);
    tel_free(stuck);
    assert_int_equal(h_stop(f), 0);
}

static void test_max_clients_refuses_further_upgrades_with_503(void **state)
{
    struct fixture *f = *state;
    start(f, "      max_clients: 2\n");
    int port = h_component_port(&f->p, "telemetry");
    struct tel *a = tel_connect(port), *b = tel_connect(port);
    char err[256];
    assert_null(tel_try_connect(port, err, sizeof err));
    assert_int_equal(ws_last_http_status(), 503);
    assert_non_null(strstr(ws_last_http_body(), "too many telemetry clients"));

    /* A place frees up when a client leaves. */
    assert_int_equal(ws_close(a->ws, WS_CLOSE_NORMAL, NULL), 0);
    tel_free(a);
    struct tel *c = NULL;
    for (int i = 0; i < 100 && !c; i++)
        if (!(c = tel_try_connect(port, err, sizeof err)))
            assert_int_equal(ws_last_http_status(), 503);
    assert_non_null(c);
    tel_free(b);
    tel_free(c);
    assert_int_equal(h_stop(f), 0);
}

static void test_reload_applies_limits_in_place_and_a_new_port_replaces_the_listener(void **state)
{
    struct fixture *f = *state;
    start(f, "      max_clients: 1\n");
    int port = h_component_port(&f->p, "telemetry");
    struct tel *a = tel_connect(port);
    char err[256];
    assert_null(tel_try_connect(port, err, sizeof err));
    assert_int_equal(ws_last_http_status(), 503);

    /* A RELOADABLE change: the client stays, the new limit applies, on the same socket. */
    unsigned long inode = h_listener_inode(f->p.pid, port);
    assert_true(inode != 0);
    write_telemetry(f, port, "      max_clients: 2\n      batch_size: 1\n");
    assert_int_equal(h_reload(f), 1);
    assert_true(h_listener_inode(f->p.pid, port) == inode);
    tel_send(a, "{\"type\":\"ping\"}");
    json_t *o = tel_reply(a, NULL);
    assert_string_equal(bc_str(o, "type"), "pong");
    json_decref(o);
    struct tel *b = tel_connect(port);

    /* Another port: a new listener; the old one's clients are told to go (1001). */
    int moved = h_free_port();
    write_telemetry(f, moved, "      max_clients: 2\n");
    assert_int_equal(h_reload(f), 1);
    assert_true(h_wait_listener(f->p.pid, moved, 0, 5000) != 0);
    struct h_listener l;
    assert_int_equal(h_listener(f->p.pid, moved, &l), 0);
    assert_string_equal(l.addr, "127.0.0.1");
    assert_int_equal(h_wait_no_listener(f->p.pid, port, 5000), 0);
    struct tel *old[] = {a, b};
    for (int i = 0; i < 2; i++) {
        json_t *e;
        while ((e = tel_event(old[i], h_ms(5000))))
            json_decref(e); /* reload_ok may come first */
        assert_int_equal(ws_close_code(old[i]->ws), WS_CLOSE_GOING_AWAY);
        tel_free(old[i]);
    }
    struct tel *c = tel_connect(moved);
    tel_send(c, "{\"type\":\"ping\"}");
    o = tel_reply(c, NULL);
    assert_string_equal(bc_str(o, "type"), "pong");
    json_decref(o);
    tel_free(c);
    assert_int_equal(h_stop(f), 0);
}

static void test_shutdown_sends_system_stopping_then_1001(void **state)
{
    struct fixture *f = *state;
    start(f, "      flush_interval: 10s\n");
    struct tel *t = tel_connect(h_component_port(&f->p, "telemetry"));
    h_kill(&f->p, SIGTERM);
    json_t *e;
    while ((e = tel_event(t, h_ms(5000))) &&
           strcmp(bc_str(e, "event_type"), "system_stopping") != 0)
        json_decref(e);
    assert_non_null(e);
    json_decref(e);
    assert_null(tel_event(t, h_ms(5000)));
    assert_int_equal(ws_close_code(t->ws), WS_CLOSE_GOING_AWAY);
    tel_free(t);
    assert_int_equal(h_wait_exit(&f->p, h_ms(10000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_bus_session_arrives_as_events_in_batches, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(
            test_full_batches_go_at_once_and_partial_ones_after_flush_interval, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_limits_the_stream_to_the_types_asked_for,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_ping_gets_pong_and_anything_else_an_error, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_telemetry_client_that_stops_reading_is_dropped_with_1013, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_max_clients_refuses_further_upgrades_with_503, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(
            test_reload_applies_limits_in_place_and_a_new_port_replaces_the_listener, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_sends_system_stopping_then_1001, h_setup,
                                        h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
