/* One HTTP request, from its headers to its completion: routing, method and API key checks,
 * CORS, the body and its limit, the response, suspension while an asynchronous bus operation
 * runs, and the request metrics.
 *
 * libmicrohttpd calls the access handler first with the headers, then with each piece of the
 * body, then once more with none. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "http.h"
#include "http_path.h"

/* A body over the limit without a Content-Length (chunked) can only be refused once it has
 * ended; until then it is read and dropped, but no more than this before the connection is
 * closed without an answer. */
#define DISCARD_MAX ((size_t)64 << 20)

struct http_wait;

struct http_req {
    struct http_server *srv;
    struct MHD_Connection *mc;
    const struct http_route *route;
    enum http_method method;
    uint64_t start_ns;
    char *body; /* NUL-terminated */
    size_t body_len, body_cap;
    size_t discarded; /* bytes dropped past max_body_bytes (or for want of memory) */
    int nomem;        /* the body could not be held */
    unsigned status;  /* the status queued, 0 until then */
    int failed;       /* the response could not be queued: close the connection */
    int screened;     /* the header checks ran (see screen) */
    int suspended;
    struct http_wait *wait; /* the asynchronous operation in progress, or NULL */
    /* Who passed the route's check: "api_key", or a token's role and subject (copied). */
    char role[64], subject[128];
    struct http_req *prev, *next;
};

/* The `arg` of an asynchronous bus operation. It outlives its request when the request ends
 * first (client gone, instance destroyed): `req` is then NULL and the result is dropped. */
struct http_wait {
    struct http_req *req;
};

static const char *const method_names[HTTP_NMETHODS] = {"GET",    "HEAD",  "POST",    "PUT",
                                                        "DELETE", "PATCH", "OPTIONS", "other"};

static enum http_method method_of(const char *m)
{
    for (int i = 0; i < HTTP_OTHER; i++)
        if (!strcmp(m, method_names[i]))
            return (enum http_method)i;
    return HTTP_OTHER;
}

struct http_server *http_req_server(const struct http_req *req)
{
    return req->srv;
}

struct MHD_Connection *http_req_connection(const struct http_req *req)
{
    return req->mc;
}

const char *http_req_body(const struct http_req *req, size_t *len)
{
    *len = req->body_len;
    return req->body ? req->body : "";
}

unsigned http_status_of(const char *code)
{
    static const struct {
        const char *code;
        unsigned status;
    } map[] = {
        {ARQ_ERR_VALIDATION, MHD_HTTP_BAD_REQUEST},
        {ARQ_ERR_INVALID_JSON, MHD_HTTP_BAD_REQUEST},
        {ARQ_ERR_AUTHORIZATION, MHD_HTTP_FORBIDDEN},
        {ARQ_ERR_NOT_FOUND, MHD_HTTP_NOT_FOUND},
        {ARQ_ERR_ROOM_NOT_FOUND, MHD_HTTP_NOT_FOUND},
        {ARQ_ERR_CHANNEL_NOT_FOUND, MHD_HTTP_NOT_FOUND},
        {ARQ_ERR_CHANNEL_EXISTS, MHD_HTTP_CONFLICT},
        {ARQ_ERR_RATE_LIMITED, MHD_HTTP_TOO_MANY_REQUESTS},
        {ARQ_ERR_STORAGE_UNAVAILABLE, MHD_HTTP_SERVICE_UNAVAILABLE},
        {ARQ_ERR_AUTHENTICATION, MHD_HTTP_UNAUTHORIZED},
        {ARQ_ERR_METHOD_NOT_ALLOWED, MHD_HTTP_METHOD_NOT_ALLOWED},
        {ARQ_ERR_PAYLOAD_TOO_LARGE, MHD_HTTP_CONTENT_TOO_LARGE},
    };
    if (!code)
        return MHD_HTTP_OK;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(code, map[i].code))
            return map[i].status;
    return MHD_HTTP_INTERNAL_SERVER_ERROR; /* EXECUTION_ERROR, INTERNAL_ERROR, the unknown */
}

