# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034,SC2016,SC2119,SC2120,SC2154 # variables for the sourcing tests, lib.sh's _pids; eval strings expand later; optional arguments
#
# A private rootful Podman for the docker-runtime tests (facts in docs: shared RECIPES, "Container
# runtime: rootful Podman"). Source it after lib.sh and BEFORE `plan`:
#
#   . "$TOP_SRCDIR/tests/integration/lib.sh"
#   . "$TOP_SRCDIR/tests/integration/podman-lib.sh"     # may end the test: 1..0 # SKIP ...
#   plan N
#
# It skips the whole test (TAP "1..0 # SKIP reason") when not root or when podman, runc, conmon,
# busybox (static) or curl are missing; with CI=true a missing tool is a failure instead, so CI
# cannot skip silently. Otherwise, everything lives under $PODMAN_DIR ($T/podman):
#   - containers.conf (runc, cgroupfs, file events, ulimits this host allows) and storage.conf
#     (overlay, graphroot/runroot under $PODMAN_DIR), registries.conf without search registries
#     (a short name never goes to the network); exported as CONTAINERS_CONF,
#     CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF, so the CLI and the service agree;
#   - the image $TEST_IMAGE (localhost/trainsupd-test:latest): a busybox-static rootfs with
#     /usr/local/bin/now-us (CLOCK_REALTIME in µs, busybox date has no %N) and a default CMD
#     that prints $TEST_IMAGE_CMD_OUT;
#   - the API service `podman system service --time=0 unix://$PODMAN_SOCK` (setsid), answering
#     /v1.41/_ping before this file returns.
# On exit (before lib.sh's own cleanup removes $T): the processes the test tracked (daemons,
# proxies) are stopped first, then the service (by PID, waited for), every container
# (`podman rm -af`), the storage (`podman system reset`), and whatever is still mounted under
# $PODMAN_DIR is unmounted, so nothing is left running or mounted.
#
# Image build and import cost ~20 ms + ~130 ms here (measured), the service is ready in ~40 ms:
# each test builds its own rather than sharing a store between tests that may run in parallel.
#
# In a benchmark (no TAP): set PODMAN_LIB_MODE=bench before sourcing; a missing tool is then an
# error message and exit 1.

PODMAN_DIR=$T/podman
PODMAN_SOCK=$PODMAN_DIR/podman.sock
PODMAN_API=http://d/v1.41
TEST_IMAGE=localhost/trainsupd-test:latest
TEST_IMAGE_CMD_OUT="trainsupd-test image default command"
PODMAN_SERVICE_PID=

# ---------------------------------------------------------------- can we run at all?

_podman_missing() { # _podman_missing REASON: skip (or fail under CI / in a benchmark)
        if [ "${PODMAN_LIB_MODE:-}" = bench ]; then
                echo "podman-lib: $1" >&2
                exit 1
        fi
        if [ "${CI:-}" = true ]; then
                echo "1..1"
                echo "not ok 1 - Podman setup: $1 (CI=true: a test that needs Podman must not be skipped)"
                _tap_planned=0 # the plan above is complete
                exit 1
        fi
        echo "1..0 # SKIP $1"
        exit 0
}

_podman_check() {
        local t missing=""
        if [ "$(id -u)" -ne 0 ]; then
                # Rootless Podman would need subuids, fuse-overlayfs and another setup: not covered.
                if [ "${PODMAN_LIB_MODE:-}" = bench ]; then _podman_missing "needs root (rootful Podman)"; fi
                echo "1..0 # SKIP needs root (rootful Podman)"
                exit 0
        fi
        for t in podman runc conmon curl; do
                command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
        done
        PODMAN_BUSYBOX=${PODMAN_BUSYBOX:-/bin/busybox}
        if ! [ -x "$PODMAN_BUSYBOX" ] || ! file_is_static "$PODMAN_BUSYBOX"; then
                missing="$missing busybox-static"
        fi
        [ -z "$missing" ] || _podman_missing "missing:$missing (apt-get install podman runc conmon busybox-static curl)"
}

