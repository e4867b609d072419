/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "macro.h"

/* The Docker Engine API v1.41 as trainsupd speaks it (runtime-docker.c), as pure functions:
 * request bodies and paths, and parsers for the engine's answers. Podman's Docker-compatible
 * API service answers the same requests with a few differences, each handled here and noted
 * where it is. Nothing here logs or does I/O; every string taken from an answer is
 * length-bounded. */

#define DOCKER_API_BASE "http://docker/v1.41"
#define DOCKER_LABEL_JOB "trainsupd.job"
#define DOCKER_LABEL_TASK "trainsupd.task"

#define DOCKER_ID_MAX 128U          /* container ids: 64 hex digits in practice */
#define DOCKER_MESSAGE_MAX 512U     /* engine error messages we keep (bytes, NUL excluded) */
#define DOCKER_LIST_MAX 64U         /* containers considered from one list answer */
#define DOCKER_PULL_LINE_MAX (64U * 1024U) /* a pull progress line longer than this: protocol error */
#define DOCKER_PULL_LAYERS_MAX 128U /* layers whose byte counts are summed for progress */

/* "trainsupd-<job_id>-<task>". */
int docker_container_name(const char *job_id, const char *task, char **ret);

/* The body of POST /containers/create for the task: Image, Cmd (when command is set), Env = env
 * (taken as is), WorkingDir, User, Labels, Tty false, StopSignal SIGTERM, StopTimeout, and
 * HostConfig with the checkpoint bind mount, NetworkMode (always: Podman uses its own default
 * otherwise), Init true, RestartPolicy "no" and the GPUs as DeviceRequests (as `docker run
 * --gpus` sends them). */
int docker_create_body(const Config *c, const TaskConfig *tc, char * const *env, char **ret);

/* The container id from a POST /containers/create answer {"Id":"...","Warnings":[...]}; -EBADMSG
 * without a valid id. */
int docker_parse_create_answer(const char *body, size_t len, char **ret_id);

/* "/containers/json?all=1&filters=<escaped {"label":["trainsupd.job=J","trainsupd.task=T"]}>". */
int docker_list_path(const char *job_id, const char *task, char **ret);

/* An image reference as POST /images/create wants it: fromImage (the name without tag or
 * digest) and tag ("latest" when none; the digest "sha256:..." for a digest reference, which
 * wins over a tag). -EINVAL for an empty name. */
int docker_image_split(const char *image, char **ret_from, char **ret_tag);
/* "/images/<escaped reference>/json" and "/images/create?fromImage=..&tag=..". */
int docker_image_inspect_path(const char *image, char **ret);
int docker_image_pull_path(const char *image, char **ret);

typedef enum DockerState {
        DOCKER_STATE_CREATED,    /* also Podman's "configured" and "initialized" */
        DOCKER_STATE_RUNNING,
        DOCKER_STATE_PAUSED,
        DOCKER_STATE_RESTARTING,
        DOCKER_STATE_REMOVING,
        DOCKER_STATE_EXITED,     /* also Podman's "stopped" (its inspect says so after an exit) */
        DOCKER_STATE_DEAD,
        DOCKER_STATE_UNKNOWN,    /* anything else: treated as not running */
        _DOCKER_STATE_MAX,
        _DOCKER_STATE_INVALID = -EINVAL,
} DockerState;

const char *docker_state_to_string(DockerState s);
/* Case-insensitive; never fails: DOCKER_STATE_UNKNOWN for what it does not know. */
DockerState docker_state_from_string(const char *s);
/* running, paused, restarting: the container still has (or will have) a live process. */
bool docker_state_is_live(DockerState s);

typedef struct DockerContainer {
        char id[DOCKER_ID_MAX + 1];
        DockerState state;
        int64_t created;        /* unix seconds; 0 when absent */
} DockerContainer;

/* A container id fit to be put in a URL path: [A-Za-z0-9]{1,DOCKER_ID_MAX}. */
bool docker_id_is_valid(const char *id);

/* Parses a GET /containers/json answer: the containers that carry both labels with exactly these
 * values (the engine filtered them already; this checks again), at most DOCKER_LIST_MAX.
 * Entries without a valid id are skipped. -EBADMSG when the body is not a JSON array. *ret may
 * be NULL when *ret_n is 0. */
int docker_parse_container_list(const char *body, size_t len, const char *job_id, const char *task,
                                DockerContainer **ret, size_t *ret_n);

