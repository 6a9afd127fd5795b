/* The accept loop of plugins/common/net_accept.c on a real libuv loop and real sockets on
 * 127.0.0.1, with the mock host's timers (they fire when the test says so). Running out of
 * descriptors is made real by lowering RLIMIT_NOFILE to the descriptors already open. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "mock_host.h"
#include "net_accept.h"
#include "net_listen.h"

#define MAX_CONNS 16

static uv_loop_t loop;
static struct arq_host api;

static void *loop_uv(arq_ctx *ctx)
{
    (void)ctx;
    return &loop;
}

struct sink {
    int fds[MAX_CONNS];
    size_t n;
};

struct fx {
    struct mock_host *mh;
    int lfd, port;
    int clients[MAX_CONNS];
    size_t nclients;
    struct sink got, got2;
    struct arq_net_acceptor *a, *b;
    struct rlimit limit; /* as it was: restored by teardown too */
};

static void on_accept(void *arg, int fd)
{
    struct sink *s = arg;
    assert_true(s->n < MAX_CONNS);
    s->fds[s->n++] = fd;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f || uv_loop_init(&loop) != 0) {
        free(f);
        return -1;
    }
    f->lfd = -1;
    api = *mock_host_api();
    api.uv_loop = loop_uv;
    struct arq_error err;
    struct sockaddr_storage addr, bound;
    socklen_t len;
    if (getrlimit(RLIMIT_NOFILE, &f->limit) != 0 || !(f->mh = mock_host_new("listener")) ||
        arq_net_parse_address("127.0.0.1", 0, &addr, &len, &err) != 0)
        goto fail;
    f->lfd = arq_net_listen(&addr, len, "127.0.0.1", 0, 0, &bound, &err);
    if (f->lfd < 0)
        goto fail;
    char text[64];
    arq_net_describe(&bound, text, sizeof text, &f->port);
    if (strcmp(text, "127.0.0.1") != 0 || f->port <= 0)
        goto fail;
    *state = f;
    return 0;

fail:
    if (f->lfd >= 0)
        close(f->lfd);
    mock_host_free(f->mh);
    uv_loop_close(&loop);
    free(f);
    return -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    setrlimit(RLIMIT_NOFILE, &f->limit);
    arq_net_accept_close(f->a, 0);
    arq_net_accept_close(f->b, 0);
    for (int i = 0; i < 1000 && uv_loop_close(&loop) == UV_EBUSY; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    for (size_t i = 0; i < f->nclients; i++)
        close(f->clients[i]);
    for (size_t i = 0; i < f->got.n; i++)
        close(f->got.fds[i]);
    for (size_t i = 0; i < f->got2.n; i++)
        close(f->got2.fds[i]);
    if (fcntl(f->lfd, F_GETFD) >= 0) /* not closed by an acceptor */
        close(f->lfd);
    mock_host_free(f->mh);
    free(f);
    return 0;
}

/* A client connection; on loopback it waits in the listen queue once connect() returns. */
static void connect_client(struct fx *f)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    f->clients[f->nclients++] = fd;
}

static struct arq_net_acceptor *start(struct fx *f, unsigned per_wakeup, struct sink *s)
{
    struct arq_error err;
    struct arq_net_acceptor *a =
        arq_net_accept_start(&api, mock_host_ctx(f->mh), f->lfd, 1, per_wakeup, on_accept, s, &err);
    assert_non_null(a);
    assert_int_equal(arq_net_accept_fd(a), f->lfd);
    return a;
}

/* One round of the loop: each readable socket's callback runs once. */
static void run_once(void)
{
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* No descriptor can be opened from now on: the limit is the lowest free one. */
static void run_out_of_descriptors(void)
{
    int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(probe >= 0);
    close(probe);
    struct rlimit low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &low), 0);
    low.rlim_cur = (rlim_t)probe;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    assert_int_equal(open("/dev/null", O_RDONLY | O_CLOEXEC), -1);
    assert_int_equal(errno, EMFILE);
}

