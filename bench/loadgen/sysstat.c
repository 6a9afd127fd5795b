/* What the reports read from /proc, and the descriptor limit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "loadgen.h"

double proc_cpu_seconds(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long utime = 0, stime = 0;
    /* after ")": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
     * utime stime */
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static long field_kb(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    size_t klen = strlen(key);
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0) {
            v = strtol(line + klen, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

long proc_rss_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    return field_kb(path, "VmRSS:");
}

long meminfo_slab_kb(void)
{
    return field_kb("/proc/meminfo", "Slab:");
}

long sockstat_tcp_mem_pages(void)
{
    FILE *f = fopen("/proc/net/sockstat", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p;
        if (strncmp(line, "TCP:", 4) == 0 && (p = strstr(line, " mem ")) != NULL) {
            v = strtol(p + 5, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

long raise_nofile(long want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if ((rlim_t)want > rl.rlim_max) { /* only with CAP_SYS_RESOURCE */
        struct rlimit up = {(rlim_t)want, (rlim_t)want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return want;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur;
}

double self_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Bytes held by the slab caches a TCP socket and its descriptor live in (both the socket and
 * the epoll item), from /proc/slabinfo; the rest of the slab moves with whatever else runs. */
long slab_socket_kb(void)
{
    static const char *const caches[] = {
        "TCP",           "TCPv6",         "sock_inode_cache", "dentry",         "filp",
        "eventpoll_epi", "eventpoll_pwq", "ep_head",          "lsm_file_cache", "lsm_inode_cache"};
    FILE *f = fopen("/proc/slabinfo", "r");
    if (!f)
        return -1;
    char line[512], name[64];
    unsigned long active, num, size;
    unsigned long long total = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%63s %lu %lu %lu", name, &active, &num, &size) != 4)
            continue;
        for (size_t i = 0; i < sizeof caches / sizeof *caches; i++)
            if (strcmp(name, caches[i]) == 0)
                total += (unsigned long long)num * size;
    }
    fclose(f);
    return (long)(total / 1024);
}

/* Per-CPU jiffies from /proc/stat: busy (user, nice, system, irq, softirq), idle (with
 * iowait) and steal (time the hypervisor gave to someone else). Returns the CPUs read. */
int proc_stat_cpus(struct cpu_times *t, int max)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    char line[512];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        unsigned long long v[8] = {0};
        int id;
        if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9')
            continue;
        if (sscanf(line + 3, "%d %llu %llu %llu %llu %llu %llu %llu %llu", &id, &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]) < 9)
            continue;
        t[n].busy = v[0] + v[1] + v[2] + v[5] + v[6];
        t[n].idle = v[3] + v[4];
        t[n].steal = v[7];
        n++;
    }
    fclose(f);
    return n;
}
