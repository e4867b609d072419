/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <strings.h>

#include "docker-api.h"
#include "http.h"
#include "json-util.h"
#include "strv.h"

/* ---------------------------------------------------------------- names and paths */

int docker_container_name(const char *job_id, const char *task, char **ret) {
        if (isempty(job_id) || isempty(task))
                return -EINVAL;
        return asprintf(ret, "trainsupd-%s-%s", job_id, task) < 0 ? -ENOMEM : 0;
}

int docker_list_path(const char *job_id, const char *task, char **ret) {
        _cleanup_(cJSON_Deletep) cJSON *f = cJSON_CreateObject();
        _cleanup_free_ char *job = NULL, *tsk = NULL, *text = NULL, *escaped = NULL;
        cJSON *labels;
        int r;

        if (!f)
                return -ENOMEM;
        if (asprintf(&job, DOCKER_LABEL_JOB "=%s", job_id) < 0 ||
            asprintf(&tsk, DOCKER_LABEL_TASK "=%s", task) < 0)
                return -ENOMEM;
        labels = cJSON_AddArrayToObject(f, "label");
        if (!labels || !cJSON_AddItemToArray(labels, cJSON_CreateString(job)) ||
            !cJSON_AddItemToArray(labels, cJSON_CreateString(tsk)))
                return -ENOMEM;
        text = cJSON_PrintUnformatted(f);
        if (!text)
                return -ENOMEM;
        r = http_url_escape(text, NULL, &escaped);
        if (r < 0)
                return r;
        return asprintf(ret, "/containers/json?all=1&filters=%s", escaped) < 0 ? -ENOMEM : 0;
}

/* ---------------------------------------------------------------- create body */

static int json_add_strv(cJSON *o, const char *key, char * const *l) {
        cJSON *a = cJSON_AddArrayToObject(o, key);

        if (!a)
                return -ENOMEM;
        STRV_FOREACH(s, l)
                if (!cJSON_AddItemToArray(a, cJSON_CreateString(*s)))
                        return -ENOMEM;
        return 0;
}

/* The checkpoint directory, read-write. Binds cannot say a path with ':' in it; Mounts can. */
static int docker_add_checkpoint_mount(cJSON *host, const TaskConfig *tc) {
        _cleanup_free_ char *bind = NULL;
        cJSON *a, *m;

        if (!strchr(tc->checkpoint_dir, ':') && !strchr(tc->mount_at, ':')) {
                if (asprintf(&bind, "%s:%s:rw", tc->checkpoint_dir, tc->mount_at) < 0)
                        return -ENOMEM;
                return json_add_strv(host, "Binds", (char *[]) { bind, NULL });
        }
        a = cJSON_AddArrayToObject(host, "Mounts");
        m = cJSON_CreateObject();
        if (!a || !cJSON_AddItemToArray(a, m) || !cJSON_AddStringToObject(m, "Type", "bind") ||
            !cJSON_AddStringToObject(m, "Source", tc->checkpoint_dir) ||
            !cJSON_AddStringToObject(m, "Target", tc->mount_at) || !cJSON_AddFalseToObject(m, "ReadOnly"))
                return -ENOMEM;
        return 0;
}

/* As `docker run --gpus` sends them: "all" → Count -1; N → Count N; ids → DeviceIDs, Count 0. */
static int docker_add_gpus(cJSON *host, const TaskConfig *tc) {
        cJSON *a, *r, *caps, *cap;
        int count;

        if (tc->gpus == GPU_MODE_NONE || (tc->gpus == GPU_MODE_COUNT && tc->gpu_count == 0) ||
            (tc->gpus == GPU_MODE_IDS && strv_length(tc->gpu_ids) == 0))
                return 0;
        if (tc->gpus == GPU_MODE_ALL)
                count = -1;
        else if (tc->gpus == GPU_MODE_COUNT)
                count = (int) MIN(tc->gpu_count, (unsigned) INT_MAX);
        else
                count = 0;

        a = cJSON_AddArrayToObject(host, "DeviceRequests");
        r = cJSON_CreateObject();
        if (!a || !cJSON_AddItemToArray(a, r) || !cJSON_AddStringToObject(r, "Driver", "") ||
            !cJSON_AddNumberToObject(r, "Count", count))
                return -ENOMEM;
        if (tc->gpus == GPU_MODE_IDS) {
                if (json_add_strv(r, "DeviceIDs", tc->gpu_ids) < 0)
                        return -ENOMEM;
        } else if (!cJSON_AddNullToObject(r, "DeviceIDs"))
                return -ENOMEM;
        caps = cJSON_AddArrayToObject(r, "Capabilities");
        cap = cJSON_CreateArray();
        if (!caps || !cJSON_AddItemToArray(caps, cap) ||
            !cJSON_AddItemToArray(cap, cJSON_CreateString("gpu")) || !cJSON_AddObjectToObject(r, "Options"))
                return -ENOMEM;
        return 0;
}

