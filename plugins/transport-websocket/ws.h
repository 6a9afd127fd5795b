/* transport-websocket: state shared by the plugin's files.
 *
 *   ws_plugin.c    options, life cycle (create/start/reconfigure/stop/destroy)
 *   ws_lws.c       the libwebsockets context on the host loop: creation, logs, teardown
 *   ws_listener.c  the listening socket: bind, accept, hand over to a successor on reload
 *   ws_head.c      a plain connection's request head, read and checked before lws gets it
 *   ws_http.c      every HTTP answer instead of an upgrade; the callback before the upgrade
 *   ws_conn.c      the lws protocol callback: handshake, inbound messages, close
 *   ws_read.c      reading on: a connection whose read filled its buffer is read again
 *   ws_send.c      the send path: queued frames framed here and written in one lws_write
 *   ws_ping.c      keepalive: pings after ping_interval of silence, hangup after ping_timeout
 *   ws_alive.c     the keepalive lists (no loop, no lws: unit-tested on their own)
 *
 * Everything runs on the host's loop thread. */
#ifndef ARQ_TRANSPORT_WEBSOCKET_H
#define ARQ_TRANSPORT_WEBSOCKET_H

#include <arqonbus/plugin.h>
#include <libwebsockets.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "ws_alive.h"

#define WS_REASON_MAX     123 /* a close reason fits a control frame: 125 - 2 bytes of code */
#define WS_TX_PACKET_MAX  (256u * 1024 * 1024) /* largest single send(): lws's cap, not ours */
#define WS_CLOSE_WAIT_S   5                    /* how long a peer has to answer our close frame */
#define WS_CLOSE_FLUSH_MS 2000 /* how long frames queued before our close may delay it */

/* The handshake (ws_head.c, ws_http.c). */
#define WS_HEAD_MAX         (32 * 1024) /* request line and header fields, bytes */
#define WS_LWS_HEADER_DATA  (48 * 1024) /* lws's header store per request: what it keeps */
#define WS_HEADS_MIN        1024        /* heads read at once: max_connections, at least this */
#define WS_PT_BUF           (WS_LWS_HEADER_DATA + LWS_PRE) /* lws's read buffer: a whole head */
#define WS_SUBPROTOCOLS_MAX 126 /* the longest Sec-WebSocket-Protocol lws 4.1 reads */

struct ws_config {
    char *host; /* numeric address, as configured */
    int port;   /* 0: any free port */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    size_t max_message_bytes; /* RELOADABLE */
    size_t max_connections;   /* RELOADABLE */
    size_t max_queued_bytes;  /* RELOADABLE */
    size_t rx_buffer_size;    /* lws's receive buffer per connection, and its read size */
    unsigned ping_interval_s; /* 0: no pings */
    unsigned ping_timeout_s;
    int permessage_deflate;
    char *tls_cert, *tls_key;     /* both or neither */
    int retire;                   /* RELOADABLE: WS_RETIRE_* when replaced by a reload      */
    uint64_t retire_timeout_ms;   /* RELOADABLE: how long WS_RETIRE_DRAIN waits              */
    unsigned handshake_timeout_s; /* a request head must be complete by then */
};

/* What a replaced instance does with the clients it holds (option `retire`). */
enum { WS_RETIRE_DRAIN = 0, WS_RETIRE_KEEP, WS_RETIRE_CLOSE };

struct arq_net_acceptor;
struct ws_head;

#define WS_LWS_HANDLES 8

/* One instance. It outlives `destroy` while libwebsockets finishes closing its libuv handles
 * (with a foreign loop that is asynchronous, see ws_lws.c): `dead` is then set, and the host
 * is no longer called. */
struct ws_server {
    const struct arq_host *host;
    arq_ctx *ctx;
    char *name; /* instance name, copied: the host's may go before we do */
    struct ws_config cfg;

    struct lws_context *lws;
    struct lws_vhost *vhost;
    struct lws_protocols protocols[2];
    lws_retry_bo_t retry;                     /* all zero: lws keeps no validity timer (ws_lws.c) */
    uv_handle_t *lws_handles[WS_LWS_HANDLES]; /* lws's own handles on the loop (teardown) */
    size_t nlws_handles;

    struct arq_net_acceptor *listener; /* NULL once stopped or handed over */
    int bound_port;
    char bound_addr[64];
    /* Listener hand-over on reload: the instance we took the socket from (while it lives),
     * and the one that took ours. */
    struct ws_server *predecessor, *successor;
    int stopped, dead;

