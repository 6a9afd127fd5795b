/* The cluster: several arqonbusd nodes joined through a real redis-server by broker-redis, all
 * on 127.0.0.1. Room, channel and direct messages reach every recipient on every node exactly
 * once and never the sender; one sender's order is kept on every node; the listings, presence
 * and `status` describe the whole cluster; a node killed with SIGKILL leaves the listings
 * within node_ttl; Redis restarted under traffic (what was sent meanwhile counted as lost);
 * recovery by offset and epoch on another node; sharded pub/sub over two Redis servers; and
 * three nodes started from the shipped conf.d behind a real HAProxy. */
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
#include "haproxy.h"
#include "http_client.h"
#include "redis_server.h"
#include "scrape.h"

enum { MAX_NODES = 3, MAX_CLIENTS = 32 };

/* Up to three nodes, two Redis servers, an HAProxy and the clients of a test, all stopped or
 * closed by teardown (also when a test fails half-way). */
struct cfx {
    struct fixture *node[MAX_NODES];
    struct redis_server rs[2];
    struct haproxy hp;
    struct bus_client *clients[MAX_CLIENTS];
    int nclients;
};

static int setup(void **state)
{
    struct cfx *x = calloc(1, sizeof *x);
    if (!x)
        return -1;
    for (int i = 0; i < MAX_NODES; i++)
        if (h_setup((void **)&x->node[i]) != 0)
            return -1;
    if (redis_server_start(&x->rs[0], 0) != 0)
        return -1;
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct cfx *x = *state;
    for (int i = 0; i < x->nclients; i++)
        bc_free(x->clients[i]);
    haproxy_cleanup(&x->hp);
    for (int i = 0; i < MAX_NODES; i++)
        h_teardown((void **)&x->node[i]);
    for (int i = 0; i < 2; i++)
        redis_server_cleanup(&x->rs[i]);
    free(x);
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- nodes ----------------------------------------------------------------------------------- */

/* What differs between the nodes of a test. */
struct node_opts {
    const char *broker_url; /* NULL: the first Redis */
    const char *broker;     /* more lines under the broker's config: (indented 6) */
    const char *storage;    /* a storage instance under plugins: (indented 2), or NULL */
    int presence;           /* bus.presence: ["*"] */
};

static const struct node_opts plain = {0};

static int ws_port(struct cfx *x, int i)
{
    return h_port(&x->node[i]->p, "ws");
}

static int http_port(struct cfx *x, int i)
{
    return h_port(&x->node[i]->p, "http");
}

/* Node i ("n1", "n2", ...) listens on 127.0.0.1 on its ws and http ports, and only there. */
static void expect_node_up(struct cfx *x, int i)
{
    struct proc *p = &x->node[i]->p;
    if (h_wait_ready(p) != 0)
        fail_msg("node n%d did not start", i + 1);
    int ports[2] = {ws_port(x, i), http_port(x, i)};
    for (int k = 0; k < 2; k++) {
        struct h_listener l;
        if (!h_wait_listener(p->pid, ports[k], 0, 10000) || h_listener(p->pid, ports[k], &l) != 0)
            fail_msg("node n%d does not listen on %d", i + 1, ports[k]);
        assert_string_equal(l.addr, "127.0.0.1");
    }
}

/* Start nodes n1..n<count> from a conf.d written here: the WebSocket and HTTP transports, the
 * built-in commands, the broker (node_ttl 1s) and what `o` adds. */
static void start_nodes(struct cfx *x, int count, const struct node_opts *o)
{
    char url[256];
    if (o->broker_url)
        snprintf(url, sizeof url, "%s", o->broker_url);
    else
        redis_server_url(&x->rs[0], url, sizeof url);
    for (int i = 0; i < count; i++) {
        struct fixture *f = x->node[i];
        h_write(f->dir, "00.yaml",
                "host:\n  plugin_dir: %s\n  node: n%d\n"
                "%s"
                "plugins:\n"
                "  ws:\n    module: transport-websocket\n"
                "    config:\n      host: 127.0.0.1\n      port: %d\n"
                "  http:\n    module: transport-http\n"
                "    config:\n      host: 127.0.0.1\n      port: %d\n"
                "  builtin:\n    module: commands-builtin\n"
                "  broker:\n    module: broker-redis\n"
                "    config:\n      url: \"%s\"\n      node_ttl: 1s\n%s"
                "%s",
                ARQ_BUILD_PLUGIN_DIR, i + 1, o->presence ? "bus:\n  presence: [\"*\"]\n" : "",
                ws_port(x, i), http_port(x, i), url, o->broker ? o->broker : "",
                o->storage ? o->storage : "");
        h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    }
    for (int i = 0; i < count; i++)
        expect_node_up(x, i);
}

/* SIGTERM to every node still running, and each exits with 0 (under the sanitizers: nothing
 * leaked, nothing undefined). */
static void stop_nodes(struct cfx *x)
{
    int running[MAX_NODES];
    for (int i = 0; i < MAX_NODES; i++) {
        struct proc *p = &x->node[i]->p;
        running[i] = p->pid > 0 && p->status < 0;
        if (running[i])
            h_kill(p, SIGTERM);
    }
    for (int i = 0; i < MAX_NODES; i++)
        if (running[i] && h_wait_exit(&x->node[i]->p, 10000) != 0)
            fail_msg("node n%d exited with %d", i + 1, x->node[i]->p.status);
}

/* --- clients --------------------------------------------------------------------------------- */

/* A client connected to 127.0.0.1:port, closed by teardown. */
static struct bus_client *client_at(struct cfx *x, int port)
{
    assert_true(x->nclients < MAX_CLIENTS);
    struct bus_client *c = bc_connect(port, NULL);
    x->clients[x->nclients++] = c;
    return c;
}

/* A client of node i, which says so in its welcome. */
static struct bus_client *client(struct cfx *x, int i)
{
    struct bus_client *c = client_at(x, ws_port(x, i));
    char node[16];
    snprintf(node, sizeof node, "n%d", i + 1);
    assert_string_equal(c->node, node);
    return c;
}

/* Close c now (teardown then skips it). */
static void client_close(struct cfx *x, struct bus_client *c)
{
    for (int i = 0; i < x->nclients; i++)
        if (x->clients[i] == c) {
            x->clients[i] = x->clients[--x->nclients];
            bc_free(c);
            return;
        }
    fail_msg("not a client of this test");
}

static void leave(struct bus_client *c, const char *room, const char *channel)
{
    json_t *r;
    bc_command_ok(c, &r, "leave_channel", "{s:s, s:s}", "room", room, "channel", channel);
    json_decref(r);
}

/* Message {t: tag, n: n} to room/channel (channel NULL: room-wide). */
static void publish(struct bus_client *c, const char *room, const char *channel, const char *tag,
                    int n)
{
    if (channel)
        bc_send(c, "{s:s, s:s, s:s, s:{s:s, s:i}}", "type", "message", "room", room, "channel",
                channel, "payload", "t", tag, "n", n);
    else
        bc_send(c, "{s:s, s:s, s:{s:s, s:i}}", "type", "message", "room", room, "payload", "t", tag,
                "n", n);
}

/* Direct message {t: tag, n: n} to client `to`. */
static void direct(struct bus_client *c, const char *to, const char *tag, int n)
{
    bc_send(c, "{s:s, s:s, s:{s:s, s:i}}", "type", "message", "to_client", to, "payload", "t", tag,
            "n", n);
}

static void fail_frame(const struct bus_client *c, const char *want, const json_t *got)
{
    char *text = got ? json_dumps(got, JSON_COMPACT) : NULL;
    fail_msg("%s on %s: expected %s, got %s", c->id, c->node, want, text ? text : "nothing");
}

/* The next frame of c, whatever it is (fails after 5 s). */
static json_t *next_frame(struct bus_client *c)
{
    json_t *o = bc_recv(c, 5000);
    if (!o)
        fail_frame(c, "a frame", NULL);
    return o;
}

static int payload_n(const json_t *frame)
{
    return (int)json_integer_value(json_object_get(json_object_get(frame, "payload"), "n"));
}

static const char *payload_t(const json_t *frame)
{
    return bc_str(json_object_get(frame, "payload"), "t");
}

/* The next frame of c is message {t: tag, n: n} from `from`: nothing came in between. */
static void expect_msg(struct bus_client *c, const struct bus_client *from, const char *tag, int n)
{
    json_t *o = next_frame(c);
    if (strcmp(bc_str(o, "type"), "message") != 0 || strcmp(payload_t(o), tag) != 0 ||
        payload_n(o) != n || strcmp(bc_str(o, "sender"), from->id) != 0) {
        char want[160];
        snprintf(want, sizeof want, "message %s %d from %s", tag, n, from->id);
        fail_frame(c, want, o);
    }
    json_decref(o);
}

/* The next frame of c is the ack of a message; its `delivered` is `delivered`. Returns it. */
static json_t *expect_ack(struct bus_client *c, int delivered)
{
    json_t *o = next_frame(c);
    const json_t *p = json_object_get(o, "payload");
    if (strcmp(bc_str(o, "type"), "message_response") != 0 ||
        strcmp(bc_str(o, "status"), "success") != 0 ||
        json_integer_value(json_object_get(p, "delivered")) != delivered) {
        char want[64];
        snprintf(want, sizeof want, "an ack with delivered %d", delivered);
        fail_frame(c, want, o);
    }
    return o;
}

static void acked(struct bus_client *c, int delivered)
{
    json_decref(expect_ack(c, delivered));
}

/* The next frame of c is presence `event` (joined, left) of `who` in room/channel. */
static void expect_presence(struct bus_client *c, const char *room, const char *channel,
                            const char *event, const struct bus_client *who)
{
    json_t *o = next_frame(c);
    const json_t *p = json_object_get(o, "payload");
    if (strcmp(bc_str(o, "type"), "message") != 0 || strcmp(bc_str(o, "sender"), "arqonbus") ||
        strcmp(bc_str(o, "room"), room) || strcmp(bc_str(o, "channel"), channel) ||
        strcmp(bc_str(p, "event"), event) || strcmp(bc_str(p, "client_id"), who->id)) {
        char want[160];
        snprintf(want, sizeof want, "presence %s of %s in %s/%s", event, who->id, room, channel);
        fail_frame(c, want, o);
    }
    json_decref(o);
}

/* --- listings -------------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The strings of `arr` (or arr[i][key]), sorted and joined with ',' into out. */
static void sorted_join(const json_t *arr, const char *key, char *out, size_t size)
{
    const char *s[64];
    size_t n = 0, i;
    const json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (n < 64)
            s[n++] = json_string_value(key ? json_object_get(v, key) : v);
    }
    for (i = 0; i < n; i++)
        if (!s[i])
            s[i] = "?";
    qsort(s, n, sizeof s[0], cmp_str);
    size_t len = 0;
    out[0] = '\0';
    for (i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%s", i ? "," : "", s[i]);
}

/* The ids of clients cs, sorted and joined as sorted_join does. */
static void ids_of(struct bus_client *const *cs, size_t n, char *out, size_t size)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_string(cs[i]->id));
    sorted_join(arr, NULL, out, size);
    json_decref(arr);
}

