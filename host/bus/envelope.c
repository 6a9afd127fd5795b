#include "envelope.h"
#include "jsonw.h"
#include "walltime.h"

#include <arqonbus/plugin.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* --- names and ids ------------------------------------------------------------------------- */

static const char env__crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static int env__is_crockford(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return 1;
    return c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U';
}

static int env__is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Advances *p over 1..max digits; 0 when there are none or too many. */
static int env__digits(const char **p, size_t max)
{
    size_t n = 0;
    while (**p >= '0' && **p <= '9') {
        (*p)++;
        if (++n > max)
            return 0;
    }
    return n > 0;
}

int envelope_valid_id(const char *id)
{
    if (!id || strncmp(id, "arq_", 4) != 0)
        return 0;
    const char *p = id + 4;
    size_t i;
    for (i = 0; i < 26 && env__is_crockford((unsigned char)p[i]); i++)
        ;
    if (i == 26 && p[26] == '\0')
        return p[0] <= '7';
    if (!env__digits(&p, 20) || *p++ != '_' || !env__digits(&p, 20) || *p++ != '_')
        return 0;
    for (i = 0; i < 6; i++)
        if (!env__is_hex((unsigned char)p[i]))
            return 0;
    return p[6] == '\0';
}

int envelope_valid_name(const char *name, size_t max_len)
{
    if (!name)
        return 0;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++, n++) {
        unsigned char c = *p;
        if (n == max_len)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return n > 0;
}

/* Per-thread random pool, refilled 256 bytes at a time, and the last id's random part for
 * monotonic ids within one millisecond. */
static _Thread_local struct {
    unsigned char pool[256];
    size_t pos;
    int64_t last_ms;
    unsigned char last[10];
    uint64_t fallback;
} env__rng = {.pos = 256, .last_ms = -1};

static void env__rng_fill(void)
{
    size_t got = 0;
    while (got < sizeof env__rng.pool) {
        ssize_t n = getrandom(env__rng.pool + got, sizeof env__rng.pool - got, 0);
        if (n > 0) {
            got += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            break;
        }
    }
    /* getrandom only fails where it does not exist (ENOSYS); ids must still be unique, so
     * fill the rest from splitmix64 seeded with the time, a counter and a stack address. */
    if (got < sizeof env__rng.pool) {
        uint64_t x =
            env__rng.fallback ^ (uint64_t)(uintptr_t)&got ^ ((uint64_t)env__rng.last_ms << 17);
        for (; got < sizeof env__rng.pool; got++) {
            x += 0x9e3779b97f4a7c15ull;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            env__rng.pool[got] = (unsigned char)(z ^ (z >> 31));
        }
        env__rng.fallback = x;
    }
    env__rng.pos = 0;
}

void envelope_new_id(char out[32], int64_t now_ms)
{
    const int64_t max_ms = ((int64_t)1 << 48) - 1;
    int64_t ms = now_ms < 0 ? 0 : now_ms > max_ms ? max_ms : now_ms;
    unsigned char bytes[16];
    int fresh = 1;

    if (ms == env__rng.last_ms) {
        /* Same millisecond: the previous random part plus one; on overflow, fresh bits. */
        int i = 9;
        while (i >= 0 && ++env__rng.last[i] == 0)
            i--;
        fresh = i < 0;
    }
    if (fresh) {
        if (env__rng.pos + 10 > sizeof env__rng.pool)
            env__rng_fill();
        memcpy(env__rng.last, env__rng.pool + env__rng.pos, 10);
        env__rng.pos += 10;
    }
    env__rng.last_ms = ms;
    for (int i = 0; i < 6; i++)
        bytes[i] = (unsigned char)(ms >> (40 - 8 * i));
    memcpy(bytes + 6, env__rng.last, 10);

    /* 128 bits as 26 base32 digits: two leading zero bits, then 5 bits per character. */
    memcpy(out, "arq_", 4);
    char *o = out + 4;
    unsigned acc = 0;
    int bits = 2;
    for (int i = 0; i < 16; i++) {
        acc = (acc << 8) | bytes[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            *o++ = env__crockford[(acc >> bits) & 31];
        }
        acc &= (1u << bits) - 1;
    }
    *o = '\0';
}

/* --- time ---------------------------------------------------------------------------------- */

