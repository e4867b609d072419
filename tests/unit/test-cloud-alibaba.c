/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "unit-helpers.h"

#include "cloud-alibaba.h"

/* The termination-time parser on recorded bodies: the documented shape, what scripts/fakecloud
 * serves (also under its wrongtype and garbage faults), and odd ones. */

static int termination_time(const char *name, usec_t *ret) {
        size_t n;
        char *data = fixture_read("cloud/alibaba", name, &n, false); /* not NUL-terminated on purpose */
        int r;

        r = alibaba_parse_termination_time(data, n, ret);
        free(data);
        return r;
}

static usec_t T(const char *rfc3339) {
        usec_t t;

        assert_int_equal(parse_rfc3339(rfc3339, &t), 0);
        return t;
}

static void test_termination_time(void **state) {
        static const struct {
                const char *file;
                int r;
                const char *time;
        } cases[] = {
                { "termination-time-doc.txt", 1, "2015-01-05T18:02:00Z" },
                { "termination-time-newline.txt", 1, "2015-01-05T18:02:00Z" },
                { "termination-time-fraction.txt", 1, "2015-01-05T18:02:00.123Z" },
                { "termination-time-offset.txt", 1, "2015-01-05T18:02:00Z" },
                { "termination-time-fakecloud.txt", 1, "2026-11-24T13:38:46Z" },
                /* none */
                { "empty.txt", 0, NULL },
                { "blank.txt", 0, NULL },
                /* garbage */
                { "termination-time-http-date.txt", -EBADMSG, NULL },
                { "termination-time-date-only.txt", -EBADMSG, NULL },
                { "termination-time-two.txt", -EBADMSG, NULL },
                { "html.txt", -EBADMSG, NULL },
                { "wrongtype-fakecloud.json", -EBADMSG, NULL },
                { "garbage-fakecloud.bin", -EBADMSG, NULL },
                { "termination-time-huge.txt", -EFBIG, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                usec_t t = 42;

                if (termination_time(cases[i].file, &t) != cases[i].r)
                        fail_msg("%s: expected %d", cases[i].file, cases[i].r);
                assert_int_equal(t, cases[i].time ? T(cases[i].time) : 42);
        }
        assert_int_equal(alibaba_parse_termination_time("2015-01-05T18:02:00Z\0", 21, &(usec_t) { 0 }), -EBADMSG);
        assert_int_equal(alibaba_parse_termination_time(NULL, 0, &(usec_t) { 0 }), 0);
}

static void test_notice(void **state) {
        Notice n;

        alibaba_termination_to_notice(T("2015-01-05T18:02:00Z"), &n);
        assert_int_equal(n.kind, NOTICE_SPOT_INTERRUPTION);
        assert_true(n.imminent);
        assert_string_equal(n.id, ALIBABA_SPOT_NOTICE_ID);
        assert_int_equal(n.deadline, T("2015-01-05T18:02:00Z"));
        assert_string_equal(n.summary, "spot instance released at 2015-01-05T18:02:00.000Z");
        /* a moved time is the same notice */
        alibaba_termination_to_notice(T("2015-01-05T18:07:00Z"), &n);
        assert_string_equal(n.id, ALIBABA_SPOT_NOTICE_ID);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_termination_time),
                cmocka_unit_test(test_notice),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
