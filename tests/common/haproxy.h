/* A real HAProxy for a test: Debian's haproxy run in the foreground (-db) on a configuration
 * the test writes, in a temporary directory, killed with the test process if that dies.
 * Nothing here fails a test by itself: functions report, tests assert. */
#ifndef ARQ_TEST_HAPROXY_H
#define ARQ_TEST_HAPROXY_H

#include <sys/types.h>

struct haproxy {
    pid_t pid;     /* 0 while not running */
    int port;      /* the frontend port the configuration binds on 127.0.0.1 */
    char dir[256]; /* haproxy.cfg and haproxy.out (the process's output) */
};

/* Write `config` (the whole haproxy.cfg; it must bind 127.0.0.1:`port`) into a fresh
 * directory, start `haproxy -db -f` on it and wait until 127.0.0.1:`port` accepts
 * connections. 0, or -1 with the reason (and haproxy's output) on stderr. */
int haproxy_start(struct haproxy *hp, int port, const char *config);
/* SIGTERM, SIGKILL after 5 s; reaps it. Nothing when not running. */
void haproxy_stop(struct haproxy *hp);
/* Stop it and remove its directory. */
void haproxy_cleanup(struct haproxy *hp);

#endif
