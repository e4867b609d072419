/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

#include "time-util.h"

/* A runtime runs one task's process: "docker" (a container through the Docker Engine API) or
 * "exec" (a process, as a transient systemd unit when systemd is PID 1, else a child). The task
 * (task.c) owns the policy; a runtime only does what it is told and reports back through the
 * task_on_*() callbacks of task.h. Every operation is asynchronous on the task's event loop; a
 * runtime never blocks it.
 *
 * Contract, for every runtime:
 * - find() looks for an instance an earlier daemon left (container by label, transient unit by
 *   name) and answers exactly once with task_on_found(), possibly from within find().
 * - launch() creates and starts a new instance (pulling the image first when needed). It reports
 *   task_on_progress() along the way, then task_on_started() or task_on_launch_failed() (after
 *   logging why, with the task's name).
 * - Once an instance runs, its end is reported once with task_on_exited(). After task_on_found()
 *   with an exited instance or task_on_exited() returns (the task has recorded the exit), the
 *   runtime removes the instance; a launch() issued meanwhile waits for that removal.
 * - kill() sends a signal to the task's processes; stop() sends SIGTERM and SIGKILL after grace;
 *   the end still arrives through task_on_exited().
 * - detach() is called when the daemon goes away: it returns true when the instance keeps
 *   running for the next daemon to adopt (containers, transient units), false when the instance
 *   cannot outlive the daemon (a plain child): the task then stops it and waits for its exit.
 * - A runtime logs its own failures (EVENT_ERROR with TASK=); it never crashes the daemon on a
 *   bad answer from the engine. */

typedef struct Task Task;

typedef struct TaskExit {
        int code;   /* exit status, when signal == 0 and !lost */
        int signal; /* > 0: the task died of this signal */
        bool lost;  /* it vanished without an exit status (a container removed behind the
                     * daemon's back): a failure, shown with a null exit code */
} TaskExit;

typedef enum RuntimeFound {
        RUNTIME_FOUND_NOTHING,
        RUNTIME_FOUND_RUNNING, /* adopted: the runtime now watches it as if it had launched it */
        RUNTIME_FOUND_EXITED,  /* its exit is passed along; the runtime removes it afterwards */
} RuntimeFound;

typedef struct RuntimeVTable {
        const char *name;
        /* Allocates the runtime's state for t (stored by the task as t->runtime_data). */
        int (*init)(Task *t, void **ret);
        void (*free)(void *data);

        int (*find)(Task *t);
        int (*launch)(Task *t);
        int (*kill)(Task *t, int sig);
        int (*stop)(Task *t, usec_t grace);
        bool (*detach)(Task *t);
} RuntimeVTable;

extern const RuntimeVTable runtime_docker_vtable;
extern const RuntimeVTable runtime_exec_vtable;
