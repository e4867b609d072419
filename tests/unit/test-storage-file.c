/* SPDX-License-Identifier: MIT */
/* The file:// store on a temporary directory, driven by a real sd_event loop and worker pool. */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "unit-helpers.h"

#include "config.h"
#include "sha256.h"
#include "storage.h"
#include "time-util.h"
#include "worker.h"

#define RUN_DEADLINE_USEC (30 * USEC_PER_SEC)
#define BIG_SIZE (9U * 1024U * 1024U + 12345U) /* more than two of the store's 4 MiB blocks */

typedef struct Fixture {
        char dir[64];   /* mkdtemp */
        char root[128]; /* dir/store: not created until the first put */
        sd_event *event;
        Worker *worker;
        Config config;
        Store *store;
        uint64_t progress;
} Fixture;

typedef struct Result {
        unsigned calls;
        int error;
        char *data;
        size_t len;
        StoreObject *objects;
        size_t n;
} Result;

static void on_done(Store *s, int error, void *userdata) {
        Result *r = userdata;

        r->calls++;
        r->error = error;
}

static void on_data(Store *s, int error, char *data, size_t len, void *userdata) {
        Result *r = userdata;

        r->calls++;
        r->error = error;
        r->data = data;
        r->len = len;
}

static void on_list(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        Result *r = userdata;

        r->calls++;
        r->error = error;
        r->objects = objects;
        r->n = n;
}

static void on_progress(Store *s, uint64_t bytes, void *userdata) {
        Fixture *f = userdata;

        f->progress += bytes;
}

static void result_clear(Result *r) {
        free(r->data);
        store_objects_free(r->objects, r->n);
        *r = (Result) {};
}

static void run_until(Fixture *f, const Result *r) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + RUN_DEADLINE_USEC;

        while (r->calls == 0) {
                assert_true(now_usec(CLOCK_MONOTONIC) < deadline);
                assert_true(sd_event_run(f->event, 100 * USEC_PER_MSEC) >= 0);
        }
        assert_int_equal(r->calls, 1);
}

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(Fixture));
        char url[256];

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-storage-file-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->root, sizeof(f->root), "%s/store", f->dir);
        snprintf(url, sizeof(url), "file://%s", f->root);
        assert_int_equal(sd_event_new(&f->event), 0);
        assert_int_equal(worker_new(&f->worker, f->event, 2), 0);
        f->config.storage_concurrency = 2;
        assert_int_equal(store_new(&f->store, &(StoreParams) { .event = f->event, .worker = f->worker,
                                                                .config = &f->config, .url = url }),
                         0);
        f->store->progress = on_progress;
        f->store->progress_userdata = f;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        char cmd[128];

        store_free(f->store);
        worker_free(f->worker);
        sd_event_unref(f->event);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static void path_of(const Fixture *f, const char *key, char ret[static 512]) {
        snprintf(ret, 512, "%s/%s", f->root, key);
}

static bool exists(const Fixture *f, const char *key) {
        char p[512];

        path_of(f, key, p);
        return access(p, F_OK) == 0;
}

