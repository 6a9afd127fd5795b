/* arqonbus-cli: a command-line client for ArqonBus (what mosquitto_sub/pub and redis-cli are
 * to their servers). One WebSocket connection on a plain libwebsockets client loop: connect,
 * send the command's requests one at a time, print what comes back. pub joins first; on a
 * connection with acks off (`?ack=0`) it follows its messages with a `ping`, whose reply
 * stands for the acks that will not come. sub reconnects after a lost connection and recovers
 * what it missed (cli_recover.h). Without a COMMAND on a terminal (or with -i), a prompt. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <editline/readline.h>
#include <libwebsockets.h>

#include "cli_args.h"
#include "cli_frames.h"
#include "cli_payload.h"
#include "cli_recover.h"
#include "cli_refusal.h"

#define CLI_MAX_FRAME   (64u * 1024u * 1024u)
#define CLI_CLOSE_GRACE ((lws_usec_t)1000 * LWS_US_PER_MS) /* for the server's close reply */
#define CLI_MAX_WORDS   64                                 /* of an interactive line */

enum cli_phase {
    PHASE_CONNECTING, /* TCP, then the upgrade */
    PHASE_OPEN,       /* upgraded: requests and frames */
    PHASE_RETRYING,   /* sub: the connection was lost; waiting out the back-off */
    PHASE_CLOSING     /* our close frame is out (or about to be) */
};

/* What the one request in flight is; its reply decides what comes next. */
enum cli_await {
    AWAIT_NONE,    /* sub: joined, printing frames */
    AWAIT_JOIN,    /* sub, pub: join_room / join_channel */
    AWAIT_RECOVER, /* sub: join_channel with since_offset/epoch after a reconnect */
    AWAIT_PUB,     /* pub: a message's ack */
    AWAIT_MARKER,  /* pub with acks off: the ping after the messages */
    AWAIT_CMD,     /* cmd: the response */
    AWAIT_HISTORY  /* history: the response */
};

/* A frame waiting to be written, LWS_PRE bytes of headroom first. */
struct cli_tx {
    struct cli_tx *next;
    size_t len;
    unsigned char buf[];
};

