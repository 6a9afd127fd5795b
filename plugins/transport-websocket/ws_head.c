/* The request head of a plain (not TLS) connection, read here before libwebsockets sees it,
 * then handed over with lws_adopt_socket_vhost_readbuf().
 *
 * Reading it first is what lets the port answer every request within handshake_timeout, and
 * answer it at all:
 *   - a head not complete within handshake_timeout gets 408 (lws cut it without a word);
 *   - a head over WS_HEAD_MAX bytes, or more fields than lws 4.1 keeps, gets 431 (lws dropped
 *     it without a word);
 *   - a request line lws 4.1 would answer itself, as `HTTP/1.0 403` with an HTML page (an
 *     unknown method, a broken %-escape), gets 400 or 405 with our JSON body; any method but
 *     GET gets 405 (a CONNECT was turned into a raw socket and kept forever);
 *   - a header whose name is a proper prefix of one lws knows (`X-Forwarded:`, `X-Real:`,
 *     `X-Auth:`, `Content:`, `A:`) is renamed `~<name>`. lws 4.1's header parser walks its
 *     table of known names while the name comes in, and registers an unknown header only
 *     when the walk has already failed at the ':'; on such a name the walk is still alive at
 *     the ':', so the ':' is lost and the name runs on into the next line, swallowing it (and
 *     the end of the head, which then waits 10 s). `~` starts no known name, so the walk fails
 *     at once; ws_conn.c's header() finds the field under its own name again. A field the
 *     client itself names `~...` is dropped, so it cannot pose as one of those.
 * A TLS connection is decrypted by lws itself: none of this applies to it (docs/security.md). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ws.h"

#define HEAD_FIRST_ALLOC 2048
#define LINGER_MS        1000 /* after an answer: how long what the client still sends is read */
#define NAME_MAX_KNOWN   64   /* longer names are none lws knows, nor a prefix of one */

struct ws_head {
    uv_poll_t poll;
    uv_timer_t timer;
    int fd;
    int handles; /* uv handles still open: freed when 0 */
    int lingering;
    struct ws_server *srv;
    struct ws_head *prev, *next;
    char *buf;
    size_t len, cap;
};

/* --- life cycle of one head ---------------------------------------------------------------- */

static void head_handle_closed(uv_handle_t *h)
{
    struct ws_head *hd = h->data;
    if (--hd->handles > 0)
        return;
    free(hd->buf);
    free(hd);
}

/* Off the server's list, handles closed; the socket too unless it went to lws (fd -1). */
static void head_end(struct ws_head *hd)
{
    struct ws_server *srv = hd->srv;
    if (hd->prev)
        hd->prev->next = hd->next;
    else
        srv->heads = hd->next;
    if (hd->next)
        hd->next->prev = hd->prev;
    srv->nheads--;
    uv_poll_stop(&hd->poll);
    uv_timer_stop(&hd->timer);
    if (hd->fd >= 0)
        close(hd->fd);
    hd->fd = -1;
    uv_close((uv_handle_t *)&hd->poll, head_handle_closed);
    uv_close((uv_handle_t *)&hd->timer, head_handle_closed);
}

static void on_linger_timeout(uv_timer_t *t)
{
    head_end(t->data);
}

/* Answer, then read (and drop) what still comes for a moment before closing: closing a socket
 * with unread input resets it, and the client would lose the answer. */
static void head_refuse(struct ws_head *hd, unsigned status, const char *details)
{
    struct ws_server *srv = hd->srv;
    char code[8];
    snprintf(code, sizeof code, "%u", status);
    ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_DEBUG, "handshake refused", "status", code, "reason",
            details);
    if (ws_http__refuse_fd(srv, hd->fd, status, details) != 0 || shutdown(hd->fd, SHUT_WR) != 0) {
        head_end(hd);
        return;
    }
    hd->lingering = 1;
    free(hd->buf);
    hd->buf = NULL;
    hd->len = hd->cap = 0;
    uv_timer_stop(&hd->timer);
    uv_timer_start(&hd->timer, on_linger_timeout, LINGER_MS, 0);
}

static void on_head_timeout(uv_timer_t *t)
{
    head_refuse(t->data, 408, "the request head did not arrive within handshake_timeout");
}

/* --- what lws 4.1 cannot take ---------------------------------------------------------------- */

/* 1: lws knows `name:` exactly; 2: `name` is a proper prefix of a name (or method) it knows. */
static int lws_knows(const char *name, size_t n)
{
    if (n > NAME_MAX_KNOWN)
        return 0;
    char low[NAME_MAX_KNOWN + 1];
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)name[i]);
    int prefix = 0;
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const char *s = (const char *)lws_token_to_string((enum lws_token_indexes)t);
        /* cppcheck-suppress uninitvar
         * (false positive: strncmp reads at most low[0..n), which is set above) */
        if (!s || strncmp(s, low, n) != 0)
            continue;
        if (s[n] == ':' && s[n + 1] == '\0')
            return 1;
        prefix |= s[n] != '\0';
    }
    return prefix ? 2 : 0;
}