void envelope_format_timestamp(int64_t ms, char out[32])
{
    const int64_t lo = -62167219200000; /* 0000-01-01T00:00:00.000Z */
    const int64_t hi = 253402300799999; /* 9999-12-31T23:59:59.999Z */
    ms = ms < lo ? lo : ms > hi ? hi : ms;
    char text[WALLTIME_TEXT_MAX];
    size_t n = walltime_format(ms * 1000, 3, text);
    memcpy(out, text, n + 1);
}

/* Reads exactly n digits. */
static int env__num(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int envelope_parse_timestamp(const char *s, int64_t *ms_out)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, ms = 0, off = 0;
    const char *p = s;
    if (!s || env__num(&p, 4, &y) || *p++ != '-' || env__num(&p, 2, &mo) || *p++ != '-' ||
        env__num(&p, 2, &d))
        return -1;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    if (env__num(&p, 2, &h) || *p++ != ':' || env__num(&p, 2, &mi) || *p++ != ':' ||
        env__num(&p, 2, &sec))
        return -1;
    if (*p == '.') {
        int given = 0;
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        for (; *p >= '0' && *p <= '9'; p++, given++)
            if (given < 3)
                ms = ms * 10 + (*p - '0');
        for (; given < 3; given++) /* ".5" is 500 ms */
            ms *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (env__num(&p, 2, &oh) || *p++ != ':' || env__num(&p, 2, &om) || oh > 23 || om > 59)
            return -1;
        off = sign * (oh * 60 + om);
    }
    if (*p != '\0')
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59 ||
        sec > 60)
        return -1;
    int64_t days = walltime_days_from_civil(y, mo, d);
    *ms_out = (((days * 24 + h) * 60 + mi) * 60 + sec) * 1000 + ms - (int64_t)off * 60000;
    return 0;
}

/* --- serialisation ------------------------------------------------------------------------- */

struct env__out {
    char *buf;
    size_t cap, len;
};

static void env__put(struct env__out *o, const char *s, size_t n)
{
    if (o->len < o->cap)
        memcpy(o->buf + o->len, s, n < o->cap - o->len ? n : o->cap - o->len);
    o->len += n;
}

/* A JSON string: what fits goes to the buffer, then the rest is only counted. A character or
 * escape cut by the end of the buffer is written in part, so the buffer always holds the first
 * bytes of the whole text. */
static void env__put_string(struct env__out *o, const char *s, size_t n)
{
    env__put(o, "\"", 1);
    size_t used = 0;
    if (o->len < o->cap)
        o->len += jsonw_escape(s, n, jsonw_json, JSONW_UTF8_KEEP, o->buf + o->len, o->cap - o->len,
                               &used);
    if (used < n) {
        if (o->len < o->cap) {
            char unit[8];
            size_t k = jsonw_escape(s + used, n - used, jsonw_json, JSONW_UTF8_KEEP, unit,
                                    sizeof unit, NULL);
            memcpy(o->buf + o->len, unit, o->cap - o->len < k ? o->cap - o->len : k);
        }
        o->len += jsonw_escape(s + used, n - used, jsonw_json, JSONW_UTF8_KEEP, NULL, 0, NULL);
    }
    env__put(o, "\"", 1);
}

static void env__put_integer(struct env__out *o, json_int_t v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    /* through unsigned so that the most negative value works */
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    env__put(o, p, (size_t)(tmp + sizeof tmp - p));
}

size_t envelope_format_real(double v, char out[40])
{
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, 38, "%.*g", prec, v);
        if (prec == 17 || strtod(out, NULL) == v)
            break;
    }
    if (n < 0 || n >= 38)
        n = 0;
    if (!strpbrk(out, ".eE")) {
        memcpy(out + n, ".0", 2);
        n += 2;
    }
    out[n] = '\0';
    return (size_t)n;
}

static void env__put_real(struct env__out *o, double v)
{
    char tmp[40];
    env__put(o, tmp, envelope_format_real(v, tmp));
}

