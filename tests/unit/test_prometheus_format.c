/* The Prometheus text-format parser of tests/common/prom_parse.c (which the HTTP integration
 * test reads /metrics with), and the host's renderer read back through it: escaping of label
 * values and HELP, special numbers, histograms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "prom_parse.h"

static void assert_parses(const char *text, struct prom_doc *doc)
{
    char err[256] = "";
    if (prom_parse(text, doc, err, sizeof err) != 0)
        fail_msg("parse failed: %s\n%s", err, text);
}

/* Parsing fails, and the error contains `what`. */
static void assert_refused(const char *text, const char *what)
{
    struct prom_doc doc;
    char err[256] = "";
    if (prom_parse(text, &doc, err, sizeof err) == 0) {
        prom_free(&doc);
        fail_msg("accepted:\n%s", text);
    }
    if (!strstr(err, what))
        fail_msg("error \"%s\" does not mention \"%s\"", err, what);
}

/* Parses, but prom_check refuses it with an error containing `what`. */
static void assert_check_fails(const char *text, const char *what)
{
    struct prom_doc doc;
    char err[256] = "";
    assert_parses(text, &doc);
    int rc = prom_check(&doc, err, sizeof err);
    prom_free(&doc);
    if (rc == 0)
        fail_msg("prom_check accepted:\n%s", text);
    if (!strstr(err, what))
        fail_msg("error \"%s\" does not mention \"%s\"", err, what);
}

static void test_a_valid_document_is_read_with_its_escapes_undone(void **state)
{
    (void)state;
    struct prom_doc doc;
    assert_parses("# HELP a_total Requests \\\\ with a\\nnewline.\n"
                  "# TYPE a_total counter\n"
                  "a_total{path=\"/x\",q=\"say \\\"hi\\\" \\\\ \\n\"} 3\n"
                  "a_total{path=\"/y\",} 4.5 1700000000000\n"
                  "# an ordinary comment\n"
                  "\n"
                  "# HELP g A gauge.\n"
                  "# TYPE g gauge\n"
                  "g +Inf\n",
                  &doc);
    char err[256];
    assert_int_equal(prom_check(&doc, err, sizeof err), 0);
    const struct prom_family *f = prom_family(&doc, "a_total");
    assert_non_null(f);
    assert_string_equal(f->type, "counter");
    assert_string_equal(f->help, "Requests \\ with a\nnewline.");
    assert_int_equal(doc.nsamples, 3);
    assert_string_equal(doc.samples[0].label_values[1], "say \"hi\" \\ \n");
    double v;
    assert_int_equal(prom_value(&doc, &v, "a_total", "path", "/y", NULL), 1);
    assert_true(v == 4.5);
    assert_int_equal(prom_value(&doc, &v, "a_total", NULL), 2);
    assert_true(v == 7.5);
    assert_int_equal(prom_value(&doc, &v, "g", NULL), 1);
    assert_true(isinf(v) && v > 0);
    prom_free(&doc);
}

static void test_syntax_errors_are_refused_with_their_line(void **state)
{
    (void)state;
    assert_refused("# TYPE a gauge\na{x=\"\\t\"} 1\n", "line 2: invalid escape \\t");
    assert_refused("# TYPE a gauge\na{x=\"open} 1\n", "unterminated label value");
    assert_refused("# TYPE a gauge\na{x=1} 1\n", "expected =\"");
    assert_refused("# TYPE a gauge\na{1x=\"v\"} 1\n", "invalid label name");
    assert_refused("# TYPE a gauge\na{x=\"v\",x=\"w\"} 1\n", "label x twice");
    assert_refused("# TYPE a gauge\na one\n", "invalid value 'one'");
    assert_refused("# TYPE a gauge\na inf\n", "invalid value 'inf'");
    assert_refused("# TYPE a gauge\na 1 soon\n", "invalid timestamp");
    assert_refused("# TYPE a gauge\na 1", "does not end with a newline");
    assert_refused("# TYPE a gauge\n# TYPE a counter\n", "second TYPE");
    assert_refused("# HELP a x\n# HELP a y\n", "second HELP");
    assert_refused("# TYPE a meter\n", "unknown TYPE");
    assert_refused("a 1\n# TYPE a gauge\n", "TYPE for a after its samples");
    assert_refused("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",
                   "line 5: lines of family a are not kept together");
    assert_refused("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n", "duplicate series");
}

