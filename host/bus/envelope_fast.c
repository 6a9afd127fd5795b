/* The fast path for `type:"message"` envelopes (envelope.h, "the fast path"): a scanner that
 * accepts only what envelope_parse() accepts and only text that envelope_dumpb() would write
 * back unchanged, so that the outbound frame is the input with a few values spliced in. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "utf8.h"

#define FAST_MAX_DEPTH 64  /* nesting followed here; deeper frames take the slow path  */
#define FAST_MAX_KEYS  256 /* keys of the objects open along one path, for duplicates    */
#define FAST_MAX_NAME  1024
#define FAST_SHORT     64 /* ids and timestamps are checked in a buffer of this size     */

/* What an edit or an appended member writes. */
enum { GEN_ID, GEN_TIMESTAMP, GEN_VERSION, GEN_SENDER };

/* Keys of the generated members, by GEN_*. */
static const char *const fast__gen_keys[] = {"id", "timestamp", "version", "sender"};

/* How an object's members are checked beyond JSON: `metadata` itself, and its vector_clock. */
enum fast__mode { MODE_PLAIN, MODE_METADATA, MODE_VCLOCK };

enum fast__kind { K_OBJECT, K_ARRAY, K_STRING, K_INTEGER, K_REAL, K_LITERAL, K_NULL };

struct fast__value {
    enum fast__kind kind;
    const char *s; /* K_STRING: its raw text between the quotes */
    size_t n;
    int escaped;  /* K_STRING: it has a backslash         */
    int positive; /* K_INTEGER: > 0                       */
    int negative; /* K_INTEGER: < 0                       */
};

struct fast__key {
    const char *s;
    size_t n;
    uint32_t hash;
};

struct fast__state {
    const char *p, *end;
    size_t ws; /* whitespace bytes between tokens */
    size_t nkeys;
    struct fast__key keys[FAST_MAX_KEYS];
};

static void fast__skip_ws(struct fast__state *st)
{
    while (st->p < st->end &&
           (*st->p == ' ' || *st->p == '\t' || *st->p == '\n' || *st->p == '\r')) {
        st->p++;
        st->ws++;
    }
}

/* Length of the UTF-8 sequence at p (before end), 0 when malformed or cut off. */
static size_t fast__utf8(const unsigned char *p, const unsigned char *end)
{
    if (end - p >= 4)
        return utf8_seq_len(p);
    unsigned char tail[5] = {0};
    memcpy(tail, p, (size_t)(end - p));
    return utf8_seq_len(tail);
}

static int fast__hex(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    return -1; /* upper case is valid JSON but envelope_dumpb writes lower case */
}

/* Bytes a string carries as they are: ASCII from the space up (DEL too) but `"` and `\`. */
static const unsigned char fast__plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 10 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 20 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 70 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 80 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 90 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* a0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* b0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* c0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* d0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* e0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* f0 */
};

/* A string at st->p (its opening quote) whose text is what envelope_dumpb writes for it: raw
 * UTF-8 except `"`, `\` and control characters, which are escaped with the short form when
 * there is one and \u00xx otherwise. */
static int fast__string(struct fast__state *st, struct fast__value *v)
{
    const unsigned char *p = (const unsigned char *)st->p + 1;
    const unsigned char *end = (const unsigned char *)st->end;
    v->kind = K_STRING;
    v->escaped = 0;
    for (;;) {
        while (p < end && fast__plain[*p])
            p++;
        if (p == end)
            return -1;
        unsigned c = *p;
        if (c == '"') {
            break;
        } else if (c >= 0x80) {
            size_t k = fast__utf8(p, end);
            if (!k)
                return -1;
            p += k;
        } else if (c == '\\') {
            if (end - p < 2)
                return -1;
            unsigned e = p[1];
            v->escaped = 1;
            if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
                p += 2;
                continue;
            }
            /* \u0000 is refused by the parser; the others with a short form are written so */
            if (e != 'u' || end - p < 6 || p[2] != '0' || p[3] != '0' ||
                (p[4] != '0' && p[4] != '1'))
                return -1;
            int lo = fast__hex(p[5]);
            if (lo < 0)
                return -1;
            int cp = (p[4] - '0') * 16 + lo;
            if (cp == 0 || cp == '\b' || cp == '\t' || cp == '\n' || cp == '\f' || cp == '\r')
                return -1;
            p += 6;
        } else {
            return -1; /* a raw control character */
        }
    }
    v->s = st->p + 1;
    v->n = (size_t)((const char *)p - v->s);
    st->p = (const char *)p + 1;
    return 0;
}

