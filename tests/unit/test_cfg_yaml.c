/* cfg_yaml: YAML -> jansson trees with file:line:col for every node, and the errors on the way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfg.h"
#include "diag.h"
#include "mock_host.h"

struct fx {
    struct cfg_doc *doc;
    struct diag_list dl;
};

static const char *fake_getenv(const char *name, void *arg)
{
    static const char *const env[][2] = {
        {"PORT", "8080"},
        {"HOST", "example.org"},
        {"EMPTY", ""},
        {"BAD_UTF8", "\xff"},
    };
    (void)arg;
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
        if (strcmp(env[i][0], name) == 0)
            return env[i][1];
    return NULL;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->doc = cfg_doc_new(fake_getenv, NULL);
    *state = f;
    return f->doc ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    cfg_doc_free(f->doc);
    diag_clear(&f->dl);
    free(f);
    return 0;
}

static json_t *parse(struct fx *f, const char *text)
{
    return cfg_doc_parse(f->doc, "t.yaml", text, strlen(text), &f->dl);
}

/* The diagnostics, exactly and in order. */
static void check_diags(struct fx *f, const char *const *want)
{
    size_t n = 0;
    while (want[n])
        n++;
    for (size_t i = 0; i < f->dl.n; i++)
        print_message("diag: %s\n", f->dl.items[i]);
    assert_int_equal(f->dl.n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(f->dl.items[i], want[i]);
}
#define CHECK_DIAGS(f, ...) check_diags((f), (const char *const[]){__VA_ARGS__, NULL})

static void check_pos(const struct cfg_pos *p, const char *file, int line, int col)
{
    assert_non_null(p);
    assert_string_equal(p->file, file);
    assert_int_equal(p->line, line);
    assert_int_equal(p->col, col);
}

/* Value at line:col, key at kline:kcol. */
static void check_at(struct fx *f, const json_t *node, int line, int col, int kline, int kcol)
{
    assert_non_null(node);
    check_pos(cfg_pos_of(f->doc, node), "t.yaml", line, col);
    check_pos(cfg_key_pos_of(f->doc, node), "t.yaml", kline, kcol);
}

static void check_str(const json_t *node, const char *want)
{
    assert_true(json_is_string(node));
    assert_string_equal(json_string_value(node), want);
}

/* --- trees and positions --------------------------------------------------------------- */

static const char nested[] = "a: 1\n"
                             "b:\n"
                             "  c: \"x\"\n"
                             "  d: [p, q]\n"
                             "  e:\n"
                             "  - s\n"
                             "  - {t: u}\n";

static void nested_mapping_values_and_keys_have_positions(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, nested);
    assert_non_null(root);
    assert_int_equal(f->dl.n, 0);
    check_at(f, root, 1, 1, 1, 1);
    check_at(f, json_object_get(root, "a"), 1, 4, 1, 1);
    json_t *b = json_object_get(root, "b");
    assert_true(json_is_object(b));
    check_at(f, b, 3, 3, 2, 1);
    check_at(f, json_object_get(b, "c"), 3, 6, 3, 3);
}

static void sequence_items_have_positions_and_no_key(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, nested);
    assert_non_null(root);
    json_t *b = json_object_get(root, "b");
    json_t *d = json_object_get(b, "d");
    assert_true(json_is_array(d));
    assert_int_equal(json_array_size(d), 2);
    check_at(f, d, 4, 6, 4, 3);
    check_at(f, json_array_get(d, 0), 4, 7, 4, 7);
    check_at(f, json_array_get(d, 1), 4, 10, 4, 10);
    check_str(json_array_get(d, 1), "q");
    /* An indentless block sequence starts at its first "-". */
    json_t *e = json_object_get(b, "e");
    check_at(f, e, 6, 3, 5, 3);
    check_at(f, json_array_get(e, 0), 6, 5, 6, 5);
    json_t *flow = json_array_get(e, 1);
    assert_true(json_is_object(flow));
    check_at(f, flow, 7, 5, 7, 5);
    check_at(f, json_object_get(flow, "t"), 7, 9, 7, 6);
}

