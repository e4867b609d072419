#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2016,SC2119,SC2120 # the task scripts expand in the container's shell; helpers with optional arguments
# runtime "docker" when things go wrong, against a real (private, rootful) Podman (podman-lib.sh):
# the engine's socket is missing; the daemon may not connect to it (run as an unprivileged user:
# root would bypass the socket's mode); the image is missing with pull "never" and with pull
# "missing" (no registry reachable: the pull fails cleanly); the command does not exist in the
# image; the container is removed behind the daemon's back (a restart, then failed); the daemon
# is killed between create and its answer, and between start and its answer
# (docker-record-proxy.py stalls the answer): the next daemon ends up with exactly one running
# container; the API service restarts under a running task; the log stream ends before the wait
# answers, comes back empty for a container that exits at once, or is cut short while the container
# runs (the proxy answers the follow itself): every line once. In every case: an EVENT=error or
# task-exited that says what happened, a documented task state in status, no crash.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/task-lib.sh"
. "$TESTS_DIR/podman-lib.sh"

plan 69

CK=$T/ck
mkdir -p "$CK"
IMG="\"image\": \"$TEST_IMAGE\""
NET='"network": "none"'
NO_RESTART='"restart": {"max": 0, "backoff_s": 1, "backoff_max_s": 1}'
ONE_RESTART='"restart": {"max": 1, "backoff_s": 1, "backoff_max_s": 1}'
STATES='pending|pulling|starting|running|stopping|exited|failed|completed'
MISSING_IMAGE=localhost/trainsupd-missing:latest
QUITTABLE='echo ready
while [ ! -e "$TRAINSUPD_CHECKPOINT_DIR/quit" ]; do sleep 0.2; done
echo bye'

docker_task() {
        local name=$1 script=$2
        shift 2
        sh_task "$name" "$script" "$IMG" "$NET" "\"checkpoint_dir\": \"$CK/$JOB-$name\"" "$@"
}
cid() { field "$(ev_lines task-started "$1" | tail -n 1)" CONTAINER; }
same_id() { [ -n "$1" ] && [ -n "$2" ] && { [[ $1 == "$2"* ]] || [[ $2 == "$1"* ]]; }; }
job_gone() { wait_for "${2:-10}" eval '[ "$(pm_job_count '"$1"')" = 0 ]'; }

# error_like TASK ERE DESC [SECONDS]: an EVENT=error line of TASK matches ERE. 1 assertion.
error_like() {
        local l
        wait_ev error "$1" 1 "${4:-10}" "$2"
        l=$(ev_lines error "$1" | grep -E -- "$2" | head -n 1)
        if [ -n "$l" ]; then ok "$3"; else
                not_ok "$3"; diag "no EVENT=error TASK=$1 matching: $2" "errors: $(ev_lines error "$1")" "$(log_tail 15)"; fi
}

# state_failed TASK DESC: the task ends in state failed (status), within 15 s. 1 assertion.
state_failed() {
        if wait_state "$1" failed 15; then ok "$2"; else
                not_ok "$2"; diag "status: $(tstat "$1" t)" "$(log_tail 15)"; fi
}

# ================================================================ the socket is missing
JOB="f-nosock"
SOCK_FOR_DAEMON=$T/nowhere/docker.sock task_config "$T/nosock.json" $JOB "$(docker_task main 'echo hi' "$ONE_RESTART")"
start_daemon_ready "$T/nosock.json"
error_like main "$T/nowhere/docker\.sock" "socket missing: EVENT=error TASK=main names the socket"
like "$(tstat main 't["state"]')" "^\"($STATES)\"\$" "socket missing: status shows a documented state"
state_failed main "socket missing: a failed launch counts as a failure; after the restart the task is failed"
num_cmp "$(n_ev error main "$T/nowhere/docker\\.sock")" -ge 2 "... the restart tried again (two errors)"
check "socket missing: the daemon stays up" daemon_alive
term_daemon
is "$EXIT_CODE" 0 "SIGTERM: exit 0"

