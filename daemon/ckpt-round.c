/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>

#include "ckpt-round.h"
#include "log.h"

#define ROUND_FLUSH_ATTEMPTS 3U
/* A snapshot spoiled by the task's own writing (it trains on and saves again while the round
 * uploads: -EBUSY, -ESTALE) is tried again as long as the deadline leaves time, up to this. */
#define ROUND_FLUSH_BUSY_ATTEMPTS 20U

typedef enum RoundTaskState {
        ROUND_TASK_SKIPPED,     /* not part of this round */
        ROUND_TASK_WAIT_SETTLE,
        ROUND_TASK_FLUSHING,
        ROUND_TASK_STOPPING,
        ROUND_TASK_DONE,
} RoundTaskState;

typedef struct RoundTask {
        CkptRound *round;
        size_t index;
        RoundTaskState state;
        uint64_t mark;          /* settles before the request */
        unsigned attempts;
        bool committed;
} RoundTask;

struct CkptRound {
        sd_event *event;
        const Config *config;
        Task **tasks;
        TaskSync **syncs;
        size_t n;
        bool stop;
        usec_t deadline;
        char *why;
        RoundTask *rt;
        sd_event_source *timer;
        sd_event_source *finish;
        bool finished;
        CkptRoundDone done;
        void *userdata;
};

static void round_flush(CkptRound *r, RoundTask *t);

static bool task_running(const Task *t) {
        return t && (t->state == TASK_STATE_RUNNING || t->state == TASK_STATE_STARTING ||
                     t->state == TASK_STATE_PULLING);
}

static void format_usec(char *buf, size_t size, usec_t u) {
        (void) snprintf(buf, size, "%" PRIu64, (uint64_t) u);
}

static void round_check_done(CkptRound *r) {
        if (r->finished)
                return;
        for (size_t i = 0; i < r->n; i++)
                if (r->rt[i].state != ROUND_TASK_SKIPPED && r->rt[i].state != ROUND_TASK_DONE)
                        return;
        r->finished = true;
        (void) sd_event_source_set_enabled(r->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(r->finish, SD_EVENT_ONESHOT);
}

static int round_on_finish(sd_event_source *s, void *userdata) {
        CkptRound *r = userdata;
        unsigned committed = 0, failed = 0;

        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        for (size_t i = 0; i < r->n; i++)
                if (r->rt[i].state == ROUND_TASK_DONE) {
                        committed += r->rt[i].committed;
                        failed += !r->rt[i].committed;
                }
        r->done(r, committed, failed, r->userdata);
        return 0;
}

static void round_task_finish(CkptRound *r, RoundTask *t) {
        Task *task = r->tasks[t->index];

        if (r->stop && task && !task_is_settled(task)) {
                t->state = ROUND_TASK_STOPPING;
                (void) task_stop(task);
                if (!task_is_settled(task))
                        return;
        }
        t->state = ROUND_TASK_DONE;
        round_check_done(r);
}

static void round_on_flushed(TaskSync *s, int error, const SnapshotSummary *info, const char *message, void *userdata) {
        RoundTask *t = userdata;
        CkptRound *r = t->round;
        const TaskConfig *tc = &r->config->tasks[t->index];
        usec_t now = now_usec(CLOCK_REALTIME);

        if (t->state != ROUND_TASK_FLUSHING)
                return;
        if (error >= 0) {
                t->committed = true;
                return round_task_finish(r, t);
        }
        if (t->attempts < (error == -EBUSY || error == -ESTALE ? ROUND_FLUSH_BUSY_ATTEMPTS : ROUND_FLUSH_ATTEMPTS) &&
            (r->deadline == USEC_INFINITY || now + task_sync_predict(s) + CKPT_ROUND_MARGIN_USEC < r->deadline)) {
                log_warning("Snapshot of task %s failed (%s), trying again", tc->name, strna(message));
                return round_flush(r, t);
        }
        log_warning("Giving up on a new snapshot of task %s: the newest committed one (%s) stays", tc->name,
                    strna(task_sync_last_id(s)));
        round_task_finish(r, t);
}

static void round_log_risk(CkptRound *r, const TaskConfig *tc, usec_t predicted_end, const char *what) {
        char deadline[32], predicted[32];

        format_usec(deadline, sizeof(deadline), r->deadline);
        format_usec(predicted, sizeof(predicted), predicted_end);
        log_event_prio(LOG_WARNING, EVENT_DEADLINE_RISK,
                       ((const LogField[]) { { "TASK", tc->name }, { "DEADLINE_USEC", deadline },
                                             { "PREDICTED_USEC", predicted } }),
                       "Task %s: %s; the upload is predicted to end %.1f s %s the deadline", tc->name, what,
                       (double) (predicted_end > r->deadline ? predicted_end - r->deadline
                                                              : r->deadline - predicted_end) / USEC_PER_SEC,
                       predicted_end > r->deadline ? "after" : "before");
}

static void round_flush(CkptRound *r, RoundTask *t) {
        TaskSync *s = r->syncs[t->index];
        const TaskConfig *tc = &r->config->tasks[t->index];
        usec_t end = now_usec(CLOCK_REALTIME) + task_sync_predict(s);
        int e;

        t->state = ROUND_TASK_FLUSHING;
        t->attempts++;
        if (r->deadline != USEC_INFINITY && end > r->deadline)
                round_log_risk(r, tc, end, "the deadline may be missed");
        e = task_sync_flush(s, /* urgent= */ true, /* force= */ false, round_on_flushed, t);
        if (e < 0) {
                log_warning_errno(e, "Cannot snapshot task %s: %m", tc->name);
                round_task_finish(r, t);
        }
}

static int round_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CkptRound *r = userdata;

        for (size_t i = 0; i < r->n; i++)
                if (r->rt[i].state == ROUND_TASK_WAIT_SETTLE) {
                        log_info("No settled checkpoint of task %s in time, snapshotting its newest checkpoint as it is",
                                 r->config->tasks[i].name);
                        round_flush(r, &r->rt[i]);
                }
        return 0;
}

