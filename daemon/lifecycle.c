/* SPDX-License-Identifier: MIT */
/* The job's life on this VM, from boot to power-off (docs/lifecycle.md):
 *
 *   boot     the completion marker in the store? → power off (on_complete), start nothing
 *   restore  per task: the newest committed snapshot, unless the checkpoint directory here is at
 *            least as new (a reboot of the same VM); the old directory is moved aside
 *   run      start the tasks (TRAINSUPD_RESUMED/TRAINSUPD_SNAPSHOT); every settled checkpoint
 *            is snapshotted in the background (task-sync.c); notices: lifecycle-notice.c
 *   end      every task completed → final snapshots → completion marker → on_complete;
 *            a task failed for good → final snapshots → phase failed → on_failure
 *
 * Store errors at boot and at the end are retried with back-off for as long as it takes: a job
 * is never started on a guess, and never marked complete without its last checkpoint. */
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>

#include "log.h"
#include "manager.h"

#define RETRY_MIN_USEC (2 * USEC_PER_SEC)
#define RETRY_MAX_USEC (120 * USEC_PER_SEC)
#define RESTORE_ATTEMPTS 5U

static void lifecycle_boot(Manager *m);
static void lifecycle_restore_next(Manager *m);
static void lifecycle_final_sync(Manager *m);
static void lifecycle_mark(Manager *m);

/* ---------------------------------------------------------------- retries */

static int lifecycle_on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        switch (m->step) {
        case LIFECYCLE_BOOT:
                lifecycle_boot(m);
                break;
        case LIFECYCLE_RESTORE:
                lifecycle_restore_next(m);
                break;
        case LIFECYCLE_FINAL_SYNC:
                lifecycle_final_sync(m);
                break;
        case LIFECYCLE_MARK:
                lifecycle_mark(m);
                break;
        default:
                break;
        }
        return 0;
}

static usec_t lifecycle_retry_delay(const Manager *m) {
        usec_t d = RETRY_MIN_USEC;

        for (unsigned i = 1; i < m->attempts && d < RETRY_MAX_USEC; i++)
                d *= 2;
        return MIN(d, RETRY_MAX_USEC);
}

/* The current step failed (attempts counts it): run it again later. */
static void lifecycle_retry(Manager *m) {
        usec_t d = lifecycle_retry_delay(m);
        int r;

        if (!m->retry_timer)
                r = sd_event_add_time_relative(m->event, &m->retry_timer, CLOCK_BOOTTIME, d, USEC_PER_SEC,
                                               lifecycle_on_retry, m);
        else {
                r = sd_event_source_set_time_relative(m->retry_timer, d);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->retry_timer, SD_EVENT_ONESHOT);
        }
        if (r < 0)
                log_error_errno(r, "Cannot arm the retry timer: %m");
        else
                log_info("Trying again in %" PRIu64 " s", (uint64_t) (d / USEC_PER_SEC));
}

/* ---------------------------------------------------------------- power */

static void lifecycle_on_powered_off(Logind *l, int result, const char *message, void *userdata) {
        Manager *m = userdata;

        if (result < 0) {
                log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "ACTION", "poweroff" } }),
                               "Powering off failed: %s", strna(message));
                manager_set_phase(m, m->job_failed ? PHASE_FAILED : PHASE_COMPLETED);
                m->powering_off = false;
        }
}

static void lifecycle_power_off(Manager *m, const char *why) {
        int r;

        if (m->powering_off)
                return;
        m->powering_off = true;
        manager_set_phase(m, PHASE_POWERING_OFF);
        if (m->dry_run) {
                log_event_fields(EVENT_POWEROFF, ((const LogField[]) { { "DRY_RUN", "1" } }), "%s, powering off (dry run)",
                                 why);
                return;
        }
        log_event(EVENT_POWEROFF, "%s, powering off", why);
        if (!m->logind) {
                log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "ACTION", "poweroff" } }),
                               "Cannot power off: no connection to logind on the system bus");
                manager_set_phase(m, m->job_failed ? PHASE_FAILED : PHASE_COMPLETED);
                m->powering_off = false;
                return;
        }
        r = logind_power_off(m->logind, lifecycle_on_powered_off, m);
        if (r < 0)
                lifecycle_on_powered_off(m->logind, r, strerror(-r), m);
}

