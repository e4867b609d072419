/* SPDX-License-Identifier: MIT */
/* Restore: check dest (worker) → choose the snapshot (list manifests and data/, newest first: a
 * manifest that parses, sits at its own key, and whose objects all exist with the right sizes) →
 * build the tree in <dest>.trainsupd-restore-XXXXXX (worker; openat-family calls relative to dir
 * fds, O_NOFOLLOW and O_EXCL everywhere) → ranged, parallel downloads into the files → verify each
 * file's size and SHA-256, set its mode and mtime, fsync (worker) → directory modes, fsync, rename
 * into place (worker). Any failure removes the temporary directory; dest is only touched by the
 * final rename (with force, its old content is moved aside, never deleted). */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "fs-util.h"
#include "log.h"
#include "sha256.h"
#include "snapshot.h"
#include "strv.h"

typedef struct RestoreFile {
        SnapshotRestore *r;
        const ManifestEntry *e;
        int fd;
        uint64_t next_offset;           /* of the next range to request */
        uint64_t range_size;
        size_t gets_running;
        struct RestoreFile *queue_next; /* in r's queue of files with ranges to request */
} RestoreFile;

struct SnapshotRestore {
        unsigned n_ref;
        bool cancelled, finished;
        atomic_bool stop;
        Store *store;
        Worker *worker;
        char *job, *task, *want_id, *dest;
        bool force;
        SnapshotProgress progress;
        SnapshotRestoreDone done;
        void *userdata;

        char *error;                    /* thread-side failure text */
        char *dest_real;                /* dest resolved (when it exists), or dest */
        mode_t dest_mode;
        char (*ids)[SNAPSHOT_ID_MAX];
        size_t n_ids, cand;             /* candidates are tried from n_ids - 1 down */
        bool ids_listed, objects_listed;
        StoreObject *objects;
        size_t n_objects;
        Manifest *m;
        SnapshotSummary info;

        char *tmp_path;
        int tmp_fd;
        bool swapped;                   /* the tree is in place: nothing to clean up */
        bool exchanged;                 /* tmp_path now holds dest's old content: never remove it */
        char *old_path;
        RestoreFile *files;
        size_t n_files, next_file, files_open, files_done, gets_running;
        RestoreFile *queue_head, *queue_tail;
};

static void restore_unref(SnapshotRestore *r);

static SnapshotRestore *restore_ref(SnapshotRestore *r) {
        r->n_ref++;
        return r;
}

static bool restore_live(SnapshotRestore *r) {
        return !r->cancelled && !r->finished;
}

static int restore_submit(SnapshotRestore *r, WorkerFunc fn, WorkerDone done, void *arg) {
        int k;

        restore_ref(r);
        k = worker_submit(r->worker, fn, done, arg);
        if (k < 0)
                restore_unref(r);
        return k;
}

/* ---- removing the temporary tree (thread side), never following a link */

static int rm_rf_children(int dfd, unsigned depth) {
        DIR *d;
        struct dirent *de;
        int ret = 0;

        if (depth > 256)
                return -ELOOP;
        d = fdopendir(dfd);
        if (!d) {
                safe_close(dfd);
                return -errno;
        }
        while ((errno = 0, de = readdir(d))) {
                int cfd;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) >= 0)
                        continue;
                if (errno != EISDIR && errno != EPERM) {
                        ret = ret ?: -errno;
                        continue;
                }
                cfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (cfd < 0) {
                        ret = ret ?: -errno;
                        continue;
                }
                (void) fchmod(cfd, 0700);
                (void) rm_rf_children(cfd, depth + 1);
                if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0)
                        ret = ret ?: -errno;
        }
        closedir(d);
        return ret;
}

static int rm_rf(const char *path) {
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        (void) rm_rf_children(fd, 0);
        return rmdir(path) < 0 && errno != ENOENT ? -errno : 0;
}

/* ---- lifetime */

static void restore_destroy(SnapshotRestore *r) {
        for (size_t i = 0; i < r->n_files; i++)
                safe_close(r->files[i].fd);
        free(r->files);
        if (r->tmp_path && !r->swapped && !r->exchanged)
                (void) rm_rf(r->tmp_path); /* cancelled: no job is running any more */
        safe_close(r->tmp_fd);
        free(r->tmp_path);
        free(r->old_path);
        manifest_free(r->m);
        snapshot_summary_done(&r->info);
        store_objects_free(r->objects, r->n_objects);
        free(r->ids);
        free(r->error);
        free(r->dest_real);
        free(r->job);
        free(r->task);
        free(r->want_id);
        free(r->dest);
        free(r);
}

