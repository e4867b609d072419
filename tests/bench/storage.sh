#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2034 # variables read by the sourced helpers
# Storage throughput (tests/bench/README.md "Storage throughput"): `trainsupd snapshot` and
# `trainsupd restore` versus Debian's aws CLI (`aws s3 cp` / `aws s3 sync`) and rclone
# (`rclone copy`) against one throwaway Ceph RGW (tests/integration/rgw-lib.sh), for one 1 GiB
# file and for a directory of 20 files of 4 KiB … 200 MiB (~600 MiB); plus an unchanged
# re-snapshot (time, and what it sent, counted through tests/integration/faultproxy.py).
# Writes tests/bench/results/storage.txt.
#
#   tests/bench/storage.sh       (after a build; TRAINSUPD=path picks one; root, Ceph (ceph-mon,
#                                 ceph-osd, radosgw), /usr/bin/aws, rclone, /usr/bin/time)
#   BENCH_SCALE=small            data 64 times smaller (a smoke run); REPS=N (default 3)
#
# Every number is the median of REPS runs: wall time from the bench's clock ($EPOCHREALTIME)
# around the client command, CPU = user + sys of the client process and its children (rusage
# from /usr/bin/time). Each upload goes to a fresh prefix (and for trainsupd a fresh state
# directory, so nothing is deduplicated and every byte is hashed); downloads go to a fresh
# directory. Settings, comparable across the tools:
#   trainsupd  storage.concurrency 8, storage.part_size_mb null (automatic: 16 MiB parts)
#   aws        defaults: multipart_chunksize 8 MiB, max_concurrent_requests 10
#   rclone     --s3-upload-concurrency 8 --transfers 4, otherwise defaults (5 MiB chunks,
#              --multi-thread-streams 4 for downloads of files ≥ 250 MiB)
set -uo pipefail

. "$(dirname "$0")/bench-lib.sh"
export TRAINSUPD=$bin TOP_SRCDIR=$top PYTHON=${PYTHON:-/usr/bin/python3}
REPS=${REPS:-3}
SCALE=${BENCH_SCALE:-full}
bench_need "apt-get install awscli rclone time" /usr/bin/aws rclone /usr/bin/time

# RAM for the memstore OSD: the largest moment holds three 1 GiB uploads plus one in flight;
# deleted objects are garbage-collected at once (radosgw-admin gc process) after each run.
if [ "$SCALE" = small ]; then div=64; RGW_MEMSTORE_MB=${RGW_MEMSTORE_MB:-2048}; else div=1; RGW_MEMSTORE_MB=${RGW_MEMSTORE_MB:-8192}; fi
export RGW_MEMSTORE_MB

. "$top/tests/integration/lib.sh"
. "$top/tests/integration/rgw-lib.sh"

say() { echo "$(date -u +%H:%M:%S) $*" >&2; }
R=$T/results
mkdir -p "$R"

# ---------------------------------------------------------------- data

MiB=1048576
SRC_FILE=$T/src-file # a directory holding the one big file
SRC_DIR=$T/src-dir
mkdir -p "$SRC_FILE" "$SRC_DIR/shards" "$SRC_DIR/meta"
say "generating data (scale $SCALE)"
head -c $((1024 * MiB / div)) /dev/urandom >"$SRC_FILE/model.bin"
# 20 files, 4 KiB … 200 MiB, ~598 MiB; some in subdirectories.
i=0
for kib in 204800 122880 81920 65536 49152 32768 20480 12288 8192 6144 4096 2048 1024 512 256 128 64 32 16 4; do
        i=$((i + 1))
        n=$((kib * 1024 / div))
        [ "$n" -lt 4096 ] && n=4096
        case $((i % 3)) in 0) d=$SRC_DIR ;; 1) d=$SRC_DIR/shards ;; 2) d=$SRC_DIR/meta ;; esac
        head -c "$n" /dev/urandom >"$d/part-$(printf %02d "$i").bin"
done
sums_of() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }
sums_of "$SRC_FILE" >"$T/file.sha256"
sums_of "$SRC_DIR" >"$T/dir.sha256"
bytes_of() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }'; }
echo "file $(bytes_of "$SRC_FILE") 1" >"$R/sizes"
echo "dir $(bytes_of "$SRC_DIR") $(find "$SRC_DIR" -type f | wc -l)" >>"$R/sizes"
sync

# ---------------------------------------------------------------- the cluster and the clients

rgw_start
radosgw --version >"$T/version" 2>&1
say "RGW up at $RGW_ENDPOINT"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION AWS_DEFAULT_REGION
CEPH=(-c "$T/ceph/ceph.conf")
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$RGW_KEY" "$RGW_SECRET" >"$T/credentials"
chmod 600 "$T/credentials"

