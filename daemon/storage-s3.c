/* SPDX-License-Identifier: MIT */
/* s3:// — Amazon S3 and S3-compatible stores (Ceph RGW, MinIO, GCS interoperability) through
 * libcurl's SigV4 signer (CURLOPT_AWS_SIGV4). URLs and XML live in s3-request.c.
 *
 * Region: storage.region, else $AWS_REGION, else $AWS_DEFAULT_REGION, else "us-east-1".
 * Credentials: storage.credentials_file (INI, [default] aws_access_key_id, aws_secret_access_key,
 * aws_session_token), else $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY/$AWS_SESSION_TOKEN, else the
 * instance role through IMDSv2 (fetched asynchronously; operations queue until it answers, and it
 * is fetched again five minutes before it expires).
 *
 * create_only puts send "If-None-Match: *" (S3 since 2024, RGW). A store that ignores the header
 * would silently overwrite; see S3_HEAD_BEFORE_CREATE below.
 *
 * Test hooks (environment, never needed in production): TRAINSUPD_S3_TEST_MAX_KEYS=N lists in
 * pages of N keys; TRAINSUPD_S3_TEST_CORRUPT_SHA256=1 sends a wrong x-amz-content-sha256. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "cloud-aws.h"
#include "http.h"
#include "log.h"
#include "s3-request.h"
#include "storage.h"
#include "sha256.h"
#include "strv.h"

static inline void fclosep_s3(FILE **f) {
        if (*f)
                (void) fclose(*f);
}

#define S3_RETRY_ATTEMPTS 5U
#define S3_RETRY_BASE_USEC (200 * USEC_PER_MSEC)
#define S3_RETRY_MAX_USEC (10 * USEC_PER_SEC)
#define S3_CONNECT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define S3_MIN_RATE (256U * 1024U)              /* bytes/s assumed for a transfer's timeout */
#define S3_LIST_MAX_OBJECTS 10000000U
#define S3_CREDS_REFRESH_USEC (5 * 60 * USEC_PER_SEC)
#define S3_COMPLETE_ATTEMPTS 3U
#define S3_IMDS_DEFAULT "http://169.254.169.254"

typedef enum S3OpKind {
        S3_OP_PUT,
        S3_OP_GET,
        S3_OP_GET_DATA,
        S3_OP_LIST,
        S3_OP_REMOVE,
} S3OpKind;

typedef struct S3Store S3Store;
typedef struct S3Op S3Op;

struct S3Op {
        S3Store *s3;
        S3Op *next, *prev;
        S3OpKind kind;
        bool waiting;           /* for credentials */
        StoreDone done;
        StoreDataDone data_done;
        StoreListDone list_done;
        void *userdata;
        char *key;              /* the full object key (prefix included) */
        HttpRequest *req;       /* the one request in flight besides the parts */

        /* put */
        int fd;
        uint64_t offset, len, part_size;
        void *buf;
        char *sha256;
        char **part_sha256;
        size_t n_parts;
        bool create_only;
        char *content_type;
        char *upload_id;
        HttpRequest **parts;
        struct S3Part *pctx;
        char **etags;
        size_t next_part, parts_done;
        unsigned complete_attempts;
        int error;

        /* get */
        int out_fd;
        uint64_t out_offset, written;
        unsigned attempt_seen;
        size_t max;

        /* list */
        char *list_prefix;
        char *token;
        StoreObject *objects;
        size_t n_objects;
};

struct S3Store {
        Store *store;
        char *bucket, *prefix, *endpoint, *region;
        char *key_id, *secret, *token;
        usec_t expiration;      /* CLOCK_REALTIME; USEC_INFINITY for static keys */
        bool from_role;
        bool creds_pending;
        int creds_error;
        HttpRequest *imds;
        unsigned imds_step;
        char *imds_token;
        char *imds_token_role;
        S3Op *ops;
        unsigned test_max_keys;
        bool test_corrupt_sha256;
};

static int s3_op_begin(S3Op *op);
static int s3_creds_refresh(S3Store *s3);

/* ---- ops bookkeeping ---- */

static void s3_op_drop_req(S3Op *op) {
        op->req = http_request_free(op->req);
}

static void s3_op_drop_part(S3Op *op, size_t i) {
        op->parts[i] = http_request_free(op->parts[i]);
}

static void s3_op_free(S3Op *op) {
        if (!op)
                return;
        s3_op_drop_req(op);
        for (size_t i = 0; op->parts && i < op->n_parts; i++)
                s3_op_drop_part(op, i);
        free(op->parts);
        free(op->pctx);
        for (size_t i = 0; op->etags && i < op->n_parts; i++)
                free(op->etags[i]);
        free(op->etags);
        strv_free(op->part_sha256);
        free(op->key);
        free(op->buf);
        free(op->sha256);
        free(op->content_type);
        free(op->upload_id);
        free(op->list_prefix);
        free(op->token);
        store_objects_free(op->objects, op->n_objects);
        free(op);
}

static void s3_op_unlink(S3Op *op) {
        if (op->prev)
                op->prev->next = op->next;
        else if (op->s3->ops == op)
                op->s3->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        op->next = op->prev = NULL;
}

