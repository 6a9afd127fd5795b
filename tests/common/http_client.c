/* A small HTTP/1.1 client for tests (see http_client.h). */
#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fail(char *err, size_t errsz, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
    return -1;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until fd is ready for `events` before `deadline`: 1, 0 on timeout, -1 on error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -1 : n > 0;
    }
}

static int connect_to(const char *host, int port, long long deadline, char *err, size_t errsz)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return fail(err, errsz, "not an IPv4 address: %s", host);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(err, errsz, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return fail(err, errsz, "connect %s:%d: %s", host, port, strerror(e));
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (wait_fd(fd, POLLOUT, deadline) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr) {
        close(fd);
        return fail(err, errsz, "connect %s:%d: %s", host, port,
                    soerr ? strerror(soerr) : "timeout");
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n, long long deadline, char *err, size_t errsz)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) != 1)
                return fail(err, errsz, "send: timeout");
            continue;
        }
        /* The server may answer and close before it has read everything (413): what it
         * sent is still read below. */
        if (w < 0)
            return errno == EPIPE || errno == ECONNRESET
                       ? 0
                       : fail(err, errsz, "send: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The Content-Length of a response head, or -1. */
static long content_length(const char *head)
{
    for (const char *p = strchr(head, '\n'); p; p = strchr(p + 1, '\n'))
        if (!strncasecmp(p + 1, "Content-Length:", 15))
            return strtol(p + 16, NULL, 10);
    return -1;
}

static int read_response(int fd, long long deadline, int head_only, struct http_resp *out,
                         char *err, size_t errsz)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t head_len = 0;
    long want = -1;
    if (!buf)
        return fail(err, errsz, "out of memory");
    for (;;) {
        if (head_len && want >= 0 && len >= head_len + (size_t)want)
            break;
        if (len + 1 >= cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                return fail(err, errsz, "out of memory");
            }
            buf = b;
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLIN, deadline) != 1) {
                free(buf);
                return fail(err, errsz, "timeout waiting for the response");
            }
            continue;
        }
        if (n < 0 && errno == ECONNRESET && head_len)
            break;
        if (n < 0) {
            free(buf);
            return fail(err, errsz, "recv: %s", strerror(errno));
        }
        if (n == 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (!head_len) {
            char *end = strstr(buf, "\r\n\r\n");
            if (end) {
                head_len = (size_t)(end - buf) + 4;
                want = head_only ? 0 : content_length(buf);
                int status = 0;
                if (sscanf(buf, "HTTP/1.%*d %d", &status) == 1 && (status == 204 || status == 304))
                    want = 0;
            }
        }
    }
    buf[len] = '\0';
    if (!head_len || sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1) {
        free(buf);
        return fail(err, errsz, "no HTTP response (%zu bytes read)", len);
    }
    out->body_len = len - head_len;
    out->head = malloc(head_len + 1);
    out->body = malloc(out->body_len + 1);
    if (!out->head || !out->body) {
        free(buf);
        http_resp_free(out);
        return fail(err, errsz, "out of memory");
    }
    memcpy(out->head, buf, head_len);
    out->head[head_len] = '\0';
    memcpy(out->body, buf + head_len, out->body_len);
    out->body[out->body_len] = '\0';
    free(buf);
    return 0;
}

static int exchange(const char *host, int port, const char *raw, size_t raw_len, int head_only,
                    int timeout_ms, struct http_resp *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof *out);
    long long deadline = now_ms() + timeout_ms;
    int fd = connect_to(host, port, deadline, err, errsz);
    if (fd < 0)
        return -1;
    int rc = send_all(fd, raw, raw_len, deadline, err, errsz);
    if (rc == 0)
        rc = read_response(fd, deadline, head_only, out, err, errsz);
    close(fd);
    return rc;
}

int http_raw(const char *host, int port, const char *raw, size_t raw_len, int timeout_ms,
             struct http_resp *out, char *err, size_t errsz)
{
    return exchange(host, port, raw, raw_len, !strncmp(raw, "HEAD ", 5), timeout_ms, out, err,
                    errsz);
}

int http_request(const char *host, int port, const char *method, const char *path,
                 const char *const *headers, const char *body, size_t body_len, int timeout_ms,
                 struct http_resp *out, char *err, size_t errsz)
{
    size_t cap = 1024 + strlen(path) + body_len;
    for (size_t i = 0; headers && headers[i]; i++)
        cap += strlen(headers[i]) + 2;
    char *req = malloc(cap);
    if (!req)
        return fail(err, errsz, "out of memory");
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n", method,
                     path, host, port);
    for (size_t i = 0; headers && headers[i]; i++)
        n += snprintf(req + n, cap - (size_t)n, "%s\r\n", headers[i]);
    if (body)
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (body) {
        memcpy(req + n, body, body_len);
        n += (int)body_len;
    }
    int rc =
        exchange(host, port, req, (size_t)n, !strcmp(method, "HEAD"), timeout_ms, out, err, errsz);
    free(req);
    return rc;
}

const char *http_header(const struct http_resp *r, const char *name, char *buf, size_t size)
{
    size_t n = strlen(name);
    for (const char *p = r->head ? strchr(r->head, '\n') : NULL; p; p = strchr(p + 1, '\n')) {
        if (strncasecmp(p + 1, name, n) != 0 || p[1 + n] != ':')
            continue;
        const char *v = p + 2 + n;
        while (*v == ' ')
            v++;
        size_t len = strcspn(v, "\r\n");
        snprintf(buf, size, "%.*s", (int)len, v);
        return buf;
    }
    return NULL;
}

void http_resp_free(struct http_resp *r)
{
    free(r->head);
    free(r->body);
    r->head = r->body = NULL;
}
