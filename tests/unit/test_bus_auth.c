/* The auth chain in process: policies asked in declaration order (DEFER passes on, ALLOW and
 * DENY stop), the host's default and anonymous roles, authorization of every action with
 * RATE_LIMITED and abuse, identities refreshed or revoked when the generation changes,
 * credential expiry by the manual clock, and the connection limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "bus_fixture.h"

/* Every call a fake policy answered, in order: " p1.authenticate p1.authorize:connect ...". */
static char calls[4096];

static void called(const char *fmt, ...) ARQ_PRINTF(1, 2);
static void called(const char *fmt, ...)
{
    size_t len = strlen(calls);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(calls + len, sizeof calls - len, fmt, ap);
    va_end(ap);
}

/* A fake policy: it answers what the test sets (0: DEFER). */
struct fake_policy {
    const char *name;
    enum arq_auth_verdict authn;
    const char *role, *subject;
    json_t *claims; /* borrowed by the policy */
    int http_status;
    const char *reason;
    enum arq_auth_verdict authz; /* to `authz_action` (NULL: every action); DEFER otherwise */
    const char *authz_action;
    uint64_t retry_after_ms;
    int abusive;
    enum arq_auth_verdict refresh;
    const char *refresh_role;
};

static enum arq_auth_verdict verdict(enum arq_auth_verdict v)
{
    return v ? v : ARQ_AUTH_DEFER;
}

static enum arq_auth_verdict p_authenticate(void *self, const struct arq_conn_info *info,
                                            void *tconn, struct arq_auth_result *out)
{
    struct fake_policy *p = self;
    (void)info;
    (void)tconn;
    called(" %s.authenticate", p->name);
    out->principal.role = p->role;
    out->principal.subject = p->subject;
    out->principal.claims = p->claims;
    out->http_status = p->http_status;
    snprintf(out->reason, sizeof out->reason, "%s", p->reason ? p->reason : "");
    return verdict(p->authn);
}

static enum arq_auth_verdict p_authorize(void *self, const struct arq_principal *who,
                                         const struct arq_action *what, struct arq_auth_result *out)
{
    struct fake_policy *p = self;
    (void)who;
    called(" %s.authorize:%s", p->name, what->action);
    if (what->command)
        called(":%s:%s", what->command, what->group);
    else if (what->room)
        called(":%s/%s", what->room, what->channel ? what->channel : "");
    if (p->authz_action && strcmp(p->authz_action, what->action) != 0)
        return ARQ_AUTH_DEFER;
    snprintf(out->reason, sizeof out->reason, "%s", p->reason ? p->reason : "");
    out->retry_after_ms = p->retry_after_ms;
    out->abusive = p->abusive;
    return verdict(p->authz);
}

static enum arq_auth_verdict p_refresh(void *self, const struct arq_principal *who,
                                       struct arq_auth_result *out)
{
    struct fake_policy *p = self;
    called(" %s.refresh:%s", p->name, who->subject ? who->subject : "");
    out->principal = *who;
    out->principal.role = p->refresh_role;
    snprintf(out->reason, sizeof out->reason, "%s", p->reason ? p->reason : "");
    return verdict(p->refresh);
}

static const struct arq_auth_ops full_ops = {.struct_size = sizeof full_ops,
                                             .authenticate = p_authenticate,
                                             .authorize = p_authorize,
                                             .refresh = p_refresh};
static const struct arq_auth_ops authz_only_ops = {.struct_size = sizeof authz_only_ops,
                                                   .authorize = p_authorize};

static struct arq_ctx *policy(struct bus_fx *f, struct fake_policy *p, const char *name,
                              const struct arq_auth_ops *ops)
{
    p->name = name;
    return fx_instance(f, name, ARQ_KIND_AUTH, ops, p);
}

static int setup(void **state)
{
    calls[0] = '\0';
    return bus_fx_setup(state);
}

/* A client that was admitted, its welcome read. */
static struct fake_client *admitted(struct bus_fx *f, const char *addr)
{
    struct arq_conn_info info = {.struct_size = sizeof info,
                                 .transport = "websocket",
                                 .peer_addr = addr ? addr : "127.0.0.1",
                                 .peer_port = 40000,
                                 .path = "/"};
    struct fake_client *c = fx_connect(f, &info);
    assert_non_null(c->conn);
    assert_false(c->closed);
    fx_expect(c, "message");
    assert_int_equal(fx_unread(c), 0);
    return c;
}

