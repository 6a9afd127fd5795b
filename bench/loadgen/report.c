/* One run's report: a JSON object on one line (flat keys, so that shell tools and the summary
 * read it without a JSON library) and a table for people. */
#include <stdio.h>
#include <string.h>

#include "loadgen.h"

static const char *const SCENARIOS[] = {"fanout", "rooms", "latency", "connections", "commands"};
static const char *const PROTOS[] = {"arqonbus", "mqtt", "raw"};

struct out {
    FILE *f;
    int n;
};

static void kv_str(struct out *o, const char *k, const char *v)
{
    fprintf(o->f, "%s\"%s\":\"", o->n++ ? "," : "{", k);
    for (; *v; v++)
        if (*v == '"' || *v == '\\')
            fprintf(o->f, "\\%c", *v);
        else if ((unsigned char)*v >= 0x20)
            fputc(*v, o->f);
    fputc('"', o->f);
}

static void kv_num(struct out *o, const char *k, double v)
{
    if (v != v) /* NaN: not measured */
        fprintf(o->f, "%s\"%s\":null", o->n++ ? "," : "{", k);
    else
        fprintf(o->f, "%s\"%s\":%.6g", o->n++ ? "," : "{", k, v);
}

static void kv_u64(struct out *o, const char *k, uint64_t v)
{
    fprintf(o->f, "%s\"%s\":%llu", o->n++ ? "," : "{", k, (unsigned long long)v);
}

static void kv_hist(struct out *o, const char *prefix, const struct hist *h)
{
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"p50", .5}, {"p90", .9}, {"p99", .99}, {"p999", .999}, {"max", 1}};
    char k[64];
    snprintf(k, sizeof k, "%s_n", prefix);
    kv_u64(o, k, h->count);
    for (size_t i = 0; i < sizeof qs / sizeof *qs; i++) {
        snprintf(k, sizeof k, "%s_%s_us", prefix, qs[i].name);
        kv_num(o, k, h->count ? (double)hist_quantile(h, qs[i].q) / 1e3 : 0.0 / 0.0);
    }
    snprintf(k, sizeof k, "%s_mean_us", prefix);
    kv_num(o, k, h->count ? (double)h->sum / (double)h->count / 1e3 : 0.0 / 0.0);
}

static double per(double a, double b)
{
    return b > 0 ? a / b : 0.0 / 0.0;
}

/* Derived figures shared by the JSON and the table. */
struct derived {
    double pub_s, deliv_s, per_cpu, pub_per_cpu, cmd_s, cmd_per_cpu, gen_cores, gen_per_cpu;
    double rss_per_conn, tcp_delta_kb, slab_delta_kb, sock_slab_delta_kb;
    double tcp_server, slab_server; /* per connection, the server's end (half of both ends) */
    double total_per_conn, per_gib, total_with_slab, per_gib_with_slab, gen_rss_per_conn;
};

static void derive(const struct lg_report *rep, struct derived *d)
{
    const struct lg_stats *st = &rep->st;
    double cpu = rep->server_cpu_s;
    d->pub_s = per((double)st->publishes_win, rep->wall_s);
    d->deliv_s = per((double)st->deliveries_win, rep->wall_s);
    d->per_cpu = per((double)st->deliveries_win, cpu);
    d->pub_per_cpu = per((double)st->publishes_win, cpu);
    d->cmd_s = per((double)st->commands_win, rep->wall_s);
    d->cmd_per_cpu = per((double)st->commands_win, cpu);
    d->gen_cores = per(rep->gen_cpu_s, rep->wall_s);
    d->gen_per_cpu = per((double)(st->deliveries_win + st->publishes_win + st->commands_win * 2),
                         rep->gen_cpu_s);
    double k = rep->connected ? (double)rep->connected : 0;
    d->rss_per_conn = rep->server_rss_kb >= 0 && rep->server_rss0_kb >= 0
                          ? per((double)(rep->server_rss_kb - rep->server_rss0_kb) * 1024, k)
                          : 0.0 / 0.0;
    d->tcp_delta_kb = (double)(rep->tcp_mem_pages1 - rep->tcp_mem_pages0) * 4;
    d->slab_delta_kb = (double)(rep->slab_kb1 - rep->slab_kb0);
    d->sock_slab_delta_kb = (double)(rep->sock_slab_kb1 - rep->sock_slab_kb0);
    /* On loopback both ends of every connection are on this machine, and they are alike (a
     * TCP socket, a file, an epoll item each): the server's end is taken as half. */
    d->tcp_server = per(d->tcp_delta_kb * 1024, k) / 2;
    d->slab_server = per(d->sock_slab_delta_kb * 1024, k) / 2;
    /* sockstat is machine-wide: other sockets' buffers move it too, sometimes below zero */
    d->total_per_conn = d->rss_per_conn + (d->tcp_server > 0 ? d->tcp_server : 0);
    d->per_gib = per(1024.0 * 1024 * 1024, d->total_per_conn);
    d->total_with_slab = d->total_per_conn + d->slab_server;
    d->per_gib_with_slab = per(1024.0 * 1024 * 1024, d->total_with_slab);
    d->gen_rss_per_conn = per((double)(rep->gen_rss_kb1 - rep->gen_rss_kb0) * 1024, k);
}

