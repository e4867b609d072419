#!/bin/bash
# check-vm.sh - trainsupd end to end in a real systemd guest under qemu (`make check-vm`).
#
# Bakes the guest with scripts/bake-image.sh (Debian bookworm, systemd, cloud-init, trainsupd
# installed with `make install` and enabled, cloud-init with the NoCloud and Ec2 datasources; the
# test adds scripts/demo-train and its observer tests/e2e/guest/e2e-watch), then boots it five
# times, each time a fresh copy of the image. Each boot is one cloud's VM (VM_CLOUDS): its SMBIOS
# strings make DMI look like that cloud, so both cloud-init and trainsupd's cloud.provider "auto"
# find it. The user data (tests/e2e/user-data.in: writes /etc/trainsupd/trainsupd.json, enables
# and starts the unit) reaches the guest
#   - on aws: from the fake cloud's IMDS, read by cloud-init's own Ec2 datasource (IMDSv2 token,
#     versioned meta-data, the identity document, user-data), no seed disk;
#   - on gce and azure: from a NoCloud seed disk (cloud-init's GCE and Azure datasources need
#     more than a metadata server: Azure's wireserver, GCE's guest agent).
# The guest sees
#   - http://169.254.169.254 = scripts/fakecloud on the host (qemu user-net guestfwd, socat);
#   - a file:// store on the host's 9p share "store", and an evidence share "e2e".
#   Boots 1-3 are AWS spot VMs (one job's life), boot 4 a GCE VM, boot 5 an Azure VM:
#   Boot 1: restore nothing, start the task; after its first committed snapshot the fake cloud
#           posts a spot interruption (120 s); phase drained; then qemu is killed (SIGKILL).
#   Boot 2: restore, resume from the saved step, complete, completion marker, power-off through
#           logind: qemu exits by itself.
#   Boot 3: completion marker found: power-off at once, the task is never started.
#   Boots 4 and 5 use a store of their own (E2E_WORK/store4, store5: a fresh job, no marker):
#   Boot 4: after the first background snapshot the host sends system_powerdown on qemu's QMP
#           socket (an ACPI power-button press: GCE's preemption); logind powers off, the daemon's
#           delay inhibitor gives it a last-chance round (notice kind "shutdown"); qemu exits by
#           itself. The committed snapshot must hold the checkpoint the task made when asked
#           (or a later one): the task trains on until it is stopped and may save again after.
#   Boot 5: after the first background snapshot the host drops "restart-request" on the e2e
#           share; e2e-watch runs `systemctl restart trainsupd.service` in the guest. The task's
#           transient unit must keep running (same PID and invocation), be adopted by the new
#           daemon (task-started ADOPTED=1, never started twice) and complete; power-off.
# Evidence in E2E_OUT (default tests/e2e/out): bootN/{journal.json, status.jsonl, serial.log,
# checks.txt, qemu.log, fakecloud.log (this boot's metadata requests), cloud-init-result.json,
# cloud-init-schema.txt},
# fakecloud.log, store.txt, summary.txt, security.txt (`systemd-analyze security` of the unit, in
# boot 1); boot4/qmp-powerdown.json, boot5/restart-done.json, boot{4,5}/store.txt (their own stores).
#
# Environment: E2E_OUT, E2E_WORK [/var/tmp/trainsupd-check-vm] (image, disk copies: ~1 GB),
# ACCEL [tcg] (kvm: -accel kvm -cpu host), SMP [2], MEM [1024], BOOT_TIMEOUT [360] per boot,
# BOOTS ["1 2 3 4 5"], VM_CLOUDS ["aws aws aws gce azure"] (boot N is the Nth word: aws, gce or
# azure), AWS_SEED [imds] (nocloud: aws boots get a NoCloud seed too), REBASE [0] (1: rebuild the Debian base of the image), SRC_REV [worktree],
# STEPS [60] STEP_S [0.5] SIZE_MB [2] (the sample task), KEEP_DISKS [0], POWERDOWN_TIMEOUT [120]
# (boot 4: from system_powerdown to qemu's exit).
# Needs root (mmdebstrap, 9p with security_model=none) and the host packages below.
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
E2E_OUT=$(realpath -m "${E2E_OUT:-$top/tests/e2e/out}")
W=$(realpath -m "${E2E_WORK:-/var/tmp/trainsupd-check-vm}")
ACCEL=${ACCEL:-tcg}
SMP=${SMP:-2}
MEM=${MEM:-1024}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-360}
BOOTS=${BOOTS-1 2 3 4 5}
VM_CLOUDS=${VM_CLOUDS:-aws aws aws gce azure}
AWS_SEED=${AWS_SEED:-imds}
STEPS=${STEPS:-60}
STEP_S=${STEP_S:-0.5}
SIZE_MB=${SIZE_MB:-2}
KEEP_DISKS=${KEEP_DISKS:-0}
PY=/usr/bin/python3

