/* Hostile clients against a real arqonbusd over real sockets: slowloris requests, hundreds of
 * requests never finished (CONNECT among them), header floods, a flood of invalid envelopes, a
 * slow consumer and a connection flood past max_connections. Each attack is answered as
 * docs/protocol.md and docs/security.md say, the server's memory stays bounded (VmRSS before
 * and after, printed; asserted outside sanitizer builds, whose allocator keeps freed memory),
 * its descriptors go back to where they were, and two well-behaved clients keep getting their
 * messages and command replies during and after every attack. */
#define _GNU_SOURCE /* asprintf */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus_client.h"
#include "http_client.h"
#include "prom_parse.h"
#include "scrape.h"

/* The listener's handshake_timeout here: a request not complete by then is closed. */
#define HANDSHAKE_TIMEOUT_MS 2000

struct ports {
    int ws, http;
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* --- the server ---------------------------------------------------------------------------- */

/* The bus on 127.0.0.1: `ws` with `ws_extra` lines (indented 6), the built-in commands, and
 * the HTTP API for /metrics. */
static struct ports start(struct fixture *f, const char *ws_extra)
{
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\n", ARQ_BUILD_PLUGIN_DIR);
    h_write(f->dir, "10-bus.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n      handshake_timeout: %dms\n%s"
            "  builtin:\n    module: commands-builtin\n"
            "  http:\n    module: transport-http\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n",
            h_port(&f->p, "ws"), HANDSHAKE_TIMEOUT_MS, ws_extra ? ws_extra : "",
            h_port(&f->p, "http"));
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    struct ports p = {h_component_port(&f->p, "ws"), h_component_port(&f->p, "http")};
    assert_int_equal(h_wait_ready(&f->p), 0); /* started: its descriptors are all there */
    return p;
}

/* Server descriptors back to `want` (the server closes a socket before its peer can see the
 * end of it, but give lws a moment to release what it keeps beside). */
static void expect_fds(const struct fixture *f, int want)
{
    int n = h_fd_count(f->p.pid);
    for (int waited = 0; n != want && waited < h_ms(2000); waited += 20) {
        sleep_ms(20);
        n = h_fd_count(f->p.pid);
    }
    fprintf(stderr, "server fds: %d (before the attack: %d)\n", n, want);
    assert_int_equal(n, want);
}

/* The server's RSS grew by less than bound_kib since `before`. Printed always; asserted where
 * the allocator is the real one (ASan keeps freed memory in quarantine). */
static void expect_rss(const struct fixture *f, long before, long bound_kib, const char *attack)
{
    long after = h_rss_kib(f->p.pid);
    fprintf(stderr, "%s: server VmRSS %ld KiB -> %ld KiB (%+ld KiB, bound %ld)\n", attack, before,
            after, after - before, bound_kib);
    const char *sanitized = getenv("ARQ_TEST_SANITIZED");
    if (!sanitized || !*sanitized)
        assert_true(after - before < bound_kib);
}

/* --- well-behaved clients ------------------------------------------------------------------ */

/* A publisher and a subscriber in hostile/calm, there before an attack, checked during and
 * after it: each check is one message through (ack and delivery, in order) and one command
 * reply, within the usual timeouts. */
struct calm {
    struct bus_client *pub, *sub;
    int sent;
};

static void calm_open(struct calm *k, int port)
{
    k->pub = bc_connect(port, NULL);
    k->sub = bc_connect(port, NULL);
    k->sent = 0;
    bc_join(k->pub, "hostile", "calm");
    bc_join(k->sub, "hostile", "calm");
}

static void calm_check(struct calm *k)
{
    k->sent++;
    bc_send(k->pub, "{s:s, s:s, s:s, s:{s:i}}", "type", "message", "room", "hostile", "channel",
            "calm", "payload", "n", k->sent);
    json_t *ack = bc_expect(k->pub, "message_response", 5000);
    assert_string_equal(bc_str(ack, "status"), "success");
    json_decref(ack);
    json_t *m = bc_expect(k->sub, "message", 5000);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "payload"), "n")),
                     k->sent);
    json_decref(m);
    json_t *r;
    const json_t *d = bc_command_ok(k->sub, &r, "ping", NULL);
    assert_true(json_is_true(json_object_get(d, "pong")));
    json_decref(r);
}

static void calm_close(struct calm *k)
{
    bc_free(k->pub);
    bc_free(k->sub);
}

/* --- raw attack sockets -------------------------------------------------------------------- */

