/* arqonbus-bench-envelope: what one inbound message costs to parse and to turn into its
 * outbound frame, on the slow path (envelope_parse + envelope_set_sender + frame_from_json:
 * a jansson tree, serialised again) and on the fast path (envelope_fast_scan +
 * frame_alloc_text + envelope_fast_write: one pass, the frame spliced from the input). A
 * benchmark, not a test: single-threaded, in process, no network.
 *
 * Usage: arqonbus-bench-envelope [-n MESSAGES] [-r ROUNDS] [-f FRAME]
 *   -n N  messages per frame and path in one round (200000)
 *   -r N  rounds; the best round of each is reported (5)
 *   -f N  only the Nth frame (1-4), e.g. under valgrind --tool=callgrind
 * Every frame is first checked to take the fast path and to give the slow path's bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "envelope.h"

#define SENDER "arq_client_0123456789abcdef0123456789abcdef"

struct sample {
    const char *name;
    const char *text;
};

static const struct sample samples[] = {
    {"bench 128 B payload",
     "{\"type\":\"message\",\"room\":\"room-0001\",\"channel\":\"chan-01\",\"payload\":{\"t\":"
     "184467440737095,\"s\":17,\"w\":0,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}"},
    {"bench + id (acks on)",
     "{\"type\":\"message\",\"id\":\"arq_184467440737095_42_000000\",\"room\":\"room-0001\","
     "\"channel\":\"chan-01\",\"payload\":{\"t\":184467440737095,\"s\":17,\"w\":0,\"pad\":"
     "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxx\"}}"},
    {"metadata + nested payload",
     "{\"id\":\"arq_01M8EN27H3ABCDEFGHJKMNPQRS\",\"type\":\"message\",\"timestamp\":"
     "\"2026-11-27T14:03:00.000Z\",\"room\":\"chat\",\"channel\":\"general\",\"payload\":{"
     "\"text\":\"hello everyone, the build is green again\",\"mentions\":[\"ana\",\"bo\"],"
     "\"attachment\":{\"kind\":\"link\",\"url\":\"https://example.org/x\",\"size\":1234},"
     "\"flags\":{\"pinned\":false,\"edited\":true,\"reply_to\":null}},\"metadata\":{\"sequence\":"
     "7,\"vector_clock\":{\"a\":12,\"b\":3},\"causal_parent_id\":\"arq_1700000000000_1_0a0b0c\","
     "\"client\":\"web/2.4\"}}"},
    {"floats + unicode",
     "{\"type\":\"message\",\"room\":\"sensors\",\"channel\":\"eu-west\",\"payload\":{\"station\":"
     "\"M\xc3\xbcnchen-S\xc3\xbc\x64 \xe2\x80\x94 Stra\xc3\x9f\x65 7\",\"unit\":\"\xc2\xb0\x43\","
     "\"temp\":12.5,\"humidity\":0.61,\"pressure\":1013.25,\"wind\":[3.4,5.25,-0.75],\"pos\":{"
     "\"lat\":48.137154,\"lon\":11.576124},\"note\":\"\xe6\x99\xb4\xe3\x82\x8c "
     "\xf0\x9f\x8c\x9e\"}}"},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const struct env_limits limits = ENV_LIMITS_DEFAULT;

/* One message the slow way: the frame bus__route would queue. */
static int slow_once(const char *text, size_t len, int64_t now)
{
    struct envelope env;
    struct env_error err;
    if (envelope_parse(text, len, now, &limits, &env, &err) != 0) {
        envelope_error_clear(&err);
        return -1;
    }
    struct frame *f = NULL;
    if (envelope_set_sender(&env, SENDER) == 0)
        f = frame_from_json(env.root);
    int rc = f ? 0 : -1;
    frame_unref(f);
    envelope_release(&env);
    return rc;
}

static int fast_once(const char *text, size_t len, int64_t now)
{
    struct env_fast scan;
    struct envelope env;
    struct frame *f;
    if (envelope_fast_scan(text, len, now, &limits, SENDER, &scan) != 0 ||
        !(f = frame_alloc_text(scan.out_len, scan.strings_len)))
        return -1;
    char *out = (char *)f->data;
    envelope_fast_write(&scan, out, out + scan.out_len + 1, &env);
    frame_unref(f);
    return 0;
}

