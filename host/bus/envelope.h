/* The protocol envelope (docs/protocol.md, "The envelope" and "Errors"): one inbound text frame
 * parsed, validated and normalised; envelopes and server frames serialised compactly.
 *
 * Ownership, stated once: `struct envelope` owns one reference to `root`, and every pointer in
 * it is a borrowed view into `root`, valid until envelope_release() or until that key is
 * replaced. An envelope made by the fast path (envelope_fast_write) has no `root`: its
 * pointers are views into the two buffers the caller gave envelope_fast_write, valid while the
 * caller keeps them. `struct env_error` owns its `id` and `payload`; envelope_error_clear() frees
 * them. Functions ending in `_take` steal the reference they are given, also when they fail.
 *
 * Thread context: every function may be called from any thread; the id generator keeps its
 * random pool and last id per thread.
 *
 * Rules the protocol page leaves open, decided here:
 * - A known field whose value is JSON `null` is treated as absent (it stays in the object).
 * - `id`: `arq_<1-20 digits>_<1-20 digits>_<6 hex>` (hex in either case), or `arq_` + 26
 *   Crockford base32 characters, uppercase only (no I, L, O, U), the first one 0-7 (a ULID
 *   holds 128 bits).
 * - `room` / `channel`: 1-128 bytes, each one of A-Z a-z 0-9 _ . : - (nothing else, no other
 *   restriction).
 * - `timestamp`: YYYY-MM-DD, `T` (or `t` or a space), hh:mm:ss (ss up to 60), optional `.` and
 *   one or more digits (truncated to milliseconds), then `Z`/`z`, `+hh:mm`/`-hh:mm` or nothing
 *   (UTC). It is kept as sent; its instant is `timestamp_ms`.
 * - Free-form values (`payload`, `args`, `metadata`) may nest at most `max_depth` levels
 *   (a scalar is 0, `{}` and `[]` are 1).
 * - Problems are listed in this order: unknown fields in document order, then the fields in
 *   the order of the protocol table (a field's "required for <type>" problem at its place);
 *   `Field 'channel' requires 'room'` comes with `channel`.
 * - `\u0000` in a string is refused by the JSON parser (INVALID_JSON), as are integers outside
 *   the int64 range.
 * - Legacy command shape (`type:"command"`, no top-level `command`, `payload` an object whose
 *   `command` is a string): `command` := payload.command, `args` := payload.parameters unless
 *   `args` is given, and `payload` is removed. A non-object `parameters` is a problem
 *   (`Field 'payload.parameters' must be an object`).
 * - `from_client` is kept as sent; only `sender` is overwritten. */
#ifndef ARQ_HOST_ENVELOPE_H
#define ARQ_HOST_ENVELOPE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Types a client may send. The server also sends "message_response" (not accepted inbound). */
enum env_type {
    ENV_MESSAGE,
    ENV_COMMAND,
    ENV_RESPONSE,
    ENV_ERROR,
    ENV_TELEMETRY,
    ENV_OPERATOR_JOIN
};

/* The envelope's fields (docs/protocol.md, "The envelope"), in the protocol table's order. */
enum env_field {
    ENV_F_ID,
    ENV_F_TIMESTAMP,
    ENV_F_TYPE,
    ENV_F_VERSION,
    ENV_F_ROOM,
    ENV_F_CHANNEL,
    ENV_F_SENDER,
    ENV_F_FROM_CLIENT,
    ENV_F_TO_CLIENT,
    ENV_F_PAYLOAD,
    ENV_F_COMMAND,
    ENV_F_ARGS,
    ENV_F_REQUEST_ID,
    ENV_F_STATUS,
    ENV_F_ERROR,
    ENV_F_ERROR_CODE,
    ENV_F_METADATA,
    ENV_F__COUNT
};
/* The field named by the `n` bytes at `key`, or -1 when it is not one. */
int envelope_field_index(const char *key, size_t n);

struct envelope {
    json_t *root; /* the normalised envelope object (one owned reference); NULL from the
                   * fast path */
    enum env_type type;
    /* NULL when absent (or null); id and timestamp are always set */
    const char *id, *timestamp, *room, *channel, *to_client, *command, *request_id;
    const json_t *payload, *args, *metadata; /* NULL from the fast path */
    int64_t timestamp_ms;                    /* the instant of `timestamp` */
    /* Fast path only: the outbound frame text, exactly what envelope_set_sender() and
     * envelope_dumpb() of the slow path's `root` would give (borrowed; NULL when `root` is
     * set). */
    const char *frame;
    size_t frame_len;
};

