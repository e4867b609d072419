/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>

#include "docker-api.h"
#include "http.h"
#include "log.h"
#include "runtime.h"
#include "task-output.h"
#include "task.h"

/* The "docker" runtime: one container per task, driven through the Docker Engine API v1.41 on a
 * unix socket (Docker, or Podman's compatible service). Every step is one asynchronous request;
 * the container is found again by its labels, so a daemon that restarts adopts it. */

#define DOCKER_REQUEST_MAX_RESPONSE (1024U * 1024U)
#define DOCKER_REQUEST_TIMEOUT_USEC (60 * USEC_PER_SEC)
#define DOCKER_PULL_TIMEOUT_USEC (6 * 3600 * USEC_PER_SEC) /* a hung pull must end some day */
#define DOCKER_STOP_MARGIN_USEC (30 * USEC_PER_SEC)
#define DOCKER_PULL_PROGRESS_INTERVAL (5 * USEC_PER_SEC)
#define DOCKER_RETRY_MIN_USEC (500 * USEC_PER_MSEC)
#define DOCKER_RETRY_MAX_USEC (5 * USEC_PER_SEC) /* a local socket: cheap to ask again */
#define DOCKER_LOG_DRAIN_USEC (2 * USEC_PER_SEC) /* output that trails the exit */
#define DOCKER_CONFLICTS_MAX 3U
#define DOCKER_INIT_CHECK_BYTES DOCKER_MESSAGE_MAX /* the init complains first, before any output */

typedef struct DockerRuntime DockerRuntime;

/* A request nobody waits for (kill, stop, removal of extra containers): owned by a list. */
typedef enum DockerAuxKind {
        DOCKER_AUX_KILL,
        DOCKER_AUX_STOP,
        DOCKER_AUX_REMOVE,
} DockerAuxKind;

typedef struct DockerAux {
        DockerRuntime *d;
        HttpRequest *req;
        DockerAuxKind kind;
        char what[64];
        struct DockerAux *next;
} DockerAux;

struct DockerRuntime {
        Task *t;

        /* find/launch: one step at a time */
        HttpRequest *op;
        bool conflict_mode;     /* find() logic after a name conflict at create */
        unsigned conflicts;     /* consecutive name conflicts without a successful create */
        char *launch_id;        /* the container being created/started */
        DockerPull pull;
        usec_t pull_last_log;

        /* the removal a launch waits for */
        HttpRequest *removal;
        bool removal_due;       /* an exit is being reported; the removal follows */
        bool launch_pending;

        /* the container watched */
        char *id;
        bool watching;
        bool exiting;           /* the exit is known, waiting for the output to drain */
        TaskExit exit;
        uint64_t since;         /* unix seconds for the logs request */
        HttpRequest *logs;
        HttpRequest *wait;
        HttpRequest *inspect;
        usec_t wait_started;    /* CLOCK_BOOTTIME */
        unsigned wait_failures;
        unsigned logs_failures;
        bool engine_lost;       /* a record said so; the next success says it is back */
        bool need_inspect;      /* the timer inspects (else it resumes the wait and the logs) */
        sd_event_source *timer; /* watch retries and the output drain */
        DockerDemux demux;
        TaskOutput *out[2];
        char stderr_head[DOCKER_INIT_CHECK_BYTES]; /* the beginning of stderr, for the init's complaint */
        size_t stderr_head_len;
        bool init_failure_logged;
        bool logs_bad_logged;

        DockerAux *aux;
        bool detached;
};

/* 1 s, 2 s, 4 s, ... capped: retries against the engine. */
static usec_t docker_backoff(unsigned failures) {
        return MIN(DOCKER_RETRY_MIN_USEC << MIN(failures, 6U), DOCKER_RETRY_MAX_USEC);
}

static uint64_t docker_now_sec(void) {
        return (uint64_t) (now_usec(CLOCK_REALTIME) / USEC_PER_SEC);
}

/* ---------------------------------------------------------------- records */

static const char *docker_command_name(DockerRuntime *d) {
        return d->t->tc->command ? d->t->tc->command[0] : "(the image's default)";
}

#define docker_log_error(d, ...)                                                                      \
        log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "TASK", (d)->t->name } }), __VA_ARGS__)

/* Why the engine cannot be reached: curl only says "could not connect" for a unix socket. */
static int docker_refine_connect_error(const char *socket, int error, const char **ret_reason) {
        struct stat st;

        if (stat(socket, &st) < 0) {
                *ret_reason = errno == ENOENT ? "the socket does not exist" : strerror(errno);
                return negative_errno();
        }
        if (!S_ISSOCK(st.st_mode)) {
                *ret_reason = "not a socket";
                return -ENOTSOCK;
        }
        if (access(socket, R_OK | W_OK) < 0) {
                *ret_reason = "permission denied";
                return -EACCES;
        }
        *ret_reason = error == -ECONNREFUSED ? "connection refused (is the engine running?)"
                                             : strerror(-error);
        return error;
}

