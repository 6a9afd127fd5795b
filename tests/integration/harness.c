#include "harness.h"
#include "scratch_dir.h"

#include <setjmp.h>
#include <stddef.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ws_client.h"

static void die(const char *what)
{
    fprintf(stderr, "harness: %s: %s\n", what, strerror(errno));
    abort();
}

int h_ms(int ms)
{
    const char *slow = getenv("ARQ_TEST_SLOW");
    return slow && *slow ? ms * atoi(slow) : ms;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void h_mkdtemp(char *dir, size_t size)
{
    if (scratch_dir_make(dir, size, "arqonbus-test.", "harness") != 0)
        abort(); /* the reason is on stderr */
}

void h_write(const char *dir, const char *name, const char *fmt, ...)
{
    char path[1024], tmp[1100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp~", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        die(tmp);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0 || rename(tmp, path) != 0) /* atomic: a reload never sees half */
        die(path);
}

void h_unlink(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (unlink(path) != 0 && errno != ENOENT)
        die(path);
}

void h_rmtree(const char *dir)
{
    scratch_dir_remove(dir);
}

char *h_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        die("malloc");
    if (f) {
        size_t n;
        while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
            len += n;
            if (cap - len - 1 == 0) {
                char *grown = realloc(buf, cap *= 2);
                if (!grown)
                    die("realloc");
                buf = grown;
            }
        }
        fclose(f);
    }
    buf[len] = '\0';
    return buf;
}

static void exec_arqonbusd(const char *const *args, const char *const *env, int outfd)
{
    const char *argv[64];
    size_t n = 0;
    argv[n++] = ARQ_TEST_ARQONBUSD;
    for (size_t i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    for (size_t i = 0; env && env[i]; i++)
        putenv((char *)env[i]);
    dup2(outfd, 1);
    dup2(outfd, 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
        dup2(devnull, 0);
    execv(ARQ_TEST_ARQONBUSD, (char *const *)argv);
    _exit(127);
}

/* What the reader thread collected: every datagram, each followed by a NUL. */
struct h_notify_reader {
    int fd;
    pthread_t thread;
    pthread_mutex_t lock;
    char *buf;
    size_t len, cap, parsed; /* parsed: how much h_notify_poll has read */
    volatile int stop;
};

/* Move the datagrams waiting on the socket into r->buf; the caller holds r->lock (receiving
 * under it keeps the messages in order whichever thread drains). */
static void harness__notify_drain(struct h_notify_reader *r)
{
    char msg[4096];
    ssize_t n;
    while ((n = recv(r->fd, msg, sizeof msg - 1, 0)) >= 0) {
        if (r->len + (size_t)n + 1 > r->cap) {
            size_t cap = (r->cap + (size_t)n + 1) * 2;
            char *grown = realloc(r->buf, cap);
            if (!grown)
                die("realloc");
            r->buf = grown;
            r->cap = cap;
        }
        memcpy(r->buf + r->len, msg, (size_t)n);
        r->len += (size_t)n;
        r->buf[r->len++] = '\0';
    }
}

static void *harness__notify_read(void *arg)
{
    struct h_notify_reader *r = arg;
    while (!r->stop) {
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        pthread_mutex_lock(&r->lock);
        harness__notify_drain(r);
        pthread_mutex_unlock(&r->lock);
    }
    return NULL;
}

/* The harness's end of $NOTIFY_SOCKET: a datagram socket in logdir, or in the abstract
 * namespace when that path would not fit in sun_path (sd_notify accepts both). */
static void harness__notify_bind(struct proc *p, const char *logdir)
{
    static unsigned seq;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(logdir) + sizeof "/notify" <= sizeof a.sun_path)
        snprintf(p->notify_path, sizeof p->notify_path, "%s/notify", logdir);
    else
        snprintf(p->notify_path, sizeof p->notify_path, "@arqonbus-test-%d-%u", (int)getpid(),
                 ++seq);
    memcpy(a.sun_path, p->notify_path, strlen(p->notify_path));
    if (a.sun_path[0] == '@')
        a.sun_path[0] = '\0';
    else
        unlink(p->notify_path);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(p->notify_path));
    struct h_notify_reader *r = calloc(1, sizeof *r);
    if (!r)
        die("calloc");
    r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (r->fd < 0 || bind(r->fd, (struct sockaddr *)&a, len) != 0)
        die("notify socket");
    pthread_mutex_init(&r->lock, NULL);
    if (pthread_create(&r->thread, NULL, harness__notify_read, r) != 0)
        die("pthread_create");
    p->notify = r;
}

