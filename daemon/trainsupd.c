/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sysexits.h>

#include "config.h"
#include "control-client.h"
#include "curl-glue.h"
#include "fs-util.h"
#include "http.h"
#include "log.h"
#include "manager.h"
#include "snapshot.h"
#include "writer-id.h"
#include "strv.h"
#include "worker.h"

#define DEFAULT_CONFIG "/etc/trainsupd/trainsupd.json"
#define DEFAULT_CONTROL "/run/trainsupd/control"
#define DEFAULT_STATE_DIR "/var/lib/trainsupd"
#define DEFAULT_DMI_DIR "/sys/class/dmi/id"
#define CONTROL_TIMEOUT_USEC (10 * USEC_PER_SEC)
/* checkpoint --wait, stop --checkpoint: a checkpoint of a large model and its upload. */
#define CONTROL_WAIT_TIMEOUT_USEC (3600 * USEC_PER_SEC)

static const char *arg_config;
static const char *arg_task;
static const char *arg_snapshot;
static const char *arg_to;
static bool arg_dry_run, arg_json, arg_wait, arg_checkpoint, arg_show, arg_force;
static LogTarget arg_log_target = LOG_TARGET_AUTO;

static const char *env_or(const char *name, const char *def) {
        const char *v = getenv(name);

        return isempty(v) ? def : v;
}

static const char *config_path(void) {
        return arg_config ?: env_or("TRAINSUPD_CONFIG", DEFAULT_CONFIG);
}

static const char *control_path(void) {
        return env_or("TRAINSUPD_CONTROL", DEFAULT_CONTROL);
}

static const char *state_dir(void) {
        return env_or("TRAINSUPD_STATE_DIR", DEFAULT_STATE_DIR);
}

static void help(FILE *f) {
        fputs("trainsupd — keeps training jobs alive on spot and preemptible VMs\n\n"
              "Usage:\n"
              "  trainsupd run [--config PATH] [--log-target=journal|console] [--dry-run]\n"
              "  trainsupd status [--json]\n"
              "  trainsupd checkpoint [--task NAME] [--wait]\n"
              "  trainsupd stop [--checkpoint]\n"
              "  trainsupd validate [--config PATH] [--show]\n"
              "  trainsupd snapshot [--config PATH] [--task NAME]\n"
              "  trainsupd snapshots [--config PATH] [--task NAME] [--json]\n"
              "  trainsupd restore [--config PATH] [--task NAME] [--snapshot ID] --to DIR [--force]\n"
              "  trainsupd --version | --help\n\n"
              "Environment: TRAINSUPD_CONFIG, TRAINSUPD_CONTROL, TRAINSUPD_STATE_DIR, TRAINSUPD_DMI_DIR,\n"
              "TRAINSUPD_LOG_LEVEL (debug|info|notice|warning|err).\n"
              "See trainsupd(8) and trainsupd.json(5).\n",
              f);
}

enum { OPT_CONFIG = 0x100, OPT_LOG_TARGET, OPT_DRY_RUN, OPT_JSON, OPT_TASK, OPT_WAIT, OPT_CHECKPOINT,
       OPT_SHOW, OPT_SNAPSHOT, OPT_TO, OPT_FORCE };

static const struct option all_options[] = {
        { "config", required_argument, NULL, OPT_CONFIG },   { "log-target", required_argument, NULL, OPT_LOG_TARGET },
        { "dry-run", no_argument, NULL, OPT_DRY_RUN },       { "json", no_argument, NULL, OPT_JSON },
        { "task", required_argument, NULL, OPT_TASK },       { "wait", no_argument, NULL, OPT_WAIT },
        { "checkpoint", no_argument, NULL, OPT_CHECKPOINT }, { "show", no_argument, NULL, OPT_SHOW },
        { "snapshot", required_argument, NULL, OPT_SNAPSHOT }, { "to", required_argument, NULL, OPT_TO },
        { "force", no_argument, NULL, OPT_FORCE },           {}
};

typedef struct Verb {
        const char *name;
        const char *options; /* the long options this verb accepts, space separated */
        int (*run)(void);
} Verb;

static bool option_allowed(const Verb *v, const char *opt) {
        size_t n = strlen(opt);

        for (const char *p = v->options; (p = strstr(p, opt)); p += n)
                if ((p == v->options || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0))
                        return true;
        return false;
}

