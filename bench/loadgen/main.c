/* arqonbus-bench: load generator for ArqonBus, Mosquitto (MQTT over WebSocket) and a plain
 * relay, on the same scenarios; see usage() and docs/benchmarks.md. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loadgen.h"

#define DRAIN_QUIET_NS 3000000000ull  /* drain ends after this long without a delivery... */
#define DRAIN_MAX_NS   30000000000ull /* ...or after this long in all */

static void usage(FILE *f)
{
    fprintf(f, "usage: arqonbus-bench SCENARIO [options]\n"
               "       arqonbus-bench relay [--host A] [--port P]\n"
               "       arqonbus-bench summary FILE.jsonl...\n"
               "       arqonbus-bench free-port | selftest\n"
               "scenarios:\n"
               "  fanout       1 publisher -> --subscribers N in one channel\n"
               "  latency      fanout at a fixed rate: --target deliveries/s (default 20000)\n"
               "  rooms        --clients M in rooms of --room-size, every one publishing\n"
               "  connections  --clients K idle connections; server RSS and kernel socket memory\n"
               "  commands     --clients K each running --command ping|join round trips\n"
               "options:\n"
               "  --protocol arqonbus|mqtt|raw   (raw: the relay)     [arqonbus]\n"
               "  --host A --port P              the server           [127.0.0.1 9100]\n"
               "  --subscribers N                fanout, latency      [100]\n"
               "  --remote-subscribers K --remote-port P  fanout, latency: the last K of the\n"
               "                  subscribers connect to P (another node of a cluster)  [0]\n"
               "  --clients N                    rooms 1000, connections 10000, commands 100\n"
               "  --room-size N                                       [10]\n"
               "  --rate R        per publisher (per client for commands) msg/s; 0: as fast as\n"
               "                  the window allows                    [0]\n"
               "  --target D      latency: deliveries/s; sets --rate to D/subscribers [20000]\n"
               "  --window W      messages in flight per publisher    [fanout 100, rooms 8]\n"
               "  --payload-bytes B  size of the JSON payload object  [128]\n"
               "  --warmup S --duration S                             [2 5]\n"
               "  --threads T     worker threads, one epoll each      [1]\n"
               "  --connect-parallel N  handshakes at once per thread  [256]\n"
               "  --setup-timeout S                                   [120]\n"
               "  --command ping|join  (join alternates join_channel and leave_channel) [ping]\n"
               "  --acks          arqonbus publishers ask for acks; ack latency is reported\n"
               "  --idle-join     connections: each client joins a channel too\n"
               "  --keepalive S   mqtt keepalive                      [60]\n"
               "  --server-pid P  server process: CPU seconds and RSS in the report\n"
               "  --aux-pid P     another process whose CPU is reported (e.g. redis-server)\n"
               "  --json FILE     append the report as one JSON line ('-': stdout)\n"
               "  --name N --label L   run and server names in the report\n");
}

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "arqonbus-bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(2);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double num(const char *s, const char *opt)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < 0)
        die("bad value for %s", opt);
    return v;
}

