/* Every HTTP answer the WebSocket port gives instead of an upgrade, and the protocol callback's
 * cases before the upgrade (a request that is not an upgrade, an upgrade to something else, a
 * CONNECT). The rest of the callback is in ws_conn.c.
 *
 * The answers are written whole by us rather than with lws_add_http_common_headers(): lws 4.1
 * takes the status line's version from the request only once it treats the request as plain
 * HTTP, so a refusal during the upgrade went out as `HTTP/1.0 401`, and it has no reason
 * phrase for 426 or 431. Every answer here is HTTP/1.1, with a reason phrase, `Connection:
 * close`, and the JSON body docs/protocol.md gives: {"error": <reason phrase>, "details": …}. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <jansson.h>

#include "ws.h"

static const char *reason_phrase(unsigned status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return status >= 500 ? "Server Error" : "Client Error";
    }
}

size_t ws_http__format(char *out, size_t size, unsigned status, const char *details,
                       uint64_t retry_after_ms)
{
    const char *error = reason_phrase(status);
    char body[768], extra[64] = "";
    json_t *obj = json_pack("{s:s, s:s}", "error", error, "details", details ? details : "");
    size_t n = obj ? json_dumpb(obj, body, sizeof body, JSON_COMPACT) : 0;
    json_decref(obj);
    if (n == 0 || n > sizeof body)
        n = (size_t)snprintf(body, sizeof body, "{\"error\":\"%s\"}", error);
    if (status == 426)
        snprintf(extra, sizeof extra, "Upgrade: websocket\r\n");
    else if (status == 405)
        snprintf(extra, sizeof extra, "Allow: GET\r\n");
    else if (status == 429 || retry_after_ms)
        snprintf(extra, sizeof extra, "Retry-After: %llu\r\n",
                 (unsigned long long)((retry_after_ms + 999) / 1000));
    int head = snprintf(out, size,
                        "HTTP/1.1 %u %s\r\nServer: ArqonBus\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                        status, error, n, extra);
    if (head < 0 || (size_t)head + n > size)
        return 0;
    memcpy(out + head, body, n);
    return (size_t)head + n;
}

void ws_http__count_refusal(struct ws_server *srv, unsigned status)
{
    if (!srv || srv->dead || !srv->m_refused)
        return;
    char code[8];
    snprintf(code, sizeof code, "%u", status);
    const char *values[] = {srv->name, code, NULL};
    ws_server__count(srv->host->metric_series(srv->m_refused, values), 1, srv);
}

int ws_http__refuse(struct ws_server *srv, struct lws *wsi, unsigned status, const char *details,
                    uint64_t retry_after_ms)
{
    unsigned char buf[LWS_PRE + 1024];
    size_t n = ws_http__format((char *)buf + LWS_PRE, sizeof buf - LWS_PRE, status, details,
                               retry_after_ms);
    ws_http__count_refusal(srv, status);
    /* LWS_WRITE_RAW: the bytes as they are, in the HTTP role as in the raw one (CONNECT). */
    if (n == 0 || lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_RAW) != (int)n)
        return -1;
    return 0;
}

int ws_http__refuse_fd(struct ws_server *srv, int fd, unsigned status, const char *details)
{
    char buf[1024];
    size_t n = ws_http__format(buf, sizeof buf, status, details, 0);
    ws_http__count_refusal(srv, status);
    /* A new socket's send buffer takes an answer this small whole, or the peer is gone. */
    ssize_t sent;
    do
        sent = n ? send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT) : -1;
    while (sent < 0 && errno == EINTR);
    return sent == (ssize_t)n ? 0 : -1;
}

/* --- the protocol callback before the upgrade ---------------------------------------------- */

int ws_http__callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    struct ws_server *srv = vh ? lws_get_vhost_user(vh) : NULL;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        /* A request that is not an upgrade. Only GET can become one. */
        if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
            ws_http__refuse(srv, wsi, 405, "this endpoint speaks WebSocket only: GET with Upgrade",
                            0);
        else
            ws_http__refuse(srv, wsi, 426, "this endpoint speaks WebSocket only", 0);
        return -1;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* lws also offers h2c here, which would turn the connection into HTTP/2. */
        if (!in || strcasecmp(in, "websocket") != 0) {
            ws_http__refuse(srv, wsi, 426, "this endpoint speaks WebSocket only", 0);
            return -1;
        }
        /* lws 4.1 hangs up without a word, before the filter runs, on a Sec-WebSocket-Protocol
         * longer than 126 bytes ("protocol list too long"); a `bearer.<jwt>` entry always is.
         * Say why instead. */
        if (lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL) > WS_SUBPROTOCOLS_MAX) {
            ws_http__refuse(
                srv, wsi, 431,
                "Sec-WebSocket-Protocol is longer than libwebsockets reads (126 bytes): "
                "send a token in Authorization: Bearer or the token query parameter",
                0);
            return -1;
        }
        return 0;
    case LWS_CALLBACK_RAW_ADOPT:
        /* lws 4.1 turns a CONNECT request into a raw socket of this protocol, with no timeout
         * and nothing to say: answer it and hang up. (Nothing else becomes raw here: the vhost
         * has no fallback role.) */
        ws_http__refuse(srv, wsi, 405, "CONNECT is not served here: this endpoint speaks WebSocket",
                        0);
        return -1;
    case LWS_CALLBACK_RAW_RX:
        return -1;
    default:
        return ws_conn__callback(wsi, reason, user, in, len);
    }
}
