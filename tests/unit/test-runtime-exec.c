/* SPDX-License-Identifier: MIT */
/* The exec runtime: pure helpers, then real children on a real sd-event loop driven through a
 * real Task (task.c), then the transient-unit mode against python-dbusmock's systemd template
 * (only with TRAINSUPD_TEST_SYSTEMD_MOCK=1 and DBUS_SYSTEM_BUS_ADDRESS pointing at the mock's
 * private bus: tests/integration/t-exec-unit.sh sets that up). Commands may use /bin/sh here. */
#include "unit-helpers.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "exec-child.h"
#include "exec-unit.h"
#include "fs-util.h"
#include "json-util.h"
#include "log.h"
#include "strv.h"
#include "task.h"

#define TEST_JOB "job1"
#define MOCK_SERVICE "org.freedesktop.systemd1"
#define MOCK_PATH "/org/freedesktop/systemd1"
#define MOCK_IFACE "org.freedesktop.DBus.Mock"
#define UNIT_IFACE "org.freedesktop.systemd1.Unit"
#define SERVICE_IFACE "org.freedesktop.systemd1.Service"

/* ---------------------------------------------------------------- pure helpers */

static void test_env_get(void **state) {
        char *env[] = { "PATHX=1", "PATH=/a:/b", "PATH=/second", "EMPTY=", NULL };

        assert_string_equal(exec_env_get(env, "PATH"), "/a:/b");
        assert_string_equal(exec_env_get(env, "EMPTY"), "");
        assert_null(exec_env_get(env, "PAT"));
        assert_null(exec_env_get(NULL, "PATH"));
}

static void test_path_candidates(void **state) {
        _cleanup_strv_free_ char **l = NULL;

        assert_int_equal(exec_path_candidates("python", "/opt/bin::/usr/bin:", &l), 0);
        assert_int_equal(strv_length(l), 2);
        assert_string_equal(l[0], "/opt/bin/python");
        assert_string_equal(l[1], "/usr/bin/python");
        l = strv_free(l);

        assert_int_equal(exec_path_candidates("./run.sh", "/usr/bin", &l), 0);
        assert_int_equal(strv_length(l), 1);
        assert_string_equal(l[0], "./run.sh");
        l = strv_free(l);

        assert_int_equal(exec_path_candidates("sh", NULL, &l), 0);
        assert_string_equal(l[0], "/usr/local/sbin/sh");
        l = strv_free(l);

        assert_int_equal(exec_path_candidates("", "/bin", &l), -ENOENT);
        assert_int_equal(exec_path_candidates("x", "::", &l), -ENOENT);
}

