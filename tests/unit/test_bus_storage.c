/* The bus and its storage plugin, in process: appends after live delivery, acks with the
 * stored offset and epoch, the history command and its argument checks, join with recovery
 * (history first, then live, nothing twice), and the storage's health in `status`. The storage
 * is a fake whose appends and history reads the test completes by hand, at once or later. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus_fixture.h"

/* --- a fake storage -------------------------------------------------------------------------- */

#define STORE_MAX 32

struct stored_rec {
    char room[64], channel[64];
    int has_channel;
    char id[64];
    int64_t timestamp_us;
    char *json;
    uint64_t offset;
    size_t watch_qlen; /* frames queued to the watched client when append was called */
    arq_append_cb cb;  /* pending completion (async appends), or NULL */
    void *arg;
};

struct fake_store {
    int async_appends;                /* leave completions to store_complete                */
    int append_rc;                    /* what append returns                                */
    int health;                       /* what health reports                                */
    const char *detail;               /* ... and why                                        */
    const char *epoch;                /* the channel's epoch                                */
    struct fake_client *watch;        /* whose queue append looks at                       */
    struct stored_rec rec[STORE_MAX]; /* every append, in order                             */
    size_t n;
    /* history reads: answered by store_answer */
    int query_rc; /* what query returns                                                    */
    size_t nqueries;
    struct arq_history_query q; /* the last query (strings copied below)                   */
    char q_room[64], q_channel[64], q_epoch[64];
    int q_has_channel, q_has_epoch;
    arq_history_cb qcb; /* pending answer, or NULL                                          */
    void *qarg;
};

static int store__append(void *self, const struct arq_stored *msg, arq_append_cb cb, void *arg)
{
    struct fake_store *s = self;
    assert_true(s->n < STORE_MAX);
    struct stored_rec *r = &s->rec[s->n++];
    snprintf(r->room, sizeof r->room, "%s", msg->room);
    r->has_channel = msg->channel != NULL;
    snprintf(r->channel, sizeof r->channel, "%s", msg->channel ? msg->channel : "");
    snprintf(r->id, sizeof r->id, "%s", msg->id);
    r->timestamp_us = msg->timestamp_us;
    r->json = strndup(msg->json, msg->json_len);
    r->offset = s->n;
    r->watch_qlen = s->watch && s->watch->conn ? s->watch->conn->qlen : 0;
    if (s->append_rc != ARQ_OK)
        return s->append_rc; /* refused: the callback will not come */
    if (s->async_appends) {
        r->cb = cb;
        r->arg = arg;
    } else if (cb) {
        cb(arg, ARQ_OK, r->offset, s->epoch);
    }
    return ARQ_OK;
}

/* Complete the i-th append with `status`. */
static void store_complete(struct fake_store *s, size_t i, int status)
{
    struct stored_rec *r = &s->rec[i];
    assert_non_null(r->cb);
    arq_append_cb cb = r->cb;
    r->cb = NULL;
    if (status == ARQ_OK)
        cb(r->arg, ARQ_OK, r->offset, s->epoch);
    else
        cb(r->arg, status, 0, NULL);
}

static int store__query(void *self, const struct arq_history_query *q, arq_history_cb cb, void *arg)
{
    struct fake_store *s = self;
    s->nqueries++;
    s->q = *q;
    snprintf(s->q_room, sizeof s->q_room, "%s", q->room);
    s->q_has_channel = q->channel != NULL;
    snprintf(s->q_channel, sizeof s->q_channel, "%s", q->channel ? q->channel : "");
    s->q_has_epoch = q->epoch != NULL;
    snprintf(s->q_epoch, sizeof s->q_epoch, "%s", q->epoch ? q->epoch : "");
    if (s->query_rc != ARQ_OK)
        return s->query_rc;
    s->qcb = cb;
    s->qarg = arg;
    return ARQ_OK;
}

/* Answer the pending history read with the first `upto` stored records of its room/channel
 * past since_offset (when recovering), as the backend saw them; status ARQ_OK or an error. */
static void store_answer(struct fake_store *s, size_t upto, int status)
{
    assert_non_null(s->qcb);
    arq_history_cb cb = s->qcb;
    s->qcb = NULL;
    if (status != ARQ_OK) {
        cb(s->qarg, status, NULL, 0, NULL, 0);
        return;
    }
    struct arq_stored entries[STORE_MAX];
    const struct arq_stored *ptrs[STORE_MAX];
    size_t n = 0;
    for (size_t i = 0; i < upto && i < s->n; i++) {
        const struct stored_rec *r = &s->rec[i];
        if (strcmp(r->room, s->q_room) || r->has_channel != s->q_has_channel ||
            strcmp(r->channel, s->q_channel))
            continue;
        if (s->q.recover && r->offset <= s->q.since_offset)
            continue;
        entries[n] = (struct arq_stored){.struct_size = sizeof entries[n],
                                         .room = r->room,
                                         .channel = r->has_channel ? r->channel : NULL,
                                         .id = r->id,
                                         .timestamp_us = r->timestamp_us,
                                         .json = r->json,
                                         .json_len = strlen(r->json),
                                         .offset = r->offset,
                                         .stored_us = 1767225600000000 + (int64_t)i * 1000};
        ptrs[n] = &entries[n];
        n++;
    }
    cb(s->qarg, ARQ_OK, ptrs, n, s->epoch, s->q.recover);
}

