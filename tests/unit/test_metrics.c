#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "mock_host.h"

static char log_path[256];

static int setup(void **state)
{
    struct metrics *reg = metrics_new();
    if (!reg)
        return -1;
    *state = reg;
    return 0;
}

static int teardown(void **state)
{
    metrics_free(*state);
    return 0;
}

static void assert_render(const struct metrics *reg, const char *expected)
{
    char *text = metrics_render(reg);
    assert_non_null(text);
    int same = strcmp(text, expected) == 0;
    if (!same)
        print_error("rendered:\n%s\nexpected:\n%s\n", text, expected);
    free(text); /* before failing: a failed assertion longjmps past it */
    assert_true(same);
}

static char *read_log(void)
{
    FILE *f = fopen(log_path, "r");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void empty_registry_renders_empty_text(void **state)
{
    assert_render(*state, "");
}

static void unlabelled_counter_renders_zero_before_first_use(void **state)
{
    struct metrics *reg = *state;
    assert_non_null(metrics_register(reg, ARQ_METRIC_COUNTER, "arqonbus_messages_total",
                                     "Messages routed.", NULL, NULL, 0));
    assert_render(reg, "# HELP arqonbus_messages_total Messages routed.\n"
                       "# TYPE arqonbus_messages_total counter\n"
                       "arqonbus_messages_total 0\n");
}

static void counter_adds_and_ignores_negative_increments(void **state)
{
    struct metrics *reg = *state;
    arq_metric *m = metrics_register(reg, ARQ_METRIC_COUNTER, "c_total", "C.", NULL, NULL, 0);
    arq_series *s = metrics_series(m, NULL);
    assert_non_null(s);
    metrics_add(s, 1);
    metrics_add(s, 2);
    metrics_add(s, -5);
    metrics_add(s, NAN);
    metrics_set(s, 100); /* counters cannot be set */
    metrics_observe(s, 100);
    assert_true(metrics_value(s) == 3);
    assert_render(reg, "# HELP c_total C.\n"
                       "# TYPE c_total counter\n"
                       "c_total 3\n");
}

static void labelled_family_renders_series_in_creation_order(void **state)
{
    struct metrics *reg = *state;
    const char *const labels[] = {"transport", "result", NULL};
    arq_metric *m = metrics_register(reg, ARQ_METRIC_COUNTER, "arqonbus_connections_total",
                                     "Connections.", labels, NULL, 0);
    assert_non_null(m);
    assert_render(reg, "# HELP arqonbus_connections_total Connections.\n"
                       "# TYPE arqonbus_connections_total counter\n");
    arq_series *ws_ok = metrics_series(m, (const char *const[]){"websocket", "ok"});
    arq_series *http = metrics_series(m, (const char *const[]){"http", "refused"});
    metrics_add(http, 2);
    metrics_add(ws_ok, 7);
    assert_ptr_equal(metrics_series(m, (const char *const[]){"websocket", "ok"}), ws_ok);
    assert_render(reg, "# HELP arqonbus_connections_total Connections.\n"
                       "# TYPE arqonbus_connections_total counter\n"
                       "arqonbus_connections_total{transport=\"websocket\",result=\"ok\"} 7\n"
                       "arqonbus_connections_total{transport=\"http\",result=\"refused\"} 2\n");
}

static void series_with_wrong_label_count_is_refused(void **state)
{
    struct metrics *reg = *state;
    const char *const labels[] = {"a", "b", NULL};
    arq_metric *m = metrics_register(reg, ARQ_METRIC_GAUGE, "g", NULL, labels, NULL, 0);
    arq_metric *plain = metrics_register(reg, ARQ_METRIC_GAUGE, "p", NULL, NULL, NULL, 0);
    assert_null(metrics_series(m, NULL));
    assert_null(metrics_series(m, (const char *const[]){"x", NULL}));
    assert_null(metrics_series(plain, (const char *const[]){"x", NULL}));
    assert_non_null(metrics_series(plain, (const char *const[]){NULL}));
    assert_ptr_equal(metrics_series(plain, NULL),
                     metrics_series(plain, (const char *const[]){NULL}));
    assert_null(metrics_series(NULL, NULL));
    metrics_add(NULL, 1); /* a failed lookup must not crash the hot path */
    metrics_set(NULL, 1);
    metrics_observe(NULL, 1);
    assert_non_null(strstr(read_log(), "metric=g expected=2"));
}

static void gauge_adds_sets_and_spells_numbers_like_prometheus(void **state)
{
    struct metrics *reg = *state;
    const char *const labels[] = {"k", NULL};
    arq_metric *m = metrics_register(reg, ARQ_METRIC_GAUGE, "g", "G.", labels, NULL, 0);
    const double values[] = {-2.5, 0.1, 1e20, 1234567, INFINITY, -INFINITY, NAN, -0.0, 1.0 / 3};
    char key[8];
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        snprintf(key, sizeof key, "%zu", i);
        metrics_set(metrics_series(m, (const char *const[]){key}), values[i]);
    }
    arq_series *s = metrics_series(m, (const char *const[]){"add"});
    metrics_add(s, 5);
    metrics_add(s, -7);
    assert_true(metrics_value(s) == -2);
    assert_render(reg, "# HELP g G.\n"
                       "# TYPE g gauge\n"
                       "g{k=\"0\"} -2.5\n"
                       "g{k=\"1\"} 0.1\n"
                       "g{k=\"2\"} 1e+20\n"
                       "g{k=\"3\"} 1234567\n"
                       "g{k=\"4\"} +Inf\n"
                       "g{k=\"5\"} -Inf\n"
                       "g{k=\"6\"} NaN\n"
                       "g{k=\"7\"} 0\n"
                       "g{k=\"8\"} 0.3333333333333333\n"
                       "g{k=\"add\"} -2\n");
}