static int env__put_value(struct env__out *o, const json_t *v, int depth)
{
    if (depth > 2048)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t klen;
        json_t *child;
        int first = 1;
        env__put(o, "{", 1);
        json_object_keylen_foreach((json_t *)v, key, klen, child)
        {
            if (!first)
                env__put(o, ",", 1);
            first = 0;
            env__put_string(o, key, klen);
            env__put(o, ":", 1);
            if (env__put_value(o, child, depth + 1))
                return -1;
        }
        env__put(o, "}", 1);
        return 0;
    }
    case JSON_ARRAY:
        env__put(o, "[", 1);
        for (size_t i = 0, n = json_array_size(v); i < n; i++) {
            if (i)
                env__put(o, ",", 1);
            if (env__put_value(o, json_array_get(v, i), depth + 1))
                return -1;
        }
        env__put(o, "]", 1);
        return 0;
    case JSON_STRING:
        env__put_string(o, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER:
        env__put_integer(o, json_integer_value(v));
        return 0;
    case JSON_REAL:
        env__put_real(o, json_real_value(v));
        return 0;
    case JSON_TRUE:
        env__put(o, "true", 4);
        return 0;
    case JSON_FALSE:
        env__put(o, "false", 5);
        return 0;
    case JSON_NULL:
        env__put(o, "null", 4);
        return 0;
    }
    return -1;
}

size_t envelope_write_string(const char *s, size_t n, char *buf, size_t size)
{
    struct env__out o = {buf, buf ? size : 0, 0};
    env__put_string(&o, s, n);
    return o.len;
}

size_t envelope_dumpb(const json_t *value, char *buf, size_t size)
{
    struct env__out o = {buf, buf ? size : 0, 0};
    if (!value || env__put_value(&o, value, 0))
        return 0;
    return o.len;
}

char *envelope_dump(const json_t *value, size_t *len)
{
    /* Most frames fit the stack buffer: one pass, one allocation. Larger ones are written
     * again into a buffer of the exact size. */
    char stack[4096];
    size_t n = envelope_dumpb(value, stack, sizeof stack);
    char *out = n ? malloc(n + 1) : NULL;
    if (!out)
        return NULL;
    if (n <= sizeof stack)
        memcpy(out, stack, n);
    else
        envelope_dumpb(value, out, n);
    out[n] = '\0';
    if (len)
        *len = n;
    return out;
}

/* --- errors -------------------------------------------------------------------------------- */

