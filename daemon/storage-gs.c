/* SPDX-License-Identifier: MIT */
/* gs:// — Google Cloud Storage through its XML API (https://storage.googleapis.com/BUCKET/KEY, or
 * storage.endpoint path-style), authenticated with "Authorization: Bearer" and the VM's service
 * account token from the GCE metadata server (cloud-gce.c, gce_fetch_token(); base address
 * cloud.metadata_url or the metadata server's own). The XML API speaks S3's dialect, so URLs, XML
 * and error documents come from s3-request.c.
 *
 * Token: fetched when the store opens; operations queue while a fetch runs. It is fetched again
 * in the background once half its lifetime (at most 5 minutes) is left, and requests wait for a
 * new one once it is about to expire (the last quarter, at most 30 s). A 401 drops the token and
 * the request is made again with a new one, twice at most per operation. Never logged.
 *
 * put: one PUT; create_only sends "x-goog-if-generation-match: 0" (GCS's create-only
 * precondition: 412 when the object exists). The XML API's multipart uploads take no
 * preconditions, so a create_only put is always one PUT (GCS accepts up to 5 TiB in one request).
 * Otherwise n_parts > 1 is an XML multipart upload (POST ?uploads, PUT ?partNumber=N&uploadId=,
 * POST ?uploadId= with <CompleteMultipartUpload>), at most storage.concurrency parts at a time,
 * aborted (DELETE ?uploadId=) on failure. The whole object's SHA-256 goes into x-goog-meta-sha256;
 * GCS itself only checks CRC32C/MD5, so the SHA-256s are not verified by the store.
 *
 * Test hook (environment): TRAINSUPD_GS_TEST_MAX_KEYS=N lists in pages of N keys. */
#include <inttypes.h>
#include <stdio.h>

#include "cloud-gce.h"
#include "http.h"
#include "log.h"
#include "s3-request.h"
#include "sha256.h"
#include "storage.h"

#define GS_RETRY_ATTEMPTS 5U
#define GS_RETRY_BASE_USEC (200 * USEC_PER_MSEC)
#define GS_RETRY_MAX_USEC (10 * USEC_PER_SEC)
#define GS_CONNECT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define GS_MIN_RATE (256U * 1024U)              /* bytes/s assumed for a transfer's timeout */
#define GS_LIST_MAX_OBJECTS 10000000U
#define GS_COMPLETE_ATTEMPTS 3U
#define GS_AUTH_RETRIES 2U                      /* new tokens after a 401, per operation */
#define GS_TOKEN_REFRESH_USEC (5 * 60 * USEC_PER_SEC)
#define GS_TOKEN_SAFETY_USEC (30 * USEC_PER_SEC)
#define GS_TOKEN_MIN_USE_USEC (1 * USEC_PER_SEC)
#define GS_TOKEN_FETCH_ATTEMPTS 3U
#define GS_TOKEN_FAILED_RETRY_USEC (10 * USEC_PER_SEC)

typedef enum GsOpKind {
        GS_OP_PUT,
        GS_OP_GET,
        GS_OP_GET_DATA,
        GS_OP_LIST,
        GS_OP_REMOVE,
} GsOpKind;

typedef enum GsPartState {
        GS_PART_PENDING,
        GS_PART_RUNNING,
        GS_PART_DONE,
} GsPartState;

typedef struct GsStore GsStore;
typedef struct GsOp GsOp;

typedef struct GsPart {
        GsOp *op;
        size_t i;
        HttpRequest *req;
        unsigned gen;           /* the token generation the request carries */
        GsPartState state;
        char *etag;
} GsPart;

struct GsOp {
        GsStore *gs;
        GsOp *next, *prev;
        GsOpKind kind;
        bool waiting;           /* for a token */
        bool wake;
        unsigned auth_retries;
        StoreDone done;
        StoreDataDone data_done;
        StoreListDone list_done;
        void *userdata;
        char *key;              /* the full object key (prefix included) */
        HttpRequest *req;       /* the one request in flight besides the parts */
        unsigned gen;