/* One attacking TCP connection: what the server sent (the first bytes) and when it closed. */
struct atk {
    int fd;
    int done;          /* the server closed it (end of stream or reset) */
    long long done_ms; /* when, on the monotonic clock */
    char head[1024];   /* the first bytes the server sent, NUL-terminated */
    size_t len;
};

static void atk_open(struct atk *a, int port)
{
    memset(a, 0, sizeof *a);
    a->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(a->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(a->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        fail_msg("connect to %d: %s", port, strerror(errno));
    assert_int_equal(fcntl(a->fd, F_SETFL, O_NONBLOCK), 0);
}

/* Read what is there; mark the end of the stream. */
static void atk_read(struct atk *a)
{
    char buf[8192];
    for (;;) {
        ssize_t n = read(a->fd, buf, sizeof buf);
        if (n > 0) {
            size_t keep = sizeof a->head - 1 - a->len;
            if (keep > (size_t)n)
                keep = (size_t)n;
            memcpy(a->head + a->len, buf, keep);
            a->len += keep;
            a->head[a->len] = '\0';
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        a->done = 1; /* 0: end of stream; ECONNRESET and friends: gone as well */
        a->done_ms = now_ms();
        return;
    }
}

/* Send all of `data`, reading the server's answer meanwhile: stops early once the server
 * answered or closed (it owes no one the rest of a request it refused). 0 when all was sent. */
static int atk_send(struct atk *a, const void *data, size_t len)
{
    const char *p = data;
    long long deadline = now_ms() + h_ms(10000);
    while (len && !a->done && a->len == 0) {
        ssize_t n = send(a->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            break;
        struct pollfd pfd = {.fd = a->fd, .events = POLLIN | POLLOUT};
        if (now_ms() > deadline)
            fail_msg("the server read nothing for %d ms", h_ms(10000));
        if (poll(&pfd, 1, 100) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)))
            atk_read(a);
    }
    return len ? -1 : 0;
}

static int atk_send_str(struct atk *a, const char *s)
{
    return atk_send(a, s, strlen(s));
}

/* Wait up to `ms` for the server to close every one of v[0..n): the number still open. */
static size_t atk_pump(struct atk *v, size_t n, int ms)
{
    struct pollfd *pfd = calloc(n, sizeof *pfd);
    size_t *idx = calloc(n, sizeof *idx);
    assert_non_null(pfd);
    assert_non_null(idx);
    long long deadline = now_ms() + ms;
    size_t open;
    for (;;) {
        open = 0;
        for (size_t i = 0; i < n; i++)
            if (!v[i].done) {
                pfd[open] = (struct pollfd){.fd = v[i].fd, .events = POLLIN};
                idx[open++] = i;
            }
        long long left = deadline - now_ms();
        if (open == 0 || left <= 0)
            break;
        if (poll(pfd, open, (int)left) <= 0)
            continue;
        for (size_t k = 0; k < open; k++)
            if (pfd[k].revents)
                atk_read(&v[idx[k]]);
    }
    free(pfd);
    free(idx);
    return open;
}

static void atk_close(struct atk *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].fd >= 0) {
            close(v[i].fd);
            v[i].fd = -1;
        }
}

