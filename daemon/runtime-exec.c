/* SPDX-License-Identifier: MIT */
#include <systemd/sd-daemon.h>

#include "exec-child.h"
#include "exec-unit.h"
#include "log.h"
#include "runtime.h"
#include "task.h"

/* The "exec" runtime: the task's command, argv without a shell, in one of two modes chosen when
 * the task is set up:
 * - a transient systemd unit (exec-unit.c) when systemd is PID 1 (sd_booted() > 0): the task
 *   survives a daemon restart, runs outside the daemon's sandbox, and detach() lets it run on;
 * - a plain child of the daemon (exec-child.c) otherwise: it cannot outlive the daemon, so
 *   detach() returns false and the task stops it.
 * TRAINSUPD_EXEC_MODE=unit or =child in the daemon's environment forces a mode (tests, hosts
 * where systemd runs but the daemon should not use it).
 *
 * In both modes a command that cannot be run (not found, not executable, unknown user, missing
 * working directory) is logged as one EVENT_ERROR record with TASK= and reported through
 * task_on_launch_failed(), never as an exit of a task that "started"; task_on_started() means
 * execve() succeeded. */

typedef enum ExecMode {
        EXEC_MODE_CHILD,
        EXEC_MODE_UNIT,
} ExecMode;

typedef struct ExecRuntime {
        ExecMode mode;
        ExecChild *child;
        ExecUnit *unit;
} ExecRuntime;

static ExecMode exec_mode_pick(void) {
        const char *e = getenv("TRAINSUPD_EXEC_MODE");

        if (e && streq(e, "unit"))
                return EXEC_MODE_UNIT;
        if (e && streq(e, "child"))
                return EXEC_MODE_CHILD;
        if (!isempty(e))
                log_warning("TRAINSUPD_EXEC_MODE=%s is neither \"unit\" nor \"child\", ignoring", e);
        return sd_booted() > 0 ? EXEC_MODE_UNIT : EXEC_MODE_CHILD;
}

static ExecRuntime *exec_runtime(Task *t) {
        return t->runtime_data;
}

static void runtime_exec_free(void *data) {
        ExecRuntime *rt = data;

        if (!rt)
                return;
        exec_child_free(rt->child);
        exec_unit_free(rt->unit);
        free(rt);
}

static int runtime_exec_init(Task *t, void **ret) {
        ExecRuntime *rt;
        int r;

        rt = calloc(1, sizeof(ExecRuntime));
        if (!rt)
                return -ENOMEM;
        rt->mode = exec_mode_pick();
        if (rt->mode == EXEC_MODE_UNIT)
                r = exec_unit_new(t, &rt->unit);
        else
                r = exec_child_new(t, &rt->child);
        if (r < 0) {
                runtime_exec_free(rt);
                return r;
        }
        log_debug("Task %s runs %s", t->name,
                  rt->mode == EXEC_MODE_UNIT ? "as a transient systemd unit" : "as a child process");
        *ret = rt;
        return 0;
}

static int runtime_exec_find(Task *t) {
        ExecRuntime *rt = exec_runtime(t);

        return rt->mode == EXEC_MODE_UNIT ? exec_unit_find(rt->unit) : exec_child_find(rt->child);
}

static int runtime_exec_launch(Task *t) {
        ExecRuntime *rt = exec_runtime(t);

        return rt->mode == EXEC_MODE_UNIT ? exec_unit_launch(rt->unit) : exec_child_launch(rt->child);
}

static int runtime_exec_kill(Task *t, int sig) {
        ExecRuntime *rt = exec_runtime(t);

        return rt->mode == EXEC_MODE_UNIT ? exec_unit_kill(rt->unit, sig) : exec_child_kill(rt->child, sig);
}

static int runtime_exec_stop(Task *t, usec_t grace) {
        ExecRuntime *rt = exec_runtime(t);

        return rt->mode == EXEC_MODE_UNIT ? exec_unit_stop(rt->unit, grace) : exec_child_stop(rt->child, grace);
}

static bool runtime_exec_detach(Task *t) {
        /* A transient unit runs on for the next daemon; a plain child cannot. */
        return exec_runtime(t)->mode == EXEC_MODE_UNIT;
}

const RuntimeVTable runtime_exec_vtable = {
        .name = "exec",
        .init = runtime_exec_init,
        .free = runtime_exec_free,
        .find = runtime_exec_find,
        .launch = runtime_exec_launch,
        .kill = runtime_exec_kill,
        .stop = runtime_exec_stop,
        .detach = runtime_exec_detach,
};