struct env_limits {
    int64_t max_clock_skew_ms; /* how far in the future a timestamp may be           */
    int max_depth;             /* nesting allowed in payload, args and metadata       */
    size_t max_name_length;    /* bytes in a room or channel name                     */
};
#define ENV_DEFAULT_MAX_CLOCK_SKEW_MS ((int64_t)24 * 3600 * 1000)
#define ENV_DEFAULT_MAX_DEPTH         32
#define ENV_DEFAULT_MAX_NAME_LENGTH   128
#define ENV_LIMITS_DEFAULT                                                                         \
    {                                                                                              \
        ENV_DEFAULT_MAX_CLOCK_SKEW_MS, ENV_DEFAULT_MAX_DEPTH, ENV_DEFAULT_MAX_NAME_LENGTH          \
    }

struct env_error {
    /* "INVALID_JSON", "VALIDATION_ERROR", or "INTERNAL_ERROR" when memory ran out. Static. */
    const char *code;
    /* Human text, valid UTF-8. INVALID_JSON: "Invalid JSON at line L, column C: <parser's
     * text>" or "Message must be a JSON object"; VALIDATION_ERROR: the first problem, followed
     * by " (and N more)" when there are several (cut at a character boundary to fit);
     * INTERNAL_ERROR: "Out of memory". */
    char text[256];
    char *id;        /* the frame's `id` as sent when it was a string, else NULL (owned)   */
    json_t *payload; /* INVALID_JSON: {"line","column","position"}; VALIDATION_ERROR:
                      * {"errors":[every problem]}; NULL for INTERNAL_ERROR (owned)      */
};

/* Parse one text frame of `len` bytes (need not be NUL-terminated). `limits` NULL means
 * ENV_LIMITS_DEFAULT; `now_ms` is the current time (ms since the epoch) for generated values
 * and the skew check. On success fills `env` and returns 0: `id` is generated (ULID form)
 * when absent, `timestamp` (RFC 3339 UTC with milliseconds) and `version` "1.0" too, and the
 * legacy command shape is converted. Otherwise returns -1, leaves `env` empty and fills `err`
 * (release it with envelope_error_clear()). Allocates nothing beyond jansson's own nodes on
 * success. */
int envelope_parse(const char *text, size_t len, int64_t now_ms, const struct env_limits *limits,
                   struct envelope *env, struct env_error *err);
/* Drop the reference to `root` and empty `env`. Safe on an empty envelope. */
void envelope_release(struct envelope *env);
void envelope_error_clear(struct env_error *err);

/* Overwrite `sender` with the client id (`from_client` is left as sent). 0, or -1 on
 * allocation failure or when client_id is not UTF-8 (the envelope is unchanged). */
int envelope_set_sender(struct envelope *env, const char *client_id);

/* Compact JSON of any value, like jansson's JSON_COMPACT with keys in insertion order, except
 * that reals are written in the shortest of %.15g/%.16g/%.17g that reads back as the same
 * double (0.1 stays 0.1) and always carry a `.` or an exponent. Writes at most `size` bytes
 * to `buf` (no NUL) and returns the length of the whole text, so a caller can size a buffer
 * and call again; 0 on error (NULL value, nesting deeper than 2048). */
size_t envelope_dumpb(const json_t *value, char *buf, size_t size);
/* `n` bytes of UTF-8 as a JSON string (quotes included), escaped as envelope_dumpb() escapes
 * strings. Writes at most `size` bytes (no NUL; `buf` may be NULL when `size` is 0) and returns
 * the length of the whole text. */
size_t envelope_write_string(const char *s, size_t n, char *buf, size_t size);
/* A real as envelope_dumpb() writes it, NUL-terminated; returns its length. */
size_t envelope_format_real(double v, char out[40]);
/* The same text in one malloc'd NUL-terminated buffer (caller frees); `len` (may be NULL)
 * gets its length. NULL on error or allocation failure. */
char *envelope_dump(const json_t *value, size_t *len);

