/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>

#include "fs-util.h"
#include "json-util.h"
#include "log.h"
#include "strv.h"
#include "task.h"

#define TASK_STATE_FILE_MAX (64U * 1024U)

/* ---- pure policy */

bool task_exit_is_success(const TaskConfig *tc, const TaskExit *e) {
        if (!e || e->lost || e->signal > 0)
                return false;
        for (size_t i = 0; i < tc->n_success_exit_codes; i++)
                if (tc->success_exit_codes[i] == e->code)
                        return true;
        return false;
}

usec_t task_restart_delay(const TaskConfig *tc, unsigned restarts) {
        usec_t d = (usec_t) tc->restart_backoff_s * USEC_PER_SEC;
        usec_t cap = (usec_t) MAX(tc->restart_backoff_max_s, tc->restart_backoff_s) * USEC_PER_SEC;

        for (unsigned i = 0; i < restarts && d < cap; i++)
                d *= 2;
        return MIN(d, cap);
}

TaskDecision task_decide(const TaskConfig *tc, unsigned restarts, const TaskExit *e, bool stop_requested,
                         usec_t *ret_delay) {
        if (ret_delay)
                *ret_delay = 0;
        /* A task asked to stop may well save and exit 0: that is not the end of the training. */
        if (stop_requested)
                return TASK_DECISION_STOPPED;
        if (task_exit_is_success(tc, e))
                return TASK_DECISION_COMPLETED;
        if (restarts >= tc->restart_max)
                return TASK_DECISION_FAILED;
        if (ret_delay)
                *ret_delay = task_restart_delay(tc, restarts);
        return TASK_DECISION_RESTART;
}

static const char *const task_decision_table[] = {
        [TASK_DECISION_COMPLETED] = "completed",
        [TASK_DECISION_RESTART] = "restart",
        [TASK_DECISION_FAILED] = "failed",
        [TASK_DECISION_STOPPED] = "stopped",
};

static bool env_has(char **env, const char *name) {
        size_t n = strlen(name);

        for (char **e = env; e && *e; e++)
                if (strneq(*e, name, n) && (*e)[n] == '=')
                        return true;
        return false;
}

int task_build_env(const Config *c, const TaskConfig *tc, bool resumed, const char *snapshot, char ***ret) {
        _cleanup_(strv_freep) char **env = NULL;
        bool docker = tc->runtime == TASK_RUNTIME_DOCKER;
        const char *dir = docker ? tc->mount_at : tc->checkpoint_dir;
        int r;

        for (char **e = tc->env; e && *e; e++)
                if (!strneq(*e, "TRAINSUPD_", 10)) {
                        r = strv_extend(&env, *e);
                        if (r < 0)
                                return r;
                }
        if (!docker && !env_has(env, "PATH")) {
                r = strv_extend(&env, "PATH=" TASK_DEFAULT_PATH);
                if (r < 0)
                        return r;
        }
        r = strv_extendf(&env, "TRAINSUPD_JOB_ID=%s", c->job_id);
        if (r >= 0)
                r = strv_extendf(&env, "TRAINSUPD_TASK=%s", tc->name);
        if (r >= 0)
                r = strv_extendf(&env, "TRAINSUPD_CHECKPOINT_DIR=%s", dir);
        if (r >= 0)
                r = strv_extendf(&env, "TRAINSUPD_CHECKPOINT_SIGNAL=%s", signal_to_config_string(c->checkpoint_signal) ?: "none");
        if (r >= 0)
                r = strv_extendf(&env, "TRAINSUPD_COMMIT_FILE=%s%s" TASK_COMMIT_FILE_NAME, dir, streq(dir, "/") ? "" : "/");
        if (r >= 0)
                r = strv_extendf(&env, "TRAINSUPD_RESUMED=%s", resumed ? "1" : "0");
        if (r >= 0 && resumed && snapshot)
                r = strv_extendf(&env, "TRAINSUPD_SNAPSHOT=%s", snapshot);
        if (r < 0)
                return r;
        if (!env) {
                env = calloc(1, sizeof(char *));
                if (!env)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(env);
        return 0;
}

/* ---- the record in the state directory */

static const char *task_record_state(const Task *t) {
        return t->state == TASK_STATE_COMPLETED || t->state == TASK_STATE_FAILED ? task_state_to_string(t->state)
                                                                                : "active";
}

static int task_save(Task *t) {
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
        _cleanup_free_ char *text = NULL;
        int r;

        if (!o)
                return -ENOMEM;
        if (!cJSON_AddNumberToObject(o, "version", 1) || !cJSON_AddStringToObject(o, "job", t->config->job_id) ||
            !cJSON_AddStringToObject(o, "task", t->name) ||
            !cJSON_AddStringToObject(o, "state", task_record_state(t)) ||
            !cJSON_AddNumberToObject(o, "restarts", t->restarts) ||
            !(t->instance ? cJSON_AddStringToObject(o, "instance", t->instance) : cJSON_AddNullToObject(o, "instance")))
                return -ENOMEM;
        if (t->has_exit &&
            (!cJSON_AddStringToObject(o, "exit_recorded_for", strna(t->exit_recorded_for)) ||
             !cJSON_AddNumberToObject(o, "exit_code", t->last_exit.code) ||
             !cJSON_AddNumberToObject(o, "exit_signal", t->last_exit.signal) ||
             !cJSON_AddBoolToObject(o, "lost", t->last_exit.lost)))
                return -ENOMEM;
        text = cJSON_PrintUnformatted(o);
        if (!text)
                return -ENOMEM;
        r = write_file_atomic(t->state_file, text, strlen(text), 0644);
        if (r < 0)
                return log_error_errno(r, "Cannot record task %s in %s: %m", t->name, t->state_file);
        return 0;
}

static int json_get_uint(const cJSON *o, const char *key, unsigned max, unsigned *ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > max || v->valuedouble != (unsigned) v->valuedouble)
                return -EINVAL;
        *ret = (unsigned) v->valuedouble;
        return 0;
}

