/* The HTTP API's /metrics as integration tests read it (tests/common's HTTP client and
 * Prometheus parser). */
#ifndef ARQ_TEST_SCRAPE_H
#define ARQ_TEST_SCRAPE_H

#include "prom_parse.h"

/* GET /metrics on 127.0.0.1:port, parsed; fails the test when it cannot be. prom_free it. */
struct prom_doc h_scrape(int port);
/* The sum of every series of metric `name` (whatever its labels) on 127.0.0.1:port. */
double h_metric(int port, const char *name);

#endif
