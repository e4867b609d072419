/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "cloud-detect.h"
#include "fs-util.h"
#include "http.h"
#include "log.h"
#include "manager.h"

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        control_server_free(m->control);
        for (size_t i = 0; m->task_objs && i < m->config->n_tasks; i++)
                task_free(m->task_objs[i]);
        free(m->task_objs);
        sd_event_source_disable_unref(m->exit_timer);
        cloud_watch_free(m->cloud);
        curl_glue_free(m->glue);
        sd_event_unref(m->event);
        config_free(m->config);
        free(m->tasks);
        free(m->state_dir);
        free(m->control_path);
        return mfree(m);
}

static bool manager_tasks_settled(Manager *m) {
        for (size_t i = 0; i < m->config->n_tasks; i++)
                if (m->task_objs[i] && !task_is_settled(m->task_objs[i]))
                        return false;
        return true;
}

static int manager_on_exit_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        log_warning("Tasks did not end in time, exiting anyway");
        return sd_event_exit(m->event, 0);
}

/* SIGTERM that is not a system shutdown: containers and transient units keep running for the
 * next daemon; plain children cannot outlive the daemon and are stopped first. */
static void manager_begin_exit(Manager *m) {
        unsigned grace = 0;
        bool wait = false;

        m->exiting = true;
        for (size_t i = 0; i < m->config->n_tasks; i++) {
                if (!m->task_objs[i])
                        continue;
                if (!task_shutdown(m->task_objs[i]))
                        wait = true;
                grace = MAX(grace, m->config->tasks[i].stop_grace_s);
        }
        if (!wait) {
                (void) sd_event_exit(m->event, 0);
                return;
        }
        if (sd_event_add_time_relative(m->event, &m->exit_timer, CLOCK_BOOTTIME,
                                       ((usec_t) grace + 10) * USEC_PER_SEC, USEC_PER_SEC, manager_on_exit_timer, m) < 0)
                (void) sd_event_exit(m->event, 0);
}