static void keys_keep_document_order(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "z: 1\na: 2\nm: 3\n");
    assert_non_null(root);
    const char *want[] = {"z", "a", "m"}, *key;
    json_t *v;
    size_t i = 0;
    json_object_foreach(root, key, v)
    {
        assert_true(i < 3);
        assert_string_equal(key, want[i++]);
    }
    assert_int_equal(i, 3);
}

static void scalars_are_always_strings(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "t: true\nn: 123\nf: 1.5\nz: null\nq: ~\nno: no\ne:\n");
    assert_non_null(root);
    check_str(json_object_get(root, "t"), "true");
    check_str(json_object_get(root, "n"), "123");
    check_str(json_object_get(root, "f"), "1.5");
    check_str(json_object_get(root, "z"), "null");
    check_str(json_object_get(root, "q"), "~");
    check_str(json_object_get(root, "no"), "no");
    check_str(json_object_get(root, "e"), "");
}

static void every_node_is_a_distinct_value(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "a: true\nb: true\nc: [true, true]\n");
    assert_non_null(root);
    json_t *a = json_object_get(root, "a"), *b = json_object_get(root, "b");
    json_t *c = json_object_get(root, "c");
    assert_ptr_not_equal(a, b);
    assert_ptr_not_equal(json_array_get(c, 0), json_array_get(c, 1));
    check_at(f, a, 1, 4, 1, 1);
    check_at(f, b, 2, 4, 2, 1);
    check_at(f, json_array_get(c, 1), 3, 11, 3, 11);
}

static void empty_value_is_an_empty_plain_scalar_after_the_colon(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "a:\nb: 1\n");
    assert_non_null(root);
    json_t *a = json_object_get(root, "a");
    check_str(a, "");
    assert_true(cfg_is_plain(f->doc, a));
    check_at(f, a, 1, 3, 1, 1);
}

static void plain_and_quoted_scalars_are_told_apart(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "p: 8080\nd: \"8080\"\ns: '8080'\nt: !!str 8080\ni: !!int 8080\n");
    assert_non_null(root);
    assert_true(cfg_is_plain(f->doc, json_object_get(root, "p")));
    assert_false(cfg_is_plain(f->doc, json_object_get(root, "d")));
    assert_false(cfg_is_plain(f->doc, json_object_get(root, "s")));
    assert_false(cfg_is_plain(f->doc, json_object_get(root, "t")));
    assert_true(cfg_is_plain(f->doc, json_object_get(root, "i")));
    check_str(json_object_get(root, "d"), "8080");
    /* A tagged node starts at its tag. */
    check_at(f, json_object_get(root, "t"), 4, 4, 4, 1);
}

static void block_scalars_are_not_plain_and_start_at_the_indicator(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "lit: |\n  one\n  two\nfold: >-\n  one\n  two\nnext: x\n");
    assert_non_null(root);
    json_t *lit = json_object_get(root, "lit"), *fold = json_object_get(root, "fold");
    check_str(lit, "one\ntwo\n");
    check_str(fold, "one two");
    assert_false(cfg_is_plain(f->doc, lit));
    assert_false(cfg_is_plain(f->doc, fold));
    check_at(f, lit, 1, 6, 1, 1);
    check_at(f, fold, 4, 7, 4, 1);
    check_at(f, json_object_get(root, "next"), 7, 7, 7, 1);
}

static void containers_are_not_plain(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "m: {}\ns: []\n");
    assert_non_null(root);
    assert_false(cfg_is_plain(f->doc, root));
    assert_false(cfg_is_plain(f->doc, json_object_get(root, "m")));
    assert_false(cfg_is_plain(f->doc, json_object_get(root, "s")));
}

static void explicit_keys_and_quoted_keys_have_positions(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "? long\n: v\n\"q k\": w\n");
    assert_non_null(root);
    check_at(f, json_object_get(root, "long"), 2, 3, 1, 3);
    check_at(f, json_object_get(root, "q k"), 3, 8, 3, 1);
}

static void columns_count_characters_not_bytes(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "\xc3\xa9t\xc3\xa9: x\n");
    assert_non_null(root);
    check_at(f, json_object_get(root, "\xc3\xa9t\xc3\xa9"), 1, 6, 1, 1);
}

static void crlf_line_ends_count_as_one_line(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "a: 1\r\nb: 2\r\n");
    assert_non_null(root);
    check_at(f, json_object_get(root, "b"), 2, 4, 2, 1);
}

