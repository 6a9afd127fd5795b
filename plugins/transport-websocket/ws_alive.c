/* Keepalive lists: see ws_alive.h. */
#include "ws_alive.h"

static void list_append(struct ws_alive_list *l, struct ws_alive_node *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
    l->n++;
}

static void list_unlink(struct ws_alive_list *l, struct ws_alive_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->prev = n->next = NULL;
    l->n--;
}

static struct ws_alive_list *list_of(struct ws_alive *a, const struct ws_alive_node *n)
{
    return n->list == WS_ALIVE_LIVE ? &a->live : &a->pinged;
}

void ws_alive__init(struct ws_alive *a, uint32_t interval, uint32_t timeout)
{
    *a = (struct ws_alive){.interval = interval, .timeout = timeout ? timeout : 1};
}

void ws_alive__add(struct ws_alive *a, struct ws_alive_node *n, uint32_t now)
{
    if (!a->interval || n->list != WS_ALIVE_NONE)
        return;
    n->since = now;
    n->list = WS_ALIVE_LIVE;
    list_append(&a->live, n);
}

void ws_alive__remove(struct ws_alive *a, struct ws_alive_node *n)
{
    if (n->list == WS_ALIVE_NONE)
        return;
    list_unlink(list_of(a, n), n);
    n->list = WS_ALIVE_NONE;
}

void ws_alive__relink(struct ws_alive *a, struct ws_alive_node *n, uint32_t now)
{
    if (n->list == WS_ALIVE_NONE)
        return;
    list_unlink(list_of(a, n), n);
    n->since = now;
    n->list = WS_ALIVE_LIVE;
    list_append(&a->live, n);
}

/* Unsigned differences: right across a wrap of the clock too. */
size_t ws_alive__expire(struct ws_alive *a, uint32_t now, ws_alive_cb ping, ws_alive_cb hangup,
                        void *arg)
{
    size_t handled = 0;
    struct ws_alive_node *n;
    while ((n = a->pinged.head) && now - n->since >= a->timeout) {
        list_unlink(&a->pinged, n);
        n->list = WS_ALIVE_NONE;
        handled++;
        hangup(n, arg);
    }
    while ((n = a->live.head) && now - n->since > a->interval) {
        list_unlink(&a->live, n);
        n->since = now;
        n->list = WS_ALIVE_PINGED;
        list_append(&a->pinged, n);
        handled++;
        ping(n, arg);
    }
    return handled;
}

uint32_t ws_alive__next(const struct ws_alive *a)
{
    uint32_t next = UINT32_MAX;
    if (a->pinged.head)
        next = a->pinged.head->since + a->timeout;
    if (a->live.head && a->live.head->since + a->interval + 1 < next)
        next = a->live.head->since + a->interval + 1;
    return next;
}