static int parse_option(int c) {
        switch (c) {
        case OPT_CONFIG: arg_config = optarg; break;
        case OPT_LOG_TARGET:
                arg_log_target = log_target_from_string(optarg);
                if (arg_log_target < 0 || arg_log_target == LOG_TARGET_AUTO) {
                        fprintf(stderr, "trainsupd: --log-target must be journal or console, not \"%s\"\n", optarg);
                        return -EINVAL;
                }
                break;
        case OPT_DRY_RUN: arg_dry_run = true; break;
        case OPT_JSON: arg_json = true; break;
        case OPT_TASK: arg_task = optarg; break;
        case OPT_WAIT: arg_wait = true; break;
        case OPT_CHECKPOINT: arg_checkpoint = true; break;
        case OPT_SHOW: arg_show = true; break;
        case OPT_SNAPSHOT: arg_snapshot = optarg; break;
        case OPT_TO: arg_to = optarg; break;
        case OPT_FORCE: arg_force = true; break;
        default: return -EINVAL;
        }
        return 0;
}

static int parse_verb_options(const Verb *v, int argc, char **argv) {
        int c, idx;

        optind = 2;
        while ((c = getopt_long(argc, argv, "", all_options, &idx)) >= 0) {
                if (c == '?')
                        return -EINVAL;
                if (!option_allowed(v, all_options[idx].name)) {
                        fprintf(stderr, "trainsupd %s: unknown option --%s\n", v->name, all_options[idx].name);
                        return -EINVAL;
                }
                if (parse_option(c) < 0)
                        return -EINVAL;
        }
        if (optind < argc) {
                fprintf(stderr, "trainsupd %s: unexpected argument \"%s\"\n", v->name, argv[optind]);
                return -EINVAL;
        }
        return 0;
}

/* Loads the config; on problems prints them one per line and returns EX_CONFIG. */
static int load_config(Config **ret) {
        _cleanup_strv_free_ char **problems = NULL;
        int r;

        r = config_load(config_path(), state_dir(), ret, &problems);
        if (r >= 0)
                return 0;
        STRV_FOREACH(p, problems)
                fprintf(stderr, "%s\n", *p);
        if (!problems)
                fprintf(stderr, "%s: cannot load: %s\n", config_path(), strerror(-r));
        return EX_CONFIG;
}

static int verb_validate(void) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *json = NULL;
        int r;

        r = load_config(&c);
        if (r != 0)
                return r;
        if (!arg_show)
                return EX_OK;
        if (config_to_json_string(c, &json) < 0) {
                fprintf(stderr, "trainsupd: out of memory\n");
                return EX_SOFTWARE;
        }
        printf("%s\n", json);
        return EX_OK;
}

static int verb_run(void) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        sigset_t mask;
        int r;

        log_set_target(arg_log_target);
        r = load_config(&c);
        if (r != 0) {
                log_event_prio(LOG_ERR, EVENT_ERROR, ((const LogField[]) { { "CONFIG", config_path() } }),
                               "Invalid configuration in %s, refusing to start", config_path());
                return r;
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        const ManagerOptions opts = { .state_dir = state_dir(), .control_path = control_path(),
                                      .dmi_dir = env_or("TRAINSUPD_DMI_DIR", DEFAULT_DMI_DIR),
                                      .dry_run = arg_dry_run };
        r = manager_new(&m, TAKE_PTR(c), &opts);
        if (r < 0) {
                log_error_errno(r, "Cannot set up the daemon: %m");
                return EX_SOFTWARE;
        }
        r = manager_start(m);
        if (r < 0)
                return r == -EADDRINUSE ? EX_UNAVAILABLE : EX_OSERR;
        r = manager_run(m);
        return r < 0 ? EX_SOFTWARE : EX_OK;
}

