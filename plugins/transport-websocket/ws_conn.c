/* The libwebsockets protocol callback: the upgrade, the connection's registration with the
 * host, inbound messages (reassembled from fragments, bounded by max_message_bytes), and the
 * close handshake. The send path is in ws_send.c. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <jansson.h>

#include "ws.h"

#define RX_KEEP_BYTES (64 * 1024) /* a reassembly buffer larger than this goes after use */

/* --- bookkeeping --------------------------------------------------------------------------- */

static void conn_link(struct ws_server *srv, struct ws_conn *c)
{
    c->srv = srv;
    c->next = srv->conns;
    c->prev = NULL;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    c->linked = 1;
    srv->nconns++;
    ws_server__count(srv->m_conns, 1, srv);
    ws_server__count(srv->m_conns_total, 1, srv);
}

/* The connection is going: unlink it and release its buffers. Safe to call twice. */
static void conn_forget(struct ws_conn *c)
{
    struct ws_server *srv = c->srv;
    if (c->linked) {
        if (c->prev)
            c->prev->next = c->next;
        else
            srv->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->prev = c->next = NULL;
        c->linked = 0;
        srv->nconns--;
        ws_server__count(srv->m_conns, -1, srv); /* after destroy, detach_all counted it */
        ws_server__conn_gone(srv);
    }
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
    ws_ping__untrack(c);
    ws_send__forget(c);
    ws_read__forget(c);
    ws_send__release(c);
}