static void test_find_executable(void **state) {
        char dir[] = "/tmp/trainsupd-exec-fe.XXXXXX", file[128], path[256];
        _cleanup_free_ char *p = NULL;

        assert_non_null(mkdtemp(dir));
        assert_int_equal(exec_find_executable("sh", "/nonexistent-trainsupd:/bin", &p), 0);
        assert_string_equal(p, "/bin/sh");
        p = mfree(p);
        assert_int_equal(exec_find_executable("no-such-command-trainsupd", "/bin:/usr/bin", &p), -ENOENT);

        snprintf(file, sizeof(file), "%s/script", dir);
        assert_int_equal(write_file_atomic(file, "#!/bin/sh\n", 10, 0644), 0);
        snprintf(path, sizeof(path), "%s:/nonexistent-trainsupd", dir);
        assert_int_equal(exec_find_executable("script", path, &p), -EACCES);
        assert_int_equal(exec_find_executable(file, NULL, &p), -EACCES);
        assert_int_equal(chmod(file, 0755), 0);
        assert_int_equal(exec_find_executable("script", path, &p), 0);
        assert_string_equal(p, file);
        assert_int_equal(unlink(file), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void test_user_parse(void **state) {
        ExecUser u;

        assert_int_equal(exec_user_parse("trainer", &u), 0);
        assert_false(u.numeric);
        assert_string_equal(u.name, "trainer");
        assert_int_equal(exec_user_parse("1000", &u), 0);
        assert_true(u.numeric);
        assert_int_equal(u.uid, 1000);
        assert_false(u.has_gid);
        assert_int_equal(exec_user_parse("1000:2000", &u), 0);
        assert_true(u.has_gid);
        assert_int_equal(u.gid, 2000);
        assert_int_equal(exec_user_parse("0:0", &u), 0);
        assert_int_equal(exec_user_parse("", &u), -EINVAL);
        assert_int_equal(exec_user_parse("1000:", &u), -EINVAL);
        assert_int_equal(exec_user_parse("10x", &u), -EINVAL);
        assert_int_equal(exec_user_parse("4294967295", &u), -EINVAL);
        assert_int_equal(exec_user_parse("name:1", &u), -EINVAL);
}

static void test_parse_stat(void **state) {
        const char *s = "1234 (a) (b c) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 4096 10\n";
        uint64_t st = 0, mine = 0;
        char c = 0;

        assert_int_equal(exec_parse_stat(s, &c, &st), 0);
        assert_int_equal(c, 'S');
        assert_int_equal(st, 98765);
        assert_int_equal(exec_parse_stat("1 (x) S 1 2 3", &c, &st), -EBADMSG);
        assert_int_equal(exec_parse_stat("no parenthesis", &c, &st), -EBADMSG);
        assert_int_equal(exec_parse_stat("1 (x) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 1", &c, &st), -EBADMSG);

        assert_int_equal(exec_read_starttime(getpid(), &mine), 0);
        assert_true(mine > 0);
}

static void test_pid_file_parse(void **state) {
        uint64_t st;
        pid_t pid;

        assert_int_equal(exec_pid_file_parse("4242 123456\n", &pid, &st), 0);
        assert_int_equal(pid, 4242);
        assert_int_equal(st, 123456);
        assert_int_equal(exec_pid_file_parse("4242 123456", &pid, &st), 0);
        assert_int_equal(exec_pid_file_parse("4242", &pid, &st), -EBADMSG);
        assert_int_equal(exec_pid_file_parse("1 5\n", &pid, &st), -EBADMSG);
        assert_int_equal(exec_pid_file_parse("4242 5 x\n", &pid, &st), -EBADMSG);
        assert_int_equal(exec_pid_file_parse("", &pid, &st), -EBADMSG);
}

static void test_exit_from_status(void **state) {
        TaskExit e;

        assert_true(exec_exit_from_status(CLD_EXITED, 3, &e));
        assert_int_equal(e.code, 3);
        assert_int_equal(e.signal, 0);
        assert_false(e.lost);
        assert_true(exec_exit_from_status(CLD_KILLED, SIGKILL, &e));
        assert_int_equal(e.signal, SIGKILL);
        assert_true(exec_exit_from_status(CLD_DUMPED, SIGSEGV, &e));
        assert_int_equal(e.signal, SIGSEGV);
        assert_false(exec_exit_from_status(0, 0, &e));
}

static void test_unit_name(void **state) {
        _cleanup_free_ char *n = NULL, *esc = NULL, *too_long = NULL;
        char job[300];

        assert_int_equal(exec_unit_name("llama-7b.run_2", "main", &n), 0);
        assert_string_equal(n, "trainsupd-llama-7b.run_2-main.service");
        assert_int_equal(exec_unit_name("a b/c", "x", &esc), 0);
        assert_string_equal(esc, "trainsupd-a\\x20b\\x2fc-x.service");
        memset(job, 'j', sizeof(job) - 1);
        job[sizeof(job) - 1] = 0;
        assert_int_equal(exec_unit_name(job, "x", &too_long), -ENAMETOOLONG);
        job[255 - strlen("trainsupd--x.service")] = 0;
        assert_int_equal(exec_unit_name(job, "x", &too_long), 0);
        assert_int_equal(strlen(too_long), 255);
        assert_int_equal(exec_unit_name("", "x", &too_long), -EINVAL);
}

static void test_unit_phase(void **state) {
        assert_int_equal(exec_unit_phase("active", "running"), EXEC_UNIT_PHASE_RUNNING);
        assert_int_equal(exec_unit_phase("activating", "start"), EXEC_UNIT_PHASE_RUNNING);
        assert_int_equal(exec_unit_phase("deactivating", "stop-sigterm"), EXEC_UNIT_PHASE_RUNNING);
        assert_int_equal(exec_unit_phase("active", "exited"), EXEC_UNIT_PHASE_OVER);
        assert_int_equal(exec_unit_phase("failed", "failed"), EXEC_UNIT_PHASE_OVER);
        assert_int_equal(exec_unit_phase("inactive", "dead"), EXEC_UNIT_PHASE_OVER);
        assert_int_equal(exec_unit_phase("inactive", NULL), EXEC_UNIT_PHASE_OVER);
        assert_int_equal(exec_unit_phase(NULL, NULL), EXEC_UNIT_PHASE_RUNNING);
}

static void test_unit_setup_failure(void **state) {
        const char *what;

        assert_int_equal(exec_unit_setup_failure(203, &what), -ENOEXEC);
        assert_non_null(what);
        assert_int_equal(exec_unit_setup_failure(217, &what), -ESRCH);
        assert_string_equal(what, "unknown user");
        assert_int_equal(exec_unit_setup_failure(200, &what), -ENOENT);
        assert_int_equal(exec_unit_setup_failure(226, &what), -EIO);
        assert_int_equal(exec_unit_setup_failure(3, &what), 0);
        assert_null(what);
}

/* ---- StartTransientUnit properties, built into a message and read back */

typedef struct UnitProperties {
        char *names[32];
        size_t n;
        char *description, *type, *exec_path, *workdir, *user, *group, *kill_mode, *out, *err, *ident;
        char **exec_argv, **env, **extra;
        int exec_ignore, remain, sigkill;
        uint64_t timeout;
} UnitProperties;

static void unit_properties_done(UnitProperties *p) {
        for (size_t i = 0; i < p->n; i++)
                free(p->names[i]);
        free(p->description), free(p->type), free(p->exec_path), free(p->workdir), free(p->user);
        free(p->group), free(p->kill_mode), free(p->out), free(p->err), free(p->ident);
        strv_free(p->exec_argv), strv_free(p->env), strv_free(p->extra);
}

static void read_str_variant(sd_bus_message *m, char **ret) {
        const char *s;

        assert_int_equal(sd_bus_message_read(m, "v", "s", &s), 1);
        *ret = strdup(s);
}

static void read_property(sd_bus_message *m, const char *name, UnitProperties *p) {
        struct { const char *name; char **field; } strs[] = {
                { "Description", &p->description }, { "Type", &p->type }, { "WorkingDirectory", &p->workdir },
                { "User", &p->user }, { "Group", &p->group }, { "KillMode", &p->kill_mode },
                { "StandardOutput", &p->out }, { "StandardError", &p->err }, { "SyslogIdentifier", &p->ident },
        };

        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                if (streq(name, strs[i].name)) {
                        read_str_variant(m, strs[i].field);
                        return;
                }
        if (streq(name, "ExecStart")) {
                const char *path;

                assert_int_equal(sd_bus_message_enter_container(m, 'v', "a(sasb)"), 1);
                assert_int_equal(sd_bus_message_enter_container(m, 'a', "(sasb)"), 1);
                assert_int_equal(sd_bus_message_enter_container(m, 'r', "sasb"), 1);
                assert_int_equal(sd_bus_message_read(m, "s", &path), 1);
                p->exec_path = strdup(path);
                assert_true(sd_bus_message_read_strv(m, &p->exec_argv) >= 0);
                assert_int_equal(sd_bus_message_read(m, "b", &p->exec_ignore), 1);
                assert_int_equal(sd_bus_message_exit_container(m), 1);
                assert_int_equal(sd_bus_message_enter_container(m, 'r', "sasb"), 0); /* exactly one */
                assert_int_equal(sd_bus_message_exit_container(m), 1);
                assert_int_equal(sd_bus_message_exit_container(m), 1);
        } else if (streq(name, "Environment")) {
                assert_int_equal(sd_bus_message_enter_container(m, 'v', "as"), 1);
                assert_true(sd_bus_message_read_strv(m, &p->env) >= 0);
                assert_int_equal(sd_bus_message_exit_container(m), 1);
        } else if (streq(name, "LogExtraFields")) {
                const void *data;
                size_t len;

                assert_int_equal(sd_bus_message_enter_container(m, 'v', "aay"), 1);
                assert_int_equal(sd_bus_message_enter_container(m, 'a', "ay"), 1);
                while (sd_bus_message_read_array(m, 'y', &data, &len) > 0)
                        assert_int_equal(strv_consume(&p->extra, strndup(data, len)), 0);
                assert_int_equal(sd_bus_message_exit_container(m), 1);
                assert_int_equal(sd_bus_message_exit_container(m), 1);
        } else if (streq(name, "RemainAfterExit"))
                assert_int_equal(sd_bus_message_read(m, "v", "b", &p->remain), 1);
        else if (streq(name, "SendSIGKILL"))
                assert_int_equal(sd_bus_message_read(m, "v", "b", &p->sigkill), 1);
        else if (streq(name, "TimeoutStopUSec"))
                assert_int_equal(sd_bus_message_read(m, "v", "t", &p->timeout), 1);
        else
                fail_msg("unexpected property %s", name);
}

/* Builds the properties into a StartTransientUnit message and reads them back. */
static void build_and_read(const ExecUnitSpec *spec, UnitProperties *p) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        const char *name;
        int sv[2];

        /* A message needs a started bus; the peer never answers, nothing is sent. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(sd_bus_new(&bus), 0);
        assert_int_equal(sd_bus_set_fd(bus, sv[0], sv[0]), 0);
        assert_true(sd_bus_start(bus) >= 0);
        assert_int_equal(sd_bus_message_new_method_call(bus, &m, MOCK_SERVICE, MOCK_PATH,
                                                        "org.freedesktop.systemd1.Manager", "StartTransientUnit"), 0);
        assert_true(sd_bus_message_append(m, "ss", "u.service", "fail") >= 0);
        assert_true(sd_bus_message_open_container(m, 'a', "(sv)") >= 0);
        assert_true(exec_unit_append_properties(m, spec) >= 0);
        assert_true(sd_bus_message_close_container(m) >= 0);
        assert_true(sd_bus_message_append(m, "a(sa(sv))", 0) >= 0);
        assert_int_equal(sd_bus_message_seal(m, 1, 0), 0);
        assert_true(sd_bus_message_rewind(m, true) >= 0);

        assert_int_equal(sd_bus_message_skip(m, "ss"), 1);
        assert_int_equal(sd_bus_message_enter_container(m, 'a', "(sv)"), 1);
        while (sd_bus_message_enter_container(m, 'r', "sv") > 0) {
                assert_int_equal(sd_bus_message_read(m, "s", &name), 1);
                for (size_t i = 0; i < p->n; i++)
                        assert_string_not_equal(p->names[i], name); /* each property once */
                assert_true(p->n < ELEMENTSOF(p->names));
                p->names[p->n++] = strdup(name);
                read_property(m, name, p);
                assert_int_equal(sd_bus_message_exit_container(m), 1);
        }
        assert_int_equal(sd_bus_message_exit_container(m), 1);
        close(sv[1]);
}