static int call_daemon_timeout(const char *method, const cJSON *params, usec_t timeout, cJSON **ret) {
        _cleanup_free_ char *error = NULL, *message = NULL;
        int r;

        r = control_call(control_path(), method, params, timeout, ret, &error, &message);
        if (r == -EREMOTEIO) {
                fprintf(stderr, "trainsupd: %s\n", message ?: error);
                return streq(error, CONTROL_ERROR_PERMISSION_DENIED) ? EX_NOPERM : EX_UNAVAILABLE;
        }
        if (r == -ENOENT || r == -ECONNREFUSED) {
                fprintf(stderr, "trainsupd is not running (nothing answers on %s)\n", control_path());
                return EX_UNAVAILABLE;
        }
        if (r == -EACCES) {
                fprintf(stderr, "trainsupd: permission denied on %s (root or group trainsupd only)\n",
                        control_path());
                return EX_NOPERM;
        }
        if (r < 0) {
                fprintf(stderr, "trainsupd: talking to the daemon on %s failed: %s\n", control_path(), strerror(-r));
                return EX_UNAVAILABLE;
        }
        return 0;
}

static int call_daemon(const char *method, const cJSON *params, cJSON **ret) {
        return call_daemon_timeout(method, params, CONTROL_TIMEOUT_USEC, ret);
}

/* The answer to a checkpoint that was waited for: each task's newest committed snapshot. */
static void print_checkpoint_reply(const cJSON *reply) {
        const cJSON *snaps = cJSON_GetObjectItemCaseSensitive(reply, "snapshots"), *s;

        cJSON_ArrayForEach(s, snaps)
                printf("%s %s\n", s->string, cJSON_IsString(s) ? s->valuestring : "(none)");
}

static int verb_status(void) {
        _cleanup_(cJSON_Deletep) cJSON *s = NULL;
        _cleanup_free_ char *out = NULL;
        int r;

        r = call_daemon(CONTROL_METHOD_STATUS, NULL, &s);
        if (r != 0)
                return r;
        if (!arg_json)
                return status_format_human(s, stdout) < 0 ? EX_SOFTWARE : EX_OK;
        out = cJSON_Print(s);
        if (!out)
                return EX_SOFTWARE;
        printf("%s\n", out);
        return EX_OK;
}

static int verb_checkpoint(void) {
        _cleanup_(cJSON_Deletep) cJSON *p = cJSON_CreateObject(), *reply = NULL;
        int r;

        if (!p || (arg_task && !cJSON_AddStringToObject(p, "task", arg_task)) ||
            !cJSON_AddBoolToObject(p, "wait", arg_wait))
                return EX_SOFTWARE;
        r = call_daemon_timeout(CONTROL_METHOD_CHECKPOINT, p, arg_wait ? CONTROL_WAIT_TIMEOUT_USEC : CONTROL_TIMEOUT_USEC,
                                &reply);
        if (r == 0 && arg_wait)
                print_checkpoint_reply(reply);
        return r;
}

static int verb_stop(void) {
        _cleanup_(cJSON_Deletep) cJSON *p = cJSON_CreateObject(), *reply = NULL;

        int r;

        if (!p || !cJSON_AddBoolToObject(p, "checkpoint", arg_checkpoint))
                return EX_SOFTWARE;
        r = call_daemon_timeout(CONTROL_METHOD_STOP, p, arg_checkpoint ? CONTROL_WAIT_TIMEOUT_USEC : CONTROL_TIMEOUT_USEC,
                                &reply);
        if (r == 0 && arg_checkpoint)
                print_checkpoint_reply(reply);
        return r;
}

/* ---- one-shot storage commands: the snapshot engine on a loop of their own */

typedef struct OneShot {
        Config *config;
        const TaskConfig *task;
        sd_event *event;
        CurlGlue *glue;
        Worker *worker;
        Store *store;
        bool done;
        int error;
        char *message;
        SnapshotSummary info;
} OneShot;

static void oneshot_done(OneShot *o) {
        store_free(o->store);
        worker_free(o->worker);
        curl_glue_free(o->glue);
        sd_event_unref(o->event);
        config_free(o->config);
        free(o->message);
        snapshot_summary_done(&o->info);
        curl_global_cleanup();
}

