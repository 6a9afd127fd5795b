/* The HTTP API (transport-http) against a real arqonbusd with the WebSocket transport, the
 * built-in commands and memory storage, over real sockets: every endpoint and its error
 * statuses, publish reaching a WebSocket client, /history answering what the `history`
 * command answers, /metrics parsed as Prometheus text and moving with known traffic, the
 * bound address, the API key, CORS, reloads, and /ready around SIGTERM. */
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
#include <time.h>
#include <unistd.h>

#include <arqonbus/plugin.h>
#include <cmocka.h>

#include "bus_client.h"
#include "http_client.h"
#include "prom_parse.h"

#define KEY "test-key-0123456789abcdef"

struct ports {
    int ws, http;
};

/* --- the server ---------------------------------------------------------------------------- */

/* 40-http.yaml: `http` on 127.0.0.1 at the port chosen for it, with `http_config` lines
 * (indented 6) under its config. */
static void write_http(struct fixture *f, const char *http_config)
{
    h_write(f->dir, "40-http.yaml",
            "plugins:\n  http:\n    module: transport-http\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n%s",
            h_port(&f->p, "http"), http_config);
}

/* conf.d: the bus on 127.0.0.1 and `http` (write_http), each on a port chosen for it. */
static struct ports start_with(struct fixture *f, const char *storage, const char *http_config)
{
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\n  log_level: debug\n",
            ARQ_BUILD_PLUGIN_DIR);
    h_write(f->dir, "10-bus.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n"
            "  builtin:\n    module: commands-builtin\n%s",
            h_port(&f->p, "ws"), storage);
    write_http(f, http_config);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    struct ports ports = {h_component_port(&f->p, "ws"), h_component_port(&f->p, "http")};
    return ports;
}

static const char *memory_storage = "  history:\n    module: storage-memory\n";

#define HTTP_CONFIG                                                                                \
    "      api_key: " KEY "\n      max_body_bytes: 4KiB\n"                                         \
    "      cors_origins: [https://app.example.com]\n"

static struct ports start(struct fixture *f)
{
    return start_with(f, memory_storage, HTTP_CONFIG);
}

/* --- requests ------------------------------------------------------------------------------ */

/* A request that must get a response (asserts). `headers`: NULL-terminated, may be NULL. */
static struct http_resp call(int port, const char *method, const char *path,
                             const char *const *headers, const char *body)
{
    struct http_resp r;
    char err[256];
    if (http_request("127.0.0.1", port, method, path, headers, body, body ? strlen(body) : 0,
                     h_ms(5000), &r, err, sizeof err) != 0)
        fail_msg("%s %s: %s", method, path, err);
    return r;
}

static struct http_resp get(int port, const char *path)
{
    return call(port, "GET", path, NULL, NULL);
}

static struct http_resp post(int port, const char *path, const char *body)
{
    static const char *const key[] = {"X-API-Key: " KEY, NULL};
    return call(port, "POST", path, key, body);
}

/* The body as JSON (asserts it is JSON, and that Content-Type says so); frees the response. */
static json_t *json_of(struct http_resp *r)
{
    char ct[128];
    json_error_t jerr;
    assert_non_null(http_header(r, "Content-Type", ct, sizeof ct));
    assert_string_equal(ct, "application/json");
    json_t *o = json_loadb(r->body, r->body_len, 0, &jerr);
    if (!o)
        fail_msg("not JSON (%s): %s", jerr.text, r->body);
    http_resp_free(r);
    return o;
}

/* The response has `status` and a JSON body; returns the body. */
static json_t *expect(struct http_resp r, int status)
{
    if (r.status != status)
        fail_msg("expected %d, got %d: %s", status, r.status, r.body);
    return json_of(&r);
}

/* `body` has the one shape of every error (docs/protocol.md, HTTP): {"error": a text,
 * "error_code": `code`, "payload"?: an object}, nothing else. */
static void assert_error_shape(const json_t *body, const char *code)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (strcmp(key, "error") != 0 && strcmp(key, "error_code") != 0 &&
            !(strcmp(key, "payload") == 0 && json_is_object(v)))
            fail_msg("an error body with \"%s\"", key);
    }
    assert_string_equal(bc_str(body, "error_code"), code);
    assert_true(strlen(bc_str(body, "error")) > 0);
}

/* The response has `status` and an error body with `code`; returns the body. */
static json_t *expect_error_body(struct http_resp r, int status, const char *code)
{
    json_t *body = expect(r, status);
    assert_error_shape(body, code);
    return body;
}

/* The same, freeing everything. */
static void expect_error(struct http_resp r, int status, const char *code)
{
    json_decref(expect_error_body(r, status, code));
}

/* --- probes and information ---------------------------------------------------------------- */

static void test_probes_status_and_version_answer_json(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);

    json_t *health = expect(get(p.http, "/health"), 200);
    assert_string_equal(bc_str(health, "status"), "healthy");
    const json_t *checks = json_object_get(health, "checks");
    assert_string_equal(bc_str(json_object_get(checks, "bus"), "status"), "healthy");
    assert_string_equal(bc_str(json_object_get(checks, "storage"), "status"), "healthy");
    assert_string_equal(bc_str(json_object_get(checks, "storage"), "backend"), "storage-memory");
    assert_int_equal(json_array_size(json_object_get(health, "failing")), 0);
    json_decref(health);

    json_t *ready = expect(get(p.http, "/ready"), 200);
    assert_true(json_is_true(json_object_get(ready, "ready")));
    json_decref(ready);

    struct bus_client *c = bc_connect(p.ws, NULL);
    json_t *status = expect(get(p.http, "/status"), 200);
    assert_int_equal(json_integer_value(json_object_get(status, "clients")), 1);
    assert_string_equal(bc_str(json_object_get(status, "storage"), "health"), "healthy");
    assert_true(json_array_size(json_object_get(status, "plugins")) >= 4);
    /* The same data as the `status` command. */
    json_t *resp;
    const json_t *data = bc_command_ok(c, &resp, "status", NULL);
    assert_string_equal(bc_str(status, "version"), bc_str(data, "version"));
    assert_string_equal(bc_str(status, "node"), bc_str(data, "node"));
    json_decref(resp);

    json_t *version = expect(get(p.http, "/version"), 200);
    assert_string_equal(bc_str(version, "service"), "arqonbus");
    assert_string_equal(bc_str(version, "version"), bc_str(status, "version"));
    char abi[32]; /* the SDK's, as this test was built against it */
    snprintf(abi, sizeof abi, "%d.%d", ARQ_ABI_MAJOR, ARQ_ABI_MINOR);
    assert_string_equal(bc_str(version, "abi"), abi);
    json_decref(version);
    json_decref(status);

    /* HEAD: the headers of GET, no body. */
    struct http_resp head = call(p.http, "HEAD", "/health", NULL, NULL);
    assert_int_equal(head.status, 200);
    assert_int_equal(head.body_len, 0);
    http_resp_free(&head);
    bc_free(c);
    assert_int_equal(h_stop(f), 0);
}