static bool has_name(const UnitProperties *p, const char *name) {
        for (size_t i = 0; i < p->n; i++)
                if (streq(p->names[i], name))
                        return true;
        return false;
}

static void test_unit_properties(void **state) {
        char *argv[] = { "python3", "train.py", "--epochs", "3", NULL };
        char *env[] = { "FOO=bar baz", "PATH=/usr/bin", "TRAINSUPD_TASK=main", NULL };
        const ExecUnitSpec spec = {
                .job = "llama", .task = "main", .path = "/usr/bin/python3", .argv = argv, .env = env,
                .workdir = "/srv/job", .user = "1000:2000", .stop_timeout = 30 * USEC_PER_SEC,
        };
        UnitProperties p = {};

        build_and_read(&spec, &p);
        assert_string_equal(p.type, "exec");
        assert_non_null(strstr(p.description, "main"));
        assert_non_null(strstr(p.description, "llama"));
        assert_string_equal(p.exec_path, "/usr/bin/python3");
        assert_int_equal(strv_length(p.exec_argv), 4);
        for (size_t i = 0; argv[i]; i++)
                assert_string_equal(p.exec_argv[i], argv[i]);
        assert_false(p.exec_ignore);
        assert_int_equal(strv_length(p.env), 3);
        for (size_t i = 0; env[i]; i++)
                assert_string_equal(p.env[i], env[i]);
        assert_string_equal(p.workdir, "/srv/job");
        assert_string_equal(p.user, "1000");
        assert_string_equal(p.group, "2000");
        assert_true(p.remain);
        assert_string_equal(p.kill_mode, "control-group");
        assert_int_equal(p.timeout, 30 * USEC_PER_SEC);
        assert_true(p.sigkill);
        assert_string_equal(p.out, "journal");
        assert_string_equal(p.err, "journal");
        assert_string_equal(p.ident, "main");
        assert_int_equal(strv_length(p.extra), 2);
        assert_string_equal(p.extra[0], "TRAINSUPD_TASK=main");
        assert_string_equal(p.extra[1], "TRAINSUPD_JOB=llama");
        /* The failed state must stay readable after the exit: no CollectMode=inactive-or-failed. */
        assert_false(has_name(&p, "CollectMode"));
        unit_properties_done(&p);
}

static void test_unit_properties_minimal(void **state) {
        char *argv[] = { "/bin/true", NULL };
        char *env[] = { NULL };
        const ExecUnitSpec named = { .job = "j", .task = "t", .path = "/bin/true", .argv = argv, .env = env,
                                     .user = "trainer", .stop_timeout = 0 };
        const ExecUnitSpec none = { .job = "j", .task = "t", .path = "/bin/true", .argv = argv, .env = env };
        UnitProperties p = {}, q = {};

        build_and_read(&named, &p);
        assert_string_equal(p.user, "trainer");
        assert_false(has_name(&p, "Group"));
        assert_false(has_name(&p, "WorkingDirectory"));
        assert_int_equal(p.timeout, 1); /* 0 would mean "no timeout" to systemd */
        assert_int_equal(strv_length(p.env), 0);
        assert_true(has_name(&p, "Environment"));
        unit_properties_done(&p);

        build_and_read(&none, &q);
        assert_false(has_name(&q, "User"));
        assert_false(has_name(&q, "Group"));
        unit_properties_done(&q);
}

/* ---------------------------------------------------------------- real tasks on a real loop */

typedef struct TaskSpec {
        const char *name;               /* default "main" */
        const char * const *command;
        const char *workdir;
        const char *user;
        int grace;                      /* stop_grace_s; default 30 */
        const char * const *env;        /* KEY, VALUE, ..., NULL */
} TaskSpec;

typedef struct Fixture {
        char dir[64];
        char state_dir[128];
        char log_path[128];
        int saved_stderr;
        sd_event *event;
        Config *config;
        Task *task;
        unsigned changes;
        /* unit mode against the mock */
        sd_bus *mock;
        bool mock_unit_added;
        bool mock_exited;
} Fixture;

static Fixture fx;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

static int fx_setup(void **state) {
        int fd;

        fx = (Fixture) { .saved_stderr = -1 };
        snprintf(fx.dir, sizeof(fx.dir), "/tmp/trainsupd-exec.XXXXXX");
        assert_non_null(mkdtemp(fx.dir));
        snprintf(fx.state_dir, sizeof(fx.state_dir), "%s/state", fx.dir);
        snprintf(fx.log_path, sizeof(fx.log_path), "%s/log", fx.dir);
        /* Capture the console log (events and task output) in a file. */
        fd = open(fx.log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0644);
        assert_true(fd >= 0);
        fflush(stderr);
        fx.saved_stderr = dup(STDERR_FILENO);
        assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
        close(fd);
        log_set_target(LOG_TARGET_CONSOLE);
        assert_int_equal(sd_event_new(&fx.event), 0);
        setenv("TRAINSUPD_EXEC_MODE", "child", 1);
        return 0;
}

