/* SPDX-License-Identifier: MIT */
#pragma once

/* The shared core of the HTTP object stores (storage-s3.c, storage-gs.c, storage-az.c): their
 * operations and the queue of those waiting for credentials, the streamed ranged get, get_data,
 * list pagination, remove, single puts and the multipart/block upload pump (at most
 * storage.concurrency parts in flight, aborted on failure), the sweep of old incomplete uploads
 * (for providers that can list them), retries and cancellation.
 *
 * A backend supplies an ObjstoreProvider: how to build and authorize a request, what its error
 * bodies and list pages say, and the queries and bodies of its multipart steps. Its private
 * state starts with an Objstore (Store->data points at it), and its StoreVTable's put, get,
 * get_data, list, remove and cancel_all are the objstore_*() functions below (sweep_uploads too,
 * for a provider with mp_list_query and mp_list_parse).
 *
 * Every HTTP request retries transient failures itself (http.c: 5xx, resets, timeouts) with
 * back-off and jitter; the core adds: a new attempt at a failed multipart commit when its
 * error is retryable (commit_attempts), and — with auth_rejected — another go with new
 * credentials after the store refused them. */

#include "http.h"
#include "storage.h"

#define OBJSTORE_MD5_B64_SIZE 25U       /* base64 of an MD5 and a NUL */
#define OBJSTORE_CONNECT_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define OBJSTORE_XML_MAX (8U * 1024U * 1024U)   /* list pages: larger answers are refused */
#define OBJSTORE_LIST_MAX_OBJECTS 10000000U
#define OBJSTORE_COMMIT_TIMEOUT_USEC (10 * 60 * USEC_PER_SEC) /* completing a large object takes a while */

typedef struct Objstore Objstore;
typedef struct ObjstoreOp ObjstoreOp;
typedef struct ObjstorePart ObjstorePart;
typedef struct ObjstoreMd5Job ObjstoreMd5Job;
typedef struct ObjstoreProvider ObjstoreProvider;

typedef enum ObjstoreOpKind {
        OBJSTORE_OP_PUT,
        OBJSTORE_OP_GET,
        OBJSTORE_OP_GET_DATA,
        OBJSTORE_OP_LIST,
        OBJSTORE_OP_REMOVE,
        OBJSTORE_OP_SWEEP,              /* list the incomplete uploads, abort the old ones */
} ObjstoreOpKind;

/* The requests the core makes. */
typedef enum ObjstoreReq {
        OBJSTORE_REQ_PUT,               /* a whole object in one request */
        OBJSTORE_REQ_GET,
        OBJSTORE_REQ_LIST,
        OBJSTORE_REQ_REMOVE,
        OBJSTORE_REQ_MP_BEGIN,
        OBJSTORE_REQ_MP_PART,
        OBJSTORE_REQ_MP_COMMIT,
        OBJSTORE_REQ_MP_ABORT,
        OBJSTORE_REQ_MP_LIST,           /* a page of the incomplete uploads */
        _OBJSTORE_REQ_MAX,
} ObjstoreReq;

typedef enum ObjstorePartState {
        OBJSTORE_PART_PENDING,
        OBJSTORE_PART_RUNNING,          /* hashing or uploading */
        OBJSTORE_PART_DONE,
} ObjstorePartState;

struct ObjstorePart {
        ObjstoreOp *op;
        size_t i;
        ObjstorePartState state;
        HttpRequest *req;
        unsigned gen;                   /* the credentials generation the request carries */
        ObjstoreMd5Job *job;
        char *etag;
};

/* An incomplete upload that a sweep aborts. */
typedef struct ObjstoreUpload {
        char *key;                      /* the full key */
        char *upload_id;
} ObjstoreUpload;

struct ObjstoreOp {
        Objstore *os;
        ObjstoreOp *next, *prev;
        ObjstoreOpKind kind;
        bool waiting;                   /* for credentials */
        bool wake;
        bool started;                   /* its first step ran */
        unsigned auth_retries;
        StoreDone done;
        StoreDataDone data_done;
        StoreListDone list_done;
        StoreSweepDone sweep_done;
        void *userdata;
        char *key;                      /* the full key (prefix included) */
        HttpRequest *req;               /* the one request in flight besides the parts */
        unsigned gen;

