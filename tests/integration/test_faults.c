/* Operator faults against a real arqonbusd under load, all on 127.0.0.1: a storm of SIGHUPs
 * with valid and invalid configurations interleaved while publishers and subscribers exchange
 * messages (every acknowledged message reaches every subscriber exactly once and in order, no
 * client is dropped, descriptors and memory stay flat after a warm-up); and Redis killed with
 * SIGKILL and restarted, twice, while clients publish through storage-redis (every
 * acknowledged message is in the history afterwards, once, in order, read with the history
 * command, over HTTP, and from a new arqonbusd). The load waits on what the bus promises: acks,
 * deliveries, `status` (reload counters, storage health), /metrics. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus_client.h"
#include "http_client.h"
#include "prom_parse.h"
#include "redis_server.h"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sanitized(void)
{
    const char *s = getenv("ARQ_TEST_SANITIZED");
    return s && *s;
}

/* --- the load ------------------------------------------------------------------------------ */

/* PUBS publishers and SUBS subscribers, all members of every channel of one room; publisher p
 * publishes to channel p % nch. Every client checks every message it gets: from each
 * publisher, n = 1, 2, 3, ... exactly once and in order (a publisher gets the others'). Each
 * publisher checks its acks the same way and keeps them. A watch client runs `status`. */
enum { PUBS = 4, SUBS = 3, CLIENTS = PUBS + SUBS, MAX_SENT = 5000 };

struct ack {
    json_int_t offset; /* 0: none */
    char epoch[40];
};

struct load {
    struct bus_client *c[CLIENTS];
    struct bus_client *watch;
    const char *room;
    const char *const *channels;
    int nch;
    int sent[PUBS], acked[PUBS];
    int last[CLIENTS][PUBS]; /* the last n client i got from publisher p */
    long long delivered;
    struct ack acks[PUBS][MAX_SENT + 1];
    int status_pending;   /* a status command is on its way */
    json_t *status;       /* its last data (owned) */
    unsigned status_seen; /* how many came back */
    int turn_ms;          /* load_until: the least time between two turns */
    int max_sent;         /* load_send stops there (0: MAX_SENT) */
};

static void load_open(struct load *L, int port, const char *room, const char *const *channels,
                      int nch)
{
    memset(L, 0, sizeof *L);
    L->room = room;
    L->channels = channels;
    L->nch = nch;
    for (int i = 0; i < CLIENTS; i++) {
        L->c[i] = bc_connect(port, NULL);
        for (int ch = 0; ch < nch; ch++) {
            json_t *r;
            bc_command_ok(L->c[i], &r, "join_channel", "{s:s, s:s}", "room", room, "channel",
                          channels[ch]);
            json_decref(r);
        }
    }
    L->watch = bc_connect(port, NULL);
}

static void load_close(struct load *L)
{
    for (int i = 0; i < CLIENTS; i++)
        bc_free(L->c[i]);
    bc_free(L->watch);
    json_decref(L->status);
}

static void message_id(char *out, size_t size, int p, int n)
{
    snprintf(out, size, "arq_%d_%d_0a0b0c", p + 1, n);
}

static int payload_int(const json_t *m, const char *key)
{
    return (int)json_integer_value(json_object_get(json_object_get(m, "payload"), key));
}

/* One frame that arrived at client i (i == CLIENTS: the watch client). */
static void load_take(struct load *L, int i, const char *data, size_t len)
{
    json_t *m = json_loadb(data, len, 0, NULL);
    assert_non_null(m);
    const char *type = bc_str(m, "type");
    if (i < CLIENTS && !strcmp(type, "message")) {
        int p = payload_int(m, "p"), n = payload_int(m, "n");
        assert_true(p >= 0 && p < PUBS && p != i);
        if (n != L->last[i][p] + 1)
            fail_msg("client %d got message %d of publisher %d after %d", i, n, p, L->last[i][p]);
        L->last[i][p] = n;
        L->delivered++;
    } else if (i < PUBS && !strcmp(type, "message_response")) {
        int p = -1, n = -1;
        assert_int_equal(sscanf(bc_str(m, "request_id"), "arq_%d_%d_", &p, &n), 2);
        if (p - 1 != i || n != L->acked[i] + 1 || strcmp(bc_str(m, "status"), "success") != 0) {
            char *dump = json_dumps(m, JSON_COMPACT);
            fail_msg("publisher %d, after ack %d: %s", i, L->acked[i], dump);
        }
        const json_t *pl = json_object_get(m, "payload");
        struct ack *a = &L->acks[i][n];
        a->offset = json_integer_value(json_object_get(pl, "offset"));
        snprintf(a->epoch, sizeof a->epoch, "%s", bc_str(pl, "epoch"));
        L->acked[i] = n;
    } else if (i == CLIENTS && !strcmp(type, "response")) {
        json_decref(L->status);
        L->status = json_incref(json_object_get(json_object_get(m, "payload"), "data"));
        L->status_pending = 0;
        L->status_seen++;
    } else {
        char *dump = json_dumps(m, JSON_COMPACT);
        fail_msg("client %d: unexpected frame %s", i, dump);
    }
    json_decref(m);
}