static void histogram_buckets_are_cumulative_with_inf_sum_and_count(void **state)
{
    struct metrics *reg = *state;
    const char *const labels[] = {"op", NULL};
    const double buckets[] = {0.1, 1, 10};
    arq_metric *m =
        metrics_register(reg, ARQ_METRIC_HISTOGRAM, "lat_seconds", "Latency.", labels, buckets, 3);
    arq_series *s = metrics_series(m, (const char *const[]){"get"});
    metrics_observe(s, 0.05);
    metrics_observe(s, 0.1); /* le is inclusive */
    metrics_observe(s, 0.5);
    metrics_observe(s, 20);
    metrics_add(s, 1); /* not a histogram operation */
    metrics_set(s, 1);
    assert_true(metrics_value(s) == 4);
    assert_render(reg, "# HELP lat_seconds Latency.\n"
                       "# TYPE lat_seconds histogram\n"
                       "lat_seconds_bucket{op=\"get\",le=\"0.1\"} 2\n"
                       "lat_seconds_bucket{op=\"get\",le=\"1\"} 3\n"
                       "lat_seconds_bucket{op=\"get\",le=\"10\"} 3\n"
                       "lat_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n"
                       "lat_seconds_sum{op=\"get\"} 20.65\n"
                       "lat_seconds_count{op=\"get\"} 4\n");
}

