/* arqonbus-cli: pub's payloads from standard input or a file (`pub ROOM CHANNEL -`, -f FILE,
 * -l one per line), read whole and checked before anything is sent. No network here. */
#ifndef ARQ_CLI_PAYLOAD_H
#define ARQ_CLI_PAYLOAD_H

#include <stddef.h>
#include <stdio.h>

/* The payloads in order, each a JSON text as read (sent unchanged, so numbers keep their
 * spelling). */
struct cli_payloads {
    char **texts;
    size_t n;
};

/* Read `in` to its end: the whole input is one JSON value, or with `lines` every line that is
 * not blank is one. `name` names the input in messages ("standard input", a file name). 0, or
 * -1 with err saying what is wrong (and on which line); p then holds nothing. */
int cli_payloads_read(FILE *in, const char *name, int lines, struct cli_payloads *p, char *err,
                      size_t errsz);
/* Release what cli_payloads_read() filled; safe on a zeroed struct. */
void cli_payloads_free(struct cli_payloads *p);

#endif
