/*
 * ArqonBus plugin SDK, ABI 1.1.
 *
 * One self-contained C11 header. A plugin is a shared object that exports exactly one
 * symbol, `arq_plugin_v1`, written by ARQ_PLUGIN(...). Build it with
 * `-fvisibility=hidden`; the host loads it with dlopen(RTLD_NOW | RTLD_LOCAL).
 *
 * ------------------------------------------------------------------------------------------
 * THE RULES (stated once; every function below follows them unless it says otherwise)
 * ------------------------------------------------------------------------------------------
 *
 * Threads.   The host runs one event loop thread (libuv). Every callback the host makes into
 *            a plugin (descriptor functions, vtable functions, timer and post callbacks) runs
 *            on that loop thread, and every host service may be called only from it. The one
 *            exception is `arq_host.post`, which any thread may call to get work back onto
 *            the loop. A plugin callback must never block: no sleeping, no blocking sockets,
 *            no waiting on locks held by other threads. Blocking work goes to a thread of the
 *            plugin's own and comes back through `post`.
 *
 * Ownership. Arguments are borrowed for the duration of the call: the callee copies (or
 *            increfs, for jansson values) whatever it keeps after returning. The exceptions
 *            are named with a `_take` suffix: such a function takes ownership of the argument
 *            so named.
 *
 * Freeing.   A pointer a function returns, or hands to a callback, is BORROWED unless its
 *            comment says NEW. The receiver never releases a borrowed pointer; the comment
 *            says how long it stays valid (without one: until the call or callback returns).
 *            A NEW result belongs to the receiver, who releases it exactly once: a `json_t *`
 *            with json_decref(), any other memory from the host with `arq_host.free` (never
 *            free(): the host may use another allocator). A NEW `json_t *` a plugin returns
 *            to the host is released by the host. Handles (`arq_timer`, `arq_ticket`) are
 *            released by the one function their comment names.
 *
 * Errors.    Functions returning `int` return 0 (ARQ_OK) on success and a negative ARQ_E*
 *            code on failure. Functions that can fail for a user-visible reason take a
 *            `struct arq_error *err`; fill it with arq_error_set() so the host can tell the
 *            operator what went wrong. Never log and return -1 silently.
 *
 * Instances. A module may be instantiated several times (`create` is called once per
 *            instance declared in the configuration), so a plugin keeps no global mutable
 *            state. Everything a plugin registers with the host through its `arq_ctx` (timers,
 *            posts, metrics, ...) is owned by that instance and released by the host when
 *            the instance is destroyed.
 *
 * Lifetime.  For each instance the host calls, on the loop thread:
 *              create -> [start] -> ([reconfigure] ...) -> [stop] -> destroy
 *            `create` runs while a configuration generation is being built aside; it must not
 *            have effects that the running generation could notice (bind listeners in
 *            `start`, not in `create`). If building the generation fails, instances created
 *            for it are destroyed without ever being started.
 *
 * ABI.       The descriptor and every table begin with `struct_size`. Tables only ever grow
 *            at their tail; a new field is read only when `struct_size` says it is there.
 *            The host accepts a plugin with the same ABI major and a minor no newer than its
 *            own. Arrays have no `struct_size`: the stride of an option spec (descriptor
 *            options, command params) is sizeof(struct arq_option) of the minor the plugin
 *            declares, so the host reads a 1.0 plugin's specs with the 1.0 layout (without
 *            `field`). A plugin never hands the host a spec compiled for another minor.
 *            A host service added after 1.0 may be missing or NULL in a host: test it with
 *            ARQ_HOST_HAS before calling it, unless its comment says every 1.x host that
 *            accepts a plugin of its minor has it.
 *
 * New in 1.1: option specs bound to a plugin's config struct (ARQ_OPT_FIELD, arq_host.
 * opt_fill), ARQ_CHOICES, the protocol's error codes as ARQ_ERR_* constants, ARQ_HOST_HAS,
 * the rule on freeing above, and the broker table with its host services. A plugin built
 * against 1.0 loads unchanged, except a broker (its table changed: it was never called).
 */
#ifndef ARQONBUS_PLUGIN_H
#define ARQONBUS_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ARQ_ABI_MAJOR 1
#define ARQ_ABI_MINOR 1

/* The entry symbol every plugin exports, and its type. */
#define ARQ_PLUGIN_ENTRY "arq_plugin_v1"

#if defined(__GNUC__)
#define ARQ_EXPORT       __attribute__((visibility("default")))
#define ARQ_PRINTF(f, a) __attribute__((format(printf, f, a)))
/* clang ignores (and warns about) sentinel on function pointers; gcc checks calls with it. */
#if defined(__clang__)
#define ARQ_SENTINEL
#else
#define ARQ_SENTINEL __attribute__((sentinel))
#endif
#else
#define ARQ_EXPORT
#define ARQ_PRINTF(f, a)
#define ARQ_SENTINEL
#endif

/* jansson's value type, forward-declared so this header does not depend on jansson. */
typedef struct json_t json_t;

/* ---------------------------------------------------------------------------------------- */
/* Return codes                                                                              */
/* ---------------------------------------------------------------------------------------- */

enum arq_status {
    ARQ_OK = 0,
    ARQ_EINVAL = -1,   /* invalid argument or configuration */
    ARQ_ENOMEM = -2,   /* allocation failed */
    ARQ_EIO = -3,      /* I/O or system call failed (see err) */
    ARQ_ENOTSUP = -4,  /* not supported by this host or instance */
    ARQ_EAGAIN = -5,   /* temporarily unavailable; try again later */
    ARQ_ECLOSED = -6,  /* the target (connection, instance) is gone */
    ARQ_ELIMIT = -7,   /* a configured limit was reached */
    ARQ_ENOTFOUND = -8 /* no such thing */
};

/* The protocol's error codes (docs/protocol.md), for reply_error, arq_result_cb and the bus
 * services' results. Compare and send these, never a string typed again. */
#define ARQ_ERR_INVALID_JSON        "INVALID_JSON"
#define ARQ_ERR_VALIDATION          "VALIDATION_ERROR"
#define ARQ_ERR_UNSUPPORTED_FRAME   "UNSUPPORTED_FRAME"
#define ARQ_ERR_UNKNOWN_COMMAND     "UNKNOWN_COMMAND"
#define ARQ_ERR_AUTHENTICATION      "AUTHENTICATION_ERROR"
#define ARQ_ERR_AUTHORIZATION       "AUTHORIZATION_ERROR"
#define ARQ_ERR_RATE_LIMITED        "RATE_LIMITED"
#define ARQ_ERR_NOT_FOUND           "NOT_FOUND"
#define ARQ_ERR_ROOM_NOT_FOUND      "ROOM_NOT_FOUND"
#define ARQ_ERR_CHANNEL_NOT_FOUND   "CHANNEL_NOT_FOUND"
#define ARQ_ERR_CHANNEL_EXISTS      "CHANNEL_EXISTS"
#define ARQ_ERR_EXECUTION           "EXECUTION_ERROR"
#define ARQ_ERR_INTERNAL            "INTERNAL_ERROR"
#define ARQ_ERR_STORAGE_UNAVAILABLE "STORAGE_UNAVAILABLE"
#define ARQ_ERR_METHOD_NOT_ALLOWED  "METHOD_NOT_ALLOWED"
#define ARQ_ERR_PAYLOAD_TOO_LARGE   "PAYLOAD_TOO_LARGE"

