/* transport-http: state shared by the plugin's files.
 *
 *   http_plugin.c   options, configuration, life cycle, metrics, the descriptor
 *   http_daemon.c   the listening socket and libmicrohttpd on the host's libuv loop
 *   http_request.c  one request: routing, limits, API key, CORS, responses, suspension
 *   http_routes.c   the endpoints
 *   http_dashboard.c the dashboard's files (dashboard/, embedded: http_assets.h)
 *
 * Everything runs on the host's loop thread: libmicrohttpd has no thread of its own here
 * (README.md says why), so the bus services are called directly. */
#ifndef ARQ_TRANSPORT_HTTP_H
#define ARQ_TRANSPORT_HTTP_H

#include <arqonbus/plugin.h>
#include <jansson.h>
#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct http_config {
    char *host; /* numeric address, as configured */
    int port;   /* 0: any free port */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    unsigned max_connections;
    unsigned idle_timeout_s; /* 0: never */
    char *api_key;           /* RELOADABLE, SECRET; NULL: the keyed endpoints are disabled */
    size_t api_key_len;
    size_t max_body_bytes; /* RELOADABLE */
    char **cors_origins;   /* RELOADABLE: allowed Origin values */
    size_t ncors;
    int cors_any; /* RELOADABLE: "*" was listed */
};

/* The method label of arqonbus_http_requests_total: a fixed set, so that a client cannot
 * create series at will. */
enum http_method {
    HTTP_GET = 0,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_PATCH,
    HTTP_OPTIONS,
    HTTP_OTHER,
    HTTP_NMETHODS
};

struct http_uv; /* the libuv handles, freed after they close (http_daemon.c) */
struct http_req;

/* One instance. */
struct http_server {
    const struct arq_host *host;
    arq_ctx *ctx;
    char *name; /* instance name, copied */
    struct http_config cfg;

    struct MHD_Daemon *mhd;
    int listen_fd; /* our descriptor of the listening socket, -1 once stopped */
    struct http_uv *uv;
    char bound_addr[64];
    int bound_port;
    int inherited; /* the socket is shared with the instance this one replaced */
    int stopped;   /* no longer accepting: answers carry Connection: close */
    int holding;   /* stopped with requests in flight: held by the host until they end */
    int closing;   /* being destroyed: requests still complete are answered 503 */
    arq_timer *hold_timer;

    struct http_req *reqs; /* requests between their first call and their completion */
    size_t nreqs;

    arq_metric *m_requests;
    arq_series *s_requests[HTTP_NMETHODS][5]; /* looked up on first use */
    arq_series *s_duration, *s_conns;
};

/* --- http_plugin.c -------------------------------------------------------------------------- */

/* A request ended: once a stopped instance has none left, the host may destroy it. */
void http_server__request_gone(struct http_server *srv);

/* --- http_daemon.c -------------------------------------------------------------------------- */

/* Bind the configured address (or share the predecessor's socket when it is the same) and
 * start libmicrohttpd on the loop. */
int http_daemon__start(struct http_server *srv, struct http_server *pred, struct arq_error *err);
/* Stop accepting; requests and connections already open go on until http_daemon__destroy. */
void http_daemon__quiesce(struct http_server *srv);
/* End every connection (suspended requests get 503) and close the libuv handles. */
void http_daemon__destroy(struct http_server *srv);
/* Run libmicrohttpd soon (a suspended connection was resumed). */
void http_daemon__kick(struct http_server *srv);

/* --- http_request.c ------------------------------------------------------------------------- */

enum MHD_Result http_request__handle(void *cls, struct MHD_Connection *mc, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **con_cls);
void http_request__completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                             enum MHD_RequestTerminationCode toe);
/* Answer every suspended request with 503 and resume it (the daemon is going away). */
void http_request__abort_suspended(struct http_server *srv);

/* What handlers use. Each handler ends its request exactly once: with one of the replies, or
 * by starting an asynchronous operation whose callback is http_request__result. */
void http_reply_json(struct http_req *req, unsigned status, const json_t *body);
void http_reply_error(struct http_req *req, unsigned status, const char *code, const char *text);
void http_reply_text(struct http_req *req, unsigned status, const char *content_type, char *text,
                     size_t len, void (*free_fn)(void *));
/* `data` (static, never freed) with `extra` header name/value pairs (NULL-terminated, or
 * NULL). */
void http_reply_static(struct http_req *req, unsigned status, const char *content_type,
                       const void *data, size_t len, const char *const *extra);
/* The HTTP status for one of the protocol's error codes. */
unsigned http_status_of(const char *error_code);
/* The request's server, body (NUL-terminated; length in *len), and query parameters. */
struct http_server *http_req_server(const struct http_req *req);
const char *http_req_body(const struct http_req *req, size_t *len);
/* Who opened a keyed route: "api_key" (the API key), or the role of the token's principal,
 * with its subject in *subject (else NULL). NULL before the check and on open routes. */
const char *http_req_role(const struct http_req *req, const char **subject);
struct MHD_Connection *http_req_connection(const struct http_req *req);
/* Begin an asynchronous operation: returns the `arg` to give it, with http_request__result as
 * its callback; NULL on allocation failure (the request was answered with 500). */
void *http_req_await(struct http_req *req);
/* The arq_result_cb of asynchronous operations: the outcome becomes the response (200 with
 * `data`, or the error's status). */
void http_request__result(void *arg, const char *error_code, const char *text, const json_t *data);

/* --- http_routes.c -------------------------------------------------------------------------- */

typedef void (*http_handler)(struct http_req *req, const char *url);

#define HTTP_ALLOW_GET  1u /* GET and HEAD */
#define HTTP_ALLOW_POST 2u

struct http_route {
    const char *path; /* exact, or "/rooms/{}/channels" with one segment in place of {} */
    unsigned allow;   /* HTTP_ALLOW_* */
    /* NULL: open to all. Else the API key is required, or a token an auth policy accepts
     * for a principal allowed to run this command (group admin). */
    const char *command;
    http_handler handler;
};

/* The route for `url`, or NULL. */
const struct http_route *http_routes__find(const char *url);
/* The one path segment that stands for {} in `url` (a pointer into it, *len bytes, not
 * NUL-terminated), or NULL. */
const char *http_routes__segment(const char *url, size_t *len);

/* --- http_dashboard.c ----------------------------------------------------------------------- */

/* GET /dashboard (index.html) and /dashboard/<file>. */
void http_dashboard__serve(struct http_req *req, const char *url);

#endif
