/* arqonbus-cli: a command-line client for ArqonBus (what mosquitto_sub/pub and redis-cli are
 * to their servers). One WebSocket connection on a plain libwebsockets client loop: connect,
 * send one frame, then print frames until the reply (pub, cmd) or forever (sub). pub joins
 * first; on a connection with acks off (`?ack=0`) it follows the message with a `ping`, whose
 * reply stands for the ack that will not come. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "cli_args.h"
#include "cli_frames.h"

#define CLI_MAX_FRAME   (64u * 1024u * 1024u)
#define CLI_CLOSE_GRACE ((lws_usec_t)1000 * LWS_US_PER_MS) /* for the server's close reply */

enum cli_phase {
    PHASE_CONNECTING, /* TCP, then the upgrade */
    PHASE_WAITING,    /* the request is out; waiting for its reply */
    PHASE_STREAMING,  /* sub: joined; printing frames */
    PHASE_CLOSING     /* our close frame is out (or about to be) */
};

struct cli_run {
    struct cli_opts *o;
    struct lws_context *ctx;
    struct lws *wsi;
    enum cli_phase phase;
    char id[CLI_ID_SIZE];     /* the request whose reply ends the command */
    char marker[CLI_ID_SIZE]; /* pub with acks off: the ping sent after the message, or "" */
    unsigned nsent;           /* requests built, so that two ids never coincide */
    char url[512];
    char auth[1024];   /* "Bearer <token>", or "" */
    unsigned char *tx; /* the request, LWS_PRE bytes of headroom first; NULL once sent */
    size_t txlen;
    char *rx; /* a message being received in pieces */
    size_t rxlen, rxcap;
    long frames; /* sub: frames printed, for --count */
    int joining; /* pub: the join that precedes the message is out */
    int mark;    /* pub with acks off: send the marker once the message is out */
    int exit_code;
    int done;
    lws_sorted_usec_list_t sul; /* the one timer: connect/reply timeout, then close grace */
};

static volatile sig_atomic_t cli__interrupted;

static void cli__on_signal(int sig)
{
    (void)sig;
    if (cli__interrupted)
        _exit(130); /* a second ^C: stop waiting for anything */
    cli__interrupted = 1;
}

