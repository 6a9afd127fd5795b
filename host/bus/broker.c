/* The bus and its broker (scale-out). With a broker running, what this node routes also goes
 * to the other nodes (once per message, whatever the number of recipients), what they route
 * arrives through broker_deliver and is fanned out to the local members only, and the broker
 * learns what the cluster must know of this node: the rooms and channels it has members in,
 * the clients it holds, their memberships. Without one, every function here does nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "instance.h"
#include "metrics.h"

/* How often the cluster's node list in `status` is refreshed. */
#define BROKER_NODES_PERIOD_MS 1000

struct arq_ctx *broker_current(const struct bus *b)
{
    struct arq_ctx *s;
    for (size_t i = 0; (s = b->env.instance(b->env.arg, ARQ_KIND_BROKER, i)); i++)
        if (s->started)
            return s;
    return NULL;
}

static const struct arq_broker_ops *broker__ops(const struct arq_ctx *s)
{
    return s->mod->desc->ops;
}

void broker_publish(struct bus *b, const char *room, const char *channel, const char *to_client,
                    const struct frame *f)
{
    struct arq_ctx *s = broker_current(b);
    if (!s)
        return;
    struct arq_broker_msg msg = {.struct_size = sizeof msg,
                                 .room = to_client ? NULL : room,
                                 .channel = to_client ? NULL : channel,
                                 .to_client = to_client,
                                 .data = f->data,
                                 .len = f->len,
                                 .origin = b->env.node,
                                 .id = f->msg_id[0] ? f->msg_id : NULL};
    /* ARQ_EAGAIN (disconnected): the broker counts the loss; local delivery went ahead. */
    (void)broker__ops(s)->publish(s->self, &msg);
}

static size_t broker__room_members(const struct room *r)
{
    return r->nmembers + r->channel_members;
}

void broker_joined(struct bus *b, const struct arq_conn *c, const struct room *r,
                   const struct channel *ch)
{
    struct arq_ctx *s = broker_current(b);
    if (!s)
        return;
    const struct arq_broker_ops *ops = broker__ops(s);
    /* Room-wide traffic reaches channel members too: the room's own subscription follows
     * every membership in it. */
    if (broker__room_members(r) == 1)
        ops->subscribe(s->self, r->name, NULL);
    if (ch && ch->nmembers == 1)
        ops->subscribe(s->self, r->name, ch->name);
    ops->presence(s->self, c->id, r->name, ch ? ch->name : NULL, 1);
}

void broker_left(struct bus *b, const struct arq_conn *c, const struct room *r,
                 const struct channel *ch)
{
    struct arq_ctx *s = broker_current(b);
    if (!s)
        return;
    const struct arq_broker_ops *ops = broker__ops(s);
    ops->presence(s->self, c->id, r->name, ch ? ch->name : NULL, 0);
    if (ch && ch->nmembers == 0)
        ops->unsubscribe(s->self, r->name, ch->name);
    if (broker__room_members(r) == 0)
        ops->unsubscribe(s->self, r->name, NULL);
}

void broker_client(struct bus *b, const struct arq_conn *c, int connected)
{
    struct arq_ctx *s = broker_current(b);
    if (!s)
        return;
    if (connected)
        broker__ops(s)->register_client(s->self, c->id);
    else
        broker__ops(s)->unregister_client(s->self, c->id);
}

/* Tell broker `s` everything this node holds: subscriptions, clients, memberships. */
static void broker__tell_all(struct bus *b, struct arq_ctx *s)
{
    const struct arq_broker_ops *ops = broker__ops(s);
    size_t i = 0;
    void *v;
    while (hmap_next(&b->rooms, &i, NULL, &v)) {
        const struct room *r = v;
        if (!broker__room_members(r))
            continue;
        ops->subscribe(s->self, r->name, NULL);
        size_t j = 0;
        void *cv;
        while (hmap_next(&r->channels, &j, NULL, &cv)) {
            const struct channel *ch = cv;
            if (ch->nmembers)
                ops->subscribe(s->self, r->name, ch->name);
        }
    }
    for (const struct arq_conn *c = b->all; c; c = c->next) {
        if (c->state != CONN_OPEN)
            continue;
        ops->register_client(s->self, c->id);
        for (const struct membership *m = c->memberships; m; m = m->next)
            ops->presence(s->self, c->id, m->room->name, m->channel ? m->channel->name : NULL, 1);
    }
}

/* --- the cluster's nodes, for status ---------------------------------------------------------- */

static void broker__nodes_answered(void *arg, const char *error_code, const char *text,
                                   const json_t *data)
{
    struct bus *b = arg;
    (void)text;
    b->cluster_query_pending = 0;
    if (!error_code && json_is_array(data)) {
        json_decref(b->cluster_nodes);
        b->cluster_nodes = json_deep_copy(data);
    }
}

