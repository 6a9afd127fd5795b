/* The host process: one libuv loop that owns every piece of state, the running configuration
 * generation, and the services offered to plugins. */
#ifndef ARQ_HOST_HOST_H
#define ARQ_HOST_HOST_H

#include <arqonbus/plugin.h>
#include <stdint.h>
#include <uv.h>

#include "bus.h"
#include "config.h"
#include "diag.h"
#include "loader.h"
#include "metrics.h"
#include "telemetry.h"

struct generation;
struct post_item;

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
    struct bus bus;

    /* signals and scheduled work */
    uv_signal_t sig_hup, sig_term, sig_int, sig_usr1;
    uv_timer_t reload_timer;
    uv_timer_t drain_timer; /* bounds a graceful stop by drain_timeout                    */
    uv_check_t telemetry_check;
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
    uint64_t tel_dropped_reported;
};

/* The service table handed to every plugin. */
extern const struct arq_host host_api;

/* Set up the host on `loop` (no configuration read yet). 0 or -1 (logged). */
int host_init(struct host *h, uv_loop_t *loop, const char *conf_dir);
/* Load the configuration and start the first generation. On failure every problem is
 * logged and -1 returned. */
int host_start(struct host *h);
/* Read conf_dir again and swap generations; on failure the running one stays. 0 or -1. */
int host_reload(struct host *h);
/* Ask for a reload soon (coalesced). */
void host_request_reload(struct host *h);
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
