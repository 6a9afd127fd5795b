/* The WebSocket port's HTTP handshake, before the upgrade, against a real arqonbusd: every
 * request that is not an upgrade (CONNECT among them) is answered and closed, an unfinished one
 * within handshake_timeout; header names libwebsockets 4.1 cannot parse do not stall the
 * upgrade (and stay readable by auth); heads over the limit get 431 and an over-long token 401;
 * every answer is HTTP/1.1 with a reason phrase and the JSON body docs/protocol.md gives,
 * counted in arqonbus_ws_refused_total by status; Python's `websockets` reads the status and
 * body of a refusal; and, pinned, what libwebsockets still does on a TLS listener. */
#define _GNU_SOURCE /* asprintf */
#include <arpa/inet.h>
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
#include <jansson.h>

#include "harness.h"
#include "http_client.h"
#include "prom_parse.h"

#define PY "/usr/bin/python3"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- the server ---------------------------------------------------------------------------- */

struct ports {
    int ws, http;
};

/* `ws` on 127.0.0.1 with `ws_extra` lines (indented 6), the built-in commands, the HTTP API
 * (for /metrics) and the plugin entries `auth` (NULL: none). */
static struct ports start(struct fixture *f, const char *ws_extra, const char *auth)
{
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\n", ARQ_BUILD_PLUGIN_DIR);
    h_write(f->dir, "10-bus.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n%s"
            "  builtin:\n    module: commands-builtin\n"
            "  http:\n    module: transport-http\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n%s",
            h_port(&f->p, "ws"), ws_extra ? ws_extra : "", h_port(&f->p, "http"), auth ? auth : "");
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    struct ports p = {h_component_port(&f->p, "ws"), h_component_port(&f->p, "http")};
    struct h_listener l;
    assert_int_equal(h_listener(f->p.pid, p.ws, &l), 0);
    assert_string_equal(l.addr, "127.0.0.1");
    return p;
}

/* auth-tokens: "tok-svc" is the entry svc; a token presented in X-Auth counts too; an unknown
 * token is refused with 401; no token at all is let through (as a guest). */
#define TOKENS                                                                                     \
    "  api-tokens:\n    module: auth-tokens\n    config:\n      header: X-Auth\n"                  \
    "      tokens:\n        - {name: svc, token: tok-svc, role: user}\n"

/* --- raw requests -------------------------------------------------------------------------- */

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        fail_msg("connect to %d: %s", port, strerror(errno));
    return fd;
}

/* What the server answered to `req` (sent whole): the bytes it sent until it closed, until a
 * 101's head is complete, or until `wait_ms` passed (closed 0 then), and when. */
struct answer {
    char text[4096];
    int status;
    int closed;
    long long ms; /* from the request's end to the close (or to the give-up) */
};

static void send_all(int fd, const char *req, size_t len)
{
    while (len) {
        ssize_t n = send(fd, req, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* refused before the end: the answer tells */
        req += n;
        len -= (size_t)n;
    }
}

static void ask(int port, const char *req, size_t len, int wait_ms, struct answer *a)
{
    memset(a, 0, sizeof *a);
    int fd = dial(port);
    send_all(fd, req, len);
    long long t0 = now_ms();
    size_t got = 0;
    for (;;) {
        long long left = t0 + wait_ms - now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
            a->closed = 1;
            break;
        }
        size_t keep = sizeof a->text - 1 - got;
        if (keep > (size_t)n)
            keep = (size_t)n;
        memcpy(a->text + got, buf, keep);
        got += keep;
        a->text[got] = '\0';
        if (!strncmp(a->text, "HTTP/1.1 101 ", 13) && strstr(a->text, "\r\n\r\n"))
            break; /* upgraded: the connection stays */
    }
    a->text[got] = '\0';
    a->ms = now_ms() - t0;
    sscanf(a->text, "HTTP/1.1 %d ", &a->status);
    close(fd);
}

static void ask_str(int port, const char *req, int wait_ms, struct answer *a)
{
    ask(port, req, strlen(req), wait_ms, a);
}

/* The answer is exactly `status_line` (e.g. "HTTP/1.1 405 Method Not Allowed"), with a JSON
 * body whose "error" is the reason phrase, and the connection was closed. */
