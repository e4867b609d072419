/* SPDX-License-Identifier: MIT */
/* The snapshot engine against the file:// store in a temporary directory, on a real sd_event loop
 * with a real worker pool: create, list, restore, hostile manifests, missing objects. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "unit-helpers.h"

#include "config.h"
#include "fs-util.h"
#include "snapshot.h"
#include "storage.h"
#include "strv.h"
#include "time-util.h"
#include "worker.h"

#define RUN_DEADLINE_USEC (60 * USEC_PER_SEC)
#define PATHF(buf, ...) assert_true((size_t) snprintf(buf, sizeof(buf), __VA_ARGS__) < sizeof(buf))
#define BIG_SIZE (3U * 1024U * 1024U + 777U)

typedef struct Fixture {
        char dir[64];
        char ckpt[128], store_root[128], state[128], out[128];
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
        SnapshotSummary info;
        size_t n_infos;
        char ids[8][SNAPSHOT_ID_MAX];
        size_t n_warnings;
        uint64_t progress;
} Result;

static void result_clear(Result *r) {
        free(r->message);
        snapshot_summary_done(&r->info);
        *r = (Result) {};
}

static void run_until(Fixture *f, Result *r) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + RUN_DEADLINE_USEC;

        while (!r->done) {
                assert_true(now_usec(CLOCK_MONOTONIC) < deadline);
                assert_true(sd_event_run(f->event, 100 * USEC_PER_MSEC) >= 0);
        }
}

static void keep_info(Result *r, int error, const SnapshotSummary *info, const char *message) {
        r->done = true;
        r->error = error;
        r->message = message ? strdup(message) : NULL;
        if (info) {
                r->info = *info;
                r->info.instance_id = strdup(info->instance_id);
                r->info.boot_id = strdup(info->boot_id);
                r->info.hostname = strdup(info->hostname);
                r->info.parent = info->parent ? strdup(info->parent) : NULL;
        }
}

static void on_created(SnapshotCreate *c, int error, const SnapshotSummary *info, const char *message, void *u) {
        keep_info(u, error, info, message);
}

static void on_restored(SnapshotRestore *rs, int error, const SnapshotSummary *info, const char *message, void *u) {
        keep_info(u, error, info, message);
}

static void on_listed(SnapshotList *l, int error, const SnapshotSummary *infos, size_t n, char * const *warnings,
                      void *u) {
        Result *r = u;

        r->done = true;
        r->error = error;
        r->n_infos = n;
        for (size_t i = 0; i < n && i < 8; i++)
                memcpy(r->ids[i], infos[i].id, SNAPSHOT_ID_MAX);
        r->n_warnings = strv_length(warnings);
}

static void on_progress(const char *phase, uint64_t bytes, void *u) {
        Result *r = u;

        if (streq(phase, "upload"))
                r->progress += bytes;
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

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(Fixture));
        uint8_t *big = malloc(BIG_SIZE);
        char p[256];

        assert_non_null(f);
        strcpy(f->dir, "/tmp/test-snapshot-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->ckpt, sizeof(f->ckpt), "%s/ckpt", f->dir);
        snprintf(f->store_root, sizeof(f->store_root), "%s/store", f->dir);
        snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
        snprintf(f->out, sizeof(f->out), "%s/out", f->dir);
        assert_int_equal(mkdir(f->ckpt, 0755), 0);
        PATHF(p, "%s/sub", f->ckpt);
        assert_int_equal(mkdir(p, 0750), 0);
        for (size_t i = 0; i < BIG_SIZE; i++)
                big[i] = (uint8_t) (i * 2654435761U >> 13);
        write_file(f->ckpt, "sub/model.bin", big, BIG_SIZE);
        write_file(f->ckpt, "top.txt", "hello\n", 6);
        write_file(f->ckpt, "empty", "", 0);
        write_file(f->ckpt, ".trainsupd-commit", "", 0);
        PATHF(p, "%s/link", f->ckpt);
        assert_int_equal(symlink("top.txt", p), 0);
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
                                                                         .progress = on_progress,
                                                                         .done = on_created, .userdata = r },
                                               &c),
                         0);
        run_until(f, r);
}

static void do_list(Fixture *f, Result *r) {
        _cleanup_(snapshot_list_freep) SnapshotList *l = NULL;

        assert_int_equal(snapshot_list_start(f->store, "job", "main", on_listed, r, &l), 0);
        run_until(f, r);
}

static void do_restore(Fixture *f, const char *id, const char *dest, bool force, Result *r) {
        _cleanup_(snapshot_restore_freep) SnapshotRestore *rs = NULL;

        assert_int_equal(snapshot_restore_start(&(SnapshotRestoreParams) { .store = f->store, .worker = f->worker,
                                                                           .job = "job", .task = "main", .id = id,
                                                                           .dest = dest, .force = force,
                                                                           .done = on_restored, .userdata = r },
                                                &rs),
                         0);
        run_until(f, r);
}

static void assert_same_file(Fixture *f, const char *dest, const char *name) {
        size_t a_len, b_len;
        char *a = read_whole(f->ckpt, name, &a_len), *b = read_whole(dest, name, &b_len);
        char pa[2048], pb[2048];
        struct stat sa, sb;

        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(a_len, b_len);
        assert_memory_equal(a, b, a_len);
        PATHF(pa, "%s/%s", f->ckpt, name);
        PATHF(pb, "%s/%s", dest, name);
        assert_int_equal(stat(pa, &sa), 0);
        assert_int_equal(stat(pb, &sb), 0);
        assert_int_equal(sa.st_mode & 0777, sb.st_mode & 0777);
        assert_int_equal(sa.st_mtim.tv_sec, sb.st_mtim.tv_sec);
        assert_int_equal(sa.st_mtim.tv_nsec, sb.st_mtim.tv_nsec);
        free(a);
        free(b);
}

static bool path_exists(const char *dir, const char *name) {
        char p[2048];
        struct stat st;

        PATHF(p, "%s/%s", dir, name);
        return lstat(p, &st) == 0;
}

static void test_create_list_restore(void **state) {
        Fixture *f = *state;
        Result r = {}, l = {}, rs = {};
        char target[64] = {};
        char p[512];

        do_create(f, &r);
        assert_int_equal(r.error, 0);
        assert_int_equal(r.info.seq, 1);
        assert_int_equal(r.info.files, 3); /* the commit file is not snapshotted */
        assert_int_equal(r.info.bytes, BIG_SIZE + 6);
        assert_int_equal(r.info.uploaded_objects, 3);
        assert_int_equal(r.progress, BIG_SIZE + 6);

        do_list(f, &l);
        assert_int_equal(l.error, 0);
        assert_int_equal(l.n_infos, 1);
        assert_string_equal(l.ids[0], r.info.id);

        do_restore(f, NULL, f->out, false, &rs);
        assert_int_equal(rs.error, 0);
        assert_string_equal(rs.info.id, r.info.id);
        assert_same_file(f, f->out, "sub/model.bin");
        assert_same_file(f, f->out, "top.txt");
        assert_same_file(f, f->out, "empty");
        assert_false(path_exists(f->out, ".trainsupd-commit"));
        PATHF(p, "%s/link", f->out);
        assert_int_equal(readlink(p, target, sizeof(target) - 1), 7);
        assert_string_equal(target, "top.txt");
        result_clear(&r);
        result_clear(&rs);
}

