/* One worker: an epoll loop over its slice of the connections. Connecting, the HTTP upgrade,
 * RFC 6455 client framing (masked frames out, unmasked frames in, ping/pong/close), and
 * coalesced writes: frames queued during a loop turn go out in one send() per connection at
 * its end. Level-triggered; one read per readiness event into a buffer shared by the worker,
 * so an idle connection holds no buffer at all. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loadgen.h"

#define READ_CHUNK     (256 * 1024)
#define MAX_MESSAGE    (16 * 1024 * 1024)
#define MAX_HTTP_REPLY 16384
#define FRAME_ROOM     14         /* largest client frame header: 2 + 8 length + 4 mask */
#define IDLE_WAKE_NS   10000000ll /* phase changes are noticed within 10 ms */
#define PORTS_PER_ADDR 25000      /* loopback clients beyond this use another 127.0.0.x source */

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t prng_next(uint64_t *s)
{
    uint64_t x = *s; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void watch(struct lg_worker *w, struct lg_conn *c, int op, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(w->ep, op, c->fd, &ev) != 0 && op != EPOLL_CTL_DEL)
        fprintf(stderr, "arqonbus-bench: epoll_ctl: %s\n", strerror(errno));
}

/* --- closing --------------------------------------------------------------------------------- */

static void conn_release(struct lg_conn *c)
{
    free(c->part);
    free(c->wbuf);
    free(c->msg);
    c->part = c->wbuf = c->msg = NULL;
    c->plen = c->pcap = c->wlen = c->wcap = c->woff = c->mlen = c->mcap = 0;
}

/* Closes c for good, counting the reason. A connection that never got ready counts as done. */
void conn_fail(struct lg_worker *w, struct lg_conn *c, uint64_t *counter)
{
    if (c->state == ST_CLOSED || c->state == ST_NEW) {
        c->state = ST_CLOSED;
        return;
    }
    if (counter && w->phase < PH_STOP)
        (*counter)++;
    if (c->state != ST_READY) {
        w->opening--;
        w->done++;
        atomic_fetch_add(&w->run->done, 1);
    }
    if (c->fd >= 0) {
        struct linger lg = {1, 0}; /* reset: no TIME_WAIT left behind on loopback */
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c->fd);
    }
    c->fd = -1;
    c->state = ST_CLOSED;
    conn_release(c);
}

/* --- writing --------------------------------------------------------------------------------- */

static int wbuf_reserve(struct lg_conn *c, size_t more)
{
    size_t need = (size_t)c->wlen + more;
    if (need <= c->wcap)
        return 0;
    if (c->woff) { /* drop what was written already */
        memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
        c->wlen -= c->woff;
        c->woff = 0;
        need = (size_t)c->wlen + more;
        if (need <= c->wcap)
            return 0;
    }
    size_t cap = c->wcap ? c->wcap : 512;
    while (cap < need)
        cap *= 2;
    if (cap > UINT32_MAX)
        return -1;
    char *p = realloc(c->wbuf, cap);
    if (!p)
        return -1;
    c->wbuf = p;
    c->wcap = (uint32_t)cap;
    return 0;
}

static void mark_dirty(struct lg_worker *w, struct lg_conn *c)
{
    if (!c->in_dirty) {
        c->in_dirty = 1;
        w->dirty[w->ndirty++] = c;
    }
}

static void conn_flush(struct lg_worker *w, struct lg_conn *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->want_out) {
                    c->want_out = 1;
                    watch(w, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
                }
                return;
            }
            conn_fail(w, c, &w->st.closed);
            return;
        }
        c->woff += (uint32_t)n;
        w->st.bytes_out += (uint64_t)n;
    }
    c->wlen = c->woff = 0;
    if (c->want_out) {
        c->want_out = 0;
        watch(w, c, EPOLL_CTL_MOD, EPOLLIN);
    }
    if (c->state == ST_READY && !(c->role & (ROLE_PUB | ROLE_CMD))) {
        free(c->wbuf); /* subscribers and idle clients write only now and then */
        c->wbuf = NULL;
        c->wcap = 0;
    }
}

static void flush_dirty(struct lg_worker *w)
{
    for (uint32_t i = 0; i < w->ndirty; i++) {
        struct lg_conn *c = w->dirty[i];
        c->in_dirty = 0;
        if (c->state != ST_CLOSED)
            conn_flush(w, c);
    }
    w->ndirty = 0;
}

char *conn_frame_begin(struct lg_worker *w, struct lg_conn *c, size_t max_payload)
{
    (void)w;
    if (c->state == ST_CLOSED || wbuf_reserve(c, FRAME_ROOM + max_payload) != 0)
        return NULL;
    return c->wbuf + c->wlen + FRAME_ROOM;
}

