/* The send path. With libwebsockets a delivery costs one poll turn and one send() per write,
 * so every frame queued for a connection is framed here (server frames are unmasked: a 2-10
 * byte header) into one buffer, and written with ONE lws_write(LWS_WRITE_RAW) per writable
 * callback. Measured on a relay, that is ten times fewer CPU seconds per delivery than one
 * lws_write() per frame.
 *
 * Rules that keep it correct:
 *   - only whole frames go into one write, so lws can never put one of its own control frames
 *     (pong, ping, close) inside one of ours;
 *   - the buffer is bounded (COALESCE_MAX) and released when the queue is empty, so an idle
 *     connection holds none; lws keeps what the socket does not take at once;
 *   - a connection that negotiated permessage-deflate goes through lws_write(TEXT/BINARY), one
 *     frame per callback, since lws must compress it;
 *   - a keepalive ping (ws_ping.c) is one more whole frame: first in the coalesced write, or
 *     alone when the queue is empty; with deflate, lws_write(PING), only when the queue is
 *     empty (lws 4.1 turns any write made while a compressed message drains into a
 *     continuation of it);
 *   - a close the host asks for (ops->close) follows the frames it queued before: they are
 *     written first, then the close frame; once WS_CLOSE_FLUSH_MS have passed (a peer that
 *     reads slowly), the close frame goes without the rest.
 *
 * When is a connection written? Asking lws for a writable callback costs two epoll_ctl calls
 * (POLLOUT on, then off) and a poll turn per write: at low rates, where nothing coalesces,
 * that is most of a delivery's cost and of its latency. So the host's want_write puts the
 * connection on a list, and a check handle writes every connection on it once per loop turn,
 * after the poll phase, directly. Only a connection whose socket did not take the last write
 * (lws holds the rest), or that closes, or compresses, waits for lws's writable callback,
 * which keeps the bytes outside the host's bounded queue to one coalesced write at most.
 * Frames queued before the poll phase (from a timer: a ping, a host timer's message) must not
 * wait for the poll to return on its own, so an idle handle is active while the list is not
 * empty: libuv then polls without blocking. */
#include <stdlib.h>
#include <string.h>

#include "ws.h"

#define BATCH_FRAMES 256
#define COALESCE_MAX (256 * 1024)

enum { OP_TEXT = 0x1, OP_BINARY = 0x2, OP_PING = 0x9 };

/* Our pings carry a payload: lws 4.1 never reports an empty pong (see ws_ping.c). */
static const unsigned char ping_payload[8] = {'a', 'r', 'q', 'o', 'n', 'b', 'u', 's'};
#define PING_FRAME_LEN (2 + sizeof ping_payload)

static size_t ping_frame(unsigned char *p)
{
    p[0] = 0x80 | OP_PING;
    p[1] = sizeof ping_payload;
    memcpy(p + 2, ping_payload, sizeof ping_payload);
    return PING_FRAME_LEN;
}

static size_t header_size(size_t len)
{
    return len < 126 ? 2 : len <= 0xffff ? 4 : 10;
}