/* --- errors -------------------------------------------------------------------------------- */

static void test_errors_have_their_status_and_a_json_body(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    char buf[256];

    /* 404: unknown paths, with the path in the text. */
    json_t *nf = expect_error_body(get(p.http, "/nope"), 404, "NOT_FOUND");
    assert_non_null(strstr(bc_str(nf, "error"), "/nope"));
    json_decref(nf);
    expect_error(get(p.http, "/rooms/lobby/channels/extra"), 404, "NOT_FOUND");
    expect_error(get(p.http, "/health/"), 404, "NOT_FOUND");

    /* 405 with Allow. */
    struct http_resp r = call(p.http, "DELETE", "/health", NULL, NULL);
    assert_int_equal(r.status, 405);
    assert_string_equal(http_header(&r, "Allow", buf, sizeof buf), "GET, HEAD, OPTIONS");
    expect_error(r, 405, "METHOD_NOT_ALLOWED");
    r = get(p.http, "/publish");
    assert_int_equal(r.status, 405);
    assert_string_equal(http_header(&r, "Allow", buf, sizeof buf), "POST, OPTIONS");
    expect_error(r, 405, "METHOD_NOT_ALLOWED");

    /* 401: no key, a wrong key (either header), with a Bearer challenge. */
    r = call(p.http, "POST", "/publish", NULL, "{}");
    assert_int_equal(r.status, 401);
    assert_non_null(http_header(&r, "WWW-Authenticate", buf, sizeof buf));
    json_t *body = expect_error_body(r, 401, "AUTHENTICATION_ERROR");
    assert_true(strstr(bc_str(body, "error"), "X-API-Key") != NULL);
    json_decref(body);
    static const char *const wrong[] = {"X-API-Key: " KEY "x", NULL};
    static const char *const wrong_bearer[] = {"Authorization: Bearer test-key", NULL};
    static const char *const bearer[] = {"Authorization: Bearer " KEY, NULL};
    body = expect_error_body(call(p.http, "POST", "/admin/reload", wrong, NULL), 401,
                             "AUTHENTICATION_ERROR");
    assert_string_equal(bc_str(body, "error"), "Invalid API key");
    json_decref(body);
    expect_error(call(p.http, "POST", "/publish", wrong_bearer, "{}"), 401, "AUTHENTICATION_ERROR");
    /* The right key as a Bearer token gets past the check (to the body's validation). */
    expect_error(call(p.http, "POST", "/publish", bearer, "{}"), 400, "VALIDATION_ERROR");
    /* The key is never written to the log. */
    char *log = h_slurp(f->p.out);
    assert_null(strstr(log, KEY));
    free(log);

    /* 400: bad JSON, not an object, unknown fields, bad parameters. */
    expect_error(post(p.http, "/publish", "{\"room\":"), 400, "INVALID_JSON");
    expect_error(post(p.http, "/publish", "[1,2]"), 400, "VALIDATION_ERROR");
    body = expect(post(p.http, "/publish", "{\"room\":\"lobby\",\"payload\":1,\"colour\":2}"), 400);
    assert_string_equal(bc_str(body, "error_code"), "VALIDATION_ERROR");
    assert_true(strstr(bc_str(body, "error"), "colour") != NULL);
    json_decref(body);
    expect_error(post(p.http, "/admin/disconnect", "{\"reason\":\"x\"}"), 400, "VALIDATION_ERROR");
    expect_error(get(p.http, "/history"), 400, "VALIDATION_ERROR");
    expect_error(get(p.http, "/history?room=lobby&limit=ten"), 400, "VALIDATION_ERROR");
    expect_error(get(p.http, "/history?room=lobby&limit=1001"), 400, "VALIDATION_ERROR");
    expect_error(get(p.http, "/history?room=lobby&since=yesterday"), 400, "VALIDATION_ERROR");
    expect_error(get(p.http, "/history?room=lobby&colour=red"), 400, "VALIDATION_ERROR");
    expect_error(get(p.http, "/history?room=lobby&room=hall"), 400, "VALIDATION_ERROR");
    expect_error(get(p.http, "/history?room=bad%20name"), 400, "VALIDATION_ERROR");

    /* 413: by Content-Length (refused before the body is read) and chunked (after it). */
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_error(post(p.http, "/publish", big), 413, "PAYLOAD_TOO_LARGE");
    char raw[6000];
    int n =
        snprintf(raw, sizeof raw,
                 "POST /publish HTTP/1.1\r\nHost: x\r\nX-API-Key: " KEY "\r\n"
                 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n",
                 strlen(big), big);
    char err[256];
    if (http_raw("127.0.0.1", p.http, raw, (size_t)n, h_ms(5000), &r, err, sizeof err) != 0)
        fail_msg("chunked: %s", err);
    expect_error(r, 413, "PAYLOAD_TOO_LARGE");
    /* Within the limit, chunked works. */
    n = snprintf(raw, sizeof raw,
                 "POST /publish HTTP/1.1\r\nHost: x\r\nX-API-Key: " KEY "\r\n"
                 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
    if (http_raw("127.0.0.1", p.http, raw, (size_t)n, h_ms(5000), &r, err, sizeof err) != 0)
        fail_msg("chunked: %s", err);
    expect_error(r, 400, "VALIDATION_ERROR");
    assert_int_equal(h_stop(f), 0);
}

/* Names arrive percent-decoded, so they can be any bytes: what is not a room or channel name
 * (docs/protocol.md: letters, digits, _ . : -) is a 400 that says so, in the error shape, and
 * bytes that are not UTF-8 never turn into a 500 (they are written as \xHH). */
static void test_names_that_are_not_names_get_400_with_the_error_body(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    struct bus_client *a = bc_connect(p.ws, NULL);
    bc_join(a, "lobby", "general");

    json_t *body =
        expect_error_body(get(p.http, "/rooms/%ff%fe/channels"), 400, "VALIDATION_ERROR");
    assert_string_equal(bc_str(body, "error"),
                        "Invalid room name: \\xFF\\xFE (letters, digits, _ . : - only)");
    json_decref(body);
    /* Valid UTF-8 that is not a name, a space, and a name over bus.max_name_length (128). */
    expect_error(get(p.http, "/rooms/caf%C3%A9/channels"), 400, "VALIDATION_ERROR");
    expect_error(get(p.http, "/rooms/a%20b/channels"), 400, "VALIDATION_ERROR");
    char path[400];
    snprintf(path, sizeof path, "/rooms/%0200d/channels", 0);
    expect_error(get(p.http, path), 400, "VALIDATION_ERROR");
    /* In the query of /history as well, and in any other parameter. */
    body = expect_error_body(get(p.http, "/history?room=%ff"), 400, "VALIDATION_ERROR");
    assert_non_null(strstr(bc_str(body, "error"), "Invalid room name"));
    json_decref(body);
    expect_error(get(p.http, "/history?room=lobby&channel=%C0%80"), 400, "VALIDATION_ERROR");
    body = expect_error_body(get(p.http, "/history?room=lobby&epoch=%ed%a0%80"), 400,
                             "VALIDATION_ERROR");
    assert_non_null(strstr(bc_str(body, "error"), "epoch"));
    json_decref(body);
    expect_error(get(p.http, "/history?%ff=1"), 400, "VALIDATION_ERROR");
    /* An unknown path is echoed, made UTF-8. */
    body = expect_error_body(get(p.http, "/%ff%fe"), 404, "NOT_FOUND");
    assert_non_null(strstr(bc_str(body, "error"), "/\\xFF\\xFE"));
    json_decref(body);

    /* Real names still work, and nothing above reached the bus as a room. */
    json_t *channels = expect(get(p.http, "/rooms/lobby/channels"), 200);
    assert_int_equal(json_array_size(json_object_get(channels, "channels")), 1);
    json_decref(channels);
    json_t *rooms = expect(get(p.http, "/rooms"), 200);
    assert_int_equal(json_array_size(json_object_get(rooms, "rooms")), 1);
    json_decref(rooms);
    bc_free(a);
    assert_int_equal(h_stop(f), 0);
}

static void test_keyed_endpoints_are_disabled_without_an_api_key(void **state)
{
    struct fixture *f = *state;
    /* No storage either: history cannot be served, and that is not a health problem. */
    struct ports p = start_with(f, "", "      api_key: \"\"\n");
    /* Each keyed endpoint says so itself, whatever key is sent. */
    static const char *const any_key[] = {"X-API-Key: anything", NULL};
    const char *paths[] = {"/publish", "/admin/reload", "/admin/disconnect"};
    for (size_t i = 0; i < 3; i++) {
        json_t *body = expect_error_body(call(p.http, "POST", paths[i], any_key, "{}"), 403,
                                         "AUTHORIZATION_ERROR");
        assert_true(strstr(bc_str(body, "error"), "api_key") != NULL);
        json_decref(body);
    }
    expect_error(get(p.http, "/history?room=lobby"), 503, "STORAGE_UNAVAILABLE");
    json_t *health = expect(get(p.http, "/health"), 200);
    assert_string_equal(
        bc_str(json_object_get(json_object_get(health, "checks"), "storage"), "status"),
        "not_configured");
    json_decref(health);
    assert_int_equal(h_stop(f), 0);
}

static void test_health_is_degraded_while_the_storage_is_down(void **state)
{
    struct fixture *f = *state;
    char storage[256];
    /* Strict Redis storage pointed at a port nothing listens on: storage "down". */
    snprintf(storage, sizeof storage,
             "  history:\n    module: storage-redis\n    config:\n"
             "      url: redis://127.0.0.1:%d\n      mode: strict\n      connect_timeout: 1s\n",
             h_free_port());
    struct ports p = start_with(f, storage, HTTP_CONFIG);
    json_t *health = NULL;
    for (int waited = 0; waited < h_ms(10000); waited += 50) {
        struct http_resp r = get(p.http, "/health");
        if (r.status == 503) {
            health = json_of(&r);
            break;
        }
        http_resp_free(&r);
        usleep(50 * 1000);
    }
    assert_non_null(health);
    assert_string_equal(bc_str(health, "status"), "degraded");
    const json_t *failing = json_object_get(health, "failing");
    assert_int_equal(json_array_size(failing), 1);
    assert_string_equal(json_string_value(json_array_get(failing, 0)), "storage");
    const json_t *st = json_object_get(json_object_get(health, "checks"), "storage");
    assert_string_equal(bc_str(st, "status"), "down");
    assert_true(strstr(bc_str(st, "detail"), "unreachable") != NULL);
    json_decref(health);
    /* Still ready: the bus accepts clients without its history. */
    json_decref(expect(get(p.http, "/ready"), 200));
    expect_error(get(p.http, "/history?room=lobby&channel=general"), 503, "STORAGE_UNAVAILABLE");
    assert_int_equal(h_stop(f), 0);
}

/* --- publish, history, listings ------------------------------------------------------------ */

static void test_publish_reaches_websocket_clients(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    struct bus_client *a = bc_connect(p.ws, NULL), *b = bc_connect(p.ws, NULL);
    bc_join(a, "lobby", "general");

    json_t *data = expect(post(p.http, "/publish",
                               "{\"room\":\"lobby\",\"channel\":\"general\",\"payload\":{\"n\":1},"
                               "\"metadata\":{\"sequence\":7}}"),
                          200);
    assert_int_equal(json_integer_value(json_object_get(data, "delivered")), 1);
    assert_int_equal(json_integer_value(json_object_get(data, "offset")), 1);
    assert_true(strlen(bc_str(data, "epoch")) > 0);
    const char *id = bc_str(data, "id");
    assert_true(strncmp(id, "arq_", 4) == 0);

    json_t *m = bc_expect(a, "message", 5000);
    assert_string_equal(bc_str(m, "sender"), "arqonbus");
    assert_string_equal(bc_str(m, "id"), id);
    assert_string_equal(bc_str(m, "room"), "lobby");
    assert_string_equal(bc_str(m, "channel"), "general");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "payload"), "n")), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(m, "metadata"), "sequence")), 7);
    json_decref(m);
    json_decref(data);

    /* A direct message: b's first frame since it connected, so the publish above, to a channel
     * b is not a member of, never reached it. */
    char body[256];
    snprintf(body, sizeof body, "{\"to_client\":\"%s\",\"payload\":\"psst\"}", b->id);
    data = expect(post(p.http, "/publish", body), 200);
    assert_int_equal(json_integer_value(json_object_get(data, "delivered")), 1);
    json_decref(data);
    m = bc_recv(b, 5000);
    assert_non_null(m);
    assert_string_equal(bc_str(m, "type"), "message");
    assert_string_equal(bc_str(m, "payload"), "psst");
    assert_string_equal(bc_str(m, "sender"), "arqonbus");
    json_decref(m);

    /* Targets that do not exist, and a message without a target. */
    expect_error(post(p.http, "/publish",
                      "{\"to_client\":\"arq_client_00000000000000000000000000000000\","
                      "\"payload\":1}"),
                 404, "NOT_FOUND");
    expect_error(post(p.http, "/publish", "{\"room\":\"nowhere\",\"payload\":1}"), 404,
                 "ROOM_NOT_FOUND");
    json_t *err = expect(post(p.http, "/publish", "{\"payload\":1}"), 400);
    assert_string_equal(bc_str(err, "error_code"), "VALIDATION_ERROR");
    json_decref(err);
    expect_error(post(p.http, "/publish", "{\"room\":\"lobby\"}"), 400, "VALIDATION_ERROR");
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(f), 0);
}

