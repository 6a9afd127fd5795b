/* arqonbus-cli against a real arqonbusd: sub, pub, history and cmd as the README shows them;
 * sub across a daemon restart (recovering from a Redis history), the wait bounds and their exit
 * codes, payloads from standard input and files, the output formats, a refusal's reason, and
 * the interactive mode on a pty. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <arqonbus/plugin.h>
#include <pty.h>
#include <time.h>

#include "bus_client.h"
#include "redis_server.h"

/* `ws_extra`: more lines (indented 6) under the transport's config. */
static int start_with(struct fixture *f, const char *ws_extra)
{
    h_write(f->dir, "00.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  ws:\n    module: transport-websocket\n"
            "    config:\n      host: 127.0.0.1\n      port: 0\n%s"
            "  builtin:\n    module: commands-builtin\n",
            ARQ_BUILD_PLUGIN_DIR, ws_extra);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    return bc_port(&f->p);
}

static int start(struct fixture *f)
{
    return start_with(f, "");
}

/* Run the CLI with "-p PORT" and `args`; its stdout in *out; returns the exit status. */
static int cli(int port, char **out, const char *const *args)
{
    char cmd[2048];
    int n = snprintf(cmd, sizeof cmd, "%s -p %d", ARQ_TEST_CLI, port);
    for (size_t i = 0; args[i]; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " '%s'", args[i]);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 65536, len = 0;
    *out = calloc(1, cap);
    size_t got;
    while ((got = fread(*out + len, 1, cap - len - 1, p)) > 0)
        len += got;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Run `sh -c CMD` (printf-style) with stdout and stderr into files of f->logs, read back into
 * *out and *err (free them; either may be NULL to drop it); returns the exit status. */
static int sh_run(struct fixture *f, char **out, char **err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int sh_run(struct fixture *f, char **out, char **err, const char *fmt, ...)
{
    char cmd[4096], full[6000], po[600], pe[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(po, sizeof po, "%s/run.out", f->logs);
    snprintf(pe, sizeof pe, "%s/run.err", f->logs);
    snprintf(full, sizeof full, "( %s ) > '%s' 2> '%s'", cmd, po, pe);
    int st = system(full);
    char *o = h_slurp(po), *e = h_slurp(pe);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A CLI in the background: `sh -c "CLI -p PORT ARGS > LOGS/NAME.out 2> LOGS/NAME.err"`. */
static pid_t cli_bg(struct fixture *f, int port, const char *name, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec %s -p %d %s > '%s/%s.out' 2> '%s/%s.err'", ARQ_TEST_CLI, port,
             args, f->logs, name, f->logs, name);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static char *bg_file(struct fixture *f, const char *name, const char *ext)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s.%s", f->logs, name, ext);
    return h_slurp(path);
}

/* Wait until the background CLI's file holds `needle`; fails the test after 10 s (scaled). */
static void wait_for_text(struct fixture *f, const char *name, const char *ext, const char *needle)
{
    for (int i = 0; i < h_ms(10000) / 20; i++) {
        char *s = bg_file(f, name, ext);
        int found = strstr(s, needle) != NULL;
        free(s);
        if (found)
            return;
        usleep(20 * 1000);
    }
    char *s = bg_file(f, name, ext);
    fail_msg("%s.%s never held %s; it holds:\n%s", name, ext, needle, s);
}

/* Wait for a background CLI's exit status, at most timeout_ms (scaled); -1 if it did not end. */
static int wait_pid(pid_t pid, int timeout_ms)
{
    int st;
    for (int i = 0; i < h_ms(timeout_ms) / 10; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        usleep(10 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Publish {"n": n} to lobby/general through c (a member) and wait for the ack. */
static void publish_n(struct bus_client *c, int n)
{
    char id[64];
    snprintf(id, sizeof id, "arq_1700000000000_%d_%06x", (int)getpid(), (unsigned)n);
    bc_send(c, "{s:s, s:s, s:s, s:s, s:{s:i}}", "type", "message", "id", id, "room", "lobby",
            "channel", "general", "payload", "n", n);
    json_t *ack = bc_expect(c, "message_response", 5000);
    assert_string_equal(bc_str(ack, "status"), "success");
    json_decref(ack);
}

/* The `n` of every message frame (not the server's own) among the JSON lines of `text`, in
 * order, into ns (at most max); how many. */
static int message_ns(const char *text, int *ns, int max)
{
    int k = 0;
    for (const char *line = text; line && *line && k < max;) {
        const char *nl = strchr(line, '\n');
        json_t *m = json_loadb(line, nl ? (size_t)(nl - line) : strlen(line), 0, NULL);
        if (m && strcmp(bc_str(m, "type"), "message") == 0 &&
            strcmp(bc_str(m, "sender"), "arqonbus") != 0)
            ns[k++] = (int)json_integer_value(json_object_get(json_object_get(m, "payload"), "n"));
        json_decref(m);
        line = nl ? nl + 1 : NULL;
    }
    return k;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void test_cmd_prints_the_response_and_exits_by_its_status(void **state)
{
    struct fixture *f = *state;
    int port = start(f);
    char *out;
    assert_int_equal(cli(port, &out, (const char *[]){"cmd", "ping", NULL}), 0);
    json_t *r = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(r);
    assert_string_equal(bc_str(r, "type"), "response");
    assert_string_equal(bc_str(r, "status"), "success");
    json_decref(r);
    free(out);

    assert_int_equal(
        cli(port, &out, (const char *[]){"cmd", "list_channels", "{\"room\":\"none\"}", NULL}), 1);
    assert_non_null(strstr(out, "\"error_code\":\"ROOM_NOT_FOUND\""));
    free(out);

    assert_int_equal(cli(port, &out, (const char *[]){"cmd", "ping", "{not json", NULL}), 2);
    free(out);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
}

static void test_sub_prints_what_pub_publishes(void **state)
{
    struct fixture *f = *state;
    int port = start(f);
    /* sub in the background: it joins, then prints one frame and exits. */
    char cmd[1024], path[600];
    snprintf(path, sizeof path, "%s/sub.out", f->logs);
    snprintf(cmd, sizeof cmd, "%s -p %d sub lobby general -n 1 > '%s'", ARQ_TEST_CLI, port, path);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* Publish until the subscriber has joined and printed (the first may come too early). */
    char *out = NULL;
    int status = -1;
    for (int i = 0; i < 50; i++) {
        free(out);
        assert_int_equal(
            cli(port, &out,
                (const char *[]){"pub", "lobby", "general", "{\"text\":\"hello\"}", NULL}),
            0);
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
        usleep(100 * 1000);
    }
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* pub printed the ack */
    assert_non_null(strstr(out, "\"type\":\"message_response\""));
    free(out);
    char *printed = h_slurp(path);
    json_t *m = json_loads(printed, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(m);
    assert_string_equal(bc_str(m, "type"), "message");
    assert_string_equal(bc_str(json_object_get(m, "payload"), "text"), "hello");
    json_decref(m);
    free(printed);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
}

/* --path '/?ack=0' (the help's example) turns the server's acks off: pub then exits 0 once the
 * server has taken the message, printing nothing, and 1 with the error when it refused it. */
static void test_pub_with_acks_off_ends_without_an_ack(void **state)
{
    struct fixture *f = *state;
    int port = start(f);
    struct bus_client *a = bc_connect(port, NULL);
    json_t *r;
    bc_command_ok(a, &r, "join_channel", "{s:s, s:s}", "room", "lobby", "channel", "general");
    json_decref(r);

    char *out;
    /* --timeout 3: without the fix this waits that long for an ack and exits 1. */
    assert_int_equal(cli(port, &out,
                         (const char *[]){"--timeout", "3", "--path", "/?ack=0", "pub", "lobby",
                                          "general", "{\"text\":\"quiet\"}", NULL}),
                     0);
    assert_string_equal(out, "");
    free(out);
    json_t *m = bc_expect(a, "message", 5000);
    assert_string_equal(bc_str(json_object_get(m, "payload"), "text"), "quiet");
    json_decref(m);

    /* A message the server refuses (nested past bus.max_payload_depth): its error, exit 1. */
    char deep[200] = "{\"x\":";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    assert_int_equal(cli(port, &out,
                         (const char *[]){"--timeout", "3", "--path", "/?x=1&ack=off", "pub",
                                          "lobby", "general", deep, NULL}),
                     1);
    assert_non_null(strstr(out, "\"error_code\":\"VALIDATION_ERROR\""));
    free(out);
    /* Nothing of it reached the member: the next frame is a later marker. */
    assert_int_equal(
        cli(port, &out, (const char *[]){"pub", "lobby", "general", "{\"text\":\"after\"}", NULL}),
        0);
    assert_non_null(strstr(out, "\"type\":\"message_response\""));
    free(out);
    m = bc_expect(a, "message", 5000);
    assert_string_equal(bc_str(json_object_get(m, "payload"), "text"), "after");
    json_decref(m);
    bc_free(a);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
}

static void test_wss_with_a_configured_certificate(void **state)
{
    struct fixture *f = *state;
    char tls[1200];
    h_make_cert(f->logs);
    snprintf(tls, sizeof tls, "      tls_cert: %s/cert.pem\n      tls_key: %s/key.pem\n", f->logs,
             f->logs);
    int port = start_with(f, tls);
    /* The listener speaks TLS: a handshake with it succeeds... */
    char *out;
    assert_int_equal(cli(port, &out, (const char *[]){"--tls", "--insecure", "cmd", "ping", NULL}),
                     0);
    assert_non_null(strstr(out, "\"pong\":true"));
    free(out);
    /* ...and a plain ws:// client does not get through it. */
    assert_int_equal(cli(port, &out, (const char *[]){"--timeout", "3", "cmd", "ping", NULL}), 1);
    free(out);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
}

/* conf.d with the WebSocket transport at a port kept across restarts, the built-in commands,
 * and the plugin entries `extra` (storage, auth; may be ""). Starts it; returns the port. */
static int start_fixed(struct fixture *f, const char *extra)
{
    h_write(f->dir, "00.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  ws:\n    module: transport-websocket\n"
            "    config:\n      host: 127.0.0.1\n      port: %d\n"
            "  builtin:\n    module: commands-builtin\n%s",
            ARQ_BUILD_PLUGIN_DIR, h_port(&f->p, "ws"), extra);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    int port = h_component_port(&f->p, "ws");
    struct h_listener l;
    assert_int_equal(h_listener(f->p.pid, port, &l), 0);
    assert_string_equal(l.addr, "127.0.0.1");
    return port;
}

static void test_version_names_the_protocol_and_the_plugin_abi(void **state)
{
    struct fixture *f = *state;
    char *out, want[64];
    assert_int_equal(sh_run(f, &out, NULL, "%s --version", ARQ_TEST_CLI), 0);
    snprintf(want, sizeof want, "(protocol 1.0, plugin ABI %d.%d)\n", ARQ_ABI_MAJOR, ARQ_ABI_MINOR);
    assert_non_null(strstr(out, "arqonbus-cli "));
    assert_non_null(strstr(out, want));
    free(out);
}

/* A sub on node A; A stops (close 1001) while node B, on the same Redis history, takes two
 * more messages; A starts again. The sub comes back, recovers the two by offset and epoch, and
 * prints every message once, in order. */
static void test_sub_recovers_what_it_missed_across_a_daemon_restart(void **state)
{
    struct fixture *f = *state;
    struct redis_server rs = {0};
    assert_int_equal(redis_server_start(&rs, 0), 0);
    char storage[512];
    snprintf(storage, sizeof storage,
             "  history:\n    module: storage-redis\n    config:\n"
             "      url: redis://127.0.0.1:%d\n      key_prefix: cli\n",
             rs.port);
    int port_a = start_fixed(f, storage);
    struct fixture b = {0};
    h_mkdtemp(b.dir, sizeof b.dir);
    h_mkdtemp(b.logs, sizeof b.logs);
    h_write(b.dir, "00.yaml",
            "host:\n  plugin_dir: %s\nplugins:\n  ws:\n    module: transport-websocket\n"
            "    config:\n      host: 127.0.0.1\n      port: 0\n"
            "  builtin:\n    module: commands-builtin\n%s",
            ARQ_BUILD_PLUGIN_DIR, storage);
    h_spawn(&b.p, b.dir, b.logs, NULL, NULL);
    int port_b = bc_port(&b.p);

    /* An older message the sub must not print: it was there before. */
    struct bus_client *pa = bc_connect(port_a, NULL);
    bc_join(pa, "lobby", "general");
    publish_n(pa, 0);
    /* -v: the position query's response goes to stderr as a frame. */
    pid_t sub = cli_bg(f, port_a, "sub", "-v -n 4 -W 60 sub lobby general");
    wait_for_text(f, "sub", "err", "\"command\":\"history\"");
    publish_n(pa, 1);
    wait_for_text(f, "sub", "out", "{\"n\":1}");
    bc_free(pa);

    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
    struct bus_client *pb = bc_connect(port_b, NULL);
    bc_join(pb, "lobby", "general");
    publish_n(pb, 2);
    publish_n(pb, 3);
    bc_free(pb);

    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    assert_int_equal(h_component_port(&f->p, "ws"), port_a);
    pa = bc_connect(port_a, NULL);
    bc_join(pa, "lobby", "general");
    wait_for_text(f, "sub", "out", "{\"n\":3}"); /* recovered before the next live one */
    publish_n(pa, 4);
    bc_free(pa);
    assert_int_equal(wait_pid(sub, 20000), 0);

    char *out = bg_file(f, "sub", "out"), *err = bg_file(f, "sub", "err");
    int ns[16], k = message_ns(out, ns, 16);
    if (k != 4 || ns[0] != 1 || ns[1] != 2 || ns[2] != 3 || ns[3] != 4)
        fail_msg("printed %d messages, expected n = 1, 2, 3, 4 once each:\n%s", k, out);
    assert_null(strstr(err, "may have been missed"));
    free(out);
    free(err);
    h_kill(&b.p, SIGTERM);
    assert_int_equal(h_wait_exit(&b.p, 10000), 0);
    h_release(&b.p);
    h_rmtree(b.dir);
    h_rmtree(b.logs);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
    redis_server_cleanup(&rs);
}

/* Without history, the sub still comes back after a restart, and says once that messages may
 * have been missed. */
static void test_sub_without_history_reconnects_and_says_once_what_may_be_lost(void **state)
{
    struct fixture *f = *state;
    int port = start_fixed(f, "");
    pid_t sub = cli_bg(f, port, "sub", "-n 2 -W 60 sub lobby general");
    struct bus_client *c = NULL;
    for (int i = 0; i < 200; i++) { /* until the sub is a member */
        c = bc_connect(port, NULL);
        bc_join(c, "lobby", "general");
        json_t *r;
        const json_t *d = bc_command_ok(c, &r, "channel_info", "{s:s, s:s}", "room", "lobby",
                                        "channel", "general");
        int members = (int)json_integer_value(json_object_get(d, "members"));
        json_decref(r);
        if (members == 2)
            break;
        bc_free(c);
        c = NULL;
        usleep(20 * 1000);
    }
    assert_non_null(c);
    publish_n(c, 1);
    wait_for_text(f, "sub", "out", "{\"n\":1}");
    bc_free(c);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
    h_spawn(&f->p, f->dir, f->logs, NULL, NULL);
    assert_int_equal(h_component_port(&f->p, "ws"), port);
    c = bc_connect(port, NULL);
    bc_join(c, "lobby", "general");
    int code = -1;
    for (int i = 0; i < 500 && code < 0; i++) { /* until the sub is back and took one */
        publish_n(c, 2);
        int st;
        if (waitpid(sub, &st, WNOHANG) == sub)
            code = WIFEXITED(st) ? WEXITSTATUS(st) : -2;
        else
            usleep(20 * 1000);
    }
    bc_free(c);
    assert_int_equal(code, 0);
    char *out = bg_file(f, "sub", "out"), *err = bg_file(f, "sub", "err");
    int ns[8], k = message_ns(out, ns, 8);
    assert_int_equal(k, 2);
    assert_int_equal(ns[0], 1);
    assert_int_equal(ns[1], 2);
    assert_int_equal(count_of(err, "may have been missed"), 1);
    free(out);
    free(err);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
}

/* -W ends a wait: 27 when -n COUNT was not reached, 0 without -n, also while reconnecting to a
 * daemon that is gone; --no-reconnect leaves with 1 instead. */
static void test_wait_bounds_end_a_sub_with_their_exit_codes(void **state)
{
    struct fixture *f = *state;
    int port = start_fixed(f, "");
    double t0 = now_s();
    assert_int_equal(
        sh_run(f, NULL, NULL, "%s -p %d -W 1 -n 1 sub lobby general", ARQ_TEST_CLI, port), 27);
    assert_int_equal(sh_run(f, NULL, NULL, "%s -p %d -W 1 sub lobby general", ARQ_TEST_CLI, port),
                     0);
    double took = now_s() - t0;
    assert_true(took >= 2.0 && took < 2.0 + h_ms(3000) / 1000.0);

    /* While reconnecting: the daemon stops for good, the wait still ends on time. */
    pid_t sub = cli_bg(f, port, "w", "-v -W 3 -n 5 sub lobby general");
    pid_t once = cli_bg(f, port, "once", "-v --no-reconnect sub lobby general");
    wait_for_text(f, "w", "out", "\"command\":\"join_channel\"");
    wait_for_text(f, "once", "out", "\"command\":\"join_channel\"");
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
    assert_int_equal(wait_pid(once, 5000), 1);
    assert_int_equal(wait_pid(sub, 5000), 27);
}

/* pub takes its payload from stdin (`-`), a file (-f), or one message per line (-l). */
static void test_pub_payloads_from_stdin_a_file_and_lines(void **state)
{
    struct fixture *f = *state;
    int port = start_fixed(f, "");
    struct bus_client *m = bc_connect(port, NULL);
    bc_join(m, "lobby", "general");
    h_write(f->logs, "one.json", "{\"n\": 2,\n \"x\": 0.1}\n");
    h_write(f->logs, "lines.jsonl", "{\"n\":3}\n\n{\"n\":4}\n");
    h_write(f->logs, "bad.jsonl", "{\"n\":90}\n{\"n\":\n");
    char *out, *err;
    assert_int_equal(sh_run(f, &out, NULL, "echo '{\"n\":1}' | %s -p %d pub lobby general -",
                            ARQ_TEST_CLI, port),
                     0);
    assert_non_null(strstr(out, "\"type\":\"message_response\""));
    free(out);
    assert_int_equal(sh_run(f, NULL, NULL, "%s -p %d pub lobby general -f '%s/one.json'",
                            ARQ_TEST_CLI, port, f->logs),
                     0);
    assert_int_equal(sh_run(f, &out, NULL, "%s -p %d pub lobby general -l -f '%s/lines.jsonl'",
                            ARQ_TEST_CLI, port, f->logs),
                     0);
    assert_int_equal(count_of(out, "\"type\":\"message_response\""), 2);
    free(out);
    assert_int_equal(sh_run(f, NULL, NULL,
                            "printf '{\"n\":5}\\n{\"n\":6}' | %s -p %d pub lobby general -l",
                            ARQ_TEST_CLI, port),
                     0);
    /* A line that is not JSON: nothing is sent, exit 1, and the line named. */
    assert_int_equal(sh_run(f, NULL, &err, "%s -p %d pub lobby general -l -f '%s/bad.jsonl'",
                            ARQ_TEST_CLI, port, f->logs),
                     1);
    assert_non_null(strstr(err, "line 2"));
    free(err);
    assert_int_equal(sh_run(f, NULL, NULL, "%s -p %d pub lobby general -f '%s/none.json'",
                            ARQ_TEST_CLI, port, f->logs),
                     1);
    assert_int_equal(sh_run(f, NULL, NULL, "echo '{\"n\":7}' | %s -p %d pub lobby general -",
                            ARQ_TEST_CLI, port),
                     0);
    for (int n = 1; n <= 7; n++) {
        json_t *msg = bc_expect(m, "message", 5000);
        json_t *payload = json_object_get(msg, "payload");
        assert_int_equal(json_integer_value(json_object_get(payload, "n")), n);
        if (n == 2)
            assert_true(json_real_value(json_object_get(payload, "x")) == 0.1);
        json_decref(msg);
    }
    bc_free(m);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
}

/* history prints entries; --raw the payloads; --pretty indented JSON; --since-offset with
 * --epoch recovers; errors exit 1. */
static void test_history_and_the_output_formats(void **state)
{
    struct fixture *f = *state;
    int port = start_fixed(f, "  history:\n    module: storage-memory\n");
    struct bus_client *c = bc_connect(port, NULL);
    bc_join(c, "lobby", "general");
    for (int n = 1; n <= 3; n++)
        publish_n(c, n);
    json_t *r;
    const json_t *d =
        bc_command_ok(c, &r, "history", "{s:s, s:s}", "room", "lobby", "channel", "general");
    char epoch[128];
    snprintf(epoch, sizeof epoch, "%s", bc_str(d, "epoch"));
    json_decref(r);
    bc_free(c);

    char *out;
    assert_int_equal(
        sh_run(f, &out, NULL, "%s -p %d history lobby general --limit 2", ARQ_TEST_CLI, port), 0);
    json_error_t je;
    json_t *e1 = json_loads(out, JSON_DISABLE_EOF_CHECK, &je);
    assert_non_null(e1);
    assert_int_equal(json_integer_value(json_object_get(e1, "offset")), 2);
    json_decref(e1);
    assert_int_equal(count_of(out, "\n"), 2);
    free(out);
    assert_int_equal(
        sh_run(f, &out, NULL, "%s -p %d history lobby general --raw", ARQ_TEST_CLI, port), 0);
    assert_string_equal(out, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
    free(out);
    assert_int_equal(sh_run(f, &out, NULL,
                            "%s -p %d history lobby general --raw --since-offset 2 --epoch %s",
                            ARQ_TEST_CLI, port, epoch),
                     0);
    assert_string_equal(out, "{\"n\":3}\n");
    free(out);
    assert_int_equal(sh_run(f, &out, NULL, "%s -p %d cmd ping --pretty", ARQ_TEST_CLI, port), 0);
    assert_non_null(strstr(out, "{\n  \""));
    assert_non_null(strstr(out, "\n    \"data\": {\n      \"pong\": true,\n"));
    json_t *pretty = json_loads(out, 0, NULL);
    assert_non_null(pretty);
    json_decref(pretty);
    free(out);
    assert_int_equal(
        sh_run(f, &out, NULL, "%s -p %d history lobby --limit 1001", ARQ_TEST_CLI, port), 2);
    free(out);
    assert_int_equal(sh_run(f, &out, NULL, "%s -p %d history 'bad room'", ARQ_TEST_CLI, port), 1);
    assert_non_null(strstr(out, "\"status\":\"error\""));
    free(out);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
}

/* A refused upgrade shows the server's reason (its JSON body), not only the status. */
static void test_a_refused_connection_shows_the_reason(void **state)
{
    struct fixture *f = *state;
    int port = start_fixed(
        f, "  api-tokens:\n    module: auth-tokens\n    config:\n      tokens:\n"
           "        - {name: svc, sha256: "
           "\"2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\", role: user}\n");
    char *err, body[256];
    assert_int_equal(sh_run(f, NULL, &err, "%s -p %d --token nope cmd ping", ARQ_TEST_CLI, port),
                     1);
    assert_non_null(strstr(err, "HTTP 401"));
    assert_non_null(strstr(err, "Unauthorized: "));
    snprintf(body, sizeof body, "%s", strstr(err, "Unauthorized: ") + 14);
    assert_true(strlen(body) > 2); /* a reason follows */
    free(err);
    assert_int_equal(sh_run(f, NULL, NULL, "%s -p %d --token x cmd ping", ARQ_TEST_CLI, port), 0);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
}

/* Read from the pty until `needle` shows or 10 s (scaled) pass; what was read goes to acc. */
static int pty_until(int fd, char *acc, size_t size, const char *needle)
{
    size_t len = strlen(acc);
    for (int i = 0; i < h_ms(10000) / 20 && !strstr(acc, needle); i++) {
        struct timeval tv = {0, 20000};
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(fd, &rd);
        if (select(fd + 1, &rd, NULL, NULL, &tv) > 0) {
            ssize_t n = read(fd, acc + len, size - len - 1);
            if (n <= 0)
                break;
            len += (size_t)n;
            acc[len] = '\0';
        }
    }
    return strstr(acc, needle) ? 0 : -1;
}

/* No COMMAND on a terminal: a prompt where commands are typed as on the command line. */
static void test_interactive_mode_runs_what_is_typed_at_the_prompt(void **state)
{
    struct fixture *f = *state;
    int port = start_fixed(f, "");
    char portarg[16];
    snprintf(portarg, sizeof portarg, "%d", port);
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("HOME", f->logs, 1); /* the history file goes there */
        setenv("TERM", "dumb", 1);
        execl(ARQ_TEST_CLI, ARQ_TEST_CLI, "-p", portarg, (char *)NULL);
        _exit(127);
    }
    static char acc[65536];
    acc[0] = '\0';
    assert_int_equal(pty_until(master, acc, sizeof acc, "arqonbus> "), 0);
    const char *typed = "cmd ping '{}'\r";
    assert_int_equal(write(master, typed, strlen(typed)), (ssize_t)strlen(typed));
    assert_int_equal(pty_until(master, acc, sizeof acc, "\"pong\":true"), 0);
    /* The next prompt may have come in the same read as the pong: keep what follows it. */
    char *after = strstr(acc, "\"pong\":true");
    memmove(acc, after, strlen(after) + 1);
    assert_int_equal(pty_until(master, acc, sizeof acc, "arqonbus> "), 0);
    assert_int_equal(write(master, "quit\r", 5), 5);
    int st;
    for (int i = 0; i < h_ms(5000) / 10 && waitpid(pid, &st, WNOHANG) != pid; i++) {
        char sink[512];
        struct timeval tv = {0, 10000};
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(master, &rd);
        if (select(master + 1, &rd, NULL, NULL, &tv) > 0 && read(master, sink, sizeof sink) <= 0)
            usleep(10000);
        st = -1;
    }
    close(master);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char hist[700];
    snprintf(hist, sizeof hist, "%s/.arqonbus_cli_history", f->logs);
    char *h = h_slurp(hist);
    assert_non_null(strstr(h, "ping")); /* libedit escapes the blanks */
    free(h);
    h_kill(&f->p, SIGTERM);
    assert_int_equal(h_wait_exit(&f->p, 10000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cmd_prints_the_response_and_exits_by_its_status,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_sub_prints_what_pub_publishes, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_pub_with_acks_off_ends_without_an_ack, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_wss_with_a_configured_certificate, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_version_names_the_protocol_and_the_plugin_abi, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_sub_recovers_what_it_missed_across_a_daemon_restart,
                                        h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(
            test_sub_without_history_reconnects_and_says_once_what_may_be_lost, h_setup,
            h_teardown),
        cmocka_unit_test_setup_teardown(test_wait_bounds_end_a_sub_with_their_exit_codes, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_pub_payloads_from_stdin_a_file_and_lines, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_history_and_the_output_formats, h_setup, h_teardown),
        cmocka_unit_test_setup_teardown(test_a_refused_connection_shows_the_reason, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_interactive_mode_runs_what_is_typed_at_the_prompt,
                                        h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