static void lifecycle_end(Manager *m, bool failed) {
        m->step = LIFECYCLE_END;
        m->job_failed = failed;
        if (!failed) {
                manager_set_phase(m, PHASE_COMPLETED);
                if (m->config->on_complete == ON_COMPLETE_POWEROFF)
                        lifecycle_power_off(m, "Job complete");
                return;
        }
        manager_set_phase(m, PHASE_FAILED);
        if (m->config->on_failure == ON_FAILURE_POWEROFF)
                lifecycle_power_off(m, "Job failed (on_failure is poweroff)");
}

/* ---------------------------------------------------------------- boot: the completion marker */

static void lifecycle_on_completion(SnapshotCompletionCheck *c, int error, SnapshotCompletionState state,
                                    const JobCompletion *marker, const char *message, void *userdata) {
        Manager *m = userdata;

        m->completion_check = snapshot_completion_check_free(m->completion_check);
        if (m->step != LIFECYCLE_BOOT)
                return;
        if (error < 0) {
                m->attempts++;
                log_event_prio(LOG_WARNING, EVENT_ERROR, ((const LogField[]) { { "ACTION", "completion-check" } }),
                               "Cannot check the job's completion marker in %s: %s", m->config->storage_url,
                               strna(message));
                return lifecycle_retry(m);
        }
        m->attempts = 0;
        if (state == SNAPSHOT_COMPLETION_PRESENT) {
                log_event(EVENT_COMPLETION_FOUND, "Job %s was completed before (marker in %s); not starting it again",
                          m->config->job_id, m->config->storage_url);
                return lifecycle_end(m, false);
        }
        if (state == SNAPSHOT_COMPLETION_INVALID) {
                log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "ACTION", "completion-check" } }),
                               "The job's completion marker is there but unusable (%s); not starting the job: "
                               "remove the marker to run it again",
                               strna(message));
                m->step = LIFECYCLE_END;
                m->job_failed = true;
                manager_set_phase(m, PHASE_FAILED);
                return;
        }
        m->step = LIFECYCLE_RESTORE;
        m->restore_index = 0;
        manager_set_phase(m, PHASE_RESTORING);
        lifecycle_restore_next(m);
}

static void lifecycle_boot(Manager *m) {
        int r;

        r = snapshot_completion_check_start(m->store, m->config->job_id, lifecycle_on_completion, m,
                                            &m->completion_check);
        if (r < 0)
                lifecycle_on_completion(NULL, r, _SNAPSHOT_COMPLETION_STATE_INVALID, NULL, strerror(-r), m);
}

/* ---------------------------------------------------------------- restore */

typedef struct LocalDirJob {
        Manager *m;
        char *dir;
        bool empty;
        uint64_t newest_ns;     /* mtime of the newest file (ns since the epoch) */
} LocalDirJob;

static _Thread_local LocalDirJob *walking;

static int local_dir_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        uint64_t t;

        if (ftw->level == 0)
                return 0;
        if (ftw->level == 1 && streq(path + ftw->base, TASK_COMMIT_FILE_NAME))
                return 0;
        walking->empty = false;
        if (flag != FTW_F)
                return 0;       /* directories' times change with a restore; files' do not */
        t = (uint64_t) st->st_mtim.tv_sec * UINT64_C(1000000000) + (uint64_t) st->st_mtim.tv_nsec;
        walking->newest_ns = MAX(walking->newest_ns, t);
        return 0;
}

static int local_dir_job(void *arg) {
        LocalDirJob *j = arg;
        int r;

        j->empty = true;
        walking = j;
        r = nftw(j->dir, local_dir_visit, 16, FTW_PHYS);
        walking = NULL;
        if (r < 0)
                return errno == ENOENT ? 0 : -errno;
        return 0;
}

static void lifecycle_restore_done_task(Manager *m) {
        m->attempts = 0;
        m->restore_index++;
        lifecycle_restore_next(m);
}

