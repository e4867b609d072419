/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "unit-helpers.h"

#include "cloud-aws.h"

/* The AWS parsers on recorded bodies: the shapes AWS documents, what scripts/fakecloud serves
 * (including its wrongtype and garbage faults), and odd ones. */

typedef struct Body {
        char *data; /* exactly len bytes, not NUL-terminated: the parsers must not need it */
        size_t len;
} Body;

static Body fixture(const char *name) {
        Body b = {};

        b.data = fixture_read("cloud/aws", name, &b.len, false);
        return b;
}

static void body_free(Body *b) {
        free(b->data);
        *b = (Body) {};
}

static usec_t T(const char *rfc3339) {
        usec_t t;

        assert_int_equal(parse_rfc3339(rfc3339, &t), 0);
        return t;
}

static int instance_action(const char *name, AwsInstanceAction *a) {
        Body b = fixture(name);
        int r = aws_parse_instance_action(b.data, b.len, a);

        body_free(&b);
        return r;
}

static void test_instance_action(void **state) {
        static const struct {
                const char *file;
                AwsSpotAction action;
                const char *name, *time;
        } ok[] = {
                { "instance-action-terminate.json", AWS_SPOT_TERMINATE, "terminate", "2017-09-18T08:22:00Z" },
                { "instance-action-stop.json", AWS_SPOT_STOP, "stop", "2017-09-18T08:22:00Z" },
                { "instance-action-hibernate.json", AWS_SPOT_HIBERNATE, "hibernate", "2017-09-18T08:22:00Z" },
                { "instance-action-fraction.json", AWS_SPOT_TERMINATE, "terminate", "2026-11-23T15:55:36.250Z" },
                { "instance-action-pretty-extra.json", AWS_SPOT_TERMINATE, "terminate", "2026-11-23T15:55:36Z" },
                { "instance-action-unknown-action.json", AWS_SPOT_OTHER, "reboot", "2026-11-23T15:55:36Z" },
                { "instance-action-fakecloud.json", AWS_SPOT_TERMINATE, "terminate", "2026-11-24T13:35:21Z" },
        };

        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                AwsInstanceAction a;

                assert_int_equal(instance_action(ok[i].file, &a), 0);
                assert_int_equal(a.action, ok[i].action);
                assert_string_equal(a.action_name, ok[i].name);
                assert_int_equal(a.time, T(ok[i].time));
        }
}

static void test_instance_action_bad(void **state) {
        static const struct {
                const char *file;
                int error;
        } bad[] = {
                { "instance-action-no-time.json", -EBADMSG },
                { "instance-action-time-number.json", -EBADMSG },
                { "instance-action-time-null.json", -EBADMSG },
                { "instance-action-time-garbage.json", -EBADMSG },
                { "instance-action-time-http-date.json", -EBADMSG },
                { "instance-action-action-not-a-word.json", -EBADMSG },
                { "instance-action-truncated.json", -EBADMSG },
                { "instance-action-trailing-garbage.json", -EBADMSG },
                { "instance-action-array.json", -EBADMSG },
                { "instance-action-string.json", -EBADMSG },
                { "empty.json", -EBADMSG },
                { "deeply-nested.json", -EBADMSG },
                { "garbage-fakecloud.bin", -EBADMSG },
                { "wrongtype-spot-instance-action.json", -EBADMSG },
                { "rebalance.json", -EBADMSG },
                { "instance-action-huge-action.json", -EFBIG },
                { "instance-action-huge-time.json", -EFBIG },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                AwsInstanceAction a = { .action = 42, .time = 42 };

                if (instance_action(bad[i].file, &a) != bad[i].error)
                        fail_msg("%s: expected %d", bad[i].file, bad[i].error);
                assert_int_equal(a.action, 42);
                assert_int_equal(a.time, 42);
        }
        assert_int_equal(aws_parse_instance_action(NULL, 0, &(AwsInstanceAction) {}), -EBADMSG);
        /* an embedded NUL */
        assert_int_equal(aws_parse_instance_action("{\"action\":\"stop\",\0\"time\":\"x\"}", 30,
                                                   &(AwsInstanceAction) {}),
                         -EBADMSG);
}

