/* arqonbus-cli against a real arqonbusd: sub, pub and cmd as the README shows them. */
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

#include "bus_client.h"

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
