/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "ckpt-watch.h"
#include "config.h"
#include "snapshot.h"
#include "status.h"
#include "storage.h"
#include "worker.h"
#include "writer-id.h"

/* Keeps one task's checkpoint directory synced to the store: every settled checkpoint
 * (ckpt-watch.c) becomes a snapshot in the background, one at a time, newest first (a settle
 * while a snapshot runs means one more run after it, which takes whatever is newest then; the
 * checkpoints in between are never sent). A failed background run is retried with back-off while
 * the directory has unsent changes.
 *
 * task_sync_flush() asks for a snapshot of what is in the directory now and says when it is
 * committed; "urgent" (a notice) cancels a run that started before the call instead of waiting
 * for it. Journal: checkpoint-settled, snapshot-committed, snapshot-failed, transfer-progress. */

typedef struct TaskSync TaskSync;

/* info: the committed snapshot (valid during the call), NULL on error; message names the problem. */
typedef void (*TaskSyncFlushDone)(TaskSync *s, int error, const SnapshotSummary *info, const char *message,
                                  void *userdata);
/* Something status shows changed, or a checkpoint settled (settled = true). */
typedef void (*TaskSyncChanged)(TaskSync *s, bool settled, void *userdata);

typedef struct TaskSyncParams {
        sd_event *event;
        Store *store;
        Worker *worker;
        const Config *config;
        const TaskConfig *tc;
        const WriterId *writer;
        const char *state_dir;
        bool background;        /* snapshot every settled checkpoint (else only on flush) */
        TaskSyncChanged changed;        /* optional */
        void *userdata;
} TaskSyncParams;

int task_sync_new(TaskSync **ret, const TaskSyncParams *p);
TaskSync *task_sync_free(TaskSync *s);
DEFINE_CLEANUP_FUNC(TaskSync *, task_sync_free);

/* The last committed snapshot is known from elsewhere (restore on boot, or the store's list). */
int task_sync_set_last(TaskSync *s, const SnapshotSummary *info);

/* Starts watching the checkpoint directory (after a restore put it in place). */
int task_sync_start(TaskSync *s);

/* A snapshot of the directory as it is from now on: done is called once one that started after
 * this call has committed (or failed). When the directory has not changed since the last commit
 * started, done reports that commit (no new snapshot), unless force. Never calls done from
 * within the call. */
int task_sync_flush(TaskSync *s, bool urgent, bool force, TaskSyncFlushDone done, void *userdata);

/* Counts settles from now on (a checkpoint was just requested); returns the settle count now. */
uint64_t task_sync_mark(TaskSync *s);
/* Settled checkpoints reported since start. */
uint64_t task_sync_settles(const TaskSync *s);

bool task_sync_busy(const TaskSync *s);
/* Bytes per second of the run in flight so far (0: none). */
uint64_t task_sync_current_rate(const TaskSync *s);
/* Bytes per second of the last runs' uploads (0: not measured yet). */
uint64_t task_sync_rate(const TaskSync *s);
/* Seconds a snapshot of the directory is expected to take to upload, from its last size and
 * the measured rate (a default rate before the first measurement). */
usec_t task_sync_predict(const TaskSync *s);
void task_sync_fill_status(const TaskSync *s, TaskStatus *st);
const char *task_sync_last_id(const TaskSync *s);