# file_is_static FILE: a 64-bit ELF without a program interpreter (no PT_INTERP header): it runs
# in an image that has no libc.
file_is_static() {
        "$PYTHON" -c '
import struct, sys
with open(sys.argv[1], "rb") as f:
    h = f.read(64)
    if h[:4] != b"\x7fELF" or h[4] != 2:
        sys.exit(1)
    phoff, = struct.unpack_from("<Q", h, 32)
    phentsize, phnum = struct.unpack_from("<HH", h, 54)
    f.seek(phoff)
    for _ in range(phnum):
        if struct.unpack_from("<I", f.read(phentsize))[0] == 3:  # PT_INTERP
            sys.exit(1)
' "$1" 2>/dev/null
}

# ---------------------------------------------------------------- configuration

_podman_write_conf() {
        local nofile nproc pidmax
        # Root here lacks CAP_SYS_RESOURCE: Podman's default 1048576 fails in setrlimit. NPROC must
        # also stay <= kernel.pid_max (Podman lowers its own limit to it).
        nofile=$(ulimit -Hn)
        [ "$nofile" = unlimited ] && nofile=1048576
        nproc=$(ulimit -Hu)
        [ "$nproc" = unlimited ] && nproc=4194304
        pidmax=$(cat /proc/sys/kernel/pid_max)
        [ "$nproc" -gt "$pidmax" ] && nproc=$pidmax

        mkdir -p "$PODMAN_DIR/conf" "$PODMAN_DIR/tmp" "$PODMAN_DIR/net"
        cat >"$PODMAN_DIR/conf/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$PODMAN_DIR/storage"
runroot = "$PODMAN_DIR/run"
EOF
        cat >"$PODMAN_DIR/conf/containers.conf" <<EOF
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[network]
network_config_dir = "$PODMAN_DIR/net"

[engine]
# crun 1.8.1 refuses this host's hybrid cgroups; no systemd, no journald here.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PODMAN_DIR/tmp/events.log"
tmp_dir = "$PODMAN_DIR/tmp"
image_copy_tmp_dir = "$PODMAN_DIR/tmp"
static_dir = "$PODMAN_DIR/storage/libpod"
volume_path = "$PODMAN_DIR/storage/volumes"
EOF
        # No search registries: a short name is never looked up on the network; a qualified name
        # of a registry that is not there fails at once (connection refused on loopback).
        cat >"$PODMAN_DIR/conf/registries.conf" <<EOF
unqualified-search-registries = []
short-name-mode = "disabled"
EOF
        export CONTAINERS_CONF=$PODMAN_DIR/conf/containers.conf
        export CONTAINERS_STORAGE_CONF=$PODMAN_DIR/conf/storage.conf
        export CONTAINERS_REGISTRIES_CONF=$PODMAN_DIR/conf/registries.conf
}

# pm ARGS...: the podman CLI on the private storage (time-limited; `podman import` stages in TMPDIR).
pm() { TMPDIR=$PODMAN_DIR/tmp timeout -k 5 60 podman "$@" 2>>"$PODMAN_DIR/cli.err"; }

# ---------------------------------------------------------------- the image