/* A client the bus refused, closed with 1008 and `reason`. */
static void refused_open(struct bus_fx *f, const char *addr, const char *reason)
{
    struct arq_conn_info info = {.struct_size = sizeof info,
                                 .transport = "websocket",
                                 .peer_addr = addr ? addr : "127.0.0.1",
                                 .peer_port = 40000,
                                 .path = "/"};
    struct fake_client *c = fx_connect(f, &info);
    assert_null(c->conn);
    assert_true(c->closed);
    assert_int_equal(c->close_code, 1008);
    assert_string_equal(c->close_reason, reason);
}

/* What a transport's handshake gets for a request from `addr`. */
static enum arq_auth_verdict handshake(struct bus_fx *f, const char *addr, int request_only,
                                       struct arq_auth_result *out, arq_ticket **ticket)
{
    struct arq_conn_info info = {.struct_size = sizeof info,
                                 .transport = "websocket",
                                 .peer_addr = addr,
                                 .peer_port = 40000,
                                 .path = "/",
                                 .request_only = request_only};
    arq_ticket *t = NULL;
    enum arq_auth_verdict v = auth_svc_handshake(&f->transport->ctx, &info, NULL, &t, out);
    if (ticket)
        *ticket = t;
    else
        auth_svc_ticket_free(t);
    return v;
}

static const struct auth_identity *identity(const struct fake_client *c)
{
    return &c->conn->identity;
}

/* A reload that keeps the same instances: the runtime's hook says the generation changed. */
static void reload(struct bus_fx *f)
{
    bus_generation_changed(&f->bus);
}

/* --- the handshake ------------------------------------------------------------------------ */

static void policies_authenticate_in_declaration_order_until_one_does_not_defer(void **state)
{
    struct bus_fx *f = *state;
    struct fake_policy p1 = {0},
                       p2 = {.authn = ARQ_AUTH_ALLOW, .role = "admin", .subject = "alice"},
                       p3 = {.authn = ARQ_AUTH_ALLOW, .role = "guest", .subject = "mallory"};
    policy(f, &p1, "p1", &full_ops);
    policy(f, &p2, "p2", &full_ops);
    policy(f, &p3, "p3", &full_ops);

    struct fake_client *c = admitted(f, NULL);
    assert_string_equal(calls, " p1.authenticate p2.authenticate p1.authorize:connect"
                               " p2.authorize:connect p3.authorize:connect");
    assert_string_equal(identity(c)->role, "admin");
    assert_string_equal(identity(c)->subject, "alice");
    assert_string_equal(identity(c)->policy, "p2");
    assert_int_equal(identity(c)->rank, 2);

    /* A transport's handshake runs the same chain once; conn_open then takes its ticket. */
    calls[0] = '\0';
    struct arq_auth_result out;
    arq_ticket *t = NULL;
    assert_int_equal(handshake(f, "127.0.0.1", 0, &out, &t), ARQ_AUTH_ALLOW);
    assert_non_null(t);
    assert_string_equal(out.principal.role, "admin");
    assert_string_equal(calls, " p1.authenticate p2.authenticate p1.authorize:connect"
                               " p2.authorize:connect p3.authorize:connect");
    calls[0] = '\0';
    struct arq_conn_info info = {.struct_size = sizeof info,
                                 .transport = "websocket",
                                 .peer_addr = "127.0.0.1",
                                 .path = "/",
                                 .ticket = t};
    struct fake_client *d = fx_connect(f, &info);
    assert_non_null(d->conn);
    assert_string_equal(calls, "");
    assert_string_equal(identity(d)->subject, "alice");

    /* The first policy to ALLOW decides even when a later one would refuse. */
    p1.authn = ARQ_AUTH_ALLOW;
    p1.role = "user";
    p1.subject = "bob";
    p2.authn = ARQ_AUTH_DENY;
    calls[0] = '\0';
    struct fake_client *e = admitted(f, NULL);
    assert_string_equal(identity(e)->subject, "bob");
    assert_string_equal(identity(e)->policy, "p1");
    assert_null(strstr(calls, "p2.authenticate"));
    assert_int_equal(fx_metric(f, "arqonbus_auth_failures_total{stage=\"handshake\"}"), 0);
}

