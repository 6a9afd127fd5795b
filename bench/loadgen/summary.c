/* `arqonbus-bench summary FILE.jsonl...`: the reports of one or more compare.sh runs side by
 * side, the ArqonBus/Mosquitto ratios per server core, and the targets of docs/benchmarks.md. A
 * figure measured in several runs shows as median [min-max]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"

#define MAX_RECORDS 4096
#define MAX_RUNS    64

struct rec {
    char name[64], label[32];
    char *line;
};

static struct rec recs[MAX_RECORDS];
static int nrecs;

static double jnum(const char *line, const char *key)
{
    char k[96];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(line, k);
    if (!p || strncmp(p + strlen(k), "null", 4) == 0)
        return NAN;
    return strtod(p + strlen(k), NULL);
}

static void jstr(const char *line, const char *key, char *out, size_t size)
{
    char k[96];
    snprintf(k, sizeof k, "\"%s\":\"", key);
    const char *p = strstr(line, k);
    out[0] = '\0';
    if (!p)
        return;
    p += strlen(k);
    size_t n = 0;
    while (p[n] && p[n] != '"' && n + 1 < size)
        n++;
    memcpy(out, p, n);
    out[n] = '\0';
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct stat3 {
    int n;
    double med, min, max;
};

/* Is `r` a run of a scenario named `prefix`... whose name and label were not listed yet? Lists
 * them in `seen` (32 at most). */
static int first_of(const struct rec *r, const char *prefix, char seen[][100], int *nseen)
{
    if (strncmp(r->name, prefix, strlen(prefix)) != 0 || *nseen == 32)
        return 0;
    char key[100];
    snprintf(key, sizeof key, "%.63s|%.31s", r->name, r->label);
    for (int j = 0; j < *nseen; j++)
        if (strcmp(seen[j], key) == 0)
            return 0;
    snprintf(seen[(*nseen)++], 100, "%s", key);
    return 1;
}

static struct stat3 metric(const char *name, const char *label, const char *key)
{
    double v[MAX_RUNS];
    int n = 0;
    for (int i = 0; i < nrecs && n < MAX_RUNS; i++) {
        if (strcmp(recs[i].name, name) != 0 || strcmp(recs[i].label, label) != 0)
            continue;
        double x = jnum(recs[i].line, key);
        if (!isnan(x))
            v[n++] = x;
    }
    struct stat3 s = {n, NAN, NAN, NAN};
    if (!n)
        return s;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    s.min = v[0];
    s.max = v[n - 1];
    return s;
}

/* Error frames plus connections the server closed, over the runs of one scenario and label. */
static struct stat3 errors(const char *name, const char *label)
{
    struct stat3 e = metric(name, label, "error_frames"), cl = metric(name, label, "closed");
    e.med += cl.med;
    e.min += cl.min;
    e.max += cl.max;
    return e;
}

static int has(const char *name, const char *label)
{
    for (int i = 0; i < nrecs; i++)
        if (strcmp(recs[i].name, name) == 0 && strcmp(recs[i].label, label) == 0)
            return 1;
    return 0;
}

/* 1234567 -> "1.23M"; 45678 -> "45.7k"; small values with `dec` decimals. */
static void fmt1(char *out, size_t size, double v, int dec)
{
    if (isnan(v))
        snprintf(out, size, "-");
    else if (fabs(v) >= 1e6)
        snprintf(out, size, "%.2fM", v / 1e6);
    else if (fabs(v) >= 1e4)
        snprintf(out, size, "%.1fk", v / 1e3);
    else
        snprintf(out, size, "%.*f", dec, v);
}

static const char *fmt(struct stat3 s, int dec)
{
    static char ring[16][96];
    static int next;
    char *out = ring[next++ % 16];
    char a[24], b[24], c[24];
    fmt1(a, sizeof a, s.med, dec);
    if (s.n <= 1 || s.min == s.max) {
        snprintf(out, 96, "%s", a);
        return out;
    }
    fmt1(b, sizeof b, s.min, dec);
    fmt1(c, sizeof c, s.max, dec);
    snprintf(out, 96, "%s [%s-%s]", a, b, c);
    return out;
}

