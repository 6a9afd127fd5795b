/* arqonbus-bench-telemetry: does a stream of telemetry events slow message delivery? A
 * benchmark, not a test. It starts a real arqonbusd for every run, serving telemetry-websocket
 * to one client subscribed to every event; the two runs of a pair differ only in
 * bus.telemetry_messages (one message_routed event per message). Two scenarios, on loopback:
 *
 *   saturated   1 publisher sends MESSAGES as fast as 50 subscribers take them (at most WINDOW
 *               in flight): deliveries/s, server CPU, deliveries per server CPU-second.
 *   rate        1 publisher sends exactly RATE messages/s (10,000: as many telemetry events/s)
 *               for a warm-up and a measured window, each stamped with its send time:
 *               deliveries/s, publish-to-delivery latency percentiles, server CPU %, and
 *               telemetry events/s received.
 *
 * Usage: arqonbus-bench-telemetry [options] [BUILD_DIR | PATH_TO_ARQONBUSD]
 *   -s saturated|rate|both  scenarios (both)           -n N  repetitions, then a summary (1)
 *   -c N        subscribers (50)                       -m N  saturated: messages (100000)
 *   -r N        rate: messages/s (10000)   -w S  warm-up s (1)   -d S  measured s (5)
 *   -k N        rate: latency probes, spread over the join order, the last one included (2)
 *   -i US       rate: the other subscribers are read every US microseconds (1000)
 *   -p 0|1      rate: server on CPU 0, clients on CPU 1 (1 when there are 2 CPUs or more)
 *   -q S        before each run, wait up to S seconds for other processes to go quiet (60)
 * The build directory defaults to the one this binary was built in (<build>/bench/..); the
 * plugins are taken from <build>/plugins. */
#define _GNU_SOURCE /* sched_setaffinity */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ws_client.h"

#define WINDOW        200   /* messages in flight: i is sent once all have i-WINDOW */
#define RUN_LIMIT_S   60.0  /* a run taking longer aborts */
#define TEL_WAIT_S    5.0   /* after the last delivery, how long telemetry may trail */
#define MIN_TEL_RATE  10000 /* the claim: at least this many telemetry events/s */
#define DEFAULT_RATE  10000
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

/* Ctrl-C: the server must not outlive the bench. */
static void on_signal(int sig)
{
    if (current && current->pid > 0)
        kill(current->pid, SIGTERM);
    _exit(128 + sig);
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

/* Both runs serve telemetry-websocket to one client subscribed to every event; `telemetry` sets
 * bus.telemetry_messages, which is all that differs: one message_routed event per message.
 * `cpu` >= 0 pins the server to that CPU. */
static void server_start(struct server *s, const char *daemon, const char *plugins, int telemetry,
                         int cpu)
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
        if (cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            if (sched_setaffinity(0, sizeof set, &set) != 0)
                _exit(126);
        }
        execl(daemon, daemon, "-c", s->dir, (char *)NULL);
        _exit(127);
    }
    double end = now_s() + 10.0;
    for (;;) {
        s->ws_port = listening_port(s->log, "ws");
        s->tel_port = listening_port(s->log, "telemetry");
        if (s->ws_port > 0 && s->tel_port > 0)
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

/* --- CPU snapshots ------------------------------------------------------------------------- */

/* What the server, this process and every other process had used at one moment. The others are
 * what makes a measurement on a shared machine (parallel builds, test suites) unreliable, so a
 * run reports how much CPU they took meanwhile. */
#define SNAP_MAX 4096

struct proc_cpu {
    long pid;
    unsigned long long start; /* start time: a reused pid is another process */
    double cpu;               /* utime + stime + reaped children's */
};

struct snapshot {
    double at; /* now_s() */
    double server, self;
    struct proc_cpu others[SNAP_MAX];
    size_t nothers;
};

/* utime + stime (+ cutime + cstime with `children`) and the start time, from /proc/PID/stat;
 * -1 when the process is gone or is a kernel thread (ppid 0 or 2). */
static double proc_cpu(long pid, int children, unsigned long long *start)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    int ppid = 0;
    unsigned long utime = 0, stime = 0;
    long cutime = 0, cstime = 0;
    unsigned long long st = 0;
    /* after ")": state(3) ppid(4) pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) cutime(16) cstime(17) priority nice num_threads itrealvalue
     * starttime(22) */
    if (!p || sscanf(p + 2,
                     "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %ld %ld %*d %*d "
                     "%*d %*d %llu",
                     &ppid, &utime, &stime, &cutime, &cstime, &st) != 6)
        return -1;
    if (ppid == 0 || ppid == 2)
        return -1;
    if (start)
        *start = st;
    double ticks = (double)(utime + stime) + (children ? (double)(cutime + cstime) : 0);
    return ticks / (double)sysconf(_SC_CLK_TCK);
}