AWS=(env -u AWS_PROFILE -u AWS_CA_BUNDLE AWS_ACCESS_KEY_ID="$RGW_KEY" AWS_SECRET_ACCESS_KEY="$RGW_SECRET"
        AWS_DEFAULT_REGION="$RGW_REGION" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
        /usr/bin/aws --endpoint-url "$RGW_ENDPOINT")
: >"$T/rclone.conf"
RCLONE=(env -u AWS_CA_BUNDLE RCLONE_CONFIG="$T/rclone.conf" RCLONE_CONFIG_RGW_TYPE=s3 RCLONE_CONFIG_RGW_PROVIDER=Ceph
        RCLONE_CONFIG_RGW_ENDPOINT="$RGW_ENDPOINT" RCLONE_CONFIG_RGW_ACCESS_KEY_ID="$RGW_KEY"
        RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY="$RGW_SECRET" RCLONE_CONFIG_RGW_REGION="$RGW_REGION"
        rclone -q --s3-upload-concurrency 8 --transfers 4)
B=$RGW_BUCKET

# tsup_config FILE SRC PREFIX [ENDPOINT]: a config snapshotting SRC to s3://B/bench/PREFIX.
tsup_config() {
        cat >"$1" <<EOF
{
  "job_id": "bench",
  "tasks": [{"runtime": "exec", "command": ["/bin/true"], "checkpoint_dir": "$2"}],
  "cloud": {"provider": "none"},
  "storage": {"url": "s3://$B/bench/$3", "endpoint": "${4:-$RGW_ENDPOINT}", "region": "$RGW_REGION",
              "credentials_file": "$T/credentials", "concurrency": 8, "part_size_mb": null}
}
EOF
}

# measure NAME COMMAND...: one sample "wall user sys" (seconds) appended to $R/NAME.
measure() {
        local name=$1 t0 t1 rc
        shift
        t0=$EPOCHREALTIME
        /usr/bin/time -f '%U %S' -o "$T/time.out" timeout -k 5 1800 "$@" >"$T/m.out" 2>"$T/m.err"
        rc=$?
        t1=$EPOCHREALTIME
        if [ "$rc" != 0 ]; then
                say "$name: exit $rc: $(tail -n 3 "$T/m.err")"
                echo "$name: a run failed (exit $rc): $(tail -n 1 "$T/m.err")" >>"$R/notes"
                return 1
        fi
        echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') $(tail -n 1 "$T/time.out")" >>"$R/$name"
}
# fsync_files NAME DIR: how long fsync of every file in DIR takes (what a download left unsynced).
fsync_files() {
        local t0=$EPOCHREALTIME
        find "$2" -type f -exec sync {} +
        awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }' >>"$R/$1"
}
# drop PREFIX: deletes s3://B/bench/PREFIX/ and collects the garbage (frees the memstore).
drop() {
        "${AWS[@]}" s3 rm --recursive --only-show-errors "s3://$B/bench/$1/" >/dev/null 2>&1
        timeout 300 radosgw-admin "${CEPH[@]}" gc process --include-all >/dev/null 2>&1
}
# verify SET DIR: DIR holds exactly the source data of SET.
verify() {
        if (cd "$2" && sha256sum --quiet -c "$T/$1.sha256" >/dev/null 2>&1) &&
                [ "$(find "$2" -type f | wc -l)" = "$(wc -l <"$T/$1.sha256")" ]; then
                return 0
        fi
        say "$1: $2 does not hold the source data"
        echo "$1: a download into $2 was not byte-exact" >>"$R/notes"
}

# Warm-up, not measured: RGW creates its data pool on the first object written and the non-EC
# pool on the first multipart upload (seconds each); whichever tool came first would pay that.
head -c $((20 * MiB)) /dev/urandom >"$T/warm"
"${AWS[@]}" s3 cp --only-show-errors "$T/warm" "s3://$B/bench/warm/multipart" >/dev/null 2>&1
"${AWS[@]}" s3 cp --only-show-errors "$T/version" "s3://$B/bench/warm/small" >/dev/null 2>&1
"${AWS[@]}" s3 cp --only-show-errors "s3://$B/bench/warm/multipart" "$T/warm.back" >/dev/null 2>&1
drop warm
rm -f "$T/warm" "$T/warm.back"

# ---------------------------------------------------------------- uploads, downloads