/* Latencies: whole microseconds, never abbreviated. */
static const char *fmt_us(struct stat3 s)
{
    static char ring[16][96];
    static int next;
    char *out = ring[next++ % 16];
    if (isnan(s.med))
        snprintf(out, 96, "-");
    else if (s.n <= 1 || s.min == s.max)
        snprintf(out, 96, "%.0f", s.med);
    else
        snprintf(out, 96, "%.0f [%.0f-%.0f]", s.med, s.min, s.max);
    return out;
}

static const char *ratio(struct stat3 a, struct stat3 b)
{
    static char ring[8][32];
    static int next;
    char *out = ring[next++ % 8];
    if (isnan(a.med) || isnan(b.med) || b.med == 0)
        snprintf(out, 32, "-");
    else
        snprintf(out, 32, "%.2f", a.med / b.med);
    return out;
}

static const char *LABELS[] = {"arqonbus", "mosquitto", "relay"};

static void side_by_side(void)
{
    static const char *const names[] = {"fanout-100", "fanout-1000", "fanout-10000", "latency-20k",
                                        "latency-20k-n10"};
    printf("\n## Side by side (median [min-max] over runs)\n\n");
    printf("| scenario | server | deliveries/s | server CPU s | deliveries per server CPU-s | "
           "p50 us | p99 us | p99.9 us | max us | lost | errors | generator cores | steal %% "
           "cpu0/cpu1 |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        for (size_t l = 0; l < 3; l++) {
            const char *n = names[i], *lb = LABELS[l];
            if (!has(n, lb))
                continue;
            struct stat3 err = errors(n, lb);
            printf(
                "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n", n, lb,
                fmt(metric(n, lb, "deliveries_per_s"), 0), fmt(metric(n, lb, "server_cpu_s"), 2),
                fmt(metric(n, lb, "deliveries_per_server_cpu_s"), 0),
                fmt_us(metric(n, lb, "lat_p50_us")), fmt_us(metric(n, lb, "lat_p99_us")),
                fmt_us(metric(n, lb, "lat_p999_us")), fmt_us(metric(n, lb, "lat_max_us")),
                fmt(metric(n, lb, "lost"), 0), fmt(err, 0), fmt(metric(n, lb, "gen_cores_used"), 2),
                fmt(metric(n, lb, "cpu0_steal_pct"), 0), fmt(metric(n, lb, "cpu1_steal_pct"), 0));
        }
    printf("\n## ArqonBus / Mosquitto and ArqonBus / relay, per server core\n\n");
    printf("| scenario | deliveries per server CPU-s: ArqonBus / Mosquitto | ArqonBus / relay | "
           "p50 us ArqonBus / Mosquitto / relay | p99 us | p99.9 us |\n");
    printf("|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *n = names[i];
        if (!has(n, "arqonbus"))
            continue;
        const char *k = "deliveries_per_server_cpu_s";
        printf("| %s | %s | %s |", n, ratio(metric(n, "arqonbus", k), metric(n, "mosquitto", k)),
               ratio(metric(n, "arqonbus", k), metric(n, "relay", k)));
        static const char *const q[] = {"lat_p50_us", "lat_p99_us", "lat_p999_us"};
        for (int j = 0; j < 3; j++)
            printf(" %s / %s / %s |", fmt_us(metric(n, "arqonbus", q[j])),
                   fmt_us(metric(n, "mosquitto", q[j])), fmt_us(metric(n, "relay", q[j])));
        printf("\n");
    }
}

