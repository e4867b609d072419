/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "log.h"
#include "strv.h"

static LogTarget log_target = LOG_TARGET_AUTO;
static int log_max_level = LOG_INFO;

void log_set_target(LogTarget t) {
        log_target = t;
}

void log_set_max_level(int level) {
        log_max_level = level;
}

LogTarget log_target_from_string(const char *s) {
        if (!s)
                return _LOG_TARGET_INVALID;
        if (streq(s, "journal"))
                return LOG_TARGET_JOURNAL;
        if (streq(s, "console"))
                return LOG_TARGET_CONSOLE;
        if (streq(s, "auto"))
                return LOG_TARGET_AUTO;
        return _LOG_TARGET_INVALID;
}

LogTarget log_get_target(void) {
        struct stat st;

        if (log_target != LOG_TARGET_AUTO)
                return log_target;
        /* Decided once: under systemd our stderr is a journal stream; otherwise log to the
         * console unless journald's socket is there. */
        if (getenv("JOURNAL_STREAM") || stat("/run/systemd/journal/socket", &st) == 0)
                log_target = LOG_TARGET_JOURNAL;
        else
                log_target = LOG_TARGET_CONSOLE;
        return log_target;
}

static int buf_append(char **buf, size_t *len, const char *s, size_t n) {
        char *c = realloc(*buf, *len + n + 1);

        if (!c)
                return -ENOMEM;
        memcpy(c + *len, s, n);
        *len += n;
        c[*len] = 0;
        *buf = c;
        return 0;
}

static bool needs_quote(const char *s, size_t n) {
        if (n == 0)
                return true;
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char) s[i];
                if (ch <= ' ' || ch == '"' || ch == '=' || ch == '\\' || ch == 0x7f)
                        return true;
        }
        return false;
}

int log_console_value(char **buf, size_t *len, const char *src, size_t n, int always_quote) {
        char esc[8];
        int r;

        if (!always_quote && !needs_quote(src, n))
                return buf_append(buf, len, src, n);

        r = buf_append(buf, len, "\"", 1);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                unsigned char ch = (unsigned char) src[i];
                if (ch == '"' || ch == '\\') {
                        esc[0] = '\\';
                        esc[1] = (char) ch;
                        r = buf_append(buf, len, esc, 2);
                } else if (ch == '\n')
                        r = buf_append(buf, len, "\\n", 2);
                else if (ch == '\t')
                        r = buf_append(buf, len, "\\t", 2);
                else if (ch == '\r')
                        r = buf_append(buf, len, "\\r", 2);
                else if (ch < ' ' || ch == 0x7f) {
                        snprintf(esc, sizeof(esc), "\\x%02x", ch);
                        r = buf_append(buf, len, esc, 4);
                } else
                        r = buf_append(buf, len, (const char *) &src[i], 1);
        }
        if (r < 0)
                return r;
        return buf_append(buf, len, "\"", 1);
}