static int fx_teardown(void **state) {
        _cleanup_free_ char *log = NULL;

        fx.task = task_free(fx.task);
        fx.config = config_free(fx.config);
        fx.event = sd_event_unref(fx.event);
        fx.mock = sd_bus_flush_close_unref(fx.mock);
        fflush(stderr);
        if (fx.saved_stderr >= 0) {
                dup2(fx.saved_stderr, STDERR_FILENO);
                close(fx.saved_stderr);
        }
        /* The captured log, for the test's .log file. */
        if (read_file_bounded(fx.log_path, 1U << 20, &log, NULL) >= 0)
                fprintf(stderr, "---- %s\n%s", fx.log_path, log);
        (void) nftw(fx.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        unsetenv("TRAINSUPD_EXEC_MODE");
        return 0;
}

static char *log_text(void) {
        char *text = NULL;

        assert_int_equal(read_file_bounded(fx.log_path, 4U << 20, &text, NULL), 0);
        return text;
}

static bool log_has(const char *needle) {
        _cleanup_free_ char *text = log_text();

        return strstr(text, needle);
}

static size_t log_count(const char *needle) {
        _cleanup_free_ char *text = log_text();
        size_t n = 0;

        for (const char *p = text; (p = strstr(p, needle)); p++)
                n++;
        return n;
}

static void on_change(Task *t, void *userdata) {
        fx.changes++;
}

static void fx_config(const TaskSpec *s) {
        _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();
        _cleanup_strv_free_ char **problems = NULL;
        _cleanup_free_ char *text = NULL;
        cJSON *tasks, *task, *cmd, *env, *restart;

        assert_non_null(root);
        cJSON_AddStringToObject(root, "job_id", TEST_JOB);
        tasks = cJSON_AddArrayToObject(root, "tasks");
        task = cJSON_CreateObject();
        cJSON_AddItemToArray(tasks, task);
        cJSON_AddStringToObject(task, "name", s->name ?: "main");
        cJSON_AddStringToObject(task, "runtime", "exec");
        cmd = cJSON_AddArrayToObject(task, "command");
        for (size_t i = 0; s->command[i]; i++)
                cJSON_AddItemToArray(cmd, cJSON_CreateString(s->command[i]));
        if (s->workdir)
                cJSON_AddStringToObject(task, "workdir", s->workdir);
        if (s->user)
                cJSON_AddStringToObject(task, "user", s->user);
        cJSON_AddNumberToObject(task, "stop_grace_s", s->grace ?: 30);
        env = cJSON_AddObjectToObject(task, "env");
        for (size_t i = 0; s->env && s->env[i]; i += 2)
                cJSON_AddStringToObject(env, s->env[i], s->env[i + 1]);
        restart = cJSON_AddObjectToObject(task, "restart");
        cJSON_AddNumberToObject(restart, "max", 0);
        cJSON_AddNumberToObject(restart, "backoff_s", 1);
        cJSON_AddNumberToObject(restart, "backoff_max_s", 1);
        cJSON_AddObjectToObject(root, "cloud");
        cJSON_AddStringToObject(cJSON_GetObjectItem(root, "cloud"), "provider", "none");
        text = cJSON_PrintUnformatted(root);
        assert_non_null(text);
        if (config_parse(text, strlen(text), NULL, fx.state_dir, &fx.config, &problems) < 0)
                fail_msg("config: %s", problems && problems[0] ? problems[0] : "?");
}

/* A Task of the exec runtime for the spec, not started yet. */
static void fx_task(const TaskSpec *s) {
        fx_config(s);
        const TaskParams p = {
                .event = fx.event,
                .config = fx.config,
                .tc = &fx.config->tasks[0],
                .state_dir = fx.state_dir,
                .vt = &runtime_exec_vtable,
                .on_change = on_change,
        };
        assert_int_equal(task_new(&fx.task, &p), 0);
}

/* Another task of the same name: the record of the previous run must go too, or the task would
 * not start again after a completed run. */
static void fx_reset(void) {
        if (fx.task)
                (void) unlink(fx.task->state_file);
        fx.task = task_free(fx.task);
        fx.config = config_free(fx.config);
}

static bool run_until(bool (*pred)(void), unsigned ms) {
        usec_t end = now_usec(CLOCK_MONOTONIC) + (usec_t) ms * USEC_PER_MSEC;

        while (!pred()) {
                if (now_usec(CLOCK_MONOTONIC) >= end)
                        return false;
                assert_true(sd_event_run(fx.event, 20 * USEC_PER_MSEC) >= 0);
        }
        return true;
}

static bool task_done(void) {
        return fx.task->state >= TASK_STATE_EXITED && task_is_settled(fx.task);
}

static bool task_running(void) {
        return fx.task->state == TASK_STATE_RUNNING;
}

static void run_to_end(void) {
        if (!run_until(task_done, 15000))
                fail_msg("task %s did not settle (state %s)", fx.task->name, task_state_to_string(fx.task->state));
}

static char *pid_file_path(void) {
        char *p;

        assert_true(asprintf(&p, "%s/%s.pid", fx.task->task_dir, fx.task->name) > 0);
        return p;
}

static bool file_exists(const char *path) {
        return access(path, F_OK) == 0;
}

static void test_env_exact(void **state) {
        static const char * const cmd[] = { "env", NULL };
        static const char * const env[] = { "FOO", "bar baz", "EMPTY", "", NULL };
        _cleanup_free_ char *old_path = strdup(getenv("PATH") ?: "");
        char line[512];

        fx_task(&(TaskSpec) { .command = cmd, .env = env });
        /* argv[0] is looked up in the task's PATH, never the daemon's. */
        setenv("PATH", "/nonexistent-trainsupd", 1);
        setenv("TRAINSUPD_LEAK_CHECK", "1", 1);
        assert_int_equal(task_start(fx.task), 0);
        setenv("PATH", old_path, 1);
        unsetenv("TRAINSUPD_LEAK_CHECK");
        run_to_end();

        assert_int_equal(fx.task->state, TASK_STATE_COMPLETED);
        assert_int_equal(fx.task->last_exit.code, 0);
        /* Exactly t->env: each entry once, nothing else. */
        assert_int_equal(log_count(" TASK=main OUT=\""), strv_length(fx.task->env));
        STRV_FOREACH(e, fx.task->env) {
                snprintf(line, sizeof(line), " TASK=main OUT=\"%s\"", *e);
                assert_int_equal(log_count(line), 1);
        }
        assert_true(log_has("OUT=\"FOO=bar baz\""));
        assert_true(log_has("OUT=\"PATH=" TASK_DEFAULT_PATH "\""));
        assert_false(log_has("TRAINSUPD_LEAK_CHECK"));
        assert_true(log_has("EVENT=task-started"));
}

static void test_workdir(void **state) {
        static const char * const cmd[] = { "pwd", NULL };
        _cleanup_free_ char *real = realpath(fx.dir, NULL);
        char line[256];

        assert_non_null(real);
        fx_task(&(TaskSpec) { .command = cmd, .workdir = real });
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_COMPLETED);
        snprintf(line, sizeof(line), "TASK=main OUT=\"%s\"", real);
        assert_true(log_has(line));
}

static void test_workdir_default_root(void **state) {
        static const char * const cmd[] = { "pwd", NULL };

        fx_task(&(TaskSpec) { .command = cmd });
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_COMPLETED);
        assert_true(log_has("TASK=main OUT=\"/\""));
}

static void test_output_and_exit_code(void **state) {
        static const char * const cmd[] = { "sh", "-c", "echo one; echo two >&2; printf 'partial'; exit 3", NULL };
        _cleanup_free_ char *pid_file = NULL;

        fx_task(&(TaskSpec) { .command = cmd });
        pid_file = pid_file_path();
        assert_int_equal(task_start(fx.task), 0);
        assert_true(file_exists(pid_file)); /* written at fork */
        run_to_end();

        assert_int_equal(fx.task->state, TASK_STATE_FAILED);
        assert_true(fx.task->has_exit);
        assert_int_equal(fx.task->last_exit.code, 3);
        assert_int_equal(fx.task->last_exit.signal, 0);
        assert_non_null(fx.task->exit_recorded_for);
        assert_true(strneq(fx.task->exit_recorded_for, "pid:", 4));
        assert_true(log_has("TASK=main OUT=\"one\""));
        assert_true(log_has("TASK=main OUT=\"two\""));
        assert_true(log_has("TASK=main OUT=\"partial\""));
        assert_true(log_has("EVENT=task-exited"));
        assert_false(file_exists(pid_file)); /* removed once the exit was recorded */
}