static void write_json(FILE *f, const struct lg_report *rep, const struct derived *d)
{
    const struct lg_run *r = rep->run;
    const struct lg_opts *op = &r->o;
    const struct lg_stats *st = &rep->st;
    struct out o = {f, 0};
    char server[128];
    snprintf(server, sizeof server, "%s:%d", op->host, op->port);
    kv_str(&o, "name", op->name);
    kv_str(&o, "label", op->label);
    kv_str(&o, "scenario", SCENARIOS[op->scenario]);
    kv_str(&o, "protocol", PROTOS[op->proto]);
    kv_str(&o, "server", server);
    kv_u64(&o, "threads", (uint64_t)r->nw);
    kv_u64(&o, "connections", r->total);
    kv_u64(&o, "connected", rep->connected);
    kv_num(&o, "setup_s", rep->setup_s);
    kv_u64(&o, "recipients", r->recipients);
    if (op->scenario == SC_FANOUT || op->scenario == SC_LATENCY) {
        kv_u64(&o, "subscribers", (uint64_t)op->subscribers);
        kv_u64(&o, "remote_subscribers", (uint64_t)op->remote_subscribers);
        if (op->remote_subscribers > 0)
            kv_u64(&o, "remote_port", (uint64_t)op->remote_port);
    }
    if (op->scenario == SC_ROOMS)
        kv_u64(&o, "room_size", (uint64_t)op->room_size);
    kv_u64(&o, "payload_bytes", (uint64_t)op->payload_bytes);
    kv_u64(&o, "window", (uint64_t)op->window);
    kv_num(&o, "rate", op->rate);
    kv_num(&o, "warmup_s", op->warmup);
    kv_num(&o, "duration_s", rep->wall_s);
    kv_u64(&o, "publishes", op->scenario == SC_COMMANDS ? 0 : st->publishes_win);
    kv_num(&o, "publishes_per_s", op->scenario == SC_COMMANDS ? 0 : d->pub_s);
    kv_u64(&o, "deliveries", st->deliveries_win);
    kv_num(&o, "deliveries_per_s", d->deliv_s);
    kv_hist(&o, "lat", &rep->lat);
    kv_u64(&o, "error_frames", st->error_frames);
    kv_u64(&o, "refused", st->refused);
    kv_u64(&o, "closed", st->closed);
    kv_u64(&o, "connect_failed", st->connect_failed);
    kv_u64(&o, "setup_failed", st->setup_failed);
    kv_u64(&o, "bad_frames", st->bad_frames);
    kv_u64(&o, "expected", rep->expected_marked);
    kv_u64(&o, "received", st->recv_marked);
    kv_u64(&o, "lost", rep->lost);
    kv_u64(&o, "stalls", st->stalls);
    kv_u64(&o, "window_skips", st->window_skips);
    kv_num(&o, "max_lag_us", (double)st->max_lag_ns / 1e3);
    kv_u64(&o, "server_pid", (uint64_t)op->server_pid);
    kv_num(&o, "server_cpu_s", op->server_pid ? rep->server_cpu_s : 0.0 / 0.0);
    kv_num(&o, "server_cpu_util", op->server_pid ? per(rep->server_cpu_s, rep->wall_s) : 0.0 / 0.0);
    kv_num(&o, "server_rss_kb", op->server_pid ? (double)rep->server_rss_kb : 0.0 / 0.0);
    kv_num(&o, "deliveries_per_server_cpu_s", op->server_pid ? d->per_cpu : 0.0 / 0.0);
    kv_num(&o, "publishes_per_server_cpu_s", op->server_pid ? d->pub_per_cpu : 0.0 / 0.0);
    kv_num(&o, "aux_cpu_s", op->aux_pid ? rep->aux_cpu_s : 0.0 / 0.0);
    kv_num(&o, "gen_cpu_s", rep->gen_cpu_s);
    kv_num(&o, "gen_cores_used", d->gen_cores);
    kv_u64(&o, "gen_frames_in", st->frames_in);
    kv_u64(&o, "gen_frames_out", st->frames_out);
    kv_u64(&o, "gen_bytes_in", st->bytes_in);
    kv_u64(&o, "gen_bytes_out", st->bytes_out);
    kv_num(&o, "gen_frames_per_cpu_s", d->gen_per_cpu);
    if (op->scenario == SC_COMMANDS) {
        kv_str(&o, "command", op->command == CMD_PING ? "ping" : "join_channel");
        kv_u64(&o, "commands", st->commands_win);
        kv_num(&o, "commands_per_s", d->cmd_s);
        kv_num(&o, "commands_per_server_cpu_s", op->server_pid ? d->cmd_per_cpu : 0.0 / 0.0);
        kv_u64(&o, "command_errors", st->command_errors);
        kv_hist(&o, "cmd", &rep->cmd[0]);
        if (op->command == CMD_JOIN)
            kv_hist(&o, "leave", &rep->cmd[1]);
    }
    if (op->acks)
        kv_hist(&o, "ack", &rep->ack);
    for (int i = 0; i < rep->ncpus; i++) {
        const struct cpu_times *a = &rep->cpu0[i], *b = &rep->cpu1[i];
        double busy = (double)(b->busy - a->busy), idle = (double)(b->idle - a->idle),
               steal = (double)(b->steal - a->steal), all = busy + idle + steal;
        char k[32];
        snprintf(k, sizeof k, "cpu%d_busy_pct", i);
        kv_num(&o, k, 100 * per(busy, all));
        snprintf(k, sizeof k, "cpu%d_steal_pct", i);
        kv_num(&o, k, 100 * per(steal, all));
        snprintf(k, sizeof k, "cpu%d_idle_pct", i);
        kv_num(&o, k, 100 * per(idle, all));
    }
    if (op->scenario == SC_CONNECTIONS) {
        kv_num(&o, "server_rss0_kb", (double)rep->server_rss0_kb);
        kv_num(&o, "server_rss_per_conn_b", d->rss_per_conn);
        kv_num(&o, "tcp_mem_delta_kb", d->tcp_delta_kb);
        kv_num(&o, "socket_slab_delta_kb", d->sock_slab_delta_kb);
        kv_num(&o, "slab_delta_kb", d->slab_delta_kb);
        kv_num(&o, "tcp_mem_per_conn_server_b", d->tcp_server);
        kv_num(&o, "socket_slab_per_conn_server_b", d->slab_server);
        kv_num(&o, "total_per_conn_b", d->total_per_conn);
        kv_num(&o, "conns_per_gib", d->per_gib);
        kv_num(&o, "total_with_slab_per_conn_b", d->total_with_slab);
        kv_num(&o, "conns_per_gib_with_slab", d->per_gib_with_slab);
        kv_num(&o, "gen_rss_per_conn_b", d->gen_rss_per_conn);
    }
    fprintf(f, "}\n");
}