static char *slurp(const Fixture *f, const char *key, size_t *ret_len) {
        char p[512];
        struct stat st;
        char *buf;
        int fd;

        path_of(f, key, p);
        fd = open(p, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        buf = malloc((size_t) st.st_size + 1);
        assert_non_null(buf);
        assert_int_equal(pread(fd, buf, (size_t) st.st_size, 0), st.st_size);
        buf[st.st_size] = 0;
        close(fd);
        *ret_len = (size_t) st.st_size;
        return buf;
}

/* Entries of a directory below the root whose names contain ".tmp-". */
static unsigned count_temps(const Fixture *f, const char *dir) {
        char p[512];
        struct dirent *de;
        unsigned n = 0;
        DIR *d;

        path_of(f, dir, p);
        d = opendir(p);
        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (strstr(de->d_name, ".tmp-"))
                        n++;
        closedir(d);
        return n;
}

static void hex_of(const void *data, size_t len, char ret[static SHA256_HEX_SIZE]) {
        uint8_t d[SHA256_DIGEST_SIZE];

        assert_int_equal(sha256_buffer(data, len, d), 0);
        sha256_to_hex(d, ret);
}

static int put_full(Fixture *f, const StorePut *p) {
        Result r = {};
        int k;

        k = store_file_vtable.put(f->store, p, on_done, &r);
        if (k < 0) {
                assert_int_equal(r.calls, 0);
                return k;
        }
        assert_int_equal(r.calls, 0); /* never from within the call */
        run_until(f, &r);
        return r.error;
}

static int put_buf(Fixture *f, const char *key, const char *data, bool create_only) {
        return put_full(f, &(StorePut) { .key = key, .fd = -EBADF, .buf = data, .len = strlen(data),
                                         .create_only = create_only });
}

static int get_data(Fixture *f, const char *key, size_t max, Result *r) {
        int k = store_file_vtable.get_data(f->store, key, max, on_data, r);

        if (k < 0)
                return k;
        assert_int_equal(r->calls, 0);
        run_until(f, r);
        return r->error;
}

static int get(Fixture *f, const char *key, uint64_t offset, uint64_t len, int out_fd, uint64_t out_offset) {
        Result r = {};
        int k = store_file_vtable.get(f->store, key, offset, len, out_fd, out_offset, on_done, &r);

        if (k < 0)
                return k;
        assert_int_equal(r.calls, 0);
        run_until(f, &r);
        return r.error;
}

static int list(Fixture *f, const char *prefix, Result *r) {
        int k = store_file_vtable.list(f->store, prefix, on_list, r);

        if (k < 0)
                return k;
        assert_int_equal(r->calls, 0);
        run_until(f, r);
        return r->error;
}

static int remove_key(Fixture *f, const char *key) {
        Result r = {};
        int k = store_file_vtable.remove(f->store, key, on_done, &r);

        if (k < 0)
                return k;
        assert_int_equal(r.calls, 0);
        run_until(f, &r);
        return r.error;
}

static int make_source(Fixture *f, size_t size, uint8_t **ret_data) {
        char p[256];
        uint8_t *data = malloc(size);
        int fd;

        assert_non_null(data);
        for (size_t i = 0; i < size; i++)
                data[i] = (uint8_t) (i * 2654435761U >> 13);
        snprintf(p, sizeof(p), "%s/source", f->dir);
        fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, data, size, 0), (ssize_t) size);
        *ret_data = data;
        return fd;
}

static int make_out(Fixture *f) {
        char p[256];
        int fd;

        snprintf(p, sizeof(p), "%s/out", f->dir);
        fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        return fd;
}

/* ------------------------------------------------------------------ tests */

static void test_put_buffer_get_data(void **state) {
        Fixture *f = *state;
        Result r = {};
        char *c;
        size_t n;

        assert_false(exists(f, "")); /* the root comes with the first put */
        assert_int_equal(put_buf(f, "a/b/c.bin", "hello", false), 0);
        c = slurp(f, "a/b/c.bin", &n);
        assert_int_equal(n, 5);
        assert_memory_equal(c, "hello", 5);
        free(c);
        assert_int_equal(count_temps(f, "a/b"), 0);
        assert_int_equal(f->progress, 5);

        assert_int_equal(get_data(f, "a/b/c.bin", 64, &r), 0);
        assert_int_equal(r.len, 5);
        assert_string_equal(r.data, "hello");
        result_clear(&r);

        /* Overwrite. */
        assert_int_equal(put_buf(f, "a/b/c.bin", "bye", false), 0);
        assert_int_equal(get_data(f, "a/b/c.bin", 64, &r), 0);
        assert_string_equal(r.data, "bye");
        result_clear(&r);

        /* Empty object. */
        assert_int_equal(put_buf(f, "empty", "", false), 0);
        assert_int_equal(get_data(f, "empty", 0, &r), 0);
        assert_int_equal(r.len, 0);
        assert_string_equal(r.data, "");
        result_clear(&r);
}

