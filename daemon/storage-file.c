/* SPDX-License-Identifier: MIT */
/* The file:// store: object K lives at <root>/K. Every disk access runs in a worker job; this
 * file's loop side only validates, copies the request into the job and delivers the result.
 *
 * A job owns everything it uses (root path, key, a dup of the caller's fd, the buffer), so it
 * may outlive the store: cancel_all() only marks it, and its done callback then frees it without
 * calling the caller back. The thread side touches nothing but its job: progress is a counter
 * that a loop timer turns into store_report_progress() calls. */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "fs-util.h"
#include "log.h"
#include "sha256.h"
#include "storage.h"

#define FILE_BLOCK_SIZE (4U * 1024U * 1024U)
#define FILE_PROGRESS_USEC (250 * USEC_PER_MSEC)
#define FILE_LIST_MAX (4U * 1024U * 1024U) /* objects in one listing */
#define FILE_PUT_ATTEMPTS 3                 /* a concurrent remove may prune a directory we just made */
#define FILE_TMP_MARK ".tmp-"               /* temporary names: ".<base>.tmp-<16 hex>" */
#define FILE_MODE 0644
#define FILE_DIR_MODE 0755

typedef enum FileOp {
        FILE_OP_PUT,
        FILE_OP_GET,
        FILE_OP_GET_DATA,
        FILE_OP_LIST,
        FILE_OP_REMOVE,
} FileOp;

typedef struct FileStore FileStore;
typedef struct FileJob FileJob;

struct FileJob {
        FileStore *fs; /* NULL once cancelled */
        FileJob *prev, *next;
        FileOp op;
        char *root;
        char *key; /* the key, or the prefix of a listing */
        int fd;    /* put: source; get: destination. Our own dup. */
        uint64_t offset, len, out_offset;
        void *buf;
        size_t max;
        bool create_only;
        char *sha256;
        char **part_sha256;
        size_t n_parts;
        uint64_t part_size;
        atomic_bool cancelled;
        _Atomic uint64_t moved; /* bytes written so far, by the thread */
        uint64_t reported;      /* the part of moved already reported, on the loop */
        char *data;             /* get_data result */
        size_t data_len;
        StoreObject *objects; /* list result */
        size_t n_objects, n_allocated;
        StoreDone done;
        StoreDataDone data_done;
        StoreListDone list_done;
        void *userdata;
};

struct FileStore {
        Store *store;
        char *root;
        FileJob *jobs; /* submitted and not cancelled */
        sd_event_source *progress;
};

/* ------------------------------------------------------------------ thread side */

static bool job_cancelled(FileJob *j) {
        return atomic_load(&j->cancelled);
}

static bool file_name_is_temp(const char *name) {
        return name[0] == '.' && strstr(name, FILE_TMP_MARK);
}

static int read_full_at(int fd, void *buf, size_t len, uint64_t offset) {
        for (size_t done = 0; done < len;) {
                ssize_t n = pread(fd, (uint8_t *) buf + done, len - done, (off_t) (offset + done));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ENODATA; /* the source is shorter than it claimed */
                done += (size_t) n;
        }
        return 0;
}

static int write_full_at(int fd, const void *buf, size_t len, uint64_t offset) {
        for (size_t done = 0; done < len;) {
                ssize_t n = pwrite(fd, (const uint8_t *) buf + done, len - done, (off_t) (offset + done));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                done += (size_t) n;
        }
        return 0;
}

