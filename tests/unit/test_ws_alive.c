/* The keepalive lists of transport-websocket (plugins/transport-websocket/ws_alive.c) on a
 * clock the test sets: order by last activity, the move to the tail at most once a second,
 * pings after more than `interval` seconds of silence, hangups `timeout` seconds after the
 * ping, removal from the middle of either list, and callbacks that remove other nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ws_alive.h"

#define NODES 8

struct rec {
    struct ws_alive *a;
    struct ws_alive_node nodes[NODES];
    int pinged[NODES], hung[NODES]; /* order of the callbacks, 1-based */
    int npinged, nhung;
    int remove_on_ping; /* index of a node a ping callback removes, or -1 */
};

static int index_of(struct rec *r, struct ws_alive_node *n)
{
    return (int)(n - r->nodes);
}

static void on_ping(struct ws_alive_node *n, void *arg)
{
    struct rec *r = arg;
    r->pinged[index_of(r, n)] = ++r->npinged;
    if (r->remove_on_ping >= 0) {
        ws_alive__remove(r->a, &r->nodes[r->remove_on_ping]);
        r->remove_on_ping = -1;
    }
}

static void on_hangup(struct ws_alive_node *n, void *arg)
{
    struct rec *r = arg;
    r->hung[index_of(r, n)] = ++r->nhung;
}

static void reset_calls(struct rec *r)
{
    memset(r->pinged, 0, sizeof r->pinged);
    memset(r->hung, 0, sizeof r->hung);
    r->npinged = r->nhung = 0;
}

/* The list from head to tail as node indexes, checked against `want` (n entries), both ways. */
static void assert_list(struct rec *r, const struct ws_alive_list *l, const int *want, size_t n)
{
    assert_int_equal(l->n, n);
    size_t i = 0;
    const struct ws_alive_node *prev = NULL;
    for (const struct ws_alive_node *p = l->head; p; p = p->next, i++) {
        assert_true(i < n);
        assert_int_equal(index_of(r, (struct ws_alive_node *)p), want[i]);
        assert_ptr_equal(p->prev, prev);
        prev = p;
    }
    assert_int_equal(i, n);
    assert_ptr_equal(l->tail, prev);
}

static struct rec *fixture(struct ws_alive *a, uint32_t interval, uint32_t timeout)
{
    static struct rec r;
    memset(&r, 0, sizeof r);
    r.a = a;
    r.remove_on_ping = -1;
    ws_alive__init(a, interval, timeout);
    return &r;
}

static void test_nodes_join_the_live_tail_in_order_and_next_is_the_heads_deadline(void **state)
{
    (void)state;
    struct ws_alive a;
    struct rec *r = fixture(&a, 20, 10);
    assert_int_equal(ws_alive__next(&a), UINT32_MAX);
    ws_alive__add(&a, &r->nodes[0], 100);
    ws_alive__add(&a, &r->nodes[1], 100);
    ws_alive__add(&a, &r->nodes[2], 101);
    assert_list(r, &a.live, (int[]){0, 1, 2}, 3);
    assert_list(r, &a.pinged, NULL, 0);
    /* Silent for more than 20 s: the first second at which that holds is 100 + 20 + 1. */
    assert_int_equal(ws_alive__next(&a), 121);
    /* Adding twice changes nothing. */
    ws_alive__add(&a, &r->nodes[0], 105);
    assert_list(r, &a.live, (int[]){0, 1, 2}, 3);
}

static void test_a_frame_moves_its_node_to_the_tail_at_most_once_per_second(void **state)
{
    (void)state;
    struct ws_alive a;
    struct rec *r = fixture(&a, 20, 10);
    for (int i = 0; i < 3; i++)
        ws_alive__add(&a, &r->nodes[i], 100);
    /* Same second as its last activity: no move, even at the head. */
    ws_alive__seen(&a, &r->nodes[0], 100);
    assert_list(r, &a.live, (int[]){0, 1, 2}, 3);
    /* A later second: to the tail, with that second. */
    ws_alive__seen(&a, &r->nodes[0], 102);
    assert_list(r, &a.live, (int[]){1, 2, 0}, 3);
    assert_int_equal(r->nodes[0].since, 102);
    /* A middle node moves too; the tail stays where it is for the same second. */
    ws_alive__seen(&a, &r->nodes[2], 103);
    ws_alive__seen(&a, &r->nodes[2], 103);
    assert_list(r, &a.live, (int[]){1, 0, 2}, 3);
    assert_int_equal(ws_alive__next(&a), 121);
    /* A node on no list stays on none. */
    ws_alive__seen(&a, &r->nodes[5], 104);
    assert_int_equal(r->nodes[5].list, WS_ALIVE_NONE);
    assert_int_equal(a.live.n, 3);
}