/* Which one of several matching containers is the task's: a live one first, then created, then
 * exited/other; the newest among equals. Returns its index, or -ENOENT when n == 0. */
int docker_pick_container(const DockerContainer *l, size_t n);

typedef struct DockerInspect {
        DockerState state;
        bool running;
        bool oom_killed;
        bool dead;
        int exit_code;          /* as the engine gives it; 128+N after signal N */
        bool has_exit_code;
        char error[DOCKER_MESSAGE_MAX + 1]; /* State.Error, sanitized; "" when none */
} DockerInspect;

/* Parses the State of a GET /containers/{id}/json answer. Running wins over Status when they
 * disagree (Docker keeps Status "running" for a paused container too). -EBADMSG without a State
 * object. */
int docker_parse_inspect(const char *body, size_t len, DockerInspect *ret);

/* Parses a POST /containers/{id}/wait answer {"StatusCode":N,"Error":null|{"Message":".."}}.
 * ret_error gets the message ("" when none). -EBADMSG without a StatusCode. */
int docker_parse_wait(const char *body, size_t len, int *ret_code,
                      char ret_error[static DOCKER_MESSAGE_MAX + 1]);

/* The message of an error answer: {"message":"..."} (Docker), {"cause":"..","message":"..",
 * "response":N} (Podman; message, else cause), else the body itself when it is short text. Control
 * characters become spaces, the result is cut at DOCKER_MESSAGE_MAX bytes (on a UTF-8 boundary).
 * buf is "" when there is nothing usable. Returns buf. */
const char *docker_error_message(const char *body, size_t len, char buf[static DOCKER_MESSAGE_MAX + 1]);

/* Classification of error answers, from the status and the message. */
/* Docker 409; Podman 500 "... is already in use ...". */
bool docker_error_is_name_conflict(long status, const char *message);
/* Kill/stop of a container that does not run: Docker 409 "is not running"; Podman 500 "can only
 * kill running containers" / "container state improper". */
bool docker_error_is_not_running(long status, const char *message);
/* Start failed because the command does not exist in the image. */
bool docker_error_is_command_not_found(const char *message);
/* With HostConfig.Init the engine's init (Podman: catatonit, Docker: tini) runs the command, so a
 * missing command is not a start error: the init says so on stderr and exits (1 or 127). True when
 * a piece of stderr output is that complaint. */
bool docker_output_is_init_exec_failure(const char *data, size_t len);

/* ---- the progress stream of POST /images/create: newline-delimited JSON objects
 * {"status","id","progressDetail":{"current","total"},"progress"} and, for a failure inside a
 * 200 answer, {"error":"..","errorDetail":{"message":".."}}. */

typedef struct DockerPullLayer {
        char id[72];
        uint64_t current, total;
        bool done;
} DockerPullLayer;

typedef struct DockerPull {
        char *line;             /* the partial line carried over between chunks */
        size_t line_len;
        bool failed;            /* an error object was seen */
        char error[DOCKER_MESSAGE_MAX + 1]; /* its message (the first one) */
        char status[128];       /* the last status, sanitized ("Downloading", "Pull complete", ...) */
        DockerPullLayer layers[DOCKER_PULL_LAYERS_MAX];
        size_t n_layers;
        uint64_t objects;       /* parsed progress objects */
        uint64_t garbage;       /* lines that were not JSON objects (skipped) */
} DockerPull;

void docker_pull_done(DockerPull *p); /* frees the carried line; p stays usable */
/* -EBADMSG when a line grows past DOCKER_PULL_LINE_MAX; lines that are not JSON objects are
 * counted and skipped. */
int docker_pull_feed(DockerPull *p, const char *data, size_t len);
/* End of stream: parses a last line without newline. */
int docker_pull_finish(DockerPull *p);
/* Summed byte counts of the layers seen so far (layers without a total count 0). */
void docker_pull_bytes(const DockerPull *p, uint64_t *ret_current, uint64_t *ret_total);
/* Layers seen and layers done (Download complete / Pull complete / Already exists). */
void docker_pull_layers(const DockerPull *p, size_t *ret_seen, size_t *ret_done);

/* "SIGTERM" for SIGTERM, also real-time signals ("SIGRTMIN+3"); -EINVAL when unknown. */
int docker_signal_name(int sig, char buf[static 16]);