static void line_hist(FILE *f, const char *what, const struct hist *h)
{
    if (!h->count) {
        fprintf(f, "  %-18s none\n", what);
        return;
    }
    fprintf(f, "  %-18s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (n=%llu)\n", what,
            (double)hist_quantile(h, .5) / 1e3, (double)hist_quantile(h, .9) / 1e3,
            (double)hist_quantile(h, .99) / 1e3, (double)hist_quantile(h, .999) / 1e3,
            (double)h->max / 1e3, (unsigned long long)h->count);
}

static void write_table(FILE *f, const struct lg_report *rep, const struct derived *d)
{
    const struct lg_run *r = rep->run;
    const struct lg_opts *op = &r->o;
    const struct lg_stats *st = &rep->st;
    fprintf(f, "== %s [%s] %s over %s, %u connections (%u ready, set up in %.2f s), %d thread%s\n",
            op->name, *op->label ? op->label : "-", SCENARIOS[op->scenario], PROTOS[op->proto],
            r->total, rep->connected, rep->setup_s, r->nw, r->nw > 1 ? "s" : "");
    if (op->remote_subscribers > 0)
        fprintf(f, "  publisher on port %d, %d of the %d subscribers on port %d\n", op->port,
                op->remote_subscribers, op->subscribers, op->remote_port);
    fprintf(f, "  measured %.2f s after %.1f s warm-up; payload %d B; ", rep->wall_s, op->warmup,
            op->payload_bytes);
    if (op->rate > 0)
        fprintf(f, "rate %.1f/s per %s\n", op->rate,
                op->scenario == SC_COMMANDS ? "client" : "publisher");
    else
        fprintf(f, "window %d messages per publisher\n", op->window);
    if (op->scenario == SC_COMMANDS) {
        fprintf(f, "  %-18s %.0f/s (%s), errors %llu\n", "commands", d->cmd_s,
                op->command == CMD_PING ? "ping" : "join_channel/leave_channel",
                (unsigned long long)st->command_errors);
        line_hist(f, op->command == CMD_PING ? "round trip us" : "join us", &rep->cmd[0]);
        if (op->command == CMD_JOIN)
            line_hist(f, "leave us", &rep->cmd[1]);
    } else if (op->scenario != SC_CONNECTIONS) {
        fprintf(f, "  %-18s %.0f/s    deliveries %.0f/s (%u per publish)\n", "publishes", d->pub_s,
                d->deliv_s, r->recipients);
        line_hist(f, "latency us", &rep->lat);
        if (op->acks)
            line_hist(f, "ack us", &rep->ack);
    }
    if (op->server_pid) {
        fprintf(f, "  %-18s pid %d: %.2f CPU s (%.0f%% of a core), RSS %.1f MiB", "server",
                (int)op->server_pid, rep->server_cpu_s, 100 * per(rep->server_cpu_s, rep->wall_s),
                (double)rep->server_rss_kb / 1024);
        if (op->scenario == SC_COMMANDS)
            fprintf(f, ", %.0f commands per CPU-s\n", d->cmd_per_cpu);
        else if (op->scenario != SC_CONNECTIONS)
            fprintf(f, ", %.0f deliveries per CPU-s\n", d->per_cpu);
        else
            fprintf(f, "\n");
    }
    if (op->aux_pid)
        fprintf(f, "  %-18s pid %d: %.2f CPU s\n", "aux process", (int)op->aux_pid, rep->aux_cpu_s);
    fprintf(f, "  %-18s %.2f CPU s = %.2f cores (%d worker thread%s), %.0f frames per CPU-s\n",
            "generator", rep->gen_cpu_s, d->gen_cores, r->nw, r->nw > 1 ? "s" : "", d->gen_per_cpu);
    if (op->scenario == SC_CONNECTIONS) {
        fprintf(f,
                "  %-18s server RSS %+.0f B; TCP mem (sockstat) %+.0f KiB in all = %.0f B at "
                "the server end\n",
                "per connection", d->rss_per_conn, d->tcp_delta_kb, d->tcp_server);
        fprintf(f, "  %-18s %.0f B (RSS + TCP mem) -> %.0f connections per GiB\n", "server total",
                d->total_per_conn, d->per_gib);
        fprintf(f,
                "  %-18s socket slabs %+.0f KiB in all (all slab %+.0f KiB) = %.0f B at the server "
                "end -> %.0f B, %.0f connections per GiB\n",
                "with socket slabs", d->sock_slab_delta_kb, d->slab_delta_kb, d->slab_server,
                d->total_with_slab, d->per_gib_with_slab);
        fprintf(f, "  %-18s RSS %.0f B per connection\n", "generator", d->gen_rss_per_conn);
    }
    if (rep->ncpus) {
        fprintf(f, "  %-18s", "machine");
        for (int i = 0; i < rep->ncpus; i++) {
            const struct cpu_times *a = &rep->cpu0[i], *b = &rep->cpu1[i];
            double busy = (double)(b->busy - a->busy), idle = (double)(b->idle - a->idle),
                   steal = (double)(b->steal - a->steal), all = busy + idle + steal;
            fprintf(f, "%s cpu%d busy %.0f%% steal %.0f%% idle %.0f%%", i ? ";" : "", i,
                    100 * per(busy, all), 100 * per(steal, all), 100 * per(idle, all));
        }
        fprintf(f, " (all processes)\n");
    }
    fprintf(f,
            "  %-18s error frames %llu, refused %llu, closed %llu, connect failed %llu, setup "
            "failed %llu, lost %llu of %llu",
            "errors", (unsigned long long)st->error_frames, (unsigned long long)st->refused,
            (unsigned long long)st->closed, (unsigned long long)st->connect_failed,
            (unsigned long long)st->setup_failed, (unsigned long long)rep->lost,
            (unsigned long long)rep->expected_marked);
    if (st->stalls)
        fprintf(f, ", stalls %llu", (unsigned long long)st->stalls);
    if (st->window_skips)
        fprintf(f, ", skipped (window full) %llu", (unsigned long long)st->window_skips);
    if (st->recv_marked > rep->expected_marked)
        fprintf(f, ", unexpected extra deliveries %llu",
                (unsigned long long)(st->recv_marked - rep->expected_marked));
    if (st->bad_frames)
        fprintf(f, ", unreadable %llu", (unsigned long long)st->bad_frames);
    if (op->rate > 0)
        fprintf(f, ", schedule lag max %.1f ms", (double)st->max_lag_ns / 1e6);
    fprintf(f, "\n");
}

void report_write(const struct lg_report *rep)
{
    struct derived d;
    derive(rep, &d);
    const char *json = rep->run->o.json;
    int json_stdout = json && strcmp(json, "-") == 0;
    write_table(json_stdout ? stderr : stdout, rep, &d);
    fflush(stdout);
    if (!json)
        return;
    FILE *f = json_stdout ? stdout : fopen(json, "a");
    if (!f) {
        perror(json);
        return;
    }
    write_json(f, rep, &d);
    if (f != stdout)
        fclose(f);
    else
        fflush(f);
}
