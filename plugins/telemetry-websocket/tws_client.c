/* One telemetry client: the upgrade (or an HTTP refusal), its requests (subscribe, ping), the
 * queue of frames waiting for it, the writes, and the close.
 *
 * Nothing is written outside a writable callback: events and replies are queued here and
 * written from LWS_CALLBACK_SERVER_WRITEABLE, as much as the socket takes. A slow client costs
 * memory, bounded by max_queued_bytes, and never time. Closing writes our own close frame and
 * waits for the peer's, as transport-websocket does (lws 4.1 on libuv drops the socket before
 * its own close frame is out when a callback returns -1). */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tws.h"

#define BATCH_HEAD          "{\"type\":\"telemetry_batch\",\"events\":["
#define BATCH_TAIL          "]}"
#define FILTER_MAX          256 /* event types in one subscribe */
#define EVENT_TYPE_MAX      128
#define BATCH_FIRST_CAP     4096
#define WRITES_PER_CALLBACK 64 /* then other connections get their turn */

/* --- the queue ----------------------------------------------------------------------------- */

static struct tws_frame *frame_new(size_t cap)
{
    struct tws_frame *f = malloc(sizeof *f + LWS_PRE + cap);
    if (f) {
        f->next = NULL;
        f->len = 0;
        f->cap = cap;
        f->events = 0;
    }
    return f;
}

static void frame_put(struct tws_frame *f, const void *p, size_t n)
{
    memcpy(f->data + LWS_PRE + f->len, p, n);
    f->len += n;
}

static void queue_append(struct tws_client *c, struct tws_frame *f)
{
    if (c->tail)
        c->tail->next = f;
    else
        c->head = f;
    c->tail = f;
    lws_callback_on_writable(c->wsi);
}

static void queue_clear(struct tws_client *c)
{
    while (c->head) {
        struct tws_frame *f = c->head;
        c->head = f->next;
        free(f);
    }
    c->tail = NULL;
    free(c->batch);
    c->batch = NULL;
    c->queued = 0;
}

static int closing(const struct tws_client *c)
{
    return c->close_pending || c->close_sent;
}

/* Close with our close frame, from the next writable callback. Queued frames are dropped; a
 * client that does not read even the close frame is cut TWS_CLOSE_WAIT_S later. */
static void client_close(struct tws_client *c, int code, const char *reason)
{
    if (closing(c))
        return;
    queue_clear(c);
    c->close_pending = 1;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, TWS_CLOSE_WAIT_S);
    lws_callback_on_writable(c->wsi);
}

static int over_limit(struct tws_client *c)
{
    struct tws_server *srv = c->srv;
    if (c->queued <= srv->cfg.max_queued_bytes)
        return 0;
    char queued[24];
    snprintf(queued, sizeof queued, "%zu", c->queued);
    ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_WARN, "slow telemetry client disconnected", "peer",
            c->peer, "queued_bytes", queued);
    tws_server__count(srv, srv->m_dropped, 1);
    client_close(c, 1013, "telemetry client too slow");
    return 1;
}

void tws_client__seal(struct tws_client *c)
{
    struct tws_frame *f = c->batch;
    if (!f)
        return;
    c->batch = NULL;
    frame_put(f, BATCH_TAIL, sizeof BATCH_TAIL - 1); /* room was kept for it */
    c->queued += sizeof BATCH_TAIL - 1;
    queue_append(c, f);
}

int tws_client__wants(const struct tws_client *c, const char *event_type)
{
    if (closing(c))
        return 0;
    if (!c->filter)
        return 1;
    for (size_t i = 0; i < c->nfilter; i++)
        if (!strcmp(c->filter[i], event_type))
            return 1;
    return 0;
}

