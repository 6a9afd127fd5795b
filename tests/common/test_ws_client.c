/* ws_client: the test WebSocket client against a tiny RFC 6455 server running in a thread on
 * 127.0.0.1. The server side is written independently of the client's parser (only
 * ws_accept_for_key and ws_build_frame are shared, and both are pinned by their own tests). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "ws_client.h"

#define T_TIMEOUT 5000

/* --- the in-test server ------------------------------------------------------------------- */

struct srv;
typedef void (*srv_script)(struct srv *s);

struct srv {
    int lfd;
    int port;
    pthread_t th;
    srv_script script;
    int go[2]; /* the test writes a byte to let the script go on */
    int *fds;  /* accepted connections, closed by srv_finish */
    size_t nfds, capfds;
    char failure[512];  /* first failed check; assertions stay in the main thread */
    char request[4096]; /* the last upgrade request read */
    const char *extra;  /* extra 101 response header lines, each ending in \r\n */
    const char *arg;    /* script input */
    size_t n;           /* script input */
};

static void srv_fail(struct srv *s, int line, const char *what)
{
    if (!s->failure[0])
        snprintf(s->failure, sizeof s->failure, "server check at line %d: %s", line, what);
}

#define SRV_CHECK(s, cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            srv_fail((s), __LINE__, #cond);                                                        \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static int read_full(int fd, void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = send(fd, p, n, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void *srv_thread(void *arg)
{
    struct srv *s = arg;
    s->script(s);
    return NULL;
}

/* The next connection (blocking, 5 s receive timeout), or -1. */
static int srv_accept(struct srv *s)
{
    struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
    if (poll(&pfd, 1, 10000) != 1)
        return -1;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (s->nfds == s->capfds) {
        s->capfds = s->capfds ? s->capfds * 2 : 4;
        s->fds = realloc(s->fds, s->capfds * sizeof *s->fds);
        if (!s->fds)
            abort();
    }
    s->fds[s->nfds++] = fd;
    return fd;
}

static void srv_wait_go(struct srv *s)
{
    char b;
    if (read(s->go[0], &b, 1) != 1)
        srv_fail(s, __LINE__, "go pipe");
}

static void test_go(struct srv *s)
{
    assert_int_equal(write(s->go[1], "g", 1), 1);
}

static void srv_start(struct srv *s, srv_script script)
{
    s->script = script;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->lfd, 1024), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pipe(s->go), 0);
    assert_int_equal(pthread_create(&s->th, NULL, srv_thread, s), 0);
}

/* Join the server thread, close everything, and fail the test if a server check failed. */
static void srv_finish(struct srv *s)
{
    pthread_join(s->th, NULL);
    for (size_t i = 0; i < s->nfds; i++)
        close(s->fds[i]);
    free(s->fds);
    close(s->lfd);
    close(s->go[0]);
    close(s->go[1]);
    if (s->failure[0])
        fail_msg("%s", s->failure);
}

/* Read the upgrade request into s->request; its length, or -1. */
static int srv_read_request(struct srv *s, int fd)
{
    size_t n = 0;
    while (n < sizeof s->request - 1) {
        ssize_t r = recv(fd, s->request + n, 1, 0);
        if (r <= 0)
            return -1;
        n++;
        s->request[n] = '\0';
        if (n >= 4 && memcmp(s->request + n - 4, "\r\n\r\n", 4) == 0)
            return (int)n;
    }
    return -1;
}

/* The value of request header `name` (exact case) copied into out, or "" when absent. */
static const char *req_header(const char *req, const char *name, char *out, size_t outsz)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\r\n%s: ", name);
    const char *v = strstr(req, pat);
    out[0] = '\0';
    if (!v)
        return out;
    v += strlen(pat);
    const char *e = strstr(v, "\r\n");
    size_t n = (size_t)(e - v) < outsz - 1 ? (size_t)(e - v) : outsz - 1;
    memcpy(out, v, n);
    out[n] = '\0';
    return out;
}

/* Accept a connection and complete the upgrade; the fd, or -1. `accept_override` replaces
 * the correct Sec-WebSocket-Accept when not NULL. */
static int srv_upgrade(struct srv *s, const char *accept_override)
{
    int fd = srv_accept(s);
    if (fd < 0 || srv_read_request(s, fd) < 0)
        return -1;
    char key[64], acc[32], resp[1024];
    req_header(s->request, "Sec-WebSocket-Key", key, sizeof key);
    if (ws_accept_for_key(key, acc, sizeof acc) < 0)
        return -1;
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n",
                     accept_override ? accept_override : acc, s->extra ? s->extra : "");
    return write_full(fd, resp, (size_t)n) == 0 ? fd : -1;
}

struct sframe {
    int b0;
    int masked;
    unsigned char mask[4];
    int len_form; /* 7, 16 or 64 */
    unsigned char *data;
    size_t len;
};

/* Read one client frame and unmask it; 0 or -1. f->data is malloc'd (NUL-terminated). */
static int srv_read_frame(int fd, struct sframe *f)
{
    unsigned char h[2], ext[8];
    memset(f, 0, sizeof *f);
    if (read_full(fd, h, 2) < 0)
        return -1;
    f->b0 = h[0];
    f->masked = h[1] >> 7;
    uint64_t len = h[1] & 0x7F;
    f->len_form = 7;
    if (len == 126) {
        if (read_full(fd, ext, 2) < 0)
            return -1;
        len = (uint64_t)ext[0] << 8 | ext[1];
        f->len_form = 16;
    } else if (len == 127) {
        if (read_full(fd, ext, 8) < 0)
            return -1;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | ext[i];
        f->len_form = 64;
    }
    if (f->masked && read_full(fd, f->mask, 4) < 0)
        return -1;
    f->len = (size_t)len;
    f->data = malloc(f->len + 1);
    if (!f->data || read_full(fd, f->data, f->len) < 0)
        return -1;
    for (size_t i = 0; f->masked && i < f->len; i++)
        f->data[i] ^= f->mask[i & 3];
    f->data[f->len] = '\0';
    return 0;
}