static void test_death_by_signal(void **state) {
        static const char * const cmd[] = { "sh", "-c", "kill -USR2 $$; sleep 5", NULL };

        fx_task(&(TaskSpec) { .command = cmd });
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_FAILED);
        assert_int_equal(fx.task->last_exit.signal, SIGUSR2);
        assert_true(log_has("EXIT_SIGNAL=SIGUSR2"));
}

static void test_command_not_found(void **state) {
        static const char * const cmd[] = { "no-such-command-trainsupd", "arg", NULL };
        _cleanup_free_ char *pid_file = NULL;

        fx_task(&(TaskSpec) { .command = cmd });
        pid_file = pid_file_path();
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        /* Reported as a launch failure: no exit status, never "started". */
        assert_int_equal(fx.task->state, TASK_STATE_FAILED);
        assert_false(fx.task->has_exit);
        assert_null(fx.task->instance);
        assert_false(log_has("EVENT=task-started"));
        assert_true(log_has("EVENT=error TASK=main"));
        assert_true(log_has("command not found: no-such-command-trainsupd"));
        assert_false(file_exists(pid_file));
}

static void test_permission_denied(void **state) {
        char file[128];
        const char *cmd[] = { file, NULL };

        snprintf(file, sizeof(file), "%s/not-executable", fx.dir);
        assert_int_equal(write_file_atomic(file, "#!/bin/sh\necho no\n", 18, 0644), 0);
        fx_task(&(TaskSpec) { .command = cmd });
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_FAILED);
        assert_false(fx.task->has_exit);
        assert_true(log_has("permission denied: "));
        assert_false(log_has("OUT=\"no\""));
}

static void test_bad_workdir(void **state) {
        static const char * const cmd[] = { "true", NULL };

        fx_task(&(TaskSpec) { .command = cmd, .workdir = "/nonexistent-trainsupd-dir" });
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_FAILED);
        assert_false(fx.task->has_exit);
        assert_true(log_has("cannot change to working directory /nonexistent-trainsupd-dir"));
}

static bool ready_line(void) {
        return fx.task->state == TASK_STATE_RUNNING && log_has("OUT=\"ready\"");
}

static void test_stop_grace_then_kill(void **state) {
        static const char * const cmd[] = { "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done",
                                            NULL };
        usec_t t0, elapsed;

        fx_task(&(TaskSpec) { .command = cmd, .grace = 1 });
        assert_int_equal(task_start(fx.task), 0);
        assert_true(run_until(ready_line, 10000));
        t0 = now_usec(CLOCK_MONOTONIC);
        assert_int_equal(task_stop(fx.task), 0);
        assert_int_equal(fx.task->state, TASK_STATE_STOPPING);
        run_to_end();
        elapsed = now_usec(CLOCK_MONOTONIC) - t0;
        assert_int_equal(fx.task->state, TASK_STATE_EXITED);
        assert_int_equal(fx.task->last_exit.signal, SIGKILL);
        assert_true(elapsed >= 900 * USEC_PER_MSEC);
        assert_true(elapsed < 5 * USEC_PER_SEC);
}

static void test_stop_graceful(void **state) {
        static const char * const cmd[] = { "sleep", "60", NULL };
        usec_t t0;

        fx_task(&(TaskSpec) { .command = cmd, .grace = 20 });
        assert_int_equal(task_start(fx.task), 0);
        assert_true(run_until(task_running, 10000));
        t0 = now_usec(CLOCK_MONOTONIC);
        assert_int_equal(task_stop(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_EXITED);
        assert_int_equal(fx.task->last_exit.signal, SIGTERM);
        assert_true(now_usec(CLOCK_MONOTONIC) - t0 < 5 * USEC_PER_SEC);
}

static bool ready_file(void) {
        char p[128];

        snprintf(p, sizeof(p), "%s/ready", fx.dir);
        return fx.task->state == TASK_STATE_RUNNING && file_exists(p);
}

static bool main_got_usr1(void) {
        return log_has("OUT=\"main-got-usr1\"");
}

static void test_checkpoint_signal_main_only_stop_whole_group(void **state) {
        /* The checkpoint signal goes to the main process only (a helper it forked would die of
         * it); a stop's SIGTERM reaches the whole group, the helper included. "ready" comes once
         * both shells have their traps (else a signal could meet the default action). */
        static const char * const cmd[] = {
                "sh", "-c",
                "( trap 'touch \"$D/helper-usr1\"' USR1; trap 'touch \"$D/helper-term\"; exit 0' TERM; "
                "  touch \"$D/helper-ready\"; while :; do sleep 0.05; done ) & CH=$!; "
                "trap 'echo main-got-usr1' USR1; trap 'wait $CH; exit 0' TERM; "
                "while [ ! -e \"$D/helper-ready\" ]; do sleep 0.01; done; touch \"$D/ready\"; "
                "while :; do wait $CH; done",
                NULL };
        const char *env[] = { "D", fx.dir, NULL };
        char p[128];

        fx_task(&(TaskSpec) { .command = cmd, .env = env, .grace = 10 });
        assert_int_equal(task_start(fx.task), 0);
        assert_true(run_until(ready_file, 10000));
        assert_int_equal(task_signal(fx.task, SIGUSR1), 0);
        assert_true(run_until(main_got_usr1, 5000));
        snprintf(p, sizeof(p), "%s/helper-usr1", fx.dir);
        assert_false(file_exists(p));
        assert_int_equal(task_stop(fx.task), 0);
        run_to_end();
        snprintf(p, sizeof(p), "%s/helper-term", fx.dir);
        assert_true(file_exists(p));
        assert_int_equal(fx.task->state, TASK_STATE_EXITED);
        assert_int_equal(fx.task->last_exit.code, 0);
}

static bool timer_fired;

static int on_test_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        timer_fired = true;
        return 0;
}

static bool flood_seen(void) {
        return fx.task->state == TASK_STATE_RUNNING && log_has("OUT=\"y\"");
}

static bool timer_done(void) {
        return timer_fired;
}

