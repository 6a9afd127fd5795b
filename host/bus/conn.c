/* Connections as the host sees them, and the frames queued to them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "bus.h"
#include "envelope.h"
#include "instance.h"
#include "log.h"
#include "metrics.h"

/* --- frames -------------------------------------------------------------------------------- */

/* A frame with room for `len` bytes of payload (and a NUL after them) and `extra` bytes after
 * the NUL, one reference. */
static struct frame *frame__alloc(size_t len, size_t extra, int binary)
{
    struct frame *f = malloc(sizeof *f + ARQ_FRAME_HEADROOM + len + 1 + extra);
    if (!f)
        return NULL;
    f->refs = 1;
    f->binary = binary;
    f->msg_id[0] = '\0';
    f->len = len;
    f->data = f->mem + ARQ_FRAME_HEADROOM;
    f->data[len] = '\0';
    return f;
}

struct frame *frame_new(const void *payload, size_t len, int binary)
{
    struct frame *f = frame__alloc(len, 0, binary);
    if (f)
        memcpy(f->data, payload, len);
    return f;
}

struct frame *frame_alloc_text(size_t len, size_t extra)
{
    return frame__alloc(len, extra, 0);
}

struct frame *frame_from_json(const json_t *obj)
{
    /* Most envelopes fit the stack buffer: serialise once and copy, instead of measuring
     * first and serialising again. */
    char buf[4096];
    size_t len = envelope_dumpb(obj, buf, sizeof buf);
    if (len == 0)
        return NULL;
    if (len <= sizeof buf)
        return frame_new(buf, len, 0);
    struct frame *f = frame__alloc(len, 0, 0);
    if (f)
        envelope_dumpb(obj, (char *)f->data, len);
    return f;
}

void frame_unref(struct frame *f)
{
    if (f && --f->refs == 0)
        free(f);
}

/* --- connection life ----------------------------------------------------------------------- */

void conn_ref(struct arq_conn *c)
{
    c->refs++;
}

/* Frames still queued are not delivered: count them under `dropped` (may be NULL). */
static void conn__drop_queue(struct arq_conn *c, arq_series *dropped)
{
    metrics_add(dropped, (double)c->qlen);
    for (size_t i = 0; i < c->qlen; i++)
        frame_unref(c->q[(c->qhead + i) % c->qcap]);
    /* The mark too: a join's recovery may still hold the connection paused, and must find
     * no frames left in front of it (conn_svc_pending, conn_drop_message). */
    c->qhead = c->qlen = c->pause_mark = 0;
    c->queued_bytes = 0;
}

void conn_unref(struct arq_conn *c)
{
    if (--c->refs)
        return;
    conn__drop_queue(c, NULL); /* already emptied when it closed */
    auth_identity_clear(&c->identity);
    free(c->q);
    free(c);
}

static void conn__new_id(char *out, size_t size)
{
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        /* getrandom on Linux only fails this way before the pool is ready; ids must still be
         * unique, so fall back to a counter mixed with the time. */
        static uint64_t counter;
        uint64_t t = uv_hrtime() ^ (++counter << 40);
        memcpy(rnd, &t, 8);
        memcpy(rnd + 8, &counter, 8);
    }
    static const char hex[] = "0123456789abcdef";
    size_t n = (size_t)snprintf(out, size, "arq_client_");
    for (size_t i = 0; i < 16 && n + 2 < size; i++) {
        out[n++] = hex[rnd[i] >> 4];
        out[n++] = hex[rnd[i] & 15];
    }
    out[n] = '\0';
}

/* `ack=0` (or false/no/off) in the query turns acks off for the connection. */
static int conn__query_ack(const char *query)
{
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > 4 && !strncmp(p, "ack=", 4)) {
            const char *v = p + 4;
            size_t vlen = len - 4;
            static const char *const off[] = {"0", "false", "no", "off"};
            for (size_t i = 0; i < 4; i++)
                if (vlen == strlen(off[i]) && !strncmp(v, off[i], vlen))
                    return 0;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 1;
}

