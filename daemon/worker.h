/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "macro.h"

/* A small pool of threads for work that would block the event loop: hashing, and the file
 * store's disk I/O. A job's function runs in a worker thread and must not touch any loop
 * object (no sd-event, no logging, no Task/Manager state): it reads its argument and writes its
 * result into it. Its done callback then runs on the loop, in the order jobs finish (with one
 * thread: the order they were submitted). A done callback may submit jobs and may free the
 * worker. Free the users of a worker (stores) before the worker itself. */

typedef struct Worker Worker;

typedef int (*WorkerFunc)(void *arg);                 /* in a thread; returns 0 or -errno */
typedef void (*WorkerDone)(int result, void *arg);    /* on the loop */

int worker_new(Worker **ret, sd_event *event, unsigned threads);
/* Waits for running jobs to end; queued jobs that never started get done(-ECANCELED). */
Worker *worker_free(Worker *w);
DEFINE_CLEANUP_FUNC(Worker *, worker_free);

int worker_submit(Worker *w, WorkerFunc fn, WorkerDone done, void *arg);
/* Jobs queued or running. */
unsigned worker_pending(const Worker *w);
