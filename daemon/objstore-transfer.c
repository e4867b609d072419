/* SPDX-License-Identifier: MIT */
/* The one-request transfers of the HTTP object stores (objstore-http.h): remove, the streamed
 * ranged get into the caller's fd, get_data, list pagination and the single put, with the
 * Content-MD5 of put bodies computed in the worker for file ranges. */
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>

#include "log.h"
#include "objstore-http.h"
#include "strv.h"

#define OBJSTORE_MD5_READ (1024U * 1024U)

/* ---- remove ---- */

static void objstore_on_removed(HttpRequest *req, int error, void *userdata) {
        ObjstoreOp *op = userdata;

        objstore_op_answered(op, objstore_request_error(op->os, req, error, OBJSTORE_REQ_REMOVE));
}

int objstore_begin_remove(ObjstoreOp *op) {
        ObjstoreRequestArgs a = { .kind = OBJSTORE_REQ_REMOVE, .method = "DELETE", .key = op->key };
        int r = objstore_request(op, &a, &op->req, &op->gen);

        if (r < 0)
                return r;
        http_request_set_accept_status(op->req, 404);
        return http_request_start(op->req, objstore_on_removed, op);
}

/* ---- get, get_data ---- */

static int objstore_on_get_data(HttpRequest *req, const char *data, size_t len, void *userdata) {
        ObjstoreOp *op = userdata;
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
                store_report_progress(op->os->store, (uint64_t) n);
        }
        return 0;
}

static int objstore_get_verify(ObjstoreOp *op, HttpRequest *req) {
        const ObjstoreProvider *p = op->os->provider;
        uint64_t expect = op->len;
        const char *cl;
        int r;

        if (expect == 0) {
                cl = http_request_header(req, "Content-Length");
                if (!cl || sscanf(cl, "%" SCNu64, &expect) != 1)
                        return -EBADMSG;
        }
        if (p->get_check) {
                r = p->get_check(op, req);
                if (r < 0)
                        return r;
        }
        if (op->written != expect) {
                log_debug("%s %s of %s returned %" PRIu64 " bytes, expected %" PRIu64, p->name,
                          p->what[OBJSTORE_REQ_GET], op->key, op->written, expect);
                return -EBADMSG;
        }
        return 0;
}

static void objstore_on_got(HttpRequest *req, int error, void *userdata) {
        ObjstoreOp *op = userdata;

        error = objstore_request_error(op->os, req, error, OBJSTORE_REQ_GET);
        if (error == 0 && op->kind == OBJSTORE_OP_GET)
                error = objstore_get_verify(op, req);
        objstore_op_answered(op, error);
}

static int objstore_range_header(ObjstoreOp *op, char ***headers) {
        const char *name = op->os->provider->range_header;

        if (op->kind != OBJSTORE_OP_GET)
                return 0;
        if (op->len > 0)
                return strv_extendf(headers, "%s: bytes=%" PRIu64 "-%" PRIu64, name, op->offset,
                                    op->offset + op->len - 1);
        if (op->offset > 0)
                return strv_extendf(headers, "%s: bytes=%" PRIu64 "-", name, op->offset);
        return 0;
}

int objstore_begin_get(ObjstoreOp *op) {
        _cleanup_(strv_freep) char **headers = NULL;
        ObjstoreRequestArgs a = { .kind = OBJSTORE_REQ_GET, .method = "GET", .key = op->key };
        int r;

        r = objstore_range_header(op, &headers);
        if (r < 0)
                return r;
        a.headers = headers;
        r = objstore_request(op, &a, &op->req, &op->gen);
        if (r < 0)
                return r;
        if (op->kind == OBJSTORE_OP_GET_DATA) {
                http_request_set_max_response(op->req, op->max);
                return http_request_start(op->req, objstore_on_got, op);
        }
        op->written = 0;
        op->attempt_seen = 0;
        http_request_set_timeouts(op->req, OBJSTORE_CONNECT_TIMEOUT_USEC,
                                  op->len > 0 ? objstore_transfer_timeout(op->len) : USEC_INFINITY);
        http_request_set_stream(op->req, objstore_on_get_data, op);
        return http_request_start(op->req, objstore_on_got, op);
}