static void test_conventions_are_checked(void **state)
{
    (void)state;
    assert_check_fails("# TYPE a gauge\na 1\n", "a has no HELP line");
    assert_check_fails("# HELP a x\na 1\n", "a has no TYPE line");
    assert_check_fails("# HELP req x\n# TYPE req counter\nreq 1\n", "does not end in _total");
    const char *head = "# HELP h x\n# TYPE h histogram\n";
    char text[512];
    snprintf(text, sizeof text,
             "%sh_bucket{le=\"1\"} 3\nh_bucket{le=\"2\"} 2\nh_bucket{le=\"+Inf\"} 3\n"
             "h_sum 1\nh_count 3\n",
             head);
    assert_check_fails(text, "not cumulative");
    snprintf(text, sizeof text,
             "%sh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\n"
             "h_sum 1\nh_count 3\n",
             head);
    assert_check_fails(text, "ascending");
    snprintf(text, sizeof text,
             "%sh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 3\nh_sum 1\nh_count 4\n", head);
    assert_check_fails(text, "differs from _count");
    snprintf(text, sizeof text, "%sh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", head);
    assert_check_fails(text, "lacks its +Inf bucket");
}

/* The host's renderer, read back: what a scraper sees is what was recorded. */
static void test_the_host_renderer_reads_back_exactly(void **state)
{
    (void)state;
    struct metrics *reg = metrics_new();
    assert_non_null(reg);
    static const char *const labels[] = {"instance", "path", NULL};
    arq_metric *c = metrics_register(reg, ARQ_METRIC_COUNTER, "arqonbus_t_requests_total",
                                     "Requests with \\ and\na newline.", labels, NULL, 0);
    arq_metric *g =
        metrics_register(reg, ARQ_METRIC_GAUGE, "arqonbus_t_level", "A level.", NULL, NULL, 0);
    static const double buckets[] = {0.1, 1, 10};
    arq_metric *h = metrics_register(reg, ARQ_METRIC_HISTOGRAM, "arqonbus_t_latency_seconds",
                                     "Latency.", labels, buckets, 3);
    assert_non_null(c);
    assert_non_null(g);
    assert_non_null(h);
    const char *nasty[] = {"a\"b", "c:\\d\ne", NULL};
    const char *plain[] = {"x", "/", NULL};
    metrics_add(metrics_series(c, nasty), 2);
    metrics_add(metrics_series(c, plain), 5);
    metrics_set(metrics_series(g, NULL), -INFINITY);
    arq_series *hs = metrics_series(h, plain);
    metrics_observe(hs, 0.05);
    metrics_observe(hs, 0.5);
    metrics_observe(hs, 50);

    char *text = metrics_render(reg);
    assert_non_null(text);
    struct prom_doc doc;
    char err[256] = "";
    assert_parses(text, &doc);
    if (prom_check(&doc, err, sizeof err) != 0)
        fail_msg("%s\n%s", err, text);
    assert_string_equal(prom_family(&doc, "arqonbus_t_requests_total")->help,
                        "Requests with \\ and\na newline.");
    double v;
    assert_int_equal(prom_value(&doc, &v, "arqonbus_t_requests_total", "instance", "a\"b", "path",
                                "c:\\d\ne", NULL),
                     1);
    assert_true(v == 2);
    assert_int_equal(prom_value(&doc, &v, "arqonbus_t_requests_total", "instance", "x", NULL), 1);
    assert_true(v == 5);
    assert_int_equal(prom_value(&doc, &v, "arqonbus_t_level", NULL), 1);
    assert_true(isinf(v) && v < 0);
    assert_int_equal(prom_value(&doc, &v, "arqonbus_t_latency_seconds_bucket", "le", "1", NULL), 1);
    assert_true(v == 2);
    assert_int_equal(prom_value(&doc, &v, "arqonbus_t_latency_seconds_count", NULL), 1);
    assert_true(v == 3);
    assert_int_equal(prom_value(&doc, &v, "arqonbus_t_latency_seconds_sum", NULL), 1);
    assert_true(fabs(v - 50.55) < 1e-9);
    prom_free(&doc);
    free(text);
    metrics_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_valid_document_is_read_with_its_escapes_undone),
        cmocka_unit_test(test_syntax_errors_are_refused_with_their_line),
        cmocka_unit_test(test_conventions_are_checked),
        cmocka_unit_test(test_the_host_renderer_reads_back_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