static void a_denying_policy_stops_the_chain_and_refuses_the_connection(void **state)
{
    struct bus_fx *f = *state;
    struct fake_policy p1 = {0}, p2 = {.authn = ARQ_AUTH_DENY, .reason = "token expired"},
                       p3 = {.authn = ARQ_AUTH_ALLOW, .role = "admin"};
    policy(f, &p1, "p1", &full_ops);
    policy(f, &p2, "p2", &full_ops);
    policy(f, &p3, "p3", &full_ops);

    refused_open(f, NULL, "Unauthorized: token expired");
    assert_string_equal(calls, " p1.authenticate p2.authenticate");
    assert_int_equal(fx_metric(f, "arqonbus_auth_failures_total{stage=\"handshake\"}"), 1);
    json_t *ev = fx_event(f, "auth_failed", 0);
    assert_non_null(ev);
    assert_string_equal(fx_str(ev, "data.stage"), "handshake");
    assert_string_equal(fx_str(ev, "data.policy"), "p2");
    assert_int_equal(json_integer_value(fx_get(ev, "data.status")), 401);

    /* What the transport answers before the upgrade: 401, or the policy's 403. */
    struct arq_auth_result out;
    assert_int_equal(handshake(f, "127.0.0.1", 0, &out, NULL), ARQ_AUTH_DENY);
    assert_int_equal(out.http_status, 401);
    assert_string_equal(out.reason, "token expired");
    p2.http_status = 403;
    assert_int_equal(handshake(f, "127.0.0.1", 0, &out, NULL), ARQ_AUTH_DENY);
    assert_int_equal(out.http_status, 403);
    p2.http_status = 500; /* not an answer a policy may give: 401 */
    assert_int_equal(handshake(f, "127.0.0.1", 0, &out, NULL), ARQ_AUTH_DENY);
    assert_int_equal(out.http_status, 401);

    /* ALLOW without a role, or an answer the host cannot wait for, never lets in. */
    p2.authn = ARQ_AUTH_ALLOW;
    assert_int_equal(handshake(f, "127.0.0.1", 0, &out, NULL), ARQ_AUTH_DENY);
    assert_int_equal(out.http_status, 401);
    assert_string_equal(out.reason, "the auth policy gave no role");
    p2.role = "";
    assert_int_equal(handshake(f, "127.0.0.1", 0, &out, NULL), ARQ_AUTH_DENY);
    assert_string_equal(out.reason, "the auth policy gave no role");
    p2.authn = ARQ_AUTH_PENDING;
    assert_int_equal(handshake(f, "127.0.0.1", 0, &out, NULL), ARQ_AUTH_DENY);
    assert_int_equal(out.http_status, 503);

    /* Authenticated, but not allowed to connect: 403, or 429 when rate limited. */
    p2.authn = ARQ_AUTH_ALLOW;
    p2.role = "user";
    p2.reason = NULL;
    p3.authz = ARQ_AUTH_DENY;
    p3.authz_action = "connect";
    assert_int_equal(handshake(f, "127.0.0.1", 0, &out, NULL), ARQ_AUTH_DENY);
    assert_int_equal(out.http_status, 403);
    assert_string_equal(out.reason, "this identity may not connect");
    p3.authz = ARQ_AUTH_RATE_LIMITED;
    p3.retry_after_ms = 2500;
    assert_int_equal(handshake(f, "127.0.0.1", 0, &out, NULL), ARQ_AUTH_RATE_LIMITED);
    assert_int_equal(out.http_status, 429);
    assert_int_equal(out.retry_after_ms, 2500);
    /* Every refusal above but the last (a limit) counts as a handshake failure. */
    assert_int_equal(fx_metric(f, "arqonbus_auth_failures_total{stage=\"handshake\"}"), 8);
    assert_int_equal(fx_metric(f, "arqonbus_rate_limit_hits_total{kind=\"connections\"}"), 1);
}

static void when_every_policy_defers_the_default_role_applies(void **state)
{
    struct bus_fx *f = *state;
    struct fake_policy p1 = {0}, p2 = {0};
    policy(f, &p1, "p1", &full_ops);
    policy(f, &p2, "p2", &full_ops);

    struct fake_client *c = admitted(f, NULL);
    assert_string_equal(calls, " p1.authenticate p2.authenticate p1.authorize:connect"
                               " p2.authorize:connect");
    assert_string_equal(identity(c)->role, "guest"); /* bus.default_role's default */
    assert_null(identity(c)->policy);
    assert_null(identity(c)->subject);

    fx_configure(f, "default_role: user");
    assert_string_equal(identity(admitted(f, NULL))->role, "user");

    fx_configure(f, "default_role: \"\"");
    refused_open(f, NULL, "Unauthorized: authentication required");
    struct arq_auth_result out;
    assert_int_equal(handshake(f, "127.0.0.1", 0, &out, NULL), ARQ_AUTH_DENY);
    assert_int_equal(out.http_status, 401);
    assert_int_equal(fx_metric(f, "arqonbus_auth_failures_total{stage=\"handshake\"}"), 2);
}