        /* put */
        int fd;
        uint64_t offset, len, part_size;
        void *buf;
        char *sha256;
        bool create_only, multipart;
        char *content_type;
        char *upload_id;
        GsPart *parts;
        size_t n_parts, next_part, parts_running, parts_done;
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

struct GsStore {
        Store *store;
        char *bucket, *prefix, *endpoint;
        CloudWatch *metadata;   /* never started: only the base address for gce_fetch_token() */
        GceFetch *fetch;
        sd_event_source *fetch_timer;
        unsigned fetch_attempts;
        char *auth;             /* "Authorization: Bearer ...": secret */
        unsigned gen;           /* bumped with every new token */
        usec_t refresh_at, unusable_at; /* CLOCK_BOOTTIME */
        GsOp *ops;
        unsigned test_max_keys;
};

static int gs_op_begin(GsOp *op);
static int gs_mp_pump(GsOp *op);
static void gs_mp_fail(GsOp *op, int error);
static int gs_token_fetch(GsStore *gs);
static void gs_on_token(GceFetch *f, int error, const char *access_token, usec_t expires_in, void *userdata);

/* ---- the token ---- */

static void gs_token_clear(GsStore *gs) {
        if (gs->auth)
                explicit_bzero(gs->auth, strlen(gs->auth));
        gs->auth = mfree(gs->auth);
        gs->gen++;
}

static bool gs_token_usable(GsStore *gs) {
        return gs->auth && now_usec(CLOCK_BOOTTIME) < gs->unusable_at;
}

/* A 401 for a request that carried token generation gen: drops that token (unless a newer one
 * is already there) and says whether the operation may try again. */
static bool gs_token_rejected(GsOp *op, HttpRequest *req, unsigned gen) {
        if (http_request_status(req) != 401 || op->auth_retries >= GS_AUTH_RETRIES)
                return false;
        op->auth_retries++;
        if (gen == op->gs->gen) {
                log_debug("GCS refused the access token (HTTP 401), fetching a new one.");
                gs_token_clear(op->gs);
        }
        return true;
}

static void gs_op_fail(GsOp *op, int error);

static void gs_token_ready(GsStore *gs, int error) {
        GsOp *op;

        /* Two passes: an op that has to wait again is not picked up in this round. */
        for (op = gs->ops; op; op = op->next)
                if (op->waiting) {
                        op->waiting = false;
                        op->wake = true;
                }
        for (;;) {
                int r;

                for (op = gs->ops; op && !op->wake; op = op->next)
                        ;
                if (!op)
                        break;
                op->wake = false;
                r = error < 0 ? error : gs_op_begin(op);
                if (r < 0)
                        gs_op_fail(op, r);
        }
}

static int gs_token_fetch_start(GsStore *gs) {
        gs->fetch_attempts++;
        return gce_fetch_token(gs->metadata, gs_on_token, gs, &gs->fetch);
}

/* The fetch failed for good: keep a token that still works, else fail the waiting ops. */
static void gs_token_failed(GsStore *gs, int error) {
        if (gs_token_usable(gs)) {
                log_warning_errno(error, "Refreshing the GCS access token failed, using the current one: %m");
                gs->refresh_at = now_usec(CLOCK_BOOTTIME) + GS_TOKEN_FAILED_RETRY_USEC;
                error = 0;
        } else
                log_error_errno(error, "Cannot get a GCS access token from the metadata server: %m");
        gs_token_ready(gs, error);
}

static int gs_on_fetch_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        GsStore *gs = userdata;
        int r;

        gs->fetch_timer = sd_event_source_disable_unref(gs->fetch_timer);
        r = gs_token_fetch_start(gs);
        if (r < 0)
                gs_token_failed(gs, r);
        return 0;
}

static void gs_on_token(GceFetch *f, int error, const char *access_token, usec_t expires_in, void *userdata) {
        GsStore *gs = userdata;
        usec_t now = now_usec(CLOCK_BOOTTIME);
        char *auth = NULL;
        int r;

        gs->fetch = gce_fetch_free(f);
        if (error == 0)
                error = gs_bearer_header(access_token, &auth);
        if (error < 0 && http_error_retryable(error) && gs->fetch_attempts < GS_TOKEN_FETCH_ATTEMPTS) {
                log_debug_errno(error, "Fetching the GCS access token failed, trying again: %m");
                r = sd_event_add_time_relative(gs->store->event, &gs->fetch_timer, CLOCK_BOOTTIME,
                                               gs->fetch_attempts * 500 * USEC_PER_MSEC, 0, gs_on_fetch_timer, gs);
                if (r >= 0)
                        return;
                error = r;
        }
        if (error < 0) {
                gs_token_failed(gs, error);
                return;
        }
        gs_token_clear(gs);
        gs->auth = auth;
        gs->refresh_at = now + expires_in - MIN(GS_TOKEN_REFRESH_USEC, expires_in / 2);
        gs->unusable_at = now + MAX(expires_in - MIN(GS_TOKEN_SAFETY_USEC, expires_in / 4), GS_TOKEN_MIN_USE_USEC);
        log_debug("Got a GCS access token, valid for %" PRIu64 " s.", (uint64_t) (expires_in / USEC_PER_SEC));
        gs_token_ready(gs, 0);
}

