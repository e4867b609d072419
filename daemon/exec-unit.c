/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>

#include "exec-child.h"
#include "exec-unit.h"
#include "log.h"
#include "strv.h"
#include "task.h"

/* The exec runtime's transient unit: the bus traffic (start, watch, adopt, kill, stop, cleanup).
 * Its name and the properties it is started with are built in exec-unit-props.c. */

#define SYSTEMD_SERVICE "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define SYSTEMD_UNIT "org.freedesktop.systemd1.Unit"
#define SYSTEMD_SERVICE_IFACE "org.freedesktop.systemd1.Service"
#define DBUS_PROPERTIES "org.freedesktop.DBus.Properties"

#define UNIT_START_RETRY (1 * USEC_PER_SEC)
#define UNIT_START_RETRY_EXTRA 30U /* attempts on top of stop_grace_s */

typedef enum ExecUnitState {
        EXEC_UNIT_IDLE,     /* nothing of ours is known to be loaded */
        EXEC_UNIT_FINDING,  /* find(): GetUnit, then the first read of its state */
        EXEC_UNIT_STARTING, /* StartTransientUnit sent: waiting for its job, then the first read */
        EXEC_UNIT_RUNNING,  /* started or adopted: watching for the main process's end */
        EXEC_UNIT_CLEANING, /* exit reported: StopUnit, ResetFailedUnit */
} ExecUnitState;

typedef struct UnitProps {
        char *active_state;
        char *sub_state;
        uint32_t main_pid;
        int32_t main_code;
        int32_t main_status;
        bool has_env;
        bool env_ours; /* Environment= names this job and task */
} UnitProps;

struct ExecUnit {
        Task *task;
        sd_bus *bus;
        char *name;
        char *exec_path;
        char *path;             /* the unit's object path, once known */
        char *job;              /* our start job */
        char *early_job;        /* a JobRemoved for our unit seen before the start reply */
        char *early_result;
        char *job_result;       /* a failed start job's result */
        ExecUnitState state;
        bool launch_pending;
        bool launch_failed;
        unsigned start_attempts;
        UnitProps props;
        sd_bus_slot *call;      /* the call in flight of the current step */
        sd_bus_slot *job_match;
        sd_bus_slot *props_match;
        sd_event_source *retry_timer;
};

/* ---- pure helpers */

static bool streq_ptr(const char *a, const char *b) {
        return a && b && streq(a, b);
}

/* ---- unit state from GetAll replies and PropertiesChanged signals */

static void unit_props_done(UnitProps *p) {
        free(p->active_state);
        free(p->sub_state);
        *p = (UnitProps) {};
}

/* Reads a variant of the expected signature into ret; skips one of another type. */
static int read_variant(sd_bus_message *m, const char *sig, void *ret) {
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (type != 'v' || !contents || !streq(contents, sig))
                return sd_bus_message_skip(m, "v");
        return sd_bus_message_read(m, "v", sig, ret);
}

static int read_variant_str(sd_bus_message *m, char **field) {
        const char *s = NULL;
        int r;

        r = read_variant(m, "s", &s);
        if (r < 0 || !s)
                return r;
        return (*field = strdup(s)) ? 0 : -ENOMEM;
}

static int read_env(ExecUnit *u, sd_bus_message *m) {
        _cleanup_strv_free_ char **env = NULL;
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (type != 'v' || !contents || !streq(contents, "as"))
                return sd_bus_message_skip(m, "v");
        r = sd_bus_message_enter_container(m, 'v', "as");
        if (r >= 0)
                r = sd_bus_message_read_strv(m, &env);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        u->props.has_env = true;
        u->props.env_ours = streq_ptr(exec_env_get(env, "TRAINSUPD_JOB_ID"), u->task->config->job_id) &&
                            streq_ptr(exec_env_get(env, "TRAINSUPD_TASK"), u->task->name);
        return 0;
}

