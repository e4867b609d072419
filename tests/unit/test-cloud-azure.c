/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "unit-helpers.h"

#include "cloud-azure.h"

#define S(x) x, strlen(x)
#define NOW ((usec_t) 1795527274 * USEC_PER_SEC)

static char *fixture(const char *name, size_t *ret_len) {
        return fixture_read("cloud/azure", name, ret_len, true);
}

static int parse(const char *file, uint64_t *inc, Notice **notices, size_t *n) {
        size_t len;
        char *body = fixture(file, &len);
        int r;

        *notices = NULL;
        *n = 0;
        r = azure_parse_scheduled_events(body, len, NOW, inc, notices, n);
        free(body);
        return r;
}

static usec_t date(const char *s) {
        usec_t t;

        assert_int_equal(parse_http_date(s, &t), 0);
        return t;
}

static void test_garbage(void **state) {
        static const char *const files[] = {
                "garbage.json",            /* fakecloud mode=garbage */
                "wrongtype.json",          /* fakecloud mode=wrongtype */
                "error-400.json",
                "token.json",
                "truncated.json",
                "empty-body.json",
                "trailing-garbage.json",
                "missing-events.json",
                "missing-incarnation.json",
                "missing-eventid.json",
                "missing-eventtype.json",
                "wrongtype-notbefore.json",
                "wrongtype-duration.json",
                "wrongtype-resources.json",
                "wrongtype-resources-item.json",
                "wrongtype-eventid.json",
                "wrongtype-eventtype.json",
                "wrongtype-eventstatus.json",
                "wrongtype-event.json",
                "wrongtype-events-null.json",
                "wrongtype-toplevel.json",
                "incarnation-negative.json",
                "incarnation-fraction.json",
                "bad-notbefore.json",
                "long-eventid.json",
        };

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                uint64_t inc = 77;
                Notice *notices;
                size_t n;
                int r = parse(files[i], &inc, &notices, &n);

                if (r != -EBADMSG)
                        fail_msg("%s: %d, expected -EBADMSG", files[i], r);
                assert_null(notices);
                assert_int_equal(inc, 77);
        }
        assert_int_equal(azure_parse_scheduled_events(NULL, 0, NOW, &(uint64_t) { 0 }, &(Notice *) { NULL },
                                                      &(size_t) { 0 }),
                         -EBADMSG);
}

static void test_empty(void **state) {
        static const char *const files[] = { "empty.json", "trailing-newline.json" };

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                uint64_t inc = 0;
                Notice *notices;
                size_t n;

                assert_int_equal(parse(files[i], &inc, &notices, &n), 0);
                assert_int_equal(inc, 1);
                assert_int_equal(n, 0);
                assert_null(notices);
        }
}

