/* SPDX-License-Identifier: MIT */
/* Retention and the completion marker against the file:// store in a temporary directory, on a
 * real sd_event loop with a real worker pool. Object ages are simulated with utimensat(). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "unit-helpers.h"

#include "config.h"
#include "fs-util.h"
#include "sha256.h"
#include "snapshot.h"
#include "storage.h"
#include "strv.h"
#include "time-util.h"
#include "worker.h"

#define RUN_DEADLINE_USEC (60 * USEC_PER_SEC)
#define PATHF(buf, ...) assert_true((size_t) snprintf(buf, sizeof(buf), __VA_ARGS__) < sizeof(buf))
#define SHARED_SIZE (1024U * 1024U + 17U)
#define HOUR_SEC 3600
#define OLD_SEC (2 * HOUR_SEC)
#define GRACE SNAPSHOT_RETENTION_GRACE_USEC

typedef struct Fixture {
        char dir[64];
        char ckpt[128], store_root[128], state[128], data[192], manifests[192];
        sd_event *event;
        Worker *worker;
        Config config;
        TaskConfig task;
        Store *store;
} Fixture;

typedef struct Result {
        bool done;
        int error;
        char *message;
        char id[SNAPSHOT_ID_MAX];
        uint64_t uploaded_objects, removed_snapshots, removed_objects;
        SnapshotRetentionResult ret;
        SnapshotCompletionState state;
        char *marker_last;              /* PRESENT: the "main" task's last snapshot */
} Result;

static void result_clear(Result *r) {
        free(r->message);
        free(r->marker_last);
        *r = (Result) {};
}

static void run_until(Fixture *f, Result *r) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + RUN_DEADLINE_USEC;

        while (!r->done) {
                assert_true(now_usec(CLOCK_MONOTONIC) < deadline);
                assert_true(sd_event_run(f->event, 100 * USEC_PER_MSEC) >= 0);
        }
}

static void on_created(SnapshotCreate *c, int error, const SnapshotSummary *info, const char *message, void *u) {
        Result *r = u;

        r->done = true;
        r->error = error;
        r->message = message ? strdup(message) : NULL;
        if (info) {
                memcpy(r->id, info->id, SNAPSHOT_ID_MAX);
                r->uploaded_objects = info->uploaded_objects;
                r->removed_snapshots = info->removed_snapshots;
                r->removed_objects = info->removed_objects;
        }
}

static void on_retained(SnapshotRetention *rt, int error, const SnapshotRetentionResult *result, const char *message,
                        void *u) {
        Result *r = u;

        r->done = true;
        r->error = error;
        r->message = message ? strdup(message) : NULL;
        assert_non_null(result);
        r->ret = *result;
        snapshot_retention_free(rt); /* the done callback may free the operation */
}

static void on_restored(SnapshotRestore *rs, int error, const SnapshotSummary *info, const char *message, void *u) {
        Result *r = u;

        r->done = true;
        r->error = error;
        if (info)
                memcpy(r->id, info->id, SNAPSHOT_ID_MAX);
}

static void on_marked(SnapshotMark *m, int result, const char *message, void *u) {
        Result *r = u;

        r->done = true;
        r->error = result;
        r->message = message ? strdup(message) : NULL;
}

static void on_checked(SnapshotCompletionCheck *c, int error, SnapshotCompletionState state,
                       const JobCompletion *marker, const char *message, void *u) {
        Result *r = u;

        r->done = true;
        r->error = error;
        r->state = state;
        r->message = message ? strdup(message) : NULL;
        assert_true((state == SNAPSHOT_COMPLETION_PRESENT) == !!marker);
        if (marker) {
                const JobCompletionTask *t = job_completion_find_task(marker, "main");

                assert_non_null(t);
                r->marker_last = t->last_snapshot ? strdup(t->last_snapshot) : NULL;
        }
}

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
        char path[2048];
        int fd;

        PATHF(path, "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
        close(fd);
}

static char *read_whole(const char *dir, const char *name, size_t *ret_len) {
        char path[2048];
        char *data = NULL;

        PATHF(path, "%s/%s", dir, name);
        if (read_file_bounded(path, 64U << 20, &data, ret_len) < 0)
                return NULL;
        return data;
}

static bool path_exists(const char *dir, const char *name) {
        char p[2048];
        struct stat st;

        PATHF(p, "%s/%s", dir, name);
        return lstat(p, &st) == 0;
}