/* Read whatever arrives within `ms` at any client (at least one poll). A client whose
 * connection ends fails the test: no client may be dropped. */
static void load_read(struct load *L, int ms)
{
    struct pollfd pfd[CLIENTS + 1];
    for (int i = 0; i <= CLIENTS; i++) {
        struct bus_client *c = i < CLIENTS ? L->c[i] : L->watch;
        pfd[i] = (struct pollfd){.fd = ws_fd(c->ws), .events = POLLIN};
    }
    if (poll(pfd, CLIENTS + 1, ms) < 0 && errno != EINTR)
        fail_msg("poll: %s", strerror(errno));
    for (int i = 0; i <= CLIENTS; i++) {
        struct bus_client *c = i < CLIENTS ? L->c[i] : L->watch;
        char *data;
        size_t len;
        int op;
        while ((op = ws_poll_message(c->ws, &data, &len)) > 0) {
            if (op == WS_OP_TEXT)
                load_take(L, i, data, len);
            free(data);
        }
        if (op < 0)
            fail_msg("client %d was dropped: %s (close code %d)", i, ws_error(c->ws),
                     ws_close_code(c->ws));
    }
}

/* Every publisher publishes k more messages, without waiting (at most 200 unacknowledged),
 * unless it has sent max_sent. */
static void load_send(struct load *L, int k)
{
    int max = L->max_sent ? L->max_sent : MAX_SENT;
    for (int p = 0; p < PUBS; p++)
        for (int j = 0; j < k && L->sent[p] < max; j++) {
            while (L->sent[p] - L->acked[p] >= 200)
                load_read(L, 10);
            int n = ++L->sent[p];
            char id[64];
            message_id(id, sizeof id, p, n);
            bc_send(L->c[p], "{s:s, s:s, s:s, s:s, s:{s:i, s:i}}", "id", id, "type", "message",
                    "room", L->room, "channel", L->channels[p % L->nch], "payload", "p", p, "n", n);
        }
}

/* Everything sent is acknowledged and delivered to every member. */
static int load_settled(const struct load *L)
{
    for (int p = 0; p < PUBS; p++) {
        if (L->acked[p] != L->sent[p])
            return 0;
        for (int i = 0; i < CLIENTS; i++)
            if (i != p && L->last[i][p] != L->sent[p])
                return 0;
    }
    return 1;
}

static void load_settle(struct load *L)
{
    long long deadline = now_ms() + h_ms(10000);
    while (!load_settled(L)) {
        if (now_ms() > deadline)
            fail_msg("messages still missing after %d ms", h_ms(10000));
        load_read(L, 20);
    }
}

/* n turns of one message per publisher, ms apart, reading all the while. */
static void load_turns(struct load *L, int n, int ms)
{
    for (int t = 0; t < n; t++) {
        long long turn = now_ms() + ms;
        load_send(L, 1);
        do
            load_read(L, (int)(turn - now_ms() > 0 ? turn - now_ms() : 0));
        while (now_ms() < turn);
    }
}

/* Ask `status` on the watch client unless a request is on its way. */
static void load_ask_status(struct load *L)
{
    if (L->status_pending)
        return;
    static unsigned seq;
    char id[64];
    snprintf(id, sizeof id, "arq_1700000000000_%u_abcdef", ++seq);
    bc_send(L->watch, "{s:s, s:s, s:s}", "id", id, "type", "command", "command", "status");
    L->status_pending = 1;
}

