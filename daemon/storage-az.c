/* SPDX-License-Identifier: MIT */
/* az:// — Azure Blob Storage (and azurite): az://ACCOUNT/CONTAINER[/PREFIX]. URLs, signatures and
 * XML live in az-request.c.
 *
 * Endpoint: storage.endpoint (path-style, e.g. azurite's http://127.0.0.1:10000/devstoreaccount1),
 * else https://ACCOUNT.blob.core.windows.net.
 *
 * Credentials, the first that is there:
 *   1. storage.credentials_file: "key = value" lines, '#' starts a comment, unknown keys ignored:
 *        account_key = <base64 account key>      (SharedKey; wins when both are given)
 *        sas_token = <sv=...&sig=...>              (a leading '?' is fine)
 *   2. $AZURE_STORAGE_KEY (SharedKey), then $AZURE_STORAGE_SAS_TOKEN.
 *   3. The VM's managed identity: a Bearer token for https://storage.azure.com/ from IMDS
 *      (cloud.metadata_url or 169.254.169.254; $AZURE_CLIENT_ID picks a user-assigned identity),
 *      fetched asynchronously (operations queue meanwhile) and again five minutes before it
 *      expires. Bearer tokens are only ever sent over https.
 * Keys, SAS tokens and bearer tokens are never logged.
 *
 * Writes: objects of one part are one Put Blob (x-ms-blob-type BlockBlob); larger ones are Put
 * Block per part (at most storage.concurrency in flight) and one Put Block List. Every body
 * carries Content-MD5 (computed in the worker for file ranges), which the service verifies
 * (Md5Mismatch → -EBADMSG); the object's SHA-256 goes in x-ms-meta-sha256. create_only sends
 * "If-None-Match: *" on Put Blob and Put Block List (409/412 → -EEXIST). A failed block upload
 * leaves only uncommitted blocks, which are invisible and which Azure drops after a week. Two
 * writers uploading blocks for the same blob name at once would mix their blocks: the snapshot
 * engine never does that (data objects have unique names; manifests are single puts).
 *
 * Test hooks (environment, never needed in production): TRAINSUPD_AZ_TEST_MAX_RESULTS=N lists in
 * pages of N blobs; TRAINSUPD_AZ_TEST_CORRUPT_MD5=1 sends a wrong Content-MD5 with every body. */
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <unistd.h>

#include "az-request.h"
#include "cloud-azure.h"
#include "cloud.h"
#include "http.h"
#include "log.h"
#include "sha256.h"
#include "storage.h"
#include "strv.h"

#define AZ_RETRY_ATTEMPTS 5U
#define AZ_RETRY_BASE_USEC (200 * USEC_PER_MSEC)
#define AZ_RETRY_MAX_USEC (10 * USEC_PER_SEC)
#define AZ_CONNECT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define AZ_MIN_RATE (256U * 1024U)              /* bytes/s assumed for a transfer's timeout */
#define AZ_LIST_MAX_OBJECTS 10000000U
#define AZ_TOKEN_REFRESH_USEC (5 * 60 * USEC_PER_SEC)
#define AZ_IMDS_DEFAULT "http://169.254.169.254"
#define AZ_TOKEN_RESOURCE "https://storage.azure.com/"
#define AZ_MD5_READ (1024U * 1024U)

typedef enum AzAuth {
        AZ_AUTH_KEY,
        AZ_AUTH_SAS,
        AZ_AUTH_BEARER,
} AzAuth;

typedef enum AzOpKind {
        AZ_OP_PUT,
        AZ_OP_GET,
        AZ_OP_GET_DATA,
        AZ_OP_LIST,
        AZ_OP_REMOVE,
} AzOpKind;

typedef struct AzStore AzStore;
typedef struct AzOp AzOp;
typedef struct AzMd5Job AzMd5Job;

/* A Content-MD5 computed in the worker. Owned by the worker until its done callback; op is NULL
 * once the operation went away (then the result is dropped). */
struct AzMd5Job {
        AzOp *op;
        size_t block;           /* SIZE_MAX: the whole single put */
        int fd;                 /* our own duplicate */
        uint64_t offset, len;
        char md5[AZ_MD5_B64_SIZE];
};

typedef struct AzBlock {
        AzOp *op;
        size_t i;
        HttpRequest *req;
        AzMd5Job *job;
} AzBlock;

struct AzOp {
        AzStore *az;
        AzOp *next, *prev;
        AzOpKind kind;
        bool waiting;           /* for the token */
        StoreDone done;
        StoreDataDone data_done;
        StoreListDone list_done;
        void *userdata;
        char *blob;             /* the full blob name (prefix included) */
        HttpRequest *req;

        /* put */
        int fd;                 /* our own duplicate, or -EBADF */
        uint64_t offset, len, part_size;
        void *buf;
        char *sha256;
        size_t n_parts;
        bool create_only;
        char *content_type;
        AzMd5Job *job;
        AzBlock *blocks;
        size_t next_block, blocks_done;

        /* get */
        int out_fd;             /* our own duplicate */
        uint64_t out_offset, written;
        unsigned attempt_seen;
        size_t max;

        /* list */
        char *list_prefix;
        char *marker;
        StoreObject *objects;
        size_t n_objects;
};