/* channel_info's member ids as c's node answers, sorted and joined; "-" when it has no such
 * channel; the member count must agree with the ids. */
static void channel_ids(struct bus_client *c, const char *room, const char *channel, char *out,
                        size_t size)
{
    json_t *r = bc_command(c, "channel_info", "{s:s, s:s}", "room", room, "channel", channel);
    if (strcmp(bc_str(r, "status"), "success") != 0) {
        snprintf(out, size, "-");
    } else {
        const json_t *d = json_object_get(json_object_get(r, "payload"), "data");
        const json_t *ids = json_object_get(d, "member_ids");
        sorted_join(ids, NULL, out, size);
        json_int_t members = json_integer_value(json_object_get(d, "members"));
        if (members != (json_int_t)json_array_size(ids))
            snprintf(out, size, "members %lld but %zu ids", (long long)members,
                     json_array_size(ids));
    }
    json_decref(r);
}

/* Wait until c's node lists exactly `members` in room/channel (channel_info). */
static void wait_channel_members(struct bus_client *c, const char *room, const char *channel,
                                 struct bus_client *const *members, size_t n, int timeout_ms)
{
    char want[2048], got[2048] = "";
    ids_of(members, n, want, sizeof want);
    for (long long end = now_ms() + h_ms(timeout_ms);;) {
        channel_ids(c, room, channel, got, sizeof got);
        if (!strcmp(got, want))
            return;
        if (now_ms() > end)
            fail_msg("%s/%s on %s: members %s, wanted %s", room, channel, c->node, got, want);
        sleep_ms(50);
    }
}

