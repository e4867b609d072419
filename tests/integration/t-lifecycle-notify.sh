#!/bin/bash
# SPDX-License-Identifier: MIT
# The daemon's lifetime as systemd sees it: sd_notify (READY, STATUS, WATCHDOG, STOPPING),
# orderly exit on SIGTERM/SIGINT, directories it creates, the console log grammar, stale and
# contested control sockets, and a config it refuses.
# shellcheck disable=SC2016,SC2034 # eval strings expand later; DAEMON_* are read by lib.sh
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

plan 31

CONFIG=$T/good.json
write_config "$CONFIG" '"cloud": {"provider": "none"}'

# start_listener SOCKET OUT: a NOTIFY_SOCKET stand-in.
start_listener() {
        "$PYTHON" "$TESTS_DIR/notify-listen.py" "$1" "$2" &
        track_pid $!
        wait_for 10 test -S "$1" || bail_out "notify-listen.py did not come up"
}
count_lines() { grep -cx -- "$2" "$1" 2>/dev/null || true; }

[ -e "$TRAINSUPD_STATE_DIR" ] && bail_out "state dir exists before the daemon ran"

# ---- notify protocol, watchdog (WATCHDOG_PID = the daemon itself), SIGTERM
start_listener "$T/notify.sock" "$T/notify.out"
DAEMON_ENV=(NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=2000000)
DAEMON_WATCHDOG_PID_SELF=1
start_daemon "$CONFIG"
LOG1=$DAEMON_LOG
PID1=$DAEMON_PID
unset DAEMON_WATCHDOG_PID_SELF

if wait_for 10 grep -qx 'READY=1' "$T/notify.out"; then ok "READY=1 is sent"; else
        not_ok "READY=1 is sent"; diag "notify: $(cat "$T/notify.out")" "log: $(cat "$LOG1")"; fi
T_READY=$(now_ms)
if wait_for 5 grep -Eqx 'STATUS=.+' "$T/notify.out"; then ok "STATUS= is sent"; else
        not_ok "STATUS= is sent"; diag "notify: $(cat "$T/notify.out")"; fi
check "the daemon answers status once ready" wait_ready 5

# sd-event pings once when the watchdog is enabled, then every 1/2..3/4 of WATCHDOG_USEC
# (2 s): three pings within ~3 s show it keeps pinging (not just once at start).
wait_for 4 eval '[ "$(count_lines "$T/notify.out" WATCHDOG=1)" -ge 3 ]'
n_wd=$(count_lines "$T/notify.out" WATCHDOG=1)
num_cmp "$n_wd" -ge 3 "WATCHDOG=1 is sent repeatedly ($n_wd within $(($(now_ms) - T_READY)) ms of READY)"

check "the state directory was created" test -d "$TRAINSUPD_STATE_DIR"
check "the task's checkpoint directory was created" test -d "$TRAINSUPD_STATE_DIR/checkpoints/main"
is "$(stat -c '%F %a' "$TRAINSUPD_CONTROL" 2>&1)" "socket 660" "the control socket exists with mode 0660"

kill -TERM "$PID1"
wait_exit "$PID1" 5
is "$EXIT_CODE" 0 "SIGTERM: the daemon exits 0 promptly"
if wait_for 3 grep -qx 'STOPPING=1' "$T/notify.out"; then ok "STOPPING=1 is sent"; else
        not_ok "STOPPING=1 is sent"; diag "notify: $(cat "$T/notify.out")"; fi
check "the control socket is removed on exit" test ! -e "$TRAINSUPD_CONTROL"
has_line "$LOG1" "$(event_re started)" "console: an EVENT=started line in the INTERFACE.md grammar"
has_line "$LOG1" "^$RE_TIME EVENT=started .*PROVIDER=none( |\$)" "console: started names PROVIDER=none"
has_line "$LOG1" "$(event_re stopping)" "console: an EVENT=stopping line in the INTERFACE.md grammar"
bad=$(lines_not_matching "$LOG1" "$RE_ANY_LINE")
is "$bad" "" "console: every line of the log follows the grammar"

