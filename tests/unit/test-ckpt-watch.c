/* SPDX-License-Identifier: MIT */
#include "unit-helpers.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "ckpt-watch.h"
#include "fs-util.h"
#include "task.h"
#include "time-util.h"

/* Timing: the settle times are short so the tests are quick; assertions are about order and
 * counts, and every wait has a generous deadline that only a broken watcher reaches. */
#define SETTLE (200 * USEC_PER_MSEC)
#define DEADLINE (10 * USEC_PER_SEC)

typedef struct Ctx {
        sd_event *event;
        CkptWatch *w;
        char *base;             /* temp dir holding dir and outside */
        char *dir;              /* the watched checkpoint directory */
        char *outside;          /* a sibling nobody watches */
        unsigned n_settled;
        CkptSettleReason reason;
        usec_t changed_at;
        unsigned n_errors;
        int last_error;
} Ctx;

static char *join(const char *a, const char *b) {
        char *p;

        assert_true(asprintf(&p, "%s/%s", a, b) >= 0);
        return p;
}

static void on_settled(CkptWatch *w, CkptSettleReason reason, usec_t changed_at, void *userdata) {
        Ctx *c = userdata;

        assert_ptr_equal(w, c->w);
        c->n_settled++;
        c->reason = reason;
        c->changed_at = changed_at;
}

static void on_error(CkptWatch *w, int error, const char *message, void *userdata) {
        Ctx *c = userdata;

        assert_non_null(message);
        assert_true(error < 0);
        c->n_errors++;
        c->last_error = error;
}

static int setup(void **state) {
        const char *tmp = getenv("TMPDIR") ?: "/tmp";
        Ctx *c = calloc(1, sizeof(Ctx));

        assert_non_null(c);
        c->base = join(tmp, "test-ckpt-watch-XXXXXX");
        assert_non_null(mkdtemp(c->base));
        c->dir = join(c->base, "ckpt");
        c->outside = join(c->base, "outside");
        assert_int_equal(mkdir(c->dir, 0755), 0);
        assert_int_equal(mkdir(c->outside, 0755), 0);
        assert_int_equal(sd_event_new(&c->event), 0);
        *state = c;
        return 0;
}

static int teardown(void **state) {
        Ctx *c = *state;
        char cmd[512];

        ckpt_watch_free(c->w);
        sd_event_unref(c->event);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->base);
        assert_int_equal(system(cmd), 0);
        free(c->base);
        free(c->dir);
        free(c->outside);
        free(c);
        return 0;
}

static void start(Ctx *c, usec_t settle) {
        CkptWatchParams p = {
                .event = c->event,
                .dir = c->dir,
                .settle_usec = settle,
                .settled = on_settled,
                .error = on_error,
                .userdata = c,
        };

        assert_int_equal(ckpt_watch_new(&c->w, &p), 0);
}

/* Runs the loop until n settles were reported; false at the deadline. */
static bool run_until_settled(Ctx *c, unsigned n) {
        usec_t end = now_usec(CLOCK_MONOTONIC) + DEADLINE;

        while (c->n_settled < n && now_usec(CLOCK_MONOTONIC) < end)
                assert_true(sd_event_run(c->event, 50 * USEC_PER_MSEC) >= 0);
        return c->n_settled >= n;
}

static void run_for(Ctx *c, usec_t usec) {
        usec_t end = now_usec(CLOCK_MONOTONIC) + usec;

        while (now_usec(CLOCK_MONOTONIC) < end)
                assert_true(sd_event_run(c->event, 10 * USEC_PER_MSEC) >= 0);
}

static void put(const char *dir, const char *rel, const char *content) {
        _cleanup_free_ char *p = join(dir, rel);

        assert_int_equal(write_file_atomic(p, content, strlen(content), 0644), 0);
}

static void put_dir(const char *dir, const char *rel) {
        _cleanup_free_ char *p = join(dir, rel);

        assert_int_equal(mkdir_p(p, 0755), 0);
}