/* ---- list ---- */

static int objstore_object_cmp(const void *a, const void *b) {
        return strcmp(((const StoreObject *) a)->key, ((const StoreObject *) b)->key);
}

int objstore_list_add(ObjstoreOp *op, const char *key, uint64_t size, usec_t modified) {
        size_t plen = strlen(op->os->prefix);

        if (!strneq(key, op->list_prefix, strlen(op->list_prefix)) || !key[plen])
                return 0; /* not ours: never hand out a key outside the root */
        if (op->n_objects >= OBJSTORE_LIST_MAX_OBJECTS)
                return -EFBIG;
        if (op->n_objects == op->n_allocated) {
                size_t n = MAX(op->n_allocated * 2, 64U);
                StoreObject *o = realloc(op->objects, n * sizeof(StoreObject));

                if (!o)
                        return -ENOMEM;
                op->objects = o;
                op->n_allocated = n;
        }
        op->objects[op->n_objects] = (StoreObject) { .key = strdup(key + plen), .size = size, .modified = modified };
        if (!op->objects[op->n_objects].key)
                return -ENOMEM;
        op->n_objects++;
        return 0;
}

static void objstore_on_listed(HttpRequest *req, int error, void *userdata) {
        _cleanup_free_ char *next = NULL;
        ObjstoreOp *op = userdata;
        const char *body;
        size_t len;

        error = objstore_request_error(op->os, req, error, OBJSTORE_REQ_LIST);
        if (error == 0) {
                body = http_request_body(req, &len);
                error = op->os->provider->list_parse(op, body, len, &next);
        }
        if (error == 0 && next) {
                if (op->token && streq(op->token, next))
                        error = -EBADMSG; /* would loop forever */
                else {
                        free(op->token);
                        op->token = TAKE_PTR(next);
                        error = objstore_op_run(op);
                        if (error == 0)
                                return;
                }
        }
        if (error == 0 && op->n_objects > 1)
                qsort(op->objects, op->n_objects, sizeof(StoreObject), objstore_object_cmp);
        objstore_op_answered(op, error);
}

int objstore_list_next(ObjstoreOp *op) {
        _cleanup_free_ char *query = NULL;
        int r;

        r = op->os->provider->list_query(op->list_prefix, op->token, op->os->test_max_keys, &query);
        if (r < 0)
                return r;
        return objstore_get_xml(op, OBJSTORE_REQ_LIST, query, objstore_on_listed);
}

/* ---- single put ---- */

static void objstore_on_put(HttpRequest *req, int error, void *userdata) {
        ObjstoreOp *op = userdata;

        error = objstore_request_error(op->os, req, error, OBJSTORE_REQ_PUT);
        if (error == 0)
                store_report_progress(op->os->store, op->len);
        objstore_op_answered(op, error);
}

int objstore_put_single_request(ObjstoreOp *op, const char *md5) {
        _cleanup_(strv_freep) char **headers = NULL;
        ObjstoreRequestArgs a = {
                .kind = OBJSTORE_REQ_PUT,
                .method = "PUT",
                .key = op->key,
                .content_length = op->len,
                .payload_sha256 = op->sha256,
                .content_md5 = isempty(md5) ? NULL : md5,
        };
        int r;

        r = strv_extendf(&headers, "Content-Type: %s", op->content_type ?: "application/octet-stream");
        if (r >= 0)
                r = objstore_object_headers(op, true, &headers);
        a.headers = headers;
        if (r >= 0)
                r = objstore_request(op, &a, &op->req, &op->gen);
        if (r >= 0)
                r = objstore_set_body(op, op->req, 0, op->len);
        if (r < 0)
                return r;
        return http_request_start(op->req, objstore_on_put, op);
}

