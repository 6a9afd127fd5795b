#include "haproxy.h"
#include "scratch_dir.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void haproxy__sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int haproxy__accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void haproxy__print_output(const struct haproxy *hp)
{
    char path[300];
    snprintf(path, sizeof path, "%s/haproxy.out", hp->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f))
        fprintf(stderr, "haproxy: %s", line);
    fclose(f);
}

/* Reap it if it exited: 1 when gone, 0 while it runs. */
static int haproxy__reaped(struct haproxy *hp)
{
    int status;
    pid_t r = waitpid(hp->pid, &status, WNOHANG);
    if (r == hp->pid || (r < 0 && errno == ECHILD)) {
        hp->pid = 0;
        return 1;
    }
    return 0;
}

static int haproxy__write_config(struct haproxy *hp, const char *config)
{
    char path[300];
    snprintf(path, sizeof path, "%s/haproxy.cfg", hp->dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror("haproxy: haproxy.cfg");
        return -1;
    }
    int ok = fputs(config, f) >= 0;
    if (fclose(f) != 0 || !ok) {
        perror("haproxy: haproxy.cfg");
        return -1;
    }
    return 0;
}

static void haproxy__exec(const struct haproxy *hp)
{
    char cfg[300], out[300];
    snprintf(cfg, sizeof cfg, "%s/haproxy.cfg", hp->dir);
    snprintf(out, sizeof out, "%s/haproxy.out", hp->dir);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
    int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    char *const argv[] = {"haproxy", "-db", "-f", cfg, NULL};
    execvp("haproxy", argv);
    /* Debian installs it in /usr/sbin, which an unprivileged PATH may lack. */
    execv("/usr/sbin/haproxy", argv);
    perror("haproxy: exec haproxy");
    _exit(127);
}

int haproxy_start(struct haproxy *hp, int port, const char *config)
{
    memset(hp, 0, sizeof *hp);
    hp->port = port;
    if (scratch_dir_make(hp->dir, sizeof hp->dir, "arq_haproxy_", "haproxy") != 0)
        return -1;
    if (haproxy__write_config(hp, config) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        perror("haproxy: fork");
        return -1;
    }
    if (pid == 0)
        haproxy__exec(hp);
    hp->pid = pid;
    for (int waited = 0; waited < 10000; waited += 20) {
        if (haproxy__accepts(port))
            return 0;
        if (haproxy__reaped(hp)) {
            fprintf(stderr, "haproxy: exited before listening on 127.0.0.1:%d\n", port);
            haproxy__print_output(hp);
            return -1;
        }
        haproxy__sleep_ms(20);
    }
    fprintf(stderr, "haproxy: does not accept on 127.0.0.1:%d\n", port);
    haproxy__print_output(hp);
    haproxy_stop(hp);
    return -1;
}

void haproxy_stop(struct haproxy *hp)
{
    if (hp->pid <= 0)
        return;
    kill(hp->pid, SIGTERM);
    for (int waited = 0; waited < 5000; waited += 10) {
        if (haproxy__reaped(hp))
            return;
        haproxy__sleep_ms(10);
    }
    kill(hp->pid, SIGKILL);
    waitpid(hp->pid, NULL, 0);
    hp->pid = 0;
}

void haproxy_cleanup(struct haproxy *hp)
{
    haproxy_stop(hp);
    scratch_dir_remove(hp->dir);
    hp->dir[0] = '\0';
}
