/* SPDX-License-Identifier: MIT */
/* Multipart and block uploads of the HTTP object stores (objstore-http.h): begin (S3's and GCS's
 * CreateMultipartUpload; Azure has no such step), the parts at most storage.concurrency at a time,
 * the commit (CompleteMultipartUpload, Put Block List) with its retries, and the abort of a
 * failed upload, so that nothing is ever half-visible; and the sweep, which lists the incomplete
 * uploads under a prefix (all pages first) and aborts, one at a time, those initiated before a
 * cutoff: the uploads whose begin answer was lost, which their writer never learnt of. */
#include "log.h"
#include "objstore-http.h"
#include "sha256.h"
#include "strv.h"

/* ---- abort ---- */

static void objstore_on_aborted(HttpRequest *req, int error, void *userdata) {
        ObjstoreOp *op = userdata;

        error = objstore_request_error(op->os, req, error, OBJSTORE_REQ_MP_ABORT);
        if (error < 0)
                log_warning_errno(error, "Aborting the multipart upload of %s failed, a lifecycle rule must clean it up: %m",
                                  op->key);
        objstore_op_finish(op, op->error);
}

/* Stops the parts still running and aborts the upload; finishes op with op->error. */
void objstore_mp_fail(ObjstoreOp *op, int error) {
        const ObjstoreProvider *p = op->os->provider;
        _cleanup_free_ char *query = NULL;
        ObjstoreRequestArgs a = { .kind = OBJSTORE_REQ_MP_ABORT, .method = "DELETE", .key = op->key };
        int r;

        if (op->error == 0)
                op->error = error;
        op->waiting = false;
        for (size_t i = 0; op->parts && i < op->n_parts; i++) {
                op->parts[i].req = http_request_free(op->parts[i].req);
                objstore_md5_cancel(TAKE_PTR(op->parts[i].job));
        }
        op->req = http_request_free(op->req);
        if (!p->mp_abort_query || !op->upload_id) {
                objstore_op_finish(op, op->error);
                return;
        }
        /* Best effort with whatever credentials there are, even stale ones. */
        r = p->mp_abort_query(op->upload_id, &query);
        a.query = query;
        if (r >= 0)
                r = objstore_request(op, &a, &op->req, &op->gen);
        if (r >= 0) {
                http_request_set_accept_status(op->req, 404);
                r = http_request_start(op->req, objstore_on_aborted, op);
        }
        if (r < 0) {
                log_warning_errno(r, "Cannot abort the multipart upload of %s: %m", op->key);
                objstore_op_finish(op, op->error);
        }
}

/* ---- commit ---- */

static void objstore_on_committed(HttpRequest *req, int error, void *userdata) {
        ObjstoreOp *op = userdata;
        const ObjstoreProvider *p = op->os->provider;
        const char *body;
        size_t len;

        error = objstore_request_error(op->os, req, error, OBJSTORE_REQ_MP_COMMIT);
        if (error == 0 && p->mp_commit_parse) {
                /* A 2xx can still carry an error: the upload is then not complete. */
                body = http_request_body(req, &len);
                error = p->mp_commit_parse(body, len);
        }
        if (error < 0 && !(p->auth_rejected && p->auth_rejected(op, req, op->gen)) &&
            !(http_error_retryable(error) && op->commit_attempts < p->commit_attempts)) {
                objstore_mp_fail(op, error);
                return;
        }
        op->req = http_request_free(op->req);
        if (error == 0) {
                objstore_op_finish(op, 0);
                return;
        }
        error = objstore_op_run(op); /* the pump commits again */
        if (error < 0)
                objstore_mp_fail(op, error);
}