static int task_load_exit(Task *t, const cJSON *o) {
        const cJSON *who = cJSON_GetObjectItemCaseSensitive(o, "exit_recorded_for");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(o, "exit_code");
        unsigned sig;

        if (!who)
                return 0;
        if (!cJSON_IsString(who) || !cJSON_IsNumber(code) || json_get_uint(o, "exit_signal", 64, &sig) < 0)
                return -EINVAL;
        t->exit_recorded_for = strndup(who->valuestring, 256);
        if (!t->exit_recorded_for)
                return -ENOMEM;
        t->has_exit = true;
        t->last_exit = (TaskExit) { .code = (int) code->valuedouble, .signal = (int) sig,
                                    .lost = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "lost")) };
        return 0;
}

/* Reads the record an earlier daemon left. A missing record is a fresh task; a broken one is
 * reported and ignored (the runtime still finds a running instance by its own means). */
static int task_load(Task *t) {
        _cleanup_(cJSON_Deletep) cJSON *o = NULL;
        _cleanup_free_ char *text = NULL;
        const cJSON *job, *state, *instance;
        size_t len;
        int r;

        r = read_file_bounded(t->state_file, TASK_STATE_FILE_MAX, &text, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return log_warning_errno(r, "Cannot read %s, starting task %s afresh: %m", t->state_file, t->name), 0;
        o = json_parse_exact(text, len);
        job = cJSON_GetObjectItemCaseSensitive(o, "job");
        state = cJSON_GetObjectItemCaseSensitive(o, "state");
        instance = cJSON_GetObjectItemCaseSensitive(o, "instance");
        if (cJSON_IsString(job) && !streq(job->valuestring, t->config->job_id))
                return 0; /* another job's: this one starts afresh */
        if (!cJSON_IsObject(o) || !cJSON_IsString(job) || !cJSON_IsString(state) ||
            json_get_uint(o, "restarts", 1000000, &t->restarts) < 0 || task_load_exit(t, o) < 0) {
                log_warning("%s is not a valid task record, starting task %s afresh", t->state_file, t->name);
                t->restarts = 0;
                t->has_exit = false;
                t->exit_recorded_for = mfree(t->exit_recorded_for);
                return 0;
        }
        if (cJSON_IsString(instance)) {
                t->instance = strndup(instance->valuestring, 256);
                if (!t->instance)
                        return -ENOMEM;
        }
        if (streq(state->valuestring, "completed"))
                t->state = TASK_STATE_COMPLETED;
        else if (streq(state->valuestring, "failed"))
                t->state = TASK_STATE_FAILED;
        return 0;
}

void task_log_error_field(Task *t, const char *key, const char *value, const char *format, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&msg, format, ap);
        va_end(ap);
        if (r < 0)
                return;
        log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "TASK", t->name }, { key ?: "UNUSED", value } }),
                       "Task %s: %s", t->name, msg);
}