static void broker__nodes_refresh(uv_timer_t *t)
{
    struct bus *b = t->data;
    struct arq_ctx *s = broker_current(b);
    const struct arq_broker_ops *ops = s ? broker__ops(s) : NULL;
    if (!ops || !ops->query || b->cluster_query_pending)
        return;
    b->cluster_query_pending = 1;
    ops->query(s->self, "nodes", NULL, NULL, broker__nodes_answered, b);
}

void broker_generation_changed(struct bus *b)
{
    struct arq_ctx *s = broker_current(b);
    if (s != b->broker_told) {
        /* A new broker (the first, or a replacement): it knows nothing of this node yet. */
        b->broker_told = s;
        json_decref(b->cluster_nodes);
        b->cluster_nodes = NULL;
        if (s) {
            broker__tell_all(b, s);
            broker__nodes_refresh(&b->cluster_timer);
        }
    }
    if (s && !b->stopping) {
        if (!uv_is_active((uv_handle_t *)&b->cluster_timer)) {
            uv_timer_start(&b->cluster_timer, broker__nodes_refresh, BROKER_NODES_PERIOD_MS,
                           BROKER_NODES_PERIOD_MS);
            uv_unref((uv_handle_t *)&b->cluster_timer);
        }
    } else if (!uv_is_closing((uv_handle_t *)&b->cluster_timer)) {
        uv_timer_stop(&b->cluster_timer);
    }
}

void broker_instance_destroyed(struct bus *b, const struct arq_ctx *ctx)
{
    if (ctx == b->broker_told)
        b->broker_told = NULL;
}

json_t *broker_status(const struct bus *b)
{
    struct arq_ctx *s = broker_current(b);
    if (!s)
        return NULL;
    const char *detail;
    const char *health = instance_health(s, &detail);
    json_t *nodes = b->cluster_nodes ? json_deep_copy(b->cluster_nodes) : json_array();
    return json_pack("{s:s, s:{s:s, s:s, s:s, s:s?}, s:o}", "node", b->env.node, "broker",
                     "instance", s->name, "backend", s->mod->desc->name, "health", health, "detail",
                     detail, "nodes", nodes);
}

/* --- the broker's services ----------------------------------------------------------------- */

void broker_svc_deliver(arq_ctx *ctx, const struct arq_broker_msg *msg)
{
    struct bus *b = bus_of(ctx);
    if (!msg->data || (msg->origin && !strcmp(msg->origin, b->env.node)))
        return;
    struct arq_conn *target = NULL;
    struct room *r = NULL;
    struct channel *ch = NULL;
    if (msg->to_client) {
        if (!(target = conn_find(b, msg->to_client)) || target->state != CONN_OPEN)
            return;
    } else if (!msg->room || !(r = router_room(b, msg->room)) ||
               (msg->channel && !(ch = router_channel(r, msg->channel)))) {
        return; /* nobody here (any more) */
    }
    struct frame *f = frame_new(msg->data, msg->len, 0);
    if (!f)
        return;
    if (msg->id)
        snprintf(f->msg_id, sizeof f->msg_id, "%s", msg->id);
    size_t delivered = target ? conn_send(target, f) == 0 : router_fanout(b, r, ch, f, NULL);
    metrics_add(b->m_deliveries, (double)delivered);
    frame_unref(f);
}

void broker_svc_resync(arq_ctx *ctx)
{
    struct bus *b = bus_of(ctx);
    if (ctx->started && !b->stopping)
        broker__tell_all(b, ctx);
}

/* --- cluster-wide queries ------------------------------------------------------------------- */

/* One query asked of the broker, to be merged with what this node knows. */
struct cluster_query {
    struct bus *bus;
    arq_result_cb cb;
    void *arg;
    char *what, *room, *channel;
    int room_check; /* "channels": the answer is the room's room-wide members (see below) */
};

static void cluster__free(struct cluster_query *q)
{
    free(q->what);
    free(q->room);
    free(q->channel);
    free(q);
}

/* "rooms": the broker's counts, with this node's message counters. */
static json_t *cluster__rooms(const struct bus *b, const json_t *remote)
{
    json_t *arr = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(remote, i, v)
    {
        const char *name = json_string_value(json_object_get(v, "room"));
        if (!name)
            continue;
        const struct room *r = hmap_get(&b->rooms, name);
        json_array_append_new(arr, json_pack("{s:s, s:O, s:I, s:I}", "room", name, "members",
                                             json_object_get(v, "members"), "channels",
                                             json_integer_value(json_object_get(v, "channels")),
                                             "messages", (json_int_t)(r ? r->messages : 0)));
    }
    /* Rooms with no member anywhere but known here (an explicit empty channel). */
    size_t k = 0;
    void *rv;
    while (hmap_next(&b->rooms, &k, NULL, &rv)) {
        const struct room *r = rv;
        if (broker__room_members(r))
            continue;
        json_array_append_new(arr, json_pack("{s:s, s:i, s:I, s:I}", "room", r->name, "members", 0,
                                             "channels", (json_int_t)r->channels.len, "messages",
                                             (json_int_t)r->messages));
    }
    return arr;
}

