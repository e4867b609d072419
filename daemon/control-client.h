/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>

#include "time-util.h"

/* The client side of the control socket, used by `trainsupd status|checkpoint|stop`. Blocking:
 * it runs in the CLI, never in the daemon. -ENOENT/-ECONNREFUSED: no daemon is listening.
 * On an error reply returns -EREMOTEIO with *ret_error and *ret_message set. */
int control_call(const char *path, const char *method, const cJSON *parameters, usec_t timeout,
                 cJSON **ret_parameters, char **ret_error, char **ret_message);