static void test_history_answers_what_the_history_command_answers(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    struct bus_client *a = bc_connect(p.ws, "/?ack=0");
    bc_join(a, "lobby", "general");
    for (int i = 1; i <= 5; i++)
        bc_send(a, "{s:s, s:s, s:s, s:{s:i}}", "type", "message", "room", "lobby", "channel",
                "general", "payload", "n", i);
    json_t *resp;
    /* A command after the messages: they have all been routed and stored once it answers. */
    const json_t *cmd = bc_command_ok(a, &resp, "history", "{s:s, s:s, s:i}", "room", "lobby",
                                      "channel", "general", "limit", 3);
    json_t *http = expect(get(p.http, "/history?room=lobby&channel=general&limit=3"), 200);
    if (!json_equal(http, (json_t *)cmd)) {
        char *x = json_dumps(http, 0), *y = json_dumps(cmd, 0);
        fail_msg("/history %s\nhistory  %s", x, y);
    }
    assert_int_equal(json_integer_value(json_object_get(http, "count")), 3);
    char epoch[64];
    snprintf(epoch, sizeof epoch, "%s", bc_str(http, "epoch"));
    json_decref(http);
    json_decref(resp);

    /* Recovery by offset and epoch, with typed parameters. */
    char path[256];
    snprintf(path, sizeof path, "/history?room=lobby&channel=general&since_offset=2&epoch=%s",
             epoch);
    http = expect(get(p.http, path), 200);
    cmd = bc_command_ok(a, &resp, "history", "{s:s, s:s, s:i, s:s}", "room", "lobby", "channel",
                        "general", "since_offset", 2, "epoch", epoch);
    assert_true(json_equal(http, (json_t *)cmd));
    assert_true(json_is_true(json_object_get(http, "recovered")));
    const json_t *entries = json_object_get(http, "entries");
    assert_int_equal(json_array_size(entries), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(entries, 0), "offset")), 3);
    json_decref(http);
    json_decref(resp);

    /* A time window that holds everything, and one that holds nothing. */
    http =
        expect(get(p.http, "/history?room=lobby&channel=general&since=2000-01-01T00:00:00Z"), 200);
    assert_int_equal(json_integer_value(json_object_get(http, "count")), 5);
    json_decref(http);
    http =
        expect(get(p.http, "/history?room=lobby&channel=general&until=2000-01-01T00:00:00Z"), 200);
    assert_int_equal(json_integer_value(json_object_get(http, "count")), 0);
    json_decref(http);
    bc_free(a);
    assert_int_equal(h_stop(f), 0);
}

