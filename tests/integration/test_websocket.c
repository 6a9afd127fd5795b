/* The WebSocket transport against a real arqonbusd over real sockets: where it listens (the
 * configured address only; port 0 picks one and logs it), the handshake with and without the
 * arqonbus.v1 subprotocol, plain HTTP, message size limits (whole and fragmented), fragment
 * reassembly, binary frames, max_connections, pings, the close on shutdown, and reloads: a
 * RELOADABLE change applied in place without dropping clients, a port change, and a listening
 * socket handed from an instance to its replacement. */
#define _GNU_SOURCE /* asprintf */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"
#include "ws_client.h"

/* --- the server ---------------------------------------------------------------------------- */

/* conf.d: the host, and the `ws` instance with `ws_config` lines (indented 6) under config. */
static void write_ws(const struct fixture *f, const char *ws_config)
{
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\n", ARQ_BUILD_PLUGIN_DIR);
    h_write(f->dir, "10-ws.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n%s",
            ws_config ? ws_config : "      port: 0\n");
}

/* The port comes from /proc: the daemon's only listener once it is ready. */
static int start(struct fixture *f, const char *ws_config)
{
    write_ws(f, ws_config);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    return h_listening_port(&f->p);
}

/* The reload_ok event of generation 2 says `replaced` instances were replaced and
 * `reconfigured` reconfigured (-1: any). */
static void expect_reload_ok(const char *events, int reconfigured, int replaced)
{
    if (reconfigured < 0)
        assert_int_equal(h_wait_jsonl(events, 1, 10000, "{s:s, s:s, s:{s:i, s:i}}", "event",
                                      "telemetry", "type", "reload_ok", "data", "generation", 2,
                                      "replaced", replaced),
                         0);
    else
        assert_int_equal(h_wait_jsonl(events, 1, 10000, "{s:s, s:s, s:{s:i, s:i, s:i, s:i}}",
                                      "event", "telemetry", "type", "reload_ok", "data",
                                      "generation", 2, "carried", 1, "reconfigured", reconfigured,
                                      "replaced", replaced),
                         0);
}

/* --- clients ------------------------------------------------------------------------------- */

static struct ws_client *connect_ok(int port, const struct ws_opts *opts)
{
    char err[256];
    struct ws_client *c =
        ws_connect_opts("127.0.0.1", port, "/", opts, h_ms(5000), err, sizeof err);
    if (!c)
        fail_msg("connect to port %d: %s", port, err);
    return c;
}

/* Connect and read the welcome; *id (64 bytes) gets the client id when not NULL. */
static struct ws_client *join(int port, char *id)
{
    struct ws_client *c = connect_ok(port, NULL);
    json_t *welcome = h_recv_json(c);
    assert_string_equal(h_str(json_object_get(welcome, "payload"), "welcome"),
                        "Connected to ArqonBus");
    if (id)
        snprintf(id, 64, "%s", h_str(json_object_get(welcome, "payload"), "client_id"));
    json_decref(welcome);
    return c;
}

/* The server closed `c` with `code` (the next thing read is its close frame). */
static void expect_close(struct ws_client *c, int code)
{
    int op;
    while ((op = ws_recv(c, NULL, NULL, h_ms(5000))) == WS_OP_TEXT)
        ;
    if (op != WS_OP_CLOSE)
        fail_msg("expected a close frame, got %d (%s)", op, ws_error(c));
    assert_int_equal(ws_close_code(c), code);
}

/* An error frame with `code` is the next text frame. */
static void expect_error(struct ws_client *c, const char *code)
{
    json_t *j = h_recv_json(c);
    assert_string_equal(h_str(j, "type"), "error");
    assert_string_equal(h_str(j, "error_code"), code);
    json_decref(j);
}

/* `len` bytes of something that is not JSON: delivered, it earns INVALID_JSON. */
static char *filler(size_t len)
{
    char *s = malloc(len + 1);
    assert_non_null(s);
    memset(s, 'x', len);
    s[len] = '\0';
    return s;
}

/* Sends one direct message with a `len`-byte payload from `from` to client `to`. */
static void send_direct(struct ws_client *from, const char *to, size_t len)
{
    char *payload = filler(len), *msg = NULL;
    int n = asprintf(&msg, "{\"type\":\"message\",\"to_client\":\"%s\",\"payload\":\"%s\"}", to,
                     payload);
    assert_true(n > 0);
    assert_int_equal(ws_send_text(from, msg, (size_t)n), 0);
    free(msg);
    free(payload);
}

