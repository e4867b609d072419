/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "config.h"
#include "strv.h"

#define STATE_DIR "/var/lib/trainsupd"
#define J "'job_id':'j'"
#define T1 "'tasks':[{'image':'i'}]"
#define TASK(...) "{" J ",'tasks':[{" __VA_ARGS__ "}]}"
#define SECTION(...) "{" J "," T1 "," __VA_ARGS__ "}"

/* The test documents write ' for ", to stay readable. */
static char *dq(const char *s) {
        char *c = strdup(s);

        assert_non_null(c);
        for (char *p = c; *p; p++)
                if (*p == '\'')
                        *p = '"';
        return c;
}

static char *join(const char * const *l) {
        size_t n = 1;
        char *s;

        for (size_t i = 0; l && l[i]; i++)
                n += strlen(l[i]) + 1;
        s = calloc(1, n);
        assert_non_null(s);
        for (size_t i = 0; l && l[i]; i++) {
                strcat(s, l[i]);
                strcat(s, "\n");
        }
        return s;
}

static void assert_problems(char **got, const char * const *want) {
        _cleanup_free_ char *g = join((const char * const *) got), *w = join(want);

        assert_string_equal(g, w);
}

static Config *parse_ok(const char *json) {
        _cleanup_strv_free_ char **problems = NULL;
        _cleanup_free_ char *text = dq(json);
        Config *c = NULL;
        int r;

        r = config_parse(text, strlen(text), "test.json", STATE_DIR, &c, &problems);
        if (r < 0)
                assert_problems(problems, (const char *[]) { NULL });
        assert_int_equal(r, 0);
        assert_null(problems);
        assert_non_null(c);
        return c;
}

static Config *load_ok(const char *path) {
        _cleanup_strv_free_ char **problems = NULL;
        Config *c = NULL;
        int r;

        r = config_load(path, STATE_DIR, &c, &problems);
        if (r < 0)
                assert_problems(problems, (const char *[]) { NULL });
        assert_int_equal(r, 0);
        return c;
}

/* ---- broken documents, each with its exact list of problems */

typedef struct BadCase {
        const char *name;
        const char *json;
        const char *problems[16];
} BadCase;