/* Copies len bytes: copy_file_range() while the kernel can, then pread()/pwrite() in large blocks. */
static int copy_range(FileJob *j, int in_fd, uint64_t in_off, int out_fd, uint64_t out_off, uint64_t len) {
        _cleanup_free_ uint8_t *block = NULL;
        bool kernel_copy = true;
        int r;

        while (len > 0) {
                size_t n = (size_t) MIN(len, (uint64_t) FILE_BLOCK_SIZE);
                ssize_t k;

                if (job_cancelled(j))
                        return -ECANCELED;
                if (kernel_copy) {
                        loff_t i = (loff_t) in_off, o = (loff_t) out_off;

                        k = copy_file_range(in_fd, &i, out_fd, &o, n, 0);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0) {
                                /* EXDEV, EINVAL, ENOSYS, EOPNOTSUPP, or 0 from pseudo files: read it
                                 * ourselves, which also tells a real error from a real EOF. */
                                kernel_copy = false;
                                continue;
                        }
                } else {
                        if (!block) {
                                block = malloc(FILE_BLOCK_SIZE);
                                if (!block)
                                        return -ENOMEM;
                        }
                        r = read_full_at(in_fd, block, n, in_off);
                        if (r < 0)
                                return r;
                        r = write_full_at(out_fd, block, n, out_off);
                        if (r < 0)
                                return r;
                        k = (ssize_t) n;
                }
                in_off += (uint64_t) k;
                out_off += (uint64_t) k;
                len -= (uint64_t) k;
                atomic_fetch_add(&j->moved, (uint64_t) k);
        }
        return 0;
}

static int open_root(const char *root, bool create) {
        int fd, r;

        if (create) {
                r = mkdir_p(root, FILE_DIR_MODE);
                if (r < 0)
                        return r;
        }
        fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* Opens the directory that holds the last component of path (relative to root_fd), one component
 * at a time and never through a symlink; with create, makes the missing directories durably.
 * *ret_base points into path. */
static int open_parent(int root_fd, const char *path, bool create, const char **ret_base) {
        _cleanup_close_ int cur = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
        const char *p = path, *slash;

        if (cur < 0)
                return -errno;
        while ((slash = strchr(p, '/'))) {
                char name[NAME_MAX + 1];
                size_t n = (size_t) (slash - p);
                int next;

                if (n == 0 || n > NAME_MAX)
                        return -EINVAL;
                memcpy(name, p, n);
                name[n] = 0;
                if (create) {
                        if (mkdirat(cur, name, FILE_DIR_MODE) >= 0) {
                                if (fsync(cur) < 0)
                                        return -errno;
                        } else if (errno != EEXIST)
                                return -errno;
                }
                next = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0)
                        return errno == ELOOP ? -ENOTDIR : -errno;
                safe_close(cur);
                cur = next;
                p = slash + 1;
        }
        *ret_base = p;
        return TAKE_FD(cur);
}

/* Opens an existing object for reading; -ENOENT for anything that is not one. */
static int open_object(const char *root, const char *key, struct stat *ret_st) {
        _cleanup_close_ int root_fd = -EBADF, dfd = -EBADF, fd = -EBADF;
        const char *base;

        root_fd = open_root(root, false);
        if (root_fd < 0)
                return root_fd;
        dfd = open_parent(root_fd, key, false, &base);
        if (dfd < 0)
                return dfd == -ENOTDIR ? -ENOENT : dfd;
        /* O_NONBLOCK: never hang on a FIFO someone left in the store. */
        fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT || errno == ELOOP || errno == ENOTDIR ? -ENOENT : -errno;
        if (fstat(fd, ret_st) < 0)
                return -errno;
        if (!S_ISREG(ret_st->st_mode))
                return -ENOENT;
        return TAKE_FD(fd);
}

static int sha256_check(Sha256Ctx *c, const char *expected) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        char hex[SHA256_HEX_SIZE];
        int r;

        r = sha256_ctx_final(c, digest);
        if (r < 0)
                return r;
        return strcasecmp(sha256_to_hex(digest, hex), expected) == 0 ? 0 : -EBADMSG;
}