/* --- /proc/net: who listens where ---------------------------------------------------------- */

/* For each LISTEN socket on `port` in /proc/net/tcp (or tcp6), its local address in the
 * kernel's hex form appended to `addrs` (space-separated), and the inode of the last one. */
static int listeners(const char *table, int port, char *addrs, size_t size, unsigned long *inode)
{
    FILE *fp = fopen(table, "r");
    int n = 0;
    char line[512];
    if (addrs && size)
        addrs[0] = '\0';
    if (!fp)
        return 0;
    if (!fgets(line, sizeof line, fp)) {
        fclose(fp);
        return 0;
    }
    while (fgets(line, sizeof line, fp)) {
        char local[64], remote[64], state[8];
        unsigned long ino = 0;
        if (sscanf(line, "%*d: %63s %63s %7s %*s %*s %*s %*s %*s %lu", local, remote, state,
                   &ino) != 4)
            continue;
        char *colon = strrchr(local, ':');
        if (!colon || strcmp(state, "0A") != 0 || (int)strtol(colon + 1, NULL, 16) != port)
            continue;
        *colon = '\0';
        if (addrs) {
            size_t used = strlen(addrs);
            snprintf(addrs + used, size - used, "%s%s", used ? " " : "", local);
        }
        if (inode)
            *inode = ino;
        n++;
    }
    fclose(fp);
    return n;
}

static int tcp_connects(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* --- where it listens ---------------------------------------------------------------------- */

static void test_binds_the_configured_address_only_and_port_0_picks_a_logged_port(void **state)
{
    struct fixture *f = *state;
    int port = start(f, "      host: 127.0.0.1\n      port: 0\n");
    struct h_listener l;
    assert_int_equal(h_listener(f->p.pid, port, &l), 0);
    assert_string_equal(l.addr, "127.0.0.1");

    char addrs[256];
    /* One listener on that port, on 127.0.0.1 (0100007F), and none on IPv6. */
    assert_int_equal(listeners("/proc/net/tcp", port, addrs, sizeof addrs, NULL), 1);
    assert_string_equal(addrs, "0100007F");
    assert_int_equal(listeners("/proc/net/tcp6", port, addrs, sizeof addrs, NULL), 0);

    struct ws_client *c = join(port, NULL);
    ws_close(c, 1000, NULL);
    ws_free(c);
    assert_int_equal(h_stop(f), 0);
}

static void test_invalid_listener_settings_are_refused_before_anything_opens(void **state)
{
    struct fixture *f = *state;
    char *out = NULL;
    const char *check[] = {"--check-config", "-c", f->dir, NULL};

    write_ws(f, "      host: localhost\n");
    assert_int_equal(h_run(check, &out), 1);
    assert_non_null(strstr(out, "host \"localhost\" is not a numeric IPv4 or IPv6 address"));
    free(out);

    write_ws(f, "      tls_cert: /etc/hostname\n");
    assert_int_equal(h_run(check, &out), 1);
    assert_non_null(strstr(out, "tls_cert and tls_key go together: tls_key is missing"));
    free(out);

    write_ws(f, "      tls_cert: /nonexistent/cert.pem\n      tls_key: /nonexistent/key.pem\n");
    assert_int_equal(h_run(check, &out), 1);
    assert_non_null(strstr(
        out, "tls_cert \"/nonexistent/cert.pem\" cannot be read: No such file or directory"));
    free(out);

    write_ws(f, "      port: 70000\n");
    assert_int_equal(h_run(check, &out), 1);
    free(out);

    write_ws(f, "      rx_buffer_size: 100\n");
    assert_int_equal(h_run(check, &out), 1);
    assert_non_null(strstr(out, "option \"rx_buffer_size\": 100 is out of range"));
    free(out);
}

static void test_a_busy_port_fails_the_start_with_a_clear_error(void **state)
{
    struct fixture *f = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char cfg[128];
    snprintf(cfg, sizeof cfg, "      port: %d\n", ntohs(a.sin_port));
    write_ws(f, cfg);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    assert_int_equal(h_wait_ready(&f->p), -1); /* it exits, never ready */
    assert_int_not_equal(h_wait_exit(&f->p, 10000), 0);
    /* The clear error is the subject: the operator's only report of a failed start is its
     * output, so its text is checked there (not the wording around it). */
    char needle[128], *out = h_slurp(f->p.out);
    snprintf(needle, sizeof needle, "cannot listen on 127.0.0.1:%d: Address already in use",
             ntohs(a.sin_port));
    assert_non_null(strstr(out, needle));
    free(out);
    close(fd);
}

/* --- the handshake ------------------------------------------------------------------------- */

static void test_handshake_with_and_without_the_arqonbus_v1_subprotocol(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL);
    char value[64];

    struct ws_client *plain = connect_ok(port, NULL);
    assert_int_equal(ws_last_http_status(), 101);
    assert_int_equal(ws_response_header(plain, "Sec-WebSocket-Protocol", NULL, 0), -1);
    json_t *welcome = h_recv_json(plain);
    assert_string_equal(h_str(welcome, "type"), "message");
    json_decref(welcome);

    struct ws_opts opts = {.subprotocol = "arqonbus.v1"};
    struct ws_client *v1 = connect_ok(port, &opts);
    assert_true(ws_response_header(v1, "Sec-WebSocket-Protocol", value, sizeof value) > 0);
    assert_string_equal(value, "arqonbus.v1");
    welcome = h_recv_json(v1);
    assert_string_equal(h_str(welcome, "type"), "message");
    json_decref(welcome);

    ws_close(plain, 1000, NULL);
    ws_close(v1, 1000, NULL);
    ws_free(plain);
    ws_free(v1);
    assert_int_equal(h_stop(f), 0);
}

