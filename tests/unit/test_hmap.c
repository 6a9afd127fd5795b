/* The string-keyed hash map under rooms, channels, connections and commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hmap.h"

static void test_put_get_replace_delete(void **state)
{
    (void)state;
    struct hmap m = {0};
    assert_null(hmap_get(&m, "a"));
    assert_null(hmap_del(&m, "a"));
    int one = 1, two = 2;
    assert_int_equal(hmap_put(&m, "a", &one), 0);
    assert_ptr_equal(hmap_get(&m, "a"), &one);
    assert_int_equal(hmap_put(&m, "a", &two), 0);
    assert_ptr_equal(hmap_get(&m, "a"), &two);
    assert_int_equal(m.len, 1);
    assert_ptr_equal(hmap_del(&m, "a"), &two);
    assert_null(hmap_get(&m, "a"));
    assert_int_equal(m.len, 0);
    hmap_free(&m);
}

/* Many keys, deleted in an order that exercises backward-shift deletion across wrapped
 * probe sequences: every remaining key must stay reachable. */
static void test_deletion_keeps_every_other_key_reachable(void **state)
{
    (void)state;
    enum { N = 5000 };
    static char keys[N][16];
    struct hmap m = {0};
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        assert_int_equal(hmap_put(&m, keys[i], keys[i]), 0);
    }
    assert_int_equal(m.len, N);
    for (int i = 0; i < N; i += 3)
        assert_ptr_equal(hmap_del(&m, keys[i]), keys[i]);
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0)
            assert_null(hmap_get(&m, keys[i]));
        else
            assert_ptr_equal(hmap_get(&m, keys[i]), keys[i]);
    }
    size_t seen = 0, it = 0;
    const char *k;
    void *v;
    while (hmap_next(&m, &it, &k, &v)) {
        assert_ptr_equal(k, v);
        seen++;
    }
    assert_int_equal(seen, m.len);
    hmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_replace_delete),
        cmocka_unit_test(test_deletion_keeps_every_other_key_reachable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
