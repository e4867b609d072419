/* SPDX-License-Identifier: MIT */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sysexits.h>

#include "config.h"
#include "control-client.h"
#include "log.h"
#include "manager.h"
#include "strv.h"

#define DEFAULT_CONFIG "/etc/trainsupd/trainsupd.json"
#define DEFAULT_CONTROL "/run/trainsupd/control"
#define DEFAULT_STATE_DIR "/var/lib/trainsupd"
#define DEFAULT_DMI_DIR "/sys/class/dmi/id"
#define CONTROL_TIMEOUT_USEC (10 * USEC_PER_SEC)

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

static int call_daemon(const char *method, const cJSON *params, cJSON **ret) {
        _cleanup_free_ char *error = NULL, *message = NULL;
        int r;

        r = control_call(control_path(), method, params, CONTROL_TIMEOUT_USEC, ret, &error, &message);
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

        if (!p || (arg_task && !cJSON_AddStringToObject(p, "task", arg_task)) ||
            !cJSON_AddBoolToObject(p, "wait", arg_wait))
                return EX_SOFTWARE;
        return call_daemon(CONTROL_METHOD_CHECKPOINT, p, &reply);
}

static int verb_stop(void) {
        _cleanup_(cJSON_Deletep) cJSON *p = cJSON_CreateObject(), *reply = NULL;

        if (!p || !cJSON_AddBoolToObject(p, "checkpoint", arg_checkpoint))
                return EX_SOFTWARE;
        return call_daemon(CONTROL_METHOD_STOP, p, &reply);
}

static int verb_storage(void) {
        _cleanup_(config_freep) Config *c = NULL;
        int r;

        r = load_config(&c);
        if (r != 0)
                return r;
        if (arg_task && !config_find_task(c, arg_task)) {
                fprintf(stderr, "trainsupd: no task \"%s\" in %s\n", arg_task, config_path());
                return EX_USAGE;
        }
        fprintf(stderr, "trainsupd: snapshots are not supported by this version yet (storage %s)\n",
                c->storage_url);
        return EX_UNAVAILABLE;
}

static int verb_restore(void) {
        if (!arg_to) {
                fprintf(stderr, "trainsupd restore: --to DIR is required\n");
                return EX_USAGE;
        }
        return verb_storage();
}

static const Verb verbs[] = {
        { "run", "config log-target dry-run", verb_run },
        { "status", "json", verb_status },
        { "checkpoint", "task wait", verb_checkpoint },
        { "stop", "checkpoint", verb_stop },
        { "validate", "config show", verb_validate },
        { "snapshot", "config task", verb_storage },
        { "snapshots", "config task json", verb_storage },
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
