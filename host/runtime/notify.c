#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The protocol is one datagram of "KEY=VALUE" lines to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). It is written here rather than
 * with libsystemd's sd_notify() because that one sends on a blocking socket: when the reader
 * does not keep up (a supervisor that sets NOTIFY_SOCKET but never reads it, or one that is
 * stuck), the datagram queue fills and the event loop would block inside a reload. Here a
 * message that cannot be queued at once is dropped: readiness is advisory, the bus is not. */
static int notify__send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int notify__send(const char *fmt, ...)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof addr.sun_path)
        return -1;
    memcpy(addr.sun_path, path, len);
    if (path[0] == '@')
        addr.sun_path[0] = '\0'; /* the abstract namespace */
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    ssize_t sent = sendto(fd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1,
                          MSG_NOSIGNAL | MSG_DONTWAIT, (const struct sockaddr *)&addr,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    int saved = errno;
    close(fd);
    errno = saved;
    return sent < 0 ? -1 : 0;
}

/* STATUS= is one line of text: a newline in an error would start a field of its own. */
static void notify__status(char *out, size_t size, const char *prefix, const char *text)
{
    snprintf(out, size, "%s%s", prefix, text ? text : "");
    for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

static int notify_was_ready;

void notify_ready(unsigned generation)
{
    notify_was_ready = 1;
    notify__send("READY=1\nSTATUS=Serving, configuration generation %u\nX_ARQONBUS_GENERATION=%u",
                 generation, generation);
}

void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    notify__send("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)ts.tv_sec * 1000000ULL +
                                                         (unsigned long long)ts.tv_nsec / 1000);
}

void notify_reloaded(int ok, unsigned generation, const char *error)
{
    char status[512];
    if (ok)
        snprintf(status, sizeof status, "Serving, configuration generation %u", generation);
    else
        notify__status(status, sizeof status,
                       "Reload failed, the running configuration stays: ", error);
    notify__send("READY=1\nSTATUS=%s\nX_ARQONBUS_RELOAD=%s\nX_ARQONBUS_GENERATION=%u", status,
                 ok ? "ok" : "failed", generation);
}

void notify_stopping(void)
{
    if (notify_was_ready)
        notify__send("STOPPING=1\nSTATUS=Stopping");
}