static void test_output_flood_does_not_starve(void **state) {
        /* "yes" writes as fast as it can: the loop still serves the daemon's other sources (a
         * timer here) and the output is rate-limited. */
        static const char * const cmd[] = { "yes", NULL };
        _cleanup_(sd_event_source_unrefp) sd_event_source *timer = NULL;
        usec_t t0;

        fx_task(&(TaskSpec) { .command = cmd, .grace = 1 });
        assert_int_equal(task_start(fx.task), 0);
        assert_true(run_until(flood_seen, 10000));
        timer_fired = false;
        t0 = now_usec(CLOCK_MONOTONIC);
        assert_int_equal(sd_event_add_time_relative(fx.event, &timer, CLOCK_MONOTONIC, 100 * USEC_PER_MSEC, 0,
                                                    on_test_timer, NULL), 0);
        assert_true(run_until(timer_done, 5000));
        assert_true(now_usec(CLOCK_MONOTONIC) - t0 < 2 * USEC_PER_SEC);
        assert_int_equal(task_stop(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->last_exit.signal, SIGTERM);
        assert_true(log_has("lines of output dropped"));
}

static void write_pid_file(pid_t pid, uint64_t starttime) {
        _cleanup_free_ char *path = pid_file_path();
        char buf[64];

        snprintf(buf, sizeof(buf), "%d %llu\n", (int) pid, (unsigned long long) starttime);
        assert_int_equal(write_file_atomic(path, buf, strlen(buf), 0644), 0);
}

static void test_stale_pid_file_dead_process(void **state) {
        static const char * const cmd[] = { "true", NULL };
        _cleanup_free_ char *path = NULL;
        pid_t dead;

        fx_task(&(TaskSpec) { .command = cmd });
        path = pid_file_path();
        dead = fork();
        assert_true(dead >= 0);
        if (dead == 0)
                _exit(0);
        assert_int_equal(waitpid(dead, NULL, 0), dead);
        write_pid_file(dead, 12345);
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_COMPLETED);
        assert_false(file_exists(path));
        assert_false(log_has("earlier daemon still runs"));
}

static void test_stale_pid_file_reused_pid(void **state) {
        /* The pid lives, but it is another process (here: the test itself, wrong start time). */
        static const char * const cmd[] = { "true", NULL };
        _cleanup_free_ char *path = NULL;
        uint64_t st;

        fx_task(&(TaskSpec) { .command = cmd });
        path = pid_file_path();
        assert_int_equal(exec_read_starttime(getpid(), &st), 0);
        write_pid_file(getpid(), st + 1);
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_COMPLETED);
        assert_false(file_exists(path));

        /* Garbage is stale too. */
        fx_reset();
        fx_task(&(TaskSpec) { .command = cmd });
        assert_int_equal(write_file_atomic(path, "garbage", 7, 0644), 0);
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_COMPLETED);
        assert_false(file_exists(path));
}

static void test_orphan_stopped_before_launch(void **state) {
        /* A process an earlier daemon left (in its own group, ignoring SIGTERM) and a pid file
         * naming it: find() kills it (TERM, KILL after the grace) before launching. */
        static const char * const cmd[] = { "true", NULL };
        _cleanup_free_ char *path = NULL;
        usec_t t0, elapsed;
        uint64_t st;
        pid_t orphan;
        int status, ready[2];
        char c;

        fx_task(&(TaskSpec) { .command = cmd, .grace = 1 });
        path = pid_file_path();
        assert_int_equal(pipe(ready), 0);
        orphan = fork();
        assert_true(orphan >= 0);
        if (orphan == 0) {
                sigset_t none;

                setpgid(0, 0);
                signal(SIGTERM, SIG_IGN);
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                (void) !write(ready[1], "x", 1);
                for (;;)
                        pause();
        }
        close(ready[1]);
        assert_int_equal(read(ready[0], &c, 1), 1); /* SIGTERM is ignored from here on */
        close(ready[0]);
        setpgid(orphan, orphan);
        assert_int_equal(exec_read_starttime(orphan, &st), 0);
        write_pid_file(orphan, st);

        t0 = now_usec(CLOCK_MONOTONIC);
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        elapsed = now_usec(CLOCK_MONOTONIC) - t0;
        assert_int_equal(waitpid(orphan, &status, 0), orphan);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGKILL);
        assert_true(elapsed >= 900 * USEC_PER_MSEC);
        assert_int_equal(fx.task->state, TASK_STATE_COMPLETED); /* launched once the orphan was gone */
        assert_true(log_has("left by an earlier daemon still runs"));
        assert_false(file_exists(path));
}

static bool pid_file_names_sleep(const char *path, pid_t *ret) {
        _cleanup_free_ char *text = NULL, *comm = NULL;
        char p[64];
        uint64_t st;
        pid_t pid;

        if (read_file_bounded(path, 128, &text, NULL) < 0 || exec_pid_file_parse(text, &pid, &st) < 0)
                return false;
        snprintf(p, sizeof(p), "/proc/%d/comm", (int) pid);
        if (read_file_bounded(p, 64, &comm, NULL) < 0 || !streq(comm, "sleep\n"))
                return false;
        *ret = pid;
        return true;
}

static void test_pdeathsig(void **state) {
        /* A "daemon" in a forked process runs the task; kill -9 it: the task gets SIGTERM. */
        static const char * const cmd[] = { "sleep", "60", NULL };
        char path[256];
        pid_t daemon_pid, task_pid = 0;
        uint64_t st;

        fx_config(&(TaskSpec) { .command = cmd });
        snprintf(path, sizeof(path), "%s/tasks/" TEST_JOB "/main.pid", fx.state_dir);
        daemon_pid = fork();
        assert_true(daemon_pid >= 0);
        if (daemon_pid == 0) {
                /* sd-event objects do not cross fork(): a loop and a task of its own. */
                sd_event *e = NULL;
                Task *t = NULL;

                if (sd_event_new(&e) < 0)
                        _exit(2);
                const TaskParams p = { .event = e, .config = fx.config, .tc = &fx.config->tasks[0],
                                       .state_dir = fx.state_dir, .vt = &runtime_exec_vtable };
                if (task_new(&t, &p) < 0 || task_start(t) < 0)
                        _exit(3);
                (void) sd_event_loop(e);
                _exit(1);
        }
        for (int i = 0; i < 200 && !pid_file_names_sleep(path, &task_pid); i++)
                usleep(50000);
        assert_true(task_pid > 0);
        assert_int_equal(kill(daemon_pid, SIGKILL), 0);
        assert_int_equal(waitpid(daemon_pid, NULL, 0), daemon_pid);
        for (int i = 0; i < 100 && exec_read_starttime(task_pid, &st) == 0; i++)
                usleep(50000);
        assert_int_equal(exec_read_starttime(task_pid, &st), -ESRCH);
}

static void test_free_kills_child(void **state) {
        static const char * const cmd[] = { "sleep", "60", NULL };
        _cleanup_free_ char *path = NULL;
        uint64_t st;
        int pid;

        fx_task(&(TaskSpec) { .command = cmd });
        path = pid_file_path();
        assert_int_equal(task_start(fx.task), 0);
        assert_true(run_until(task_running, 10000));
        assert_int_equal(sscanf(fx.task->instance, "pid:%d", &pid), 1);
        fx.task = task_free(fx.task);
        assert_int_equal(exec_read_starttime(pid, &st), -ESRCH);
        assert_int_equal(kill(pid, 0), -1); /* reaped, not a zombie */
        assert_false(file_exists(path));
}

