#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "mock_host.h"

#define MARK "\xe2\x80\xa6" /* … */

static char dir[64];
static char path[256];

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof path, "%s/arq.log", dir);
    log_configure(ARQ_LOG_INFO, LOG_FORMAT_LOGFMT);
    return log_open_file(path);
}

static int teardown(void **state)
{
    (void)state;
    log_close();
    unlink(path);
    return 0;
}

/* The whole file; the caller frees. */
static char *slurp(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0)
        len += n;
    buf[len] = '\0';
    fclose(f);
    return buf;
}

static int is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* 2026-11-27T14:03:05.123Z */
static int is_timestamp(const char *s)
{
    return is_digits(s, 4) && s[4] == '-' && is_digits(s + 5, 2) && s[7] == '-' &&
           is_digits(s + 8, 2) && s[10] == 'T' && is_digits(s + 11, 2) && s[13] == ':' &&
           is_digits(s + 14, 2) && s[16] == ':' && is_digits(s + 17, 2) && s[19] == '.' &&
           is_digits(s + 20, 3) && s[23] == 'Z';
}

/* The log file's content with every line's timestamp checked and replaced by "T". */
static char *log_text(const char *file)
{
    char *raw = slurp(file);
    assert_non_null(raw);
    char *out = malloc(strlen(raw) + 1);
    assert_non_null(out);
    size_t o = 0;
    for (char *p = raw; *p;) {
        const char *prefix = strncmp(p, "ts=", 3) == 0 ? "ts=" : "{\"ts\":\"";
        size_t plen = strlen(prefix);
        assert_memory_equal(p, prefix, plen);
        assert_true(is_timestamp(p + plen));
        memcpy(out + o, prefix, plen);
        o += plen;
        out[o++] = 'T';
        p += plen + 24;
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        memcpy(out + o, p, (size_t)(nl - p) + 1);
        o += (size_t)(nl - p) + 1;
        p = nl + 1;
    }
    out[o] = '\0';
    free(raw);
    return out;
}

static void assert_log(const char *expected)
{
    char *text = log_text(path);
    int same = strcmp(text, expected) == 0;
    if (!same)
        print_error("logged:\n%s\nexpected:\n%s\n", text, expected);
    free(text);
    assert_true(same);
}

static void logfmt_quotes_only_values_that_need_it(void **state)
{
    (void)state;
    LOG_INFO("reload ok", "generation", "2", "path", "/etc/arq", "empty", "", "eq", "a=b", "q",
             "say \"hi\"", "win", "C:\\dir", "sp", "a b");
    assert_log("ts=T level=info component=host msg=\"reload ok\" generation=2 path=/etc/arq "
               "empty=\"\" eq=\"a=b\" q=\"say \\\"hi\\\"\" win=C:\\dir sp=\"a b\"\n");
}

static void logfmt_escapes_newline_and_control_characters(void **state)
{
    (void)state;
    log_write(ARQ_LOG_ERROR, "ws", "bad\nframe", "v", "a\nb\tc\x01\x7f\\d\re", (const char *)NULL);
    assert_log("ts=T level=error component=ws msg=\"bad\\nframe\" "
               "v=\"a\\nb\\u0009c\\u0001\\u007f\\\\d\\u000de\"\n");
}

static void logfmt_replaces_unsafe_key_characters(void **state)
{
    (void)state;
    LOG_WARN("m", "a key=\"x\"", "1");
    assert_log("ts=T level=warn component=host msg=m a_key__x_=1\n");
}

static void null_value_is_empty_and_ends_the_fields(void **state)
{
    (void)state;
    log_write(ARQ_LOG_INFO, NULL, NULL, "a", (const char *)NULL);
    LOG_INFO("m", "a", (const char *)NULL, "b", "c");
    assert_log("ts=T level=info component=host msg=\"\" a=\"\"\n"
               "ts=T level=info component=host msg=m a=\"\"\n");
}