log() { echo "[check-vm $(date +%T)] $*" | tee -a "$E2E_OUT/summary.txt"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || { echo "check-vm: run as root" >&2; exit 77; }
mkdir -p "$E2E_OUT" "$W"
rm -rf "$E2E_OUT"/boot[0-9]* "$E2E_OUT"/{bake.log,fakecloud.log,fakecloud-state.json,store.txt}
: >"$E2E_OUT/summary.txt"
T0=$(now)

# ------------------------------------------------------------------ host packages
need=()
for p in qemu-system-x86 qemu-utils mmdebstrap e2fsprogs socat cloud-image-utils genisoimage; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
        log "installing host packages: ${need[*]}"
        apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
                "${need[@]}" >/dev/null
fi

# ------------------------------------------------------------------ the image
rm -rf "$W/overlay"
install -D -m 0755 "$top/scripts/demo-train" "$W/overlay/usr/local/bin/demo-train"
install -D -m 0755 "$top/tests/e2e/guest/e2e-watch" "$W/overlay/usr/local/sbin/e2e-watch"
TB=$(now)
OVERLAY=$W/overlay SRC="$top" DATASOURCES="NoCloud, Ec2, None" ROOT_LOGIN=${ROOT_LOGIN:-1} "$top/scripts/bake-image.sh" "$W/image" 2>&1 | tee "$E2E_OUT/bake.log"
[ "${PIPESTATUS[0]}" = 0 ] || die "bake-image.sh failed"
log "image baked in $(since "$TB")s"
# shellcheck disable=SC1091
. "$W/image/boot.env"

# ------------------------------------------------------------------ the fake cloud and the store
STORE=$W/store
rm -rf "$STORE" "$W"/store[0-9]* "$W/fc.port"
mkdir -p "$STORE"
# store_of N: the store a boot sees (boots 1-3 share one: they are one job's life)
store_of() { if [ "$1" -ge 4 ]; then echo "$W/store$1"; else echo "$STORE"; fi; }
QPID=""
FCPID=""
cleanup() {
        if [ -n "$QPID" ]; then kill -KILL "$QPID" 2>/dev/null || true; fi
        if [ -n "$FCPID" ]; then kill "$FCPID" 2>/dev/null || true; fi
        wait 2>/dev/null || true
}
trap cleanup EXIT
$PY "$top/scripts/fakecloud" --port 0 --port-file "$W/fc.port" --log "$E2E_OUT/fakecloud.log" &
FCPID=$!
for _ in $(seq 100); do [ -s "$W/fc.port" ] && break; sleep 0.1; done
FC_PORT=$(cat "$W/fc.port")
FC=http://127.0.0.1:$FC_PORT
curl -sf "$FC/_fake/health" >/dev/null || die "fakecloud did not come up"

case "$ACCEL" in
kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
tcg) ACCEL_ARGS=(-accel "tcg,thread=multi" -cpu max) ;;
*) ACCEL_ARGS=(-accel "$ACCEL") ;;
esac
# cloud_of N: the cloud boot N's VM belongs to (the Nth word of VM_CLOUDS)
cloud_of() {
        local a
        read -r -a a <<<"$VM_CLOUDS"
        echo "${a[$(($1 - 1))]:-aws}"
}
# uses_seed N: does boot N get its user data from a NoCloud seed disk (else from the fake IMDS)?
uses_seed() { [ "$(cloud_of "$1")" != aws ] || [ "$AWS_SEED" = nocloud ]; }
# smbios_of CLOUD: what DMI says on that cloud's VMs
smbios_of() {
        case $1 in
        # sys_vendor, bios_vendor; product_uuid = serial starting with ec2 (cloud-init's strict test)
        aws) SMBIOS=(-smbios "type=0,vendor=Amazon EC2" -smbios "type=1,manufacturer=Amazon EC2,product=g5.xlarge,uuid=ec2e1916-9099-7caf-fd21-012345abcdef,serial=ec2e1916-9099-7caf-fd21-012345abcdef") ;;
        gce) SMBIOS=(-smbios "type=0,vendor=Google" -smbios "type=1,manufacturer=Google,product=Google Compute Engine,serial=GoogleCloud-5C1D0E2E0B00740D") ;;
        # every Azure VM carries this chassis asset tag
        azure) SMBIOS=(-smbios "type=1,manufacturer=Microsoft Corporation,product=Virtual Machine" -smbios "type=3,manufacturer=Microsoft Corporation,asset=7783-7084-3265-9085-8269-3286-77") ;;
        *) die "unknown cloud '$1' in VM_CLOUDS" ;;
        esac
}
# 169.254.169.254 must lie inside net=; cmd: runs one socat per connection. restrict=on: the
# guest reaches nothing but the forwarded metadata address.
NETDEV="user,id=n0,net=169.254.169.0/24,host=169.254.169.2,dns=169.254.169.3,dhcpstart=169.254.169.15,restrict=on"
NETDEV="$NETDEV,guestfwd=tcp:169.254.169.254:80-cmd:socat - TCP:127.0.0.1:$FC_PORT"