static int unit_props_read_one(ExecUnit *u, sd_bus_message *m, const char *key) {
        UnitProps *p = &u->props;

        if (streq(key, "ActiveState")) {
                p->active_state = mfree(p->active_state);
                return read_variant_str(m, &p->active_state);
        }
        if (streq(key, "SubState")) {
                p->sub_state = mfree(p->sub_state);
                return read_variant_str(m, &p->sub_state);
        }
        if (streq(key, "ExecMainPID"))
                return read_variant(m, "u", &p->main_pid);
        if (streq(key, "ExecMainCode"))
                return read_variant(m, "i", &p->main_code);
        if (streq(key, "ExecMainStatus"))
                return read_variant(m, "i", &p->main_status);
        if (streq(key, "Environment"))
                return read_env(u, m);
        return sd_bus_message_skip(m, "v");
}

/* An a{sv} of properties into u->props. */
static int unit_props_read(ExecUnit *u, sd_bus_message *m) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0)
                        r = unit_props_read_one(u, m, key);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

/* ---- logging and reporting */

#define unit_log_error(u, ...) task_log_error_field((u)->task, "UNIT", (u)->name, __VA_ARGS__)

static const char *bus_error_text(const sd_bus_error *e, int r) {
        return e && e->message ? e->message : strerror(r < 0 ? -r : EIO);
}

static void unit_instance(const ExecUnit *u, char buf[static 32]) {
        snprintf(buf, 32, "pid:%u", (unsigned) u->props.main_pid);
}

static void unit_cleanup(ExecUnit *u);
static int unit_start(ExecUnit *u);
static int unit_get_unit(ExecUnit *u);

/* ---- the steps */

static bool unit_is_error(sd_bus_message *m, const sd_bus_error **ret) {
        if (!sd_bus_message_is_method_error(m, NULL))
                return false;
        *ret = sd_bus_message_get_error(m);
        return true;
}

static void unit_log_reply(ExecUnit *u, sd_bus_message *m, const char *method) {
        const sd_bus_error *e;

        if (unit_is_error(m, &e))
                unit_log_error(u, "%s of %s failed: %s", method, u->name, bus_error_text(e, 0));
}

static int unit_on_kill_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        unit_log_reply(userdata, m, "KillUnit");
        return 0;
}

static int unit_on_stop_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        unit_log_reply(userdata, m, "StopUnit");
        return 0;
}

static int unit_on_reply_debug(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e;

        if (unit_is_error(m, &e))
                log_debug("systemd call failed, ignoring: %s", bus_error_text(e, 0));
        return 0;
}

static void unit_forget(ExecUnit *u) {
        u->call = sd_bus_slot_unref(u->call);
        u->props_match = sd_bus_slot_unref(u->props_match);
        u->retry_timer = sd_event_source_disable_unref(u->retry_timer);
        u->path = mfree(u->path);
        u->job = mfree(u->job);
        u->early_job = mfree(u->early_job);
        u->early_result = mfree(u->early_result);
        u->job_result = mfree(u->job_result);
        u->launch_failed = false;
        unit_props_done(&u->props);
}

static void unit_launch_failed(ExecUnit *u, int error) {
        if (u->state == EXEC_UNIT_CLEANING) {
                task_on_launch_failed(u->task, error);
                unit_cleanup(u);
                return;
        }
        unit_forget(u);
        u->state = EXEC_UNIT_IDLE;
        task_on_launch_failed(u->task, error);
}

/* FINDING, first state read done. */
static void unit_found(ExecUnit *u) {
        char instance[32];
        TaskExit e;

        if (u->props.has_env && !u->props.env_ours) {
                unit_log_error(u, "unit %s exists but was not started for job %s; leaving it alone", u->name,
                               u->task->config->job_id);
                unit_forget(u);
                u->state = EXEC_UNIT_IDLE;
                task_on_found(u->task, RUNTIME_FOUND_NOTHING, NULL, NULL);
                return;
        }
        unit_instance(u, instance);
        if (exec_unit_phase(u->props.active_state, u->props.sub_state) == EXEC_UNIT_PHASE_RUNNING) {
                u->state = EXEC_UNIT_RUNNING;
                task_on_found(u->task, RUNTIME_FOUND_RUNNING, instance, NULL);
                return;
        }
        /* Over: report, then remove (a launch() from within the callback waits for that). */
        u->state = EXEC_UNIT_CLEANING;
        if (exec_exit_from_status(u->props.main_code, u->props.main_status, &e))
                task_on_found(u->task, RUNTIME_FOUND_EXITED, instance, &e);
        else
                task_on_found(u->task, RUNTIME_FOUND_NOTHING, NULL, NULL);
        unit_cleanup(u);
}