static void cli__diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void cli__diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("arqonbus-cli: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* One frame, one line, flushed at once so a pipe sees it as it arrives. */
static void cli__print(struct cli_run *r, FILE *out, const char *text, size_t len)
{
    char *line = cli_compact(text, len);
    if (!line) {
        cli__diag("out of memory printing a %zu-byte frame", len);
        return;
    }
    fprintf(out, "%s\n", line);
    free(line);
    if (fflush(out) != 0 && out == stdout) {
        /* the reader went away (e.g. `| head -1`): nothing left to do */
        r->exit_code = errno == EPIPE ? CLI_EXIT_OK : CLI_EXIT_ERROR;
        r->done = 1;
    }
}

static void cli__finish(struct cli_run *r, int code);
static int cli__queue(struct cli_run *r, enum cli_command as, char *id);

static void cli__timer(lws_sorted_usec_list_t *sul)
{
    struct cli_run *r = lws_container_of(sul, struct cli_run, sul);
    /* Timers run before lws_service() polls: wake that poll, or it sleeps up to 30 s. */
    lws_cancel_service(r->ctx);
    if (r->phase == PHASE_CLOSING) {
        r->done = 1; /* the server did not answer our close in time: fine, we are leaving */
        return;
    }
    if (r->phase == PHASE_CONNECTING) {
        cli__diag("%s: no connection within %g s", r->url, r->o->timeout_s);
        r->exit_code = CLI_EXIT_ERROR;
        r->done = 1;
        return;
    }
    cli__diag("%s: no reply to %s within %g s", r->url, r->id, r->o->timeout_s);
    cli__finish(r, CLI_EXIT_ERROR);
}

static void cli__arm(struct cli_run *r, lws_usec_t us)
{
    lws_sul_schedule(r->ctx, 0, &r->sul, cli__timer, us);
}

/* Leave with `code`: send a close frame and give the server a moment to answer it. */
static void cli__finish(struct cli_run *r, int code)
{
    r->exit_code = code;
    if (r->phase == PHASE_CLOSING)
        return;
    r->phase = PHASE_CLOSING;
    if (!r->wsi) {
        r->done = 1;
        return;
    }
    lws_callback_on_writable(r->wsi);
    cli__arm(r, CLI_CLOSE_GRACE);
}

static void cli__on_frame(struct cli_run *r, const char *text, size_t len)
{
    enum cli_frame_kind kind = cli_classify(text, len, r->id);
    if (kind == CLI_FRAME_WELCOME) {
        if (r->o->verbose)
            cli__print(r, stdout, text, len);
        return;
    }
    /* With acks off, the message's only possible reply is an error, sent before the server
     * reads the marker: any reply to the marker means the message was taken. */
    if (r->phase == PHASE_WAITING && kind == CLI_FRAME_OTHER && r->marker[0] &&
        cli_classify(text, len, r->marker) != CLI_FRAME_OTHER) {
        if (r->o->verbose)
            cli__print(r, stderr, text, len);
        cli__finish(r, CLI_EXIT_OK);
        return;
    }
    if (r->phase == PHASE_WAITING && kind != CLI_FRAME_OTHER) {
        if (kind == CLI_REPLY_OK && r->joining) {
            if (r->o->verbose)
                cli__print(r, stdout, text, len);
            r->joining = 0;
            r->mark = r->o->acks_off;
            if (cli__queue(r, CLI_PUB, r->id) != 0)
                cli__finish(r, CLI_EXIT_ERROR);
            else
                lws_callback_on_writable(r->wsi);
            return;
        }
        if (kind == CLI_REPLY_OK && r->o->command == CLI_SUB) {
            if (r->o->verbose)
                cli__print(r, stdout, text, len);
            r->phase = PHASE_STREAMING;
            lws_sul_cancel(&r->sul); /* from here on, wait as long as it takes */
            return;
        }
        cli__print(r, stdout, text, len);
        if (kind == CLI_REPLY_OK)
            cli__finish(r, CLI_EXIT_OK);
        else if (kind == CLI_REPLY_ERROR)
            cli__finish(r, CLI_EXIT_ERROR);
        return; /* pending: the final reply is still to come */
    }
    if (r->o->command == CLI_SUB && r->phase != PHASE_CLOSING) {
        cli__print(r, stdout, text, len);
        if (r->o->count && ++r->frames >= r->o->count)
            cli__finish(r, CLI_EXIT_OK);
        return;
    }
    if (r->o->verbose) /* pub and cmd print only their reply */
        cli__print(r, stderr, text, len);
}

static int cli__append_rx(struct cli_run *r, const void *in, size_t len)
{
    if (r->rxlen + len > CLI_MAX_FRAME) {
        cli__diag("a frame from the server is larger than %u bytes", CLI_MAX_FRAME);
        return -1;
    }
    if (r->rxlen + len + 1 > r->rxcap) {
        size_t cap = (r->rxlen + len + 1) * 2;
        char *n = realloc(r->rx, cap);
        if (!n) {
            cli__diag("out of memory receiving a frame");
            return -1;
        }
        r->rx = n;
        r->rxcap = cap;
    }
    memcpy(r->rx + r->rxlen, in, len);
    r->rxlen += len;
    return 0;
}

static int cli__callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    struct cli_run *r = lws_context_user(lws_get_context(wsi));
    (void)user;

    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = in, *end = *p + len;
        if (r->auth[0] &&
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
                                         (unsigned char *)r->auth, (int)strlen(r->auth), p, end)) {
            cli__diag("the token is too long for the handshake");
            return -1;
        }
        break;
    }

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        unsigned status = wsi ? lws_http_client_http_response(wsi) : 0;
        if (r->done) /* we gave up already (timeout): lws is tearing down */
            break;
        if (status && status != 101)
            cli__diag("%s: the server refused the upgrade: HTTP %u%s", r->url, status,
                      status == 401 || status == 403 ? " (check --token)" : "");
        else
            cli__diag("%s: cannot connect: %s", r->url, in ? (const char *)in : "unknown error");
        r->wsi = NULL;
        r->exit_code = CLI_EXIT_ERROR;
        r->done = 1;
        break;
    }

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (r->o->verbose)
            cli__diag("connected to %s; sending %s", r->url, r->id);
        r->phase = PHASE_WAITING;
        cli__arm(r, (lws_usec_t)(r->o->timeout_s * LWS_US_PER_SEC));
        lws_callback_on_writable(wsi);
        break;

    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (r->phase == PHASE_CLOSING) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        if (r->tx) {
            int n = lws_write(wsi, r->tx + LWS_PRE, r->txlen, LWS_WRITE_TEXT);
            free(r->tx);
            r->tx = NULL;
            if (n < (int)r->txlen) {
                cli__diag("%s: sending the request failed", r->url);
                r->exit_code = CLI_EXIT_ERROR;
                return -1;
            }
            if (r->mark) { /* the message is out: the marker follows it */
                r->mark = 0;
                if (cli__queue(r, CLI_CMD, r->marker) != 0) {
                    r->exit_code = CLI_EXIT_ERROR;
                    return -1;
                }
                lws_callback_on_writable(wsi);
            }
        }
        break;

    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (cli__append_rx(r, in, len) < 0) {
            r->exit_code = CLI_EXIT_ERROR;
            return -1;
        }
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
            break;
        r->rx[r->rxlen] = '\0';
        if (lws_frame_is_binary(wsi)) {
            if (r->o->verbose)
                cli__diag("skipped a binary frame of %zu bytes", r->rxlen);
        } else {
            cli__on_frame(r, r->rx, r->rxlen);
        }
        r->rxlen = 0;
        break;

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (r->phase != PHASE_CLOSING) {
            const unsigned char *p = in;
            int code = len >= 2 ? (p[0] << 8 | p[1]) : 1005;
            cli__diag("%s: the server closed the connection: %d%s%.*s", r->url, code,
                      len > 2 ? " " : "", len > 2 ? (int)(len - 2) : 0,
                      len > 2 ? (const char *)p + 2 : "");
            r->exit_code = CLI_EXIT_ERROR;
            r->phase = PHASE_CLOSING;
        }
        break;

    case LWS_CALLBACK_CLIENT_CLOSED:
        if (r->phase != PHASE_CLOSING && !r->done) {
            cli__diag("%s: connection lost", r->url);
            r->exit_code = CLI_EXIT_ERROR;
        }
        r->wsi = NULL;
        r->done = 1;
        break;

    default:
        break;
    }
    return 0;
}

