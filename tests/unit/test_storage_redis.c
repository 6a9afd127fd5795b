/* storage-redis (the built plugins/storage-redis.so) against the mock host and a real
 * redis-server started by each test. The mock host has no loop, so these tests lend the plugin
 * a real libuv loop (and timers on it) and run that loop until what they wait for happens.
 *
 * Pinned: create validates without connecting; offsets from 1 per channel and the key layout;
 * a retried append stored once; newest/time-window/recovery queries; an epoch for a channel
 * asked about before its first message; a lost stream is a new epoch; two instances on one
 * Redis agree on offsets; degraded mode buffering and replaying in order, exactly once, with
 * its events, metrics and health (Redis absent at start, killed mid-stream, paused); strict
 * mode refusing; reconfigure; ttl; the fallback bound; host names. */
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

#include "loader.h"
#include "mock_host.h"
#include "mock_loop.h"
#include "redis_server.h"

#define PLUGIN   ARQ_BUILD_PLUGIN_DIR "/storage-redis.so"
#define APPENDS  "arqonbus_storage_appends_total"
#define MAX_MSGS 512

static void *handle;
static const struct arq_plugin *desc;

static int load_plugin(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN); /* as arqonbusd does: hiredis writes to sockets Redis closed */
    desc = mock_host_load_plugin(PLUGIN, &handle);
    return desc ? 0 : -1;
}

static int unload_plugin(void **state)
{
    (void)state;
    return mock_host_unload_plugin(handle);
}

/* The table given to `create`: the mock's, with a real loop (mock_loop.h). */
static const struct arq_host *host;

static int never(void *arg)
{
    (void)arg;
    return 0;
}

/* Run the loop for `ms`. */
static void run_for(int ms)
{
    mock_loop_run_until(never, NULL, ms);
}

/* --- fixture --------------------------------------------------------------------------------- */

struct fx {
    struct redis_server rs;
    int redis_up;
    char url[64];
    struct mock_host *mh[2];
    void *self[2];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f || !(host = mock_loop_start()))
        return -1;
    for (int i = 0; i < 2; i++)
        if (!(f->mh[i] = mock_host_new(i == 0 ? "store" : "store2")))
            return -1;
    *state = f;
    return 0;
}

static void destroy_instance(struct fx *f, int i)
{
    if (!f->self[i])
        return;
    if (desc->stop)
        desc->stop(f->self[i]);
    desc->destroy(f->self[i]);
    f->self[i] = NULL;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 2; i++)
        destroy_instance(f, i);
    mock_loop_finish(); /* the handles the plugin closed finish closing */
    for (int i = 0; i < 2; i++)
        mock_host_free(f->mh[i]);
    redis_server_cleanup(&f->rs);
    free(f);
    return 0;
}

static void redis_up(struct fx *f)
{
    assert_int_equal(redis_server_start(&f->rs, 0), 0);
    redis_server_url(&f->rs, f->url, sizeof f->url);
}

/* A validated config: `url: f->url`, `key_prefix: t`, then `extra` lines. */
static json_t *config(const struct fx *f, const char *extra)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "url: %s\nkey_prefix: t\n%s", f->url, extra ? extra : "");
    json_t *cfg = mock_host_validate(desc->options, yaml, NULL);
    assert_non_null(cfg);
    return cfg;
}

/* Instance i created and started with config(f, extra). */
static void *start(struct fx *f, int i, const char *extra)
{
    struct arq_error err = {""};
    json_t *cfg = config(f, extra);
    int rc = desc->create(host, mock_host_ctx(f->mh[i]), cfg, &f->self[i], &err);
    json_decref(cfg);
    if (rc != 0)
        fail_msg("create: %s", err.text);
    assert_int_equal(desc->start(f->self[i], NULL, &err), 0);
    return f->self[i];
}

static const struct arq_storage_ops *ops(void)
{
    return desc->ops;
}

static int health(void *self, const char **detail)
{
    return ops()->health(self, detail);
}

struct health_wait {
    void *self;
    int want;
};

static int health_is(void *arg)
{
    struct health_wait *w = arg;
    return health(w->self, NULL) == w->want;
}

static void wait_health(void *self, int want, int timeout_ms)
{
    struct health_wait w = {self, want};
    if (!mock_loop_run_until(health_is, &w, timeout_ms)) {
        const char *detail = NULL;
        int h = health(self, &detail);
        fail_msg("health %d (%s), wanted %d", h, detail ? detail : "-", want);
    }
}

/* --- appends and queries --------------------------------------------------------------------- */

struct ack {
    int done, status;
    uint64_t offset;
    char epoch[64];
};

static void acked(void *arg, int status, uint64_t offset, const char *epoch)
{
    struct ack *a = arg;
    assert_int_equal(a->done, 0); /* once */
    a->done = 1;
    a->status = status;
    a->offset = offset;
    snprintf(a->epoch, sizeof a->epoch, "%s", epoch ? epoch : "");
}

static int ack_done(void *arg)
{
    return ((struct ack *)arg)->done;
}

static void msg_id(char *out, size_t size, int n)
{
    snprintf(out, size, "arq_1700000000000_%d_0a0b0c", n);
}

