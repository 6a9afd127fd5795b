/* The plugin runtime: one libuv loop that owns every piece of state, the running configuration
 * generation, and the services offered to plugins. It knows plugins, configuration and
 * generations, and nothing of rooms or clients: the layer above it (the bus) registers hooks
 * (struct host_hooks) and the runtime calls it only through them. */
#ifndef ARQ_HOST_HOST_H
#define ARQ_HOST_HOST_H

#include <arqonbus/plugin.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "diag.h"
#include "loader.h"
#include "metrics.h"
#include "telemetry.h"

struct generation;
struct post_item;

/* What the layer above the runtime asks of it: a configuration section of its own and the
 * moments it must act on. Registered once, before host_start (host_set_hooks); every member
 * may be NULL. */
struct host_hooks {
    void *arg;                     /* passed to each hook, and kept in every arq_ctx (app) */
    struct config_section section; /* its top-level conf.d section (name NULL: none)       */
    /* A configuration's validated section is in force: at start, after a reload, and again
     * the running one's after a failed reload. Takes a reference to `values`. */
    void (*configure)(void *arg, json_t *values);
    /* The running generation changed (committed, or every instance gone at stop): the
     * instances of each kind may be different ones. */
    void (*generation_changed)(void *arg);
    /* A created instance is being destroyed, after its plugin's destroy. */
    void (*instance_destroyed)(void *arg, struct arq_ctx *ctx);
    /* A stop begins, before any instance is stopped. */
    void (*stopping)(void *arg);
};

struct host_reload_waiter {
    arq_result_cb cb;
    void *arg;
    struct host_reload_waiter *next;
};

struct host_reload_stats {
    uint64_t ok, failed;
    int last_ok;      /* result of the last reload (1 before any)                         */
    char *last_error; /* first problem of the last failed reload, or NULL                 */
    int64_t last_us;  /* when the last reload finished                                    */
};

struct host {
    uv_loop_t *loop;
    char *conf_dir;
    cfg_getenv_fn getenv_fn; /* NULL: the process environment                              */
    void *getenv_arg;
    char node[256];
    int64_t started_us;
    int log_level_override;    /* -1, or the --log-level given on the command line           */
    uint64_t drain_timeout_ms; /* host.drain_timeout in force                               */
    uint64_t drain_delay_ms;   /* host.drain_delay in force                                 */
    int draining;              /* SIGTERM seen: not ready, stopping after drain_delay       */

    struct loader loader;
    struct metrics *metrics;
    struct telemetry *telemetry;
    struct generation *current;
    unsigned next_generation;
    struct host_reload_stats reloads;
    struct arq_ctx *self_ctx; /* the host's own context ("host") for its metrics/events   */
    struct arq_ctx *retiring; /* retired instances held by retire_hold                     */
    uv_timer_t reap_timer;    /* destroys released ones outside the plugin's own call       */
    struct host_hooks hooks;
    struct host_reload_waiter *reload_waiters; /* told the outcome of the pending reload    */

    /* signals and scheduled work */
    uv_signal_t sig_hup, sig_term, sig_int, sig_usr1;
    uv_timer_t reload_timer;
    uv_timer_t drain_timer;         /* bounds a graceful stop by drain_timeout                    */
    uv_check_t telemetry_check;     /* delivers telemetry after each round of I/O ...        */
    uv_prepare_t telemetry_prepare; /* ... and before the loop sleeps                         */
    int reload_pending;
    int stopping;
    int handles_open;

    /* thread-safe post queue */
    uv_async_t post_async;
    uv_mutex_t post_lock;
    struct post_item *post_head, *post_tail;
    int post_closed;

    /* host metrics */
    arq_series *m_reload_ok, *m_reload_failed, *m_generation, *m_instances, *m_tel_dropped;
    arq_series *m_uptime, *m_rss, *m_fds;
    uint64_t tel_dropped_reported;
};

/* The service table handed to every plugin: the runtime's services; the layer above fills in
 * its own (the bus's) before host_start. */
extern struct arq_host host_api;

/* Set up the host on `loop` (no configuration read yet). 0 or -1 (logged). */
int host_init(struct host *h, uv_loop_t *loop, const char *conf_dir);
/* Register the layer above (before host_start or host_check_config). */
void host_set_hooks(struct host *h, const struct host_hooks *hooks);
/* Load the configuration and start the first generation. On failure every problem is
 * logged and -1 returned. */
int host_start(struct host *h);
/* Read conf_dir again and swap generations; on failure the running one stays. 0 or -1. */
int host_reload(struct host *h);
/* Ask for a reload soon (coalesced). */
void host_request_reload(struct host *h);
/* The same, and tell `cb` the outcome as the SDK's bus_reload_async does: data
 * {"generation": n} when it succeeded, else EXECUTION_ERROR with the first problem. While
 * stopping, `cb` is told at once. */
void host_reload_async(struct host *h, arq_result_cb cb, void *arg);
/* The i-th running instance of `kind`, in declaration order; NULL past the last. */
struct arq_ctx *host_instance(const struct host *h, enum arq_kind kind, size_t i);
/* Whether the host takes new work: a generation is running, and it is neither stopping nor
 * draining. */
int host_accepting(const struct host *h);
/* The runtime's part of `status`: uptime_seconds, version, node, generation, plugins (name,
 * module, kind, version, health, detail) and reloads (succeeded, failed, last_ok,
 * last_error). */
json_t *host_status(const struct host *h);
/* Refresh the metrics read at scrape time (uptime, resident memory, open descriptors). */
void host_update_process_metrics(struct host *h);
/* Stop every instance (transports first), then close the host's handles so uv_run returns. */
void host_stop(struct host *h);
/* uv_walk callback: close a handle that is still open at shutdown (logged when it was still
 * keeping the loop alive); `arg` is NULL or an int counting them. */
void host_close_stray(uv_handle_t *handle, void *arg);
/* After host_stop: run the loop until everything has closed, then close the loop. Returns
 * how many handles had been left open by plugins and had to be closed here (0 when clean). */
int host_finish_loop(struct host *h);
/* Release everything after the loop has finished. */
void host_cleanup(struct host *h);

/* Validate conf_dir completely (modules loaded, options checked, instances created and
 * destroyed, nothing started). Problems are added to diags, and what is suspicious but valid
 * (an empty file) to warnings. 0 when valid. */
int host_check_config(struct host *h, struct diag_list *diags, struct diag_list *warnings);

/* One series of a metric owned by the host (label NULL: none), registered on first use. */
arq_series *host_series(struct host *h, enum arq_metric_type type, const char *name,
                        const char *help, const char *label, const char *value);

/* A held instance released itself: destroy it on the next loop turn. */
void host_schedule_reap(struct host *h);

/* Run and cancel queued posts (used by the post async handle and at shutdown). */
void host_run_posts(struct host *h);

#endif
