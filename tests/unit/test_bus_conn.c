/* Connections in process: client ids, acks off by query, bounded outbound queues (1013 for a
 * slow consumer), one shared frame per fan-out, holding routed frames while a join recovers,
 * closing after the reply, and what happens to frames once a connection closes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "bus_fixture.h"

/* --- helpers --------------------------------------------------------------------------------- */

static const char *id_of(const struct fake_client *c)
{
    return conn_svc_client_id(c->conn);
}

/* A message to lobby/general with payload {"n":n,"pad":"<pad bytes>"} and id
 * arq_1700000000000_<n>_000000. */
static void publish(struct fake_client *c, int n, size_t pad)
{
    static char text[4096];
    assert_true(pad < sizeof text);
    memset(text, 'x', pad);
    text[pad] = '\0';
    fx_sendf(c,
             "{\"id\":\"arq_1700000000000_%d_000000\",\"type\":\"message\",\"room\":\"lobby\","
             "\"channel\":\"general\",\"payload\":{\"n\":%d,\"pad\":\"%s\"}}",
             n, n, text);
}

static json_int_t acked(struct fake_client *c)
{
    json_t *ack = fx_next(c);
    assert_non_null(ack);
    assert_string_equal(fx_str(ack, "type"), "message_response");
    return json_integer_value(fx_get(ack, "payload.delivered"));
}

/* The next frame is the message {"n":n,...}. */
static void got(struct fake_client *c, int n)
{
    json_t *m = fx_next(c);
    assert_non_null(m);
    assert_string_equal(fx_str(m, "type"), "message");
    assert_int_equal(json_integer_value(fx_get(m, "payload.n")), n);
}

static json_int_t queue_limit(struct bus_fx *f, struct fake_client *c)
{
    const char *code;
    struct arq_error err = {""};
    json_t *me = bus_svc_query(&f->transport->ctx, c->conn, "client", NULL, NULL, &code, &err);
    assert_null(code);
    json_int_t n = json_integer_value(fx_get(me, "limits.max_queued_bytes"));
    json_decref(me);
    return n;
}

/* The frame behind a reference the bus handed to the transport. */
static const struct frame *frame_of(const struct arq_frame_ref *ref)
{
    return (const struct frame *)(ref->data - ARQ_FRAME_HEADROOM - offsetof(struct frame, mem));
}

/* --- ids and acks ------------------------------------------------------------------------- */

static void client_ids_are_unique_and_well_formed(void **state)
{
    struct bus_fx *f = *state;
    enum { N = 48 };
    struct fake_client *c[N];
    for (int i = 0; i < N; i++) {
        c[i] = fx_connect(f, NULL);
        const char *id = id_of(c[i]);
        assert_int_equal(strlen(id), strlen("arq_client_") + 32);
        assert_memory_equal(id, "arq_client_", 11);
        for (const char *p = id + 11; *p; p++)
            assert_non_null(strchr("0123456789abcdef", *p));
        assert_ptr_equal(conn_find(&f->bus, id), c[i]->conn);
        json_t *w = fx_next(c[i]);
        assert_string_equal(fx_str(w, "payload.client_id"), id);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(id_of(c[j]), id);
    }
    char gone[48];
    snprintf(gone, sizeof gone, "%s", id_of(c[0]));
    fx_disconnect(c[0], 1000);
    assert_null(conn_find(&f->bus, gone));
}