static const BadCase bad_cases[] = {
        { "syntax_unexpected_character", "{\n  'job_id': x\n}",
          { "test.json:2:13: syntax error: unexpected character 'x'" } },
        { "syntax_trailing_comma", "{\n  'job_id': 'j',\n}",
          { "test.json:3:1: syntax error: unexpected character '}'" } },
        { "syntax_end_of_input", "{'job_id': 'j'",
          { "test.json:1:15: syntax error: unexpected end of input" } },
        { "syntax_empty_file", "",
          { "test.json:1:1: syntax error: unexpected end of input" } },
        { "syntax_unterminated_string", "{'job_id': 'j}",
          { "test.json:1:12: syntax error: unterminated string" } },
        { "syntax_invalid_literal", "{'job_id': tru}",
          { "test.json:1:12: syntax error: invalid literal \"tru\"" } },
        { "syntax_column_counts_characters", "{'job_id': '\xc3\xa9', \xe2\x80\x9cx\xe2\x80\x9d}",
          { "test.json:1:17: syntax error: unexpected character U+201C" } },
        { "syntax_garbage_after_value", "{}\n\n  x",
          { "test.json:3:3: syntax error: unexpected character 'x'" } },
        { "syntax_leading_zero", "{'a': 01}",
          { "test.json:1:8: syntax error: unexpected character '1'" } },
        { "syntax_invalid_escape", "{'a': 'x\\q'}",
          { "test.json:1:9: syntax error: invalid escape '\\q'" } },
        { "syntax_invalid_utf8", "{'a': '\xff'}",
          { "test.json:1:8: syntax error: invalid UTF-8 in string" } },
        { "syntax_lone_surrogate", "{'a': '\\udc00'}",
          { "test.json:1:8: syntax error: invalid \\u escape (unpaired surrogate)" } },
        { "syntax_high_surrogate_alone", "{'a': '\\ud83dx'}",
          { "test.json:1:8: syntax error: invalid \\u escape (unpaired surrogate)" } },
        { "syntax_nul_escape", "{'a': '\\u0000'}",
          { "test.json:1:8: syntax error: \\u0000 is not supported" } },
        { "syntax_bad_hex", "{'a': '\\u12G4'}",
          { "test.json:1:8: syntax error: invalid \\u escape" } },
        { "syntax_control_character", "{'a': 'x\ty'}",
          { "test.json:1:9: syntax error: control character in string" } },
        { "syntax_exponent", "{'a': 1e+}",
          { "test.json:1:10: syntax error: unexpected character '}'" } },
        { "syntax_after_bom", "\xef\xbb\xbf{'job_id': x}",
          { "test.json:1:12: syntax error: unexpected character 'x'" } },
        { "syntax_crlf_and_tab", "{\r\n\t'job_id': x}",
          { "test.json:2:12: syntax error: unexpected character 'x'" } },
        { "escapes_decoded_before_checks", "{'job_id':'\\u0041\\ud83d\\ude00\\n'," T1 "}",
          { "job_id: must match [A-Za-z0-9._-]{1,63}" } },
        { "root_not_object", "[1]",
          { "<root>: must be an object" } },
        { "unknown_key_top", "{" J "," T1 ",'tpyo':1}",
          { "tpyo: unknown key" } },
        { "unknown_key_nested", "{" J ",'tasks':[{'name':'a','image':'i'},{'name':'b','imgae':'i'}]}",
          { "tasks[1].imgae: unknown key", "tasks[1].image: required when runtime is \"docker\"" } },
        { "unknown_key_quoted", SECTION("'checkpoint':{'set tle':1},'docker':{'sock':'/x'}"),
          { "checkpoint[\"set tle\"]: unknown key", "docker.sock: unknown key" } },
        { "missing_job_id", "{" T1 "}",
          { "job_id: required" } },
        { "job_id_pattern", "{'job_id':'my job'," T1 "}",
          { "job_id: must match [A-Za-z0-9._-]{1,63}" } },
        { "job_id_too_long",
          "{'job_id':'0123456789012345678901234567890123456789012345678901234567890123'," T1 "}",
          { "job_id: must match [A-Za-z0-9._-]{1,63}" } },
        { "job_id_dot_dot", "{'job_id':'..'," T1 "}",
          { "job_id: must not be \".\" or \"..\"" } },
        { "job_id_not_string", "{'job_id':null," T1 "}",
          { "job_id: must be a string" } },
        { "missing_everything", "{}",
          { "job_id: required", "tasks: required" } },
        { "empty_tasks", "{" J ",'tasks':[]}",
          { "tasks: must contain at least one task" } },
        { "tasks_not_array", "{" J ",'tasks':{}}",
          { "tasks: must be an array" } },
        { "task_not_object", "{" J ",'tasks':['main']}",
          { "tasks[0]: must be an object" } },
        { "docker_without_image", TASK("'command':['train']"),
          { "tasks[0].image: required when runtime is \"docker\"" } },
        { "exec_without_command", TASK("'runtime':'exec'"),
          { "tasks[0].command: required when runtime is \"exec\"" } },
        { "exec_command_null", TASK("'runtime':'exec','command':null"),
          { "tasks[0].command: required when runtime is \"exec\"" } },
        { "command_not_array_of_strings", TASK("'image':'i','command':['a',1]"),
          { "tasks[0].command: must be an array of strings" } },
        { "command_is_a_string", TASK("'runtime':'exec','command':'python train.py'"),
          { "tasks[0].command: must be an array of strings" } },
        { "command_empty", TASK("'runtime':'exec','command':[]"),
          { "tasks[0].command: must not be empty" } },
        { "bad_runtime", TASK("'runtime':'podman','image':'i'"),
          { "tasks[0].runtime: must be \"docker\" or \"exec\"" } },
        { "bad_task_name", TASK("'name':'Main','image':'i'"),
          { "tasks[0].name: must match [a-z0-9-]{1,32}" } },
        { "duplicate_task_names", "{" J ",'tasks':[{'name':'a','image':'i'},{'name':'a','image':'i'}]}",
          { "tasks[1].name: \"a\" is already used by tasks[0]" } },
        { "missing_name_with_two_tasks", "{" J ",'tasks':[{'name':'a','image':'i'},{'image':'i'}]}",
          { "tasks[1].name: required when there are several tasks" } },
        { "gpus_with_exec", TASK("'gpus':'all','runtime':'exec','command':['x']"),
          { "tasks[0].gpus: only valid when runtime is \"docker\"" } },
        { "docker_only_keys_with_exec",
          TASK("'runtime':'exec','command':['x'],"
               "'image':'i','network':'host','pull':'never','mount_at':'/c'"),
          { "tasks[0].image: only valid when runtime is \"docker\"",
            "tasks[0].network: only valid when runtime is \"docker\"",
            "tasks[0].pull: only valid when runtime is \"docker\"",
            "tasks[0].mount_at: only valid when runtime is \"docker\"" } },
        { "bad_gpus", TASK("'image':'i','gpus':'some'"),
          { "tasks[0].gpus: must be \"all\", an integer or an array of device ids" } },
        { "bad_gpu_ids", TASK("'image':'i','gpus':['0','a b',true]"),
          { "tasks[0].gpus[1]: invalid device id \"a b\"",
            "tasks[0].gpus[2]: must be a string or an integer" } },
        { "bad_network_and_pull", TASK("'image':'i','network':'overlay','pull':'sometimes'"),
          { "tasks[0].network: must be one of \"bridge\", \"host\", \"none\"",
            "tasks[0].pull: must be one of \"missing\", \"always\", \"never\"" } },
        { "bad_image", TASK("'image':'my image'"),
          { "tasks[0].image: invalid image reference \"my image\"" } },
        { "bad_user", TASK("'image':'i','user':'root:wheel'"),
          { "tasks[0].user: must be a user name or \"uid[:gid]\"" } },
        { "relative_workdir", TASK("'image':'i','workdir':'work'"),
          { "tasks[0].workdir: must be an absolute path" } },
        { "relative_checkpoint_dir", TASK("'image':'i','checkpoint_dir':'ckpt'"),
          { "tasks[0].checkpoint_dir: must be an absolute path" } },
        { "checkpoint_dir_dot_dot", TASK("'image':'i','checkpoint_dir':'/data/../etc'"),
          { "tasks[0].checkpoint_dir: must not contain \"..\" components" } },
        { "checkpoint_dir_root", TASK("'image':'i','checkpoint_dir':'//./'"),
          { "tasks[0].checkpoint_dir: must not be the root directory" } },
        { "checkpoint_dir_contains_state_dir", TASK("'image':'i','checkpoint_dir':'/var/lib/'"),
          { "tasks[0].checkpoint_dir: contains the state directory \"/var/lib/trainsupd\"",
            "storage.url: overlaps tasks[0].checkpoint_dir" } },
        { "checkpoint_dir_same_as_default",
          "{" J ",'tasks':[{'name':'a','image':'i'},"
          "{'name':'b','image':'i','checkpoint_dir':'/var/lib/trainsupd/checkpoints/a/'}]}",
          { "tasks[1].checkpoint_dir: same as tasks[0].checkpoint_dir" } },
        { "checkpoint_dir_nested",
          "{" J ",'tasks':[{'name':'a','image':'i','checkpoint_dir':'/data/a'},"
          "{'name':'b','image':'i','checkpoint_dir':'/data/a/b'},"
          "{'name':'c','image':'i','checkpoint_dir':'/data'}]}",
          { "tasks[1].checkpoint_dir: inside tasks[0].checkpoint_dir",
            "tasks[2].checkpoint_dir: contains tasks[0].checkpoint_dir",
            "tasks[2].checkpoint_dir: contains tasks[1].checkpoint_dir" } },
        { "float_integer", TASK("'image':'i','stop_grace_s':1.5"),
          { "tasks[0].stop_grace_s: must be an integer" } },
        { "negative_stop_grace_s", TASK("'image':'i','stop_grace_s':-1"),
          { "tasks[0].stop_grace_s: must be >= 0" } },
        { "integer_too_large", TASK("'image':'i','stop_grace_s':2147483648"),
          { "tasks[0].stop_grace_s: must be <= 2147483647" } },
        { "integer_as_string", TASK("'image':'i','stop_grace_s':'30'"),
          { "tasks[0].stop_grace_s: must be an integer" } },
        { "env_value_number", TASK("'image':'i','env':{'A':1}"),
          { "tasks[0].env.A: must be a string" } },
        { "env_bad_names", TASK("'image':'i','env':{'A=B':'x','':'y','OK':'z'}"),
          { "tasks[0].env[\"A=B\"]: invalid variable name", "tasks[0].env[\"\"]: invalid variable name" } },
        { "env_duplicate", TASK("'image':'i','env':{'A':'1','A':'2'}"),
          { "tasks[0].env.A: duplicate key" } },
        { "exit_codes", TASK("'image':'i','success_exit_codes':[0,256,'x']"),
          { "tasks[0].success_exit_codes[1]: must be between 0 and 255",
            "tasks[0].success_exit_codes[2]: must be an integer" } },
        { "exit_codes_empty", TASK("'image':'i','success_exit_codes':[]"),
          { "tasks[0].success_exit_codes: must not be empty" } },
        { "restart_unknown_key", TASK("'image':'i','restart':{'max':1,'maxx':1}"),
          { "tasks[0].restart.maxx: unknown key" } },
        { "restart_not_object", TASK("'image':'i','restart':5"),
          { "tasks[0].restart: must be an object" } },
        { "restart_backoff_order", TASK("'image':'i','restart':{'backoff_s':600}"),
          { "tasks[0].restart.backoff_s: must not exceed backoff_max_s (300)" } },
        { "bad_signal", SECTION("'checkpoint':{'signal':'SIGFOO'}"),
          { "checkpoint.signal: unknown signal \"SIGFOO\"" } },
        { "sigkill_as_signal", SECTION("'checkpoint':{'signal':'SIGKILL'}"),
          { "checkpoint.signal: SIGKILL cannot be caught by the task" } },
        { "stop_as_signal", SECTION("'checkpoint':{'signal':'STOP'}"),
          { "checkpoint.signal: SIGSTOP cannot be caught by the task" } },
        { "timeout_zero", SECTION("'checkpoint':{'timeout_s':0}"),
          { "checkpoint.timeout_s: must be >= 1" } },
        { "bad_exclude", SECTION("'checkpoint':{'exclude':['*.tmp','']}"),
          { "checkpoint.exclude[1]: must not be empty" } },
        { "exclude_not_array", SECTION("'checkpoint':{'exclude':'*.tmp'}"),
          { "checkpoint.exclude: must be an array of strings" } },
        { "bad_storage_scheme", SECTION("'storage':{'url':'ftp://host/x'}"),
          { "storage.url: unsupported scheme \"ftp\"" } },
        { "storage_url_not_url", SECTION("'storage':{'url':'/data/store'}"),
          { "storage.url: must be a URL: s3://, gs://, az:// or file://" } },
        { "bad_az_url_shape", SECTION("'storage':{'url':'az://account'}"),
          { "storage.url: must be az://account/container[/prefix]" } },
        { "bad_az_account", SECTION("'storage':{'url':'az://My_Account/c1c'}"),
          { "storage.url: invalid storage account name \"My_Account\"" } },
        { "bad_s3_bucket", SECTION("'storage':{'url':'s3://ab'}"),
          { "storage.url: invalid bucket name \"ab\"" } },
        { "bad_s3_prefix", SECTION("'storage':{'url':'s3://bucket/a//b'}"),
          { "storage.url: invalid prefix \"/a//b\"" } },
        { "bad_gs_shape", SECTION("'storage':{'url':'gs:///x'}"),
          { "storage.url: must be gs://bucket[/prefix]" } },
        { "relative_file_url", SECTION("'storage':{'url':'file://store'}"),
          { "storage.url: must be file:///absolute/path" } },
        { "file_store_overlaps_checkpoint_dir",
          "{" J ",'tasks':[{'image':'i','checkpoint_dir':'/data/ckpt'}],'storage':{'url':'file:///data'}}",
          { "storage.url: overlaps tasks[0].checkpoint_dir" } },
        { "poll_ms_50", SECTION("'cloud':{'poll_ms':50}"),
          { "cloud.poll_ms: must be >= 100" } },
        { "keep_zero", SECTION("'storage':{'keep':0}"),
          { "storage.keep: must be >= 1" } },
        { "concurrency_range", SECTION("'storage':{'concurrency':65}"),
          { "storage.concurrency: must be between 1 and 64" } },
        { "part_size_range", SECTION("'storage':{'part_size_mb':4}"),
          { "storage.part_size_mb: must be between 5 and 5120" } },
        { "bad_urls", SECTION("'storage':{'endpoint':'s3.amazonaws.com','region':'eu west'},"
                              "'cloud':{'metadata_url':'http://169.254.169.254/latest'}"),
          { "storage.endpoint: must be an http:// or https:// URL",
            "storage.region: invalid region name \"eu west\"",
            "cloud.metadata_url: must be http://host[:port] or https://host[:port]" } },
        { "relative_credentials_file", SECTION("'storage':{'credentials_file':'creds'}"),
          { "storage.credentials_file: must be an absolute path" } },
        { "bad_enums", SECTION("'cloud':{'provider':'ibm'},'on_complete':'reboot','on_failure':true"),
          { "cloud.provider: must be one of \"auto\", \"aws\", \"gce\", \"azure\", \"alibaba\", \"none\"",
            "on_complete: must be \"poweroff\" or \"none\"",
            "on_failure: must be \"none\" or \"poweroff\"" } },
        { "acknowledge_not_bool", SECTION("'cloud':{'acknowledge':'yes'}"),
          { "cloud.acknowledge: must be a boolean" } },
        { "section_not_object", SECTION("'checkpoint':[],'docker':null"),
          { "checkpoint: must be an object", "docker: must be an object" } },
        { "empty_string", TASK("'image':''"),
          { "tasks[0].image: must not be empty" } },
        { "env_not_object", TASK("'image':'i','env':['A=1']"),
          { "tasks[0].env: must be an object" } },
        { "command_first_empty", TASK("'image':'i','command':['','x']"),
          { "tasks[0].command[0]: must not be empty" } },
        { "gpus_empty", TASK("'image':'i','gpus':[]"),
          { "tasks[0].gpus: must not be empty" } },
        { "exit_codes_not_array", TASK("'image':'i','success_exit_codes':0"),
          { "tasks[0].success_exit_codes: must be an array of integers" } },
        { "signal_not_string", SECTION("'checkpoint':{'signal':10}"),
          { "checkpoint.signal: must be a string" } },
        { "bad_az_container", SECTION("'storage':{'url':'az://acct/ab'}"),
          { "storage.url: invalid container name \"ab\"" } },
        { "bad_az_prefix", SECTION("'storage':{'url':'az://acct/cont/./x'}"),
          { "storage.url: invalid prefix \"/./x\"" } },
        { "duplicate_key", "{'job_id':'a','job_id':'b'," T1 "}",
          { "job_id: duplicate key" } },
        { "duplicate_section", SECTION("'cloud':{'poll_ms':50},'cloud':{'poll_ms':50}"),
          { "cloud.poll_ms: must be >= 100", "cloud: duplicate key" } },
        { "multiple_problems_in_document_order",
          "{'tpyo':1,'job_id':'bad id',"
          "'tasks':[{'name':'A','runtime':'exec','gpus':2,'stop_grace_s':1.5},"
          "{'image':'i','restart':{'max':-1,'x':0}}],"
          "'checkpoint':{'signal':'SIGKILL'},'storage':{'url':'ftp://x','keep':0},"
          "'cloud':{'poll_ms':50},'on_complete':'reboot'}",
          { "tpyo: unknown key",
            "job_id: must match [A-Za-z0-9._-]{1,63}",
            "tasks[0].name: must match [a-z0-9-]{1,32}",
            "tasks[0].gpus: only valid when runtime is \"docker\"",
            "tasks[0].stop_grace_s: must be an integer",
            "tasks[0].command: required when runtime is \"exec\"",
            "tasks[1].restart.max: must be >= 0",
            "tasks[1].restart.x: unknown key",
            "tasks[1].name: required when there are several tasks",
            "checkpoint.signal: SIGKILL cannot be caught by the task",
            "storage.url: unsupported scheme \"ftp\"",
            "storage.keep: must be >= 1",
            "cloud.poll_ms: must be >= 100",
            "on_complete: must be \"poweroff\" or \"none\"" } },
};

