/* Structured logging. Each line is built in a fixed stack buffer and written with one write(2),
 * so lines from this process never interleave, nothing is buffered in stdio when the process
 * dies, and a huge value cannot make the logger allocate. */
#include "log.h"
#include "jsonw.h"
#include "walltime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192
/* Kept free at the end of every line for what closes it after a cut: `…` + `"` + `}` + `\n`,
 * or the `,"…":""` field that marks dropped fields. */
#define LOG_TAIL 16
#define LOG_MARK "\xe2\x80\xa6" /* … */

static struct {
    enum arq_log_level level;
    enum log_format format;
    int fd;     /* STDERR_FILENO, or the file at `path` */
    char *path; /* NULL: stderr */
} log__state = {ARQ_LOG_INFO, LOG_FORMAT_LOGFMT, STDERR_FILENO, NULL};

struct log__line {
    char buf[LOG_LINE_MAX];
    size_t len;
    int cut; /* the line was truncated; further fields are dropped */
    int json;
};

/* ---- levels, configuration ------------------------------------------------------------------ */

void log_configure(enum arq_log_level level, enum log_format format)
{
    if (level >= ARQ_LOG_DEBUG && level <= ARQ_LOG_ERROR)
        log__state.level = level;
    if (format == LOG_FORMAT_LOGFMT || format == LOG_FORMAT_JSON)
        log__state.format = format;
}

int log_enabled(enum arq_log_level level)
{
    return level >= log__state.level;
}

int log_level_parse(const char *text, enum arq_log_level *out)
{
    static const struct {
        const char *name;
        enum arq_log_level level;
    } names[] = {{"debug", ARQ_LOG_DEBUG},
                 {"info", ARQ_LOG_INFO},
                 {"warn", ARQ_LOG_WARN},
                 {"warning", ARQ_LOG_WARN},
                 {"error", ARQ_LOG_ERROR}};
    if (!text || !out)
        return ARQ_EINVAL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcasecmp(text, names[i].name) == 0) {
            *out = names[i].level;
            return ARQ_OK;
        }
    }
    return ARQ_EINVAL;
}

const char *log_level_name(enum arq_log_level level)
{
    switch (level) {
    case ARQ_LOG_DEBUG:
        return "debug";
    case ARQ_LOG_INFO:
        return "info";
    case ARQ_LOG_WARN:
        return "warn";
    case ARQ_LOG_ERROR:
        return "error";
    }
    return "unknown";
}

/* ---- destination -------------------------------------------------------------------------- */

static int log__open(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    /* cppcheck-suppress resourceLeak
     * (false positive: the descriptor is what this returns) */
    return fd >= 0 ? fd : -errno;
}

void log_close(void)
{
    if (log__state.path) {
        close(log__state.fd);
        free(log__state.path);
    }
    log__state.fd = STDERR_FILENO;
    log__state.path = NULL;
}

int log_open_file(const char *path)
{
    if (!path) {
        log_close();
        return 0;
    }
    int fd = log__open(path);
    if (fd < 0) {
        LOG_ERROR("cannot open log file", "path", path, "error", strerror(-fd));
        return fd;
    }
    char *copy = strdup(path);
    if (!copy) {
        close(fd);
        LOG_ERROR("out of memory", "where", "log_open_file", "path", path);
        return -ENOMEM;
    }
    log_close();
    log__state.fd = fd;
    log__state.path = copy;
    return 0;
}

int log_reopen(void)
{
    if (!log__state.path)
        return 0;
    int fd = log__open(log__state.path);
    if (fd < 0) {
        /* Keep writing to the old (possibly rotated) file: a log line in the wrong file beats
         * no log line at all. */
        LOG_ERROR("cannot reopen log file", "path", log__state.path, "error", strerror(-fd));
        return fd;
    }
    close(log__state.fd);
    log__state.fd = fd;
    return 0;
}

/* ---- line building ------------------------------------------------------------------------ */

/* Bytes left before the tail reserve. A closing quote written into the reserve can leave the
 * line past it without being cut: then there is no room, not a wrapped-around size. */
static size_t log__room(const struct log__line *l)
{
    return l->len < LOG_LINE_MAX - LOG_TAIL ? LOG_LINE_MAX - LOG_TAIL - l->len : 0;
}

/* Append if it fits before the tail reserve; all or nothing. */
static int log__put(struct log__line *l, const char *s, size_t n)
{
    if (l->cut || n > log__room(l))
        return 0;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    return 1;
}

/* Append into the tail reserve: only the few bytes that close a line. */
static void log__put_tail(struct log__line *l, const char *s)
{
    size_t n = strlen(s);
    if (n > LOG_LINE_MAX - l->len)
        n = LOG_LINE_MAX - l->len; /* cannot happen: LOG_TAIL covers every closer */
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* Does a logfmt value need quotes? Control characters do too, so that their escapes read
 * back unambiguously. */
static int log__needs_quotes(const char *s)
{
    if (!*s)
        return 1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '=' || *p == '"' || *p == 0x7f)
            return 1;
    return 0;
}

