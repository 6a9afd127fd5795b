/* RFC 6455 client for tests. See ws_client.h for the contract. */
#include "ws_client.h"
#include "ws_sha1.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#define WS_GUID          "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_RBUF_INITIAL  2048u
#define WS_RBUF_KEEP     (64u * 1024u) /* a read buffer grown past this shrinks when empty */
#define WS_MAX_HEAD      16384u        /* largest HTTP response head accepted */
#define WS_BODY_MAX      8192u
#define WS_CLOSE_WAIT_MS 2000

enum ws_state { WS_OPEN, WS_CLOSED };

struct ws_client {
    int fd;
    enum ws_state state;
    int close_code;
    int sent_close;
    int auto_pong;
    int send_timeout_ms;
    unsigned pings;
    unsigned char *rbuf; /* bytes read and not yet parsed */
    size_t rlen, rcap;
    char *frag; /* a fragmented message being joined; frag_op 0 when none */
    size_t fraglen, fragcap;
    int frag_op;
    int frag_deflated; /* the message being joined had RSV1: inflate it once whole */
    int deflate;       /* permessage-deflate negotiated */
    int deflate_bits;  /* client_max_window_bits the server allows us (9..15) */
    int inflater_ready;
    z_stream inflater; /* one for the connection: the server may keep its context */
    unsigned deflated_in;
    char *head; /* the 101 response head, NUL-terminated */
    char reason[124];
    char err[160];
};

static _Thread_local int ws__tl_status;
static _Thread_local char ws__tl_body[WS_BODY_MAX + 1];

/* --- small helpers ------------------------------------------------------------------------ */

static void ws__fail(struct ws_client *c, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void ws__fail(struct ws_client *c, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    errno = errnum;
}

static long long ws__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline (-1: no deadline, wait forever). */
static int ws__left(long long deadline)
{
    if (deadline < 0)
        return -1;
    long long left = deadline - ws__now_ms();
    return left > 0 ? (int)left : 0;
}

static long long ws__deadline(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : ws__now_ms() + timeout_ms;
}

/* Masks and keys need variety, not secrecy: a per-thread xorshift seeded once. */
static uint64_t ws__random(void)
{
    static _Thread_local uint64_t s;
    if (s == 0) {
        if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s)
            s = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&s;
        if (s == 0)
            s = 0x9e3779b97f4a7c15ULL;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

static int ws__strncasecmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int ca = tolower((unsigned char)a[i]), cb = tolower((unsigned char)b[i]);
        if (ca != cb || ca == 0)
            return ca - cb;
    }
    return 0;
}

int ws_accept_for_key(const char *key, char *out, size_t outsz)
{
    if (outsz < 29)
        return -1;
    size_t klen = strlen(key), glen = sizeof WS_GUID - 1;
    unsigned char digest[20];
    char *cat = malloc(klen + glen);
    if (!cat)
        return -1;
    memcpy(cat, key, klen);
    memcpy(cat + klen, WS_GUID, glen);
    ws_sha1(cat, klen + glen, digest);
    free(cat);
    ws_base64(digest, sizeof digest, out);
    return 0;
}

/* --- frames -------------------------------------------------------------------------------- */