_podman_build_image() {
        local r=$PODMAN_DIR/rootfs target
        mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/proc" "$r/sys" "$r/dev" "$r/root" "$r/usr/local/bin"
        chmod 1777 "$r/tmp"
        cp "$PODMAN_BUSYBOX" "$r/bin/busybox"
        # --install -s links every applet to the binary's real path on this host (e.g. /usr/bin/busybox):
        # put the binary there too.
        "$PODMAN_BUSYBOX" --install -s "$r/bin" 2>/dev/null
        target=$(readlink "$r/bin/sh")
        if [ -n "$target" ] && [ "$target" != busybox ] && [ ! -e "$r$target" ]; then
                mkdir -p "$r$(dirname "$target")"
                cp "$PODMAN_BUSYBOX" "$r$target"
        fi
        printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/:/bin/sh' >"$r/etc/passwd"
        printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$r/etc/group"
        cat >"$r/usr/local/bin/now-us" <<'EOF'
#!/bin/sh
# CLOCK_REALTIME in microseconds (busybox date has no %N; adjtimex reads the time without privileges)
adjtimex | awk '/tv_sec/ { s = $2 } /tv_usec/ { u = $2 } END { printf "%d%06d\n", s, u }'
EOF
        chmod 755 "$r/usr/local/bin/now-us"
        tar -C "$r" -cf "$PODMAN_DIR/image.tar" . || bail_out "cannot tar the image rootfs"
        pm import -q --change "CMD [\"/bin/sh\", \"-c\", \"echo $TEST_IMAGE_CMD_OUT\"]" \
                "$PODMAN_DIR/image.tar" "$TEST_IMAGE" >/dev/null ||
                bail_out "podman import failed: $(tail -n 5 "$PODMAN_DIR/cli.err")"
        rm -rf "$r" "$PODMAN_DIR/image.tar"
}

# ---------------------------------------------------------------- the API service

# papi [CURL ARGS...] URL-PATH: a request to the service's API (path below /v1.41), body on stdout.
papi() {
        local path=${*: -1}
        curl -sS --max-time 30 --unix-socket "$PODMAN_SOCK" "${@:1:$#-1}" "$PODMAN_API$path"
}

podman_ping() { [ "$(curl -s --max-time 2 --unix-socket "${1:-$PODMAN_SOCK}" "$PODMAN_API/_ping" 2>/dev/null)" = OK ]; }

podman_start_service() {
        rm -f "$PODMAN_SOCK"
        TMPDIR=$PODMAN_DIR/tmp setsid podman system service --time=0 "unix://$PODMAN_SOCK" \
                </dev/null >>"$PODMAN_DIR/service.log" 2>&1 &
        PODMAN_SERVICE_PID=$!
        wait_for 20 eval "podman_ping || ! is_running $PODMAN_SERVICE_PID"
        podman_ping || bail_out "the Podman API service did not answer _ping: $(tail -n 20 "$PODMAN_DIR/service.log")"
}

# podman_stop_service: SIGTERM by PID and wait for it to exit (its storage shutdown must not race
# with the next Podman user of the storage), SIGKILL after 15 s.
podman_stop_service() {
        local pid=$PODMAN_SERVICE_PID
        [ -n "$pid" ] || return 0
        PODMAN_SERVICE_PID=
        kill -TERM "$pid" 2>/dev/null
        wait_for 15 eval "! is_running $pid" || kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 0
}

# ---------------------------------------------------------------- helpers for the tests

# pm_job_ids JOB: full ids of every container (any state) labelled trainsupd.job=JOB, one a line.
pm_job_ids() { pm ps -a -q --no-trunc --filter "label=trainsupd.job=$1"; }

# pm_job_count JOB: how many such containers exist.
pm_job_count() {
        local ids
        ids=$(pm_job_ids "$1")
        if [ -z "$ids" ]; then echo 0; else printf '%s\n' "$ids" | wc -l; fi
}

# pm_state ID: running / exited / created ..., or "gone".
pm_state() { pm inspect --format '{{.State.Status}}' "$1" 2>/dev/null || echo gone; }

# pm_exists ID
pm_exists() { pm container exists "$1"; }

# pm_rm_job JOB: removes the job's containers (between cases).
pm_rm_job() {
        local ids
        ids=$(pm_job_ids "$1")
        [ -z "$ids" ] || printf '%s\n' "$ids" | xargs -r podman rm -f -t 0 >/dev/null 2>>"$PODMAN_DIR/cli.err"
        return 0
}

