#!/bin/bash
# SPDX-License-Identifier: MIT
# Checkpoint rounds asked for from outside (daemon/lifecycle-notice.c, ckpt-round.c), with
# scripts/demo-train as the job (exec runtime, file:// store):
#   `trainsupd checkpoint --task NAME --wait` answers after the commit, for that task only (two
#   tasks side by side, each with its own checkpoint directory and snapshots); `trainsupd
#   checkpoint` answers at once and the snapshots follow; `trainsupd stop --checkpoint` commits,
#   then stops the tasks, and the daemon stays up;
#   logind's PrepareForShutdown (python3-dbusmock) → a last-chance round (EVENT=notice
#   NOTICE_KIND=shutdown) and the delay inhibitor released;
#   kill -9 of the daemon in the middle of a notice round: its plain-child task dies with it
#   (PR_SET_PDEATHSIG), the next daemon on the same state directory starts exactly one task
#   instance, and the newest committed snapshot restores byte-exact.
# shellcheck disable=SC2016 # eval strings expand later
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/lifecycle-lib.sh"

lc_require
plan 43

fc_start

# ---- two tasks side by side
lc_vm two
CFG=$T/two.json
lc_config "$CFG" aws \
        "$(lc_task alpha --steps 100000 --step-seconds 0.1 --checkpoint-every 0 --size-mb 1),
         $(lc_task beta --steps 100000 --step-seconds 0.1 --checkpoint-every 0 --size-mb 2)"
start_daemon_ready "$CFG"
wait_for 30 eval '[ -n "$(out_after alpha "step 2\"")" ] && [ -n "$(out_after beta "step 2\"")" ]' ||
        diag "the tasks did not start: $(tail -n 20 "$DAEMON_LOG")"

# checkpoint --task alpha --wait: answers after the commit, with the id
run_cmd --timeout 60 "$TRAINSUPD" checkpoint --task alpha --wait
is "$RC" 0 "checkpoint --task alpha --wait: exit 0"
IDS_NOW=$(snap_ids "$CFG" alpha | tr '\n' ' ')
A1=$(sed -n 's/^alpha //p' <<<"$OUT")
is "$OUT" "alpha $A1${NL}beta (none)" "checkpoint --wait: prints each task's newest snapshot (beta has none)"
is "$IDS_NOW" "${A1:-x} " "checkpoint --wait: the snapshot is listed in the store when the command returns"
is "$(snap_ids "$CFG" beta | wc -l)" 0 "checkpoint --task alpha: beta has no snapshot"
REQ=$(ev checkpoint-requested 0 alpha)
NA=$(step_of "$(out_after alpha "checkpoint at step [0-9]+" "$(lineno "${REQ:-0:}")")")
is "$(n_events checkpoint-requested) $(out_count beta "checkpoint at")" "1 0" \
        "checkpoint --task alpha: only alpha was asked, beta wrote no checkpoint"
if [ -n "$NA" ] && restore_verify "$CFG" alpha "$A1" "$NA" "$T/alpha-1"; then
        ok "checkpoint --task alpha: the snapshot holds alpha's checkpoint of step $NA"
else
        not_ok "checkpoint --task alpha: the snapshot holds alpha's checkpoint of step $NA"
        diag "$RV_OUT"
fi
is "$(status_field '[d["phase"]] + [t["state"] for t in d["tasks"]]')" '["running", "running", "running"]' \
        "checkpoint --wait: the tasks keep running"

# checkpoint (no --wait): answers at once, both tasks get a snapshot afterwards
L0=$(wc -l <"$DAEMON_LOG")
run_cmd --timeout 30 "$TRAINSUPD" checkpoint
is "$RC:$OUT" "0:" "checkpoint without --wait: exit 0, nothing printed"
ev_wait snapshot-committed "$L0" alpha 60
ev_wait snapshot-committed "$L0" beta 60
A2=$(field "$(line_of "$(ev snapshot-committed "$L0" alpha)")" SNAPSHOT)
B2=$(field "$(line_of "$(ev snapshot-committed "$L0" beta)")" SNAPSHOT)
is "$(snap_ids "$CFG" alpha | tr '\n' ' ')|$(snap_ids "$CFG" beta | tr '\n' ' ')" "$A1 ${A2:-x} |${B2:-x} " \
        "checkpoint: a new snapshot of each task, each under its own task"
