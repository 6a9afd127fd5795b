/* The bus and its storage plugin: every routed room/channel message is appended (after live
 * delivery: delivery never waits for storage), acks carry the stored offset and epoch, and
 * history queries (the `history` command, and join_channel with recovery) are answered. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "envelope.h"
#include "instance.h"
#include "log.h"
#include "options.h"

struct arq_ctx *storage_current(const struct bus *b)
{
    struct arq_ctx *s;
    for (size_t i = 0; (s = b->env.instance(b->env.arg, ARQ_KIND_STORAGE, i)); i++)
        if (s->started)
            return s;
    return NULL;
}

json_t *storage_status(const struct bus *b)
{
    struct arq_ctx *s = storage_current(b);
    if (!s)
        return json_null();
    const char *detail;
    const char *health = instance_health(s, &detail);
    return json_pack("{s:s, s:s, s:s, s:s?}", "instance", s->name, "backend", s->mod->desc->name,
                     "health", health, "detail", detail);
}

/* --- appends and acks ---------------------------------------------------------------------- */

/* Who learns where a message was stored: the publishing client (its ack), or the server-side
 * caller of bus_publish. */
struct ack {
    struct arq_conn *conn; /* referenced, or NULL */
    arq_result_cb cb;
    void *arg;
    size_t delivered;
    char id[];
};

static void storage__ack(struct arq_conn *c, const char *id, size_t delivered, uint64_t offset,
                         const char *epoch)
{
    if (c->state != CONN_OPEN)
        return;
    char frame_id[32], ts[32];
    int64_t now = bus_now_ms(c->bus);
    envelope_new_id(frame_id, now);
    envelope_format_timestamp(now, ts);
    json_t *payload = json_pack("{s:I}", "delivered", (json_int_t)delivered);
    if (payload && epoch) {
        json_object_set_new(payload, "offset", json_integer((json_int_t)offset));
        json_object_set_new(payload, "epoch", json_string(epoch));
    }
    json_t *ack = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o*}", "id", frame_id, "timestamp", ts,
                            "version", "1.0", "type", "message_response", "request_id", id,
                            "status", "success", "payload", payload);
    if (ack)
        conn_send_json(c, ack);
    json_decref(ack);
}

void storage_tell(struct arq_conn *c, arq_result_cb cb, void *arg, const char *id, size_t delivered,
                  uint64_t offset, const char *epoch)
{
    if (c) {
        storage__ack(c, id, delivered, offset, epoch);
        return;
    }
    json_t *data = json_pack("{s:s, s:I}", "id", id, "delivered", (json_int_t)delivered);
    if (data && epoch) {
        json_object_set_new(data, "offset", json_integer((json_int_t)offset));
        json_object_set_new(data, "epoch", json_string(epoch));
    }
    cb(arg, data ? NULL : ARQ_ERR_INTERNAL, data ? NULL : "Out of memory", data);
    json_decref(data);
}

static void storage__appended(void *arg, int status, uint64_t offset, const char *epoch)
{
    struct ack *a = arg;
    storage_tell(a->conn, a->cb, a->arg, a->id, a->delivered, offset,
                 status == ARQ_OK ? epoch : NULL);
    if (a->conn)
        conn_unref(a->conn);
    free(a);
}

void storage_store(struct bus *b, const struct envelope *env, const struct frame *f,
                   size_t delivered, struct arq_conn *c, arq_result_cb cb, void *arg)
{
    int tell = c ? c->ack : 1;
    /* Direct messages are not stored: history belongs to rooms and channels. */
    struct arq_ctx *s = env->room && !env->to_client ? storage_current(b) : NULL;
    struct ack *a = NULL;
    if (s && tell) {
        size_t idlen = strlen(env->id);
        if ((a = malloc(sizeof *a + idlen + 1))) {
            *a = (struct ack){.conn = c, .cb = cb, .arg = arg, .delivered = delivered};
            memcpy(a->id, env->id, idlen + 1);
            if (c)
                conn_ref(c);
        }
    }
    if (tell && !a) /* nothing stores it, or no memory to wait: tell now, without offset */
        storage_tell(c, cb, arg, env->id, delivered, 0, NULL);
    if (!s)
        return;
    struct arq_stored msg = {.struct_size = sizeof msg,
                             .room = env->room,
                             .channel = env->channel,
                             .id = env->id,
                             .timestamp_us = env->timestamp_ms * 1000,
                             .json = (const char *)f->data,
                             .json_len = f->len};
    const struct arq_storage_ops *ops = s->mod->desc->ops;
    if (ops->append(s->self, &msg, a ? storage__appended : NULL, a) != ARQ_OK && a) {
        /* Refused at once: the callback will not come. */
        storage__appended(a, ARQ_EAGAIN, 0, NULL);
    }
}

