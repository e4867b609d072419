/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "macro.h"
#include "runtime.h"
#include "time-util.h"

/* The exec runtime's transient-unit mode (systemd is PID 1): the task's command runs as the
 * transient service "trainsupd-<job_id>-<task>.service", started over the system bus the way
 * systemd-run does it. The task then lives in its own cgroup, outside the daemon's sandbox and
 * outside the daemon's KillMode=, so it survives a daemon restart and the next daemon adopts
 * it by name. Every bus call is asynchronous (sd_bus_call_async() on the task's event loop).
 *
 * The unit (exec_unit_append_properties() builds its properties, in exec-unit-props.c, tested
 * without a bus):
 * - ExecStart= as systemd's transient setter wants it, a(sasb): (path, argv, ignore-failure
 *   false), path being argv[0] resolved against the PATH of the task's environment.
 * - Type=exec: the start job ends only once execve() succeeded, so "command cannot run" (a
 *   missing working directory, an unknown user, exec failure: systemd's exit statuses 200, 216,
 *   217, 203) is a failed start job, reported as task_on_launch_failed() after one EVENT_ERROR
 *   record, exactly as the child mode does it; "command not found: X" is found before anything
 *   is sent.
 * - RemainAfterExit=yes and CollectMode left at "inactive" (not "inactive-or-failed"): once the
 *   main process has exited the unit stays loaded, "active (exited)" after a clean exit,
 *   "failed" otherwise, with ExecMainCode/ExecMainStatus readable. A daemon restarted between
 *   the exit and its recording still finds the unit and its exit status (find() reports
 *   RUNTIME_FOUND_EXITED with the same "pid:N" instance, which the task counts once). The daemon
 *   removes the unit itself, after the task has recorded the exit: StopUnit (ends whatever is
 *   left in the cgroup) and ResetFailedUnit; systemd then garbage-collects it.
 * - KillMode=control-group, TimeoutStopUSec=stop_grace_s, SendSIGKILL=yes: StopUnit sends
 *   SIGTERM to every process of the task, SIGKILL after the grace period, like the child mode's
 *   process group (stop_grace_s 0 becomes 1 µs: 0 would mean "no timeout" to systemd).
 * - Environment= exactly the task's environment (systemd adds $INVOCATION_ID, $JOURNAL_STREAM,
 *   and $HOME/$USER/$LOGNAME/$SHELL with User=), WorkingDirectory= when set (else systemd's "/"),
 *   User=/Group= from tc->user ("uid:gid" gives both; systemd wants the user in the user
 *   database), stdout and stderr to the journal with SyslogIdentifier=<task> and
 *   LogExtraFields=TRAINSUPD_TASK=<task>, TRAINSUPD_JOB=<job_id> (type aay, as systemd has it).
 *
 * The end of the main process is seen in PropertiesChanged signals of the unit object (after
 * Subscribe; systemd sends the Service interface's changes, ExecMainCode/ExecMainStatus, before
 * the Unit interface's ActiveState/SubState) and, when the watch begins, in one GetAll of both
 * interfaces. CLD_EXITED gives the exit code, CLD_KILLED/CLD_DUMPED the signal. Instance:
 * "pid:<ExecMainPID>". find(): GetUnit; NoSuchUnit → nothing; running → adopted; exited or
 * failed → its exit, then removal. A unit of that name whose Environment= names another job or
 * task is left alone. kill(): KillUnit(name, "main", sig) (the main process only). stop(): StopUnit(name, "replace").
 * A launch issued while the previous unit is being removed waits for the removal; while systemd
 * still has the old unit loaded (UnitExists) the start is retried every second for up to
 * stop_grace_s + 30 s. */

typedef struct ExecUnit ExecUnit;

int exec_unit_new(Task *t, ExecUnit **ret);
ExecUnit *exec_unit_free(ExecUnit *u);
DEFINE_CLEANUP_FUNC(ExecUnit *, exec_unit_free);

int exec_unit_find(ExecUnit *u);
int exec_unit_launch(ExecUnit *u);
int exec_unit_kill(ExecUnit *u, int sig);
int exec_unit_stop(ExecUnit *u, usec_t grace);

/* ---- pure, exposed for tests */

/* "trainsupd-<job>-<task>.service"; characters a unit name cannot hold are written \xHH (as
 * systemd-escape does); -ENAMETOOLONG past systemd's 255 characters. */
int exec_unit_name(const char *job, const char *task, char **ret);

typedef struct ExecUnitSpec {
        const char *job;
        const char *task;
        const char *path;       /* argv[0] resolved: absolute */
        char **argv;
        char **env;
        const char *workdir;    /* NULL: none */
        const char *user;       /* tc->user as configured, NULL: none */
        usec_t stop_timeout;
} ExecUnitSpec;

/* Appends the unit's properties, (sv) entries, to m, which is inside StartTransientUnit's a(sv). */
int exec_unit_append_properties(sd_bus_message *m, const ExecUnitSpec *s);

typedef enum ExecUnitPhase {
        EXEC_UNIT_PHASE_RUNNING, /* the main process may still run (or the unit is being stopped) */
        EXEC_UNIT_PHASE_OVER,    /* active (exited), failed or inactive */
} ExecUnitPhase;
ExecUnitPhase exec_unit_phase(const char *active_state, const char *sub_state);

/* A systemd exit status of the process setup (200 CHDIR, 203 EXEC, 216 GROUP, 217 USER, other
 * 2xx) as a negative errno and a short text; 0 for a status the command itself returned. */
int exec_unit_setup_failure(int status, const char **ret_what);