void tws_client__push(struct tws_client *c, const char *json, size_t len)
{
    struct tws_server *srv = c->srv;
    struct tws_frame *f = c->batch;
    /* the comma, the event, and the tail that seals the batch */
    size_t need = (f ? f->len + 1 : sizeof BATCH_HEAD - 1) + len + sizeof BATCH_TAIL - 1;
    if (!f || need > f->cap) {
        size_t cap = f ? f->cap * 2 : BATCH_FIRST_CAP;
        while (cap < need)
            cap *= 2;
        struct tws_frame *g = f ? realloc(f, sizeof *f + LWS_PRE + cap) : frame_new(cap);
        if (!g) {
            ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_ERROR, "out of memory", "while",
                    "queueing telemetry for a client");
            client_close(c, 1011, "out of memory");
            return;
        }
        g->cap = cap;
        if (!f) {
            frame_put(g, BATCH_HEAD, sizeof BATCH_HEAD - 1);
            c->queued += g->len;
            tws_server__arm_flush(srv);
        }
        c->batch = f = g;
    }
    size_t before = f->len;
    if (f->events)
        frame_put(f, ",", 1);
    frame_put(f, json, len);
    f->events++;
    c->queued += f->len - before;
    if (over_limit(c))
        return;
    if (f->events >= srv->cfg.batch_size)
        tws_client__seal(c);
}

/* A reply goes after the events queued before the request, so the stream stays in order. */
static void reply(struct tws_client *c, json_t *msg_take)
{
    struct tws_server *srv = c->srv;
    if (closing(c)) {
        json_decref(msg_take);
        return;
    }
    char *text = msg_take ? json_dumps(msg_take, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(msg_take);
    size_t n = text ? strlen(text) : 0;
    struct tws_frame *f = text ? frame_new(n) : NULL;
    if (!f) {
        free(text);
        ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_ERROR, "out of memory", "while",
                "answering a telemetry client");
        client_close(c, 1011, "out of memory");
        return;
    }
    frame_put(f, text, n);
    free(text);
    tws_client__seal(c);
    queue_append(c, f);
    c->queued += n;
    over_limit(c);
}

static void reply_error(struct tws_client *c, const char *text)
{
    reply(c, json_pack("{s:s, s:s}", "type", "error", "error", text));
}

/* --- requests ------------------------------------------------------------------------------ */

static void filter_free(struct tws_client *c)
{
    for (size_t i = 0; i < c->nfilter; i++)
        free(c->filter[i]);
    free(c->filter);
    c->filter = NULL;
    c->nfilter = 0;
}

static void on_subscribe(struct tws_client *c, const json_t *events)
{
    char text[160];
    if (!json_is_array(events)) {
        reply_error(c, "subscribe needs \"events\": a list of event types ([] or [\"*\"]: all)");
        return;
    }
    size_t n = json_array_size(events), i;
    const json_t *v;
    if (n > FILTER_MAX) {
        snprintf(text, sizeof text, "subscribe accepts at most %d event types", FILTER_MAX);
        reply_error(c, text);
        return;
    }
    int all = n == 0;
    json_array_foreach(events, i, v)
    {
        const char *s = json_string_value(v);
        if (!s || !*s || strlen(s) > EVENT_TYPE_MAX) {
            snprintf(text, sizeof text,
                     "events[%zu] is not an event type (a string of 1 to %d bytes)", i,
                     EVENT_TYPE_MAX);
            reply_error(c, text);
            return;
        }
        all |= !strcmp(s, "*");
    }

    char **filter = NULL;
    size_t nfilter = 0;
    json_t *answer = json_array();
    if (!answer)
        goto oom;
    if (all) {
        if (json_array_append_new(answer, json_string("*")))
            goto oom;
    } else {
        if (!(filter = calloc(n, sizeof *filter)))
            goto oom;
        json_array_foreach(events, i, v)
        {
            const char *s = json_string_value(v);
            size_t k = 0;
            while (k < nfilter && strcmp(filter[k], s))
                k++;
            if (k < nfilter)
                continue; /* listed twice */
            if (!(filter[nfilter] = strdup(s)))
                goto oom;
            nfilter++;
            if (json_array_append_new(answer, json_string(s)))
                goto oom;
        }
    }
    /* Events already queued were chosen by the old filter: they go before the answer. */
    filter_free(c);
    c->filter = filter;
    c->nfilter = nfilter;
    reply(c, json_pack("{s:s, s:o}", "type", "subscribed", "events", answer));
    return;

oom:
    for (size_t k = 0; k < nfilter; k++)
        free(filter[k]);
    free(filter);
    json_decref(answer);
    reply_error(c, "out of memory");
}

