/* SPDX-License-Identifier: MIT */
#include <signal.h>

#include "config.h"
#include "json-util.h"
#include "macro.h"
#include "status.h"

static const char *const phase_table[_PHASE_MAX] = {
        [PHASE_STARTING] = "starting",   [PHASE_RESTORING] = "restoring", [PHASE_RUNNING] = "running",
        [PHASE_DRAINING] = "draining",   [PHASE_DRAINED] = "drained",     [PHASE_SYNCING] = "syncing",
        [PHASE_COMPLETED] = "completed", [PHASE_FAILED] = "failed",       [PHASE_POWERING_OFF] = "powering-off",
};

static const char *const task_state_table[_TASK_STATE_MAX] = {
        [TASK_STATE_PENDING] = "pending",   [TASK_STATE_PULLING] = "pulling", [TASK_STATE_STARTING] = "starting",
        [TASK_STATE_RUNNING] = "running",   [TASK_STATE_STOPPING] = "stopping", [TASK_STATE_EXITED] = "exited",
        [TASK_STATE_FAILED] = "failed",     [TASK_STATE_COMPLETED] = "completed",
};

static int table_lookup(const char *const *table, int n, const char *s) {
        if (!s)
                return -EINVAL;
        for (int i = 0; i < n; i++)
                if (table[i] && streq(table[i], s))
                        return i;
        return -EINVAL;
}

const char *phase_to_string(Phase p) {
        return p >= 0 && p < _PHASE_MAX ? phase_table[p] : NULL;
}

Phase phase_from_string(const char *s) {
        return (Phase) table_lookup(phase_table, _PHASE_MAX, s);
}

const char *task_state_to_string(TaskState s) {
        return s >= 0 && s < _TASK_STATE_MAX ? task_state_table[s] : NULL;
}

TaskState task_state_from_string(const char *s) {
        return (TaskState) table_lookup(task_state_table, _TASK_STATE_MAX, s);
}

static cJSON *json_time(usec_t t) {
        char buf[RFC3339_MAX];

        if (t == 0 || t == USEC_INFINITY)
                return cJSON_CreateNull();
        return cJSON_CreateString(format_rfc3339(buf, t));
}

static bool add(cJSON *o, const char *key, cJSON *v) {
        if (!v)
                return false;
        if (!cJSON_AddItemToObject(o, key, v)) {
                cJSON_Delete(v);
                return false;
        }
        return true;
}

static cJSON *snapshot_to_json(const SnapshotInfo *s) {
        _cleanup_(cJSON_Deletep) cJSON *o = NULL;

        if (!s->id)
                return cJSON_CreateNull();
        o = cJSON_CreateObject();
        if (!o || !add(o, "id", cJSON_CreateString(s->id)) || !add(o, "seq", cJSON_CreateNumber((double) s->seq)) ||
            !add(o, "committed_at", json_time(s->committed_at)) ||
            !add(o, "bytes", cJSON_CreateNumber((double) s->bytes)) ||
            !add(o, "files", cJSON_CreateNumber((double) s->files)))
                return NULL;
        return TAKE_PTR(o);
}

static cJSON *task_to_json(const TaskStatus *t) {
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();

        if (!o || !add(o, "name", cJSON_CreateString(t->name)) ||
            !add(o, "state", cJSON_CreateString(strna(task_state_to_string(t->state)))) ||
            !add(o, "container", t->container ? cJSON_CreateString(t->container) : cJSON_CreateNull()) ||
            !add(o, "restarts", cJSON_CreateNumber(t->restarts)) ||
            !add(o, "exit_code", t->has_exit_code ? cJSON_CreateNumber(t->exit_code) : cJSON_CreateNull()))
                return NULL;
        if (t->exit_signal > 0 &&
            !add(o, "exit_signal", cJSON_CreateString(strna(signal_to_config_string(t->exit_signal)))))
                return NULL;
        if (!add(o, "last_snapshot", snapshot_to_json(&t->last_snapshot)) ||
            !add(o, "pending_bytes", cJSON_CreateNumber((double) t->pending_bytes)))
                return NULL;
        return TAKE_PTR(o);
}

static cJSON *notice_to_json(const NoticeInfo *n) {
        _cleanup_(cJSON_Deletep) cJSON *o = NULL;

        if (!n->kind)
                return cJSON_CreateNull();
        o = cJSON_CreateObject();
        if (!o || !add(o, "kind", cJSON_CreateString(n->kind)) || !add(o, "imminent", cJSON_CreateBool(n->imminent)) ||
            !add(o, "received_at", json_time(n->received_at)) || !add(o, "deadline", json_time(n->deadline)))
                return NULL;
        return TAKE_PTR(o);
}