NB=$(step_of "$(out_after beta "checkpoint at step [0-9]+" "$L0")")
if [ -n "$NB" ] && restore_verify "$CFG" beta "$B2" "$NB" "$T/beta-2"; then
        ok "checkpoint: beta's snapshot holds its checkpoint of step $NB (2 MiB model)"
else
        not_ok "checkpoint: beta's snapshot holds its checkpoint of step $NB"
        diag "$RV_OUT"
fi

# stop --checkpoint: commit, then stop; the daemon stays up
L1=$(wc -l <"$DAEMON_LOG")
run_cmd --timeout 60 "$TRAINSUPD" stop --checkpoint
is "$RC" 0 "stop --checkpoint: exit 0"
A3=$(sed -n 's/^alpha //p' <<<"$OUT")
B3=$(sed -n 's/^beta //p' <<<"$OUT")
is "$(snap_ids "$CFG" alpha | tail -n 1) $(snap_ids "$CFG" beta | tail -n 1)" "${A3:-x} ${B3:-x}" \
        "stop --checkpoint: prints the snapshots it committed, listed in the store when it returns"
if [ -n "$A3" ] && [ "$A3" != "$A2" ] && [ -n "$B3" ] && [ "$B3" != "$B2" ]; then
        ok "stop --checkpoint: new snapshots for both tasks"
else
        not_ok "stop --checkpoint: new snapshots for both tasks"
        diag "before: $A2 $B2, reply: $OUT"
fi
for t in alpha beta; do
        ORDER_FROM=$L1 ORDER_TASK=$t
        events_in_order "stop --checkpoint: $t" checkpoint-requested checkpoint-settled snapshot-committed task-exited
done
ORDER_TASK=""
wait_for 20 eval '[ "$(status_field "[t[\"state\"] for t in d[\"tasks\"]]")" = "[\"exited\", \"exited\"]" ]'
is "$(status_field '[t["state"] for t in d["tasks"]]')" '["exited", "exited"]' "stop --checkpoint: both tasks exited; the daemon still answers"
N3=$(step_of "$(out_after beta "checkpoint at step [0-9]+" "$L1")")
if [ -n "$N3" ] && restore_verify "$CFG" beta "" "$N3" "$T/beta-3"; then
        ok "stop --checkpoint: restore of beta's newest gives step $N3"
else
        not_ok "stop --checkpoint: restore of beta's newest gives step $N3"
        diag "$RV_OUT"
fi
stop_daemon "two tasks"

# ---- PrepareForShutdown from logind: the last-chance round
if ! command -v dbus-daemon >/dev/null || ! "$PYTHON" -c 'import dbus, dbusmock' 2>/dev/null; then
        for i in $(seq 15); do skip "PrepareForShutdown, SIGTERM ($i)" "needs dbus-daemon and python3-dbusmock"; done
