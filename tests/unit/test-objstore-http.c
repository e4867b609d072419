/* SPDX-License-Identifier: MIT */
/* The shared core of the HTTP object stores (daemon/objstore-http.h) with a provider of its own
 * that speaks S3's XML dialect (objstore-s3xml.h) without signing, against a small in-process
 * HTTP server (one thread per connection). The real event loop, curl and http.c are used. What
 * is checked: operations wait for credentials and fail with their error; parts run at most
 * storage.concurrency at a time and are committed with their ETags; a failed part aborts the
 * upload; list pages are joined and sorted, a repeated token is refused; ranged gets land at the
 * right place; cancel_all() calls no callback; sweep_uploads lists every page of incomplete
 * uploads (with the markers) and aborts exactly those under its prefix initiated before the
 * cutoff, counting one gone meanwhile as success, and stops at a refused abort. */
#include "unit-helpers.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "curl-glue.h"
#include "http.h"
#include "http-test-server.h"
#include "objstore-s3xml.h"
#include "strv.h"

#define LOG_MAX 64

/* ---- the server ---- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char seen[LOG_MAX][256];         /* "METHOD TARGET" */
static char seen_body[LOG_MAX][1024];
static size_t n_seen;
static unsigned parts_now, parts_max;
static int port;

static void respond(int fd, const char *status, const char *extra, const char *body) {
        char buf[4096];

        snprintf(buf, sizeof(buf), "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\n\r\n%s", status, extra, strlen(body), body);
        http_test_send(fd, buf, strlen(buf));
}

static void answer_list(int fd, const char *target) {
        if (strstr(target, "loop"))
                respond(fd, "200 OK", "", "<ListBucketResult><IsTruncated>true</IsTruncated>"
                        "<NextContinuationToken>same</NextContinuationToken></ListBucketResult>");
        else if (!strstr(target, "continuation-token"))
                respond(fd, "200 OK", "", "<ListBucketResult><IsTruncated>true</IsTruncated>"
                        "<NextContinuationToken>t2</NextContinuationToken>"
                        "<Contents><Key>root/l/b</Key><Size>2</Size></Contents>"
                        "<Contents><Key>elsewhere/x</Key><Size>9</Size></Contents></ListBucketResult>");
        else
                respond(fd, "200 OK", "", "<ListBucketResult><IsTruncated>false</IsTruncated>"
                        "<Contents><Key>root/l/a</Key><Size>1</Size></Contents></ListBucketResult>");
}

#define UPLOAD(key, id, initiated) "<Upload><Key>" key "</Key><UploadId>" id "</UploadId>" initiated \
        "<Initiator><ID>i</ID></Initiator></Upload>"
#define AT(t) "<Initiated>" t "</Initiated>"

/* ListMultipartUploads; the cutoff of the tests is 2024-06-01T00:00:00Z. */
static void answer_uploads(int fd, const char *target) {
        if (strstr(target, "loop"))
                respond(fd, "200 OK", "", "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>"
                        "<NextKeyMarker>k</NextKeyMarker><NextUploadIdMarker>u</NextUploadIdMarker>"
                        "</ListMultipartUploadsResult>");
        else if (strstr(target, "deny"))
                respond(fd, "200 OK", "", "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
                        UPLOAD("root/deny/a", "Ua", AT("2020-01-01T00:00:00.000Z"))
                        UPLOAD("root/deny/b", "Ub", AT("2020-01-01T00:00:00.000Z"))
                        "</ListMultipartUploadsResult>");
        else if (!strstr(target, "key-marker="))
                respond(fd, "200 OK", "", "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>"
                        "<NextKeyMarker>root/sw/b</NextKeyMarker><NextUploadIdMarker>Ub1</NextUploadIdMarker>"
                        UPLOAD("root/sw/a", "Uold-a", AT("2024-05-31T23:59:59.000Z"))
                        UPLOAD("root/sw/b", "Ub1", AT("2024-07-01T00:00:00.000Z"))
                        UPLOAD("elsewhere/x", "Ux", AT("2020-01-01T00:00:00.000Z"))
                        "</ListMultipartUploadsResult>");
        else
                respond(fd, "200 OK", "", "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>"
                        UPLOAD("root/sw/c", "U+c/2", AT("2021-03-04T05:06:07Z"))
                        UPLOAD("root/sw/d", "Ud", "")
                        UPLOAD("root/sw/e", "Ue", AT("2024-06-01T00:00:00.000Z"))
                        UPLOAD("root/sw/gone", "Ug", AT("2020-01-01T00:00:00.000Z"))
                        "</ListMultipartUploadsResult>");
}

