/* Structured logging. Each line is built in a fixed stack buffer and written with one write(2),
 * so lines from this process never interleave, nothing is buffered in stdio when the process
 * dies, and a huge value cannot make the logger allocate. */
#include "log.h"
#include "utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
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

/* Append if it fits before the tail reserve; all or nothing. */
static int log__put(struct log__line *l, const char *s, size_t n)
{
    if (l->cut || n > LOG_LINE_MAX - LOG_TAIL - l->len)
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

/* One source character, escaped. Returns the bytes written to `out` (at most 6); `*used` gets
 * the source bytes consumed. Invalid UTF-8 becomes U+FFFD so every line is valid UTF-8. */
static size_t log__escape(const unsigned char *s, int json, int quoted, char *out, size_t *used)
{
    unsigned char c = s[0];
    *used = 1;
    if (quoted && (c == '"' || c == '\\')) {
        out[0] = '\\', out[1] = (char)c;
        return 2;
    }
    if (c == '\n' || (json && (c == '\r' || c == '\t' || c == '\b' || c == '\f'))) {
        out[0] = '\\';
        out[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : c == '\b' ? 'b' : 'f';
        return 2;
    }
    if (c < 0x20 || (c == 0x7f && !json))
        return (size_t)snprintf(out, 7, "\\u%04x", c);
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    size_t n = utf8_seq_len(s);
    if (n == 0) {
        memcpy(out, "\xef\xbf\xbd", 3);
        return 3;
    }
    memcpy(out, s, n);
    *used = n;
    return n;
}

/* Escaped text, cut with `…` when the line is full (never inside an escape or a UTF-8
 * sequence). The caller writes the closing quote with log__put_tail. */
static void log__put_text(struct log__line *l, const char *s, int quoted)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p && !l->cut) {
        char unit[8];
        size_t used;
        size_t n = log__escape(p, l->json, quoted, unit, &used);
        if (!log__put(l, unit, n)) {
            log__put_tail(l, LOG_MARK);
            l->cut = 1;
        }
        p += used;
    }
}

static size_t log__escaped_len(const char *s, int json)
{
    size_t total = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        char unit[8];
        size_t used;
        total += log__escape(p, json, 1, unit, &used);
        p += used;
    }
    return total;
}

static void log__field(struct log__line *l, const char *key, const char *value)
{
    if (l->cut)
        return;
    if (!value)
        value = "";
    if (l->json) {
        /* Room for the whole key and an opening of the value, or the line ends here. */
        size_t need = 2 + log__escaped_len(key, 1) + 3;
        if (need > LOG_LINE_MAX - LOG_TAIL - l->len) {
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
    if (2 + klen + 2 > LOG_LINE_MAX - LOG_TAIL - l->len) {
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

/* RFC 3339 UTC with milliseconds. */
static void log__timestamp(char *out, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (!gmtime_r(&ts.tv_sec, &tm))
        memset(&tm, 0, sizeof tm);
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
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
    char ts[64];
    l.len = 0;
    l.cut = 0;
    l.json = log__state.format == LOG_FORMAT_JSON;
    log__timestamp(ts, sizeof ts);

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
