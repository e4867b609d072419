/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

#include "cloud.h"

/* Alibaba Cloud ECS metadata (100.100.100.200), in hardened mode: a session token from
 * PUT /latest/api/token (X-aliyun-ecs-metadata-token-ttl-seconds) goes with every GET as
 * X-aliyun-ecs-metadata-token; it is refreshed before expiry and fetched again at once on a 401.
 * The token machinery is the one AWS IMDSv2 uses (cloud-aws.h, ImdsSession).
 *
 * Channels: "spot" (meta-data/instance/spot/termination-time: one imminent spot-interruption
 * notice, id ALIBABA_SPOT_NOTICE_ID, deadline = the time given, the first one seen counts;
 * 404 or an empty body = none) and "token". */

#define ALIBABA_SPOT_NOTICE_ID "alibaba-spot-termination"
#define ALIBABA_PATH_SPOT "/latest/meta-data/instance/spot/termination-time"
/* Longest answer accepted as a time (more: -EFBIG). */
#define ALIBABA_TIME_STRING_MAX 64

/* Pure: the body of termination-time. 0 = no notice (empty or only whitespace), 1 = a notice at
 * *ret (ISO 8601 UTC, "2015-01-05T18:02:00Z", fraction optional); -EBADMSG for anything else,
 * -EFBIG when it is too long. *ret is untouched unless 1 is returned. */
int alibaba_parse_termination_time(const char *body, size_t len, usec_t *ret);

void alibaba_termination_to_notice(usec_t t, Notice *ret);