/* logfmt's escapes: \n, then \u00xx for every other control character and DEL, so that a value
 * reads back unambiguously; \" and \\ inside quotes only. JSON lines use jsonw_json. */
#define LOG_LOGFMT_CONTROLS                                                                        \
    [0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u', [0x05] = 'u',            \
    [0x06] = 'u', [0x07] = 'u', [0x08] = 'u', [0x09] = 'u', [0x0b] = 'u', [0x0c] = 'u',            \
    [0x0d] = 'u', [0x0e] = 'u', [0x0f] = 'u', [0x10] = 'u', [0x11] = 'u', [0x12] = 'u',            \
    [0x13] = 'u', [0x14] = 'u', [0x15] = 'u', [0x16] = 'u', [0x17] = 'u', [0x18] = 'u',            \
    [0x19] = 'u', [0x1a] = 'u', [0x1b] = 'u', [0x1c] = 'u', [0x1d] = 'u', [0x1e] = 'u',            \
    [0x1f] = 'u', [0x7f] = 'u', ['\n'] = 'n'
static const char log__logfmt_quoted[128] = {LOG_LOGFMT_CONTROLS, ['"'] = '"', ['\\'] = '\\'};
static const char log__logfmt_bare[128] = {LOG_LOGFMT_CONTROLS};

static const char *log__escapes(const struct log__line *l, int quoted)
{
    if (l->json)
        return jsonw_json;
    return quoted ? log__logfmt_quoted : log__logfmt_bare;
}

/* Escaped text, cut with `…` when the line is full (never inside an escape or a UTF-8
 * sequence). Invalid UTF-8 becomes U+FFFD so every line is valid UTF-8. The caller writes the
 * closing quote with log__put_tail. */
static void log__put_text(struct log__line *l, const char *s, int quoted)
{
    if (l->cut)
        return;
    size_t n = strlen(s), used;
    l->len += jsonw_escape(s, n, log__escapes(l, quoted), JSONW_UTF8_REPLACE, l->buf + l->len,
                           log__room(l), &used);
    if (used < n) {
        log__put_tail(l, LOG_MARK);
        l->cut = 1;
    }
}

static void log__field(struct log__line *l, const char *key, const char *value)
{
    if (l->cut)
        return;
    if (!value)
        value = "";
    if (l->json) {
        /* Room for the whole key and an opening of the value, or the line ends here. */
        size_t need =
            2 + jsonw_escape(key, strlen(key), jsonw_json, JSONW_UTF8_REPLACE, NULL, 0, NULL) + 3;
        if (need > log__room(l)) {
            log__put_tail(l, ",\"" LOG_MARK "\":\"\"");
            l->cut = 1;
            return;
        }
        log__put(l, l->len > 1 ? ",\"" : "\"", l->len > 1 ? 2 : 1);
        log__put_text(l, key, 1);
        log__put(l, "\":\"", 3);
        log__put_text(l, value, 1);
        log__put_tail(l, "\"");
        return;
    }
    size_t klen = strlen(key);
    if (2 + klen + 2 > log__room(l)) {
        log__put_tail(l, " " LOG_MARK);
        l->cut = 1;
        return;
    }
    if (l->len > 0)
        log__put(l, " ", 1);
    /* Keys come from code, but a space or `=` in one would break every parser: replace. */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        char c = (*p <= ' ' || *p == '=' || *p == '"' || *p == 0x7f) ? '_' : (char)*p;
        log__put(l, &c, 1);
    }
    log__put(l, "=", 1);
    int quoted = log__needs_quotes(value);
    if (quoted)
        log__put(l, "\"", 1);
    log__put_text(l, value, quoted);
    if (quoted)
        log__put_tail(l, "\"");
}

static void log__emit(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(log__state.fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        buf += n;
        len -= (size_t)n;
    }
}

void log_writev(enum arq_log_level level, const char *component, const char *msg, va_list ap)
{
    if (!log_enabled(level))
        return;
    int saved_errno = errno; /* callers log, then return -errno */
    struct log__line l;
    char ts[WALLTIME_TEXT_MAX];
    l.len = 0;
    l.cut = 0;
    l.json = log__state.format == LOG_FORMAT_JSON;
    walltime_format(walltime_now_us(), 3, ts); /* RFC 3339 UTC with milliseconds */

    if (l.json)
        log__put(&l, "{", 1);
    log__field(&l, "ts", ts);
    log__field(&l, "level", log_level_name(level));
    log__field(&l, "component", component ? component : "host");
    log__field(&l, "msg", msg ? msg : "");
    for (;;) {
        const char *key = va_arg(ap, const char *);
        if (!key)
            break;
        const char *value = va_arg(ap, const char *);
        log__field(&l, key, value);
        if (!value) /* the list ended early: there is no next key to read */
            break;
    }
    if (l.json)
        log__put_tail(&l, "}");
    log__put_tail(&l, "\n");
    log__emit(l.buf, l.len);
    errno = saved_errno;
}

void log_write(enum arq_log_level level, const char *component, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    log_writev(level, component, msg, ap);
    va_end(ap);
}