static void lifecycle_on_restored(SnapshotRestore *rs, int error, const SnapshotSummary *info, const char *message,
                                  void *userdata) {
        Manager *m = userdata;
        const TaskConfig *tc = &m->config->tasks[m->restore_index];
        char bytes[32];

        m->restore = snapshot_restore_free(m->restore);
        if (error < 0) {
                m->attempts++;
                log_event_prio(LOG_ERR, EVENT_RESTORE_FAILED,
                               ((const LogField[]) { { "TASK", tc->name }, { "ERRNO", strerrorname_np(-error) } }),
                               "Restoring task %s failed: %s", tc->name, strna(message));
                if (m->attempts < RESTORE_ATTEMPTS)
                        return lifecycle_retry(m);
                log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "TASK", tc->name } }),
                               "Giving up restoring task %s after %u attempts; not starting the job (its snapshots "
                               "stay in the store)",
                               tc->name, m->attempts);
                m->step = LIFECYCLE_END;
                m->job_failed = true;
                manager_set_phase(m, PHASE_FAILED);
                return;
        }
        (void) snprintf(bytes, sizeof(bytes), "%" PRIu64, info->bytes);
        log_event_fields(EVENT_RESTORE_DONE,
                         ((const LogField[]) { { "TASK", tc->name }, { "SNAPSHOT", info->id }, { "BYTES", bytes } }),
                         "Restored snapshot %s of task %s into %s: %" PRIu64 " files, %" PRIu64 " bytes", info->id,
                         tc->name, tc->checkpoint_dir, info->files, info->bytes);
        (void) task_sync_set_last(m->syncs[m->restore_index], info);
        m->resumed[m->restore_index] = true;
        free(m->resumed_from[m->restore_index]);
        m->resumed_from[m->restore_index] = strdup(info->id);
        lifecycle_restore_done_task(m);
}

static int summary_copy(const SnapshotSummary *from, SnapshotSummary *to) {
        *to = (SnapshotSummary) { .seq = from->seq, .committed_at = from->committed_at, .bytes = from->bytes,
                                  .files = from->files, .newest_mtime_ns = from->newest_mtime_ns };
        memcpy(to->id, from->id, SNAPSHOT_ID_MAX);
        return 0;
}

typedef struct RestoreCheck {
        LocalDirJob job;
        SnapshotSummary newest;
} RestoreCheck;

static void lifecycle_on_local_dir(int result, void *arg) {
        RestoreCheck *rc = arg;
        Manager *m = rc->job.m;
        const TaskConfig *tc = &m->config->tasks[m->restore_index];
        int r;

        /* Restores and snapshots keep files' modification times: a directory whose newest file is
         * at least as new as the snapshot's newest file holds that snapshot or something newer. */
        if (result >= 0 && !rc->job.empty && rc->job.newest_ns >= rc->newest.newest_mtime_ns) {
                log_info("Keeping the checkpoint directory of task %s: it is at least as new as snapshot %s",
                         tc->name, rc->newest.id);
                (void) task_sync_set_last(m->syncs[m->restore_index], &rc->newest);
                goto next;
        }
        log_event_fields(EVENT_RESTORE_BEGIN, ((const LogField[]) { { "TASK", tc->name }, { "SNAPSHOT", rc->newest.id } }),
                         "Restoring task %s from snapshot %s into %s", tc->name, rc->newest.id, tc->checkpoint_dir);
        r = snapshot_restore_start(&(SnapshotRestoreParams) { .store = m->store, .worker = m->worker,
                                                              .job = m->config->job_id, .task = tc->name,
                                                              .dest = tc->checkpoint_dir, .force = true,
                                                              .done = lifecycle_on_restored, .userdata = m },
                                   &m->restore);
        if (r < 0)
                lifecycle_on_restored(NULL, r, NULL, strerror(-r), m);
        snapshot_summary_done(&rc->newest);
        free(rc->job.dir);
        free(rc);
        return;
next:
        snapshot_summary_done(&rc->newest);
        free(rc->job.dir);
        free(rc);
        lifecycle_restore_done_task(m);
}

