/* arqonbus-cli: the frames it sends, how it reads the frames it gets, and how it prints them.
 * No network here, so every rule is unit-tested. */
#ifndef ARQ_CLI_FRAMES_H
#define ARQ_CLI_FRAMES_H

#include <stddef.h>

#include "cli_args.h"

/* Room for an id from cli_make_id(). */
#define CLI_ID_SIZE 64

/* A message id in the ArqonBus 1.0 form "arq_<digits>_<digits>_<6 hex>", from a millisecond
 * clock, a per-process number (the pid) and a random value (its low 24 bits are used). The
 * id is the envelope's `id`, so the reply's `request_id` names it. */
void cli_make_id(char *out, size_t outsz, unsigned long long ms, unsigned long proc,
                 unsigned long rnd);

/* The one frame the command sends, as compact JSON (malloc'd; NULL when out of memory):
 *   sub: {"type":"command","id":ID,"command":"join_room","args":{"room":R}}
 *        or "join_channel" with {"room":R,"channel":C}
 *   pub: {"type":"message","id":ID,"room":R[,"channel":C],"payload":JSON}
 *   cmd: {"type":"command","id":ID,"command":NAME,"args":JSON-ARGS} */
char *cli_build_request(const struct cli_opts *o, const char *id);

/* What a received frame is to a command waiting for the reply to request `id`. */
enum cli_frame_kind {
    CLI_FRAME_OTHER,   /* anything else: a message, an event, another client's traffic */
    CLI_FRAME_WELCOME, /* the server's greeting (type message, sender arqonbus, payload.welcome) */
    CLI_REPLY_OK,      /* response / message_response to id with status "success" */
    CLI_REPLY_PENDING, /* ... with status "pending": more is coming */
    CLI_REPLY_ERROR    /* ... with any other status, or an error frame for id (or naming no
                          request, which can only be about ours) */
};

/* Classify a frame (text as received, need not be NUL-terminated). A frame that is not a JSON
 * object is CLI_FRAME_OTHER. */
enum cli_frame_kind cli_classify(const char *text, size_t len, const char *id);

/* The frame as one line: whitespace outside strings removed, any raw CR/LF inside strings
 * escaped, so a pretty-printed or odd frame still prints on one line. Nothing else changes,
 * numbers keep their spelling. malloc'd, NUL-terminated, without the newline; NULL when out
 * of memory. */
char *cli_compact(const char *text, size_t len);

/* The frame as `fmt` prints it, without the final newline (malloc'd; NULL when out of memory):
 *   CLI_FORMAT_LINE:   cli_compact();
 *   CLI_FORMAT_PRETTY: indented by two spaces, "key": value, numbers and strings as written;
 *   CLI_FORMAT_RAW:    the frame's top-level `payload` only: a string as its decoded text,
 *                      anything else as compact JSON; a frame without one, compact whole.
 * A frame that is not JSON prints as cli_compact() would print it. */
char *cli_format(const char *text, size_t len, enum cli_format fmt);

/* In compact JSON text (cli_compact()), the span of the value at a path of object keys (NULL-
 * terminated): 0 with *v, *vlen set, or -1 when a key is missing or a value on the way is not
 * an object. The value is the text as received, so numbers keep their spelling. */
int cli_json_path(const char *c, size_t len, const char *const *keys, const char **v, size_t *vlen);
/* Iterate a compact JSON array's elements: *at starts at the '[' (set it to the array's text);
 * each call sets *v, *vlen to the next element: 1, or 0 at the end (or on text that is not an
 * array). */
int cli_json_next(const char **at, const char *end, const char **v, size_t *vlen);

/* The frame's `type` and string `id` (as far as they fit in the buffers; "" when absent). 0, or
 * -1 when the frame is not a JSON object. */
int cli_frame_type_id(const char *text, size_t len, char *type, size_t typesz, char *id,
                      size_t idsz);

#endif