static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The request line: "GET <target> HTTP/1.x". 0, or the status to refuse with (*why says why). */
static unsigned check_request_line(const char *p, size_t n, size_t *nargs, const char **why)
{
    size_t m = 0;
    while (m < n && is_tchar((unsigned char)p[m]))
        m++;
    const char *sp = memchr(p, ' ', n);
    if (m == 0 || !sp || (size_t)(sp - p) != m) {
        *why = "malformed request line";
        return 400;
    }
    const char *target = sp + 1, *end = memchr(target, ' ', n - m - 1);
    if (!end || end == target || (size_t)(p + n - end) < 9 || memcmp(end + 1, "HTTP/", 5) != 0) {
        *why = "malformed request line";
        return 400;
    }
    if (m != 3 || memcmp(p, "GET", 3) != 0) {
        *why = "this endpoint speaks WebSocket only: GET with Upgrade";
        return 405;
    }
    /* lws refuses a broken %-escape itself (as HTTP/1.0 403), and keeps each query argument
     * apart ('&' or ';'). */
    int in_query = 0;
    *nargs = 0;
    for (const char *c = target; c < end; c++) {
        if (*c == '%') {
            if (end - c < 3 || !isxdigit((unsigned char)c[1]) || !isxdigit((unsigned char)c[2]) ||
                (c[1] == '0' && c[2] == '0')) {
                *why = "malformed %-escape in the request target";
                return 400;
            }
        } else if (*c == '?' && !in_query) {
            in_query = 1;
            (*nargs)++;
        } else if (in_query && (*c == '&' || *c == ';')) {
            (*nargs)++;
        }
    }
    return 0;
}

struct line {
    const char *p;
    size_t n;   /* without the line end */
    size_t end; /* offset of the next line */
};

static int next_line(const char *buf, size_t len, size_t at, struct line *l)
{
    const char *nl = memchr(buf + at, '\n', len - at);
    if (!nl)
        return 0;
    l->p = buf + at;
    l->n = (size_t)(nl - l->p);
    if (l->n && l->p[l->n - 1] == '\r')
        l->n--;
    l->end = (size_t)(nl - buf) + 1;
    return 1;
}

/* Check the head (buf[0..head_len)) and write what lws will read into *out (a new buffer when
 * fields were renamed or dropped, else NULL). 0, or the status to refuse with. */
static unsigned head_prepare(const char *buf, size_t len, size_t head_len, char **out,
                             size_t *out_len, const char **why)
{
    struct line l;
    size_t nargs = 0;
    *out = NULL;
    if (!next_line(buf, head_len, 0, &l)) { /* cannot be: the head ends with its empty line */
        *why = "malformed request line";
        return 400;
    }
    unsigned status = check_request_line(l.p, l.n, &nargs, why);
    if (status)
        return status;
    /* What lws will store of it: values, and names of the fields it does not know. */
    size_t store = l.n + nargs + 16, nknown = 0, extra = 0, at = l.end;
    int rewrite = 0;
    while (next_line(buf, head_len, at, &l) && l.n) {
        at = l.end;
        const char *colon = memchr(l.p, ':', l.n);
        if (!colon || colon == l.p || !is_tchar((unsigned char)l.p[0])) {
            *why = "malformed header field";
            return 400;
        }
        for (const char *c = l.p; c < colon; c++)
            if (!is_tchar((unsigned char)*c)) {
                *why = "malformed header field name";
                return 400;
            }
        size_t name = (size_t)(colon - l.p);
        int known = l.p[0] == '~' ? 3 : lws_knows(l.p, name);
        if (known == 1) {
            nknown++;
            store += l.n - name + 1;
        } else {
            store += 8 + l.n + 1;
        }
        rewrite |= known >= 2;
        extra += known == 2;
    }
    if (2 + nargs + nknown >= WSI_TOKEN_COUNT - 2) {
        *why = "too many header fields or query arguments";
        return 431;
    }
    if (store + extra >= WS_LWS_HEADER_DATA - 64) {
        *why = "request head too large";
        return 431;
    }
    /* lws serves the head in one piece from a buffer of WS_PT_BUF (ws_lws.c). */
    if (len + extra > WS_PT_BUF - LWS_PRE) {
        *why = "request head too large";
        return 431;
    }
    if (!rewrite)
        return 0;

    char *w = malloc(len + extra + 1);
    if (!w) {
        *why = "out of memory";
        return 503;
    }
    size_t n = 0;
    at = 0;
    while (at < head_len && next_line(buf, head_len, at, &l)) {
        const char *colon = l.n ? memchr(l.p, ':', l.n) : NULL;
        int known = at == 0 || !colon ? 1
                    : l.p[0] == '~'   ? 3
                                      : lws_knows(l.p, (size_t)(colon - l.p));
        at = l.end;
        if (known == 3)
            continue;
        if (known == 2)
            w[n++] = '~';
        memcpy(w + n, l.p, (size_t)(buf + at - l.p));
        n += (size_t)(buf + at - l.p);
    }
    memcpy(w + n, buf + head_len, len - head_len); /* what came after the head, as it came */
    *out = w;
    *out_len = n + len - head_len;
    return 0;
}