static void move(const char *from_dir, const char *from, const char *to_dir, const char *to) {
        _cleanup_free_ char *a = join(from_dir, from), *b = join(to_dir, to);

        assert_int_equal(rename(a, b), 0);
}

static bool exists(const char *dir, const char *rel) {
        _cleanup_free_ char *p = join(dir, rel);

        return access(p, F_OK) == 0;
}

/* ---- tests */

static void test_quiet_settle(void **state) {
        Ctx *c = *state;
        usec_t before;

        start(c, SETTLE);
        assert_false(ckpt_watch_dirty(c->w));
        before = now_usec(CLOCK_REALTIME);
        put(c->dir, "model.pt", "weights");
        assert_true(run_until_settled(c, 1));
        assert_int_equal(c->reason, CKPT_SETTLE_QUIET);
        assert_true(c->changed_at >= before);
        assert_int_equal(c->changed_at, ckpt_watch_last_change(c->w));
        assert_false(ckpt_watch_dirty(c->w));
        /* Once per burst: nothing more without a new change. */
        run_for(c, 3 * SETTLE);
        assert_int_equal(c->n_settled, 1);
        assert_int_equal(c->n_errors, 0);
}

static void test_no_change_no_settle(void **state) {
        Ctx *c = *state;

        put(c->dir, "old.pt", "written before the watch");
        start(c, SETTLE);
        run_for(c, 3 * SETTLE);
        assert_int_equal(c->n_settled, 0);
        assert_false(ckpt_watch_dirty(c->w));
        assert_int_equal(ckpt_watch_last_change(c->w), 0);
}

/* A writer keeping one file open and appending for several settle times (IN_MODIFY only, no
 * close until the end): one settle, after the last write. */
static void test_continued_writes_restart_settle(void **state) {
        Ctx *c = *state;
        _cleanup_free_ char *p = join(c->dir, "big.pt");
        usec_t settle = 800 * USEC_PER_MSEC, end, last = 0;
        char chunk[4096];
        int fd;

        memset(chunk, 'x', sizeof(chunk));
        start(c, settle);
        fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        end = now_usec(CLOCK_MONOTONIC) + 3 * settle;
        while (now_usec(CLOCK_MONOTONIC) < end) {
                last = now_usec(CLOCK_REALTIME);
                assert_int_equal(write(fd, chunk, sizeof(chunk)), (ssize_t) sizeof(chunk));
                run_for(c, 20 * USEC_PER_MSEC);
        }
        assert_int_equal(c->n_settled, 0);      /* still writing: never settled */
        assert_true(ckpt_watch_dirty(c->w));
        assert_true(ckpt_watch_last_change(c->w) >= last);

        last = now_usec(CLOCK_REALTIME);
        assert_int_equal(close(fd), 0);
        assert_true(run_until_settled(c, 1));
        assert_int_equal(c->reason, CKPT_SETTLE_QUIET);
        assert_true(c->changed_at >= last);     /* the close was the last change */
        run_for(c, 2 * settle);
        assert_int_equal(c->n_settled, 1);
}

