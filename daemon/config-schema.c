/* SPDX-License-Identifier: MIT */
/* The config schema (INTERFACE.md "Config file"): the names of values, the defaults, and the walk that builds a Config from a parsed document while recording every problem
 * in document order. Table-driven: each object's keys are a KeyDef table naming the dispatcher and
 * the field it fills. Nothing here logs. */

#include <assert.h>
#include <limits.h>
#include <math.h> /* isfinite(), a macro: no libm */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "strv.h"

#define FIELD_PATH_MAX 512 /* a problem's field path; longer ones are cut */
#define STATE_DIR_DEFAULT "/var/lib/trainsupd"
#define DOCKER_SOCKET_DEFAULT "/var/run/docker.sock"
#define MOUNT_AT_DEFAULT "/checkpoints"

/* ---- enums */

static const char * const task_runtime_table[_TASK_RUNTIME_MAX] = {
        [TASK_RUNTIME_DOCKER] = "docker",
        [TASK_RUNTIME_EXEC] = "exec",
};

static const char * const network_mode_table[_NETWORK_MODE_MAX] = {
        [NETWORK_MODE_BRIDGE] = "bridge",
        [NETWORK_MODE_HOST] = "host",
        [NETWORK_MODE_NONE] = "none",
};

static const char * const pull_policy_table[_PULL_POLICY_MAX] = {
        [PULL_POLICY_MISSING] = "missing",
        [PULL_POLICY_ALWAYS] = "always",
        [PULL_POLICY_NEVER] = "never",
};

static const char * const cloud_provider_table[_CLOUD_PROVIDER_MAX] = {
        [CLOUD_PROVIDER_AUTO] = "auto",
        [CLOUD_PROVIDER_AWS] = "aws",
        [CLOUD_PROVIDER_GCE] = "gce",
        [CLOUD_PROVIDER_AZURE] = "azure",
        [CLOUD_PROVIDER_ALIBABA] = "alibaba",
        [CLOUD_PROVIDER_NONE] = "none",
};

static const char * const on_complete_table[_ON_COMPLETE_MAX] = {
        [ON_COMPLETE_POWEROFF] = "poweroff",
        [ON_COMPLETE_NONE] = "none",
};

static const char * const on_failure_table[_ON_FAILURE_MAX] = {
        [ON_FAILURE_NONE] = "none",
        [ON_FAILURE_POWEROFF] = "poweroff",
};

static int table_lookup(const char * const *table, size_t n, const char *s) {
        for (size_t i = 0; s && i < n; i++)
                if (table[i] && streq(table[i], s))
                        return (int) i;
        return -EINVAL;
}

#define DEFINE_STRING_TABLE(name, type)                                                  \
        const char *name##_to_string(type v) {                                           \
                return v >= 0 && (size_t) v < ELEMENTSOF(name##_table) ? name##_table[v] : NULL; \
        }                                                                                \
        type name##_from_string(const char *s) {                                         \
                return (type) table_lookup(name##_table, ELEMENTSOF(name##_table), s);   \
        }

DEFINE_STRING_TABLE(task_runtime, TaskRuntime)
DEFINE_STRING_TABLE(network_mode, NetworkMode)
DEFINE_STRING_TABLE(pull_policy, PullPolicy)
DEFINE_STRING_TABLE(cloud_provider, CloudProvider)
DEFINE_STRING_TABLE(on_complete, OnComplete)
DEFINE_STRING_TABLE(on_failure, OnFailure)

static const struct {
        const char *name;
        int sig;
} signal_table[] = {
        { "SIGHUP", SIGHUP }, { "SIGINT", SIGINT }, { "SIGQUIT", SIGQUIT }, { "SIGILL", SIGILL },
        { "SIGTRAP", SIGTRAP }, { "SIGABRT", SIGABRT }, { "SIGBUS", SIGBUS }, { "SIGFPE", SIGFPE },
        { "SIGKILL", SIGKILL }, { "SIGUSR1", SIGUSR1 }, { "SIGSEGV", SIGSEGV }, { "SIGUSR2", SIGUSR2 },
        { "SIGPIPE", SIGPIPE }, { "SIGALRM", SIGALRM }, { "SIGTERM", SIGTERM }, { "SIGSTKFLT", SIGSTKFLT },
        { "SIGCHLD", SIGCHLD }, { "SIGCONT", SIGCONT }, { "SIGSTOP", SIGSTOP }, { "SIGTSTP", SIGTSTP },
        { "SIGTTIN", SIGTTIN }, { "SIGTTOU", SIGTTOU }, { "SIGURG", SIGURG }, { "SIGXCPU", SIGXCPU },
        { "SIGXFSZ", SIGXFSZ }, { "SIGVTALRM", SIGVTALRM }, { "SIGPROF", SIGPROF }, { "SIGWINCH", SIGWINCH },
        { "SIGIO", SIGIO }, { "SIGPWR", SIGPWR }, { "SIGSYS", SIGSYS },
};

