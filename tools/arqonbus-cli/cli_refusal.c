/* arqonbus-cli: the reason of a refused upgrade, asked again on a plain socket. See
 * cli_refusal.h. */
#include "cli_refusal.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

static int cli__connect(const struct cli_opts *o)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    if (getaddrinfo(o->host, port, &hints, &ai) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {.tv_sec = (time_t)o->timeout_s,
                             .tv_usec = (suseconds_t)((o->timeout_s - (time_t)o->timeout_s) * 1e6)};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

int cli_refusal_reason(const struct cli_opts *o, const char *auth, char *out, size_t outsz)
{
    char req[2048], resp[8192];
    if (o->tls)
        return -1;
    int v6 = strchr(o->host, ':') != NULL;
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: YXJxb25idXMtY2xpLXJlYXNvbg==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     o->path, v6 ? "[" : "", o->host, v6 ? "]" : "", o->port,
                     auth[0] ? "Authorization: " : "", auth, auth[0] ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req)
        return -1;
    int fd = cli__connect(o);
    if (fd < 0)
        return -1;
    size_t len = 0;
    ssize_t got;
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n)
        while (len < sizeof resp - 1 && (got = recv(fd, resp + len, sizeof resp - 1 - len, 0)) > 0)
            len += (size_t)got; /* the server closes after its answer (Connection: close) */
    close(fd);
    resp[len] = '\0';
    const char *body = strstr(resp, "\r\n\r\n");
    if (strncmp(resp, "HTTP/1.", 7) != 0 || !body || strncmp(resp + 8, " 101", 4) == 0 || !body[4])
        return -1;
    body += 4;
    json_t *j = json_loads(body, 0, NULL);
    const char *error = json_string_value(json_object_get(j, "error"));
    const char *details = json_string_value(json_object_get(j, "details"));
    if (error && details && *details)
        snprintf(out, outsz, "%s: %s", error, details);
    else
        snprintf(out, outsz, "%s", error ? error : body);
    json_decref(j);
    return 0;
}
