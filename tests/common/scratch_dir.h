/* A scratch directory for a test's helper process (redis-server, haproxy): made under
 * $TMPDIR (else /tmp) and removed with everything in it. */
#ifndef ARQ_TEST_SCRATCH_DIR_H
#define ARQ_TEST_SCRATCH_DIR_H

#include <stddef.h>

/* A new directory `<tmp>/<prefix>XXXXXX` into dir (size bytes). 0, or -1 with the reason on
 * stderr (after `who: `) and dir set to "". */
int scratch_dir_make(char *dir, size_t size, const char *prefix, const char *who);
/* Remove `dir` and everything under it; nothing when dir is "". */
void scratch_dir_remove(const char *dir);

#endif