/* The HTTP status the server answered with, 0 when it answered nothing. */
static int atk_status(const struct atk *a)
{
    int status = 0;
    if (sscanf(a->head, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    return status;
}

/* The JSON body of the server's HTTP answer (asserts there is one). */
static json_t *atk_body(const struct atk *a)
{
    const char *body = strstr(a->head, "\r\n\r\n");
    if (!body)
        fail_msg("no HTTP answer: \"%s\"", a->head);
    json_t *j = json_loads(body + 4, 0, NULL);
    if (!j)
        fail_msg("the body is not JSON: \"%s\"", a->head);
    return j;
}

static const char upgrade_head[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   "Sec-WebSocket-Version: 13\r\n";

/* --- slowloris and requests never finished ------------------------------------------------- */

static void test_slowloris_requests_are_closed_within_the_handshake_timeout(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, NULL);
    struct calm k;
    calm_open(&k, p.ws);
    int fds = h_fd_count(f->p.pid);
    long rss = h_rss_kib(f->p.pid);

    /* 0: an upgrade request sent one byte at a time, never finished; 1: a new header line at a
     * time, forever; 2: half a request line, then silence; 3: all but the final blank line. */
    enum { N = 4 };
    struct atk a[N];
    for (int i = 0; i < N; i++)
        atk_open(&a[i], p.ws);
    long long t0 = now_ms();
    assert_int_equal(atk_send_str(&a[2], "GET / HT"), 0);
    assert_int_equal(atk_send_str(&a[3], upgrade_head), 0);
    size_t trickled = 0;
    int line = 0;
    long long until = t0 + HANDSHAKE_TIMEOUT_MS + h_ms(3000);
    while (atk_pump(a, N, 200) > 0 && now_ms() < until) {
        if (!a[0].done && trickled < sizeof upgrade_head - 3) /* never the final CRLF */
            atk_send(&a[0], upgrade_head + trickled++, 1);
        if (!a[1].done) {
            char hdr[64];
            int n = snprintf(hdr, sizeof hdr, "%sX-Slow-%d: %d\r\n",
                             line ? "" : "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n", line, line);
            line++;
            atk_send(&a[1], hdr, (size_t)n);
        }
        calm_check(&k);
    }
    for (int i = 0; i < N; i++) {
        if (!a[i].done)
            fail_msg("slowloris %d still open after %lld ms", i, now_ms() - t0);
        fprintf(stderr, "slowloris %d answered %d and closed after %lld ms\n", i, atk_status(&a[i]),
                a[i].done_ms - t0);
        assert_true(a[i].done_ms - t0 <= HANDSHAKE_TIMEOUT_MS + h_ms(3000));
        assert_int_equal(atk_status(&a[i]), 408);
    }
    atk_close(a, N);
    calm_check(&k);
    expect_fds(f, fds);
    expect_rss(f, rss, 2048, "slowloris");
    calm_close(&k);
    assert_int_equal(h_stop(f), 0);
}

/* Connect and be served, retrying while refused with 503 for up to `ms`: the client. */
static struct bus_client *connect_within(int port, int ms, int *refusals)
{
    char err[256];
    long long deadline = now_ms() + ms;
    for (;;) {
        struct ws_client *ws = ws_connect("127.0.0.1", port, "/", h_ms(5000), err, sizeof err);
        if (ws) {
            struct bus_client *c = calloc(1, sizeof *c);
            assert_non_null(c);
            c->ws = ws;
            json_decref(bc_expect(c, "message", 5000)); /* the welcome */
            json_t *r;
            bc_command_ok(c, &r, "status", NULL);
            json_decref(r);
            return c;
        }
        if (ws_last_http_status() != 503 || now_ms() > deadline)
            fail_msg("a new client could not connect: %s (HTTP %d)", err, ws_last_http_status());
        (*refusals)++;
        sleep_ms(20);
    }
}

static void test_hundreds_of_unfinished_requests_do_not_exhaust_the_server(void **state)
{
    struct fixture *f = *state;
    if (ws_raise_fd_limit(4096) < 2048)
        fail_msg("this test needs 2,048 descriptors (ulimit -n)");
    struct ports p = start(f, "      max_connections: 100\n");
    struct calm k;
    calm_open(&k, p.ws);
    int fds = h_fd_count(f->p.pid);
    long rss = h_rss_kib(f->p.pid);

    /* Four kinds, in turn: an upgrade without its final blank line; a complete CONNECT
     * request; a CONNECT request never finished; a connection that sends nothing. First 400,
     * then 1,200 more: past the most handshakes the listener reads at once (1024, or
     * max_connections when larger), where newcomers are refused with 503 until the oldest
     * time out. */
    enum { FIRST = 400, N = 1600 };
    static struct atk a[N];
    static const char *const kinds[] = {
        upgrade_head, "CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
        "CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n", ""};
    long long t0 = now_ms();
    for (int i = 0; i < FIRST; i++) {
        atk_open(&a[i], p.ws);
        atk_send_str(&a[i], kinds[i % 4]);
        if (i % 100 == 99)
            calm_check(&k);
    }
    /* While they are held, a new client connects at once and is served. */
    int refusals = 0;
    struct bus_client *late = connect_within(p.ws, 0, &refusals);
    calm_check(&k);
    long held_rss = h_rss_kib(f->p.pid);
    for (int i = FIRST; i < N; i++) {
        atk_open(&a[i], p.ws);
        atk_send_str(&a[i], kinds[i % 4]);
    }
    /* Past the bound a new client waits at most one handshake_timeout. */
    long long t1 = now_ms();
    struct bus_client *later = connect_within(p.ws, HANDSHAKE_TIMEOUT_MS + h_ms(3000), &refusals);
    long long waited = now_ms() - t1;
    calm_check(&k);

    size_t open = atk_pump(a, N, (int)(t1 + HANDSHAKE_TIMEOUT_MS + h_ms(3000) - now_ms()));
    for (int i = 0; open && i < N; i++)
        if (!a[i].done)
            fail_msg("%zu of %d unfinished requests still open after %lld ms; the first is of "
                     "kind %d",
                     open, N, now_ms() - t0, i % 4);
    /* Each is answered before it is closed: 408 when its head did not come in time, an error
     * for a CONNECT, 503 past the bound. */
    int timed_out = 0, over = 0;
    for (int i = 0; i < N; i++) {
        int status = atk_status(&a[i]);
        if (status < 400 || (i % 4 != 1 && status != 408 && status != 503))
            fail_msg("unfinished request %d (kind %d) answered \"%.60s\"", i, i % 4, a[i].head);
        timed_out += status == 408;
        over += status == 503;
    }
    fprintf(stderr,
            "%d unfinished requests answered and closed within %lld ms (%d with 408, %d with "
            "503); server VmRSS with %d held: %ld KiB; a new client waited %lld ms past the "
            "bound (%d refusals)\n",
            N, now_ms() - t0, timed_out, over, FIRST, held_rss, waited, refusals);
    atk_close(a, N);
    calm_check(&k);
    bc_free(late);
    bc_free(later);
    expect_fds(f, fds);
    expect_rss(f, rss, 8192, "unfinished requests");
    calm_close(&k);
    assert_int_equal(h_stop(f), 0);
}

/* --- header floods ------------------------------------------------------------------------- */

static void test_header_floods_are_refused_with_431_and_closed(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, NULL);
    struct calm k;
    calm_open(&k, p.ws);
    int fds = h_fd_count(f->p.pid);
    long rss = h_rss_kib(f->p.pid);

    /* Ten upgrades with 4,000 headers each (80 KB), ten with one header of 64 KiB. */
    enum { N = 20, HEADERS = 4000, HUGE = 64 * 1024 };
    size_t cap = sizeof upgrade_head + HEADERS * 24 + HUGE + 64;
    char *many = malloc(cap), *huge = malloc(cap);
    assert_non_null(many);
    assert_non_null(huge);
    size_t n = (size_t)snprintf(many, cap, "%s", upgrade_head);
    for (int i = 0; i < HEADERS; i++)
        n += (size_t)snprintf(many + n, cap - n, "X-Flood-%d: %d\r\n", i, i);
    snprintf(many + n, cap - n, "\r\n");
    n = (size_t)snprintf(huge, cap, "%sCookie: ", upgrade_head);
    memset(huge + n, 'c', HUGE);
    snprintf(huge + n + HUGE, cap - n - HUGE, "\r\n\r\n");

    struct atk a[N];
    long long t0 = now_ms();
    for (int i = 0; i < N; i++) {
        atk_open(&a[i], p.ws);
        atk_send_str(&a[i], i % 2 ? huge : many);
        if (i % 5 == 4)
            calm_check(&k);
    }
    atk_pump(a, N, h_ms(5000));
    for (int i = 0; i < N; i++) {
        if (!a[i].done)
            fail_msg("flood %d (%s) still open after %lld ms", i,
                     i % 2 ? "one huge header" : "4,000 headers", now_ms() - t0);
        if (atk_status(&a[i]) != 431)
            fail_msg("flood %d (%s): expected a 431, got \"%.80s\"", i,
                     i % 2 ? "one huge header" : "4,000 headers", a[i].head);
        json_t *body = atk_body(&a[i]);
        assert_string_equal(bc_str(body, "error"), "Request Header Fields Too Large");
        json_decref(body);
    }
    atk_close(a, N);
    free(many);
    free(huge);
    calm_check(&k);
    expect_fds(f, fds);
    expect_rss(f, rss, 4096, "header floods");
    calm_close(&k);
    assert_int_equal(h_stop(f), 0);
}

/* --- invalid envelopes --------------------------------------------------------------------- */

/* One kind of invalid envelope: its text (%s is replaced by the frame's id; NULL text: a
 * binary frame), the error code docs/protocol.md gives it, and whether the error carries the
 * id back (a frame parsed far enough to have a string id). */
struct bad {
    const char *text;
    const char *code;
    int echoes_id;
};

/* 40 levels of arrays: bus.max_payload_depth is 32. */
#define OPEN10  "[[[[[[[[[["
#define CLOSE10 "]]]]]]]]]]"
#define DEEP40  OPEN10 OPEN10 OPEN10 OPEN10 CLOSE10 CLOSE10 CLOSE10 CLOSE10

static const struct bad bads[] = {
    {"this is not JSON", "INVALID_JSON", 0},
    {"[1,2,3]", "INVALID_JSON", 0},
    {"{\"id\":\"%s\",\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"payload\":2}",
     "INVALID_JSON", 0},
    {"{\"id\":\"%s\",\"type\":\"message\",\"room\":\"r\",\"payload\":\"\\u0000\"}", "INVALID_JSON",
     0},
    {"{\"id\":\"%s\",\"type\":\"message\",\"room\":\"r\",\"payload\":123456789012345678901234}",
     "INVALID_JSON", 0},
    {"{\"id\":\"%s\",\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"foo\":1}",
     "VALIDATION_ERROR", 1},
    {"{\"id\":\"%s-nope\",\"type\":\"message\",\"room\":\"r\",\"payload\":1}", "VALIDATION_ERROR",
     1},
    {"{\"id\":\"%s\",\"type\":\"shout\",\"room\":\"r\",\"payload\":1}", "VALIDATION_ERROR", 1},
    {"{\"id\":\"%s\",\"type\":\"message\",\"version\":\"2.0\",\"room\":\"r\",\"payload\":1}",
     "VALIDATION_ERROR", 1},
    {"{\"id\":\"%s\",\"type\":\"message\",\"room\":\"r\"}", "VALIDATION_ERROR", 1},
    {"{\"id\":\"%s\",\"type\":\"message\",\"room\":\"no spaces\",\"payload\":1}",
     "VALIDATION_ERROR", 1},
    {"{\"id\":\"%s\",\"type\":\"message\",\"channel\":\"c\",\"payload\":1}", "VALIDATION_ERROR", 1},
    {"{\"id\":\"%s\",\"type\":\"message\",\"payload\":1}", "VALIDATION_ERROR", 1},
    {"{\"id\":\"%s\",\"type\":\"message\",\"room\":\"r\",\"payload\":" DEEP40 "}",
     "VALIDATION_ERROR", 1},
    {"{\"id\":\"%s\",\"type\":\"message\",\"room\":\"nowhere\",\"payload\":1}", "ROOM_NOT_FOUND",
     1},
    {"{\"id\":\"%s\",\"type\":\"message\",\"room\":\"hostile\",\"channel\":\"calm\",\"payload\":1}",
     "AUTHORIZATION_ERROR", 1},
    {"{\"id\":\"%s\",\"type\":\"message\",\"to_client\":\"arq_client_"
     "00000000000000000000000000000000\",\"payload\":1}",
     "NOT_FOUND", 1},
    {"{\"id\":\"%s\",\"type\":\"command\",\"command\":\"no_such_command\"}", "UNKNOWN_COMMAND", 1},
    {NULL, "UNSUPPORTED_FRAME", 0},
};

static void
test_a_flood_of_invalid_envelopes_gets_every_error_and_the_connection_stays(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, NULL);
    struct calm k;
    calm_open(&k, p.ws);
    long rss = h_rss_kib(f->p.pid);
    double rejected = h_metric(p.http, "arqonbus_messages_rejected_total");

    /* Sent back to back without reading, then every reply read: one error each, in order. */
    enum { N = 3800, KINDS = sizeof bads / sizeof bads[0] };
    struct bus_client *x = bc_connect(p.ws, NULL);
    for (int i = 0; i < N; i++) {
        const struct bad *b = &bads[i % KINDS];
        if (!b->text) {
            assert_int_equal(ws_send_frame(x->ws, WS_OP_BINARY, 1, "\x00\xff", 2), 0);
            continue;
        }
        char id[64], *text;
        snprintf(id, sizeof id, "arq_1700000000000_%d_abcdef", i);
        int len = asprintf(&text, b->text, id);
        assert_true(len > 0);
        assert_int_equal(ws_send_text(x->ws, text, (size_t)len), 0);
        free(text);
        if (i % 1000 == 999)
            calm_check(&k);
    }
    for (int i = 0; i < N; i++) {
        const struct bad *b = &bads[i % KINDS];
        json_t *e = bc_recv(x, 5000);
        if (!e)
            fail_msg("no reply to invalid envelope %d (%s): %s", i, b->code, ws_error(x->ws));
        if (strcmp(bc_str(e, "type"), "error") != 0 || strcmp(bc_str(e, "error_code"), b->code)) {
            char *dump = json_dumps(e, JSON_COMPACT);
            fail_msg("envelope %d: expected %s, got %s", i, b->code, dump);
        }
        assert_true(strlen(bc_str(e, "error")) > 0);
        if (b->echoes_id) {
            char id[64];
            snprintf(id, sizeof id, "arq_1700000000000_%d_abcdef%s", i,
                     strstr(b->text, "%s-nope") ? "-nope" : "");
            assert_string_equal(bc_str(e, "request_id"), id);
        }
        json_decref(e);
    }
    /* The same connection still works. */
    json_t *r;
    bc_command_ok(x, &r, "ping", NULL);
    json_decref(r);
    bc_join(x, "hostile", "calm");
    calm_check(&k);
    json_decref(bc_expect(x, "message", 5000));
    fprintf(stderr, "%d invalid envelopes, %d kinds: every one answered with its error\n", N,
            (int)KINDS);
    double moved = h_metric(p.http, "arqonbus_messages_rejected_total") - rejected;
    fprintf(stderr, "arqonbus_messages_rejected_total moved by %.0f\n", moved);
    assert_true(moved > 0);
    bc_free(x);
    expect_rss(f, rss, 4096, "invalid envelopes");
    calm_close(&k);
    assert_int_equal(h_stop(f), 0);
}

