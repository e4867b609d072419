/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "macro.h"
#include "time-util.h"

/* A task's output stream (stdout or stderr) turned into journal records: bytes are split into
 * lines (a line longer than TASK_OUTPUT_LINE_MAX is cut into pieces), each line goes to
 * log_task_output() with the task's name, and a task that floods is rate-limited: at most
 * TASK_OUTPUT_BURST lines per TASK_OUTPUT_INTERVAL; the rest are counted and dropped, and one
 * record says how many were dropped when the next interval begins (or at the end). */

#define TASK_OUTPUT_LINE_MAX 4096U
#define TASK_OUTPUT_BURST 2000U
#define TASK_OUTPUT_INTERVAL (10 * USEC_PER_SEC)

typedef struct TaskOutput TaskOutput;

int task_output_new(TaskOutput **ret, const char *task);
/* Flushes a pending partial line and the dropped-lines count first. */
TaskOutput *task_output_free(TaskOutput *o);
DEFINE_CLEANUP_FUNC(TaskOutput *, task_output_free);

void task_output_feed(TaskOutput *o, const char *data, size_t len);
/* now: CLOCK_MONOTONIC, for tests. */
void task_output_feed_at(TaskOutput *o, const char *data, size_t len, usec_t now);
/* Emits a pending partial line (end of stream). */
void task_output_flush(TaskOutput *o);

/* Lines emitted and dropped so far (tests, status). */
size_t task_output_lines(const TaskOutput *o);
size_t task_output_dropped(const TaskOutput *o);