struct AzStore {
        Store *store;
        char *account, *container, *prefix, *endpoint;
        AzAuth auth;
        char *key, *sas, *token;
        usec_t token_expiration;        /* CLOCK_REALTIME */
        bool token_pending;
        int creds_error;
        AzureFetch *fetch;
        CloudWatch imds;                /* only base_url and glue: what azure_fetch_token uses */
        AzOp *ops;
        unsigned test_max_results;
        bool test_corrupt_md5;
};

static int az_op_begin(AzOp *op);
static int az_token_refresh(AzStore *az);

static void az_secret_free(char **p) {
        if (*p)
                explicit_bzero(*p, strlen(*p));
        *p = mfree(*p);
}

/* ---- ops bookkeeping ---- */

static void az_op_free(AzOp *op) {
        if (!op)
                return;
        op->req = http_request_free(op->req);
        if (op->job)
                op->job->op = NULL;
        for (size_t i = 0; op->blocks && i < op->n_parts; i++) {
                http_request_free(op->blocks[i].req);
                if (op->blocks[i].job)
                        op->blocks[i].job->op = NULL;
        }
        free(op->blocks);
        safe_close(op->fd);
        safe_close(op->out_fd);
        free(op->blob);
        free(op->buf);
        free(op->sha256);
        free(op->content_type);
        free(op->list_prefix);
        free(op->marker);
        store_objects_free(op->objects, op->n_objects);
        free(op);
}

static void az_op_unlink(AzOp *op) {
        if (op->prev)
                op->prev->next = op->next;
        else if (op->az->ops == op)
                op->az->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        op->next = op->prev = NULL;
}

static int az_op_new(AzStore *az, AzOpKind kind, const char *key, AzOp **ret) {
        AzOp *op = calloc(1, sizeof(AzOp));

        if (!op)
                return -ENOMEM;
        *op = (AzOp) { .az = az, .kind = kind, .fd = -EBADF, .out_fd = -EBADF };
        if (key && asprintf(&op->blob, "%s%s", az->prefix, key) < 0) {
                free(op);
                return -ENOMEM;
        }
        *ret = op;
        return 0;
}

static void az_op_finish(AzOp *op, int error) {
        Store *s = op->az->store;

        az_op_unlink(op);
        switch (op->kind) {
        case AZ_OP_GET_DATA: {
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
        case AZ_OP_LIST:
                if (error == 0) {
                        op->list_done(s, 0, TAKE_PTR(op->objects), op->n_objects, op->userdata);
                        op->n_objects = 0;
                } else
                        op->list_done(s, error, NULL, 0, op->userdata);
                break;
        default:
                op->done(s, error, op->userdata);
        }
        az_op_free(op);
}

static bool az_token_stale(AzStore *az) {
        return az->auth == AZ_AUTH_BEARER &&
               (!az->token || now_usec(CLOCK_REALTIME) + AZ_TOKEN_REFRESH_USEC >= az->token_expiration);
}

/* Links op in; starts it now or once the token is there. On failure op is freed and no
 * callback is called. */
static int az_op_submit(AzOp *op) {
        AzStore *az = op->az;
        int r;

        if (az->creds_error < 0 && !az->token_pending && !az->token) {
                r = az->creds_error;
                az_op_free(op);
                return r;
        }
        if (!az->token_pending && az_token_stale(az)) {
                r = az_token_refresh(az);
                if (r < 0)
                        log_debug_errno(r, "Refreshing the Azure storage token failed to start: %m");
        }
        op->next = az->ops;
        if (az->ops)
                az->ops->prev = op;
        az->ops = op;
        op->waiting = az->token_pending && (!az->token || now_usec(CLOCK_REALTIME) >= az->token_expiration);
        if (op->waiting)
                return 0;
        r = az_op_begin(op);
        if (r < 0) {
                az_op_unlink(op);
                az_op_free(op);
        }
        return r;
}

/* ---- requests ---- */

static usec_t az_transfer_timeout(uint64_t bytes) {
        return 60 * USEC_PER_SEC + bytes / AZ_MIN_RATE * USEC_PER_SEC;
}

/* A signed request. extra: further "Name: value" headers (x-ms-*, Content-Type, Content-MD5,
 * If-None-Match); content_length: the body that will be set. */
static int az_request_new(AzStore *az, const char *method, const char *blob, const char *query, char **extra,
                          uint64_t content_length, HttpRequest **ret) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *url = NULL, *auth = NULL;
        _cleanup_(strv_freep) char **headers = NULL;
        const char *ca = az->store->config->storage_ca_file;
        char date[32];
        CURL *c;
        int r;

        r = az_url(az->endpoint, az->account, az->container, blob, query, az->auth == AZ_AUTH_SAS ? az->sas : NULL,
                   &url);
        if (r < 0)
                return r;
        r = az_format_date(now_usec(CLOCK_REALTIME), date);
        if (r < 0)
                return r;
        r = strv_extendf(&headers, "x-ms-date: %s", date);
        if (r >= 0)
                r = strv_extend(&headers, "x-ms-version: " AZ_API_VERSION);
        STRV_FOREACH(h, extra)
                if (r >= 0)
                        r = strv_extend(&headers, *h);
        if (r < 0)
                return r;
        if (az->auth == AZ_AUTH_KEY)
                r = az_authorization(az->key, method, az->account, url, content_length, headers, &auth);
        else if (az->auth == AZ_AUTH_BEARER)
                r = asprintf(&auth, "Bearer %s", az->token ?: "") < 0 ? -ENOMEM : 0;
        if (r < 0)
                return r;
        r = http_request_new(&req, az->store->glue, method, url);
        if (r < 0)
                return r;
        STRV_FOREACH(h, headers) {
                r = http_request_add_header(req, "%s", *h);
                if (r < 0)
                        return r;
        }
        if (auth) {
                r = http_request_add_header(req, "Authorization: %s", auth);
                explicit_bzero(auth, strlen(auth));
                if (r < 0)
                        return r;
        }
        if (ca) {
                r = http_request_set_ca_file(req, ca);
                if (r < 0)
                        return r;
        }
        c = http_request_get_curl(req);
        if (curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK)
                return -EIO;
        /* A retry resends the same signed headers: x-ms-date stays valid for 15 minutes, longer
         * than all attempts together. */
        http_request_set_retry(req, AZ_RETRY_ATTEMPTS, AZ_RETRY_BASE_USEC, AZ_RETRY_MAX_USEC);
        http_request_set_timeouts(req, AZ_CONNECT_TIMEOUT_USEC, az_transfer_timeout(content_length));
        *ret = TAKE_PTR(req);
        return 0;
}