/* --- a slow consumer ----------------------------------------------------------------------- */

static int payload_n(const json_t *m)
{
    return (int)json_integer_value(json_object_get(json_object_get(m, "payload"), "n"));
}

/* Read what the slow consumer was sent, to the end: its close code. */
static int read_to_close(struct bus_client *c)
{
    int op;
    while ((op = ws_recv(c->ws, NULL, NULL, h_ms(5000))) == WS_OP_TEXT)
        ;
    if (op != WS_OP_CLOSE)
        fail_msg("no close frame: %s", ws_error(c->ws));
    return ws_close_code(c->ws);
}

static void test_a_slow_consumer_is_closed_with_1013_and_memory_stays_bounded(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, "      max_queued_bytes: 1MiB\n");
    struct calm k;
    calm_open(&k, p.ws);
    long rss = h_rss_kib(f->p.pid);
    double cut = h_metric(p.http, "arqonbus_slow_consumer_disconnects_total");

    /* The slow one reads nothing until the server has given up on it; a fast one reads
     * everything. */
    struct bus_client *pub = bc_connect(p.ws, NULL), *fast = bc_connect(p.ws, NULL);
    struct bus_client *slow = bc_connect(p.ws, NULL);
    bc_join(pub, "hostile", "flood");
    bc_join(fast, "hostile", "flood");
    bc_join(slow, "hostile", "flood");

    /* 40 MiB through the server: forty times the slow one's bound. */
    enum { BLOB = 32 * 1024, TOTAL = 1280 };
    char *blob = malloc(BLOB + 1);
    assert_non_null(blob);
    memset(blob, 'x', BLOB);
    blob[BLOB] = '\0';
    int received = 0, acked = 0, cut_at = 0;
    long peak = rss;
    for (int i = 1; i <= TOTAL; i++) {
        bc_send(pub, "{s:s, s:s, s:s, s:{s:i, s:s}}", "type", "message", "room", "hostile",
                "channel", "flood", "payload", "n", i, "blob", blob);
        char *data;
        size_t len;
        while (ws_poll_message(fast->ws, &data, &len) == WS_OP_TEXT) {
            json_t *m = json_loadb(data, len, 0, NULL);
            assert_int_equal(payload_n(m), ++received);
            json_decref(m);
            free(data);
        }
        while (ws_poll_message(pub->ws, &data, &len) == WS_OP_TEXT) {
            acked += strstr(data, "\"message_response\"") != NULL;
            free(data);
        }
        /* The publisher does not run far ahead of its readers, like a real one. */
        while (i - received > 64) {
            json_t *m = bc_expect(fast, "message", 5000);
            assert_int_equal(payload_n(m), ++received);
            json_decref(m);
        }
        if (!cut_at && i % 8 == 0 &&
            h_metric(p.http, "arqonbus_slow_consumer_disconnects_total") - cut == 1) {
            /* Given up on: what reached its socket, then a close with 1013 (read at once: the
             * server waits WS_CLOSE_FLUSH_S for a silent peer, then drops it). */
            cut_at = i;
            assert_int_equal(read_to_close(slow), 1013);
        }
        if (i % 128 == 0) {
            calm_check(&k);
            long now = h_rss_kib(f->p.pid);
            peak = now > peak ? now : peak;
        }
    }
    while (received < TOTAL) {
        json_t *m = bc_expect(fast, "message", 5000);
        assert_int_equal(payload_n(m), ++received);
        json_decref(m);
    }
    while (acked < TOTAL) {
        json_t *m = bc_expect(pub, "message_response", 5000);
        assert_string_equal(bc_str(m, "status"), "success");
        json_decref(m);
        acked++;
    }
    if (!cut_at)
        fail_msg("the slow consumer was never cut");
    assert_int_equal(h_metric(p.http, "arqonbus_slow_consumer_disconnects_total") - cut, 1);
    calm_check(&k);
    fprintf(stderr,
            "slow consumer: cut with 1013 after %d of %d messages of %d KiB (%d KiB); all %d "
            "delivered to the fast reader; server VmRSS peak %+ld KiB\n",
            cut_at, TOTAL, BLOB / 1024, cut_at * (BLOB / 1024), TOTAL, peak - rss);
    const char *sanitized = getenv("ARQ_TEST_SANITIZED");
    if (!sanitized || !*sanitized)
        assert_true(peak - rss < 16 * 1024);
    expect_rss(f, rss, 16 * 1024, "slow consumer");
    free(blob);
    bc_free(pub);
    bc_free(fast);
    bc_free(slow);
    calm_close(&k);
    assert_int_equal(h_stop(f), 0);
}