/* utime + stime of a process, in seconds. */
static double cpu_seconds(pid_t pid)
{
    double v = proc_cpu((long)pid, 0, NULL);
    if (v < 0)
        fail("cannot read /proc/%d/stat", (int)pid);
    return v;
}

static void snapshot_take(struct snapshot *s, pid_t server)
{
    s->at = now_s();
    s->server = server > 0 ? cpu_seconds(server) : 0;
    s->self = cpu_seconds(getpid());
    s->nothers = 0;
    DIR *d = opendir("/proc");
    if (!d)
        fail("opendir /proc: %s", strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) && s->nothers < SNAP_MAX) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == (long)server || pid == (long)getpid())
            continue;
        struct proc_cpu *o = &s->others[s->nothers];
        if ((o->cpu = proc_cpu(pid, 1, &o->start)) >= 0) {
            o->pid = pid;
            s->nothers++;
        }
    }
    closedir(d);
}

/* CPU seconds the other processes used between two snapshots: a process new in `b` counts whole
 * (with the children it reaped); one that ended in between is missed unless its parent reaped
 * it. */
static double snapshot_others(const struct snapshot *a, const struct snapshot *b)
{
    /* A reaped child counts whole, including what it ran before `a`: never more than the
     * machine could have run, though. */
    double sum = 0, most = (b->at - a->at) * (double)sysconf(_SC_NPROCESSORS_ONLN);
    for (size_t i = 0; i < b->nothers; i++) {
        double before = 0;
        for (size_t j = 0; j < a->nothers; j++)
            if (a->others[j].pid == b->others[i].pid && a->others[j].start == b->others[i].start)
                before = a->others[j].cpu;
        sum += b->others[i].cpu - before;
    }
    return sum < most ? sum : most;
}