/* Both paths give the same frame (the generated id aside: the samples without one would
 * differ only there, so they are compared with an id added). */
static int check(const struct sample *s, int64_t now)
{
    size_t len = strlen(s->text);
    struct env_fast scan;
    if (envelope_fast_scan(s->text, len, now, &limits, SENDER, &scan) != 0) {
        fprintf(stderr, "%s: the fast path declines it\n", s->name);
        return -1;
    }
    struct envelope slow, fast;
    struct env_error err;
    if (envelope_parse(s->text, len, now, &limits, &slow, &err) != 0 ||
        envelope_set_sender(&slow, SENDER) != 0) {
        fprintf(stderr, "%s: the parser refuses it\n", s->name);
        return -1;
    }
    char *out = malloc(scan.out_len + scan.strings_len);
    size_t slow_len;
    char *slow_text = envelope_dump(slow.root, &slow_len);
    int rc = -1;
    if (out && slow_text) {
        envelope_fast_write(&scan, out, out + scan.out_len, &fast);
        char *at = strstr(slow_text, slow.id);
        if (at && strlen(slow.id) == strlen(fast.id))
            memcpy(at, fast.id, strlen(fast.id));
        rc = slow_len == fast.frame_len && !memcmp(slow_text, fast.frame, slow_len) ? 0 : -1;
        if (rc)
            fprintf(stderr, "%s: the frames differ\n slow %s\n fast %.*s\n", s->name, slow_text,
                    (int)fast.frame_len, fast.frame);
    }
    free(out);
    free(slow_text);
    envelope_release(&slow);
    return rc;
}

static double run(int (*once)(const char *, size_t, int64_t), const char *text, long n, int64_t now)
{
    size_t len = strlen(text);
    double t0 = now_s();
    for (long i = 0; i < n; i++)
        if (once(text, len, now) != 0) {
            fprintf(stderr, "a message failed\n");
            exit(1);
        }
    return (now_s() - t0) / (double)n * 1e9;
}

int main(int argc, char **argv)
{
    long n = 200000;
    int rounds = 5, only = 0, opt;
    const int nsamples = (int)(sizeof samples / sizeof *samples);
    while ((opt = getopt(argc, argv, "n:r:f:")) != -1) {
        if (opt == 'n')
            n = atol(optarg);
        else if (opt == 'r')
            rounds = atoi(optarg);
        else if (opt == 'f')
            only = atoi(optarg);
        else {
            fprintf(stderr, "usage: %s [-n MESSAGES] [-r ROUNDS] [-f FRAME]\n", argv[0]);
            return 2;
        }
    }
    if (n < 1 || rounds < 1 || only < 0 || only > nsamples) {
        fprintf(stderr, "-n and -r must be at least 1, -f 1 to %d\n", nsamples);
        return 2;
    }
    int64_t now = 1795788185123; /* 2026-11-27: the samples' timestamps are in the past */
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++)
        if (check(&samples[i], now) != 0)
            return 1;

    printf("%-28s %6s %12s %12s %14s %14s %8s\n", "frame", "bytes", "slow ns/msg", "fast ns/msg",
           "slow msg/s", "fast msg/s", "speed-up");
    for (int i = 0; i < nsamples; i++) {
        if (only && i != only - 1)
            continue;
        const struct sample *s = &samples[i];
        double slow = 0, fast = 0;
        for (int r = 0; r < rounds; r++) {
            double a = run(slow_once, s->text, n, now);
            double b = run(fast_once, s->text, n, now);
            slow = r == 0 || a < slow ? a : slow;
            fast = r == 0 || b < fast ? b : fast;
        }
        printf("%-28s %6zu %12.0f %12.0f %14.0f %14.0f %7.1fx\n", s->name, strlen(s->text), slow,
               fast, 1e9 / slow, 1e9 / fast, slow / fast);
    }
    return 0;
}