/* Starts a token fetch unless one runs (or waits to be tried again) already. */
static int gs_token_fetch(GsStore *gs) {
        if (gs->fetch || gs->fetch_timer)
                return 0;
        gs->fetch_attempts = 0;
        return gs_token_fetch_start(gs);
}

/* Runs op's next step now, or once a usable token is there. */
static int gs_op_run(GsOp *op) {
        GsStore *gs = op->gs;

        if (gs->auth && gs_token_usable(gs) && now_usec(CLOCK_BOOTTIME) >= gs->refresh_at) {
                int r = gs_token_fetch(gs); /* in the background */
                if (r < 0)
                        log_debug_errno(r, "Cannot start refreshing the GCS access token: %m");
        }
        if (gs_token_usable(gs))
                return gs_op_begin(op);
        op->waiting = true;
        return gs_token_fetch(gs);
}

/* ---- ops bookkeeping ---- */

static void gs_op_free(GsOp *op) {
        if (!op)
                return;
        http_request_free(op->req);
        for (size_t i = 0; op->parts && i < op->n_parts; i++) {
                http_request_free(op->parts[i].req);
                free(op->parts[i].etag);
        }
        free(op->parts);
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

static void gs_op_unlink(GsOp *op) {
        if (op->prev)
                op->prev->next = op->next;
        else if (op->gs->ops == op)
                op->gs->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        op->next = op->prev = NULL;
}

static int gs_op_new(GsStore *gs, GsOpKind kind, const char *key, GsOp **ret) {
        GsOp *op = calloc(1, sizeof(GsOp));

        if (!op)
                return -ENOMEM;
        *op = (GsOp) { .gs = gs, .kind = kind, .fd = -EBADF, .out_fd = -EBADF };
        if (key && asprintf(&op->key, "%s%s", gs->prefix, key) < 0) {
                free(op);
                return -ENOMEM;
        }
        *ret = op;
        return 0;
}

static void gs_op_finish(GsOp *op, int error) {
        Store *s = op->gs->store;
        char *data = NULL;
        size_t len = 0;

        gs_op_unlink(op);
        switch (op->kind) {
        case GS_OP_GET_DATA:
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
        case GS_OP_LIST:
                if (error == 0) {
                        op->list_done(s, 0, TAKE_PTR(op->objects), op->n_objects, op->userdata);
                        op->n_objects = 0;
                } else
                        op->list_done(s, error, NULL, 0, op->userdata);
                break;
        default:
                op->done(s, error, op->userdata);
        }
        gs_op_free(op);
}

static void gs_op_fail(GsOp *op, int error) {
        if (op->kind == GS_OP_PUT && op->multipart)
                gs_mp_fail(op, error);
        else
                gs_op_finish(op, error);
}

/* Links op in and runs it. On failure op is freed and no callback is called. */
static int gs_op_submit(GsOp *op) {
        GsStore *gs = op->gs;
        int r;

        op->next = gs->ops;
        if (gs->ops)
                gs->ops->prev = op;
        gs->ops = op;
        r = gs_op_run(op);
        if (r < 0) {
                gs_op_unlink(op);
                gs_op_free(op);
        }
        return r;
}

/* ---- requests ---- */

static usec_t gs_transfer_timeout(uint64_t bytes) {
        return 60 * USEC_PER_SEC + bytes / GS_MIN_RATE * USEC_PER_SEC;
}

/* A request with the current token; *ret_gen gets its generation. */
static int gs_request_new(GsStore *gs, const char *method, const char *key, const char *query, HttpRequest **ret,
                          unsigned *ret_gen) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *url = NULL;
        const char *ca = gs->store->config->storage_ca_file;
        CURL *c;
        int r;

        if (!gs->auth)
                return -ENOKEY;
        r = gs_url(gs->endpoint, gs->bucket, key, query, &url);
        if (r < 0)
                return r;
        r = http_request_new(&req, gs->store->glue, method, url);
        if (r < 0)
                return r;
        r = http_request_add_header(req, "%s", gs->auth);
        if (r >= 0 && ca)
                r = http_request_set_ca_file(req, ca);
        if (r < 0)
                return r;
        c = http_request_get_curl(req);
        if (curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK)
                return -EIO;
        http_request_set_retry(req, GS_RETRY_ATTEMPTS, GS_RETRY_BASE_USEC, GS_RETRY_MAX_USEC);
        http_request_set_timeouts(req, GS_CONNECT_TIMEOUT_USEC, gs_transfer_timeout(0));
        *ret_gen = gs->gen;
        *ret = TAKE_PTR(req);
        return 0;
}

