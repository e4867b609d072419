/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "cloud-detect.h"
#include "http.h"
#include "log.h"
#include "manager.h"

int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        control_server_free(m->control);
        cloud_watch_free(m->cloud);
        curl_glue_free(m->glue);
        sd_event_unref(m->event);
        config_free(m->config);
        free(m->tasks);
        free(m->state_dir);
        free(m->control_path);
        return mfree(m);
}

static int manager_on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping.");
        log_event_fields(EVENT_STOPPING, ((const LogField[]) { { "SIGNAL", si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM" } }),
                         "Received %s, stopping", si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        return sd_event_exit(m->event, 0);
}

static int manager_setup_tasks(Manager *m) {
        m->tasks = calloc(m->config->n_tasks, sizeof(TaskStatus));
        if (!m->tasks)
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
                (void) control_client_error(c, CONTROL_ERROR_NOT_AVAILABLE,
                                            "this daemon does not run tasks yet, nothing to %s",
                                            streq(method, CONTROL_METHOD_STOP) ? "stop" : "checkpoint");
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
        return 0;
}

int manager_run(Manager *m) {
        int r;

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return r;
}
