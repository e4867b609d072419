# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034
# Sourced first by the benchmarks: $top (the source tree) and $bin (the trainsupd to measure:
# $TRAINSUPD, else build/daemon/trainsupd, else daemon/trainsupd).

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${TRAINSUPD:-$top/build/daemon/trainsupd}
[ -x "$bin" ] || bin=$top/daemon/trainsupd
[ -x "$bin" ] || { echo "build first (scripts/test.sh or make), or set TRAINSUPD" >&2; exit 1; }

# bench_need HINT COMMAND...: exits naming the first command that is missing, and HINT.
bench_need() {
        local hint=$1 c
        shift
        for c in "$@"; do
                command -v "$c" >/dev/null || { echo "$c is needed ($hint)" >&2; exit 1; }
        done
}