/* Config, task, loop, worker, store. Returns 0 or an exit code. */
static int oneshot_setup(OneShot *o) {
        int r;

        r = load_config(&o->config);
        if (r != 0)
                return r;
        if (arg_task) {
                o->task = config_find_task(o->config, arg_task);
                if (!o->task) {
                        fprintf(stderr, "trainsupd: no task \"%s\" in %s\n", arg_task, config_path());
                        return EX_USAGE;
                }
        } else if (o->config->n_tasks == 1)
                o->task = &o->config->tasks[0];
        else {
                fprintf(stderr, "trainsupd: the job has %zu tasks, name one with --task\n", o->config->n_tasks);
                return EX_USAGE;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return EX_SOFTWARE;
        r = sd_event_new(&o->event);
        if (r >= 0)
                r = curl_glue_new(&o->glue, o->event, http_on_curl_finished);
        if (r >= 0)
                r = worker_new(&o->worker, o->event, 4);
        if (r < 0) {
                fprintf(stderr, "trainsupd: cannot set up: %s\n", strerror(-r));
                return EX_SOFTWARE;
        }
        r = store_new(&o->store, &(StoreParams) { .event = o->event, .glue = o->glue, .worker = o->worker,
                                                  .config = o->config });
        if (r < 0) {
                if (r == -EPROTONOSUPPORT)
                        fprintf(stderr, "trainsupd: %s: unsupported store (file://, s3://, gs:// and az:// are)\n",
                                o->config->storage_url);
                else
                        fprintf(stderr, "trainsupd: cannot open the store %s: %s\n", o->config->storage_url,
                                strerror(-r));
                return EX_UNAVAILABLE;
        }
        return 0;
}

static int oneshot_run(OneShot *o) {
        while (!o->done) {
                int r = sd_event_run(o->event, UINT64_MAX);

                if (r < 0) {
                        fprintf(stderr, "trainsupd: event loop failed: %s\n", strerror(-r));
                        return EX_SOFTWARE;
                }
        }
        return 0;
}

/* After an operation reported its end, work it started may still be in flight (the other
 * downloads of a restore that failed on one file): let it finish before the store goes away. */
static void oneshot_drain(OneShot *o, bool (*busy)(const void *), const void *op) {
        usec_t until = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;

        while (busy(op) && now_usec(CLOCK_MONOTONIC) < until)
                if (sd_event_run(o->event, 100 * USEC_PER_MSEC) < 0)
                        break;
}

static bool create_busy(const void *p) {
        return snapshot_create_busy(p);
}

static bool restore_busy(const void *p) {
        return snapshot_restore_busy(p);
}

static void oneshot_finish(OneShot *o, int error, const SnapshotSummary *info, const char *message) {
        o->done = true;
        o->error = error;
        o->message = message ? strdup(message) : NULL;
        if (info) {
                memcpy(o->info.id, info->id, SNAPSHOT_ID_MAX);
                o->info.seq = info->seq;
                o->info.bytes = info->bytes;
                o->info.files = info->files;
        }
}

static void on_snapshot_created(SnapshotCreate *c, int error, const SnapshotSummary *info, const char *message,
                                void *userdata) {
        oneshot_finish(userdata, error, info, message);
}

/* Test hook (environment, never needed in production): TRAINSUPD_TEST_RETENTION_GRACE_S=N runs
 * the retention after `snapshot` with a grace period of N seconds (1 ≤ N ≤ 1 year) instead of
 * SNAPSHOT_RETENTION_GRACE_USEC, so that tests see old unreferenced objects and incomplete
 * uploads collected. 0: the default. */
static usec_t test_retention_grace(void) {
        const char *e = getenv("TRAINSUPD_TEST_RETENTION_GRACE_S");
        unsigned long v;
        char *end;

        if (isempty(e))
                return 0;
        errno = 0;
        v = strtoul(e, &end, 10);
        if (errno != 0 || *end || e[0] < '0' || e[0] > '9' || v == 0 || v > 366UL * 24 * 3600) {
                fprintf(stderr, "trainsupd: ignoring TRAINSUPD_TEST_RETENTION_GRACE_S=%s: not 1..31622400\n", e);
                return 0;
        }
        return (usec_t) v * USEC_PER_SEC;
}

static int verb_snapshot(void) {
        _cleanup_(oneshot_done) OneShot o = {};
        _cleanup_(snapshot_create_freep) SnapshotCreate *c = NULL;
        _cleanup_(writer_id_done) WriterId who = {};
        int r;

        r = oneshot_setup(&o);
        if (r != 0)
                return r;
        if (writer_id_read(env_or("TRAINSUPD_DMI_DIR", DEFAULT_DMI_DIR), &who) < 0)
                return EX_SOFTWARE;
        r = snapshot_create_start(&(SnapshotCreateParams) { .store = o.store, .worker = o.worker, .config = o.config,
                                                            .task = o.task, .instance_id = who.instance_id,
                                                            .boot_id = who.boot_id, .hostname = who.hostname,
                                                            .state_dir = state_dir(),
                                                            .retention_grace = test_retention_grace(),
                                                            .done = on_snapshot_created, .userdata = &o },
                                  &c);
        if (r < 0) {
                fprintf(stderr, "trainsupd: cannot start the snapshot: %s\n", strerror(-r));
                return EX_SOFTWARE;
        }
        r = oneshot_run(&o);
        oneshot_drain(&o, create_busy, c);
        if (r != 0)
                return r;
        if (o.error < 0) {
                fprintf(stderr, "trainsupd: snapshot failed: %s\n", o.message ?: strerror(-o.error));
                return o.error == -EBUSY || o.error == -ENOENT || o.error == -ENOMEM ? EX_SOFTWARE : EX_UNAVAILABLE;
        }
        printf("%s\n", o.info.id);
        return EX_OK;
}

typedef struct ListResult {
        OneShot *o;
        cJSON *json;
        int exit;
} ListResult;

static cJSON *snapshot_summary_to_json(const SnapshotSummary *i, const char *task) {
        _cleanup_(cJSON_Deletep) cJSON *j = cJSON_CreateObject();
        cJSON *w;
        char when[RFC3339_MAX];

        if (!j || !cJSON_AddStringToObject(j, "id", i->id) || !cJSON_AddNumberToObject(j, "seq", (double) i->seq) ||
            !cJSON_AddStringToObject(j, "task", task) ||
            !cJSON_AddStringToObject(j, "committed_at", format_rfc3339(when, i->committed_at)) ||
            !cJSON_AddNumberToObject(j, "bytes", (double) i->bytes) ||
            !cJSON_AddNumberToObject(j, "files", (double) i->files) || !(w = cJSON_AddObjectToObject(j, "writer")) ||
            !cJSON_AddStringToObject(w, "instance_id", i->instance_id) ||
            !cJSON_AddStringToObject(w, "boot_id", i->boot_id) || !cJSON_AddStringToObject(w, "hostname", i->hostname))
                return NULL;
        return TAKE_PTR(j);
}

static int print_snapshots(const SnapshotSummary *infos, size_t n, const char *task) {
        _cleanup_(cJSON_Deletep) cJSON *a = NULL;
        _cleanup_free_ char *out = NULL;
        char when[RFC3339_MAX];

        if (!arg_json) {
                for (size_t i = 0; i < n; i++)
                        printf("%s  seq=%" PRIu64 "  %s  %" PRIu64 " bytes  %" PRIu64 " files  %s\n", infos[i].id,
                               infos[i].seq, format_rfc3339(when, infos[i].committed_at), infos[i].bytes,
                               infos[i].files, infos[i].hostname);
                return EX_OK;
        }
        a = cJSON_CreateArray();
        for (size_t i = 0; a && i < n; i++) {
                cJSON *j = snapshot_summary_to_json(&infos[i], task);

                if (!j || !cJSON_AddItemToArray(a, j)) {
                        cJSON_Delete(j);
                        return EX_SOFTWARE;
                }
        }
        out = a ? cJSON_Print(a) : NULL;
        if (!out)
                return EX_SOFTWARE;
        printf("%s\n", out);
        return EX_OK;
}

static void on_snapshots_listed(SnapshotList *l, int error, const SnapshotSummary *infos, size_t n,
                                char * const *warnings, void *userdata) {
        ListResult *res = userdata;

        STRV_FOREACH(w, warnings)
                fprintf(stderr, "trainsupd: %s\n", *w);
        if (error < 0) {
                fprintf(stderr, "trainsupd: cannot list the snapshots in %s: %s\n", res->o->config->storage_url,
                        strerror(-error));
                res->exit = EX_UNAVAILABLE;
        } else
                res->exit = print_snapshots(infos, n, res->o->task->name);
        res->o->done = true;
}

static int verb_snapshots(void) {
        _cleanup_(oneshot_done) OneShot o = {};
        _cleanup_(snapshot_list_freep) SnapshotList *l = NULL;
        ListResult res = { .o = &o };
        int r;

        r = oneshot_setup(&o);
        if (r != 0)
                return r;
        r = snapshot_list_start(o.store, o.config->job_id, o.task->name, on_snapshots_listed, &res, &l);
        if (r < 0) {
                fprintf(stderr, "trainsupd: cannot list the snapshots: %s\n", strerror(-r));
                return EX_SOFTWARE;
        }
        r = oneshot_run(&o);
        return r != 0 ? r : res.exit;
}

static void on_restored(SnapshotRestore *rs, int error, const SnapshotSummary *info, const char *message,
                        void *userdata) {
        oneshot_finish(userdata, error, info, message);
}

/* A non-empty --to without --force is a usage error, found before anything else. */
static bool dest_is_nonempty(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d;
        struct dirent *de;
        bool nonempty = false;

        if (fd < 0)
                return errno != ENOENT;
        d = fdopendir(TAKE_FD(fd));
        if (!d)
                return true;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        nonempty = true;
                        break;
                }
        closedir(d);
        return nonempty;
}