static void test_bad(void **state) {
        const BadCase *c = *state;
        _cleanup_strv_free_ char **problems = NULL;
        _cleanup_free_ char *text = dq(c->json);
        Config *config = NULL;
        int r;

        r = config_parse(text, strlen(text), "test.json", STATE_DIR, &config, &problems);
        assert_int_equal(r, -EINVAL);
        assert_null(config);
        assert_problems(problems, c->problems);

        /* Without a problem list the result is the same, and nothing leaks. */
        assert_int_equal(config_parse(text, strlen(text), NULL, STATE_DIR, &config, NULL), -EINVAL);
        assert_null(config);
}

/* ---- documents built by the test */

static void assert_parse_problems(const char *text, size_t len, const char * const *want) {
        _cleanup_strv_free_ char **problems = NULL;
        Config *c = NULL;

        assert_int_equal(config_parse(text, len, NULL, STATE_DIR, &c, &problems), -EINVAL);
        assert_problems(problems, want);
}

static void test_nesting_too_deep(void **state) {
        char text[301];

        memset(text, '[', 300);
        text[300] = '\0';
        assert_parse_problems(text, 300, (const char *[]) {
                "<config>:1:129: syntax error: nesting too deep", NULL });
}

static void test_too_many_tasks(void **state) {
        _cleanup_free_ char *text = NULL;
        size_t n = 0;

        text = malloc(4096);
        assert_non_null(text);
        n += (size_t) sprintf(text, "{\"job_id\":\"j\",\"tasks\":[");
        for (unsigned i = 0; i <= CONFIG_TASKS_MAX; i++)
                n += (size_t) sprintf(text + n, "%s{\"name\":\"t%u\",\"image\":\"i\"}", i ? "," : "", i);
        strcpy(text + n, "]}");
        assert_parse_problems(text, strlen(text), (const char *[]) {
                "tasks: must not contain more than 64 tasks", NULL });
}

