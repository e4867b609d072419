/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/pidfd.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>

#include "exec-child.h"
#include "fs-util.h"
#include "log.h"
#include "strv.h"
#include "task-output.h"
#include "task.h"

/* The exec runtime's child mode, the parent side (exec-child.h): launch, the output pipes into
 * TaskOutput, the child's exit, stop and kill, the pid file, a process an earlier daemon left.
 * What runs in the forked child, and the pure helpers, are in exec-spawn.c. */

#define EXEC_PID_FILE_MAX 128U
#define EXEC_READ_CHUNK 16384U
#define EXEC_READ_PER_DISPATCH (64U * 1024U) /* then let other sources run */
#define EXEC_DRAIN_MAX (1024U * 1024U)       /* read at exit, against a writer that escaped the group */

typedef struct ExecPipe {
        ExecChild *child;
        int fd;
        sd_event_source *source;
        TaskOutput *output;
} ExecPipe;

struct ExecChild {
        Task *task;
        char *pid_file;

        pid_t pid;              /* our child, until its exit has been handled */
        bool confirmed;         /* execve() succeeded and task_on_started() was reported */
        bool has_report;
        ExecReport report;
        int report_fd;
        sd_event_source *report_source;
        sd_event_source *child_source;
        ExecPipe out[2];        /* stdout, stderr */
        sd_event_source *kill_timer;

        /* A process an earlier daemon left, being stopped by find(). */
        pid_t orphan;
        int orphan_pidfd;
        sd_event_source *orphan_source;
        sd_event_source *orphan_timer;
};


/* ---- the parent */

#define exec_log_error(c, ...) task_log_error((c)->task, __VA_ARGS__)

static const char *exec_argv0(const ExecChild *c) {
        return c->task->tc->command && c->task->tc->command[0] ? c->task->tc->command[0] : "";
}

/* getpwnam() says "no such user" with errno 0 or one of these, depending on the NSS module. */
#define IN_SET_USER_UNKNOWN(e) ((e) == ESRCH || (e) == ENOENT || (e) == EBADF || (e) == EPERM)

static void exec_log_report(ExecChild *c) {
        const TaskConfig *tc = c->task->tc;
        int e = c->report.error;

        switch (c->report.stage) {
        case EXEC_STAGE_EXEC:
                if (e == ENOENT)
                        exec_log_error(c, "command not found: %s", exec_argv0(c));
                else if (e == EACCES)
                        exec_log_error(c, "permission denied: %s", exec_argv0(c));
                else if (e == ENOEXEC)
                        exec_log_error(c, "not an executable: %s (exec format error)", exec_argv0(c));
                else
                        exec_log_error(c, "cannot execute %s: %s", exec_argv0(c), strerror(e));
                break;
        case EXEC_STAGE_USER:
                if (IN_SET_USER_UNKNOWN(e))
                        exec_log_error(c, "unknown user \"%s\"", strna(tc->user));
                else
                        exec_log_error(c, "cannot look up user \"%s\": %s", strna(tc->user), strerror(e));
                break;
        case EXEC_STAGE_CREDENTIALS:
                exec_log_error(c, "cannot switch to user \"%s\": %s", strna(tc->user), strerror(e));
                break;
        case EXEC_STAGE_CHDIR:
                exec_log_error(c, "cannot change to working directory %s: %s", strna(tc->workdir), strerror(e));
                break;
        default:
                exec_log_error(c, "cannot set up the process: %s", strerror(e));
                break;
        }
}

static void exec_pipe_close(ExecPipe *p) {
        p->source = sd_event_source_disable_unref(p->source);
        p->fd = safe_close(p->fd);
        p->output = task_output_free(p->output); /* flushes a partial line */
}

/* Reads at most max bytes; 1 at EOF (or a read error), 0 when the pipe is empty for now. */
static int exec_pipe_read(ExecPipe *p, size_t max) {
        char buf[EXEC_READ_CHUNK];
        size_t total = 0;

        while (total < max) {
                ssize_t n = read(p->fd, buf, sizeof(buf));

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 0 : 1;
                }
                if (n == 0)
                        return 1;
                task_output_feed(p->output, buf, (size_t) n);
                total += (size_t) n;
        }
        return 0;
}