/* Whether process `pid` still has a descriptor for its side of the loopback connection
 * between server_port and client_port (/proc/net/tcp gives the socket's inode; a socket the
 * process closed has none, even while the kernel still tries to send what it holds). */
static int holds_connection(pid_t pid, int server_port, int client_port)
{
    FILE *fp = fopen("/proc/net/tcp", "r");
    char line[512];
    unsigned long inode = 0;
    if (!fp)
        return -1;
    while (fgets(line, sizeof line, fp)) {
        unsigned lport, rport;
        unsigned long ino;
        if (sscanf(line, " %*d: %*8s:%X %*8s:%X %*s %*s %*s %*s %*s %*s %lu", &lport, &rport,
                   &ino) == 3 &&
            (int)lport == server_port && (int)rport == client_port)
            inode = ino;
    }
    fclose(fp);
    if (!inode)
        return 0;
    char want[64], dir[64];
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    int held = 0;
    struct dirent *de;
    while (d && !held && (de = readdir(d))) {
        char path[340], target[64];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            held = !strcmp(target, want);
        }
    }
    if (d)
        closedir(d);
    return held;
}

/* A consumer that never reads at all: once cut, the server lets go of its connection (the
 * descriptor, and the megabytes the kernel buffers for it) instead of waiting for it to read
 * the close frame. The transport gives a peer 2 s to take what was queued before the close
 * and 5 s to answer the close frame: 12 s is plenty. */
