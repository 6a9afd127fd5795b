/* arqonbus-bench-telemetry: shows that a telemetry stream of 10,000+ events/s does not slow
 * message delivery. A benchmark, not a test: it starts a real arqonbusd twice (without and with
 * bus.telemetry_messages plus a telemetry-websocket client subscribed to everything), runs the
 * same fan-out workload on loopback each time, and prints wall time, deliveries/s, server CPU
 * seconds and deliveries per server CPU-second, then the ratio of the two runs.
 *
 * Usage: arqonbus-bench-telemetry [BUILD_DIR | PATH_TO_ARQONBUSD] [MESSAGES] [SUBSCRIBERS]
 * The build directory defaults to the one this binary was built in (<build>/bench/..); the
 * plugins are taken from <build>/plugins. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ws_client.h"

#define WINDOW        200   /* messages in flight: i is sent once all have i-WINDOW */
#define RUN_LIMIT_S   60.0  /* a run taking longer aborts */
#define TEL_WAIT_S    5.0   /* after the last delivery, how long telemetry may trail */
#define MIN_TEL_RATE  10000 /* the claim: at least this many telemetry events/s */
#define ROOM          "bench"
#define CHANNEL       "fanout"
#define ROUTED_NEEDLE "\"message_routed\""
#define DEFAULT_MSGS  100000
#define DEFAULT_SUBS  50
#define MAX_SUBS      1000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- the server ---------------------------------------------------------------------------- */

struct server {
    char dir[PATH_MAX]; /* temporary conf.d, and the log file */
    char log[PATH_MAX + 16];
    pid_t pid;
    int ws_port, tel_port;
};

static struct server *current; /* stopped by fail() */

static void server_stop(struct server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        int status;
        double end = now_s() + 10.0;
        while (waitpid(s->pid, &status, WNOHANG) == 0) {
            if (now_s() > end) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, &status, 0);
                break;
            }
            sleep_ms(20);
        }
        s->pid = 0;
    }
    if (s->dir[0]) {
        static const char *const files[] = {"00-host.yaml", "10-ws.yaml", "20-commands.yaml",
                                            "50-telemetry.yaml", "arqonbusd.log"};
        char path[PATH_MAX + 32];
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            snprintf(path, sizeof path, "%s/%s", s->dir, files[i]);
            unlink(path);
        }
        rmdir(s->dir);
        s->dir[0] = '\0';
    }
}

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "arqonbus-bench-telemetry: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (current) {
        fprintf(stderr, "(server log: %s, kept)\n", current->log);
        current->dir[0] = '\0'; /* keep the log for the reader */
        server_stop(current);
    }
    exit(1);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        fail("cannot write %s: %s", path, strerror(errno));
}

/* The port of the `component=<instance> msg=listening ... port=N` line, 0 while absent. */
static int listening_port(const char *log, const char *instance)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return 0;
    char line[4096], comp[64];
    snprintf(comp, sizeof comp, "component=%s ", instance);
    int port = 0;
    while (!port && fgets(line, sizeof line, f)) {
        const char *p;
        if (strstr(line, comp) && strstr(line, "msg=listening") && (p = strstr(line, " port=")))
            port = atoi(p + 6);
    }
    fclose(f);
    return port;
}

static void server_start(struct server *s, const char *daemon, const char *plugins, int telemetry)
{
    memset(s, 0, sizeof *s);
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/arq-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s->dir))
        fail("mkdtemp: %s", strerror(errno));
    snprintf(s->log, sizeof s->log, "%s/arqonbusd.log", s->dir);
    current = s;

    char text[PATH_MAX + 256];
    snprintf(text, sizeof text,
             "host:\n  plugin_dir: %s\n  log_level: info\nbus:\n  auto_create: true\n"
             "  telemetry_messages: %s\n",
             plugins, telemetry ? "true" : "false");
    write_file(s->dir, "00-host.yaml", text);
    write_file(s->dir, "10-ws.yaml",
               "plugins:\n  ws:\n    module: transport-websocket\n    config:\n"
               "      host: 127.0.0.1\n      port: 0\n");
    write_file(s->dir, "20-commands.yaml", "plugins:\n  builtin:\n    module: commands-builtin\n");
    if (telemetry)
        write_file(s->dir, "50-telemetry.yaml",
                   "plugins:\n  telemetry:\n    module: telemetry-websocket\n    config:\n"
                   "      host: 127.0.0.1\n      port: 0\n"
                   /* the reader shares 2 cores with the server and 51 clients: let it
                    * fall behind for a moment rather than be closed with 1013 */
                   "      max_queued_bytes: 64MiB\n");

    s->pid = fork();
    if (s->pid < 0)
        fail("fork: %s", strerror(errno));
    if (s->pid == 0) {
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(127);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        execl(daemon, daemon, "-c", s->dir, (char *)NULL);
        _exit(127);
    }
    double end = now_s() + 10.0;
    for (;;) {
        s->ws_port = listening_port(s->log, "ws");
        s->tel_port = telemetry ? listening_port(s->log, "telemetry") : -1;
        if (s->ws_port > 0 && s->tel_port != 0)
            return;
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            fail("arqonbusd exited at start-up");
        }
        if (now_s() > end)
            fail("arqonbusd did not log its listening ports within 10 s");
        sleep_ms(20);
    }
}