/* The errno of a finished request: from x-ms-error-code or the <Error> body. Logs the Azure error
 * code and message (never anything secret) at debug level. */
static int az_request_error(HttpRequest *req, int error, const char *what) {
        _cleanup_free_ char *code = NULL, *message = NULL;
        const char *hdr, *body;
        size_t len;

        if (error == 0)
                return 0;
        body = http_request_body(req, &len);
        if (len > 0)
                (void) az_parse_error(body, len, &code, &message);
        hdr = http_request_header(req, "x-ms-error-code");
        if (!code && hdr && strlen(hdr) < 128 && !(code = strdup(hdr)))
                return -ENOMEM;
        if (code || http_request_status(req) > 0) {
                if (code)
                        error = az_error_to_errno_message(code, message, http_request_status(req));
                log_debug("Azure %s failed: HTTP %ld %s: %s", what, http_request_status(req), strna(code),
                          strna(message));
        } else
                log_debug_errno(error, "Azure %s failed: %m", what);
        return error;
}

/* ---- remove ---- */

static void az_on_removed(HttpRequest *req, int error, void *userdata) {
        AzOp *op = userdata;

        az_op_finish(op, az_request_error(req, error, "Delete Blob"));
}

static int az_begin_remove(AzOp *op) {
        /* An empty Content-Type drops the one curl would add to a bodied DELETE; signed empty. */
        char *extra[] = { (char *) "Content-Type:", NULL };
        int r = az_request_new(op->az, "DELETE", op->blob, NULL, extra, 0, &op->req);

        if (r < 0)
                return r;
        http_request_set_accept_status(op->req, 404);
        return http_request_start(op->req, az_on_removed, op);
}

/* ---- get, get_data ---- */

static int az_on_get_data(HttpRequest *req, const char *data, size_t len, void *userdata) {
        AzOp *op = userdata;
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
                store_report_progress(op->az->store, (uint64_t) n);
        }
        return 0;
}

static void az_on_got(HttpRequest *req, int error, void *userdata) {
        AzOp *op = userdata;
        const char *cl;
        uint64_t expect = op->len;

        error = az_request_error(req, error, "Get Blob");
        if (error == 0 && op->kind == AZ_OP_GET && expect == 0) {
                cl = http_request_header(req, "Content-Length");
                if (!cl || sscanf(cl, "%" SCNu64, &expect) != 1)
                        error = -EBADMSG;
        }
        if (error == 0 && op->kind == AZ_OP_GET) {
                /* Azure answers 416 for a range that starts beyond the end; azurite a 206 with
                 * "Content-Range: bytes 10-9/10" and no bytes. Either way: -ERANGE. */
                const char *cr = http_request_header(req, "Content-Range"), *slash = cr ? strrchr(cr, '/') : NULL;
                uint64_t total;

                if (slash && sscanf(slash + 1, "%" SCNu64, &total) == 1 &&
                    (op->offset >= MAX(total, 1U) || (op->len > 0 && op->offset + op->len > total)))
                        error = -ERANGE;
        }
        if (error == 0 && op->kind == AZ_OP_GET && op->written != expect) {
                log_debug("Azure Get Blob of %s returned %" PRIu64 " bytes, expected %" PRIu64, op->blob, op->written,
                          expect);
                error = -EBADMSG;
        }
        az_op_finish(op, error);
}