static void test_commit_file(void **state) {
        Ctx *c = *state;
        _cleanup_free_ char *commit = join(c->dir, TASK_COMMIT_FILE_NAME);

        start(c, 60 * USEC_PER_SEC);    /* the quiet settle cannot come within the test */
        put(c->dir, "model.pt", "weights");
        run_for(c, 100 * USEC_PER_MSEC);
        assert_true(ckpt_watch_dirty(c->w));
        assert_int_equal(c->n_settled, 0);

        put(c->dir, TASK_COMMIT_FILE_NAME, "done\n");  /* tmp + rename: IN_MOVED_TO */
        assert_true(run_until_settled(c, 1));
        assert_int_equal(c->reason, CKPT_SETTLE_COMMIT_FILE);
        assert_int_not_equal(c->changed_at, 0);
        assert_int_equal(c->changed_at, ckpt_watch_last_change(c->w));
        assert_false(exists(c->dir, TASK_COMMIT_FILE_NAME));
        /* Its own events (close, our unlink) are no checkpoint writes. */
        run_for(c, 300 * USEC_PER_MSEC);
        assert_false(ckpt_watch_dirty(c->w));
        assert_int_equal(c->n_settled, 1);

        /* Created in place (IN_CREATE, then writes and close) with no change before it. */
        FILE *f = fopen(commit, "we");
        assert_non_null(f);
        assert_true(fputs("again\n", f) >= 0);
        assert_int_equal(fclose(f), 0);
        assert_true(run_until_settled(c, 2));
        assert_int_equal(c->reason, CKPT_SETTLE_COMMIT_FILE);
        assert_int_equal(c->changed_at, 0);
        assert_false(exists(c->dir, TASK_COMMIT_FILE_NAME));
        run_for(c, 300 * USEC_PER_MSEC);
        assert_false(ckpt_watch_dirty(c->w));
        assert_int_equal(c->n_settled, 2);

        /* Only at the top: in a subdirectory it is an ordinary file. */
        put_dir(c->dir, "sub");
        put(c->dir, "sub/" TASK_COMMIT_FILE_NAME, "x");
        run_for(c, 300 * USEC_PER_MSEC);
        assert_int_equal(c->n_settled, 2);
        assert_true(ckpt_watch_dirty(c->w));
        assert_true(exists(c->dir, "sub/" TASK_COMMIT_FILE_NAME));
        assert_int_equal(c->n_errors, 0);
}

static void test_commit_file_left_from_before(void **state) {
        Ctx *c = *state;

        put(c->dir, TASK_COMMIT_FILE_NAME, "stale");
        start(c, 60 * USEC_PER_SEC);
        assert_int_equal(c->n_settled, 0);      /* never from inside ckpt_watch_new() */
        assert_true(run_until_settled(c, 1));
        assert_int_equal(c->reason, CKPT_SETTLE_COMMIT_FILE);
        assert_int_equal(c->changed_at, 0);
        assert_false(exists(c->dir, TASK_COMMIT_FILE_NAME));
}

static void test_new_subdirectories(void **state) {
        Ctx *c = *state;

        start(c, SETTLE);
        /* Written into before the watcher saw the directory: its creation is the change. */
        put_dir(c->dir, "step_1");
        put(c->dir, "step_1/a.pt", "a");
        assert_true(run_until_settled(c, 1));
        /* Now watched itself. */
        put(c->dir, "step_1/b.pt", "b");
        assert_true(run_until_settled(c, 2));
        /* A whole chain at once: the walk finds the inner ones. */
        put_dir(c->dir, "x/y/z");
        assert_true(run_until_settled(c, 3));
        put(c->dir, "x/y/z/f.pt", "f");
        assert_true(run_until_settled(c, 4));
        run_for(c, 3 * SETTLE);
        assert_int_equal(c->n_settled, 4);
        assert_int_equal(c->n_errors, 0);
}

static void test_renames(void **state) {
        Ctx *c = *state;

        start(c, SETTLE);
        /* torch.save to a temporary name elsewhere + os.replace into place */
        put(c->outside, "tmp.pt", "w");
        move(c->outside, "tmp.pt", c->dir, "model.pt");
        assert_true(run_until_settled(c, 1));
        /* a rename within the directory alone */
        move(c->dir, "model.pt", c->dir, "model-final.pt");
        assert_true(run_until_settled(c, 2));
        /* orbax: a directory tree written elsewhere, renamed into place; its insides are watched */
        put_dir(c->outside, "step.tmp/sub");
        put(c->outside, "step.tmp/sub/shard", "s");
        move(c->outside, "step.tmp", c->dir, "step_1");
        assert_true(run_until_settled(c, 3));
        put(c->dir, "step_1/sub/shard2", "s");
        assert_true(run_until_settled(c, 4));
        /* a directory renamed within: what is created in it later is found under its new name */
        put_dir(c->dir, "d.tmp");
        assert_true(run_until_settled(c, 5));
        move(c->dir, "d.tmp", c->dir, "d");
        assert_true(run_until_settled(c, 6));
        put_dir(c->dir, "d/new");
        assert_true(run_until_settled(c, 7));
        put(c->dir, "d/new/f", "f");
        assert_true(run_until_settled(c, 8));
        assert_int_equal(c->n_errors, 0);
}