static void expect_refusal(const struct answer *a, const char *status_line, const char *what)
{
    size_t n = strlen(status_line);
    if (strncmp(a->text, status_line, n) != 0 || strncmp(a->text + n, "\r\n", 2) != 0)
        fail_msg("%s: expected \"%s\", got \"%.120s\"", what, status_line, a->text);
    if (!a->closed)
        fail_msg("%s: still open after %lld ms", what, a->ms);
    const char *body = strstr(a->text, "\r\n\r\n");
    assert_non_null(body);
    json_t *j = json_loads(body + 4, 0, NULL);
    if (!j)
        fail_msg("%s: the body is not JSON: \"%s\"", what, body + 4);
    const char *reason = strchr(status_line + 9, ' ') + 1;
    assert_string_equal(json_string_value(json_object_get(j, "error")), reason);
    assert_true(json_is_string(json_object_get(j, "details")));
    json_decref(j);
}

static const char upgrade[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n";

/* An upgrade request with `extra` header lines ("Name: value\r\n"...) first or last. */
static char *upgrade_with(const char *extra, int first)
{
    char *req = NULL;
    int n = first ? asprintf(&req, "GET / HTTP/1.1\r\n%s%s\r\n", extra, upgrade + 16)
                  : asprintf(&req, "%s%s\r\n", upgrade, extra);
    assert_true(n > 0);
    return req;
}

/* --- requests that are not upgrades --------------------------------------------------------- */

static void test_connect_and_every_other_request_is_answered_and_closed(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, "      handshake_timeout: 1s\n", NULL);
    int fds = h_fd_count(f->p.pid);
    struct answer a;

    ask_str(p.ws, "CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n", h_ms(3000), &a);
    expect_refusal(&a, "HTTP/1.1 405 Method Not Allowed", "CONNECT");
    assert_non_null(strstr(a.text, "\r\nAllow: GET\r\n"));
    ask_str(p.ws, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", h_ms(3000), &a);
    expect_refusal(&a, "HTTP/1.1 405 Method Not Allowed", "POST");
    ask_str(p.ws, "BREW / HTTP/1.1\r\nHost: x\r\n\r\n", h_ms(3000), &a);
    expect_refusal(&a, "HTTP/1.1 405 Method Not Allowed", "an unknown method");
    ask_str(p.ws, "hello there\r\n\r\n", h_ms(3000), &a);
    expect_refusal(&a, "HTTP/1.1 400 Bad Request", "not HTTP");
    ask_str(p.ws, "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", h_ms(3000), &a);
    expect_refusal(&a, "HTTP/1.1 400 Bad Request", "a broken %-escape");
    ask_str(p.ws, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", h_ms(3000), &a);
    expect_refusal(&a, "HTTP/1.1 426 Upgrade Required", "GET without Upgrade");
    ask_str(p.ws,
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
            h_ms(3000), &a);
    expect_refusal(&a, "HTTP/1.1 426 Upgrade Required", "an upgrade to h2c");

    /* Never finished, each of them: answered 408 and closed at handshake_timeout (1 s). */
    static const char *const unfinished[] = {
        "CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n", upgrade, "GET / HT", ""};
    for (size_t i = 0; i < sizeof unfinished / sizeof *unfinished; i++) {
        ask_str(p.ws, unfinished[i], h_ms(5000), &a);
        expect_refusal(&a, "HTTP/1.1 408 Request Timeout", unfinished[i]);
        assert_true(a.ms >= 500 && a.ms <= h_ms(3000));
    }
    for (int waited = 0; h_fd_count(f->p.pid) != fds && waited < h_ms(2000); waited += 20)
        usleep(20000);
    assert_int_equal(h_fd_count(f->p.pid), fds);
    assert_int_equal(h_stop(f), 0);
}

/* --- header names lws 4.1 cannot take ------------------------------------------------------- */

static void
test_a_header_named_like_the_start_of_a_known_one_does_not_stall_the_upgrade(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, NULL, TOKENS);
    static const char *const names[] = {"X-Forwarded", "X-Real", "X-Auth-Tok",   "Content",
                                        "A",           "Get",    "Sec-WebSocket"};
    struct answer a;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        for (int first = 0; first < 2; first++) {
            char line[64];
            snprintf(line, sizeof line, "%s: 1\r\n", names[i]);
            char *req = upgrade_with(line, first);
            ask_str(p.ws, req, h_ms(1500), &a);
            free(req);
            if (a.status != 101)
                fail_msg("%s (%s): expected 101 at once, got \"%.80s\" after %lld ms", names[i],
                         first ? "first" : "last", a.text, a.ms);
        }
    }
    /* The field keeps its name for auth: a token in X-Auth is read (X-Auth is a prefix of
     * X-Auth-Token, which lws knows)... */
    char *req = upgrade_with("X-Auth: tok-svc\r\n", 0);
    ask_str(p.ws, req, h_ms(1500), &a);
    free(req);
    assert_int_equal(a.status, 101);
    req = upgrade_with("X-Auth: not-a-token\r\n", 1);
    ask_str(p.ws, req, h_ms(3000), &a);
    free(req);
    expect_refusal(&a, "HTTP/1.1 401 Unauthorized", "an unknown token in X-Auth");
    /* ...and a client cannot pose as it with the name it is given inside. */
    req = upgrade_with("~X-Auth: not-a-token\r\n", 0);
    ask_str(p.ws, req, h_ms(1500), &a);
    free(req);
    assert_int_equal(a.status, 101);
    assert_int_equal(h_stop(f), 0);
}

