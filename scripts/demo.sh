#!/bin/bash
# The local demo: builds trainsupd (installing what it needs), starts the fake cloud (an AWS-like
# metadata service on loopback) and the daemon on a sample job with console logging in a
# throwaway directory, posts a spot interruption notice, shows what the daemon saw in its status,
# and stops it cleanly. Nothing outside the throwaway directory is touched; no VM is powered off.
#
#   scripts/demo.sh          (as root on Debian 12, or with the build dependencies installed)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Building trainsupd"
scripts/install-deps.sh
if [ ! -f build/Makefile ]; then
        autoreconf -fi >/dev/null 2>&1
        mkdir -p build
        (cd build && ../configure --enable-werror >/dev/null)
fi
make -C build -j"$(nproc)" >/dev/null
bin=$top/build/daemon/trainsupd

demo=$(mktemp -d /tmp/trainsupd-demo.XXXXXX)
pid=""
fc=""
cleanup() {
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
        [ -n "$fc" ] && kill "$fc" 2>/dev/null || true
        wait 2>/dev/null || true
}
trap cleanup EXIT

say "Starting the fake cloud (AWS IMDSv2 on loopback)"
/usr/bin/python3 "$top/scripts/fakecloud" --port 0 --port-file "$demo/fakecloud.port" --log "$demo/fakecloud.log" &
fc=$!
for _ in $(seq 100); do [ -s "$demo/fakecloud.port" ] && break; sleep 0.05; done
port=$(cat "$demo/fakecloud.port")
echo "listening on 127.0.0.1:$port"

export TRAINSUPD_STATE_DIR=$demo/state TRAINSUPD_CONTROL=$demo/control
cat >"$demo/trainsupd.json" <<JSON
{
  "job_id": "demo-job",
  "tasks": [{ "name": "trainer", "runtime": "exec", "command": ["/bin/sh", "-c", "echo training"] }],
  "cloud": { "provider": "aws", "metadata_url": "http://127.0.0.1:$port" },
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

say "The cloud announces a spot interruption in 120 s"
curl -s -X POST "http://127.0.0.1:$port/_fake/notice?cloud=aws&kind=spot-interruption&in_s=120" >/dev/null
for _ in $(seq 50); do "$bin" status --json | grep -q spot-interruption && break; sleep 0.1; done
"$bin" status

say "Stopping (SIGTERM)"
kill -TERM "$pid"
wait "$pid" && echo "daemon exited with status 0"
pid=""
echo
echo "Demo files are in $demo"