static void accepted_sockets_are_nonblocking_cloexec_and_nodelay(void **state)
{
    struct fx *f = *state;
    f->a = start(f, 64, &f->got);
    for (int i = 0; i < 3; i++)
        connect_client(f);
    run_once();
    assert_int_equal(f->got.n, 3);
    for (size_t i = 0; i < f->got.n; i++) {
        int fd = f->got.fds[i], one = 0;
        socklen_t len = sizeof one;
        assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, &len), 0);
        assert_int_equal(one, 1);
    }
    run_once(); /* nothing pending: no call */
    assert_int_equal(f->got.n, 3);
}

static void at_most_per_wakeup_connections_each_time(void **state)
{
    struct fx *f = *state;
    f->a = start(f, 2, &f->got);
    for (int i = 0; i < 5; i++)
        connect_client(f);
    run_once();
    assert_int_equal(f->got.n, 2);
    run_once();
    assert_int_equal(f->got.n, 4);
    run_once();
    assert_int_equal(f->got.n, 5);
}

/* EMFILE: the acceptor stops watching for ARQ_NET_ACCEPT_BACKOFF_MS instead of spinning, and
 * takes the queued connections once its timer ends the pause. */
static void out_of_descriptors_backs_off_then_recovers(void **state)
{
    struct fx *f = *state;
    f->a = start(f, 64, &f->got);
    for (int i = 0; i < 3; i++)
        connect_client(f);
    run_out_of_descriptors();
    run_once();
    assert_int_equal(f->got.n, 0);
    assert_int_equal(mock_host_timers_active(f->mh), 1);
    assert_int_equal(mock_host_timer_period(f->mh, 0, 0), ARQ_NET_ACCEPT_BACKOFF_MS);
    assert_int_equal(mock_host_timer_period(f->mh, 0, 1), 0);

    /* Descriptors are back, but the pause is not over: a watching acceptor would take the
     * queued connections now. */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &f->limit), 0);
    for (int i = 0; i < 3; i++)
        run_once();
    assert_int_equal(f->got.n, 0);

    assert_int_equal(mock_host_fire_timers(f->mh), 1);
    assert_int_equal(mock_host_timers_active(f->mh), 0);
    run_once();
    assert_int_equal(f->got.n, 3);
}

/* A back-off that ends while the acceptor is paused leaves it paused. */
static void back_off_ending_during_a_pause_does_not_resume(void **state)
{
    struct fx *f = *state;
    f->a = start(f, 64, &f->got);
    connect_client(f);
    run_out_of_descriptors();
    run_once();
    assert_int_equal(mock_host_timers_active(f->mh), 1);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &f->limit), 0);
    arq_net_accept_pause(f->a);
    assert_int_equal(mock_host_fire_timers(f->mh), 1);
    run_once();
    assert_int_equal(f->got.n, 0);
    arq_net_accept_resume(f->a);
    run_once();
    assert_int_equal(f->got.n, 1);
}

static void close_during_a_back_off_stops_its_timer(void **state)
{
    struct fx *f = *state;
    f->a = start(f, 64, &f->got);
    connect_client(f);
    run_out_of_descriptors();
    run_once();
    assert_int_equal(mock_host_timers_active(f->mh), 1);
    arq_net_accept_close(f->a, 0);
    f->a = NULL;
    assert_int_equal(mock_host_timers_active(f->mh), 0);
}

/* A successor takes the socket over (transport-websocket on reload): the first pauses, the
 * second watches, the first closes keeping the socket, which the second then closes. */
static void a_successor_takes_the_socket_over(void **state)
{
    struct fx *f = *state;
    f->a = start(f, 64, &f->got);
    arq_net_accept_pause(f->a);
    f->b = start(f, 64, &f->got2);
    arq_net_accept_close(f->a, 1);
    f->a = NULL;
    connect_client(f);
    for (int i = 0; i < 3; i++)
        run_once();
    assert_int_equal(f->got.n, 0);
    assert_int_equal(f->got2.n, 1);
    assert_true(fcntl(f->lfd, F_GETFD) >= 0);

    arq_net_accept_close(f->b, 0);
    f->b = NULL;
    run_once();
    assert_int_equal(fcntl(f->lfd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(accepted_sockets_are_nonblocking_cloexec_and_nodelay, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(at_most_per_wakeup_connections_each_time, setup, teardown),
        cmocka_unit_test_setup_teardown(out_of_descriptors_backs_off_then_recovers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(back_off_ending_during_a_pause_does_not_resume, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(close_during_a_back_off_stops_its_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(a_successor_takes_the_socket_over, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
