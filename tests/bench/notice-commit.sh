#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2034 # variables read by the sourced helpers
# Notice → committed snapshot, and the work lost per preemption (tests/bench/README.md
# "Notice to committed snapshot"):
#   (a) `trainsupd run --dry-run` with an exec task (a small Python program written below) and an
#       s3:// store on one throwaway Ceph RGW (tests/integration/rgw-lib.sh, as storage.sh),
#       watching scripts/fakecloud; an AWS spot interruption (in_s=120) is posted and the
#       console's EVENT=notice → checkpoint-requested → checkpoint-settled → snapshot-committed →
#       task-exited are timed (ms since the notice line). Two variants:
#         full   one 1 GiB file, written anew on SIGUSR1, nothing of it in the store before;
#         dedup  4 files of 256 MiB written at start and synced in the background first; on
#                SIGUSR1 one of them is rewritten (the other three are not sent again).
#   (b) scripts/demo.sh (its scenario and settings: 60 steps of 0.2 s, a checkpoint every 10
#       steps, the notice half way), REPS times: the steps lost to the preemption, in steps and
#       seconds, against what a periodic-checkpoint-only (cron copy) setup would have lost: the
#       steps since the last periodic checkpoint when the task was stopped. The demo's notice
#       falls at step ~30, on a periodic checkpoint; so the same scenario is also run with
#       DEMO_STEPS from DEMO_PHASES (default "62 66 70 74 78"), which moves the notice (half way)
#       to other points of the 10-step period.
# Writes tests/bench/results/notice-commit.txt (BENCH_SCALE=small: $T/notice-commit-small.txt,
# printed; the temp dir is removed, so copy it from the output).
#
#   tests/bench/notice-commit.sh   (after a build; TRAINSUPD=path picks one; root, Ceph (ceph-mon,
#                                   ceph-osd, radosgw), /usr/bin/aws (to delete between runs), curl)
#   BENCH_SCALE=small              data 16 times smaller (64 MiB; 4 × 16 MiB): a smoke run
#   REPS=N                         runs of each variant and of the demo (default 3)
#   DEMO_PHASES="62 66 ..."        DEMO_STEPS of the extra demo runs ("" for none)
#
# The task (see task.py below): on SIGUSR1 it writes each file under a temporary name in the
# checkpoint directory, fsyncs it, renames it into place, fsyncs the directory, then creates
# $TRAINSUPD_COMMIT_FILE. The bytes: a 32-byte random nonce, then slices of a 64 MiB random
# pool (generated at start) at random offsets, so every save is a new file to trainsupd (it
# deduplicates whole files by SHA-256; nothing in the path compresses) without spending seconds
# of CPU in os.urandom during the save.
set -uo pipefail

. "$(dirname "$0")/bench-lib.sh"
export TRAINSUPD=$bin TOP_SRCDIR=$top PYTHON=${PYTHON:-/usr/bin/python3}
REPS=${REPS:-3}
SCALE=${BENCH_SCALE:-full}
bench_need "apt-get install awscli curl" /usr/bin/aws curl
# Memstore RAM: one run's data at a time (each run's prefix is deleted and garbage-collected).
if [ "$SCALE" = small ]; then div=16; RGW_MEMSTORE_MB=${RGW_MEMSTORE_MB:-2048}; else div=1; RGW_MEMSTORE_MB=${RGW_MEMSTORE_MB:-6144}; fi
export RGW_MEMSTORE_MB

. "$top/tests/integration/lib.sh"
. "$top/tests/integration/rgw-lib.sh"
rgw_requirements
# The daemon takes a logind inhibitor on the system bus: point it at nothing.
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$T/no-system-bus
unset DBUS_SESSION_BUS_ADDRESS

say() { echo "$(date -u +%H:%M:%S) $*" >&2; }
R=$T/results
mkdir -p "$R"
MiB=1048576

# ---------------------------------------------------------------- (b) the demo, REPS times

