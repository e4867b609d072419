/* SPDX-License-Identifier: MIT */
#include "unit-helpers.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "fs-util.h"
#include "strv.h"
#include "task.h"

/* A runtime that does what the test script says, so the task's policy and its record can be
 * checked without a container engine. */
typedef struct Fake {
        RuntimeFound found;
        char found_id[32];
        TaskExit found_exit;
        int launch_result;      /* < 0: launch() fails synchronously */
        bool launch_async_fail; /* launch() reports task_on_launch_failed() */
        unsigned launches;
        unsigned kills;
        int last_signal;
        unsigned stops;
        bool detachable;
        unsigned next_id;
} Fake;

static Fake fake;

static int fake_init(Task *t, void **ret) {
        *ret = &fake;
        return 0;
}

static int fake_find(Task *t) {
        TaskExit e = fake.found_exit;

        task_on_found(t, fake.found, fake.found == RUNTIME_FOUND_NOTHING ? NULL : fake.found_id, &e);
        return 0;
}

static int fake_launch(Task *t) {
        char id[32];

        fake.launches++;
        if (fake.launch_result < 0)
                return fake.launch_result;
        if (fake.launch_async_fail) {
                task_on_launch_failed(t, -ENOENT);
                return 0;
        }
        snprintf(id, sizeof(id), "c%u", ++fake.next_id);
        task_on_started(t, id);
        return 0;
}

static int fake_kill(Task *t, int sig) {
        fake.kills++;
        fake.last_signal = sig;
        return 0;
}

static int fake_stop(Task *t, usec_t grace) {
        fake.stops++;
        return 0;
}

static bool fake_detach(Task *t) {
        return fake.detachable;
}

static const RuntimeVTable fake_vtable = {
        .name = "fake",
        .init = fake_init,
        .find = fake_find,
        .launch = fake_launch,
        .kill = fake_kill,
        .stop = fake_stop,
        .detach = fake_detach,
};

typedef struct Ctx {
        char dir[64];
        Config *config;
        sd_event *event;
        unsigned changes;
} Ctx;

static void on_change(Task *t, void *userdata) {
        Ctx *c = userdata;

        c->changes++;
}

static int setup(void **state) {
        static const char json[] =
                "{\"job_id\": \"j1\", \"tasks\": [{\"name\": \"main\", \"runtime\": \"exec\", \"command\": [\"/bin/true\"],"
                " \"env\": {\"A\": \"1\", \"TRAINSUPD_TASK\": \"spoofed\"}, \"success_exit_codes\": [0, 3],"
                " \"restart\": {\"max\": 2, \"backoff_s\": 0, \"backoff_max_s\": 0}}]}";
        Ctx *c = calloc(1, sizeof(Ctx));
        char **problems = NULL;

        assert_non_null(c);
        strcpy(c->dir, "/tmp/test-task-XXXXXX");
        assert_non_null(mkdtemp(c->dir));
        assert_int_equal(config_parse(json, strlen(json), NULL, c->dir, &c->config, &problems), 0);
        assert_int_equal(sd_event_new(&c->event), 0);
        memset(&fake, 0, sizeof(fake));
        *state = c;
        return 0;
}

static int teardown(void **state) {
        Ctx *c = *state;
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
        assert_int_equal(system(cmd), 0);
        config_free(c->config);
        sd_event_unref(c->event);
        free(c);
        return 0;
}

static Task *new_task(Ctx *c) {
        const TaskParams p = {
                .event = c->event, .config = c->config, .tc = &c->config->tasks[0], .state_dir = c->dir,
                .vt = &fake_vtable, .on_change = on_change, .userdata = c,
        };
        Task *t = NULL;

        assert_int_equal(task_new(&t, &p), 0);
        return t;
}

/* Runs the loop until nothing is left to do right now (restart timers with zero back-off). */
static void run_pending(Ctx *c) {
        for (int i = 0; i < 10; i++)
                assert_true(sd_event_run(c->event, 0) >= 0);
}

