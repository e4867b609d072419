/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* The answer of GET /containers/{id}/logs (Tty false), as pure functions: the multiplexed frames,
 * the time stamp timestamps=1 puts in front of each entry, and which entries of an answer are new
 * when the output is asked for again. Nothing here logs or does I/O. */

#define DOCKER_FRAME_MAX (1024U * 1024U) /* a log frame larger than this is a protocol error */
#define DOCKER_STAMP_MAX 40U             /* "2006-01-02T15:04:05.999999999+07:00" is 35 */

/* ---- the frames: an 8-byte header (stream: 0 stdin, 1 stdout, 2 stderr, 3 engine error; 3 zero
 * bytes; big-endian uint32 payload size) and the payload. Chunks may split headers and payloads
 * anywhere. */

typedef enum DockerStream {
        DOCKER_STREAM_STDOUT = 1,
        DOCKER_STREAM_STDERR = 2,
} DockerStream;

typedef struct DockerDemux {
        uint8_t header[8];
        size_t header_len;
        DockerStream stream;    /* of the frame being read */
        uint32_t size;          /* its payload size */
        uint32_t remaining;     /* payload bytes of that frame still to come */
        size_t max_frame;       /* 0: DOCKER_FRAME_MAX */
        int error;              /* sticky: once the stream is bad, it stays bad */
        uint64_t frames;
} DockerDemux;

/* Called with payload pieces as they arrive (a frame may come in several calls). Stdin (0) is
 * passed as stdout, engine errors (3) as stderr. Returns 0 or a negative errno that stops the
 * feed (and is returned by docker_demux_feed()). */
typedef int (*DockerDemuxFunc)(DockerStream stream, const char *data, size_t len, void *userdata);

/* -EBADMSG on a bad header (unknown stream byte, non-zero padding) or a frame larger than the max,
 * and on every call after that. */
int docker_demux_feed(DockerDemux *d, const char *data, size_t len, DockerDemuxFunc fn, void *userdata);
/* Whether the stream ended between frames (false: a frame was cut short). */
bool docker_demux_at_boundary(const DockerDemux *d);

/* ---- time stamps: RFC 3339, "YYYY-MM-DDTHH:MM:SS[.F]Z" or with a "+HH:MM"/"-HH:MM" offset, up to
 * nine fraction digits. Docker writes nine digits in UTC; Podman 4 writes whole seconds. */

/* Nanoseconds since the epoch of the stamp s[0..len); -EINVAL when it is not one (or before 1970,
 * or after 2262). */
int docker_parse_log_stamp(const char *s, size_t len, int64_t *ret_ns);

/* ---- a logs answer with timestamps=1, filtered: every entry (a frame) begins with its stamp and
 * a space; the stamp is taken off and the rest delivered. The reader remembers the newest entry
 * delivered (its time, and how many entries had exactly that time: Podman's stamps are whole
 * seconds), so that a new request asking from a little before it (since= counts whole seconds)
 * delivers only what is new: what the engine appended since, or what an earlier answer lacked
 * (a follow that ended before the last lines of a container that exited at once). Entries must
 * come in the same order in every answer, as they do from an engine's log file. A frame without
 * a readable stamp is delivered whole and does not move the position. */

typedef enum DockerLogFrame {
        DOCKER_LOG_FRAME_STAMP,         /* reading the stamp */
        DOCKER_LOG_FRAME_DELIVER,
        DOCKER_LOG_FRAME_SKIP,          /* delivered by an earlier answer */
} DockerLogFrame;

typedef struct DockerLogReader {
        DockerDemux demux;
        int64_t last_ns;        /* the newest entry delivered (0: none yet) */
        uint64_t n_last;        /* entries delivered with exactly that time */
        int64_t skip_ns;        /* this answer: what came before, as of its start */
        uint64_t skip_left;     /* entries of exactly skip_ns still to pass over */
        bool past;              /* this answer got past them: the rest is new */
        DockerLogFrame frame;
        char stamp[DOCKER_STAMP_MAX];
        size_t stamp_len;
        uint64_t skipped;       /* entries of this answer not delivered again */
        uint64_t unstamped;     /* frames without a readable stamp */
} DockerLogReader;

/* A new answer begins: the frame state starts over, the position is kept. */
void docker_log_reader_begin(DockerLogReader *l);
/* Whether the position is known: every frame so far had a stamp. */
bool docker_log_reader_positioned(const DockerLogReader *l);
/* since= for the next request: a second before the newest entry delivered, or start_sec when
 * nothing was; now_sec when the position is not known (the entries of that second may come
 * twice, the ones since the last answer ended are lost). */
uint64_t docker_log_reader_since(const DockerLogReader *l, uint64_t start_sec, uint64_t now_sec);
/* As docker_demux_feed(), fn getting only what is new, without the stamps. */
int docker_log_reader_feed(DockerLogReader *l, const char *data, size_t len, DockerDemuxFunc fn,
                           void *userdata);