static int docker_add_host_config(cJSON *o, const TaskConfig *tc) {
        cJSON *host = cJSON_AddObjectToObject(o, "HostConfig"), *restart;
        const char *net = network_mode_to_string(tc->network);
        int r;

        if (!host)
                return -ENOMEM;
        r = docker_add_checkpoint_mount(host, tc);
        if (r < 0)
                return r;
        restart = cJSON_AddObjectToObject(host, "RestartPolicy");
        if (!cJSON_AddStringToObject(host, "NetworkMode", net ?: "bridge") ||
            !cJSON_AddTrueToObject(host, "Init") || !restart ||
            !cJSON_AddStringToObject(restart, "Name", "no"))
                return -ENOMEM;
        return docker_add_gpus(host, tc);
}

static int docker_add_labels(cJSON *o, const Config *c, const TaskConfig *tc) {
        cJSON *l = cJSON_AddObjectToObject(o, "Labels");

        if (!l || !cJSON_AddStringToObject(l, DOCKER_LABEL_JOB, c->job_id) ||
            !cJSON_AddStringToObject(l, DOCKER_LABEL_TASK, tc->name))
                return -ENOMEM;
        return 0;
}

int docker_create_body(const Config *c, const TaskConfig *tc, char * const *env, char **ret) {
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
        char *text;
        int r;

        if (!o)
                return -ENOMEM;
        if (isempty(tc->image) || isempty(c->job_id) || !tc->checkpoint_dir || !tc->mount_at)
                return -EINVAL;
        if (!cJSON_AddStringToObject(o, "Image", tc->image))
                return -ENOMEM;
        if (tc->command && json_add_strv(o, "Cmd", tc->command) < 0)
                return -ENOMEM;
        if (json_add_strv(o, "Env", env) < 0)
                return -ENOMEM;
        if ((tc->workdir && !cJSON_AddStringToObject(o, "WorkingDir", tc->workdir)) ||
            (tc->user && !cJSON_AddStringToObject(o, "User", tc->user)))
                return -ENOMEM;
        r = docker_add_labels(o, c, tc);
        if (r < 0)
                return r;
        if (!cJSON_AddFalseToObject(o, "Tty") || !cJSON_AddFalseToObject(o, "OpenStdin") ||
            !cJSON_AddFalseToObject(o, "AttachStdin") ||
            !cJSON_AddStringToObject(o, "StopSignal", "SIGTERM") ||
            !cJSON_AddNumberToObject(o, "StopTimeout", tc->stop_grace_s))
                return -ENOMEM;
        r = docker_add_host_config(o, tc);
        if (r < 0)
                return r;
        text = cJSON_PrintUnformatted(o);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

int docker_parse_create_answer(const char *body, size_t len, char **ret_id) {
        _cleanup_(cJSON_Deletep) cJSON *j = json_parse_exact(body, len);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "Id");
        char *copy;

        if (!cJSON_IsObject(j) || !cJSON_IsString(id) || !docker_id_is_valid(id->valuestring))
                return -EBADMSG;
        copy = strdup(id->valuestring);
        if (!copy)
                return -ENOMEM;
        *ret_id = copy;
        return 0;
}

/* ---------------------------------------------------------------- images */

int docker_image_split(const char *image, char **ret_from, char **ret_tag) {
        _cleanup_free_ char *from = NULL, *tag = NULL;
        const char *at, *slash, *colon, *end;

        if (isempty(image))
                return -EINVAL;
        at = strchr(image, '@');
        end = at ?: image + strlen(image);
        /* A ':' after the last '/' separates the tag; one before it is a registry's port. */
        slash = memrchr(image, '/', (size_t) (end - image));
        colon = memrchr(slash ?: image, ':', (size_t) (end - (slash ?: image)));
        if (colon)
                end = colon;
        if (end == image)
                return -EINVAL;
        from = strndup(image, (size_t) (end - image));
        if (at)
                tag = strdup(at + 1);
        else if (colon)
                tag = strdup(colon + 1);
        else
                tag = strdup("latest");
        if (!from || !tag)
                return -ENOMEM;
        if (isempty(tag))
                return -EINVAL;
        *ret_from = TAKE_PTR(from);
        *ret_tag = TAKE_PTR(tag);
        return 0;
}

