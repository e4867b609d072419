/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* The config file schema of INTERFACE.md ("Config file"), parsed and validated in one pass.
 * Every string is owned by the Config; every enum has _MAX/_INVALID and to/from_string. */

typedef enum TaskRuntime {
        TASK_RUNTIME_DOCKER,
        TASK_RUNTIME_EXEC,
        _TASK_RUNTIME_MAX,
        _TASK_RUNTIME_INVALID = -EINVAL,
} TaskRuntime;

typedef enum GpuMode {
        GPU_MODE_NONE,  /* key absent */
        GPU_MODE_ALL,   /* "all" */
        GPU_MODE_COUNT, /* integer >= 0 */
        GPU_MODE_IDS,   /* array of device ids */
        _GPU_MODE_MAX,
        _GPU_MODE_INVALID = -EINVAL,
} GpuMode;

typedef enum NetworkMode {
        NETWORK_MODE_BRIDGE,
        NETWORK_MODE_HOST,
        NETWORK_MODE_NONE,
        _NETWORK_MODE_MAX,
        _NETWORK_MODE_INVALID = -EINVAL,
} NetworkMode;

typedef enum PullPolicy {
        PULL_POLICY_MISSING,
        PULL_POLICY_ALWAYS,
        PULL_POLICY_NEVER,
        _PULL_POLICY_MAX,
        _PULL_POLICY_INVALID = -EINVAL,
} PullPolicy;

typedef enum CloudProvider {
        CLOUD_PROVIDER_AUTO,
        CLOUD_PROVIDER_AWS,
        CLOUD_PROVIDER_GCE,
        CLOUD_PROVIDER_AZURE,
        CLOUD_PROVIDER_ALIBABA,
        CLOUD_PROVIDER_NONE,
        _CLOUD_PROVIDER_MAX,
        _CLOUD_PROVIDER_INVALID = -EINVAL,
} CloudProvider;

typedef enum OnComplete {
        ON_COMPLETE_POWEROFF,
        ON_COMPLETE_NONE,
        _ON_COMPLETE_MAX,
        _ON_COMPLETE_INVALID = -EINVAL,
} OnComplete;

typedef enum OnFailure {
        ON_FAILURE_NONE,
        ON_FAILURE_POWEROFF,
        _ON_FAILURE_MAX,
        _ON_FAILURE_INVALID = -EINVAL,
} OnFailure;

typedef struct TaskConfig {
        char *name;
        TaskRuntime runtime;
        char *image;            /* NULL unless given */
        char **command;         /* strv, NULL when not given */
        char **env;             /* strv of "KEY=VALUE", file order */
        char *workdir;          /* NULL when not given */
        char *user;             /* NULL when not given */
        GpuMode gpus;
        unsigned gpu_count;     /* GPU_MODE_COUNT */
        char **gpu_ids;         /* GPU_MODE_IDS */
        NetworkMode network;
        PullPolicy pull;
        char *checkpoint_dir;   /* always set: default filled in */
        char *mount_at;         /* always set */
        unsigned stop_grace_s;
        int *success_exit_codes;
        size_t n_success_exit_codes;
        unsigned restart_max;
        unsigned restart_backoff_s;
        unsigned restart_backoff_max_s;
} TaskConfig;

typedef struct Config {
        char *path;             /* file it came from, or NULL */
        char *job_id;
        TaskConfig *tasks;
        size_t n_tasks;

        int checkpoint_signal;  /* signal number; 0 = "none" */
        unsigned settle_ms;
        unsigned checkpoint_timeout_s;
        char **exclude;         /* strv of glob patterns */

        char *storage_url;      /* always set: default filled in */
        char *storage_endpoint;
        char *storage_region;
        unsigned storage_keep;
        unsigned storage_concurrency;
        unsigned storage_part_size_mb; /* 0 = automatic */
        char *storage_credentials_file;
        char *storage_ca_file;

        CloudProvider cloud_provider;
        unsigned cloud_poll_ms;
        char *cloud_metadata_url;
        bool cloud_acknowledge;

        char *docker_socket;
        OnComplete on_complete;
        OnFailure on_failure;
} Config;

Config *config_free(Config *c);
DEFINE_CLEANUP_FUNC(Config *, config_free);

