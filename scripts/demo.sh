#!/bin/bash
# The local demo: builds trainsupd (installing what it needs), starts the daemon on a sample job
# with console logging in a throwaway directory, asks it for its status, and stops it cleanly.
# Nothing outside the throwaway directory is touched; no VM is powered off.
#
#   scripts/demo.sh          (as root on Debian 12, or with the build dependencies installed)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ ! -x build/daemon/trainsupd ]; then
        say "Building trainsupd"
        scripts/install-deps.sh
        autoreconf -fi >/dev/null 2>&1
        mkdir -p build
        (cd build && ../configure --enable-werror >/dev/null && make -j"$(nproc)" >/dev/null)
fi
bin=$top/build/daemon/trainsupd

demo=$(mktemp -d /tmp/trainsupd-demo.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

export TRAINSUPD_STATE_DIR=$demo/state TRAINSUPD_CONTROL=$demo/control
cat >"$demo/trainsupd.json" <<JSON
{
  "job_id": "demo-job",
  "tasks": [{ "name": "trainer", "runtime": "exec", "command": ["/bin/sh", "-c", "echo training"] }],
  "cloud": { "provider": "none" },
  "on_complete": "none"
}
JSON

say "The config ($demo/trainsupd.json), checked"
"$bin" validate --config "$demo/trainsupd.json" && echo "valid"
say "Effective config with defaults"
"$bin" validate --config "$demo/trainsupd.json" --show

say "Starting the daemon (console log below)"
"$bin" run --config "$demo/trainsupd.json" --log-target=console --dry-run &
pid=$!
for _ in $(seq 100); do [ -S "$TRAINSUPD_CONTROL" ] && break; sleep 0.05; done

say "trainsupd status"
"$bin" status
say "trainsupd status --json"
"$bin" status --json

say "Stopping (SIGTERM)"
kill -TERM "$pid"
wait "$pid" && echo "daemon exited with status 0"
pid=""
echo
echo "Demo files are in $demo"