static int exec_pipe_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ExecPipe *p = userdata;

        if (exec_pipe_read(p, EXEC_READ_PER_DISPATCH) > 0)
                exec_pipe_close(p);
        return 0;
}

static void exec_remove_pid_file(ExecChild *c) {
        if (unlink(c->pid_file) < 0 && errno != ENOENT)
                log_warning_errno(-errno, "Cannot remove %s, ignoring: %m", c->pid_file);
}

/* Our unreaped child: a task that already exited is a zombie until the loop reaps it, and is
 * recorded all the same (a later daemon finds it gone). */
static void exec_write_pid_file(ExecChild *c) {
        char buf[64], state;
        uint64_t st;
        int r;

        r = exec_read_stat(c->pid, &state, &st);
        if (r >= 0) {
                snprintf(buf, sizeof(buf), "%d %" PRIu64 "\n", (int) c->pid, st);
                r = write_file_atomic(c->pid_file, buf, strlen(buf), 0644);
        }
        if (r < 0)
                log_warning_errno(r, "Cannot record pid %d of task %s in %s, ignoring: %m", (int) c->pid,
                                  c->task->name, c->pid_file);
}

static void exec_started(ExecChild *c) {
        char instance[32];

        c->confirmed = true;
        snprintf(instance, sizeof(instance), "pid:%d", (int) c->pid);
        task_on_started(c->task, instance);
}

/* Reads the child's report: 1 when it is complete (exec succeeded, or failed and c->report
 * says why), 0 when nothing is there yet. */
static int exec_report_read(ExecChild *c) {
        ssize_t n;

        if (c->report_fd < 0)
                return 1;
        do
                n = read(c->report_fd, &c->report, sizeof(c->report));
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno == EAGAIN)
                return 0;
        if (n > 0) {
                c->has_report = true;
                if (n != (ssize_t) sizeof(c->report))
                        c->report = (ExecReport) { .stage = EXEC_STAGE_SETUP, .error = EIO };
        }
        c->report_source = sd_event_source_disable_unref(c->report_source);
        c->report_fd = safe_close(c->report_fd);
        return 1;
}

static int exec_report_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ExecChild *c = userdata;

        if (exec_report_read(c) > 0 && !c->has_report)
                exec_started(c);
        return 0;
}

static void exec_child_release(ExecChild *c) {
        for (size_t i = 0; i < ELEMENTSOF(c->out); i++) {
                if (c->out[i].fd >= 0 && c->out[i].output)
                        (void) exec_pipe_read(&c->out[i], EXEC_DRAIN_MAX);
                exec_pipe_close(&c->out[i]);
        }
        c->report_source = sd_event_source_disable_unref(c->report_source);
        c->report_fd = safe_close(c->report_fd);
        c->kill_timer = sd_event_source_disable_unref(c->kill_timer);
        /* Within its own callback: sd-event reaps the zombie once the callback returns. */
        c->child_source = sd_event_source_disable_unref(c->child_source);
        c->pid = 0;
}

static int exec_child_on_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        ExecChild *c = userdata;
        TaskExit e = { .lost = true };
        bool confirmed;

        /* The leader is still a zombie here, so its group id cannot have been reused: kill
         * whatever the task left behind in its group. */
        (void) kill(-c->pid, SIGKILL);
        (void) exec_report_read(c);
        if (!c->confirmed && !c->has_report)
                exec_started(c); /* exec succeeded; the EOF was not dispatched yet */
        confirmed = c->confirmed;
        (void) exec_exit_from_status(si->si_code, si->si_status, &e);
        exec_child_release(c);

        if (!confirmed) {
                exec_log_report(c);
                exec_remove_pid_file(c);
                task_on_launch_failed(c->task, -c->report.error ?: -EIO);
                return 0;
        }
        task_on_exited(c->task, &e);
        /* The exit is recorded now; unless a new child was launched meanwhile, forget this one. */
        if (c->pid == 0)
                exec_remove_pid_file(c);
        return 0;
}

static int exec_open_pipe(int fds[static 2]) {
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        /* Only our end is non-blocking: the task's writes block as usual. */
        if (fcntl(fds[0], F_SETFL, O_NONBLOCK) < 0) {
                int r = -errno;
                fds[0] = safe_close(fds[0]);
                fds[1] = safe_close(fds[1]);
                return r;
        }
        return 0;
}