/* Wait up to max_s for 2 s in which other processes used under QUIET_PCT of a CPU. */
#define QUIET_PCT 5.0
static void wait_quiet(double max_s)
{
    static struct snapshot a, b;
    double end = now_s() + max_s, busy = 0;
    while (max_s > 0) {
        snapshot_take(&a, 0);
        sleep_ms(2000);
        snapshot_take(&b, 0);
        busy = snapshot_others(&a, &b) / (b.at - a.at) * 100.0;
        if (busy < QUIET_PCT)
            return;
        if (now_s() > end)
            break;
    }
    if (max_s > 0)
        printf("NOTE: waited %.0f s for other processes to go quiet; they still use %.0f%% of a "
               "CPU\n",
               max_s, busy);
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

/* --- scenario 1: saturated
 * ------------------------------------------------------------------------------- */

struct sat_result {
    double wall, cpu, deliveries_per_s, per_cpu;
    double other_cpu_pct; /* what the rest of the machine used meanwhile, % of one core */
    long deliveries;
    long tel_routed, tel_events;
    double tel_rate; /* message_routed events/s seen by the telemetry client */
};

static void run_saturated(const char *daemon, const char *plugins, int telemetry, int nmsg,
                          int nsub, struct sat_result *r)
{
    struct server s;
    server_start(&s, daemon, plugins, telemetry, -1);
    struct tel tel;
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

    /* ~110 bytes of JSON on the wire: a typical small chat or event message. */
    char msg[256];
    static struct snapshot snap0, snap1;
    snapshot_take(&snap0, s.pid);
    const double t0 = now_s(), cpu0 = snap0.server, limit = t0 + RUN_LIMIT_S;
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
    snapshot_take(&snap1, s.pid);
    const double cpu1 = snap1.server;

    r->wall = t1 - t0;
    r->cpu = cpu1 - cpu0;
    r->deliveries = total;
    r->deliveries_per_s = (double)total / r->wall;
    r->per_cpu = r->cpu > 0 ? (double)total / r->cpu : 0;
    r->other_cpu_pct = snapshot_others(&snap0, &snap1) / (snap1.at - snap0.at) * 100.0;
    if (atomic_load(&tel.error))
        fail("telemetry client: %s (close code %d)", ws_error(tel.c), ws_close_code(tel.c));
    r->tel_routed = atomic_load(&tel.routed);
    r->tel_events = atomic_load(&tel.events);
    double span = atomic_load(&tel.last_at) - t0;
    r->tel_rate = r->tel_routed > 0 && span > 0 ? (double)r->tel_routed / span : 0;
    tel_stop(&tel);
    for (int i = 0; i < nsub; i++)
        ws_free(subs[i]);
    ws_free(pub);
    free(subs);
    free(got);
    free(pfd);
    current = NULL;
    server_stop(&s);
}

/* --- scenario 2: a fixed rate -------------------------------------------------------------- */

/* Publish-to-delivery latency in 1 µs buckets up to LAT_BUCKETS µs; slower ones go in the last
 * bucket (the exact maximum is kept apart). */
#define LAT_BUCKETS 1000000

struct rate_params {
    int rate;         /* messages/s */
    double warmup_s;  /* sent and delivered, not measured */
    double measure_s; /* the measured window */
    int nsub;
    int probes;   /* subscribers whose latency is measured */
    int round_us; /* how often the other subscribers are read */
    int pin;      /* server on CPU 0, this process on CPU 1 */
};

struct rate_result {
    double deliveries_per_s; /* deliveries received in the window / window */
    double cpu_pct;          /* server utime+stime over the window, % of one core */
    double client_cpu_pct;   /* the same for this process (every client thread) */
    double other_cpu_pct;    /* the rest of the machine */
    double tel_rate;         /* message_routed events received in the window / window */
    double p50, p90, p99, max_us;
    double lag_max_us;   /* the publisher's worst delay behind its schedule */
    long measured, lost; /* deliveries of messages sent in the window; of those, missing */
    long tel_routed, sent;
};

/* The publisher: message i goes out at t0 + i/rate (clock_nanosleep to an absolute time),
 * stamped with the time it actually left. */
struct publisher {
    struct ws_client *c;
    int64_t t0_ns;
    long first_measured, total; /* message numbers: [first_measured, total) are measured */
    int rate;
    pthread_t thread;
    /* out */
    int64_t lag_max_ns;
    atomic_long sent;
    atomic_int done;
    char error[256];
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until_ns(int64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000), (long)(t % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Snapshots at the edges of the measured window, from a thread of their own. */
struct sampler {
    pid_t server;
    struct tel *tel;
    int64_t w0_ns, w1_ns;
    pthread_t thread;
    struct snapshot a, b;
    long tel0, tel1;
};

static void *sampler_main(void *arg)
{
    struct sampler *sm = arg;
    sleep_until_ns(sm->w0_ns);
    snapshot_take(&sm->a, sm->server);
    sm->tel0 = atomic_load(&sm->tel->routed);
    sleep_until_ns(sm->w1_ns);
    snapshot_take(&sm->b, sm->server);
    sm->tel1 = atomic_load(&sm->tel->routed);
    return NULL;
}

static void *publisher_main(void *arg)
{
    struct publisher *p = arg;
    char msg[256];
    prctl(PR_SET_TIMERSLACK, 1000UL); /* wake within ~1 µs of the schedule, not 50 µs */
    for (long i = 0; i < p->total; i++) {
        int64_t due = p->t0_ns + i * 1000000000LL / p->rate;
        sleep_until_ns(due);
        int64_t now = mono_ns();
        if (i >= p->first_measured && now - due > p->lag_max_ns)
            p->lag_max_ns = now - due;
        int n = snprintf(msg, sizeof msg,
                         "{\"type\":\"message\",\"room\":\"" ROOM "\",\"channel\":\"" CHANNEL
                         "\",\"payload\":{\"seq\":%ld,\"t\":%lld,\"text\":\"hello fan-out\"}}",
                         i, (long long)now);
        if (ws_send_text(p->c, msg, (size_t)n) != 0) {
            snprintf(p->error, sizeof p->error, "publish: %s", ws_error(p->c));
            break;
        }
        atomic_store(&p->sent, i + 1);
        if (i % 1000 == 999) { /* ack=0: anything that arrives is an error frame */
            char *data = NULL;
            int op = ws_poll_message(p->c, &data, NULL);
            if (op != 0) {
                snprintf(p->error, sizeof p->error, "publisher got: %.200s",
                         data ? data : ws_error(p->c));
                free(data);
                break;
            }
        }
    }
    atomic_store(&p->done, 1);
    return NULL;
}

static double percentile_us(const uint32_t *hist, long n, double q)
{
    long want = (long)(q * (double)n + 0.5), seen = 0;
    if (want < 1)
        want = 1;
    for (long b = 0; b < LAT_BUCKETS; b++) {
        seen += hist[b];
        if (seen >= want)
            return (double)(b + 1); /* the bucket's upper edge */
    }
    return (double)LAT_BUCKETS;
}

/* A subscriber read straight from its socket. 50 subscribers at 500,000 deliveries/s share one
 * client thread (and, pinned, one CPU) with the publisher and the telemetry reader: the test
 * client's copy per message and two recv() per wake-up cost more than that CPU has. So each
 * recv() here fills a buffer parsed in place, and only the probes (a few subscribers) are read
 * as soon as they are readable, for the latency; the others are read every round_us, counted,
 * and checked for loss. Server frames are unmasked and never fragmented by arqonbusd. */
struct reader {
    struct ws_client *c; /* handshake done; still used to answer pings */
    int fd, index;
    int probe; /* read as soon as readable, and its latency measured */
    unsigned char *buf;
    size_t len, cap;
};

#define READER_BUF (256 * 1024)

static void reader_init(struct reader *rd, struct ws_client *c, int index)
{
    char *data = NULL;
    if (ws_poll_message(c, &data, NULL) != 0) /* nothing may be left in the client's buffer */
        fail("subscriber %d: unexpected frame before the run: %.200s", index,
             data ? data : ws_error(c));
    rd->c = c;
    rd->fd = ws_fd(c);
    rd->index = index;
    rd->len = 0;
    rd->cap = READER_BUF;
    if (!(rd->buf = malloc(rd->cap)))
        fail("out of memory");
}

/* What the receiving thread counts. */
struct rate_rx {
    int64_t w0, w1; /* the measured window, by receive time */
    long first_measured;
    long measured, in_window; /* deliveries of measured messages; deliveries in the window */
    uint32_t *hist;           /* latencies seen by the probes */
    long probed;
    int64_t max_ns;
};

/* "key":<integer> in the first bytes of a delivered frame, or -1. */
static long long frame_int(const char *text, size_t len, const char *key)
{
    char head[256];
    size_t n = len < sizeof head - 1 ? len : sizeof head - 1;
    memcpy(head, text, n);
    head[n] = '\0';
    const char *p = strstr(head, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

static void rate_on_text(struct rate_rx *rx, int probe, const char *text, size_t len)
{
    int64_t now = mono_ns();
    long long seq = frame_int(text, len, "\"seq\":"), t = frame_int(text, len, "\"t\":");
    if (seq < 0 || t <= 0)
        fail("unexpected frame: %.*s", (int)(len < 200 ? len : 200), text);
    rx->in_window += now >= rx->w0 && now < rx->w1;
    if (seq < rx->first_measured)
        return;
    rx->measured++;
    if (probe) {
        int64_t lat = now - t;
        long b = (long)(lat / 1000);
        rx->hist[b < 0 ? 0 : b >= LAT_BUCKETS ? LAT_BUCKETS - 1 : b]++;
        rx->max_ns = lat > rx->max_ns ? lat : rx->max_ns;
        rx->probed++;
    }
}

/* One recv(), then every complete frame. */
static void reader_read(struct reader *rd, struct rate_rx *rx)
{
    ssize_t n = recv(rd->fd, rd->buf + rd->len, rd->cap - rd->len, 0);
    if (n == 0)
        fail("subscriber %d: connection closed by the server", rd->index);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        fail("subscriber %d: recv: %s", rd->index, strerror(errno));
    }
    rd->len += (size_t)n;
    size_t off = 0;
    for (;;) {
        const unsigned char *b = rd->buf + off;
        size_t avail = rd->len - off, hlen = 2;
        if (avail < 2)
            break;
        uint64_t plen = b[1] & 0x7F;
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = (uint64_t)b[2] << 8 | b[3];
            hlen = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | b[2 + i];
            hlen = 10;
        }
        if (plen > READER_BUF - 16)
            fail("subscriber %d: frame of %llu bytes", rd->index, (unsigned long long)plen);
        if (avail - hlen < plen)
            break;
        int op = b[0] & 0x0F;
        if (!(b[0] & 0x80) || (b[1] & 0x80))
            fail("subscriber %d: fragmented or masked frame", rd->index);
        if (op == WS_OP_TEXT)
            rate_on_text(rx, rd->probe, (const char *)b + hlen, (size_t)plen);
        else if (op == WS_OP_PING)
            ws_send_frame(rd->c, WS_OP_PONG, 1, b + hlen, (size_t)plen);
        else if (op == WS_OP_CLOSE)
            fail("subscriber %d closed by the server", rd->index);
        off += hlen + (size_t)plen;
    }
    memmove(rd->buf, rd->buf + off, rd->len - off);
    rd->len -= off;
}

static void run_rate(const char *daemon, const char *plugins, int telemetry,
                     const struct rate_params *rp, struct rate_result *r)
{
    /* Pinned, the server has CPU 0 to itself and every client thread shares CPU 1: what the
     * clients do cannot take the server's CPU, and the server's CPU time is its own. */
    cpu_set_t before;
    if (rp->pin) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(1, &one);
        if (sched_getaffinity(0, sizeof before, &before) != 0 ||
            sched_setaffinity(0, sizeof one, &one) != 0)
            fail("sched_setaffinity: %s", strerror(errno));
    }
    struct server s;
    server_start(&s, daemon, plugins, telemetry, rp->pin ? 0 : -1);
    struct tel tel;
    tel_start(&tel, s.tel_port);

    int nsub = rp->nsub;
    struct ws_client **subs = calloc((size_t)nsub, sizeof *subs);
    struct reader *rd = calloc((size_t)nsub, sizeof *rd);
    struct epoll_event *evs = calloc((size_t)nsub + 1, sizeof *evs);
    struct rate_rx rx = {.hist = calloc(LAT_BUCKETS, sizeof *rx.hist)};
    int ep = epoll_create1(0);
    if (!subs || !rd || !evs || !rx.hist || ep < 0)
        fail("out of memory or epoll_create1: %s", strerror(errno));
    for (int i = 0; i < nsub; i++) {
        subs[i] = connect_client(s.ws_port, "/");
        join(subs[i]);
    }
    struct publisher pub = {.rate = rp->rate};
    struct sampler *sm = calloc(1, sizeof *sm);
    if (!sm)
        fail("out of memory");
    pub.c = connect_client(s.ws_port, "/?ack=0");
    join(pub.c);
    for (int i = 0; i < nsub; i++) {
        reader_init(&rd[i], subs[i], i);
        /* `probes` subscribers evenly spread over the join order, the last one included. */
        rd[i].probe = (long)(i + 1) * rp->probes / nsub > (long)i * rp->probes / nsub;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &rd[i]};
        if (rd[i].probe && epoll_ctl(ep, EPOLL_CTL_ADD, rd[i].fd, &ev) != 0)
            fail("epoll_ctl: %s", strerror(errno));
    }
    pub.first_measured = (long)(rp->warmup_s * rp->rate);
    pub.total = pub.first_measured + (long)(rp->measure_s * rp->rate);
    pub.t0_ns = mono_ns() + 100000000; /* 100 ms from now */
    rx.first_measured = pub.first_measured;
    rx.w0 = pub.t0_ns + (int64_t)(rp->warmup_s * 1e9);
    rx.w1 = rx.w0 + (int64_t)(rp->measure_s * 1e9);
    *sm = (struct sampler){.server = s.pid, .tel = &tel, .w0_ns = rx.w0, .w1_ns = rx.w1};
    if (pthread_create(&pub.thread, NULL, publisher_main, &pub) != 0 ||
        pthread_create(&sm->thread, NULL, sampler_main, sm) != 0)
        fail("pthread_create");

    /* Receive on this thread until every measured message reached every subscriber. */
    const long expected = (pub.total - pub.first_measured) * nsub;
    const int64_t limit = pub.t0_ns + (int64_t)((rp->warmup_s + rp->measure_s + RUN_LIMIT_S) * 1e9);
    /* The probes as soon as they are readable; the others when the round timer fires. */
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec every = {{rp->round_us / 1000000, (long)(rp->round_us % 1000000) * 1000},
                               {0, 1000}};
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    if (tfd < 0 || timerfd_settime(tfd, 0, &every, NULL) != 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) != 0)
        fail("timerfd: %s", strerror(errno));
    int64_t drain_end = 0, now;
    while (rx.measured < expected) {
        int n = epoll_wait(ep, evs, nsub + 1, 10);
        if (n < 0 && errno != EINTR)
            fail("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr) {
                reader_read(evs[i].data.ptr, &rx);
                continue;
            }
            uint64_t ticks;
            if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                fail("timerfd read: %s", strerror(errno));
            for (int j = 0; j < nsub; j++)
                if (!rd[j].probe)
                    reader_read(&rd[j], &rx);
        }
        now = mono_ns();
        if (atomic_load(&pub.done)) {
            if (pub.error[0])
                fail("%s", pub.error);
            if (!drain_end)
                drain_end = now + (int64_t)(TEL_WAIT_S * 1e9);
            if (now > drain_end)
                break; /* the rest is lost */
        }
        if (now > limit)
            fail("aborted: run took more than %.0f s", RUN_LIMIT_S);
    }
    pthread_join(pub.thread, NULL);
    if (pub.error[0])
        fail("%s", pub.error);
    pthread_join(sm->thread, NULL);

    double window = sm->b.at - sm->a.at;
    r->sent = atomic_load(&pub.sent);
    r->measured = rx.measured;
    r->lost = expected - rx.measured;
    r->deliveries_per_s = (double)rx.in_window / ((double)(rx.w1 - rx.w0) / 1e9);
    r->cpu_pct = (sm->b.server - sm->a.server) / window * 100.0;
    r->client_cpu_pct = (sm->b.self - sm->a.self) / window * 100.0;
    r->other_cpu_pct = snapshot_others(&sm->a, &sm->b) / window * 100.0;
    r->p50 = percentile_us(rx.hist, rx.probed, 0.50);
    r->p90 = percentile_us(rx.hist, rx.probed, 0.90);
    r->p99 = percentile_us(rx.hist, rx.probed, 0.99);
    r->max_us = (double)rx.max_ns / 1e3;
    r->lag_max_us = (double)pub.lag_max_ns / 1e3;
    r->tel_rate = (double)(sm->tel1 - sm->tel0) / window;
    if (telemetry) {
        double end = now_s() + TEL_WAIT_S;
        while (atomic_load(&tel.routed) < r->sent && now_s() < end && !atomic_load(&tel.error))
            sleep_ms(10);
    }
    if (atomic_load(&tel.error))
        fail("telemetry client: %s (close code %d)", ws_error(tel.c), ws_close_code(tel.c));
    r->tel_routed = atomic_load(&tel.routed);
    tel_stop(&tel);
    for (int i = 0; i < nsub; i++) {
        ws_free(subs[i]);
        free(rd[i].buf);
    }
    close(tfd);
    close(ep);
    ws_free(pub.c);
    free(subs);
    free(rd);
    free(evs);
    free(rx.hist);
    free(sm);
    current = NULL;
    server_stop(&s);
    if (rp->pin)
        sched_setaffinity(0, sizeof before, &before);
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