static void test_unchanged_uploads_nothing(void **state) {
        Fixture *f = *state;
        Result a = {}, b = {}, c = {};

        do_create(f, &a);
        assert_int_equal(a.error, 0);
        do_create(f, &b);
        assert_int_equal(b.error, 0);
        assert_int_equal(b.info.seq, 2);
        assert_int_equal(b.info.uploaded_objects, 0);
        assert_int_equal(b.progress, 0);
        assert_non_null(b.info.parent);
        assert_string_equal(b.info.parent, a.info.id);

        write_file(f->ckpt, "top.txt", "changed\n", 8);
        do_create(f, &c);
        assert_int_equal(c.error, 0);
        assert_int_equal(c.info.seq, 3);
        assert_int_equal(c.info.uploaded_objects, 1);
        assert_int_equal(c.progress, 8);
        result_clear(&a);
        result_clear(&b);
        result_clear(&c);
}

/* Writes a copy of manifest `from` under a new id with seq, after replacing `what` with `with`. */
static void forge_manifest2(Fixture *f, const char *from, uint64_t seq, const char *what, const char *with,
                            const char *what2, const char *with2, char ret_id[static SNAPSHOT_ID_MAX]) {
        char path[2048], *data, *hit, *out;
        SnapshotId id;
        size_t len, n = 0;

        PATHF(path, "job/main/manifests/%s.json", from);
        data = read_whole(f->store_root, path, &len);
        assert_non_null(data);
        assert_int_equal(snapshot_id_parse(from, &id), 0);
        assert_int_equal(snapshot_id_format(seq, id.time, id.writer, ret_id), 0);
        out = calloc(1, len * 2 + 4096);
        assert_non_null(out);
        for (const char *p = data; *p;) {
                if (strneq(p, from, strlen(from))) {
                        n += (size_t) sprintf(out + n, "%s", ret_id);
                        p += strlen(from);
                } else if (what && strneq(p, what, strlen(what))) {
                        n += (size_t) sprintf(out + n, "%s", with);
                        p += strlen(what);
                } else if (what2 && strneq(p, what2, strlen(what2))) {
                        n += (size_t) sprintf(out + n, "%s", with2);
                        p += strlen(what2);
                } else
                        out[n++] = *p++;
        }
        hit = out;
        PATHF(path, "job/main/manifests/%s.json", ret_id);
        write_file(f->store_root, path, hit, n);
        free(data);
        free(out);
}

