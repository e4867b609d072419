/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>

/* Every decision trainsupd logs is one of these events (INTERFACE.md "Journal and console").
 * Each has a stable MESSAGE_ID, explained in units/trainsupd.catalog. */
typedef enum Event {
        EVENT_STARTED,
        EVENT_PHASE,
        EVENT_RESTORE_BEGIN,
        EVENT_RESTORE_DONE,
        EVENT_RESTORE_FAILED,
        EVENT_COMPLETION_FOUND,
        EVENT_IMAGE_PULL,
        EVENT_TASK_STARTED,
        EVENT_TASK_EXITED,
        EVENT_TASK_RESTART,
        EVENT_NOTICE,
        EVENT_NOTICE_CANCELLED,
        EVENT_CHECKPOINT_REQUESTED,
        EVENT_CHECKPOINT_SETTLED,
        EVENT_DEADLINE_RISK,
        EVENT_SNAPSHOT_COMMITTED,
        EVENT_SNAPSHOT_FAILED,
        EVENT_NOTICE_ACKNOWLEDGED,
        EVENT_TRANSFER_PROGRESS,
        EVENT_COMPLETED,
        EVENT_POWEROFF,
        EVENT_STOPPING,
        EVENT_ERROR,
        _EVENT_MAX,
        _EVENT_INVALID = -EINVAL,
} Event;

typedef struct EventInfo {
        const char *name;       /* TRAINSUPD_EVENT= value */
        const char *message_id; /* 32 hex digits */
        int priority;           /* default syslog priority */
} EventInfo;

const EventInfo *event_info(Event e);
const char *event_to_string(Event e);
Event event_from_string(const char *s);
