/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "macro.h"
#include "manifest.h"
#include "storage.h"
#include "time-util.h"
#include "worker.h"

/* The snapshot engine: create (scan, hash, upload what the store lacks, commit the manifest last),
 * list (the committed snapshots of a task) and restore (download, verify, rename into place).
 * The format and layout are manifest.h's (docs/snapshot-format.md).
 *
 * Every operation is asynchronous on the store's event loop: *_start() returns 0 and later calls
 * its done callback exactly once (never from within the start call), or returns a negative errno
 * and never calls it. Blocking work (scanning, hashing, local file I/O) runs in worker jobs. The
 * done callback may free the operation. Freeing an operation before it is done cancels it (no
 * callback; a restore in flight leaves its temporary directory to the next restore's cleanup, a
 * create leaves uploaded objects that retention removes after its grace period).
 *
 * Errors given to done (with a one-line message that names the problem):
 *   create:  -ENOENT no checkpoint directory; -EBUSY a file kept changing while being read;
 *            -ESTALE may_commit said no;
 *            -EEXIST no free snapshot id after several tries (other writers); store errors.
 *   list:    store errors (invalid manifests are skipped and reported as warnings).
 *   restore: -ENOENT no (such) snapshot; -EBADMSG verification failed (manifest, object missing
 *            or of the wrong size, SHA-256 mismatch); -ENOTEMPTY dest is not empty and force is
 *            off; -ENOTDIR dest is not a directory; store errors; local I/O errors. */

#define SNAPSHOT_COMMIT_ATTEMPTS 5U     /* create-only manifest puts before giving up */
#define SNAPSHOT_HASH_ATTEMPTS 3U       /* reads of a file that changes while being hashed */
#define SNAPSHOT_RESTORE_TMP_INFIX ".trainsupd-restore-"
#define SNAPSHOT_RESTORE_OLD_INFIX ".trainsupd-old-"
#define SNAPSHOT_STAT_CACHE_DIR "stat-cache"    /* <state_dir>/stat-cache/<job>/<task>.json */

typedef struct SnapshotSummary {
        char id[SNAPSHOT_ID_MAX];
        uint64_t seq;
        usec_t committed_at;    /* the id's time (CLOCK_REALTIME, ms) */
        uint64_t bytes;         /* sum of the files' sizes */
        uint64_t files;         /* file entries */
        uint64_t newest_mtime_ns;       /* the newest file's modification time (0: no file) */
        char *instance_id;      /* the writer */
        char *boot_id;
        char *hostname;
        char *parent;           /* NULL when none */
        /* create only: what this snapshot had to send (0 when everything was in the store). */
        uint64_t uploaded_bytes;
        uint64_t uploaded_objects;
        /* create only: what the retention run after the commit removed (storage.keep). */
        uint64_t removed_snapshots;
        uint64_t removed_objects;
        uint64_t removed_bytes;         /* data objects */
} SnapshotSummary;

void snapshot_summary_done(SnapshotSummary *i);
int snapshot_summary_from_manifest(const Manifest *m, SnapshotSummary *ret);

/* ---- create */

typedef struct SnapshotCreate SnapshotCreate;

/* bytes: newly hashed or uploaded since the last call; phase "hash" or "upload"; once, before
 * the first upload, phase "plan" with the total bytes the store lacks (0: nothing to send). */
typedef void (*SnapshotProgress)(const char *phase, uint64_t bytes, void *userdata);
/* info: valid during the call (copy what you keep); NULL on error. message: NULL on success, except
 * when the retention run after the commit had a problem: error is then 0 (the snapshot is
 * committed) and message says what retention could not do. */
typedef void (*SnapshotCreateDone)(SnapshotCreate *c, int error, const SnapshotSummary *info, const char *message,
                                   void *userdata);

typedef struct SnapshotCreateParams {
        Store *store;
        Worker *worker;
        const Config *config;           /* job_id, exclude */
        const TaskConfig *task;         /* name, checkpoint_dir */
        const char *instance_id;        /* the writer (snapshot_writer_field_is_valid()) */
        const char *boot_id;
        const char *hostname;
        const char *state_dir;          /* for the stat cache; NULL: no cache */
        /* After the commit, when config->storage_keep > 0, retention keeps that many snapshots;
         * objects no kept manifest references are removed once older than retention_grace
         * (0: SNAPSHOT_RETENTION_GRACE_USEC). */
        usec_t retention_grace;
        SnapshotProgress progress;      /* optional */
        /* Optional: the manifest is committed (info as in done). done follows once retention and
         * the stat cache are through; a daemon acting on a notice moves on at this point. */
        void (*committed)(SnapshotCreate *c, const SnapshotSummary *info, void *userdata);
        /* Optional: asked right before the manifest is written; false fails the create with
         * -ESTALE (the directory changed while it was read: the files may not belong together). */
        bool (*may_commit)(SnapshotCreate *c, void *userdata);
        SnapshotCreateDone done;
        void *userdata;
} SnapshotCreateParams;

