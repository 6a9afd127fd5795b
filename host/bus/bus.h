/* The bus core: connections, rooms and channels, routing, and the command executor. All of
 * it lives on the loop thread. It sits above the plugin runtime (host/runtime) and sees it
 * only through struct bus_env; the runtime sees the bus only through the hooks that
 * host/main.c wires to bus_configure, bus_generation_changed, bus_instance_destroyed and
 * bus_stopping.
 *
 * Fan-out serialises once: an outgoing envelope becomes one refcounted `struct frame` (with
 * ARQ_FRAME_HEADROOM bytes in front for the transport's frame header) that is queued, by
 * reference, to every recipient. Each connection's queue is bounded in bytes; a client that
 * falls behind past the bound is disconnected with 1013. */
#ifndef ARQ_HOST_BUS_H
#define ARQ_HOST_BUS_H

#include <arqonbus/plugin.h>
#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "auth.h"
#include "hmap.h"

struct arq_ctx;
struct metrics;
struct telemetry;

/* --- what the bus needs from the process it runs in ----------------------------------------- */

/* The runtime gives the bus this (host/main.c); a unit test gives it a fake one. */
struct bus_env {
    uv_loop_t *loop;
    struct metrics *metrics;     /* where the bus registers its metrics                     */
    struct telemetry *telemetry; /* where its events go                                     */
    const char *node;            /* the node's id; the runtime keeps the text current       */
    void *arg;                   /* passed to each function below                           */
    /* Milliseconds since the epoch, now: timestamps, command deadlines, credential expiry. */
    int64_t (*now_ms)(void *arg);
    /* The i-th running instance of `kind`, in declaration order; NULL past the last. */
    struct arq_ctx *(*instance)(void *arg, enum arq_kind kind, size_t i);
    /* Whether the process takes new work (started, neither stopping nor draining). */
    int (*accepting)(void *arg);
    /* Reload the configuration and tell cb, as the SDK's bus_reload_async. */
    void (*reload)(void *arg, arq_result_cb cb, void *cb_arg);
    /* The runtime's part of `status` (uptime, version, node, generation, plugins, reloads). */
    json_t *(*status)(void *arg);
};

/* --- frames -------------------------------------------------------------------------------- */

struct frame {
    unsigned refs;
    int binary;
    char msg_id[64]; /* a routed message's id ("" for the server's own frames)                */
    size_t len;
    unsigned char *data; /* mem + ARQ_FRAME_HEADROOM */
    unsigned char mem[];
};

/* A frame holding `len` bytes of `payload` (one reference). NULL on allocation failure. */
struct frame *frame_new(const void *payload, size_t len, int binary);
/* A text frame for `len` bytes the caller writes at `data`, followed by a NUL and `extra` bytes
 * of the caller's own (at data + len + 1) that live as long as the frame. */
struct frame *frame_alloc_text(size_t len, size_t extra);
/* The compact JSON text of `obj` as a frame. */
struct frame *frame_from_json(const json_t *obj);
void frame_unref(struct frame *f);

/* --- settings (the `bus:` section) --------------------------------------------------------- */

struct bus_settings {
    int auto_create;                /* joining a missing channel creates it                    */
    int members_only;               /* publishing to a channel or room needs membership         */
    const json_t *presence;         /* array of room names (or "*") with join/leave events     */
    const char *anonymous_role;     /* every client's role when no policy authenticates  */
    const char *default_role;       /* when policies authenticate but all DEFER; "": refuse */
    size_t max_connections;         /* 0: unlimited                                   */
    size_t max_connections_per_ip;  /* 0: unlimited                                   */
    double connection_rate_per_ip;  /* new connections per second per address; 0: off */
    size_t connection_burst_per_ip; /* ... and the burst it allows                    */
    size_t max_rooms, max_channels; /* rooms, and channels over all rooms              */
    size_t max_name_length;         /* of room and channel names                       */
    int max_payload_depth;          /* nesting of payload, args and metadata           */
    int expire_sessions;            /* close a client when its credential's exp passes  */
    size_t max_queued_bytes;        /* per connection, when the transport does not say          */
    uint64_t command_timeout_ms;
    int64_t max_clock_skew_ms;
    size_t max_memberships; /* per connection                                           */
    int telemetry_messages; /* one telemetry event per routed or rejected message */
};