else
        lc_logind_start
        lc_vm shutdown
        SCFG=$T/shutdown.json
        CFG_JOB_ID=t-life-shutdown lc_config "$SCFG" aws \
                "$(lc_task trainer --steps 100000 --step-seconds 0.1 --checkpoint-every 0)"
        start_daemon_ready "$SCFG"
        wait_for 30 eval '[ -n "$(out_after trainer "step 2\"")" ]'
        if wait_for 20 lc_inhibited; then ok "shutdown: the daemon holds a shutdown delay inhibitor"; else
                not_ok "shutdown: the daemon holds a shutdown delay inhibitor"; diag "$(lc_logind inhibitors)"; fi
        lc_logind prepare true
        wait_phase drained 60 || diag "shutdown: no phase drained: $(tail -n 20 "$DAEMON_LOG")"
        NL_=$(ev notice 0)
        is "$(field "$(line_of "$NL_")" NOTICE_KIND)" shutdown "shutdown: EVENT=notice NOTICE_KIND=shutdown"
        DL=$(field "$(line_of "$NL_")" DEADLINE_USEC)
        ORDER_FROM=0
        events_in_order shutdown notice checkpoint-requested checkpoint-settled snapshot-committed task-exited
        COM=$(sed -n 4p <<<"$ORDER_LINES")
        if [ -n "$DL" ] && [ -n "$COM" ] && [ "$(time_of "$COM")" -lt $((DL / 1000)) ]; then
                ok "shutdown: committed before the shutdown window's end"
        else
                not_ok "shutdown: committed before the shutdown window's end"
                diag "deadline $DL, committed: $COM"
        fi
        if wait_for 20 eval '! lc_inhibited'; then ok "shutdown: the inhibitor is released after the round"; else
                not_ok "shutdown: the inhibitor is released after the round"; diag "$(lc_logind inhibitors)"; fi
        is "$(status_field '[d["phase"], d["notice"]["kind"], d["tasks"][0]["state"]]')" '["drained", "shutdown", "exited"]' \
                "shutdown: status: phase drained, notice shutdown, task exited"
        NS=$(step_of "$(out_after trainer "checkpoint at step [0-9]+")")
        if [ -n "$NS" ] && restore_verify "$SCFG" trainer "" "$NS" "$T/shutdown-restored"; then
                ok "shutdown: the last-chance snapshot holds step $NS"
        else
                not_ok "shutdown: the last-chance snapshot holds step $NS"
                diag "$RV_OUT"
        fi
        is "$(lc_n_poweroff)" 0 "shutdown: the daemon does not power off itself"
        stop_daemon "shutdown"

        # SIGTERM: systemd's SystemState decides between "exit now" and a last-chance round.
        lc_systemd_start
        for state in running stopping; do
                lc_vm "sigterm-$state"
                CFG_JOB_ID=t-life-sigterm-$state lc_config "$T/sigterm.json" aws \
                        "$(lc_task trainer --steps 100000 --step-seconds 0.1 --checkpoint-every 0)"
                lc_systemd_state "$state" || diag "cannot set SystemState"
                start_daemon_ready "$T/sigterm.json"
                wait_for 30 eval '[ -n "$(out_after trainer "step 2\"")" ]'
                TPID=$(field "$(line_of "$(ev task-started 0 trainer)")" PID)
                kill -TERM "$DAEMON_PID"
                wait_exit "$DAEMON_PID" 60
                if [ "$state" = running ]; then
                        is "$EXIT_CODE $(n_events notice) $(n_events checkpoint-requested) $(n_events snapshot-committed)" "0 0 0 0" \
                                "SIGTERM, SystemState running: exit 0 at once, no checkpoint round"
                else
                        NL_=$(ev notice 0)
                        is "$EXIT_CODE $(field "$(line_of "$NL_")" NOTICE_KIND)" "0 shutdown" \
                                "SIGTERM, SystemState stopping: EVENT=notice NOTICE_KIND=shutdown, then exit 0"
                        ORDER_FROM=0
                        events_in_order "SIGTERM, SystemState stopping" stopping notice checkpoint-requested \
                                checkpoint-settled snapshot-committed task-exited
                        NS=$(step_of "$(out_after trainer "checkpoint at step [0-9]+")")
                        if [ -n "$NS" ] && restore_verify "$T/sigterm.json" trainer "" "$NS" "$T/sigterm-restored"; then
                                ok "SIGTERM, SystemState stopping: the last-chance snapshot holds step $NS"
                        else
                                not_ok "SIGTERM, SystemState stopping: the last-chance snapshot holds step $NS"
                                diag "$RV_OUT"
                        fi
                fi
                if wait_for 15 eval "! is_running ${TPID:-1}"; then ok "SIGTERM, SystemState $state: the plain-child task is stopped"; else
                        not_ok "SIGTERM, SystemState $state: the plain-child task is stopped"; fi
        done
        export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$T/no-system-bus
fi

# ---- kill -9 in the middle of a notice round, restart on the same state directory
fc POST /_fake/reset >/dev/null
lc_vm crash
KCFG=$T/crash.json
# Slow steps: the task answers the checkpoint signal at its next step boundary, 3 s after the
# one whose checkpoint was just committed, which leaves the round waiting for it long enough to
# kill the daemon in the middle. --steps 99991 marks the processes of this job.
CFG_JOB_ID=t-life-crash lc_config "$KCFG" aws \
        "$(lc_task trainer --steps 99991 --step-seconds 3 --checkpoint-every 1)"