        /* put */
        int fd;                         /* the caller's, or our own duplicate with dup_fds */
        uint64_t offset, len, part_size;
        void *buf;
        char *sha256;
        char **part_sha256;
        bool create_only, multipart, mp_begun;
        char *content_type;
        char *upload_id;
        ObjstoreMd5Job *job;            /* the single put's Content-MD5 */
        ObjstorePart *parts;
        size_t n_parts, next_part, parts_running, parts_done;
        unsigned commit_attempts;
        int error;

        /* get */
        int out_fd;                     /* the caller's, or our own duplicate with dup_fds */
        uint64_t out_offset, written;
        unsigned attempt_seen;
        size_t max;

        /* list */
        char *list_prefix;
        char *token;                    /* continuation token or marker */
        StoreObject *objects;
        size_t n_objects, n_allocated;

        /* sweep: list_prefix, and token as the key marker */
        usec_t cutoff;                  /* abort uploads initiated before this (CLOCK_REALTIME) */
        char *upload_id_marker;
        bool listed;                    /* all pages are in: aborting */
        ObjstoreUpload *uploads;
        size_t n_uploads, n_uploads_allocated, next_upload;
        uint64_t aborted;
};

struct Objstore {
        Store *store;
        const ObjstoreProvider *provider;
        char *prefix;                   /* "" or ends with '/' */
        ObjstoreOp *ops;
        unsigned test_max_keys;         /* provider->list_max_env */
};

/* What the core asks a provider to build. The provider adds the URL, its own headers and the
 * authorization; the core then sets the body, timeouts and callback. */
typedef struct ObjstoreRequestArgs {
        ObjstoreReq kind;
        ObjstoreOp *op;
        const char *method;
        const char *key;                /* the full key; NULL: the bucket or container itself */
        const char *query;              /* canonical, or NULL */
        char **headers;                 /* "Name: value" lines the core wants sent */
        uint64_t content_length;
        const char *payload_sha256;     /* hex SHA-256 of the body when known, else NULL */
        const char *content_md5;        /* base64, with provider->content_md5, else NULL */
} ObjstoreRequestArgs;

struct ObjstoreProvider {
        const char *name;                       /* in log messages: "S3" */
        const char *what[_OBJSTORE_REQ_MAX];    /* the requests' names in log messages: OBJSTORE_WHAT() */
        size_t size;                            /* of the backend's state, an Objstore first */
        const char *range_header;               /* "Range" */
        const char *meta_sha256_header;         /* "x-amz-meta-sha256" */
        const char *create_only_header;         /* "If-None-Match: *" */
        const char *error_code_header;          /* a header with the error code, or NULL */
        const char *list_max_env;               /* test hook: list in pages of N keys */
        bool dup_fds;                           /* keep our own duplicates of the callers' fds */
        bool part_sha256;                       /* multipart puts need every part's SHA-256 */
        bool part_etags;                        /* parts answer with an ETag that the commit lists */
        bool create_only_single;                /* a create_only put is always one request */
        unsigned commit_attempts;               /* ≥ 1 */

        /* Sets up the backend's state (zeroed but for its Objstore, which Store->data points at);
         * on failure close() follows. */
        int (*open)(Objstore *os);
        void (*close)(Objstore *os);    /* frees what open() set up, also when half done */
        /* > 0: op may run now; 0: it waits (the provider calls objstore_auth_ready() later);
         * < 0: it fails. op->started says whether this is its first step. */
        int (*auth)(Objstore *os, ObjstoreOp *op);
        /* Optional: the answer to a request that carried credentials generation gen refused
         * them; true when the operation may try again (with new ones). */
        bool (*auth_rejected)(ObjstoreOp *op, HttpRequest *req, unsigned gen);
        /* Optional: stops the provider's own work (credential fetches) in cancel_all. */
        void (*cancel)(Objstore *os);
        /* A new request for a, with *ret_gen the credentials generation it carries; through
         * objstore_request_new(). */
        int (*request)(Objstore *os, const ObjstoreRequestArgs *a, HttpRequest **ret, unsigned *ret_gen);

