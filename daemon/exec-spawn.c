/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "exec-child.h"
#include "fs-util.h"
#include "strv.h"
#include "task.h"

/* The exec runtime's child mode, the side that does not watch: the pure helpers that prepare a
 * launch (PATH candidates, user parsing, /proc and pid file parsing, exit statuses) and what runs
 * in the forked child until execve(). The parent side is in exec-child.c. */

#define EXEC_STAT_MAX 4096U

/* ---- pure helpers */

const char *exec_env_get(char * const *env, const char *name) {
        size_t n = strlen(name);

        for (char * const *e = env; e && *e; e++)
                if (strneq(*e, name, n) && (*e)[n] == '=')
                        return *e + n + 1;
        return NULL;
}

int exec_path_candidates(const char *argv0, const char *path, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        size_t len;
        int r;

        if (isempty(argv0))
                return -ENOENT;
        len = strlen(argv0);
        if (strchr(argv0, '/')) {
                if (len >= PATH_MAX)
                        return -ENOENT;
                r = strv_extend(&l, argv0);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(l);
                return 0;
        }
        for (const char *p = path ?: TASK_DEFAULT_PATH;;) {
                size_t n = strcspn(p, ":");

                if (n > 0 && n + 1 + len < PATH_MAX) {
                        r = strv_extendf(&l, "%.*s/%s", (int) n, p, argv0);
                        if (r < 0)
                                return r;
                }
                if (p[n] == 0)
                        break;
                p += n + 1;
        }
        if (!l)
                return -ENOENT;
        *ret = TAKE_PTR(l);
        return 0;
}

int exec_find_executable(const char *argv0, const char *path, char **ret) {
        _cleanup_strv_free_ char **l = NULL;
        bool denied = false;
        int r;

        r = exec_path_candidates(argv0, path, &l);
        if (r < 0)
                return r;
        STRV_FOREACH(c, l) {
                struct stat st;
                char *p;

                if (stat(*c, &st) < 0) {
                        denied = denied || errno == EACCES;
                        continue;
                }
                if (!S_ISREG(st.st_mode) || access(*c, X_OK) < 0) {
                        denied = true;
                        continue;
                }
                p = strdup(*c);
                if (!p)
                        return -ENOMEM;
                *ret = p;
                return 0;
        }
        return denied ? -EACCES : -ENOENT;
}