/* RUNNING: report the end of the main process once it is over. */
static void unit_check_exit(ExecUnit *u) {
        TaskExit e;

        if (exec_unit_phase(u->props.active_state, u->props.sub_state) != EXEC_UNIT_PHASE_OVER)
                return;
        if (!exec_exit_from_status(u->props.main_code, u->props.main_status, &e))
                e = (TaskExit) { .lost = true };
        u->state = EXEC_UNIT_CLEANING;
        task_on_exited(u->task, &e);
        unit_cleanup(u);
}

/* STARTING, the start job failed: say why, from the exit status systemd recorded. */
static void unit_start_failed(ExecUnit *u) {
        const char *what = NULL;
        int error = 0;

        if (u->props.main_code == CLD_EXITED)
                error = exec_unit_setup_failure(u->props.main_status, &what);
        if (error < 0 && u->props.main_status == 203)
                unit_log_error(u, "cannot execute %s (systemd exit status 203/EXEC, see journalctl -u %s)",
                               u->exec_path, u->name);
        else if (error < 0 && u->props.main_status == 200)
                unit_log_error(u, "cannot change to working directory %s", strna(u->task->tc->workdir));
        else if (error < 0 && (u->props.main_status == 216 || u->props.main_status == 217))
                unit_log_error(u, "%s \"%s\"", what, strna(u->task->tc->user));
        else if (error < 0)
                unit_log_error(u, "%s (systemd exit status %d, see journalctl -u %s)", what,
                               (int) u->props.main_status, u->name);
        else
                unit_log_error(u, "systemd could not start unit %s (job %s, see journalctl -u %s)", u->name,
                               strna(u->job_result), u->name);
        u->state = EXEC_UNIT_CLEANING;
        unit_launch_failed(u, error < 0 ? error : -EIO);
}

/* STARTING, the start job is done: execve() succeeded. */
static void unit_started(ExecUnit *u) {
        char instance[32];

        unit_instance(u, instance);
        u->state = EXEC_UNIT_RUNNING;
        task_on_started(u->task, instance);
        if (u->state == EXEC_UNIT_RUNNING)
                unit_check_exit(u); /* it may be over already */
}

static void unit_evaluate(ExecUnit *u) {
        switch (u->state) {
        case EXEC_UNIT_FINDING:
                unit_found(u);
                break;
        case EXEC_UNIT_STARTING:
                if (u->launch_failed)
                        unit_start_failed(u);
                else
                        unit_started(u);
                break;
        case EXEC_UNIT_RUNNING:
                unit_check_exit(u);
                break;
        default:
                break;
        }
}

static int unit_on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ExecUnit *u = userdata;
        const char *iface;
        int r;

        r = sd_bus_message_read(m, "s", &iface);
        if (r >= 0)
                r = unit_props_read(u, m);
        if (r < 0) {
                log_debug_errno(r, "Cannot parse PropertiesChanged of %s, ignoring: %m", u->name);
                return 0;
        }
        /* A read in flight evaluates once it completes. */
        if (!u->call && u->state == EXEC_UNIT_RUNNING)
                unit_evaluate(u);
        return 0;
}

static int unit_on_get_all_service(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ExecUnit *u = userdata;
        const sd_bus_error *e;
        int r;

        u->call = sd_bus_slot_unref(u->call);
        if (unit_is_error(m, &e))
                log_debug("GetAll(Service) of %s failed, ignoring: %s", u->name, bus_error_text(e, 0));
        else if ((r = unit_props_read(u, m)) < 0)
                log_debug_errno(r, "Cannot parse the Service properties of %s, ignoring: %m", u->name);
        unit_evaluate(u);
        return 0;
}

static int unit_on_get_all_unit(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ExecUnit *u = userdata;
        const sd_bus_error *e;
        int r;

        u->call = sd_bus_slot_unref(u->call);
        if (unit_is_error(m, &e))
                log_debug("GetAll(Unit) of %s failed: %s", u->name, bus_error_text(e, 0));
        else if ((r = unit_props_read(u, m)) < 0)
                log_debug_errno(r, "Cannot parse the Unit properties of %s: %m", u->name);
        r = sd_bus_call_method_async(u->bus, &u->call, SYSTEMD_SERVICE, u->path, DBUS_PROPERTIES, "GetAll",
                                     unit_on_get_all_service, u, "s", SYSTEMD_SERVICE_IFACE);
        if (r < 0)
                unit_evaluate(u);
        return 0;
}