static int exec_add_io(ExecChild *c, sd_event_source **ret, int fd, sd_event_io_handler_t cb, void *userdata,
                       int64_t priority, const char *description) {
        int r;

        r = sd_event_add_io(c->task->event, ret, fd, EPOLLIN, cb, userdata);
        if (r < 0)
                return r;
        (void) sd_event_source_set_priority(*ret, priority);
        (void) sd_event_source_set_description(*ret, description);
        return 0;
}

/* The event sources of a freshly forked child: its exit, its report pipe, its output. The fds
 * belong to c from here on. */
static int exec_watch(ExecChild *c, int report_fd, int out_fd, int err_fd) {
        int r;

        c->report_fd = report_fd;
        c->out[0].fd = out_fd;
        c->out[1].fd = err_fd;
        r = sd_event_add_child(c->task->event, &c->child_source, c->pid, WEXITED, exec_child_on_exit, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->child_source, "exec-child");
        /* The report before the exit (it decides between "started" and "launch failed"). */
        r = exec_add_io(c, &c->report_source, report_fd, exec_report_on_io, c, SD_EVENT_PRIORITY_NORMAL - 5,
                        "exec-report");
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(c->out); i++) {
                r = task_output_new(&c->out[i].output, c->task->name);
                if (r < 0)
                        return r;
                /* Output at the daemon's normal priority; the exit handler reads what is left in
                 * the pipes before it reports the exit, so output still comes first. */
                r = exec_add_io(c, &c->out[i].source, c->out[i].fd, exec_pipe_on_io, &c->out[i],
                                SD_EVENT_PRIORITY_NORMAL, i == 0 ? "exec-stdout" : "exec-stderr");
                if (r < 0)
                        return r;
        }
        return 0;
}

static int exec_plan(ExecChild *c, ExecPlan *p) {
        const TaskConfig *tc = c->task->tc;
        int r;

        if (strv_length(tc->command) == 0)
                return -ENOEXEC;
        *p = (ExecPlan) { .argv = tc->command, .env = c->task->env, .workdir = tc->workdir, .parent = getpid(),
                          .null_fd = -EBADF, .out_fd = -EBADF, .err_fd = -EBADF, .report_fd = -EBADF };
        if (tc->user) {
                r = exec_user_parse(tc->user, &p->user);
                if (r < 0)
                        return r;
                p->has_user = true;
        }
        return exec_path_candidates(tc->command[0], exec_env_get(c->task->env, "PATH"), &p->candidates);
}

static void exec_plan_done(ExecPlan *p) {
        p->candidates = strv_free(p->candidates);
        p->null_fd = safe_close(p->null_fd);
        p->out_fd = safe_close(p->out_fd);
        p->err_fd = safe_close(p->err_fd);
        p->report_fd = safe_close(p->report_fd);
}

static int exec_spawn(ExecChild *c, ExecPlan *p) {
        int out[2] = { -EBADF, -EBADF }, err[2] = { -EBADF, -EBADF }, rep[2] = { -EBADF, -EBADF };
        pid_t pid;
        int r;

        p->null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (p->null_fd < 0)
                return -errno;
        r = exec_open_pipe(out);
        if (r >= 0)
                r = exec_open_pipe(err);
        if (r >= 0)
                r = exec_open_pipe(rep);
        p->out_fd = out[1];
        p->err_fd = err[1];
        p->report_fd = rep[1];
        if (r < 0)
                goto fail;

        pid = fork();
        if (pid < 0) {
                r = -errno;
                goto fail;
        }
        if (pid == 0)
                exec_run_child(p);

        /* Also here, so that a kill of the group right after fork() cannot miss the child. */
        (void) setpgid(pid, pid);
        c->pid = pid;
        c->confirmed = c->has_report = false;
        exec_plan_done(p); /* our copies of the child's ends: EOF comes when the child closes them */
        r = exec_watch(c, rep[0], out[0], err[0]);
        if (r < 0) {
                /* Without its sources the child cannot be supervised: end it now. */
                (void) kill(-pid, SIGKILL);
                (void) waitid(P_PID, pid, &(siginfo_t) {}, WEXITED);
                exec_child_release(c);
                return r;
        }
        exec_write_pid_file(c);
        return 0;

fail:
        safe_close(out[0]);
        safe_close(err[0]);
        safe_close(rep[0]);
        return r;
}

