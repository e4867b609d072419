/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>
#include <stddef.h>

#include "macro.h"

DEFINE_CLEANUP_FUNC(cJSON *, cJSON_Delete);

/* Parses a body that must be exactly one JSON value (white space around it allowed, no NUL).
 * NULL on anything else. */
cJSON *json_parse_exact(const char *body, size_t len);
