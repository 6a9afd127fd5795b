/* diag: the diagnostics list, did-you-mean suggestions and allowed-value lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "diag.h"

static void add_with_position_prefixes_file_line_col(void **state)
{
    (void)state;
    struct diag_list dl = {0};
    struct cfg_pos pos = {"conf.d/10-host.yaml", 3, 7};
    diag_add(&dl, &pos, "unknown key \"%s\"", "prot");
    assert_int_equal(dl.n, 1);
    assert_string_equal(dl.items[0], "conf.d/10-host.yaml:3:7: unknown key \"prot\"");
    diag_clear(&dl);
}

static void add_without_position_gives_the_bare_message(void **state)
{
    (void)state;
    struct diag_list dl = {0};
    diag_add(&dl, NULL, "cannot read \"%s\": %s", "x.yaml", "No such file or directory");
    assert_int_equal(dl.n, 1);
    assert_string_equal(dl.items[0], "cannot read \"x.yaml\": No such file or directory");
    diag_clear(&dl);
}

static void position_without_line_names_only_the_file(void **state)
{
    (void)state;
    struct diag_list dl = {0};
    struct cfg_pos file_only = {"conf.d", 0, 0};
    struct cfg_pos line_only = {"a.yaml", 4, 0};
    diag_add(&dl, &file_only, "no host section");
    diag_add(&dl, &line_only, "odd");
    assert_string_equal(dl.items[0], "conf.d: no host section");
    assert_string_equal(dl.items[1], "a.yaml:4: odd");
    diag_clear(&dl);
}

static void entries_keep_the_order_they_were_added_in(void **state)
{
    (void)state;
    struct diag_list dl = {0};
    char want[32];
    for (int i = 0; i < 100; i++)
        diag_add(&dl, NULL, "problem %d", i);
    assert_int_equal(dl.n, 100);
    assert_true(dl.cap >= dl.n);
    for (int i = 0; i < 100; i++) {
        snprintf(want, sizeof want, "problem %d", i);
        assert_string_equal(dl.items[i], want);
    }
    diag_clear(&dl);
}

static void clear_empties_the_list_and_allows_reuse(void **state)
{
    (void)state;
    struct diag_list dl = {0};
    diag_add(&dl, NULL, "one");
    diag_clear(&dl);
    assert_int_equal(dl.n, 0);
    assert_null(dl.items);
    diag_clear(&dl);
    diag_add(&dl, NULL, "two");
    assert_int_equal(dl.n, 1);
    assert_string_equal(dl.items[0], "two");
    diag_clear(&dl);
}

static void move_appends_every_entry_and_empties_the_source(void **state)
{
    (void)state;
    struct diag_list to = {0}, from = {0};
    diag_add(&to, NULL, "a");
    diag_add(&from, NULL, "b");
    diag_add(&from, NULL, "c");
    diag_move(&to, &from);
    assert_int_equal(to.n, 3);
    assert_string_equal(to.items[0], "a");
    assert_string_equal(to.items[1], "b");
    assert_string_equal(to.items[2], "c");
    assert_int_equal(from.n, 0);
    diag_add(&from, NULL, "d");
    assert_int_equal(from.n, 1);
    diag_clear(&from);
    diag_clear(&to);
}

static void move_into_an_empty_list_and_from_an_empty_list(void **state)
{
    (void)state;
    struct diag_list to = {0}, from = {0};
    diag_move(&to, &from);
    assert_int_equal(to.n, 0);
    diag_add(&from, NULL, "x");
    diag_move(&to, &from);
    assert_int_equal(to.n, 1);
    assert_string_equal(to.items[0], "x");
    diag_move(&to, &to);
    assert_int_equal(to.n, 1);
    diag_clear(&to);
}

static const char *const host_keys[] = {"host", "port", "plugins", "log_level", NULL};

static void suggest_finds_a_transposition(void **state)
{
    (void)state;
    assert_string_equal(diag_suggest("prot", host_keys), "port");
    assert_string_equal(diag_suggest("hots", host_keys), "host");
}

static void suggest_gives_nothing_for_an_unrelated_word(void **state)
{
    (void)state;
    assert_null(diag_suggest("zzzz", host_keys));
}

static void suggest_allows_one_edit_for_short_words(void **state)
{
    (void)state;
    static const char *const c[] = {"ab", "xyz", NULL};
    assert_string_equal(diag_suggest("a", c), "ab");
    assert_string_equal(diag_suggest("xz", c), "xyz");
    assert_null(diag_suggest("q", c));
}

static void suggest_allows_a_third_of_the_length(void **state)
{
    (void)state;
    static const char *const c[] = {"log_level", NULL};
    /* 9 letters: up to 3 edits. */
    assert_string_equal(diag_suggest("log_lvl", c), "log_level");
    assert_string_equal(diag_suggest("lg_lvel", c), "log_level");
    assert_null(diag_suggest("lg_lvl", c));
    static const char *const d[] = {"plugins", NULL};
    /* 6 letters: up to 2 edits. */
    assert_string_equal(diag_suggest("plugns", d), "plugins");
    assert_null(diag_suggest("pluxxx", d));
}

