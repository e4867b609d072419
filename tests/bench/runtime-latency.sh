#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2016,SC2034,SC2119,SC2120 # the task scripts and eval strings expand later; helpers with optional arguments
# Task runtime latency (tests/bench/runtime.md): how long until a task's process runs, and how
# long a signal takes to reach it, through trainsupd versus Podman's CLI and its API with curl,
# against a private rootful Podman (tests/integration/podman-lib.sh). Writes
# tests/bench/results/runtime-latency.txt.
#
#   tests/bench/runtime-latency.sh [--samples N]     (after a build; TRAINSUPD=path picks one;
#                                                      root, podman, runc, busybox-static, curl)
#
# Every latency ends with a timestamp taken by the task itself (CLOCK_REALTIME in µs from
# adjtimex inside the container, `date +%s%N` for exec tasks) written into its checkpoint
# directory, and starts with the client's clock just before it acts ($EPOCHREALTIME): the time
# until the task's own code runs, not until some log line is read.
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
samples=20
while [ $# -gt 0 ]; do
        case $1 in
        --samples) samples=$2; shift 2 ;;
        *) echo "usage: $0 [--samples N]" >&2; exit 64 ;;
        esac
done
bin=${TRAINSUPD:-$top/build/daemon/trainsupd}
[ -x "$bin" ] || bin=$top/daemon/trainsupd
[ -x "$bin" ] || { echo "build first (scripts/test.sh or make), or set TRAINSUPD" >&2; exit 1; }
export TRAINSUPD=$bin TOP_SRCDIR=$top PYTHON=${PYTHON:-/usr/bin/python3}
command -v jq >/dev/null || { echo "jq is needed" >&2; exit 1; }

. "$top/tests/integration/lib.sh"
. "$top/tests/integration/task-lib.sh"
PODMAN_LIB_MODE=bench
. "$top/tests/integration/podman-lib.sh"

R=$T/results
CK=$T/ck
mkdir -p "$R" "$CK"
IMG="\"image\": \"$TEST_IMAGE\""
NET='"network": "none"'
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
say() { echo "$*" >&2; }

# wait_file FILE [SECONDS] [LINES]: until FILE has at least LINES lines (default 1); gives up
# early when the process $WATCH_PID (the daemon of the sample, if any) died.
WATCH_PID=
has_lines() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }
wait_file() {
        wait_for "${2:-10}" eval 'has_lines "'"$1"'" '"${3:-1}"' || { [ -n "$WATCH_PID" ] && ! is_running "$WATCH_PID"; }'
        has_lines "$1" "${3:-1}"
}
# daemon_up CONFIG: start_daemon, and watch it
daemon_up() {
        start_daemon "$1"
        WATCH_PID=$DAEMON_PID
}
daemon_down() {
        term_daemon
        WATCH_PID=
}

# add NAME VALUE_US: one sample (µs) for the row NAME.
add() { echo "$2" >>"$R/$1"; }

# ---------------------------------------------------------------- create + start
# The stamp the task writes first thing; then it waits for signals.
STAMP_C='now-us >"$TRAINSUPD_CHECKPOINT_DIR/start"
trap "now-us >>\"$TRAINSUPD_CHECKPOINT_DIR/usr1\"" USR1
echo ready
while :; do sleep 1 & wait $!; done'
STAMP_X=${STAMP_C//now-us/date +%s%6N}

say "create+start through trainsupd (docker), $samples samples"
for i in $(seq "$samples"); do
        task_config "$T/d$i.json" "bench-d$i" "$(sh_task main "$STAMP_C" "$IMG" "$NET" "\"checkpoint_dir\": \"$CK/d$i\"")"
        t0=$(now_us)
        daemon_up "$T/d$i.json"
        if ! wait_file "$CK/d$i/start" 20; then say "sample $i: no start stamp; $(log_tail 5)"; daemon_down; continue; fi
        add daemon-docker $(($(cat "$CK/d$i/start") - t0))
        wait_ev task-started main 1 5
        s=$(ts_ms "$(ev_lines started | head -n 1)")
        ts=$(ts_ms "$(nth_ev task-started main 1)")
        [ -n "$s" ] && [ -n "$ts" ] && add daemon-docker-internal $(((ts - s) * 1000))
        if [ "$i" -eq 1 ]; then cp "$DAEMON_LOG" "$T/first-daemon.log"; fi
        daemon_down
        pm_rm_job "bench-d$i"
done

