/* Integration-test harness: temporary configuration directories, a real arqonbusd started as
 * a child process with its output captured to files, and waits on what it logs. */
#ifndef ARQ_TEST_HARNESS_H
#define ARQ_TEST_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct ws_client;

struct proc {
    pid_t pid;
    char out[1024]; /* stdout + stderr of the process */
    int status;     /* exit code once reaped, or -1 */
};

/* What every integration test works with: a configuration directory, a directory for the
 * process's output, the process, and how many reloads were asked of it. */
struct fixture {
    char dir[512];
    char logs[512];
    struct proc p;
    int reloads;
};

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
 * <logdir>/arqonbusd.out. */
void h_spawn(struct proc *p, const char *confdir, const char *logdir, const char *const *args,
             const char *const *env);
/* Occurrences of `needle` in the process output so far. */
int h_count(const struct proc *p, const char *needle);
/* Wait until `needle` occurs at least `n` times; 0, or -1 after timeout_ms (the output is
 * printed to help the reader of a failed test). */
int h_wait_count(const struct proc *p, const char *needle, int n, int timeout_ms);
/* Send a signal. */
void h_kill(const struct proc *p, int sig);
/* Wait for exit: the exit code, or 128+signal; kills and returns -1 after timeout_ms. */
int h_wait_exit(struct proc *p, int timeout_ms);
/* Open file descriptors of a running process. */
int h_fd_count(pid_t pid);
/* Resident set size in KiB. */
long h_rss_kib(pid_t pid);
/* Run arqonbusd with `args` (NULL-terminated) to completion; returns its exit code and its
 * combined output in *output (free it). */
int h_run(const char *const *args, char **output);

/* SIGHUP and wait for the reload's verdict (counting f->reloads): 1 when it succeeded, 0 when
 * it failed, -1 when no verdict came within 10 s. */
int h_reload(struct fixture *f);
/* SIGTERM and wait for the exit status (-1 after 10 s, the process then killed). */
int h_stop(struct fixture *f);
/* The port of the n-th (1-based) `msg=listening` line the process logged, waiting for it;
 * -1 when it does not come. */
int h_listening_port(const struct proc *p, int n);
/* The port of the n-th (1-based) `component=<name> msg=listening` line, waiting for it; fails
 * the test when it does not come. */
int h_component_port(const struct proc *p, const char *component, int n);
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
