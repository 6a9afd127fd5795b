/* The node's name, from the shipped conf.d as `make run` starts it: every file of the
 * repository's conf.d (70-broker.yaml's broker stays off without ARQONBUS_BROKER=redis, so its
 * module is not needed), and `node` in the `status` command and HTTP /status is
 * ARQONBUS_NODE_ID when set, "<host name>-<pid>" when not: two nodes on one machine differ. */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus_client.h"
#include "harness.h"
#include "http_client.h"

/* Copy every *.yaml of the repository's conf.d into `dir`: whatever files are shipped. */
static void copy_shipped_conf(const char *dir)
{
    char src[1024];
    snprintf(src, sizeof src, "%s/conf.d", ARQ_SOURCE_DIR);
    DIR *d = opendir(src);
    assert_non_null(d);
    int copied = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".yaml") != 0)
            continue;
        char path[1536];
        snprintf(path, sizeof path, "%s/%s", src, e->d_name);
        char *text = h_slurp(path);
        assert_true(strlen(text) > 0);
        h_write(dir, e->d_name, "%s", text);
        free(text);
        copied++;
    }
    closedir(d);
    assert_true(copied > 0);
}

/* Start `p` on the shipped conf.d in `dir`, WebSocket and HTTP on ports of its own on
 * 127.0.0.1, with `node_env` ("ARQONBUS_NODE_ID=...", or NULL) added to the environment. */
static void start_node(struct proc *p, const char *dir, const char *logs, const char *node_env)
{
    char ws[40], http[40];
    snprintf(ws, sizeof ws, "ARQONBUS_SERVER_PORT=%d", h_port(p, "ws"));
    snprintf(http, sizeof http, "ARQONBUS_HTTP_PORT=%d", h_port(p, "http"));
    const char *const env[] = {"ARQONBUS_PLUGIN_DIR=" ARQ_BUILD_PLUGIN_DIR,
                               "ARQONBUS_SERVER_HOST=127.0.0.1",
                               ws,
                               "ARQONBUS_HTTP_HOST=127.0.0.1",
                               http,
                               node_env,
                               NULL};
    h_spawn(p, dir, logs, NULL, env);
    assert_int_equal(h_wait_ready(p), 0);
    struct h_listener l;
    assert_int_equal(h_listener(p->pid, h_component_port(p, "ws"), &l), 0);
    assert_string_equal(l.addr, "127.0.0.1");
    assert_int_equal(h_listener(p->pid, h_component_port(p, "http"), &l), 0);
    assert_string_equal(l.addr, "127.0.0.1");
}

/* The node's name as the `status` command gives it, checked to be the same in HTTP /status
 * and free of a broker's `cluster` (70-broker.yaml is off). The caller frees it. */
static char *node_of(struct proc *p)
{
    struct bus_client *c = bc_connect(h_component_port(p, "ws"), NULL);
    json_t *resp;
    const json_t *data = bc_command_ok(c, &resp, "status", NULL);
    char *node = strdup(bc_str(data, "node"));
    assert_non_null(node);
    assert_null(json_object_get(data, "cluster"));
    json_decref(resp);
    bc_free(c);

    struct http_resp r;
    char err[256];
    if (http_request("127.0.0.1", h_component_port(p, "http"), "GET", "/status", NULL, NULL, 0,
                     h_ms(5000), &r, err, sizeof err) != 0)
        fail_msg("GET /status: %s", err);
    assert_int_equal(r.status, 200);
    json_t *status = json_loads(r.body, 0, NULL);
    assert_non_null(status);
    assert_string_equal(bc_str(status, "node"), node);
    json_decref(status);
    http_resp_free(&r);
    return node;
}

/* "<host name>-<pid>" for process `pid` of this machine. */
static void default_name(pid_t pid, char *out, size_t size)
{
    char host[200] = "";
    assert_int_equal(gethostname(host, sizeof host - 1), 0);
    snprintf(out, size, "%s-%ld", host, (long)pid);
}

static void stop(struct proc *p)
{
    h_kill(p, SIGTERM);
    assert_int_equal(h_wait_exit(p, h_ms(10000)), 0);
}

static void test_node_is_arqonbus_node_id_when_set(void **state)
{
    struct fixture *f = *state;
    copy_shipped_conf(f->dir);
    start_node(&f->p, f->dir, f->logs, "ARQONBUS_NODE_ID=bus-east-7");
    char *node = node_of(&f->p);
    assert_string_equal(node, "bus-east-7");
    free(node);
    assert_int_equal(h_stop(f), 0);
}

static void test_node_defaults_to_host_name_and_pid_so_two_nodes_differ(void **state)
{
    struct fixture *f = *state;
    copy_shipped_conf(f->dir);
    /* Unset, `node: ${ARQONBUS_NODE_ID:-}` is "" and means the default; so does empty. */
    start_node(&f->p, f->dir, f->logs, NULL);
    struct proc other = {0};
    char other_logs[512];
    h_mkdtemp(other_logs, sizeof other_logs);
    start_node(&other, f->dir, other_logs, "ARQONBUS_NODE_ID=");

    char want[300];
    char *node = node_of(&f->p);
    default_name(f->p.pid, want, sizeof want);
    assert_string_equal(node, want);
    char *other_node = node_of(&other);
    default_name(other.pid, want, sizeof want);
    assert_string_equal(other_node, want);
    assert_string_not_equal(node, other_node);
    free(node);
    free(other_node);

    stop(&other);
    h_release(&other);
    h_rmtree(other_logs);
    assert_int_equal(h_stop(f), 0);
}

int main(void)
{
    /* The environment of the test run must not name the nodes. */
    unsetenv("ARQONBUS_NODE_ID");
    unsetenv("ARQONBUS_BROKER");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_node_is_arqonbus_node_id_when_set, h_setup,
                                        h_teardown),
        cmocka_unit_test_setup_teardown(test_node_defaults_to_host_name_and_pid_so_two_nodes_differ,
                                        h_setup, h_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