cJSON *status_to_json(const StatusView *v) {
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
        cJSON *tasks;
        const SnapshotInfo *newest = NULL;
        uint64_t pending = 0;

        if (!o || !add(o, "version", cJSON_CreateNumber(1)) ||
            !add(o, "job_id", v->job_id ? cJSON_CreateString(v->job_id) : cJSON_CreateNull()) ||
            !add(o, "provider", cJSON_CreateString(strna(v->provider))) ||
            !add(o, "phase", cJSON_CreateString(strna(phase_to_string(v->phase)))) ||
            !add(o, "dry_run", cJSON_CreateBool(v->dry_run)))
                return NULL;
        tasks = cJSON_AddArrayToObject(o, "tasks");
        if (!tasks)
                return NULL;
        for (size_t i = 0; i < v->n_tasks; i++) {
                const SnapshotInfo *s = &v->tasks[i].last_snapshot;

                if (!cJSON_AddItemToArray(tasks, task_to_json(&v->tasks[i])))
                        return NULL;
                if (s->id && (!newest || s->committed_at > newest->committed_at))
                        newest = s;
                pending += v->tasks[i].pending_bytes;
        }
        if (!add(o, "notice", notice_to_json(&v->notice)) ||
            !add(o, "last_snapshot", newest ? snapshot_to_json(newest) : cJSON_CreateNull()) ||
            !add(o, "pending_bytes", cJSON_CreateNumber((double) pending)) ||
            !add(o, "upload_rate_bps", cJSON_CreateNumber((double) v->upload_rate_bps)))
                return NULL;
        return TAKE_PTR(o);
}

static const char *jstr(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void format_snapshot(const cJSON *s, FILE *f) {
        if (!cJSON_IsObject(s)) {
                fputs("none", f);
                return;
        }
        fprintf(f, "%s (seq %.0f, %.0f bytes, %.0f files, committed %s)", strna(jstr(s, "id")), jnum(s, "seq"),
                jnum(s, "bytes"), jnum(s, "files"), strna(jstr(s, "committed_at")));
}

static void format_task(const cJSON *t, FILE *f) {
        const cJSON *ec = cJSON_GetObjectItemCaseSensitive(t, "exit_code");

        fprintf(f, "    %s: %s", strna(jstr(t, "name")), strna(jstr(t, "state")));
        if (jstr(t, "container"))
                /* A container id is shown short, as docker ps does; "pid:N" whole. */
                fprintf(f, " [%.*s]", strlen(jstr(t, "container")) == 64 ? 12 : 64, jstr(t, "container"));
        if (jnum(t, "restarts") > 0)
                fprintf(f, ", %.0f restarts", jnum(t, "restarts"));
        if (cJSON_IsNumber(ec))
                fprintf(f, ", exit code %d", ec->valueint);
        if (jstr(t, "exit_signal"))
                fprintf(f, ", killed by %s", jstr(t, "exit_signal"));
        fputs("\n      snapshot: ", f);
        format_snapshot(cJSON_GetObjectItemCaseSensitive(t, "last_snapshot"), f);
        fputc('\n', f);
}

int status_format_human(const cJSON *status, FILE *f) {
        const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(status, "tasks");
        const cJSON *notice = cJSON_GetObjectItemCaseSensitive(status, "notice");
        const cJSON *t;

        if (!cJSON_IsObject(status))
                return -EBADMSG;
        fprintf(f, "trainsupd: job %s\n", strna(jstr(status, "job_id")));
        fprintf(f, "     Phase: %s%s\n", strna(jstr(status, "phase")),
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(status, "dry_run")) ? " (dry run)" : "");
        fprintf(f, "  Provider: %s\n", strna(jstr(status, "provider")));
        if (cJSON_IsObject(notice))
                fprintf(f, "    Notice: %s (%s), received %s, deadline %s\n", strna(jstr(notice, "kind")),
                        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(notice, "imminent")) ? "imminent" : "advisory",
                        strna(jstr(notice, "received_at")), jstr(notice, "deadline") ?: "none");
        else
                fputs("    Notice: none\n", f);
        fputs("  Snapshot: ", f);
        format_snapshot(cJSON_GetObjectItemCaseSensitive(status, "last_snapshot"), f);
        fprintf(f, "\n   Pending: %.0f bytes, upload rate %.0f B/s\n", jnum(status, "pending_bytes"),
                jnum(status, "upload_rate_bps"));
        fprintf(f, "     Tasks:\n");
        cJSON_ArrayForEach(t, tasks)
                format_task(t, f);
        return ferror(f) ? -EIO : 0;
}