static void test_instance_action_notice(void **state) {
        AwsInstanceAction a;
        Notice n;

        assert_int_equal(instance_action("instance-action-stop.json", &a), 0);
        aws_instance_action_to_notice(&a, &n);
        assert_int_equal(n.kind, NOTICE_SPOT_INTERRUPTION);
        assert_true(n.imminent);
        assert_string_equal(n.id, AWS_SPOT_NOTICE_ID);
        assert_int_equal(n.deadline, T("2017-09-18T08:22:00Z"));
        assert_string_equal(n.summary, "spot instance-action stop");

        /* The id does not depend on the action or the time: a moved time is the same notice. */
        assert_int_equal(instance_action("instance-action-unknown-action.json", &a), 0);
        aws_instance_action_to_notice(&a, &n);
        assert_string_equal(n.id, AWS_SPOT_NOTICE_ID);
        assert_true(n.imminent);
}

static void test_spot_action_strings(void **state) {
        for (AwsSpotAction a = 0; a < _AWS_SPOT_ACTION_MAX; a++)
                assert_int_equal(aws_spot_action_from_string(aws_spot_action_to_string(a)), a);
        assert_int_equal(aws_spot_action_from_string("reboot"), _AWS_SPOT_ACTION_INVALID);
        assert_null(aws_spot_action_to_string(_AWS_SPOT_ACTION_MAX));
}