/* --- sizes ---------------------------------------------------------------------------------- */

static void test_heads_over_the_limit_get_431_and_a_token_over_16_kib_401(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, NULL,
                           "  jwt:\n    module: auth-jwt\n    config:\n"
                           "      secret: 0123456789abcdef0123456789abcdef\n");
    struct answer a;
    size_t cap = 64 * 1024;
    char *line = malloc(cap);
    assert_non_null(line);

    /* One field of 40 KiB. */
    memcpy(line, "Cookie: ", 8);
    memset(line + 8, 'c', 40 * 1024);
    memcpy(line + 8 + 40 * 1024, "\r\n", 3);
    char *req = upgrade_with(line, 0);
    ask_str(p.ws, req, h_ms(3000), &a);
    free(req);
    expect_refusal(&a, "HTTP/1.1 431 Request Header Fields Too Large", "a 40 KiB field");
    /* 3,000 small fields. */
    size_t n = 0;
    for (int i = 0; i < 3000; i++)
        n += (size_t)snprintf(line + n, cap - n, "X-F%d: %d\r\n", i, i);
    req = upgrade_with(line, 0);
    ask_str(p.ws, req, h_ms(3000), &a);
    free(req);
    expect_refusal(&a, "HTTP/1.1 431 Request Header Fields Too Large", "3,000 fields");
    /* 200 known fields: more than lws 4.1 keeps, though the head is small. */
    n = 0;
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(line + n, cap - n, "Via: %d\r\n", i);
    req = upgrade_with(line, 0);
    ask_str(p.ws, req, h_ms(3000), &a);
    free(req);
    expect_refusal(&a, "HTTP/1.1 431 Request Header Fields Too Large", "200 Via fields");

    /* A bearer token of 17 KiB fits the head: auth-jwt refuses it as too long. */
    memcpy(line, "Authorization: Bearer ", 22);
    memset(line + 22, 'a', 17 * 1024);
    memcpy(line + 22 + 17 * 1024, "\r\n", 3);
    req = upgrade_with(line, 0);
    ask_str(p.ws, req, h_ms(3000), &a);
    free(req);
    expect_refusal(&a, "HTTP/1.1 401 Unauthorized", "a 17 KiB token");
    free(line);
    assert_int_equal(h_stop(f), 0);
}

/* --- the answers, and their count ----------------------------------------------------------- */

static double refused(const struct prom_doc *doc, const char *status)
{
    double v = 0;
    prom_value(doc, &v, "arqonbus_ws_refused_total", "instance", "ws", "status", status, NULL);
    return v;
}