static void test_decide(void **state) {
        Ctx *c = *state;
        const TaskConfig *tc = &c->config->tasks[0];
        TaskExit ok = { .code = 0 }, three = { .code = 3 }, bad = { .code = 1 }, sig = { .signal = SIGKILL },
                 lost = { .lost = true };
        usec_t d;

        assert_int_equal(task_decide(tc, 0, &ok, false, &d), TASK_DECISION_COMPLETED);
        assert_int_equal(task_decide(tc, 0, &three, false, &d), TASK_DECISION_COMPLETED);
        /* Asked to stop, a task that saves and exits 0 has not completed the training. */
        assert_int_equal(task_decide(tc, 0, &ok, true, &d), TASK_DECISION_STOPPED);
        assert_int_equal(task_decide(tc, 0, &bad, false, &d), TASK_DECISION_RESTART);
        assert_int_equal(task_decide(tc, 1, &sig, false, &d), TASK_DECISION_RESTART);
        assert_int_equal(task_decide(tc, 2, &bad, false, &d), TASK_DECISION_FAILED);
        assert_int_equal(task_decide(tc, 0, &lost, false, &d), TASK_DECISION_RESTART);
        assert_int_equal(task_decide(tc, 0, NULL, false, &d), TASK_DECISION_RESTART);
        assert_int_equal(task_decide(tc, 0, &bad, true, &d), TASK_DECISION_STOPPED);
        /* A signal whose number happens to be a success code is not a success. */
        assert_false(task_exit_is_success(tc, &(TaskExit) { .code = 0, .signal = SIGTERM }));
}

static void test_restart_delay(void **state) {
        TaskConfig tc = { .restart_backoff_s = 10, .restart_backoff_max_s = 300 };

        assert_int_equal(task_restart_delay(&tc, 0), 10 * USEC_PER_SEC);
        assert_int_equal(task_restart_delay(&tc, 1), 20 * USEC_PER_SEC);
        assert_int_equal(task_restart_delay(&tc, 4), 160 * USEC_PER_SEC);
        assert_int_equal(task_restart_delay(&tc, 5), 300 * USEC_PER_SEC);
        assert_int_equal(task_restart_delay(&tc, 1000), 300 * USEC_PER_SEC);
        tc = (TaskConfig) { .restart_backoff_s = 30, .restart_backoff_max_s = 5 };
        assert_int_equal(task_restart_delay(&tc, 3), 30 * USEC_PER_SEC);
}

static void test_env(void **state) {
        Ctx *c = *state;
        TaskConfig tc = c->config->tasks[0];
        _cleanup_strv_free_ char **env = NULL;
        char want[512];

        assert_int_equal(task_build_env(c->config, &tc, false, NULL, &env), 0);
        assert_string_equal(env[0], "A=1");
        assert_string_equal(env[1], "PATH=" TASK_DEFAULT_PATH);
        assert_string_equal(env[2], "TRAINSUPD_JOB_ID=j1");
        assert_string_equal(env[3], "TRAINSUPD_TASK=main"); /* the config's spoofed value is dropped */
        snprintf(want, sizeof(want), "TRAINSUPD_CHECKPOINT_DIR=%s/checkpoints/main", c->dir);
        assert_string_equal(env[4], want);
        assert_string_equal(env[5], "TRAINSUPD_CHECKPOINT_SIGNAL=SIGUSR1");
        snprintf(want, sizeof(want), "TRAINSUPD_COMMIT_FILE=%s/checkpoints/main/.trainsupd-commit", c->dir);
        assert_string_equal(env[6], want);
        assert_string_equal(env[7], "TRAINSUPD_RESUMED=0");
        assert_null(env[8]);
        env = strv_free(env);

        tc.runtime = TASK_RUNTIME_DOCKER;
        assert_int_equal(task_build_env(c->config, &tc, true, "000012-x", &env), 0);
        assert_string_equal(env[0], "A=1"); /* no PATH: the image has its own */
        assert_string_equal(env[3], "TRAINSUPD_CHECKPOINT_DIR=/checkpoints");
        assert_string_equal(env[5], "TRAINSUPD_COMMIT_FILE=/checkpoints/.trainsupd-commit");
        assert_string_equal(env[6], "TRAINSUPD_RESUMED=1");
        assert_string_equal(env[7], "TRAINSUPD_SNAPSHOT=000012-x");
}