void conn_frame_commit(struct lg_worker *w, struct lg_conn *c, int opcode, size_t len)
{
    uint8_t *dst = (uint8_t *)c->wbuf + c->wlen;
    size_t hl = 2;
    dst[0] = (uint8_t)(0x80 | opcode);
    if (len < 126) {
        dst[1] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        dst[1] = 0x80 | 126;
        dst[2] = (uint8_t)(len >> 8);
        dst[3] = (uint8_t)len;
        hl = 4;
    } else {
        dst[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            dst[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    uint32_t key = (uint32_t)prng_next(&w->prng);
    memcpy(dst + hl, &key, 4);
    uint8_t *p = dst + hl + 4;
    memmove(p, dst + FRAME_ROOM, len);
    /* XOR with the key repeated: 8 bytes at a time, then the tail. */
    uint64_t k8 = (uint64_t)key << 32 | key;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k8;
        memcpy(p + i, &v, 8);
    }
    const uint8_t *kb = (const uint8_t *)&key;
    for (; i < len; i++)
        p[i] ^= kb[i & 3];
    c->wlen += (uint32_t)(hl + 4 + len);
    w->st.frames_out++;
    mark_dirty(w, c);
}

void conn_send_frame(struct lg_worker *w, struct lg_conn *c, int opcode, const void *payload,
                     size_t len)
{
    char *p = conn_frame_begin(w, c, len);
    if (!p) {
        conn_fail(w, c, &w->st.closed);
        return;
    }
    memcpy(p, payload, len);
    conn_frame_commit(w, c, opcode, len);
}

/* --- connecting --------------------------------------------------------------------------------
 */

int conn_port(const struct lg_run *r, const struct lg_conn *c)
{
    /* ids: 0 is the publisher, 1..subscribers the subscribers; the remote ones come last */
    if (r->o.remote_subscribers > 0 && (c->role & ROLE_SUB) &&
        c->id > (uint32_t)(r->o.subscribers - r->o.remote_subscribers))
        return r->o.remote_port;
    return r->o.port;
}

static void conn_open(struct lg_worker *w, struct lg_conn *c)
{
    const struct lg_run *r = w->run;
    w->opening++;
    c->state = ST_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf(stderr, "arqonbus-bench: socket: %s\n", strerror(errno));
        conn_fail(w, c, &w->st.connect_failed);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)conn_port(r, c))};
    inet_pton(AF_INET, r->o.host, &sa.sin_addr);
    /* One loopback address has ~28k ephemeral ports towards one server port: spread large
     * runs over 127.0.0.2, .3, ... (all of 127/8 is loopback). */
    if (r->total > PORTS_PER_ADDR && (ntohl(sa.sin_addr.s_addr) >> 24) == 127) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000002u + c->id / PORTS_PER_ADDR);
#ifdef IP_BIND_ADDRESS_NO_PORT
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0)
            fprintf(stderr, "arqonbus-bench: bind: %s\n", strerror(errno));
    }
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        conn_fail(w, c, &w->st.connect_failed);
        return;
    }
    watch(w, c, EPOLL_CTL_ADD, EPOLLOUT);
}

static void open_more(struct lg_worker *w)
{
    while (w->opening < (uint32_t)w->run->o.connect_parallel && w->next_open < w->n)
        conn_open(w, &w->conns[w->next_open++]);
}

static void on_connected(struct lg_worker *w, struct lg_conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err) {
        conn_fail(w, c, &w->st.connect_failed);
        return;
    }
    char req[1024];
    int n = proto_upgrade_request(w->run, c, req, sizeof req, &w->prng);
    if (wbuf_reserve(c, (size_t)n) != 0) {
        conn_fail(w, c, &w->st.connect_failed);
        return;
    }
    memcpy(c->wbuf + c->wlen, req, (size_t)n);
    c->wlen += (uint32_t)n;
    c->state = ST_HANDSHAKE;
    watch(w, c, EPOLL_CTL_MOD, EPOLLIN);
    conn_flush(w, c);
}

/* --- reading -----------------------------------------------------------------------------------
 */

static void msg_append(struct lg_worker *w, struct lg_conn *c, const char *p, size_t len)
{
    size_t need = (size_t)c->mlen + len;
    if (need > MAX_MESSAGE) {
        conn_fail(w, c, &w->st.closed);
        return;
    }
    if (need > c->mcap) {
        size_t cap = c->mcap ? c->mcap : 256;
        while (cap < need)
            cap *= 2;
        char *m = realloc(c->msg, cap);
        if (!m) {
            conn_fail(w, c, &w->st.closed);
            return;
        }
        c->msg = m;
        c->mcap = (uint32_t)cap;
    }
    memcpy(c->msg + c->mlen, p, len);
    c->mlen += (uint32_t)len;
}

