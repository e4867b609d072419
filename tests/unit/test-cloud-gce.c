/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "unit-helpers.h"

#include "cloud-gce.h"

#define NOW ((usec_t) 1795527274 * USEC_PER_SEC)

static char *fixture(const char *name, size_t *ret_len) {
        return fixture_read("cloud/gce", name, ret_len, true);
}

static void test_preempted(void **state) {
        static const struct {
                const char *file;
                int r;
                bool value;
        } cases[] = {
                { "preempted-true", 0, true },          /* as recorded: no newline */
                { "preempted-true-newline", 0, true },
                { "preempted-true-crlf", 0, true },
                { "preempted-lowercase", 0, true },
                { "preempted-false", 0, false },
                { "preempted-false-newline", 0, false },
                { "preempted-empty", -EBADMSG, false },
                { "preempted-other", -EBADMSG, false },
                { "preempted-nul", -EBADMSG, false },
                { "preempted-two-words", -EBADMSG, false },
                { "preempted-garbage", -EBADMSG, false },   /* fakecloud mode=garbage */
                { "preempted-wrongtype", -EBADMSG, false }, /* fakecloud mode=wrongtype */
                { "maintenance-none", -EBADMSG, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                size_t len;
                char *body = fixture(cases[i].file, &len);
                bool v = !cases[i].value;
                int r = gce_parse_preempted(body, len, &v);

                if (r != cases[i].r)
                        fail_msg("%s: %d, expected %d", cases[i].file, r, cases[i].r);
                if (r == 0)
                        assert_true(v == cases[i].value);
                free(body);
        }
        assert_int_equal(gce_parse_preempted(NULL, 0, &(bool) { false }), -EBADMSG);
        /* the length counts, not the NUL */
        assert_int_equal(gce_parse_preempted("TRUEX", 4, &(bool) { false }), 0);
}

static void test_preempted_notice(void **state) {
        size_t len;
        char *body = fixture("preempted-true-newline", &len);
        Notice n = {};

        assert_int_equal(gce_preempted_notice(body, len, NOW, &n), 1);
        assert_int_equal(n.provider, CLOUD_PROVIDER_GCE);
        assert_int_equal(n.kind, NOTICE_PREEMPT);
        assert_string_equal(n.id, "gce-preempted");
        assert_true(n.imminent);
        assert_true(n.received_at == NOW);
        assert_true(n.deadline == NOW + 30 * USEC_PER_SEC);
        assert_string_equal(n.summary, "instance/preempted=TRUE");
        free(body);

        body = fixture("preempted-false", &len);
        assert_int_equal(gce_preempted_notice(body, len, NOW, &n), 0);
        free(body);
        body = fixture("preempted-garbage", &len);
        assert_int_equal(gce_preempted_notice(body, len, NOW, &n), -EBADMSG);
        free(body);
}

static void test_maintenance(void **state) {
        static const struct {
                const char *file;
                int r;
                GceMaintenanceEvent e;
                const char *value;
        } cases[] = {
                { "maintenance-none", 0, GCE_MAINTENANCE_NONE, "NONE" },
                { "maintenance-none-newline", 0, GCE_MAINTENANCE_NONE, "NONE" },
                { "maintenance-migrate", 0, GCE_MAINTENANCE_MIGRATE, "MIGRATE_ON_HOST_MAINTENANCE" },
                { "maintenance-migrate-newline", 0, GCE_MAINTENANCE_MIGRATE, "MIGRATE_ON_HOST_MAINTENANCE" },
                { "maintenance-terminate", 0, GCE_MAINTENANCE_TERMINATE, "TERMINATE_ON_HOST_MAINTENANCE" },
                { "maintenance-shutdown", 0, GCE_MAINTENANCE_SHUTDOWN, "SHUTDOWN_ON_HOST_MAINTENANCE" },
                { "maintenance-unknown", 0, GCE_MAINTENANCE_OTHER, "FUTURE_KIND_OF_MAINTENANCE" },
                { "maintenance-html", -EBADMSG },
                { "maintenance-long", -EBADMSG },
                { "maintenance-garbage", -EBADMSG },
                { "maintenance-wrongtype", -EBADMSG },
                { "preempted-empty", -EBADMSG },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char value[GCE_VALUE_MAX + 1] = "unchanged";
                GceMaintenanceEvent e = _GCE_MAINTENANCE_INVALID;
                size_t len;
                char *body = fixture(cases[i].file, &len);
                int r = gce_parse_maintenance_event(body, len, &e, value);

                if (r != cases[i].r)
                        fail_msg("%s: %d, expected %d", cases[i].file, r, cases[i].r);
                if (r == 0) {
                        assert_int_equal(e, cases[i].e);
                        assert_string_equal(value, cases[i].value);
                        assert_int_equal(gce_parse_maintenance_event(body, len, &e, NULL), 0);
                } else
                        assert_string_equal(value, "unchanged");
                free(body);
        }
}

static void test_maintenance_notice(void **state) {
        static const struct {
                const char *file;
                int r;
                const char *id;
                bool imminent;
                usec_t deadline;
        } cases[] = {
                { "maintenance-none", 0 },
                { "maintenance-migrate", 1, "gce-maintenance-migrate", false, USEC_INFINITY },
                { "maintenance-terminate", 1, "gce-maintenance-terminate", true, NOW + 60 * USEC_PER_SEC },
                { "maintenance-shutdown", 1, "gce-maintenance-shutdown", true, NOW + 60 * USEC_PER_SEC },
                { "maintenance-unknown", 1, "gce-maintenance-future-kind-of-maintenance", false, USEC_INFINITY },
                { "maintenance-garbage", -EBADMSG },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Notice n = {};
                size_t len;
                char *body = fixture(cases[i].file, &len);
                char summary[NOTICE_SUMMARY_MAX];
                int r = gce_maintenance_notice(body, len, NOW, &n);

                if (r != cases[i].r)
                        fail_msg("%s: %d, expected %d", cases[i].file, r, cases[i].r);
                if (r == 1) {
                        assert_int_equal(n.kind, NOTICE_MAINTENANCE);
                        assert_string_equal(n.id, cases[i].id);
                        assert_true(n.imminent == cases[i].imminent);
                        assert_true(n.deadline == cases[i].deadline);
                        assert_true(n.received_at == NOW);
                        body[strcspn(body, "\r\n")] = 0;
                        snprintf(summary, sizeof(summary), "instance/maintenance-event=%s", body);
                        assert_string_equal(n.summary, summary);
                }
                free(body);
        }
}

static void test_wait_path(void **state) {
        char *p = NULL;

        assert_int_equal(gce_wait_path("/computeMetadata/v1/instance/preempted", "7c6e2bb3f1a0d9e4", 60, &p), 0);
        assert_string_equal(p, "/computeMetadata/v1/instance/preempted?wait_for_change=true"
                               "&last_etag=7c6e2bb3f1a0d9e4&timeout_sec=60");
        free(p);
        /* an ETag is opaque: whatever the server sends goes back escaped */
        assert_int_equal(gce_wait_path("/x", "\"a b/c+d=e&f~g.h_i-j\"", 5, &p), 0);
        assert_string_equal(p, "/x?wait_for_change=true&last_etag=%22a%20b%2Fc%2Bd%3De%26f~g.h_i-j%22&timeout_sec=5");
        free(p);
        assert_int_equal(http_url_escape("\xc3\xa9%", NULL, &p), 0);
        assert_string_equal(p, "%C3%A9%25");
        free(p);
        assert_int_equal(http_url_escape("", NULL, &p), 0);
        assert_string_equal(p, "");
        free(p);
}

static void test_token(void **state) {
        static const struct {
                const char *file;
                int r;
                usec_t expires_in;
        } cases[] = {
                { "token.json", 0, 3593 * USEC_PER_SEC },
                { "token-newline.json", 0, 3599 * USEC_PER_SEC },
                { "token-missing.json", -EBADMSG },
                { "token-truncated.json", -EBADMSG },
                { "token-array.json", -EBADMSG },
                { "token-garbage.json", -EBADMSG },
                { "token-wrongtype.json", -EBADMSG },
                { "preempted-empty", -EBADMSG },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *token = NULL;
                usec_t e = 0;
                size_t len;
                char *body = fixture(cases[i].file, &len);
                int r = gce_parse_token(body, len, &token, &e);

                if (r != cases[i].r)
                        fail_msg("%s: %d, expected %d", cases[i].file, r, cases[i].r);
                if (r == 0) {
                        assert_non_null(token);
                        assert_true(strneq(token, "ya29.", 5));
                        assert_true(e == cases[i].expires_in);
                } else
                        assert_null(token);
                free(token);
                free(body);
        }
}

static void test_attribute_key(void **state) {
        char long_key[130];

        assert_true(gce_attribute_key_valid("checkpoint-bucket"));
        assert_true(gce_attribute_key_valid("user_data2"));
        assert_false(gce_attribute_key_valid(""));
        assert_false(gce_attribute_key_valid(NULL));
        assert_false(gce_attribute_key_valid("../token"));
        assert_false(gce_attribute_key_valid("a/b"));
        assert_false(gce_attribute_key_valid("a?recursive=true"));
        memset(long_key, 'a', 129);
        long_key[129] = 0;
        assert_false(gce_attribute_key_valid(long_key));
        long_key[128] = 0;
        assert_true(gce_attribute_key_valid(long_key));
}

static void test_vtable(void **state) {
        assert_int_equal(cloud_gce.id, CLOUD_PROVIDER_GCE);
        assert_string_equal(cloud_gce.name, "gce");
        assert_non_null(cloud_gce.start);
        assert_non_null(cloud_gce.stop);
        assert_null(cloud_gce.acknowledge);
        assert_ptr_equal(cloud_provider_vtable(CLOUD_PROVIDER_GCE), &cloud_gce);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_preempted),
                cmocka_unit_test(test_preempted_notice),
                cmocka_unit_test(test_maintenance),
                cmocka_unit_test(test_maintenance_notice),
                cmocka_unit_test(test_wait_path),
                cmocka_unit_test(test_token),
                cmocka_unit_test(test_attribute_key),
                cmocka_unit_test(test_vtable),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
