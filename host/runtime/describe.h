/* What `arqonbusd --describe-options` prints: every option the daemon checks, from the specs
 * it checks them against. The host's own (`host:`), those of the section of the layer above
 * the runtime (the bus's `bus:`), and every plugin module's: its descriptor (name, kind,
 * version, summary), its option spec and, for a command set, each command's parameters. The
 * modules are loaded by the daemon's loader (loader.h), with the same checks, so a module that
 * would be refused at start is refused here too. No instance is created, no socket opened.
 *
 * The description is built once as a JSON value and every format is written from it, so the
 * generated documentation (docs/configuration.md, arqonbus.conf.d(5)) and the JSON output can
 * only differ in layout. */
#ifndef ARQ_HOST_DESCRIBE_H
#define ARQ_HOST_DESCRIBE_H

#include <jansson.h>
#include <stdio.h>

#include "config.h"
#include "diag.h"
#include "loader.h"

enum describe_format { DESCRIBE_TEXT = 0, DESCRIBE_JSON, DESCRIBE_MARKDOWN, DESCRIBE_MAN };

/* "text", "json", "markdown" or "man". 0, or -1 for any other name. */
int describe_format_parse(const char *name, enum describe_format *out);

/* NEW: the description. `conf_dir` NULL: every module (`*.so`, in name order) of `plugin_dir`
 * (NULL: $ARQONBUS_PLUGIN_DIR, else config_default_plugin_dir()). Otherwise the configuration
 * in conf_dir is read and checked as at start, and the modules of the instances it enables
 * are described, in declaration order, each once with the instances using it. `section`
 * (NULL: none) is described after the host's options. NULL with every problem in diags. */
json_t *describe_build(struct loader *l, const char *conf_dir, const char *plugin_dir,
                       const struct config_section *section, struct diag_list *diags);

/* Write description `d` to `out` in `fmt`. Markdown and man leave out what depends on the
 * machine (module files, instances, versions), so that the checked-in reference is the same
 * on every build. 0, or -1 when writing failed. */
int describe_print(FILE *out, const json_t *d, enum describe_format fmt);

#endif