/* Everything c's node lists, as one line: the rooms "room:members:channels", then for every
 * room its channels "room/channel=members", then every channel's member ids. */
static void listing(struct bus_client *c, char *out, size_t size)
{
    json_t *r;
    const json_t *d = bc_command_ok(c, &r, "list_rooms", NULL);
    json_t *rooms = json_array(), *lines = json_array();
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(d, "rooms"), i, v)
    {
        char line[256];
        snprintf(line, sizeof line, "%s:%lld:%lld", bc_str(v, "room"),
                 (long long)json_integer_value(json_object_get(v, "members")),
                 (long long)json_integer_value(json_object_get(v, "channels")));
        json_array_append_new(lines, json_string(line));
        json_array_append_new(rooms, json_string(bc_str(v, "room")));
    }
    json_decref(r);
    json_array_foreach(rooms, i, v)
    {
        const char *room = json_string_value(v);
        d = bc_command_ok(c, &r, "list_channels", "{s:s}", "room", room);
        size_t k;
        const json_t *ch;
        json_array_foreach(json_object_get(d, "channels"), k, ch)
        {
            char line[1024], ids[800];
            channel_ids(c, room, bc_str(ch, "channel"), ids, sizeof ids);
            snprintf(line, sizeof line, "%s/%s=%lld[%s]", room, bc_str(ch, "channel"),
                     (long long)json_integer_value(json_object_get(ch, "members")), ids);
            json_array_append_new(lines, json_string(line));
        }
        json_decref(r);
    }
    sorted_join(lines, NULL, out, size);
    json_decref(lines);
    json_decref(rooms);
}

/* Wait until c's node lists what `want` says (listing()). */
static void wait_listing(struct bus_client *c, const char *want, int timeout_ms)
{
    char got[4096] = "";
    for (long long end = now_ms() + h_ms(timeout_ms);;) {
        listing(c, got, sizeof got);
        if (!strcmp(got, want))
            return;
        if (now_ms() > end)
            fail_msg("%s lists\n  %s\nwanted\n  %s", c->node, got, want);
        sleep_ms(50);
    }
}

/* --- HTTP ------------------------------------------------------------------------------------ */

/* GET path on 127.0.0.1:port as JSON; its status into *status. */
static json_t *http_json(int port, const char *path, int *status)
{
    struct http_resp r;
    char err[256];
    if (http_request("127.0.0.1", port, "GET", path, NULL, NULL, 0, h_ms(5000), &r, err,
                     sizeof err) != 0)
        fail_msg("GET %s on %d: %s", path, port, err);
    json_error_t jerr;
    json_t *o = json_loadb(r.body, r.body_len, 0, &jerr);
    if (!o)
        fail_msg("GET %s on %d: not JSON (%s): %s", path, port, jerr.text, r.body);
    *status = r.status;
    http_resp_free(&r);
    return o;
}

/* cluster.nodes of a status answer as "node:clients,...", sorted. */
static void nodes_of(const json_t *status, char *out, size_t size)
{
    json_t *lines = json_array();
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(json_object_get(status, "cluster"), "nodes"), i, v)
    {
        char line[128];
        snprintf(line, sizeof line, "%s:%lld", bc_str(v, "node"),
                 (long long)json_integer_value(json_object_get(v, "clients")));
        json_array_append_new(lines, json_string(line));
    }
    sorted_join(lines, NULL, out, size);
    json_decref(lines);
}

