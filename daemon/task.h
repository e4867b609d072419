/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "curl-glue.h"
#include "runtime.h"
#include "status.h"

/* One training task: its runtime, its restart policy and its record in the state directory.
 *
 * The task asks its runtime to find an instance an earlier daemon left, else to launch one;
 * it applies success_exit_codes and the restart policy to each exit; it records restarts and
 * the last exit in <state dir>/tasks/<job>/<task>.json (written atomically, before the runtime
 * removes an exited instance), so a daemon restart never re-runs a completed task, never counts
 * one exit twice, and never starts a second instance of a running one. */

typedef void (*TaskChanged)(Task *t, void *userdata);

struct Task {
        /* Read by runtimes; set by task_new(). */
        sd_event *event;
        CurlGlue *glue;
        const Config *config;
        const TaskConfig *tc;
        const char *name;       /* tc->name */
        char **env;             /* KEY=VALUE: the config's env, then TRAINSUPD_* (task_build_env) */
        const RuntimeVTable *vt;
        void *runtime_data;
        char *task_dir;         /* <state dir>/tasks/<job>/, exists; runtimes may keep files
                                 * named "<task>.<something>" there */

        /* The task's own state. */
        TaskState state;
        char *instance;         /* container id or "pid:N" while one exists, else NULL */
        unsigned restarts;
        bool has_exit;
        TaskExit last_exit;
        char *exit_recorded_for; /* the instance whose exit last_exit is */
        bool stop_requested;    /* trainsupd stop / shutdown: no restart */
        bool shutting_down;     /* the daemon goes away */
        bool started;           /* task_start() was called */
        sd_event_source *restart_timer;
        char *state_file;

        TaskChanged on_change;
        void *userdata;
};

typedef struct TaskParams {
        sd_event *event;
        CurlGlue *glue;
        const Config *config;
        const TaskConfig *tc;
        const char *state_dir;
        bool resumed;           /* a snapshot was restored before start */
        const char *snapshot;   /* its id, when resumed */
        const RuntimeVTable *vt; /* NULL: the one tc->runtime names */
        TaskChanged on_change;
        void *userdata;
} TaskParams;

int task_new(Task **ret, const TaskParams *p);
Task *task_free(Task *t);
DEFINE_CLEANUP_FUNC(Task *, task_free);

/* Reads the task's record, then (unless it completed or failed before) finds or launches it. */
int task_start(Task *t);
/* Sends sig to a running task; -ESRCH when none runs. */
int task_signal(Task *t, int sig);
/* Stops the task on purpose (TERM, KILL after stop_grace_s); it is not restarted. */
int task_stop(Task *t);
/* The daemon goes away. Returns true when nothing is left to wait for (the instance was let go
 * to be adopted later, or nothing ran); false when a plain child is being stopped: on_change
 * reports its exit, after which task_is_settled() is true. */
bool task_shutdown(Task *t);
/* Not running and not about to run (completed, failed, exited after a stop, or never started). */
bool task_is_settled(const Task *t);

void task_fill_status(const Task *t, TaskStatus *ret);

/* --- called by runtimes (runtime.h) --- */
/* An EVENT_ERROR record "Task NAME: ..." with TASK=NAME and, when key is set, one more field. */
void task_log_error_field(Task *t, const char *key, const char *value, const char *format, ...) _printf_(4, 5);
#define task_log_error(t, ...) task_log_error_field((t), NULL, NULL, __VA_ARGS__)

void task_on_found(Task *t, RuntimeFound found, const char *instance, const TaskExit *exit);
void task_on_progress(Task *t, TaskState state);
void task_on_started(Task *t, const char *instance);
void task_on_launch_failed(Task *t, int error);
void task_on_exited(Task *t, const TaskExit *exit);

/* --- pure policy, exposed for tests --- */
typedef enum TaskDecision {
        TASK_DECISION_COMPLETED, /* exited with a success code, unasked */
        TASK_DECISION_RESTART,   /* failed, restarts left: again after the delay */
        TASK_DECISION_FAILED,    /* failed and no restarts left */
        TASK_DECISION_STOPPED,   /* asked to stop (whatever the code): exited, no restart */
} TaskDecision;

bool task_exit_is_success(const TaskConfig *tc, const TaskExit *e);
/* Back-off before restart number restarts+1: backoff_s * 2^restarts, capped at backoff_max_s. */
usec_t task_restart_delay(const TaskConfig *tc, unsigned restarts);
/* e == NULL: the launch itself failed (counts as a failure). */
TaskDecision task_decide(const TaskConfig *tc, unsigned restarts, const TaskExit *e, bool stop_requested,
                         usec_t *ret_delay);

/* The task's environment: the config's env, then TRAINSUPD_JOB_ID, TRAINSUPD_TASK,
 * TRAINSUPD_CHECKPOINT_DIR (mount_at for docker, checkpoint_dir for exec),
 * TRAINSUPD_CHECKPOINT_SIGNAL, TRAINSUPD_COMMIT_FILE, TRAINSUPD_RESUMED, TRAINSUPD_SNAPSHOT (when
 * resumed); exec tasks get the default PATH unless env sets one. TRAINSUPD_* override the
 * config's own values of the same names. */
int task_build_env(const Config *c, const TaskConfig *tc, bool resumed, const char *snapshot, char ***ret);

#define TASK_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define TASK_COMMIT_FILE_NAME ".trainsupd-commit"
