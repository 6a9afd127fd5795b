/* Authentication, authorization and limits against a real arqonbusd: JWTs (made here with
 * libjwt, RSA keys generated at start with libcrypto) refused with 401 before the upgrade,
 * identities in whoami, the auth-rbac default roles, role and token changes applied to
 * connected clients by a reload, rate limits and their retry_after_ms, connection limits, an
 * abusive client closed with 1008, tokens on the HTTP API, the auth metrics and events,
 * the bus's hardening limits, and the shipped conf.d with and without ARQONBUS_ENABLE_AUTH. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "bus_client.h"
#include "http_client.h"
#include "prom_parse.h"
#include "scrape.h"

#define SECRET "arqonbus-test-secret-0123456789abcdef" /* HS256: at least 32 bytes */
#define KEY    "test-api-key-0123456789"

/* --- keys and tokens ----------------------------------------------------------------------- */

/* RSA key pairs made once for the whole file: the server's, and another one. */
static struct {
    char *priv, *pub, *other_priv;
} keys;

static char *pem_of(EVP_PKEY *k, int private_key)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    int ok = private_key ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_bio_PUBKEY(b, k);
    assert_int_equal(ok, 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = strndup(data, (size_t)n);
    assert_non_null(s);
    BIO_free(b);
    return s;
}

static int make_keys(void **state)
{
    (void)state;
    EVP_PKEY *k = EVP_RSA_gen(2048), *other = EVP_RSA_gen(2048);
    if (!k || !other)
        return -1;
    keys.priv = pem_of(k, 1);
    keys.pub = pem_of(k, 0);
    keys.other_priv = pem_of(other, 1);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
    return 0;
}

static int free_keys(void **state)
{
    (void)state;
    free(keys.priv);
    free(keys.pub);
    free(keys.other_priv);
    return 0;
}

/* What a token says. Times are relative to now, in seconds; exp 0 means +600. */
struct claims {
    const char *sub, *role, *tenant;
    long exp, nbf;
};

/* A JWT signed with `alg` and `key` (a secret or a private key PEM; NULL for "none"). */
static char *jwt_make(jwt_alg_t alg, const char *key, struct claims c)
{
    jwt_t *j = NULL;
    long now = (long)time(NULL);
    assert_int_equal(jwt_new(&j), 0);
    assert_int_equal(jwt_add_grant_int(j, "iat", now - 60), 0);
    assert_int_equal(jwt_add_grant_int(j, "exp", now + (c.exp ? c.exp : 600)), 0);
    if (c.nbf)
        assert_int_equal(jwt_add_grant_int(j, "nbf", now + c.nbf), 0);
    if (c.sub)
        assert_int_equal(jwt_add_grant(j, "sub", c.sub), 0);
    if (c.role)
        assert_int_equal(jwt_add_grant(j, "role", c.role), 0);
    if (c.tenant)
        assert_int_equal(jwt_add_grant(j, "tenant", c.tenant), 0);
    assert_int_equal(jwt_set_alg(j, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0),
                     0);
    char *s = jwt_encode_str(j);
    assert_non_null(s);
    jwt_free(j);
    return s;
}

/* An HS256 token of the test secret. */
static char *hs(const char *sub, const char *role)
{
    return jwt_make(JWT_ALG_HS256, SECRET, (struct claims){.sub = sub, .role = role});
}

/* An RS256 token of the server's key. */
static char *rs(const char *sub, const char *role)
{
    return jwt_make(JWT_ALG_RS256, keys.priv, (struct claims){.sub = sub, .role = role});
}

