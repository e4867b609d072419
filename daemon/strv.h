/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdarg.h>
#include <stddef.h>

#include "macro.h"

/* NULL-terminated arrays of owned strings. */
char **strv_free(char **l);
DEFINE_CLEANUP_FUNC(char **, strv_free);
#define _cleanup_strv_free_ _cleanup_(strv_freep)

size_t strv_length(char * const *l);
/* Takes ownership of value, also on failure. */
int strv_consume(char ***l, char *value);
int strv_extend(char ***l, const char *value);
int strv_extendf(char ***l, const char *format, ...) _printf_(2, 3);
char **strv_copy(char * const *l);
#define STRV_FOREACH(s, l) for (char * const *s = (l); s && *s; s++)
