/* SPDX-License-Identifier: MIT */
/* logind and systemd over sd-bus, asynchronously on the daemon's loop: the shutdown delay
 * inhibitor and PrepareForShutdown, PowerOffWithFlags (PowerOff on an older logind) and
 * SystemState. Nothing here blocks; every failure is reported with the D-Bus error's name. */
#include "logind.h"

#include <fcntl.h>
#include <stdio.h>

#include "log.h"

#define LOGIND_SERVICE "org.freedesktop.login1"
#define LOGIND_PATH "/org/freedesktop/login1"
#define LOGIND_MANAGER "org.freedesktop.login1.Manager"
#define SYSTEMD_SERVICE "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define PROPERTIES_IFACE "org.freedesktop.DBus.Properties"

#define INHIBIT_WHAT "shutdown"
#define INHIBIT_WHO "trainsupd"
#define INHIBIT_WHY "Upload the last checkpoint before the VM goes"
#define INHIBIT_MODE "delay"

/* A request with a callback: the call in flight, or the deferred report of a failure that
 * happened before anything was sent (callbacks never run inside the starting call). */
typedef struct LogindOp {
        sd_bus_slot *call;
        sd_event_source *defer;
        int error;
        char *message;
        void *userdata;
} LogindOp;

struct Logind {
        sd_event *event;
        sd_bus *bus;
        sd_bus_slot *match;             /* PrepareForShutdown */
        sd_bus_slot *inhibit_call;
        int inhibit_fd;
        bool shutdown_reported;         /* PrepareForShutdown(true) seen for this shutdown */
        bool powering_off;              /* our own power-off was asked for */
        LogindShutdownHandler on_shutdown;
        void *userdata;

        LogindOp power_off;
        LogindPowerOffDone power_off_done;
        bool power_off_fallback;        /* PowerOff(false) sent after UnknownMethod */

        LogindOp state;
        LogindSystemStateDone state_done;
};

/* ---- helpers */

/* "Method: org.freedesktop.DBus.Error.Name: text", or the errno's text when there is no D-Bus
 * error. NULL when out of memory. */
static char *error_text(const char *method, const sd_bus_error *e, int error) {
        char *s = NULL;
        int n;

        if (e && sd_bus_error_is_set(e))
                n = asprintf(&s, "%s: %s: %s", method, e->name, strna(e->message));
        else
                n = asprintf(&s, "%s: %s", method, strerror(error < 0 ? -error : EIO));
        return n < 0 ? NULL : s;
}

static int error_errno(const sd_bus_error *e) {
        int r = sd_bus_error_get_errno(e);

        return r > 0 ? -r : -EIO;
}

static bool op_busy(const LogindOp *op) {
        return op->call || op->defer;
}

/* Forgets the request; returns its userdata for the callback about to run. */
static void *op_clear(LogindOp *op) {
        void *userdata = op->userdata;

        op->call = sd_bus_slot_unref(op->call);
        op->defer = sd_event_source_disable_unref(op->defer);
        op->message = mfree(op->message);
        op->error = 0;
        op->userdata = NULL;
        return userdata;
}

static int op_fail_later(Logind *l, LogindOp *op, int error, char *message, sd_event_handler_t handler) {
        int r;

        op->call = sd_bus_slot_unref(op->call);
        op->error = error;
        free(op->message);
        op->message = message;
        r = sd_event_add_defer(l->event, &op->defer, handler, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(op->defer, "logind-deferred-error");
        return 0;
}

/* ---- the delay inhibitor */

static int inhibit_on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(m);
        Logind *l = userdata;
        int fd, r;

        l->inhibit_call = sd_bus_slot_unref(l->inhibit_call);
        if (e) {
                log_warning("logind refused the shutdown delay inhibitor, the last upload at shutdown is not "
                            "protected: Inhibit: %s: %s", e->name, strna(e->message));
                return 0;
        }
        r = sd_bus_message_read(m, "h", &fd);
        if (r < 0) {
                log_warning_errno(r, "Cannot read the inhibitor fd from logind's answer: %m");
                return 0;
        }
        /* The message owns fd and closes it when freed. */
        l->inhibit_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (l->inhibit_fd < 0) {
                log_warning_errno(negative_errno(), "Cannot keep the inhibitor fd: %m");
                return 0;
        }
        log_debug("Holding a shutdown delay inhibitor (fd %d)", l->inhibit_fd);
        return 0;
}

