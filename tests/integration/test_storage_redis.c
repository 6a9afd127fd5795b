/* History in Redis, over WebSocket against real arqonbusd processes and a real redis-server
 * started by each test (all on 127.0.0.1): storage-memory and storage-redis answer the same
 * traffic alike; two nodes sharing one Redis agree on offsets; recovery after a disconnect;
 * a lost stream reported as a new epoch; Redis killed while clients publish (every
 * acknowledged message ends in Redis once, in order, live delivery never stops, status goes
 * degraded and back); Redis absent at start; strict mode. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus_client.h"
#include "redis_server.h"

/* Two bus processes and one Redis, all stopped by teardown. */
struct rfx {
    struct fixture *bus[2];
    struct redis_server rs;
    int redis_port; /* where the buses look for Redis */
};

static int setup(void **state)
{
    struct rfx *x = calloc(1, sizeof *x);
    if (!x)
        return -1;
    for (int i = 0; i < 2; i++)
        if (h_setup((void **)&x->bus[i]) != 0)
            return -1;
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct rfx *x = *state;
    for (int i = 0; i < 2; i++)
        h_teardown((void **)&x->bus[i]);
    redis_server_cleanup(&x->rs);
    free(x);
    return 0;
}

static void redis_up(struct rfx *x, int aof)
{
    assert_int_equal(aof ? redis_server_start_aof(&x->rs, 0) : redis_server_start(&x->rs, 0), 0);
    x->redis_port = x->rs.port;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Bus i with the WebSocket transport, the built-in commands and `storage` (YAML lines under
 * `plugins:`). Returns its WebSocket port. */
static int start_bus(struct rfx *x, int i, const char *storage)
{
    struct fixture *f = x->bus[i];
    h_write(f->dir, "00.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  ws:\n    module: transport-websocket\n"
            "    config:\n      host: 127.0.0.1\n      port: 0\n"
            "  builtin:\n    module: commands-builtin\n%s",
            ARQ_BUILD_PLUGIN_DIR, storage);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    return bc_port(&f->p);
}

static const char memory_storage[] = "  history:\n    module: storage-memory\n"
                                     "    config:\n      max_history: 10\n";

/* storage-redis on x->redis_port keeping max_history messages per channel. */
static int start_redis_bus(struct rfx *x, int i, int max_history)
{
    char storage[1024];
    snprintf(storage, sizeof storage,
             "  history:\n    module: storage-redis\n    config:\n"
             "      url: redis://127.0.0.1:%d\n      key_prefix: it\n      max_history: %d\n"
             "      connect_timeout: 1s\n",
             x->redis_port, max_history);
    return start_bus(x, i, storage);
}

static void msg_id(char *out, size_t size, int n)
{
    snprintf(out, size, "arq_1700000000000_%d_0a0b0c", n);
}

/* Send message n (id from n, payload {n}) to room/channel (channel NULL: room-wide). */
static void send_msg(struct bus_client *c, const char *room, const char *channel, int n)
{
    char id[64];
    msg_id(id, sizeof id, n);
    if (channel)
        bc_send(c, "{s:s, s:s, s:s, s:s, s:{s:i}}", "id", id, "type", "message", "room", room,
                "channel", channel, "payload", "n", n);
    else
        bc_send(c, "{s:s, s:s, s:s, s:{s:i}}", "id", id, "type", "message", "room", room, "payload",
                "n", n);
}

struct ack {
    json_int_t offset; /* 0: none */
    char epoch[64];
    char id[64];
};

static struct ack ack_of(json_t *frame)
{
    struct ack a = {0};
    const json_t *p = json_object_get(frame, "payload");
    a.offset = json_integer_value(json_object_get(p, "offset"));
    snprintf(a.epoch, sizeof a.epoch, "%s", bc_str(p, "epoch"));
    snprintf(a.id, sizeof a.id, "%s", bc_str(frame, "request_id"));
    assert_string_equal(bc_str(frame, "status"), "success");
    return a;
}

static struct ack publish(struct bus_client *c, const char *room, const char *channel, int n)
{
    send_msg(c, room, channel, n);
    json_t *frame = bc_expect(c, "message_response", 5000);
    struct ack a = ack_of(frame);
    json_decref(frame);
    return a;
}

static int payload_n(const json_t *envelope)
{
    return (int)json_integer_value(json_object_get(json_object_get(envelope, "payload"), "n"));
}

/* A history reply without what differs between backends and runs (epochs, stored_at,
 * senders): {count, recovered, entries:[{offset, id, n}]}. */
static json_t *normalized(const json_t *data)
{
    json_t *entries = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(data, "entries"), i, e)
    {
        const json_t *env = json_object_get(e, "envelope");
        json_array_append_new(entries,
                              json_pack("{s:O, s:s, s:i}", "offset", json_object_get(e, "offset"),
                                        "id", bc_str(env, "id"), "n", payload_n(env)));
    }
    return json_pack("{s:O, s:b, s:o}", "count", json_object_get(data, "count"), "recovered",
                     json_is_true(json_object_get(data, "recovered")), "entries", entries);
}