static void test_a_slow_consumer_that_never_reads_is_let_go(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, "      max_queued_bytes: 1MiB\n");
    struct calm k;
    calm_open(&k, p.ws);
    double cut = h_metric(p.http, "arqonbus_slow_consumer_disconnects_total");
    struct bus_client *pub = bc_connect(p.ws, "/?ack=0"), *fast = bc_connect(p.ws, NULL);
    bc_join(pub, "hostile", "flood");
    bc_join(fast, "hostile", "flood");
    struct bus_client *never = bc_connect(p.ws, NULL);
    bc_join(never, "hostile", "flood");
    struct sockaddr_in me;
    socklen_t melen = sizeof me;
    assert_int_equal(getsockname(ws_fd(never->ws), (struct sockaddr *)&me, &melen), 0);
    int never_port = ntohs(me.sin_port);
    assert_int_equal(holds_connection(f->p.pid, p.ws, never_port), 1);

    enum { BLOB = 32 * 1024, MAX = 2000 };
    char *blob = malloc(BLOB + 1);
    assert_non_null(blob);
    memset(blob, 'x', BLOB);
    blob[BLOB] = '\0';
    int sent = 0, received = 0;
    while (sent < MAX && !(sent % 8 == 0 && sent &&
                           h_metric(p.http, "arqonbus_slow_consumer_disconnects_total") > cut)) {
        bc_send(pub, "{s:s, s:s, s:s, s:{s:i, s:s}}", "type", "message", "room", "hostile",
                "channel", "flood", "payload", "n", ++sent, "blob", blob);
        while (sent - received > 32) {
            json_t *m = bc_expect(fast, "message", 5000);
            assert_int_equal(payload_n(m), ++received);
            json_decref(m);
        }
    }
    if (sent == MAX)
        fail_msg("the consumer that never reads was not cut after %d messages", MAX);
    while (received < sent) {
        json_t *m = bc_expect(fast, "message", 5000);
        assert_int_equal(payload_n(m), ++received);
        json_decref(m);
    }
    long long t0 = now_ms();
    while (holds_connection(f->p.pid, p.ws, never_port)) {
        if (now_ms() - t0 > h_ms(12000))
            fail_msg("the server still holds the connection of a consumer it cut %lld ms ago",
                     now_ms() - t0);
        calm_check(&k);
        sleep_ms(100);
    }
    fprintf(stderr,
            "never-reading consumer: cut after %d messages of %d KiB, its connection let go "
            "%lld ms after the cut was seen\n",
            sent, BLOB / 1024, now_ms() - t0);
    calm_check(&k);
    free(blob);
    bc_free(never);
    bc_free(pub);
    bc_free(fast);
    calm_close(&k);
    assert_int_equal(h_stop(f), 0);
}