static void restore_unref(SnapshotRestore *r) {
        assert(r->n_ref > 0);
        if (--r->n_ref == 0)
                restore_destroy(r);
}

bool snapshot_restore_busy(const SnapshotRestore *r) {
        return r && r->n_ref > 1;
}

SnapshotRestore *snapshot_restore_free(SnapshotRestore *r) {
        if (!r)
                return NULL;
        r->cancelled = true;
        atomic_store(&r->stop, true);
        restore_unref(r);
        return NULL;
}

static void restore_deliver(SnapshotRestore *r, int error, const char *msg) {
        r->finished = true;
        restore_ref(r);
        r->done(r, error, error < 0 ? NULL : &r->info, msg, r->userdata);
        restore_unref(r);
}

typedef struct RestoreFailure {
        SnapshotRestore *r;
        int error;
        char *msg;
} RestoreFailure;

static int restore_cleanup_job(void *arg) {
        RestoreFailure *f = arg;

        return rm_rf(f->r->tmp_path);
}

static void restore_on_cleaned(int result, void *arg) {
        RestoreFailure *f = arg;
        SnapshotRestore *r = f->r;

        if (result < 0)
                log_warning_errno(result, "Cannot remove %s, ignoring: %m", r->tmp_path);
        else
                r->tmp_path = mfree(r->tmp_path);
        if (!r->cancelled)
                restore_deliver(r, f->error, f->msg ?: "out of memory");
        free(f->msg);
        free(f);
        restore_unref(r);
}

/* Fails the restore: once nothing of ours runs any more the temporary tree is removed (worker),
 * then done is called. */
_printf_(3, 4) static void restore_fail(SnapshotRestore *r, int error, const char *format, ...) {
        RestoreFailure *f;
        va_list ap;

        if (!restore_live(r))
                return;
        r->finished = true;
        atomic_store(&r->stop, true);
        f = calloc(1, sizeof(RestoreFailure));
        if (f) {
                f->r = r;
                f->error = error;
                va_start(ap, format);
                if (vasprintf(&f->msg, format, ap) < 0)
                        f->msg = NULL;
                va_end(ap);
        }
        if (f && r->tmp_path && !r->swapped && !r->exchanged &&
            restore_submit(r, restore_cleanup_job, restore_on_cleaned, f) >= 0)
                return;
        r->finished = false;
        restore_deliver(r, error, f && f->msg ? f->msg : "out of memory");
        if (f)
                free(f->msg);
        free(f);
}

static void restore_report(SnapshotRestore *r, uint64_t bytes) {
        if (r->progress && bytes > 0)
                r->progress("download", bytes, r->userdata);
}

/* ---- step 1: dest (thread) */

static bool dir_is_empty_fd(int fd) {
        DIR *d = fdopendir(fd);
        struct dirent *de;
        bool empty = true;

        if (!d) {
                safe_close(fd);
                return false;
        }
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        empty = false;
                        break;
                }
        closedir(d);
        return empty;
}

/* 0: absent, 1: an empty directory, 2: a non-empty directory. */
static int dest_state(const char *path, mode_t *ret_mode) {
        struct stat st;
        int fd;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (ret_mode)
                *ret_mode = st.st_mode & 07777;
        return dir_is_empty_fd(fd) ? 1 : 2;
}

static int restore_check_job(void *arg) {
        SnapshotRestore *r = arg;
        struct stat st;
        int k;

        /* A dest that is a symlink (a checkpoint directory on another disk): work beside its target. */
        if (lstat(r->dest, &st) >= 0 && S_ISLNK(st.st_mode)) {
                r->dest_real = realpath(r->dest, NULL);
                if (!r->dest_real)
                        return -errno;
        } else if (!(r->dest_real = strdup(r->dest)))
                return -ENOMEM;
        k = dest_state(r->dest_real, &r->dest_mode);
        if (k < 0)
                return k;
        if (k == 2 && !r->force)
                return -ENOTEMPTY;
        return 0;
}

static void restore_list(SnapshotRestore *r);