static int verb_restore(void) {
        _cleanup_(oneshot_done) OneShot o = {};
        _cleanup_(snapshot_restore_freep) SnapshotRestore *rs = NULL;
        int r;

        if (!arg_to) {
                fprintf(stderr, "trainsupd restore: --to DIR is required\n");
                return EX_USAGE;
        }
        if (arg_snapshot && !snapshot_id_is_valid(arg_snapshot)) {
                fprintf(stderr, "trainsupd restore: \"%s\" is not a snapshot id\n", arg_snapshot);
                return EX_USAGE;
        }
        if (!arg_force && dest_is_nonempty(arg_to)) {
                fprintf(stderr, "trainsupd restore: %s is not an empty directory (use --force to move its content aside)\n",
                        arg_to);
                return EX_USAGE;
        }
        r = oneshot_setup(&o);
        if (r != 0)
                return r;
        r = snapshot_restore_start(&(SnapshotRestoreParams) { .store = o.store, .worker = o.worker,
                                                              .job = o.config->job_id, .task = o.task->name,
                                                              .id = arg_snapshot, .dest = arg_to, .force = arg_force,
                                                              .done = on_restored, .userdata = &o },
                                   &rs);
        if (r < 0) {
                fprintf(stderr, "trainsupd: cannot start the restore: %s\n", strerror(-r));
                return EX_SOFTWARE;
        }
        r = oneshot_run(&o);
        oneshot_drain(&o, restore_busy, rs);
        if (r != 0)
                return r;
        if (o.error < 0) {
                fprintf(stderr, "trainsupd: restore failed: %s\n", o.message ?: strerror(-o.error));
                return o.error == -EBADMSG                               ? EX_DATAERR
                       : o.error == -ENOTEMPTY || o.error == -ENOTDIR ? EX_USAGE
                                                                        : EX_UNAVAILABLE;
        }
        fprintf(stderr, "trainsupd: restored snapshot %s (%" PRIu64 " files, %" PRIu64 " bytes) into %s\n",
                o.info.id, o.info.files, o.info.bytes, arg_to);
        return EX_OK;
}