static void test_moved_out(void **state) {
        Ctx *c = *state;

        put_dir(c->dir, "sub");
        start(c, SETTLE);
        move(c->dir, "sub", c->outside, "sub");
        assert_true(run_until_settled(c, 1));
        /* No longer part of the checkpoint: writes there are not changes. */
        put(c->outside, "sub/f", "f");
        run_for(c, 3 * SETTLE);
        assert_int_equal(c->n_settled, 1);
        assert_false(ckpt_watch_dirty(c->w));
}

static void test_reset(void **state) {
        Ctx *c = *state;

        start(c, SETTLE);
        /* Queued but not yet read when reset is called: before it, so not counted. */
        put(c->dir, "old.pt", "o");
        put_dir(c->dir, "sub");
        ckpt_watch_reset(c->w);
        assert_false(ckpt_watch_dirty(c->w));
        run_for(c, 3 * SETTLE);
        assert_int_equal(c->n_settled, 0);
        assert_false(ckpt_watch_dirty(c->w));

        /* The bookkeeping still happened: sub is watched. */
        put(c->dir, "sub/new.pt", "n");
        assert_true(run_until_settled(c, 1));
        assert_int_equal(c->reason, CKPT_SETTLE_QUIET);

        /* Seen and pending: reset drops the pending settle. */
        put(c->dir, "pending.pt", "p");
        run_for(c, SETTLE / 4);
        assert_true(ckpt_watch_dirty(c->w));
        ckpt_watch_reset(c->w);
        run_for(c, 3 * SETTLE);
        assert_int_equal(c->n_settled, 1);

        /* A commit file from before the reset is removed, not reported. */
        put(c->dir, TASK_COMMIT_FILE_NAME, "c");
        ckpt_watch_reset(c->w);
        assert_false(exists(c->dir, TASK_COMMIT_FILE_NAME));
        run_for(c, 3 * SETTLE);
        assert_int_equal(c->n_settled, 1);

        /* The next one is reported again. */
        put(c->dir, TASK_COMMIT_FILE_NAME, "c");
        assert_true(run_until_settled(c, 2));
        assert_int_equal(c->reason, CKPT_SETTLE_COMMIT_FILE);
}

static void test_one_settle_per_burst(void **state) {
        Ctx *c = *state;
        char name[64];

        start(c, SETTLE);
        for (unsigned i = 0; i < 200; i++) {
                snprintf(name, sizeof(name), "shard-%u.tmp", i);
                put(c->dir, name, "data");
                if (i % 2 == 0) {
                        char final[64];

                        snprintf(final, sizeof(final), "shard-%u", i);
                        move(c->dir, name, c->dir, final);
                }
        }
        assert_true(run_until_settled(c, 1));
        run_for(c, 3 * SETTLE);
        assert_int_equal(c->n_settled, 1);
        assert_false(ckpt_watch_dirty(c->w));
}