for set in file dir; do
        if [ "$set" = file ]; then src=$SRC_FILE; else src=$SRC_DIR; fi
        for rep in $(seq "$REPS"); do
                say "$set: upload, run $rep of $REPS"
                p=tsup-$set-$rep
                tsup_config "$T/$p.json" "$src" "$p"
                TRAINSUPD_STATE_DIR=$T/state-$p measure "$set-up-trainsupd" "$TRAINSUPD" snapshot --config "$T/$p.json"
                if [ "$set" = file ]; then
                        measure "$set-up-aws" "${AWS[@]}" s3 cp --only-show-errors "$src/model.bin" "s3://$B/bench/aws-$set-$rep/model.bin"
                        measure "$set-up-rclone" "${RCLONE[@]}" copy "$src/model.bin" "rgw:$B/bench/rclone-$set-$rep"
                else
                        measure "$set-up-aws" "${AWS[@]}" s3 sync --only-show-errors "$src" "s3://$B/bench/aws-$set-$rep"
                        measure "$set-up-rclone" "${RCLONE[@]}" copy "$src" "rgw:$B/bench/rclone-$set-$rep"
                fi
                if [ "$rep" -lt "$REPS" ]; then
                        drop "tsup-$set-$rep"
                        drop "aws-$set-$rep"
                        drop "rclone-$set-$rep"
                        rm -rf "$T/state-$p"
                fi
        done
        # Downloads of what each tool uploaded last.
        last=tsup-$set-$REPS
        for rep in $(seq "$REPS"); do
                say "$set: download, run $rep of $REPS"
                D=$T/dl-$set
                rm -rf "$D"
                TRAINSUPD_STATE_DIR=$T/state-$last measure "$set-down-trainsupd" "$TRAINSUPD" restore --config "$T/$last.json" --to "$D"
                fsync_files "$set-fsync-trainsupd" "$D"
                [ "$rep" = 1 ] && verify "$set" "$D"
                rm -rf "$D"
                if [ "$set" = file ]; then
                        measure "$set-down-aws" "${AWS[@]}" s3 cp --only-show-errors "s3://$B/bench/aws-$set-$REPS/model.bin" "$D/model.bin"
                else
                        measure "$set-down-aws" "${AWS[@]}" s3 sync --only-show-errors "s3://$B/bench/aws-$set-$REPS" "$D"
                fi
                fsync_files "$set-fsync-aws" "$D"
                [ "$rep" = 1 ] && verify "$set" "$D"
                rm -rf "$D"
                measure "$set-down-rclone" "${RCLONE[@]}" copy "rgw:$B/bench/rclone-$set-$REPS" "$D"
                fsync_files "$set-fsync-rclone" "$D"
                [ "$rep" = 1 ] && verify "$set" "$D"
                rm -rf "$D"
        done

        # An unchanged re-snapshot: same data, same state directory (its stat cache) as the last
        # upload. Timed directly against RGW; then once more through faultproxy (no faults), which
        # logs every request and its body size; and the data/ listing before and after.
        data_listing() {
                "${AWS[@]}" s3api list-objects-v2 --bucket "$B" --prefix "bench/$last/bench/main/data/" \
                        --query '[length(Contents || `[]`), sum(Contents[].Size || `[0]`)]' --output text 2>/dev/null | tr '\t' ' '
        }
        before=$(data_listing)
        for rep in $(seq "$REPS"); do
                say "$set: unchanged re-snapshot, run $rep of $REPS"
                TRAINSUPD_STATE_DIR=$T/state-$last measure "$set-resnap-trainsupd" "$TRAINSUPD" snapshot --config "$T/$last.json"
        done
        "$PYTHON" "$TESTS_DIR/faultproxy.py" --upstream "127.0.0.1:$RGW_PORT" --port-file "$T/fp-$set.port" \
                --log "$T/fp-$set.log" >/dev/null 2>"$T/fp-$set.err" &
        fp=$!
        track_pid "$fp"
        wait_for 10 test -s "$T/fp-$set.port" || say "faultproxy did not start: $(cat "$T/fp-$set.err")"
        tsup_config "$T/$last-fp.json" "$src" "$last" "http://127.0.0.1:$(cat "$T/fp-$set.port")"
        TRAINSUPD_STATE_DIR=$T/state-$last measure "$set-resnap-proxied" "$TRAINSUPD" snapshot --config "$T/$last-fp.json"
        stop_pid "$fp"
        after=$(data_listing)
        "$PYTHON" - "$T/fp-$set.log" "$before" "$after" >"$R/$set-resnap-requests" <<'EOF'
import collections, json, sys
reqs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = collections.Counter(r["method"] for r in reqs)
data_writes = [r for r in reqs if r["method"] in ("PUT", "POST") and "/data/" in r["path"]]
print("requests %d (%s); request body bytes %d; data PUT/POST %d (%d bytes); response body bytes %d;"
      " data/ objects before %s, after %s" % (
      len(reqs), ", ".join("%s %d" % kv for kv in sorted(by.items())), sum(r["req_bytes"] for r in reqs),
      len(data_writes), sum(r["req_bytes"] for r in data_writes), sum(r["resp_bytes"] for r in reqs),
      sys.argv[2].replace(" ", " objects/") + " bytes", sys.argv[3].replace(" ", " objects/") + " bytes"))