static int az_begin_get(AzOp *op) {
        _cleanup_(strv_freep) char **extra = NULL;
        int r = 0;

        if (op->kind == AZ_OP_GET && op->len > 0)
                r = strv_extendf(&extra, "x-ms-range: bytes=%" PRIu64 "-%" PRIu64, op->offset, op->offset + op->len - 1);
        else if (op->kind == AZ_OP_GET && op->offset > 0)
                r = strv_extendf(&extra, "x-ms-range: bytes=%" PRIu64 "-", op->offset);
        if (r < 0)
                return r;
        r = az_request_new(op->az, "GET", op->blob, NULL, extra, 0, &op->req);
        if (r < 0)
                return r;
        if (op->kind == AZ_OP_GET_DATA) {
                http_request_set_max_response(op->req, op->max);
                return http_request_start(op->req, az_on_got, op);
        }
        op->attempt_seen = 0;
        op->written = 0;
        http_request_set_timeouts(op->req, AZ_CONNECT_TIMEOUT_USEC,
                                  op->len > 0 ? az_transfer_timeout(op->len) : USEC_INFINITY);
        http_request_set_stream(op->req, az_on_get_data, op);
        return http_request_start(op->req, az_on_got, op);
}

/* ---- list ---- */

static int az_list_next(AzOp *op);

static int az_object_cmp(const void *a, const void *b) {
        return strcmp(((const StoreObject *) a)->key, ((const StoreObject *) b)->key);
}

static int az_list_take(AzOp *op, AzListPage *page) {
        size_t plen = strlen(op->az->prefix);
        StoreObject *o;

        if (op->n_objects + page->n_blobs > AZ_LIST_MAX_OBJECTS)
                return -EFBIG;
        o = realloc(op->objects, (op->n_objects + page->n_blobs + 1) * sizeof(StoreObject));
        if (!o)
                return -ENOMEM;
        op->objects = o;
        for (size_t i = 0; i < page->n_blobs; i++) {
                AzBlob *b = &page->blobs[i];

                if (!strneq(b->name, op->list_prefix, strlen(op->list_prefix)) || !b->name[plen])
                        continue; /* not ours: never hand out a key outside the root */
                o[op->n_objects] = (StoreObject) { .key = strdup(b->name + plen), .size = b->size,
                                                   .modified = b->modified };
                if (!o[op->n_objects].key)
                        return -ENOMEM;
                op->n_objects++;
        }
        return 0;
}

static void az_on_listed(HttpRequest *req, int error, void *userdata) {
        _cleanup_(az_list_page_done) AzListPage page = {};
        AzOp *op = userdata;
        const char *body;
        size_t len;

        error = az_request_error(req, error, "List Blobs");
        if (error == 0) {
                body = http_request_body(req, &len);
                error = az_parse_list(body, len, &page);
        }
        if (error == 0)
                error = az_list_take(op, &page);
        if (error == 0 && page.next_marker) {
                if (op->marker && streq(op->marker, page.next_marker))
                        error = -EBADMSG; /* would loop forever */
                else {
                        free(op->marker);
                        op->marker = TAKE_PTR(page.next_marker);
                        error = az_list_next(op);
                        if (error == 0)
                                return;
                }
        }
        if (error == 0 && op->n_objects > 1)
                qsort(op->objects, op->n_objects, sizeof(StoreObject), az_object_cmp);
        az_op_finish(op, error);
}

static int az_list_next(AzOp *op) {
        _cleanup_free_ char *query = NULL;
        int r;

        r = az_list_query(op->list_prefix, op->marker, op->az->test_max_results, &query);
        if (r < 0)
                return r;
        op->req = http_request_free(op->req);
        r = az_request_new(op->az, "GET", NULL, query, NULL, 0, &op->req);
        if (r < 0)
                return r;
        http_request_set_max_response(op->req, AZ_XML_MAX);
        return http_request_start(op->req, az_on_listed, op);
}

/* ---- Content-MD5 in the worker ---- */

static int az_md5_job_run(void *arg) {
        AzMd5Job *j = arg;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned char md[EVP_MAX_MD_SIZE];
        uint64_t done = 0;
        unsigned n = 0;
        uint8_t *buf;
        int r = 0;

        buf = malloc(AZ_MD5_READ);
        if (!ctx || !buf || EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1) {
                r = !ctx || !buf ? -ENOMEM : -EIO;
                goto finish;
        }
        while (done < j->len) {
                ssize_t k = pread(j->fd, buf, (size_t) MIN((uint64_t) AZ_MD5_READ, j->len - done),
                                  (off_t) (j->offset + done));

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        r = k < 0 ? -errno : -ENODATA;
                        goto finish;
                }
                if (EVP_DigestUpdate(ctx, buf, (size_t) k) != 1) {
                        r = -EIO;
                        goto finish;
                }
                done += (uint64_t) k;
        }
        if (EVP_DigestFinal_ex(ctx, md, &n) != 1 || n != 16) {
                r = -EIO;
                goto finish;
        }
        (void) EVP_EncodeBlock((unsigned char *) j->md5, md, 16);
finish:
        free(buf);
        EVP_MD_CTX_free(ctx);
        return r;
}

static void az_put_single_send(AzOp *op, int error, const char *md5);
static void az_block_send(AzOp *op, size_t block, int error, const char *md5);
static int az_put_single_request(AzOp *op, const char *md5);
static int az_block_request(AzOp *op, size_t i, const char *md5);

static void az_md5_job_done(int result, void *arg) {
        AzMd5Job *j = arg;
        AzOp *op = j->op;

        safe_close(j->fd);
        if (op) {
                if (j->block == SIZE_MAX) {
                        op->job = NULL;
                        az_put_single_send(op, result, j->md5);
                } else {
                        op->blocks[j->block].job = NULL;
                        az_block_send(op, j->block, result, j->md5);
                }
        }
        free(j);
}