struct cli_run {
    struct cli_opts *o;
    struct lws_context *ctx;
    struct lws *wsi;
    enum cli_phase phase;
    enum cli_await await;
    char id[CLI_ID_SIZE];  /* the request in flight */
    char pos[CLI_ID_SIZE]; /* sub: the history query for the position, or "" */
    unsigned nsent;        /* requests built, so that two ids never coincide */
    char url[512];
    char host_header[300];
    char auth[1024]; /* "Bearer <token>", or "" */
    struct cli_tx *txq, **txtail;
    char *rx; /* a message being received in pieces */
    size_t rxlen, rxcap;
    struct cli_payloads payloads; /* pub */
    size_t next_payload;
    long frames;       /* sub: frames printed, for --count */
    int subscribed;    /* sub: joined at least once, so a lost connection is retried */
    int backoff_ms;    /* sub: the next retry's base delay */
    int warned_missed; /* sub: "may have been missed" was said */
    int exit_code;
    int done;
    struct cli_recover *rec;         /* sub: the position in the channel's history */
    lws_sorted_usec_list_t sul;      /* connect/reply timeout, then the close grace */
    lws_sorted_usec_list_t sul_wait; /* -W */
    lws_sorted_usec_list_t sul_retry;
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

static void cli__finish(struct cli_run *r, int code);

/* One frame as --pretty/--raw/the default say, flushed at once so a pipe sees it as it
 * arrives. Diagnostics (stderr) are always one compact line. */
static void cli__print(struct cli_run *r, FILE *out, const char *text, size_t len)
{
    char *s = cli_format(text, len, out == stdout ? r->o->format : CLI_FORMAT_LINE);
    if (!s) {
        cli__diag("out of memory printing a %zu-byte frame", len);
        return;
    }
    fprintf(out, "%s\n", s);
    free(s);
    if (fflush(out) != 0 && out == stdout) {
        /* the reader went away (e.g. `| head -1`): nothing left to do */
        cli__finish(r, errno == EPIPE ? CLI_EXIT_OK : CLI_EXIT_ERROR);
    }
}

static void cli__verbose(struct cli_run *r, const char *text, size_t len)
{
    if (r->o->verbose)
        cli__print(r, stderr, text, len);
}

static void cli__connect(struct cli_run *r);

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

/* -W: the wait is over, whatever the connection is doing. */
static void cli__wait_over(lws_sorted_usec_list_t *sul)
{
    struct cli_run *r = lws_container_of(sul, struct cli_run, sul_wait);
    lws_cancel_service(r->ctx);
    if (r->o->verbose)
        cli__diag("%g s passed (-W)", r->o->wait_s);
    cli__finish(r, r->o->count && r->frames < r->o->count ? CLI_EXIT_TIMEOUT : CLI_EXIT_OK);
}

static void cli__retry(lws_sorted_usec_list_t *sul)
{
    struct cli_run *r = lws_container_of(sul, struct cli_run, sul_retry);
    lws_cancel_service(r->ctx);
    if (r->phase == PHASE_RETRYING)
        cli__connect(r);
}

static void cli__drop_tx(struct cli_run *r)
{
    while (r->txq) {
        struct cli_tx *t = r->txq;
        r->txq = t->next;
        free(t);
    }
    r->txtail = &r->txq;
}

/* Leave with `code`: send a close frame and give the server a moment to answer it. */
static void cli__finish(struct cli_run *r, int code)
{
    if (r->phase == PHASE_CLOSING)
        return; /* the first reason to leave stands */
    r->exit_code = code;
    r->phase = PHASE_CLOSING;
    lws_sul_cancel(&r->sul_retry);
    if (!r->wsi) {
        r->done = 1;
        return;
    }
    cli__drop_tx(r);
    lws_callback_on_writable(r->wsi);
    cli__arm(r, CLI_CLOSE_GRACE);
}

/* sub: the connection is gone. Retry after the back-off (doubling from CLI_BACKOFF_FIRST_MS to
 * CLI_BACKOFF_CAP_MS, each delay drawn between half and all of it so that many clients cut off
 * together do not come back together), or leave when there is nothing to retry. */
static void cli__lost(struct cli_run *r, const char *why)
{
    r->wsi = NULL;
    cli__drop_tx(r);
    r->rxlen = 0;
    lws_sul_cancel(&r->sul);
    if (r->phase == PHASE_CLOSING) {
        r->done = 1;
        return;
    }
    if (r->o->command != CLI_SUB || !r->subscribed || !r->o->reconnect) {
        cli__diag("%s: %s", r->url, why);
        r->exit_code = CLI_EXIT_ERROR;
        r->done = 1;
        return;
    }
    int base = r->backoff_ms, delay = base / 2 + (int)(random() % (base / 2 + 1));
    r->backoff_ms = base * 2 > CLI_BACKOFF_CAP_MS ? CLI_BACKOFF_CAP_MS : base * 2;
    if (r->o->verbose)
        cli__diag("%s: %s; reconnecting in %d ms", r->url, why, delay);
    r->phase = PHASE_RETRYING;
    r->await = AWAIT_NONE;
    r->pos[0] = '\0';
    lws_sul_schedule(r->ctx, 0, &r->sul_retry, cli__retry, (lws_usec_t)delay * LWS_US_PER_MS);
}

static int cli__enqueue(struct cli_run *r, char *text_take)
{
    size_t len = text_take ? strlen(text_take) : 0;
    struct cli_tx *t = text_take ? malloc(sizeof *t + LWS_PRE + len) : NULL;
    if (!t) {
        free(text_take);
        cli__diag("out of memory building a request");
        return -1;
    }
    t->next = NULL;
    t->len = len;
    memcpy(t->buf + LWS_PRE, text_take, len);
    free(text_take);
    *r->txtail = t;
    r->txtail = &t->next;
    if (r->wsi)
        lws_callback_on_writable(r->wsi);
    return 0;
}

static void cli__new_id(struct cli_run *r, char *id)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long ms =
        (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
    cli_make_id(id, CLI_ID_SIZE, ms, (unsigned long)getpid(),
                ((unsigned long)ts.tv_nsec ^ ((unsigned long)getpid() << 8)) + r->nsent++);
}

/* Send the command's own frame as `as` (sub: the join; pub: a message with `payload`; cmd),
 * awaiting its reply as `await`. */
static int cli__send_as(struct cli_run *r, enum cli_command as, const char *payload,
                        enum cli_await await)
{
    struct cli_opts o = *r->o;
    o.command = as;
    if (as == CLI_PUB) {
        o.json = NULL;
        o.json_text = payload;
    }
    cli__new_id(r, r->id);
    r->await = await;
    return cli__enqueue(r, cli_build_request(&o, r->id));
}

/* Send the command `name` with `args_take` (or {}), its id into `id`. */
static int cli__send_command(struct cli_run *r, const char *name, json_t *args_take, char *id)
{
    cli__new_id(r, id);
    json_t *f = json_pack("{s:s, s:s, s:s, s:o}", "type", "command", "id", id, "command", name,
                          "args", args_take ? args_take : json_object());
    char *text = f ? json_dumps(f, JSON_COMPACT) : NULL;
    json_decref(f);
    return cli__enqueue(r, text);
}

/* pub: the next payload, or with acks off the marker after the last one. */
static int cli__send_next_payload(struct cli_run *r)
{
    if (r->o->acks_off) {
        while (r->next_payload < r->payloads.n)
            if (cli__send_as(r, CLI_PUB, r->payloads.texts[r->next_payload++], AWAIT_MARKER) < 0)
                return -1;
        r->await = AWAIT_MARKER;
        return cli__send_command(r, "ping", NULL, r->id);
    }
    return cli__send_as(r, CLI_PUB, r->payloads.texts[r->next_payload++], AWAIT_PUB);
}

static void cli__missed(struct cli_run *r, const char *why)
{
    if (r->warned_missed)
        return;
    r->warned_missed = 1;
    cli__diag("reconnected to %s; %s: messages may have been missed", r->url, why);
}

/* Print one frame of the stream and count it. */
static void cli__stream(struct cli_run *r, const char *text, size_t len)
{
    char type[32], id[CLI_RECOVER_ID_SIZE];
    if (r->phase == PHASE_CLOSING)
        return;
    if (cli_frame_type_id(text, len, type, sizeof type, id, sizeof id) == 0 &&
        strcmp(type, "message") == 0)
        cli_recover_note(r->rec, id);
    cli__print(r, stdout, text, len);
    if (r->o->count && ++r->frames >= r->o->count)
        cli__finish(r, CLI_EXIT_OK);
}

/* The entries of a history ({entries:[...]}) in a reply's text, as spans, for printing them as
 * received. */
struct cli_spans {
    struct cli_run *r;
    const char *v[CLI_RECOVER_LIMIT];
    size_t len[CLI_RECOVER_LIMIT];
    size_t n;
};

static void cli__spans(struct cli_spans *s, const char *c, size_t clen, const char *const *path,
                       const char *member)
{
    const char *arr, *e;
    size_t alen, elen;
    s->n = 0;
    if (cli_json_path(c, clen, path, &arr, &alen) < 0)
        return;
    const char *at = arr;
    while (s->n < CLI_RECOVER_LIMIT && cli_json_next(&at, arr + alen, &e, &elen)) {
        const char *const key[] = {member, NULL};
        if (member && cli_json_path(e, elen, key, &e, &elen) < 0)
            e = NULL, elen = 0;
        s->v[s->n] = e;
        s->len[s->n++] = elen;
    }
}

static void cli__print_entry(void *arg, size_t i)
{
    struct cli_spans *s = arg;
    if (i < s->n && s->v[i])
        cli__stream(s->r, s->v[i], s->len[i]);
}

/* sub: joined again with recovery; print what the history holds that was not printed. */
static void cli__recovered(struct cli_run *r, const char *text, size_t len)
{
    static const char *const path[] = {"payload", "data", "history", "entries", NULL};
    json_t *f = json_loadb(text, len, 0, NULL);
    const json_t *history =
        json_object_get(json_object_get(json_object_get(f, "payload"), "data"), "history");
    char *c = cli_compact(text, len);
    struct cli_spans *s = calloc(1, sizeof *s);
    if (!c || !s) {
        cli__diag("out of memory recovering");
        cli__finish(r, CLI_EXIT_ERROR);
        goto out;
    }
    s->r = r;
    cli__spans(s, c, strlen(c), path, "envelope");
    struct cli_recovered got = cli_recover_take(r->rec, history, cli__print_entry, s);
    if (!got.available)
        cli__missed(r, "the server keeps no history now");
    else if (!got.recovered)
        cli__missed(r, "the history does not reach back to the last message (reset or trimmed)");
    else if (got.full)
        cli__missed(r, "more was stored meanwhile than one recovery returns");
    if (r->o->verbose)
        cli__diag("recovered %zu message%s", got.fresh, got.fresh == 1 ? "" : "s");
out:
    free(s);
    free(c);
    json_decref(f);
}

/* history: print each entry. */
static void cli__history(struct cli_run *r, const char *text, size_t len)
{
    static const char *const path[] = {"payload", "data", "entries", NULL};
    char *c = cli_compact(text, len);
    struct cli_spans *s = calloc(1, sizeof *s);
    if (!c || !s) {
        cli__diag("out of memory printing the history");
        cli__finish(r, CLI_EXIT_ERROR);
        goto out;
    }
    /* --raw: the message's payload, so the envelope of each entry */
    cli__spans(s, c, strlen(c), path, r->o->format == CLI_FORMAT_RAW ? "envelope" : NULL);
    for (size_t i = 0; i < s->n && r->phase != PHASE_CLOSING; i++)
        if (s->v[i])
            cli__print(r, stdout, s->v[i], s->len[i]);
    if (r->o->verbose) {
        json_t *f = json_loadb(text, len, 0, NULL);
        json_t *data = json_object_get(json_object_get(f, "payload"), "data");
        const char *epoch = json_string_value(json_object_get(data, "epoch"));
        cli__diag("%zu message%s, epoch %s, recovered %s", s->n, s->n == 1 ? "" : "s",
                  epoch ? epoch : "(none)",
                  json_is_true(json_object_get(data, "recovered")) ? "true" : "false");
        json_decref(f);
    }
    cli__finish(r, CLI_EXIT_OK);
out:
    free(s);
    free(c);
}

/* sub: the join (or the recovering join) succeeded: stream from here on. */
static void cli__joined(struct cli_run *r)
{
    int first = !r->subscribed;
    r->await = AWAIT_NONE;
    r->subscribed = 1;
    r->backoff_ms = CLI_BACKOFF_FIRST_MS;
    lws_sul_cancel(&r->sul); /* from here on, wait as long as it takes */
    if (!r->o->channel) {
        if (!first)
            cli__missed(r, "a room is joined without recovery");
        return;
    }
    if (first || !r->rec->known) {
        /* Where the history stands: a position to recover from after a reconnect. */
        json_t *a =
            json_pack("{s:s, s:s, s:i}", "room", r->o->room, "channel", r->o->channel, "limit", 1);
        if (cli__send_command(r, "history", a, r->pos) < 0)
            r->pos[0] = '\0';
        if (!first)
            cli__missed(r, "there was no position in the history to recover from");
    }
}

/* The reply to the position query: the position, or none (no storage: nothing to recover). */
static void cli__position(struct cli_run *r, const char *text, size_t len)
{
    json_t *f = json_loadb(text, len, 0, NULL);
    const char *status = json_string_value(json_object_get(f, "status"));
    if (status && strcmp(status, "success") == 0)
        cli_recover_position(r->rec, json_object_get(json_object_get(f, "payload"), "data"));
    json_decref(f);
    r->pos[0] = '\0';
    cli__verbose(r, text, len);
}

static void cli__on_reply(struct cli_run *r, enum cli_frame_kind kind, const char *text, size_t len)
{
    if (kind == CLI_REPLY_PENDING) { /* the final reply is still to come */
        cli__print(r, stdout, text, len);
        return;
    }
    switch (r->await) {
    case AWAIT_JOIN:
    case AWAIT_RECOVER:
        if (kind != CLI_REPLY_OK) {
            cli__print(r, stdout, text, len);
            cli__finish(r, CLI_EXIT_ERROR);
            return;
        }
        if (r->o->verbose) /* as the welcome: on stdout, before what follows it */
            cli__print(r, stdout, text, len);
        if (r->o->command == CLI_PUB) {
            if (cli__send_next_payload(r) < 0)
                cli__finish(r, CLI_EXIT_ERROR);
            return;
        }
        if (r->await == AWAIT_RECOVER)
            cli__recovered(r, text, len);
        if (r->phase != PHASE_CLOSING)
            cli__joined(r);
        return;
    case AWAIT_PUB:
        cli__print(r, stdout, text, len);
        if (kind != CLI_REPLY_OK)
            cli__finish(r, CLI_EXIT_ERROR);
        else if (r->next_payload == r->payloads.n)
            cli__finish(r, CLI_EXIT_OK);
        else if (cli__send_next_payload(r) < 0)
            cli__finish(r, CLI_EXIT_ERROR);
        return;
    case AWAIT_MARKER:
        /* With acks off, a message's only possible reply is an error, sent before the server
         * reads the marker: the marker's reply means every message was taken. */
        cli__verbose(r, text, len);
        cli__finish(r, CLI_EXIT_OK);
        return;
    case AWAIT_HISTORY:
        if (kind == CLI_REPLY_OK) {
            cli__history(r, text, len);
            return;
        }
        cli__print(r, stdout, text, len); /* an error prints as cmd prints it */
        cli__finish(r, CLI_EXIT_ERROR);
        return;
    case AWAIT_CMD:
        cli__print(r, stdout, text, len);
        cli__finish(r, kind == CLI_REPLY_OK ? CLI_EXIT_OK : CLI_EXIT_ERROR);
        return;
    case AWAIT_NONE:
        return;
    }
}

static void cli__on_frame(struct cli_run *r, const char *text, size_t len)
{
    if (r->phase == PHASE_CLOSING)
        return; /* what comes after our decision to leave is not printed */
    enum cli_frame_kind kind = cli_classify(text, len, r->id);
    if (kind == CLI_FRAME_WELCOME) {
        if (r->o->verbose)
            cli__print(r, stdout, text, len);
        return;
    }
    if (r->pos[0] && cli_classify(text, len, r->pos) != CLI_FRAME_OTHER) {
        cli__position(r, text, len);
        return;
    }
    if (r->await == AWAIT_MARKER && kind == CLI_FRAME_OTHER) {
        char type[32], id[8];
        if (cli_frame_type_id(text, len, type, sizeof type, id, sizeof id) == 0 &&
            strcmp(type, "error") == 0) { /* one of the messages was refused */
            cli__print(r, stdout, text, len);
            cli__finish(r, CLI_EXIT_ERROR);
            return;
        }
    }
    if (r->await != AWAIT_NONE && kind != CLI_FRAME_OTHER) {
        cli__on_reply(r, kind, text, len);
        return;
    }
    if (r->o->command == CLI_SUB && r->await == AWAIT_NONE) {
        cli__stream(r, text, len);
        return;
    }
    cli__verbose(r, text, len); /* pub, cmd and history print only their reply */
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

/* The first frames of a connection. */
static int cli__start(struct cli_run *r)
{
    switch (r->o->command) {
    case CLI_SUB:
        if (r->subscribed && r->o->channel && r->rec->known)
            return cli__send_command(r, "join_channel",
                                     cli_recover_join_args(r->rec, r->o->room, r->o->channel),
                                     r->id) < 0
                       ? -1
                       : (r->await = AWAIT_RECOVER, 0);
        return cli__send_as(r, CLI_SUB, NULL, AWAIT_JOIN);
    case CLI_PUB:
        return cli__send_as(r, CLI_SUB, NULL, AWAIT_JOIN); /* publishing needs membership */
    case CLI_HISTORY:
        r->await = AWAIT_HISTORY;
        return cli__send_command(r, "history", json_incref(r->o->json), r->id);
    case CLI_CMD:
        return cli__send_as(r, CLI_CMD, NULL, AWAIT_CMD);
    case CLI_NONE:
        break;
    }
    return -1;
}

/* A refused upgrade: the status, and the server's reason when it can be had. */
static void cli__refused(struct cli_run *r, unsigned status)
{
    char reason[600];
    if (cli_refusal_reason(r->o, r->auth, reason, sizeof reason) == 0)
        cli__diag("%s: the server refused the upgrade: HTTP %u: %s", r->url, status, reason);
    else
        cli__diag("%s: the server refused the upgrade: HTTP %u%s", r->url, status,
                  status == 401 || status == 403 ? " (check --token)" : "");
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
        char why[300];
        if (r->done) /* we gave up already (timeout): lws is tearing down */
            break;
        if (status && status != 101) {
            /* Refused: a retry helps only when the server is busy or starting (429, 503). */
            if (r->phase != PHASE_CLOSING && (!r->subscribed || (status != 429 && status != 503)))
                cli__refused(r, status);
            if (status != 429 && status != 503)
                r->subscribed = 0;
            snprintf(why, sizeof why, "the server refused the upgrade: HTTP %u", status);
        } else {
            snprintf(why, sizeof why, "cannot connect: %s",
                     in ? (const char *)in : "unknown error");
        }
        cli__lost(r, why);
        break;
    }

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (r->o->verbose)
            cli__diag("connected to %s", r->url);
        r->phase = PHASE_OPEN;
        if (cli__start(r) < 0) {
            r->exit_code = CLI_EXIT_ERROR;
            r->done = 1;
            return -1;
        }
        cli__arm(r, (lws_usec_t)(r->o->timeout_s * LWS_US_PER_SEC));
        break;

    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (r->phase == PHASE_CLOSING) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        if (r->txq) {
            struct cli_tx *t = r->txq;
            int n = lws_write(wsi, t->buf + LWS_PRE, t->len, LWS_WRITE_TEXT);
            r->txq = t->next;
            if (!r->txq)
                r->txtail = &r->txq;
            free(t);
            if (n < 0) {
                cli__diag("%s: sending a request failed", r->url);
                return -1; /* closed: counted as a lost connection */
            }
            if (r->txq)
                lws_callback_on_writable(wsi);
        }
        break;

    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (cli__append_rx(r, in, len) < 0) {
            r->exit_code = CLI_EXIT_ERROR;
            r->subscribed = 0; /* nothing a reconnect would change */
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
            /* Going away (1001), restarting (1012), try again later (1013): come back. A
             * normal close, a policy close (disconnect_client) or a protocol error: leave. */
            if (code != 1001 && code != 1012 && code != 1013 && code != 1006)
                r->subscribed = 0;
            cli__diag("%s: the server closed the connection: %d%s%.*s", r->url, code,
                      len > 2 ? " " : "", len > 2 ? (int)(len - 2) : 0,
                      len > 2 ? (const char *)p + 2 : "");
        }
        break;

    case LWS_CALLBACK_CLIENT_CLOSED:
        cli__lost(r, "connection lost");
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

static void cli__connect(struct cli_run *r)
{
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = r->ctx;
    ci.address = r->o->host;
    ci.port = r->o->port;
    ci.path = r->o->path;
    ci.host = r->host_header;
    ci.origin = r->host_header;
    ci.local_protocol_name = cli__protocols[0].name; /* no Sec-WebSocket-Protocol offered */
    ci.pwsi = &r->wsi;
    if (r->o->tls)
        ci.ssl_connection =
            LCCSCF_USE_SSL |
            (r->o->insecure ? LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                  LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE
                            : 0);
    r->phase = PHASE_CONNECTING;
    /* The first connection is bounded by --timeout; a reconnect tries as long as -W allows. */
    if (!r->subscribed)
        cli__arm(r, (lws_usec_t)(r->o->timeout_s * LWS_US_PER_SEC));
    if (r->o->verbose)
        cli__diag("connecting to %s", r->url);
    if (!lws_client_connect_via_info(&ci) && !r->done && r->phase == PHASE_CONNECTING)
        cli__lost(r, "cannot start connecting");
}

/* The payloads of a pub, the Authorization value and the URL, before the network. */
static int cli__prepare(struct cli_run *r)
{
    struct cli_opts *o = r->o;
    char err[600];
    if (o->command == CLI_PUB && o->payload_from == CLI_PAYLOAD_ARG) {
        r->payloads.texts = calloc(1, sizeof *r->payloads.texts);
        if (!r->payloads.texts || !(r->payloads.texts[0] = strdup(o->json_text))) {
            cli__diag("out of memory");
            return -1;
        }
        r->payloads.n = 1;
    } else if (o->command == CLI_PUB) {
        FILE *in = o->payload_from == CLI_PAYLOAD_FILE ? fopen(o->file, "rb") : stdin;
        if (!in) {
            cli__diag("%s: %s", o->file, strerror(errno));
            return -1;
        }
        int rc = cli_payloads_read(in, in == stdin ? "standard input" : o->file, o->lines,
                                   &r->payloads, err, sizeof err);
        if (in != stdin)
            fclose(in);
        if (rc < 0) {
            cli__diag("%s", err);
            return -1;
        }
    }
    if (o->token &&
        snprintf(r->auth, sizeof r->auth, "Bearer %s", o->token) >= (int)sizeof r->auth) {
        cli__diag("the token is longer than %zu bytes", sizeof r->auth - 8);
        return -1;
    }
    int v6 = strchr(o->host, ':') != NULL;
    snprintf(r->url, sizeof r->url, "%s://%s%s%s:%d%s", o->tls ? "wss" : "ws", v6 ? "[" : "",
             o->host, v6 ? "]" : "", o->port, o->path);
    snprintf(r->host_header, sizeof r->host_header, "%s%s%s:%d", v6 ? "[" : "", o->host,
             v6 ? "]" : "", o->port);
    return 0;
}

static int cli__run(struct cli_opts *o)
{
    struct cli_run r = {.o = o, .exit_code = CLI_EXIT_ERROR, .backoff_ms = CLI_BACKOFF_FIRST_MS};
    struct lws_context_creation_info info;
    r.txtail = &r.txq;

    if (o->command == CLI_SUB && !(r.rec = calloc(1, sizeof *r.rec))) {
        cli__diag("out of memory");
        goto out;
    }
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
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    if (o->wait_s > 0)
        lws_sul_schedule(r.ctx, 0, &r.sul_wait, cli__wait_over,
                         (lws_usec_t)(o->wait_s * LWS_US_PER_SEC));
    cli__connect(&r);

    int asked_to_close = 0;
    while (!r.done) {
        if (cli__interrupted && !asked_to_close) {
            asked_to_close = 1;
            /* ^C ends a sub normally; anything else was cut short */
            cli__finish(&r, o->command == CLI_SUB && r.subscribed ? CLI_EXIT_OK : CLI_EXIT_ERROR);
        }
        if (lws_service(r.ctx, 0) < 0)
            break;
    }
    lws_sul_cancel(&r.sul);
    lws_sul_cancel(&r.sul_wait);
    lws_sul_cancel(&r.sul_retry);
    lws_context_destroy(r.ctx);
out:
    cli__drop_tx(&r);
    cli_payloads_free(&r.payloads);
    free(r.rx);
    free(r.rec);
    return r.exit_code;
}

static void cli__signals(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The interactive mode: each line is a command as on the command line, run with the options
 * the program was started with (`base`: argv without -i), on a connection of its own. */
static int cli__repl(int argc, char **argv, const struct cli_env *env)
{
    char history[1024] = "", err[512];
    const char *home = getenv("HOME");
    char **args = calloc((size_t)argc + CLI_MAX_WORDS + 1, sizeof *args);
    int nbase = 0, last = CLI_EXIT_OK;
    if (!args) {
        cli__diag("out of memory");
        return CLI_EXIT_ERROR;
    }
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "-i") != 0 && strcmp(argv[i], "--interactive") != 0)
            args[nbase++] = argv[i];
    if (home && *home)
        snprintf(history, sizeof history, "%s/.arqonbus_cli_history", home);
    using_history();
    if (history[0])
        read_history(history);
    int tty = isatty(STDIN_FILENO);
    if (tty)
        printf("arqonbus-cli: type sub, pub, history or cmd as on the command line; help; quit\n");
    char *line;
    while ((line = readline("arqonbus> ")) != NULL) {
        char *buf = malloc(strlen(line) + 1);
        char **words = args + nbase;
        int n = buf ? cli_split_words(line, buf, words, CLI_MAX_WORDS) : -1;
        if (n > 0)
            add_history(line);
        if (n < 0)
            cli__diag("cannot read that line (an unclosed quote, or more than %d words)",
                      CLI_MAX_WORDS);
        else if (n == 1 && (!strcmp(words[0], "quit") || !strcmp(words[0], "exit"))) {
            free(buf);
            free(line);
            break;
        } else if (n == 1 && !strcmp(words[0], "help")) {
            cli_usage(stdout);
        } else if (n > 0) {
            struct cli_opts o;
            int rc = cli_parse(nbase + n, args, env, &o, err, sizeof err);
            if (rc == CLI_PARSE_ERROR) {
                cli__diag("%s", err);
                last = CLI_EXIT_USAGE;
            } else if (rc == CLI_PARSE_HELP) {
                cli_usage(stdout);
            } else if (rc == CLI_PARSE_VERSION) {
                cli_version(stdout);
            } else if (o.command != CLI_NONE) {
                cli__interrupted = 0;
                cli__signals(cli__on_signal);
                last = cli__run(&o);
                cli__signals(SIG_DFL); /* ^C at the prompt leaves, as in redis-cli */
                if (last != CLI_EXIT_OK && tty)
                    printf("(exit %d)\n", last);
            }
            cli_opts_free(&o);
        }
        fflush(stdout);
        free(buf);
        free(line);
    }
    if (history[0])
        write_history(history);
    free(args);
    return last;
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
    case CLI_PARSE_VERSION:
        cli_version(stdout);
        return CLI_EXIT_OK;
    case CLI_PARSE_ERROR:
        cli__diag("%s", err);
        fputs("usage: arqonbus-cli [OPTIONS] sub|pub|history|cmd ... (see --help)\n", stderr);
        return CLI_EXIT_USAGE;
    default:
        break;
    }
    signal(SIGPIPE, SIG_IGN);
    if (o.command == CLI_NONE) {
        cli_opts_free(&o);
        if (!o.interactive && !isatty(STDIN_FILENO)) {
            cli__diag("missing COMMAND (sub, pub, history or cmd; see --help)");
            fputs("usage: arqonbus-cli [OPTIONS] sub|pub|history|cmd ... (see --help)\n", stderr);
            return CLI_EXIT_USAGE;
        }
        return cli__repl(argc, argv, &env);
    }

    cli__signals(cli__on_signal);
    int code = cli__run(&o);
    cli_opts_free(&o);
    return code;
}