/* Feeds a block to the hashes, checking each part as its last byte goes by. */
static int put_hash(FileJob *j, Sha256Ctx *whole, Sha256Ctx *part, size_t *part_index, const uint8_t *p,
                    size_t n) {
        int r;

        if (whole) {
                r = sha256_ctx_update(whole, p, n);
                if (r < 0)
                        return r;
        }
        while (part && n > 0) {
                size_t k = (size_t) MIN((uint64_t) n, j->part_size - sha256_ctx_bytes(part));

                r = sha256_ctx_update(part, p, k);
                if (r < 0)
                        return r;
                p += k;
                n -= k;
                if (sha256_ctx_bytes(part) == j->part_size) {
                        r = sha256_check(part, j->part_sha256[(*part_index)++]);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* Writes the bytes into the temporary file, through userspace when they must be hashed. */
static int put_fill(FileJob *j, int out) {
        _cleanup_(sha256_ctx_freep) Sha256Ctx *whole = NULL, *part = NULL;
        _cleanup_free_ uint8_t *block = NULL;
        size_t part_index = 0;
        int r;

        if (!j->sha256 && !j->part_sha256 && j->fd >= 0)
                return copy_range(j, j->fd, j->offset, out, 0, j->len);
        if (j->sha256) {
                r = sha256_ctx_new(&whole);
                if (r < 0)
                        return r;
        }
        if (j->part_sha256) {
                r = sha256_ctx_new(&part);
                if (r < 0)
                        return r;
        }
        if (j->fd >= 0 && j->len > 0) {
                block = malloc((size_t) MIN(j->len, (uint64_t) FILE_BLOCK_SIZE));
                if (!block)
                        return -ENOMEM;
        }
        for (uint64_t done = 0; done < j->len;) {
                size_t n = (size_t) MIN(j->len - done, (uint64_t) FILE_BLOCK_SIZE);
                const uint8_t *p = j->buf ? (const uint8_t *) j->buf + done : block;

                if (job_cancelled(j))
                        return -ECANCELED;
                if (!j->buf) {
                        r = read_full_at(j->fd, block, n, j->offset + done);
                        if (r < 0)
                                return r;
                }
                r = put_hash(j, whole, part, &part_index, p, n);
                if (r < 0)
                        return r;
                r = write_full_at(out, p, n, done);
                if (r < 0)
                        return r;
                done += n;
                atomic_fetch_add(&j->moved, (uint64_t) n);
        }
        if (part && part_index < j->n_parts) { /* the short last part, or an empty object */
                r = sha256_check(part, j->part_sha256[part_index]);
                if (r < 0)
                        return r;
        }
        return whole ? sha256_check(whole, j->sha256) : 0;
}

static void tmp_name(const char *base, char ret[static NAME_MAX + 1]) {
        static _Atomic uint64_t counter;
        uint64_t rnd;

        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t) sizeof(rnd))
                rnd = now_usec(CLOCK_MONOTONIC) ^ ((uint64_t) getpid() << 40) ^ atomic_fetch_add(&counter, 1);
        (void) snprintf(ret, NAME_MAX + 1, ".%.200s" FILE_TMP_MARK "%016" PRIx64, base, rnd);
}

static int put_commit(FileJob *j, int dfd, const char *tmp, const char *base) {
        if (!j->create_only)
                return renameat(dfd, tmp, dfd, base) < 0 ? -errno : 0;
        if (renameat2(dfd, tmp, dfd, base, RENAME_NOREPLACE) >= 0)
                return 0;
        if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
                return -errno;
        /* No RENAME_NOREPLACE here (some network filesystems): link(2) refuses an existing name too. */
        if (linkat(dfd, tmp, dfd, base, 0) < 0)
                return -errno;
        (void) unlinkat(dfd, tmp, 0);
        return 0;
}

static int put_once(FileJob *j) {
        _cleanup_close_ int root_fd = -EBADF, dfd = -EBADF, fd = -EBADF;
        char tmp[NAME_MAX + 1];
        const char *base;
        int r;

        root_fd = open_root(j->root, true);
        if (root_fd < 0)
                return root_fd;
        dfd = open_parent(root_fd, j->key, true, &base);
        if (dfd < 0)
                return dfd;
        for (unsigned i = 0; fd < 0; i++) {
                tmp_name(base, tmp);
                fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, FILE_MODE);
                if (fd < 0 && (errno != EEXIST || i >= 3))
                        return -errno;
        }
        r = put_fill(j, fd);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && job_cancelled(j))
                r = -ECANCELED;
        if (r >= 0)
                r = put_commit(j, dfd, tmp, base);
        if (r < 0) {
                (void) unlinkat(dfd, tmp, 0);
                return r;
        }
        return fsync(dfd) < 0 ? -errno : 0;
}

