/* SPDX-License-Identifier: MIT */
/* One task's checkpoint directory kept in the store (task-sync.h).
 *
 * Runs are numbered. A flush waits for the first run whose number is at least the one it was
 * given: the run in flight when that run started after the directory's last change (it sees
 * what is there now), else the next one. A run that started before the last change is not
 * allowed to commit (may_commit): its files may mix two checkpoints. */
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "task-sync.h"

#define SYNC_RETRY_MIN_USEC (5 * USEC_PER_SEC)
#define SYNC_RETRY_MAX_USEC (300 * USEC_PER_SEC)
#define SYNC_PROGRESS_USEC (10 * USEC_PER_SEC)
#define SYNC_DEFAULT_RATE (20ULL << 20)         /* bytes/s assumed before the first measurement */
#define SYNC_RATE_MIN_BYTES (8ULL << 20)        /* uploads smaller than this do not measure the rate */
#define SYNC_WAITERS_MAX 64U

typedef struct SyncWaiter {
        uint64_t min_run;       /* 0: answer at once with the last commit */
        TaskSyncFlushDone done;
        void *userdata;
} SyncWaiter;

struct TaskSync {
        sd_event *event;
        Store *store;
        Worker *worker;
        const Config *config;
        const TaskConfig *tc;
        const WriterId *writer;
        char *state_dir;
        bool background;
        TaskSyncChanged changed;
        void *userdata;

        CkptWatch *watch;
        uint64_t settles;

        SnapshotCreate *run;
        uint64_t run_seq;               /* number of the run in flight or the last one */
        usec_t run_started;             /* CLOCK_REALTIME */
        usec_t run_started_mono;
        bool run_committed;
        uint64_t plan_bytes, sent_bytes, reported_bytes;
        bool want_run;

        bool has_last;
        SnapshotSummary last;
        usec_t last_started;            /* run_started of the run that committed last; 0: restored/listed */

        uint64_t rate;
        usec_t retry_delay;
        sd_event_source *retry_timer;
        sd_event_source *kick;
        sd_event_source *progress_timer;

        SyncWaiter waiters[SYNC_WAITERS_MAX];
        size_t n_waiters;
};

static void sync_pump(TaskSync *s);

static void sync_changed(TaskSync *s, bool settled) {
        if (s->changed)
                s->changed(s, settled, s->userdata);
}

/* Calls (and removes) the waiters that the run numbered run answers. */
static void sync_answer(TaskSync *s, uint64_t run, int error, const SnapshotSummary *info, const char *message) {
        size_t i = 0;

        while (i < s->n_waiters) {
                SyncWaiter w = s->waiters[i];

                if (w.min_run > run) {
                        i++;
                        continue;
                }
                memmove(&s->waiters[i], &s->waiters[i + 1], (s->n_waiters - i - 1) * sizeof(SyncWaiter));
                s->n_waiters--;
                w.done(s, error, info, message, w.userdata);
        }
}

static bool sync_dir_changed_since(const TaskSync *s, usec_t t) {
        return !s->watch || ckpt_watch_last_change(s->watch) >= t;
}

static void sync_log_committed(TaskSync *s, const SnapshotSummary *info) {
        char seq[32], bytes[32], sent[32];

        (void) snprintf(seq, sizeof(seq), "%" PRIu64, info->seq);
        (void) snprintf(bytes, sizeof(bytes), "%" PRIu64, info->bytes);
        (void) snprintf(sent, sizeof(sent), "%" PRIu64, info->uploaded_bytes);
        log_event_fields(EVENT_SNAPSHOT_COMMITTED,
                         ((const LogField[]) { { "TASK", s->tc->name }, { "SNAPSHOT", info->id }, { "SEQ", seq },
                                               { "BYTES", bytes }, { "SENT_BYTES", sent } }),
                         "Snapshot %s of task %s committed: %" PRIu64 " files, %" PRIu64 " bytes (%" PRIu64
                         " sent) in %.3f s",
                         info->id, s->tc->name, info->files, info->bytes, info->uploaded_bytes,
                         (double) (now_usec(CLOCK_MONOTONIC) - s->run_started_mono) / USEC_PER_SEC);
}

static void sync_set_last(TaskSync *s, const SnapshotSummary *info, usec_t started) {
        snapshot_summary_done(&s->last);
        s->last = (SnapshotSummary) { .seq = info->seq, .committed_at = info->committed_at, .bytes = info->bytes,
                                      .files = info->files, .uploaded_bytes = info->uploaded_bytes,
                                      .uploaded_objects = info->uploaded_objects };
        memcpy(s->last.id, info->id, SNAPSHOT_ID_MAX);
        s->has_last = true;
        s->last_started = started;
}