static void arqonbus_alone(void)
{
    static const char *const rooms[] = {"rooms", "history-memory", "history-redis"};
    printf("\n## ArqonBus: rooms of 10, everyone publishing (median [min-max])\n\n");
    printf("| scenario | publishes/s | deliveries/s | server CPU s | deliveries per server CPU-s | "
           "redis CPU s | p50 us | p99 us | lost | errors |\n|---|---|---|---|---|---|---|---|---|"
           "---|\n");
    for (size_t i = 0; i < 3; i++) {
        const char *n = rooms[i];
        if (!has(n, "arqonbus"))
            continue;
        printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n,
               fmt(metric(n, "arqonbus", "publishes_per_s"), 0),
               fmt(metric(n, "arqonbus", "deliveries_per_s"), 0),
               fmt(metric(n, "arqonbus", "server_cpu_s"), 2),
               fmt(metric(n, "arqonbus", "deliveries_per_server_cpu_s"), 0),
               fmt(metric(n, "arqonbus", "aux_cpu_s"), 2),
               fmt_us(metric(n, "arqonbus", "lat_p50_us")),
               fmt_us(metric(n, "arqonbus", "lat_p99_us")), fmt(metric(n, "arqonbus", "lost"), 0),
               fmt(metric(n, "arqonbus", "error_frames"), 0));
    }
    printf("\n## Idle connections (median [min-max])\n\n");
    printf("| scenario | server | connected | server RSS B/conn | TCP mem B/conn (server end) | "
           "RSS + TCP mem B/conn | connections per GiB | socket slabs B/conn (server end) | "
           "with slabs: B/conn | with slabs: connections per GiB |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    char seen[32][100];
    int nseen = 0;
    for (int i = 0; i < nrecs; i++) {
        if (!first_of(&recs[i], "connections", seen, &nseen))
            continue;
        const char *n = recs[i].name, *lb = recs[i].label;
        printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, lb,
               fmt(metric(n, lb, "connected"), 0), fmt(metric(n, lb, "server_rss_per_conn_b"), 0),
               fmt(metric(n, lb, "tcp_mem_per_conn_server_b"), 0),
               fmt(metric(n, lb, "total_per_conn_b"), 0), fmt(metric(n, lb, "conns_per_gib"), 0),
               fmt(metric(n, lb, "socket_slab_per_conn_server_b"), 0),
               fmt(metric(n, lb, "total_with_slab_per_conn_b"), 0),
               fmt(metric(n, lb, "conns_per_gib_with_slab"), 0));
    }
    printf("\n## Commands (median [min-max])\n\n");
    printf("| scenario | server | clients | commands/s | commands per server CPU-s | p50 us | "
           "p99 us | p99.9 us | max us | errors |\n|---|---|---|---|---|---|---|---|---|---|\n");
    nseen = 0;
    for (int i = 0; i < nrecs; i++) {
        if (!first_of(&recs[i], "commands", seen, &nseen))
            continue;
        const char *n = recs[i].name, *lb = recs[i].label;
        printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, lb,
               fmt(metric(n, lb, "connections"), 0), fmt(metric(n, lb, "commands_per_s"), 0),
               fmt(metric(n, lb, "commands_per_server_cpu_s"), 0),
               fmt_us(metric(n, lb, "cmd_p50_us")), fmt_us(metric(n, lb, "cmd_p99_us")),
               fmt_us(metric(n, lb, "cmd_p999_us")), fmt_us(metric(n, lb, "cmd_max_us")),
               fmt(metric(n, lb, "command_errors"), 0));
    }
}

static void target(const char *what, const char *goal, const char *measured, int met)
{
    printf("| %s | %s | %s | %s |\n", what, goal, measured,
           met < 0 ? "not measured"
           : met   ? "met"
                   : "**missed**");
}

/* Deliveries per server CPU-second of ArqonBus against `other`'s in a fan-out run: at least
 * `goal` times. */
static void fanout_target(int n, const char *other, double goal)
{
    char scen[32], what[128], want[32], buf[64];
    snprintf(scen, sizeof scen, "fanout-%d", n);
    struct stat3 a = metric(scen, "arqonbus", "deliveries_per_server_cpu_s");
    struct stat3 o = metric(scen, other, "deliveries_per_server_cpu_s");
    snprintf(what, sizeof what, "fan-out 1->%d, ArqonBus / %s, deliveries per server CPU-s", n,
             strcmp(other, "relay") ? "Mosquitto" : "relay");
    snprintf(want, sizeof want, goal >= 1 ? ">= %.0fx" : ">= %.2f", goal);
    snprintf(buf, sizeof buf, "%s (%s / %s)", ratio(a, o), fmt(a, 0), fmt(o, 0));
    target(what, want, buf, isnan(a.med) || isnan(o.med) ? -1 : a.med >= goal * o.med);
}