int snapshot_create_start(const SnapshotCreateParams *p, SnapshotCreate **ret);
SnapshotCreate *snapshot_create_free(SnapshotCreate *c);
/* Work of c still in flight (store calls, worker jobs), also after its done callback: free the
 * store only once this is false, or the store drops their callbacks and c leaks. */
bool snapshot_create_busy(const SnapshotCreate *c);
DEFINE_CLEANUP_FUNC(SnapshotCreate *, snapshot_create_free);

/* ---- list */

typedef struct SnapshotList SnapshotList;

/* infos: committed snapshots, oldest first; warnings: one line per manifest skipped (invalid, or
 * unreadable). Both valid until the operation is freed. */
typedef void (*SnapshotListDone)(SnapshotList *l, int error, const SnapshotSummary *infos, size_t n,
                                 char * const *warnings, void *userdata);

int snapshot_list_start(Store *store, const char *job, const char *task, SnapshotListDone done, void *userdata,
                        SnapshotList **ret);
SnapshotList *snapshot_list_free(SnapshotList *l);
DEFINE_CLEANUP_FUNC(SnapshotList *, snapshot_list_free);

/* ---- restore */

typedef struct SnapshotRestore SnapshotRestore;

/* info: the snapshot restored (valid during the call), NULL on error; message: NULL on success. */
typedef void (*SnapshotRestoreDone)(SnapshotRestore *r, int error, const SnapshotSummary *info, const char *message,
                                    void *userdata);

typedef struct SnapshotRestoreParams {
        Store *store;
        Worker *worker;
        const char *job;
        const char *task;
        const char *id;         /* NULL: the newest snapshot whose manifest parses and whose objects exist */
        const char *dest;       /* absolute or relative directory path */
        bool force;             /* a non-empty dest is moved aside to <dest>.trainsupd-old-<time> */
        SnapshotProgress progress;      /* optional: "download" */
        SnapshotRestoreDone done;
        void *userdata;
} SnapshotRestoreParams;

int snapshot_restore_start(const SnapshotRestoreParams *p, SnapshotRestore **ret);
SnapshotRestore *snapshot_restore_free(SnapshotRestore *r);
/* As snapshot_create_busy(). */
bool snapshot_restore_busy(const SnapshotRestore *r);
DEFINE_CLEANUP_FUNC(SnapshotRestore *, snapshot_restore_free);

/* ---- shared by snapshot*.c (internal) */

/* Opens path (relative, '/'-separated) below dir_fd one component at a time, never through a
 * symlink: every component with O_NOFOLLOW. flags apply to the last component. */
int snapshot_openat_beneath(int dir_fd, const char *path, int flags, mode_t mode);
/* The ids of the manifests in a listing of "<job>/<task>/manifests/", sorted oldest first. */
int snapshot_ids_from_listing(const StoreObject *objects, size_t n, const char *job, const char *task,
                              char (**ret)[SNAPSHOT_ID_MAX], size_t *ret_n);

/* ---- retention (snapshot-retention.c)
 *
 * Keeps the newest `keep` manifests of a task (by id, whether they parse or not: a manifest newer
 * than a kept one is never removed), removes the older ones, oldest first, then removes the data
 * objects that no remaining manifest references and whose modification time (the store's) is
 * older than grace: a writer elsewhere may be uploading the objects of a snapshot it has not
 * committed yet. An object of unknown age is kept. The remaining manifests are those of a second
 * listing made after the removals (so snapshots committed meanwhile count too); when one of them
 * cannot be read or parsed (or is from a newer trainsupd), no data object is removed at all.
 * Only keys of the form "<job>/<task>/data/<sha256>" are ever removed as data. Last, on stores
 * with sweep_uploads, the incomplete multipart uploads under "<job>/<task>/data/" initiated more
 * than grace ago are aborted (those whose begin answer was lost: their writer never learnt their
 * upload id); a failure there is reported like the others.
 *
 * create never reuses an object that its parent manifest (the newest at its start, always among
 * the kept ones) does not reference: such an object is uploaded again, which also renews its
 * modification time, so the grace period protects it until the commit. See docs/snapshot-format.md
 * "Retention".
 *
 * Errors given to done: store errors (listing, reading, removing, sweeping); -EBADMSG (or
 * -EPROTONOSUPPORT, -EFBIG) when a remaining manifest is unusable and data was left alone
 * (result->data_skipped). result is never NULL: what was done up to the error. */