/* ---- lifecycle */

static void task_changed(Task *t) {
        if (t->on_change)
                t->on_change(t, t->userdata);
}

static void task_set_state(Task *t, TaskState s) {
        if (t->state == s)
                return;
        t->state = s;
        task_changed(t);
}

static int task_set_instance(Task *t, const char *instance) {
        char *copy = NULL;

        if (instance) {
                copy = strdup(instance);
                if (!copy)
                        return -ENOMEM;
        }
        free(t->instance);
        t->instance = copy;
        return 0;
}

static void task_launch(Task *t) {
        int r;

        task_set_state(t, TASK_STATE_STARTING);
        r = t->vt->launch(t);
        if (r < 0) {
                log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "TASK", t->name } }),
                               "Cannot launch task %s: %s", t->name, strerror(-r));
                task_on_launch_failed(t, r);
        }
}

static int task_on_restart_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Task *t = userdata;

        t->restart_timer = sd_event_source_disable_unref(t->restart_timer);
        if (t->stop_requested || t->shutting_down)
                return 0;
        task_launch(t);
        return 0;
}

static void task_schedule_restart(Task *t, usec_t delay) {
        char n[32], ms[32];
        int r;

        t->restarts++;
        snprintf(n, sizeof(n), "%u", t->restarts);
        snprintf(ms, sizeof(ms), "%llu", (unsigned long long) (delay / USEC_PER_MSEC));
        log_event_fields(EVENT_TASK_RESTART,
                         ((const LogField[]) { { "TASK", t->name }, { "RESTARTS", n }, { "DELAY_MS", ms } }),
                         "Restarting task %s in %s ms (restart %u of %u)", t->name, ms, t->restarts, t->tc->restart_max);
        r = sd_event_add_time_relative(t->event, &t->restart_timer, CLOCK_BOOTTIME, delay, USEC_PER_MSEC,
                                       task_on_restart_timer, t);
        if (r < 0) {
                log_error_errno(r, "Cannot schedule the restart of task %s: %m", t->name);
                task_set_state(t, TASK_STATE_FAILED);
                return;
        }
        (void) sd_event_source_set_description(t->restart_timer, "task-restart");
}

static TaskState task_state_after(TaskDecision d) {
        switch (d) {
        case TASK_DECISION_COMPLETED:
                return TASK_STATE_COMPLETED;
        case TASK_DECISION_FAILED:
                return TASK_STATE_FAILED;
        default:
                return TASK_STATE_EXITED;
        }
}

static void task_log_exit(Task *t, const TaskExit *e, TaskDecision d) {
        static const char *const outcome[] = {
                [TASK_DECISION_COMPLETED] = "completed",
                [TASK_DECISION_RESTART] = "restarting",
                [TASK_DECISION_FAILED] = "failed: no restarts left",
                [TASK_DECISION_STOPPED] = "stopped on request",
        };
        const char *sig = e->signal > 0 ? signal_to_config_string(e->signal) : NULL;
        char code[16], n[16], how[64];

        snprintf(code, sizeof(code), "%d", e->code);
        snprintf(n, sizeof(n), "%u", t->restarts);
        if (e->lost)
                snprintf(how, sizeof(how), "vanished without an exit status");
        else if (e->signal > 0)
                snprintf(how, sizeof(how), "died of %s", sig ?: "a signal");
        else
                snprintf(how, sizeof(how), "exited with code %d", e->code);
        log_event_prio(d == TASK_DECISION_FAILED ? LOG_ERR : d == TASK_DECISION_RESTART ? LOG_WARNING : LOG_NOTICE,
                       EVENT_TASK_EXITED,
                       ((const LogField[]) {
                               { "TASK", t->name },
                               { "EXIT_CODE", e->lost || e->signal > 0 ? NULL : code },
                               { "EXIT_SIGNAL", sig },
                               { "LOST", e->lost ? "1" : NULL },
                               { "DECISION", task_decision_table[d] },
                               { "RESTARTS", n },
                       }),
                       "Task %s %s, %s", t->name, how, outcome[d]);
}

