#!/bin/bash
# SPDX-License-Identifier: MIT
# Acting on eviction notices (daemon/lifecycle-notice.c, ckpt-round.c, task-sync.c), one cloud at
# a time against the fake cloud, with scripts/demo-train as the job (exec runtime, file:// store):
# an imminent notice makes the daemon ask the task for a checkpoint, wait for it to settle, commit
# it as a snapshot before the notice's deadline, stop the task and end in phase drained; the
# snapshot is listed and restores to exactly the checkpoint the task said it wrote. Azure's event
# is acknowledged only after the commit. An advisory notice (AWS rebalance) gets a snapshot
# without stopping anything.
# shellcheck disable=SC2016 # eval strings expand later
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/lifecycle-lib.sh"

lc_require
plan 55

fc_start

# imminent LABEL CLOUD KIND IN_S: one VM, one job, one notice. 10 assertions (11 on Azure).
imminent() {
        local label=$1 cloud=$2 kind=$3 in_s=$4 cfg=$T/$1.json notice_ln req set com ex dl_ms dl2 ck n st
        fc POST /_fake/reset >/dev/null
        lc_vm "$label"
        CFG_JOB_ID=t-life-$label lc_config "$cfg" "$cloud" \
                "$(lc_task trainer --steps 100000 --step-seconds 0.1 --checkpoint-every 0 --size-mb 2)"
        start_daemon_ready "$cfg"
        wait_for 30 eval '[ -n "$(out_after trainer "step 3\"")" ]' ||
                diag "$label: the task did not reach step 3: $(tail -n 20 "$DAEMON_LOG")"

        post "$cloud" "$kind" "in_s=$in_s"
        # The cloud's deadline, from the post time (the daemon may only see it later).
        dl_ms=$((POST_MS + in_s * 1000))
        wait_phase drained 60 || diag "$label: no phase drained within 60 s: $(status_field 'd["phase"]')"

        ORDER_FROM=0 ORDER_TASK=""
        notice_ln=$(ev notice 0)
        is "$(field "$(line_of "$notice_ln")" IMMINENT)" 1 "$label: EVENT=notice IMMINENT=1"
        ORDER_FROM=$(($(lineno "${notice_ln:-1:}") - 1))
        events_in_order "$label" notice checkpoint-requested checkpoint-settled snapshot-committed task-exited
        req=$(sed -n 2p <<<"$ORDER_LINES")
        set=$(sed -n 3p <<<"$ORDER_LINES")
        com=$(sed -n 4p <<<"$ORDER_LINES")
        ex=$(sed -n 5p <<<"$ORDER_LINES")
        is "$(field "$(line_of "$set")" REASON)" commit-file "$label: the checkpoint settled by the task's commit file"

        # Committed before the deadline: the one the daemon logged, and the one the cloud posted.
        dl2=$(field "$(line_of "$notice_ln")" DEADLINE_USEC)
        [ -n "$dl2" ] && [ $((dl2 / 1000)) -lt "$dl_ms" ] && dl_ms=$((dl2 / 1000))
        if [ -n "$com" ] && [ "$(time_of "$com")" -lt "$dl_ms" ]; then
                ok "$label: snapshot committed before the notice's deadline"
        else
                not_ok "$label: snapshot committed before the notice's deadline"
                diag "committed: $(line_of "$com")" "deadline: $dl_ms ms"
        fi

        # The checkpoint the task wrote after the request is what was committed.
        ck=$(out_after trainer "checkpoint at step [0-9]+" "$(lineno "${req:-0:}")")
        n=$(step_of "$ck")
        if [ -n "$ck" ] && [ "$(lineno "$ck")" -lt "$(lineno "${ex:-0:}")" ]; then
                ok "$label: the task wrote its checkpoint (step $n) after the request, before it was stopped"
        else
                not_ok "$label: the task wrote its checkpoint (step $n) after the request, before it was stopped"
                diag "checkpoint line: $ck" "exited: $ex"
        fi
        is "$(out_count trainer "checkpoint at step")" 1 "$label: exactly one checkpoint written (on the signal)"

        st=$(status_field '[d["phase"], d["tasks"][0]["state"], (d["tasks"][0]["last_snapshot"] or {}).get("id")]')
        SNAP=$(field "$(line_of "$com")" SNAPSHOT)
        is "$st" "[\"drained\", \"exited\", \"$SNAP\"]" "$label: status: phase drained, task exited, last_snapshot the committed one"

        is "$(snap_ids "$cfg" trainer | tail -n 1)" "$SNAP" "$label: trainsupd snapshots lists it as the newest"
        if [ -n "$n" ] && restore_verify "$cfg" trainer "" "$n" "$T/$label-restored"; then
                ok "$label: trainsupd restore --to DIR gives the checkpoint of step $n, byte-exact"
        else
                not_ok "$label: trainsupd restore --to DIR gives the checkpoint of step $n, byte-exact"
                diag "$RV_OUT"
        fi
        is "$(n_events deadline-risk)" 0 "$label: no deadline-risk"
        EX_LINE=$ex COM_LINE=$com
}