static void test_run_to_completion(void **state) {
        Ctx *c = *state;
        _cleanup_(task_freep) Task *t = new_task(c);
        TaskStatus s;

        assert_int_equal(task_start(t), 0);
        assert_int_equal(t->state, TASK_STATE_RUNNING);
        assert_string_equal(t->instance, "c1");
        task_fill_status(t, &s);
        assert_string_equal(s.container, "c1");
        assert_false(s.has_exit_code);
        assert_int_equal(task_signal(t, SIGUSR1), 0);
        assert_int_equal(fake.last_signal, SIGUSR1);

        task_on_exited(t, &(TaskExit) { .code = 3 });
        assert_int_equal(t->state, TASK_STATE_COMPLETED);
        assert_true(task_is_settled(t));
        task_fill_status(t, &s);
        assert_true(s.has_exit_code);
        assert_int_equal(s.exit_code, 3);
        assert_null(s.container);
        assert_int_equal(task_signal(t, SIGUSR1), -ESRCH);
}

static void test_restarts_then_failed(void **state) {
        Ctx *c = *state;
        _cleanup_(task_freep) Task *t = new_task(c);
        TaskStatus s;

        assert_int_equal(task_start(t), 0);
        task_on_exited(t, &(TaskExit) { .code = 1 });
        assert_int_equal(t->state, TASK_STATE_EXITED);
        assert_int_equal(t->restarts, 1);
        assert_false(task_is_settled(t)); /* a restart is pending */
        run_pending(c);
        assert_int_equal(fake.launches, 2);
        assert_int_equal(t->state, TASK_STATE_RUNNING);
        task_on_exited(t, &(TaskExit) { .signal = SIGKILL });
        run_pending(c);
        assert_int_equal(fake.launches, 3);
        task_on_exited(t, &(TaskExit) { .code = 2 });
        assert_int_equal(t->state, TASK_STATE_FAILED);
        assert_int_equal(t->restarts, 2);
        run_pending(c);
        assert_int_equal(fake.launches, 3);
        task_fill_status(t, &s);
        assert_int_equal(s.state, TASK_STATE_FAILED);
        assert_int_equal(s.exit_code, 2);
        assert_int_equal(s.restarts, 2);
}

static void test_launch_failures_count(void **state) {
        Ctx *c = *state;
        _cleanup_(task_freep) Task *t = new_task(c);

        fake.launch_async_fail = true;
        assert_int_equal(task_start(t), 0);
        run_pending(c);
        assert_int_equal(fake.launches, 3);
        assert_int_equal(t->state, TASK_STATE_FAILED);
        assert_false(t->has_exit);
}

static void test_sync_launch_error(void **state) {
        Ctx *c = *state;
        _cleanup_(task_freep) Task *t = new_task(c);

        fake.launch_result = -EIO;
        assert_int_equal(task_start(t), 0);
        run_pending(c);
        assert_int_equal(t->state, TASK_STATE_FAILED);
        assert_int_equal(fake.launches, 3);
}

static void test_record_survives_daemon_restart(void **state) {
        Ctx *c = *state;
        Task *t = new_task(c);

        assert_int_equal(task_start(t), 0);
        task_on_exited(t, &(TaskExit) { .code = 0 });
        assert_int_equal(t->state, TASK_STATE_COMPLETED);
        task_free(t);

        /* The next daemon does not run a completed task again. */
        t = new_task(c);
        assert_int_equal(task_start(t), 0);
        assert_int_equal(t->state, TASK_STATE_COMPLETED);
        assert_int_equal(fake.launches, 1);
        assert_true(task_is_settled(t));
        task_free(t);
}

static void test_exit_counted_once(void **state) {
        Ctx *c = *state;
        Task *t = new_task(c);

        assert_int_equal(task_start(t), 0);
        task_on_exited(t, &(TaskExit) { .code = 1 }); /* recorded; the daemon dies before removal */
        assert_int_equal(t->restarts, 1);
        task_free(t);

        /* The next daemon finds the exited container whose exit is already on record. */
        fake.found = RUNTIME_FOUND_EXITED;
        strcpy(fake.found_id, "c1");
        fake.found_exit = (TaskExit) { .code = 1 };
        t = new_task(c);
        assert_int_equal(task_start(t), 0);
        assert_int_equal(t->restarts, 1);
        assert_int_equal(t->state, TASK_STATE_RUNNING);
        assert_int_equal(fake.launches, 2);
        task_free(t);

        /* A different exited instance is a new exit. */
        strcpy(fake.found_id, "other");
        t = new_task(c);
        assert_int_equal(task_start(t), 0);
        assert_int_equal(t->restarts, 2);
        assert_int_equal(t->state, TASK_STATE_EXITED);
        task_free(t);
}

