/* arqonbus-cli: the command line, parsed and validated without touching the network. */
#ifndef ARQ_CLI_ARGS_H
#define ARQ_CLI_ARGS_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#define CLI_DEFAULT_HOST    "127.0.0.1"
#define CLI_DEFAULT_PORT    9100
#define CLI_DEFAULT_PATH    "/"
#define CLI_DEFAULT_TIMEOUT 10.0

/* Exit codes of the program. */
#define CLI_EXIT_OK    0 /* done; the server said success */
#define CLI_EXIT_ERROR 1 /* the server said error, or the connection failed or timed out */
#define CLI_EXIT_USAGE 2 /* the command line is wrong */
#define CLI_EXIT_TIMEOUT                                                                           \
    27 /* sub: -W ended the wait before -n COUNT messages (as mosquitto_sub's 27) */

/* Bounds of -W and of the reconnect back-off. */
#define CLI_MAX_WAIT         86400.0
#define CLI_BACKOFF_FIRST_MS 100  /* the first retry after a lost connection, before jitter */
#define CLI_BACKOFF_CAP_MS   5000 /* the back-off doubles up to this */

/* CLI_NONE: no COMMAND on the line; the interactive mode, or a usage error without a terminal. */
enum cli_command { CLI_NONE, CLI_SUB, CLI_PUB, CLI_CMD, CLI_HISTORY };

/* Where pub takes its payloads from. */
enum cli_payload_from {
    CLI_PAYLOAD_ARG,   /* the JSON argument */
    CLI_PAYLOAD_STDIN, /* `-` as the JSON argument, or -l without -f */
    CLI_PAYLOAD_FILE   /* -f FILE */
};

/* How frames are printed. */
enum cli_format {
    CLI_FORMAT_LINE,   /* one compact JSON object per line (the default) */
    CLI_FORMAT_PRETTY, /* --pretty: indented JSON */
    CLI_FORMAT_RAW     /* --raw: the payload only; a string payload as its text */
};

/* The environment the defaults come from; any field may be NULL (unset). */
struct cli_env {
    const char *host;  /* ARQONBUS_SERVER_HOST */
    const char *port;  /* ARQONBUS_SERVER_PORT */
    const char *token; /* ARQONBUS_TOKEN: keeps a token out of `ps` output */
};

/* A parsed command line. Strings point into argv or the environment; `json` is owned. */
struct cli_opts {
    const char *host;
    int port;
    const char *path; /* starts with '/'; may carry a query, e.g. "/?ack=0" */
    int acks_off;     /* the query turns acks off (cli_path_acks_off) */
    const char *token;
    double timeout_s; /* bound on connecting and on waiting for a reply */
    long count;       /* sub: exit after this many frames; 0 means until interrupted */
    double wait_s;    /* sub: -W, stop after this long; 0 means no bound */
    int reconnect;    /* sub: reconnect after a lost connection (default; --no-reconnect) */
    int interactive;  /* -i */
    enum cli_format format;
    enum cli_payload_from payload_from; /* pub */
    const char *file;                   /* pub -f */
    int lines;                          /* pub -l: one message per line */
    long limit;                         /* history --limit; 0: the server's default */
    long since_offset;                  /* history --since-offset; -1: not given */
    const char *epoch;                  /* history --epoch */
    const char *since, *until;          /* history --since, --until (RFC 3339) */
    int verbose;
    int tls;      /* wss:// */
    int insecure; /* with tls: accept self-signed and mismatched certificates */
    enum cli_command command;
    const char *room;      /* sub, pub */
    const char *channel;   /* sub, pub; NULL for the whole room */
    const char *name;      /* cmd */
    json_t *json;          /* pub: the payload argument (any JSON); cmd: the args object ({} by
                              default); history: the history command's args */
    const char *json_text; /* the same as the user wrote it (NULL for the default {}): sent
                              unchanged, so numbers keep their spelling */
};

/* What cli_parse() found. */
#define CLI_PARSE_OK      0
#define CLI_PARSE_HELP    1  /* --help: print cli_usage() to stdout, exit 0 */
#define CLI_PARSE_VERSION 2  /* --version: print cli_version() to stdout, exit 0 */
#define CLI_PARSE_ERROR   -1 /* err says what is wrong; exit CLI_EXIT_USAGE */

/* Parse argv (options may come before or after COMMAND; "--" ends options; an argument that
 * looks like a negative number is not an option). On CLI_PARSE_OK, o is filled and owns a JSON
 * value to release with cli_opts_free(); otherwise o holds nothing to free and err (when
 * CLI_PARSE_ERROR) is one line naming the offending argument. */
int cli_parse(int argc, char *const argv[], const struct cli_env *env, struct cli_opts *o,
              char *err, size_t errsz);
/* Release what cli_parse() allocated; safe on a zeroed or already freed struct. */
void cli_opts_free(struct cli_opts *o);

/* Does `path`'s query turn the server's acks off, as arqonbusd reads it: a parameter `ack`
 * (percent-decoded) whose value is 0, false, no or off? Then a published message gets no
 * message_response, only an error frame when it is refused. 1 or 0. */
int cli_path_acks_off(const char *path);

/* The --help text. */
void cli_usage(FILE *out);
/* The --version text: the program's version, the protocol and the plugin ABI it was built with. */
void cli_version(FILE *out);

/* Split an interactive line into words as a shell would for these commands: blanks separate
 * words, '...' keeps everything, "..." keeps everything but \" and \\, and a backslash
 * outside quotes keeps the next character. The words are written into `buf` (at least
 * strlen(line) + 1 bytes) and pointed to from words[]. Returns how many, or -1 when there are
 * more than max or a quote is not closed. */
int cli_split_words(const char *line, char *buf, char **words, int max);

#endif
