/* Option specs (struct arq_option tables): validating configuration against them, typing
 * values, comparing configurations, and redacting secrets. */
#ifndef ARQ_HOST_OPTIONS_H
#define ARQ_HOST_OPTIONS_H

#include <arqonbus/plugin.h>
#include <jansson.h>

#include "cfg.h"
#include "diag.h"

#define OPT_REDACTED "<redacted>"

/* Check that a spec is well formed: valid unique names, known types, enums with choices,
 * defaults that parse and fit their range, REQUIRED without default, bound fields whose C
 * type can hold the option. Returns 0 or -1 with a message in err. The spec is in this
 * header's layout (loader.c converts a 1.0 plugin's). */
int opt_spec_check(const struct arq_option *spec, char *err, size_t errsz);

/* Validate `given` (a mapping node of `doc`, or NULL for none) against `spec` and return a
 * new object holding every option with a value (typed, defaults filled). Every problem is
 * added to `diags`, prefixed with `who` (e.g. `plugin "ws" (module transport-websocket)`):
 * unknown keys (with the allowed keys and a did-you-mean), wrong types, out of range values,
 * values outside an enum, missing REQUIRED options (reported at `where`). Returns NULL when
 * anything was wrong. */
json_t *opt_validate(const struct arq_option *spec, const json_t *given, const struct cfg_doc *doc,
                     const struct cfg_pos *where, const char *who, struct diag_list *diags);

/* Parse one scalar text as option `o`. Returns a new JSON value or NULL with a message
 * ("expected an integer, got \"x\"", "70000 is out of range 0..65535", ...) in err. */
json_t *opt_parse(const struct arq_option *o, const char *text, char *err, size_t errsz);

enum opt_change { OPT_SAME = 0, OPT_RELOADABLE_ONLY, OPT_CHANGED };
/* How validated config `b` differs from `a` under `spec`. */
enum opt_change opt_diff(const struct arq_option *spec, const json_t *a, const json_t *b);

/* A copy of validated `cfg` with SECRET values replaced by OPT_REDACTED. */
json_t *opt_redact(const struct arq_option *spec, const json_t *cfg);

const char *opt_type_name(enum arq_opt_type type);
/* A bound as a user writes it, in the largest unit that holds it exactly: 600000 (a duration
 * in ms) -> "10m", 16777216 (a size) -> "16MiB", 0 -> "0s" or "0B"; other numbers as they
 * are. */
void opt_format_bound(char *buf, size_t size, enum arq_opt_type type, double v);
/* The C type of a field kind (enum arq_field_kind), or NULL for none or an unknown kind. */
const char *opt_field_kind_name(int kind);

/* Accessors offered to plugins through struct arq_host. */
int64_t opt_get_int(const json_t *cfg, const char *name, int64_t fallback);
double opt_get_double(const json_t *cfg, const char *name, double fallback);
int opt_get_bool(const json_t *cfg, const char *name, int fallback);
const char *opt_get_str(const json_t *cfg, const char *name, const char *fallback);
const json_t *opt_get_json(const json_t *cfg, const char *name);
/* arq_host.opt_fill: the bound options of `spec` from validated `cfg` into `out`. */
int opt_fill(const json_t *cfg, const struct arq_option *spec, void *out, struct arq_error *err);

#endif