# proxy_start [ARGS...]: tests/integration/docker-record-proxy.py in front of the service; sets
# PROXY_SOCK, PROXY_LOG (one JSON line per request) and PROXY_PID. ARGS: --stall-path RE --stall-s N ...
_proxy_n=0
proxy_start() {
        _proxy_n=$((_proxy_n + 1))
        PROXY_SOCK=$PODMAN_DIR/proxy-$_proxy_n.sock
        PROXY_LOG=$T/proxy-$_proxy_n.jsonl
        : >"$PROXY_LOG"
        "$PYTHON" "$TESTS_DIR/docker-record-proxy.py" --listen "$PROXY_SOCK" --upstream "$PODMAN_SOCK" \
                --log "$PROXY_LOG" --ready-file "$T/proxy-$_proxy_n.ready" "$@" 2>"$T/proxy-$_proxy_n.err" &
        PROXY_PID=$!
        track_pid "$PROXY_PID"
        wait_for 10 test -e "$T/proxy-$_proxy_n.ready" ||
                bail_out "the recording proxy did not start: $(head -c 500 "$T/proxy-$_proxy_n.err")"
}

proxy_stop() { [ -z "${PROXY_PID:-}" ] || stop_pid "$PROXY_PID"; }

# proxy_requests EXPR: Python EXPR over r = the list of recorded requests, e.g.
#   proxy_requests '[x["body"] for x in r if x["method"] == "POST" and "/containers/create" in x["path"]]'
proxy_requests() {
        "$PYTHON" - "$PROXY_LOG" "$1" <<'EOF'
import json, sys
try:
    r = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    print(json.dumps(eval(sys.argv[2], {"r": r})))
except Exception as e:
    print("ERROR: %s: %s" % (type(e).__name__, e))
EOF
}

# ---------------------------------------------------------------- teardown

# Processes the test tracked (daemons, proxies) go first: a daemon must not create containers
# while they are being removed, nor hold API connections open while the service stops.
_podman_stop_tracked() {
        local p
        for p in "${_pids[@]}"; do
                is_running "$p" && kill -TERM "$p" 2>/dev/null
        done
        for p in "${_pids[@]}"; do
                wait_for 5 eval "! is_running $p" || kill -KILL "$p" 2>/dev/null
                wait "$p" 2>/dev/null
        done
}

# _podman_mounts: mount points under $PODMAN_DIR, deepest first.
_podman_mounts() {
        awk -v d="$PODMAN_DIR" '{ if ($5 == d || index($5, d "/") == 1) print $5 }' /proc/self/mountinfo | sort -r
}

podman_teardown() {
        local m p
        [ -d "$PODMAN_DIR" ] || return 0
        podman_stop_service
        if [ -f "${CONTAINERS_CONF:-}" ]; then
                pm rm -af -t 0 >/dev/null
                pm system reset -f >/dev/null 2>&1
        fi
        # conmon of a container rm could not remove (should not happen): by PID, only ours.
        for p in $(pgrep -x conmon 2>/dev/null); do
                if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$PODMAN_DIR/"; then
                        kill -KILL "$p" 2>/dev/null
                fi
        done
        for m in $(_podman_mounts); do
                umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
        done
        if [ -n "$(_podman_mounts)" ]; then
                echo "# podman-lib: still mounted under $PODMAN_DIR:" "$(_podman_mounts)" >&2
        fi
        rm -rf "$PODMAN_DIR/storage" "$PODMAN_DIR/run" "$PODMAN_DIR/tmp"
}

_podman_exit_trap() {
        local rc=$?
        _podman_stop_tracked
        podman_teardown
        if [ "$(type -t _cleanup)" = function ]; then
                (exit "$rc")
                _cleanup
        fi
        exit "$rc"
}

# ---------------------------------------------------------------- set up now

_podman_check
_podman_write_conf
trap _podman_exit_trap EXIT
_podman_build_image
podman_start_service
