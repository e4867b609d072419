#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2016,SC2119,SC2120 # the task scripts expand in the task's shell; helpers with optional arguments
# runtime "exec" without systemd as PID 1 (a plain child of the daemon), end to end through the
# real daemon (docs/runtimes.md, INTERFACE.md): the task's environment (TRAINSUPD_*, the config's
# env, the default PATH), workdir, user, its checkpoint directory created by the daemon, its output
# as TASK=... OUT="..." lines; exit codes against success_exit_codes and the restart policy
# (restart, then failed; death by a signal); the checkpoint signal through `trainsupd checkpoint`;
# `trainsupd stop` (TERM reaches the task; a TERM-ignoring task and its children are KILLed after
# stop_grace_s; the daemon stays up); SIGTERM to the daemon (stops its children, exits 0, the next
# daemon runs the task again); kill -9 of the daemon (the child does not outlive it, a
# TERM-ignoring leftover is ended by the next daemon, which starts exactly one new child); a
# command that cannot be run.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/task-lib.sh"

plan 75

# With systemd as PID 1 the runtime would use transient units (another test's business).
[ -d /run/systemd/system ] && DAEMON_ENV=(TRAINSUPD_EXEC_MODE=child)

CK=$T/ck
mkdir -p "$CK"
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXEC='"runtime": "exec"'
NO_RESTART='"restart": {"max": 0, "backoff_s": 1, "backoff_max_s": 1}'
# A task that reports its pid, traps USR1 and TERM, and says "ready" once the traps are set.
TRAPPING='echo "$$" >>"$TRAINSUPD_CHECKPOINT_DIR/pids"
trap "echo got USR1" USR1
trap "echo got TERM; exit 0" TERM
echo ready
while :; do sleep 1 & wait $!; done'
# One that ignores TERM and has a child of its own (same process group).
STUBBORN='trap "" TERM
echo "$$" >>"$TRAINSUPD_CHECKPOINT_DIR/pids"
sleep 1000 &
echo "$!" >"$TRAINSUPD_CHECKPOINT_DIR/child.pid"
echo ready
while :; do sleep 1; done'

# started_pid TASK [N]: the PID= of the task's N-th (default last) task-started record.
started_pid() {
        local l
        if [ -n "${2:-}" ]; then l=$(nth_ev task-started "$1" "$2"); else l=$(ev_lines task-started "$1" | tail -n 1); fi
        field "$l" PID
}

# live_pids FILE: the pids listed in FILE that still run, space-separated.
live_pids() {
        local p out=""
        [ -f "$1" ] || return 0
        while read -r p; do pid_running "$p" && out="$out $p"; done <"$1"
        echo "${out# }"
}

# ================================================================ environment, output, exit 0
cat >"$T/notexec" <<'EOF'
#!/bin/sh
echo should not run
EOF
chmod 644 "$T/notexec"
task_config "$T/basic.json" x-basic \
        "$(sh_task main 'echo started
env | sort | sed "s/^/ENV /"
echo hello >"$TRAINSUPD_CHECKPOINT_DIR/from-task.txt"
echo "pwd=$(pwd)"' "$EXEC" '"env": {"FOO": "bar baz", "TRAINSUPD_JOB_ID": "spoof"}' \
                "\"checkpoint_dir\": \"$CK/basic-main\"" "\"workdir\": \"$T\"")" \
        "{\"name\": \"lookup\", $EXEC, \"command\": [\"printenv\", \"PATH\"], \"checkpoint_dir\": \"$CK/basic-lookup\"}" \
        "{\"name\": \"asuser\", $EXEC, \"command\": [\"id\", \"-u\"], \"user\": \"65534:65534\", \"checkpoint_dir\": \"$CK/basic-asuser\"}"
start_daemon_ready "$T/basic.json"