static void test_user_switch(void **state) {
        static const char * const cmd[] = { "id", NULL };

        if (geteuid() != 0)
                skip();
        fx_task(&(TaskSpec) { .command = cmd, .user = "1234:5678" });
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_COMPLETED);
        assert_true(log_has("OUT=\"uid=1234 gid=5678 groups=5678\""));
}

static void test_user_by_name(void **state) {
        static const char * const cmd[] = { "id", "-u", NULL };
        static const char * const cmd_unknown[] = { "true", NULL };

        if (geteuid() != 0 || !getpwnam("nobody"))
                skip();
        fx_task(&(TaskSpec) { .command = cmd, .user = "nobody" });
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_COMPLETED);
        assert_true(log_has("OUT=\"65534\""));

        fx_reset();
        fx_task(&(TaskSpec) { .command = cmd_unknown, .user = "no-such-user-trainsupd" });
        assert_int_equal(task_start(fx.task), 0);
        run_to_end();
        assert_int_equal(fx.task->state, TASK_STATE_FAILED);
        assert_false(fx.task->has_exit);
        assert_true(log_has("unknown user \\\"no-such-user-trainsupd\\\""));
}

static void test_detach_child_mode(void **state) {
        static const char * const cmd[] = { "true", NULL };

        fx_task(&(TaskSpec) { .command = cmd });
        assert_false(runtime_exec_vtable.detach(fx.task));
}

/* ---------------------------------------------------------------- unit mode, against dbusmock */

static void mock_call(const char *path, const char *iface, const char *member, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        va_list ap;
        int r;

        assert_true(sd_bus_message_new_method_call(fx.mock, &m, MOCK_SERVICE, path, iface, member) >= 0);
        va_start(ap, types);
        r = sd_bus_message_appendv(m, types, ap);
        va_end(ap);
        assert_true(r >= 0);
        r = sd_bus_call(fx.mock, m, 5 * USEC_PER_SEC, &error, &reply);
        if (r < 0)
                fail_msg("%s.%s: %s", iface, member, error.message ?: strerror(-r));
        sd_bus_error_free(&error);
}

static char *mock_unit_path(const char *unit) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *path;

        assert_true(sd_bus_call_method(fx.mock, MOCK_SERVICE, MOCK_PATH, "org.freedesktop.systemd1.Manager",
                                       "GetUnit", NULL, &reply, "s", unit) >= 0);
        assert_true(sd_bus_message_read(reply, "o", &path) > 0);
        return strdup(path);
}

static unsigned mock_n_calls(const char *method) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        unsigned n = 0;

        assert_true(sd_bus_call_method(fx.mock, MOCK_SERVICE, MOCK_PATH, MOCK_IFACE, "GetMethodCalls", NULL, &reply,
                                       "s", method) >= 0);
        assert_true(sd_bus_message_enter_container(reply, 'a', "(tav)") > 0);
        while (sd_bus_message_skip(reply, "(tav)") > 0)
                n++;
        return n;
}

/* The template lacks these; added so that they answer and are recorded. */
static void mock_add_method(const char *name, const char *in_sig) {
        mock_call(MOCK_PATH, MOCK_IFACE, "AddMethod", "sssss", "org.freedesktop.systemd1.Manager", name, in_sig, "",
                  "");
}

static void mock_setup(void) {
        setenv("TRAINSUPD_EXEC_MODE", "unit", 1);
        assert_true(sd_bus_open_system(&fx.mock) >= 0);
        mock_add_method("Subscribe", "");
        mock_add_method("KillUnit", "ssi");
        mock_add_method("ResetFailedUnit", "s");
}

/* A unit object in the mock, as systemd would show it. */
static void mock_add_unit(const char *unit, const char *active, const char *sub, uint32_t pid, const char *job,
                          const char *task) {
        _cleanup_free_ char *path = NULL, *e1 = NULL, *e2 = NULL;

        mock_call(MOCK_PATH, MOCK_IFACE, "AddMockUnit", "s", unit);
        path = mock_unit_path(unit);
        assert_true(asprintf(&e1, "TRAINSUPD_JOB_ID=%s", job) > 0 && asprintf(&e2, "TRAINSUPD_TASK=%s", task) > 0);
        mock_call(path, MOCK_IFACE, "AddProperties", "sa{sv}", UNIT_IFACE, 1, "SubState", "s", sub);
        mock_call(path, MOCK_IFACE, "UpdateProperties", "sa{sv}", UNIT_IFACE, 1, "ActiveState", "s", active);
        mock_call(path, MOCK_IFACE, "AddProperties", "sa{sv}", SERVICE_IFACE, 4, "ExecMainPID", "u", pid,
                  "ExecMainCode", "i", 0, "ExecMainStatus", "i", 0, "Environment", "as", 3, "PATH=/usr/bin", e1, e2);
}

/* The main process ends: Service properties first, then the Unit's, as systemd sends them. */
static void mock_exit_unit(const char *unit, int code, int status, const char *active, const char *sub) {
        _cleanup_free_ char *path = mock_unit_path(unit);

        mock_call(path, MOCK_IFACE, "UpdateProperties", "sa{sv}", SERVICE_IFACE, 2, "ExecMainCode", "i", code,
                  "ExecMainStatus", "i", status);
        mock_call(path, MOCK_IFACE, "UpdateProperties", "sa{sv}", UNIT_IFACE, 2, "ActiveState", "s", active, "SubState",
                  "s", sub);
}

static void on_change_launch(Task *t, void *userdata) {
        /* StartTransientUnit is about to be sent: make the unit exist, running. */
        if (t->state == TASK_STATE_STARTING && !fx.mock_unit_added) {
                fx.mock_unit_added = true;
                mock_add_unit("trainsupd-" TEST_JOB "-main.service", "active", "running", 4242, TEST_JOB, "main");
        }
        /* Started: signal it (KillUnit), then let the main process exit with 3. */
        if (t->state == TASK_STATE_RUNNING && !fx.mock_exited) {
                fx.mock_exited = true;
                assert_int_equal(task_signal(t, SIGUSR1), 0);
                mock_exit_unit("trainsupd-" TEST_JOB "-main.service", CLD_EXITED, 3, "failed", "failed");
        }
}

static unsigned mock_base_reset, mock_base_stop;

static bool mock_cleaned_main(void) {
        return task_done() && mock_n_calls("ResetFailedUnit") > mock_base_reset &&
               mock_n_calls("StopUnit") > mock_base_stop;
}