static void parse(int argc, char **argv, struct lg_opts *o)
{
    static const char *const scen[] = {"fanout", "rooms", "latency", "connections", "commands"};
    int found = 0;
    for (int i = 0; i < 5; i++)
        if (strcmp(argv[1], scen[i]) == 0) {
            o->scenario = (enum lg_scenario)i;
            found = 1;
        }
    if (!found)
        die("unknown scenario %s (try --help)", argv[1]);
    *o = (struct lg_opts){.scenario = o->scenario,
                          .proto = PROTO_ARQONBUS,
                          .host = "127.0.0.1",
                          .port = 9100,
                          .subscribers = 100,
                          .room_size = 10,
                          .payload_bytes = 128,
                          .threads = 1,
                          .connect_parallel = 256,
                          .target = 20000,
                          .warmup = 2,
                          .duration = 5,
                          .setup_timeout = 120,
                          .keepalive_s = 60,
                          .name = argv[1],
                          .label = ""};
    o->clients = o->scenario == SC_ROOMS ? 1000 : o->scenario == SC_CONNECTIONS ? 10000 : 100;
    o->window = o->scenario == SC_ROOMS ? 8 : 100;
    static const struct option opts[] = {
        {"protocol", 1, 0, 'P'},      {"host", 1, 0, 'h'},
        {"port", 1, 0, 'p'},          {"subscribers", 1, 0, 'n'},
        {"clients", 1, 0, 'c'},       {"room-size", 1, 0, 'z'},
        {"rate", 1, 0, 'r'},          {"target", 1, 0, 'T'},
        {"window", 1, 0, 'W'},        {"payload-bytes", 1, 0, 'b'},
        {"warmup", 1, 0, 'w'},        {"duration", 1, 0, 'd'},
        {"threads", 1, 0, 't'},       {"connect-parallel", 1, 0, 'C'},
        {"setup-timeout", 1, 0, 'S'}, {"command", 1, 0, 'm'},
        {"acks", 0, 0, 'a'},          {"idle-join", 0, 0, 'j'},
        {"keepalive", 1, 0, 'k'},     {"server-pid", 1, 0, 's'},
        {"aux-pid", 1, 0, 'x'},       {"json", 1, 0, 'J'},
        {"name", 1, 0, 'N'},          {"label", 1, 0, 'L'},
        {"remote-port", 1, 0, 'R'},   {"remote-subscribers", 1, 0, 'K'},
        {"help", 0, 0, 'H'},          {0, 0, 0, 0}};
    int ch, rate_set = 0, window_set = 0;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'P':
            if (strcmp(optarg, "arqonbus") == 0)
                o->proto = PROTO_ARQONBUS;
            else if (strcmp(optarg, "mqtt") == 0)
                o->proto = PROTO_MQTT;
            else if (strcmp(optarg, "raw") == 0)
                o->proto = PROTO_RAW;
            else
                die("unknown protocol %s", optarg);
            break;
        case 'h':
            o->host = optarg;
            break;
        case 'p':
            o->port = (int)num(optarg, "--port");
            break;
        case 'n':
            o->subscribers = (int)num(optarg, "--subscribers");
            break;
        case 'R':
            o->remote_port = (int)num(optarg, "--remote-port");
            break;
        case 'K':
            o->remote_subscribers = (int)num(optarg, "--remote-subscribers");
            break;
        case 'c':
            o->clients = (int)num(optarg, "--clients");
            break;
        case 'z':
            o->room_size = (int)num(optarg, "--room-size");
            break;
        case 'r':
            o->rate = num(optarg, "--rate");
            rate_set = 1;
            break;
        case 'T':
            o->target = num(optarg, "--target");
            break;
        case 'W':
            o->window = (int)num(optarg, "--window");
            window_set = 1;
            break;
        case 'b':
            o->payload_bytes = (int)num(optarg, "--payload-bytes");
            break;
        case 'w':
            o->warmup = num(optarg, "--warmup");
            break;
        case 'd':
            o->duration = num(optarg, "--duration");
            break;
        case 't':
            o->threads = (int)num(optarg, "--threads");
            break;
        case 'C':
            o->connect_parallel = (int)num(optarg, "--connect-parallel");
            break;
        case 'S':
            o->setup_timeout = num(optarg, "--setup-timeout");
            break;
        case 'm':
            if (strcmp(optarg, "ping") == 0)
                o->command = CMD_PING;
            else if (strcmp(optarg, "join") == 0 || strcmp(optarg, "join_channel") == 0)
                o->command = CMD_JOIN;
            else
                die("unknown command %s", optarg);
            break;
        case 'a':
            o->acks = 1;
            break;
        case 'j':
            o->idle_join = 1;
            break;
        case 'k':
            o->keepalive_s = (int)num(optarg, "--keepalive");
            break;
        case 's':
            o->server_pid = (pid_t)num(optarg, "--server-pid");
            break;
        case 'x':
            o->aux_pid = (pid_t)num(optarg, "--aux-pid");
            break;
        case 'J':
            o->json = optarg;
            break;
        case 'N':
            o->name = optarg;
            break;
        case 'L':
            o->label = optarg;
            break;
        case 'H':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc)
        die("unexpected argument %s", argv[optind]);
    if (o->scenario == SC_LATENCY && !rate_set)
        o->rate = o->target / (o->subscribers > 0 ? o->subscribers : 1);
    if (o->rate > 0 && !window_set)
        o->window = 1000000; /* the schedule sets the pace; the window only guards */
    if (o->subscribers < 1 || o->clients < 1 || o->room_size < 2 || o->window < 1 ||
        o->threads < 1 || o->threads > 64 || o->connect_parallel < 1 || o->duration <= 0)
        die("%s", "option out of range (--help)");
    if (o->remote_subscribers > 0 &&
        (o->remote_port < 1 || o->remote_subscribers > o->subscribers ||
         (o->scenario != SC_FANOUT && o->scenario != SC_LATENCY)))
        die("%s", "--remote-subscribers needs --remote-port, fanout or latency, and at most "
                  "--subscribers");
    if (o->payload_bytes < 0 || o->payload_bytes > 60000)
        die("%s", "--payload-bytes must be 0..60000");
    if (o->proto == PROTO_RAW && o->scenario == SC_COMMANDS)
        die("%s", "the raw protocol (relay) has no commands");
    if (o->proto == PROTO_ARQONBUS && o->keepalive_s > 65535)
        o->keepalive_s = 65535;
}