start_daemon_ready "$KCFG"
CRASH_LOG=$DAEMON_LOG
OLD_PID=$(field "$(line_of "$(ev task-started 0 trainer)")" PID)
ev_wait snapshot-committed 0 trainer 30 || diag "crash: no background snapshot: $(tail -n 20 "$DAEMON_LOG")"
post aws spot-interruption in_s=60
ev_wait checkpoint-requested 0 trainer 30
kill -KILL "$DAEMON_PID"
wait_exit "$DAEMON_PID" 10
REQ=$(ev checkpoint-requested 0 trainer)
is "$(ev snapshot-committed "$(lineno "${REQ:-0:}")" trainer)|$EXIT_CODE" "|137" \
        "crash: the daemon was killed (SIGKILL) in the middle of the round, before its commit"
if wait_for 15 eval "! is_running ${OLD_PID:-1}"; then
        ok "crash: the task (pid $OLD_PID) died with the daemon (PR_SET_PDEATHSIG)"
else
        not_ok "crash: the task (pid $OLD_PID) died with the daemon (PR_SET_PDEATHSIG)"
        kill -KILL "$OLD_PID" 2>/dev/null
fi
# The newest snapshot the first daemon committed, and the step it holds.
LASTC=$(grep -nE "^$RE_TIME EVENT=snapshot-committed " "$CRASH_LOG" | tail -n 1)
SNAPK=$(field "$(line_of "$LASTC")" SNAPSHOT)
NK=$(grep -nE "^$RE_TIME TASK=trainer OUT=\"checkpoint at step" "$CRASH_LOG" |
        awk -F: -v c="$(lineno "${LASTC:-0:}")" '$1 + 0 < c + 0 { l = $0 } END { print l }')
NK=$(step_of "$NK")
is "$(snap_ids "$KCFG" trainer | tail -n 1)" "$SNAPK" "crash: the store's newest snapshot is the last one the daemon committed"
# The same VM's next daemon (the notice is gone: the tasks start again).
fc POST /_fake/reset >/dev/null
start_daemon_ready "$KCFG"
wait_for 30 eval '[ -n "$(out_after trainer "(resumed from|starting)")" ]'
wait_for 10 eval '[ -n "$(out_after trainer "step [0-9]+\"")" ]'
NEW_PID=$(field "$(line_of "$(ev task-started 0 trainer)")" PID)
PIDS=$(pgrep -f -- "demo-train --steps 99991" | tr '\n' ' ')
is "$(n_events task-started)|$PIDS" "1|${NEW_PID:-x} " "crash: the next daemon starts exactly one task instance, and it is the only one"
like "$(out_after trainer "resumed from")" "resumed from step $NK " "crash: the task resumes from step $NK, the newest committed checkpoint"
# INTERFACE.md: a checkpoint directory at least as new as the newest snapshot is kept (a reboot
# of the same VM). This one holds exactly that snapshot's checkpoint.
if grep -q "Keeping the checkpoint directory of task trainer" "$DAEMON_LOG" && ! grep -q "EVENT=restore-begin" "$DAEMON_LOG"; then
        ok "crash: the same VM keeps its checkpoint directory (identical to the newest snapshot)"
else
        not_ok "crash: the same VM keeps its checkpoint directory (identical to the newest snapshot)"
fi
if [ -n "$NK" ] && restore_verify "$KCFG" trainer "$SNAPK" "$NK" "$T/crash-restored"; then
        ok "crash: the newest committed snapshot restores byte-exact (step $NK)"
else
        not_ok "crash: the newest committed snapshot restores byte-exact (step $NK)"
        diag "$RV_OUT"
fi
stop_daemon "crash: second daemon"
if wait_for 15 eval "! is_running ${NEW_PID:-1}"; then ok "crash: SIGTERM to the daemon stops its plain-child task"; else
        not_ok "crash: SIGTERM to the daemon stops its plain-child task"; fi
no_sanitizer_findings