/* Logs why a request failed and returns the errno that stands for it. */
static int docker_log_request_failure(DockerRuntime *d, const char *what, HttpRequest *req, int error) {
        const char *socket = d->t->config->docker_socket;
        long status = req ? http_request_status(req) : 0;
        char msg[DOCKER_MESSAGE_MAX + 1];
        const char *reason;

        if (!req || (status >= 200 && status < 300)) {
                docker_log_error(d, "Task %s: cannot %s: unexpected answer from the container engine at %s "
                                 "(%s)", d->t->name, what, socket, strerror(-error));
                return error;
        }
        if (status == 0) {
                error = docker_refine_connect_error(socket, error, &reason);
                docker_log_error(d, "Task %s: cannot %s: container engine at %s: %s", d->t->name, what,
                                 socket, reason);
                return error;
        }
        size_t len;
        const char *body = http_request_body(req, &len);

        docker_error_message(body, len, msg);
        docker_log_error(d, "Task %s: cannot %s: the container engine answered HTTP %ld: %s", d->t->name,
                         what, status, isempty(msg) ? "(no message)" : msg);
        return error;
}

static const char *docker_body_message(HttpRequest *req, char buf[static DOCKER_MESSAGE_MAX + 1]) {
        size_t len;
        const char *body = http_request_body(req, &len);

        return docker_error_message(body, len, buf);
}

/* ---------------------------------------------------------------- requests */

static int docker_request(DockerRuntime *d, const char *method, const char *path, HttpRequest **ret) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *url = NULL;
        int r;

        if (asprintf(&url, DOCKER_API_BASE "%s", path) < 0)
                return -ENOMEM;
        r = http_request_new(&req, d->t->glue, method, url);
        if (r < 0)
                return r;
        r = http_request_set_unix_socket(req, d->t->config->docker_socket);
        if (r < 0)
                return r;
        http_request_set_no_proxy(req, true);
        http_request_set_timeouts(req, HTTP_DEFAULT_CONNECT_TIMEOUT_USEC, DOCKER_REQUEST_TIMEOUT_USEC);
        http_request_set_max_response(req, DOCKER_REQUEST_MAX_RESPONSE);
        *ret = TAKE_PTR(req);
        return 0;
}

/* A request that stays open as long as the container runs: no total timeout, no low-speed abort. */
static int docker_request_long(HttpRequest *req) {
        http_request_set_timeouts(req, HTTP_DEFAULT_CONNECT_TIMEOUT_USEC, USEC_INFINITY);
        if (curl_easy_setopt(http_request_get_curl(req), CURLOPT_LOW_SPEED_TIME, 0L) != CURLE_OK)
                return -EIO;
        return 0;
}

static int docker_start_op(DockerRuntime *d, const char *method, const char *path, HttpRequestDone done) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        int r;

        assert(!d->op);
        r = docker_request(d, method, path, &req);
        if (r < 0)
                return r;
        r = http_request_start(req, done, d);
        if (r < 0)
                return r;
        d->op = TAKE_PTR(req);
        return 0;
}

static int docker_container_path(const char *id, const char *tail, char **ret) {
        return asprintf(ret, "/containers/%s%s", id, tail) < 0 ? -ENOMEM : 0;
}

/* ---------------------------------------------------------------- fire and forget */

static DockerAux *docker_aux_free(DockerAux *a) {
        if (!a)
                return NULL;
        http_request_free(a->req);
        return mfree(a);
}

static void docker_aux_unlink(DockerRuntime *d, DockerAux *a) {
        for (DockerAux **p = &d->aux; *p; p = &(*p)->next)
                if (*p == a) {
                        *p = a->next;
                        return;
                }
}

static void docker_aux_on_done(HttpRequest *req, int error, void *userdata) {
        DockerAux *a = userdata;
        DockerRuntime *d = a->d;
        long status = http_request_status(req);
        char msg[DOCKER_MESSAGE_MAX + 1];

        docker_body_message(req, msg);
        if (error < 0 && status == 404)
                log_debug("Task %s: %s: the container is gone", d->t->name, a->what);
        else if (error < 0 && a->kind != DOCKER_AUX_REMOVE && docker_error_is_not_running(status, msg))
                log_debug("Task %s: %s: the container is not running", d->t->name, a->what); /* -ESRCH */
        else if (error < 0)
                (void) docker_log_request_failure(d, a->what, req, error);
        docker_aux_unlink(d, a);
        docker_aux_free(a);
}