static void test_plain_http_gets_426_upgrade_required(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    char buf[2048];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    close(fd);
    assert_non_null(strstr(buf, "HTTP/1.1 426 "));
    assert_non_null(strstr(buf, "\"error\":\"Upgrade Required\""));
    assert_int_equal(h_stop(f), 0);
}

/* --- messages ------------------------------------------------------------------------------ */

static void test_message_over_max_message_bytes_closes_1009_whole_or_fragmented(void **state)
{
    struct fixture *f = *state;
    int port = start(f, "      port: 0\n      max_message_bytes: 1KiB\n");
    char *at_limit = filler(1024), *over = filler(1025);

    /* Exactly the limit is delivered (and answered: it is not JSON). */
    struct ws_client *c = join(port, NULL);
    assert_int_equal(ws_send_text(c, at_limit, 1024), 0);
    expect_error(c, "INVALID_JSON");
    /* One byte more closes with 1009. */
    assert_int_equal(ws_send_text(c, over, 1025), 0);
    expect_close(c, WS_CLOSE_TOO_BIG);
    ws_free(c);

    /* The same in three fragments, each small: the message as a whole counts. */
    c = join(port, NULL);
    assert_int_equal(ws_send_frame(c, WS_OP_TEXT, 0, over, 500), 0);
    assert_int_equal(ws_send_frame(c, WS_OP_CONT, 0, over + 500, 500), 0);
    assert_int_equal(ws_send_frame(c, WS_OP_CONT, 1, over + 1000, 25), 0);
    expect_close(c, WS_CLOSE_TOO_BIG);
    ws_free(c);

    /* A frame announcing more than the limit is refused before its payload is read. */
    c = join(port, NULL);
    size_t hlen;
    unsigned char mask[4] = {1, 2, 3, 4};
    unsigned char *frame = ws_build_frame(0x81, mask, over, 1025, &hlen);
    assert_int_equal(ws_send_raw(c, frame, 14), 0); /* header, mask and 6 payload bytes */
    expect_close(c, WS_CLOSE_TOO_BIG);
    free(frame);
    ws_free(c);

    free(at_limit);
    free(over);
    assert_int_equal(h_stop(f), 0);
}