/* --- reading ------------------------------------------------------------------------------- */

/* The end of the head (just past its empty line) in buf[0..len), or 0. */
static size_t head_end_at(const char *buf, size_t len)
{
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i - 1] == '\n')
            return i + 1;
        if (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')
            return i + 1;
    }
    return 0;
}

static void head_complete(struct ws_head *hd, size_t head_len)
{
    struct ws_server *srv = hd->srv;
    const char *why = NULL;
    char *rewritten = NULL;
    size_t n = hd->len;
    unsigned status = head_prepare(hd->buf, hd->len, head_len, &rewritten, &n, &why);
    if (status) {
        head_refuse(hd, status, why);
        return;
    }
    /* The socket goes to lws: our watcher leaves it first (one watcher per fd in libuv). */
    int fd = hd->fd;
    char *buf = hd->buf;
    hd->buf = NULL;
    hd->fd = -1;
    head_end(hd);
    if (!srv->vhost || srv->dead) {
        close(fd);
    } else {
        /* lws copies the bytes and serves the request at once: the upgrade, or its refusal
         * (NULL then, the socket closed). */
        (void)lws_adopt_socket_vhost_readbuf(srv->vhost, fd, rewritten ? rewritten : buf, n);
    }
    free(rewritten);
    free(buf);
}

static void on_head_readable(uv_poll_t *p, int status, int events)
{
    (void)events;
    struct ws_head *hd = p->data;
    if (status < 0) {
        head_end(hd);
        return;
    }
    for (;;) {
        char drop[4096];
        char *dst = drop;
        size_t room = sizeof drop;
        if (!hd->lingering) {
            if (hd->len == hd->cap) {
                size_t cap = hd->cap ? hd->cap * 2 : HEAD_FIRST_ALLOC;
                if (cap > WS_HEAD_MAX + 1)
                    cap = WS_HEAD_MAX + 1;
                char *b = realloc(hd->buf, cap);
                if (!b) {
                    head_refuse(hd, 503, "out of memory");
                    return;
                }
                hd->buf = b;
                hd->cap = cap;
            }
            dst = hd->buf + hd->len;
            room = hd->cap - hd->len;
        }
        ssize_t n = recv(hd->fd, dst, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) { /* the client left (or, lingering, read our answer and closed) */
            head_end(hd);
            return;
        }
        if (hd->lingering)
            continue;
        size_t from = hd->len > 3 ? hd->len - 3 : 0;
        hd->len += (size_t)n;
        size_t end = head_end_at(hd->buf + from, hd->len - from);
        if (end) {
            head_complete(hd, from + end);
            return;
        }
        if (hd->len > WS_HEAD_MAX) {
            char why[64];
            snprintf(why, sizeof why, "request head larger than %d KiB", WS_HEAD_MAX / 1024);
            head_refuse(hd, 431, why);
            return;
        }
    }
}

/* --- the listener's side ------------------------------------------------------------------- */

int ws_head__start(struct ws_server *srv, int fd)
{
    uv_loop_t *loop = srv->host->uv_loop(srv->ctx);
    size_t cap = srv->cfg.max_connections > WS_HEADS_MIN ? srv->cfg.max_connections : WS_HEADS_MIN;
    struct ws_head *hd = NULL;
    if (srv->nheads >= cap) {
        /* Read what is there already so that closing does not reset the connection. */
        char drop[4096];
        while (recv(fd, drop, sizeof drop, MSG_DONTWAIT) > 0)
            ;
        ws_http__refuse_fd(srv, fd, 503, "too many handshakes in progress");
        goto fail;
    }
    hd = calloc(1, sizeof *hd);
    if (!hd || uv_poll_init_socket(loop, &hd->poll, fd) != 0)
        goto fail;
    hd->fd = fd;
    hd->srv = srv;
    hd->poll.data = hd;
    hd->handles = 1;
    uv_timer_init(loop, &hd->timer);
    hd->timer.data = hd;
    hd->handles = 2;
    hd->next = srv->heads;
    if (srv->heads)
        srv->heads->prev = hd;
    srv->heads = hd;
    srv->nheads++;
    uv_timer_start(&hd->timer, on_head_timeout, (uint64_t)srv->cfg.handshake_timeout_s * 1000, 0);
    uv_poll_start(&hd->poll, UV_READABLE, on_head_readable);
    return 0;
fail:
    free(hd);
    close(fd);
    return -1;
}

void ws_head__close_all(struct ws_server *srv)
{
    while (srv->heads)
        head_end(srv->heads);
}