static void without_an_authenticating_policy_clients_have_the_anonymous_role(void **state)
{
    struct bus_fx *f = *state;
    struct fake_client *c = admitted(f, NULL);
    assert_string_equal(identity(c)->role, "user"); /* bus.anonymous_role's default */

    /* A policy that only authorizes does not authenticate: default_role does not apply. */
    struct fake_policy q = {0};
    policy(f, &q, "q", &authz_only_ops);
    fx_configure(f, "anonymous_role: admin\ndefault_role: \"\"");
    calls[0] = '\0';
    c = admitted(f, NULL);
    assert_string_equal(calls, " q.authorize:connect");
    assert_string_equal(identity(c)->role, "admin");
    assert_int_equal(identity(c)->rank, 2);
}

/* --- actions ------------------------------------------------------------------------------ */

static void h_plain(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    (void)self;
    (void)conn;
    (void)args;
    commands_svc_reply_ok(req, "ran", NULL);
}

/* Reads lobby/general's history (no storage: STORAGE_UNAVAILABLE once allowed). */
static void h_history(void *self, arq_request *req, arq_conn *conn, const json_t *args)
{
    (void)args;
    json_t *q = json_pack("{s:s, s:s}", "room", "lobby", "channel", "general");
    storage_svc_history(self, req, conn, q, 0);
    json_decref(q);
}

static const struct arq_command auth_commands[] = {
    {"plain", "no declared role", NULL, NULL, h_plain},
    {"adm", "for admins", NULL, "admin", h_plain},
    {"hist", "reads history", NULL, "guest", h_history},
    {NULL, NULL, NULL, NULL, NULL}};
static const struct arq_commands_ops auth_commands_ops = {.struct_size = sizeof auth_commands_ops,
                                                          .commands = auth_commands};

static void commands(struct bus_fx *f)
{
    struct arq_ctx *ctx = fx_instance(f, "cmds", ARQ_KIND_COMMANDS, &auth_commands_ops, NULL);
    ctx->self = ctx; /* h_history needs its instance */
}

static void command(struct fake_client *c, const char *name)
{
    fx_sendf(c,
             "{\"type\":\"command\",\"id\":\"arq_00000000000000000000000001\",\"command\":\"%s\"}",
             name);
}

static void publish(struct fake_client *c)
{
    fx_send(c, "{\"type\":\"message\",\"id\":\"arq_00000000000000000000000002\",\"room\":\"lobby\","
               "\"channel\":\"general\",\"payload\":{}}");
}