/* Formats into err->text, cutting a truncated text at a character boundary. */
static void env__set_text(struct env_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void env__set_text(struct env_error *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
    if (n < 0) {
        err->text[0] = '\0';
    } else if ((size_t)n >= sizeof err->text) {
        size_t end = sizeof err->text - 1;
        size_t lead = end;
        while (lead > 0 && ((unsigned char)err->text[lead - 1] & 0xc0) == 0x80)
            lead--;
        if (lead > 0) {
            unsigned char c = (unsigned char)err->text[lead - 1];
            size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            if (end - (lead - 1) < need)
                end = lead - 1;
        }
        err->text[end] = '\0';
    }
}

static int env__oom(struct env_error *err)
{
    json_decref(err->payload);
    err->payload = NULL;
    err->code = ARQ_ERR_INTERNAL;
    env__set_text(err, "Out of memory");
    return -1;
}

void envelope_error_clear(struct env_error *err)
{
    if (!err)
        return;
    free(err->id);
    json_decref(err->payload);
    err->id = NULL;
    err->payload = NULL;
    err->code = NULL;
    err->text[0] = '\0';
}

json_t *envelope_error_frame(const char *code, const char *text, const char *request_id,
                             json_t *payload_take, int64_t now_ms)
{
    char id[32], ts[32];
    json_t *f = json_object();
    if (!payload_take)
        payload_take = json_object();
    if (!f || !payload_take || !code || !text)
        goto fail;
    envelope_new_id(id, now_ms);
    envelope_format_timestamp(now_ms, ts);
    if (json_object_set_new(f, "type", json_string("error")) ||
        json_object_set_new(f, "id", json_string(id)) ||
        json_object_set_new(f, "timestamp", json_string(ts)) ||
        json_object_set_new(f, "version", json_string("1.0")) ||
        (request_id && json_object_set_new(f, "request_id", json_string(request_id))) ||
        json_object_set_new(f, "error", json_string(text)) ||
        json_object_set_new(f, "error_code", json_string(code)))
        goto fail;
    if (json_object_set_new(f, "payload", payload_take)) {
        payload_take = NULL; /* set_new consumed it even though it failed */
        goto fail;
    }
    return f;
fail:
    json_decref(payload_take);
    json_decref(f);
    return NULL;
}

/* --- validation ---------------------------------------------------------------------------- */

static const char *const env__names[ENV_F__COUNT] = {
    "id",         "timestamp",   "type",      "version",    "room",    "channel",
    "sender",     "from_client", "to_client", "payload",    "command", "args",
    "request_id", "status",      "error",     "error_code", "metadata"};

static const char *const env__type_names[] = {"message", "command",   "response",
                                              "error",   "telemetry", "operator.join"};

const char *envelope_type_name(enum env_type type)
{
    return (unsigned)type < sizeof env__type_names / sizeof *env__type_names ? env__type_names[type]
                                                                             : "unknown";
}

int envelope_field_index(const char *k, size_t n)
{
    if (n == 0)
        return -1;
    int a = -1, b = -1, c = -1;
    switch (k[0]) {
    case 'a':
        a = ENV_F_ARGS;
        break;
    case 'c':
        a = ENV_F_CHANNEL, b = ENV_F_COMMAND;
        break;
    case 'e':
        a = ENV_F_ERROR, b = ENV_F_ERROR_CODE;
        break;
    case 'f':
        a = ENV_F_FROM_CLIENT;
        break;
    case 'i':
        a = ENV_F_ID;
        break;
    case 'm':
        a = ENV_F_METADATA;
        break;
    case 'p':
        a = ENV_F_PAYLOAD;
        break;
    case 'r':
        a = ENV_F_ROOM, b = ENV_F_REQUEST_ID;
        break;
    case 's':
        a = ENV_F_SENDER, b = ENV_F_STATUS;
        break;
    case 't':
        a = ENV_F_TIMESTAMP, b = ENV_F_TYPE, c = ENV_F_TO_CLIENT;
        break;
    case 'v':
        a = ENV_F_VERSION;
        break;
    default:
        return -1;
    }
    const int candidates[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        int f = candidates[i];
        if (f >= 0 && strlen(env__names[f]) == n && !memcmp(k, env__names[f], n))
            return f;
    }
    return -1;
}

struct env__check {
    json_t *errors; /* made at the first problem: nothing is allocated for a valid frame */
    int oom;
};

static void env__problem(struct env__check *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void env__problem(struct env__check *c, const char *fmt, ...)
{
    va_list ap;
    if (c->oom)
        return;
    if (!c->errors && !(c->errors = json_array()))
        goto oom;
    va_start(ap, fmt);
    json_t *s = json_vsprintf(fmt, ap);
    va_end(ap);
    if (!s || json_array_append_new(c->errors, s))
        goto oom;
    return;
oom:
    c->oom = 1;
}

/* 1 when `v` nests deeper than `limit` levels. Visits each node at most once. */
static int env__deeper_than(const json_t *v, int limit)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        if (limit <= 0)
            return 1;
        json_object_foreach((json_t *)v, k, child)
        {
            if (env__deeper_than(child, limit - 1))
                return 1;
        }
    } else if (json_is_array(v)) {
        if (limit <= 0)
            return 1;
        for (size_t i = 0, n = json_array_size(v); i < n; i++)
            if (env__deeper_than(json_array_get(v, i), limit - 1))
                return 1;
    }
    return 0;
}

/* The string value of field f, or NULL (with a problem when present but not a string). */
static const char *env__string(struct env__check *c, json_t *const *slot, int f)
{
    if (!slot[f])
        return NULL;
    if (!json_is_string(slot[f])) {
        env__problem(c, "Field '%s' must be a string", env__names[f]);
        return NULL;
    }
    return json_string_value(slot[f]);
}

static void env__depth(struct env__check *c, const json_t *v, const char *name, int max_depth)
{
    if (v && env__deeper_than(v, max_depth))
        env__problem(c, "Field '%s' is nested deeper than %d levels", name, max_depth);
}