static int objstore_mp_commit_body(ObjstoreOp *op, char **ret_body, char *ret_sha256, char *ret_md5) {
        const ObjstoreProvider *p = op->os->provider;
        _cleanup_free_ char **etags = NULL;
        uint8_t d[SHA256_DIGEST_SIZE];
        int r;

        if (p->part_etags) {
                etags = calloc(op->n_parts, sizeof(char *));
                if (!etags)
                        return -ENOMEM;
                for (size_t i = 0; i < op->n_parts; i++)
                        etags[i] = op->parts[i].etag; /* borrowed */
        }
        r = p->mp_commit_body(etags, op->n_parts, ret_body);
        if (r < 0)
                return r;
        r = sha256_buffer(*ret_body, strlen(*ret_body), d);
        if (r >= 0)
                (void) sha256_to_hex(d, ret_sha256);
        if (r >= 0 && p->content_md5)
                r = p->content_md5(*ret_body, strlen(*ret_body), ret_md5);
        return r;
}

static int objstore_mp_commit(ObjstoreOp *op) {
        const ObjstoreProvider *p = op->os->provider;
        _cleanup_free_ char *query = NULL, *body = NULL;
        _cleanup_(strv_freep) char **headers = NULL;
        char sha[SHA256_HEX_SIZE], md5[OBJSTORE_MD5_B64_SIZE] = "";
        ObjstoreRequestArgs a = { .kind = OBJSTORE_REQ_MP_COMMIT, .method = p->mp_commit_method, .key = op->key };
        int r;

        op->commit_attempts++;
        r = objstore_mp_commit_body(op, &body, sha, md5);
        if (r >= 0)
                r = p->mp_commit_query(op->upload_id, &query);
        if (r >= 0)
                r = strv_extend(&headers, "Content-Type: application/xml");
        if (r < 0)
                return r;
        a.query = query;
        a.headers = headers;
        a.content_length = strlen(body);
        a.payload_sha256 = sha;
        a.content_md5 = isempty(md5) ? NULL : md5;
        r = objstore_request(op, &a, &op->req, &op->gen);
        if (r >= 0)
                r = http_request_set_body(op->req, body, strlen(body));
        if (r < 0)
                return r;
        http_request_set_timeouts(op->req, OBJSTORE_CONNECT_TIMEOUT_USEC, OBJSTORE_COMMIT_TIMEOUT_USEC);
        return http_request_start(op->req, objstore_on_committed, op);
}

/* ---- parts ---- */

static void objstore_on_part(HttpRequest *req, int error, void *userdata) {
        ObjstorePart *part = userdata;
        ObjstoreOp *op = part->op;
        const ObjstoreProvider *p = op->os->provider;
        const char *etag;

        error = objstore_request_error(op->os, req, error, OBJSTORE_REQ_MP_PART);
        if (error == 0 && p->part_etags) {
                etag = http_request_header(req, "ETag");
                free(part->etag);
                part->etag = isempty(etag) ? NULL : strdup(etag);
                if (!part->etag)
                        error = isempty(etag) ? -EBADMSG : -ENOMEM;
        }
        op->parts_running--;
        if (error < 0 && p->auth_rejected && p->auth_rejected(op, req, part->gen)) {
                /* Again with new credentials. */
                part->req = http_request_free(part->req);
                part->state = OBJSTORE_PART_PENDING;
                op->next_part = MIN(op->next_part, part->i);
                error = objstore_op_run(op);
                if (error < 0)
                        objstore_mp_fail(op, error);
                return;
        }
        part->req = http_request_free(part->req);
        if (error < 0) {
                objstore_mp_fail(op, error);
                return;
        }
        part->state = OBJSTORE_PART_DONE;
        op->parts_done++;
        store_report_progress(op->os->store, MIN(op->part_size, op->len - (uint64_t) part->i * op->part_size));
        error = objstore_op_run(op);
        if (error < 0)
                objstore_mp_fail(op, error);
}