extern const struct arq_option bus_options[];
/* Read validated `bus:` values into settings (strings and arrays borrowed from `values`). */
void bus_settings_read(struct bus_settings *s, const json_t *values);

/* --- connections --------------------------------------------------------------------------- */

enum conn_state { CONN_OPEN = 0, CONN_CLOSING, CONN_CLOSED };

struct membership;

struct arq_conn {
    unsigned refs;
    enum conn_state state;
    char id[48]; /* arq_client_<32 hex>                                     */
    struct bus *bus;
    struct arq_ctx *transport; /* the instance that accepted it                           */
    const struct arq_conn_ops *ops;
    void *tconn;
    char peer[64];
    int ack; /* send message_response acks                              */
    struct auth_identity identity;
    char addr[64];  /* the peer's address alone, for per-address limits           */
    int ip_counted; /* counted in the per-address table                           */
    /* outbound queue: a ring of frame references */
    struct frame **q;
    size_t qcap, qhead, qlen;
    size_t queued_bytes, max_queued_bytes;
    int write_requested;
    int paused;             /* joins recovering history (pauses nest): hold routed messages */
    size_t pause_mark;      /* frames before it go first; the server's own frames are
                               inserted there while paused                             */
    uint64_t delivery_mark; /* last fan-out that reached it (room-wide dedup)          */
    struct membership *memberships;
    size_t nmemberships;
    arq_series *m_open, *m_closed; /* its transport's connection gauge and close counter */
    int64_t connected_ms;
    int receiving;                /* inside conn_svc_recv: a frame of its is being handled    */
    int close_code;               /* conn_close_after_reply: close once the frame is answered */
    const char *close_reason;     /* (a static string)                                        */
    struct arq_conn *prev, *next; /* all connections                                         */
};

void conn_ref(struct arq_conn *c);
void conn_unref(struct arq_conn *c);
/* Queue a frame (takes a new reference). Past the bound: the connection is closed with 1013.
 * Returns 0 when queued. */
int conn_send(struct arq_conn *c, struct frame *f);
/* Queue the compact JSON of `obj`. */
int conn_send_json(struct arq_conn *c, const json_t *obj);
/* Hold routed messages (they queue but are not written) until conn_resume; the server's own
 * frames (replies, acks, errors) queued meanwhile go ahead of them. Pauses nest: the last
 * resume releases the routed messages. */
void conn_pause(struct arq_conn *c);
void conn_resume(struct arq_conn *c);
/* Drop a held routed message by id (it reached the client another way). */
void conn_drop_message(struct arq_conn *c, const char *msg_id);
/* Ask the transport to close; conn_closed follows from the transport. */
void conn_close(struct arq_conn *c, int code, const char *reason);
/* The same, but while a frame of the client's is being handled, only once that frame has been
 * answered: the answer (e.g. its RATE_LIMITED error) is queued before the close. `reason` must
 * be a static string. */
void conn_close_after_reply(struct arq_conn *c, int code, const char *reason);
struct arq_conn *conn_find(struct bus *b, const char *client_id);
/* Close every connection accepted by `transport` (it is being destroyed). */
void conn_drop_transport(struct bus *b, struct arq_ctx *transport);

/* The connection services of struct arq_host (see the SDK for their contracts). */
arq_conn *conn_svc_open(arq_ctx *ctx, const struct arq_conn_info *info,
                        const struct arq_conn_ops *ops, void *tconn);
void conn_svc_recv(arq_conn *c, const void *data, size_t len, int binary);
size_t conn_svc_pending(arq_conn *c, struct arq_frame_ref *out, size_t max);
void conn_svc_consumed(arq_conn *c, size_t n);
void conn_svc_closed(arq_conn *c, int code, const char *reason);
const char *conn_svc_client_id(const arq_conn *c);
void conn_svc_set_limit(arq_conn *c, size_t max_queued_bytes);

