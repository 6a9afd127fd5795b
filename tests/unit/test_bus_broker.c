/* The bus and its broker, in process: subscriptions follow local members, a routed message
 * goes to the broker once, what comes from it reaches local members only (once, never back
 * to its own node), direct messages to clients elsewhere, the client registry and presence,
 * resync, cluster-wide listings and the cluster in `status`. The broker is a fake that
 * records every call as a line of text and answers queries when the test says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bus_fixture.h"

/* --- a fake broker -----------------------------------------------------------------------------
 */

#define CALLS_MAX 256

struct fake_broker {
    char calls[CALLS_MAX][200]; /* "subscribe r c", "publish r c - <id> <origin>", ...         */
    size_t n;
    char frames[16][512]; /* the data of every publish, in order                          */
    size_t nframes;
    /* queries: answered by broker_answer */
    char q_what[32], q_room[64], q_channel[64];
    size_t nqueries;
    arq_result_cb qcb;
    void *qarg;
};

static void broker__call(struct fake_broker *b, const char *fmt, ...)
{
    assert_true(b->n < CALLS_MAX);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->calls[b->n++], sizeof b->calls[0], fmt, ap);
    va_end(ap);
}

static const char *or_dash(const char *s)
{
    return s ? s : "-";
}

static int broker__publish(void *self, const struct arq_broker_msg *m)
{
    struct fake_broker *b = self;
    broker__call(b, "publish %s %s %s %s %s", or_dash(m->room), or_dash(m->channel),
                 or_dash(m->to_client), or_dash(m->id), or_dash(m->origin));
    assert_true(b->nframes < 16);
    snprintf(b->frames[b->nframes++], sizeof b->frames[0], "%.*s", (int)m->len,
             (const char *)m->data);
    return ARQ_OK;
}

static int broker__subscribe(void *self, const char *room, const char *channel)
{
    broker__call(self, "subscribe %s %s", room, or_dash(channel));
    return ARQ_OK;
}

static int broker__unsubscribe(void *self, const char *room, const char *channel)
{
    broker__call(self, "unsubscribe %s %s", room, or_dash(channel));
    return ARQ_OK;
}

static int broker__register(void *self, const char *client_id)
{
    broker__call(self, "register %s", client_id);
    return ARQ_OK;
}

static int broker__unregister(void *self, const char *client_id)
{
    broker__call(self, "unregister %s", client_id);
    return ARQ_OK;
}

static int broker__presence(void *self, const char *client_id, const char *room,
                            const char *channel, int joined)
{
    broker__call(self, "presence %s %s %s %d", client_id, room, or_dash(channel), joined);
    return ARQ_OK;
}

static int broker__query(void *self, const char *what, const char *room, const char *channel,
                         arq_result_cb cb, void *arg)
{
    struct fake_broker *b = self;
    assert_null(b->qcb); /* one at a time in these tests */
    snprintf(b->q_what, sizeof b->q_what, "%s", what);
    snprintf(b->q_room, sizeof b->q_room, "%s", or_dash(room));
    snprintf(b->q_channel, sizeof b->q_channel, "%s", or_dash(channel));
    b->nqueries++;
    b->qcb = cb;
    b->qarg = arg;
    return ARQ_OK;
}

static int broker__health(void *self, const char **detail)
{
    (void)self;
    *detail = "redis 127.0.0.1:1: connection refused";
    return 1;
}

static const struct arq_broker_ops broker_ops = {.struct_size = sizeof broker_ops,
                                                 .publish = broker__publish,
                                                 .subscribe = broker__subscribe,
                                                 .unsubscribe = broker__unsubscribe,
                                                 .register_client = broker__register,
                                                 .unregister_client = broker__unregister,
                                                 .presence = broker__presence,
                                                 .query = broker__query,
                                                 .health = broker__health};