#define SNAPSHOT_RETENTION_GRACE_USEC (3600U * USEC_PER_SEC)

typedef struct SnapshotRetention SnapshotRetention;

typedef struct SnapshotRetentionResult {
        uint64_t manifests_kept;        /* in the second listing */
        uint64_t manifests_removed;
        uint64_t manifest_bytes_removed;
        uint64_t objects_removed;
        uint64_t bytes_removed;
        uint64_t objects_referenced;    /* in the store and referenced: kept */
        uint64_t objects_young;         /* unreferenced, younger than grace: kept */
        uint64_t objects_unknown_age;   /* unreferenced, no modification time: kept */
        uint64_t objects_foreign;       /* under data/ but not a data object key: ignored */
        uint64_t uploads_aborted;       /* incomplete multipart uploads under data/, older than grace */
        bool data_skipped;              /* no data object removed: a remaining manifest is unusable */
} SnapshotRetentionResult;

/* message: NULL on success, else one line naming the problem. Both valid during the call. */
typedef void (*SnapshotRetentionDone)(SnapshotRetention *r, int error, const SnapshotRetentionResult *result,
                                      const char *message, void *userdata);

/* -EINVAL for keep 0 or an invalid job or task. */
int snapshot_retention_start(Store *store, const char *job, const char *task, unsigned keep, usec_t grace,
                             SnapshotRetentionDone done, void *userdata, SnapshotRetention **ret);
SnapshotRetention *snapshot_retention_free(SnapshotRetention *r);
DEFINE_CLEANUP_FUNC(SnapshotRetention *, snapshot_retention_free);

/* ---- the job's completion marker, "<job>/COMPLETED.json" (format: manifest.h, JobCompletion) */

typedef struct SnapshotMark SnapshotMark;

/* result: 1 the marker was written; 0 it was already there (an earlier run or another writer
 * completed the job; it is not read back); negative errno on failure, with message. */
typedef void (*SnapshotMarkDone)(SnapshotMark *m, int result, const char *message, void *userdata);

typedef struct SnapshotMarkParams {
        Store *store;
        const Config *config;           /* job_id, tasks */
        const char *instance_id;        /* the writer */
        const char *boot_id;
        const char *hostname;
        /* config->n_tasks entries, in config->tasks order: each task's last committed snapshot id,
         * or NULL when it never committed one. NULL: none for every task. */
        const char * const *last_snapshots;
        usec_t completed_at;            /* CLOCK_REALTIME; 0: now */
        SnapshotMarkDone done;
        void *userdata;
} SnapshotMarkParams;

/* Writes the marker create-only. -EINVAL (no callback) when the marker cannot be built. */
int snapshot_mark_completed_start(const SnapshotMarkParams *p, SnapshotMark **ret);
SnapshotMark *snapshot_mark_free(SnapshotMark *m);
DEFINE_CLEANUP_FUNC(SnapshotMark *, snapshot_mark_free);

typedef enum SnapshotCompletionState {
        SNAPSHOT_COMPLETION_ABSENT,
        SNAPSHOT_COMPLETION_PRESENT,
        SNAPSHOT_COMPLETION_INVALID,    /* there, but unparseable, too large, of another job or of a newer version */
        _SNAPSHOT_COMPLETION_STATE_MAX,
        _SNAPSHOT_COMPLETION_STATE_INVALID = -EINVAL,
} SnapshotCompletionState;

const char *snapshot_completion_state_to_string(SnapshotCompletionState s);
SnapshotCompletionState snapshot_completion_state_from_string(const char *s);

typedef struct SnapshotCompletionCheck SnapshotCompletionCheck;

/* error: a store error (the state is unknown; state is _SNAPSHOT_COMPLETION_STATE_INVALID), else 0.
 * marker: the parsed marker when PRESENT, else NULL; message: why INVALID, or the error. Both valid
 * during the call. */
typedef void (*SnapshotCompletionCheckDone)(SnapshotCompletionCheck *c, int error, SnapshotCompletionState state,
                                            const JobCompletion *marker, const char *message, void *userdata);

int snapshot_completion_check_start(Store *store, const char *job, SnapshotCompletionCheckDone done, void *userdata,
                                    SnapshotCompletionCheck **ret);
SnapshotCompletionCheck *snapshot_completion_check_free(SnapshotCompletionCheck *c);
DEFINE_CLEANUP_FUNC(SnapshotCompletionCheck *, snapshot_completion_check_free);
