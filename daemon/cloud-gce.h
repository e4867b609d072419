/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cloud.h"

/* Google Compute Engine: two long-poll loops on the metadata server (shared/reference/
 * cloud-apis.md A2), each "first a plain GET, then ?wait_for_change=true&last_etag=..." and
 * re-issued as soon as an answer arrives:
 *
 *   channel "preempted"          instance/preempted           TRUE → imminent NOTICE_PREEMPT
 *                                                              "gce-preempted", deadline = received + 30 s
 *   channel "maintenance-event"  instance/maintenance-event   NONE → no notice
 *       MIGRATE_ON_HOST_MAINTENANCE   → advisory NOTICE_MAINTENANCE "gce-maintenance-migrate" (live
 *                                       migration: the VM keeps running), no deadline
 *       TERMINATE_ON_HOST_MAINTENANCE → imminent NOTICE_MAINTENANCE "gce-maintenance-terminate",
 *       SHUTDOWN_ON_HOST_MAINTENANCE  → imminent NOTICE_MAINTENANCE "gce-maintenance-shutdown",
 *                                       deadline = received + 60 s (the documented minimum notice;
 *                                       GPU VMs get up to 60 min, which the value does not say)
 *       any other well-formed value   → advisory NOTICE_MAINTENANCE "gce-maintenance-<value>"
 *
 * When the value goes back (FALSE, NONE, or another maintenance value) the notice vanishes and
 * cloud_watch_update() logs it withdrawn. Every request carries "Metadata-Flavor: Google" and
 * every answer must carry it back: a 200 without it is not the metadata server (-EPROTO). */

extern const CloudProviderVTable cloud_gce;

#define GCE_PREEMPT_GRACE_USEC (30 * USEC_PER_SEC)      /* ACPI soft-off, then 30 s to power-off */
#define GCE_TERMINATE_NOTICE_USEC (60 * USEC_PER_SEC)   /* minimum maintenance notice */
#define GCE_WAIT_TIMEOUT_SEC 60U                         /* timeout_sec of each long-poll */
#define GCE_WAIT_MARGIN_USEC (10 * USEC_PER_SEC)         /* the request's own timeout on top */
#define GCE_VALUE_MAX 64                                 /* longest plain value we accept */

typedef enum GceMaintenanceEvent {
        GCE_MAINTENANCE_NONE,
        GCE_MAINTENANCE_MIGRATE,
        GCE_MAINTENANCE_TERMINATE,
        GCE_MAINTENANCE_SHUTDOWN,
        GCE_MAINTENANCE_OTHER,  /* a well-formed value we do not know: reported as advisory */
        _GCE_MAINTENANCE_MAX,
        _GCE_MAINTENANCE_INVALID = -EINVAL,
} GceMaintenanceEvent;

/* ---- pure parsers: no logging, no I/O; -EBADMSG for garbage ---- */

/* A plain metadata value: surrounding white space (a trailing newline) is dropped; empty,
 * over-long (> GCE_VALUE_MAX), NUL-containing or non-printable bodies are -EBADMSG.
 * buf gets the value, NUL-terminated. */
int gce_parse_value(const char *body, size_t len, char buf[static GCE_VALUE_MAX + 1]);

/* "TRUE" / "FALSE" (case-insensitive). */
int gce_parse_preempted(const char *body, size_t len, bool *ret);

/* NONE, MIGRATE_ON_HOST_MAINTENANCE, ...; a value made of [A-Za-z0-9_] that we do not know is
 * GCE_MAINTENANCE_OTHER; anything else is -EBADMSG. ret_value: NULL, or GCE_VALUE_MAX + 1 bytes
 * that get the value. */
int gce_parse_maintenance_event(const char *body, size_t len, GceMaintenanceEvent *ret, char *ret_value);

/* The notice a channel's answer stands for: 1 and *ret filled in, 0 when there is none
 * (FALSE / NONE), or a negative errno. now: CLOCK_REALTIME, the deadline's base. */
int gce_preempted_notice(const char *body, size_t len, usec_t now, Notice *ret);
int gce_maintenance_notice(const char *body, size_t len, usec_t now, Notice *ret);

/* Percent-encodes everything but RFC 3986's unreserved characters. */

/* path + "?wait_for_change=true&last_etag=<escaped etag>&timeout_sec=N" */
int gce_wait_path(const char *path, const char *etag, unsigned timeout_sec, char **ret);

/* {"access_token": "...", "expires_in": N, "token_type": "Bearer"}: the token (owned by the
 * caller, never to be logged) and its lifetime. */
int gce_parse_token(const char *body, size_t len, char **ret_token, usec_t *ret_expires_in);

/* Attribute keys are [A-Za-z0-9_-]{1,128}. */
bool gce_attribute_key_valid(const char *key);

/* ---- one-shot reads for later users (the storage issue) ---- */

typedef struct GceFetch GceFetch;

/* access_token lives until the handler returns; never log it. The handler may free f. */
typedef void (*GceTokenHandler)(GceFetch *f, int error, const char *access_token, usec_t expires_in,
                                void *userdata);
/* value (NUL-terminated, len bytes) lives until f is freed. 404 = -ENOENT. */
typedef void (*GceValueHandler)(GceFetch *f, int error, const char *value, size_t len, void *userdata);

/* instance/service-accounts/default/token */
int gce_fetch_token(CloudWatch *w, GceTokenHandler handler, void *userdata, GceFetch **ret);
/* instance/attributes/KEY */
int gce_fetch_attribute(CloudWatch *w, const char *key, GceValueHandler handler, void *userdata,
                        GceFetch **ret);
/* Cancels a running fetch (the handler is then not called). Free fetches before the CurlGlue. */
GceFetch *gce_fetch_free(GceFetch *f);
DEFINE_CLEANUP_FUNC(GceFetch *, gce_fetch_free);