static void test_rooms_and_channels_are_listed(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    json_t *rooms = expect(get(p.http, "/rooms"), 200);
    assert_int_equal(json_array_size(json_object_get(rooms, "rooms")), 0);
    json_decref(rooms);

    struct bus_client *a = bc_connect(p.ws, NULL);
    bc_join(a, "lobby", "general");
    bc_join(a, "lobby", "random");
    rooms = expect(get(p.http, "/rooms"), 200);
    const json_t *list = json_object_get(rooms, "rooms");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(bc_str(json_array_get(list, 0), "room"), "lobby");
    json_decref(rooms);

    json_t *channels = expect(get(p.http, "/rooms/lobby/channels"), 200);
    assert_string_equal(bc_str(channels, "room"), "lobby");
    list = json_object_get(channels, "channels");
    assert_int_equal(json_array_size(list), 2);
    /* The same as the list_channels command. */
    json_t *resp;
    const json_t *data = bc_command_ok(a, &resp, "list_channels", "{s:s}", "room", "lobby");
    const json_t *cmd_list = json_is_array(data) ? data : json_object_get(data, "channels");
    assert_int_equal(json_array_size(cmd_list), 2);
    json_decref(resp);
    json_decref(channels);

    expect_error(get(p.http, "/rooms/nowhere/channels"), 404, "ROOM_NOT_FOUND");
    bc_free(a);
    assert_int_equal(h_stop(f), 0);
}