    struct ws_conn *conns; /* established connections */
    size_t nconns;
    struct ws_head *heads; /* plain connections whose request head is being read (ws_head.c) */
    size_t nheads;
    /* Connections with frames to write this loop turn, written from `flush` (a check handle,
     * after the poll phase) rather than through lws's writable callback (ws_send.c). While
     * the list is not empty, `wake` (an idle handle) keeps that poll from blocking. */
    struct ws_conn *dirty_head, *dirty_tail;
    size_t ndirty;
    /* Connections whose reads this turn filled their buffer, read again before the flush
     * (ws_read.c; an array, not a list through the connections, which would cost every idle
     * connection a pointer); the one being read; the turn count reads are stamped with. */
    struct ws_conn **readers, *reading;
    size_t nreaders, readers_cap;
    unsigned turn;
    uv_check_t *flush;
    uv_idle_t *wake;
    int retiring; /* stopped with clients: held by the host until they are gone */
    arq_timer *retire_timer;

    /* Keepalive (ws_ping.c): the lists, and one timer armed for their earliest deadline. */
    uv_loop_t *loop;
    struct ws_alive alive;
    uv_timer_t *ping_timer;
    uint32_t ping_armed; /* the second the timer is armed for; UINT32_MAX: not armed */

    arq_series *m_conns, *m_conns_total, *m_rx, *m_tx, *m_writes, *m_oversize, *m_ping_timeouts;
    arq_metric *m_refused;      /* labelled by instance and status: ws_http__count_refusal() */
    struct ws_server *log_next; /* live instances that may carry libwebsockets' log lines */
};

/* One WebSocket connection: libwebsockets' per-session data for our protocol (zeroed by lws,
 * freed by lws after LWS_CALLBACK_WSI_DESTROY). `tconn` for the host is this struct. */
struct ws_conn {
    struct ws_server *srv;
    struct lws *wsi;
    arq_conn *conn; /* NULL before conn_open, when refused, and after conn_closed */
    struct ws_conn *prev, *next;
    int linked;
    int deflate;       /* permessage-deflate negotiated: frames go through lws_write */
    int dirty;         /* on the server's list of connections to write this loop turn */
    unsigned rx_stamp; /* the loop turn rx_turn counts (ws_read.c) */
    struct ws_conn *dirty_prev, *dirty_next;

    /* keepalive: on the server's live or pinged list (ws_ping.c) */
    struct ws_alive_node alive;
    unsigned char ping_due;       /* a ping goes out with the next write */
    unsigned char ping_timed_out; /* hung up: no frame within ping_timeout of our ping */
    unsigned char read_listed;    /* in the server's array of connections to read on */

    /* inbound message being reassembled from fragments */
    unsigned char *rx;
    size_t rx_len, rx_cap;
    int rx_binary;
    uint32_t rx_turn; /* bytes received in loop turn rx_stamp */

    /* outbound: coalescing buffer (LWS_PRE + frames), allocated while there is work */
    unsigned char *tx;
    size_t tx_cap;

    /* close: the code we sent (or will send), else the peer's */
    int close_pending; /* ops->close asked; sent once the frames queued before it are out */
    uint64_t close_by; /* loop time (ms) after which those frames no longer hold it back */
    int close_sent;    /* our close frame is out: waiting for the peer's, reading nothing */
    int local_code;
    char local_reason[WS_REASON_MAX + 1];
    int peer_code;
    char peer_reason[WS_REASON_MAX + 1];

    /* the auth chain's answer to the handshake, until conn_open takes it */
    arq_ticket *ticket;

    /* during auth_handshake and conn_open only: header values handed out by header() */
    int in_open;
    char *scratch[16];
    size_t nscratch;
};

/* ws_plugin.c */
void ws_server__count(arq_series *s, double v, const struct ws_server *srv);
void ws_server__free(struct ws_server *srv);

/* ws_lws.c */
int ws_lws__create(struct ws_server *srv, struct arq_error *err);
/* Begin the context's teardown; `srv` is freed once lws is done with it. */
void ws_lws__destroy(struct ws_server *srv);