static void on_request(struct tws_client *c, const char *data, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(data, len, 0, &jerr);
    char text[256];
    if (!msg || !json_is_object(msg)) {
        if (msg)
            snprintf(text, sizeof text, "a request is a JSON object");
        else
            snprintf(text, sizeof text, "invalid JSON at line %d, column %d: %s", jerr.line,
                     jerr.column, jerr.text);
        json_decref(msg);
        reply_error(c, text);
        return;
    }
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (type && !strcmp(type, "ping")) {
        reply(c, json_pack("{s:s}", "type", "pong"));
    } else if (type && !strcmp(type, "subscribe")) {
        on_subscribe(c, json_object_get(msg, "events"));
    } else {
        snprintf(text, sizeof text, "unknown request type \"%.64s\": send subscribe or ping",
                 type ? type : "");
        reply_error(c, type ? text : "a request needs \"type\": subscribe or ping");
    }
    json_decref(msg);
}

static int on_receive(struct tws_client *c, const unsigned char *in, size_t len)
{
    if (closing(c))
        return 0; /* what still arrives is dropped */
    if (lws_is_first_fragment(c->wsi))
        c->rx_len = 0;
    if (c->rx_len + len > TWS_REQUEST_MAX) {
        free(c->rx);
        c->rx = NULL;
        c->rx_len = 0;
        client_close(c, 1009, "request too large");
        return 0;
    }
    if (!c->rx && !(c->rx = malloc(TWS_REQUEST_MAX))) {
        client_close(c, 1011, "out of memory");
        return 0;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (!lws_is_final_fragment(c->wsi))
        return 0;
    if (lws_frame_is_binary(c->wsi))
        reply_error(c, "binary frames are not understood: send JSON text");
    else
        on_request(c, (const char *)c->rx, c->rx_len);
    free(c->rx);
    c->rx = NULL;
    c->rx_len = 0;
    return 0;
}

/* --- the connection ------------------------------------------------------------------------ */

static int http_refuse(struct lws *wsi, unsigned status, const char *error, const char *details)
{
    unsigned char buf[LWS_PRE + 1024];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"details\":\"%s\"}", error, details);
    if (lws_add_http_common_headers(wsi, status, "application/json", (lws_filepos_t)n, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5,
                                     &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    memcpy(start, body, (size_t)n);
    return lws_write(wsi, start, (size_t)n, LWS_WRITE_HTTP_FINAL) == n ? 0 : -1;
}

static void peer_of(struct tws_client *c)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char addr[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getpeername(lws_get_socket_fd(c->wsi), (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, addr, sizeof addr);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, addr, sizeof addr);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", addr, port);
}

static void on_established(struct tws_server *srv, struct tws_client *c, struct lws *wsi)
{
    c->srv = srv;
    c->wsi = wsi;
    c->next = srv->clients;
    if (srv->clients)
        srv->clients->prev = c;
    srv->clients = c;
    c->linked = 1;
    srv->nclients++;
    tws_server__count(srv, srv->m_clients, 1);
    peer_of(c);
    ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_DEBUG, "telemetry client connected", "peer", c->peer);

    /* The greeting has the shape of an event, so that it reads like the stream it opens. */
    struct arq_event ev = {.struct_size = sizeof ev,
                           .event_type = "telemetry_connected",
                           .node = srv->node,
                           .source = srv->name};
    char *text = srv->host->event_json(&ev);
    struct tws_frame *f = text ? frame_new(strlen(text)) : NULL;
    if (!f) {
        srv->host->free(text);
        client_close(c, 1011, "out of memory");
        return;
    }
    frame_put(f, text, f->cap);
    srv->host->free(text);
    c->queued += f->len;
    queue_append(c, f);
}

static void on_closed(struct tws_client *c)
{
    struct tws_server *srv = c->srv;
    if (c->linked) {
        if (c->prev)
            c->prev->next = c->next;
        else
            srv->clients = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->prev = c->next = NULL;
        c->linked = 0;
        srv->nclients--;
        if (!srv->dead) {
            tws_server__count(srv, srv->m_clients, -1);
            ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_DEBUG, "telemetry client disconnected", "peer",
                    c->peer);
        }
    }
    queue_clear(c);
    filter_free(c);
    free(c->rx);
    c->rx = NULL;
}