static int store__health(void *self, const char **detail)
{
    struct fake_store *s = self;
    *detail = s->detail;
    return s->health;
}

static const struct arq_storage_ops store_ops = {.struct_size = sizeof store_ops,
                                                 .append = store__append,
                                                 .query = store__query,
                                                 .health = store__health};

/* Runs synchronously unless the test says otherwise; epoch "ep-1". */
static struct fake_store *store_new(struct bus_fx *f, struct arq_ctx **ctx)
{
    struct fake_store *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->epoch = "ep-1";
    struct arq_ctx *c = fx_instance(f, "store", ARQ_KIND_STORAGE, &store_ops, s);
    if (ctx)
        *ctx = c;
    return s;
}

static void store_free(struct fake_store *s)
{
    for (size_t i = 0; i < s->n; i++) {
        assert_null(s->rec[i].cb); /* every completion was given */
        free(s->rec[i].json);
    }
    assert_null(s->qcb);
    free(s);
}

/* --- a command set that reaches the storage glue as commands-builtin does ------------------- */

struct fake_cmds {
    struct arq_ctx *ctx;
};

static void cmd__history(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    storage_svc_history(((struct fake_cmds *)self)->ctx, req, conn, args, 0);
}

static void cmd__join_recover(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    storage_svc_history(((struct fake_cmds *)self)->ctx, req, conn, args, 1);
}

static void cmd__ping(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    (void)self;
    (void)conn;
    (void)args;
    commands_svc_reply_ok(req, "pong", NULL);
}

/* Untyped (JSON) so that every check below is the storage glue's own, as for GET /history. */
static const struct arq_option history_params[] = {
    ARQ_OPT("room", ARQ_OPT_JSON, NULL, 0, "room"),
    ARQ_OPT("channel", ARQ_OPT_JSON, NULL, 0, "channel"),
    ARQ_OPT("limit", ARQ_OPT_JSON, NULL, 0, "limit"),
    ARQ_OPT("since", ARQ_OPT_JSON, NULL, 0, "since"),
    ARQ_OPT("until", ARQ_OPT_JSON, NULL, 0, "until"),
    ARQ_OPT("since_offset", ARQ_OPT_JSON, NULL, 0, "since_offset"),
    ARQ_OPT("epoch", ARQ_OPT_JSON, NULL, 0, "epoch"),
    ARQ_OPT_END};

static const struct arq_command commands[] = {
    {"history", "history", history_params, "user", cmd__history},
    {"join_recover", "join with recovery", history_params, "user", cmd__join_recover},
    {"ping", "marker", NULL, "guest", cmd__ping},
    {NULL, NULL, NULL, NULL, NULL}};

static const struct arq_commands_ops cmds_ops = {.struct_size = sizeof cmds_ops,
                                                 .commands = commands};

static struct fake_cmds cmds;

static void cmds_add(struct bus_fx *f)
{
    cmds.ctx = fx_instance(f, "cmds", ARQ_KIND_COMMANDS, &cmds_ops, &cmds);
}

/* --- helpers --------------------------------------------------------------------------------- */

/* A connected client whose welcome was read. */
static struct fake_client *client(struct bus_fx *f, const char *query)
{
    struct arq_conn_info info = {.struct_size = sizeof info,
                                 .transport = "websocket",
                                 .peer_addr = "127.0.0.1",
                                 .peer_port = 41000,
                                 .path = "/",
                                 .query = query};
    struct fake_client *c = fx_connect(f, query ? &info : NULL);
    assert_non_null(c->conn);
    json_t *w = fx_next(c);
    assert_non_null(fx_get(w, "payload.welcome"));
    return c;
}

static void publish(struct fake_client *c, const char *id, int n)
{
    fx_sendf(c,
             "{\"type\":\"message\",\"id\":\"%s\",\"room\":\"lobby\",\"channel\":\"general\","
             "\"payload\":{\"n\":%d}}",
             id, n);
}

