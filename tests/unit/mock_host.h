/* A mock host for plugin unit tests: a `struct arq_host` whose services record what a plugin
 * does, so a test can drive one plugin instance without a loop, files or the real host.
 *
 *   - log lines are kept in memory as text: "<level> <msg> key=value key=value ...";
 *   - timers fire only when the test calls mock_host_fire_timers();
 *   - `post` callbacks run only on mock_host_run_posts() (posts still pending when the mock is
 *     freed run cancelled);
 *   - emitted events are recorded as the host's JSON line (see mock_host_event());
 *   - metrics live in a small table whose values are read by name and labels;
 *   - the opt_* accessors are the host's own (host/runtime/options.c), and event_json is the host's
 *     telemetry_event_json, so a plugin sees exactly what arqonbusd would give it;
 *   - command replies are recorded per request (mock_host_request(), mock_host_last_reply());
 *   - the bus services (bus_join, bus_query, ...) are scripted: a test says what they return
 *     (mock_host_bus_fail(), mock_host_query_result()) and reads the calls they got as text
 *     (mock_host_bus_call()).
 *
 * One mock is one instance: mock_host_ctx() is the `arq_ctx *` to pass to `create`. Nothing
 * here is thread-safe, `post` included (tests call it from the test thread).
 *
 * The end of this header has helpers that unit tests share: loading a built plugin, validating
 * YAML against an option spec, checking command replies, and temporary directories. Those that
 * check something fail the running cmocka test. */
#ifndef ARQ_TEST_MOCK_HOST_H
#define ARQ_TEST_MOCK_HOST_H

#include <arqonbus/plugin.h>
#include <stddef.h>

struct mock_host;
struct diag_list;

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

/* --- commands: connections, requests, replies ---------------------------------------------- */

/* A connection whose conn_client_id is `client_id`. Owned by the mock (freed with it). */
arq_conn *mock_host_conn(struct mock_host *mh, const char *client_id);
/* A request awaiting its reply, to pass to a command handler. Owned by the mock. */
arq_request *mock_host_request(struct mock_host *mh);

/* One reply as the plugin gave it; strings and data are copies. */
struct mock_reply {
    int ok;                 /* 1: reply_ok, 0: reply_error                                    */
    const char *message;    /* reply_ok: the message                                          */
    const json_t *data;     /* reply_ok: a deep copy of `data`, or NULL when none was given   */
    const char *error_code; /* reply_error: the code                                          */
    const char *text;       /* reply_error: the text                                          */
};

/* How many replies `req` received (a command must get exactly one). */
size_t mock_host_reply_count(const arq_request *req);
/* The last reply to `req`, or NULL when it has none. Valid until the next reply to `req` or
 * mock_host_free(). */
const struct mock_reply *mock_host_last_reply(const arq_request *req);

/* --- the bus: scripted results, recorded calls ---------------------------------------------- */

/* From now on bus service `service` ("bus_join", "bus_leave", "bus_create_channel",
 * "bus_delete_channel", "bus_disconnect") fails with `code` and fills `err` with `text` (NULL:
 * leaves it empty). `code` NULL makes it succeed again, which is the default. */
void mock_host_bus_fail(struct mock_host *mh, const char *service, const char *code,
                        const char *text);
/* From now on bus_query(`what`) returns a deep copy of `value` (borrowed). */
void mock_host_query_result(struct mock_host *mh, const char *what, const json_t *value);
/* From now on bus_query(`what`) returns NULL with `code` and `text`. A `what` with no script
 * at all fails with INTERNAL_ERROR and "mock: nothing scripted for bus_query(\"<what>\")". */
void mock_host_query_fail(struct mock_host *mh, const char *what, const char *code,
                          const char *text);

/* Every bus service call, oldest first, as one line of text (NULL arguments written "-"):
 *   bus_join client=<client id> room=<room> channel=<channel>
 *   bus_leave client=<client id> room=<room> channel=<channel>
 *   bus_create_channel room=<room> channel=<channel> description=<description>
 *   bus_delete_channel room=<room> channel=<channel> force=<0|1>
 *   bus_disconnect client_id=<id> reason=<reason>
 *   bus_query what=<what> client=<client id> room=<room> channel=<channel>
 *   bus_reload */