wait_ev task-exited main 1 15
l=$(nth_ev task-started main 1)
like "$l" "^$RE_TIME EVENT=task-started .*TASK=main .*RUNTIME=exec .*PID=[0-9]+ " "task-started TASK=main RUNTIME=exec PID=N"
unlike "$l" "ADOPTED=" "a fresh start is not ADOPTED"
is "$(out_lines main | head -n 1)" started "the task's first output line: TASK=main OUT=\"started\""
env_of() { out_lines main | sed -n "s/^ENV $1=//p"; }
is "$(env_of TRAINSUPD_CHECKPOINT_DIR)" "$CK/basic-main" "env: TRAINSUPD_CHECKPOINT_DIR is the task's checkpoint_dir"
is "$(env_of TRAINSUPD_JOB_ID)" x-basic "env: TRAINSUPD_JOB_ID is the job id (the config's env cannot override it)"
is "$(env_of TRAINSUPD_TASK)" main "env: TRAINSUPD_TASK"
is "$(env_of TRAINSUPD_RESUMED)" 0 "env: TRAINSUPD_RESUMED=0"
is "$(env_of TRAINSUPD_CHECKPOINT_SIGNAL)" SIGUSR1 "env: TRAINSUPD_CHECKPOINT_SIGNAL=SIGUSR1 (default)"
is "$(env_of TRAINSUPD_COMMIT_FILE)" "$CK/basic-main/.trainsupd-commit" "env: TRAINSUPD_COMMIT_FILE"
is "$(env_of FOO)" "bar baz" "env: the config's env (a value with a space)"
is "$(env_of PATH)" "$DEFAULT_PATH" "env: the default PATH"
is "$(out_lines main | grep '^pwd=')" "pwd=$T" "workdir is the task's working directory"
is "$(cat "$CK/basic-main/from-task.txt" 2>&1)" hello "the daemon created checkpoint_dir; the task wrote into it"
like "$(nth_ev task-exited main 1)" " EXIT_CODE=0 .*DECISION=completed .*RESTARTS=0 " "task-exited EXIT_CODE=0 DECISION=completed RESTARTS=0"
wait_ev task-exited lookup 1 10
is "$(out_lines lookup)" "$DEFAULT_PATH" "a bare command name is looked up in PATH (printenv PATH)"
wait_ev task-exited asuser 1 10
is "$(out_lines asuser)" 65534 "user \"65534:65534\": the task runs as that uid"
wait_state main completed 5
is "$(tstat main '[t["state"], t["exit_code"], t["restarts"]]')" '["completed", 0, 0]' "status: main completed, exit_code 0, restarts 0"
# The final snapshots (phase syncing) come between the last exit and phase completed.
wait_for 20 eval '[ "$(tstat main "d[\"phase\"]")" = "\"completed\"" ]'
is "$(json_get "$T/status.json" 'd["phase"]')" '"completed"' "status: phase completed when every task completed"
check "the daemon stays up after completion (on_complete none)" daemon_alive
term_daemon
is "$EXIT_CODE" 0 "SIGTERM with nothing running: exit 0"

# ================================================================ exit codes, restart policy
task_config "$T/policy.json" x-policy \
        "$(sh_task fail 'echo attempt; exit 3' "$EXEC" '"restart": {"max": 1, "backoff_s": 1, "backoff_max_s": 1}' \
                "\"checkpoint_dir\": \"$CK/policy-fail\"")" \
        "$(sh_task ok3 'exit 3' "$EXEC" '"success_exit_codes": [0, 3]' "$NO_RESTART" "\"checkpoint_dir\": \"$CK/policy-ok3\"")" \
        "$(sh_task sig 'kill -KILL $$' "$EXEC" "$NO_RESTART" "\"checkpoint_dir\": \"$CK/policy-sig\"")"