/* Computes the Content-MD5 of [offset, offset + len) of the put's bytes and sends the request:
 * at once for buffers (errors are returned, no callback runs), in the worker for file ranges (the
 * request then starts from the job's done callback). Without a worker: no Content-MD5. */
static int az_md5_start(AzOp *op, size_t block, uint64_t offset, uint64_t len, AzMd5Job **slot) {
        AzMd5Job *j;
        int r;

        if (op->fd < 0 || !op->az->store->worker) {
                char md5[AZ_MD5_B64_SIZE] = "";

                if (op->fd < 0) {
                        r = az_md5_base64((const uint8_t *) op->buf + offset, (size_t) len, md5);
                        if (r < 0)
                                return r;
                }
                return block == SIZE_MAX ? az_put_single_request(op, md5) : az_block_request(op, block, md5);
        }
        j = calloc(1, sizeof(AzMd5Job));
        if (!j)
                return -ENOMEM;
        *j = (AzMd5Job) { .op = op, .block = block, .offset = offset, .len = len };
        j->fd = fcntl(op->fd, F_DUPFD_CLOEXEC, 3);
        if (j->fd < 0) {
                free(j);
                return negative_errno();
        }
        r = worker_submit(op->az->store->worker, az_md5_job_run, az_md5_job_done, j);
        if (r < 0) {
                safe_close(j->fd);
                free(j);
                return r;
        }
        *slot = j;
        return 0;
}

/* ---- put ---- */

static int az_put_common_headers(AzOp *op, char ***extra, const char *md5, bool blob_headers) {
        int r = 0;

        if (!isempty(md5))
                r = strv_extendf(extra, "Content-MD5: %c%s", op->az->test_corrupt_md5 ? (md5[0] == 'A' ? 'B' : 'A') : md5[0],
                                 md5 + 1);
        if (r >= 0 && blob_headers && op->sha256)
                r = strv_extendf(extra, "x-ms-meta-sha256: %s", op->sha256);
        if (r >= 0 && blob_headers && op->create_only)
                r = strv_extend(extra, "If-None-Match: *");
        return r;
}

static int az_put_set_body(AzOp *op, HttpRequest *req, uint64_t off, uint64_t len) {
        if (op->fd >= 0) {
                http_request_set_body_fd(req, op->fd, op->offset + off, len);
                return 0;
        }
        return http_request_set_body(req, (const uint8_t *) op->buf + off, (size_t) len);
}

static void az_on_put(HttpRequest *req, int error, void *userdata) {
        AzOp *op = userdata;

        error = az_request_error(req, error, op->n_parts > 1 ? "Put Block List" : "Put Blob");
        if (error == 0 && op->n_parts <= 1)
                store_report_progress(op->az->store, op->len);
        az_op_finish(op, error);
}

static int az_put_single_request(AzOp *op, const char *md5) {
        _cleanup_(strv_freep) char **extra = NULL;
        int r;

        r = strv_extend(&extra, "x-ms-blob-type: BlockBlob");
        if (r >= 0)
                r = strv_extendf(&extra, "Content-Type: %s", op->content_type ?: "application/octet-stream");
        if (r >= 0)
                r = az_put_common_headers(op, &extra, md5, true);
        if (r >= 0)
                r = az_request_new(op->az, "PUT", op->blob, NULL, extra, op->len, &op->req);
        if (r >= 0)
                r = az_put_set_body(op, op->req, 0, op->len);
        if (r < 0)
                return r;
        return http_request_start(op->req, az_on_put, op);
}

static void az_put_single_send(AzOp *op, int error, const char *md5) {
        if (error == 0)
                error = az_put_single_request(op, md5);
        if (error < 0)
                az_op_finish(op, error);
}

static int az_put_block_list(AzOp *op) {
        _cleanup_(strv_freep) char **extra = NULL;
        _cleanup_free_ char *body = NULL;
        char md5[AZ_MD5_B64_SIZE];
        int r;

        r = az_block_list_body(op->n_parts, &body);
        if (r >= 0)
                r = az_md5_base64(body, strlen(body), md5);
        if (r >= 0)
                r = strv_extend(&extra, "Content-Type: application/xml");
        if (r >= 0)
                r = strv_extendf(&extra, "x-ms-blob-content-type: %s", op->content_type ?: "application/octet-stream");
        if (r >= 0)
                r = az_put_common_headers(op, &extra, md5, true);
        if (r >= 0)
                r = az_request_new(op->az, "PUT", op->blob, "comp=blocklist", extra, strlen(body), &op->req);
        if (r >= 0)
                r = http_request_set_body(op->req, body, strlen(body));
        if (r < 0)
                return r;
        /* Committing a large blob can take a while. */
        http_request_set_timeouts(op->req, AZ_CONNECT_TIMEOUT_USEC, 10 * 60 * USEC_PER_SEC);
        return http_request_start(op->req, az_on_put, op);
}

static int az_blocks_pump(AzOp *op);

static void az_block_fail(AzOp *op, int error) {
        /* Uncommitted blocks are invisible; Azure garbage-collects them. */
        az_op_finish(op, error);
}