/* A latency run: ArqonBus's p99 within twice the relay's, and its p99.9 within 5 ms. */
static void latency_targets(const char *scen, const char *label)
{
    char what[128], buf[96];
    struct stat3 a = metric(scen, "arqonbus", "lat_p99_us");
    struct stat3 r = metric(scen, "relay", "lat_p99_us");
    snprintf(what, sizeof what, "p99 publish -> deliver, %s, against the relay's", label);
    snprintf(buf, sizeof buf, "%s / %s us", fmt_us(a), fmt_us(r));
    target(what, "<= 2x", buf, isnan(a.med) || isnan(r.med) ? -1 : a.med <= 2 * r.med);
    a = metric(scen, "arqonbus", "lat_p999_us");
    snprintf(what, sizeof what, "p99.9 publish -> deliver, %s", label);
    snprintf(buf, sizeof buf, "%s us", fmt_us(a));
    target(what, "<= 5 ms", buf, isnan(a.med) ? -1 : a.med <= 5000);
}

static void targets(void)
{
    printf("\n## Targets (median of runs)\n\n| target | goal | measured | verdict |\n"
           "|---|---|---|---|\n");
    fanout_target(100, "mosquitto", 10);
    fanout_target(100, "relay", 0.5);
    fanout_target(1000, "mosquitto", 10);
    fanout_target(1000, "relay", 0.5);
    fanout_target(10000, "relay", 0.7);
    latency_targets("latency-20k-n10", "1 -> 10 at 20k deliveries/s");
    latency_targets("latency-20k", "1 -> 100 at 20k deliveries/s");
    char buf[64];
    struct stat3 r = metric("rooms", "arqonbus", "publishes_per_s");
    target("rooms of 10, all publishing: publishes/s in", ">= 60k", fmt(r, 0),
           isnan(r.med) ? -1 : r.med >= 60000);
    r = metric("history-redis", "arqonbus", "publishes_per_s");
    target("the same with Redis Streams history", ">= 30k", fmt(r, 0),
           isnan(r.med) ? -1 : r.med >= 30000);
    /* the largest connections run of ArqonBus */
    const char *big = NULL;
    double most = -1;
    for (int i = 0; i < nrecs; i++) {
        double c = jnum(recs[i].line, "connected");
        if (strncmp(recs[i].name, "connections", 11) == 0 &&
            strcmp(recs[i].label, "arqonbus") == 0 && c > most) {
            most = c;
            big = recs[i].name;
        }
    }
    if (big) {
        struct stat3 g = metric(big, "arqonbus", "conns_per_gib");
        struct stat3 u = metric(big, "arqonbus", "server_rss_per_conn_b");
        char w1[128], w2[128];
        snprintf(w1, sizeof w1, "idle connections per GiB (RSS + sockstat TCP mem), %.63s", big);
        snprintf(w2, sizeof w2, "user-space (RSS) per idle connection, %.63s", big);
        target(w1, ">= 250k", fmt(g, 0), isnan(g.med) ? -1 : g.med >= 250000);
        struct stat3 gs = metric(big, "arqonbus", "conns_per_gib_with_slab");
        snprintf(w1, sizeof w1, "the same counting the socket slab objects too, %.63s", big);
        target(w1, ">= 250k", fmt(gs, 0), isnan(gs.med) ? -1 : gs.med >= 250000);
        snprintf(buf, sizeof buf, "%s B", fmt(u, 0));
        target(w2, "<= 3.6 KB (3600 B)", buf, isnan(u.med) ? -1 : u.med <= 3600);
    } else {
        target("idle connections per GiB", ">= 250k", "-", -1);
    }
    static const char *const cmds[] = {"commands-ping", "commands-join"};
    for (int i = 0; i < 2; i++) {
        struct stat3 c = metric(cmds[i], "arqonbus", "cmd_p99_us");
        char w[96];
        snprintf(w, sizeof w, "command round trip p99 (%s)", cmds[i]);
        snprintf(buf, sizeof buf, "%s us", fmt_us(c));
        target(w, "<= 1 ms", buf, isnan(c.med) ? -1 : c.med <= 1000);
    }
}

/* bench/cluster.sh: two nodes joined by broker-redis. The labels say where the clients were:
 * broker-off (one node, no broker), local (broker on, every client on node 1), cross-node
 * (publisher on node 1, subscribers on node 2), broker-on (node 2 up with no subscriber),
 * broker-on-remote (node 2 up with one subscriber of the channel). */
static const char *const CLUSTER_LABELS[] = {"broker-off", "local", "cross-node", "broker-on",
                                             "broker-on-remote"};