static void test_fragmented_message_is_reassembled_with_pings_in_between(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL);
    char to[64];
    struct ws_client *a = join(port, NULL);
    struct ws_client *b = join(port, to);

    /* A direct message with a 100 KB payload, sent in 7 fragments with a ping between two. */
    size_t plen = 100000;
    char *payload = filler(plen);
    char *msg = NULL;
    int len = asprintf(&msg, "{\"type\":\"message\",\"to_client\":\"%s\",\"payload\":\"%s\"}", to,
                       payload);
    assert_true(len > 0);
    size_t step = (size_t)len / 7 + 1;
    for (size_t off = 0; off < (size_t)len; off += step) {
        size_t n = (size_t)len - off < step ? (size_t)len - off : step;
        int fin = off + n == (size_t)len;
        assert_int_equal(ws_send_frame(a, off ? WS_OP_CONT : WS_OP_TEXT, fin, msg + off, n), 0);
        if (off == step)
            assert_int_equal(ws_send_frame(a, WS_OP_PING, 1, "p", 1), 0);
    }
    json_t *got = h_recv_json(b);
    assert_string_equal(h_str(got, "type"), "message");
    assert_int_equal(strlen(h_str(got, "payload")), plen);
    assert_string_equal(h_str(got, "payload"), payload);
    json_decref(got);

    free(msg);
    free(payload);
    ws_close(a, 1000, NULL);
    ws_close(b, 1000, NULL);
    ws_free(a);
    ws_free(b);
    assert_int_equal(h_stop(f), 0);
}

static void test_binary_frame_reaches_the_host_as_binary(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL);
    struct ws_client *c = join(port, NULL);
    static const unsigned char bytes[] = {0x7b, 0x7d, 0x00, 0xff}; /* "{}" then non-text */
    assert_int_equal(ws_send_frame(c, WS_OP_BINARY, 1, bytes, sizeof bytes), 0);
    expect_error(c, "UNSUPPORTED_FRAME");
    /* The connection stays usable. */
    assert_int_equal(ws_send_text(c, "{", 1), 0);
    expect_error(c, "INVALID_JSON");
    ws_close(c, 1000, NULL);
    ws_free(c);
    assert_int_equal(h_stop(f), 0);
}

/* 120 messages of 1 B to 300 KB from one client to another, sent before the other reads. */
static void queued_frames_arrive_whole_and_in_order(int port)
{
    char to[64];
    struct ws_client *a = join(port, NULL);
    struct ws_client *b = join(port, to);
    /* Sizes on both sides of the 7/16/64-bit length forms; sent before b reads anything, so
     * the server coalesces many frames per write. */
    static const size_t sizes[] = {1, 125, 126, 65535, 65536, 300000};
    int count = 120; /* ~9 MB: under the default max_queued_bytes of b */
    for (int i = 0; i < count; i++) {
        size_t plen = sizes[i % 6] + (size_t)i;
        char *payload = filler(plen);
        char *msg = NULL;
        int len = asprintf(&msg,
                           "{\"type\":\"message\",\"to_client\":\"%s\",\"payload\":\"%s\","
                           "\"metadata\":{\"sequence\":%d}}",
                           to, payload, i + 1);
        assert_int_equal(ws_send_text(a, msg, (size_t)len), 0);
        free(msg);
        free(payload);
    }
    for (int i = 0; i < count; i++) {
        json_t *got = h_recv_json(b);
        json_t *seq = json_object_get(json_object_get(got, "metadata"), "sequence");
        assert_int_equal(json_integer_value(seq), i + 1);
        assert_int_equal(strlen(h_str(got, "payload")), sizes[i % 6] + (size_t)i);
        json_decref(got);
    }
    ws_close(a, 1000, NULL);
    ws_close(b, 1000, NULL);
    ws_free(a);
    ws_free(b);
}

static void test_many_queued_frames_arrive_whole_and_in_order(void **state)
{
    struct fixture *f = *state;
    queued_frames_arrive_whole_and_in_order(start(f, NULL));
    assert_int_equal(h_stop(f), 0);
}

/* The smallest and the largest receive buffer: messages many times their size are read in
 * pieces and joined, and reads that take many messages at once split them. */
static void test_rx_buffer_size_at_both_bounds_keeps_messages_whole(void **state)
{
    struct fixture *f = *state;
    queued_frames_arrive_whole_and_in_order(start(f, "      port: 0\n      rx_buffer_size: 256\n"));
    assert_int_equal(h_stop(f), 0);
    queued_frames_arrive_whole_and_in_order(
        start(f, "      port: 0\n      rx_buffer_size: 64KiB\n"));
    assert_int_equal(h_stop(f), 0);
}

