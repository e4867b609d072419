/* SPDX-License-Identifier: MIT */
/* The operations of the HTTP object stores (objstore-http.h): their life cycle, the queue of those
 * waiting for credentials, the StoreVTable entry points, and what every request has in common
 * (settings, error documents). Gets, lists, removes and single puts are in objstore-transfer.c,
 * multipart uploads in objstore-multipart.c. */
#include <assert.h>
#include <fcntl.h>
#include <stdio.h>

#include "log.h"
#include "objstore-http.h"
#include "sha256.h"
#include "strv.h"

#define OBJSTORE_RETRY_ATTEMPTS 5U
#define OBJSTORE_RETRY_BASE_USEC (200 * USEC_PER_MSEC)
#define OBJSTORE_RETRY_MAX_USEC (10 * USEC_PER_SEC)
#define OBJSTORE_MIN_RATE (256U * 1024U)        /* bytes/s assumed for a transfer's timeout */
#define OBJSTORE_CONTENT_TYPE_MAX 255U


int objstore_endpoint(Store *s, int (*check)(const char *endpoint), const char *expected, char **ret) {
        const char *endpoint = s->config->storage_endpoint;
        int r;

        if (!endpoint)
                return 0;
        r = check(endpoint);
        if (r < 0) {
                log_error("Invalid storage.endpoint \"%s\": expected %s.", endpoint, expected);
                return r;
        }
        *ret = strdup(endpoint);
        return *ret ? 0 : -ENOMEM;
}

char *objstore_strip(char *s) {
        size_t n;

        s += strspn(s, " \t");
        n = strlen(s);
        while (n > 0 && strchr(" \t\r\n", s[n - 1]))
                s[--n] = 0;
        return s;
}

/* ---- ops bookkeeping ---- */

static void objstore_op_free(ObjstoreOp *op) {
        if (!op)
                return;
        http_request_free(op->req);
        objstore_md5_cancel(op->job);
        for (size_t i = 0; op->parts && i < op->n_parts; i++) {
                http_request_free(op->parts[i].req);
                objstore_md5_cancel(op->parts[i].job);
                free(op->parts[i].etag);
        }
        free(op->parts);
        if (op->os->provider->dup_fds) {
                safe_close(op->fd);
                safe_close(op->out_fd);
        }
        strv_free(op->part_sha256);
        free(op->key);
        free(op->buf);
        free(op->sha256);
        free(op->content_type);
        free(op->upload_id);
        free(op->list_prefix);
        free(op->token);
        store_objects_free(op->objects, op->n_objects);
        free(op->upload_id_marker);
        for (size_t i = 0; i < op->n_uploads; i++) {
                free(op->uploads[i].key);
                free(op->uploads[i].upload_id);
        }
        free(op->uploads);
        free(op);
}

static void objstore_op_unlink(ObjstoreOp *op) {
        if (op->prev)
                op->prev->next = op->next;
        else if (op->os->ops == op)
                op->os->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        op->next = op->prev = NULL;
}

static void objstore_free_ops(Objstore *os) {
        while (os->ops) {
                ObjstoreOp *op = os->ops;

                objstore_op_unlink(op);
                objstore_op_free(op);
        }
}

void objstore_close(void *data) {
        Objstore *os = data;

        if (!os)
                return;
        objstore_free_ops(os);
        os->provider->close(os);
        free(os->prefix);
        free(os);
}

int objstore_open(Store *s, const ObjstoreProvider *provider, void **ret_data) {
        const char *e = provider->list_max_env ? getenv(provider->list_max_env) : NULL;
        Objstore *os;
        int r;

        assert(provider->size >= sizeof(Objstore));
        os = calloc(1, provider->size);
        if (!os)
                return -ENOMEM;
        *os = (Objstore) { .store = s, .provider = provider };
        if (e)
                os->test_max_keys = (unsigned) strtoul(e, NULL, 10);
        s->data = os; /* credential fetches started by open() need it */
        r = provider->open(os);
        if (r < 0) {
                s->data = NULL;
                objstore_close(os);
                return r;
        }
        *ret_data = os;
        return 0;
}