static int docker_aux_start(DockerRuntime *d, DockerAuxKind kind, const char *method, const char *path,
                            usec_t timeout, const char *what) {
        _cleanup_free_ DockerAux *a = NULL;
        int r;

        a = calloc(1, sizeof(DockerAux));
        if (!a)
                return -ENOMEM;
        *a = (DockerAux) { .d = d, .kind = kind };
        snprintf(a->what, sizeof(a->what), "%s", what);
        r = docker_request(d, method, path, &a->req);
        if (r < 0)
                return r;
        http_request_set_timeouts(a->req, HTTP_DEFAULT_CONNECT_TIMEOUT_USEC, timeout);
        if (kind == DOCKER_AUX_STOP)
                http_request_set_accept_status(a->req, 304);
        r = http_request_start(a->req, docker_aux_on_done, a);
        if (r < 0) {
                a->req = http_request_free(a->req);
                return r;
        }
        a->next = d->aux;
        d->aux = TAKE_PTR(a);
        return 0;
}

static void docker_remove_extra(DockerRuntime *d, const char *id) {
        _cleanup_free_ char *path = NULL;

        if (docker_container_path(id, "?force=1&v=1", &path) < 0 ||
            docker_aux_start(d, DOCKER_AUX_REMOVE, "DELETE", path, DOCKER_REQUEST_TIMEOUT_USEC,
                             "remove a container") < 0)
                docker_log_error(d, "Task %s: cannot remove container %s", d->t->name, id);
}

/* ---------------------------------------------------------------- removal, launch gate */

static void docker_launch_begin(DockerRuntime *d);
static void docker_create_or_fail(DockerRuntime *d);

static void docker_removal_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;

        if (error < 0 && http_request_status(req) != 404)
                (void) docker_log_request_failure(d, "remove its exited container", req, error);
        d->removal = http_request_free(d->removal);
        if (d->launch_pending) {
                d->launch_pending = false;
                docker_launch_begin(d);
        }
}

/* Removes an exited container; a launch() meanwhile waits for it. */
static void docker_remove(DockerRuntime *d, const char *id) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        d->removal_due = false;
        if (d->removal) {
                docker_remove_extra(d, id); /* cannot happen: launches wait for the removal */
                return;
        }
        r = docker_container_path(id, "?force=1&v=1", &path);
        if (r >= 0)
                r = docker_request(d, "DELETE", path, &req);
        if (r >= 0) {
                http_request_set_retry(req, 3, DOCKER_RETRY_MIN_USEC, 4 * DOCKER_RETRY_MIN_USEC);
                r = http_request_start(req, docker_removal_on_done, d);
        }
        if (r < 0) {
                docker_log_error(d, "Task %s: cannot remove container %s: %s", d->t->name, id, strerror(-r));
                if (d->launch_pending) {
                        d->launch_pending = false;
                        docker_launch_begin(d);
                }
                return;
        }
        d->removal = TAKE_PTR(req);
}

/* ---------------------------------------------------------------- watching a container */

static void docker_watch_stop(DockerRuntime *d) {
        d->logs = http_request_free(d->logs);
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

static int docker_logs_issue(DockerRuntime *d) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *path = NULL;
        char tail[96];
        int r;

        assert(!d->logs);
        snprintf(tail, sizeof(tail), "/logs?follow=1&stdout=1&stderr=1&since=%" PRIu64, d->since);
        r = docker_container_path(d->id, tail, &path);
        if (r >= 0)
                r = docker_request(d, "GET", path, &req);
        if (r >= 0)
                r = docker_request_long(req);
        if (r < 0)
                return r;
        http_request_set_stream(req, docker_logs_on_data, d);
        d->demux = (DockerDemux) {};
        r = http_request_start(req, docker_logs_on_done, d);
        if (r < 0)
                return r;
        d->logs = TAKE_PTR(req);
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
                r = docker_logs_issue(d);
                if (r < 0)
                        log_warning_errno(r, "Task %s: cannot follow the container's output: %m",
                                          d->t->name);
        }
        return 0;
}

static int docker_watch(DockerRuntime *d, const char *id, uint64_t since) {
        char *copy = strdup(id);
        int r;

        if (!copy)
                return -ENOMEM;
        docker_watch_stop(d);
        free(d->id);
        d->id = copy;
        d->since = since;
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
        return docker_demux_feed(&d->demux, data, len, docker_demux_on_frame, d);
}

static void docker_exit_finish(DockerRuntime *d);

