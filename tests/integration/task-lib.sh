# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2016,SC2034,SC2119,SC2120 # eval strings expand later; variables for the tests; optional arguments
#
# Helpers for the task runtime tests (t-docker.sh, t-docker-faults.sh, t-exec.sh): the daemon's
# task records and task output on its console log (INTERFACE.md "Journal and console"), and a
# task's entry in `status --json`. Sourced after lib.sh. Every helper reads $LOG when set, else
# the log of the daemon started last ($DAEMON_LOG).

_tlog() { echo "${LOG:-$DAEMON_LOG}"; }

# out_lines TASK: the task's output lines (the OUT values, unquoted, \" and \\ undone), in order.
out_lines() {
        local f
        f=$(_tlog)
        [ -f "$f" ] || return 0
        grep -E "^$RE_TIME TASK=$1 OUT=" "$f" | sed -e 's/^[^ ]* TASK=[^ ]* OUT="//' -e 's/"$//' \
                -e 's/\\"/"/g' -e 's/\\\\/\\/g'
}

# n_out TASK ERE: how many output lines of TASK match ERE.
n_out() {
        local n
        n=$(out_lines "$1" | grep -cE -- "$2")
        echo "${n:-0}"
}

# wait_out TASK ERE [SECONDS] [N]: until at least N (default 1) output lines of TASK match ERE.
wait_out() { wait_for "${3:-15}" eval '[ "$(n_out "'"$1"'" "'"$2"'")" -ge '"${4:-1}"' ]'; }

# ev_lines NAME [TASK]: the EVENT=NAME lines (of TASK: a TASK=TASK field).
ev_lines() {
        local f
        f=$(_tlog)
        [ -f "$f" ] || return 0
        if [ -n "${2:-}" ]; then
                grep -E "^$RE_TIME EVENT=$1 " "$f" | grep -E " TASK=$2( |\$)" || true
        else
                grep -E "^$RE_TIME EVENT=$1 " "$f" || true
        fi
}

# n_ev NAME [TASK] [ERE]: how many EVENT=NAME lines (of TASK) match ERE.
n_ev() {
        local n
        n=$(ev_lines "$1" "${2:-}" | grep -cE -- "${3:-.}")
        echo "${n:-0}"
}

# nth_ev NAME TASK N [ERE]: the N-th (from 1) such line.
nth_ev() { ev_lines "$1" "$2" | grep -E -- "${4:-.}" | sed -n "$3p"; }

# wait_ev NAME TASK N [SECONDS] [ERE]: until there are at least N EVENT=NAME lines of TASK (matching ERE).
wait_ev() { wait_for "${4:-15}" eval '[ "$(n_ev "'"$1"'" "'"$2"'" "'"${5:-.}"'")" -ge '"$3"' ]'; }

# exited_like TASK SECONDS ERE DESC: the first task-exited of TASK comes within SECONDS and
# matches ERE. 1 assertion.
exited_like() {
        if wait_ev task-exited "$1" 1 "$2"; then
                like "$(nth_ev task-exited "$1" 1)" "$3" "$4"
        else
                not_ok "$4"; diag "no EVENT=task-exited TASK=$1 in $2 s" "$(log_tail)"
        fi
}

# field LINE KEY: the value of KEY= among a console line's fields (before MESSAGE), unquoted.
field() {
        local l=" ${1%% MESSAGE=*} " re=" $2=(\"([^\"\\\\]|\\\\.)*\"|[^ ]*) "
        if [[ $l =~ $re ]]; then
                local v=${BASH_REMATCH[1]}
                v=${v#\"}
                echo "${v%\"}"
        fi
}

# message LINE: the MESSAGE value of a console line (still escaped).
message() {
        local v=${1#* MESSAGE=\"}
        [ "$v" != "$1" ] && echo "${v%\"}"
}

# status_json_to FILE: `trainsupd status --json` into FILE (RC set).
status_json_to() {
        run_cmd --timeout 15 "$TRAINSUPD" status --json
        printf '%s\n' "$OUT" >"$1"
}

# tstat TASK EXPR: Python EXPR over t = the task's object in `status --json` and d = the document,
# printed as JSON (ERROR:... when that fails), e.g. tstat main '[t["state"], t["exit_code"]]'.
# The document is kept in $T/status.json.
tstat() {
        status_json_to "$T/status.json"
        json_get "$T/status.json" "(lambda t: $2)(([x for x in d['tasks'] if x['name'] == '$1'] + [None])[0])"
}

# wait_state TASK STATE [SECONDS]: until the task's state in status --json is STATE.
wait_state() { wait_for "${3:-15}" eval '[ "$(tstat "'"$1"'" "t[\"state\"]")" = "\"'"$2"'\"" ]'; }

# daemon_alive: the daemon started last still runs and answers status.
daemon_alive() { is_running "$DAEMON_PID" && status_ok; }

# kill9_daemon: SIGKILL to the daemon started last, reaped.
# (stderr off: bash would report "Killed" with the whole command line)
kill9_daemon() {
        {
                kill -KILL "$DAEMON_PID"
                wait_exit "$DAEMON_PID" 5
        } 2>/dev/null
}

# term_daemon [SECONDS]: SIGTERM to the daemon started last; EXIT_CODE and TERM_MS (how long it took).
term_daemon() {
        local t0
        t0=$(now_ms)
        kill -TERM "$DAEMON_PID" 2>/dev/null
        wait_exit "$DAEMON_PID" "${1:-10}"
        TERM_MS=$(($(now_ms) - t0))
}

# log_tail [N]: the last lines of the daemon's log, for diag.
log_tail() { tail -n "${1:-25}" "$(_tlog)" 2>/dev/null; }

# json_str S: S as a JSON string literal.
json_str() { "$PYTHON" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1"; }

# ts_ms LINE: a console line's timestamp in ms since the epoch.
ts_ms() { date -u -d "${1%% *}" +%s%3N 2>/dev/null; }

# sh_task NAME SCRIPT [MEMBER...]: a task object (JSON) running ["/bin/sh", "-c", SCRIPT]; each
# MEMBER is one more member's text, e.g. '"runtime": "exec"' or '"stop_grace_s": 2'.
sh_task() {
        local name=$1 script=$2 m s
        shift 2
        s="{\"name\": \"$name\", \"command\": [\"/bin/sh\", \"-c\", $(json_str "$script")]"
        for m in "$@"; do s="$s, $m"; done
        echo "$s}"
}

# task_config FILE JOB TASK-OBJECT... : a config with these tasks (one JSON object each), provider
# none and on_complete none; with $PODMAN_SOCK (podman-lib.sh) docker.socket is
# $SOCK_FOR_DAEMON, else the service's socket. $CFG_EXTRA: more top-level members (one string).
task_config() {
        local file=$1 job=$2 tasks="" t
        shift 2
        for t in "$@"; do tasks="${tasks:+$tasks, }$t"; done
        {
                printf '{\n  "job_id": "%s",\n  "tasks": [%s],\n' "$job" "$tasks"
                printf '  "cloud": {"provider": "none"},\n  "on_complete": "none"'
                if [ -n "${PODMAN_SOCK:-}" ]; then
                        printf ',\n  "docker": {"socket": %s}' "$(json_str "${SOCK_FOR_DAEMON:-$PODMAN_SOCK}")"
                fi
                [ -z "${CFG_EXTRA:-}" ] || printf ',\n  %s' "$CFG_EXTRA"
                printf '\n}\n'
        } >"$file"
}

# pid_running PID: the process exists and is not a zombie (lib.sh's is_running, tolerant of "").
pid_running() { [ -n "$1" ] && is_running "$1"; }
