#include "net_listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int arq_net_parse_address(const char *host, int port, struct sockaddr_storage *addr,
                          socklen_t *addr_len, struct arq_error *err)
{
    char text[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    /* "[::1]" as in URLs is accepted too. */
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof text) {
        memcpy(text, host + 1, n - 2);
        text[n - 2] = '\0';
    } else if (n < sizeof text) {
        memcpy(text, host, n + 1);
    } else {
        text[0] = '\0';
    }
    memset(addr, 0, sizeof *addr);
    struct sockaddr_in *in4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *addr_len = sizeof *in4;
        return 0;
    }
    if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *addr_len = sizeof *in6;
        return 0;
    }
    return arq_error_set(err, ARQ_EINVAL,
                         "host \"%s\" is not a numeric IPv4 or IPv6 address (e.g. 127.0.0.1, "
                         "0.0.0.0, ::1)",
                         host);
}

static int fail(int fd, const char *what, const char *where, int e, int in_use_hint,
                struct arq_error *err)
{
    close(fd);
    return arq_error_set(
        err, ARQ_EIO, "%s %s: %s%s", what, where, strerror(e),
        in_use_hint && e == EADDRINUSE ? " (another process, or another instance, holds it)" : "");
}

int arq_net_listen(const struct sockaddr_storage *addr, socklen_t addr_len, const char *host,
                   int port, unsigned flags, struct sockaddr_storage *bound, struct arq_error *err)
{
    char where[96];
    snprintf(where, sizeof where, addr->ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return arq_error_set(err, ARQ_EIO, "cannot create a socket for %s: %s", where,
                             strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* "::" means IPv6 only, as in nginx: declare another instance on 0.0.0.0 for IPv4. */
    if (addr->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    socklen_t len = sizeof *bound;
    int stepwise = (flags & ARQ_NET_LISTEN_STEPWISE) != 0;
    if (bind(fd, (const struct sockaddr *)addr, addr_len) != 0)
        return fail(fd, "cannot listen on", where, errno, 1, err);
    if (listen(fd, SOMAXCONN) != 0)
        return fail(fd, "cannot listen on", where, errno, !stepwise, err);
    if (getsockname(fd, (struct sockaddr *)bound, &len) != 0)
        return fail(fd, stepwise ? "cannot read the address of" : "cannot listen on", where, errno,
                    !stepwise, err);
    return fd;
}

void arq_net_describe(const struct sockaddr_storage *ss, char *text, size_t size, int *port)
{
    const void *a = ss->ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (!inet_ntop(ss->ss_family, a, text, (socklen_t)size))
        snprintf(text, size, "?");
    *port = ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                           : ((const struct sockaddr_in6 *)ss)->sin6_port);
}