void h_release(struct proc *p)
{
    struct h_notify_reader *r = p->notify;
    if (!r)
        return;
    r->stop = 1;
    pthread_join(r->thread, NULL);
    close(r->fd);
    pthread_mutex_destroy(&r->lock);
    free(r->buf);
    free(r);
    p->notify = NULL;
}

void h_spawn(struct proc *p, const char *confdir, const char *logdir, const char *const *args,
             const char *const *env)
{
    const char *all[64] = {"-c", confdir};
    size_t n = 2;
    for (size_t i = 0; args && args[i] && n < 63; i++)
        all[n++] = args[i];
    all[n] = NULL;
    snprintf(p->out, sizeof p->out, "%s/arqonbusd.out", logdir);
    int fd = open(p->out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fd < 0)
        die(p->out);
    h_release(p); /* a respawn: a fresh socket, fresh counts */
    harness__notify_bind(p, logdir);
    memset(&p->notified, 0, sizeof p->notified);
    p->notified.generation = -1;
    static char notify_env[160]; /* putenv keeps the pointer; the child execs at once */
    snprintf(notify_env, sizeof notify_env, "NOTIFY_SOCKET=%s", p->notify_path);
    const char *envs[64] = {notify_env};
    n = 1;
    for (size_t i = 0; env && env[i] && n < 63; i++)
        envs[n++] = env[i];
    envs[n] = NULL;
    p->status = -1;
    p->pid = fork();
    if (p->pid < 0)
        die("fork");
    if (p->pid == 0)
        exec_arqonbusd(all, envs, fd);
    close(fd);
}

void h_kill(const struct proc *p, int sig)
{
    if (kill(p->pid, sig) != 0)
        die("kill");
}

/* Record the exit status of a reaped process; a failure's output helps the reader. */
static void harness__reaped(struct proc *p, int st)
{
    p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (p->status != 0) {
        char *text = h_slurp(p->out);
        fprintf(stderr, "harness: arqonbusd exited with %d; output:\n%s\n", p->status, text);
        free(text);
    }
}

/* Reap the process if it exited: 1 when it is gone (p->status set), 0 while it runs. */
static int harness__exited(struct proc *p)
{
    if (p->status >= 0)
        return 1;
    int st;
    if (waitpid(p->pid, &st, WNOHANG) != p->pid)
        return 0;
    harness__reaped(p, st);
    return 1;
}

int h_wait_exit(struct proc *p, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        if (harness__exited(p))
            return p->status;
        if (waited >= h_ms(timeout_ms))
            break;
        sleep_ms(10);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->status = 128 + SIGKILL; /* reaped: a teardown must not signal the pid again */
    fprintf(stderr, "harness: arqonbusd did not exit within %d ms; killed\n", h_ms(timeout_ms));
    return -1;
}

int h_fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

long h_rss_kib(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *text = h_slurp(path);
    const char *line = strstr(text, "VmRSS:");
    long kib = line ? strtol(line + 6, NULL, 10) : -1;
    free(text);
    return kib;
}