# boot_start N: a fresh copy of the image, a new seed, qemu in the background (QPID)
boot_start() {
        local n=$1 d=$E2E_OUT/boot$1 cloud
        cloud=$(cloud_of "$n")
        mkdir -p "$d/guest" "$W/seed$n"
        cp --sparse=always "$W/image/disk.raw" "$W/disk$n.raw"
        sed -e "s/@STEPS@/$STEPS/; s/@STEP_S@/$STEP_S/; s/@SIZE_MB@/$SIZE_MB/" "$top/tests/e2e/user-data.in" \
                >"$W/seed$n/user-data"
        cp "$W/seed$n/user-data" "$d/user-data"
        BSTORE=$(store_of "$n")
        mkdir -p "$BSTORE"
        rm -f "$W/qmp$n.sock" "$W/seed$n.iso"
        SEED=()
        if uses_seed "$n"; then
                printf 'instance-id: i-e2e-boot%s\nlocal-hostname: trainsupd-vm%s\n' "$n" "$n" >"$W/seed$n/meta-data"
                cloud-localds "$W/seed$n.iso" "$W/seed$n/user-data" "$W/seed$n/meta-data"
                SEED=(-drive "file=$W/seed$n.iso,format=raw,if=virtio,readonly=on")
        fi
        # a new VM each boot: its own instance ID; on aws the user data is the instance's, in IMDS
        curl -sf -X POST -H 'Content-Type: application/json' \
                --data "{\"instance_id\": \"i-0e2e0000000b0$(printf %04x "$n")\", \"local_hostname\": \"trainsupd-vm$n\"}" \
                "$FC/_fake/identity?cloud=aws" >/dev/null || die "fakecloud: setting the identity failed"
        if uses_seed "$n"; then
                curl -sf -X POST --data-binary '' "$FC/_fake/userdata?cloud=aws" >/dev/null
        else
                curl -sf -X POST --data-binary "@$W/seed$n/user-data" "$FC/_fake/userdata?cloud=aws" >/dev/null ||
                        die "fakecloud: setting the user data failed"
        fi
        smbios_of "$cloud"
        FC_LINE0=$(wc -l <"$E2E_OUT/fakecloud.log")
        BOOT_T0=$(now)
        qemu-system-x86_64 "${ACCEL_ARGS[@]}" -machine pc -m "$MEM" -smp "$SMP" \
                -nodefaults -display none -monitor none -qmp "unix:$W/qmp$n.sock,server=on,wait=off" -no-reboot "${SMBIOS[@]}" \
                -kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND loglevel=4" \
                -drive "file=$W/disk$n.raw,format=raw,if=virtio,cache=unsafe" \
                "${SEED[@]}" \
                -netdev "$NETDEV" -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,romfile= \
                -device virtio-rng-pci \
                -virtfs "local,path=$BSTORE,mount_tag=store,security_model=none,id=store" \
                -virtfs "local,path=$d/guest,mount_tag=e2e,security_model=none,id=e2e" \
                -serial "file:$d/serial.log" >"$d/qemu.log" 2>&1 &
        QPID=$!
        log "boot $n: qemu pid $QPID, a $cloud VM, user data from $(uses_seed "$n" && echo "a NoCloud seed" || echo "the fake IMDS") (accel=$ACCEL smp=$SMP mem=$MEM)"
}