static int s3_op_new(S3Store *s3, S3OpKind kind, const char *key, S3Op **ret) {
        S3Op *op = calloc(1, sizeof(S3Op));

        if (!op)
                return -ENOMEM;
        *op = (S3Op) { .s3 = s3, .kind = kind, .fd = -EBADF, .out_fd = -EBADF };
        if (key && asprintf(&op->key, "%s%s", s3->prefix, key) < 0) {
                free(op);
                return -ENOMEM;
        }
        *ret = op;
        return 0;
}

static void s3_op_finish(S3Op *op, int error) {
        Store *s = op->s3->store;

        s3_op_unlink(op);
        switch (op->kind) {
        case S3_OP_GET_DATA: {
                char *data = NULL;
                size_t len = 0;

                if (error == 0) {
                        const char *body = http_request_body(op->req, &len);
                        data = malloc(len + 1);
                        if (data) {
                                memcpy(data, body, len);
                                data[len] = 0;
                        } else
                                error = -ENOMEM;
                }
                op->data_done(s, error, error == 0 ? data : NULL, error == 0 ? len : 0, op->userdata);
                break;
        }
        case S3_OP_LIST:
                if (error == 0) {
                        op->list_done(s, 0, TAKE_PTR(op->objects), op->n_objects, op->userdata);
                        op->n_objects = 0;
                } else
                        op->list_done(s, error, NULL, 0, op->userdata);
                break;
        default:
                op->done(s, error, op->userdata);
        }
        s3_op_free(op);
}

/* Links op in; starts it now or once the credentials are there. On failure op is freed and no
 * callback is called. */
static int s3_op_submit(S3Op *op) {
        S3Store *s3 = op->s3;
        int r;

        if (s3->creds_error < 0 && !s3->creds_pending) {
                r = s3->creds_error;
                s3_op_free(op);
                return r;
        }
        if (s3->from_role && !s3->creds_pending && s3->expiration != USEC_INFINITY &&
            now_usec(CLOCK_REALTIME) + S3_CREDS_REFRESH_USEC >= s3->expiration) {
                r = s3_creds_refresh(s3);
                if (r < 0)
                        log_debug_errno(r, "Refreshing the S3 role credentials failed to start: %m");
        }
        op->next = s3->ops;
        if (s3->ops)
                s3->ops->prev = op;
        s3->ops = op;
        op->waiting = s3->creds_pending;
        if (op->waiting)
                return 0;
        r = s3_op_begin(op);
        if (r < 0) {
                s3_op_unlink(op);
                s3_op_free(op);
        }
        return r;
}

/* ---- requests ---- */

static usec_t s3_transfer_timeout(uint64_t bytes) {
        return 60 * USEC_PER_SEC + bytes / S3_MIN_RATE * USEC_PER_SEC;
}


static int s3_request_new(S3Store *s3, const char *method, const char *key, const char *query,
                          const char *payload_sha256, HttpRequest **ret) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *url = NULL, *provider = NULL;
        const char *ca = s3->store->config->storage_ca_file;
        char sha[65];
        CURL *c;
        int r;

        r = s3_url(s3->endpoint, s3->region, s3->bucket, key, query, &url);
        if (r < 0)
                return r;
        r = http_request_new(&req, s3->store->glue, method, url);
        if (r < 0)
                return r;
        snprintf(sha, sizeof(sha), "%s", payload_sha256);
        if (s3->test_corrupt_sha256 && strlen(sha) == 64)
                sha[0] = sha[0] == '0' ? '1' : '0';
        r = http_request_add_header(req, "x-amz-content-sha256: %s", sha);
        if (r >= 0 && s3->token)
                r = http_request_add_header(req, "x-amz-security-token: %s", s3->token);
        if (r >= 0 && ca)
                r = http_request_set_ca_file(req, ca);
        if (r < 0)
                return r;
        if (asprintf(&provider, "aws:amz:%s:s3", s3->region) < 0)
                return -ENOMEM;
        r = http_request_set_aws_sigv4(req, provider, s3->key_id, s3->secret);
        if (r < 0)
                return r;
        c = http_request_get_curl(req);
        if (curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK)
                return -EIO;
        http_request_set_retry(req, S3_RETRY_ATTEMPTS, S3_RETRY_BASE_USEC, S3_RETRY_MAX_USEC);
        http_request_set_timeouts(req, S3_CONNECT_TIMEOUT_USEC, s3_transfer_timeout(0));
        *ret = TAKE_PTR(req);
        return 0;
}

/* The errno of a finished request: the <Error> Code when the body has one. Logs the S3 error code
 * and message (never anything secret) at debug level. */
static int s3_request_error(HttpRequest *req, int error, const char *what) {
        _cleanup_free_ char *code = NULL, *message = NULL;
        const char *body;
        size_t len;

        if (error == 0)
                return 0;
        body = http_request_body(req, &len);
        if (len > 0 && s3_parse_error(body, len, &code, &message) == 0) {
                error = s3_error_to_errno(code, http_request_status(req));
                log_debug("S3 %s failed: HTTP %ld %s: %s", what, http_request_status(req), strna(code),
                          strna(message));
        } else
                log_debug_errno(error, "S3 %s failed: HTTP %ld: %m", what, http_request_status(req));
        return error;
}

