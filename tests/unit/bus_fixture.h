/* The bus core in process, for its unit tests: a real struct bus on a real (idle) libuv loop,
 * with a fake environment (a manual clock, the test's own running instances, captured
 * telemetry) and a fake transport whose clients record every frame the bus queues to them.
 * No daemon, no socket, no runtime state: what the bus sees is exactly struct bus_env. */
#ifndef ARQ_TEST_BUS_FIXTURE_H
#define ARQ_TEST_BUS_FIXTURE_H

#include <arqonbus/plugin.h>
#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "bus.h"
#include "instance.h"
#include "loader.h"

#define BUS_FX_MAX_INSTANCES 16

/* A client of the fake transport. */
struct fake_client {
    struct bus_fx *fx;
    arq_conn *conn; /* NULL once closed (or when the bus refused it)                      */
    json_t *frames; /* every text frame written to it, parsed, in order                   */
    size_t read;    /* frames already returned by fx_next                                 */
    int want_write; /* the bus asked to be called back when writable                      */
    int closed;     /* the bus asked the transport to close it ...                         */
    int close_code; /* ... with this code                                                 */
    char close_reason[128];
    int hold_writes; /* 1: leave queued frames unwritten (a slow client)                   */
};

/* One fake plugin instance: a module of its own (kind and ops), started. */
struct fake_instance {
    struct arq_ctx ctx;
    struct module mod;
    struct arq_plugin desc;
};

struct bus_fx {
    uv_loop_t loop;
    struct metrics *metrics;
    struct telemetry *telemetry;
    json_t *events; /* every telemetry event the bus emitted (as event_json), in order */
    int64_t now_ms; /* the manual clock                                               */
    int accepting;
    int reloads_asked;
    arq_result_cb reload_cb; /* the last reload's waiter, until fx_reload_done       */
    void *reload_arg;
    struct bus bus;
    struct fake_instance *inst[BUS_FX_MAX_INSTANCES]; /* running, declaration order */
    size_t ninst;
    struct fake_instance *removed[BUS_FX_MAX_INSTANCES];
    size_t nremoved;
    struct fake_instance *transport; /* "ws", always there                              */
    struct fake_client *clients[64];
    size_t nclients;
};

/* cmocka setup/teardown: *state becomes a struct bus_fx with the default `bus:` settings and
 * a transport instance "ws". */
int bus_fx_setup(void **state);
int bus_fx_teardown(void **state);

/* Apply a `bus:` section: its YAML lines ("max_rooms: 2\nauto_create: false"), validated
 * as conf.d's are. Options not given have their defaults. */
void fx_configure(struct bus_fx *f, const char *yaml);
/* A running instance of `kind` with `ops` (its module's table) and `self` (what its functions
 * receive), appended in declaration order; the bus is told the generation changed. */
struct arq_ctx *fx_instance(struct bus_fx *f, const char *name, enum arq_kind kind, const void *ops,
                            void *self);
/* Remove an instance (as a reload that drops it); the bus is told. */
void fx_remove_instance(struct bus_fx *f, struct arq_ctx *ctx);

/* A client connected through the fake transport (info NULL: 127.0.0.1, no query). When the
 * bus refused it, conn is NULL and the close it asked for is recorded. */
struct fake_client *fx_connect(struct bus_fx *f, const struct arq_conn_info *info);
/* A client connected (info NULL) and open, its welcome read; fails the test otherwise. */
struct fake_client *fx_client(struct bus_fx *f);
/* Join room/channel (channel NULL: the room) through the bus service; fails the test on an
 * error. */
void fx_join(struct fake_client *c, const char *room, const char *channel);
/* A client frame, as the transport delivers it. */
void fx_send(struct fake_client *c, const char *text);
/* Printf-style fx_send. */
void fx_sendf(struct fake_client *c, const char *fmt, ...) ARQ_PRINTF(2, 3);
/* Write what the bus queued (unless hold_writes), as the transport does when writable. */
void fx_flush(struct fake_client *c);
/* The next frame written to the client (flushing first), or NULL; borrowed. */
json_t *fx_next(struct fake_client *c);
/* The next frame of `type` ("message", "response", "error", ...), skipping others; fails the
 * test when none. Borrowed. */
json_t *fx_expect(struct fake_client *c, const char *type);
/* Frames not yet read (after flushing). */
size_t fx_unread(struct fake_client *c);
/* The transport reports the end of the connection (as after a close or a peer's leaving). */
void fx_disconnect(struct fake_client *c, int code);

/* Telemetry events of `type` emitted so far. */
size_t fx_events(struct bus_fx *f, const char *type);
/* The i-th telemetry event of `type` emitted so far (as event_json: event_type, client_id,
 * command, data, ...), or NULL. Borrowed. */
json_t *fx_event(struct bus_fx *f, const char *type, size_t i);
/* Value of a metric series, by its rendered Prometheus line prefix (e.g.
 * "arqonbus_messages_delivered_total" or
 * "arqonbus_commands_total{command=\"x\",status=\"error\"}"); -1 when absent. */
double fx_metric(struct bus_fx *f, const char *series);

/* The i-th string of obj[key] path "a.b.c" ("" when absent). */
const char *fx_str(const json_t *obj, const char *path);
/* obj at path "a.b.c", or NULL. */
json_t *fx_get(const json_t *obj, const char *path);

/* What a server-side caller (bus_publish, bus_history_query) is told: fx_result_cb records
 * it, counting the calls and keeping a copy of the data (json_decref it). */
struct fx_result {
    int calls;
    char code[64];
    char text[256];
    json_t *data;
};
void fx_result_cb(void *arg, const char *code, const char *text, const json_t *data);

/* Finish a reload asked for through the environment (ok or failed). */
void fx_reload_done(struct bus_fx *f, int ok, const char *error);

#endif
