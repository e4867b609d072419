/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "unit-helpers.h"

#include "cloud.h"
#include "log.h"

/* The framework's bookkeeping, without any provider running: what cloud_watch_update announces,
 * withdraws and latches, and how the back-off behaves. */

typedef struct Seen {
        char ids[16][NOTICE_ID_MAX];
        bool gone[16];
        usec_t deadline[16];
        size_t n;
} Seen;

static void on_notice(CloudWatch *w, const Notice *n, bool gone, void *userdata) {
        Seen *s = userdata;

        assert_true(s->n < 16);
        notice_set_string(s->ids[s->n], NOTICE_ID_MAX, n->id);
        s->gone[s->n] = gone;
        s->deadline[s->n] = n->deadline;
        s->n++;
}

static Notice mk(const char *id, NoticeKind kind, bool imminent, usec_t deadline) {
        Notice n = { .kind = kind, .imminent = imminent, .deadline = deadline };

        notice_set_string(n.id, sizeof(n.id), id);
        notice_set_string(n.summary, sizeof(n.summary), "test");
        return n;
}

static int setup(void **state) {
        sd_event *e = NULL;
        CloudWatch *w = NULL;
        static Seen seen;

        log_set_target(LOG_TARGET_CONSOLE);
        log_set_max_level(LOG_ERR);
        memset(&seen, 0, sizeof(seen));
        assert_int_equal(sd_event_new(&e), 0);
        /* No start(): the provider never runs, only the bookkeeping is exercised. */
        assert_int_equal(cloud_watch_new(&w, CLOUD_PROVIDER_AWS, e, NULL, "http://127.0.0.1:1/", USEC_PER_SEC,
                                         on_notice, &seen),
                         0);
        sd_event_unref(e);
        *state = w;
        return 0;
}

static int teardown(void **state) {
        cloud_watch_free(*state);
        return 0;
}

static void test_base_url_trimmed(void **state) {
        CloudWatch *w = *state;

        assert_string_equal(w->base_url, "http://127.0.0.1:1");
        assert_string_equal(cloud_watch_name(w), "aws");
}

static void test_announce_once_and_withdraw(void **state) {
        CloudWatch *w = *state;
        Seen *s = w->userdata;
        Notice a = mk("spot", NOTICE_SPOT_INTERRUPTION, true, 100 * USEC_PER_SEC);

        cloud_watch_update(w, "spot", &a, 1);
        cloud_watch_update(w, "spot", &a, 1); /* a duplicate is not announced again */
        assert_int_equal(s->n, 1);
        assert_string_equal(s->ids[0], "spot");
        assert_false(s->gone[0]);
        assert_int_equal(w->n_known, 1);
        assert_int_equal(w->known[0].provider, CLOUD_PROVIDER_AWS);
        assert_true(w->known[0].received_at > 0);

        cloud_watch_update(w, "spot", NULL, 0);
        assert_int_equal(s->n, 2);
        assert_true(s->gone[1]);
        assert_int_equal(w->n_known, 0);
}

static void test_deadline_latched(void **state) {
        CloudWatch *w = *state;
        Seen *s = w->userdata;
        Notice a = mk("spot", NOTICE_SPOT_INTERRUPTION, true, 100 * USEC_PER_SEC);
        Notice moved = mk("spot", NOTICE_SPOT_INTERRUPTION, true, 200 * USEC_PER_SEC);
        Notice none = mk("ev", NOTICE_PREEMPT, true, USEC_INFINITY);
        Notice later = mk("ev", NOTICE_PREEMPT, true, 300 * USEC_PER_SEC);

        cloud_watch_update(w, "spot", &a, 1);
        cloud_watch_update(w, "spot", &moved, 1);
        assert_int_equal(w->known[0].deadline, 100 * USEC_PER_SEC);

        /* a first sighting without a deadline takes the first one that comes */
        cloud_watch_update(w, "azure", &none, 1);
        cloud_watch_update(w, "azure", &later, 1);
        cloud_watch_update(w, "azure", &none, 1);
        assert_int_equal(w->known[1].deadline, 300 * USEC_PER_SEC);
        assert_int_equal(s->n, 2);
}