/* utime + stime of a process, in seconds. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        fail("cannot read %s", path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long utime = 0, stime = 0;
    /* after ")": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        fail("cannot parse %s", path);
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* --- clients ------------------------------------------------------------------------------- */

static struct ws_client *connect_client(int port, const char *path)
{
    char err[256];
    struct ws_client *c = ws_connect("127.0.0.1", port, path, 5000, err, sizeof err);
    if (!c)
        fail("connect to port %d: %s", port, err);
    char *data = NULL;
    if (ws_recv(c, &data, NULL, 5000) != WS_OP_TEXT || !strstr(data, "welcome"))
        fail("no welcome frame: %s", ws_error(c));
    free(data);
    return c;
}

/* join_channel ROOM/CHANNEL and wait for a successful response. */
static void join(struct ws_client *c)
{
    static const char cmd[] = "{\"type\":\"command\",\"command\":\"join_channel\",\"args\":"
                              "{\"room\":\"" ROOM "\",\"channel\":\"" CHANNEL "\"}}";
    if (ws_send_text(c, cmd, sizeof cmd - 1) != 0)
        fail("join: %s", ws_error(c));
    char *data = NULL;
    if (ws_recv(c, &data, NULL, 5000) != WS_OP_TEXT)
        fail("join: no response: %s", ws_error(c));
    json_t *j = json_loads(data, 0, NULL);
    const char *status = json_string_value(json_object_get(j, "status"));
    if (!status || strcmp(status, "success") != 0)
        fail("join failed: %s", data);
    json_decref(j);
    free(data);
}

/* The telemetry client: reads as fast as it can on its own thread and counts events. */
struct tel {
    struct ws_client *c;
    pthread_t thread;
    atomic_int stop;
    atomic_long routed;     /* message_routed events received */
    atomic_long events;     /* every event received */
    _Atomic double last_at; /* when the last message_routed event arrived */
    atomic_int error;
};

static long count_in(const char *s, const char *needle)
{
    long n = 0;
    size_t len = strlen(needle);
    while ((s = strstr(s, needle)) != NULL) {
        n++;
        s += len;
    }
    return n;
}

static void *tel_main(void *arg)
{
    struct tel *t = arg;
    while (!atomic_load(&t->stop)) {
        char *data = NULL;
        int op = ws_recv(t->c, &data, NULL, 100);
        if (op == WS_OP_TEXT) {
            long r = count_in(data, ROUTED_NEEDLE);
            atomic_fetch_add(&t->events, count_in(data, "\"event_type\""));
            if (r) {
                atomic_fetch_add(&t->routed, r);
                atomic_store(&t->last_at, now_s());
            }
        } else if (op < 0 && errno != ETIMEDOUT) {
            atomic_store(&t->error, 1);
            free(data);
            break;
        }
        free(data);
    }
    return NULL;
}

static void tel_start(struct tel *t, int port)
{
    char err[256];
    memset(t, 0, sizeof *t);
    t->c = ws_connect("127.0.0.1", port, "/", 5000, err, sizeof err);
    if (!t->c)
        fail("telemetry connect: %s", err);
    char *data = NULL;
    if (ws_recv(t->c, &data, NULL, 5000) != WS_OP_TEXT || !strstr(data, "telemetry_connected"))
        fail("telemetry: no telemetry_connected frame");
    free(data);
    static const char sub[] = "{\"type\":\"subscribe\",\"events\":[\"*\"]}";
    if (ws_send_text(t->c, sub, sizeof sub - 1) != 0)
        fail("telemetry subscribe: %s", ws_error(t->c));
    /* Batches may come before the answer (client_connected of this very connection). */
    double end = now_s() + 5.0;
    for (;;) {
        if (ws_recv(t->c, &data, NULL, 5000) != WS_OP_TEXT || now_s() > end)
            fail("telemetry: no subscribed answer");
        int ok = strstr(data, "\"subscribed\"") != NULL;
        free(data);
        if (ok)
            break;
    }
    if (pthread_create(&t->thread, NULL, tel_main, t) != 0)
        fail("pthread_create");
}

