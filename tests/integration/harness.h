/* Integration-test harness: temporary configuration directories, a real arqonbusd started as
 * a child process with its output captured to a file, and waits on what the process promises:
 * its sd_notify messages, the listening sockets /proc shows, JSON lines a test plugin writes.
 * Nothing here reads the wording of a log line. */
#ifndef ARQ_TEST_HARNESS_H
#define ARQ_TEST_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct ws_client;

/* What a started arqonbusd told its service manager (sd_notify(3)) on the harness's socket. */
struct h_notified {
    int ready;          /* READY=1 of the start (those after a reload are not counted) */
    int reloading;      /* RELOADING=1 */
    int reloads_ok;     /* X_ARQONBUS_RELOAD=ok */
    int reloads_failed; /* X_ARQONBUS_RELOAD=failed */
    int stopping;       /* STOPPING=1 */
    long generation;    /* the last X_ARQONBUS_GENERATION, -1 before any */
    char status[512];   /* the last STATUS= */
};

/* A port the harness chose for an instance's YAML (h_port), remembered by instance name. */
struct h_port_choice {
    char component[32];
    int port;
};

/* One process. Zero it before first use (the fixture's is): the ports chosen with h_port live
 * here, set before h_spawn and kept across spawns. */
struct proc {
    pid_t pid;
    char out[1024]; /* stdout + stderr of the process */
    int status;     /* exit code once reaped, or -1 */
    /* The harness's end of $NOTIFY_SOCKET, drained by a thread of its own: the daemon's
     * sd_notify blocks once 10 datagrams (net.unix.max_dgram_qlen) wait unread. */
    struct h_notify_reader *notify;
    char notify_path[108];
    struct h_notified notified;
    struct h_port_choice ports[8];
};

/* What every integration test works with: a configuration directory, a directory for the
 * process's output, the process, and how many reloads were asked of it. */
struct fixture {
    char dir[512];
    char logs[512];
    struct proc p;
    int reloads;
};

/* The probe (tests/plugins) as a telemetry sink that records the host's events (reload_ok with
 * its counts, ...) in LOGS/events.jsonl: conf.d gets 40-events.yaml. Returns the file's path
 * (static storage). The probe counts as one more instance carried over by each reload. */
const char *h_events_probe(const struct fixture *f);
/* The probe as the daemon's clock: it ticks every 10 ms on the daemon's loop and records every
 * tenth tick in LOGS/clock.jsonl (conf.d gets 40-clock.yaml). Returns the path (static). */
const char *h_daemon_clock(const struct fixture *f);
/* Wait until the daemon's clock (h_daemon_clock) has run `ms` more milliseconds from now. Its
 * timers run in the order they are due, so any timer the daemon armed before has fired by then
 * if it was due within `ms`: the way to prove that something did not happen without sleeping. */
void h_wait_daemon_ms(const char *clock, int ms);

/* cmocka setup/teardown for struct fixture; teardown stops a process still running. */
int h_setup(void **state);
int h_teardown(void **state);