static void usage(const char *argv0)
{
    fail("usage: %s [-s saturated|rate|both] [-n REPEATS] [-c SUBSCRIBERS (1-%d)] [-m MESSAGES] "
         "[-r RATE] [-w WARMUP_S] [-d SECONDS] [-k PROBES] [-i ROUND_US] [-p 0|1] [-q SECONDS] "
         "[BUILD_DIR|ARQONBUSD]",
         argv0, MAX_SUBS);
}

/* Other processes took CPU during a pair of runs: they compare less well. */
#define BUSY_NOTE_PCT 10.0
static void busy_note(double a, double b)
{
    double worst = a > b ? a : b;
    if (worst > BUSY_NOTE_PCT)
        printf("NOTE: the rest of the machine used up to %.0f%% of a CPU during these runs\n",
               worst);
}

static void print_saturated(const struct sat_result *off, const struct sat_result *on, int nmsg)
{
    printf("%-16s %8s %14s %9s %16s %14s %10s\n", "run", "wall s", "deliveries/s", "server s",
           "deliv/server-s", "telemetry ev/s", "other CPU");
    printf("%-16s %8.2f %14.0f %9.2f %16.0f %14s %9.1f%%\n", "no telemetry", off->wall,
           off->deliveries_per_s, off->cpu, off->per_cpu, "-", off->other_cpu_pct);
    printf("%-16s %8.2f %14.0f %9.2f %16.0f %14.0f %9.1f%%\n", "with telemetry", on->wall,
           on->deliveries_per_s, on->cpu, on->per_cpu, on->tel_rate, on->other_cpu_pct);
    printf("with/without: deliveries/s %.3f, deliveries per server CPU-second %.3f\n",
           on->deliveries_per_s / off->deliveries_per_s,
           off->per_cpu > 0 ? on->per_cpu / off->per_cpu : 0.0);
    printf("telemetry client: %ld message_routed events of %d messages (%ld events in all), "
           "%.0f/s\n",
           on->tel_routed, nmsg, on->tel_events, on->tel_rate);
    /* The extra server CPU per telemetry event. CPU time is counted in 10 ms ticks, so with
     * ~1.5 s runs this is within about +-0.5 us of noise even on a quiet machine. */
    printf("server CPU added by telemetry: %.2f us per message_routed event\n",
           (on->cpu - off->cpu) / (double)nmsg * 1e6);
}

