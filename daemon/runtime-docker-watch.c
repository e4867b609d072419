/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>

#include "docker-api.h"
#include "http.h"
#include "log.h"
#include "runtime-docker.h"
#include "task-output.h"
#include "task.h"

/* The "docker" runtime, part two: watching a running container (runtime-docker.c finds and
 * launches it). The logs request follows its output, demultiplexed into one TaskOutput per stream;
 * the wait request tells when it stops, and an inspect after that gives the exit code. When the
 * engine goes away meanwhile, the watch retries until it answers again. The entries come with
 * their time stamps, so that a new logs request delivers only what the earlier ones did not: after
 * the exit the output is read once more without following (an engine's follow can end before the
 * last lines of a container that exits at once: Podman's does), and a follow cut short is taken up
 * again where it was. kill() and stop() act on the container watched. */

#define DOCKER_STOP_MARGIN_USEC (30 * USEC_PER_SEC)
#define DOCKER_RETRY_MAX_USEC (5 * USEC_PER_SEC) /* a local socket: cheap to ask again */
#define DOCKER_LOG_DRAIN_USEC (2 * USEC_PER_SEC) /* output that trails the exit */

/* 1 s, 2 s, 4 s, ... capped: retries against the engine. */
static usec_t docker_backoff(unsigned failures) {
        return MIN(DOCKER_RETRY_MIN_USEC << MIN(failures, 6U), DOCKER_RETRY_MAX_USEC);
}

/* A request that stays open as long as the container runs: no total timeout, no low-speed abort. */
static int docker_request_long(HttpRequest *req) {
        http_request_set_timeouts(req, HTTP_DEFAULT_CONNECT_TIMEOUT_USEC, USEC_INFINITY);
        if (curl_easy_setopt(http_request_get_curl(req), CURLOPT_LOW_SPEED_TIME, 0L) != CURLE_OK)
                return -EIO;
        return 0;
}

/* ---------------------------------------------------------------- watching a container */

void docker_watch_stop(DockerRuntime *d) {
        d->logs = http_request_free(d->logs);
        d->logs_final = false;
        d->wait = http_request_free(d->wait);
        d->inspect = http_request_free(d->inspect);
        d->timer = sd_event_source_disable_unref(d->timer);
        for (size_t i = 0; i < ELEMENTSOF(d->out); i++)
                d->out[i] = task_output_free(d->out[i]);
        d->watching = false;
        d->exiting = false;
}

static int docker_logs_on_data(HttpRequest *req, const char *data, size_t len, void *userdata);
static void docker_logs_on_done(HttpRequest *req, int error, void *userdata);
static void docker_wait_on_done(HttpRequest *req, int error, void *userdata);
static void docker_watch_inspect(DockerRuntime *d);
static void docker_watch_retry(DockerRuntime *d, usec_t delay);

/* follow: until the container stops; else what there is now (the read after the exit). */
static int docker_logs_issue(DockerRuntime *d, bool follow) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *path = NULL;
        char tail[112];
        int r;

        assert(!d->logs);
        snprintf(tail, sizeof(tail), "/logs?follow=%d&stdout=1&stderr=1&timestamps=1&since=%" PRIu64, follow,
                 docker_log_reader_since(&d->logr, d->since, docker_now_sec()));
        r = docker_container_path(d->id, tail, &path);
        if (r >= 0)
                r = docker_request(d, "GET", path, &req);
        if (r >= 0)
                r = docker_request_long(req);
        if (r < 0)
                return r;
        http_request_set_stream(req, docker_logs_on_data, d);
        docker_log_reader_begin(&d->logr);
        r = http_request_start(req, docker_logs_on_done, d);
        if (r < 0)
                return r;
        d->logs = TAKE_PTR(req);
        d->logs_final = !follow;
        return 0;
}

static int docker_wait_issue(DockerRuntime *d) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        assert(!d->wait);
        r = docker_container_path(d->id, "/wait?condition=not-running", &path);
        if (r >= 0)
                r = docker_request(d, "POST", path, &req);
        if (r >= 0)
                r = docker_request_long(req);
        if (r < 0)
                return r;
        http_request_set_max_response(req, 64U * 1024U);
        r = http_request_start(req, docker_wait_on_done, d);
        if (r < 0)
                return r;
        d->wait = TAKE_PTR(req);
        d->wait_started = now_usec(CLOCK_BOOTTIME);
        return 0;
}