/* The unit's object path is known: watch it, then read its whole state once (the watch is in
 * place before the read, so no change falls between them). */
static int unit_watch_and_read(ExecUnit *u) {
        int r;

        r = sd_bus_match_signal_async(u->bus, &u->props_match, SYSTEMD_SERVICE, u->path, DBUS_PROPERTIES,
                                      "PropertiesChanged", unit_on_properties_changed, NULL, u);
        if (r < 0)
                return r;
        return sd_bus_call_method_async(u->bus, &u->call, SYSTEMD_SERVICE, u->path, DBUS_PROPERTIES, "GetAll",
                                        unit_on_get_all_unit, u, "s", SYSTEMD_UNIT);
}

static int unit_on_get_unit(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ExecUnit *u = userdata;
        const sd_bus_error *e;
        const char *path;
        int r;

        u->call = sd_bus_slot_unref(u->call);
        if (unit_is_error(m, &e)) {
                if (u->state == EXEC_UNIT_FINDING) {
                        if (!sd_bus_error_has_name(e, "org.freedesktop.systemd1.NoSuchUnit"))
                                log_warning("Cannot look up unit %s, assuming there is none: %s", u->name,
                                            bus_error_text(e, 0));
                        u->state = EXEC_UNIT_IDLE;
                        task_on_found(u->task, RUNTIME_FOUND_NOTHING, NULL, NULL);
                } else if (u->launch_failed)
                        unit_evaluate(u); /* report what is known */
                else {
                        unit_log_error(u, "unit %s vanished right after it started: %s", u->name, bus_error_text(e, 0));
                        unit_launch_failed(u, -ESRCH);
                }
                return 0;
        }
        r = sd_bus_message_read(m, "o", &path);
        if (r >= 0) {
                u->path = strdup(path);
                r = u->path ? unit_watch_and_read(u) : -ENOMEM;
        }
        if (r < 0) {
                unit_log_error(u, "cannot watch unit %s: %s", u->name, strerror(-r));
                if (u->state == EXEC_UNIT_FINDING) {
                        u->state = EXEC_UNIT_IDLE;
                        task_on_found(u->task, RUNTIME_FOUND_NOTHING, NULL, NULL);
                } else
                        unit_evaluate(u);
        }
        return 0;
}

static int unit_get_unit(ExecUnit *u) {
        return sd_bus_call_method_async(u->bus, &u->call, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER, "GetUnit",
                                        unit_on_get_unit, u, "s", u->name);
}

/* Our start job is over: read the unit's state (launch_failed says whether the job failed). */
static void unit_job_done(ExecUnit *u, const char *result) {
        int r;

        u->job = mfree(u->job);
        if (!streq(result, "done")) {
                u->launch_failed = true;
                u->job_result = strdup(result);
        }
        r = unit_get_unit(u);
        if (r < 0) {
                unit_log_error(u, "cannot look up unit %s: %s", u->name, strerror(-r));
                if (u->launch_failed)
                        unit_evaluate(u);
                else
                        unit_launch_failed(u, r);
        }
}

static int unit_on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ExecUnit *u = userdata;
        const char *job, *unit, *result;
        uint32_t id;
        int r;

        r = sd_bus_message_read(m, "uoss", &id, &job, &unit, &result);
        if (r < 0 || u->state != EXEC_UNIT_STARTING || !streq(unit, u->name))
                return 0;
        if (!u->job) {
                /* Before the start reply (systemd sends the reply first; be safe anyway). */
                free(u->early_job);
                free(u->early_result);
                u->early_job = strdup(job);
                u->early_result = strdup(result);
                return 0;
        }
        if (streq(job, u->job))
                unit_job_done(u, result);
        return 0;
}

static int unit_on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        ExecUnit *u = userdata;
        int r;

        u->retry_timer = sd_event_source_disable_unref(u->retry_timer);
        r = unit_start(u);
        if (r < 0) {
                unit_log_error(u, "cannot start unit %s: %s", u->name, strerror(-r));
                unit_launch_failed(u, r);
        }
        return 0;
}

