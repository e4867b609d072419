/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cloud.h"

/* ---- IMDS session tokens and polling, shared with cloud-alibaba.c (Alibaba's hardened mode
 * copies IMDSv2's scheme). ---- */

#define IMDS_TOKEN_PATH "/latest/api/token"
#define IMDS_TOKEN_TTL_SEC 21600U
/* A token is replaced when it has less than this left (or half its life, if that is shorter). */
#define IMDS_TOKEN_REFRESH_USEC (60 * USEC_PER_SEC)
#define IMDS_TOKEN_MAX 1024

/* Printable ASCII without spaces: what may go into a header or a notice id. */
bool imds_string_is_token(const char *s, size_t n);

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
