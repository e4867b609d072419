/* SPDX-License-Identifier: MIT */
/* daemon/logind.c against python-dbusmock on a private dbus-daemon started here: the logind
 * template (org.freedesktop.login1) and a plain mock object as systemd's Manager. The mocks'
 * call logs (org.freedesktop.DBus.Mock.GetMethodCalls) and the template's ListInhibitors show
 * what the daemon asked for. Skipped when dbus-daemon or python3-dbusmock is missing. */
#include "unit-helpers.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "log.h"
#include "logind.h"

#define LOGIN_SERVICE "org.freedesktop.login1"
#define LOGIN_PATH "/org/freedesktop/login1"
#define LOGIN_MANAGER "org.freedesktop.login1.Manager"
#define SYSTEMD_SERVICE "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define MOCK_IFACE "org.freedesktop.DBus.Mock"
#define WHY "Upload the last checkpoint before the VM goes"

/* A private bus and the mocks on it, for the whole group. */
typedef struct Env {
        bool ok;
        char address[256];
        pid_t bus_pid;
        pid_t logind_pid;
        pid_t systemd_pid;
        sd_bus *bus;                    /* the test's own (blocking) connection to the mocks */
} Env;

static Env env = { .bus_pid = -1, .logind_pid = -1, .systemd_pid = -1 };

/* What the callbacks saw, per test. */
typedef struct Fixture {
        sd_event *event;
        Logind *logind;
        unsigned shutdowns;
        unsigned power_off_calls;
        int power_off_result;
        char *power_off_message;
        unsigned state_calls;
        int state_error;
        char *state;
        bool in_start;                  /* a callback must not run while this is set */
} Fixture;

static Fixture fx;

/* ---------------------------------------------------------------- processes */

static const char *python(void) {
        const char *p = getenv("PYTHON");

        return isempty(p) ? "/usr/bin/python3" : p;
}

static bool have_dbusmock(void) {
        char cmd[512];

        snprintf(cmd, sizeof(cmd), "command -v dbus-daemon >/dev/null && %s -c 'import dbus, dbusmock' 2>/dev/null",
                 python());
        return system(cmd) == 0;
}

/* A bus without service activation (the session configuration would start, for instance, a
 * user systemd for org.freedesktop.systemd1): a missing service is plainly ServiceUnknown. */
static const char bus_config[] =
        "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
        " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
        "<busconfig>\n"
        "  <type>session</type>\n"
        "  <listen>unix:tmpdir=/tmp</listen>\n"
        "  <auth>EXTERNAL</auth>\n"
        "  <policy context=\"default\">\n"
        "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
        "    <allow eavesdrop=\"true\"/>\n"
        "    <allow own=\"*\"/>\n"
        "  </policy>\n"
        "</busconfig>\n";

static int bus_config_write(char *path, size_t size) {
        const char *tmp = getenv("TMPDIR");
        FILE *f;
        int fd;

        snprintf(path, size, "%s/trainsupd-logind-bus.XXXXXX", isempty(tmp) ? "/tmp" : tmp);
        fd = mkstemp(path);
        if (fd < 0)
                return -errno;
        f = fdopen(fd, "w");
        if (!f) {
                close(fd);
                return -errno;
        }
        fputs(bus_config, f);
        return fclose(f) == 0 ? 0 : -errno;
}

/* A dbus-daemon of its own (it forks away); its address and pid. */
static int bus_start(char *address, size_t size, pid_t *ret_pid) {
        char config[256], cmd[512], line[256];
        FILE *f;
        int pid, r;

        r = bus_config_write(config, sizeof(config));
        if (r < 0)
                return r;
        snprintf(cmd, sizeof(cmd), "dbus-daemon --config-file='%s' --fork --print-address=1 --print-pid=1", config);
        f = popen(cmd, "re");
        if (!f) {
                r = -errno;
                (void) unlink(config);
                return r;
        }
        r = fgets(address, (int) size, f) && fgets(line, sizeof(line), f) && sscanf(line, "%d", &pid) == 1 ? 0 : -EIO;
        pclose(f);
        (void) unlink(config); /* the daemon, up, has read it */
        if (r < 0)
                return r;
        address[strcspn(address, "\n")] = 0;
        *ret_pid = pid;
        return 0;
}