int h_run(const char *const *args, char **output)
{
    char dir[512], out[600];
    h_mkdtemp(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/out", dir);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die(out);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0)
        exec_arqonbusd(args, NULL, fd);
    close(fd);
    int st;
    if (waitpid(pid, &st, 0) != pid)
        die("waitpid");
    *output = h_slurp(out);
    h_rmtree(dir);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int h_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    h_mkdtemp(f->dir, sizeof f->dir);
    h_mkdtemp(f->logs, sizeof f->logs);
    *state = f;
    return 0;
}

int h_teardown(void **state)
{
    struct fixture *f = *state;
    if (f->p.pid > 0 && f->p.status < 0) {
        kill(f->p.pid, SIGTERM);
        h_wait_exit(&f->p, 10000);
    }
    h_release(&f->p);
    h_rmtree(f->dir);
    h_rmtree(f->logs);
    free(f);
    return 0;
}

/* --- sd_notify ------------------------------------------------------------------------------ */

/* The value of field `name` ("READY=") in a notify message, NULL when absent; the value runs
 * to the end of its line. */
static const char *harness__field(const char *msg, const char *name, char *out, size_t size)
{
    size_t len = strlen(name);
    for (const char *line = msg; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (n >= len && !strncmp(line, name, len)) {
            snprintf(out, size, "%.*s", (int)(n - len), line + len);
            return out;
        }
        line = end ? end + 1 : NULL;
    }
    return NULL;
}

static void harness__notified(struct h_notified *n, const char *msg)
{
    char v[512];
    const char *reload = harness__field(msg, "X_ARQONBUS_RELOAD=", v, sizeof v);
    if (reload && !strcmp(reload, "ok"))
        n->reloads_ok++;
    else if (reload)
        n->reloads_failed++;
    else if (harness__field(msg, "READY=", v, sizeof v) && !strcmp(v, "1"))
        n->ready++;
    if (harness__field(msg, "RELOADING=", v, sizeof v) && !strcmp(v, "1"))
        n->reloading++;
    if (harness__field(msg, "STOPPING=", v, sizeof v) && !strcmp(v, "1"))
        n->stopping++;
    if (harness__field(msg, "X_ARQONBUS_GENERATION=", v, sizeof v))
        n->generation = strtol(v, NULL, 10);
    if (harness__field(msg, "STATUS=", v, sizeof v))
        snprintf(n->status, sizeof n->status, "%s", v);
}

void h_notify_poll(struct proc *p)
{
    struct h_notify_reader *r = p->notify;
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    harness__notify_drain(r);
    for (; r->parsed < r->len; r->parsed += strlen(r->buf + r->parsed) + 1)
        harness__notified(&p->notified, r->buf + r->parsed);
    pthread_mutex_unlock(&r->lock);
}

/* Wait until done(p) holds: 0; -1 when the process exits first (its last messages read) or
 * after timeout_ms (scaled). */
static int harness__wait_notified(struct proc *p, int (*done)(const struct proc *, int), int arg,
                                  int timeout_ms, const char *what)
{
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        h_notify_poll(p);
        if (done(p, arg))
            return 0;
        int gone = harness__exited(p);
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - t0.tv_sec) * 1000L + (now.tv_nsec - t0.tv_nsec) / 1000000L;
        if (gone || ms >= h_ms(timeout_ms)) {
            h_notify_poll(p);
            if (done(p, arg))
                return 0;
            fprintf(stderr, "harness: no %s from arqonbusd (%s, %ld ms)\n", what,
                    gone ? "it exited" : "timed out", ms);
            return -1;
        }
        sleep_ms(5);
    }
}

static int harness__is_ready(const struct proc *p, int arg)
{
    (void)arg;
    return p->notified.ready > 0;
}

static int harness__has_verdicts(const struct proc *p, int n)
{
    return p->notified.reloads_ok + p->notified.reloads_failed >= n;
}

static int harness__is_stopping(const struct proc *p, int arg)
{
    (void)arg;
    return p->notified.stopping > 0;
}

int h_wait_ready(struct proc *p)
{
    return harness__wait_notified(p, harness__is_ready, 0, 10000, "READY=1");
}

int h_wait_reloads(struct proc *p, int n, int timeout_ms)
{
    return harness__wait_notified(p, harness__has_verdicts, n, timeout_ms, "reload verdict");
}

int h_wait_stopping(struct proc *p, int timeout_ms)
{
    return harness__wait_notified(p, harness__is_stopping, 0, timeout_ms, "STOPPING=1");
}

