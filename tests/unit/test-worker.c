/* SPDX-License-Identifier: MIT */
/* The worker pool against a real sd_event loop. Job functions touch only their argument and
 * atomics; every done callback checks that it runs on the loop's (main) thread. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "unit-helpers.h"

#include "time-util.h"
#include "worker.h"

#define RUN_DEADLINE_USEC (20 * USEC_PER_SEC)

typedef struct JobArg {
        unsigned id;
        int want;               /* what fn returns */
        atomic_bool ran;        /* set by fn */
        bool ran_off_loop;      /* fn saw a thread other than the loop's */
        unsigned started_as;    /* sequence number at which fn started */
        unsigned done_calls;    /* loop only from here on */
        int got;
        unsigned delivered_as;
        bool done_on_loop;
} JobArg;

static pthread_t loop_thread;
static atomic_uint started_seq;
static unsigned delivered_seq;
static unsigned delivered_total;

static atomic_bool gate_started, gate_release;

static int job_fn(void *p) {
        JobArg *a = p;

        a->started_as = atomic_fetch_add(&started_seq, 1);
        a->ran_off_loop = !pthread_equal(pthread_self(), loop_thread);
        atomic_store(&a->ran, true);
        return a->want;
}

static int gate_fn(void *p) {
        JobArg *a = p;

        atomic_store(&gate_started, true);
        while (!atomic_load(&gate_release))
                (void) nanosleep(&(struct timespec) { .tv_nsec = 1000000 }, NULL);
        return job_fn(a);
}

static void job_done(int result, void *p) {
        JobArg *a = p;

        a->done_calls++;
        a->got = result;
        a->delivered_as = delivered_seq++;
        a->done_on_loop = pthread_equal(pthread_self(), loop_thread);
        delivered_total++;
}

static void reset_counters(void) {
        loop_thread = pthread_self();
        atomic_store(&started_seq, 0);
        delivered_seq = 0;
        delivered_total = 0;
        atomic_store(&gate_started, false);
        atomic_store(&gate_release, false);
}

static void run_until_delivered(sd_event *e, unsigned n) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + RUN_DEADLINE_USEC;

        while (delivered_total < n) {
                assert_true(now_usec(CLOCK_MONOTONIC) < deadline);
                assert_true(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
        }
}

static void wait_for(atomic_bool *flag) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + RUN_DEADLINE_USEC;

        while (!atomic_load(flag)) {
                assert_true(now_usec(CLOCK_MONOTONIC) < deadline);
                (void) nanosleep(&(struct timespec) { .tv_nsec = 1000000 }, NULL);
        }
}

static void *release_later(void *p) {
        (void) nanosleep(&(struct timespec) { .tv_nsec = 300 * 1000000 }, NULL);
        atomic_store(&gate_release, true);
        return NULL;
}

static void test_result_delivered_on_loop(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(worker_freep) Worker *w = NULL;
        JobArg a = { .id = 1, .want = -EIO };

        reset_counters();
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(worker_new(&w, e, 2), 0);
        assert_int_equal(worker_submit(w, job_fn, job_done, &a), 0);
        assert_int_equal(worker_pending(w), 1);
        /* Never from within the call. */
        assert_int_equal(a.done_calls, 0);

        run_until_delivered(e, 1);
        assert_true(atomic_load(&a.ran));
        assert_true(a.ran_off_loop);
        assert_true(a.done_on_loop);
        assert_int_equal(a.done_calls, 1);
        assert_int_equal(a.got, -EIO);
        assert_int_equal(worker_pending(w), 0);
}

static void test_many_jobs(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(worker_freep) Worker *w = NULL;
        enum { N = 2000 };
        JobArg *a = calloc(N, sizeof(JobArg));

        reset_counters();
        assert_non_null(a);
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(worker_new(&w, e, 4), 0);
        for (unsigned i = 0; i < N; i++) {
                a[i].id = i;
                a[i].want = i % 7 == 0 ? -(int) (i % 100 + 1) : 0;
                assert_int_equal(worker_submit(w, job_fn, job_done, &a[i]), 0);
        }
        assert_int_equal(worker_pending(w), N);
        run_until_delivered(e, N);
        for (unsigned i = 0; i < N; i++) {
                assert_int_equal(a[i].done_calls, 1);
                assert_int_equal(a[i].got, a[i].want);
                assert_true(a[i].ran_off_loop);
                assert_true(a[i].done_on_loop);
        }
        assert_int_equal(atomic_load(&started_seq), N);
        assert_int_equal(worker_pending(w), 0);
        free(a);
}

/* One thread: jobs run and are delivered in submission order. */
static void test_order_per_submission(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(worker_freep) Worker *w = NULL;
        enum { N = 300 };
        JobArg a[N] = {};

        reset_counters();
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(worker_new(&w, e, 1), 0);
        for (unsigned i = 0; i < N; i++) {
                a[i].id = i;
                assert_int_equal(worker_submit(w, job_fn, job_done, &a[i]), 0);
                if (i == N / 2) /* deliver some while others are still queued */
                        assert_true(sd_event_run(e, 0) >= 0);
        }
        run_until_delivered(e, N);
        for (unsigned i = 0; i < N; i++) {
                assert_int_equal(a[i].started_as, i);
                assert_int_equal(a[i].delivered_as, i);
                assert_int_equal(a[i].done_calls, 1);
        }
}

