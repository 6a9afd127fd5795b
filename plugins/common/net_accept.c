#define _GNU_SOURCE /* accept4 */
#include "net_accept.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

struct arq_net_acceptor {
    uv_poll_t poll;
    int fd;
    int owns_fd; /* closed with the handle unless kept */
    int paused;
    unsigned per_wakeup;
    const struct arq_host *host;
    arq_ctx *ctx;
    arq_net_accept_cb cb;
    void *arg;
    arq_timer *backoff;
};

static void net_accept__closed(uv_handle_t *h)
{
    struct arq_net_acceptor *a = h->data;
    if (a->owns_fd && a->fd >= 0)
        close(a->fd);
    free(a);
}

static void net_accept__on_backoff(void *arg);

/* Out of descriptors or memory (or any failure but the transient ones): the pending connection
 * stays queued and the socket stays readable, so stop watching it for a moment rather than
 * spin. Without a timer to end the pause, keep watching: retrying on every wakeup beats a
 * listener that never accepts again. */
static void net_accept__back_off(struct arq_net_acceptor *a, int error)
{
    char retry[16];
    snprintf(retry, sizeof retry, "%d", ARQ_NET_ACCEPT_BACKOFF_MS);
    ARQ_LOG(a->host, a->ctx, ARQ_LOG_WARN, "cannot accept", "error", strerror(error), "retry_ms",
            retry);
    if (a->backoff)
        return;
    a->backoff =
        a->host->timer_start(a->ctx, ARQ_NET_ACCEPT_BACKOFF_MS, 0, net_accept__on_backoff, a);
    if (a->backoff)
        uv_poll_stop(&a->poll);
}

static void net_accept__on_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    struct arq_net_acceptor *a = h->data;
    if (status < 0) {
        ARQ_LOG(a->host, a->ctx, ARQ_LOG_WARN, "listener error", "error", uv_strerror(status));
        return;
    }
    for (unsigned i = 0; i < a->per_wakeup; i++) {
        int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            a->cb(a->arg, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            net_accept__back_off(a, errno);
        return;
    }
}

static void net_accept__on_backoff(void *arg)
{
    struct arq_net_acceptor *a = arg;
    a->host->timer_stop(a->backoff);
    a->backoff = NULL;
    if (!a->paused)
        uv_poll_start(&a->poll, UV_READABLE, net_accept__on_readable);
}

struct arq_net_acceptor *arq_net_accept_start(const struct arq_host *host, arq_ctx *ctx, int fd,
                                              int owns_fd, unsigned per_wakeup,
                                              arq_net_accept_cb cb, void *arg,
                                              struct arq_error *err)
{
    struct arq_net_acceptor *a = calloc(1, sizeof *a);
    if (!a) {
        arq_error_set(err, ARQ_ENOMEM, "out of memory");
        return NULL;
    }
    int rc = uv_poll_init_socket(host->uv_loop(ctx), &a->poll, fd);
    if (rc != 0) {
        free(a);
        arq_error_set(err, ARQ_EIO, "cannot watch the listening socket: %s", uv_strerror(rc));
        return NULL;
    }
    a->poll.data = a;
    a->fd = fd;
    a->owns_fd = owns_fd;
    a->per_wakeup = per_wakeup ? per_wakeup : 1;
    a->host = host;
    a->ctx = ctx;
    a->cb = cb;
    a->arg = arg;
    uv_poll_start(&a->poll, UV_READABLE, net_accept__on_readable);
    return a;
}

int arq_net_accept_fd(const struct arq_net_acceptor *a)
{
    return a->fd;
}

void arq_net_accept_pause(struct arq_net_acceptor *a)
{
    a->paused = 1;
    uv_poll_stop(&a->poll);
}

void arq_net_accept_resume(struct arq_net_acceptor *a)
{
    a->paused = 0;
    if (!a->backoff)
        uv_poll_start(&a->poll, UV_READABLE, net_accept__on_readable);
}

void arq_net_accept_close(struct arq_net_acceptor *a, int keep_fd)
{
    if (!a)
        return;
    if (a->backoff)
        a->host->timer_stop(a->backoff);
    a->backoff = NULL;
    if (keep_fd)
        a->owns_fd = 0;
    uv_poll_stop(&a->poll);
    uv_close((uv_handle_t *)&a->poll, net_accept__closed);
}