/* Send one unmasked server frame with first byte b0; 0 or -1. */
static int srv_send(int fd, int b0, const void *data, size_t len)
{
    size_t n;
    unsigned char *f = ws_build_frame(b0, NULL, data, len, &n);
    int r = f ? write_full(fd, f, n) : -1;
    free(f);
    return r;
}

static struct ws_client *connect_to(struct srv *s)
{
    char err[256];
    struct ws_client *c = ws_connect("127.0.0.1", s->port, "/", T_TIMEOUT, err, sizeof err);
    if (!c)
        fail_msg("ws_connect: %s", err);
    return c;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- accept key and frame encoding ------------------------------------------------------- */

static void accept_key_matches_the_rfc_6455_sample(void **state)
{
    (void)state;
    char out[29];
    assert_int_equal(ws_accept_for_key("dGhlIHNhbXBsZSBub25jZQ==", out, sizeof out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* Key + GUID of 36, 56, 64 and 136 bytes: one padding block, padding spilling into a second
 * block, a full block then a padding block, several blocks. Expected values from Python's
 * hashlib. */
static void accept_key_is_right_for_every_sha1_padding_case(void **state)
{
    (void)state;
    char out[29], key100[101];
    memset(key100, 'x', 100);
    key100[100] = '\0';
    ws_accept_for_key("", out, sizeof out);
    assert_string_equal(out, "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w=");
    ws_accept_for_key("aaaaaaaaaaaaaaaaaaaa", out, sizeof out);
    assert_string_equal(out, "dUYRM7bOMwDmbriNIPr11x+r3E0=");
    ws_accept_for_key("aaaaaaaaaaaaaaaaaaaaaaaaaaaa", out, sizeof out);
    assert_string_equal(out, "xMWmCBqYJY4uXzUs8PNU1t+Pzro=");
    ws_accept_for_key(key100, out, sizeof out);
    assert_string_equal(out, "DJTE+uYDnPxiT+W6VvIG/iPUxv8=");
}

static void accept_key_refuses_a_buffer_too_small(void **state)
{
    (void)state;
    char out[28];
    assert_int_equal(ws_accept_for_key("dGhlIHNhbXBsZSBub25jZQ==", out, sizeof out), -1);
}

static void build_frame_uses_the_shortest_length_form_and_masks(void **state)
{
    (void)state;
    static unsigned char payload[65536];
    const unsigned char mask[4] = {0x11, 0x22, 0x33, 0x44};
    size_t n;
    unsigned char *f = ws_build_frame(0x81, NULL, "abc", 3, &n);
    assert_int_equal(n, 5);
    assert_memory_equal(f,
                        "\x81\x03"
                        "abc",
                        5);
    free(f);
    f = ws_build_frame(0x82, NULL, payload, 125, &n);
    assert_int_equal(n, 127);
    assert_int_equal(f[1], 125);
    free(f);
    f = ws_build_frame(0x82, NULL, payload, 126, &n);
    assert_int_equal(n, 130);
    assert_memory_equal(f, "\x82\x7e\x00\x7e", 4);
    free(f);
    f = ws_build_frame(0x82, NULL, payload, 65535, &n);
    assert_int_equal(n, 65539);
    assert_memory_equal(f, "\x82\x7e\xff\xff", 4);
    free(f);
    f = ws_build_frame(0x02, NULL, payload, 65536, &n);
    assert_int_equal(n, 65546);
    assert_memory_equal(f, "\x02\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    free(f);
    f = ws_build_frame(0x81, mask, "abcde", 5, &n);
    assert_int_equal(n, 11);
    const unsigned char want[] = {0x81,       0x85,       0x11,       0x22,       0x33,      0x44,
                                  'a' ^ 0x11, 'b' ^ 0x22, 'c' ^ 0x33, 'd' ^ 0x44, 'e' ^ 0x11};
    assert_memory_equal(f, want, sizeof want);
    free(f);
}

/* --- handshake ----------------------------------------------------------------------------- */

static void script_upgrade_then_wait(struct srv *s)
{
    SRV_CHECK(s, srv_upgrade(s, NULL) >= 0);
    srv_wait_go(s);
}

static void connect_sends_an_rfc_6455_upgrade_request(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_upgrade_then_wait);
    char err[256];
    struct ws_client *c =
        ws_connect("127.0.0.1", s.port, "/bus?ack=0&token=t", T_TIMEOUT, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(ws_last_http_status(), 101);
    assert_string_equal(ws_last_http_body(), "");
    assert_true(ws_fd(c) >= 0);
    assert_int_equal(ws_close_code(c), 0);
    test_go(&s);
    srv_finish(&s);

    char v[128], host[64];
    assert_true(strncmp(s.request, "GET /bus?ack=0&token=t HTTP/1.1\r\n", 33) == 0);
    snprintf(host, sizeof host, "127.0.0.1:%d", s.port);
    assert_string_equal(req_header(s.request, "Host", v, sizeof v), host);
    assert_string_equal(req_header(s.request, "Upgrade", v, sizeof v), "websocket");
    assert_string_equal(req_header(s.request, "Connection", v, sizeof v), "Upgrade");
    assert_string_equal(req_header(s.request, "Sec-WebSocket-Version", v, sizeof v), "13");
    req_header(s.request, "Sec-WebSocket-Key", v, sizeof v);
    assert_int_equal(strlen(v), 24); /* base64 of 16 bytes */
    assert_string_equal(v + 22, "==");
    assert_null(strstr(s.request, "Sec-WebSocket-Protocol"));
    ws_free(c);
}

static void script_upgrade_with_protocol(struct srv *s)
{
    s->extra = "Sec-WebSocket-Protocol: arqonbus.v1\r\nX-Node: n1\r\n";
    SRV_CHECK(s, srv_upgrade(s, NULL) >= 0);
    srv_wait_go(s);
}

static void connect_opts_sends_subprotocol_and_extra_headers(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_upgrade_with_protocol);
    const char *headers[] = {"Authorization: Bearer s3cret", "X-Trace: 7", NULL};
    struct ws_opts o = {.subprotocol = "arqonbus.v1", .headers = headers};
    char err[256], v[64];
    struct ws_client *c =
        ws_connect_opts("127.0.0.1", s.port, NULL, &o, T_TIMEOUT, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(ws_response_header(c, "sec-websocket-protocol", v, sizeof v), 11);
    assert_string_equal(v, "arqonbus.v1");
    assert_int_equal(ws_response_header(c, "X-Node", NULL, 0), 2);
    assert_int_equal(ws_response_header(c, "X-Absent", v, sizeof v), -1);
    test_go(&s);
    srv_finish(&s);
    assert_true(strncmp(s.request, "GET / HTTP/1.1\r\n", 16) == 0);
    assert_string_equal(req_header(s.request, "Sec-WebSocket-Protocol", v, sizeof v),
                        "arqonbus.v1");
    assert_string_equal(req_header(s.request, "Authorization", v, sizeof v), "Bearer s3cret");
    assert_string_equal(req_header(s.request, "X-Trace", v, sizeof v), "7");
    ws_free(c);
}

/* --- permessage-deflate ------------------------------------------------------------------ */

/* Raw inflate of one message (the 00 00 ff ff trailer put back), written here with zlib on its
 * own; the string is malloc'd. */
static char *srv_inflate(const unsigned char *z, size_t n, size_t *outlen)
{
    z_stream st;
    memset(&st, 0, sizeof st);
    if (inflateInit2(&st, -15) != Z_OK)
        return NULL;
    unsigned char *in = malloc(n + 4);
    char *out = malloc(1 << 20);
    if (!in || !out)
        abort();
    memcpy(in, z, n);
    memcpy(in + n, "\x00\x00\xff\xff", 4);
    st.next_in = in;
    st.avail_in = (uInt)(n + 4);
    st.next_out = (Bytef *)out;
    st.avail_out = (1 << 20) - 1;
    int r = inflate(&st, Z_SYNC_FLUSH);
    *outlen = (1 << 20) - 1 - st.avail_out;
    out[*outlen] = '\0';
    inflateEnd(&st);
    free(in);
    if (r != Z_OK && r != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

/* Accept permessage-deflate, read one compressed message in three frames (RSV1 on the first
 * only), check it, and answer it compressed (zlib's own deflate, one frame) then plain. */
static void script_deflate(struct srv *s)
{
    s->extra = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=12\r\n";
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    unsigned char *z = NULL;
    size_t zn = 0;
    for (int i = 0; i < 3; i++) {
        struct sframe f;
        SRV_CHECK(s, srv_read_frame(fd, &f) == 0);
        SRV_CHECK(s, f.masked);
        SRV_CHECK(s, f.b0 == (i == 0 ? 0x41 : i == 2 ? 0x80 : 0x00));
        z = realloc(z, zn + f.len);
        memcpy(z + zn, f.data, f.len);
        zn += f.len;
        free(f.data);
    }
    size_t n;
    char *text = srv_inflate(z, zn, &n);
    free(z);
    SRV_CHECK(s, text && n == 3000 && text[0] == 'a' && text[2999] == 'z');
    /* Compressed back, with a context kept from one message to the next. */
    z_stream d;
    memset(&d, 0, sizeof d);
    SRV_CHECK(s, deflateInit2(&d, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    unsigned char out[8192];
    for (int k = 0; k < 2; k++) {
        d.next_in = (Bytef *)text;
        d.avail_in = (uInt)n;
        d.next_out = out;
        d.avail_out = sizeof out;
        SRV_CHECK(s, deflate(&d, Z_SYNC_FLUSH) == Z_OK);
        size_t zl = sizeof out - d.avail_out - 4; /* drop 00 00 ff ff */
        SRV_CHECK(s, srv_send(fd, 0xC1, out, zl) == 0);
    }
    deflateEnd(&d);
    SRV_CHECK(s, srv_send(fd, 0x81, "plain", 5) == 0);
    free(text);
    srv_wait_go(s);
}

static void deflate_is_negotiated_and_messages_are_compressed_both_ways(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_deflate);
    struct ws_opts o = {.deflate = 1};
    char err[256], v[128];
    struct ws_client *c = ws_connect_opts("127.0.0.1", s.port, "/", &o, T_TIMEOUT, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(ws_deflate_on(c), 1);
    char msg[3001];
    for (int i = 0; i < 3000; i++)
        msg[i] = (char)('a' + (i * i / 7) % 26);
    msg[0] = 'a';
    msg[2999] = 'z';
    size_t zl;
    unsigned char *z = ws_deflate_message(msg, 3000, 12, &zl);
    assert_non_null(z);
    free(z);
    assert_int_equal(ws_send_deflated(c, WS_OP_TEXT, msg, 3000, zl / 3 + 1), 0);
    for (int k = 0; k < 2; k++) {
        char *got = NULL;
        size_t n = 0;
        assert_int_equal(ws_recv(c, &got, &n, T_TIMEOUT), WS_OP_TEXT);
        assert_int_equal(n, 3000);
        assert_memory_equal(got, msg, 3000);
        free(got);
    }
    char *got = NULL;
    assert_int_equal(ws_recv(c, &got, NULL, T_TIMEOUT), WS_OP_TEXT);
    assert_string_equal(got, "plain");
    free(got);
    assert_int_equal(ws_deflated_received(c), 2);
    test_go(&s);
    srv_finish(&s);
    assert_string_equal(req_header(s.request, "Sec-WebSocket-Extensions", v, sizeof v),
                        "permessage-deflate; client_max_window_bits");
    ws_free(c);
}

/* An extension the client did not offer is refused; RSV1 without the extension is a protocol
 * error. */
static void script_deflate_unasked(struct srv *s)
{
    s->extra = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    SRV_CHECK(s, srv_upgrade(s, NULL) >= 0);
    s->extra = NULL;
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    SRV_CHECK(s, srv_send(fd, 0xC1, "\x4b\x04\x00", 3) == 0);
    srv_wait_go(s);
}

static void deflate_not_offered_or_not_agreed_is_refused(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_deflate_unasked);
    char err[256];
    assert_null(ws_connect("127.0.0.1", s.port, "/", T_TIMEOUT, err, sizeof err));
    assert_non_null(strstr(err, "not offered"));
    struct ws_client *c = connect_to(&s);
    assert_int_equal(ws_deflate_on(c), 0);
    assert_int_equal(ws_recv(c, NULL, NULL, T_TIMEOUT), -1);
    assert_int_equal(errno, EPROTO);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

static void script_refuse_401(struct srv *s)
{
    int fd = srv_accept(s);
    SRV_CHECK(s, fd >= 0 && srv_read_request(s, fd) > 0);
    const char body[] = "{\"error\":\"Unauthorized\",\"details\":\"missing token\"}";
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     sizeof body - 1, body);
    SRV_CHECK(s, write_full(fd, resp, (size_t)n) == 0);
    srv_wait_go(s); /* keep the connection open: the client must go by Content-Length */
}

static void refused_upgrade_gives_null_with_the_status_and_body(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_refuse_401);
    char err[256];
    long long t0 = now_ms();
    struct ws_client *c = ws_connect("127.0.0.1", s.port, "/", T_TIMEOUT, err, sizeof err);
    assert_null(c);
    assert_true(now_ms() - t0 < 2000);
    assert_int_equal(ws_last_http_status(), 401);
    assert_string_equal(ws_last_http_body(),
                        "{\"error\":\"Unauthorized\",\"details\":\"missing token\"}");
    assert_non_null(strstr(err, "HTTP 401"));
    test_go(&s);
    srv_finish(&s);
}

static void script_wrong_accept(struct srv *s)
{
    SRV_CHECK(s, srv_upgrade(s, s->arg) >= 0);
    srv_wait_go(s);
}

static void wrong_accept_is_refused(void **state)
{
    (void)state;
    struct srv s = {.arg = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="};
    srv_start(&s, script_wrong_accept);
    char err[256];
    assert_null(ws_connect("127.0.0.1", s.port, "/", T_TIMEOUT, err, sizeof err));
    assert_int_equal(ws_last_http_status(), 101);
    assert_non_null(strstr(err, "Sec-WebSocket-Accept"));
    test_go(&s);
    srv_finish(&s);
}

static void script_unoffered_protocol(struct srv *s)
{
    s->extra = "Sec-WebSocket-Protocol: other\r\n";
    SRV_CHECK(s, srv_upgrade(s, NULL) >= 0);
    srv_wait_go(s);
}

static void subprotocol_not_offered_is_refused(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_unoffered_protocol);
    char err[256];
    assert_null(ws_connect("127.0.0.1", s.port, "/", T_TIMEOUT, err, sizeof err));
    assert_non_null(strstr(err, "not offered"));
    test_go(&s);
    srv_finish(&s);
}

static void connect_to_a_closed_port_fails(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd); /* bound, never listened: nothing accepts on that port now */
    char err[256];
    assert_null(ws_connect("127.0.0.1", ntohs(a.sin_port), "/", T_TIMEOUT, err, sizeof err));
    assert_int_equal(ws_last_http_status(), 0);
    assert_non_null(strstr(err, "connect"));
}

static void script_head_and_frame_in_one_packet(struct srv *s)
{
    int fd = srv_accept(s);
    SRV_CHECK(s, fd >= 0 && srv_read_request(s, fd) > 0);
    char key[64], acc[32], resp[512];
    req_header(s->request, "Sec-WebSocket-Key", key, sizeof key);
    ws_accept_for_key(key, acc, sizeof acc);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n"
                     "connection: keep-alive, Upgrade\r\nsec-websocket-accept:%s\r\n\r\n"
                     "\x81\x05hello",
                     acc);
    SRV_CHECK(s, write_full(fd, resp, (size_t)n) == 0);
    srv_wait_go(s);
}

/* Also: header names and the Upgrade value compare without case, Connection is a list. */
static void frame_in_the_same_packet_as_the_101_is_kept(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_head_and_frame_in_one_packet);
    struct ws_client *c = connect_to(&s);
    char *m = NULL;
    size_t len = 0;
    assert_int_equal(ws_recv(c, &m, &len, T_TIMEOUT), WS_OP_TEXT);
    assert_string_equal(m, "hello");
    assert_int_equal(len, 5);
    free(m);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

/* --- client frames ------------------------------------------------------------------------- */

static void script_read_frames(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    /* s->n frames are expected; each is echoed back as a text frame describing it:
     * "<b0> <masked> <len_form> <len> <mask hex>" followed by the payload check. */
    for (size_t i = 0; i < s->n; i++) {
        struct sframe f;
        if (srv_read_frame(fd, &f) < 0) {
            free(f.data);
            SRV_CHECK(s, !"read frame");
        }
        char d[128];
        int n = snprintf(d, sizeof d, "%d %d %d %zu %02x%02x%02x%02x %s", f.b0, f.masked,
                         f.len_form, f.len, f.mask[0], f.mask[1], f.mask[2], f.mask[3],
                         f.len <= 32 ? (char *)f.data : "-");
        /* for long payloads: check they are the pattern the test sent */
        int pattern_ok = 1;
        for (size_t k = 0; f.len > 32 && k < f.len; k++)
            pattern_ok &= f.data[k] == (unsigned char)('a' + k % 26);
        free(f.data);
        SRV_CHECK(s, pattern_ok);
        SRV_CHECK(s, srv_send(fd, 0x81, d, (size_t)n) == 0);
    }
    srv_wait_go(s);
}

static char *recv_text(struct ws_client *c)
{
    char *m = NULL;
    int op = ws_recv(c, &m, NULL, T_TIMEOUT);
    if (op != WS_OP_TEXT)
        fail_msg("ws_recv gave %d: %s", op, ws_error(c));
    return m;
}

static void text_frames_are_masked_with_a_fresh_key(void **state)
{
    (void)state;
    struct srv s = {.n = 2};
    srv_start(&s, script_read_frames);
    struct ws_client *c = connect_to(&s);
    assert_int_equal(ws_send_text(c, "{\"type\":\"command\"}", 18), 0);
    assert_int_equal(ws_send_text(c, "{\"type\":\"command\"}", 18), 0);
    char *a = recv_text(c), *b = recv_text(c);
    int b0, masked, form;
    size_t len;
    char mask_a[9], mask_b[9], text[64];
    assert_int_equal(sscanf(a, "%d %d %d %zu %8s %63s", &b0, &masked, &form, &len, mask_a, text),
                     6);
    assert_int_equal(b0, 0x81);
    assert_int_equal(masked, 1);
    assert_int_equal(len, 18);
    assert_string_equal(text, "{\"type\":\"command\"}");
    assert_string_not_equal(mask_a, "00000000");
    assert_int_equal(sscanf(b, "%*d %*d %*d %*u %8s", mask_b), 1);
    assert_string_not_equal(mask_a, mask_b);
    free(a);
    free(b);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

static void client_lengths_use_the_7_16_and_64_bit_forms(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 125, 126, 65535, 65536, 300000};
    const int forms[] = {7, 7, 16, 16, 64, 64};
    struct srv s = {.n = 6};
    srv_start(&s, script_read_frames);
    struct ws_client *c = connect_to(&s);
    char *buf = malloc(300000);
    assert_non_null(buf);
    for (size_t k = 0; k < 300000; k++)
        buf[k] = (char)('a' + k % 26);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(ws_send_frame(c, WS_OP_BINARY, 1, buf, sizes[i]), 0);
        char *d = recv_text(c);
        int b0, masked, form;
        size_t len;
        assert_int_equal(sscanf(d, "%d %d %d %zu", &b0, &masked, &form, &len), 4);
        assert_int_equal(b0, 0x82);
        assert_int_equal(masked, 1);
        assert_int_equal(form, forms[i]);
        assert_int_equal(len, sizes[i]);
        free(d);
    }
    free(buf);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

static void send_frame_sets_fin_and_opcode_as_asked(void **state)
{
    (void)state;
    struct srv s = {.n = 3};
    srv_start(&s, script_read_frames);
    struct ws_client *c = connect_to(&s);
    assert_int_equal(ws_send_frame(c, WS_OP_TEXT, 0, "Hel", 3), 0);
    assert_int_equal(ws_send_frame(c, WS_OP_CONT, 0, "lo", 2), 0);
    assert_int_equal(ws_send_frame(c, WS_OP_CONT, 1, "!", 1), 0);
    const char *want[] = {"1 1 7 3", "0 1 7 2", "128 1 7 1"};
    const char *text[] = {"Hel", "lo", "!"};
    for (int i = 0; i < 3; i++) {
        char *d = recv_text(c);
        assert_true(strncmp(d, want[i], strlen(want[i])) == 0);
        assert_string_equal(d + strlen(d) - strlen(text[i]), text[i]);
        free(d);
    }
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

static void script_read_raw(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    unsigned char got[6];
    SRV_CHECK(s, read_full(fd, got, sizeof got) == 0);
    SRV_CHECK(s, memcmp(got, "\x81\x04ping", 6) == 0); /* unmasked, as sent */
    srv_wait_go(s);
}

static void send_raw_puts_the_bytes_on_the_wire_unchanged(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_read_raw);
    struct ws_client *c = connect_to(&s);
    assert_int_equal(ws_send_raw(c, "\x81\x04ping", 6), 0);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

/* --- server frames ------------------------------------------------------------------------- */

static void script_send_lengths(struct srv *s)
{
    const size_t sizes[] = {0, 125, 126, 65535, 65536, 200000};
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    char *buf = malloc(200000);
    SRV_CHECK(s, buf != NULL);
    for (size_t k = 0; k < 200000; k++)
        buf[k] = (char)('a' + k % 26);
    for (int i = 0; i < 6; i++)
        if (srv_send(fd, 0x81, buf, sizes[i]) < 0)
            srv_fail(s, __LINE__, "send");
    free(buf);
    srv_wait_go(s);
}

static void server_frames_of_every_length_form_are_read(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 125, 126, 65535, 65536, 200000};
    struct srv s = {0};
    srv_start(&s, script_send_lengths);
    struct ws_client *c = connect_to(&s);
    for (int i = 0; i < 6; i++) {
        char *m = NULL;
        size_t len = 99;
        assert_int_equal(ws_recv(c, &m, &len, T_TIMEOUT), WS_OP_TEXT);
        assert_int_equal(len, sizes[i]);
        assert_int_equal(m[len], '\0');
        for (size_t k = 0; k < len; k++)
            if (m[k] != (char)('a' + k % 26))
                fail_msg("frame %d differs at byte %zu", i, k);
        free(m);
    }
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

static void script_send_byte_by_byte(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    char big[300];
    memset(big, 'z', sizeof big);
    size_t n1, n2;
    unsigned char *f1 = ws_build_frame(0x81, NULL, "split", 5, &n1);
    unsigned char *f2 = ws_build_frame(0x82, NULL, big, sizeof big, &n2);
    int ok = f1 && f2;
    for (size_t i = 0; ok && i < n1; i++) {
        ok = write_full(fd, f1 + i, 1) == 0;
        usleep(200);
    }
    for (size_t i = 0; ok && i < n2; i++) {
        ok = write_full(fd, f2 + i, 1) == 0;
        if (i < 8)
            usleep(1000);
    }
    free(f1);
    free(f2);
    SRV_CHECK(s, ok);
    srv_wait_go(s);
}

static void frames_arriving_a_byte_at_a_time_are_reassembled(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_send_byte_by_byte);
    struct ws_client *c = connect_to(&s);
    char *m = NULL;
    size_t len;
    assert_int_equal(ws_recv(c, &m, &len, T_TIMEOUT), WS_OP_TEXT);
    assert_string_equal(m, "split");
    free(m);
    assert_int_equal(ws_recv(c, &m, &len, T_TIMEOUT), WS_OP_BINARY);
    assert_int_equal(len, 300);
    assert_int_equal(m[0], 'z');
    assert_int_equal(m[299], 'z');
    free(m);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

static void script_fragmented_with_ping(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    SRV_CHECK(s, srv_send(fd, 0x01, "Hel", 3) == 0);
    SRV_CHECK(s, srv_send(fd, 0x89, "mid", 3) == 0); /* control frames may interleave */
    SRV_CHECK(s, srv_send(fd, 0x00, "lo, ", 4) == 0);
    SRV_CHECK(s, srv_send(fd, 0x80, "world", 5) == 0);
    SRV_CHECK(s, srv_send(fd, 0x02, "\x01\x02", 2) == 0); /* then a fragmented binary */
    SRV_CHECK(s, srv_send(fd, 0x80, "\x03", 1) == 0);
    struct sframe f;
    int r = srv_read_frame(fd, &f);
    int pong_ok = r == 0 && f.b0 == 0x8A && f.masked && f.len == 3 && !memcmp(f.data, "mid", 3);
    free(f.data);
    SRV_CHECK(s, pong_ok);
    srv_wait_go(s);
}

static void fragmented_messages_are_joined_around_an_interleaved_ping(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_fragmented_with_ping);
    struct ws_client *c = connect_to(&s);
    char *m = NULL;
    size_t len;
    assert_int_equal(ws_recv(c, &m, &len, T_TIMEOUT), WS_OP_TEXT);
    assert_string_equal(m, "Hello, world");
    assert_int_equal(len, 12);
    free(m);
    assert_int_equal(ws_recv(c, &m, &len, T_TIMEOUT), WS_OP_BINARY);
    assert_int_equal(len, 3);
    assert_memory_equal(m, "\x01\x02\x03", 3);
    free(m);
    assert_int_equal(ws_pings_received(c), 1);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

static void script_binary_with_nul(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    SRV_CHECK(s, srv_send(fd, 0x82, "a\0b\0", 4) == 0);
    srv_wait_go(s);
}

static void binary_message_keeps_its_nul_bytes(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_binary_with_nul);
    struct ws_client *c = connect_to(&s);
    char *m = NULL;
    size_t len;
    assert_int_equal(ws_recv(c, &m, &len, T_TIMEOUT), WS_OP_BINARY);
    assert_int_equal(len, 4);
    assert_memory_equal(m, "a\0b\0", 5); /* and a terminating NUL after them */
    free(m);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

static void script_ping_then_text(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    SRV_CHECK(s, srv_send(fd, 0x89, "abc", 3) == 0);
    struct sframe f;
    int r = srv_read_frame(fd, &f);
    int ok = r == 0 && f.b0 == 0x8A && f.masked && f.len == 3 && !memcmp(f.data, "abc", 3);
    free(f.data);
    SRV_CHECK(s, ok);
    SRV_CHECK(s, srv_send(fd, 0x81, "after", 5) == 0);
    srv_wait_go(s);
}

static void ping_is_answered_with_a_pong_carrying_its_payload(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_ping_then_text);
    struct ws_client *c = connect_to(&s);
    char *m = recv_text(c); /* the pong went out while waiting for this */
    assert_string_equal(m, "after");
    free(m);
    assert_int_equal(ws_pings_received(c), 1);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

static void script_ping_expect_silence(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    SRV_CHECK(s, srv_send(fd, 0x89, "p1", 2) == 0);
    SRV_CHECK(s, srv_send(fd, 0x8A, "unsolicited", 11) == 0);
    srv_wait_go(s);
    /* nothing may have been sent back: the next frame is the test's text */
    struct sframe f;
    int r = srv_read_frame(fd, &f);
    int ok = r == 0 && f.b0 == 0x81 && !strcmp((char *)f.data, "end");
    free(f.data);
    SRV_CHECK(s, ok);
}

static void with_auto_pong_off_pings_are_returned_and_pongs_too(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_ping_expect_silence);
    struct ws_client *c = connect_to(&s);
    ws_set_auto_pong(c, 0);
    char *m = NULL;
    size_t len;
    assert_int_equal(ws_recv(c, &m, &len, T_TIMEOUT), WS_OP_PING);
    assert_string_equal(m, "p1");
    free(m);
    assert_int_equal(ws_recv(c, &m, &len, T_TIMEOUT), WS_OP_PONG);
    assert_string_equal(m, "unsolicited");
    free(m);
    assert_int_equal(ws_pings_received(c), 1);
    test_go(&s);
    assert_int_equal(ws_send_text(c, "end", 3), 0);
    srv_finish(&s);
    ws_free(c);
}

/* --- closing -------------------------------------------------------------------------------- */

static void script_close_1009(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    SRV_CHECK(s, srv_send(fd, 0x88, "\x03\xf1Message too big", 17) == 0);
    struct sframe f;
    int r = srv_read_frame(fd, &f);
    int ok =
        r == 0 && f.b0 == 0x88 && f.masked && f.len >= 2 && f.data[0] == 0x03 && f.data[1] == 0xf1;
    free(f.data);
    SRV_CHECK(s, ok); /* the client echoed the code */
    srv_wait_go(s);
}

static void server_close_gives_code_and_reason_and_is_echoed(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_close_1009);
    struct ws_client *c = connect_to(&s);
    char *m = NULL;
    size_t len;
    assert_int_equal(ws_recv(c, &m, &len, T_TIMEOUT), WS_OP_CLOSE);
    assert_int_equal(ws_close_code(c), WS_CLOSE_TOO_BIG);
    assert_string_equal(ws_close_reason(c), "Message too big");
    assert_string_equal(m, "Message too big");
    assert_int_equal(len, 15);
    free(m);
    test_go(&s);
    srv_finish(&s);
    assert_int_equal(ws_recv(c, NULL, NULL, 10), -1); /* nothing after a close */
    ws_free(c);
}

static void script_close_empty(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    SRV_CHECK(s, srv_send(fd, 0x88, "", 0) == 0);
    struct sframe f;
    int r = srv_read_frame(fd, &f);
    int ok = r == 0 && f.b0 == 0x88 && f.len == 0;
    free(f.data);
    SRV_CHECK(s, ok); /* echoed without a code, as received */
}

static void close_frame_without_code_reports_1005(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_close_empty);
    struct ws_client *c = connect_to(&s);
    assert_int_equal(ws_recv(c, NULL, NULL, T_TIMEOUT), WS_OP_CLOSE);
    assert_int_equal(ws_close_code(c), WS_CLOSE_NO_STATUS);
    assert_string_equal(ws_close_reason(c), "");
    srv_finish(&s);
    ws_free(c);
}

static void script_answer_close(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    struct sframe f;
    int r = srv_read_frame(fd, &f);
    int ok = r == 0 && f.b0 == 0x88 && f.masked && f.len == 5 &&
             !memcmp(f.data,
                     "\x03\xe8"
                     "bye",
                     5);
    free(f.data);
    SRV_CHECK(s, ok);
    SRV_CHECK(s, srv_send(fd, 0x81, "late", 4) == 0); /* still in flight: skipped */
    SRV_CHECK(s, srv_send(fd, 0x88, "\x03\xe8", 2) == 0);
    srv_wait_go(s);
}

static void client_close_sends_code_and_reason_and_waits_for_the_reply(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_answer_close);
    struct ws_client *c = connect_to(&s);
    assert_int_equal(ws_close(c, WS_CLOSE_NORMAL, "bye"), 0);
    assert_int_equal(ws_close_code(c), WS_CLOSE_NORMAL);
    assert_int_equal(ws_fd(c), -1);
    assert_int_equal(ws_recv(c, NULL, NULL, 10), -1);
    assert_int_equal(ws_send_text(c, "x", 1), -1);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

static void script_upgrade_then_drop(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    SRV_CHECK(s, srv_send(fd, 0x81, "last", 4) == 0);
    shutdown(fd, SHUT_WR);
    srv_wait_go(s);
}

static void end_of_stream_without_close_reports_1006_after_buffered_messages(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_upgrade_then_drop);
    struct ws_client *c = connect_to(&s);
    char *m = recv_text(c);
    assert_string_equal(m, "last");
    free(m);
    errno = 0;
    assert_int_equal(ws_recv(c, NULL, NULL, T_TIMEOUT), -1);
    assert_int_equal(errno, ECONNRESET);
    assert_int_equal(ws_close_code(c), WS_CLOSE_ABNORMAL);
    assert_non_null(strstr(ws_error(c), "without a close frame"));
    assert_int_equal(ws_close(c, WS_CLOSE_NORMAL, NULL), -1);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

/* --- waiting ------------------------------------------------------------------------------- */

static void recv_times_out_with_etimedout(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_upgrade_then_wait);
    struct ws_client *c = connect_to(&s);
    long long t0 = now_ms();
    errno = 0;
    assert_int_equal(ws_recv(c, NULL, NULL, 150), -1);
    assert_int_equal(errno, ETIMEDOUT);
    long long took = now_ms() - t0;
    assert_true(took >= 140 && took < 2000);
    assert_int_equal(ws_close_code(c), 0); /* still open */
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

static void script_half_then_rest(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    size_t n;
    unsigned char *f = ws_build_frame(0x81, NULL, "polled message", 14, &n);
    SRV_CHECK(s, f != NULL);
    int ok = write_full(fd, f, 6) == 0;
    srv_wait_go(s);
    ok = ok && write_full(fd, f + 6, n - 6) == 0;
    free(f);
    SRV_CHECK(s, ok);
    srv_wait_go(s);
}

static int wait_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, T_TIMEOUT);
}

static void poll_message_returns_zero_until_a_message_is_complete(void **state)
{
    (void)state;
    struct srv s = {0};
    srv_start(&s, script_half_then_rest);
    struct ws_client *c = connect_to(&s);
    char *m = NULL;
    size_t len = 0;
    usleep(50 * 1000); /* the first half is in (it may have come with the 101 already) */
    assert_int_equal(ws_poll_message(c, &m, &len), 0);
    assert_null(m);
    test_go(&s);
    int op = 0;
    long long deadline = now_ms() + T_TIMEOUT;
    while (op == 0 && now_ms() < deadline) {
        assert_int_equal(wait_readable(ws_fd(c)), 1);
        op = ws_poll_message(c, &m, &len);
    }
    assert_int_equal(op, WS_OP_TEXT);
    assert_string_equal(m, "polled message");
    free(m);
    assert_int_equal(ws_poll_message(c, &m, &len), 0);
    test_go(&s);
    srv_finish(&s);
    ws_free(c);
}

/* --- protocol errors ----------------------------------------------------------------------- */

static void script_send_bad(struct srv *s)
{
    int fd = srv_upgrade(s, NULL);
    SRV_CHECK(s, fd >= 0);
    SRV_CHECK(s, write_full(fd, s->arg, s->n) == 0);
    struct sframe f;
    int r = srv_read_frame(fd, &f);
    int ok = r == 0 && f.b0 == 0x88 && f.len >= 2 && f.data[0] == 0x03 && f.data[1] == 0xea;
    free(f.data);
    SRV_CHECK(s, ok); /* the client closed with 1002 */
}

static void expect_protocol_error(const char *bytes, size_t n, const char *why)
{
    struct srv s = {.arg = bytes, .n = n};
    srv_start(&s, script_send_bad);
    struct ws_client *c = connect_to(&s);
    errno = 0;
    assert_int_equal(ws_recv(c, NULL, NULL, T_TIMEOUT), -1);
    assert_int_equal(errno, EPROTO);
    if (!strstr(ws_error(c), why))
        fail_msg("error \"%s\" does not mention \"%s\"", ws_error(c), why);
    assert_int_equal(ws_recv(c, NULL, NULL, 10), -1);
    srv_finish(&s);
    ws_free(c);
}

static void masked_server_frame_is_a_protocol_error(void **state)
{
    (void)state;
    expect_protocol_error("\x81\x82\x00\x00\x00\x00hi", 8, "masked");
}

static void continuation_without_a_start_is_a_protocol_error(void **state)
{
    (void)state;
    expect_protocol_error("\x80\x02hi", 4, "continuation");
}

static void fragmented_control_frame_is_a_protocol_error(void **state)
{
    (void)state;
    expect_protocol_error("\x09\x02hi", 4, "control frame");
}

static void reserved_bits_and_opcodes_are_protocol_errors(void **state)
{
    (void)state;
    expect_protocol_error("\xc1\x02hi", 4, "RSV");
    expect_protocol_error("\x83\x02hi", 4, "reserved opcode");
}

/* --- many clients -------------------------------------------------------------------------- */

#define MANY 1000

static void script_many(struct srv *s)
{
    for (size_t i = 0; i < s->n; i++)
        SRV_CHECK(s, srv_upgrade(s, NULL) >= 0);
    srv_wait_go(s);
    for (size_t i = 0; i < s->nfds; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "to %zu", i);
        SRV_CHECK(s, srv_send(s->fds[i], 0x81, msg, (size_t)n) == 0);
    }
    srv_wait_go(s);
}

