/* SPDX-License-Identifier: MIT */
#include "unit-helpers.h"

#include "strv.h"

static void test_extend_and_length(void **state) {
        _cleanup_strv_free_ char **l = NULL;

        assert_int_equal(strv_length(l), 0);
        assert_int_equal(strv_extend(&l, "a"), 0);
        assert_int_equal(strv_extendf(&l, "%s-%d", "b", 2), 0);
        assert_int_equal(strv_consume(&l, strdup("c")), 0);
        assert_int_equal(strv_length(l), 3);
        assert_string_equal(l[0], "a");
        assert_string_equal(l[1], "b-2");
        assert_string_equal(l[2], "c");
        assert_null(l[3]);
}

static void test_consume_null_is_enomem(void **state) {
        _cleanup_strv_free_ char **l = NULL;

        assert_int_equal(strv_consume(&l, NULL), -ENOMEM);
        assert_null(l);
}

static void test_copy(void **state) {
        _cleanup_strv_free_ char **l = NULL, **c = NULL;
        size_t n = 0;

        assert_int_equal(strv_extend(&l, "x"), 0);
        assert_int_equal(strv_extend(&l, "y"), 0);
        c = strv_copy(l);
        assert_non_null(c);
        assert_ptr_not_equal(c[0], l[0]);
        STRV_FOREACH(s, c)
                assert_string_equal(*s, l[n++]);
        assert_int_equal(n, 2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_extend_and_length),
                cmocka_unit_test(test_consume_null_is_enomem),
                cmocka_unit_test(test_copy),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