static int parse_id(const char *s, size_t n, uint32_t *ret) {
        uint64_t v = 0;

        if (n == 0 || n > 10)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        if (v >= UINT32_MAX) /* (uid_t) -1 means "unchanged" to setresuid() */
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

int exec_user_parse(const char *s, ExecUser *ret) {
        const char *colon;
        uint32_t uid, gid = 0;
        int r;

        if (isempty(s))
                return -EINVAL;
        if (s[0] < '0' || s[0] > '9') {
                if (strchr(s, ':'))
                        return -EINVAL;
                *ret = (ExecUser) { .name = s };
                return 0;
        }
        colon = strchr(s, ':');
        r = parse_id(s, colon ? (size_t) (colon - s) : strlen(s), &uid);
        if (r >= 0 && colon)
                r = parse_id(colon + 1, strlen(colon + 1), &gid);
        if (r < 0)
                return r;
        *ret = (ExecUser) { .numeric = true, .uid = uid, .has_gid = colon, .gid = gid };
        return 0;
}

int exec_parse_stat(const char *stat, char *ret_state, uint64_t *ret_starttime) {
        const char *p = strrchr(stat, ')');
        char state = 0;

        if (!p)
                return -EBADMSG;
        p++;
        for (unsigned field = 3;; field++) {
                size_t n;

                while (*p == ' ')
                        p++;
                n = strcspn(p, " \n");
                if (n == 0)
                        return -EBADMSG;
                if (field == 3) {
                        if (n != 1)
                                return -EBADMSG;
                        state = *p;
                } else if (field == 22) {
                        uint64_t v = 0;

                        if (n > 20)
                                return -EBADMSG;
                        for (size_t i = 0; i < n; i++) {
                                if (p[i] < '0' || p[i] > '9')
                                        return -EBADMSG;
                                v = v * 10 + (uint64_t) (p[i] - '0');
                        }
                        if (ret_state)
                                *ret_state = state;
                        *ret_starttime = v;
                        return 0;
                }
                p += n;
        }
}

int exec_read_stat(pid_t pid, char *ret_state, uint64_t *ret_starttime) {
        _cleanup_free_ char *text = NULL;
        char path[64];
        int r;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        r = read_file_bounded(path, EXEC_STAT_MAX, &text, NULL);
        if (r == -ENOENT || r == -ESRCH)
                return -ESRCH;
        if (r < 0)
                return r;
        return exec_parse_stat(text, ret_state, ret_starttime);
}

int exec_read_starttime(pid_t pid, uint64_t *ret) {
        char state;
        int r;

        r = exec_read_stat(pid, &state, ret);
        if (r < 0)
                return r;
        if (state == 'Z' || state == 'X')
                return -ESRCH;
        return 0;
}

int exec_pid_file_parse(const char *text, pid_t *ret_pid, uint64_t *ret_starttime) {
        unsigned long long pid, st;
        int consumed = 0;

        if (sscanf(text, "%llu %llu%n", &pid, &st, &consumed) != 2 || consumed <= 0)
                return -EBADMSG;
        if (text[consumed] != 0 && !streq(text + consumed, "\n"))
                return -EBADMSG;
        if (pid < 2 || pid > INT_MAX)
                return -EBADMSG;
        *ret_pid = (pid_t) pid;
        *ret_starttime = st;
        return 0;
}

bool exec_exit_from_status(int code, int status, TaskExit *ret) {
        switch (code) {
        case CLD_EXITED:
                *ret = (TaskExit) { .code = status };
                return true;
        case CLD_KILLED:
        case CLD_DUMPED:
                *ret = (TaskExit) { .signal = status };
                return true;
        default:
                return false;
        }
}

/* ---- the child, after fork(): system calls only (and the user database) */

_Noreturn static void child_fail(const ExecPlan *p, ExecStage stage, int error) {
        ExecReport rep = { .stage = stage, .error = error };

        (void) !write(p->report_fd, &rep, sizeof(rep));
        _exit(stage == EXEC_STAGE_EXEC && error == ENOENT ? 127 : 126);
}

static void child_reset_signals(void) {
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigset_t none;

        for (int sig = 1; sig < _NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void) sigaction(sig, &sa, NULL); /* EINVAL for glibc's own: fine */
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
}

static void child_close_from(int from, int keep) {
        if (keep > from && close_range((unsigned) from, (unsigned) keep - 1, 0) < 0)
                for (int fd = from; fd < keep; fd++)
                        (void) close(fd);
        from = MAX(from, keep + 1);
        if (close_range((unsigned) from, ~0U, 0) < 0) {
                struct rlimit rl;
                int max = getrlimit(RLIMIT_NOFILE, &rl) >= 0 && rl.rlim_cur < 65536 ? (int) rl.rlim_cur : 65536;

                for (int fd = from; fd < max; fd++)
                        (void) close(fd);
        }
}

/* stdin, stdout, stderr; the report pipe stays open (CLOEXEC), everything else is closed. */
static int child_setup_fds(ExecPlan *p) {
        int fds[3] = { p->null_fd, p->out_fd, p->err_fd };

        /* Move everything above stdio first, so that no dup2() below clobbers a source. */
        for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
                fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                if (fds[i] < 0)
                        return -errno;
        }
        p->report_fd = fcntl(p->report_fd, F_DUPFD_CLOEXEC, 3);
        if (p->report_fd < 0)
                return -errno;
        for (int i = 0; i < 3; i++)
                if (dup2(fds[i], i) < 0) /* dup2() leaves the target without O_CLOEXEC */
                        return -errno;
        child_close_from(3, p->report_fd);
        return 0;
}

static void child_switch_user(const ExecPlan *p) {
        const ExecUser *u = &p->user;
        const struct passwd *pw = NULL;
        uid_t uid = u->uid;
        gid_t gid = u->gid;

        if (!u->numeric || !u->has_gid) {
                errno = 0;
                pw = u->numeric ? getpwuid(u->uid) : getpwnam(u->name);
                if (!pw && !u->numeric)
                        child_fail(p, EXEC_STAGE_USER, errno > 0 ? errno : ESRCH);
                if (pw) {
                        uid = pw->pw_uid;
                        gid = pw->pw_gid;
                } else
                        gid = (gid_t) u->uid;
        }
        /* An unprivileged daemon (a development host) asked to run the task as itself. */
        if (geteuid() != 0 && uid == geteuid() && gid == getegid())
                return;
        if (pw ? initgroups(pw->pw_name, gid) < 0 : setgroups(0, NULL) < 0)
                child_fail(p, EXEC_STAGE_CREDENTIALS, errno);
        if (setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                child_fail(p, EXEC_STAGE_CREDENTIALS, errno);
}

_Noreturn void exec_run_child(ExecPlan *p) {
        bool denied = false;
        int r;

        child_reset_signals();
        (void) setpgid(0, 0);
        r = child_setup_fds(p);
        if (r < 0)
                child_fail(p, EXEC_STAGE_SETUP, -r);
        if (p->has_user)
                child_switch_user(p);
        /* After the credentials change, which clears it; then make sure the daemon did not die
         * before it took effect. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
                child_fail(p, EXEC_STAGE_SETUP, errno);
        if (getppid() != p->parent)
                _exit(126);
        (void) umask(0022);
        if (chdir(p->workdir ?: "/") < 0)
                child_fail(p, EXEC_STAGE_CHDIR, errno);

        STRV_FOREACH(c, p->candidates) {
                execve(*c, p->argv, p->env);
                if (errno == EACCES)
                        denied = true;
                else if (errno != ENOENT && errno != ENOTDIR)
                        child_fail(p, EXEC_STAGE_EXEC, errno);
        }
        child_fail(p, EXEC_STAGE_EXEC, denied ? EACCES : ENOENT);
}