static void unlabelled_histogram_renders_empty_buckets_before_first_use(void **state)
{
    struct metrics *reg = *state;
    const double buckets[] = {1, 2, INFINITY}; /* the given +Inf is not repeated */
    assert_non_null(metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", "H.", NULL, buckets, 3));
    assert_render(reg, "# HELP h H.\n"
                       "# TYPE h histogram\n"
                       "h_bucket{le=\"1\"} 0\n"
                       "h_bucket{le=\"2\"} 0\n"
                       "h_bucket{le=\"+Inf\"} 0\n"
                       "h_sum 0\n"
                       "h_count 0\n");
}

static void histogram_without_buckets_gets_default_latency_buckets(void **state)
{
    struct metrics *reg = *state;
    arq_metric *m = metrics_register(reg, ARQ_METRIC_HISTOGRAM, "d_seconds", NULL, NULL, NULL, 0);
    metrics_observe(metrics_series(m, NULL), 0.003);
    metrics_observe(metrics_series(m, NULL), NAN); /* counted only in +Inf */
    assert_render(reg, "# TYPE d_seconds histogram\n"
                       "d_seconds_bucket{le=\"0.0005\"} 0\n"
                       "d_seconds_bucket{le=\"0.001\"} 0\n"
                       "d_seconds_bucket{le=\"0.0025\"} 0\n"
                       "d_seconds_bucket{le=\"0.005\"} 1\n"
                       "d_seconds_bucket{le=\"0.01\"} 1\n"
                       "d_seconds_bucket{le=\"0.025\"} 1\n"
                       "d_seconds_bucket{le=\"0.05\"} 1\n"
                       "d_seconds_bucket{le=\"0.1\"} 1\n"
                       "d_seconds_bucket{le=\"0.25\"} 1\n"
                       "d_seconds_bucket{le=\"0.5\"} 1\n"
                       "d_seconds_bucket{le=\"1\"} 1\n"
                       "d_seconds_bucket{le=\"2.5\"} 1\n"
                       "d_seconds_bucket{le=\"5\"} 1\n"
                       "d_seconds_bucket{le=\"10\"} 1\n"
                       "d_seconds_bucket{le=\"+Inf\"} 2\n"
                       "d_seconds_sum NaN\n"
                       "d_seconds_count 2\n");
}

static void label_values_escape_backslash_quote_and_newline(void **state)
{
    struct metrics *reg = *state;
    const char *const labels[] = {"v", NULL};
    arq_metric *m = metrics_register(reg, ARQ_METRIC_GAUGE, "g", NULL, labels, NULL, 0);
    metrics_set(metrics_series(m, (const char *const[]){"a\\b\"c\nd"}), 1);
    metrics_set(metrics_series(m, (const char *const[]){""}), 2);
    assert_render(reg, "# TYPE g gauge\n"
                       "g{v=\"a\\\\b\\\"c\\nd\"} 1\n"
                       "g{v=\"\"} 2\n");
}

static void help_escapes_backslash_and_newline_but_not_quote(void **state)
{
    struct metrics *reg = *state;
    assert_non_null(metrics_register(reg, ARQ_METRIC_GAUGE, "g", "a \\ \"b\"\nc", NULL, NULL, 0));
    assert_render(reg, "# HELP g a \\\\ \"b\"\\nc\n"
                       "# TYPE g gauge\n"
                       "g 0\n");
}

static void families_render_sorted_by_name(void **state)
{
    struct metrics *reg = *state;
    metrics_register(reg, ARQ_METRIC_GAUGE, "zeta", NULL, NULL, NULL, 0);
    metrics_register(reg, ARQ_METRIC_COUNTER, "alpha_total", NULL, NULL, NULL, 0);
    metrics_register(reg, ARQ_METRIC_GAUGE, "mid:ratio", NULL, NULL, NULL, 0);
    metrics_register(reg, ARQ_METRIC_GAUGE, "Beta", NULL, NULL, NULL, 0);
    assert_render(reg, "# TYPE Beta gauge\nBeta 0\n"
                       "# TYPE alpha_total counter\nalpha_total 0\n"
                       "# TYPE mid:ratio gauge\nmid:ratio 0\n"
                       "# TYPE zeta gauge\nzeta 0\n");
}

static void reregistration_returns_same_family_and_keeps_help_and_values(void **state)
{
    struct metrics *reg = *state;
    const char *const labels[] = {"a", NULL};
    const char *const same_labels[] = {"a", NULL};
    arq_metric *m1 =
        metrics_register(reg, ARQ_METRIC_COUNTER, "c_total", "First.", labels, NULL, 0);
    metrics_add(metrics_series(m1, (const char *const[]){"x"}), 4);
    arq_metric *m2 =
        metrics_register(reg, ARQ_METRIC_COUNTER, "c_total", "Second.", same_labels, NULL, 0);
    assert_ptr_equal(m1, m2);
    assert_true(metrics_value(metrics_series(m2, (const char *const[]){"x"})) == 4);
    assert_render(reg, "# HELP c_total First.\n"
                       "# TYPE c_total counter\n"
                       "c_total{a=\"x\"} 4\n");

    const double b[] = {1, 2};
    arq_metric *h1 = metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, NULL, b, 2);
    assert_ptr_equal(
        metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, NULL, (const double[]){1, 2}, 2),
        h1);
    arq_metric *d1 = metrics_register(reg, ARQ_METRIC_HISTOGRAM, "d", NULL, NULL, NULL, 0);
    assert_ptr_equal(metrics_register(reg, ARQ_METRIC_HISTOGRAM, "d", NULL, NULL, NULL, 0), d1);
}

