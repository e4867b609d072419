/* SPDX-License-Identifier: MIT */
/* The config file (INTERFACE.md "Config file"): read, checked for JSON syntax, parsed with cJSON,
 * handed to the schema (config-schema.c), and printed back as the effective config. The syntax is
 * checked by a strict scanner of our own first, because cJSON's error offset is only approximate
 * (a trailing comma, for one, is reported at the end of the input). Nothing here logs. */

#include <assert.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "json-util.h"
#include "strv.h"

#define JSON_DEPTH_MAX 128U

static bool char_in(char c, const char *set) {
        return c != '\0' && strchr(set, c);
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static bool is_alnum(char c) {
        return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* ---- the Config object */

static void task_config_done(TaskConfig *t) {
        free(t->name);
        free(t->image);
        strv_free(t->command);
        strv_free(t->env);
        free(t->workdir);
        free(t->user);
        strv_free(t->gpu_ids);
        free(t->checkpoint_dir);
        free(t->mount_at);
        free(t->success_exit_codes);
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_tasks; i++)
                task_config_done(&c->tasks[i]);
        free(c->tasks);
        free(c->path);
        free(c->job_id);
        strv_free(c->exclude);
        free(c->storage_url);
        free(c->storage_endpoint);
        free(c->storage_region);
        free(c->storage_credentials_file);
        free(c->storage_ca_file);
        free(c->cloud_metadata_url);
        free(c->docker_socket);
        return mfree(c);
}

const TaskConfig *config_find_task(const Config *c, const char *name) {
        if (!name)
                return c->n_tasks == 1 ? &c->tasks[0] : NULL;
        for (size_t i = 0; i < c->n_tasks; i++)
                if (c->tasks[i].name && streq(c->tasks[i].name, name))
                        return &c->tasks[i];
        return NULL;
}

/* ---- JSON syntax (RFC 8259) */

typedef struct JsonScan {
        const unsigned char *s;
        size_t len, pos;
        char *desc;
        size_t desc_size;
} JsonScan;

static int scan_fail(JsonScan *j, size_t pos, const char *fmt, ...) _printf_(3, 4);
static int scan_fail(JsonScan *j, size_t pos, const char *fmt, ...) {
        va_list ap;

        j->pos = pos;
        va_start(ap, fmt);
        (void) vsnprintf(j->desc, j->desc_size, fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

/* Decodes one UTF-8 sequence (no overlongs, surrogates or values past U+10FFFF): its length, or 0. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *ret) {
        static const struct { unsigned char lo, hi; } second[] = {
                [0xe0 - 0xe0] = { 0xa0, 0xbf }, [0xed - 0xe0] = { 0x80, 0x9f },
                [0xf0 - 0xe0] = { 0x90, 0xbf }, [0xf4 - 0xe0] = { 0x80, 0x8f },
        };
        size_t l = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : s[0] >= 0xe0 && s[0] <= 0xef ? 3 :
                   s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : 0;
        uint32_t cp;

        if (l == 0 || l > n)
                return 0;
        cp = l == 1 ? s[0] : s[0] & (0x7f >> l);
        for (size_t i = 1; i < l; i++) {
                unsigned char lo = 0x80, hi = 0xbf;

                if (i == 1 && s[0] >= 0xe0 && second[s[0] - 0xe0].lo != 0) {
                        lo = second[s[0] - 0xe0].lo;
                        hi = second[s[0] - 0xe0].hi;
                }
                if (s[i] < lo || s[i] > hi)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        *ret = cp;
        return l;
}

static int scan_unexpected(JsonScan *j) {
        uint32_t cp;
        size_t l;

        if (j->pos >= j->len)
                return scan_fail(j, j->len, "unexpected end of input");
        if (j->s[j->pos] >= 0x20 && j->s[j->pos] < 0x7f)
                return scan_fail(j, j->pos, "unexpected character '%c'", j->s[j->pos]);
        l = utf8_decode(j->s + j->pos, j->len - j->pos, &cp);
        if (l > 1)
                return scan_fail(j, j->pos, "unexpected character U+%04X", (unsigned) cp);
        return scan_fail(j, j->pos, "unexpected byte 0x%02x", j->s[j->pos]);
}

static void scan_ws(JsonScan *j) {
        while (j->pos < j->len && char_in((char) j->s[j->pos], " \t\r\n"))
                j->pos++;
}

static bool scan_char(JsonScan *j, char c) {
        scan_ws(j);
        if (j->pos < j->len && j->s[j->pos] == (unsigned char) c) {
                j->pos++;
                return true;
        }
        return false;
}

static int scan_hex4(JsonScan *j, size_t at, uint32_t *ret) {
        uint32_t v = 0;

        for (size_t i = 0; i < 4; i++) {
                unsigned char c = at + i < j->len ? j->s[at + i] : 0;
                int d = is_digit((char) c) ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
                        c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                if (d < 0)
                        return -EBADMSG;
                v = v << 4 | (uint32_t) d;
        }
        *ret = v;
        return 0;
}

static int scan_escape(JsonScan *j) {
        size_t start = j->pos; /* at the backslash */
        uint32_t u, lo;

        if (start + 1 >= j->len)
                return scan_fail(j, j->len, "unexpected end of input");
        if (char_in((char) j->s[start + 1], "\"\\/bfnrt")) {
                j->pos += 2;
                return 0;
        }
        if (j->s[start + 1] != 'u')
                return scan_fail(j, start, "invalid escape '\\%c'",
                                 j->s[start + 1] >= 0x20 && j->s[start + 1] < 0x7f ? j->s[start + 1] : '?');
        if (scan_hex4(j, start + 2, &u) < 0)
                return scan_fail(j, start, "invalid \\u escape");
        if (u == 0)
                return scan_fail(j, start, "\\u0000 is not supported");
        j->pos += 6;
        if (u >= 0xdc00 && u <= 0xdfff)
                return scan_fail(j, start, "invalid \\u escape (unpaired surrogate)");
        if (u >= 0xd800 && u <= 0xdbff) {
                if (j->pos + 1 >= j->len || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u' ||
                    scan_hex4(j, j->pos + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                        return scan_fail(j, start, "invalid \\u escape (unpaired surrogate)");
                j->pos += 6;
        }
        return 0;
}

static int scan_string(JsonScan *j) {
        size_t start = j->pos; /* at the opening quote */
        uint32_t cp;

        for (j->pos++;;) {
                unsigned char c;
                size_t l;
                int r;

                if (j->pos >= j->len || j->s[j->pos] == '\n')
                        return scan_fail(j, start, "unterminated string");
                c = j->s[j->pos];
                if (c == '"') {
                        j->pos++;
                        return 0;
                }
                if (c == '\\') {
                        r = scan_escape(j);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (c < 0x20)
                        return scan_fail(j, j->pos, "control character in string");
                l = utf8_decode(j->s + j->pos, j->len - j->pos, &cp);
                if (l == 0)
                        return scan_fail(j, j->pos, "invalid UTF-8 in string");
                j->pos += l;
        }
}

static size_t scan_digits(JsonScan *j) {
        size_t start = j->pos;

        while (j->pos < j->len && is_digit((char) j->s[j->pos]))
                j->pos++;
        return j->pos - start;
}

static int scan_number(JsonScan *j) {
        if (j->s[j->pos] == '-')
                j->pos++;
        if (j->pos < j->len && j->s[j->pos] == '0')
                j->pos++;
        else if (scan_digits(j) == 0)
                return scan_unexpected(j);
        if (j->pos < j->len && j->s[j->pos] == '.') {
                j->pos++;
                if (scan_digits(j) == 0)
                        return scan_unexpected(j);
        }
        if (j->pos < j->len && (j->s[j->pos] == 'e' || j->s[j->pos] == 'E')) {
                j->pos++;
                if (j->pos < j->len && (j->s[j->pos] == '+' || j->s[j->pos] == '-'))
                        j->pos++;
                if (scan_digits(j) == 0)
                        return scan_unexpected(j);
        }
        return 0;
}

static int scan_word(JsonScan *j) {
        size_t start = j->pos, n;

        while (j->pos < j->len && (is_alnum((char) j->s[j->pos]) || j->s[j->pos] == '_'))
                j->pos++;
        n = j->pos - start;
        if ((n == 4 && memcmp(j->s + start, "true", 4) == 0) ||
            (n == 4 && memcmp(j->s + start, "null", 4) == 0) ||
            (n == 5 && memcmp(j->s + start, "false", 5) == 0))
                return 0;
        if (n <= 1) {
                j->pos = start;
                return scan_unexpected(j);
        }
        return scan_fail(j, start, "invalid literal \"%.*s%s\"", (int) MIN(n, 16U),
                         (const char *) j->s + start, n > 16 ? "..." : "");
}

static int scan_value(JsonScan *j, unsigned depth);

/* Object members or array elements, after the opening bracket. */
static int scan_container(JsonScan *j, char close, unsigned depth) {
        int r;

        if (scan_char(j, close))
                return 0;
        for (;;) {
                if (close == '}') {
                        scan_ws(j);
                        if (j->pos >= j->len || j->s[j->pos] != '"')
                                return scan_unexpected(j);
                        r = scan_string(j);
                        if (r < 0)
                                return r;
                        if (!scan_char(j, ':'))
                                return scan_unexpected(j);
                }
                r = scan_value(j, depth);
                if (r < 0)
                        return r;
                if (scan_char(j, close))
                        return 0;
                if (!scan_char(j, ','))
                        return scan_unexpected(j);
        }
}

static int scan_value(JsonScan *j, unsigned depth) {
        unsigned char c;

        scan_ws(j);
        if (j->pos >= j->len)
                return scan_unexpected(j);
        c = j->s[j->pos];
        if (c == '{' || c == '[') {
                if (depth >= JSON_DEPTH_MAX)
                        return scan_fail(j, j->pos, "nesting too deep");
                j->pos++;
                return scan_container(j, c == '{' ? '}' : ']', depth + 1);
        }
        if (c == '"')
                return scan_string(j);
        if (c == '-' || is_digit((char) c))
                return scan_number(j);
        return scan_word(j);
}

static int json_syntax_check(const char *text, size_t len, size_t *ret_offset, char *ret_desc,
                             size_t desc_size) {
        JsonScan j = {
                .s = (const unsigned char *) text,
                .len = len,
                .desc = ret_desc,
                .desc_size = desc_size,
        };
        int r;

        if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
                j.pos = 3; /* a UTF-8 byte order mark, as cJSON skips it */
        r = scan_value(&j, 0);
        if (r >= 0) {
                scan_ws(&j);
                if (j.pos < j.len)
                        r = scan_unexpected(&j);
        }
        if (r < 0)
                *ret_offset = j.pos;
        return r;
}

static void text_position(const char *text, size_t len, size_t offset, unsigned *ret_line,
                          unsigned *ret_column) {
        bool bom = len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0;
        unsigned line = 1, column = 1;

        for (size_t i = bom ? 3 : 0; i < offset && i < len; i++) {
                unsigned char c = (unsigned char) text[i];

                if (c == '\n') {
                        line++;
                        column = 1;
                } else if ((c & 0xc0) != 0x80)
                        column++; /* counts characters, not bytes; a leading BOM counts for nothing */
        }
        *ret_line = line;
        *ret_column = column;
}

/* ---- parsing */

/* The JSON tree, or NULL with the one syntax problem recorded. */
static int parse_json(const char *text, size_t len, const char *filename, cJSON **ret, char ***problems) {
        _cleanup_free_ char *buf = NULL;
        const char *end = NULL;
        char desc[96];
        unsigned line, column;
        size_t offset;
        cJSON *j;

        *ret = NULL;
        if (json_syntax_check(text, len, &offset, desc, sizeof(desc)) >= 0) {
                buf = malloc(len + 1);
                if (!buf)
                        return -ENOMEM;
                memcpy(buf, text, len);
                buf[len] = '\0';
                j = cJSON_ParseWithLengthOpts(buf, len + 1, &end, true);
                if (j) {
                        *ret = j;
                        return 0;
                }
                /* What the scanner accepts cJSON should too; if it still fails (lack of memory,
                 * most likely), say where it stopped rather than nothing. */
                offset = end && end >= buf && end <= buf + len ? (size_t) (end - buf) : 0;
                (void) snprintf(desc, sizeof(desc), "value not supported by the JSON parser");
        }
        text_position(text, len, offset, &line, &column);
        return strv_extendf(problems, "%s:%u:%u: syntax error: %s", filename ?: "<config>", line, column,
                            desc);
}

int config_parse(const char *text, size_t len, const char *filename, const char *state_dir,
                 Config **ret, char ***ret_problems) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        _cleanup_strv_free_ char **problems = NULL;
        int r;

        assert(text || len == 0);
        assert(ret);
        r = parse_json(text ?: "", len, filename, &root, &problems);
        if (r < 0)
                return r;
        if (root) {
                r = config_schema_parse(root, filename, state_dir, &c, &problems);
                if (r < 0)
                        return r;
        }
        if (problems) {
                if (ret_problems)
                        *ret_problems = TAKE_PTR(problems);
                return -EINVAL;
        }
        if (ret_problems)
                *ret_problems = NULL;
        *ret = TAKE_PTR(c);
        return 0;
}

static int read_file_limited(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, size = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        for (;;) {
                ssize_t n;

                if (len == size) {
                        char *b;

                        if (size > max)
                                return -EFBIG;
                        size = MIN(MAX(size * 2, (size_t) 4096), max + 1);
                        b = realloc(buf, size);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                }
                n = read(fd, buf + len, size - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        if (len > max)
                return -EFBIG;
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

int config_load(const char *path, const char *state_dir, Config **ret, char ***ret_problems) {
        _cleanup_strv_free_ char **problems = NULL;
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r, k;

        assert(path);
        r = read_file_limited(path, CONFIG_FILE_SIZE_MAX, &text, &len);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                if (r == -EFBIG)
                        k = strv_extendf(&problems, "%s: too large (more than %u MiB)", path,
                                         CONFIG_FILE_SIZE_MAX / 1024 / 1024);
                else
                        k = strv_extendf(&problems, "%s: cannot read: %s", path, strerror(-r));
                if (k < 0)
                        return k;
                if (ret_problems)
                        *ret_problems = TAKE_PTR(problems);
                return r;
        }
        return config_parse(text ?: "", len, path, state_dir, ret, ret_problems);
}

/* ---- printing */

static int json_add(cJSON *o, const char *key, cJSON *item) {
        if (!item)
                return -ENOMEM;
        if (!(key ? cJSON_AddItemToObject(o, key, item) : cJSON_AddItemToArray(o, item))) {
                cJSON_Delete(item);
                return -ENOMEM;
        }
        return 0;
}

/* A new empty object, already owned by parent; NULL on allocation failure. */
static cJSON *json_add_object(cJSON *parent, const char *key) {
        cJSON *o = cJSON_CreateObject();

        return json_add(parent, key, o) < 0 ? NULL : o;
}

static cJSON *json_string(const char *s) {
        return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static cJSON *json_strv(char * const *l) {
        cJSON *a = cJSON_CreateArray();

        STRV_FOREACH(s, l)
                if (!a || json_add(a, NULL, cJSON_CreateString(*s)) < 0) {
                        cJSON_Delete(a);
                        return NULL;
                }
        return a;
}

static cJSON *json_env(char * const *env) {
        cJSON *o = cJSON_CreateObject();

        STRV_FOREACH(e, env) {
                _cleanup_free_ char *k = strndup(*e, strcspn(*e, "="));
                const char *eq = strchr(*e, '=');

                if (!o || !k || json_add(o, k, cJSON_CreateString(eq ? eq + 1 : "")) < 0) {
                        cJSON_Delete(o);
                        return NULL;
                }
        }
        return o;
}

static cJSON *json_gpus(const TaskConfig *t) {
        switch (t->gpus) {
        case GPU_MODE_ALL:
                return cJSON_CreateString("all");
        case GPU_MODE_COUNT:
                return cJSON_CreateNumber(t->gpu_count);
        case GPU_MODE_IDS:
                return json_strv(t->gpu_ids);
        default:
                return cJSON_CreateNull();
        }
}

static cJSON *json_exit_codes(const TaskConfig *t) {
        return cJSON_CreateIntArray(t->success_exit_codes, (int) t->n_success_exit_codes);
}

static cJSON *json_restart(const TaskConfig *t) {
        cJSON *o = cJSON_CreateObject();

        if (!o || json_add(o, "max", cJSON_CreateNumber(t->restart_max)) < 0 ||
            json_add(o, "backoff_s", cJSON_CreateNumber(t->restart_backoff_s)) < 0 ||
            json_add(o, "backoff_max_s", cJSON_CreateNumber(t->restart_backoff_max_s)) < 0) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}

static int task_to_json(const TaskConfig *t, cJSON *tasks) {
        bool docker = t->runtime == TASK_RUNTIME_DOCKER;
        cJSON *o = json_add_object(tasks, NULL);

        if (!o || json_add(o, "name", json_string(t->name)) < 0 ||
            json_add(o, "runtime", json_string(task_runtime_to_string(t->runtime))) < 0 ||
            (docker && json_add(o, "image", json_string(t->image)) < 0) ||
            json_add(o, "command", t->command ? json_strv(t->command) : cJSON_CreateNull()) < 0 ||
            json_add(o, "env", json_env(t->env)) < 0 ||
            json_add(o, "workdir", json_string(t->workdir)) < 0 ||
            json_add(o, "user", json_string(t->user)) < 0 ||
            (docker && json_add(o, "gpus", json_gpus(t)) < 0) ||
            (docker && json_add(o, "network", json_string(network_mode_to_string(t->network))) < 0) ||
            (docker && json_add(o, "pull", json_string(pull_policy_to_string(t->pull))) < 0) ||
            json_add(o, "checkpoint_dir", json_string(t->checkpoint_dir)) < 0 ||
            (docker && json_add(o, "mount_at", json_string(t->mount_at)) < 0) ||
            json_add(o, "stop_grace_s", cJSON_CreateNumber(t->stop_grace_s)) < 0 ||
            json_add(o, "success_exit_codes", json_exit_codes(t)) < 0 ||
            json_add(o, "restart", json_restart(t)) < 0)
                return -ENOMEM;
        return 0;
}

static int sections_to_json(const Config *c, cJSON *root) {
        cJSON *ck, *st, *cl, *dk;

        if (!(ck = json_add_object(root, "checkpoint")) || !(st = json_add_object(root, "storage")) ||
            !(cl = json_add_object(root, "cloud")) || !(dk = json_add_object(root, "docker")))
                return -ENOMEM;
        if (json_add(ck, "signal", json_string(signal_to_config_string(c->checkpoint_signal))) < 0 ||
            json_add(ck, "settle_ms", cJSON_CreateNumber(c->settle_ms)) < 0 ||
            json_add(ck, "timeout_s", cJSON_CreateNumber(c->checkpoint_timeout_s)) < 0 ||
            json_add(ck, "exclude", json_strv(c->exclude)) < 0 ||
            json_add(st, "url", json_string(c->storage_url)) < 0 ||
            json_add(st, "endpoint", json_string(c->storage_endpoint)) < 0 ||
            json_add(st, "region", json_string(c->storage_region)) < 0 ||
            json_add(st, "keep", cJSON_CreateNumber(c->storage_keep)) < 0 ||
            json_add(st, "concurrency", cJSON_CreateNumber(c->storage_concurrency)) < 0 ||
            json_add(st, "part_size_mb", c->storage_part_size_mb > 0 ?
                     cJSON_CreateNumber(c->storage_part_size_mb) : cJSON_CreateNull()) < 0 ||
            json_add(st, "credentials_file", json_string(c->storage_credentials_file)) < 0 ||
            json_add(st, "ca_file", json_string(c->storage_ca_file)) < 0 ||
            json_add(cl, "provider", json_string(cloud_provider_to_string(c->cloud_provider))) < 0 ||
            json_add(cl, "poll_ms", cJSON_CreateNumber(c->cloud_poll_ms)) < 0 ||
            json_add(cl, "metadata_url", json_string(c->cloud_metadata_url)) < 0 ||
            json_add(cl, "acknowledge", cJSON_CreateBool(c->cloud_acknowledge)) < 0 ||
            json_add(dk, "socket", json_string(c->docker_socket)) < 0)
                return -ENOMEM;
        return 0;
}

int config_to_json_string(const Config *c, char **ret) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        cJSON *tasks;
        char *s;
        int r;

        assert(c);
        assert(ret);
        root = cJSON_CreateObject();
        if (!root || json_add(root, "job_id", json_string(c->job_id)) < 0)
                return -ENOMEM;
        tasks = cJSON_CreateArray();
        if (json_add(root, "tasks", tasks) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_tasks; i++) {
                r = task_to_json(&c->tasks[i], tasks);
                if (r < 0)
                        return r;
        }
        r = sections_to_json(c, root);
        if (r < 0)
                return r;
        if (json_add(root, "on_complete", json_string(on_complete_to_string(c->on_complete))) < 0 ||
            json_add(root, "on_failure", json_string(on_failure_to_string(c->on_failure))) < 0)
                return -ENOMEM;
        s = cJSON_Print(root);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}
