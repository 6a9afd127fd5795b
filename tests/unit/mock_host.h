/* A mock host for plugin unit tests: a `struct arq_host` whose services record what a plugin
 * does, so a test can drive one plugin instance without a loop, files or the real host.
 *
 *   - log lines are kept in memory as text: "<level> <msg> key=value key=value ...";
 *   - timers fire only when the test calls mock_host_fire_timers();
 *   - `post` callbacks run only on mock_host_run_posts() (posts still pending when the mock is
 *     freed run cancelled);
 *   - emitted events are recorded as the host's JSON line (see mock_host_event());
 *   - metrics live in a small table whose values are read by name and labels;
 *   - the opt_* accessors are the host's own (host/options.c), and event_json is the host's
 *     telemetry_event_json, so a plugin sees exactly what arqonbusd would give it.
 *
 * One mock is one instance: mock_host_ctx() is the `arq_ctx *` to pass to `create`. Nothing
 * here is thread-safe, `post` included (tests call it from the test thread). */
#ifndef ARQ_TEST_MOCK_HOST_H
#define ARQ_TEST_MOCK_HOST_H

#include <arqonbus/plugin.h>
#include <stddef.h>

struct mock_host;

/* A new mock for an instance named `instance_name` on node "test-node". NULL on allocation
 * failure. */
struct mock_host *mock_host_new(const char *instance_name);
/* Runs pending posts cancelled, frees every timer, metric, event and log line. NULL is
 * allowed. */
void mock_host_free(struct mock_host *mh);

/* The service table (the same for every mock) and this mock's instance handle. */
const struct arq_host *mock_host_api(void);
arq_ctx *mock_host_ctx(struct mock_host *mh);

/* --- logs ---------------------------------------------------------------------------------- */

size_t mock_host_log_count(const struct mock_host *mh);
/* Line i (0 = oldest), e.g. "warn cannot open path=/x error=denied"; NULL past the end. */
const char *mock_host_log_line(const struct mock_host *mh, size_t i);
/* Lines that contain `needle`. */
size_t mock_host_log_matching(const struct mock_host *mh, const char *needle);
/* Lines below this level are not recorded and log_enabled says 0 (default: ARQ_LOG_DEBUG). */
void mock_host_set_log_level(struct mock_host *mh, enum arq_log_level level);

/* --- timers and posts ---------------------------------------------------------------------- */

/* Timers started and not stopped (a one-shot timer that fired stays until stopped). */
size_t mock_host_timers_active(const struct mock_host *mh);
/* Fire every armed timer once, in start order; one-shot timers are disarmed after firing.
 * Timers started by the callbacks wait for the next call. Returns how many fired. */
size_t mock_host_fire_timers(struct mock_host *mh);
/* The first_ms / repeat_ms of armed timer i (start order), for tests of periods; -1 past the
 * end. */
long long mock_host_timer_period(const struct mock_host *mh, size_t i, int repeat);
/* Run the posted callbacks (not cancelled), oldest first, including those they post. Returns
 * how many ran. */
size_t mock_host_run_posts(struct mock_host *mh);

/* --- telemetry ----------------------------------------------------------------------------- */

size_t mock_host_event_count(const struct mock_host *mh);
/* Emitted event i as the JSON line arq_host.event_json makes of it (source is the instance
 * name, node "test-node"). NULL past the end. */
const char *mock_host_event(const struct mock_host *mh, size_t i);

/* --- metrics ------------------------------------------------------------------------------- */

/* The value of the series of family `name` whose labels are `labels`, written as
 * `k="v",k2="v2"` in the family's label order ("" for none). Histograms give their count.
 * Returns -1 when there is no such family or series. */
double mock_host_metric(const struct mock_host *mh, const char *name, const char *labels);
/* The type a family was registered with, or 0 when it does not exist. */
enum arq_metric_type mock_host_metric_type(const struct mock_host *mh, const char *name);

#endif