static void on_frame(struct lg_worker *w, struct lg_conn *c, int op, int fin, const char *p,
                     size_t len)
{
    w->st.frames_in++;
    switch (op) {
    case 0x8: { /* close: answer with the same code, then go */
        uint8_t code[2] = {0x03, 0xe8};
        if (len >= 2)
            memcpy(code, p, 2);
        conn_send_frame(w, c, 0x8, code, 2);
        if (c->state != ST_CLOSED)
            conn_flush(w, c);
        if (w->phase < PH_STOP)
            fprintf(stderr, "arqonbus-bench: client %u closed by the server (%d %.*s)\n", c->id,
                    len >= 2 ? ((uint8_t)p[0] << 8 | (uint8_t)p[1]) : 1005,
                    len > 2 ? (int)(len - 2) : 0, len > 2 ? p + 2 : "");
        conn_fail(w, c, &w->st.closed);
        return;
    }
    case 0x9:
        conn_send_frame(w, c, 0xA, p, len);
        return;
    case 0xA:
        return;
    case 0x0:
    case 0x1:
    case 0x2:
        break;
    default:
        conn_fail(w, c, &w->st.closed);
        return;
    }
    if (w->run->o.proto == PROTO_MQTT) { /* a byte stream: frame boundaries mean nothing */
        proto_on_message(w, c, p, len);
        return;
    }
    if (op != 0 && fin && !c->frag_op) {
        proto_on_message(w, c, p, len);
        return;
    }
    if (op != 0) {
        c->frag_op = (uint8_t)op;
        c->mlen = 0;
    }
    msg_append(w, c, p, len);
    if (fin && c->state != ST_CLOSED) {
        size_t mlen = c->mlen;
        c->frag_op = 0;
        c->mlen = 0;
        proto_on_message(w, c, c->msg, mlen);
    }
}

/* Keeps the unparsed tail of buf (a frame cut by the read) for the next read. */
static void keep_partial(struct lg_worker *w, struct lg_conn *c, const char *p, size_t len)
{
    if (len > c->pcap) {
        size_t cap = len < 512 ? 512 : len;
        char *n = realloc(c->part, cap);
        if (!n) {
            conn_fail(w, c, &w->st.closed);
            return;
        }
        c->part = n;
        c->pcap = (uint32_t)cap;
    }
    memcpy(c->part, p, len);
    c->plen = (uint32_t)len;
}

/* The HTTP answer to the upgrade; returns the bytes it took, 0 while incomplete, -1 when
 * refused. */
static long handshake(struct lg_worker *w, struct lg_conn *c, const char *buf, size_t len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return len > MAX_HTTP_REPLY ? -1 : 0;
    if (len < 12 || memcmp(buf, "HTTP/1.1 101", 12) != 0) {
        if (w->st.refused < 3) {
            const char *eol = memchr(buf, '\r', len);
            fprintf(stderr, "arqonbus-bench: upgrade refused: %.*s\n", (int)(eol ? eol - buf : 0),
                    buf);
        }
        return -1;
    }
    c->state = ST_SETUP;
    proto_on_open(w, c);
    return end + 4 - buf;
}