arq_conn *conn_svc_open(arq_ctx *ctx, const struct arq_conn_info *info,
                        const struct arq_conn_ops *ops, void *tconn)
{
    struct bus *b = bus_of(ctx);
    /* conn_open takes the ticket whatever happens. */
    arq_ticket *ticket =
        info && info->struct_size >= offsetof(struct arq_conn_info, ticket) + sizeof info->ticket
            ? info->ticket
            : NULL;
    struct arq_conn *c = NULL;
    if (b->stopping || !ops || !ops->want_write || !ops->close || !(c = calloc(1, sizeof *c))) {
        auth_svc_ticket_free(ticket);
        return NULL;
    }
    c->refs = 1; /* the transport's, until conn_closed */
    c->bus = b;
    c->transport = ctx;
    c->ops = ops;
    c->tconn = tconn;
    struct arq_auth_result refusal;
    if (auth_conn_admit(b, c, info, tconn, &refusal) != 0) {
        char reason[124];
        snprintf(reason, sizeof reason, "Unauthorized: %.*s", 100, refusal.reason);
        ops->close(tconn, 1008, reason);
        free(c);
        return NULL;
    }
    c->ack = conn__query_ack(info ? info->query : NULL);
    c->max_queued_bytes =
        info && info->max_queued_bytes ? info->max_queued_bytes : b->settings.max_queued_bytes;
    c->connected_ms = bus_now_ms(b);
    if (info && info->peer_addr)
        snprintf(c->peer, sizeof c->peer, "%s:%d", info->peer_addr, info->peer_port);
    do
        conn__new_id(c->id, sizeof c->id);
    while (hmap_get(&b->conns, c->id));
    if (hmap_put(&b->conns, c->id, c) != 0) {
        auth_conn_closed(b, c);
        auth_identity_clear(&c->identity);
        free(c);
        return NULL;
    }
    instance_ref(ctx);
    c->next = b->all;
    if (b->all)
        b->all->prev = c;
    b->all = c;
    b->nconns++;
    bus_conn_opened(b, c);
    return c;
}

void conn_svc_recv(arq_conn *c, const void *data, size_t len, int binary)
{
    if (c->state != CONN_OPEN)
        return;
    c->receiving = 1;
    bus_receive(c->bus, c, data, len, binary);
    c->receiving = 0;
    if (c->close_code)
        conn_close(c, c->close_code, c->close_reason);
}

size_t conn_svc_pending(arq_conn *c, struct arq_frame_ref *out, size_t max)
{
    c->write_requested = 0;
    size_t ready = c->paused ? c->pause_mark : c->qlen;
    size_t n = ready < max ? ready : max;
    for (size_t i = 0; i < n; i++) {
        struct frame *f = c->q[(c->qhead + i) % c->qcap];
        out[i] = (struct arq_frame_ref){f->data, f->len, ARQ_FRAME_HEADROOM, f->binary};
    }
    return n;
}

void conn_svc_consumed(arq_conn *c, size_t n)
{
    if (n > c->qlen)
        n = c->qlen;
    struct bus *b = c->bus;
    for (size_t i = 0; i < n; i++) {
        struct frame *f = c->q[c->qhead];
        c->queued_bytes -= f->len;
        metrics_add(b->m_bytes_out, (double)f->len);
        frame_unref(f);
        c->qhead = (c->qhead + 1) % c->qcap;
    }
    c->qlen -= n;
    c->pause_mark = c->pause_mark > n ? c->pause_mark - n : 0;
}

static void conn__unlink(struct bus *b, struct arq_conn *c)
{
    hmap_del(&b->conns, c->id);
    if (c->prev)
        c->prev->next = c->next;
    else
        b->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    b->nconns--;
}

void conn_svc_closed(arq_conn *c, int code, const char *reason)
{
    if (c->state == CONN_CLOSED)
        return;
    struct arq_ctx *transport = c->transport;
    struct bus *b = c->bus;
    c->state = CONN_CLOSED;
    conn__unlink(b, c);
    auth_conn_closed(b, c);
    conn__drop_queue(c, b->m_dropped_closed);
    bus_conn_closed(b, c);
    char codebuf[16];
    snprintf(codebuf, sizeof codebuf, "%d", code);
    log_write(ARQ_LOG_DEBUG, "host", "client disconnected", "client_id", c->id, "code", codebuf,
              "reason", reason ? reason : "", (const char *)NULL);
    conn_unref(c);
    instance_unref(transport);
}

const char *conn_svc_client_id(const arq_conn *c)
{
    return c->id;
}

void conn_svc_set_limit(arq_conn *c, size_t max_queued_bytes)
{
    c->max_queued_bytes = max_queued_bytes ? max_queued_bytes : c->bus->settings.max_queued_bytes;
}

/* --- sending ------------------------------------------------------------------------------- */