static void test_top_removed_and_recreated(void **state) {
        Ctx *c = *state;
        _cleanup_free_ char *cmd = NULL;
        usec_t end;

        put(c->dir, "model.pt", "m");
        start(c, SETTLE);
        assert_true(asprintf(&cmd, "rm -rf '%s'", c->dir) >= 0);
        assert_int_equal(system(cmd), 0);
        end = now_usec(CLOCK_MONOTONIC) + DEADLINE;
        while (c->n_errors == 0 && now_usec(CLOCK_MONOTONIC) < end)
                assert_true(sd_event_run(c->event, 50 * USEC_PER_MSEC) >= 0);
        assert_int_equal(c->n_errors, 1);
        assert_int_equal(c->last_error, -ENOENT);
        assert_true(run_until_settled(c, 1));   /* the removal changed the checkpoint */

        /* Back again: found by the retry, which counts as a change, then watched as before. */
        assert_int_equal(mkdir(c->dir, 0755), 0);
        assert_true(run_until_settled(c, 2));
        put(c->dir, "model.pt", "m2");
        assert_true(run_until_settled(c, 3));
        put(c->dir, TASK_COMMIT_FILE_NAME, "c");
        assert_true(run_until_settled(c, 4));
        assert_int_equal(c->reason, CKPT_SETTLE_COMMIT_FILE);

        /* Moved away and replaced at once: the old one is no longer watched. */
        move(c->base, "ckpt", c->outside, "old");
        assert_int_equal(mkdir(c->dir, 0755), 0);
        assert_true(run_until_settled(c, 5));
        assert_int_equal(c->n_errors, 2);
        put(c->outside, "old/f", "f");
        run_for(c, 3 * SETTLE);
        assert_int_equal(c->n_settled, 5);
        put(c->dir, "f", "f");
        assert_true(run_until_settled(c, 6));
}

static unsigned read_proc_uint(const char *path) {
        unsigned v = 0;
        FILE *f = fopen(path, "re");

        if (f) {
                if (fscanf(f, "%u", &v) != 1)
                        v = 0;
                fclose(f);
        }
        return v;
}

/* More events than the kernel queues without reading: IN_Q_OVERFLOW. A directory created after
 * the overflow is known only from the walk the watcher does then. */
static void test_queue_overflow(void **state) {
        Ctx *c = *state;
        unsigned max = read_proc_uint("/proc/sys/fs/inotify/max_queued_events");
        _cleanup_free_ char *a = join(c->dir, "a"), *b = join(c->dir, "b");

        if (max == 0 || max > 1000000)
                skip();
        put(c->dir, "a", "a");
        put(c->dir, "b", "b");
        start(c, SETTLE);
        /* Alternating names, so the kernel cannot merge consecutive events. */
        for (unsigned i = 0; i < max + 16; i++)
                assert_int_equal(chmod(i % 2 ? a : b, i % 4 < 2 ? 0600 : 0644), 0);
        put_dir(c->dir, "late");
        assert_true(run_until_settled(c, 1));
        run_for(c, 3 * SETTLE);
        assert_int_equal(c->n_settled, 1);
        put(c->dir, "late/f", "f");
        assert_true(run_until_settled(c, 2));
}

static void test_dir_limit(void **state) {
        Ctx *c = *state;
        char name[64];

        if (read_proc_uint("/proc/sys/fs/inotify/max_user_watches") < 4 * CKPT_WATCH_MAX_DIRS)
                skip();
        for (unsigned i = 0; i < CKPT_WATCH_MAX_DIRS + 8; i++) {
                snprintf(name, sizeof(name), "d%u", i);
                put_dir(c->dir, name);
        }
        start(c, SETTLE);
        assert_int_equal(c->n_errors, 1);       /* once, not per directory left out */
        assert_int_equal(c->last_error, -ENOSPC);
        /* What it has, it still watches. */
        put(c->dir, "model.pt", "m");
        assert_true(run_until_settled(c, 1));
        assert_int_equal(c->n_errors, 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_quiet_settle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_change_no_settle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_continued_writes_restart_settle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commit_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commit_file_left_from_before, setup, teardown),
                cmocka_unit_test_setup_teardown(test_new_subdirectories, setup, teardown),
                cmocka_unit_test_setup_teardown(test_renames, setup, teardown),
                cmocka_unit_test_setup_teardown(test_moved_out, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
                cmocka_unit_test_setup_teardown(test_one_settle_per_burst, setup, teardown),
                cmocka_unit_test_setup_teardown(test_top_removed_and_recreated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_queue_overflow, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dir_limit, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