static void a_thousand_clients_are_waited_on_with_one_poll(void **state)
{
    (void)state;
    assert_true(ws_raise_fd_limit(2 * MANY + 64) >= 2 * MANY + 64);
    struct srv s = {.n = MANY};
    srv_start(&s, script_many);
    struct ws_client **cs = calloc(MANY, sizeof *cs);
    struct pollfd *pfds = calloc(MANY, sizeof *pfds);
    int *got = calloc(MANY, sizeof *got);
    assert_true(cs && pfds && got);
    for (int i = 0; i < MANY; i++)
        cs[i] = connect_to(&s);
    test_go(&s);
    int remaining = MANY;
    long long deadline = now_ms() + 4 * T_TIMEOUT;
    while (remaining > 0 && now_ms() < deadline) {
        for (int i = 0; i < MANY; i++) {
            char *m = NULL;
            int op;
            while ((op = ws_poll_message(cs[i], &m, NULL)) > 0) {
                char want[32];
                snprintf(want, sizeof want, "to %d", i);
                assert_string_equal(m, want);
                free(m);
                got[i]++;
                remaining--;
            }
            assert_int_equal(op, 0);
            pfds[i] = (struct pollfd){.fd = ws_fd(cs[i]), .events = POLLIN};
        }
        if (remaining > 0)
            assert_true(poll(pfds, MANY, T_TIMEOUT) > 0);
    }
    assert_int_equal(remaining, 0);
    for (int i = 0; i < MANY; i++) {
        assert_int_equal(got[i], 1);
        ws_free(cs[i]);
    }
    test_go(&s);
    srv_finish(&s);
    free(cs);
    free(pfds);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accept_key_matches_the_rfc_6455_sample),
        cmocka_unit_test(accept_key_is_right_for_every_sha1_padding_case),
        cmocka_unit_test(accept_key_refuses_a_buffer_too_small),
        cmocka_unit_test(build_frame_uses_the_shortest_length_form_and_masks),
        cmocka_unit_test(connect_sends_an_rfc_6455_upgrade_request),
        cmocka_unit_test(connect_opts_sends_subprotocol_and_extra_headers),
        cmocka_unit_test(refused_upgrade_gives_null_with_the_status_and_body),
        cmocka_unit_test(wrong_accept_is_refused),
        cmocka_unit_test(subprotocol_not_offered_is_refused),
        cmocka_unit_test(deflate_is_negotiated_and_messages_are_compressed_both_ways),
        cmocka_unit_test(deflate_not_offered_or_not_agreed_is_refused),
        cmocka_unit_test(connect_to_a_closed_port_fails),
        cmocka_unit_test(frame_in_the_same_packet_as_the_101_is_kept),
        cmocka_unit_test(text_frames_are_masked_with_a_fresh_key),
        cmocka_unit_test(client_lengths_use_the_7_16_and_64_bit_forms),
        cmocka_unit_test(send_frame_sets_fin_and_opcode_as_asked),
        cmocka_unit_test(send_raw_puts_the_bytes_on_the_wire_unchanged),
        cmocka_unit_test(server_frames_of_every_length_form_are_read),
        cmocka_unit_test(frames_arriving_a_byte_at_a_time_are_reassembled),
        cmocka_unit_test(fragmented_messages_are_joined_around_an_interleaved_ping),
        cmocka_unit_test(binary_message_keeps_its_nul_bytes),
        cmocka_unit_test(ping_is_answered_with_a_pong_carrying_its_payload),
        cmocka_unit_test(with_auto_pong_off_pings_are_returned_and_pongs_too),
        cmocka_unit_test(server_close_gives_code_and_reason_and_is_echoed),
        cmocka_unit_test(close_frame_without_code_reports_1005),
        cmocka_unit_test(client_close_sends_code_and_reason_and_waits_for_the_reply),
        cmocka_unit_test(end_of_stream_without_close_reports_1006_after_buffered_messages),
        cmocka_unit_test(recv_times_out_with_etimedout),
        cmocka_unit_test(poll_message_returns_zero_until_a_message_is_complete),
        cmocka_unit_test(masked_server_frame_is_a_protocol_error),
        cmocka_unit_test(continuation_without_a_start_is_a_protocol_error),
        cmocka_unit_test(fragmented_control_frame_is_a_protocol_error),
        cmocka_unit_test(reserved_bits_and_opcodes_are_protocol_errors),
        cmocka_unit_test(a_thousand_clients_are_waited_on_with_one_poll),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