static void test_every_refusal_is_http_1_1_with_a_reason_phrase_and_counted_by_status(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, "      max_connections: 1\n      handshake_timeout: 1s\n", TOKENS);
    struct answer a;

    char *req = upgrade_with("Authorization: Bearer nope\r\n", 0);
    ask_str(p.ws, req, h_ms(3000), &a);
    free(req);
    expect_refusal(&a, "HTTP/1.1 401 Unauthorized", "a bad token");
    char *proto = NULL;
    assert_true(asprintf(&proto, "Sec-WebSocket-Protocol: arqonbus.v1, bearer.%0200d\r\n", 0) > 0);
    req = upgrade_with(proto, 0);
    free(proto);
    ask_str(p.ws, req, h_ms(3000), &a);
    free(req);
    expect_refusal(&a, "HTTP/1.1 431 Request Header Fields Too Large", "a long subprotocol");
    ask_str(p.ws, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", h_ms(3000), &a);
    expect_refusal(&a, "HTTP/1.1 426 Upgrade Required", "GET without Upgrade");
    assert_non_null(strstr(a.text, "\r\nUpgrade: websocket\r\n"));
    ask_str(p.ws, "CONNECT x:1 HTTP/1.1\r\n\r\n", h_ms(3000), &a);
    expect_refusal(&a, "HTTP/1.1 405 Method Not Allowed", "CONNECT");
    ask_str(p.ws, upgrade, h_ms(3000), &a);
    expect_refusal(&a, "HTTP/1.1 408 Request Timeout", "an unfinished upgrade");

    /* The one place taken, the next upgrade gets 503. */
    int held = dial(p.ws);
    req = upgrade_with("", 0);
    send_all(held, req, strlen(req));
    char buf[512];
    ssize_t got = read(held, buf, sizeof buf - 1);
    assert_true(got > 12);
    assert_memory_equal(buf, "HTTP/1.1 101", 12);
    ask_str(p.ws, req, h_ms(3000), &a);
    free(req);
    expect_refusal(&a, "HTTP/1.1 503 Service Unavailable", "max_connections");
    assert_non_null(strstr(a.text, "too many connections"));
    close(held);

    struct http_resp r;
    char err[256];
    if (http_request("127.0.0.1", p.http, "GET", "/metrics", NULL, NULL, 0, h_ms(5000), &r, err,
                     sizeof err) != 0)
        fail_msg("GET /metrics: %s", err);
    struct prom_doc doc;
    if (prom_parse(r.body, &doc, err, sizeof err) != 0)
        fail_msg("/metrics: %s", err);
    static const char *const statuses[] = {"401", "431", "426", "405", "408", "503"};
    for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++)
        if (refused(&doc, statuses[i]) != 1)
            fail_msg("arqonbus_ws_refused_total{status=\"%s\"} is %g, not 1", statuses[i],
                     refused(&doc, statuses[i]));
    const struct prom_family *fam = prom_family(&doc, "arqonbus_ws_refused_total");
    assert_non_null(fam);
    assert_null(strstr(fam->help, "503 at max_connections"));
    prom_free(&doc);
    http_resp_free(&r);
    assert_int_equal(h_stop(f), 0);
}

/* --- a real client library ------------------------------------------------------------------ */

/* Run tests/integration/ws_handshake_client.py: what Python's websockets saw, as JSON. */
static json_t *python_client(int port, const char *path, const char *header)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, PY " '%s/ws_handshake_client.py' %d '%s'%s%s%s", ARQ_TEST_DIR, port,
             path, header ? " '" : "", header ? header : "", header ? "'" : "");
    FILE *fp = popen(cmd, "r");
    assert_non_null(fp);
    char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, fp);
    out[n] = '\0';
    int rc = pclose(fp);
    if (rc != 0)
        fail_msg("%s: exit %d, output \"%s\"", cmd, rc, out);
    json_t *j = json_loads(out, 0, NULL);
    if (!j)
        fail_msg("%s: not JSON: \"%s\"", cmd, out);
    return j;
}

static const char *jstr(const json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "";
}

static void test_python_websockets_reads_the_status_and_body_of_a_refusal(void **state)
{
    struct fixture *f = *state;
    if (access(PY, X_OK) != 0 || system(PY " -c 'import websockets' 2>/dev/null") != 0)
        fail_msg("python3-websockets is missing: run packaging/install-deps.sh");
    struct ports p = start(f, "      max_connections: 1\n", TOKENS);

    json_t *j = python_client(p.ws, "/", "Authorization: Bearer nope");
    assert_string_equal(jstr(j, "connect"), "InvalidStatusCode");
    assert_int_equal(json_integer_value(json_object_get(j, "connect_status")), 401);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 401);
    assert_string_equal(jstr(j, "reason"), "Unauthorized");
    assert_string_equal(jstr(j, "body"),
                        "{\"error\":\"Unauthorized\",\"details\":\"unknown token\"}");
    json_decref(j);

    /* The one place taken (by a raw client that stays), the library gets the 503. */
    int held = dial(p.ws);
    char *req = upgrade_with("", 0);
    send_all(held, req, strlen(req));
    free(req);
    char buf[512];
    assert_true(read(held, buf, sizeof buf) > 12);
    j = python_client(p.ws, "/", NULL);
    assert_string_equal(jstr(j, "connect"), "InvalidStatusCode");
    assert_int_equal(json_integer_value(json_object_get(j, "connect_status")), 503);
    assert_string_equal(jstr(j, "reason"), "Service Unavailable");
    assert_string_equal(jstr(j, "body"),
                        "{\"error\":\"Service Unavailable\",\"details\":\"too many connections\"}");
    json_decref(j);
    close(held);

    /* And it connects once there is room. */
    for (int tries = 0; tries < 50; tries++) {
        j = python_client(p.ws, "/?token=tok-svc", NULL);
        if (!strcmp(jstr(j, "connect"), "open"))
            break;
        json_decref(j);
        j = NULL;
        usleep(50000);
    }
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 101);
    json_decref(j);
    assert_int_equal(h_stop(f), 0);
}