static void test_rebalance(void **state) {
        static const struct {
                const char *file;
                int error;
                const char *time;
        } cases[] = {
                { "rebalance.json", 0, "2020-10-27T08:22:00Z" },
                { "rebalance-offset-fraction.json", 0, "2020-10-27T08:22:00.5Z" },
                { "rebalance-fakecloud.json", 0, "2026-11-24T13:33:21Z" },
                { "rebalance-blank.json", -EBADMSG, NULL },
                { "rebalance-empty-object.json", -EBADMSG, NULL },
                { "wrongtype-events-recommendations-rebalance.json", -EBADMSG, NULL },
                { "instance-action-terminate.json", -EBADMSG, NULL },
                { "garbage-fakecloud.bin", -EBADMSG, NULL },
                { "empty.json", -EBADMSG, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Body b = fixture(cases[i].file);
                usec_t t = 42;

                if (aws_parse_rebalance(b.data, b.len, &t) != cases[i].error)
                        fail_msg("%s: expected %d", cases[i].file, cases[i].error);
                assert_int_equal(t, cases[i].time ? T(cases[i].time) : 42);
                body_free(&b);
        }
}

static void test_rebalance_notice(void **state) {
        Notice n;

        aws_rebalance_to_notice(T("2020-10-27T08:22:00Z"), &n);
        assert_int_equal(n.kind, NOTICE_REBALANCE);
        assert_false(n.imminent);
        assert_int_equal(n.deadline, USEC_INFINITY);
        assert_string_equal(n.id, AWS_REBALANCE_NOTICE_ID);
        assert_string_equal(n.summary, "rebalance recommendation issued 2020-10-27T08:22:00.000Z");
}

static int scheduled(const char *name, AwsScheduledEvent *ev, size_t max) {
        Body b = fixture(name);
        int r = aws_parse_scheduled_events(b.data, b.len, max, ev);

        body_free(&b);
        return r;
}

static void test_scheduled_doc(void **state) {
        AwsScheduledEvent ev[AWS_SCHEDULED_EVENTS_MAX];
        Notice n;

        assert_int_equal(scheduled("scheduled-empty-fakecloud.json", ev, ELEMENTSOF(ev)), 0);
        /* an empty body says the same, tersely */
        assert_int_equal(scheduled("empty.json", ev, ELEMENTSOF(ev)), 0);
        assert_int_equal(aws_parse_scheduled_events(" \n", 2, ELEMENTSOF(ev), ev), 0);

        /* The AWS documentation's example, with its "21 Jan 2019 09:00:43 GMT" times */
        assert_int_equal(scheduled("scheduled-aws-doc.json", ev, ELEMENTSOF(ev)), 1);
        assert_string_equal(ev[0].event_id, "instance-event-0d59937288b749b32");
        assert_string_equal(ev[0].code, "system-reboot");
        assert_string_equal(ev[0].description, "scheduled reboot");
        assert_int_equal(ev[0].state, AWS_EVENT_ACTIVE);
        assert_int_equal(ev[0].not_before, T("2019-01-21T09:00:43Z"));
        assert_int_equal(ev[0].not_after, T("2019-01-21T09:17:23Z"));
        assert_int_equal(ev[0].not_before_deadline, USEC_INFINITY);

        assert_true(aws_scheduled_event_to_notice(&ev[0], &n));
        assert_int_equal(n.kind, NOTICE_MAINTENANCE);
        assert_false(n.imminent);
        assert_string_equal(n.id, "instance-event-0d59937288b749b32");
        assert_int_equal(n.deadline, T("2019-01-21T09:00:43Z"));
        assert_string_equal(n.summary, "scheduled system-reboot, not after 2019-01-21T09:17:23.000Z: scheduled reboot");

        assert_int_equal(scheduled("scheduled-deadline.json", ev, ELEMENTSOF(ev)), 1);
        assert_string_equal(ev[0].code, "instance-stop");
        assert_int_equal(ev[0].not_before_deadline, T("2019-01-31T09:00:43Z"));
        /* instance-stop with NotBefore near or not: advisory, the lifecycle decides */
        assert_true(aws_scheduled_event_to_notice(&ev[0], &n));
        assert_false(n.imminent);
        assert_int_equal(n.deadline, T("2019-01-21T09:00:43Z"));
}

static void test_scheduled_states(void **state) {
        AwsScheduledEvent ev[AWS_SCHEDULED_EVENTS_MAX];
        static const AwsEventState states[] = { AWS_EVENT_COMPLETED, AWS_EVENT_CANCELED, AWS_EVENT_ACTIVE,
                                                AWS_EVENT_ACTIVE, AWS_EVENT_ACTIVE, AWS_EVENT_OTHER };
        static const char *const notices[] = { "instance-event-00000000000000003", "instance-event-00000000000000004",
                                               "instance-event-00000000000000005" };
        size_t k = 0;
        Notice n;

        assert_int_equal(scheduled("scheduled-states.json", ev, ELEMENTSOF(ev)), 6);
        for (size_t i = 0; i < 6; i++) {
                assert_int_equal(ev[i].state, states[i]);
                if (!aws_scheduled_event_to_notice(&ev[i], &n))
                        continue;
                assert_true(k < ELEMENTSOF(notices));
                assert_string_equal(n.id, notices[k++]);
                assert_false(n.imminent);
        }
        assert_int_equal(k, 3);
        /* with a weekday */
        assert_int_equal(ev[3].not_before, T("2026-02-06T10:00:00Z"));
        assert_int_equal(ev[3].not_after, USEC_INFINITY);
        /* blank NotBefore: no deadline; no Description */
        assert_int_equal(ev[4].not_before, USEC_INFINITY);
        assert_true(aws_scheduled_event_to_notice(&ev[4], &n));
        assert_int_equal(n.deadline, USEC_INFINITY);
        assert_string_equal(n.summary, "scheduled instance-stop");

        /* what the fake cloud serves after a clear: canceled entries stay, one active */
        assert_int_equal(scheduled("scheduled-mixed-fakecloud.json", ev, ELEMENTSOF(ev)), 3);
        assert_int_equal(ev[0].state, AWS_EVENT_CANCELED);
        assert_int_equal(ev[1].state, AWS_EVENT_CANCELED);
        assert_int_equal(ev[2].state, AWS_EVENT_ACTIVE);
        assert_false(aws_scheduled_event_to_notice(&ev[0], &n));
        assert_int_equal(ev[1].not_before, T("2026-12-01T13:33:21Z"));
        assert_true(aws_scheduled_event_to_notice(&ev[2], &n));
        assert_string_equal(n.id, "instance-event-0dc44f07a5ae3e564");
}

static void test_scheduled_limits(void **state) {
        AwsScheduledEvent ev[AWS_SCHEDULED_EVENTS_MAX];
        Notice n;

        assert_int_equal(scheduled("scheduled-max.json", ev, ELEMENTSOF(ev)), 32);
        assert_string_equal(ev[31].event_id, "instance-event-00000000000000031");
        assert_int_equal(scheduled("scheduled-too-many.json", ev, ELEMENTSOF(ev)), -EFBIG);
        assert_int_equal(scheduled("scheduled-aws-doc.json", ev, 0), -EFBIG);
        assert_int_equal(scheduled("scheduled-empty-fakecloud.json", NULL, 0), 0);
        assert_int_equal(scheduled("scheduled-long-eventid.json", ev, ELEMENTSOF(ev)), -EFBIG);

        /* a long Description is shortened, not refused */
        assert_int_equal(scheduled("scheduled-long-description.json", ev, ELEMENTSOF(ev)), 1);
        assert_int_equal(strlen(ev[0].description), NOTICE_SUMMARY_MAX - 1);
        assert_true(aws_scheduled_event_to_notice(&ev[0], &n));
        assert_int_equal(strlen(n.summary), NOTICE_SUMMARY_MAX - 1);
}

static void test_scheduled_bad(void **state) {
        static const char *const bad[] = {
                "scheduled-notbefore-number.json", "scheduled-no-eventid.json", "scheduled-no-state.json",
                "scheduled-bad-date.json", "scheduled-non-object.json", "scheduled-eventid-space.json",
                "wrongtype-events-maintenance-scheduled.json", "garbage-fakecloud.bin",
                "instance-action-terminate.json", "deeply-nested.json",
        };
        AwsScheduledEvent ev[AWS_SCHEDULED_EVENTS_MAX];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                memset(ev, 0x5a, sizeof(ev));
                if (scheduled(bad[i], ev, ELEMENTSOF(ev)) != -EBADMSG)
                        fail_msg("%s: expected -EBADMSG", bad[i]);
                /* untouched on failure */
                assert_int_equal((unsigned char) ev[0].event_id[0], 0x5a);
        }
}

