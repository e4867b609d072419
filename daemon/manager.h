/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "ckpt-round.h"
#include "cloud.h"
#include "config.h"
#include "control.h"
#include "curl-glue.h"
#include "logind.h"
#include "snapshot.h"
#include "status.h"
#include "storage.h"
#include "task-sync.h"
#include "task.h"
#include "worker.h"
#include "writer-id.h"

/* The daemon: owns the event loop, the curl glue, the config, the control socket and (as later
 * capabilities arrive) the subsystems. One thread; nothing blocks the loop. */

typedef struct ManagerOptions {
        const char *state_dir;
        const char *control_path;
        const char *dmi_dir;
        bool dry_run;
        const char *bus_address;        /* NULL: the system bus (logind, systemd) */
} ManagerOptions;

/* What the lifecycle (lifecycle.c) is doing; phases are what status shows. */
typedef enum LifecycleStep {
        LIFECYCLE_BOOT,         /* checking the completion marker */
        LIFECYCLE_RESTORE,      /* restoring the tasks' checkpoints */
        LIFECYCLE_RUN,          /* tasks started */
        LIFECYCLE_FINAL_SYNC,   /* all tasks ended: final snapshots */
        LIFECYCLE_MARK,         /* writing the completion marker */
        LIFECYCLE_END,          /* completed or failed: nothing more to do */
} LifecycleStep;

typedef struct Manager {
        sd_event *event;
        CurlGlue *glue;
        Config *config;
        ControlServer *control;
        CloudWatch *cloud;      /* NULL with provider "none" */

        char *state_dir;
        char *control_path;
        bool dry_run;
        CloudProvider provider;

        Notice notice;          /* the most pressing notice now visible, for status */
        bool has_notice;

        Phase phase;
        Store *store;
        Worker *worker;
        WriterId writer;
        Logind *logind;         /* NULL without a system bus */
        TaskSync **syncs;       /* one per config task, after the store opened */
        LifecycleStep step;
        size_t restore_index;   /* the task being restored */
        unsigned attempts;      /* of the current boot/restore/sync/mark step */
        sd_event_source *retry_timer;
        SnapshotCompletionCheck *completion_check;
        SnapshotList *restore_list;
        SnapshotRestore *restore;
        SnapshotMark *mark;
        bool *resumed;          /* per task: a snapshot was restored */
        char **resumed_from;    /* per task: its id */
        bool job_failed;        /* the job ended with a failed task */
        unsigned final_pending; /* final snapshots not answered yet */
        bool final_failed;
        char *bus_address;
        bool powering_off;
        CkptRound *notice_round;        /* the round handling a notice or the shutdown */
        char notice_id[NOTICE_ID_MAX];  /* the notice it handles ("" for the shutdown) */
        Notice pending_notice;  /* seen before the tasks started: handled once they are */
        bool has_pending_notice;
        bool shutdown_seen;     /* PrepareForShutdown, or SIGTERM while the system stops */
        bool exit_after_round;  /* SIGTERM during a shutdown: exit once the round is done */
        CkptRound *rounds[CONTROL_MAX_CLIENTS]; /* trainsupd checkpoint / stop --checkpoint */
        ControlTicket *round_tickets[CONTROL_MAX_CLIENTS];
        Task **task_objs;       /* one per config task */
        TaskStatus *tasks;      /* their status, refreshed for each status answer */
        bool exiting;           /* SIGTERM: waiting for plain children to end */
        sd_event_source *exit_timer;
        usec_t started_at;      /* CLOCK_REALTIME */
} Manager;

/* Takes ownership of config. */
int manager_new(Manager **ret, Config *config, const ManagerOptions *opts);
Manager *manager_free(Manager *m);
DEFINE_CLEANUP_FUNC(Manager *, manager_free);

/* Creates directories, binds the control socket, tells systemd READY=1. */
int manager_start(Manager *m);
/* Runs the loop until an orderly stop; returns the exit status (0). */
int manager_run(Manager *m);

void manager_set_phase(Manager *m, Phase p);
bool manager_tasks_settled(Manager *m);

/* lifecycle.c */
int lifecycle_start(Manager *m);
void lifecycle_free(Manager *m);
void lifecycle_on_task_change(Manager *m, size_t task);
void lifecycle_on_notice(Manager *m, const Notice *n);
void lifecycle_take_pending_notice(Manager *m);
void lifecycle_on_shutdown(Manager *m, bool sigterm);
void lifecycle_control_checkpoint(Manager *m, ControlClient *c, const char *task, bool wait);
void lifecycle_control_stop(Manager *m, ControlClient *c, bool checkpoint);
/* The status object of INTERFACE.md. */
cJSON *manager_status_json(Manager *m);