static void test_put_fd_range(void **state) {
        Fixture *f = *state;
        _cleanup_free_ uint8_t *data = NULL;
        char hex[SHA256_HEX_SIZE];
        uint64_t off = 4097, len = BIG_SIZE - 5000;
        int fd = make_source(f, BIG_SIZE, &data);
        char *c;
        size_t n;

        /* Kernel copy (no checksum). */
        assert_int_equal(put_full(f, &(StorePut) { .key = "x/plain", .fd = fd, .offset = off, .len = len }), 0);
        c = slurp(f, "x/plain", &n);
        assert_int_equal(n, len);
        assert_memory_equal(c, data + off, len);
        free(c);
        assert_int_equal(f->progress, len);

        /* Through userspace, hashed. */
        hex_of(data + off, len, hex);
        assert_int_equal(put_full(f, &(StorePut) { .key = "x/hashed", .fd = fd, .offset = off, .len = len,
                                                   .sha256 = hex }),
                         0);
        c = slurp(f, "x/hashed", &n);
        assert_int_equal(n, len);
        assert_memory_equal(c, data + off, len);
        free(c);

        /* The caller may close its fd right after the call: the store works on its own copy. */
        {
                Result r = {};
                int fd2 = dup(fd);

                assert_int_equal(store_file_vtable.put(f->store,
                                                       &(StorePut) { .key = "x/dup", .fd = fd2, .len = 100 },
                                                       on_done, &r),
                                 0);
                close(fd2);
                run_until(f, &r);
                assert_int_equal(r.error, 0);
        }

        /* A source shorter than claimed. */
        assert_int_equal(put_full(f, &(StorePut) { .key = "x/short", .fd = fd, .offset = BIG_SIZE - 10, .len = 20 }),
                         -ENODATA);
        assert_false(exists(f, "x/short"));
        assert_int_equal(count_temps(f, "x"), 0);
        close(fd);
}

static void test_create_only(void **state) {
        Fixture *f = *state;
        Result r = {};

        assert_int_equal(put_buf(f, "m/manifest", "one", true), 0);
        assert_int_equal(put_buf(f, "m/manifest", "two", true), -EEXIST);
        assert_int_equal(get_data(f, "m/manifest", 64, &r), 0);
        assert_string_equal(r.data, "one");
        result_clear(&r);
        assert_int_equal(count_temps(f, "m"), 0);

        /* A plain put still replaces it. */
        assert_int_equal(put_buf(f, "m/manifest", "three", false), 0);
        assert_int_equal(get_data(f, "m/manifest", 64, &r), 0);
        assert_string_equal(r.data, "three");
        result_clear(&r);
}

static void test_checksum(void **state) {
        Fixture *f = *state;
        char good[SHA256_HEX_SIZE], bad[SHA256_HEX_SIZE], upper[SHA256_HEX_SIZE];
        _cleanup_free_ uint8_t *data = NULL;
        int fd = make_source(f, BIG_SIZE, &data);

        hex_of("payload", 7, good);
        hex_of("something else", 14, bad);
        assert_int_equal(put_full(f, &(StorePut) { .key = "c/obj", .fd = -EBADF, .buf = "payload", .len = 7,
                                                   .sha256 = bad }),
                         -EBADMSG);
        assert_false(exists(f, "c/obj"));
        assert_int_equal(count_temps(f, "c"), 0);

        /* A mismatch must not replace an existing object either. */
        assert_int_equal(put_buf(f, "c/obj", "old", false), 0);
        assert_int_equal(put_full(f, &(StorePut) { .key = "c/obj", .fd = fd, .len = BIG_SIZE, .sha256 = bad }),
                         -EBADMSG);
        assert_int_equal(count_temps(f, "c"), 0);
        {
                Result r = {};

                assert_int_equal(get_data(f, "c/obj", 64, &r), 0);
                assert_string_equal(r.data, "old");
                result_clear(&r);
        }

        /* Hex digits in either case; malformed checksums are refused before any I/O. */
        for (size_t i = 0; i < sizeof(good); i++)
                upper[i] = (char) toupper((unsigned char) good[i]);
        assert_int_equal(put_full(f, &(StorePut) { .key = "c/obj", .fd = -EBADF, .buf = "payload", .len = 7,
                                                   .sha256 = upper }),
                         0);
        assert_int_equal(put_full(f, &(StorePut) { .key = "c/obj", .fd = -EBADF, .buf = "payload", .len = 7,
                                                   .sha256 = "abc" }),
                         -EINVAL);
        close(fd);
}