static void every_action_is_authorized_with_its_target(void **state)
{
    struct bus_fx *f = *state;
    struct fake_policy q = {0};
    policy(f, &q, "q", &authz_only_ops);
    commands(f);
    struct fake_client *c = admitted(f, NULL);
    struct fake_client *other = admitted(f, NULL);
    struct arq_error err;

    calls[0] = '\0';
    assert_null(bus_svc_join(c->conn, "lobby", "general", &err));
    assert_null(bus_svc_join(other->conn, "lobby", "general", &err));
    publish(c);
    fx_expect(other, "message");
    command(c, "plain");
    assert_string_equal(fx_str(fx_expect(c, "response"), "status"), "success");
    command(c, "adm");
    assert_string_equal(fx_str(fx_expect(c, "response"), "error_code"), "AUTHORIZATION_ERROR");
    command(c, "hist");
    assert_string_equal(fx_str(fx_expect(c, "response"), "error_code"), "STORAGE_UNAVAILABLE");
    assert_string_equal(calls, " q.authorize:join:lobby/general q.authorize:join:lobby/general"
                               " q.authorize:publish:lobby/general q.authorize:command:plain:user"
                               " q.authorize:command:adm:admin q.authorize:command:hist:guest"
                               " q.authorize:history:lobby/general");
    assert_int_equal(fx_metric(f, "arqonbus_auth_failures_total{stage=\"action\"}"), 1);

    /* A policy's DENY: AUTHORIZATION_ERROR with its reason, or the host's text. */
    q.authz = ARQ_AUTH_DENY;
    q.authz_action = "publish";
    q.reason = "no publishing here";
    publish(c);
    json_t *e = fx_expect(c, "error");
    assert_string_equal(fx_str(e, "error_code"), "AUTHORIZATION_ERROR");
    assert_string_equal(fx_str(e, "error"), "no publishing here");
    q.authz_action = "join";
    q.reason = NULL;
    assert_string_equal(bus_svc_join(c->conn, "lobby", "other", &err), "AUTHORIZATION_ERROR");
    assert_string_equal(err.text, "Role user may not join lobby/other");
    q.authz_action = "history";
    command(c, "hist");
    assert_string_equal(fx_str(fx_expect(c, "response"), "error_code"), "AUTHORIZATION_ERROR");
    assert_int_equal(fx_unread(other), 0); /* nothing refused was delivered */

    /* A policy that decides commands overrides the declared role, both ways. */
    q.authz = ARQ_AUTH_ALLOW;
    q.authz_action = "command";
    command(c, "adm");
    assert_string_equal(fx_str(fx_expect(c, "response"), "status"), "success");
    q.authz = ARQ_AUTH_DENY;
    command(c, "plain");
    assert_string_equal(fx_str(fx_expect(c, "response"), "error_code"), "AUTHORIZATION_ERROR");
    assert_int_equal(fx_metric(f, "arqonbus_auth_failures_total{stage=\"action\"}"), 5);
    json_t *ev = fx_event(f, "auth_failed", 1);
    assert_string_equal(fx_str(ev, "data.stage"), "action");
    assert_string_equal(fx_str(ev, "data.action"), "publish");
    assert_string_equal(fx_str(ev, "data.target"), "lobby/general");
    assert_string_equal(fx_str(ev, "client_id"), conn_svc_client_id(c->conn));
}

static void a_rate_limited_action_says_when_to_retry_and_abuse_closes_after_the_reply(void **state)
{
    struct bus_fx *f = *state;
    struct fake_policy q = {
        .authz = ARQ_AUTH_RATE_LIMITED, .authz_action = "publish", .reason = "10/s"};
    policy(f, &q, "q", &authz_only_ops);
    commands(f);
    struct fake_client *c = admitted(f, NULL);
    struct arq_error err;
    assert_null(bus_svc_join(c->conn, "lobby", "general", &err));

    q.retry_after_ms = 1500;
    publish(c);
    json_t *e = fx_next(c);
    assert_string_equal(fx_str(e, "error_code"), "RATE_LIMITED");
    assert_string_equal(fx_str(e, "error"), "Rate limited: 10/s; retry after 1500 ms");
    assert_int_equal(json_integer_value(fx_get(e, "payload.retry_after_ms")), 1500);
    assert_int_equal(fx_metric(f, "arqonbus_rate_limit_hits_total{kind=\"messages\"}"), 1);
    json_t *ev = fx_event(f, "rate_limited", 0);
    assert_string_equal(fx_str(ev, "data.kind"), "messages");
    assert_int_equal(json_integer_value(fx_get(ev, "data.retry_after_ms")), 1500);
    assert_true(json_is_false(fx_get(ev, "data.abusive")));

    /* A command: the response says it twice; a policy's 0 becomes 1 ms. */
    q.authz_action = "command";
    q.retry_after_ms = 0;
    command(c, "plain");
    e = fx_next(c);
    assert_string_equal(fx_str(e, "type"), "response");
    assert_string_equal(fx_str(e, "error_code"), "RATE_LIMITED");
    assert_int_equal(json_integer_value(fx_get(e, "payload.retry_after_ms")), 1);
    assert_int_equal(json_integer_value(fx_get(e, "payload.data.retry_after_ms")), 1);
    assert_int_equal(fx_metric(f, "arqonbus_rate_limit_hits_total{kind=\"commands\"}"), 1);
    assert_false(c->closed);

    /* Past the policy's abuse threshold: the answer first, then 1008. */
    q.authz_action = "publish";
    q.abusive = 1;
    publish(c);
    assert_true(c->closed);
    assert_int_equal(c->close_code, 1008);
    assert_string_equal(c->close_reason, "rate limit abuse");
    e = fx_next(c);
    assert_non_null(e);
    assert_string_equal(fx_str(e, "error_code"), "RATE_LIMITED");
    assert_int_equal(fx_unread(c), 0);
    assert_int_equal(fx_metric(f, "arqonbus_abuse_disconnects_total"), 1);
    assert_int_equal(fx_metric(f, "arqonbus_rate_limit_hits_total{kind=\"messages\"}"), 2);

    /* The same for a command. */
    struct fake_client *d = admitted(f, NULL);
    q.authz_action = "command";
    command(d, "plain");
    assert_true(d->closed);
    assert_int_equal(d->close_code, 1008);
    assert_string_equal(fx_str(fx_next(d), "error_code"), "RATE_LIMITED");
    assert_int_equal(fx_metric(f, "arqonbus_abuse_disconnects_total"), 2);
}

