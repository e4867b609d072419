/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cloud.h"
#include "cloud-imds.h"

/* AWS EC2 instance metadata, IMDSv2 only: every GET carries a session token obtained with
 * PUT /latest/api/token; a GET without one is never sent, so IMDSv1 is never used.
 *
 * Channels (for cloud_watch_update/cloud_watch_condition):
 *   "spot"        meta-data/spot/instance-action: one imminent spot-interruption notice, id
 *                 AWS_SPOT_NOTICE_ID, deadline = "time" (the first one seen counts);
 *   "rebalance"   meta-data/events/recommendations/rebalance: one advisory rebalance notice, id
 *                 AWS_REBALANCE_NOTICE_ID, no deadline;
 *   "maintenance" meta-data/events/maintenance/scheduled: one advisory maintenance notice per
 *                 "active" event, id = EventId, deadline = NotBefore. Always advisory, whatever the
 *                 Code (instance-stop, instance-retirement, system-reboot...) and however near
 *                 NotBefore is: a scheduled event is announced days ahead, the deadline travels
 *                 with the notice, and when to act on it is the lifecycle's decision;
 *   "token"       the session token PUT;
 *   "identity"    dynamic/instance-identity/document, read once at start (region, instance id).
 * Poll errors keep the notices already seen; a 404 on spot/rebalance (and maintenance) = none. */

#define AWS_SPOT_NOTICE_ID "aws-spot-instance-action"
#define AWS_REBALANCE_NOTICE_ID "aws-rebalance"

#define AWS_PATH_SPOT "/latest/meta-data/spot/instance-action"
#define AWS_PATH_REBALANCE "/latest/meta-data/events/recommendations/rebalance"
#define AWS_PATH_MAINTENANCE "/latest/meta-data/events/maintenance/scheduled"
#define AWS_PATH_IDENTITY "/latest/dynamic/instance-identity/document"
#define AWS_PATH_ROLES "/latest/meta-data/iam/security-credentials/"

/* At most this many entries in the scheduled-events array (more: -EFBIG). */
#define AWS_SCHEDULED_EVENTS_MAX 32
/* Longest time string accepted (more: -EFBIG). */
#define AWS_TIME_STRING_MAX 64

/* ---- pure parsers: no I/O, no logging. body need not be NUL-terminated. Errors: -EBADMSG for
 * garbage, truncated JSON, a missing field or a wrong JSON type; -EFBIG for values beyond the
 * limits above. Output parameters are untouched on failure. ---- */

typedef enum AwsSpotAction {
        AWS_SPOT_TERMINATE,
        AWS_SPOT_STOP,
        AWS_SPOT_HIBERNATE,
        AWS_SPOT_OTHER,         /* an action AWS may add later: still an interruption */
        _AWS_SPOT_ACTION_MAX,
        _AWS_SPOT_ACTION_INVALID = -EINVAL,
} AwsSpotAction;

const char *aws_spot_action_to_string(AwsSpotAction a);
AwsSpotAction aws_spot_action_from_string(const char *s);

typedef struct AwsInstanceAction {
        AwsSpotAction action;
        char action_name[32];   /* as sent, for the summary */
        usec_t time;            /* CLOCK_REALTIME */
} AwsInstanceAction;

/* {"action":"terminate|stop|hibernate","time":"2026-11-23T15:55:36Z"} (fraction optional). An
 * unknown action that is a plain lower-case word is accepted as AWS_SPOT_OTHER. */
int aws_parse_instance_action(const char *body, size_t len, AwsInstanceAction *ret);
/* {"noticeTime":"2020-10-27T08:22:00Z"} */
int aws_parse_rebalance(const char *body, size_t len, usec_t *ret_notice_time);

typedef enum AwsEventState {
        AWS_EVENT_ACTIVE,
        AWS_EVENT_COMPLETED,
        AWS_EVENT_CANCELED,
        AWS_EVENT_OTHER,
        _AWS_EVENT_STATE_MAX,
        _AWS_EVENT_STATE_INVALID = -EINVAL,
} AwsEventState;

typedef struct AwsScheduledEvent {
        char event_id[NOTICE_ID_MAX];
        char code[48];
        AwsEventState state;
        char description[NOTICE_SUMMARY_MAX]; /* shortened */
        usec_t not_before;                    /* USEC_INFINITY when absent or blank */
        usec_t not_after;
        usec_t not_before_deadline;
} AwsScheduledEvent;

/* A JSON array of {Code, Description, EventId, NotBefore, NotAfter, NotBeforeDeadline?, State};
 * times as "21 Jan 2019 09:00:43 GMT" (RFC 3339 is accepted too). EventId and State are required.
 * Stores up to max entries in ret_events; returns how many (0 for "[]" and for an empty body),
 * -EFBIG if there are more than max. */
int aws_parse_scheduled_events(const char *body, size_t len, size_t max, AwsScheduledEvent *ret_events);

typedef struct AwsIdentity {
        char region[64];
        char instance_id[64];
        char availability_zone[64];
        char account_id[32];
} AwsIdentity;

/* The identity document: region and instanceId required, availabilityZone and accountId optional. */
int aws_parse_identity(const char *body, size_t len, AwsIdentity *ret);

typedef struct AwsCredentials {
        char *access_key_id;
        char *secret_access_key;
        char *token;            /* NULL when none */
        usec_t expiration;      /* CLOCK_REALTIME; USEC_INFINITY when not given */
} AwsCredentials;

/* Wipes the secrets and frees them; the struct can be reused. */
void aws_credentials_done(AwsCredentials *c);

/* The listing of meta-data/iam/security-credentials/: the first role name. -ENOENT when empty,
 * -EBADMSG when it is not an IAM role name. */
int aws_parse_role_list(const char *body, size_t len, char **ret_role);
/* {Code, LastUpdated, Type, AccessKeyId, SecretAccessKey, Token, Expiration}; -ENOKEY when Code is
 * there and is not "Success". */
int aws_parse_credentials(const char *body, size_t len, AwsCredentials *ret);

/* Notices, as the watch announces them. */
void aws_instance_action_to_notice(const AwsInstanceAction *a, Notice *ret);
void aws_rebalance_to_notice(usec_t notice_time, Notice *ret);
/* false: not a notice (the event is not active). */
bool aws_scheduled_event_to_notice(const AwsScheduledEvent *e, Notice *ret);

/* ---- the provider ---- */

typedef void (*AwsCredentialsDone)(CloudWatch *w, int error, const AwsCredentials *c, void *userdata);

/* Reads the instance role's credentials asynchronously (role listing, then the role). done gets
 * 0 and the credentials (borrowed for the call: copy what you keep), or a negative errno: -ENOENT
 * no role attached, -ENOKEY the role's Code is not Success, -EACCES/-EIO/-ETIMEDOUT..., -EBADMSG.
 * It is not called once the watch stops or after cloud_aws_cancel_credentials(); it must not free
 * the watch. -EOPNOTSUPP if w is not an AWS watch, -ENOTCONN if it is not started. Secrets are
 * never logged. */
int cloud_aws_fetch_credentials(CloudWatch *w, AwsCredentialsDone done, void *userdata);
/* Forgets pending fetches with this userdata (their done is never called). */
void cloud_aws_cancel_credentials(CloudWatch *w, void *userdata);
/* From the identity document; NULL until it was read (or if w is not an AWS watch). */
const char *cloud_aws_region(CloudWatch *w);
const char *cloud_aws_instance_id(CloudWatch *w);