int log_format_console(usec_t realtime, const char *event, const LogField *fields, size_t n_fields,
                       const char *message, char **ret) {
        _cleanup_free_ char *buf = NULL;
        char ts[RFC3339_MAX];
        size_t len = 0;
        int r;

        format_rfc3339(ts, realtime);
        r = buf_append(&buf, &len, ts, strlen(ts));
        if (r >= 0 && event) {
                r = buf_append(&buf, &len, " EVENT=", 7);
                if (r >= 0)
                        r = log_console_value(&buf, &len, event, strlen(event), false);
        }
        for (size_t i = 0; r >= 0 && i < n_fields; i++) {
                if (!fields[i].value)
                        continue;
                r = buf_append(&buf, &len, " ", 1);
                if (r >= 0)
                        r = buf_append(&buf, &len, fields[i].key, strlen(fields[i].key));
                if (r >= 0)
                        r = buf_append(&buf, &len, "=", 1);
                if (r >= 0)
                        r = log_console_value(&buf, &len, fields[i].value, strlen(fields[i].value), false);
        }
        if (r >= 0 && message) {
                r = buf_append(&buf, &len, " MESSAGE=", 9);
                if (r >= 0)
                        r = log_console_value(&buf, &len, message, strlen(message), true);
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(buf);
        return 0;
}

int log_build_journal_fields(int priority, Event ev, const LogField *fields, size_t n_fields,
                             const char *message, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        const EventInfo *info = event_info(ev);
        int r;

        if (!info)
                return -EINVAL;
        r = strv_extendf(&l, "MESSAGE=%s", message ?: "");
        if (r >= 0)
                r = strv_extendf(&l, "MESSAGE_ID=%s", info->message_id);
        if (r >= 0)
                r = strv_extendf(&l, "PRIORITY=%i", priority >= 0 ? priority : info->priority);
        if (r >= 0)
                r = strv_extend(&l, "SYSLOG_IDENTIFIER=trainsupd");
        if (r >= 0)
                r = strv_extendf(&l, "TRAINSUPD_EVENT=%s", info->name);
        for (size_t i = 0; r >= 0 && i < n_fields; i++)
                if (fields[i].value)
                        r = strv_extendf(&l, "TRAINSUPD_%s=%s", fields[i].key, fields[i].value);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(l);
        return 0;
}

static void console_write(const char *line) {
        /* One write per record keeps lines whole when several processes share stderr. */
        size_t n = strlen(line);
        _cleanup_free_ char *s = malloc(n + 2);

        if (!s)
                return;
        memcpy(s, line, n);
        s[n] = '\n';
        (void) !write(STDERR_FILENO, s, n + 1);
}

static int journal_send_strv(char **l) {
        size_t n = strv_length(l);
        _cleanup_free_ struct iovec *iov = calloc(n ?: 1, sizeof(struct iovec));

        if (!iov)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                iov[i] = (struct iovec) { .iov_base = l[i], .iov_len = strlen(l[i]) };
        return sd_journal_sendv(iov, (int) n);
}

static int log_event_emit(int priority, Event ev, const LogField *fields, size_t n_fields, const char *message) {
        const EventInfo *info = event_info(ev);
        int r = 0;

        if (!info)
                return -EINVAL;
        if (log_get_target() == LOG_TARGET_JOURNAL) {
                _cleanup_strv_free_ char **l = NULL;

                r = log_build_journal_fields(priority, ev, fields, n_fields, message, &l);
                if (r >= 0)
                        r = journal_send_strv(l);
                if (r >= 0)
                        return 0;
        }

        _cleanup_free_ char *line = NULL;
        if (log_format_console(now_usec(CLOCK_REALTIME), info->name, fields, n_fields, message, &line) >= 0)
                console_write(line);
        return r;
}

int log_event_full(int priority, Event ev, const LogField *fields, size_t n_fields, const char *format, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&message, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return log_event_emit(priority, ev, fields, n_fields, message);
}

static const char *priority_name(int priority) {
        static const char *const names[] = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" };

        return priority >= 0 && priority < (int) ELEMENTSOF(names) ? names[priority] : "info";
}

int log_internal(int priority, int error, const char *format, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;

        if (error != 0)
                errno = error < 0 ? -error : error;
        if (priority > log_max_level)
                return error < 0 ? error : -EIO;

        va_start(ap, format);
        if (vasprintf(&message, format, ap) < 0)
                message = NULL;
        va_end(ap);
        if (!message)
                return error < 0 ? error : -EIO;

        if (log_get_target() == LOG_TARGET_JOURNAL &&
            sd_journal_send("MESSAGE=%s", message, "PRIORITY=%i", priority, "SYSLOG_IDENTIFIER=trainsupd",
                            NULL) >= 0)
                return error < 0 ? error : -EIO;

        _cleanup_free_ char *line = NULL;
        const LogField f[] = { { "LEVEL", priority_name(priority) } };
        if (log_format_console(now_usec(CLOCK_REALTIME), NULL, f, 1, message, &line) >= 0)
                console_write(line);
        return error < 0 ? error : -EIO;
}

void log_task_output(const char *task, const char *line, size_t len) {
        if (log_get_target() == LOG_TARGET_JOURNAL &&
            sd_journal_send("MESSAGE=%.*s", (int) len, line, "PRIORITY=%i", LOG_INFO, "SYSLOG_IDENTIFIER=trainsupd",
                            "TRAINSUPD_TASK=%s", task, NULL) >= 0)
                return;

        _cleanup_free_ char *buf = NULL;
        char ts[RFC3339_MAX];
        size_t blen = 0;
        int r;

        format_rfc3339(ts, now_usec(CLOCK_REALTIME));
        r = buf_append(&buf, &blen, ts, strlen(ts));
        if (r >= 0)
                r = buf_append(&buf, &blen, " TASK=", 6);
        if (r >= 0)
                r = log_console_value(&buf, &blen, task, strlen(task), false);
        if (r >= 0)
                r = buf_append(&buf, &blen, " OUT=", 5);
        if (r >= 0)
                r = log_console_value(&buf, &blen, line, len, true);
        if (r >= 0)
                console_write(buf);
}
