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
        lifecycle_free(m);
        for (size_t i = 0; m->task_objs && i < m->config->n_tasks; i++)
                task_free(m->task_objs[i]);
        free(m->task_objs);
        /* Work still in flight (a cancelled snapshot's worker jobs) ends before the store goes. */
        worker_free(m->worker);
        store_free(m->store);
        writer_id_done(&m->writer);
        free(m->bus_address);
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

bool manager_tasks_settled(Manager *m) {
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

        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping.");
        m->exiting = true;
        for (size_t i = 0; m->task_objs && i < m->config->n_tasks; i++) {
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

static void manager_on_system_state(Logind *l, int error, const char *state, void *userdata) {
        Manager *m = userdata;

        if (error >= 0 && state && streq(state, "stopping")) {
                lifecycle_on_shutdown(m, true);
                return;
        }
        manager_begin_exit(m);
}

static int manager_on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        const char *name = si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";

        if (m->exiting || m->exit_after_round)
                return 0;
        log_event_fields(EVENT_STOPPING, ((const LogField[]) { { "SIGNAL", name } }), "Received %s, stopping", name);
        /* SIGTERM during a system shutdown is a last-chance notice; otherwise (restart, upgrade)
         * the tasks are left running for the next daemon. */
        if (si->ssi_signo == SIGTERM && m->shutdown_seen) {
                lifecycle_on_shutdown(m, true);
                return 0;
        }
        if (si->ssi_signo == SIGTERM && m->logind && logind_system_state(m->logind, manager_on_system_state, m) >= 0)
                return 0;
        manager_begin_exit(m);
        return 0;
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
        m->bus_address = opts->bus_address ? strdup(opts->bus_address) : NULL;
        if (!m->state_dir || !m->control_path || (opts->bus_address && !m->bus_address))
                return -ENOMEM;
        r = writer_id_read(opts->dmi_dir, &m->writer);
        if (r < 0)
                return r;
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
        uint64_t rate = 0;

        for (size_t i = 0; i < m->config->n_tasks; i++) {
                if (m->task_objs && m->task_objs[i])
                        task_fill_status(m->task_objs[i], &m->tasks[i]);
                if (m->syncs && m->syncs[i]) {
                        task_sync_fill_status(m->syncs[i], &m->tasks[i]);
                        rate += task_sync_current_rate(m->syncs[i]);
                }
        }

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
                .upload_rate_bps = rate,
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

        if (!m->shutdown_seen)
                manager_pick_notice(m);
        if (gone)
                return;
        (void) sd_notifyf(false, "STATUS=%s notice from %s (%s)", notice_kind_to_string(n->kind), cloud_watch_name(w),
                          n->imminent ? "imminent" : "advisory");
        lifecycle_on_notice(m, n);
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
        lifecycle_control_stop(m, c, param_true(parameters, "checkpoint"));
}

/* trainsupd checkpoint [--task NAME] [--wait]: a checkpoint round (lifecycle-notice.c). */
static void manager_control_checkpoint(Manager *m, ControlClient *c, const cJSON *parameters) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(parameters, "task");

        if (name && !cJSON_IsString(name)) {
                (void) control_client_error(c, CONTROL_ERROR_INVALID_REQUEST, "task must be a string");
                return;
        }
        if (cJSON_IsString(name) && !config_find_task(m->config, name->valuestring)) {
                (void) control_client_error(c, CONTROL_ERROR_INVALID_REQUEST, "no task named %s", name->valuestring);
                return;
        }
        lifecycle_control_checkpoint(m, c, cJSON_IsString(name) ? name->valuestring : NULL,
                                     param_true(parameters, "wait"));
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
        return lifecycle_start(m);
}

int manager_run(Manager *m) {
        int r;

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return r;
}