/* A fresh directory under $TMPDIR (or /tmp); the path is written into dir. */
void h_mkdtemp(char *dir, size_t size);
/* Write DIR/NAME with printf-style content. */
void h_write(const char *dir, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void h_unlink(const char *dir, const char *name);
void h_rmtree(const char *dir);
/* The whole file, NUL-terminated (free it); an empty string when absent. */
char *h_slurp(const char *path);

/* Start arqonbusd -c CONFDIR with extra args (NULL-terminated, may be NULL) and extra
 * environment entries "NAME=VALUE" (NULL-terminated, may be NULL); output goes to
 * <logdir>/arqonbusd.out, and NOTIFY_SOCKET names a datagram socket of the harness (in logdir)
 * where the process's sd_notify messages are read (struct h_notified). */
void h_spawn(struct proc *p, const char *confdir, const char *logdir, const char *const *args,
             const char *const *env);
/* Stop reading p's notify socket and close it (h_teardown does it for the fixture's process;
 * a test with a struct proc of its own calls it when done). */
void h_release(struct proc *p);
/* Send a signal. */
void h_kill(const struct proc *p, int sig);
/* Wait for exit: the exit code, or 128+signal; kills and returns -1 after timeout_ms. A process
 * already reaped by a wait below returns its recorded status at once. */
int h_wait_exit(struct proc *p, int timeout_ms);
/* Open file descriptors of a running process. */
int h_fd_count(pid_t pid);
/* Resident set size in KiB. */
long h_rss_kib(pid_t pid);
/* Run arqonbusd with `args` (NULL-terminated) to completion; returns its exit code and its
 * combined output in *output (free it). */
int h_run(const char *const *args, char **output);

/* --- sd_notify: what the process promises its service manager ------------------------------ */

/* Read the notify messages that arrived so far into p->notified, without waiting. */
void h_notify_poll(struct proc *p);
/* Wait for READY=1 of the start: 0; -1 when the process exits first or after 10 s (scaled). */
int h_wait_ready(struct proc *p);
/* Wait until at least `n` reload verdicts (ok + failed) arrived since the spawn: 0, or -1 after
 * timeout_ms (scaled) or when the process exits. For reloads the test did not ask through
 * h_reload (several SIGHUPs, a reload a plugin triggers). */
int h_wait_reloads(struct proc *p, int n, int timeout_ms);
/* Wait for STOPPING=1 (a graceful stop or a drain began): 0, or -1 after timeout_ms (scaled)
 * or when the process exits without it. */
int h_wait_stopping(struct proc *p, int timeout_ms);
/* The configuration generation in force: the last X_ARQONBUS_GENERATION, -1 before any. */
long h_generation(struct proc *p);

/* SIGHUP and wait for the reload's verdict on the notify socket (counting f->reloads; a test
 * that caused a reload otherwise adds 1 to it): 1 when it succeeded, 0 when it failed, -1 when
 * no verdict came within 10 s. */
int h_reload(struct fixture *f);
/* SIGTERM and wait for the exit status (-1 after 10 s, the process then killed). */
int h_stop(struct fixture *f);

/* --- listening sockets, from /proc (no log read) --------------------------------------------- */

struct h_listener {
    char addr[64];       /* numeric local address: "127.0.0.1", "::1", "0.0.0.0", ... */
    int port;            /* local port */
    unsigned long inode; /* the socket's inode: the same one after a reload = inherited */
};

/* The TCP sockets in LISTEN state (IPv4 and IPv6) that process `pid` holds open right now:
 * fills up to `max` into out, returns how many there are (-1 when /proc cannot be read). */
int h_listeners(pid_t pid, struct h_listener *out, int max);
/* The listener of `pid` on `port` into *out (may be NULL): 0, or -1 when it has none. */
int h_listener(pid_t pid, int port, struct h_listener *out);
/* The inode of `pid`'s listener on `port`, 0 when it has none. */
unsigned long h_listener_inode(pid_t pid, int port);
/* Wait until `pid` listens on `port` with a socket other than `not_inode` (0: any): its inode,
 * or 0 after timeout_ms (scaled). */
unsigned long h_wait_listener(pid_t pid, int port, unsigned long not_inode, int timeout_ms);
/* Wait until `pid` no longer listens on `port`: 0, or -1 after timeout_ms (scaled). */
int h_wait_no_listener(pid_t pid, int port, int timeout_ms);

/* --- ports ------------------------------------------------------------------------------------ */

/* The port for `component`'s YAML (`port: %d`): a free loopback port chosen on the first call
 * for this process and component, the same one on every later call (also after a respawn). */
int h_port(struct proc *p, const char *component);
/* Forget the port chosen for `component`, so that the next h_port chooses another (a test that
 * moves a listener). */
void h_port_forget(struct proc *p, const char *component);
/* The port `component` listens on, once the process listens there (waits up to 10 s, scaled;
 * fails the test otherwise): the port chosen with h_port; for a component without one (its
 * YAML says `port: 0`), the process's only listener once it is ready (fails the test when it
 * has several: give each its port with h_port). */
int h_component_port(struct proc *p, const char *component);
/* The process's only listener once it is ready (h_wait_ready), -1 when it has none or several
 * (printed). For configurations with one listener and `port: 0`. */
int h_listening_port(struct proc *p);

/* --- JSON lines (the probe plugin's state_file, a JSON log file) ----------------------------- */

/* Every complete line of the file parsed as JSON (lines that are not JSON are skipped), as an
 * array (the caller decrefs); an empty array when the file is absent. */
json_t *h_jsonl(const char *path);
/* The index of the first element of `lines` at or after `from` that has every member of the
 * object built by json_pack(fmt, ...) with an equal value; -1 when none. */
int h_jsonl_find(const json_t *lines, int from, const char *fmt, ...);
/* How many elements of `lines` match (as h_jsonl_find). */
int h_jsonl_count(const json_t *lines, const char *fmt, ...);
/* Wait until at least `n` lines of the file match (as h_jsonl_find): 0, or -1 after
 * timeout_ms (scaled; the file is printed). */
int h_wait_jsonl(const char *path, int n, int timeout_ms, const char *fmt, ...);

/* A self-signed certificate for 127.0.0.1 and its key: dir/cert.pem, dir/key.pem. */
void h_make_cert(const char *dir);
/* A loopback port nothing listens on right now. */
int h_free_port(void);

/* The next text frame of `c` as JSON, within 5 s; fails the test when none comes or it is not
 * JSON. The caller owns the result. */
json_t *h_recv_json(struct ws_client *c);
/* obj[key] as a string, "" when absent or not a string. */
const char *h_str(const json_t *obj, const char *key);

/* The test timeouts scale with ARQ_TEST_SLOW (set for sanitizer builds). */
int h_ms(int ms);

#endif