/* A command that cannot run is logged here and reported through task_on_launch_failed(); a
 * negative return is an internal failure (the task logs it). */
int exec_child_launch(ExecChild *c) {
        _cleanup_(exec_plan_done) ExecPlan plan = {};
        int r;

        if (c->pid > 0 || c->orphan > 0)
                return -EBUSY;
        r = exec_plan(c, &plan);
        if (r == -ENOENT)
                exec_log_error(c, "command not found: %s", exec_argv0(c));
        else if (r == -ENOEXEC)
                exec_log_error(c, "no command given");
        else if (r == -EINVAL)
                exec_log_error(c, "invalid user \"%s\"", strna(c->task->tc->user));
        if (r == -ENOENT || r == -ENOEXEC || r == -EINVAL) {
                task_on_launch_failed(c->task, r);
                return 0;
        }
        if (r < 0)
                return r;
        return exec_spawn(c, &plan);
}

static int exec_signal_group(pid_t pid, int sig) {
        if (kill(-pid, sig) >= 0)
                return 0;
        if (errno != ESRCH)
                return -errno;
        /* The task moved its leader to another group: signal the leader itself. */
        return kill(pid, sig) < 0 ? -errno : 0;
}

/* The checkpoint signal goes to the main process only, as a container's init forwards it:
 * helpers it forked (data loader workers) rarely handle it and would die of it. */
int exec_child_kill(ExecChild *c, int sig) {
        if (c->pid <= 0 || !c->confirmed)
                return -ESRCH;
        return kill(c->pid, sig) < 0 ? -errno : 0;
}

static int exec_on_kill_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ExecChild *c = userdata;

        c->kill_timer = sd_event_source_disable_unref(c->kill_timer);
        if (c->pid > 0) {
                log_notice("Task %s did not exit within its grace period, sending SIGKILL", c->task->name);
                (void) exec_signal_group(c->pid, SIGKILL);
        }
        return 0;
}

int exec_child_stop(ExecChild *c, usec_t grace) {
        int r;

        if (c->pid <= 0)
                return -ESRCH;
        if (grace == 0)
                return exec_signal_group(c->pid, SIGKILL);
        r = exec_signal_group(c->pid, SIGTERM);
        if (r < 0)
                return r;
        if (c->kill_timer)
                return 0; /* a second stop keeps the first deadline */
        r = sd_event_add_time_relative(c->task->event, &c->kill_timer, CLOCK_BOOTTIME, grace, USEC_PER_MSEC,
                                       exec_on_kill_timer, c);
        if (r < 0)
                return exec_signal_group(c->pid, SIGKILL);
        (void) sd_event_source_set_description(c->kill_timer, "exec-kill");
        return 0;
}

/* ---- find(): a process an earlier daemon left */

static void exec_orphan_release(ExecChild *c) {
        c->orphan_source = sd_event_source_disable_unref(c->orphan_source);
        c->orphan_timer = sd_event_source_disable_unref(c->orphan_timer);
        c->orphan_pidfd = safe_close(c->orphan_pidfd);
        c->orphan = 0;
}

static void exec_orphan_signal(ExecChild *c, int sig) {
        (void) kill(-c->orphan, sig);
        (void) pidfd_send_signal(c->orphan_pidfd, sig, NULL, 0);
}

static int exec_orphan_on_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ExecChild *c = userdata;

        log_info("Process %d left by an earlier daemon for task %s is gone", (int) c->orphan, c->task->name);
        (void) kill(-c->orphan, SIGKILL); /* what is left of its group */
        exec_orphan_release(c);
        exec_remove_pid_file(c);
        task_on_found(c->task, RUNTIME_FOUND_NOTHING, NULL, NULL);
        return 0;
}

static int exec_orphan_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ExecChild *c = userdata;

        c->orphan_timer = sd_event_source_disable_unref(c->orphan_timer);
        log_notice("Process %d of task %s ignored SIGTERM, sending SIGKILL", (int) c->orphan, c->task->name);
        exec_orphan_signal(c, SIGKILL);
        return 0;
}