say "create+start with the podman CLI (podman run -d), $samples samples"
for i in $(seq "$samples"); do
        mkdir -p "$CK/p$i"
        t0=$(now_us)
        pm run -d --init --network none -v "$CK/p$i:/checkpoints" -e TRAINSUPD_CHECKPOINT_DIR=/checkpoints \
                --label trainsupd.job=bench-p --label trainsupd.task=main "$TEST_IMAGE" /bin/sh -c "$STAMP_C" >"$T/p.id"
        add podman-cli-return $(($(now_us) - t0))
        wait_file "$CK/p$i/start" 20 || { say "sample $i: no start stamp"; continue; }
        add podman-cli $(($(cat "$CK/p$i/start") - t0))
        pm rm -f -t 0 "$(cat "$T/p.id")" >/dev/null
done

# The API path replays the daemon's own create body (captured through the recording proxy), so
# the engine is asked for exactly the same container.
say "capturing the daemon's create request"
proxy_start
SOCK_FOR_DAEMON=$PROXY_SOCK task_config "$T/cap.json" bench-cap "$(sh_task main "$STAMP_C" "$IMG" "$NET" "\"checkpoint_dir\": \"$CK/cap\"")"
daemon_up "$T/cap.json"
wait_file "$CK/cap/start" 20 || say "the capture run did not start"
daemon_down
pm_rm_job bench-cap
proxy_stop
proxy_requests '[x["body"] for x in r if x["method"] == "POST" and "/containers/create" in x["path"]][0]' >"$T/create.json"
if ! jq -e .Image "$T/create.json" >/dev/null 2>&1; then
        say "no create body captured ($(cat "$T/create.json")): using the documented shape instead"
        echo "curl-api: the daemon's create body could not be captured; a body of the documented shape was used" >>"$R/notes"
        jq -n --arg img "$TEST_IMAGE" --arg cmd "$STAMP_C" '{Image: $img, Cmd: ["/bin/sh", "-c", $cmd],
                Env: ["TRAINSUPD_CHECKPOINT_DIR=/checkpoints"], Labels: {"trainsupd.job": "bench-a", "trainsupd.task": "main"},
                HostConfig: {Binds: ["x:/checkpoints:rw"], Init: true, NetworkMode: "none", RestartPolicy: {Name: "no"}}}' >"$T/create.json"
fi