static void test_identity(void **state) {
        static const struct {
                const char *file;
                int error;
        } cases[] = {
                { "identity-fakecloud.json", 0 },
                { "identity-minimal.json", 0 },
                { "identity-bad-region.json", -EBADMSG },
                { "identity-no-region.json", -EBADMSG },
                { "wrongtype-identity.json", -EBADMSG },
                { "garbage-fakecloud.bin", -EBADMSG },
                { "scheduled-aws-doc.json", -EBADMSG },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                AwsIdentity id = { .region = "untouched" };
                Body b = fixture(cases[i].file);

                if (aws_parse_identity(b.data, b.len, &id) != cases[i].error)
                        fail_msg("%s: expected %d", cases[i].file, cases[i].error);
                if (cases[i].error < 0)
                        assert_string_equal(id.region, "untouched");
                body_free(&b);
        }

        AwsIdentity id;
        Body b = fixture("identity-fakecloud.json");

        assert_int_equal(aws_parse_identity(b.data, b.len, &id), 0);
        assert_string_equal(id.region, "us-east-1");
        assert_string_equal(id.instance_id, "i-0fa1ce0c1d0d0e5a7");
        assert_string_equal(id.availability_zone, "us-east-1a");
        assert_string_equal(id.account_id, "123456789012");
        body_free(&b);

        b = fixture("identity-minimal.json");
        assert_int_equal(aws_parse_identity(b.data, b.len, &id), 0);
        assert_string_equal(id.region, "eu-west-1");
        assert_string_equal(id.availability_zone, "");
        body_free(&b);
}

