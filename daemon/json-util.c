/* SPDX-License-Identifier: MIT */
#include "json-util.h"

static bool json_space(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

cJSON *json_parse_exact(const char *body, size_t len) {
        _cleanup_(cJSON_Deletep) cJSON *j = NULL;
        const char *end = NULL;

        if (!body || len == 0 || memchr(body, 0, len))
                return NULL;
        j = cJSON_ParseWithLengthOpts(body, len, &end, false);
        if (!j || !end)
                return NULL;
        for (; end < body + len; end++)
                if (!json_space(*end))
                        return NULL;
        return TAKE_PTR(j);
}