/* Read until no `status` is on its way: the watch client is free for another command. */
static void load_quiet_watch(struct load *L)
{
    long long deadline = now_ms() + h_ms(5000);
    while (L->status_pending) {
        if (now_ms() > deadline)
            fail_msg("no answer to status within %d ms", h_ms(5000));
        load_read(L, 5);
    }
}

/* Keep the load going (k messages per publisher per turn) until pred(L, arg) holds on a fresh
 * `status`, for at most ms. */
static void load_until(struct load *L, int k, int (*pred)(const struct load *, const void *),
                       const void *arg, int ms, const char *what)
{
    long long deadline = now_ms() + h_ms(ms);
    for (;;) {
        unsigned seen = L->status_seen;
        long long turn = now_ms() + L->turn_ms;
        load_ask_status(L);
        if (k)
            load_send(L, k);
        while (now_ms() < turn)
            load_read(L, (int)(turn - now_ms()));
        while (L->status_seen == seen) {
            if (now_ms() > deadline) {
                char *dump = L->status ? json_dumps(L->status, JSON_COMPACT) : NULL;
                fail_msg("no %s within %d ms; last status %s", what, h_ms(ms),
                         dump ? dump : "none");
            }
            load_read(L, 5);
        }
        if (pred(L, arg))
            return;
    }
}

/* --- SIGHUP storm -------------------------------------------------------------------------- */

static json_int_t reloads(const struct load *L, const char *key)
{
    return json_integer_value(json_object_get(json_object_get(L->status, "reloads"), key));
}

struct verdicts {
    json_int_t ok, failed;
};

static int verdicts_reached(const struct load *L, const void *arg)
{
    const struct verdicts *v = arg;
    return reloads(L, "succeeded") + reloads(L, "failed") >= v->ok + v->failed;
}

/* conf.d for storm round i. Valid rounds change what a reload can change in place, add or
 * remove a telemetry sink, and vary the log level; invalid ones (kind 0-3) add a YAML syntax
 * error, an unknown option, a value out of range, or a module that does not exist. The WebSocket
 * and HTTP listeners keep their address, so their clients stay. */
static void write_storm(struct fixture *f, int i, int invalid_kind, int tlog)
{
    h_write(f->dir, "00-host.yaml", "host:\n  plugin_dir: %s\n  log_level: %s\n",
            ARQ_BUILD_PLUGIN_DIR, i % 2 ? "info" : "warn");
    h_write(f->dir, "10-bus.yaml", "bus:\n  anonymous_role: admin\n  max_memberships: %d\n",
            1000 - i % 7);
    h_write(f->dir, "20-ws.yaml",
            "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n      max_queued_bytes: %s\n%s",
            h_port(&f->p, "ws"), i % 2 ? "16MiB" : "8MiB",
            invalid_kind == 1   ? "      max_message_byte: 1MiB\n"
            : invalid_kind == 2 ? "      max_connections: 0\n"
                                : "");
    h_write(f->dir, "30-rest.yaml",
            "plugins:\n  builtin:\n    module: commands-builtin\n"
            "  history:\n    module: storage-memory\n    config:\n      max_history: 100\n"
            "  http:\n    module: transport-http\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n",
            h_port(&f->p, "http"));
    if (tlog)
        h_write(f->dir, "40-tlog.yaml",
                "plugins:\n  events:\n    module: telemetry-log\n    config:\n"
                "      path: %s/events.jsonl\n      events: [reload_ok, reload_failed]\n",
                f->logs);
    else
        h_unlink(f->dir, "40-tlog.yaml");
    if (invalid_kind == 0)
        h_write(f->dir, "50-bad.yaml", "plugins:\n  bad: [unclosed\n");
    else if (invalid_kind == 3)
        h_write(f->dir, "50-bad.yaml", "plugins:\n  ghost:\n    module: no-such-module\n");
    else
        h_unlink(f->dir, "50-bad.yaml");
}