static void docker_logs_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;

        for (size_t i = 0; i < ELEMENTSOF(d->out); i++)
                if (d->out[i])
                        task_output_flush(d->out[i]);
        if (error == -EBADMSG && !d->logs_bad_logged) {
                docker_log_error(d, "Task %s: the container engine sent a malformed log stream; "
                                 "output is followed again from now on", d->t->name);
                d->logs_bad_logged = true;
        } else if (error < 0 && http_request_status(req) > 0 && !d->logs_bad_logged) {
                /* E.g. a logging driver that cannot be read back. */
                (void) docker_log_request_failure(d, "follow its container's output", req, error);
                d->logs_bad_logged = true;
        } else if (error < 0)
                log_debug("Task %s: log stream ended: %s", d->t->name, strerror(-error));
        d->logs = http_request_free(d->logs);
        d->since = docker_now_sec();
        if (d->exiting) {
                docker_exit_finish(d);
                return;
        }
        /* The stream ends when the container stops; the wait tells. If it does not come, follow again. */
        d->logs_failures++;
        docker_watch_retry(d, docker_backoff(d->logs_failures));
}

static int docker_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        DockerRuntime *d = userdata;
        int r;

        d->timer = sd_event_source_disable_unref(d->timer);
        if (d->exiting) {
                docker_exit_finish(d); /* the output did not drain in time */
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

static void docker_report_exit(DockerRuntime *d, const TaskExit *e) {
        d->exit = *e;
        d->exiting = true;
        d->wait = http_request_free(d->wait);
        d->timer = sd_event_source_disable_unref(d->timer);
        if (!d->logs) {
                docker_exit_finish(d);
                return;
        }
        /* Let the output that trails the exit arrive first (the stream ends with the container). */
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

static void docker_inspect_lost(DockerRuntime *d, bool from_find);

static void docker_watch_on_inspect(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        long status = http_request_status(req);
        DockerInspect in;
        size_t len;
        const char *body = http_request_body(req, &len);
        int r;

        r = error < 0 ? error : docker_parse_inspect(body, len, &in);
        if (r < 0 && status == 404) {
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

/* ---------------------------------------------------------------- find */

static void docker_find_answer(DockerRuntime *d, RuntimeFound found, const char *id, const TaskExit *e) {
        bool conflict = d->conflict_mode;

        d->conflict_mode = false;
        if (found == RUNTIME_FOUND_NOTHING && conflict) {
                /* Gone meanwhile, or taken by a container without the task's labels: create again
                 * (docker_create_on_done() gives up after a few conflicts in a row). */
                if (d->removal || d->removal_due)
                        d->launch_pending = true;
                else
                        docker_create_or_fail(d);
                return;
        }
        if (found == RUNTIME_FOUND_EXITED)
                d->removal_due = !e->lost;
        task_on_found(d->t, found, id, e);
        if (found == RUNTIME_FOUND_EXITED && !e->lost && !d->detached)
                docker_remove(d, id);
}

static void docker_adopt(DockerRuntime *d, const char *id, uint64_t since) {
        int r = docker_watch(d, id, since);

        if (r < 0)
                docker_log_error(d, "Task %s: cannot watch container %s: %s", d->t->name, id, strerror(-r));
        docker_find_answer(d, RUNTIME_FOUND_RUNNING, id, NULL);
}

static void docker_inspect_lost(DockerRuntime *d, bool from_find) {
        _cleanup_free_ char *id = d->id ? strdup(d->id) : NULL;

        docker_log_error(d, "Task %s: container %s was removed behind the daemon's back; "
                         "its exit status is lost", d->t->name, strna(from_find ? d->launch_id : id));
        if (from_find) {
                _cleanup_free_ char *fid = TAKE_PTR(d->launch_id);

                docker_find_answer(d, RUNTIME_FOUND_EXITED, fid, &(TaskExit) { .lost = true });
                return;
        }
        docker_report_exit(d, &(TaskExit) { .lost = true });
}

static void docker_start_found_on_done(HttpRequest *req, int error, void *userdata);
static void docker_inspect_found_on_done(HttpRequest *req, int error, void *userdata);

static int docker_find_step(DockerRuntime *d, const char *tail, const char *method, HttpRequestDone done) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = docker_container_path(d->launch_id, tail, &path);
        if (r < 0)
                return r;
        r = docker_start_op(d, method, path, done);
        if (r >= 0 && streq(method, "POST"))
                http_request_set_accept_status(d->op, 304);
        return r;
}

/* The engine could not tell: answer "nothing", so that the launch is tried and fails with the reason
 * (or finds the container by its name if the engine is back). */
static void docker_find_failed(DockerRuntime *d, int error, bool logged) {
        if (!logged)
                docker_log_error(d, "Task %s: cannot look for its container: %s", d->t->name,
                                 strerror(-error));
        d->launch_id = mfree(d->launch_id);
        docker_find_answer(d, RUNTIME_FOUND_NOTHING, NULL, NULL);
}

static void docker_start_found_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        _cleanup_free_ char *id = TAKE_PTR(d->launch_id);

        if (error < 0) {
                (void) docker_log_request_failure(d, "start its created container", req, error);
                d->op = http_request_free(d->op);
                /* Remove it; the launch that follows waits for that and fails with the reason. */
                d->removal_due = true;
                docker_find_answer(d, RUNTIME_FOUND_NOTHING, NULL, NULL);
                docker_remove(d, id);
                return;
        }
        d->op = http_request_free(d->op);
        log_info("Task %s: started container %s, which an earlier daemon had created", d->t->name, id);
        docker_adopt(d, id, d->since);
}

static void docker_inspect_found_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        long status = http_request_status(req);
        DockerInspect in;
        size_t len;
        const char *body = http_request_body(req, &len);
        int r;

        r = error < 0 ? error : docker_parse_inspect(body, len, &in);
        if (r < 0 && status == 404) {
                d->op = http_request_free(d->op);
                docker_inspect_lost(d, true);
                return;
        }
        if (r < 0) {
                (void) docker_log_request_failure(d, "inspect its container", req, r);
                d->op = http_request_free(d->op);
                docker_find_failed(d, r, true);
                return;
        }
        d->op = http_request_free(d->op);
        if (in.running) {
                _cleanup_free_ char *id = TAKE_PTR(d->launch_id);

                docker_adopt(d, id, docker_now_sec());
                return;
        }
        if (in.state == DOCKER_STATE_CREATED) {
                d->since = docker_now_sec();
                r = docker_find_step(d, "/start", "POST", docker_start_found_on_done);
                if (r < 0)
                        docker_find_failed(d, r, false);
                return;
        }
        _cleanup_free_ char *id = TAKE_PTR(d->launch_id);
        docker_find_answer(d, RUNTIME_FOUND_EXITED, id,
                           &(TaskExit) { .code = in.exit_code, .lost = !in.has_exit_code });
}

/* Several containers carry the task's labels (should never happen): keep one, report the rest. */
static void docker_handle_extras(DockerRuntime *d, const DockerContainer *l, size_t n, size_t keep) {
        for (size_t i = 0; i < n; i++) {
                if (i == keep)
                        continue;
                bool live = docker_state_is_live(l[i].state);

                docker_log_error(d, "Task %s: extra container %s (%s) carries the task's labels; %s",
                                 d->t->name, l[i].id, docker_state_to_string(l[i].state),
                                 live ? "it keeps running, stop it by hand" : "removing it");
                if (!live)
                        docker_remove_extra(d, l[i].id);
        }
}

static void docker_list_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        _cleanup_free_ DockerContainer *l = NULL;
        size_t n = 0, len;
        const char *body = http_request_body(req, &len);
        int r, k;

        r = error < 0 ? error
                      : docker_parse_container_list(body, len, d->t->config->job_id, d->t->name, &l, &n);
        if (r < 0) {
                r = docker_log_request_failure(d, "list its containers", error < 0 ? req : NULL, r);
                d->op = http_request_free(d->op);
                docker_find_failed(d, r, true);
                return;
        }
        d->op = http_request_free(d->op);
        k = docker_pick_container(l, n);
        if (k < 0) {
                docker_find_answer(d, RUNTIME_FOUND_NOTHING, NULL, NULL);
                return;
        }
        docker_handle_extras(d, l, n, (size_t) k);
        d->launch_id = strdup(l[k].id);
        if (!d->launch_id) {
                docker_find_failed(d, -ENOMEM, false);
                return;
        }
        if (docker_state_is_live(l[k].state)) {
                _cleanup_free_ char *id = TAKE_PTR(d->launch_id);

                docker_adopt(d, id, docker_now_sec());
                return;
        }
        /* Created or exited: the inspect tells which, and the exit code. */
        r = docker_find_step(d, "/json", "GET", docker_inspect_found_on_done);
        if (r < 0)
                docker_find_failed(d, r, false);
}

