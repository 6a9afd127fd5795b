/* cfg_expand: ${VAR}, ${VAR:-default} and $$ in configuration values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfg.h"

static const char *fake_getenv(const char *name, void *arg)
{
    static const char *const env[][2] = {
        {"A", "alpha"}, {"B", "beta"}, {"EMPTY", ""}, {"REF", "${A}"}, {"_x9", "under"},
    };
    (void)arg;
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
        if (strcmp(env[i][0], name) == 0)
            return env[i][1];
    return NULL;
}

/* Expands `in` and checks the result; returns nothing, fails the test on a mismatch. */
static void check_ok(const char *in, const char *want)
{
    char err[256] = "untouched";
    char *out = cfg_expand(in, fake_getenv, NULL, err, sizeof err);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

static void check_err(const char *in, const char *want)
{
    char err[256];
    char *out = cfg_expand(in, fake_getenv, NULL, err, sizeof err);
    assert_null(out);
    assert_string_equal(err, want);
}

static void text_without_dollar_is_unchanged(void **state)
{
    (void)state;
    check_ok("plain text: {}[]", "plain text: {}[]");
    check_ok("", "");
}

static void set_variable_is_replaced_by_its_value(void **state)
{
    (void)state;
    check_ok("${A}", "alpha");
    check_ok("${_x9}", "under");
}

static void variable_inside_text_keeps_the_text_around_it(void **state)
{
    (void)state;
    check_ok("x-${A}-y", "x-alpha-y");
}

static void several_references_in_one_string_are_all_expanded(void **state)
{
    (void)state;
    check_ok("${A}:${B}/${A}${B}", "alpha:beta/alphabeta");
}

static void unset_variable_without_default_is_an_error_naming_it(void **state)
{
    (void)state;
    check_err("port ${NOPE}",
              "environment variable \"NOPE\" is not set (use ${NOPE:-default} to give a default)");
}

static void set_but_empty_variable_expands_to_empty(void **state)
{
    (void)state;
    check_ok("[${EMPTY}]", "[]");
}

static void default_is_used_when_variable_is_unset(void **state)
{
    (void)state;
    check_ok("${NOPE:-8080}", "8080");
}

static void default_is_used_when_variable_is_empty(void **state)
{
    (void)state;
    check_ok("${EMPTY:-fallback}", "fallback");
}

static void default_is_ignored_when_variable_is_set(void **state)
{
    (void)state;
    check_ok("${A:-fallback}", "alpha");
}

static void empty_default_gives_empty_string(void **state)
{
    (void)state;
    check_ok("<${NOPE:-}>", "<>");
}

static void default_is_taken_literally(void **state)
{
    (void)state;
    check_ok("${NOPE:-$$x}", "$$x");
    check_ok("${NOPE:-a:-b}", "a:-b");
    check_ok("${NOPE:-$A}", "$A");
}

/* --- a default that is itself a reference ---------------------------------------------- */

static void default_may_be_one_reference(void **state)
{
    (void)state;
    check_ok("${NOPE:-${A}}", "alpha");
    check_ok("${EMPTY:-${B}}", "beta");
    check_ok("${A:-${B}}", "alpha");
    check_ok("<${NOPE:-${EMPTY}}>", "<>");
}

static void nested_default_two_deep_picks_the_first_set_and_non_empty(void **state)
{
    (void)state;
    /* The outer variable set, unset, empty; then the inner one set, unset, empty. */
    check_ok("${A:-${B:-d}}", "alpha");
    check_ok("${NOPE:-${B:-d}}", "beta");
    check_ok("${EMPTY:-${B:-d}}", "beta");
    check_ok("${NOPE:-${NOPE2:-d}}", "d");
    check_ok("${EMPTY:-${EMPTY:-d}}", "d");
    check_ok("${NOPE:-${EMPTY:-}}", "");
    check_ok("url: ${NOPE:-${NOPE2:-redis://127.0.0.1:6379}}/0", "url: redis://127.0.0.1:6379/0");
}

static void nested_default_three_deep_picks_the_first_set_and_non_empty(void **state)
{
    (void)state;
    check_ok("${A:-${NOPE:-${B:-d}}}", "alpha");
    check_ok("${NOPE:-${B:-${A:-d}}}", "beta");
    check_ok("${EMPTY:-${NOPE:-${A:-d}}}", "alpha");
    check_ok("${NOPE:-${EMPTY:-${NOPE2:-d}}}", "d");
    check_ok("${NOPE:-${EMPTY:-${B}}}", "beta");
    check_ok("[${NOPE:-${NOPE2:-${NOPE3:-}}}]", "[]");
    check_ok("${NOPE:-${B:-x}}-${A:-${B}}", "beta-alpha");
}

static void innermost_reference_without_default_must_be_set_when_reached(void **state)
{
    (void)state;
    check_err("${NOPE:-${EMPTY:-${NOPE2}}}", "environment variable \"NOPE2\" is not set (use "
                                             "${NOPE2:-default} to give a default)");
    check_ok("${NOPE:-${EMPTY}}", "");
    /* Not reached: an earlier variable is set, so the inner one is not looked up. */
    check_ok("${A:-${NOPE2}}", "alpha");
}

/* A chain is read without recursion: any depth is fine (the fuzzer writes deep ones). */
static void long_chain_of_defaults_is_expanded(void **state)
{
    (void)state;
    enum { DEPTH = 2000 };
    char *in = malloc(DEPTH * 9 + 16), *p = in;
    assert_non_null(in);
    for (int i = 0; i < DEPTH; i++)
        p += sprintf(p, "${NOPE:-");
    p += sprintf(p, "${B}");
    memset(p, '}', DEPTH);
    p[DEPTH] = '\0';
    check_ok(in, "beta");
    p[DEPTH - 1] = '\0';
    char err[256];
    assert_null(cfg_expand(in, fake_getenv, NULL, err, sizeof err));
    assert_non_null(strstr(err, "unterminated \"${NOPE:-${NOPE:-"));
    free(in);
}

static void double_dollar_in_a_nested_default_stays_literal(void **state)
{
    (void)state;
    check_ok("${NOPE:-${NOPE2:-a$$b}}", "a$$b");
    check_ok("${NOPE:-${NOPE2:-${NOPE3:-$$}}}", "$$");
    check_ok("$$${NOPE:-${A}}", "$alpha");
}

static void default_mixing_text_and_a_reference_is_an_error(void **state)
{
    (void)state;
    const char *want = "the default of \"${NOPE:-...}\" mixes text and \"${\"; a default is "
                       "either text or one ${...} reference";
    check_err("${NOPE:-x${A}}", want);
    check_err("${NOPE:-${A}x}", want);
    check_err("${NOPE:-${A}${B}}", want);
    check_err("${NOPE:-$${A}}", want);
    check_err("${A:-${NOPE:-x${B}}}", "the default of \"${NOPE:-...}\" mixes text and \"${\"; a "
                                      "default is either text or one ${...} reference");
}

static void unclosed_nested_reference_is_an_error(void **state)
{
    (void)state;
    /* No "}" at all: the whole reference is quoted. */
    check_err("${NOPE:-${A:-x", "unterminated \"${NOPE:-${A:-x\" (missing \"}\")");
    check_err("${NOPE:-${", "unterminated \"${NOPE:-${\" (missing \"}\")");
    /* The inner one ends, the outer one does not. */
    check_err("${NOPE:-${A:-x}", "unterminated \"${NOPE:-${A:-x}\" (missing \"}\")");
    check_err("${NOPE:-${B:-${A}}", "unterminated \"${NOPE:-${B:-${A}}\" (missing \"}\")");
    check_err("a ${NOPE:-${B:-${A}} b", "unterminated \"${NOPE:-${B:-${A}} b\" (missing \"}\")");
    check_err("${X:-${Y:-${Z:-w}}", "unterminated \"${X:-${Y:-${Z:-w}}\" (missing \"}\")");
}

static void bad_name_in_a_nested_reference_is_an_error(void **state)
{
    (void)state;
    check_err("${NOPE:-${1A}}", "invalid environment variable name \"1A\" (use letters, digits "
                                "and \"_\", not starting with a digit)");
    /* Checked even when an earlier variable is set. */
    check_err("${A:-${B:-${}}}", "invalid environment variable name \"\" (use letters, digits and "
                                 "\"_\", not starting with a digit)");
}

static void double_dollar_is_one_literal_dollar(void **state)
{
    (void)state;
    check_ok("$$", "$");
    check_ok("a$$b$$$$", "a$b$$");
    check_ok("$${A}", "${A}");
}

static void dollar_not_followed_by_brace_or_dollar_is_literal(void **state)
{
    (void)state;
    check_ok("$x", "$x");
    check_ok("cost 5$", "cost 5$");
    check_ok("$", "$");
    check_ok("$ {A}", "$ {A}");
    check_ok("$$$A", "$$A");
}

static void environment_values_are_not_expanded_again(void **state)
{
    (void)state;
    check_ok("${REF}", "${A}");
}

static void name_starting_with_a_digit_is_an_error(void **state)
{
    (void)state;
    check_err("${1A}", "invalid environment variable name \"1A\" (use letters, digits and \"_\", "
                       "not starting with a digit)");
}

static void empty_name_is_an_error(void **state)
{
    (void)state;
    check_err("${}", "invalid environment variable name \"\" (use letters, digits and \"_\", not "
                     "starting with a digit)");
    check_err("${:-x}", "invalid environment variable name \"\" (use letters, digits and \"_\", "
                        "not starting with a digit)");
}

static void name_with_other_characters_is_an_error(void **state)
{
    (void)state;
    check_err("${A-B}", "invalid environment variable name \"A-B\" (use letters, digits and "
                        "\"_\", not starting with a digit)");
    check_err("${A:x}", "invalid environment variable name \"A:x\" (use letters, digits and "
                        "\"_\", not starting with a digit)");
    check_err("${ A}", "invalid environment variable name \" A\" (use letters, digits and \"_\", "
                       "not starting with a digit)");
}

static void unterminated_reference_is_an_error(void **state)
{
    (void)state;
    check_err("x ${A", "unterminated \"${A\" (missing \"}\")");
    check_err("${NOPE:-x", "unterminated \"${NOPE:-x\" (missing \"}\")");
    check_err("${", "unterminated \"${\" (missing \"}\")");
}

static void unterminated_error_quotes_at_most_forty_characters(void **state)
{
    (void)state;
    check_err("${AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
              "unterminated \"${AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA...\" (missing \"}\")");
}

/* A quote is cut at a character boundary: error texts stay UTF-8 (found by
 * tests/fuzz/fuzz_config). "${" and 37 letters leave the 40th byte inside the "é". */
static void quoted_text_is_cut_between_characters(void **state)
{
    (void)state;
    check_err("${AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\xc3\xa9 and more",
              "unterminated \"${AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA...\" (missing \"}\")");
    check_err("${AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\xc3\xa9 x}",
              "invalid environment variable name \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA...\" "
              "(use letters, digits and \"_\", not starting with a digit)");
}

static void error_after_a_good_reference_still_fails(void **state)
{
    (void)state;
    check_err("${A} ${NOPE}",
              "environment variable \"NOPE\" is not set (use ${NOPE:-default} to give a default)");
}

static void null_getenv_reads_the_process_environment(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(setenv("ARQ_TEST_EXPAND_VAR", "from-env", 1), 0);
    char *out = cfg_expand("<${ARQ_TEST_EXPAND_VAR}>", NULL, NULL, err, sizeof err);
    assert_non_null(out);
    assert_string_equal(out, "<from-env>");
    free(out);
    unsetenv("ARQ_TEST_EXPAND_VAR");
}

static const char *echo_arg_getenv(const char *name, void *arg)
{
    return strcmp(name, "X") == 0 ? arg : NULL;
}

static void getenv_argument_is_passed_through(void **state)
{
    (void)state;
    char err[64];
    char *out = cfg_expand("${X}", echo_arg_getenv, "passed", err, sizeof err);
    assert_non_null(out);
    assert_string_equal(out, "passed");
    free(out);
}

static void error_message_is_truncated_to_the_buffer(void **state)
{
    (void)state;
    char err[8];
    assert_null(cfg_expand("${NOPE}", fake_getenv, NULL, err, sizeof err));
    assert_string_equal(err, "environ");
    assert_null(cfg_expand("${NOPE}", fake_getenv, NULL, NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_without_dollar_is_unchanged),
        cmocka_unit_test(set_variable_is_replaced_by_its_value),
        cmocka_unit_test(variable_inside_text_keeps_the_text_around_it),
        cmocka_unit_test(several_references_in_one_string_are_all_expanded),
        cmocka_unit_test(unset_variable_without_default_is_an_error_naming_it),
        cmocka_unit_test(set_but_empty_variable_expands_to_empty),
        cmocka_unit_test(default_is_used_when_variable_is_unset),
        cmocka_unit_test(default_is_used_when_variable_is_empty),
        cmocka_unit_test(default_is_ignored_when_variable_is_set),
        cmocka_unit_test(empty_default_gives_empty_string),
        cmocka_unit_test(default_is_taken_literally),
        cmocka_unit_test(default_may_be_one_reference),
        cmocka_unit_test(nested_default_two_deep_picks_the_first_set_and_non_empty),
        cmocka_unit_test(nested_default_three_deep_picks_the_first_set_and_non_empty),
        cmocka_unit_test(innermost_reference_without_default_must_be_set_when_reached),
        cmocka_unit_test(long_chain_of_defaults_is_expanded),
        cmocka_unit_test(double_dollar_in_a_nested_default_stays_literal),
        cmocka_unit_test(default_mixing_text_and_a_reference_is_an_error),
        cmocka_unit_test(unclosed_nested_reference_is_an_error),
        cmocka_unit_test(bad_name_in_a_nested_reference_is_an_error),
        cmocka_unit_test(double_dollar_is_one_literal_dollar),
        cmocka_unit_test(dollar_not_followed_by_brace_or_dollar_is_literal),
        cmocka_unit_test(environment_values_are_not_expanded_again),
        cmocka_unit_test(name_starting_with_a_digit_is_an_error),
        cmocka_unit_test(empty_name_is_an_error),
        cmocka_unit_test(name_with_other_characters_is_an_error),
        cmocka_unit_test(unterminated_reference_is_an_error),
        cmocka_unit_test(unterminated_error_quotes_at_most_forty_characters),
        cmocka_unit_test(quoted_text_is_cut_between_characters),
        cmocka_unit_test(error_after_a_good_reference_still_fails),
        cmocka_unit_test(null_getenv_reads_the_process_environment),
        cmocka_unit_test(getenv_argument_is_passed_through),
        cmocka_unit_test(error_message_is_truncated_to_the_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