/* The response to a command (the next frame: nothing else may come first). */
static json_t *command(struct fake_client *c, const char *name, const char *args)
{
    fx_sendf(c, "{\"type\":\"command\",\"command\":\"%s\",\"args\":%s}", name, args);
    json_t *r = fx_next(c);
    assert_non_null(r);
    assert_string_equal(fx_str(r, "type"), "response");
    assert_string_equal(fx_str(r, "command"), name);
    return r;
}

static void assert_error_response(const json_t *r, const char *code, const char *text)
{
    assert_string_equal(fx_str(r, "status"), "error");
    assert_string_equal(fx_str(r, "error_code"), code);
    if (text)
        assert_string_equal(fx_str(r, "error"), text);
}

/* 2026-01-01T00:00:00Z in microseconds (the fixture's clock). */
#define T0_US 1767225600000000

/* --- appends and acks ---------------------------------------------------------------------- */

static void the_ack_carries_the_appended_offset_and_epoch(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    struct fake_client *a = client(f, NULL), *b = client(f, NULL);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");
    s->watch = b;
    publish(a, "arq_1_1_aaaaaa", 1);
    publish(a, "arq_1_2_aaaaaa", 2);

    /* Stored as the recipients got it, with the envelope's own fields. */
    assert_int_equal(s->n, 2);
    json_t *got = fx_expect(b, "message");
    json_t *stored = json_loads(s->rec[0].json, 0, NULL);
    assert_true(json_equal(got, stored));
    json_decref(stored);
    assert_string_equal(s->rec[0].room, "lobby");
    assert_string_equal(s->rec[0].channel, "general");
    assert_string_equal(s->rec[0].id, "arq_1_1_aaaaaa");
    assert_int_equal(s->rec[0].timestamp_us, T0_US);

    for (int i = 1; i <= 2; i++) {
        json_t *ack = fx_next(a);
        assert_string_equal(fx_str(ack, "type"), "message_response");
        assert_string_equal(fx_str(ack, "status"), "success");
        assert_string_equal(fx_str(ack, "request_id"),
                            i == 1 ? "arq_1_1_aaaaaa" : "arq_1_2_aaaaaa");
        assert_string_equal(fx_str(ack, "version"), "1.0");
        assert_int_equal(json_integer_value(fx_get(ack, "payload.delivered")), 1);
        assert_int_equal(json_integer_value(fx_get(ack, "payload.offset")), i);
        assert_string_equal(fx_str(ack, "payload.epoch"), "ep-1");
    }
    assert_int_equal(fx_unread(a), 0);
    store_free(s);
}

static void a_message_is_delivered_before_it_is_stored_and_acked_once_stored(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    s->async_appends = 1;
    struct fake_client *a = client(f, NULL), *b = client(f, NULL);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");
    s->watch = b;
    publish(a, "arq_1_1_aaaaaa", 1);

    /* When storage was asked, the recipient's copy was already queued ... */
    assert_int_equal(s->n, 1);
    assert_int_equal(s->rec[0].watch_qlen, 1);
    /* ... and it does not wait for storage: delivered, not yet acked. */
    assert_int_equal(json_integer_value(fx_get(fx_expect(b, "message"), "payload.n")), 1);
    assert_int_equal(fx_unread(a), 0);

    store_complete(s, 0, ARQ_OK);
    json_t *ack = fx_next(a);
    assert_string_equal(fx_str(ack, "type"), "message_response");
    assert_int_equal(json_integer_value(fx_get(ack, "payload.offset")), 1);
    assert_string_equal(fx_str(ack, "payload.epoch"), "ep-1");
    assert_int_equal(fx_unread(a), 0);
    store_free(s);
}

static void without_storage_the_ack_has_no_offset_or_epoch(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *a = client(f, NULL), *b = client(f, NULL);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");
    publish(a, "arq_1_1_aaaaaa", 1);
    json_t *ack = fx_next(a);
    assert_string_equal(fx_str(ack, "type"), "message_response");
    assert_string_equal(fx_str(ack, "request_id"), "arq_1_1_aaaaaa");
    assert_int_equal(json_integer_value(fx_get(ack, "payload.delivered")), 1);
    assert_null(fx_get(ack, "payload.offset"));
    assert_null(fx_get(ack, "payload.epoch"));
}

static void ack_off_means_no_ack_but_the_message_is_still_stored(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    cmds_add(f);
    struct fake_client *a = client(f, "ack=0"), *b = client(f, NULL);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");
    publish(a, "arq_1_1_aaaaaa", 1);
    fx_expect(b, "message");
    assert_int_equal(s->n, 1);
    assert_null(s->rec[0].cb);
    /* The marker's response is the next frame: no ack came before it. */
    json_t *r = command(a, "ping", "{}");
    assert_string_equal(fx_str(r, "status"), "success");
    assert_int_equal(fx_unread(a), 0);
    store_free(s);
}