/* Run `history` with args built from `fmt` and return the normalized answer. */
static json_t *history(struct bus_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *args = json_vpack_ex(NULL, 0, fmt, ap);
    va_end(ap);
    assert_non_null(args);
    json_t *r;
    const json_t *d = bc_command_ok(c, &r, "history", "O", args);
    json_t *n = normalized(d);
    json_decref(r);
    json_decref(args);
    return n;
}

/* The history reply's data itself (the caller decrefs *resp). */
static const json_t *history_raw(struct bus_client *c, json_t **resp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *args = json_vpack_ex(NULL, 0, fmt, ap);
    va_end(ap);
    assert_non_null(args);
    const json_t *d = bc_command_ok(c, resp, "history", "O", args);
    json_decref(args);
    return d;
}

/* The `storage` part of `status`: health ("healthy", "degraded", "down") into out. */
static void storage_health(struct bus_client *c, char *out, size_t size, char *detail, size_t dsize)
{
    json_t *r;
    const json_t *d = bc_command_ok(c, &r, "status", NULL);
    const json_t *st = json_object_get(d, "storage");
    snprintf(out, size, "%s", bc_str(st, "health"));
    if (detail)
        snprintf(detail, dsize, "%s", bc_str(st, "detail"));
    json_decref(r);
}

static int wait_health(struct bus_client *c, const char *want, int timeout_ms)
{
    char got[32] = "";
    for (int waited = 0; waited <= h_ms(timeout_ms); waited += 50) {
        storage_health(c, got, sizeof got, NULL, 0);
        if (strcmp(got, want) == 0)
            return 0;
        sleep_ms(50);
    }
    fprintf(stderr, "storage health %s, wanted %s\n", got, want);
    return -1;
}

/* The payload numbers of Redis stream `key`, oldest first (at most max), and their ids checked
 * against the numbers. */