static void lifecycle_on_listed(SnapshotList *l, int error, const SnapshotSummary *infos, size_t n,
                                char * const *warnings, void *userdata) {
        Manager *m = userdata;
        const TaskConfig *tc = &m->config->tasks[m->restore_index];
        RestoreCheck *rc;
        int r;

        for (size_t i = 0; warnings && warnings[i]; i++)
                log_warning("Task %s: %s", tc->name, warnings[i]);
        if (error < 0) {
                m->restore_list = snapshot_list_free(m->restore_list);
                m->attempts++;
                log_event_prio(LOG_WARNING, EVENT_RESTORE_FAILED, ((const LogField[]) { { "TASK", tc->name } }),
                               "Cannot list the snapshots of task %s in %s: %s", tc->name, m->config->storage_url,
                               strerror(-error));
                return lifecycle_retry(m);
        }
        if (n == 0) {
                m->restore_list = snapshot_list_free(m->restore_list);
                log_info("Task %s has no snapshot yet, starting it fresh", tc->name);
                return lifecycle_restore_done_task(m);
        }
        rc = calloc(1, sizeof(RestoreCheck));
        r = rc ? 0 : -ENOMEM;
        if (r >= 0) {
                rc->job = (LocalDirJob) { .m = m, .dir = strdup(tc->checkpoint_dir) };
                r = rc->job.dir ? summary_copy(&infos[n - 1], &rc->newest) : -ENOMEM;
        }
        m->restore_list = snapshot_list_free(m->restore_list);
        if (r >= 0)
                r = worker_submit(m->worker, local_dir_job, lifecycle_on_local_dir, &rc->job);
        if (r < 0) {
                if (rc) {
                        snapshot_summary_done(&rc->newest);
                        free(rc->job.dir);
                        free(rc);
                }
                m->attempts++;
                log_error_errno(r, "Cannot look at the checkpoint directory of task %s: %m", tc->name);
                return lifecycle_retry(m);
        }
}

static int lifecycle_start_tasks(Manager *m);

static void lifecycle_restore_next(Manager *m) {
        const TaskConfig *tc;
        int r;

        if (m->step != LIFECYCLE_RESTORE)
                return;
        if (m->restore_index >= m->config->n_tasks) {
                m->step = LIFECYCLE_RUN;
                m->attempts = 0;
                (void) lifecycle_start_tasks(m);
                return;
        }
        tc = &m->config->tasks[m->restore_index];
        r = snapshot_list_start(m->store, m->config->job_id, tc->name, lifecycle_on_listed, m, &m->restore_list);
        if (r < 0)
                lifecycle_on_listed(NULL, r, NULL, 0, NULL, m);
}

/* ---------------------------------------------------------------- run */

static void lifecycle_task_changed(Task *t, void *userdata);

