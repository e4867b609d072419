#!/bin/bash
# SPDX-License-Identifier: MIT
# The exec runtime's transient-unit mode (daemon/exec-unit.c) against python-dbusmock's systemd
# template on a private bus standing in for the system bus: tests/unit/test-runtime-exec, in its
# mock mode, drives real Tasks (one adopted from an existing unit, one launched), and this test
# reads the bus traffic the runtime produced from the mock's call log (GetCalls): the
# StartTransientUnit call and every property it carries, Subscribe, KillUnit, and the removal
# (StopUnit, then ResetFailedUnit) after the exit was recorded.
# What this does NOT prove: that systemd itself accepts these properties and behaves as the
# runtime expects (job signals, ExecMain* values, garbage collection): that is the qemu guest's job.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

TEST_BIN=${TEST_RUNTIME_EXEC:-$(dirname "$TRAINSUPD")/../tests/unit/test-runtime-exec}

if ! command -v dbus-daemon >/dev/null || ! "$PYTHON" -c 'import dbus, dbusmock' 2>/dev/null; then
        echo "1..0 # SKIP needs dbus-daemon and python3-dbusmock"
        exit 0
fi
if [ ! -x "$TEST_BIN" ]; then
        echo "1..0 # SKIP $TEST_BIN is not built"
        exit 0
fi

plan 27

# ---- a private bus as the system bus, the systemd template on it
ADDR=$(dbus-daemon --session --print-address=1 --fork --print-pid=3 3>"$T/bus.pid") || bail_out "cannot start dbus-daemon"
track_pid "$(cat "$T/bus.pid")"
export DBUS_SYSTEM_BUS_ADDRESS=$ADDR
"$PYTHON" -m dbusmock --system --template systemd >"$T/mock.log" 2>&1 &
track_pid $!

mock_ready() {
        "$PYTHON" - <<'EOF' 2>/dev/null
import dbus, os
bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
bus.get_object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").GetCalls(
    dbus_interface="org.freedesktop.DBus.Mock")
EOF
}
wait_for 10 mock_ready || bail_out "the systemd mock did not come up: $(cat "$T/mock.log")"

# ---- the runtime's traffic
TRAINSUPD_TEST_SYSTEMD_MOCK=1 CMOCKA_MESSAGE_OUTPUT=STDOUT run_cmd --timeout 60 "$TEST_BIN"
is "$RC" 0 "test-runtime-exec in mock mode passes (adopt, launch, signal, exit, removal)"
[ "$RC" -eq 0 ] || diag "$OUT" "$ERR"

# The call log as JSON: [{"m": method, "a": [args...]}], D-Bus types as plain JSON, byte arrays
# as strings.
"$PYTHON" - "$T/calls.json" <<'EOF'
import dbus, json, os, sys

def plain(v):
    if isinstance(v, (dbus.Array, list)):
        if getattr(v, "signature", None) == "y":
            return bytes(int(b) for b in v).decode()
        return [plain(x) for x in v]
    if isinstance(v, (dbus.Struct, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dbus.Dictionary):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (dbus.String, dbus.ObjectPath, str)):
        return str(v)
    return int(v)

bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
calls = bus.get_object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").GetCalls(
    dbus_interface="org.freedesktop.DBus.Mock")
with open(sys.argv[1], "w") as f:
    json.dump([{"m": str(c[1]), "a": plain(c[2])} for c in calls], f)
EOF
C=$T/calls.json
UNIT=trainsupd-job1-main.service
ADOPT=trainsupd-job1-adopt.service
BROKEN=trainsupd-job1-broken.service
# q EXPR: json_get over the call log, with helpers: calls(M) the argument lists of method M,
# idx(M, ARGS) the position of the first such call (or -1), props the properties of the
# StartTransientUnit call for $UNIT.
q() {
        json_get "$C" "(lambda calls, idx: (lambda props: $1)(dict((p[0], p[1]) for p in ([a for a in calls('StartTransientUnit') if a[0] == '$UNIT'] or [[0, 0, []]])[0][2])))(
                lambda m: [c['a'] for c in d if c['m'] == m],
                lambda m, a: next((i for i, c in enumerate(d) if c['m'] == m and c['a'] == a), -1))"
}

# ---- adopted: found running by GetUnit, never started again, removed after its exit
is "$(q "len(calls('GetUnit')) > 0 and calls('GetUnit')[0] == ['$ADOPT']")" true "find() asks GetUnit for $ADOPT first"
is "$(q "[a for a in calls('StartTransientUnit') if a[0] == '$ADOPT']")" '[]' "an adopted unit is not started again"
is "$(q "0 <= idx('StopUnit', ['$ADOPT', 'replace']) < idx('ResetFailedUnit', ['$ADOPT'])")" true \
        "after its exit the adopted unit is removed: StopUnit(replace), then ResetFailedUnit"