/* --- CORS ---------------------------------------------------------------------------------- */

/* The Access-Control-Allow-Origin value for this request's Origin, or NULL. */
static const char *cors_origin(const struct http_req *req)
{
    const struct http_config *c = &req->srv->cfg;
    if (!c->cors_any && !c->ncors)
        return NULL;
    const char *origin = MHD_lookup_connection_value(req->mc, MHD_HEADER_KIND, "Origin");
    if (!origin)
        return NULL;
    if (c->cors_any)
        return "*";
    for (size_t i = 0; i < c->ncors; i++)
        if (!strcasecmp(origin, c->cors_origins[i]))
            return origin;
    return NULL;
}

static const char *allow_header(unsigned allow)
{
    return allow & HTTP_ALLOW_POST ? "POST, OPTIONS" : "GET, HEAD, OPTIONS";
}

/* --- responses ----------------------------------------------------------------------------- */

/* Queue `r` (consumed) with the headers every response carries, and `extra` name/value pairs
 * (NULL-terminated). */
static void queue(struct http_req *req, unsigned status, struct MHD_Response *r,
                  const char *content_type, const char *const *extra)
{
    if (!r) {
        req->failed = 1;
        return;
    }
    if (content_type)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    const char *origin = cors_origin(req);
    if (origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
        if (strcmp(origin, "*") != 0)
            MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Origin");
    }
    for (; extra && extra[0]; extra += 2)
        MHD_add_response_header(r, extra[0], extra[1]);
    /* A retired instance serves what it has, then lets the clients go to its successor. */
    if (req->srv->stopped)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    if (MHD_queue_response(req->mc, status, r) == MHD_YES)
        req->status = status;
    else
        req->failed = 1;
    MHD_destroy_response(r);
}

/* Queue `body` as JSON; 0, or -1 when it could not be written (out of memory), with nothing
 * queued. */
static int reply_json_with(struct http_req *req, unsigned status, const json_t *body,
                           const char *const *extra)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text)
        return -1;
    /* json_dumps allocates with malloc (jansson's default), which MUST_FREE releases. */
    queue(req, status, MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE),
          "application/json", extra);
    return 0;
}

/* Every error body of the API is written here, in the one shape docs/protocol.md gives:
 * {"error": text, "error_code": code, "payload"?: details}. The text may echo what the client
 * sent (a path, a name, a parameter), so bytes that are not UTF-8, which JSON cannot carry,
 * are written as \xHH. When even that body cannot be built, a constant of the same shape says
 * so. `extra`: header name/value pairs (NULL-terminated), or NULL. */
static void reply_error_with(struct http_req *req, unsigned status, const char *code,
                             const char *text, const json_t *payload, const char *const *extra)
{
    static const char oom[] = "{\"error\":\"Out of memory\",\"error_code\":\"INTERNAL_ERROR\"}";
    size_t len = text && *text ? strlen(text) : 0;
    char *safe = malloc(4 * len + 1);
    json_t *body = NULL;
    if (safe) {
        http_path__escape(safe, 4 * len + 1, len ? text : code, len ? len : strlen(code));
        body = json_pack("{s:s, s:s, s:O*}", "error", safe, "error_code", code, "payload", payload);
    }
    free(safe);
    int rc = reply_json_with(req, status, body, extra);
    json_decref(body);
    if (rc != 0)
        queue(req, MHD_HTTP_INTERNAL_SERVER_ERROR,
              MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT),
              "application/json", NULL);
}

void http_reply_json(struct http_req *req, unsigned status, const json_t *body)
{
    if (reply_json_with(req, status, body, NULL) != 0)
        reply_error_with(req, MHD_HTTP_INTERNAL_SERVER_ERROR, ARQ_ERR_INTERNAL, "Out of memory",
                         NULL, NULL);
}

