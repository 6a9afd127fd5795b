/* Redis server URLs, as storage-redis and broker-redis accept them:
 *
 *   redis://[[user]:password@]host[:port][/db]
 *
 * host is a name, an IPv4 address or [an IPv6 address]; the port defaults to 6379 and the
 * database to 0. rediss:// (TLS) and query parameters are refused. Errors name the option
 * (`what`) and never echo a password. */
#ifndef ARQ_COMMON_REDIS_URL_H
#define ARQ_COMMON_REDIS_URL_H

#include <arqonbus/plugin.h>

struct redis_url {
    char host[256]; /* name or numeric address, without brackets */
    int port;
    int db;
    char user[128];     /* "" when none */
    char password[256]; /* "" when none; percent-decoded */
};

/* Parse `url` into `u`. With `allow_credentials` 0, a url with an `@` part is refused (the
 * caller has a SECRET password option instead). ARQ_OK, or ARQ_EINVAL with `err` filled:
 * "<what>: ...". */
int redis_url_parse(const char *url, struct redis_url *u, int allow_credentials, const char *what,
                    struct arq_error *err);

/* "host:port/db" (IPv6 in brackets) into out: what logs and health show. */
void redis_url_where(const struct redis_url *u, char *out, size_t size);

#endif
