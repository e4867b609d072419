#!/bin/bash
# SPDX-License-Identifier: MIT
# scripts/demo-train on its own (no daemon), as a task would run under trainsupd (INTERFACE.md
# "What the training task is told"): a fresh start, periodic checkpoints, the checkpoint signal
# saving at the next step boundary and creating the commit file, kill -9 and resume from the
# saved step (TRAINSUPD_SNAPSHOT named), --verify, completion, --fail-at, SIGTERM exiting 143
# without saving, the signal taken from TRAINSUPD_CHECKPOINT_SIGNAL, --ignore-signal dying of
# it, and corrupt checkpoints refused with exit 2.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

plan 43

DEMO=$TOP_SRCDIR/scripts/demo-train
COMMIT=.trainsupd-commit

# demo_env DIR: the environment trainsupd gives a task whose checkpoint directory is DIR;
# $SIGNAME, $RESUMED and $SNAP override the signal, TRAINSUPD_RESUMED and TRAINSUPD_SNAPSHOT.
demo_env() {
        DENV=(TRAINSUPD_CHECKPOINT_DIR="$1" TRAINSUPD_COMMIT_FILE="$1/$COMMIT"
                TRAINSUPD_CHECKPOINT_SIGNAL="${SIGNAME:-SIGUSR1}" TRAINSUPD_RESUMED="${RESUMED:-0}"
                TRAINSUPD_JOB_ID=demo TRAINSUPD_TASK=main)
        [ -n "${SNAP:-}" ] && DENV+=(TRAINSUPD_SNAPSHOT="$SNAP")
        return 0
}
# run_demo DIR ARGS...: runs it to the end (run_cmd: RC, OUT, ERR).
run_demo() {
        local d=$1
        shift
        demo_env "$d"
        run_cmd --timeout 30 env "${DENV[@]}" "$DEMO" "$@"
}
# start_demo NAME DIR ARGS...: in the background; DPID, output in $T/NAME.out and $T/NAME.err.
start_demo() {
        local name=$1 d=$2
        shift 2
        demo_env "$d"
        env "${DENV[@]}" "$DEMO" "$@" </dev/null >"$T/$name.out" 2>"$T/$name.err" &
        DPID=$!
        track_pid "$DPID"
}
verify() { "$DEMO" --verify "$1" --expect-step "$2" >/dev/null 2>&1; }
listing() { find "$1" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | LC_ALL=C sort | tr '\n' ' '; }
# line_before FILE ERE: the line just before the first line matching ERE.
line_before() { awk -v re="$2" '$0 ~ re { print prev; exit } { prev = $0 }' "$1"; }

check "scripts/demo-train is executable" test -x "$DEMO"

# ---- a fresh run to completion: one final checkpoint, the commit file, no temporary files left
A=$T/a
run_demo "$A" --steps 4 --step-seconds 0.01 --checkpoint-every 0 --size-mb 0.25
is "$RC" 0 "a complete run exits 0"
is "$OUT" "starting fresh${NL}step 1${NL}step 2${NL}step 3${NL}step 4${NL}checkpoint at step 4${NL}done" \
        "it starts fresh, prints every step, saves once at the end, says done"
is "$(listing "$A")" "$COMMIT model.bin state.json " "the directory holds model.bin, state.json and the commit file, no temporary file"
is "$(stat -c %s "$A/model.bin")" 262144 "model.bin has the size --size-mb asks for"
is "$(json_get "$A/state.json" 'd["step"]')" 4 "state.json holds the step"
is "$(json_get "$A/state.json" 'd["sha256"]')" "\"$(sha256sum "$A/model.bin" | cut -d' ' -f1)\"" "state.json holds model.bin's sha256"

# ---- --verify
run_cmd "$DEMO" --verify "$A" --expect-step 4
is "$RC" 0 "--verify --expect-step 4 on a step-4 checkpoint: exit 0"
run_cmd "$DEMO" --verify "$A" --expect-step 3
like "$RC:$ERR" "^1:.*step 4" "--verify --expect-step 3 on a step-4 checkpoint: exit 1, naming step 4"
mkdir -p "$T/empty"
run_cmd "$DEMO" --verify "$T/empty"
is "$RC" 1 "--verify on a directory without a checkpoint: exit 1"