static void env__check_metadata(struct env__check *c, json_t *md)
{
    json_t *seq = json_object_get(md, "sequence");
    json_t *vc = json_object_get(md, "vector_clock");
    json_t *parent = json_object_get(md, "causal_parent_id");

    if (seq && !json_is_null(seq) && (!json_is_integer(seq) || json_integer_value(seq) < 1))
        env__problem(c, "Field 'metadata.sequence' must be an integer >= 1");
    if (vc && !json_is_null(vc)) {
        const char *k;
        json_t *v;
        if (!json_is_object(vc))
            env__problem(c, "Field 'metadata.vector_clock' must be an object");
        else
            json_object_foreach(vc, k, v)
            {
                if (!k[0])
                    env__problem(c, "Field 'metadata.vector_clock' must not have an empty key");
                else if (!json_is_integer(v) || json_integer_value(v) < 0)
                    env__problem(c, "Field 'metadata.vector_clock.%s' must be an integer >= 0", k);
            }
    }
    if (parent && !json_is_null(parent)) {
        if (!json_is_string(parent))
            env__problem(c, "Field 'metadata.causal_parent_id' must be a string");
        else if (!envelope_valid_id(json_string_value(parent)))
            env__problem(c, "Invalid message ID format in 'metadata.causal_parent_id': %s",
                         json_string_value(parent));
    }
}

struct env__fields {
    json_t *slot[ENV_F__COUNT]; /* present and not null                                 */
    int type;                   /* enum env_type, or -1                                 */
    json_t *legacy_command;     /* the legacy shape's payload.command, else NULL         */
    json_t *legacy_args;        /* its payload.parameters when an object, else NULL      */
    int64_t timestamp_ms;
};

static void env__required(struct env__check *c, const struct env__fields *fs, int f, int types)
{
    if (!fs->slot[f] && fs->type >= 0 && (types & (1 << fs->type)))
        env__problem(c, "Field '%s' is required for %s messages", env__names[f],
                     env__type_names[fs->type]);
}

static void env__validate(struct env__check *c, json_t *root, struct env__fields *fs,
                          int64_t now_ms, const struct env_limits *lim)
{
    json_t *const *slot = fs->slot;
    const char *key, *s;
    json_t *v;

    json_object_foreach(root, key, v)
    {
        int f = envelope_field_index(key, strlen(key));
        if (f < 0)
            env__problem(c, "Unknown field '%s'", key);
        else if (!json_is_null(v))
            fs->slot[f] = v;
    }

    /* type first: the other rules depend on it */
    fs->type = -1;
    if (json_is_string(slot[ENV_F_TYPE])) {
        for (int t = 0; t < (int)(sizeof env__type_names / sizeof *env__type_names); t++)
            if (!strcmp(json_string_value(slot[ENV_F_TYPE]), env__type_names[t]))
                fs->type = t;
    }
    if (fs->type == ENV_COMMAND && !slot[ENV_F_COMMAND] && json_is_object(slot[ENV_F_PAYLOAD])) {
        json_t *cmd = json_object_get(slot[ENV_F_PAYLOAD], "command");
        json_t *params = json_object_get(slot[ENV_F_PAYLOAD], "parameters");
        if (json_is_string(cmd)) {
            fs->legacy_command = cmd;
            if (json_is_object(params) && !slot[ENV_F_ARGS])
                fs->legacy_args = params;
        }
    }

    if ((s = env__string(c, slot, ENV_F_ID)) && !envelope_valid_id(s))
        env__problem(c, "Invalid message ID format: %s", s);

    if ((s = env__string(c, slot, ENV_F_TIMESTAMP))) {
        if (envelope_parse_timestamp(s, &fs->timestamp_ms))
            env__problem(c, "Invalid timestamp: %s", s);
        else if (fs->timestamp_ms < 946684800000) /* 2000-01-01T00:00:00Z */
            env__problem(c, "Timestamp is before 2000-01-01: %s", s);
        else if (fs->timestamp_ms - now_ms > lim->max_clock_skew_ms)
            env__problem(c, "Timestamp is too far in the future: %s", s);
    } else {
        fs->timestamp_ms = now_ms;
    }

    if (!slot[ENV_F_TYPE])
        env__problem(c, "Field 'type' is required");
    else if ((s = env__string(c, slot, ENV_F_TYPE)) && fs->type < 0)
        env__problem(c, "Unsupported message type: %s", s);

    if ((s = env__string(c, slot, ENV_F_VERSION)) && strcmp(s, "1.0") != 0)
        env__problem(c, "Unsupported protocol version: %s", s);

    if ((s = env__string(c, slot, ENV_F_ROOM)) && !envelope_valid_name(s, lim->max_name_length))
        env__problem(c, "Invalid room name: %s", s);
    if ((s = env__string(c, slot, ENV_F_CHANNEL)) && !envelope_valid_name(s, lim->max_name_length))
        env__problem(c, "Invalid channel name: %s", s);
    if (slot[ENV_F_CHANNEL] && !slot[ENV_F_ROOM])
        env__problem(c, "Field 'channel' requires 'room'");

    env__string(c, slot, ENV_F_SENDER);
    env__string(c, slot, ENV_F_FROM_CLIENT);
    env__string(c, slot, ENV_F_TO_CLIENT);

    env__depth(c, slot[ENV_F_PAYLOAD], "payload", lim->max_depth);
    if (fs->legacy_command) {
        json_t *params = json_object_get(slot[ENV_F_PAYLOAD], "parameters");
        if (params && !json_is_null(params) && !json_is_object(params))
            env__problem(c, "Field 'payload.parameters' must be an object");
    }
    env__required(c, fs, ENV_F_PAYLOAD, 1 << ENV_MESSAGE | 1 << ENV_OPERATOR_JOIN);

    env__string(c, slot, ENV_F_COMMAND);
    if (!fs->legacy_command)
        env__required(c, fs, ENV_F_COMMAND, 1 << ENV_COMMAND);

    if (slot[ENV_F_ARGS] && !json_is_object(slot[ENV_F_ARGS]))
        env__problem(c, "Field 'args' must be an object");
    else
        env__depth(c, slot[ENV_F_ARGS], "args", lim->max_depth);

    env__string(c, slot, ENV_F_REQUEST_ID);
    env__required(c, fs, ENV_F_REQUEST_ID, 1 << ENV_RESPONSE);

    if ((s = env__string(c, slot, ENV_F_STATUS)) && strcmp(s, "success") != 0 &&
        strcmp(s, "error") != 0 && strcmp(s, "pending") != 0)
        env__problem(c, "Invalid status: %s", s);
    env__required(c, fs, ENV_F_STATUS, 1 << ENV_RESPONSE);

    env__string(c, slot, ENV_F_ERROR);
    env__required(c, fs, ENV_F_ERROR, 1 << ENV_ERROR);
    env__string(c, slot, ENV_F_ERROR_CODE);

    if (slot[ENV_F_METADATA] && !json_is_object(slot[ENV_F_METADATA])) {
        env__problem(c, "Field 'metadata' must be an object");
    } else if (slot[ENV_F_METADATA]) {
        env__check_metadata(c, slot[ENV_F_METADATA]);
        env__depth(c, slot[ENV_F_METADATA], "metadata", lim->max_depth);
    }
}

