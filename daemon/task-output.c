/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "log.h"
#include "task-output.h"

struct TaskOutput {
        char *task;
        char line[TASK_OUTPUT_LINE_MAX];
        size_t line_len;

        usec_t window_start;    /* CLOCK_MONOTONIC; 0: no window yet */
        size_t window_lines;
        size_t window_dropped;  /* dropped in the current window, not yet reported */

        size_t lines;
        size_t dropped;
};

int task_output_new(TaskOutput **ret, const char *task) {
        _cleanup_(task_output_freep) TaskOutput *o = calloc(1, sizeof(TaskOutput));

        if (!o)
                return -ENOMEM;
        o->task = strdup(task);
        if (!o->task)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

static void task_output_report_dropped(TaskOutput *o) {
        char msg[128];

        if (o->window_dropped == 0)
                return;
        snprintf(msg, sizeof(msg), "[trainsupd: %zu lines of output dropped, more than %u lines in %llu s]",
                 o->window_dropped, TASK_OUTPUT_BURST, (unsigned long long) (TASK_OUTPUT_INTERVAL / USEC_PER_SEC));
        log_task_output(o->task, msg, strlen(msg));
        o->window_dropped = 0;
}

/* One line, through the rate limit. */
static void task_output_emit(TaskOutput *o, const char *line, size_t len, usec_t now) {
        if (o->window_start == 0 || now >= o->window_start + TASK_OUTPUT_INTERVAL) {
                task_output_report_dropped(o);
                o->window_start = now;
                o->window_lines = 0;
        }
        if (o->window_lines >= TASK_OUTPUT_BURST) {
                o->window_dropped++;
                o->dropped++;
                return;
        }
        o->window_lines++;
        o->lines++;
        if (len > 0 && line[len - 1] == '\r')
                len--;
        log_task_output(o->task, line, len);
}

void task_output_feed_at(TaskOutput *o, const char *data, size_t len, usec_t now) {
        while (len > 0) {
                const char *nl = memchr(data, '\n', len);
                size_t take = nl ? (size_t) (nl - data) : len;
                size_t room = sizeof(o->line) - o->line_len;

                if (take > room || (take == room && !nl)) {
                        /* A line longer than the buffer is cut into pieces. */
                        memcpy(o->line + o->line_len, data, room);
                        task_output_emit(o, o->line, sizeof(o->line), now);
                        o->line_len = 0;
                        data += room;
                        len -= room;
                        continue;
                }
                memcpy(o->line + o->line_len, data, take);
                o->line_len += take;
                data += take;
                len -= take;
                if (!nl)
                        break;
                task_output_emit(o, o->line, o->line_len, now);
                o->line_len = 0;
                data++;
                len--;
        }
}

void task_output_feed(TaskOutput *o, const char *data, size_t len) {
        task_output_feed_at(o, data, len, now_usec(CLOCK_MONOTONIC));
}

void task_output_flush(TaskOutput *o) {
        if (o->line_len > 0) {
                task_output_emit(o, o->line, o->line_len, now_usec(CLOCK_MONOTONIC));
                o->line_len = 0;
        }
}

size_t task_output_lines(const TaskOutput *o) {
        return o->lines;
}

size_t task_output_dropped(const TaskOutput *o) {
        return o->dropped;
}

TaskOutput *task_output_free(TaskOutput *o) {
        if (!o)
                return NULL;
        task_output_flush(o);
        task_output_report_dropped(o);
        free(o->task);
        return mfree(o);
}
