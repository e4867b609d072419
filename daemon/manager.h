/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "cloud.h"
#include "config.h"
#include "control.h"
#include "curl-glue.h"
#include "status.h"
#include "task.h"

/* The daemon: owns the event loop, the curl glue, the config, the control socket and (as later
 * capabilities arrive) the subsystems. One thread; nothing blocks the loop. */

typedef struct ManagerOptions {
        const char *state_dir;
        const char *control_path;
        const char *dmi_dir;
        bool dry_run;
} ManagerOptions;

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
/* The status object of INTERFACE.md. */
cJSON *manager_status_json(Manager *m);