static size_t stream_ns(struct rfx *x, const char *key, int *ns, size_t max)
{
    redisReply *r = redis_server_cmd(&x->rs, "XRANGE %s - +", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    size_t n = 0;
    for (size_t i = 0; i < r->elements && n < max; i++) {
        redisReply *fields = r->element[i]->element[1];
        const char *id = NULL;
        json_t *env = NULL;
        for (size_t k = 0; k + 1 < fields->elements; k += 2) {
            if (!strcmp(fields->element[k]->str, "i"))
                id = fields->element[k + 1]->str;
            else if (!strcmp(fields->element[k]->str, "j"))
                env = json_loads(fields->element[k + 1]->str, 0, NULL);
        }
        assert_non_null(env);
        assert_non_null(id);
        ns[n] = payload_n(env);
        char want[64];
        msg_id(want, sizeof want, ns[n]);
        assert_string_equal(id, want);
        assert_string_equal(bc_str(env, "id"), want);
        json_decref(env);
        n++;
    }
    freeReplyObject(r);
    return n;
}

/* --- tests ----------------------------------------------------------------------------------- */

static void test_memory_and_redis_answer_the_same_traffic_alike(void **state)
{
    struct rfx *x = *state;
    redis_up(x, 0);
    int port[2] = {start_bus(x, 0, memory_storage), start_redis_bus(x, 1, 10)};
    struct bus_client *c[2];
    char epoch[2][64];
    for (int b = 0; b < 2; b++) {
        c[b] = bc_connect(port[b], NULL);
        bc_join(c[b], "lobby", "general");
        bc_join(c[b], "lobby", "random");
        for (int n = 1; n <= 15; n++) {
            struct ack a = publish(c[b], "lobby", "general", n);
            assert_int_equal(a.offset, n);
            snprintf(epoch[b], sizeof epoch[b], "%s", a.epoch);
        }
        for (int n = 16; n <= 18; n++)
            assert_int_equal(publish(c[b], "lobby", "random", n).offset, n - 15);
        for (int n = 19; n <= 20; n++)
            assert_int_equal(publish(c[b], "lobby", NULL, n).offset, n - 18);
    }
    assert_string_not_equal(epoch[0], epoch[1]);

    json_t *h[2];
    /* The same questions to both, each with the epoch its own acks gave. */
#define SAME(...)                                                                                  \
    do {                                                                                           \
        for (int b = 0; b < 2; b++) {                                                              \
            const char *e = epoch[b];                                                              \
            (void)e;                                                                               \
            h[b] = history(c[b], __VA_ARGS__);                                                     \
        }                                                                                          \
        if (!json_equal(h[0], h[1])) {                                                             \
            char *t0 = json_dumps(h[0], JSON_COMPACT), *t1 = json_dumps(h[1], JSON_COMPACT);       \
            fail_msg("memory: %s\nredis:  %s", t0, t1);                                            \
        }                                                                                          \
        json_decref(h[1]);                                                                         \
    } while (0)

    SAME("{s:s, s:s, s:i}", "room", "lobby", "channel", "general", "limit", 5);
    assert_int_equal(json_integer_value(json_object_get(h[0], "count")), 5);
    json_decref(h[0]);
    SAME("{s:s, s:s}", "room", "lobby", "channel", "general"); /* max_history: the newest 10 */
    assert_int_equal(json_integer_value(json_object_get(h[0], "count")), 10);
    json_decref(h[0]);
    SAME("{s:s, s:s, s:i, s:s}", "room", "lobby", "channel", "general", "since_offset", 12, "epoch",
         e);
    assert_true(json_is_true(json_object_get(h[0], "recovered")));
    assert_int_equal(json_integer_value(json_object_get(h[0], "count")), 3);
    json_decref(h[0]);
    SAME("{s:s, s:s, s:i, s:s, s:i}", "room", "lobby", "channel", "general", "since_offset", 7,
         "epoch", e, "limit", 2);
    assert_true(json_is_true(json_object_get(h[0], "recovered")));
    json_decref(h[0]);
    SAME("{s:s, s:s, s:i, s:s}", "room", "lobby", "channel", "general", "since_offset", 15, "epoch",
         e); /* up to date */
    assert_true(json_is_true(json_object_get(h[0], "recovered")));
    assert_int_equal(json_integer_value(json_object_get(h[0], "count")), 0);
    json_decref(h[0]);
    SAME("{s:s, s:s, s:i, s:s}", "room", "lobby", "channel", "general", "since_offset", 2, "epoch",
         e); /* out of reach */
    assert_false(json_is_true(json_object_get(h[0], "recovered")));
    json_decref(h[0]);
    SAME("{s:s, s:s, s:i, s:s}", "room", "lobby", "channel", "general", "since_offset", 12, "epoch",
         "0000000000000000");
    assert_false(json_is_true(json_object_get(h[0], "recovered")));
    json_decref(h[0]);
    SAME("{s:s, s:s, s:i}", "room", "lobby", "channel", "random", "since_offset", 0);
    assert_true(json_is_true(json_object_get(h[0], "recovered")));
    assert_int_equal(json_integer_value(json_object_get(h[0], "count")), 3);
    json_decref(h[0]);
    SAME("{s:s}", "room", "lobby"); /* room-wide messages */
    assert_int_equal(json_integer_value(json_object_get(h[0], "count")), 2);
    json_decref(h[0]);
    SAME("{s:s, s:s, s:i}", "room", "lobby", "channel", "empty", "since_offset", 0);
    assert_true(json_is_true(json_object_get(h[0], "recovered")));
    json_decref(h[0]);
#undef SAME
    for (int b = 0; b < 2; b++) {
        bc_free(c[b]);
        assert_int_equal(h_stop(x->bus[b]), 0);
    }
}

static void test_two_nodes_sharing_redis_agree_on_offsets(void **state)
{
    struct rfx *x = *state;
    redis_up(x, 0);
    int p1 = start_redis_bus(x, 0, 10);
    int p2 = start_redis_bus(x, 1, 10);
    struct bus_client *a = bc_connect(p1, NULL), *b = bc_connect(p2, NULL);
    bc_join(a, "lobby", "general");
    bc_join(b, "lobby", "general");
    struct ack first = publish(a, "lobby", "general", 1);
    struct ack second = publish(b, "lobby", "general", 2);
    struct ack third = publish(a, "lobby", "general", 3);
    assert_int_equal(first.offset, 1);
    assert_int_equal(second.offset, 2);
    assert_int_equal(third.offset, 3);
    assert_string_equal(first.epoch, second.epoch);

    /* Both nodes at once: every offset given once. */
    for (int n = 0; n < 4; n++) {
        send_msg(a, "lobby", "general", 100 + n);
        send_msg(b, "lobby", "general", 200 + n);
    }
    int seen[16] = {0};
    json_int_t by_n[300] = {0};
    for (int n = 0; n < 8; n++) {
        json_t *fr = bc_expect(n % 2 ? b : a, "message_response", 5000);
        struct ack k = ack_of(fr);
        json_decref(fr);
        assert_true(k.offset >= 4 && k.offset <= 11);
        assert_int_equal(seen[k.offset]++, 0);
        assert_string_equal(k.epoch, first.epoch);
        by_n[atoi(k.id + strlen("arq_1700000000000_"))] = k.offset;
    }
    /* Either node's history: the same 10 newest, with the offsets the acks gave. */
    json_t *h1 = history(a, "{s:s, s:s}", "room", "lobby", "channel", "general");
    json_t *h2 = history(b, "{s:s, s:s}", "room", "lobby", "channel", "general");
    assert_true(json_equal(h1, h2));
    assert_int_equal(json_integer_value(json_object_get(h1, "count")), 10);
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(h1, "entries"), i, e)
    {
        int n = (int)json_integer_value(json_object_get(e, "n"));
        json_int_t off = json_integer_value(json_object_get(e, "offset"));
        assert_int_equal(off, (json_int_t)i + 2);
        if (n >= 100)
            assert_int_equal(by_n[n], off);
    }
    json_decref(h1);
    json_decref(h2);
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(x->bus[0]), 0);
    assert_int_equal(h_stop(x->bus[1]), 0);
}