for r in reqs:
    q = ("?" + r["query"]) if r["query"] else ""
    print("    %s %s%s -> %s, %d ms" % (r["method"], r["path"], q[:60], r["status"], r["ms"]))
EOF
        for p in "tsup-$set-$REPS" "aws-$set-$REPS" "rclone-$set-$REPS"; do drop "$p"; done
        rm -rf "$T/state-$last"
done

# ---------------------------------------------------------------- report

out=$top/tests/bench/results/storage.txt
[ "$SCALE" = small ] && out=$T/storage-small.txt
mkdir -p "$(dirname "$out")"
{
        echo "# trainsupd storage throughput ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $(nproc) cores," \
                "$(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), scale $SCALE)"
        echo "# $("$TRAINSUPD" --version | head -n 1); $(/usr/bin/aws --version 2>&1 | cut -d' ' -f1-2);" \
                "$(rclone version | head -n 1); radosgw $(radosgw --version 2>/dev/null | awk '{print $3}') (one memstore OSD, loopback)"
        echo "# median of $REPS runs; wall from the bench's clock; CPU = user+sys of the client (rusage);"
        echo "# MiB/s = data size / wall; ratio = tool wall / trainsupd wall (> 1: trainsupd faster)"
        echo "# trainsupd: concurrency 8, automatic part size (16 MiB); aws: 8 MiB parts, 10 concurrent;"
        echo "# rclone: --s3-upload-concurrency 8 --transfers 4 (5 MiB chunks, 4 download streams)"
        "$PYTHON" - "$R" <<'EOF'
import os, sys
d = sys.argv[1]
sizes = {l.split()[0]: (int(l.split()[1]), int(l.split()[2])) for l in open(os.path.join(d, "sizes"))}
def rows(name):
    f = os.path.join(d, name)
    if not os.path.exists(f):
        return []
    return [[float(x) for x in l.split()] for l in open(f) if l.strip()]
def med(v):
    v = sorted(v)
    return v[(len(v) - 1) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
title = {"file": "(a) one file of %.0f MiB", "dir": "(b) a directory of %d files, %.0f MiB"}
for s in ("file", "dir"):
    size, nfiles = sizes[s]
    mib = size / 1048576.0
    print()
    print("## " + (title[s] % mib if s == "file" else title[s] % (nfiles, mib)))
    print("%-9s %-10s %3s %8s %8s %8s %9s %8s %s" % ("", "tool", "n", "wall s", "MiB/s", "CPU s", "CPU s/GiB", "ratio",
                                                 "wall + fsync of the files (downloads)"))
    for op in ("up", "down"):
        base = None
        for tool in ("trainsupd", "aws", "rclone"):
            r = rows("%s-%s-%s" % (s, op, tool))
            if not r:
                print("%-9s %-10s   0   (not measured: see the notes)" % ({"up": "upload", "down": "download"}[op], tool))
                continue
            wall = med([x[0] for x in r])
            cpu = med([x[1] + x[2] for x in r])
            if tool == "trainsupd":
                base = wall
            extra = ""
            if op == "down":
                fs = rows("%s-fsync-%s" % (s, tool))
                tot = med([a[0] + b[0] for a, b in zip(r, fs)]) if fs else None
                if tot:
                    extra = "%.2f s = %.0f MiB/s" % (tot, mib / tot)
            print("%-9s %-10s %3d %8.2f %8.0f %8.2f %9.2f %8s %s" % (
                {"up": "upload", "down": "download"}[op], tool, len(r), wall, mib / wall, cpu, cpu / (mib / 1024.0),
                "%.2fx" % (wall / base) if base else "-", extra))
    r = rows("%s-resnap-trainsupd" % s)
    if r:
        print("%-9s %-10s %3d %8.3f %8s %8.3f   (unchanged: same data, same state directory)" % (
            "resnap", "trainsupd", len(r), med([x[0] for x in r]), "", med([x[1] + x[2] for x in r])))
    p = rows("%s-resnap-proxied" % s)
    if p:
        print("  once more through faultproxy: %.3f s" % p[0][0])
    f = os.path.join(d, "%s-resnap-requests" % s)
    if os.path.exists(f):
        print("  what it sent: " + open(f).read().rstrip())
print()
print("## raw samples (wall user sys; fsync: wall)")
for name in sorted(os.listdir(d)):
    if name in ("sizes", "notes") or name.endswith("-requests"):
        continue
    print("%-24s %s" % (name, " | ".join(l.strip() for l in open(os.path.join(d, name)) if l.strip())))
EOF
        if [ -f "$R/notes" ]; then echo; sed 's/^/note: /' "$R/notes"; fi
} | tee "$out"