static void sync_on_committed(SnapshotCreate *c, const SnapshotSummary *info, void *userdata) {
        TaskSync *s = userdata;
        usec_t took = now_usec(CLOCK_MONOTONIC) - s->run_started_mono;

        s->run_committed = true;
        sync_set_last(s, info, s->run_started);
        if (info->uploaded_bytes >= SYNC_RATE_MIN_BYTES && took > 0)
                s->rate = (uint64_t) ((double) info->uploaded_bytes * USEC_PER_SEC / (double) took);
        s->retry_delay = 0;
        sync_log_committed(s, info);
        sync_answer(s, s->run_seq, 0, info, NULL);
        sync_changed(s, false);
}

static bool sync_may_commit(SnapshotCreate *c, void *userdata) {
        TaskSync *s = userdata;

        return !sync_dir_changed_since(s, s->run_started);
}

static void sync_schedule_retry(TaskSync *s) {
        s->retry_delay = s->retry_delay == 0 ? SYNC_RETRY_MIN_USEC : MIN(s->retry_delay * 2, SYNC_RETRY_MAX_USEC);
        if (!s->retry_timer) {
                if (sd_event_add_time_relative(s->event, &s->retry_timer, CLOCK_BOOTTIME, s->retry_delay,
                                               USEC_PER_SEC, NULL, NULL) < 0)
                        return;
        }
        (void) sd_event_source_set_time_relative(s->retry_timer, s->retry_delay);
        (void) sd_event_source_set_enabled(s->retry_timer, SD_EVENT_ONESHOT);
}

static bool sync_retry_pending(const TaskSync *s) {
        int enabled = SD_EVENT_OFF;

        return s->retry_timer && sd_event_source_get_enabled(s->retry_timer, &enabled) >= 0 && enabled != SD_EVENT_OFF;
}

static void sync_on_done(SnapshotCreate *c, int error, const SnapshotSummary *info, const char *message,
                         void *userdata) {
        TaskSync *s = userdata;
        uint64_t run = s->run_seq;
        bool committed = s->run_committed;

        s->run = snapshot_create_free(c);
        (void) sd_event_source_set_enabled(s->progress_timer, SD_EVENT_OFF);
        s->plan_bytes = s->sent_bytes = s->reported_bytes = 0;
        if (error < 0) {
                /* A directory that changed under the run is not a failure of the store: the
                 * settle that follows the change brings the next run. */
                bool stale = error == -ESTALE;

                log_event_prio(stale ? LOG_INFO : LOG_WARNING, EVENT_SNAPSHOT_FAILED,
                               ((const LogField[]) { { "TASK", s->tc->name }, { "ERRNO", strerrorname_np(-error) } }),
                               "Snapshot of task %s failed: %s", s->tc->name, message ?: strerror(-error));
                sync_answer(s, run, error, NULL, message ?: strerror(-error));
                if (!stale && s->background && sync_dir_changed_since(s, s->last_started)) {
                        s->want_run = true;
                        sync_schedule_retry(s);
                }
        } else {
                if (message)
                        log_warning("%s", message);     /* committed; retention had a problem */
                /* Waiters for this run that came after its commit. */
                sync_answer(s, run, 0, &s->last, NULL);
        }
        if (!committed)
                sync_changed(s, false);
        sync_pump(s);
}

static void sync_log_progress(TaskSync *s) {
        char bytes[32], total[32], rate[32];
        usec_t took = now_usec(CLOCK_MONOTONIC) - s->run_started_mono;
        uint64_t bps = took > 0 ? (uint64_t) ((double) s->sent_bytes * USEC_PER_SEC / (double) took) : 0;

        (void) snprintf(bytes, sizeof(bytes), "%" PRIu64, s->sent_bytes);
        (void) snprintf(total, sizeof(total), "%" PRIu64, s->plan_bytes);
        (void) snprintf(rate, sizeof(rate), "%" PRIu64, bps);
        log_event_fields(EVENT_TRANSFER_PROGRESS,
                         ((const LogField[]) { { "TASK", s->tc->name }, { "BYTES", bytes }, { "TOTAL_BYTES", total },
                                               { "RATE_BPS", rate } }),
                         "Task %s: %" PRIu64 " of %" PRIu64 " bytes sent (%.1f MiB/s)", s->tc->name, s->sent_bytes,
                         s->plan_bytes, (double) bps / (1 << 20));
}

static int sync_on_progress_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        TaskSync *s = userdata;

        if (s->run && s->sent_bytes > s->reported_bytes) {
                s->reported_bytes = s->sent_bytes;
                sync_log_progress(s);
        }
        (void) sd_event_source_set_time_relative(src, SYNC_PROGRESS_USEC);
        return sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
}