static void test_recovery_after_a_disconnect_returns_exactly_the_missed_messages(void **state)
{
    struct rfx *x = *state;
    redis_up(x, 0);
    int port = start_redis_bus(x, 0, 100);
    struct bus_client *a = bc_connect(port, NULL), *b = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    bc_join(b, "lobby", "general");
    struct ack last = {0};
    for (int n = 1; n <= 3; n++)
        last = publish(a, "lobby", "general", n);
    for (int n = 1; n <= 3; n++)
        json_decref(bc_expect(b, "message", 5000));
    bc_free(b); /* b saw 1..3 */
    for (int n = 4; n <= 7; n++)
        publish(a, "lobby", "general", n);

    b = bc_connect(port, NULL);
    json_t *r;
    const json_t *d = history_raw(b, &r, "{s:s, s:s, s:I, s:s}", "room", "lobby", "channel",
                                  "general", "since_offset", last.offset, "epoch", last.epoch);
    assert_true(json_is_true(json_object_get(d, "recovered")));
    assert_string_equal(bc_str(d, "epoch"), last.epoch);
    const json_t *entries = json_object_get(d, "entries");
    assert_int_equal(json_array_size(entries), 4);
    for (size_t i = 0; i < 4; i++) {
        const json_t *e = json_array_get(entries, i);
        assert_int_equal(payload_n(json_object_get(e, "envelope")), 4 + (int)i);
        assert_int_equal(json_integer_value(json_object_get(e, "offset")), 4 + (int)i);
    }
    json_decref(r);

    /* join_channel with the position: the history, then live, no gap and no duplicate, while
     * messages keep coming. */
    bc_free(b);
    b = bc_connect(port, NULL);
    struct bus_client *pub = bc_connect(port, "/?ack=0");
    bc_join(pub, "lobby", "general");
    json_t *cmd =
        json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:I, s:s}}", "id", "arq_1700000000000_9_abcdef",
                  "type", "command", "command", "join_channel", "args", "room", "lobby", "channel",
                  "general", "since_offset", last.offset, "epoch", last.epoch);
    char *text = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    for (int n = 8; n <= 20; n++) {
        if (n == 10)
            assert_int_equal(ws_send_text(b->ws, text, strlen(text)), 0);
        send_msg(pub, "lobby", "general", n);
    }
    free(text);
    int next = 4;
    json_t *resp = bc_expect(b, "response", 5000);
    const json_t *hist =
        json_object_get(json_object_get(json_object_get(resp, "payload"), "data"), "history");
    assert_true(json_is_true(json_object_get(hist, "recovered")));
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(hist, "entries"), i, e)
        assert_int_equal(payload_n(json_object_get(e, "envelope")), next++);
    json_decref(resp);
    /* ...and nothing twice: a later marker is the very next message. */
    send_msg(pub, "lobby", "general", 21);
    while (next <= 21) {
        json_t *m = bc_expect(b, "message", 5000);
        assert_int_equal(payload_n(m), next++);
        json_decref(m);
    }
    bc_free(a);
    bc_free(b);
    bc_free(pub);
    assert_int_equal(h_stop(x->bus[0]), 0);
}