/* The single place where an exit becomes a decision. The record is written before the caller
 * returns to the runtime, which only then removes the instance. */
static void task_apply_exit(Task *t, const TaskExit *e) {
        TaskDecision d;
        usec_t delay;

        d = task_decide(t->tc, t->restarts, e, t->stop_requested || t->shutting_down, &delay);
        t->has_exit = true;
        t->last_exit = *e;
        free(t->exit_recorded_for);
        t->exit_recorded_for = t->instance ? strdup(t->instance) : NULL;
        task_log_exit(t, e, d);
        t->state = task_state_after(d);
        if (d == TASK_DECISION_RESTART)
                task_schedule_restart(t, delay);
        (void) task_save(t);
        task_changed(t);
}

void task_on_exited(Task *t, const TaskExit *e) {
        task_apply_exit(t, e);
}

void task_on_launch_failed(Task *t, int error) {
        TaskDecision d;
        usec_t delay;

        d = task_decide(t->tc, t->restarts, NULL, t->stop_requested || t->shutting_down, &delay);
        (void) task_set_instance(t, NULL);
        t->state = task_state_after(d);
        if (d == TASK_DECISION_FAILED)
                log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "TASK", t->name } }),
                               "Task %s failed: it could not be launched (%s) and has no restarts left", t->name,
                               strerror(-error));
        else if (d == TASK_DECISION_RESTART)
                task_schedule_restart(t, delay);
        (void) task_save(t);
        task_changed(t);
}

void task_on_progress(Task *t, TaskState state) {
        task_set_state(t, state);
}

static void task_log_started(Task *t, bool adopted) {
        const char *pid = t->instance && strneq(t->instance, "pid:", 4) ? t->instance + 4 : NULL;

        log_event_fields(EVENT_TASK_STARTED,
                         ((const LogField[]) {
                                 { "TASK", t->name },
                                 { "RUNTIME", t->vt->name },
                                 { "CONTAINER", pid ? NULL : t->instance },
                                 { "PID", pid },
                                 { "ADOPTED", adopted ? "1" : NULL },
                         }),
                         "Task %s %s (%s)", t->name, adopted ? "adopted, still running" : "started",
                         strna(t->instance));
}

static void task_running(Task *t, const char *instance, bool adopted) {
        if (task_set_instance(t, instance) < 0)
                log_error("Out of memory recording task %s", t->name);
        task_log_started(t, adopted);
        t->state = TASK_STATE_RUNNING;
        (void) task_save(t);
        task_changed(t);
        /* A stop or a shutdown that came while the launch was in flight. */
        if (t->stop_requested && t->vt->stop)
                (void) t->vt->stop(t, (usec_t) t->tc->stop_grace_s * USEC_PER_SEC);
}

void task_on_started(Task *t, const char *instance) {
        task_running(t, instance, false);
}

void task_on_found(Task *t, RuntimeFound found, const char *instance, const TaskExit *e) {
        switch (found) {
        case RUNTIME_FOUND_RUNNING:
                task_running(t, instance, true);
                return;
        case RUNTIME_FOUND_EXITED:
                if (t->has_exit && t->exit_recorded_for && instance && streq(t->exit_recorded_for, instance)) {
                        /* Its exit was recorded before the daemon went away: count it once. */
                        log_debug("Task %s: exit of %s already recorded", t->name, instance);
                        break;
                }
                (void) task_set_instance(t, instance);
                task_apply_exit(t, e);
                return;
        case RUNTIME_FOUND_NOTHING:
        default:
                break;
        }
        if (t->shutting_down || t->stop_requested) {
                task_set_state(t, TASK_STATE_EXITED);
                return;
        }
        task_launch(t);
}

/* ---- public */

int task_start(Task *t) {
        int r;

        t->started = true;
        r = task_load(t);
        if (r < 0)
                return r;
        if (t->state == TASK_STATE_COMPLETED || t->state == TASK_STATE_FAILED) {
                log_info("Task %s already %s in an earlier run (%s); not starting it again", t->name,
                         task_state_to_string(t->state), t->state_file);
                task_changed(t);
                return 0;
        }
        r = t->vt->find(t);
        if (r < 0) {
                log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "TASK", t->name } }),
                               "Cannot look for an earlier instance of task %s: %s", t->name, strerror(-r));
                task_launch(t);
        }
        return 0;
}

