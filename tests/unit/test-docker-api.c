/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "unit-helpers.h"

#include "docker-api.h"
#include "json-util.h"
#include "runtime.h"

/* Fixtures without a prefix are real answers of Podman 4.3.1's compatible API (README.md there). */
static char *fixture(const char *name, size_t *ret_len) {
        return fixture_read("docker", name, ret_len, false);
}

/* ---------------------------------------------------------------- create body */

static Config test_config = { .job_id = (char *) "job-1" };

static TaskConfig test_task(void) {
        static char *command[] = { (char *) "python", (char *) "train.py", (char *) "--lr=0.1", NULL };

        return (TaskConfig) {
                .name = (char *) "main",
                .runtime = TASK_RUNTIME_DOCKER,
                .image = (char *) "registry.example:5000/ml/train:1.2",
                .command = command,
                .workdir = (char *) "/work",
                .user = (char *) "1000:1000",
                .network = NETWORK_MODE_BRIDGE,
                .checkpoint_dir = (char *) "/var/lib/trainsupd/checkpoints/main",
                .mount_at = (char *) "/checkpoints",
                .stop_grace_s = 45,
        };
}

static cJSON *create_json(const TaskConfig *tc, char **env) {
        _cleanup_free_ char *body = NULL;
        cJSON *j;

        assert_int_equal(docker_create_body(&test_config, tc, env, &body), 0);
        j = json_parse_exact(body, strlen(body));
        assert_non_null(j);
        return j;
}

static const cJSON *get(const cJSON *o, const char *key) {
        return cJSON_GetObjectItemCaseSensitive(o, key);
}

static void assert_json(const cJSON *v, const char *expected) {
        _cleanup_free_ char *s = cJSON_PrintUnformatted(v);

        assert_non_null(s);
        assert_string_equal(s, expected);
}

static void test_create_body(void **state) {
        char *env[] = { (char *) "A=b c", (char *) "TRAINSUPD_JOB_ID=job-1", NULL };
        TaskConfig tc = test_task();
        _cleanup_(cJSON_Deletep) cJSON *j = create_json(&tc, env);
        const cJSON *host = get(j, "HostConfig");

        assert_string_equal(get(j, "Image")->valuestring, "registry.example:5000/ml/train:1.2");
        assert_json(get(j, "Cmd"), "[\"python\",\"train.py\",\"--lr=0.1\"]");
        assert_json(get(j, "Env"), "[\"A=b c\",\"TRAINSUPD_JOB_ID=job-1\"]");
        assert_string_equal(get(j, "WorkingDir")->valuestring, "/work");
        assert_string_equal(get(j, "User")->valuestring, "1000:1000");
        assert_json(get(j, "Labels"), "{\"trainsupd.job\":\"job-1\",\"trainsupd.task\":\"main\"}");
        assert_true(cJSON_IsFalse(get(j, "Tty")));
        assert_true(cJSON_IsFalse(get(j, "OpenStdin")));
        assert_string_equal(get(j, "StopSignal")->valuestring, "SIGTERM");
        assert_int_equal(get(j, "StopTimeout")->valueint, 45);
        assert_json(get(host, "Binds"), "[\"/var/lib/trainsupd/checkpoints/main:/checkpoints:rw\"]");
        assert_null(get(host, "Mounts"));
        assert_string_equal(get(host, "NetworkMode")->valuestring, "bridge");
        assert_true(cJSON_IsTrue(get(host, "Init")));
        assert_json(get(host, "RestartPolicy"), "{\"Name\":\"no\"}");
        assert_null(get(host, "DeviceRequests"));
}

static void test_create_body_defaults(void **state) {
        TaskConfig tc = test_task();
        char *env[] = { NULL };

        tc.command = NULL;
        tc.workdir = tc.user = NULL;
        tc.network = NETWORK_MODE_NONE;
        _cleanup_(cJSON_Deletep) cJSON *j = create_json(&tc, env);

        assert_null(get(j, "Cmd")); /* the image's default command */
        assert_null(get(j, "WorkingDir"));
        assert_null(get(j, "User"));
        assert_json(get(j, "Env"), "[]");
        /* Always sent: Podman uses its own default otherwise. */
        assert_string_equal(get(get(j, "HostConfig"), "NetworkMode")->valuestring, "none");

        tc.network = NETWORK_MODE_HOST;
        _cleanup_(cJSON_Deletep) cJSON *h = create_json(&tc, NULL);
        assert_string_equal(get(get(h, "HostConfig"), "NetworkMode")->valuestring, "host");

        _cleanup_free_ char *body = NULL;
        tc.image = NULL;
        assert_int_equal(docker_create_body(&test_config, &tc, env, &body), -EINVAL);
}