static void sha256_hex(const char *text, char out[65])
{
    unsigned char md[32];
    unsigned len = 0;
    assert_int_equal(EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* --- the server ---------------------------------------------------------------------------- */

struct ports {
    int ws, http;
};

/* Lines of the auth YAML: policies and their options. */
#define JWT_HS          "  jwt:\n    module: auth-jwt\n    config:\n      secret: " SECRET "\n"
#define JWT_HS_OPTIONAL JWT_HS "      required: false\n"
#define RBAC            "  rbac:\n    module: auth-rbac\n"
/* auth-tokens before auth-jwt: a token it does not know goes on to auth-jwt. */
#define TOKENS_HEAD                                                                                \
    "  api-tokens:\n    module: auth-tokens\n    config:\n      on_unknown: defer\n"               \
    "      tokens:\n"

/* conf.d: `bus` lines under bus:, the WebSocket transport on 127.0.0.1 (at the port chosen for
 * it), the built-in commands, memory storage, the plugin entries `auth` (60-auth.yaml, when not
 * NULL) and the HTTP API with config lines `http` (when not NULL). */
static void write_conf(struct fixture *f, const char *bus, const char *auth, const char *http)
{
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\nbus:\n  auto_create: true\n%s",
            ARQ_BUILD_PLUGIN_DIR, bus ? bus : "");
    h_write(f->dir, "10-ws.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n",
            h_port(&f->p, "ws"));
    h_write(f->dir, "20-commands.yaml",
            "plugins:\n  builtin:\n    module: commands-builtin\n"
            "  history:\n    module: storage-memory\n");
    if (http)
        h_write(f->dir, "40-http.yaml",
                "plugins:\n  http:\n    module: transport-http\n    config:\n"
                "      host: 127.0.0.1\n      port: %d\n%s",
                h_port(&f->p, "http"), http);
    if (auth)
        h_write(f->dir, "60-auth.yaml", "plugins:\n%s", auth);
}

static struct ports start(struct fixture *f, const char *bus, const char *auth, const char *http)
{
    write_conf(f, bus, auth, http);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    struct ports p = {h_component_port(&f->p, "ws"), http ? h_component_port(&f->p, "http") : 0};
    struct h_listener l;
    assert_int_equal(h_listener(f->p.pid, p.ws, &l), 0);
    assert_string_equal(l.addr, "127.0.0.1");
    return p;
}

/* Write 60-auth.yaml anew and reload; asserts the reload succeeded. */
static void reload_auth(struct fixture *f, const char *auth)
{
    h_write(f->dir, "60-auth.yaml", "plugins:\n%s", auth);
    assert_int_equal(h_reload(f), 1);
}

/* --- clients ------------------------------------------------------------------------------- */

/* Connect (path NULL: "/"), offering `subprotocol` and sending `bearer` as
 * `Authorization: Bearer` when not NULL, and read the welcome. NULL when the upgrade was
 * refused: ws_last_http_status() and ws_last_http_body() then say how. */
static struct bus_client *try_connect(int port, const char *path, const char *subprotocol,
                                      const char *bearer)
{
    char *line = NULL;
    if (bearer) {
        line = malloc(strlen(bearer) + 32);
        assert_non_null(line);
        sprintf(line, "Authorization: Bearer %s", bearer);
    }
    const char *headers[] = {line, NULL};
    struct ws_opts o = {.subprotocol = subprotocol, .headers = headers};
    char err[256];
    struct ws_client *ws =
        ws_connect_opts("127.0.0.1", port, path, &o, h_ms(5000), err, sizeof err);
    free(line);
    if (!ws)
        return NULL;
    struct bus_client *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->ws = ws;
    json_t *welcome = bc_recv(c, 5000);
    if (!welcome)
        fail_msg("no welcome (%s)", ws_error(ws));
    const json_t *payload = json_object_get(welcome, "payload");
    assert_string_equal(bc_str(payload, "welcome"), "Connected to ArqonBus");
    snprintf(c->id, sizeof c->id, "%s", bc_str(payload, "client_id"));
    json_decref(welcome);
    return c;
}

static struct bus_client *connect_as(int port, const char *bearer)
{
    struct bus_client *c = try_connect(port, NULL, NULL, bearer);
    if (!c)
        fail_msg("refused with %d: %s", ws_last_http_status(), ws_last_http_body());
    return c;
}

/* The last upgrade was refused with `status` and {"error": error, "details": details}
 * (details NULL: any non-empty text). */
static void expect_last_refusal(int status, const char *error, const char *details)
{
    if (ws_last_http_status() != status)
        fail_msg("expected HTTP %d, got %d: %s", status, ws_last_http_status(),
                 ws_last_http_body());
    json_error_t jerr;
    json_t *body = json_loads(ws_last_http_body(), 0, &jerr);
    if (!body)
        fail_msg("refusal body is not JSON: %s", ws_last_http_body());
    assert_string_equal(bc_str(body, "error"), error);
    if (details)
        assert_string_equal(bc_str(body, "details"), details);
    else
        assert_true(strlen(bc_str(body, "details")) > 0);
    json_decref(body);
}

static void expect_refused(int port, const char *path, const char *subprotocol, const char *bearer,
                           int status, const char *error, const char *details)
{
    struct bus_client *c = try_connect(port, path, subprotocol, bearer);
    if (c) {
        bc_free(c);
        fail_msg("upgraded; expected HTTP %d (%s)", status, details ? details : error);
    }
    expect_last_refusal(status, error, details);
}

static json_t *whoami(struct bus_client *c)
{
    json_t *r;
    const json_t *data = bc_command_ok(c, &r, "whoami", NULL);
    json_t *copy = json_deep_copy(data);
    json_decref(r);
    return copy;
}

/* The command's response is an error with `code`, and (when not NULL) exactly `text`. */
static void expect_command_error(struct bus_client *c, const char *code, const char *text,
                                 const char *name, const char *args_fmt, ...)
{
    json_t *args = NULL;
    if (args_fmt) {
        va_list ap;
        va_start(ap, args_fmt);
        args = json_vpack_ex(NULL, 0, args_fmt, ap);
        va_end(ap);
        assert_non_null(args);
    }
    json_t *r = args ? bc_command(c, name, "O", args) : bc_command(c, name, NULL);
    json_decref(args);
    if (strcmp(bc_str(r, "error_code"), code) != 0 || (text && strcmp(bc_str(r, "error"), text))) {
        char *dump = json_dumps(r, JSON_COMPACT);
        fail_msg("%s: expected %s \"%s\", got %s", name, code, text ? text : "", dump);
    }
    json_decref(r);
}

static void command_ok(struct bus_client *c, const char *name, const char *args_fmt, ...)
{
    json_t *args = NULL;
    if (args_fmt) {
        va_list ap;
        va_start(ap, args_fmt);
        args = json_vpack_ex(NULL, 0, args_fmt, ap);
        va_end(ap);
        assert_non_null(args);
    }
    json_t *r;
    if (args)
        bc_command_ok(c, &r, name, "O", args);
    else
        bc_command_ok(c, &r, name, NULL);
    json_decref(args);
    json_decref(r);
}

/* Frames are matched to what was sent by id. */
static const char *next_id(char buf[64])
{
    static unsigned seq;
    snprintf(buf, 64, "arq_1700000000001_%u_a1b2c3", ++seq);
    return buf;
}

static void send_publish(struct bus_client *c, const char *id, const char *room,
                         const char *channel, const char *text)
{
    bc_send(c, "{s:s, s:s, s:s, s:s, s:{s:s}}", "id", id, "type", "message", "room", room,
            "channel", channel, "payload", "text", text);
}

static void send_command(struct bus_client *c, const char *id, const char *name)
{
    bc_send(c, "{s:s, s:s, s:s}", "id", id, "type", "command", "command", name);
}

/* The answer to `id` (a message_response, response or error); other frames are skipped. */
static json_t *answer(struct bus_client *c, const char *id)
{
    for (;;) {
        json_t *o = bc_recv(c, 5000);
        if (!o)
            fail_msg("%s: no answer to %s (%s)", c->id, id, ws_error(c->ws));
        const char *type = bc_str(o, "type");
        if (!strcmp(bc_str(o, "request_id"), id) &&
            (!strcmp(type, "message_response") || !strcmp(type, "response") ||
             !strcmp(type, "error")))
            return o;
        json_decref(o);
    }
}

/* Publish and expect success. */
static void publish_ok(struct bus_client *c, const char *room, const char *channel,
                       const char *text)
{
    char id[64];
    send_publish(c, next_id(id), room, channel, text);
    json_t *a = answer(c, id);
    if (strcmp(bc_str(a, "type"), "message_response") || strcmp(bc_str(a, "status"), "success")) {
        char *dump = json_dumps(a, JSON_COMPACT);
        fail_msg("publish to %s/%s: %s", room, channel, dump);
    }
    json_decref(a);
}

/* Publish and expect an error frame with `code`; returns it. */
static json_t *publish_refused(struct bus_client *c, const char *room, const char *channel,
                               const char *code)
{
    char id[64];
    send_publish(c, next_id(id), room, channel, "x");
    json_t *a = answer(c, id);
    if (strcmp(bc_str(a, "type"), "error") || strcmp(bc_str(a, "error_code"), code)) {
        char *dump = json_dumps(a, JSON_COMPACT);
        fail_msg("publish to %s/%s: expected %s, got %s", room, channel, code, dump);
    }
    return a;
}

/* The next message frame carries `text`. */
static void expect_message(struct bus_client *c, const char *text)
{
    json_t *m = bc_expect(c, "message", 5000);
    assert_string_equal(bc_str(json_object_get(m, "payload"), "text"), text);
    json_decref(m);
}

/* The server closes `c` with `code` and `reason` (frames before the close are skipped). */
static void expect_closed(struct bus_client *c, int code, const char *reason)
{
    for (;;) {
        int op = ws_recv(c->ws, NULL, NULL, h_ms(5000));
        if (op == WS_OP_CLOSE)
            break;
        if (op < 0)
            fail_msg("%s: no close frame (%s)", c->id, ws_error(c->ws));
    }
    assert_int_equal(ws_close_code(c->ws), code);
    if (reason)
        assert_string_equal(ws_close_reason(c->ws), reason);
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Sleep until the wall clock reads `epoch_ms`. */
static void sleep_until_ms(int64_t epoch_ms)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t left = epoch_ms - ((int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    if (left > 0)
        sleep_ms((uint64_t)left);
}

/* The exp claim of `token` (HS256 with SECRET), in seconds since the epoch. */
static int64_t token_exp(const char *token)
{
    jwt_t *j = NULL;
    assert_int_equal(jwt_decode(&j, token, (const unsigned char *)SECRET, strlen(SECRET)), 0);
    int64_t exp = (int64_t)jwt_get_grant_int(j, "exp");
    jwt_free(j);
    assert_true(exp > 0);
    return exp;
}

/* --- a raw upgrade ------------------------------------------------------------------------- */

/* For what ws_client does not do: offering several subprotocols (it accepts only the one
 * offered string back), and reading the headers of a refused upgrade. */
struct raw {
    int fd;
    int status;
    char head[4096];
    unsigned char buf[65536];
    size_t len;
};

static int raw_fill(struct raw *r, int timeout_ms)
{
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    if (r->len == sizeof r->buf || poll(&p, 1, h_ms(timeout_ms)) <= 0)
        return -1;
    ssize_t n = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
    if (n <= 0)
        return -1;
    r->len += (size_t)n;
    return 0;
}

static void raw_consume(struct raw *r, size_t n)
{
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
}

/* Send an upgrade request for `path` with the extra header `lines` (NULL-terminated) and read
 * the response head (and, for a refusal, its body into r->buf). */
static void raw_upgrade(struct raw *r, int port, const char *path, const char *const *lines)
{
    memset(r, 0, sizeof *r);
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(r->fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[16384];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n",
                     path, port);
    for (size_t i = 0; lines && lines[i]; i++)
        n += snprintf(req + n, sizeof req - (size_t)n, "%s\r\n", lines[i]);
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    assert_true(n < (int)sizeof req);
    assert_int_equal(write(r->fd, req, (size_t)n), n);
    char *end;
    for (;;) {
        r->buf[r->len < sizeof r->buf ? r->len : sizeof r->buf - 1] = '\0';
        if ((end = strstr((char *)r->buf, "\r\n\r\n")))
            break;
        if (raw_fill(r, 5000) != 0)
            fail_msg("no response head to the upgrade");
    }
    size_t headlen = (size_t)(end + 4 - (char *)r->buf);
    assert_true(headlen < sizeof r->head);
    memcpy(r->head, r->buf, headlen);
    r->head[headlen] = '\0';
    raw_consume(r, headlen);
    assert_int_equal(sscanf(r->head, "HTTP/1.%*d %d", &r->status), 1);
    if (r->status == 101)
        return;
    while (raw_fill(r, 2000) == 0) /* the body, until the server closes */
        ;
    r->buf[r->len < sizeof r->buf ? r->len : sizeof r->buf - 1] = '\0';
}

/* The value of a response header, or NULL. */
static const char *raw_header(const struct raw *r, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);
    for (const char *l = strstr(r->head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, name, n) == 0 && l[2 + n] == ':') {
            const char *v = l + 3 + n;
            while (*v == ' ')
                v++;
            snprintf(out, size, "%.*s", (int)strcspn(v, "\r"), v);
            return out;
        }
    }
    return NULL;
}

/* The next text frame from the server (unmasked), as JSON. */
static json_t *raw_recv_json(struct raw *r)
{
    for (;;) {
        size_t need = 2, len = 0;
        if (r->len >= 2) {
            len = r->buf[1] & 0x7F;
            if (len == 126)
                need = 4;
            else if (len == 127)
                need = 10;
            if (r->len >= need) {
                if (need == 4)
                    len = (size_t)r->buf[2] << 8 | r->buf[3];
                else if (need == 10)
                    for (int i = 0; i < 8; i++)
                        len = len << 8 | r->buf[2 + i];
                if (r->len >= need + len) {
                    int op = r->buf[0] & 0x0F;
                    json_t *o = op == WS_OP_TEXT
                                    ? json_loadb((const char *)r->buf + need, len, 0, NULL)
                                    : NULL;
                    raw_consume(r, need + len);
                    if (o)
                        return o;
                    assert_true(op != WS_OP_CLOSE);
                    continue;
                }
            }
        }
        if (raw_fill(r, 5000) != 0)
            fail_msg("no frame from the server");
    }
}

static void raw_send_json(struct raw *r, const char *text)
{
    static const unsigned char mask[4] = {1, 2, 3, 4};
    size_t n;
    unsigned char *frame = ws_build_frame(0x80 | WS_OP_TEXT, mask, text, strlen(text), &n);
    assert_non_null(frame);
    assert_int_equal(write(r->fd, frame, n), (ssize_t)n);
    free(frame);
}

/* --- 1. JWTs refused before the upgrade ---------------------------------------------------- */

static void test_bad_jwts_get_401_with_the_reason_before_the_upgrade(void **state)
{
    struct fixture *f = *state;
    /* RS256 with the public key only: no HMAC key at all. */
    char pub[600];
    snprintf(pub, sizeof pub, "%s/jwt.pub", f->logs);
    h_write(f->logs, "jwt.pub", "%s", keys.pub);
    char auth[1024];
    snprintf(auth, sizeof auth,
             "  jwt:\n    module: auth-jwt\n    config:\n      public_key_file: %s\n", pub);
    struct ports p = start(f, NULL, auth, NULL);

    expect_refused(p.ws, NULL, NULL, NULL, 401, "Unauthorized", "missing token");
    expect_refused(p.ws, NULL, NULL, "not-a-jwt", 401, "Unauthorized", "malformed token");
    expect_refused(p.ws, NULL, NULL, "a.b", 401, "Unauthorized", "malformed token");

    struct {
        char *token;
        const char *reason;
    } bad[] = {
        {jwt_make(JWT_ALG_RS256, keys.priv, (struct claims){.sub = "ann", .exp = -3600}),
         "token expired"},
        {jwt_make(JWT_ALG_RS256, keys.priv, (struct claims){.sub = "ann", .nbf = 3600}),
         "token not yet valid"},
        {jwt_make(JWT_ALG_RS256, keys.other_priv, (struct claims){.sub = "ann"}),
         "invalid signature"},
        {jwt_make(JWT_ALG_NONE, NULL, (struct claims){.sub = "ann"}),
         "algorithm not allowed: none"},
        /* HS256 "signed" with the public key's PEM as the HMAC secret. */
        {jwt_make(JWT_ALG_HS256, keys.pub, (struct claims){.sub = "ann"}),
         "algorithm not allowed: HS256"},
        /* The right key, an algorithm not configured. */
        {jwt_make(JWT_ALG_RS384, keys.priv, (struct claims){.sub = "ann"}),
         "algorithm not allowed: RS384"},
        {jwt_make(JWT_ALG_RS256, keys.priv, (struct claims){.role = "admin"}), "missing sub claim"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        expect_refused(p.ws, NULL, NULL, bad[i].token, 401, "Unauthorized", bad[i].reason);
        /* A bad token in the query is refused the same way. */
        char path[4096];
        snprintf(path, sizeof path, "/?token=%s", bad[i].token);
        expect_refused(p.ws, path, NULL, NULL, 401, "Unauthorized", bad[i].reason);
    }
    /* A valid token gets in. */
    char *good = rs("ann", NULL);
    struct bus_client *c = connect_as(p.ws, good);
    json_t *me = whoami(c);
    assert_string_equal(bc_str(me, "subject"), "ann");
    assert_string_equal(bc_str(me, "role"), "user"); /* auth-jwt's default_role */
    json_decref(me);
    /* No token reaches the log. */
    char *log = h_slurp(f->p.out);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(strstr(log, bad[i].token));
    assert_null(strstr(log, good));
    free(log);

    /* With HS256 accepted too (a secret and the public key), the PEM-as-secret token passes
     * the algorithm check and fails the signature: the key of the other family is never used. */
    snprintf(auth, sizeof auth,
             "  jwt:\n    module: auth-jwt\n    config:\n      secret: " SECRET "\n"
             "      public_key_file: %s\n      algorithms: [HS256, RS256]\n",
             pub);
    reload_auth(f, auth);
    expect_refused(p.ws, NULL, NULL, bad[4].token, 401, "Unauthorized", "invalid signature");
    /* The client admitted before the reload is still there. */
    command_ok(c, "ping", NULL);
    bc_free(c);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        free(bad[i].token);
    free(good);
    assert_int_equal(h_stop(f), 0);
}

/* The query parameters, and the Sec-WebSocket-Protocol entry `bearer.<token>`: read by both
 * policies, but libwebsockets 4.1 takes no Sec-WebSocket-Protocol longer than 126 bytes, so a
 * JWT there is refused with 431 (a short static token of auth-tokens fits). */
static void test_tokens_in_the_query_and_the_bearer_subprotocol(void **state)
{
    struct fixture *f = *state;
    char svc[65], auth[1024];
    sha256_hex("svc-0123456789abcdef", svc);
    snprintf(auth, sizeof auth,
             TOKENS_HEAD "        - {name: svc, sha256: \"%s\", role: user}\n" JWT_HS, svc);
    struct ports p = start(f, NULL, auth, NULL);
    char *tok = hs("qp", "user");
    char *expired = jwt_make(JWT_ALG_HS256, SECRET, (struct claims){.sub = "qp", .exp = -3600});

    char path[2048];
    snprintf(path, sizeof path, "/?token=%s", tok);
    struct bus_client *c = try_connect(p.ws, path, NULL, NULL);
    assert_non_null(c);
    json_t *me = whoami(c);
    assert_string_equal(bc_str(me, "subject"), "qp");
    json_decref(me);
    bc_free(c);
    snprintf(path, sizeof path, "/?x=1&access_token=%s", tok);
    c = try_connect(p.ws, path, NULL, NULL);
    assert_non_null(c);
    bc_free(c);

    /* Offered with the bus's own subprotocol, as browsers do: the server answers with
     * arqonbus.v1 (never echoing the token), and the client is the token's subject. */
    const char *lines[] = {"Sec-WebSocket-Protocol: arqonbus.v1, bearer.svc-0123456789abcdef",
                           NULL};
    struct raw r;
    raw_upgrade(&r, p.ws, "/", lines);
    assert_int_equal(r.status, 101);
    char chosen[256];
    assert_non_null(raw_header(&r, "Sec-WebSocket-Protocol", chosen, sizeof chosen));
    assert_string_equal(chosen, "arqonbus.v1");
    json_t *welcome = raw_recv_json(&r);
    assert_string_equal(bc_str(json_object_get(welcome, "payload"), "welcome"),
                        "Connected to ArqonBus");
    json_decref(welcome);
    raw_send_json(&r, "{\"id\":\"arq_1700000000000_1_abcdef\",\"type\":\"command\","
                      "\"command\":\"whoami\"}");
    json_t *resp = raw_recv_json(&r);
    const json_t *data = json_object_get(json_object_get(resp, "payload"), "data");
    assert_string_equal(bc_str(data, "subject"), "svc");
    assert_string_equal(bc_str(data, "role"), "user");
    json_decref(resp);
    close(r.fd);
    /* A bad token there is refused like any other (auth-tokens defers, auth-jwt refuses). */
    expect_refused(p.ws, NULL, "arqonbus.v1, bearer.not-a-jwt", NULL, 401, "Unauthorized",
                   "malformed token");

    /* A JWT is always longer than libwebsockets reads: refused with a reason, not dropped. */
    char proto[2048];
    snprintf(proto, sizeof proto, "arqonbus.v1, bearer.%s", tok);
    assert_true(strlen(proto) > 126);
    expect_refused(p.ws, NULL, proto, NULL, 431, "Request Header Fields Too Large",
                   "Sec-WebSocket-Protocol is longer than libwebsockets reads (126 bytes): send "
                   "a token in Authorization: Bearer or the token query parameter");
    snprintf(proto, sizeof proto, "arqonbus.v1, bearer.%s", expired);
    expect_refused(p.ws, NULL, proto, NULL, 431, "Request Header Fields Too Large", NULL);

    /* Offering only `bearer.<token>`: libwebsockets 4.1 hangs up on a request none of whose
     * subprotocols it serves, before any token is looked at, without an HTTP answer. */
    c = try_connect(p.ws, NULL, "bearer.svc-0123456789abcdef", NULL);
    assert_null(c);
    assert_int_equal(ws_last_http_status(), 0);
    /* None of it reached the log. */
    char *log = h_slurp(f->p.out);
    assert_null(strstr(log, "svc-0123456789abcdef"));
    assert_null(strstr(log, tok));
    free(log);
    free(tok);
    free(expired);
    assert_int_equal(h_stop(f), 0);
}

/* --- 2. identities ------------------------------------------------------------------------- */

static void test_whoami_shows_the_tokens_role_subject_and_tenant(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, NULL, JWT_HS, NULL);
    char *t1 = jwt_make(JWT_ALG_HS256, SECRET,
                        (struct claims){.sub = "alice", .role = "admin", .tenant = "acme"});
    char *t2 = hs("bob", NULL);
    struct bus_client *a = connect_as(p.ws, t1), *b = connect_as(p.ws, t2);
    json_t *me = whoami(a);
    assert_string_equal(bc_str(me, "role"), "admin");
    assert_string_equal(bc_str(me, "subject"), "alice");
    assert_string_equal(bc_str(me, "tenant"), "acme");
    assert_string_equal(bc_str(me, "client_id"), a->id);
    json_decref(me);
    me = whoami(b);
    assert_string_equal(bc_str(me, "role"), "user");
    assert_string_equal(bc_str(me, "subject"), "bob");
    assert_true(json_is_null(json_object_get(me, "tenant")));
    json_decref(me);
    bc_free(a);
    bc_free(b);
    free(t1);
    free(t2);
    assert_int_equal(h_stop(f), 0);
}

/* A client whose token expires is closed with 1008 when it does (bus.expire_sessions, on by
 * default); one with a later exp goes on; with expire_sessions off, nobody is closed. */
static void test_a_client_is_closed_when_its_token_expires(void **state)
{
    struct fixture *f = *state;
    char tlog[600];
    snprintf(tlog, sizeof tlog, "%s/events.jsonl", f->logs);
    h_write(f->dir, "90-events.yaml",
            "plugins:\n  events:\n    module: telemetry-log\n    config:\n      path: %s\n"
            "      events: [auth_failed]\n",
            tlog);
    struct ports p = start(f, NULL, JWT_HS, NULL);
    char *soon = jwt_make(JWT_ALG_HS256, SECRET, (struct claims){.sub = "brief", .exp = 2});
    char *later = hs("steady", NULL);
    struct bus_client *a = connect_as(p.ws, soon), *b = connect_as(p.ws, later);
    char expired_id[64];
    snprintf(expired_id, sizeof expired_id, "%s", a->id);
    expect_closed(a, WS_CLOSE_POLICY, "Unauthorized: token expired");
    json_t *me = whoami(b); /* still served */
    assert_string_equal(bc_str(me, "subject"), "steady");
    json_decref(me);
    bc_free(a);
    bc_free(b);

    /* Off: an expired token's connection stays. */
    write_conf(f, "  expire_sessions: false\n", JWT_HS, NULL);
    assert_int_equal(h_reload(f), 1);
    free(soon);
    soon = jwt_make(JWT_ALG_HS256, SECRET, (struct claims){.sub = "brief", .exp = 1});
    a = connect_as(p.ws, soon);
    /* Wait for the token's exp to pass and for the once-a-second check to come round after it;
     * then whoami is the marker: had the check closed the client, the close would come first. */
    sleep_until_ms(token_exp(soon) * 1000 + 1200);
    me = whoami(a);
    assert_string_equal(bc_str(me, "subject"), "brief");
    json_decref(me);
    assert_int_equal(h_stop(f), 0);

    /* The telemetry (the stop hands every event to the sinks first): the one expiry, of the
     * first client, and nothing of the one kept while expire_sessions was off. */
    char *events = h_slurp(tlog);
    int expiries = 0;
    for (char *line = strtok(events, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *ev = json_loads(line, 0, NULL);
        assert_non_null(ev);
        const json_t *data = json_object_get(ev, "data");
        if (!strcmp(bc_str(data, "stage"), "session")) {
            expiries++;
            assert_string_equal(bc_str(ev, "client_id"), expired_id);
            assert_string_equal(bc_str(data, "reason"), "token expired");
        }
        json_decref(ev);
    }
    free(events);
    assert_int_equal(expiries, 1);
    bc_free(a);
    free(soon);
    free(later);
}

/* --- 3. the auth-rbac default roles -------------------------------------------------------- */

static void test_guest_user_and_admin_get_the_rbac_defaults(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, "  default_role: guest\n", JWT_HS_OPTIONAL RBAC, NULL);
    char *ut = hs("uma", "user"), *at = hs("ada", "admin");
    struct bus_client *g = connect_as(p.ws, NULL), *u = connect_as(p.ws, ut);
    struct bus_client *u2 = connect_as(p.ws, ut), *a = connect_as(p.ws, at);

    /* guest: the @guest commands, joins and history in public* only, no publish, no direct. */
    json_t *me = whoami(g);
    assert_string_equal(bc_str(me, "role"), "guest");
    assert_true(json_is_null(json_object_get(me, "subject")));
    json_decref(me);
    command_ok(g, "ping", NULL);
    command_ok(g, "list_rooms", NULL);
    bc_join(g, "public-lobby", "general");
    expect_command_error(g, "AUTHORIZATION_ERROR", "role guest may not join lobby/general",
                         "join_channel", "{s:s, s:s}", "room", "lobby", "channel", "general");
    expect_command_error(g, "AUTHORIZATION_ERROR", "role guest may not join lobby", "join_room",
                         "{s:s}", "room", "lobby");
    json_t *e = publish_refused(g, "public-lobby", "general", "AUTHORIZATION_ERROR");
    assert_string_equal(bc_str(e, "error"), "role guest may not publish to public-lobby/general");
    json_decref(e);
    bc_send(g, "{s:s, s:s, s:s}", "type", "message", "to_client", u->id, "payload", "psst");
    e = bc_expect(g, "error", 5000);
    assert_string_equal(bc_str(e, "error_code"), "AUTHORIZATION_ERROR");
    assert_string_equal(bc_str(e, "error"), "role guest may not send direct messages");
    json_decref(e);
    expect_command_error(g, "AUTHORIZATION_ERROR", "role guest may not run command create_channel",
                         "create_channel", "{s:s, s:s}", "room", "public-lobby", "channel", "x");
    expect_command_error(g, "AUTHORIZATION_ERROR", "role guest may not run command reload",
                         "reload", NULL);
    command_ok(g, "history", "{s:s, s:s}", "room", "public-lobby", "channel", "general");
    expect_command_error(g, "AUTHORIZATION_ERROR",
                         "role guest may not read the history of lobby/general", "history",
                         "{s:s, s:s}", "room", "lobby", "channel", "general");

    /* user: joins, publishes, history, direct; no admin commands. */
    bc_join(u, "lobby", "general");
    bc_join(u2, "lobby", "general");
    publish_ok(u, "lobby", "general", "hello");
    expect_message(u2, "hello");
    command_ok(u, "history", "{s:s, s:s}", "room", "lobby", "channel", "general");
    bc_send(u, "{s:s, s:s, s:s}", "type", "message", "to_client", u2->id, "payload", "psst");
    json_decref(bc_expect(u2, "message", 5000));
    const char *admin_only[] = {"delete_channel", "disconnect_client", "reload"};
    for (size_t i = 0; i < 3; i++) {
        char text[96];
        snprintf(text, sizeof text, "role user may not run command %s", admin_only[i]);
        expect_command_error(u, "AUTHORIZATION_ERROR", text, admin_only[i], NULL);
    }
    /* The guest in public-lobby gets what users publish there. */
    bc_join(u, "public-lobby", "general");
    publish_ok(u, "public-lobby", "general", "welcome, guest");
    expect_message(g, "welcome, guest");

    /* admin: everything. */
    bc_join(a, "lobby", "random");
    command_ok(a, "delete_channel", "{s:s, s:s, s:b}", "room", "lobby", "channel", "random",
               "force", 1);
    json_t *r;
    const json_t *data = bc_command_ok(a, &r, "reload", NULL);
    assert_true(json_integer_value(json_object_get(data, "generation")) >= 2);
    json_decref(r);
    f->reloads++; /* the reload the command asked for */
    command_ok(a, "disconnect_client", "{s:s}", "client_id", u2->id);
    expect_closed(u2, 1008, NULL);
    bc_free(g);
    bc_free(u);
    bc_free(u2);
    bc_free(a);
    free(ut);
    free(at);
    assert_int_equal(h_stop(f), 0);
}

/* --- 4. reloads reach connected clients ---------------------------------------------------- */

static void test_reload_applies_roles_and_tokens_to_connected_clients(void **state)
{
    struct fixture *f = *state;
    char svc[65], gone[65], auth[2048];
    sha256_hex("svc-token-0123456789", svc);
    sha256_hex("gone-token-0123456789", gone);
    snprintf(auth, sizeof auth,
             TOKENS_HEAD
             "        - {name: svc, sha256: \"%s\", role: user}\n"
             "        - {name: gone, sha256: \"%s\", role: user, tenant: t1}\n" JWT_HS RBAC
             "    config:\n      roles:\n        moderator:\n          inherits: user\n",
             svc, gone);
    struct ports p = start(f, NULL, auth, NULL);
    char *ut = hs("uma", "user"), *mt = hs("mo", "moderator");
    struct bus_client *u = connect_as(p.ws, ut), *m = connect_as(p.ws, mt);
    struct bus_client *s = connect_as(p.ws, "svc-token-0123456789");
    struct bus_client *g = connect_as(p.ws, "gone-token-0123456789");
    json_t *me = whoami(s);
    assert_string_equal(bc_str(me, "subject"), "svc");
    assert_string_equal(bc_str(me, "role"), "user");
    json_decref(me);
    me = whoami(g);
    assert_string_equal(bc_str(me, "tenant"), "t1");
    json_decref(me);
    bc_join(u, "news", "general");
    bc_join(u, "chat", "general");
    publish_ok(u, "news", "general", "before");
    bc_join(m, "chat", "random");
    expect_command_error(m, "AUTHORIZATION_ERROR",
                         "role moderator may not run command delete_channel", "delete_channel",
                         "{s:s, s:s, s:b}", "room", "chat", "channel", "random", "force", 1);
    expect_command_error(s, "AUTHORIZATION_ERROR", "role user may not run command reload", "reload",
                         NULL);

    /* Users may no longer publish to news*; moderators may delete channels; svc becomes an
     * admin; gone is gone. */
    snprintf(auth, sizeof auth,
             TOKENS_HEAD "        - {name: svc, sha256: \"%s\", role: admin}\n" JWT_HS RBAC
                         "    config:\n      roles:\n"
                         "        user:\n          publish: [\"**\", \"!news*\", \"!news*/*\"]\n"
                         "        moderator:\n          inherits: user\n"
                         "          commands: [delete_channel]\n",
             svc);
    reload_auth(f, auth);

    json_t *e = publish_refused(u, "news", "general", "AUTHORIZATION_ERROR");
    assert_string_equal(bc_str(e, "error"), "role user may not publish to news/general");
    json_decref(e);
    publish_ok(u, "chat", "general", "still here");
    command_ok(m, "delete_channel", "{s:s, s:s, s:b}", "room", "chat", "channel", "random", "force",
               1);
    me = whoami(s);
    assert_string_equal(bc_str(me, "role"), "admin");
    assert_string_equal(bc_str(me, "subject"), "svc");
    json_decref(me);
    json_t *r;
    bc_command_ok(s, &r, "reload", NULL);
    json_decref(r);
    f->reloads++;
    expect_closed(g, 1008, "Unauthorized: token revoked");
    /* A revoked token cannot come back. */
    expect_refused(p.ws, NULL, NULL, "gone-token-0123456789", 401, "Unauthorized", NULL);
    /* None of the others was dropped. */
    command_ok(u, "ping", NULL);
    command_ok(m, "ping", NULL);
    bc_free(u);
    bc_free(m);
    bc_free(s);
    bc_free(g);
    free(ut);
    free(mt);
    assert_int_equal(h_stop(f), 0);
}

/* --- 5. rate limits ------------------------------------------------------------------------ */

static uint64_t retry_after(const json_t *error)
{
    const json_t *v = json_object_get(json_object_get(error, "payload"), "retry_after_ms");
    assert_true(json_is_integer(v));
    assert_true(json_integer_value(v) > 0);
    return (uint64_t)json_integer_value(v);
}

static void test_rate_limits_refuse_with_retry_after_and_recover(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, NULL,
                           JWT_HS RBAC "    config:\n      roles:\n        user:\n"
                                       "          limits:\n"
                                       "            messages_per_second: 2\n"
                                       "            messages_burst: 2\n"
                                       "            commands_per_second: 2\n"
                                       "            commands_burst: 2\n",
                           NULL);
    char *ut = hs("uma", "user");
    struct bus_client *pub = connect_as(p.ws, ut), *cmd = connect_as(p.ws, ut);
    struct bus_client *sub = connect_as(p.ws, ut);
    bc_join(pub, "lobby", "general");
    bc_join(sub, "lobby", "general");

    /* Messages: three at once; the burst lets two through. */
    char ids[3][64];
    for (int i = 0; i < 3; i++)
        send_publish(pub, next_id(ids[i]), "lobby", "general", "m");
    for (int i = 0; i < 2; i++) {
        json_t *a = answer(pub, ids[i]);
        assert_string_equal(bc_str(a, "type"), "message_response");
        json_decref(a);
    }
    json_t *e = answer(pub, ids[2]);
    assert_string_equal(bc_str(e, "type"), "error");
    assert_string_equal(bc_str(e, "error_code"), "RATE_LIMITED");
    assert_non_null(strstr(bc_str(e, "error"), "message rate limit: 2/s, burst 2"));
    uint64_t wait = retry_after(e);
    assert_true(wait <= 500);
    json_decref(e);
    expect_message(sub, "m");
    expect_message(sub, "m");
    sleep_ms(wait);
    publish_ok(pub, "lobby", "general", "again");
    expect_message(sub, "again");

    /* Commands the same way. */
    for (int i = 0; i < 3; i++)
        send_command(cmd, next_id(ids[i]), "ping");
    for (int i = 0; i < 2; i++) {
        json_t *a = answer(cmd, ids[i]);
        assert_string_equal(bc_str(a, "status"), "success");
        json_decref(a);
    }
    e = answer(cmd, ids[2]);
    assert_string_equal(bc_str(e, "status"), "error");
    assert_string_equal(bc_str(e, "error_code"), "RATE_LIMITED");
    assert_non_null(strstr(bc_str(e, "error"), "command rate limit: 2/s, burst 2"));
    wait = retry_after(e);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(e, "payload"), "data"), "retry_after_ms")),
                     (json_int_t)wait);
    json_decref(e);
    sleep_ms(wait);
    command_ok(cmd, "ping", NULL);
    bc_free(pub);
    bc_free(cmd);
    bc_free(sub);
    free(ut);
    assert_int_equal(h_stop(f), 0);
}

