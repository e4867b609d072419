/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>

#include "docker-api.h"
#include "http.h"
#include "log.h"
#include "runtime-docker.h"
#include "runtime.h"
#include "task.h"

/* The "docker" runtime: one container per task, driven through the Docker Engine API v1.41 on a
 * unix socket (Docker, or Podman's compatible service). Every step is one asynchronous request;
 * the container is found again by its labels, so a daemon that restarts adopts it.
 * Watching a running container is in runtime-docker-watch.c. */

#define DOCKER_REQUEST_MAX_RESPONSE (1024U * 1024U)
#define DOCKER_PULL_TIMEOUT_USEC (6 * 3600 * USEC_PER_SEC) /* a hung pull must end some day */
#define DOCKER_PULL_PROGRESS_INTERVAL (5 * USEC_PER_SEC)
#define DOCKER_CONFLICTS_MAX 3U

uint64_t docker_now_sec(void) {
        return (uint64_t) (now_usec(CLOCK_REALTIME) / USEC_PER_SEC);
}

/* ---------------------------------------------------------------- records */

const char *docker_command_name(DockerRuntime *d) {
        return d->t->tc->command ? d->t->tc->command[0] : "(the image's default)";
}

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
int docker_log_request_failure(DockerRuntime *d, const char *what, HttpRequest *req, int error) {
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

int docker_request(DockerRuntime *d, const char *method, const char *path, HttpRequest **ret) {
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

int docker_container_path(const char *id, const char *tail, char **ret) {
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

int docker_aux_start(DockerRuntime *d, DockerAuxKind kind, const char *method, const char *path, usec_t timeout,
                     const char *what) {
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
void docker_remove(DockerRuntime *d, const char *id) {
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

void docker_inspect_lost(DockerRuntime *d, bool from_find) {
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

int docker_inspect_result(HttpRequest *req, int error, DockerInspect *ret, bool *ret_gone) {
        size_t len;
        const char *body = http_request_body(req, &len);
        int r;

        r = error < 0 ? error : docker_parse_inspect(body, len, ret);
        *ret_gone = r < 0 && http_request_status(req) == 404;
        return r;
}

static void docker_inspect_found_on_done(HttpRequest *req, int error, void *userdata) {
        DockerRuntime *d = userdata;
        DockerInspect in;
        bool gone;
        int r;

        r = docker_inspect_result(req, error, &in, &gone);
        if (gone) {
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
