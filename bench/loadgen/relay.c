/* `arqonbus-bench relay`: the ceiling. A trivial WebSocket relay on one epoll thread: each
 * text or binary frame a client sends goes to every other connection on the same URL path,
 * and all frames queued for a connection during one loop turn leave in one send(). No JSON,
 * no routing table beyond the path, no allocation per delivery.
 *
 * `arqonbus-bench free-port` (relay_main(-1, NULL)) prints a free loopback TCP port. */
#define _GNU_SOURCE /* accept4, memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loadgen.h"

#define MAX_REQUEST  8192
#define MAX_QUEUED   (64u * 1024 * 1024) /* a slower reader is dropped */
#define READ_SIZE    (256 * 1024)
#define CHAN_BUCKETS 4096

struct rchan;

struct rconn {
    int fd, upgraded, want_out, in_dirty;
    struct rchan *chan;
    uint32_t slot; /* index in chan->m */
    char *in;      /* request or partial frame */
    size_t ilen, icap;
    char *out;
    size_t olen, ooff, ocap;
};

struct rchan {
    char *name;
    struct rchan *next;
    struct rconn **m;
    uint32_t n, cap;
};

static struct rchan *chans[CHAN_BUCKETS];
static struct rconn **dirty;
static size_t ndirty, dirty_cap;
static int ep;
static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static struct rchan *chan_get(const char *name)
{
    uint32_t b = hash(name) % CHAN_BUCKETS;
    for (struct rchan *c = chans[b]; c; c = c->next)
        if (strcmp(c->name, name) == 0)
            return c;
    struct rchan *c = calloc(1, sizeof *c);
    if (!c || !(c->name = strdup(name))) {
        free(c);
        return NULL;
    }
    c->next = chans[b];
    chans[b] = c;
    return c;
}

static int chan_add(struct rchan *ch, struct rconn *c)
{
    if (ch->n == ch->cap) {
        uint32_t cap = ch->cap ? ch->cap * 2 : 16;
        struct rconn **m = realloc(ch->m, cap * sizeof *m);
        if (!m)
            return -1;
        ch->m = m;
        ch->cap = cap;
    }
    c->chan = ch;
    c->slot = ch->n;
    ch->m[ch->n++] = c;
    return 0;
}

static void mark_dirty(struct rconn *c);

static void conn_close(struct rconn *c)
{
    if (c->chan) {
        struct rchan *ch = c->chan;
        ch->m[c->slot] = ch->m[--ch->n];
        ch->m[c->slot]->slot = c->slot;
        c->chan = NULL;
    }
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    free(c->in);
    free(c->out);
    c->in = c->out = NULL;
    c->ilen = c->icap = c->olen = c->ooff = c->ocap = 0;
    mark_dirty(c); /* freed after this loop turn: later events of the turn may name it */
}

static int out_reserve(struct rconn *c, size_t more)
{
    if (c->olen + more <= c->ocap)
        return 0;
    if (c->ooff) {
        memmove(c->out, c->out + c->ooff, c->olen - c->ooff);
        c->olen -= c->ooff;
        c->ooff = 0;
    }
    if (c->olen + more > MAX_QUEUED)
        return -1;
    size_t cap = c->ocap ? c->ocap : 4096;
    while (cap < c->olen + more)
        cap *= 2;
    char *o = realloc(c->out, cap);
    if (!o)
        return -1;
    c->out = o;
    c->ocap = cap;
    return 0;
}

static void mark_dirty(struct rconn *c)
{
    if (c->in_dirty)
        return;
    if (ndirty == dirty_cap) {
        size_t cap = dirty_cap ? dirty_cap * 2 : 1024;
        struct rconn **d = realloc(dirty, cap * sizeof *d);
        if (!d)
            return;
        dirty = d;
        dirty_cap = cap;
    }
    c->in_dirty = 1;
    dirty[ndirty++] = c;
}

/* Queue a server frame (unmasked) on c. */
static int queue_frame(struct rconn *c, int op, const char *p, size_t len)
{
    if (c->fd < 0 || out_reserve(c, len + 10) != 0)
        return -1;
    uint8_t *h = (uint8_t *)c->out + c->olen;
    size_t hl = 2;
    h[0] = (uint8_t)(0x80 | op);
    if (len < 126) {
        h[1] = (uint8_t)len;
    } else if (len < 65536) {
        h[1] = 126;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        hl = 10;
    }
    memcpy(h + hl, p, len);
    c->olen += hl + len;
    mark_dirty(c);
    return 0;
}

static void flush(struct rconn *c)
{
    while (c->ooff < c->olen) {
        ssize_t n = send(c->fd, c->out + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->want_out) {
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                    c->want_out = 1;
                }
                return;
            }
            conn_close(c);
            return;
        }
        c->ooff += (size_t)n;
    }
    c->olen = c->ooff = 0;
    if (c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
}

static const char *header(const char *req, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(req, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
            const char *v = p + 3 + nl;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            *len = (size_t)(e - v);
            return v;
        }
    }
    return NULL;
}