static void ack_0_in_the_query_turns_acks_off(void **state)
{
    struct bus_fx *f = *state;
    static const struct {
        const char *query;
        int acks;
    } cases[] = {{NULL, 1},         {"", 1},          {"ack=0", 0},        {"ack=false", 0},
                 {"x=1&ack=no", 0}, {"ack=off&y", 0}, {"ack=1", 1},        {"ack=", 1},
                 {"ack=0x", 1},     {"back=0", 1},    {"ack=true&x=0", 1}, {"a=ack=0", 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct arq_conn_info info = {.struct_size = sizeof info,
                                     .transport = "websocket",
                                     .peer_addr = "127.0.0.1",
                                     .peer_port = 50000 + (int)i,
                                     .path = "/",
                                     .query = cases[i].query};
        struct fake_client *c = fx_connect(f, &info);
        assert_non_null(c->conn);
        assert_non_null(fx_next(c)); /* welcome */
        fx_join(c, "lobby", "general");
        publish(c, (int)i + 1, 0);
        /* A later frame's error marks the end of what the message caused. */
        fx_send(c, "{\"type\":\"message\"}");
        json_t *next = fx_next(c);
        assert_non_null(next);
        if (strcmp(fx_str(next, "type"), cases[i].acks ? "message_response" : "error"))
            fail_msg("query \"%s\": got a %s first", cases[i].query ? cases[i].query : "(none)",
                     fx_str(next, "type"));
        fx_disconnect(c, 1000);
    }
}

/* --- the queue bound ---------------------------------------------------------------------- */

static void a_client_past_its_queue_bound_is_closed_with_1013_and_its_frames_counted(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_queued_bytes: 4096");
    struct fake_client *pub = fx_client(f), *fast = fx_client(f), *slow = fx_client(f);
    fx_join(pub, "lobby", "general");
    fx_join(fast, "lobby", "general");
    fx_join(slow, "lobby", "general");
    slow->hold_writes = 1;
    size_t held = 0;
    int n = 0;
    while (!slow->closed) {
        assert_true(n < 10);
        held = slow->conn->qlen;
        publish(pub, ++n, 1000);
        assert_int_equal(acked(pub), slow->closed ? 1 : 2); /* the slow one is not counted */
        got(fast, n);
    }
    assert_true(held >= 3); /* 4096 bytes hold three messages of ~1100 */
    assert_int_equal(slow->close_code, 1013);
    assert_string_equal(slow->close_reason, "Client too slow: outbound queue over its limit");
    assert_int_equal(fx_metric(f, "arqonbus_slow_consumer_disconnects_total"), 1);
    assert_int_equal(fx_metric(f, "arqonbus_messages_dropped_total{reason=\"slow_consumer\"}"),
                     held);
    assert_int_equal(slow->conn->qlen, 0);
    assert_int_equal(slow->conn->queued_bytes, 0);

    /* Closing: nothing more is queued to it, nor counted twice; the others go on. */
    publish(pub, ++n, 1000);
    assert_int_equal(acked(pub), 1);
    got(fast, n);
    assert_int_equal(slow->conn->qlen, 0);
    assert_int_equal(fx_metric(f, "arqonbus_slow_consumer_disconnects_total"), 1);
    fx_disconnect(slow, 1013);
    assert_int_equal(fx_metric(f, "arqonbus_messages_dropped_total{reason=\"disconnected\"}"), 0);
    assert_int_equal(fx_metric(f, "arqonbus_messages_dropped_total{reason=\"slow_consumer\"}"),
                     held);
}

static void the_bound_is_the_transports_or_conn_set_limits_else_the_buses(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_queued_bytes: 4096");
    struct arq_conn_info info = {.struct_size = sizeof info,
                                 .transport = "websocket",
                                 .peer_addr = "127.0.0.1",
                                 .peer_port = 50000,
                                 .path = "/",
                                 .max_queued_bytes = 65536};
    struct fake_client *pub = fx_client(f), *big = fx_connect(f, &info), *other = fx_client(f);
    assert_non_null(fx_next(big));
    fx_join(pub, "lobby", "general");
    fx_join(big, "lobby", "general");
    assert_int_equal(queue_limit(f, big), 65536);
    assert_int_equal(queue_limit(f, other), 4096);
    big->hold_writes = 1;
    for (int n = 1; n <= 8; n++) {
        publish(pub, n, 1000);
        assert_int_equal(acked(pub), 1);
    }
    assert_int_equal(big->closed, 0);
    assert_true(big->conn->queued_bytes > 8000);

    /* Raised further, then back to the bus's own bound (0), under which it is too slow. */
    conn_svc_set_limit(big->conn, 100000);
    assert_int_equal(queue_limit(f, big), 100000);
    conn_svc_set_limit(big->conn, 0);
    assert_int_equal(queue_limit(f, big), 4096);
    assert_int_equal(big->closed, 0);
    publish(pub, 9, 10);
    assert_int_equal(acked(pub), 0);
    assert_int_equal(big->close_code, 1013);
    /* Lowered on a connection that keeps up: it stays. */
    fx_join(other, "lobby", "general");
    conn_svc_set_limit(other->conn, 4096);
    publish(pub, 10, 1000);
    assert_int_equal(acked(pub), 1);
    got(other, 10);
    assert_int_equal(other->closed, 0);
}

/* --- shared frames ------------------------------------------------------------------------ */

static void a_fanout_frame_is_one_allocation_shared_by_every_recipient(void **state)
{
    struct bus_fx *f = *state;
    enum { N = 3 };
    struct fake_client *pub = fx_client(f), *c[N];
    fx_join(pub, "lobby", "general");
    for (int i = 0; i < N; i++) {
        c[i] = fx_client(f);
        fx_join(c[i], "lobby", i ? "general" : NULL); /* c[0] in the room, the others the channel */
        c[i]->hold_writes = 1;
    }
    for (int room_wide = 0; room_wide < 2; room_wide++) {
        if (room_wide)
            fx_sendf(pub, "{\"type\":\"message\",\"room\":\"lobby\",\"payload\":{\"n\":2}}");
        else
            publish(pub, 1, 10);
        struct arq_frame_ref first = {0};
        for (int i = room_wide ? 0 : 1; i < N; i++) {
            struct arq_frame_ref refs[4];
            assert_int_equal(conn_svc_pending(c[i]->conn, refs, 4), 1);
            assert_true(refs[0].headroom >= ARQ_FRAME_HEADROOM);
            if (!first.data)
                first = refs[0];
            assert_ptr_equal(refs[0].data, first.data);
            assert_int_equal(refs[0].len, first.len);
            /* one reference per queue holding it, none left elsewhere */
            assert_int_equal(frame_of(&refs[0])->refs, room_wide ? N : N - 1);
        }
        for (int i = 0; i < N; i++) {
            c[i]->hold_writes = 0;
            if (room_wide || i)
                got(c[i], room_wide ? 2 : 1);
            assert_int_equal(fx_unread(c[i]), 0);
            assert_int_equal(c[i]->conn->queued_bytes, 0);
            c[i]->hold_writes = 1;
        }
    }
}

/* --- holding routed frames ---------------------------------------------------------------- */

static void while_paused_the_servers_frames_overtake_the_held_messages(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *pub = fx_client(f), *c = fx_client(f);
    fx_join(pub, "lobby", "general");
    fx_join(c, "lobby", "general");
    conn_pause(c->conn);
    c->want_write = 0;
    publish(pub, 1, 10);
    publish(pub, 2, 10);
    publish(pub, 3, 10);
    assert_int_equal(acked(pub), 1);
    assert_int_equal(c->want_write, 0); /* held: nothing to write */
    assert_int_equal(fx_unread(c), 0);

    bus_send_error(&f->bus, c->conn, "EXECUTION_ERROR", "first", NULL, NULL);
    assert_int_equal(c->want_write, 1);
    assert_string_equal(fx_str(fx_next(c), "error"), "first");
    assert_int_equal(fx_unread(c), 0);
    c->hold_writes = 1;
    bus_send_error(&f->bus, c->conn, "EXECUTION_ERROR", "second", NULL, NULL);

    /* The recovery delivered message 2 already: it is not sent again. */
    size_t bytes = c->conn->queued_bytes;
    conn_drop_message(c->conn, "arq_1700000000000_2_000000");
    assert_int_equal(c->conn->qlen, 3);
    assert_true(c->conn->queued_bytes < bytes);
    c->hold_writes = 0;
    assert_string_equal(fx_str(fx_next(c), "error"), "second");
    assert_int_equal(fx_unread(c), 0); /* still held */

    /* Resumed: the transport is asked to write what was held, before what comes next. */
    c->want_write = 0;
    conn_resume(c->conn);
    assert_int_equal(c->want_write, 1);
    bus_send_error(&f->bus, c->conn, "EXECUTION_ERROR", "after", NULL, NULL);
    got(c, 1);
    got(c, 3);
    assert_string_equal(fx_str(fx_next(c), "error"), "after");
    assert_int_equal(fx_unread(c), 0);
    assert_int_equal(c->conn->queued_bytes, 0);
}

/* Two joins with recovery at once: the held messages wait for both. Were the second pause to
 * move the mark, what the first one holds would go out before the first join's answer, and
 * then again in its history. */
static void pauses_nest_and_the_last_resume_releases(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *pub = fx_client(f), *c = fx_client(f);
    fx_join(pub, "lobby", "general");
    fx_join(c, "lobby", "general");
    conn_pause(c->conn); /* the first join's recovery */
    publish(pub, 1, 10);
    conn_pause(c->conn); /* the second join's recovery */
    publish(pub, 2, 10);
    bus_send_error(&f->bus, c->conn, "EXECUTION_ERROR", "first answered", NULL, NULL);
    conn_resume(c->conn);
    assert_string_equal(fx_str(fx_next(c), "error"), "first answered");
    assert_int_equal(fx_unread(c), 0); /* 1 and 2 still held for the second */
    bus_send_error(&f->bus, c->conn, "EXECUTION_ERROR", "second answered", NULL, NULL);
    conn_resume(c->conn);
    assert_string_equal(fx_str(fx_next(c), "error"), "second answered");
    got(c, 1);
    got(c, 2);
    assert_int_equal(fx_unread(c), 0);
}

/* A join with recovery holds the client's routed messages (conn_pause) while the history is
 * read. A client cut meanwhile (gone, or too slow) must not have frames it no longer holds
 * handed out again when the recovery finishes. */
static void a_connection_closed_while_paused_keeps_no_stale_frames(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_queued_bytes: 4096");
    struct fake_client *pub = fx_client(f), *gone = fx_client(f), *slow = fx_client(f);
    fx_join(pub, "lobby", "general");
    fx_join(gone, "lobby", "general");
    fx_join(slow, "lobby", "general");
    gone->hold_writes = slow->hold_writes = 1;
    bus_send_error(&f->bus, gone->conn, "EXECUTION_ERROR", "queued", NULL, NULL);
    bus_send_error(&f->bus, slow->conn, "EXECUTION_ERROR", "queued", NULL, NULL);
    arq_conn *g = gone->conn, *s = slow->conn;
    conn_ref(g); /* as the recovery does */
    conn_ref(s);
    conn_pause(g);
    conn_pause(s);
    publish(pub, 1, 1500);
    publish(pub, 2, 1500);
    assert_int_equal(acked(pub), 2);
    assert_int_equal(acked(pub), 2);

    fx_disconnect(gone, 1001);
    assert_int_equal(fx_metric(f, "arqonbus_messages_dropped_total{reason=\"disconnected\"}"), 3);
    publish(pub, 3, 1500); /* past the bound of the slow one */
    assert_int_equal(acked(pub), 0);
    assert_int_equal(slow->close_code, 1013);

    struct arq_frame_ref refs[8];
    for (int i = 0; i < 2; i++) {
        arq_conn *c = i ? s : g;
        assert_int_equal(conn_svc_pending(c, refs, 8), 0);
        conn_drop_message(c, "arq_1700000000000_1_000000"); /* the recovery's answer */
        assert_int_equal(c->qlen, 0);
        assert_int_equal(conn_svc_pending(c, refs, 8), 0);
        conn_resume(c);
        assert_int_equal(conn_svc_pending(c, refs, 8), 0);
    }
    conn_unref(g); /* the last reference: frees it, and nothing twice */
    fx_disconnect(slow, 1013);
    conn_unref(s);
    assert_int_equal(fx_metric(f, "arqonbus_messages_dropped_total{reason=\"disconnected\"}"), 3);
}

/* The same through the bus: a storage whose history read is answered by hand, and a command
 * that joins with recovery as join_channel does. */
struct slow_store {
    arq_history_cb cb;
    void *arg;
    uint64_t offset;
};

static int slow_store_append(void *self, const struct arq_stored *msg, arq_append_cb cb, void *arg)
{
    (void)msg;
    struct slow_store *st = self;
    if (cb)
        cb(arg, ARQ_OK, ++st->offset, "e1");
    return ARQ_OK;
}

static int slow_store_query(void *self, const struct arq_history_query *q, arq_history_cb cb,
                            void *arg)
{
    (void)q;
    struct slow_store *st = self;
    st->cb = cb;
    st->arg = arg;
    return ARQ_OK;
}

static const struct arq_storage_ops slow_store_ops = {
    .struct_size = sizeof slow_store_ops, .append = slow_store_append, .query = slow_store_query};

static struct arq_ctx *rejoin_ctx;

static void rejoin(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    (void)self;
    storage_svc_history(rejoin_ctx, req, conn, args, 1);
}

static const struct arq_option rejoin_params[] = {
    ARQ_OPT("room", ARQ_OPT_STRING, NULL, ARQ_OPT_REQUIRED, "room"),
    ARQ_OPT("channel", ARQ_OPT_STRING, NULL, 0, "channel"),
    ARQ_OPT("since_offset", ARQ_OPT_INT, NULL, 0, "offset"), ARQ_OPT_END};
static const struct arq_command rejoin_commands[] = {{.name = "rejoin",
                                                      .summary = "join with recovery",
                                                      .params = rejoin_params,
                                                      .role = "guest",
                                                      .handler = rejoin},
                                                     {0}};
static const struct arq_commands_ops rejoin_ops = {.struct_size = sizeof rejoin_ops,
                                                   .commands = rejoin_commands};

/* The transport still asks for the frames queued before a close (they go out ahead of the
 * close frame); for a client cut as too slow while its join recovers, there are none. */
static void a_slow_client_cut_during_its_joins_recovery_is_handed_no_freed_frame(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_queued_bytes: 4096");
    struct slow_store st = {0};
    fx_instance(f, "store", ARQ_KIND_STORAGE, &slow_store_ops, &st);
    rejoin_ctx = fx_instance(f, "rejoin", ARQ_KIND_COMMANDS, &rejoin_ops, NULL);
    struct fake_client *pub = fx_client(f), *c = fx_connect(f, NULL);
    fx_join(pub, "lobby", "general");
    c->hold_writes = 1; /* its welcome is still queued when it joins */
    fx_send(c, "{\"type\":\"command\",\"command\":\"rejoin\",\"args\":{\"room\":\"lobby\","
               "\"channel\":\"general\",\"since_offset\":0}}");
    assert_non_null(st.cb);
    assert_int_equal(c->conn->paused, 1);
    for (int n = 1; !c->closed; n++) {
        assert_true(n < 10);
        publish(pub, n, 1500);
        assert_int_equal(acked(pub), c->closed ? 0 : 1);
    }
    assert_int_equal(c->close_code, 1013);
    struct arq_frame_ref refs[8];
    assert_int_equal(conn_svc_pending(c->conn, refs, 8), 0);

    static const char json[] = "{\"type\":\"message\",\"id\":\"arq_1700000000000_1_000000\"}";
    const struct arq_stored m1 = {.struct_size = sizeof m1,
                                  .room = "lobby",
                                  .channel = "general",
                                  .id = "arq_1700000000000_1_000000",
                                  .json = json,
                                  .json_len = sizeof json - 1,
                                  .offset = 1};
    const struct arq_stored *entries[] = {&m1};
    st.cb(st.arg, ARQ_OK, entries, 1, "e1", 1);
    assert_int_equal(c->conn->paused, 0);
    assert_int_equal(c->conn->qlen, 0);
    assert_int_equal(conn_svc_pending(c->conn, refs, 8), 0);
    fx_disconnect(c, 1013);
    assert_int_equal(fx_metric(f, "arqonbus_messages_dropped_total{reason=\"disconnected\"}"), 0);
}

/* --- closing ------------------------------------------------------------------------------ */

struct probe {
    int closed_in_handler; /* the transport had been asked to close while the handler ran */
    struct fake_client *client;
};

static void bye(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    (void)args;
    struct probe *p = self;
    conn_close_after_reply(conn, 1008, "Policy violation");
    conn_close_after_reply(conn, 1011, "second"); /* the first one stands */
    p->closed_in_handler = p->client->closed;
    commands_svc_reply_error(req, "RATE_LIMITED", "Slow down");
}

static const struct arq_command probe_commands[] = {
    {.name = "bye", .summary = "close after the reply", .role = "guest", .handler = bye}, {0}};
static const struct arq_commands_ops probe_ops = {.struct_size = sizeof probe_ops,
                                                  .commands = probe_commands};

static void close_after_reply_closes_once_the_frame_is_answered(void **state)
{
    struct bus_fx *f = *state;
    struct probe p = {0};
    fx_instance(f, "probe", ARQ_KIND_COMMANDS, &probe_ops, &p);
    struct fake_client *c = fx_client(f);
    p.client = c;
    fx_send(c, "{\"id\":\"arq_1700000000000_9_000000\",\"type\":\"command\",\"command\":\"bye\"}");
    assert_int_equal(p.closed_in_handler, 0);
    assert_int_equal(c->closed, 1);
    assert_int_equal(c->close_code, 1008);
    assert_string_equal(c->close_reason, "Policy violation");
    /* The answer was queued before the close, so it still goes out. */
    json_t *r = fx_next(c);
    assert_non_null(r);
    assert_string_equal(fx_str(r, "type"), "response");
    assert_string_equal(fx_str(r, "request_id"), "arq_1700000000000_9_000000");
    assert_string_equal(fx_str(r, "error_code"), "RATE_LIMITED");
    assert_int_equal(fx_unread(c), 0);
    /* Closing: what it sends now is not handled. */
    fx_send(c, "{\"type\":\"command\",\"command\":\"bye\"}");
    assert_int_equal(fx_unread(c), 0);

    /* Outside the handling of a frame it closes at once. */
    struct fake_client *d = fx_client(f);
    conn_close_after_reply(d->conn, 1008, "now");
    assert_int_equal(d->closed, 1);
    assert_string_equal(d->close_reason, "now");
}

static void frames_for_a_closed_connection_are_dropped_and_counted(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *pub = fx_client(f), *c = fx_client(f);
    fx_join(pub, "lobby", "general");
    fx_join(c, "lobby", "general");
    c->hold_writes = 1;
    publish(pub, 1, 10);
    publish(pub, 2, 10);
    assert_int_equal(acked(pub), 1);
    assert_int_equal(acked(pub), 1);
    bus_send_error(&f->bus, c->conn, "EXECUTION_ERROR", "x", NULL, NULL);
    assert_int_equal(fx_metric(f, "arqonbus_connections{transport=\"ws\"}"), 2);

    /* A request still holds the connection when the transport reports its end. */
    arq_conn *conn = c->conn;
    conn_ref(conn);
    char id[48];
    snprintf(id, sizeof id, "%s", id_of(c));
    fx_disconnect(c, 1006);
    assert_int_equal(fx_metric(f, "arqonbus_messages_dropped_total{reason=\"disconnected\"}"), 3);
    assert_int_equal(fx_metric(f, "arqonbus_connections{transport=\"ws\"}"), 1);
    assert_int_equal(fx_metric(f, "arqonbus_connections_closed_total{transport=\"ws\"}"), 1);
    assert_null(conn_find(&f->bus, id));
    assert_int_equal(conn->nmemberships, 0);

    /* The tombstone takes nothing more, and says so. */
    json_t *frame = json_pack("{s:s}", "type", "message");
    assert_int_equal(conn_send_json(conn, frame), -1);
    json_decref(frame);
    assert_int_equal(conn->qlen, 0);
    double received = fx_metric(f, "arqonbus_messages_received_total");
    conn_svc_recv(conn, "{\"type\":\"message\"}", 18, 0);
    assert_int_equal(fx_metric(f, "arqonbus_messages_received_total"), received);
    conn_svc_closed(conn, 1006, "again"); /* reported twice: once counts */
    assert_int_equal(fx_metric(f, "arqonbus_connections_closed_total{transport=\"ws\"}"), 1);
    publish(pub, 3, 10);
    assert_int_equal(acked(pub), 0);
    conn_unref(conn);
}

#define T(name) cmocka_unit_test_setup_teardown(name, bus_fx_setup, bus_fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(client_ids_are_unique_and_well_formed),
        T(ack_0_in_the_query_turns_acks_off),
        T(a_client_past_its_queue_bound_is_closed_with_1013_and_its_frames_counted),
        T(the_bound_is_the_transports_or_conn_set_limits_else_the_buses),
        T(a_fanout_frame_is_one_allocation_shared_by_every_recipient),
        T(while_paused_the_servers_frames_overtake_the_held_messages),
        T(pauses_nest_and_the_last_resume_releases),
        T(a_connection_closed_while_paused_keeps_no_stale_frames),
        T(a_slow_client_cut_during_its_joins_recovery_is_handed_no_freed_frame),
        T(close_after_reply_closes_once_the_frame_is_answered),
        T(frames_for_a_closed_connection_are_dropped_and_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