# ================================================================ permission denied on the socket
JOB="f-perm"
U=65534
chmod 755 "$T" # uid 65534 must reach its files under $T (the socket keeps its own mode, 0600)
if command -v setpriv >/dev/null && setpriv --reuid=$U --regid=$U --clear-groups test -x "$TRAINSUPD" 2>/dev/null &&
        ! setpriv --reuid=$U --regid=$U --clear-groups test -w "$PODMAN_SOCK" 2>/dev/null; then
        mkdir -p "$T/nobody/state" "$T/nobody/run"
        chown -R $U:$U "$T/nobody"
        task_config "$T/nobody/perm.json" $JOB "$(sh_task main 'echo hi' "$IMG" "$NET" "$NO_RESTART")"
        chmod 644 "$T/nobody/perm.json"
        printf '#!/bin/sh\nexec setpriv --reuid=%s --regid=%s --clear-groups "%s" "$@"\n' $U $U "$TRAINSUPD" >"$T/as-nobody"
        chmod 755 "$T/as-nobody"
        saved_control=$TRAINSUPD_CONTROL
        export TRAINSUPD_CONTROL=$T/nobody/run/control
        DAEMON_ENV=(TRAINSUPD_STATE_DIR="$T/nobody/state" TRAINSUPD_CONTROL="$TRAINSUPD_CONTROL")
        TRAINSUPD=$T/as-nobody start_daemon "$T/nobody/perm.json"
        unset DAEMON_ENV
        if wait_ready 10; then ok "the daemon runs as uid $U with its own state and control directories"; else
                not_ok "the daemon runs as uid $U"; diag "$(log_tail)"; fi
        error_like main "[Pp]ermission denied" "permission denied: EVENT=error TASK=main says permission denied"
        like "$(ev_lines error main | head -n 1)" "$PODMAN_SOCK" "... and names the socket"
        state_failed main "permission denied: the task is failed (no restarts configured)"
        check "permission denied: the daemon stays up" daemon_alive
        is "$(pm_job_count $JOB)" 0 "permission denied: no container"
        term_daemon
        is "$EXIT_CODE" 0 "SIGTERM: exit 0"
        export TRAINSUPD_CONTROL=$saved_control
else
        for d in "daemon as uid $U" "permission denied: error" "... names the socket" "... failed" "... stays up" "... no container" "... exit 0"; do
                skip "$d" "needs setpriv, a daemon binary uid $U can run, and a socket it cannot write"
        done
fi

# ================================================================ the image is missing
JOB="f-img"
task_config "$T/img.json" $JOB \
        "{\"name\": \"never\", \"image\": \"$MISSING_IMAGE\", \"pull\": \"never\", $NET, $NO_RESTART, \"checkpoint_dir\": \"$CK/$JOB-never\"}" \
        "{\"name\": \"missing\", \"image\": \"$MISSING_IMAGE\", \"pull\": \"missing\", $NET, $NO_RESTART, \"checkpoint_dir\": \"$CK/$JOB-missing\"}"
t0=$(now_ms)
start_daemon_ready "$T/img.json"
error_like never "trainsupd-missing" 'pull "never", image missing: EVENT=error TASK=never names the image'
is "$(n_ev image-pull never)" 0 'pull "never": no pull is attempted'
state_failed never 'pull "never": the task is failed'
wait_ev image-pull missing 2 20
like "$(nth_ev image-pull missing 1)" " IMAGE=\"?$MISSING_IMAGE\"? .*STATE=begin|STATE=begin .*IMAGE=\"?$MISSING_IMAGE" 'pull "missing": EVENT=image-pull STATE=begin with the image'
like "$(ev_lines image-pull missing | tail -n 1)" " STATE=failed( |\$)" 'pull "missing" with no registry: EVENT=image-pull STATE=failed'
error_like missing "trainsupd-missing" 'pull "missing": EVENT=error TASK=missing names the image'
state_failed missing 'pull "missing": the task is failed'
num_cmp $(($(now_ms) - t0)) -lt 20000 "the failed pull took less than 20 s"
is "$(pm_job_count $JOB)" 0 "a missing image: no container"
check "a missing image: the daemon stays up" daemon_alive
term_daemon

