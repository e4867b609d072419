/* SPDX-License-Identifier: MIT */
#include "unit-helpers.h"

#include "macro.h"
#include "time-util.h"

static void test_format(void **state) {
        char buf[RFC3339_MAX];

        assert_string_equal(format_rfc3339(buf, 0), "1970-01-01T00:00:00.000Z");
        /* 2026-11-23T16:00:00.123456Z: milliseconds are truncated, not rounded */
        assert_string_equal(format_rfc3339(buf, 1795449600123456ULL), "2026-11-23T16:00:00.123Z");
}

static void test_parse(void **state) {
        usec_t t;

        assert_int_equal(parse_rfc3339("2026-11-23T16:00:00Z", &t), 0);
        assert_int_equal(t, 1795449600ULL * USEC_PER_SEC);
        assert_int_equal(parse_rfc3339("2026-11-23T16:00:00.5Z", &t), 0);
        assert_int_equal(t, 1795449600ULL * USEC_PER_SEC + 500000);
        assert_int_equal(parse_rfc3339("2026-11-23T17:30:00+01:30", &t), 0);
        assert_int_equal(t, 1795449600ULL * USEC_PER_SEC);
        assert_int_equal(parse_rfc3339("2026-11-23 16:00:00.123456789Z", &t), 0);
        assert_int_equal(t, 1795449600123456ULL);
}

static void test_parse_garbage(void **state) {
        static const char *const bad[] = {
                "", "now", "2026-11-23", "2026-11-23T16:00:00", "2026-13-01T00:00:00Z", "2026-11-23T25:00:00Z",
                "2026-11-23T16:00:00Zjunk", "2026-11-23T16:00:00.Z", "1969-12-31T23:59:59Z", "2026-11-23T16:00:00+1",
        };
        usec_t t = 42;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(parse_rfc3339(bad[i], &t), -EINVAL);
                assert_int_equal(t, 42);
        }
        assert_int_equal(parse_rfc3339(NULL, &t), -EINVAL);
}

static void test_round_trip(void **state) {
        char buf[RFC3339_MAX];
        usec_t t = 1795449600123000ULL, u;

        assert_int_equal(parse_rfc3339(format_rfc3339(buf, t), &u), 0);
        assert_int_equal(u, t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_parse_garbage),
                cmocka_unit_test(test_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
