/* SPDX-License-Identifier: MIT */
/* Retention (keep the newest storage.keep snapshots of a task, then collect the data objects no
 * remaining manifest references) and the job's completion marker.
 *
 * retention: list manifests → remove the older ones (oldest first) → list manifests again → read
 * and parse every remaining one (their object keys) → list data/ → remove what is unreferenced and
 * older than grace → abort the incomplete multipart uploads under data/ initiated more than grace
 * ago (stores with sweep_uploads) → done. Removals run in parallel, at most storage.concurrency at
 * a time.
 *
 * Like the rest of the engine, every asynchronous step holds a reference on the operation; freeing
 * it only marks it cancelled and the last callback to come back releases it. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>

#include "log.h"
#include "sha256.h"
#include "snapshot.h"
#include "strv.h"

typedef enum RetentionPhase {
        RETENTION_MANIFESTS,            /* removing the older manifests */
        RETENTION_DATA,                 /* removing unreferenced objects */
} RetentionPhase;

typedef struct Doomed {
        SnapshotRetention *r;
        char *key;
        uint64_t size;
} Doomed;

struct SnapshotRetention {
        unsigned n_ref;
        bool cancelled, finished;
        Store *store;
        char *job, *task;
        unsigned keep;
        usec_t grace;
        SnapshotRetentionDone done;
        void *userdata;

        RetentionPhase phase;
        Doomed *doomed;
        size_t n_doomed, next, inflight;
        int remove_error;
        char *remove_key;               /* the first key that could not be removed */

        char (*ids)[SNAPSHOT_ID_MAX];   /* the remaining manifests (second listing) */
        size_t n_ids, next_id;
        char **referenced;              /* "data/<sha256>", sorted and unique once all are read */
        size_t n_referenced;
        SnapshotRetentionResult result;
};

static void doomed_free(Doomed *d, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(d[i].key);
        free(d);
}

static void retention_unref(SnapshotRetention *r) {
        assert(r->n_ref > 0);
        if (--r->n_ref > 0)
                return;
        doomed_free(r->doomed, r->n_doomed);
        free(r->remove_key);
        free(r->ids);
        strv_free(r->referenced);
        free(r->job);
        free(r->task);
        free(r);
}

static SnapshotRetention *retention_ref(SnapshotRetention *r) {
        r->n_ref++;
        return r;
}

SnapshotRetention *snapshot_retention_free(SnapshotRetention *r) {
        if (!r)
                return NULL;
        r->cancelled = true;
        retention_unref(r);
        return NULL;
}

static bool retention_live(SnapshotRetention *r) {
        return !r->cancelled && !r->finished;
}

static void retention_done(SnapshotRetention *r, int error, const char *message) {
        if (!retention_live(r))
                return;
        r->finished = true;
        retention_ref(r);
        r->done(r, error, &r->result, message, r->userdata);
        retention_unref(r);
}

_printf_(3, 4) static void retention_finish(SnapshotRetention *r, int error, const char *format, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&msg, format, ap) < 0)
                msg = NULL;
        va_end(ap);
        retention_done(r, error, msg ?: "out of memory");
}

static int retention_prefix(SnapshotRetention *r, const char *sub, char **ret) {
        return asprintf(ret, "%s/%s/%s/", r->job, r->task, sub) < 0 ? -ENOMEM : 0;
}

static int retention_list(SnapshotRetention *r, const char *sub, StoreListDone done) {
        _cleanup_free_ char *prefix = NULL;
        int k;

        k = retention_prefix(r, sub, &prefix);
        if (k < 0)
                return k;
        k = r->store->vt->list(r->store, prefix, done, retention_ref(r));
        if (k < 0)
                retention_unref(r);
        return k;
}

/* ---- removals (both phases) */

static void retention_removed_all(SnapshotRetention *r);
static void retention_remove_pump(SnapshotRetention *r);
static void retention_sweep_uploads(SnapshotRetention *r);

