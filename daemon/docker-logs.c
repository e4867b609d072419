/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "docker-logs.h"

/* ---------------------------------------------------------------- frames */

static int docker_demux_header(DockerDemux *d) {
        const uint8_t *h = d->header;
        uint32_t size = (uint32_t) h[4] << 24 | (uint32_t) h[5] << 16 | (uint32_t) h[6] << 8 |
                        (uint32_t) h[7];

        if (h[0] > 3 || h[1] || h[2] || h[3])
                return -EBADMSG;
        if (size > (d->max_frame ?: DOCKER_FRAME_MAX))
                return -EBADMSG;
        d->stream = h[0] == 2 || h[0] == 3 ? DOCKER_STREAM_STDERR : DOCKER_STREAM_STDOUT;
        d->size = d->remaining = size;
        d->header_len = 0;
        d->frames++;
        return 0;
}

int docker_demux_feed(DockerDemux *d, const char *data, size_t len, DockerDemuxFunc fn, void *userdata) {
        int r;

        if (d->error < 0)
                return d->error;
        while (len > 0) {
                if (d->remaining > 0) {
                        size_t n = MIN(len, (size_t) d->remaining);

                        d->remaining -= (uint32_t) n;
                        r = fn ? fn(d->stream, data, n, userdata) : 0;
                        if (r < 0)
                                return r;
                        data += n;
                        len -= n;
                        continue;
                }
                size_t n = MIN(len, sizeof(d->header) - d->header_len);

                memcpy(d->header + d->header_len, data, n);
                d->header_len += n;
                data += n;
                len -= n;
                if (d->header_len < sizeof(d->header))
                        break;
                r = docker_demux_header(d);
                if (r < 0)
                        return (d->error = r);
        }
        return 0;
}

bool docker_demux_at_boundary(const DockerDemux *d) {
        return d->error == 0 && d->header_len == 0 && d->remaining == 0;
}

/* ---------------------------------------------------------------- stamps */

/* n digits at *p as a number in [lo, hi]; advances *p. */
static int stamp_number(const char **p, const char *end, unsigned n, int lo, int hi, int *ret) {
        int v = 0;

        if (end - *p < (ptrdiff_t) n)
                return -EINVAL;
        for (unsigned i = 0; i < n; i++) {
                char c = (*p)[i];

                if (c < '0' || c > '9')
                        return -EINVAL;
                v = v * 10 + (c - '0');
        }
        if (v < lo || v > hi)
                return -EINVAL;
        *p += n;
        *ret = v;
        return 0;
}

static int stamp_char(const char **p, const char *end, char c) {
        if (*p >= end || **p != c)
                return -EINVAL;
        (*p)++;
        return 0;
}

/* ".F" with 1..9 digits, as nanoseconds; nothing: 0. */
static int stamp_fraction(const char **p, const char *end, int64_t *ret) {
        int64_t ns = 0;
        unsigned digits = 0;

        *ret = 0;
        if (*p >= end || **p != '.')
                return 0;
        for ((*p)++; *p < end && **p >= '0' && **p <= '9'; (*p)++) {
                if (++digits > 9)
                        return -EINVAL;
                ns = ns * 10 + (**p - '0');
        }
        if (digits == 0)
                return -EINVAL;
        for (; digits < 9; digits++)
                ns *= 10;
        *ret = ns;
        return 0;
}

/* "Z", or "+HH:MM" / "-HH:MM" as seconds east of UTC. */
static int stamp_zone(const char **p, const char *end, int *ret) {
        int sign, hh = 0, mm = 0;

        if (*p < end && **p == 'Z') {
                (*p)++;
                *ret = 0;
                return 0;
        }
        if (*p >= end || (**p != '+' && **p != '-'))
                return -EINVAL;
        sign = **p == '-' ? -1 : 1;
        (*p)++;
        if (stamp_number(p, end, 2, 0, 23, &hh) < 0 || stamp_char(p, end, ':') < 0 ||
            stamp_number(p, end, 2, 0, 59, &mm) < 0)
                return -EINVAL;
        *ret = sign * (hh * 3600 + mm * 60);
        return 0;
}

int docker_parse_log_stamp(const char *s, size_t len, int64_t *ret_ns) {
        const char *p = s, *end = s + len;
        struct tm tm = {};
        int64_t frac, secs;
        int zone;
        time_t t;

        if (stamp_number(&p, end, 4, 1970, 9999, &tm.tm_year) < 0 || stamp_char(&p, end, '-') < 0 ||
            stamp_number(&p, end, 2, 1, 12, &tm.tm_mon) < 0 || stamp_char(&p, end, '-') < 0 ||
            stamp_number(&p, end, 2, 1, 31, &tm.tm_mday) < 0 || stamp_char(&p, end, 'T') < 0 ||
            stamp_number(&p, end, 2, 0, 23, &tm.tm_hour) < 0 || stamp_char(&p, end, ':') < 0 ||
            stamp_number(&p, end, 2, 0, 59, &tm.tm_min) < 0 || stamp_char(&p, end, ':') < 0 ||
            stamp_number(&p, end, 2, 0, 60, &tm.tm_sec) < 0 || stamp_fraction(&p, end, &frac) < 0 ||
            stamp_zone(&p, end, &zone) < 0 || p != end)
                return -EINVAL;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        t = timegm(&tm);
        if (t == (time_t) -1)
                return -EINVAL;
        secs = (int64_t) t - zone;
        /* INT64_MAX ns is in 2262 */
        if (secs < 0 || secs > INT64_MAX / 1000000000 - 1)
                return -EINVAL;
        *ret_ns = secs * 1000000000 + frac;
        return 0;
}