static void forge_manifest(Fixture *f, const char *from, uint64_t seq, const char *what, const char *with,
                           char ret_id[static SNAPSHOT_ID_MAX]) {
        forge_manifest2(f, from, seq, what, with, NULL, NULL, ret_id);
}

/* Whether manifest_parse() returns within 5 s on the stored manifest id (in a child: a parser
 * that loops on hostile input must fail this test, not hang it). */
static bool parse_terminates(Fixture *f, const char *id) {
        char path[2048];
        size_t len;
        char *data;
        pid_t pid;
        int status;

        PATHF(path, "job/main/manifests/%s.json", id);
        data = read_whole(f->store_root, path, &len);
        assert_non_null(data);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                Manifest *m = NULL;
                char *err = NULL;

                alarm(5);
                (void) manifest_parse(data, len, &m, &err);
                _exit(0);
        }
        free(data);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void test_hostile_manifests(void **state) {
        Fixture *f = *state;
        Result a = {}, l = {}, rs = {}, bad = {};
        char trav[SNAPSHOT_ID_MAX], esc[SNAPSHOT_ID_MAX], lie[SNAPSHOT_ID_MAX];

        do_create(f, &a);
        assert_int_equal(a.error, 0);
        forge_manifest(f, a.info.id, 10, "\"path\": \"top.txt\"", "\"path\": \"../top.txt\"", trav);
        forge_manifest(f, a.info.id, 11, "\"target\": \"top.txt\"", "\"target\": \"../../../etc/passwd\"", esc);
        forge_manifest2(f, a.info.id, 12, "\"size\": 6,", "\"size\": 7,", "\"bytes\": 3146511", "\"bytes\": 3146512",
                        lie);
        bool esc_hangs = !parse_terminates(f, esc);
        if (esc_hangs) { /* test the rest, then fail */
                char p[2048];

                PATHF(p, "%s/job/main/manifests/%s.json", f->store_root, esc);
                assert_int_equal(unlink(p), 0);
        }
        forge_manifest(f, a.info.id, 12, "\"size\":6,", "\"size\":7,", lie);

        do_list(f, &l);
        assert_int_equal(l.error, 0);
        assert_true(l.n_infos >= 1);
        assert_string_equal(l.ids[0], a.info.id);
        assert_true(l.n_warnings >= 2);

        /* The newest valid one is the honest snapshot. */
        do_restore(f, NULL, f->out, false, &rs);
        assert_int_equal(rs.error, 0);
        assert_string_equal(rs.info.id, a.info.id);

        const char *ids[] = { trav, esc, lie };
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                char dest[256];

                if (esc_hangs && ids[i] == esc)
                        continue;
                PATHF(dest, "%s/bad%zu", f->dir, i);
                do_restore(f, ids[i], dest, false, &bad);
                assert_int_equal(bad.error, -EBADMSG);
                assert_false(path_exists(dest, ""));
                assert_false(path_exists(f->dir, "top.txt"));
                result_clear(&bad);
        }
        result_clear(&a);
        result_clear(&rs);
        if (esc_hangs)
                fail_msg("manifest_parse() does not return on a manifest whose symlink target leaves the "
                         "snapshot (manifest.c target_check(): \"..\" at depth 0 loops forever)");
}

