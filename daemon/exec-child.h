/* SPDX-License-Identifier: MIT */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"
#include "runtime.h"
#include "time-util.h"

/* The exec runtime's plain-child mode (no systemd as PID 1: development hosts, tests): the task's
 * command runs as a child of the daemon. See runtime-exec.c for how the mode is chosen.
 *
 * The child: argv run without a shell, argv[0] resolved against the PATH of the task's own
 * environment (never the daemon's); the environment is exactly t->env; its own process group;
 * stdin /dev/null, stdout and stderr read by the event loop into one TaskOutput each; working
 * directory tc->workdir, else "/" (as systemd does for a unit, so both modes agree); umask 0022;
 * signal mask and dispositions reset; every other fd closed; PR_SET_PDEATHSIG(SIGTERM), so a
 * daemon killed with -9 does not leave the task running.
 *
 * tc->user: "name" (its uid, primary gid and supplementary groups, initgroups), "uid" (the passwd
 * entry of that uid when there is one, else gid = uid and no supplementary groups), or
 * "uid:gid" (exactly those, no supplementary groups). The user database is read in the child
 * (after fork), so a slow NSS backend never blocks the daemon's event loop; that is safe while
 * no other thread of the daemon can hold an NSS lock at fork() (glibc makes malloc fork-safe,
 * not NSS): keep worker threads away from getpwnam() and friends. PR_SET_PDEATHSIG follows the
 * forking thread, so children are spawned from the event loop's thread, the main one.
 *
 * Exec failures (and failures of the setup before it: user, chdir) are reported through a
 * CLOEXEC pipe: the child writes {stage, errno} and exits 127 (command not found) or 126 (any
 * other failure). The parent logs one EVENT_ERROR record with TASK= ("command not found: X",
 * "permission denied: X", "unknown user ...") and reports task_on_launch_failed(-errno): a task
 * whose program never ran was not "started". task_on_started() comes only once the pipe reached
 * EOF, i.e. execve() succeeded. The child's exit status 127/126 is then reaped and not reported.
 *
 * The exit is watched with sd_event_add_child(WEXITED): SIGCHLD must be blocked in every thread
 * before (trainsupd's main does it). Instance: "pid:N". kill(): the main process only (as a container's init forwards signals). stop():
 * SIGTERM to the group, SIGKILL to the group after the grace period. When the main process has
 * exited, whatever is left of its group is killed (SIGKILL) before the exit is reported, and the
 * output already in the pipes is read.
 *
 * The pid file <task_dir>/<task>.pid holds "<pid> <starttime>" (field 22 of /proc/PID/stat) while
 * a child exists; it is removed once the exit has been reported. find() uses it: a process an
 * earlier daemon left (killed with -9, and the task ignored the PDEATHSIG SIGTERM) that still
 * runs with the same start time gets SIGTERM, then SIGKILL after stop_grace_s (its group, and
 * the process itself through a pidfd); once it is gone, find() reports RUNTIME_FOUND_NOTHING. A
 * plain child is never adopted: its output pipes died with the old daemon. */

typedef struct ExecChild ExecChild;

int exec_child_new(Task *t, ExecChild **ret);
ExecChild *exec_child_free(ExecChild *c);
DEFINE_CLEANUP_FUNC(ExecChild *, exec_child_free);

int exec_child_find(ExecChild *c);
int exec_child_launch(ExecChild *c);
int exec_child_kill(ExecChild *c, int sig);
int exec_child_stop(ExecChild *c, usec_t grace);

/* ---- helpers shared with exec-unit.c, pure, exposed for tests */

/* The value of name in a KEY=VALUE strv, or NULL. */
const char *exec_env_get(char * const *env, const char *name);

/* Where argv0 may live: argv0 itself when it contains a '/', else "<dir>/<argv0>" for each
 * non-empty directory of path (empty entries, the current directory, are skipped), in order.
 * path NULL: TASK_DEFAULT_PATH. -ENOENT when argv0 is empty or nothing fits in PATH_MAX. */
int exec_path_candidates(const char *argv0, const char *path, char ***ret);

/* The first candidate (exec_path_candidates) that is an executable regular file, as execvpe
 * would pick it: -EACCES when one exists but is not executable, else -ENOENT. */
int exec_find_executable(const char *argv0, const char *path, char **ret);

/* A "user" config value: a name, "uid" or "uid:gid". */
typedef struct ExecUser {
        bool numeric;   /* uid (and maybe gid) given as numbers */
        uid_t uid;
        bool has_gid;
        gid_t gid;
        const char *name; /* borrowed, when !numeric */
} ExecUser;
int exec_user_parse(const char *s, ExecUser *ret);

/* Field 3 (state) and field 22 (starttime, clock ticks since boot) of a /proc/PID/stat line;
 * the command name in parentheses may hold anything, spaces and ')' included. */
int exec_parse_stat(const char *stat, char *ret_state, uint64_t *ret_starttime);
/* /proc/PID/stat of any process, a zombie included (-ESRCH when there is none). */
int exec_read_stat(pid_t pid, char *ret_state, uint64_t *ret_starttime);
/* The same for a live process: -ESRCH when it does not exist or is a zombie. */
int exec_read_starttime(pid_t pid, uint64_t *ret);

/* "<pid> <starttime>\n" and back. */
int exec_pid_file_parse(const char *text, pid_t *ret_pid, uint64_t *ret_starttime);

/* A waitid()-style status (CLD_EXITED / CLD_KILLED / CLD_DUMPED, status) as a TaskExit; false
 * for any other code (no exit status). ExecMainCode/ExecMainStatus of a systemd unit use the
 * same values. */
bool exec_exit_from_status(int code, int status, TaskExit *ret);

/* ---- internal to the child mode: shared by exec-child.c (the parent) and exec-spawn.c (the
 * forked child) */

/* What the child reports through the CLOEXEC pipe when it cannot exec. */
typedef enum ExecStage {
        EXEC_STAGE_SETUP,
        EXEC_STAGE_USER,
        EXEC_STAGE_CREDENTIALS,
        EXEC_STAGE_CHDIR,
        EXEC_STAGE_EXEC,
} ExecStage;

typedef struct ExecReport {
        int32_t stage;
        int32_t error;
} ExecReport;

/* Everything the child needs, prepared before fork() so that the child only makes system calls
 * (plus the user database lookup). */
typedef struct ExecPlan {
        char **candidates;
        char **argv;
        char **env;
        const char *workdir;
        bool has_user;
        ExecUser user;
        pid_t parent;
        int null_fd;
        int out_fd;
        int err_fd;
        int report_fd;
} ExecPlan;

/* In the forked child: sets the process up as p says and execs the command; on failure writes
 * an ExecReport to p->report_fd and exits 127 or 126. Never returns. */
_Noreturn void exec_run_child(ExecPlan *p);
