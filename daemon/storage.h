/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "curl-glue.h"
#include "macro.h"
#include "time-util.h"
#include "worker.h"

/* An object store: file:// (local disk or a mounted share), s3:// (and S3-compatible stores,
 * GCS through its interoperability API), gs://, az://. The snapshot engine (snapshot.c) sees
 * only this interface; each backend is one file with one vtable.
 *
 * Keys are relative to the store's root (the URL's bucket/container and prefix), '/'-separated,
 * never starting with '/', never containing "." or ".." components (store_key_is_valid()).
 *
 * Every operation is asynchronous on the store's event loop: it returns 0 and later calls its
 * done callback exactly once — never from within the call itself — or returns a negative errno
 * and never calls it. Errors: -ENOENT no such key; -EEXIST a create-only put found the key;
 * -EBADMSG the store says the bytes did not match their checksum, or the bytes read back do not;
 * -EACCES/-EPERM credentials refused; -ETIMEDOUT; -EIO and others for the rest. Backends retry
 * transient failures (5xx, SlowDown, resets) themselves with back-off and jitter. Backends never
 * log secrets (keys, tokens, signatures, SAS). */

typedef struct Store Store;

typedef struct StoreObject {
        char *key;
        uint64_t size;
        usec_t modified;        /* CLOCK_REALTIME, USEC_INFINITY when unknown */
} StoreObject;

void store_objects_free(StoreObject *objects, size_t n);

typedef void (*StoreDone)(Store *s, int error, void *userdata);
/* data: owned by the callback (free()), NUL-terminated, NULL on error. */
typedef void (*StoreDataDone)(Store *s, int error, char *data, size_t len, void *userdata);
/* objects: owned by the callback (store_objects_free()), sorted by key. */
typedef void (*StoreListDone)(Store *s, int error, StoreObject *objects, size_t n, void *userdata);
/* aborted: how many uploads were aborted, also on error (those before it). */
typedef void (*StoreSweepDone)(Store *s, int error, uint64_t aborted, void *userdata);

typedef struct StorePut {
        const char *key;
        /* The bytes: [offset, offset + len) of fd (the caller keeps fd open until done), or,
         * when fd < 0, buf (copied by the call). */
        int fd;
        uint64_t offset;
        uint64_t len;
        const void *buf;
        const char *sha256;     /* hex SHA-256 of the whole object; backends send/verify it where they can */
        /* Multipart: when n_parts > 1 the object is uploaded in parts of part_size bytes (the last
         * one shorter) with these hex SHA-256s, part_size from store_part_size(); in parallel,
         * at most storage.concurrency at a time; aborted on failure (nothing half-visible). */
        uint64_t part_size;
        char **part_sha256;
        size_t n_parts;
        bool create_only;       /* fail with -EEXIST when the key exists (manifests, markers) */
        const char *content_type; /* NULL: application/octet-stream */
} StorePut;

/* Progress of puts and gets, for status and transfer-progress records: bytes newly moved since
 * the last report, over all transfers of the store. */
typedef void (*StoreProgress)(Store *s, uint64_t bytes, void *userdata);

typedef struct StoreVTable {
        const char *scheme;     /* "file", "s3", "gs", "az" */
        uint64_t min_part_size; /* every part but the last at least this */
        uint64_t max_part_size;
        unsigned max_parts;

        /* Parses s->location (what follows "scheme://"), sets up credentials; may start async
         * work (token fetch) that later operations wait for. */
        int (*open)(Store *s, void **ret_data);
        void (*close)(void *data);

        int (*put)(Store *s, const StorePut *p, StoreDone done, void *userdata);
        /* Writes [offset, offset + len) of key to out_fd at out_offset (pwrite). len 0: the rest of the object. */
        int (*get)(Store *s, const char *key, uint64_t offset, uint64_t len, int out_fd, uint64_t out_offset,
                   StoreDone done, void *userdata);
        /* A whole small object into memory; -EFBIG when larger than max. */
        int (*get_data)(Store *s, const char *key, size_t max, StoreDataDone done, void *userdata);
        /* Every key that starts with prefix (recursively), with sizes and modification times. */
        int (*list)(Store *s, const char *prefix, StoreListDone done, void *userdata);
        /* Deleting a missing key is success. */
        int (*remove)(Store *s, const char *key, StoreDone done, void *userdata);
        /* Optional (NULL: the store has nothing to sweep): aborts the incomplete multipart uploads
         * of keys that start with prefix and were initiated before initiated_before
         * (CLOCK_REALTIME, the store's clock). An upload whose answer to its begin request was
         * lost is known to nobody and would stay (and cost) until a bucket lifecycle rule aborts
         * it. Uploads of unknown age are kept; one gone meanwhile counts as success. s3:// and
         * gs:// (ListMultipartUploads, AbortMultipartUpload); not file:// (no such uploads) nor
         * az:// (Azure discards uncommitted blocks by itself after 7 days). */
        int (*sweep_uploads)(Store *s, const char *prefix, usec_t initiated_before, StoreSweepDone done,
                             void *userdata);
        /* Stops everything in flight; no done callback is called afterwards. The caller may close
         * the fds it passed once this returns (backends keep their own duplicates if they need
         * them); a get already in progress may still finish the block it is writing (through
         * the backend's own duplicate of out_fd). A get beyond the end of an object fails with
         * -ERANGE. */
        void (*cancel_all)(Store *s);
} StoreVTable;

extern const StoreVTable store_file_vtable;
extern const StoreVTable store_s3_vtable;
extern const StoreVTable store_gs_vtable;
extern const StoreVTable store_az_vtable;

struct Store {
        sd_event *event;
        CurlGlue *glue;
        Worker *worker;         /* for blocking file I/O and hashing */
        const Config *config;   /* storage.* (endpoint, region, credentials_file, ca_file, concurrency, part_size_mb) */
        char *url;
        char *location;         /* the URL without "scheme://" */
        const StoreVTable *vt;
        void *data;
        unsigned concurrency;   /* storage.concurrency, ≥ 1 */
        StoreProgress progress;
        void *progress_userdata;
};

typedef struct StoreParams {
        sd_event *event;
        CurlGlue *glue;
        Worker *worker;
        const Config *config;
        const char *url;        /* NULL: config->storage_url */
} StoreParams;

int store_new(Store **ret, const StoreParams *p);
Store *store_free(Store *s);
DEFINE_CLEANUP_FUNC(Store *, store_free);

/* The part size for an object of size bytes: storage.part_size_mb when set, else automatic (at
 * least 16 MiB, grown so that size fits in max_parts), within the backend's limits. Returns size
 * itself (one part) when size ≤ that part size. */
uint64_t store_part_size(const Store *s, uint64_t size);

bool store_key_is_valid(const char *key);

/* The prefix part of a store URL (what follows the bucket or container: "", "a/b", "a/b/"): at
 * most 512 bytes and accepted by valid; returned with a trailing '/' unless empty. -EINVAL. */
int store_url_prefix(const char *rest, bool (*valid)(const char *), char **ret);
/* What follows "http://" or "https://" in an endpoint URL; NULL for any other scheme. */
const char *store_endpoint_host(const char *endpoint);

/* Called by backends as bytes move. */
void store_report_progress(Store *s, uint64_t bytes);