# ================================================================ the command is not in the image
JOB="f-cmd"
task_config "$T/cmd.json" $JOB \
        "{\"name\": \"abs\", $IMG, $NET, \"command\": [\"/nonexistent/trainsupd-cmd\"], $NO_RESTART, \"checkpoint_dir\": \"$CK/$JOB-abs\"}" \
        "{\"name\": \"bare\", $IMG, $NET, \"command\": [\"trainsupd-no-such-command\"], $NO_RESTART, \"checkpoint_dir\": \"$CK/$JOB-bare\"}"
start_daemon_ready "$T/cmd.json"
for task in abs bare; do
        wait_for 15 eval '[ "$(n_ev error '$task')" -ge 1 ] || [ "$(n_ev task-exited '$task')" -ge 1 ]'
        e=$(ev_lines error $task | head -n 1)
        x=$(ev_lines task-exited $task | head -n 1)
        if [[ $e =~ trainsupd-(cmd|no-such-command) ]] || [[ $x =~ \ EXIT_CODE=127\  ]]; then
                ok "command not found ($task): reported ($(if [ -n "$e" ]; then echo "EVENT=error: $(message "$e")"; else echo "exit 127"; fi))"
        else
                not_ok "command not found ($task): an EVENT=error naming the command, or EXIT_CODE=127"
                diag "error: $e" "exited: $x" "$(log_tail 15)"
        fi
        state_failed $task "command not found ($task): the task is failed"
done
if job_gone $JOB 10; then ok "command not found: no container is left behind"; else
        not_ok "command not found: no container is left behind"; diag "$(pm ps -a --filter label=trainsupd.job=$JOB)"; fi
check "command not found: the daemon stays up" daemon_alive
term_daemon

# ================================================================ the container is removed behind the daemon's back
JOB="f-rm"
task_config "$T/rm.json" $JOB "$(docker_task main 'echo ready; while :; do sleep 1; done' "$ONE_RESTART")"
start_daemon_ready "$T/rm.json"
wait_out main '^ready$' 15
id1=$(cid main)
pm rm -f -t 0 "$id1" >/dev/null
exited_like main 10 " (LOST=1|EXIT_CODE=[0-9]+|EXIT_SIGNAL=[A-Z]+) .*DECISION=restart " \
        "podman rm -f: task-exited (LOST=1 or the exit) DECISION=restart"
if wait_ev task-started main 2 10 && wait_out main '^ready$' 10 2; then ok "... and a new container runs"; else
        not_ok "... and a new container runs"; diag "$(log_tail)"; fi
id2=$(cid main)
isnt "$id2" "$id1" "... with a new id"
is "$(pm_job_count $JOB)" 1 "... exactly one container of the job exists"
pm rm -f -t 0 "$id2" >/dev/null
wait_ev task-exited main 2 10
like "$(nth_ev task-exited main 2)" " DECISION=failed " "removed again, no restarts left: DECISION=failed"
state_failed main "the task is failed"
l=$(nth_ev task-exited main 2)
if [[ $l == *" LOST=1"* ]]; then
        is "$(tstat main 't["exit_code"]')" null "LOST: status exit_code is null"
else
        skip "LOST: status exit_code is null" "the daemon saw an exit code first: $l"
fi
check "removed behind its back: the daemon stays up" daemon_alive
term_daemon
is "$EXIT_CODE" 0 "SIGTERM: exit 0"