static int inhibit_take(Logind *l) {
        int r;

        if (l->inhibit_fd >= 0 || l->inhibit_call)
                return 0;
        r = sd_bus_call_method_async(l->bus, &l->inhibit_call, LOGIND_SERVICE, LOGIND_PATH, LOGIND_MANAGER,
                                     "Inhibit", inhibit_on_reply, l, "ssss", INHIBIT_WHAT, INHIBIT_WHO,
                                     INHIBIT_WHY, INHIBIT_MODE);
        if (r < 0)
                return log_warning_errno(r, "Cannot ask logind for a shutdown delay inhibitor: %m");
        return 0;
}

bool logind_inhibited(const Logind *l) {
        return l && l->inhibit_fd >= 0;
}

void logind_release_inhibitor(Logind *l) {
        if (!l)
                return;
        /* An answer still on its way would take the inhibitor again. */
        l->inhibit_call = sd_bus_slot_unref(l->inhibit_call);
        if (l->inhibit_fd >= 0)
                log_debug("Releasing the shutdown delay inhibitor");
        l->inhibit_fd = safe_close(l->inhibit_fd);
}

/* ---- PrepareForShutdown */

static int on_prepare_for_shutdown(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Logind *l = userdata;
        int active, r;

        r = sd_bus_message_read(m, "b", &active);
        if (r < 0) {
                log_debug_errno(r, "Cannot parse PrepareForShutdown, ignoring: %m");
                return 0;
        }
        if (!active) {
                log_info("The shutdown was cancelled, taking the shutdown delay inhibitor again");
                l->shutdown_reported = false;
                l->powering_off = false;
                (void) inhibit_take(l);
                return 0;
        }
        if (l->shutdown_reported)
                return 0;
        l->shutdown_reported = true;
        if (l->powering_off) {
                log_debug("PrepareForShutdown after our own power-off request");
                return 0;
        }
        if (l->on_shutdown)
                l->on_shutdown(l, l->userdata); /* may free l: nothing after this */
        return 0;
}

static int on_match_installed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(m);

        if (e)
                log_warning("Cannot subscribe to logind's PrepareForShutdown, a shutdown will not be "
                            "noticed: AddMatch: %s: %s", e->name, strna(e->message));
        return 0;
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        log_warning("Lost the system bus connection: no PrepareForShutdown, power-off or SystemState "
                    "from now on");
        return 0;
}

/* ---- power-off */

static const char *power_off_method(const Logind *l) {
        return l->power_off_fallback ? "PowerOff" : "PowerOffWithFlags";
}

static void power_off_finish(Logind *l, int result, char *message) {
        _cleanup_free_ char *msg = message;
        LogindPowerOffDone done = l->power_off_done;
        void *userdata = op_clear(&l->power_off);

        l->power_off_done = NULL;
        if (result < 0) {
                /* The machine stays up: protect its next shutdown again. */
                l->powering_off = false;
                (void) inhibit_take(l);
                if (!msg)
                        msg = error_text(power_off_method(l), NULL, result);
        }
        done(l, result, msg, userdata); /* may free l */
}

static int power_off_on_defer(sd_event_source *s, void *userdata) {
        Logind *l = userdata;

        power_off_finish(l, l->power_off.error, TAKE_PTR(l->power_off.message));
        return 0;
}

static int power_off_on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(m);
        Logind *l = userdata;
        int r;

        l->power_off.call = sd_bus_slot_unref(l->power_off.call);
        if (!e) {
                log_debug("logind accepted the power-off");
                power_off_finish(l, 0, NULL);
                return 0;
        }
        if (!l->power_off_fallback && sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD)) {
                log_debug("logind has no PowerOffWithFlags (%s), falling back to PowerOff", e->name);
                l->power_off_fallback = true;
                r = sd_bus_call_method_async(l->bus, &l->power_off.call, LOGIND_SERVICE, LOGIND_PATH,
                                             LOGIND_MANAGER, "PowerOff", power_off_on_reply, l, "b", 0);
                if (r < 0)
                        power_off_finish(l, r, NULL);
                return 0;
        }
        power_off_finish(l, error_errno(e), error_text(power_off_method(l), e, 0));
        return 0;
}

int logind_power_off(Logind *l, LogindPowerOffDone done, void *userdata) {
        int r;

        if (!l || !done)
                return -EINVAL;
        if (op_busy(&l->power_off))
                return -EBUSY;

        /* Ours would delay our own power-off by InhibitDelayMaxSec. */
        logind_release_inhibitor(l);
        l->powering_off = true;
        l->power_off_fallback = false;
        l->power_off_done = done;
        l->power_off.userdata = userdata;
        r = sd_bus_call_method_async(l->bus, &l->power_off.call, LOGIND_SERVICE, LOGIND_PATH, LOGIND_MANAGER,
                                     "PowerOffWithFlags", power_off_on_reply, l, "t", UINT64_C(0));
        if (r >= 0)
                return 0;

        r = op_fail_later(l, &l->power_off, r, error_text("PowerOffWithFlags", NULL, r), power_off_on_defer);
        if (r < 0) {
                (void) op_clear(&l->power_off);
                l->power_off_done = NULL;
                l->powering_off = false;
                return r;
        }
        return 0;
}