say "create+start with curl on the API (the daemon's create body), $samples samples"
for i in $(seq "$samples"); do
        mkdir -p "$CK/a$i"
        jq --arg b "$CK/a$i" '.Labels["trainsupd.job"] = "bench-a" |
                .HostConfig.Binds = ((.HostConfig.Binds // []) | map(sub("^[^:]*:"; $b + ":"))) |
                .HostConfig.Mounts = ((.HostConfig.Mounts // []) | map(.Source = $b))' "$T/create.json" >"$T/a.json"
        t0=$(now_us)
        id=$(papi -H 'Content-Type: application/json' --data-binary "@$T/a.json" "/containers/create?name=bench-a$i" | jq -r .Id)
        papi -X POST "/containers/$id/start" >/dev/null
        add curl-api-return $(($(now_us) - t0))
        wait_file "$CK/a$i/start" 20 || { say "sample $i: no start stamp"; continue; }
        add curl-api $(($(cat "$CK/a$i/start") - t0))
        pm rm -f -t 0 "$id" >/dev/null
done

say "create+start through trainsupd (exec), $samples samples"
for i in $(seq "$samples"); do
        task_config "$T/x$i.json" "bench-x$i" "$(sh_task main "$STAMP_X" '"runtime": "exec"' "\"checkpoint_dir\": \"$CK/x$i\"")"
        t0=$(now_us)
        daemon_up "$T/x$i.json"
        wait_file "$CK/x$i/start" 20 || { say "sample $i: no start stamp; $(log_tail 5)"; daemon_down; continue; }
        add daemon-exec $(($(cat "$CK/x$i/start") - t0))
        daemon_down
done
for i in $(seq "$samples"); do
        mkdir -p "$CK/s$i"
        t0=$(now_us)
        TRAINSUPD_CHECKPOINT_DIR=$CK/s$i /bin/sh -c "$STAMP_X" </dev/null >/dev/null 2>&1 &
        p=$!
        wait_file "$CK/s$i/start" 20 && add shell-fork-exec $(($(cat "$CK/s$i/start") - t0))
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
done

# ---------------------------------------------------------------- signal delivery
# One container started by the daemon; the three clients signal the same task in turn.
say "signal delivery (USR1), $samples samples per path"
task_config "$T/sig.json" bench-sig "$(sh_task main "$STAMP_C" "$IMG" "$NET" "\"checkpoint_dir\": \"$CK/sig\"")"
daemon_up "$T/sig.json"
wait_out main '^ready$' 20 || say "the signal task did not start: $(log_tail)"
sid=$(field "$(nth_ev task-started main 1)" CONTAINER)
checkpoint_available=1
n=0
# signal_once NAME COMMAND...: one signal, waits for the trap's stamp.
signal_once() {
        local name=$1 t0
        shift
        n=$((n + 1))
        t0=$(now_us)
        "$@" >/dev/null 2>"$T/sig.err"
        local rc=$?
        if [ "$rc" -ne 0 ]; then say "$name: exit $rc: $(cat "$T/sig.err")"; return 1; fi
        wait_file "$CK/sig/usr1" 5 "$n" || { say "$name: no stamp"; return 1; }
        add "$name" $(($(sed -n "${n}p" "$CK/sig/usr1") - t0))
        sleep 0.1
}
for i in $(seq "$samples"); do
        [ -n "$sid" ] || break
        if [ "$checkpoint_available" = 1 ]; then
                signal_once daemon-signal "$TRAINSUPD" checkpoint --task main || { checkpoint_available=0; n=$((n - 1)); }
        fi
        signal_once podman-kill pm kill -s USR1 "$sid" || break
        signal_once curl-kill papi -f -X POST "/containers/$sid/kill?signal=USR1" || break
done
daemon_down
pm_rm_job bench-sig

task_config "$T/sigx.json" bench-sigx "$(sh_task main "$STAMP_X" '"runtime": "exec"' "\"checkpoint_dir\": \"$CK/sigx\"")"
daemon_up "$T/sigx.json"
wait_out main '^ready$' 20 || say "the exec signal task did not start: $(log_tail)"
xpid=$(field "$(nth_ev task-started main 1)" PID)
n=0
sig_x() {
        local name=$1 t0
        shift
        n=$((n + 1))
        t0=$(now_us)
        "$@" >/dev/null 2>"$T/sig.err" || { say "$name: $(cat "$T/sig.err")"; n=$((n - 1)); return 1; }
        wait_file "$CK/sigx/usr1" 5 "$n" || { say "$name: no stamp"; return 1; }
        add "$name" $(($(sed -n "${n}p" "$CK/sigx/usr1") - t0))
        sleep 0.1
}
for i in $(seq "$samples"); do
        [ -n "$xpid" ] || break
        [ "$checkpoint_available" = 1 ] && sig_x daemon-signal-exec "$TRAINSUPD" checkpoint --task main
        [ -n "$xpid" ] && sig_x kill-exec kill -USR1 "$xpid"
done
daemon_down

# ---------------------------------------------------------------- report
out=$top/tests/bench/results/runtime-latency.txt
mkdir -p "$(dirname "$out")"
{
        echo "# trainsupd task runtime latency ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $(nproc) cores," \
                "$("$bin" --version | head -n 1), podman $(podman --version | awk '{print $3}'), $(runc --version | head -n 1))"
        echo "# latency: client's clock before it acts -> the task's own timestamp (adjtimex in the"
        echo "# container, date +%s%N for exec); nearest-rank percentiles; network none; samples=$samples"
        "$PYTHON" - "$R" <<'EOF'
import os, sys
d = sys.argv[1]
rows = [
    ("## create + start: until the task's first command runs", None),
    ("daemon-docker", "trainsupd run (docker): process start -> task runs (includes daemon startup, find by label, create, start)"),
    ("daemon-docker-internal", "  trainsupd: EVENT=started -> EVENT=task-started (log timestamps, ms resolution)"),
    ("podman-cli", "podman run -d --init (CLI): -> task runs"),
    ("podman-cli-return", "  podman run -d returns"),
    ("curl-api", "curl create + curl start (API, the daemon's create body): -> task runs"),
    ("curl-api-return", "  both curls returned"),
    ("daemon-exec", "trainsupd run (exec): process start -> task runs"),
    ("shell-fork-exec", "  for scale: bash starts /bin/sh -c directly"),
    ("## signal delivery: USR1 -> the task's trap runs", None),
    ("daemon-signal", "trainsupd checkpoint --task main (docker)"),
    ("podman-kill", "podman kill -s USR1 (CLI)"),
    ("curl-kill", "curl POST /containers/ID/kill?signal=USR1"),
    ("daemon-signal-exec", "trainsupd checkpoint --task main (exec)"),
    ("kill-exec", "  kill -USR1 PID from bash (exec)"),
]
def pct(v, p):
    v = sorted(v)
    k = max(0, min(len(v) - 1, -(-p * len(v) // 100) - 1))
    return v[k]
for name, label in rows:
    if label is None:
        print(); print(name); continue
    f = os.path.join(d, name)
    if not os.path.exists(f):
        print("%-24s n=0   (not measured: see the log)  %s" % (name, label)); continue
    v = [int(x) / 1000.0 for x in open(f) if x.strip()]
    print("%-24s n=%-3d median=%8.1f ms  p90=%8.1f ms  min=%8.1f  max=%8.1f   %s"
          % (name, len(v), pct(v, 50), pct(v, 90), min(v), max(v), label))
EOF
        [ -f "$R/notes" ] && { echo; sed 's/^/note: /' "$R/notes"; }
} | tee "$out"