static void restore_on_checked(int result, void *arg) {
        SnapshotRestore *r = arg;

        if (restore_live(r)) {
                if (result == -ENOTEMPTY)
                        restore_fail(r, result, "%s is not empty (use --force to move its content aside)", r->dest);
                else if (result == -ENOTDIR)
                        restore_fail(r, result, "%s exists and is not a directory", r->dest);
                else if (result < 0)
                        restore_fail(r, result, "Cannot use %s: %s", r->dest, strerror(-result));
                else
                        restore_list(r);
        }
        restore_unref(r);
}

/* ---- step 2: choose the snapshot */

static void restore_try_next(SnapshotRestore *r);

static int object_compare(const void *a, const void *b) {
        return strcmp(((const StoreObject *) a)->key, ((const StoreObject *) b)->key);
}

static void restore_on_ids(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        SnapshotRestore *r = userdata;
        int k;

        if (restore_live(r)) {
                k = error < 0 ? error : snapshot_ids_from_listing(objects, n, r->job, r->task, &r->ids, &r->n_ids);
                if (k < 0)
                        restore_fail(r, k, "Cannot list the snapshots of %s/%s in %s: %s", r->job, r->task, s->url,
                                     strerror(-k));
                else {
                        r->ids_listed = true;
                        r->cand = r->n_ids;
                        if (r->objects_listed)
                                restore_try_next(r);
                }
        }
        store_objects_free(objects, n);
        restore_unref(r);
}

static void restore_on_objects(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        SnapshotRestore *r = userdata;

        if (restore_live(r)) {
                if (error < 0)
                        restore_fail(r, error, "Cannot list the objects of %s/%s in %s: %s", r->job, r->task, s->url,
                                     strerror(-error));
                else {
                        r->objects = TAKE_PTR(objects);
                        r->n_objects = n;
                        if (n > 0)
                                qsort(r->objects, n, sizeof(StoreObject), object_compare);
                        r->objects_listed = true;
                        if (r->ids_listed)
                                restore_try_next(r);
                }
        }
        store_objects_free(objects, n);
        restore_unref(r);
}

static void restore_list(SnapshotRestore *r) {
        _cleanup_free_ char *mp = NULL, *dp = NULL;
        int k;

        if (asprintf(&mp, "%s/%s/manifests/", r->job, r->task) < 0 ||
            asprintf(&dp, "%s/%s/data/", r->job, r->task) < 0)
                return restore_fail(r, -ENOMEM, "Out of memory");
        k = r->store->vt->list(r->store, mp, restore_on_ids, restore_ref(r));
        if (k < 0) {
                restore_unref(r);
                return restore_fail(r, k, "Cannot list %s in %s: %s", mp, r->store->url, strerror(-k));
        }
        k = r->store->vt->list(r->store, dp, restore_on_objects, restore_ref(r));
        if (k < 0) {
                restore_unref(r);
                return restore_fail(r, k, "Cannot list %s in %s: %s", dp, r->store->url, strerror(-k));
        }
}

/* NULL when every file's object is in the listing with the file's size, else the problem. */
static int restore_objects_check(SnapshotRestore *r, const Manifest *m, char **ret_problem) {
        for (size_t i = 0; i < m->n_entries; i++) {
                const ManifestEntry *e = &m->entries[i];
                _cleanup_free_ char *key = NULL;
                const StoreObject *o;
                int k;

                if (e->type != MANIFEST_ENTRY_FILE)
                        continue;
                k = snapshot_object_key(r->job, r->task, e->sha256, &key);
                if (k < 0)
                        return k;
                o = r->n_objects > 0 ? bsearch(&(StoreObject) { .key = key }, r->objects, r->n_objects,
                                               sizeof(StoreObject), object_compare)
                                     : NULL;
                if (!o || o->size != e->size)
                        return asprintf(ret_problem, "%s: object %s %s", e->path, key,
                                        o ? "has the wrong size" : "is missing") < 0
                                       ? -ENOMEM
                                       : -EBADMSG;
        }
        return 0;
}

static void restore_prepare(SnapshotRestore *r);