/* Wait until GET /status on http port `port` lists the nodes `want` (nodes_of). */
static void wait_nodes(int port, const char *want, int timeout_ms)
{
    char got[512] = "";
    for (long long end = now_ms() + h_ms(timeout_ms);;) {
        int status;
        json_t *st = http_json(port, "/status", &status);
        assert_int_equal(status, 200);
        nodes_of(st, got, sizeof got);
        json_decref(st);
        if (!strcmp(got, want))
            return;
        if (now_ms() > end)
            fail_msg("/status on %d: cluster nodes %s, wanted %s", port, got, want);
        sleep_ms(100);
    }
}

/* Wait until GET /health on `port` reports the broker healthy (200, checks.broker.status
 * "healthy") or, `healthy` 0, failing (503, the broker named in `failing`). */
static void wait_health(int port, int healthy, int timeout_ms)
{
    char got[512] = "";
    for (long long end = now_ms() + h_ms(timeout_ms);;) {
        int status;
        json_t *h = http_json(port, "/health", &status);
        const char *b = bc_str(json_object_get(json_object_get(h, "checks"), "broker"), "status");
        int failing = 0;
        size_t i;
        const json_t *v;
        json_array_foreach(json_object_get(h, "failing"), i, v)
        {
            failing |= !strcmp(json_string_value(v), "broker");
        }
        int ok = healthy ? status == 200 && !strcmp(b, "healthy") && !failing
                         : status == 503 && b[0] && strcmp(b, "healthy") != 0 && failing;
        char *text = json_dumps(h, JSON_COMPACT);
        snprintf(got, sizeof got, "%d %s", status, text);
        free(text);
        json_decref(h);
        if (ok)
            return;
        if (now_ms() > end)
            fail_msg("/health on %d: %s; wanted the broker %s", port, got,
                     healthy ? "healthy" : "failing");
        sleep_ms(50);
    }
}

/* --- 1. room, channel and direct messages --------------------------------------------------- */

static void test_messages_reach_every_node_once_and_never_the_sender(void **state)
{
    struct cfx *x = *state;
    start_nodes(x, 3, &plain);
    /* Two members of lobby/general on every node (a[0] sends), and on n3 a member of the
     * room only. */
    struct bus_client *a[3], *b[3], *all[6];
    for (int i = 0; i < 3; i++) {
        all[2 * i] = a[i] = client(x, i);
        all[2 * i + 1] = b[i] = client(x, i);
        bc_join(a[i], "lobby", "general");
        bc_join(b[i], "lobby", "general");
    }
    struct bus_client *r = client(x, 2);
    bc_join(r, "lobby", NULL);
    struct bus_client *to[] = {b[0], a[1], b[1], a[2], b[2]}; /* everyone in the channel but a[0] */
    wait_channel_members(a[0], "lobby", "general", all, 6, 5000);

    /* Two channel messages: each member gets the first, then the second, with no copy in
     * between. The ack counts this node's recipient only (b[0]). */
    publish(a[0], "lobby", "general", "ch", 1);
    acked(a[0], 1);
    publish(a[0], "lobby", "general", "ch", 2);
    acked(a[0], 1);
    for (size_t i = 0; i < 5; i++) {
        expect_msg(to[i], a[0], "ch", 1);
        expect_msg(to[i], a[0], "ch", 2);
    }
    /* Room-wide: the channel members and the room member, each once; r's first message
     * is this one (it got none of the channel's). */
    publish(a[0], "lobby", NULL, "room", 1);
    acked(a[0], 1);
    publish(a[0], "lobby", NULL, "room", 2);
    acked(a[0], 1);
    for (size_t i = 0; i < 5; i++) {
        expect_msg(to[i], a[0], "room", 1);
        expect_msg(to[i], a[0], "room", 2);
    }
    expect_msg(r, a[0], "room", 1);
    expect_msg(r, a[0], "room", 2);
    /* Direct: to a client of n3 (1 delivered: sent to its node), and to one of n1. */
    direct(a[0], b[2]->id, "dm", 1);
    acked(a[0], 1);
    direct(a[0], b[2]->id, "dm", 2);
    acked(a[0], 1);
    direct(a[0], b[0]->id, "dm", 3);
    acked(a[0], 1);
    expect_msg(b[2], a[0], "dm", 1);
    expect_msg(b[2], a[0], "dm", 2);
    expect_msg(b[0], a[0], "dm", 3);
    /* A marker in the channel comes next for every member: no late copy of the direct
     * messages anywhere, nor of the channel and room messages. */
    publish(a[0], "lobby", "general", "end", 1);
    acked(a[0], 1);
    for (size_t i = 0; i < 5; i++)
        expect_msg(to[i], a[0], "end", 1);
    /* The sender never gets its own messages: what it receives next is b[1]'s reply (from
     * n2), sent after everything of a[0]'s had gone round the cluster. */
    publish(b[1], "lobby", "general", "reply", 1);
    acked(b[1], 1);
    expect_msg(a[0], b[1], "reply", 1);
    struct bus_client *others[] = {b[0], a[1], a[2], b[2]};
    for (size_t i = 0; i < 4; i++)
        expect_msg(others[i], b[1], "reply", 1);
    for (int i = 0; i < 6; i++)
        bc_expect_nothing(all[i]);
    bc_expect_nothing(r);
    stop_nodes(x);
}

/* --- 2. per-sender order --------------------------------------------------------------------- */

/* Read c's frames until it has had `want_a` messages tagged "A" and `want_b` tagged "B" and
 * `acks` acks: each sender's numbers must come 1, 2, 3, ... */