static void answer(int fd, const char *line) {
        const char *target = strchr(line, ' ') + 1;

        if (strncmp(line, "GET ", 4) == 0 && strstr(target, "list-type=2"))
                answer_list(fd, target);
        else if (strncmp(line, "GET ", 4) == 0 && strstr(target, "&uploads="))
                answer_uploads(fd, target);
        else if (strncmp(line, "DELETE ", 7) == 0 && strstr(target, "/gone?uploadId="))
                respond(fd, "404 Not Found", "", "<Error><Code>NoSuchUpload</Code><Message>m</Message></Error>");
        else if (strncmp(line, "DELETE ", 7) == 0 && strstr(target, "/deny/a?uploadId="))
                respond(fd, "403 Forbidden", "", "<Error><Code>AccessDenied</Code><Message>m</Message></Error>");
        else if (strncmp(line, "GET ", 4) == 0)
                respond(fd, "206 Partial Content", "", "3456");
        else if (strncmp(line, "POST ", 5) == 0 && strstr(target, "?uploads"))
                respond(fd, "200 OK", "", "<InitiateMultipartUploadResult><UploadId>U1</UploadId>"
                        "</InitiateMultipartUploadResult>");
        else if (strncmp(line, "PUT ", 4) == 0 && strstr(target, "fail") && strstr(target, "partNumber=3&"))
                respond(fd, "400 Bad Request", "", "<Error><Code>EntityTooSmall</Code><Message>m</Message></Error>");
        else if (strncmp(line, "PUT ", 4) == 0 && strstr(target, "partNumber=")) {
                char etag[64];

                snprintf(etag, sizeof(etag), "ETag: \"e%d\"\r\n", atoi(strstr(target, "partNumber=") + 11));
                respond(fd, "200 OK", etag, "");
        } else if (strncmp(line, "POST ", 5) == 0)
                respond(fd, "200 OK", "", "<CompleteMultipartUploadResult></CompleteMultipartUploadResult>");
        else if (strncmp(line, "DELETE ", 7) == 0)
                respond(fd, "204 No Content", "", "");
        else
                respond(fd, "200 OK", "", "");
}

/* One request into line and body; false at EOF. */
static bool read_request(int fd, char *line, size_t line_size, char *body, size_t body_size) {
        char buf[8192], *end, *cl;
        size_t len, want, have;

        end = http_test_read_head(fd, buf, sizeof(buf), &len);
        if (!end)
                return false;
        *strstr(buf, "\r\n") = 0;
        snprintf(line, line_size, "%.*s", (int) MIN(strlen(buf), line_size - 1), buf);
        *strrchr(line, ' ') = 0; /* " HTTP/1.1" */
        cl = strcasestr(buf + strlen(buf) + 2, "\r\nContent-Length:");
        want = cl ? strtoul(cl + 17, NULL, 10) : 0;
        have = len - (size_t) (end + 4 - buf);
        snprintf(body, body_size, "%.*s", (int) MIN(have, body_size - 1), end + 4);
        while (have < want) {
                ssize_t n = read(fd, buf, MIN(sizeof(buf), want - have));

                if (n <= 0)
                        return false;
                if (have < body_size - 1)
                        snprintf(body + have, body_size - have, "%.*s", (int) n, buf);
                have += (size_t) n;
        }
        return true;
}

static void serve_connection(int fd) {
        char line[256], body[1024];

        while (read_request(fd, line, sizeof(line), body, sizeof(body))) {
                bool part = strncmp(line, "PUT ", 4) == 0 && strstr(line, "partNumber=");

                pthread_mutex_lock(&lock);
                if (n_seen < LOG_MAX) {
                        snprintf(seen[n_seen], sizeof(seen[0]), "%s", line);
                        snprintf(seen_body[n_seen++], sizeof(seen_body[0]), "%s", body);
                }
                if (part && ++parts_now > parts_max)
                        parts_max = parts_now;
                pthread_mutex_unlock(&lock);
                if (part)
                        usleep(50 * 1000); /* parts overlap when more run at once */
                pthread_mutex_lock(&lock);
                if (part)
                        parts_now--;
                pthread_mutex_unlock(&lock);
                answer(fd, line);
        }
        close(fd);
}

static int server_setup(void **state) {
        port = http_test_server_start(serve_connection, true);
        return 0;
}