static int objstore_op_new(Objstore *os, ObjstoreOpKind kind, const char *key, ObjstoreOp **ret) {
        ObjstoreOp *op = calloc(1, sizeof(ObjstoreOp));

        if (!op)
                return -ENOMEM;
        *op = (ObjstoreOp) { .os = os, .kind = kind, .fd = -EBADF, .out_fd = -EBADF };
        if (key && asprintf(&op->key, "%s%s", os->prefix, key) < 0) {
                free(op);
                return -ENOMEM;
        }
        *ret = op;
        return 0;
}

/* An op on a key from the caller, which must be valid. */
static int objstore_op_new_key(Store *s, ObjstoreOpKind kind, const char *key, ObjstoreOp **ret) {
        if (!store_key_is_valid(key))
                return -EINVAL;
        return objstore_op_new(s->data, kind, key, ret);
}

static void objstore_op_deliver_data(ObjstoreOp *op, int error) {
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
        op->data_done(op->os->store, error, error == 0 ? data : NULL, error == 0 ? len : 0, op->userdata);
}

void objstore_op_finish(ObjstoreOp *op, int error) {
        Store *s = op->os->store;

        objstore_op_unlink(op);
        switch (op->kind) {
        case OBJSTORE_OP_GET_DATA:
                objstore_op_deliver_data(op, error);
                break;
        case OBJSTORE_OP_LIST:
                if (error == 0) {
                        op->list_done(s, 0, TAKE_PTR(op->objects), op->n_objects, op->userdata);
                        op->n_objects = 0;
                } else
                        op->list_done(s, error, NULL, 0, op->userdata);
                break;
        case OBJSTORE_OP_SWEEP:
                op->sweep_done(s, error, op->aborted, op->userdata);
                break;
        default:
                op->done(s, error, op->userdata);
        }
        objstore_op_free(op);
}

void objstore_op_fail(ObjstoreOp *op, int error) {
        if (op->kind == OBJSTORE_OP_PUT && op->multipart)
                objstore_mp_fail(op, error);
        else
                objstore_op_finish(op, error);
}

static int objstore_op_begin(ObjstoreOp *op) {
        op->started = true;
        switch (op->kind) {
        case OBJSTORE_OP_PUT:
                return objstore_begin_put(op);
        case OBJSTORE_OP_GET:
        case OBJSTORE_OP_GET_DATA:
                return objstore_begin_get(op);
        case OBJSTORE_OP_LIST:
                return objstore_list_next(op);
        case OBJSTORE_OP_REMOVE:
                return objstore_begin_remove(op);
        case OBJSTORE_OP_SWEEP:
                return objstore_sweep_next(op);
        }
        return -EINVAL;
}

int objstore_op_run(ObjstoreOp *op) {
        int r = op->os->provider->auth(op->os, op);

        if (r < 0)
                return r;
        if (r == 0) {
                op->waiting = true;
                return 0;
        }
        return objstore_op_begin(op);
}

void objstore_op_answered(ObjstoreOp *op, int error) {
        const ObjstoreProvider *p = op->os->provider;

        if (error < 0 && p->auth_rejected && p->auth_rejected(op, op->req, op->gen)) {
                op->req = http_request_free(op->req);
                error = objstore_op_run(op);
                if (error == 0)
                        return;
        }
        if (error < 0)
                objstore_op_fail(op, error);
        else
                objstore_op_finish(op, 0);
}

void objstore_auth_ready(Objstore *os, int error) {
        ObjstoreOp *op;

        /* Two passes: an op that has to wait again is not picked up in this round. */
        for (op = os->ops; op; op = op->next)
                if (op->waiting) {
                        op->waiting = false;
                        op->wake = true;
                }
        for (;;) {
                int r;

                for (op = os->ops; op && !op->wake; op = op->next)
                        ;
                if (!op)
                        break;
                op->wake = false;
                r = error < 0 ? error : objstore_op_begin(op);
                if (r < 0)
                        objstore_op_fail(op, r);
        }
}