/* --- history ------------------------------------------------------------------------------- */

/* One history query under way. A join (conn set, join) holds the client's routed messages
 * until the answer is sent. */
struct query {
    arq_result_cb done;
    void *arg;
    struct arq_conn *conn; /* referenced, or NULL */
    int join;
    char *room, *channel;
};

static json_t *storage__entries(const struct arq_stored *const *entries, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        const struct arq_stored *e = entries[i];
        char at[32];
        envelope_format_timestamp(e->stored_us / 1000, at);
        json_t *env = json_loadb(e->json, e->json_len, 0, NULL);
        json_array_append_new(arr, json_pack("{s:o*, s:s, s:I}", "envelope", env, "stored_at", at,
                                             "offset", (json_int_t)e->offset));
    }
    return arr;
}

/* {room, channel?, memberships, history} for a join; `history_take` NULL: history null (no
 * storage could answer; the join stands). */
static json_t *storage__joined(const struct query *q, json_t *history_take)
{
    json_t *data = json_pack("{s:s, s:s*, s:o, s:o}", "room", q->room, "channel", q->channel,
                             "memberships", router_memberships_json(q->conn), "history",
                             history_take ? history_take : json_null());
    return data;
}

static void storage__finish(struct query *q, const char *code, const char *text, json_t *data_take)
{
    q->done(q->arg, code, text, data_take);
    json_decref(data_take);
    if (q->join)
        conn_resume(q->conn); /* the answer went ahead of what arrived meanwhile */
    if (q->conn)
        conn_unref(q->conn);
    free(q->room);
    free(q->channel);
    free(q);
}

static void storage__answered(void *arg, int status, const struct arq_stored *const *entries,
                              size_t n, const char *epoch, int recovered)
{
    struct query *q = arg;
    if (status != ARQ_OK) {
        /* A join stands; only its history is missing. */
        if (q->join)
            storage__finish(q, NULL, NULL, storage__joined(q, NULL));
        else
            storage__finish(q, ARQ_ERR_STORAGE_UNAVAILABLE,
                            "History is unavailable: the storage backend is down", NULL);
        return;
    }
    if (q->join) /* what the history holds is not delivered live again */
        for (size_t i = 0; i < n; i++)
            conn_drop_message(q->conn, entries[i]->id);
    json_t *history = json_pack("{s:o, s:I, s:s?, s:b}", "entries", storage__entries(entries, n),
                                "count", (json_int_t)n, "epoch", epoch, "recovered", recovered);
    storage__finish(q, NULL, NULL, q->join ? storage__joined(q, history) : history);
}

static int storage__time_arg(const json_t *args, const char *name, int64_t *us,
                             struct arq_error *err)
{
    const char *s = json_string_value(json_object_get(args, name));
    int64_t ms;
    *us = 0;
    if (!s)
        return 0;
    if (envelope_parse_timestamp(s, &ms) != 0) {
        arq_error_set(err, 0, "Argument '%s': invalid timestamp: %s", name, s);
        return -1;
    }
    *us = ms * 1000;
    return 0;
}

/* The history query of `args` (the history command's arguments); with `conn` and `join`, the
 * join first. The outcome goes to done(arg, ...). */