static void test_create_body_mount(void **state) {
        TaskConfig tc = test_task();

        /* Binds cannot say a path with ':' in it. */
        tc.checkpoint_dir = (char *) "/data/run:1";
        _cleanup_(cJSON_Deletep) cJSON *j = create_json(&tc, NULL);
        const cJSON *host = get(j, "HostConfig");

        assert_null(get(host, "Binds"));
        assert_json(get(host, "Mounts"),
                    "[{\"Type\":\"bind\",\"Source\":\"/data/run:1\",\"Target\":\"/checkpoints\",\"ReadOnly\":false}]");
}

static void test_create_body_gpus(void **state) {
        static char *ids[] = { (char *) "0", (char *) "GPU-8f2c", NULL };
        static char *no_ids[] = { NULL };
        static const struct {
                GpuMode mode;
                unsigned count;
                char **ids;
                const char *expected; /* NULL: no DeviceRequests */
        } cases[] = {
                /* Exactly what `docker run --gpus all|2|'"device=0,GPU-8f2c"'` sends. */
                { GPU_MODE_ALL, 0, NULL,
                  "[{\"Driver\":\"\",\"Count\":-1,\"DeviceIDs\":null,\"Capabilities\":[[\"gpu\"]],\"Options\":{}}]" },
                { GPU_MODE_COUNT, 2, NULL,
                  "[{\"Driver\":\"\",\"Count\":2,\"DeviceIDs\":null,\"Capabilities\":[[\"gpu\"]],\"Options\":{}}]" },
                { GPU_MODE_IDS, 0, ids,
                  "[{\"Driver\":\"\",\"Count\":0,\"DeviceIDs\":[\"0\",\"GPU-8f2c\"],\"Capabilities\":[[\"gpu\"]],"
                  "\"Options\":{}}]" },
                { GPU_MODE_COUNT, 0, NULL, NULL },
                { GPU_MODE_NONE, 0, NULL, NULL },
                { GPU_MODE_IDS, 0, no_ids, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                TaskConfig tc = test_task();

                tc.gpus = cases[i].mode;
                tc.gpu_count = cases[i].count;
                tc.gpu_ids = cases[i].ids;
                _cleanup_(cJSON_Deletep) cJSON *j = create_json(&tc, NULL);
                const cJSON *dr = get(get(j, "HostConfig"), "DeviceRequests");

                if (!cases[i].expected)
                        assert_null(dr);
                else
                        assert_json(dr, cases[i].expected);
        }
}

/* ---------------------------------------------------------------- names and paths */

static void test_names_and_paths(void **state) {
        _cleanup_free_ char *name = NULL, *list = NULL, *inspect = NULL, *pull = NULL, *digest = NULL;

        assert_int_equal(docker_container_name("job-1.a_b", "main", &name), 0);
        assert_string_equal(name, "trainsupd-job-1.a_b-main");
        assert_int_equal(docker_container_name("", "main", &(char *) { NULL }), -EINVAL);

        assert_int_equal(docker_list_path("job-1", "main", &list), 0);
        assert_string_equal(list, "/containers/json?all=1&filters="
                                  "%7B%22label%22%3A%5B%22trainsupd.job%3Djob-1%22%2C%22trainsupd.task%3Dmain%22%5D%7D");

        assert_int_equal(docker_image_inspect_path("127.0.0.1:5055/ml/train:v1", &inspect), 0);
        assert_string_equal(inspect, "/images/127.0.0.1:5055/ml/train:v1/json");
        assert_int_equal(docker_image_pull_path("127.0.0.1:5055/ml/train:v1", &pull), 0);
        assert_string_equal(pull, "/images/create?fromImage=127.0.0.1%3A5055%2Fml%2Ftrain&tag=v1");
        assert_int_equal(docker_image_pull_path("busybox@sha256:abcd", &digest), 0);
        assert_string_equal(digest, "/images/create?fromImage=busybox&tag=sha256%3Aabcd");
}

static void test_image_split(void **state) {
        static const struct {
                const char *image, *from, *tag;
        } cases[] = {
                { "busybox", "busybox", "latest" },
                { "busybox:1.36", "busybox", "1.36" },
                { "library/busybox:1.36", "library/busybox", "1.36" },
                { "localhost:5000/ml/train", "localhost:5000/ml/train", "latest" },
                { "localhost:5000/ml/train:v2", "localhost:5000/ml/train", "v2" },
                { "ghcr.io/org/img@sha256:0123", "ghcr.io/org/img", "sha256:0123" },
                { "ghcr.io/org/img:v1@sha256:0123", "ghcr.io/org/img", "sha256:0123" }, /* the digest wins */
                { "localhost:5000", "localhost", "5000" },  /* as docker reads it */
                { "", NULL, NULL },
                { "img:", NULL, NULL },
                { "img@", NULL, NULL },
                { ":tag", NULL, NULL },
                { "@sha256:0", NULL, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *from = NULL, *tag = NULL;
                int r = docker_image_split(cases[i].image, &from, &tag);

                if (!cases[i].from) {
                        if (r != -EINVAL)
                                fail_msg("%s: %d, expected -EINVAL", cases[i].image, r);
                        continue;
                }
                if (r != 0)
                        fail_msg("%s: %d", cases[i].image, r);
                assert_string_equal(from, cases[i].from);
                assert_string_equal(tag, cases[i].tag);
        }
        assert_int_equal(docker_image_split(NULL, &(char *) { NULL }, &(char *) { NULL }), -EINVAL);
}

/* ---------------------------------------------------------------- container list */

static void parse_list(const char *file, const char *job, const char *task, DockerContainer **ret,
                       size_t *ret_n) {
        size_t len;
        char *body = fixture(file, &len);

        assert_int_equal(docker_parse_container_list(body, len, job, task, ret, ret_n), 0);
        free(body);
}

static void test_list_podman(void **state) {
        static const struct {
                const char *file;
                size_t n;
                DockerState state;
        } cases[] = {
                { "list-empty.json", 0, 0 },
                { "list-created.json", 1, DOCKER_STATE_CREATED },
                { "list-running.json", 1, DOCKER_STATE_RUNNING },
                { "list-exited.json", 1, DOCKER_STATE_EXITED },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ DockerContainer *l = NULL;
                size_t n = SIZE_MAX;

                parse_list(cases[i].file, "fx", "main", &l, &n);
                assert_int_equal(n, cases[i].n);
                if (n == 0) {
                        assert_int_equal(docker_pick_container(l, n), -ENOENT);
                        continue;
                }
                assert_int_equal(l[0].state, cases[i].state);
                assert_int_equal(strlen(l[0].id), 64);
                assert_true(l[0].created > 1700000000);
                assert_int_equal(docker_pick_container(l, n), 0);
        }

        /* Labels are checked again: another job's or task's container is not ours. */
        _cleanup_free_ DockerContainer *other = NULL;
        size_t n = SIZE_MAX;
        parse_list("list-running.json", "fx", "eval", &other, &n);
        assert_int_equal(n, 0);
        parse_list("list-running.json", "f", "main", &other, &n);
        assert_int_equal(n, 0);
}

static void test_list_mixed(void **state) {
        _cleanup_free_ DockerContainer *l = NULL;
        size_t n = 0;
        int k;

        parse_list("docker-list-mixed.json", "j", "main", &l, &n);
        /* 1111 exited, 2222 running, 5555 created, 7777 unknown; foreign and malformed ones skipped. */
        assert_int_equal(n, 4);
        assert_string_equal(l[0].id, "1111111111111111111111111111111111111111111111111111111111111111");
        assert_int_equal(l[0].state, DOCKER_STATE_EXITED);
        assert_int_equal(l[1].state, DOCKER_STATE_RUNNING);
        assert_int_equal(l[2].state, DOCKER_STATE_CREATED);
        assert_int_equal(l[3].state, DOCKER_STATE_UNKNOWN);
        k = docker_pick_container(l, n);
        assert_int_equal(k, 1);
        assert_string_equal(l[k].id, "2222222222222222222222222222222222222222222222222222222222222222");
}

static void test_list_garbage(void **state) {
        static const char *const bodies[] = {
                "", "{}", "{[not json", "null", "\"x\"", "[1,2", "[]]", "[] trailing",
        };
        DockerContainer *l = NULL;
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(bodies); i++)
                assert_int_equal(docker_parse_container_list(bodies[i], strlen(bodies[i]), "j", "t", &l, &n),
                                 -EBADMSG);
        /* An embedded NUL is not JSON either. */
        assert_int_equal(docker_parse_container_list("[]\0", 3, "j", "t", &l, &n), -EBADMSG);
        static const char odd[] = "[1, \"x\", null, {}]";
        assert_int_equal(docker_parse_container_list(odd, strlen(odd), "j", "t", &l, &n), 0);
        assert_int_equal(n, 0);
        assert_null(l);
}

static void test_list_cap(void **state) {
        _cleanup_free_ char *body = NULL;
        _cleanup_free_ DockerContainer *l = NULL;
        size_t len = 0, n = 0;

        body = malloc(200 * 256 + 16);
        assert_non_null(body);
        body[len++] = '[';
        for (unsigned i = 0; i < 200; i++)
                len += (size_t) sprintf(body + len, "%s{\"Id\":\"%064x\",\"State\":\"exited\",\"Labels\":"
                                        "{\"trainsupd.job\":\"j\",\"trainsupd.task\":\"t\"}}", i ? "," : "", i + 1);
        body[len++] = ']';
        assert_int_equal(docker_parse_container_list(body, len, "j", "t", &l, &n), 0);
        assert_int_equal(n, DOCKER_LIST_MAX);
}

static void test_pick(void **state) {
        DockerContainer l[] = {
                { .id = "a", .state = DOCKER_STATE_EXITED, .created = 300 },
                { .id = "b", .state = DOCKER_STATE_CREATED, .created = 100 },
                { .id = "c", .state = DOCKER_STATE_EXITED, .created = 400 },
                { .id = "d", .state = DOCKER_STATE_PAUSED, .created = 50 },
                { .id = "e", .state = DOCKER_STATE_RUNNING, .created = 60 },
        };

        assert_int_equal(docker_pick_container(l, 5), 4);    /* the newest live one */
        assert_int_equal(docker_pick_container(l, 4), 3);    /* paused counts as live */
        assert_int_equal(docker_pick_container(l, 3), 1);    /* created before exited */
        l[1].state = DOCKER_STATE_DEAD;
        assert_int_equal(docker_pick_container(l, 3), 2);    /* the newest exited */
        assert_int_equal(docker_pick_container(l, 0), -ENOENT);
}

static void test_ids_and_states(void **state) {
        char long_id[DOCKER_ID_MAX + 2];

        assert_true(docker_id_is_valid("7f0c99316ad0f3eb5298e227eb59cb490e1e09da89c12148bf63adadfee5ae34"));
        assert_true(docker_id_is_valid("abcDEF012"));
        assert_false(docker_id_is_valid(""));
        assert_false(docker_id_is_valid(NULL));
        assert_false(docker_id_is_valid("../x"));
        assert_false(docker_id_is_valid("a b"));
        assert_false(docker_id_is_valid("a?x=1"));
        memset(long_id, 'a', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = 0;
        assert_false(docker_id_is_valid(long_id));
        long_id[DOCKER_ID_MAX] = 0;
        assert_true(docker_id_is_valid(long_id));

        for (DockerState s = 0; s < _DOCKER_STATE_MAX; s++)
                assert_int_equal(docker_state_from_string(docker_state_to_string(s)), s);
        assert_int_equal(docker_state_from_string("Running"), DOCKER_STATE_RUNNING);
        /* Podman's own names. */
        assert_int_equal(docker_state_from_string("stopped"), DOCKER_STATE_EXITED);
        assert_int_equal(docker_state_from_string("configured"), DOCKER_STATE_CREATED);
        assert_int_equal(docker_state_from_string("initialized"), DOCKER_STATE_CREATED);
        assert_int_equal(docker_state_from_string("stopping"), DOCKER_STATE_RUNNING);
        assert_int_equal(docker_state_from_string("exploded"), DOCKER_STATE_UNKNOWN);
        assert_int_equal(docker_state_from_string(NULL), DOCKER_STATE_UNKNOWN);
        assert_null(docker_state_to_string(_DOCKER_STATE_MAX));
        assert_true(docker_state_is_live(DOCKER_STATE_RESTARTING));
        assert_false(docker_state_is_live(DOCKER_STATE_CREATED));
        assert_false(docker_state_is_live(DOCKER_STATE_UNKNOWN));
}

/* ---------------------------------------------------------------- inspect, wait, create */

static void test_inspect(void **state) {
        static const struct {
                const char *file;
                DockerState state;
                bool running, oom;
                int code;
        } cases[] = {
                { "inspect-created.json", DOCKER_STATE_CREATED, false, false, 0 },
                { "inspect-running.json", DOCKER_STATE_RUNNING, true, false, 0 },
                { "inspect-exited.json", DOCKER_STATE_EXITED, false, false, 7 },
                { "inspect-killed.json", DOCKER_STATE_EXITED, false, false, 137 },     /* raw 128+9 */
                { "inspect-stopped.json", DOCKER_STATE_EXITED, false, false, 1 },      /* Podman's "stopped" */
                { "inspect-stopped-init-enoent.json", DOCKER_STATE_EXITED, false, false, 1 },
                { "docker-inspect-oom.json", DOCKER_STATE_EXITED, false, true, 137 },
                { "docker-inspect-paused.json", DOCKER_STATE_PAUSED, true, false, 0 },
                { "docker-inspect-dead.json", DOCKER_STATE_DEAD, false, false, 255 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                size_t len;
                char *body = fixture(cases[i].file, &len);
                DockerInspect in;

                if (docker_parse_inspect(body, len, &in) != 0)
                        fail_msg("%s does not parse", cases[i].file);
                if (in.state != cases[i].state || in.running != cases[i].running || in.oom_killed != cases[i].oom ||
                    !in.has_exit_code || in.exit_code != cases[i].code)
                        fail_msg("%s: state %d running %d oom %d code %d", cases[i].file, in.state, in.running,
                                 in.oom_killed, in.exit_code);
                free(body);
        }
}

static void test_inspect_odd(void **state) {
        DockerInspect in;
        size_t len;
        char *body = fixture("docker-inspect-dead.json", &len);

        assert_int_equal(docker_parse_inspect(body, len, &in), 0);
        assert_true(in.dead);
        /* The message is kept, control characters turned into spaces. */
        assert_string_equal(in.error, "driver failed programming external connectivity on endpoint second line");
        free(body);

        body = fixture("inspect-missing.json", &len);
        assert_int_equal(docker_parse_inspect(body, len, &in), -EBADMSG);
        free(body);

#define INSPECT(s) docker_parse_inspect(s, strlen(s), &in)
        assert_int_equal(INSPECT(""), -EBADMSG);
        assert_int_equal(INSPECT("[]"), -EBADMSG);
        assert_int_equal(INSPECT("{\"State\":\"running\"}"), -EBADMSG);
        assert_int_equal(INSPECT("{\"State\":{\"Status\":\"exited\",\"ExitCode\":1e300}}"), 0);
        assert_false(in.has_exit_code);
        assert_int_equal(INSPECT("{\"State\":{\"Status\":\"exited\",\"ExitCode\":\"3\"}}"), 0);
        assert_false(in.has_exit_code);
        /* Running wins over a Status that disagrees, in both directions. */
        assert_int_equal(INSPECT("{\"State\":{\"Status\":\"exited\",\"Running\":true}}"), 0);
        assert_true(in.running);
        assert_int_equal(in.state, DOCKER_STATE_RUNNING);
        assert_int_equal(INSPECT("{\"State\":{\"Status\":\"running\",\"Running\":false,\"ExitCode\":2}}"), 0);
        assert_false(in.running);
        assert_int_equal(in.state, DOCKER_STATE_EXITED);
        assert_int_equal(in.exit_code, 2);
        /* No Running member: the status decides. */
        assert_int_equal(INSPECT("{\"State\":{\"Status\":\"running\"}}"), 0);
        assert_true(in.running);
#undef INSPECT
}

static void test_wait(void **state) {
        char msg[DOCKER_MESSAGE_MAX + 1];
        size_t len;
        char *body;
        int code = 0;

        body = fixture("wait-ok.json", &len);
        assert_int_equal(docker_parse_wait(body, len, &code, msg), 0);
        assert_int_equal(code, 7);
        assert_string_equal(msg, "");
        free(body);

        body = fixture("wait-signal.json", &len);
        assert_int_equal(docker_parse_wait(body, len, &code, msg), 0);
        assert_int_equal(code, 137);
        free(body);

        body = fixture("docker-wait-error.json", &len);
        assert_int_equal(docker_parse_wait(body, len, &code, msg), 0);
        assert_int_equal(code, -1);
        assert_string_equal(msg, "container 0123456789ab: driver \"overlay2\" failed to remove root filesystem");
        free(body);

        body = fixture("wait-missing.json", &len);
        assert_int_equal(docker_parse_wait(body, len, &code, msg), -EBADMSG);
        free(body);
        assert_int_equal(docker_parse_wait("{\"StatusCode\":\"1\"}", 18, &code, msg), -EBADMSG);
        assert_int_equal(docker_parse_wait("garbage", 7, &code, msg), -EBADMSG);
}

static void test_create_answer(void **state) {
        _cleanup_free_ char *id = NULL;
        size_t len;
        char *body = fixture("create-ok.json", &len);

        assert_int_equal(docker_parse_create_answer(body, len, &id), 0);
        assert_int_equal(strlen(id), 64);
        free(body);

        char *none = NULL;
        assert_int_equal(docker_parse_create_answer("{\"Id\":\"../x\"}", 13, &none), -EBADMSG);
        assert_int_equal(docker_parse_create_answer("{\"Id\":1}", 8, &none), -EBADMSG);
        assert_int_equal(docker_parse_create_answer("[]", 2, &none), -EBADMSG);
        assert_null(none);
}

/* ---------------------------------------------------------------- error answers */

static const char *message_of(const char *file, char buf[static DOCKER_MESSAGE_MAX + 1]) {
        size_t len;
        char *body = fixture(file, &len);

        docker_error_message(body, len, buf);
        free(body);
        return buf;
}

static void test_error_message(void **state) {
        char m[DOCKER_MESSAGE_MAX + 1];

        /* Podman: {"cause","message","response"}: the message. */
        assert_string_equal(message_of("kill-bad-signal.json", m), "invalid signal: SIGBOGUS");
        assert_string_equal(message_of("inspect-missing.json", m),
                            "no container with name or ID \"trainsupd-fx-main\" found: no such container");
        assert_string_equal(message_of("docker-no-such-container.json", m), "No such container: 0123456789ab");
        /* No message: the cause. */
#define MSG(s) docker_error_message(s, strlen(s), m)
        assert_string_equal(MSG("{\"cause\":\"boom\",\"response\":500}"), "boom");
        /* Plain text (a proxy, an old engine). */
        assert_string_equal(MSG("page not found\n"), "page not found");
        assert_string_equal(docker_error_message("", 0, m), "");
        assert_string_equal(docker_error_message(NULL, 0, m), "");
        assert_string_equal(MSG("{\"message\":42}"), "");
        assert_string_equal(docker_error_message("bin\0ary", 7, m), "");
        assert_string_equal(MSG("{\"message\":\"a\\u0000b\"}"), "a");
        assert_string_equal(MSG("{\"message\":\"  tab\\there\\n\"}"), "tab here");
#undef MSG
}

static void test_error_message_bounded(void **state) {
        char m[DOCKER_MESSAGE_MAX + 1], body[3 * DOCKER_MESSAGE_MAX];
        size_t len = 0;

        /* A long message is cut at DOCKER_MESSAGE_MAX bytes, never inside a UTF-8 sequence. */
        len += (size_t) sprintf(body, "{\"message\":\"x");
        for (unsigned i = 0; i < DOCKER_MESSAGE_MAX; i++)
                len += (size_t) sprintf(body + len, "\xc3\xa9"); /* é, 2 bytes */
        len += (size_t) sprintf(body + len, "\"}");
        docker_error_message(body, len, m);
        assert_int_equal(strlen(m), DOCKER_MESSAGE_MAX - 1); /* "x" + 255 × 2 bytes; half an é dropped */
        assert_int_equal((unsigned char) m[strlen(m) - 1], 0xa9);

        /* A complete sequence at the very end stays. */
        len = (size_t) sprintf(body, "{\"message\":\"");
        for (unsigned i = 0; i < DOCKER_MESSAGE_MAX / 2; i++)
                len += (size_t) sprintf(body + len, "\xc3\xa9");
        len += (size_t) sprintf(body + len, "tail\"}");
        docker_error_message(body, len, m);
        assert_int_equal(strlen(m), DOCKER_MESSAGE_MAX);

        /* Plain text is cut the same way; a long plain-text body is not taken. */
        char expected[DOCKER_MESSAGE_MAX + 1];
        _cleanup_free_ char *huge = malloc(5000);

        assert_non_null(huge);
        memset(body, 'a', sizeof(body));
        memset(expected, 'a', DOCKER_MESSAGE_MAX);
        expected[DOCKER_MESSAGE_MAX] = 0;
        assert_string_equal(docker_error_message(body, sizeof(body), m), expected);
        memset(huge, 'a', 5000);
        assert_string_equal(docker_error_message(huge, 5000, m), "");
}

static void test_error_classes(void **state) {
        char m[DOCKER_MESSAGE_MAX + 1];

        assert_true(docker_error_is_name_conflict(500, message_of("create-conflict.json", m)));   /* Podman */
        assert_true(docker_error_is_name_conflict(409, message_of("docker-create-conflict.json", m)));
        assert_false(docker_error_is_name_conflict(500, message_of("start-enoent.json", m)));
        assert_false(docker_error_is_name_conflict(404, message_of("create-no-image.json", m)));

        assert_true(docker_error_is_not_running(500, message_of("kill-stopped.json", m)));       /* Podman */
        assert_true(docker_error_is_not_running(409, message_of("docker-kill-not-running.json", m)));
        assert_true(docker_error_is_not_running(304, ""));
        assert_false(docker_error_is_not_running(500, message_of("kill-bad-signal.json", m)));
        assert_false(docker_error_is_not_running(404, message_of("inspect-missing.json", m)));

        assert_true(docker_error_is_command_not_found(message_of("start-enoent.json", m)));      /* Podman */
        assert_true(docker_error_is_command_not_found(message_of("docker-start-enoent.json", m)));
        assert_true(docker_error_is_command_not_found("exec: \"/x\": stat /x: no such file or directory: unknown"));
        assert_false(docker_error_is_command_not_found(message_of("create-no-image.json", m)));
        assert_false(docker_error_is_command_not_found(NULL));
}

static void test_init_exec_failure(void **state) {
        static const char catatonit[] = "ERROR (catatonit:6): failed to exec pid1: No such file or directory\n";
        static const char tini[] = "[FATAL tini (7)] exec train.py failed: No such file or directory\n";

        assert_true(docker_output_is_init_exec_failure(catatonit, strlen(catatonit)));
        assert_true(docker_output_is_init_exec_failure(tini, strlen(tini)));
        assert_false(docker_output_is_init_exec_failure("epoch 1 failed: loss is NaN\n", 28));
        assert_false(docker_output_is_init_exec_failure("", 0));
        assert_false(docker_output_is_init_exec_failure("catatonit\0failed to exec", 24));
}

/* ---------------------------------------------------------------- pull progress */

static void pull_all(DockerPull *p, const char *data, size_t len, size_t step) {
        for (size_t i = 0; i < len; i += step)
                assert_int_equal(docker_pull_feed(p, data + i, MIN(step, len - i)), 0);
        assert_int_equal(docker_pull_finish(p), 0);
}

static void test_pull_podman(void **state) {
        size_t len, seen, done;
        char *data = fixture("pull-ok.ndjson", &len);
        DockerPull p = {};
        uint64_t cur, total;

        pull_all(&p, data, len, 5);
        assert_false(p.failed);
        assert_int_equal(p.objects, 4);
        assert_int_equal(p.garbage, 0);
        docker_pull_layers(&p, &seen, &done);
        assert_int_equal(seen, 2);
        assert_int_equal(done, 2); /* "Already exists" and "Download complete" */
        docker_pull_bytes(&p, &cur, &total);
        assert_int_equal(total, 0); /* Podman sends no byte counts */
        assert_string_equal(p.status, "Download complete");
        free(data);

        static const char *const failures[][2] = {
                { "pull-manifest-unknown.ndjson",
                  "initializing source docker://127.0.0.1:5055/trainsupd/nope:v1: reading manifest v1 in "
                  "127.0.0.1:5055/trainsupd/nope: manifest unknown: manifest unknown" },
                { "pull-refused.ndjson",
                  "initializing source docker://127.0.0.1:5056/trainsupd/nope:v1: pinging container registry "
                  "127.0.0.1:5056: Get \"https://127.0.0.1:5056/v2/\": dial tcp 127.0.0.1:5056: connect: "
                  "connection refused" },
                { "docker-pull-denied.ndjson",
                  "pull access denied for nope, repository does not exist or may require 'docker login': denied: "
                  "requested access to the resource is denied" },
        };
        for (size_t i = 0; i < ELEMENTSOF(failures); i++) {
                p = (DockerPull) {};
                data = fixture(failures[i][0], &len);
                pull_all(&p, data, len, 11);
                assert_true(p.failed);
                assert_string_equal(p.error, failures[i][1]);
                free(data);
        }
}

static void test_pull_progress(void **state) {
        size_t len;
        char *data = fixture("docker-pull-progress.ndjson", &len);

        for (size_t step = 1; step <= len; step += 37) {
                DockerPull p = {};
                uint64_t cur, total;
                size_t seen, done;

                pull_all(&p, data, len, step);
                assert_false(p.failed);
                assert_int_equal(p.objects, 18);
                docker_pull_layers(&p, &seen, &done);
                assert_int_equal(seen, 3); /* "1.2" (the tag line) and the two layers */
                assert_int_equal(done, 2);
                docker_pull_bytes(&p, &cur, &total);
                assert_int_equal(total, 31457280 + 4194304);
                assert_int_equal(cur, total);
                assert_string_equal(p.status, "Status: Downloaded newer image for registry.example/ml/train:1.2");
        }

        /* Midway: bytes of the layers seen so far. */
        DockerPull p = {};
        const char *cut = strstr(data, "{\"status\":\"Verifying Checksum\"");
        uint64_t cur, total;

        assert_non_null(cut);
        assert_int_equal(docker_pull_feed(&p, data, (size_t) (cut - data)), 0);
        docker_pull_bytes(&p, &cur, &total);
        assert_int_equal(cur, 15728640 + 2097152);
        assert_int_equal(total, 31457280 + 4194304);
        assert_string_equal(p.status, "Downloading");
        docker_pull_done(&p);
        free(data);
}

static void test_pull_hostile(void **state) {
        size_t len;
        char *data = fixture("pull-garbage.ndjson", &len);
        DockerPull p = {};
        size_t seen, done;

        /* Lines that are not objects are skipped; the last line without newline counts at the end. */
        pull_all(&p, data, len, 4);
        assert_int_equal(p.garbage, 2);
        assert_int_equal(p.objects, 3);
        docker_pull_layers(&p, &seen, &done);
        assert_int_equal(done, 1);
        assert_string_equal(p.status, "Pull complete");
        assert_false(p.failed);
        free(data);

        /* A line that never ends is a protocol error, whether it comes at once or in pieces. */
        char *big = malloc(DOCKER_PULL_LINE_MAX + 2);
        assert_non_null(big);
        memset(big, 'x', DOCKER_PULL_LINE_MAX + 1);
        big[DOCKER_PULL_LINE_MAX + 1] = '\n';
        p = (DockerPull) {};
        assert_int_equal(docker_pull_feed(&p, big, DOCKER_PULL_LINE_MAX + 2), -EBADMSG);
        docker_pull_done(&p);
        p = (DockerPull) {};
        int r = 0;
        for (size_t i = 0; i <= DOCKER_PULL_LINE_MAX && r == 0; i += 1000)
                r = docker_pull_feed(&p, big, MIN((size_t) 1000, DOCKER_PULL_LINE_MAX + 1 - i));
        assert_int_equal(r, -EBADMSG);
        docker_pull_done(&p);
        free(big);

        /* Error objects in odd shapes. */
        p = (DockerPull) {};
#define FEED(s) docker_pull_feed(&p, s, strlen(s))
        assert_int_equal(FEED("{\"error\":\"plain\"}\n{\"error\":\"second\"}\n"), 0);
        assert_true(p.failed);
        assert_string_equal(p.error, "plain"); /* the first one */
        p = (DockerPull) {};
        assert_int_equal(FEED("{\"error\":{},\"errorDetail\":5}\n"), 0);
        assert_true(p.failed);
        assert_string_equal(p.error, "pull failed");
        p = (DockerPull) {};
        assert_int_equal(FEED("{\"error\":null,\"status\":\"ok\"}\n"), 0);
        assert_false(p.failed);
#undef FEED

        /* More layers than tracked, hostile numbers. */
        p = (DockerPull) {};
        for (unsigned i = 0; i < DOCKER_PULL_LAYERS_MAX + 10; i++) {
                char line[160];
                int n = snprintf(line, sizeof(line),
                                 "{\"status\":\"Downloading\",\"id\":\"%u\","
                                 "\"progressDetail\":{\"current\":-5,\"total\":1e300}}\n", i);
                assert_int_equal(docker_pull_feed(&p, line, (size_t) n), 0);
        }
        docker_pull_layers(&p, &seen, &done);
        assert_int_equal(seen, DOCKER_PULL_LAYERS_MAX);
        uint64_t cur, total;
        docker_pull_bytes(&p, &cur, &total);
        assert_int_equal(cur, 0);
        assert_int_equal(total, 0);
        docker_pull_done(&p);
}

/* ---------------------------------------------------------------- signals, vtable */

static void test_signal_name(void **state) {
        char buf[16];

        assert_int_equal(docker_signal_name(SIGUSR1, buf), 0);
        assert_string_equal(buf, "SIGUSR1");
        assert_int_equal(docker_signal_name(SIGTERM, buf), 0);
        assert_string_equal(buf, "SIGTERM");
        assert_int_equal(docker_signal_name(SIGKILL, buf), 0);
        assert_string_equal(buf, "SIGKILL");
        assert_int_equal(docker_signal_name(SIGRTMIN + 2, buf), 0);
        assert_string_equal(buf, "SIGRTMIN+2");
        assert_int_equal(docker_signal_name(0, buf), -EINVAL);
        assert_int_equal(docker_signal_name(-1, buf), -EINVAL);
        assert_int_equal(docker_signal_name(1000, buf), -EINVAL);
}

static void test_vtable(void **state) {
        assert_string_equal(runtime_docker_vtable.name, "docker");
        assert_non_null(runtime_docker_vtable.init);
        assert_non_null(runtime_docker_vtable.free);
        assert_non_null(runtime_docker_vtable.find);
        assert_non_null(runtime_docker_vtable.launch);
        assert_non_null(runtime_docker_vtable.kill);
        assert_non_null(runtime_docker_vtable.stop);
        assert_non_null(runtime_docker_vtable.detach);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_create_body),
                cmocka_unit_test(test_create_body_defaults),
                cmocka_unit_test(test_create_body_mount),
                cmocka_unit_test(test_create_body_gpus),
                cmocka_unit_test(test_names_and_paths),
                cmocka_unit_test(test_image_split),
                cmocka_unit_test(test_list_podman),
                cmocka_unit_test(test_list_mixed),
                cmocka_unit_test(test_list_garbage),
                cmocka_unit_test(test_list_cap),
                cmocka_unit_test(test_pick),
                cmocka_unit_test(test_ids_and_states),
                cmocka_unit_test(test_inspect),
                cmocka_unit_test(test_inspect_odd),
                cmocka_unit_test(test_wait),
                cmocka_unit_test(test_create_answer),
                cmocka_unit_test(test_error_message),
                cmocka_unit_test(test_error_message_bounded),
                cmocka_unit_test(test_error_classes),
                cmocka_unit_test(test_init_exec_failure),
                cmocka_unit_test(test_pull_podman),
                cmocka_unit_test(test_pull_progress),
                cmocka_unit_test(test_pull_hostile),
                cmocka_unit_test(test_signal_name),
                cmocka_unit_test(test_vtable),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
