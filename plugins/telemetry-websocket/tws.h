/* telemetry-websocket: state shared by the plugin's files.
 *
 *   tws_plugin.c  options, life cycle, emit_batch (copy and queue, never write), metrics
 *   tws_server.c  the libwebsockets context on the host loop, our listening socket, teardown
 *   tws_client.c  one telemetry client: handshake, requests, its queue, writes, close
 *
 * Everything runs on the host's loop thread. */
#ifndef ARQ_TELEMETRY_WEBSOCKET_H
#define ARQ_TELEMETRY_WEBSOCKET_H

#include <arqonbus/plugin.h>
#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define TWS_REASON_MAX   123         /* a close reason fits a control frame                 */
#define TWS_CLOSE_WAIT_S 10          /* how long a closing client has to read our close frame */
#define TWS_REQUEST_MAX  (64 * 1024) /* largest request a client may send (1009 beyond)     */
#define TWS_LWS_HANDLES  8

struct tws_config {
    char *host; /* numeric address, as configured */
    int port;   /* 0: any free port */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    size_t max_clients;      /* RELOADABLE */
    size_t batch_size;       /* RELOADABLE */
    uint64_t flush_ms;       /* RELOADABLE */
    size_t max_queued_bytes; /* RELOADABLE */
};

/* One outbound WebSocket text message: LWS_PRE bytes of headroom, then `len` payload bytes
 * (room for `cap`). An open batch grows in place until it is sealed. */
struct tws_frame {
    struct tws_frame *next;
    size_t len, cap;
    size_t events; /* telemetry events in it; 0 for replies */
    unsigned char data[];
};

struct arq_net_acceptor;

/* One instance. It outlives `destroy` while libwebsockets closes its libuv handles (see
 * tws_server.c): `dead` is then set, and the host is no longer called. */
struct tws_server {
    const struct arq_host *host;
    arq_ctx *ctx;
    char *name; /* instance name, copied: the host's may go before we do */
    char *node;
    struct tws_config cfg;

    struct lws_context *lws;
    struct lws_vhost *vhost;
    struct lws_protocols protocols[2];
    uv_handle_t *lws_handles[TWS_LWS_HANDLES]; /* lws's own handles on the loop (teardown) */
    size_t nlws_handles;

    struct arq_net_acceptor *listener;
    int bound_port;
    char bound_addr[64];

    struct tws_client *clients;
    size_t nclients;
    arq_timer *flush_timer; /* armed while some client has an open batch */
    int stopped, dead;

    arq_series *m_clients, *m_sent, *m_dropped;
};

/* One telemetry client: libwebsockets' per-session data (zeroed by lws, freed by lws after
 * LWS_CALLBACK_WSI_DESTROY). */
struct tws_client {
    struct tws_server *srv; /* NULL until the upgrade completed */
    struct lws *wsi;
    struct tws_client *prev, *next;
    int linked;
    char peer[64];

    char **filter; /* event types wanted; NULL: every event */
    size_t nfilter;

    struct tws_frame *head, *tail; /* sealed frames, oldest first */
    struct tws_frame *batch;       /* the open batch, or NULL */
    size_t queued;                 /* bytes in head..tail and batch */

    unsigned char *rx; /* a request being joined from fragments */
    size_t rx_len;

    int close_pending; /* our close frame goes out at the next writable callback */
    int close_sent;    /* it went: waiting for the peer's, reading nothing */
    int close_code;
    char close_reason[TWS_REASON_MAX + 1];
};

/* tws_plugin.c */
void tws_server__count(struct tws_server *srv, arq_series *s, double v);
void tws_server__free(struct tws_server *srv);
/* A client opened a batch: make sure the flush timer runs. */
void tws_server__arm_flush(struct tws_server *srv);

/* tws_server.c */
int tws_server__lws_create(struct tws_server *srv, struct arq_error *err);
int tws_server__listen(struct tws_server *srv, struct arq_error *err);
void tws_server__unlisten(struct tws_server *srv);
/* Begin the context's teardown; `srv` is freed once lws is done with it. */
void tws_server__lws_destroy(struct tws_server *srv);

/* tws_client.c */
int tws_client__callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len);
/* Does the client want events of this type (and is it still open)? */
int tws_client__wants(const struct tws_client *c, const char *event_type);
/* Append one serialised event to the client's open batch (copied); seals the batch at
 * batch_size events, and drops the client with 1013 beyond max_queued_bytes. */
void tws_client__push(struct tws_client *c, const char *json, size_t len);
/* Seal the open batch, if any, and ask for a writable callback. */
void tws_client__seal(struct tws_client *c);
/* destroy: write what can go without blocking, then a close frame (1001); tell no one. */
void tws_client__detach(struct tws_client *c);

#endif
