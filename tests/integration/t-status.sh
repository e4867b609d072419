#!/bin/bash
# SPDX-License-Identifier: MIT
# `trainsupd status` (JSON and human) against a running daemon, provider detection from DMI and
# config, the CLI without a daemon, privileged verbs, and the command line's exit codes.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

plan 36

PHASES='starting|restoring|running|draining|drained|syncing|completed|failed|powering-off'

# status_json FILE: `trainsupd status --json` into FILE; sets RC.
status_json() {
        run_cmd --timeout 15 "$TRAINSUPD" status --json
        printf '%s\n' "$OUT" >"$1"
}

stop_daemon() {
        kill -TERM "$DAEMON_PID"
        wait_exit "$DAEMON_PID" 10
}

# ---- provider "auto" on a fake EC2 (DMI), default task name
printf 'Amazon EC2\n' >"$TRAINSUPD_DMI_DIR/sys_vendor"
printf 'Amazon EC2\n' >"$TRAINSUPD_DMI_DIR/bios_vendor"
# A task that runs until stopped and answers the checkpoint signal.
CFG_TASKS='[{"runtime": "exec", "stop_grace_s": 5, "command": ["/bin/sh", "-c", "trap \"echo got-usr1\" USR1; echo ready; while :; do sleep 0.1; done"]}]' \
        write_config "$T/auto.json" '"checkpoint": {"timeout_s": 2}'
start_daemon_ready "$T/auto.json"
wait_for_log "$DAEMON_LOG" 'OUT="ready"' 10 || diag "the task did not start: $(cat "$DAEMON_LOG")"

S=$T/status1.json
status_json "$S"
is "$RC" 0 "status --json exits 0"
if is_json "$S"; then ok "status --json prints one valid JSON document"; else
        not_ok "status --json prints one valid JSON document"; diag "$(cat "$S")" "stderr: $ERR"; fi
is "$(json_get "$S" 'd["version"]')" 1 "version is 1"
like "$(json_get "$S" 'd["phase"]')" "^\"($PHASES)\"\$" "phase is one of the documented phases"
is "$(json_get "$S" 'd["provider"]')" '"aws"' "provider auto + DMI sys_vendor \"Amazon EC2\" -> aws"
is "$(json_get "$S" 'len(d["tasks"])')" 1 "tasks has one entry"
is "$(json_get "$S" 'd["tasks"][0]["name"]')" '"main"' "tasks[0].name is the default \"main\""
is "$(json_get "$S" 'd["tasks"][0]["state"]')" '"running"' "tasks[0].state is running"
like "$(json_get "$S" '[d["tasks"][0][k] for k in ("container", "restarts", "exit_code")]')" '^\["pid:[0-9]+", 0, null\]$' \
        "tasks[0]: container pid:N, restarts 0, exit_code null"
is "$(json_get "$S" '[d["tasks"][0][k] for k in ("last_snapshot", "pending_bytes")]')" '[null, 0]' \
        "tasks[0]: last_snapshot null, pending_bytes 0"
is "$(json_get "$S" 'd["notice"]')" null "notice is null"
is "$(json_get "$S" 'd["last_snapshot"]')" null "last_snapshot is null"
is "$(json_get "$S" 'd["pending_bytes"]')" 0 "pending_bytes is 0"
is "$(json_get "$S" 'type(d["upload_rate_bps"]) in (int, float) and not isinstance(d["upload_rate_bps"], bool)')" \
        true "upload_rate_bps is a number"