static void test_sighup_storm_under_load_loses_nothing_and_leaks_nothing(void **state)
{
    struct fixture *f = *state;
    write_storm(f, 1, -1, 0);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    int ws = h_component_port(&f->p, "ws"), http = h_component_port(&f->p, "http");
    static const char *const channels[] = {"feed"};
    static struct load L;
    load_open(&L, ws, "storm", channels, 1);

    /* ROUNDS reloads, every third one invalid; a SIGHUP in the middle of each round's
     * traffic, the next round once its verdict shows in `status`. */
    enum { ROUNDS = 150, WARMUP = 30 };
    long long t0 = now_ms();
    struct verdicts want = {0, 0};
    int tlog = 0, prev_tlog = 0, fds_warm = -1;
    long rss_warm = -1;
    for (int i = 1; i <= ROUNDS; i++) {
        int invalid = i % 3 == 0;
        int next_tlog = invalid ? tlog : i % 4 == 1;
        write_storm(f, i, invalid ? (i / 3) % 4 : -1, next_tlog);
        load_send(&L, 2);
        h_kill(&f->p, SIGHUP);
        load_send(&L, 2);
        if (invalid)
            want.failed++;
        else
            want.ok++;
        load_until(&L, 1, verdicts_reached, &want, 10000, "reload verdict");
        if (reloads(&L, "succeeded") != want.ok || reloads(&L, "failed") != want.failed)
            fail_msg("round %d (%s): %lld succeeded and %lld failed, expected %lld and %lld", i,
                     invalid ? "invalid" : "valid", (long long)reloads(&L, "succeeded"),
                     (long long)reloads(&L, "failed"), (long long)want.ok, (long long)want.failed);
        prev_tlog = tlog;
        tlog = next_tlog;
        if (i >= WARMUP && fds_warm < 0 && !tlog && !prev_tlog) {
            load_settle(&L);
            fds_warm = h_fd_count(f->p.pid);
            rss_warm = h_rss_kib(f->p.pid);
        }
    }
    assert_true(fds_warm > 0);

    /* Then SIGHUPs back to back, which the host may merge: each brings at most one reload.
     * The `reload` command answers once a reload that began after it arrived is done; the
     * second one arrives after every signal sent before the first has been handled, so
     * nothing is pending after it. The last configuration (max_memberships 777) is then in
     * force. */
    enum { BURST = 20 };
    json_int_t before = reloads(&L, "succeeded");
    write_storm(f, 1, -1, 0);
    for (int i = 0; i < BURST; i++) {
        load_send(&L, 1);
        h_kill(&f->p, SIGHUP);
    }
    h_write(f->dir, "10-bus.yaml", "bus:\n  anonymous_role: admin\n  max_memberships: 777\n");
    h_kill(&f->p, SIGHUP);
    load_send(&L, 1);
    load_quiet_watch(&L);
    for (int i = 0; i < 2; i++) {
        json_t *r;
        bc_command_ok(L.watch, &r, "reload", NULL);
        json_decref(r);
    }
    json_t *r;
    const json_t *d = bc_command_ok(L.watch, &r, "whoami", NULL);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(d, "limits"), "max_memberships")), 777);
    json_decref(r);
    load_until(&L, 0, verdicts_reached, &(struct verdicts){before + 2, want.failed}, 10000,
               "the verdicts after the burst");
    json_int_t burst_reloads = reloads(&L, "succeeded") - before;
    assert_true(burst_reloads >= 2 && burst_reloads <= BURST + 3);
    assert_int_equal(reloads(&L, "failed"), want.failed);

    load_settle(&L);
    long long elapsed = now_ms() - t0;
    int fds_end = h_fd_count(f->p.pid);
    for (int waited = 0; fds_end != fds_warm && waited < h_ms(2000); waited += 20) {
        load_read(&L, 20); /* a sink removed by the last reload may close its file a bit later */
        fds_end = h_fd_count(f->p.pid);
    }
    long rss_end = h_rss_kib(f->p.pid);
    long long sent = 0;
    for (int p = 0; p < PUBS; p++)
        sent += L.sent[p];
    fprintf(stderr,
            "SIGHUP storm: %d reloads (%lld ok, %lld refused), then %d SIGHUPs back to back and "
            "2 reload commands (%lld reloads), in %lld ms; %lld messages acknowledged, %lld "
            "deliveries checked, %d clients kept; after a warm-up of %d reloads: fds %d -> %d, "
            "VmRSS %ld -> %ld KiB (%+ld)\n",
            ROUNDS, (long long)want.ok, (long long)want.failed, BURST + 1, (long long)burst_reloads,
            elapsed, sent, L.delivered, CLIENTS + 1, WARMUP, fds_warm, fds_end, rss_warm, rss_end,
            rss_end - rss_warm);
    assert_int_equal(json_integer_value(json_object_get(L.status, "clients")), CLIENTS + 1);
    assert_int_equal(fds_end, fds_warm);
    if (!sanitized())
        assert_true(rss_end - rss_warm < 1024);

    /* /metrics counts the same reloads. */
    struct http_resp resp;
    char err[256];
    if (http_request("127.0.0.1", http, "GET", "/metrics", NULL, NULL, 0, h_ms(5000), &resp, err,
                     sizeof err) != 0)
        fail_msg("GET /metrics: %s", err);
    struct prom_doc doc;
    if (prom_parse(resp.body, &doc, err, sizeof err) != 0)
        fail_msg("/metrics: %s", err);
    double ok = 0, failed = 0;
    prom_value(&doc, &ok, "arqonbus_reloads_total", "result", "success", NULL);
    prom_value(&doc, &failed, "arqonbus_reloads_total", "result", "failure", NULL);
    assert_int_equal((json_int_t)ok, reloads(&L, "succeeded"));
    assert_int_equal((json_int_t)failed, want.failed);
    prom_free(&doc);
    http_resp_free(&resp);

    load_close(&L);
    assert_int_equal(h_stop(f), 0);
}

