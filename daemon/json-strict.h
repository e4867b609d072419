/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* A strict JSON reader for hostile documents (json-strict.c). All functions return 0 (or 1, for
 * "one more member/element") or a negative errno, -EBADMSG for a bad document with the message
 * kept in *j->error. */

#define JSON_NESTING_MAX 32U    /* containers inside containers, the top level being 1 */
#define JSON_LABEL_MAX 320U     /* "files[123].parts[45].sha256" and quoted keys, cut if longer */

typedef struct JsonReader {
        const char *begin;
        const char *p;
        const char *end;
        char **error;           /* the first problem's message */
} JsonReader;

typedef struct JsonNumber {
        const char *text;
        size_t len;
        uint64_t value;         /* the magnitude of an integer */
        bool negative;
        bool integer;           /* no fraction, no exponent */
        bool overflow;          /* the magnitude does not fit in 64 bits */
} JsonNumber;

/* Keeps the message in *error unless one is there already (or error is NULL); returns r. */
int first_problem(char **error, int r, const char *fmt, ...) _printf_(3, 4);

/* Is s[0..n) valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF)? */
bool json_utf8_is_valid(const char *s, size_t n);

/* ---- syntax */
int json_syntax_error(JsonReader *j, const char *what);
int json_unexpected(JsonReader *j, const char *expected);
int json_peek(JsonReader *j);
int json_read_string(JsonReader *j, char **ret);
int json_read_number(JsonReader *j, JsonNumber *ret);
int json_read_literal(JsonReader *j, const char *word);
int json_object_next(JsonReader *j, bool *first, char **ret_key);
int json_array_next(JsonReader *j, bool *first);
int json_skip_value(JsonReader *j, unsigned depth);

/* ---- schema: every problem names its field (label) */
const char *json_label_key(char buf[static JSON_LABEL_MAX], const char *parent, const char *key);
int json_schema_error(JsonReader *j, const char *label, const char *what);
int json_object_begin(JsonReader *j, const char *label);
int json_array_begin(JsonReader *j, const char *label);
int json_read_member(JsonReader *j, const char *label, const char * const *keys, size_t n_keys, bool *first,
                     uint32_t *seen, size_t *ret_index, char key_label[static JSON_LABEL_MAX]);
int json_check_required(JsonReader *j, const char *label, const char * const *keys, size_t n_keys,
                        uint32_t required, uint32_t seen);
int json_read_string_value(JsonReader *j, const char *label, char **ret);
int json_read_string_or_null(JsonReader *j, const char *label, char **ret);
int json_read_uint_value(JsonReader *j, const char *label, uint64_t min, uint64_t max, uint64_t *ret);
int json_read_ext(JsonReader *j, const char *label, unsigned depth);