/* ---- SystemState */

static void state_finish(Logind *l, int error, const char *state) {
        LogindSystemStateDone done = l->state_done;
        void *userdata = op_clear(&l->state);

        l->state_done = NULL;
        done(l, error, state, userdata); /* may free l */
}

static int state_on_defer(sd_event_source *s, void *userdata) {
        Logind *l = userdata;

        state_finish(l, l->state.error, NULL);
        return 0;
}

static int state_on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(m);
        Logind *l = userdata;
        const char *state;
        int r;

        l->state.call = sd_bus_slot_unref(l->state.call);
        if (e) {
                log_warning("Cannot read systemd's SystemState: Get: %s: %s", e->name, strna(e->message));
                state_finish(l, error_errno(e), NULL);
                return 0;
        }
        r = sd_bus_message_read(m, "v", "s", &state);
        if (r < 0) {
                log_warning_errno(r, "Cannot parse systemd's SystemState: %m");
                state_finish(l, r, NULL);
                return 0;
        }
        state_finish(l, 0, state);
        return 0;
}

int logind_system_state(Logind *l, LogindSystemStateDone done, void *userdata) {
        int r;

        if (!l || !done)
                return -EINVAL;
        if (op_busy(&l->state))
                return -EBUSY;

        l->state_done = done;
        l->state.userdata = userdata;
        r = sd_bus_call_method_async(l->bus, &l->state.call, SYSTEMD_SERVICE, SYSTEMD_PATH, PROPERTIES_IFACE,
                                     "Get", state_on_reply, l, "ss", SYSTEMD_MANAGER, "SystemState");
        if (r >= 0)
                return 0;

        log_warning_errno(r, "Cannot ask systemd for its SystemState: %m");
        r = op_fail_later(l, &l->state, r, NULL, state_on_defer);
        if (r < 0) {
                (void) op_clear(&l->state);
                l->state_done = NULL;
                return r;
        }
        return 0;
}

/* ---- the object */

static int logind_connect(Logind *l, const char *address) {
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        int r;

        /* Both connect without blocking: the Hello and everything after it go through the loop. */
        if (!address)
                return sd_bus_open_system_with_description(&l->bus, "trainsupd-logind");

        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        (void) sd_bus_set_description(bus, "trainsupd-logind");
        r = sd_bus_set_address(bus, address);
        if (r < 0)
                return r;
        r = sd_bus_set_bus_client(bus, true);
        if (r < 0)
                return r;
        r = sd_bus_start(bus);
        if (r < 0)
                return r;
        l->bus = TAKE_PTR(bus);
        return 0;
}

int logind_new(Logind **ret, const LogindParams *p) {
        _cleanup_(logind_freep) Logind *l = NULL;
        int r;

        if (!ret || !p || !p->event)
                return -EINVAL;

        l = calloc(1, sizeof(Logind));
        if (!l)
                return -ENOMEM;
        *l = (Logind) {
                .event = sd_event_ref(p->event),
                .inhibit_fd = -EBADF,
                .on_shutdown = p->on_shutdown,
                .userdata = p->userdata,
        };

        r = logind_connect(l, p->bus_address);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(l->bus, l->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        /* Floating: lives as long as the connection. */
        r = sd_bus_match_signal_async(l->bus, NULL, "org.freedesktop.DBus.Local",
                                      "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
                                      "Disconnected", on_disconnected, NULL, l);
        if (r < 0)
                return r;
        /* Subscribed before the inhibitor is asked for: the bus handles both in this order. */
        r = sd_bus_match_signal_async(l->bus, &l->match, LOGIND_SERVICE, LOGIND_PATH, LOGIND_MANAGER,
                                      "PrepareForShutdown", on_prepare_for_shutdown, on_match_installed, l);
        if (r < 0)
                return r;
        r = inhibit_take(l);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(l);
        return 0;
}

Logind *logind_free(Logind *l) {
        if (!l)
                return NULL;

        (void) op_clear(&l->power_off);
        (void) op_clear(&l->state);
        l->inhibit_call = sd_bus_slot_unref(l->inhibit_call);
        l->match = sd_bus_slot_unref(l->match);
        l->inhibit_fd = safe_close(l->inhibit_fd);
        /* No flush: it could block; calls still in flight are dropped with their callbacks. */
        l->bus = sd_bus_close_unref(l->bus);
        l->event = sd_event_unref(l->event);
        free(l);
        return NULL;
}