static pid_t spawn_mock(char * const *argv) {
        pid_t pid = fork();

        if (pid == 0) {
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

                (void) dup2(null, STDOUT_FILENO);
                setenv("DBUS_SYSTEM_BUS_ADDRESS", env.address, 1);
                execv(argv[0], argv);
                _exit(127);
        }
        return pid;
}

static void stop_process(pid_t *pid, bool child) {
        if (*pid <= 0)
                return;
        (void) kill(*pid, SIGTERM);
        if (child)
                (void) waitpid(*pid, NULL, 0);
        *pid = -1;
}

static int connect_to(const char *address, sd_bus **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

static bool name_has_owner(const char *name) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int has = 0;

        if (sd_bus_call_method(env.bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", NULL, &reply, "s", name) < 0)
                return false;
        return sd_bus_message_read(reply, "b", &has) > 0 && has;
}

static int env_setup(void **state) {
        char *logind_argv[] = { (char *) python(), "-m", "dbusmock", "--system", "--template", "logind", NULL };
        char *systemd_argv[] = { (char *) python(), "-m", "dbusmock", "--system", SYSTEMD_SERVICE, SYSTEMD_PATH,
                                 SYSTEMD_MANAGER, NULL };

        log_set_target(LOG_TARGET_CONSOLE);
        log_set_max_level(LOG_DEBUG);
        if (!have_dbusmock()) {
                fprintf(stderr, "dbus-daemon or python3-dbusmock missing, skipping the mock tests\n");
                return 0;
        }
        assert_int_equal(bus_start(env.address, sizeof(env.address), &env.bus_pid), 0);
        assert_int_equal(connect_to(env.address, &env.bus), 0);
        env.logind_pid = spawn_mock(logind_argv);
        env.systemd_pid = spawn_mock(systemd_argv);
        assert_true(env.logind_pid > 0 && env.systemd_pid > 0);
        /* A failure guard, not a speed assertion. */
        for (unsigned i = 0; i < 300; i++) {
                if (name_has_owner(LOGIN_SERVICE) && name_has_owner(SYSTEMD_SERVICE)) {
                        env.ok = true;
                        return 0;
                }
                usleep(50 * 1000);
        }
        fail_msg("the dbusmock services did not come up on %s", env.address);
        return -1;
}

static int env_teardown(void **state) {
        env.bus = sd_bus_flush_close_unref(env.bus);
        stop_process(&env.logind_pid, true);
        stop_process(&env.systemd_pid, true);
        stop_process(&env.bus_pid, false);
        return 0;
}

/* ---------------------------------------------------------------- the mocks */

static void mock_callv(const char *service, const char *path, const char *iface, const char *member,
                       sd_bus_message **ret_reply, const char *types, va_list ap) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        assert_true(sd_bus_message_new_method_call(env.bus, &m, service, path, iface, member) >= 0);
        assert_true(sd_bus_message_appendv(m, types, ap) >= 0);
        r = sd_bus_call(env.bus, m, 10 * USEC_PER_SEC, &error, ret_reply);
        if (r < 0)
                fail_msg("%s.%s: %s: %s", iface, member, strna(error.name), strna(error.message));
        sd_bus_error_free(&error);
}

static void login_call(const char *member, const char *types, ...) {
        va_list ap;

        va_start(ap, types);
        mock_callv(LOGIN_SERVICE, LOGIN_PATH, MOCK_IFACE, member, NULL, types, ap);
        va_end(ap);
}

static void systemd_call(const char *member, const char *types, ...) {
        va_list ap;

        va_start(ap, types);
        mock_callv(SYSTEMD_SERVICE, SYSTEMD_PATH, MOCK_IFACE, member, NULL, types, ap);
        va_end(ap);
}

static sd_bus_message *login_calls(const char *method) {
        sd_bus_message *reply = NULL;

        assert_true(sd_bus_call_method(env.bus, LOGIN_SERVICE, LOGIN_PATH, MOCK_IFACE, "GetMethodCalls", NULL, &reply,
                                       "s", method) >= 0);
        assert_true(sd_bus_message_enter_container(reply, 'a', "(tav)") > 0);
        return reply;
}

static unsigned login_n_calls(const char *method) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = login_calls(method);
        unsigned n = 0;

        while (sd_bus_message_skip(reply, "(tav)") > 0)
                n++;
        return n;
}

