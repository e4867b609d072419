/* SPDX-License-Identifier: MIT */
/* A small strict JSON reader for documents that may be hostile (snapshot manifests, completion
 * markers), and the schema helpers built on it. Unlike a cJSON tree it keeps integers exact, sees
 * repeated keys, refuses invalid UTF-8, "\u0000" and NUL bytes, bounds nesting (and so its own
 * recursion) at JSON_NESTING_MAX and builds nothing: the caller reads values straight into its own
 * structures. Every problem is kept as a message in *error (the first one only), naming the line
 * and column for syntax, the field ("files[3].parts[0].sha256") for the schema. */

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "json-strict.h"

int first_problem(char **error, int r, const char *fmt, ...) {
        va_list ap;
        char *m;
        int k;

        if (!error || *error)
                return r;
        va_start(ap, fmt);
        k = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        *error = m;
        return r;
}

/* ---- UTF-8 */

/* Length of the valid UTF-8 sequence at s (n ≥ 1 bytes available), 0 when there is none. */
static size_t utf8_sequence_len(const unsigned char *s, size_t n) {
        unsigned char lo = 0x80, hi = 0xbf;
        size_t len;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                len = 2;
        else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                len = 3;
                lo = s[0] == 0xe0 ? 0xa0 : 0x80;        /* overlong */
                hi = s[0] == 0xed ? 0x9f : 0xbf;        /* surrogates */
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                len = 4;
                lo = s[0] == 0xf0 ? 0x90 : 0x80;        /* overlong */
                hi = s[0] == 0xf4 ? 0x8f : 0xbf;        /* above U+10FFFF */
        } else
                return 0;
        if (n < len || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < len; i++)
                if (s[i] < 0x80 || s[i] > 0xbf)
                        return 0;
        return len;
}