static int manager_on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        if (m->exiting)
                return 0;
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping.");
        log_event_fields(EVENT_STOPPING, ((const LogField[]) { { "SIGNAL", si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM" } }),
                         "Received %s, stopping", si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        manager_begin_exit(m);
        return 0;
}

/* The job's phase follows its tasks: completed when all completed, failed when all settled and
 * one failed. (Final sync and power-off arrive with the lifecycle.) */
static void manager_on_task_change(Task *t, void *userdata) {
        Manager *m = userdata;
        bool all_completed = true, any_failed = false;

        if (m->exiting) {
                if (manager_tasks_settled(m))
                        (void) sd_event_exit(m->event, 0);
                return;
        }
        for (size_t i = 0; i < m->config->n_tasks; i++) {
                Task *x = m->task_objs[i];

                if (!x || !task_is_settled(x))
                        return;
                all_completed = all_completed && x->state == TASK_STATE_COMPLETED;
                any_failed = any_failed || x->state == TASK_STATE_FAILED;
        }
        if (all_completed && m->phase != PHASE_COMPLETED)
                manager_set_phase(m, PHASE_COMPLETED);
        else if (any_failed && m->phase != PHASE_FAILED)
                manager_set_phase(m, PHASE_FAILED);
}

static int manager_setup_tasks(Manager *m) {
        m->tasks = calloc(m->config->n_tasks, sizeof(TaskStatus));
        m->task_objs = calloc(m->config->n_tasks, sizeof(Task *));
        if (!m->tasks || !m->task_objs)
                return -ENOMEM;
        for (size_t i = 0; i < m->config->n_tasks; i++)
                m->tasks[i] = (TaskStatus) { .name = m->config->tasks[i].name, .state = TASK_STATE_PENDING };
        return 0;
}

int manager_new(Manager **ret, Config *config, const ManagerOptions *opts) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(Manager));
        if (!m)
                return -ENOMEM;
        *m = (Manager) { .config = config, .dry_run = opts->dry_run, .phase = PHASE_STARTING,
                         .started_at = now_usec(CLOCK_REALTIME) };
        m->state_dir = strdup(opts->state_dir);
        m->control_path = strdup(opts->control_path);
        if (!m->state_dir || !m->control_path)
                return -ENOMEM;
        m->provider = cloud_resolve_provider(config->cloud_provider, opts->dmi_dir);
        r = manager_setup_tasks(m);
        if (r < 0)
                return r;

        r = sd_event_default(&m->event);
        if (r < 0)
                return r;
        (void) sd_event_set_watchdog(m->event, true);
        r = sd_event_add_signal(m->event, NULL, SIGTERM, manager_on_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, manager_on_signal, m);
        if (r < 0)
                return r;
        r = curl_glue_new(&m->glue, m->event, http_on_curl_finished);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

void manager_set_phase(Manager *m, Phase p) {
        const char *name = phase_to_string(p);

        m->phase = p;
        (void) sd_notifyf(false, "STATUS=Phase: %s, job %s", name, m->config->job_id);
        log_event_fields(EVENT_PHASE, ((const LogField[]) { { "PHASE", name } }), "Phase %s", name);
}

cJSON *manager_status_json(Manager *m) {
        for (size_t i = 0; i < m->config->n_tasks; i++)
                if (m->task_objs[i])
                        task_fill_status(m->task_objs[i], &m->tasks[i]);

        const NoticeInfo notice = {
                .kind = m->has_notice ? notice_kind_to_string(m->notice.kind) : NULL,
                .imminent = m->notice.imminent,
                .received_at = m->notice.received_at,
                .deadline = m->notice.deadline,
        };
        StatusView v = {
                .job_id = m->config->job_id,
                .provider = cloud_provider_to_string(m->provider),
                .phase = m->phase,
                .dry_run = m->dry_run,
                .tasks = m->tasks,
                .n_tasks = m->config->n_tasks,
                .notice = notice,
        };

        return status_to_json(&v);
}

/* Imminent before advisory, then the earliest deadline, then the newest. */
static bool notice_more_pressing(const Notice *a, const Notice *b) {
        if (a->imminent != b->imminent)
                return a->imminent;
        if (a->deadline != b->deadline)
                return a->deadline < b->deadline;
        return a->received_at > b->received_at;
}

/* Status shows the most pressing visible notice. An imminent notice, once shown, stays (it is
 * why the job is being drained, and the VM is going away) unless another imminent notice is
 * visible; a withdrawn advisory leaves status. */
static void manager_pick_notice(Manager *m) {
        const Notice *best = NULL;

        for (size_t i = 0; i < m->cloud->n_known; i++)
                if (!best || notice_more_pressing(&m->cloud->known[i], best))
                        best = &m->cloud->known[i];

        if (m->has_notice && m->notice.imminent && (!best || !best->imminent))
                return;
        m->has_notice = best;
        if (best)
                m->notice = *best;
}

static void manager_on_notice(CloudWatch *w, const Notice *n, bool gone, void *userdata) {
        Manager *m = userdata;

        /* The lifecycle (checkpoint, upload, stop) hangs off here; for now status shows it. */
        manager_pick_notice(m);
        if (!gone)
                (void) sd_notifyf(false, "STATUS=%s notice from %s (%s)", notice_kind_to_string(n->kind),
                                  cloud_watch_name(w), n->imminent ? "imminent" : "advisory");
}

static int manager_start_cloud(Manager *m) {
        int r;

        if (m->provider == CLOUD_PROVIDER_NONE || m->provider == CLOUD_PROVIDER_AUTO)
                return 0;
        r = cloud_watch_new(&m->cloud, m->provider, m->event, m->glue, m->config->cloud_metadata_url,
                            (usec_t) m->config->cloud_poll_ms * USEC_PER_MSEC, manager_on_notice, m);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the %s metadata watch: %m", cloud_provider_to_string(m->provider));
        r = cloud_watch_start(m->cloud);
        if (r < 0)
                return log_error_errno(r, "Cannot start watching %s metadata: %m", cloud_provider_to_string(m->provider));
        return 0;
}

static bool param_true(const cJSON *parameters, const char *key) {
        return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(parameters, key));
}

static void manager_control_stop(Manager *m, ControlClient *c, const cJSON *parameters) {
        _cleanup_(cJSON_Deletep) cJSON *reply = cJSON_CreateObject();

        if (param_true(parameters, "checkpoint")) {
                (void) control_client_error(c, CONTROL_ERROR_NOT_AVAILABLE,
                                            "stop --checkpoint needs checkpoint snapshots, which this daemon does not make yet");
                return;
        }
        log_info("Stopping the tasks on request");
        for (size_t i = 0; i < m->config->n_tasks; i++)
                if (m->task_objs[i])
                        (void) task_stop(m->task_objs[i]);
        if (!reply || !cJSON_AddBoolToObject(reply, "stopping", true))
                (void) control_client_error(c, CONTROL_ERROR_FAILED, "out of memory");
        else
                (void) control_client_reply(c, reply);
}

/* Sends the checkpoint signal to the tasks (all, or the one named). Snapshots of the result
 * arrive with object storage; --wait needs them and is refused until then. */
static void manager_control_checkpoint(Manager *m, ControlClient *c, const cJSON *parameters) {
        _cleanup_(cJSON_Deletep) cJSON *reply = cJSON_CreateObject();
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(parameters, "task");
        int sig = m->config->checkpoint_signal;
        cJSON *sent;

        if (param_true(parameters, "wait")) {
                (void) control_client_error(c, CONTROL_ERROR_NOT_AVAILABLE,
                                            "checkpoint --wait needs checkpoint snapshots, which this daemon does not make yet");
                return;
        }
        if (cJSON_IsString(name) && !config_find_task(m->config, name->valuestring)) {
                (void) control_client_error(c, CONTROL_ERROR_INVALID_REQUEST, "no task named %s", name->valuestring);
                return;
        }
        if (!reply || !(sent = cJSON_AddArrayToObject(reply, "signalled"))) {
                (void) control_client_error(c, CONTROL_ERROR_FAILED, "out of memory");
                return;
        }
        for (size_t i = 0; i < m->config->n_tasks && sig > 0; i++) {
                Task *t = m->task_objs[i];

                if (!t || (cJSON_IsString(name) && !streq(name->valuestring, t->name)))
                        continue;
                if (task_signal(t, sig) < 0)
                        continue;
                log_event_fields(EVENT_CHECKPOINT_REQUESTED,
                                 ((const LogField[]) { { "TASK", t->name }, { "SIGNAL", signal_to_config_string(sig) } }),
                                 "Asked task %s for a checkpoint (%s)", t->name, signal_to_config_string(sig));
                cJSON_AddItemToArray(sent, cJSON_CreateString(t->name));
        }
        (void) control_client_reply(c, reply);
}

static void manager_on_control(ControlClient *c, const char *method, const cJSON *parameters, void *userdata) {
        Manager *m = userdata;

        if (streq(method, CONTROL_METHOD_STATUS)) {
                _cleanup_(cJSON_Deletep) cJSON *s = manager_status_json(m);

                if (!s)
                        (void) control_client_error(c, CONTROL_ERROR_FAILED, "out of memory");
                else
                        (void) control_client_reply(c, s);
                return;
        }
        if (streq(method, CONTROL_METHOD_CHECKPOINT) || streq(method, CONTROL_METHOD_STOP)) {
                if (!control_client_privileged(c)) {
                        (void) control_client_error(c, CONTROL_ERROR_PERMISSION_DENIED, "%s is allowed to root only",
                                                    method);
                        return;
                }
                if (streq(method, CONTROL_METHOD_STOP))
                        manager_control_stop(m, c, parameters);
                else
                        manager_control_checkpoint(m, c, parameters);
                return;
        }
        (void) control_client_error(c, CONTROL_ERROR_METHOD_NOT_FOUND, "unknown method %s", method);
}

static int manager_make_directories(Manager *m) {
        int r;

        r = mkdir_p(m->state_dir, 0755);
        if (r < 0)
                return log_error_errno(r, "Cannot create state directory %s: %m", m->state_dir);
        for (size_t i = 0; i < m->config->n_tasks; i++) {
                const char *d = m->config->tasks[i].checkpoint_dir;

                r = mkdir_p(d, 0755);
                if (r < 0)
                        return log_error_errno(r, "Cannot create checkpoint directory %s: %m", d);
        }
        return 0;
}

static int manager_bind_control(Manager *m) {
        _cleanup_free_ char *dir = strdup(m->control_path);
        char *slash;
        int r;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = 0;
                r = mkdir_p(dir, 0755);
                if (r < 0)
                        return log_error_errno(r, "Cannot create %s: %m", dir);
        }
        r = control_server_new(&m->control, m->event, m->control_path, manager_on_control, m);
        if (r == -EADDRINUSE)
                return log_error_errno(r, "Another trainsupd answers on %s, refusing to start", m->control_path);
        if (r < 0)
                return log_error_errno(r, "Cannot listen on %s: %m", m->control_path);
        return 0;
}

