#!/bin/bash
# SPDX-License-Identifier: MIT
# The job across VMs (daemon/lifecycle.c), with scripts/demo-train as the job, a file:// store
# shared by the "VMs" (each a fresh state directory), the fake cloud (AWS) and python3-dbusmock's
# logind on a private bus as the system bus:
#   boot 1: fresh start, background snapshots of the periodic checkpoints, a spot notice → drained
#   boot 2: restore of the newest snapshot, the task resumes from its step (TRAINSUPD_RESUMED=1,
#           TRAINSUPD_SNAPSHOT), completes → final snapshot, completion marker, ONE power-off call
#   boot 3: the completion marker is found → power-off at once, the task never starts
# and: a job that fails for good (phase failed, no power-off), a restart of the same VM whose
# checkpoint directory is newer than the store (kept, not restored), and --dry-run (no D-Bus call).
# shellcheck disable=SC2016 # eval strings expand later
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/lifecycle-lib.sh"

lc_require
lc_require_dbusmock
plan 41

fc_start
lc_logind_start

# later_polls N: the daemon made N more AWS polls (a "little later" without a fixed sleep).
later_polls() { wait_requests aws "${1:-5}" || diag "the fake cloud saw fewer polls than expected"; }

CFG=$T/job.json
LC_ON_COMPLETE=poweroff lc_config "$CFG" aws \
        "$(lc_task trainer --steps 60 --step-seconds 0.1 --checkpoint-every 5 --size-mb 1)"

# ---- boot 1: fresh; periodic checkpoints are snapshotted in the background; a notice
lc_vm vm1
start_daemon_ready "$CFG"
if wait_for 20 lc_inhibited; then ok "boot 1: the daemon holds logind's shutdown delay inhibitor"; else
        not_ok "boot 1: the daemon holds logind's shutdown delay inhibitor"; diag "$(lc_logind inhibitors)"; fi
has_line "$DAEMON_LOG" 'OUT="starting fresh"' "boot 1: the task starts fresh"
is "$(n_events restore-begin)" 0 "boot 1: nothing to restore"
# Steps 5 and 10 are saved 0.5 s apart: each is its own background snapshot.
wait_events snapshot-committed 2 30 || diag "boot 1: fewer than 2 background snapshots: $(tail -n 20 "$DAEMON_LOG")"
is "$(($(n_events snapshot-committed) >= 2)) $(n_events checkpoint-requested) $(n_events notice)" "1 0 0" \
        "boot 1: the periodic checkpoints of steps 5 and 10 are committed in the background, unasked"
post aws spot-interruption in_s=60
wait_phase drained 60 || diag "boot 1: no phase drained: $(tail -n 20 "$DAEMON_LOG")"
REQ=$(ev checkpoint-requested 0)
N1=$(step_of "$(out_after trainer "checkpoint at step [0-9]+" "$(lineno "${REQ:-0:}")")")
C1=$(ev snapshot-committed "$(lineno "${REQ:-0:}")" trainer)
SNAP1=$(field "$(line_of "$C1")" SNAPSHOT)
if [ -n "$N1" ] && [ -n "$SNAP1" ] && [ "$N1" -lt 60 ]; then
        ok "boot 1: drained with the checkpoint of step $N1 committed as $SNAP1"
else
        not_ok "boot 1: drained with the checkpoint of step N committed"
        diag "N1=$N1 SNAP1=$SNAP1" "$(tail -n 30 "$DAEMON_LOG")"
fi
is "$(lc_n_poweroff)" 0 "boot 1: no power-off call for a notice"
stop_daemon "boot 1"
fc POST /_fake/reset >/dev/null

# ---- boot 2: a new VM restores, resumes, completes, powers off once
lc_vm vm2
lc_logind clear
start_daemon_ready "$CFG"
ev_wait completed 0 "" 60 || diag "boot 2: no EVENT=completed: $(tail -n 30 "$DAEMON_LOG")"
RB=$(ev restore-begin 0 trainer)
RD=$(ev restore-done 0 trainer)
TS=$(ev task-started 0 trainer)
is "$(field "$(line_of "$RB")" SNAPSHOT) $(field "$(line_of "$RD")" SNAPSHOT)" "$SNAP1 $SNAP1" \
        "boot 2: restore-begin and restore-done name the snapshot boot 1 committed"