static Worker *chain_worker;
static JobArg chain[5];

static void chain_done(int result, void *p) {
        JobArg *a = p;

        job_done(result, p);
        if (a->id + 1 < ELEMENTSOF(chain))
                assert_int_equal(worker_submit(chain_worker, job_fn, chain_done, &chain[a->id + 1]), 0);
}

/* A done callback may submit the next job. */
static void test_submit_from_done(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;

        reset_counters();
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(worker_new(&chain_worker, e, 2), 0);
        for (unsigned i = 0; i < ELEMENTSOF(chain); i++)
                chain[i] = (JobArg) { .id = i, .want = (int) i };
        assert_int_equal(worker_submit(chain_worker, job_fn, chain_done, &chain[0]), 0);
        run_until_delivered(e, ELEMENTSOF(chain));
        for (unsigned i = 0; i < ELEMENTSOF(chain); i++) {
                assert_int_equal(chain[i].got, (int) i);
                assert_int_equal(chain[i].delivered_as, i);
        }
        chain_worker = worker_free(chain_worker);
}

/* worker_free(): the running job ends normally, queued ones get -ECANCELED without running. */
static void test_free_cancels_queued(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Worker *w = NULL;
        enum { N = 10 };
        JobArg gate = { .want = 42 }, a[N] = {};
        pthread_t t;

        reset_counters();
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(worker_new(&w, e, 1), 0);
        assert_int_equal(worker_submit(w, gate_fn, job_done, &gate), 0);
        for (unsigned i = 0; i < N; i++)
                assert_int_equal(worker_submit(w, job_fn, job_done, &a[i]), 0);
        wait_for(&gate_started);

        /* worker_free() waits for the gate job; release it once the pool has been told to quit. */
        assert_int_equal(pthread_create(&t, NULL, release_later, NULL), 0);
        w = worker_free(w);
        assert_null(w);
        assert_int_equal(pthread_join(t, NULL), 0);

        assert_int_equal(gate.done_calls, 1);
        assert_int_equal(gate.got, 42);
        for (unsigned i = 0; i < N; i++) {
                assert_false(atomic_load(&a[i].ran));
                assert_int_equal(a[i].done_calls, 1);
                assert_int_equal(a[i].got, -ECANCELED);
                assert_true(a[i].done_on_loop);
        }
        /* Nothing is left for the loop. */
        assert_true(sd_event_run(e, 0) >= 0);
        assert_int_equal(delivered_total, N + 1);
}

/* A job that finished but was not delivered yet is delivered, with its result, by worker_free(). */
static void test_free_delivers_finished(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Worker *w = NULL;
        JobArg a = { .want = -ENOSPC };

        reset_counters();
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(worker_new(&w, e, 1), 0);
        assert_int_equal(worker_submit(w, job_fn, job_done, &a), 0);
        wait_for(&a.ran);
        w = worker_free(w);
        assert_int_equal(a.done_calls, 1);
        assert_int_equal(a.got, -ENOSPC);
}

static Worker *freeing_worker;

static void free_from_done(int result, void *p) {
        job_done(result, p);
        freeing_worker = worker_free(freeing_worker);
}

/* A done callback that frees the worker: the rest of the batch is still delivered, once. */
static void test_free_from_done(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        JobArg a[4] = { { .id = 0 }, { .id = 1 }, { .id = 2 }, { .id = 3 } };

        reset_counters();
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(worker_new(&freeing_worker, e, 1), 0);
        assert_int_equal(worker_submit(freeing_worker, job_fn, free_from_done, &a[0]), 0);
        for (unsigned i = 1; i < 4; i++)
                assert_int_equal(worker_submit(freeing_worker, job_fn, job_done, &a[i]), 0);
        for (unsigned i = 0; i < 4; i++)
                wait_for(&a[i].ran);
        while (freeing_worker)
                assert_true(sd_event_run(e, RUN_DEADLINE_USEC) >= 0);
        for (unsigned i = 0; i < 4; i++)
                assert_int_equal(a[i].done_calls, 1);
        assert_int_equal(delivered_total, 4);
}

static void test_free_idle(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Worker *w = NULL;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(worker_new(&w, e, 0), 0); /* 0 threads means 1 */
        assert_int_equal(worker_pending(w), 0);
        assert_null(worker_free(w));
        assert_null(worker_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_result_delivered_on_loop),
                cmocka_unit_test(test_many_jobs),
                cmocka_unit_test(test_order_per_submission),
                cmocka_unit_test(test_submit_from_done),
                cmocka_unit_test(test_free_cancels_queued),
                cmocka_unit_test(test_free_delivers_finished),
                cmocka_unit_test(test_free_from_done),
                cmocka_unit_test(test_free_idle),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