static int manager_start_tasks(Manager *m) {
        int r;

        for (size_t i = 0; i < m->config->n_tasks; i++) {
                const TaskParams p = {
                        .event = m->event,
                        .glue = m->glue,
                        .config = m->config,
                        .tc = &m->config->tasks[i],
                        .state_dir = m->state_dir,
                        .on_change = manager_on_task_change,
                        .userdata = m,
                };

                r = task_new(&m->task_objs[i], &p);
                if (r < 0)
                        return log_error_errno(r, "Cannot set up task %s: %m", m->config->tasks[i].name);
        }
        manager_set_phase(m, PHASE_RUNNING);
        for (size_t i = 0; i < m->config->n_tasks; i++) {
                r = task_start(m->task_objs[i]);
                if (r < 0)
                        return log_error_errno(r, "Cannot start task %s: %m", m->config->tasks[i].name);
        }
        return 0;
}

int manager_start(Manager *m) {
        const char *provider = cloud_provider_to_string(m->provider);
        int r;

        r = manager_make_directories(m);
        if (r < 0)
                return r;
        r = manager_bind_control(m);
        if (r < 0)
                return r;
        r = manager_start_cloud(m);
        if (r < 0)
                return r;
        log_event_fields(EVENT_STARTED,
                         ((const LogField[]) { { "PROVIDER", provider }, { "DRY_RUN", m->dry_run ? "1" : NULL } }),
                         "trainsupd " PACKAGE_VERSION " started for job %s (%zu task%s, provider %s)",
                         m->config->job_id, m->config->n_tasks, m->config->n_tasks == 1 ? "" : "s", provider);
        (void) sd_notify(false, "READY=1");
        manager_set_phase(m, PHASE_STARTING);
        return manager_start_tasks(m);
}

int manager_run(Manager *m) {
        int r;

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return r;
}