/* Copy a close reason (n bytes at most), cut on a UTF-8 boundary so the frame stays valid. */
static void copy_reason(char *dst, const char *src, size_t n)
{
    size_t len = src ? strnlen(src, n) : 0;
    if (len > WS_REASON_MAX) {
        len = WS_REASON_MAX;
        while (len > 0 && ((unsigned char)src[len] & 0xc0) == 0x80)
            len--;
    }
    if (len)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Codes an endpoint may send (RFC 6455 7.4): not 1004-1006, 1015, nor unassigned ranges. */
static int sendable_code(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* --- what the host may ask of a connection ------------------------------------------------- */

static void op_want_write(void *tconn)
{
    ws_send__want_write(tconn);
}

static void op_close(void *tconn, int code, const char *reason)
{
    struct ws_conn *c = tconn;
    if (c->close_pending || c->local_code)
        return;
    c->close_pending = 1;
    ws_ping__untrack(c); /* the close has its own timeout (WS_CLOSE_WAIT_S) */
    c->local_code = sendable_code(code) ? code : LWS_CLOSE_STATUS_UNEXPECTED_CONDITION;
    copy_reason(c->local_reason, reason, reason ? strlen(reason) : 0);
    /* The frames the host queued before the close go out first (ws_send.c), as long as they
     * take less than WS_CLOSE_FLUSH_MS; then the close frame goes anyway. */
    c->close_by = uv_now(c->srv->loop) + WS_CLOSE_FLUSH_MS;
    if (c->wsi) {
        /* A peer that never reads never makes the socket writable, so the close frame (and
         * its own WS_CLOSE_WAIT_S) may never come: the whole close is bounded here too. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND,
                        WS_CLOSE_FLUSH_MS / 1000 + WS_CLOSE_WAIT_S);
        lws_callback_on_writable(c->wsi);
    }
}

static const struct arq_conn_ops conn_ops = {
    .struct_size = sizeof(struct arq_conn_ops),
    .want_write = op_want_write,
    .close = op_close,
};

/* --- the handshake ------------------------------------------------------------------------- */

static char *keep(struct ws_conn *c, char *s)
{
    if (!s || c->nscratch == sizeof c->scratch / sizeof c->scratch[0]) {
        free(s);
        return NULL;
    }
    c->scratch[c->nscratch++] = s;
    return s;
}

static char *copy_token(struct lws *wsi, enum lws_token_indexes t)
{
    int n = lws_hdr_total_length(wsi, t);
    if (n <= 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s && lws_hdr_copy(wsi, s, n + 1, t) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

/* arq_conn_info.header: any request header by name, during conn_open. */
static const char *conn_header(void *tconn, const char *name)
{
    struct ws_conn *c = tconn;
    if (!c->in_open || !name || !*name)
        return NULL;
    size_t n = strlen(name);
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const char *s = (const char *)lws_token_to_string((enum lws_token_indexes)t);
        if (s && strncasecmp(s, name, n) == 0 && s[n] == ':' && s[n + 1] == '\0')
            return keep(c, copy_token(c->wsi, (enum lws_token_indexes)t));
    }
    /* Not a header lws knows by name: its custom-header table keys are "name:" in lower case. */
    char key[128];
    if (n + 2 > sizeof key)
        return NULL;
    for (size_t i = 0; i < n; i++)
        key[i] = (char)tolower((unsigned char)name[i]);
    key[n] = ':';
    key[n + 1] = '\0';
    int len = lws_hdr_custom_length(c->wsi, key, (int)n + 1);
    if (len < 0) {
        /* A name lws 4.1 cannot take went to it as `~name` (ws_head.c). */
        if (n + 3 > sizeof key)
            return NULL;
        memmove(key + 1, key, n + 2);
        key[0] = '~';
        if ((len = lws_hdr_custom_length(c->wsi, key, (int)n + 2)) < 0)
            return NULL;
        n++;
    }
    char *v = malloc((size_t)len + 1);
    if (v && lws_hdr_custom_copy(c->wsi, v, len + 1, key, (int)n + 1) < 0) {
        free(v);
        v = NULL;
    }
    return keep(c, v);
}

/* lws splits the query into its '&'-separated arguments and percent-decodes them; put them
 * back together, percent-encoded again, so the host reads one raw query string. */
static char *rebuild_query(struct lws *wsi)
{
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    if (total <= 0)
        return NULL;
    char *frag = malloc((size_t)total + 1);
    char *q = malloc((size_t)total * 3 + 1);
    size_t used = 0;
    if (!frag || !q)
        goto fail;
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, total + 1, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0)
            break;
        if (used)
            q[used++] = '&';
        int in_value = 0;
        for (int k = 0; k < n; k++) {
            unsigned char ch = (unsigned char)frag[k];
            if (isalnum(ch) || strchr("-._~", ch) || (ch == '=' && !in_value)) {
                in_value |= ch == '=';
                q[used++] = (char)ch;
            } else {
                used += (size_t)snprintf(q + used, 4, "%%%02X", ch);
            }
        }
    }
    q[used] = '\0';
    free(frag);
    return q;
fail:
    free(frag);
    free(q);
    return NULL;
}

static void peer_of(struct lws *wsi, char *addr, size_t size, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    snprintf(addr, size, "?");
    *port = 0;
    if (getpeername(lws_get_socket_fd(wsi), (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, addr, (socklen_t)size);
        *port = ntohs(in->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, addr, (socklen_t)size);
        *port = ntohs(in6->sin6_port);
    }
}

/* What the host reads of the handshake request. `path` and `query` are allocated into
 * *path / *query (free them). */
static struct arq_conn_info request_info(struct ws_server *srv, struct lws *wsi, char *peer,
                                         size_t peer_size, char **path, char **query)
{
    int peer_port;
    peer_of(wsi, peer, peer_size, &peer_port);
    *path = copy_token(wsi, WSI_TOKEN_GET_URI);
    *query = rebuild_query(wsi);
    return (struct arq_conn_info){
        .struct_size = sizeof(struct arq_conn_info),
        .transport = "websocket",
        .peer_addr = peer,
        .peer_port = peer_port,
        .path = *path ? *path : "/",
        .query = *query,
        .header = conn_header,
        .max_queued_bytes = srv->cfg.max_queued_bytes,
    };
}

static void end_request(struct ws_conn *c, char *path, char *query)
{
    c->in_open = 0;
    while (c->nscratch)
        free(c->scratch[--c->nscratch]);
    free(path);
    free(query);
}

/* Before the upgrade: connection limits and the auth chain. A refusal is an HTTP answer;
 * no WebSocket is opened. */
static int on_filter(struct ws_server *srv, struct ws_conn *c, struct lws *wsi)
{
    if (!c)
        return 0; /* no session yet: conn_open runs the chain after the upgrade */
    char peer[INET6_ADDRSTRLEN], *path, *query;
    c->wsi = wsi;
    c->srv = srv;
    struct arq_conn_info info = request_info(srv, wsi, peer, sizeof peer, &path, &query);
    struct arq_auth_result res = {.struct_size = sizeof res};
    c->in_open = 1;
    srv->host->auth_ticket_free(c->ticket); /* never two: a repeated filter replaces it */
    c->ticket = NULL;
    enum arq_auth_verdict v = srv->host->auth_handshake(srv->ctx, &info, c, &c->ticket, &res);
    end_request(c, path, query);
    if (v == ARQ_AUTH_ALLOW)
        return 0;
    ws_http__refuse(srv, wsi, (unsigned)res.http_status, res.reason, res.retry_after_ms);
    return -1;
}

static int on_established(struct ws_server *srv, struct ws_conn *c, struct lws *wsi)
{
    c->wsi = wsi;
    conn_link(srv, c);

    char peer[INET6_ADDRSTRLEN], *path, *query;
    struct arq_conn_info info = request_info(srv, wsi, peer, sizeof peer, &path, &query);
    info.ticket = c->ticket; /* conn_open takes it */
    c->ticket = NULL;
    c->in_open = 1;
    arq_conn *conn = srv->host->conn_open(srv->ctx, &info, &conn_ops, c);
    end_request(c, path, query);

    if (!conn) {
        /* Refused. The host may have said why through ops->close during conn_open. */
        if (!c->close_pending)
            op_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "connection refused by the server");
        lws_callback_on_writable(wsi);
        return 0;
    }
    c->conn = conn;
    ws_ping__track(c);
    return 0;
}

/* --- inbound messages ---------------------------------------------------------------------- */

/* Refuse what the peer sent with `code`: the callback's return value. */
static int close_refused(struct ws_conn *c, struct lws *wsi, int code, const char *reason)
{
    free(c->rx);
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
    if (c->deflate) {
        /* lws 4.1 ignores the callback's verdict while it drains an inflating message: close
         * from the next writable callback instead, dropping what still arrives. */
        op_close(c, code, reason);
        return 0;
    }
    c->local_code = code;
    copy_reason(c->local_reason, reason, strlen(reason));
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)c->local_reason,
                     strlen(c->local_reason));
    return -1;
}

static int close_oversize(struct ws_server *srv, struct ws_conn *c, struct lws *wsi)
{
    ws_server__count(srv->m_oversize, 1, srv);
    char reason[64];
    snprintf(reason, sizeof reason, "message larger than %zu bytes", srv->cfg.max_message_bytes);
    return close_refused(c, wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, reason);
}

/* lws 4.1 checks UTF-8 as text arrives, and that a message does not stop inside a character,
 * but only on a piece that carries bytes: a message whose last fragment is empty is not
 * checked there. Does `s` (n bytes, valid so far) end on a whole character? */
static int utf8_ends_whole(const unsigned char *s, size_t n)
{
    size_t cont = 0;
    while (cont < n && cont < 4 && (s[n - 1 - cont] & 0xc0) == 0x80)
        cont++;
    if (cont == n)
        return cont == 0;
    unsigned char lead = s[n - 1 - cont];
    size_t need = lead < 0x80 ? 0 : (lead & 0xe0) == 0xc0 ? 1 : (lead & 0xf0) == 0xe0 ? 2 : 3;
    return cont == need;
}

static int on_receive(struct ws_server *srv, struct ws_conn *c, struct lws *wsi,
                      const unsigned char *in, size_t len)
{
    if (!c->conn || c->close_pending || c->close_sent)
        return 0; /* refused or closing: what still arrives is dropped */
    size_t max = srv->cfg.max_message_bytes;
    int first = lws_is_first_fragment(wsi);
    int final = lws_is_final_fragment(wsi);
    if (first) {
        c->rx_len = 0;
        c->rx_binary = lws_frame_is_binary(wsi);
    }
    size_t total = c->rx_len + len;
    /* Refuse at the first chunk that shows the message cannot fit, without reading the rest.
     * (With deflate, the bytes still on the wire say nothing of the inflated size.) */
    size_t rest = c->deflate ? 0 : lws_remaining_packet_payload(wsi);
    if (total > max || rest > max - total)
        return close_oversize(srv, c, wsi);
    ws_server__count(srv->m_rx, (double)len, srv);

    if (first && final) { /* whole message in one piece: no copy */
        if (!c->rx_binary && !utf8_ends_whole(in, len))
            return close_refused(c, wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "invalid UTF-8");
        /* lws 4.1 reports an empty piece (the end of a compressed message) with no buffer */
        srv->host->conn_recv(c->conn, in ? in : (const unsigned char *)"", len, c->rx_binary);
        return 0;
    }
    if (total > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap * 2 : 4096;
        if (cap < total + rest)
            cap = total + rest;
        if (cap > max)
            cap = max;
        unsigned char *p = realloc(c->rx, cap);
        if (!p) {
            ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_ERROR, "out of memory", "while",
                    "reassembling a fragmented message");
            c->local_code = LWS_CLOSE_STATUS_UNEXPECTED_CONDITION;
            snprintf(c->local_reason, sizeof c->local_reason, "out of memory");
            lws_close_reason(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
                             (unsigned char *)c->local_reason, strlen(c->local_reason));
            return -1;
        }
        c->rx = p;
        c->rx_cap = cap;
    }
    if (len) /* an empty piece may come with no buffer, or before any (c->rx NULL) */
        memcpy(c->rx + c->rx_len, in, len);
    c->rx_len = total;
    if (!final) {
        /* lws 4.1 on libuv inflates a compressed message 1 KiB per service turn but only
         * schedules the next turn on socket activity: wake it, or the rest of the message
         * waits for the client's next packet. */
        if (c->deflate)
            lws_cancel_service(lws_get_context(wsi));
        return 0;
    }
    c->rx_len = 0;
    if (!c->rx_binary && !utf8_ends_whole(c->rx, total))
        return close_refused(c, wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD, "invalid UTF-8");
    srv->host->conn_recv(c->conn, c->rx ? c->rx : (const unsigned char *)"", total, c->rx_binary);
    if (c->rx_cap > RX_KEEP_BYTES) {
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
    return 0;
}

/* --- the end ------------------------------------------------------------------------------- */

/* Codes a peer may close with (RFC 6455 7.4). lws 4.1 turns 1004-1006, 1012-1015 and the
 * ranges under 1000 and 1016-2999 into 1002 before we see them, but echoes 5000 and up. */
static int receivable_code(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

/* Returns non-zero when lws must not echo the close: it answers ours, or it is invalid (a
 * 1-byte payload, a code no endpoint may send) and is answered with 1002 instead. */
static int on_peer_close(struct ws_conn *c, struct lws *wsi, const unsigned char *in, size_t len)
{
    ws_ping__untrack(c); /* lws answers and closes: no frame of ours may follow */
    if (!c->close_sent && (len == 1 || (len >= 2 && !receivable_code((in[0] << 8) | in[1])))) {
        /* lws would echo the payload as it is. With a close reason set and -1, it sends
         * ours instead (its state is not yet "close returned"). */
        c->close_pending = 0;
        c->local_code = LWS_CLOSE_STATUS_PROTOCOL_ERR;
        copy_reason(c->local_reason, "invalid close frame", 19);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR, (unsigned char *)c->local_reason,
                         strlen(c->local_reason));
        return -1;
    }
    if (len >= 2) {
        c->peer_code = (in[0] << 8) | in[1];
        copy_reason(c->peer_reason, (const char *)in + 2, len - 2);
    } else {
        c->peer_code = LWS_CLOSE_STATUS_NO_STATUS; /* 1005: a close without a code */
    }
    return c->close_sent;
}

static void on_closed(struct ws_server *srv, struct ws_conn *c)
{
    if (c->conn) {
        arq_conn *conn = c->conn;
        c->conn = NULL;
        if (c->ping_timed_out) /* dropped like a lost connection, but the host learns why */
            srv->host->conn_closed(conn, LWS_CLOSE_STATUS_ABNORMAL_CLOSE, "ping timeout");
        else if (c->local_code)
            srv->host->conn_closed(conn, c->local_code, c->local_reason);
        else if (c->peer_code)
            srv->host->conn_closed(conn, c->peer_code, c->peer_reason);
        else /* no close frame either way: the socket dropped, or the peer stopped answering */
            srv->host->conn_closed(conn, LWS_CLOSE_STATUS_ABNORMAL_CLOSE, "connection lost");
    }
    conn_forget(c);
}

void ws_conn__write_close(struct ws_conn *c, int code, const char *reason)
{
    unsigned char buf[LWS_PRE + 2 + 2 + WS_REASON_MAX];
    unsigned char *f = buf + LWS_PRE;
    size_t n = strlen(reason);
    f[0] = 0x88;
    f[1] = (unsigned char)(2 + n);
    f[2] = (unsigned char)(code >> 8);
    f[3] = (unsigned char)code;
    memcpy(f + 4, reason, n);
    (void)lws_write(c->wsi, f, 4 + n, LWS_WRITE_RAW); /* on failure the socket just closes */
}

void ws_conn__close_all(struct ws_server *srv, int code, const char *reason)
{
    for (struct ws_conn *c = srv->conns; c; c = c->next)
        op_close(c, code, reason);
}

/* lws drops sockets without a close frame when its context goes, and the host may have asked
 * for a close that no writable callback will now carry: write the close frame here, a best
 * effort (it is lost if the socket still has older output queued). */
void ws_conn__detach_all(struct ws_server *srv)
{
    for (struct ws_conn *c = srv->conns; c; c = c->next) {
        if (c->close_pending || (!c->close_sent && !c->local_code && !c->peer_code)) {
            if (!c->close_pending) {
                c->local_code = LWS_CLOSE_STATUS_GOINGAWAY;
                static const char going[] = "listener closed: reconnect";
                copy_reason(c->local_reason, going, sizeof going - 1);
            }
            c->close_pending = 0;
            ws_conn__write_close(c, c->local_code, c->local_reason);
        }
        if (c->conn) {
            arq_conn *conn = c->conn;
            c->conn = NULL;
            srv->host->conn_closed(conn, c->local_code ? c->local_code : c->peer_code,
                                   c->local_code ? c->local_reason : c->peer_reason);
        }
        ws_server__count(srv->m_conns, -1, srv);
    }
}

int ws_conn__callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
    struct ws_conn *c = user;
    struct lws_vhost *vh = lws_get_vhost(wsi);
    struct ws_server *srv = vh ? lws_get_vhost_user(vh) : NULL;

    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (!srv || srv->dead || srv->nconns >= srv->cfg.max_connections) {
            ws_http__refuse(srv, wsi, 503, "too many connections", 0);
            return -1;
        }
        return on_filter(srv, c, wsi);
    case LWS_CALLBACK_CONFIRM_EXTENSION_OKAY:
        if (c)
            c->deflate = 1;
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        if (!srv || srv->dead || !c)
            return -1;
        return on_established(srv, c, wsi);
    case LWS_CALLBACK_RECEIVE:
        if (!srv || !c)
            return -1;
        ws_ping__seen(c);
        ws_read__received(c, len);
        return on_receive(srv, c, wsi, in, len);
    case LWS_CALLBACK_RECEIVE_PONG:
        /* Only pongs with a payload get here (lws 4.1 drops empty ones): ours carry one. */
        if (c && c->srv)
            ws_ping__seen(c);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!srv || !c)
            return 0;
        return ws_send__writeable(c);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return c ? on_peer_close(c, wsi, in, len) : 0;
    case LWS_CALLBACK_CLOSED:
        if (c && c->srv)
            on_closed(c->srv, c);
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if (c && c->srv) {
            /* A handshake that passed the filter but never became a connection. */
            c->srv->host->auth_ticket_free(c->ticket);
            c->ticket = NULL;
            on_closed(c->srv, c);
        }
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}
