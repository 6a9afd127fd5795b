#include "redis_server.h"
#include "scratch_dir.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int redis_server_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void rs__sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void rs__disconnect(struct redis_server *rs)
{
    if (rs->client)
        redisFree(rs->client);
    rs->client = NULL;
}

static int rs__reap(struct redis_server *rs, int timeout_ms)
{
    for (int waited = 0; rs->pid > 0; waited += 10) {
        int status;
        pid_t r = waitpid(rs->pid, &status, WNOHANG);
        if (r == rs->pid || (r < 0 && errno == ECHILD)) {
            rs->pid = 0;
            return 0;
        }
        if (waited >= timeout_ms)
            return -1;
        rs__sleep_ms(10);
    }
    return 0;
}

static int rs__pings(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

static int rs__spawn(struct redis_server *rs)
{
    char port[16], out[300];
    snprintf(port, sizeof port, "%d", rs->port);
    snprintf(out, sizeof out, "%s/redis.out", rs->dir);
    pid_t pid = fork();
    if (pid < 0) {
        perror("redis_server: fork");
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        char *const argv[] = {"redis-server",
                              "--port",
                              port,
                              "--bind",
                              "127.0.0.1",
                              "--save",
                              "",
                              "--appendonly",
                              rs->aof ? "yes" : "no",
                              "--appendfsync",
                              "always",
                              "--daemonize",
                              "no",
                              "--dir",
                              rs->dir,
                              "--protected-mode",
                              "no",
                              NULL};
        execvp("redis-server", argv);
        perror("redis_server: exec redis-server");
        _exit(127);
    }
    rs->pid = pid;
    for (int waited = 0; waited < 10000; waited += 20) {
        if (rs__pings(rs->port))
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            rs->pid = 0;
            fprintf(stderr, "redis_server: redis-server on port %d exited (see %s)\n", rs->port,
                    out);
            return -1;
        }
        rs__sleep_ms(20);
    }
    fprintf(stderr, "redis_server: redis-server on port %d does not answer PING\n", rs->port);
    redis_server_stop(rs);
    return -1;
}

static int rs__start(struct redis_server *rs, int port, int aof)
{
    memset(rs, 0, sizeof *rs);
    rs->aof = aof;
    if (scratch_dir_make(rs->dir, sizeof rs->dir, "arq_redis_", "redis_server") != 0)
        return -1;
    /* A free port can be taken between the probe and the bind: try a few. */
    for (int attempt = 0; attempt < (port ? 1 : 5); attempt++) {
        rs->port = port ? port : redis_server_free_port();
        if (rs->port > 0 && rs__spawn(rs) == 0)
            return 0;
    }
    return -1;
}

int redis_server_start(struct redis_server *rs, int port)
{
    return rs__start(rs, port, 0);
}

int redis_server_start_aof(struct redis_server *rs, int port)
{
    return rs__start(rs, port, 1);
}

int redis_server_restart(struct redis_server *rs)
{
    rs__disconnect(rs);
    if (rs->pid > 0)
        return 0;
    return rs__spawn(rs);
}

void redis_server_stop(struct redis_server *rs)
{
    rs__disconnect(rs);
    if (rs->pid <= 0)
        return;
    kill(rs->pid, SIGCONT); /* a paused server cannot act on SIGTERM */
    kill(rs->pid, SIGTERM);
    if (rs__reap(rs, 5000) != 0) {
        kill(rs->pid, SIGKILL);
        rs__reap(rs, 5000);
    }
}

void redis_server_signal(struct redis_server *rs, int sig)
{
    if (rs->pid <= 0)
        return;
    kill(rs->pid, sig);
    if (sig == SIGKILL) {
        rs__disconnect(rs);
        rs__reap(rs, 5000);
    }
}

void redis_server_cleanup(struct redis_server *rs)
{
    redis_server_stop(rs);
    scratch_dir_remove(rs->dir);
    rs->dir[0] = '\0';
}

void redis_server_url(const struct redis_server *rs, char *out, size_t size)
{
    snprintf(out, size, "redis://127.0.0.1:%d", rs->port);
}

static int rs__connect(struct redis_server *rs)
{
    if (rs->client && !rs->client->err)
        return 0;
    rs__disconnect(rs);
    struct timeval tv = {2, 0};
    rs->client = redisConnectWithTimeout("127.0.0.1", rs->port, tv);
    if (!rs->client || rs->client->err) {
        rs__disconnect(rs);
        return -1;
    }
    redisSetTimeout(rs->client, tv);
    return 0;
}

redisReply *redis_server_cmdv(struct redis_server *rs, int argc, const char **argv)
{
    if (rs__connect(rs) != 0)
        return NULL;
    redisReply *r = redisCommandArgv(rs->client, argc, argv, NULL);
    if (!r)
        rs__disconnect(rs);
    return r;
}

redisReply *redis_server_cmd(struct redis_server *rs, const char *fmt, ...)
{
    if (rs__connect(rs) != 0)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rs->client, fmt, ap);
    va_end(ap);
    if (!r)
        rs__disconnect(rs);
    return r;
}