/* Append message `n` (id from n, payload {"n":n}) to room/channel; the ack arrives later. */
static void append_async(void *self, const char *room, const char *channel, int n, struct ack *a)
{
    char id[64], json[256];
    msg_id(id, sizeof id, n);
    snprintf(json, sizeof json,
             "{\"id\":\"%s\",\"type\":\"message\",\"room\":\"%s\"%s%s%s,\"payload\":{\"n\":%d}}",
             id, room, channel ? ",\"channel\":\"" : "", channel ? channel : "",
             channel ? "\"" : "", n);
    struct arq_stored msg = {.struct_size = sizeof msg,
                             .room = room,
                             .channel = channel,
                             .id = id,
                             .timestamp_us = 1700000000000000LL + n,
                             .json = json,
                             .json_len = strlen(json)};
    memset(a, 0, sizeof *a);
    assert_int_equal(ops()->append(self, &msg, acked, a), 0);
}

static struct ack append(void *self, const char *room, const char *channel, int n)
{
    struct ack a;
    append_async(self, room, channel, n, &a);
    if (!mock_loop_run_until(ack_done, &a, 5000))
        fail_msg("no ack for message %d", n);
    return a;
}

struct hist {
    int done, status, recovered;
    char epoch[64];
    size_t n;
    uint64_t offsets[MAX_MSGS];
    int ns[MAX_MSGS]; /* the payload's n */
    int64_t stored_us[MAX_MSGS];
};

static void answered(void *arg, int status, const struct arq_stored *const *entries, size_t n,
                     const char *epoch, int recovered)
{
    struct hist *h = arg;
    assert_int_equal(h->done, 0);
    h->done = 1;
    h->status = status;
    h->recovered = recovered;
    h->n = n;
    snprintf(h->epoch, sizeof h->epoch, "%s", epoch ? epoch : "");
    assert_true(n <= MAX_MSGS);
    for (size_t i = 0; i < n; i++) {
        h->offsets[i] = entries[i]->offset;
        h->stored_us[i] = entries[i]->stored_us;
        json_t *env = json_loadb(entries[i]->json, entries[i]->json_len, 0, NULL);
        assert_non_null(env);
        h->ns[i] = (int)json_integer_value(json_object_get(json_object_get(env, "payload"), "n"));
        char id[64];
        msg_id(id, sizeof id, h->ns[i]);
        assert_string_equal(entries[i]->id, id);
        json_decref(env);
    }
}

static int hist_done(void *arg)
{
    return ((struct hist *)arg)->done;
}

/* A query; `epoch` NULL with recover means "no epoch". */
static void query(void *self, struct hist *h, const char *room, const char *channel, unsigned limit,
                  int recover, uint64_t since_offset, const char *epoch, int64_t since_us,
                  int64_t until_us)
{
    struct arq_history_query q = {.struct_size = sizeof q,
                                  .room = room,
                                  .channel = channel,
                                  .limit = limit,
                                  .since_us = since_us,
                                  .until_us = until_us,
                                  .recover = recover,
                                  .since_offset = since_offset,
                                  .epoch = epoch};
    memset(h, 0, sizeof *h);
    assert_int_equal(ops()->query(self, &q, answered, h), 0);
    if (!mock_loop_run_until(hist_done, h, 5000))
        fail_msg("no answer to a query");
}

static void newest(void *self, struct hist *h, const char *room, const char *channel,
                   unsigned limit)
{
    query(self, h, room, channel, limit, 0, 0, NULL, 0, 0);
    assert_int_equal(h->status, ARQ_OK);
}