static void empty_input_gives_an_empty_mapping(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "");
    assert_non_null(root);
    assert_true(json_is_object(root));
    assert_int_equal(json_object_size(root), 0);
    check_at(f, root, 1, 1, 1, 1);
    assert_int_equal(f->dl.n, 0);
}

static void comments_only_give_an_empty_mapping(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "# nothing here\n\n   # still nothing\n");
    assert_non_null(root);
    assert_true(json_is_object(root));
    assert_int_equal(json_object_size(root), 0);
    assert_int_equal(f->dl.n, 0);
}

static void bare_document_marker_gives_an_empty_mapping(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "# header\n--- # start\n...\n");
    assert_non_null(root);
    assert_true(json_is_object(root));
    assert_int_equal(json_object_size(root), 0);
    check_at(f, root, 2, 1, 2, 1);
    assert_int_equal(f->dl.n, 0);
}

static void one_explicit_document_is_fine(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "%YAML 1.1\n---\na: 1\n...\n");
    assert_non_null(root);
    check_at(f, json_object_get(root, "a"), 3, 4, 3, 1);
}

/* --- errors ---------------------------------------------------------------------------- */

static void top_level_sequence_is_refused(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "\n- a\n- b\n"));
    CHECK_DIAGS(f, "t.yaml:2:1: the top level must be a mapping");
}

static void top_level_scalar_is_refused(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "  hello\n"));
    CHECK_DIAGS(f, "t.yaml:1:3: the top level must be a mapping");
}

static void top_level_quoted_empty_string_is_refused(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "''\n"));
    CHECK_DIAGS(f, "t.yaml:1:1: the top level must be a mapping");
}

static void duplicate_key_names_both_places(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: 1\nb: 2\na: 3\n"));
    CHECK_DIAGS(f, "t.yaml:3:1: duplicate key \"a\" (first at t.yaml:1:1)");
}

static void duplicate_keys_in_nested_and_flow_mappings_are_all_reported(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "x:\n  k: 1\n  k: [1]\n  k: 3\ny: {a: 1, a: 2}\n"));
    CHECK_DIAGS(f, "t.yaml:3:3: duplicate key \"k\" (first at t.yaml:2:3)",
                "t.yaml:4:3: duplicate key \"k\" (first at t.yaml:2:3)",
                "t.yaml:5:11: duplicate key \"a\" (first at t.yaml:5:5)");
}

static void same_key_in_different_mappings_is_fine(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "a:\n  name: 1\nb:\n  name: 2\n");
    assert_non_null(root);
    assert_int_equal(f->dl.n, 0);
}

static void duplicate_is_reported_before_errors_inside_its_value(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: 1\na:\n  b: ${UNSET}\n"));
    CHECK_DIAGS(f, "t.yaml:2:1: duplicate key \"a\" (first at t.yaml:1:1)",
                "t.yaml:3:6: environment variable \"UNSET\" is not set (use ${UNSET:-default} to "
                "give a default)");
}

static void sequence_and_mapping_keys_are_refused(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "? [a, b]\n: 1\n{c: d}: 2\nok: 3\n"));
    CHECK_DIAGS(f, "t.yaml:1:3: mapping keys must be scalars",
                "t.yaml:3:1: mapping keys must be scalars");
}

static void anchors_are_refused(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: &x 1\nb: &m\n  c: 1\n"));
    CHECK_DIAGS(f, "t.yaml:1:4: aliases and anchors are not supported",
                "t.yaml:2:4: aliases and anchors are not supported");
}

static void aliases_are_refused_as_values_items_and_keys(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: *x\nb:\n  - *y\n*z : 1\n"));
    CHECK_DIAGS(f, "t.yaml:1:4: aliases and anchors are not supported",
                "t.yaml:3:5: aliases and anchors are not supported",
                "t.yaml:4:1: aliases and anchors are not supported");
}

static void second_document_is_refused(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: 1\n---\nb: 2\n"));
    CHECK_DIAGS(f, "t.yaml:2:1: only one YAML document per file is supported (found a second one)");
}

static void trailing_empty_document_is_refused(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "---\na: 1\n---\n"));
    CHECK_DIAGS(f, "t.yaml:3:1: only one YAML document per file is supported (found a second one)");
}