static void test_missing_object_skipped(void **state) {
        Fixture *f = *state;
        Result a = {}, b = {}, rs = {};
        char key[1024];
        char *obj;

        do_create(f, &a);
        assert_int_equal(a.error, 0);
        write_file(f->ckpt, "top.txt", "only in the second\n", 19);
        do_create(f, &b);
        assert_int_equal(b.error, 0);
        assert_int_equal(b.info.uploaded_objects, 1);
        /* Remove the object only the second snapshot has: sha256 of "only in the second\n". */
        {
                DIR *d;
                struct dirent *de;
                char dir[1024];
                size_t len;

                PATHF(dir, "%s/job/main/data", f->store_root);
                d = opendir(dir);
                assert_non_null(d);
                while ((de = readdir(d))) {
                        if (de->d_name[0] == '.')
                                continue;
                        PATHF(key, "job/main/data/%s", de->d_name);
                        obj = read_whole(f->store_root, key, &len);
                        if (obj && len == 19) {
                                char p[1024];

                                PATHF(p, "%s/%s", f->store_root, key);
                                assert_int_equal(unlink(p), 0);
                        }
                        free(obj);
                }
                closedir(d);
        }
        do_restore(f, NULL, f->out, false, &rs);
        assert_int_equal(rs.error, 0);
        assert_string_equal(rs.info.id, a.info.id);
        result_clear(&rs);
        do_restore(f, b.info.id, f->dir, true, &rs);
        assert_int_equal(rs.error, -EBADMSG);
        result_clear(&a);
        result_clear(&b);
        result_clear(&rs);
}

static void test_nonempty_dest(void **state) {
        Fixture *f = *state;
        Result a = {}, rs = {};
        DIR *d;
        struct dirent *de;
        bool moved = false;

        do_create(f, &a);
        assert_int_equal(a.error, 0);
        assert_int_equal(mkdir(f->out, 0755), 0);
        write_file(f->out, "precious", "keep me", 7);
        do_restore(f, NULL, f->out, false, &rs);
        assert_int_equal(rs.error, -ENOTEMPTY);
        assert_true(path_exists(f->out, "precious"));
        assert_false(path_exists(f->out, "top.txt"));
        result_clear(&rs);

        do_restore(f, NULL, f->out, true, &rs);
        assert_int_equal(rs.error, 0);
        assert_false(path_exists(f->out, "precious"));
        assert_same_file(f, f->out, "top.txt");
        d = opendir(f->dir);
        assert_non_null(d);
        while ((de = readdir(d))) {
                assert_null(strstr(de->d_name, SNAPSHOT_RESTORE_TMP_INFIX));
                if (strstr(de->d_name, SNAPSHOT_RESTORE_OLD_INFIX)) {
                        char dir[1024];

                        PATHF(dir, "%s/%s", f->dir, de->d_name);
                        moved = path_exists(dir, "precious");
                }
        }
        closedir(d);
        assert_true(moved);
        result_clear(&a);
        result_clear(&rs);
}

static void test_restore_empty_store(void **state) {
        Fixture *f = *state;
        Result rs = {};

        do_restore(f, NULL, f->out, false, &rs);
        assert_int_equal(rs.error, -ENOENT);
        assert_false(path_exists(f->out, ""));
        result_clear(&rs);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_create_list_restore, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unchanged_uploads_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_manifests, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_object_skipped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_nonempty_dest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restore_empty_store, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