static void test_embedded_nul(void **state) {
        static const char text[] = "{\"job_id\":\"j\"}\0garbage";

        assert_parse_problems(text, sizeof(text) - 1, (const char *[]) {
                "<config>:1:15: syntax error: unexpected byte 0x00", NULL });
}

/* ---- valid documents */

static void test_minimal_defaults(void **state) {
        _cleanup_(config_freep) Config *c = parse_ok("{'job_id':'j','tasks':[{'image':'img'}]}");
        const TaskConfig *t = &c->tasks[0];

        assert_string_equal(c->path, "test.json");
        assert_string_equal(c->job_id, "j");
        assert_int_equal(c->n_tasks, 1);
        assert_string_equal(t->name, "main");
        assert_int_equal(t->runtime, TASK_RUNTIME_DOCKER);
        assert_string_equal(t->image, "img");
        assert_null(t->command);
        assert_null(t->env);
        assert_null(t->workdir);
        assert_null(t->user);
        assert_int_equal(t->gpus, GPU_MODE_NONE);
        assert_int_equal(t->network, NETWORK_MODE_BRIDGE);
        assert_int_equal(t->pull, PULL_POLICY_MISSING);
        assert_string_equal(t->checkpoint_dir, STATE_DIR "/checkpoints/main");
        assert_string_equal(t->mount_at, "/checkpoints");
        assert_int_equal(t->stop_grace_s, 30);
        assert_int_equal(t->n_success_exit_codes, 1);
        assert_int_equal(t->success_exit_codes[0], 0);
        assert_int_equal(t->restart_max, 3);
        assert_int_equal(t->restart_backoff_s, 10);
        assert_int_equal(t->restart_backoff_max_s, 300);

        assert_int_equal(c->checkpoint_signal, SIGUSR1);
        assert_int_equal(c->settle_ms, 2000);
        assert_int_equal(c->checkpoint_timeout_s, 60);
        assert_null(c->exclude);
        assert_string_equal(c->storage_url, "file://" STATE_DIR "/store");
        assert_null(c->storage_endpoint);
        assert_null(c->storage_region);
        assert_int_equal(c->storage_keep, 3);
        assert_int_equal(c->storage_concurrency, 8);
        assert_int_equal(c->storage_part_size_mb, 0);
        assert_null(c->storage_credentials_file);
        assert_null(c->storage_ca_file);
        assert_int_equal(c->cloud_provider, CLOUD_PROVIDER_AUTO);
        assert_int_equal(c->cloud_poll_ms, 1000);
        assert_null(c->cloud_metadata_url);
        assert_true(c->cloud_acknowledge);
        assert_string_equal(c->docker_socket, "/var/run/docker.sock");
        assert_int_equal(c->on_complete, ON_COMPLETE_POWEROFF);
        assert_int_equal(c->on_failure, ON_FAILURE_NONE);
}