/* --- rooms and channels -------------------------------------------------------------------- */

struct channel;

struct room {
    char *name;
    struct hmap channels;        /* name -> struct channel                                  */
    struct membership **members; /* room-level members                                      */
    size_t nmembers, cap;
    size_t channel_members; /* memberships over all its channels                       */
    int64_t created_ms;
    uint64_t messages;
};

struct channel {
    char *name;
    struct room *room;
    char *description;
    struct membership **members;
    size_t nmembers, cap;
    int64_t created_ms, last_activity_ms;
    uint64_t messages;
    int explicit_; /* made by create_channel: kept when empty                                 */
};

struct membership {
    struct arq_conn *conn;
    struct room *room;
    struct channel *channel; /* NULL: a room-level membership                           */
    size_t index;            /* position in the room's or channel's member array        */
    struct membership *next; /* the connection's memberships                            */
};

/* --- the bus ------------------------------------------------------------------------------- */

struct command_entry {
    const struct arq_command *cmd;
    struct arq_ctx *owner;
    arq_series *ok, *failed; /* arqonbus_commands_total of this command                  */
};

struct bus {
    struct bus_env env;
    int stopping;
    struct bus_settings settings;
    json_t *settings_values; /* the validated `bus:` section in force                   */
    struct hmap conns;       /* client id -> conn                                       */
    struct arq_conn *all;    /* every open connection                                   */
    size_t nconns;
    struct hmap rooms; /* name -> room                                            */
    size_t nchannels;
    uint64_t fanout_seq;
    struct auth auth;
    struct hmap commands; /* name -> struct command_entry                            */
    struct command_entry *entries;
    size_t nentries;
    struct arq_request *pending; /* commands awaiting their reply                           */
    uv_timer_t sweep;            /* expires pending commands                                */
    arq_metric **families;       /* the metric families it registered, released at the end  */
    size_t nfamilies;
    arq_metric *f_conns, *f_opened, *f_closed;     /* connections by transport instance        */
    arq_series *m_dropped_slow, *m_dropped_closed; /* messages_dropped_total{reason}        */
    arq_series *m_msgs_in, *m_deliveries, *m_slow, *m_rejected, *m_rooms, *m_channels, *m_bytes_in,
        *m_bytes_out, *m_routing_seconds, *m_command_seconds, *m_cmd_unknown;
    arq_metric *m_commands;      /* arqonbus_commands_total{command,status}                     */
    struct arq_ctx *broker_told; /* the broker that was told what this node holds            */
    uv_timer_t cluster_timer;    /* refreshes cluster_nodes                                 */
    json_t *cluster_nodes;       /* the broker's last answer to "nodes", or NULL             */
    int cluster_query_pending;
};

/* Set up the bus in `env` (copied). 0, or -1 when its metrics cannot be registered. */
int bus_init(struct bus *b, const struct bus_env *env);
/* The bus's services in the plugins' service table. */
void bus_services(struct arq_host *api);
/* The hooks (host_hooks):
 * a new `bus:` section is in force (takes a reference to `values`); */
void bus_configure(struct bus *b, json_t *values);
/* the running generation changed: rebuild the command registry and the auth chain; */
void bus_generation_changed(struct bus *b);
/* an instance is being destroyed: a transport's connections go with it; */
void bus_instance_destroyed(struct bus *b, struct arq_ctx *ctx);
/* the process stops: close every connection, forget pending commands. */
void bus_stopping(struct bus *b);
/* Release everything (after the loop has finished). */
void bus_free(struct bus *b);
/* Rebuild the command registry from the command sets of the running generation. */
void bus_commands_rebuild(struct bus *b);

/* Inbound: one complete message from a client. */
void bus_receive(struct bus *b, struct arq_conn *c, const char *data, size_t len, int binary);
/* A connection opened/closed (membership clean-up, presence, metrics). */
void bus_conn_opened(struct bus *b, struct arq_conn *c);
void bus_conn_closed(struct bus *b, struct arq_conn *c);

