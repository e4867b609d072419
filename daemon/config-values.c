/* SPDX-License-Identifier: MIT */
/* Checks of single config values: names, paths, URLs, storage URLs. Pure functions, used by the
 * schema walk in config-schema.c and exposed (config.h) for tests. Nothing here logs. */

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "strv.h"

static bool char_in(char c, const char *set) {
        return c != '\0' && strchr(set, c);
}

static bool is_lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c) {
        return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static bool is_control(unsigned char c) {
        return c < 0x20 || c == 0x7f;
}

/* Whether s[0..n) has 1 ≤ n ≤ max characters, each alphanumeric or in extra. */
static bool span_is(const char *s, size_t n, size_t max, bool lower_only, const char *extra) {
        if (n < 1 || n > max)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(lower_only ? is_lower_alnum(s[i]) : is_alnum(s[i])) && !char_in(s[i], extra))
                        return false;
        return true;
}

static bool string_is(const char *s, size_t max, bool lower_only, const char *extra) {
        return span_is(s, strlen(s), max, lower_only, extra);
}

const char *config_quote(const char *s, char buf[static CONFIG_QUOTE_MAX]) {
        size_t k = 0, n = strlen(s), cut = n;

        if (n > CONFIG_QUOTE_CHARS_MAX) {
                cut = CONFIG_QUOTE_CHARS_MAX;
                while (cut > 0 && ((unsigned char) s[cut] & 0xc0) == 0x80)
                        cut--; /* never split a UTF-8 sequence */
        }
        buf[k++] = '"';
        for (size_t i = 0; i < cut; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c == '"' || c == '\\') {
                        buf[k++] = '\\';
                        buf[k++] = (char) c;
                } else if (is_control(c)) {
                        k += (size_t) snprintf(buf + k, 5, "\\x%02x", c);
                } else
                        buf[k++] = (char) c;
        }
        if (cut < n) {
                memcpy(buf + k, "...", 3);
                k += 3;
        }
        buf[k++] = '"';
        buf[k] = '\0';
        return buf;
}

bool config_job_id_is_valid(const char *s) {
        return string_is(s, 63, false, "._-") && !streq(s, ".") && !streq(s, "..");
}

bool config_task_name_is_valid(const char *s) {
        return string_is(s, 32, true, "-");
}

static bool parse_id(const char *s, size_t n) {
        uint64_t v = 0;

        if (n < 1 || n > 10)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (!is_digit(s[i]))
                        return false;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        return v < UINT32_MAX; /* (uid_t) -1 is not a user */
}