/* (Re)issues whichever of the two long requests is not running. */
static int docker_watch_resume(DockerRuntime *d) {
        int r;

        if (!d->wait) {
                r = docker_wait_issue(d);
                if (r < 0)
                        return r;
        }
        if (!d->logs && d->out[0] && d->out[1]) {
                r = docker_logs_issue(d, /* follow= */ true);
                if (r < 0)
                        log_warning_errno(r, "Task %s: cannot follow the container's output: %m",
                                          d->t->name);
        }
        return 0;
}

int docker_watch(DockerRuntime *d, const char *id, uint64_t since) {
        char *copy = strdup(id);
        int r;

        if (!copy)
                return -ENOMEM;
        docker_watch_stop(d);
        free(d->id);
        d->id = copy;
        d->since = since;
        d->logr = (DockerLogReader) {};
        d->watching = true;
        d->exit = (TaskExit) {};
        d->wait_failures = d->logs_failures = 0;
        d->stderr_head_len = 0;
        d->init_failure_logged = d->logs_bad_logged = false;
        d->engine_lost = d->need_inspect = false;
        for (size_t i = 0; i < ELEMENTSOF(d->out); i++) {
                r = task_output_new(&d->out[i], d->t->name);
                if (r < 0)
                        log_warning_errno(r, "Task %s: cannot follow the container's output: %m",
                                          d->t->name);
        }
        r = docker_watch_resume(d);
        if (r < 0)
                docker_watch_retry(d, DOCKER_RETRY_MIN_USEC);
        return 0;
}

/* The complaint may come in pieces: look at the beginning of stderr as a whole. */
static void docker_check_init_failure(DockerRuntime *d, const char *data, size_t len) {
        size_t n = MIN(len, sizeof(d->stderr_head) - d->stderr_head_len);

        if (d->init_failure_logged || n == 0)
                return;
        memcpy(d->stderr_head + d->stderr_head_len, data, n);
        d->stderr_head_len += n;
        if (!docker_output_is_init_exec_failure(d->stderr_head, d->stderr_head_len))
                return;
        d->init_failure_logged = true;
        docker_log_error(d, "Task %s: the command %s could not be started in the container "
                         "(not in the image?)", d->t->name, docker_command_name(d));
}

static int docker_demux_on_frame(DockerStream stream, const char *data, size_t len, void *userdata) {
        DockerRuntime *d = userdata;

        task_output_feed(d->out[stream == DOCKER_STREAM_STDERR], data, len);
        if (stream == DOCKER_STREAM_STDERR)
                docker_check_init_failure(d, data, len);
        return 0;
}

static int docker_logs_on_data(HttpRequest *req, const char *data, size_t len, void *userdata) {
        DockerRuntime *d = userdata;

        if (!d->out[0] || !d->out[1])
                return -ECANCELED;
        return docker_log_reader_feed(&d->logr, data, len, docker_demux_on_frame, d);
}

static void docker_exit_finish(DockerRuntime *d);

/* After the exit: what the follow did not deliver. False when there is nothing to ask for (or
 * the container is gone). */
static bool docker_logs_final(DockerRuntime *d) {
        int r;

        if (d->exit.lost || !d->out[0] || !d->out[1] || !docker_log_reader_positioned(&d->logr))
                return false;
        r = docker_logs_issue(d, /* follow= */ false);
        if (r < 0) {
                log_debug_errno(r, "Task %s: cannot read the container's output once more: %m", d->t->name);
                return false;
        }
        return true;
}