/* --- 6. connection limits ------------------------------------------------------------------ */

/* Connect, retrying while refused with `status` (a closed connection is counted out once the
 * server has seen it go). */
static struct bus_client *connect_when_allowed(int port, int status)
{
    for (int waited = 0; waited < h_ms(5000); waited += 20) {
        struct bus_client *c = try_connect(port, NULL, NULL, NULL);
        if (c)
            return c;
        assert_int_equal(ws_last_http_status(), status);
        sleep_ms(20);
    }
    fail_msg("still refused with %d", status);
    return NULL;
}

static void test_connection_limits_refuse_before_the_upgrade(void **state)
{
    struct fixture *f = *state;
    /* Set by a reload while two clients are connected: they count. */
    struct ports p = start(f, NULL, NULL, NULL);
    struct bus_client *a = connect_as(p.ws, NULL), *b = connect_as(p.ws, NULL);
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\nbus:\n  max_connections_per_ip: 2\n",
            ARQ_BUILD_PLUGIN_DIR);
    assert_int_equal(h_reload(f), 1);
    expect_refused(p.ws, NULL, NULL, NULL, 429, "Too Many Requests",
                   "too many connections from 127.0.0.1 (at most 2)");
    struct raw r;
    raw_upgrade(&r, p.ws, "/", NULL);
    assert_int_equal(r.status, 429);
    char v[64];
    assert_string_equal(raw_header(&r, "Retry-After", v, sizeof v), "1");
    assert_string_equal(raw_header(&r, "Content-Type", v, sizeof v), "application/json");
    close(r.fd);
    ws_close(a->ws, 1000, NULL);
    bc_free(a);
    a = connect_when_allowed(p.ws, 429);
    expect_refused(p.ws, NULL, NULL, NULL, 429, "Too Many Requests", NULL);

    /* The whole server: 503. */
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\nbus:\n  max_connections: 2\n",
            ARQ_BUILD_PLUGIN_DIR);
    assert_int_equal(h_reload(f), 1);
    expect_refused(p.ws, NULL, NULL, NULL, 503, "Service Unavailable",
                   "the server holds its maximum of 2 connections");
    ws_close(b->ws, 1000, NULL);
    bc_free(b);
    b = connect_when_allowed(p.ws, 503);
    ws_close(a->ws, 1000, NULL);
    ws_close(b->ws, 1000, NULL);
    bc_free(a);
    bc_free(b);

    /* The connection rate per address: a burst of 2, then one every 2 s. */
    h_write(f->dir, "00-host.yaml",
            "host:\n  plugin_dir: %s\nbus:\n  connection_rate_per_ip: 0.5\n"
            "  connection_burst_per_ip: 2\n",
            ARQ_BUILD_PLUGIN_DIR);
    assert_int_equal(h_reload(f), 1);
    a = connect_as(p.ws, NULL);
    b = connect_as(p.ws, NULL);
    /* The next is refused (or, on a machine slow enough for a token to come back meanwhile,
     * one of the few after it). */
    int extra[4];
    size_t nextra = 0;
    for (raw_upgrade(&r, p.ws, "/", NULL); r.status == 101 && nextra < 4;
         raw_upgrade(&r, p.ws, "/", NULL))
        extra[nextra++] = r.fd;
    assert_int_equal(r.status, 429);
    assert_non_null(strstr((char *)r.buf, "connection rate from 127.0.0.1 over 0.5/s"));
    assert_non_null(raw_header(&r, "Retry-After", v, sizeof v));
    int secs = atoi(v);
    assert_true(secs >= 1 && secs <= 2);
    close(r.fd);
    sleep_ms((uint64_t)secs * 1000);
    struct bus_client *c = connect_as(p.ws, NULL);
    bc_free(a);
    bc_free(b);
    bc_free(c);
    for (size_t i = 0; i < nextra; i++)
        close(extra[i]);
    assert_int_equal(h_stop(f), 0);
}

