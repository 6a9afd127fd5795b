/* An ArqonBus client for integration tests, on tests/common/ws_client: connect and read the
 * welcome, send envelopes, wait for frames, run commands. */
#ifndef ARQ_TEST_BUS_CLIENT_H
#define ARQ_TEST_BUS_CLIENT_H

#include <jansson.h>

#include "harness.h"
#include "ws_client.h"

struct bus_client {
    struct ws_client *ws;
    char id[64];   /* from the welcome */
    char node[64]; /* the node that welcomed it (payload.server.node) */
};

/* The port the instance named `ws` listens on (h_component_port), waiting for it. */
int bc_port(struct proc *p);
/* Connect to 127.0.0.1:port (path may be NULL) and read the welcome; asserts on failure. */
struct bus_client *bc_connect(int port, const char *path);
void bc_free(struct bus_client *c);
/* Send a JSON text built with json_pack-style format (asserts). */
void bc_send(struct bus_client *c, const char *fmt, ...);
/* The next text frame as JSON, or NULL after timeout_ms (the caller decrefs). */
json_t *bc_recv(struct bus_client *c, int timeout_ms);
/* The next frame whose "type" is `type`, skipping others; asserts it arrives. */
json_t *bc_expect(struct bus_client *c, const char *type, int timeout_ms);
/* Nothing is queued for c: the response to a `ping` marker is the next frame (asserts). Call
 * it once the bus has handled what must not reach c (the sender's ack, a later response), so
 * that order, not a timeout, proves the absence. Needs commands-builtin. */
void bc_expect_nothing(struct bus_client *c);
/* Run a command and return its response (asserts one arrives). `args_fmt` NULL: no args. */
json_t *bc_command(struct bus_client *c, const char *name, const char *args_fmt, ...);
/* Run a command and assert it succeeded; returns payload.data (borrowed from *resp). */
const json_t *bc_command_ok(struct bus_client *c, json_t **resp, const char *name,
                            const char *args_fmt, ...);
/* Join room/channel (channel NULL: the room) with join_channel or join_room; asserts it
 * succeeded. */
void bc_join(struct bus_client *c, const char *room, const char *channel);
/* String field of an object, "" when absent. */
const char *bc_str(const json_t *o, const char *key);

#endif