static void test_state_dir(void **state) {
        _cleanup_(config_freep) Config *a = NULL, *b = NULL;
        static const char text[] =
                "{\"job_id\":\"j\",\"tasks\":[{\"runtime\":\"exec\",\"command\":[\"x\"]}]}";

        assert_int_equal(config_parse(text, strlen(text), NULL, NULL, &a, NULL), 0);
        assert_null(a->path);
        assert_string_equal(a->tasks[0].checkpoint_dir, "/var/lib/trainsupd/checkpoints/main");
        assert_string_equal(a->tasks[0].mount_at, "/checkpoints");
        assert_int_equal(config_parse(text, strlen(text), NULL, "/srv//state/", &b, NULL), 0);
        assert_string_equal(b->tasks[0].checkpoint_dir, "/srv/state/checkpoints/main");
        assert_string_equal(b->storage_url, "file:///srv/state/store");
}

static void test_nullable_keys(void **state) {
        _cleanup_(config_freep) Config *c = parse_ok(
                "{'job_id':'j',"
                "'tasks':[{'image':'i','command':null,'workdir':null,'user':null,'gpus':null}],"
                "'storage':{'endpoint':null,'region':null,'part_size_mb':null,"
                "'credentials_file':null,'ca_file':null},"
                "'cloud':{'metadata_url':null}}");

        assert_null(c->tasks[0].command);
        assert_int_equal(c->tasks[0].gpus, GPU_MODE_NONE);
        assert_int_equal(c->storage_part_size_mb, 0);
        assert_null(c->cloud_metadata_url);
}

static void test_gpus(void **state) {
        _cleanup_(config_freep) Config *c = parse_ok(
                "{'job_id':'j','tasks':[{'name':'a','image':'i','gpus':'all'},"
                "{'name':'b','image':'i','gpus':0},"
                "{'name':'c','image':'i','gpus':2},{'name':'d','image':'i','gpus':[3,'MIG-1']}]}");

        assert_int_equal(c->tasks[0].gpus, GPU_MODE_ALL);
        assert_int_equal(c->tasks[1].gpus, GPU_MODE_COUNT);
        assert_int_equal(c->tasks[1].gpu_count, 0);
        assert_int_equal(c->tasks[2].gpu_count, 2);
        assert_int_equal(c->tasks[3].gpus, GPU_MODE_IDS);
        assert_int_equal(strv_length(c->tasks[3].gpu_ids), 2);
        assert_string_equal(c->tasks[3].gpu_ids[0], "3");
        assert_string_equal(c->tasks[3].gpu_ids[1], "MIG-1");
}