/* The op's one request: replaces the previous one. */
static int gs_op_request(GsOp *op, const char *method, const char *query) {
        op->req = http_request_free(op->req);
        return gs_request_new(op->gs, method, op->key, query, &op->req, &op->gen);
}

/* The errno of a finished request: the <Error> Code when the body has one. Logs the GCS error
 * code and message (never the token) at debug level. */
static int gs_request_error(HttpRequest *req, int error, const char *what) {
        _cleanup_free_ char *code = NULL, *message = NULL;
        const char *body;
        size_t len;

        if (error == 0)
                return 0;
        body = http_request_body(req, &len);
        if (len > 0 && s3_parse_error(body, len, &code, &message) == 0) {
                error = gs_error_to_errno(code, http_request_status(req));
                log_debug("GCS %s failed: HTTP %ld %s: %s", what, http_request_status(req), strna(code),
                          strna(message));
        } else
                log_debug_errno(error, "GCS %s failed: HTTP %ld: %m", what, http_request_status(req));
        return error;
}

/* Common end of the op-level requests: a 401 gets the op another go with a new token. */
static void gs_op_answered(GsOp *op, int error) {
        if (error < 0 && gs_token_rejected(op, op->req, op->gen)) {
                op->req = http_request_free(op->req);
                error = gs_op_run(op);
                if (error == 0)
                        return;
        }
        if (error < 0)
                gs_op_fail(op, error);
        else
                gs_op_finish(op, 0);
}

/* ---- remove ---- */

static void gs_on_removed(HttpRequest *req, int error, void *userdata) {
        gs_op_answered(userdata, gs_request_error(req, error, "DELETE"));
}

static int gs_begin_remove(GsOp *op) {
        int r = gs_op_request(op, "DELETE", NULL);

        if (r < 0)
                return r;
        http_request_set_accept_status(op->req, 404);
        return http_request_start(op->req, gs_on_removed, op);
}

/* ---- get, get_data ---- */

static int gs_on_get_data(HttpRequest *req, const char *data, size_t len, void *userdata) {
        GsOp *op = userdata;
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
                store_report_progress(op->gs->store, (uint64_t) n);
        }
        return 0;
}

static void gs_on_got(HttpRequest *req, int error, void *userdata) {
        GsOp *op = userdata;
        uint64_t expect = op->len;
        const char *cl;

        error = gs_request_error(req, error, "GET");
        if (error == 0 && op->kind == GS_OP_GET && expect == 0) {
                cl = http_request_header(req, "Content-Length");
                if (!cl || sscanf(cl, "%" SCNu64, &expect) != 1)
                        error = -EBADMSG;
        }
        if (error == 0 && op->kind == GS_OP_GET && op->written != expect) {
                log_debug("GCS GET of %s returned %" PRIu64 " bytes, expected %" PRIu64, op->key, op->written, expect);
                error = -EBADMSG;
        }
        gs_op_answered(op, error);
}

static int gs_begin_get(GsOp *op) {
        int r = gs_op_request(op, "GET", NULL);

        if (r < 0)
                return r;
        if (op->kind == GS_OP_GET_DATA) {
                http_request_set_max_response(op->req, op->max);
                return http_request_start(op->req, gs_on_got, op);
        }
        op->written = 0;
        op->attempt_seen = 0;
        if (op->len > 0)
                r = http_request_add_header(op->req, "Range: bytes=%" PRIu64 "-%" PRIu64, op->offset,
                                            op->offset + op->len - 1);
        else if (op->offset > 0)
                r = http_request_add_header(op->req, "Range: bytes=%" PRIu64 "-", op->offset);
        if (r < 0)
                return r;
        http_request_set_timeouts(op->req, GS_CONNECT_TIMEOUT_USEC,
                                  op->len > 0 ? gs_transfer_timeout(op->len) : USEC_INFINITY);
        http_request_set_stream(op->req, gs_on_get_data, op);
        return http_request_start(op->req, gs_on_got, op);
}

/* ---- list ---- */

static int gs_object_cmp(const void *a, const void *b) {
        return strcmp(((const StoreObject *) a)->key, ((const StoreObject *) b)->key);
}