# First, before the cluster is up (Ceph's own CPU use would slow the demo's steps).
# demo_run NAME [VAR=VALUE...]: one run of scripts/demo.sh; its VM 1 console log and summary in $R.
demo_run() {
        local name=$1 rc ddir
        shift
        env "$@" DEMO_SKIP_BUILD=1 TRAINSUPD="$TRAINSUPD" timeout -k 5 300 "$top/scripts/demo.sh" </dev/null >"$T/$name.out" 2>&1
        rc=$?
        ddir=$(sed -nE 's/^Demo files are in (.*)$/\1/p' "$T/$name.out" | tail -n 1)
        if [ "$rc" != 0 ] || [ -z "$ddir" ] || [ ! -f "$ddir/vm1/console.log" ]; then
                say "$name failed (exit $rc): $(tail -n 3 "$T/$name.out")"
                echo "$name failed (exit $rc): $(tail -n 1 "$T/$name.out")" >>"$R/notes"
        else
                cp "$ddir/vm1/console.log" "$R/$name.vm1.log"
                grep -E 'step\(s\) of work lost' "$T/$name.out" >"$R/$name.summary"
        fi
        case $ddir in /tmp/trainsupd-demo.*) rm -rf "$ddir" ;; esac
}
for rep in $(seq "$REPS"); do
        say "demo: run $rep of $REPS"
        demo_run "demo-$rep"
done
# The demo posts its notice half way (at step ~30 of 60), where a periodic checkpoint falls too.
# The same scenario with more steps moves the notice to other points of the 10-step period
# (DEMO_PHASES: the DEMO_STEPS values; the notice comes after about half of them).
for st in ${DEMO_PHASES-62 66 70 74 78}; do
        say "demo with DEMO_STEPS=$st"
        demo_run "phase-$st" DEMO_STEPS="$st"
done

# ---------------------------------------------------------------- the task

cat >"$T/task.py" <<'EOF'
# The bench's training task: --files N --file-mb M [--initial] [--change K].
import argparse, os, random, signal, sys, time
p = argparse.ArgumentParser()
p.add_argument("--files", type=int, default=1)
p.add_argument("--file-mb", type=float, default=1024)
p.add_argument("--initial", action="store_true", help="write every file at start (a checkpoint to sync)")
p.add_argument("--change", type=int, default=1, help="files rewritten on the checkpoint signal")
a = p.parse_args()
sys.stdout.reconfigure(line_buffering=True)
d, commit = os.environ["TRAINSUPD_CHECKPOINT_DIR"], os.environ.get("TRAINSUPD_COMMIT_FILE")
size = int(a.file_mb * (1 << 20))
POOL = 64 << 20
pool = os.urandom(min(POOL, max(size, 1 << 20)))
BLOCK = 4 << 20
wanted = [False]
signal.signal(signal.SIGUSR1, lambda s, f: wanted.__setitem__(0, True))
os.makedirs(d, exist_ok=True)

def write(name):
    path, tmp = os.path.join(d, name), os.path.join(d, "." + name + ".tmp")
    view = memoryview(pool)
    with open(tmp, "wb") as f:
        f.write(os.urandom(32))
        left = size - 32
        while left > 0:
            n = min(BLOCK, left, len(pool))
            o = random.randrange(0, len(pool) - n + 1)
            f.write(view[o:o + n])
            left -= n
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

def save(k, what):
    for i in range(k):
        write("shard-%d.bin" % i)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.close(fd)
    if commit:
        try:
            os.unlink(commit)
        except FileNotFoundError:
            pass
        open(commit, "w").close()
    print("saved %s: %d file(s) of %d bytes" % (what, k, size))

if a.initial:
    save(a.files, "initial")
print("ready")
while True:
    time.sleep(0.02)
    if wanted[0]:
        wanted[0] = False
        save(a.change, "on signal")
EOF

# ---------------------------------------------------------------- the cluster, the fake cloud

rgw_start
say "RGW up at $RGW_ENDPOINT"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION AWS_DEFAULT_REGION
CEPH=(-c "$T/ceph/ceph.conf")
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$RGW_KEY" "$RGW_SECRET" >"$T/credentials"
chmod 600 "$T/credentials"
AWS=(env -u AWS_PROFILE -u AWS_CA_BUNDLE AWS_ACCESS_KEY_ID="$RGW_KEY" AWS_SECRET_ACCESS_KEY="$RGW_SECRET"
        AWS_DEFAULT_REGION="$RGW_REGION" AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
        /usr/bin/aws --endpoint-url "$RGW_ENDPOINT")
B=$RGW_BUCKET

"$PYTHON" "$top/scripts/fakecloud" --port 0 --port-file "$T/fc.port" --log "$T/fc.log" 2>"$T/fc.err" &
track_pid $!
wait_for 10 test -s "$T/fc.port" || bail_out "the fake cloud did not start: $(cat "$T/fc.err")"
FC=http://127.0.0.1:$(cat "$T/fc.port")

