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

enum cli_command { CLI_SUB, CLI_PUB, CLI_CMD };

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
    int verbose;
    int tls;      /* wss:// */
    int insecure; /* with tls: accept self-signed and mismatched certificates */
    enum cli_command command;
    const char *room;      /* sub, pub */
    const char *channel;   /* sub, pub; NULL for the whole room */
    const char *name;      /* cmd */
    json_t *json;          /* pub: the payload (any JSON); cmd: the args object ({} by default) */
    const char *json_text; /* the same as the user wrote it (NULL for the default {}): sent
                              unchanged, so numbers keep their spelling */
};

/* What cli_parse() found. */
#define CLI_PARSE_OK    0
#define CLI_PARSE_HELP  1  /* --help: print cli_usage() to stdout, exit 0 */
#define CLI_PARSE_ERROR -1 /* err says what is wrong; exit CLI_EXIT_USAGE */

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

#endif