# qmp N COMMAND: one QMP command on boot N's monitor socket; the reply on stdout
qmp() {
        $PY - "$W/qmp$1.sock" "$2" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
def reply():
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            return r
json.loads(f.readline())  # the greeting
f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n"); f.flush(); reply()
f.write(json.dumps({"execute": sys.argv[2]}) + "\n"); f.flush()
r = reply()
print(json.dumps(r))
sys.exit(0 if "return" in r else 1)
EOF
}

# last_status N EXPR: evaluate EXPR (python, on s = the newest status --json capture) -> stdout
last_status() {
        $PY - "$E2E_OUT/boot$1/guest/status.jsonl" "$2" <<'EOF' 2>/dev/null || true
import json, sys
s = None
try:
    for line in open(sys.argv[1]):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r.get("status"), dict):
            s = r["status"]
except OSError:
    pass
if s is not None:
    print(eval(sys.argv[2]))
EOF
}

# status_is N EXPR VALUE: the newest capture's EXPR is VALUE (re-read at every call)
status_is() { test "$(last_status "$1" "$2")" = "$3"; }

# wait_until DESC TIMEOUT CMD...: poll CMD every second; fails when qemu is gone or on timeout
wait_until() {
        local desc=$1 t=$2 end
        shift 2
        end=$(($(date +%s) + t))
        while ! "$@"; do
                kill -0 "$QPID" 2>/dev/null || { log "qemu exited while waiting for: $desc"; return 1; }
                [ "$(date +%s)" -lt "$end" ] || { log "timed out (${t}s) waiting for: $desc"; return 1; }
                sleep 1
        done
        log "  $desc after $(since "$BOOT_T0")s"
}

# wait_exit N: wait for qemu to exit by itself (KILLED=0) or kill it at BOOT_TIMEOUT (KILLED=1)
wait_exit() {
        local end=$(($(date +%s) + BOOT_TIMEOUT))
        KILLED=0
        while kill -0 "$QPID" 2>/dev/null; do
                if [ "$(date +%s)" -ge "$end" ]; then
                        log "boot $1: timed out after ${BOOT_TIMEOUT}s, killing qemu"
                        kill -KILL "$QPID"
                        KILLED=1
                        break
                fi
                sleep 1
        done
        wait "$QPID" 2>/dev/null || true
        QPID=
}

# journal_from_disk N: this boot's persistent journal, read out of the powered-off image
journal_from_disk() {
        local n=$1 d=$E2E_OUT/boot$1
        rm -rf "$W/jx$n"
        mkdir -p "$W/jx$n"
        debugfs -R "rdump /var/log/journal $W/jx$n" "$W/disk$n.raw" >/dev/null 2>&1 || true
        journalctl -D "$W/jx$n/journal" -o json --no-pager >"$d/journal.json" 2>/dev/null || true
        SYSTEMD_COLORS=0 journalctl -D "$W/jx$n/journal" -o short-monotonic --no-pager >"$d/journal.txt" 2>/dev/null || true
}

