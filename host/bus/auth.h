/* Authentication, authorization and connection limits: the host's side of the auth plugins.
 *
 * Policies (auth instances) run as a chain in declaration order. At a handshake the host
 * first applies its connection limits (bus.max_connections, per-IP count and rate), then asks
 * each policy's `authenticate` until one does not DEFER, then asks `authorize` whether the
 * identity may connect. Every publish, join, history read and command goes through
 * `authorize` the same way. When no policy has an opinion the host's defaults apply:
 *   - identity: bus.anonymous_role when no policy authenticates at all (auth off), else
 *     bus.default_role ("" refuses with 401);
 *   - commands: the command's declared role (its group) against the client's role, by rank
 *     guest < user < admin (a role the host does not know ranks as guest);
 *   - everything else is allowed.
 * A client whose credential carries an `exp` claim (a JWT's) is closed with 1008 when it
 * expires, unless bus.expire_sessions is off.
 * After a reload the chain is rebuilt and every client is re-evaluated: policies with
 * `refresh` may change or revoke the identities they gave, and clients admitted by default
 * take the new default role. */
#ifndef ARQ_HOST_AUTH_H
#define ARQ_HOST_AUTH_H

#include <arqonbus/plugin.h>
#include <jansson.h>
#include <stdint.h>

#include <uv.h>

#include "hmap.h"

struct bus;
struct arq_conn;

/* Who a client (or an API request) is. Strings are owned. */
struct auth_identity {
    char *subject, *role, *tenant;
    json_t *claims;
    char *policy;       /* the instance that admitted it; NULL: the host's default role  */
    int rank;           /* guest 0, user 1, admin 2 (other roles: 0)                      */
    int64_t expires_ms; /* the credential's `exp` claim (ms since the epoch), 0: none      */
};

struct arq_ticket {
    struct auth_identity id;
};

struct auth {
    struct arq_ctx **authn, **authz; /* the chains, in declaration order                */
    size_t nauthn, nauthz;
    struct hmap per_ip; /* peer address -> struct auth_ip                                */
    size_t ip_swept_at; /* its size after the last sweep                               */
    uv_timer_t expiry;  /* closes connections whose credential expired (once a second)   */
    arq_series *m_denied_handshake, *m_denied_action, *m_limited_messages, *m_limited_commands,
        *m_limited_connections, *m_abuse;
};

int auth_init(struct bus *b);
void auth_free(struct bus *b);
/* The running generation changed: rebuild the chains and re-evaluate every client. */
void auth_rebuild(struct bus *b);

/* 0..2 for guest/user/admin, 0 for anything else. */
int auth_role_rank(const char *role);
void auth_identity_clear(struct auth_identity *id);

/* A connection opens: take `info->ticket`, or run the handshake checks when there is none.
 * 0, or -1 with the refusal in `out` (the caller closes with 1008). */
int auth_conn_admit(struct bus *b, struct arq_conn *c, const struct arq_conn_info *info,
                    void *tconn, struct arq_auth_result *out);
/* A connection ended: its per-IP count. */
void auth_conn_closed(struct bus *b, struct arq_conn *c);
/* Shutdown: release the expiry timer. */
void auth_shutdown(struct bus *b);
/* Close the clients whose credential has expired (by the environment's clock), when
 * bus.expire_sessions is on. Returns whether a credential that can still expire remains
 * (the expiry timer runs it every second while one does). */
int auth_expire(struct bus *b);

/* May `c` do `what`? NULL when allowed, else "AUTHORIZATION_ERROR" or "RATE_LIMITED" with a
 * text in `text` and, for RATE_LIMITED, *retry_after_ms. Refusals are counted and emitted;
 * an abusive client is closed with 1008. */
const char *auth_check(struct bus *b, struct arq_conn *c, const struct arq_action *what, char *text,
                       size_t textsz, uint64_t *retry_after_ms);

/* The auth services of struct arq_host. */
enum arq_auth_verdict auth_svc_handshake(arq_ctx *ctx, const struct arq_conn_info *info,
                                         void *tconn, arq_ticket **ticket,
                                         struct arq_auth_result *out);
void auth_svc_ticket_free(arq_ticket *ticket);
enum arq_auth_verdict auth_svc_authorize(arq_ctx *ctx, const arq_ticket *ticket,
                                         const struct arq_action *what,
                                         struct arq_auth_result *out);

#endif