static const Verb verbs[] = {
        { "run", "config log-target dry-run", verb_run },
        { "status", "json", verb_status },
        { "checkpoint", "task wait", verb_checkpoint },
        { "stop", "checkpoint", verb_stop },
        { "validate", "config show", verb_validate },
        { "snapshot", "config task", verb_snapshot },
        { "snapshots", "config task json", verb_snapshots },
        { "restore", "config task snapshot to force", verb_restore },
};

static void setup_log_level(void) {
        static const char *const levels[] = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" };
        const char *v = getenv("TRAINSUPD_LOG_LEVEL");

        for (size_t i = 0; v && i < ELEMENTSOF(levels); i++)
                if (streq(v, levels[i]))
                        log_set_max_level((int) i);
}

int main(int argc, char **argv) {
        setup_log_level();
        if (argc < 2) {
                help(stderr);
                return EX_USAGE;
        }
        if (streq(argv[1], "--help") || streq(argv[1], "-h")) {
                help(stdout);
                return EX_OK;
        }
        if (streq(argv[1], "--version")) {
                printf("trainsupd %s\n", PACKAGE_VERSION);
                return EX_OK;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                if (!streq(argv[1], verbs[i].name))
                        continue;
                if (parse_verb_options(&verbs[i], argc, argv) < 0)
                        return EX_USAGE;
                return verbs[i].run();
        }
        fprintf(stderr, "trainsupd: unknown command \"%s\"; see trainsupd --help\n", argv[1]);
        return EX_USAGE;
}