static void syntax_error_uses_the_libyaml_problem_and_mark(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: b: c\n"));
    CHECK_DIAGS(f, "t.yaml:1:5: mapping values are not allowed in this context");
}

static void syntax_error_names_its_context(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: 1\nb: \"open\n"));
    CHECK_DIAGS(f, "t.yaml:3:1: found unexpected end of stream (while scanning a quoted scalar at "
                   "line 2, column 4)");
}

static void bad_indentation_is_a_syntax_error(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a:\n  - b\n c: 1\n"));
    CHECK_DIAGS(f, "t.yaml:3:2: did not find expected key (while parsing a block mapping at line "
                   "1, column 1)");
}

static void unclosed_flow_sequence_is_a_syntax_error(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: [1, 2\n"));
    CHECK_DIAGS(f, "t.yaml:2:1: did not find expected ',' or ']' (while parsing a flow sequence "
                   "at line 1, column 4)");
}

static void invalid_utf8_is_reported_where_it_is(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: 1\nbb: \xff\n"));
    CHECK_DIAGS(f, "t.yaml:2:5: invalid leading UTF-8 octet (0xFF)");
}

static void control_character_is_reported_where_it_is(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: x\x01\n"));
    CHECK_DIAGS(f, "t.yaml:1:5: control characters are not allowed (0x01)");
}

static void errors_before_a_syntax_error_are_kept(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: 1\na: 2\nb: [\n"));
    CHECK_DIAGS(f, "t.yaml:2:1: duplicate key \"a\" (first at t.yaml:1:1)",
                "t.yaml:4:1: did not find expected node content (while parsing a flow node at "
                "line 4, column 1)");
}

static void many_errors_in_one_file_are_all_reported(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: 1\n"
                         "a: 2\n"
                         "b: *x\n"
                         "c: ${NOPE}\n"
                         "d:\n"
                         "  - ${1}\n"
                         "? [k]\n"
                         ": v\n"));
    CHECK_DIAGS(f, "t.yaml:2:1: duplicate key \"a\" (first at t.yaml:1:1)",
                "t.yaml:3:4: aliases and anchors are not supported",
                "t.yaml:4:4: environment variable \"NOPE\" is not set (use ${NOPE:-default} to "
                "give a default)",
                "t.yaml:6:5: invalid environment variable name \"1\" (use letters, digits and "
                "\"_\", not starting with a digit)",
                "t.yaml:7:3: mapping keys must be scalars");
}

static void non_core_tags_are_refused(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: !local x\nb: !!binary eA==\nc: ! x\nd: !!float 1.5\n"));
    CHECK_DIAGS(f, "t.yaml:1:4: unsupported tag \"!local\"",
                "t.yaml:2:4: unsupported tag \"!!binary\"", "t.yaml:3:4: unsupported tag \"!\"");
}

static void core_tag_on_the_wrong_kind_of_node_is_refused(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: !!map x\nb: !!str [1]\nc: !!seq [1]\nd: !!map {}\n"));
    CHECK_DIAGS(f, "t.yaml:1:4: tag \"!!map\" cannot be used on a scalar",
                "t.yaml:2:4: tag \"!!str\" cannot be used on a sequence");
}

static void nul_in_a_quoted_value_is_refused(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: \"x\\0y\"\n"));
    CHECK_DIAGS(f, "t.yaml:1:4: NUL characters are not allowed in values");
}

static void nesting_deeper_than_the_limit_is_refused(void **state)
{
    struct fx *f = *state;
    char text[700];
    strcpy(text, "a: ");
    memset(text + 3, '[', 300);
    memset(text + 303, ']', 300);
    strcpy(text + 603, "\n");
    assert_null(parse(f, text));
    CHECK_DIAGS(f, "t.yaml:1:259: nested deeper than 256 levels");
}

static void nesting_up_to_the_limit_is_fine(void **state)
{
    struct fx *f = *state;
    char text[600];
    strcpy(text, "a: ");
    memset(text + 3, '[', 255);
    memset(text + 258, ']', 255);
    strcpy(text + 513, "\n");
    json_t *root = parse(f, text);
    assert_non_null(root);
    assert_int_equal(f->dl.n, 0);
}

/* --- environment expansion ------------------------------------------------------------- */

