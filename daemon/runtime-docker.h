/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "docker-api.h"
#include "docker-logs.h"
#include "http.h"
#include "log.h"
#include "runtime.h"
#include "task-output.h"
#include "time-util.h"

/* INTERNAL to the docker runtime: shared by runtime-docker.c (the vtable, find and launch: image
 * check, pull, create, start, name conflicts, removal) and runtime-docker-watch.c (watching a
 * running container: output, wait, inspect after the exit, retries, kill, stop). Nothing else
 * includes it; the rest of the daemon knows only runtime_docker_vtable (runtime.h). */

#define DOCKER_REQUEST_TIMEOUT_USEC (60 * USEC_PER_SEC)
#define DOCKER_RETRY_MIN_USEC (500 * USEC_PER_MSEC)
#define DOCKER_INIT_CHECK_BYTES DOCKER_MESSAGE_MAX /* the init complains first, before any output */

typedef struct DockerRuntime DockerRuntime;

/* A request nobody waits for (kill, stop, removal of extra containers): owned by a list. */
typedef enum DockerAuxKind {
        DOCKER_AUX_KILL,
        DOCKER_AUX_STOP,
        DOCKER_AUX_REMOVE,
} DockerAuxKind;

typedef struct DockerAux {
        DockerRuntime *d;
        HttpRequest *req;
        DockerAuxKind kind;
        char what[64];
        struct DockerAux *next;
} DockerAux;

struct DockerRuntime {
        Task *t;

        /* find/launch: one step at a time */
        HttpRequest *op;
        bool conflict_mode;     /* find() logic after a name conflict at create */
        unsigned conflicts;     /* consecutive name conflicts without a successful create */
        char *launch_id;        /* the container being created/started */
        DockerPull pull;
        usec_t pull_last_log;

        /* the removal a launch waits for */
        HttpRequest *removal;
        bool removal_due;       /* an exit is being reported; the removal follows */
        bool launch_pending;

        /* the container watched */
        char *id;
        bool watching;
        bool exiting;           /* the exit is known, waiting for the output to drain */
        TaskExit exit;
        uint64_t since;         /* unix seconds: the output is asked for from here on */
        HttpRequest *logs;
        bool logs_final;        /* the logs request is the read after the exit (no follow) */
        HttpRequest *wait;
        HttpRequest *inspect;
        usec_t wait_started;    /* CLOCK_BOOTTIME */
        unsigned wait_failures;
        unsigned logs_failures;
        bool engine_lost;       /* a record said so; the next success says it is back */
        bool need_inspect;      /* the timer inspects (else it resumes the wait and the logs) */
        sd_event_source *timer; /* watch retries and the output drain */
        DockerLogReader logr;   /* the output delivered so far: a new request delivers only the rest */
        TaskOutput *out[2];
        char stderr_head[DOCKER_INIT_CHECK_BYTES]; /* the beginning of stderr, for the init's complaint */
        size_t stderr_head_len;
        bool init_failure_logged;
        bool logs_bad_logged;

        DockerAux *aux;
        bool detached;
};

#define docker_log_error(d, ...)                                                                      \
        log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "TASK", (d)->t->name } }), __VA_ARGS__)

/* ---- runtime-docker.c */

uint64_t docker_now_sec(void);
/* argv[0] of the task's command, for records. */
const char *docker_command_name(DockerRuntime *d);
/* The inspect answer of req into *ret; *ret_gone when the engine says the container does not
 * exist (404). */
int docker_inspect_result(HttpRequest *req, int error, DockerInspect *ret, bool *ret_gone);
/* Logs why a request failed and returns the errno that stands for it. */
int docker_log_request_failure(DockerRuntime *d, const char *what, HttpRequest *req, int error);
/* A request to the engine's API at path (below DOCKER_API_BASE), not started yet. */
int docker_request(DockerRuntime *d, const char *method, const char *path, HttpRequest **ret);
/* "/containers/<id><tail>" */
int docker_container_path(const char *id, const char *tail, char **ret);
/* Starts a request nobody waits for (DockerAux), owned by d->aux. */
int docker_aux_start(DockerRuntime *d, DockerAuxKind kind, const char *method, const char *path, usec_t timeout,
                     const char *what);
/* Removes an exited container; a launch() meanwhile waits for it. */
void docker_remove(DockerRuntime *d, const char *id);
/* The container vanished: its exit status is lost (from_find: found by find(), else watched). */
void docker_inspect_lost(DockerRuntime *d, bool from_find);

/* ---- runtime-docker-watch.c */

/* Drops the watch's requests, timer and outputs (d->id stays). */
void docker_watch_stop(DockerRuntime *d);
/* Watches container id: its output from since (unix seconds) on, and its end. */
int docker_watch(DockerRuntime *d, const char *id, uint64_t since);
/* The watched container is over: reported with task_on_exited() once its output drained. */
void docker_report_exit(DockerRuntime *d, const TaskExit *e);
/* The vtable's kill() and stop(). */
int docker_kill(Task *t, int sig);
int docker_stop(Task *t, usec_t grace);