static size_t seen_count(const char *prefix, const char *contains) {
        size_t n = 0;

        pthread_mutex_lock(&lock);
        for (size_t i = 0; i < n_seen; i++)
                if (strncmp(seen[i], prefix, strlen(prefix)) == 0 && (!contains || strstr(seen[i], contains)))
                        n++;
        pthread_mutex_unlock(&lock);
        return n;
}

/* ---- the provider ---- */

typedef struct FakeStore {
        Objstore os;
        bool pending;           /* credentials being fetched */
        unsigned requests;
} FakeStore;

static int fake_setup(Objstore *os) {
        os->prefix = strdup("root/");
        return os->prefix ? 0 : -ENOMEM;
}

static void fake_close(Objstore *os) {
}

static int fake_auth(Objstore *os, ObjstoreOp *op) {
        return op->started || !((FakeStore *) os)->pending;
}

static int fake_request(Objstore *os, const ObjstoreRequestArgs *a, HttpRequest **ret, unsigned *ret_gen) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *url = NULL;
        int r;

        if (asprintf(&url, "http://127.0.0.1:%d/bkt/%s%s%s", port, a->key ?: "", a->query ? "?" : "", a->query ?: "") < 0)
                return -ENOMEM;
        r = objstore_request_new(os, a->method, url, &req);
        STRV_FOREACH(h, a->headers)
                if (r >= 0)
                        r = http_request_add_header(req, "%s", *h);
        if (r < 0)
                return r;
        ((FakeStore *) os)->requests++;
        *ret_gen = 0;
        *ret = TAKE_PTR(req);
        return 0;
}

static int fake_error_to_errno(const char *code, const char *message, long status) {
        return s3_error_to_errno(code, status);
}

static const ObjstoreProvider fake_provider = {
        .name = "Fake",
        .what = OBJSTORE_WHAT("put", "get", "list", "remove", "begin", "part", "commit", "abort"),
        .size = sizeof(FakeStore),
        .meta_sha256_header = "x-fake-meta-sha256",
        .create_only_header = "If-None-Match: *",
        .open = fake_setup,
        .close = fake_close,
        .auth = fake_auth,
        .request = fake_request,
        .error_to_errno = fake_error_to_errno,
        .mp_begin_query = "uploads",
        OBJSTORE_S3XML_HOOKS,
};

static const StoreVTable fake_vtable = {
        .scheme = "fake",
        .min_part_size = 1,
        .max_part_size = 1024,
        .max_parts = 100,
        .close = objstore_close,
        OBJSTORE_VTABLE_OPS,
};

typedef struct Harness {
        sd_event *event;
        CurlGlue *glue;
        Config config;
        Store store;
        FakeStore *fake;
} Harness;

static void harness_open(Harness *h, unsigned concurrency) {
        *h = (Harness) {};
        assert_int_equal(sd_event_new(&h->event), 0);
        assert_int_equal(curl_glue_new(&h->glue, h->event, http_on_curl_finished), 0);
        h->store = (Store) { .event = h->event, .glue = h->glue, .config = &h->config, .vt = &fake_vtable,
                             .concurrency = concurrency };
        assert_int_equal(objstore_open(&h->store, &fake_provider, &h->store.data), 0);
        h->fake = h->store.data;
        pthread_mutex_lock(&lock);
        n_seen = 0;
        parts_max = 0;
        pthread_mutex_unlock(&lock);
}

static void harness_close(Harness *h) {
        objstore_cancel_all(&h->store);
        objstore_close(h->store.data);
        curl_glue_free(h->glue);
        sd_event_unref(h->event);
}

typedef struct Result {
        unsigned done;
        int error;
        StoreObject *objects;
        size_t n;
} Result;

static void on_done(Store *s, int error, void *userdata) {
        Result *res = userdata;

        res->done++;
        res->error = error;
}

static void on_swept(Store *s, int error, uint64_t aborted, void *userdata) {
        Result *res = userdata;

        res->done++;
        res->error = error;
        res->n = (size_t) aborted;
}

static void on_listed(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        Result *res = userdata;

        res->done++;
        res->error = error;
        res->objects = objects;
        res->n = n;
}

static void run_until(Harness *h, Result *res) {
        for (unsigned i = 0; res->done == 0; i++) {
                assert_true(i < 1000);
                assert_true(sd_event_run(h->event, 100 * USEC_PER_MSEC) >= 0);
        }
}

static void run_a_while(Harness *h) {
        for (unsigned i = 0; i < 5; i++)
                assert_true(sd_event_run(h->event, 20 * USEC_PER_MSEC) >= 0);
}