/* --- reloads and expiry ------------------------------------------------------------------- */

static void a_reload_refreshes_or_revokes_the_identities_policies_gave(void **state)
{
    struct bus_fx *f = *state;
    struct fake_policy p = {.authn = ARQ_AUTH_ALLOW, .role = "user", .subject = "bob"};
    policy(f, &p, "p", &full_ops);
    struct fake_client *a = admitted(f, NULL);
    p.authn = ARQ_AUTH_DEFER;
    struct fake_client *g = admitted(f, NULL); /* admitted by default: guest */
    assert_string_equal(identity(g)->role, "guest");

    /* The policy's configuration changed: bob is now an admin; the default role too. */
    p.refresh = ARQ_AUTH_ALLOW;
    p.refresh_role = "admin";
    fx_configure(f, "default_role: user");
    calls[0] = '\0';
    reload(f);
    assert_string_equal(calls, " p.refresh:bob"); /* only the client p admitted */
    assert_string_equal(identity(a)->role, "admin");
    assert_int_equal(identity(a)->rank, 2);
    assert_string_equal(identity(a)->subject, "bob");
    assert_string_equal(identity(a)->policy, "p");
    assert_string_equal(identity(g)->role, "user");
    assert_int_equal(identity(g)->rank, 1);

    /* DEFER leaves it as it is. */
    p.refresh = ARQ_AUTH_DEFER;
    reload(f);
    assert_string_equal(identity(a)->role, "admin");
    assert_false(a->closed);

    /* DENY: bob's credential was revoked. Clients admitted by default are not asked. */
    p.refresh = ARQ_AUTH_DENY;
    p.reason = "token revoked";
    reload(f);
    assert_true(a->closed);
    assert_int_equal(a->close_code, 1008);
    assert_string_equal(a->close_reason, "Unauthorized: token revoked");
    assert_false(g->closed);

    /* No default role any more: those admitted by default go. */
    fx_configure(f, "default_role: \"\"");
    reload(f);
    assert_true(g->closed);
    assert_int_equal(g->close_code, 1008);
    assert_string_equal(g->close_reason, "Unauthorized: authentication required");
}

static void an_identity_stands_when_its_policy_is_gone_or_cannot_refresh(void **state)
{
    struct bus_fx *f = *state;
    struct fake_policy p = {
        .authn = ARQ_AUTH_ALLOW, .role = "user", .subject = "carol", .refresh = ARQ_AUTH_DENY};
    struct arq_ctx *ctx = policy(f, &p, "p", &full_ops);
    struct fake_policy keep = {0};
    policy(f, &keep, "keep", &full_ops);
    struct fake_client *c = admitted(f, NULL);
    calls[0] = '\0';
    fx_remove_instance(f, ctx);
    assert_string_equal(calls, "");
    assert_false(c->closed);
    assert_string_equal(identity(c)->role, "user");
    assert_string_equal(identity(c)->policy, "p");
}