static void test_channels_are_independent(void **state) {
        CloudWatch *w = *state;
        Seen *s = w->userdata;
        Notice a = mk("x", NOTICE_REBALANCE, false, USEC_INFINITY);
        Notice b = mk("y", NOTICE_MAINTENANCE, false, USEC_INFINITY);
        Notice both[] = { mk("m1", NOTICE_MAINTENANCE, false, 5), mk("m2", NOTICE_MAINTENANCE, false, 6) };

        cloud_watch_update(w, "rebalance", &a, 1);
        cloud_watch_update(w, "maintenance", &b, 1);
        /* an empty answer on one channel withdraws only that channel's notices */
        cloud_watch_update(w, "maintenance", NULL, 0);
        assert_int_equal(w->n_known, 1);
        assert_string_equal(w->known[0].id, "x");
        cloud_watch_update(w, "maintenance", both, 2);
        cloud_watch_update(w, "maintenance", &both[1], 1);
        assert_int_equal(w->n_known, 2);
        assert_string_equal(w->known[1].id, "m2");
        assert_int_equal(s->n, 6); /* x, y, y gone, m1, m2, m1 gone */
        assert_true(s->gone[5]);
        assert_string_equal(s->ids[5], "m1");
}

static void test_condition_changes_only(void **state) {
        CloudWatch *w = *state;

        cloud_watch_condition(w, "spot", -ETIMEDOUT, "GET");
        assert_int_equal(w->n_channels, 1);
        assert_int_equal(w->channels[0].error, -ETIMEDOUT);
        cloud_watch_condition(w, "spot", -ETIMEDOUT, "GET");
        assert_int_equal(w->channels[0].error, -ETIMEDOUT);
        /* a successful update marks the channel healthy */
        cloud_watch_update(w, "spot", NULL, 0);
        assert_int_equal(w->channels[0].error, 0);
}

static void test_next_delay(void **state) {
        CloudWatch *w = *state;

        assert_int_equal(cloud_watch_next_delay(w, 0), USEC_PER_SEC);
        assert_int_equal(cloud_watch_next_delay(w, 1), 100 * USEC_PER_MSEC);
        assert_int_equal(cloud_watch_next_delay(w, 2), 200 * USEC_PER_MSEC);
        assert_int_equal(cloud_watch_next_delay(w, 4), 800 * USEC_PER_MSEC);
        /* never beyond the poll interval, however long the burst of errors */
        assert_int_equal(cloud_watch_next_delay(w, 5), USEC_PER_SEC);
        assert_int_equal(cloud_watch_next_delay(w, 1000000), USEC_PER_SEC);
}

static void test_notice_kinds(void **state) {
        for (NoticeKind k = 0; k < _NOTICE_KIND_MAX; k++)
                assert_int_equal(notice_kind_from_string(notice_kind_to_string(k)), k);
        assert_string_equal(notice_kind_to_string(NOTICE_SPOT_INTERRUPTION), "spot-interruption");
        assert_int_equal(notice_kind_from_string("eviction"), _NOTICE_KIND_INVALID);
}

static void test_http_date(void **state) {
        usec_t t;

        assert_int_equal(parse_http_date("Mon, 23 Nov 2026 16:00:00 GMT", &t), 0);
        assert_int_equal(t, 1795449600ULL * USEC_PER_SEC);
        assert_int_equal(parse_http_date("23 Nov 2026 16:00:00 GMT", &t), 0);
        assert_int_equal(t, 1795449600ULL * USEC_PER_SEC);
        assert_int_equal(parse_http_date("21 Jan 2019 09:00:43 GMT", &t), 0);
        assert_int_equal(parse_http_date("", &t), -EINVAL);
        assert_int_equal(parse_http_date("Mon, 23 Nov 2026 16:00:00 PST", &t), -EINVAL);
        assert_int_equal(parse_http_date("Mon, 23 Foo 2026 16:00:00 GMT", &t), -EINVAL);
        assert_int_equal(parse_http_date("Mon, 23 Nov 2026 16:00:00 GMT trailing", &t), -EINVAL);
        assert_int_equal(parse_http_date(NULL, &t), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_base_url_trimmed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_announce_once_and_withdraw, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deadline_latched, setup, teardown),
                cmocka_unit_test_setup_teardown(test_channels_are_independent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_condition_changes_only, setup, teardown),
                cmocka_unit_test_setup_teardown(test_next_delay, setup, teardown),
                cmocka_unit_test(test_notice_kinds),
                cmocka_unit_test(test_http_date),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