/* --- metrics ------------------------------------------------------------------------------ */

static double sample(const struct prom_doc *d, const char *name, const char *label,
                     const char *value)
{
    double v = 0;
    if (prom_value(d, &v, name, label, value, (const char *)NULL) != 1)
        fail_msg("no sample %s{%s=\"%s\"}", name, label ? label : "", value ? value : "");
    return v;
}

/* --- 7. abuse ------------------------------------------------------------------------------ */

static void test_abusive_client_is_closed_while_others_go_on(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, NULL,
                           JWT_HS RBAC "    config:\n      abuse_threshold: 3\n"
                                       "      roles:\n        user:\n          limits:\n"
                                       "            messages_per_minute: 1\n"
                                       "            messages_burst: 1\n",
                           ""); /* the HTTP API, for /metrics */
    struct prom_doc m = h_scrape(p.http);
    assert_true(sample(&m, "arqonbus_abuse_disconnects_total", NULL, NULL) == 0);
    prom_free(&m);
    char *ta = hs("abuser", "user"), *tb = hs("bea", "user"), *tc = hs("cy", "user");
    struct bus_client *a = connect_as(p.ws, ta), *b = connect_as(p.ws, tb);
    struct bus_client *c = connect_as(p.ws, tc);
    bc_join(a, "chat", "general");
    bc_join(b, "chat", "general");
    bc_join(c, "chat", "general");
    /* One message a minute: the first goes through, then every attempt is refused, and the
     * third refusal marks the client abusive. */
    publish_ok(a, "chat", "general", "spam");
    for (int i = 0; i < 2; i++) {
        json_t *e = publish_refused(a, "chat", "general", "RATE_LIMITED");
        assert_true(retry_after(e) > 1000);
        json_decref(e);
    }
    char id[64];
    send_publish(a, next_id(id), "chat", "general", "x");
    expect_closed(a, 1008, "rate limit abuse");
    expect_message(b, "spam");
    expect_message(c, "spam");
    /* The others, of the same role, publish and receive as before. */
    publish_ok(b, "chat", "general", "from b");
    expect_message(c, "from b");
    /* ...and b's next message after "spam" is c's: nothing more of the abuser's came. */
    publish_ok(c, "chat", "general", "from c");
    expect_message(b, "from c");
    m = h_scrape(p.http);
    assert_true(sample(&m, "arqonbus_abuse_disconnects_total", NULL, NULL) == 1);
    prom_free(&m);
    bc_free(a);
    bc_free(b);
    bc_free(c);
    free(ta);
    free(tb);
    free(tc);
    assert_int_equal(h_stop(f), 0);
}