static void restore_on_manifest(Store *s, int error, char *data, size_t len, void *userdata) {
        _cleanup_(manifest_freep) Manifest *m = NULL;
        _cleanup_free_ char *msg = NULL;
        SnapshotRestore *r = userdata;
        const char *id;
        int k;

        if (!restore_live(r))
                goto out;
        id = r->ids[r->cand];
        k = error;
        if (k >= 0)
                k = manifest_parse(data, len, &m, &msg);
        if (k >= 0 && (!streq(m->id, id) || !streq(m->job, r->job) || !streq(m->task, r->task))) {
                k = -EBADMSG;
                msg = strdup("it does not belong at its key (id, job or task differ)");
        }
        if (k >= 0)
                k = restore_objects_check(r, m, &msg);
        if (k == -ENOMEM || (k < 0 && k != -EBADMSG && k != -EFBIG && k != -ENOENT && k != -EPROTONOSUPPORT)) {
                restore_fail(r, k, "Cannot read snapshot %s: %s", id, strerror(-k));
                goto out;
        }
        if (k < 0 && r->want_id) {
                restore_fail(r, -EBADMSG, "Snapshot %s failed verification: %s", id, msg ?: strerror(-k));
                goto out;
        }
        if (k < 0) {
                log_warning("Skipping snapshot %s: %s", id, msg ?: strerror(-k));
                restore_try_next(r);
                goto out;
        }
        k = snapshot_summary_from_manifest(m, &r->info);
        if (k < 0) {
                restore_fail(r, k, "Out of memory");
                goto out;
        }
        r->m = TAKE_PTR(m);
        restore_prepare(r);
out:
        free(data);
        restore_unref(r);
}

static void restore_try_next(SnapshotRestore *r) {
        _cleanup_free_ char *key = NULL;
        int k;

        for (;;) {
                if (r->cand == 0) {
                        if (r->want_id)
                                return restore_fail(r, -ENOENT, "No snapshot %s of %s/%s in %s", r->want_id, r->job,
                                                    r->task, r->store->url);
                        return restore_fail(r, -ENOENT, "No complete snapshot of %s/%s in %s", r->job, r->task,
                                            r->store->url);
                }
                r->cand--;
                if (!r->want_id || streq(r->ids[r->cand], r->want_id))
                        break;
        }
        k = snapshot_manifest_key(r->job, r->task, r->ids[r->cand], &key);
        if (k >= 0)
                k = r->store->vt->get_data(r->store, key, MANIFEST_SIZE_MAX, restore_on_manifest, restore_ref(r));
        if (k < 0) {
                restore_unref(r);
                restore_fail(r, k, "Cannot read snapshot %s: %s", r->ids[r->cand], strerror(-k));
        }
}

/* ---- step 3: the tree (thread) */

/* The directory holding path's last component, below dfd, never through a link. */
static int open_parent_beneath(int dfd, const char *path, const char **ret_base) {
        const char *slash = strrchr(path, '/');
        _cleanup_free_ char *parent = NULL;
        int fd;

        if (!slash) {
                *ret_base = path;
                fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
                return fd < 0 ? -errno : fd;
        }
        parent = strndup(path, (size_t) (slash - path));
        if (!parent)
                return -ENOMEM;
        *ret_base = slash + 1;
        return snapshot_openat_beneath(dfd, parent, O_RDONLY | O_DIRECTORY, 0);
}

static int restore_create_entry(int tmp_fd, const ManifestEntry *e) {
        _cleanup_close_ int pfd = -EBADF, fd = -EBADF;
        const char *base;

        pfd = open_parent_beneath(tmp_fd, e->path, &base);
        if (pfd < 0)
                return pfd;
        switch (e->type) {
        case MANIFEST_ENTRY_DIR:
                return mkdirat(pfd, base, 0700) < 0 ? -errno : 0;
        case MANIFEST_ENTRY_SYMLINK:
                return symlinkat(e->target, pfd, base) < 0 ? -errno : 0;
        case MANIFEST_ENTRY_FILE:
                fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return -errno;
                return ftruncate(fd, (off_t) e->size) < 0 ? -errno : 0;
        default:
                return -EBADMSG;
        }
}