size_t ws_send__header(unsigned char *p, size_t len, int opcode)
{
    p[0] = (unsigned char)(0x80 | opcode); /* FIN: the host queues whole messages */
    if (len < 126) {
        p[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        p[1] = 126;
        p[2] = (unsigned char)(len >> 8);
        p[3] = (unsigned char)len;
        return 4;
    }
    p[1] = 127;
    for (int i = 0; i < 8; i++)
        p[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

void ws_send__release(struct ws_conn *c)
{
    free(c->tx);
    c->tx = NULL;
    c->tx_cap = 0;
}

/* One write of `bytes` went to the socket (or to lws, for what the socket did not take). */
static void sent(struct ws_conn *c, double bytes)
{
    ws_server__count(c->srv->m_tx, bytes, c->srv);
    ws_server__count(c->srv->m_writes, 1, c->srv);
}

/* A buffer with LWS_PRE spare bytes in front of `need` bytes. */
static int reserve(struct ws_conn *c, size_t need)
{
    if (c->tx_cap >= need)
        return 0;
    ws_send__release(c);
    c->tx = malloc(LWS_PRE + need);
    if (!c->tx)
        return -1;
    c->tx_cap = need;
    return 0;
}

static int fail_oom(struct ws_conn *c)
{
    ARQ_LOG(c->srv->host, c->srv->ctx, ARQ_LOG_ERROR, "out of memory", "while",
            "writing to a WebSocket connection");
    c->local_code = LWS_CLOSE_STATUS_UNEXPECTED_CONDITION;
    strcpy(c->local_reason, "out of memory");
    lws_close_reason(c->wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
                     (unsigned char *)c->local_reason, strlen(c->local_reason));
    return -1;
}

/* One frame too large for the coalescing buffer: its header goes into the headroom the host
 * reserved in front of the payload, and the frame is written in place. */
static int send_alone(struct ws_conn *c, const struct arq_frame_ref *f)
{
    size_t hl = header_size(f->len);
    int op = f->binary ? OP_BINARY : OP_TEXT;
    unsigned char *start;
    if (f->headroom >= hl) {
        start = f->data - hl;
        ws_send__header(start, f->len, op);
    } else {
        if (reserve(c, hl + f->len) != 0)
            return fail_oom(c);
        start = c->tx + LWS_PRE;
        ws_send__header(start, f->len, op);
        memcpy(start + hl, f->data, f->len);
    }
    if (lws_write(c->wsi, start, hl + f->len, LWS_WRITE_RAW) < 0)
        return -1;
    sent(c, (double)(hl + f->len));
    return 0;
}

/* The ping alone, from the stack (lws copies what the socket does not take). */
static int send_ping(struct ws_conn *c)
{
    unsigned char buf[LWS_PRE + PING_FRAME_LEN];
    c->ping_due = 0;
    if (lws_write(c->wsi, buf + LWS_PRE, ping_frame(buf + LWS_PRE), LWS_WRITE_RAW) < 0)
        return -1;
    sent(c, PING_FRAME_LEN);
    return 0;
}

static int send_coalesced(struct ws_conn *c)
{
    const struct arq_host *h = c->srv->host;
    struct arq_frame_ref f[BATCH_FRAMES];
    size_t n = h->conn_pending(c->conn, f, BATCH_FRAMES);
    if (n == 0) {
        ws_send__release(c);
        return c->ping_due ? send_ping(c) : 0;
    }
    size_t ping = c->ping_due ? PING_FRAME_LEN : 0;
    size_t need = ping, k = 0;
    for (; k < n; k++) {
        size_t size = header_size(f[k].len) + f[k].len;
        if (need + size > COALESCE_MAX)
            break;
        need += size;
    }
    if (k == 0 || reserve(c, need) != 0) {
        if (ping) { /* one write per callback: the ping now, the frames at the next */
            if (send_ping(c) != 0)
                return -1;
            lws_callback_on_writable(c->wsi);
            return 0;
        }
        /* The first frame alone is over the bound (or no memory for a batch): in place. */
        if (send_alone(c, &f[0]) != 0)
            return -1;
        k = 1;
    } else {
        unsigned char *p = c->tx + LWS_PRE;
        if (ping) {
            p += ping_frame(p);
            c->ping_due = 0;
        }
        for (size_t i = 0; i < k; i++) {
            p += ws_send__header(p, f[i].len, f[i].binary ? OP_BINARY : OP_TEXT);
            memcpy(p, f[i].data, f[i].len);
            p += f[i].len;
        }
        if (lws_write(c->wsi, c->tx + LWS_PRE, need, LWS_WRITE_RAW) < 0)
            return -1;
        sent(c, (double)need);
    }
    h->conn_consumed(c->conn, k);
    if (k < n || n == BATCH_FRAMES)
        lws_callback_on_writable(c->wsi);
    else
        ws_send__release(c); /* drained: an idle connection keeps no buffer */
    return 0;
}

/* permessage-deflate: lws compresses, and may read the input again while it drains a large
 * message over later callbacks, so the payload is copied into the connection's buffer, which
 * stays untouched until lws calls us back. */
static int send_deflate(struct ws_conn *c)
{
    const struct arq_host *h = c->srv->host;
    struct arq_frame_ref f;
    if (h->conn_pending(c->conn, &f, 1) == 0) {
        ws_send__release(c);
        if (!c->ping_due)
            return 0;
        unsigned char buf[LWS_PRE + sizeof ping_payload];
        memcpy(buf + LWS_PRE, ping_payload, sizeof ping_payload);
        c->ping_due = 0;
        if (lws_write(c->wsi, buf + LWS_PRE, sizeof ping_payload, LWS_WRITE_PING) < 0)
            return -1;
        sent(c, sizeof ping_payload);
        return 0;
    }
    if (reserve(c, f.len ? f.len : 1) != 0)
        return fail_oom(c);
    memcpy(c->tx + LWS_PRE, f.data, f.len);
    if (lws_write(c->wsi, c->tx + LWS_PRE, f.len, f.binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT) < 0)
        return -1;
    h->conn_consumed(c->conn, 1);
    sent(c, (double)f.len);
    lws_callback_on_writable(c->wsi); /* the next frame, or release the buffer */
    return 0;
}

/* --- once per loop turn --------------------------------------------------------------------- */

static void flush_turn(uv_check_t *h);

/* Its being active is all it is for: the loop does not block in the poll phase. */
static void wake_turn(uv_idle_t *h)
{
    (void)h;
}

static void dirty_unlink(struct ws_server *srv, struct ws_conn *c)
{
    if (c->dirty_prev)
        c->dirty_prev->dirty_next = c->dirty_next;
    else
        srv->dirty_head = c->dirty_next;
    if (c->dirty_next)
        c->dirty_next->dirty_prev = c->dirty_prev;
    else
        srv->dirty_tail = c->dirty_prev;
    c->dirty_prev = c->dirty_next = NULL;
    c->dirty = 0;
    srv->ndirty--;
}

void ws_send__want_write(struct ws_conn *c)
{
    struct ws_server *srv = c->srv;
    if (!c->wsi || c->dirty)
        return;
    if (!srv || srv->dead || !srv->flush) {
        lws_callback_on_writable(c->wsi);
        return;
    }
    c->dirty = 1;
    c->dirty_prev = srv->dirty_tail;
    c->dirty_next = NULL;
    if (srv->dirty_tail)
        srv->dirty_tail->dirty_next = c;
    else
        srv->dirty_head = c;
    srv->dirty_tail = c;
    if (srv->ndirty++ == 0) {
        ws_send__arm(srv);
        uv_idle_start(srv->wake, wake_turn);
    }
}

void ws_send__arm(struct ws_server *srv)
{
    if (srv->flush)
        uv_check_start(srv->flush, flush_turn); /* nothing when it is active already */
}

void ws_send__forget(struct ws_conn *c)
{
    if (c->dirty && c->srv)
        dirty_unlink(c->srv, c);
}

/* Write `c` now if lws holds nothing of it; otherwise leave it to the writable callback. */
static void write_now(struct ws_conn *c)
{
    if (!c->conn || c->close_pending || c->close_sent || c->deflate ||
        lws_partial_buffered(c->wsi)) {
        lws_callback_on_writable(c->wsi);
        return;
    }
    if (send_coalesced(c) != 0) /* outside a callback lws cannot be told -1: end it so */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_SYNC);
}

static void flush_dirty(struct ws_server *srv)
{
    /* Only those queued so far: a connection queued meanwhile waits for the next turn. */
    for (size_t n = srv->ndirty; n > 0 && srv->dirty_head; n--) {
        struct ws_conn *c = srv->dirty_head;
        dirty_unlink(srv, c);
        if (c->wsi && !srv->dead)
            write_now(c);
    }
    if (srv->ndirty == 0 && srv->flush) {
        uv_idle_stop(srv->wake);
        if (srv->nreaders == 0)
            uv_check_stop(srv->flush);
    }
}

static void flush_turn(uv_check_t *h)
{
    struct ws_server *srv = h->data;
    if (!srv) {
        uv_check_stop(h);
        return;
    }
    ws_read__turn(srv); /* first: what it reads goes out with this turn's writes */
    flush_dirty(srv);
    srv->turn++;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

int ws_send__init(struct ws_server *srv, uv_loop_t *loop)
{
    srv->flush = malloc(sizeof *srv->flush);
    srv->wake = malloc(sizeof *srv->wake);
    if (!srv->flush || !srv->wake || uv_check_init(loop, srv->flush) != 0) {
        free(srv->flush);
        free(srv->wake);
        srv->flush = NULL;
        srv->wake = NULL;
        return -1;
    }
    uv_idle_init(loop, srv->wake); /* cannot fail */
    srv->flush->data = srv;
    return 0;
}

void ws_send__fini(struct ws_server *srv)
{
    while (srv->dirty_head)
        dirty_unlink(srv, srv->dirty_head);
    if (!srv->flush)
        return;
    srv->flush->data = NULL;
    uv_check_stop(srv->flush);
    uv_idle_stop(srv->wake);
    uv_close((uv_handle_t *)srv->flush, free_handle);
    uv_close((uv_handle_t *)srv->wake, free_handle);
    srv->flush = NULL;
    srv->wake = NULL;
}

int ws_send__writeable(struct ws_conn *c)
{
    struct arq_frame_ref next;
    if (c->close_pending && c->conn && uv_now(c->srv->loop) < c->close_by &&
        c->srv->host->conn_pending(c->conn, &next, 1) > 0) {
        /* Frames queued before the host asked for the close go out before the close frame,
         * until the deadline op_close set (ws_conn.c); the host queues no more. */
        int rc = c->deflate ? send_deflate(c) : send_coalesced(c);
        if (rc == 0)
            lws_callback_on_writable(c->wsi); /* more of them, or the close frame */
        return rc;
    }
    if (c->close_pending) {
        /* Our own close frame, then wait for the peer's (lws would otherwise close the socket
         * at once: Debian's debug build of lws 4.1 on libuv drops the socket before its own
         * close frame goes out). The output is empty in a writable callback, so the frame
         * leaves whole; the timeout ends the wait for a peer that does not answer. */
        c->close_pending = 0;
        c->close_sent = 1;
        ws_conn__write_close(c, c->local_code, c->local_reason);
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, WS_CLOSE_WAIT_S);
        return 0;
    }
    if (c->close_sent)
        return 0;
    if (!c->conn)
        return 0;
    return c->deflate ? send_deflate(c) : send_coalesced(c);
}
