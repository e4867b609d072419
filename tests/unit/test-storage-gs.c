/* SPDX-License-Identifier: MIT */
/* The gs:// backend: the pure GCS helpers of s3-request.c, and the requests storage-gs.c forms,
 * seen by a tiny in-process HTTP server (a thread) that plays both the GCE metadata server's
 * token endpoint and the GCS XML API. The real event loop, curl and http.c are used. */
#include "unit-helpers.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "curl-glue.h"
#include "http.h"
#include "http-test-server.h"
#include "s3-request.h"
#include "storage.h"
#include "strv.h"

#define TOKEN "unit-token-1"
#define MAX_SEEN 32

/* ---- the fake server ---- */

typedef struct Seen {
        char line[512];         /* "METHOD TARGET" */
        char headers[4096];     /* "Name: value\r\n"... */
        size_t body_len;
} Seen;

static Seen seen[MAX_SEEN];
static size_t n_seen;
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static int port;

static const char *header_value(const char *headers, const char *name, char *buf, size_t size) {
        size_t n = strlen(name);

        for (const char *l = headers; *l; l = strstr(l, "\r\n") + 2) {
                const char *end = strstr(l, "\r\n");

                if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
                        const char *v = l + n + 1;
                        while (*v == ' ')
                                v++;
                        snprintf(buf, size, "%.*s", (int) (end - v), v);
                        return buf;
                }
        }
        return NULL;
}

static void respond(int fd, const Seen *r) {
        char buf[2048], v[256];
        const char *status = "404 Not Found", *body = "", *extra = "";

        if (strstr(r->line, "/computeMetadata/v1/instance/service-accounts/default/token")) {
                status = "200 OK";
                extra = "Metadata-Flavor: Google\r\nContent-Type: application/json\r\n";
                body = "{\"access_token\":\"" TOKEN "\",\"expires_in\":3599,\"token_type\":\"Bearer\"}";
        } else if (!header_value(r->headers, "Authorization", v, sizeof(v)) || strcmp(v, "Bearer " TOKEN) != 0) {
                status = "401 Unauthorized";
                body = "<Error><Code>AuthenticationRequired</Code><Message>no</Message></Error>";
        } else if (strncmp(r->line, "PUT ", 4) == 0 && strstr(r->line, "exists") &&
                   header_value(r->headers, "x-goog-if-generation-match", v, sizeof(v)) && strcmp(v, "0") == 0) {
                status = "412 Precondition Failed";
                body = "<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you "
                       "specified did not hold.</Message></Error>";
        } else if (strncmp(r->line, "PUT ", 4) == 0) {
                status = "200 OK";
                extra = "ETag: \"e\"\r\n";
        } else if (strncmp(r->line, "DELETE ", 7) == 0)
                status = strstr(r->line, "missing") ? "404 Not Found" : "204 No Content";
        snprintf(buf, sizeof(buf), "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\n\r\n%s", status, extra, strlen(body), body);
        http_test_send(fd, buf, strlen(buf));
}