static void storage__history(struct bus *b, struct arq_conn *conn, const json_t *args, int join,
                             arq_result_cb done, void *arg)
{
    struct arq_error err = {""};
    const char *room = json_string_value(json_object_get(args, "room"));
    const char *channel = json_string_value(json_object_get(args, "channel"));
    const json_t *limit = json_object_get(args, "limit");
    const json_t *since_offset = json_object_get(args, "since_offset");
    const char *epoch = json_string_value(json_object_get(args, "epoch"));
    struct arq_history_query hq = {.struct_size = sizeof hq,
                                   .room = room,
                                   .channel = channel,
                                   .limit = 50,
                                   .recover = since_offset != NULL || epoch != NULL,
                                   .since_offset = (uint64_t)json_integer_value(since_offset),
                                   .epoch = epoch};
    const char *code = bus_check_names(b, room, channel, &err);
    if (code) {
        done(arg, code, err.text, NULL);
        return;
    }
    /* The range is checked before narrowing to unsigned: 4294967297 is not 1. */
    json_int_t nlimit = limit ? json_integer_value(limit) : 50;
    if ((limit && !json_is_integer(limit)) || nlimit < 1 || nlimit > 1000 ||
        (since_offset &&
         (!json_is_integer(since_offset) || json_integer_value(since_offset) < 0))) {
        done(arg, ARQ_ERR_VALIDATION, "Argument 'limit' must be 1..1000 and 'since_offset' >= 0",
             NULL);
        return;
    }
    hq.limit = (unsigned)nlimit;
    if (storage__time_arg(args, "since", &hq.since_us, &err) != 0 ||
        storage__time_arg(args, "until", &hq.until_us, &err) != 0) {
        done(arg, ARQ_ERR_VALIDATION, err.text, NULL);
        return;
    }
    if (conn) {
        /* A client's read: may it read this history (and join, when it joins)? */
        struct arq_action what = {
            .struct_size = sizeof what, .action = "history", .room = room, .channel = channel};
        uint64_t retry_after_ms = 0;
        if ((code = auth_check(b, conn, &what, err.text, sizeof err.text, &retry_after_ms)) ||
            (join && (code = bus_join_authorized(b, conn, room, channel, &err)))) {
            done(arg, code, err.text, NULL);
            return;
        }
    }
    struct query *q = calloc(1, sizeof *q);
    if (!q || !(q->room = strdup(room)) || (channel && !(q->channel = strdup(channel)))) {
        if (q)
            free(q->room);
        free(q);
        done(arg, ARQ_ERR_INTERNAL, "Out of memory", NULL);
        return;
    }
    q->done = done;
    q->arg = arg;
    q->conn = conn;
    q->join = join;
    if (conn)
        conn_ref(conn);
    struct arq_ctx *s = storage_current(b);
    if (!s) {
        if (join)
            storage__finish(q, NULL, NULL, storage__joined(q, NULL));
        else
            storage__finish(q, ARQ_ERR_STORAGE_UNAVAILABLE, "No storage backend is configured",
                            NULL);
        return;
    }
    /* Hold routed messages to this client until the history is sent: what arrives meanwhile
     * is queued behind the answer, and dropped if the history already holds it. */
    if (join)
        conn_pause(conn);
    const struct arq_storage_ops *ops = s->mod->desc->ops;
    if (ops->query(s->self, &hq, storage__answered, q) != ARQ_OK)
        storage__answered(q, ARQ_EAGAIN, NULL, 0, NULL, 0);
}

/* The history command's reply. */
static void storage__reply(void *arg, const char *code, const char *text, const json_t *data)
{
    arq_request *req = arg;
    if (code) {
        commands_svc_reply_error(req, code, text);
        return;
    }
    /* A join's data holds the history (memberships is an array); a history read is it. */
    const json_t *history =
        json_object_get(data, "memberships") ? json_object_get(data, "history") : data;
    size_t n = (size_t)json_integer_value(json_object_get(history, "count"));
    char message[64];
    if (history && !json_is_null(history))
        snprintf(message, sizeof message, "%zu message%s", n, n == 1 ? "" : "s");
    else
        snprintf(message, sizeof message, "Joined; no history available");
    commands_svc_reply_ok(req, message, data);
}

void storage_svc_history(arq_ctx *ctx, arq_request *req, arq_conn *conn, const json_t *args,
                         int join)
{
    storage__history(bus_of(ctx), conn, args, join, storage__reply, req);
}

void bus_svc_history_query(arq_ctx *ctx, const json_t *args, arq_result_cb cb, void *arg)
{
    storage__history(bus_of(ctx), NULL, args, 0, cb, arg);
}