/* A user-facing error message. The host prints it with the instance name and config
 * location in front, so write only what went wrong: "cannot open /var/log/x: Permission
 * denied". */
struct arq_error {
    char text[512];
};

/* Fill `err` (if not NULL) with a printf-style message. Returns `code`, so that a failing
 * function can `return arq_error_set(err, ARQ_EIO, "...")`. */
static inline int arq_error_set(struct arq_error *err, int code, const char *fmt, ...)
    ARQ_PRINTF(3, 4);
static inline int arq_error_set(struct arq_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->text, sizeof err->text, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---------------------------------------------------------------------------------------- */
/* Options: what a plugin accepts under `config:`                                           */
/* ---------------------------------------------------------------------------------------- */

/* The host type-checks, range-checks and fills defaults before the plugin sees anything, so
 * the `cfg` a plugin receives contains every declared option (except options with neither a
 * value nor a default, which are absent) with the JSON type given below. Unknown keys are
 * refused by the host. */
enum arq_opt_type {
    ARQ_OPT_BOOL = 1,    /* true/false (also yes/no, on/off)         -> JSON true/false    */
    ARQ_OPT_INT,         /* integer, optional min/max                -> JSON integer       */
    ARQ_OPT_DOUBLE,      /* number, optional min/max                 -> JSON real          */
    ARQ_OPT_STRING,      /* any scalar, as text                      -> JSON string        */
    ARQ_OPT_ENUM,        /* one of `choices`                         -> JSON string        */
    ARQ_OPT_DURATION,    /* "250ms", "20s", "5m", "1h", "2d"; a bare number is seconds
                            (min/max in milliseconds)                -> JSON integer, ms   */
    ARQ_OPT_SIZE,        /* "512", "64KiB", "1MiB", "2GiB", "10kB", "1MB" (min/max in
                            bytes)                                   -> JSON integer, bytes */
    ARQ_OPT_STRING_LIST, /* a sequence of scalars, or one comma-separated scalar (the form
                            a default is written in)                 -> JSON array of strings */
    ARQ_OPT_JSON         /* any YAML value, converted with the YAML 1.2 core schema
                            (plain true/false/null/numbers typed, quoted text is text);
                            its default is written as JSON text      -> any JSON value     */
};

enum arq_opt_flags {
    ARQ_OPT_REQUIRED = 1u << 0,   /* must be given; a default is then meaningless          */
    ARQ_OPT_SECRET = 1u << 1,     /* never printed: logs and status show "<redacted>"      */
    ARQ_OPT_RELOADABLE = 1u << 2, /* a change is applied by `reconfigure`, in place        */
    ARQ_OPT_BOUNDED = 1u << 3     /* `min` and `max` apply (set by the ARQ_OPT_*_RANGE macros) */
};

/* 1.1: the C type of the config struct field an option is bound to (ARQ_FIELD picks it from
 * the field's declaration). What arq_host.opt_fill writes there, by option type:
 *   BOOL                       _Bool, or any integer type: 0 or 1
 *   INT, DURATION, SIZE        any integer type (durations in milliseconds, sizes in bytes;
 *                              a value outside the type's range is refused: bound the option),
 *                              or double
 *   DOUBLE                     double
 *   ENUM                       any integer type: the index of the value in `choices` (so a C
 *                              enum declared in the same order fits); or const char *
 *   STRING                     const char *
 *   STRING_LIST, JSON          const json_t * (an array of strings, any value)
 * Strings and JSON values are borrowed from the `cfg` that was filled from (see opt_fill). */
enum arq_field_kind {
    ARQ_FIELD_NONE = 0, /* not bound: opt_fill skips the option                           */
    ARQ_FIELD_BOOL,     /* _Bool                                                          */
    ARQ_FIELD_INT,      /* int (and a C enum the compiler makes int)                       */
    ARQ_FIELD_UINT,     /* unsigned int (and a C enum the compiler makes unsigned)         */
    ARQ_FIELD_LONG,     /* long (int64_t on LP64)                                          */
    ARQ_FIELD_ULONG,    /* unsigned long (size_t, uint64_t on LP64)                        */
    ARQ_FIELD_LLONG,    /* long long                                                       */
    ARQ_FIELD_ULLONG,   /* unsigned long long                                              */
    ARQ_FIELD_DOUBLE,   /* double                                                          */
    ARQ_FIELD_STR,      /* const char *                                                    */
    ARQ_FIELD_JSON      /* const json_t *                                                  */
};

/* 1.1: where an option's value goes: `offset` bytes into the struct given to opt_fill, as
 * `kind`. All zero: not bound. */
struct arq_field {
    size_t offset;
    int kind; /* enum arq_field_kind                                                       */
};

struct arq_option {
    const char *name; /* key under `config:`; NULL ends the table              */
    enum arq_opt_type type;
    unsigned flags;             /* enum arq_opt_flags                                    */
    const char *default_value;  /* written as in YAML ("9100", "20s", "true"); NULL: none */
    double min, max;            /* inclusive bounds when ARQ_OPT_BOUNDED                 */
    const char *const *choices; /* ARQ_OPT_ENUM: NULL-terminated list of allowed values  */
    const char *help;           /* one line for documentation and error messages         */
    struct arq_field field;     /* 1.1: the bound config field (ARQ_OPT_*_FIELD), or none */
};

/* The field kind of expression `x` (a struct member), chosen by its C type at compile time;
 * any other type does not compile. C11 (_Generic); C++ plugins use ARQ_FIELD_AS. */
#define ARQ_FIELD_KIND_OF(x)                                                                       \
    _Generic((x),                                                                                  \
        _Bool: ARQ_FIELD_BOOL,                                                                     \
        int: ARQ_FIELD_INT,                                                                        \
        unsigned: ARQ_FIELD_UINT,                                                                  \
        long: ARQ_FIELD_LONG,                                                                      \
        unsigned long: ARQ_FIELD_ULONG,                                                            \
        long long: ARQ_FIELD_LLONG,                                                                \
        unsigned long long: ARQ_FIELD_ULLONG,                                                      \
        double: ARQ_FIELD_DOUBLE,                                                                  \
        const char *: ARQ_FIELD_STR,                                                               \
        const json_t *: ARQ_FIELD_JSON)

/* Bind to `member` of struct type `type`: ARQ_FIELD(struct my_cfg, port). */
#define ARQ_FIELD(type_, member_)                                                                  \
    {                                                                                              \
        offsetof(type_, member_), ARQ_FIELD_KIND_OF(((type_ *)0)->member_)                         \
    }
#define ARQ_FIELD_AS(type_, member_, kind_)                                                        \
    {                                                                                              \
        offsetof(type_, member_), (kind_)                                                          \
    }

/* The allowed values of an ARQ_OPT_CHOICE, written inline: ARQ_CHOICES("drain", "keep").
 * A compound literal: use it in a spec at file scope (one inside a function is not static). */
#define ARQ_CHOICES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Table helpers: ARQ_OPT(name, type, default, flags, help), the bounded form, and the enum
 * form (choices: a NULL-terminated array, or ARQ_CHOICES(...)). The _FIELD forms take one
 * more argument, ARQ_FIELD(type, member): the field opt_fill writes the value to, so that
 * the default is written once, here. */
#define ARQ_OPT(name_, type_, def_, flags_, help_)                                                 \
    {                                                                                              \
        (name_), (type_), (unsigned)(flags_), (def_), 0, 0, NULL, (help_),                         \
        {                                                                                          \
            0, ARQ_FIELD_NONE                                                                      \
        }                                                                                          \
    }
#define ARQ_OPT_RANGE(name_, type_, def_, min_, max_, flags_, help_)                               \
    {                                                                                              \
        (name_), (type_), (unsigned)(flags_) | ARQ_OPT_BOUNDED, (def_), (min_), (max_), NULL,      \
            (help_),                                                                               \
        {                                                                                          \
            0, ARQ_FIELD_NONE                                                                      \
        }                                                                                          \
    }
#define ARQ_OPT_CHOICE(name_, choices_, def_, flags_, help_)                                       \
    {                                                                                              \
        (name_), ARQ_OPT_ENUM, (unsigned)(flags_), (def_), 0, 0, (choices_), (help_),              \
        {                                                                                          \
            0, ARQ_FIELD_NONE                                                                      \
        }                                                                                          \
    }
#define ARQ_OPT_FIELD(name_, type_, def_, flags_, help_, field_)                                   \
    {                                                                                              \
        (name_), (type_), (unsigned)(flags_), (def_), 0, 0, NULL, (help_), field_                  \
    }
#define ARQ_OPT_RANGE_FIELD(name_, type_, def_, min_, max_, flags_, help_, field_)                 \
    {                                                                                              \
        (name_), (type_), (unsigned)(flags_) | ARQ_OPT_BOUNDED, (def_), (min_), (max_), NULL,      \
            (help_), field_                                                                        \
    }
#define ARQ_OPT_CHOICE_FIELD(name_, choices_, def_, flags_, help_, field_)                         \
    {                                                                                              \
        (name_), ARQ_OPT_ENUM, (unsigned)(flags_), (def_), 0, 0, (choices_), (help_), field_       \
    }
#define ARQ_OPT_END                                                                                \
    {                                                                                              \
        NULL, (enum arq_opt_type)0, 0, NULL, 0, 0, NULL, NULL,                                     \
        {                                                                                          \
            0, ARQ_FIELD_NONE                                                                      \
        }                                                                                          \
    }

/* ---------------------------------------------------------------------------------------- */
/* Handles owned by the host                                                                 */
/* ---------------------------------------------------------------------------------------- */

typedef struct arq_ctx arq_ctx;         /* one plugin instance, as the host knows it           */
typedef struct arq_timer arq_timer;     /* a timer owned by an instance                        */
typedef struct arq_metric arq_metric;   /* a metric family (name, help, type, label names)     */
typedef struct arq_series arq_series;   /* one labelled series of a family                     */
typedef struct arq_conn arq_conn;       /* a client connection (refcounted, tombstoned)        */
typedef struct arq_request arq_request; /* a command being executed, awaiting its reply     */
typedef struct arq_ticket arq_ticket;   /* an authenticated handshake, until conn_open      */

enum arq_log_level { ARQ_LOG_DEBUG = 0, ARQ_LOG_INFO, ARQ_LOG_WARN, ARQ_LOG_ERROR };

enum arq_metric_type { ARQ_METRIC_COUNTER = 1, ARQ_METRIC_GAUGE, ARQ_METRIC_HISTOGRAM };

/* A telemetry event. Emitted by the host and by plugins through `arq_host.emit`; delivered to
 * telemetry sinks in batches. All strings may be NULL except `event_type`. */
struct arq_event {
    size_t struct_size;
    const char *event_type; /* "client_connected", "reload_ok", ...                         */
    int64_t timestamp_us;   /* microseconds since the Unix epoch; 0 on emit = now            */
    const char *node;       /* filled by the host on emit                                   */
    const char *source;     /* filled by the host: "host" or the emitting instance's name  */
    const char *client_id;
    const char *room;
    const char *channel;
    const char *command;
    json_t *data; /* an object with event details, or NULL                        */
};

/* ---------------------------------------------------------------------------------------- */
/* Connections (transports), commands                                                        */
/* ---------------------------------------------------------------------------------------- */

/* What a transport tells the host about a new connection, at the handshake. */
struct arq_conn_info {
    size_t struct_size;
    const char *transport; /* "websocket", ...                                           */
    const char *peer_addr; /* numeric address of the peer                                */
    int peer_port;
    const char *path;  /* request path without the query                             */
    const char *query; /* raw query string without '?', or NULL                      */
    /* Returns the value of request header `name` (case-insensitive) or NULL. Valid only
     * during conn_open. */
    const char *(*header)(void *tconn, const char *name);
    /* Bound of the connection's outbound queue: a client that falls further behind is
     * disconnected with close code 1013. 0: the host's default. */
    size_t max_queued_bytes;
    /* conn_open: the ticket `auth_handshake` gave for this request (conn_open takes it), or
     * NULL: conn_open then runs the auth chain itself and refuses what it denies. */
    arq_ticket *ticket;
    /* auth_handshake: 1 for a request that opens no bus connection (an HTTP API call), so
     * that connection limits do not apply to it. */
    int request_only;
};

/* Authentication and authorization (see the auth kind below). */
enum arq_auth_verdict {
    ARQ_AUTH_ALLOW = 1,
    ARQ_AUTH_DENY,
    ARQ_AUTH_DEFER,
    ARQ_AUTH_PENDING, /* reserved: an asynchronous answer (not accepted by this host yet)  */
    ARQ_AUTH_RATE_LIMITED
};

/* Who is acting. Strings are borrowed; the host copies what a policy returns before calling
 * that policy again, so a policy may point into scratch memory of its own instance. */
struct arq_principal {
    size_t struct_size;
    const char *subject; /* who: a user id, a token name; NULL for anonymous clients        */
    const char *role;    /* "guest", "user", "admin", or a role the policies define        */
    const char *tenant;  /* NULL when none                                                 */
    json_t *claims;      /* borrowed; may be NULL                                          */
    /* authorize only: the acting connection ("arq_client_…"), NULL for a server-side
     * request (the HTTP API). */
    const char *client_id;
};

/* What a principal wants to do. `action` is one of:
 *   "connect"  open a connection                 (path)
 *   "publish"  send to a room or channel         (room, channel: NULL for the room itself)
 *   "direct"   send to one client                (client_id: the addressee)
 *   "join"     become a member                   (room, channel)
 *   "history"  read stored messages              (room, channel)
 *   "command"  run a command                     (command, group)
 * Fields the action does not use are NULL. */
struct arq_action {
    size_t struct_size;
    const char *action;
    const char *room;
    const char *channel;
    const char *command;
    /* command: its group, the least role its command set declares for it ("guest",
     * "user", "admin"), so that a policy can allow whole groups of commands. */
    const char *group;
    const char *client_id;
    const char *path;
};

struct arq_auth_result {
    size_t struct_size;
    enum arq_auth_verdict verdict;
    struct arq_principal principal; /* ALLOW at the handshake: the identity (see above)    */
    int http_status;                /* DENY at the handshake: 401 or 403                   */
    char reason[256];               /* DENY, RATE_LIMITED: details for the client          */
    uint64_t retry_after_ms;        /* RATE_LIMITED: when the next attempt can succeed     */
    /* RATE_LIMITED: 1 when the client is abusing the limit (the policy's repeated-abuse
     * threshold was passed): the host then disconnects it with 1008. */
    int abusive;
};

/* What the host may ask a transport to do with one of its connections. */
struct arq_conn_ops {
    size_t struct_size;
    /* Frames were queued for this connection (see `arq_host.conn_pending`): arrange to be
     * called back when the socket is writable. Must not write synchronously. */
    void (*want_write)(void *tconn);
    /* Close with a WebSocket close code and reason (<= 123 bytes). Frames already queued
     * (`arq_host.conn_pending`) should be written before the close, within a short deadline;
     * none are queued after it (for 1013, a client too slow for its queue, the host drops
     * them first). The transport later reports the end with `arq_host.conn_closed`. */
    void (*close)(void *tconn, int code, const char *reason);
};

/* Every outbound frame has at least this many writable bytes before its payload, so that a
 * transport can build its frame header in place (libwebsockets needs LWS_PRE = 16). */
#define ARQ_FRAME_HEADROOM 32

/* One queued outbound frame: `len` bytes at `data`, with `headroom` writable bytes reserved
 * just before `data` in which a transport may build its frame header in place. A frame may
 * be shared by many connections; its payload bytes must not be modified. */
struct arq_frame_ref {
    unsigned char *data;
    size_t len;
    size_t headroom;
    int binary;
};

/* 1.1: one routed message as it crosses the broker, either way (arq_broker_ops.publish to the
 * cluster, arq_host.broker_deliver from it). Exactly one of room and to_client is set. */
struct arq_broker_msg {
    size_t struct_size;
    const char *room;          /* the room (with channel, or room-wide), or NULL             */
    const char *channel;       /* NULL: room-wide, or a direct message                       */
    const char *to_client;     /* a direct message: the addressee's client id, or NULL       */
    const unsigned char *data; /* the serialised envelope, as local recipients receive it    */
    size_t len;
    const char *origin; /* the node that routed it (arq_host.node_name)               */
    const char *id;     /* the message's id (the envelope's `id`), or NULL                */
};

/* ---------------------------------------------------------------------------------------- */
/* Host services                                                                             */
/* ---------------------------------------------------------------------------------------- */

typedef void (*arq_timer_cb)(void *arg);
/* The outcome of an asynchronous bus operation (see the server-side APIs of struct arq_host). */
typedef void (*arq_result_cb)(void *arg, const char *error_code, const char *text,
                              const json_t *data);
/* `cancelled` is non-zero when the instance that posted was destroyed before the callback
 * could run; then the callback must only release `arg`. */
typedef void (*arq_post_cb)(void *arg, int cancelled);

struct arq_host {
    size_t struct_size;
    uint32_t abi_major;
    uint32_t abi_minor;
    const char *version; /* host version, e.g. "0.1.0"                                     */

    /* --- identity ---------------------------------------------------------------------- */

    /* The instance's name as declared under `plugins:` ("ws", "audit-log", ...). */
    const char *(*instance_name)(const arq_ctx *ctx);
    /* The node's name (host.node, default: the machine's host name). */
    const char *(*node_name)(const arq_ctx *ctx);

    /* --- logging ----------------------------------------------------------------------- */

    /* Log one structured line: `msg` then key/value string pairs, ended by NULL:
     *   host->log(ctx, ARQ_LOG_INFO, "listening", "addr", "127.0.0.1", "port", "9100", NULL);
     * The host adds time, level and the instance name, and escapes values. Never pass message
     * payloads or SECRET options. */
    void (*log)(arq_ctx *ctx, enum arq_log_level level, const char *msg, ...) ARQ_SENTINEL;
    /* Non-zero when a line at `level` would be written (to skip building costly fields). */
    int (*log_enabled)(const arq_ctx *ctx, enum arq_log_level level);

    /* --- the loop ---------------------------------------------------------------------- */

    /* The host's `uv_loop_t *`, for plugins that integrate libuv-aware libraries (hiredis,
     * libwebsockets). Handles a plugin opens on it must be closed by the plugin before its
     * `destroy` returns. */
    void *(*uv_loop)(arq_ctx *ctx);
    /* Start a timer: `cb(arg)` after `first_ms`, then every `repeat_ms` (0: once). The timer
     * belongs to the instance; it is stopped and freed by `timer_stop` or when the instance
     * is destroyed, whichever comes first. A one-shot timer stays allocated until then.
     * Returns NULL on allocation failure. */
    arq_timer *(*timer_start)(arq_ctx *ctx, uint64_t first_ms, uint64_t repeat_ms, arq_timer_cb cb,
                              void *arg);
    /* Stop and free a timer. `t` may be NULL. Safe from inside its own callback. */
    void (*timer_stop)(arq_timer *t);
    /* ANY THREAD. Run `cb(arg, 0)` on the loop thread soon, in posting order. If the instance
     * is destroyed first, `cb(arg, 1)` runs instead, after `destroy` returned. Returns ARQ_OK,
     * ARQ_ENOMEM, or ARQ_ECLOSED when the host is shutting down (then `cb` is not called and
     * `arg` stays the caller's). */
    int (*post)(arq_ctx *ctx, arq_post_cb cb, void *arg);

    /* --- options (read the validated `cfg` given to create/reconfigure) ----------------- */

    /* The value of option `name`, or `fallback` when absent. Strings are borrowed from
     * `cfg`. */
    int64_t (*opt_int)(const json_t *cfg, const char *name, int64_t fallback);
    double (*opt_double)(const json_t *cfg, const char *name, double fallback);
    int (*opt_bool)(const json_t *cfg, const char *name, int fallback);
    const char *(*opt_str)(const json_t *cfg, const char *name, const char *fallback);
    /* A borrowed JSON value (lists, ARQ_OPT_JSON options), or NULL when absent. */
    const json_t *(*opt_json)(const json_t *cfg, const char *name);

    /* --- metrics ----------------------------------------------------------------------- */

    /* Register (or find) a metric family. `name` follows Prometheus rules and conventions
     * (`arqonbus_` prefix, base units, `_total` for counters). `label_names` is NULL or a
     * NULL-terminated list. `buckets` (histograms only) are ascending upper bounds, or NULL
     * for the default latency buckets. Registering an existing name with the same type and
     * labels returns the same family (so a replaced instance continues its counters);
     * anything else returns NULL. The instance holds a reference until it is destroyed. */
    arq_metric *(*metric_register)(arq_ctx *ctx, enum arq_metric_type type, const char *name,
                                   const char *help, const char *const *label_names,
                                   const double *buckets, size_t nbuckets);
    /* The series for `label_values` (exactly as many as label_names; NULL when none),
     * created on first use. The pointer stays valid while the family is registered: look it
     * up once and keep it for the hot path. NULL on allocation failure or a wrong count. */
    arq_series *(*metric_series)(arq_metric *m, const char *const *label_values);
    /* Counter: add v >= 0. Gauge: add v (may be negative). */
    void (*metric_add)(arq_series *s, double v);
    /* Gauge: set to v. */
    void (*metric_set)(arq_series *s, double v);
    /* Histogram: record one observation (in base units: seconds, bytes). */
    void (*metric_observe)(arq_series *s, double v);
    /* NEW: every registered metric in Prometheus text exposition format 0.0.4. NULL on
     * allocation failure. */
    char *(*metrics_render)(arq_ctx *ctx);

    /* --- telemetry --------------------------------------------------------------------- */

    /* Queue a telemetry event for the sinks. The host copies what it needs (and increfs
     * `ev->data`); it never blocks and never fails the caller: when the bounded queue is
     * full the event is dropped and counted in arqonbus_telemetry_dropped_total. */
    void (*emit)(arq_ctx *ctx, const struct arq_event *ev);
    /* NEW: the event as one line of JSON (no newline), NULL on allocation failure:
     * {"event_type":…,"timestamp":"<RFC 3339, microseconds, Z>","node":…,"source":…,
     *  "client_id"?,"room"?,"channel"?,"command"?,"data"?}. */
    char *(*event_json)(const struct arq_event *ev);

    /* --- memory ------------------------------------------------------------------------ */

    /* Release a NEW result of the host that is not a `json_t *` (see Freeing at the top).
     * NULL is allowed. */
    void (*free)(void *p);

    /* --- connections (called by transports) --------------------------------------------- */

    /* A handshake completed: register a connection. `tconn` is the transport's handle, passed
     * back to `ops`. Returns the host's connection, or NULL when the host refuses it (the
     * transport then closes the socket). */
    arq_conn *(*conn_open)(arq_ctx *ctx, const struct arq_conn_info *info,
                           const struct arq_conn_ops *ops, void *tconn);
    /* One complete inbound message (fragments already joined). */
    void (*conn_recv)(arq_conn *conn, const void *data, size_t len, int binary);
    /* Up to `max` queued outbound frames, oldest first, without removing them. */
    size_t (*conn_pending)(arq_conn *conn, struct arq_frame_ref *out, size_t max);
    /* The first `n` frames returned by conn_pending were written; drop them. */
    void (*conn_consumed)(arq_conn *conn, size_t n);
    /* The connection ended (peer closed, error, or after ops->close). After this call the
     * host never uses `tconn` again and the transport must not use `conn`. */
    void (*conn_closed)(arq_conn *conn, int code, const char *reason);

    /* --- command replies (called by command handlers) ----------------------------------- */

    /* Complete a command with success. `data` is borrowed (may be NULL). Exactly one reply
     * per request; a reply to a request whose client has left is a safe no-op. */
    void (*reply_ok)(arq_request *req, const char *message, const json_t *data);
    /* Complete a command with an error code of the protocol (ARQ_ERR_EXECUTION, ...). */
    void (*reply_error)(arq_request *req, const char *error_code, const char *text);

    /* --- connections, continued ------------------------------------------------------- */

    /* The client id, "arq_client_<32 hex>". Valid while `conn` is. */
    const char *(*conn_client_id)(const arq_conn *conn);
    /* Change the outbound queue bound of a live connection (a RELOADABLE transport option). */
    void (*conn_set_limit)(arq_conn *conn, size_t max_queued_bytes);

    /* --- the bus (for command sets and server-side APIs) ------------------------------ */
    /* Functions returning `const char *` return NULL on success, or the protocol's error
     * code (ARQ_ERR_ROOM_NOT_FOUND, _CHANNEL_NOT_FOUND, _CHANNEL_EXISTS, _EXECUTION,
     * _NOT_FOUND, _VALIDATION; a static string) with a human text in `err`. `channel` NULL
     * means the room itself. */

    /* Make `conn` a member. Joining a channel that does not exist creates it unless the host
     * is configured with auto_create off. Joining twice is not an error. */
    const char *(*bus_join)(arq_conn *conn, const char *room, const char *channel,
                            struct arq_error *err);
    /* End a membership (ARQ_ERR_NOT_FOUND when `conn` was not a member). */
    const char *(*bus_leave)(arq_conn *conn, const char *room, const char *channel,
                             struct arq_error *err);
    const char *(*bus_create_channel)(arq_ctx *ctx, const char *room, const char *channel,
                                      const char *description, struct arq_error *err);
    /* Refused with ARQ_ERR_EXECUTION while it has members, unless `force`. */
    const char *(*bus_delete_channel)(arq_ctx *ctx, const char *room, const char *channel,
                                      int force, struct arq_error *err);
    /* Close a client's connection with 1008 and `reason` (ARQ_ERR_NOT_FOUND if no such
     * client). */
    const char *(*bus_disconnect)(arq_ctx *ctx, const char *client_id, const char *reason,
                                  struct arq_error *err);
    /* NEW: a JSON value describing part of the bus, or NULL with the error code in *code
     * and text in err. `what` (docs/plugins.md lists every field):
     *   "rooms"    [{room, members, channels}]
     *   "channels" [{channel, members, description, created_at, last_activity}] of `room`
     *   "channel"  the same for one channel plus members (client ids) and message counters
     *   "client"   {client_id, role, memberships:[{room, channel?}], limits} of `conn`
     *   "status"   {uptime_seconds, version, node, clients, rooms, channels, plugins, reloads}
     *   "commands" [{name, summary, params, role}] of every loaded command set
     * `conn`, `room` and `channel` are used where `what` needs them. */
    json_t *(*bus_query)(arq_ctx *ctx, arq_conn *conn, const char *what, const char *room,
                         const char *channel, const char **code, struct arq_error *err);
    /* Start a configuration reload; the host answers `req` with its result (once the reload
     * has run: later than this call). */
    void (*bus_reload)(arq_ctx *ctx, arq_request *req);
    /* Answer `req` with history: `args` as the `history` command declares them (room,
     * channel?, limit, since?, until?, since_offset?, epoch?). With `join`, `conn` first joins
     * room/channel, and no message falls between the history and what it receives live (none
     * twice either). The host replies {entries:[{envelope, stored_at, offset}], count, epoch,
     * recovered} (with join: inside {room, channel?, memberships, history}), or
     * ARQ_ERR_STORAGE_UNAVAILABLE when no storage can answer. */
    void (*bus_history)(arq_ctx *ctx, arq_request *req, arq_conn *conn, const json_t *args,
                        int join);

    /* --- retiring ---------------------------------------------------------------------- */

    /* Only from the descriptor's `stop`: keep this retired instance after `stop` returns, so
     * that it can finish what it has (a transport serving the clients it already holds while
     * its successor takes new ones). The host then destroys it after `retire_release`, or
     * when the process stops, whichever comes first. */
    void (*retire_hold)(arq_ctx *ctx);
    /* A held instance is done: the host destroys it soon, never inside this call. */
    void (*retire_release)(arq_ctx *ctx);

    /* --- server-side APIs (the HTTP transport, admin tools) ---------------------------- */
    /* Results come through an arq_result_cb: `error_code` NULL and `data` on success, else
     * the protocol's error code (ARQ_ERR_*) and a text. Called once, possibly before the
     * function returns. */

    /* 1 while the host accepts clients: started, and not stopping. */
    int (*bus_ready)(arq_ctx *ctx);
    /* Publish on behalf of the server. `message` (borrowed) is {room, channel?, to_client?,
     * payload, metadata?}; the envelope gets an id, a timestamp and sender "arqonbus", and is
     * routed like a client's (no membership needed). data: {id, delivered, offset?, epoch?}. */
    void (*bus_publish)(arq_ctx *ctx, const json_t *message, arq_result_cb cb, void *arg);
    /* A history query with the `history` command's arguments (borrowed); data as that
     * command returns it. */
    void (*bus_history_query)(arq_ctx *ctx, const json_t *args, arq_result_cb cb, void *arg);
    /* Reload the configuration; data {generation} once it succeeded. */
    void (*bus_reload_async)(arq_ctx *ctx, arq_result_cb cb, void *arg);

    /* --- auth (transports) --------------------------------------------------------------- */

    /* Run the connection limits and the auth chain on a handshake request, before answering
     * it (`info` and `tconn` as for conn_open; `info->header` must work during this call).
     * ALLOW: *ticket is set; out->principal points into it. Pass it to conn_open in
     * arq_conn_info.ticket, or release it with auth_ticket_free. DENY (or a limit):
     * *ticket is NULL; answer with out->http_status (401, 403, 429 or 503), a JSON body
     * {"error":"<status text>","details":out->reason} and, for 429, a Retry-After of
     * out->retry_after_ms; never upgrade. */
    enum arq_auth_verdict (*auth_handshake)(arq_ctx *ctx, const struct arq_conn_info *info,
                                            void *tconn, arq_ticket **ticket,
                                            struct arq_auth_result *out);
    /* Release a ticket conn_open did not take. NULL is allowed. */
    void (*auth_ticket_free)(arq_ticket *ticket);
    /* May the ticket's principal do `what` (a server-side request: client_id is NULL)?
     * ALLOW, DENY or RATE_LIMITED, with `out` filled as authorize fills it. */
    enum arq_auth_verdict (*auth_authorize)(arq_ctx *ctx, const arq_ticket *ticket,
                                            const struct arq_action *what,
                                            struct arq_auth_result *out);

    /* --- 1.1: options bound to fields ------------------------------------------------- */

    /* Write every option of `spec` that has a field (ARQ_OPT_*_FIELD) and a value in `cfg`
     * into the struct at `out`, converted as enum arq_field_kind says. `cfg` is a validated
     * configuration of that spec: create's or reconfigure's `cfg` with the plugin's
     * `options`, or a handler's `args` with the command's `params`. An option without a
     * value (neither given nor defaulted) leaves its field as it is. All or nothing: on a
     * value its field cannot hold (5000000000 for an int: bound the option), `out` is left
     * unchanged, `err` names the option, and ARQ_EINVAL is returned. Strings and JSON values
     * are borrowed from `cfg`: the `cfg` given to create stays valid until the instance is
     * destroyed or a reconfigure succeeds; the one given to reconfigure, from its success
     * until the next success or destroy (so fill a new struct in reconfigure and switch to
     * it on success). Every host that accepts a 1.1 plugin has this service. */
    int (*opt_fill)(const json_t *cfg, const struct arq_option *spec, void *out,
                    struct arq_error *err);

    /* --- 1.1: the broker (called by broker plugins; see struct arq_broker_ops) -------- */
    /* A host may leave these NULL: a broker plugin checks them with ARQ_HOST_HAS in
     * `create` and refuses with ARQ_ENOTSUP when one is missing. */

    /* Traffic from another node: deliver `msg` (borrowed; the host copies the frame) to
     * this node's local recipients, as it delivers what it routes itself: members of
     * room/channel, or the local client `to_client`. Never sent back to the broker. A
     * message whose `origin` is this node is dropped. */
    void (*broker_deliver)(arq_ctx *ctx, const struct arq_broker_msg *msg);
    /* The broker (re)connected and may have lost what it told the cluster: within this
     * call, the host calls its subscribe for every local room and channel with members
     * (forget your own list of subscriptions first), register_client for every local
     * client, and presence for every membership. */
    void (*broker_resync)(arq_ctx *ctx);

    /* --- 1.1: cluster-wide queries ----------------------------------------------------- */

    /* bus_query answered through `cb` (once, possibly before this returns): with a broker
     * that answers queries, "rooms", "channels" and "channel" describe the whole cluster
     * (members on every node; counters and descriptions as this node knows them), "status"
     * adds the nodes the broker sees. Without one, the same as bus_query. */
    void (*bus_query_async)(arq_ctx *ctx, arq_conn *conn, const char *what, const char *room,
                            const char *channel, arq_result_cb cb, void *arg);
};

/* Non-zero when `host` has service `member`: its table reaches that far (struct_size) and
 * the entry is set. For services added after 1.0 (see ABI at the top):
 *   if (!ARQ_HOST_HAS(host, broker_deliver)) return arq_error_set(err, ARQ_ENOTSUP, ...); */
#define ARQ_HOST_HAS(host, member)                                                                 \
    ((host)->struct_size >= offsetof(struct arq_host, member) + sizeof((host)->member) &&          \
     (host)->member != NULL)

/* Convenience: the series of metric `name` labelled instance="<this instance's name>",
 * registering the family on first use (histograms get the default buckets). NULL when the
 * host refuses the metric. Loop thread, like metric_register. */
static inline arq_series *arq_instance_series(const struct arq_host *host, arq_ctx *ctx,
                                              enum arq_metric_type type, const char *name,
                                              const char *help)
{
    static const char *const labels[] = {"instance", NULL};
    const char *values[] = {host->instance_name(ctx), NULL};
    arq_metric *m = host->metric_register(ctx, type, name, help, labels, NULL, 0);
    return m ? host->metric_series(m, values) : NULL;
}

/* Convenience: log with the sentinel written for you. */
#define ARQ_LOG(host, ctx, level, ...) (host)->log((ctx), (level), __VA_ARGS__, (const char *)NULL)

/* ---------------------------------------------------------------------------------------- */
/* Kinds and their vtables                                                                   */
/* ---------------------------------------------------------------------------------------- */

enum arq_kind {
    ARQ_KIND_TRANSPORT = 1,
    ARQ_KIND_STORAGE,
    ARQ_KIND_COMMANDS,
    ARQ_KIND_AUTH,
    ARQ_KIND_TELEMETRY,
    ARQ_KIND_BROKER
};

/* transport: accepts connections and moves bytes; knows nothing of rooms or JSON. Listening
 * sockets are opened in the descriptor's `start` (which may inherit them from its
 * predecessor) and closed in `stop`. */
struct arq_transport_ops {
    size_t struct_size;
    /* Write what `arq_host.conn_pending` holds for `tconn` (after want_write). Required by
     * transports that open bus connections; NULL for those that do not (HTTP). */
    void (*flush)(void *self, void *tconn);
    /* Optional. The port actually bound (useful with port 0), or -1. */
    int (*bound_port)(void *self);
};

/* A stored message as storage sees it. */
struct arq_stored {
    size_t struct_size;
    const char *room;
    const char *channel; /* NULL for room-wide messages                                  */
    const char *id;
    int64_t timestamp_us; /* the envelope's timestamp                                    */
    const char *json;     /* the serialised envelope                                      */
    size_t json_len;
    uint64_t offset;   /* history: the message's offset in its channel (from 1)          */
    int64_t stored_us; /* history: when storage accepted it                              */
};

/* A history query. Without `recover`: the newest `limit` messages stored in
 * [since_us, until_us] (0: unbounded), oldest first. With `recover`: when `epoch` is the
 * channel's epoch (or `epoch` is NULL and since_offset is 0) and the history still holds the
 * message after `since_offset`, the messages after since_offset, oldest first, at most
 * `limit`, and recovered = 1; otherwise as without `recover`, with recovered = 0. */
struct arq_history_query {
    size_t struct_size;
    const char *room;
    const char *channel;        /* NULL: room-wide                                          */
    unsigned limit;             /* 1..1000                                                  */
    int64_t since_us, until_us; /* 0: unbounded                                             */
    int recover;                /* since_offset and epoch apply                             */
    uint64_t since_offset;
    const char *epoch; /* NULL: none                                                     */
};

/* The result of a history query: `status` ARQ_OK, or ARQ_EAGAIN when the backend cannot
 * answer now (strict mode with Redis down). `entries[i]` and `epoch` are borrowed for the
 * callback's duration; `epoch` is the channel's current epoch (a new channel gets one). */
typedef void (*arq_history_cb)(void *arg, int status, const struct arq_stored *const *entries,
                               size_t n, const char *epoch, int recovered);
/* The result of an append: ARQ_OK with the message's offset in its channel and the channel's
 * epoch, or an error (offset 0, epoch NULL). Called once, possibly before append returns. */
typedef void (*arq_append_cb)(void *arg, int status, uint64_t offset, const char *epoch);

/* Every append and query callback is called exactly once: a storage instance destroyed with
 * requests still pending calls their callbacks (status ARQ_ECLOSED) before `destroy`
 * returns, because the host holds resources (a client's ack, a paused join) until then. */
struct arq_storage_ops {
    size_t struct_size;
    /* MANDATORY. Store a message (every field borrowed: copy what you keep); `cb` (may be
     * NULL) gets its offset and epoch, possibly later. Never blocks. Messages of one channel
     * get increasing offsets in the order append is called. */
    int (*append)(void *self, const struct arq_stored *msg, arq_append_cb cb, void *arg);
    /* MANDATORY. Answer a history query through `cb`, possibly later. */
    int (*query)(void *self, const struct arq_history_query *q, arq_history_cb cb, void *arg);
    /* Optional. 0 healthy, 1 degraded, 2 down; `detail` (may be NULL) says why. */
    int (*health)(void *self, const char **detail);
    /* Optional. NEW: a JSON object with backend statistics (the host releases it). */
    json_t *(*stats)(void *self);
};

/* commands: a table of commands. The host validates `args` against `params` and checks
 * `role` before calling `handler`, and guarantees one reply per request. */
struct arq_command {
    const char *name;                /* NULL ends the table                                       */
    const char *summary;             /* one line for `help`                                       */
    const struct arq_option *params; /* argument spec (same rules as options), or NULL       */
    const char *role;                /* least role required by default: "guest", "user", "admin" */
    /* Reply now or later with arq_host.reply_ok / reply_error. `args` are validated. */
    void (*handler)(void *self, arq_request *req, arq_conn *conn, const json_t *args);
};

struct arq_commands_ops {
    size_t struct_size;
    const struct arq_command *commands; /* MANDATORY                                         */
};

/* auth: policies, run as a chain in the order the configuration declares them (file order,
 * then order within a file). At the handshake each policy's `authenticate` answers in turn
 * until one does not DEFER; for every publish, join, command and history read each policy's
 * `authorize` does the same. When every policy DEFERs, the host applies its own defaults
 * (`bus.default_role` at the handshake; the command's declared role for commands; allowed
 * for the rest). */
struct arq_auth_ops {
    size_t struct_size;
    /* At least one of authenticate and authorize is MANDATORY.
     * At the handshake, before any upgrade: decide from the request (`info`, whose `header`
     * callback reads request headers with `tconn`). ALLOW fills out->principal; DENY fills
     * out->http_status (401 or 403) and out->reason. */
    enum arq_auth_verdict (*authenticate)(void *self, const struct arq_conn_info *info, void *tconn,
                                          struct arq_auth_result *out);
    /* May `who` do `what`? ALLOW, DENY (out->reason), DEFER, or RATE_LIMITED
     * (out->retry_after_ms, out->reason, out->abusive). Called on the routing path: keep it
     * cheap, never block. */
    enum arq_auth_verdict (*authorize)(void *self, const struct arq_principal *who,
                                       const struct arq_action *what, struct arq_auth_result *out);
    /* Optional. After a reload, for every connected client this policy (same instance name)
     * admitted: ALLOW with out->principal updates its identity (a role changed in the
     * configuration), DENY disconnects it with 1008 (its credential was revoked), DEFER
     * leaves it as it is. */
    enum arq_auth_verdict (*refresh)(void *self, const struct arq_principal *who,
                                     struct arq_auth_result *out);
};

struct arq_telemetry_ops {
    size_t struct_size;
    /* MANDATORY. Consume a batch (borrowed). Called from the loop after I/O, never from the
     * routing path; keep it short. */
    void (*emit_batch)(void *self, const struct arq_event *const *events, size_t n);
};

/* broker: scale-out across nodes (1.1; the 1.0 table was never called, and a broker built
 * against 1.0 is refused). The host calls it on the loop thread, never blocks on it, and
 * keeps routing locally whatever it answers: each function queues its work and returns at
 * once (ARQ_OK, or ARQ_EAGAIN while disconnected: the broker counts the loss in its
 * metrics, and the host goes on). The broker keeps its own connection, reconnects on its
 * own, and after losing what it had told the cluster asks for it again with
 * arq_host.broker_resync. Remote traffic comes back through arq_host.broker_deliver. Every
 * argument is borrowed: copy what you keep. */
struct arq_broker_ops {
    size_t struct_size;
    /* MANDATORY. A message this node routed, once whatever the number of recipients: send
     * it to the nodes with members of msg->room (channel) or, for a direct message, to the
     * node holding msg->to_client (register_client). Not back to msg->origin. */
    int (*publish)(void *self, const struct arq_broker_msg *msg);
    /* MANDATORY. This node's first local member of `room` (`channel` NULL: a room-wide
     * member) joined: receive that traffic from now on. unsubscribe: its last one left. The
     * host calls each once per change (never twice in a row for the same pair). */
    int (*subscribe)(void *self, const char *room, const char *channel);
    int (*unsubscribe)(void *self, const char *room, const char *channel);
    /* MANDATORY. A client connected here: record client_id -> this node in the cluster's
     * registry with a time to live, which the broker refreshes (its heartbeat) until
     * unregister_client or until the node dies, so that direct messages find it. Before
     * unregister_client, the host ends each of the client's memberships with presence. */
    int (*register_client)(void *self, const char *client_id);
    int (*unregister_client)(void *self, const char *client_id);
    /* MANDATORY. Presence: connection `client_id` joined (`joined` 1) or left (0) `room`
     * (`channel` NULL: the room itself). It lives as long as this node does: a dead node's
     * members leave the cluster's listings within the registry's time to live. */
    int (*presence)(void *self, const char *client_id, const char *room, const char *channel,
                    int joined);
    /* Optional. A cluster-wide question, answered once through `cb` (possibly before this
     * returns), with data: "rooms" [{room, members, channels}] (members: memberships in the
     * room and its channels; channels: channels with members), "channels" [{channel,
     * members}] of `room`, "members" [client ids] of `room` (`channel` NULL: its room-wide
     * members) or of the channel, "nodes" [{node, clients}] of the live nodes, "client"
     * {node} holding client id `room` (ARQ_ERR_NOT_FOUND when no live node holds it); or an
     * error code (ARQ_ERR_EXECUTION while the broker cannot answer). Every query is
     * answered, also one pending when the broker is stopped (then with ARQ_ERR_EXECUTION,
     * before destroy returns). Without it, the host answers from this node alone. */
    int (*query)(void *self, const char *what, const char *room, const char *channel,
                 arq_result_cb cb, void *arg);
    /* Optional. 0 connected, 1 degraded, 2 down (as storage's health); `detail` (may be NULL)
     * says why, borrowed until the next call. Without it, the broker counts as connected. */
    int (*health)(void *self, const char **detail);
};

/* ---------------------------------------------------------------------------------------- */
/* The descriptor                                                                            */
/* ---------------------------------------------------------------------------------------- */

struct arq_plugin {
    size_t struct_size; /* sizeof(struct arq_plugin) as the plugin was compiled            */
    uint32_t abi_major; /* ARQ_ABI_MAJOR as the plugin was compiled                         */
    uint32_t abi_minor; /* ARQ_ABI_MINOR as the plugin was compiled                         */
    const char *name;   /* module name, e.g. "telemetry-log"                                */
    const char *version;
    const char *summary;
    enum arq_kind kind;
    const struct arq_option *options; /* ended by ARQ_OPT_END; NULL: no options           */

    /* MANDATORY. Build an instance from validated `cfg` (borrowed; incref to keep). Store
     * it in `*self`. `ctx` identifies the instance in every host call. On failure fill `err`
     * and return a negative code; `destroy` is then not called. */
    int (*create)(const struct arq_host *host, arq_ctx *ctx, const json_t *cfg, void **self,
                  struct arq_error *err);
    /* Optional. Begin work once the generation holding the instance is committed.
     * `predecessor` is the instance of the same module this one replaces (whose config
     * changed), or NULL: a transport may take over its listening socket. A failure is
     * logged and the instance is destroyed. */
    int (*start)(void *self, void *predecessor, struct arq_error *err);
    /* Optional. Only options flagged ARQ_OPT_RELOADABLE changed: apply `cfg` in place and
     * keep all state. Either apply all of it or nothing and return an error. Without this
     * function such a change replaces the instance. */
    int (*reconfigure)(void *self, const json_t *cfg, struct arq_error *err);
    /* Optional. The instance is being retired: stop accepting work; in-flight work may
     * finish until `destroy`. */
    void (*stop)(void *self);
    /* MANDATORY. Release everything. Called once. */
    void (*destroy)(void *self);

    const void *ops; /* the kind's table: struct arq_<kind>_ops; MANDATORY                  */
};

/* The type of the entry symbol. */
typedef const struct arq_plugin *(*arq_plugin_entry_fn)(void);

/* Write the entry symbol returning `descriptor` (a `static const struct arq_plugin`). */
#define ARQ_PLUGIN(descriptor)                                                                     \
    ARQ_EXPORT const struct arq_plugin *arq_plugin_v1(void);                                       \
    ARQ_EXPORT const struct arq_plugin *arq_plugin_v1(void)                                        \
    {                                                                                              \
        return &(descriptor);                                                                      \
    }

/* Fill the fixed head of a descriptor: ARQ_PLUGIN_HEAD, .name = ..., ... */
#define ARQ_PLUGIN_HEAD                                                                            \
    .struct_size = sizeof(struct arq_plugin), .abi_major = ARQ_ABI_MAJOR, .abi_minor = ARQ_ABI_MINOR

#ifdef __cplusplus
}
#endif

#endif /* ARQONBUS_PLUGIN_H */