static size_t count_entries(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

/* Sets the modification time of every file in dir to secs ago. */
static void age_dir(const char *dir, int secs) {
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT } };
        DIR *d = opendir(dir);
        struct dirent *de;

        assert_non_null(d);
        assert_int_equal(clock_gettime(CLOCK_REALTIME, &ts[1]), 0);
        ts[1].tv_sec -= secs;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        assert_int_equal(utimensat(dirfd(d), de->d_name, ts, 0), 0);
        closedir(d);
}

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(Fixture));
        uint8_t *big = malloc(SHARED_SIZE);
        char p[256];

        assert_non_null(f);
        assert_non_null(big);
        strcpy(f->dir, "/tmp/test-retention-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        PATHF(f->ckpt, "%s/ckpt", f->dir);
        PATHF(f->store_root, "%s/store", f->dir);
        PATHF(f->state, "%s/state", f->dir);
        PATHF(f->data, "%s/job/main/data", f->store_root);
        PATHF(f->manifests, "%s/job/main/manifests", f->store_root);
        assert_int_equal(mkdir(f->ckpt, 0755), 0);
        for (size_t i = 0; i < SHARED_SIZE; i++)
                big[i] = (uint8_t) (i * 2654435761U >> 11);
        write_file(f->ckpt, "shared.bin", big, SHARED_SIZE);
        free(big);

        f->task = (TaskConfig) { .name = (char *) "main", .checkpoint_dir = f->ckpt };
        PATHF(p, "file://%s", f->store_root);
        f->config = (Config) { .job_id = (char *) "job", .tasks = &f->task, .n_tasks = 1, .storage_url = strdup(p),
                               .storage_concurrency = 4 };
        assert_true(sd_event_new(&f->event) >= 0);
        assert_true(worker_new(&f->worker, f->event, 3) >= 0);
        assert_true(store_new(&f->store, &(StoreParams) { .event = f->event, .worker = f->worker,
                                                          .config = &f->config }) >= 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        char cmd[256];

        store_free(f->store);
        worker_free(f->worker);
        sd_event_unref(f->event);
        free(f->config.storage_url);
        PATHF(cmd, "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static void do_create(Fixture *f, Result *r) {
        _cleanup_(snapshot_create_freep) SnapshotCreate *c = NULL;

        assert_int_equal(snapshot_create_start(&(SnapshotCreateParams) { .store = f->store, .worker = f->worker,
                                                                         .config = &f->config, .task = &f->task,
                                                                         .instance_id = "i-0123", .boot_id = "b-1",
                                                                         .hostname = "host", .state_dir = f->state,
                                                                         .done = on_created, .userdata = r },
                                               &c),
                         0);
        run_until(f, r);
}

/* A snapshot whose "unique.txt" holds "v<n>"; asserts success. */
static void create_version(Fixture *f, unsigned n, char ret_id[static SNAPSHOT_ID_MAX]) {
        Result r = {};
        char buf[32];

        snprintf(buf, sizeof(buf), "v%u\n", n);
        write_file(f->ckpt, "unique.txt", buf, strlen(buf));
        do_create(f, &r);
        assert_int_equal(r.error, 0);
        assert_null(r.message);
        memcpy(ret_id, r.id, SNAPSHOT_ID_MAX);
        result_clear(&r);
}

static void do_retention(Fixture *f, unsigned keep, usec_t grace, Result *r) {
        SnapshotRetention *rt = NULL;

        assert_int_equal(snapshot_retention_start(f->store, "job", "main", keep, grace, on_retained, r, &rt), 0);
        run_until(f, r); /* on_retained frees rt */
}

static void do_restore(Fixture *f, const char *id, const char *dest, Result *r) {
        _cleanup_(snapshot_restore_freep) SnapshotRestore *rs = NULL;

        assert_int_equal(snapshot_restore_start(&(SnapshotRestoreParams) { .store = f->store, .worker = f->worker,
                                                                           .job = "job", .task = "main", .id = id,
                                                                           .dest = dest, .done = on_restored,
                                                                           .userdata = r },
                                                &rs),
                         0);
        run_until(f, r);
}

/* The data object name of content. */
static bool object_exists(Fixture *f, const void *data, size_t len) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        char hex[SHA256_HEX_SIZE];

        assert_int_equal(sha256_buffer(data, len, digest), 0);
        return path_exists(f->data, sha256_to_hex(digest, hex));
}

static bool version_exists(Fixture *f, unsigned n) {
        char buf[32];

        snprintf(buf, sizeof(buf), "v%u\n", n);
        return object_exists(f, buf, strlen(buf));
}

static void manifest_exists(Fixture *f, const char *id, bool expect) {
        char name[SNAPSHOT_ID_MAX + 8];

        PATHF(name, "%s.json", id);
        assert_true(path_exists(f->manifests, name) == expect);
}

static void assert_restores(Fixture *f, const char *id, unsigned n) {
        Result r = {};
        char dest[256], buf[32];
        size_t a_len, b_len;
        char *a, *b;

        PATHF(dest, "%s/restore-%u", f->dir, n);
        do_restore(f, id, dest, &r);
        assert_int_equal(r.error, 0);
        assert_string_equal(r.id, id);
        a = read_whole(f->ckpt, "shared.bin", &a_len);
        b = read_whole(dest, "shared.bin", &b_len);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(a_len, b_len);
        assert_memory_equal(a, b, a_len);
        free(a);
        free(b);
        snprintf(buf, sizeof(buf), "v%u\n", n);
        b = read_whole(dest, "unique.txt", &b_len);
        assert_non_null(b);
        assert_int_equal(b_len, strlen(buf));
        assert_memory_equal(b, buf, b_len);
        free(b);
        result_clear(&r);
}

static void test_keep_two_of_five(void **state) {
        Fixture *f = *state;
        char ids[6][SNAPSHOT_ID_MAX];
        Result r = {};

        for (unsigned i = 1; i <= 5; i++)
                create_version(f, i, ids[i]);
        assert_int_equal(count_entries(f->manifests), 5);
        assert_int_equal(count_entries(f->data), 6); /* shared + v1 ... v5 */
        age_dir(f->data, OLD_SEC);

        do_retention(f, 2, GRACE, &r);
        assert_int_equal(r.error, 0);
        assert_null(r.message);
        assert_int_equal(r.ret.manifests_removed, 3);
        assert_true(r.ret.manifest_bytes_removed > 0);
        assert_int_equal(r.ret.manifests_kept, 2);
        assert_int_equal(r.ret.objects_removed, 3);
        assert_int_equal(r.ret.bytes_removed, 9); /* "v1\n" "v2\n" "v3\n" */
        assert_int_equal(r.ret.objects_referenced, 3);
        assert_false(r.ret.data_skipped);
        for (unsigned i = 1; i <= 5; i++) {
                manifest_exists(f, ids[i], i > 3);
                assert_true(version_exists(f, i) == (i > 3));
        }
        assert_int_equal(count_entries(f->data), 3);
        assert_restores(f, ids[4], 4);
        assert_restores(f, ids[5], 5);
        result_clear(&r);

        /* Again: nothing left to do. */
        do_retention(f, 2, GRACE, &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.ret.manifests_removed, 0);
        assert_int_equal(r.ret.objects_removed, 0);
        result_clear(&r);
}

#define STRAY_YOUNG "1111111111111111111111111111111111111111111111111111111111111111"
#define STRAY_OLD "2222222222222222222222222222222222222222222222222222222222222222"

static void test_grace(void **state) {
        Fixture *f = *state;
        char id[SNAPSHOT_ID_MAX];
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT } };
        char p[512];
        Result r = {};

        create_version(f, 1, id);
        age_dir(f->data, OLD_SEC); /* referenced objects are kept however old */
        write_file(f->data, STRAY_OLD, "old", 3);
        write_file(f->data, "notes.txt", "not an object", 13);
        age_dir(f->data, OLD_SEC);
        write_file(f->data, STRAY_YOUNG, "young", 5); /* another writer's upload, not committed yet */
        /* Just within the grace period. */
        assert_int_equal(clock_gettime(CLOCK_REALTIME, &ts[1]), 0);
        ts[1].tv_sec -= HOUR_SEC - 60;
        PATHF(p, "%s/" STRAY_YOUNG, f->data);
        assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);

        do_retention(f, 1, GRACE, &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.ret.manifests_removed, 0);
        assert_int_equal(r.ret.objects_removed, 1);
        assert_int_equal(r.ret.bytes_removed, 3);
        assert_int_equal(r.ret.objects_young, 1);
        assert_int_equal(r.ret.objects_foreign, 1);
        assert_int_equal(r.ret.objects_referenced, 2);
        assert_false(path_exists(f->data, STRAY_OLD));
        assert_true(path_exists(f->data, STRAY_YOUNG));
        assert_true(path_exists(f->data, "notes.txt"));
        assert_true(version_exists(f, 1));
        assert_restores(f, id, 1);
        result_clear(&r);

        /* Once older than the grace period, it goes. */
        age_dir(f->data, OLD_SEC);
        do_retention(f, 1, GRACE, &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.ret.objects_removed, 1);
        assert_false(path_exists(f->data, STRAY_YOUNG));
        assert_true(version_exists(f, 1));
        result_clear(&r);
}