/* The template's record of the inhibitors it handed out and whose fd is still open somewhere. */
static unsigned login_n_inhibitors(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        unsigned n = 0;

        assert_true(sd_bus_call_method(env.bus, LOGIN_SERVICE, LOGIN_PATH, LOGIN_MANAGER, "ListInhibitors", NULL,
                                       &reply, "") >= 0);
        assert_true(sd_bus_message_enter_container(reply, 'a', "(ssssuu)") > 0);
        while (sd_bus_message_skip(reply, "(ssssuu)") > 0)
                n++;
        return n;
}

static void login_emit_prepare(bool active) {
        login_call("EmitSignal", "sssav", LOGIN_MANAGER, "PrepareForShutdown", "b", 1, "b", (int) active);
}

static void login_add_method(const char *name, const char *in_sig, const char *code) {
        login_call("AddMethod", "sssss", LOGIN_MANAGER, name, in_sig, "", code);
}

/* ---------------------------------------------------------------- the loop and callbacks */

static bool run_until(bool (*pred)(void), unsigned timeout_ms) {
        for (unsigned waited = 0; !pred(); waited += 20) {
                if (waited >= timeout_ms)
                        return false;
                assert_true(sd_event_run(fx.event, 20 * USEC_PER_MSEC) >= 0);
        }
        return true;
}

static void on_shutdown(Logind *l, void *userdata) {
        assert_ptr_equal(l, fx.logind);
        assert_ptr_equal(userdata, &fx);
        assert_false(fx.in_start);
        fx.shutdowns++;
}

static void on_power_off(Logind *l, int result, const char *message, void *userdata) {
        assert_ptr_equal(l, fx.logind);
        assert_ptr_equal(userdata, &fx.power_off_calls);
        assert_false(fx.in_start);
        fx.power_off_calls++;
        fx.power_off_result = result;
        free(fx.power_off_message);
        fx.power_off_message = message ? strdup(message) : NULL;
}

static void on_state(Logind *l, int error, const char *state, void *userdata) {
        assert_ptr_equal(l, fx.logind);
        assert_ptr_equal(userdata, &fx.state_calls);
        assert_false(fx.in_start);
        fx.state_calls++;
        fx.state_error = error;
        free(fx.state);
        fx.state = state ? strdup(state) : NULL;
}

static bool inhibited(void) {
        return logind_inhibited(fx.logind);
}

static bool no_inhibitors(void) {
        return login_n_inhibitors() == 0;
}

/* The template drops a closed inhibitor from its list in its own time (a GLib watch). */
static bool one_inhibitor(void) {
        return login_n_inhibitors() == 1;
}

static bool one_shutdown(void) {
        return fx.shutdowns == 1;
}

static bool two_shutdowns(void) {
        return fx.shutdowns == 2;
}

static bool power_off_done(void) {
        return fx.power_off_calls > 0;
}

static bool state_done(void) {
        return fx.state_calls > 0;
}

static int power_off(void) {
        int r;

        fx.in_start = true;
        r = logind_power_off(fx.logind, on_power_off, &fx.power_off_calls);
        fx.in_start = false;
        return r;
}

static int system_state(void) {
        int r;

        fx.in_start = true;
        r = logind_system_state(fx.logind, on_state, &fx.state_calls);
        fx.in_start = false;
        return r;
}

static int logind_open(const char *address) {
        const LogindParams p = { .event = fx.event, .bus_address = address, .on_shutdown = on_shutdown,
                                 .userdata = &fx };

        return logind_new(&fx.logind, &p);
}

static int fx_setup(void **state) {
        fx = (Fixture) {};
        assert_int_equal(sd_event_new(&fx.event), 0);
        if (env.ok) {
                /* The template as it started, an empty systemd object, empty call logs. */
                login_call("Reset", "");
                login_call("ClearCalls", "");
                systemd_call("Reset", "");
                systemd_call("ClearCalls", "");
        }
        return 0;
}