int objstore_mp_part_request(ObjstorePart *part, const char *md5) {
        ObjstoreOp *op = part->op;
        _cleanup_free_ char *query = NULL;
        uint64_t off = (uint64_t) part->i * op->part_size, len = MIN(op->part_size, op->len - off);
        ObjstoreRequestArgs a = {
                .kind = OBJSTORE_REQ_MP_PART,
                .method = "PUT",
                .key = op->key,
                .content_length = len,
                .payload_sha256 = op->part_sha256 ? op->part_sha256[part->i] : NULL,
                .content_md5 = isempty(md5) ? NULL : md5,
        };
        int r;

        r = op->os->provider->mp_part_query(part->i, op->upload_id, &query);
        a.query = query;
        if (r >= 0)
                r = objstore_request(op, &a, &part->req, &part->gen);
        if (r >= 0)
                r = objstore_set_body(op, part->req, off, len);
        if (r < 0)
                return r;
        return http_request_start(part->req, objstore_on_part, part);
}

int objstore_mp_pump(ObjstoreOp *op) {
        int r;

        while (op->next_part < op->n_parts && op->parts_running < op->os->store->concurrency) {
                ObjstorePart *part = &op->parts[op->next_part++];
                uint64_t off = (uint64_t) part->i * op->part_size;

                if (part->state != OBJSTORE_PART_PENDING)
                        continue;
                part->state = OBJSTORE_PART_RUNNING;
                op->parts_running++;
                r = objstore_md5_send(op, part, off, MIN(op->part_size, op->len - off));
                if (r < 0)
                        return r;
        }
        if (op->parts_done == op->n_parts && !op->req)
                return objstore_mp_commit(op);
        return 0;
}

/* ---- begin ---- */

static void objstore_on_begun(HttpRequest *req, int error, void *userdata) {
        ObjstoreOp *op = userdata;
        const char *body;
        size_t len;

        error = objstore_request_error(op->os, req, error, OBJSTORE_REQ_MP_BEGIN);
        if (error == 0) {
                body = http_request_body(req, &len);
                error = op->os->provider->mp_begin_parse(body, len, &op->upload_id);
        }
        if (error < 0) {
                objstore_op_answered(op, error);
                return;
        }
        op->mp_begun = true;
        op->req = http_request_free(op->req);
        error = objstore_op_run(op);
        if (error < 0)
                objstore_mp_fail(op, error);
}

int objstore_mp_begin(ObjstoreOp *op) {
        _cleanup_(strv_freep) char **headers = NULL;
        const ObjstoreProvider *p = op->os->provider;
        ObjstoreRequestArgs a = { .kind = OBJSTORE_REQ_MP_BEGIN, .method = "POST", .key = op->key,
                                  .query = p->mp_begin_query };
        int r;

        if (!p->mp_begin_query) {
                op->mp_begun = true;
                return objstore_mp_pump(op);
        }
        r = strv_extendf(&headers, "Content-Type: %s", op->content_type ?: "application/octet-stream");
        if (r >= 0)
                r = objstore_object_headers(op, false, &headers);
        a.headers = headers;
        if (r >= 0)
                r = objstore_request(op, &a, &op->req, &op->gen);
        if (r >= 0)
                r = http_request_set_body(op->req, NULL, 0);
        if (r < 0)
                return r;
        return http_request_start(op->req, objstore_on_begun, op);
}

/* ---- sweep: abort the incomplete uploads initiated before a cutoff ---- */

int objstore_upload_add(ObjstoreOp *op, const char *key, const char *upload_id, usec_t initiated) {
        ObjstoreUpload *u;

        if (!strneq(key, op->list_prefix, strlen(op->list_prefix)) || !key[strlen(op->os->prefix)] ||
            isempty(upload_id))
                return 0; /* not ours: never touch an upload outside the prefix */
        if (initiated == USEC_INFINITY || initiated >= op->cutoff)
                return 0; /* young (maybe another writer's, in flight) or of unknown age: kept */
        if (op->n_uploads >= OBJSTORE_LIST_MAX_OBJECTS)
                return -EFBIG;
        if (op->n_uploads == op->n_uploads_allocated) {
                size_t n = MAX(op->n_uploads_allocated * 2, 16U);

                u = reallocarray(op->uploads, n, sizeof(ObjstoreUpload));
                if (!u)
                        return -ENOMEM;
                op->uploads = u;
                op->n_uploads_allocated = n;
        }
        u = &op->uploads[op->n_uploads];
        *u = (ObjstoreUpload) { .key = strdup(key), .upload_id = strdup(upload_id) };
        if (!u->key || !u->upload_id) {
                free(u->key);
                free(u->upload_id);
                return -ENOMEM;
        }
        op->n_uploads++;
        return 0;
}

