#!/bin/bash
# Idle footprint of the daemon: RSS and CPU time over a window (default 60 s) with a one-task
# config and no cloud provider, sampled from /proc. Writes tests/bench/results/idle.txt.
#
#   tests/bench/idle.sh [SECONDS]        (after a build; TRAINSUPD=path overrides the binary)
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-60}
bin=${TRAINSUPD:-$top/build/daemon/trainsupd}
[ -x "$bin" ] || bin=$top/daemon/trainsupd
[ -x "$bin" ] || { echo "build first (scripts/test.sh or make)" >&2; exit 1; }

tmp=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

cat >"$tmp/c.json" <<JSON
{"job_id": "bench", "tasks": [{"runtime": "exec", "command": ["/bin/true"]}],
 "cloud": {"provider": "none"}}
JSON
export TRAINSUPD_STATE_DIR=$tmp/state TRAINSUPD_CONTROL=$tmp/control
"$bin" run --config "$tmp/c.json" --log-target=console 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do [ -S "$tmp/control" ] && break; sleep 0.05; done

cpu_ns() { awk '{print $1}' "/proc/$pid/schedstat"; }   # time on a CPU, in ns
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$pid/status"; }
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup"; }

c0=$(cpu_ns); t0=$(date +%s.%N)
sleep "$secs"
"$bin" status --json >/dev/null   # still answering
c1=$(cpu_ns); t1=$(date +%s.%N)

mkdir -p "$top/tests/bench/results"
out=$top/tests/bench/results/idle.txt
{
        echo "# trainsupd idle footprint ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $(nproc) cores)"
        echo "window_s=$secs"
        echo "rss_kb=$(rss_kb)"
        echo "rss_peak_kb=$(hwm_kb)"
        echo "pss_kb=$(pss_kb)"
        awk -v c=$((c1 - c0)) -v a="$t0" -v b="$t1" \
                'BEGIN { printf "cpu_ms=%.3f\ncpu_percent=%.5f\n", c / 1e6, 100 * (c / 1e9) / (b - a) }'
} | tee "$out"