static void env_references_in_values_are_expanded(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "host: ${HOST}\n"
                            "port: ${PORT}\n"
                            "url: \"http://${HOST}:${PORT}/\"\n"
                            "level: ${LEVEL:-info}\n"
                            "empty: ${EMPTY:-fallback}\n"
                            "blank: '[${EMPTY}]'\n"
                            "money: $$5 and $x\n");
    assert_non_null(root);
    assert_int_equal(f->dl.n, 0);
    check_str(json_object_get(root, "host"), "example.org");
    check_str(json_object_get(root, "port"), "8080");
    check_str(json_object_get(root, "url"), "http://example.org:8080/");
    check_str(json_object_get(root, "level"), "info");
    check_str(json_object_get(root, "empty"), "fallback");
    check_str(json_object_get(root, "blank"), "[]");
    check_str(json_object_get(root, "money"), "$5 and $x");
}

static void expanded_values_keep_their_style_and_position(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "port: ${PORT}\nq: \"${PORT}\"\n");
    assert_non_null(root);
    json_t *port = json_object_get(root, "port"), *q = json_object_get(root, "q");
    assert_true(cfg_is_plain(f->doc, port));
    assert_false(cfg_is_plain(f->doc, q));
    check_at(f, port, 1, 7, 1, 1);
    check_at(f, q, 2, 4, 2, 1);
}

static void env_references_in_sequence_items_are_expanded(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "list:\n  - ${HOST}\n  - ${NOPE:-d}\n  - [\"${PORT}\"]\n");
    assert_non_null(root);
    json_t *list = json_object_get(root, "list");
    check_str(json_array_get(list, 0), "example.org");
    check_str(json_array_get(list, 1), "d");
    check_str(json_array_get(json_array_get(list, 2), 0), "8080");
}

static void env_references_in_block_scalars_are_expanded(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "text: |\n  host=${HOST}\n  port=${PORT}\n");
    assert_non_null(root);
    check_str(json_object_get(root, "text"), "host=example.org\nport=8080\n");
}

static void keys_are_not_expanded(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "${NOPE}: 1\n\"$$\": 2\n");
    assert_non_null(root);
    assert_int_equal(f->dl.n, 0);
    check_str(json_object_get(root, "${NOPE}"), "1");
    check_str(json_object_get(root, "$$"), "2");
}

static void unset_variable_is_reported_at_the_scalar(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a:\n  b:\n    - x\n    - \"v=${NOPE}\"\n"));
    CHECK_DIAGS(f, "t.yaml:4:7: environment variable \"NOPE\" is not set (use ${NOPE:-default} "
                   "to give a default)");
}

static void unterminated_reference_is_reported_at_the_scalar(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: x ${HOST\n"));
    CHECK_DIAGS(f, "t.yaml:1:4: unterminated \"${HOST\" (missing \"}\")");
}

static void bad_variable_name_is_reported_at_the_scalar(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: \"${HOST-x}\"\n"));
    CHECK_DIAGS(f, "t.yaml:1:4: invalid environment variable name \"HOST-x\" (use letters, digits "
                   "and \"_\", not starting with a digit)");
}

static void invalid_utf8_from_the_environment_is_refused(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: ${BAD_UTF8}\n"));
    CHECK_DIAGS(f,
                "t.yaml:1:4: the value is not valid UTF-8 after expanding environment variables");
}

static void null_getenv_reads_the_process_environment(void **state)
{
    (void)state;
    struct diag_list dl = {0};
    struct cfg_doc *doc = cfg_doc_new(NULL, NULL);
    assert_non_null(doc);
    assert_int_equal(setenv("ARQ_TEST_CFG_YAML", "from-env", 1), 0);
    const char text[] = "v: ${ARQ_TEST_CFG_YAML}\n";
    json_t *root = cfg_doc_parse(doc, "e.yaml", text, strlen(text), &dl);
    unsetenv("ARQ_TEST_CFG_YAML");
    assert_non_null(root);
    check_str(json_object_get(root, "v"), "from-env");
    cfg_doc_free(doc);
    diag_clear(&dl);
}

/* --- the doc ---------------------------------------------------------------------------- */

