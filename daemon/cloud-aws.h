/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cloud.h"
#include "json-util.h"

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
 * Stores up to max entries; returns how many (0 for "[]"), -EFBIG if there are more than max. */
int aws_parse_scheduled_events(const char *body, size_t len, AwsScheduledEvent *events, size_t max);

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

/* ---- IMDS session tokens and polling, shared with cloud-alibaba.c (Alibaba's hardened mode
 * copies IMDSv2's scheme). ---- */

#define IMDS_TOKEN_PATH "/latest/api/token"
#define IMDS_TOKEN_TTL_SEC 21600U
/* A token is replaced when it has less than this left (or half its life, if that is shorter). */
#define IMDS_TOKEN_REFRESH_USEC (60 * USEC_PER_SEC)
#define IMDS_TOKEN_MAX 1024

typedef struct ImdsTokenScheme {
        const char *ttl_header;   /* sent with the PUT, e.g. "X-aws-ec2-metadata-token-ttl-seconds" */
        const char *token_header; /* sent with every GET, e.g. "X-aws-ec2-metadata-token" */
} ImdsTokenScheme;

/* The token PUT's body: trimmed, printable, no spaces. -EBADMSG / -EFBIG. */
int imds_parse_token(const char *body, size_t len, char **ret);
/* The TTL header echoed by the PUT (seconds, 1..21600). -EBADMSG. */
int imds_parse_ttl(const char *value, unsigned *ret);

typedef struct ImdsSession ImdsSession;
typedef struct ImdsGet ImdsGet;

/* error: 0 for a 2xx or accepted answer, else a negative errno. req: the answer (may be freed in
 * the callback with the ImdsGet), or NULL when no request reached the server: the session has no
 * token (a fail_fast get; the "token" channel reports why) or the request could not be sent. */
typedef void (*ImdsGetDone)(ImdsGet *g, int error, HttpRequest *req, void *userdata);

/* Owns the token: fetched on demand, refreshed before expiry, dropped on a 401 and fetched again
 * at once; on failure retried with cloud_watch_next_delay(), reported on channel "token". */
int imds_session_new(ImdsSession **ret, CloudWatch *w, const ImdsTokenScheme *scheme);
/* Free the gets first; gets still alive are detached (imds_get_start then says -ESTALE). */
ImdsSession *imds_session_free(ImdsSession *s);
DEFINE_CLEANUP_FUNC(ImdsSession *, imds_session_free);

/* A GET of path with the session's token. fail_fast: when the token fetch fails, complete with
 * its error instead of waiting for the next token attempt. */
int imds_get_new(ImdsGet **ret, ImdsSession *s, const char *path, bool fail_fast, ImdsGetDone done,
                 void *userdata);
void imds_get_set_accept_status(ImdsGet *g, long status);
/* Starts it (waiting for a token if needed). A 401 drops the token and retries once with a new one.
 * -EBUSY if it is already running. done is never called from within this call. */
int imds_get_start(ImdsGet *g);
bool imds_get_busy(const ImdsGet *g);
/* May be called from its own done callback. */
ImdsGet *imds_get_free(ImdsGet *g);
DEFINE_CLEANUP_FUNC(ImdsGet *, imds_get_free);

/* Parses an answer (2xx or accepted status) and reports it (cloud_watch_update). 0 or a negative
 * errno (the poller then reports the channel's condition and backs off). */
typedef int (*ImdsPollAnswer)(CloudWatch *w, const char *channel, long status, const char *body, size_t len,
                              void *userdata);

/* Polls path on channel every poll interval (or until the first success, once), never two at a
 * time; after failures backs off with cloud_watch_next_delay() and reports the channel's condition. */
typedef struct ImdsPoller ImdsPoller;

int imds_poller_new(ImdsPoller **ret, ImdsSession *s, const char *channel, const char *path, long accept_status,
                    bool once, ImdsPollAnswer answer, void *userdata);
/* First poll at once. */
int imds_poller_start(ImdsPoller *p);
ImdsPoller *imds_poller_free(ImdsPoller *p);
DEFINE_CLEANUP_FUNC(ImdsPoller *, imds_poller_free);