# drop PREFIX: deletes s3://B/bench/PREFIX/ and collects the garbage (frees the memstore).
drop() {
        "${AWS[@]}" s3 rm --recursive --only-show-errors "s3://$B/bench/$1/" >/dev/null 2>&1
        timeout 300 radosgw-admin "${CEPH[@]}" gc process --include-all >/dev/null 2>&1
}

# Warm-up, not measured: RGW creates its data pool on the first object and the non-EC pool on the
# first multipart upload (seconds each).
mkdir -p "$T/warm"
head -c $((64 * MiB)) /dev/urandom >"$T/warm/w.bin"
cat >"$T/warm.json" <<EOF
{"job_id": "warm", "tasks": [{"runtime": "exec", "command": ["/bin/true"], "checkpoint_dir": "$T/warm"}],
 "cloud": {"provider": "none"},
 "storage": {"url": "s3://$B/bench/warm", "endpoint": "$RGW_ENDPOINT", "region": "$RGW_REGION",
             "credentials_file": "$T/credentials"}}
EOF
TRAINSUPD_STATE_DIR=$T/warm-state timeout 120 "$TRAINSUPD" snapshot --config "$T/warm.json" >/dev/null 2>"$T/warm.err" ||
        say "warm-up snapshot failed: $(tail -n 2 "$T/warm.err")"
drop warm
rm -rf "$T/warm" "$T/warm-state"

# ---------------------------------------------------------------- (a) notice → commit

# one_run VARIANT REP: one daemon, one task, one notice; the console log lands in $R.
one_run() {
        local v=$1 rep=$2 p args log cfg
        p=$v-$rep
        case $v in
        full) args="\"--files\", \"1\", \"--file-mb\", \"$((1024 / div))\", \"--change\", \"1\"" ;;
        dedup) args="\"--files\", \"4\", \"--file-mb\", \"$((256 / div))\", \"--initial\", \"--change\", \"1\"" ;;
        esac
        mkdir -p "$T/$p"
        cfg=$T/$p/config.json
        cat >"$cfg" <<EOF
{
  "job_id": "bench-$p",
  "tasks": [{"name": "trainer", "runtime": "exec", "command": ["$PYTHON", "$T/task.py", $args],
             "checkpoint_dir": "$T/$p/ckpt", "stop_grace_s": 10}],
  "checkpoint": {"settle_ms": 10000, "timeout_s": 60},
  "storage": {"url": "s3://$B/bench/$p", "endpoint": "$RGW_ENDPOINT", "region": "$RGW_REGION",
              "credentials_file": "$T/credentials", "concurrency": 8, "part_size_mb": null},
  "cloud": {"provider": "aws", "metadata_url": "$FC", "poll_ms": 250},
  "on_complete": "none"
}
EOF
        curl -s -X POST "$FC/_fake/reset" >/dev/null
        log=$R/$p.log
        : >"$log"
        TRAINSUPD_STATE_DIR=$T/$p/state TRAINSUPD_CONTROL=$T/$p/control \
                "$TRAINSUPD" run --config "$cfg" --log-target=console --dry-run </dev/null >/dev/null 2>"$log" &
        local pid=$!
        track_pid "$pid"
        if ! wait_for 120 grep -q 'OUT="ready"' "$log"; then
                say "$p: the task did not get ready: $(tail -n 3 "$log")"
                echo "$p: the task did not get ready" >>"$R/notes"
                stop_pid "$pid"
                return 1
        fi
        if [ "$v" = dedup ] && ! wait_for 300 grep -q ' EVENT=snapshot-committed ' "$log"; then
                say "$p: the initial checkpoint was not synced: $(tail -n 3 "$log")"
                echo "$p: the initial checkpoint was not synced in 300 s" >>"$R/notes"
                stop_pid "$pid"
                return 1
        fi
        sleep 2 # let the background sync's retention run and the page cache writeback calm down
        echo "$EPOCHREALTIME" >"$R/$p.posted"
        curl -s -X POST "$FC/_fake/notice?cloud=aws&kind=spot-interruption&in_s=120" >/dev/null
        if ! wait_for 180 eval "sed -n '/ EVENT=notice /,\$p' '$log' | grep -q ' EVENT=task-exited '"; then
                say "$p: no task-exited within 180 s of the notice: $(tail -n 3 "$log")"
                echo "$p: no task-exited within 180 s of the notice" >>"$R/notes"
        fi
        stop_pid "$pid"
        drop "$p"
        rm -rf "${T:?}/$p"
}

for rep in $(seq "$REPS"); do
        for v in full dedup; do
                say "$v: run $rep of $REPS"
                one_run "$v" "$rep"
        done