/* --- limits and liveness ------------------------------------------------------------------- */

static void test_max_connections_refuses_further_upgrades_with_503(void **state)
{
    struct fixture *f = *state;
    int port = start(f, "      port: 0\n      max_connections: 2\n");
    struct ws_client *a = join(port, NULL), *b = join(port, NULL);
    char err[256];
    struct ws_client *c = ws_connect("127.0.0.1", port, "/", h_ms(5000), err, sizeof err);
    assert_null(c);
    assert_int_equal(ws_last_http_status(), 503);
    assert_non_null(strstr(ws_last_http_body(), "too many connections"));

    /* A place that frees up is taken again. */
    ws_close(a, 1000, NULL);
    ws_free(a);
    for (int tries = 0; !c && tries < 100; tries++) {
        c = ws_connect("127.0.0.1", port, "/", h_ms(5000), err, sizeof err);
        if (!c)
            usleep(20000);
    }
    assert_non_null(c);
    ws_free(c);
    ws_free(b);
    assert_int_equal(h_stop(f), 0);
}

static void test_silent_client_is_closed_after_ping_timeout_and_a_ponging_one_stays(void **state)
{
    struct fixture *f = *state;
    int port = start(f, "      port: 0\n      ping_interval: 1s\n      ping_timeout: 1s\n");
    struct ws_client *silent = join(port, NULL), *alive = join(port, NULL);
    ws_set_auto_pong(silent, 0);
    assert_int_equal(ws_recv(silent, NULL, NULL, h_ms(5000)), WS_OP_PING);
    /* No pong: the server hangs up within ping_interval + ping_timeout (+ up to 1 s: silence
     * is counted in whole seconds), while `alive` keeps reading, and so answering its pings. */
    int op = WS_OP_PING, timed_out = 0;
    for (int waited = 0; op == WS_OP_PING || timed_out;) {
        assert_true(waited < h_ms(8000));
        op = ws_recv(silent, NULL, NULL, 100);
        timed_out = op == -1 && errno == ETIMEDOUT;
        assert_int_equal(ws_recv(alive, NULL, NULL, 100), -1);
        assert_int_equal(errno, ETIMEDOUT);
        waited += 200;
    }
    assert_true(ws_close_code(silent) != 0);

    /* The ponging client is still served. */
    assert_true(ws_pings_received(alive) > 0);
    assert_int_equal(ws_send_text(alive, "{", 1), 0);
    expect_error(alive, "INVALID_JSON");
    ws_free(silent);
    ws_close(alive, 1000, NULL);
    ws_free(alive);
    assert_int_equal(h_stop(f), 0);
}

/* Read `c` until it has seen `pings` pings in all (answering them), failing on anything but a
 * timeout. */
static void read_until_pinged(struct ws_client *c, unsigned pings, int timeout_ms)
{
    for (int waited = 0; ws_pings_received(c) < pings; waited += 100) {
        if (waited >= timeout_ms)
            fail_msg("%u pings after %d ms, expected %u", ws_pings_received(c), waited, pings);
        if (ws_recv(c, NULL, NULL, 100) != -1 || errno != ETIMEDOUT)
            fail_msg("unexpected frame or error: %s", ws_error(c));
    }
}

static void test_a_client_that_only_answers_pings_stays_and_still_gets_messages(void **state)
{
    struct fixture *f = *state;
    int port = start(f, "      port: 0\n      ping_interval: 1s\n      ping_timeout: 1s\n");
    char id[64];
    struct ws_client *quiet = join(port, id);
    /* The first ping by hand: it carries a payload (an empty pong would never reach the
     * server's callback), and our pong echoes it. */
    ws_set_auto_pong(quiet, 0);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(ws_recv(quiet, &data, &len, h_ms(5000)), WS_OP_PING);
    assert_true(len > 0);
    assert_int_equal(ws_send_frame(quiet, WS_OP_PONG, 1, data, len), 0);
    free(data);
    ws_set_auto_pong(quiet, 1);
    /* Four pings in all: at least three ping_interval + ping_timeout periods with nothing
     * but pongs from `quiet`. */
    read_until_pinged(quiet, 4, h_ms(15000));
    /* Still connected, and served. */
    struct ws_client *sender = join(port, NULL);
    send_direct(sender, id, 10);
    json_t *msg = h_recv_json(quiet);
    assert_string_equal(h_str(msg, "type"), "message");
    json_decref(msg);
    ws_close(quiet, 1000, NULL);
    ws_close(sender, 1000, NULL);
    ws_free(quiet);
    ws_free(sender);
    assert_int_equal(h_stop(f), 0);
}