/* ---- tests ---- */

static void test_waits_for_credentials(void **state) {
        Harness h;
        Result res = {}, res2 = {};

        harness_open(&h, 2);
        h.fake->pending = true;
        assert_int_equal(objstore_remove(&h.store, "k", on_done, &res), 0);
        run_a_while(&h);
        assert_int_equal(res.done, 0);
        assert_int_equal(h.fake->requests, 0);
        h.fake->pending = false;
        objstore_auth_ready(&h.fake->os, 0);
        run_until(&h, &res);
        assert_int_equal(res.error, 0);
        assert_int_equal(seen_count("DELETE /bkt/root/k", NULL), 1);

        /* Credentials that will not come fail the waiting operation, without a request. */
        h.fake->pending = true;
        assert_int_equal(objstore_remove(&h.store, "k2", on_done, &res2), 0);
        objstore_auth_ready(&h.fake->os, -EACCES);
        assert_int_equal(res2.done, 1);
        assert_int_equal(res2.error, -EACCES);
        assert_int_equal(h.fake->requests, 1);
        harness_close(&h);
}

static void test_multipart_bounded_and_committed(void **state) {
        static const char data[] = "0123456789abcdef";
        Harness h;
        Result res = {};
        StorePut p = { .key = "big", .fd = -1, .buf = data, .len = 16, .part_size = 3, .n_parts = 6 };
        size_t i;

        harness_open(&h, 2);
        assert_int_equal(objstore_put(&h.store, &p, on_done, &res), 0);
        run_until(&h, &res);
        assert_int_equal(res.error, 0);
        assert_int_equal(seen_count("POST /bkt/root/big?uploads", NULL), 1);
        assert_int_equal(seen_count("PUT /bkt/root/big?partNumber=", "&uploadId=U1"), 6);
        assert_true(parts_max >= 1 && parts_max <= 2);
        assert_int_equal(seen_count("POST /bkt/root/big?uploadId=U1", NULL), 1);
        for (i = 0; i < n_seen && strcmp(seen[i], "POST /bkt/root/big?uploadId=U1") != 0; i++)
                ;
        assert_non_null(strstr(seen_body[i], "<PartNumber>6</PartNumber><ETag>&quot;e6&quot;</ETag>"));
        assert_int_equal(seen_count("DELETE", NULL), 0);
        harness_close(&h);
}

static void test_failed_part_aborts(void **state) {
        Harness h;
        Result res = {};
        StorePut p = { .key = "fail", .fd = -1, .buf = "0123456789", .len = 10, .part_size = 2, .n_parts = 5 };

        harness_open(&h, 1);
        assert_int_equal(objstore_put(&h.store, &p, on_done, &res), 0);
        run_until(&h, &res);
        assert_int_equal(res.error, -EINVAL); /* EntityTooSmall */
        assert_int_equal(seen_count("PUT /bkt/root/fail?partNumber=", NULL), 3);
        assert_int_equal(seen_count("DELETE /bkt/root/fail?uploadId=U1", NULL), 1);
        assert_int_equal(seen_count("POST /bkt/root/fail?uploadId=", NULL), 0);
        harness_close(&h);
}

static void test_list_pages(void **state) {
        Harness h;
        Result res = {}, res2 = {};

        harness_open(&h, 2);
        assert_int_equal(objstore_list(&h.store, "l/", on_listed, &res), 0);
        run_until(&h, &res);
        assert_int_equal(res.error, 0);
        assert_int_equal(res.n, 2); /* "elsewhere/x" is not ours */
        assert_string_equal(res.objects[0].key, "l/a");
        assert_int_equal(res.objects[0].size, 1);
        assert_string_equal(res.objects[1].key, "l/b");
        assert_int_equal(seen_count("GET /bkt/?", "continuation-token=t2"), 1);
        store_objects_free(res.objects, res.n);

        assert_int_equal(objstore_list(&h.store, "loop/", on_listed, &res2), 0);
        run_until(&h, &res2);
        assert_int_equal(res2.error, -EBADMSG);
        assert_int_equal(seen_count("GET /bkt/?", "loop"), 2);
        harness_close(&h);
}

static void test_ranged_get(void **state) {
        char path[] = "/tmp/test-objstore-XXXXXX", buf[16] = "";
        Harness h;
        Result res = {};
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(pwrite(fd, "........", 8, 0), 8);
        harness_open(&h, 2);
        assert_int_equal(objstore_get(&h.store, "obj", 3, 4, fd, 2, on_done, &res), 0);
        run_until(&h, &res);
        assert_int_equal(res.error, 0);
        assert_int_equal(pread(fd, buf, sizeof(buf) - 1, 0), 8);
        assert_string_equal(buf, "..3456..");
        harness_close(&h);
        close(fd);
}

