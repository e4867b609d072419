/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>

#include "worker.h"

typedef struct Job {
        WorkerFunc fn;
        WorkerDone done;
        void *arg;
        int result;
        struct Job *next;
} Job;

struct Worker {
        sd_event_source *source;
        int efd;
        pthread_t *threads;
        unsigned n_threads;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        Job *queue, *queue_tail;   /* waiting to run */
        Job *finished, *finished_tail;
        Job *delivering;           /* taken from finished, being delivered on the loop */
        bool *freed;               /* set when a done callback frees the worker */
        unsigned pending;          /* queued + running + finished not yet delivered */
        bool quit;
};

static void list_append(Job **head, Job **tail, Job *j) {
        j->next = NULL;
        if (*tail)
                (*tail)->next = j;
        else
                *head = j;
        *tail = j;
}

static void *worker_thread(void *userdata) {
        Worker *w = userdata;
        const uint64_t one = 1;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                Job *j;

                while (!w->queue && !w->quit)
                        pthread_cond_wait(&w->cond, &w->lock);
                if (w->quit)
                        break;
                j = w->queue;
                w->queue = j->next;
                if (!w->queue)
                        w->queue_tail = NULL;
                pthread_mutex_unlock(&w->lock);

                j->result = j->fn(j->arg);

                pthread_mutex_lock(&w->lock);
                list_append(&w->finished, &w->finished_tail, j);
                (void) !write(w->efd, &one, sizeof(one));
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* Delivers finished jobs on the loop. A done callback may free the worker: the rest of the batch
 * is then delivered by worker_free(). */
static int worker_on_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        bool freed = false;
        uint64_t n;

        (void) !read(w->efd, &n, sizeof(n));
        pthread_mutex_lock(&w->lock);
        w->delivering = w->finished;
        w->finished = w->finished_tail = NULL;
        pthread_mutex_unlock(&w->lock);

        w->freed = &freed;
        while (w->delivering) {
                Job *j = w->delivering;

                w->delivering = j->next;
                pthread_mutex_lock(&w->lock);
                w->pending--;
                pthread_mutex_unlock(&w->lock);
                if (j->done)
                        j->done(j->result, j->arg);
                free(j);
                if (freed)
                        return 0;
        }
        w->freed = NULL;
        return 0;
}

int worker_new(Worker **ret, sd_event *event, unsigned threads) {
        Worker *w;
        int r;

        w = calloc(1, sizeof(Worker));
        if (!w)
                return -ENOMEM;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        w->threads = calloc(MAX(threads, 1U), sizeof(pthread_t));
        if (w->efd < 0 || !w->threads) {
                r = w->efd < 0 ? -errno : -ENOMEM;
                worker_free(w);
                return r;
        }
        r = sd_event_add_io(event, &w->source, w->efd, EPOLLIN, worker_on_event, w);
        if (r < 0) {
                worker_free(w);
                return r;
        }
        (void) sd_event_source_set_description(w->source, "worker");
        for (unsigned i = 0; i < MAX(threads, 1U); i++) {
                r = -pthread_create(&w->threads[i], NULL, worker_thread, w);
                if (r < 0) {
                        worker_free(w);
                        return r;
                }
                w->n_threads++;
        }
        *ret = w;
        return 0;
}

Worker *worker_free(Worker *w) {
        Job *j;

        if (!w)
                return NULL;
        pthread_mutex_lock(&w->lock);
        w->quit = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        for (unsigned i = 0; i < w->n_threads; i++)
                pthread_join(w->threads[i], NULL);

        /* Never started: cancelled. Finished but not delivered: delivered now. */
        while ((j = w->queue)) {
                w->queue = j->next;
                if (j->done)
                        j->done(-ECANCELED, j->arg);
                free(j);
        }
        if (w->freed)
                *w->freed = true;
        while ((j = w->delivering)) {
                w->delivering = j->next;
                if (j->done)
                        j->done(j->result, j->arg);
                free(j);
        }
        while ((j = w->finished)) {
                w->finished = j->next;
                if (j->done)
                        j->done(j->result, j->arg);
                free(j);
        }
        sd_event_source_disable_unref(w->source);
        safe_close(w->efd);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w->threads);
        return mfree(w);
}

int worker_submit(Worker *w, WorkerFunc fn, WorkerDone done, void *arg) {
        Job *j = calloc(1, sizeof(Job));

        if (!j)
                return -ENOMEM;
        *j = (Job) { .fn = fn, .done = done, .arg = arg };
        pthread_mutex_lock(&w->lock);
        list_append(&w->queue, &w->queue_tail, j);
        w->pending++;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        return 0;
}

unsigned worker_pending(const Worker *w) {
        return w->pending;
}