/* Answer the pending query with `json` data, or with error `code`. */
static void broker_answer(struct fake_broker *b, const char *json, const char *code)
{
    assert_non_null(b->qcb);
    arq_result_cb cb = b->qcb;
    b->qcb = NULL;
    json_t *data = json ? json_loads(json, 0, NULL) : NULL;
    assert_true(!json || data);
    cb(b->qarg, code, code ? "no" : NULL, data);
    json_decref(data);
}

/* Index of the first call equal to `line` at or after `from`, or -1. */
static long broker_find(const struct fake_broker *b, size_t from, const char *line)
{
    for (size_t i = from; i < b->n; i++)
        if (!strcmp(b->calls[i], line))
            return (long)i;
    return -1;
}

static size_t broker_count(const struct fake_broker *b, const char *prefix)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        n += !strncmp(b->calls[i], prefix, strlen(prefix));
    return n;
}

/* The bus's part of the plugins' service table. */
static const struct arq_host *bus_services_api(void)
{
    static struct arq_host api;
    if (!api.struct_size) {
        api.struct_size = sizeof api;
        bus_services(&api);
    }
    return &api;
}

/* --- fixture -----------------------------------------------------------------------------------
 */

struct bfx {
    struct bus_fx *f;
    struct fake_broker broker;
    struct arq_ctx *ctx;
};

static int setup(void **state)
{
    struct bfx *x = calloc(1, sizeof *x);
    assert_non_null(x);
    bus_fx_setup((void **)&x->f);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct bfx *x = *state;
    void *f = x->f;
    bus_fx_teardown(&f);
    free(x);
    return 0;
}

/* A broker joins (a reload that adds it); the node list it is asked for at once is empty. */
static void with_broker(struct bfx *x)
{
    x->ctx = fx_instance(x->f, "broker", ARQ_KIND_BROKER, &broker_ops, &x->broker);
    assert_string_equal(x->broker.q_what, "nodes");
    broker_answer(&x->broker, "[]", NULL);
}

static void leave(struct fake_client *c, const char *room, const char *channel)
{
    struct arq_error err = {""};
    assert_null(bus_svc_leave(c->conn, room, channel, &err));
}