/* One request from fd into r; false at EOF. */
static bool read_request(int fd, Seen *r) {
        char buf[8192], v[64], *end, *eol;
        size_t len, body;

        end = http_test_read_head(fd, buf, sizeof(buf), &len);
        if (!end)
                return false;
        *r = (Seen) {};
        eol = strstr(buf, "\r\n");
        *eol = 0;
        snprintf(r->line, sizeof(r->line), "%.*s", (int) MIN(strlen(buf), sizeof(r->line) - 1), buf);
        *strrchr(r->line, ' ') = 0; /* drop " HTTP/1.1" */
        snprintf(r->headers, sizeof(r->headers), "%.*s", (int) (end + 2 - (eol + 2)), eol + 2);
        body = header_value(r->headers, "Content-Length", v, sizeof(v)) ? strtoul(v, NULL, 10) : 0;
        if (header_value(r->headers, "Expect", v, sizeof(v)))
                http_test_send(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        r->body_len = body;
        len -= (size_t) (end + 4 - buf);
        while (len < body) {
                ssize_t n = read(fd, buf, MIN(sizeof(buf), body - len));
                if (n <= 0)
                        return false;
                len += (size_t) n;
        }
        return true;
}

/* Each connection in a thread of its own: the client keeps connections alive, so serving them one
 * after the other would leave a second connection waiting until the first one idles out. */
static void serve_connection(int fd) {
        Seen r;

        while (read_request(fd, &r)) {
                pthread_mutex_lock(&seen_lock);
                if (n_seen < MAX_SEEN)
                        seen[n_seen++] = r;
                pthread_mutex_unlock(&seen_lock);
                respond(fd, &r);
        }
        close(fd);
}

static int server_setup(void **state) {
        port = http_test_server_start(serve_connection, true);
        return 0;
}

/* ---- a store on its own loop ---- */

typedef struct Harness {
        sd_event *event;
        CurlGlue *glue;
        Config *config;
        Store *store;
} Harness;

static void harness_open(Harness *h) {
        char json[1024], **problems = NULL;

        snprintf(json, sizeof(json),
                 "{\"job_id\":\"unit\",\"tasks\":[{\"name\":\"t\",\"runtime\":\"exec\",\"command\":[\"true\"],"
                 "\"checkpoint_dir\":\"/nonexistent/unit/ckpt\"}],\"storage\":{\"url\":\"gs://unit-bucket/pre\","
                 "\"endpoint\":\"http://127.0.0.1:%d\"},\"cloud\":{\"metadata_url\":\"http://127.0.0.1:%d\"}}",
                 port, port);
        assert_int_equal(config_parse(json, strlen(json), NULL, "/nonexistent/unit/state", &h->config, &problems), 0);
        strv_free(problems);
        assert_int_equal(sd_event_new(&h->event), 0);
        assert_int_equal(curl_glue_new(&h->glue, h->event, http_on_curl_finished), 0);
        assert_int_equal(store_new(&h->store, &(StoreParams) { .event = h->event, .glue = h->glue, .config = h->config }), 0);
        pthread_mutex_lock(&seen_lock);
        n_seen = 0;
        pthread_mutex_unlock(&seen_lock);
}

static void harness_close(Harness *h) {
        store_free(h->store);
        curl_glue_free(h->glue);
        sd_event_unref(h->event);
        config_free(h->config);
}

typedef struct Result {
        unsigned done;
        int error;
} Result;

static void on_done(Store *s, int error, void *userdata) {
        Result *res = userdata;

        res->done++;
        if (error < 0)
                res->error = error;
}

static void run_until(Harness *h, Result *res, unsigned n) {
        for (unsigned i = 0; res->done < n; i++) {
                assert_true(i < 1000);
                assert_true(sd_event_run(h->event, 100 * USEC_PER_MSEC) >= 0);
        }
}

static const Seen *seen_get(size_t i) {
        assert_true(i < n_seen);
        return &seen[i];
}

static void assert_header(const Seen *r, const char *name, const char *want) {
        char v[512];

        if (!header_value(r->headers, name, v, sizeof(v)))
                fail_msg("%s: no %s header in:\n%s", r->line, name, r->headers);
        assert_string_equal(v, want);
}

/* ---- tests ---- */

static void test_put_create_only(void **state) {
        Harness h = {};
        Result res = {};
        const Seen *r;
        char sha[65];
        StorePut p = { .key = "a/b c", .fd = -1, .buf = "hello", .len = 5, .create_only = true };

        harness_open(&h);
        assert_int_equal(h.store->vt->put(h.store, &p, on_done, &res), 0);
        assert_int_equal(res.done, 0); /* never from within the call */
        run_until(&h, &res, 1);
        assert_int_equal(res.error, 0);
        assert_int_equal(n_seen, 2);

        r = seen_get(0);
        assert_string_equal(r->line, "GET /computeMetadata/v1/instance/service-accounts/default/token");
        assert_header(r, "Metadata-Flavor", "Google");

        r = seen_get(1);
        assert_string_equal(r->line, "PUT /unit-bucket/pre/a/b%20c");
        assert_header(r, "Authorization", "Bearer " TOKEN);
        assert_header(r, "x-goog-if-generation-match", "0");
        assert_int_equal(s3_payload_sha256("hello", 5, sha), 0);
        assert_header(r, "x-goog-meta-sha256", sha);
        assert_header(r, "Content-Type", "application/octet-stream");
        assert_int_equal(r->body_len, 5);
        assert_null(strcasestr(r->headers, "x-amz-"));
        harness_close(&h);
}

static void test_put_exists(void **state) {
        Harness h = {};
        Result res = {}, res2 = {};
        StorePut p = { .key = "exists", .fd = -1, .buf = "x", .len = 1, .create_only = true };

        harness_open(&h);
        assert_int_equal(h.store->vt->put(h.store, &p, on_done, &res), 0);
        run_until(&h, &res, 1);
        assert_int_equal(res.error, -EEXIST);
        /* Without create_only: no precondition, the same key is overwritten. */
        p.create_only = false;
        assert_int_equal(h.store->vt->put(h.store, &p, on_done, &res2), 0);
        run_until(&h, &res2, 1);
        assert_int_equal(res2.error, 0);
        assert_int_equal(n_seen, 3); /* one token for both */
        assert_null(strcasestr(seen_get(2)->headers, "x-goog-if-generation-match"));
        assert_header(seen_get(2), "Authorization", "Bearer " TOKEN);
        harness_close(&h);
}

static void test_queued_while_fetching(void **state) {
        Harness h = {};
        Result res = {};

        harness_open(&h);
        assert_int_equal(h.store->vt->remove(h.store, "one", on_done, &res), 0);
        assert_int_equal(h.store->vt->remove(h.store, "missing", on_done, &res), 0);
        run_until(&h, &res, 2);
        assert_int_equal(res.error, 0); /* a missing key is success */
        assert_int_equal(n_seen, 3);
        assert_non_null(strstr(seen_get(0)->line, "/token"));
        for (size_t i = 1; i < 3; i++) {
                assert_true(strcmp(seen_get(i)->line, "DELETE /unit-bucket/pre/one") == 0 ||
                            strcmp(seen_get(i)->line, "DELETE /unit-bucket/pre/missing") == 0);
                assert_header(seen_get(i), "Authorization", "Bearer " TOKEN);
        }
        harness_close(&h);
}

static void test_bucket_names(void **state) {
        assert_true(gs_bucket_name_is_valid("my-bucket"));
        assert_true(gs_bucket_name_is_valid("my_bucket.example.com"));
        assert_true(gs_bucket_name_is_valid("a1b"));
        assert_false(gs_bucket_name_is_valid("ab"));
        assert_false(gs_bucket_name_is_valid("My-Bucket"));
        assert_false(gs_bucket_name_is_valid("-bucket"));
        assert_false(gs_bucket_name_is_valid("bucket_"));
        assert_false(gs_bucket_name_is_valid("a..b"));
        assert_false(gs_bucket_name_is_valid("192.168.5.4"));
        assert_false(gs_bucket_name_is_valid("goog-bucket"));
        assert_false(gs_bucket_name_is_valid("my-google-bucket"));
        assert_false(gs_bucket_name_is_valid(
                "a123456789012345678901234567890123456789012345678901234567890123"));   /* 64, no dots */
        assert_true(gs_bucket_name_is_valid(
                "a12345678901234567890123456789012345678901234567890123456789012.b")); /* 63 + dot */
}

static void test_location_and_url(void **state) {
        _cleanup_free_ char *b = NULL, *p = NULL, *u = NULL, *u2 = NULL;

        assert_int_equal(gs_location_parse("under_score/a/b", &b, &p), 0);
        assert_string_equal(b, "under_score");
        assert_string_equal(p, "a/b/");
        assert_int_equal(gs_location_parse("bucket/a/../b", &b, &p), -EINVAL);
        assert_int_equal(gs_location_parse("Bucket", &b, &p), -EINVAL);
        assert_int_equal(gs_url(NULL, "bkt", "a/b c+d", NULL, &u), 0);
        assert_string_equal(u, "https://storage.googleapis.com/bkt/a/b%20c%2Bd");
        assert_int_equal(gs_url("http://127.0.0.1:9/", "bkt", "k", "uploads", &u2), 0);
        assert_string_equal(u2, "http://127.0.0.1:9/bkt/k?uploads");
}

static void test_bearer_and_errors(void **state) {
        _cleanup_free_ char *h = NULL, *bad = NULL;

        assert_int_equal(gs_bearer_header("ya29.abc-_~", &h), 0);
        assert_string_equal(h, "Authorization: Bearer ya29.abc-_~");
        assert_int_equal(gs_bearer_header("", &bad), -EINVAL);
        assert_int_equal(gs_bearer_header("a\r\nX-Evil: 1", &bad), -EINVAL);
        assert_int_equal(gs_bearer_header("a b", &bad), -EINVAL);
        assert_null(bad);
        assert_int_equal(gs_error_to_errno("AuthenticationRequired", 401), -EACCES);
        assert_int_equal(gs_error_to_errno("PreconditionFailed", 412), -EEXIST);
        assert_int_equal(gs_error_to_errno("NoSuchKey", 404), -ENOENT);
        assert_int_equal(gs_error_to_errno("TooManyRequests", 429), -EAGAIN);
        assert_int_equal(gs_error_to_errno(NULL, 401), -EACCES);
        assert_int_equal(gs_error_to_errno("SomethingNew", 503), -EIO);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bucket_names),
                cmocka_unit_test(test_location_and_url),
                cmocka_unit_test(test_bearer_and_errors),
                cmocka_unit_test(test_put_create_only),
                cmocka_unit_test(test_put_exists),
                cmocka_unit_test(test_queued_while_fetching),
        };
        return cmocka_run_group_tests(tests, server_setup, NULL);
}