# ---- periodic checkpoints, and a run that is already done
P=$T/p
run_demo "$P" --steps 5 --step-seconds 0.01 --checkpoint-every 2 --size-mb 0.1
is "$RC:$(printf '%s\n' "$OUT" | grep '^checkpoint' | tr '\n' ,)" \
        "0:checkpoint at step 2,checkpoint at step 4,checkpoint at step 5," \
        "--checkpoint-every 2 --steps 5: checkpoints at steps 2 and 4, and the final one at 5"
run_demo "$P" --steps 5 --step-seconds 0.01
is "$RC:$OUT" "0:resumed from step 5 (local)${NL}done" "started again when all steps are done: resumes at 5, no step, done"

# ---- the checkpoint signal: saved at the next step boundary, commit file created, training goes on
B=$T/b
start_demo sig "$B" --steps 1000 --step-seconds 0.2 --checkpoint-every 0 --size-mb 0.5
SIGPID=$DPID
wait_for_log "$T/sig.out" '^step 2$' 10
is "$(listing "$B")" "" "before the signal: no checkpoint, no commit file"
kill -USR1 "$SIGPID"
if wait_for_log "$T/sig.out" '^checkpoint at step [0-9]+$' 10; then ok "SIGUSR1: a checkpoint is saved"; else
        not_ok "SIGUSR1: a checkpoint is saved"; diag "$(cat "$T/sig.out" "$T/sig.err")"; fi
N=$(sed -n 's/^checkpoint at step \([0-9]*\)$/\1/p' "$T/sig.out" | head -n 1)
is "$(line_before "$T/sig.out" '^checkpoint at step')" "step ${N:-?}" "the checkpoint is taken at a step boundary, right after its step"
check "the commit file exists after the save" test -e "$B/$COMMIT"
check "--verify confirms the checkpoint at step $N" verify "$B" "$N"
wait_for_log "$T/sig.out" "^step $((N + 2))\$" 10
check "training goes on after the checkpoint" is_running "$SIGPID"
is "$(grep -c '^checkpoint' "$T/sig.out")" 1 "one signal, one checkpoint (no periodic ones with --checkpoint-every 0)"
kill -KILL "$SIGPID"
wait_exit "$SIGPID" 5
is "$EXIT_CODE" 137 "kill -9 ends it"
check "after kill -9 the checkpoint is still the one of step $N" verify "$B" "$N"

# ---- resume from the saved step, not from the last step printed
RESUMED=1 SNAP=000000000007-20261123T160000123Z-abc run_demo "$B" --steps $((N + 3)) --step-seconds 0.01 --checkpoint-every 0
is "$RC" 0 "the resumed run completes: exit 0"
is "$(printf '%s\n' "$OUT" | head -n 2)" "resumed from step $N (000000000007-20261123T160000123Z-abc)${NL}step $((N + 1))" \
        "it resumes from step $N, names TRAINSUPD_SNAPSHOT, and goes on with step $((N + 1))"
is "$(printf '%s\n' "$OUT" | tail -n 2)" "checkpoint at step $((N + 3))${NL}done" "it ends with a final checkpoint and done"
check "--verify confirms the final checkpoint at step $((N + 3))" verify "$B" $((N + 3))
run_demo "$B" --steps $((N + 4)) --step-seconds 0.01
like "$OUT" "^resumed from step $((N + 3)) \(local\)$NL" "without TRAINSUPD_RESUMED=1 the snapshot is named 'local'"

# ---- --fail-at
F=$T/f
run_demo "$F" --steps 10 --step-seconds 0.01 --checkpoint-every 0 --fail-at 3
is "$RC" 3 "--fail-at 3: exit 3"
is "$(printf '%s\n' "$OUT" | tail -n 1)" "step 2" "--fail-at 3: step 3 never completes"
check "--fail-at: nothing saved" test ! -e "$F/state.json"