static void test_data_counts_as_life_for_a_client_that_never_answers_pings(void **state)
{
    struct fixture *f = *state;
    int port = start(f, "      port: 0\n      ping_interval: 2s\n      ping_timeout: 1s\n");
    struct ws_client *c = join(port, NULL);
    ws_set_auto_pong(c, 0);
    /* A message every 200 ms for 5 s, longer than ping_interval + ping_timeout: never silent
     * for 2 s, so never pinged, and never closed. Each answer is the next frame: no ping came
     * before it. */
    for (int i = 0; i < 25; i++) {
        assert_int_equal(ws_send_text(c, "{", 1), 0);
        expect_error(c, "INVALID_JSON");
        usleep(200 * 1000); /* the client's pace, not a proof */
    }
    assert_int_equal(ws_send_text(c, "{", 1), 0);
    expect_error(c, "INVALID_JSON");
    assert_int_equal(ws_pings_received(c), 0);
    /* Silent from here on, it is pinged, and dropped for not answering. */
    assert_int_equal(ws_recv(c, NULL, NULL, h_ms(5000)), WS_OP_PING);
    int op;
    while ((op = ws_recv(c, NULL, NULL, h_ms(5000))) == WS_OP_PING)
        ;
    assert_int_equal(op, -1);
    assert_int_not_equal(errno, ETIMEDOUT);
    ws_free(c);
    assert_int_equal(h_stop(f), 0);
}

static void test_ping_interval_0_sends_no_pings(void **state)
{
    struct fixture *f = *state;
    const char *clock = h_daemon_clock(f);
    int port = start(f, "      port: 0\n      ping_interval: 0\n      ping_timeout: 1s\n");
    struct ws_client *c = join(port, NULL);
    ws_set_auto_pong(c, 0);
    /* Silent for 3 s of the daemon's time: with pings on (1 s) it would have been pinged and
     * dropped by then. The answer to a later frame is the next frame: no ping came before. */
    h_wait_daemon_ms(clock, 3000);
    assert_int_equal(ws_send_text(c, "{", 1), 0);
    expect_error(c, "INVALID_JSON");
    assert_int_equal(ws_pings_received(c), 0);
    ws_close(c, 1000, NULL);
    ws_free(c);
    assert_int_equal(h_stop(f), 0);
}

static void test_shutdown_closes_clients_with_1001(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL);
    struct ws_client *c = join(port, NULL);
    h_kill(&f->p, SIGTERM);
    expect_close(c, WS_CLOSE_GOING_AWAY);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
    ws_free(c);
}

/* --- reloads ------------------------------------------------------------------------------- */

static void test_reloadable_max_message_bytes_applies_in_place_keeping_clients(void **state)
{
    struct fixture *f = *state;
    const char *events = h_events_probe(f);
    int port = start(f, "      port: 0\n      max_message_bytes: 1KiB\n");
    unsigned long listener = h_listener_inode(f->p.pid, port);
    struct ws_client *c = join(port, NULL);
    char *big = filler(3000), *bigger = filler(5000);

    write_ws(f, "      port: 0\n      max_message_bytes: 4KiB\n");
    assert_int_equal(h_reload(f), 1);
    expect_reload_ok(events, 1, 0);
    /* The same listening socket, and no other. */
    struct h_listener all[4];
    assert_int_equal(h_listeners(f->p.pid, all, 4), 1);
    assert_true(all[0].inode == listener);

    /* The same connection: 3000 bytes now pass, 5000 do not. */
    assert_int_equal(ws_send_text(c, big, 3000), 0);
    expect_error(c, "INVALID_JSON");
    assert_int_equal(ws_send_text(c, bigger, 5000), 0);
    expect_close(c, WS_CLOSE_TOO_BIG);
    ws_free(c);
    free(big);
    free(bigger);
    assert_int_equal(h_stop(f), 0);
}