int signal_from_config_string(const char *s) {
        if (!s)
                return -EINVAL;
        if (streq(s, "none"))
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(signal_table); i++)
                if (streq(s, signal_table[i].name) || streq(s, signal_table[i].name + 3))
                        return signal_table[i].sig;
        return -EINVAL;
}

const char *signal_to_config_string(int sig) {
        if (sig == 0)
                return "none";
        for (size_t i = 0; i < ELEMENTSOF(signal_table); i++)
                if (signal_table[i].sig == sig)
                        return signal_table[i].name;
        return NULL;
}

/* ---- defaults */

/* state_dir is normalized; "/" is passed as "", so that "<state_dir>/store" never starts with "//". */
static int config_new(const char *filename, const char *state_dir, Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;

        c = calloc(1, sizeof(Config));
        if (!c)
                return -ENOMEM;
        *c = (Config) {
                .checkpoint_signal = SIGUSR1,
                .settle_ms = 2000,
                .checkpoint_timeout_s = 60,
                .storage_keep = 3,
                .storage_concurrency = 8,
                .cloud_provider = CLOUD_PROVIDER_AUTO,
                .cloud_poll_ms = 1000,
                .cloud_acknowledge = true,
                .on_complete = ON_COMPLETE_POWEROFF,
                .on_failure = ON_FAILURE_NONE,
        };
        if (filename && !(c->path = strdup(filename)))
                return -ENOMEM;
        if (asprintf(&c->storage_url, "file://%s/store", state_dir) < 0) {
                c->storage_url = NULL;
                return -ENOMEM;
        }
        c->docker_socket = strdup(DOCKER_SOCKET_DEFAULT);
        if (!c->docker_socket)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

static int task_config_init(TaskConfig *t) {
        *t = (TaskConfig) {
                .runtime = TASK_RUNTIME_DOCKER,
                .gpus = GPU_MODE_NONE,
                .network = NETWORK_MODE_BRIDGE,
                .pull = PULL_POLICY_MISSING,
                .stop_grace_s = 30,
                .restart_max = 3,
                .restart_backoff_s = 10,
                .restart_backoff_max_s = 300,
        };
        t->mount_at = strdup(MOUNT_AT_DEFAULT);
        t->success_exit_codes = calloc(1, sizeof(int));
        if (!t->mount_at || !t->success_exit_codes)
                return -ENOMEM;
        t->n_success_exit_codes = 1;
        return 0;
}

/* ---- problems and field paths */

typedef struct ParseContext {
        Config *config;
        const char *state_dir;  /* normalized, "" for "/" */
        char ***problems;
        TaskConfig *task;       /* the task being parsed */
        bool runtime_known;     /* task->runtime is what the task says (absent or valid) */
} ParseContext;

static int problem(ParseContext *ctx, const char *path, const char *fmt, ...) _printf_(3, 4);
static int problem(ParseContext *ctx, const char *path, const char *fmt, ...) {
        _cleanup_free_ char *m = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return strv_extendf(ctx->problems, "%s: %s", path, m);
}

static size_t n_problems(const ParseContext *ctx) {
        return strv_length(*ctx->problems);
}

/* parent.key, or parent["key"] when the key is not a plain word; key alone at the top. */
static const char *path_key(char buf[static FIELD_PATH_MAX], const char *parent, const char *key) {
        char q[CONFIG_QUOTE_MAX];
        size_t n = strlen(key);

        if (n > 0 && n <= 64 &&
            strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n)
                (void) snprintf(buf, FIELD_PATH_MAX, "%s%s%s", parent ?: "", parent ? "." : "", key);
        else
                (void) snprintf(buf, FIELD_PATH_MAX, "%s[%s]", parent ?: "", config_quote(key, q));
        return buf;
}

static const char *path_index(char buf[static FIELD_PATH_MAX], const char *parent, size_t i) {
        (void) snprintf(buf, FIELD_PATH_MAX, "%s[%zu]", parent, i);
        return buf;
}

/* ---- typed getters: 1 with the value, 0 after recording a problem, or negative errno */

static int get_string(ParseContext *ctx, const char *path, const cJSON *v, const char **ret) {
        if (!cJSON_IsString(v))
                return problem(ctx, path, "must be a string");
        if (isempty(v->valuestring))
                return problem(ctx, path, "must not be empty");
        *ret = v->valuestring;
        return 1;
}

static int range_problem(ParseContext *ctx, const char *path, double d, int min, int max) {
        if (max == INT_MAX)
                return d < min ? problem(ctx, path, "must be >= %d", min) :
                                 problem(ctx, path, "must be <= %d", max);
        return problem(ctx, path, "must be between %d and %d", min, max);
}

/* Without libm: every double of magnitude 2^53 or more is integral. */
static bool double_is_integral(double d) {
        return isfinite(d) && (d >= 0x1p53 || d <= -0x1p53 || d == (double) (int64_t) d);
}

static int get_uint(ParseContext *ctx, const char *path, const cJSON *v, int min, int max, unsigned *ret) {
        double d;

        if (!cJSON_IsNumber(v) || !double_is_integral(v->valuedouble))
                return problem(ctx, path, "must be an integer");
        d = v->valuedouble;
        if (d < min || d > max)
                return range_problem(ctx, path, d, min, max);
        *ret = (unsigned) d;
        return 1;
}

/* *ret is NULL for an empty array. */
static int get_strv(ParseContext *ctx, const char *path, const cJSON *v, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        const cJSON *e;

        if (!cJSON_IsArray(v))
                return problem(ctx, path, "must be an array of strings");
        cJSON_ArrayForEach(e, v) {
                if (!cJSON_IsString(e))
                        return problem(ctx, path, "must be an array of strings");
                if (strv_extend(&l, e->valuestring) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 1;
}

static int replace_string(char **field, const char *s) {
        char *copy = strdup(s);

        if (!copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

/* ---- key tables and the object walk */

/* dispatch_checked_string: a string that must pass is_valid. */
typedef struct StringCheck {
        bool (*is_valid)(const char *s);
        const char *problem;
        bool show_value;        /* append the quoted value to the problem */
} StringCheck;

typedef struct KeyDef KeyDef;
typedef int (*KeyDispatch)(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                           void *field);

enum {
        KEY_NULLABLE = 1 << 0,    /* null is the same as leaving the key out */
        KEY_DOCKER_ONLY = 1 << 1, /* a problem when the task's runtime is "exec" */
        KEY_NOT_ROOT = 1 << 2,    /* dispatch_path: "/" is refused */
};

struct KeyDef {
        const char *key;
        KeyDispatch dispatch;
        size_t offset;                  /* of the field in the object dispatched into */
        unsigned flags;
        int min, max;                   /* dispatch_uint */
        const char * const *table;      /* dispatch_enum: names, indexed by value */
        size_t n_table;
        const KeyDef *keys;             /* dispatch_section: the nested object's keys */
        const StringCheck *check;       /* dispatch_checked_string */
};

static const KeyDef *key_find(const KeyDef *keys, const char *key) {
        for (; keys->key; keys++)
                if (streq(keys->key, key))
                        return keys;
        return NULL;
}

static bool key_seen(const KeyDef *keys, uint64_t seen, const char *key) {
        const KeyDef *d = key_find(keys, key);

        assert(d);
        return seen & (UINT64_C(1) << (d - keys));
}

typedef struct KeyRef {
        const char *key;
        size_t index;
} KeyRef;

static int key_ref_compare(const void *a, const void *b) {
        const KeyRef *x = a, *y = b;
        int r = strcmp(x->key, y->key);

        return r != 0 ? r : x->index < y->index ? -1 : x->index > y->index;
}

/* Marks each member whose key an earlier member of obj already has. O(n log n). */
static int find_duplicate_keys(const cJSON *obj, bool **ret) {
        _cleanup_free_ KeyRef *refs = NULL;
        _cleanup_free_ bool *dup = NULL;
        size_t n = (size_t) cJSON_GetArraySize(obj), i = 0;
        const cJSON *m;

        refs = calloc(n ?: 1, sizeof(KeyRef));
        dup = calloc(n ?: 1, sizeof(bool));
        if (!refs || !dup)
                return -ENOMEM;
        cJSON_ArrayForEach(m, obj) {
                refs[i] = (KeyRef) { .key = m->string ?: "", .index = i };
                i++;
        }
        qsort(refs, n, sizeof(KeyRef), key_ref_compare);
        for (i = 1; i < n; i++)
                if (streq(refs[i].key, refs[i - 1].key))
                        dup[refs[i].index] = true;
        *ret = TAKE_PTR(dup);
        return 0;
}

static int dispatch_member(ParseContext *ctx, const char *path, const cJSON *m, const KeyDef *keys,
                           const KeyDef *d, void *target, uint64_t *seen) {
        if (cJSON_IsNull(m) && (d->flags & KEY_NULLABLE))
                return 0;
        if ((d->flags & KEY_DOCKER_ONLY) && ctx->runtime_known && ctx->task->runtime != TASK_RUNTIME_DOCKER)
                return problem(ctx, path, "only valid when runtime is \"docker\"");
        *seen |= UINT64_C(1) << (d - keys);
        return d->dispatch(ctx, path, m, d, (uint8_t *) target + d->offset);
}

/* Walks obj's members in document order. *ret_seen: the keys given (not null, not duplicates). */
static int dispatch_object(ParseContext *ctx, const char *path, const cJSON *obj, const KeyDef *keys,
                           void *target, uint64_t *ret_seen) {
        _cleanup_free_ bool *dup = NULL;
        uint64_t seen = 0;
        const cJSON *m;
        size_t i = 0;
        int r;

        if (ret_seen)
                *ret_seen = 0;
        if (!cJSON_IsObject(obj))
                return problem(ctx, path ?: "<root>", "must be an object");
        r = find_duplicate_keys(obj, &dup);
        if (r < 0)
                return r;
        cJSON_ArrayForEach(m, obj) {
                char p[FIELD_PATH_MAX];
                const KeyDef *d = key_find(keys, m->string ?: "");

                path_key(p, path, m->string ?: "");
                if (dup[i++])
                        r = problem(ctx, p, "duplicate key");
                else if (!d)
                        r = problem(ctx, p, "unknown key");
                else
                        r = dispatch_member(ctx, p, m, keys, d, target, &seen);
                if (r < 0)
                        return r;
        }
        if (ret_seen)
                *ret_seen = seen;
        return 0;
}

/* ---- generic dispatchers */

static int dispatch_section(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                            void *field) {
        return dispatch_object(ctx, path, v, def->keys, field, NULL);
}

static int dispatch_uint(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                         void *field) {
        return MIN(get_uint(ctx, path, v, def->min, def->max, field), 0);
}

static int dispatch_bool(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                         void *field) {
        if (!cJSON_IsBool(v))
                return problem(ctx, path, "must be a boolean");
        *(bool *) field = cJSON_IsTrue(v);
        return 0;
}

static int dispatch_enum(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                         void *field) {
        char list[256] = "";
        size_t k = 0;
        int i;

        i = cJSON_IsString(v) ? table_lookup(def->table, def->n_table, v->valuestring) : -EINVAL;
        if (i >= 0) {
                *(int *) field = i;
                return 0;
        }
        for (size_t j = 0; j < def->n_table && k < sizeof(list); j++)
                k += (size_t) snprintf(list + k, sizeof(list) - k, "%s\"%s\"",
                                       j == 0 ? "" : def->n_table == 2 ? " or " : ", ", def->table[j]);
        return problem(ctx, path, "must be %s%s", def->n_table == 2 ? "" : "one of ", list);
}

/* An absolute path, stored normalized. */
static int dispatch_path(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                         void *field) {
        const char *s, *bad;
        char *n;
        int r;

        r = get_string(ctx, path, v, &s);
        if (r <= 0)
                return r;
        bad = config_path_check(s, !(def->flags & KEY_NOT_ROOT));
        if (bad)
                return problem(ctx, path, "%s", bad);
        r = config_path_normalize(s, &n);
        if (r < 0)
                return r;
        free(*(char **) field);
        *(char **) field = n;
        return 0;
}

static int dispatch_checked_string(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                                   void *field) {
        const StringCheck *check = def->check;
        char q[CONFIG_QUOTE_MAX];
        const char *s;
        int r;

        r = get_string(ctx, path, v, &s);
        if (r <= 0)
                return r;
        if (!check->is_valid(s))
                return problem(ctx, path, "%s%s%s", check->problem, check->show_value ? " " : "",
                               check->show_value ? config_quote(s, q) : "");
        return replace_string(field, s);
}

static bool http_url_is_valid(const char *s) {
        return config_http_url_is_valid(s, false);
}

static bool metadata_url_is_valid(const char *s) {
        return config_http_url_is_valid(s, true);
}

static const StringCheck check_image = { config_image_is_valid, "invalid image reference", true };
static const StringCheck check_user = { config_user_is_valid, "must be a user name or \"uid[:gid]\"" };
static const StringCheck check_region = { config_region_is_valid, "invalid region name", true };
static const StringCheck check_endpoint = { http_url_is_valid, "must be an http:// or https:// URL" };
static const StringCheck check_metadata_url = {
        metadata_url_is_valid, "must be http://host[:port] or https://host[:port]"
};

static int dispatch_job_id(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                           void *field) {
        const char *s;
        int r;

        r = get_string(ctx, path, v, &s);
        if (r <= 0)
                return r;
        if (streq(s, ".") || streq(s, ".."))
                return problem(ctx, path, "must not be \".\" or \"..\"");
        if (!config_job_id_is_valid(s))
                return problem(ctx, path, "must match [A-Za-z0-9._-]{1,63}");
        return replace_string(field, s);
}

/* ---- task keys */

static int dispatch_task_name(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                              void *field) {
        char q[CONFIG_QUOTE_MAX];
        const char *s;
        int r;

        r = get_string(ctx, path, v, &s);
        if (r <= 0)
                return r;
        if (!config_task_name_is_valid(s))
                return problem(ctx, path, "must match [a-z0-9-]{1,32}");
        for (TaskConfig *t = ctx->config->tasks; t < ctx->task; t++)
                if (t->name && streq(t->name, s))
                        return problem(ctx, path, "%s is already used by tasks[%zu]", config_quote(s, q),
                                       (size_t) (t - ctx->config->tasks));
        return replace_string(field, s);
}

static int dispatch_command(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                            void *field) {
        char p[FIELD_PATH_MAX];
        char **l = NULL;
        int r;

        r = get_strv(ctx, path, v, &l);
        if (r <= 0)
                return r;
        if (!l)
                return problem(ctx, path, "must not be empty");
        if (isempty(l[0])) {
                strv_free(l);
                return problem(ctx, path_index(p, path, 0), "must not be empty");
        }
        strv_free(*(char ***) field);
        *(char ***) field = l;
        return 0;
}

static int dispatch_env(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                        void *field) {
        _cleanup_free_ bool *dup = NULL;
        const cJSON *m;
        size_t i = 0;
        int r;

        if (!cJSON_IsObject(v))
                return problem(ctx, path, "must be an object");
        r = find_duplicate_keys(v, &dup);
        if (r < 0)
                return r;
        cJSON_ArrayForEach(m, v) {
                char p[FIELD_PATH_MAX];

                path_key(p, path, m->string ?: "");
                if (dup[i++])
                        r = problem(ctx, p, "duplicate key");
                else if (!config_env_name_is_valid(m->string))
                        r = problem(ctx, p, "invalid variable name");
                else if (!cJSON_IsString(m))
                        r = problem(ctx, p, "must be a string");
                else
                        r = strv_extendf(field, "%s=%s", m->string, m->valuestring);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int gpu_id_parse(ParseContext *ctx, const char *path, const cJSON *e, char ***ids) {
        char q[CONFIG_QUOTE_MAX];
        unsigned u;
        int r;

        if (cJSON_IsNumber(e)) {
                r = get_uint(ctx, path, e, 0, INT_MAX, &u);
                return r <= 0 ? r : strv_extendf(ids, "%u", u);
        }
        if (!cJSON_IsString(e))
                return problem(ctx, path, "must be a string or an integer");
        if (!config_gpu_device_id_is_valid(e->valuestring))
                return problem(ctx, path, "invalid device id %s", config_quote(e->valuestring, q));
        return strv_extend(ids, e->valuestring);
}

/* field: the TaskConfig (offset 0), as this sets gpus, gpu_count and gpu_ids. */
static int dispatch_gpus(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                         void *field) {
        _cleanup_strv_free_ char **ids = NULL;
        TaskConfig *t = field;
        size_t before = n_problems(ctx), i = 0;
        const cJSON *e;
        int r;

        if (cJSON_IsString(v) && streq(v->valuestring, "all")) {
                t->gpus = GPU_MODE_ALL;
                return 0;
        }
        if (cJSON_IsNumber(v)) {
                r = get_uint(ctx, path, v, 0, INT_MAX, &t->gpu_count);
                if (r > 0)
                        t->gpus = GPU_MODE_COUNT;
                return MIN(r, 0);
        }
        if (!cJSON_IsArray(v))
                return problem(ctx, path, "must be \"all\", an integer or an array of device ids");
        if (cJSON_GetArraySize(v) == 0)
                return problem(ctx, path, "must not be empty");
        cJSON_ArrayForEach(e, v) {
                char p[FIELD_PATH_MAX];

                r = gpu_id_parse(ctx, path_index(p, path, i++), e, &ids);
                if (r < 0)
                        return r;
        }
        if (n_problems(ctx) == before) {
                t->gpus = GPU_MODE_IDS;
                strv_free(t->gpu_ids);
                t->gpu_ids = TAKE_PTR(ids);
        }
        return 0;
}

/* field: the TaskConfig (offset 0). */
static int dispatch_exit_codes(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                               void *field) {
        _cleanup_free_ int *codes = NULL;
        TaskConfig *t = field;
        size_t n, i = 0, before = n_problems(ctx);
        const cJSON *e;
        int r;

        if (!cJSON_IsArray(v))
                return problem(ctx, path, "must be an array of integers");
        n = (size_t) cJSON_GetArraySize(v);
        if (n == 0)
                return problem(ctx, path, "must not be empty");
        codes = calloc(n, sizeof(int));
        if (!codes)
                return -ENOMEM;
        cJSON_ArrayForEach(e, v) {
                char p[FIELD_PATH_MAX];
                unsigned u = 0;

                r = get_uint(ctx, path_index(p, path, i), e, 0, 255, &u);
                if (r < 0)
                        return r;
                codes[i++] = (int) u;
        }
        if (n_problems(ctx) == before) {
                free(t->success_exit_codes);
                t->success_exit_codes = TAKE_PTR(codes);
                t->n_success_exit_codes = n;
        }
        return 0;
}

static const KeyDef restart_keys[] = {
        { "max", dispatch_uint, offsetof(TaskConfig, restart_max), .max = INT_MAX },
        { "backoff_s", dispatch_uint, offsetof(TaskConfig, restart_backoff_s), .max = INT_MAX },
        { "backoff_max_s", dispatch_uint, offsetof(TaskConfig, restart_backoff_max_s), .max = INT_MAX },
        {}
};

/* field: the TaskConfig (offset 0). */
static int dispatch_restart(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                            void *field) {
        char p[FIELD_PATH_MAX];
        TaskConfig *t = field;
        size_t before = n_problems(ctx);
        int r;

        r = dispatch_object(ctx, path, v, restart_keys, t, NULL);
        if (r < 0 || n_problems(ctx) != before)
                return r;
        if (t->restart_backoff_s > t->restart_backoff_max_s)
                return problem(ctx, path_key(p, path, "backoff_s"), "must not exceed backoff_max_s (%u)",
                               t->restart_backoff_max_s);
        return 0;
}

static const KeyDef task_keys[] = {
        { "name", dispatch_task_name, offsetof(TaskConfig, name) },
        { "runtime", dispatch_enum, offsetof(TaskConfig, runtime),
          .table = task_runtime_table, .n_table = ELEMENTSOF(task_runtime_table) },
        { "image", dispatch_checked_string, offsetof(TaskConfig, image), KEY_DOCKER_ONLY,
          .check = &check_image },
        { "command", dispatch_command, offsetof(TaskConfig, command), KEY_NULLABLE },
        { "env", dispatch_env, offsetof(TaskConfig, env) },
        { "workdir", dispatch_path, offsetof(TaskConfig, workdir), KEY_NULLABLE },
        { "user", dispatch_checked_string, offsetof(TaskConfig, user), KEY_NULLABLE,
          .check = &check_user },
        { "gpus", dispatch_gpus, 0, KEY_NULLABLE | KEY_DOCKER_ONLY },
        { "network", dispatch_enum, offsetof(TaskConfig, network), KEY_DOCKER_ONLY,
          .table = network_mode_table, .n_table = ELEMENTSOF(network_mode_table) },
        { "pull", dispatch_enum, offsetof(TaskConfig, pull), KEY_DOCKER_ONLY,
          .table = pull_policy_table, .n_table = ELEMENTSOF(pull_policy_table) },
        { "checkpoint_dir", dispatch_path, offsetof(TaskConfig, checkpoint_dir), KEY_NOT_ROOT },
        { "mount_at", dispatch_path, offsetof(TaskConfig, mount_at), KEY_DOCKER_ONLY | KEY_NOT_ROOT },
        { "stop_grace_s", dispatch_uint, offsetof(TaskConfig, stop_grace_s), .max = INT_MAX },
        { "success_exit_codes", dispatch_exit_codes, 0 },
        { "restart", dispatch_restart, 0 },
        {}
};

/* Required keys and defaults that depend on other keys, once the task's members are walked. */
static int task_finalize(ParseContext *ctx, const char *path, TaskConfig *t, uint64_t seen) {
        char p[FIELD_PATH_MAX];
        int r = 0;

        if (!key_seen(task_keys, seen, "name")) {
                if (ctx->config->n_tasks != 1)
                        r = problem(ctx, path_key(p, path, "name"), "required when there are several tasks");
                else if (!(t->name = strdup("main")))
                        return -ENOMEM;
        }
        if (r >= 0 && ctx->runtime_known && t->runtime == TASK_RUNTIME_DOCKER &&
            !key_seen(task_keys, seen, "image"))
                r = problem(ctx, path_key(p, path, "image"), "required when runtime is \"docker\"");
        if (r >= 0 && ctx->runtime_known && t->runtime == TASK_RUNTIME_EXEC &&
            !key_seen(task_keys, seen, "command"))
                r = problem(ctx, path_key(p, path, "command"), "required when runtime is \"exec\"");
        if (r < 0)
                return r;
        if (!key_seen(task_keys, seen, "checkpoint_dir") && t->name &&
            asprintf(&t->checkpoint_dir, "%s/checkpoints/%s", ctx->state_dir, t->name) < 0) {
                t->checkpoint_dir = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* The runtime decides which keys are allowed, whatever their order: look it up first. */
static bool task_prescan_runtime(const cJSON *v, TaskRuntime *ret) {
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(v, "runtime");
        TaskRuntime r;

        if (!rt)
                return true;
        r = task_runtime_from_string(cJSON_IsString(rt) ? rt->valuestring : NULL);
        if (r < 0)
                return false;
        *ret = r;
        return true;
}

static int parse_task(ParseContext *ctx, const char *path, const cJSON *v, TaskConfig *t) {
        uint64_t seen;
        int r;

        if (!cJSON_IsObject(v))
                return problem(ctx, path, "must be an object");
        ctx->task = t;
        ctx->runtime_known = task_prescan_runtime(v, &t->runtime);
        r = dispatch_object(ctx, path, v, task_keys, t, &seen);
        if (r < 0)
                return r;
        return task_finalize(ctx, path, t, seen);
}

static int check_checkpoint_dir(ParseContext *ctx, size_t i) {
        const TaskConfig *t = &ctx->config->tasks[i];
        const char *sd = *ctx->state_dir ? ctx->state_dir : "/";
        char p[FIELD_PATH_MAX], q[CONFIG_QUOTE_MAX];
        int r = 0;

        (void) snprintf(p, sizeof(p), "tasks[%zu].checkpoint_dir", i);
        if (config_path_is_inside(sd, t->checkpoint_dir))
                r = problem(ctx, p, "contains the state directory %s", config_quote(sd, q));
        for (size_t j = 0; r >= 0 && j < i; j++) {
                const char *o = ctx->config->tasks[j].checkpoint_dir;

                if (!o)
                        continue;
                if (streq(t->checkpoint_dir, o))
                        r = problem(ctx, p, "same as tasks[%zu].checkpoint_dir", j);
                else if (config_path_is_inside(t->checkpoint_dir, o))
                        r = problem(ctx, p, "inside tasks[%zu].checkpoint_dir", j);
                else if (config_path_is_inside(o, t->checkpoint_dir))
                        r = problem(ctx, p, "contains tasks[%zu].checkpoint_dir", j);
        }
        return r;
}

/* field: the Config (offset 0). */
static int dispatch_tasks(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                          void *field) {
        Config *c = field;
        const cJSON *e;
        size_t i = 0;
        int r;

        if (!cJSON_IsArray(v))
                return problem(ctx, path, "must be an array");
        c->n_tasks = (size_t) cJSON_GetArraySize(v);
        if (c->n_tasks == 0)
                return problem(ctx, path, "must contain at least one task");
        if (c->n_tasks > CONFIG_TASKS_MAX) {
                c->n_tasks = 0;
                return problem(ctx, path, "must not contain more than %u tasks", CONFIG_TASKS_MAX);
        }
        c->tasks = calloc(c->n_tasks, sizeof(TaskConfig));
        if (!c->tasks) {
                c->n_tasks = 0;
                return -ENOMEM;
        }
        for (i = 0; i < c->n_tasks; i++) /* all first, so that config_free() always works */
                if (task_config_init(&c->tasks[i]) < 0)
                        return -ENOMEM;
        i = 0;
        cJSON_ArrayForEach(e, v) {
                char p[FIELD_PATH_MAX];

                r = parse_task(ctx, path_index(p, path, i), e, &c->tasks[i]);
                if (r < 0)
                        return r;
                i++;
        }
        for (i = 0; i < c->n_tasks; i++) {
                r = c->tasks[i].checkpoint_dir ? check_checkpoint_dir(ctx, i) : 0;
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- checkpoint, storage, cloud, docker */

static int dispatch_signal(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                           void *field) {
        char q[CONFIG_QUOTE_MAX];
        int sig;

        if (!cJSON_IsString(v))
                return problem(ctx, path, "must be a string");
        sig = signal_from_config_string(v->valuestring);
        if (sig < 0)
                return problem(ctx, path, "unknown signal %s", config_quote(v->valuestring, q));
        if (sig == SIGKILL || sig == SIGSTOP)
                return problem(ctx, path, "%s cannot be caught by the task", signal_to_config_string(sig));
        *(int *) field = sig;
        return 0;
}

static int dispatch_exclude(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                            void *field) {
        char **l = NULL;
        int r;

        r = get_strv(ctx, path, v, &l);
        if (r <= 0)
                return r;
        for (size_t i = 0; l && l[i]; i++)
                if (isempty(l[i])) {
                        char p[FIELD_PATH_MAX];

                        strv_free(l);
                        return problem(ctx, path_index(p, path, i), "must not be empty");
                }
        strv_free(*(char ***) field);
        *(char ***) field = l;
        return 0;
}

static int dispatch_storage_url(ParseContext *ctx, const char *path, const cJSON *v, const KeyDef *def,
                                void *field) {
        _cleanup_free_ char *bad = NULL;
        const char *s;
        int r;

        r = get_string(ctx, path, v, &s);
        if (r <= 0)
                return r;
        r = config_storage_url_check(s, &bad);
        if (r == -EINVAL)
                return problem(ctx, path, "%s", bad);
        if (r < 0)
                return r;
        return replace_string(field, s);
}

static const KeyDef checkpoint_keys[] = {
        { "signal", dispatch_signal, offsetof(Config, checkpoint_signal) },
        { "settle_ms", dispatch_uint, offsetof(Config, settle_ms), .max = INT_MAX },
        { "timeout_s", dispatch_uint, offsetof(Config, checkpoint_timeout_s), .min = 1, .max = INT_MAX },
        { "exclude", dispatch_exclude, offsetof(Config, exclude) },
        {}
};

static const KeyDef storage_keys[] = {
        { "url", dispatch_storage_url, offsetof(Config, storage_url) },
        { "endpoint", dispatch_checked_string, offsetof(Config, storage_endpoint), KEY_NULLABLE,
          .check = &check_endpoint },
        { "region", dispatch_checked_string, offsetof(Config, storage_region), KEY_NULLABLE,
          .check = &check_region },
        { "keep", dispatch_uint, offsetof(Config, storage_keep), .min = 1, .max = INT_MAX },
        { "concurrency", dispatch_uint, offsetof(Config, storage_concurrency), .min = 1, .max = 64 },
        { "part_size_mb", dispatch_uint, offsetof(Config, storage_part_size_mb), KEY_NULLABLE,
          .min = 5, .max = 5120 },
        { "credentials_file", dispatch_path, offsetof(Config, storage_credentials_file), KEY_NULLABLE },
        { "ca_file", dispatch_path, offsetof(Config, storage_ca_file), KEY_NULLABLE },
        {}
};

static const KeyDef cloud_keys[] = {
        { "provider", dispatch_enum, offsetof(Config, cloud_provider),
          .table = cloud_provider_table, .n_table = ELEMENTSOF(cloud_provider_table) },
        { "poll_ms", dispatch_uint, offsetof(Config, cloud_poll_ms), .min = 100, .max = INT_MAX },
        { "metadata_url", dispatch_checked_string, offsetof(Config, cloud_metadata_url), KEY_NULLABLE,
          .check = &check_metadata_url },
        { "acknowledge", dispatch_bool, offsetof(Config, cloud_acknowledge) },
        {}
};

static const KeyDef docker_keys[] = {
        { "socket", dispatch_path, offsetof(Config, docker_socket), KEY_NOT_ROOT },
        {}
};

static const KeyDef top_keys[] = {
        { "job_id", dispatch_job_id, offsetof(Config, job_id) },
        { "tasks", dispatch_tasks, 0 },
        { "checkpoint", dispatch_section, 0, .keys = checkpoint_keys },
        { "storage", dispatch_section, 0, .keys = storage_keys },
        { "cloud", dispatch_section, 0, .keys = cloud_keys },
        { "docker", dispatch_section, 0, .keys = docker_keys },
        { "on_complete", dispatch_enum, offsetof(Config, on_complete),
          .table = on_complete_table, .n_table = ELEMENTSOF(on_complete_table) },
        { "on_failure", dispatch_enum, offsetof(Config, on_failure),
          .table = on_failure_table, .n_table = ELEMENTSOF(on_failure_table) },
        {}
};

/* A file:// store must not overlap a checkpoint directory: snapshots would snapshot themselves. */
static int check_storage_overlap(ParseContext *ctx) {
        _cleanup_free_ char *store = NULL;
        const char *p = config_storage_url_file_path(ctx->config->storage_url);
        int r;

        if (!p || config_path_check(p, false))
                return 0;
        r = config_path_normalize(p, &store);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ctx->config->n_tasks; i++) {
                const char *d = ctx->config->tasks[i].checkpoint_dir;

                if (d && (config_path_is_inside(store, d) || config_path_is_inside(d, store)))
                        return problem(ctx, "storage.url", "overlaps tasks[%zu].checkpoint_dir", i);
        }
        return 0;
}

static int parse_root(ParseContext *ctx, const cJSON *root) {
        uint64_t seen;
        int r;

        r = dispatch_object(ctx, NULL, root, top_keys, ctx->config, &seen);
        if (r < 0 || !cJSON_IsObject(root))
                return r;
        if (!key_seen(top_keys, seen, "job_id")) {
                r = problem(ctx, "job_id", "required");
                if (r < 0)
                        return r;
        }
        if (!key_seen(top_keys, seen, "tasks")) {
                r = problem(ctx, "tasks", "required");
                if (r < 0)
                        return r;
        }
        return check_storage_overlap(ctx);
}

int config_schema_parse(const cJSON *root, const char *filename, const char *state_dir, Config **ret,
                        char ***problems) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *sd = NULL;
        int r;

        assert(root);
        assert(ret);
        assert(problems);
        state_dir = state_dir ?: STATE_DIR_DEFAULT;
        if (config_path_check(state_dir, true) == NULL) {
                r = config_path_normalize(state_dir, &sd);
                if (r < 0)
                        return r;
                state_dir = streq(sd, "/") ? "" : sd;
        }
        r = config_new(filename, state_dir, &c);
        if (r < 0)
                return r;
        r = parse_root(&(ParseContext) { .config = c, .state_dir = state_dir, .problems = problems }, root);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(c);
        return 0;
}