/* --- admin --------------------------------------------------------------------------------- */

static void test_admin_reload_and_disconnect(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    json_t *data = expect(post(p.http, "/admin/reload", NULL), 200);
    assert_int_equal(json_integer_value(json_object_get(data, "generation")), 2);
    json_decref(data);

    /* A configuration that does not load: refused, the running one kept. */
    h_write(f->dir, "50-bad.yaml", "plugins:\n  oops:\n    module: no-such-module\n");
    json_t *err = expect(post(p.http, "/admin/reload", ""), 500);
    assert_string_equal(bc_str(err, "error_code"), "EXECUTION_ERROR");
    json_decref(err);
    h_unlink(f->dir, "50-bad.yaml");
    json_decref(expect(get(p.http, "/ready"), 200));

    struct bus_client *c = bc_connect(p.ws, NULL);
    char body[256];
    snprintf(body, sizeof body, "{\"client_id\":\"%s\",\"reason\":\"maintenance\"}", c->id);
    data = expect(post(p.http, "/admin/disconnect", body), 200);
    assert_string_equal(bc_str(data, "disconnected"), c->id);
    json_decref(data);
    assert_int_equal(ws_recv(c->ws, NULL, NULL, h_ms(5000)), WS_OP_CLOSE);
    assert_int_equal(ws_close_code(c->ws), 1008);
    assert_string_equal(ws_close_reason(c->ws), "maintenance");
    bc_free(c);
    expect_error(post(p.http, "/admin/disconnect",
                      "{\"client_id\":\"arq_client_00000000000000000000000000000000\"}"),
                 404, "NOT_FOUND");
    assert_int_equal(h_stop(f), 0);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The `reload_ok` telemetry event number n (1-based) in telemetry-log's file `path`, waiting for
 * it: how many instances the reload carried, reconfigured, replaced, added and removed. The
 * host hands what is queued to its sinks once its loop wakes up after the reload, so each
 * round asks for /health, which wakes it. */
static json_t *reload_ok_event(int http_port, const char *path, int n)
{
    json_t *lines = NULL;
    for (int64_t t0 = now_ms();; json_decref(lines)) {
        json_decref(expect(get(http_port, "/health"), 200));
        lines = h_jsonl(path);
        if (h_jsonl_count(lines, "{s:s}", "event_type", "reload_ok") >= n)
            break;
        if (now_ms() - t0 > h_ms(5000))
            fail_msg("no reload_ok event number %d in %s", n, path);
    }
    int at = -1;
    for (int i = 0; i < n; i++)
        at = h_jsonl_find(lines, at + 1, "{s:s}", "event_type", "reload_ok");
    json_t *data = json_incref(json_object_get(json_array_get(lines, (size_t)at), "data"));
    json_decref(lines);
    return data;
}

static void expect_reload_counts(int http_port, const char *events, int n, int reconfigured,
                                 int replaced)
{
    json_t *data = reload_ok_event(http_port, events, n);
    assert_int_equal(json_integer_value(json_object_get(data, "reconfigured")), reconfigured);
    assert_int_equal(json_integer_value(json_object_get(data, "replaced")), replaced);
    assert_int_equal(json_integer_value(json_object_get(data, "added")), 0);
    assert_int_equal(json_integer_value(json_object_get(data, "removed")), 0);
    json_decref(data);
}

/* A reload that changes only RELOADABLE options applies them in place (the new key works at
 * once); one that replaces the instance keeps serving on the same socket. */
static void test_reloads_keep_the_port_and_apply_the_new_key(void **state)
{
    struct fixture *f = *state;
    char events[600];
    snprintf(events, sizeof events, "%s/events.jsonl", f->logs);
    h_write(f->dir, "90-events.yaml",
            "plugins:\n  events:\n    module: telemetry-log\n    config:\n      path: %s\n"
            "      events: [reload_ok]\n",
            events);
    struct ports p = start(f);
    unsigned long listener = h_listener_inode(f->p.pid, p.http);
    assert_true(listener != 0);
    write_http(f, "      api_key: another-key\n");
    assert_int_equal(h_reload(f), 1);
    expect_reload_counts(p.http, events, 1, 1, 0); /* http, reconfigured in place */
    assert_true(h_listener_inode(f->p.pid, p.http) == listener);
    json_decref(expect(post(p.http, "/admin/reload", NULL), 401));
    static const char *const key[] = {"X-API-Key: another-key", NULL};
    json_decref(expect(call(p.http, "POST", "/admin/reload", key, NULL), 200));
    f->reloads++; /* so that h_reload waits for the next verdict */
    expect_reload_counts(p.http, events, 2, 0, 0);

    /* max_connections is not RELOADABLE: a new instance, on the same socket. */
    write_http(f, "      api_key: another-key\n      max_connections: 50\n");
    assert_int_equal(h_reload(f), 1);
    expect_reload_counts(p.http, events, 3, 0, 1);
    assert_true(h_listener_inode(f->p.pid, p.http) == listener);
    json_decref(expect(get(p.http, "/ready"), 200));
    /* The reload asked over HTTP that replaces the HTTP instance still gets its answer. */
    write_http(f, "      api_key: another-key\n      max_connections: 60\n");
    json_t *data = expect(call(p.http, "POST", "/admin/reload", key, NULL), 200);
    assert_true(json_integer_value(json_object_get(data, "generation")) >= 5);
    json_decref(data);
    f->reloads++;
    assert_int_equal(h_wait_reloads(&f->p, f->reloads, 5000), 0);
    assert_int_equal(f->p.notified.reloads_ok, f->reloads);
    expect_reload_counts(p.http, events, 4, 0, 1);
    assert_true(h_listener_inode(f->p.pid, p.http) == listener);
    json_decref(expect(get(p.http, "/health"), 200));
    assert_int_equal(h_stop(f), 0);
}

/* --- metrics ------------------------------------------------------------------------------- */

static struct prom_doc scrape(int port)
{
    struct http_resp r = get(port, "/metrics");
    assert_int_equal(r.status, 200);
    char ct[128], err[256];
    assert_string_equal(http_header(&r, "Content-Type", ct, sizeof ct),
                        "text/plain; version=0.0.4; charset=utf-8");
    struct prom_doc doc;
    if (prom_parse(r.body, &doc, err, sizeof err) != 0)
        fail_msg("/metrics does not parse: %s\n%s", err, r.body);
    if (prom_check(&doc, err, sizeof err) != 0)
        fail_msg("/metrics: %s\n%s", err, r.body);
    http_resp_free(&r);
    return doc;
}

static double value(const struct prom_doc *doc, const char *name)
{
    double v;
    if (prom_value(doc, &v, name, NULL) == 0)
        fail_msg("no sample %s", name);
    return v;
}

static void test_metrics_parse_and_move_with_traffic(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    struct bus_client *a = bc_connect(p.ws, NULL), *b = bc_connect(p.ws, NULL);
    bc_join(a, "lobby", "general");
    bc_join(b, "lobby", "general");

    struct prom_doc before = scrape(p.http);
    static const char *const families[] = {"arqonbus_messages_received_total",
                                           "arqonbus_messages_delivered_total",
                                           "arqonbus_connections",
                                           "arqonbus_http_requests_total",
                                           "arqonbus_http_request_duration_seconds",
                                           NULL};
    for (size_t i = 0; families[i]; i++) {
        const struct prom_family *fam = prom_family(&before, families[i]);
        if (!fam)
            fail_msg("no family %s", families[i]);
        assert_true(strlen(fam->help) > 0);
    }
    assert_string_equal(prom_family(&before, "arqonbus_http_requests_total")->type, "counter");
    assert_string_equal(prom_family(&before, "arqonbus_http_request_duration_seconds")->type,
                        "histogram");
    assert_true(value(&before, "arqonbus_connections") == 2);
    double ws_conns = 0;
    assert_int_equal(prom_value(&before, &ws_conns, "arqonbus_connections", "transport", "ws",
                                (const char *)NULL),
                     1);
    assert_true(ws_conns == 2);

    /* 3 messages from a (each delivered to b), and 2 HTTP requests of known outcome. */
    for (int i = 0; i < 3; i++) {
        bc_send(a, "{s:s, s:s, s:s, s:i}", "type", "message", "room", "lobby", "channel", "general",
                "payload", i);
        json_decref(bc_expect(b, "message", 5000));
        json_decref(bc_expect(a, "message_response", 5000));
    }
    json_decref(expect(get(p.http, "/nope"), 404));
    json_decref(expect(get(p.http, "/ready"), 200));

    struct prom_doc after = scrape(p.http);
    assert_true(value(&after, "arqonbus_messages_received_total") -
                    value(&before, "arqonbus_messages_received_total") ==
                3);
    assert_true(value(&after, "arqonbus_messages_delivered_total") -
                    value(&before, "arqonbus_messages_delivered_total") ==
                3);
    double v0, v1;
    prom_value(&before, &v0, "arqonbus_http_requests_total", "instance", "http", "method", "GET",
               "status", "4xx", NULL);
    assert_int_equal(prom_value(&after, &v1, "arqonbus_http_requests_total", "instance", "http",
                                "method", "GET", "status", "4xx", NULL),
                     1);
    assert_true(v1 - v0 == 1);
    /* 2xx: /ready, and the first scrape (counted once it completed). */
    prom_value(&before, &v0, "arqonbus_http_requests_total", "method", "GET", "status", "2xx",
               NULL);
    prom_value(&after, &v1, "arqonbus_http_requests_total", "method", "GET", "status", "2xx", NULL);
    assert_true(v1 - v0 == 2);
    assert_true(value(&after, "arqonbus_http_request_duration_seconds_count") >=
                value(&before, "arqonbus_http_request_duration_seconds_count") + 3);
    /* Label values stay in a fixed set, whatever the client sends. */
    json_decref(expect(call(p.http, "BREW", "/health", NULL, NULL), 405));
    prom_free(&after);
    after = scrape(p.http);
    assert_int_equal(prom_value(&after, &v1, "arqonbus_http_requests_total", "method", "other",
                                "status", "4xx", NULL),
                     1);
    assert_int_equal(
        prom_value(&after, &v1, "arqonbus_http_requests_total", "method", "BREW", NULL), 0);
    prom_free(&before);
    prom_free(&after);
    bc_free(a);
    bc_free(b);
    assert_int_equal(h_stop(f), 0);
}

/* --- listening, CORS, stopping ------------------------------------------------------------- */

static int connect_refused(const char *addr, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &a.sin_addr);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(fd);
    return rc != 0 && e == ECONNREFUSED;
}