/* --- parse --------------------------------------------------------------------------------- */

static int env__invalid_json(struct env_error *err, const json_error_t *jerr)
{
    char text[JSON_ERROR_TEXT_LENGTH];
    /* the parser's text quotes input near the error: keep it ASCII so the frame stays UTF-8 */
    size_t i;
    for (i = 0; i < sizeof text - 1 && jerr->text[i]; i++)
        text[i] = (unsigned char)jerr->text[i] < 0x80 ? jerr->text[i] : '?';
    text[i] = '\0';
    env__set_text(err, "Invalid JSON at line %d, column %d: %s", jerr->line, jerr->column, text);
    err->payload = json_pack("{s:i,s:i,s:i}", "line", jerr->line, "column", jerr->column,
                             "position", jerr->position);
    return err->payload ? -1 : env__oom(err);
}

/* Valid JSON but not an object: point at the value's first byte (1-based column). */
static int env__not_object(struct env_error *err, const char *text, size_t len)
{
    int line = 1, column = 1;
    size_t pos = 0;
    for (; pos < len && text[pos] && strchr(" \t\r\n", text[pos]); pos++) {
        if (text[pos] == '\n')
            line++, column = 1;
        else
            column++;
    }
    env__set_text(err, "Message must be a JSON object");
    err->payload =
        json_pack("{s:i,s:i,s:I}", "line", line, "column", column, "position", (json_int_t)pos);
    return err->payload ? -1 : env__oom(err);
}

static int env__set_generated(json_t *root, const char *key, const char *value, json_t **out)
{
    /* generated ASCII: no UTF-8 checks needed */
    json_t *s = json_string_nocheck(value);
    if (!s || json_object_set_new_nocheck(root, key, s))
        return -1;
    *out = s;
    return 0;
}