/* ---- remove ---- */

static void s3_on_removed(HttpRequest *req, int error, void *userdata) {
        S3Op *op = userdata;

        s3_op_finish(op, s3_request_error(req, error, "DELETE"));
}

static int s3_begin_remove(S3Op *op) {
        int r = s3_request_new(op->s3, "DELETE", op->key, NULL, S3_EMPTY_SHA256, &op->req);

        if (r < 0)
                return r;
        http_request_set_accept_status(op->req, 404);
        return http_request_start(op->req, s3_on_removed, op);
}

/* ---- get, get_data ---- */

static int s3_on_get_data(HttpRequest *req, const char *data, size_t len, void *userdata) {
        S3Op *op = userdata;
        uint64_t off;

        if (http_request_attempts(req) != op->attempt_seen) {
                /* A retry starts the body over. */
                op->attempt_seen = http_request_attempts(req);
                op->written = 0;
        }
        if (op->len > 0 && op->written + len > op->len)
                return -EBADMSG;
        off = op->out_offset + op->written;
        while (len > 0) {
                ssize_t n = pwrite(op->out_fd, data, len, (off_t) off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? negative_errno() : -EIO;
                data += n, len -= (size_t) n, off += (uint64_t) n;
                op->written += (uint64_t) n;
                store_report_progress(op->s3->store, (uint64_t) n);
        }
        return 0;
}

static void s3_on_got(HttpRequest *req, int error, void *userdata) {
        S3Op *op = userdata;
        const char *cl;
        uint64_t expect = op->len;

        error = s3_request_error(req, error, "GET");
        if (error == 0 && op->kind == S3_OP_GET && expect == 0) {
                cl = http_request_header(req, "Content-Length");
                if (!cl || sscanf(cl, "%" SCNu64, &expect) != 1)
                        error = -EBADMSG;
        }
        if (error == 0 && op->kind == S3_OP_GET && op->written != expect) {
                log_debug("S3 GET of %s returned %" PRIu64 " bytes, expected %" PRIu64, op->key, op->written, expect);
                error = -EBADMSG;
        }
        s3_op_finish(op, error);
}

static int s3_begin_get(S3Op *op) {
        int r = s3_request_new(op->s3, "GET", op->key, NULL, S3_EMPTY_SHA256, &op->req);

        if (r < 0)
                return r;
        if (op->kind == S3_OP_GET_DATA) {
                http_request_set_max_response(op->req, op->max);
                return http_request_start(op->req, s3_on_got, op);
        }
        if (op->len > 0)
                r = http_request_add_header(op->req, "Range: bytes=%" PRIu64 "-%" PRIu64, op->offset,
                                            op->offset + op->len - 1);
        else if (op->offset > 0)
                r = http_request_add_header(op->req, "Range: bytes=%" PRIu64 "-", op->offset);
        if (r < 0)
                return r;
        http_request_set_timeouts(op->req, S3_CONNECT_TIMEOUT_USEC,
                                  op->len > 0 ? s3_transfer_timeout(op->len) : USEC_INFINITY);
        http_request_set_stream(op->req, s3_on_get_data, op);
        return http_request_start(op->req, s3_on_got, op);
}

/* ---- list ---- */

static int s3_list_next(S3Op *op);

static int s3_object_cmp(const void *a, const void *b) {
        return strcmp(((const StoreObject *) a)->key, ((const StoreObject *) b)->key);
}

static int s3_list_take(S3Op *op, S3ListPage *page) {
        size_t plen = strlen(op->s3->prefix);
        StoreObject *o;

        if (op->n_objects + page->n_objects > S3_LIST_MAX_OBJECTS)
                return -EFBIG;
        o = realloc(op->objects, (op->n_objects + page->n_objects + 1) * sizeof(StoreObject));
        if (!o)
                return -ENOMEM;
        op->objects = o;
        for (size_t i = 0; i < page->n_objects; i++) {
                S3Object *so = &page->objects[i];

                if (!strneq(so->key, op->s3->prefix, plen) || !so->key[plen])
                        continue; /* not ours: never hand out a key outside the root */
                o[op->n_objects++] = (StoreObject) {
                        .key = strdup(so->key + plen),
                        .size = so->size,
                        .modified = so->modified,
                };
                if (!o[op->n_objects - 1].key)
                        return -ENOMEM;
        }
        return 0;
}

static void s3_on_listed(HttpRequest *req, int error, void *userdata) {
        _cleanup_(s3_list_page_done) S3ListPage page = {};
        S3Op *op = userdata;
        const char *body;
        size_t len;

        error = s3_request_error(req, error, "ListObjectsV2");
        if (error == 0) {
                body = http_request_body(req, &len);
                error = s3_parse_list(body, len, &page);
        }
        if (error == 0)
                error = s3_list_take(op, &page);
        if (error == 0 && page.truncated) {
                free(op->token);
                op->token = TAKE_PTR(page.next_token);
                error = s3_list_next(op);
                if (error == 0)
                        return;
        }
        if (error == 0 && op->n_objects > 1)
                qsort(op->objects, op->n_objects, sizeof(StoreObject), s3_object_cmp);
        s3_op_finish(op, error);
}

static int s3_list_next(S3Op *op) {
        _cleanup_free_ char *query = NULL;
        int r;

        r = s3_list_query(op->list_prefix, op->token, op->s3->test_max_keys, &query);
        if (r < 0)
                return r;
        s3_op_drop_req(op);
        r = s3_request_new(op->s3, "GET", NULL, query, S3_EMPTY_SHA256, &op->req);
        if (r < 0)
                return r;
        http_request_set_max_response(op->req, S3_XML_MAX);
        return http_request_start(op->req, s3_on_listed, op);
}

/* ---- put ---- */

struct S3Part {
        S3Op *op;
        size_t i;
};
typedef struct S3Part S3Part;

static int s3_put_headers(S3Op *op) {
        int r = http_request_add_header(op->req, "Content-Type: %s", op->content_type ?: "application/octet-stream");

        if (r >= 0 && op->sha256)
                r = http_request_add_header(op->req, "x-amz-meta-sha256: %s", op->sha256);
        return r;
}

static void s3_on_put(HttpRequest *req, int error, void *userdata) {
        S3Op *op = userdata;

        error = s3_request_error(req, error, "PUT");
        if (error == 0)
                store_report_progress(op->s3->store, op->len);
        s3_op_finish(op, error);
}

static int s3_put_single(S3Op *op) {
        int r;

        r = s3_request_new(op->s3, "PUT", op->key, NULL, op->sha256 ?: "UNSIGNED-PAYLOAD", &op->req);
        if (r < 0)
                return r;
        r = s3_put_headers(op);
        /* Conditional create: S3 and RGW answer 412 PreconditionFailed when the key exists. */
        if (r >= 0 && op->create_only)
                r = http_request_add_header(op->req, "If-None-Match: *");
        if (r < 0)
                return r;
        if (op->fd >= 0)
                http_request_set_body_fd(op->req, op->fd, op->offset, op->len);
        else {
                r = http_request_set_body(op->req, op->buf, (size_t) op->len);
                if (r < 0)
                        return r;
        }
        http_request_set_timeouts(op->req, S3_CONNECT_TIMEOUT_USEC, s3_transfer_timeout(op->len));
        return http_request_start(op->req, s3_on_put, op);
}

static void s3_on_aborted(HttpRequest *req, int error, void *userdata) {
        S3Op *op = userdata;

        error = s3_request_error(req, error, "AbortMultipartUpload");
        if (error < 0)
                log_warning_errno(error, "Aborting the multipart upload of %s failed, a lifecycle rule must clean it up: %m",
                                  op->key);
        s3_op_finish(op, op->error);
}

/* Stops the parts still running and aborts the upload; finishes op with op->error. */
static void s3_mp_fail(S3Op *op, int error) {
        _cleanup_free_ char *query = NULL;
        int r;

        if (op->error == 0)
                op->error = error;
        for (size_t i = 0; i < op->n_parts; i++)
                s3_op_drop_part(op, i);
        s3_op_drop_req(op);
        if (!op->upload_id) {
                s3_op_finish(op, op->error);
                return;
        }
        r = s3_upload_id_query(op->upload_id, &query);
        if (r >= 0)
                r = s3_request_new(op->s3, "DELETE", op->key, query, S3_EMPTY_SHA256, &op->req);
        if (r >= 0) {
                http_request_set_accept_status(op->req, 404);
                r = http_request_start(op->req, s3_on_aborted, op);
        }
        if (r < 0) {
                log_warning_errno(r, "Cannot abort the multipart upload of %s: %m", op->key);
                s3_op_finish(op, op->error);
        }
}

static int s3_mp_complete(S3Op *op);

static void s3_on_completed(HttpRequest *req, int error, void *userdata) {
        S3Op *op = userdata;
        const char *body;
        size_t len;

        error = s3_request_error(req, error, "CompleteMultipartUpload");
        if (error == 0) {
                /* A 200 can still carry an <Error>: the upload is then not complete. */
                body = http_request_body(req, &len);
                error = s3_parse_complete(body, len);
        }
        if (error < 0 && http_error_retryable(error) && op->complete_attempts < S3_COMPLETE_ATTEMPTS) {
                error = s3_mp_complete(op);
                if (error == 0)
                        return;
        }
        if (error < 0)
                s3_mp_fail(op, error);
        else
                s3_op_finish(op, 0);
}

static int s3_mp_complete(S3Op *op) {
        _cleanup_free_ char *query = NULL, *body = NULL;
        char sha[65];
        int r;

        op->complete_attempts++;
        r = s3_complete_body(op->etags, op->n_parts, &body);
        if (r >= 0)
                r = s3_payload_sha256(body, strlen(body), sha);
        if (r >= 0)
                r = s3_upload_id_query(op->upload_id, &query);
        if (r < 0)
                return r;
        s3_op_drop_req(op);
        r = s3_request_new(op->s3, "POST", op->key, query, sha, &op->req);
        if (r >= 0)
                r = http_request_add_header(op->req, "Content-Type: application/xml");
        if (r >= 0)
                r = http_request_set_body(op->req, body, strlen(body));
        if (r < 0)
                return r;
        /* Completing a large object can take minutes. */
        http_request_set_timeouts(op->req, S3_CONNECT_TIMEOUT_USEC, 10 * 60 * USEC_PER_SEC);
        return http_request_start(op->req, s3_on_completed, op);
}

static int s3_mp_pump(S3Op *op);

static void s3_on_part(HttpRequest *req, int error, void *userdata) {
        S3Part *part = userdata;
        S3Op *op = part->op;
        size_t i = part->i;
        const char *etag;

        error = s3_request_error(req, error, "UploadPart");
        if (error == 0) {
                etag = http_request_header(req, "ETag");
                if (isempty(etag))
                        error = -EBADMSG;
                else if (!(op->etags[i] = strdup(etag)))
                        error = -ENOMEM;
        }
        s3_op_drop_part(op, i);
        if (error < 0) {
                s3_mp_fail(op, error);
                return;
        }
        op->parts_done++;
        store_report_progress(op->s3->store, MIN(op->part_size, op->len - (uint64_t) i * op->part_size));
        error = s3_mp_pump(op);
        if (error < 0)
                s3_mp_fail(op, error);
}

static int s3_mp_start_part(S3Op *op, size_t i) {
        _cleanup_free_ char *query = NULL;
        S3Part *part;
        uint64_t off = (uint64_t) i * op->part_size, len = MIN(op->part_size, op->len - off);
        HttpRequest *req = NULL;
        int r;

        part = &op->pctx[i];
        *part = (S3Part) { .op = op, .i = i };
        r = s3_part_query((unsigned) i + 1, op->upload_id, &query);
        if (r >= 0)
                r = s3_request_new(op->s3, "PUT", op->key, query, op->part_sha256[i], &req);
        if (r < 0)
                return r;
        op->parts[i] = req;
        if (op->fd >= 0)
                http_request_set_body_fd(req, op->fd, op->offset + off, len);
        else {
                r = http_request_set_body(req, (const uint8_t *) op->buf + off, (size_t) len);
                if (r < 0)
                        return r;
        }
        http_request_set_timeouts(req, S3_CONNECT_TIMEOUT_USEC, s3_transfer_timeout(len));
        return http_request_start(req, s3_on_part, part);
}

/* Keeps at most storage.concurrency parts in flight; completes once all are there. */
static int s3_mp_pump(S3Op *op) {
        int r;

        while (op->next_part < op->n_parts && op->next_part - op->parts_done < op->s3->store->concurrency) {
                r = s3_mp_start_part(op, op->next_part);
                if (r < 0)
                        return r;
                op->next_part++;
        }
        if (op->parts_done == op->n_parts)
                return s3_mp_complete(op);
        return 0;
}

static void s3_on_initiated(HttpRequest *req, int error, void *userdata) {
        S3Op *op = userdata;
        const char *body;
        size_t len;

        error = s3_request_error(req, error, "CreateMultipartUpload");
        if (error == 0) {
                body = http_request_body(req, &len);
                error = s3_parse_initiate(body, len, &op->upload_id);
        }
        if (error == 0)
                error = s3_mp_pump(op);
        if (error < 0)
                s3_mp_fail(op, error);
}

static int s3_mp_initiate(S3Op *op) {
        int r;

        op->parts = calloc(op->n_parts, sizeof(HttpRequest *));
        op->etags = calloc(op->n_parts, sizeof(char *));
        op->pctx = calloc(op->n_parts, sizeof(S3Part));
        if (!op->parts || !op->etags || !op->pctx)
                return -ENOMEM;
        r = s3_request_new(op->s3, "POST", op->key, "uploads=", S3_EMPTY_SHA256, &op->req);
        if (r >= 0)
                r = s3_put_headers(op);
        if (r >= 0)
                r = http_request_set_body(op->req, NULL, 0);
        if (r < 0)
                return r;
        return http_request_start(op->req, s3_on_initiated, op);
}

/* ---- credentials ---- */

static void s3_creds_clear(S3Store *s3) {
        if (s3->secret)
                explicit_bzero(s3->secret, strlen(s3->secret));
        if (s3->token)
                explicit_bzero(s3->token, strlen(s3->token));
        s3->key_id = mfree(s3->key_id);
        s3->secret = mfree(s3->secret);
        s3->token = mfree(s3->token);
}

static int s3_creds_set(S3Store *s3, const char *key_id, const char *secret, const char *token, usec_t expiration) {
        if (isempty(key_id) || isempty(secret))
                return -ENOKEY;
        if (strpbrk(key_id, "\r\n") || strpbrk(secret, "\r\n") || (token && strpbrk(token, "\r\n")))
                return -EINVAL;
        s3_creds_clear(s3);
        s3->key_id = strdup(key_id);
        s3->secret = strdup(secret);
        s3->token = isempty(token) ? NULL : strdup(token);
        s3->expiration = expiration;
        if (!s3->key_id || !s3->secret || (!isempty(token) && !s3->token))
                return -ENOMEM;
        return 0;
}

static char *s3_strip(char *s) {
        size_t n;

        s += strspn(s, " \t");
        n = strlen(s);
        while (n > 0 && strchr(" \t\r\n", s[n - 1]))
                s[--n] = 0;
        return s;
}

/* ~/.aws/credentials style: [profile] then key = value lines; '#' and ';' start comments. The
 * profile is $AWS_PROFILE or "default". */
static int s3_creds_from_file(S3Store *s3, const char *path) {
        _cleanup_free_ char *line = NULL, *id = NULL, *secret = NULL, *token = NULL;
        const char *profile = getenv("AWS_PROFILE") ?: "default";
        _cleanup_(fclosep_s3) FILE *f = NULL;
        bool in = false;
        size_t cap = 0;
        int r;

        f = fopen(path, "re");
        if (!f)
                return log_error_errno(negative_errno(), "Cannot read storage.credentials_file %s: %m", path);
        while (getline(&line, &cap, f) >= 0) {
                char *l = s3_strip(line), *eq, *k, *v, **dst = NULL;

                if (*l == '#' || *l == ';' || !*l)
                        continue;
                if (*l == '[') {
                        size_t n = strlen(l);
                        in = n >= 2 && l[n - 1] == ']' && strlen(profile) == n - 2 && strneq(l + 1, profile, n - 2);
                        continue;
                }
                eq = strchr(l, '=');
                if (!in || !eq)
                        continue;
                *eq = 0;
                k = s3_strip(l);
                v = s3_strip(eq + 1);
                if (streq(k, "aws_access_key_id"))
                        dst = &id;
                else if (streq(k, "aws_secret_access_key"))
                        dst = &secret;
                else if (streq(k, "aws_session_token"))
                        dst = &token;
                if (dst) {
                        free(*dst);
                        *dst = strdup(v);
                        if (!*dst)
                                return -ENOMEM;
                }
        }
        r = s3_creds_set(s3, id, secret, token, USEC_INFINITY);
        if (secret)
                explicit_bzero(secret, strlen(secret));
        if (token)
                explicit_bzero(token, strlen(token));
        if (line)
                explicit_bzero(line, cap);
        if (r == -ENOKEY)
                return log_error_errno(r, "storage.credentials_file %s has no aws_access_key_id/aws_secret_access_key in [%s].",
                                       path, profile);
        return r;
}

static const char *s3_imds_base(S3Store *s3) {
        return s3->store->config->cloud_metadata_url ?: S3_IMDS_DEFAULT;
}

static void s3_creds_ready(S3Store *s3, int error) {
        S3Op *op;

        s3->creds_pending = false;
        if (error < 0 && s3->key_id && s3->expiration != USEC_INFINITY && now_usec(CLOCK_REALTIME) < s3->expiration) {
                log_warning_errno(error, "Refreshing the instance role credentials failed, using the current ones: %m");
                error = 0;
        } else if (error < 0)
                log_error_errno(error, "Cannot get S3 credentials from the instance role: %m");
        s3->creds_error = error;
        for (;;) {
                int r;

                for (op = s3->ops; op && !op->waiting; op = op->next)
                        ;
                if (!op)
                        break;
                op->waiting = false;
                r = error < 0 ? error : s3_op_begin(op);
                if (r < 0)
                        s3_op_finish(op, r);
        }
}

static int s3_imds_step(S3Store *s3);

static void s3_on_imds(HttpRequest *req, int error, void *userdata) {
        S3Store *s3 = userdata;
        AwsCredentials c = {};
        const char *body;
        char *role = NULL;
        size_t len;

        body = http_request_body(req, &len);
        if (error == 0 && s3->imds_step == 0) {
                s3->imds_token = strndup(body, len);
                error = s3->imds_token ? 0 : -ENOMEM;
        } else if (error == 0 && s3->imds_step == 1) {
                error = aws_parse_role_list(body, len, &role);
                free(s3->imds_token_role);
                s3->imds_token_role = role;
        } else if (error == 0 && s3->imds_step == 2) {
                error = aws_parse_credentials(body, len, &c);
                if (error == 0)
                        error = s3_creds_set(s3, c.access_key_id, c.secret_access_key, c.token, c.expiration);
                aws_credentials_done(&c);
        }
        s3->imds_step++;
        if (error == 0 && s3->imds_step < 3)
                error = s3_imds_step(s3);
        if (error < 0 || s3->imds_step >= 3) {
                s3->imds = http_request_free(s3->imds);
                s3_creds_ready(s3, error);
        }
}

static int s3_imds_step(S3Store *s3) {
        _cleanup_free_ char *url = NULL;
        int r;

        if (s3->imds_step == 0)
                r = asprintf(&url, "%s/latest/api/token", s3_imds_base(s3));
        else
                r = asprintf(&url, "%s" AWS_PATH_ROLES "%s", s3_imds_base(s3),
                             s3->imds_step == 2 ? s3->imds_token_role : "");
        if (r < 0)
                return -ENOMEM;
        s3->imds = http_request_free(s3->imds);
        r = http_request_new(&s3->imds, s3->store->glue, s3->imds_step == 0 ? "PUT" : "GET", url);
        if (r < 0)
                return r;
        if (s3->imds_step == 0)
                r = http_request_add_header(s3->imds, "X-aws-ec2-metadata-token-ttl-seconds: 21600");
        else
                r = http_request_add_header(s3->imds, "X-aws-ec2-metadata-token: %s", s3->imds_token);
        if (r < 0)
                return r;
        http_request_set_no_proxy(s3->imds, true);
        http_request_set_max_response(s3->imds, 64 * 1024);
        http_request_set_timeouts(s3->imds, 2 * USEC_PER_SEC, 5 * USEC_PER_SEC);
        http_request_set_retry(s3->imds, 3, 500 * USEC_PER_MSEC, 5 * USEC_PER_SEC);
        return http_request_start(s3->imds, s3_on_imds, s3);
}

/* Starts fetching the instance role's credentials (IMDSv2); operations queue meanwhile. */
static int s3_creds_refresh(S3Store *s3) {
        int r;

        if (s3->creds_pending)
                return 0;
        s3->imds_step = 0;
        s3->imds_token = mfree(s3->imds_token);
        r = s3_imds_step(s3);
        if (r < 0)
                return r;
        s3->creds_pending = true;
        return 0;
}

static int s3_creds_setup(S3Store *s3) {
        const char *file = s3->store->config->storage_credentials_file;
        const char *id = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");

        if (file)
                return s3_creds_from_file(s3, file);
        if (!isempty(id) && !isempty(secret))
                return s3_creds_set(s3, id, secret, getenv("AWS_SESSION_TOKEN"), USEC_INFINITY);
        s3->from_role = true;
        return s3_creds_refresh(s3);
}

/* ---- the vtable ---- */

static int s3_op_begin(S3Op *op) {
        switch (op->kind) {
        case S3_OP_PUT:
                return op->n_parts > 1 ? s3_mp_initiate(op) : s3_put_single(op);
        case S3_OP_GET:
        case S3_OP_GET_DATA:
                return s3_begin_get(op);
        case S3_OP_LIST:
                return s3_list_next(op);
        case S3_OP_REMOVE:
                return s3_begin_remove(op);
        }
        return -EINVAL;
}

static int s3_put_copy(S3Op *op, const StorePut *p) {
        char sha[65];
        int r;

        op->fd = p->fd;
        op->offset = p->offset;
        op->len = p->len;
        op->create_only = p->create_only;
        op->part_size = p->part_size;
        op->n_parts = p->n_parts;
        if (p->content_type && !(op->content_type = strdup(p->content_type)))
                return -ENOMEM;
        if (p->fd < 0) {
                op->buf = malloc(MAX(p->len, 1U));
                if (!op->buf)
                        return -ENOMEM;
                memcpy(op->buf, p->buf ?: "", p->len);
        }
        if (p->sha256)
                op->sha256 = strdup(p->sha256);
        else if (p->fd < 0 && p->n_parts <= 1) {
                r = s3_payload_sha256(op->buf, p->len, sha);
                if (r < 0)
                        return r;
                op->sha256 = strdup(sha);
        }
        if ((p->sha256 || (p->fd < 0 && p->n_parts <= 1)) && !op->sha256)
                return -ENOMEM;
        if (p->n_parts > 1) {
                op->part_sha256 = calloc(p->n_parts + 1, sizeof(char *));
                if (!op->part_sha256)
                        return -ENOMEM;
                for (size_t i = 0; i < p->n_parts; i++)
                        if (!(op->part_sha256[i] = strdup(p->part_sha256[i])))
                                return -ENOMEM;
        }
        return 0;
}

static int s3_put_check(const StorePut *p) {
        if (!store_key_is_valid(p->key) || (p->fd < 0 && !p->buf && p->len > 0))
                return -EINVAL;
        if (p->sha256 && !sha256_hex_valid(p->sha256))
                return -EINVAL;
        if (p->n_parts <= 1)
                return 0;
        if (p->part_size == 0 || !p->part_sha256 || p->n_parts > store_s3_vtable.max_parts ||
            (p->len + p->part_size - 1) / p->part_size != p->n_parts)
                return -EINVAL;
        for (size_t i = 0; i < p->n_parts; i++)
                if (!p->part_sha256[i] || !sha256_hex_valid(p->part_sha256[i]))
                        return -EINVAL;
        return 0;
}

static int s3_put(Store *s, const StorePut *p, StoreDone done, void *userdata) {
        S3Op *op;
        int r;

        r = s3_put_check(p);
        if (r < 0)
                return r;
        r = s3_op_new(s->data, S3_OP_PUT, p->key, &op);
        if (r < 0)
                return r;
        op->done = done;
        op->userdata = userdata;
        r = s3_put_copy(op, p);
        if (r < 0) {
                s3_op_free(op);
                return r;
        }
        return s3_op_submit(op);
}

static int s3_get(Store *s, const char *key, uint64_t offset, uint64_t len, int out_fd, uint64_t out_offset,
                  StoreDone done, void *userdata) {
        S3Op *op;
        int r;

        if (!store_key_is_valid(key) || out_fd < 0 || (len > 0 && offset + len < offset))
                return -EINVAL;
        r = s3_op_new(s->data, S3_OP_GET, key, &op);
        if (r < 0)
                return r;
        *op = (S3Op) { .s3 = op->s3, .kind = op->kind, .key = op->key, .fd = -EBADF, .out_fd = out_fd,
                       .offset = offset, .len = len, .out_offset = out_offset, .done = done, .userdata = userdata };
        return s3_op_submit(op);
}

static int s3_get_data(Store *s, const char *key, size_t max, StoreDataDone done, void *userdata) {
        S3Op *op;
        int r;

        if (!store_key_is_valid(key))
                return -EINVAL;
        r = s3_op_new(s->data, S3_OP_GET_DATA, key, &op);
        if (r < 0)
                return r;
        op->max = max;
        op->data_done = done;
        op->userdata = userdata;
        return s3_op_submit(op);
}

static int s3_list(Store *s, const char *prefix, StoreListDone done, void *userdata) {
        S3Store *s3 = s->data;
        S3Op *op;
        int r;

        if (!prefix || strlen(prefix) > 1024)
                return -EINVAL;
        r = s3_op_new(s3, S3_OP_LIST, NULL, &op);
        if (r < 0)
                return r;
        op->list_done = done;
        op->userdata = userdata;
        if (asprintf(&op->list_prefix, "%s%s", s3->prefix, prefix) < 0) {
                op->list_prefix = NULL;
                s3_op_free(op);
                return -ENOMEM;
        }
        return s3_op_submit(op);
}

static int s3_remove(Store *s, const char *key, StoreDone done, void *userdata) {
        S3Op *op;
        int r;

        if (!store_key_is_valid(key))
                return -EINVAL;
        r = s3_op_new(s->data, S3_OP_REMOVE, key, &op);
        if (r < 0)
                return r;
        op->done = done;
        op->userdata = userdata;
        return s3_op_submit(op);
}

static void s3_cancel_all(Store *s) {
        S3Store *s3 = s->data;

        /* Multipart uploads cut short here stay behind until a lifecycle rule removes them. */
        while (s3->ops) {
                S3Op *op = s3->ops;

                s3_op_unlink(op);
                s3_op_free(op);
        }
        s3->imds = http_request_free(s3->imds);
        s3->creds_pending = false;
}

static void s3_close(void *data) {
        S3Store *s3 = data;

        if (!s3)
                return;
        while (s3->ops) {
                S3Op *op = s3->ops;

                s3_op_unlink(op);
                s3_op_free(op);
        }
        http_request_free(s3->imds);
        s3_creds_clear(s3);
        free(s3->imds_token);
        free(s3->imds_token_role);
        free(s3->bucket);
        free(s3->prefix);
        free(s3->endpoint);
        free(s3->region);
        free(s3);
}

static int s3_open_region(S3Store *s3) {
        const char *r = s3->store->config->storage_region;

        /* Without any setting: us-east-1, which S3 redirects from and RGW/MinIO accept. */
        if (isempty(r))
                r = getenv("AWS_REGION");
        if (isempty(r))
                r = getenv("AWS_DEFAULT_REGION");
        if (isempty(r))
                r = "us-east-1";
        if (strlen(r) > 64 || strpbrk(r, "/?#@:. \t\r\n"))
                return log_error_errno(-EINVAL, "Invalid S3 region \"%s\".", r);
        s3->region = strdup(r);
        return s3->region ? 0 : -ENOMEM;
}

static int s3_open(Store *s, void **ret_data) {
        const char *endpoint = s->config->storage_endpoint, *e;
        S3Store *s3;
        int r;

        s3 = calloc(1, sizeof(S3Store));
        if (!s3)
                return -ENOMEM;
        *s3 = (S3Store) { .store = s, .expiration = USEC_INFINITY };
        r = s3_location_parse(s->location, &s3->bucket, &s3->prefix);
        if (r < 0) {
                log_error("Invalid S3 URL \"%s\": expected s3://BUCKET[/PREFIX].", s->url);
                goto fail;
        }
        if (endpoint) {
                r = s3_endpoint_check(endpoint);
                if (r < 0) {
                        log_error("Invalid storage.endpoint \"%s\": expected http(s)://HOST[:PORT].", endpoint);
                        goto fail;
                }
                s3->endpoint = strdup(endpoint);
                if (!s3->endpoint) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        r = s3_open_region(s3);
        if (r < 0)
                goto fail;
        e = getenv("TRAINSUPD_S3_TEST_MAX_KEYS");
        if (e)
                s3->test_max_keys = (unsigned) strtoul(e, NULL, 10);
        s3->test_corrupt_sha256 = !isempty(getenv("TRAINSUPD_S3_TEST_CORRUPT_SHA256"));
        s->data = s3; /* the role fetch below needs it */
        r = s3_creds_setup(s3);
        if (r < 0)
                goto fail;
        *ret_data = s3;
        return 0;
fail:
        s->data = NULL;
        s3_close(s3);
        return r;
}

const StoreVTable store_s3_vtable = {
        .scheme = "s3",
        .min_part_size = 5ULL * 1024 * 1024,
        .max_part_size = 5ULL * 1024 * 1024 * 1024,
        .max_parts = 10000,
        .open = s3_open,
        .close = s3_close,
        .put = s3_put,
        .get = s3_get,
        .get_data = s3_get_data,
        .list = s3_list,
        .remove = s3_remove,
        .cancel_all = s3_cancel_all,
};