static void test_full_tasks(void **state) {
        _cleanup_(config_freep) Config *c = load_ok(FIXTURES_DIR "/config/full.json");
        const TaskConfig *t = &c->tasks[0], *e = &c->tasks[1];

        assert_string_equal(c->path, FIXTURES_DIR "/config/full.json");
        assert_string_equal(c->job_id, "llama-7b.run_3");
        assert_int_equal(c->n_tasks, 2);
        assert_string_equal(t->name, "trainer");
        assert_string_equal(t->image, "ghcr.io/example/trainer:1.4@sha256:0123456789abcdef");
        assert_int_equal(strv_length(t->command), 5);
        assert_string_equal(t->command[4], "");
        assert_int_equal(strv_length(t->env), 3);
        assert_string_equal(t->env[0], "NCCL_DEBUG=WARN");
        assert_string_equal(t->env[1], "EMPTY=");
        assert_string_equal(t->env[2], "OPTS=a=b c=d");
        assert_string_equal(t->workdir, "/workspace");
        assert_string_equal(t->user, "1000:1000");
        assert_int_equal(t->gpus, GPU_MODE_IDS);
        assert_string_equal(t->gpu_ids[1], "1");
        assert_int_equal(t->network, NETWORK_MODE_HOST);
        assert_int_equal(t->pull, PULL_POLICY_ALWAYS);
        assert_string_equal(t->checkpoint_dir, "/data/ckpt/trainer");
        assert_string_equal(t->mount_at, "/ckpt");
        assert_int_equal(t->stop_grace_s, 120);
        assert_int_equal(t->n_success_exit_codes, 2);
        assert_int_equal(t->success_exit_codes[1], 3);
        assert_int_equal(t->restart_max, 5);
        assert_int_equal(t->restart_backoff_s, 1);
        assert_int_equal(t->restart_backoff_max_s, 60);

        assert_string_equal(e->name, "eval-1");
        assert_int_equal(e->runtime, TASK_RUNTIME_EXEC);
        assert_null(e->image);
        assert_null(e->env);
        assert_null(e->workdir);
        assert_string_equal(e->user, "trainer");
        assert_int_equal(e->stop_grace_s, 0);
        assert_int_equal(e->restart_max, 0);
        assert_int_equal(e->restart_backoff_s, 10);

        assert_ptr_equal(config_find_task(c, "eval-1"), e);
        assert_null(config_find_task(c, "nope"));
        assert_null(config_find_task(c, NULL));
}

static void test_full_sections(void **state) {
        _cleanup_(config_freep) Config *c = load_ok(FIXTURES_DIR "/config/full.json");

        assert_int_equal(c->checkpoint_signal, SIGUSR2);
        assert_int_equal(c->settle_ms, 500);
        assert_int_equal(c->checkpoint_timeout_s, 30);
        assert_int_equal(strv_length(c->exclude), 2);
        assert_string_equal(c->storage_url, "s3://my-bucket/jobs/team-a");
        assert_string_equal(c->storage_endpoint, "https://s3.eu-central-1.amazonaws.com");
        assert_string_equal(c->storage_region, "eu-central-1");
        assert_int_equal(c->storage_keep, 5);
        assert_int_equal(c->storage_concurrency, 16);
        assert_int_equal(c->storage_part_size_mb, 64);
        assert_string_equal(c->storage_credentials_file, "/etc/trainsupd/aws-credentials");
        assert_string_equal(c->storage_ca_file, "/etc/ssl/private-ca.pem");
        assert_int_equal(c->cloud_provider, CLOUD_PROVIDER_AWS);
        assert_int_equal(c->cloud_poll_ms, 500);
        assert_string_equal(c->cloud_metadata_url, "http://127.0.0.1:8999");
        assert_false(c->cloud_acknowledge);
        assert_string_equal(c->docker_socket, "/run/podman/podman.sock");
        assert_int_equal(c->on_complete, ON_COMPLETE_NONE);
        assert_int_equal(c->on_failure, ON_FAILURE_POWEROFF);
}

static void assert_str_eq(const char *a, const char *b) {
        if (a && b)
                assert_string_equal(a, b);
        else
                assert_ptr_equal(a, b);
}

static void assert_strv_eq(char **a, char **b) {
        assert_int_equal(strv_length(a), strv_length(b));
        for (size_t i = 0; i < strv_length(a); i++)
                assert_string_equal(a[i], b[i]);
}

static void assert_task_eq(const TaskConfig *a, const TaskConfig *b) {
        assert_str_eq(a->name, b->name);
        assert_int_equal(a->runtime, b->runtime);
        assert_str_eq(a->image, b->image);
        assert_strv_eq(a->command, b->command);
        assert_true(!a->command == !b->command);
        assert_strv_eq(a->env, b->env);
        assert_str_eq(a->workdir, b->workdir);
        assert_str_eq(a->user, b->user);
        assert_int_equal(a->gpus, b->gpus);
        assert_int_equal(a->gpu_count, b->gpu_count);
        assert_strv_eq(a->gpu_ids, b->gpu_ids);
        assert_int_equal(a->network, b->network);
        assert_int_equal(a->pull, b->pull);
        assert_str_eq(a->checkpoint_dir, b->checkpoint_dir);
        assert_str_eq(a->mount_at, b->mount_at);
        assert_int_equal(a->stop_grace_s, b->stop_grace_s);
        assert_int_equal(a->n_success_exit_codes, b->n_success_exit_codes);
        assert_memory_equal(a->success_exit_codes, b->success_exit_codes,
                            a->n_success_exit_codes * sizeof(int));
        assert_int_equal(a->restart_max, b->restart_max);
        assert_int_equal(a->restart_backoff_s, b->restart_backoff_s);
        assert_int_equal(a->restart_backoff_max_s, b->restart_backoff_max_s);
}

static void assert_config_eq(const Config *a, const Config *b) {
        assert_str_eq(a->job_id, b->job_id);
        assert_int_equal(a->n_tasks, b->n_tasks);
        for (size_t i = 0; i < a->n_tasks; i++)
                assert_task_eq(&a->tasks[i], &b->tasks[i]);
        assert_int_equal(a->checkpoint_signal, b->checkpoint_signal);
        assert_int_equal(a->settle_ms, b->settle_ms);
        assert_int_equal(a->checkpoint_timeout_s, b->checkpoint_timeout_s);
        assert_strv_eq(a->exclude, b->exclude);
        assert_str_eq(a->storage_url, b->storage_url);
        assert_str_eq(a->storage_endpoint, b->storage_endpoint);
        assert_str_eq(a->storage_region, b->storage_region);
        assert_int_equal(a->storage_keep, b->storage_keep);
        assert_int_equal(a->storage_concurrency, b->storage_concurrency);
        assert_int_equal(a->storage_part_size_mb, b->storage_part_size_mb);
        assert_str_eq(a->storage_credentials_file, b->storage_credentials_file);
        assert_str_eq(a->storage_ca_file, b->storage_ca_file);
        assert_int_equal(a->cloud_provider, b->cloud_provider);
        assert_int_equal(a->cloud_poll_ms, b->cloud_poll_ms);
        assert_str_eq(a->cloud_metadata_url, b->cloud_metadata_url);
        assert_int_equal(a->cloud_acknowledge, b->cloud_acknowledge);
        assert_str_eq(a->docker_socket, b->docker_socket);
        assert_int_equal(a->on_complete, b->on_complete);
        assert_int_equal(a->on_failure, b->on_failure);
}