static void write_close(struct tws_client *c, int code, const char *reason)
{
    unsigned char buf[LWS_PRE + 4 + TWS_REASON_MAX];
    unsigned char *f = buf + LWS_PRE;
    size_t n = strlen(reason);
    f[0] = 0x88; /* FIN, close */
    f[1] = (unsigned char)(2 + n);
    f[2] = (unsigned char)(code >> 8);
    f[3] = (unsigned char)code;
    memcpy(f + 4, reason, n);
    (void)lws_write(c->wsi, f, 4 + n, LWS_WRITE_RAW); /* on failure the socket just closes */
}

static int on_writeable(struct tws_client *c)
{
    struct tws_server *srv = c->srv;
    if (c->close_pending) {
        c->close_pending = 0;
        c->close_sent = 1;
        write_close(c, c->close_code, c->close_reason);
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, TWS_CLOSE_WAIT_S);
        return 0;
    }
    if (c->close_sent)
        return 0;
    /* As many frames as the socket takes now (lws's own pattern): each write goes out whole
     * or lws keeps the rest, and then the pipe reads as choked until it is out. */
    for (int i = 0; c->head && i < WRITES_PER_CALLBACK; i++) {
        struct tws_frame *f = c->head;
        if (i > 0 && lws_send_pipe_choked(c->wsi))
            break;
        if (lws_write(c->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT) < 0)
            return -1;
        c->head = f->next;
        if (!c->head)
            c->tail = NULL;
        c->queued -= f->len;
        if (f->events)
            tws_server__count(srv, srv->m_sent, (double)f->events);
        free(f);
    }
    if (c->head)
        lws_callback_on_writable(c->wsi);
    return 0;
}

void tws_client__detach(struct tws_client *c)
{
    if (closing(c) && !c->close_pending)
        return;
    tws_client__seal(c);
    while (c->head && !lws_send_pipe_choked(c->wsi)) {
        struct tws_frame *f = c->head;
        c->head = f->next;
        (void)lws_write(c->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
        free(f);
    }
    if (!c->head)
        c->tail = NULL;
    if (!lws_send_pipe_choked(c->wsi))
        write_close(c, c->close_pending ? c->close_code : 1001,
                    c->close_pending ? c->close_reason : "telemetry listener closed");
    c->close_pending = 0;
    c->close_sent = 1;
}

int tws_client__callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct tws_client *c = user;
    struct lws_vhost *vh = lws_get_vhost(wsi);
    struct tws_server *srv = vh ? lws_get_vhost_user(vh) : NULL;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        http_refuse(wsi, 426, "Upgrade Required", "this endpoint speaks WebSocket only");
        return -1;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (!srv || srv->dead || srv->stopped || srv->nclients >= srv->cfg.max_clients) {
            http_refuse(wsi, 503, "Service Unavailable", "too many telemetry clients");
            return -1;
        }
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        if (!srv || srv->dead || !c)
            return -1;
        on_established(srv, c, wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return c && c->srv ? on_receive(c, in, len) : -1;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c && c->srv ? on_writeable(c) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return c ? c->close_sent : 0; /* non-zero: it answers ours, no echo */
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (c && c->srv)
            on_closed(c);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}