static json_t *cluster__find(const json_t *arr, const char *key, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *s = json_string_value(json_object_get(v, key));
        if (s && !strcmp(s, name))
            return v;
    }
    return NULL;
}

/* A channel as bus_query describes it, members from the cluster. `local` may be NULL (no
 * member here): then it has no description, and its times are not known here. */
static json_t *cluster__channel(const char *room, const char *name, const struct channel *local,
                                json_int_t members)
{
    json_t *o = local ? router_channel_json(local, 0)
                      : json_pack("{s:s, s:s, s:i}", "room", room, "channel", name, "messages", 0);
    if (o)
        json_object_set_new(o, "members", json_integer(members));
    return o;
}

static void cluster__answered(void *arg, const char *error_code, const char *text,
                              const json_t *data)
{
    struct cluster_query *q = arg;
    struct bus *b = q->bus;
    json_t *out = NULL;
    char msg[400];
    if (error_code) {
        q->cb(q->arg, error_code, text, NULL);
        cluster__free(q);
        return;
    }
    struct room *r = q->room ? router_room(b, q->room) : NULL;
    if (q->room_check) {
        /* A room with no channel anywhere exists if it has room-wide members somewhere. */
        if (json_array_size(data)) {
            out = json_array();
        } else {
            snprintf(msg, sizeof msg, "Room %s does not exist", q->room);
            q->cb(q->arg, ARQ_ERR_ROOM_NOT_FOUND, msg, NULL);
            cluster__free(q);
            return;
        }
    } else if (!strcmp(q->what, "rooms")) {
        out = cluster__rooms(b, data);
    } else if (!strcmp(q->what, "channels")) {
        out = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(data, i, v)
        {
            const char *name = json_string_value(json_object_get(v, "channel"));
            if (name)
                json_array_append_new(
                    out, cluster__channel(q->room, name, router_channel(r, name),
                                          json_integer_value(json_object_get(v, "members"))));
        }
        size_t k = 0;
        void *cv;
        while (r && hmap_next(&r->channels, &k, NULL, &cv)) {
            const struct channel *ch = cv;
            if (!cluster__find(data, "channel", ch->name))
                json_array_append_new(out, router_channel_json(ch, 0));
        }
        struct arq_ctx *s = broker_current(b);
        if (!r && !json_array_size(out)) {
            json_decref(out);
            if (s) { /* no channel anywhere: does the room exist at all? */
                q->room_check = 1;
                broker__ops(s)->query(s->self, "members", q->room, NULL, cluster__answered, q);
                return;
            }
            snprintf(msg, sizeof msg, "Room %s does not exist", q->room);
            q->cb(q->arg, ARQ_ERR_ROOM_NOT_FOUND, msg, NULL);
            cluster__free(q);
            return;
        }
    } else { /* "channel": the members' ids from the cluster */
        const struct channel *ch = router_channel(r, q->channel);
        if (!ch && !json_array_size(data)) {
            snprintf(msg, sizeof msg, "Channel %s/%s does not exist", q->room, q->channel);
            q->cb(q->arg, ARQ_ERR_CHANNEL_NOT_FOUND, msg, NULL);
            cluster__free(q);
            return;
        }
        out = cluster__channel(q->room, q->channel, ch, (json_int_t)json_array_size(data));
        if (out) {
            json_object_set_new(out, "member_ids", json_deep_copy(data));
            json_object_set_new(out, "messages", json_integer(ch ? (json_int_t)ch->messages : 0));
        }
    }
    if (out)
        q->cb(q->arg, NULL, NULL, out);
    else
        q->cb(q->arg, ARQ_ERR_INTERNAL, "Out of memory", NULL);
    json_decref(out);
    cluster__free(q);
}

int broker_query(struct bus *b, const char *what, const char *room, const char *channel,
                 arq_result_cb cb, void *arg)
{
    struct arq_ctx *s = broker_current(b);
    const struct arq_broker_ops *ops = s ? broker__ops(s) : NULL;
    if (!ops || !ops->query ||
        (strcmp(what, "rooms") && strcmp(what, "channels") && strcmp(what, "channel")))
        return -1;
    struct cluster_query *q = calloc(1, sizeof *q);
    if (!q || !(q->what = strdup(what)) || (room && !(q->room = strdup(room))) ||
        (channel && !(q->channel = strdup(channel)))) {
        if (q)
            cluster__free(q);
        return -1;
    }
    q->bus = b;
    q->cb = cb;
    q->arg = arg;
    const char *ask = !strcmp(what, "channel") ? "members" : what;
    ops->query(s->self, ask, room, !strcmp(what, "channel") ? channel : NULL, cluster__answered, q);
    return 0;
}

int broker_find_client(struct bus *b, const char *client_id, arq_result_cb cb, void *arg)
{
    struct arq_ctx *s = broker_current(b);
    const struct arq_broker_ops *ops = s ? broker__ops(s) : NULL;
    if (!ops || !ops->query)
        return -1;
    ops->query(s->self, "client", client_id, NULL, cb, arg);
    return 0;
}