static void test_part_checksums(void **state) {
        Fixture *f = *state;
        char h[3][SHA256_HEX_SIZE], wrong[SHA256_HEX_SIZE];
        char *parts[3] = { h[0], h[1], h[2] };
        const char *data = "0123456789";

        hex_of("0123", 4, h[0]);
        hex_of("4567", 4, h[1]);
        hex_of("89", 2, h[2]);
        hex_of("nope", 4, wrong);
        assert_int_equal(put_full(f, &(StorePut) { .key = "p/ok", .fd = -EBADF, .buf = data, .len = 10,
                                                   .part_size = 4, .part_sha256 = parts, .n_parts = 3 }),
                         0);
        assert_true(exists(f, "p/ok"));

        parts[1] = wrong;
        assert_int_equal(put_full(f, &(StorePut) { .key = "p/bad", .fd = -EBADF, .buf = data, .len = 10,
                                                   .part_size = 4, .part_sha256 = parts, .n_parts = 3 }),
                         -EBADMSG);
        assert_false(exists(f, "p/bad"));
        assert_int_equal(count_temps(f, "p"), 0);

        /* Parts that do not add up to the length. */
        parts[1] = h[1];
        assert_int_equal(put_full(f, &(StorePut) { .key = "p/bad", .fd = -EBADF, .buf = data, .len = 10,
                                                   .part_size = 3, .part_sha256 = parts, .n_parts = 3 }),
                         -EINVAL);
}

static void test_get_ranges(void **state) {
        Fixture *f = *state;
        _cleanup_free_ uint8_t *data = NULL;
        int src = make_source(f, BIG_SIZE, &data), out = make_out(f);
        _cleanup_free_ uint8_t *buf = malloc(BIG_SIZE);

        assert_non_null(buf);
        assert_int_equal(put_full(f, &(StorePut) { .key = "g/big", .fd = src, .len = BIG_SIZE }), 0);
        f->progress = 0;

        /* The whole object (len 0: the rest). */
        assert_int_equal(get(f, "g/big", 0, 0, out, 0), 0);
        assert_int_equal(pread(out, buf, BIG_SIZE, 0), BIG_SIZE);
        assert_memory_equal(buf, data, BIG_SIZE);
        assert_int_equal(f->progress, BIG_SIZE);

        /* A range, written at an offset of out_fd. */
        assert_int_equal(ftruncate(out, 0), 0);
        assert_int_equal(get(f, "g/big", 100, 20, out, 7), 0);
        assert_int_equal(pread(out, buf, 64, 0), 27);
        assert_memory_equal(buf + 7, data + 100, 20);

        /* The tail from an offset. */
        assert_int_equal(ftruncate(out, 0), 0);
        assert_int_equal(get(f, "g/big", BIG_SIZE - 3, 0, out, 0), 0);
        assert_int_equal(pread(out, buf, 64, 0), 3);
        assert_memory_equal(buf, data + BIG_SIZE - 3, 3);

        assert_int_equal(get(f, "g/big", BIG_SIZE + 1, 0, out, 0), -ERANGE);
        assert_int_equal(get(f, "g/big", BIG_SIZE - 3, 4, out, 0), -ERANGE);
        assert_int_equal(get(f, "g/missing", 0, 0, out, 0), -ENOENT);
        assert_int_equal(get(f, "nodir/missing", 0, 0, out, 0), -ENOENT);
        assert_int_equal(get(f, "g", 0, 0, out, 0), -ENOENT); /* a directory is not an object */
        assert_int_equal(get(f, "g/big/below", 0, 0, out, 0), -ENOENT);
        close(src);
        close(out);
}

