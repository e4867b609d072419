# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034,SC2016 # variables are for the sourcing tests; sh -c strings expand later
#
# Shared helpers for the integration tests (TAP, run by automake's tap-driver).
# Source it from a test:   . "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
#
# Environment (set by `make check`, see Makefile.am): TRAINSUPD (the built binary), HTTP_PROBE,
# TOP_SRCDIR, PYTHON. The tests work from any build directory (VPATH) and never write into
# the source tree: everything goes to a private temp dir, $T, removed on exit together with
# every process started through the helpers below.

set -u

TOP_SRCDIR=${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
PYTHON=${PYTHON:-/usr/bin/python3}
TESTS_DIR=$TOP_SRCDIR/tests/integration
: "${TRAINSUPD:?TRAINSUPD must point at the built daemon/trainsupd (make check sets it)}"

# ---------------------------------------------------------------- TAP

NL=$'\n'

_tap_n=0
_tap_failed=0
_tap_planned=0

plan() {
        _tap_planned=$1
        echo "1..$1"
}

diag() {
        local line
        printf '%s\n' "$@" | while IFS= read -r line; do printf '# %s\n' "$line"; done
}

ok() {
        _tap_n=$((_tap_n + 1))
        echo "ok $_tap_n - $*"
}

not_ok() {
        _tap_n=$((_tap_n + 1))
        _tap_failed=$((_tap_failed + 1))
        echo "not ok $_tap_n - $*"
}

# todo_not_ok DESC WHY: a known failure, reported as such (TAP TODO: counted as XFAIL, and an
# XPASS if it ever passes this way), never silently dropped.
todo_not_ok() {
        _tap_n=$((_tap_n + 1))
        echo "not ok $_tap_n - $1 # TODO $2"
}

skip() { # skip DESC REASON
        _tap_n=$((_tap_n + 1))
        echo "ok $_tap_n - $1 # SKIP $2"
}

# check DESC COMMAND...: ok when COMMAND succeeds.
check() {
        local desc=$1
        shift
        if "$@"; then ok "$desc"; else not_ok "$desc"; diag "command failed: $*"; fi
}

# is GOT EXPECTED DESC
is() {
        if [ "$1" = "$2" ]; then
                ok "$3"
        else
                not_ok "$3"
                diag "expected: $2" "     got: $1"
        fi
}

# isnt GOT UNEXPECTED DESC
isnt() {
        if [ "$1" != "$2" ]; then
                ok "$3"
        else
                not_ok "$3"
                diag "expected anything but: $2"
        fi
}

# like GOT ERE DESC (bash extended regex, matched against the whole text, multi-line)
like() {
        if [[ $1 =~ $2 ]]; then
                ok "$3"
        else
                not_ok "$3"
                diag "expected to match: $2" "got: $1"
        fi
}

# unlike GOT ERE DESC
unlike() {
        if [[ $1 =~ $2 ]]; then
                not_ok "$3"
                diag "expected not to match: $2" "got: $1"
        else
                ok "$3"
        fi
}

# has_line FILE ERE DESC: some line of FILE matches (grep -E)
has_line() {
        if [ -f "$1" ] && grep -Eq -- "$2" "$1"; then
                ok "$3"
        else
                not_ok "$3"
                diag "no line of $1 matches: $2" "got:"
                [ -f "$1" ] && diag "$(cat "$1")"
        fi
}

# num_cmp A OP B DESC: integer comparison (OP: -lt -le -eq -ge -gt -ne)
num_cmp() {
        if test "$1" "$2" "$3" 2>/dev/null; then
                ok "$4"
        else
                not_ok "$4"
                diag "expected: $1 $2 $3"
        fi
}

bail_out() {
        echo "Bail out! $*"
        exit 1
}

# ---------------------------------------------------------------- temp dir, processes, cleanup

# Unix socket paths must fit in 108 bytes: keep $T short whatever TMPDIR says.
_tmp_base=${TMPDIR:-/tmp}
[ ${#_tmp_base} -gt 40 ] && _tmp_base=/tmp
T=$(mktemp -d "$_tmp_base/trainsupd-t.XXXXXX") || bail_out "cannot create a temp dir"
_pids=()

# Remember a background process so cleanup kills it.
track_pid() { _pids+=("$1"); }

# is_running PID: true while PID exists and is not a zombie.
is_running() {
        local st
        st=$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
        [ -n "$st" ] && [ "${st%% *}" != Z ] && [ "${st%% *}" != X ]
}

# stop_pid PID [SIGNAL]: signal it, wait up to 5 s, then SIGKILL; reaps it when it is our child.
stop_pid() {
        local pid=$1 sig=${2:-TERM}
        kill "-$sig" "$pid" 2>/dev/null || return 0
        wait_for 5 eval "! is_running $pid" || kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 0
}

_cleanup() {
        local rc=$? p
        trap - EXIT
        for p in "${_pids[@]}"; do
                is_running "$p" && kill -TERM "$p" 2>/dev/null
        done
        for p in "${_pids[@]}"; do
                wait_for 3 eval "! is_running $p" || kill -KILL "$p" 2>/dev/null
                wait "$p" 2>/dev/null
        done
        if [ "$_tap_planned" -gt 0 ] && [ "$_tap_n" -ne "$_tap_planned" ]; then
                diag "planned $_tap_planned tests but ran $_tap_n"
                rc=1
        fi
        if [ -n "${KEEP_TEST_DIR:-}" ]; then
                diag "keeping $T"
        else
                rm -rf "$T"
        fi
        [ "$_tap_failed" -gt 0 ] && rc=1
        exit "$rc"
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for SECONDS COMMAND...: polls COMMAND every 50 ms until it succeeds; false on timeout.
wait_for() {
        local secs=$1 i n
        shift
        n=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 20 }')
        for ((i = 0; i <= n; i++)); do
                "$@" && return 0
                sleep 0.05
        done
        return 1
}

# wait_for_log FILE REGEX SECONDS: until a line of FILE matches the (extended) REGEX.
wait_for_log() {
        wait_for "$3" grep -Eq -- "$2" "$1"
}

# now_ms: CLOCK_REALTIME in milliseconds.
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---------------------------------------------------------------- the daemon's environment

# Everything the daemon and its clients look at points into $T; nothing inherited from the
# environment running `make check` (a systemd unit, a developer shell) leaks in.
export TRAINSUPD_STATE_DIR=$T/state
export TRAINSUPD_CONTROL=$T/run/control
export TRAINSUPD_DMI_DIR=$T/dmi
unset TRAINSUPD_CONFIG TRAINSUPD_LOG_LEVEL NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID JOURNAL_STREAM LISTEN_FDS LISTEN_PID
mkdir -p "$TRAINSUPD_DMI_DIR"

# Under --enable-sanitizers: no leak check suppression, make findings fatal and visible.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

# write_config FILE [MEMBER...]: a minimal valid config (one exec task running /bin/true,
# cloud.provider left at its default unless a MEMBER sets "cloud"); each MEMBER is one more
# top-level JSON member, e.g. '"cloud": {"provider": "none"}'. $CFG_JOB_ID and $CFG_TASKS
# (a JSON array) override the job id and the tasks.
write_config() {
        local file=$1 m tasks='[{"runtime": "exec", "command": ["/bin/true"]}]'
        shift
        {
                printf '{\n  "job_id": "%s",\n' "${CFG_JOB_ID:-test-job}"
                printf '  "tasks": %s' "${CFG_TASKS:-$tasks}"
                for m in "$@"; do printf ',\n  %s' "$m"; done
                printf '\n}\n'
        } >"$file"
}

# start_daemon CONFIG [ARGS...]: starts `trainsupd run --config CONFIG --log-target=console ARGS`
# in the background with stderr to a fresh log; sets DAEMON_PID and DAEMON_LOG. Extra
# environment for the daemon can be given in the array DAEMON_ENV (VAR=value words); with
# DAEMON_WATCHDOG_PID_SELF=1 the daemon also gets WATCHDOG_PID set to its own pid (as systemd
# does). Does not wait: see wait_ready.
_daemon_n=0
start_daemon() {
        local config=$1
        shift
        _daemon_n=$((_daemon_n + 1))
        DAEMON_LOG=$T/daemon-$_daemon_n.log
        # sh execs the daemon, so $$ of that shell is the daemon's pid.
        env DAEMON_WATCHDOG_PID_SELF="${DAEMON_WATCHDOG_PID_SELF:-}" ${DAEMON_ENV+"${DAEMON_ENV[@]}"} sh -c \
                'if [ -n "${DAEMON_WATCHDOG_PID_SELF:-}" ]; then WATCHDOG_PID=$$; export WATCHDOG_PID; fi
                 unset DAEMON_WATCHDOG_PID_SELF; exec "$@"' sh \
                "$TRAINSUPD" run --config "$config" --log-target=console "$@" \
                </dev/null >"$T/daemon-$_daemon_n.out" 2>"$DAEMON_LOG" &
        DAEMON_PID=$!
        track_pid "$DAEMON_PID"
}

# status_ok: the daemon answers `trainsupd status --json` (exit 0).
status_ok() { "$TRAINSUPD" status --json >/dev/null 2>&1; }

# wait_ready [SECONDS]: polls until the daemon answers status; false when it died or timed out.
wait_ready() {
        local secs=${1:-10}
        wait_for "$secs" eval "status_ok || ! is_running $DAEMON_PID"
        is_running "$DAEMON_PID" && status_ok
}

# start_daemon_ready CONFIG [ARGS...]: start_daemon, wait_ready, bail out when it did not come up.
start_daemon_ready() {
        start_daemon "$@"
        if ! wait_ready 10; then
                diag "daemon log:" "$(cat "$DAEMON_LOG")"
                bail_out "the daemon did not come up"
        fi
}

# wait_exit PID SECONDS: waits for our child PID to exit; sets EXIT_CODE (124 on timeout,
# after which the process is killed).
wait_exit() {
        local pid=$1 secs=$2
        if wait_for "$secs" eval "! is_running $pid"; then
                wait "$pid" 2>/dev/null
                EXIT_CODE=$?
        else
                kill -KILL "$pid" 2>/dev/null
                wait "$pid" 2>/dev/null
                EXIT_CODE=124
        fi
}

# run_cmd [--timeout S] COMMAND...: runs COMMAND with a time limit; sets RC, OUT (stdout),
# ERR (stderr) and ELAPSED_MS. Every stderr is also appended to $T/all-cmd.err (for
# sanitizer_report).
run_cmd() {
        local secs=20 t0
        if [ "$1" = --timeout ]; then
                secs=$2
                shift 2
        fi
        t0=$(now_ms)
        timeout -k 2 "$secs" "$@" >"$T/cmd.out" 2>"$T/cmd.err"
        RC=$?
        ELAPSED_MS=$(($(now_ms) - t0))
        OUT=$(cat "$T/cmd.out")
        ERR=$(cat "$T/cmd.err")
        cat "$T/cmd.err" >>"$T/all-cmd.err"
}

# json_get FILE EXPR: prints json.dumps(EXPR) where EXPR is Python over `d` (the parsed document),
# e.g. json_get s.json 'd["tasks"][0]["name"]' -> "main". Prints ERROR:... when it fails.
json_get() {
        "$PYTHON" - "$1" "$2" <<'EOF'
import json, sys
try:
    with open(sys.argv[1]) as f:
        d = json.load(f)
    print(json.dumps(eval(sys.argv[2], {"d": d})))
except Exception as e:
    print("ERROR: %s: %s" % (type(e).__name__, e))
EOF
}

# is_json FILE: the file holds exactly one valid JSON document.
is_json() { "$PYTHON" -c 'import json, sys; json.load(open(sys.argv[1]))' "$1" 2>/dev/null; }

# The console grammar of INTERFACE.md "Journal and console".
RE_TIME='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z'
RE_VALUE='("([^"\\]|\\.)*"|[^ "=\\]+)'
RE_QUOTED='"([^"\\]|\\.)*"'
# event_re NAME: a whole console line for event NAME.
event_re() { echo "^$RE_TIME EVENT=$1( [A-Z][A-Z0-9_]*=$RE_VALUE)* MESSAGE=$RE_QUOTED\$"; }
# Any record line: event, diagnostic (LEVEL=...) or task output (TASK=... OUT="...").
RE_ANY_LINE="^$RE_TIME( [A-Z][A-Z0-9_]*=$RE_VALUE)* (MESSAGE|OUT)=$RE_QUOTED\$"

# lines_not_matching FILE ERE: prints the lines that do not match (empty when all do).
lines_not_matching() { grep -Ev -- "$2" "$1" || true; }

# sanitizer_report FILE...: prints sanitizer findings in the files (empty when none).
sanitizer_report() {
        grep -hE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer)' "$@" 2>/dev/null || true
}

# skip_all WHAT REASON: the whole test is skipped for want of WHAT ("1..0 # SKIP REASON", exit 0),
# or fails when CI=true ("not ok 1 - WHAT needed in CI: REASON"): CI must run it.
skip_all() {
        if [ "${CI:-}" = true ]; then
                echo "1..1"
                echo "not ok 1 - $1 needed in CI: $2"
                trap - EXIT
                exit 1
        fi
        echo "1..0 # SKIP $2"
        trap - EXIT
        rm -rf "$T"
        exit 0
}

# free_port: a TCP port on 127.0.0.1 that was free when asked.
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# sha FILE: its SHA-256 (hex).
sha() { sha256sum "$1" | cut -d' ' -f1; }

# tsd ARGS...: run_cmd trainsupd ARGS at debug level (120 s); its output is also appended to
# $T/all-output, for the checks that no secret is ever printed.
tsd() {
        run_cmd --timeout 120 env TRAINSUPD_LOG_LEVEL=debug "$TRAINSUPD" "$@"
        cat "$T/cmd.out" "$T/cmd.err" >>"$T/all-output"
}

# ---------------------------------------------------------------- snapshot, snapshots, restore

# snapshot_job JOB PREFIX: the job of the one-shot storage command tests, one exec task whose
# checkpoint dir is CKPT (created, with the state dir). Sets JOB, PFX (the storage URL's prefix),
# TASKP (the task's keys in the store: PFX/JOB/main), CKPT, CFG (the config file to write) and
# CFG_JOB_ID and CFG_TASKS for write_config.
snapshot_job() {
        JOB=$1
        PFX=$2
        TASKP=$PFX/$JOB/main
        CKPT=$T/ckpt
        CFG=$T/config.json
        mkdir -p "$CKPT" "$TRAINSUPD_STATE_DIR"
        CFG_JOB_ID=$JOB
        CFG_TASKS="[{\"runtime\": \"exec\", \"command\": [\"/bin/true\"], \"checkpoint_dir\": \"$CKPT\"}]"
}

# ckpt_fill BIG_MIB: mixed files in $CKPT to snapshot: big.bin (BIG_MIB MiB of random bytes: parts),
# sub/weights.bin, state.txt ("step 100"), an empty file and an empty dir, a name with a space, a
# plus and parentheses, a 0600 file in a 0750 dir, and a symlink (latest -> state.txt).
ckpt_fill() {
        mkdir -p "$CKPT/sub" "$CKPT/private" "$CKPT/empty-dir"
        head -c 3000001 /dev/urandom >"$CKPT/sub/weights.bin"
        head -c $(($1 * 1024 * 1024)) /dev/urandom >"$CKPT/big.bin"
        echo "step 100" >"$CKPT/state.txt"
        : >"$CKPT/empty"
        echo "odd" >"$CKPT/sub/odd name+1 (x).txt"
        echo secret >"$CKPT/private/key"
        chmod 600 "$CKPT/private/key"
        chmod 750 "$CKPT/private"
        ln -s state.txt "$CKPT/latest"
}

# tree_of DIR / sums_of DIR: what a restore must reproduce: types, modes, names and link targets;
# the files' SHA-256 (sha256sum -c input). The completion marker is left out of both.
tree_of() { (cd "$1" && find . -mindepth 1 ! -name .trainsupd-commit -printf '%y %m %p -> %l\n' | LC_ALL=C sort); }
sums_of() { (cd "$1" && find . -type f ! -name .trainsupd-commit -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }
# record ID: keeps what a restore of snapshot ID must reproduce: $CKPT as it is now.
record() { sums_of "$CKPT" >"$T/want-$1.sha256" && tree_of "$CKPT" >"$T/want-$1.tree"; }

# restore_is ID [ARGS...]: `trainsupd restore --config $CFG ARGS` (e.g. --snapshot ID) into a fresh
# dir, RDIR, compared with what `record ID` kept; true when byte-exact (sums, modes, links). RC,
# OUT, ERR are the restore's. It runs through the command in the array RESTORE_RUN: run_cmd with
# a 120 s limit unless the test sets another (e.g. RESTORE_RUN=(tsd)).
RESTORE_RUN=(run_cmd --timeout 120 "$TRAINSUPD")
_rn=0
restore_is() {
        local id=$1
        shift
        _rn=$((_rn + 1))
        RDIR=$T/restore-$_rn
        "${RESTORE_RUN[@]}" restore --config "$CFG" "$@" --to "$RDIR"
        [ "$RC" = 0 ] || { diag "restore exit $RC: $(tail -n 3 "$T/cmd.err")"; return 1; }
        [ -f "$T/want-$id.sha256" ] || { diag "nothing recorded for $id"; return 1; }
        (cd "$RDIR" && sha256sum --quiet -c "$T/want-$id.sha256" >"$T/sumcheck.out" 2>&1) ||
                { diag "sha256sum -c:" "$(cat "$T/sumcheck.out")"; return 1; }
        diff -u "$T/want-$id.tree" <(tree_of "$RDIR") >"$T/tree.diff" || { diag "tree differs:" "$(cat "$T/tree.diff")"; return 1; }
        rm -rf "$RDIR"
}

# listed_ids: the ids `trainsupd snapshots --config $CFG --json` lists, one a line.
listed_ids() {
        "$TRAINSUPD" snapshots --config "$CFG" --json 2>/dev/null >"$T/ls.json"
        "$PYTHON" -c 'import json,sys; [print(s["id"]) for s in json.load(open(sys.argv[1]))]' "$T/ls.json" 2>/dev/null
}