/* ---------------------------------------------------------------- the filtered reader */

void docker_log_reader_begin(DockerLogReader *l) {
        size_t max_frame = l->demux.max_frame;

        l->demux = (DockerDemux) { .max_frame = max_frame };
        l->skip_ns = l->last_ns;
        l->skip_left = l->n_last;
        l->past = false;
        l->skipped = 0;
        l->frame = DOCKER_LOG_FRAME_STAMP;
        l->stamp_len = 0;
}

bool docker_log_reader_positioned(const DockerLogReader *l) {
        return l->unstamped == 0;
}

uint64_t docker_log_reader_since(const DockerLogReader *l, uint64_t start_sec, uint64_t now_sec) {
        uint64_t last = (uint64_t) (l->last_ns / 1000000000);

        if (!docker_log_reader_positioned(l))
                return MAX(now_sec, start_sec);
        /* a second early: Podman's since= is exclusive, and compared with the unrounded time */
        return l->last_ns > 0 && last > start_sec ? MAX(last - 1, start_sec) : start_sec;
}

/* Whether an entry of time ns is new; if so it becomes the newest delivered. */
static bool reader_take(DockerLogReader *l, int64_t ns) {
        /* Once one entry was new, the rest of the answer is (it is in the log's order), whatever
         * its stamps say: a clock stepped back does not hide output. */
        if (!l->past && (ns < l->skip_ns || (ns == l->skip_ns && l->skip_left > 0))) {
                if (ns == l->skip_ns)
                        l->skip_left--;
                l->skipped++;
                return false;
        }
        l->past = true;
        if (ns > l->last_ns) {
                l->last_ns = ns;
                l->n_last = 1;
        } else if (ns == l->last_ns)
                l->n_last++;
        return true;
}

typedef struct ReaderCall {
        DockerLogReader *l;
        DockerDemuxFunc fn;
        void *userdata;
} ReaderCall;

static int reader_deliver(ReaderCall *c, DockerStream stream, const char *data, size_t len) {
        return len > 0 && c->fn ? c->fn(stream, data, len, c->userdata) : 0;
}

/* The stamp did not come: what was held back is delivered as it is, with the rest of the frame. */
static int reader_unstamped(ReaderCall *c, DockerStream stream) {
        DockerLogReader *l = c->l;

        l->unstamped++;
        l->frame = DOCKER_LOG_FRAME_DELIVER;
        return reader_deliver(c, stream, l->stamp, l->stamp_len);
}

static int reader_on_piece(DockerStream stream, const char *data, size_t len, void *userdata) {
        ReaderCall *c = userdata;
        DockerLogReader *l = c->l;
        bool frame_start = l->demux.size - l->demux.remaining == len;
        bool frame_end = l->demux.remaining == 0;
        int64_t ns;
        size_t i = 0;
        int r;

        if (frame_start) {
                l->frame = DOCKER_LOG_FRAME_STAMP;
                l->stamp_len = 0;
        }
        if (l->frame == DOCKER_LOG_FRAME_STAMP) {
                while (i < len && data[i] != ' ' && l->stamp_len < sizeof(l->stamp))
                        l->stamp[l->stamp_len++] = data[i++];
                if (i < len && data[i] == ' ') {
                        if (docker_parse_log_stamp(l->stamp, l->stamp_len, &ns) >= 0) {
                                i++; /* the space */
                                l->frame = reader_take(l, ns) ? DOCKER_LOG_FRAME_DELIVER : DOCKER_LOG_FRAME_SKIP;
                        } else if ((r = reader_unstamped(c, stream)) < 0)
                                return r;
                } else if (l->stamp_len == sizeof(l->stamp) || frame_end) {
                        r = reader_unstamped(c, stream);
                        if (r < 0)
                                return r;
                } else
                        return 0; /* the stamp goes on in the next piece */
        }
        if (l->frame != DOCKER_LOG_FRAME_DELIVER)
                return 0;
        return reader_deliver(c, stream, data + i, len - i);
}

int docker_log_reader_feed(DockerLogReader *l, const char *data, size_t len, DockerDemuxFunc fn,
                           void *userdata) {
        ReaderCall c = { .l = l, .fn = fn, .userdata = userdata };

        return docker_demux_feed(&l->demux, data, len, reader_on_piece, &c);
}