static void retention_on_removed(Store *s, int error, void *userdata) {
        Doomed *d = userdata;
        SnapshotRetention *r = d->r;

        r->inflight--;
        if (!retention_live(r))
                goto out;
        if (error < 0) {
                if (r->remove_error == 0) {
                        r->remove_error = error;
                        r->remove_key = strdup(d->key);
                }
        } else if (r->phase == RETENTION_MANIFESTS) {
                r->result.manifests_removed++;
                r->result.manifest_bytes_removed += d->size;
        } else {
                r->result.objects_removed++;
                r->result.bytes_removed += d->size;
        }
        retention_remove_pump(r);
out:
        retention_unref(r);
}

static void retention_remove_pump(SnapshotRetention *r) {
        unsigned max = MAX(r->store->concurrency, 1U);
        int k;

        while (retention_live(r) && r->remove_error == 0 && r->next < r->n_doomed && r->inflight < max) {
                Doomed *d = &r->doomed[r->next++];

                retention_ref(r);
                k = r->store->vt->remove(r->store, d->key, retention_on_removed, d);
                if (k < 0) {
                        retention_unref(r);
                        r->remove_error = k;
                        r->remove_key = strdup(d->key);
                        break;
                }
                r->inflight++;
        }
        if (!retention_live(r) || r->inflight > 0)
                return;
        if (r->remove_error < 0) {
                retention_finish(r, r->remove_error, "Cannot remove %s from %s: %s", strna(r->remove_key),
                                 r->store->url, strerror(-r->remove_error));
                return;
        }
        if (r->next >= r->n_doomed)
                retention_removed_all(r);
}

/* Adds key to the removals of the current phase (never while removals are in flight: they point
 * into the array). */
static int retention_doom(SnapshotRetention *r, const char *key, uint64_t size) {
        Doomed *d;
        char *k;

        assert(r->inflight == 0);
        d = reallocarray(r->doomed, r->n_doomed + 1, sizeof(Doomed));
        if (!d)
                return -ENOMEM;
        r->doomed = d;
        k = strdup(key);
        if (!k)
                return -ENOMEM;
        d[r->n_doomed++] = (Doomed) { .r = r, .key = k, .size = size };
        return 0;
}

static void retention_reset_doomed(SnapshotRetention *r) {
        doomed_free(r->doomed, r->n_doomed);
        r->doomed = NULL;
        r->n_doomed = r->next = 0;
}

/* ---- step 1: the manifests, and which of them go */

static int object_key_compare(const void *a, const void *b) {
        return strcmp(((const StoreObject *) a)->key, ((const StoreObject *) b)->key);
}

static void retention_on_relisted(Store *s, int error, StoreObject *objects, size_t n, void *userdata);

static void retention_relist(SnapshotRetention *r) {
        int k;

        retention_reset_doomed(r);
        r->phase = RETENTION_DATA;
        k = retention_list(r, "manifests", retention_on_relisted);
        if (k < 0)
                retention_finish(r, k, "Cannot list the manifests of %s/%s: %s", r->job, r->task, strerror(-k));
}

static void retention_on_manifests_listed(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        _cleanup_free_ char (*ids)[SNAPSHOT_ID_MAX] = NULL;
        SnapshotRetention *r = userdata;
        size_t n_ids = 0;
        int k;

        if (!retention_live(r))
                goto out;
        k = error < 0 ? error : snapshot_ids_from_listing(objects, n, r->job, r->task, &ids, &n_ids);
        if (k < 0) {
                retention_finish(r, k, "Cannot list the manifests of %s/%s in %s: %s", r->job, r->task, s->url,
                                 strerror(-k));
                goto out;
        }
        /* ids are sorted oldest first: the first n_ids - keep go, oldest first. */
        for (size_t i = 0; i + r->keep < n_ids; i++) {
                _cleanup_free_ char *key = NULL;
                const StoreObject *o = NULL;

                k = snapshot_manifest_key(r->job, r->task, ids[i], &key);
                if (k >= 0)
                        o = bsearch(&(StoreObject) { .key = key }, objects, n, sizeof(StoreObject),
                                    object_key_compare);
                if (k >= 0)
                        k = retention_doom(r, key, o ? o->size : 0);
                if (k < 0) {
                        retention_finish(r, k, "Out of memory");
                        goto out;
                }
        }
        r->phase = RETENTION_MANIFESTS;
        if (r->n_doomed == 0)
                retention_relist(r);
        else
                retention_remove_pump(r);
out:
        store_objects_free(objects, n);
        retention_unref(r);
}

