/* envelope_fast: the fast path for message envelopes against the slow path (envelope_parse +
 * envelope_set_sender + envelope_dumpb). Whenever the fast path accepts a frame, the slow path
 * accepts it too and gives the same frame bytes and the same routing fields; typical client
 * frames do take the fast path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

/* 2026-11-27T14:03:05.123Z */
#define NOW    ((int64_t)1795788185123)
#define NOW_TS "2026-11-27T14:03:05.123Z"
#define SENDER "arq_client_0123456789abcdef0123456789abcdef"

static const struct env_limits default_limits = ENV_LIMITS_DEFAULT;

static void assert_same_string(const char *what, const char *slow, const char *fast,
                               const char *text)
{
    if (!slow && !fast)
        return;
    if (!slow || !fast || strcmp(slow, fast) != 0)
        fail_msg("%s differs (slow '%s', fast '%s') for: %s", what, slow ? slow : "(null)",
                 fast ? fast : "(null)", text);
}

/* Runs both paths on `len` bytes of `text`. Returns 1 when the fast path took the frame (and
 * then checks everything against the slow path), 0 when it declined. */
static int differential(const char *text, size_t len, const struct env_limits *lim,
                        const char *sender)
{
    struct env_fast scan;
    int fast_rc = envelope_fast_scan(text, len, NOW, lim, sender, &scan);

    struct envelope slow;
    struct env_error err;
    int slow_rc = envelope_parse(text, len, NOW, lim, &slow, &err);
    if (slow_rc != 0) {
        if (fast_rc == 0)
            fail_msg("fast path accepted what the parser refuses (%s: %s): %.*s", err.code,
                     err.text, (int)len, text);
        envelope_error_clear(&err);
        return 0;
    }
    if (fast_rc != 0) {
        envelope_release(&slow);
        return 0;
    }
    if (envelope_set_sender(&slow, sender) != 0)
        fail_msg("fast path accepted a sender the slow path cannot set: %.*s", (int)len, text);
    size_t slow_len;
    char *slow_frame = envelope_dump(slow.root, &slow_len);
    assert_non_null(slow_frame);

    /* exact sizes: ASan reports a write past either */
    char *out = malloc(scan.out_len ? scan.out_len : 1);
    char *strings = malloc(scan.strings_len);
    assert_non_null(out);
    assert_non_null(strings);
    struct envelope fast;
    envelope_fast_write(&scan, out, strings, &fast);
    assert_int_equal(fast.frame_len, scan.out_len);
    assert_ptr_equal(fast.frame, out);
    assert_null(fast.root);

    /* A generated id is random: the slow frame gets the fast one at the same place. */
    if (strcmp(slow.id, fast.id) != 0) {
        assert_int_equal(strlen(slow.id), strlen(fast.id));
        char *at = strstr(slow_frame, slow.id);
        assert_non_null(at);
        memcpy(at, fast.id, strlen(fast.id));
        assert_null(strstr(text, slow.id));
    }
    if (slow_len != fast.frame_len || memcmp(slow_frame, fast.frame, slow_len) != 0)
        fail_msg("frames differ for: %.*s\n slow: %s\n fast: %.*s", (int)len, text, slow_frame,
                 (int)fast.frame_len, fast.frame);

    assert_int_equal(slow.type, ENV_MESSAGE);
    assert_int_equal(fast.type, ENV_MESSAGE);
    assert_int_equal(slow.timestamp_ms, fast.timestamp_ms);
    assert_same_string("timestamp", slow.timestamp, fast.timestamp, text);
    assert_same_string("room", slow.room, fast.room, text);
    assert_same_string("channel", slow.channel, fast.channel, text);
    assert_same_string("to_client", slow.to_client, fast.to_client, text);
    assert_same_string("request_id", slow.request_id, fast.request_id, text);
    assert_same_string("command", slow.command, fast.command, text);
    assert_null(fast.args);
    assert_null(slow.args);

    free(slow_frame);
    envelope_release(&slow);
    envelope_release(&fast);
    free(out);
    free(strings);
    return 1;
}

static int diff_str(const char *text)
{
    return differential(text, strlen(text), &default_limits, SENDER);
}

#define TAKES_FAST(text)                                                                           \
    do {                                                                                           \
        if (!diff_str(text))                                                                       \
            fail_msg("declined: %s", text);                                                        \
    } while (0)
#define DECLINES(text)                                                                             \
    do {                                                                                           \
        if (diff_str(text))                                                                        \
            fail_msg("fast path took: %s", text);                                                  \
    } while (0)

/* --- typical frames ------------------------------------------------------------------------ */