static int fx_teardown(void **state) {
        fx.logind = logind_free(fx.logind);
        /* Every inhibitor fd is closed, the answers' copies included. */
        if (env.ok && !run_until(no_inhibitors, 10000))
                fail_msg("an inhibitor is still held after logind_free()");
        fx.event = sd_event_unref(fx.event);
        free(fx.power_off_message);
        free(fx.state);
        return 0;
}

/* Connected, subscribed and inhibited. */
static void open_inhibited(void) {
        assert_int_equal(logind_open(env.address), 0);
        assert_false(logind_inhibited(fx.logind)); /* the answer comes through the loop */
        if (!run_until(inhibited, 10000))
                fail_msg("no inhibitor");
}

/* ---------------------------------------------------------------- tests */

static void test_no_bus(void **state) {
        const LogindParams no_event = { .bus_address = "unix:path=/nonexistent/trainsupd-bus" };
        Logind *l = NULL;

        assert_int_equal(logind_open("unix:path=/nonexistent/trainsupd-bus"), -ENOENT);
        assert_null(fx.logind);
        assert_int_equal(logind_new(&l, &no_event), -EINVAL);
        assert_null(l);
        assert_false(logind_inhibited(NULL));
        logind_release_inhibitor(NULL);
        assert_int_equal(logind_power_off(NULL, on_power_off, NULL), -EINVAL);
        assert_int_equal(logind_system_state(NULL, on_state, NULL), -EINVAL);
        assert_null(logind_free(NULL));
}

static void test_inhibit(void **state) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *calls = NULL;
        const char *what, *who, *why, *mode;
        uint64_t when;

        if (!env.ok)
                skip();
        open_inhibited();
        calls = login_calls("Inhibit");
        assert_int_equal(sd_bus_message_enter_container(calls, 'r', "tav"), 1);
        assert_int_equal(sd_bus_message_read(calls, "t", &when), 1);
        assert_int_equal(sd_bus_message_read(calls, "av", 4, "s", &what, "s", &who, "s", &why, "s", &mode), 1);
        assert_string_equal(what, "shutdown");
        assert_string_equal(who, "trainsupd");
        assert_string_equal(why, WHY);
        assert_string_equal(mode, "delay");
        assert_int_equal(sd_bus_message_exit_container(calls), 1);
        assert_int_equal(login_n_calls("Inhibit"), 1);

        /* Held: the template still lists it. */
        assert_int_equal(login_n_inhibitors(), 1);
        /* Released: the template sees the last copy of the fd closed. */
        logind_release_inhibitor(fx.logind);
        assert_false(logind_inhibited(fx.logind));
        logind_release_inhibitor(fx.logind);
        if (!run_until(no_inhibitors, 10000))
                fail_msg("the inhibitor is still held after release");
        assert_int_equal(login_n_calls("Inhibit"), 1);
}

static void test_prepare_for_shutdown(void **state) {
        if (!env.ok)
                skip();
        open_inhibited();
        login_emit_prepare(true);
        if (!run_until(one_shutdown, 10000))
                fail_msg("on_shutdown not called");
        assert_true(logind_inhibited(fx.logind)); /* released by the daemon, not by logind.c */

        /* The same shutdown again, then the daemon lets go, then logind cancels: the signals come in
         * order, so once the inhibitor is back the repeated true was seen and ignored. */
        login_emit_prepare(true);
        logind_release_inhibitor(fx.logind);
        login_emit_prepare(false);
        if (!run_until(inhibited, 10000))
                fail_msg("the inhibitor was not taken again after the cancelled shutdown");
        assert_int_equal(fx.shutdowns, 1);
        assert_int_equal(login_n_calls("Inhibit"), 2);
        if (!run_until(one_inhibitor, 10000))
                fail_msg("the released inhibitor is still listed beside the new one");

        /* The next shutdown is reported again. */
        login_emit_prepare(true);
        if (!run_until(two_shutdowns, 10000))
                fail_msg("on_shutdown not called for the second shutdown");
}

