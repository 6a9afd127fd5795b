/* A real libuv loop for plugin unit tests on the mock host (mock_host.h has no loop): the
 * mock's service table with `uv_loop`, `timer_start` and `timer_stop` served on one real loop,
 * and a way to run that loop until what a test waits for happens. One loop per test process,
 * set up per test. */
#ifndef ARQ_TEST_MOCK_LOOP_H
#define ARQ_TEST_MOCK_LOOP_H

#include <arqonbus/plugin.h>

/* Start a fresh loop; the table to give `create` (the mock's, with the loop services). NULL
 * when the loop cannot be made. */
const struct arq_host *mock_loop_start(void);
/* Run the loop until the handles the plugins closed are gone, and close it. */
void mock_loop_finish(void);
/* Run the loop until `done(arg)` or timeout_ms; returns done's last answer. */
int mock_loop_run_until(int (*done)(void *), void *arg, int timeout_ms);

#endif