static void a_credential_expires_by_the_clock(void **state)
{
    struct bus_fx *f = *state;
    json_t *claims = json_pack("{s:I}", "exp", (json_int_t)(f->now_ms / 1000 + 60));
    struct fake_policy p = {
        .authn = ARQ_AUTH_ALLOW, .role = "user", .subject = "dave", .claims = claims};
    policy(f, &p, "p", &full_ops);
    struct fake_client *c = admitted(f, NULL);
    p.claims = NULL;
    struct fake_client *forever = admitted(f, NULL);
    assert_int_equal(identity(c)->expires_ms, f->now_ms + 60000);

    assert_int_equal(auth_expire(&f->bus), 1);
    f->now_ms += 59999;
    assert_int_equal(auth_expire(&f->bus), 1);
    assert_false(c->closed);
    f->now_ms += 1;
    assert_int_equal(auth_expire(&f->bus), 0); /* nothing left that can expire */
    assert_true(c->closed);
    assert_int_equal(c->close_code, 1008);
    assert_string_equal(c->close_reason, "Unauthorized: token expired");
    assert_false(forever->closed);
    json_t *ev = fx_event(f, "auth_failed", 0);
    assert_string_equal(fx_str(ev, "data.stage"), "session");
    assert_string_equal(fx_str(ev, "client_id"), c->conn ? conn_svc_client_id(c->conn) : "");

    /* bus.expire_sessions off: an expired credential stays until it is switched on. */
    fx_configure(f, "expire_sessions: false");
    p.claims = claims;
    struct fake_client *d = admitted(f, NULL);
    f->now_ms += 3600 * 1000;
    assert_int_equal(auth_expire(&f->bus), 1);
    assert_false(d->closed);
    fx_configure(f, "expire_sessions: true");
    assert_int_equal(auth_expire(&f->bus), 0);
    assert_true(d->closed);
    json_decref(claims);
}

/* --- connection limits -------------------------------------------------------------------- */

static void connections_per_address_are_limited(void **state)
{
    struct bus_fx *f = *state;
    /* Counted while there is no limit: a reload that sets one finds them. */
    struct fake_client *a = admitted(f, NULL);
    admitted(f, NULL);
    fx_configure(f, "max_connections_per_ip: 2");
    refused_open(f, NULL, "Unauthorized: too many connections from 127.0.0.1 (at most 2)");
    admitted(f, "10.0.0.7"); /* another address has its own count */

    struct arq_auth_result out;
    assert_int_equal(handshake(f, "127.0.0.1", 0, &out, NULL), ARQ_AUTH_RATE_LIMITED);
    assert_int_equal(out.http_status, 429);
    assert_int_equal(out.retry_after_ms, 1000);
    /* A request that opens no connection (the HTTP API) is not counted against it. */
    assert_int_equal(handshake(f, "127.0.0.1", 1, &out, NULL), ARQ_AUTH_ALLOW);

    fx_disconnect(a, 1000);
    admitted(f, NULL);
    refused_open(f, NULL, "Unauthorized: too many connections from 127.0.0.1 (at most 2)");
    assert_int_equal(fx_metric(f, "arqonbus_rate_limit_hits_total{kind=\"connections\"}"), 3);
    assert_int_equal(fx_metric(f, "arqonbus_auth_failures_total{stage=\"handshake\"}"), 0);
    json_t *ev = fx_event(f, "rate_limited", 0);
    assert_string_equal(fx_str(ev, "data.kind"), "connections");
    assert_string_equal(fx_str(ev, "data.peer"), "127.0.0.1");
    assert_int_equal(json_integer_value(fx_get(ev, "data.status")), 429);
}

static void connections_over_all_addresses_are_limited(void **state)
{
    struct bus_fx *f = *state;
    fx_configure(f, "max_connections: 2");
    struct fake_client *a = admitted(f, "10.0.0.1");
    admitted(f, "10.0.0.2");
    refused_open(f, "10.0.0.3", "Unauthorized: the server holds its maximum of 2 connections");
    struct arq_auth_result out;
    assert_int_equal(handshake(f, "10.0.0.3", 0, &out, NULL), ARQ_AUTH_DENY);
    assert_int_equal(out.http_status, 503);
    fx_disconnect(a, 1000);
    admitted(f, "10.0.0.3");
    assert_int_equal(fx_metric(f, "arqonbus_rate_limit_hits_total{kind=\"connections\"}"), 2);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, bus_fx_teardown)
    const struct CMUnitTest tests[] = {
        T(policies_authenticate_in_declaration_order_until_one_does_not_defer),
        T(a_denying_policy_stops_the_chain_and_refuses_the_connection),
        T(when_every_policy_defers_the_default_role_applies),
        T(without_an_authenticating_policy_clients_have_the_anonymous_role),
        T(every_action_is_authorized_with_its_target),
        T(a_rate_limited_action_says_when_to_retry_and_abuse_closes_after_the_reply),
        T(a_reload_refreshes_or_revokes_the_identities_policies_gave),
        T(an_identity_stands_when_its_policy_is_gone_or_cannot_refresh),
        T(a_credential_expires_by_the_clock),
        T(connections_per_address_are_limited),
        T(connections_over_all_addresses_are_limited),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
