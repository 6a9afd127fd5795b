#include "scrape.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"
#include "http_client.h"

struct prom_doc h_scrape(int port)
{
    struct http_resp r;
    char err[256];
    if (http_request("127.0.0.1", port, "GET", "/metrics", NULL, NULL, 0, h_ms(5000), &r, err,
                     sizeof err) != 0)
        fail_msg("GET /metrics: %s", err);
    assert_int_equal(r.status, 200);
    struct prom_doc doc;
    if (prom_parse(r.body, &doc, err, sizeof err) != 0)
        fail_msg("/metrics does not parse: %s", err);
    http_resp_free(&r);
    return doc;
}

double h_metric(int port, const char *name)
{
    struct prom_doc doc = h_scrape(port);
    double v = 0;
    prom_value(&doc, &v, name, NULL);
    prom_free(&doc);
    return v;
}