static void sync_on_progress(const char *phase, uint64_t bytes, void *userdata) {
        TaskSync *s = userdata;

        if (streq(phase, "plan"))
                s->plan_bytes = bytes;
        else if (streq(phase, "upload"))
                s->sent_bytes += bytes;
}

static int sync_start_run(TaskSync *s) {
        int r;

        s->want_run = false;
        s->run_seq++;
        s->run_started = now_usec(CLOCK_REALTIME);
        s->run_started_mono = now_usec(CLOCK_MONOTONIC);
        s->run_committed = false;
        s->plan_bytes = s->sent_bytes = s->reported_bytes = 0;
        r = snapshot_create_start(&(SnapshotCreateParams) {
                                          .store = s->store, .worker = s->worker, .config = s->config, .task = s->tc,
                                          .instance_id = s->writer->instance_id, .boot_id = s->writer->boot_id,
                                          .hostname = s->writer->hostname, .state_dir = s->state_dir,
                                          .progress = sync_on_progress, .committed = sync_on_committed,
                                          .may_commit = sync_may_commit, .done = sync_on_done, .userdata = s },
                                  &s->run);
        if (r < 0) {
                log_event_prio(LOG_WARNING, EVENT_SNAPSHOT_FAILED,
                               ((const LogField[]) { { "TASK", s->tc->name }, { "ERRNO", strerrorname_np(-r) } }),
                               "Cannot start a snapshot of task %s: %s", s->tc->name, strerror(-r));
                sync_answer(s, s->run_seq, r, NULL, "cannot start the snapshot");
                return r;
        }
        if (!s->progress_timer)
                (void) sd_event_add_time_relative(s->event, &s->progress_timer, CLOCK_BOOTTIME, SYNC_PROGRESS_USEC,
                                                  USEC_PER_SEC, sync_on_progress_timer, s);
        else {
                (void) sd_event_source_set_time_relative(s->progress_timer, SYNC_PROGRESS_USEC);
                (void) sd_event_source_set_enabled(s->progress_timer, SD_EVENT_ONESHOT);
        }
        sync_changed(s, false);
        return 0;
}

static void sync_pump(TaskSync *s) {
        if (s->run || !s->want_run || sync_retry_pending(s))
                return;
        (void) sync_start_run(s);
}

static int sync_on_retry(sd_event_source *src, uint64_t usec, void *userdata) {
        TaskSync *s = userdata;

        (void) sd_event_source_set_enabled(src, SD_EVENT_OFF);
        sync_pump(s);
        return 0;
}

/* Flushes that found nothing changed are answered here, outside the call that asked. */
static int sync_on_kick(sd_event_source *src, void *userdata) {
        TaskSync *s = userdata;

        (void) sd_event_source_set_enabled(src, SD_EVENT_OFF);
        if (s->has_last)
                sync_answer(s, 0, 0, &s->last, NULL);
        sync_pump(s);
        return 0;
}

static void sync_on_settled(CkptWatch *w, CkptSettleReason reason, usec_t changed_at, void *userdata) {
        TaskSync *s = userdata;

        s->settles++;
        log_event_fields(EVENT_CHECKPOINT_SETTLED,
                         ((const LogField[]) { { "TASK", s->tc->name },
                                               { "REASON", reason == CKPT_SETTLE_COMMIT_FILE ? "commit-file" : "quiet" } }),
                         "Checkpoint of task %s settled (%s)", s->tc->name,
                         reason == CKPT_SETTLE_COMMIT_FILE ? "the task created the commit file" : "quiet");
        if (s->background) {
                s->want_run = true;
                sync_pump(s);
        }
        sync_changed(s, true);
}

static void sync_on_watch_error(CkptWatch *w, int error, const char *message, void *userdata) {
        TaskSync *s = userdata;

        log_warning("Watching the checkpoint directory of task %s: %s", s->tc->name, message);
}