static const struct lws_protocols cli__protocols[] = {
    {.name = "arqonbus-cli", .callback = cli__callback},
    {.name = NULL, .callback = NULL},
};

/* Build the next request (as command `as`; CLI_CMD here is the marker, a `ping`) with a fresh
 * id written to `id` (CLI_ID_SIZE bytes), ready for the writable callback. */
static int cli__queue(struct cli_run *r, enum cli_command as, char *id)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long ms =
        (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
    cli_make_id(id, CLI_ID_SIZE, ms, (unsigned long)getpid(),
                ((unsigned long)ts.tv_nsec ^ ((unsigned long)getpid() << 8)) + r->nsent++);
    struct cli_opts o = *r->o;
    o.command = as;
    if (as == CLI_CMD && r->o->command != CLI_CMD) {
        o.name = "ping";
        o.json = NULL;
        o.json_text = NULL;
    }
    char *text = cli_build_request(&o, id);
    free(r->tx);
    r->tx = text ? malloc(LWS_PRE + strlen(text)) : NULL;
    if (!r->tx) {
        free(text);
        cli__diag("out of memory building the request");
        return -1;
    }
    r->txlen = strlen(text);
    memcpy(r->tx + LWS_PRE, text, r->txlen);
    free(text);
    return 0;
}