static void test_unparseable_manifest_keeps_data(void **state) {
        Fixture *f = *state;
        char ids[4][SNAPSHOT_ID_MAX], name[SNAPSHOT_ID_MAX + 8];
        Result r = {};

        for (unsigned i = 1; i <= 3; i++)
                create_version(f, i, ids[i]);
        write_file(f->data, STRAY_OLD, "old", 3);
        age_dir(f->data, OLD_SEC);
        PATHF(name, "%s.json", ids[3]);
        write_file(f->manifests, name, "{\"format\": \"trainsupd-snapshot\", ", 33);

        do_retention(f, 2, GRACE, &r);
        assert_int_equal(r.error, -EBADMSG);
        assert_non_null(r.message);
        assert_non_null(strstr(r.message, ids[3]));
        assert_true(r.ret.data_skipped);
        assert_int_equal(r.ret.manifests_removed, 1); /* the old manifest still goes: newer ones are kept */
        assert_int_equal(r.ret.objects_removed, 0);
        manifest_exists(f, ids[1], false);
        manifest_exists(f, ids[2], true);
        manifest_exists(f, ids[3], true);
        for (unsigned i = 1; i <= 3; i++)
                assert_true(version_exists(f, i));
        assert_true(path_exists(f->data, STRAY_OLD));
        result_clear(&r);
}