/* ---- step 2: what the remaining manifests reference */

static void retention_read_next(SnapshotRetention *r);

static void retention_skip_data(SnapshotRetention *r, int error, const char *id, const char *why) {
        r->result.data_skipped = true;
        retention_finish(r, error, "Not removing unreferenced objects of %s/%s: manifest %s is unusable: %s", r->job,
                         r->task, id, why);
}

static void retention_on_manifest(Store *s, int error, char *data, size_t len, void *userdata) {
        _cleanup_(manifest_freep) Manifest *m = NULL;
        _cleanup_strv_free_ char **keys = NULL;
        _cleanup_free_ char *msg = NULL;
        SnapshotRetention *r = userdata;
        const char *id;
        int k;

        if (!retention_live(r))
                goto out;
        id = r->ids[r->next_id++];
        if (error == -ENOENT) { /* removed since the listing: not a remaining manifest */
                retention_read_next(r);
                goto out;
        }
        if (error < 0) {
                retention_skip_data(r, error, id, strerror(-error));
                goto out;
        }
        k = manifest_parse(data, len, &m, &msg);
        if (k == -ENOMEM) {
                retention_finish(r, k, "Out of memory");
                goto out;
        }
        if (k < 0) {
                retention_skip_data(r, k, id, msg ?: strerror(-k));
                goto out;
        }
        k = manifest_object_keys(m, &keys);
        for (size_t i = 0; k >= 0 && keys && keys[i]; i++) {
                k = strv_consume(&r->referenced, TAKE_PTR(keys[i]));
                if (k >= 0)
                        r->n_referenced++;
        }
        if (k < 0) {
                retention_finish(r, k, "Out of memory");
                goto out;
        }
        r->result.manifests_kept++;
        retention_read_next(r);
out:
        free(data);
        retention_unref(r);
}

static void retention_on_data_listed(Store *s, int error, StoreObject *objects, size_t n, void *userdata);

static int string_compare(const void *a, const void *b) {
        return strcmp(*(const char * const *) a, *(const char * const *) b);
}

static void retention_read_next(SnapshotRetention *r) {
        _cleanup_free_ char *key = NULL;
        int k;

        if (r->next_id >= r->n_ids) {
                if (r->n_referenced > 0)
                        qsort(r->referenced, r->n_referenced, sizeof(char *), string_compare);
                k = retention_list(r, "data", retention_on_data_listed);
                if (k < 0)
                        retention_finish(r, k, "Cannot list the objects of %s/%s: %s", r->job, r->task,
                                         strerror(-k));
                return;
        }
        k = snapshot_manifest_key(r->job, r->task, r->ids[r->next_id], &key);
        if (k >= 0) {
                k = r->store->vt->get_data(r->store, key, MANIFEST_SIZE_MAX, retention_on_manifest, retention_ref(r));
                if (k < 0)
                        retention_unref(r);
        }
        if (k < 0)
                retention_finish(r, k, "Cannot read manifest %s of %s/%s: %s", r->ids[r->next_id], r->job, r->task,
                                 strerror(-k));
}

static void retention_on_relisted(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        SnapshotRetention *r = userdata;
        int k;

        if (!retention_live(r))
                goto out;
        k = error < 0 ? error : snapshot_ids_from_listing(objects, n, r->job, r->task, &r->ids, &r->n_ids);
        if (k < 0) {
                retention_finish(r, k, "Cannot list the manifests of %s/%s in %s: %s", r->job, r->task, s->url,
                                 strerror(-k));
                goto out;
        }
        retention_read_next(r);
out:
        store_objects_free(objects, n);
        retention_unref(r);
}

/* ---- step 3: the unreferenced objects */

static bool retention_is_referenced(SnapshotRetention *r, const char *rel) {
        if (r->n_referenced == 0)
                return false;
        return bsearch(&rel, r->referenced, r->n_referenced, sizeof(char *), string_compare);
}