static void test_it_listens_on_the_configured_address_only(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    struct h_listener l;
    assert_int_equal(h_listener(f->p.pid, p.http, &l), 0);
    assert_string_equal(l.addr, "127.0.0.1");
    /* 127.0.0.2 is loopback too: a socket bound to every address would take it. */
    assert_true(connect_refused("127.0.0.2", p.http));
    json_decref(expect(get(p.http, "/ready"), 200));
    assert_int_equal(h_stop(f), 0);
}

static void test_cors_origins_get_their_headers_and_preflights(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    char buf[256];
    static const char *const ok_origin[] = {"Origin: https://app.example.com", NULL};
    static const char *const other[] = {"Origin: https://evil.example.net", NULL};
    struct http_resp r = call(p.http, "GET", "/health", ok_origin, NULL);
    assert_string_equal(http_header(&r, "Access-Control-Allow-Origin", buf, sizeof buf),
                        "https://app.example.com");
    assert_string_equal(http_header(&r, "Vary", buf, sizeof buf), "Origin");
    http_resp_free(&r);
    r = call(p.http, "GET", "/health", other, NULL);
    assert_null(http_header(&r, "Access-Control-Allow-Origin", buf, sizeof buf));
    http_resp_free(&r);

    static const char *const preflight[] = {"Origin: https://app.example.com",
                                            "Access-Control-Request-Method: POST",
                                            "Access-Control-Request-Headers: x-api-key", NULL};
    r = call(p.http, "OPTIONS", "/publish", preflight, NULL);
    assert_int_equal(r.status, 204);
    assert_string_equal(http_header(&r, "Access-Control-Allow-Origin", buf, sizeof buf),
                        "https://app.example.com");
    assert_string_equal(http_header(&r, "Access-Control-Allow-Methods", buf, sizeof buf),
                        "POST, OPTIONS");
    assert_true(strstr(http_header(&r, "Access-Control-Allow-Headers", buf, sizeof buf),
                       "X-API-Key") != NULL);
    http_resp_free(&r);
    r = call(p.http, "OPTIONS", "/publish", other, NULL);
    assert_int_equal(r.status, 204);
    assert_null(http_header(&r, "Access-Control-Allow-Origin", buf, sizeof buf));
    http_resp_free(&r);
    assert_int_equal(h_stop(f), 0);
}

