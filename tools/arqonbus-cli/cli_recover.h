/* arqonbus-cli: where a `sub` stands in a channel's history, so that after a reconnect it can
 * ask for exactly what it missed (docs/protocol.md, Recovery) and print nothing twice.
 *
 * Live messages carry no offset, so the position is learned from the history: after the first
 * join, the newest stored message (`history` with limit 1) gives the epoch and an offset at or
 * before the last message printed; each recovery moves it to its last entry. Between two
 * positions the ids of the messages printed are remembered (the last CLI_RECOVER_IDS), and an
 * entry whose id was printed is skipped. No network here. */
#ifndef ARQ_CLI_RECOVER_H
#define ARQ_CLI_RECOVER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define CLI_RECOVER_IDS     1024 /* ids of printed messages remembered */
#define CLI_RECOVER_ID_SIZE 96   /* longer ids are not remembered (the server's are shorter) */
#define CLI_RECOVER_LIMIT   1000 /* the most a history answer holds */

struct cli_recover {
    int known;       /* a position was learned: the server keeps history for the channel */
    char epoch[128]; /* "" when the history has none yet (then since_offset 0, no epoch) */
    uint64_t offset; /* every stored message up to here was printed or came before the sub */
    size_t next, n;  /* the ring of ids below */
    char ids[CLI_RECOVER_IDS][CLI_RECOVER_ID_SIZE];
};

/* Remember that the message `id` was printed. */
void cli_recover_note(struct cli_recover *r, const char *id);
/* Was the message `id` printed (as far as the ring remembers)? 1 or 0. */
int cli_recover_seen(const struct cli_recover *r, const char *id);

/* Take the position from a `history` answer's data ({entries:[{envelope, offset}], epoch}):
 * the last entry's offset (0 without entries) and the epoch. A data that is not such an object
 * (null: no storage) leaves the position unknown. 0, or -1 when there is no position. */
int cli_recover_position(struct cli_recover *r, const json_t *history);

/* The args of the join_channel that recovers from the position:
 * {room, channel, since_offset, epoch?, limit}. NULL when out of memory. */
json_t *cli_recover_join_args(const struct cli_recover *r, const char *room, const char *channel);

/* What a recovering join's history holds, as cli_recover_take() found it. */
struct cli_recovered {
    int available; /* the server answered with a history (not null) */
    int recovered; /* ... and it reached back to the position (recovered: true) */
    int full;      /* ... and it was a full page: more may have been stored than it holds */
    size_t fresh;  /* entries not printed before, handed to `print` */
};

/* Walk a history ({entries:[{envelope, offset}], epoch, recovered}, as a recovering join's data
 * holds it): hand the index of every entry whose envelope was not printed before to
 * print(arg, index), in order, note its id, and move the position to the last entry and the
 * history's epoch. */
struct cli_recovered cli_recover_take(struct cli_recover *r, const json_t *history,
                                      void (*print)(void *arg, size_t index), void *arg);

#endif
