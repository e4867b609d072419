/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "exec-child.h"
#include "exec-unit.h"

/* The exec runtime's transient unit, its pure part (declared in exec-unit.h, tested without a
 * bus): the unit's name, the properties StartTransientUnit gets, what its state and a systemd
 * exit status mean. The bus traffic is in exec-unit.c. */
#define UNIT_NAME_MAX 255U

static bool unit_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
               c == '_' || c == '.' || c == '-';
}

static int unit_name_append(char *buf, size_t *len, const char *s) {
        for (; *s; s++) {
                if (*len + (unit_char_ok(*s) ? 1 : 4) > UNIT_NAME_MAX)
                        return -ENAMETOOLONG;
                if (unit_char_ok(*s))
                        buf[(*len)++] = *s;
                else
                        *len += (size_t) snprintf(buf + *len, 5, "\\x%02x", (unsigned char) *s);
        }
        return 0;
}

int exec_unit_name(const char *job, const char *task, char **ret) {
        char buf[UNIT_NAME_MAX + 8];
        size_t len = 0;
        int r;

        if (isempty(job) || isempty(task))
                return -EINVAL;
        r = unit_name_append(buf, &len, "trainsupd-");
        if (r >= 0)
                r = unit_name_append(buf, &len, job);
        if (r >= 0)
                r = unit_name_append(buf, &len, "-");
        if (r >= 0)
                r = unit_name_append(buf, &len, task);
        if (r >= 0)
                r = unit_name_append(buf, &len, ".service");
        if (r < 0 || len > UNIT_NAME_MAX)
                return -ENAMETOOLONG;
        buf[len] = 0;
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

static int append_strv_prop(sd_bus_message *m, const char *name, char **l) {
        int r;

        r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", name);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "as");
        if (r >= 0)
                r = sd_bus_message_append_strv(m, l);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_exec_start(sd_bus_message *m, const char *path, char **argv) {
        int r;

        r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "ExecStart");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sasb");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", path);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, argv);
        if (r >= 0)
                r = sd_bus_message_append(m, "b", 0); /* a failure is a failure */
        for (int i = 0; r >= 0 && i < 4; i++)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_log_extra_fields(sd_bus_message *m, const char *job, const char *task) {
        _cleanup_free_ char *f_task = NULL, *f_job = NULL;
        int r;

        if (asprintf(&f_task, "TRAINSUPD_TASK=%s", task) < 0 || asprintf(&f_job, "TRAINSUPD_JOB=%s", job) < 0)
                return -ENOMEM;
        r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "LogExtraFields");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "aay");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "ay");
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', f_task, strlen(f_task));
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', f_job, strlen(f_job));
        for (int i = 0; r >= 0 && i < 3; i++)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_user(sd_bus_message *m, const char *user) {
        char uid[16], gid[16];
        ExecUser u;
        int r;

        if (!user)
                return 0;
        r = exec_user_parse(user, &u);
        if (r < 0)
                return r;
        if (!u.numeric)
                return sd_bus_message_append(m, "(sv)", "User", "s", u.name);
        snprintf(uid, sizeof(uid), "%u", (unsigned) u.uid);
        r = sd_bus_message_append(m, "(sv)", "User", "s", uid);
        if (r >= 0 && u.has_gid) {
                snprintf(gid, sizeof(gid), "%u", (unsigned) u.gid);
                r = sd_bus_message_append(m, "(sv)", "Group", "s", gid);
        }
        return r;
}

int exec_unit_append_properties(sd_bus_message *m, const ExecUnitSpec *s) {
        _cleanup_free_ char *description = NULL;
        int r;

        if (asprintf(&description, "trainsupd task %s (job %s)", s->task, s->job) < 0)
                return -ENOMEM;
        r = sd_bus_message_append(m, "(sv)(sv)", "Description", "s", description, "Type", "s", "exec");
        if (r >= 0)
                r = append_exec_start(m, s->path, s->argv);
        if (r >= 0)
                r = append_strv_prop(m, "Environment", s->env);
        if (r >= 0 && s->workdir)
                r = sd_bus_message_append(m, "(sv)", "WorkingDirectory", "s", s->workdir);
        if (r >= 0)
                r = append_user(m, s->user);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)", "RemainAfterExit", "b", 1, "KillMode", "s",
                                          "control-group", "TimeoutStopUSec", "t", (uint64_t) MAX(s->stop_timeout, 1U),
                                          "SendSIGKILL", "b", 1);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)(sv)(sv)", "StandardOutput", "s", "journal", "StandardError", "s",
                                          "journal", "SyslogIdentifier", "s", s->task);
        if (r >= 0)
                r = append_log_extra_fields(m, s->job, s->task);
        return r;
}

ExecUnitPhase exec_unit_phase(const char *active_state, const char *sub_state) {
        if (!active_state)
                return EXEC_UNIT_PHASE_RUNNING; /* not known yet */
        if (streq(active_state, "failed") || streq(active_state, "inactive"))
                return EXEC_UNIT_PHASE_OVER;
        if (streq(active_state, "active") && sub_state && streq(sub_state, "exited"))
                return EXEC_UNIT_PHASE_OVER;
        /* activating, active (running), deactivating, reloading, ...: not over yet */
        return EXEC_UNIT_PHASE_RUNNING;
}

int exec_unit_setup_failure(int status, const char **ret_what) {
        static const struct {
                int status;
                int error;
                const char *what;
        } table[] = {
                { 200, -ENOENT, "cannot change to the working directory" },
                { 203, -ENOEXEC, "cannot execute the command" },
                { 216, -ESRCH, "unknown group" },
                { 217, -ESRCH, "unknown user" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (table[i].status == status) {
                        *ret_what = table[i].what;
                        return table[i].error;
                }
        if (status >= 200 && status < 256) {
                *ret_what = "systemd could not set up the process";
                return -EIO;
        }
        *ret_what = NULL;
        return 0;
}