static void typical_client_frames_take_the_fast_path(void **state)
{
    (void)state;
    /* the bench's frame */
    TAKES_FAST("{\"type\":\"message\",\"room\":\"r1\",\"channel\":\"c1\",\"payload\":{\"t\":"
               "1795788185123,\"s\":4,\"w\":1,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}");
    /* JSON.stringify of a client object with id, timestamp and metadata */
    TAKES_FAST("{\"id\":\"arq_01M8EN27H3ABCDEFGHJKMNPQRS\",\"type\":\"message\",\"timestamp\":"
               "\"2026-11-27T14:03:00.000Z\",\"room\":\"chat\",\"channel\":\"general\",\"payload\":"
               "{\"text\":\"hello\",\"n\":[1,2,3]},\"metadata\":{\"sequence\":7,\"vector_clock\":{"
               "\"a\":1,\"b\":0},\"causal_parent_id\":\"arq_1700000000000_1_0a0b0c\",\"tag\":"
               "\"x\"}}");
    /* nested payload, floats, unicode, literals */
    TAKES_FAST("{\"type\":\"message\",\"room\":\"lab\",\"payload\":{\"temp\":12.5,\"ratio\":0.1,"
               "\"big\":-1234567.891,\"name\":\"Gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80\","
               "\"ok\":true,\"bad\":false,\"none\":null,\"deep\":{\"a\":[{\"b\":[[]]},{}]},"
               "\"esc\":\"line\\nquote\\\" back\\\\ tab\\t ctl\\u001f\"}}");
    /* a direct message, a request id, version given */
    TAKES_FAST("{\"type\":\"message\",\"version\":\"1.0\",\"to_client\":\"arq_client_00ff\","
               "\"request_id\":\"r-17\",\"payload\":\"hi\"}");
    /* a sender and from_client given: sender overwritten in place */
    TAKES_FAST("{\"sender\":\"forged\",\"type\":\"message\",\"room\":\"r\",\"from_client\":"
               "\"someone\",\"payload\":[1,2.5,\"x\"]}");
    /* a jansson-style dump of the slow path's own output, as a server-side relay sends */
    TAKES_FAST("{\"type\":\"message\",\"room\":\"r1\",\"payload\":{},\"id\":"
               "\"arq_1700000000000_1_0a0b0c\",\"timestamp\":\"" NOW_TS "\",\"version\":\"1.0\","
               "\"sender\":\"arq_client_1\"}");
    /* whitespace between tokens, as a pretty-printer writes */
    TAKES_FAST(" {\n  \"type\": \"message\",\n  \"room\": \"r1\",\n  \"payload\": { \"a\": [ 1 ,"
               " 2 ], \"s\": \"two  spaces\\t\" }\n}\n");
    /* numbers at the edges */
    TAKES_FAST("{\"type\":\"message\",\"room\":\"r\",\"payload\":[9223372036854775807,"
               "-9223372036854775808,0,-1,1e+100,1.7976931348623157e+308,-0.0,100.0,1.5e-07]}");
}

static void null_known_fields_are_replaced_or_kept_in_place(void **state)
{
    (void)state;
    TAKES_FAST("{\"id\":null,\"timestamp\":null,\"version\":null,\"sender\":null,\"type\":"
               "\"message\",\"room\":\"r\",\"channel\":null,\"to_client\":null,\"request_id\":null,"
               "\"from_client\":null,\"metadata\":null,\"payload\":1}");
    TAKES_FAST("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":{\"sequence\":"
               "null,\"vector_clock\":null,\"causal_parent_id\":null}}");
}

static void the_fast_frame_is_the_input_with_generated_fields_appended(void **state)
{
    (void)state;
    const char *in = "{\"type\":\"message\",\"room\":\"r1\",\"payload\":{\"a\":1}}";
    struct env_fast scan;
    assert_int_equal(envelope_fast_scan(in, strlen(in), NOW, NULL, "arq_client_x", &scan), 0);
    char out[256], strings[128];
    assert_true(scan.out_len < sizeof out && scan.strings_len <= sizeof strings);
    struct envelope env;
    envelope_fast_write(&scan, out, strings, &env);
    out[env.frame_len] = '\0';
    char want[256];
    snprintf(want, sizeof want,
             "{\"type\":\"message\",\"room\":\"r1\",\"payload\":{\"a\":1},\"id\":\"%s\","
             "\"timestamp\":\"" NOW_TS "\",\"version\":\"1.0\",\"sender\":\"arq_client_x\"}",
             env.id);
    assert_string_equal(out, want);
    assert_true(envelope_valid_id(env.id));
    assert_string_equal(env.timestamp, NOW_TS);
    assert_int_equal(env.timestamp_ms, NOW);
    assert_string_equal(env.room, "r1");
    assert_null(env.channel);
    assert_null(env.to_client);
    assert_null(env.payload);
}

/* --- declines ------------------------------------------------------------------------------ */

static void other_types_and_fields_the_fast_path_leaves_alone_decline(void **state)
{
    (void)state;
    DECLINES("{\"type\":\"command\",\"command\":\"status\"}");
    DECLINES("{\"type\":\"command\",\"payload\":{\"command\":\"status\",\"parameters\":{}}}");
    DECLINES("{\"type\":\"telemetry\",\"payload\":{}}");
    DECLINES("{\"type\":\"response\",\"request_id\":\"x\",\"status\":\"success\"}");
    DECLINES("{\"type\":\"error\",\"error\":\"e\"}");
    DECLINES("{\"type\":\"operator.join\",\"payload\":{}}");
    /* fields a message may carry but the fast path does not handle */
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"command\":\"x\"}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"args\":{}}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"status\":\"success\"}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"error\":\"e\"}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"error_code\":\"E\"}");
    /* unknown fields, and known ones spelt with escapes */
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"extra\":1}");
    DECLINES("{\"type\":\"message\",\"r\\u006fom\":\"r\",\"payload\":1}");
}