static int docker_find_issue(DockerRuntime *d) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = docker_list_path(d->t->config->job_id, d->t->name, &path);
        if (r < 0)
                return r;
        r = docker_start_op(d, "GET", path, docker_list_on_done);
        if (r < 0)
                return r;
        /* The engine may still be coming up. */
        http_request_set_retry(d->op, 3, DOCKER_RETRY_MIN_USEC, 4 * DOCKER_RETRY_MIN_USEC);
        return 0;
}

static int docker_find(Task *t) {
        DockerRuntime *d = t->runtime_data;

        if (d->detached)
                return -ECANCELED;
        if (d->op || d->watching)
                return -EBUSY;
        d->conflict_mode = false;
        return docker_find_issue(d);
}

/* ---------------------------------------------------------------- launch */

static void docker_launch_failed(DockerRuntime *d, int error) {
        d->launch_id = mfree(d->launch_id);
        d->conflict_mode = false;
        docker_pull_done(&d->pull);
        task_on_launch_failed(d->t, error);
}

static void docker_start_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        _cleanup_free_ char *id = TAKE_PTR(d->launch_id);
        char msg[DOCKER_MESSAGE_MAX + 1];
        uint64_t since = d->since;
        int r;

        docker_body_message(req, msg);
        if (error < 0) {
                if (http_request_status(req) > 0 && docker_error_is_command_not_found(msg)) {
                        docker_log_error(d, "Task %s: the command %s was not found in image %s: %s",
                                         d->t->name, docker_command_name(d), d->t->tc->image, msg);
                        error = -ENOENT;
                } else
                        error = docker_log_request_failure(d, "start its container", req, error);
                d->op = http_request_free(d->op);
                d->removal_due = true;
                docker_remove(d, id);
                docker_launch_failed(d, error);
                return;
        }
        d->op = http_request_free(d->op);
        r = docker_watch(d, id, since);
        if (r < 0)
                docker_log_error(d, "Task %s: cannot watch container %s: %s", d->t->name, id, strerror(-r));
        task_on_started(d->t, id);
}