# after_exit N: qemu of boot N has exited (by itself or killed at BOOT_TIMEOUT): says so, reads the
# journal out of the image (the streamed one stops at the shutdown; the one on the disk is complete;
# the streamed one stands in when the disk has none), and sets KFLAG for run_checks.
after_exit() {
        local n=$1 d=$E2E_OUT/boot$1
        log "boot $n: qemu exited after $(since "$BOOT_T0")s$([ "$KILLED" = 1 ] && echo ' (killed at the timeout)')"
        journal_from_disk "$n"
        KFLAG=()
        [ "$KILLED" = 1 ] && KFLAG=(--killed)
        [ -s "$d/journal.json" ] || cp "$d/guest/journal-stream.json" "$d/journal.json" 2>/dev/null || true
}

run_checks() {
        local n=$1 d=$E2E_OUT/boot$1 seed=imds
        shift
        # this boot's metadata requests (the fake cloud's log since boot_start)
        tail -n +"$((FC_LINE0 + 1))" "$E2E_OUT/fakecloud.log" >"$d/fakecloud.log"
        cp "$d/guest/cloud-init-result.json" "$d/guest/cloud-init-schema.txt" "$d/" 2>/dev/null || true
        uses_seed "$n" && seed=nocloud
        if $PY "$top/tests/e2e/vm-checks.py" --boot "$n" --cloud "$(cloud_of "$n")" --seed "$seed" \
                --fakecloud-log "$d/fakecloud.log" --cloud-init-result "$d/cloud-init-result.json" \
                "$@" >"$d/checks.txt"; then
                RESULT[$n]=pass
        else
                RESULT[$n]=FAIL
        fi
        sed 's/^/  /' "$E2E_OUT/boot$n/checks.txt" | grep -v '^  SAVED_STEP=' | tee -a "$E2E_OUT/summary.txt"
}