static void a_failed_append_still_acks_the_delivery_without_offset(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    s->async_appends = 1;
    struct fake_client *a = client(f, NULL), *b = client(f, NULL);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");

    /* Failing later: one ack, delivered, no offset. */
    publish(a, "arq_1_1_aaaaaa", 1);
    assert_int_equal(fx_unread(a), 0);
    store_complete(s, 0, ARQ_EIO);
    json_t *ack = fx_next(a);
    assert_string_equal(fx_str(ack, "type"), "message_response");
    assert_string_equal(fx_str(ack, "status"), "success");
    assert_string_equal(fx_str(ack, "request_id"), "arq_1_1_aaaaaa");
    assert_int_equal(json_integer_value(fx_get(ack, "payload.delivered")), 1);
    assert_null(fx_get(ack, "payload.offset"));
    assert_null(fx_get(ack, "payload.epoch"));
    assert_int_equal(fx_unread(a), 0);

    /* Refused at once: the same, exactly once. */
    s->append_rc = ARQ_EAGAIN;
    publish(a, "arq_1_2_aaaaaa", 2);
    ack = fx_next(a);
    assert_string_equal(fx_str(ack, "request_id"), "arq_1_2_aaaaaa");
    assert_int_equal(json_integer_value(fx_get(ack, "payload.delivered")), 1);
    assert_null(fx_get(ack, "payload.offset"));
    assert_int_equal(fx_unread(a), 0);
    assert_int_equal(s->n, 2);
    assert_int_equal(fx_unread(b), 2);
    store_free(s);
}

static void an_append_completing_after_the_client_left_sends_nothing(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    s->async_appends = 1;
    struct fake_client *a = client(f, NULL), *b = client(f, NULL);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");
    publish(a, "arq_1_1_aaaaaa", 1);
    fx_disconnect(a, 1000);
    /* The ack's wait holds the connection: completing it is safe (ASan) and writes nothing. */
    store_complete(s, 0, ARQ_OK);
    assert_int_equal(json_array_size(a->frames), 1); /* the welcome only */
    store_free(s);
}

static void room_messages_are_stored_and_direct_messages_are_not(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    struct fake_client *a = client(f, NULL), *b = client(f, NULL);
    fx_join(a, "lobby", NULL);
    fx_join(b, "lobby", "general");

    fx_send(a, "{\"type\":\"message\",\"id\":\"arq_1_1_aaaaaa\",\"room\":\"lobby\",\"payload\":1}");
    assert_int_equal(s->n, 1);
    assert_string_equal(s->rec[0].room, "lobby");
    assert_false(s->rec[0].has_channel);
    json_t *ack = fx_next(a);
    assert_int_equal(json_integer_value(fx_get(ack, "payload.delivered")), 1);
    assert_int_equal(json_integer_value(fx_get(ack, "payload.offset")), 1);

    /* A direct message, even with room and channel as context, is not stored. */
    fx_sendf(a,
             "{\"type\":\"message\",\"id\":\"arq_1_2_aaaaaa\",\"to_client\":\"%s\","
             "\"room\":\"lobby\",\"channel\":\"general\",\"payload\":2}",
             conn_svc_client_id(b->conn));
    assert_int_equal(s->n, 1);
    ack = fx_next(a);
    assert_string_equal(fx_str(ack, "request_id"), "arq_1_2_aaaaaa");
    assert_int_equal(json_integer_value(fx_get(ack, "payload.delivered")), 1);
    assert_null(fx_get(ack, "payload.offset"));
    assert_null(fx_get(ack, "payload.epoch"));
    assert_int_equal(fx_unread(b), 2);
    store_free(s);
}

static void a_server_side_publish_learns_the_offset_and_epoch(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    s->async_appends = 1;
    struct fake_client *b = client(f, NULL);
    fx_join(b, "lobby", "general");
    json_t *msg =
        json_pack("{s:s, s:s, s:{s:i}}", "room", "lobby", "channel", "general", "payload", "n", 1);
    struct fx_result res = {0};
    bus_svc_publish(&f->transport->ctx, msg, fx_result_cb, &res);
    assert_int_equal(res.calls, 0); /* waits for the append */
    json_t *got = fx_expect(b, "message");
    store_complete(s, 0, ARQ_OK);
    assert_int_equal(res.calls, 1);
    assert_string_equal(res.code, "");
    assert_string_equal(fx_str(res.data, "id"), fx_str(got, "id"));
    assert_string_equal(fx_str(res.data, "id"), s->rec[0].id);
    assert_int_equal(json_integer_value(fx_get(res.data, "delivered")), 1);
    assert_int_equal(json_integer_value(fx_get(res.data, "offset")), 1);
    assert_string_equal(fx_str(res.data, "epoch"), "ep-1");
    json_decref(res.data);
    json_decref(msg);
    store_free(s);
}