static void docker_logs_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        bool final = d->logs_final;

        /* A partial line is not flushed here: the next answer (a re-follow, the read after the
         * exit) may finish it; freeing the outputs flushes what is left. */
        if (d->logr.skipped > 0)
                log_debug("Task %s: %" PRIu64 " log entries passed over (delivered before)", d->t->name,
                          d->logr.skipped);
        if (final && error < 0)
                log_debug("Task %s: reading the output after the exit failed: %s", d->t->name, strerror(-error));
        else if (error == -EBADMSG && !d->logs_bad_logged) {
                docker_log_error(d, "Task %s: the container engine sent a malformed log stream; "
                                 "output is followed again", d->t->name);
                d->logs_bad_logged = true;
        } else if (error < 0 && http_request_status(req) > 0 && !d->logs_bad_logged) {
                /* E.g. a logging driver that cannot be read back. */
                (void) docker_log_request_failure(d, "follow its container's output", req, error);
                d->logs_bad_logged = true;
        } else if (error < 0)
                log_debug("Task %s: log stream ended: %s", d->t->name, strerror(-error));
        d->logs = http_request_free(d->logs);
        d->logs_final = false;
        if (d->exiting) {
                if (!final && docker_logs_final(d)) {
                        d->timer = sd_event_source_disable_unref(d->timer);
                        docker_watch_retry(d, DOCKER_LOG_DRAIN_USEC); /* a bound for that read */
                } else
                        docker_exit_finish(d);
                return;
        }
        /* The stream ends when the container stops; the wait tells. If it does not come, the inspect
         * decides: a stream that ended cleanly is followed again only while the container runs. */
        if (error >= 0)
                d->need_inspect = true;
        d->logs_failures++;
        docker_watch_retry(d, docker_backoff(d->logs_failures));
}

static int docker_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        DockerRuntime *d = userdata;
        int r;

        d->timer = sd_event_source_disable_unref(d->timer);
        if (d->exiting) {
                /* The output did not drain in time: read it once more, or give up on it. */
                bool final = d->logs_final;

                d->logs = http_request_free(d->logs);
                d->logs_final = false;
                if (!final && docker_logs_final(d))
                        docker_watch_retry(d, DOCKER_LOG_DRAIN_USEC);
                else
                        docker_exit_finish(d);
                return 0;
        }
        if (!d->watching || d->inspect)
                return 0;
        if (d->need_inspect) {
                docker_watch_inspect(d); /* inspect first: the container may be gone */
                return 0;
        }
        r = docker_watch_resume(d);
        if (r < 0)
                docker_watch_retry(d, DOCKER_RETRY_MAX_USEC);
        return 0;
}

static void docker_watch_retry(DockerRuntime *d, usec_t delay) {
        int r;

        if (d->timer)
                return;
        r = sd_event_add_time_relative(d->t->event, &d->timer, CLOCK_BOOTTIME, delay, 10 * USEC_PER_MSEC,
                                       docker_on_timer, d);
        if (r < 0) {
                docker_log_error(d, "Task %s: cannot arm a timer (%s); the container is no longer watched",
                                 d->t->name, strerror(-r));
                return;
        }
        (void) sd_event_source_set_description(d->timer, "docker-watch");
}

static void docker_wait_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        char msg[DOCKER_MESSAGE_MAX + 1];
        int code;

        if (error >= 0) {
                size_t len;
                const char *body = http_request_body(req, &len);

                if (docker_parse_wait(body, len, &code, msg) >= 0)
                        log_debug("Task %s: wait answered StatusCode %d%s%s", d->t->name, code,
                                  isempty(msg) ? "" : ", ", msg);
        } else
                log_debug("Task %s: wait ended: %s", d->t->name, strerror(-error));
        /* A wait that stayed open a while was healthy: the back-off starts over. One that ends at
         * once, with or without an answer, while the container still runs must not spin. */
        if (now_usec(CLOCK_BOOTTIME) - d->wait_started > DOCKER_RETRY_MAX_USEC)
                d->wait_failures = 0;
        d->wait_failures++;
        d->wait = http_request_free(d->wait);
        /* Whatever the wait said, the inspect decides (exit code, OOM, gone, still running). */
        docker_watch_inspect(d);
}

void docker_report_exit(DockerRuntime *d, const TaskExit *e) {
        d->exit = *e;
        d->exiting = true;
        d->wait = http_request_free(d->wait);
        d->timer = sd_event_source_disable_unref(d->timer);
        /* Let the output that trails the exit arrive first (the stream ends with the container),
         * then read what the follow missed. */
        if (!d->logs && !docker_logs_final(d)) {
                docker_exit_finish(d);
                return;
        }
        docker_watch_retry(d, DOCKER_LOG_DRAIN_USEC);
}