# ================================================================ the daemon dies between create and its answer
JOB="f-create"
proxy_start --stall-path '/containers/create' --stall-s 30 --stall-count 1
SOCK_FOR_DAEMON=$PROXY_SOCK task_config "$T/create.json" $JOB "$(docker_task main "$QUITTABLE")"
start_daemon "$T/create.json"
if wait_for 15 eval '[ "$(pm_job_count '$JOB')" -ge 1 ]'; then ok "the create reached Podman (its answer is held back)"; else
        not_ok "the create reached Podman"; diag "$(cat "$PROXY_LOG")" "$(log_tail)"; fi
id1=$(pm_job_ids $JOB | head -n 1)
kill9_daemon
is "$(pm_state "$id1")" created "kill -9 before the create's answer: the container exists, never started"
start_daemon_ready "$T/create.json"
wait_ev task-started main 1 15
wait_out main '^ready$' 10
is "$(pm_job_count $JOB)" 1 "the next daemon: exactly one container of the job"
id=$(pm_job_ids $JOB | head -n 1)
is "$(pm_state "$id")" running "... and it runs"
if same_id "$id" "$id1"; then ok "... it is the container the first daemon created"; else
        not_ok "... it is the container the first daemon created"; diag "created: $id1, running: $id"; fi
touch "$CK/$JOB-main/quit"
wait_ev task-exited main 1 10
like "$(nth_ev task-exited main 1)" " EXIT_CODE=0 .*DECISION=completed " "it completes"
if job_gone $JOB; then ok "... and is removed"; else not_ok "... and is removed"; fi
term_daemon
proxy_stop

# ================================================================ the daemon dies between start and its answer
JOB="f-start"
proxy_start --stall-path '/containers/[^/]+/start' --stall-s 30 --stall-count 1
SOCK_FOR_DAEMON=$PROXY_SOCK task_config "$T/start.json" $JOB "$(docker_task main "$QUITTABLE")"
start_daemon "$T/start.json"
wait_for 15 eval '[ -n "$(pm_job_ids '$JOB')" ] && [ "$(pm_state "$(pm_job_ids '$JOB' | head -n 1)")" = running ]'
id1=$(pm_job_ids $JOB | head -n 1)
is "$(pm_state "$id1")" running "the start reached Podman (its answer is held back)"
kill9_daemon
start_daemon_ready "$T/start.json"
wait_ev task-started main 1 15
l=$(nth_ev task-started main 1)
if [[ $l == *" ADOPTED=1"* ]] && same_id "$(field "$l" CONTAINER)" "$id1"; then ok "the next daemon adopts that container (ADOPTED=1, same id)"; else
        not_ok "the next daemon adopts that container (ADOPTED=1, same id)"; diag "$l" "created: $id1"; fi
is "$(pm_job_count $JOB)" 1 "exactly one container of the job"
touch "$CK/$JOB-main/quit"
wait_ev task-exited main 1 10
like "$(nth_ev task-exited main 1)" " EXIT_CODE=0 .*DECISION=completed " "it completes"
if job_gone $JOB; then ok "... and is removed"; else not_ok "... and is removed"; fi
term_daemon
proxy_stop

# ================================================================ the API service restarts under a running task
JOB="f-svc"
task_config "$T/svc.json" $JOB "$(docker_task main "$QUITTABLE")"
start_daemon_ready "$T/svc.json"
wait_out main '^ready$' 15
id1=$(cid main)
podman_stop_service
sleep 1
podman_start_service
is "$(pm_state "$id1")" running "the container survives the API service's restart"
sleep 1
check "the API service restarts: the daemon stays up" daemon_alive
touch "$CK/$JOB-main/quit"
exited_like main 15 " EXIT_CODE=0 .*DECISION=completed " \
        "after the service's restart the daemon still sees the exit (EXIT_CODE=0 completed)"