imminent aws aws spot-interruption 60
stop_daemon "aws"

imminent gce gce preempt 30
stop_daemon "gce"

imminent alibaba alibaba spot-interruption 60
stop_daemon "alibaba"

imminent azure azure preempt 60
# The acknowledgement comes after the commit and the stop. (POLL_MS is 200, below Azure's
# 250 ms request spacing: the acknowledgement must not starve behind the polls.)
EVENT_ID=$(reply EventId)
wait_for 20 eval '[ "$(fcq "len(d[\"azure\"][\"acks\"])")" -ge 1 ]'
ACK=$(fcq '[[a["event_id"], a["time"]] for a in d["azure"]["acks"]]')
ACK_ID=$(fcq 'd["azure"]["acks"][0]["event_id"]' | tr -d '"')
ACK_MS=$(to_ms "$(fcq 'd["azure"]["acks"][0]["time"]' | tr -d '"')")
is "$(fcq 'len(d["azure"]["acks"])') $ACK_ID" "1 $EVENT_ID" "azure: the Preempt event acknowledged once, by its EventId"
if [ -n "$ACK_MS" ] && [ -n "$EX_LINE" ] && [ "$ACK_MS" -ge "$(time_of "$COM_LINE")" ] &&
        [ "$ACK_MS" -ge "$(time_of "$EX_LINE")" ]; then
        ok "azure: acknowledged after snapshot-committed and task-exited"
else
        not_ok "azure: acknowledged after snapshot-committed and task-exited"
        diag "acks: $ACK" "committed: $COM_LINE" "exited: $EX_LINE"
fi
stop_daemon "azure"

# ---- advisory: AWS rebalance → a snapshot, the task keeps running
fc POST /_fake/reset >/dev/null
lc_vm rebalance
CFG=$T/rebalance.json
CFG_JOB_ID=t-life-rebalance lc_config "$CFG" aws \
        "$(lc_task trainer --steps 100000 --step-seconds 0.1 --checkpoint-every 0 --size-mb 1)"
start_daemon_ready "$CFG"
wait_for 30 eval '[ -n "$(out_after trainer "step 3\"")" ]' || diag "rebalance: the task did not reach step 3"
PID0=$(status_field 'd["tasks"][0]["container"]')
post aws rebalance
ev_wait snapshot-committed 0 trainer 60 || diag "rebalance: no snapshot committed: $(tail -n 20 "$DAEMON_LOG")"
NOTICE=$(ev notice 0)
is "$(field "$(line_of "$NOTICE")" NOTICE_KIND) $(field "$(line_of "$NOTICE")" IMMINENT)" "rebalance 0" \
        "rebalance: EVENT=notice NOTICE_KIND=rebalance IMMINENT=0"
ORDER_FROM=$(($(lineno "${NOTICE:-1:}") - 1)) ORDER_TASK=""
events_in_order rebalance notice checkpoint-requested checkpoint-settled snapshot-committed
COM=$(sed -n 4p <<<"$ORDER_LINES")
SNAP=$(field "$(line_of "$COM")" SNAPSHOT)
CK=$(out_after trainer "checkpoint at step [0-9]+" "$(lineno "$(sed -n 2p <<<"$ORDER_LINES")")")
N=$(step_of "$CK")
# Still training: more steps after the commit, the same process, phase running.
wait_for 30 eval '[ -n "$(out_after trainer "step [0-9]+\"" "$(lineno "${COM:-0:}")")" ]'
isnt "$(out_after trainer "step [0-9]+\"" "$(lineno "${COM:-0:}")")" "" "rebalance: the task prints more steps after the commit"
ST=$(status_field '[d["phase"], d["tasks"][0]["state"], d["tasks"][0]["container"], (d["last_snapshot"] or {}).get("id")]')
is "$ST" "[\"running\", \"running\", $PID0, \"$SNAP\"]" "rebalance: status: phase running, the same task process running, last_snapshot the new one"
is "$(n_events task-exited)" 0 "rebalance: no task-exited"
is "$(snap_ids "$CFG" trainer | tr '\n' ' ')" "$SNAP " "rebalance: trainsupd snapshots lists the one snapshot"
if [ -n "$N" ] && restore_verify "$CFG" trainer "$SNAP" "$N" "$T/rebalance-restored"; then
        ok "rebalance: the snapshot restores to the checkpoint of step $N"
else
        not_ok "rebalance: the snapshot restores to the checkpoint of step $N"
        diag "$RV_OUT"
fi
stop_daemon rebalance
no_sanitizer_findings
