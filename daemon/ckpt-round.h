/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "task-sync.h"
#include "task.h"
#include "time-util.h"

/* One checkpoint round over some of the job's tasks: ask each running task for a checkpoint
 * (checkpoint.signal), wait until its checkpoint settles — no longer than checkpoint.timeout_s,
 * and never so long that the predicted upload would miss the deadline —, snapshot it with
 * priority, then (stop) stop the task gracefully. A task that is not running, or that gets no
 * signal, is snapshotted as its directory is. Used for notices (stop: imminent; no stop:
 * advisory), the system's shutdown, `trainsupd checkpoint` and `trainsupd stop --checkpoint`.
 *
 * Journal, per task and in this order: checkpoint-requested, checkpoint-settled (task-sync.c),
 * snapshot-committed (task-sync.c), task-exited (task.c); deadline-risk when the prediction says
 * the deadline cannot be met. The newest committed snapshot is never touched by a failure. */

#define CKPT_ROUND_MARGIN_USEC (5 * USEC_PER_SEC)

typedef struct CkptRound CkptRound;

/* committed: tasks whose snapshot committed in this round; failed: those whose did not. */
typedef void (*CkptRoundDone)(CkptRound *r, unsigned committed, unsigned failed, void *userdata);

typedef struct CkptRoundParams {
        sd_event *event;
        const Config *config;
        Task **tasks;           /* config->n_tasks entries */
        TaskSync **syncs;
        const char *only;       /* a task name, or NULL for all */
        bool stop;
        usec_t deadline;        /* CLOCK_REALTIME; USEC_INFINITY: none */
        const char *why;        /* for the log: "spot-interruption notice", "trainsupd checkpoint" */
        CkptRoundDone done;
        void *userdata;
} CkptRoundParams;

int ckpt_round_start(const CkptRoundParams *p, CkptRound **ret);
CkptRound *ckpt_round_free(CkptRound *r);
DEFINE_CLEANUP_FUNC(CkptRound *, ckpt_round_free);

/* The manager forwards these: a task's checkpoint settled; a task changed state. */
void ckpt_round_on_settled(CkptRound *r, size_t task);
void ckpt_round_on_task_change(CkptRound *r, size_t task);
/* A second notice while this round runs: stop the tasks too, and/or an earlier deadline. */
void ckpt_round_escalate(CkptRound *r, bool stop, usec_t deadline);
bool ckpt_round_stops(const CkptRound *r);