static int docker_start_issue(DockerRuntime *d) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = docker_container_path(d->launch_id, "/start", &path);
        if (r < 0)
                return r;
        /* The container cannot write before it starts: its output begins at or after this second. */
        d->since = docker_now_sec();
        r = docker_start_op(d, "POST", path, docker_start_on_done);
        if (r < 0)
                return r;
        http_request_set_accept_status(d->op, 304);
        return 0;
}

static void docker_name_taken(DockerRuntime *d) {
        _cleanup_free_ char *name = NULL;

        (void) docker_container_name(d->t->config->job_id, d->t->name, &name);
        docker_log_error(d, "Task %s: the container name %s stays taken (by a container without the "
                         "task's labels, or one that cannot be removed); remove it by hand", d->t->name,
                         strna(name));
        d->conflicts = 0;
        docker_launch_failed(d, -EEXIST);
}

static void docker_create_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        long status = http_request_status(req);
        char msg[DOCKER_MESSAGE_MAX + 1];
        size_t len;
        const char *body = http_request_body(req, &len);
        int r;

        docker_body_message(req, msg);
        if (error < 0 && docker_error_is_name_conflict(status, msg)) {
                d->op = http_request_free(d->op);
                if (++d->conflicts > DOCKER_CONFLICTS_MAX) {
                        docker_name_taken(d);
                        return;
                }
                log_notice("Task %s: a container with its name exists already; looking for it", d->t->name);
                d->conflict_mode = true;
                r = docker_find_issue(d);
                if (r < 0)
                        docker_launch_failed(d, r);
                return;
        }
        r = error < 0 ? error : docker_parse_create_answer(body, len, &d->launch_id);
        if (r < 0) {
                r = docker_log_request_failure(d, "create its container", error < 0 ? req : NULL, r);
                d->op = http_request_free(d->op);
                docker_launch_failed(d, r);
                return;
        }
        d->op = http_request_free(d->op);
        d->conflicts = 0;
        r = docker_start_issue(d);
        if (r < 0) {
                docker_log_error(d, "Task %s: cannot start container %s: %s", d->t->name, d->launch_id,
                                 strerror(-r));
                docker_launch_failed(d, r);
        }
}

static int docker_create_issue(DockerRuntime *d) {
        _cleanup_free_ char *name = NULL, *path = NULL, *body = NULL;
        int r;

        task_on_progress(d->t, TASK_STATE_STARTING);
        r = docker_container_name(d->t->config->job_id, d->t->name, &name);
        if (r < 0)
                return r;
        r = docker_create_body(d->t->config, d->t->tc, d->t->env, &body);
        if (r < 0)
                return r;
        if (asprintf(&path, "/containers/create?name=%s", name) < 0)
                return -ENOMEM;
        r = docker_request(d, "POST", path, &d->op);
        if (r < 0)
                return r;
        if (http_request_add_header(d->op, "Content-Type: application/json") < 0 ||
            http_request_set_body(d->op, body, strlen(body)) < 0)
                r = -ENOMEM;
        if (r >= 0)
                r = http_request_start(d->op, docker_create_on_done, d);
        if (r < 0)
                d->op = http_request_free(d->op);
        return r;
}