static void json_line_escapes_and_keeps_every_value_a_string(void **state)
{
    (void)state;
    log_configure(ARQ_LOG_INFO, LOG_FORMAT_JSON);
    log_write(ARQ_LOG_WARN, "audit-log", "bad \"frame\"", "generation", "2", "v",
              "a\nb\t\x01\\/\r\b\f\x7f", "k\"ey", "", (const char *)NULL);
    assert_log("{\"ts\":\"T\",\"level\":\"warn\",\"component\":\"audit-log\","
               "\"msg\":\"bad \\\"frame\\\"\",\"generation\":\"2\","
               "\"v\":\"a\\nb\\t\\u0001\\\\/\\r\\b\\f\x7f\",\"k\\\"ey\":\"\"}\n");
    char *raw = slurp(path);
    json_error_t err;
    json_t *j = json_loads(raw, 0, &err);
    free(raw);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "v")), "a\nb\t\x01\\/\r\b\f\x7f");
    json_decref(j);
}

static void invalid_utf8_is_replaced_and_valid_utf8_kept(void **state)
{
    (void)state;
    LOG_INFO("m", "v", "caf\xc3\xa9 \xff\xc3(\xed\xa0\x80");
    log_configure(ARQ_LOG_INFO, LOG_FORMAT_JSON);
    LOG_INFO("m", "v", "caf\xc3\xa9\xff");
    assert_log("ts=T level=info component=host msg=m v=\"caf\xc3\xa9 "
               "\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"\n"
               "{\"ts\":\"T\",\"level\":\"info\",\"component\":\"host\",\"msg\":\"m\","
               "\"v\":\"caf\xc3\xa9\xef\xbf\xbd\"}\n");
}

static void levels_below_the_configured_one_are_not_written(void **state)
{
    (void)state;
    log_configure(ARQ_LOG_WARN, LOG_FORMAT_LOGFMT);
    assert_false(log_enabled(ARQ_LOG_DEBUG));
    assert_false(log_enabled(ARQ_LOG_INFO));
    assert_true(log_enabled(ARQ_LOG_WARN));
    assert_true(log_enabled(ARQ_LOG_ERROR));
    LOG_DEBUG("d");
    LOG_INFO("i");
    LOG_WARN("w");
    LOG_ERROR("e");
    log_configure(ARQ_LOG_DEBUG, LOG_FORMAT_LOGFMT);
    LOG_DEBUG("d2");
    assert_log("ts=T level=warn component=host msg=w\n"
               "ts=T level=error component=host msg=e\n"
               "ts=T level=debug component=host msg=d2\n");
}

static void level_names_parse_case_insensitively_with_warning_alias(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum arq_log_level level;
    } ok[] = {{"debug", ARQ_LOG_DEBUG},  {"INFO", ARQ_LOG_INFO},    {"Warn", ARQ_LOG_WARN},
              {"warning", ARQ_LOG_WARN}, {"WARNING", ARQ_LOG_WARN}, {"eRRor", ARQ_LOG_ERROR}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        enum arq_log_level level = (enum arq_log_level)99;
        assert_int_equal(log_level_parse(ok[i].text, &level), 0);
        assert_int_equal(level, ok[i].level);
    }
    enum arq_log_level level = ARQ_LOG_INFO;
    assert_int_equal(log_level_parse("verbose", &level), ARQ_EINVAL);
    assert_int_equal(log_level_parse("", &level), ARQ_EINVAL);
    assert_int_equal(log_level_parse("info ", &level), ARQ_EINVAL);
    assert_int_equal(log_level_parse(NULL, &level), ARQ_EINVAL);
    assert_int_equal(level, ARQ_LOG_INFO);
    assert_string_equal(log_level_name(ARQ_LOG_DEBUG), "debug");
    assert_string_equal(log_level_name(ARQ_LOG_INFO), "info");
    assert_string_equal(log_level_name(ARQ_LOG_WARN), "warn");
    assert_string_equal(log_level_name(ARQ_LOG_ERROR), "error");
}

static void open_file_appends_with_mode_0640(void **state)
{
    (void)state;
    LOG_INFO("one");
    log_close();
    assert_int_equal(log_open_file(path), 0);
    LOG_INFO("two");
    assert_log("ts=T level=info component=host msg=one\nts=T level=info component=host msg=two\n");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
}

static void open_file_failure_returns_errno_and_keeps_the_current_file(void **state)
{
    (void)state;
    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing/arq.log", dir);
    assert_int_equal(log_open_file(bad), -ENOENT);
    LOG_INFO("still here");
    char expected[1024];
    snprintf(expected, sizeof expected,
             "ts=T level=error component=host msg=\"cannot open log file\" path=%s "
             "error=\"No such file or directory\"\n"
             "ts=T level=info component=host msg=\"still here\"\n",
             bad);
    assert_log(expected);
}