unsigned char *ws_build_frame(int b0, const unsigned char *mask, const void *data, size_t len,
                              size_t *outlen)
{
    size_t hlen = 2 + (len > 65535 ? 8 : len > 125 ? 2 : 0) + (mask ? 4 : 0);
    unsigned char *f = malloc(hlen + len + 1);
    if (!f)
        return NULL;
    size_t o = 0;
    f[o++] = (unsigned char)b0;
    unsigned char mbit = mask ? 0x80 : 0;
    if (len <= 125) {
        f[o++] = mbit | (unsigned char)len;
    } else if (len <= 65535) {
        f[o++] = mbit | 126;
        f[o++] = (unsigned char)(len >> 8);
        f[o++] = (unsigned char)len;
    } else {
        f[o++] = mbit | 127;
        for (int i = 7; i >= 0; i--)
            f[o++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(f + o, mask, 4);
        o += 4;
    }
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        f[o + i] = mask ? p[i] ^ mask[i & 3] : p[i];
    *outlen = o + len;
    return f;
}

static int ws__write_all(struct ws_client *c, const void *bytes, size_t len)
{
    const unsigned char *p = bytes;
    long long deadline = ws__deadline(c->send_timeout_ms);
    if (c->fd < 0) {
        ws__fail(c, EBADF, "send on a closed client");
        return -1;
    }
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
            int r = poll(&pfd, 1, ws__left(deadline));
            if (r == 0) {
                ws__fail(c, ETIMEDOUT, "send timed out after %d ms with %zu bytes unsent",
                         c->send_timeout_ms, len);
                return -1;
            }
            if (r < 0 && errno != EINTR) {
                ws__fail(c, errno, "poll: %s", strerror(errno));
                return -1;
            }
            continue;
        }
        ws__fail(c, n < 0 ? errno : EPIPE, "send: %s", strerror(n < 0 ? errno : EPIPE));
        return -1;
    }
    return 0;
}

int ws_send_raw(struct ws_client *c, const void *bytes, size_t len)
{
    return ws__write_all(c, bytes, len);
}

/* One masked frame whose first byte is b0 (FIN, RSV and opcode as given). */
static int ws__send_b0(struct ws_client *c, int b0, const void *data, size_t len)
{
    unsigned char mask[4];
    uint32_t m;
    do {
        m = (uint32_t)ws__random();
    } while (m == 0); /* an all-zero mask would leave the payload readable on the wire */
    memcpy(mask, &m, 4);
    size_t flen;
    unsigned char *f = ws_build_frame(b0, mask, data, len, &flen);
    if (!f) {
        ws__fail(c, ENOMEM, "out of memory building a %zu-byte frame", len);
        return -1;
    }
    int r = ws__write_all(c, f, flen);
    free(f);
    return r;
}

int ws_send_frame(struct ws_client *c, int opcode, int fin, const void *data, size_t len)
{
    return ws__send_b0(c, (fin ? 0x80 : 0) | (opcode & 0x0F), data, len);
}

/* --- permessage-deflate -------------------------------------------------------------------- */

unsigned char *ws_deflate_message(const void *data, size_t len, int window_bits, size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (window_bits < 9 || window_bits > 15)
        window_bits = 15;
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        return NULL;
    /* The bound covers one deflate() of all the input; the sync flush adds at most a few
     * bytes, and the loop grows the buffer should it not. */
    size_t cap = deflateBound(&z, (uLong)len) + 64, used = 0;
    unsigned char *out = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    while (out) {
        z.next_out = out + used;
        z.avail_out = (uInt)(cap - used);
        int r = deflate(&z, Z_SYNC_FLUSH);
        used = cap - z.avail_out;
        if (r != Z_OK && r != Z_BUF_ERROR)
            break;
        if (z.avail_in == 0 && z.avail_out > 0) {
            deflateEnd(&z);
            /* A sync flush ends with an empty stored block, 00 00 ff ff: the sender drops it. */
            if (used < 4 || memcmp(out + used - 4, "\x00\x00\xff\xff", 4) != 0)
                break;
            *outlen = used - 4;
            return out;
        }
        unsigned char *grown = realloc(out, cap * 2);
        if (!grown)
            break;
        out = grown;
        cap *= 2;
    }
    deflateEnd(&z);
    free(out);
    return NULL;
}

int ws_send_deflated(struct ws_client *c, int opcode, const void *data, size_t len, size_t frag)
{
    size_t n;
    unsigned char *z = ws_deflate_message(data, len, c->deflate ? c->deflate_bits : 15, &n);
    if (!z) {
        ws__fail(c, ENOMEM, "cannot compress a %zu-byte message", len);
        return -1;
    }
    if (frag == 0 || frag > n)
        frag = n ? n : 1;
    size_t off = 0;
    int r = 0;
    do {
        size_t k = n - off < frag ? n - off : frag;
        int fin = off + k == n;
        int b0 = (fin ? 0x80 : 0) | (off == 0 ? 0x40 | (opcode & 0x0F) : WS_OP_CONT);
        r = ws__send_b0(c, b0, z + off, k);
        off += k;
    } while (r == 0 && off < n);
    free(z);
    return r;
}

