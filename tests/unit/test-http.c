/* SPDX-License-Identifier: MIT */
#include "unit-helpers.h"

#include "http.h"

static void test_status_mapping(void **state) {
        static const struct {
                long status;
                int error;
        } cases[] = {
                { 200, 0 },          { 201, 0 },          { 204, 0 },          { 206, 0 },
                { 301, -EPROTO },    { 400, -EINVAL },    { 401, -EACCES },    { 403, -EACCES },
                { 404, -ENOENT },    { 405, -EOPNOTSUPP }, { 408, -ETIMEDOUT }, { 409, -EBUSY },
                { 412, -EEXIST },    { 413, -EFBIG },     { 416, -ERANGE },    { 418, -EPROTO },
                { 429, -EAGAIN },    { 500, -EIO },       { 502, -EIO },       { 503, -EIO },
                { 599, -EIO },       { 100, -EPROTO },    { 0, -EPROTO },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                assert_int_equal(http_error_from_status(cases[i].status), cases[i].error);
}

static void test_curl_mapping(void **state) {
        static const struct {
                CURLcode code;
                int error;
        } cases[] = {
                { CURLE_OK, 0 },
                { CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT },
                { CURLE_COULDNT_CONNECT, -ECONNREFUSED },
                { CURLE_COULDNT_RESOLVE_HOST, -EHOSTUNREACH },
                { CURLE_RECV_ERROR, -ECONNRESET },
                { CURLE_SEND_ERROR, -ECONNRESET },
                { CURLE_GOT_NOTHING, -ECONNRESET },
                { CURLE_PARTIAL_FILE, -EPIPE },
                { CURLE_PEER_FAILED_VERIFICATION, -EKEYREJECTED },
                { CURLE_UNSUPPORTED_PROTOCOL, -EPROTONOSUPPORT },
                { CURLE_URL_MALFORMAT, -EINVAL },
                { CURLE_OUT_OF_MEMORY, -ENOMEM },
                { CURLE_WEIRD_SERVER_REPLY, -EBADMSG },
                { CURLE_FTP_WEIRD_PASV_REPLY, -EIO },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                assert_int_equal(http_error_from_curl(cases[i].code), cases[i].error);
}

static void test_retryable(void **state) {
        assert_true(http_error_retryable(-ETIMEDOUT));
        assert_true(http_error_retryable(-ECONNREFUSED));
        assert_true(http_error_retryable(-ECONNRESET));
        assert_true(http_error_retryable(-EIO));
        assert_true(http_error_retryable(-EAGAIN));
        assert_false(http_error_retryable(-ENOENT));
        assert_false(http_error_retryable(-EACCES));
        assert_false(http_error_retryable(-EINVAL));
        assert_false(http_error_retryable(-EFBIG));
        assert_false(http_error_retryable(-EEXIST));
        assert_false(http_error_retryable(-EKEYREJECTED));
        assert_false(http_error_retryable(0));
}

static void test_backoff(void **state) {
        const usec_t base = 100 * USEC_PER_MSEC, max = 1 * USEC_PER_SEC;

        /* attempt 2 waits base, then it doubles; jitter keeps it within [d/2, d] */
        assert_int_equal(http_backoff(2, base, max, 0.0), base / 2);
        assert_int_equal(http_backoff(2, base, max, 0.999999), base - 1);
        assert_int_equal(http_backoff(3, base, max, 0.0), base);
        assert_int_equal(http_backoff(4, base, max, 0.0), 2 * base);
        /* capped */
        assert_int_equal(http_backoff(30, base, max, 0.0), max / 2);
        assert_true(http_backoff(30, base, max, 0.999999) <= max);
        /* never overflows for absurd attempt numbers */
        assert_true(http_backoff(UINT32_MAX, base, max, 0.5) <= max);
}

static void test_url_escape(void **state) {
        char *p = NULL;

        assert_int_equal(http_url_escape("a b/c+d=é~._-Z9", NULL, &p), 0);
        assert_string_equal(p, "a%20b%2Fc%2Bd%3D%C3%A9~._-Z9");
        free(p);
        /* object keys keep their slashes */
        assert_int_equal(http_url_escape("ckpt/step 1/model.pt", "/", &p), 0);
        assert_string_equal(p, "ckpt/step%201/model.pt");
        free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_status_mapping),
                cmocka_unit_test(test_curl_mapping),
                cmocka_unit_test(test_retryable),
                cmocka_unit_test(test_backoff),
                cmocka_unit_test(test_url_escape),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