static void reopen_after_rename_writes_to_a_new_file(void **state)
{
    (void)state;
    char rotated[300];
    snprintf(rotated, sizeof rotated, "%s.1", path);
    LOG_INFO("before");
    assert_int_equal(rename(path, rotated), 0);
    LOG_INFO("after rename");
    assert_int_equal(log_reopen(), 0);
    LOG_INFO("after reopen");
    char *old = log_text(rotated);
    assert_string_equal(old, "ts=T level=info component=host msg=before\n"
                             "ts=T level=info component=host msg=\"after rename\"\n");
    free(old);
    assert_log("ts=T level=info component=host msg=\"after reopen\"\n");
    unlink(rotated);
}

static void failed_reopen_keeps_writing_to_the_old_file(void **state)
{
    (void)state;
    char sub[80], moved[80], file[96], moved_file[96];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(moved, sizeof moved, "%s/sub.old", dir);
    snprintf(file, sizeof file, "%s/arq.log", sub);
    snprintf(moved_file, sizeof moved_file, "%s/arq.log", moved);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(log_open_file(file), 0);
    LOG_INFO("one");
    assert_int_equal(rename(sub, moved), 0); /* the path can no longer be created */
    assert_int_equal(log_reopen(), -ENOENT);
    LOG_INFO("two");
    char *text = log_text(moved_file);
    char expected[1024];
    snprintf(expected, sizeof expected,
             "ts=T level=info component=host msg=one\n"
             "ts=T level=error component=host msg=\"cannot reopen log file\" path=%s "
             "error=\"No such file or directory\"\n"
             "ts=T level=info component=host msg=two\n",
             file);
    int same = strcmp(text, expected) == 0;
    if (!same)
        print_error("logged:\n%s\n", text);
    free(text);
    log_close();
    unlink(moved_file);
    rmdir(moved);
    assert_true(same);
    assert_int_equal(log_reopen(), 0); /* stderr: nothing to reopen */
}

static void logging_preserves_errno(void **state)
{
    (void)state;
    errno = EPIPE;
    LOG_INFO("m", "k", "v");
    assert_int_equal(errno, EPIPE);
}

static char *repeat(const char *unit, size_t times)
{
    size_t n = strlen(unit);
    char *s = malloc(n * times + 1);
    assert_non_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * n, unit, n);
    s[n * times] = '\0';
    return s;
}

/* One line of more than `min` bytes and at most 8 KiB, ending with `tail`, valid UTF-8. */
static char *assert_one_cut_line(size_t min, const char *tail)
{
    char *raw = slurp(path);
    size_t len = strlen(raw);
    assert_true(len <= 8192);
    assert_true(len > min);
    assert_ptr_equal(strchr(raw, '\n'), raw + len - 1);
    assert_true(len >= strlen(tail));
    assert_string_equal(raw + len - strlen(tail), tail);
    json_t *utf8 = json_stringn(raw, len); /* jansson validates UTF-8 */
    assert_non_null(utf8);
    json_decref(utf8);
    return raw;
}

static void overlong_logfmt_value_is_cut_with_a_marker(void **state)
{
    (void)state;
    char *big = repeat("x", 10000);
    LOG_INFO("m", "big", big, "after", "dropped");
    char *raw = assert_one_cut_line(8100, "x" MARK "\n");
    assert_non_null(strstr(raw, " msg=m big=xxx"));
    free(raw);
    teardown(state);
    setup(state);

    char *quoted = repeat("\xe2\x82\xac \"", 4000); /* never split a character or an escape */
    LOG_INFO("m", "q", quoted);
    raw = assert_one_cut_line(8100, MARK "\"\n");
    size_t len = strlen(raw);
    const char *before = raw + len - strlen(MARK "\"\n");
    assert_true(strncmp(before - 3, "\xe2\x82\xac", 3) == 0 || before[-1] == ' ' ||
                strncmp(before - 2, "\\\"", 2) == 0);
    free(raw);
    free(quoted);
    free(big);
}