static void foreign_nodes_have_no_position(void **state)
{
    struct fx *f = *state;
    json_t *root = parse(f, "a: 1\n");
    assert_non_null(root);
    json_t *other = json_string("a");
    assert_null(cfg_pos_of(f->doc, other));
    assert_null(cfg_key_pos_of(f->doc, other));
    assert_false(cfg_is_plain(f->doc, other));
    assert_null(cfg_pos_of(f->doc, NULL));
    json_decref(other);
}

static void file_names_are_owned_by_the_doc(void **state)
{
    struct fx *f = *state;
    char name[32] = "first.yaml";
    json_t *a = cfg_doc_parse(f->doc, name, "a: 1\n", 5, &f->dl);
    strcpy(name, "second.yaml");
    json_t *b = cfg_doc_parse(f->doc, name, "b: 2\n", 5, &f->dl);
    memset(name, 'x', sizeof name - 1);
    assert_non_null(a);
    assert_non_null(b);
    check_pos(cfg_pos_of(f->doc, json_object_get(a, "a")), "first.yaml", 1, 4);
    check_pos(cfg_pos_of(f->doc, json_object_get(b, "b")), "second.yaml", 1, 4);
    /* The same name is stored once. */
    json_t *c = cfg_doc_parse(f->doc, "first.yaml", "c: 3\n", 5, &f->dl);
    assert_non_null(c);
    assert_ptr_equal(cfg_pos_of(f->doc, c)->file, cfg_pos_of(f->doc, a)->file);
}

static void roots_stay_alive_until_the_doc_is_freed(void **state)
{
    struct fx *f = *state;
    json_t *a = parse(f, "a: [1, 2]\n");
    const struct cfg_pos *p = cfg_pos_of(f->doc, json_object_get(a, "a"));
    for (int i = 0; i < 2000; i++) {
        char text[32];
        int n = snprintf(text, sizeof text, "k%d: v\n", i);
        assert_non_null(cfg_doc_parse(f->doc, "t.yaml", text, (size_t)n, &f->dl));
    }
    /* Still there, and position pointers handed out earlier are still valid. */
    assert_int_equal(json_array_size(json_object_get(a, "a")), 2);
    check_pos(p, "t.yaml", 1, 4);
    assert_ptr_equal(p, cfg_pos_of(f->doc, json_object_get(a, "a")));
}

static void doc_stays_usable_after_a_failed_parse(void **state)
{
    struct fx *f = *state;
    assert_null(parse(f, "a: [\n"));
    assert_null(parse(f, "a: 1\na: 2\n"));
    json_t *root = parse(f, "b: 1\n");
    assert_non_null(root);
    check_at(f, json_object_get(root, "b"), 1, 4, 1, 1);
}

static void free_of_a_null_doc_is_harmless(void **state)
{
    (void)state;
    cfg_doc_free(NULL);
    cfg_free_list(NULL);
}

/* --- files and directories ------------------------------------------------------------- */

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    mock_host_tmpdir(tmpdir, sizeof tmpdir, "arq_cfg_yaml");
    if (!mkdtemp(tmpdir))
        return -1;
    return setup(state);
}

static int remove_tmpdir(void **state)
{
    mock_host_remove_tmpdir(tmpdir);
    return teardown(state);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void tmp_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmpdir, name);
}

static void parse_file_reads_the_file_and_names_it(void **state)
{
    struct fx *f = *state;
    char path[256];
    write_file(tmpdir, "a.yaml", "# top\nhost:\n  port: ${PORT}\n");
    tmp_path(path, sizeof path, "a.yaml");
    json_t *root = cfg_doc_parse_file(f->doc, path, &f->dl);
    assert_non_null(root);
    json_t *port = json_object_get(json_object_get(root, "host"), "port");
    check_str(port, "8080");
    check_pos(cfg_pos_of(f->doc, port), path, 3, 9);
    check_pos(cfg_key_pos_of(f->doc, port), path, 3, 3);
}

static void parse_file_reports_a_missing_file(void **state)
{
    struct fx *f = *state;
    char path[256], want[1024];
    tmp_path(path, sizeof path, "missing.yaml");
    assert_null(cfg_doc_parse_file(f->doc, path, &f->dl));
    snprintf(want, sizeof want, "cannot read \"%s\": No such file or directory", path);
    CHECK_DIAGS(f, want);
}