/* ---- Content-MD5 in the worker ---- */

/* Owned by the worker until its done callback; op is NULL once the operation went away (then the
 * result is dropped). */
struct ObjstoreMd5Job {
        ObjstoreOp *op;
        ObjstorePart *part;     /* NULL: the single put */
        int fd;                 /* our own duplicate */
        uint64_t offset, len;
        char md5[OBJSTORE_MD5_B64_SIZE];
};

static int objstore_md5_job_run(void *arg) {
        ObjstoreMd5Job *j = arg;
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned char md[EVP_MAX_MD_SIZE];
        uint64_t done = 0;
        unsigned n = 0;
        uint8_t *buf;
        int r = 0;

        buf = malloc(OBJSTORE_MD5_READ);
        if (!ctx || !buf || EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1) {
                r = !ctx || !buf ? -ENOMEM : -EIO;
                goto finish;
        }
        while (done < j->len) {
                ssize_t k = pread(j->fd, buf, (size_t) MIN((uint64_t) OBJSTORE_MD5_READ, j->len - done),
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

static int objstore_md5_sent(ObjstoreOp *op, ObjstorePart *part, const char *md5) {
        return part ? objstore_mp_part_request(part, md5) : objstore_put_single_request(op, md5);
}

static void objstore_md5_job_done(int result, void *arg) {
        ObjstoreMd5Job *j = arg;
        ObjstoreOp *op = j->op;

        safe_close(j->fd);
        if (op) {
                if (j->part)
                        j->part->job = NULL;
                else
                        op->job = NULL;
                if (result == 0)
                        result = objstore_md5_sent(op, j->part, j->md5);
                if (result < 0 && j->part)
                        objstore_mp_fail(op, result);
                else if (result < 0)
                        objstore_op_finish(op, result);
        }
        free(j);
}

void objstore_md5_cancel(ObjstoreMd5Job *job) {
        if (job)
                job->op = NULL;
}

/* Computes the Content-MD5 of [offset, offset + len) of the put's bytes and sends the request: at
 * once for buffers (errors are returned, no callback runs), in the worker for file ranges (the
 * request then starts from the job's done callback). Without a worker: no Content-MD5. */
int objstore_md5_send(ObjstoreOp *op, ObjstorePart *part, uint64_t offset, uint64_t len) {
        const ObjstoreProvider *p = op->os->provider;
        Worker *worker = op->os->store->worker;
        ObjstoreMd5Job *j;
        int r;

        if (!p->content_md5)
                return objstore_md5_sent(op, part, NULL);
        if (op->fd < 0 || !worker) {
                char md5[OBJSTORE_MD5_B64_SIZE] = "";

                if (op->fd < 0) {
                        r = p->content_md5((const uint8_t *) op->buf + offset, (size_t) len, md5);
                        if (r < 0)
                                return r;
                }
                return objstore_md5_sent(op, part, md5);
        }
        j = calloc(1, sizeof(ObjstoreMd5Job));
        if (!j)
                return -ENOMEM;
        *j = (ObjstoreMd5Job) { .op = op, .part = part, .offset = op->offset + offset, .len = len };
        j->fd = fcntl(op->fd, F_DUPFD_CLOEXEC, 3);
        if (j->fd < 0) {
                free(j);
                return negative_errno();
        }
        r = worker_submit(worker, objstore_md5_job_run, objstore_md5_job_done, j);
        if (r < 0) {
                safe_close(j->fd);
                free(j);
                return r;
        }
        if (part)
                part->job = j;
        else
                op->job = j;
        return 0;
}

int objstore_begin_put(ObjstoreOp *op) {
        if (op->multipart)
                return op->mp_begun ? objstore_mp_pump(op) : objstore_mp_begin(op);
        return objstore_md5_send(op, NULL, 0, op->len);
}