/* --- 8. the HTTP API ----------------------------------------------------------------------- */

static struct http_resp post(int port, const char *path, const char *const *headers)
{
    struct http_resp r;
    char err[256];
    if (http_request("127.0.0.1", port, "POST", path, headers, NULL, 0, h_ms(5000), &r, err,
                     sizeof err) != 0)
        fail_msg("POST %s: %s", path, err);
    return r;
}

/* POST `path` with `header` (NULL: none): the status and (when not NULL) the details. */
static void expect_post(struct fixture *f, int port, const char *path, const char *header,
                        int status, const char *details)
{
    char line[4096];
    snprintf(line, sizeof line, "%s", header ? header : "");
    const char *headers[] = {header ? line : NULL, NULL};
    h_notify_poll(&f->p);
    int ok_before = f->p.notified.reloads_ok;
    struct http_resp r = post(port, path, headers);
    if (r.status != status)
        fail_msg("POST %s with %.40s: expected %d, got %d: %s", path, header ? header : "nothing",
                 status, r.status, r.body);
    json_t *body = json_loadb(r.body, r.body_len, 0, NULL);
    assert_non_null(body);
    char challenge[128];
    if (status == 401)
        assert_string_equal(http_header(&r, "WWW-Authenticate", challenge, sizeof challenge),
                            "Bearer realm=\"arqonbus\"");
    if (details) /* the HTTP API's error body: {"error", "error_code"} */
        assert_string_equal(bc_str(body, "error"), details);
    json_decref(body);
    http_resp_free(&r);
    if (status == 200 && !strcmp(path, "/admin/reload")) {
        f->reloads++;
        assert_int_equal(h_wait_reloads(&f->p, f->reloads, 10000), 0);
        assert_int_equal(f->p.notified.reloads_ok, ok_before + 1);
    }
}