static void parse_file_reports_a_directory(void **state)
{
    struct fx *f = *state;
    char want[1024];
    assert_null(cfg_doc_parse_file(f->doc, tmpdir, &f->dl));
    snprintf(want, sizeof want, "cannot read \"%s\": Is a directory", tmpdir);
    CHECK_DIAGS(f, want);
}

static void parse_file_errors_carry_the_path(void **state)
{
    struct fx *f = *state;
    char path[256], want[1024];
    write_file(tmpdir, "bad.yaml", "a: 1\na: 2\n");
    tmp_path(path, sizeof path, "bad.yaml");
    assert_null(cfg_doc_parse_file(f->doc, path, &f->dl));
    snprintf(want, sizeof want, "%s:2:1: duplicate key \"a\" (first at %s:1:1)", path, path);
    CHECK_DIAGS(f, want);
}

static void parse_file_reads_large_files(void **state)
{
    struct fx *f = *state;
    char path[256];
    tmp_path(path, sizeof path, "big.yaml");
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 5000; i++)
        fprintf(fp, "key_%05d: value %d\n", i, i);
    assert_int_equal(fclose(fp), 0);
    json_t *root = cfg_doc_parse_file(f->doc, path, &f->dl);
    assert_non_null(root);
    assert_int_equal(json_object_size(root), 5000);
    json_t *last = json_object_get(root, "key_04999");
    check_str(last, "value 4999");
    check_pos(cfg_pos_of(f->doc, last), path, 5000, 12);
}

static void list_dir_gives_yaml_files_in_byte_order(void **state)
{
    struct fx *f = *state;
    char sub[256], target[256], link[256];
    write_file(tmpdir, "b.yaml", "");
    write_file(tmpdir, "a.yml", "");
    write_file(tmpdir, "Z.yaml", "");
    write_file(tmpdir, "10-x.yaml", "");
    write_file(tmpdir, "9-x.yaml", "");
    write_file(tmpdir, ".hidden.yaml", "");
    write_file(tmpdir, "notes.txt", "");
    write_file(tmpdir, "c.yaml.bak", "");
    write_file(tmpdir, "d.YAML", "");
    write_file(tmpdir, "yaml", "");
    tmp_path(sub, sizeof sub, "dir.yaml");
    assert_int_equal(mkdir(sub, 0755), 0);
    /* A symlink to a regular file counts; a dangling one does not. */
    tmp_path(target, sizeof target, "notes.txt");
    tmp_path(link, sizeof link, "link.yaml");
    assert_int_equal(symlink(target, link), 0);
    tmp_path(link, sizeof link, "dangling.yml");
    assert_int_equal(symlink("/nonexistent/arq", link), 0);

    char **list = cfg_list_dir(tmpdir, &f->dl);
    assert_non_null(list);
    const char *want[] = {"10-x.yaml", "9-x.yaml", "Z.yaml", "a.yml", "b.yaml", "link.yaml"};
    size_t n = 0;
    while (list[n])
        n++;
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++) {
        char path[256];
        tmp_path(path, sizeof path, want[i]);
        assert_string_equal(list[i], path);
    }
    cfg_free_list(list);
    assert_int_equal(f->dl.n, 0);
}

static void list_dir_does_not_double_a_trailing_slash(void **state)
{
    struct fx *f = *state;
    char dir[256], want[256];
    write_file(tmpdir, "a.yaml", "");
    snprintf(dir, sizeof dir, "%s/", tmpdir);
    char **list = cfg_list_dir(dir, &f->dl);
    assert_non_null(list);
    tmp_path(want, sizeof want, "a.yaml");
    assert_string_equal(list[0], want);
    assert_null(list[1]);
    cfg_free_list(list);
}

static void list_dir_of_an_empty_directory_is_an_empty_list(void **state)
{
    struct fx *f = *state;
    char **list = cfg_list_dir(tmpdir, &f->dl);
    assert_non_null(list);
    assert_null(list[0]);
    cfg_free_list(list);
    assert_int_equal(f->dl.n, 0);
}

static void list_dir_reports_a_missing_directory(void **state)
{
    struct fx *f = *state;
    char dir[256], want[1024];
    tmp_path(dir, sizeof dir, "nope");
    assert_null(cfg_list_dir(dir, &f->dl));
    snprintf(want, sizeof want,
             "cannot read configuration directory \"%s\": No such file or directory", dir);
    CHECK_DIAGS(f, want);
}