void http_reply_error(struct http_req *req, unsigned status, const char *code, const char *text)
{
    reply_error_with(req, status, code, text, NULL, NULL);
}

void http_reply_text(struct http_req *req, unsigned status, const char *content_type, char *text,
                     size_t len, void (*free_fn)(void *))
{
    queue(req, status, MHD_create_response_from_buffer_with_free_callback(len, text, free_fn),
          content_type, NULL);
}

void http_reply_static(struct http_req *req, unsigned status, const char *content_type,
                       const void *data, size_t len, const char *const *extra)
{
    queue(req, status, MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_PERSISTENT),
          content_type, extra);
}

const char *http_req_role(const struct http_req *req, const char **subject)
{
    *subject = req->subject[0] ? req->subject : NULL;
    return req->role[0] ? req->role : NULL;
}

/* --- asynchronous operations --------------------------------------------------------------- */

void *http_req_await(struct http_req *req)
{
    struct http_wait *w = malloc(sizeof *w);
    if (!w) {
        http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, ARQ_ERR_INTERNAL, "Out of memory");
        return NULL;
    }
    w->req = req;
    req->wait = w;
    return w;
}

void http_request__result(void *arg, const char *error_code, const char *text, const json_t *data)
{
    struct http_wait *w = arg;
    struct http_req *req = w->req;
    free(w);
    if (!req)
        return; /* the request ended first */
    req->wait = NULL;
    if (error_code) {
        /* With its details when there are some (VALIDATION_ERROR lists every problem). */
        reply_error_with(req, http_status_of(error_code), error_code, text, data, NULL);
    } else if (data) {
        http_reply_json(req, MHD_HTTP_OK, data);
    } else {
        json_t *empty = json_object();
        http_reply_json(req, MHD_HTTP_OK, empty);
        json_decref(empty);
    }
    /* A suspended connection may be given its response at any time; it goes out once the
     * connection is resumed and the daemon runs. Called before suspension (the operation
     * answered at once), the response is simply queued. */
    if (req->suspended) {
        req->suspended = 0;
        MHD_resume_connection(req->mc);
        http_daemon__kick(req->srv);
    }
}

void http_request__abort_suspended(struct http_server *srv)
{
    for (struct http_req *req = srv->reqs; req; req = req->next) {
        if (!req->suspended)
            continue;
        req->wait->req = NULL; /* the operation's result will be dropped */
        req->wait = NULL;
        http_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, ARQ_ERR_EXECUTION,
                         "The HTTP listener is closing");
        req->suspended = 0;
        MHD_resume_connection(req->mc);
    }
}

/* --- the access handler -------------------------------------------------------------------- */

/* Constant time in the length of the configured key, whatever was sent. */
static int key_matches(const struct http_config *c, const char *given)
{
    size_t n = strlen(given);
    unsigned char diff = n != c->api_key_len;
    for (size_t i = 0; i < c->api_key_len; i++)
        diff |= (unsigned char)c->api_key[i] ^ (unsigned char)(i < n ? given[i] : 0);
    return diff == 0;
}

/* The API key from X-API-Key or Authorization: Bearer, or NULL. */
static const char *given_key(struct MHD_Connection *mc)
{
    const char *k = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-API-Key");
    if (k)
        return k;
    const char *a = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return NULL;
    for (a += 7; *a == ' '; a++)
        ;
    return a;
}

static const char *request_header(void *tconn, const char *name)
{
    return MHD_lookup_connection_value(tconn, MHD_HEADER_KIND, name);
}

static const char *const bearer_challenge[] = {MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                               "Bearer realm=\"arqonbus\"", NULL};

/* Does an auth policy accept the request's credentials (`presented`: it sent some) for a
 * principal that may run the route's command? 1 yes; 0 no policy identified the request; -1
 * refused (answered). */