/* Inflate one whole compressed message (its trailer put back) into a malloc'd, NUL-terminated
 * buffer of at most WS_MAX_MESSAGE bytes. 0, -1 for bad data (EPROTO), -2 out of memory or
 * too large. */
static int ws__inflate(struct ws_client *c, const unsigned char *in, size_t n, char **out,
                       size_t *outlen)
{
    static const unsigned char trailer[4] = {0x00, 0x00, 0xff, 0xff};
    if (!c->inflater_ready) {
        memset(&c->inflater, 0, sizeof c->inflater);
        if (inflateInit2(&c->inflater, -15) != Z_OK)
            return -2;
        c->inflater_ready = 1;
    }
    size_t cap = n * 4 + 64, used = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        return -2;
    for (int part = 0; part < 2; part++) {
        c->inflater.next_in = (Bytef *)(uintptr_t)(part ? trailer : in);
        c->inflater.avail_in = (uInt)(part ? sizeof trailer : n);
        for (;;) {
            if (used == cap) {
                if (cap >= WS_MAX_MESSAGE) {
                    free(buf);
                    return -2;
                }
                char *g = realloc(buf, cap * 2 + 1);
                if (!g) {
                    free(buf);
                    return -2;
                }
                buf = g;
                cap *= 2;
            }
            c->inflater.next_out = (Bytef *)buf + used;
            c->inflater.avail_out = (uInt)(cap - used);
            int r = inflate(&c->inflater, Z_SYNC_FLUSH);
            used = cap - c->inflater.avail_out;
            if (r != Z_OK && r != Z_BUF_ERROR) {
                free(buf);
                return -1;
            }
            if (c->inflater.avail_in == 0 && c->inflater.avail_out > 0)
                break;
        }
    }
    buf[used] = '\0';
    *out = buf;
    *outlen = used;
    return 0;
}

/* Hand a complete message to the caller, inflating it first when it was compressed. */
static int ws__deliver_message(struct ws_client *c, const void *bytes, size_t n, int deflated,
                               char **data, size_t *len)
{
    if (!deflated) {
        if (data) {
            char *m = malloc(n + 1);
            if (!m)
                return -2;
            memcpy(m, bytes, n);
            m[n] = '\0';
            *data = m;
        }
        if (len)
            *len = n;
        return 0;
    }
    char *m;
    size_t mlen;
    int r = ws__inflate(c, bytes, n, &m, &mlen);
    if (r != 0)
        return r;
    c->deflated_in++;
    if (data)
        *data = m;
    else
        free(m);
    if (len)
        *len = mlen;
    return 0;
}

int ws_deflate_on(const struct ws_client *c)
{
    return c->deflate;
}

unsigned ws_deflated_received(const struct ws_client *c)
{
    return c->deflated_in;
}

int ws_send_text(struct ws_client *c, const char *text, size_t len)
{
    return ws_send_frame(c, WS_OP_TEXT, 1, text, len);
}

static int ws__send_close(struct ws_client *c, int code, const char *reason, size_t rlen)
{
    unsigned char p[125];
    size_t n = 0;
    if (code > 0) {
        if (rlen > 123)
            rlen = 123;
        p[0] = (unsigned char)(code >> 8);
        p[1] = (unsigned char)code;
        memcpy(p + 2, reason, rlen);
        n = 2 + rlen;
    }
    c->sent_close = 1;
    return ws_send_frame(c, WS_OP_CLOSE, 1, p, n);
}

/* --- reading ------------------------------------------------------------------------------- */

/* One recv() into the read buffer: >0 bytes read, 0 end of stream, -1 nothing now (EAGAIN),
 * -2 error. */
static int ws__fill(struct ws_client *c)
{
    if (c->rcap - c->rlen < 1024) {
        size_t ncap = c->rcap ? c->rcap * 2 : WS_RBUF_INITIAL;
        unsigned char *n = realloc(c->rbuf, ncap);
        if (!n) {
            ws__fail(c, ENOMEM, "out of memory growing the read buffer to %zu", ncap);
            return -2;
        }
        c->rbuf = n;
        c->rcap = ncap;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            return 1;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return -1;
        ws__fail(c, errno, "recv: %s", strerror(errno));
        return -2;
    }
}