/* Links op in and runs it. On failure op is freed and no callback is called. */
static int objstore_op_submit(ObjstoreOp *op) {
        Objstore *os = op->os;
        int r;

        op->next = os->ops;
        if (os->ops)
                os->ops->prev = op;
        os->ops = op;
        r = objstore_op_run(op);
        if (r < 0) {
                objstore_op_unlink(op);
                objstore_op_free(op);
        }
        return r;
}

/* ---- requests ---- */

usec_t objstore_transfer_timeout(uint64_t bytes) {
        return 60 * USEC_PER_SEC + bytes / OBJSTORE_MIN_RATE * USEC_PER_SEC;
}

int objstore_request_new(Objstore *os, const char *method, const char *url, HttpRequest **ret) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        const char *ca = os->store->config->storage_ca_file;
        CURL *c;
        int r;

        r = http_request_new(&req, os->store->glue, method, url);
        if (r < 0)
                return r;
        if (ca) {
                r = http_request_set_ca_file(req, ca);
                if (r < 0)
                        return r;
        }
        c = http_request_get_curl(req);
        if (curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK)
                return -EIO;
        /* A retry resends the same signed headers: they stay valid longer than all attempts. */
        http_request_set_retry(req, OBJSTORE_RETRY_ATTEMPTS, OBJSTORE_RETRY_BASE_USEC, OBJSTORE_RETRY_MAX_USEC);
        http_request_set_timeouts(req, OBJSTORE_CONNECT_TIMEOUT_USEC, objstore_transfer_timeout(0));
        *ret = TAKE_PTR(req);
        return 0;
}

int objstore_request(ObjstoreOp *op, ObjstoreRequestArgs *a, HttpRequest **ret, unsigned *ret_gen) {
        a->op = op;
        *ret = http_request_free(*ret);
        return op->os->provider->request(op->os, a, ret, ret_gen);
}

int objstore_request_error(Objstore *os, HttpRequest *req, int error, ObjstoreReq what) {
        _cleanup_free_ char *code = NULL, *message = NULL;
        const ObjstoreProvider *p = os->provider;
        const char *body, *hdr;
        long status;
        size_t len;

        if (error == 0)
                return 0;
        status = http_request_status(req);
        body = http_request_body(req, &len);
        if (len > 0)
                (void) p->parse_error(body, len, &code, &message);
        hdr = p->error_code_header ? http_request_header(req, p->error_code_header) : NULL;
        if (!code && hdr && strlen(hdr) < 128 && !(code = strdup(hdr)))
                return -ENOMEM;
        if (!code) {
                log_debug_errno(error, "%s %s failed: HTTP %ld: %m", p->name, p->what[what], status);
                return error;
        }
        log_debug("%s %s failed: HTTP %ld %s: %s", p->name, p->what[what], status, code, strna(message));
        return p->error_to_errno(code, message, status);
}

int objstore_object_headers(ObjstoreOp *op, bool create_only, char ***headers) {
        const ObjstoreProvider *p = op->os->provider;
        int r = 0;

        if (op->sha256)
                r = strv_extendf(headers, "%s: %s", p->meta_sha256_header, op->sha256);
        if (r >= 0 && create_only && op->create_only)
                r = strv_extend(headers, p->create_only_header);
        return r;
}

int objstore_set_body(ObjstoreOp *op, HttpRequest *req, uint64_t off, uint64_t len) {
        http_request_set_timeouts(req, OBJSTORE_CONNECT_TIMEOUT_USEC, objstore_transfer_timeout(len));
        if (op->fd >= 0) {
                http_request_set_body_fd(req, op->fd, op->offset + off, len);
                return 0;
        }
        return http_request_set_body(req, (const uint8_t *) op->buf + off, (size_t) len);
}