static int token_allows(struct http_req *req, int presented)
{
    struct http_server *srv = req->srv;
    char peer[64] = "?";
    int port = 0;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ci->client_addr;
        inet_ntop(AF_INET, &in->sin_addr, peer, sizeof peer);
        port = ntohs(in->sin_port);
    } else if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ci->client_addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, peer, sizeof peer);
        port = ntohs(in6->sin6_port);
    }
    struct arq_conn_info info = {.struct_size = sizeof info,
                                 .transport = "http",
                                 .peer_addr = peer,
                                 .peer_port = port,
                                 .path = req->route->path,
                                 .header = request_header,
                                 .request_only = 1};
    struct arq_auth_result res = {.struct_size = sizeof res};
    arq_ticket *ticket = NULL;
    enum arq_auth_verdict v = srv->host->auth_handshake(srv->ctx, &info, req->mc, &ticket, &res);
    if (v != ARQ_AUTH_ALLOW) {
        char details[300];
        snprintf(details, sizeof details, "%s: %s",
                 presented ? "Invalid API key or token" : "A token is required", res.reason);
        if (res.http_status == 403)
            reply_error_with(req, MHD_HTTP_FORBIDDEN, ARQ_ERR_AUTHORIZATION, details, NULL, NULL);
        else
            reply_error_with(req, MHD_HTTP_UNAUTHORIZED, ARQ_ERR_AUTHENTICATION, details, NULL,
                             bearer_challenge);
        return -1;
    }
    if (!res.principal.subject) { /* the host's default role: nobody in particular */
        srv->host->auth_ticket_free(ticket);
        return 0;
    }
    /* Copied now: the principal's strings belong to the ticket. */
    snprintf(req->role, sizeof req->role, "%s", res.principal.role ? res.principal.role : "");
    snprintf(req->subject, sizeof req->subject, "%s", res.principal.subject);
    struct arq_action what = {.struct_size = sizeof what,
                              .action = "command",
                              .command = req->route->command,
                              .group = "admin"};
    v = srv->host->auth_authorize(srv->ctx, ticket, &what, &res);
    srv->host->auth_ticket_free(ticket);
    if (v == ARQ_AUTH_ALLOW)
        return 1;
    req->role[0] = req->subject[0] = '\0';
    reply_error_with(req, MHD_HTTP_FORBIDDEN, ARQ_ERR_AUTHORIZATION, res.reason, NULL, NULL);
    return -1;
}

/* 0 when the request may go on; otherwise it was answered (401 or 403). */
static int check_key(struct http_req *req)
{
    const struct http_config *c = &req->srv->cfg;
    const char *k = given_key(req->mc);
    if (c->api_key && k && *k && key_matches(c, k)) {
        snprintf(req->role, sizeof req->role, "api_key");
        return 0;
    }
    if ((k && *k) || !c->api_key) {
        /* Not the API key: perhaps a token of an auth policy (an admin's JWT, say). Without an
         * API key, tokens alone open the endpoint, so a request without one is asked the
         * policies too: one that requires a token answers 401, not "disabled". */
        int ok = token_allows(req, k && *k);
        if (ok)
            return ok > 0 ? 0 : -1;
    }
    if (!c->api_key) {
        reply_error_with(req, MHD_HTTP_FORBIDDEN, ARQ_ERR_AUTHORIZATION,
                         "This endpoint is disabled: no api_key is configured for the HTTP API",
                         NULL, NULL);
        return -1;
    }
    if (!k || !*k) {
        reply_error_with(req, MHD_HTTP_UNAUTHORIZED, ARQ_ERR_AUTHENTICATION,
                         "An API key is required: send X-API-Key or Authorization: Bearer", NULL,
                         bearer_challenge);
        return -1;
    }
    ARQ_LOG(req->srv->host, req->srv->ctx, ARQ_LOG_INFO, "api key refused", "path",
            req->route->path);
    reply_error_with(req, MHD_HTTP_UNAUTHORIZED, ARQ_ERR_AUTHENTICATION, "Invalid API key", NULL,
                     bearer_challenge);
    return -1;
}