static void suggest_never_allows_more_than_three_edits(void **state)
{
    (void)state;
    static const char *const c[] = {"telemetry_batch_size", NULL};
    assert_string_equal(diag_suggest("telemetry_bach_sze", c), "telemetry_batch_size");
    /* 20 letters would allow 6; four substitutions are still too many. */
    assert_null(diag_suggest("telemetry_bxxxx_size", c));
}

static void suggest_prefers_the_closest_then_the_first(void **state)
{
    (void)state;
    static const char *const c[] = {"abcx", "abdc", "abcd", NULL};
    assert_string_equal(diag_suggest("abcd", c), "abcd");
    static const char *const tie[] = {"cat", "hat", NULL};
    assert_string_equal(diag_suggest("bat", tie), "cat");
}

static void suggest_without_candidates_gives_nothing(void **state)
{
    (void)state;
    static const char *const none[] = {NULL};
    assert_null(diag_suggest("port", none));
    assert_null(diag_suggest("port", NULL));
    assert_null(diag_suggest(NULL, host_keys));
}

static void join_separates_with_comma_and_space(void **state)
{
    (void)state;
    static const char *const c[] = {"a", "b", "c", NULL};
    char buf[64];
    diag_join(buf, sizeof buf, c);
    assert_string_equal(buf, "a, b, c");
}

static void join_of_one_or_none(void **state)
{
    (void)state;
    static const char *const one[] = {"only", NULL};
    static const char *const none[] = {NULL};
    char buf[16] = "junk";
    diag_join(buf, sizeof buf, one);
    assert_string_equal(buf, "only");
    diag_join(buf, sizeof buf, none);
    assert_string_equal(buf, "");
    strcpy(buf, "junk");
    diag_join(buf, sizeof buf, NULL);
    assert_string_equal(buf, "");
}

static void join_fills_the_buffer_exactly(void **state)
{
    (void)state;
    static const char *const c[] = {"alpha", "beta", "gamma", NULL};
    char buf[19];
    diag_join(buf, sizeof buf, c);
    assert_string_equal(buf, "alpha, beta, gamma");
}

static void join_truncates_whole_names_with_ellipsis(void **state)
{
    (void)state;
    static const char *const c[] = {"alpha", "beta", "gamma", NULL};
    char buf[18];
    diag_join(buf, sizeof buf, c);
    assert_string_equal(buf, "alpha, beta, ...");
    char small[12];
    diag_join(small, sizeof small, c);
    assert_string_equal(small, "alpha, ...");
    char tiny[5];
    diag_join(tiny, sizeof tiny, c);
    assert_string_equal(tiny, "...");
    char three[3];
    diag_join(three, sizeof three, c);
    assert_string_equal(three, "..");
}

static void join_with_zero_size_writes_nothing(void **state)
{
    (void)state;
    char buf[4] = "xyz";
    diag_join(buf, 0, host_keys);
    assert_string_equal(buf, "xyz");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(add_with_position_prefixes_file_line_col),
        cmocka_unit_test(add_without_position_gives_the_bare_message),
        cmocka_unit_test(position_without_line_names_only_the_file),
        cmocka_unit_test(entries_keep_the_order_they_were_added_in),
        cmocka_unit_test(clear_empties_the_list_and_allows_reuse),
        cmocka_unit_test(move_appends_every_entry_and_empties_the_source),
        cmocka_unit_test(move_into_an_empty_list_and_from_an_empty_list),
        cmocka_unit_test(suggest_finds_a_transposition),
        cmocka_unit_test(suggest_gives_nothing_for_an_unrelated_word),
        cmocka_unit_test(suggest_allows_one_edit_for_short_words),
        cmocka_unit_test(suggest_allows_a_third_of_the_length),
        cmocka_unit_test(suggest_never_allows_more_than_three_edits),
        cmocka_unit_test(suggest_prefers_the_closest_then_the_first),
        cmocka_unit_test(suggest_without_candidates_gives_nothing),
        cmocka_unit_test(join_separates_with_comma_and_space),
        cmocka_unit_test(join_of_one_or_none),
        cmocka_unit_test(join_fills_the_buffer_exactly),
        cmocka_unit_test(join_truncates_whole_names_with_ellipsis),
        cmocka_unit_test(join_with_zero_size_writes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