/* Printing, parsing the print (under another state dir: every default is explicit) and printing
 * again gives the same Config and the same text. */
static void assert_round_trip(const Config *c) {
        _cleanup_(config_freep) Config *again = NULL;
        _cleanup_strv_free_ char **problems = NULL;
        _cleanup_free_ char *one = NULL, *two = NULL;
        int r;

        assert_int_equal(config_to_json_string(c, &one), 0);
        r = config_parse(one, strlen(one), "show", "/elsewhere", &again, &problems);
        if (r < 0)
                assert_problems(problems, (const char *[]) { NULL });
        assert_int_equal(r, 0);
        assert_config_eq(c, again);
        assert_int_equal(config_to_json_string(again, &two), 0);
        assert_string_equal(one, two);
}

static void test_round_trip(void **state) {
        _cleanup_(config_freep) Config *minimal = parse_ok("{'job_id':'j','tasks':[{'image':'img'}]}");
        _cleanup_(config_freep) Config *exec = parse_ok(
                "{'job_id':'j','tasks':[{'runtime':'exec','command':['a b','c'],'env':{'X':'1'}}],"
                "'checkpoint':{'signal':'none'}}");
        _cleanup_(config_freep) Config *gpus = parse_ok(
                "{'job_id':'j','tasks':[{'name':'a','image':'i','gpus':'all'},"
                "{'name':'b','image':'i','gpus':2}]}");
        _cleanup_(config_freep) Config *full = load_ok(FIXTURES_DIR "/config/full.json");

        assert_round_trip(minimal);
        assert_round_trip(exec);
        assert_round_trip(gpus);
        assert_round_trip(full);
}

static void test_show_order(void **state) {
        _cleanup_(config_freep) Config *c = parse_ok("{'job_id':'j','tasks':[{'image':'img'}]}");
        _cleanup_free_ char *s = NULL;
        static const char * const keys[] = {
                "job_id", "tasks", "name", "runtime", "image", "command", "env", "workdir", "user", "gpus",
                "network", "pull", "checkpoint_dir", "mount_at", "stop_grace_s", "success_exit_codes",
                "restart", "max", "backoff_s", "backoff_max_s", "checkpoint", "signal", "settle_ms",
                "timeout_s", "exclude", "storage", "url", "endpoint", "region", "keep", "concurrency",
                "part_size_mb", "credentials_file", "ca_file", "cloud", "provider", "poll_ms",
                "metadata_url", "acknowledge", "docker", "socket", "on_complete", "on_failure",
        };
        const char *p;

        assert_int_equal(config_to_json_string(c, &s), 0);
        p = s;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                char k[64];

                snprintf(k, sizeof(k), "\"%s\":", keys[i]);
                p = strstr(p, k);
                if (!p)
                        fail_msg("key %s missing or out of order in:\n%s", keys[i], s);
        }
        assert_non_null(strstr(s, "\"signal\":\t\"SIGUSR1\""));
        assert_non_null(strstr(s, "\"part_size_mb\":\tnull"));
}

static void test_load_missing_file(void **state) {
        _cleanup_strv_free_ char **problems = NULL;
        Config *c = NULL;

        assert_int_equal(config_load("/nonexistent/trainsupd.json", STATE_DIR, &c, &problems), -ENOENT);
        assert_null(c);
        assert_problems(problems, (const char *[]) {
                "/nonexistent/trainsupd.json: cannot read: No such file or directory", NULL });
}

static void test_load_directory(void **state) {
        _cleanup_strv_free_ char **problems = NULL;
        Config *c = NULL;

        assert_int_equal(config_load(FIXTURES_DIR, STATE_DIR, &c, &problems), -EISDIR);
        assert_problems(problems, (const char *[]) { FIXTURES_DIR ": cannot read: Is a directory", NULL });
}

static void test_load_too_large(void **state) {
        _cleanup_strv_free_ char **problems = NULL;
        _cleanup_free_ char *want = NULL, *blank = NULL;
        char path[] = "/tmp/test-config-XXXXXX";
        Config *c = NULL;
        int fd;

        fd = mkstemp(path);
        assert_true(fd >= 0);
        blank = malloc(CONFIG_FILE_SIZE_MAX + 1);
        assert_non_null(blank);
        memset(blank, ' ', CONFIG_FILE_SIZE_MAX + 1);
        assert_int_equal(write(fd, blank, CONFIG_FILE_SIZE_MAX + 1), CONFIG_FILE_SIZE_MAX + 1);
        close(fd);
        assert_int_equal(config_load(path, STATE_DIR, &c, &problems), -EFBIG);
        assert_true(asprintf(&want, "%s: too large (more than 1 MiB)", path) > 0);
        assert_problems(problems, (const char *[]) { want, NULL });
        unlink(path);
}

static void test_load_syntax_error(void **state) {
        _cleanup_strv_free_ char **problems = NULL;
        Config *c = NULL;

#define SYNTAX_ERROR_JSON FIXTURES_DIR "/config/syntax-error.json"
        assert_int_equal(config_load(SYNTAX_ERROR_JSON, STATE_DIR, &c, &problems), -EINVAL);
        assert_problems(problems, (const char *[]) {
                SYNTAX_ERROR_JSON ":4:19: syntax error: unexpected character '}'", NULL });
}

