/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

#include "macro.h"

DEFINE_CLEANUP_FUNC(cJSON *, cJSON_Delete);