static int restore_prepare_job(void *arg) {
        SnapshotRestore *r = arg;
        int k;

        k = dest_state(r->dest_real, NULL);
        if (k < 0)
                return k;
        if (k == 2 && !r->force)
                return -ENOTEMPTY;
        if (asprintf(&r->tmp_path, "%s" SNAPSHOT_RESTORE_TMP_INFIX "XXXXXX", r->dest_real) < 0) {
                r->tmp_path = NULL;
                return -ENOMEM;
        }
        if (!mkdtemp(r->tmp_path)) {
                k = -errno;
                r->tmp_path = mfree(r->tmp_path);
                return k;
        }
        r->tmp_fd = open(r->tmp_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (r->tmp_fd < 0)
                return -errno;
        for (size_t i = 0; i < r->m->n_entries; i++) {
                if (atomic_load(&r->stop))
                        return -ECANCELED;
                k = restore_create_entry(r->tmp_fd, &r->m->entries[i]);
                if (k < 0) {
                        (void) asprintf(&r->error, "%s: %s", r->m->entries[i].path, strerror(-k));
                        return k;
                }
        }
        return 0;
}

static void restore_pump(SnapshotRestore *r);

static void restore_on_prepared(int result, void *arg) {
        SnapshotRestore *r = arg;
        size_t n = 0;

        if (!restore_live(r))
                goto out;
        if (result == -ENOTEMPTY) {
                restore_fail(r, result, "%s is not empty (use --force to move its content aside)", r->dest);
                goto out;
        }
        if (result < 0) {
                restore_fail(r, result, "Cannot create the restored tree beside %s: %s", r->dest,
                             r->error ?: strerror(-result));
                goto out;
        }
        r->files = calloc(MAX(r->m->n_entries, (size_t) 1), sizeof(RestoreFile));
        if (!r->files) {
                restore_fail(r, -ENOMEM, "Out of memory");
                goto out;
        }
        for (size_t i = 0; i < r->m->n_entries; i++) {
                const ManifestEntry *e = &r->m->entries[i];

                if (e->type != MANIFEST_ENTRY_FILE)
                        continue;
                r->files[n++] = (RestoreFile) {
                        .r = r, .e = e, .fd = -EBADF,
                        .range_size = e->part_size > 0 ? e->part_size : store_part_size(r->store, e->size),
                };
                if (r->files[n - 1].range_size == 0)
                        r->files[n - 1].range_size = 1;
        }
        r->n_files = n;
        restore_pump(r);
out:
        restore_unref(r);
}

static void restore_prepare(SnapshotRestore *r) {
        int k = restore_submit(r, restore_prepare_job, restore_on_prepared, r);

        if (k < 0)
                restore_fail(r, k, "Cannot start restoring: %s", strerror(-k));
}

/* ---- step 4: downloads and verification */

static int restore_open_job(void *arg) {
        RestoreFile *f = arg;
        struct stat st;
        int fd;

        fd = snapshot_openat_beneath(f->r->tmp_fd, f->e->path, O_RDWR | O_NOCTTY, 0);
        if (fd < 0)
                return fd;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
                safe_close(fd);
                return -EBADMSG;
        }
        f->fd = fd;
        return 0;
}

static int restore_verify_job(void *arg) {
        RestoreFile *f = arg;
        uint8_t digest[SHA256_DIGEST_SIZE];
        char hex[SHA256_HEX_SIZE];
        uint64_t len = 0;
        struct stat st;
        int k;

        k = sha256_fd_range(f->fd, 0, SHA256_TO_EOF, digest, &len);
        if (k < 0)
                return k;
        if (len != f->e->size || fstat(f->fd, &st) < 0 || (uint64_t) st.st_size != f->e->size ||
            !streq(sha256_to_hex(digest, hex), f->e->sha256))
                return -EBADMSG;
        if (fchmod(f->fd, f->e->mode) < 0)
                return -errno;
        if (futimens(f->fd, (const struct timespec[2]) {
                                    { .tv_nsec = UTIME_OMIT },
                                    { .tv_sec = (time_t) (f->e->mtime_ns / 1000000000ULL),
                                      .tv_nsec = (long) (f->e->mtime_ns % 1000000000ULL) } }) < 0)
                return -errno;
        if (fsync(f->fd) < 0)
                return -errno;
        f->fd = safe_close(f->fd);
        return 0;
}

static void restore_finalize(SnapshotRestore *r);

static void restore_on_verified(int result, void *arg) {
        RestoreFile *f = arg;
        SnapshotRestore *r = f->r;

        f->fd = safe_close(f->fd);
        r->files_open--;
        if (restore_live(r)) {
                if (result == -EBADMSG)
                        restore_fail(r, result, "%s (snapshot %s): content does not match its SHA-256 or size",
                                     f->e->path, r->info.id);
                else if (result < 0)
                        restore_fail(r, result, "Cannot write %s/%s: %s", r->tmp_path, f->e->path, strerror(-result));
                else {
                        r->files_done++;
                        restore_pump(r);
                }
        }
        restore_unref(r);
}

