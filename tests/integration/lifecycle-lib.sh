# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2016,SC2034 # eval strings expand later; variables are for the tests
# Helpers shared by the t-lifecycle-*.sh tests: the whole life of a job under `trainsupd run`
# with the exec runtime running scripts/demo-train, a file:// store in $T, the fake cloud, and
# python3-dbusmock's logind template on a private bus standing in for the system bus.
# Source after lib.sh; this sources notice-lib.sh (the fake cloud, n_events, nth_event, field).
#
# Safety: the daemon powers the machine off when a job completes. Every test here points the
# system bus at $T (a dead address, or the private bus of lc_logind_start), so that a test run
# on a host with a real logind can never reach it.

. "$TESTS_DIR/notice-lib.sh"

DEMO_TRAIN=$TOP_SRCDIR/scripts/demo-train
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$T/no-system-bus
unset DBUS_SESSION_BUS_ADDRESS
# Exec tasks as plain children even on a host where systemd is PID 1 (the tests rely on their
# semantics: they die with the daemon, SIGTERM to the daemon stops them).
export TRAINSUPD_EXEC_MODE=child

# lc_require: skips the whole test (TAP "1..0 # SKIP") unless python3 and the fake cloud work.
lc_require() {
        if ! [ -x "$PYTHON" ] || ! "$PYTHON" -c 'import json, hashlib' 2>/dev/null; then
                echo "1..0 # SKIP needs $PYTHON"
                exit 0
        fi
}

# lc_require_dbusmock: skips the whole test unless dbus-daemon and python3-dbusmock are there.
lc_require_dbusmock() {
        if ! command -v dbus-daemon >/dev/null || ! "$PYTHON" -c 'import dbus, dbusmock' 2>/dev/null; then
                echo "1..0 # SKIP needs dbus-daemon and python3-dbusmock"
                exit 0
        fi
}

# ---------------------------------------------------------------- configs

# lc_task NAME [DEMO-TRAIN ARGS...]: one exec task running demo-train, as a JSON object.
# $LC_TASK_EXTRA adds members (e.g. '"restart": {"max": 0}').
lc_task() {
        local name=$1 a cmd
        shift
        cmd="\"$PYTHON\", \"$DEMO_TRAIN\""
        for a in "$@"; do cmd="$cmd, \"$a\""; done
        printf '{"name": "%s", "runtime": "exec", "command": [%s], "stop_grace_s": 10%s}' \
                "$name" "$cmd" "${LC_TASK_EXTRA:+, $LC_TASK_EXTRA}"
}

# lc_config FILE PROVIDER TASKS_JSON [MEMBER...]: a job watching the fake cloud (PROVIDER, or
# "none"), storing in file://$T/store (keep 10), settle_ms 1000, on_complete none unless a MEMBER
# says otherwise ($LC_ON_COMPLETE). $CFG_JOB_ID names the job (default t-life).
lc_config() {
        local file=$1 prov=$2 tasks=$3 cloud
        shift 3
        if [ "$prov" = none ]; then
                cloud='"cloud": {"provider": "none"}'
        else
                cloud="\"cloud\": {\"provider\": \"$prov\", \"metadata_url\": \"$FC_URL\", \"poll_ms\": $POLL_MS}"
        fi
        CFG_JOB_ID=${CFG_JOB_ID:-t-life} CFG_TASKS="[$tasks]" write_config "$file" \
                '"checkpoint": {"settle_ms": 1000, "timeout_s": 30}' \
                "\"storage\": {\"url\": \"file://$T/store\", \"keep\": 10}" \
                "$cloud" "\"on_complete\": \"${LC_ON_COMPLETE:-none}\"" "$@"
}

# lc_vm NAME: a fresh "VM": its own state directory and control socket under $T/NAME (the store
# stays). The next start_daemon uses them.
lc_vm() {
        export TRAINSUPD_STATE_DIR=$T/$1/state TRAINSUPD_CONTROL=$T/$1/control
        mkdir -p "$T/$1"
}

# ---------------------------------------------------------------- the daemon's log

# ev NAME [AFTER_LINE [TASK]]: "LINENO:LINE" of the first EVENT=NAME line after line AFTER_LINE
# (default 0) of $DAEMON_LOG, of TASK when given; empty when there is none.
ev() {
        local after=${2:-0} task=${3:-}
        grep -nE -- "^$RE_TIME EVENT=$1 ${task:+(.* )?TASK=$task }" "$DAEMON_LOG" 2>/dev/null |
                awk -F: -v a="$after" '$1 + 0 > a + 0 { print; exit }'
}

