/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "time-util.h"

/* The daemon's phases and task states (INTERFACE.md "Status") and the status object built
 * from them: `trainsupd status --json` prints it, `trainsupd status` renders it for people. */

typedef enum Phase {
        PHASE_STARTING,
        PHASE_RESTORING,
        PHASE_RUNNING,
        PHASE_DRAINING,
        PHASE_DRAINED,
        PHASE_SYNCING,
        PHASE_COMPLETED,
        PHASE_FAILED,
        PHASE_POWERING_OFF,
        _PHASE_MAX,
        _PHASE_INVALID = -EINVAL,
} Phase;

typedef enum TaskState {
        TASK_STATE_PENDING,
        TASK_STATE_PULLING,
        TASK_STATE_STARTING,
        TASK_STATE_RUNNING,
        TASK_STATE_STOPPING,
        TASK_STATE_EXITED,
        TASK_STATE_FAILED,
        TASK_STATE_COMPLETED,
        _TASK_STATE_MAX,
        _TASK_STATE_INVALID = -EINVAL,
} TaskState;

const char *phase_to_string(Phase p);
Phase phase_from_string(const char *s);
const char *task_state_to_string(TaskState s);
TaskState task_state_from_string(const char *s);

typedef struct SnapshotInfo {
        const char *id;         /* NULL: no snapshot */
        uint64_t seq;
        usec_t committed_at;    /* CLOCK_REALTIME */
        uint64_t bytes;
        uint64_t files;
} SnapshotInfo;

typedef struct TaskStatus {
        const char *name;
        TaskState state;
        const char *container;  /* container id, "pid:N", or NULL */
        unsigned restarts;
        bool has_exit_code;
        int exit_code;
        int exit_signal;        /* > 0 when the task died of a signal */
        SnapshotInfo last_snapshot;
        uint64_t pending_bytes;
} TaskStatus;

typedef struct NoticeInfo {
        const char *kind;       /* NULL: no notice */
        bool imminent;
        usec_t received_at;     /* CLOCK_REALTIME */
        usec_t deadline;        /* CLOCK_REALTIME, USEC_INFINITY when none */
} NoticeInfo;

typedef struct StatusView {
        const char *job_id;
        const char *provider;
        Phase phase;
        bool dry_run;
        const TaskStatus *tasks;
        size_t n_tasks;
        NoticeInfo notice;
        uint64_t upload_rate_bps;
} StatusView;

/* The status object, version 1. NULL on allocation failure. */
cJSON *status_to_json(const StatusView *v);

/* A short human view of a status object (as returned by status_to_json). */
int status_format_human(const cJSON *status, FILE *f);