static int upgrade(struct rconn *c)
{
    char *end = memmem(c->in, c->ilen, "\r\n\r\n", 4);
    if (!end)
        return c->ilen > MAX_REQUEST - 1 ? -1 : 0;
    end[2] = '\0'; /* headers end with \r\n */
    char path[256];
    size_t klen = 0, plen = 0;
    const char *key = header(c->in, "Sec-WebSocket-Key", &klen);
    const char *proto = header(c->in, "Sec-WebSocket-Protocol", &plen);
    if (sscanf(c->in, "GET %255s ", path) != 1 || !key || klen > 64)
        return -1;
    char buf[128];
    memcpy(buf, key, klen);
    memcpy(buf + klen, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    uint8_t dig[20];
    ws_sha1(buf, klen + 36, dig);
    char accept[32], resp[512];
    ws_base64(dig, 20, accept);
    if (proto) { /* echo the first subprotocol offered */
        const char *comma = memchr(proto, ',', plen);
        if (comma)
            plen = (size_t)(comma - proto);
    }
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%.*s%s\r\n",
                     accept, proto ? "Sec-WebSocket-Protocol: " : "", proto ? (int)plen : 0,
                     proto ? proto : "", proto ? "\r\n" : "");
    size_t used = (size_t)(end + 4 - c->in);
    struct rchan *ch = chan_get(path);
    if (!ch || chan_add(ch, c) != 0 || out_reserve(c, (size_t)n) != 0)
        return -1;
    memcpy(c->out + c->olen, resp, (size_t)n);
    c->olen += (size_t)n;
    mark_dirty(c);
    c->upgraded = 1;
    memmove(c->in, c->in + used, c->ilen - used);
    c->ilen -= used;
    return 1;
}

static void fan_out(struct rconn *from, int op, const char *p, size_t len)
{
    struct rchan *ch = from->chan;
    for (uint32_t i = 0; i < ch->n; i++) {
        struct rconn *to = ch->m[i];
        if (to != from && queue_frame(to, op, p, len) != 0) {
            fprintf(stderr, "arqonbus-bench relay: dropping a slow client\n");
            conn_close(to);
            i--; /* the last member took this slot */
        }
    }
}

/* Parses the frames in c->in; returns -1 when c must close. */
static int frames(struct rconn *c)
{
    size_t pos = 0;
    while (c->ilen - pos >= 2) {
        uint8_t *h = (uint8_t *)c->in + pos;
        size_t hl = 2;
        uint64_t len = h[1] & 0x7f;
        if (len == 126) {
            if (c->ilen - pos < 4)
                break;
            len = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            if (c->ilen - pos < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | h[2 + i];
            hl = 10;
        }
        if (!(h[1] & 0x80) || len > MAX_QUEUED) /* clients must mask */
            return -1;
        if (c->ilen - pos < hl + 4 + len)
            break;
        uint8_t *key = h + hl, *p = h + hl + 4;
        for (uint64_t i = 0; i < len; i++)
            p[i] ^= key[i & 3];
        int op = h[0] & 0x0f;
        if (op == 0x8) {
            queue_frame(c, 0x8, (char *)p, len >= 2 ? 2 : 0);
            flush(c);
            return -1;
        }
        if (op == 0x9)
            queue_frame(c, 0xA, (char *)p, (size_t)len);
        else if (op <= 0x2)
            fan_out(c, op ? op : 0x1, (char *)p, (size_t)len);
        pos += hl + 4 + (size_t)len;
    }
    memmove(c->in, c->in + pos, c->ilen - pos);
    c->ilen -= pos;
    return 0;
}

static void on_readable(struct rconn *c)
{
    if (c->icap - c->ilen < READ_SIZE) {
        size_t cap = c->ilen + READ_SIZE;
        char *in = realloc(c->in, cap);
        if (!in) {
            conn_close(c);
            return;
        }
        c->in = in;
        c->icap = cap;
    }
    ssize_t n = recv(c->fd, c->in + c->ilen, c->icap - c->ilen, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(c);
        return;
    }
    c->ilen += (size_t)n;
    if (!c->upgraded) {
        int rc = upgrade(c);
        if (rc < 0) {
            static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
            if (send(c->fd, bad, sizeof bad - 1, MSG_NOSIGNAL) < 0) {
                /* closing anyway */
            }
            conn_close(c);
            return;
        }
        if (rc == 0)
            return;
    }
    if (frames(c) != 0) {
        conn_close(c);
        return;
    }
    if (c->ilen == 0 && c->icap > 2 * READ_SIZE) { /* give back what a burst took */
        free(c->in);
        c->in = NULL;
        c->icap = 0;
    }
}

static int listen_on(const char *host, int port, int *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 4096) != 0) {
        fprintf(stderr, "arqonbus-bench relay: cannot listen on %s:%d: %s\n", host, port,
                strerror(errno));
        return -1;
    }
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *bound = ntohs(sa.sin_port);
    return fd;
}

int relay_main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, bound = 0;
    if (argc < 0) { /* free-port */
        int fd = listen_on(host, 0, &bound);
        if (fd < 0)
            return 1;
        close(fd);
        printf("%d\n", bound);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: arqonbus-bench relay [--host A] [--port P]\n");
            return 2;
        }
    }
    raise_nofile(1 << 20);
    int lfd = listen_on(host, port, &bound);
    if (lfd < 0)
        return 1;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    printf("msg=listening addr=%s port=%d\n", host, bound);
    fflush(stdout);

    struct epoll_event ev[512];
    while (!stopping) {
        int n = epoll_wait(ep, ev, 512, 1000);
        for (int i = 0; i < n; i++) {
            struct rconn *c = ev[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct rconn *nc = calloc(1, sizeof *nc);
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            if (c->fd < 0)
                continue; /* closed earlier in this batch */
            if (ev[i].events & EPOLLOUT)
                flush(c);
            if (c->fd >= 0 && (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                on_readable(c);
        }
        for (size_t i = 0; i < ndirty; i++) { /* one send() per connection per turn */
            struct rconn *c = dirty[i];
            c->in_dirty = 0;
            if (c->fd < 0)
                free(c);
            else
                flush(c);
        }
        ndirty = 0;
    }
    close(lfd);
    return 0;
}