/* ws_listener.c */
int ws_listener__open(struct ws_server *srv, struct arq_error *err);
/* Take `pred`'s listening socket if it is bound to the address `srv` wants. 1 when taken. */
int ws_listener__take_over(struct ws_server *srv, struct ws_server *pred, struct arq_error *err);
/* `srv` is stopping while `pred`, whose socket it took, still runs (a reload rolled back):
 * give the socket back. */
void ws_listener__give_back(struct ws_server *srv);
void ws_listener__close(struct ws_server *srv);

/* ws_head.c */
/* Read the request head of an accepted plain socket, then adopt it into the vhost (or refuse
 * it). The socket is ours from here: 0, or -1 when it was closed at once. */
int ws_head__start(struct ws_server *srv, int fd);
/* destroy: close every socket whose head is still being read. */
void ws_head__close_all(struct ws_server *srv);

/* ws_http.c */
/* The protocol callback: the cases before the upgrade here, the rest in ws_conn__callback. */
int ws_http__callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);
/* An HTTP/1.1 answer instead of the upgrade: `status`, its reason phrase, Connection: close,
 * and {"error": <reason phrase>, "details": <details>} (Retry-After for 429, or when
 * retry_after_ms is not 0). Counted in arqonbus_ws_refused_total. 0, or -1 when it could not be
 * written. The caller then makes lws close the connection. */
int ws_http__refuse(struct ws_server *srv, struct lws *wsi, unsigned status, const char *details,
                    uint64_t retry_after_ms);
/* The same answer on a socket lws does not have (yet). */
int ws_http__refuse_fd(struct ws_server *srv, int fd, unsigned status, const char *details);
/* The answer's bytes into out: their count, 0 when it does not fit. */
size_t ws_http__format(char *out, size_t size, unsigned status, const char *details,
                       uint64_t retry_after_ms);
void ws_http__count_refusal(struct ws_server *srv, unsigned status);

/* ws_conn.c */
int ws_conn__callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len);
/* destroy: tell the host each connection is gone (1001) and try to tell the peer. */
void ws_conn__detach_all(struct ws_server *srv);
/* Write a close frame (code, reason <= 123 bytes) as is, bypassing lws's close handshake. */
void ws_conn__write_close(struct ws_conn *c, int code, const char *reason);
/* Close every connection as the host's ops->close would (close frame, then wait for the
 * peer's). */
void ws_conn__close_all(struct ws_server *srv, int code, const char *reason);
/* A connection went: a retiring instance whose last client left tells the host. */
void ws_server__conn_gone(struct ws_server *srv);

/* ws_ping.c */
/* The keepalive timer on `loop` (0, or -1), and its release (the handle frees itself). */
int ws_ping__init(struct ws_server *srv, uv_loop_t *loop);
void ws_ping__fini(struct ws_server *srv);
/* An established connection is watched from now on (nothing with ping_interval 0). */
void ws_ping__track(struct ws_conn *c);
/* A frame arrived on `c` (data, a pong, anything lws reports): O(1). */
void ws_ping__seen(struct ws_conn *c);
/* `c` is closing or gone: no more pings, no hangup. */
void ws_ping__untrack(struct ws_conn *c);

/* ws_read.c */
/* `len` bytes of a message arrived on `c`: a connection whose reads this turn came to half its
 * buffer is read again before the turn's writes. */
void ws_read__received(struct ws_conn *c, size_t len);
/* `c` is going: out of the connections to read on. */
void ws_read__forget(struct ws_conn *c);
/* The check phase, before the writes: read on every listed connection. (The array is freed
 * with the instance; once it is dead nothing is added.) */
void ws_read__turn(struct ws_server *srv);

/* ws_send.c */
int ws_send__writeable(struct ws_conn *c);
/* Run the check phase's reads and writes at the end of this loop turn. */
void ws_send__arm(struct ws_server *srv);
/* The host queued frames for `c`: write them at the end of this loop turn. */
void ws_send__want_write(struct ws_conn *c);
/* `c` is going: off the list of connections to write. */
void ws_send__forget(struct ws_conn *c);
/* The per-turn flush handles on `loop` (0, or -1), and their release (the handles close and
 * free themselves). */
int ws_send__init(struct ws_server *srv, uv_loop_t *loop);
void ws_send__fini(struct ws_server *srv);
/* A server frame header (FIN, text/binary, 7/16/64-bit length, unmasked) at p: 2..10 bytes. */
size_t ws_send__header(unsigned char *p, size_t len, int opcode);
void ws_send__release(struct ws_conn *c);

#endif