static void test_get_data_limits(void **state) {
        Fixture *f = *state;
        Result r = {};

        assert_int_equal(put_buf(f, "d/ten", "0123456789", false), 0);
        assert_int_equal(get_data(f, "d/ten", 10, &r), 0);
        assert_int_equal(r.len, 10);
        assert_string_equal(r.data, "0123456789");
        result_clear(&r);
        assert_int_equal(get_data(f, "d/ten", 9, &r), -EFBIG);
        assert_null(r.data);
        result_clear(&r);
        assert_int_equal(get_data(f, "d/none", 10, &r), -ENOENT);
        assert_null(r.data);
        result_clear(&r);
}

static void assert_keys(const Result *r, const char *const *keys, size_t n) {
        assert_int_equal(r->error, 0);
        assert_int_equal(r->n, n);
        for (size_t i = 0; i < n; i++)
                assert_string_equal(r->objects[i].key, keys[i]);
}

static void test_list(void **state) {
        Fixture *f = *state;
        const char *all[] = { "other", "snap/1/a", "snap/1/b/c", "snap/10/x", "snap/2" };
        Result r = {};
        usec_t before = now_usec(CLOCK_REALTIME);

        /* Nothing at all yet: the root does not exist. */
        assert_int_equal(list(f, "", &r), 0);
        assert_int_equal(r.n, 0);
        result_clear(&r);

        for (size_t i = ELEMENTSOF(all); i > 0; i--)
                assert_int_equal(put_buf(f, all[i - 1], all[i - 1], false), 0);

        assert_int_equal(list(f, "", &r), 0);
        assert_keys(&r, all, ELEMENTSOF(all));
        for (size_t i = 0; i < r.n; i++) {
                assert_int_equal(r.objects[i].size, strlen(all[i]));
                assert_true(r.objects[i].modified != USEC_INFINITY);
                assert_true(r.objects[i].modified + 5 * USEC_PER_SEC >= before);
        }
        result_clear(&r);

        assert_int_equal(list(f, "snap/1/", &r), 0);
        assert_keys(&r, (const char *[]) { "snap/1/a", "snap/1/b/c" }, 2);
        result_clear(&r);

        /* A prefix is a string prefix, not a directory. */
        assert_int_equal(list(f, "snap/1", &r), 0);
        assert_keys(&r, (const char *[]) { "snap/1/a", "snap/1/b/c", "snap/10/x" }, 3);
        result_clear(&r);

        assert_int_equal(list(f, "snap/2", &r), 0);
        assert_keys(&r, (const char *[]) { "snap/2" }, 1);
        result_clear(&r);

        assert_int_equal(list(f, "nope/", &r), 0);
        assert_int_equal(r.n, 0);
        result_clear(&r);
        assert_int_equal(list(f, "snap/2/", &r), 0); /* below an object */
        assert_int_equal(r.n, 0);
        result_clear(&r);

        assert_int_equal(list(f, "../", &r), -EINVAL);
        assert_int_equal(list(f, "/abs", &r), -EINVAL);
        assert_int_equal(list(f, "a//", &r), -EINVAL);
        assert_int_equal(r.calls, 0);
}

static void test_remove_prunes(void **state) {
        Fixture *f = *state;

        assert_int_equal(put_buf(f, "d/e/f/g", "1", false), 0);
        assert_int_equal(put_buf(f, "d/keep", "2", false), 0);
        assert_int_equal(remove_key(f, "d/e/f/g"), 0);
        assert_false(exists(f, "d/e/f/g"));
        assert_false(exists(f, "d/e"));
        assert_true(exists(f, "d/keep"));

        assert_int_equal(remove_key(f, "d/keep"), 0);
        assert_false(exists(f, "d"));
        assert_true(exists(f, "")); /* never the root */

        /* Missing keys, directories and paths through objects: success. */
        assert_int_equal(remove_key(f, "d/keep"), 0);
        assert_int_equal(remove_key(f, "never/was/here"), 0);
        assert_int_equal(put_buf(f, "z/obj", "1", false), 0);
        assert_int_equal(remove_key(f, "z"), 0);
        assert_int_equal(remove_key(f, "z/obj/below"), 0);
        assert_true(exists(f, "z/obj"));
}