/* ---- the vtable ---- */

static int objstore_put_check(Objstore *os, const StorePut *p) {
        const StoreVTable *vt = os->store->vt;

        if (!store_key_is_valid(p->key) || (p->fd < 0 && !p->buf && p->len > 0))
                return -EINVAL;
        if (p->sha256 && !sha256_hex_valid(p->sha256))
                return -EINVAL;
        if (p->content_type && (strpbrk(p->content_type, "\r\n") || strlen(p->content_type) > OBJSTORE_CONTENT_TYPE_MAX))
                return -EINVAL;
        if (p->n_parts <= 1)
                return 0;
        if (p->part_size == 0 || p->n_parts > vt->max_parts || p->part_size > vt->max_part_size ||
            (p->len + p->part_size - 1) / p->part_size != p->n_parts)
                return -EINVAL;
        if (!os->provider->part_sha256)
                return 0;
        if (!p->part_sha256)
                return -EINVAL;
        for (size_t i = 0; i < p->n_parts; i++)
                if (!sha256_hex_valid(p->part_sha256[i]))
                        return -EINVAL;
        return 0;
}

static int objstore_put_copy_parts(ObjstoreOp *op, const StorePut *p) {
        op->part_size = p->part_size;
        op->n_parts = p->n_parts;
        op->parts = calloc(op->n_parts, sizeof(ObjstorePart));
        if (!op->parts)
                return -ENOMEM;
        for (size_t i = 0; i < op->n_parts; i++)
                op->parts[i] = (ObjstorePart) { .op = op, .i = i };
        if (!op->os->provider->part_sha256)
                return 0;
        op->part_sha256 = strv_copy(p->part_sha256);
        return op->part_sha256 ? 0 : -ENOMEM;
}

static int objstore_put_copy(ObjstoreOp *op, const StorePut *p) {
        const ObjstoreProvider *pr = op->os->provider;
        int r;

        op->offset = p->offset;
        op->len = p->len;
        op->create_only = p->create_only;
        op->multipart = p->n_parts > 1 && !(p->create_only && pr->create_only_single);
        if (op->multipart) {
                r = objstore_put_copy_parts(op, p);
                if (r < 0)
                        return r;
        }
        if (p->content_type && !(op->content_type = strdup(p->content_type)))
                return -ENOMEM;
        if (p->sha256 && !(op->sha256 = strdup(p->sha256)))
                return -ENOMEM;
        if (p->fd >= 0) {
                op->fd = pr->dup_fds ? fcntl(p->fd, F_DUPFD_CLOEXEC, 3) : p->fd;
                return op->fd < 0 ? negative_errno() : 0;
        }
        op->buf = malloc(MAX(p->len, 1U));
        if (!op->buf)
                return -ENOMEM;
        memcpy(op->buf, p->buf ?: "", p->len);
        if (!op->sha256) {
                uint8_t d[SHA256_DIGEST_SIZE];
                char hex[SHA256_HEX_SIZE];

                r = sha256_buffer(op->buf, p->len, d);
                if (r < 0)
                        return r;
                if (!(op->sha256 = strdup(sha256_to_hex(d, hex))))
                        return -ENOMEM;
        }
        return 0;
}

int objstore_put(Store *s, const StorePut *p, StoreDone done, void *userdata) {
        ObjstoreOp *op;
        int r;

        r = objstore_put_check(s->data, p);
        if (r < 0)
                return r;
        r = objstore_op_new(s->data, OBJSTORE_OP_PUT, p->key, &op);
        if (r < 0)
                return r;
        op->done = done;
        op->userdata = userdata;
        r = objstore_put_copy(op, p);
        if (r < 0) {
                objstore_op_free(op);
                return r;
        }
        return objstore_op_submit(op);
}