static void az_on_block(HttpRequest *req, int error, void *userdata) {
        AzBlock *b = userdata;
        AzOp *op = b->op;
        size_t i = b->i;

        error = az_request_error(req, error, "Put Block");
        b->req = http_request_free(b->req);
        if (error < 0) {
                az_block_fail(op, error);
                return;
        }
        op->blocks_done++;
        store_report_progress(op->az->store, MIN(op->part_size, op->len - (uint64_t) i * op->part_size));
        error = az_blocks_pump(op);
        if (error < 0)
                az_block_fail(op, error);
}

static int az_block_request(AzOp *op, size_t i, const char *md5) {
        _cleanup_(strv_freep) char **extra = NULL;
        _cleanup_free_ char *query = NULL;
        char id[AZ_BLOCK_ID_SIZE];
        uint64_t off = (uint64_t) i * op->part_size, len = MIN(op->part_size, op->len - off);
        AzBlock *b = &op->blocks[i];
        int r;

        r = az_block_id(i, id);
        if (r >= 0)
                r = az_block_query(id, &query);
        if (r >= 0)
                r = strv_extend(&extra, "Content-Type: application/octet-stream");
        if (r >= 0)
                r = az_put_common_headers(op, &extra, md5, false);
        if (r >= 0)
                r = az_request_new(op->az, "PUT", op->blob, query, extra, len, &b->req);
        if (r >= 0)
                r = az_put_set_body(op, b->req, off, len);
        if (r < 0)
                return r;
        return http_request_start(b->req, az_on_block, b);
}

static void az_block_send(AzOp *op, size_t i, int error, const char *md5) {
        if (error == 0)
                error = az_block_request(op, i, md5);
        if (error < 0)
                az_block_fail(op, error);
}

/* Keeps at most storage.concurrency blocks (hashing or uploading) in flight; commits the list once
 * all are there. */
static int az_blocks_pump(AzOp *op) {
        int r;

        while (op->next_block < op->n_parts && op->next_block - op->blocks_done < op->az->store->concurrency) {
                size_t i = op->next_block++;
                uint64_t off = (uint64_t) i * op->part_size;

                op->blocks[i] = (AzBlock) { .op = op, .i = i };
                r = az_md5_start(op, i, off, MIN(op->part_size, op->len - off), &op->blocks[i].job);
                if (r < 0)
                        return r;
        }
        if (op->blocks_done == op->n_parts)
                return az_put_block_list(op);
        return 0;
}

static int az_put_begin(AzOp *op) {
        if (op->n_parts <= 1)
                return az_md5_start(op, SIZE_MAX, 0, op->len, &op->job);
        op->blocks = calloc(op->n_parts, sizeof(AzBlock));
        if (!op->blocks)
                return -ENOMEM;
        return az_blocks_pump(op);
}

/* ---- credentials ---- */

static void az_token_ready(AzStore *az, int error) {
        AzOp *op;

        az->token_pending = false;
        if (error < 0 && az->token && now_usec(CLOCK_REALTIME) < az->token_expiration) {
                log_warning_errno(error, "Refreshing the Azure storage token failed, using the current one: %m");
                error = 0;
        } else if (error < 0)
                log_error_errno(error, "Cannot get an Azure storage token from the managed identity: %m");
        az->creds_error = error;
        for (;;) {
                int r;

                for (op = az->ops; op && !op->waiting; op = op->next)
                        ;
                if (!op)
                        break;
                op->waiting = false;
                r = error < 0 ? error : az_op_begin(op);
                if (r < 0)
                        az_op_finish(op, r);
        }
}

static void az_on_token(AzureFetch *f, int error, const char *access_token, usec_t expires_in, void *userdata) {
        AzStore *az = userdata;

        az->fetch = azure_fetch_free(az->fetch);
        if (error == 0 && (isempty(access_token) || strpbrk(access_token, "\r\n")))
                error = -EBADMSG;
        if (error == 0) {
                az_secret_free(&az->token);
                az->token = strdup(access_token);
                if (!az->token)
                        error = -ENOMEM;
                az->token_expiration = now_usec(CLOCK_REALTIME) + expires_in;
        }
        az_token_ready(az, error);
}

static int az_token_refresh(AzStore *az) {
        int r;

        if (az->token_pending)
                return 0;
        r = azure_fetch_token(&az->imds, AZ_TOKEN_RESOURCE, getenv("AZURE_CLIENT_ID"), az_on_token, az, &az->fetch);
        if (r < 0)
                return r;
        az->token_pending = true;
        return 0;
}

static char *az_strip(char *s) {
        size_t n;

        s += strspn(s, " \t");
        n = strlen(s);
        while (n > 0 && strchr(" \t\r\n", s[n - 1]))
                s[--n] = 0;
        return s;
}

static int az_creds_set_key(AzStore *az, const char *key) {
        void *raw = NULL;
        size_t len = 0;
        int r;

        r = az_base64_decode(key, &raw, &len);
        if (r < 0)
                return log_error_errno(r, "The Azure storage account key is not base64.");
        explicit_bzero(raw, len);
        free(raw);
        az->key = strdup(key);
        az->auth = AZ_AUTH_KEY;
        return az->key ? 0 : -ENOMEM;
}