static void ws__consume(struct ws_client *c, size_t n)
{
    memmove(c->rbuf, c->rbuf + n, c->rlen - n);
    c->rlen -= n;
    if (c->rlen == 0 && c->rcap > WS_RBUF_KEEP) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
}

/* A protocol violation by the server: say so, close with `code` (best effort), stop. */
static int ws__broken(struct ws_client *c, int code, const char *what)
{
    if (!c->sent_close)
        ws__send_close(c, code, what, strlen(what));
    ws__fail(c, EPROTO, "server broke RFC 6455: %s", what);
    c->state = WS_CLOSED;
    return -1;
}

static int ws__deliver(const void *bytes, size_t n, char **data, size_t *len)
{
    if (data) {
        char *m = malloc(n + 1);
        if (!m)
            return -1;
        memcpy(m, bytes, n);
        m[n] = '\0';
        *data = m;
    }
    if (len)
        *len = n;
    return 0;
}

/* The next message from the read buffer: an opcode, 0 when more bytes are needed, -1 on a
 * protocol error. Pings are answered here and never surface unless auto-pong is off. */
static int ws__next(struct ws_client *c, char **data, size_t *len)
{
    while (c->state == WS_OPEN) {
        const unsigned char *b = c->rbuf;
        if (c->rlen < 2)
            return 0;
        int fin = b[0] & 0x80, rsv = b[0] & 0x70, op = b[0] & 0x0F;
        size_t hlen = 2;
        uint64_t plen = b[1] & 0x7F;
        if (b[1] & 0x80)
            return ws__broken(c, WS_CLOSE_PROTOCOL, "masked frame from server");
        /* RSV1 marks a compressed message (RFC 7692 6.1): on its first frame only. */
        int deflated = rsv == 0x40 && c->deflate;
        if (rsv && !deflated)
            return ws__broken(c, WS_CLOSE_PROTOCOL, "RSV bits set without an extension");
        if (deflated && op != WS_OP_TEXT && op != WS_OP_BINARY)
            return ws__broken(c, WS_CLOSE_PROTOCOL, "RSV1 on a control or continuation frame");
        if (plen == 126) {
            if (c->rlen < 4)
                return 0;
            plen = (uint64_t)b[2] << 8 | b[3];
            hlen = 4;
        } else if (plen == 127) {
            if (c->rlen < 10)
                return 0;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | b[2 + i];
            hlen = 10;
            if (plen >> 63)
                return ws__broken(c, WS_CLOSE_PROTOCOL, "64-bit length with the top bit set");
        }
        if (op >= 0x8 && (!fin || plen > 125))
            return ws__broken(c, WS_CLOSE_PROTOCOL, "fragmented or oversized control frame");
        if (plen + c->fraglen > WS_MAX_MESSAGE)
            return ws__broken(c, WS_CLOSE_TOO_BIG, "message larger than WS_MAX_MESSAGE");
        if (c->rlen - hlen < plen)
            return 0;
        const unsigned char *p = b + hlen;
        size_t n = (size_t)plen, total = hlen + n;

        if (op == WS_OP_PING) {
            c->pings++;
            if (c->auto_pong) {
                int r = ws_send_frame(c, WS_OP_PONG, 1, p, n);
                ws__consume(c, total);
                if (r < 0)
                    return -1;
                continue;
            }
        }
        switch (op) {
        case WS_OP_PING:
        case WS_OP_PONG:
            if (ws__deliver(p, n, data, len) < 0)
                goto oom;
            ws__consume(c, total);
            return op;
        case WS_OP_CLOSE: {
            if (n == 1)
                return ws__broken(c, WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload");
            c->close_code = n >= 2 ? (p[0] << 8 | p[1]) : WS_CLOSE_NO_STATUS;
            size_t rl = n >= 2 ? n - 2 : 0;
            if (rl >= sizeof c->reason)
                rl = sizeof c->reason - 1;
            memcpy(c->reason, p + 2 * (n >= 2), rl);
            c->reason[rl] = '\0';
            if (ws__deliver(c->reason, rl, data, len) < 0)
                goto oom;
            if (!c->sent_close) /* echo it, as RFC 6455 section 5.5.1 asks */
                ws__send_close(c, n >= 2 ? c->close_code : 0, c->reason, rl);
            ws__consume(c, total);
            c->state = WS_CLOSED;
            ws__fail(c, ECONNRESET, "server closed with %d \"%s\"", c->close_code, c->reason);
            return WS_OP_CLOSE;
        }
        case WS_OP_TEXT:
        case WS_OP_BINARY:
            if (c->frag_op)
                return ws__broken(c, WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
            if (fin) {
                int r = ws__deliver_message(c, p, n, deflated, data, len);
                if (r == -1)
                    return ws__broken(c, WS_CLOSE_INVALID_DATA, "bad compressed data");
                if (r < 0)
                    goto oom;
                ws__consume(c, total);
                return op;
            }
            c->frag_op = op;
            c->frag_deflated = deflated;
            break;
        case WS_OP_CONT:
            if (!c->frag_op)
                return ws__broken(c, WS_CLOSE_PROTOCOL,
                                  "continuation frame with nothing to continue");
            break;
        default:
            return ws__broken(c, WS_CLOSE_PROTOCOL, "reserved opcode");
        }

        /* A data fragment: append it; the final one completes the message. */
        if (c->fraglen + n + 1 > c->fragcap) {
            size_t ncap = (c->fraglen + n + 1) * 2;
            char *g = realloc(c->frag, ncap);
            if (!g)
                goto oom;
            c->frag = g;
            c->fragcap = ncap;
        }
        memcpy(c->frag + c->fraglen, p, n);
        c->fraglen += n;
        c->frag[c->fraglen] = '\0';
        ws__consume(c, total);
        if (!fin)
            continue;
        int mop = c->frag_op;
        if (c->frag_deflated) {
            int r = ws__deliver_message(c, c->frag, c->fraglen, 1, data, len);
            free(c->frag);
            if (r == -1) {
                c->frag = NULL;
                return ws__broken(c, WS_CLOSE_INVALID_DATA, "bad compressed data");
            }
            if (r < 0) {
                c->frag = NULL;
                goto oom;
            }
        } else if (data) {
            *data = c->frag;
        } else {
            free(c->frag);
        }
        if (!c->frag_deflated && len)
            *len = c->fraglen;
        c->frag_deflated = 0;
        c->frag = NULL;
        c->fraglen = c->fragcap = 0;
        c->frag_op = 0;
        return mop;
    }
    if (!c->err[0])
        ws__fail(c, ECONNRESET, "connection closed");
    errno = c->close_code == 0 ? EPROTO : ECONNRESET;
    return -1;
oom:
    ws__fail(c, ENOMEM, "out of memory for a message");
    return -1;
}

static int ws__eof(struct ws_client *c)
{
    if (c->close_code == 0)
        c->close_code = WS_CLOSE_ABNORMAL;
    c->state = WS_CLOSED;
    ws__fail(c, ECONNRESET, "connection closed by the server without a close frame");
    return -1;
}

int ws_recv(struct ws_client *c, char **data, size_t *len, int timeout_ms)
{
    long long deadline = ws__deadline(timeout_ms);
    for (;;) {
        int r = ws__next(c, data, len);
        if (r != 0)
            return r;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, ws__left(deadline));
        if (pr == 0) {
            ws__fail(c, ETIMEDOUT, "no message within %d ms", timeout_ms);
            return -1;
        }
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            ws__fail(c, errno, "poll: %s", strerror(errno));
            return -1;
        }
        int f = ws__fill(c);
        if (f == 0)
            return ws__eof(c);
        if (f == -2)
            return -1;
    }
}