/* --- the history command ------------------------------------------------------------------- */

static void history_returns_the_entries_oldest_first_with_their_offsets(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    cmds_add(f);
    struct fake_client *a = client(f, "ack=0"), *c = client(f, NULL);
    fx_join(a, "lobby", "general");
    publish(a, "arq_1_1_aaaaaa", 1);
    publish(a, "arq_1_2_aaaaaa", 2);

    fx_send(c, "{\"type\":\"command\",\"id\":\"arq_9_9_cccccc\",\"command\":\"history\","
               "\"args\":{\"room\":\"lobby\",\"channel\":\"general\"}}");
    assert_int_equal(s->nqueries, 1);
    assert_int_equal(s->q.limit, 50); /* the default */
    assert_false(s->q.recover);
    assert_int_equal(s->q.since_us, 0);
    assert_int_equal(s->q.until_us, 0);
    assert_string_equal(s->q_room, "lobby");
    assert_string_equal(s->q_channel, "general");
    assert_int_equal(fx_unread(c), 0); /* answered when the storage answers */
    store_answer(s, s->n, ARQ_OK);

    json_t *r = fx_next(c);
    assert_string_equal(fx_str(r, "type"), "response");
    assert_string_equal(fx_str(r, "request_id"), "arq_9_9_cccccc");
    assert_string_equal(fx_str(r, "status"), "success");
    assert_string_equal(fx_str(r, "payload.message"), "2 messages");
    json_t *data = fx_get(r, "payload.data");
    assert_int_equal(json_integer_value(fx_get(data, "count")), 2);
    assert_string_equal(fx_str(data, "epoch"), "ep-1");
    assert_true(json_is_false(fx_get(data, "recovered")));
    json_t *entries = fx_get(data, "entries");
    assert_int_equal(json_array_size(entries), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *e = json_array_get(entries, i);
        assert_int_equal(json_integer_value(fx_get(e, "offset")), i + 1);
        assert_int_equal(json_integer_value(fx_get(e, "envelope.payload.n")), i + 1);
        assert_string_equal(fx_str(e, "envelope.sender"), conn_svc_client_id(a->conn));
        assert_string_equal(fx_str(e, "envelope.id"), s->rec[i].id);
    }
    assert_string_equal(fx_str(json_array_get(entries, 0), "stored_at"),
                        "2026-01-01T00:00:00.000Z");
    assert_string_equal(fx_str(json_array_get(entries, 1), "stored_at"),
                        "2026-01-01T00:00:00.001Z");
    store_free(s);
}

static void history_passes_limits_times_and_recovery_to_the_storage(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    cmds_add(f);
    struct fake_client *c = client(f, NULL);

    fx_send(c, "{\"type\":\"command\",\"command\":\"history\",\"args\":{\"room\":\"lobby\","
               "\"limit\":7,\"since\":\"2026-01-01T00:00:01Z\","
               "\"until\":\"2026-01-01T00:00:02.500Z\"}}");
    assert_int_equal(s->nqueries, 1);
    assert_false(s->q_has_channel); /* the room's own messages */
    assert_int_equal(s->q.limit, 7);
    assert_int_equal(s->q.since_us, T0_US + 1000000);
    assert_int_equal(s->q.until_us, T0_US + 2500000);
    assert_false(s->q.recover);
    store_answer(s, 0, ARQ_OK);
    json_t *r = fx_expect(c, "response");
    assert_string_equal(fx_str(r, "payload.message"), "0 messages");

    fx_send(c, "{\"type\":\"command\",\"command\":\"history\",\"args\":{\"room\":\"lobby\","
               "\"channel\":\"general\",\"since_offset\":12,\"epoch\":\"ep-0\",\"limit\":1000}}");
    assert_int_equal(s->nqueries, 2);
    assert_true(s->q.recover);
    assert_int_equal(s->q.since_offset, 12);
    assert_true(s->q_has_epoch);
    assert_string_equal(s->q_epoch, "ep-0");
    assert_int_equal(s->q.limit, 1000);
    store_answer(s, 0, ARQ_OK);
    r = fx_expect(c, "response");
    assert_true(json_is_true(fx_get(r, "payload.data.recovered")));

    /* An epoch alone asks for recovery too (from offset 0). */
    fx_send(c, "{\"type\":\"command\",\"command\":\"history\",\"args\":{\"room\":\"lobby\","
               "\"epoch\":\"ep-1\"}}");
    assert_int_equal(s->nqueries, 3);
    assert_true(s->q.recover);
    assert_int_equal(s->q.since_offset, 0);
    assert_string_equal(s->q_epoch, "ep-1");
    store_answer(s, 0, ARQ_OK);
    fx_expect(c, "response");

    /* since_offset 0 without an epoch: a client that never received anything recovers. */
    fx_send(c, "{\"type\":\"command\",\"command\":\"history\",\"args\":{\"room\":\"lobby\","
               "\"since_offset\":0}}");
    assert_int_equal(s->nqueries, 4);
    assert_true(s->q.recover);
    assert_int_equal(s->q.since_offset, 0);
    assert_false(s->q_has_epoch);
    store_answer(s, 0, ARQ_OK);
    fx_expect(c, "response");
    store_free(s);
}