static int gs_list_take(GsOp *op, S3ListPage *page) {
        size_t plen = strlen(op->gs->prefix);
        StoreObject *o;

        if (op->n_objects + page->n_objects > GS_LIST_MAX_OBJECTS)
                return -EFBIG;
        o = realloc(op->objects, (op->n_objects + page->n_objects + 1) * sizeof(StoreObject));
        if (!o)
                return -ENOMEM;
        op->objects = o;
        for (size_t i = 0; i < page->n_objects; i++) {
                S3Object *so = &page->objects[i];

                if (!strneq(so->key, op->gs->prefix, plen) || !so->key[plen])
                        continue; /* not ours: never hand out a key outside the root */
                o[op->n_objects] = (StoreObject) {
                        .key = strdup(so->key + plen),
                        .size = so->size,
                        .modified = so->modified,
                };
                if (!o[op->n_objects].key)
                        return -ENOMEM;
                op->n_objects++;
        }
        return 0;
}

static int gs_list_next(GsOp *op);

static void gs_on_listed(HttpRequest *req, int error, void *userdata) {
        _cleanup_(s3_list_page_done) S3ListPage page = {};
        GsOp *op = userdata;
        const char *body;
        size_t len;

        error = gs_request_error(req, error, "ListObjectsV2");
        if (error == 0) {
                body = http_request_body(req, &len);
                error = s3_parse_list(body, len, &page);
        }
        if (error == 0)
                error = gs_list_take(op, &page);
        if (error == 0 && page.truncated) {
                free(op->token);
                op->token = TAKE_PTR(page.next_token);
                error = gs_op_run(op);
                if (error == 0)
                        return;
        }
        if (error == 0 && op->n_objects > 1)
                qsort(op->objects, op->n_objects, sizeof(StoreObject), gs_object_cmp);
        gs_op_answered(op, error);
}

static int gs_list_next(GsOp *op) {
        _cleanup_free_ char *query = NULL;
        int r;

        r = s3_list_query(op->list_prefix, op->token, op->gs->test_max_keys, &query);
        if (r < 0)
                return r;
        op->req = http_request_free(op->req);
        r = gs_request_new(op->gs, "GET", NULL, query, &op->req, &op->gen);
        if (r < 0)
                return r;
        http_request_set_max_response(op->req, S3_XML_MAX);
        return http_request_start(op->req, gs_on_listed, op);
}

/* ---- put ---- */

static int gs_put_headers(GsOp *op) {
        int r = http_request_add_header(op->req, "Content-Type: %s", op->content_type ?: "application/octet-stream");

        if (r >= 0 && op->sha256)
                r = http_request_add_header(op->req, "x-goog-meta-sha256: %s", op->sha256);
        return r;
}

static void gs_on_put(HttpRequest *req, int error, void *userdata) {
        GsOp *op = userdata;

        error = gs_request_error(req, error, "PUT");
        if (error == 0)
                store_report_progress(op->gs->store, op->len);
        gs_op_answered(op, error);
}

static int gs_put_single(GsOp *op) {
        int r = gs_op_request(op, "PUT", NULL);

        if (r >= 0)
                r = gs_put_headers(op);
        /* Create-only: 412 PreconditionFailed when a live object has the name. */
        if (r >= 0 && op->create_only)
                r = http_request_add_header(op->req, GS_CREATE_ONLY_HEADER);
        if (r < 0)
                return r;
        if (op->fd >= 0)
                http_request_set_body_fd(op->req, op->fd, op->offset, op->len);
        else {
                r = http_request_set_body(op->req, op->buf, (size_t) op->len);
                if (r < 0)
                        return r;
        }
        http_request_set_timeouts(op->req, GS_CONNECT_TIMEOUT_USEC, gs_transfer_timeout(op->len));
        return http_request_start(op->req, gs_on_put, op);
}

static void gs_on_aborted(HttpRequest *req, int error, void *userdata) {
        GsOp *op = userdata;

        error = gs_request_error(req, error, "abort multipart upload");
        if (error < 0)
                log_warning_errno(error, "Aborting the multipart upload of %s failed, a lifecycle rule must clean it up: %m",
                                  op->key);
        gs_op_finish(op, op->error);
}

/* Stops the parts still running and aborts the upload; finishes op with op->error. */
static void gs_mp_fail(GsOp *op, int error) {
        _cleanup_free_ char *query = NULL;
        int r;

        if (op->error == 0)
                op->error = error;
        for (size_t i = 0; op->parts && i < op->n_parts; i++)
                op->parts[i].req = http_request_free(op->parts[i].req);
        op->req = http_request_free(op->req);
        if (!op->upload_id) {
                gs_op_finish(op, op->error);
                return;
        }
        /* Best effort with whatever token there is, even a stale one. */
        r = s3_upload_id_query(op->upload_id, &query);
        if (r >= 0)
                r = gs_op_request(op, "DELETE", query);
        if (r >= 0) {
                http_request_set_accept_status(op->req, 404);
                r = http_request_start(op->req, gs_on_aborted, op);
        }
        if (r < 0) {
                log_warning_errno(r, "Cannot abort the multipart upload of %s: %m", op->key);
                gs_op_finish(op, op->error);
        }
}