/* create runs retention after its commit when storage.keep is set; its problems never fail it. */
static void test_create_hook(void **state) {
        Fixture *f = *state;
        char ids[4][SNAPSHOT_ID_MAX], name[SNAPSHOT_ID_MAX + 8];
        Result r = {};

        create_version(f, 1, ids[1]);
        create_version(f, 2, ids[2]);
        age_dir(f->data, OLD_SEC);
        f->config.storage_keep = 2;
        write_file(f->ckpt, "unique.txt", "v3\n", 3);
        do_create(f, &r);
        assert_int_equal(r.error, 0);
        assert_null(r.message);
        assert_int_equal(r.removed_snapshots, 1);
        assert_int_equal(r.removed_objects, 1);
        memcpy(ids[3], r.id, SNAPSHOT_ID_MAX);
        manifest_exists(f, ids[1], false);
        assert_false(version_exists(f, 1));
        assert_true(version_exists(f, 2));
        assert_true(version_exists(f, 3));
        assert_restores(f, ids[2], 2);
        result_clear(&r);

        /* A broken manifest among those kept: the snapshot still commits, the message says why
         * retention left the data alone. */
        PATHF(name, "%s.json", ids[3]);
        write_file(f->manifests, name, "garbage", 7);
        age_dir(f->data, OLD_SEC);
        write_file(f->ckpt, "unique.txt", "v4\n", 3);
        do_create(f, &r);
        assert_int_equal(r.error, 0);
        assert_non_null(r.message);
        assert_non_null(strstr(r.message, "retention"));
        assert_int_equal(r.removed_snapshots, 1);
        assert_int_equal(r.removed_objects, 0);
        assert_true(version_exists(f, 2));
        assert_restores(f, r.id, 4);
        result_clear(&r);
}

/* An object in data/ that the parent does not reference is uploaded again, not reused: retention
 * could remove it before the commit. The upload renews its modification time. */
static void test_create_reuploads_unreferenced(void **state) {
        Fixture *f = *state;
        char ids[4][SNAPSHOT_ID_MAX], name[SNAPSHOT_ID_MAX + 8];
        uint8_t digest[SHA256_DIGEST_SIZE];
        char hex[SHA256_HEX_SIZE], p[512];
        struct stat st;
        Result r = {};

        create_version(f, 1, ids[1]);
        create_version(f, 2, ids[2]);
        PATHF(name, "%s.json", ids[1]);
        PATHF(p, "%s/%s", f->manifests, name);
        assert_int_equal(unlink(p), 0); /* as retention would: v1's object is now unreferenced */
        age_dir(f->data, OLD_SEC);
        assert_true(version_exists(f, 1));

        write_file(f->ckpt, "unique.txt", "v1\n", 3);
        do_create(f, &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.uploaded_objects, 1); /* v1 again; shared.bin is the parent's */
        assert_int_equal(sha256_buffer("v1\n", 3, digest), 0);
        PATHF(p, "%s/%s", f->data, sha256_to_hex(digest, hex));
        assert_int_equal(stat(p, &st), 0);
        assert_true(st.st_mtim.tv_sec > time(NULL) - 600);
        assert_restores(f, r.id, 1);
        result_clear(&r);
}