static void test_a_deleted_stream_is_reported_as_a_new_epoch(void **state)
{
    struct rfx *x = *state;
    redis_up(x, 0);
    int port = start_redis_bus(x, 0, 10);
    struct bus_client *a = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    struct ack last = {0};
    for (int n = 1; n <= 3; n++)
        last = publish(a, "lobby", "general", n);
    redisReply *r = redis_server_cmd(&x->rs, "DEL it:{lobby}:general");
    assert_non_null(r);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);

    json_t *resp;
    const json_t *d = history_raw(a, &resp, "{s:s, s:s, s:I, s:s}", "room", "lobby", "channel",
                                  "general", "since_offset", last.offset, "epoch", last.epoch);
    assert_false(json_is_true(json_object_get(d, "recovered")));
    assert_int_equal(json_integer_value(json_object_get(d, "count")), 0);
    char epoch[64];
    snprintf(epoch, sizeof epoch, "%s", bc_str(d, "epoch"));
    assert_string_not_equal(epoch, last.epoch);
    json_decref(resp);
    struct ack next = publish(a, "lobby", "general", 4);
    assert_int_equal(next.offset, 1);
    assert_string_equal(next.epoch, epoch);
    bc_free(a);
    assert_int_equal(h_stop(x->bus[0]), 0);
}

static void test_redis_killed_while_clients_publish_loses_nothing_acknowledged(void **state)
{
    struct rfx *x = *state;
    redis_up(x, 1); /* appendfsync always: what Redis acknowledged survives SIGKILL */
    char events[600];
    snprintf(events, sizeof events, "%s/events.jsonl", x->bus[0]->logs);
    h_write(x->bus[0]->dir, "90-events.yaml",
            "plugins:\n  events:\n    module: telemetry-log\n    config:\n      path: %s\n"
            "      events: [storage_fallback, storage_recovered]\n",
            events);
    int port = start_redis_bus(x, 0, 10000);
    struct bus_client *pub = bc_connect(port, NULL), *sub = bc_connect(port, NULL);
    struct bus_client *watch = bc_connect(port, NULL);
    bc_join(pub, "lobby", "general");
    bc_join(sub, "lobby", "general");
    assert_int_equal(wait_health(watch, "healthy", 5000), 0);

    enum { TOTAL = 300, KILL_AT = 100, RESTART_AT = 200 };
    int live = 0, degraded_seen = 0;
    for (int n = 1; n <= TOTAL; n++) {
        struct ack a = publish(pub, "lobby", "general", n);
        assert_true(a.offset > 0); /* stored: in Redis, or buffered for it */
        /* Live delivery does not wait for storage. */
        json_t *m = bc_expect(sub, "message", 5000);
        assert_int_equal(payload_n(m), n);
        json_decref(m);
        live++;
        if (n == KILL_AT) {
            redis_server_signal(&x->rs, SIGKILL);
            assert_int_equal(wait_health(watch, "degraded", 5000), 0);
            char health[32], detail[512];
            storage_health(watch, health, sizeof health, detail, sizeof detail);
            assert_non_null(strstr(detail, "unreachable"));
            degraded_seen = 1;
        } else if (n == RESTART_AT) {
            sleep_ms(2000); /* "a few seconds later" */
            assert_int_equal(redis_server_restart(&x->rs), 0);
        }
        if (n > KILL_AT && n < RESTART_AT)
            sleep_ms(10);
    }
    assert_int_equal(live, TOTAL);
    assert_true(degraded_seen);
    assert_int_equal(wait_health(watch, "healthy", 15000), 0);

    static int ns[TOTAL + 10];
    size_t n = stream_ns(x, "it:{lobby}:general", ns, TOTAL + 10);
    assert_int_equal(n, TOTAL);
    for (int i = 0; i < TOTAL; i++)
        assert_int_equal(ns[i], i + 1);
    bc_free(pub);
    bc_free(sub);
    bc_free(watch);
    assert_int_equal(h_stop(x->bus[0]), 0);

    /* The storage's own events (the stop hands every one to the sinks first): it fell back,
     * and its last word is that it recovered, having replayed all it had buffered. */
    char *text = h_slurp(events);
    int fallbacks = 0, recoveries = 0;
    json_t *last = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *ev = json_loads(line, 0, NULL);
        assert_non_null(ev);
        if (!strcmp(h_str(ev, "event_type"), "storage_fallback"))
            fallbacks++;
        else if (!strcmp(h_str(ev, "event_type"), "storage_recovered"))
            recoveries++;
        json_decref(last);
        last = ev;
    }
    free(text);
    assert_true(fallbacks >= 1);
    assert_int_equal(recoveries, fallbacks);
    assert_non_null(last);
    assert_string_equal(h_str(last, "event_type"), "storage_recovered");
    const json_t *data = json_object_get(last, "data");
    assert_true(json_integer_value(json_object_get(data, "buffered")) > 0);
    assert_int_equal(json_integer_value(json_object_get(data, "replayed")),
                     json_integer_value(json_object_get(data, "buffered")));
    json_decref(last);
}