static void test_adopt_running(void **state) {
        Ctx *c = *state;
        _cleanup_(task_freep) Task *t = NULL;

        fake.found = RUNTIME_FOUND_RUNNING;
        strcpy(fake.found_id, "abc");
        t = new_task(c);
        assert_int_equal(task_start(t), 0);
        assert_int_equal(t->state, TASK_STATE_RUNNING);
        assert_string_equal(t->instance, "abc");
        assert_int_equal(fake.launches, 0);
}

static void test_stop(void **state) {
        Ctx *c = *state;
        _cleanup_(task_freep) Task *t = new_task(c);

        assert_int_equal(task_start(t), 0);
        assert_int_equal(task_stop(t), 0);
        assert_int_equal(t->state, TASK_STATE_STOPPING);
        assert_int_equal(fake.stops, 1);
        task_on_exited(t, &(TaskExit) { .signal = SIGTERM });
        assert_int_equal(t->state, TASK_STATE_EXITED);
        assert_true(task_is_settled(t));
        run_pending(c);
        assert_int_equal(fake.launches, 1);
}

static void test_stop_cancels_pending_restart(void **state) {
        Ctx *c = *state;
        _cleanup_(task_freep) Task *t = new_task(c);

        assert_int_equal(task_start(t), 0);
        task_on_exited(t, &(TaskExit) { .code = 9 });
        assert_false(task_is_settled(t));
        assert_int_equal(task_stop(t), 0);
        assert_true(task_is_settled(t));
        run_pending(c);
        assert_int_equal(fake.launches, 1);
}

static void test_shutdown(void **state) {
        Ctx *c = *state;
        _cleanup_(task_freep) Task *t = new_task(c);

        assert_int_equal(task_start(t), 0);
        fake.detachable = true;
        assert_true(task_shutdown(t)); /* a container is let go */
        assert_int_equal(fake.stops, 0);
        task_free(TAKE_PTR(t));

        memset(&fake, 0, sizeof(fake));
        t = new_task(c);
        assert_int_equal(task_start(t), 0);
        assert_false(task_shutdown(t)); /* a plain child is stopped and waited for */
        assert_int_equal(fake.stops, 1);
        task_on_exited(t, &(TaskExit) { .code = 1 });
        assert_int_equal(t->state, TASK_STATE_EXITED); /* stopped, not restarted */
        assert_true(task_is_settled(t));
}

static void test_broken_record_ignored(void **state) {
        Ctx *c = *state;
        char path[256], dir[200];
        Task *t;

        snprintf(dir, sizeof(dir), "%s/tasks/j1", c->dir);
        assert_int_equal(mkdir_p(dir, 0755), 0);
        snprintf(path, sizeof(path), "%s/main.json", dir);
        assert_int_equal(write_file_atomic(path, "{\"job\": 1, ", 11, 0644), 0);
        t = new_task(c);
        assert_int_equal(task_start(t), 0);
        assert_int_equal(t->state, TASK_STATE_RUNNING);
        task_free(t);

        /* A record of another job (same task name) does not count. */
        {
                static const char other[] =
                        "{\"version\":1,\"job\":\"other\",\"task\":\"main\",\"state\":\"completed\",\"restarts\":0}";

                assert_int_equal(write_file_atomic(path, other, strlen(other), 0644), 0);
        }
        t = new_task(c);
        assert_int_equal(task_start(t), 0);
        assert_int_equal(t->state, TASK_STATE_RUNNING);
        task_free(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_decide, setup, teardown),
                cmocka_unit_test(test_restart_delay),
                cmocka_unit_test_setup_teardown(test_env, setup, teardown),
                cmocka_unit_test_setup_teardown(test_run_to_completion, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restarts_then_failed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_launch_failures_count, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sync_launch_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_record_survives_daemon_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_exit_counted_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_adopt_running, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_cancels_pending_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_shutdown, setup, teardown),
                cmocka_unit_test_setup_teardown(test_broken_record_ignored, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