static void gs_on_completed(HttpRequest *req, int error, void *userdata) {
        GsOp *op = userdata;
        const char *body;
        size_t len;

        error = gs_request_error(req, error, "complete multipart upload");
        if (error == 0) {
                /* A 200 can still carry an <Error>: the upload is then not complete. */
                body = http_request_body(req, &len);
                error = s3_parse_complete(body, len);
        }
        if (error < 0 && !gs_token_rejected(op, req, op->gen) &&
            !(http_error_retryable(error) && op->complete_attempts < GS_COMPLETE_ATTEMPTS)) {
                gs_mp_fail(op, error);
                return;
        }
        op->req = http_request_free(op->req);
        if (error == 0) {
                gs_op_finish(op, 0);
                return;
        }
        error = gs_op_run(op); /* the pump completes again */
        if (error < 0)
                gs_mp_fail(op, error);
}

static int gs_mp_complete(GsOp *op) {
        _cleanup_free_ char *query = NULL, *body = NULL;
        _cleanup_free_ char **etags = NULL;
        int r;

        etags = calloc(op->n_parts, sizeof(char *));
        if (!etags)
                return -ENOMEM;
        for (size_t i = 0; i < op->n_parts; i++)
                etags[i] = op->parts[i].etag; /* borrowed */
        op->complete_attempts++;
        r = s3_complete_body(etags, op->n_parts, &body);
        if (r >= 0)
                r = s3_upload_id_query(op->upload_id, &query);
        if (r >= 0)
                r = gs_op_request(op, "POST", query);
        if (r >= 0)
                r = http_request_add_header(op->req, "Content-Type: application/xml");
        if (r >= 0)
                r = http_request_set_body(op->req, body, strlen(body));
        if (r < 0)
                return r;
        /* Completing a large object can take minutes. */
        http_request_set_timeouts(op->req, GS_CONNECT_TIMEOUT_USEC, 10 * 60 * USEC_PER_SEC);
        return http_request_start(op->req, gs_on_completed, op);
}

static void gs_on_part(HttpRequest *req, int error, void *userdata) {
        GsPart *part = userdata;
        GsOp *op = part->op;
        const char *etag;

        error = gs_request_error(req, error, "upload part");
        if (error == 0) {
                etag = http_request_header(req, "ETag");
                if (isempty(etag))
                        error = -EBADMSG;
                else if (!(part->etag = strdup(etag)))
                        error = -ENOMEM;
        }
        op->parts_running--;
        if (error < 0 && gs_token_rejected(op, req, part->gen)) {
                /* Again with a new token. */
                part->req = http_request_free(part->req);
                part->state = GS_PART_PENDING;
                op->next_part = MIN(op->next_part, part->i);
                error = gs_op_run(op);
                if (error < 0)
                        gs_mp_fail(op, error);
                return;
        }
        part->req = http_request_free(part->req);
        if (error < 0) {
                gs_mp_fail(op, error);
                return;
        }
        part->state = GS_PART_DONE;
        op->parts_done++;
        store_report_progress(op->gs->store, MIN(op->part_size, op->len - (uint64_t) part->i * op->part_size));
        error = gs_op_run(op);
        if (error < 0)
                gs_mp_fail(op, error);
}

static int gs_mp_start_part(GsOp *op, GsPart *part) {
        _cleanup_free_ char *query = NULL;
        uint64_t off = (uint64_t) part->i * op->part_size, len = MIN(op->part_size, op->len - off);
        int r;

        r = s3_part_query((unsigned) part->i + 1, op->upload_id, &query);
        if (r >= 0)
                r = gs_request_new(op->gs, "PUT", op->key, query, &part->req, &part->gen);
        if (r < 0)
                return r;
        if (op->fd >= 0)
                http_request_set_body_fd(part->req, op->fd, op->offset + off, len);
        else {
                r = http_request_set_body(part->req, (const uint8_t *) op->buf + off, (size_t) len);
                if (r < 0)
                        return r;
        }
        http_request_set_timeouts(part->req, GS_CONNECT_TIMEOUT_USEC, gs_transfer_timeout(len));
        r = http_request_start(part->req, gs_on_part, part);
        if (r < 0)
                return r;
        part->state = GS_PART_RUNNING;
        op->parts_running++;
        return 0;
}

/* Keeps at most storage.concurrency parts in flight; completes once all are there. Called with
 * a usable token (gs_op_run()). */