static void read_in_order(struct bus_client *c, int want_a, int want_b, int acks)
{
    int next[2] = {1, 1}, got_acks = 0;
    while (next[0] <= want_a || next[1] <= want_b || got_acks < acks) {
        json_t *o = next_frame(c);
        if (!strcmp(bc_str(o, "type"), "message_response")) {
            got_acks++;
        } else {
            const char *t = payload_t(o);
            int k = !strcmp(t, "A") ? 0 : !strcmp(t, "B") ? 1 : -1;
            if (k < 0 || payload_n(o) != next[k]) {
                char want[64];
                snprintf(want, sizeof want, "A %d or B %d", next[0], next[1]);
                fail_frame(c, want, o);
            }
            next[k]++;
        }
        json_decref(o);
    }
    assert_int_equal(next[0], want_a + 1);
    assert_int_equal(next[1], want_b + 1);
}

static void test_one_senders_order_is_kept_on_every_node(void **state)
{
    struct cfx *x = *state;
    start_nodes(x, 3, &plain);
    enum { N = 500 };
    /* Sender A on n1, sender B on n2 (each a member too), a reader on every node. */
    struct bus_client *sa = client(x, 0), *sb = client(x, 1);
    struct bus_client *rd[3] = {client(x, 0), client(x, 1), client(x, 2)};
    struct bus_client *all[] = {sa, sb, rd[0], rd[1], rd[2]};
    for (int i = 0; i < 5; i++)
        bc_join(all[i], "order", "seq");
    wait_channel_members(sa, "order", "seq", all, 5, 5000);
    wait_channel_members(sb, "order", "seq", all, 5, 5000);
    for (int n = 1; n <= N; n++) {
        publish(sa, "order", "seq", "A", n);
        publish(sb, "order", "seq", "B", n);
    }
    for (int i = 0; i < 3; i++)
        read_in_order(rd[i], N, N, 0);
    read_in_order(sa, 0, N, N);
    read_in_order(sb, N, 0, N);
    for (int i = 0; i < 5; i++)
        bc_expect_nothing(all[i]);
    stop_nodes(x);
}

/* --- 3. listings and presence ---------------------------------------------------------------- */

static void test_listings_agree_and_presence_crosses_nodes_once(void **state)
{
    struct cfx *x = *state;
    struct node_opts o = {.presence = 1};
    start_nodes(x, 3, &o);
    struct bus_client *c1 = client(x, 0), *c2 = client(x, 1), *c3 = client(x, 2);
    bc_join(c1, "r", "x");
    bc_join(c1, "r", "y");
    bc_join(c2, "r", "x");
    bc_join(c3, "r", NULL);
    bc_join(c3, "r2", "z");
    /* Rooms: r holds 4 memberships in 2 channels, r2 one in one. */
    char want[4096], ids[512];
    struct bus_client *rx[] = {c1, c2};
    ids_of(rx, 2, ids, sizeof ids);
    snprintf(want, sizeof want, "r/x=2[%s],r/y=1[%s],r2/z=1[%s],r2:1:1,r:4:2", ids, c1->id, c3->id);
    struct bus_client *at[] = {c1, c2, c3};
    for (int i = 0; i < 3; i++)
        wait_listing(at[i], want, 5000);
    /* A room whose only member is room-wide, on n3: it exists on n1 too, without channels. */
    bc_join(c3, "bare", NULL);
    for (long long end = now_ms() + h_ms(5000);;) {
        json_t *r = bc_command(c1, "list_channels", "{s:s}", "room", "bare");
        int found = !strcmp(bc_str(r, "status"), "success");
        if (found)
            assert_int_equal(
                json_array_size(json_object_get(
                    json_object_get(json_object_get(r, "payload"), "data"), "channels")),
                0);
        json_decref(r);
        if (found)
            break;
        if (now_ms() > end)
            fail_msg("n1 does not see room bare");
        sleep_ms(50);
    }
    json_t *r = bc_command(c1, "list_channels", "{s:s}", "room", "nowhere");
    assert_string_equal(bc_str(r, "error_code"), "ROOM_NOT_FOUND");
    json_decref(r);

    /* Presence in p/live: m3 (n3) sees m1 (n1) join, then c2 (n2) join and leave, each once:
     * m1's marker, sent after m1 saw the leave, comes next. */
    struct bus_client *m1 = client(x, 0), *m3 = client(x, 2);
    bc_join(m3, "p", "live");
    /* n3's join reaches the cluster (its subscription, then its presence) as the reply goes
     * out: wait until n1 sees it before the event that must reach m3. */
    wait_channel_members(m1, "p", "live", &m3, 1, 5000);
    bc_join(m1, "p", "live");
    expect_presence(m3, "p", "live", "joined", m1);
    bc_join(c2, "p", "live");
    leave(c2, "p", "live");
    expect_presence(m1, "p", "live", "joined", c2);
    expect_presence(m1, "p", "live", "left", c2);
    publish(m1, "p", "live", "marker", 1);
    acked(m1, 0);
    expect_presence(m3, "p", "live", "joined", c2);
    expect_presence(m3, "p", "live", "left", c2);
    expect_msg(m3, m1, "marker", 1);
    bc_expect_nothing(m3);
    stop_nodes(x);
}

/* --- 4. a node killed ------------------------------------------------------------------------ */