static void list_dir_reports_a_file_given_as_directory(void **state)
{
    struct fx *f = *state;
    char path[256], want[1024];
    write_file(tmpdir, "a.yaml", "");
    tmp_path(path, sizeof path, "a.yaml");
    assert_null(cfg_list_dir(path, &f->dl));
    snprintf(want, sizeof want, "cannot read configuration directory \"%s\": Not a directory",
             path);
    CHECK_DIAGS(f, want);
}

#define T(name)  cmocka_unit_test_setup_teardown(name, setup, teardown)
#define TD(name) cmocka_unit_test_setup_teardown(name, make_tmpdir, remove_tmpdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(nested_mapping_values_and_keys_have_positions),
        T(sequence_items_have_positions_and_no_key),
        T(keys_keep_document_order),
        T(scalars_are_always_strings),
        T(every_node_is_a_distinct_value),
        T(empty_value_is_an_empty_plain_scalar_after_the_colon),
        T(plain_and_quoted_scalars_are_told_apart),
        T(block_scalars_are_not_plain_and_start_at_the_indicator),
        T(containers_are_not_plain),
        T(explicit_keys_and_quoted_keys_have_positions),
        T(columns_count_characters_not_bytes),
        T(crlf_line_ends_count_as_one_line),
        T(empty_input_gives_an_empty_mapping),
        T(comments_only_give_an_empty_mapping),
        T(bare_document_marker_gives_an_empty_mapping),
        T(one_explicit_document_is_fine),
        T(top_level_sequence_is_refused),
        T(top_level_scalar_is_refused),
        T(top_level_quoted_empty_string_is_refused),
        T(duplicate_key_names_both_places),
        T(duplicate_keys_in_nested_and_flow_mappings_are_all_reported),
        T(same_key_in_different_mappings_is_fine),
        T(duplicate_is_reported_before_errors_inside_its_value),
        T(sequence_and_mapping_keys_are_refused),
        T(anchors_are_refused),
        T(aliases_are_refused_as_values_items_and_keys),
        T(second_document_is_refused),
        T(trailing_empty_document_is_refused),
        T(syntax_error_uses_the_libyaml_problem_and_mark),
        T(syntax_error_names_its_context),
        T(bad_indentation_is_a_syntax_error),
        T(unclosed_flow_sequence_is_a_syntax_error),
        T(invalid_utf8_is_reported_where_it_is),
        T(control_character_is_reported_where_it_is),
        T(errors_before_a_syntax_error_are_kept),
        T(many_errors_in_one_file_are_all_reported),
        T(non_core_tags_are_refused),
        T(core_tag_on_the_wrong_kind_of_node_is_refused),
        T(nul_in_a_quoted_value_is_refused),
        T(nesting_deeper_than_the_limit_is_refused),
        T(nesting_up_to_the_limit_is_fine),
        T(env_references_in_values_are_expanded),
        T(expanded_values_keep_their_style_and_position),
        T(env_references_in_sequence_items_are_expanded),
        T(env_references_in_block_scalars_are_expanded),
        T(keys_are_not_expanded),
        T(unset_variable_is_reported_at_the_scalar),
        T(unterminated_reference_is_reported_at_the_scalar),
        T(bad_variable_name_is_reported_at_the_scalar),
        T(invalid_utf8_from_the_environment_is_refused),
        cmocka_unit_test(null_getenv_reads_the_process_environment),
        T(foreign_nodes_have_no_position),
        T(file_names_are_owned_by_the_doc),
        T(roots_stay_alive_until_the_doc_is_freed),
        T(doc_stays_usable_after_a_failed_parse),
        cmocka_unit_test(free_of_a_null_doc_is_harmless),
        TD(parse_file_reads_the_file_and_names_it),
        TD(parse_file_reports_a_missing_file),
        TD(parse_file_reports_a_directory),
        TD(parse_file_errors_carry_the_path),
        TD(parse_file_reads_large_files),
        TD(list_dir_gives_yaml_files_in_byte_order),
        TD(list_dir_does_not_double_a_trailing_slash),
        TD(list_dir_of_an_empty_directory_is_an_empty_list),
        TD(list_dir_reports_a_missing_directory),
        TD(list_dir_reports_a_file_given_as_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