static void tel_stop(struct tel *t)
{
    atomic_store(&t->stop, 1);
    pthread_join(t->thread, NULL);
    ws_free(t->c);
}

/* --- one run ------------------------------------------------------------------------------- */

struct result {
    double wall, cpu, deliveries_per_s, per_cpu;
    long deliveries;
    long tel_routed, tel_events;
    double tel_rate; /* message_routed events/s seen by the telemetry client */
};

static void run(const char *daemon, const char *plugins, int telemetry, int nmsg, int nsub,
                struct result *r)
{
    struct server s;
    server_start(&s, daemon, plugins, telemetry);
    struct tel tel;
    if (telemetry)
        tel_start(&tel, s.tel_port);

    struct ws_client **subs = calloc((size_t)nsub, sizeof *subs);
    long *got = calloc((size_t)nsub, sizeof *got);
    struct pollfd *pfd = calloc((size_t)nsub + 1, sizeof *pfd);
    if (!subs || !got || !pfd)
        fail("out of memory");
    for (int i = 0; i < nsub; i++) {
        subs[i] = connect_client(s.ws_port, "/");
        join(subs[i]);
    }
    struct ws_client *pub = connect_client(s.ws_port, "/?ack=0");
    join(pub);

    /* ~110 bytes of JSON on the wire, as in /work/shared/performance.md. */
    char msg[256];
    const double t0 = now_s(), cpu0 = cpu_seconds(s.pid), limit = t0 + RUN_LIMIT_S;
    long sent = 0, min_got = 0, total = 0, needed = (long)nmsg * nsub;
    while (total < needed) {
        while (sent < nmsg && sent - min_got < WINDOW) {
            int n = snprintf(msg, sizeof msg,
                             "{\"type\":\"message\",\"room\":\"" ROOM "\",\"channel\":\"" CHANNEL
                             "\",\"payload\":{\"seq\":%ld,\"text\":\"hello fan-out\"}}",
                             sent + 1);
            if (ws_send_text(pub, msg, (size_t)n) != 0)
                fail("publish: %s", ws_error(pub));
            sent++;
        }
        for (int i = 0; i < nsub; i++)
            pfd[i] = (struct pollfd){.fd = ws_fd(subs[i]), .events = POLLIN};
        pfd[nsub] = (struct pollfd){.fd = ws_fd(pub), .events = POLLIN};
        if (poll(pfd, (nfds_t)nsub + 1, 100) < 0 && errno != EINTR)
            fail("poll: %s", strerror(errno));
        for (int i = 0; i < nsub; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLERR | POLLHUP)))
                continue;
            int op;
            while ((op = ws_poll_message(subs[i], NULL, NULL)) > 0) {
                if (op == WS_OP_TEXT) {
                    got[i]++;
                    total++;
                } else if (op == WS_OP_CLOSE) {
                    fail("subscriber %d closed by the server (%d)", i, ws_close_code(subs[i]));
                }
            }
            if (op < 0)
                fail("subscriber %d: %s", i, ws_error(subs[i]));
        }
        if (pfd[nsub].revents) { /* ack=0: anything here is an error frame */
            char *data = NULL;
            int op = ws_poll_message(pub, &data, NULL);
            if (op != 0)
                fail("publisher got: %s", data ? data : ws_error(pub));
        }
        min_got = LONG_MAX;
        for (int i = 0; i < nsub; i++)
            min_got = got[i] < min_got ? got[i] : min_got;
        if (now_s() > limit)
            fail("aborted: run took more than %.0f s (%ld of %ld deliveries)", RUN_LIMIT_S, total,
                 needed);
    }
    const double t1 = now_s();
    if (telemetry) { /* telemetry is batched (flush_interval): let it catch up */
        double end = t1 + TEL_WAIT_S;
        while (atomic_load(&tel.routed) < nmsg && now_s() < end && !atomic_load(&tel.error))
            sleep_ms(10);
    }
    const double cpu1 = cpu_seconds(s.pid);

    r->wall = t1 - t0;
    r->cpu = cpu1 - cpu0;
    r->deliveries = total;
    r->deliveries_per_s = (double)total / r->wall;
    r->per_cpu = r->cpu > 0 ? (double)total / r->cpu : 0;
    r->tel_routed = r->tel_events = 0;
    r->tel_rate = 0;
    if (telemetry) {
        if (atomic_load(&tel.error))
            fail("telemetry client: %s (close code %d)", ws_error(tel.c), ws_close_code(tel.c));
        r->tel_routed = atomic_load(&tel.routed);
        r->tel_events = atomic_load(&tel.events);
        double span = atomic_load(&tel.last_at) - t0;
        r->tel_rate = span > 0 ? (double)r->tel_routed / span : 0;
        tel_stop(&tel);
    }
    for (int i = 0; i < nsub; i++)
        ws_free(subs[i]);
    ws_free(pub);
    free(subs);
    free(got);
    free(pfd);
    current = NULL;
    server_stop(&s);
}

