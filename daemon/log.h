/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <syslog.h>

#include "events.h"
#include "macro.h"
#include "time-util.h"

typedef enum LogTarget {
        LOG_TARGET_AUTO,    /* journal when journald listens, else console */
        LOG_TARGET_JOURNAL,
        LOG_TARGET_CONSOLE, /* one line per record on stderr, INTERFACE.md grammar */
        _LOG_TARGET_MAX,
        _LOG_TARGET_INVALID = -EINVAL,
} LogTarget;

/* One structured field. key is given without the TRAINSUPD_ prefix ("TASK"); the journal gets
 * "TRAINSUPD_TASK=...", the console "TASK=...". A NULL value leaves the field out. */
typedef struct LogField {
        const char *key;
        const char *value;
} LogField;

void log_set_target(LogTarget t);
LogTarget log_get_target(void);
void log_set_max_level(int level);
LogTarget log_target_from_string(const char *s);

/* An event record: TRAINSUPD_EVENT, its MESSAGE_ID, the fields and a formatted MESSAGE.
 * Returns 0, or the negative errno of a journal write (the record then goes to the console). */
int log_event_full(int priority, Event ev, const LogField *fields, size_t n_fields, const char *format, ...)
        _printf_(5, 6);
#define log_event(ev, format, ...) log_event_full(-1, (ev), NULL, 0, format, ##__VA_ARGS__)
/* fields: a parenthesized compound literal, e.g. ((const LogField[]) { { "TASK", name } }) */
#define log_event_fields(ev, fields, format, ...) \
        log_event_full(-1, (ev), fields, ELEMENTSOF(fields), format, ##__VA_ARGS__)
#define log_event_prio(prio, ev, fields, format, ...) \
        log_event_full((prio), (ev), fields, ELEMENTSOF(fields), format, ##__VA_ARGS__)

/* A plain diagnostic (not an event). Sets errno = -error for %m and returns error (or -EIO when
 * error is 0, so "return log_error_errno(...)" always fails). */
int log_internal(int priority, int error, const char *format, ...) _printf_(3, 4);
#define log_debug(...) (void) log_internal(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) (void) log_internal(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) (void) log_internal(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) (void) log_internal(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) (void) log_internal(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...) log_internal(LOG_DEBUG, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_internal(LOG_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_internal(LOG_ERR, (e), __VA_ARGS__)

/* A line of a task's output: journal MESSAGE with TRAINSUPD_TASK, console "<time> TASK=<n> OUT=\"...\"". */
void log_task_output(const char *task, const char *line, size_t len);

/* --- the record builder, exposed for tests --- */

/* Appends src to *buf as a console value: quoted with backslash escapes when it is empty or
 * contains a space, quote, '=', backslash or a control character, or when always_quote. */
int log_console_value(char **buf, size_t *len, const char *src, size_t n, int always_quote);

/* The console line (without trailing newline) for an event record. */
int log_format_console(usec_t realtime, const char *event, const LogField *fields, size_t n_fields,
                       const char *message, char **ret);

/* The journal fields of an event record as "KEY=VALUE" strings (strv), MESSAGE first. */
int log_build_journal_fields(int priority, Event ev, const LogField *fields, size_t n_fields,
                             const char *message, char ***ret);