static int file_put_job(void *arg) {
        FileJob *j = arg;
        int r = -ENOENT;

        for (unsigned i = 0; r == -ENOENT && i < FILE_PUT_ATTEMPTS; i++) {
                if (job_cancelled(j))
                        return -ECANCELED;
                r = put_once(j);
        }
        return r;
}

static int file_get_job(void *arg) {
        _cleanup_close_ int fd = -EBADF;
        FileJob *j = arg;
        struct stat st;
        uint64_t size, len;

        if (job_cancelled(j))
                return -ECANCELED;
        fd = open_object(j->root, j->key, &st);
        if (fd < 0)
                return fd;
        size = (uint64_t) st.st_size;
        if (j->offset > size)
                return -ERANGE;
        len = j->len > 0 ? j->len : size - j->offset;
        if (len > size - j->offset)
                return -ERANGE;
        return copy_range(j, fd, j->offset, j->fd, j->out_offset, len);
}

static int file_get_data_job(void *arg) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        FileJob *j = arg;
        struct stat st;
        size_t n;
        int r;

        if (job_cancelled(j))
                return -ECANCELED;
        fd = open_object(j->root, j->key, &st);
        if (fd < 0)
                return fd;
        if ((uint64_t) st.st_size > j->max || (uint64_t) st.st_size >= SIZE_MAX)
                return -EFBIG;
        n = (size_t) st.st_size;
        buf = malloc(n + 1);
        if (!buf)
                return -ENOMEM;
        r = read_full_at(fd, buf, n, 0);
        if (r < 0)
                return r;
        buf[n] = 0;
        j->data = TAKE_PTR(buf);
        j->data_len = n;
        return 0;
}

static int list_add(FileJob *j, const char *key, const struct stat *st) {
        if (j->n_objects >= FILE_LIST_MAX)
                return -E2BIG;
        if (j->n_objects == j->n_allocated) {
                size_t m = MAX(j->n_allocated * 2, (size_t) 64);
                StoreObject *o = reallocarray(j->objects, m, sizeof(StoreObject));

                if (!o)
                        return -ENOMEM;
                j->objects = o;
                j->n_allocated = m;
        }
        j->objects[j->n_objects] = (StoreObject) {
                .key = strdup(key),
                .size = (uint64_t) st->st_size,
                .modified = (usec_t) st->st_mtim.tv_sec * USEC_PER_SEC + (usec_t) st->st_mtim.tv_nsec / NSEC_PER_USEC,
        };
        if (!j->objects[j->n_objects].key)
                return -ENOMEM;
        j->n_objects++;
        return 0;
}

static void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

/* Adds the objects below dfd (consumed), whose keys start with path; at the top, only the entries
 * whose names start with match. Symlinks, devices and temporary files are not objects. */
static int list_dir(FileJob *j, int dfd, char *path, size_t path_len, const char *match) {
        _cleanup_(closedirp) DIR *d = fdopendir(dfd);
        struct dirent *de;
        int r;

        if (!d) {
                safe_close(dfd);
                return -errno;
        }
        while ((errno = 0, de = readdir(d))) {
                size_t n = strlen(de->d_name);
                struct stat st;
                int child;

                if (job_cancelled(j))
                        return -ECANCELED;
                if (streq(de->d_name, ".") || streq(de->d_name, "..") ||
                    (match && !strneq(de->d_name, match, strlen(match))) || path_len + n + 1 > 1024)
                        continue;
                memcpy(path + path_len, de->d_name, n + 1);
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue; /* removed meanwhile */
                        return -errno;
                }
                if (S_ISREG(st.st_mode) && !file_name_is_temp(de->d_name) && store_key_is_valid(path)) {
                        r = list_add(j, path, &st);
                        if (r < 0)
                                return r;
                }
                if (!S_ISDIR(st.st_mode))
                        continue;
                child = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (child < 0 && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP))
                        continue;
                if (child < 0)
                        return -errno;
                path[path_len + n] = '/';
                path[path_len + n + 1] = 0;
                r = list_dir(j, child, path, path_len + n + 1, NULL);
                if (r < 0)
                        return r;
        }
        return errno > 0 ? -errno : 0;
}

static int object_compare(const void *a, const void *b) {
        return strcmp(((const StoreObject *) a)->key, ((const StoreObject *) b)->key);
}