/* Send an error frame to `c`. `payload_take` may be NULL. */
void bus_send_error(struct bus *b, struct arq_conn *c, const char *code, const char *text,
                    const char *request_id, json_t *payload_take);

/* Router (router.c) */
struct room *router_room(struct bus *b, const char *name);
struct channel *router_channel(struct room *r, const char *name);
/* NULL on success, else the protocol error code with text in err. */
const char *router_join(struct bus *b, struct arq_conn *c, const char *room, const char *channel,
                        struct arq_error *err);
const char *router_leave(struct bus *b, struct arq_conn *c, const char *room, const char *channel,
                         struct arq_error *err);
const char *router_create_channel(struct bus *b, const char *room, const char *channel,
                                  const char *description, struct arq_error *err);
const char *router_delete_channel(struct bus *b, const char *room, const char *channel, int force,
                                  struct arq_error *err);
void router_leave_all(struct bus *b, struct arq_conn *c);
int router_is_member(const struct arq_conn *c, const struct room *r, const struct channel *ch);
/* Queue `f` to the channel's members (ch) or the whole room (ch NULL), except `except`.
 * Returns the number of recipients. */
size_t router_fanout(struct bus *b, struct room *r, struct channel *ch, struct frame *f,
                     const struct arq_conn *except);
json_t *router_channel_json(const struct channel *ch, int with_members);
json_t *router_rooms_json(const struct bus *b);
json_t *router_memberships_json(const struct arq_conn *c);

/* Storage (storage.c). */
struct envelope;
/* The storage in force: the first started storage instance of the running generation. */
struct arq_ctx *storage_current(const struct bus *b);
/* {instance, backend, health, detail?} of the storage in force, or JSON null. */
json_t *storage_status(const struct bus *b);
/* After delivery: store a routed message, then tell the publisher where: the client `c` by
 * its ack (unless acks are off), or, for a server-side publish (c NULL), `cb`. Without
 * storage they are told at once, without offset and epoch. */
void storage_store(struct bus *b, const struct envelope *env, const struct frame *f,
                   size_t delivered, struct arq_conn *c, arq_result_cb cb, void *arg);
/* Tell the publisher (client `c` by its ack, else `cb`) where a message went: `epoch` NULL
 * when it was not stored. */
void storage_tell(struct arq_conn *c, arq_result_cb cb, void *arg, const char *id, size_t delivered,
                  uint64_t offset, const char *epoch);
void storage_svc_history(arq_ctx *ctx, arq_request *req, arq_conn *conn, const json_t *args,
                         int join);

/* The broker (broker.c): scale-out. Every function does nothing without a running broker. */
struct arq_ctx *broker_current(const struct bus *b);
/* A message this node routed (to_client NULL: to room/channel), to the other nodes. */
void broker_publish(struct bus *b, const char *room, const char *channel, const char *to_client,
                    const struct frame *f);
/* After a membership was added (joined) or removed (left): subscriptions and presence. */
void broker_joined(struct bus *b, const struct arq_conn *c, const struct room *r,
                   const struct channel *ch);
void broker_left(struct bus *b, const struct arq_conn *c, const struct room *r,
                 const struct channel *ch);
/* A client connected (1) or disconnected (0, after its memberships ended). */
void broker_client(struct bus *b, const struct arq_conn *c, int connected);
/* The generation changed: a new broker learns what this node holds. */
void broker_generation_changed(struct bus *b);
void broker_instance_destroyed(struct bus *b, const struct arq_ctx *ctx);
/* {node, broker: {instance, backend, health, detail?}, nodes} or NULL without a broker. */
json_t *broker_status(const struct bus *b);
/* "rooms", "channels" or "channel" for the whole cluster, through cb: 0, or -1 when the
 * broker cannot answer queries (answer from this node). */