# ---- SIGINT; WATCHDOG_PID naming another process disables the watchdog (sd_watchdog_enabled(3))
start_listener "$T/notify2.sock" "$T/notify2.out"
DAEMON_ENV=(NOTIFY_SOCKET="$T/notify2.sock" WATCHDOG_USEC=200000 WATCHDOG_PID=$$)
start_daemon "$CONFIG"
PID2=$DAEMON_PID
LOG2=$DAEMON_LOG
DAEMON_ENV=()
if wait_for 10 grep -qx 'READY=1' "$T/notify2.out" && wait_ready 5; then ok "second start: READY=1 and status"; else
        not_ok "second start: READY=1 and status"; diag "log: $(cat "$LOG2")"; fi
# With a 200 ms period an enabled watchdog would have pinged 3+ times in 800 ms.
t_end=$(($(now_ms) + 800))
wait_for 1 eval '[ "$(count_lines "$T/notify2.out" WATCHDOG=1)" -gt 0 ] || [ "$(now_ms)" -ge '"$t_end"' ]'
is "$(count_lines "$T/notify2.out" WATCHDOG=1)" 0 "no WATCHDOG=1 when WATCHDOG_PID is another process"
kill -INT "$PID2"
wait_exit "$PID2" 5
is "$EXIT_CODE" 0 "SIGINT: the daemon exits 0"
has_line "$LOG2" "^$RE_TIME EVENT=stopping .*SIGNAL=SIGINT( |\$)" "console: stopping names SIGNAL=SIGINT"
check "the control socket is removed after SIGINT" test ! -e "$TRAINSUPD_CONTROL"

# ---- a stale socket left by a killed daemon is replaced
start_daemon_ready "$CONFIG"
{ kill -KILL "$DAEMON_PID"; wait_exit "$DAEMON_PID" 5; } 2>/dev/null # no "Killed" notice from bash
check "kill -9 leaves the control socket behind" test -S "$TRAINSUPD_CONTROL"
run_cmd "$TRAINSUPD" status
like "$RC:$ERR" "^69:.*not running" "status on the stale socket: exit 69, not running"
start_daemon "$CONFIG"
PID3=$DAEMON_PID
if wait_ready 10; then ok "the next daemon replaces the stale socket and answers"; else
        not_ok "the next daemon replaces the stale socket and answers"; diag "log: $(cat "$DAEMON_LOG")"; fi

# ---- a second daemon on the same control path refuses to start
run_cmd --timeout 10 "$TRAINSUPD" run --config "$CONFIG" --log-target=console
if [ "$RC" -ne 0 ] && [ "$RC" -ne 124 ]; then ok "a second daemon on the same socket exits non-zero ($RC)"; else
        not_ok "a second daemon on the same socket exits non-zero"; diag "rc=$RC" "stderr: $ERR"; fi
like "$ERR" "(nother|already).*$TRAINSUPD_CONTROL|$TRAINSUPD_CONTROL.*(nother|already)" \
        "the refusal says another daemon holds $TRAINSUPD_CONTROL"
check "the first daemon still answers" status_ok
kill -TERM "$PID3"
wait_exit "$PID3" 5
is "$EXIT_CODE" 0 "the first daemon exits 0 on SIGTERM"

# ---- an invalid config: exit 78, the problem on stderr, nothing bound
BAD=$T/bad.json
write_config "$BAD" '"cloud": {"provider": "none"}' '"tpyo": 1'
run_cmd --timeout 10 env TRAINSUPD_CONTROL="$T/run2/control" "$TRAINSUPD" run --config "$BAD" --log-target=console
is "$RC" 78 "run with an invalid config exits 78"
like "$ERR" "(^|$NL)tpyo: unknown key" "the problem line is on stderr"
err_line=$(printf '%s\n' "$ERR" | grep -E "^$RE_TIME EVENT=error " | head -n 1)
like "$err_line" "$(event_re error)" "the refusal is an EVENT=error console line"
check "nothing was bound for the invalid config" test ! -e "$T/run2/control"

# ---- sanitizers (when built with --enable-sanitizers) found nothing
is "$(sanitizer_report "$T"/daemon-*.log "$T/all-cmd.err")" "" "no sanitizer findings in the daemons' logs"