static void test_http_api_takes_admin_tokens_and_the_api_key(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f, NULL, JWT_HS RBAC, "      api_key: " KEY "\n");
    char *at = hs("ada", "admin"), *ut = hs("uma", "user");
    char *expired = jwt_make(JWT_ALG_HS256, SECRET, (struct claims){.sub = "ada", .exp = -3600});
    char admin[1024], user[1024], old[1024];
    snprintf(admin, sizeof admin, "Authorization: Bearer %s", at);
    snprintf(user, sizeof user, "Authorization: Bearer %s", ut);
    snprintf(old, sizeof old, "Authorization: Bearer %s", expired);
    for (int keyed = 1; keyed >= 0; keyed--) {
        expect_post(f, p.http, "/admin/reload", admin, 200, NULL);
        expect_post(f, p.http, "/admin/reload", user, 403, "role user may not run command reload");
        expect_post(f, p.http, "/admin/reload", NULL, 401, NULL);
        expect_post(f, p.http, "/admin/reload", old, 401,
                    "Invalid API key or token: token expired");
        expect_post(f, p.http, "/publish", user, 403, "role user may not run command publish");
        if (keyed) {
            expect_post(f, p.http, "/admin/reload", "X-API-Key: " KEY, 200, NULL);
            expect_post(f, p.http, "/admin/reload", "Authorization: Bearer " KEY, 200, NULL);
            /* Now without an API key: tokens alone open the keyed endpoints. */
            h_write(f->dir, "40-http.yaml",
                    "plugins:\n  http:\n    module: transport-http\n    config:\n"
                    "      host: 127.0.0.1\n      port: %d\n",
                    p.http);
            assert_int_equal(h_reload(f), 1);
        } else {
            expect_post(f, p.http, "/admin/reload", "X-API-Key: " KEY, 401, NULL);
        }
    }
    free(at);
    free(ut);
    free(expired);
    assert_int_equal(h_stop(f), 0);
}