static int gs_mp_pump(GsOp *op) {
        int r;

        while (op->next_part < op->n_parts && op->parts_running < op->gs->store->concurrency) {
                GsPart *part = &op->parts[op->next_part++];

                if (part->state != GS_PART_PENDING)
                        continue;
                r = gs_mp_start_part(op, part);
                if (r < 0)
                        return r;
        }
        if (op->parts_done == op->n_parts && !op->req)
                return gs_mp_complete(op);
        return 0;
}

static void gs_on_initiated(HttpRequest *req, int error, void *userdata) {
        GsOp *op = userdata;
        const char *body;
        size_t len;

        error = gs_request_error(req, error, "initiate multipart upload");
        if (error == 0) {
                body = http_request_body(req, &len);
                error = s3_parse_initiate(body, len, &op->upload_id);
        }
        if (error == 0) {
                op->req = http_request_free(op->req);
                error = gs_op_run(op);
                if (error < 0)
                        gs_mp_fail(op, error);
                return;
        }
        gs_op_answered(op, error);
}

static int gs_mp_initiate(GsOp *op) {
        int r = gs_op_request(op, "POST", "uploads");

        if (r >= 0)
                r = gs_put_headers(op);
        if (r >= 0)
                r = http_request_set_body(op->req, NULL, 0);
        if (r < 0)
                return r;
        return http_request_start(op->req, gs_on_initiated, op);
}

/* ---- the vtable ---- */

static int gs_op_begin(GsOp *op) {
        switch (op->kind) {
        case GS_OP_PUT:
                if (!op->multipart)
                        return gs_put_single(op);
                return op->upload_id ? gs_mp_pump(op) : gs_mp_initiate(op);
        case GS_OP_GET:
        case GS_OP_GET_DATA:
                return gs_begin_get(op);
        case GS_OP_LIST:
                return gs_list_next(op);
        case GS_OP_REMOVE:
                return gs_begin_remove(op);
        }
        return -EINVAL;
}

static int gs_put_check(const StorePut *p) {
        if (!store_key_is_valid(p->key) || (p->fd < 0 && !p->buf && p->len > 0))
                return -EINVAL;
        if (p->sha256 && !sha256_hex_valid(p->sha256))
                return -EINVAL;
        if (p->n_parts <= 1)
                return 0;
        if (p->part_size == 0 || p->n_parts > store_gs_vtable.max_parts ||
            (p->len + p->part_size - 1) / p->part_size != p->n_parts)
                return -EINVAL;
        return 0;
}

static int gs_put_copy(GsOp *op, const StorePut *p) {
        char sha[65];
        int r;

        op->fd = p->fd;
        op->offset = p->offset;
        op->len = p->len;
        op->create_only = p->create_only;
        op->multipart = p->n_parts > 1 && !p->create_only;
        if (op->multipart) {
                op->part_size = p->part_size;
                op->n_parts = p->n_parts;
                op->parts = calloc(op->n_parts, sizeof(GsPart));
                if (!op->parts)
                        return -ENOMEM;
                for (size_t i = 0; i < op->n_parts; i++)
                        op->parts[i] = (GsPart) { .op = op, .i = i };
        }
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
        else if (p->fd < 0) {
                r = s3_payload_sha256(op->buf, p->len, sha);
                if (r < 0)
                        return r;
                op->sha256 = strdup(sha);
        }
        if ((p->sha256 || p->fd < 0) && !op->sha256)
                return -ENOMEM;
        return 0;
}

static int gs_put(Store *s, const StorePut *p, StoreDone done, void *userdata) {
        GsOp *op;
        int r;

        r = gs_put_check(p);
        if (r < 0)
                return r;
        r = gs_op_new(s->data, GS_OP_PUT, p->key, &op);
        if (r < 0)
                return r;
        op->done = done;
        op->userdata = userdata;
        r = gs_put_copy(op, p);
        if (r < 0) {
                gs_op_free(op);
                return r;
        }
        return gs_op_submit(op);
}

static int gs_get(Store *s, const char *key, uint64_t offset, uint64_t len, int out_fd, uint64_t out_offset,
                  StoreDone done, void *userdata) {
        GsOp *op;
        int r;

        if (!store_key_is_valid(key) || out_fd < 0 || (len > 0 && offset + len < offset))
                return -EINVAL;
        r = gs_op_new(s->data, GS_OP_GET, key, &op);
        if (r < 0)
                return r;
        op->out_fd = out_fd;
        op->offset = offset;
        op->len = len;
        op->out_offset = out_offset;
        op->done = done;
        op->userdata = userdata;
        return gs_op_submit(op);
}

