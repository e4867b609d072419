/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdio.h>

#include "unit-helpers.h"

#include "json-util.h"
#include "status.h"

static const char *jstr(const cJSON *o, const char *k) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

        assert_true(cJSON_IsString(v));
        return v->valuestring;
}

static void test_enums(void **state) {
        for (Phase p = 0; p < _PHASE_MAX; p++)
                assert_int_equal(phase_from_string(phase_to_string(p)), p);
        for (TaskState s = 0; s < _TASK_STATE_MAX; s++)
                assert_int_equal(task_state_from_string(task_state_to_string(s)), s);
        assert_string_equal(phase_to_string(PHASE_POWERING_OFF), "powering-off");
        assert_int_equal(phase_from_string("sleeping"), _PHASE_INVALID);
        assert_null(phase_to_string(_PHASE_MAX));
}

static void test_empty_status(void **state) {
        const TaskStatus t[] = { { .name = "main", .state = TASK_STATE_PENDING } };
        const StatusView v = { .job_id = "j1", .provider = "none", .phase = PHASE_STARTING, .tasks = t, .n_tasks = 1 };
        _cleanup_(cJSON_Deletep) cJSON *o = status_to_json(&v);
        const cJSON *task;

        assert_non_null(o);
        assert_int_equal(cJSON_GetObjectItem(o, "version")->valueint, 1);
        assert_string_equal(jstr(o, "phase"), "starting");
        assert_string_equal(jstr(o, "provider"), "none");
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "notice")));
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "last_snapshot")));
        assert_int_equal(cJSON_GetObjectItem(o, "pending_bytes")->valueint, 0);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "tasks")), 1);
        task = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "tasks"), 0);
        assert_string_equal(jstr(task, "name"), "main");
        assert_string_equal(jstr(task, "state"), "pending");
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(task, "container")));
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(task, "exit_code")));
        assert_null(cJSON_GetObjectItem(task, "exit_signal"));
}

static void test_full_status(void **state) {
        const TaskStatus t[] = {
                { .name = "a", .state = TASK_STATE_EXITED, .container = "pid:42", .restarts = 2, .exit_signal = SIGKILL,
                  .last_snapshot = { .id = "old", .seq = 3, .committed_at = 1795449600000000ULL, .bytes = 10, .files = 1 },
                  .pending_bytes = 5 },
                { .name = "b", .state = TASK_STATE_COMPLETED, .has_exit_code = true, .exit_code = 0,
                  .last_snapshot = { .id = "new", .seq = 12, .committed_at = 1795449600123000ULL, .bytes = 123, .files = 4 },
                  .pending_bytes = 7 },
        };
        const StatusView v = {
                .job_id = "j", .provider = "aws", .phase = PHASE_DRAINING, .tasks = t, .n_tasks = 2,
                .notice = { .kind = "spot-interruption", .imminent = true, .received_at = 1795449600000000ULL,
                            .deadline = 1795449720000000ULL },
                .upload_rate_bps = 1000,
        };
        _cleanup_(cJSON_Deletep) cJSON *o = status_to_json(&v);
        const cJSON *n, *s, *a;

        assert_non_null(o);
        n = cJSON_GetObjectItem(o, "notice");
        assert_string_equal(jstr(n, "kind"), "spot-interruption");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(n, "imminent")));
        assert_string_equal(jstr(n, "received_at"), "2026-11-23T16:00:00.000Z");
        assert_string_equal(jstr(n, "deadline"), "2026-11-23T16:02:00.000Z");
        /* the top-level snapshot is the newest of all tasks, pending bytes their sum */
        s = cJSON_GetObjectItem(o, "last_snapshot");
        assert_string_equal(jstr(s, "id"), "new");
        assert_int_equal(cJSON_GetObjectItem(s, "seq")->valueint, 12);
        assert_string_equal(jstr(s, "committed_at"), "2026-11-23T16:00:00.123Z");
        assert_int_equal(cJSON_GetObjectItem(o, "pending_bytes")->valueint, 12);
        a = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "tasks"), 0);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(a, "exit_code")));
        assert_string_equal(jstr(a, "exit_signal"), "SIGKILL");
        assert_string_equal(jstr(a, "container"), "pid:42");
        assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "tasks"), 1), "exit_code")->valueint,
                         0);
}

static void test_human(void **state) {
        const TaskStatus t[] = {
                { .name = "trainer", .state = TASK_STATE_RUNNING, .container = "3f2a" },
                { .name = "eval", .state = TASK_STATE_RUNNING,
                  .container = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" },
        };
        const StatusView v = { .job_id = "resnet", .provider = "gce", .phase = PHASE_RUNNING, .tasks = t, .n_tasks = 2,
                               .notice = { .kind = "preempt", .imminent = true, .received_at = 1795449600000000ULL,
                                           .deadline = 1795449630000000ULL } };
        _cleanup_(cJSON_Deletep) cJSON *o = status_to_json(&v);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        assert_int_equal(status_format_human(o, f), 0);
        fclose(f);
        assert_non_null(strstr(buf, "job resnet"));
        assert_non_null(strstr(buf, "Phase: running"));
        assert_non_null(strstr(buf, "Provider: gce"));
        assert_non_null(strstr(buf, "Notice: preempt (imminent)"));
        assert_non_null(strstr(buf, "deadline 2026-11-23T16:00:30.000Z"));
        assert_non_null(strstr(buf, "trainer: running [3f2a]"));
        assert_non_null(strstr(buf, "eval: running [0123456789ab]\n")); /* a container id, short */
        assert_non_null(strstr(buf, "Snapshot: none"));
        free(buf);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_enums),
                cmocka_unit_test(test_empty_status),
                cmocka_unit_test(test_full_status),
                cmocka_unit_test(test_human),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