/* --- 9. metrics and events ----------------------------------------------------------------- */

static void test_auth_metrics_and_events_move_with_refusals(void **state)
{
    struct fixture *f = *state;
    char tlog[600], tconf[1024];
    snprintf(tlog, sizeof tlog, "%s/events.jsonl", f->logs);
    snprintf(tconf, sizeof tconf,
             "plugins:\n  events:\n    module: telemetry-log\n    config:\n      path: %s\n"
             "      events: [auth_failed, rate_limited]\n",
             tlog);
    h_write(f->dir, "90-events.yaml", "%s", tconf);
    struct ports p = start(f, "  default_role: guest\n",
                           JWT_HS_OPTIONAL RBAC "    config:\n      roles:\n        user:\n"
                                                "          limits:\n"
                                                "            messages_per_minute: 1\n"
                                                "            messages_burst: 1\n",
                           "      api_key: " KEY "\n");
    struct prom_doc before = h_scrape(p.http);
    static const char *const stages[] = {"handshake", "action"};
    static const char *const kinds[] = {"messages", "commands", "connections"};
    for (int i = 0; i < 2; i++)
        assert_true(sample(&before, "arqonbus_auth_failures_total", "stage", stages[i]) == 0);
    for (int i = 0; i < 3; i++)
        assert_true(sample(&before, "arqonbus_rate_limit_hits_total", "kind", kinds[i]) == 0);

    /* One refused handshake, two refused actions, one rate-limited message. */
    char *expired = jwt_make(JWT_ALG_HS256, SECRET, (struct claims){.sub = "x", .exp = -3600});
    expect_refused(p.ws, NULL, NULL, expired, 401, "Unauthorized", "token expired");
    struct bus_client *g = connect_as(p.ws, NULL);
    json_decref(publish_refused(g, "public", "general", "AUTHORIZATION_ERROR"));
    expect_command_error(g, "AUTHORIZATION_ERROR", NULL, "join_channel", "{s:s, s:s}", "room",
                         "lobby", "channel", "general");
    char *ut = hs("uma", "user");
    struct bus_client *u = connect_as(p.ws, ut);
    bc_join(u, "lobby", "general");
    char ids[3][64];
    for (int i = 0; i < 3; i++)
        send_publish(u, next_id(ids[i]), "lobby", "general", "m");
    for (int i = 0; i < 3; i++) {
        json_t *a = answer(u, ids[i]);
        assert_string_equal(bc_str(a, "type"), i ? "error" : "message_response");
        if (i)
            assert_string_equal(bc_str(a, "error_code"), "RATE_LIMITED");
        json_decref(a);
    }

    struct prom_doc after = h_scrape(p.http);
    assert_true(sample(&after, "arqonbus_auth_failures_total", "stage", "handshake") == 1);
    assert_true(sample(&after, "arqonbus_auth_failures_total", "stage", "action") == 2);
    assert_true(sample(&after, "arqonbus_rate_limit_hits_total", "kind", "messages") == 2);
    assert_true(sample(&after, "arqonbus_rate_limit_hits_total", "kind", "commands") == 0);
    /* The plugins count too: auth-jwt by reason, auth-rbac by action and kind. */
    double v = 0;
    assert_int_equal(prom_value(&after, &v, "arqonbus_auth_jwt_refused_total", "reason", "expired",
                                (const char *)NULL),
                     1);
    assert_true(v == 1);
    assert_int_equal(prom_value(&after, &v, "arqonbus_auth_rbac_denied_total", "action", "publish",
                                (const char *)NULL),
                     1);
    assert_true(v == 1);
    assert_int_equal(prom_value(&after, &v, "arqonbus_rate_limited_total", "kind", "messages",
                                (const char *)NULL),
                     1);
    assert_true(v == 2);

    /* The telemetry events, one per refusal. */
    assert_int_equal(h_stop(f), 0);
    char *events = h_slurp(tlog);
    int handshake = 0, action = 0, limited = 0;
    for (char *line = strtok(events, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *ev = json_loads(line, 0, NULL);
        assert_non_null(ev);
        const json_t *data = json_object_get(ev, "data");
        if (!strcmp(bc_str(ev, "event_type"), "auth_failed")) {
            if (!strcmp(bc_str(data, "stage"), "handshake")) {
                handshake++;
                assert_string_equal(bc_str(data, "reason"), "token expired");
                assert_int_equal(json_integer_value(json_object_get(data, "status")), 401);
            } else {
                action++;
                assert_string_equal(bc_str(ev, "client_id"), g->id);
            }
        } else if (!strcmp(bc_str(ev, "event_type"), "rate_limited")) {
            limited++;
            assert_string_equal(bc_str(data, "kind"), "messages");
            assert_true(json_integer_value(json_object_get(data, "retry_after_ms")) > 0);
        }
        json_decref(ev);
    }
    free(events);
    assert_int_equal(handshake, 1);
    assert_int_equal(action, 2);
    assert_int_equal(limited, 2);
    prom_free(&before);
    prom_free(&after);
    bc_free(g);
    bc_free(u);
    free(ut);
    free(expired);
}

/* --- 10. hardening ------------------------------------------------------------------------- */

static void test_names_depth_rooms_and_memberships_are_bounded(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f,
                           "  max_name_length: 8\n  max_payload_depth: 3\n  max_rooms: 3\n"
                           "  max_memberships: 4\n",
                           NULL, NULL);
    struct bus_client *c = connect_as(p.ws, NULL), *d = connect_as(p.ws, NULL);
    expect_command_error(c, "VALIDATION_ERROR", "Invalid room name: roomname9", "join_channel",
                         "{s:s, s:s}", "room", "roomname9", "channel", "general");
    expect_command_error(c, "VALIDATION_ERROR", "Invalid channel name: channel12", "join_channel",
                         "{s:s, s:s}", "room", "room8", "channel", "channel12");
    bc_join(c, "room8888", "general");
    json_t *e = publish_refused(c, "roomname9", "general", "VALIDATION_ERROR");
    json_decref(e);

    /* Depth: three levels pass, four do not (payload, metadata and args alike). */
    char id[64];
    bc_send(c, "{s:s, s:s, s:s, s:s, s:{s:{s:[]}}}", "id", next_id(id), "type", "message", "room",
            "room8888", "channel", "general", "payload", "a", "b", "c");
    json_t *a = answer(c, id);
    assert_string_equal(bc_str(a, "status"), "success");
    json_decref(a);
    bc_send(c, "{s:s, s:s, s:s, s:s, s:{s:{s:[[]]}}}", "id", next_id(id), "type", "message", "room",
            "room8888", "channel", "general", "payload", "a", "b", "c");
    a = answer(c, id);
    assert_string_equal(bc_str(a, "error_code"), "VALIDATION_ERROR");
    assert_string_equal(bc_str(a, "error"), "Field 'payload' is nested deeper than 3 levels");
    json_decref(a);
    bc_send(c, "{s:s, s:s, s:s, s:{s:{s:{s:[[]]}}}}", "id", next_id(id), "type", "command",
            "command", "ping", "args", "a", "b", "c");
    a = answer(c, id);
    assert_string_equal(bc_str(a, "error_code"), "VALIDATION_ERROR");
    json_decref(a);

    /* Rooms: three exist, a fourth is refused, an existing one can still be joined. */
    bc_join(c, "r2", "general");
    bc_join(c, "r3", "general");
    expect_command_error(d, "EXECUTION_ERROR", "The bus holds its maximum of 3 rooms",
                         "join_channel", "{s:s, s:s}", "room", "r4", "channel", "general");
    bc_join(d, "r3", "general");
    /* Memberships per connection: c holds 3, a fourth is allowed, a fifth is not. */
    bc_join(c, "r3", "random");
    expect_command_error(c, "EXECUTION_ERROR", "Too many memberships (at most 4 per connection)",
                         "join_channel", "{s:s, s:s}", "room", "r2", "channel", "random");
    command_ok(c, "ping", NULL);
    bc_free(c);
    bc_free(d);
    assert_int_equal(h_stop(f), 0);
}