static bool unit_retry_start(ExecUnit *u) {
        unsigned max = u->task->tc->stop_grace_s + UNIT_START_RETRY_EXTRA;

        if (u->start_attempts >= max)
                return false;
        /* The previous unit of this name is still loaded (being stopped, or failed). */
        (void) sd_bus_call_method_async(u->bus, NULL, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                        "ResetFailedUnit", unit_on_reply_debug, u, "s", u->name);
        return sd_event_add_time_relative(u->task->event, &u->retry_timer, CLOCK_BOOTTIME, UNIT_START_RETRY,
                                          USEC_PER_MSEC, unit_on_retry, u) >= 0;
}

static int unit_on_start_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ExecUnit *u = userdata;
        const sd_bus_error *e;
        const char *job;
        int r;

        u->call = sd_bus_slot_unref(u->call);
        if (unit_is_error(m, &e)) {
                if (sd_bus_error_has_name(e, "org.freedesktop.systemd1.UnitExists") && unit_retry_start(u))
                        return 0;
                unit_log_error(u, "systemd refused to start unit %s: %s", u->name, bus_error_text(e, 0));
                unit_launch_failed(u, -sd_bus_error_get_errno(e));
                return 0;
        }
        r = sd_bus_message_read(m, "o", &job);
        if (r >= 0)
                r = (u->job = strdup(job)) ? 0 : -ENOMEM;
        if (r < 0) {
                unit_log_error(u, "cannot parse the answer to StartTransientUnit: %s", strerror(-r));
                unit_launch_failed(u, r);
                return 0;
        }
        if (u->early_job && streq(u->early_job, u->job))
                unit_job_done(u, strna(u->early_result));
        return 0;
}

static int unit_start(ExecUnit *u) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        const ExecUnitSpec spec = {
                .job = u->task->config->job_id,
                .task = u->task->name,
                .path = u->exec_path,
                .argv = u->task->tc->command,
                .env = u->task->env,
                .workdir = u->task->tc->workdir,
                .user = u->task->tc->user,
                .stop_timeout = (usec_t) u->task->tc->stop_grace_s * USEC_PER_SEC,
        };
        int r;

        u->start_attempts++;
        r = sd_bus_message_new_method_call(u->bus, &m, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                           "StartTransientUnit");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", u->name, "fail");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0)
                r = exec_unit_append_properties(m, &spec);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "a(sa(sv))", 0);
        if (r >= 0)
                r = sd_bus_call_async(u->bus, &u->call, m, unit_on_start_reply, u, 0);
        if (r < 0)
                return r;
        u->state = EXEC_UNIT_STARTING;
        return 0;
}

/* ---- removal */

static void unit_cleaned(ExecUnit *u) {
        int r;

        unit_forget(u);
        u->state = EXEC_UNIT_IDLE;
        if (!u->launch_pending)
                return;
        u->launch_pending = false;
        r = exec_unit_launch(u);
        if (r < 0) {
                unit_log_error(u, "cannot launch: %s", strerror(-r));
                task_on_launch_failed(u->task, r);
        }
}

static int unit_on_reset(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ExecUnit *u = userdata;

        u->call = sd_bus_slot_unref(u->call);
        (void) unit_on_reply_debug(m, userdata, ret_error);
        unit_cleaned(u);
        return 0;
}

static int unit_on_stopped(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ExecUnit *u = userdata;

        u->call = sd_bus_slot_unref(u->call);
        (void) unit_on_reply_debug(m, userdata, ret_error);
        if (sd_bus_call_method_async(u->bus, &u->call, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                     "ResetFailedUnit", unit_on_reset, u, "s", u->name) < 0)
                unit_cleaned(u);
        return 0;
}

/* The exit is recorded: StopUnit ends what is left in the cgroup, ResetFailedUnit drops a failed
 * unit; systemd then garbage-collects it. */
static void unit_cleanup(ExecUnit *u) {
        u->state = EXEC_UNIT_CLEANING;
        u->call = sd_bus_slot_unref(u->call);
        if (sd_bus_call_method_async(u->bus, &u->call, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER, "StopUnit",
                                     unit_on_stopped, u, "ss", u->name, "replace") < 0)
                unit_cleaned(u);
}