size_t mock_host_bus_call_count(const struct mock_host *mh);
/* Call i (0 = oldest); NULL past the end. */
const char *mock_host_bus_call(const struct mock_host *mh, size_t i);
/* The request last passed to bus_history (recorded as "bus_history join=J <args>", never
 * answered by the mock), or NULL. */
arq_request *mock_host_history_request(const struct mock_host *mh);
/* The request last passed to bus_reload (which the mock never answers), or NULL. */
arq_request *mock_host_reload_request(const struct mock_host *mh);

/* --- the broker services (broker_deliver, broker_resync) ------------------------------------ */

/* This mock's node name (node_name), "test-node" by default. `node` is copied. */
void mock_host_set_node(struct mock_host *mh, const char *node);
/* broker_deliver calls, oldest first, one line each (NULL fields written "-", the frame as
 * text): "origin=<node> room=<room> channel=<channel> to=<client id> id=<id> data=<frame>". */
size_t mock_host_delivered_count(const struct mock_host *mh);
const char *mock_host_delivered(const struct mock_host *mh, size_t i);
/* How many times broker_resync was called. */
size_t mock_host_resync_count(const struct mock_host *mh);
/* `fn(arg)` runs inside each broker_resync, where the host replays subscriptions,
 * registrations and presence (NULL: nothing runs). */
void mock_host_on_resync(struct mock_host *mh, void (*fn)(void *arg), void *arg);

/* --- helpers for tests ---------------------------------------------------------------------- */

/* dlopen the plugin module at `path` and call its ARQ_PLUGIN_ENTRY. Returns the descriptor and
 * the module in *handle, or NULL (with the reason on stderr, *handle NULL) when it cannot. */
const struct arq_plugin *mock_host_load_plugin(const char *path, void **handle);
/* dlclose a module of mock_host_load_plugin (NULL is allowed). Returns dlclose's result, 0 for
 * NULL, so a cmocka group teardown can return it. */
int mock_host_unload_plugin(void *handle);

/* The usual cmocka fixture of a plugin test: one mock and the instance under test. */
struct mock_instance {
    struct mock_host *mh;
    void *self; /* the instance, destroyed by mock_instance_teardown when set */
};
/* cmocka setup: *state becomes a new fixture whose mock is named `instance_name`. 0 or -1. */
int mock_instance_setup(void **state, const char *instance_name);
/* cmocka teardown: destroy the instance (with `desc`) if any, then the mock. Returns 0. */
int mock_instance_teardown(void **state, const struct arq_plugin *desc);

/* `yaml` validated against `spec` the way the host validates config and command args: typed,
 * defaults filled. NULL when refused, with the problems added to *diags. With `diags` NULL
 * the YAML must be accepted without any problem: each is printed and the test fails. */
json_t *mock_host_validate(const struct arq_option *spec, const char *yaml,
                           struct diag_list *diags);

/* desc->create with this mock's service table and instance; takes `cfg_take` and keeps it
 * until mock_host_free, as the host keeps an instance's cfg (strings opt_fill borrows from it
 * stay valid). The test fails unless create returns 0 and sets *self. */
void mock_host_create_plugin(struct mock_host *mh, const struct arq_plugin *desc, json_t *cfg_take,
                             void **self);

/* The command `name` of commands plugin `desc`; the test fails when there is none. */
const struct arq_command *mock_host_command(const struct arq_plugin *desc, const char *name);
/* The test fails unless `req` got exactly one reply, a success with `message`. Returns the
 * reply's data (NULL when none). */
const json_t *mock_host_assert_ok(const arq_request *req, const char *message);
/* The test fails unless `req` got exactly one reply, an error with `code` and `text`. */
void mock_host_assert_error(const arq_request *req, const char *code, const char *text);

/* A template for mkdtemp() or mkstemp() in out: "<dir>/<prefix>_XXXXXX", where <dir> is
 * $TMPDIR, or /tmp when it is unset or empty. When it does not fit in `size`, out is "" (which
 * mkdtemp and mkstemp refuse) and the reason goes to stderr. */
void mock_host_tmpdir(char *out, size_t size, const char *prefix);
/* Remove directory `dir` and everything in it (symbolic links are not followed); failures
 * go to stderr. */
void mock_host_remove_tmpdir(const char *dir);

#endif
