#include "harness.h"

#include <setjmp.h>
#include <stddef.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, size, "%s/arqonbus-test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        die("mkdtemp");
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
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            h_rmtree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
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
    p->status = -1;
    p->pid = fork();
    if (p->pid < 0)
        die("fork");
    if (p->pid == 0)
        exec_arqonbusd(all, env, fd);
    close(fd);
}

static int count_in(const char *text, const char *needle)
{
    int n = 0;
    size_t len = strlen(needle);
    for (const char *s = strstr(text, needle); s; s = strstr(s + len, needle))
        n++;
    return n;
}

int h_count(const struct proc *p, const char *needle)
{
    char *text = h_slurp(p->out);
    int n = count_in(text, needle);
    free(text);
    return n;
}

int h_wait_count(const struct proc *p, const char *needle, int n, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        if (h_count(p, needle) >= n)
            return 0;
        if (waited >= h_ms(timeout_ms))
            break;
        sleep_ms(10);
    }
    char *text = h_slurp(p->out);
    fprintf(stderr, "harness: waited %d ms for %d x \"%s\"; output so far:\n%s\n", h_ms(timeout_ms),
            n, needle, text);
    free(text);
    return -1;
}

void h_kill(const struct proc *p, int sig)
{
    if (kill(p->pid, sig) != 0)
        die("kill");
}

int h_wait_exit(struct proc *p, int timeout_ms)
{
    for (int waited = 0;; waited += 10) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            if (p->status != 0) {
                char *text = h_slurp(p->out);
                fprintf(stderr, "harness: arqonbusd exited with %d; output:\n%s\n", p->status,
                        text);
                free(text);
            }
            return p->status;
        }
        if (waited >= h_ms(timeout_ms))
            break;
        sleep_ms(10);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
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
    h_rmtree(f->dir);
    h_rmtree(f->logs);
    free(f);
    return 0;
}

int h_reload(struct fixture *f)
{
    int ok_before = h_count(&f->p, "msg=\"reload ok\"");
    f->reloads++;
    h_kill(&f->p, SIGHUP);
    for (int waited = 0; waited < h_ms(10000); waited += 5) {
        int ok = h_count(&f->p, "msg=\"reload ok\"");
        int failed = h_count(&f->p, "msg=\"reload failed;");
        if (ok + failed >= f->reloads)
            return ok > ok_before;
        sleep_ms(5);
    }
    fprintf(stderr, "harness: no reload verdict after SIGHUP %d\n", f->reloads);
    return -1;
}

int h_stop(struct fixture *f)
{
    h_kill(&f->p, SIGTERM);
    return h_wait_exit(&f->p, 10000);
}

static int harness__port(const struct proc *p, const char *needle, int n)
{
    if (h_wait_count(p, needle, n, h_ms(10000)) != 0)
        return -1;
    char *out = h_slurp(p->out);
    const char *line = out;
    for (int i = 0; i < n; i++)
        line = strstr(i ? line + 1 : line, needle);
    const char *port = strstr(line, " port=");
    int value = port ? atoi(port + 6) : -1;
    free(out);
    return value;
}

int h_listening_port(const struct proc *p, int n)
{
    return harness__port(p, "msg=listening", n);
}

int h_component_port(const struct proc *p, const char *component, int n)
{
    char needle[128];
    snprintf(needle, sizeof needle, "component=%s msg=listening ", component);
    int port = harness__port(p, needle, n);
    if (port <= 0)
        fail_msg("%s did not log its port", component);
    return port;
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