static void overlong_json_line_stays_valid_json(void **state)
{
    (void)state;
    log_configure(ARQ_LOG_INFO, LOG_FORMAT_JSON);
    char *big = repeat("\"\xc3\xa9\n", 3000);
    LOG_INFO("m", "big", big, "after", "dropped");
    char *raw = assert_one_cut_line(8100, MARK "\"}\n");
    json_error_t err;
    json_t *j = json_loads(raw, 0, &err);
    assert_non_null(j);
    const char *v = json_string_value(json_object_get(j, "big"));
    assert_non_null(v);
    assert_memory_equal(v, "\"\xc3\xa9\n\"\xc3\xa9\n", 8);
    assert_string_equal(v + strlen(v) - 3, MARK);
    assert_null(json_object_get(j, "after"));
    json_decref(j);
    free(raw);
    free(big);
}

static void fields_that_no_longer_fit_are_dropped_with_a_marker(void **state)
{
    (void)state;
    char *key = repeat("k", 3000);
    LOG_INFO("m", key, "1", key, "2", key, "3");
    free(assert_one_cut_line(6000, " " MARK "\n"));
    teardown(state);
    setup(state);

    log_configure(ARQ_LOG_INFO, LOG_FORMAT_JSON);
    LOG_INFO("m", key, "1", key, "2", key, "3");
    char *raw = assert_one_cut_line(6000, ",\"" MARK "\":\"\"}\n");
    json_error_t err;
    json_t *j = json_loads(raw, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, key)), "2");
    json_decref(j);
    free(raw);
    free(key);
}

/* A quoted value whose closing quote lands in the line's tail reserve, followed by more fields:
 * every length around the limit (for logfmt and for JSON), each line within 8 KiB, and a JSON
 * line still parses. */
static void values_that_end_at_the_limit_keep_the_line_within_8k(void **state)
{
    (void)state;
    char *after = repeat("z", 100);
    for (int json = 0; json <= 1; json++) {
        log_configure(ARQ_LOG_INFO, json ? LOG_FORMAT_JSON : LOG_FORMAT_LOGFMT);
        for (size_t n = 8080; n < 8130; n++) {
            char *v = repeat("a", n);
            v[0] = ' '; /* quoted in logfmt too */
            LOG_INFO("m", "v", v, "after", after, "more", after);
            free(v);
        }
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char *line = NULL;
        size_t cap = 0, lines = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, f)) > 0) {
            lines++;
            assert_true(len <= 8192);
            if (json) {
                json_error_t err;
                json_t *j = json_loadb(line, (size_t)len, 0, &err);
                if (!j)
                    fail_msg("line %zu is not JSON: %s", lines, err.text);
                json_decref(j);
            }
        }
        free(line);
        fclose(f);
        assert_int_equal(lines, 50);
        teardown(state);
        setup(state);
    }
    free(after);
}

int main(void)
{
    umask(022);
    mock_host_tmpdir(dir, sizeof dir, "test_log");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(logfmt_quotes_only_values_that_need_it, setup, teardown),
        cmocka_unit_test_setup_teardown(logfmt_escapes_newline_and_control_characters, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(logfmt_replaces_unsafe_key_characters, setup, teardown),
        cmocka_unit_test_setup_teardown(null_value_is_empty_and_ends_the_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(json_line_escapes_and_keeps_every_value_a_string, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(invalid_utf8_is_replaced_and_valid_utf8_kept, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(levels_below_the_configured_one_are_not_written, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(level_names_parse_case_insensitively_with_warning_alias,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(open_file_appends_with_mode_0640, setup, teardown),
        cmocka_unit_test_setup_teardown(open_file_failure_returns_errno_and_keeps_the_current_file,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(reopen_after_rename_writes_to_a_new_file, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_reopen_keeps_writing_to_the_old_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(logging_preserves_errno, setup, teardown),
        cmocka_unit_test_setup_teardown(overlong_logfmt_value_is_cut_with_a_marker, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(overlong_json_line_stays_valid_json, setup, teardown),
        cmocka_unit_test_setup_teardown(fields_that_no_longer_fit_are_dropped_with_a_marker, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(values_that_end_at_the_limit_keep_the_line_within_8k, setup,
                                        teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    log_close();
    rmdir(dir);
    return failed;
}