static void test_credentials(void **state) {
        AwsCredentials c = {};
        Body b;

        b = fixture("credentials-aws-doc.json");
        assert_int_equal(aws_parse_credentials(b.data, b.len, &c), 0);
        assert_string_equal(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
        assert_string_equal(c.secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        assert_string_equal(c.token, "token");
        assert_int_equal(c.expiration, T("2017-05-17T15:09:54Z"));
        aws_credentials_done(&c);
        assert_null(c.access_key_id);
        assert_null(c.secret_access_key);
        assert_null(c.token);
        body_free(&b);

        b = fixture("credentials-fakecloud.json");
        assert_int_equal(aws_parse_credentials(b.data, b.len, &c), 0);
        assert_string_equal(c.access_key_id, "ASIAFAKECLOUD0000001");
        assert_int_equal(c.expiration, T("2026-11-24T19:00:00Z"));
        aws_credentials_done(&c);
        body_free(&b);

        /* what the storage tests hand over for RGW: no session token */
        b = fixture("credentials-no-token.json");
        assert_int_equal(aws_parse_credentials(b.data, b.len, &c), 0);
        assert_string_equal(c.access_key_id, "AKIDRGW");
        assert_null(c.token);
        aws_credentials_done(&c);
        body_free(&b);

        static const struct {
                const char *file;
                int error;
        } bad[] = {
                { "credentials-failure.json", -ENOKEY },
                { "credentials-no-secret.json", -EBADMSG },
                { "wrongtype-iam-security-credentials-trainsupd-role.json", -EBADMSG },
                { "garbage-fakecloud.bin", -EBADMSG },
                { "empty.json", -EBADMSG },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                c = (AwsCredentials) {};
                b = fixture(bad[i].file);
                if (aws_parse_credentials(b.data, b.len, &c) != bad[i].error)
                        fail_msg("%s: expected %d", bad[i].file, bad[i].error);
                assert_null(c.access_key_id);
                body_free(&b);
        }
}

static void test_role_list(void **state) {
        char *role = NULL;
        Body b;

        b = fixture("roles-fakecloud.txt");
        assert_int_equal(aws_parse_role_list(b.data, b.len, &role), 0);
        assert_string_equal(role, "trainsupd-role");
        role = mfree(role);
        body_free(&b);

        b = fixture("roles-two.txt");
        assert_int_equal(aws_parse_role_list(b.data, b.len, &role), 0);
        assert_string_equal(role, "trainsupd-role");
        role = mfree(role);
        body_free(&b);

        b = fixture("roles-empty.txt");
        assert_int_equal(aws_parse_role_list(b.data, b.len, &role), -ENOENT);
        body_free(&b);
        b = fixture("roles-bad.txt");
        assert_int_equal(aws_parse_role_list(b.data, b.len, &role), -EBADMSG);
        body_free(&b);
        assert_int_equal(aws_parse_role_list("", 0, &role), -ENOENT);
        assert_int_equal(aws_parse_role_list("a\0b", 3, &role), -EBADMSG);
        assert_null(role);
}

static void test_token(void **state) {
        char big[2000], *t = NULL;

        assert_int_equal(imds_parse_token("AQAEAabc_-=\n", 12, &t), 0);
        assert_string_equal(t, "AQAEAabc_-=");
        t = mfree(t);
        assert_int_equal(imds_parse_token("", 0, &t), -EBADMSG);
        assert_int_equal(imds_parse_token(" \r\n", 3, &t), -EBADMSG);
        assert_int_equal(imds_parse_token("a b", 3, &t), -EBADMSG);
        /* a token goes into a header: no CR/LF smuggling */
        assert_int_equal(imds_parse_token("tok\r\nX-Injected: 1", 19, &t), -EBADMSG);
        assert_int_equal(imds_parse_token("to\0k", 4, &t), -EBADMSG);
        memset(big, 'A', sizeof(big));
        assert_int_equal(imds_parse_token(big, sizeof(big), &t), -EFBIG);
        assert_int_equal(imds_parse_token(big, IMDS_TOKEN_MAX, &t), 0);
        assert_int_equal(strlen(t), IMDS_TOKEN_MAX);
        free(t);
}

static void test_ttl(void **state) {
        static const char *const bad[] = { NULL, "", "0", "21601", "-1", "+5", "abc", "60 ", " 60", "99999999999999999999" };
        unsigned ttl = 42;

        assert_int_equal(imds_parse_ttl("21600", &ttl), 0);
        assert_int_equal(ttl, 21600);
        assert_int_equal(imds_parse_ttl("1", &ttl), 0);
        assert_int_equal(ttl, 1);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ttl = 42;
                assert_int_equal(imds_parse_ttl(bad[i], &ttl), -EBADMSG);
                assert_int_equal(ttl, 42);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_instance_action),
                cmocka_unit_test(test_instance_action_bad),
                cmocka_unit_test(test_instance_action_notice),
                cmocka_unit_test(test_spot_action_strings),
                cmocka_unit_test(test_rebalance),
                cmocka_unit_test(test_rebalance_notice),
                cmocka_unit_test(test_scheduled_doc),
                cmocka_unit_test(test_scheduled_states),
                cmocka_unit_test(test_scheduled_limits),
                cmocka_unit_test(test_scheduled_bad),
                cmocka_unit_test(test_identity),
                cmocka_unit_test(test_credentials),
                cmocka_unit_test(test_role_list),
                cmocka_unit_test(test_token),
                cmocka_unit_test(test_ttl),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