static void test_silence_past_the_interval_pings_in_order_and_nothing_early(void **state)
{
    (void)state;
    struct ws_alive a;
    struct rec *r = fixture(&a, 20, 10);
    ws_alive__add(&a, &r->nodes[0], 100);
    ws_alive__add(&a, &r->nodes[1], 100);
    ws_alive__add(&a, &r->nodes[2], 105);
    /* 20 s after the second of the last frame is not yet "more than 20 s of silence". */
    assert_int_equal(ws_alive__expire(&a, 120, on_ping, on_hangup, r), 0);
    assert_int_equal(r->npinged, 0);
    assert_int_equal(ws_alive__expire(&a, 121, on_ping, on_hangup, r), 2);
    assert_int_equal(r->pinged[0], 1);
    assert_int_equal(r->pinged[1], 2);
    assert_int_equal(r->pinged[2], 0);
    assert_list(r, &a.live, (int[]){2}, 1);
    assert_list(r, &a.pinged, (int[]){0, 1}, 2);
    assert_int_equal(r->nodes[0].list, WS_ALIVE_PINGED);
    assert_int_equal(r->nodes[0].since, 121);
    /* Next: the pinged head's hangup (131) or the live head's ping (126), whichever first. */
    assert_int_equal(ws_alive__next(&a), 126);
    assert_int_equal(r->nhung, 0);
}

static void test_an_answer_returns_a_pinged_node_to_live_and_silence_hangs_up_the_rest(void **state)
{
    (void)state;
    struct ws_alive a;
    struct rec *r = fixture(&a, 20, 10);
    for (int i = 0; i < 3; i++)
        ws_alive__add(&a, &r->nodes[i], 100);
    ws_alive__expire(&a, 121, on_ping, on_hangup, r);
    assert_list(r, &a.pinged, (int[]){0, 1, 2}, 3);
    ws_alive__seen(&a, &r->nodes[1], 122); /* the pong */
    assert_list(r, &a.pinged, (int[]){0, 2}, 2);
    assert_list(r, &a.live, (int[]){1}, 1);
    assert_int_equal(ws_alive__next(&a), 131);
    reset_calls(r);
    assert_int_equal(ws_alive__expire(&a, 130, on_ping, on_hangup, r), 0);
    assert_int_equal(ws_alive__expire(&a, 131, on_ping, on_hangup, r), 2);
    assert_int_equal(r->hung[0], 1);
    assert_int_equal(r->hung[2], 2);
    assert_int_equal(r->hung[1], 0);
    assert_int_equal(r->nodes[0].list, WS_ALIVE_NONE);
    assert_list(r, &a.pinged, NULL, 0);
    assert_list(r, &a.live, (int[]){1}, 1);
    /* The answering node is pinged again after another silent interval. */
    assert_int_equal(ws_alive__next(&a), 143);
    assert_int_equal(ws_alive__expire(&a, 143, on_ping, on_hangup, r), 1);
    assert_int_equal(r->pinged[1], 1);
}

