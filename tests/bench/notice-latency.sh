#!/bin/bash
# Notice latency (notice posted to the fake cloud -> EVENT=notice on the daemon's console), >= 50
# notices per cloud at the default poll interval (GCE: long-poll), and the footprint while
# polling every second (AWS), next to the shell loop users would otherwise run (curl polling
# IMDSv2 every second). Writes tests/bench/results/notice-latency.txt. See tests/bench/README.md.
#
#   tests/bench/notice-latency.sh [--samples N] [--idle-s S] [--clouds aws,gce,azure,alibaba]
#                                 [--skip-footprint] [--skip-loop]
#   (after a build; TRAINSUPD=path overrides the binary; measure a build without sanitizers)
set -euo pipefail

. "$(dirname "$0")/bench-lib.sh"
python=${PYTHON:-/usr/bin/python3}
command -v curl >/dev/null || { echo "curl is needed for the shell-loop comparison" >&2; exit 1; }

exec "$python" "$top/tests/bench/notice_latency.py" --trainsupd "$bin" --python "$python" \
        --fakecloud "$top/scripts/fakecloud" --out "$top/tests/bench/results/notice-latency.txt" "$@"