int ws_poll_message(struct ws_client *c, char **data, size_t *len)
{
    int r = ws__next(c, data, len);
    if (r != 0)
        return r;
    for (;;) {
        int f = ws__fill(c);
        if (f == -1)
            return 0;
        if (f == -2)
            return -1;
        r = ws__next(c, data, len);
        if (r != 0)
            return r;
        if (f == 0)
            return ws__eof(c);
    }
}

/* --- handshake ----------------------------------------------------------------------------- */

/* Find header `name` in a NUL-terminated response head (status line first); the value
 * without surrounding blanks. */
static const char *ws__find_header(const char *head, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line) {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (!eol)
            eol = line + strlen(line);
        if ((size_t)(eol - line) > nlen && line[nlen] == ':' &&
            ws__strncasecmp(line, name, nlen) == 0) {
            const char *v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *e = eol;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *vlen = (size_t)(e - v);
            return v;
        }
        line = *eol ? eol : NULL;
    }
    return NULL;
}

int ws_response_header(const struct ws_client *c, const char *name, char *out, size_t outsz)
{
    size_t vlen;
    const char *v = c->head ? ws__find_header(c->head, name, &vlen) : NULL;
    if (!v)
        return -1;
    if (out && outsz > 0) {
        size_t n = vlen < outsz - 1 ? vlen : outsz - 1;
        memcpy(out, v, n);
        out[n] = '\0';
    }
    return (int)vlen;
}