/* --- main ---------------------------------------------------------------------------------- */

static void find_build(const char *arg, char *daemon, char *plugins, size_t size)
{
    char build[PATH_MAX];
    struct stat st;
    int is_file = arg && stat(arg, &st) == 0 && S_ISREG(st.st_mode);
    if (is_file) { /* the arqonbusd binary itself */
        snprintf(daemon, size, "%s", arg);
        snprintf(build, sizeof build, "%s", arg);
        char *slash = strrchr(build, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(build, sizeof build, ".");
    } else if (arg) {
        snprintf(build, sizeof build, "%s", arg);
    } else { /* <build>/bench/arqonbus-bench-telemetry */
        ssize_t n = readlink("/proc/self/exe", build, sizeof build - 1);
        if (n <= 0)
            fail("cannot find the build directory; pass it as the first argument");
        build[n] = '\0';
        for (int i = 0; i < 2; i++) {
            char *slash = strrchr(build, '/');
            if (slash)
                *slash = '\0';
        }
    }
    if ((!is_file && snprintf(daemon, size, "%s/arqonbusd", build) >= (int)size) ||
        snprintf(plugins, size, "%s/plugins", build) >= (int)size)
        fail("build directory path too long: %s", build);
    char *abs = realpath(plugins, NULL); /* the conf.d lives elsewhere: make it absolute */
    if (!abs)
        fail("no plugin directory %s", plugins);
    snprintf(plugins, size, "%s", abs);
    free(abs);
    if (access(daemon, X_OK) != 0)
        fail("no arqonbusd at %s", daemon);
}

int main(int argc, char **argv)
{
    char daemon[PATH_MAX], plugins[PATH_MAX];
    find_build(argc > 1 ? argv[1] : NULL, daemon, plugins, sizeof daemon);
    int nmsg = argc > 2 ? atoi(argv[2]) : DEFAULT_MSGS;
    int nsub = argc > 3 ? atoi(argv[3]) : DEFAULT_SUBS;
    if (nmsg < 1 || nsub < 1 || nsub > MAX_SUBS)
        fail("usage: %s [BUILD_DIR|ARQONBUSD] [MESSAGES] [SUBSCRIBERS (1-%d)]", argv[0], MAX_SUBS);
    signal(SIGPIPE, SIG_IGN);
    ws_raise_fd_limit(nsub + 64);

    printf("arqonbus-bench-telemetry: %s\n1 publisher (ack=0) -> %d subscribers in one channel, "
           "%d messages (%ld deliveries), window %d, loopback, client on the same machine\n",
           daemon, nsub, nmsg, (long)nmsg * nsub, WINDOW);
    fflush(stdout);
    struct result off, on;
    run(daemon, plugins, 0, nmsg, nsub, &off);
    run(daemon, plugins, 1, nmsg, nsub, &on);

    printf("\n%-16s %8s %14s %9s %16s %14s\n", "run", "wall s", "deliveries/s", "server s",
           "deliv/server-s", "telemetry ev/s");
    printf("%-16s %8.2f %14.0f %9.2f %16.0f %14s\n", "no telemetry", off.wall, off.deliveries_per_s,
           off.cpu, off.per_cpu, "-");
    printf("%-16s %8.2f %14.0f %9.2f %16.0f %14.0f\n", "with telemetry", on.wall,
           on.deliveries_per_s, on.cpu, on.per_cpu, on.tel_rate);
    printf("\nwith/without: deliveries/s %.3f, deliveries per server CPU-second %.3f\n",
           on.deliveries_per_s / off.deliveries_per_s,
           off.per_cpu > 0 ? on.per_cpu / off.per_cpu : 0.0);
    printf("telemetry client: %ld message_routed events of %d messages (%ld events in all), "
           "%.0f/s\n",
           on.tel_routed, nmsg, on.tel_events, on.tel_rate);
    /* What the claim needs: the extra server CPU per telemetry event, and what 10,000 of them
     * per second cost in share of one core. */
    double extra_us = (on.cpu - off.cpu) / (double)nmsg * 1e6;
    printf("server CPU added by telemetry: %.2f us per message_routed event; at %d events/s "
           "that is %.1f%% of one core\n",
           extra_us, MIN_TEL_RATE, extra_us * MIN_TEL_RATE / 1e4);
    if (on.tel_rate < MIN_TEL_RATE)
        printf("NOTE: the telemetry stream ran below %d events/s in this run\n", MIN_TEL_RATE);
    return 0;
}
