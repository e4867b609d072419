/* SPDX-License-Identifier: MIT */
/* The snapshot engine, create and list (restore: snapshot-restore.c; retention and the completion
 * marker: snapshot-retention.c).
 *
 * create: scan (worker) → list data/ → list manifests (parent) → hash what the stat cache does not
 * know (worker jobs) → upload the objects the store lacks (bounded) → commit the manifest
 * create-only under the next free seq → retention (storage.keep) → save the stat cache (worker) →
 * done.
 *
 * Only objects the parent manifest references are reused; anything else found under data/ (left by
 * a cancelled create, or by a snapshot retention removed) is uploaded again. Retention may remove
 * such an object at any moment (no manifest protects it, and it may be older than the grace
 * period), so reusing it could commit a manifest that references a missing object; uploading it
 * again renews its modification time, and the grace period covers it until the commit. The parent
 * is the newest manifest when the create starts, so retention keeps it (and its objects) unless
 * storage.keep newer snapshots are committed by other writers while this create runs.
 *
 * Every asynchronous step holds a reference on the operation: freeing it only marks it cancelled,
 * and the last callback to come back releases it. Thread-side functions touch only the operation's
 * immutable inputs and their own CreateFile. */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>

#include "ckpt-scan.h"
#include "fs-util.h"
#include "log.h"
#include "sha256.h"
#include "snapshot.h"
#include "stat-cache.h"
#include "strv.h"

#define LIST_MANIFEST_MAX MANIFEST_SIZE_MAX

/* ------------------------------------------------------------------ shared helpers */

void snapshot_summary_done(SnapshotSummary *i) {
        if (!i)
                return;
        free(i->instance_id);
        free(i->boot_id);
        free(i->hostname);
        free(i->parent);
        *i = (SnapshotSummary) {};
}

int snapshot_summary_from_manifest(const Manifest *m, SnapshotSummary *ret) {
        SnapshotSummary i = { .seq = m->seq, .committed_at = m->created_at, .bytes = m->bytes };

        memcpy(i.id, m->id, SNAPSHOT_ID_MAX);
        for (size_t k = 0; k < m->n_entries; k++)
                if (m->entries[k].type == MANIFEST_ENTRY_FILE) {
                        i.files++;
                        i.newest_mtime_ns = MAX(i.newest_mtime_ns, m->entries[k].mtime_ns);
                }
        i.instance_id = strdup(m->writer.instance_id ?: "");
        i.boot_id = strdup(m->writer.boot_id ?: "");
        i.hostname = strdup(m->writer.hostname ?: "");
        i.parent = m->parent ? strdup(m->parent) : NULL;
        if (!i.instance_id || !i.boot_id || !i.hostname || (m->parent && !i.parent)) {
                snapshot_summary_done(&i);
                return -ENOMEM;
        }
        *ret = i;
        return 0;
}

int snapshot_openat_beneath(int dir_fd, const char *path, int flags, mode_t mode) {
        _cleanup_close_ int cur = -EBADF;
        const char *p = path, *slash;
        int fd;

        if (isempty(path) || path[0] == '/')
                return -EINVAL;
        cur = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
        if (cur < 0)
                return -errno;
        while ((slash = strchr(p, '/'))) {
                char name[NAME_MAX + 1];
                size_t n = (size_t) (slash - p);
                int next;

                if (n == 0 || n > NAME_MAX || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return -EINVAL;
                memcpy(name, p, n);
                name[n] = 0;
                next = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0)
                        return errno == ELOOP ? -ENOTDIR : -errno;
                safe_close(cur);
                cur = next;
                p = slash + 1;
        }
        if (isempty(p) || streq(p, ".") || streq(p, ".."))
                return -EINVAL;
        fd = openat(cur, p, flags | O_NOFOLLOW | O_CLOEXEC, mode);
        return fd < 0 ? -errno : fd;
}

static int id_compare(const void *a, const void *b) {
        return snapshot_id_compare((const char *) a, (const char *) b);
}