void conn_close(struct arq_conn *c, int code, const char *reason)
{
    if (c->state != CONN_OPEN)
        return;
    c->state = CONN_CLOSING;
    /* What was queued before the close still goes out before the close frame (the transport
     * bounds that in time; nothing more is queued): the replies a client earned, e.g. the
     * RATE_LIMITED answers before a 1008. A client too slow for its queue (1013) does not
     * get it. What is left when the connection ends is dropped by conn_svc_closed. */
    if (code == 1013)
        conn__drop_queue(c, c->bus->m_dropped_slow);
    c->ops->close(c->tconn, code, reason);
}

void conn_close_after_reply(struct arq_conn *c, int code, const char *reason)
{
    if (!c->receiving) {
        conn_close(c, code, reason);
    } else if (!c->close_code) {
        c->close_code = code;
        c->close_reason = reason;
    }
}

int conn_send(struct arq_conn *c, struct frame *f)
{
    if (c->state != CONN_OPEN)
        return -1;
    if (c->queued_bytes + f->len > c->max_queued_bytes) {
        struct bus *b = c->bus;
        char bytes[24];
        snprintf(bytes, sizeof bytes, "%zu", c->queued_bytes);
        log_write(ARQ_LOG_WARN, "host", "slow client disconnected", "client_id", c->id,
                  "queued_bytes", bytes, (const char *)NULL);
        metrics_add(b->m_slow, 1);
        conn_close(c, 1013, "Client too slow: outbound queue over its limit");
        return -1;
    }
    if (c->qlen == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 8;
        struct frame **q = malloc(cap * sizeof *q);
        if (!q) {
            conn_close(c, 1011, "Out of memory");
            return -1;
        }
        for (size_t i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    size_t at = c->qlen;
    if (c->paused && !f->msg_id[0]) {
        /* The server's own frame overtakes the held routed messages. */
        at = c->pause_mark++;
        for (size_t i = c->qlen; i > at; i--)
            c->q[(c->qhead + i) % c->qcap] = c->q[(c->qhead + i - 1) % c->qcap];
    }
    c->q[(c->qhead + at) % c->qcap] = f;
    c->qlen++;
    f->refs++;
    c->queued_bytes += f->len;
    if (c->paused && f->msg_id[0])
        return 0; /* held: written after conn_resume */
    if (!c->write_requested) {
        c->write_requested = 1;
        c->ops->want_write(c->tconn);
    }
    return 0;
}

int conn_send_json(struct arq_conn *c, const json_t *obj)
{
    struct frame *f = frame_from_json(obj);
    if (!f)
        return -1;
    int rc = conn_send(c, f);
    frame_unref(f);
    return rc;
}

void conn_pause(struct arq_conn *c)
{
    /* Pauses nest (two joins recovering at once): the first one sets the mark, and what the
     * first holds stays held until the last resume. */
    if (c->paused++ == 0)
        c->pause_mark = c->qlen;
}

void conn_resume(struct arq_conn *c)
{
    if (c->paused > 1) {
        c->paused--;
        return;
    }
    c->paused = 0;
    c->pause_mark = 0;
    if (c->state == CONN_OPEN && c->qlen && !c->write_requested) {
        c->write_requested = 1;
        c->ops->want_write(c->tconn);
    }
}

void conn_drop_message(struct arq_conn *c, const char *msg_id)
{
    size_t kept = c->pause_mark;
    for (size_t i = c->pause_mark; i < c->qlen; i++) {
        struct frame *f = c->q[(c->qhead + i) % c->qcap];
        if (!strcmp(f->msg_id, msg_id)) {
            c->queued_bytes -= f->len;
            frame_unref(f);
            continue;
        }
        c->q[(c->qhead + kept++) % c->qcap] = f;
    }
    c->qlen = kept;
}

struct arq_conn *conn_find(struct bus *b, const char *client_id)
{
    return hmap_get(&b->conns, client_id);
}

void conn_drop_transport(struct bus *b, struct arq_ctx *transport)
{
    struct arq_conn *c = b->all;
    while (c) {
        struct arq_conn *next = c->next;
        if (c->transport == transport) {
            log_write(ARQ_LOG_WARN, transport->name,
                      "transport destroyed with a connection it had not closed", "client_id", c->id,
                      (const char *)NULL);
            conn_svc_closed(c, 1001, "transport gone");
        }
        c = next;
    }
}
