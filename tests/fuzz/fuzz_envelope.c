/* The envelope's two parsers against each other (host/bus/envelope.c, envelope_fast.c).
 *
 * Input: one client text frame. When it starts with anything but '{' or whitespace, its first
 * byte picks the limits and the sender (as the unit test's random differential does) and the
 * rest is the frame. Properties:
 * - the slow path (envelope_parse) either accepts, or fills an error whose text is UTF-8 and
 *   from which the error frame can be made;
 * - envelope_dumpb sizes its text exactly (a call with the returned size writes it all);
 * - whenever the fast path (envelope_fast_scan) takes the frame, the slow path accepts it too,
 *   and the fast frame is byte for byte envelope_set_sender + envelope_dumpb of the slow one,
 *   with the same routing fields (the contract in host/bus/envelope.h). */
#include <string.h>

#include "envelope.h"
#include "fuzz.h"
#include "utf8.h"

/* 2026-11-27T14:03:05.123Z */
#define NOW ((int64_t)1795788185123)

static int same_string(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static void check_error(const struct env_error *err, size_t len, const char *text)
{
    FUZZ_CHECK(err->code, "no error code for: %.*s", (int)len, text);
    FUZZ_CHECK(utf8_valid(err->text), "error text not UTF-8: %s", err->text);
    FUZZ_CHECK(!err->id || utf8_valid(err->id), "error id not UTF-8");
    json_t *frame =
        envelope_error_frame(err->code, err->text, NULL, json_incref(err->payload), NOW);
    FUZZ_CHECK(frame, "no error frame for %s: %s", err->code, err->text);
    json_decref(frame);
}

/* The slow frame as the host sends it, checking envelope_dumpb's size contract on the way. */
static char *slow_frame_of(const struct envelope *env, size_t *len)
{
    size_t n = envelope_dumpb(env->root, NULL, 0);
    FUZZ_CHECK(n > 0, "envelope_dumpb failed");
    char *buf = malloc(n + 1);
    FUZZ_CHECK(buf, "out of memory");
    FUZZ_CHECK(envelope_dumpb(env->root, buf, n) == n, "envelope_dumpb sized %zu", n);
    buf[n] = '\0';
    *len = n;
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct env_limits limits[] = {
        ENV_LIMITS_DEFAULT, {0, 3, 8}, {3600000, 1, 128}, {ENV_DEFAULT_MAX_CLOCK_SKEW_MS, 0, 2}};
    static const char *const senders[] = {"arq_client_0123456789abcdef0123456789abcdef", "arqonbus",
                                          "s\"q\\", "\xc3\xa9t\xc3\xa9", "bad\xc3"};
    const struct env_limits *lim = &limits[0];
    const char *sender = senders[0];
    if (size && !strchr("{ \t\r\n", data[0])) {
        lim = &limits[data[0] & 3];
        sender = senders[(data[0] >> 2) % (sizeof senders / sizeof *senders)];
        data++;
        size--;
    }
    const char *text = (const char *)data;

    struct env_fast scan;
    int fast_rc = envelope_fast_scan(text, size, NOW, lim, sender, &scan);
    struct envelope slow;
    struct env_error err;
    if (envelope_parse(text, size, NOW, lim, &slow, &err) != 0) {
        FUZZ_CHECK(fast_rc != 0, "fast path took what the parser refuses (%s: %s): %.*s", err.code,
                   err.text, (int)size, text);
        check_error(&err, size, text);
        envelope_error_clear(&err);
        return 0;
    }
    if (fast_rc != 0) {
        size_t n;
        free(slow_frame_of(&slow, &n));
        envelope_release(&slow);
        return 0;
    }

    FUZZ_CHECK(envelope_set_sender(&slow, sender) == 0, "the slow path cannot set the sender");
    size_t slow_len;
    char *slow_text = slow_frame_of(&slow, &slow_len);
    /* exact sizes: ASan reports a write past either */
    char *out = malloc(scan.out_len ? scan.out_len : 1);
    char *strings = malloc(scan.strings_len ? scan.strings_len : 1);
    FUZZ_CHECK(out && strings, "out of memory");
    struct envelope fast;
    envelope_fast_write(&scan, out, strings, &fast);
    FUZZ_CHECK(fast.frame == out && fast.frame_len == scan.out_len && !fast.root,
               "fast envelope not made of its buffers");

    /* A generated id is random: the slow frame gets the fast one at the same place. */
    if (strcmp(slow.id, fast.id) != 0) {
        FUZZ_CHECK(strlen(slow.id) == strlen(fast.id), "ids %s %s", slow.id, fast.id);
        char *at = strstr(slow_text, slow.id);
        FUZZ_CHECK(at, "generated id not in the frame");
        memcpy(at, fast.id, strlen(fast.id));
    }
    FUZZ_CHECK(slow_len == fast.frame_len && !memcmp(slow_text, fast.frame, slow_len),
               "frames differ for: %.*s\n slow: %s\n fast: %.*s", (int)size, text, slow_text,
               (int)fast.frame_len, fast.frame);
    FUZZ_CHECK(slow.type == ENV_MESSAGE && fast.type == ENV_MESSAGE, "types");
    FUZZ_CHECK(slow.timestamp_ms == fast.timestamp_ms, "timestamp_ms");
    FUZZ_CHECK(same_string(slow.timestamp, fast.timestamp), "timestamp");
    FUZZ_CHECK(same_string(slow.room, fast.room), "room");
    FUZZ_CHECK(same_string(slow.channel, fast.channel), "channel");
    FUZZ_CHECK(same_string(slow.to_client, fast.to_client), "to_client");
    FUZZ_CHECK(same_string(slow.request_id, fast.request_id), "request_id");
    FUZZ_CHECK(same_string(slow.command, fast.command), "command");
    FUZZ_CHECK(!slow.args && !fast.args, "args");

    free(slow_text);
    envelope_release(&slow);
    envelope_release(&fast);
    free(out);
    free(strings);
    return 0;
}