static void test_each_type(void **state) {
        static const struct {
                const char *file;
                NoticeKind kind;
                bool imminent;
                const char *id, *not_before;
                uint64_t incarnation;
        } cases[] = {
                { "preempt.json", NOTICE_PREEMPT, true, "D67ADAEA-E15C-4169-93EE-45AD24B7C2BF",
                  "Tue, 24 Nov 2026 13:34:59 GMT", 2 },
                { "terminate.json", NOTICE_TERMINATE, true, "FE6E8C78-5011-400F-BCEC-30C6CDA92693",
                  "Tue, 24 Nov 2026 13:39:29 GMT", 4 },
                { "reboot.json", NOTICE_REBOOT, false, "3163F31A-7FFC-416B-969B-E35BC564AF5D",
                  "Tue, 24 Nov 2026 13:49:30 GMT", 6 },
                { "redeploy.json", NOTICE_REDEPLOY, false, "DF3CC894-553C-4BD3-AC5F-2A143CB7FF4F",
                  "Tue, 24 Nov 2026 13:44:30 GMT", 8 },
                { "freeze.json", NOTICE_FREEZE, false, "8FA1C2C5-84BD-4BFC-B7E6-CAC0FEECB59E",
                  "Tue, 24 Nov 2026 13:49:30 GMT", 10 },
                { "docs-example.json", NOTICE_FREEZE, false, "f020ba2e-3bc0-4c40-a10b-86575a9eabd5",
                  "Mon, 19 Sep 2016 18:29:47 GMT", 3 },
                { "unknown-type.json", NOTICE_MAINTENANCE, false, "A1", "Mon, 19 Sep 2016 18:29:47 GMT", 5 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t inc = 0;
                Notice *notices;
                size_t n;

                assert_int_equal(parse(cases[i].file, &inc, &notices, &n), 0);
                assert_int_equal(inc, cases[i].incarnation);
                assert_int_equal(n, 1);
                assert_int_equal(notices[0].provider, CLOUD_PROVIDER_AZURE);
                assert_int_equal(notices[0].kind, cases[i].kind);
                assert_true(notices[0].imminent == cases[i].imminent);
                assert_string_equal(notices[0].id, cases[i].id);
                assert_true(notices[0].deadline == date(cases[i].not_before));
                assert_true(notices[0].received_at == NOW);
                free(notices);
        }
}

static void test_summary(void **state) {
        uint64_t inc;
        Notice *notices;
        size_t n;

        assert_int_equal(parse("preempt-scheduled.json", &inc, &notices, &n), 0);
        assert_string_equal(notices[0].summary,
                            "Preempt Scheduled, NotBefore \"Tue, 24 Nov 2026 13:35:01 GMT\", Platform, -1s, "
                            "resources trainsupd-fake: Virtual machine is being evicted from Azure Spot capacity.");
        free(notices);
        assert_int_equal(parse("docs-example.json", &inc, &notices, &n), 0);
        assert_non_null(strstr(notices[0].summary, "Freeze Scheduled"));
        assert_non_null(strstr(notices[0].summary, ", 5s, resources WestNO_0,WestNO_1: Host server"));
        free(notices);
        assert_int_equal(parse("unknown-type.json", &inc, &notices, &n), 0);
        assert_true(strneq(notices[0].summary, "LiveMigration Scheduled", 23));
        free(notices);
}

static void test_started(void **state) {
        uint64_t inc;
        Notice *notices;
        size_t n;

        /* Once Started, NotBefore is blank. Seen first that way, an imminent event is due now;
         * seen Scheduled before, cloud_watch_update() keeps the first deadline. */
        assert_int_equal(parse("preempt-started.json", &inc, &notices, &n), 0);
        assert_int_equal(inc, 13);
        assert_int_equal(n, 1);
        assert_string_equal(notices[0].id, "D9EE8BAF-157C-4CCA-872A-0D1AB2844515");
        assert_int_equal(notices[0].kind, NOTICE_PREEMPT);
        assert_true(notices[0].imminent);
        assert_true(notices[0].deadline == NOW);
        assert_non_null(strstr(notices[0].summary, "Preempt Started, NotBefore \"\""));
        free(notices);

        /* an advisory one has no deadline then */
        assert_int_equal(parse("null-fields.json", &inc, &notices, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(notices[0].kind, NOTICE_REBOOT);
        assert_false(notices[0].imminent);
        assert_true(notices[0].deadline == USEC_INFINITY);
        free(notices);

        /* Scheduled, no NotBefore: the documented minimum notice */
        assert_int_equal(parse("minimal-preempt.json", &inc, &notices, &n), 0);
        assert_true(notices[0].deadline == NOW + 30 * USEC_PER_SEC);
        assert_non_null(strstr(notices[0].summary, "Preempt n/a, NotBefore \"\", n/a, -1s, resources n/a: "));
        free(notices);
        assert_int_equal(parse("blank-notbefore-scheduled.json", &inc, &notices, &n), 0);
        assert_int_equal(notices[0].kind, NOTICE_TERMINATE);
        assert_true(notices[0].deadline == NOW + 300 * USEC_PER_SEC);
        free(notices);
}

static void test_several(void **state) {
        uint64_t inc;
        Notice *notices;
        size_t n;

        assert_int_equal(parse("several.json", &inc, &notices, &n), 0);
        assert_int_equal(inc, 18);
        assert_int_equal(n, 3);
        assert_int_equal(notices[0].kind, NOTICE_FREEZE);
        assert_string_equal(notices[0].id, "D36AD633-3C7C-494C-9A57-1BA4D01A7E15");
        assert_int_equal(notices[1].kind, NOTICE_REBOOT); /* Started, NotBefore "" */
        assert_true(notices[1].deadline == USEC_INFINITY);
        assert_int_equal(notices[2].kind, NOTICE_TERMINATE);
        assert_true(notices[2].imminent);
        assert_true(notices[2].deadline == date("Tue, 24 Nov 2026 13:44:32 GMT"));
        free(notices);

        /* duplicates are passed on; cloud_watch_update() announces an id once */
        assert_int_equal(parse("duplicate-eventid.json", &inc, &notices, &n), 0);
        assert_int_equal(n, 2);
        free(notices);
}

static void test_incarnation(void **state) {
        uint64_t inc;
        Notice *notices;
        size_t n;

        assert_int_equal(parse("incarnation-big.json", &inc, &notices, &n), 0);
        assert_true(inc == 4294967297ULL);
        assert_int_equal(parse("incarnation-huge.json", &inc, &notices, &n), 0);
        assert_true(inc == UINT64_MAX);
        assert_int_equal(parse("incarnation-inf.json", &inc, &notices, &n), 0);
        assert_true(inc == UINT64_MAX);
}

static void test_ack_body(void **state) {
        char *b = NULL;
        char id[NOTICE_ID_MAX + 1];

        assert_int_equal(azure_ack_body("D9EE8BAF-157C-4CCA-872A-0D1AB2844515", &b), 0);
        assert_string_equal(b, "{\"StartRequests\":[{\"EventId\":\"D9EE8BAF-157C-4CCA-872A-0D1AB2844515\"}]}");
        free(b);
        /* JSON escaping, not string pasting */
        assert_int_equal(azure_ack_body("a\"b\\c", &b), 0);
        assert_string_equal(b, "{\"StartRequests\":[{\"EventId\":\"a\\\"b\\\\c\"}]}");
        free(b);

        b = NULL;
        assert_int_equal(azure_ack_body("", &b), -EINVAL);
        assert_int_equal(azure_ack_body(NULL, &b), -EINVAL);
        assert_int_equal(azure_ack_body("a\nb", &b), -EINVAL);
        memset(id, 'A', NOTICE_ID_MAX);
        id[NOTICE_ID_MAX] = 0;
        assert_int_equal(azure_ack_body(id, &b), -EINVAL);
        id[NOTICE_ID_MAX - 1] = 0;
        assert_int_equal(azure_ack_body(id, &b), 0);
        free(b);
}

static void test_token(void **state) {
        char *p = NULL, *t = NULL;
        usec_t e = 0;
        size_t len;
        char *body;

        assert_int_equal(azure_token_path("https://storage.azure.com/", NULL, &p), 0);
        assert_string_equal(p, "/metadata/identity/oauth2/token?api-version=2018-02-01"
                               "&resource=https%3A%2F%2Fstorage.azure.com%2F");
        free(p);
        assert_int_equal(azure_token_path("https://storage.azure.com/", "7dd7f1c1-6a0e&x", &p), 0);
        assert_string_equal(p, "/metadata/identity/oauth2/token?api-version=2018-02-01"
                               "&resource=https%3A%2F%2Fstorage.azure.com%2F&client_id=7dd7f1c1-6a0e%26x");
        free(p);
        assert_int_equal(azure_token_path("", NULL, &p), -EINVAL);

        body = fixture("token.json", &len);
        assert_int_equal(azure_parse_token(body, len, &t, &e), 0);
        assert_true(strneq(t, "eyJ0eXAi", 8));
        assert_true(e == 86399 * USEC_PER_SEC);
        free(t);
        free(body);

        t = NULL;
        assert_int_equal(azure_parse_token(S("{\"access_token\":\"x\",\"expires_in\":60}"), &t, &e), 0);
        assert_true(e == 60 * USEC_PER_SEC);
        free(t);
        t = NULL;
        assert_int_equal(azure_parse_token(S("{\"access_token\":\"x\",\"expires_in\":\"-1\"}"), &t, &e), -EBADMSG);
        assert_int_equal(azure_parse_token(S("{\"access_token\":\"x\",\"expires_in\":\"12a\"}"), &t, &e), -EBADMSG);
        assert_int_equal(azure_parse_token(S("{\"access_token\":\"\",\"expires_in\":\"1\"}"), &t, &e), -EBADMSG);
        assert_int_equal(azure_parse_token(S("{\"access_token\":1,\"expires_in\":\"1\"}"), &t, &e), -EBADMSG);
        assert_int_equal(azure_parse_token(S("{\"access_token\":\"x\"}"), &t, &e), -EBADMSG);
        body = fixture("garbage.json", &len);
        assert_int_equal(azure_parse_token(body, len, &t, &e), -EBADMSG);
        free(body);
        assert_null(t);
}

static void test_vtable(void **state) {
        assert_int_equal(cloud_azure.id, CLOUD_PROVIDER_AZURE);
        assert_string_equal(cloud_azure.name, "azure");
        assert_non_null(cloud_azure.start);
        assert_non_null(cloud_azure.stop);
        assert_non_null(cloud_azure.acknowledge);
        assert_ptr_equal(cloud_provider_vtable(CLOUD_PROVIDER_AZURE), &cloud_azure);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_each_type),
                cmocka_unit_test(test_summary),
                cmocka_unit_test(test_started),
                cmocka_unit_test(test_several),
                cmocka_unit_test(test_incarnation),
                cmocka_unit_test(test_ack_body),
                cmocka_unit_test(test_token),
                cmocka_unit_test(test_vtable),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
