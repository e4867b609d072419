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
        char *instance_id;      /* the writer */
        char *boot_id;
        char *hostname;
        char *parent;           /* NULL when none */
        /* create only: what this snapshot had to send (0 when everything was in the store). */
        uint64_t uploaded_bytes;
        uint64_t uploaded_objects;
} SnapshotSummary;

void snapshot_summary_done(SnapshotSummary *i);
int snapshot_summary_from_manifest(const Manifest *m, SnapshotSummary *ret);

/* ---- create */

typedef struct SnapshotCreate SnapshotCreate;

/* bytes: newly hashed or uploaded since the last call; phase "hash" or "upload". */
typedef void (*SnapshotProgress)(const char *phase, uint64_t bytes, void *userdata);
/* info: valid during the call (copy what you keep); NULL on error. message: NULL on success. */
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
        SnapshotProgress progress;      /* optional */
        SnapshotCreateDone done;
        void *userdata;
} SnapshotCreateParams;

int snapshot_create_start(const SnapshotCreateParams *p, SnapshotCreate **ret);
SnapshotCreate *snapshot_create_free(SnapshotCreate *c);
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
DEFINE_CLEANUP_FUNC(SnapshotRestore *, snapshot_restore_free);

/* ---- shared by snapshot*.c (internal) */

/* Opens path (relative, '/'-separated) below dir_fd one component at a time, never through a
 * symlink: every component with O_NOFOLLOW. flags apply to the last component. */
int snapshot_openat_beneath(int dir_fd, const char *path, int flags, mode_t mode);
/* The ids of the manifests in a listing of "<job>/<task>/manifests/", sorted oldest first. */
int snapshot_ids_from_listing(const StoreObject *objects, size_t n, const char *job, const char *task,
                              char (**ret)[SNAPSHOT_ID_MAX], size_t *ret_n);