static void test_power_off_with_flags(void **state) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *calls = NULL;
        uint64_t when, flags = 1;

        if (!env.ok)
                skip();
        /* Records how many inhibitors were still open when the call arrived. The mock sees a
         * closed inhibitor through a GLib watch that may not have run yet: let pending ones run
         * first (bounded: the method's own D-Bus source cannot recurse). */
        login_add_method("PowerOffWithFlags", "t",
                         "import dbusmock.mockobject as mo\n"
                         "from gi.repository import GLib\n"
                         "ctx = GLib.MainContext.default()\n"
                         "for _ in range(50):\n"
                         "    if not ctx.iteration(False): break\n"
                         "self.held_at_power_off = len(getattr(mo, 'inhibitors', []))");
        login_call("AddMethod", "sssss", LOGIN_MANAGER, "HeldAtPowerOff", "", "u", "ret = self.held_at_power_off");
        open_inhibited();

        assert_int_equal(power_off(), 0);
        assert_false(logind_inhibited(fx.logind));
        assert_int_equal(fx.power_off_calls, 0);
        assert_int_equal(power_off(), -EBUSY);
        if (!run_until(power_off_done, 10000))
                fail_msg("no power-off answer");
        assert_int_equal(fx.power_off_result, 0);
        assert_null(fx.power_off_message);

        assert_int_equal(login_n_calls("PowerOffWithFlags"), 1);
        assert_int_equal(login_n_calls("PowerOff"), 0);
        calls = login_calls("PowerOffWithFlags");
        assert_int_equal(sd_bus_message_enter_container(calls, 'r', "tav"), 1);
        assert_int_equal(sd_bus_message_read(calls, "t", &when), 1);
        assert_int_equal(sd_bus_message_read(calls, "av", 1, "t", &flags), 1);
        assert_int_equal(flags, 0);

        {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                uint32_t held = 99;

                assert_true(sd_bus_call_method(env.bus, LOGIN_SERVICE, LOGIN_PATH, LOGIN_MANAGER, "HeldAtPowerOff",
                                               NULL, &reply, "") >= 0);
                assert_int_equal(sd_bus_message_read(reply, "u", &held), 1);
                assert_int_equal(held, 0); /* released before the call */
        }

        /* Our own shutdown is not reported as one to prepare for; cancelled, it is protected again. */
        login_emit_prepare(true);
        login_emit_prepare(false);
        if (!run_until(inhibited, 10000))
                fail_msg("the inhibitor was not taken again");
        assert_int_equal(fx.shutdowns, 0);
        login_emit_prepare(true);
        if (!run_until(one_shutdown, 10000))
                fail_msg("on_shutdown not called after the cancelled power-off");
}

static void test_power_off_fallback(void **state) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *calls = NULL;
        uint64_t when;
        int interactive = 1;

        if (!env.ok)
                skip();
        open_inhibited();
        assert_int_equal(power_off(), 0);
        if (!run_until(power_off_done, 10000))
                fail_msg("no power-off answer");
        assert_int_equal(fx.power_off_result, 0);
        assert_null(fx.power_off_message);
        assert_int_equal(login_n_calls("PowerOff"), 1);
        calls = login_calls("PowerOff");
        assert_int_equal(sd_bus_message_enter_container(calls, 'r', "tav"), 1);
        assert_int_equal(sd_bus_message_read(calls, "t", &when), 1);
        assert_int_equal(sd_bus_message_read(calls, "av", 1, "b", &interactive), 1);
        assert_false(interactive);
        assert_false(logind_inhibited(fx.logind));
}

static void test_power_off_refused(void **state) {
        if (!env.ok)
                skip();
        login_add_method("PowerOffWithFlags", "t",
                         "raise dbus.exceptions.DBusException('Not allowed to power off', "
                         "name='org.freedesktop.DBus.Error.AccessDenied')");
        open_inhibited();
        assert_int_equal(power_off(), 0);
        if (!run_until(power_off_done, 10000))
                fail_msg("no power-off answer");
        assert_int_equal(fx.power_off_result, -EACCES);
        assert_non_null(fx.power_off_message);
        assert_non_null(strstr(fx.power_off_message, "PowerOffWithFlags"));
        assert_non_null(strstr(fx.power_off_message, "org.freedesktop.DBus.Error.AccessDenied"));
        assert_non_null(strstr(fx.power_off_message, "Not allowed to power off"));
        assert_int_equal(login_n_calls("PowerOff"), 0); /* no fallback for other errors */
        /* The machine stays up: the inhibitor is taken again. */
        if (!run_until(inhibited, 10000))
                fail_msg("the inhibitor was not taken again after the refused power-off");
        assert_int_equal(login_n_calls("Inhibit"), 2);

        /* The fallback's own failure names PowerOff. */
        login_call("Reset", "");
        login_add_method("PowerOff", "b",
                         "raise dbus.exceptions.DBusException('Interactive authentication required', "
                         "name='org.freedesktop.DBus.Error.InteractiveAuthorizationRequired')");
        fx.power_off_calls = 0;
        assert_int_equal(power_off(), 0);
        if (!run_until(power_off_done, 10000))
                fail_msg("no power-off answer");
        assert_true(fx.power_off_result < 0);
        assert_non_null(strstr(fx.power_off_message,
                               "PowerOff: org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"));
        assert_int_equal(login_n_calls("PowerOff"), 1);
}

