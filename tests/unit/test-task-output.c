/* SPDX-License-Identifier: MIT */
#include "unit-helpers.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "task-output.h"

/* stderr goes to a file while a test runs, so the console lines can be read back. */
static int saved_stderr = -1;
static char capture_path[] = "/tmp/test-task-output-XXXXXX";

static int capture_begin(void **state) {
        int fd = mkstemp(capture_path);

        assert_true(fd >= 0);
        fflush(stderr);
        saved_stderr = dup(STDERR_FILENO);
        assert_true(dup2(fd, STDERR_FILENO) >= 0);
        close(fd);
        log_set_target(LOG_TARGET_CONSOLE);
        return 0;
}

static int capture_end(void **state) {
        fflush(stderr);
        dup2(saved_stderr, STDERR_FILENO);
        close(saved_stderr);
        unlink(capture_path);
        strcpy(capture_path, "/tmp/test-task-output-XXXXXX");
        return 0;
}

static char *captured(void) {
        static char buf[1 << 20];
        int fd = open(capture_path, O_RDONLY);
        size_t len = 0;
        ssize_t n;

        assert_true(fd >= 0);
        while ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
                len += (size_t) n;
        assert_true(n == 0);
        buf[len] = 0;
        close(fd);
        return buf;
}

static size_t count(const char *haystack, const char *needle) {
        size_t n = 0;

        for (const char *p = haystack; (p = strstr(p, needle)); p++)
                n++;
        return n;
}

static void test_lines_across_chunks(void **state) {
        _cleanup_(task_output_freep) TaskOutput *o = NULL;

        assert_int_equal(task_output_new(&o, "train"), 0);
        task_output_feed_at(o, "hel", 3, 1);
        task_output_feed_at(o, "lo\nwor", 6, 1);
        assert_int_equal(task_output_lines(o), 1);
        task_output_feed_at(o, "ld\r\n\nlast", 9, 1);
        assert_int_equal(task_output_lines(o), 3);
        task_output_flush(o);
        assert_int_equal(task_output_lines(o), 4);
        fflush(stderr);
        {
                const char *out = captured();

                assert_non_null(strstr(out, "TASK=train OUT=\"hello\"\n"));
                assert_non_null(strstr(out, "TASK=train OUT=\"world\"\n")); /* CR dropped */
                assert_non_null(strstr(out, "TASK=train OUT=\"\"\n"));
                assert_non_null(strstr(out, "TASK=train OUT=\"last\"\n"));
        }
}

static void test_long_line_cut(void **state) {
        _cleanup_(task_output_freep) TaskOutput *o = NULL;
        size_t n = TASK_OUTPUT_LINE_MAX * 2 + 10;
        char *big = malloc(n + 1);

        assert_non_null(big);
        memset(big, 'x', n);
        big[n] = '\n';
        assert_int_equal(task_output_new(&o, "t"), 0);
        task_output_feed_at(o, big, n + 1, 1);
        assert_int_equal(task_output_lines(o), 3);
        free(big);

        /* Exactly one buffer's worth followed by a newline is one line, not a piece and an empty line. */
        big = malloc(TASK_OUTPUT_LINE_MAX + 1);
        assert_non_null(big);
        memset(big, 'y', TASK_OUTPUT_LINE_MAX);
        big[TASK_OUTPUT_LINE_MAX] = '\n';
        task_output_feed_at(o, big, TASK_OUTPUT_LINE_MAX + 1, 1);
        assert_int_equal(task_output_lines(o), 4);
        free(big);
}

static void test_rate_limit(void **state) {
        _cleanup_(task_output_freep) TaskOutput *o = NULL;
        usec_t t0 = 5 * USEC_PER_SEC;

        assert_int_equal(task_output_new(&o, "flood"), 0);
        for (unsigned i = 0; i < TASK_OUTPUT_BURST + 500; i++)
                task_output_feed_at(o, "x\n", 2, t0 + i);
        assert_int_equal(task_output_lines(o), TASK_OUTPUT_BURST);
        assert_int_equal(task_output_dropped(o), 500);
        /* The next interval lets lines through again and reports the drop first. */
        task_output_feed_at(o, "after\n", 6, t0 + TASK_OUTPUT_INTERVAL);
        assert_int_equal(task_output_lines(o), TASK_OUTPUT_BURST + 1);
        fflush(stderr);
        {
                const char *out = captured();

                assert_int_equal(count(out, "500 lines of output dropped"), 1);
                assert_true(strstr(out, "dropped") < strstr(out, "OUT=\"after\""));
        }
}

static void test_drop_reported_at_end(void **state) {
        TaskOutput *o = NULL;

        assert_int_equal(task_output_new(&o, "f"), 0);
        for (unsigned i = 0; i < TASK_OUTPUT_BURST + 7; i++)
                task_output_feed_at(o, "y\n", 2, 1);
        task_output_free(o);
        fflush(stderr);
        assert_int_equal(count(captured(), "7 lines of output dropped"), 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_lines_across_chunks, capture_begin, capture_end),
                cmocka_unit_test_setup_teardown(test_long_line_cut, capture_begin, capture_end),
                cmocka_unit_test_setup_teardown(test_rate_limit, capture_begin, capture_end),
                cmocka_unit_test_setup_teardown(test_drop_reported_at_end, capture_begin, capture_end),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