/* How long to wait for the tasks' checkpoints: checkpoint.timeout_s, cut so that the slowest
 * predicted upload still ends a margin before the deadline. */
static usec_t round_wait_until(CkptRound *r) {
        usec_t now = now_usec(CLOCK_REALTIME), until = now + (usec_t) r->config->checkpoint_timeout_s * USEC_PER_SEC;
        usec_t predict = 0;

        if (r->deadline == USEC_INFINITY)
                return until;
        for (size_t i = 0; i < r->n; i++)
                if (r->rt[i].state == ROUND_TASK_WAIT_SETTLE)
                        predict = MAX(predict, task_sync_predict(r->syncs[i]));
        if (r->deadline > predict + CKPT_ROUND_MARGIN_USEC)
                until = MIN(until, r->deadline - predict - CKPT_ROUND_MARGIN_USEC);
        else
                until = now;
        return MAX(until, now);
}

static int round_arm(CkptRound *r) {
        usec_t now = now_usec(CLOCK_REALTIME), until = round_wait_until(r);
        bool waiting = false;
        int e;

        for (size_t i = 0; i < r->n; i++)
                waiting = waiting || r->rt[i].state == ROUND_TASK_WAIT_SETTLE;
        if (!waiting)
                return 0;
        if (until <= now)
                for (size_t i = 0; i < r->n; i++)
                        if (r->rt[i].state == ROUND_TASK_WAIT_SETTLE)
                                round_log_risk(r, &r->config->tasks[i], now + task_sync_predict(r->syncs[i]),
                                               "no time to wait for a new checkpoint");
        if (!r->timer) {
                e = sd_event_add_time_relative(r->event, &r->timer, CLOCK_BOOTTIME, until - now, 10 * USEC_PER_MSEC,
                                               round_on_timer, r);
                return e;
        }
        e = sd_event_source_set_time_relative(r->timer, until - now);
        if (e >= 0)
                e = sd_event_source_set_enabled(r->timer, SD_EVENT_ONESHOT);
        return e;
}

