/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "unit-helpers.h"

#include "log.h"
#include "strv.h"

static char *console_value(const char *s, int always) {
        char *buf = NULL;
        size_t len = 0;

        assert_int_equal(log_console_value(&buf, &len, s, strlen(s), always), 0);
        return buf;
}

static void test_console_value_quoting(void **state) {
        static const struct {
                const char *in;
                int always;
                const char *out;
        } cases[] = {
                { "plain", 0, "plain" },
                { "plain", 1, "\"plain\"" },
                { "two words", 0, "\"two words\"" },
                { "a=b", 0, "\"a=b\"" },
                { "say \"hi\"", 0, "\"say \\\"hi\\\"\"" },
                { "back\\slash", 0, "\"back\\\\slash\"" },
                { "line\nbreak", 0, "\"line\\nbreak\"" },
                { "tab\there", 0, "\"tab\\there\"" },
                { "bell\a", 0, "\"bell\\x07\"" },
                { "", 0, "\"\"" },
                { "/var/lib/trainsupd", 0, "/var/lib/trainsupd" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *v = console_value(cases[i].in, cases[i].always);
                assert_string_equal(v, cases[i].out);
        }
}

static void test_console_line(void **state) {
        _cleanup_free_ char *line = NULL;
        const LogField f[] = { { "DRY_RUN", "1" }, { "SKIPPED", NULL }, { "TASK", "main" } };

        /* 2026-11-23T16:00:00.123Z */
        assert_int_equal(log_format_console(1795449600123000ULL, "poweroff", f, ELEMENTSOF(f),
                                            "job complete, powering off", &line),
                         0);
        assert_string_equal(line, "2026-11-23T16:00:00.123Z EVENT=poweroff DRY_RUN=1 TASK=main "
                                  "MESSAGE=\"job complete, powering off\"");
}

static void test_console_line_message_always_quoted(void **state) {
        _cleanup_free_ char *line = NULL;

        assert_int_equal(log_format_console(0, "started", NULL, 0, "ok", &line), 0);
        assert_string_equal(line, "1970-01-01T00:00:00.000Z EVENT=started MESSAGE=\"ok\"");
}

static void test_journal_fields(void **state) {
        _cleanup_strv_free_ char **l = NULL;
        const LogField f[] = { { "TASK", "main" }, { "BYTES", "123" }, { "GONE", NULL } };

        assert_int_equal(log_build_journal_fields(-1, EVENT_SNAPSHOT_COMMITTED, f, ELEMENTSOF(f), "done", &l), 0);
        assert_int_equal(strv_length(l), 7);
        assert_string_equal(l[0], "MESSAGE=done");
        assert_string_equal(l[1], "MESSAGE_ID=7f093f15804742b285180f127ad7df22");
        assert_string_equal(l[2], "PRIORITY=6");
        assert_string_equal(l[3], "SYSLOG_IDENTIFIER=trainsupd");
        assert_string_equal(l[4], "TRAINSUPD_EVENT=snapshot-committed");
        assert_string_equal(l[5], "TRAINSUPD_TASK=main");
        assert_string_equal(l[6], "TRAINSUPD_BYTES=123");
}

static void test_journal_fields_priority_override(void **state) {
        _cleanup_strv_free_ char **l = NULL;

        assert_int_equal(log_build_journal_fields(LOG_ERR, EVENT_PHASE, NULL, 0, "x", &l), 0);
        assert_string_equal(l[2], "PRIORITY=3");
        assert_int_equal(log_build_journal_fields(-1, _EVENT_MAX, NULL, 0, "x", &l), -EINVAL);
}

static void test_event_names_and_ids_unique(void **state) {
        for (Event a = 0; a < _EVENT_MAX; a++) {
                const EventInfo *ia = event_info(a);

                assert_non_null(ia);
                assert_int_equal(strlen(ia->message_id), 32);
                assert_int_equal(event_from_string(ia->name), a);
                for (Event b = a + 1; b < _EVENT_MAX; b++) {
                        assert_string_not_equal(ia->name, event_info(b)->name);
                        assert_string_not_equal(ia->message_id, event_info(b)->message_id);
                }
        }
        assert_int_equal(event_from_string("no-such-event"), _EVENT_INVALID);
}

/* Every event's MESSAGE_ID is explained in the shipped catalog, with its event name. */
static void test_catalog_covers_every_event(void **state) {
        _cleanup_free_ char *text = NULL;
        FILE *f = fopen(UNITS_DIR "/trainsupd.catalog", "re");
        size_t n;

        assert_non_null(f);
        text = calloc(1, 256 * 1024);
        assert_non_null(text);
        n = fread(text, 1, 256 * 1024 - 1, f);
        fclose(f);
        assert_true(n > 0);
        for (Event e = 0; e < _EVENT_MAX; e++) {
                char head[64], tag[96];
                const char *p;

                snprintf(head, sizeof(head), "-- %s\n", event_info(e)->message_id);
                snprintf(tag, sizeof(tag), "TRAINSUPD_EVENT=%s\n", event_info(e)->name);
                p = strstr(text, head);
                assert_non_null(p);
                /* the tag belongs to this entry: it comes before the next "-- " header */
                const char *next = strstr(p + 3, "\n-- ");
                const char *t = strstr(p, tag);
                assert_non_null(t);
                assert_true(!next || t < next);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_console_value_quoting),
                cmocka_unit_test(test_console_line),
                cmocka_unit_test(test_console_line_message_always_quoted),
                cmocka_unit_test(test_journal_fields),
                cmocka_unit_test(test_journal_fields_priority_override),
                cmocka_unit_test(test_event_names_and_ids_unique),
                cmocka_unit_test(test_catalog_covers_every_event),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