start_daemon_ready "$T/policy.json"
wait_ev task-exited fail 2 15
like "$(nth_ev task-exited fail 1)" " EXIT_CODE=3 .*DECISION=restart .*RESTARTS=0 " "exit 3, restarts left: task-exited EXIT_CODE=3 DECISION=restart RESTARTS=0"
l=$(nth_ev task-restart fail 1)
like "$l" " RESTARTS=1 .*DELAY_MS=1000( |\$)" "task-restart RESTARTS=1 DELAY_MS=1000 (backoff_s 1)"
gap=$(($(ts_ms "$(nth_ev task-started fail 2)") - $(ts_ms "$(nth_ev task-exited fail 1)")))
num_cmp "$gap" -ge 900 "the restart waits for the back-off (${gap} ms between exit and start)"
like "$(nth_ev task-exited fail 2)" " EXIT_CODE=3 .*DECISION=failed .*RESTARTS=1 " "no restarts left: DECISION=failed RESTARTS=1"
is "$(n_out fail '^attempt$')" 2 "the task ran twice (two \"attempt\" lines)"
wait_state fail failed 5
is "$(tstat fail '[t["state"], t["exit_code"], t["restarts"]]')" '["failed", 3, 1]' "status: fail failed, exit_code 3, restarts 1"
wait_ev task-exited ok3 1 5
like "$(nth_ev task-exited ok3 1)" " EXIT_CODE=3 .*DECISION=completed " "success_exit_codes [0, 3]: exit 3 completes"
is "$(tstat ok3 '[t["state"], t["exit_code"]]')" '["completed", 3]' "status: ok3 completed, exit_code 3"
wait_ev task-exited sig 1 5
like "$(nth_ev task-exited sig 1)" " EXIT_SIGNAL=SIGKILL .*DECISION=failed " "death by SIGKILL: EXIT_SIGNAL=SIGKILL DECISION=failed"
unlike "$(nth_ev task-exited sig 1)" " EXIT_CODE=" "... and no EXIT_CODE"
is "$(tstat sig '[t["state"], t["exit_code"], t["exit_signal"]]')" '["failed", null, "SIGKILL"]' \
        "status: sig failed, exit_code null, exit_signal SIGKILL"
wait_for 20 eval '[ "$(tstat sig "d[\"phase\"]")" = "\"failed\"" ]'
is "$(json_get "$T/status.json" 'd["phase"]')" '"failed"' "status: phase failed when all settled and one failed"
check "the daemon stays up after a failure" daemon_alive
term_daemon
is "$EXIT_CODE" 0 "SIGTERM after failures: exit 0"

# ================================================================ checkpoint signal, trainsupd stop
task_config "$T/stop.json" x-stop \
        "$(sh_task main "$TRAPPING" "$EXEC" "\"checkpoint_dir\": \"$CK/stop-main\"")" \
        "$(sh_task stubborn "$STUBBORN" "$EXEC" '"stop_grace_s": 2' "\"checkpoint_dir\": \"$CK/stop-stubborn\"")"
start_daemon_ready "$T/stop.json"
wait_out main '^ready$' 10 && wait_out stubborn '^ready$' 10
pid=$(started_pid main)
is "$(tstat main '[t["state"], t["container"]]')" "[\"running\", \"pid:$pid\"]" "status: running, container \"pid:N\" (the PID of task-started)"
is "$pid" "$(head -n 1 "$CK/stop-main/pids" 2>/dev/null)" "task-started PID is the task's own pid"
run_cmd "$TRAINSUPD" checkpoint --task main
if [ "$RC" -eq 69 ]; then
        skip "trainsupd checkpoint --task main: exit 0" "checkpoint not available: $ERR"
        skip "the task's USR1 trap ran" "checkpoint not available"
else
        is "$RC" 0 "trainsupd checkpoint --task main: exit 0"
        if wait_out main '^got USR1$' 5; then ok "the task's USR1 trap ran (TASK=main OUT=\"got USR1\")"; else
                not_ok "the task's USR1 trap ran"; diag "$(log_tail)"; fi
fi
is "$(n_out stubborn 'USR1')" 0 "checkpoint --task main signals only that task"
t0=$(now_ms)
run_cmd "$TRAINSUPD" stop
is "$RC" 0 "trainsupd stop: exit 0"
wait_ev task-exited main 1 10
if wait_out main '^got TERM$' 5; then ok "stop: TERM reached the task (its trap ran)"; else not_ok "stop: TERM reached the task"; fi
like "$(nth_ev task-exited main 1)" " EXIT_CODE=0 .*DECISION=stopped " "stop: task-exited EXIT_CODE=0 DECISION=stopped"
wait_ev task-exited stubborn 1 10
l=$(nth_ev task-exited stubborn 1)
like "$l" " (EXIT_SIGNAL=SIGKILL|EXIT_CODE=137) .*DECISION=stopped " "a TERM-ignoring task is KILLed: EXIT_SIGNAL=SIGKILL DECISION=stopped"
dt=$(($(ts_ms "$l") - t0))
if [ "$dt" -ge 1800 ] && [ "$dt" -le 6000 ]; then ok "... after stop_grace_s (2 s): ${dt} ms"; else
        not_ok "... after stop_grace_s (2 s)"; diag "the KILL came ${dt} ms after stop"; fi