static int file_list_job(void *arg) {
        _cleanup_close_ int root_fd = -EBADF;
        FileJob *j = arg;
        char path[1024 + 2];
        const char *base;
        size_t dir_len;
        int dfd, r;

        if (job_cancelled(j))
                return -ECANCELED;
        root_fd = open_root(j->root, false);
        if (root_fd == -ENOENT)
                return 0;
        if (root_fd < 0)
                return root_fd;
        dfd = open_parent(root_fd, j->key, false, &base);
        if (dfd == -ENOENT || dfd == -ENOTDIR)
                return 0; /* nothing under this prefix */
        if (dfd < 0)
                return dfd;
        dir_len = (size_t) (base - j->key);
        memcpy(path, j->key, dir_len);
        path[dir_len] = 0;
        r = list_dir(j, dfd, path, dir_len, base);
        if (r < 0)
                return r;
        if (j->n_objects > 0)
                qsort(j->objects, j->n_objects, sizeof(StoreObject), object_compare);
        return 0;
}

/* Best effort: removes the directories above key that are now empty, up to (not including) the root. */
static void prune_parents(int root_fd, const char *key) {
        _cleanup_free_ char *dir = strdup(key);
        char *slash;

        while (dir && (slash = strrchr(dir, '/'))) {
                _cleanup_close_ int pfd = -EBADF;
                const char *base;

                *slash = 0;
                pfd = open_parent(root_fd, dir, false, &base);
                if (pfd < 0 || unlinkat(pfd, base, AT_REMOVEDIR) < 0)
                        return;
                (void) fsync(pfd);
        }
}

static int file_remove_job(void *arg) {
        _cleanup_close_ int root_fd = -EBADF, dfd = -EBADF;
        FileJob *j = arg;
        const char *base;

        if (job_cancelled(j))
                return -ECANCELED;
        root_fd = open_root(j->root, false);
        if (root_fd == -ENOENT)
                return 0;
        if (root_fd < 0)
                return root_fd;
        dfd = open_parent(root_fd, j->key, false, &base);
        if (dfd == -ENOENT || dfd == -ENOTDIR)
                return 0;
        if (dfd < 0)
                return dfd;
        if (unlinkat(dfd, base, 0) < 0)
                /* EISDIR: a directory is a prefix, not an object: the key is missing. */
                return errno == ENOENT || errno == EISDIR ? 0 : -errno;
        if (fsync(dfd) < 0)
                return -errno;
        prune_parents(root_fd, j->key);
        return 0;
}

/* ------------------------------------------------------------------ loop side */

static FileJob *file_job_free(FileJob *j) {
        if (!j)
                return NULL;
        free(j->root);
        free(j->key);
        safe_close(j->fd);
        free(j->buf);
        free(j->sha256);
        for (size_t i = 0; j->part_sha256 && i < j->n_parts; i++)
                free(j->part_sha256[i]);
        free(j->part_sha256);
        free(j->data);
        store_objects_free(j->objects, j->n_objects);
        return mfree(j);
}
DEFINE_CLEANUP_FUNC(FileJob *, file_job_free);

static int file_job_new(FileStore *fs, FileOp op, const char *key, FileJob **ret) {
        _cleanup_(file_job_freep) FileJob *j = calloc(1, sizeof(FileJob));

        if (!j)
                return -ENOMEM;
        j->op = op;
        j->fd = -EBADF;
        atomic_init(&j->cancelled, false);
        atomic_init(&j->moved, 0);
        j->root = strdup(fs->root);
        j->key = strdup(key);
        if (!j->root || !j->key)
                return -ENOMEM;
        *ret = TAKE_PTR(j);
        return 0;
}

static void file_job_attach(FileStore *fs, FileJob *j) {
        j->fs = fs;
        j->prev = NULL;
        j->next = fs->jobs;
        if (fs->jobs)
                fs->jobs->prev = j;
        fs->jobs = j;
}

static void file_job_detach(FileJob *j) {
        if (!j->fs)
                return;
        if (j->prev)
                j->prev->next = j->next;
        else
                j->fs->jobs = j->next;
        if (j->next)
                j->next->prev = j->prev;
        j->prev = j->next = NULL;
        j->fs = NULL;
}