static void every_validation_problem_declines(void **state)
{
    (void)state;
    DECLINES("{\"room\":\"r\",\"payload\":1}");                            /* no type     */
    DECLINES("{\"type\":null,\"room\":\"r\",\"payload\":1}");              /* null type   */
    DECLINES("{\"type\":\"Message\",\"room\":\"r\",\"payload\":1}");       /* unknown     */
    DECLINES("{\"type\":\"mess\\u0061ge\",\"room\":\"r\",\"payload\":1}"); /* escaped     */
    DECLINES("{\"type\":\"message\",\"room\":\"r\"}");                     /* no payload  */
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":null}");    /* null one    */
    DECLINES("{\"type\":\"message\",\"room\":\"r w\",\"payload\":1}");     /* bad name    */
    DECLINES("{\"type\":\"message\",\"room\":\"\",\"payload\":1}");        /* empty name  */
    DECLINES("{\"type\":\"message\",\"room\":7,\"payload\":1}");           /* not string  */
    DECLINES("{\"type\":\"message\",\"channel\":\"c\",\"payload\":1}");    /* no room     */
    DECLINES("{\"type\":\"message\",\"room\":null,\"channel\":\"c\",\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"channel\":\"c/d\",\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"version\":\"2.0\",\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"version\":1.0,\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"sender\":5,\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"from_client\":[],\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"to_client\":{},\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"request_id\":1,\"payload\":1}");
    /* ids */
    DECLINES("{\"type\":\"message\",\"id\":\"m1\",\"room\":\"r\",\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"id\":\"arq_81M8EN27H3ABCDEFGHJKMNPQRS\",\"room\":\"r\","
             "\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"id\":\"arq_1_2_abcdeg\",\"room\":\"r\",\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"id\":12,\"room\":\"r\",\"payload\":1}");
    /* timestamps: malformed, before 2000, past the skew */
    DECLINES("{\"type\":\"message\",\"timestamp\":\"yesterday\",\"room\":\"r\",\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"timestamp\":\"1999-12-31T23:59:59Z\",\"room\":\"r\","
             "\"payload\":1}");
    DECLINES("{\"type\":\"message\",\"timestamp\":\"2026-11-28T14:03:05.124Z\",\"room\":\"r\","
             "\"payload\":1}");
    TAKES_FAST("{\"type\":\"message\",\"timestamp\":\"2026-11-28T14:03:05.123Z\",\"room\":\"r\","
               "\"payload\":1}");
    TAKES_FAST("{\"type\":\"message\",\"timestamp\":\"2026-11-27 16:03:05.1234+02:00\",\"room\":"
               "\"r\",\"payload\":1}");
    /* metadata rules */
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":[]}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":{\"sequence\":0}}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":{\"sequence\":1.0}}");
    /* short reals where another kind is required */
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":1.5}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":{\"sequence\":2.5}}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":{\"vector_clock\":"
             "{\"a\":1.5}}}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":{\"vector_clock\":"
             "[]}}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":{\"vector_clock\":"
             "{\"\":1}}}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":{\"vector_clock\":"
             "{\"a\":-1}}}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":{\"vector_clock\":"
             "{\"a\":null}}}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":{"
             "\"causal_parent_id\":\"nope\"}}");
    /* deeper metadata keys are free-form */
    TAKES_FAST("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"metadata\":{\"x\":{"
               "\"sequence\":0,\"vector_clock\":[]}}}");
}

static void limits_apply_as_in_the_slow_path(void **state)
{
    (void)state;
    struct env_limits lim = {.max_clock_skew_ms = 0, .max_depth = 2, .max_name_length = 3};
    const char *cases[][2] = {
        {"{\"type\":\"message\",\"room\":\"abc\",\"payload\":[[1]]}", "1"},
        {"{\"type\":\"message\",\"room\":\"abc\",\"payload\":[[[1]]]}", "0"},
        {"{\"type\":\"message\",\"room\":\"abc\",\"payload\":{\"a\":{}}}", "1"},
        {"{\"type\":\"message\",\"room\":\"abc\",\"payload\":{\"a\":{\"b\":{}}}}", "0"},
        {"{\"type\":\"message\",\"room\":\"abc\",\"payload\":1,\"metadata\":{\"a\":{\"b\":1}}}",
         "1"},
        {"{\"type\":\"message\",\"room\":\"abc\",\"payload\":1,\"metadata\":{\"a\":[{}]}}", "0"},
        {"{\"type\":\"message\",\"room\":\"abcd\",\"payload\":1}", "0"},
        {"{\"type\":\"message\",\"room\":\"abc\",\"timestamp\":\"" NOW_TS "\",\"payload\":1}", "1"},
        {"{\"type\":\"message\",\"room\":\"abc\",\"timestamp\":\"2026-11-27T14:03:05.124Z\","
         "\"payload\":1}",
         "0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int took = differential(cases[i][0], strlen(cases[i][0]), &lim, SENDER);
        if (took != (cases[i][1][0] == '1'))
            fail_msg("case %zu (%s): took %d", i, cases[i][0], took);
    }
    /* deeper than the fast path follows: the slow path takes it */
    struct env_limits deep = {ENV_DEFAULT_MAX_CLOCK_SKEW_MS, 1000, 128};
    char text[512];
    int n = snprintf(text, sizeof text, "{\"type\":\"message\",\"room\":\"r\",\"payload\":");
    for (int i = 0; i < 70; i++)
        text[n++] = '[';
    for (int i = 0; i < 70; i++)
        text[n++] = ']';
    text[n++] = '}';
    assert_int_equal(differential(text, (size_t)n, &deep, SENDER), 0);
}

static void non_canonical_text_declines(void **state)
{
    (void)state;
#define P(v) "{\"type\":\"message\",\"room\":\"r\",\"payload\":" v "}"
    /* escapes envelope_dumpb writes differently, or the parser refuses */
    DECLINES(P("\"a\\/b\""));
    DECLINES(P("\"\\u0041\""));
    DECLINES(P("\"\\u001F\""));
    DECLINES(P("\"\\u000a\""));
    DECLINES(P("\"\\u00e9\""));
    DECLINES(P("\"\\ud83d\\ude00\""));
    DECLINES(P("\"\\u0000\""));
    DECLINES(P("\"\\ud800\""));
    DECLINES(P("\"\\x\""));
    DECLINES(P("\"\\u007f\""));
    TAKES_FAST(P("\"\\u0001\\u001e\\u000b\""));
    /* raw bytes: control characters, invalid UTF-8, overlong, surrogate, past U+10FFFF */
    DECLINES(P("\"a\tb\""));
    DECLINES(P("\"\xff\""));
    DECLINES(P("\"\xc0\xaf\""));
    DECLINES(P("\"\xed\xa0\x80\""));
    DECLINES(P("\"\xf4\x90\x80\x80\""));
    DECLINES(P("\"\xe2\x82\""));
    TAKES_FAST(P("\"\x7f\xf4\x8f\xbf\xbf\""));
    /* numbers */
    DECLINES(P("-0"));
    DECLINES(P("1E5"));
    DECLINES(P("1e5"));
    DECLINES(P("1.50"));
    DECLINES(P("0.10"));
    DECLINES(P("1e400"));
    DECLINES(P("1e-400"));
    DECLINES(P("9223372036854775808"));
    DECLINES(P("-9223372036854775809"));
    DECLINES(P("01"));
    DECLINES(P("1."));
    DECLINES(P(".5"));
    DECLINES(P("+1"));
    DECLINES(P("0x10"));
    DECLINES(P("0.30000000000000004e0"));
    TAKES_FAST(P("0.30000000000000004"));
    TAKES_FAST(P("[1.0,2.5,-3.25,1e-05,123456789012345.0]"));
    /* the edges of the short decimals known without formatting them */
    TAKES_FAST(P("[0.0001,-0.0,0.0,123456789012345.0,12345678901234.5,0.000123456789012345]"));
    TAKES_FAST(P("[1234567890123456.0,0.1234567890123456,1e-05]"));
    DECLINES(P("0.00001"));
    DECLINES(P("12.50"));
    DECLINES(P("00.5"));
    DECLINES(P("12.00"));
    DECLINES(P("1234567890123456789.0"));
    DECLINES(P("0.12345678901234567"));
    /* structure */
    DECLINES(P("{\"a\":1,\"a\":2}"));
    DECLINES(P("{\"a\":1,\"b\":{\"a\":1,\"a\":1}}"));
    TAKES_FAST(P("{\"a\":{\"a\":{\"a\":1}},\"b\":{\"a\":1}}"));
    DECLINES(P("[1,]"));
    DECLINES(P("{\"a\":1,}"));
    DECLINES(P("tru"));
    DECLINES(P("nul"));
    DECLINES(P("truex"));
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1,\"type\":\"message\"}");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1}x");
    DECLINES("{\"type\":\"message\",\"room\":\"r\",\"payload\":1");
    DECLINES("\xef\xbb\xbf{\"type\":\"message\",\"room\":\"r\",\"payload\":1}");
    DECLINES("[{\"type\":\"message\",\"room\":\"r\",\"payload\":1}]");
    DECLINES("");
#undef P
}

static void a_nul_byte_or_a_cut_frame_declines(void **state)
{
    (void)state;
    const char text[] = "{\"type\":\"message\",\"room\":\"r\",\"payload\":\"a\0b\"}";
    assert_int_equal(differential(text, sizeof text - 1, &default_limits, SENDER), 0);
    const char *ok = "{\"type\":\"message\",\"room\":\"r\",\"payload\":\"\xe2\x82\xac\"}";
    for (size_t cut = 0; cut < strlen(ok); cut++)
        assert_int_equal(differential(ok, cut, &default_limits, SENDER), 0);
    assert_int_equal(differential(ok, strlen(ok), &default_limits, SENDER), 1);
}

static void senders_are_escaped_like_the_slow_path_or_decline(void **state)
{
    (void)state;
    const char *in = "{\"type\":\"message\",\"room\":\"r\",\"sender\":\"x\",\"payload\":1}";
    assert_int_equal(differential(in, strlen(in), &default_limits, "we\"ird\n\x01\xc3\xa9"), 1);
    assert_int_equal(differential(in, strlen(in), &default_limits, "bad\xff"), 0);
    const char *no_sender = "{\"type\":\"message\",\"room\":\"r\",\"payload\":1}";
    assert_int_equal(differential(no_sender, strlen(no_sender), &default_limits, "a\\b"), 1);
}

static void many_keys_and_long_names(void **state)
{
    (void)state;
    /* 200 distinct keys: checked; 300: more than the fast path tracks, declined */
    for (int nkeys = 200; nkeys <= 300; nkeys += 100) {
        size_t cap = 16384, n = 0;
        char *text = malloc(cap);
        assert_non_null(text);
        n += (size_t)snprintf(text + n, cap - n,
                              "{\"type\":\"message\",\"room\":\"r\",\"payload\":{");
        for (int i = 0; i < nkeys; i++)
            n += (size_t)snprintf(text + n, cap - n, "%s\"k%d\":%d", i ? "," : "", i, i);
        n += (size_t)snprintf(text + n, cap - n, "}}");
        assert_int_equal(differential(text, n, &default_limits, SENDER), nkeys == 200);
        free(text);
    }
    struct env_limits lim = {ENV_DEFAULT_MAX_CLOCK_SKEW_MS, 32, 1024};
    char text[2200];
    int n = snprintf(text, sizeof text, "{\"type\":\"message\",\"room\":\"");
    memset(text + n, 'a', 1024);
    n += 1024;
    n += snprintf(text + n, sizeof text - (size_t)n, "\",\"payload\":1}");
    assert_int_equal(differential(text, (size_t)n, &lim, SENDER), 1);
}

/* --- random and mutated envelopes ---------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned pick(unsigned n)
{
    return (unsigned)(rnd() % n);
}

struct buf {
    char *s;
    size_t n, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        assert_non_null(b->s);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* In a clean envelope every choice is one the slow path accepts and the fast path can take;
 * otherwise any choice, valid or not. Tables list their clean entries first. */
static int clean;

static unsigned choose(unsigned nclean, unsigned nall)
{
    return clean || pick(3) ? pick(nclean) : pick(nall);
}

#define CHOOSE(table, nclean) (table)[choose(nclean, sizeof(table) / sizeof *(table))]

/* Whitespace between tokens now and then. */
static void ws(struct buf *b)
{
    static const char *const spaces[] = {" ", "\n", "\t", "\r\n  ", "  "};
    if (pick(12) == 0)
        puts_(b, spaces[pick(5)]);
}

static void gen_string_body(struct buf *b)
{
    static const char *const pieces[] = {
        /* canonical */
        "a", "Z", "0", " ", "hello", "\\n", "\\t", "\\\"", "\\\\", "\\b", "\\f", "\\r", "\\u0001",
        "\\u001f", "\\u000b", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x7f", "'", "/", "{",
        "}", ":", ",",
        /* valid JSON written differently, then invalid */
        "\\u001F", "\\u0041", "\\u00e9", "\\/", "\\ud83d\\ude00", "\\u007f", "\\u0000", "\\ud800",
        "\\udc00x", "\\x", "\xff", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\t",
        "\x01"};
    unsigned n = pick(6);
    for (unsigned i = 0; i < n; i++)
        puts_(b, pieces[clean || pick(4) ? pick(25) : pick(sizeof pieces / sizeof *pieces)]);
}

static void gen_string(struct buf *b)
{
    puts_(b, "\"");
    gen_string_body(b);
    puts_(b, "\"");
}

static void gen_number(struct buf *b)
{
    static const char *const numbers[] = {
        /* canonical */
        "0", "1", "-1", "42", "9223372036854775807", "-9223372036854775808", "12.5", "0.1", "-0.0",
        "1.0", "1e+100", "1e-05", "1.5e-07", "0.30000000000000004", "3.141592653589793",
        "1.7976931348623157e+308", "100.0", "123456789012345.0", "-2.5e-300",
        /* valid JSON written differently, then invalid */
        "-0", "1.50", "1e5", "1E5", "2.5E-3", "1e-400", "5e-324", "4.9406564584124654e-324",
        "1234567890123456789.0", "0.10", "9223372036854775808", "-9223372036854775809",
        "12345678901234567890", "1e400", "-1e400", "007", "1.", ".5", "+1", "-", "1e", "0x1F"};
    if (pick(4) == 0) {
        /* short decimals: canonical or not by their zeros and their number of digits */
        static const char digits[] = "0000123456789";
        char tmp[48];
        size_t n = 0;
        if (pick(4) == 0)
            tmp[n++] = '-';
        unsigned ints = 1 + pick(pick(4) ? 3 : 17), fracs = 1 + pick(pick(4) ? 4 : 17);
        for (unsigned i = 0; i < ints; i++)
            tmp[n++] = digits[pick(sizeof digits - 1)];
        tmp[n++] = '.';
        for (unsigned i = 0; i < fracs; i++)
            tmp[n++] = digits[pick(sizeof digits - 1)];
        if (pick(3) == 0)
            n += (size_t)snprintf(tmp + n, sizeof tmp - n, "e%d", (int)pick(40) - 20);
        tmp[n] = '\0';
        puts_(b, tmp);
    } else if (pick(3) == 0) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%lld", (long long)((int64_t)rnd() >> pick(63)));
        puts_(b, tmp);
    } else if (pick(4) == 0) {
        char tmp[40];
        double d = (double)(int64_t)rnd() / (double)(1ull << pick(60));
        envelope_format_real(d, tmp);
        puts_(b, tmp);
    } else {
        puts_(b, CHOOSE(numbers, 19));
    }
}

static void gen_value(struct buf *b, int depth);

static void gen_object(struct buf *b, int depth)
{
    static const char *const keys[] = {"a", "b",   "k",       "sequence",        "vector_clock",
                                       "",  "x y", "\\u0061", "causal_parent_id"};
    unsigned n = pick(5);
    int dup = !clean && pick(10) == 0;
    puts_(b, "{");
    ws(b);
    for (unsigned i = 0; i < n; i++) {
        if (i) {
            puts_(b, ",");
            ws(b);
        }
        if (!dup) {
            /* distinct keys: a counter keeps them apart */
            char key[32];
            snprintf(key, sizeof key, "\"%s%u\"", keys[pick(7)], i);
            puts_(b, key);
        } else if (pick(4) == 0) {
            gen_string(b);
        } else {
            puts_(b, "\"");
            puts_(b, keys[pick(sizeof keys / sizeof *keys)]);
            puts_(b, "\"");
        }
        ws(b);
        puts_(b, ":");
        ws(b);
        gen_value(b, depth + 1);
        ws(b);
    }
    puts_(b, "}");
}

static void gen_value(struct buf *b, int depth)
{
    static const char *const lits[] = {"true", "false", "null", "tru", "nulll", "True"};
    switch (pick(depth > 6 ? 5 : 8)) {
    case 0:
    case 1:
        gen_string(b);
        break;
    case 2:
    case 3:
        gen_number(b);
        break;
    case 4:
        puts_(b, CHOOSE(lits, 3));
        break;
    case 5:
    case 6:
        gen_object(b, depth);
        break;
    default: {
        unsigned n = pick(4);
        puts_(b, "[");
        ws(b);
        for (unsigned i = 0; i < n; i++) {
            if (i) {
                puts_(b, ",");
                ws(b);
            }
            gen_value(b, depth + 1);
            ws(b);
        }
        puts_(b, "]");
    }
    }
}

static void gen_metadata(struct buf *b)
{
    static const char *const seqs[] = {"1", "7", "null", "0", "-3", "1.0", "\"1\""};
    static const char *const clocks[] = {"{}",       "{\"a\":1,\"b\":0}", "null",
                                         "{\"\":1}", "{\"a\":-1}",        "{\"a\":1.5}",
                                         "[]",       "{\"a\":1,\"a\":2}"};
    static const char *const parents[] = {"\"arq_1700000000000_1_0a0b0c\"",
                                          "\"arq_01M8EN27H3ABCDEFGHJKMNPQRS\"", "null", "\"bad\"",
                                          "1"};
    const char *names[3] = {"sequence", "vector_clock", "causal_parent_id"};
    unsigned n = 0;
    puts_(b, "{");
    for (int i = 0; i < 3; i++) {
        if (pick(2))
            continue;
        puts_(b, n++ ? ",\"" : "\"");
        puts_(b, names[i]);
        puts_(b, "\":");
        puts_(b, i == 0 ? CHOOSE(seqs, 3) : i == 1 ? CHOOSE(clocks, 3) : CHOOSE(parents, 3));
    }
    if (pick(2)) {
        puts_(b, n++ ? ",\"extra\":" : "\"extra\":");
        gen_value(b, 1);
    }
    puts_(b, "}");
}

/* One top-level member's value for field `f`. */
static void gen_field_value(struct buf *b, const char *f)
{
    static const char *const ids[] = {"\"arq_1700000000000_1_0a0b0c\"",
                                      "\"arq_01M8EN27H3ABCDEFGHJKMNPQRS\"",
                                      "null",
                                      "\"arq_81M8EN27H3ABCDEFGHJKMNPQRS\"",
                                      "\"arq_1_2_ABCDEF\"",
                                      "\"m1\"",
                                      "12",
                                      "\"arq_1700000000000_1_0a0b0\\u0063\""};
    static const char *const stamps[] = {"\"" NOW_TS "\"",
                                         "\"2026-11-27T14:03:05Z\"",
                                         "\"2026-11-28T14:03:05.123Z\"",
                                         "\"2026-11-27t14:03:05.123456789+01:00\"",
                                         "null",
                                         "\"2026-11-28T14:03:05.124Z\"",
                                         "\"1999-12-31T23:59:59Z\"",
                                         "\"2026-02-30T00:00:00Z\"",
                                         "\"yesterday\"",
                                         "5"};
    static const char *const types[] = {"\"message\"",      "\"command\"", "\"telemetry\"",
                                        "\"Message\"",      "null",        "1",
                                        "\"mess\\u0061ge\""};
    static const char *const names[] = {"\"r1\"", "\"c1\"",   "\"room.a:b-c_d\"",
                                        "\"\"",   "\"a b\"",  "null",
                                        "7",      "\"r\\n\"", "\"\\u0072\""};
    static const char *const versions[] = {"\"1.0\"", "null", "\"2.0\"", "1.0"};
    static const char *const clients[] = {"\"arq_client_1\"", "\"\"",      "null",
                                          "\"\xc3\xa9\"",     "\"a\\nb\"", "3"};
    if (!strcmp(f, "id"))
        puts_(b, CHOOSE(ids, 3));
    else if (!strcmp(f, "timestamp"))
        puts_(b, CHOOSE(stamps, 5));
    else if (!strcmp(f, "type"))
        puts_(b, CHOOSE(types, 1));
    else if (!strcmp(f, "version"))
        puts_(b, CHOOSE(versions, 2));
    else if (!strcmp(f, "room") || !strcmp(f, "channel"))
        puts_(b, CHOOSE(names, 3));
    else if (!strcmp(f, "payload"))
        clean || pick(12) ? gen_value(b, 0) : puts_(b, "null");
    else if (!strcmp(f, "metadata"))
        clean || pick(5) ? gen_metadata(b) : gen_value(b, 0);
    else if (!strcmp(f, "args"))
        gen_value(b, 0);
    else if (!strcmp(f, "from_client") || !strcmp(f, "sender"))
        puts_(b, CHOOSE(clients, 5));
    else
        puts_(b, CHOOSE(clients, 4));
}

/* A random envelope: mostly plausible messages, with every kind of problem now and then. */
static void gen_envelope(struct buf *b)
{
    static const char *const fields[] = {
        "type",    "room",     "channel", "payload",     "id",         "timestamp",
        "version", "metadata", "sender",  "from_client", "to_client",  "request_id",
        "command", "args",     "status",  "error",       "error_code", "bogus"};
    const char *chosen[24];
    unsigned n = 0;
    /* the usual core, then optional fields */
    if (clean || pick(20))
        chosen[n++] = "type";
    if (clean || pick(6))
        chosen[n++] = "room";
    if (pick(2))
        chosen[n++] = "channel";
    if (clean || pick(20))
        chosen[n++] = "payload";
    for (int i = 4; i < 12; i++)
        if (pick(4) == 0)
            chosen[n++] = fields[i];
    if (!clean && pick(15) == 0)
        chosen[n++] = fields[12 + pick(6)];
    if (!clean && pick(25) == 0 && n) {
        unsigned twin = pick(n);
        chosen[n++] = chosen[twin]; /* a duplicate */
    }
    for (unsigned i = n; i > 1; i--) { /* any order */
        unsigned j = pick(i);
        const char *t = chosen[i - 1];
        chosen[i - 1] = chosen[j];
        chosen[j] = t;
    }
    ws(b);
    puts_(b, "{");
    ws(b);
    for (unsigned i = 0; i < n; i++) {
        if (i) {
            puts_(b, ",");
            ws(b);
        }
        puts_(b, "\"");
        puts_(b, chosen[i]);
        puts_(b, "\"");
        ws(b);
        puts_(b, ":");
        ws(b);
        gen_field_value(b, chosen[i]);
        ws(b);
    }
    puts_(b, "}");
    ws(b);
}

static void mutate(struct buf *b)
{
    static const char bytes[] = "{}[]\",:\\ 0123456789-.eEtrufalsn\x01\x7f\x80\xc3\xff";
    unsigned edits = 1 + pick(3);
    for (unsigned e = 0; e < edits && b->n; e++) {
        size_t at = pick((unsigned)b->n);
        switch (pick(4)) {
        case 0: /* replace */
            b->s[at] = bytes[pick(sizeof bytes - 1)];
            break;
        case 1: /* delete */
            memmove(b->s + at, b->s + at + 1, b->n - at - 1);
            b->n--;
            break;
        case 2: /* insert */
            put(b, " ", 1);
            memmove(b->s + at + 1, b->s + at, b->n - at - 1);
            b->s[at] = bytes[pick(sizeof bytes - 1)];
            break;
        default: /* truncate */
            b->n = at;
            break;
        }
    }
}

static void random_envelopes_agree_with_the_slow_path(void **state)
{
    (void)state;
    const struct env_limits limits[] = {
        ENV_LIMITS_DEFAULT, {0, 3, 8}, {3600000, 1, 128}, {ENV_DEFAULT_MAX_CLOCK_SKEW_MS, 0, 2}};
    static const char *const senders[] = {SENDER, "arqonbus", "s\"q\\", "\xc3\xa9t\xc3\xa9",
                                          "bad\xc3"};
    size_t fast = 0, declined = 0, total = 0;
    struct buf b = {0};
    for (uint64_t seed = 1; seed <= 40000; seed++) {
        rng_state = seed * 0x2545f4914f6cdd1dull;
        clean = seed % 2 == 0;
        b.n = 0;
        gen_envelope(&b);
        const struct env_limits *lim = &limits[pick(8) ? 0 : pick(4)];
        const char *sender = senders[pick(8) ? 0 : pick(5)];
        total++;
        if (differential(b.s, b.n, lim, sender))
            fast++;
        else
            declined++;
        /* the same envelope mutated: mostly broken JSON */
        mutate(&b);
        total++;
        if (differential(b.s, b.n, lim, sender))
            fast++;
        else
            declined++;
    }
    free(b.s);
    print_message("%zu envelopes: %zu took the fast path, %zu declined\n", total, fast, declined);
    /* the generator must exercise both sides */
    assert_true(fast > total / 10);
    assert_true(declined > total / 10);
}

/* Random payloads inside an otherwise typical frame: every one the parser accepts whose value
 * text is already in written form takes the fast path. */
static void random_canonical_payloads_take_the_fast_path(void **state)
{
    (void)state;
    struct buf b = {0};
    size_t fast = 0, accepted = 0;
    for (uint64_t seed = 1; seed <= 20000; seed++) {
        rng_state = seed * 0x9e3779b97f4a7c15ull + 7;
        clean = seed % 2 == 0;
        b.n = 0;
        puts_(&b, "{\"type\":\"message\",\"room\":\"r1\",\"payload\":");
        gen_value(&b, 0);
        puts_(&b, "}");
        struct envelope env;
        struct env_error err;
        if (envelope_parse(b.s, b.n, NOW, NULL, &env, &err) != 0) {
            envelope_error_clear(&err);
            assert_int_equal(differential(b.s, b.n, &default_limits, SENDER), 0);
            continue;
        }
        /* canonical: the payload written back is the payload sent */
        char *payload = envelope_dump(env.payload, NULL);
        assert_non_null(payload);
        size_t off = strlen("{\"type\":\"message\",\"room\":\"r1\",\"payload\":");
        int canonical =
            strlen(payload) == b.n - off - 1 && !memcmp(payload, b.s + off, b.n - off - 1);
        free(payload);
        envelope_release(&env);
        accepted++;
        int took = differential(b.s, b.n, &default_limits, SENDER);
        if (canonical && !took) {
            /* the only canonical texts it may decline: nesting past its own depth and very
             * many keys, which this generator does not make */
            fail_msg("canonical payload declined: %s", b.s);
        }
        fast += took;
    }
    free(b.s);
    print_message("%zu payloads accepted by the parser, %zu took the fast path\n", accepted, fast);
    assert_true(fast > accepted / 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(typical_client_frames_take_the_fast_path),
        cmocka_unit_test(null_known_fields_are_replaced_or_kept_in_place),
        cmocka_unit_test(the_fast_frame_is_the_input_with_generated_fields_appended),
        cmocka_unit_test(other_types_and_fields_the_fast_path_leaves_alone_decline),
        cmocka_unit_test(every_validation_problem_declines),
        cmocka_unit_test(limits_apply_as_in_the_slow_path),
        cmocka_unit_test(non_canonical_text_declines),
        cmocka_unit_test(a_nul_byte_or_a_cut_frame_declines),
        cmocka_unit_test(senders_are_escaped_like_the_slow_path_or_decline),
        cmocka_unit_test(many_keys_and_long_names),
        cmocka_unit_test(random_envelopes_agree_with_the_slow_path),
        cmocka_unit_test(random_canonical_payloads_take_the_fast_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