static int exec_orphan_stop(ExecChild *c, pid_t pid, uint64_t starttime) {
        usec_t grace = (usec_t) c->task->tc->stop_grace_s * USEC_PER_SEC;
        uint64_t now_st;
        char spid[16];
        int r;

        c->orphan_pidfd = pidfd_open(pid, 0);
        if (c->orphan_pidfd < 0)
                return errno == ESRCH ? 0 : -errno;
        /* The pidfd pins the process: check it is still the one the pid file names. */
        if (exec_read_starttime(pid, &now_st) < 0 || now_st != starttime) {
                c->orphan_pidfd = safe_close(c->orphan_pidfd);
                return 0;
        }
        c->orphan = pid;
        snprintf(spid, sizeof(spid), "%d", (int) pid);
        log_event_prio(LOG_WARNING, EVENT_ERROR, ((const LogField[]) { { "TASK", c->task->name }, { "PID", spid } }),
                       "Task %s: process %d left by an earlier daemon still runs; stopping it before starting "
                       "the task again", c->task->name, (int) pid);
        r = sd_event_add_io(c->task->event, &c->orphan_source, c->orphan_pidfd, EPOLLIN, exec_orphan_on_exit, c);
        if (r >= 0)
                r = sd_event_add_time_relative(c->task->event, &c->orphan_timer, CLOCK_BOOTTIME, MAX(grace, 1U),
                                               USEC_PER_MSEC, exec_orphan_on_timer, c);
        if (r < 0) {
                exec_orphan_release(c);
                return r;
        }
        exec_orphan_signal(c, grace > 0 ? SIGTERM : SIGKILL);
        return 1;
}

int exec_child_find(ExecChild *c) {
        _cleanup_free_ char *text = NULL;
        uint64_t starttime = 0, now_st;
        pid_t pid = 0;
        int r;

        r = read_file_bounded(c->pid_file, EXEC_PID_FILE_MAX, &text, NULL);
        if (r == -ENOENT) {
                task_on_found(c->task, RUNTIME_FOUND_NOTHING, NULL, NULL);
                return 0;
        }
        if (r >= 0)
                r = exec_pid_file_parse(text, &pid, &starttime);
        if (r >= 0 && exec_read_starttime(pid, &now_st) >= 0 && now_st == starttime) {
                r = exec_orphan_stop(c, pid, starttime);
                if (r > 0)
                        return 0; /* task_on_found() once it is gone */
                if (r < 0)
                        return r;
        }
        log_debug("Removing stale pid file %s", c->pid_file);
        exec_remove_pid_file(c);
        task_on_found(c->task, RUNTIME_FOUND_NOTHING, NULL, NULL);
        return 0;
}

/* ---- lifecycle */

int exec_child_new(Task *t, ExecChild **ret) {
        _cleanup_(exec_child_freep) ExecChild *c = NULL;

        c = calloc(1, sizeof(ExecChild));
        if (!c)
                return -ENOMEM;
        *c = (ExecChild) {
                .task = t,
                .report_fd = -EBADF,
                .orphan_pidfd = -EBADF,
                .out = { { .child = c, .fd = -EBADF }, { .child = c, .fd = -EBADF } },
        };
        if (asprintf(&c->pid_file, "%s/%s.pid", t->task_dir, t->name) < 0) {
                c->pid_file = NULL;
                return -ENOMEM;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

ExecChild *exec_child_free(ExecChild *c) {
        if (!c)
                return NULL;
        if (c->pid > 0) {
                /* The daemon gives up on a running child (it normally stops it and waits for the
                 * exit first): do not leave it behind. */
                (void) kill(-c->pid, SIGKILL);
                (void) kill(c->pid, SIGKILL);
                (void) waitid(P_PID, c->pid, &(siginfo_t) {}, WEXITED);
                exec_remove_pid_file(c);
        }
        exec_child_release(c);
        if (c->orphan > 0) {
                exec_orphan_signal(c, SIGKILL);
                exec_remove_pid_file(c);
        }
        exec_orphan_release(c);
        free(c->pid_file);
        return mfree(c);
}