static int az_creds_set_sas(AzStore *az, const char *sas) {
        int r = az_sas_normalize(sas, &az->sas);

        if (r < 0)
                return log_error_errno(r, "The Azure SAS token is not a URL query with a signature (sig=).");
        az->auth = AZ_AUTH_SAS;
        return 0;
}

static int az_creds_from_file(AzStore *az, const char *path) {
        _cleanup_free_ char *line = NULL;
        char *key = NULL, *sas = NULL;
        FILE *f;
        size_t cap = 0;
        int r = 0;

        f = fopen(path, "re");
        if (!f)
                return log_error_errno(negative_errno(), "Cannot read storage.credentials_file %s: %m", path);
        while (r >= 0 && getline(&line, &cap, f) >= 0) {
                char *l = az_strip(line), *eq, *k, *v, **dst = NULL;

                if (*l == '#' || !*l || !(eq = strchr(l, '=')))
                        continue;
                *eq = 0;
                k = az_strip(l);
                v = az_strip(eq + 1);
                if (streq(k, "account_key"))
                        dst = &key;
                else if (streq(k, "sas_token"))
                        dst = &sas;
                if (dst) {
                        az_secret_free(dst);
                        if (!(*dst = strdup(v)))
                                r = -ENOMEM;
                }
        }
        (void) fclose(f);
        if (line)
                explicit_bzero(line, cap);
        if (r >= 0 && !isempty(key))
                r = az_creds_set_key(az, key);
        else if (r >= 0 && !isempty(sas))
                r = az_creds_set_sas(az, sas);
        else if (r >= 0)
                r = log_error_errno(-ENOKEY, "storage.credentials_file %s has neither account_key nor sas_token.", path);
        az_secret_free(&key);
        az_secret_free(&sas);
        return r;
}

static int az_creds_setup(AzStore *az) {
        const char *file = az->store->config->storage_credentials_file;
        const char *key = getenv("AZURE_STORAGE_KEY"), *sas = getenv("AZURE_STORAGE_SAS_TOKEN");
        const char *base = az->store->config->cloud_metadata_url ?: AZ_IMDS_DEFAULT;
        const char *url_start = az->endpoint ?: "https://";

        if (file)
                return az_creds_from_file(az, file);
        if (!isempty(key))
                return az_creds_set_key(az, key);
        if (!isempty(sas))
                return az_creds_set_sas(az, sas);
        if (!strneq(url_start, "https://", 8))
                return log_error_errno(-EPROTONOSUPPORT,
                                       "Azure managed identity tokens are only sent over https; storage.endpoint is http. "
                                       "Set AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or storage.credentials_file.");
        az->auth = AZ_AUTH_BEARER;
        az->imds = (CloudWatch) { .glue = az->store->glue, .event = az->store->event };
        az->imds.base_url = strdup(base);
        if (!az->imds.base_url)
                return -ENOMEM;
        return az_token_refresh(az);
}

/* ---- the vtable ---- */

static int az_op_begin(AzOp *op) {
        switch (op->kind) {
        case AZ_OP_PUT:
                return az_put_begin(op);
        case AZ_OP_GET:
        case AZ_OP_GET_DATA:
                return az_begin_get(op);
        case AZ_OP_LIST:
                return az_list_next(op);
        case AZ_OP_REMOVE:
                return az_begin_remove(op);
        }
        return -EINVAL;
}

static int az_put_check(const StorePut *p) {
        if (!store_key_is_valid(p->key) || (p->fd < 0 && !p->buf && p->len > 0))
                return -EINVAL;
        if (p->sha256 && !sha256_hex_valid(p->sha256))
                return -EINVAL;
        if (p->content_type && (strpbrk(p->content_type, "\r\n") || strlen(p->content_type) > 255))
                return -EINVAL;
        if (p->n_parts <= 1)
                return 0;
        if (p->part_size == 0 || p->n_parts > store_az_vtable.max_parts || p->part_size > store_az_vtable.max_part_size ||
            (p->len + p->part_size - 1) / p->part_size != p->n_parts)
                return -EINVAL;
        return 0;
}

static int az_put_copy(AzOp *op, const StorePut *p) {
        op->offset = p->offset;
        op->len = p->len;
        op->create_only = p->create_only;
        op->part_size = p->part_size;
        op->n_parts = p->n_parts;
        if (p->content_type && !(op->content_type = strdup(p->content_type)))
                return -ENOMEM;
        if (p->sha256 && !(op->sha256 = strdup(p->sha256)))
                return -ENOMEM;
        if (p->fd >= 0) {
                op->fd = fcntl(p->fd, F_DUPFD_CLOEXEC, 3);
                return op->fd < 0 ? negative_errno() : 0;
        }
        op->buf = malloc(MAX(p->len, 1U));
        if (!op->buf)
                return -ENOMEM;
        memcpy(op->buf, p->buf ?: "", p->len);
        if (!op->sha256) {
                uint8_t d[SHA256_DIGEST_SIZE];
                char hex[SHA256_HEX_SIZE];
                int r = sha256_buffer(op->buf, p->len, d);

                if (r < 0)
                        return r;
                if (!(op->sha256 = strdup(sha256_to_hex(d, hex))))
                        return -ENOMEM;
        }
        return 0;
}