long h_generation(struct proc *p)
{
    h_notify_poll(p);
    return p->notified.generation;
}

int h_reload(struct fixture *f)
{
    h_notify_poll(&f->p);
    int ok_before = f->p.notified.reloads_ok;
    f->reloads++;
    h_kill(&f->p, SIGHUP);
    if (h_wait_reloads(&f->p, f->reloads, 10000) != 0) {
        fprintf(stderr, "harness: no reload verdict after SIGHUP %d\n", f->reloads);
        return -1;
    }
    return f->p.notified.reloads_ok > ok_before;
}

int h_stop(struct fixture *f)
{
    h_kill(&f->p, SIGTERM);
    return h_wait_exit(&f->p, 10000);
}

/* --- listeners from /proc ------------------------------------------------------------------ */

/* The socket inodes among the open descriptors of `pid`; -1 when /proc cannot be read. */
static int harness__socket_inodes(pid_t pid, unsigned long *out, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < max) {
        char link[320], target[64];
        snprintf(link, sizeof link, "%s/%s", path, de->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        unsigned long inode;
        if (sscanf(target, "socket:[%lu]", &inode) == 1)
            out[n++] = inode;
    }
    closedir(d);
    return n;
}

/* A local address of /proc/net/tcp{,6}: 32-bit words in hex, each in the kernel's (network)
 * byte order as the host's integer shows it. */
static void harness__proc_addr(const char *hex, int family, char *out, size_t size)
{
    unsigned char bytes[16];
    size_t words = family == AF_INET ? 1 : 4;
    for (size_t i = 0; i < words; i++) {
        char word[9];
        snprintf(word, sizeof word, "%.8s", hex + 8 * i);
        uint32_t v = (uint32_t)strtoul(word, NULL, 16);
        memcpy(bytes + 4 * i, &v, 4);
    }
    if (!inet_ntop(family, bytes, out, (socklen_t)size))
        snprintf(out, size, "?");
}

static int harness__scan_tcp(pid_t pid, const char *file, int family, const unsigned long *inodes,
                             int ninodes, struct h_listener *out, int max, int n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/net/%s", (int)pid, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return n;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char local[64];
        unsigned port, state;
        unsigned long inode;
        /* sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout
         * inode */
        if (sscanf(line, " %*d: %63[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*s %*s %lu", local, &port,
                   &state, &inode) != 4 ||
            state != 0x0A)
            continue;
        for (int i = 0; i < ninodes; i++) {
            if (inodes[i] != inode)
                continue;
            if (n < max) {
                harness__proc_addr(local, family, out[n].addr, sizeof out[n].addr);
                out[n].port = (int)port;
                out[n].inode = inode;
            }
            n++;
            break;
        }
    }
    fclose(f);
    return n;
}

int h_listeners(pid_t pid, struct h_listener *out, int max)
{
    unsigned long inodes[1024];
    int ninodes = harness__socket_inodes(pid, inodes, 1024);
    if (ninodes < 0)
        return -1;
    int n = harness__scan_tcp(pid, "tcp", AF_INET, inodes, ninodes, out, max, 0);
    return harness__scan_tcp(pid, "tcp6", AF_INET6, inodes, ninodes, out, max, n);
}

int h_listener(pid_t pid, int port, struct h_listener *out)
{
    struct h_listener all[32];
    int n = h_listeners(pid, all, 32);
    for (int i = 0; i < n && i < 32; i++)
        if (all[i].port == port) {
            if (out)
                *out = all[i];
            return 0;
        }
    return -1;
}

unsigned long h_listener_inode(pid_t pid, int port)
{
    struct h_listener l;
    return h_listener(pid, port, &l) == 0 ? l.inode : 0;
}