static void cluster(void)
{
    static const char *const names[] = {"cluster-latency-10k-n1", "cluster-latency-10k-n10",
                                        "cluster-fanout-1000"};
    printf("\n## Cluster: two nodes joined by broker-redis (median [min-max])\n\n");
    printf("| scenario | clients | deliveries/s | p50 us | p99 us | p99.9 us | max us | lost | "
           "errors | node 1 CPU s | deliveries per node 1 CPU-s | redis CPU s |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        for (size_t l = 0; l < sizeof CLUSTER_LABELS / sizeof *CLUSTER_LABELS; l++) {
            const char *n = names[i], *lb = CLUSTER_LABELS[l];
            if (!has(n, lb))
                continue;
            struct stat3 err = errors(n, lb);
            printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, lb,
                   fmt(metric(n, lb, "deliveries_per_s"), 0), fmt_us(metric(n, lb, "lat_p50_us")),
                   fmt_us(metric(n, lb, "lat_p99_us")), fmt_us(metric(n, lb, "lat_p999_us")),
                   fmt_us(metric(n, lb, "lat_max_us")), fmt(metric(n, lb, "lost"), 0), fmt(err, 0),
                   fmt(metric(n, lb, "server_cpu_s"), 2),
                   fmt(metric(n, lb, "deliveries_per_server_cpu_s"), 0),
                   fmt(metric(n, lb, "aux_cpu_s"), 2));
        }
    printf("\n## Cluster targets (median of runs)\n\n| target | goal | measured | verdict |\n"
           "|---|---|---|---|\n");
    char buf[96];
    static const char *const lat[] = {"cluster-latency-10k-n1", "cluster-latency-10k-n10"};
    static const char *const fan[] = {"1 -> 1 at 10k messages/s", "1 -> 10 at 1k messages/s"};
    for (int i = 0; i < 2; i++) {
        struct stat3 p50 = metric(lat[i], "cross-node", "lat_p50_us");
        struct stat3 p99 = metric(lat[i], "cross-node", "lat_p99_us");
        char w[128];
        snprintf(w, sizeof w, "cross-node p50 publish -> deliver, %s", fan[i]);
        snprintf(buf, sizeof buf, "%s us", fmt_us(p50));
        target(w, "<= 1 ms", buf, isnan(p50.med) ? -1 : p50.med <= 1000);
        snprintf(w, sizeof w, "cross-node p99 publish -> deliver, %s", fan[i]);
        snprintf(buf, sizeof buf, "%s us", fmt_us(p99));
        target(w, "<= 5 ms", buf, isnan(p99.med) ? -1 : p99.med <= 5000);
    }
    const char *k = "deliveries_per_server_cpu_s";
    struct stat3 off = metric("cluster-fanout-1000", "broker-off", k);
    static const char *const on[] = {"broker-on", "broker-on-remote"};
    for (int i = 0; i < 2; i++) {
        struct stat3 with = metric("cluster-fanout-1000", on[i], k);
        char w[128];
        snprintf(w, sizeof w, "fan-out 1->1000 on one node, deliveries per CPU-s, %s / broker-off",
                 on[i]);
        snprintf(buf, sizeof buf, "%s", ratio(with, off));
        target(w, ">= 0.90", buf,
               isnan(with.med) || isnan(off.med) || off.med == 0 ? -1 : with.med >= 0.9 * off.med);
    }
}

int summary_main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: arqonbus-bench summary FILE.jsonl...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "r");
        if (!f) {
            perror(argv[i]);
            return 1;
        }
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0 && nrecs < MAX_RECORDS) {
            if (line[0] != '{')
                continue;
            struct rec *r = &recs[nrecs++];
            jstr(line, "name", r->name, sizeof r->name);
            jstr(line, "label", r->label, sizeof r->label);
            r->line = strdup(line);
        }
        free(line);
        fclose(f);
    }
    printf("%d reports from %d file%s\n", nrecs, argc - 1, argc > 2 ? "s" : "");
    int clustered = 0, single = 0; /* reports of cluster.sh, of compare.sh */
    for (int i = 0; i < nrecs; i++)
        if (strncmp(recs[i].name, "cluster-", 8) == 0)
            clustered = 1;
        else
            single = 1;
    if (single) {
        side_by_side();
        arqonbus_alone();
        targets();
    }
    if (clustered)
        cluster();
    return 0;
}