static void reregistration_with_other_type_labels_or_buckets_is_refused(void **state)
{
    struct metrics *reg = *state;
    const char *const ab[] = {"a", "b", NULL};
    const char *const ba[] = {"b", "a", NULL};
    const char *const a[] = {"a", NULL};
    const double b12[] = {1, 2};
    const double b13[] = {1, 3};
    assert_non_null(metrics_register(reg, ARQ_METRIC_COUNTER, "c_total", NULL, ab, NULL, 0));
    assert_null(metrics_register(reg, ARQ_METRIC_GAUGE, "c_total", NULL, ab, NULL, 0));
    assert_null(metrics_register(reg, ARQ_METRIC_COUNTER, "c_total", NULL, ba, NULL, 0));
    assert_null(metrics_register(reg, ARQ_METRIC_COUNTER, "c_total", NULL, a, NULL, 0));
    assert_null(metrics_register(reg, ARQ_METRIC_COUNTER, "c_total", NULL, NULL, NULL, 0));
    assert_non_null(metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, NULL, b12, 2));
    assert_null(metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, NULL, b13, 2));
    assert_null(metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, NULL, b12, 1));
    assert_null(metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, NULL, NULL, 0));
    assert_non_null(
        strstr(read_log(), "metric=c_total reason=\"already registered with another type"));
}

static void histogram_series_names_cannot_be_taken_by_other_families(void **state)
{
    struct metrics *reg = *state;
    assert_non_null(metrics_register(reg, ARQ_METRIC_HISTOGRAM, "req", NULL, NULL, NULL, 0));
    assert_null(metrics_register(reg, ARQ_METRIC_COUNTER, "req_count", NULL, NULL, NULL, 0));
    assert_null(metrics_register(reg, ARQ_METRIC_GAUGE, "req_sum", NULL, NULL, NULL, 0));
    assert_null(metrics_register(reg, ARQ_METRIC_GAUGE, "req_bucket", NULL, NULL, NULL, 0));
    assert_non_null(metrics_register(reg, ARQ_METRIC_GAUGE, "rx_sum", NULL, NULL, NULL, 0));
    assert_null(metrics_register(reg, ARQ_METRIC_HISTOGRAM, "rx", NULL, NULL, NULL, 0));
}

static void release_at_zero_removes_the_family(void **state)
{
    struct metrics *reg = *state;
    arq_metric *m = metrics_register(reg, ARQ_METRIC_COUNTER, "c_total", NULL, NULL, NULL, 0);
    metrics_add(metrics_series(m, NULL), 9);
    assert_ptr_equal(metrics_register(reg, ARQ_METRIC_COUNTER, "c_total", NULL, NULL, NULL, 0), m);
    metrics_register(reg, ARQ_METRIC_GAUGE, "g", NULL, NULL, NULL, 0);

    metrics_release(reg, m);
    assert_render(reg, "# TYPE c_total counter\nc_total 9\n# TYPE g gauge\ng 0\n");
    metrics_release(reg, m);
    assert_render(reg, "# TYPE g gauge\ng 0\n");

    /* A new family of the same name starts from zero, with any shape. */
    m = metrics_register(reg, ARQ_METRIC_GAUGE, "c_total", NULL, NULL, NULL, 0);
    assert_non_null(m);
    assert_true(metrics_value(metrics_series(m, NULL)) == 0);
    metrics_release(reg, NULL);
}