static void reply_too_large(struct http_req *req)
{
    char text[96];
    snprintf(text, sizeof text, "The request body is larger than %zu bytes",
             req->srv->cfg.max_body_bytes);
    reply_error_with(req, MHD_HTTP_CONTENT_TOO_LARGE, ARQ_ERR_PAYLOAD_TOO_LARGE, text, NULL, NULL);
}

/* CORS preflight (and plain OPTIONS): 204 with what the path allows. */
static void reply_options(struct http_req *req)
{
    const char *allow = allow_header(req->route->allow);
    const char *h[] = {MHD_HTTP_HEADER_ALLOW, allow, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    if (cors_origin(req)) {
        h[2] = "Access-Control-Allow-Methods";
        h[3] = allow;
        h[4] = "Access-Control-Allow-Headers";
        h[5] = "Content-Type, Authorization, X-API-Key";
        h[6] = "Access-Control-Max-Age";
        h[7] = "600";
    }
    queue(req, MHD_HTTP_NO_CONTENT,
          MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT), NULL, h);
}

/* Answers what can be refused from the headers alone: unknown path, OPTIONS, wrong method,
 * API key, a Content-Length over the limit. */
static void screen(struct http_req *req, const char *url)
{
    const struct http_route *route = req->route;
    req->screened = 1;
    if (!route) {
        char text[300];
        snprintf(text, sizeof text, "No endpoint at %s", url);
        reply_error_with(req, MHD_HTTP_NOT_FOUND, ARQ_ERR_NOT_FOUND, text, NULL, NULL);
        return;
    }
    if (req->method == HTTP_OPTIONS) {
        reply_options(req);
        return;
    }
    int ok = route->allow & HTTP_ALLOW_GET ? req->method == HTTP_GET || req->method == HTTP_HEAD
                                           : req->method == HTTP_POST;
    if (!ok) {
        const char *allow = allow_header(route->allow);
        const char *h[] = {MHD_HTTP_HEADER_ALLOW, allow, NULL};
        char text[160];
        snprintf(text, sizeof text, "Method not allowed on %s (allowed: %s)", route->path, allow);
        reply_error_with(req, MHD_HTTP_METHOD_NOT_ALLOWED, ARQ_ERR_METHOD_NOT_ALLOWED, text, NULL,
                         h);
        return;
    }
    if (route->command && check_key(req) != 0)
        return;
    const char *length =
        MHD_lookup_connection_value(req->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length && strtoull(length, NULL, 10) > req->srv->cfg.max_body_bytes)
        reply_too_large(req);
}

/* The first call: headers only. A request with a body is screened at once, so that an
 * unwanted body is never read (libmicrohttpd discards it and closes the connection). One
 * without is screened once it is complete, which keeps the connection alive. */
static void first_call(struct http_req *req, const char *url)
{
    req->route = http_routes__find(url);
    const char *length =
        MHD_lookup_connection_value(req->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *chunked =
        MHD_lookup_connection_value(req->mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (chunked || (length && strtoull(length, NULL, 10) > 0))
        screen(req, url);
}

/* A piece of the body. */
static void take_body(struct http_req *req, const char *data, size_t n)
{
    size_t max = req->srv->cfg.max_body_bytes;
    if (req->discarded || req->body_len + n > max) {
        req->discarded += n;
        return;
    }
    if (req->body_len + n + 1 > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 1024;
        while (cap < req->body_len + n + 1)
            cap *= 2;
        char *b = realloc(req->body, cap);
        if (!b) {
            req->nomem = 1;
            req->discarded += n;
            return;
        }
        req->body = b;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, n);
    req->body_len += n;
    req->body[req->body_len] = '\0';
}

/* The whole request is in: run its handler. */
static void dispatch(struct http_req *req, const char *url)
{
    if (!req->screened)
        screen(req, url);
    if (req->status || req->failed)
        return;
    if (req->nomem) {
        http_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, ARQ_ERR_INTERNAL,
                         "Out of memory while reading the body");
        return;
    }
    if (req->discarded) {
        reply_too_large(req);
        return;
    }
    if (req->srv->closing) {
        /* The last run before the daemon stops: start nothing that would answer later. */
        http_reply_error(req, MHD_HTTP_SERVICE_UNAVAILABLE, ARQ_ERR_EXECUTION,
                         "The HTTP listener is closing");
        return;
    }
    req->route->handler(req, url);
    if (req->status || req->failed)
        return;
    if (req->wait) {
        /* Answered by http_request__result, later. */
        MHD_suspend_connection(req->mc);
        req->suspended = 1;
        return;
    }
    http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, ARQ_ERR_INTERNAL,
                     "The handler gave no answer");
}