static int ws__value_has_token(const char *v, size_t vlen, const char *token)
{
    size_t tlen = strlen(token);
    for (size_t i = 0; i + tlen <= vlen; i++)
        if (ws__strncasecmp(v + i, token, tlen) == 0)
            return 1;
    return 0;
}

static int ws__tcp_connect(struct ws_client *c, const char *host, int port, long long deadline)
{
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        ws__fail(c, EHOSTUNREACH, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            ws__fail(c, errno, "socket: %s", strerror(errno));
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int pr;
            do {
                pr = poll(&pfd, 1, ws__left(deadline));
            } while (pr < 0 && errno == EINTR);
            if (pr == 0) {
                errno = ETIMEDOUT;
            } else {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                errno = soerr;
                r = soerr ? -1 : 0;
            }
        }
        if (r == 0)
            break;
        ws__fail(c, errno, "connect to %s:%d: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    c->fd = fd;
    return fd < 0 ? -1 : 0;
}

/* Read until the response head is complete; returns its length including the blank line. */
static int ws__read_head(struct ws_client *c, long long deadline, size_t *headlen)
{
    for (;;) {
        if (c->rlen >= 4) {
            for (size_t i = 0; i + 4 <= c->rlen; i++)
                if (memcmp(c->rbuf + i, "\r\n\r\n", 4) == 0) {
                    *headlen = i + 4;
                    return 0;
                }
        }
        if (c->rlen > WS_MAX_HEAD) {
            ws__fail(c, EPROTO, "HTTP response head larger than %u bytes", WS_MAX_HEAD);
            return -1;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, ws__left(deadline));
        if (pr == 0) {
            ws__fail(c, ETIMEDOUT, "no complete HTTP response before the timeout (%zu bytes)",
                     c->rlen);
            return -1;
        }
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            ws__fail(c, errno, "poll: %s", strerror(errno));
            return -1;
        }
        int f = ws__fill(c);
        if (f == 0) {
            ws__fail(c, ECONNRESET, "connection closed before the HTTP response was complete");
            return -1;
        }
        if (f == -2)
            return -1;
    }
}

/* A refused upgrade: keep the body (Content-Length bytes, or up to end of stream). */
static void ws__read_refusal_body(struct ws_client *c, size_t headlen, long long deadline)
{
    size_t vlen;
    const char *cl = ws__find_header(c->head, "Content-Length", &vlen);
    size_t want = cl ? (size_t)strtoull(cl, NULL, 10) : WS_BODY_MAX;
    if (want > WS_BODY_MAX)
        want = WS_BODY_MAX;
    while (c->rlen - headlen < want) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, ws__left(deadline));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0 || ws__fill(c) <= 0)
            break;
    }
    size_t n = c->rlen - headlen < want ? c->rlen - headlen : want;
    memcpy(ws__tl_body, c->rbuf + headlen, n);
    ws__tl_body[n] = '\0';
}