static void test_a_killed_nodes_clients_leave_the_cluster_within_node_ttl(void **state)
{
    struct cfx *x = *state;
    start_nodes(x, 3, &plain);
    struct bus_client *a = client(x, 0), *b = client(x, 1), *k = client(x, 2);
    struct bus_client *members[] = {a, b, k};
    for (int i = 0; i < 3; i++)
        bc_join(members[i], "kill", "x");
    bc_join(k, "kill", NULL);
    wait_channel_members(a, "kill", "x", members, 3, 5000);
    wait_nodes(http_port(x, 0), "n1:1,n2:1,n3:1", 5000);

    h_kill(&x->node[2]->p, SIGKILL);
    assert_int_equal(h_wait_exit(&x->node[2]->p, 5000), 128 + SIGKILL);
    /* node_ttl is 1s: gone from every listing of both survivors within a few of them. */
    char want[1024], ids[512];
    ids_of(members, 2, ids, sizeof ids);
    snprintf(want, sizeof want, "kill/x=2[%s],kill:2:1", ids);
    wait_listing(a, want, 4000);
    wait_listing(b, want, 4000);
    wait_nodes(http_port(x, 0), "n1:1,n2:1", 4000);
    /* A direct message to a client of the dead node: as to any client nobody holds. */
    direct(a, k->id, "dm", 1);
    json_t *e = bc_expect(a, "error", 5000);
    char text[200];
    snprintf(text, sizeof text, "Client %s is not connected", k->id);
    assert_string_equal(bc_str(e, "error_code"), "NOT_FOUND");
    assert_string_equal(bc_str(e, "error"), text);
    json_decref(e);
    /* The survivors still talk. */
    publish(a, "kill", "x", "after", 1);
    acked(a, 0);
    expect_msg(b, a, "after", 1);
    stop_nodes(x);
}

/* --- 5. Redis restarted ---------------------------------------------------------------------- */

static void test_traffic_resumes_after_redis_restarts_and_the_outage_is_counted(void **state)
{
    struct cfx *x = *state;
    start_nodes(x, 2, &plain);
    struct bus_client *a = client(x, 0), *b = client(x, 1);
    struct bus_client *members[] = {a, b};
    bc_join(a, "up", "x");
    bc_join(b, "up", "x");
    wait_channel_members(a, "up", "x", members, 2, 5000);
    publish(a, "up", "x", "before", 1);
    acked(a, 0);
    expect_msg(b, a, "before", 1);
    wait_health(http_port(x, 0), 1, 5000);
    const char *lost = "arqonbus_broker_lost_total";
    double lost0 = h_metric(http_port(x, 0), lost);

    /* Redis crashes: the broker reports it, and what a sends meanwhile is acked (delivered
     * locally: nobody) and counted as lost. */
    redis_server_signal(&x->rs[0], SIGKILL);
    wait_health(http_port(x, 0), 0, 5000);
    enum { K = 5 };
    for (int n = 1; n <= K; n++) {
        publish(a, "up", "x", "outage", n);
        acked(a, 0);
    }
    struct prom_doc doc = h_scrape(http_port(x, 0));
    assert_non_null(prom_family(&doc, lost));
    prom_free(&doc);
    assert_true(h_metric(http_port(x, 0), lost) >= lost0 + K);

    /* Redis is back on the same port: a sends until b hears; the first thing b hears is
     * from after the outage. */
    assert_int_equal(redis_server_restart(&x->rs[0]), 0);
    int sent = 0;
    json_t *first = NULL;
    for (long long end = now_ms() + h_ms(10000); !first;) {
        if (now_ms() > end)
            fail_msg("nothing crossed from n1 to n2 within 10 s of Redis coming back");
        publish(a, "up", "x", "again", ++sent);
        first = bc_recv(b, 100);
    }
    if (strcmp(payload_t(first), "again") != 0)
        fail_frame(b, "a message sent after the outage", first);
    json_decref(first);
    for (int n = 0; n < sent; n++)
        acked(a, 0);
    /* Both ways, once each, and the cluster's listings and health are whole again. */
    publish(a, "up", "x", "after", 1);
    acked(a, 0);
    for (;;) {
        json_t *o = next_frame(b);
        int done = !strcmp(payload_t(o), "after");
        if (!done && strcmp(payload_t(o), "again") != 0)
            fail_frame(b, "again, then after", o);
        json_decref(o);
        if (done)
            break;
    }
    publish(b, "up", "x", "back", 1);
    acked(b, 0);
    expect_msg(a, b, "back", 1);
    wait_channel_members(a, "up", "x", members, 2, 5000);
    wait_channel_members(b, "up", "x", members, 2, 5000);
    wait_health(http_port(x, 0), 1, 5000);
    wait_health(http_port(x, 1), 1, 5000);
    stop_nodes(x);
}

/* --- 6. history across nodes ----------------------------------------------------------------- */

