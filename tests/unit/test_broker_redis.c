/* broker-redis (the built plugins/broker-redis.so): two or three instances in one process, each
 * with its own mock host and node name, on one real libuv loop lent to the mock hosts, against
 * real redis-servers started by each test. What one instance publishes must reach the others
 * through Redis exactly as the host would be given it (broker_deliver).
 *
 * Pinned: room traffic reaches a subscribed node once, intact, with one SPUBLISH per publish
 * and never back to its origin; channel and room-wide channels are distinct and unsubscribe
 * stops delivery; direct messages find the client's node and an unknown client is NOT_FOUND;
 * listings see other nodes' registrations and forget a stopped node's at once (a dead one's,
 * after node_ttl, is test_cluster's SIGKILL); a Redis restart is survived (health, loss
 * counted, resync, traffic again); two shards share the rooms and the listings merge; classic
 * pub/sub; malformed messages are counted and dropped; bad urls are refused without echoing a
 * password. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "mock_host.h"
#include "mock_loop.h"
#include "redis_server.h"

#define PLUGIN    ARQ_BUILD_PLUGIN_DIR "/broker-redis.so"
#define NODES     3
#define LOST      "arqonbus_broker_lost_total"
#define PUBLISHED "arqonbus_broker_published_total"
#define RECEIVED  "arqonbus_broker_received_total"
#define MALFORMED "arqonbus_broker_malformed_total"
#define CONNECTED "arqonbus_broker_connected"
#define INSTANCE  "instance=\"broker\""

static void *handle;
static const struct arq_plugin *desc;
static const struct arq_broker_ops *ops;

static int load_plugin(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* as arqonbusd does */
    desc = mock_host_load_plugin(PLUGIN, &handle);
    if (!desc)
        return -1;
    ops = desc->ops;
    return 0;
}

static int unload_plugin(void **state)
{
    (void)state;
    return mock_host_unload_plugin(handle);
}

/* The table given to `create`: the mock's, with a real loop (mock_loop.h). */
static const struct arq_host *host;

/* --- fixture --------------------------------------------------------------------------------- */

struct fx {
    struct redis_server rs[2];
    char url[2][64];
    struct mock_host *mh[NODES];
    void *self[NODES];
    json_t *cfg[NODES]; /* kept while the instance lives: it borrows strings from it */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f || !(host = mock_loop_start()))
        return -1;
    for (int i = 0; i < NODES; i++) {
        char node[8];
        snprintf(node, sizeof node, "n%d", i + 1);
        if (!(f->mh[i] = mock_host_new("broker")))
            return -1;
        mock_host_set_node(f->mh[i], node);
    }
    *state = f;
    return 0;
}

static void destroy_instance(struct fx *f, int i)
{
    if (!f->self[i])
        return;
    desc->stop(f->self[i]);
    desc->destroy(f->self[i]);
    f->self[i] = NULL;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < NODES; i++)
        destroy_instance(f, i);
    mock_loop_finish();
    for (int i = 0; i < NODES; i++) {
        mock_host_free(f->mh[i]);
        json_decref(f->cfg[i]);
    }
    for (int i = 0; i < 2; i++)
        redis_server_cleanup(&f->rs[i]);
    free(f);
    return 0;
}

static void redis_up(struct fx *f, int i)
{
    assert_int_equal(redis_server_start(&f->rs[i], 0), 0);
    redis_server_url(&f->rs[i], f->url[i], sizeof f->url[i]);
}

static json_t *config(const char *yaml)
{
    json_t *cfg = mock_host_validate(desc->options, yaml, NULL);
    assert_non_null(cfg);
    return cfg;
}

static int health(struct fx *f, int i, const char **detail)
{
    return ops->health(f->self[i], detail);
}

struct up_wait {
    struct fx *f;
    int n;
};

static int all_up(void *arg)
{
    struct up_wait *w = arg;
    for (int i = 0; i < w->n; i++)
        if (!w->f->self[i] || health(w->f, i, NULL) != 0)
            return 0;
    return 1;
}

/* Instances 0..n-1 created with `url` (f->url[0] when NULL) and `extra` lines, started, and
 * connected. */