static void test_reloadable_queue_and_connection_limits_reach_open_connections(void **state)
{
    struct fixture *f = *state;
    const char *events = h_events_probe(f);
    int port = start(f, "      port: 0\n      max_connections: 2\n");
    char to[64];
    struct ws_client *a = join(port, NULL), *b = join(port, to);

    /* A 100 KB message is queued under the default 16 MiB bound. */
    send_direct(a, to, 100000);
    json_t *got = h_recv_json(b);
    assert_string_equal(h_str(got, "type"), "message");
    json_decref(got);

    write_ws(f, "      port: 0\n      max_connections: 3\n      max_queued_bytes: 64KiB\n");
    assert_int_equal(h_reload(f), 1);
    expect_reload_ok(events, 1, 0);

    /* A third connection fits now, and b's queue is bounded at 64 KiB: it is dropped. */
    struct ws_client *c = join(port, NULL);
    send_direct(a, to, 100000);
    expect_close(b, 1013);
    ws_free(b);
    ws_close(a, 1000, NULL);
    ws_close(c, 1000, NULL);
    ws_free(a);
    ws_free(c);
    assert_int_equal(h_stop(f), 0);
}

static void test_port_change_opens_the_new_listener_and_closes_the_old(void **state)
{
    struct fixture *f = *state;
    const char *events = h_events_probe(f);
    int old_port = start(f, NULL);
    struct ws_client *old_client = join(old_port, NULL);
    int new_port = h_free_port();
    char cfg[64];
    snprintf(cfg, sizeof cfg, "      port: %d\n      retire: close\n", new_port);
    write_ws(f, cfg);
    assert_int_equal(h_reload(f), 1);
    expect_reload_ok(events, -1, 1);
    assert_true(h_wait_listener(f->p.pid, new_port, 0, 5000) != 0);

    /* With retire: close the replaced instance's clients are told at once to go away and
     * reconnect (test_messaging covers retire: drain). */
    expect_close(old_client, WS_CLOSE_GOING_AWAY);
    assert_string_equal(ws_close_reason(old_client), "listener closed: reconnect");
    ws_free(old_client);

    struct ws_client *c = join(new_port, NULL);
    assert_false(tcp_connects(old_port));
    assert_int_equal(listeners("/proc/net/tcp", old_port, NULL, 0, NULL), 0);
    ws_close(c, 1000, NULL);
    ws_free(c);
    assert_int_equal(h_stop(f), 0);
}

static void test_replacement_on_the_same_address_inherits_the_listening_socket(void **state)
{
    struct fixture *f = *state;
    const char *events = h_events_probe(f);
    int port = start(f, NULL);
    unsigned long before = 0, after = 0;
    assert_int_equal(listeners("/proc/net/tcp", port, NULL, 0, &before), 1);

    /* ping_interval is not RELOADABLE: the instance is replaced, the socket is not. */
    char cfg[96];
    snprintf(cfg, sizeof cfg, "      port: %d\n      ping_interval: 30s\n", port);
    write_ws(f, cfg);
    assert_int_equal(h_reload(f), 1);
    expect_reload_ok(events, -1, 1);
    /* Inherited: the very socket, still the process's only listener. */
    assert_int_equal(listeners("/proc/net/tcp", port, NULL, 0, &after), 1);
    assert_true(before == after);
    assert_true(h_listener_inode(f->p.pid, port) == before);
    struct h_listener all[4];
    assert_int_equal(h_listeners(f->p.pid, all, 4), 1);

    struct ws_client *c = join(port, NULL);
    ws_close(c, 1000, NULL);
    ws_free(c);
    assert_int_equal(h_stop(f), 0);
}