# ---- SIGTERM: exit 143 at once, without saving, even with a checkpoint asked for
S=$T/s
start_demo term "$S" --steps 10 --step-seconds 30 --checkpoint-every 1
wait_for_log "$T/term.out" '^starting fresh$' 10
kill -USR1 "$DPID"
kill -TERM "$DPID"
wait_exit "$DPID" 10
is "$EXIT_CODE" 143 "SIGTERM in the middle of a 30 s step: exit 143 well before the step ends"
unlike "$(cat "$T/term.out")" "checkpoint at" "SIGTERM: no checkpoint saved, though one was asked for"
is "$(listing "$S")" "" "SIGTERM: the checkpoint directory stays empty"

# ---- the signal's name comes from TRAINSUPD_CHECKPOINT_SIGNAL; without a handler it kills
U=$T/u
SIGNAME=USR2 start_demo usr2 "$U" --steps 1000 --step-seconds 0.1 --checkpoint-every 0 --size-mb 0.1
wait_for_log "$T/usr2.out" '^step 1$' 10
kill -USR2 "$DPID"
if wait_for_log "$T/usr2.out" '^checkpoint at step' 10; then ok "TRAINSUPD_CHECKPOINT_SIGNAL=USR2: SIGUSR2 asks for a checkpoint"; else
        not_ok "TRAINSUPD_CHECKPOINT_SIGNAL=USR2: SIGUSR2 asks for a checkpoint"; diag "$(cat "$T/usr2.out" "$T/usr2.err")"; fi
stop_pid "$DPID"
I=$T/i
start_demo ign "$I" --steps 1000 --step-seconds 0.1 --ignore-signal
wait_for_log "$T/ign.out" '^step 1$' 10
kill -USR1 "$DPID"
wait_exit "$DPID" 10
is "$EXIT_CODE" 138 "--ignore-signal: SIGUSR1 kills it (exit status 128+10)"
SIGNAME=none start_demo none "$I" --steps 1000 --step-seconds 0.1
wait_for_log "$T/none.out" '^step 1$' 10
kill -USR1 "$DPID"
wait_exit "$DPID" 10
is "$EXIT_CODE" 138 "TRAINSUPD_CHECKPOINT_SIGNAL=none: no handler, SIGUSR1 kills it"

# ---- corrupt checkpoints are refused with exit 2, never trained on
cp -a "$A" "$T/c1"
printf 'X' | dd of="$T/c1/model.bin" bs=1 seek=1000 conv=notrunc status=none
run_demo "$T/c1" --steps 8 --step-seconds 0.01
like "$RC:$ERR" "^2:.*sha256" "a model.bin with a changed byte: exit 2, the sha256 mismatch explained"
unlike "$OUT" "step" "a corrupt checkpoint: not one step trained"
run_cmd "$DEMO" --verify "$T/c1" --expect-step 4
is "$RC" 1 "--verify on the corrupt checkpoint: exit 1"
cp -a "$A" "$T/c2"
rm "$T/c2/model.bin"
run_demo "$T/c2" --steps 8 --step-seconds 0.01
like "$RC:$ERR" "^2:.*model\.bin" "state.json without model.bin: exit 2, model.bin named"
cp -a "$A" "$T/c3"
printf '{"step": 4, "sha' >"$T/c3/state.json"
run_demo "$T/c3" --steps 8 --step-seconds 0.01
like "$RC:$ERR" "^2:.*state\.json" "a truncated state.json: exit 2, state.json named"
cp -a "$A" "$T/c4"
"$PYTHON" -c 'import json, sys; p = sys.argv[1]; s = json.load(open(p)); s["step"] = 7; json.dump(s, open(p, "w"))' "$T/c4/state.json"
run_demo "$T/c4" --steps 8 --step-seconds 0.01
like "$RC:$ERR" "^2:.*step 7" "a state.json claiming another step for the same model.bin: exit 2"

# ---- leftovers of a save cut short: a temporary file is removed, model.bin alone is no checkpoint
L=$T/l
mkdir -p "$L"
head -c 5000 /dev/zero >"$L/model.bin"
head -c 100 /dev/zero >"$L/.model.bin.tmp.12345"
run_demo "$L" --steps 1 --step-seconds 0.01
is "$RC:$(printf '%s\n' "$OUT" | head -n 1)" "0:starting fresh" "model.bin without state.json (a first save cut short): starts fresh"
is "$(listing "$L")" "$COMMIT model.bin state.json " "the stale temporary file is gone"