static void test_unit_mock_launch(void **state) {
        static const char * const cmd[] = { "sleep", "1000", NULL };
        static const char * const env[] = { "FOO", "bar", NULL };
        _cleanup_free_ char *real = realpath(fx.dir, NULL);

        mock_setup();
        mock_base_reset = mock_n_calls("ResetFailedUnit");
        mock_base_stop = mock_n_calls("StopUnit");
        fx_config(&(TaskSpec) { .command = cmd, .env = env, .workdir = real, .user = "1234:5678", .grace = 7 });
        const TaskParams p = { .event = fx.event, .config = fx.config, .tc = &fx.config->tasks[0],
                               .state_dir = fx.state_dir, .vt = &runtime_exec_vtable, .on_change = on_change_launch };
        assert_int_equal(task_new(&fx.task, &p), 0);
        assert_true(runtime_exec_vtable.detach(fx.task)); /* a unit outlives the daemon */

        /* No unit yet (the mock's GetUnit fails): launched. */
        assert_int_equal(task_start(fx.task), 0);
        if (!run_until(mock_cleaned_main, 15000))
                fail_msg("no exit and cleanup (state %s)", task_state_to_string(fx.task->state));
        assert_int_equal(fx.task->state, TASK_STATE_FAILED);
        assert_int_equal(fx.task->last_exit.code, 3);
        assert_string_equal(fx.task->exit_recorded_for, "pid:4242");
        assert_int_equal(mock_n_calls("StartTransientUnit"), 1);
        assert_int_equal(mock_n_calls("KillUnit"), 1);
        assert_true(log_has("EVENT=task-started"));
        assert_true(log_has("PID=4242"));
}

static void on_change_adopt(Task *t, void *userdata) {
        if (t->state == TASK_STATE_RUNNING && !fx.mock_exited) {
                fx.mock_exited = true;
                mock_exit_unit("trainsupd-" TEST_JOB "-adopt.service", CLD_EXITED, 0, "active", "exited");
        }
}

static bool mock_cleaned_adopt(void) {
        return task_done() && mock_n_calls("ResetFailedUnit") >= 1; /* the log was cleared */
}

static void test_unit_mock_adopt(void **state) {
        static const char * const cmd[] = { "sleep", "1000", NULL };

        mock_setup();
        mock_add_unit("trainsupd-" TEST_JOB "-adopt.service", "active", "running", 777, TEST_JOB, "adopt");
        /* From here on the mock's call log is the runtime's traffic (and the test's GetUnit
         * lookups); t-exec-unit.sh reads it afterwards. */
        mock_call(MOCK_PATH, MOCK_IFACE, "ClearCalls", "");
        fx_config(&(TaskSpec) { .name = "adopt", .command = cmd });
        const TaskParams p = { .event = fx.event, .config = fx.config, .tc = &fx.config->tasks[0],
                               .state_dir = fx.state_dir, .vt = &runtime_exec_vtable, .on_change = on_change_adopt };
        assert_int_equal(task_new(&fx.task, &p), 0);
        assert_int_equal(task_start(fx.task), 0);
        if (!run_until(mock_cleaned_adopt, 15000))
                fail_msg("no exit and cleanup (state %s)", task_state_to_string(fx.task->state));
        assert_int_equal(fx.task->state, TASK_STATE_COMPLETED);
        assert_int_equal(fx.task->last_exit.code, 0);
        assert_string_equal(fx.task->exit_recorded_for, "pid:777");
        assert_int_equal(mock_n_calls("StartTransientUnit"), 0); /* adopted, not started again */
        assert_true(log_has("ADOPTED=1"));
}

/* Type=exec: the start job fails when the command cannot be executed (systemd's 203/EXEC). The
 * mock's StartTransientUnit is replaced by one that sends the failed JobRemoved even before its
 * reply (the runtime must not depend on that order). Runs last: the replacement stays. */
static void on_change_broken(Task *t, void *userdata) {
        if (t->state == TASK_STATE_STARTING && !fx.mock_unit_added) {
                fx.mock_unit_added = true;
                mock_add_unit("trainsupd-" TEST_JOB "-broken.service", "failed", "failed", 0, TEST_JOB, "broken");
                mock_exit_unit("trainsupd-" TEST_JOB "-broken.service", CLD_EXITED, 203, "failed", "failed");
        }
}

static void test_unit_mock_start_failed(void **state) {
        static const char * const cmd[] = { "sleep", "1", NULL };

        mock_setup();
        mock_base_reset = mock_n_calls("ResetFailedUnit");
        mock_base_stop = mock_n_calls("StopUnit");
        mock_call(MOCK_PATH, MOCK_IFACE, "AddMethod", "sssss", "org.freedesktop.systemd1.Manager", "StartTransientUnit",
                  "ssa(sv)a(sa(sv))", "o",
                  "self.EmitSignal('org.freedesktop.systemd1.Manager', 'JobRemoved', 'uoss', "
                  "[99, '/org/freedesktop/systemd1/job/99', args[0], 'failed'])\n"
                  "ret = '/org/freedesktop/systemd1/job/99'");
        fx_config(&(TaskSpec) { .name = "broken", .command = cmd });
        const TaskParams p = { .event = fx.event, .config = fx.config, .tc = &fx.config->tasks[0],
                               .state_dir = fx.state_dir, .vt = &runtime_exec_vtable, .on_change = on_change_broken };
        assert_int_equal(task_new(&fx.task, &p), 0);
        assert_int_equal(task_start(fx.task), 0);
        if (!run_until(mock_cleaned_main, 15000))
                fail_msg("no launch failure and cleanup (state %s)", task_state_to_string(fx.task->state));
        assert_int_equal(fx.task->state, TASK_STATE_FAILED);
        assert_false(fx.task->has_exit); /* a launch failure, not an exit */
        assert_false(log_has("EVENT=task-started"));
        assert_true(log_has("EVENT=error TASK=broken"));
        assert_true(log_has("systemd exit status 203/EXEC"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_env_get),
                cmocka_unit_test(test_path_candidates),
                cmocka_unit_test(test_find_executable),
                cmocka_unit_test(test_user_parse),
                cmocka_unit_test(test_parse_stat),
                cmocka_unit_test(test_pid_file_parse),
                cmocka_unit_test(test_exit_from_status),
                cmocka_unit_test(test_unit_name),
                cmocka_unit_test(test_unit_phase),
                cmocka_unit_test(test_unit_setup_failure),
                cmocka_unit_test(test_unit_properties),
                cmocka_unit_test(test_unit_properties_minimal),
                cmocka_unit_test_setup_teardown(test_env_exact, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_workdir, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_workdir_default_root, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_output_and_exit_code, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_death_by_signal, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_command_not_found, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_permission_denied, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_bad_workdir, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_stop_grace_then_kill, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_stop_graceful, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_checkpoint_signal_main_only_stop_whole_group, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_output_flood_does_not_starve, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_stale_pid_file_dead_process, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_stale_pid_file_reused_pid, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_orphan_stopped_before_launch, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_pdeathsig, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_free_kills_child, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_user_switch, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_user_by_name, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_detach_child_mode, fx_setup, fx_teardown),
        };
        const struct CMUnitTest mock_tests[] = {
                cmocka_unit_test_setup_teardown(test_unit_mock_adopt, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_unit_mock_launch, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_unit_mock_start_failed, fx_setup, fx_teardown),
        };
        sigset_t mask;

        /* sd_event_add_child() wants SIGCHLD blocked, as trainsupd's main does. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        if (getenv("TRAINSUPD_TEST_SYSTEMD_MOCK"))
                return cmocka_run_group_tests_name("exec runtime, unit mode (dbusmock)", mock_tests, NULL, NULL);
        return cmocka_run_group_tests_name("exec runtime", tests, NULL, NULL);
}