static void restore_file_ranges_done(SnapshotRestore *r, RestoreFile *f) {
        int k = restore_submit(r, restore_verify_job, restore_on_verified, f);

        if (k < 0)
                restore_fail(r, k, "Cannot verify %s: %s", f->e->path, strerror(-k));
}

static void restore_on_get(Store *s, int error, void *userdata) {
        RestoreFile *f = userdata;
        SnapshotRestore *r = f->r;

        f->gets_running--;
        r->gets_running--;
        if (!restore_live(r)) {
                if (f->gets_running == 0)
                        f->fd = safe_close(f->fd);
        } else if (error < 0)
                restore_fail(r, error == -ERANGE ? -EBADMSG : error, "Cannot download %s (snapshot %s): %s",
                             f->e->path, r->info.id, strerror(-error));
        else {
                if (f->gets_running == 0 && f->next_offset >= f->e->size)
                        restore_file_ranges_done(r, f);
                restore_pump(r);
        }
        restore_unref(r);
}

static int restore_start_range(SnapshotRestore *r, RestoreFile *f) {
        _cleanup_free_ char *key = NULL;
        uint64_t off = f->next_offset, len = MIN(f->range_size, f->e->size - off);
        int k;

        k = snapshot_object_key(r->job, r->task, f->e->sha256, &key);
        if (k < 0)
                return k;
        restore_ref(r);
        k = r->store->vt->get(r->store, key, off, len, f->fd, off, restore_on_get, f);
        if (k < 0) {
                restore_unref(r);
                return k;
        }
        f->next_offset += len;
        f->gets_running++;
        r->gets_running++;
        restore_report(r, len);
        return 0;
}

static void restore_on_opened(int result, void *arg) {
        RestoreFile *f = arg;
        SnapshotRestore *r = f->r;

        if (!restore_live(r))
                f->fd = safe_close(f->fd);
        else if (result < 0) {
                r->files_open--;
                restore_fail(r, result == -EBADMSG ? -EBADMSG : result, "Cannot open %s/%s: %s", r->tmp_path,
                             f->e->path, strerror(-result));
        } else if (f->e->size == 0)
                restore_file_ranges_done(r, f);
        else {
                if (r->queue_tail)
                        r->queue_tail->queue_next = f;
                else
                        r->queue_head = f;
                r->queue_tail = f;
                restore_pump(r);
        }
        restore_unref(r);
}

static void restore_pump(SnapshotRestore *r) {
        unsigned limit = MAX(r->store->concurrency, 1U);
        int k;

        while (restore_live(r) && r->queue_head && r->gets_running < limit) {
                RestoreFile *f = r->queue_head;

                k = restore_start_range(r, f);
                if (k < 0)
                        return restore_fail(r, k, "Cannot download %s: %s", f->e->path, strerror(-k));
                if (f->next_offset >= f->e->size) {
                        r->queue_head = f->queue_next;
                        if (!r->queue_head)
                                r->queue_tail = NULL;
                }
        }
        while (restore_live(r) && r->next_file < r->n_files && r->files_open < limit) {
                RestoreFile *f = &r->files[r->next_file++];

                k = restore_submit(r, restore_open_job, restore_on_opened, f);
                if (k < 0)
                        return restore_fail(r, k, "Cannot start restoring: %s", strerror(-k));
                r->files_open++;
        }
        if (restore_live(r) && r->files_done == r->n_files)
                restore_finalize(r);
}

/* ---- step 5: into place (thread) */

static int restore_dir_modes(SnapshotRestore *r) {
        for (size_t i = r->m->n_entries; i > 0; i--) {
                const ManifestEntry *e = &r->m->entries[i - 1];
                _cleanup_close_ int fd = -EBADF;

                if (e->type != MANIFEST_ENTRY_DIR)
                        continue;
                fd = snapshot_openat_beneath(r->tmp_fd, e->path, O_RDONLY | O_DIRECTORY, 0);
                if (fd < 0)
                        return fd;
                if (fsync(fd) < 0 || fchmod(fd, e->mode) < 0)
                        return -errno;
        }
        if (fchmod(r->tmp_fd, r->dest_mode ?: 0755) < 0 || fsync(r->tmp_fd) < 0)
                return -errno;
        return 0;
}

