/* SPDX-License-Identifier: MIT */
/* The value checks of the config schema (INTERFACE.md "Config file"), and a strict JSON syntax
 * scanner that locates the first syntax error precisely (cJSON's own error offset is only
 * approximate: a trailing comma, for instance, is reported at the end of the input).
 * Everything here is pure: no allocation except where a function says so, no logging. */

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

#define JSON_DEPTH_MAX 128U

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
        return r < 0 ? -ENOMEM : -EINVAL;
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
        if ((n == 4 && memcmp(j->s + start, "true", 4) == 0) || (n == 4 && memcmp(j->s + start, "null", 4) == 0) ||
            (n == 5 && memcmp(j->s + start, "false", 5) == 0))
                return 0;
        if (n <= 1) {
                j->pos = start;
                return scan_unexpected(j);
        }
        return scan_fail(j, start, "invalid literal \"%.*s%s\"", (int) MIN(n, 16U), (const char *) j->s + start,
                         n > 16 ? "..." : "");
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

int config_json_syntax_check(const char *text, size_t len, size_t *ret_offset, char *ret_desc, size_t desc_size) {
        JsonScan j = { .s = (const unsigned char *) text, .len = len, .desc = ret_desc, .desc_size = desc_size };
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

void config_text_position(const char *text, size_t len, size_t offset, unsigned *ret_line, unsigned *ret_column) {
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
