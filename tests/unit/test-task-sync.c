/* SPDX-License-Identifier: MIT */
/* task-sync.c (background snapshots of settled checkpoints, flushes) and ckpt-round.c (a
 * checkpoint round without running tasks) against the file:// store in a temporary directory, on a
 * real sd_event loop with real inotify and worker threads. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "unit-helpers.h"

#include "ckpt-round.h"
#include "config.h"
#include "snapshot.h"
#include "storage.h"
#include "task-sync.h"
#include "task.h"
#include "time-util.h"
#include "worker.h"
#include "writer-id.h"

#define DEADLINE_USEC (30 * USEC_PER_SEC)
#define PATHF(buf, ...) assert_true((size_t) snprintf(buf, sizeof(buf), __VA_ARGS__) < sizeof(buf))

typedef struct Fixture {
        char dir[64];
        char ckpt[128], store_root[128], state[128];
        sd_event *event;
        Worker *worker;
        Config config;
        TaskConfig task;
        Store *store;
        WriterId writer;
        TaskSync *sync;
        unsigned settles, changes;
} Fixture;

typedef struct Flushed {
        bool done;
        int error;
        char id[SNAPSHOT_ID_MAX];
        uint64_t uploaded_bytes;
} Flushed;

static void on_changed(TaskSync *s, bool settled, void *userdata) {
        Fixture *f = userdata;

        if (settled)
                f->settles++;
        else
                f->changes++;
}

static void write_file(const char *dir, const char *name, const char *data) {
        char path[512];
        int fd;

        PATHF(path, "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, strlen(data)), (ssize_t) strlen(data));
        close(fd);
}

static void run_while(Fixture *f, bool (*pending)(Fixture *f, void *arg), void *arg) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + DEADLINE_USEC;

        while (pending(f, arg)) {
                assert_true(now_usec(CLOCK_MONOTONIC) < deadline);
                assert_true(sd_event_run(f->event, 50 * USEC_PER_MSEC) >= 0);
        }
}

static void run_for(Fixture *f, usec_t usec) {
        usec_t until = now_usec(CLOCK_MONOTONIC) + usec;

        while (now_usec(CLOCK_MONOTONIC) < until)
                assert_true(sd_event_run(f->event, 20 * USEC_PER_MSEC) >= 0);
}

static bool flush_pending(Fixture *f, void *arg) {
        return !((Flushed *) arg)->done;
}

static bool sync_busy(Fixture *f, void *arg) {
        return task_sync_busy(f->sync);
}

static void on_flushed(TaskSync *s, int error, const SnapshotSummary *info, const char *message, void *userdata) {
        Flushed *fl = userdata;

        fl->done = true;
        fl->error = error;
        if (info) {
                memcpy(fl->id, info->id, SNAPSHOT_ID_MAX);
                fl->uploaded_bytes = info->uploaded_bytes;
        }
}

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(Fixture));
        char p[256];

        assert_non_null(f);
        strcpy(f->dir, "/tmp/test-task-sync-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        PATHF(f->ckpt, "%s/ckpt", f->dir);
        PATHF(f->store_root, "%s/store", f->dir);
        PATHF(f->state, "%s/state", f->dir);
        assert_int_equal(mkdir(f->ckpt, 0755), 0);
        f->task = (TaskConfig) { .name = (char *) "main", .checkpoint_dir = f->ckpt };
        PATHF(p, "file://%s", f->store_root);
        f->config = (Config) { .job_id = (char *) "job", .tasks = &f->task, .n_tasks = 1, .storage_url = strdup(p),
                               .storage_concurrency = 2, .settle_ms = 300, .checkpoint_timeout_s = 1,
                               .checkpoint_signal = 10 };
        f->writer = (WriterId) { .instance_id = strdup("i-1"), .boot_id = strdup("b-1"), .hostname = strdup("h") };
        assert_true(sd_event_new(&f->event) >= 0);
        assert_true(worker_new(&f->worker, f->event, 2) >= 0);
        assert_true(store_new(&f->store, &(StoreParams) { .event = f->event, .worker = f->worker,
                                                          .config = &f->config }) >= 0);
        assert_int_equal(task_sync_new(&f->sync, &(TaskSyncParams) { .event = f->event, .store = f->store,
                                                                      .worker = f->worker, .config = &f->config,
                                                                      .tc = &f->task, .writer = &f->writer,
                                                                      .state_dir = f->state, .background = true,
                                                                      .changed = on_changed, .userdata = f }),
                         0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        char cmd[256];

        task_sync_free(f->sync);
        /* A cancelled run's worker jobs end before the store goes. */
        worker_free(f->worker);
        store_free(f->store);
        sd_event_unref(f->event);
        free(f->config.storage_url);
        writer_id_done(&f->writer);
        PATHF(cmd, "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static bool no_commit_yet(Fixture *f, void *arg) {
        return !task_sync_last_id(f->sync);
}

/* A checkpoint written and settled becomes a snapshot without anyone asking. */
static void test_background_snapshot(void **state) {
        Fixture *f = *state;
        TaskStatus st = {};

        assert_int_equal(task_sync_start(f->sync), 0);
        write_file(f->ckpt, "model.bin", "weights-1");
        run_while(f, no_commit_yet, NULL);
        assert_int_equal(f->settles, 1);
        task_sync_fill_status(f->sync, &st);
        assert_non_null(st.last_snapshot.id);
        assert_int_equal(st.last_snapshot.files, 1);
        assert_int_equal(st.last_snapshot.bytes, 9);
        assert_int_equal(st.pending_bytes, 0);
        run_while(f, sync_busy, NULL);
}