static void test_example_validates(void **state) {
        _cleanup_(config_freep) Config *c = load_ok(FIXTURES_DIR "/../../units/trainsupd.json.example");

        assert_int_equal(c->tasks[0].gpus, GPU_MODE_ALL);
        assert_true(strneq(c->storage_url, "s3://", 5));
        assert_round_trip(c);
}

static void test_signals(void **state) {
        assert_int_equal(signal_from_config_string("SIGUSR1"), SIGUSR1);
        assert_int_equal(signal_from_config_string("USR1"), SIGUSR1);
        assert_int_equal(signal_from_config_string("SIGTERM"), SIGTERM);
        assert_int_equal(signal_from_config_string("none"), 0);
        assert_int_equal(signal_from_config_string("usr1"), -EINVAL);
        assert_int_equal(signal_from_config_string("SIG"), -EINVAL);
        assert_int_equal(signal_from_config_string(""), -EINVAL);
        assert_int_equal(signal_from_config_string(NULL), -EINVAL);
        assert_string_equal(signal_to_config_string(SIGUSR2), "SIGUSR2");
        assert_string_equal(signal_to_config_string(0), "none");
        assert_null(signal_to_config_string(SIGRTMIN + 3));
}

static void test_enums(void **state) {
        for (int i = 0; i < _CLOUD_PROVIDER_MAX; i++)
                assert_int_equal(cloud_provider_from_string(cloud_provider_to_string(i)), i);
        for (int i = 0; i < _TASK_RUNTIME_MAX; i++)
                assert_int_equal(task_runtime_from_string(task_runtime_to_string(i)), i);
        assert_string_equal(network_mode_to_string(NETWORK_MODE_HOST), "host");
        assert_int_equal(pull_policy_from_string("never"), PULL_POLICY_NEVER);
        assert_int_equal(on_complete_from_string("none"), ON_COMPLETE_NONE);
        assert_int_equal(on_failure_from_string("poweroff"), ON_FAILURE_POWEROFF);
        assert_int_equal(on_failure_from_string("reboot"), _ON_FAILURE_INVALID);
        assert_null(task_runtime_to_string(_TASK_RUNTIME_INVALID));
        assert_null(cloud_provider_to_string(_CLOUD_PROVIDER_MAX));
}

static void assert_url_ok(const char *url) {
        _cleanup_free_ char *problem = NULL;

        if (config_storage_url_check(url, &problem) < 0)
                fail_msg("%s: %s", url, problem);
}

static void test_schema_helpers(void **state) {
        char q[CONFIG_QUOTE_MAX];
        char *n = NULL;

        assert_url_ok("s3://my-bucket");
        assert_url_ok("s3://my.bucket.example/a/b/");
        assert_url_ok("gs://bucket_1/prefix");
        assert_url_ok("az://devstoreaccount1/checkpoints");
        assert_url_ok("az://acct/con-tainer/a/b");
        assert_url_ok("file:///var/lib/trainsupd/store");

        assert_true(config_http_url_is_valid("http://[::1]:8080", true));
        assert_true(config_http_url_is_valid("https://metadata.google.internal/", true));
        assert_false(config_http_url_is_valid("http://host:0", true));
        assert_false(config_http_url_is_valid("http://host:65536", true));
        assert_false(config_http_url_is_valid("http://user@host", false));
        assert_true(config_http_url_is_valid("https://minio.local:9000/s3", false));

        assert_true(config_user_is_valid("1000"));
        assert_true(config_user_is_valid("0:0"));
        assert_true(config_user_is_valid("_apt"));
        assert_false(config_user_is_valid("4294967295"));
        assert_false(config_user_is_valid("1000:"));
        assert_false(config_user_is_valid("-x"));

        assert_int_equal(config_path_normalize("//a/./b//c/", &n), 0);
        assert_string_equal(n, "/a/b/c");
        free(n);
        assert_true(config_path_is_inside("/a/b", "/a"));
        assert_false(config_path_is_inside("/ab", "/a"));
        assert_null(config_path_check("/a/..b/c...", false));

        assert_string_equal(config_quote("a\"b\n", q), "\"a\\\"b\\x0a\"");
        assert_string_equal(
                config_quote("0123456789012345678901234567890123456789012345678901234567890123456789", q),
                "\"0123456789012345678901234567890123456789012345678901234567890123...\"");
}

int main(void) {
        static const struct CMUnitTest fixed[] = {
                cmocka_unit_test(test_nesting_too_deep),
                cmocka_unit_test(test_too_many_tasks),
                cmocka_unit_test(test_embedded_nul),
                cmocka_unit_test(test_minimal_defaults),
                cmocka_unit_test(test_state_dir),
                cmocka_unit_test(test_nullable_keys),
                cmocka_unit_test(test_gpus),
                cmocka_unit_test(test_full_tasks),
                cmocka_unit_test(test_full_sections),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_show_order),
                cmocka_unit_test(test_load_missing_file),
                cmocka_unit_test(test_load_directory),
                cmocka_unit_test(test_load_too_large),
                cmocka_unit_test(test_load_syntax_error),
                cmocka_unit_test(test_example_validates),
                cmocka_unit_test(test_signals),
                cmocka_unit_test(test_enums),
                cmocka_unit_test(test_schema_helpers),
        };
        struct CMUnitTest tests[ELEMENTSOF(bad_cases) + ELEMENTSOF(fixed)];
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(bad_cases); i++)
                tests[n++] = (struct CMUnitTest) {
                        .name = bad_cases[i].name,
                        .test_func = test_bad,
                        .initial_state = (void *) &bad_cases[i],
                };
        for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
                tests[n++] = fixed[i];
        return _cmocka_run_group_tests("config", tests, n, NULL, NULL);
}