static void docker_create_or_fail(DockerRuntime *d) {
        int r = docker_create_issue(d);

        if (r < 0) {
                docker_log_error(d, "Task %s: cannot create its container: %s", d->t->name, strerror(-r));
                docker_launch_failed(d, r);
        }
}

/* ---- pulling */

static void docker_log_pull(DockerRuntime *d, const char *state, const char *bytes, const char *format, ...)
        _printf_(4, 5);

static void docker_log_pull(DockerRuntime *d, const char *state, const char *bytes, const char *format,
                            ...) {
        _cleanup_free_ char *m = NULL;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&m, format, ap);
        va_end(ap);
        if (r < 0)
                return;
        log_event_prio(streq(state, "failed") ? LOG_ERR : LOG_INFO, EVENT_IMAGE_PULL,
                       ((const LogField[]) {
                               { "TASK", d->t->name },
                               { "IMAGE", d->t->tc->image },
                               { "STATE", state },
                               { "BYTES", bytes },
                       }),
                       "%s", m);
}

static void docker_pull_progress(DockerRuntime *d) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        uint64_t cur, total;
        size_t seen, done;
        char bytes[32];

        if (now < d->pull_last_log + DOCKER_PULL_PROGRESS_INTERVAL)
                return;
        d->pull_last_log = now;
        docker_pull_bytes(&d->pull, &cur, &total);
        docker_pull_layers(&d->pull, &seen, &done);
        snprintf(bytes, sizeof(bytes), "%" PRIu64, cur);
        docker_log_pull(d, "progress", total > 0 ? bytes : NULL,
                        "Pulling image %s for task %s: %zu of %zu layers done, %" PRIu64 " of %" PRIu64
                        " MB (%s)",
                        d->t->tc->image, d->t->name, done, seen, cur / 1000000, total / 1000000,
                        isempty(d->pull.status) ? "waiting" : d->pull.status);
}

static int docker_pull_on_data(HttpRequest *req, const char *data, size_t len, void *userdata) {
        DockerRuntime *d = userdata;
        int r;

        r = docker_pull_feed(&d->pull, data, len);
        if (r < 0)
                return r;
        docker_pull_progress(d);
        return 0;
}

static int docker_pull_error(const char *msg) {
        if (strcasestr(msg, "manifest unknown") || strcasestr(msg, "not found") ||
            strcasestr(msg, "no such"))
                return -ENOENT;
        if (strcasestr(msg, "unauthorized") || strcasestr(msg, "denied") ||
            strcasestr(msg, "authentication"))
                return -EACCES;
        return -EIO;
}

static void docker_pull_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        char msg[DOCKER_MESSAGE_MAX + 1];

        if (error >= 0)
                (void) docker_pull_finish(&d->pull);
        if (error >= 0 && d->pull.failed) {
                snprintf(msg, sizeof(msg), "%s", d->pull.error);
                error = docker_pull_error(msg);
        } else if (error == -EBADMSG && http_request_status(req) == 0)
                snprintf(msg, sizeof(msg), "malformed progress stream");
        else if (error < 0) {
                const char *reason = NULL;

                if (http_request_status(req) == 0)
                        error = docker_refine_connect_error(d->t->config->docker_socket, error, &reason);
                else
                        docker_body_message(req, msg);
                if (reason)
                        snprintf(msg, sizeof(msg), "container engine at %s: %s",
                                 d->t->config->docker_socket, reason);
                else if (isempty(msg))
                        snprintf(msg, sizeof(msg), "HTTP %ld", http_request_status(req));
        }
        d->op = http_request_free(d->op);
        if (error < 0) {
                docker_log_pull(d, "failed", NULL, "Pulling image %s for task %s failed: %s",
                                d->t->tc->image, d->t->name, msg);
                /* The runtime's own failures are EVENT_ERROR records too (runtime.h). */
                docker_log_error(d, "Task %s: cannot pull image %s: %s", d->t->name, d->t->tc->image, msg);
                docker_launch_failed(d, error);
                return;
        }
        docker_log_pull(d, "done", NULL, "Pulled image %s for task %s", d->t->tc->image, d->t->name);
        docker_pull_done(&d->pull);
        docker_create_or_fail(d);
}