unsigned long h_wait_listener(pid_t pid, int port, unsigned long not_inode, int timeout_ms)
{
    for (int waited = 0;; waited += 5) {
        unsigned long inode = h_listener_inode(pid, port);
        if (inode && inode != not_inode)
            return inode;
        if (waited >= h_ms(timeout_ms))
            break;
        sleep_ms(5);
    }
    fprintf(stderr, "harness: pid %d does not listen on port %d (not inode %lu) after %d ms\n",
            (int)pid, port, not_inode, h_ms(timeout_ms));
    return 0;
}

int h_wait_no_listener(pid_t pid, int port, int timeout_ms)
{
    for (int waited = 0;; waited += 5) {
        if (!h_listener_inode(pid, port))
            return 0;
        if (waited >= h_ms(timeout_ms))
            break;
        sleep_ms(5);
    }
    fprintf(stderr, "harness: pid %d still listens on port %d after %d ms\n", (int)pid, port,
            h_ms(timeout_ms));
    return -1;
}

/* --- ports ------------------------------------------------------------------------------- */

static struct h_port_choice *harness__port_choice(struct proc *p, const char *component)
{
    for (size_t i = 0; i < sizeof p->ports / sizeof p->ports[0]; i++)
        if (p->ports[i].port > 0 && !strcmp(p->ports[i].component, component))
            return &p->ports[i];
    return NULL;
}

int h_port(struct proc *p, const char *component)
{
    struct h_port_choice *c = harness__port_choice(p, component);
    if (c)
        return c->port;
    for (size_t i = 0; i < sizeof p->ports / sizeof p->ports[0]; i++)
        if (p->ports[i].port == 0) {
            snprintf(p->ports[i].component, sizeof p->ports[i].component, "%s", component);
            p->ports[i].port = h_free_port();
            return p->ports[i].port;
        }
    fail_msg("harness: too many ports chosen for one process");
    return -1;
}

void h_port_forget(struct proc *p, const char *component)
{
    struct h_port_choice *c = harness__port_choice(p, component);
    if (c)
        memset(c, 0, sizeof *c);
}

int h_listening_port(struct proc *p)
{
    if (h_wait_ready(p) != 0)
        return -1;
    struct h_listener l[8];
    int n = h_listeners(p->pid, l, 8);
    if (n == 1)
        return l[0].port;
    fprintf(stderr, "harness: arqonbusd has %d listeners, not one\n", n);
    return -1;
}

int h_component_port(struct proc *p, const char *component)
{
    const struct h_port_choice *c = harness__port_choice(p, component);
    if (!c) {
        int port = h_listening_port(p);
        if (port <= 0)
            fail_msg("no single listener for %s: choose its port with h_port", component);
        return port;
    }
    if (!h_wait_listener(p->pid, c->port, 0, 10000))
        fail_msg("%s does not listen on its port %d", component, c->port);
    return c->port;
}

/* --- JSON lines --------------------------------------------------------------------------- */

json_t *h_jsonl(const char *path)
{
    char *text = h_slurp(path);
    json_t *lines = json_array();
    if (!lines)
        die("json_array");
    for (char *line = text, *end; (end = strchr(line, '\n')); line = end + 1) {
        json_t *j = json_loadb(line, (size_t)(end - line), 0, NULL);
        if (j)
            json_array_append_new(lines, j);
    }
    free(text);
    return lines;
}

/* Does `line` have every member of `pattern` with an equal value (an object in the pattern:
 * at least its members, recursively)? */
static int harness__matches(const json_t *line, const json_t *pattern)
{
    const char *key;
    const json_t *want;
    json_object_foreach((json_t *)pattern, key, want)
    {
        const json_t *have = json_object_get(line, key);
        if (json_is_object(want) && json_is_object(have) ? !harness__matches(have, want)
                                                         : !json_equal(have, want))
            return 0;
    }
    return 1;
}

static json_t *harness__pattern(const char *fmt, va_list ap)
{
    json_error_t e;
    json_t *pattern = json_vpack_ex(&e, 0, fmt, ap);
    if (!pattern)
        fail_msg("harness: bad JSON pattern %s: %s", fmt, e.text);
    return pattern;
}