/* --- 11. the shipped conf.d ---------------------------------------------------------------- */

/* Copy the repository's conf.d into the fixture. */
static void copy_shipped_conf(const struct fixture *f)
{
    static const char *const files[] = {"00-host.yaml",
                                        "05-bus.yaml",
                                        "10-websocket.yaml",
                                        "20-commands.yaml",
                                        "30-storage.yaml",
                                        "40-http.yaml",
                                        "50-telemetry-websocket.yaml",
                                        "60-auth.yaml",
                                        "90-telemetry-log.yaml",
                                        NULL};
    for (size_t i = 0; files[i]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/conf.d/%s", ARQ_SOURCE_DIR, files[i]);
        char *text = h_slurp(path);
        assert_true(strlen(text) > 0);
        h_write(f->dir, files[i], "%s", text);
        free(text);
    }
}

/* ARQONBUS_SERVER_PORT and ARQONBUS_HTTP_PORT for the ports chosen for `ws` and `http`. */
static void port_env(struct fixture *f, char ws[40], char http[40])
{
    snprintf(ws, 40, "ARQONBUS_SERVER_PORT=%d", h_port(&f->p, "ws"));
    snprintf(http, 40, "ARQONBUS_HTTP_PORT=%d", h_port(&f->p, "http"));
}

/* The process listens on `ws` and `http`, each on 127.0.0.1, and on nothing else. */
static void expect_listening_on_loopback(struct fixture *f, int ws, int http)
{
    assert_int_equal(h_wait_ready(&f->p), 0);
    struct h_listener l[4];
    assert_int_equal(h_listeners(f->p.pid, l, 4), 2);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(l[i].addr, "127.0.0.1");
        assert_true(l[i].port == ws || l[i].port == http);
    }
    assert_true(l[0].port != l[1].port);
}

static void test_shipped_conf_d_with_and_without_auth(void **state)
{
    struct fixture *f = *state;
    copy_shipped_conf(f);
    char ws_env[40], http_env[40];
    port_env(f, ws_env, http_env);
    const char *const env[] = {"ARQONBUS_PLUGIN_DIR=" ARQ_BUILD_PLUGIN_DIR,
                               "ARQONBUS_SERVER_HOST=127.0.0.1",
                               ws_env,
                               "ARQONBUS_HTTP_HOST=127.0.0.1",
                               http_env,
                               "ARQONBUS_ENABLE_AUTH=true",
                               "ARQONBUS_AUTH_JWT_SECRET=" SECRET,
                               "ARQONBUS_RATE_LIMIT_PER_MINUTE=120",
                               NULL};
    h_spawn(&f->p, f->dir, f->logs, NULL, env);
    int ws = h_component_port(&f->p, "ws"), http = h_component_port(&f->p, "http");
    expect_listening_on_loopback(f, ws, http);
    expect_refused(ws, NULL, NULL, NULL, 401, "Unauthorized", "missing token");
    char *ut = hs("uma", NULL);
    struct bus_client *u = connect_as(ws, ut);
    json_t *me = whoami(u);
    assert_string_equal(bc_str(me, "role"), "user");
    json_decref(me);
    bc_join(u, "lobby", "general");
    /* 120/min is 2/s, but the built-in user burst of 200 stays (only the rate was set): 200
     * go at once, and of ten more (each needing half a second of refill) some are refused. */
    enum { N = 210 };
    static char ids[N][64];
    for (int i = 0; i < N; i++)
        send_publish(u, next_id(ids[i]), "lobby", "general", "m");
    int refused = 0;
    for (int i = 0; i < N; i++) {
        json_t *a = answer(u, ids[i]);
        if (i < 200 && strcmp(bc_str(a, "type"), "message_response") != 0)
            fail_msg("message %d of the burst refused: %s", i, bc_str(a, "error"));
        if (i >= 200 && !strcmp(bc_str(a, "error_code"), "RATE_LIMITED")) {
            refused++;
            assert_non_null(strstr(bc_str(a, "error"), "message rate limit: 120/min, burst 200"));
            assert_true(retry_after(a) <= 500);
        }
        json_decref(a);
    }
    assert_true(refused > 0);
    /* After the advertised wait, the next message goes through (unless the refill already
     * came while the answers were read). */
    char id[64];
    send_publish(u, next_id(id), "lobby", "general", "probe");
    json_t *e = answer(u, id);
    if (!strcmp(bc_str(e, "error_code"), "RATE_LIMITED")) {
        sleep_ms(retry_after(e));
        publish_ok(u, "lobby", "general", "after the wait");
    } else {
        assert_string_equal(bc_str(e, "type"), "message_response");
    }
    json_decref(e);
    bc_free(u);
    /* The HTTP API has no api_key there: an admin token opens it, a user token does not. */
    char *at = hs("ada", "admin");
    char admin[1024], user[1024];
    snprintf(admin, sizeof admin, "Authorization: Bearer %s", at);
    snprintf(user, sizeof user, "Authorization: Bearer %s", ut);
    expect_post(f, http, "/admin/reload", admin, 200, NULL);
    expect_post(f, http, "/admin/reload", user, 403, "role user may not run command reload");
    expect_post(f, http, "/admin/reload", NULL, 401, "A token is required: missing token");
    free(at);
    assert_int_equal(h_stop(f), 0);

    /* Without ARQONBUS_ENABLE_AUTH: no token needed, every client is a user. */
    h_port_forget(&f->p, "ws");
    h_port_forget(&f->p, "http");
    port_env(f, ws_env, http_env);
    const char *const env_off[] = {"ARQONBUS_PLUGIN_DIR=" ARQ_BUILD_PLUGIN_DIR, ws_env, http_env,
                                   NULL};
    h_spawn(&f->p, f->dir, f->logs, NULL, env_off);
    ws = h_component_port(&f->p, "ws");
    http = h_component_port(&f->p, "http");
    expect_listening_on_loopback(f, ws, http); /* the shipped default address */
    /* ... and the HTTP API's keyed endpoints are disabled (no api_key, no policy). */
    expect_post(f, http, "/admin/reload", NULL, 403,
                "This endpoint is disabled: no api_key is configured for the HTTP API");
    u = connect_as(ws, NULL);
    me = whoami(u);
    assert_string_equal(bc_str(me, "role"), "user");
    assert_true(json_is_null(json_object_get(me, "subject")));
    json_decref(me);
    bc_join(u, "lobby", "general");
    publish_ok(u, "lobby", "general", "open");
    /* A token is ignored: no policy reads it. */
    struct bus_client *v = connect_as(ws, ut);
    me = whoami(v);
    assert_true(json_is_null(json_object_get(me, "subject")));
    json_decref(me);
    bc_free(u);
    bc_free(v);
    free(ut);
    assert_int_equal(h_stop(f), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_jwts_get_401_with_the_reason_before_the_upgrade,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_tokens_in_the_query_and_the_bearer_subprotocol,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_a_client_is_closed_when_its_token_expires, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_whoami_shows_the_tokens_role_subject_and_tenant,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_guest_user_and_admin_get_the_rbac_defaults, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_reload_applies_roles_and_tokens_to_connected_clients,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_rate_limits_refuse_with_retry_after_and_recover,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_connection_limits_refuse_before_the_upgrade, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_abusive_client_is_closed_while_others_go_on, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_http_api_takes_admin_tokens_and_the_api_key, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_auth_metrics_and_events_move_with_refusals, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_names_depth_rooms_and_memberships_are_bounded, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_shipped_conf_d_with_and_without_auth, h_setup,
                                        h_teardown),
    };
    return cmocka_run_group_tests(tests, make_keys, free_keys);
}
