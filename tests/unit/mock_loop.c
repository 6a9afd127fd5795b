/* A real loop and timers on it for the mock host (mock_loop.h). */
#include "mock_loop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "mock_host.h"

static uv_loop_t loop;
static struct arq_host api;

struct test_timer {
    uv_timer_t t;
    arq_timer_cb cb;
    void *arg;
};

static void *loop__uv(arq_ctx *ctx)
{
    (void)ctx;
    return &loop;
}

static void timer__fired(uv_timer_t *t)
{
    struct test_timer *tt = t->data;
    tt->cb(tt->arg);
}

static arq_timer *timer__start(arq_ctx *ctx, uint64_t first_ms, uint64_t repeat_ms, arq_timer_cb cb,
                               void *arg)
{
    (void)ctx;
    struct test_timer *tt = calloc(1, sizeof *tt);
    assert_non_null(tt);
    tt->cb = cb;
    tt->arg = arg;
    uv_timer_init(&loop, &tt->t);
    tt->t.data = tt;
    uv_timer_start(&tt->t, timer__fired, first_ms, repeat_ms);
    return (arq_timer *)tt;
}

static void timer__closed(uv_handle_t *h)
{
    free(h->data);
}

static void timer__stop(arq_timer *t)
{
    if (t)
        uv_close((uv_handle_t *)&((struct test_timer *)t)->t, timer__closed);
}

const struct arq_host *mock_loop_start(void)
{
    if (uv_loop_init(&loop) != 0)
        return NULL;
    api = *mock_host_api();
    api.uv_loop = loop__uv;
    api.timer_start = timer__start;
    api.timer_stop = timer__stop;
    return &api;
}

void mock_loop_finish(void)
{
    for (int i = 0; i < 1000 && uv_loop_close(&loop) == UV_EBUSY; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
}

int mock_loop_run_until(int (*done)(void *), void *arg, int timeout_ms)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (done(arg))
            return 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 >
            timeout_ms)
            return done(arg);
        usleep(500);
    }
}