static void do_mark(Fixture *f, const char *last, Result *r) {
        _cleanup_(snapshot_mark_freep) SnapshotMark *m = NULL;
        const char *lasts[] = { last };

        assert_int_equal(snapshot_mark_completed_start(&(SnapshotMarkParams) { .store = f->store, .config = &f->config,
                                                                               .instance_id = "i-0123",
                                                                               .boot_id = "b-1", .hostname = "host",
                                                                               .last_snapshots = lasts,
                                                                               .done = on_marked, .userdata = r },
                                                       &m),
                         0);
        run_until(f, r);
}

static void do_check(Fixture *f, const char *job, Result *r) {
        _cleanup_(snapshot_completion_check_freep) SnapshotCompletionCheck *c = NULL;

        assert_int_equal(snapshot_completion_check_start(f->store, job, on_checked, r, &c), 0);
        run_until(f, r);
}

static void test_completion_marker(void **state) {
        Fixture *f = *state;
        char id[SNAPSHOT_ID_MAX], p[512], *first;
        size_t len;
        Result r = {};

        do_check(f, "job", &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.state, SNAPSHOT_COMPLETION_ABSENT);
        result_clear(&r);

        create_version(f, 1, id);
        do_mark(f, id, &r);
        assert_int_equal(r.error, 1);
        assert_null(r.message);
        result_clear(&r);
        PATHF(p, "%s/job", f->store_root);
        first = read_whole(p, "COMPLETED.json", &len);
        assert_non_null(first);

        do_mark(f, NULL, &r); /* already there: not rewritten */
        assert_int_equal(r.error, 0);
        assert_null(r.message);
        result_clear(&r);

        do_check(f, "job", &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.state, SNAPSHOT_COMPLETION_PRESENT);
        assert_non_null(r.marker_last);
        assert_string_equal(r.marker_last, id);
        result_clear(&r);

        /* Another job's: absent; a marker that does not parse, or names another job: invalid. */
        do_check(f, "other", &r);
        assert_int_equal(r.state, SNAPSHOT_COMPLETION_ABSENT);
        result_clear(&r);
        PATHF(p, "%s/other", f->store_root);
        assert_int_equal(mkdir(p, 0755), 0);
        write_file(p, "COMPLETED.json", "{\"format\": ", 11);
        do_check(f, "other", &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.state, SNAPSHOT_COMPLETION_INVALID);
        assert_non_null(r.message);
        result_clear(&r);
        write_file(p, "COMPLETED.json", first, len);
        do_check(f, "other", &r);
        assert_int_equal(r.state, SNAPSHOT_COMPLETION_INVALID);
        assert_non_null(strstr(r.message, "job"));
        result_clear(&r);
        free(first);

        assert_string_equal(snapshot_completion_state_to_string(SNAPSHOT_COMPLETION_INVALID), "invalid");
        assert_int_equal(snapshot_completion_state_from_string("present"), SNAPSHOT_COMPLETION_PRESENT);
        assert_int_equal(snapshot_completion_state_from_string("nope"), _SNAPSHOT_COMPLETION_STATE_INVALID);
}

static void test_invalid_arguments(void **state) {
        Fixture *f = *state;
        SnapshotRetention *rt = NULL;

        assert_int_equal(snapshot_retention_start(f->store, "job", "main", 0, GRACE, on_retained, NULL, &rt),
                         -EINVAL);
        assert_int_equal(snapshot_retention_start(f->store, "..", "main", 1, GRACE, on_retained, NULL, &rt),
                         -EINVAL);
        assert_null(rt);
}

/* Freeing a retention in flight: no callback, nothing leaks (ASan). */
static void test_cancel(void **state) {
        Fixture *f = *state;
        char id[SNAPSHOT_ID_MAX];
        SnapshotRetention *rt = NULL;
        Result r = {};

        create_version(f, 1, id);
        create_version(f, 2, id);
        assert_int_equal(snapshot_retention_start(f->store, "job", "main", 1, GRACE, on_retained, &r, &rt), 0);
        snapshot_retention_free(rt); /* its listing is in flight */
        for (unsigned i = 0; i < 20; i++)
                assert_true(sd_event_run(f->event, 10 * USEC_PER_MSEC) >= 0);
        assert_false(r.done);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_keep_two_of_five, setup, teardown),
                cmocka_unit_test_setup_teardown(test_grace, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unparseable_manifest_keeps_data, setup, teardown),
                cmocka_unit_test_setup_teardown(test_create_hook, setup, teardown),
                cmocka_unit_test_setup_teardown(test_create_reuploads_unreferenced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_completion_marker, setup, teardown),
                cmocka_unit_test_setup_teardown(test_invalid_arguments, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