/* `arqonbus-bench selftest`: the histogram's quantiles within 1% of the exact ones, and the
 * relay's Sec-WebSocket-Accept on the example of RFC 6455 section 1.3. */
static int selftest(void)
{
    static struct hist h;
    static uint64_t v[200000];
    uint64_t x = 88172645463325252ull;
    int bad = 0;
    hist_init(&h);
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) { /* log-uniform, 1 ns .. ~1 s */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = (uint64_t)exp((double)(x % 1000000) / 1000000.0 * 20.7);
        hist_add(&h, v[i]);
    }
    qsort(v, sizeof v / sizeof *v, sizeof *v, cmp_u64);
    static const double qs[] = {0.5, 0.9, 0.99, 0.999, 1.0};
    for (size_t i = 0; i < sizeof qs / sizeof *qs; i++) {
        size_t rank = (size_t)ceil(qs[i] * (double)(sizeof v / sizeof *v));
        uint64_t exact = v[rank - 1], got = hist_quantile(&h, qs[i]);
        double err = exact ? fabs((double)got - (double)exact) / (double)exact : (double)got;
        printf("q%-6g exact %llu histogram %llu error %.3f%%\n", qs[i], (unsigned long long)exact,
               (unsigned long long)got, err * 100);
        bad |= err > 0.01;
    }
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    uint8_t dig[20];
    char acc[32];
    ws_sha1(key, sizeof key - 1, dig);
    ws_base64(dig, 20, acc);
    printf("Sec-WebSocket-Accept %s\n", acc);
    bad |= strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != 0;
    printf("selftest: %s\n", bad ? "FAILED" : "ok");
    return bad;
}

