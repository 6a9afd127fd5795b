/* arqonbus-bench: an event-driven WebSocket load generator (and a trivial relay server) for
 * comparing ArqonBus with Mosquitto and with the ceiling a plain relay sets.
 *
 * Threading: each worker thread owns one epoll instance and a contiguous slice of the
 * connections; nothing in a struct lg_conn is touched by another thread. What workers share
 * (the phase, the fan-out delivery count, the in-window totals) is in struct lg_run, atomic.
 * The main thread only coordinates phases and reads /proc. */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ws_sha1.h"

/* --- the latency histogram (hist.c) ---------------------------------------------------------- */

/* Log-linear: exact below 128, then 128 linear buckets per power of two, so a reported value
 * (the middle of its bucket) is within 0.4% of the true one. Values are nanoseconds. */
#define HIST_SUB_BITS 7
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_TOP_BIT  44 /* values up to 2^44 ns (4.9 hours); larger ones are clamped */
#define HIST_BUCKETS  ((HIST_TOP_BIT - HIST_SUB_BITS + 2) * HIST_SUB)

struct hist {
    uint64_t count, sum, min, max;
    uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_add(struct hist *h, uint64_t v);
void hist_merge(struct hist *into, const struct hist *from);
/* The value at quantile q (0..1), within 0.4%; 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);

/* --- options ---------------------------------------------------------------------------------- */

enum lg_scenario { SC_FANOUT, SC_ROOMS, SC_LATENCY, SC_CONNECTIONS, SC_COMMANDS };
enum lg_proto { PROTO_ARQONBUS, PROTO_MQTT, PROTO_RAW };
enum lg_command { CMD_PING, CMD_JOIN };

struct lg_opts {
    enum lg_scenario scenario;
    enum lg_proto proto;
    const char *host;
    int port;
    int remote_port;        /* fanout, latency: the server of the last remote_subscribers */
    int remote_subscribers; /* subscribers on remote_port (another node of a cluster) */
    int subscribers;        /* fanout, latency */
    int clients;            /* rooms, connections, commands */
    int room_size;          /* rooms */
    int window;             /* messages in flight per publisher */
    int payload_bytes;      /* size of the JSON payload object */
    int threads;            /* worker threads, one epoll each */
    int connect_parallel;   /* connections being set up at once, per worker */
    double rate;            /* per publisher (or per command client) msg/s; 0: window-bound */
    double target;          /* latency: deliveries/s wanted (sets rate) */
    double warmup, duration, setup_timeout;
    pid_t server_pid, aux_pid;
    const char *json;  /* append the report here ("-": stdout) */
    const char *name;  /* run name in the report, e.g. fanout-1000 */
    const char *label; /* server label in the report, e.g. arqonbus */
    enum lg_command command;
    int acks;        /* arqonbus publishers ask for acks (and ack latency is measured) */
    int idle_join;   /* connections: each idle client also joins a channel */
    int keepalive_s; /* mqtt keepalive */
};

/* --- connections and workers -------------------------------------------------------------- */

enum lg_state { ST_NEW, ST_CONNECTING, ST_HANDSHAKE, ST_SETUP, ST_READY, ST_CLOSED };
enum lg_role_bits { ROLE_PUB = 1, ROLE_SUB = 2, ROLE_CMD = 4 };
/* lg_conn.awaiting: a command is out; it was sent in the measured window; it is a leave. */
enum lg_await_bits { AW_CMD = 1, AW_MARKED = 2, AW_LEAVE = 4 };

/* Small on purpose: 100k of these must fit comfortably. Buffers exist only while needed. */
struct lg_conn {
    int fd;
    uint32_t id;    /* index in the run; the sender id ("s") in payloads */
    uint32_t group; /* room index */
    uint8_t state, role, frag_op, in_dirty;
    uint8_t want_out, queued, awaiting, cmd_step;
    int32_t outstanding; /* window accounting: deliveries of this publisher's messages due */
    uint32_t plen, pcap; /* partial inbound bytes (a frame cut by the read) */
    char *part;
    uint32_t wlen, wcap, woff; /* outbound bytes not yet written */
    char *wbuf;
    uint32_t mlen, mcap; /* a fragmented message, or an MQTT packet cut by a frame */
    char *msg;
    uint64_t cmd_t0; /* when the outstanding command (or setup step) was sent */
    uint64_t sent;   /* messages published */
};

struct lg_stats {
    uint64_t publishes, publishes_win; /* all; those marked in-window */
    uint64_t deliveries_win;           /* arrivals while measuring */
    uint64_t recv_marked;              /* arrivals of in-window messages, any time */
    uint64_t frames_in, frames_out, bytes_in, bytes_out;
    uint64_t error_frames, refused, closed, connect_failed, setup_failed;
    uint64_t commands_win, command_errors;
    uint64_t acks_win;
    uint64_t window_skips; /* rate mode: a due publish skipped because the window was full */
    uint64_t max_lag_ns;   /* rate mode: how far publishing fell behind its schedule */
    uint64_t stalls;       /* window mode: 5 s without progress, window written off */
    uint64_t bad_frames;   /* deliveries without a readable timestamp */
};

enum lg_phase { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_STOP };

struct lg_run;

struct lg_worker {
    int idx;
    pthread_t thread;
    int ep;
    struct lg_run *run;
    struct lg_conn *conns; /* this worker's slice: ids first_id .. first_id + n - 1 */
    uint32_t n, first_id;
    uint32_t next_open, opening, ready, done; /* done: ready or failed for good */
    char *rbuf;
    size_t rcap;
    uint64_t prng;
    struct lg_conn **dirty;
    uint32_t ndirty;
    uint32_t *pubq; /* window mode: publishers whose window has room */
    uint32_t npubq;
    uint32_t *pubs; /* this worker's publishers (rate mode round robin) */
    uint32_t npubs, rr;
    uint64_t sched_t0, scheduled; /* rate mode */
    double sched_rate;            /* publishes (or commands) per second for this worker */
    uint64_t fan_local;           /* fanout: deliveries counted here, not yet added to the run */
    uint64_t flushed_marked, flushed_sent; /* in-window totals already added to the run */
    uint64_t last_progress;                /* window mode: last delivery or publish */
    uint64_t last_keepalive;
    int phase; /* as last seen */
    uint64_t now;
    struct lg_stats st;
    struct hist lat, ack, cmd[2];
};

struct lg_run {
    struct lg_opts o;
    int nw;
    struct lg_worker *w;
    uint32_t total;       /* connections */
    uint32_t recipients;  /* deliveries expected per publish */
    int32_t window_deliv; /* window in deliveries: window * recipients */
    char topic[64];       /* fan-out room/channel (mqtt topic) */
    atomic_int phase;
    atomic_uint ready, done;
    atomic_ullong fan_delivered; /* fanout: deliveries of the publisher's messages (or written
                                  * off after a stall) */
    atomic_ullong marked_sent, marked_recv, win_deliv;
    uint64_t t_go;
};

/* --- worker.c ----------------------------------------------------------------------------------
 */

void *worker_main(void *arg);
uint64_t now_ns(void);
/* Queue a masked client frame (opcode, payload) on c; written at the end of the loop turn. */
void conn_send_frame(struct lg_worker *w, struct lg_conn *c, int opcode, const void *payload,
                     size_t len);
/* Reserve room for a frame of at most max_payload bytes; returns where the payload goes. The
 * caller writes it and calls conn_commit_frame with its real length. */
char *conn_frame_begin(struct lg_worker *w, struct lg_conn *c, size_t max_payload);
void conn_frame_commit(struct lg_worker *w, struct lg_conn *c, int opcode, size_t len);
void conn_fail(struct lg_worker *w, struct lg_conn *c, uint64_t *counter);
/* The server port c connects to: --port, or --remote-port for the last --remote-subscribers. */
int conn_port(const struct lg_run *r, const struct lg_conn *c);

/* --- proto.c -----------------------------------------------------------------------------------
 */

/* The HTTP upgrade request for c (path, subprotocol). Returns its length. */
int proto_upgrade_request(const struct lg_run *r, const struct lg_conn *c, char *buf, size_t size,
                          uint64_t *prng);
/* After the 101: first steps of the protocol (MQTT CONNECT, nothing for the others). */
void proto_on_open(struct lg_worker *w, struct lg_conn *c);
/* One complete text or binary message (MQTT: a chunk of the byte stream). */
void proto_on_message(struct lg_worker *w, struct lg_conn *c, const char *data, size_t len);
/* Publish one message from c, stamped now. */
void proto_publish(struct lg_worker *w, struct lg_conn *c);
/* Send c's next command (commands scenario). */
void proto_command(struct lg_worker *w, struct lg_conn *c);
/* MQTT keepalive. */
void proto_keepalive(struct lg_worker *w, struct lg_conn *c);

/* --- traffic.c -------------------------------------------------------------------------------- */

void traffic_ready(struct lg_worker *w, struct lg_conn *c);
/* Setup is over (every connection ready or failed): traffic begins. */
void traffic_start(struct lg_worker *w);
/* A delivery of a message published at t by client s, marked when sent in the window. */
void traffic_delivery(struct lg_worker *w, uint64_t t, uint32_t s, int marked);
void traffic_command_done(struct lg_worker *w, struct lg_conn *c, int ok);
/* Publish what is due; returns the ns until the next publish is due (-1: none scheduled). */
int64_t traffic_pump(struct lg_worker *w);

/* --- sysstat.c ------------------------------------------------------------------------------ */

double proc_cpu_seconds(pid_t pid); /* utime+stime; -1 when unreadable */
long proc_rss_kb(pid_t pid);        /* VmRSS; -1 when unreadable */
long sockstat_tcp_mem_pages(void);  /* TCP mem of /proc/net/sockstat; -1 when unreadable */
long meminfo_slab_kb(void);         /* Slab of /proc/meminfo */
long slab_socket_kb(void);          /* the socket-related slab caches of /proc/slabinfo */
long raise_nofile(long want);       /* raises RLIMIT_NOFILE as far as allowed; returns it */
double self_cpu_seconds(void);
struct cpu_times {
    unsigned long long busy, idle, steal;
};
#define MAX_CPUS 8 /* CPUs described in a report */
int proc_stat_cpus(struct cpu_times *t, int max);

/* --- relay.c (SHA-1 and base64: tests/common/ws_sha1.h) ------------------------------------ */

int relay_main(int argc, char **argv);

/* --- report.c -------------------------------------------------------------------------------- */

struct lg_report {
    const struct lg_run *run;
    struct lg_stats st;
    struct hist lat, ack, cmd[2];
    double wall_s, setup_s;
    double server_cpu_s, aux_cpu_s, gen_cpu_s;
    long server_rss_kb, server_rss0_kb;
    uint64_t expected_marked, lost;
    /* connections scenario */
    long tcp_mem_pages0, tcp_mem_pages1, slab_kb0, slab_kb1, sock_slab_kb0, sock_slab_kb1;
    long gen_rss_kb0, gen_rss_kb1;
    uint32_t connected;
    /* what each CPU did over the measured window */
    int ncpus;
    struct cpu_times cpu0[MAX_CPUS], cpu1[MAX_CPUS];
};

void report_write(const struct lg_report *rep);
int summary_main(int argc, char **argv);

#endif