if [ -n "$RD" ] && [ -n "$TS" ] && [ "$(lineno "$RB")" -lt "$(lineno "$RD")" ] && [ "$(lineno "$RD")" -lt "$(lineno "$TS")" ]; then
        ok "boot 2: restore-begin < restore-done < task-started"
else
        not_ok "boot 2: restore-begin < restore-done < task-started"
        diag "$RB" "$RD" "$TS"
fi
# demo-train prints the snapshot id only when TRAINSUPD_RESUMED=1 (else "local").
has_line "$DAEMON_LOG" "^$RE_TIME TASK=trainer OUT=\"resumed from step $N1 \\($SNAP1\\)\"\$" \
        "boot 2: the task resumes from step $N1 with TRAINSUPD_RESUMED=1 and TRAINSUPD_SNAPSHOT=$SNAP1"
is "$(out_count trainer "step $((N1 + 1))\"") $(out_count trainer "step $N1\"")" "1 0" \
        "boot 2: training goes on at step $((N1 + 1)), step $N1 is not done again"
ORDER_FROM=0 ORDER_TASK=""
events_in_order "boot 2" task-started task-exited completed poweroff
CF=$(ev completed 0)
LASTC=$(grep -nE "^$RE_TIME EVENT=snapshot-committed " "$DAEMON_LOG" | tail -n 1)
SNAPF=$(field "$(line_of "$LASTC")" SNAPSHOT)
num_cmp "$(lineno "${LASTC:-999999:}")" -lt "$(lineno "${CF:-0:}")" "boot 2: the last snapshot-committed comes before EVENT=completed"
is "$(snap_ids "$CFG" trainer | tail -n 1)" "$SNAPF" "boot 2: the final snapshot is the newest in the store"
if restore_verify "$CFG" trainer "" 60 "$T/final"; then ok "boot 2: the final snapshot restores to step 60"; else
        not_ok "boot 2: the final snapshot restores to step 60"; diag "$RV_OUT"; fi
PO=$(ev poweroff 0)
is "$(field "$(line_of "$PO")" DRY_RUN)" "" "boot 2: EVENT=poweroff without DRY_RUN"
wait_for 20 eval '[ "$(lc_n_poweroff)" -ge 1 ]'
later_polls 5
is "$(lc_poweroff_calls)" "PowerOff 0" "boot 2: exactly one power-off call: PowerOff(false) (the mock has no PowerOffWithFlags)"
if lc_inhibited; then not_ok "boot 2: the inhibitor is released before powering off"; else
        ok "boot 2: the inhibitor is released before powering off"; fi
is "$(status_field 'd["phase"]')" '"powering-off"' "boot 2: phase powering-off"
stop_daemon "boot 2"

# ---- boot 3: the job is complete: power off at once, start nothing
lc_vm vm3
lc_logind clear
lc_logind add-poweroff-flags
start_daemon_ready "$CFG"
ev_wait completion-found 0 "" 30 || diag "boot 3: no completion-found: $(tail -n 20 "$DAEMON_LOG")"
wait_for 20 eval '[ "$(lc_n_poweroff)" -ge 1 ]'
later_polls 5
isnt "$(ev completion-found 0)" "" "boot 3: EVENT=completion-found"
is "$(n_events task-started) $(out_count trainer '') $(n_events restore-begin)" "0 0 0" \
        "boot 3: no restore, the task never started, no output"
is "$(lc_poweroff_calls)" "PowerOffWithFlags 0" "boot 3: exactly one PowerOffWithFlags(0) (no PowerOff fallback)"
is "$(status_field 'd["phase"]')" '"powering-off"' "boot 3: phase powering-off"
stop_daemon "boot 3"

# ---- --dry-run: everything but the call
lc_vm dry
lc_logind clear
DCFG=$T/dry.json
CFG_JOB_ID=t-life-dry LC_ON_COMPLETE=poweroff lc_config "$DCFG" aws \
        "$(lc_task trainer --steps 5 --step-seconds 0.05 --checkpoint-every 0)"