int objstore_get(Store *s, const char *key, uint64_t offset, uint64_t len, int out_fd, uint64_t out_offset,
                 StoreDone done, void *userdata) {
        Objstore *os = s->data;
        ObjstoreOp *op;
        int r;

        if (out_fd < 0 || (len > 0 && offset + len < offset))
                return -EINVAL;
        r = objstore_op_new_key(s, OBJSTORE_OP_GET, key, &op);
        if (r < 0)
                return r;
        op->offset = offset;
        op->len = len;
        op->out_offset = out_offset;
        op->done = done;
        op->userdata = userdata;
        op->out_fd = os->provider->dup_fds ? fcntl(out_fd, F_DUPFD_CLOEXEC, 3) : out_fd;
        if (op->out_fd < 0) {
                r = negative_errno();
                objstore_op_free(op);
                return r;
        }
        return objstore_op_submit(op);
}

int objstore_get_data(Store *s, const char *key, size_t max, StoreDataDone done, void *userdata) {
        ObjstoreOp *op;
        int r;

        r = objstore_op_new_key(s, OBJSTORE_OP_GET_DATA, key, &op);
        if (r < 0)
                return r;
        op->max = max;
        op->data_done = done;
        op->userdata = userdata;
        return objstore_op_submit(op);
}

/* A new operation over the keys under prefix (below the store's own prefix). */
static int objstore_op_new_prefix(Objstore *os, ObjstoreOpKind kind, const char *prefix, ObjstoreOp **ret) {
        ObjstoreOp *op;
        int r;

        if (!prefix || strlen(prefix) > 1024)
                return -EINVAL;
        r = objstore_op_new(os, kind, NULL, &op);
        if (r < 0)
                return r;
        if (asprintf(&op->list_prefix, "%s%s", os->prefix, prefix) < 0) {
                op->list_prefix = NULL;
                objstore_op_free(op);
                return -ENOMEM;
        }
        *ret = op;
        return 0;
}

int objstore_list(Store *s, const char *prefix, StoreListDone done, void *userdata) {
        ObjstoreOp *op;
        int r;

        r = objstore_op_new_prefix(s->data, OBJSTORE_OP_LIST, prefix, &op);
        if (r < 0)
                return r;
        op->list_done = done;
        op->userdata = userdata;
        return objstore_op_submit(op);
}

int objstore_remove(Store *s, const char *key, StoreDone done, void *userdata) {
        ObjstoreOp *op;
        int r;

        r = objstore_op_new_key(s, OBJSTORE_OP_REMOVE, key, &op);
        if (r < 0)
                return r;
        op->done = done;
        op->userdata = userdata;
        return objstore_op_submit(op);
}

int objstore_sweep_uploads(Store *s, const char *prefix, usec_t initiated_before, StoreSweepDone done,
                           void *userdata) {
        Objstore *os = s->data;
        ObjstoreOp *op;
        int r;

        if (!os->provider->mp_list_query || !os->provider->mp_list_parse || !os->provider->mp_abort_query)
                return -EOPNOTSUPP;
        r = objstore_op_new_prefix(os, OBJSTORE_OP_SWEEP, prefix, &op);
        if (r < 0)
                return r;
        op->sweep_done = done;
        op->userdata = userdata;
        op->cutoff = initiated_before;
        return objstore_op_submit(op);
}

void objstore_cancel_all(Store *s) {
        Objstore *os = s->data;

        /* Multipart uploads cut short here stay behind until a sweep (sweep_uploads, after the
         * grace period) or a lifecycle rule removes them; blocks never committed are invisible and
         * dropped by the store. */
        objstore_free_ops(os);
        if (os->provider->cancel)
                os->provider->cancel(os);
}

int objstore_get_xml(ObjstoreOp *op, ObjstoreReq kind, const char *query, HttpRequestDone done) {
        ObjstoreRequestArgs a = { .kind = kind, .method = "GET", .query = query };
        int r;

        r = objstore_request(op, &a, &op->req, &op->gen);
        if (r < 0)
                return r;
        http_request_set_max_response(op->req, OBJSTORE_XML_MAX);
        return http_request_start(op->req, done, op);
}