static void start_nodes(struct fx *f, int n, const char *url, const char *extra)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "url: \"%s\"\nprefix: t\n%s", url ? url : f->url[0],
             extra ? extra : "");
    for (int i = 0; i < n; i++) {
        struct arq_error err = {""};
        f->cfg[i] = config(yaml);
        int rc = desc->create(host, mock_host_ctx(f->mh[i]), f->cfg[i], &f->self[i], &err);
        if (rc != 0)
            fail_msg("create: %s", err.text);
        assert_int_equal(desc->start(f->self[i], NULL, &err), 0);
    }
    struct up_wait w = {f, n};
    assert_true(mock_loop_run_until(all_up, &w, 5000));
}

/* Deliveries to node i. */
struct count_wait {
    struct mock_host *mh;
    size_t n;
};

static int delivered_at_least(void *arg)
{
    struct count_wait *w = arg;
    return mock_host_delivered_count(w->mh) >= w->n;
}

static void wait_delivered(struct fx *f, int i, size_t n)
{
    struct count_wait w = {f->mh[i], n};
    if (!mock_loop_run_until(delivered_at_least, &w, 3000))
        fail_msg("node %d: %zu deliveries, expected %zu", i, mock_host_delivered_count(f->mh[i]),
                 n);
}

static int publish(struct fx *f, int i, const char *room, const char *channel, const char *to,
                   const char *text)
{
    struct arq_broker_msg m = {.struct_size = sizeof m,
                               .room = room,
                               .channel = channel,
                               .to_client = to,
                               .data = (const unsigned char *)text,
                               .len = strlen(text),
                               .origin = "n1",
                               .id = "id1"};
    return ops->publish(f->self[i], &m);
}

/* Subscribers of pub/sub channel `chan` on server s, as Redis counts them. */
static long long subscribers(struct fx *f, int s, const char *chan, int sharded)
{
    redisReply *r =
        redis_server_cmd(&f->rs[s], sharded ? "PUBSUB SHARDNUMSUB %s" : "PUBSUB NUMSUB %s", chan);
    long long n = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
        n = r->element[1]->integer;
    if (r)
        freeReplyObject(r);
    return n;
}

struct sub_wait {
    struct fx *f;
    int s;
    const char *chan;
    long long n;
    int sharded;
};

static int subscribers_are(void *arg)
{
    struct sub_wait *w = arg;
    return subscribers(w->f, w->s, w->chan, w->sharded) == w->n;
}

static void wait_subscribers(struct fx *f, int s, const char *chan, long long n, int sharded)
{
    struct sub_wait w = {f, s, chan, n, sharded};
    if (!mock_loop_run_until(subscribers_are, &w, 3000))
        fail_msg("%s: %lld subscribers, expected %lld", chan, subscribers(f, s, chan, sharded), n);
}

/* calls=N of `cmd` in INFO commandstats of server s (0 when never called). */
static long long command_calls(struct fx *f, int s, const char *cmd)
{
    redisReply *r = redis_server_cmd(&f->rs[s], "INFO commandstats");
    long long n = 0;
    char needle[64];
    snprintf(needle, sizeof needle, "cmdstat_%s:calls=", cmd);
    const char *at = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, needle) : NULL;
    if (at)
        n = atoll(at + strlen(needle));
    if (r)
        freeReplyObject(r);
    return n;
}

/* One query's answer. */
struct answer {
    int done;
    char code[64];
    char text[256];
    json_t *data;
};

static void answered(void *arg, const char *code, const char *text, const json_t *data)
{
    struct answer *a = arg;
    a->done++;
    snprintf(a->code, sizeof a->code, "%s", code ? code : "");
    snprintf(a->text, sizeof a->text, "%s", text ? text : "");
    json_decref(a->data);
    a->data = data ? json_deep_copy(data) : NULL;
}

static int answer_done(void *arg)
{
    return ((struct answer *)arg)->done > 0;
}

/* The answer of node i to a query, as compact JSON with sorted keys, or "error:<code>". The
 * returned text is static (valid until the next call). */