static void test_removal_from_the_middle_head_and_tail_of_either_list(void **state)
{
    (void)state;
    struct ws_alive a;
    struct rec *r = fixture(&a, 5, 5);
    for (int i = 0; i < 6; i++)
        ws_alive__add(&a, &r->nodes[i], (uint32_t)(10 + (i >= 3)));
    ws_alive__expire(&a, 16, on_ping, on_hangup, r); /* 0, 1, 2 pinged */
    assert_list(r, &a.pinged, (int[]){0, 1, 2}, 3);
    assert_list(r, &a.live, (int[]){3, 4, 5}, 3);
    ws_alive__remove(&a, &r->nodes[1]);
    ws_alive__remove(&a, &r->nodes[4]);
    assert_list(r, &a.pinged, (int[]){0, 2}, 2);
    assert_list(r, &a.live, (int[]){3, 5}, 2);
    ws_alive__remove(&a, &r->nodes[0]);
    ws_alive__remove(&a, &r->nodes[5]);
    assert_list(r, &a.pinged, (int[]){2}, 1);
    assert_list(r, &a.live, (int[]){3}, 1);
    /* Twice, or on a node on no list: nothing. */
    ws_alive__remove(&a, &r->nodes[5]);
    ws_alive__remove(&a, &r->nodes[7]);
    assert_int_equal(a.live.n + a.pinged.n, 2);
    ws_alive__remove(&a, &r->nodes[2]);
    ws_alive__remove(&a, &r->nodes[3]);
    assert_list(r, &a.pinged, NULL, 0);
    assert_list(r, &a.live, NULL, 0);
    assert_int_equal(ws_alive__next(&a), UINT32_MAX);
    /* A removed node can be added again. */
    ws_alive__add(&a, &r->nodes[1], 30);
    assert_list(r, &a.live, (int[]){1}, 1);
}

static void test_a_ping_callback_may_remove_the_next_due_node(void **state)
{
    (void)state;
    struct ws_alive a;
    struct rec *r = fixture(&a, 1, 1);
    for (int i = 0; i < 3; i++)
        ws_alive__add(&a, &r->nodes[i], 0);
    r->remove_on_ping = 1; /* the first ping closes node 1, say */
    assert_int_equal(ws_alive__expire(&a, 2, on_ping, on_hangup, r), 2);
    assert_int_equal(r->pinged[0], 1);
    assert_int_equal(r->pinged[1], 0);
    assert_int_equal(r->pinged[2], 2);
    assert_list(r, &a.pinged, (int[]){0, 2}, 2);
    assert_list(r, &a.live, NULL, 0);
}

static void test_interval_0_tracks_nothing(void **state)
{
    (void)state;
    struct ws_alive a;
    struct rec *r = fixture(&a, 0, 10);
    ws_alive__add(&a, &r->nodes[0], 100);
    ws_alive__seen(&a, &r->nodes[0], 101);
    assert_int_equal(r->nodes[0].list, WS_ALIVE_NONE);
    assert_int_equal(a.live.n, 0);
    assert_int_equal(ws_alive__next(&a), UINT32_MAX);
    assert_int_equal(ws_alive__expire(&a, 100000, on_ping, on_hangup, r), 0);
}

static void test_deadlines_hold_across_a_wrap_of_the_clock(void **state)
{
    (void)state;
    struct ws_alive a;
    struct rec *r = fixture(&a, 3, 2);
    ws_alive__add(&a, &r->nodes[0], UINT32_MAX - 1);
    assert_int_equal(ws_alive__expire(&a, UINT32_MAX, on_ping, on_hangup, r), 0);
    assert_int_equal(ws_alive__expire(&a, 1, on_ping, on_hangup, r), 0);
    assert_int_equal(ws_alive__expire(&a, 2, on_ping, on_hangup, r), 1); /* 4 s of silence */
    assert_int_equal(ws_alive__expire(&a, 3, on_ping, on_hangup, r), 0);
    assert_int_equal(ws_alive__expire(&a, 4, on_ping, on_hangup, r), 1);
    assert_int_equal(r->hung[0], 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nodes_join_the_live_tail_in_order_and_next_is_the_heads_deadline),
        cmocka_unit_test(test_a_frame_moves_its_node_to_the_tail_at_most_once_per_second),
        cmocka_unit_test(test_silence_past_the_interval_pings_in_order_and_nothing_early),
        cmocka_unit_test(
            test_an_answer_returns_a_pinged_node_to_live_and_silence_hangs_up_the_rest),
        cmocka_unit_test(test_removal_from_the_middle_head_and_tail_of_either_list),
        cmocka_unit_test(test_a_ping_callback_may_remove_the_next_due_node),
        cmocka_unit_test(test_interval_0_tracks_nothing),
        cmocka_unit_test(test_deadlines_hold_across_a_wrap_of_the_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