static void history_arguments_are_checked_before_the_storage_is_asked(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    cmds_add(f);
    struct fake_client *c = client(f, NULL);
    static const char *const bad[] = {
        "{\"room\":\"lobby\",\"limit\":0}",          "{\"room\":\"lobby\",\"limit\":1001}",
        "{\"room\":\"lobby\",\"limit\":-1}",         "{\"room\":\"lobby\",\"limit\":\"5\"}",
        "{\"room\":\"lobby\",\"limit\":4294967297}", /* 1 once cut to 32 bits */
        "{\"room\":\"lobby\",\"since_offset\":-1}",  "{\"room\":\"lobby\",\"since_offset\":\"3\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *r = command(c, "history", bad[i]);
        assert_error_response(r, "VALIDATION_ERROR",
                              "Argument 'limit' must be 1..1000 and 'since_offset' >= 0");
    }
    assert_error_response(command(c, "history", "{\"room\":\"lobby\",\"since\":\"yesterday\"}"),
                          "VALIDATION_ERROR", "Argument 'since': invalid timestamp: yesterday");
    assert_error_response(command(c, "history", "{\"room\":\"lobby\",\"until\":\"soon\"}"),
                          "VALIDATION_ERROR", "Argument 'until': invalid timestamp: soon");
    assert_error_response(command(c, "history", "{\"room\":\"no room\"}"), "VALIDATION_ERROR",
                          "Invalid room name: no room");
    assert_error_response(command(c, "history", "{}"), "VALIDATION_ERROR",
                          "Invalid room name: (none)");
    assert_error_response(command(c, "history", "{\"room\":\"lobby\",\"channel\":\"a/b\"}"),
                          "VALIDATION_ERROR", "Invalid channel name: a/b");
    assert_int_equal(s->nqueries, 0);

    /* The bounds themselves pass. */
    json_t *r;
    fx_send(c, "{\"type\":\"command\",\"command\":\"history\",\"args\":{\"room\":\"lobby\","
               "\"limit\":1,\"since_offset\":0}}");
    assert_int_equal(s->nqueries, 1);
    assert_int_equal(s->q.limit, 1);
    store_answer(s, 0, ARQ_OK);
    r = fx_expect(c, "response");
    assert_string_equal(fx_str(r, "status"), "success");
    store_free(s);
}

static void server_side_history_queries_get_the_same_checks_and_data(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    struct fake_client *a = client(f, "ack=0");
    fx_join(a, "lobby", "general");
    publish(a, "arq_1_1_aaaaaa", 1);
    struct fx_result res = {0};
    json_t *args = json_pack("{s:s, s:I}", "room", "lobby", "limit", (json_int_t)4294967297);
    bus_svc_history_query(&f->transport->ctx, args, fx_result_cb, &res);
    json_decref(args);
    assert_int_equal(res.calls, 1);
    assert_string_equal(res.code, "VALIDATION_ERROR");
    assert_int_equal(s->nqueries, 0);

    args = json_pack("{s:s, s:s}", "room", "lobby", "channel", "general");
    bus_svc_history_query(&f->transport->ctx, args, fx_result_cb, &res);
    json_decref(args);
    assert_int_equal(res.calls, 1);
    store_answer(s, s->n, ARQ_OK);
    assert_int_equal(res.calls, 2);
    assert_string_equal(res.code, "");
    assert_int_equal(json_integer_value(fx_get(res.data, "count")), 1);
    assert_int_equal(json_array_size(fx_get(res.data, "entries")), 1);
    json_decref(res.data);
    store_free(s);
}

static void history_without_a_storage_that_answers_is_unavailable(void **state)
{
    struct bus_fx *f = *state;
    cmds_add(f);
    struct fake_client *c = client(f, NULL);
    assert_error_response(command(c, "history", "{\"room\":\"lobby\"}"), "STORAGE_UNAVAILABLE",
                          "No storage backend is configured");

    struct fake_store *s = store_new(f, NULL);
    fx_send(c, "{\"type\":\"command\",\"command\":\"history\",\"args\":{\"room\":\"lobby\"}}");
    store_answer(s, 0, ARQ_EAGAIN);
    assert_error_response(fx_next(c), "STORAGE_UNAVAILABLE",
                          "History is unavailable: the storage backend is down");
    s->query_rc = ARQ_EAGAIN; /* refused at once */
    assert_error_response(command(c, "history", "{\"room\":\"lobby\"}"), "STORAGE_UNAVAILABLE",
                          NULL);
    assert_int_equal(fx_unread(c), 0);
    store_free(s);
}