bool config_user_is_valid(const char *s) {
        const char *colon;

        if (is_digit(s[0])) {
                colon = strchr(s, ':');
                if (!colon)
                        return parse_id(s, strlen(s));
                return parse_id(s, (size_t) (colon - s)) && parse_id(colon + 1, strlen(colon + 1));
        }
        return (s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')) &&
                string_is(s, 32, false, "_.-");
}

bool config_env_name_is_valid(const char *s) {
        if (isempty(s))
                return false;
        for (; *s; s++)
                if (*s == '=' || is_control((unsigned char) *s))
                        return false;
        return true;
}

bool config_gpu_device_id_is_valid(const char *s) {
        return string_is(s, 128, false, "._:-");
}

bool config_image_is_valid(const char *s) {
        return string_is(s, 512, false, "._:/@-");
}

bool config_region_is_valid(const char *s) {
        return string_is(s, 64, false, "._-");
}

/* Whether every component of p is empty or ".". */
static bool path_is_root(const char *p) {
        for (;;) {
                size_t l;

                p += strspn(p, "/");
                l = strcspn(p, "/");
                if (l == 0)
                        return true;
                if (l != 1 || p[0] != '.')
                        return false;
                p += l;
        }
}

const char *config_path_check(const char *p, bool allow_root) {
        if (!p || p[0] != '/')
                return "must be an absolute path";
        if (strlen(p) >= PATH_MAX)
                return "is too long";
        for (const char *c = p; *c; c++)
                if (is_control((unsigned char) *c))
                        return "must not contain control characters";
        for (const char *c = p; (c = strstr(c, "..")); c += 2)
                if (c[-1] == '/' && (c[2] == '/' || c[2] == '\0'))
                        return "must not contain \"..\" components";
        if (!allow_root && path_is_root(p))
                return "must not be the root directory";
        return NULL;
}

int config_path_normalize(const char *p, char **ret) {
        _cleanup_free_ char *n = NULL;
        size_t k = 0;

        n = malloc(strlen(p) + 2);
        if (!n)
                return -ENOMEM;
        for (const char *c = p; *c;) {
                size_t l;

                c += strspn(c, "/");
                l = strcspn(c, "/");
                if (l == 0 || (l == 1 && c[0] == '.')) {
                        c += l;
                        continue;
                }
                n[k++] = '/';
                memcpy(n + k, c, l);
                k += l;
                c += l;
        }
        if (k == 0)
                n[k++] = '/';
        n[k] = '\0';
        *ret = TAKE_PTR(n);
        return 0;
}

bool config_path_is_inside(const char *path, const char *dir) {
        size_t l = strlen(dir);

        if (streq(dir, "/"))
                return true;
        return strneq(path, dir, l) && (path[l] == '/' || path[l] == '\0');
}

/* host[:port] from s up to the first '/' or the end; returns the end, or NULL when malformed. */
static const char *parse_authority(const char *s) {
        const char *e = s;

        if (*e == '[') {
                e += 1 + strspn(e + 1, "0123456789abcdefABCDEF:.");
                if (*e != ']' || e == s + 1)
                        return NULL;
                e++;
        } else {
                e += strspn(e, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_");
                if (e == s)
                        return NULL;
        }
        if (*e == ':') {
                unsigned long port = 0;
                const char *d = ++e;

                for (; is_digit(*e) && e - d < 6; e++)
                        port = port * 10 + (unsigned long) (*e - '0');
                if (e == d || port < 1 || port > 65535)
                        return NULL;
        }
        return *e == '\0' || *e == '/' ? e : NULL;
}

bool config_http_url_is_valid(const char *s, bool base_only) {
        const char *e;

        if (strneq(s, "http://", 7))
                s += 7;
        else if (strneq(s, "https://", 8))
                s += 8;
        else
                return false;
        e = parse_authority(s);
        if (!e)
                return false;
        if (base_only)
                return streq(e, "") || streq(e, "/");
        for (; *e; e++)
                if (is_control((unsigned char) *e) || *e == ' ')
                        return false;
        return true;
}

static bool bucket_is_valid(const char *s, size_t n, const char *extra) {
        return span_is(s, n, 63, true, extra) && n >= 3 && is_lower_alnum(s[0]) &&
                is_lower_alnum(s[n - 1]);
}

static bool az_container_is_valid(const char *s, size_t n) {
        for (size_t i = 1; i < n; i++)
                if (s[i] == '-' && s[i - 1] == '-')
                        return false;
        return bucket_is_valid(s, n, "-");
}

/* The part after the bucket or container: empty, or '/' and path components (a trailing '/' is
 * fine, empty, "." and ".." components are not). */
static bool prefix_is_valid(const char *s) {
        if (*s == '\0')
                return true;
        if (*s != '/')
                return false;
        for (s++; *s;) {
                size_t l = strcspn(s, "/");

                if (l == 0 || (l == 1 && s[0] == '.') || (l == 2 && strneq(s, "..", 2)))
                        return false;
                for (size_t i = 0; i < l; i++)
                        if (is_control((unsigned char) s[i]) || s[i] == '\\')
                                return false;
                s += l;
                if (*s == '/')
                        s++;
        }
        return true;
}

static int url_problem(char **ret_problem, const char *fmt, ...) _printf_(2, 3);
static int url_problem(char **ret_problem, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(ret_problem, fmt, ap);
        va_end(ap);
        if (r < 0) {
                *ret_problem = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

static int check_bucket_url(const char *rest, const char *scheme, const char *extra, char **ret_problem) {
        char q[CONFIG_QUOTE_MAX];
        _cleanup_free_ char *bucket = NULL;
        size_t n = strcspn(rest, "/");

        if (n == 0)
                return url_problem(ret_problem, "must be %s://bucket[/prefix]", scheme);
        bucket = strndup(rest, n);
        if (!bucket)
                return -ENOMEM;
        if (!bucket_is_valid(rest, n, extra))
                return url_problem(ret_problem, "invalid bucket name %s", config_quote(bucket, q));
        if (!prefix_is_valid(rest + n))
                return url_problem(ret_problem, "invalid prefix %s", config_quote(rest + n, q));
        return 0;
}

static int check_az_url(const char *rest, char **ret_problem) {
        char q[CONFIG_QUOTE_MAX];
        _cleanup_free_ char *account = NULL, *container = NULL;
        size_t n = strcspn(rest, "/"), m = 0;

        if (rest[n] == '/')
                m = strcspn(rest + n + 1, "/");
        if (n == 0 || m == 0)
                return url_problem(ret_problem, "must be az://account/container[/prefix]");
        account = strndup(rest, n);
        container = strndup(rest + n + 1, m);
        if (!account || !container)
                return -ENOMEM;
        if (!span_is(rest, n, 24, true, "") || n < 3)
                return url_problem(ret_problem, "invalid storage account name %s", config_quote(account, q));
        if (!az_container_is_valid(container, m))
                return url_problem(ret_problem, "invalid container name %s", config_quote(container, q));
        if (!prefix_is_valid(rest + n + 1 + m))
                return url_problem(ret_problem, "invalid prefix %s", config_quote(rest + n + 1 + m, q));
        return 0;
}

int config_storage_url_check(const char *url, char **ret_problem) {
        char q[CONFIG_QUOTE_MAX];
        _cleanup_free_ char *scheme = NULL;
        const char *sep = strstr(url, "://"), *p;

        if (!sep || sep == url)
                return url_problem(ret_problem, "must be a URL: s3://, gs://, az:// or file://");
        if (strneq(url, "s3://", 5))
                return check_bucket_url(url + 5, "s3", ".-", ret_problem);
        if (strneq(url, "gs://", 5))
                return check_bucket_url(url + 5, "gs", "._-", ret_problem);
        if (strneq(url, "az://", 5))
                return check_az_url(url + 5, ret_problem);
        if (strneq(url, "file://", 7)) {
                if (url[7] != '/')
                        return url_problem(ret_problem, "must be file:///absolute/path");
                p = config_path_check(url + 7, false);
                return p ? url_problem(ret_problem, "%s", p) : 0;
        }
        scheme = strndup(url, (size_t) (sep - url));
        if (!scheme)
                return -ENOMEM;
        return url_problem(ret_problem, "unsupported scheme %s", config_quote(scheme, q));
}

const char *config_storage_url_file_path(const char *url) {
        return url && strneq(url, "file://", 7) ? url + 7 : NULL;
}