/* --- the fast path (envelope_fast.c) ------------------------------------------------------
 * For the common client frame, a `type:"message"` envelope, without building a jansson tree:
 * one pass validates the whole text (JSON and envelope rules) and records where the routing
 * fields are; a second writes the outbound frame by splicing the input. The rule that keeps it
 * correct: it either gives exactly what envelope_parse() + envelope_set_sender(sender) +
 * envelope_dumpb() would (frame bytes and every field of `struct envelope` except `root`,
 * `payload` and `metadata`), or it declines and the caller runs envelope_parse(). It never
 * reports an error of its own.
 *
 * It declines, among others: any type but "message"; unknown fields and `command`, `args`,
 * `status`, `error`, `error_code`; anything envelope_parse() would refuse; strings whose escapes
 * envelope_dumpb() writes differently (`\/`, `\u0041`, upper-case hex, ...); numbers whose text
 * is not the one envelope_dumpb() writes for their value (`-0`, `1E5`, `1.50`, ...); escapes in
 * `to_client` or `request_id`; timestamps or ids longer than 63 bytes; names longer than 1024
 * bytes; nesting deeper than 64 levels; more than 256 keys in the open objects of one path;
 * a `sender` that is not UTF-8. Whitespace between tokens is accepted and dropped. */
struct env_fast {
    size_t out_len;     /* bytes of the outbound frame text envelope_fast_write writes  */
    size_t strings_len; /* bytes of the NUL-terminated field copies it writes beside it */
    /* the rest is the scan's record, read only by envelope_fast_write */
    const char *text;
    size_t begin, end; /* the root object: text[begin] is '{', text[end - 1] is '}' */
    int ws;            /* whitespace between tokens, to be dropped                  */
    int nedits;
    struct {
        size_t at, len; /* a value in text replaced by a generated one */
        int what;
    } edits[4];
    unsigned append; /* generated members to add before the closing brace */
    struct {
        const char *s; /* NULL: absent */
        size_t n;
    } id, timestamp, room, channel, to_client, request_id;
    const char *sender;
    size_t sender_len, sender_json_len;
    int sender_plain; /* nothing in it to escape: its JSON text is itself in quotes */
    int64_t timestamp_ms;
    char gen_id[32], gen_ts[32];
};

/* Scan `len` bytes of `text` (see envelope_parse() for `now_ms` and `limits`; `sender` is the
 * client id set as `sender`). 0 when the fast path takes the frame: `scan` then says how many
 * bytes envelope_fast_write needs; -1 when it declines (run envelope_parse()). `text` must stay
 * unchanged until envelope_fast_write. Allocates nothing. */
int envelope_fast_scan(const char *text, size_t len, int64_t now_ms,
                       const struct env_limits *limits, const char *sender, struct env_fast *scan);
/* Write the frame text (scan->out_len bytes, no NUL) to `out` and the fields' NUL-terminated
 * copies (scan->strings_len bytes) to `strings`, and fill `env` with views into them (see
 * `struct envelope`). */
void envelope_fast_write(const struct env_fast *scan, char *out, char *strings,
                         struct envelope *env);

/* The error frame {"type":"error","id","timestamp","version":"1.0","request_id","error",
 * "error_code","payload"} in that key order; `request_id` NULL leaves it out; `payload_take`
 * NULL gives {}. `code` and `text` must be UTF-8. NULL on failure. */
json_t *envelope_error_frame(const char *code, const char *text, const char *request_id,
                             json_t *payload_take, int64_t now_ms);

/* 1 when `id` is a valid message id (rules above), else 0. */
int envelope_valid_id(const char *id);
/* 1 when `name` is a valid room or channel name (rules above), else 0. */
int envelope_valid_name(const char *name, size_t max_len);
/* A new message id "arq_" + ULID: 48-bit `now_ms` (clamped to 0..2^48-1) and 80 random bits
 * from getrandom(2), Crockford base32 uppercase, NUL-terminated (30 characters). Ids made in
 * the same millisecond by one thread increase. */
void envelope_new_id(char out[32], int64_t now_ms);
/* Parse an RFC 3339 timestamp (rules above) into ms since the epoch. 0, or -1 when malformed
 * or out of range (no such date, hour 24, ...). */
int envelope_parse_timestamp(const char *s, int64_t *ms_out);
/* "YYYY-MM-DDThh:mm:ss.mmmZ" for `ms` (clamped to years 0000-9999), NUL-terminated. */
void envelope_format_timestamp(int64_t ms, char out[32]);
/* "message", "command", ... */
const char *envelope_type_name(enum env_type type);

#endif
