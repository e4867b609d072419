/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "unit-helpers.h"

#include "docker-api.h"
#include "docker-logs.h"

/* Fixtures without a prefix are real answers of Podman 4.3.1's compatible API (README.md there). */
static char *fixture(const char *name, size_t *ret_len) {
        return fixture_read("docker", name, ret_len, false);
}

/* ---------------------------------------------------------------- frames */

typedef struct Collected {
        char out[4096], err[4096];
        size_t out_len, err_len;
        unsigned calls;
        int fail_after; /* > 0: the callback fails on that call */
} Collected;

static int collect(DockerStream stream, const char *data, size_t len, void *userdata) {
        Collected *c = userdata;
        char *buf = stream == DOCKER_STREAM_STDERR ? c->err : c->out;
        size_t *n = stream == DOCKER_STREAM_STDERR ? &c->err_len : &c->out_len;

        c->calls++;
        if (c->fail_after > 0 && c->calls >= (unsigned) c->fail_after)
                return -ENOBUFS;
        assert_true(len > 0);
        assert_true(*n + len < sizeof(c->out));
        memcpy(buf + *n, data, len);
        *n += len;
        buf[*n] = 0;
        return 0;
}

/* Feeds data in pieces of step bytes. */
static int demux_all(DockerDemux *d, const char *data, size_t len, size_t step, Collected *c) {
        for (size_t i = 0; i < len; i += step) {
                int r = docker_demux_feed(d, data + i, MIN(step, len - i), collect, c);

                if (r < 0)
                        return r;
        }
        return 0;
}

static void test_demux_podman(void **state) {
        size_t len;
        char *mux = fixture("logs-mux.bin", &len);

        /* Every chunking, down to single bytes: headers and payloads split anywhere. */
        for (size_t step = 1; step <= len; step++) {
                DockerDemux d = {};
                Collected c = {};

                assert_int_equal(demux_all(&d, mux, len, step, &c), 0);
                assert_string_equal(c.out, "out1\npartial");
                assert_string_equal(c.err, "err1\n");
                assert_true(docker_demux_at_boundary(&d));
                assert_int_equal(d.frames, 3);
        }
        free(mux);

        char *follow = fixture("logs-follow.bin", &len);
        DockerDemux d = {};
        Collected c = {};
        assert_int_equal(demux_all(&d, follow, len, 7, &c), 0);
        assert_string_equal(c.out, "line1\nline2\nline3\npartial");
        assert_string_equal(c.err, "e1\ne2\ne3\n");
        free(follow);

        char *init = fixture("logs-init-enoent.bin", &len);
        d = (DockerDemux) {};
        c = (Collected) {};
        assert_int_equal(demux_all(&d, init, len, len, &c), 0);
        assert_int_equal(c.out_len, 0);
        assert_true(docker_output_is_init_exec_failure(c.err, c.err_len));
        free(init);
}