static void test_system_state(void **state) {
        if (!env.ok)
                skip();
        systemd_call("AddProperty", "ssv", SYSTEMD_MANAGER, "SystemState", "s", "running");
        open_inhibited();
        assert_int_equal(system_state(), 0);
        assert_int_equal(system_state(), -EBUSY);
        if (!run_until(state_done, 10000))
                fail_msg("no SystemState answer");
        assert_int_equal(fx.state_error, 0);
        assert_string_equal(fx.state, "running");

        systemd_call("UpdateProperties", "sa{sv}", SYSTEMD_MANAGER, 1, "SystemState", "s", "stopping");
        fx.state_calls = 0;
        assert_int_equal(system_state(), 0);
        if (!run_until(state_done, 10000))
                fail_msg("no SystemState answer");
        assert_int_equal(fx.state_error, 0);
        assert_string_equal(fx.state, "stopping");

        /* No such property: an error, no state. */
        systemd_call("Reset", "");
        fx.state_calls = 0;
        assert_int_equal(system_state(), 0);
        if (!run_until(state_done, 10000))
                fail_msg("no SystemState answer");
        assert_true(fx.state_error < 0);
        assert_null(fx.state);
}

/* A bus without logind, then without the bus: reported through the callbacks, later. */
static void test_no_logind_then_no_bus(void **state) {
        char address[256];
        pid_t pid = -1;

        if (!env.ok)
                skip();
        assert_int_equal(bus_start(address, sizeof(address), &pid), 0);
        assert_int_equal(logind_open(address), 0);

        assert_int_equal(power_off(), 0);
        assert_int_equal(fx.power_off_calls, 0);
        if (!run_until(power_off_done, 10000))
                fail_msg("no power-off answer");
        assert_int_equal(fx.power_off_result, -EHOSTUNREACH);
        assert_non_null(strstr(fx.power_off_message, "PowerOffWithFlags: org.freedesktop.DBus.Error.ServiceUnknown"));
        assert_false(logind_inhibited(fx.logind)); /* the Inhibit answer was the same error */

        assert_int_equal(system_state(), 0);
        if (!run_until(state_done, 10000))
                fail_msg("no SystemState answer");
        assert_int_equal(fx.state_error, -EHOSTUNREACH);
        assert_null(fx.state);

        /* The bus goes away. */
        stop_process(&pid, false);
        fx.power_off_calls = 0;
        fx.state_calls = 0;
        for (unsigned i = 0; i < 10; i++) /* let the connection notice, or not: either way works */
                assert_true(sd_event_run(fx.event, 10 * USEC_PER_MSEC) >= 0);
        assert_int_equal(power_off(), 0);
        assert_int_equal(system_state(), 0);
        assert_int_equal(fx.power_off_calls, 0);
        assert_int_equal(fx.state_calls, 0);
        if (!run_until(power_off_done, 10000) || !run_until(state_done, 10000))
                fail_msg("no answer without a bus");
        assert_true(fx.power_off_result < 0);
        assert_non_null(fx.power_off_message);
        assert_true(fx.state_error < 0);
        assert_null(fx.state);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_no_bus, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_inhibit, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_prepare_for_shutdown, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_power_off_with_flags, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_power_off_fallback, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_power_off_refused, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_system_state, fx_setup, fx_teardown),
                cmocka_unit_test_setup_teardown(test_no_logind_then_no_bus, fx_setup, fx_teardown),
        };

        return cmocka_run_group_tests_name("logind", tests, env_setup, env_teardown);
}