int envelope_parse(const char *text, size_t len, int64_t now_ms, const struct env_limits *limits,
                   struct envelope *env, struct env_error *err)
{
    static const struct env_limits defaults = ENV_LIMITS_DEFAULT;
    const struct env_limits *lim = limits ? limits : &defaults;
    struct env__check check = {0};
    struct env__fields fs = {0};
    json_error_t jerr;
    json_t *root;

    memset(env, 0, sizeof *env);
    memset(err, 0, sizeof *err);
    root = json_loadb(text ? text : "", text ? len : 0, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                      &jerr);
    if (!root) {
        /* jansson reports most allocation failures while loading with an empty text */
        if (json_error_code(&jerr) == json_error_out_of_memory || !jerr.text[0])
            return env__oom(err);
        err->code = ARQ_ERR_INVALID_JSON;
        return env__invalid_json(err, &jerr);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        err->code = ARQ_ERR_INVALID_JSON;
        return env__not_object(err, text, len);
    }

    env__validate(&check, root, &fs, now_ms, lim);
    if (check.oom)
        goto oom;
    if (check.errors) {
        size_t n = json_array_size(check.errors);
        const char *first = json_string_value(json_array_get(check.errors, 0));
        err->code = ARQ_ERR_VALIDATION;
        if (n > 1)
            env__set_text(err, "%s (and %zu more)", first, n - 1);
        else
            env__set_text(err, "%s", first);
        if (json_is_string(fs.slot[ENV_F_ID]) &&
            !(err->id = strdup(json_string_value(fs.slot[ENV_F_ID]))))
            goto oom;
        if (!(err->payload = json_pack("{s:o}", "errors", check.errors))) {
            check.errors = NULL; /* "o" consumed it */
            goto oom;
        }
        json_decref(root);
        return -1;
    }

    /* Normalise. Every slot below is a string or object that validation accepted. */
    json_t *id = fs.slot[ENV_F_ID], *ts = fs.slot[ENV_F_TIMESTAMP];
    if (fs.legacy_command) {
        if (json_object_set(root, "command", fs.legacy_command) ||
            (fs.legacy_args && json_object_set(root, "args", fs.legacy_args)))
            goto oom;
        fs.slot[ENV_F_COMMAND] = fs.legacy_command;
        if (fs.legacy_args)
            fs.slot[ENV_F_ARGS] = fs.legacy_args;
        json_object_del(root, "payload"); /* root's new keys hold command and args */
        fs.slot[ENV_F_PAYLOAD] = NULL;
    }
    if (!id) {
        char buf[32];
        envelope_new_id(buf, now_ms);
        if (env__set_generated(root, "id", buf, &id))
            goto oom;
    }
    if (!ts) {
        char buf[32];
        envelope_format_timestamp(now_ms, buf);
        if (env__set_generated(root, "timestamp", buf, &ts))
            goto oom;
    }
    if (!fs.slot[ENV_F_VERSION]) {
        json_t *ver;
        if (env__set_generated(root, "version", "1.0", &ver))
            goto oom;
    }

    env->root = root;
    env->type = (enum env_type)fs.type;
    env->id = json_string_value(id);
    env->timestamp = json_string_value(ts);
    env->timestamp_ms = fs.timestamp_ms;
    env->room = json_string_value(fs.slot[ENV_F_ROOM]);
    env->channel = json_string_value(fs.slot[ENV_F_CHANNEL]);
    env->to_client = json_string_value(fs.slot[ENV_F_TO_CLIENT]);
    env->command = json_string_value(fs.slot[ENV_F_COMMAND]);
    env->request_id = json_string_value(fs.slot[ENV_F_REQUEST_ID]);
    env->payload = fs.slot[ENV_F_PAYLOAD];
    env->args = fs.slot[ENV_F_ARGS];
    env->metadata = fs.slot[ENV_F_METADATA];
    return 0;

oom:
    json_decref(check.errors);
    json_decref(root);
    envelope_error_clear(err);
    return env__oom(err);
}

void envelope_release(struct envelope *env)
{
    if (!env)
        return;
    json_decref(env->root);
    memset(env, 0, sizeof *env);
}

int envelope_set_sender(struct envelope *env, const char *client_id)
{
    if (!env || !env->root || !client_id)
        return -1;
    /* set_new releases the string when it fails */
    return json_object_set_new(env->root, "sender", json_string(client_id)) ? -1 : 0;
}