static void test_hostile_keys(void **state) {
        Fixture *f = *state;
        static const char *const keys[] = {
                "", "/abs", "../x", "a/../b", "a/./b", ".", "..", "a//b", "a/", "a\\b", "a\nb", "x/.obj.tmp-0123",
        };
        Result r = {};
        int out = make_out(f);

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                assert_int_equal(store_file_vtable.put(f->store,
                                                       &(StorePut) { .key = keys[i], .fd = -EBADF, .buf = "x", .len = 1 },
                                                       on_done, &r),
                                 -EINVAL);
                assert_int_equal(store_file_vtable.get(f->store, keys[i], 0, 0, out, 0, on_done, &r), -EINVAL);
                assert_int_equal(store_file_vtable.get_data(f->store, keys[i], 10, on_data, &r), -EINVAL);
                assert_int_equal(store_file_vtable.remove(f->store, keys[i], on_done, &r), -EINVAL);
        }
        assert_int_equal(r.calls, 0);
        assert_int_equal(worker_pending(f->worker), 0); /* nothing was even queued */
        assert_false(exists(f, ""));                   /* no I/O happened */
        close(out);
}

/* A symlink planted in the store never leads a put or a get outside the root. */
static void test_symlink_in_store(void **state) {
        Fixture *f = *state;
        char outside[256], link[512], p[512];
        int out = make_out(f);

        assert_int_equal(put_buf(f, "s/obj", "x", false), 0);
        snprintf(outside, sizeof(outside), "%s/outside", f->dir);
        assert_int_equal(mkdir(outside, 0700), 0);
        path_of(f, "evil", link);
        assert_int_equal(symlink(outside, link), 0);
        path_of(f, "s/alias", link);
        assert_int_equal(symlink("obj", link), 0);

        assert_int_equal(put_buf(f, "evil/x", "data", false), -ENOTDIR);
        snprintf(p, sizeof(p), "%s/x", outside);
        assert_int_equal(access(p, F_OK), -1);
        assert_int_equal(get(f, "evil/x", 0, 0, out, 0), -ENOENT);
        assert_int_equal(get(f, "s/alias", 0, 0, out, 0), -ENOENT);
        close(out);
}

static void test_crash_leftover_ignored(void **state) {
        Fixture *f = *state;
        Result r = {};
        char p[512];
        int fd;

        assert_int_equal(put_buf(f, "a/obj", "real", false), 0);
        /* What a put interrupted by a crash leaves behind. */
        path_of(f, "a/.obj.tmp-0123456789abcdef", p);
        fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "half", 4), 4);
        close(fd);
        path_of(f, "a/.new.tmp-fedcba9876543210", p);
        fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);

        assert_int_equal(list(f, "", &r), 0);
        assert_keys(&r, (const char *[]) { "a/obj" }, 1);
        result_clear(&r);
        assert_int_equal(list(f, "a/.", &r), 0);
        assert_int_equal(r.n, 0);
        result_clear(&r);
        assert_int_equal(get_data(f, "a/new", 10, &r), -ENOENT);
        result_clear(&r);
}