static void test_a_client_acked_on_one_node_recovers_on_another(void **state)
{
    struct cfx *x = *state;
    char storage[512];
    snprintf(storage, sizeof storage,
             "  history:\n    module: storage-redis\n    config:\n"
             "      url: redis://127.0.0.1:%d\n      key_prefix: it\n      max_history: 100\n"
             "      connect_timeout: 1s\n",
             x->rs[0].port);
    struct node_opts o = {.storage = storage};
    start_nodes(x, 3, &o);
    struct bus_client *a = client(x, 0), *c = client(x, 2);
    struct bus_client *members[] = {a, c};
    bc_join(a, "hist", "x");
    bc_join(c, "hist", "x");
    wait_channel_members(a, "hist", "x", members, 2, 5000);
    /* a publishes 1..3 on n1; c, on n3, gets them live. */
    char epoch[64] = "";
    for (int n = 1; n <= 3; n++) {
        publish(a, "hist", "x", "h", n);
        json_t *ack = expect_ack(a, 0);
        const json_t *p = json_object_get(ack, "payload");
        assert_int_equal(json_integer_value(json_object_get(p, "offset")), n);
        if (n == 1)
            snprintf(epoch, sizeof epoch, "%s", bc_str(p, "epoch"));
        assert_true(epoch[0] != '\0');
        assert_string_equal(bc_str(p, "epoch"), epoch);
        json_decref(ack);
        expect_msg(c, a, "h", n);
    }
    client_close(x, a);
    /* c publishes 4 and 5 on n3: the same channel's offsets and epoch there. */
    for (int n = 4; n <= 5; n++) {
        publish(c, "hist", "x", "h", n);
        json_t *ack = expect_ack(c, 0);
        const json_t *p = json_object_get(ack, "payload");
        assert_int_equal(json_integer_value(json_object_get(p, "offset")), n);
        assert_string_equal(bc_str(p, "epoch"), epoch);
        json_decref(ack);
    }
    /* a comes back on n2 and joins from offset 3 of that epoch: exactly 4 and 5, then live
     * traffic from n3 follows. */
    struct bus_client *a2 = client(x, 1);
    json_t *r;
    const json_t *d = bc_command_ok(a2, &r, "join_channel", "{s:s, s:s, s:i, s:s}", "room", "hist",
                                    "channel", "x", "since_offset", 3, "epoch", epoch);
    const json_t *h = json_object_get(d, "history");
    assert_true(json_is_true(json_object_get(h, "recovered")));
    assert_string_equal(bc_str(h, "epoch"), epoch);
    const json_t *entries = json_object_get(h, "entries");
    assert_int_equal(json_array_size(entries), 2);
    for (size_t i = 0; i < 2; i++) {
        const json_t *e = json_array_get(entries, i);
        assert_int_equal(json_integer_value(json_object_get(e, "offset")), (json_int_t)(4 + i));
        assert_int_equal(payload_n(json_object_get(e, "envelope")), (int)(4 + i));
    }
    json_decref(r);
    struct bus_client *now[] = {c, a2};
    wait_channel_members(c, "hist", "x", now, 2, 5000);
    publish(c, "hist", "x", "h", 6);
    acked(c, 0);
    expect_msg(a2, c, "h", 6);
    bc_expect_nothing(a2);
    stop_nodes(x);
}

/* --- 7. sharded ------------------------------------------------------------------------------ */

/* cmdstat_<cmd> calls on Redis rs (INFO commandstats), 0 when never called. */
static long long redis_calls(struct redis_server *rs, const char *cmd)
{
    redisReply *r = redis_server_cmd(rs, "INFO commandstats");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char key[64];
    snprintf(key, sizeof key, "cmdstat_%s:calls=", cmd);
    const char *at = strstr(r->str, key);
    long long calls = at ? atoll(at + strlen(key)) : 0;
    freeReplyObject(r);
    return calls;
}

static void test_sharded_pubsub_spreads_rooms_over_two_redis_servers(void **state)
{
    struct cfx *x = *state;
    assert_int_equal(redis_server_start(&x->rs[1], 0), 0);
    char url[256];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d,redis://127.0.0.1:%d", x->rs[0].port,
             x->rs[1].port);
    struct node_opts o = {.broker_url = url, .broker = "      sharded: true\n"};
    start_nodes(x, 3, &o);
    enum { ROOMS = 8 };
    struct bus_client *s = client(x, 0), *r2 = client(x, 1), *r3 = client(x, 2);
    struct bus_client *members[] = {s, r2, r3};
    char room[ROOMS][16];
    for (int i = 0; i < ROOMS; i++) {
        snprintf(room[i], sizeof room[i], "shard%d", i);
        for (int k = 0; k < 3; k++)
            bc_join(members[k], room[i], "x");
    }
    for (int i = 0; i < ROOMS; i++)
        wait_channel_members(s, room[i], "x", members, 3, 5000);
    /* Two rounds of one message per room from n1: both readers get each once (rooms on
     * different shards may interleave, a room's own messages may not). */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < ROOMS; i++) {
            publish(s, room[i], "x", room[i], round);
            acked(s, 0);
        }
        struct bus_client *readers[] = {r2, r3};
        for (int k = 0; k < 2; k++) {
            int seen[ROOMS] = {0};
            for (int got = 0; got < ROOMS; got++) {
                json_t *m = next_frame(readers[k]);
                int i = -1;
                for (int j = 0; j < ROOMS; j++)
                    if (!strcmp(bc_str(m, "room"), room[j]))
                        i = j;
                if (i < 0 || seen[i] || payload_n(m) != round || strcmp(payload_t(m), room[i]) != 0)
                    fail_frame(readers[k], "one message per room of this round", m);
                seen[i] = 1;
                json_decref(m);
            }
        }
    }
    bc_expect_nothing(r2);
    bc_expect_nothing(r3);
    /* Both servers carried some of it, over sharded pub/sub. */
    for (int i = 0; i < 2; i++)
        if (redis_calls(&x->rs[i], "spublish") < 1)
            fail_msg("Redis %d (port %d) carried no SPUBLISH", i, x->rs[i].port);
    stop_nodes(x);
}

/* --- 8. the shipped conf.d behind HAProxy ---------------------------------------------------- */

