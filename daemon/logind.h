/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "macro.h"

/* What trainsupd asks of the system over D-Bus: logind's power-off, a delay inhibitor for
 * shutdown and its PrepareForShutdown signal, and systemd's SystemState (is the machine
 * stopping?). Everything is asynchronous on the daemon's sd-event loop; a missing system bus or
 * logind is reported, never fatal (development hosts and containers have neither). */

typedef struct Logind Logind;

/* PrepareForShutdown(true): the system is going down; the daemon holds a delay inhibitor, which
 * logind waits for up to InhibitDelayMaxSec. Called once per shutdown, not for the shutdown that
 * our own logind_power_off() started; the handler may free the Logind. */
typedef void (*LogindShutdownHandler)(Logind *l, void *userdata);
/* result: 0 the call was accepted (or dry run); negative errno otherwise; message names the
 * problem (D-Bus error name and text). */
typedef void (*LogindPowerOffDone)(Logind *l, int result, const char *message, void *userdata);
/* state: systemd's Manager.SystemState ("running", "stopping", ...), NULL with an error. */
typedef void (*LogindSystemStateDone)(Logind *l, int error, const char *state, void *userdata);

typedef struct LogindParams {
        sd_event *event;
        const char *bus_address;        /* NULL: the system bus (DBUS_SYSTEM_BUS_ADDRESS honoured) */
        LogindShutdownHandler on_shutdown;
        void *userdata;
} LogindParams;

/* Connects (asynchronously), subscribes to PrepareForShutdown and takes the delay inhibitor
 * ("shutdown", who "trainsupd", why "Upload the last checkpoint before the VM goes", mode
 * "delay"). -ENOENT etc. when no bus; the caller logs and runs without. A missing logind is
 * only logged (warning, with the D-Bus error): logind_inhibited() then stays false. */
int logind_new(Logind **ret, const LogindParams *p);
/* Closes the inhibitor and the connection; requests in flight are dropped, their callbacks never
 * run (wait for LogindPowerOffDone before freeing, or the power-off may not be sent). */
Logind *logind_free(Logind *l);
DEFINE_CLEANUP_FUNC(Logind *, logind_free);

/* True while the delay inhibitor fd is held. */
bool logind_inhibited(const Logind *l);
/* Lets the shutdown proceed (closes the inhibitor fd; an Inhibit still in flight is dropped). It
 * is taken again when logind cancels the shutdown (PrepareForShutdown(false)). Idempotent. */
void logind_release_inhibitor(Logind *l);

/* PowerOffWithFlags(0), falling back to PowerOff(false) when logind answers UnknownMethod.
 * The inhibitor is released first (ours would delay our own power-off). done runs later, from
 * the loop, never from this call (even for a failure found here); -EINVAL, -EBUSY (one
 * power-off at a time) or -ENOMEM are returned instead, without a callback. */
int logind_power_off(Logind *l, LogindPowerOffDone done, void *userdata);

/* Reads org.freedesktop.systemd1 Manager.SystemState (Properties.Get). Callbacks and returns as
 * for logind_power_off(); a failure is also logged with the D-Bus error's name and text. */
int logind_system_state(Logind *l, LogindSystemStateDone done, void *userdata);