/* The payload numbers of stream `key` in Redis, in stream order, into ns (at most max). */
static size_t stream_ns(struct fx *f, const char *key, int *ns, size_t max)
{
    redisReply *r = redis_server_cmd(&f->rs, "XRANGE %s - +", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    size_t n = 0;
    for (size_t i = 0; i < r->elements && n < max; i++) {
        redisReply *fields = r->element[i]->element[1];
        for (size_t k = 0; k + 1 < fields->elements; k += 2) {
            if (strcmp(fields->element[k]->str, "j") != 0)
                continue;
            json_t *env = json_loads(fields->element[k + 1]->str, 0, NULL);
            assert_non_null(env);
            ns[n++] =
                (int)json_integer_value(json_object_get(json_object_get(env, "payload"), "n"));
            json_decref(env);
        }
    }
    freeReplyObject(r);
    return n;
}

static long long redis_int(struct fx *f, const char *fmt, const char *key)
{
    redisReply *r = redis_server_cmd(&f->rs, fmt, key);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

static void redis_str(struct fx *f, const char *fmt, const char *key, char *out, size_t size)
{
    redisReply *r = redis_server_cmd(&f->rs, fmt, key);
    assert_non_null(r);
    snprintf(out, size, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
}

static size_t events_of(struct mock_host *mh, const char *type, const char **last)
{
    char needle[64];
    size_t n = 0;
    snprintf(needle, sizeof needle, "\"event_type\":\"%s\"", type);
    for (size_t i = 0; i < mock_host_event_count(mh); i++) {
        if (strstr(mock_host_event(mh, i), needle)) {
            n++;
            if (last)
                *last = mock_host_event(mh, i);
        }
    }
    return n;
}

static double metric(struct mock_host *mh, const char *name, const char *result)
{
    char labels[128];
    if (result)
        snprintf(labels, sizeof labels, "instance=\"store\",result=\"%s\"", result);
    else
        snprintf(labels, sizeof labels, "instance=\"store\"");
    return mock_host_metric(mh, name, labels);
}

/* --- tests ----------------------------------------------------------------------------------- */

static void descriptor_is_a_storage_with_the_documented_options(void **state)
{
    (void)state;
    char err[600] = "";
    assert_int_equal(loader_check_descriptor(desc, err, sizeof err), 0);
    assert_string_equal(desc->name, "storage-redis");
    assert_int_equal(desc->kind, ARQ_KIND_STORAGE);
    const char *names[] = {"url",          "password",        "key_prefix", "max_history",
                           "ttl",          "connect_timeout", "mode",       "max_fallback_bytes",
                           "dedupe_window"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_string_equal(desc->options[i].name, names[i]);
    assert_true(desc->options[1].flags & ARQ_OPT_SECRET);
    assert_true(desc->options[3].flags & ARQ_OPT_RELOADABLE);
    assert_true(desc->options[4].flags & ARQ_OPT_RELOADABLE);
    assert_false(desc->options[0].flags & ARQ_OPT_RELOADABLE);
}

static int create_fails(struct fx *f, const char *yaml, char *err_out, size_t size)
{
    struct arq_error err = {""};
    void *self = NULL;
    json_t *cfg = mock_host_validate(desc->options, yaml, NULL);
    assert_non_null(cfg);
    int rc = desc->create(mock_host_api(), mock_host_ctx(f->mh[0]), cfg, &self, &err);
    json_decref(cfg);
    if (rc == 0)
        desc->destroy(self);
    snprintf(err_out, size, "%s", err.text);
    return rc != 0;
}

static void create_checks_url_and_prefix_and_connects_to_nothing(void **state)
{
    struct fx *f = *state;
    char err[600];
    /* The plain mock host: no loop at all, so create must not need one. */
    void *self = NULL;
    mock_host_create_plugin(
        f->mh[0], desc, mock_host_validate(desc->options, "url: redis://10.255.255.1:1/3\n", NULL),
        &self);
    assert_int_equal(mock_host_timers_active(f->mh[0]), 0);
    assert_int_equal(health(self, NULL), 0);
    desc->destroy(self);

    assert_true(create_fails(f, "url: redis://:hunter2@127.0.0.1:6379\n", err, sizeof err));
    assert_non_null(strstr(err, "`password` option"));
    assert_null(strstr(err, "hunter2"));
    assert_true(create_fails(f, "url: redis://user:hunter2@h\n", err, sizeof err));
    assert_null(strstr(err, "hunter2"));
    assert_true(create_fails(f, "url: http://127.0.0.1:6379\n", err, sizeof err));
    assert_non_null(strstr(err, "expected redis://host[:port][/db]"));
    assert_true(create_fails(f, "url: rediss://127.0.0.1\n", err, sizeof err));
    assert_non_null(strstr(err, "TLS"));
    assert_true(create_fails(f, "url: redis://127.0.0.1:99999\n", err, sizeof err));
    assert_non_null(strstr(err, "bad port"));
    assert_true(create_fails(f, "url: redis://127.0.0.1:6379/x\n", err, sizeof err));
    assert_non_null(strstr(err, "database"));
    assert_true(create_fails(f, "url: redis://[::1\n", err, sizeof err));
    assert_true(create_fails(f, "key_prefix: \"a{b}\"\n", err, sizeof err));
    assert_non_null(strstr(err, "key_prefix"));
    assert_false(create_fails(f, "url: redis://[::1]:7000/2\n", err, sizeof err));
    assert_false(create_fails(f, "url: redis://cache.internal\n", err, sizeof err));
}

static void offsets_count_from_one_per_channel_in_the_documented_keys(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s = start(f, 0, NULL);
    struct ack a[6];
    a[0] = append(s, "lobby", "general", 1);
    a[1] = append(s, "lobby", "general", 2);
    a[2] = append(s, "lobby", "random", 3);
    a[3] = append(s, "lobby", "general", 4);
    a[4] = append(s, "lobby", NULL, 5);
    a[5] = append(s, "attic", "general", 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(a[i].status, ARQ_OK);
    assert_int_equal(a[0].offset, 1);
    assert_int_equal(a[1].offset, 2);
    assert_int_equal(a[2].offset, 1);
    assert_int_equal(a[3].offset, 3);
    assert_int_equal(a[4].offset, 1);
    assert_int_equal(a[5].offset, 1);
    assert_int_equal(strlen(a[0].epoch), 16);
    assert_string_equal(a[0].epoch, a[3].epoch);
    assert_string_not_equal(a[0].epoch, a[2].epoch);

    int ns[8];
    assert_int_equal(stream_ns(f, "t:{lobby}:general", ns, 8), 3);
    assert_int_equal(ns[0], 1);
    assert_int_equal(ns[1], 2);
    assert_int_equal(ns[2], 4);
    assert_int_equal(stream_ns(f, "t:{lobby}:*room*", ns, 8), 1);
    assert_int_equal(ns[0], 5);
    assert_int_equal(redis_int(f, "GET %s", "t:{lobby}:general#seq"), 3);
    char epoch[64], id[64], key[128];
    redis_str(f, "GET %s", "t:{lobby}:general#epoch", epoch, sizeof epoch);
    assert_string_equal(epoch, a[0].epoch);
    msg_id(id, sizeof id, 4);
    snprintf(key, sizeof key, "t:{lobby}:general#id:%s", id);
    assert_true(redis_int(f, "PTTL %s", key) > 3000000); /* dedupe_window 1h */

    /* Stream entry ids are <offset>-1, with the message id, envelope and times. */
    redisReply *r = redis_server_cmd(&f->rs, "XRANGE t:{lobby}:general - + COUNT 1");
    assert_non_null(r);
    assert_string_equal(r->element[0]->element[0]->str, "1-1");
    redisReply *fields = r->element[0]->element[1];
    assert_int_equal(fields->elements, 8);
    assert_string_equal(fields->element[0]->str, "i");
    msg_id(id, sizeof id, 1);
    assert_string_equal(fields->element[1]->str, id);
    assert_string_equal(fields->element[2]->str, "j");
    assert_string_equal(fields->element[4]->str, "t");
    assert_string_equal(fields->element[6]->str, "ts");
    assert_string_equal(fields->element[7]->str, "1700000000000001");
    freeReplyObject(r);
    assert_int_equal(metric(f->mh[0], APPENDS, "stored"), 6);
    assert_int_equal(metric(f->mh[0], "arqonbus_storage_fallback", NULL), 0);
}

static void a_retried_append_is_stored_once(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s = start(f, 0, NULL);
    struct ack a1 = append(s, "r", "c", 1);
    struct ack a2 = append(s, "r", "c", 2);
    struct ack again = append(s, "r", "c", 1);
    assert_int_equal(a1.offset, 1);
    assert_int_equal(a2.offset, 2);
    assert_int_equal(again.status, ARQ_OK);
    assert_int_equal(again.offset, 1);
    assert_string_equal(again.epoch, a1.epoch);
    assert_int_equal(redis_int(f, "XLEN %s", "t:{r}:c"), 2);

    /* The same id with another envelope is another message. */
    char id[64];
    msg_id(id, sizeof id, 1);
    const char *json = "{\"other\":true}";
    struct arq_stored msg = {.struct_size = sizeof msg,
                             .room = "r",
                             .channel = "c",
                             .id = id,
                             .json = json,
                             .json_len = strlen(json)};
    struct ack a3 = {0};
    assert_int_equal(ops()->append(s, &msg, acked, &a3), 0);
    assert_true(mock_loop_run_until(ack_done, &a3, 5000));
    assert_int_equal(a3.offset, 3);
}

/* The storage contract allows a message without JSON (NULL, length 0); copying it for the queue
 * must not pass NULL to memcpy (undefined: the sanitized build aborts). */
static void a_message_without_json_is_stored(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s = start(f, 0, NULL);
    char id[64];
    msg_id(id, sizeof id, 1);
    struct arq_stored msg = {
        .struct_size = sizeof msg, .room = "r", .channel = "c", .id = id, .json = NULL};
    struct ack a = {0};
    assert_int_equal(ops()->append(s, &msg, acked, &a), 0);
    assert_true(mock_loop_run_until(ack_done, &a, 5000));
    assert_int_equal(a.status, ARQ_OK);
    assert_int_equal(a.offset, 1);
    assert_int_equal(redis_int(f, "XLEN %s", "t:{r}:c"), 1);
}

static void history_answers_newest_time_windows_and_recovery(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s = start(f, 0, NULL);
    struct ack a[11];
    for (int i = 1; i <= 10; i++) {
        a[i] = append(s, "r", "c", i);
        run_for(3); /* distinct stored_at */
    }
    const char *epoch = a[1].epoch;
    struct hist h;

    newest(s, &h, "r", "c", 3);
    assert_int_equal(h.n, 3);
    assert_int_equal(h.ns[0], 8);
    assert_int_equal(h.offsets[0], 8);
    assert_int_equal(h.ns[2], 10);
    assert_int_equal(h.recovered, 0);
    assert_string_equal(h.epoch, epoch);

    newest(s, &h, "r", "c", 1000);
    assert_int_equal(h.n, 10);
    int64_t t4 = h.stored_us[3], t6 = h.stored_us[5];
    assert_true(t4 < t6);
    query(s, &h, "r", "c", 1000, 0, 0, NULL, t4, t6);
    assert_int_equal(h.n, 3);
    assert_int_equal(h.ns[0], 4);
    assert_int_equal(h.ns[2], 6);
    query(s, &h, "r", "c", 2, 0, 0, NULL, t4, 0); /* the newest 2 since t4 */
    assert_int_equal(h.n, 2);
    assert_int_equal(h.ns[0], 9);
    query(s, &h, "r", "c", 1000, 0, 0, NULL, 0, t4);
    assert_int_equal(h.n, 4);

    /* Recovery: exactly what came after since_offset, oldest first, at most limit. */
    query(s, &h, "r", "c", 1000, 1, 4, epoch, 0, 0);
    assert_int_equal(h.recovered, 1);
    assert_int_equal(h.n, 6);
    assert_int_equal(h.offsets[0], 5);
    assert_int_equal(h.offsets[5], 10);
    query(s, &h, "r", "c", 2, 1, 4, epoch, 0, 0);
    assert_int_equal(h.recovered, 1);
    assert_int_equal(h.n, 2);
    assert_int_equal(h.offsets[1], 6);
    query(s, &h, "r", "c", 50, 1, 10, epoch, 0, 0); /* up to date */
    assert_int_equal(h.recovered, 1);
    assert_int_equal(h.n, 0);
    query(s, &h, "r", "c", 50, 1, 0, NULL, 0, 0); /* never received anything */
    assert_int_equal(h.recovered, 1);
    assert_int_equal(h.n, 10);
    query(s, &h, "r", "c", 3, 1, 4, "0123456789abcdef", 0, 0); /* another epoch */
    assert_int_equal(h.recovered, 0);
    assert_int_equal(h.n, 3);
    assert_int_equal(h.ns[0], 8);
    query(s, &h, "r", "c", 3, 1, 4, NULL, 0, 0); /* an offset without its epoch */
    assert_int_equal(h.recovered, 0);
    query(s, &h, "r", "c", 3, 1, 11, epoch, 0, 0); /* beyond the last offset */
    assert_int_equal(h.recovered, 0);
    assert_int_equal(h.n, 3);

    /* max_history bounds what recovery reaches: with 5, offset 4 is out of reach. */
    struct arq_error err = {""};
    json_t *cfg = config(f, "max_history: 5\n");
    assert_int_equal(desc->reconfigure(s, cfg, &err), 0);
    json_decref(cfg);
    query(s, &h, "r", "c", 50, 1, 4, epoch, 0, 0);
    assert_int_equal(h.recovered, 0);
    assert_int_equal(h.n, 5);
    assert_int_equal(h.ns[0], 6);
    query(s, &h, "r", "c", 50, 1, 5, epoch, 0, 0);
    assert_int_equal(h.recovered, 1);
    assert_int_equal(h.n, 5);

    /* Room-wide history is its own. */
    newest(s, &h, "r", NULL, 50);
    assert_int_equal(h.n, 0);
}

static void a_channel_asked_about_first_keeps_its_epoch_for_later_messages(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s = start(f, 0, NULL);
    struct hist h;
    query(s, &h, "r", "new", 50, 1, 0, NULL, 0, 0);
    assert_int_equal(h.status, ARQ_OK);
    assert_int_equal(h.recovered, 1);
    assert_int_equal(h.n, 0);
    assert_int_equal(strlen(h.epoch), 16);
    char epoch[64];
    snprintf(epoch, sizeof epoch, "%s", h.epoch);
    struct ack a = append(s, "r", "new", 1);
    assert_int_equal(a.offset, 1);
    assert_string_equal(a.epoch, epoch);
    query(s, &h, "r", "new", 50, 1, 0, epoch, 0, 0);
    assert_int_equal(h.recovered, 1);
    assert_int_equal(h.n, 1);
}

static void a_lost_stream_is_a_new_epoch(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s = start(f, 0, NULL);
    struct ack a = append(s, "r", "c", 1);
    append(s, "r", "c", 2);
    struct hist h;
    freeReplyObject(redis_server_cmd(&f->rs, "DEL t:{r}:c"));
    query(s, &h, "r", "c", 50, 1, 2, a.epoch, 0, 0);
    assert_int_equal(h.recovered, 0);
    assert_int_equal(h.n, 0);
    assert_string_not_equal(h.epoch, a.epoch);
    char second[64];
    snprintf(second, sizeof second, "%s", h.epoch);
    struct ack b = append(s, "r", "c", 3);
    assert_int_equal(b.offset, 1);
    assert_string_equal(b.epoch, second);

    /* Stream and counter gone: the same. */
    freeReplyObject(redis_server_cmd(&f->rs, "DEL t:{r}:c t:{r}:c#seq"));
    struct ack c = append(s, "r", "c", 4);
    assert_int_equal(c.offset, 1);
    assert_string_not_equal(c.epoch, second);
    query(s, &h, "r", "c", 50, 1, 1, second, 0, 0);
    assert_int_equal(h.recovered, 0);
    assert_int_equal(h.n, 1);
}

static void two_instances_on_one_redis_agree_on_offsets(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s1 = start(f, 0, NULL), *s2 = start(f, 1, NULL);
    struct ack a = append(s1, "r", "c", 1), b = append(s2, "r", "c", 2);
    assert_int_equal(a.offset, 1);
    assert_int_equal(b.offset, 2);
    assert_string_equal(a.epoch, b.epoch);

    /* 2 x 100 appends at once: every offset once, each instance's increasing. */
    static struct ack acks[200];
    for (int i = 0; i < 100; i++) {
        append_async(s1, "r", "c", 100 + i, &acks[i]);
        append_async(s2, "r", "c", 200 + i, &acks[100 + i]);
    }
    for (int i = 0; i < 200; i++)
        assert_true(mock_loop_run_until(ack_done, &acks[i], 5000));
    int seen[203] = {0};
    for (int i = 0; i < 200; i++) {
        assert_int_equal(acks[i].status, ARQ_OK);
        assert_true(acks[i].offset >= 3 && acks[i].offset <= 202);
        assert_int_equal(seen[acks[i].offset]++, 0);
        if (i % 100)
            assert_true(acks[i].offset > acks[i - 1].offset);
    }
    struct hist h1, h2;
    newest(s1, &h1, "r", "c", 1000);
    newest(s2, &h2, "r", "c", 1000);
    assert_int_equal(h1.n, 202);
    assert_int_equal(h2.n, 202);
    for (size_t i = 0; i < h1.n; i++) {
        assert_int_equal(h1.offsets[i], i + 1);
        assert_int_equal(h1.ns[i], h2.ns[i]);
    }
}

static void degraded_without_redis_buffers_then_replays_when_it_comes(void **state)
{
    struct fx *f = *state;
    int port = redis_server_free_port();
    snprintf(f->url, sizeof f->url, "redis://127.0.0.1:%d", port);
    void *s = start(f, 0, NULL);
    wait_health(s, 1, 3000);
    const char *detail = NULL;
    health(s, &detail);
    assert_non_null(strstr(detail, "unreachable"));
    assert_int_equal(events_of(f->mh[0], "storage_fallback", NULL), 1);
    assert_int_equal(metric(f->mh[0], "arqonbus_storage_fallback", NULL), 1);

    struct ack a[6];
    for (int i = 1; i <= 5; i++) {
        a[i] = append(s, "r", "c", i);
        assert_int_equal(a[i].status, ARQ_OK);
        assert_int_equal(a[i].offset, (uint64_t)i); /* the ring's own offsets */
    }
    assert_int_equal(metric(f->mh[0], "arqonbus_storage_buffered_messages", NULL), 5);
    struct hist h;
    newest(s, &h, "r", "c", 50);
    assert_int_equal(h.n, 5);
    assert_string_equal(h.epoch, a[1].epoch);
    health(s, &detail);
    assert_non_null(strstr(detail, "5 messages buffered"));

    /* Redis comes: the buffer is replayed in order, then the instance is healthy. */
    assert_int_equal(redis_server_start(&f->rs, port), 0);
    wait_health(s, 0, 10000);
    int ns[16];
    assert_int_equal(stream_ns(f, "t:{r}:c", ns, 16), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ns[i], i + 1);
    const char *ev = NULL;
    assert_int_equal(events_of(f->mh[0], "storage_recovered", &ev), 1);
    assert_non_null(strstr(ev, "\"buffered\":5"));
    assert_non_null(strstr(ev, "\"replayed\":5"));
    assert_int_equal(metric(f->mh[0], "arqonbus_storage_fallback", NULL), 0);
    assert_int_equal(metric(f->mh[0], "arqonbus_storage_buffered_messages", NULL), 0);
    assert_int_equal(metric(f->mh[0], APPENDS, "buffered"), 5);
    assert_int_equal(metric(f->mh[0], APPENDS, "replayed"), 5);

    /* Redis' epoch is not the ring's: recovering with the ring's tells recovered = 0. */
    query(s, &h, "r", "c", 50, 1, 5, a[1].epoch, 0, 0);
    assert_int_equal(h.recovered, 0);
    assert_string_not_equal(h.epoch, a[1].epoch);
    assert_int_equal(h.n, 5);
    struct ack next = append(s, "r", "c", 6);
    assert_int_equal(next.offset, 6);
    assert_string_equal(next.epoch, h.epoch);
}

/* Every message acked, in Redis once, in append order. */
static void check_all_stored_once_in_order(struct fx *f, const char *key, int first, int count)
{
    static int ns[MAX_MSGS];
    size_t n = stream_ns(f, key, ns, MAX_MSGS);
    if (n != (size_t)count) {
        for (size_t i = 0; i < n; i++)
            print_message("%d ", ns[i]);
        print_message("\n");
    }
    assert_int_equal(n, count);
    for (int i = 0; i < count; i++)
        assert_int_equal(ns[i], first + i);
}

static void redis_killed_mid_stream_every_ack_ends_in_redis_once_in_order(void **state)
{
    struct fx *f = *state;
    /* Persistence, so that what Redis acknowledged survives its crash. */
    assert_int_equal(redis_server_start_aof(&f->rs, 0), 0);
    redis_server_url(&f->rs, f->url, sizeof f->url);
    void *s = start(f, 0, NULL);
    wait_health(s, 0, 3000);
    static struct ack acks[300];
    for (int i = 0; i < 300; i++) {
        append_async(s, "r", "c", i + 1, &acks[i]);
        if (i == 100) {
            redis_server_signal(&f->rs, SIGKILL);
        } else if (i == 200) {
            wait_health(s, 1, 3000);
            assert_int_equal(redis_server_restart(&f->rs), 0);
        }
        run_for(1);
    }
    for (int i = 0; i < 300; i++) {
        assert_true(mock_loop_run_until(ack_done, &acks[i], 5000));
        assert_int_equal(acks[i].status, ARQ_OK);
    }
    wait_health(s, 0, 10000);
    check_all_stored_once_in_order(f, "t:{r}:c", 1, 300);
    const char *ev = NULL;
    assert_int_equal(events_of(f->mh[0], "storage_recovered", &ev), 1);
}

static void a_paused_redis_times_out_and_the_replay_stores_once(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s = start(f, 0, "connect_timeout: 500ms\n");
    wait_health(s, 0, 3000);
    append(s, "r", "c", 1);
    redis_server_signal(&f->rs, SIGSTOP);
    struct ack a[4];
    for (int i = 2; i <= 4; i++)
        append_async(s, "r", "c", i, &a[i - 1]);
    /* No reply within the reply timeout (5 s): the link is dropped, the acks come from the
     * ring. Redis, resumed, may still run what it had read: the replay must not double it. */
    for (int i = 1; i < 4; i++)
        assert_true(mock_loop_run_until(ack_done, &a[i], 8000));
    assert_int_equal(health(s, NULL), 1);
    redis_server_signal(&f->rs, SIGCONT);
    wait_health(s, 0, 10000);
    check_all_stored_once_in_order(f, "t:{r}:c", 1, 4);
}

static void strict_mode_refuses_while_redis_is_down(void **state)
{
    struct fx *f = *state;
    int port = redis_server_free_port();
    snprintf(f->url, sizeof f->url, "redis://127.0.0.1:%d", port);
    void *s = start(f, 0, "mode: strict\n");
    wait_health(s, 2, 3000);
    const char *detail = NULL;
    health(s, &detail);
    assert_non_null(strstr(detail, "unreachable"));
    struct ack a = append(s, "r", "c", 1);
    assert_int_equal(a.status, ARQ_EAGAIN);
    assert_int_equal(a.offset, 0);
    struct hist h;
    query(s, &h, "r", "c", 10, 0, 0, NULL, 0, 0);
    assert_int_equal(h.status, ARQ_EAGAIN);
    assert_int_equal(events_of(f->mh[0], "storage_fallback", NULL), 0);
    assert_int_equal(metric(f->mh[0], APPENDS, "unavailable"), 1);

    assert_int_equal(redis_server_start(&f->rs, port), 0);
    wait_health(s, 0, 10000);
    a = append(s, "r", "c", 2);
    assert_int_equal(a.status, ARQ_OK);
    assert_int_equal(a.offset, 1);
}

static void ttl_expires_keys_and_hides_older_messages(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s = start(f, 0, "ttl: 1s\n");
    append(s, "r", "c", 1);
    long long pttl = redis_int(f, "PTTL %s", "t:{r}:c");
    assert_true(pttl > 0 && pttl <= 1000);
    assert_true(redis_int(f, "PTTL %s", "t:{r}:c#seq") > 0);
    struct hist h;
    newest(s, &h, "r", "c", 10);
    assert_int_equal(h.n, 1);
    /* Reconfigured to no ttl: the next append makes the keys permanent. */
    struct arq_error err = {""};
    json_t *cfg = config(f, "ttl: 0\n");
    assert_int_equal(desc->reconfigure(s, cfg, &err), 0);
    json_decref(cfg);
    append(s, "r", "c", 2);
    assert_int_equal(redis_int(f, "PTTL %s", "t:{r}:c"), -1);
    assert_int_equal(redis_int(f, "PTTL %s", "t:{r}:c#epoch"), -1);
    cfg = config(f, "ttl: 200ms\n");
    assert_int_equal(desc->reconfigure(s, cfg, &err), 0);
    json_decref(cfg);
    run_for(300);
    newest(s, &h, "r", "c", 10); /* both older than the ttl now */
    assert_int_equal(h.n, 0);
}

static void the_fallback_is_bounded_by_max_fallback_bytes(void **state)
{
    struct fx *f = *state;
    snprintf(f->url, sizeof f->url, "redis://127.0.0.1:%d", redis_server_free_port());
    void *s = start(f, 0, "max_fallback_bytes: 1KiB\n");
    wait_health(s, 1, 3000);
    int refused = 0;
    for (int i = 1; i <= 20; i++) {
        struct ack a = append(s, "r", "c", i);
        if (a.status == ARQ_ELIMIT)
            refused++;
        else
            assert_int_equal(a.status, ARQ_OK);
    }
    assert_true(refused > 0 && refused < 20);
    assert_int_equal(metric(f->mh[0], APPENDS, "overflow"), refused);
    assert_int_equal(mock_host_log_matching(f->mh[0], "exceed max_fallback_bytes"), 1);
}

static void stats_tell_state_and_counts(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s = start(f, 0, NULL);
    append(s, "r", "c", 1);
    json_t *st = ops()->stats(s);
    assert_non_null(st);
    assert_string_equal(json_string_value(json_object_get(st, "backend")), "redis");
    assert_string_equal(json_string_value(json_object_get(st, "state")), "ready");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(st, "appends"), "stored")),
                     1);
    char *text = json_dumps(st, 0);
    assert_null(strstr(text, "password"));
    free(text);
    json_decref(st);
}

static void a_host_name_is_resolved_off_the_loop(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    snprintf(f->url, sizeof f->url, "redis://localhost:%d", f->rs.port);
    void *s = start(f, 0, NULL);
    wait_health(s, 0, 3000);
    struct ack a = append(s, "r", "c", 1);
    assert_int_equal(a.status, ARQ_OK);
    assert_int_equal(a.offset, 1);
}

static void a_password_is_sent_with_auth(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    freeReplyObject(redis_server_cmd(&f->rs, "CONFIG SET requirepass s3cret"));
    void *s = start(f, 0, "password: hunter2\n");
    wait_health(s, 1, 3000);
    assert_true(mock_host_log_matching(f->mh[0], "AUTH") >= 1);
    assert_int_equal(mock_host_log_matching(f->mh[0], "hunter2"), 0);
    destroy_instance(f, 0);
    s = start(f, 1, "password: s3cret\n");
    wait_health(s, 0, 3000);
}

static void destroy_answers_what_is_still_waiting(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s = start(f, 0, NULL);
    struct ack a;
    append_async(s, "r", "c", 1, &a); /* still connecting: waits in the queue */
    struct hist h = {0};
    struct arq_history_query q = {.struct_size = sizeof q, .room = "r", .limit = 5};
    assert_int_equal(ops()->query(s, &q, answered, &h), 0);
    destroy_instance(f, 0);
    assert_int_equal(a.done, 1);
    assert_int_equal(a.status, ARQ_ECLOSED);
    assert_int_equal(h.done, 1);
    assert_int_equal(h.status, ARQ_ECLOSED);
}

static void a_successor_replays_what_its_predecessor_buffered(void **state)
{
    struct fx *f = *state;
    /* The predecessor: Redis unreachable, three messages buffered. */
    snprintf(f->url, sizeof f->url, "redis://127.0.0.1:%d", redis_server_free_port());
    void *old = start(f, 0, NULL);
    wait_health(old, 1, 3000);
    for (int i = 1; i <= 3; i++)
        assert_int_equal(append(old, "r", "c", i).status, ARQ_OK);
    /* A reload points the instance at a reachable Redis: the successor takes the buffer. */
    redis_up(f);
    struct arq_error err = {""};
    json_t *cfg = config(f, NULL);
    assert_int_equal(desc->create(host, mock_host_ctx(f->mh[1]), cfg, &f->self[1], &err), 0);
    json_decref(cfg);
    assert_int_equal(desc->start(f->self[1], old, &err), 0);
    destroy_instance(f, 0);
    assert_int_equal(mock_host_log_matching(f->mh[0], "never reached redis"), 0);
    wait_health(f->self[1], 0, 5000);
    check_all_stored_once_in_order(f, "t:{r}:c", 1, 3);
}

static void a_long_message_id_is_hashed_in_its_dedupe_key(void **state)
{
    struct fx *f = *state;
    redis_up(f);
    void *s = start(f, 0, NULL);
    char id[400];
    memset(id, 'x', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    const char *json = "{\"payload\":{\"n\":1}}";
    struct arq_stored msg = {.struct_size = sizeof msg,
                             .room = "r",
                             .channel = "c",
                             .id = id,
                             .json = json,
                             .json_len = strlen(json)};
    struct ack a = {0}, b = {0};
    assert_int_equal(ops()->append(s, &msg, acked, &a), 0);
    assert_int_equal(ops()->append(s, &msg, acked, &b), 0);
    assert_true(mock_loop_run_until(ack_done, &b, 5000));
    assert_int_equal(a.offset, 1);
    assert_int_equal(b.offset, 1); /* still recognised as the same message */
    redisReply *r = redis_server_cmd(&f->rs, "KEYS t:{r}:c#id:*");
    assert_non_null(r);
    assert_int_equal(r->elements, 1);
    assert_int_equal(strlen(r->element[0]->str), strlen("t:{r}:c#id:~") + 16);
    freeReplyObject(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(descriptor_is_a_storage_with_the_documented_options),
        cmocka_unit_test_setup_teardown(create_checks_url_and_prefix_and_connects_to_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(offsets_count_from_one_per_channel_in_the_documented_keys,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_retried_append_is_stored_once, setup, teardown),
        cmocka_unit_test_setup_teardown(a_message_without_json_is_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(history_answers_newest_time_windows_and_recovery, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            a_channel_asked_about_first_keeps_its_epoch_for_later_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(a_lost_stream_is_a_new_epoch, setup, teardown),
        cmocka_unit_test_setup_teardown(two_instances_on_one_redis_agree_on_offsets, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(degraded_without_redis_buffers_then_replays_when_it_comes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            redis_killed_mid_stream_every_ack_ends_in_redis_once_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(a_paused_redis_times_out_and_the_replay_stores_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(strict_mode_refuses_while_redis_is_down, setup, teardown),
        cmocka_unit_test_setup_teardown(ttl_expires_keys_and_hides_older_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(the_fallback_is_bounded_by_max_fallback_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stats_tell_state_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(a_host_name_is_resolved_off_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(a_password_is_sent_with_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(destroy_answers_what_is_still_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(a_successor_replays_what_its_predecessor_buffered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_long_message_id_is_hashed_in_its_dedupe_key, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, load_plugin, unload_plugin);
}