static void test_a_retiring_instance_keeps_pinging_the_clients_it_serves(void **state)
{
    struct fixture *f = *state;
    const char *events = h_events_probe(f);
    int port = start(f, "      port: 0\n      ping_interval: 1s\n      ping_timeout: 1s\n"
                        "      retire: keep\n");
    struct ws_client *kept = join(port, NULL), *silent = join(port, NULL);
    ws_set_auto_pong(silent, 0);
    /* A new ping_interval replaces the instance; the old one keeps its two clients. */
    char cfg[128];
    snprintf(cfg, sizeof cfg, "      port: %d\n      ping_interval: 30s\n      retire: keep\n",
             port);
    write_ws(f, cfg);
    assert_int_equal(h_reload(f), 1);
    expect_reload_ok(events, -1, 1);
    /* Its pings go on: the silent client is dropped, the answering one pinged and kept. */
    unsigned base = ws_pings_received(kept);
    int silent_open = 1;
    for (int waited = 0; silent_open || ws_pings_received(kept) < base + 2; waited += 200) {
        assert_true(waited < h_ms(10000));
        if (silent_open && ws_recv(silent, NULL, NULL, 100) == -1 && errno != ETIMEDOUT)
            silent_open = 0;
        assert_int_equal(ws_recv(kept, NULL, NULL, 100), -1);
        assert_int_equal(errno, ETIMEDOUT);
    }
    assert_true(ws_pings_received(silent) > 0);
    assert_int_equal(ws_send_text(kept, "{", 1), 0);
    expect_error(kept, "INVALID_JSON");
    ws_close(kept, 1000, NULL);
    ws_free(kept);
    ws_free(silent);
    assert_int_equal(h_stop(f), 0);
}

static void test_failed_reload_gives_the_socket_back_to_the_running_instance(void **state)
{
    struct fixture *f = *state;
    int port = start(f, NULL);
    struct ws_client *kept = join(port, NULL);
    unsigned long before = 0, after = 0;
    assert_int_equal(listeners("/proc/net/tcp", port, NULL, 0, &before), 1);

    /* `ws` is replaced (and takes the socket), then `ws_z` cannot bind a busy port: the
     * reload rolls back, and the running `ws` must be listening again. */
    int busy = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(busy, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(busy, 1), 0);
    assert_int_equal(getsockname(busy, (struct sockaddr *)&a, &len), 0);
    char cfg[256];
    snprintf(cfg, sizeof cfg,
             "      port: %d\n      ping_interval: 30s\n"
             "  ws_z:\n    module: transport-websocket\n    config:\n      port: %d\n",
             port, ntohs(a.sin_port));
    write_ws(f, cfg);
    assert_int_equal(h_reload(f), 0);
    assert_int_equal(h_generation(&f->p), 1);
    close(busy);

    /* Given back: the very socket the running instance had, not a new one. */
    assert_int_equal(listeners("/proc/net/tcp", port, NULL, 0, &after), 1);
    assert_true(before == after);
    assert_true(h_listener_inode(f->p.pid, port) == before);
    struct ws_client *c = join(port, NULL);
    /* The client connected before the failed reload was never disturbed. */
    assert_int_equal(ws_send_text(kept, "{", 1), 0);
    expect_error(kept, "INVALID_JSON");
    ws_close(c, 1000, NULL);
    ws_close(kept, 1000, NULL);
    ws_free(c);
    ws_free(kept);
    assert_int_equal(h_stop(f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_binds_the_configured_address_only_and_port_0_picks_a_logged_port, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(
            test_invalid_listener_settings_are_refused_before_anything_opens, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_a_busy_port_fails_the_start_with_a_clear_error,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_handshake_with_and_without_the_arqonbus_v1_subprotocol,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_plain_http_gets_426_upgrade_required, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(
            test_message_over_max_message_bytes_closes_1009_whole_or_fragmented, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(
            test_fragmented_message_is_reassembled_with_pings_in_between, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_binary_frame_reaches_the_host_as_binary, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_many_queued_frames_arrive_whole_and_in_order, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_rx_buffer_size_at_both_bounds_keeps_messages_whole,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_max_connections_refuses_further_upgrades_with_503,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_silent_client_is_closed_after_ping_timeout_and_a_ponging_one_stays, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_client_that_only_answers_pings_stays_and_still_gets_messages, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(
            test_data_counts_as_life_for_a_client_that_never_answers_pings, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_ping_interval_0_sends_no_pings, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_closes_clients_with_1001, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(
            test_reloadable_max_message_bytes_applies_in_place_keeping_clients, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(
            test_reloadable_queue_and_connection_limits_reach_open_connections, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(test_port_change_opens_the_new_listener_and_closes_the_old,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_replacement_on_the_same_address_inherits_the_listening_socket, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_retiring_instance_keeps_pinging_the_clients_it_serves, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_failed_reload_gives_the_socket_back_to_the_running_instance, h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