int task_sync_new(TaskSync **ret, const TaskSyncParams *p) {
        TaskSync *s;
        int r;

        s = calloc(1, sizeof(TaskSync));
        if (!s)
                return -ENOMEM;
        *s = (TaskSync) { .event = sd_event_ref(p->event), .store = p->store, .worker = p->worker,
                          .config = p->config, .tc = p->tc, .writer = p->writer, .background = p->background,
                          .changed = p->changed, .userdata = p->userdata };
        s->state_dir = p->state_dir ? strdup(p->state_dir) : NULL;
        r = p->state_dir && !s->state_dir ? -ENOMEM : 0;
        if (r >= 0)
                r = sd_event_add_defer(s->event, &s->kick, sync_on_kick, s);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->kick, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time_relative(s->event, &s->retry_timer, CLOCK_BOOTTIME, SYNC_RETRY_MIN_USEC,
                                               USEC_PER_SEC, sync_on_retry, s);
        if (r >= 0)
                r = sd_event_source_set_enabled(s->retry_timer, SD_EVENT_OFF);
        if (r < 0) {
                task_sync_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

TaskSync *task_sync_free(TaskSync *s) {
        if (!s)
                return NULL;
        snapshot_create_free(s->run);
        ckpt_watch_free(s->watch);
        sd_event_source_disable_unref(s->retry_timer);
        sd_event_source_disable_unref(s->kick);
        sd_event_source_disable_unref(s->progress_timer);
        snapshot_summary_done(&s->last);
        sd_event_unref(s->event);
        free(s->state_dir);
        return mfree(s);
}

int task_sync_set_last(TaskSync *s, const SnapshotSummary *info) {
        sync_set_last(s, info, 0);
        sync_changed(s, false);
        return 0;
}

int task_sync_start(TaskSync *s) {
        if (s->watch)
                return 0;
        return ckpt_watch_new(&s->watch, &(CkptWatchParams) {
                                                 .event = s->event, .dir = s->tc->checkpoint_dir,
                                                 .settle_usec = (usec_t) s->config->settle_ms * USEC_PER_MSEC,
                                                 .settled = sync_on_settled, .error = sync_on_watch_error,
                                                 .userdata = s });
}

int task_sync_flush(TaskSync *s, bool urgent, bool force, TaskSyncFlushDone done, void *userdata) {
        SyncWaiter w = { .done = done, .userdata = userdata };

        if (s->n_waiters >= SYNC_WAITERS_MAX)
                return -EBUSY;
        if (!force && (!s->run || s->run_committed) && s->has_last && s->watch &&
            !sync_dir_changed_since(s, s->last_started)) {
                /* Nothing new since the last commit started (the run in flight may be past its
                 * commit, in retention): that commit is the answer. */
                w.min_run = 0;
                s->waiters[s->n_waiters++] = w;
                return sd_event_source_set_enabled(s->kick, SD_EVENT_ONESHOT);
        }
        if (s->run && !force && !sync_dir_changed_since(s, s->run_started))
                w.min_run = s->run_seq;         /* the run in flight sees what is there now */
        else {
                w.min_run = s->run_seq + 1;
                s->want_run = true;
                if (urgent && s->run) {
                        log_info("Dropping the snapshot of an older checkpoint of task %s for the newest one",
                                 s->tc->name);
                        s->run = snapshot_create_free(s->run);
                        s->plan_bytes = s->sent_bytes = 0;
                }
                if (urgent)
                        (void) sd_event_source_set_enabled(s->retry_timer, SD_EVENT_OFF);
        }
        s->waiters[s->n_waiters++] = w;
        /* Start from the loop, not from within the call (a failing start answers the waiter). */
        return sd_event_source_set_enabled(s->kick, SD_EVENT_ONESHOT);
}

uint64_t task_sync_mark(TaskSync *s) {
        if (s->watch)
                ckpt_watch_reset(s->watch);
        return s->settles;
}

uint64_t task_sync_settles(const TaskSync *s) {
        return s->settles;
}

bool task_sync_busy(const TaskSync *s) {
        return s->run || s->n_waiters > 0;
}

uint64_t task_sync_current_rate(const TaskSync *s) {
        usec_t took;

        if (!s->run)
                return 0;
        took = now_usec(CLOCK_MONOTONIC) - s->run_started_mono;
        return took > 0 ? (uint64_t) ((double) s->sent_bytes * USEC_PER_SEC / (double) took) : 0;
}

uint64_t task_sync_rate(const TaskSync *s) {
        return s->rate;
}

usec_t task_sync_predict(const TaskSync *s) {
        uint64_t rate = s->rate ?: SYNC_DEFAULT_RATE;
        uint64_t bytes = s->has_last ? s->last.bytes : 0;

        return (usec_t) ((double) bytes * USEC_PER_SEC / (double) rate);
}

const char *task_sync_last_id(const TaskSync *s) {
        return s->has_last ? s->last.id : NULL;
}

void task_sync_fill_status(const TaskSync *s, TaskStatus *st) {
        st->last_snapshot = s->has_last ? (SnapshotInfo) { .id = s->last.id, .seq = s->last.seq,
                                                           .committed_at = s->last.committed_at,
                                                           .bytes = s->last.bytes, .files = s->last.files }
                                        : (SnapshotInfo) {};
        st->pending_bytes = s->run && s->plan_bytes > s->sent_bytes ? s->plan_bytes - s->sent_bytes : 0;
}
