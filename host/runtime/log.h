/* Structured logging: one line per event, logfmt (default) or JSON, to stderr or a file that
 * SIGUSR1 reopens. Loop thread only (plus early start-up). */
#ifndef ARQ_HOST_LOG_H
#define ARQ_HOST_LOG_H

#include <arqonbus/plugin.h>
#include <stdarg.h>

enum log_format { LOG_FORMAT_LOGFMT = 0, LOG_FORMAT_JSON };

void log_configure(enum arq_log_level level, enum log_format format);
/* Log to `path` (appending) instead of stderr; NULL returns to stderr. Returns 0 or -errno. */
int log_open_file(const char *path);
/* Reopen the current log file (after rotation). No-op for stderr. */
int log_reopen(void);
void log_close(void);
int log_enabled(enum arq_log_level level);
int log_level_parse(const char *text, enum arq_log_level *out);
const char *log_level_name(enum arq_log_level level);

/* component: "host" or an instance name; then key/value string pairs ended by NULL. */
void log_write(enum arq_log_level level, const char *component, const char *msg, ...)
    __attribute__((sentinel));
void log_writev(enum arq_log_level level, const char *component, const char *msg, va_list ap);

#define LOG_ERROR(...) log_write(ARQ_LOG_ERROR, "host", __VA_ARGS__, (const char *)NULL)
#define LOG_WARN(...)  log_write(ARQ_LOG_WARN, "host", __VA_ARGS__, (const char *)NULL)
#define LOG_INFO(...)  log_write(ARQ_LOG_INFO, "host", __VA_ARGS__, (const char *)NULL)
#define LOG_DEBUG(...) log_write(ARQ_LOG_DEBUG, "host", __VA_ARGS__, (const char *)NULL)

#endif