# ---- launched
is "$(q "[a[:2] for a in calls('StartTransientUnit') if a[0] == '$UNIT']")" "[[\"$UNIT\", \"fail\"]]" \
        "StartTransientUnit called once for $UNIT, mode fail"
is "$(q "[a[3] for a in calls('StartTransientUnit')]")" '[[], []]' "no auxiliary units"
is "$(q "(lambda subs: len(subs) >= 2 and subs[1] < idx('StartTransientUnit', calls('StartTransientUnit')[0]))([i for i, c in enumerate(d) if c['m'] == 'Subscribe'])")" \
        true "each task's connection subscribes, the launching one before StartTransientUnit"
is "$(q "props['Type']")" '"exec"' "Type=exec (the start job waits for execve)"
like "$(q "props['ExecStart']")" '^\[\["/[^"]*/sleep", \["sleep", "1000"\], false\]\]$' \
        "ExecStart: argv[0] resolved to an absolute path, argv as configured, failures not ignored"
is "$(q "all(e in props['Environment'] for e in ['FOO=bar', 'TRAINSUPD_JOB_ID=job1', 'TRAINSUPD_TASK=main', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'])")" \
        true "Environment: the task's env, TRAINSUPD_* and the default PATH"
is "$(q "sorted(e.split('=')[0] for e in props['Environment'])")" \
        '["FOO", "PATH", "TRAINSUPD_CHECKPOINT_DIR", "TRAINSUPD_CHECKPOINT_SIGNAL", "TRAINSUPD_COMMIT_FILE", "TRAINSUPD_JOB_ID", "TRAINSUPD_RESUMED", "TRAINSUPD_TASK"]' \
        "Environment holds exactly the task's environment"
like "$(q "props['WorkingDirectory']")" '^"/tmp/' "WorkingDirectory as configured"
is "$(q "[props['User'], props['Group']]")" '["1234", "5678"]' "user \"1234:5678\" becomes User=1234, Group=5678"
is "$(q "[props['RemainAfterExit'], props['SendSIGKILL']]")" '[true, true]' "RemainAfterExit=yes, SendSIGKILL=yes"
is "$(q "props['KillMode']")" '"control-group"' "KillMode=control-group"
is "$(q "props['TimeoutStopUSec']")" 7000000 "TimeoutStopUSec = stop_grace_s (7 s)"
is "$(q "[props['StandardOutput'], props['StandardError'], props['SyslogIdentifier']]")" '["journal", "journal", "main"]' \
        "output to the journal, SyslogIdentifier=<task>"
is "$(q "props['LogExtraFields']")" '["TRAINSUPD_TASK=main", "TRAINSUPD_JOB=job1"]' "LogExtraFields (aay) name task and job"
is "$(q "'CollectMode' in props")" false "no CollectMode=inactive-or-failed: a failed unit stays readable"
is "$(q "sorted(props)")" \
        '["Description", "Environment", "ExecStart", "Group", "KillMode", "LogExtraFields", "RemainAfterExit", "SendSIGKILL", "StandardError", "StandardOutput", "SyslogIdentifier", "TimeoutStopUSec", "Type", "User", "WorkingDirectory"]' \
        "exactly these properties"
is "$(q "calls('KillUnit')")" "[[\"$UNIT\", \"main\", 10]]" "a signal to the task is KillUnit(name, main, SIGUSR1): the main process only"
is "$(q "idx('StartTransientUnit', calls('StartTransientUnit')[0]) < idx('StopUnit', ['$UNIT', 'replace']) < idx('ResetFailedUnit', ['$UNIT'])")" \
        true "after the exit: StopUnit(replace), then ResetFailedUnit"
is "$(q "len([a for a in calls('StopUnit') if a[0] == '$UNIT'])")" 1 "the launched unit is stopped once (no stop was asked before its exit)"

# ---- a start job that fails (203/EXEC): a launch failure, then the failed unit is removed
is "$(q "len([a for a in calls('StartTransientUnit') if a[0] == '$BROKEN'])")" 1 "$BROKEN: started once (no restart left)"
is "$(q "idx('StartTransientUnit', [a for a in calls('StartTransientUnit') if a[0] == '$BROKEN'][0]) < idx('StopUnit', ['$BROKEN', 'replace']) < idx('ResetFailedUnit', ['$BROKEN'])")" \
        true "$BROKEN: the failed unit is removed (StopUnit, ResetFailedUnit)"
like "$OUT$ERR" 'EVENT=error TASK=broken UNIT=trainsupd-job1-broken.service MESSAGE="Task broken: cannot execute [^"]*sleep \(systemd exit status 203/EXEC' \
        "$BROKEN: one error record says why"

# ---- the runtime's own log lines
like "$OUT$ERR" 'EVENT=task-exited TASK=main EXIT_CODE=3' "the exit status came from ExecMainCode/ExecMainStatus"