int broker_query(struct bus *b, const char *what, const char *room, const char *channel,
                 arq_result_cb cb, void *arg);
/* Which node holds `client_id` (data {node}, or ARQ_ERR_NOT_FOUND), through cb: 0, or -1
 * when the broker cannot tell. */
int broker_find_client(struct bus *b, const char *client_id, arq_result_cb cb, void *arg);
void broker_svc_deliver(arq_ctx *ctx, const struct arq_broker_msg *msg);
void broker_svc_resync(arq_ctx *ctx);

/* Commands (commands.c); the reply services of struct arq_host. */
void commands_svc_reply_ok(arq_request *req, const char *message, const json_t *data);
void commands_svc_reply_error(arq_request *req, const char *code, const char *text);
void commands_execute(struct bus *b, struct arq_conn *c, const char *id, const char *name,
                      const json_t *args);
json_t *commands_catalogue(const struct bus *b);
void commands_sweep_start(struct bus *b);
/* Answer the requests whose deadline has passed (by the environment's clock) with a timeout,
 * and free those whose command set is gone. The sweep timer runs it every second. */
void commands_expire(struct bus *b);
/* Forget every pending request (shutdown). */
void commands_drop_all(struct bus *b);

/* The bus services of struct arq_host (bus_services.c, commands.c). */
const char *bus_svc_join(arq_conn *conn, const char *room, const char *channel,
                         struct arq_error *err);
const char *bus_svc_leave(arq_conn *conn, const char *room, const char *channel,
                          struct arq_error *err);
const char *bus_svc_create_channel(arq_ctx *ctx, const char *room, const char *channel,
                                   const char *description, struct arq_error *err);
const char *bus_svc_delete_channel(arq_ctx *ctx, const char *room, const char *channel, int force,
                                   struct arq_error *err);
const char *bus_svc_disconnect(arq_ctx *ctx, const char *client_id, const char *reason,
                               struct arq_error *err);
json_t *bus_svc_query(arq_ctx *ctx, arq_conn *conn, const char *what, const char *room,
                      const char *channel, const char **code, struct arq_error *err);
void bus_svc_query_async(arq_ctx *ctx, arq_conn *conn, const char *what, const char *room,
                         const char *channel, arq_result_cb cb, void *arg);
void bus_svc_reload(arq_ctx *ctx, arq_request *req);
/* Room and channel names as the envelope checks them (NULL, or VALIDATION_ERROR). */
const char *bus_check_names(const struct bus *b, const char *room, const char *channel,
                            struct arq_error *err);
/* Authorize, then join (announcing it). NULL, or the error code with the text in err. */
const char *bus_join_authorized(struct bus *b, struct arq_conn *c, const char *room,
                                const char *channel, struct arq_error *err);
/* The server-side APIs of struct arq_host. */
int bus_svc_ready(arq_ctx *ctx);
void bus_svc_publish(arq_ctx *ctx, const json_t *message, arq_result_cb cb, void *arg);
void bus_svc_history_query(arq_ctx *ctx, const json_t *args, arq_result_cb cb, void *arg);
/* The bus of a plugin instance (arq_ctx.app). */
struct bus *bus_of(const arq_ctx *ctx);
/* Milliseconds since the epoch, now, by the environment's clock. */
int64_t bus_now_ms(const struct bus *b);
/* One series of a family the bus registers (label NULL: none); the family is released by
 * bus_free. NULL when it cannot be registered. */
arq_series *bus_series(struct bus *b, enum arq_metric_type type, const char *name, const char *help,
                       const char *label, const char *value);
/* A family the bus registers, released by bus_free. */
arq_metric *bus_family(struct bus *b, enum arq_metric_type type, const char *name, const char *help,
                       const char *const *labels, const double *buckets, size_t nbuckets);
/* arqonbus_commands_total{command=name, status} (series are kept while the host runs). */
arq_series *bus_command_series(struct bus *b, const char *name, int ok);
/* A telemetry event of the bus itself (source "host"). */
void bus_event(struct bus *b, const struct arq_event *ev);

#endif