/* Bytes the thread moved since the last report. */
static uint64_t file_job_take_progress(FileJob *j) {
        uint64_t moved = atomic_load(&j->moved), delta = moved > j->reported ? moved - j->reported : 0;

        j->reported += delta;
        return delta;
}

static int file_store_on_progress(sd_event_source *s, uint64_t usec, void *userdata) {
        FileStore *fs = userdata;
        uint64_t bytes = 0;

        for (FileJob *j = fs->jobs; j; j = j->next)
                bytes += file_job_take_progress(j);
        if (fs->jobs && sd_event_source_set_time_relative(s, FILE_PROGRESS_USEC) >= 0)
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (bytes > 0)
                store_report_progress(fs->store, bytes); /* last: the callback may free the store */
        return 0;
}

/* Progress is best effort: without the timer, each job still reports its bytes when it ends. */
static void file_store_arm_progress(FileStore *fs) {
        int enabled = SD_EVENT_OFF;

        if (!fs->progress) {
                if (sd_event_add_time_relative(fs->store->event, &fs->progress, CLOCK_MONOTONIC,
                                               FILE_PROGRESS_USEC, 0, file_store_on_progress, fs) >= 0)
                        (void) sd_event_source_set_description(fs->progress, "store-file-progress");
                return;
        }
        if (sd_event_source_get_enabled(fs->progress, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return;
        if (sd_event_source_set_time_relative(fs->progress, FILE_PROGRESS_USEC) >= 0)
                (void) sd_event_source_set_enabled(fs->progress, SD_EVENT_ONESHOT);
}

static void file_job_deliver(Store *s, FileJob *j, int result) {
        switch (j->op) {
        case FILE_OP_GET_DATA: {
                char *data = result < 0 ? NULL : TAKE_PTR(j->data);

                j->data_done(s, result, data, data ? j->data_len : 0, j->userdata);
                break;
        }
        case FILE_OP_LIST: {
                StoreObject *objects = result < 0 ? NULL : TAKE_PTR(j->objects);
                size_t n = objects ? j->n_objects : 0;

                if (objects)
                        j->n_objects = 0;
                j->list_done(s, result, objects, n, j->userdata);
                break;
        }
        default:
                j->done(s, result, j->userdata);
        }
}

/* On the loop, from the worker. */
static void file_job_on_done(int result, void *arg) {
        _cleanup_(file_job_freep) FileJob *j = arg;
        Store *s;
        uint64_t bytes;

        if (!j->fs)
                return; /* cancelled: nobody to tell */
        s = j->fs->store;
        bytes = file_job_take_progress(j);
        if (bytes > 0) {
                store_report_progress(s, bytes);
                if (!j->fs)
                        return; /* the progress callback cancelled us */
        }
        file_job_detach(j);
        file_job_deliver(s, j, result);
}

/* Hands j to the worker; consumes j. */
static int file_job_start(FileStore *fs, FileJob *j, WorkerFunc fn) {
        int r;

        file_job_attach(fs, j);
        r = worker_submit(fs->store->worker, fn, file_job_on_done, j);
        if (r < 0) {
                file_job_detach(j);
                file_job_free(j);
                return r;
        }
        if (j->op == FILE_OP_PUT || j->op == FILE_OP_GET)
                file_store_arm_progress(fs);
        return 0;
}

static bool hex_sha256_valid(const char *s) {
        return strlen(s) == 64 && strspn(s, "0123456789abcdefABCDEF") == 64;
}

/* A valid key that does not look like one of our temporary files (list() would hide it). */
static bool file_key_is_valid(const char *key) {
        const char *base;

        if (!store_key_is_valid(key))
                return false;
        base = strrchr(key, '/');
        return !file_name_is_temp(base ? base + 1 : key);
}

static int file_put_check(const StorePut *p) {
        if (!p->key || !file_key_is_valid(p->key))
                return -EINVAL;
        if (p->fd < 0 && !p->buf && p->len > 0)
                return -EINVAL;
        if (p->fd >= 0 && (p->offset > INT64_MAX || p->len > INT64_MAX - p->offset))
                return -EINVAL;
        if (p->fd < 0 && p->len > SIZE_MAX)
                return -EFBIG;
        if (p->sha256 && !hex_sha256_valid(p->sha256))
                return -EINVAL;
        if (!p->part_sha256 || p->n_parts == 0)
                return 0;
        if (p->n_parts > 1) {
                if (p->part_size == 0 ||
                    p->len / p->part_size + (p->len % p->part_size != 0) != (uint64_t) p->n_parts)
                        return -EINVAL;
        }
        for (size_t i = 0; i < p->n_parts; i++)
                if (!p->part_sha256[i] || !hex_sha256_valid(p->part_sha256[i]))
                        return -EINVAL;
        return 0;
}

static int file_put_copy_request(FileJob *j, const StorePut *p) {
        if (p->fd >= 0) {
                j->fd = fcntl(p->fd, F_DUPFD_CLOEXEC, 3); /* the caller may close its fd after cancel_all() */
                if (j->fd < 0)
                        return -errno;
        } else if (p->len > 0) {
                j->buf = malloc((size_t) p->len);
                if (!j->buf)
                        return -ENOMEM;
                memcpy(j->buf, p->buf, (size_t) p->len);
        }
        if (p->sha256) {
                j->sha256 = strdup(p->sha256);
                if (!j->sha256)
                        return -ENOMEM;
        }
        if (p->part_sha256 && p->n_parts > 0) {
                j->part_sha256 = calloc(p->n_parts, sizeof(char *));
                if (!j->part_sha256)
                        return -ENOMEM;
                j->n_parts = p->n_parts;
                j->part_size = p->n_parts > 1 ? p->part_size : p->len;
                for (size_t i = 0; i < p->n_parts; i++) {
                        j->part_sha256[i] = strdup(p->part_sha256[i]);
                        if (!j->part_sha256[i])
                                return -ENOMEM;
                }
        }
        return 0;
}

static int file_put(Store *s, const StorePut *p, StoreDone done, void *userdata) {
        _cleanup_(file_job_freep) FileJob *j = NULL;
        FileStore *fs = s->data;
        int r;

        assert(done);
        r = file_put_check(p);
        if (r < 0)
                return r;
        r = file_job_new(fs, FILE_OP_PUT, p->key, &j);
        if (r < 0)
                return r;
        r = file_put_copy_request(j, p);
        if (r < 0)
                return r;
        j->offset = p->offset;
        j->len = p->len;
        j->create_only = p->create_only;
        j->done = done;
        j->userdata = userdata;
        return file_job_start(fs, TAKE_PTR(j), file_put_job);
}

static int file_get(Store *s, const char *key, uint64_t offset, uint64_t len, int out_fd, uint64_t out_offset,
                    StoreDone done, void *userdata) {
        _cleanup_(file_job_freep) FileJob *j = NULL;
        FileStore *fs = s->data;
        int r;

        assert(done);
        if (!key || !file_key_is_valid(key) || out_fd < 0 || offset > INT64_MAX || len > INT64_MAX - offset ||
            out_offset > INT64_MAX || len > INT64_MAX - out_offset)
                return -EINVAL;
        r = file_job_new(fs, FILE_OP_GET, key, &j);
        if (r < 0)
                return r;
        j->fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
        if (j->fd < 0)
                return -errno;
        j->offset = offset;
        j->len = len;
        j->out_offset = out_offset;
        j->done = done;
        j->userdata = userdata;
        return file_job_start(fs, TAKE_PTR(j), file_get_job);
}

static int file_get_data(Store *s, const char *key, size_t max, StoreDataDone done, void *userdata) {
        _cleanup_(file_job_freep) FileJob *j = NULL;
        FileStore *fs = s->data;
        int r;

        assert(done);
        if (!key || !file_key_is_valid(key))
                return -EINVAL;
        r = file_job_new(fs, FILE_OP_GET_DATA, key, &j);
        if (r < 0)
                return r;
        j->max = max;
        j->data_done = done;
        j->userdata = userdata;
        return file_job_start(fs, TAKE_PTR(j), file_get_data_job);
}

/* "" (everything), "a/b/" (a directory) or "a/b/c" (names starting with c in a/b). */
static bool file_prefix_is_valid(const char *prefix) {
        char probe[1024 + 2];

        if (isempty(prefix))
                return true;
        if (strlen(prefix) > 1023)
                return false;
        (void) snprintf(probe, sizeof(probe), "%sx", prefix);
        return store_key_is_valid(probe);
}

static int file_list(Store *s, const char *prefix, StoreListDone done, void *userdata) {
        _cleanup_(file_job_freep) FileJob *j = NULL;
        FileStore *fs = s->data;
        int r;

        assert(done);
        if (!file_prefix_is_valid(prefix))
                return -EINVAL;
        r = file_job_new(fs, FILE_OP_LIST, prefix ?: "", &j);
        if (r < 0)
                return r;
        j->list_done = done;
        j->userdata = userdata;
        return file_job_start(fs, TAKE_PTR(j), file_list_job);
}

static int file_remove(Store *s, const char *key, StoreDone done, void *userdata) {
        _cleanup_(file_job_freep) FileJob *j = NULL;
        FileStore *fs = s->data;
        int r;

        assert(done);
        if (!key || !file_key_is_valid(key))
                return -EINVAL;
        r = file_job_new(fs, FILE_OP_REMOVE, key, &j);
        if (r < 0)
                return r;
        j->done = done;
        j->userdata = userdata;
        return file_job_start(fs, TAKE_PTR(j), file_remove_job);
}

static void file_store_cancel(FileStore *fs) {
        while (fs->jobs) {
                FileJob *j = fs->jobs;

                /* A queued job returns at once; a running one stops at its next block, and
                 * nothing it leaves behind is visible (a put's temporary file is removed). */
                atomic_store(&j->cancelled, true);
                file_job_detach(j);
        }
        if (fs->progress)
                (void) sd_event_source_set_enabled(fs->progress, SD_EVENT_OFF);
}

static void file_cancel_all(Store *s) {
        file_store_cancel(s->data);
}

/* location: "/abs/path" — absolute, without ".." components. */
static int file_root_parse(const char *location, char **ret) {
        size_t n = strlen(location);

        if (location[0] != '/')
                return log_debug_errno(-EINVAL, "file store: \"%s\" is not an absolute path (want file:///abs/path)",
                                       location);
        for (const char *c = location; *c; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f)
                        return log_debug_errno(-EINVAL, "file store: control character in path");
        for (const char *c = location; (c = strstr(c, "..")); c += 2)
                if (c[-1] == '/' && (c[2] == '/' || c[2] == 0))
                        return log_debug_errno(-EINVAL, "file store: \"%s\" contains \"..\"", location);
        while (n > 1 && location[n - 1] == '/')
                n--;
        *ret = strndup(location, n);
        return *ret ? 0 : -ENOMEM;
}

static int file_open(Store *s, void **ret_data) {
        _cleanup_free_ FileStore *fs = NULL;
        int r;

        if (!s->worker)
                return log_debug_errno(-EINVAL, "file store: needs a worker for its disk I/O");
        fs = calloc(1, sizeof(FileStore));
        if (!fs)
                return -ENOMEM;
        r = file_root_parse(s->location, &fs->root);
        if (r < 0)
                return r;
        fs->store = s;
        *ret_data = TAKE_PTR(fs);
        return 0;
}

static void file_close(void *data) {
        FileStore *fs = data;

        if (!fs)
                return;
        file_store_cancel(fs);
        sd_event_source_disable_unref(fs->progress);
        free(fs->root);
        free(fs);
}

const StoreVTable store_file_vtable = {
        .scheme = "file",
        /* One part, always: a local copy gains nothing from multipart (store_part_size() then
         * returns the whole size). Part checksums are still verified when a caller sends them. */
        .min_part_size = 0,
        .max_part_size = 0,
        .max_parts = 1,
        .open = file_open,
        .close = file_close,
        .put = file_put,
        .get = file_get,
        .get_data = file_get_data,
        .list = file_list,
        .remove = file_remove,
        .sweep_uploads = NULL,          /* no multipart uploads, nothing left half-done to sweep */
        .cancel_all = file_cancel_all,
};