/* --- pinned: a TLS listener ---------------------------------------------------------------- */

/* What came back over TLS for `req` within wait_ms (ws_handshake_client.py raw-tls). */
static json_t *tls_ask(const struct fixture *f, int port, const char *req, size_t len, int wait_ms)
{
    char path[600], cmd[1400];
    snprintf(path, sizeof path, "%s/tls-request", f->logs);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(req, 1, len, fp), len);
    fclose(fp);
    snprintf(cmd, sizeof cmd, PY " '%s/ws_handshake_client.py' raw-tls %d %d < '%s'", ARQ_TEST_DIR,
             port, wait_ms, path);
    fp = popen(cmd, "r");
    assert_non_null(fp);
    char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, fp);
    out[n] = '\0';
    if (pclose(fp) != 0)
        fail_msg("%s: \"%s\"", cmd, out);
    json_t *j = json_loads(out, 0, NULL);
    if (!j)
        fail_msg("%s: not JSON: \"%s\"", cmd, out);
    return j;
}

/* docs/security.md, "Limits of libwebsockets 4.1: the handshake": lws reads a TLS request head
 * itself, so what ws_head.c does for a plain one does not happen. This pins what lws 4.1 does
 * instead; a library upgrade that changes it fails here (then update that section). */
static void test_pinned_on_a_tls_listener_libwebsockets_still_decides_the_head(void **state)
{
    struct fixture *f = *state;
    char tls[1200];
    h_make_cert(f->logs);
    snprintf(
        tls, sizeof tls,
        "      tls_cert: %s/cert.pem\n      tls_key: %s/key.pem\n      handshake_timeout: 1s\n",
        f->logs, f->logs);
    struct ports p = start(f, tls, NULL);

    /* Fixed for TLS as well: CONNECT is answered (the callback sees it), as is a POST. */
    const char *req = "CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n";
    json_t *j = tls_ask(f, p.ws, req, strlen(req), h_ms(3000));
    assert_memory_equal(json_string_value(json_object_get(j, "answer")),
                        "HTTP/1.1 405 Method Not Allowed\r\n", 33);
    assert_true(json_is_true(json_object_get(j, "closed")));
    json_decref(j);

    /* lws: a header named like the start of one it knows swallows the end of the head: no
     * answer, the connection is dropped when lws gives up on it. */
    char *up = upgrade_with("X-Real: 1\r\n", 0);
    j = tls_ask(f, p.ws, up, strlen(up), h_ms(12000));
    free(up);
    assert_string_equal(json_string_value(json_object_get(j, "answer")), "");
    assert_true(json_is_true(json_object_get(j, "closed")));
    json_decref(j);
    /* lws: a head over its store is dropped without an answer. */
    char *line = malloc(64 * 1024);
    assert_non_null(line);
    memcpy(line, "Cookie: ", 8);
    memset(line + 8, 'c', 60 * 1024);
    memcpy(line + 8 + 60 * 1024, "\r\n", 3);
    up = upgrade_with(line, 0);
    free(line);
    j = tls_ask(f, p.ws, up, strlen(up), h_ms(3000));
    free(up);
    assert_string_equal(json_string_value(json_object_get(j, "answer")), "");
    assert_true(json_is_true(json_object_get(j, "closed")));
    json_decref(j);
    /* lws: an unknown method gets its own HTML page, as HTTP/1.0. */
    req = "BREW / HTTP/1.1\r\nHost: x\r\n\r\n";
    j = tls_ask(f, p.ws, req, strlen(req), h_ms(3000));
    assert_memory_equal(json_string_value(json_object_get(j, "answer")),
                        "HTTP/1.0 403 Forbidden\r\n", 24);
    json_decref(j);
    assert_int_equal(h_stop(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_and_every_other_request_is_answered_and_closed,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_header_named_like_the_start_of_a_known_one_does_not_stall_the_upgrade, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(
            test_heads_over_the_limit_get_431_and_a_token_over_16_kib_401, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_every_refusal_is_http_1_1_with_a_reason_phrase_and_counted_by_status, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(
            test_python_websockets_reads_the_status_and_body_of_a_refusal, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_pinned_on_a_tls_listener_libwebsockets_still_decides_the_head, h_setup,
            h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