int snapshot_ids_from_listing(const StoreObject *objects, size_t n, const char *job, const char *task,
                              char (**ret)[SNAPSHOT_ID_MAX], size_t *ret_n) {
        char (*ids)[SNAPSHOT_ID_MAX] = NULL;
        size_t k = 0;

        if (n > 0) {
                ids = calloc(n, SNAPSHOT_ID_MAX);
                if (!ids)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                if (snapshot_manifest_key_to_id(objects[i].key, job, task, ids[k]) >= 0)
                        k++;
        if (k > 0)
                qsort(ids, k, SNAPSHOT_ID_MAX, id_compare);
        *ret = ids;
        *ret_n = k;
        return 0;
}

static int task_prefix(const char *job, const char *task, const char *sub, char **ret) {
        return asprintf(ret, "%s/%s/%s/", job, task, sub) < 0 ? -ENOMEM : 0;
}

/* ------------------------------------------------------------------ create */

typedef struct CreateFile {
        SnapshotCreate *c;
        const CkptEntry *e;             /* in c->scan */
        char sha256[SHA256_HEX_SIZE];
        bool known;                     /* sha256 set (cache or hash) */
        bool hashed;                    /* hashed by this run: goes into the cache */
        CkptEntry st;                   /* stat values as hashed (path borrowed from e) */
        uint64_t stamp_ns;
        uint64_t part_size;             /* 0: no part checksums */
        ManifestPart *parts;
        size_t n_parts;
        int fd;                         /* upload: open while its put runs */
        char *key;                      /* upload: the object key */
        char **part_hex;                /* upload: the parts' digests as strv */
} CreateFile;

struct SnapshotCreate {
        unsigned n_ref;
        bool cancelled, finished;
        atomic_bool stop;
        Store *store;
        Worker *worker;
        char *job, *task, *root, *cache_path;
        char **exclude;
        char *instance_id, *boot_id, *hostname;
        char writer[SNAPSHOT_WRITER_LEN + 1];
        SnapshotProgress progress;
        void (*committed)(SnapshotCreate *c, const SnapshotSummary *info, void *userdata);
        bool (*may_commit)(SnapshotCreate *c, void *userdata);
        SnapshotCreateDone done;
        void *userdata;

        int root_fd;
        CkptScan *scan;
        StatCache *cache;
        char *error;                    /* thread-side failure text */
        CreateFile *files;
        size_t n_files;
        size_t next, inflight;          /* hash or upload pump */
        size_t *uploads;                /* indexes into files, one per missing object */
        size_t n_uploads;
        StoreObject *existing;          /* data/ listing, sorted by key */
        size_t n_existing;
        Manifest *parent;
        char parent_id[SNAPSHOT_ID_MAX];
        char **parent_objects;          /* "data/<sha256>" the parent references, sorted: reusable */
        size_t n_parent_objects;
        unsigned keep;                  /* storage.keep, 0: no retention */
        usec_t grace;
        SnapshotRetention *retention;   /* in flight after the commit, holds a reference */
        char *retention_message;
        unsigned commit_attempts;
        char *manifest_json;
        size_t manifest_len;
        SnapshotSummary info;
};

static void create_file_clear(CreateFile *f) {
        free(f->parts);
        free(f->key);
        strv_free(f->part_hex);
        f->fd = safe_close(f->fd);
}

static void create_destroy(SnapshotCreate *c) {
        for (size_t i = 0; i < c->n_files; i++)
                create_file_clear(&c->files[i]);
        free(c->files);
        free(c->uploads);
        store_objects_free(c->existing, c->n_existing);
        manifest_free(c->parent);
        strv_free(c->parent_objects);
        free(c->retention_message);
        ckpt_scan_free(c->scan);
        stat_cache_free(c->cache);
        safe_close(c->root_fd);
        free(c->error);
        free(c->manifest_json);
        snapshot_summary_done(&c->info);
        free(c->job);
        free(c->task);
        free(c->root);
        free(c->cache_path);
        strv_free(c->exclude);
        free(c->instance_id);
        free(c->boot_id);
        free(c->hostname);
        free(c);
}

static SnapshotCreate *create_ref(SnapshotCreate *c) {
        c->n_ref++;
        return c;
}

static void create_unref(SnapshotCreate *c) {
        assert(c->n_ref > 0);
        if (--c->n_ref == 0)
                create_destroy(c);
}

bool snapshot_create_busy(const SnapshotCreate *c) {
        return c && c->n_ref > 1;
}

SnapshotCreate *snapshot_create_free(SnapshotCreate *c) {
        if (!c)
                return NULL;
        c->cancelled = true;
        atomic_store(&c->stop, true);
        if (c->retention) {     /* its callback will not come: drop the reference it held */
                c->retention = snapshot_retention_free(c->retention);
                create_unref(c);
        }
        create_unref(c);
        return NULL;
}

static bool create_live(SnapshotCreate *c) {
        return !c->cancelled && !c->finished;
}

_printf_(3, 4) static void create_fail(SnapshotCreate *c, int error, const char *format, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        if (!create_live(c))
                return;
        c->finished = true;
        atomic_store(&c->stop, true);
        va_start(ap, format);
        if (vasprintf(&msg, format, ap) < 0)
                msg = NULL;
        va_end(ap);
        create_ref(c);
        c->done(c, error, NULL, msg ?: "out of memory", c->userdata);
        create_unref(c);
}

static void create_report(SnapshotCreate *c, const char *phase, uint64_t bytes) {
        if (c->progress && bytes > 0)
                c->progress(phase, bytes, c->userdata);
}

static int create_submit(SnapshotCreate *c, WorkerFunc fn, WorkerDone done, void *arg) {
        int r;

        create_ref(c);
        r = worker_submit(c->worker, fn, done, arg);
        if (r < 0)
                create_unref(c);
        return r;
}

static void create_hash_pump(SnapshotCreate *c);
static void create_upload_pump(SnapshotCreate *c);
static void create_commit(SnapshotCreate *c);

/* ---- step 1: scan (thread) */

static int create_scan_job(void *arg) {
        _cleanup_(ckpt_exclude_freep) CkptExclude *x = NULL;
        SnapshotCreate *c = arg;
        size_t n = 0;
        int r;

        r = stat_cache_new(&c->cache);
        if (r < 0)
                return r;
        if (c->cache_path)
                (void) stat_cache_load(c->cache, c->cache_path); /* any failure: start afresh */
        r = ckpt_exclude_new(c->exclude, &x, &c->error);
        if (r < 0)
                return r;
        c->root_fd = open(c->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (c->root_fd < 0)
                return -errno;
        r = ckpt_scan(c->root, &(CkptScanOptions) { .exclude = x }, &c->scan, &c->error);
        if (r < 0)
                return r;
        c->files = calloc(MAX(c->scan->n_entries, (size_t) 1), sizeof(CreateFile));
        if (!c->files)
                return -ENOMEM;
        for (size_t i = 0; i < c->scan->n_entries; i++) {
                const CkptEntry *e = &c->scan->entries[i];
                CreateFile *f;

                if (e->type != CKPT_ENTRY_FILE)
                        continue;
                f = &c->files[n++];
                *f = (CreateFile) { .c = c, .e = e, .st = *e, .fd = -EBADF, .stamp_ns = c->scan->started_ns };
                f->known = stat_cache_lookup(c->cache, e, f->sha256) > 0;
        }
        c->n_files = n;
        return 0;
}

static void create_on_data_listed(Store *s, int error, StoreObject *objects, size_t n, void *userdata);

static void create_on_scanned(int result, void *arg) {
        SnapshotCreate *c = arg;
        _cleanup_free_ char *prefix = NULL;
        int r;

        if (!create_live(c))
                goto out;
        if (result < 0) {
                create_fail(c, result, "Cannot scan checkpoint directory %s: %s", c->root,
                            c->error ?: strerror(-result));
                goto out;
        }
        r = task_prefix(c->job, c->task, "data", &prefix);
        if (r >= 0)
                r = c->store->vt->list(c->store, prefix, create_on_data_listed, create_ref(c));
        if (r < 0) {
                create_unref(c);
                create_fail(c, r, "Cannot list %s in %s: %s", prefix ?: "data", c->store->url, strerror(-r));
        }
out:
        create_unref(c);
}

/* ---- step 2: what the store has, and the newest manifest (the parent) */

static int object_key_compare(const void *a, const void *b) {
        return strcmp(((const StoreObject *) a)->key, ((const StoreObject *) b)->key);
}

static const StoreObject *create_find_object(SnapshotCreate *c, const char *key) {
        StoreObject k = { .key = (char *) key };

        if (c->n_existing == 0)
                return NULL;
        return bsearch(&k, c->existing, c->n_existing, sizeof(StoreObject), object_key_compare);
}

static void create_on_manifests_listed(Store *s, int error, StoreObject *objects, size_t n, void *userdata);

static void create_on_data_listed(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        SnapshotCreate *c = userdata;
        _cleanup_free_ char *prefix = NULL;
        int r;

        if (!create_live(c)) {
                store_objects_free(objects, n);
                goto out;
        }
        if (error < 0) {
                create_fail(c, error, "Cannot list the objects of %s/%s in %s: %s", c->job, c->task, s->url,
                            strerror(-error));
                goto out;
        }
        c->existing = objects;
        c->n_existing = n;
        if (n > 0)
                qsort(c->existing, n, sizeof(StoreObject), object_key_compare);
        r = task_prefix(c->job, c->task, "manifests", &prefix);
        if (r >= 0)
                r = s->vt->list(s, prefix, create_on_manifests_listed, create_ref(c));
        if (r < 0) {
                create_unref(c);
                create_fail(c, r, "Cannot list the manifests of %s/%s: %s", c->job, c->task, strerror(-r));
        }
out:
        create_unref(c);
}

static void create_on_parent(Store *s, int error, char *data, size_t len, void *userdata) {
        SnapshotCreate *c = userdata;
        _cleanup_free_ char *msg = NULL;

        if (create_live(c)) {
                if (error >= 0 && manifest_parse(data, len, &c->parent, &msg) < 0)
                        log_debug("Ignoring manifest %s as a parent: %s", c->parent_id, strna(msg));
                if (c->parent && manifest_object_keys(c->parent, &c->parent_objects) < 0)
                        c->parent = manifest_free(c->parent); /* out of memory: reuse nothing */
                c->n_parent_objects = strv_length(c->parent_objects);
                if (!c->parent)
                        c->parent_id[0] = 0;
                create_hash_pump(c);
        }
        free(data);
        create_unref(c);
}

static void create_on_manifests_listed(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        SnapshotCreate *c = userdata;
        _cleanup_free_ char (*ids)[SNAPSHOT_ID_MAX] = NULL;
        _cleanup_free_ char *key = NULL;
        size_t n_ids = 0;
        int r;

        if (!create_live(c))
                goto out;
        r = error < 0 ? error : snapshot_ids_from_listing(objects, n, c->job, c->task, &ids, &n_ids);
        if (r < 0) {
                create_fail(c, r, "Cannot list the manifests of %s/%s: %s", c->job, c->task, strerror(-r));
                goto out;
        }
        if (n_ids == 0) {
                create_hash_pump(c);
                goto out;
        }
        memcpy(c->parent_id, ids[n_ids - 1], SNAPSHOT_ID_MAX);
        r = snapshot_manifest_key(c->job, c->task, c->parent_id, &key);
        if (r >= 0)
                r = s->vt->get_data(s, key, LIST_MANIFEST_MAX, create_on_parent, create_ref(c));
        if (r < 0) {
                create_unref(c);
                c->parent_id[0] = 0;
                create_hash_pump(c);
        }
out:
        store_objects_free(objects, n);
        create_unref(c);
}

/* ---- step 3: hashing */

static int string_compare(const void *a, const void *b) {
        return strcmp(*(const char * const *) a, *(const char * const *) b);
}

/* Whether f's object can be reused: in the data/ listing with the right size, and referenced by
 * the parent manifest (see the top of the file). */
static bool create_object_present(SnapshotCreate *c, const CreateFile *f) {
        _cleanup_free_ char *key = NULL;
        char rel[MANIFEST_OBJECT_KEY_MAX];
        const char *p = rel;
        const StoreObject *o;

        if (c->n_parent_objects == 0 || snapshot_object_key(c->job, c->task, f->sha256, &key) < 0)
                return false;
        o = create_find_object(c, key);
        if (!o || o->size != f->st.size)
                return false;
        (void) snprintf(rel, sizeof(rel), "data/%s", f->sha256);
        return bsearch(&p, c->parent_objects, c->n_parent_objects, sizeof(char *), string_compare);
}

/* A cached digest whose object is in the store needs no reading; its part checksums come from the
 * parent manifest when it has them. Anything else is read (to be uploaded, it needs its parts). */
static bool create_file_needs_hash(SnapshotCreate *c, CreateFile *f) {
        if (!f->known || !create_object_present(c, f))
                return true;
        for (size_t i = 0; c->parent && i < c->parent->n_entries; i++) {
                const ManifestEntry *e = &c->parent->entries[i];

                if (e->type != MANIFEST_ENTRY_FILE || !streq(e->sha256, f->sha256) || e->n_parts == 0)
                        continue;
                f->parts = calloc(e->n_parts, sizeof(ManifestPart));
                if (!f->parts)
                        return true;
                memcpy(f->parts, e->parts, e->n_parts * sizeof(ManifestPart));
                f->n_parts = e->n_parts;
                f->part_size = e->part_size;
                break;
        }
        return false;
}

static bool stat_same(const struct stat *a, const struct stat *b) {
        return a->st_size == b->st_size && a->st_ino == b->st_ino && a->st_dev == b->st_dev &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
               a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static uint64_t ts_ns(const struct timespec *t) {
        return t->tv_sec < 0 ? 0 : (uint64_t) t->tv_sec * 1000000000ULL + (uint64_t) t->tv_nsec;
}

static int hash_fd(CreateFile *f, int fd, uint64_t size) {
        _cleanup_(sha256_ctx_freep) Sha256Ctx *whole = NULL, *part = NULL;
        _cleanup_free_ uint8_t *block = NULL;
        uint64_t part_size = store_part_size(f->c->store, size);
        size_t n_parts = part_size > 0 && part_size < size ? (size_t) ((size + part_size - 1) / part_size) : 0;
        uint8_t digest[SHA256_DIGEST_SIZE];
        size_t pi = 0;

        free(f->parts);
        f->parts = NULL;
        f->n_parts = 0;
        f->part_size = 0;
        if (n_parts > MANIFEST_PARTS_MAX)
                n_parts = 0;
        if (n_parts > 0 && !(f->parts = calloc(n_parts, sizeof(ManifestPart))))
                return -ENOMEM;
        block = malloc(SHA256_READ_BLOCK);
        if (!block || sha256_ctx_new(&whole) < 0 || sha256_ctx_new(&part) < 0)
                return -ENOMEM;
        for (uint64_t off = 0; off < size;) {
                size_t want = (size_t) MIN((uint64_t) SHA256_READ_BLOCK, size - off);
                ssize_t k;

                if (n_parts > 0)
                        want = (size_t) MIN((uint64_t) want, part_size - sha256_ctx_bytes(part));
                if (atomic_load(&f->c->stop))
                        return -ECANCELED;
                k = pread(fd, block, want, (off_t) off);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return -ESTALE; /* truncated while being read */
                if (sha256_ctx_update(whole, block, (size_t) k) < 0 ||
                    (n_parts > 0 && sha256_ctx_update(part, block, (size_t) k) < 0))
                        return -EIO;
                off += (uint64_t) k;
                if (n_parts > 0 && (sha256_ctx_bytes(part) == part_size || off == size)) {
                        f->parts[pi].size = sha256_ctx_bytes(part);
                        if (sha256_ctx_final(part, digest) < 0)
                                return -EIO;
                        sha256_to_hex(digest, f->parts[pi++].sha256);
                }
        }
        if (sha256_ctx_final(whole, digest) < 0)
                return -EIO;
        sha256_to_hex(digest, f->sha256);
        if (n_parts > 0) {
                f->n_parts = pi;
                f->part_size = part_size;
        }
        return 0;
}

/* Thread: reads the file from a fresh open (never through a symlink) and checks that it did not
 * change while being read: same size, times, inode before and after. */
static int create_hash_job(void *arg) {
        CreateFile *f = arg;
        int r = -ESTALE;

        for (unsigned attempt = 0; r == -ESTALE && attempt < SNAPSHOT_HASH_ATTEMPTS; attempt++) {
                _cleanup_close_ int fd = -EBADF;
                struct stat before, after;
                struct timespec now;

                (void) clock_gettime(CLOCK_REALTIME_COARSE, &now);
                fd = snapshot_openat_beneath(f->c->root_fd, f->e->path, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
                if (fd < 0)
                        return fd == -ELOOP ? -ESTALE : fd;
                if (fstat(fd, &before) < 0)
                        return -errno;
                if (!S_ISREG(before.st_mode))
                        return -ESTALE;
                r = hash_fd(f, fd, (uint64_t) before.st_size);
                if (r == -ESTALE)
                        continue;
                if (r < 0)
                        return r;
                if (fstat(fd, &after) < 0)
                        return -errno;
                if (!stat_same(&before, &after)) {
                        r = -ESTALE;
                        continue;
                }
                f->st.size = (uint64_t) before.st_size;
                f->st.mtime_ns = ts_ns(&before.st_mtim);
                f->st.ctime_ns = ts_ns(&before.st_ctim);
                f->st.ino = (uint64_t) before.st_ino;
                f->st.dev = (uint64_t) before.st_dev;
                f->st.mode = before.st_mode & 07777;
                f->stamp_ns = ts_ns(&now);
        }
        return r == -ESTALE ? -EBUSY : r;
}

static void create_on_hashed(int result, void *arg) {
        CreateFile *f = arg;
        SnapshotCreate *c = f->c;

        c->inflight--;
        if (create_live(c)) {
                if (result == -EBUSY)
                        create_fail(c, result, "%s/%s kept changing while being read (tried %u times)", c->root,
                                    f->e->path, SNAPSHOT_HASH_ATTEMPTS);
                else if (result < 0)
                        create_fail(c, result, "Cannot read %s/%s: %s", c->root, f->e->path, strerror(-result));
                else {
                        f->known = f->hashed = true;
                        create_report(c, "hash", f->st.size);
                        create_hash_pump(c);
                }
        }
        create_unref(c);
}

static unsigned create_parallelism(SnapshotCreate *c) {
        return MAX(c->store->concurrency, 1U);
}

static int sha_index_compare(const void *a, const void *b, void *userdata) {
        const CreateFile *files = userdata;

        return strcmp(files[*(const size_t *) a].sha256, files[*(const size_t *) b].sha256);
}

/* The files whose objects the store lacks, one per distinct SHA-256. */
static int create_plan_uploads(SnapshotCreate *c) {
        size_t k = 0;

        c->uploads = calloc(MAX(c->n_files, (size_t) 1), sizeof(size_t));
        if (!c->uploads)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_files; i++)
                if (!create_object_present(c, &c->files[i]))
                        c->uploads[k++] = i;
        qsort_r(c->uploads, k, sizeof(size_t), sha_index_compare, c->files);
        c->n_uploads = 0;
        for (size_t i = 0; i < k; i++)
                if (c->n_uploads == 0 ||
                    !streq(c->files[c->uploads[c->n_uploads - 1]].sha256, c->files[c->uploads[i]].sha256))
                        c->uploads[c->n_uploads++] = c->uploads[i];
        return 0;
}

static void create_hash_pump(SnapshotCreate *c) {
        int r;

        while (create_live(c) && c->next < c->n_files && c->inflight < create_parallelism(c)) {
                CreateFile *f = &c->files[c->next++];

                if (!create_file_needs_hash(c, f))
                        continue;
                r = create_submit(c, create_hash_job, create_on_hashed, f);
                if (r < 0)
                        return create_fail(c, r, "Cannot start hashing: %s", strerror(-r));
                c->inflight++;
        }
        if (!create_live(c) || c->next < c->n_files || c->inflight > 0)
                return;
        r = create_plan_uploads(c);
        if (r < 0)
                return create_fail(c, r, "Out of memory");
        if (c->progress) {
                uint64_t total = 0;

                for (size_t i = 0; i < c->n_uploads; i++)
                        total += (uint64_t) c->files[c->uploads[i]].st.size;
                c->progress("plan", total, c->userdata);
        }
        c->next = 0;
        create_upload_pump(c);
}

/* ---- step 4: uploads */

static int create_open_job(void *arg) {
        CreateFile *f = arg;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        fd = snapshot_openat_beneath(f->c->root_fd, f->e->path, O_RDONLY | O_NOCTTY | O_NONBLOCK, 0);
        if (fd < 0)
                return fd == -ELOOP || fd == -ENOENT ? -ESTALE : fd;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || (uint64_t) st.st_size != f->st.size || ts_ns(&st.st_mtim) != f->st.mtime_ns ||
            (uint64_t) st.st_ino != f->st.ino)
                return -ESTALE;
        f->fd = TAKE_FD(fd);
        return 0;
}

static void create_on_put(Store *s, int error, void *userdata) {
        CreateFile *f = userdata;
        SnapshotCreate *c = f->c;

        f->fd = safe_close(f->fd);
        c->inflight--;
        if (create_live(c)) {
                if (error == -EBADMSG)
                        create_fail(c, -EBUSY, "%s/%s changed while being uploaded; not committing", c->root,
                                    f->e->path);
                else if (error < 0)
                        create_fail(c, error, "Cannot upload %s/%s to %s: %s", c->root, f->e->path, s->url,
                                    strerror(-error));
                else {
                        c->info.uploaded_bytes += f->st.size;
                        c->info.uploaded_objects++;
                        create_report(c, "upload", f->st.size);
                        create_upload_pump(c);
                }
        }
        create_unref(c);
}

static int create_start_put(SnapshotCreate *c, CreateFile *f) {
        StorePut p;
        int r;

        r = snapshot_object_key(c->job, c->task, f->sha256, &f->key);
        if (r < 0)
                return r;
        for (size_t i = 0; i < f->n_parts; i++) {
                r = strv_extend(&f->part_hex, f->parts[i].sha256);
                if (r < 0)
                        return r;
        }
        p = (StorePut) {
                .key = f->key,
                .fd = f->fd,
                .len = f->st.size,
                .sha256 = f->sha256,
                .part_size = f->part_size,
                .part_sha256 = f->part_hex,
                .n_parts = f->n_parts,
        };
        create_ref(c);
        r = c->store->vt->put(c->store, &p, create_on_put, f);
        if (r < 0)
                create_unref(c);
        return r;
}

static void create_on_opened(int result, void *arg) {
        CreateFile *f = arg;
        SnapshotCreate *c = f->c;
        int r = result;

        if (create_live(c)) {
                r = result < 0 ? result : create_start_put(c, f);
                if (r == -ESTALE)
                        create_fail(c, -EBUSY, "%s/%s changed after being hashed; not committing", c->root,
                                    f->e->path);
                else if (r < 0)
                        create_fail(c, r, "Cannot upload %s/%s: %s", c->root, f->e->path, strerror(-r));
        }
        if (!create_live(c) || result < 0 || r < 0) {
                f->fd = safe_close(f->fd);
                c->inflight--;
        }
        create_unref(c);
}

static void create_upload_pump(SnapshotCreate *c) {
        int r;

        while (create_live(c) && c->next < c->n_uploads && c->inflight < create_parallelism(c)) {
                CreateFile *f = &c->files[c->uploads[c->next++]];

                r = create_submit(c, create_open_job, create_on_opened, f);
                if (r < 0)
                        return create_fail(c, r, "Cannot start uploading: %s", strerror(-r));
                c->inflight++;
        }
        if (create_live(c) && c->next >= c->n_uploads && c->inflight == 0)
                create_commit(c);
}

/* ---- step 5: the manifest */

static int create_build_manifest(SnapshotCreate *c, uint64_t seq, Manifest **ret, char **ret_error) {
        _cleanup_(manifest_freep) Manifest *m = NULL;
        size_t fi = 0;
        int r;

        r = snapshot_id_format(seq, now_usec(CLOCK_REALTIME), c->writer, c->info.id);
        if (r < 0)
                return r;
        r = manifest_new(&(ManifestParams) { .id = c->info.id, .job = c->job, .task = c->task,
                                             .parent = c->parent_id[0] ? c->parent_id : NULL,
                                             .instance_id = c->instance_id, .boot_id = c->boot_id,
                                             .hostname = c->hostname },
                         &m, ret_error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->scan->n_entries; i++) {
                const CkptEntry *e = &c->scan->entries[i];
                const char *problem = manifest_path_check(e->path);

                if (problem) {
                        log_warning("Not snapshotting %s/%s: %s", c->root, e->path, problem);
                        if (e->type == CKPT_ENTRY_FILE)
                                fi++;
                        continue;
                }
                if (e->type == CKPT_ENTRY_DIR)
                        r = manifest_add_dir(m, e->path, e->mode & 0777, ret_error);
                else if (e->type == CKPT_ENTRY_SYMLINK)
                        r = manifest_add_symlink(m, e->path, e->target, ret_error);
                else {
                        const CreateFile *f = &c->files[fi++];

                        r = manifest_add_file(m, e->path,
                                              &(ManifestFile) { .size = f->st.size, .mode = f->st.mode & 0777,
                                                                .mtime_ns = f->st.mtime_ns, .sha256 = f->sha256,
                                                                .part_size = f->part_size, .parts = f->parts,
                                                                .n_parts = f->n_parts },
                                              ret_error);
                }
                if (r < 0)
                        return r;
        }
        r = manifest_validate(m, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

static void create_on_commit_listed(Store *s, int error, StoreObject *objects, size_t n, void *userdata);

static void create_list_for_commit(SnapshotCreate *c) {
        _cleanup_free_ char *prefix = NULL;
        int r;

        r = task_prefix(c->job, c->task, "manifests", &prefix);
        if (r >= 0)
                r = c->store->vt->list(c->store, prefix, create_on_commit_listed, create_ref(c));
        if (r < 0) {
                create_unref(c);
                create_fail(c, r, "Cannot list the manifests of %s/%s: %s", c->job, c->task, strerror(-r));
        }
}

static void create_commit(SnapshotCreate *c) {
        c->commit_attempts = 0;
        create_list_for_commit(c);
}

static int create_save_job(void *arg) {
        SnapshotCreate *c = arg;
        _cleanup_free_ char *dir = NULL;
        char *slash;
        int r;

        if (!c->cache_path)
                return 0;
        (void) stat_cache_retain(c->cache, c->scan);
        for (size_t i = 0; i < c->n_files; i++)
                if (c->files[i].hashed)
                        (void) stat_cache_put(c->cache, &c->files[i].st, c->files[i].sha256, c->files[i].stamp_ns);
        dir = strdup(c->cache_path);
        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash) {
                *slash = 0;
                r = mkdir_p(dir, 0700);
                if (r < 0)
                        return r;
        }
        return stat_cache_save(c->cache, c->cache_path);
}

static void create_on_saved(int result, void *arg) {
        SnapshotCreate *c = arg;

        if (result < 0)
                log_warning_errno(result, "Cannot save the stat cache %s, ignoring: %m", c->cache_path);
        if (create_live(c)) {
                c->finished = true;
                create_ref(c);
                c->done(c, 0, &c->info, c->retention_message, c->userdata);
                create_unref(c);
        }
        create_unref(c);
}

static void create_save(SnapshotCreate *c) {
        int r;

        r = create_submit(c, create_save_job, create_on_saved, c);
        if (r < 0)
                create_fail(c, r, "Cannot save the stat cache: %s", strerror(-r));
}

static void create_on_retention(SnapshotRetention *rt, int error, const SnapshotRetentionResult *result,
                                const char *message, void *userdata) {
        SnapshotCreate *c = userdata;

        c->retention = snapshot_retention_free(c->retention);
        c->info.removed_snapshots = result->manifests_removed;
        c->info.removed_objects = result->objects_removed;
        c->info.removed_bytes = result->bytes_removed;
        if (error < 0) {
                log_warning("Retention after snapshot %s of %s/%s: %s", c->info.id, c->job, c->task,
                            strna(message));
                if (asprintf(&c->retention_message, "Snapshot %s committed; retention: %s", c->info.id,
                             strna(message)) < 0)
                        c->retention_message = NULL;
        }
        if (create_live(c))
                create_save(c);
        create_unref(c);
}

/* After the commit: storage.keep, if set. Its problems never fail the snapshot. */
static void create_retention(SnapshotCreate *c) {
        int r;

        if (c->committed) {
                create_ref(c);
                c->committed(c, &c->info, c->userdata);
                if (!create_live(c)) {
                        create_unref(c);
                        return;
                }
                create_unref(c);
        }

        if (c->keep == 0)
                return create_save(c);
        create_ref(c);
        r = snapshot_retention_start(c->store, c->job, c->task, c->keep, c->grace, create_on_retention, c,
                                     &c->retention);
        if (r < 0) {
                create_unref(c);
                log_warning_errno(r, "Cannot start retention for %s/%s, ignoring: %m", c->job, c->task);
                if (asprintf(&c->retention_message, "Snapshot %s committed; retention did not start: %s",
                             c->info.id, strerror(-r)) < 0)
                        c->retention_message = NULL;
                create_save(c);
        }
}

static void create_commit_taken(SnapshotCreate *c, Store *s, int error) {
        if (++c->commit_attempts < SNAPSHOT_COMMIT_ATTEMPTS) {
                log_info("Snapshot id %s was taken by another writer, trying the next one", c->info.id);
                create_list_for_commit(c);
                return;
        }
        create_fail(c, error, "Cannot commit the manifest of %s/%s to %s: every id tried was taken by other writers",
                    c->job, c->task, s->url);
}

/* The create-only put said the id exists. When a retry follows a lost answer, the manifest that
 * is there may be our own first attempt: then the snapshot is committed (never commit it twice
 * under another id). Anything else under that id belongs to another writer. */
static void create_on_manifest_readback(Store *s, int error, char *data, size_t len, void *userdata) {
        _cleanup_free_ char *owned = data;
        SnapshotCreate *c = userdata;

        if (!create_live(c))
                goto out;
        if (error >= 0 && len == c->manifest_len && memcmp(data, c->manifest_json, len) == 0) {
                log_info("Snapshot %s was already committed by this writer (an answer was lost)", c->info.id);
                create_retention(c);
                goto out;
        }
        create_commit_taken(c, s, -EEXIST);
out:
        create_unref(c);
}

static void create_on_manifest_put(Store *s, int error, void *userdata) {
        SnapshotCreate *c = userdata;

        if (!create_live(c))
                goto out;
        if (error == -EEXIST) {
                _cleanup_free_ char *key = NULL;
                int r = snapshot_manifest_key(c->job, c->task, c->info.id, &key);

                if (r >= 0) {
                        r = s->vt->get_data(s, key, c->manifest_len + 1, create_on_manifest_readback, create_ref(c));
                        if (r < 0)
                                create_unref(c);
                }
                if (r < 0)
                        create_commit_taken(c, s, -EEXIST);
                goto out;
        }
        if (error < 0) {
                create_fail(c, error, "Cannot commit the manifest of %s/%s to %s: %s", c->job, c->task, s->url,
                            strerror(-error));
                goto out;
        }
        create_retention(c);
out:
        create_unref(c);
}

static int create_put_manifest(SnapshotCreate *c, uint64_t seq, char **ret_error) {
        _cleanup_(manifest_freep) Manifest *m = NULL;
        _cleanup_free_ char *key = NULL;
        uint8_t digest[SHA256_DIGEST_SIZE];
        char hex[SHA256_HEX_SIZE];
        int r;

        r = create_build_manifest(c, seq, &m, ret_error);
        if (r < 0)
                return r;
        c->manifest_json = mfree(c->manifest_json);
        r = manifest_to_json(m, &c->manifest_json, &c->manifest_len, ret_error);
        if (r < 0)
                return r;
        r = sha256_buffer(c->manifest_json, c->manifest_len, digest);
        if (r < 0)
                return r;
        r = snapshot_manifest_key(c->job, c->task, c->info.id, &key);
        if (r < 0)
                return r;
        {
                SnapshotSummary keep = { .uploaded_bytes = c->info.uploaded_bytes,
                                      .uploaded_objects = c->info.uploaded_objects };
                char id[SNAPSHOT_ID_MAX];

                memcpy(id, c->info.id, SNAPSHOT_ID_MAX);
                snapshot_summary_done(&c->info);
                r = snapshot_summary_from_manifest(m, &c->info);
                c->info.uploaded_bytes = keep.uploaded_bytes;
                c->info.uploaded_objects = keep.uploaded_objects;
                memcpy(c->info.id, id, SNAPSHOT_ID_MAX);
                if (r < 0)
                        return r;
        }
        r = c->store->vt->put(c->store,
                              &(StorePut) { .key = key, .fd = -EBADF, .buf = c->manifest_json, .len = c->manifest_len,
                                            .sha256 = sha256_to_hex(digest, hex), .create_only = true,
                                            .content_type = "application/json" },
                              create_on_manifest_put, create_ref(c));
        if (r < 0)
                create_unref(c);
        return r;
}

static void create_on_commit_listed(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        SnapshotCreate *c = userdata;
        _cleanup_free_ char (*ids)[SNAPSHOT_ID_MAX] = NULL;
        _cleanup_free_ char *msg = NULL;
        uint64_t seq = 1;
        size_t n_ids = 0;
        SnapshotId last;
        int r;

        if (!create_live(c))
                goto out;
        r = error < 0 ? error : snapshot_ids_from_listing(objects, n, c->job, c->task, &ids, &n_ids);
        if (r < 0) {
                create_fail(c, r, "Cannot list the manifests of %s/%s: %s", c->job, c->task, strerror(-r));
                goto out;
        }
        if (n_ids > 0 && snapshot_id_parse(ids[n_ids - 1], &last) >= 0)
                seq = last.seq + 1;
        if (seq > SNAPSHOT_SEQ_MAX) {
                create_fail(c, -ERANGE, "No snapshot sequence numbers left for %s/%s", c->job, c->task);
                goto out;
        }
        if (c->may_commit && !c->may_commit(c, c->userdata)) {
                create_fail(c, -ESTALE, "The checkpoint directory %s changed while being snapshotted, not committing",
                            c->root);
                goto out;
        }
        r = create_put_manifest(c, seq, &msg);
        if (r < 0)
                create_fail(c, r, "Cannot commit the snapshot of %s/%s: %s", c->job, c->task,
                            msg ?: strerror(-r));
out:
        store_objects_free(objects, n);
        create_unref(c);
}

/* ---- start */

static int create_copy_params(SnapshotCreate *c, const SnapshotCreateParams *p) {
        c->job = strdup(p->config->job_id);
        c->task = strdup(p->task->name);
        c->root = strdup(p->task->checkpoint_dir);
        c->instance_id = strdup(p->instance_id);
        c->boot_id = strdup(p->boot_id);
        c->hostname = strdup(p->hostname);
        if (!c->job || !c->task || !c->root || !c->instance_id || !c->boot_id || !c->hostname)
                return -ENOMEM;
        if (p->config->exclude && !(c->exclude = strv_copy(p->config->exclude)))
                return -ENOMEM;
        if (p->state_dir && asprintf(&c->cache_path, "%s/" SNAPSHOT_STAT_CACHE_DIR "/%s/%s.json", p->state_dir,
                                     c->job, c->task) < 0)
                return -ENOMEM;
        return 0;
}

int snapshot_create_start(const SnapshotCreateParams *p, SnapshotCreate **ret) {
        SnapshotCreate *c;
        int r;

        assert(p && p->store && p->worker && p->config && p->task && p->done && ret);
        if (!snapshot_writer_field_is_valid(p->instance_id) || !snapshot_writer_field_is_valid(p->boot_id) ||
            !snapshot_writer_field_is_valid(p->hostname))
                return -EINVAL;
        c = calloc(1, sizeof(SnapshotCreate));
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->root_fd = -EBADF;
        c->store = p->store;
        c->worker = p->worker;
        c->progress = p->progress;
        c->committed = p->committed;
        c->may_commit = p->may_commit;
        c->done = p->done;
        c->userdata = p->userdata;
        c->keep = p->config->storage_keep;
        c->grace = p->retention_grace ?: SNAPSHOT_RETENTION_GRACE_USEC;
        r = create_copy_params(c, p);
        if (r >= 0)
                r = snapshot_writer_id(c->instance_id, c->boot_id, c->writer);
        if (r >= 0)
                r = create_submit(c, create_scan_job, create_on_scanned, c);
        if (r < 0) {
                create_unref(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* ------------------------------------------------------------------ list */

struct SnapshotList {
        unsigned n_ref;
        bool cancelled, finished;
        Store *store;
        char *job, *task;
        SnapshotListDone done;
        void *userdata;
        char (*ids)[SNAPSHOT_ID_MAX];
        size_t n_ids, next;
        SnapshotSummary *infos;
        size_t n_infos;
        char **warnings;
};

static void list_unref(SnapshotList *l) {
        assert(l->n_ref > 0);
        if (--l->n_ref > 0)
                return;
        for (size_t i = 0; i < l->n_infos; i++)
                snapshot_summary_done(&l->infos[i]);
        free(l->infos);
        free(l->ids);
        strv_free(l->warnings);
        free(l->job);
        free(l->task);
        free(l);
}

SnapshotList *snapshot_list_free(SnapshotList *l) {
        if (!l)
                return NULL;
        l->cancelled = true;
        list_unref(l);
        return NULL;
}

static void list_finish(SnapshotList *l, int error) {
        if (l->cancelled || l->finished)
                return;
        l->finished = true;
        l->n_ref++;
        if (error < 0)
                l->done(l, error, NULL, 0, NULL, l->userdata);
        else
                l->done(l, 0, l->infos, l->n_infos, l->warnings, l->userdata);
        list_unref(l);
}

static void list_next(SnapshotList *l);

/* Whether m is what its key says it is: the id, job and task of its place in the store. */
static const char *manifest_place_check(const Manifest *m, const char *id, const char *job, const char *task) {
        if (!streq(m->id, id))
                return "its id differs from its key's";
        if (!streq(m->job, job) || !streq(m->task, task))
                return "it belongs to another job or task";
        return NULL;
}

static void list_on_manifest(Store *s, int error, char *data, size_t len, void *userdata) {
        _cleanup_(manifest_freep) Manifest *m = NULL;
        _cleanup_free_ char *msg = NULL;
        SnapshotList *l = userdata;
        const char *id;
        int r;

        if (l->cancelled || l->finished)
                goto out;
        id = l->ids[l->next++];
        if (error == -ENOENT) { /* removed since the listing (retention) */
                list_next(l);
                goto out;
        }
        if (error < 0 && error != -EFBIG) {
                list_finish(l, error);
                goto out;
        }
        r = error < 0 ? error : manifest_parse(data, len, &m, &msg);
        if (r >= 0 && manifest_place_check(m, id, l->job, l->task))
                r = -EBADMSG, msg = strdup(manifest_place_check(m, id, l->job, l->task));
        if (r >= 0)
                r = snapshot_summary_from_manifest(m, &l->infos[l->n_infos]);
        if (r == -ENOMEM) {
                list_finish(l, r);
                goto out;
        }
        if (r < 0) {
                if (strv_extendf(&l->warnings, "snapshot %s: invalid manifest, skipped: %s", id,
                                 msg ?: strerror(-r)) < 0) {
                        list_finish(l, -ENOMEM);
                        goto out;
                }
        } else
                l->n_infos++;
        list_next(l);
out:
        free(data);
        list_unref(l);
}

static void list_next(SnapshotList *l) {
        _cleanup_free_ char *key = NULL;
        int r;

        if (l->next >= l->n_ids)
                return list_finish(l, 0);
        r = snapshot_manifest_key(l->job, l->task, l->ids[l->next], &key);
        if (r >= 0) {
                l->n_ref++;
                r = l->store->vt->get_data(l->store, key, MANIFEST_SIZE_MAX, list_on_manifest, l);
                if (r < 0)
                        l->n_ref--;
        }
        if (r < 0)
                list_finish(l, r);
}

static void list_on_listed(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        SnapshotList *l = userdata;
        int r;

        if (l->cancelled || l->finished)
                goto out;
        r = error < 0 ? error : snapshot_ids_from_listing(objects, n, l->job, l->task, &l->ids, &l->n_ids);
        if (r >= 0 && l->n_ids > 0 && !(l->infos = calloc(l->n_ids, sizeof(SnapshotSummary))))
                r = -ENOMEM;
        if (r < 0)
                list_finish(l, r);
        else
                list_next(l);
out:
        store_objects_free(objects, n);
        list_unref(l);
}

int snapshot_list_start(Store *store, const char *job, const char *task, SnapshotListDone done, void *userdata,
                        SnapshotList **ret) {
        _cleanup_free_ char *prefix = NULL;
        SnapshotList *l;
        int r;

        assert(store && job && task && done && ret);
        if (!config_job_id_is_valid(job) || !config_task_name_is_valid(task))
                return -EINVAL;
        l = calloc(1, sizeof(SnapshotList));
        if (!l)
                return -ENOMEM;
        *l = (SnapshotList) { .n_ref = 2, .store = store, .done = done, .userdata = userdata,
                              .job = strdup(job), .task = strdup(task) };
        r = l->job && l->task ? task_prefix(job, task, "manifests", &prefix) : -ENOMEM;
        if (r >= 0)
                r = store->vt->list(store, prefix, list_on_listed, l);
        if (r < 0) {
                l->n_ref = 1;
                list_unref(l);
                return r;
        }
        *ret = l;
        return 0;
}