/* Writes the UTF-8 form of cp (≤ U+10FFFF, no surrogate) to out (when not NULL); returns its length. */
static size_t utf8_encode(uint32_t cp, char *out) {
        char b[4];
        size_t n;

        if (cp < 0x80) {
                b[0] = (char) cp;
                n = 1;
        } else if (cp < 0x800) {
                b[0] = (char) (0xc0 | (cp >> 6));
                b[1] = (char) (0x80 | (cp & 0x3f));
                n = 2;
        } else if (cp < 0x10000) {
                b[0] = (char) (0xe0 | (cp >> 12));
                b[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                b[2] = (char) (0x80 | (cp & 0x3f));
                n = 3;
        } else {
                b[0] = (char) (0xf0 | (cp >> 18));
                b[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
                b[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
                b[3] = (char) (0x80 | (cp & 0x3f));
                n = 4;
        }
        if (out)
                memcpy(out, b, n);
        return n;
}

bool json_utf8_is_valid(const char *s, size_t n) {
        for (size_t i = 0, k; i < n; i += k) {
                k = utf8_sequence_len((const unsigned char *) s + i, n - i);
                if (k == 0)
                        return false;
        }
        return true;
}

/* ---- reading JSON (RFC 8259, strictly) */

static bool is_digit(int c) {
        return c >= '0' && c <= '9';
}

int json_syntax_error(JsonReader *j, const char *what) {
        const char *bol = j->begin;
        unsigned line = 1;

        for (const char *q = j->begin; q < j->p; q++)
                if (*q == '\n') {
                        line++;
                        bol = q + 1;
                }
        return first_problem(j->error, -EBADMSG, "%u:%zu: syntax error: %s", line, (size_t) (j->p - bol) + 1, what);
}

int json_unexpected(JsonReader *j, const char *expected) {
        char buf[64];

        if (j->p >= j->end)
                return json_syntax_error(j, "unexpected end of data");
        if (*j->p == '\0')
                return json_syntax_error(j, "NUL byte");
        (void) snprintf(buf, sizeof(buf), "expected %s", expected);
        return json_syntax_error(j, buf);
}

/* The next byte after white space, or -1 at the end. */
int json_peek(JsonReader *j) {
        while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
                j->p++;
        return j->p < j->end ? (unsigned char) *j->p : -1;
}

static bool json_hex4(const char *p, uint32_t *ret) {
        uint32_t v = 0;

        for (size_t i = 0; i < 4; i++) {
                char c = p[i];

                v <<= 4;
                if (is_digit(c))
                        v |= (uint32_t) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (uint32_t) (c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (uint32_t) (c - 'A' + 10);
                else
                        return false;
        }
        *ret = v;
        return true;
}

/* "\uXXXX" (and its low surrogate) at j->p; the code point's UTF-8 to out (may be NULL). */
static int json_read_unicode_escape(JsonReader *j, char *out, size_t *ret_len) {
        const char *p = j->p;
        uint32_t cp, lo;

        if (j->end - p < 6 || !json_hex4(p + 2, &cp))
                return json_syntax_error(j, "invalid \\u escape");
        if (cp == 0)
                return json_syntax_error(j, "\\u0000 escape (NUL character)");
        if (cp >= 0xdc00 && cp <= 0xdfff)
                return json_syntax_error(j, "unpaired surrogate in a \\u escape");
        p += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
                if (j->end - p < 6 || p[0] != '\\' || p[1] != 'u' || !json_hex4(p + 2, &lo) || lo < 0xdc00 ||
                    lo > 0xdfff)
                        return json_syntax_error(j, "unpaired surrogate in a \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
        }
        j->p = p;
        *ret_len = utf8_encode(cp, out);
        return 0;
}

static int json_read_escape(JsonReader *j, char *out, size_t *ret_len) {
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *k;

        if (j->end - j->p < 2)
                return json_syntax_error(j, "unterminated string");
        if (j->p[1] == 'u')
                return json_read_unicode_escape(j, out, ret_len);
        k = j->p[1] != '\0' ? strchr(from, j->p[1]) : NULL;
        if (!k)
                return json_syntax_error(j, "invalid escape");
        if (out)
                *out = to[k - from];
        *ret_len = 1;
        j->p += 2;
        return 0;
}

/* The string at j->p (a '"'), decoded into *ret when ret is not NULL. */
int json_read_string(JsonReader *j, char **ret) {
        _cleanup_free_ char *s = NULL;
        const char *q;
        size_t n = 0, k = 0;
        int r;

        assert(*j->p == '"');
        if (ret) {
                /* Decoding never makes a string longer: size the buffer by the raw bytes. */
                for (q = j->p + 1; q < j->end && *q != '"'; q++)
                        if (*q == '\\' && q + 1 < j->end)
                                q++;
                s = malloc((size_t) (q - j->p));
                if (!s)
                        return -ENOMEM;
        }
        for (j->p++;;) {
                unsigned char c;

                if (j->p >= j->end)
                        return json_syntax_error(j, "unterminated string");
                c = (unsigned char) *j->p;
                if (c == '"')
                        break;
                if (c == '\0')
                        return json_syntax_error(j, "NUL byte");
                if (c < 0x20)
                        return json_syntax_error(j, "control character in a string");
                if (c == '\\')
                        r = json_read_escape(j, s ? s + n : NULL, &k);
                else {
                        k = utf8_sequence_len((const unsigned char *) j->p, (size_t) (j->end - j->p));
                        r = k == 0 ? json_syntax_error(j, "invalid UTF-8") : 0;
                        if (r >= 0 && s)
                                memcpy(s + n, j->p, k);
                        j->p += k;
                }
                if (r < 0)
                        return r;
                n += k;
        }
        j->p++;
        if (ret) {
                s[n] = '\0';
                *ret = TAKE_PTR(s);
        }
        return 0;
}

static const char *json_skip_digits(const char *p, const char *end) {
        while (p < end && is_digit(*p))
                p++;
        return p;
}

int json_read_number(JsonReader *j, JsonNumber *ret) {
        JsonNumber n = { .text = j->p, .integer = true };
        const char *p = j->p;

        if (p < j->end && *p == '-') {
                n.negative = true;
                p++;
        }
        if (p >= j->end || !is_digit(*p))
                return json_unexpected(j, "a value");
        if (*p == '0' && p + 1 < j->end && is_digit(p[1])) {
                j->p = p;
                return json_syntax_error(j, "leading zero in a number");
        }
        for (; p < j->end && is_digit(*p); p++) {
                uint64_t d = (uint64_t) (*p - '0');

                if (n.value > (UINT64_MAX - d) / 10)
                        n.overflow = true;
                else
                        n.value = n.value * 10 + d;
        }
        if (p < j->end && *p == '.') {
                n.integer = false;
                if (p + 1 >= j->end || !is_digit(p[1])) {
                        j->p = p;
                        return json_syntax_error(j, "invalid number");
                }
                p = json_skip_digits(p + 1, j->end);
        }
        if (p < j->end && (*p == 'e' || *p == 'E')) {
                n.integer = false;
                p++;
                if (p < j->end && (*p == '+' || *p == '-'))
                        p++;
                if (p >= j->end || !is_digit(*p)) {
                        j->p = p;
                        return json_syntax_error(j, "invalid number");
                }
                p = json_skip_digits(p, j->end);
        }
        n.len = (size_t) (p - n.text);
        j->p = p;
        *ret = n;
        return 0;
}

int json_read_literal(JsonReader *j, const char *word) {
        size_t n = strlen(word);

        if ((size_t) (j->end - j->p) < n || memcmp(j->p, word, n) != 0)
                return json_unexpected(j, "a value");
        j->p += n;
        return 0;
}

/* After the '{' (consumed by the caller): 1 with the reader at a member's value (its name in *ret_key
 * when ret_key is not NULL), 0 past the closing '}'. */
int json_object_next(JsonReader *j, bool *first, char **ret_key) {
        int c = json_peek(j), r;

        if (c == '}') {
                j->p++;
                return 0;
        }
        if (!*first) {
                if (c != ',')
                        return json_unexpected(j, "',' or '}'");
                j->p++;
                c = json_peek(j);
        }
        if (c != '"')
                return json_unexpected(j, "a member name (a string)");
        *first = false;
        r = json_read_string(j, ret_key);
        if (r < 0)
                return r;
        if (json_peek(j) != ':')
                return json_unexpected(j, "':'");
        j->p++;
        (void) json_peek(j);
        return 1;
}

/* After the '[': 1 with the reader at an element, 0 past the closing ']'. */
int json_array_next(JsonReader *j, bool *first) {
        int c = json_peek(j);

        if (c == ']') {
                j->p++;
                return 0;
        }
        if (!*first) {
                if (c != ',')
                        return json_unexpected(j, "',' or ']'");
                j->p++;
                c = json_peek(j);
                if (c == ']')
                        return json_unexpected(j, "a value");
        }
        *first = false;
        return 1;
}

/* depth: the nesting of the container at j->p, the document's top level being 1. */
static int json_skip_container(JsonReader *j, unsigned depth) {
        bool object = *j->p == '{', first = true;
        int r;

        if (depth > JSON_NESTING_MAX)
                return json_syntax_error(j, "nested deeper than 32 levels");
        j->p++;
        for (;;) {
                r = object ? json_object_next(j, &first, NULL) : json_array_next(j, &first);
                if (r <= 0)
                        return r;
                r = json_skip_value(j, depth);
                if (r < 0)
                        return r;
        }
}

/* Checks and skips any value; depth is the nesting of the container holding it. */
int json_skip_value(JsonReader *j, unsigned depth) {
        JsonNumber n;

        switch (json_peek(j)) {
        case '{':
        case '[':
                return json_skip_container(j, depth + 1);
        case '"':
                return json_read_string(j, NULL);
        case 't':
                return json_read_literal(j, "true");
        case 'f':
                return json_read_literal(j, "false");
        case 'n':
                return json_read_literal(j, "null");
        default:
                return json_read_number(j, &n);
        }
}

/* ---- reading JSON against a schema: every problem names its field */

const char *json_label_key(char buf[static JSON_LABEL_MAX], const char *parent, const char *key) {
        static const char plain[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
        char q[CONFIG_QUOTE_MAX];
        size_t n = strlen(key);

        if (n > 0 && n <= 64 && strspn(key, plain) == n)
                (void) snprintf(buf, JSON_LABEL_MAX, "%s%s%s", parent, *parent ? "." : "", key);
        else
                (void) snprintf(buf, JSON_LABEL_MAX, "%s[%s]", parent, config_quote(key, q));
        return buf;
}

int json_schema_error(JsonReader *j, const char *label, const char *what) {
        return first_problem(j->error, -EBADMSG, "%s: %s", label, what);
}

int json_object_begin(JsonReader *j, const char *label) {
        if (json_peek(j) != '{')
                return json_schema_error(j, label, "must be an object");
        j->p++;
        return 0;
}

int json_array_begin(JsonReader *j, const char *label) {
        if (json_peek(j) != '[')
                return json_schema_error(j, label, "must be an array");
        j->p++;
        return 0;
}

/* One member of an object whose keys are keys[] (at most 32): 1 with its index in *ret_index and its
 * label in key_label, 0 at the end of the object. Unknown and repeated keys are problems. */
int json_read_member(JsonReader *j, const char *label, const char * const *keys, size_t n_keys, bool *first,
                       uint32_t *seen, size_t *ret_index, char key_label[static JSON_LABEL_MAX]) {
        _cleanup_free_ char *key = NULL;
        size_t i;
        int r;

        assert(n_keys <= 32);
        r = json_object_next(j, first, &key);
        if (r <= 0)
                return r;
        json_label_key(key_label, label, key);
        for (i = 0; i < n_keys; i++)
                if (streq(keys[i], key))
                        break;
        if (i == n_keys)
                return json_schema_error(j, key_label, "unknown key");
        if (*seen & (UINT32_C(1) << i))
                return json_schema_error(j, key_label, "duplicate key");
        *seen |= UINT32_C(1) << i;
        *ret_index = i;
        return 1;
}

/* The first of keys[] that required has and seen lacks, as "LABEL.KEY: required". */
int json_check_required(JsonReader *j, const char *label, const char * const *keys, size_t n_keys,
                          uint32_t required, uint32_t seen) {
        char kl[JSON_LABEL_MAX];

        for (size_t i = 0; i < n_keys; i++)
                if ((required & ~seen) & (UINT32_C(1) << i))
                        return json_schema_error(j, json_label_key(kl, label, keys[i]), "required");
        return 0;
}

int json_read_string_value(JsonReader *j, const char *label, char **ret) {
        if (json_peek(j) != '"')
                return json_schema_error(j, label, "must be a string");
        return json_read_string(j, ret);
}

int json_read_string_or_null(JsonReader *j, const char *label, char **ret) {
        if (json_peek(j) == 'n') {
                *ret = mfree(*ret);
                return json_read_literal(j, "null");
        }
        if (json_peek(j) != '"')
                return json_schema_error(j, label, "must be a string or null");
        return json_read_string(j, ret);
}

int json_read_uint_value(JsonReader *j, const char *label, uint64_t min, uint64_t max, uint64_t *ret) {
        JsonNumber n;
        int c = json_peek(j), r;

        if (c != '-' && !is_digit(c))
                return json_schema_error(j, label, "must be an integer");
        r = json_read_number(j, &n);
        if (r < 0)
                return r;
        if (!n.integer)
                return json_schema_error(j, label, "must be an integer");
        if (n.overflow || (n.negative && n.value != 0) || n.value < min || n.value > max)
                return first_problem(j->error, -EBADMSG, "%s: must be between %" PRIu64 " and %" PRIu64, label, min,
                               max);
        *ret = n.value;
        return 0;
}

/* "ext": an object reserved for extensions, skipped (its contents are any JSON). */
int json_read_ext(JsonReader *j, const char *label, unsigned depth) {
        if (json_peek(j) != '{')
                return json_schema_error(j, label, "must be an object");
        return json_skip_value(j, depth);
}