if job_gone $JOB; then ok "... and removes the container"; else not_ok "... and removes the container"; fi
is "$(pm_job_count $JOB)" 0 "no second container was started"
term_daemon
is "$EXIT_CODE" 0 "SIGTERM: exit 0"

# ================================================================ the log stream ends long before the wait answers
# The container's output stream ends with the container; the wait's answer is held back 20 s. The
# exit must come from the inspect, the stream is not followed again, and the read after the exit
# (from a second before the last entry: since= counts whole seconds) delivers nothing twice.
JOB="f-latewait"
proxy_start --stall-path '/containers/[^/]+/wait' --stall-s 20 --stall-count 1
SOCK_FOR_DAEMON=$PROXY_SOCK task_config "$T/latewait.json" $JOB "$(docker_task main "$QUITTABLE" "$NO_RESTART")"
start_daemon_ready "$T/latewait.json"
wait_out main '^ready$' 15
touch "$CK/$JOB-main/quit"
exited_like main 12 " EXIT_CODE=0 .*DECISION=completed " \
        "the wait's answer held back: the exit is seen anyway (EXIT_CODE=0 completed)"
is "$(n_out main '^bye$')" 1 "... the container's last line is delivered once"
is "$(proxy_requests 'sum(1 for x in r if "/logs?follow=1" in x["path"])')" 1 "... its output was followed once"
is "$(proxy_requests 'sum(1 for x in r if "/logs?follow=0" in x["path"] and "timestamps=1" in x["path"])')" 1 \
        "... and read once more after the exit (follow=0, with time stamps)"
term_daemon
proxy_stop

# ================================================================ the follow misses the output of a container that exits at once
# An engine's follow can end before the lines of a container that has just exited (Podman's does,
# now and then): the proxy answers every logs?follow=1 with an empty stream. The read after the
# exit must deliver the output, stdout and stderr, once.
JOB="f-emptyfollow"
proxy_start --empty-path '/logs\?follow=1'
SOCK_FOR_DAEMON=$PROXY_SOCK task_config "$T/emptyfollow.json" $JOB \
        "$(docker_task main 'echo attempt; echo "a traceback" >&2; exit 3' "$NO_RESTART")"
start_daemon_ready "$T/emptyfollow.json"
exited_like main 15 " EXIT_CODE=3 " "follow answered empty: the exit is seen (EXIT_CODE=3)"
is "$(n_out main '^attempt$')" 1 "... its stdout line is delivered, once (read after the exit)"
is "$(n_out main '^a traceback$')" 1 "... and its stderr line"
is "$(proxy_requests 'sum(1 for x in r if x.get("emptied"))')" 1 "... the follow was answered empty (by the proxy)"
term_daemon
proxy_stop

# ================================================================ a follow cut short while the container runs
# The first follow comes back empty while the container runs: the daemon follows again from where
# it was, and every line comes once.
JOB="f-refollow"
proxy_start --empty-path '/logs\?follow=1' --empty-count 1
SOCK_FOR_DAEMON=$PROXY_SOCK task_config "$T/refollow.json" $JOB "$(docker_task main "echo early
sleep 2
$QUITTABLE" "$NO_RESTART")"
start_daemon_ready "$T/refollow.json"
if wait_out main '^ready$' 20; then ok "follow cut short: the daemon follows the running container again"; else
        not_ok "follow cut short: the daemon follows the running container again"; diag "$(log_tail)"; fi
touch "$CK/$JOB-main/quit"
wait_ev task-exited main 1 15
like "$(nth_ev task-exited main 1)" " EXIT_CODE=0 .*DECISION=completed " "... it completes"
is "$(out_lines main | tr '\n' ' ')" "early ready bye " "... every line once, in order"
is "$(proxy_requests 'sum(1 for x in r if "/logs?follow=1" in x["path"])')" 2 "... two follows (the first one empty)"
term_daemon
proxy_stop

is "$(sanitizer_report "$T"/daemon-*.log "$T/all-cmd.err")" "" "no sanitizer findings"
