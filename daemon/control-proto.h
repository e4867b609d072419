/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>
#include <stddef.h>

#include "macro.h"

/* The control protocol: NUL-terminated JSON messages on a unix stream socket, in the style of
 * Varlink. A request is {"method":"io.trainsupd.Status","parameters":{...}}; a reply is
 * {"version":1,"parameters":{...}} or {"version":1,"error":"io.trainsupd.X","message":"..."}. */

#define CONTROL_PROTOCOL_VERSION 1
#define CONTROL_MESSAGE_MAX (64U * 1024U)

#define CONTROL_METHOD_STATUS "io.trainsupd.Status"
#define CONTROL_METHOD_CHECKPOINT "io.trainsupd.Checkpoint"
#define CONTROL_METHOD_STOP "io.trainsupd.Stop"

#define CONTROL_ERROR_INVALID_REQUEST "io.trainsupd.InvalidRequest"
#define CONTROL_ERROR_METHOD_NOT_FOUND "io.trainsupd.MethodNotFound"
#define CONTROL_ERROR_PERMISSION_DENIED "io.trainsupd.PermissionDenied"
#define CONTROL_ERROR_TOO_MANY_CLIENTS "io.trainsupd.TooManyClients"
#define CONTROL_ERROR_NOT_AVAILABLE "io.trainsupd.NotAvailable"
#define CONTROL_ERROR_FAILED "io.trainsupd.Failed"

#include "json-util.h"

/* Accumulates bytes from the socket and splits them into messages. */
typedef struct ControlBuffer {
        char *data;
        size_t len;
} ControlBuffer;

void control_buffer_done(ControlBuffer *b);
/* -EMSGSIZE once more than CONTROL_MESSAGE_MAX bytes are pending without a terminating NUL. */
int control_buffer_feed(ControlBuffer *b, const void *p, size_t n);
/* 1 and *ret (owned) when a whole message is there, 0 when none is. */
int control_buffer_next(ControlBuffer *b, char **ret);

/* -EBADMSG for anything but an object with a string "method" and an optional object "parameters". */
int control_request_parse(const char *msg, char **ret_method, cJSON **ret_parameters);
/* The message including its terminating NUL; *ret_len counts the NUL. parameters is borrowed. */
int control_request_format(const char *method, const cJSON *parameters, char **ret, size_t *ret_len);
int control_reply_format(const cJSON *parameters, const char *error, const char *message, char **ret,
                         size_t *ret_len);
/* -EPROTO on a version other than ours, -EBADMSG on garbage. On an error reply *ret_error is set. */
int control_reply_parse(const char *msg, cJSON **ret_parameters, char **ret_error, char **ret_message);