done

# ---------------------------------------------------------------- report

out=$top/tests/bench/results/notice-commit.txt
[ "$SCALE" = small ] && out=$T/notice-commit-small.txt
mkdir -p "$(dirname "$out")"
{
        echo "# trainsupd notice → committed snapshot; work lost per preemption ($(date -u +%Y-%m-%dT%H:%M:%SZ)," \
                "$(uname -m), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)," \
                "scale $SCALE, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
        echo "# $("$TRAINSUPD" --version | head -n 1); radosgw $(radosgw --version 2>/dev/null | awk '{print $3}')" \
                "(one memstore OSD, loopback); scripts/fakecloud (AWS, poll_ms 250); REPS=$REPS; median [min..max]"
        DEMO_PHASES_USED="${DEMO_PHASES-62 66 70 74 78}" "$PYTHON" - "$R" "$div" <<'EOF'
import datetime, glob, os, re, statistics, sys
d, div = sys.argv[1], int(sys.argv[2])
LINE = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (.*)$')
def ms(stamp):
    t = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
    return t.timestamp() * 1000.0
def lines(path):
    for l in open(path, errors="replace"):
        m = LINE.match(l.rstrip("\n"))
        if m:
            yield ms(m.group(1)), m.group(2)
def field(rest, name):
    m = re.search(r'(?:^| )%s=("(?:[^"\\]|\\.)*"|[^ ]+)' % name, rest)
    return m.group(1).strip('"') if m else None
def med(v):
    return statistics.median(v) if v else float("nan")
def fmt(v, unit=""):
    if not v:
        return "-"
    return "%.0f%s [%.0f..%.0f]" % (med(v), unit, min(v), max(v))

CHAIN = ("notice", "checkpoint-requested", "checkpoint-settled", "snapshot-committed", "task-exited")
print()
print("## (a) notice → committed snapshot (RGW, s3:// store, concurrency 8, automatic part size)")
print("# ms since the EVENT=notice line (console time stamps, ms resolution); post→notice: the bench's")
print("# POST to the fake cloud → the notice line (poll interval 250 ms)")
raw = []
for v, what in (("full", "full: one %d MiB file, all new" % (1024 // div)),
                ("dedup", "dedup: 4 × %d MiB synced before, 1 rewritten" % (256 // div))):
    cols = {k: [] for k in ("post", "req", "set", "com", "ex", "save", "upload", "sent")}
    for log in sorted(glob.glob(os.path.join(d, "%s-*.log" % v)), key=lambda p: int(p.rsplit("-", 1)[1][:-4])):
        rep = log.rsplit("-", 1)[1][:-4]
        ev = list(lines(log))
        i0 = next((i for i, (t, r) in enumerate(ev) if r.startswith("EVENT=notice ")), None)
        if i0 is None:
            raw.append("%s run %s: no EVENT=notice" % (v, rep))
            continue
        t0 = ev[i0][0]
        got, rest = {}, {}
        for t, r in ev[i0:]:
            for name in CHAIN[1:]:
                if name not in got and r.startswith("EVENT=%s " % name):
                    got[name], rest[name] = t - t0, r
        if len(got) != 4:
            raw.append("%s run %s: incomplete chain, got %s" % (v, rep, sorted(got)))
            continue
        posted = float(open(log[:-4] + ".posted").read()) * 1000.0
        s = {"post": t0 - posted, "req": got["checkpoint-requested"], "set": got["checkpoint-settled"],
             "com": got["snapshot-committed"], "ex": got["task-exited"]}
        s["save"] = s["set"] - s["req"]
        s["upload"] = s["com"] - s["set"]
        for k in s:
            cols[k].append(s[k])
        c = rest["snapshot-committed"]
        keys = ("SNAPSHOT", "BYTES", "SENT_BYTES")
        sent = [field(c, k) for k in keys]
        up = field(c, "SENT_BYTES")
        if up is not None:
            cols["sent"].append(int(up) / 1048576.0)
        raw.append("%s run %s: post→notice %.0f; requested %.0f, settled %.0f (%s), committed %.0f, exited %.0f;"
                   " committed line: %s" % (v, rep, s["post"], s["req"], s["set"],
                                            field(rest["checkpoint-settled"], "REASON"), s["com"], s["ex"],
                                            " ".join("%s=%s" % (k, x) for k, x in
                                                     zip(keys, sent)
                                                     if x is not None)))
    print()
    print("%s (n=%d)" % (what, len(cols["com"])))
    print("  post → notice line               %s ms" % fmt(cols["post"]))
    print("  notice → checkpoint-requested    %s ms" % fmt(cols["req"]))
    print("  notice → checkpoint-settled      %s ms" % fmt(cols["set"]))
    print("  notice → snapshot-committed      %s ms   <- target ≤ 10000 ms (loopback, 1 GiB)" % fmt(cols["com"]))
    print("  notice → task-exited             %s ms" % fmt(cols["ex"]))
    print("  split: the task's save (requested → settled)       %s ms" % fmt(cols["save"]))
    print("         trainsupd upload + commit (settled → committed) %s ms" % fmt(cols["upload"]))
    if cols["sent"]:
        print("  sent by the notice's snapshot: %s MiB" % fmt(cols["sent"]))

print()
print("## (b) work lost per preemption: scripts/demo.sh (60 steps × 0.2 s, checkpoint every 10, notice half way)")
print("# trainsupd: steps after the checkpoint it committed (demo.sh's own count: last step − saved step);")
print("# periodic only: steps after the last every-10-steps checkpoint, at the same moment (the task stopped),")
print("# i.e. what a cron copy of the periodic checkpoints would lose at best (copy instant, VM gone then).")
print("# seconds: steps × the run's mean step time (step 1 → last step in the task's output, console stamps).")
def demo_series(prefix, label):
    cols = {"lost": [], "lost_s": [], "naive": [], "naive_s": [], "step": []}
    for log in sorted(glob.glob(os.path.join(d, "%s-*.vm1.log" % prefix)),
                      key=lambda p: int(os.path.basename(p).split("-")[1].split(".")[0])):
        rep = os.path.basename(log).split("-")[1].split(".")[0]
        steps, ckpts = {}, []
        for t, r in lines(log):
            m = re.match(r'TASK=\S+ OUT="step (\d+)"', r)
            if m:
                steps[int(m.group(1))] = t
            m = re.match(r'TASK=\S+ OUT="checkpoint at step (\d+)"', r)
            if m:
                ckpts.append(int(m.group(1)))
        sp = os.path.join(d, "%s-%s.summary" % (prefix, rep))
        summ = open(sp).read().strip() if os.path.exists(sp) else ""
        m = re.search(r'reached step (\d+) and saved step (\d+)', summ)
        if not m or not steps:
            raw.append("%s %s: unparsable: %s" % (prefix, rep, summ))
            continue
        last, saved = int(m.group(1)), int(m.group(2))
        periodic = max([c for c in ckpts if c % 10 == 0 and c <= last] or [0])
        first = min(steps)
        step_s = (steps[last] - steps[first]) / 1000.0 / (last - first) if last > first else float("nan")
        lost, naive = last - saved, last - periodic
        cols["lost"].append(lost); cols["naive"].append(naive); cols["step"].append(step_s * 1000)
        cols["lost_s"].append(lost * step_s); cols["naive_s"].append(naive * step_s)
        raw.append("%s %s: checkpoints at steps %s; reached %d, saved %d on the notice, last periodic %d;"
                   " mean step %.1f ms; lost %d step(s) = %.2f s, periodic-only %d = %.2f s" %
                   (prefix, rep, ckpts, last, saved, periodic, step_s * 1000, lost, lost * step_s, naive, naive * step_s))
    if not cols["lost"]:
        return
    print()
    print("%s: n=%d; mean step time %s ms" % (label, len(cols["lost"]), fmtf(cols["step"], "%.1f")))
    print("  trainsupd (checkpoint on the notice): %s steps = %s s (total %d steps)" % (
        fmtf(cols["lost"], "%.1f"), fmtf(cols["lost_s"]), sum(cols["lost"])))
    print("  periodic checkpoints only (cron copy): %s steps = %s s (total %d steps)" % (
        fmtf(cols["naive"], "%.1f"), fmtf(cols["naive_s"]), sum(cols["naive"])))
def fmtf(v, f="%.2f"):
    return "-" if not v else (f + " [" + f + ".." + f + "]") % (med(v), min(v), max(v))
demo_series("demo", "the demo's settings (DEMO_STEPS=60)")
demo_series("phase", "notice elsewhere in the period (DEMO_STEPS=%s; run named by it)" % os.environ.get("DEMO_PHASES_USED", ""))
print()
print("## raw samples")
for r in raw:
    print(r)
EOF
        if [ -f "$R/notes" ]; then echo; sed 's/^/note: /' "$R/notes"; fi
} | tee "$out"