/* With host.drain_delay, SIGTERM first takes the node out of rotation: /ready answers 503
 * while clients are still served, then the host stops (exit 0). */
static void test_ready_turns_503_during_the_drain_delay(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    struct bus_client *c = bc_connect(p.ws, NULL);
    json_decref(expect(get(p.http, "/ready"), 200));
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\n  drain_delay: 2s\n",
            ARQ_BUILD_PLUGIN_DIR);
    assert_int_equal(h_reload(f), 1);
    int64_t t0 = now_ms();
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_stopping(&f->p, 5000), 0); /* the drain began */
    json_t *body = expect(get(p.http, "/ready"), 503);
    assert_false(json_is_true(json_object_get(body, "ready")));
    json_decref(body);
    /* Still serving while draining. */
    json_t *r;
    bc_command_ok(c, &r, "ping", NULL);
    json_decref(r);
    assert_int_equal(h_wait_exit(&f->p, h_ms(10000)), 0);
    /* It stopped once the drain delay (2 s, on a coarser clock) had run out, with no second
     * STOPPING. */
    assert_true(now_ms() - t0 >= 1900);
    h_notify_poll(&f->p);
    assert_int_equal(f->p.notified.stopping, 1);
    assert_true(connect_refused("127.0.0.1", p.http));
    bc_free(c);
}

/* Without a drain delay, once SIGTERM is handled /ready never answers 200 again: 503, or the
 * listener is gone. */
static void test_ready_never_answers_200_once_stopping(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    struct bus_client *c = bc_connect(p.ws, NULL);
    json_decref(expect(get(p.http, "/ready"), 200));
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_stopping(&f->p, 5000), 0);
    for (int i = 0; i < 50; i++) {
        struct http_resp r;
        char err[256];
        if (http_request("127.0.0.1", p.http, "GET", "/ready", NULL, NULL, 0, h_ms(2000), &r, err,
                         sizeof err) != 0)
            break; /* the listener is closed */
        if (r.status != 503)
            fail_msg("/ready answered %d while stopping: %s", r.status, r.body);
        json_t *body = json_of(&r);
        assert_false(json_is_true(json_object_get(body, "ready")));
        json_decref(body);
    }
    assert_int_equal(h_wait_exit(&f->p, h_ms(10000)), 0);
    assert_true(connect_refused("127.0.0.1", p.http));
    bc_free(c);
}

/* --- the dashboard ------------------------------------------------------------------------ */

/* GET `path` with `header` (NULL: none). */
static struct http_resp get_with(int port, const char *path, const char *header)
{
    const char *const headers[] = {header, NULL};
    return call(port, "GET", path, header ? headers : NULL, NULL);
}

/* `r` is 200 with Content-Type `type` and the dashboard's security headers; frees it. */
static void expect_asset(struct http_resp r, const char *type, const char *holds)
{
    char buf[512];
    if (r.status != 200)
        fail_msg("expected 200, got %d: %s", r.status, r.body);
    assert_string_equal(http_header(&r, "Content-Type", buf, sizeof buf), type);
    assert_non_null(http_header(&r, "Content-Security-Policy", buf, sizeof buf));
    /* Only this origin's scripts and styles, nothing inline, no framing. */
    assert_non_null(strstr(buf, "default-src 'self'"));
    assert_non_null(strstr(buf, "script-src 'self';"));
    assert_non_null(strstr(buf, "frame-ancestors 'none'"));
    assert_null(strstr(buf, "unsafe"));
    assert_string_equal(http_header(&r, "X-Content-Type-Options", buf, sizeof buf), "nosniff");
    assert_non_null(strstr(r.body, holds));
    http_resp_free(&r);
}

static void test_dashboard_is_public_typed_and_under_a_strict_csp(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    /* Public: no key. The page loads its script and style from this server, no inline script
     * and nothing from another site, and holds no secret. */
    struct http_resp page = get(p.http, "/dashboard");
    assert_int_equal(page.status, 200);
    assert_non_null(strstr(page.body, "<script src=\"/dashboard/app.js\""));
    assert_null(strstr(page.body, "<script>"));
    assert_null(strstr(page.body, "://"));
    assert_null(strstr(page.body, KEY));
    expect_asset(page, "text/html; charset=utf-8", "id=\"login-form\"");
    expect_asset(get(p.http, "/dashboard/app.js"), "text/javascript; charset=utf-8",
                 "/admin/session");
    expect_asset(get(p.http, "/dashboard/app.css"), "text/css; charset=utf-8", "{");
    expect_asset(get(p.http, "/dashboard/favicon.svg"), "image/svg+xml", "<svg");
    struct http_resp head = call(p.http, "HEAD", "/dashboard/app.js", NULL, NULL);
    assert_int_equal(head.status, 200);
    assert_int_equal(head.body_len, 0);
    http_resp_free(&head);
    /* Anything else under /dashboard is the API's 404; only GET and HEAD. */
    json_t *nf = expect_error_body(get(p.http, "/dashboard/secret.txt"), 404, "NOT_FOUND");
    assert_non_null(strstr(bc_str(nf, "error"), "/dashboard/secret.txt"));
    json_decref(nf);
    expect_error(get(p.http, "/dashboard/"), 404, "NOT_FOUND");
    expect_error(get(p.http, "/dashboard/app.js/x"), 404, "NOT_FOUND");
    expect_error(post(p.http, "/dashboard", "{}"), 405, "METHOD_NOT_ALLOWED");
    assert_int_equal(h_stop(f), 0);
}