int task_signal(Task *t, int sig) {
        if (t->state != TASK_STATE_RUNNING || !t->instance)
                return -ESRCH;
        return t->vt->kill(t, sig);
}

bool task_is_settled(const Task *t) {
        switch (t->state) {
        case TASK_STATE_COMPLETED:
        case TASK_STATE_FAILED:
                return true;
        case TASK_STATE_EXITED:
        case TASK_STATE_PENDING:
                return !t->restart_timer;
        default:
                return false;
        }
}

int task_stop(Task *t) {
        int r;

        t->stop_requested = true;
        t->restart_timer = sd_event_source_disable_unref(t->restart_timer);
        if (t->state != TASK_STATE_RUNNING) {
                /* A launch in flight is stopped once it runs (task_running). */
                if (t->state == TASK_STATE_EXITED)
                        task_changed(t);
                return 0;
        }
        task_set_state(t, TASK_STATE_STOPPING);
        r = t->vt->stop(t, (usec_t) t->tc->stop_grace_s * USEC_PER_SEC);
        if (r < 0)
                log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "TASK", t->name } }),
                               "Cannot stop task %s: %s", t->name, strerror(-r));
        return r;
}

bool task_shutdown(Task *t) {
        t->shutting_down = true;
        t->restart_timer = sd_event_source_disable_unref(t->restart_timer);
        if (!t->started || task_is_settled(t))
                return true;
        if (t->vt->detach(t))
                return true;
        /* A plain child: stop it, also when its launch is still being confirmed (task_running). */
        t->stop_requested = true;
        if (t->state == TASK_STATE_RUNNING)
                (void) task_stop(t);
        return task_is_settled(t);
}

void task_fill_status(const Task *t, TaskStatus *ret) {
        bool show_exit = t->has_exit && (t->state == TASK_STATE_EXITED || t->state == TASK_STATE_FAILED ||
                                         t->state == TASK_STATE_COMPLETED);

        *ret = (TaskStatus) {
                .name = t->name,
                .state = t->state,
                .container = t->state == TASK_STATE_RUNNING || t->state == TASK_STATE_STOPPING ? t->instance : NULL,
                .restarts = t->restarts,
                .has_exit_code = show_exit && !t->last_exit.lost && t->last_exit.signal == 0,
                .exit_code = t->last_exit.code,
                .exit_signal = show_exit ? t->last_exit.signal : 0,
        };
}

static const RuntimeVTable *runtime_for(TaskRuntime r) {
        return r == TASK_RUNTIME_EXEC ? &runtime_exec_vtable : &runtime_docker_vtable;
}

int task_new(Task **ret, const TaskParams *p) {
        _cleanup_(task_freep) Task *t = NULL;
        int r;

        t = calloc(1, sizeof(Task));
        if (!t)
                return -ENOMEM;
        *t = (Task) {
                .event = sd_event_ref(p->event),
                .glue = p->glue,
                .config = p->config,
                .tc = p->tc,
                .name = p->tc->name,
                .vt = p->vt ?: runtime_for(p->tc->runtime),
                .state = TASK_STATE_PENDING,
                .on_change = p->on_change,
                .userdata = p->userdata,
        };
        r = task_build_env(p->config, p->tc, p->resumed, p->snapshot, &t->env);
        if (r < 0)
                return r;
        if (asprintf(&t->task_dir, "%s/tasks/%s", p->state_dir, p->config->job_id) < 0 ||
            asprintf(&t->state_file, "%s/%s.json", t->task_dir, t->name) < 0)
                return -ENOMEM;
        r = mkdir_p(t->task_dir, 0755);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s: %m", t->task_dir);
        r = t->vt->init(t, &t->runtime_data);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

Task *task_free(Task *t) {
        if (!t)
                return NULL;
        sd_event_source_disable_unref(t->restart_timer);
        if (t->runtime_data && t->vt->free)
                t->vt->free(t->runtime_data);
        strv_free(t->env);
        free(t->instance);
        free(t->exit_recorded_for);
        free(t->task_dir);
        free(t->state_file);
        sd_event_unref(t->event);
        return mfree(t);
}