        /* Error documents: code and message (either may be NULL), and their errno. */
        int (*parse_error)(const char *xml, size_t len, char **ret_code, char **ret_message);
        int (*error_to_errno)(const char *code, const char *message, long status);

        int (*list_query)(const char *prefix, const char *token, unsigned max_keys, char **ret);
        /* Parses one page: objstore_list_add() for every entry; *ret_next the continuation, NULL
         * on the last page. */
        int (*list_parse)(ObjstoreOp *op, const char *xml, size_t len, char **ret_next);
        /* Optional: further checks of a successful get's answer. */
        int (*get_check)(ObjstoreOp *op, HttpRequest *req);
        /* Optional: the Content-MD5 of a buffer; set, every body carries one (computed in the
         * worker for file ranges, or left out without a worker). */
        int (*content_md5)(const void *data, size_t len, char ret[static OBJSTORE_MD5_B64_SIZE]);

        /* Multipart: the begin request's query (NULL: no begin request) and its answer. */
        const char *mp_begin_query;
        const char *mp_commit_method;
        int (*mp_begin_parse)(const char *xml, size_t len, char **ret_upload_id);
        int (*mp_part_query)(size_t i, const char *upload_id, char **ret);
        int (*mp_commit_query)(const char *upload_id, char **ret);
        int (*mp_commit_body)(char * const *etags, size_t n, char **ret);
        int (*mp_commit_parse)(const char *xml, size_t len);    /* optional: a 2xx can still fail */
        int (*mp_abort_query)(const char *upload_id, char **ret); /* NULL: nothing to abort */
        /* Optional, both or neither: the incomplete uploads under prefix, one page (markers NULL
         * for the first; max 0: the server's default), for sweep_uploads. mp_list_parse calls
         * objstore_upload_add() for every upload; the next page's markers go to *ret_key_marker
         * and *ret_upload_id_marker, both NULL on the last page. */
        int (*mp_list_query)(const char *prefix, const char *key_marker, const char *upload_id_marker,
                             unsigned max, char **ret);
        int (*mp_list_parse)(ObjstoreOp *op, const char *xml, size_t len, char **ret_key_marker,
                             char **ret_upload_id_marker);
};

#define OBJSTORE_WHAT(put, get, list, remove, begin, part, commit, abort)                              \
        {                                                                                               \
                [OBJSTORE_REQ_PUT] = put, [OBJSTORE_REQ_GET] = get, [OBJSTORE_REQ_LIST] = list,         \
                [OBJSTORE_REQ_REMOVE] = remove, [OBJSTORE_REQ_MP_BEGIN] = begin,                        \
                [OBJSTORE_REQ_MP_PART] = part, [OBJSTORE_REQ_MP_COMMIT] = commit,                       \
                [OBJSTORE_REQ_MP_ABORT] = abort, [OBJSTORE_REQ_MP_LIST] = "ListMultipartUploads",       \
        }

/* A backend's StoreVTable entries but open and close (and sweep_uploads, for a provider with
 * mp_list_query). */
#define OBJSTORE_VTABLE_OPS                                                     \
        .put = objstore_put, .get = objstore_get, .get_data = objstore_get_data, \
        .list = objstore_list, .remove = objstore_remove, .cancel_all = objstore_cancel_all

/* ---- for backends ---- */

/* A backend's open and close: provider->size bytes of state, set up by provider->open. */
int objstore_open(Store *s, const ObjstoreProvider *provider, void **ret_data);
void objstore_close(void *data);

/* storage.endpoint into *ret when set, after check(); logs what it expected when not. */
int objstore_endpoint(Store *s, int (*check)(const char *endpoint), const char *expected, char **ret);

/* A line of a credentials file without the blanks around it (in place). */
char *objstore_strip(char *s);