static void on_readable(struct lg_worker *w, struct lg_conn *c)
{
    size_t have = c->plen;
    if (w->rcap < have + READ_CHUNK) {
        size_t cap = have + READ_CHUNK;
        char *b = realloc(w->rbuf, cap);
        if (!b) {
            conn_fail(w, c, &w->st.closed);
            return;
        }
        w->rbuf = b;
        w->rcap = cap;
    }
    char *buf = w->rbuf;
    if (have)
        memcpy(buf, c->part, have);
    ssize_t n = recv(c->fd, buf + have, w->rcap - have, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (w->phase < PH_STOP && c->state == ST_READY)
            fprintf(stderr, "arqonbus-bench: client %u: connection %s\n", c->id,
                    n == 0 ? "closed by the server" : strerror(errno));
        conn_fail(w, c, c->state == ST_READY ? &w->st.closed : &w->st.setup_failed);
        return;
    }
    w->st.bytes_in += (uint64_t)n;
    w->now = now_ns();
    size_t len = have + (size_t)n, pos = 0;
    if (c->state == ST_HANDSHAKE) {
        long used = handshake(w, c, buf, len);
        if (used < 0) {
            conn_fail(w, c, &w->st.refused);
            return;
        }
        if (used == 0) {
            keep_partial(w, c, buf, len);
            return;
        }
        pos = (size_t)used;
    }
    while (len - pos >= 2 && c->state != ST_CLOSED) {
        const uint8_t *h = (const uint8_t *)buf + pos;
        size_t hl = 2;
        uint64_t plen = h[1] & 0x7f;
        if (plen == 126) {
            if (len - pos < 4)
                break;
            plen = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (plen == 127) {
            if (len - pos < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | h[2 + i];
            hl = 10;
        }
        if (h[1] & 0x80 || plen > MAX_MESSAGE) { /* servers never mask (RFC 6455 5.1) */
            conn_fail(w, c, &w->st.closed);
            return;
        }
        if (len - pos < hl + plen)
            break;
        on_frame(w, c, h[0] & 0x0f, h[0] & 0x80, buf + pos + hl, (size_t)plen);
        pos += hl + (size_t)plen;
    }
    if (c->state == ST_CLOSED)
        return;
    if (pos < len) {
        keep_partial(w, c, buf + pos, len - pos);
    } else {
        c->plen = 0;
        if (c->pcap > 4096) {
            free(c->part);
            c->part = NULL;
            c->pcap = 0;
        }
    }
}

/* --- the loop ------------------------------------------------------------------------------------
 */

static void on_event(struct lg_worker *w, struct lg_conn *c, uint32_t events)
{
    if (c->state == ST_CONNECTING) {
        on_connected(w, c);
        return;
    }
    if (events & EPOLLOUT)
        conn_flush(w, c);
    if (c->state != ST_CLOSED && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        on_readable(w, c);
}

/* Adds this worker's in-window counts (and fan-out deliveries) to the run totals. */
static void publish_totals(struct lg_worker *w)
{
    struct lg_run *r = w->run;
    if (w->fan_local) {
        atomic_fetch_add_explicit(&r->fan_delivered, w->fan_local, memory_order_relaxed);
        w->fan_local = 0;
    }
    if (w->st.recv_marked != w->flushed_marked) {
        atomic_fetch_add(&r->marked_recv, w->st.recv_marked - w->flushed_marked);
        w->flushed_marked = w->st.recv_marked;
    }
    if (w->st.publishes_win != w->flushed_sent) {
        atomic_fetch_add(&r->marked_sent, w->st.publishes_win - w->flushed_sent);
        w->flushed_sent = w->st.publishes_win;
    }
}

static void keepalive(struct lg_worker *w)
{
    int ka = w->run->o.keepalive_s;
    if (w->run->o.proto != PROTO_MQTT || ka <= 0)
        return;
    uint64_t every = (uint64_t)ka * 500000000ull; /* half the keepalive */
    if (w->now - w->last_keepalive < every)
        return;
    w->last_keepalive = w->now;
    for (uint32_t i = 0; i < w->n; i++) {
        struct lg_conn *c = &w->conns[i];
        if (c->state == ST_READY && !(c->role & ROLE_CMD))
            proto_keepalive(w, c);
    }
}

void *worker_main(void *arg)
{
    struct lg_worker *w = arg;
    struct lg_run *r = w->run;
    struct epoll_event ev[512];
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0) {
        fprintf(stderr, "arqonbus-bench: epoll_create1: %s\n", strerror(errno));
        exit(1);
    }
    w->now = w->last_keepalive = now_ns();
    open_more(w);
    int use_pwait2 = 1;
    for (;;) {
        int phase = atomic_load_explicit(&r->phase, memory_order_acquire);
        if (phase == PH_STOP)
            break;
        if (phase != w->phase) {
            int was = w->phase;
            w->phase = phase;
            w->now = now_ns();
            if (was == PH_SETUP)
                traffic_start(w);
        }
        int64_t due = traffic_pump(w);
        flush_dirty(w);
        publish_totals(w);
        int64_t timeout = IDLE_WAKE_NS;
        if (due >= 0 && due < timeout)
            timeout = due;
        int n;
        if (use_pwait2) {
            struct timespec ts = {(time_t)(timeout / 1000000000), (long)(timeout % 1000000000)};
            n = epoll_pwait2(w->ep, ev, (int)(sizeof ev / sizeof *ev), &ts, NULL);
            if (n < 0 && errno == ENOSYS) {
                use_pwait2 = 0;
                continue;
            }
        } else {
            n = epoll_wait(w->ep, ev, (int)(sizeof ev / sizeof *ev),
                           (int)((timeout + 999999) / 1000000));
        }
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "arqonbus-bench: epoll_wait: %s\n", strerror(errno));
            exit(1);
        }
        w->now = now_ns();
        for (int i = 0; i < n; i++)
            on_event(w, ev[i].data.ptr, ev[i].events);
        if (w->next_open < w->n)
            open_more(w);
        keepalive(w);
    }
    flush_dirty(w);
    for (uint32_t i = 0; i < w->n; i++)
        conn_fail(w, &w->conns[i], NULL);
    close(w->ep);
    return NULL;
}