static void round_request(CkptRound *r, RoundTask *t) {
        Task *task = r->tasks[t->index];
        const TaskConfig *tc = &r->config->tasks[t->index];
        int sig = r->config->checkpoint_signal;

        t->mark = task_sync_mark(r->syncs[t->index]);
        if (sig > 0 && task_running(task) && task_signal(task, sig) >= 0) {
                log_event_fields(EVENT_CHECKPOINT_REQUESTED,
                                 ((const LogField[]) { { "TASK", tc->name }, { "SIGNAL", signal_to_config_string(sig) } }),
                                 "Asked task %s for a checkpoint (%s) for %s", tc->name, signal_to_config_string(sig),
                                 r->why);
                t->state = ROUND_TASK_WAIT_SETTLE;
                return;
        }
        log_info("Task %s %s: snapshotting its checkpoint directory as it is", tc->name,
                 sig <= 0 ? "gets no checkpoint signal" : "is not running");
        round_flush(r, t);
}

int ckpt_round_start(const CkptRoundParams *p, CkptRound **ret) {
        _cleanup_(ckpt_round_freep) CkptRound *r = NULL;
        int e;

        r = calloc(1, sizeof(CkptRound));
        if (!r)
                return -ENOMEM;
        *r = (CkptRound) { .event = sd_event_ref(p->event), .config = p->config, .tasks = p->tasks,
                           .syncs = p->syncs, .n = p->config->n_tasks, .stop = p->stop, .deadline = p->deadline,
                           .done = p->done, .userdata = p->userdata };
        r->why = strdup(p->why ?: "a checkpoint request");
        r->rt = calloc(r->n, sizeof(RoundTask));
        if (!r->why || !r->rt)
                return -ENOMEM;
        e = sd_event_add_defer(r->event, &r->finish, round_on_finish, r);
        if (e < 0)
                return e;
        (void) sd_event_source_set_enabled(r->finish, SD_EVENT_OFF);
        for (size_t i = 0; i < r->n; i++) {
                bool in = !p->only || streq(p->only, r->config->tasks[i].name);

                r->rt[i] = (RoundTask) { .round = r, .index = i,
                                         .state = in && r->syncs[i] ? ROUND_TASK_FLUSHING : ROUND_TASK_SKIPPED };
        }
        for (size_t i = 0; i < r->n; i++)
                if (r->rt[i].state != ROUND_TASK_SKIPPED)
                        round_request(r, &r->rt[i]);
        e = round_arm(r);
        if (e < 0)
                return e;
        round_check_done(r);
        *ret = TAKE_PTR(r);
        return 0;
}

CkptRound *ckpt_round_free(CkptRound *r) {
        if (!r)
                return NULL;
        sd_event_source_disable_unref(r->timer);
        sd_event_source_disable_unref(r->finish);
        sd_event_unref(r->event);
        free(r->why);
        free(r->rt);
        return mfree(r);
}

void ckpt_round_on_settled(CkptRound *r, size_t task) {
        RoundTask *t;

        if (!r || task >= r->n)
                return;
        t = &r->rt[task];
        if (t->state == ROUND_TASK_WAIT_SETTLE && task_sync_settles(r->syncs[task]) > t->mark)
                round_flush(r, t);
}

void ckpt_round_on_task_change(CkptRound *r, size_t task) {
        RoundTask *t;
        Task *x;

        if (!r || task >= r->n)
                return;
        t = &r->rt[task];
        x = r->tasks[task];
        if (t->state == ROUND_TASK_WAIT_SETTLE && !task_running(x)) {
                log_info("Task %s ended before its checkpoint settled, snapshotting what it left",
                         r->config->tasks[task].name);
                round_flush(r, t);
        } else if (t->state == ROUND_TASK_STOPPING && (!x || task_is_settled(x))) {
                t->state = ROUND_TASK_DONE;
                round_check_done(r);
        }
}

void ckpt_round_escalate(CkptRound *r, bool stop, usec_t deadline) {
        if (!r)
                return;
        if (deadline < r->deadline) {
                r->deadline = deadline;
                (void) round_arm(r);
        }
        if (!stop || r->stop)
                return;
        r->stop = true;
        if (r->finished)
                return;
        for (size_t i = 0; i < r->n; i++)
                if (r->rt[i].state == ROUND_TASK_DONE) {
                        r->finished = false;
                        round_task_finish(r, &r->rt[i]);
                }
}

bool ckpt_round_stops(const CkptRound *r) {
        return r && r->stop;
}