/* The credentials are there (error 0) or will not come: starts or fails the waiting ops. */
void objstore_auth_ready(Objstore *os, int error);

/* An HTTP request with the common settings (CA file, TLS verification, retries, timeouts). */
int objstore_request_new(Objstore *os, const char *method, const char *url, HttpRequest **ret);
/* The meta SHA-256 and (with create_only and op->create_only) create-only headers of op's object. */
int objstore_object_headers(ObjstoreOp *op, bool create_only, char ***headers);
/* From list_parse: an entry with its full key; those outside the listed prefix are skipped. */
int objstore_list_add(ObjstoreOp *op, const char *key, uint64_t size, usec_t modified);
/* From mp_list_parse: an incomplete upload with its full key and start time (USEC_INFINITY:
 * unknown); only those under the listed prefix and initiated before the cutoff are aborted. */
int objstore_upload_add(ObjstoreOp *op, const char *key, const char *upload_id, usec_t initiated);

int objstore_put(Store *s, const StorePut *p, StoreDone done, void *userdata);
int objstore_get(Store *s, const char *key, uint64_t offset, uint64_t len, int out_fd, uint64_t out_offset,
                 StoreDone done, void *userdata);
int objstore_get_data(Store *s, const char *key, size_t max, StoreDataDone done, void *userdata);
int objstore_list(Store *s, const char *prefix, StoreListDone done, void *userdata);
int objstore_remove(Store *s, const char *key, StoreDone done, void *userdata);
/* -EOPNOTSUPP when the provider cannot list incomplete uploads. */
int objstore_sweep_uploads(Store *s, const char *prefix, usec_t initiated_before, StoreSweepDone done,
                           void *userdata);
void objstore_cancel_all(Store *s);

/* ---- inside the core (objstore-*.c) ---- */

usec_t objstore_transfer_timeout(uint64_t bytes);
/* Runs op's next step now, or once the credentials are there. */
int objstore_op_run(ObjstoreOp *op);
void objstore_op_finish(ObjstoreOp *op, int error);
/* Finishes op with error; a multipart put is aborted first. */
void objstore_op_fail(ObjstoreOp *op, int error);
/* The common end of a request of op: another go after refused credentials, else done. */
void objstore_op_answered(ObjstoreOp *op, int error);
/* The provider's request a for op into *ret (which it replaces), *ret_gen its credentials
 * generation. */
int objstore_request(ObjstoreOp *op, ObjstoreRequestArgs *a, HttpRequest **ret, unsigned *ret_gen);
/* A GET of the bucket/container with query whose XML answer is bounded (listings): started as
 * op->req, done called with op. */
int objstore_get_xml(ObjstoreOp *op, ObjstoreReq kind, const char *query, HttpRequestDone done);
/* The errno of a finished request: the error document's code when there is one. Logs the
 * store's code and message (never anything secret) at debug level. */
int objstore_request_error(Objstore *os, HttpRequest *req, int error, ObjstoreReq what);
int objstore_set_body(ObjstoreOp *op, HttpRequest *req, uint64_t off, uint64_t len);

int objstore_begin_get(ObjstoreOp *op);
int objstore_list_next(ObjstoreOp *op);
int objstore_begin_remove(ObjstoreOp *op);
int objstore_begin_put(ObjstoreOp *op);
/* Sends the single put (part NULL) or part with its Content-MD5 when the provider wants one. */
int objstore_md5_send(ObjstoreOp *op, ObjstorePart *part, uint64_t offset, uint64_t len);
void objstore_md5_cancel(ObjstoreMd5Job *job);
int objstore_put_single_request(ObjstoreOp *op, const char *md5);
int objstore_mp_begin(ObjstoreOp *op);
/* Keeps at most storage.concurrency parts in flight; commits once all are there. */
int objstore_mp_pump(ObjstoreOp *op);
int objstore_mp_part_request(ObjstorePart *part, const char *md5);
void objstore_mp_fail(ObjstoreOp *op, int error);
/* The sweep's next step: the next page of the listing, or the next abort; finishes op after the
 * last. */
int objstore_sweep_next(ObjstoreOp *op);