static void invalid_names_are_refused(void **state)
{
    struct metrics *reg = *state;
    static const char *const bad_names[] = {"", "9lives", "a-b", "a b", "é", "a.b"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        assert_null(metrics_register(reg, ARQ_METRIC_GAUGE, bad_names[i], NULL, NULL, NULL, 0));
    assert_null(metrics_register(reg, ARQ_METRIC_GAUGE, NULL, NULL, NULL, NULL, 0));
    assert_null(metrics_register(reg, (enum arq_metric_type)0, "g", NULL, NULL, NULL, 0));

    static const char *const bad_labels[] = {"", "9a", "a:b", "a-b", "__name", "__"};
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++) {
        const char *const labels[] = {bad_labels[i], NULL};
        assert_null(metrics_register(reg, ARQ_METRIC_GAUGE, "g", NULL, labels, NULL, 0));
    }
    const char *const dup[] = {"a", "a", NULL};
    assert_null(metrics_register(reg, ARQ_METRIC_GAUGE, "g", NULL, dup, NULL, 0));
    const char *const le[] = {"le", NULL};
    assert_null(metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, le, NULL, 0));
    assert_render(reg, "");

    /* The valid edges. */
    const char *const ok[] = {"_x", "le", "A9_", NULL};
    assert_non_null(metrics_register(reg, ARQ_METRIC_GAUGE, ":a_Z9:", NULL, ok, NULL, 0));
    assert_non_null(metrics_register(reg, ARQ_METRIC_GAUGE, "_", NULL, NULL, NULL, 0));
    assert_non_null(strstr(read_log(), "reason=\"invalid label name \\\"a-b\\\""));
}

static void histogram_buckets_must_be_strictly_ascending(void **state)
{
    struct metrics *reg = *state;
    assert_null(
        metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, NULL, (const double[]){1, 1}, 2));
    assert_null(
        metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, NULL, (const double[]){2, 1}, 2));
    assert_null(
        metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, NULL, (const double[]){NAN}, 1));
    assert_null(metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, NULL,
                                 (const double[]){1, NAN, 3}, 3));
    /* Only the +Inf bucket: every observation lands there. */
    arq_metric *m =
        metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", NULL, NULL, (const double[]){0}, 0);
    assert_non_null(m);
    metrics_observe(metrics_series(m, NULL), -1.5);
    assert_render(reg, "# TYPE h histogram\n"
                       "h_bucket{le=\"+Inf\"} 1\n"
                       "h_sum -1.5\n"
                       "h_count 1\n");
}

static void free_releases_families_whatever_their_references(void **state)
{
    struct metrics *reg = metrics_new();
    const char *const labels[] = {"a", NULL};
    arq_metric *m = metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", "H.", labels, NULL, 0);
    metrics_register(reg, ARQ_METRIC_HISTOGRAM, "h", "H.", labels, NULL, 0);
    metrics_observe(metrics_series(m, (const char *const[]){"x"}), 1);
    metrics_register(reg, ARQ_METRIC_COUNTER, "c", NULL, NULL, NULL, 0);
    metrics_free(reg); /* LeakSanitizer checks the rest */
    metrics_free(NULL);
    (void)state;
}

int main(void)
{
    mock_host_tmpdir(log_path, sizeof log_path, "test_metrics_log");
    int fd = mkstemp(log_path);
    if (fd < 0 || log_open_file(log_path) != 0)
        return 1;
    close(fd);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(empty_registry_renders_empty_text, setup, teardown),
        cmocka_unit_test_setup_teardown(unlabelled_counter_renders_zero_before_first_use, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(counter_adds_and_ignores_negative_increments, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(labelled_family_renders_series_in_creation_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(series_with_wrong_label_count_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(gauge_adds_sets_and_spells_numbers_like_prometheus, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(histogram_buckets_are_cumulative_with_inf_sum_and_count,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(unlabelled_histogram_renders_empty_buckets_before_first_use,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(histogram_without_buckets_gets_default_latency_buckets,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(label_values_escape_backslash_quote_and_newline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(help_escapes_backslash_and_newline_but_not_quote, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(families_render_sorted_by_name, setup, teardown),
        cmocka_unit_test_setup_teardown(
            reregistration_returns_same_family_and_keeps_help_and_values, setup, teardown),
        cmocka_unit_test_setup_teardown(reregistration_with_other_type_labels_or_buckets_is_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(histogram_series_names_cannot_be_taken_by_other_families,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(release_at_zero_removes_the_family, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_names_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(histogram_buckets_must_be_strictly_ascending, setup,
                                        teardown),
        cmocka_unit_test(free_releases_families_whatever_their_references),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    log_close();
    unlink(log_path);
    return failed;
}