int docker_image_inspect_path(const char *image, char **ret) {
        _cleanup_free_ char *e = NULL;
        int r;

        if (isempty(image))
                return -EINVAL;
        r = http_url_escape(image, "/:@", &e);
        if (r < 0)
                return r;
        return asprintf(ret, "/images/%s/json", e) < 0 ? -ENOMEM : 0;
}

int docker_image_pull_path(const char *image, char **ret) {
        _cleanup_free_ char *from = NULL, *tag = NULL, *ef = NULL, *et = NULL;
        int r;

        r = docker_image_split(image, &from, &tag);
        if (r < 0)
                return r;
        if (http_url_escape(from, NULL, &ef) < 0 || http_url_escape(tag, NULL, &et) < 0)
                return -ENOMEM;
        return asprintf(ret, "/images/create?fromImage=%s&tag=%s", ef, et) < 0 ? -ENOMEM : 0;
}

/* ---------------------------------------------------------------- states */

static const char *const docker_state_table[_DOCKER_STATE_MAX] = {
        [DOCKER_STATE_CREATED] = "created",
        [DOCKER_STATE_RUNNING] = "running",
        [DOCKER_STATE_PAUSED] = "paused",
        [DOCKER_STATE_RESTARTING] = "restarting",
        [DOCKER_STATE_REMOVING] = "removing",
        [DOCKER_STATE_EXITED] = "exited",
        [DOCKER_STATE_DEAD] = "dead",
        [DOCKER_STATE_UNKNOWN] = "unknown",
};

const char *docker_state_to_string(DockerState s) {
        return s >= 0 && s < _DOCKER_STATE_MAX ? docker_state_table[s] : NULL;
}

DockerState docker_state_from_string(const char *s) {
        if (!s)
                return DOCKER_STATE_UNKNOWN;
        for (DockerState i = 0; i < _DOCKER_STATE_MAX; i++)
                if (strcasecmp(docker_state_table[i], s) == 0)
                        return i;
        /* Podman's own state names, which its compatible API lets through in places. */
        if (strcasecmp(s, "configured") == 0 || strcasecmp(s, "initialized") == 0)
                return DOCKER_STATE_CREATED;
        if (strcasecmp(s, "stopped") == 0)
                return DOCKER_STATE_EXITED;
        if (strcasecmp(s, "stopping") == 0)
                return DOCKER_STATE_RUNNING;
        return DOCKER_STATE_UNKNOWN;
}

bool docker_state_is_live(DockerState s) {
        return s == DOCKER_STATE_RUNNING || s == DOCKER_STATE_PAUSED || s == DOCKER_STATE_RESTARTING;
}

bool docker_id_is_valid(const char *id) {
        size_t n = 0;

        if (!id)
                return false;
        for (; id[n]; n++) {
                char c = id[n];

                if (n >= DOCKER_ID_MAX ||
                    !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
                        return false;
        }
        return n > 0;
}

/* ---------------------------------------------------------------- container list */

static const char *json_string_member(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool docker_labels_match(const cJSON *c, const char *job_id, const char *task) {
        const cJSON *labels = cJSON_GetObjectItemCaseSensitive(c, "Labels");
        const char *j = json_string_member(labels, DOCKER_LABEL_JOB);
        const char *t = json_string_member(labels, DOCKER_LABEL_TASK);

        return cJSON_IsObject(labels) && j && t && streq(j, job_id) && streq(t, task);
}

static int64_t json_int64_member(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 1e15))
                return 0;
        return (int64_t) v->valuedouble;
}