/* --- the summary over repetitions --------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* "median [min - max]" of n values (sorted in place). */
static const char *spread(double *v, int n, const char *fmt)
{
    static char out[4][64];
    static int turn;
    char *o = out[turn++ % 4];
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    char lo[20], mid[20], hi[20];
    snprintf(lo, sizeof lo, fmt, v[0]);
    snprintf(mid, sizeof mid, fmt, n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
    snprintf(hi, sizeof hi, fmt, v[n - 1]);
    snprintf(o, 64, "%s [%s - %s]", mid, lo, hi);
    return o;
}

/* Pairs in which the rest of the machine stayed under BUSY_NOTE_PCT: the others are left out of
 * the summary (all are kept when none qualifies). Prints the summary's heading. */
static int clean_pairs(const char *what, const double *off_other, const double *on_other, int n,
                       int *keep)
{
    int m = 0;
    for (int k = 0; k < n; k++)
        if (off_other[k] <= BUSY_NOTE_PCT && on_other[k] <= BUSY_NOTE_PCT)
            keep[m++] = k;
    if (m > 0) {
        printf("\n== %s, %d of %d pairs with the rest of the machine under %.0f%% of a CPU: "
               "median [min - max] ==\n",
               what, m, n, BUSY_NOTE_PCT);
        return m;
    }
    printf("\n== %s, all %d pairs, though in none did the rest of the machine stay under %.0f%% "
           "of a CPU: median [min - max] ==\n",
           what, n, BUSY_NOTE_PCT);
    for (int k = 0; k < n; k++)
        keep[m++] = k;
    return m;
}

static void summary_saturated(const struct sat_result *off, const struct sat_result *on, int n,
                              int nmsg)
{
    double *v = calloc((size_t)n * 3, sizeof *v), *w = v + n, *x = w + n;
    int *keep = calloc((size_t)n, sizeof *keep);
    if (!v || !keep)
        fail("out of memory");
    for (int k = 0; k < n; k++) {
        w[k] = off[k].other_cpu_pct;
        x[k] = on[k].other_cpu_pct;
    }
    int m = clean_pairs("saturated", w, x, n, keep);
    printf("  %-28s %-36s %s\n", "", "no telemetry", "with telemetry");
    for (int i = 0; i < m; i++) {
        v[i] = off[keep[i]].deliveries_per_s;
        w[i] = on[keep[i]].deliveries_per_s;
    }
    printf("  %-28s %-36s %s\n", "deliveries/s", spread(v, m, "%.0f"), spread(w, m, "%.0f"));
    for (int i = 0; i < m; i++) {
        v[i] = off[keep[i]].per_cpu;
        w[i] = on[keep[i]].per_cpu;
    }
    printf("  %-28s %-36s %s\n", "deliveries/server CPU-s", spread(v, m, "%.0f"),
           spread(w, m, "%.0f"));
    for (int i = 0; i < m; i++)
        v[i] = (on[keep[i]].cpu - off[keep[i]].cpu) / (double)nmsg * 1e6;
    printf("  server CPU added per message_routed event, us: %s\n", spread(v, m, "%.2f"));
    free(v);
    free(keep);
}

static void summary_rate(const struct rate_result *off, const struct rate_result *on, int n)
{
    double *v = calloc((size_t)n * 2, sizeof *v), *w = v + n;
    int *keep = calloc((size_t)n, sizeof *keep);
    if (!v || !keep)
        fail("out of memory");
    for (int k = 0; k < n; k++) {
        v[k] = off[k].other_cpu_pct;
        w[k] = on[k].other_cpu_pct;
    }
    int m = clean_pairs("fixed rate", v, w, n, keep);
    printf("  %-16s %-36s %s\n", "", "no telemetry", "with telemetry");
    static const char *const names[] = {"deliveries/s", "p50 us", "p90 us",
                                        "p99 us",       "max us", "server CPU %"};
    for (int f = 0; f < 6; f++) {
        for (int i = 0; i < m; i++) {
            const struct rate_result *a = &off[keep[i]], *b = &on[keep[i]];
            const double av[] = {a->deliveries_per_s, a->p50,    a->p90, a->p99,
                                 a->max_us,           a->cpu_pct};
            const double bv[] = {b->deliveries_per_s, b->p50,    b->p90, b->p99,
                                 b->max_us,           b->cpu_pct};
            v[i] = av[f];
            w[i] = bv[f];
        }
        const char *fmt = f == 5 ? "%.1f" : "%.0f";
        printf("  %-16s %-36s %s\n", names[f], spread(v, m, fmt), spread(w, m, fmt));
    }
    for (int i = 0; i < m; i++) {
        const struct rate_result *a = &off[keep[i]], *b = &on[keep[i]];
        v[i] = b->tel_rate > 0 ? (b->cpu_pct - a->cpu_pct) / 100.0 / b->tel_rate * 1e6 : 0;
    }
    printf("  server CPU added per message_routed event, us: %s\n", spread(v, m, "%.2f"));
    free(v);
    free(keep);
}

static void print_rate(const struct rate_result *off, const struct rate_result *on)
{
    printf("%-16s %13s %7s %7s %7s %8s %11s %11s %10s %14s %5s\n", "run", "deliveries/s", "p50 us",
           "p90 us", "p99 us", "max us", "server CPU", "client CPU", "other CPU", "telemetry ev/s",
           "lost");
    const struct rate_result *rr[] = {off, on};
    for (int k = 0; k < 2; k++) {
        char tel[32] = "-";
        if (k == 1)
            snprintf(tel, sizeof tel, "%.0f", rr[k]->tel_rate);
        printf("%-16s %13.0f %7.0f %7.0f %7.0f %8.0f %10.1f%% %10.1f%% %9.1f%% %14s %5ld\n",
               k ? "with telemetry" : "no telemetry", rr[k]->deliveries_per_s, rr[k]->p50,
               rr[k]->p90, rr[k]->p99, rr[k]->max_us, rr[k]->cpu_pct, rr[k]->client_cpu_pct,
               rr[k]->other_cpu_pct, tel, rr[k]->lost);
    }
    printf("with/without: deliveries/s %.3f, p50 %.2f, p90 %.2f, p99 %.2f; server CPU %+.1f "
           "points of one core\n",
           on->deliveries_per_s / off->deliveries_per_s, on->p50 / off->p50, on->p90 / off->p90,
           on->p99 / off->p99, on->cpu_pct - off->cpu_pct);
    printf("server CPU added by telemetry: %.2f us per message_routed event (%.0f events/s)\n",
           on->tel_rate > 0 ? (on->cpu_pct - off->cpu_pct) / 100.0 / on->tel_rate * 1e6 : 0.0,
           on->tel_rate);
    printf("telemetry client: %ld message_routed events of %ld messages sent; publisher at most "
           "%.0f / %.0f us behind its schedule\n",
           on->tel_routed, on->sent, off->lag_max_us, on->lag_max_us);
}

int main(int argc, char **argv)
{
    const char *scenario = "both";
    int nmsg = DEFAULT_MSGS, nsub = DEFAULT_SUBS, repeats = 1, opt;
    double quiet_s = 60;
    struct rate_params rp = {.rate = DEFAULT_RATE,
                             .warmup_s = 1.0,
                             .measure_s = 5.0,
                             .probes = 2,
                             .round_us = 1000,
                             .pin = sysconf(_SC_NPROCESSORS_ONLN) >= 2};
    while ((opt = getopt(argc, argv, "s:n:m:c:r:w:d:i:k:p:q:")) != -1) {
        switch (opt) {
        case 's':
            scenario = optarg;
            break;
        case 'n':
            repeats = atoi(optarg);
            break;
        case 'm':
            nmsg = atoi(optarg);
            break;
        case 'c':
            nsub = atoi(optarg);
            break;
        case 'r':
            rp.rate = atoi(optarg);
            break;
        case 'w':
            rp.warmup_s = atof(optarg);
            break;
        case 'd':
            rp.measure_s = atof(optarg);
            break;
        case 'i':
            rp.round_us = atoi(optarg);
            break;
        case 'k':
            rp.probes = atoi(optarg);
            break;
        case 'p':
            rp.pin = atoi(optarg);
            break;
        case 'q':
            quiet_s = atof(optarg);
            break;
        default:
            usage(argv[0]);
        }
    }
    int saturated = !strcmp(scenario, "saturated") || !strcmp(scenario, "both");
    int rate = !strcmp(scenario, "rate") || !strcmp(scenario, "both");
    if ((!saturated && !rate) || argc - optind > 1 || nmsg < 1 || nsub < 1 || nsub > MAX_SUBS ||
        repeats < 1 || rp.rate < 1 || rp.rate > 1000000 || rp.warmup_s < 0 || rp.measure_s < 0.1 ||
        rp.probes < 1 || rp.round_us < 1 || quiet_s < 0)
        usage(argv[0]);
    rp.nsub = nsub;
    char daemon[PATH_MAX], plugins[PATH_MAX];
    find_build(optind < argc ? argv[optind] : NULL, daemon, plugins, sizeof daemon);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    ws_raise_fd_limit(nsub + 64);

    printf("arqonbus-bench-telemetry: %s, loopback, clients on the same machine\n", daemon);
    struct sat_result *so = calloc((size_t)repeats, sizeof *so),
                      *sw = calloc((size_t)repeats, sizeof *sw);
    struct rate_result *ro = calloc((size_t)repeats, sizeof *ro),
                       *rw = calloc((size_t)repeats, sizeof *rw);
    if (!so || !sw || !ro || !rw)
        fail("out of memory");
    for (int k = 0; k < repeats; k++) {
        if (saturated) {
            printf("\n== saturated: 1 publisher (ack=0) -> %d subscribers in one channel, %d "
                   "messages (%ld deliveries), window %d ==\n",
                   nsub, nmsg, (long)nmsg * nsub, WINDOW);
            if (repeats > 1)
                printf("(repetition %d of %d)\n", k + 1, repeats);
            fflush(stdout);
            wait_quiet(quiet_s);
            run_saturated(daemon, plugins, 0, nmsg, nsub, &so[k]);
            wait_quiet(quiet_s);
            run_saturated(daemon, plugins, 1, nmsg, nsub, &sw[k]);
            print_saturated(&so[k], &sw[k], nmsg);
            busy_note(so[k].other_cpu_pct, sw[k].other_cpu_pct);
            if (sw[k].tel_rate < MIN_TEL_RATE)
                printf("NOTE: the telemetry stream ran below %d events/s in this run\n",
                       MIN_TEL_RATE);
        }
        if (rate) {
            printf("\n== fixed rate: 1 publisher (ack=0) at %d messages/s -> %d subscribers "
                   "(%ld deliveries/s), %g s warm-up, %g s measured%s ==\n",
                   rp.rate, nsub, (long)rp.rate * nsub, rp.warmup_s, rp.measure_s,
                   rp.pin ? ", server on CPU 0, clients on CPU 1" : "");
            if (repeats > 1)
                printf("(repetition %d of %d)\n", k + 1, repeats);
            fflush(stdout);
            wait_quiet(quiet_s);
            run_rate(daemon, plugins, 0, &rp, &ro[k]);
            wait_quiet(quiet_s);
            run_rate(daemon, plugins, 1, &rp, &rw[k]);
            print_rate(&ro[k], &rw[k]);
            busy_note(ro[k].other_cpu_pct, rw[k].other_cpu_pct);
        }
        fflush(stdout);
    }
    if (repeats > 1 && saturated)
        summary_saturated(so, sw, repeats, nmsg);
    if (repeats > 1 && rate)
        summary_rate(ro, rw, repeats);
    free(so);
    free(sw);
    free(ro);
    free(rw);
    return 0;
}