static void docker_exit_finish(DockerRuntime *d) {
        _cleanup_free_ char *id = d->id ? strdup(d->id) : NULL;
        TaskExit e = d->exit;

        docker_watch_stop(d);
        d->removal_due = !e.lost && id;
        task_on_exited(d->t, &e);
        /* Only now, with the exit recorded, may the container go. */
        if (!e.lost && id && !d->detached)
                docker_remove(d, id);
        else
                d->removal_due = false;
}


static void docker_watch_on_inspect(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        DockerInspect in;
        bool gone;
        int r;

        r = docker_inspect_result(req, error, &in, &gone);
        if (gone) {
                d->inspect = http_request_free(d->inspect);
                docker_inspect_lost(d, false);
                return;
        }
        if (r < 0) {
                if (!d->engine_lost)
                        (void) docker_log_request_failure(d, "watch its container (retrying)", req, r);
                d->engine_lost = true;
                d->need_inspect = true;
                d->inspect = http_request_free(d->inspect);
                d->wait_failures++;
                docker_watch_retry(d, docker_backoff(d->wait_failures));
                return;
        }
        d->inspect = http_request_free(d->inspect);
        d->need_inspect = false;
        if (d->engine_lost) {
                log_notice("Task %s: the container engine answers again", d->t->name);
                d->wait_failures = 0; /* follow again at once */
        }
        d->engine_lost = false;
        if (in.running) {
                /* The engine went away and came back, or the wait ended early: wait again. */
                d->timer = sd_event_source_disable_unref(d->timer);
                docker_watch_retry(d, d->wait_failures == 0 ? 0 : docker_backoff(d->wait_failures));
                return;
        }
        if (in.oom_killed)
                docker_log_error(d, "Task %s: the container was killed by the kernel's OOM killer "
                                 "(exit code %d)", d->t->name, in.exit_code);
        if (!isempty(in.error))
                docker_log_error(d, "Task %s: the container engine reports: %s", d->t->name, in.error);
        docker_report_exit(d, &(TaskExit) { .code = in.exit_code, .lost = !in.has_exit_code });
}

static void docker_watch_inspect(DockerRuntime *d) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        if (d->inspect)
                return;
        r = docker_container_path(d->id, "/json", &path);
        if (r >= 0)
                r = docker_request(d, "GET", path, &req);
        if (r >= 0)
                r = http_request_start(req, docker_watch_on_inspect, d);
        if (r < 0) {
                d->need_inspect = true;
                docker_watch_retry(d, DOCKER_RETRY_MAX_USEC);
                return;
        }
        d->inspect = TAKE_PTR(req);
}

/* ---------------------------------------------------------------- signals */

int docker_kill(Task *t, int sig) {
        DockerRuntime *d = t->runtime_data;
        _cleanup_free_ char *path = NULL;
        char name[16], tail[48], what[64];
        int r;

        if (!d->watching || d->exiting || !d->id)
                return -ESRCH;
        r = docker_signal_name(sig, name);
        if (r < 0)
                return r;
        snprintf(tail, sizeof(tail), "/kill?signal=%s", name);
        snprintf(what, sizeof(what), "send %s to its container", name);
        r = docker_container_path(d->id, tail, &path);
        if (r < 0)
                return r;
        return docker_aux_start(d, DOCKER_AUX_KILL, "POST", path, DOCKER_REQUEST_TIMEOUT_USEC, what);
}

int docker_stop(Task *t, usec_t grace) {
        DockerRuntime *d = t->runtime_data;
        _cleanup_free_ char *path = NULL;
        uint64_t secs = (grace + USEC_PER_SEC - 1) / USEC_PER_SEC;
        char tail[48];
        int r;

        if (!d->watching || d->exiting || !d->id)
                return -ESRCH;
        snprintf(tail, sizeof(tail), "/stop?t=%" PRIu64, secs);
        r = docker_container_path(d->id, tail, &path);
        if (r < 0)
                return r;
        /* The engine answers once the container stopped: after up to grace, then the KILL. */
        return docker_aux_start(d, DOCKER_AUX_STOP, "POST", path,
                                secs * USEC_PER_SEC + DOCKER_STOP_MARGIN_USEC, "stop its container");
}