child=$(cat "$CK/stop-stubborn/child.pid" 2>/dev/null)
if [ -n "$child" ] && wait_for 3 eval "! pid_running $child"; then ok "the KILL reached the task's child too (process group)"; else
        not_ok "the KILL reached the task's child too (process group)"; diag "child pid '$child' still runs"; fi
wait_state main exited 5
is "$(tstat main '[t["state"], t["exit_code"]]')" '["exited", 0]' "status: main exited, exit_code 0 (stopped, not completed)"
is "$(tstat stubborn '[t["state"], t["exit_code"], t["exit_signal"]]')" '["exited", null, "SIGKILL"]' "status: stubborn exited, exit_signal SIGKILL"
sleep 1.2 # no restart after a stop (the default back-off would be 10 s; look at the records instead)
is "$(n_ev task-restart)" 0 "no restart after a stop"
check "the daemon stays up after trainsupd stop" daemon_alive
term_daemon
is "$EXIT_CODE" 0 "SIGTERM after stop: exit 0"

# ================================================================ SIGTERM to the daemon
task_config "$T/term.json" x-term \
        "$(sh_task main "$TRAPPING" "$EXEC" "\"checkpoint_dir\": \"$CK/term-main\"")" \
        "$(sh_task stubborn "$STUBBORN" "$EXEC" '"stop_grace_s": 2' "\"checkpoint_dir\": \"$CK/term-stubborn\"")"
start_daemon_ready "$T/term.json"
wait_out main '^ready$' 10 && wait_out stubborn '^ready$' 10
p1=$(started_pid main)
p2=$(started_pid stubborn)
term_daemon 15
is "$EXIT_CODE" 0 "SIGTERM with running children: the daemon exits 0"
if [ "$TERM_MS" -ge 1800 ] && [ "$TERM_MS" -le 8000 ]; then ok "... after stopping them (grace 2 s for the TERM-ignoring one): ${TERM_MS} ms"; else
        not_ok "... after stopping them (grace 2 s for the TERM-ignoring one)"; diag "exit took ${TERM_MS} ms"; fi
is "$(n_out main '^got TERM$')" 1 "SIGTERM: the child got TERM (its trap ran)"
check "SIGTERM: no child is left (main pid $p1, stubborn pid $p2)" eval "! pid_running '$p1' && ! pid_running '$p2'"
child=$(cat "$CK/term-stubborn/child.pid" 2>/dev/null)
check "SIGTERM: nor a grandchild" eval "[ -n '$child' ] && ! pid_running '$child'"
like "$(nth_ev task-exited main 1)" " DECISION=stopped " "SIGTERM: task-exited DECISION=stopped"
# The next daemon (a package upgrade, systemctl restart) runs the job's tasks again.
start_daemon_ready "$T/term.json"
if wait_ev task-started main 1 10 && wait_out main '^ready$' 10; then ok "the next daemon starts the task again"; else
        not_ok "the next daemon starts the task again"; diag "$(log_tail)"; fi
term_daemon 15

# ================================================================ kill -9 of the daemon
task_config "$T/kill9.json" x-kill9 \
        "$(sh_task plain 'echo "$$" >>"$TRAINSUPD_CHECKPOINT_DIR/pids"; echo ready; while :; do sleep 1; done' "$EXEC" \
                '"stop_grace_s": 1' "\"checkpoint_dir\": \"$CK/kill9-plain\"")" \
        "$(sh_task stubborn "$STUBBORN" "$EXEC" '"stop_grace_s": 1' "\"checkpoint_dir\": \"$CK/kill9-stubborn\"")"