static int gs_get_data(Store *s, const char *key, size_t max, StoreDataDone done, void *userdata) {
        GsOp *op;
        int r;

        if (!store_key_is_valid(key))
                return -EINVAL;
        r = gs_op_new(s->data, GS_OP_GET_DATA, key, &op);
        if (r < 0)
                return r;
        op->max = max;
        op->data_done = done;
        op->userdata = userdata;
        return gs_op_submit(op);
}

static int gs_list(Store *s, const char *prefix, StoreListDone done, void *userdata) {
        GsStore *gs = s->data;
        GsOp *op;
        int r;

        if (!prefix || strlen(prefix) > 1024)
                return -EINVAL;
        r = gs_op_new(gs, GS_OP_LIST, NULL, &op);
        if (r < 0)
                return r;
        op->list_done = done;
        op->userdata = userdata;
        if (asprintf(&op->list_prefix, "%s%s", gs->prefix, prefix) < 0) {
                op->list_prefix = NULL;
                gs_op_free(op);
                return -ENOMEM;
        }
        return gs_op_submit(op);
}

static int gs_remove(Store *s, const char *key, StoreDone done, void *userdata) {
        GsOp *op;
        int r;

        if (!store_key_is_valid(key))
                return -EINVAL;
        r = gs_op_new(s->data, GS_OP_REMOVE, key, &op);
        if (r < 0)
                return r;
        op->done = done;
        op->userdata = userdata;
        return gs_op_submit(op);
}

static void gs_cancel_all(Store *s) {
        GsStore *gs = s->data;

        /* Multipart uploads cut short here stay behind until a lifecycle rule removes them. */
        while (gs->ops) {
                GsOp *op = gs->ops;

                gs_op_unlink(op);
                gs_op_free(op);
        }
        gs->fetch = gce_fetch_free(gs->fetch);
        gs->fetch_timer = sd_event_source_disable_unref(gs->fetch_timer);
}

static void gs_close(void *data) {
        GsStore *gs = data;

        if (!gs)
                return;
        while (gs->ops) {
                GsOp *op = gs->ops;

                gs_op_unlink(op);
                gs_op_free(op);
        }
        gce_fetch_free(gs->fetch);
        sd_event_source_disable_unref(gs->fetch_timer);
        cloud_watch_free(gs->metadata);
        gs_token_clear(gs);
        free(gs->bucket);
        free(gs->prefix);
        free(gs->endpoint);
        free(gs);
}

static int gs_open(Store *s, void **ret_data) {
        const char *endpoint = s->config->storage_endpoint, *e;
        GsStore *gs;
        int r;

        gs = calloc(1, sizeof(GsStore));
        if (!gs)
                return -ENOMEM;
        *gs = (GsStore) { .store = s };
        r = gs_location_parse(s->location, &gs->bucket, &gs->prefix);
        if (r < 0) {
                log_error("Invalid GCS URL \"%s\": expected gs://BUCKET[/PREFIX].", s->url);
                goto fail;
        }
        if (endpoint) {
                r = s3_endpoint_check(endpoint);
                if (r < 0) {
                        log_error("Invalid storage.endpoint \"%s\": expected http(s)://HOST[:PORT].", endpoint);
                        goto fail;
                }
                gs->endpoint = strdup(endpoint);
                if (!gs->endpoint) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        r = cloud_watch_new(&gs->metadata, CLOUD_PROVIDER_GCE, s->event, s->glue, s->config->cloud_metadata_url,
                            USEC_PER_SEC, NULL, NULL);
        if (r < 0)
                goto fail;
        e = getenv("TRAINSUPD_GS_TEST_MAX_KEYS");
        if (e)
                gs->test_max_keys = (unsigned) strtoul(e, NULL, 10);
        /* The first token, early: operations queue until it is there. */
        r = gs_token_fetch(gs);
        if (r < 0) {
                log_error_errno(r, "Cannot start fetching a GCS access token: %m");
                goto fail;
        }
        *ret_data = gs;
        return 0;
fail:
        gs_close(gs);
        return r;
}

const StoreVTable store_gs_vtable = {
        .scheme = "gs",
        .min_part_size = 5ULL * 1024 * 1024,
        .max_part_size = 5ULL * 1024 * 1024 * 1024,
        .max_parts = 10000,
        .open = gs_open,
        .close = gs_close,
        .put = gs_put,
        .get = gs_get,
        .get_data = gs_get_data,
        .list = gs_list,
        .remove = gs_remove,
        .cancel_all = gs_cancel_all,
};