static void test_shipped_conf_d_nodes_behind_haproxy_act_as_one_bus(void **state)
{
    struct cfx *x = *state;
    /* Three nodes from the repository's conf.d, configured only through its environment. */
    char redis[64];
    snprintf(redis, sizeof redis, "ARQONBUS_REDIS_URL=redis://127.0.0.1:%d", x->rs[0].port);
    for (int i = 0; i < 3; i++) {
        char node[32], ws[40], http[40];
        snprintf(node, sizeof node, "ARQONBUS_NODE_ID=n%d", i + 1);
        snprintf(ws, sizeof ws, "ARQONBUS_SERVER_PORT=%d", ws_port(x, i));
        snprintf(http, sizeof http, "ARQONBUS_HTTP_PORT=%d", http_port(x, i));
        const char *const env[] = {"ARQONBUS_PLUGIN_DIR=" ARQ_BUILD_PLUGIN_DIR,
                                   "ARQONBUS_BROKER=redis",
                                   redis,
                                   node,
                                   ws,
                                   http,
                                   NULL};
        h_spawn(&x->node[i]->p, ARQ_SOURCE_DIR "/conf.d", x->node[i]->logs, NULL, env);
    }
    for (int i = 0; i < 3; i++)
        expect_node_up(x, i);

    /* HAProxy on 127.0.0.1: round robin over the WebSocket ports, each node checked on its
     * /ready, WebSocket connections kept by `timeout tunnel`. */
    int port = h_free_port();
    char cfg[2048];
    int len = snprintf(cfg, sizeof cfg,
                       "defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n"
                       "  timeout server 30s\n  timeout tunnel 1h\n"
                       "frontend bus\n  bind 127.0.0.1:%d\n  default_backend nodes\n"
                       "backend nodes\n  balance roundrobin\n  option httpchk\n"
                       "  http-check send meth GET uri /ready\n  http-check expect status 200\n",
                       port);
    for (int i = 0; i < 3; i++)
        len += snprintf(cfg + len, sizeof cfg - (size_t)len,
                        "  server n%d 127.0.0.1:%d check port %d inter 200ms rise 1 fall 2\n",
                        i + 1, ws_port(x, i), http_port(x, i));
    assert_int_equal(haproxy_start(&x->hp, port, cfg), 0);
    struct h_listener l;
    assert_int_equal(h_listener(x->hp.pid, port, &l), 0);
    assert_string_equal(l.addr, "127.0.0.1");

    /* Six clients through it: two on each node, as the nodes say too. */
    enum { N = 6 };
    struct bus_client *c[N];
    int per_node[3] = {0};
    for (int i = 0; i < N; i++) {
        c[i] = client_at(x, port);
        int n = c[i]->node[0] == 'n' ? atoi(c[i]->node + 1) : 0;
        if (n < 1 || n > 3)
            fail_msg("client %d welcomed by node \"%s\"", i, c[i]->node);
        per_node[n - 1]++;
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(per_node[i], 2);
    for (int i = 0; i < 3; i++) {
        int status;
        json_t *st = http_json(http_port(x, i), "/status", &status);
        assert_int_equal(status, 200);
        assert_int_equal(json_integer_value(json_object_get(st, "clients")), 2);
        json_decref(st);
    }
    wait_nodes(http_port(x, 0), "n1:2,n2:2,n3:2", 5000);

    /* A message through HAProxy reaches the five others on all three nodes, once each. */
    for (int i = 0; i < N; i++)
        bc_join(c[i], "lobby", "general");
    wait_channel_members(c[0], "lobby", "general", c, N, 5000);
    publish(c[0], "lobby", "general", "via", 1);
    acked(c[0], 1);
    publish(c[0], "lobby", "general", "via", 2);
    acked(c[0], 1);
    for (int i = 1; i < N; i++) {
        expect_msg(c[i], c[0], "via", 1);
        expect_msg(c[i], c[0], "via", 2);
    }
    bc_expect_nothing(c[0]);
    stop_nodes(x);
}

/* --- 9. status and health -------------------------------------------------------------------- */

static void test_status_and_health_describe_the_cluster(void **state)
{
    struct cfx *x = *state;
    start_nodes(x, 3, &plain);
    struct bus_client *c1 = client(x, 0);
    client(x, 1);
    client(x, 1);
    const char *want = "n1:1,n2:2,n3:0";
    for (int i = 0; i < 3; i++)
        wait_nodes(http_port(x, i), want, 5000);

    json_t *r;
    const json_t *d = bc_command_ok(c1, &r, "status", NULL);
    const json_t *cl = json_object_get(d, "cluster");
    assert_string_equal(bc_str(cl, "node"), "n1");
    const json_t *br = json_object_get(cl, "broker");
    assert_string_equal(bc_str(br, "instance"), "broker");
    assert_string_equal(bc_str(br, "backend"), "broker-redis");
    assert_string_equal(bc_str(br, "health"), "healthy");
    char nodes[256];
    nodes_of(d, nodes, sizeof nodes);
    assert_string_equal(nodes, want);
    json_decref(r);
    for (int i = 0; i < 3; i++) {
        int status;
        json_t *st = http_json(http_port(x, i), "/status", &status);
        char node[8];
        snprintf(node, sizeof node, "n%d", i + 1);
        assert_string_equal(bc_str(json_object_get(st, "cluster"), "node"), node);
        json_decref(st);
        wait_health(http_port(x, i), 1, 5000);
    }
    stop_nodes(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_messages_reach_every_node_once_and_never_the_sender,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_senders_order_is_kept_on_every_node, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_listings_agree_and_presence_crosses_nodes_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_killed_nodes_clients_leave_the_cluster_within_node_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_traffic_resumes_after_redis_restarts_and_the_outage_is_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_client_acked_on_one_node_recovers_on_another, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sharded_pubsub_spreads_rooms_over_two_redis_servers,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_shipped_conf_d_nodes_behind_haproxy_act_as_one_bus,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_and_health_describe_the_cluster, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