static const char *query(struct fx *f, int i, const char *what, const char *room,
                         const char *channel)
{
    static char out[2048];
    struct answer a = {0};
    ops->query(f->self[i], what, room, channel, answered, &a);
    assert_true(mock_loop_run_until(answer_done, &a, 3000));
    assert_int_equal(a.done, 1);
    if (a.code[0]) {
        snprintf(out, sizeof out, "error:%s", a.code);
    } else {
        char *text = json_dumps(a.data, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        snprintf(out, sizeof out, "%s", text ? text : "?");
        free(text);
    }
    json_decref(a.data);
    return out;
}

struct query_wait {
    struct fx *f;
    int i;
    const char *what, *room, *channel, *expect;
};

static int query_is(void *arg)
{
    struct query_wait *w = arg;
    return strcmp(query(w->f, w->i, w->what, w->room, w->channel), w->expect) == 0;
}

static void wait_query(struct fx *f, int i, const char *what, const char *room, const char *channel,
                       const char *expect, int timeout_ms)
{
    struct query_wait w = {f, i, what, room, channel, expect};
    if (!mock_loop_run_until(query_is, &w, timeout_ms))
        fail_msg("query %s: %s, expected %s", what, query(f, i, what, room, channel), expect);
}

static double metric(struct fx *f, int i, const char *name)
{
    return mock_host_metric(f->mh[i], name, INSTANCE);
}

/* --- tests ------------------------------------------------------------------------------------ */

static void a_room_message_reaches_a_subscribed_node_once_and_not_its_origin(void **state)
{
    struct fx *f = *state;
    redis_up(f, 0);
    start_nodes(f, 2, NULL, NULL);
    assert_int_equal(metric(f, 0, CONNECTED), 1);

    /* Before node 2 subscribes, nothing reaches it. */
    assert_int_equal(publish(f, 0, "lobby", NULL, NULL, "before"), ARQ_OK);
    assert_int_equal(ops->subscribe(f->self[0], "lobby", NULL), ARQ_OK);
    assert_int_equal(ops->subscribe(f->self[1], "lobby", NULL), ARQ_OK);
    wait_subscribers(f, 0, "t:{lobby}", 2, 1);
    long long before = command_calls(f, 0, "spublish");
    assert_int_equal(publish(f, 0, "lobby", NULL, NULL, "hello"), ARQ_OK);
    assert_int_equal(publish(f, 0, "lobby", NULL, NULL, "marker"), ARQ_OK);
    wait_delivered(f, 1, 2);
    assert_string_equal(mock_host_delivered(f->mh[1], 0),
                        "origin=n1 room=lobby channel=- to=- id=id1 data=hello");
    assert_string_equal(mock_host_delivered(f->mh[1], 1),
                        "origin=n1 room=lobby channel=- to=- id=id1 data=marker");
    /* Node 1 got its own messages back from Redis and dropped them. */
    assert_int_equal(mock_host_delivered_count(f->mh[0]), 0);
    assert_int_equal(command_calls(f, 0, "spublish") - before, 2);
    assert_int_equal(metric(f, 0, PUBLISHED), 3);
    assert_int_equal(metric(f, 1, RECEIVED), 2);
    assert_int_equal(metric(f, 0, RECEIVED), 0);
    assert_int_equal(metric(f, 0, LOST), 0);
}

static void channel_and_room_traffic_are_apart_and_unsubscribe_stops_it(void **state)
{
    struct fx *f = *state;
    redis_up(f, 0);
    start_nodes(f, 2, NULL, NULL);
    assert_int_equal(ops->subscribe(f->self[1], "lobby", "general"), ARQ_OK);
    wait_subscribers(f, 0, "t:{lobby}:general", 1, 1);
    assert_int_equal(publish(f, 0, "lobby", NULL, NULL, "room-wide"), ARQ_OK);
    assert_int_equal(publish(f, 0, "lobby", "general", NULL, "general-1"), ARQ_OK);
    assert_int_equal(publish(f, 0, "lobby", "random", NULL, "random-1"), ARQ_OK);
    assert_int_equal(publish(f, 0, "lobby", "general", NULL, "general-2"), ARQ_OK);
    wait_delivered(f, 1, 2);
    assert_string_equal(mock_host_delivered(f->mh[1], 0),
                        "origin=n1 room=lobby channel=general to=- id=id1 data=general-1");
    assert_string_equal(mock_host_delivered(f->mh[1], 1),
                        "origin=n1 room=lobby channel=general to=- id=id1 data=general-2");

    assert_int_equal(ops->unsubscribe(f->self[1], "lobby", "general"), ARQ_OK);
    assert_int_equal(ops->subscribe(f->self[1], "lobby", NULL), ARQ_OK);
    wait_subscribers(f, 0, "t:{lobby}:general", 0, 1);
    wait_subscribers(f, 0, "t:{lobby}", 1, 1);
    assert_int_equal(publish(f, 0, "lobby", "general", NULL, "gone"), ARQ_OK);
    assert_int_equal(publish(f, 0, "lobby", NULL, NULL, "marker"), ARQ_OK);
    wait_delivered(f, 1, 3);
    assert_string_equal(mock_host_delivered(f->mh[1], 2),
                        "origin=n1 room=lobby channel=- to=- id=id1 data=marker");
}

static void a_direct_message_finds_the_node_of_its_client(void **state)
{
    struct fx *f = *state;
    redis_up(f, 0);
    start_nodes(f, 2, NULL, NULL);
    assert_int_equal(ops->register_client(f->self[1], "arq_client_b"), ARQ_OK);
    wait_query(f, 0, "client", "arq_client_b", NULL, "{\"node\":\"n2\"}", 2000);
    assert_string_equal(query(f, 0, "client", "arq_client_x", NULL), "error:NOT_FOUND");

    assert_int_equal(publish(f, 0, NULL, NULL, "arq_client_b", "psst"), ARQ_OK);
    assert_int_equal(publish(f, 0, NULL, NULL, "arq_client_x", "nobody"), ARQ_OK);
    assert_int_equal(publish(f, 0, NULL, NULL, "arq_client_b", "marker"), ARQ_OK);
    wait_delivered(f, 1, 2);
    assert_string_equal(mock_host_delivered(f->mh[1], 0),
                        "origin=n1 room=- channel=- to=arq_client_b id=id1 data=psst");
    assert_string_equal(mock_host_delivered(f->mh[1], 1),
                        "origin=n1 room=- channel=- to=arq_client_b id=id1 data=marker");
    assert_int_equal(mock_host_delivered_count(f->mh[0]), 0);

    /* Another node's unregister leaves the entry; the owner's removes it. */
    assert_int_equal(ops->unregister_client(f->self[0], "arq_client_b"), ARQ_OK);
    assert_string_equal(query(f, 0, "client", "arq_client_b", NULL), "{\"node\":\"n2\"}");
    assert_int_equal(ops->unregister_client(f->self[1], "arq_client_b"), ARQ_OK);
    wait_query(f, 0, "client", "arq_client_b", NULL, "error:NOT_FOUND", 2000);
}

static void listings_see_other_nodes_and_forget_a_stopped_one_at_once(void **state)
{
    struct fx *f = *state;
    redis_up(f, 0);
    start_nodes(f, 2, NULL, "node_ttl: 30s\n");
    void *b = f->self[1];
    assert_int_equal(ops->register_client(b, "c1"), ARQ_OK);
    assert_int_equal(ops->register_client(b, "c2"), ARQ_OK);
    assert_int_equal(ops->presence(b, "c1", "lobby", NULL, 1), ARQ_OK);
    assert_int_equal(ops->presence(b, "c1", "lobby", "general", 1), ARQ_OK);
    assert_int_equal(ops->presence(b, "c2", "lobby", "general", 1), ARQ_OK);
    assert_int_equal(ops->presence(b, "c2", "games", NULL, 1), ARQ_OK);
    assert_int_equal(ops->presence(b, "c2", "games", NULL, 0), ARQ_OK);
    assert_int_equal(ops->register_client(f->self[0], "c3"), ARQ_OK);
    assert_int_equal(ops->presence(f->self[0], "c3", "lobby", "news", 1), ARQ_OK);

    wait_query(f, 0, "rooms", NULL, NULL, "[{\"channels\":2,\"members\":4,\"room\":\"lobby\"}]",
               2000);
    wait_query(f, 0, "nodes", NULL, NULL,
               "[{\"clients\":1,\"node\":\"n1\"},{\"clients\":2,\"node\":\"n2\"}]", 2000);
    assert_string_equal(query(f, 0, "channels", "lobby", NULL),
                        "[{\"channel\":\"general\",\"members\":2},"
                        "{\"channel\":\"news\",\"members\":1}]");
    assert_string_equal(query(f, 0, "members", "lobby", "general"), "[\"c1\",\"c2\"]");
    assert_string_equal(query(f, 0, "members", "lobby", NULL), "[\"c1\"]");
    assert_string_equal(query(f, 0, "members", "lobby", "news"), "[\"c3\"]");
    assert_string_equal(query(f, 0, "client", "c2", NULL), "{\"node\":\"n2\"}");

    /* Node 2 stops: its liveness key goes with it, so its entries stop counting now, long
     * before node_ttl (a node that dies without a word is the cluster test's SIGKILL). */
    destroy_instance(f, 1);
    wait_query(f, 0, "rooms", NULL, NULL, "[{\"channels\":1,\"members\":1,\"room\":\"lobby\"}]",
               1000);
    assert_string_equal(query(f, 0, "nodes", NULL, NULL), "[{\"clients\":1,\"node\":\"n1\"}]");
    assert_string_equal(query(f, 0, "client", "c2", NULL), "error:NOT_FOUND");
    assert_string_equal(query(f, 0, "members", "lobby", "general"), "[]");
    assert_string_equal(query(f, 0, "channels", "lobby", NULL),
                        "[{\"channel\":\"news\",\"members\":1}]");
}

/* What the host does in broker_resync for node 2: its one subscription and one client. */
static void resync_node2(void *arg)
{
    struct fx *f = arg;
    ops->subscribe(f->self[1], "lobby", NULL);
    ops->register_client(f->self[1], "arq_client_b");
}

static int both_down(void *arg)
{
    struct fx *f = arg;
    return health(f, 0, NULL) == 2 && health(f, 1, NULL) == 2;
}

static void a_redis_restart_is_survived_with_its_losses_counted(void **state)
{
    struct fx *f = *state;
    redis_up(f, 0);
    mock_host_on_resync(f->mh[1], resync_node2, f);
    start_nodes(f, 2, NULL, NULL);
    size_t resyncs = mock_host_resync_count(f->mh[1]);
    assert_true(resyncs >= 1);
    wait_subscribers(f, 0, "t:{lobby}", 1, 1);
    wait_query(f, 0, "client", "arq_client_b", NULL, "{\"node\":\"n2\"}", 2000);

    redis_server_signal(&f->rs[0], SIGKILL);
    assert_true(mock_loop_run_until(both_down, f, 3000));
    const char *detail = NULL;
    assert_int_equal(health(f, 0, &detail), 2);
    assert_non_null(detail);
    assert_non_null(strstr(detail, "redis 127.0.0.1:"));
    assert_int_equal(metric(f, 0, CONNECTED), 0);
    assert_int_equal(publish(f, 0, "lobby", NULL, NULL, "lost-1"), ARQ_EAGAIN);
    assert_int_equal(publish(f, 0, NULL, NULL, "arq_client_b", "lost-2"), ARQ_EAGAIN);
    assert_int_equal(metric(f, 0, LOST), 2);
    assert_string_equal(query(f, 0, "rooms", NULL, NULL), "error:EXECUTION_ERROR");

    assert_int_equal(redis_server_restart(&f->rs[0]), 0);
    struct up_wait w = {f, 2};
    assert_true(mock_loop_run_until(all_up, &w, 5000));
    assert_true(mock_host_resync_count(f->mh[1]) > resyncs);
    assert_true(metric(f, 0, "arqonbus_broker_reconnects_total") >= 1);
    assert_int_equal(metric(f, 0, CONNECTED), 1);
    wait_subscribers(f, 0, "t:{lobby}", 1, 1);
    wait_query(f, 0, "client", "arq_client_b", NULL, "{\"node\":\"n2\"}", 2000);
    assert_int_equal(publish(f, 0, "lobby", NULL, NULL, "again"), ARQ_OK);
    assert_int_equal(publish(f, 0, NULL, NULL, "arq_client_b", "direct"), ARQ_OK);
    wait_delivered(f, 1, 2);
    assert_string_equal(mock_host_delivered(f->mh[1], 0),
                        "origin=n1 room=lobby channel=- to=- id=id1 data=again");
    assert_string_equal(mock_host_delivered(f->mh[1], 1),
                        "origin=n1 room=- channel=- to=arq_client_b id=id1 data=direct");
}

static int one_down(void *arg)
{
    return health(arg, 0, NULL) == 1;
}

static void rooms_spread_over_two_shards_and_listings_merge(void **state)
{
    struct fx *f = *state;
    redis_up(f, 0);
    redis_up(f, 1);
    char urls[160];
    snprintf(urls, sizeof urls, "%s, %s", f->url[0], f->url[1]);
    start_nodes(f, 2, urls, NULL);
    assert_int_equal(metric(f, 0, CONNECTED), 2);
    char room[16];
    for (int i = 0; i < 8; i++) {
        snprintf(room, sizeof room, "room%d", i);
        assert_int_equal(ops->subscribe(f->self[1], room, NULL), ARQ_OK);
        assert_int_equal(ops->register_client(f->self[1], room), ARQ_OK); /* a client id */
        assert_int_equal(ops->presence(f->self[1], room, room, NULL, 1), ARQ_OK);
    }
    for (int s = 0; s < 2; s++) {
        redisReply *r = redis_server_cmd(&f->rs[s], "PUBSUB SHARDCHANNELS t:{room*");
        assert_non_null(r);
        assert_true(r->elements >= 1); /* each server holds some rooms */
        freeReplyObject(r);
    }
    wait_query(f, 0, "rooms", NULL, NULL,
               "[{\"channels\":0,\"members\":1,\"room\":\"room0\"},"
               "{\"channels\":0,\"members\":1,\"room\":\"room1\"},"
               "{\"channels\":0,\"members\":1,\"room\":\"room2\"},"
               "{\"channels\":0,\"members\":1,\"room\":\"room3\"},"
               "{\"channels\":0,\"members\":1,\"room\":\"room4\"},"
               "{\"channels\":0,\"members\":1,\"room\":\"room5\"},"
               "{\"channels\":0,\"members\":1,\"room\":\"room6\"},"
               "{\"channels\":0,\"members\":1,\"room\":\"room7\"}]",
               2000);
    assert_string_equal(query(f, 0, "members", "room5", NULL), "[\"room5\"]");
    assert_string_equal(query(f, 0, "client", "room6", NULL), "{\"node\":\"n2\"}");
    for (int i = 0; i < 8; i++) {
        snprintf(room, sizeof room, "room%d", i);
        assert_int_equal(publish(f, 0, room, NULL, NULL, room), ARQ_OK);
        assert_int_equal(publish(f, 0, NULL, NULL, room, room), ARQ_OK);
    }
    wait_delivered(f, 1, 16);
    for (int s = 0; s < 2; s++)
        assert_true(command_calls(f, s, "spublish") > 0);
    assert_int_equal(metric(f, 0, PUBLISHED), 16);

    /* One shard down: degraded, and what needs it fails; the other still answers. */
    redis_server_signal(&f->rs[1], SIGKILL);
    const char *detail = NULL;
    assert_true(mock_loop_run_until(one_down, f, 3000));
    assert_int_equal(health(f, 0, &detail), 1);
    assert_non_null(strstr(detail, f->url[1] + 8));
    assert_null(strstr(detail, f->url[0] + 8));
    assert_string_equal(query(f, 0, "rooms", NULL, NULL), "error:EXECUTION_ERROR");
}

static void classic_pubsub_works_too(void **state)
{
    struct fx *f = *state;
    redis_up(f, 0);
    start_nodes(f, 2, NULL, "sharded: false\n");
    assert_int_equal(ops->subscribe(f->self[1], "lobby", "general"), ARQ_OK);
    assert_int_equal(ops->register_client(f->self[1], "arq_client_b"), ARQ_OK);
    wait_subscribers(f, 0, "t:{lobby}:general", 1, 0);
    wait_query(f, 0, "client", "arq_client_b", NULL, "{\"node\":\"n2\"}", 2000);
    assert_int_equal(publish(f, 0, "lobby", "general", NULL, "classic"), ARQ_OK);
    assert_int_equal(publish(f, 0, NULL, NULL, "arq_client_b", "direct"), ARQ_OK);
    wait_delivered(f, 1, 2);
    assert_string_equal(mock_host_delivered(f->mh[1], 0),
                        "origin=n1 room=lobby channel=general to=- id=id1 data=classic");
    assert_string_equal(mock_host_delivered(f->mh[1], 1),
                        "origin=n1 room=- channel=- to=arq_client_b id=id1 data=direct");
    assert_int_equal(command_calls(f, 0, "spublish"), 0);
    assert_int_equal(command_calls(f, 0, "publish"), 2);
}

static void malformed_messages_are_counted_and_dropped(void **state)
{
    struct fx *f = *state;
    redis_up(f, 0);
    start_nodes(f, 2, NULL, NULL);
    assert_int_equal(ops->subscribe(f->self[1], "lobby", NULL), ARQ_OK);
    wait_subscribers(f, 0, "t:{lobby}", 1, 1);
    /* garbage; a good header cut short; a string without its NUL; a direct message that names
     * a room too. */
    static const char cut[] = "AQB\1\0\0\0\3\0\6\0\0\0\0\0\0\0\0\0\5n1\0lob";
    static const char nonul[] = "AQB\1\0\0\0\2\0\2\0\0\0\0\0\0\0\0\0\0n1lo";
    static const char both[] = "AQB\1\2\0\0\3\0\2\0\0\0\2\0\0\0\0\0\0n1\0r\0c\0";
    const char *bad[] = {"garbage", cut, nonul, both};
    size_t lens[] = {7, sizeof cut - 1, sizeof nonul - 1, sizeof both - 1};
    for (int i = 0; i < 4; i++) {
        const char *argv[] = {"SPUBLISH", "t:{lobby}", bad[i]};
        size_t argl[] = {8, 9, lens[i]};
        redisReply *r = redisCommandArgv(f->rs[0].client, 3, argv, argl);
        assert_non_null(r);
        assert_int_equal(r->integer, 1);
        freeReplyObject(r);
    }
    assert_int_equal(publish(f, 0, "lobby", NULL, NULL, "marker"), ARQ_OK);
    wait_delivered(f, 1, 1);
    assert_string_equal(mock_host_delivered(f->mh[1], 0),
                        "origin=n1 room=lobby channel=- to=- id=id1 data=marker");
    assert_int_equal(metric(f, 1, MALFORMED), 4);
    assert_int_equal(health(f, 1, NULL), 0);
}

static int create_fails(struct fx *f, const char *yaml, char *err_out, size_t size)
{
    struct arq_error err = {""};
    void *self = NULL;
    json_t *cfg = config(yaml);
    int rc = desc->create(host, mock_host_ctx(f->mh[2]), cfg, &self, &err);
    if (rc == 0)
        desc->destroy(self);
    json_decref(cfg);
    snprintf(err_out, size, "%s", err.text);
    return rc != 0;
}

static void bad_urls_are_refused_without_showing_a_password(void **state)
{
    struct fx *f = *state;
    char err[600];
    assert_true(create_fails(f, "url: http://127.0.0.1:6379\n", err, sizeof err));
    assert_non_null(strstr(err, "url: expected redis://"));
    assert_true(create_fails(f, "url: \"redis://:hunter2@127.0.0.1:99999\"\n", err, sizeof err));
    assert_non_null(strstr(err, "bad port"));
    assert_null(strstr(err, "hunter2"));
    assert_true(create_fails(f, "url: \"redis://127.0.0.1:1, rediss://x\"\n", err, sizeof err));
    assert_non_null(strstr(err, "TLS"));
    assert_true(create_fails(f, "url: \" , \"\n", err, sizeof err));
    assert_true(create_fails(f, "prefix: \"a{b}\"\n", err, sizeof err));
    assert_non_null(strstr(err, "prefix"));
    assert_false(
        create_fails(f, "url: \"redis://u:p%40ss@[::1]:7000/2 redis://h\"\n", err, sizeof err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            a_room_message_reaches_a_subscribed_node_once_and_not_its_origin, setup, teardown),
        cmocka_unit_test_setup_teardown(channel_and_room_traffic_are_apart_and_unsubscribe_stops_it,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_direct_message_finds_the_node_of_its_client, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(listings_see_other_nodes_and_forget_a_stopped_one_at_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_redis_restart_is_survived_with_its_losses_counted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rooms_spread_over_two_shards_and_listings_merge, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(classic_pubsub_works_too, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_messages_are_counted_and_dropped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(bad_urls_are_refused_without_showing_a_password, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