start_daemon_ready "$T/kill9.json"
wait_out plain '^ready$' 10 && wait_out stubborn '^ready$' 10
p1=$(started_pid plain)
p2=$(started_pid stubborn)
kill9_daemon
if wait_for 3 eval "! pid_running '$p1'"; then ok "kill -9 of the daemon: its child dies with it (PDEATHSIG)"; else
        not_ok "kill -9 of the daemon: its child dies with it (PDEATHSIG)"; diag "pid $p1 still runs"; fi
start_daemon_ready "$T/kill9.json"
wait_ev task-started plain 1 10
wait_ev task-started stubborn 1 10
wait_out stubborn '^ready$' 10
if wait_for 10 eval "! pid_running '$p2'"; then ok "the next daemon ends a TERM-ignoring leftover"; else
        not_ok "the next daemon ends a TERM-ignoring leftover"; diag "old stubborn pid $p2 still runs" "$(log_tail)"; fi
sleep 0.5
is "$(live_pids "$CK/kill9-plain/pids")" "$(started_pid plain)" "exactly one child of task plain runs: the new daemon's"
is "$(live_pids "$CK/kill9-stubborn/pids")" "$(started_pid stubborn)" "exactly one child of task stubborn runs: the new daemon's"
is "$(wc -l <"$CK/kill9-plain/pids")" 2 "plain was started twice in all (once per daemon)"
unlike "$(ev_lines task-started)" "ADOPTED=" "a plain child is never ADOPTED"
term_daemon 15
is "$EXIT_CODE" 0 "SIGTERM: exit 0"
check "no child is left after SIGTERM" eval "[ -z \"\$(live_pids '$CK/kill9-plain/pids')\" ] && [ -z \"\$(live_pids '$CK/kill9-stubborn/pids')\" ]"

# ================================================================ a command that cannot be run
task_config "$T/nf.json" x-nf \
        "{\"name\": \"abs\", $EXEC, \"command\": [\"/nonexistent/trainsupd-cmd\", \"arg\"], $NO_RESTART, \"checkpoint_dir\": \"$CK/nf-abs\"}" \
        "{\"name\": \"bare\", $EXEC, \"command\": [\"trainsupd-no-such-command\"], $NO_RESTART, \"checkpoint_dir\": \"$CK/nf-bare\"}" \
        "{\"name\": \"noexec\", $EXEC, \"command\": [\"$T/notexec\"], $NO_RESTART, \"checkpoint_dir\": \"$CK/nf-noexec\"}"
start_daemon_ready "$T/nf.json"
# cannot_run TASK WHAT ERE CODE: an EVENT=error naming WHAT and matching ERE, or an exit with CODE; then failed.
cannot_run() {
        local task=$1 what=$2 re=$3 code=$4 e x
        wait_for 10 eval '[ "$(n_ev error '"$task"')" -ge 1 ] || [ "$(n_ev task-exited '"$task"')" -ge 1 ]'
        e=$(ev_lines error "$task" | head -n 1)
        x=$(ev_lines task-exited "$task" | head -n 1)
        if [[ $e == *"$what"* && $e =~ $re ]] || [[ $x =~ \ EXIT_CODE=$code\  ]]; then
                ok "$task: reported ($(if [ -n "$e" ]; then echo "EVENT=error: $(message "$e")"; else echo "exit $code"; fi))"
        else
                not_ok "$task: an EVENT=error naming $what ($re), or EXIT_CODE=$code"
                diag "error: $e" "exited: $x" "$(log_tail)"
        fi
        if wait_state "$task" failed 5; then ok "$task: status failed (no restarts left)"; else
                not_ok "$task: status failed"; diag "$(tstat "$task" t)"; fi
}
cannot_run abs /nonexistent/trainsupd-cmd '[Nn]ot found|No such file' 127
cannot_run bare trainsupd-no-such-command '[Nn]ot found' 127
cannot_run noexec "$T/notexec" '[Pp]ermission denied' 126
is "$(out_lines noexec)" "" "the non-executable script did not run"
check "the daemon stays up" daemon_alive
term_daemon
is "$EXIT_CODE" 0 "SIGTERM: exit 0"

is "$(sanitizer_report "$T"/daemon-*.log "$T/all-cmd.err")" "" "no sanitizer findings"
