/* The service manager's notifications: what each message says, where it goes, and that a
 * reader who does not read never blocks the caller. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "notify.h"

struct reader {
    int fd;
    char path[108];
};

/* A datagram socket at a fresh path (or in the abstract namespace), named by NOTIFY_SOCKET. */
static int reader_open(struct reader *r, int abstract)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    socklen_t len;
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(r->fd >= 0);
    if (abstract) {
        snprintf(r->path, sizeof r->path, "@arq-notify-test-%d", (int)getpid());
        memcpy(addr.sun_path + 1, r->path + 1, strlen(r->path) - 1);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(r->path));
    } else {
        snprintf(r->path, sizeof r->path, "/tmp/arq-notify-test-%d.sock", (int)getpid());
        unlink(r->path);
        snprintf(addr.sun_path, sizeof addr.sun_path, "%s", r->path);
        len = sizeof addr;
    }
    assert_int_equal(bind(r->fd, (struct sockaddr *)&addr, len), 0);
    setenv("NOTIFY_SOCKET", r->path, 1);
    return 0;
}

static void reader_close(struct reader *r)
{
    close(r->fd);
    if (r->path[0] == '/')
        unlink(r->path);
    unsetenv("NOTIFY_SOCKET");
}

/* The next message, or "" when none is queued. */
static const char *next(struct reader *r)
{
    static char buf[2048];
    ssize_t n = recv(r->fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void stopping_is_said_only_after_ready(void **state)
{
    (void)state;
    struct reader r;
    reader_open(&r, 0);
    notify_stopping(); /* a failed start: nothing was ready */
    assert_string_equal(next(&r), "");
    notify_ready(1);
    assert_string_equal(
        next(&r), "READY=1\nSTATUS=Serving, configuration generation 1\nX_ARQONBUS_GENERATION=1");
    notify_stopping();
    assert_string_equal(next(&r), "STOPPING=1\nSTATUS=Stopping");
    reader_close(&r);
}

static void a_reload_says_reloading_then_its_verdict_and_generation(void **state)
{
    (void)state;
    struct reader r;
    reader_open(&r, 0);
    notify_reloading();
    const char *m = next(&r);
    assert_true(!strncmp(m, "RELOADING=1\nMONOTONIC_USEC=", 27));
    assert_true(strtoull(m + 27, NULL, 10) > 0);
    notify_reloaded(1, 7, NULL);
    assert_string_equal(next(&r), "READY=1\nSTATUS=Serving, configuration generation 7\n"
                                  "X_ARQONBUS_RELOAD=ok\nX_ARQONBUS_GENERATION=7");
    /* A failed reload's first problem, on one line: a newline would start a field. */
    notify_reloaded(0, 7, "a.yaml:3:5: bad\nX_INJECTED=1");
    assert_string_equal(next(&r), "READY=1\nSTATUS=Reload failed, the running configuration stays: "
                                  "a.yaml:3:5: bad X_INJECTED=1\nX_ARQONBUS_RELOAD=failed\n"
                                  "X_ARQONBUS_GENERATION=7");
    reader_close(&r);
}

static void the_abstract_namespace_is_reached(void **state)
{
    (void)state;
    struct reader r;
    reader_open(&r, 1);
    notify_reloaded(1, 3, NULL);
    assert_non_null(strstr(next(&r), "X_ARQONBUS_GENERATION=3"));
    reader_close(&r);
}

/* A reader that never reads: its queue fills (net.unix.max_dgram_qlen, often 10), and then
 * messages are dropped instead of blocking the caller (a blocking send would hang here, and
 * the test with it). The first ones are still there, in order. */
static void a_reader_that_does_not_read_never_blocks_the_caller(void **state)
{
    (void)state;
    struct reader r;
    reader_open(&r, 0);
    for (unsigned i = 1; i <= 1000; i++)
        notify_reloaded(1, i, NULL);
    assert_non_null(strstr(next(&r), "X_ARQONBUS_GENERATION=1"));
    assert_non_null(strstr(next(&r), "X_ARQONBUS_GENERATION=2"));
    reader_close(&r);
}

static void without_notify_socket_nothing_happens(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    notify_ready(1);
    notify_reloading();
    notify_reloaded(0, 1, "x");
    setenv("NOTIFY_SOCKET", "relative/path", 1); /* neither a path nor @name: ignored */
    notify_ready(1);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stopping_is_said_only_after_ready),
        cmocka_unit_test(a_reload_says_reloading_then_its_verdict_and_generation),
        cmocka_unit_test(the_abstract_namespace_is_reached),
        cmocka_unit_test(a_reader_that_does_not_read_never_blocks_the_caller),
        cmocka_unit_test(without_notify_socket_nothing_happens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