/* After cancel_all() no callback runs, whatever the jobs were doing; nothing half-written shows. */
static void test_cancel_all(void **state) {
        Fixture *f = *state;
        _cleanup_free_ uint8_t *data = NULL;
        int fd = make_source(f, BIG_SIZE, &data);
        Result r[8] = {};
        unsigned n_written = 0;
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + RUN_DEADLINE_USEC;

        for (unsigned i = 0; i < 6; i++) {
                char key[32];

                snprintf(key, sizeof(key), "q/%u", i);
                assert_int_equal(store_file_vtable.put(f->store, &(StorePut) { .key = key, .fd = fd, .len = BIG_SIZE },
                                                       on_done, &r[i]),
                                 0);
        }
        assert_int_equal(store_file_vtable.list(f->store, "", on_list, &r[6]), 0);
        assert_int_equal(store_file_vtable.get_data(f->store, "q/0", 10, on_data, &r[7]), 0);
        close(fd); /* allowed once cancelled */
        store_file_vtable.cancel_all(f->store);

        while (worker_pending(f->worker) > 0) {
                assert_true(now_usec(CLOCK_MONOTONIC) < deadline);
                assert_true(sd_event_run(f->event, 100 * USEC_PER_MSEC) >= 0);
        }
        for (unsigned i = 0; i < ELEMENTSOF(r); i++)
                assert_int_equal(r[i].calls, 0);
        assert_int_equal(count_temps(f, "q"), 0);
        for (unsigned i = 0; i < 6; i++) {
                char key[32];

                snprintf(key, sizeof(key), "q/%u", i);
                n_written += exists(f, key);
        }
        assert_true(n_written < 6); /* two threads cannot have finished all six before the cancel */
        for (unsigned i = 0; i < 6; i++) {
                char key[32];
                size_t n;

                snprintf(key, sizeof(key), "q/%u", i);
                if (!exists(f, key))
                        continue;
                /* Finished before the cancel reached it: then complete. */
                free(slurp(f, key, &n));
                assert_int_equal(n, BIG_SIZE);
        }

        /* The store still works afterwards. */
        assert_int_equal(put_buf(f, "after", "ok", false), 0);
}

/* store_free() with jobs in flight: their callbacks never run, the jobs free themselves. */
static void test_free_in_flight(void **state) {
        Fixture *f = *state;
        Result r[4] = {};
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + RUN_DEADLINE_USEC;

        for (unsigned i = 0; i < ELEMENTSOF(r); i++)
                assert_int_equal(store_file_vtable.put(f->store,
                                                       &(StorePut) { .key = "k", .fd = -EBADF, .buf = "v", .len = 1 },
                                                       on_done, &r[i]),
                                 0);
        f->store = store_free(f->store);
        while (worker_pending(f->worker) > 0) {
                assert_true(now_usec(CLOCK_MONOTONIC) < deadline);
                assert_true(sd_event_run(f->event, 100 * USEC_PER_MSEC) >= 0);
        }
        for (unsigned i = 0; i < ELEMENTSOF(r); i++)
                assert_int_equal(r[i].calls, 0);
}

static void test_open_refuses(void **state) {
        Fixture *f = *state;
        static const char *const bad[] = {
                "file://relative/path", "file://", "file:///a/../b", "file:///a/..", "file:///..",
        };
        Store *s = NULL;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(store_new(&s, &(StoreParams) { .event = f->event, .worker = f->worker,
                                                                .config = &f->config, .url = bad[i] }),
                                 -EINVAL);
        assert_null(s);
        /* Trailing slashes and names that merely contain dots are fine. */
        assert_int_equal(store_new(&s, &(StoreParams) { .event = f->event, .worker = f->worker,
                                                        .config = &f->config, .url = "file:///srv/a..b/" }),
                         0);
        assert_non_null(s);
        store_free(s);
        /* The file store needs the worker. */
        assert_int_equal(store_new(&s, &(StoreParams) { .event = f->event, .config = &f->config,
                                                        .url = "file:///srv" }),
                         -EINVAL);
        /* One part, always. */
        assert_int_equal(store_part_size(f->store, 100ULL << 30), 100ULL << 30);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_put_buffer_get_data, setup, teardown),
                cmocka_unit_test_setup_teardown(test_put_fd_range, setup, teardown),
                cmocka_unit_test_setup_teardown(test_create_only, setup, teardown),
                cmocka_unit_test_setup_teardown(test_checksum, setup, teardown),
                cmocka_unit_test_setup_teardown(test_part_checksums, setup, teardown),
                cmocka_unit_test_setup_teardown(test_get_ranges, setup, teardown),
                cmocka_unit_test_setup_teardown(test_get_data_limits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list, setup, teardown),
                cmocka_unit_test_setup_teardown(test_remove_prunes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_keys, setup, teardown),
                cmocka_unit_test_setup_teardown(test_symlink_in_store, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crash_leftover_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel_all, setup, teardown),
                cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_refuses, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