/* --- a connection flood -------------------------------------------------------------------- */

static void test_a_connection_flood_past_max_connections_gets_503_and_is_counted(void **state)
{
    struct fixture *f = *state;
    if (ws_raise_fd_limit(1024) < 512)
        fail_msg("this test needs 512 descriptors (ulimit -n)");
    enum { MAX = 40, FLOOD = 300 };
    char cfg[64];
    snprintf(cfg, sizeof cfg, "      max_connections: %d\n", MAX);
    struct ports p = start(f, cfg);
    struct calm k;
    calm_open(&k, p.ws);
    int fds = h_fd_count(f->p.pid);
    long rss = h_rss_kib(f->p.pid);

    /* The listener fills up with clients that stay... */
    struct bus_client *held[MAX - 2];
    for (int i = 0; i < MAX - 2; i++)
        held[i] = bc_connect(p.ws, NULL);
    double refused = h_metric(p.http, "arqonbus_ws_refused_total");

    /* ...and FLOOD more upgrades at once are each answered 503 with a JSON body, and closed. */
    static struct atk a[FLOOD];
    for (int i = 0; i < FLOOD; i++) {
        atk_open(&a[i], p.ws);
        atk_send_str(&a[i], upgrade_head);
        atk_send_str(&a[i], "\r\n");
        if (i % 100 == 99)
            calm_check(&k);
    }
    long long t0 = now_ms();
    size_t open = atk_pump(a, FLOOD, h_ms(5000));
    if (open)
        fail_msg("%zu of %d refused upgrades still open after %lld ms", open, FLOOD, now_ms() - t0);
    for (int i = 0; i < FLOOD; i++) {
        if (atk_status(&a[i]) != 503)
            fail_msg("upgrade %d: expected a 503, got \"%.80s\"", i, a[i].head);
        json_t *body = atk_body(&a[i]);
        assert_string_equal(bc_str(body, "error"), "Service Unavailable");
        json_decref(body);
    }
    atk_close(a, FLOOD);
    assert_int_equal(h_metric(p.http, "arqonbus_ws_refused_total") - refused, FLOOD);
    calm_check(&k);

    /* Once the holders go, as many new clients connect (each place is given back once the
     * server has seen its client leave), and the limit still holds. */
    for (int i = 0; i < MAX - 2; i++) {
        ws_close(held[i]->ws, 1000, NULL);
        bc_free(held[i]);
    }
    for (int i = 0; i < MAX - 2; i++) {
        char err[256];
        struct bus_client *c = NULL;
        for (int waited = 0; !c && waited < h_ms(5000); waited += 20) {
            c = calloc(1, sizeof *c);
            assert_non_null(c);
            c->ws = ws_connect("127.0.0.1", p.ws, "/", h_ms(5000), err, sizeof err);
            if (!c->ws) {
                assert_int_equal(ws_last_http_status(), 503);
                free(c);
                c = NULL;
                sleep_ms(20);
            }
        }
        if (!c)
            fail_msg("client %d of %d still refused once the holders left", i + 1, MAX - 2);
        json_decref(bc_expect(c, "message", 5000)); /* the welcome */
        held[i] = c;
    }
    struct atk extra;
    atk_open(&extra, p.ws);
    atk_send_str(&extra, upgrade_head);
    atk_send_str(&extra, "\r\n");
    atk_pump(&extra, 1, h_ms(5000));
    assert_int_equal(atk_status(&extra), 503);
    atk_close(&extra, 1);
    calm_check(&k);
    for (int i = 0; i < MAX - 2; i++) {
        ws_close(held[i]->ws, 1000, NULL);
        bc_free(held[i]);
    }
    fprintf(stderr,
            "connection flood: %d upgrades past max_connections %d, each answered 503 "
            "within %lld ms\n",
            FLOOD, MAX, now_ms() - t0);
    calm_check(&k);
    expect_fds(f, fds);
    expect_rss(f, rss, 4096, "connection flood");
    calm_close(&k);
    assert_int_equal(h_stop(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_slowloris_requests_are_closed_within_the_handshake_timeout, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_hundreds_of_unfinished_requests_do_not_exhaust_the_server, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_header_floods_are_refused_with_431_and_closed, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_flood_of_invalid_envelopes_gets_every_error_and_the_connection_stays, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_slow_consumer_is_closed_with_1013_and_memory_stays_bounded, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_a_slow_consumer_that_never_reads_is_let_go, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_connection_flood_past_max_connections_gets_503_and_is_counted, h_setup,
            h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