/* "data/<64 lowercase hex>" exactly. */
static bool data_key_is_object(const char *rel) {
        if (!strneq(rel, "data/", 5) || strlen(rel) != 5 + MANIFEST_SHA256_HEX_LEN)
                return false;
        for (const char *p = rel + 5; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

static int retention_classify(SnapshotRetention *r, const StoreObject *o, size_t prefix_len, usec_t now) {
        const char *rel = o->key + prefix_len;

        if (!data_key_is_object(rel)) {
                r->result.objects_foreign++;
                return 0;
        }
        if (retention_is_referenced(r, rel)) {
                r->result.objects_referenced++;
                return 0;
        }
        if (o->modified == USEC_INFINITY) {
                r->result.objects_unknown_age++;
                return 0;
        }
        /* A time in the future (clock skew) counts as young. */
        if (o->modified >= now || now - o->modified < r->grace) {
                r->result.objects_young++;
                return 0;
        }
        return retention_doom(r, o->key, o->size);
}

static void retention_on_data_listed(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        SnapshotRetention *r = userdata;
        usec_t now = now_usec(CLOCK_REALTIME);
        size_t prefix_len = strlen(r->job) + 1 + strlen(r->task) + 1;
        int k = 0;

        if (!retention_live(r))
                goto out;
        if (error < 0) {
                retention_finish(r, error, "Cannot list the objects of %s/%s in %s: %s", r->job, r->task, s->url,
                                 strerror(-error));
                goto out;
        }
        for (size_t i = 0; k >= 0 && i < n; i++)
                if (strlen(objects[i].key) > prefix_len)
                        k = retention_classify(r, &objects[i], prefix_len, now);
        if (k < 0) {
                retention_finish(r, k, "Out of memory");
                goto out;
        }
        if (r->n_doomed == 0)
                retention_sweep_uploads(r);
        else
                retention_remove_pump(r);
out:
        store_objects_free(objects, n);
        retention_unref(r);
}

static void retention_removed_all(SnapshotRetention *r) {
        if (r->phase == RETENTION_MANIFESTS)
                retention_relist(r);
        else
                retention_sweep_uploads(r);
}

/* ---- step 4: the incomplete uploads of data objects */

static void retention_on_swept(Store *s, int error, uint64_t aborted, void *userdata) {
        SnapshotRetention *r = userdata;

        if (!retention_live(r))
                goto out;
        r->result.uploads_aborted += aborted;
        if (error < 0)
                retention_finish(r, error, "Cannot abort the incomplete uploads under %s/%s/data/ in %s: %s", r->job,
                                 r->task, s->url, strerror(-error));
        else
                retention_done(r, 0, NULL);
out:
        retention_unref(r);
}

/* Uploads whose begin answer was lost are known to nobody: aborted once older than grace (a
 * younger one may be another writer's, in flight). */
static void retention_sweep_uploads(SnapshotRetention *r) {
        _cleanup_free_ char *prefix = NULL;
        usec_t now = now_usec(CLOCK_REALTIME);
        int k;

        if (!r->store->vt->sweep_uploads || now <= r->grace) {
                retention_done(r, 0, NULL);
                return;
        }
        k = retention_prefix(r, "data", &prefix);
        if (k >= 0) {
                k = r->store->vt->sweep_uploads(r->store, prefix, now - r->grace, retention_on_swept,
                                                retention_ref(r));
                if (k < 0)
                        retention_unref(r);
        }
        if (k < 0)
                retention_finish(r, k, "Cannot abort the incomplete uploads under %s/%s/data/ in %s: %s", r->job,
                                 r->task, r->store->url, strerror(-k));
}

int snapshot_retention_start(Store *store, const char *job, const char *task, unsigned keep, usec_t grace,
                             SnapshotRetentionDone done, void *userdata, SnapshotRetention **ret) {
        SnapshotRetention *r;
        int k;

        assert(store && job && task && done && ret);
        if (keep == 0 || !config_job_id_is_valid(job) || !config_task_name_is_valid(task))
                return -EINVAL;
        r = calloc(1, sizeof(SnapshotRetention));
        if (!r)
                return -ENOMEM;
        *r = (SnapshotRetention) { .n_ref = 1, .store = store, .keep = keep, .grace = grace, .done = done,
                                   .userdata = userdata, .job = strdup(job), .task = strdup(task) };
        k = r->job && r->task ? retention_list(r, "manifests", retention_on_manifests_listed) : -ENOMEM;
        if (k < 0) {
                retention_unref(r);
                return k;
        }
        *ret = r;
        return 0;
}

/* ------------------------------------------------------------------ the completion marker */

struct SnapshotMark {
        unsigned n_ref;
        bool cancelled;
        Store *store;
        char *key, *json;
        size_t json_len;
        SnapshotMarkDone done;
        void *userdata;
};

static void mark_unref(SnapshotMark *m) {
        assert(m->n_ref > 0);
        if (--m->n_ref > 0)
                return;
        free(m->key);
        free(m->json);
        free(m);
}

SnapshotMark *snapshot_mark_free(SnapshotMark *m) {
        if (!m)
                return NULL;
        m->cancelled = true;
        mark_unref(m);
        return NULL;
}

static void mark_on_put(Store *s, int error, void *userdata) {
        _cleanup_free_ char *msg = NULL;
        SnapshotMark *m = userdata;

        if (!m->cancelled) {
                if (error < 0 && error != -EEXIST &&
                    asprintf(&msg, "Cannot write the completion marker %s to %s: %s", m->key, s->url,
                             strerror(-error)) < 0)
                        msg = NULL;
                m->n_ref++;
                m->done(m, error == -EEXIST ? 0 : error < 0 ? error : 1,
                        error < 0 && error != -EEXIST ? msg ?: "out of memory" : NULL, m->userdata);
                mark_unref(m);
        }
        mark_unref(m);
}

static int mark_build(const SnapshotMarkParams *p, char **ret, size_t *ret_len) {
        _cleanup_(job_completion_freep) JobCompletion *c = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        r = job_completion_new(&(JobCompletionParams) { .job = p->config->job_id,
                                                        .completed_at = p->completed_at ?: now_usec(CLOCK_REALTIME),
                                                        .instance_id = p->instance_id, .boot_id = p->boot_id,
                                                        .hostname = p->hostname },
                               &c, &error);
        for (size_t i = 0; r >= 0 && i < p->config->n_tasks; i++)
                r = job_completion_add_task(c, p->config->tasks[i].name,
                                            p->last_snapshots ? p->last_snapshots[i] : NULL, &error);
        if (r >= 0)
                r = job_completion_to_json(c, ret, ret_len, &error);
        if (r < 0)
                log_debug("Cannot build the completion marker of %s: %s", p->config->job_id,
                          error ?: strerror(-r));
        return r == -ENOMEM ? r : r < 0 ? -EINVAL : 0;
}

int snapshot_mark_completed_start(const SnapshotMarkParams *p, SnapshotMark **ret) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        char hex[SHA256_HEX_SIZE];
        SnapshotMark *m;
        int r;

        assert(p && p->store && p->config && p->done && ret);
        m = calloc(1, sizeof(SnapshotMark));
        if (!m)
                return -ENOMEM;
        *m = (SnapshotMark) { .n_ref = 1, .store = p->store, .done = p->done, .userdata = p->userdata };
        r = mark_build(p, &m->json, &m->json_len);
        if (r >= 0)
                r = sha256_buffer(m->json, m->json_len, digest);
        if (r >= 0)
                r = snapshot_completion_key(p->config->job_id, &m->key);
        if (r >= 0) {
                m->n_ref++;
                r = p->store->vt->put(p->store,
                                      &(StorePut) { .key = m->key, .fd = -EBADF, .buf = m->json, .len = m->json_len,
                                                    .sha256 = sha256_to_hex(digest, hex), .create_only = true,
                                                    .content_type = "application/json" },
                                      mark_on_put, m);
                if (r < 0)
                        m->n_ref--;
        }
        if (r < 0) {
                mark_unref(m);
                return r;
        }
        *ret = m;
        return 0;
}

/* ---- checking for it */

static const char * const completion_state_table[_SNAPSHOT_COMPLETION_STATE_MAX] = {
        [SNAPSHOT_COMPLETION_ABSENT] = "absent",
        [SNAPSHOT_COMPLETION_PRESENT] = "present",
        [SNAPSHOT_COMPLETION_INVALID] = "invalid",
};

const char *snapshot_completion_state_to_string(SnapshotCompletionState s) {
        return s >= 0 && s < _SNAPSHOT_COMPLETION_STATE_MAX ? completion_state_table[s] : NULL;
}

SnapshotCompletionState snapshot_completion_state_from_string(const char *s) {
        for (int i = 0; s && i < _SNAPSHOT_COMPLETION_STATE_MAX; i++)
                if (streq(completion_state_table[i], s))
                        return (SnapshotCompletionState) i;
        return _SNAPSHOT_COMPLETION_STATE_INVALID;
}

struct SnapshotCompletionCheck {
        unsigned n_ref;
        bool cancelled;
        char *job, *key;
        SnapshotCompletionCheckDone done;
        void *userdata;
};

static void check_unref(SnapshotCompletionCheck *c) {
        assert(c->n_ref > 0);
        if (--c->n_ref > 0)
                return;
        free(c->job);
        free(c->key);
        free(c);
}

SnapshotCompletionCheck *snapshot_completion_check_free(SnapshotCompletionCheck *c) {
        if (!c)
                return NULL;
        c->cancelled = true;
        check_unref(c);
        return NULL;
}

/* What data says: PRESENT (with *ret), or INVALID with *ret_msg; -ENOMEM. */
static int check_classify(SnapshotCompletionCheck *c, int error, const char *data, size_t len,
                          JobCompletion **ret, char **ret_msg) {
        _cleanup_(job_completion_freep) JobCompletion *m = NULL;
        int r;

        if (error == -EFBIG)
                return asprintf(ret_msg, "%s: larger than %u bytes", c->key, COMPLETION_SIZE_MAX) < 0 ? -ENOMEM
                                                                                                    : SNAPSHOT_COMPLETION_INVALID;
        r = job_completion_parse(data, len, &m, ret_msg);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return SNAPSHOT_COMPLETION_INVALID;
        if (!streq(m->job, c->job))
                return asprintf(ret_msg, "%s: written for job \"%s\"", c->key, m->job) < 0 ? -ENOMEM
                                                                                       : SNAPSHOT_COMPLETION_INVALID;
        *ret = TAKE_PTR(m);
        return SNAPSHOT_COMPLETION_PRESENT;
}

static void check_on_data(Store *s, int error, char *data, size_t len, void *userdata) {
        _cleanup_(job_completion_freep) JobCompletion *m = NULL;
        _cleanup_free_ char *msg = NULL;
        SnapshotCompletionCheck *c = userdata;
        int state;

        if (c->cancelled)
                goto out;
        if (error == -ENOENT)
                state = SNAPSHOT_COMPLETION_ABSENT;
        else if (error < 0 && error != -EFBIG) {
                if (asprintf(&msg, "Cannot read %s from %s: %s", c->key, s->url, strerror(-error)) < 0)
                        msg = NULL;
                state = error;
        } else
                state = check_classify(c, error, data, len, &m, &msg);
        c->n_ref++;
        if (state < 0)
                c->done(c, state, _SNAPSHOT_COMPLETION_STATE_INVALID, NULL, msg ?: "out of memory", c->userdata);
        else
                c->done(c, 0, (SnapshotCompletionState) state, m, msg, c->userdata);
        check_unref(c);
out:
        free(data);
        check_unref(c);
}

int snapshot_completion_check_start(Store *store, const char *job, SnapshotCompletionCheckDone done, void *userdata,
                                    SnapshotCompletionCheck **ret) {
        SnapshotCompletionCheck *c;
        int r;

        assert(store && job && done && ret);
        if (!config_job_id_is_valid(job))
                return -EINVAL;
        c = calloc(1, sizeof(SnapshotCompletionCheck));
        if (!c)
                return -ENOMEM;
        *c = (SnapshotCompletionCheck) { .n_ref = 1, .done = done, .userdata = userdata, .job = strdup(job) };
        r = c->job ? snapshot_completion_key(job, &c->key) : -ENOMEM;
        if (r >= 0) {
                c->n_ref++;
                r = store->vt->get_data(store, c->key, COMPLETION_SIZE_MAX, check_on_data, c);
                if (r < 0)
                        c->n_ref--;
        }
        if (r < 0) {
                check_unref(c);
                return r;
        }
        *ret = c;
        return 0;
}
