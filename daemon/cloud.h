/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "curl-glue.h"
#include "http.h"
#include "time-util.h"

/* Watching a cloud's metadata service for eviction notices. Each provider (cloud-aws.c,
 * cloud-gce.c, cloud-azure.c, cloud-alibaba.c) sits behind one small vtable and reports what
 * it sees upward; this file turns those reports into one normalized notice stream: new notices
 * are announced once (EVENT=notice), vanished ones once (EVENT=notice-cancelled), and errors are
 * logged once per change of condition. */

typedef enum NoticeKind {
        NOTICE_SPOT_INTERRUPTION, /* AWS instance-action, Alibaba termination-time */
        NOTICE_REBALANCE,         /* AWS rebalance recommendation (advisory) */
        NOTICE_MAINTENANCE,       /* AWS scheduled event, GCE maintenance-event */
        NOTICE_PREEMPT,           /* GCE preempted, Azure Preempt */
        NOTICE_TERMINATE,         /* Azure Terminate */
        NOTICE_REBOOT,            /* Azure Reboot */
        NOTICE_REDEPLOY,          /* Azure Redeploy */
        NOTICE_FREEZE,            /* Azure Freeze */
        NOTICE_SHUTDOWN,          /* a system shutdown seen by the daemon itself */
        _NOTICE_KIND_MAX,
        _NOTICE_KIND_INVALID = -EINVAL,
} NoticeKind;

const char *notice_kind_to_string(NoticeKind k);
NoticeKind notice_kind_from_string(const char *s);

#define NOTICE_ID_MAX 128
#define NOTICE_SUMMARY_MAX 256

typedef struct Notice {
        CloudProvider provider;
        NoticeKind kind;
        char id[NOTICE_ID_MAX];           /* stable for one notice: same id = same notice */
        usec_t received_at;               /* CLOCK_REALTIME; set when first seen */
        usec_t deadline;                  /* CLOCK_REALTIME; USEC_INFINITY when none is known */
        bool imminent;                    /* the VM goes away: checkpoint and stop */
        char summary[NOTICE_SUMMARY_MAX]; /* what the metadata service said, shortened */
} Notice;

typedef struct CloudWatch CloudWatch;

/* A notice appeared (gone = false) or vanished (gone = true). The handler must not free the
 * CloudWatch (the provider and cloud_watch_update() go on using it); it may call
 * cloud_watch_acknowledge(). */
typedef void (*CloudNoticeHandler)(CloudWatch *w, const Notice *n, bool gone, void *userdata);

typedef struct CloudProviderVTable {
        CloudProvider id;
        const char *name;
        const char *default_base_url;     /* "http://169.254.169.254" */
        int (*start)(CloudWatch *w);      /* allocate private state, arm polling */
        void (*stop)(CloudWatch *w);      /* cancel everything, free private state */
        /* Tell the platform the VM is ready for the event (Azure StartRequests); NULL if the
         * platform has no such call. Asynchronous; the result is logged. */
        int (*acknowledge)(CloudWatch *w, const char *notice_id);
} CloudProviderVTable;

extern const CloudProviderVTable cloud_aws, cloud_gce, cloud_azure, cloud_alibaba;

const CloudProviderVTable *cloud_provider_vtable(CloudProvider p);

#define CLOUD_CHANNELS_MAX 8

typedef struct CloudChannel {
        const char *name;       /* static string: "spot", "rebalance", "maintenance", ... */
        int error;              /* last logged condition, 0 = healthy */
} CloudChannel;

struct CloudWatch {
        const CloudProviderVTable *vtable;
        sd_event *event;
        CurlGlue *glue;
        char *base_url;
        usec_t poll_interval;
        CloudNoticeHandler on_notice;
        void *userdata;

        Notice *known;          /* notices currently visible */
        size_t n_known;
        char **known_channels;  /* parallel to known: the channel that reported each (static strings) */
        CloudChannel channels[CLOUD_CHANNELS_MAX];
        size_t n_channels;

        void *data;             /* the provider's private state */
};

int cloud_watch_new(CloudWatch **ret, CloudProvider provider, sd_event *event, CurlGlue *glue,
                    const char *base_url, usec_t poll_interval, CloudNoticeHandler on_notice, void *userdata);
CloudWatch *cloud_watch_free(CloudWatch *w);
DEFINE_CLEANUP_FUNC(CloudWatch *, cloud_watch_free);
int cloud_watch_start(CloudWatch *w);
int cloud_watch_acknowledge(CloudWatch *w, const char *notice_id);
const char *cloud_watch_name(const CloudWatch *w);

/* ---- for providers ---- */

/* The complete set of notices one channel sees now. Notices not seen before are announced;
 * notices of this channel that are no longer there are reported gone. A notice keeps the
 * received_at and deadline of its first sighting (a deadline may move; the first one counts),
 * unless the first sighting had no deadline. Also marks the channel healthy. */
void cloud_watch_update(CloudWatch *w, const char *channel, const Notice *notices, size_t n);

/* The channel failed (error < 0) or works again (error = 0). Logged only when the condition
 * changes, so a failing metadata service does not flood the journal. */
void cloud_watch_condition(CloudWatch *w, const char *channel, int error, const char *what);

/* An HTTP request to base_url + path with the defaults for metadata services: 1 s connect,
 * 2 s total, 64 KiB answer cap, no proxy, no retries (the poll loop is the retry). */
int cloud_watch_request(CloudWatch *w, const char *method, const char *path, HttpRequest **ret);

/* Delay before the next poll after `failures` consecutive failures: back-off from 100 ms,
 * doubling, never beyond the poll interval, so a notice that follows a burst of errors is
 * still seen within one poll interval. 0 failures: the poll interval. */
usec_t cloud_watch_next_delay(const CloudWatch *w, unsigned failures);

/* (Re)arms *s (a CLOCK_BOOTTIME one-shot timer owned by the caller) to fire after delay. */
int cloud_watch_arm(CloudWatch *w, sd_event_source **s, usec_t delay, sd_event_time_handler_t handler,
                    void *userdata);

/* Parses an HTTP date ("Mon, 11 Apr 2026 22:26:58 GMT") or AWS's "21 Jan 2019 09:00:43 GMT". */
int parse_http_date(const char *s, usec_t *ret);

/* Bounded copy that always terminates. */
void notice_set_string(char *dst, size_t size, const char *src);