static void sleep_until(uint64_t t)
{
    uint64_t now = now_ns();
    if (t <= now)
        return;
    struct timespec ts = {(time_t)((t - now) / 1000000000ull), (long)((t - now) % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void sleep_ms(int ms)
{
    sleep_until(now_ns() + (uint64_t)ms * 1000000ull);
}

static void setup_run(struct lg_run *r)
{
    const struct lg_opts *o = &r->o;
    uint32_t per_group = 0;
    switch (o->scenario) {
    case SC_FANOUT:
    case SC_LATENCY:
        r->total = (uint32_t)o->subscribers + 1;
        r->recipients = (uint32_t)o->subscribers;
        break;
    case SC_ROOMS:
        per_group = (uint32_t)o->room_size;
        r->total = ((uint32_t)o->clients + per_group - 1) / per_group * per_group;
        r->recipients = per_group - (o->proto == PROTO_MQTT ? 0 : 1); /* MQTT echoes to self */
        break;
    case SC_CONNECTIONS:
    case SC_COMMANDS:
        r->total = (uint32_t)o->clients;
        r->recipients = 1;
        break;
    }
    double wd = (double)o->window * r->recipients;
    r->window_deliv = wd > INT32_MAX / 2 ? INT32_MAX / 2 : (int32_t)wd;

    /* Slices: whole rooms per worker, so that a publisher and its room share a thread. */
    r->nw = o->threads;
    if ((uint32_t)r->nw > r->total)
        r->nw = (int)r->total;
    r->w = calloc((size_t)r->nw, sizeof *r->w);
    uint32_t unit = per_group ? per_group : 1, units = r->total / unit;
    uint32_t first = 0;
    for (int i = 0; i < r->nw; i++) {
        struct lg_worker *w = &r->w[i];
        uint32_t n = (units / (uint32_t)r->nw + ((uint32_t)i < units % (uint32_t)r->nw)) * unit;
        w->idx = i;
        w->run = r;
        w->first_id = first;
        w->n = n;
        w->conns = calloc(n ? n : 1, sizeof *w->conns);
        w->dirty = calloc(n ? n : 1, sizeof *w->dirty);
        w->pubq = calloc(n ? n : 1, sizeof *w->pubq);
        w->pubs = calloc(n ? n : 1, sizeof *w->pubs);
        w->prng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)getpid() << 20) ^ (uint64_t)(i + 1);
        if (!w->conns || !w->dirty || !w->pubq || !w->pubs)
            die("%s", "out of memory");
        hist_init(&w->lat);
        hist_init(&w->ack);
        hist_init(&w->cmd[0]);
        hist_init(&w->cmd[1]);
        for (uint32_t k = 0; k < n; k++) {
            struct lg_conn *c = &w->conns[k];
            c->fd = -1;
            c->id = first + k;
            c->group = per_group ? c->id / per_group : 0;
            switch (o->scenario) {
            case SC_FANOUT:
            case SC_LATENCY:
                c->role = c->id == 0 ? ROLE_PUB : ROLE_SUB;
                break;
            case SC_ROOMS:
                c->role = ROLE_PUB | ROLE_SUB;
                break;
            case SC_COMMANDS:
                c->role = ROLE_CMD;
                break;
            case SC_CONNECTIONS:
                c->role = 0;
                break;
            }
        }
        first += n;
    }
}

static void stop_workers(struct lg_run *r)
{
    atomic_store(&r->phase, PH_STOP);
    for (int i = 0; i < r->nw; i++)
        pthread_join(r->w[i].thread, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(argv[1], "relay") == 0)
        return relay_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "summary") == 0)
        return summary_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "free-port") == 0)
        return relay_main(-1, NULL);
    if (strcmp(argv[1], "selftest") == 0)
        return selftest();

    static struct lg_run run;
    struct lg_run *r = &run;
    parse(argc, argv, &r->o);
    setup_run(r);
    long fds = raise_nofile((long)r->total + 64);
    if (fds < (long)r->total + 16)
        fprintf(stderr,
                "arqonbus-bench: only %ld file descriptors allowed (hard limit, and no "
                "CAP_SYS_RESOURCE): %u connections will not all open\n",
                fds, r->total);

    static struct lg_report rep;
    rep.run = r;
    const pid_t sp = r->o.server_pid;
    rep.tcp_mem_pages0 = sockstat_tcp_mem_pages();
    rep.slab_kb0 = meminfo_slab_kb();
    rep.sock_slab_kb0 = slab_socket_kb();
    rep.server_rss0_kb = sp ? proc_rss_kb(sp) : -1;
    rep.gen_rss_kb0 = proc_rss_kb(getpid());

    const uint64_t t_setup = now_ns();
    for (int i = 0; i < r->nw; i++)
        if (pthread_create(&r->w[i].thread, NULL, worker_main, &r->w[i]) != 0)
            die("%s", "pthread_create failed");
    while (atomic_load(&r->done) < r->total) {
        if (now_ns() - t_setup > (uint64_t)(r->o.setup_timeout * 1e9)) {
            fprintf(stderr, "arqonbus-bench: setup timed out: %u of %u connections ready\n",
                    atomic_load(&r->ready), r->total);
            break;
        }
        sleep_ms(5);
    }
    rep.setup_s = (double)(now_ns() - t_setup) / 1e9;
    rep.connected = atomic_load(&r->ready);
    if (rep.connected < r->total && r->o.scenario != SC_CONNECTIONS) {
        stop_workers(r);
        fprintf(stderr, "arqonbus-bench: %s: only %u of %u clients got ready; no run\n", r->o.name,
                rep.connected, r->total);
        return 1;
    }

    /* warm-up, then the measured window */
    atomic_store(&r->phase, PH_WARMUP);
    sleep_until(now_ns() + (uint64_t)(r->o.warmup * 1e9));
    double scpu0 = sp ? proc_cpu_seconds(sp) : -1;
    double acpu0 = r->o.aux_pid ? proc_cpu_seconds(r->o.aux_pid) : -1;
    double gcpu0 = self_cpu_seconds();
    rep.ncpus = proc_stat_cpus(rep.cpu0, MAX_CPUS);
    if (r->o.scenario == SC_CONNECTIONS) {
        rep.tcp_mem_pages1 = sockstat_tcp_mem_pages();
        rep.slab_kb1 = meminfo_slab_kb();
        rep.sock_slab_kb1 = slab_socket_kb();
        rep.server_rss_kb = sp ? proc_rss_kb(sp) : -1;
        rep.gen_rss_kb1 = proc_rss_kb(getpid());
    }
    const uint64_t t0 = now_ns();
    atomic_store(&r->phase, PH_MEASURE);
    sleep_until(t0 + (uint64_t)(r->o.duration * 1e9));
    atomic_store(&r->phase, PH_DRAIN);
    const uint64_t t1 = now_ns();
    double scpu1 = sp ? proc_cpu_seconds(sp) : -1;
    double acpu1 = r->o.aux_pid ? proc_cpu_seconds(r->o.aux_pid) : -1;
    double gcpu1 = self_cpu_seconds();
    if (proc_stat_cpus(rep.cpu1, MAX_CPUS) != rep.ncpus)
        rep.ncpus = 0;
    if (r->o.scenario != SC_CONNECTIONS)
        rep.server_rss_kb = sp ? proc_rss_kb(sp) : -1;

    /* drain: what was sent in the window and is still on its way */
    uint64_t last = 0, last_change = now_ns();
    for (;;) {
        sleep_ms(5);
        uint64_t sent = atomic_load(&r->marked_sent), got = atomic_load(&r->marked_recv);
        uint64_t now = now_ns();
        if (got >= sent * r->recipients)
            break;
        if (got != last) {
            last = got;
            last_change = now;
        }
        if (now - last_change > DRAIN_QUIET_NS || now - t1 > DRAIN_MAX_NS)
            break;
    }
    stop_workers(r);

    rep.wall_s = (double)(t1 - t0) / 1e9;
    rep.server_cpu_s = scpu0 >= 0 && scpu1 >= 0 ? scpu1 - scpu0 : -1;
    rep.aux_cpu_s = acpu0 >= 0 && acpu1 >= 0 ? acpu1 - acpu0 : -1;
    rep.gen_cpu_s = gcpu1 - gcpu0;
    hist_init(&rep.lat);
    hist_init(&rep.ack);
    hist_init(&rep.cmd[0]);
    hist_init(&rep.cmd[1]);
    for (int i = 0; i < r->nw; i++) {
        struct lg_worker *w = &r->w[i];
        const uint64_t *a = (const uint64_t *)&w->st;
        uint64_t *b = (uint64_t *)&rep.st;
        for (size_t k = 0; k < sizeof w->st / sizeof(uint64_t); k++)
            b[k] = (&a[k] == &w->st.max_lag_ns) ? (a[k] > b[k] ? a[k] : b[k]) : b[k] + a[k];
        hist_merge(&rep.lat, &w->lat);
        hist_merge(&rep.ack, &w->ack);
        hist_merge(&rep.cmd[0], &w->cmd[0]);
        hist_merge(&rep.cmd[1], &w->cmd[1]);
    }
    rep.expected_marked = rep.st.publishes_win * r->recipients;
    rep.lost =
        rep.expected_marked > rep.st.recv_marked ? rep.expected_marked - rep.st.recv_marked : 0;
    report_write(&rep);
    return 0;
}