static int harness__find(const json_t *lines, int from, const json_t *pattern)
{
    for (size_t i = from < 0 ? 0 : (size_t)from; i < json_array_size(lines); i++)
        if (harness__matches(json_array_get(lines, i), pattern))
            return (int)i;
    return -1;
}

static int harness__count(const json_t *lines, const json_t *pattern)
{
    int n = 0;
    for (int i = harness__find(lines, 0, pattern); i >= 0; i = harness__find(lines, i + 1, pattern))
        n++;
    return n;
}

int h_jsonl_find(const json_t *lines, int from, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *pattern = harness__pattern(fmt, ap);
    va_end(ap);
    int i = harness__find(lines, from, pattern);
    json_decref(pattern);
    return i;
}

int h_jsonl_count(const json_t *lines, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *pattern = harness__pattern(fmt, ap);
    va_end(ap);
    int n = harness__count(lines, pattern);
    json_decref(pattern);
    return n;
}

int h_wait_jsonl(const char *path, int n, int timeout_ms, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *pattern = harness__pattern(fmt, ap);
    va_end(ap);
    int found = 0;
    for (int waited = 0;; waited += 10) {
        json_t *lines = h_jsonl(path);
        found = harness__count(lines, pattern);
        json_decref(lines);
        if (found >= n || waited >= h_ms(timeout_ms))
            break;
        sleep_ms(10);
    }
    if (found < n) {
        char *want = json_dumps(pattern, JSON_COMPACT);
        char *text = h_slurp(path);
        fprintf(stderr, "harness: waited %d ms for %d lines like %s in %s; found %d:\n%s\n",
                h_ms(timeout_ms), n, want, path, found, text);
        free(want);
        free(text);
    }
    json_decref(pattern);
    return found >= n ? 0 : -1;
}

void h_make_cert(const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
             "-keyout '%s/key.pem' -out '%s/cert.pem' >/dev/null 2>&1",
             dir, dir);
    if (system(cmd) != 0)
        fail_msg("openssl could not make a certificate in %s", dir);
}

int h_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        die("free port");
    close(fd);
    return ntohs(a.sin_port);
}

json_t *h_recv_json(struct ws_client *c)
{
    char *data = NULL;
    size_t len = 0;
    int op = ws_recv(c, &data, &len, h_ms(5000));
    if (op != WS_OP_TEXT)
        fail_msg("expected a text frame, got %d (%s)", op, ws_error(c));
    json_error_t e;
    json_t *j = json_loadb(data, len, 0, &e);
    if (!j)
        fail_msg("not JSON (%s): %.200s", e.text, data);
    free(data);
    return j;
}

const char *h_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

const char *h_events_probe(const struct fixture *f)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/events.jsonl", f->logs);
    h_write(f->dir, "40-events.yaml",
            "plugins:\n  events:\n    module: %s/probe.so\n    config:\n      state_file: %s\n",
            ARQ_TEST_PLUGIN_DIR, path);
    return path;
}

const char *h_daemon_clock(const struct fixture *f)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/clock.jsonl", f->logs);
    h_write(f->dir, "40-clock.yaml",
            "plugins:\n  clock:\n    module: %s/probe.so\n    config:\n      interval: 10ms\n"
            "      state_file: %s\n",
            ARQ_TEST_PLUGIN_DIR, path);
    return path;
}

void h_wait_daemon_ms(const char *clock, int ms)
{
    /* The last tick recorded is at most 10 ticks (100 ms) old: counting from it, 10 more. */
    assert_int_equal(h_wait_jsonl(clock, 1, 10000, "{s:s}", "event", "tick"), 0);
    json_t *lines = h_jsonl(clock);
    json_int_t last = 0;
    size_t i;
    const json_t *line;
    json_array_foreach(lines, i, line)
    {
        if (!strcmp(h_str(line, "event"), "tick"))
            last = json_integer_value(json_object_get(line, "ticks"));
    }
    json_decref(lines);
    assert_int_equal(h_wait_jsonl(clock, 1, 10000 + ms, "{s:s, s:I}", "event", "tick", "ticks",
                                  last + ms / 10 + 10),
                     0);
}