/* --- Redis killed under load --------------------------------------------------------------- */

struct rfx {
    struct fixture *bus;
    struct redis_server rs;
};

static int redis_setup(void **state)
{
    struct rfx *x = calloc(1, sizeof *x);
    if (!x || h_setup((void **)&x->bus) != 0)
        return -1;
    *state = x;
    return 0;
}

static int redis_teardown(void **state)
{
    struct rfx *x = *state;
    h_teardown((void **)&x->bus);
    redis_server_cleanup(&x->rs);
    free(x);
    return 0;
}

static void start_redis_bus(struct rfx *x, int *ws, int *http)
{
    struct fixture *f = x->bus;
    h_write(f->dir, "00.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  ws:\n    module: transport-websocket\n"
            "    config:\n      host: 127.0.0.1\n      port: %d\n"
            "  builtin:\n    module: commands-builtin\n"
            "  history:\n    module: storage-redis\n    config:\n"
            "      url: redis://127.0.0.1:%d\n      key_prefix: faults\n"
            "      connect_timeout: 1s\n"
            "  http:\n    module: transport-http\n    config:\n"
            "      host: 127.0.0.1\n      port: %d\n",
            ARQ_BUILD_PLUGIN_DIR, h_port(&f->p, "ws"), x->rs.port, h_port(&f->p, "http"));
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    *ws = h_component_port(&f->p, "ws");
    *http = h_component_port(&f->p, "http");
}

static int health_is(const struct load *L, const void *want)
{
    return !strcmp(bc_str(json_object_get(L->status, "storage"), "health"), want);
}

/* The history of room/channel, oldest first, as the history command gives it (the caller
 * decrefs); asserts it is complete (count below the limit). */
static json_t *history_of(struct bus_client *c, const char *room, const char *channel)
{
    json_t *r;
    const json_t *d = bc_command_ok(c, &r, "history", "{s:s, s:s, s:i}", "room", room, "channel",
                                    channel, "limit", 1000);
    json_t *copy = json_deep_copy(d);
    json_decref(r);
    assert_true(json_integer_value(json_object_get(copy, "count")) < 1000);
    return copy;
}

/* Every message acknowledged to the publishers of channel ch is in `history` exactly once, in
 * each publisher's order, with offsets 1, 2, 3, ...; an ack given while Redis was reachable
 * (the history's epoch) carries the offset the history has. Returns how many acks did. */
static int check_history(const struct load *L, int ch, const json_t *history)
{
    static char seen[PUBS][MAX_SENT + 1];
    memset(seen, 0, sizeof seen);
    int next[PUBS] = {0}, expected = 0, same_epoch = 0;
    for (int p = ch; p < PUBS; p += L->nch)
        expected += L->acked[p];
    const char *epoch = bc_str(history, "epoch");
    const json_t *entries = json_object_get(history, "entries");
    assert_int_equal(json_array_size(entries), expected);
    for (size_t k = 0; k < json_array_size(entries); k++) {
        const json_t *e = json_array_get(entries, k);
        const json_t *env = json_object_get(e, "envelope");
        int p = payload_int(env, "p"), n = payload_int(env, "n");
        json_int_t offset = json_integer_value(json_object_get(e, "offset"));
        assert_int_equal(offset, (json_int_t)k + 1);
        assert_true(p >= 0 && p < PUBS && p % L->nch == ch && n >= 1 && n <= L->acked[p]);
        if (seen[p][n]++)
            fail_msg("message %d of publisher %d is in the history twice", n, p);
        if (n <= next[p])
            fail_msg("message %d of publisher %d is stored after %d", n, p, next[p]);
        next[p] = n;
        char id[64];
        message_id(id, sizeof id, p, n);
        assert_string_equal(bc_str(env, "id"), id);
        if (!strcmp(L->acks[p][n].epoch, epoch)) {
            assert_int_equal(L->acks[p][n].offset, offset);
            same_epoch++;
        }
    }
    return same_epoch;
}