static void test_cancel_all(void **state) {
        Harness h;
        Result res = {};
        StorePut p = { .key = "c", .fd = -1, .buf = "0123456789", .len = 10, .part_size = 2, .n_parts = 5 };

        harness_open(&h, 2);
        assert_int_equal(objstore_put(&h.store, &p, on_done, &res), 0);
        assert_int_equal(objstore_remove(&h.store, "d", on_done, &res), 0);
        objstore_cancel_all(&h.store);
        assert_null(h.fake->os.ops);
        run_a_while(&h);
        assert_int_equal(res.done, 0);
        harness_close(&h);
}

static usec_t cutoff(void) {
        usec_t t;

        assert_int_equal(parse_rfc3339("2024-06-01T00:00:00Z", &t), 0);
        return t;
}

static void test_sweep_uploads(void **state) {
        Harness h;
        Result res = {};

        harness_open(&h, 2);
        assert_int_equal(objstore_sweep_uploads(&h.store, "sw/", cutoff(), on_swept, &res), 0);
        assert_int_equal(res.done, 0); /* never from within the call */
        run_until(&h, &res);
        assert_int_equal(res.error, 0);
        assert_int_equal(res.n, 2); /* a and c; "gone" was not there any more */
        /* Both pages, the second from the first's markers. */
        assert_int_equal(seen_count("GET /bkt/?prefix=root%2Fsw%2F&uploads=", NULL), 1);
        assert_int_equal(seen_count("GET /bkt/?key-marker=root%2Fsw%2Fb&prefix=root%2Fsw%2F&upload-id-marker=Ub1&uploads=",
                                    NULL), 1);
        /* Aborted: what is older than the cutoff, under the prefix, whatever its page. */
        assert_int_equal(seen_count("DELETE /bkt/root/sw/a?uploadId=Uold-a", NULL), 1);
        assert_int_equal(seen_count("DELETE /bkt/root/sw/c?uploadId=U%2Bc%2F2", NULL), 1);
        assert_int_equal(seen_count("DELETE /bkt/root/sw/gone?uploadId=Ug", NULL), 1);
        /* Kept: younger, of unknown age, initiated at the cutoff itself, outside the root. */
        assert_int_equal(seen_count("DELETE", NULL), 3);
        assert_int_equal(seen_count("DELETE /bkt/root/sw/b", NULL), 0);
        assert_int_equal(seen_count("DELETE /bkt/root/sw/d", NULL), 0);
        assert_int_equal(seen_count("DELETE /bkt/root/sw/e", NULL), 0);
        assert_int_equal(seen_count("DELETE /bkt/elsewhere", NULL), 0);
        harness_close(&h);
}

static void test_sweep_uploads_fails(void **state) {
        Harness h;
        Result res = {}, res2 = {};

        harness_open(&h, 2);
        /* A refused abort ends the sweep with its error; the rest is left alone. */
        assert_int_equal(objstore_sweep_uploads(&h.store, "deny/", cutoff(), on_swept, &res), 0);
        run_until(&h, &res);
        assert_int_equal(res.error, -EACCES);
        assert_int_equal(res.n, 0);
        assert_int_equal(seen_count("DELETE /bkt/root/deny/a?uploadId=Ua", NULL), 1);
        assert_int_equal(seen_count("DELETE /bkt/root/deny/b", NULL), 0);

        /* The same markers again would never end. */
        assert_int_equal(objstore_sweep_uploads(&h.store, "loop/", cutoff(), on_swept, &res2), 0);
        run_until(&h, &res2);
        assert_int_equal(res2.error, -EBADMSG);
        assert_int_equal(seen_count("GET /bkt/?", "loop"), 2);
        harness_close(&h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_waits_for_credentials),
                cmocka_unit_test(test_multipart_bounded_and_committed),
                cmocka_unit_test(test_failed_part_aborts),
                cmocka_unit_test(test_list_pages),
                cmocka_unit_test(test_ranged_get),
                cmocka_unit_test(test_cancel_all),
                cmocka_unit_test(test_sweep_uploads),
                cmocka_unit_test(test_sweep_uploads_fails),
        };
        return cmocka_run_group_tests(tests, server_setup, NULL);
}