/* Build the request frame and the Authorization value before anything touches the network. */
static int cli__prepare(struct cli_run *r)
{
    /* Publishing needs membership, so pub joins first (the join a sub sends), then publishes. */
    r->joining = r->o->command == CLI_PUB;
    if (cli__queue(r, r->joining ? CLI_SUB : r->o->command, r->id) != 0)
        return -1;
    if (r->o->token &&
        snprintf(r->auth, sizeof r->auth, "Bearer %s", r->o->token) >= (int)sizeof r->auth) {
        cli__diag("the token is longer than %zu bytes", sizeof r->auth - 8);
        return -1;
    }
    int v6 = strchr(r->o->host, ':') != NULL;
    snprintf(r->url, sizeof r->url, "%s://%s%s%s:%d%s", r->o->tls ? "wss" : "ws", v6 ? "[" : "",
             r->o->host, v6 ? "]" : "", r->o->port, r->o->path);
    return 0;
}

static int cli__run(struct cli_opts *o)
{
    struct cli_run r = {.o = o, .exit_code = CLI_EXIT_ERROR};
    struct lws_context_creation_info info;
    struct lws_client_connect_info ci;
    char host_header[300];

    if (cli__prepare(&r) < 0)
        goto out;
    lws_set_log_level(o->verbose ? LLL_ERR | LLL_WARN : 0, NULL);

    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = cli__protocols;
    info.user = &r;
    info.gid = -1;
    info.uid = -1;
    info.fd_limit_per_thread = 4;
    /* lws has its own connect and handshake timeouts; keep them out of the way of ours */
    info.timeout_secs = (unsigned)ceil(o->timeout_s) + 5;
    info.connect_timeout_secs = info.timeout_secs;
    if (o->tls)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    r.ctx = lws_create_context(&info);
    if (!r.ctx) {
        cli__diag("cannot create the libwebsockets context");
        goto out;
    }

    int v6 = strchr(o->host, ':') != NULL;
    snprintf(host_header, sizeof host_header, "%s%s%s:%d", v6 ? "[" : "", o->host, v6 ? "]" : "",
             o->port);
    memset(&ci, 0, sizeof ci);
    ci.context = r.ctx;
    ci.address = o->host;
    ci.port = o->port;
    ci.path = o->path;
    ci.host = host_header;
    ci.origin = host_header;
    ci.local_protocol_name = cli__protocols[0].name; /* no Sec-WebSocket-Protocol offered */
    ci.pwsi = &r.wsi;
    if (o->tls)
        ci.ssl_connection =
            LCCSCF_USE_SSL |
            (o->insecure ? LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                               LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE
                         : 0);
    cli__arm(&r, (lws_usec_t)(o->timeout_s * LWS_US_PER_SEC));
    if (o->verbose)
        cli__diag("connecting to %s", r.url);
    if (!lws_client_connect_via_info(&ci) && !r.done) {
        cli__diag("%s: cannot start connecting", r.url);
        r.done = 1;
    }

    int asked_to_close = 0;
    while (!r.done) {
        if (cli__interrupted && !asked_to_close) {
            asked_to_close = 1;
            /* ^C ends a sub normally; anything else was cut short */
            cli__finish(&r, o->command == CLI_SUB && r.phase == PHASE_STREAMING ? CLI_EXIT_OK
                                                                                : CLI_EXIT_ERROR);
        }
        if (lws_service(r.ctx, 0) < 0)
            break;
    }
    lws_sul_cancel(&r.sul);
    lws_context_destroy(r.ctx);
out:
    free(r.tx);
    free(r.rx);
    return r.exit_code;
}

int main(int argc, char **argv)
{
    struct cli_env env = {getenv("ARQONBUS_SERVER_HOST"), getenv("ARQONBUS_SERVER_PORT"),
                          getenv("ARQONBUS_TOKEN")};
    struct cli_opts o;
    char err[512];

    switch (cli_parse(argc, argv, &env, &o, err, sizeof err)) {
    case CLI_PARSE_HELP:
        cli_usage(stdout);
        return CLI_EXIT_OK;
    case CLI_PARSE_ERROR:
        cli__diag("%s", err);
        fputs("usage: arqonbus-cli [OPTIONS] sub|pub|cmd ... (see --help)\n", stderr);
        return CLI_EXIT_USAGE;
    default:
        break;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cli__on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int code = cli__run(&o);
    cli_opts_free(&o);
    return code;
}
