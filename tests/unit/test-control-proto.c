/* SPDX-License-Identifier: MIT */
#include "unit-helpers.h"

#include "control-proto.h"

static void test_framing_split_and_partial(void **state) {
        _cleanup_(control_buffer_done) ControlBuffer b = {};
        _cleanup_free_ char *m1 = NULL, *m2 = NULL, *m3 = NULL;
        char *none = NULL;

        assert_int_equal(control_buffer_feed(&b, "{\"a\":1}\0{\"b\"", 12), 0);
        assert_int_equal(control_buffer_next(&b, &m1), 1);
        assert_string_equal(m1, "{\"a\":1}");
        assert_int_equal(control_buffer_next(&b, &none), 0);
        assert_null(none);
        assert_int_equal(control_buffer_feed(&b, ":2}\0{}\0", 7), 0);
        assert_int_equal(control_buffer_next(&b, &m2), 1);
        assert_string_equal(m2, "{\"b\":2}");
        assert_int_equal(control_buffer_next(&b, &m3), 1);
        assert_string_equal(m3, "{}");
        assert_int_equal(control_buffer_next(&b, &none), 0);
        assert_int_equal(b.len, 0);
}

static void test_framing_limit(void **state) {
        _cleanup_(control_buffer_done) ControlBuffer b = {};
        _cleanup_free_ char *big = malloc(CONTROL_MESSAGE_MAX + 1);

        assert_non_null(big);
        memset(big, 'x', CONTROL_MESSAGE_MAX + 1);
        /* exactly the limit without a NUL is still acceptable ... */
        assert_int_equal(control_buffer_feed(&b, big, CONTROL_MESSAGE_MAX), 0);
        /* ... one byte more is not */
        assert_int_equal(control_buffer_feed(&b, big, 1), -EMSGSIZE);
}

static void test_framing_limit_across_chunks(void **state) {
        _cleanup_(control_buffer_done) ControlBuffer b = {};
        char chunk[4096];

        memset(chunk, 'y', sizeof(chunk));
        for (size_t i = 0; i < CONTROL_MESSAGE_MAX / sizeof(chunk); i++)
                assert_int_equal(control_buffer_feed(&b, chunk, sizeof(chunk)), 0);
        assert_int_equal(control_buffer_feed(&b, chunk, 1), -EMSGSIZE);
}

static void test_request_parse(void **state) {
        _cleanup_free_ char *method = NULL;
        _cleanup_(cJSON_Deletep) cJSON *params = NULL;

        assert_int_equal(control_request_parse("{\"method\":\"io.trainsupd.Status\",\"parameters\":{\"x\":1}}",
                                               &method, &params),
                         0);
        assert_string_equal(method, CONTROL_METHOD_STATUS);
        assert_non_null(params);
        assert_int_equal(cJSON_GetObjectItem(params, "x")->valueint, 1);
}

static void test_request_parse_garbage(void **state) {
        static const char *const bad[] = {
                "", "garbage", "[]", "42", "\"str\"", "{}", "{\"method\":1}", "{\"method\":\"\"}",
                "{\"method\":\"a\",\"parameters\":[]}", "{\"method\":\"a\",\"parameters\":\"x\"}", "{\"method\":",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *method = NULL;
                cJSON *params = NULL;

                assert_int_equal(control_request_parse(bad[i], &method, &params), -EBADMSG);
                assert_null(method);
        }
}

static void test_reply_round_trip(void **state) {
        _cleanup_(cJSON_Deletep) cJSON *p = cJSON_CreateObject(), *got = NULL;
        _cleanup_free_ char *msg = NULL, *err = NULL, *message = NULL;
        size_t len;

        cJSON_AddStringToObject(p, "phase", "running");
        assert_int_equal(control_reply_format(p, NULL, NULL, &msg, &len), 0);
        assert_int_equal(len, strlen(msg) + 1);
        assert_int_equal(control_reply_parse(msg, &got, &err, &message), 0);
        assert_null(err);
        assert_string_equal(cJSON_GetObjectItem(got, "phase")->valuestring, "running");
}

static void test_reply_error_and_version(void **state) {
        _cleanup_free_ char *msg = NULL, *err = NULL, *message = NULL;
        cJSON *got = NULL;
        size_t len;

        assert_int_equal(control_reply_format(NULL, CONTROL_ERROR_PERMISSION_DENIED, "root only", &msg, &len), 0);
        assert_int_equal(control_reply_parse(msg, &got, &err, &message), 0);
        assert_null(got);
        assert_string_equal(err, CONTROL_ERROR_PERMISSION_DENIED);
        assert_string_equal(message, "root only");

        assert_int_equal(control_reply_parse("{\"version\":2,\"parameters\":{}}", &got, &err, &message), -EPROTO);
        assert_int_equal(control_reply_parse("{\"parameters\":{}}", &got, &err, &message), -EBADMSG);
        assert_int_equal(control_reply_parse("{\"version\":1}", &got, &err, &message), -EBADMSG);
}

static void test_reply_too_large(void **state) {
        _cleanup_(cJSON_Deletep) cJSON *p = cJSON_CreateObject();
        _cleanup_free_ char *big = malloc(CONTROL_MESSAGE_MAX + 1);
        char *msg = NULL;
        size_t len;

        memset(big, 'z', CONTROL_MESSAGE_MAX);
        big[CONTROL_MESSAGE_MAX] = 0;
        cJSON_AddStringToObject(p, "big", big);
        assert_int_equal(control_reply_format(p, NULL, NULL, &msg, &len), -EMSGSIZE);
        assert_null(msg);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_framing_split_and_partial),
                cmocka_unit_test(test_framing_limit),
                cmocka_unit_test(test_framing_limit_across_chunks),
                cmocka_unit_test(test_request_parse),
                cmocka_unit_test(test_request_parse_garbage),
                cmocka_unit_test(test_reply_round_trip),
                cmocka_unit_test(test_reply_error_and_version),
                cmocka_unit_test(test_reply_too_large),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