static void update_connections(struct http_server *srv)
{
    const union MHD_DaemonInfo *info =
        srv->mhd ? MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;
    if (info && srv->s_conns)
        srv->host->metric_set(srv->s_conns, (double)info->num_connections);
}

enum MHD_Result http_request__handle(void *cls, struct MHD_Connection *mc, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls)
{
    (void)version;
    struct http_server *srv = cls;
    struct http_req *req = *con_cls;
    if (!req) {
        if (!(req = calloc(1, sizeof *req))) {
            ARQ_LOG(srv->host, srv->ctx, ARQ_LOG_ERROR, "request dropped", "reason",
                    "out of memory");
            return MHD_NO;
        }
        req->srv = srv;
        req->mc = mc;
        req->method = method_of(method);
        req->start_ns = uv_hrtime();
        req->next = srv->reqs;
        if (srv->reqs)
            srv->reqs->prev = req;
        srv->reqs = req;
        srv->nreqs++;
        *con_cls = req;
        update_connections(srv);
        first_call(req, url);
        return req->failed ? MHD_NO : MHD_YES;
    }
    if (req->status)
        return MHD_YES;
    if (*upload_data_size) {
        take_body(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return req->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
    }
    if (!req->wait)
        dispatch(req, url);
    return req->failed ? MHD_NO : MHD_YES;
}

static arq_series *requests_series(struct http_server *srv, enum http_method m, unsigned status)
{
    unsigned cls = status / 100;
    if (!srv->m_requests || cls < 1 || cls > 5)
        return NULL;
    arq_series **slot = &srv->s_requests[m][cls - 1];
    if (!*slot) {
        char klass[4] = {(char)('0' + cls), 'x', 'x', '\0'};
        const char *values[] = {srv->name, method_names[m], klass, NULL};
        *slot = srv->host->metric_series(srv->m_requests, values);
    }
    return *slot;
}

void http_request__completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                             enum MHD_RequestTerminationCode toe)
{
    (void)mc;
    struct http_server *srv = cls;
    struct http_req *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    const struct arq_host *h = srv->host;
    double seconds = (double)(uv_hrtime() - req->start_ns) / 1e9;
    /* A request that got no response (the client left, a timeout) is not counted. */
    arq_series *s = req->status ? requests_series(srv, req->method, req->status) : NULL;
    if (s)
        h->metric_add(s, 1);
    if (req->status && srv->s_duration)
        h->metric_observe(srv->s_duration, seconds);
    if (h->log_enabled(srv->ctx, ARQ_LOG_DEBUG)) {
        char status[8], ms[32];
        snprintf(status, sizeof status, "%u", req->status);
        snprintf(ms, sizeof ms, "%.3f", seconds * 1000);
        ARQ_LOG(h, srv->ctx, ARQ_LOG_DEBUG, "request", "method", method_names[req->method], "path",
                req->route ? req->route->path : "(unknown)", "status", status, "duration_ms", ms,
                "completed", toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "yes" : "no");
    }
    if (req->wait)
        req->wait->req = NULL;
    if (req->prev)
        req->prev->next = req->next;
    else
        srv->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    srv->nreqs--;
    free(req->body);
    free(req);
    update_connections(srv);
    http_server__request_gone(srv);
}