start_daemon_ready "$DCFG" --dry-run
ev_wait poweroff 0 "" 30 || diag "dry run: no EVENT=poweroff: $(tail -n 20 "$DAEMON_LOG")"
later_polls 5
is "$(n_events completed) $(field "$(line_of "$(ev poweroff 0)")" DRY_RUN)" "1 1" "dry run: EVENT=completed, then EVENT=poweroff DRY_RUN=1"
is "$(lc_poweroff_calls)" "" "dry run: no power-off call on the bus"
stop_daemon "dry run"

# ---- a job that fails for good: phase failed, final snapshot, no power-off
lc_vm fail
lc_logind clear
FCFG=$T/fail.json
TASK=$(LC_TASK_EXTRA='"restart": {"max": 1, "backoff_s": 0}' \
        lc_task trainer --steps 50 --step-seconds 0.05 --checkpoint-every 3 --fail-at 8)
CFG_JOB_ID=t-life-fail LC_ON_COMPLETE=poweroff lc_config "$FCFG" aws "$TASK"
start_daemon_ready "$FCFG"
wait_phase failed 60 || diag "failing job: no phase failed: $(tail -n 30 "$DAEMON_LOG")"
later_polls 5
is "$(status_field '[d["phase"], d["tasks"][0]["state"], d["tasks"][0]["exit_code"], d["tasks"][0]["restarts"]]')" \
        '["failed", "failed", 3, 1]' "failing job: phase failed, task failed with exit code 3 after 1 restart"
is "$(n_events task-exited) $(n_events task-restart)" "2 1" "failing job: two runs (restart.max 1)"
has_line "$DAEMON_LOG" 'OUT="resumed from step 6 \(local\)"' "failing job: the restart resumes from the local checkpoint of step 6"
is "$(n_events completed) $(n_events poweroff)" "0 0" "failing job: no EVENT=completed, no EVENT=poweroff"
is "$(lc_poweroff_calls)" "" "failing job: no power-off call (on_failure is none)"
if restore_verify "$FCFG" trainer "" 6 "$T/fail-restored"; then ok "failing job: the newest snapshot holds step 6"; else
        not_ok "failing job: the newest snapshot holds step 6"; diag "$RV_OUT"; fi
stop_daemon "failing job"

# ---- the same VM restarts after a notice, with a checkpoint newer than the store: kept
lc_vm keep
KCFG=$T/keep.json
CFG_JOB_ID=t-life-keep lc_config "$KCFG" aws \
        "$(lc_task trainer --steps 100000 --step-seconds 0.1 --checkpoint-every 0)"
start_daemon_ready "$KCFG"
wait_for 30 eval '[ -n "$(out_after trainer "step 2\"")" ]'
post aws spot-interruption in_s=60
wait_phase drained 60 || diag "keep: no phase drained: $(tail -n 20 "$DAEMON_LOG")"
NK=$(step_of "$(out_after trainer "checkpoint at step [0-9]+")")
stop_daemon "keep: first run"
fc POST /_fake/reset >/dev/null
# Newer work in the checkpoint directory than in the store (two more steps saved locally).
TRAINSUPD_CHECKPOINT_DIR=$TRAINSUPD_STATE_DIR/checkpoints/trainer run_cmd --timeout 30 \
        "$PYTHON" "$DEMO_TRAIN" --steps $((NK + 2)) --step-seconds 0 --checkpoint-every 1
start_daemon_ready "$KCFG"
wait_for 30 eval '[ -n "$(out_after trainer "(resumed from|starting)")" ]'
has_line "$DAEMON_LOG" "Keeping the checkpoint directory of task trainer" "keep: \"Keeping the checkpoint directory\""
is "$(n_events restore-begin) $(n_events restore-done)" "0 0" "keep: no restore-begin, no restore-done"
has_line "$DAEMON_LOG" "OUT=\"resumed from step $((NK + 2)) \\(local\\)\"" \
        "keep: the task resumes from the local step $((NK + 2)) (TRAINSUPD_RESUMED=0), not the snapshot's $NK"
stop_daemon "keep: second run"
no_sanitizer_findings