/* ---- the runtime operations */

static int unit_on_subscribed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e;

        if (unit_is_error(m, &e))
                log_debug("Subscribe to systemd failed, ignoring: %s", bus_error_text(e, 0));
        return 0;
}

static int unit_bus(ExecUnit *u) {
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (u->bus)
                return 0;
        r = sd_bus_open_system(&bus);
        if (r < 0)
                return log_error_errno(r, "Cannot connect to the system bus for task %s: %m", u->task->name);
        (void) sd_bus_set_description(bus, "trainsupd-exec");
        r = sd_bus_attach_event(bus, u->task->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        r = sd_bus_match_signal_async(bus, &u->job_match, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                      "JobRemoved", unit_on_job_removed, NULL, u);
        if (r < 0)
                return r;
        /* systemd sends unit and job signals only while a client is subscribed. */
        r = sd_bus_call_method_async(bus, NULL, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER, "Subscribe",
                                     unit_on_subscribed, u, NULL);
        if (r < 0)
                return r;
        u->bus = TAKE_PTR(bus);
        return 0;
}

int exec_unit_find(ExecUnit *u) {
        int r;

        if (u->state != EXEC_UNIT_IDLE)
                return -EBUSY;
        r = unit_bus(u);
        if (r < 0)
                return r;
        r = unit_get_unit(u);
        if (r < 0)
                return r;
        u->state = EXEC_UNIT_FINDING;
        return 0;
}

int exec_unit_launch(ExecUnit *u) {
        const char *argv0 = u->task->tc->command ? u->task->tc->command[0] : NULL;
        int r;

        if (u->state == EXEC_UNIT_CLEANING) {
                u->launch_pending = true; /* once the previous unit is gone */
                return 0;
        }
        if (u->state != EXEC_UNIT_IDLE)
                return -EBUSY;
        r = unit_bus(u);
        if (r < 0)
                return r;
        u->exec_path = mfree(u->exec_path);
        r = exec_find_executable(argv0, exec_env_get(u->task->env, "PATH"), &u->exec_path);
        if (r == -ENOENT || r == -EACCES) {
                unit_log_error(u, r == -ENOENT ? "command not found: %s" : "permission denied: %s", strna(argv0));
                task_on_launch_failed(u->task, r);
                return 0;
        }
        if (r < 0)
                return r;
        unit_forget(u);
        u->start_attempts = 0;
        return unit_start(u);
}

int exec_unit_kill(ExecUnit *u, int sig) {
        int r;

        if (u->state != EXEC_UNIT_RUNNING)
                return -ESRCH;
        r = sd_bus_call_method_async(u->bus, NULL, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER, "KillUnit",
                                     unit_on_kill_reply, u, "ssi", u->name, "main", (int32_t) sig);
        return r < 0 ? r : 0;
}

int exec_unit_stop(ExecUnit *u, usec_t grace) {
        /* The unit's TimeoutStopUSec= (stop_grace_s) was set when it was started; systemd sends
         * SIGTERM, then SIGKILL after it. */
        int r;

        if (u->state != EXEC_UNIT_RUNNING)
                return -ESRCH;
        r = sd_bus_call_method_async(u->bus, NULL, SYSTEMD_SERVICE, SYSTEMD_PATH, SYSTEMD_MANAGER, "StopUnit",
                                     unit_on_stop_reply, u, "ss", u->name, "replace");
        return r < 0 ? r : 0;
}

int exec_unit_new(Task *t, ExecUnit **ret) {
        _cleanup_(exec_unit_freep) ExecUnit *u = NULL;
        int r;

        u = calloc(1, sizeof(ExecUnit));
        if (!u)
                return -ENOMEM;
        u->task = t;
        r = exec_unit_name(t->config->job_id, t->name, &u->name);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(u);
        return 0;
}

ExecUnit *exec_unit_free(ExecUnit *u) {
        if (!u)
                return NULL;
        unit_forget(u);
        u->job_match = sd_bus_slot_unref(u->job_match);
        /* No flush: the unit keeps running for the next daemon, nothing is waiting to be sent.
         * Closing drops the floating slots (KillUnit, StopUnit answers) without calling them. */
        sd_bus_close_unref(u->bus);
        free(u->exec_path);
        free(u->name);
        return mfree(u);
}
