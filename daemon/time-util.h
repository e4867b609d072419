/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef uint64_t usec_t;
#define USEC_INFINITY ((usec_t) UINT64_MAX)

usec_t now_usec(clockid_t clock);

/* "2026-11-23T16:00:00.123Z" (RFC 3339, UTC, milliseconds); buf needs RFC3339_MAX bytes. */
#define RFC3339_MAX 64
char *format_rfc3339(char buf[static RFC3339_MAX], usec_t realtime_usec);

/* Parses RFC 3339 / ISO 8601 UTC ("2026-11-23T16:00:00Z", optional fraction, "Z" or
 * "+00:00"-style offset) into µs since the epoch. -EINVAL on anything else. */
int parse_rfc3339(const char *s, usec_t *ret);