# ev_wait NAME AFTER_LINE [TASK] [SECONDS]: until ev NAME AFTER_LINE TASK finds a line (60 s).
ev_wait() { wait_for "${4:-60}" eval '[ -n "$(ev '"$1"' '"$2"' '"${3:-}"')" ]'; }

# lineno "LINENO:LINE" / line_of "LINENO:LINE" / time_of "LINENO:LINE" (ms since the epoch)
lineno() { echo "${1%%:*}"; }
line_of() { echo "${1#*:}"; }
time_of() { local l=${1#*:}; to_ms "${l%% *}"; }

# out_after TASK ERE [AFTER_LINE]: "LINENO:LINE" of the first output line of TASK after
# AFTER_LINE whose text (inside OUT="...") matches ERE (anchored at its start).
out_after() {
        grep -nE -- "^$RE_TIME TASK=$1 OUT=\"$2" "$DAEMON_LOG" 2>/dev/null |
                awk -F: -v a="${3:-0}" '$1 + 0 > a + 0 { print; exit }'
}

# out_count TASK ERE: how many output lines of TASK match.
out_count() {
        local n
        n=$(grep -cE "^$RE_TIME TASK=$1 OUT=\"$2" "$DAEMON_LOG" 2>/dev/null)
        echo "${n:-0}"
}

# step_of "LINENO:LINE": the number in a "checkpoint at step N" / "step N" / "resumed from step N" line.
step_of() { line_of "$1" | sed -nE 's/.*step ([0-9]+).*/\1/p'; }

# events_in_order LABEL NAME... : checks that after the last notice line (line $ORDER_FROM) each
# EVENT=NAME (of task $ORDER_TASK when set) comes after the previous one, in line order and in
# console time; sets ORDER_LINES (the "LINENO:LINE" found, one per line). 1 assertion.
events_in_order() {
        local label=$1 name prev=$ORDER_FROM prev_ms=0 got ms why="" chain
        shift
        chain="$*"
        chain=${chain// / < }
        ORDER_LINES=""
        for name in "$@"; do
                got=$(ev "$name" "$prev" "${ORDER_TASK:-}")
                if [ -z "$got" ]; then
                        why="no EVENT=$name after line $prev"
                        break
                fi
                ms=$(time_of "$got")
                if [ -z "$ms" ] || [ "$ms" -lt "$prev_ms" ]; then
                        why="EVENT=$name at line $(lineno "$got") has an earlier time than the line before it"
                        break
                fi
                ORDER_LINES="$ORDER_LINES$got$NL"
                prev=$(lineno "$got")
                prev_ms=$ms
        done
        if [ -z "$why" ]; then
                ok "$label: $chain"
        else
                not_ok "$label: $chain"
                diag "$why" "daemon log from line $ORDER_FROM:" "$(tail -n +"$ORDER_FROM" "$DAEMON_LOG" | head -n 60)"
        fi
}

# status_field EXPR: Python EXPR over d = `status --json` (json_get's output, strings quoted).
status_field() {
        "$TRAINSUPD" status --json >"$T/st.json" 2>>"$T/all-cmd.err" || {
                echo "ERROR: status failed"
                return
        }
        json_get "$T/st.json" "$1"
}

# phase_is PHASE: `status --json` says this phase.
phase_is() { [ "$(status_field 'd["phase"]')" = "\"$1\"" ]; }

# wait_phase PHASE [SECONDS]: until phase_is PHASE (60 s).
wait_phase() { wait_for "${2:-60}" phase_is "$1"; }

# snap_ids CONFIG [TASK]: the committed snapshot ids, oldest first, one per line.
snap_ids() {
        "$TRAINSUPD" snapshots --config "$1" ${2:+--task "$2"} --json >"$T/snaps.json" 2>>"$T/all-cmd.err" || return 1
        "$PYTHON" -c 'import json, sys; [print(s["id"]) for s in json.load(open(sys.argv[1]))]' "$T/snaps.json"
}

# restore_verify CONFIG TASK SNAPSHOT STEP DIR: `trainsupd restore` (of SNAPSHOT, or of the
# newest when SNAPSHOT is empty) into DIR, then demo-train --verify DIR --expect-step STEP; true
# when both succeed (their output in RV_OUT).
RV_OUT=""
restore_verify() {
        rm -rf "$5"
        RV_OUT=$("$TRAINSUPD" restore --config "$1" --task "$2" ${3:+--snapshot "$3"} --to "$5" 2>&1 &&
                "$PYTHON" "$DEMO_TRAIN" --verify "$5" --expect-step "$4" 2>&1)
        local rc=$?
        printf '%s\n' "$RV_OUT" >>"$T/all-cmd.err"
        return $rc
}

# no_sanitizer_findings: none in the daemons' logs and the commands' stderr. 1 assertion.
no_sanitizer_findings() {
        is "$(sanitizer_report "$T"/daemon-*.log "$T/all-cmd.err")" "" "no sanitizer findings"
}

# ---------------------------------------------------------------- logind (python3-dbusmock)

# lc_logind_start: a private bus as the system bus (DBUS_SYSTEM_BUS_ADDRESS exported for the
# daemon) with dbusmock's logind template on it; sets LOGIND_PID.
lc_logind_start() {
        local addr
        addr=$(dbus-daemon --session --print-address=1 --fork --print-pid=3 3>"$T/bus.pid") ||
                bail_out "cannot start dbus-daemon"
        track_pid "$(cat "$T/bus.pid")"
        export DBUS_SYSTEM_BUS_ADDRESS=$addr
        "$PYTHON" -m dbusmock --system --template logind >"$T/logind-mock.log" 2>&1 &
        LOGIND_PID=$!
        track_pid "$LOGIND_PID"
        wait_for 20 eval 'lc_logind calls >/dev/null 2>&1' || bail_out "the logind mock did not come up: $(cat "$T/logind-mock.log")"
}

# lc_logind OP [ARG]: talks to the logind mock.
#   calls                 its recorded calls, one "Method arg,arg" line each
#   clear                 forgets the recorded calls
#   inhibitors            the inhibitors it holds, one "what who mode" line each
#   add-poweroff-flags    adds PowerOffWithFlags(t) (the template has only PowerOff(b))
#   prepare true|false    emits PrepareForShutdown(b)
lc_logind() {
        "$PYTHON" - "$@" <<'EOF'
import dbus, os, sys
bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
obj = bus.get_object("org.freedesktop.login1", "/org/freedesktop/login1")
mock = dbus.Interface(obj, "org.freedesktop.DBus.Mock")
MGR = "org.freedesktop.login1.Manager"
op = sys.argv[1]
if op == "calls":
    for c in mock.GetCalls():
        print("%s %s" % (c[1], ",".join(str(int(a) if isinstance(a, (dbus.Boolean, dbus.UInt64, dbus.Int32, dbus.UInt32)) else a) for a in c[2])))
elif op == "clear":
    mock.ClearCalls()
elif op == "inhibitors":
    for i in obj.ListInhibitors(dbus_interface=MGR):
        print("%s %s %s" % (i[0], i[1], i[3]))
elif op == "add-poweroff-flags":
    mock.AddMethod(MGR, "PowerOffWithFlags", "t", "", "")
elif op == "prepare":
    mock.EmitSignal(MGR, "PrepareForShutdown", "b", [dbus.Boolean(sys.argv[2] == "true")])
else:
    sys.exit("unknown op " + op)
EOF
}

# lc_poweroff_calls: the recorded PowerOff / PowerOffWithFlags calls, one per line.
lc_poweroff_calls() { lc_logind calls | grep -E '^PowerOff(WithFlags)? ' || true; }

# lc_n_poweroff: how many of them.
lc_n_poweroff() { lc_poweroff_calls | grep -c . || true; }

# lc_inhibited: the mock holds trainsupd's shutdown delay inhibitor.
lc_inhibited() { lc_logind inhibitors | grep -qx 'shutdown trainsupd delay'; }

# lc_systemd_start: dbusmock's systemd template on the same private bus (after lc_logind_start),
# for the daemon's SystemState question on SIGTERM.
lc_systemd_start() {
        "$PYTHON" -m dbusmock --system --template systemd >"$T/systemd-mock.log" 2>&1 &
        track_pid $!
        wait_for 20 eval 'lc_systemd_state running >/dev/null 2>&1' ||
                bail_out "the systemd mock did not come up: $(cat "$T/systemd-mock.log")"
}

# lc_systemd_state STATE: what the mock's Manager.SystemState says from now on.
lc_systemd_state() {
        "$PYTHON" - "$1" <<'PY'
import dbus, os, sys
bus = dbus.bus.BusConnection(os.environ["DBUS_SYSTEM_BUS_ADDRESS"])
obj = bus.get_object("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
iface = "org.freedesktop.systemd1.Manager"
try:
    obj.Set(iface, "SystemState", sys.argv[1], dbus_interface="org.freedesktop.DBus.Properties")
except dbus.exceptions.DBusException:
    obj.AddProperty(iface, "SystemState", sys.argv[1], dbus_interface="org.freedesktop.DBus.Mock")
got = obj.Get(iface, "SystemState", dbus_interface="org.freedesktop.DBus.Properties")
sys.exit(0 if got == sys.argv[1] else 1)
PY
}