int docker_parse_container_list(const char *body, size_t len, const char *job_id, const char *task,
                                DockerContainer **ret, size_t *ret_n) {
        _cleanup_(cJSON_Deletep) cJSON *j = json_parse_exact(body, len);
        _cleanup_free_ DockerContainer *l = NULL;
        const cJSON *c;
        size_t n = 0;

        if (!cJSON_IsArray(j))
                return -EBADMSG;
        cJSON_ArrayForEach(c, j) {
                const char *id = json_string_member(c, "Id");

                if (n >= DOCKER_LIST_MAX)
                        break;
                if (!cJSON_IsObject(c) || !docker_id_is_valid(id) || !docker_labels_match(c, job_id, task))
                        continue;
                if (!l) {
                        l = calloc(DOCKER_LIST_MAX, sizeof(DockerContainer));
                        if (!l)
                                return -ENOMEM;
                }
                l[n] = (DockerContainer) {
                        .state = docker_state_from_string(json_string_member(c, "State")),
                        .created = json_int64_member(c, "Created"),
                };
                memcpy(l[n].id, id, strlen(id) + 1);
                n++;
        }
        *ret = TAKE_PTR(l);
        *ret_n = n;
        return 0;
}

static int docker_state_rank(DockerState s) {
        if (docker_state_is_live(s))
                return 2;
        return s == DOCKER_STATE_CREATED ? 1 : 0;
}

int docker_pick_container(const DockerContainer *l, size_t n) {
        size_t best = 0;

        if (n == 0)
                return -ENOENT;
        for (size_t i = 1; i < n; i++) {
                int a = docker_state_rank(l[i].state), b = docker_state_rank(l[best].state);

                if (a > b || (a == b && l[i].created > l[best].created))
                        best = i;
        }
        return (int) best;
}

/* ---------------------------------------------------------------- messages */

/* Copies at most size-1 bytes of s[0..n) (up to a NUL) into buf, control characters as spaces,
 * without cutting a UTF-8 sequence in two; trims white space at both ends. */
static const char *docker_copy_text(const char *s, size_t n, char *buf, size_t size) {
        size_t k = 0, start = 0, max = size - 1;

        while (start < n && (s[start] == ' ' || s[start] == '\t' || s[start] == '\r' || s[start] == '\n'))
                start++;
        for (size_t i = start; i < n && s[i] && k < max; i++) {
                unsigned char u = (unsigned char) s[i];

                buf[k++] = u < 0x20 || u == 0x7f ? ' ' : (char) u;
        }
        /* Do not end inside a multi-byte sequence. */
        if (k == max) {
                size_t back = k;

                while (back > 0 && k - back < 3 && ((unsigned char) buf[back - 1] & 0xC0) == 0x80)
                        back--;
                if (back > 0 && ((unsigned char) buf[back - 1] & 0xC0) == 0xC0) {
                        unsigned char lead = (unsigned char) buf[back - 1];
                        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;

                        if (k - (back - 1) < need)
                                k = back - 1;
                }
        }
        while (k > 0 && buf[k - 1] == ' ')
                k--;
        buf[k] = 0;
        return buf;
}

static const char *docker_copy_message(const char *s, size_t n, char buf[static DOCKER_MESSAGE_MAX + 1]) {
        return docker_copy_text(s, n, buf, DOCKER_MESSAGE_MAX + 1);
}

static const char *docker_copy_string(const char *s, char buf[static DOCKER_MESSAGE_MAX + 1]) {
        return docker_copy_text(s, strnlen(s, DOCKER_MESSAGE_MAX + 4), buf, DOCKER_MESSAGE_MAX + 1);
}

const char *docker_error_message(const char *body, size_t len, char buf[static DOCKER_MESSAGE_MAX + 1]) {
        _cleanup_(cJSON_Deletep) cJSON *j = NULL;
        const char *m;

        buf[0] = 0;
        if (!body || len == 0)
                return buf;
        j = json_parse_exact(body, len);
        if (j) {
                m = json_string_member(j, "message");
                if (isempty(m))
                        m = json_string_member(j, "cause");
                if (!isempty(m))
                        docker_copy_string(m, buf);
                return buf;
        }
        /* Not JSON: short text (a proxy's or an old engine's plain error) is the message. */
        if (len <= 4096 && !memchr(body, 0, len))
                docker_copy_message(body, len, buf);
        return buf;
}

static bool contains(const char *s, const char *needle) {
        return s && strcasestr(s, needle);
}

bool docker_error_is_name_conflict(long status, const char *message) {
        return status == 409 || (status == 500 && contains(message, "already in use"));
}

bool docker_error_is_not_running(long status, const char *message) {
        if (status == 304)
                return true;
        if (status != 409 && status != 500)
                return false;
        return contains(message, "is not running") || contains(message, "can only kill running") ||
               contains(message, "container state improper") || contains(message, "not running");
}

