/* A real redis-server for a test: started on a free 127.0.0.1 port in a temporary directory
 * (no persistence, not daemonized, killed with the test process if that dies), stopped,
 * crashed, paused or restarted on the same port, plus a blocking hiredis client for
 * assertions. Nothing here fails a test by itself: functions report, tests assert. */
#ifndef ARQ_TEST_REDIS_SERVER_H
#define ARQ_TEST_REDIS_SERVER_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <sys/types.h>

struct redis_server {
    pid_t pid; /* 0 while not running */
    int port;
    char dir[256];        /* working directory; its redis.out holds the server's output */
    redisContext *client; /* for redis_server_cmd, connected on first use */
    int aof;              /* append-only file, fsync always: acknowledged writes survive */
};

/* Start redis-server on 127.0.0.1:`port` (0: a free port) and wait until it answers PING.
 * 0, or -1 with the reason on stderr. */
int redis_server_start(struct redis_server *rs, int port);
/* The same with persistence (appendonly yes, appendfsync always), so that what the server
 * acknowledged survives SIGKILL and a restart. */
int redis_server_start_aof(struct redis_server *rs, int port);
/* Start it again on the same port (after stop or kill): 0 or -1. */
int redis_server_restart(struct redis_server *rs);
/* SIGTERM, SIGKILL after 5 s; reaps it. Nothing when not running. */
void redis_server_stop(struct redis_server *rs);
/* Send `sig` (SIGKILL: a crash, reaped here; SIGSTOP/SIGCONT: pause and resume). */
void redis_server_signal(struct redis_server *rs, int sig);
/* Stop it and remove its directory. */
void redis_server_cleanup(struct redis_server *rs);

/* "redis://127.0.0.1:<port>" into out. */
void redis_server_url(const struct redis_server *rs, char *out, size_t size);
/* A command on the blocking client (reconnected when needed): the reply (freeReplyObject it),
 * or NULL when the server cannot be reached. */
redisReply *redis_server_cmd(struct redis_server *rs, const char *fmt, ...);
/* The same with an argument vector (binary-safe). */
redisReply *redis_server_cmdv(struct redis_server *rs, int argc, const char **argv);

/* A loopback TCP port nothing listens on right now. */
int redis_server_free_port(void);

#endif
