/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cloud.h"

/* Azure Scheduled Events (shared/reference/cloud-apis.md A3): one channel, "scheduledevents",
 * GET /metadata/scheduledevents?api-version=2020-07-01 with "Metadata: true", no proxy, every poll
 * interval. Each event is one notice whose id is its EventId (so that acknowledge() gets it back):
 *
 *   Preempt   → imminent NOTICE_PREEMPT      Reboot   → advisory NOTICE_REBOOT
 *   Terminate → imminent NOTICE_TERMINATE    Redeploy → advisory NOTICE_REDEPLOY
 *                                            Freeze   → advisory NOTICE_FREEZE
 *   any other EventType → advisory NOTICE_MAINTENANCE (the summary names it)
 *
 * deadline = NotBefore (RFC 1123). NotBefore is blank once an event is Started; cloud_watch_update()
 * keeps the deadline of the first sighting. An imminent event first seen without a NotBefore gets
 * "now" when Started (it is happening) and now + the documented minimum notice when Scheduled
 * (Preempt 30 s, Terminate 5 min). Advisory events without NotBefore have no deadline.
 *
 * Requests of every kind (polls, acknowledgements) start at least AZURE_MIN_SPACING_USEC apart,
 * whatever cloud.poll_ms says, so trainsupd stays under IMDS's 5 requests/s. The first poll may
 * take up to 2 minutes (it enables the service) and gets a long timeout; later ones the short one. */

extern const CloudProviderVTable cloud_azure;

#define AZURE_SCHEDULED_EVENTS_PATH "/metadata/scheduledevents?api-version=2020-07-01"
#define AZURE_MIN_SPACING_USEC (250 * USEC_PER_MSEC)      /* ≤ 4 requests/s: room for jitter under 5/s */
#define AZURE_FIRST_CALL_TIMEOUT_USEC (120 * USEC_PER_SEC)
#define AZURE_PREEMPT_NOTICE_USEC (30 * USEC_PER_SEC)
#define AZURE_TERMINATE_NOTICE_USEC (300 * USEC_PER_SEC)
#define AZURE_EVENTS_MAX 256U
#define AZURE_ACK_ATTEMPTS 3U
#define AZURE_ACK_QUEUE_MAX 16U

/* ---- pure functions: no logging, no I/O; -EBADMSG for garbage or wrong JSON types ---- */

/* The whole Scheduled Events document. now: CLOCK_REALTIME (deadlines of events without
 * NotBefore). *ret_notices is NULL when there are no events; free() it. A missing or negative
 * DocumentIncarnation is -EBADMSG; one beyond 2^64 saturates (only its changes matter). */
int azure_parse_scheduled_events(const char *body, size_t len, usec_t now, uint64_t *ret_incarnation,
                                 Notice **ret_notices, size_t *ret_n_notices);

/* An EventId we are willing to send back: 1..NOTICE_ID_MAX-1 printable ASCII characters. */
bool azure_event_id_valid(const char *id);

/* {"StartRequests":[{"EventId":"<id>"}]} */
int azure_ack_body(const char *event_id, char **ret);

/* /metadata/identity/oauth2/token?api-version=2018-02-01&resource=<escaped>[&client_id=<escaped>] */
int azure_token_path(const char *resource, const char *client_id, char **ret);

/* {"access_token": "...", "expires_in": "3599", ...} (Azure sends the numbers as strings; plain
 * numbers are accepted too). The token is the caller's, never to be logged. */
int azure_parse_token(const char *body, size_t len, char **ret_token, usec_t *ret_expires_in);

/* ---- one-shot read for later users (the storage issue) ---- */

typedef struct AzureFetch AzureFetch;

/* access_token lives until the handler returns; never log it. The handler may free f. */
typedef void (*AzureTokenHandler)(AzureFetch *f, int error, const char *access_token, usec_t expires_in,
                                  void *userdata);

/* Managed identity token for resource (e.g. "https://storage.azure.com/"); client_id may be NULL. */
int azure_fetch_token(CloudWatch *w, const char *resource, const char *client_id, AzureTokenHandler handler,
                      void *userdata, AzureFetch **ret);
/* Cancels a running fetch (the handler is then not called). Free fetches before the CurlGlue. */
AzureFetch *azure_fetch_free(AzureFetch *f);
DEFINE_CLEANUP_FUNC(AzureFetch *, azure_fetch_free);