bool docker_error_is_command_not_found(const char *message) {
        return contains(message, "executable file not found") ||
               contains(message, "no such file or directory") ||
               contains(message, "command that was not found");
}

bool docker_output_is_init_exec_failure(const char *data, size_t len) {
        char buf[DOCKER_MESSAGE_MAX + 1];

        docker_copy_message(data, MIN(len, (size_t) DOCKER_MESSAGE_MAX), buf);
        /* catatonit: "ERROR (catatonit:6): failed to exec pid1: No such file or directory";
         * tini: "[FATAL tini (7)] exec foo failed: No such file or directory". */
        if (contains(buf, "catatonit") && contains(buf, "failed to exec"))
                return true;
        return contains(buf, "tini") && contains(buf, "exec ") && contains(buf, " failed:");
}

/* ---------------------------------------------------------------- inspect, wait */

int docker_parse_inspect(const char *body, size_t len, DockerInspect *ret) {
        _cleanup_(cJSON_Deletep) cJSON *j = json_parse_exact(body, len);
        const cJSON *st, *code, *running;
        const char *err;
        DockerInspect i = {};

        st = cJSON_GetObjectItemCaseSensitive(j, "State");
        if (!cJSON_IsObject(j) || !cJSON_IsObject(st))
                return -EBADMSG;
        i.state = docker_state_from_string(json_string_member(st, "Status"));
        running = cJSON_GetObjectItemCaseSensitive(st, "Running");
        i.running = cJSON_IsBool(running) ? cJSON_IsTrue(running) : docker_state_is_live(i.state);
        if (i.running && !docker_state_is_live(i.state))
                i.state = DOCKER_STATE_RUNNING;
        else if (!i.running && docker_state_is_live(i.state) && i.state != DOCKER_STATE_PAUSED)
                i.state = DOCKER_STATE_EXITED;
        i.oom_killed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "OOMKilled"));
        i.dead = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "Dead"));
        code = cJSON_GetObjectItemCaseSensitive(st, "ExitCode");
        if (cJSON_IsNumber(code) && code->valuedouble >= INT_MIN && code->valuedouble <= INT_MAX) {
                i.exit_code = (int) code->valuedouble;
                i.has_exit_code = true;
        }
        err = json_string_member(st, "Error");
        if (err)
                docker_copy_string(err, i.error);
        *ret = i;
        return 0;
}

int docker_parse_wait(const char *body, size_t len, int *ret_code,
                      char ret_error[static DOCKER_MESSAGE_MAX + 1]) {
        _cleanup_(cJSON_Deletep) cJSON *j = json_parse_exact(body, len);
        const cJSON *code, *err;
        const char *m;

        ret_error[0] = 0;
        code = cJSON_GetObjectItemCaseSensitive(j, "StatusCode");
        if (!cJSON_IsObject(j) || !cJSON_IsNumber(code) ||
            !(code->valuedouble >= INT_MIN && code->valuedouble <= INT_MAX))
                return -EBADMSG;
        err = cJSON_GetObjectItemCaseSensitive(j, "Error");
        m = json_string_member(err, "Message");
        if (!m && cJSON_IsString(err))
                m = err->valuestring;
        if (m)
                docker_copy_string(m, ret_error);
        *ret_code = (int) code->valuedouble;
        return 0;
}

/* ---------------------------------------------------------------- pull progress */

void docker_pull_done(DockerPull *p) {
        p->line = mfree(p->line);
        p->line_len = 0;
}

static DockerPullLayer *docker_pull_layer(DockerPull *p, const char *id) {
        char key[sizeof(p->layers[0].id)];

        if (isempty(id))
                return NULL;
        docker_copy_text(id, strnlen(id, sizeof(key) + 4), key, sizeof(key));
        for (size_t i = 0; i < p->n_layers; i++)
                if (streq(p->layers[i].id, key))
                        return &p->layers[i];
        if (p->n_layers >= DOCKER_PULL_LAYERS_MAX)
                return NULL;
        p->layers[p->n_layers] = (DockerPullLayer) {};
        memcpy(p->layers[p->n_layers].id, key, strlen(key) + 1);
        return &p->layers[p->n_layers++];
}

static uint64_t json_u64_member(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 1e18))
                return 0;
        return (uint64_t) v->valuedouble;
}

static bool docker_pull_status_is_done(const char *s) {
        return strcasecmp(s, "Download complete") == 0 || strcasecmp(s, "Pull complete") == 0 ||
               strcasecmp(s, "Already exists") == 0;
}