static int ws__handshake(struct ws_client *c, const char *host, int port, const char *path,
                         const struct ws_opts *opts, long long deadline)
{
    unsigned char nonce[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = ws__random();
        memcpy(nonce + i, &r, 8);
    }
    char key[25], want[29];
    ws_base64(nonce, sizeof nonce, key);
    ws_accept_for_key(key, want, sizeof want);

    int v6 = strchr(host, ':') != NULL;
    size_t cap = strlen(host) + strlen(path) + 256;
    if (opts && opts->subprotocol)
        cap += strlen(opts->subprotocol) + 32;
    if (opts && opts->deflate)
        cap += 96;
    for (size_t i = 0; opts && opts->headers && opts->headers[i]; i++)
        cap += strlen(opts->headers[i]) + 2;
    char *req = malloc(cap);
    if (!req) {
        ws__fail(c, ENOMEM, "out of memory for the request");
        return -1;
    }
    int n = snprintf(req, cap,
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n",
                     path, v6 ? "[" : "", host, v6 ? "]" : "", port, key);
    if (opts && opts->subprotocol)
        n +=
            snprintf(req + n, cap - (size_t)n, "Sec-WebSocket-Protocol: %s\r\n", opts->subprotocol);
    if (opts && opts->deflate)
        n += snprintf(req + n, cap - (size_t)n,
                      "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
    for (size_t i = 0; opts && opts->headers && opts->headers[i]; i++)
        n += snprintf(req + n, cap - (size_t)n, "%s\r\n", opts->headers[i]);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    int sent = ws__write_all(c, req, (size_t)n);
    free(req);
    if (sent < 0)
        return -1;

    size_t headlen;
    if (ws__read_head(c, deadline, &headlen) < 0)
        return -1;
    c->head = malloc(headlen + 1);
    if (!c->head) {
        ws__fail(c, ENOMEM, "out of memory for the response head");
        return -1;
    }
    memcpy(c->head, c->rbuf, headlen);
    c->head[headlen] = '\0';

    int status = 0;
    if (sscanf(c->head, "HTTP/1.%*1[01] %3d", &status) != 1) {
        ws__fail(c, EPROTO, "not an HTTP response: %.40s", c->head);
        return -1;
    }
    ws__tl_status = status;
    if (status != 101) {
        ws__read_refusal_body(c, headlen, deadline);
        ws__fail(c, ECONNREFUSED, "upgrade refused: HTTP %d %.100s", status, ws__tl_body);
        return -1;
    }
    size_t vlen;
    const char *v = ws__find_header(c->head, "Upgrade", &vlen);
    if (!v || vlen != 9 || ws__strncasecmp(v, "websocket", 9) != 0) {
        ws__fail(c, EPROTO, "101 without \"Upgrade: websocket\"");
        return -1;
    }
    v = ws__find_header(c->head, "Connection", &vlen);
    if (!v || !ws__value_has_token(v, vlen, "upgrade")) {
        ws__fail(c, EPROTO, "101 without \"Connection: Upgrade\"");
        return -1;
    }
    v = ws__find_header(c->head, "Sec-WebSocket-Accept", &vlen);
    if (!v || vlen != 28 || memcmp(v, want, 28) != 0) {
        ws__fail(c, EPROTO, "Sec-WebSocket-Accept is %.*s, expected %s", v ? (int)vlen : 6,
                 v ? v : "absent", want);
        return -1;
    }
    v = ws__find_header(c->head, "Sec-WebSocket-Protocol", &vlen);
    if (v && (!opts || !opts->subprotocol || strlen(opts->subprotocol) != vlen ||
              memcmp(v, opts->subprotocol, vlen) != 0)) {
        ws__fail(c, EPROTO, "server chose subprotocol \"%.*s\", which was not offered", (int)vlen,
                 v);
        return -1;
    }
    v = ws__find_header(c->head, "Sec-WebSocket-Extensions", &vlen);
    if (v) {
        if (!opts || !opts->deflate || !ws__value_has_token(v, vlen, "permessage-deflate")) {
            ws__fail(c, EPROTO, "server chose extension \"%.*s\", which was not offered", (int)vlen,
                     v);
            return -1;
        }
        c->deflate = 1;
        c->deflate_bits = 15;
        for (size_t i = 0; i + 22 < vlen; i++)
            if (ws__strncasecmp(v + i, "client_max_window_bits=", 23) == 0)
                c->deflate_bits = atoi(v + i + 23);
        if (c->deflate_bits < 9) /* zlib cannot compress within 8 bits (it uses 9) */
            c->deflate_bits = 9;
    }
    ws__consume(c, headlen); /* bytes after the head are already frames */
    return 0;
}

struct ws_client *ws_connect_opts(const char *host, int port, const char *path_and_query,
                                  const struct ws_opts *opts, int timeout_ms, char *err,
                                  size_t errsz)
{
    long long deadline = ws__deadline(timeout_ms);
    const char *path = path_and_query && *path_and_query ? path_and_query : "/";
    ws__tl_status = 0;
    ws__tl_body[0] = '\0';
    struct ws_client *c = calloc(1, sizeof *c);
    if (!c) {
        if (err && errsz)
            snprintf(err, errsz, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    c->fd = -1;
    c->auto_pong = 1;
    c->send_timeout_ms = timeout_ms < 0 ? 10000 : timeout_ms;
    if (ws__tcp_connect(c, host, port, deadline) < 0 ||
        ws__handshake(c, host, port, path, opts, deadline) < 0)
        goto fail;
    c->send_timeout_ms = 10000;
    c->err[0] = '\0';
    return c;
fail:
    if (err && errsz)
        snprintf(err, errsz, "ws://%s:%d%s: %s", host, port, path, c->err);
    int saved = errno;
    ws_free(c);
    errno = saved;
    return NULL;
}

struct ws_client *ws_connect(const char *host, int port, const char *path_and_query, int timeout_ms,
                             char *err, size_t errsz)
{
    return ws_connect_opts(host, port, path_and_query, NULL, timeout_ms, err, errsz);
}

int ws_last_http_status(void)
{
    return ws__tl_status;
}

const char *ws_last_http_body(void)
{
    return ws__tl_body;
}

/* --- closing and accessors ----------------------------------------------------------------- */

int ws_close(struct ws_client *c, int code, const char *reason)
{
    if (c->fd < 0)
        return -1;
    int got = 0;
    if (c->state == WS_CLOSED) {
        got = c->close_code != 0 && c->close_code != WS_CLOSE_ABNORMAL;
    } else {
        if (!c->sent_close)
            ws__send_close(c, code, reason ? reason : "", reason ? strlen(reason) : 0);
        long long deadline = ws__deadline(WS_CLOSE_WAIT_MS);
        while (c->state == WS_OPEN) {
            int r = ws_recv(c, NULL, NULL, ws__left(deadline));
            if (r == WS_OP_CLOSE)
                got = 1;
            if (r < 0)
                break;
        }
    }
    shutdown(c->fd, SHUT_RDWR);
    close(c->fd);
    c->fd = -1;
    c->state = WS_CLOSED;
    if (!got && !c->err[0])
        ws__fail(c, ETIMEDOUT, "no close frame from the server");
    return got ? 0 : -1;
}

void ws_free(struct ws_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->rbuf);
    free(c->frag);
    free(c->head);
    if (c->inflater_ready)
        inflateEnd(&c->inflater);
    free(c);
}

int ws_fd(const struct ws_client *c)
{
    return c->fd;
}

int ws_close_code(const struct ws_client *c)
{
    return c->close_code;
}

const char *ws_close_reason(const struct ws_client *c)
{
    return c->reason;
}

const char *ws_error(const struct ws_client *c)
{
    return c->err;
}

unsigned ws_pings_received(const struct ws_client *c)
{
    return c->pings;
}

void ws_set_auto_pong(struct ws_client *c, int on)
{
    c->auto_pong = on;
}

void ws_set_send_timeout(struct ws_client *c, int timeout_ms)
{
    c->send_timeout_ms = timeout_ms;
}

long ws_raise_fd_limit(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if ((rlim_t)want > rl.rlim_cur) {
        rl.rlim_cur =
            rl.rlim_max == RLIM_INFINITY || (rlim_t)want < rl.rlim_max ? (rlim_t)want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}