/* --- join with recovery -------------------------------------------------------------------- */

/* The payload.n of every routed message in c's frames from index `from`, as a string. */
static void routed_ns(const struct fake_client *c, size_t from, char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = from; i < json_array_size(c->frames); i++) {
        const json_t *fr = json_array_get(c->frames, i);
        if (!strcmp(fx_str(fr, "type"), "message"))
            len += (size_t)snprintf(out + len, size - len, "%d ",
                                    (int)json_integer_value(fx_get(fr, "payload.n")));
        else
            len += (size_t)snprintf(out + len, size - len, "[%s] ", fx_str(fr, "type"));
    }
}

static void join_with_recovery_sends_history_then_live_and_nothing_twice(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    cmds_add(f);
    struct fake_client *a = client(f, "ack=0"), *c = client(f, NULL);
    fx_join(a, "lobby", "general");
    publish(a, "arq_1_1_aaaaaa", 1);
    publish(a, "arq_1_2_aaaaaa", 2);

    fx_send(c, "{\"type\":\"command\",\"id\":\"arq_9_1_cccccc\",\"command\":\"join_recover\","
               "\"args\":{\"room\":\"lobby\",\"channel\":\"general\",\"since_offset\":0}}");
    assert_int_equal(s->nqueries, 1);
    assert_true(s->q.recover);
    /* Joined at once: what is published now reaches c, held behind the answer. */
    publish(a, "arq_1_3_aaaaaa", 3); /* the history read will see this one ... */
    publish(a, "arq_1_4_aaaaaa", 4); /* ... and not this one */
    /* The client's own frames meanwhile are answered, ahead of the held messages. */
    fx_send(c, "{\"type\":\"command\",\"command\":\"ping\"}");
    assert_int_equal(fx_unread(c), 1);
    assert_string_equal(fx_str(fx_next(c), "payload.message"), "pong");
    assert_int_equal(fx_unread(c), 0);

    store_answer(s, 3, ARQ_OK);
    json_t *r = fx_next(c);
    assert_string_equal(fx_str(r, "type"), "response");
    assert_string_equal(fx_str(r, "request_id"), "arq_9_1_cccccc");
    assert_string_equal(fx_str(r, "status"), "success");
    assert_string_equal(fx_str(r, "payload.message"), "3 messages");
    json_t *data = fx_get(r, "payload.data");
    assert_string_equal(fx_str(data, "room"), "lobby");
    assert_string_equal(fx_str(data, "channel"), "general");
    json_t *m0 = json_array_get(fx_get(data, "memberships"), 0);
    assert_string_equal(fx_str(m0, "room"), "lobby");
    assert_string_equal(fx_str(m0, "channel"), "general");
    json_t *entries = fx_get(data, "history.entries");
    assert_int_equal(json_array_size(entries), 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(
            json_integer_value(fx_get(json_array_get(entries, i), "envelope.payload.n")), i + 1);
    assert_true(json_is_true(fx_get(data, "history.recovered")));

    /* Then live: only what the history did not hold. */
    size_t after = c->read;
    assert_int_equal(fx_unread(c), 1);
    char seq[128];
    routed_ns(c, after, seq, sizeof seq);
    assert_string_equal(seq, "4 ");
    /* And live again from now on. */
    publish(a, "arq_1_5_aaaaaa", 5);
    assert_int_equal(fx_unread(c), 2);
    routed_ns(c, after, seq, sizeof seq);
    assert_string_equal(seq, "4 5 ");
    store_free(s);
}

static void join_with_recovery_stands_when_the_history_is_missing(void **state)
{
    struct bus_fx *f = *state;
    cmds_add(f);
    struct fake_client *a = client(f, "ack=0"), *c = client(f, NULL);
    fx_join(a, "lobby", "general");

    /* No storage at all: joined, history null. */
    json_t *r = command(c, "join_recover",
                        "{\"room\":\"lobby\",\"channel\":\"general\","
                        "\"since_offset\":0}");
    assert_string_equal(fx_str(r, "status"), "success");
    assert_string_equal(fx_str(r, "payload.message"), "Joined; no history available");
    assert_true(json_is_null(fx_get(r, "payload.data.history")));
    assert_string_equal(fx_str(r, "payload.data.channel"), "general");
    publish(a, "arq_1_1_aaaaaa", 1);
    assert_int_equal(json_integer_value(fx_get(fx_expect(c, "message"), "payload.n")), 1);

    /* A storage that is down: the same; what arrived meanwhile follows the answer. */
    struct fake_store *s = store_new(f, NULL);
    struct fake_client *d = client(f, NULL);
    fx_send(d, "{\"type\":\"command\",\"command\":\"join_recover\",\"args\":{\"room\":\"lobby\","
               "\"channel\":\"general\",\"since_offset\":0}}");
    publish(a, "arq_1_2_aaaaaa", 2);
    assert_int_equal(fx_unread(d), 0);
    store_answer(s, s->n, ARQ_EAGAIN);
    r = fx_next(d);
    assert_string_equal(fx_str(r, "type"), "response");
    assert_string_equal(fx_str(r, "status"), "success");
    assert_true(json_is_null(fx_get(r, "payload.data.history")));
    assert_int_equal(json_integer_value(fx_get(fx_next(d), "payload.n")), 2);
    assert_int_equal(fx_unread(d), 0);
    store_free(s);
}

static void a_recovery_answered_after_the_client_left_is_harmless(void **state)
{
    struct bus_fx *f = *state;
    struct fake_store *s = store_new(f, NULL);
    cmds_add(f);
    struct fake_client *a = client(f, "ack=0");
    fx_join(a, "lobby", "general");
    publish(a, "arq_1_1_aaaaaa", 1);
    /* The welcome stays queued (not read): the pause begins behind it. */
    struct fake_client *c = fx_connect(f, NULL);
    fx_send(c, "{\"type\":\"command\",\"command\":\"join_recover\",\"args\":{\"room\":\"lobby\","
               "\"channel\":\"general\",\"since_offset\":0}}");
    publish(a, "arq_1_2_aaaaaa", 2);
    fx_disconnect(c, 1006);
    /* The history holds a message: dropping it from a connection that is gone must not touch
     * its (freed) queue. */
    store_answer(s, s->n, ARQ_OK);
    assert_int_equal(json_array_size(c->frames), 0);
    store_free(s);
}

/* --- status ------------------------------------------------------------------------------- */

static json_t *status(struct bus_fx *f)
{
    const char *code = NULL;
    struct arq_error err = {""};
    json_t *st = bus_svc_query(&f->transport->ctx, NULL, "status", NULL, NULL, &code, &err);
    assert_null(code);
    assert_non_null(st);
    return st;
}

static void status_shows_the_storage_and_its_health(void **state)
{
    struct bus_fx *f = *state;
    json_t *st = status(f);
    assert_true(json_is_null(fx_get(st, "storage")));
    json_decref(st);

    struct arq_ctx *ctx;
    struct fake_store *s = store_new(f, &ctx);
    static const char *const names[] = {"healthy", "degraded", "down"};
    for (int h = 0; h <= 2; h++) {
        s->health = h;
        s->detail = h ? "redis unreachable" : NULL;
        st = status(f);
        assert_string_equal(fx_str(st, "storage.instance"), "store");
        assert_string_equal(fx_str(st, "storage.backend"), "store");
        assert_string_equal(fx_str(st, "storage.health"), names[h]);
        if (h)
            assert_string_equal(fx_str(st, "storage.detail"), "redis unreachable");
        else
            assert_false(json_is_string(fx_get(st, "storage.detail")));
        json_decref(st);
    }
    /* Gone with a reload: null again, and history is unavailable. */
    fx_remove_instance(f, ctx);
    st = status(f);
    assert_true(json_is_null(fx_get(st, "storage")));
    json_decref(st);
    store_free(s);
}

#define T(name) cmocka_unit_test_setup_teardown(name, bus_fx_setup, bus_fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(the_ack_carries_the_appended_offset_and_epoch),
        T(a_message_is_delivered_before_it_is_stored_and_acked_once_stored),
        T(without_storage_the_ack_has_no_offset_or_epoch),
        T(ack_off_means_no_ack_but_the_message_is_still_stored),
        T(a_failed_append_still_acks_the_delivery_without_offset),
        T(an_append_completing_after_the_client_left_sends_nothing),
        T(room_messages_are_stored_and_direct_messages_are_not),
        T(a_server_side_publish_learns_the_offset_and_epoch),
        T(history_returns_the_entries_oldest_first_with_their_offsets),
        T(history_passes_limits_times_and_recovery_to_the_storage),
        T(history_arguments_are_checked_before_the_storage_is_asked),
        T(server_side_history_queries_get_the_same_checks_and_data),
        T(history_without_a_storage_that_answers_is_unavailable),
        T(join_with_recovery_sends_history_then_live_and_nothing_twice),
        T(join_with_recovery_stands_when_the_history_is_missing),
        T(a_recovery_answered_after_the_client_left_is_harmless),
        T(status_shows_the_storage_and_its_health),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