static void docker_pull_object(DockerPull *p, const cJSON *o) {
        const cJSON *detail = cJSON_GetObjectItemCaseSensitive(o, "progressDetail");
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "error");
        const char *status = json_string_member(o, "status"), *m;
        DockerPullLayer *l;

        p->objects++;
        if (err && !cJSON_IsNull(err)) {
                m = json_string_member(cJSON_GetObjectItemCaseSensitive(o, "errorDetail"), "message");
                if (isempty(m))
                        m = cJSON_IsString(err) ? err->valuestring : NULL;
                if (!p->failed)
                        docker_copy_string(m ?: "pull failed", p->error);
                if (isempty(p->error))
                        memcpy(p->error, "pull failed", sizeof("pull failed"));
                p->failed = true;
                return;
        }
        if (!status)
                return;
        docker_copy_text(status, strnlen(status, sizeof(p->status) + 4), p->status, sizeof(p->status));
        l = docker_pull_layer(p, json_string_member(o, "id"));
        if (!l)
                return;
        if (docker_pull_status_is_done(status)) {
                l->done = true;
                if (l->total > 0)
                        l->current = l->total;
                return;
        }
        if (cJSON_IsObject(detail) && cJSON_GetObjectItemCaseSensitive(detail, "total") &&
            strcasecmp(status, "Downloading") == 0) {
                l->total = json_u64_member(detail, "total");
                l->current = MIN(json_u64_member(detail, "current"), l->total);
        }
}

static void docker_pull_line(DockerPull *p, const char *s, size_t n) {
        _cleanup_(cJSON_Deletep) cJSON *o = NULL;

        while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
                n--;
        if (n == 0)
                return;
        o = json_parse_exact(s, n);
        if (!cJSON_IsObject(o)) {
                p->garbage++;
                return;
        }
        docker_pull_object(p, o);
}

static int docker_pull_carry(DockerPull *p, const char *data, size_t n) {
        char *c;

        if (p->line_len + n > DOCKER_PULL_LINE_MAX)
                return -EBADMSG;
        c = realloc(p->line, p->line_len + n + 1);
        if (!c)
                return -ENOMEM;
        memcpy(c + p->line_len, data, n);
        p->line_len += n;
        c[p->line_len] = 0;
        p->line = c;
        return 0;
}

int docker_pull_feed(DockerPull *p, const char *data, size_t len) {
        while (len > 0) {
                const char *nl = memchr(data, '\n', len);
                size_t n = nl ? (size_t) (nl - data) : len;
                int r;

                if (!nl)
                        return docker_pull_carry(p, data, n);
                if (p->line_len > 0) {
                        r = docker_pull_carry(p, data, n);
                        if (r < 0)
                                return r;
                        docker_pull_line(p, p->line, p->line_len);
                        p->line_len = 0;
                } else {
                        if (n > DOCKER_PULL_LINE_MAX)
                                return -EBADMSG;
                        docker_pull_line(p, data, n);
                }
                data += n + 1;
                len -= n + 1;
        }
        return 0;
}

int docker_pull_finish(DockerPull *p) {
        if (p->line_len > 0)
                docker_pull_line(p, p->line, p->line_len);
        docker_pull_done(p);
        return 0;
}

void docker_pull_bytes(const DockerPull *p, uint64_t *ret_current, uint64_t *ret_total) {
        uint64_t c = 0, t = 0;

        for (size_t i = 0; i < p->n_layers; i++) {
                c += p->layers[i].current;
                t += p->layers[i].total;
        }
        *ret_current = c;
        *ret_total = t;
}

void docker_pull_layers(const DockerPull *p, size_t *ret_seen, size_t *ret_done) {
        size_t d = 0;

        for (size_t i = 0; i < p->n_layers; i++)
                if (p->layers[i].done)
                        d++;
        *ret_seen = p->n_layers;
        *ret_done = d;
}

/* ---------------------------------------------------------------- signals */

int docker_signal_name(int sig, char buf[static 16]) {
        const char *n = signal_to_config_string(sig);

        if (sig > 0 && n) {
                snprintf(buf, 16, "%s", n);
                return 0;
        }
        if (sig >= SIGRTMIN && sig <= SIGRTMAX) {
                snprintf(buf, 16, "SIGRTMIN+%d", sig - SIGRTMIN);
                return 0;
        }
        return -EINVAL;
}