static int az_put(Store *s, const StorePut *p, StoreDone done, void *userdata) {
        AzOp *op;
        int r;

        r = az_put_check(p);
        if (r < 0)
                return r;
        r = az_op_new(s->data, AZ_OP_PUT, p->key, &op);
        if (r < 0)
                return r;
        op->done = done;
        op->userdata = userdata;
        r = az_put_copy(op, p);
        if (r < 0) {
                az_op_free(op);
                return r;
        }
        return az_op_submit(op);
}

static int az_get(Store *s, const char *key, uint64_t offset, uint64_t len, int out_fd, uint64_t out_offset,
                  StoreDone done, void *userdata) {
        AzOp *op;
        int r;

        if (!store_key_is_valid(key) || out_fd < 0 || (len > 0 && offset + len < offset))
                return -EINVAL;
        r = az_op_new(s->data, AZ_OP_GET, key, &op);
        if (r < 0)
                return r;
        op->offset = offset;
        op->len = len;
        op->out_offset = out_offset;
        op->done = done;
        op->userdata = userdata;
        op->out_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
        if (op->out_fd < 0) {
                r = negative_errno();
                az_op_free(op);
                return r;
        }
        return az_op_submit(op);
}

static int az_get_data(Store *s, const char *key, size_t max, StoreDataDone done, void *userdata) {
        AzOp *op;
        int r;

        if (!store_key_is_valid(key))
                return -EINVAL;
        r = az_op_new(s->data, AZ_OP_GET_DATA, key, &op);
        if (r < 0)
                return r;
        op->max = max;
        op->data_done = done;
        op->userdata = userdata;
        return az_op_submit(op);
}

static int az_list(Store *s, const char *prefix, StoreListDone done, void *userdata) {
        AzStore *az = s->data;
        AzOp *op;
        int r;

        if (!prefix || strlen(prefix) > 1024)
                return -EINVAL;
        r = az_op_new(az, AZ_OP_LIST, NULL, &op);
        if (r < 0)
                return r;
        op->list_done = done;
        op->userdata = userdata;
        if (asprintf(&op->list_prefix, "%s%s", az->prefix, prefix) < 0) {
                op->list_prefix = NULL;
                az_op_free(op);
                return -ENOMEM;
        }
        return az_op_submit(op);
}

static int az_remove(Store *s, const char *key, StoreDone done, void *userdata) {
        AzOp *op;
        int r;

        if (!store_key_is_valid(key))
                return -EINVAL;
        r = az_op_new(s->data, AZ_OP_REMOVE, key, &op);
        if (r < 0)
                return r;
        op->done = done;
        op->userdata = userdata;
        return az_op_submit(op);
}

static void az_cancel_all(Store *s) {
        AzStore *az = s->data;

        while (az->ops) {
                AzOp *op = az->ops;

                az_op_unlink(op);
                az_op_free(op);
        }
        az->fetch = azure_fetch_free(az->fetch);
        az->token_pending = false;
}

static void az_close(void *data) {
        AzStore *az = data;

        if (!az)
                return;
        while (az->ops) {
                AzOp *op = az->ops;

                az_op_unlink(op);
                az_op_free(op);
        }
        azure_fetch_free(az->fetch);
        az_secret_free(&az->key);
        az_secret_free(&az->sas);
        az_secret_free(&az->token);
        free(az->imds.base_url);
        free(az->account);
        free(az->container);
        free(az->prefix);
        free(az->endpoint);
        free(az);
}

static int az_open(Store *s, void **ret_data) {
        const char *endpoint = s->config->storage_endpoint, *e;
        AzStore *az;
        int r;

        az = calloc(1, sizeof(AzStore));
        if (!az)
                return -ENOMEM;
        *az = (AzStore) { .store = s, .token_expiration = USEC_INFINITY };
        r = az_location_parse(s->location, &az->account, &az->container, &az->prefix);
        if (r < 0) {
                log_error("Invalid Azure URL \"%s\": expected az://ACCOUNT/CONTAINER[/PREFIX].", s->url);
                goto fail;
        }
        if (endpoint) {
                r = az_endpoint_check(endpoint);
                if (r < 0) {
                        log_error("Invalid storage.endpoint \"%s\": expected http(s)://HOST[:PORT][/PATH].", endpoint);
                        goto fail;
                }
                az->endpoint = strdup(endpoint);
                if (!az->endpoint) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        e = getenv("TRAINSUPD_AZ_TEST_MAX_RESULTS");
        if (e)
                az->test_max_results = (unsigned) strtoul(e, NULL, 10);
        az->test_corrupt_md5 = !isempty(getenv("TRAINSUPD_AZ_TEST_CORRUPT_MD5"));
        s->data = az; /* the token fetch below needs it */
        r = az_creds_setup(az);
        if (r < 0)
                goto fail;
        *ret_data = az;
        return 0;
fail:
        s->data = NULL;
        az_close(az);
        return r;
}

const StoreVTable store_az_vtable = {
        .scheme = "az",
        .min_part_size = 1ULL * 1024 * 1024,
        .max_part_size = 4000ULL * 1024 * 1024,
        .max_parts = AZ_MAX_BLOCKS,
        .open = az_open,
        .close = az_close,
        .put = az_put,
        .get = az_get,
        .get_data = az_get_data,
        .list = az_list,
        .remove = az_remove,
        .cancel_all = az_cancel_all,
};