/* The commit file settles at once (no settle_ms wait needed) and is not snapshotted. */
static void test_commit_file(void **state) {
        Fixture *f = *state;
        Flushed fl = {};

        f->config.settle_ms = 60000;    /* quiet settling would take a minute */
        assert_int_equal(task_sync_start(f->sync), 0);
        write_file(f->ckpt, "model.bin", "weights-2");
        write_file(f->ckpt, TASK_COMMIT_FILE_NAME, "");
        run_while(f, no_commit_yet, NULL);
        assert_int_equal(f->settles, 1);
        run_while(f, sync_busy, NULL);
        /* Unchanged since: a flush answers with that snapshot, no new one. */
        char first[SNAPSHOT_ID_MAX];
        memcpy(first, task_sync_last_id(f->sync), SNAPSHOT_ID_MAX);
        assert_int_equal(task_sync_flush(f->sync, false, false, on_flushed, &fl), 0);
        assert_false(fl.done);  /* never from within the call */
        run_while(f, flush_pending, &fl);
        assert_int_equal(fl.error, 0);
        assert_string_equal(fl.id, first);
}

/* A flush after a change makes a new snapshot; force makes one even without a change. */
static void test_flush_new_and_forced(void **state) {
        Fixture *f = *state;
        Flushed a = {}, b = {};

        f->config.settle_ms = 60000;
        assert_int_equal(task_sync_start(f->sync), 0);
        write_file(f->ckpt, "model.bin", "weights-3");
        run_for(f, 200 * USEC_PER_MSEC);        /* the watcher sees the write */
        assert_int_equal(task_sync_flush(f->sync, true, false, on_flushed, &a), 0);
        run_while(f, flush_pending, &a);
        assert_int_equal(a.error, 0);
        assert_int_equal(a.uploaded_bytes, 9);
        assert_int_equal(task_sync_flush(f->sync, false, true, on_flushed, &b), 0);
        run_while(f, flush_pending, &b);
        assert_int_equal(b.error, 0);
        assert_string_not_equal(a.id, b.id);
        assert_int_equal(b.uploaded_bytes, 0);  /* same content: nothing sent again */
        run_while(f, sync_busy, NULL);
}

static void on_round(CkptRound *r, unsigned committed, unsigned failed, void *userdata) {
        unsigned *out = userdata;

        out[0] = committed;
        out[1] = failed;
        out[2] = 1;
}

static bool round_pending(Fixture *f, void *arg) {
        return ((unsigned *) arg)[2] == 0;
}

/* A round over a task that is not running commits its directory as it is, within the round. */
static void test_round_without_running_task(void **state) {
        Fixture *f = *state;
        Task *tasks[1] = { NULL };
        TaskSync *syncs[1] = { f->sync };
        _cleanup_(ckpt_round_freep) CkptRound *r = NULL;
        unsigned out[3] = {};

        f->config.settle_ms = 60000;
        assert_int_equal(task_sync_start(f->sync), 0);
        write_file(f->ckpt, "state.json", "{\"step\": 7}");
        run_for(f, 200 * USEC_PER_MSEC);
        assert_int_equal(ckpt_round_start(&(CkptRoundParams) { .event = f->event, .config = &f->config, .tasks = tasks,
                                                               .syncs = syncs, .stop = true,
                                                               .deadline = now_usec(CLOCK_REALTIME) + 20 * USEC_PER_SEC,
                                                               .why = "a test", .done = on_round, .userdata = out },
                                          &r),
                         0);
        run_while(f, round_pending, out);
        assert_int_equal(out[0], 1);
        assert_int_equal(out[1], 0);
        assert_non_null(task_sync_last_id(f->sync));
        run_while(f, sync_busy, NULL);
}

/* A broken store: the flush fails with the store's error and the last snapshot stays what it was. */
static void test_flush_store_error(void **state) {
        Fixture *f = *state;
        Flushed fl = {};
        char p[256];

        assert_int_equal(task_sync_start(f->sync), 0);
        write_file(f->ckpt, "model.bin", "weights-4");
        run_while(f, no_commit_yet, NULL);
        run_while(f, sync_busy, NULL);
        char before[SNAPSHOT_ID_MAX];
        memcpy(before, task_sync_last_id(f->sync), SNAPSHOT_ID_MAX);
        /* The store's manifests directory becomes a file: every commit fails. */
        PATHF(p, "rm -rf '%s/job/main/manifests' && touch '%s/job/main/manifests'", f->store_root, f->store_root);
        assert_int_equal(system(p), 0);
        write_file(f->ckpt, "model.bin", "weights-5");
        run_for(f, 100 * USEC_PER_MSEC);
        assert_int_equal(task_sync_flush(f->sync, true, false, on_flushed, &fl), 0);
        run_while(f, flush_pending, &fl);
        assert_true(fl.error < 0);
        assert_string_equal(task_sync_last_id(f->sync), before);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_background_snapshot, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commit_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flush_new_and_forced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_round_without_running_task, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flush_store_error, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