phase=$(json_get "$S" 'd["phase"]')
phase=${phase//\"/}

run_cmd --timeout 15 "$TRAINSUPD" status
is "$RC" 0 "human status exits 0"
like "$OUT" "(^|[^a-z-])$phase([^a-z-]|\$)" "human status shows the phase ($phase)"
like "$OUT" "(^|[^a-z0-9-])main([^a-z0-9-]|\$)" "human status shows the task name"

# ---- privileged verbs as root: the daemon's own answer, not a hang
if [ "$(id -u)" -eq 0 ]; then
        run_cmd --timeout 15 "$TRAINSUPD" checkpoint
        if [ "$RC" -eq 0 ] && wait_for_log "$DAEMON_LOG" 'OUT="got-usr1"' 10; then
                ok "checkpoint as root: exit 0, the task gets the checkpoint signal"
        else
                not_ok "checkpoint as root: exit 0, the task gets the checkpoint signal"; diag "rc=$RC stderr: $ERR"
        fi
        # --wait: the task writes no checkpoint, so after checkpoint.timeout_s (2 s) its directory
        # is snapshotted as it is (empty) and the answer names that snapshot.
        run_cmd --timeout 30 "$TRAINSUPD" checkpoint --wait
        if [ "$RC" -eq 0 ] && [[ $OUT =~ ^main\ [0-9]{12}- ]]; then
                ok "checkpoint --wait: exit 0, prints the task's committed snapshot"
        else
                not_ok "checkpoint --wait: exit 0, prints the task's committed snapshot"; diag "rc=$RC out: $OUT stderr: $ERR"
        fi
        run_cmd --timeout 15 "$TRAINSUPD" stop
        if [ "$RC" -eq 0 ] && wait_for_log "$DAEMON_LOG" 'EVENT=task-exited TASK=main .*DECISION=stopped' 10; then
                ok "stop as root: exit 0, the task is stopped"
        else
                not_ok "stop as root: exit 0, the task is stopped"; diag "rc=$RC stderr: $ERR"
        fi
else
        skip "checkpoint as root: exit 0, the task gets the checkpoint signal" "not root"
        skip "checkpoint --wait: exit 0, prints the task's committed snapshot" "not root"
        skip "stop as root: exit 0, the task is stopped" "not root"
fi

# ---- a user outside root/group trainsupd cannot use the socket (mode 0660)
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && ! getent group trainsupd >/dev/null &&
        setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$TRAINSUPD" 2>/dev/null; then
        chmod 755 "$T"
        run_cmd --timeout 15 setpriv --reuid=65534 --regid=65534 --clear-groups "$TRAINSUPD" status
        like "$RC:$ERR" "^77:.*[Pp]ermission" "status as nobody: exit 77, permission denied"
else
        skip "status as nobody: exit 77, permission denied" "needs root, setpriv, no trainsupd group and a binary nobody can run"
fi

stop_daemon
is "$EXIT_CODE" 0 "the daemon exits 0 on SIGTERM"

# ---- no daemon
run_cmd --timeout 15 "$TRAINSUPD" status
like "$RC:$ERR" "^69:.*not running" "status without a daemon: exit 69, says it is not running"
run_cmd --timeout 15 "$TRAINSUPD" status --json
is "$RC:$OUT" "69:" "status --json without a daemon: exit 69, nothing on stdout"

# ---- cloud.provider "none" wins over DMI; a named task
CFG_TASKS='[{"name": "trainer", "runtime": "exec", "command": ["/bin/true"]}]' \
        write_config "$T/none.json" '"cloud": {"provider": "none"}'
start_daemon_ready "$T/none.json"
status_json "$T/status2.json"
is "$(json_get "$T/status2.json" 'd["provider"]')" '"none"' "cloud.provider none -> provider none (DMI says EC2)"
is "$(json_get "$T/status2.json" '[t["name"] for t in d["tasks"]]')" '["trainer"]' "tasks[].name follows the config"
stop_daemon

# ---- provider auto without any DMI data
rm -f "$TRAINSUPD_DMI_DIR"/*
write_config "$T/auto2.json" '"cloud": {"provider": "auto"}'
start_daemon_ready "$T/auto2.json"
status_json "$T/status3.json"
is "$(json_get "$T/status3.json" 'd["provider"]')" '"none"' "cloud.provider auto with an empty DMI dir -> none"
stop_daemon

# ---- the command line
run_cmd "$TRAINSUPD" --version
like "$RC:$OUT" "^0:trainsupd [0-9]+\.[0-9]+(\.[0-9]+)?" "--version: exit 0, prints the version"
run_cmd "$TRAINSUPD" --help
like "$RC:$OUT" "^0:.*Usage" "--help: exit 0, usage on stdout"
run_cmd "$TRAINSUPD"
like "$RC:$ERR" "^64:.*Usage" "bare trainsupd: exit 64, usage on stderr"
run_cmd "$TRAINSUPD" frobnicate
like "$RC:$ERR" "^64:.*frobnicate" "unknown command: exit 64, named"
run_cmd "$TRAINSUPD" status --bogus
is "$RC" 64 "unknown option: exit 64"
run_cmd "$TRAINSUPD" status --config /nonexistent
is "$RC" 64 "an option of another verb (status --config): exit 64"
run_cmd "$TRAINSUPD" status extra-argument
is "$RC" 64 "a stray argument: exit 64"
run_cmd "$TRAINSUPD" run --log-target=syslog --config "$T/auto2.json"
is "$RC" 64 "run --log-target with a bad value: exit 64"

is "$(sanitizer_report "$T"/daemon-*.log "$T/all-cmd.err")" "" "no sanitizer findings"