/* Parses and validates a config document. state_dir fills the defaults that live under it.
 * On success returns 0 and *ret. On a bad document returns -EINVAL and *ret_problems holds one
 * line per problem ("tasks[0].image: required when runtime is \"docker\"", or for JSON syntax
 * errors "FILE:LINE:COLUMN: syntax error: ..."), in document order. filename is used in syntax
 * error lines (may be NULL: "<config>"). Other negative errno on allocation failure. */
int config_parse(const char *text, size_t len, const char *filename, const char *state_dir,
                 Config **ret, char ***ret_problems);

/* Reads path and calls config_parse. A file that cannot be read gives -errno and one problem line
 * "PATH: cannot read: <strerror>". */
int config_load(const char *path, const char *state_dir, Config **ret, char ***ret_problems);

/* The effective config, defaults filled in, as pretty JSON in the file's own schema. */
int config_to_json_string(const Config *c, char **ret);

const char *task_runtime_to_string(TaskRuntime r);
TaskRuntime task_runtime_from_string(const char *s);
const char *network_mode_to_string(NetworkMode m);
NetworkMode network_mode_from_string(const char *s);
const char *pull_policy_to_string(PullPolicy p);
PullPolicy pull_policy_from_string(const char *s);
const char *cloud_provider_to_string(CloudProvider p);
CloudProvider cloud_provider_from_string(const char *s);
const char *on_complete_to_string(OnComplete o);
OnComplete on_complete_from_string(const char *s);
const char *on_failure_to_string(OnFailure o);
OnFailure on_failure_from_string(const char *s);

/* "SIGUSR1" or "USR1" -> SIGUSR1; "none" -> 0; else -EINVAL. */
int signal_from_config_string(const char *s);
/* SIGUSR1 -> "SIGUSR1"; 0 -> "none". Static string, or NULL when unknown. */
const char *signal_to_config_string(int sig);

const TaskConfig *config_find_task(const Config *c, const char *name);

/* Limits on what a config file may hold. */
#define CONFIG_FILE_SIZE_MAX (1024U * 1024U)
#define CONFIG_TASKS_MAX 64U

/* ---- config-schema.c: the schema, behind config_parse() */

struct cJSON;

/* The Config that root describes, defaults filled in (state_dir NULL: /var/lib/trainsupd). Every
 * problem found is appended to *problems, in document order; *ret is complete only when none were.
 * Negative errno on allocation failure. */
int config_schema_parse(const struct cJSON *root, const char *filename, const char *state_dir, Config **ret,
                        char ***problems);

/* The value checks, pure functions (exposed for the tests). */

/* A value quoted for a problem line: at most CONFIG_QUOTE_CHARS_MAX bytes of s (then "..."), with '"',
 * '\' and control characters escaped. Returns buf. */
#define CONFIG_QUOTE_CHARS_MAX 64U
#define CONFIG_QUOTE_MAX (CONFIG_QUOTE_CHARS_MAX * 4U + 8U)
const char *config_quote(const char *s, char buf[static CONFIG_QUOTE_MAX]);

bool config_job_id_is_valid(const char *s);          /* [A-Za-z0-9._-]{1,63}, not "." or ".." */
bool config_task_name_is_valid(const char *s);       /* [a-z0-9-]{1,32} */
bool config_user_is_valid(const char *s);            /* "name" or "uid[:gid]" */
bool config_env_name_is_valid(const char *s);        /* non-empty, no '=', no control characters */
bool config_gpu_device_id_is_valid(const char *s);   /* "0", "GPU-…", "MIG-…" */
bool config_image_is_valid(const char *s);
bool config_region_is_valid(const char *s);
/* http(s)://host[:port], then (unless base_only) any path; base_only allows just a trailing '/'. */
bool config_http_url_is_valid(const char *s, bool base_only);

/* NULL when p is an absolute path without ".." components or control characters (and, unless
 * allow_root, not "/"), else the problem ("must be an absolute path", ...). */
const char *config_path_check(const char *p, bool allow_root);
/* Collapses "//" and "/./", drops a trailing '/'. p must pass config_path_check(). */
int config_path_normalize(const char *p, char **ret);
/* Whether path is dir or below it (both normalized). */
bool config_path_is_inside(const char *path, const char *dir);

/* 0 when url is a supported storage URL of the right shape; else -EINVAL and *ret_problem (owned)
 * says why, e.g. "unsupported scheme \"ftp\""; -ENOMEM. */
int config_storage_url_check(const char *url, char **ret_problem);
/* The path of a file:// URL, or NULL for other schemes. */
const char *config_storage_url_file_path(const char *url);