static int docker_pull_issue(DockerRuntime *d) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = docker_image_pull_path(d->t->tc->image, &path);
        if (r < 0)
                return r;
        r = docker_request(d, "POST", path, &d->op);
        if (r < 0)
                return r;
        http_request_set_timeouts(d->op, HTTP_DEFAULT_CONNECT_TIMEOUT_USEC, DOCKER_PULL_TIMEOUT_USEC);
        /* Podman reports nothing while it downloads a layer: no low-speed abort. */
        if (curl_easy_setopt(http_request_get_curl(d->op), CURLOPT_LOW_SPEED_TIME, 0L) != CURLE_OK)
                r = -EIO;
        http_request_set_stream(d->op, docker_pull_on_data, d);
        docker_pull_done(&d->pull);
        d->pull = (DockerPull) {};
        d->pull_last_log = now_usec(CLOCK_MONOTONIC);
        if (r >= 0)
                r = http_request_start(d->op, docker_pull_on_done, d);
        if (r < 0) {
                d->op = http_request_free(d->op);
                return r;
        }
        task_on_progress(d->t, TASK_STATE_PULLING);
        docker_log_pull(d, "begin", NULL, "Pulling image %s for task %s", d->t->tc->image, d->t->name);
        return 0;
}

static void docker_pull_or_fail(DockerRuntime *d) {
        int r = docker_pull_issue(d);

        if (r < 0) {
                docker_log_error(d, "Task %s: cannot pull image %s: %s", d->t->name, d->t->tc->image,
                                 strerror(-r));
                docker_launch_failed(d, r);
        }
}

static void docker_image_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        long status = http_request_status(req);

        if (error < 0 && status == 404) {
                d->op = http_request_free(d->op);
                if (d->t->tc->pull == PULL_POLICY_NEVER) {
                        docker_log_error(d, "Task %s: image %s is not present and its pull policy is "
                                         "\"never\"", d->t->name, d->t->tc->image);
                        docker_launch_failed(d, -ENOENT);
                        return;
                }
                docker_pull_or_fail(d);
                return;
        }
        if (error < 0) {
                error = docker_log_request_failure(d, "inspect its image", req, error);
                d->op = http_request_free(d->op);
                docker_launch_failed(d, error);
                return;
        }
        d->op = http_request_free(d->op);
        docker_create_or_fail(d);
}

static void docker_launch_begin(DockerRuntime *d) {
        _cleanup_free_ char *path = NULL;
        int r;

        if (d->detached)
                return;
        if (d->t->tc->pull == PULL_POLICY_ALWAYS) {
                docker_pull_or_fail(d);
                return;
        }
        r = docker_image_inspect_path(d->t->tc->image, &path);
        if (r >= 0)
                r = docker_start_op(d, "GET", path, docker_image_on_done);
        if (r < 0) {
                docker_log_error(d, "Task %s: cannot look for image %s: %s", d->t->name,
                                 strna(d->t->tc->image), strerror(-r));
                docker_launch_failed(d, r);
        }
}

static int docker_launch(Task *t) {
        DockerRuntime *d = t->runtime_data;

        if (d->detached)
                return -ECANCELED;
        if (d->op || d->watching || d->launch_pending)
                return -EBUSY;
        if (isempty(t->tc->image))
                return -EINVAL;
        if (d->removal || d->removal_due) {
                d->launch_pending = true; /* docker_removal_on_done() goes on */
                return 0;
        }
        docker_launch_begin(d);
        return 0;
}

/* ---------------------------------------------------------------- signals */

static int docker_kill(Task *t, int sig) {
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

static int docker_stop(Task *t, usec_t grace) {
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

/* ---------------------------------------------------------------- lifetime */

static void docker_cancel_all(DockerRuntime *d) {
        d->op = http_request_free(d->op);
        d->removal = http_request_free(d->removal);
        docker_watch_stop(d);
        while (d->aux) {
                DockerAux *a = d->aux;

                d->aux = a->next;
                docker_aux_free(a);
        }
        docker_pull_done(&d->pull);
        d->launch_id = mfree(d->launch_id);
        d->launch_pending = d->removal_due = false;
}

static bool docker_detach(Task *t) {
        DockerRuntime *d = t->runtime_data;

        docker_cancel_all(d);
        d->detached = true;
        return true;
}

static void docker_free(void *data) {
        DockerRuntime *d = data;

        if (!d)
                return;
        docker_cancel_all(d);
        free(d->id);
        free(d);
}

static int docker_init(Task *t, void **ret) {
        DockerRuntime *d;

        if (isempty(t->config->docker_socket))
                return -EINVAL;
        d = calloc(1, sizeof(DockerRuntime));
        if (!d)
                return -ENOMEM;
        d->t = t;
        *ret = d;
        return 0;
}

const RuntimeVTable runtime_docker_vtable = {
        .name = "docker",
        .init = docker_init,
        .free = docker_free,
        .find = docker_find,
        .launch = docker_launch,
        .kill = docker_kill,
        .stop = docker_stop,
        .detach = docker_detach,
};