static void call_is(struct bfx *x, size_t i, const char *fmt, ...)
{
    char want[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    assert_true(i < x->broker.n);
    assert_string_equal(x->broker.calls[i], want);
}

/* --- subscriptions, registry, presence ----------------------------------------------------- */

static void subscriptions_follow_the_first_and_last_local_member(void **state)
{
    struct bfx *x = *state;
    with_broker(x);
    struct fake_client *a = fx_client(x->f), *b = fx_client(x->f);
    size_t base = x->broker.n;
    fx_join(a, "lobby", "general");
    call_is(x, base, "subscribe lobby -"); /* room-wide traffic reaches channel members */
    call_is(x, base + 1, "subscribe lobby general");
    call_is(x, base + 2, "presence %s lobby general 1", a->conn->id);
    fx_join(b, "lobby", "general"); /* not the first: presence only */
    fx_join(b, "lobby", NULL);
    assert_int_equal(broker_count(&x->broker, "subscribe"), 2);
    assert_true(broker_find(&x->broker, base, "presence") < 0);
    char line[200];
    snprintf(line, sizeof line, "presence %s lobby - 1", b->conn->id);
    assert_true(broker_find(&x->broker, base, line) > 0);

    base = x->broker.n;
    leave(a, "lobby", "general"); /* b is still in the channel and the room */
    assert_int_equal(x->broker.n, base + 1);
    call_is(x, base, "presence %s lobby general 0", a->conn->id);
    leave(b, "lobby", "general");
    call_is(x, base + 1, "presence %s lobby general 0", b->conn->id);
    call_is(x, base + 2, "unsubscribe lobby general");
    assert_int_equal(x->broker.n, base + 3); /* b's room-wide membership keeps the room */
    leave(b, "lobby", NULL);
    call_is(x, base + 3, "presence %s lobby - 0", b->conn->id);
    call_is(x, base + 4, "unsubscribe lobby -");
}

static void clients_register_and_leave_their_memberships_before_unregistering(void **state)
{
    struct bfx *x = *state;
    with_broker(x);
    struct fake_client *a = fx_client(x->f);
    char id[64];
    snprintf(id, sizeof id, "%s", a->conn->id);
    call_is(x, x->broker.n - 1, "register %s", id);
    fx_join(a, "lobby", "general");
    size_t base = x->broker.n;
    fx_disconnect(a, 1000);
    call_is(x, base, "presence %s lobby general 0", id);
    call_is(x, base + 1, "unsubscribe lobby general");
    call_is(x, base + 2, "unsubscribe lobby -");
    call_is(x, base + 3, "unregister %s", id);
    assert_int_equal(x->broker.n, base + 4);
}

static void a_force_deleted_channel_ends_presence_and_its_subscription(void **state)
{
    struct bfx *x = *state;
    with_broker(x);
    struct fake_client *a = fx_client(x->f);
    fx_join(a, "lobby", "general");
    size_t base = x->broker.n;
    struct arq_error err = {""};
    assert_null(bus_svc_delete_channel(&x->f->transport->ctx, "lobby", "general", 1, &err));
    call_is(x, base, "presence %s lobby general 0", a->conn->id);
    call_is(x, base + 1, "unsubscribe lobby general");
    call_is(x, base + 2, "unsubscribe lobby -");
}

static void a_new_broker_and_a_resync_learn_everything_this_node_holds(void **state)
{
    struct bfx *x = *state;
    struct fake_client *a = fx_client(x->f), *b = fx_client(x->f);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", NULL);
    fx_join(b, "news", NULL);
    with_broker(x); /* a reload that adds the broker */
    for (int round = 0; round < 2; round++) {
        assert_true(broker_find(&x->broker, 0, "subscribe lobby -") >= 0);
        assert_true(broker_find(&x->broker, 0, "subscribe lobby general") >= 0);
        assert_true(broker_find(&x->broker, 0, "subscribe news -") >= 0);
        assert_int_equal(broker_count(&x->broker, "subscribe"), 3);
        assert_int_equal(broker_count(&x->broker, "register"), 2);
        assert_int_equal(broker_count(&x->broker, "presence"), 3);
        char line[200];
        snprintf(line, sizeof line, "presence %s news - 1", b->conn->id);
        assert_true(broker_find(&x->broker, 0, line) >= 0);
        /* the broker reconnected to an empty Redis: it asks for all of it again */
        x->broker.n = 0;
        bus_services_api()->broker_resync(x->ctx);
    }
}

/* --- traffic -----------------------------------------------------------------------------------
 */

static void a_routed_message_goes_to_the_broker_once(void **state)
{
    struct bfx *x = *state;
    with_broker(x);
    struct fake_client *a = fx_client(x->f), *b = fx_client(x->f), *c = fx_client(x->f);
    fx_join(a, "lobby", "general");
    fx_join(b, "lobby", "general");
    fx_join(c, "lobby", "general");
    size_t base = x->broker.n;
    fx_send(a, "{\"id\":\"arq_1700000000000_1_0a0b0c\",\"type\":\"message\",\"room\":\"lobby\","
               "\"channel\":\"general\","
               "\"payload\":{\"n\":1}}");
    assert_int_equal(
        json_integer_value(fx_get(fx_expect(a, "message_response"), "payload.delivered")), 2);
    assert_int_equal(x->broker.n, base + 1);
    call_is(x, base, "publish lobby general - arq_1700000000000_1_0a0b0c test-node");
    /* the frame the broker carries is the one local members got */
    json_t *got = fx_expect(b, "message");
    json_t *sent = json_loads(x->broker.frames[0], 0, NULL);
    assert_true(json_equal(got, sent));
    json_decref(sent);
    assert_int_equal(json_integer_value(fx_get(fx_expect(c, "message"), "payload.n")), 1);
}

static void traffic_from_the_broker_reaches_local_members_once(void **state)
{
    struct bfx *x = *state;
    with_broker(x);
    struct fake_client *a = fx_client(x->f), *b = fx_client(x->f);
    fx_join(a, "lobby", "general");
    fx_join(a, "lobby", "random"); /* a room-wide message reaches a once */
    fx_join(b, "lobby", "general");
    size_t base = x->broker.n;
    const struct arq_host *api = bus_services_api();
    static const char room_wide[] = "{\"type\":\"message\",\"room\":\"lobby\",\"payload\":1}";
    struct arq_broker_msg m = {.struct_size = sizeof m,
                               .room = "lobby",
                               .data = (const unsigned char *)room_wide,
                               .len = sizeof room_wide - 1,
                               .origin = "n2",
                               .id = "r1"};
    api->broker_deliver(x->ctx, &m);
    /* from this node itself: dropped */
    m.origin = "test-node";
    api->broker_deliver(x->ctx, &m);
    /* a channel nobody here is in, and a room this node does not know: nothing */
    m.origin = "n2";
    m.channel = "nobody";
    api->broker_deliver(x->ctx, &m);
    m.room = "elsewhere";
    m.channel = NULL;
    api->broker_deliver(x->ctx, &m);
    static const char chan[] = "{\"type\":\"message\",\"room\":\"lobby\",\"channel\":\"general\","
                               "\"payload\":2}";
    struct arq_broker_msg m2 = {.struct_size = sizeof m2,
                                .room = "lobby",
                                .channel = "general",
                                .data = (const unsigned char *)chan,
                                .len = sizeof chan - 1,
                                .origin = "n3"};
    api->broker_deliver(x->ctx, &m2);
    for (int i = 0; i < 2; i++) {
        struct fake_client *who = i ? b : a;
        assert_int_equal(json_integer_value(fx_get(fx_expect(who, "message"), "payload")), 1);
        assert_int_equal(json_integer_value(fx_get(fx_expect(who, "message"), "payload")), 2);
        assert_int_equal(fx_unread(who), 0);
    }
    assert_int_equal(x->broker.n, base); /* nothing went back to the broker */
    assert_true(fx_metric(x->f, "arqonbus_messages_delivered_total") == 4);
}

static void a_direct_message_finds_its_client_on_another_node(void **state)
{
    struct bfx *x = *state;
    with_broker(x);
    struct fake_client *a = fx_client(x->f);
    size_t base = x->broker.n;
    fx_send(a, "{\"id\":\"arq_1700000000000_3_0a0b0c\",\"type\":\"message\",\"to_client\":\"arq_"
               "client_far\","
               "\"payload\":1}");
    assert_int_equal(fx_unread(a), 0); /* the cluster is asked first */
    assert_string_equal(x->broker.q_what, "client");
    assert_string_equal(x->broker.q_room, "arq_client_far");
    broker_answer(&x->broker, "{\"node\":\"n2\"}", NULL);
    call_is(x, base, "publish - - arq_client_far arq_1700000000000_3_0a0b0c test-node");
    json_t *ack = fx_expect(a, "message_response");
    assert_string_equal(fx_str(ack, "request_id"), "arq_1700000000000_3_0a0b0c");
    assert_int_equal(json_integer_value(fx_get(ack, "payload.delivered")), 1);

    /* no live node holds it: the error one node gives */
    fx_send(a, "{\"id\":\"arq_1700000000000_4_0a0b0c\",\"type\":\"message\",\"to_client\":\"arq_"
               "client_gone\","
               "\"payload\":1}");
    broker_answer(&x->broker, NULL, ARQ_ERR_NOT_FOUND);
    json_t *err = fx_expect(a, "error");
    assert_string_equal(fx_str(err, "error_code"), "NOT_FOUND");
    assert_string_equal(fx_str(err, "error"), "Client arq_client_gone is not connected");
    assert_string_equal(fx_str(err, "request_id"), "arq_1700000000000_4_0a0b0c");
    assert_int_equal(x->broker.n, base + 1); /* nothing published */

    /* the sender left before the answer: nothing is sent to it, nothing leaks */
    fx_send(a, "{\"id\":\"arq_1700000000000_5_0a0b0c\",\"type\":\"message\",\"to_client\":\"arq_"
               "client_far\","
               "\"payload\":1}");
    fx_disconnect(a, 1000);
    broker_answer(&x->broker, "{\"node\":\"n2\"}", NULL);
}

static void without_a_broker_unknown_rooms_and_clients_are_errors(void **state)
{
    struct bfx *x = *state;
    fx_configure(x->f, "members_only: false");
    struct fake_client *a = fx_client(x->f);
    fx_send(a, "{\"id\":\"arq_1700000000000_1_0a0b0c\",\"type\":\"message\",\"room\":\"nowhere\","
               "\"payload\":1}");
    assert_string_equal(fx_str(fx_expect(a, "error"), "error_code"), "ROOM_NOT_FOUND");
    fx_send(a, "{\"id\":\"arq_1700000000000_3_0a0b0c\",\"type\":\"message\",\"to_client\":\"arq_"
               "client_far\","
               "\"payload\":1}");
    assert_string_equal(fx_str(fx_expect(a, "error"), "error_code"), "NOT_FOUND");
    /* with one, a room with no member here may have members elsewhere */
    with_broker(x);
    size_t base = x->broker.n;
    fx_send(a, "{\"id\":\"arq_1700000000000_2_0a0b0c\",\"type\":\"message\",\"room\":\"nowhere\","
               "\"channel\":\"x\","
               "\"payload\":1}");
    json_t *ack = fx_expect(a, "message_response");
    assert_int_equal(json_integer_value(fx_get(ack, "payload.delivered")), 0);
    call_is(x, base, "publish nowhere x - arq_1700000000000_2_0a0b0c test-node");
}

static void members_only_still_needs_a_local_membership(void **state)
{
    struct bfx *x = *state;
    fx_configure(x->f, "members_only: true");
    with_broker(x);
    struct fake_client *a = fx_client(x->f);
    size_t base = x->broker.n;
    fx_send(a, "{\"id\":\"arq_1700000000000_1_0a0b0c\",\"type\":\"message\",\"room\":\"lobby\","
               "\"channel\":\"general\","
               "\"payload\":1}");
    json_t *err = fx_expect(a, "error");
    assert_string_equal(fx_str(err, "error_code"), "AUTHORIZATION_ERROR");
    assert_string_equal(fx_str(err, "error"), "Not a member of channel lobby/general");
    assert_int_equal(x->broker.n, base);
}

static void presence_events_go_to_the_cluster_once(void **state)
{
    struct bfx *x = *state;
    fx_configure(x->f, "presence: [\"*\"]");
    with_broker(x);
    struct fake_client *a = fx_client(x->f);
    size_t base = x->broker.n;
    fx_join(a, "lobby", "general");
    assert_int_equal(broker_count(&x->broker, "publish"), 1);
    long i = broker_find(&x->broker, base, "subscribe lobby general");
    assert_true(i >= 0);
    /* subscribed before the event went out; the event names the client */
    char want[200];
    snprintf(want, sizeof want, "publish lobby general - - test-node");
    assert_true(broker_find(&x->broker, (size_t)i, want) > i);
    json_t *ev = json_loads(x->broker.frames[0], 0, NULL);
    assert_string_equal(fx_str(ev, "payload.event"), "joined");
    assert_string_equal(fx_str(ev, "payload.client_id"), a->conn->id);
    json_decref(ev);
}

/* --- listings and status -----------------------------------------------------------------------
 */

static void listing_cb(void *arg, const char *code, const char *text, const json_t *data)
{
    fx_result_cb(arg, code, text, data);
}

static void listings_describe_the_whole_cluster(void **state)
{
    struct bfx *x = *state;
    with_broker(x);
    struct fake_client *a = fx_client(x->f);
    fx_join(a, "lobby", "general");
    struct arq_error err = {""};
    assert_null(
        bus_svc_create_channel(&x->f->transport->ctx, "lobby", "quiet", "an empty one", &err));
    const struct arq_host *api = bus_services_api();
    struct fx_result res = {0};

    api->bus_query_async(x->ctx, NULL, "rooms", NULL, NULL, listing_cb, &res);
    assert_int_equal(res.calls, 0);
    assert_string_equal(x->broker.q_what, "rooms");
    broker_answer(&x->broker,
                  "[{\"room\":\"lobby\",\"members\":3,\"channels\":1},"
                  "{\"room\":\"far\",\"members\":2,\"channels\":0}]",
                  NULL);
    assert_int_equal(res.calls, 1);
    assert_int_equal(json_array_size(res.data), 2);
    assert_int_equal(json_integer_value(fx_get(json_array_get(res.data, 0), "members")), 3);
    assert_string_equal(fx_str(json_array_get(res.data, 1), "room"), "far");
    json_decref(res.data);

    memset(&res, 0, sizeof res);
    api->bus_query_async(x->ctx, NULL, "channels", "lobby", NULL, listing_cb, &res);
    assert_string_equal(x->broker.q_room, "lobby");
    broker_answer(&x->broker, "[{\"channel\":\"general\",\"members\":2}]", NULL);
    assert_int_equal(json_array_size(res.data), 2); /* plus the explicit empty channel */
    json_t *general = json_array_get(res.data, 0), *quiet = json_array_get(res.data, 1);
    assert_string_equal(fx_str(general, "channel"), "general");
    assert_int_equal(json_integer_value(fx_get(general, "members")), 2);
    assert_non_null(fx_get(general, "created_at")); /* known here */
    assert_string_equal(fx_str(quiet, "description"), "an empty one");
    assert_int_equal(json_integer_value(fx_get(quiet, "members")), 0);
    json_decref(res.data);

    memset(&res, 0, sizeof res);
    api->bus_query_async(x->ctx, NULL, "channel", "lobby", "general", listing_cb, &res);
    assert_string_equal(x->broker.q_what, "members");
    assert_string_equal(x->broker.q_channel, "general");
    broker_answer(&x->broker, "[\"arq_client_a\",\"arq_client_b\"]", NULL);
    assert_int_equal(json_integer_value(fx_get(res.data, "members")), 2);
    assert_int_equal(json_array_size(fx_get(res.data, "member_ids")), 2);
    json_decref(res.data);

    /* a channel only another node has members in; one nobody has */
    memset(&res, 0, sizeof res);
    api->bus_query_async(x->ctx, NULL, "channel", "far", "x", listing_cb, &res);
    broker_answer(&x->broker, "[\"arq_client_c\"]", NULL);
    assert_string_equal(fx_str(res.data, "room"), "far");
    assert_int_equal(json_integer_value(fx_get(res.data, "members")), 1);
    json_decref(res.data);
    memset(&res, 0, sizeof res);
    api->bus_query_async(x->ctx, NULL, "channel", "far", "y", listing_cb, &res);
    broker_answer(&x->broker, "[]", NULL);
    assert_string_equal(res.code, "CHANNEL_NOT_FOUND");
    memset(&res, 0, sizeof res);
    api->bus_query_async(x->ctx, NULL, "channels", "nowhere", NULL, listing_cb, &res);
    broker_answer(&x->broker, "[]", NULL);
    assert_int_equal(res.calls, 0); /* no channel anywhere: is there a room at all? */
    assert_string_equal(x->broker.q_what, "members");
    assert_string_equal(x->broker.q_room, "nowhere");
    assert_string_equal(x->broker.q_channel, "-");
    broker_answer(&x->broker, "[]", NULL);
    assert_string_equal(res.code, "ROOM_NOT_FOUND");
    /* a room only room-wide members elsewhere are in: it exists, without channels */
    memset(&res, 0, sizeof res);
    api->bus_query_async(x->ctx, NULL, "channels", "far", NULL, listing_cb, &res);
    broker_answer(&x->broker, "[]", NULL);
    broker_answer(&x->broker, "[\"arq_client_d\"]", NULL);
    assert_int_equal(res.calls, 1);
    assert_null(res.code[0] ? res.code : NULL);
    assert_int_equal(json_array_size(res.data), 0);
    assert_true(json_is_array(res.data));
    json_decref(res.data);

    /* the broker cannot answer: its error */
    memset(&res, 0, sizeof res);
    api->bus_query_async(x->ctx, NULL, "rooms", NULL, NULL, listing_cb, &res);
    broker_answer(&x->broker, NULL, ARQ_ERR_EXECUTION);
    assert_string_equal(res.code, "EXECUTION_ERROR");
    /* a bad name is refused before the cluster is asked */
    size_t asked = x->broker.nqueries;
    memset(&res, 0, sizeof res);
    api->bus_query_async(x->ctx, NULL, "channels", "bad name", NULL, listing_cb, &res);
    assert_string_equal(res.code, "VALIDATION_ERROR");
    assert_int_equal(x->broker.nqueries, asked);
}

static void without_a_broker_listings_are_this_nodes(void **state)
{
    struct bfx *x = *state;
    struct fake_client *a = fx_client(x->f);
    fx_join(a, "lobby", "general");
    struct fx_result res = {0};
    bus_services_api()->bus_query_async(&x->f->transport->ctx, NULL, "rooms", NULL, NULL,
                                        listing_cb, &res);
    assert_int_equal(res.calls, 1);
    assert_string_equal(fx_str(json_array_get(res.data, 0), "room"), "lobby");
    json_decref(res.data);
}

static void status_shows_the_cluster_with_a_broker(void **state)
{
    struct bfx *x = *state;
    const char *code = NULL;
    struct arq_error err = {""};
    json_t *st = bus_svc_query(&x->f->transport->ctx, NULL, "status", NULL, NULL, &code, &err);
    assert_null(fx_get(st, "cluster"));
    json_decref(st);
    x->ctx = fx_instance(x->f, "broker", ARQ_KIND_BROKER, &broker_ops, &x->broker);
    /* the node list is asked for at once */
    assert_string_equal(x->broker.q_what, "nodes");
    broker_answer(&x->broker,
                  "[{\"node\":\"test-node\",\"clients\":0},{\"node\":\"n2\","
                  "\"clients\":7}]",
                  NULL);
    st = bus_svc_query(&x->f->transport->ctx, NULL, "status", NULL, NULL, &code, &err);
    assert_string_equal(fx_str(st, "cluster.node"), "test-node");
    assert_string_equal(fx_str(st, "cluster.broker.instance"), "broker");
    assert_string_equal(fx_str(st, "cluster.broker.health"), "degraded");
    assert_string_equal(fx_str(st, "cluster.broker.detail"),
                        "redis 127.0.0.1:1: connection refused");
    json_t *nodes = fx_get(st, "cluster.nodes");
    assert_int_equal(json_array_size(nodes), 2);
    assert_int_equal(json_integer_value(fx_get(json_array_get(nodes, 1), "clients")), 7);
    json_decref(st);
    /* the broker goes (a reload): so does the cluster */
    fx_remove_instance(x->f, x->ctx);
    st = bus_svc_query(&x->f->transport->ctx, NULL, "status", NULL, NULL, &code, &err);
    assert_null(fx_get(st, "cluster"));
    json_decref(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(subscriptions_follow_the_first_and_last_local_member, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            clients_register_and_leave_their_memberships_before_unregistering, setup, teardown),
        cmocka_unit_test_setup_teardown(a_force_deleted_channel_ends_presence_and_its_subscription,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_new_broker_and_a_resync_learn_everything_this_node_holds,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_routed_message_goes_to_the_broker_once, setup, teardown),
        cmocka_unit_test_setup_teardown(traffic_from_the_broker_reaches_local_members_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_direct_message_finds_its_client_on_another_node, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(without_a_broker_unknown_rooms_and_clients_are_errors,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(members_only_still_needs_a_local_membership, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(presence_events_go_to_the_cluster_once, setup, teardown),
        cmocka_unit_test_setup_teardown(listings_describe_the_whole_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(without_a_broker_listings_are_this_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(status_shows_the_cluster_with_a_broker, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