/* 1 when text[p, e), a JSON real, is one that envelope_format_real writes back unchanged,
 * known without formatting it: a plain decimal of at most 15 significant digits (DBL_DIG: it
 * reads back from the double as the same digits, so %.15g is the form chosen) in %g's fixed
 * range (exponent -4 to 14), without trailing zeros but a lone ".0". 0 means "format it to
 * know", not "no". */
static int fast__short_decimal(const char *p, const char *e)
{
    if (*p == '-')
        p++;
    const char *dot = memchr(p, '.', (size_t)(e - p));
    if (!dot || memchr(dot, 'e', (size_t)(e - dot)) || memchr(dot, 'E', (size_t)(e - dot)))
        return 0;
    size_t ints = (size_t)(dot - p), fracs = (size_t)(e - dot - 1);
    if (fracs == 1 && dot[1] == '0')
        return ints <= 15; /* "12.0": %g writes "12", then ".0" */
    if (e[-1] == '0')
        return 0; /* trailing zero: %g drops it */
    if (!(ints == 1 && *p == '0'))
        return ints + fracs <= 15;
    size_t zeros = 0;
    while (zeros < fracs && dot[1 + zeros] == '0')
        zeros++;
    return zeros <= 3 && fracs - zeros <= 15;
}

/* A number whose text is what envelope_dumpb writes for the value jansson reads from it. */
static int fast__number(struct fast__state *st, struct fast__value *v)
{
    const char *p = st->p, *end = st->end, *start = st->p;
    int negative = 0, real = 0;
    if (*p == '-') {
        negative = 1;
        p++;
    }
    if (p == end || *p < '0' || *p > '9')
        return -1;
    const char *digits = p;
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9')
            return -1;
    } else {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    size_t ndigits = (size_t)(p - digits);
    if (p < end && *p == '.') {
        real = 1;
        p++;
        if (p == end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    size_t n = (size_t)(p - start);
    if (!real) {
        int zero = ndigits == 1 && digits[0] == '0';
        if (negative && zero)
            return -1; /* -0 is written 0 */
        /* int64: at most 19 digits, and 19 only up to 9223372036854775807 (808 negative) */
        if (ndigits > 19 ||
            (ndigits == 19 &&
             memcmp(digits, negative ? "9223372036854775808" : "9223372036854775807", 19) > 0))
            return -1;
        v->kind = K_INTEGER;
        v->negative = negative;
        v->positive = !negative && !zero;
    } else {
        if (!fast__short_decimal(start, p)) {
            /* the written form of a double is at most 24 bytes; longer text is not canonical */
            char in[40], out[40];
            if (n >= sizeof in)
                return -1;
            memcpy(in, start, n);
            in[n] = '\0';
            if (envelope_format_real(strtod(in, NULL), out) != n || memcmp(in, out, n) != 0)
                return -1;
        }
        v->kind = K_REAL;
    }
    st->p = p;
    return 0;
}

static int fast__literal(struct fast__state *st, const char *word, size_t n)
{
    if ((size_t)(st->end - st->p) < n || memcmp(st->p, word, n) != 0)
        return -1;
    st->p += n;
    return 0;
}

static uint32_t fast__hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* Keys compare by their text: canonical text is one-to-one with the decoded key. */
static int fast__new_key(struct fast__state *st, size_t base, const struct fast__value *k)
{
    if (st->nkeys == FAST_MAX_KEYS)
        return -1;
    uint32_t h = fast__hash(k->s, k->n);
    for (size_t i = base; i < st->nkeys; i++)
        if (st->keys[i].hash == h && st->keys[i].n == k->n && !memcmp(st->keys[i].s, k->s, k->n))
            return -1; /* duplicate: the parser refuses it */
    st->keys[st->nkeys++] = (struct fast__key){k->s, k->n, h};
    return 0;
}

static int fast__is_id(const struct fast__value *v)
{
    char buf[FAST_SHORT];
    if (v->kind != K_STRING || v->escaped || v->n >= sizeof buf)
        return 0;
    memcpy(buf, v->s, v->n);
    buf[v->n] = '\0';
    return envelope_valid_id(buf);
}

static int fast__value(struct fast__state *st, int budget, enum fast__mode mode,
                       struct fast__value *v);

/* What metadata's own members and a vector clock's members must be (env__check_metadata). */
static int fast__member_ok(enum fast__mode mode, const struct fast__value *k,
                           const struct fast__value *v)
{
    if (mode == MODE_VCLOCK)
        return k->n > 0 && v->kind == K_INTEGER && !v->negative;
    if (mode != MODE_METADATA || v->kind == K_NULL)
        return 1;
    if (k->n == 8 && !memcmp(k->s, "sequence", 8))
        return v->kind == K_INTEGER && v->positive;
    if (k->n == 12 && !memcmp(k->s, "vector_clock", 12))
        return v->kind == K_OBJECT;
    if (k->n == 16 && !memcmp(k->s, "causal_parent_id", 16))
        return fast__is_id(v);
    return 1;
}

static int fast__object(struct fast__state *st, int budget, enum fast__mode mode)
{
    size_t base = st->nkeys;
    if (budget <= 0)
        return -1;
    st->p++;
    fast__skip_ws(st);
    if (st->p < st->end && *st->p == '}') {
        st->p++;
        return 0;
    }
    for (;;) {
        struct fast__value k, v;
        if (st->p == st->end || *st->p != '"' || fast__string(st, &k) ||
            fast__new_key(st, base, &k))
            return -1;
        fast__skip_ws(st);
        if (st->p == st->end || *st->p != ':')
            return -1;
        st->p++;
        fast__skip_ws(st);
        enum fast__mode child = MODE_PLAIN;
        if (mode == MODE_METADATA && k.n == 12 && !memcmp(k.s, "vector_clock", 12))
            child = MODE_VCLOCK;
        if (fast__value(st, budget - 1, child, &v) || !fast__member_ok(mode, &k, &v))
            return -1;
        fast__skip_ws(st);
        if (st->p == st->end)
            return -1;
        if (*st->p == '}')
            break;
        if (*st->p != ',')
            return -1;
        st->p++;
        fast__skip_ws(st);
    }
    st->p++;
    st->nkeys = base;
    return 0;
}

static int fast__array(struct fast__state *st, int budget)
{
    if (budget <= 0)
        return -1;
    st->p++;
    fast__skip_ws(st);
    if (st->p < st->end && *st->p == ']') {
        st->p++;
        return 0;
    }
    for (;;) {
        struct fast__value v;
        if (fast__value(st, budget - 1, MODE_PLAIN, &v))
            return -1;
        fast__skip_ws(st);
        if (st->p == st->end)
            return -1;
        if (*st->p == ']')
            break;
        if (*st->p != ',')
            return -1;
        st->p++;
        fast__skip_ws(st);
    }
    st->p++;
    return 0;
}

/* One value at st->p; `budget` is the nesting it may still have (a scalar needs 0). */
static int fast__value(struct fast__state *st, int budget, enum fast__mode mode,
                       struct fast__value *v)
{
    if (st->p == st->end)
        return -1;
    switch (*st->p) {
    case '{':
        v->kind = K_OBJECT;
        return fast__object(st, budget, mode);
    case '[':
        v->kind = K_ARRAY;
        return fast__array(st, budget);
    case '"':
        return fast__string(st, v);
    case 't':
        v->kind = K_LITERAL;
        return fast__literal(st, "true", 4);
    case 'f':
        v->kind = K_LITERAL;
        return fast__literal(st, "false", 5);
    case 'n':
        v->kind = K_NULL;
        return fast__literal(st, "null", 4);
    default:
        return fast__number(st, v);
    }
}

/* The field named by a key, or -1 for keys the fast path leaves to the parser: unknown ones,
 * and those of commands, responses and errors. */
static int fast__field(const char *s, size_t n)
{
    int f = envelope_field_index(s, n);
    switch (f) {
    case ENV_F_COMMAND:
    case ENV_F_ARGS:
    case ENV_F_STATUS:
    case ENV_F_ERROR:
    case ENV_F_ERROR_CODE:
        return -1;
    default:
        return f;
    }
}

static int fast__edit(struct env_fast *scan, size_t at, size_t len, int what)
{
    if (scan->nedits == (int)(sizeof scan->edits / sizeof *scan->edits))
        return -1;
    scan->edits[scan->nedits].at = at;
    scan->edits[scan->nedits].len = len;
    scan->edits[scan->nedits].what = what;
    scan->nedits++;
    return 0;
}

/* The JSON text length of what GEN_* writes. */
static size_t fast__gen_len(const struct env_fast *scan, int what)
{
    switch (what) {
    case GEN_ID:
        return strlen(scan->gen_id) + 2;
    case GEN_TIMESTAMP:
        return strlen(scan->gen_ts) + 2;
    case GEN_VERSION:
        return 5;
    default:
        return scan->sender_json_len;
    }
}

static int fast__valid_name(const struct fast__value *v, size_t max_len)
{
    char buf[FAST_MAX_NAME + 1];
    if (v->escaped || v->n > FAST_MAX_NAME || v->n > max_len)
        return 0;
    memcpy(buf, v->s, v->n);
    buf[v->n] = '\0';
    return envelope_valid_name(buf, max_len);
}

static int fast__valid_timestamp(const struct fast__value *v, int64_t now_ms,
                                 const struct env_limits *lim, int64_t *ms)
{
    char buf[FAST_SHORT];
    if (v->escaped || v->n >= sizeof buf)
        return 0;
    memcpy(buf, v->s, v->n);
    buf[v->n] = '\0';
    return !envelope_parse_timestamp(buf, ms) && *ms >= 946684800000 /* 2000-01-01 */ &&
           *ms - now_ms <= lim->max_clock_skew_ms;
}

/* One top-level member's value, checked as env__validate checks that field of a message. */
static int fast__member(struct fast__state *st, struct env_fast *scan, int f, int64_t now_ms,
                        const struct env_limits *lim)
{
    struct fast__value v;
    size_t at = (size_t)(st->p - scan->text);
    int budget = lim->max_depth < FAST_MAX_DEPTH ? lim->max_depth : FAST_MAX_DEPTH;
    if (f == ENV_F_PAYLOAD)
        return fast__value(st, budget, MODE_PLAIN, &v) || v.kind == K_NULL ? -1 : 0;
    if (f == ENV_F_METADATA)
        return fast__value(st, budget, MODE_METADATA, &v) ||
                       (v.kind != K_OBJECT && v.kind != K_NULL)
                   ? -1
                   : 0;
    /* every other field is a string or null */
    if (st->p == st->end || (*st->p != '"' && *st->p != 'n') || fast__value(st, 0, MODE_PLAIN, &v))
        return -1;
    size_t len = (size_t)(st->p - scan->text) - at;
    if (v.kind == K_NULL) {
        /* null is absent; the generated value takes its place */
        switch (f) {
        case ENV_F_TYPE:
            return -1;
        case ENV_F_ID:
            return fast__edit(scan, at, len, GEN_ID);
        case ENV_F_TIMESTAMP:
            return fast__edit(scan, at, len, GEN_TIMESTAMP);
        case ENV_F_VERSION:
            return fast__edit(scan, at, len, GEN_VERSION);
        case ENV_F_SENDER:
            return fast__edit(scan, at, len, GEN_SENDER);
        default:
            return 0;
        }
    }
    switch (f) {
    case ENV_F_TYPE:
        return v.n == 7 && !memcmp(v.s, "message", 7) ? 0 : -1;
    case ENV_F_ID:
        if (!fast__is_id(&v))
            return -1;
        scan->id.s = v.s, scan->id.n = v.n;
        return 0;
    case ENV_F_TIMESTAMP:
        if (!fast__valid_timestamp(&v, now_ms, lim, &scan->timestamp_ms))
            return -1;
        scan->timestamp.s = v.s, scan->timestamp.n = v.n;
        return 0;
    case ENV_F_VERSION:
        return v.n == 3 && !memcmp(v.s, "1.0", 3) ? 0 : -1;
    case ENV_F_ROOM:
    case ENV_F_CHANNEL:
        if (!fast__valid_name(&v, lim->max_name_length))
            return -1;
        if (f == ENV_F_ROOM)
            scan->room.s = v.s, scan->room.n = v.n;
        else
            scan->channel.s = v.s, scan->channel.n = v.n;
        return 0;
    case ENV_F_SENDER:
        return fast__edit(scan, at, len, GEN_SENDER);
    case ENV_F_TO_CLIENT:
    case ENV_F_REQUEST_ID:
        if (v.escaped)
            return -1; /* kept simple: copied as is */
        if (f == ENV_F_TO_CLIENT)
            scan->to_client.s = v.s, scan->to_client.n = v.n;
        else
            scan->request_id.s = v.s, scan->request_id.n = v.n;
        return 0;
    default: /* from_client: any string */
        return 0;
    }
}

int envelope_fast_scan(const char *text, size_t len, int64_t now_ms,
                       const struct env_limits *limits, const char *sender, struct env_fast *scan)
{
    static const struct env_limits defaults = ENV_LIMITS_DEFAULT;
    const struct env_limits *lim = limits ? limits : &defaults;
    struct fast__state st;
    unsigned seen = 0, present = 0; /* by ENV_F_*: the key, and a non-null value */

    if (!text || !sender)
        return -1;
    /* A client id is plain ASCII: one pass decides, and the sender is then copied as it is. */
    const unsigned char *sp = (const unsigned char *)sender;
    while (fast__plain[*sp])
        sp++;
    int sender_plain = *sp == '\0';
    if (!sender_plain && !utf8_valid(sender))
        return -1;
    memset(scan, 0, offsetof(struct env_fast, gen_id));
    scan->text = text;
    st.p = text;
    st.end = text + len;
    st.nkeys = 0;
    st.ws = 0;
    fast__skip_ws(&st);
    if (st.p == st.end || *st.p != '{')
        return -1;
    scan->begin = (size_t)(st.p - text);
    st.ws = 0;
    st.p++;
    fast__skip_ws(&st);
    for (;;) {
        struct fast__value k;
        if (st.p == st.end || *st.p != '"' || fast__string(&st, &k) || k.escaped)
            return -1;
        int f = fast__field(k.s, k.n);
        if (f < 0 || (seen & (1u << f)))
            return -1; /* unknown, handled only by the slow path, or a duplicate */
        seen |= 1u << f;
        fast__skip_ws(&st);
        if (st.p == st.end || *st.p != ':')
            return -1;
        st.p++;
        fast__skip_ws(&st);
        const char *value = st.p;
        if (fast__member(&st, scan, f, now_ms, lim))
            return -1;
        if (!(st.p - value == 4 && !memcmp(value, "null", 4)))
            present |= 1u << f;
        fast__skip_ws(&st);
        if (st.p == st.end)
            return -1;
        if (*st.p == '}')
            break;
        if (*st.p != ',')
            return -1;
        st.p++;
        fast__skip_ws(&st);
    }
    st.p++;
    scan->end = (size_t)(st.p - text);
    scan->ws = st.ws;
    fast__skip_ws(&st);
    if (st.p != st.end)
        return -1;
    if (!(present & (1u << ENV_F_TYPE)) || !(present & (1u << ENV_F_PAYLOAD)) ||
        ((present & (1u << ENV_F_CHANNEL)) && !(present & (1u << ENV_F_ROOM))))
        return -1;

    /* Normalise as envelope_parse does: generated id, timestamp and version, then sender. */
    scan->sender = sender;
    scan->sender_len = (size_t)((const char *)sp - sender) + strlen((const char *)sp);
    scan->sender_plain = sender_plain;
    scan->sender_json_len = sender_plain ? scan->sender_len + 2
                                         : envelope_write_string(sender, scan->sender_len, NULL, 0);
    if (!scan->id.s) {
        envelope_new_id(scan->gen_id, now_ms);
        if (!(seen & (1u << ENV_F_ID)))
            scan->append |= 1u << GEN_ID;
    }
    if (!scan->timestamp.s) {
        envelope_format_timestamp(now_ms, scan->gen_ts);
        scan->timestamp_ms = now_ms;
        if (!(seen & (1u << ENV_F_TIMESTAMP)))
            scan->append |= 1u << GEN_TIMESTAMP;
    }
    if (!(seen & (1u << ENV_F_VERSION)))
        scan->append |= 1u << GEN_VERSION;
    if (!(seen & (1u << ENV_F_SENDER)))
        scan->append |= 1u << GEN_SENDER;

    size_t out = scan->end - scan->begin - scan->ws;
    for (int i = 0; i < scan->nedits; i++)
        out = out - scan->edits[i].len + fast__gen_len(scan, scan->edits[i].what);
    for (int g = GEN_ID; g <= GEN_SENDER; g++)
        if (scan->append & (1u << g))
            out += 1 + strlen(fast__gen_keys[g]) + 3 + fast__gen_len(scan, g); /* ,"k":v */
    scan->out_len = out;
    scan->strings_len = (scan->id.s ? scan->id.n : strlen(scan->gen_id)) + 1 +
                        (scan->timestamp.s ? scan->timestamp.n : strlen(scan->gen_ts)) + 1;
    if (scan->room.s)
        scan->strings_len += scan->room.n + 1;
    if (scan->channel.s)
        scan->strings_len += scan->channel.n + 1;
    if (scan->to_client.s)
        scan->strings_len += scan->to_client.n + 1;
    if (scan->request_id.s)
        scan->strings_len += scan->request_id.n + 1;
    return 0;
}

/* --- writing ------------------------------------------------------------------------------- */

/* text[from, to) without the whitespace between tokens (when there is any). */
static char *fast__copy(char *o, const char *p, const char *e, size_t ws)
{
    if (!ws) {
        memcpy(o, p, (size_t)(e - p));
        return o + (e - p);
    }
    int in_string = 0;
    for (; p < e; p++) {
        char c = *p;
        if (in_string) {
            *o++ = c;
            if (c == '\\')
                *o++ = *++p;
            else if (c == '"')
                in_string = 0;
        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            *o++ = c;
            in_string = c == '"';
        }
    }
    return o;
}

static char *fast__quoted(char *o, const char *s)
{
    size_t n = strlen(s);
    *o++ = '"';
    memcpy(o, s, n);
    o += n;
    *o++ = '"';
    return o;
}

static char *fast__gen(char *o, const struct env_fast *scan, int what)
{
    switch (what) {
    case GEN_ID:
        return fast__quoted(o, scan->gen_id);
    case GEN_TIMESTAMP:
        return fast__quoted(o, scan->gen_ts);
    case GEN_VERSION:
        return fast__quoted(o, "1.0");
    default:
        if (scan->sender_plain)
            return fast__quoted(o, scan->sender);
        return o + envelope_write_string(scan->sender, scan->sender_len, o, scan->sender_json_len);
    }
}

/* A NUL-terminated copy of n bytes at s in *strings; NULL when s is. */
static const char *fast__keep(char **strings, const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *out = *strings;
    memcpy(out, s, n);
    out[n] = '\0';
    *strings += n + 1;
    return out;
}

void envelope_fast_write(const struct env_fast *scan, char *out, char *strings,
                         struct envelope *env)
{
    const char *text = scan->text;
    char *o = out;
    size_t at = scan->begin;
    for (int i = 0; i < scan->nedits; i++) {
        o = fast__copy(o, text + at, text + scan->edits[i].at, scan->ws);
        o = fast__gen(o, scan, scan->edits[i].what);
        at = scan->edits[i].at + scan->edits[i].len;
    }
    o = fast__copy(o, text + at, text + scan->end - 1, scan->ws);
    for (int g = GEN_ID; g <= GEN_SENDER; g++) {
        if (!(scan->append & (1u << g)))
            continue;
        *o++ = ',';
        o = fast__quoted(o, fast__gen_keys[g]);
        *o++ = ':';
        o = fast__gen(o, scan, g);
    }
    *o++ = '}';

    memset(env, 0, sizeof *env);
    env->type = ENV_MESSAGE;
    env->id = scan->id.s ? fast__keep(&strings, scan->id.s, scan->id.n)
                         : fast__keep(&strings, scan->gen_id, strlen(scan->gen_id));
    env->timestamp = scan->timestamp.s ? fast__keep(&strings, scan->timestamp.s, scan->timestamp.n)
                                       : fast__keep(&strings, scan->gen_ts, strlen(scan->gen_ts));
    env->timestamp_ms = scan->timestamp_ms;
    env->room = fast__keep(&strings, scan->room.s, scan->room.n);
    env->channel = fast__keep(&strings, scan->channel.s, scan->channel.n);
    env->to_client = fast__keep(&strings, scan->to_client.s, scan->to_client.n);
    env->request_id = fast__keep(&strings, scan->request_id.s, scan->request_id.n);
    env->frame = out;
    env->frame_len = (size_t)(o - out);
}