static void
test_redis_killed_and_restarted_under_load_keeps_every_acknowledged_message(void **state)
{
    struct rfx *x = *state;
    /* appendfsync always: what Redis acknowledged survives its SIGKILL */
    assert_int_equal(redis_server_start_aof(&x->rs, 0), 0);
    int ws, http;
    start_redis_bus(x, &ws, &http);
    static const char *const channels[] = {"c0", "c1"};
    static struct load L;
    load_open(&L, ws, "faults", channels, 2);
    load_until(&L, 0, health_is, "healthy", 5000, "healthy storage");

    /* A message per publisher every 20 ms; Redis dies and comes back twice meanwhile. While
     * it is away the bus acknowledges from memory (degraded), and once it is back replays
     * what it buffered. */
    enum { TURN_MS = 20 };
    L.turn_ms = TURN_MS;
    L.max_sent = 450; /* the history command returns at most 1000 per channel */
    long long t0 = now_ms();
    load_turns(&L, 20, TURN_MS);
    for (int cycle = 0; cycle < 2; cycle++) {
        redis_server_signal(&x->rs, SIGKILL);
        load_until(&L, 1, health_is, "degraded", 5000, "degraded storage");
        load_turns(&L, 30, TURN_MS);
        assert_int_equal(redis_server_restart(&x->rs), 0);
        load_until(&L, 1, health_is, "healthy", 15000, "healthy storage after the restart");
        load_turns(&L, 20, TURN_MS);
    }
    load_settle(&L);
    long long elapsed = now_ms() - t0;

    /* The history command, and the same over HTTP. */
    int same_epoch = 0;
    long long stored = 0;
    for (int ch = 0; ch < 2; ch++) {
        json_t *h = history_of(L.watch, "faults", channels[ch]);
        same_epoch += check_history(&L, ch, h);
        stored += (long long)json_array_size(json_object_get(h, "entries"));
        char path[128], err[256];
        snprintf(path, sizeof path, "/history?room=faults&channel=%s&limit=1000", channels[ch]);
        struct http_resp r;
        if (http_request("127.0.0.1", http, "GET", path, NULL, NULL, 0, h_ms(5000), &r, err,
                         sizeof err) != 0)
            fail_msg("GET %s: %s", path, err);
        assert_int_equal(r.status, 200);
        json_t *over_http = json_loads(r.body, 0, NULL);
        assert_non_null(over_http);
        check_history(&L, ch, over_http);
        assert_string_equal(bc_str(over_http, "epoch"), bc_str(h, "epoch"));
        json_decref(over_http);
        http_resp_free(&r);
        json_decref(h);
    }
    load_close(&L);
    assert_int_equal(h_stop(x->bus), 0);

    /* A new arqonbusd on the same Redis reads the same history: it is in Redis. */
    start_redis_bus(x, &ws, &http);
    struct bus_client *c = bc_connect(ws, NULL);
    for (int ch = 0; ch < 2; ch++) {
        json_t *h = history_of(c, "faults", channels[ch]);
        check_history(&L, ch, h);
        json_decref(h);
    }
    bc_free(c);
    fprintf(stderr,
            "Redis killed twice under load: %lld messages acknowledged in %lld ms, all in the "
            "history once and in order, %d of them with the offset of their ack (the rest were "
            "acknowledged while Redis was away)\n",
            stored, elapsed, same_epoch);
    assert_int_equal(h_stop(x->bus), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_sighup_storm_under_load_loses_nothing_and_leaks_nothing, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_redis_killed_and_restarted_under_load_keeps_every_acknowledged_message,
            redis_setup, redis_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