static void test_redis_absent_at_start_serves_history_from_memory_then_replays(void **state)
{
    struct rfx *x = *state;
    x->redis_port = redis_server_free_port();
    int port = start_redis_bus(x, 0, 10);
    struct bus_client *a = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    assert_int_equal(wait_health(a, "degraded", 5000), 0);
    for (int n = 1; n <= 3; n++)
        assert_int_equal(publish(a, "lobby", "general", n).offset, n);
    json_t *h = history(a, "{s:s, s:s}", "room", "lobby", "channel", "general");
    assert_int_equal(json_integer_value(json_object_get(h, "count")), 3);
    json_decref(h);

    assert_int_equal(redis_server_start(&x->rs, x->redis_port), 0);
    assert_int_equal(wait_health(a, "healthy", 15000), 0);
    int ns[8];
    assert_int_equal(stream_ns(x, "it:{lobby}:general", ns, 8), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ns[i], i + 1);
    bc_free(a);
    assert_int_equal(h_stop(x->bus[0]), 0);
}

static void test_strict_mode_without_redis_answers_storage_unavailable(void **state)
{
    struct rfx *x = *state;
    x->redis_port = redis_server_free_port();
    char storage[512];
    snprintf(storage, sizeof storage,
             "  history:\n    module: storage-redis\n    config:\n"
             "      url: redis://127.0.0.1:%d\n      mode: strict\n",
             x->redis_port);
    h_write(x->bus[0]->dir, "00.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  ws:\n    module: transport-websocket\n"
            "    config:\n      host: 127.0.0.1\n      port: 0\n"
            "  builtin:\n    module: commands-builtin\n%s",
            ARQ_BUILD_PLUGIN_DIR, storage);
    char *out;
    const char *check[] = {"--check-config", "-c", x->bus[0]->dir, NULL};
    int rc = h_run(check, &out);
    if (rc != 0)
        fail_msg("--check-config: %d\n%s", rc, out);
    free(out);

    h_spawn(&x->bus[0]->p, x->bus[0]->dir, x->bus[0]->logs, NULL, NULL);
    int port = bc_port(&x->bus[0]->p);
    struct bus_client *a = bc_connect(port, NULL), *b = bc_connect(port, NULL);
    bc_join(a, "lobby", "general");
    bc_join(b, "lobby", "general");
    assert_int_equal(wait_health(a, "down", 5000), 0);
    json_t *r = bc_command(a, "history", "{s:s, s:s}", "room", "lobby", "channel", "general");
    assert_string_equal(bc_str(r, "error_code"), "STORAGE_UNAVAILABLE");
    json_decref(r);
    /* Messages still flow; their acks carry no offset. */
    struct ack k = publish(a, "lobby", "general", 1);
    assert_int_equal(k.offset, 0);
    json_t *m = bc_expect(b, "message", 5000);
    assert_int_equal(payload_n(m), 1);
    json_decref(m);
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(x->bus[0]), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_memory_and_redis_answer_the_same_traffic_alike, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_two_nodes_sharing_redis_agree_on_offsets, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_recovery_after_a_disconnect_returns_exactly_the_missed_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_deleted_stream_is_reported_as_a_new_epoch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_redis_killed_while_clients_publish_loses_nothing_acknowledged, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_redis_absent_at_start_serves_history_from_memory_then_replays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_mode_without_redis_answers_storage_unavailable,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