declare -A RESULT=()
SAVED_STEP=
for n in $BOOTS; do
        d=$E2E_OUT/boot$n
        curl -sf -X POST "$FC/_fake/reset" >/dev/null
        boot_start "$n"
        case $n in
        1)
                ok=1
                wait_until "trainsupd phase running" 300 status_is 1 's["phase"]' running || ok=0
                [ $ok = 1 ] && { wait_until "first background snapshot committed" 120 \
                        status_is 1 's["last_snapshot"] is not None' True || ok=0; }
                if [ $ok = 1 ]; then
                        case $(cloud_of 1) in
                        aws) q="cloud=aws&kind=spot-interruption&in_s=120" ;;
                        gce) q="cloud=gce&kind=preempt" ;;
                        azure) q="cloud=azure&kind=preempt&in_s=30" ;;
                        esac
                        curl -sf -X POST "$FC/_fake/notice?$q" >"$d/notice.json"
                        log "  fake cloud posted a $(cloud_of 1) preemption notice ($q) at $(since "$BOOT_T0")s"
                        wait_until "phase drained" 150 status_is 1 's["phase"]' drained || ok=0
                fi
                sleep 3   # let the journal stream and one more status capture reach the share
                kill -KILL "$QPID" 2>/dev/null || true
                wait "$QPID" 2>/dev/null || true
                QPID=
                log "boot 1: qemu killed hard after $(since "$BOOT_T0")s"
                cp "$d/guest/journal-stream.json" "$d/journal.json" 2>/dev/null || true
                run_checks 1 --journal "$d/journal.json" --status "$d/guest/status.jsonl" \
                        --serial "$d/serial.log" --store "$STORE" --killed
                SAVED_STEP=$(sed -n 's/^SAVED_STEP=//p' "$d/checks.txt")
                [ $ok = 1 ] || RESULT[1]=FAIL
                ;;
        4 | 5)
                ok=1
                wait_until "trainsupd phase running" 300 status_is "$n" 's["phase"]' running || ok=0
                [ $ok = 1 ] && { wait_until "first background snapshot committed" 120 \
                        status_is "$n" 's["last_snapshot"] is not None' True || ok=0; }
                if [ $ok = 1 ] && [ "$n" = 4 ]; then
                        sleep 2   # a few more steps than the background snapshot holds
                        if qmp 4 system_powerdown >"$d/qmp-powerdown.json"; then
                                log "  system_powerdown (ACPI power button) sent on QMP at $(since "$BOOT_T0")s"
                        else
                                log "  system_powerdown on QMP failed: $(cat "$d/qmp-powerdown.json")"
                                ok=0
                        fi
                elif [ $ok = 1 ]; then
                        : >"$d/guest/restart-request"
                        log "  restart request dropped on the e2e share at $(since "$BOOT_T0")s"
                        wait_until "systemctl restart trainsupd done in the guest" 150 \
                                test -s "$d/guest/restart-done.json" || ok=0
                        cp "$d/guest/restart-done.json" "$d/restart-done.json" 2>/dev/null || true
                fi
                if [ $ok = 1 ] && [ "$n" = 4 ]; then
                        # the inhibitor holds the shutdown at most 25 s: no need to wait BOOT_TIMEOUT
                        BOOT_TIMEOUT=${POWERDOWN_TIMEOUT:-120} wait_exit "$n"
                else
                        [ $ok = 1 ] || log "boot $n: not driven to the end, waiting for qemu anyway"
                        wait_exit "$n"
                fi
                after_exit "$n"
                run_checks "$n" --journal "$d/journal.json" --status "$d/guest/status.jsonl" \
                        --serial "$d/serial.log" --store "$(store_of "$n")" --restart "$d/guest/restart-done.json" \
                        --steps "$STEPS" "${KFLAG[@]}"
                [ $ok = 1 ] || RESULT[$n]=FAIL
                ;;
        *)
                wait_exit "$n"
                after_exit "$n"
                run_checks "$n" --journal "$d/journal.json" --status "$d/guest/status.jsonl" \
                        --serial "$d/serial.log" --store "$STORE" ${SAVED_STEP:+--saved-step "$SAVED_STEP"} "${KFLAG[@]}"
                ;;
        esac
        cp "$d/guest/status.jsonl" "$d/status.jsonl" 2>/dev/null || true
        # the newest capture while the daemon answered (the very last ones may be from the shutdown)
        last_status "$n" 'json.dumps(s, indent=2)' >"$d/status-last.json"
        [ "$KEEP_DISKS" = 1 ] || rm -f "$W/disk$n.raw"
done

cp "$E2E_OUT/boot1/guest/security.txt" "$E2E_OUT/security.txt" 2>/dev/null &&
        log "$(grep -m1 'Overall exposure level' "$E2E_OUT/security.txt" | sed 's/\x1b\[[0-9;]*m//g')"
(cd "$STORE" && find . -printf '%M %10s %TY-%Tm-%Td %TT %p\n' | sort -k5) >"$E2E_OUT/store.txt"
for n in $BOOTS; do
        [ "$n" -ge 4 ] && [ -d "$W/store$n" ] || continue
        (cd "$W/store$n" && find . -printf '%M %10s %TY-%Tm-%Td %TT %p\n' | sort -k5) >"$E2E_OUT/boot$n/store.txt"
done
curl -sf "$FC/_fake/state" >"$E2E_OUT/fakecloud-state.json" || true
fail=0
for n in $BOOTS; do
        log "boot $n: ${RESULT[$n]:-FAIL}"
        [ "${RESULT[$n]:-FAIL}" = pass ] || fail=1
done
log "total $(since "$T0")s; evidence in $E2E_OUT"
if [ $fail = 0 ]; then log "check-vm: PASS"; else log "check-vm: FAIL"; exit 1; fi
