#include "lws_uv.h"

#include <stdint.h>
#include <stdlib.h>

/* --- handles lws puts on the loop ---------------------------------------------------------- */

struct handle_list {
    uv_handle_t **h;
    size_t n, cap;
    int failed;
};

static void collect(uv_handle_t *h, void *arg)
{
    struct handle_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        uv_handle_t **p = realloc(l->h, cap * sizeof *p);
        if (!p) {
            l->failed = 1;
            return;
        }
        l->h = p;
        l->cap = cap;
    }
    l->h[l->n++] = h;
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (uv_handle_t *const *)a, y = (uintptr_t) * (uv_handle_t *const *)b;
    return x < y ? -1 : x > y;
}

struct lws_context *arq_lws_uv_create(uv_loop_t *loop, const struct lws_context_creation_info *info,
                                      uv_handle_t **handles, size_t max, size_t *n)
{
    /* Teardown must wait for the handles lws_create_context() adds (other than socket polls):
     * tell them apart from everything already on the loop. */
    struct handle_list before = {0};
    uv_walk(loop, collect, &before);
    struct lws_context *lws = lws_create_context(info);
    if (lws && !before.failed) {
        struct handle_list after = {0};
        uv_walk(loop, collect, &after);
        qsort(before.h, before.n, sizeof *before.h, by_address);
        for (size_t i = 0; i < after.n && *n < max; i++) {
            uv_handle_t *h = after.h[i];
            if (uv_handle_get_type(h) == UV_POLL ||
                bsearch(&h, before.h, before.n, sizeof *before.h, by_address))
                continue;
            handles[(*n)++] = h;
        }
        free(after.h);
    }
    free(before.h);
    return lws;
}

/* --- teardown ------------------------------------------------------------------------------ */

struct reaper {
    uv_timer_t timer;
    struct lws_context *lws;
    uv_handle_t *const *handles;
    size_t nhandles;
    void (*free_instance)(void *);
    void *arg;
    size_t alive;
    unsigned ticks;
};

/* cppcheck-suppress constParameter
 * (a uv_walk_cb: the type of h is libuv's) */
static void reaper_count(uv_handle_t *h, void *arg)
{
    struct reaper *r = arg;
    for (size_t i = 0; i < r->nhandles; i++)
        if (r->handles[i] == h)
            r->alive++;
}

static void reaper_closed(uv_handle_t *h)
{
    free(h->data);
}

static void reaper_tick(uv_timer_t *t)
{
    struct reaper *r = t->data;
    r->alive = 0;
    uv_walk(t->loop, reaper_count, r);
    /* Two loop turns at least: the close callbacks of the connections, then lws's own. */
    if (r->alive || ++r->ticks < 3)
        return;
    lws_context_destroy(r->lws); /* the second call: frees the vhost and the context */
    r->free_instance(r->arg);
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, reaper_closed);
}

void arq_lws_uv_destroy(uv_loop_t *loop, struct lws_context *lws, uv_handle_t *const *handles,
                        size_t n, void (*free_instance)(void *), void *arg)
{
    lws_context_destroy(lws);
    struct reaper *r = calloc(1, sizeof *r);
    if (!r || uv_timer_init(loop, &r->timer) != 0) {
        /* Cannot wait for lws: leaving the context and the instance allocated is safe. */
        free(r);
        return;
    }
    r->lws = lws;
    r->handles = handles;
    r->nhandles = n;
    r->free_instance = free_instance;
    r->arg = arg;
    r->timer.data = r;
    uv_timer_start(&r->timer, reaper_tick, 0, 1);
}