static int lifecycle_start_tasks(Manager *m) {
        int r;

        for (size_t i = 0; i < m->config->n_tasks; i++) {
                r = task_sync_start(m->syncs[i]);
                if (r < 0)
                        log_warning_errno(r, "Cannot watch the checkpoint directory of task %s, it is snapshotted "
                                             "only on notices and at the end: %m",
                                          m->config->tasks[i].name);
        }
        for (size_t i = 0; i < m->config->n_tasks; i++) {
                const TaskParams p = {
                        .event = m->event,
                        .glue = m->glue,
                        .config = m->config,
                        .tc = &m->config->tasks[i],
                        .state_dir = m->state_dir,
                        .resumed = m->resumed[i],
                        .snapshot = m->resumed_from[i],
                        .on_change = lifecycle_task_changed,
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
                        log_error_errno(r, "Cannot start task %s: %m", m->config->tasks[i].name);
        }
        lifecycle_take_pending_notice(m);
        return 0;
}

static void lifecycle_task_changed(Task *t, void *userdata) {
        Manager *m = userdata;

        for (size_t i = 0; i < m->config->n_tasks; i++)
                if (m->task_objs[i] == t)
                        lifecycle_on_task_change(m, i);
}

/* ---------------------------------------------------------------- the end */

static bool lifecycle_all_settled(Manager *m, bool *ret_all_completed, bool *ret_any_failed, bool *ret_any_stopped) {
        bool all_completed = true, any_failed = false, any_stopped = false;

        for (size_t i = 0; i < m->config->n_tasks; i++) {
                Task *x = m->task_objs[i];

                if (!x || !task_is_settled(x))
                        return false;
                all_completed = all_completed && x->state == TASK_STATE_COMPLETED;
                any_failed = any_failed || x->state == TASK_STATE_FAILED;
                any_stopped = any_stopped || x->stop_requested;
        }
        *ret_all_completed = all_completed;
        *ret_any_failed = any_failed;
        *ret_any_stopped = any_stopped;
        return true;
}

static void lifecycle_on_final_flush(TaskSync *s, int error, const SnapshotSummary *info, const char *message,
                                     void *userdata) {
        Manager *m = userdata;

        if (error < 0)
                m->final_failed = true;
        if (--m->final_pending > 0)
                return;
        if (m->final_failed) {
                m->attempts++;
                log_warning("The final snapshots are not all committed; the job is not marked %s until they are",
                            m->job_failed ? "failed" : "complete");
                return lifecycle_retry(m);
        }
        m->attempts = 0;
        if (m->job_failed)
                return lifecycle_end(m, true);
        m->step = LIFECYCLE_MARK;
        lifecycle_mark(m);
}

static void lifecycle_final_sync(Manager *m) {
        int r;

        m->final_pending = 1;      /* held while the flushes start */
        m->final_failed = false;
        for (size_t i = 0; i < m->config->n_tasks; i++) {
                m->final_pending++;
                r = task_sync_flush(m->syncs[i], false, false, lifecycle_on_final_flush, m);
                if (r < 0) {
                        m->final_pending--;
                        m->final_failed = true;
                }
        }
        lifecycle_on_final_flush(NULL, 0, NULL, NULL, m);
}

static void lifecycle_on_marked(SnapshotMark *mk, int result, const char *message, void *userdata) {
        Manager *m = userdata;

        m->mark = snapshot_mark_free(m->mark);
        if (result < 0) {
                m->attempts++;
                log_event_prio(LOG_WARNING, EVENT_ERROR, ((const LogField[]) { { "ACTION", "completion-marker" } }),
                               "Cannot write the job's completion marker: %s", strna(message));
                return lifecycle_retry(m);
        }
        log_event(EVENT_COMPLETED, "Job %s completed%s", m->config->job_id,
                  result == 0 ? " (the completion marker was already there)" : "; completion marker written");
        lifecycle_end(m, false);
}

static void lifecycle_mark(Manager *m) {
        _cleanup_free_ const char **last = calloc(m->config->n_tasks, sizeof(char *));
        int r;

        if (!last) {
                m->attempts++;
                return lifecycle_retry(m);
        }
        for (size_t i = 0; i < m->config->n_tasks; i++)
                last[i] = task_sync_last_id(m->syncs[i]);
        r = snapshot_mark_completed_start(&(SnapshotMarkParams) { .store = m->store, .config = m->config,
                                                                  .instance_id = m->writer.instance_id,
                                                                  .boot_id = m->writer.boot_id,
                                                                  .hostname = m->writer.hostname,
                                                                  .last_snapshots = last,
                                                                  .done = lifecycle_on_marked, .userdata = m },
                                          &m->mark);
        if (r < 0)
                lifecycle_on_marked(NULL, r, strerror(-r), m);
}

void lifecycle_on_task_change(Manager *m, size_t task) {
        bool all_completed, any_failed, any_stopped;

        ckpt_round_on_task_change(m->notice_round, task);
        for (size_t i = 0; i < ELEMENTSOF(m->rounds); i++)
                ckpt_round_on_task_change(m->rounds[i], task);
        if (m->exiting) {
                if (manager_tasks_settled(m))
                        (void) sd_event_exit(m->event, 0);
                return;
        }
        if (m->step != LIFECYCLE_RUN || !lifecycle_all_settled(m, &all_completed, &any_failed, &any_stopped))
                return;
        if (!all_completed && !any_failed)
                return;         /* stopped on purpose (notice, trainsupd stop): not an end of the job */
        m->job_failed = !all_completed;
        m->step = LIFECYCLE_FINAL_SYNC;
        m->attempts = 0;
        manager_set_phase(m, PHASE_SYNCING);
        log_info("All tasks %s, making the final snapshots", all_completed ? "completed" : "ended, one failed");
        lifecycle_final_sync(m);
}

/* ---------------------------------------------------------------- setup */

static void lifecycle_sync_changed(TaskSync *s, bool settled, void *userdata) {
        Manager *m = userdata;

        if (!settled)
                return;
        for (size_t i = 0; i < m->config->n_tasks; i++) {
                if (m->syncs[i] != s)
                        continue;
                ckpt_round_on_settled(m->notice_round, i);
                for (size_t k = 0; k < ELEMENTSOF(m->rounds); k++)
                        ckpt_round_on_settled(m->rounds[k], i);
        }
}

static void lifecycle_on_logind_shutdown(Logind *l, void *userdata) {
        lifecycle_on_shutdown(userdata, false);
}

int lifecycle_start(Manager *m) {
        size_t n = m->config->n_tasks;
        int r;

        m->syncs = calloc(n, sizeof(TaskSync *));
        m->resumed = calloc(n, sizeof(bool));
        m->resumed_from = calloc(n, sizeof(char *));
        if (!m->syncs || !m->resumed || !m->resumed_from)
                return -ENOMEM;
        r = worker_new(&m->worker, m->event, 4);
        if (r < 0)
                return log_error_errno(r, "Cannot start the worker threads: %m");
        r = store_new(&m->store, &(StoreParams) { .event = m->event, .glue = m->glue, .worker = m->worker,
                                                  .config = m->config });
        if (r < 0) {
                log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "ACTION", "storage" } }),
                               "Cannot open the store %s: %s; not starting the job", m->config->storage_url,
                               strerror(-r));
                m->step = LIFECYCLE_END;
                m->job_failed = true;
                manager_set_phase(m, PHASE_FAILED);
                return 0;
        }
        for (size_t i = 0; i < n; i++) {
                r = task_sync_new(&m->syncs[i], &(TaskSyncParams) { .event = m->event, .store = m->store,
                                                                    .worker = m->worker, .config = m->config,
                                                                    .tc = &m->config->tasks[i], .writer = &m->writer,
                                                                    .state_dir = m->state_dir, .background = true,
                                                                    .changed = lifecycle_sync_changed,
                                                                    .userdata = m });
                if (r < 0)
                        return log_error_errno(r, "Cannot set up syncing of task %s: %m", m->config->tasks[i].name);
        }
        r = logind_new(&m->logind, &(LogindParams) { .event = m->event, .bus_address = m->bus_address,
                                                     .on_shutdown = lifecycle_on_logind_shutdown, .userdata = m });
        if (r < 0)
                log_info("No system bus (%s): no shutdown inhibitor, and power-off is not possible", strerror(-r));
        m->step = LIFECYCLE_BOOT;
        lifecycle_boot(m);
        return 0;
}

void lifecycle_free(Manager *m) {
        for (size_t i = 0; i < ELEMENTSOF(m->rounds); i++) {
                m->rounds[i] = ckpt_round_free(m->rounds[i]);
                control_ticket_free(m->round_tickets[i]);
                m->round_tickets[i] = NULL;
        }
        m->notice_round = ckpt_round_free(m->notice_round);
        m->completion_check = snapshot_completion_check_free(m->completion_check);
        m->restore_list = snapshot_list_free(m->restore_list);
        m->restore = snapshot_restore_free(m->restore);
        m->mark = snapshot_mark_free(m->mark);
        m->retry_timer = sd_event_source_disable_unref(m->retry_timer);
        for (size_t i = 0; m->syncs && i < m->config->n_tasks; i++)
                task_sync_free(m->syncs[i]);
        m->syncs = mfree(m->syncs);
        for (size_t i = 0; m->resumed_from && i < m->config->n_tasks; i++)
                free(m->resumed_from[i]);
        m->resumed_from = mfree(m->resumed_from);
        m->resumed = mfree(m->resumed);
        m->logind = logind_free(m->logind);
}