/* The token of auth-tokens' entries "ops" (role admin) and "viewer" (role user). */
#define ADMIN_TOKEN "admin-token-0123456789abcdef"
#define USER_TOKEN  "user-token-0123456789abcdef"

static void test_admin_session_answers_who_the_credential_is(void **state)
{
    struct fixture *f = *state;
    h_write(f->dir, "60-auth.yaml",
            "plugins:\n  api-tokens:\n    module: auth-tokens\n    config:\n"
            "      tokens:\n"
            "        - {name: ops, token: " ADMIN_TOKEN ", role: admin}\n"
            "        - {name: viewer, token: " USER_TOKEN ", role: user}\n");
    struct ports p = start(f);

    json_t *who = expect(get_with(p.http, "/admin/session", "Authorization: Bearer " KEY), 200);
    assert_string_equal(bc_str(who, "role"), "admin");
    assert_string_equal(bc_str(who, "credential"), "api_key");
    assert_null(json_object_get(who, "subject"));
    json_decref(who);
    who = expect(get_with(p.http, "/admin/session", "Authorization: Bearer " ADMIN_TOKEN), 200);
    assert_string_equal(bc_str(who, "role"), "admin");
    assert_string_equal(bc_str(who, "credential"), "token");
    assert_string_equal(bc_str(who, "subject"), "ops");
    json_decref(who);

    /* No credential, a wrong one: 401 with the challenge; a role that may not reload: 403. */
    char buf[128];
    struct http_resp r = get(p.http, "/admin/session");
    assert_non_null(http_header(&r, "WWW-Authenticate", buf, sizeof buf));
    expect_error(r, 401, "AUTHENTICATION_ERROR");
    expect_error(get_with(p.http, "/admin/session", "Authorization: Bearer wrong"), 401,
                 "AUTHENTICATION_ERROR");
    expect_error(get_with(p.http, "/admin/session", "Authorization: Bearer " USER_TOKEN), 403,
                 "AUTHORIZATION_ERROR");
    /* The same rule for /admin/channel. */
    expect_error(get_with(p.http, "/admin/channel?room=lobby&channel=general",
                          "Authorization: Bearer " USER_TOKEN),
                 403, "AUTHORIZATION_ERROR");
    /* Neither credential is written to the log. */
    char *log = h_slurp(f->p.out);
    assert_null(strstr(log, KEY));
    assert_null(strstr(log, USER_TOKEN));
    free(log);
    assert_int_equal(h_stop(f), 0);
}

static void test_admin_channel_lists_the_members(void **state)
{
    struct fixture *f = *state;
    struct ports p = start(f);
    struct bus_client *a = bc_connect(p.ws, NULL), *b = bc_connect(p.ws, NULL);
    struct bus_client *other = bc_connect(p.ws, NULL);
    bc_join(a, "lobby", "general");
    bc_join(b, "lobby", "general");
    bc_join(other, "lobby", "random");

    json_t *ch = expect(
        get_with(p.http, "/admin/channel?room=lobby&channel=general", "X-API-Key: " KEY), 200);
    assert_string_equal(bc_str(ch, "room"), "lobby");
    assert_string_equal(bc_str(ch, "channel"), "general");
    assert_int_equal(json_integer_value(json_object_get(ch, "members")), 2);
    const json_t *ids = json_object_get(ch, "member_ids");
    assert_int_equal(json_array_size(ids), 2);
    int seen_a = 0, seen_b = 0;
    for (size_t i = 0; i < json_array_size(ids); i++) {
        const char *id = json_string_value(json_array_get(ids, i));
        seen_a |= !strcmp(id, a->id);
        seen_b |= !strcmp(id, b->id);
    }
    assert_true(seen_a && seen_b);
    json_decref(ch);

    expect_error(get(p.http, "/admin/channel?room=lobby&channel=general"), 401,
                 "AUTHENTICATION_ERROR");
    expect_error(get_with(p.http, "/admin/channel?room=lobby", "X-API-Key: " KEY), 400,
                 "VALIDATION_ERROR");
    expect_error(get_with(p.http, "/admin/channel?room=lobby&channel=a%20b", "X-API-Key: " KEY),
                 400, "VALIDATION_ERROR");
    expect_error(get_with(p.http, "/admin/channel?room=lobby&channel=none", "X-API-Key: " KEY), 404,
                 "CHANNEL_NOT_FOUND");
    expect_error(get_with(p.http, "/admin/channel?room=hall&channel=general", "X-API-Key: " KEY),
                 404, "ROOM_NOT_FOUND");
    bc_free(a);
    bc_free(b);
    bc_free(other);
    assert_int_equal(h_stop(f), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_probes_status_and_version_answer_json, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_errors_have_their_status_and_a_json_body, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_names_that_are_not_names_get_400_with_the_error_body,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_keyed_endpoints_are_disabled_without_an_api_key,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_health_is_degraded_while_the_storage_is_down, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_publish_reaches_websocket_clients, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_history_answers_what_the_history_command_answers,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_rooms_and_channels_are_listed, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_admin_reload_and_disconnect, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_reloads_keep_the_port_and_apply_the_new_key, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_metrics_parse_and_move_with_traffic, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_it_listens_on_the_configured_address_only, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_cors_origins_get_their_headers_and_preflights, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_ready_turns_503_during_the_drain_delay, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_dashboard_is_public_typed_and_under_a_strict_csp,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_admin_session_answers_who_the_credential_is, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_admin_channel_lists_the_members, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_ready_never_answers_200_once_stopping, h_setup,
                                        h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