/* After a page or an abort: the next step, or the end. */
static void objstore_sweep_continue(ObjstoreOp *op) {
        int r;

        op->req = http_request_free(op->req);
        if (op->listed && op->next_upload >= op->n_uploads) {
                objstore_op_finish(op, 0);
                return;
        }
        r = objstore_op_run(op);
        if (r < 0)
                objstore_op_fail(op, r);
}

static void objstore_on_swept(HttpRequest *req, int error, void *userdata) {
        ObjstoreOp *op = userdata;
        const ObjstoreUpload *u = &op->uploads[op->next_upload];

        error = objstore_request_error(op->os, req, error, OBJSTORE_REQ_MP_ABORT);
        if (error < 0) {
                objstore_op_answered(op, error);
                return;
        }
        if (http_request_status(req) == 404)
                log_debug("The incomplete upload of %s is gone already", u->key);
        else {
                log_info("Aborted an incomplete multipart upload of %s, initiated before the cutoff", u->key);
                op->aborted++;
        }
        op->next_upload++;
        objstore_sweep_continue(op);
}

static int objstore_sweep_abort(ObjstoreOp *op) {
        const ObjstoreUpload *u = &op->uploads[op->next_upload];
        _cleanup_free_ char *query = NULL;
        ObjstoreRequestArgs a = { .kind = OBJSTORE_REQ_MP_ABORT, .method = "DELETE", .key = u->key };
        int r;

        r = op->os->provider->mp_abort_query(u->upload_id, &query);
        if (r < 0)
                return r;
        a.query = query;
        r = objstore_request(op, &a, &op->req, &op->gen);
        if (r < 0)
                return r;
        http_request_set_accept_status(op->req, 404); /* completed or aborted meanwhile */
        return http_request_start(op->req, objstore_on_swept, op);
}

static bool marker_eq(const char *a, const char *b) {
        return a == b || (a && b && streq(a, b));
}

static void objstore_on_uploads_listed(HttpRequest *req, int error, void *userdata) {
        _cleanup_free_ char *key_marker = NULL, *id_marker = NULL;
        ObjstoreOp *op = userdata;
        const char *body;
        size_t len;

        error = objstore_request_error(op->os, req, error, OBJSTORE_REQ_MP_LIST);
        if (error == 0) {
                body = http_request_body(req, &len);
                error = op->os->provider->mp_list_parse(op, body, len, &key_marker, &id_marker);
        }
        if (error == 0 && (key_marker || id_marker) && marker_eq(op->token, key_marker) &&
            marker_eq(op->upload_id_marker, id_marker))
                error = -EBADMSG; /* would loop forever */
        if (error < 0) {
                objstore_op_answered(op, error);
                return;
        }
        if (key_marker || id_marker) {
                free(op->token);
                op->token = TAKE_PTR(key_marker);
                free(op->upload_id_marker);
                op->upload_id_marker = TAKE_PTR(id_marker);
        } else
                op->listed = true;
        objstore_sweep_continue(op);
}

static int objstore_sweep_list_page(ObjstoreOp *op) {
        _cleanup_free_ char *query = NULL;
        int r;

        r = op->os->provider->mp_list_query(op->list_prefix, op->token, op->upload_id_marker,
                                            op->os->test_max_keys, &query);
        if (r < 0)
                return r;
        return objstore_get_xml(op, OBJSTORE_REQ_MP_LIST, query, objstore_on_uploads_listed);
}

int objstore_sweep_next(ObjstoreOp *op) {
        if (!op->listed)
                return objstore_sweep_list_page(op);
        if (op->next_upload < op->n_uploads)
                return objstore_sweep_abort(op);
        return -EINVAL; /* finished by objstore_sweep_continue(), never run again */
}