static void test_demux_hostile(void **state) {
        static const struct {
                const char *file;
                const char *out; /* delivered before the error */
        } cases[] = {
                { "logs-hostile-size.bin", "hello" }, /* a 4 GiB frame */
                { "logs-bad-stream.bin", "ok" },      /* stream byte 7 */
                { "logs-bad-padding.bin", "" },       /* non-zero padding */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (size_t step = 1; step <= 16; step++) {
                        size_t len;
                        char *data = fixture(cases[i].file, &len);
                        DockerDemux d = {};
                        Collected c = {};

                        assert_int_equal(demux_all(&d, data, len, step, &c), -EBADMSG);
                        assert_string_equal(c.out, cases[i].out);
                        /* Sticky: nothing more is read from a bad stream. */
                        assert_int_equal(docker_demux_feed(&d, "\1\0\0\0\0\0\0\1x", 9, collect, &c), -EBADMSG);
                        assert_string_equal(c.out, cases[i].out);
                        assert_false(docker_demux_at_boundary(&d));
                        free(data);
                }
}

static void test_demux_edges(void **state) {
        DockerDemux d = {};
        Collected c = {};
        size_t len;
        char *data;

        /* A stream cut inside a frame: what came is delivered, the end is not at a boundary. */
        data = fixture("logs-truncated.bin", &len);
        assert_int_equal(demux_all(&d, data, len, 3, &c), 0);
        assert_string_equal(c.out, "truncated");
        assert_false(docker_demux_at_boundary(&d));
        free(data);

        /* Empty frames, stdin (0) as stdout, engine errors (3) as stderr. */
        d = (DockerDemux) {};
        c = (Collected) {};
        static const char frames[] = "\1\0\0\0\0\0\0\0" "\0\0\0\0\0\0\0\2in" "\3\0\0\0\0\0\0\3bad";
        assert_int_equal(docker_demux_feed(&d, frames, sizeof(frames) - 1, collect, &c), 0);
        assert_string_equal(c.out, "in");
        assert_string_equal(c.err, "bad");
        assert_int_equal(d.frames, 3);
        assert_true(docker_demux_at_boundary(&d));

        /* The cap is configurable; a frame of exactly the cap passes, one byte more does not. */
        d = (DockerDemux) { .max_frame = 4 };
        c = (Collected) {};
        assert_int_equal(docker_demux_feed(&d, "\1\0\0\0\0\0\0\4abcd", 12, collect, &c), 0);
        assert_int_equal(docker_demux_feed(&d, "\1\0\0\0\0\0\0\5abcde", 13, collect, &c), -EBADMSG);
        assert_string_equal(c.out, "abcd");

        /* The default cap. */
        d = (DockerDemux) {};
        assert_int_equal(docker_demux_feed(&d, "\2\0\0\0\0\x10\0\0", 8, collect, &c), 0);      /* 1 MiB */
        d = (DockerDemux) {};
        assert_int_equal(docker_demux_feed(&d, "\2\0\0\0\0\x10\0\1", 8, collect, &c), -EBADMSG); /* 1 MiB + 1 */

        /* A callback error stops the feed and is returned. */
        d = (DockerDemux) {};
        c = (Collected) { .fail_after = 2 };
        assert_int_equal(docker_demux_feed(&d, "\1\0\0\0\0\0\0\1a\1\0\0\0\0\0\0\1b", 18, collect, &c), -ENOBUFS);
        assert_string_equal(c.out, "a");

        /* Nothing at all. */
        d = (DockerDemux) {};
        assert_int_equal(docker_demux_feed(&d, "", 0, collect, &c), 0);
        assert_true(docker_demux_at_boundary(&d));
}

/* ---------------------------------------------------------------- stamps */

static int64_t stamp(const char *s) {
        int64_t ns = -1;

        assert_int_equal(docker_parse_log_stamp(s, strlen(s), &ns), 0);
        return ns;
}

static void test_stamp(void **state) {
        /* Docker: nine digits, UTC */
        assert_int_equal(stamp("2024-05-01T12:34:56.123456789Z"), INT64_C(1714566896123456789));
        assert_int_equal(stamp("2024-05-01T12:34:56.000000000Z"), INT64_C(1714566896000000000));
        /* Podman 4: whole seconds; Go's RFC3339Nano drops trailing zeros */
        assert_int_equal(stamp("2026-11-25T00:37:33Z"), INT64_C(1795567053000000000));
        assert_int_equal(stamp("2024-05-01T12:34:56.5Z"), INT64_C(1714566896500000000));
        assert_int_equal(stamp("2024-05-01T12:34:56.05Z"), INT64_C(1714566896050000000));
        /* a local time with its offset is the same instant */
        assert_int_equal(stamp("2024-05-01T20:34:56.123456789+08:00"), INT64_C(1714566896123456789));
        assert_int_equal(stamp("2024-05-01T07:04:56-05:30"), INT64_C(1714566896000000000));
        assert_int_equal(stamp("2024-05-01T00:00:00+00:00"), stamp("2024-05-01T00:00:00Z"));
        /* a leap second counts as the next second */
        assert_int_equal(stamp("2024-02-29T23:59:60Z"), INT64_C(1709251200000000000));
        assert_int_equal(stamp("1970-01-01T00:00:00Z"), 0);

        static const char *bad[] = {
                "", "2024-05-01", "2024-05-01T12:34:56", "2024-05-01T12:34:56z", "2024-05-01 12:34:56Z",
                "2024-13-01T12:34:56Z", "2024-00-01T12:34:56Z", "2024-05-32T12:34:56Z", "2024-05-01T24:34:56Z",
                "2024-05-01T12:60:56Z", "2024-05-01T12:34:61Z", "2024-05-01T12:34:56.Z",
                "2024-05-01T12:34:56.1234567890Z", "2024-05-01T12:34:56Z ", "2024-05-01T12:34:56+08",
                "2024-05-01T12:34:56+8:00", "2024-05-01T12:34:56+24:00", "24-05-01T12:34:56Z",
                "2024-5-01T12:34:56Z", "2024-05-01T12:34:5Z", "+024-05-01T12:34:56Z", "2024-05-01T12:34:56ZZ",
                "1969-12-31T23:59:59Z", "1970-01-01T00:00:00+00:01", "2263-01-01T00:00:00Z",
                "9999-12-31T23:59:59Z", "2024-05-01T12:34:56.-1Z", "2024-05-01T12:34:56.1e3Z",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int64_t ns = 42;

                assert_int_equal(docker_parse_log_stamp(bad[i], strlen(bad[i]), &ns), -EINVAL);
                assert_int_equal(ns, 42);
        }
        /* only the length given is read: a valid stamp followed by more is a stamp when cut */
        int64_t ns;
        assert_int_equal(docker_parse_log_stamp("2024-05-01T12:34:56Z trailing", 20, &ns), 0);
        assert_int_equal(ns, INT64_C(1714566896000000000));
        assert_int_equal(docker_parse_log_stamp("2024-05-01T12:34:56Z", 19, &ns), -EINVAL);
}

/* ---------------------------------------------------------------- the filtered reader */

/* Appends a frame of stream with payload p to buf at *n. */
static void frame(char *buf, size_t size, size_t *n, uint8_t stream, const char *p) {
        size_t len = strlen(p);

        assert_true(*n + 8 + len <= size);
        memcpy(buf + *n, (uint8_t[8]) { stream, 0, 0, 0, (uint8_t) (len >> 24), (uint8_t) (len >> 16),
                                        (uint8_t) (len >> 8), (uint8_t) len }, 8);
        memcpy(buf + *n + 8, p, len);
        *n += 8 + len;
}

static int read_all(DockerLogReader *l, const char *data, size_t len, size_t step, Collected *c) {
        docker_log_reader_begin(l);
        for (size_t i = 0; i < len; i += step) {
                int r = docker_log_reader_feed(l, data + i, MIN(step, len - i), collect, c);

                if (r < 0)
                        return r;
        }
        return 0;
}

/* The offsets at which the frames of a well-formed stream end. */
static size_t frame_ends(const char *data, size_t len, size_t *ends, size_t max) {
        size_t n = 0;

        for (size_t at = 0; at + 8 <= len && n < max;) {
                const uint8_t *h = (const uint8_t *) data + at;

                at += 8 + ((size_t) h[4] << 24 | (size_t) h[5] << 16 | (size_t) h[6] << 8 | h[7]);
                ends[n++] = at;
        }
        return n;
}

static void test_reader_podman(void **state) {
        size_t len;
        char *data = fixture("logs-stamps.bin", &len);

        /* Every chunking: the stamps come off, the entries (and the partial line) are delivered. */
        for (size_t step = 1; step <= len; step++) {
                DockerLogReader l = {};
                Collected c = {};

                assert_int_equal(read_all(&l, data, len, step, &c), 0);
                assert_string_equal(c.out, "one\ntwo\npartialthree\n");
                assert_string_equal(c.err, "err\n");
                assert_true(docker_demux_at_boundary(&l.demux));
                assert_true(docker_log_reader_positioned(&l));
                assert_int_equal(l.last_ns, stamp("2026-11-25T00:37:34Z"));
                assert_int_equal(l.n_last, 1);
                assert_int_equal(l.skipped, 0);
                /* a second early, never before the start */
                assert_int_equal(docker_log_reader_since(&l, 1795567000, 1795569999), 1795567053);
                assert_int_equal(docker_log_reader_since(&l, 1795567054, 1795569999), 1795567054);

                /* The same answer again (a re-follow): nothing is delivered twice. */
                Collected again = {};
                assert_int_equal(read_all(&l, data, len, step, &again), 0);
                assert_int_equal(again.out_len + again.err_len, 0);
                assert_int_equal(l.skipped, 5);
                assert_int_equal(l.n_last, 1);
        }
        free(data);
}

/* A follow that ended early (after any frame), then the read after the exit: together they deliver
 * every entry once, in order. */
static void test_reader_tail(void **state) {
        size_t len, ends[16], n;
        char *data = fixture("logs-stamps.bin", &len);

        n = frame_ends(data, len, ends, ELEMENTSOF(ends));
        assert_int_equal(n, 5);
        for (size_t k = 0; k <= n; k++)
                for (size_t step = 1; step <= 9; step += 4) {
                        DockerLogReader l = {};
                        Collected c = {};

                        assert_int_equal(read_all(&l, data, k == 0 ? 0 : ends[k - 1], step, &c), 0);
                        assert_int_equal(read_all(&l, data, len, step, &c), 0);
                        assert_string_equal(c.out, "one\ntwo\npartialthree\n");
                        assert_string_equal(c.err, "err\n");
                }
        free(data);
}

/* Entries with the same stamp: the count tells how many of them were delivered. */
static void test_reader_ties(void **state) {
        char a[512], b[512];
        size_t na = 0, nb = 0;
        DockerLogReader l = {};
        Collected c = {};

        frame(a, sizeof(a), &na, 1, "2024-05-01T12:34:56Z x1\n");
        frame(a, sizeof(a), &na, 2, "2024-05-01T12:34:56Z x2\n");
        /* the next answer: what the engine wrote since, and a second earlier (since= is early) */
        frame(b, sizeof(b), &nb, 1, "2024-05-01T12:34:55Z old\n");
        memcpy(b + nb, a, na);
        nb += na;
        frame(b, sizeof(b), &nb, 1, "2024-05-01T12:34:56Z x3\n");
        frame(b, sizeof(b), &nb, 1, "2024-05-01T12:34:57.000000001Z x4\n");

        assert_int_equal(read_all(&l, a, na, na, &c), 0);
        assert_int_equal(l.n_last, 2);
        assert_int_equal(read_all(&l, b, nb, 3, &c), 0);
        assert_string_equal(c.out, "x1\nx3\nx4\n");
        assert_string_equal(c.err, "x2\n");
        assert_int_equal(l.skipped, 3);
        assert_int_equal(l.last_ns, stamp("2024-05-01T12:34:57.000000001Z"));
        assert_int_equal(l.n_last, 1);

        /* Past the first new entry of an answer everything is new (the log is in order), even an
         * entry stamped before the newest one (the clock stepped back). */
        nb = 0;
        frame(b, sizeof(b), &nb, 1, "2024-05-01T12:34:50Z stepped back\n");
        assert_int_equal(docker_log_reader_feed(&l, b, nb, collect, &c), 0);
        assert_string_equal(c.out, "x1\nx3\nx4\nstepped back\n");
        assert_int_equal(l.last_ns, stamp("2024-05-01T12:34:57.000000001Z"));
}

/* Frames without a readable stamp are delivered whole; the position is then unknown. */
static void test_reader_unstamped(void **state) {
        static const char *cases[] = {
                "plain line\n",                          /* no stamp (an engine that ignores timestamps=1) */
                "2024-99-01T12:34:56Z bad month\n",     /* not a stamp */
                "abc",                                  /* no space at all */
                "0123456789012345678901234567890123456789012345 too long to be a stamp\n",
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (size_t step = 1; step <= 8; step++) {
                        char buf[256];
                        size_t n = 0;
                        DockerLogReader l = {};
                        Collected c = {};

                        frame(buf, sizeof(buf), &n, 1, cases[i]);
                        frame(buf, sizeof(buf), &n, 2, "2024-05-01T12:34:56Z fine\n");
                        assert_int_equal(read_all(&l, buf, n, step, &c), 0);
                        assert_string_equal(c.out, cases[i]);
                        assert_string_equal(c.err, "fine\n");
                        assert_int_equal(l.unstamped, 1);
                        assert_false(docker_log_reader_positioned(&l));
                        /* since= falls back to now: the old behaviour */
                        assert_int_equal(docker_log_reader_since(&l, 100, 2000), 2000);
                        assert_int_equal(docker_log_reader_since(&l, 3000, 2000), 3000);
                }

        /* Nothing delivered yet: since= is the start. An empty entry is an entry. */
        DockerLogReader l = {};
        Collected c = {};
        char buf[64];
        size_t n = 0;
        assert_int_equal(docker_log_reader_since(&l, 100, 2000), 100);
        frame(buf, sizeof(buf), &n, 1, "2024-05-01T12:34:56Z ");
        assert_int_equal(read_all(&l, buf, n, 1, &c), 0);
        assert_int_equal(c.out_len, 0);
        assert_int_equal(l.n_last, 1);
        assert_true(docker_log_reader_positioned(&l));
}

/* A bad stream stays bad through the reader; a callback error is returned. */
static void test_reader_errors(void **state) {
        size_t len;
        char *data = fixture("logs-bad-stream.bin", &len);
        DockerLogReader l = {};
        Collected c = {};

        assert_int_equal(read_all(&l, data, len, 1, &c), -EBADMSG);
        free(data);
        /* a new answer starts a new demux */
        char buf[64];
        size_t n = 0;
        frame(buf, sizeof(buf), &n, 1, "2024-05-01T12:34:56Z a\n");
        frame(buf, sizeof(buf), &n, 1, "2024-05-01T12:34:57Z b\n");
        c = (Collected) { .fail_after = 2 };
        assert_int_equal(read_all(&l, buf, n, n, &c), -ENOBUFS);
        assert_string_equal(c.out, "a\n");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_demux_podman),
                cmocka_unit_test(test_demux_hostile),
                cmocka_unit_test(test_demux_edges),
                cmocka_unit_test(test_stamp),
                cmocka_unit_test(test_reader_podman),
                cmocka_unit_test(test_reader_tail),
                cmocka_unit_test(test_reader_ties),
                cmocka_unit_test(test_reader_unstamped),
                cmocka_unit_test(test_reader_errors),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