static int restore_move_aside(SnapshotRestore *r) {
        char stamp[RFC3339_MAX];
        uint32_t rnd = 0;

        (void) getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK);
        format_rfc3339(stamp, now_usec(CLOCK_REALTIME));
        if (asprintf(&r->old_path, "%s" SNAPSHOT_RESTORE_OLD_INFIX "%s-%08" PRIx32, r->dest_real, stamp, rnd) < 0) {
                r->old_path = NULL;
                return -ENOMEM;
        }
        if (renameat2(AT_FDCWD, r->tmp_path, AT_FDCWD, r->dest_real, RENAME_EXCHANGE) >= 0) {
                r->exchanged = true; /* tmp_path holds the old content now */
                return rename(r->tmp_path, r->old_path) < 0 ? -errno : 0;
        }
        if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
                return -errno;
        if (rename(r->dest_real, r->old_path) < 0)
                return -errno;
        return rename(r->tmp_path, r->dest_real) < 0 ? -errno : 0;
}

static int fsync_parent(const char *path) {
        _cleanup_free_ char *dir = strdup(path);
        _cleanup_close_ int fd = -EBADF;
        char *slash;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash == dir)
                slash[1] = 0;
        else if (slash)
                *slash = 0;
        else
                strcpy(dir, ".");
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}

static int restore_finalize_job(void *arg) {
        SnapshotRestore *r = arg;
        int k;

        k = restore_dir_modes(r);
        if (k < 0)
                return k;
        k = dest_state(r->dest_real, NULL);
        if (k < 0)
                return k;
        if (k == 2 && !r->force)
                return -ENOTEMPTY;
        if (k == 2)
                k = restore_move_aside(r);
        else if (k == 1)
                k = rename(r->tmp_path, r->dest_real) < 0 ? -errno : 0; /* replaces the empty directory */
        else
                k = renameat2(AT_FDCWD, r->tmp_path, AT_FDCWD, r->dest_real, RENAME_NOREPLACE) < 0 ? -errno : 0;
        if (k < 0)
                return k;
        r->swapped = true;
        return fsync_parent(r->dest_real);
}

static void restore_on_finalized(int result, void *arg) {
        SnapshotRestore *r = arg;

        if (restore_live(r)) {
                if (result < 0 && !r->swapped)
                        restore_fail(r, result, "Cannot move the restored tree into %s: %s", r->dest,
                                     result == -ENOTEMPTY || result == -EEXIST ? "it is not empty any more"
                                                                               : strerror(-result));
                else {
                        if (result < 0)
                                log_warning_errno(result, "Restored %s, but cannot sync it, ignoring: %m", r->dest);
                        if (r->old_path && r->exchanged)
                                log_info("Moved the previous content of %s to %s", r->dest, r->old_path);
                        restore_deliver(r, 0, NULL);
                }
        }
        restore_unref(r);
}

static void restore_finalize(SnapshotRestore *r) {
        int k = restore_submit(r, restore_finalize_job, restore_on_finalized, r);

        if (k < 0)
                restore_fail(r, k, "Cannot finish restoring: %s", strerror(-k));
}

/* ---- start */

int snapshot_restore_start(const SnapshotRestoreParams *p, SnapshotRestore **ret) {
        SnapshotRestore *r;
        int k;

        assert(p && p->store && p->worker && p->job && p->task && p->dest && p->done && ret);
        if (!config_job_id_is_valid(p->job) || !config_task_name_is_valid(p->task) || isempty(p->dest) ||
            (p->id && !snapshot_id_is_valid(p->id)))
                return -EINVAL;
        r = calloc(1, sizeof(SnapshotRestore));
        if (!r)
                return -ENOMEM;
        *r = (SnapshotRestore) {
                .n_ref = 1, .store = p->store, .worker = p->worker, .force = p->force, .progress = p->progress,
                .done = p->done, .userdata = p->userdata, .tmp_fd = -EBADF,
                .job = strdup(p->job), .task = strdup(p->task), .dest = strdup(p->dest),
                .want_id = p->id ? strdup(p->id) : NULL,
        };
        k = !r->job || !r->task || !r->dest || (p->id && !r->want_id) ? -ENOMEM : 0;
        /* A trailing '/' would put the temporary directory inside dest. */
        while (k >= 0 && strlen(r->dest) > 1 && r->dest[strlen(r->dest) - 1] == '/')
                r->dest[strlen(r->dest) - 1] = 0;
        if (k >= 0)
                k = restore_submit(r, restore_check_job, restore_on_checked, r);
        if (k < 0) {
                restore_unref(r);
                return k;
        }
        *ret = r;
        return 0;
}
