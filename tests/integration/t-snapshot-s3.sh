#!/bin/bash
# SPDX-License-Identifier: MIT
# The one-shot storage commands end to end against a real S3 implementation (Ceph RGW,
# tests/integration/rgw-lib.sh) through tests/integration/faultproxy.py: `trainsupd snapshot`,
# `snapshots --json`, `restore --to`, byte-exact (sha256sum -c, modes, symlinks) for a directory
# of mixed files and a 40 MiB multipart file; what trainsupd wrote is read back independently
# with Debian's aws CLI. Then under faults (503 SlowDown, resets mid-body, lost answers, stalls):
# every snapshot either commits and restores byte-exact, or fails with a clear error and no new
# manifest while the previous snapshot still restores; no multipart upload is left open (those
# whose CreateMultipartUpload answer was lost are aborted by the retention after the grace
# period, with TRAINSUPD_TEST_RETENTION_GRACE_S, while a young one is kept). A
# `snapshot` killed with SIGKILL mid-upload leaves no half snapshot; hostile manifests uploaded
# with the aws CLI are refused (exit 65) and write nothing outside the target; an unchanged
# re-snapshot sends no data (PUTs counted in the proxy's log).
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/rgw-lib.sh"
. "$TESTS_DIR/faultproxy-lib.sh"

T_START=$(now_ms)
rgw_start
diag "RGW up in $(($(now_ms) - T_START)) ms at $RGW_ENDPOINT"
plan 67

# trainsupd must use storage.credentials_file, nothing from the environment.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION AWS_DEFAULT_REGION

# ---------------------------------------------------------------- the proxy

fp_start "$RGW_PORT" --control-file "$T/fp-control.json"

# ---------------------------------------------------------------- config, data

snapshot_job s3job t-snapshot-s3
echo "11111111-2222-3333-4444-555555555555" >"$TRAINSUPD_DMI_DIR/product_uuid"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$RGW_KEY" "$RGW_SECRET" >"$T/credentials"
chmod 600 "$T/credentials"
write_config "$CFG" "\"cloud\": {\"provider\": \"none\"}" \
        "\"storage\": {\"url\": \"s3://$RGW_BUCKET/$PFX\", \"endpoint\": \"$FP\", \"region\": \"$RGW_REGION\",
    \"credentials_file\": \"$T/credentials\", \"part_size_mb\": 5, \"concurrency\": 4, \"keep\": 100}"
run_cmd "$TRAINSUPD" validate --config "$CFG"
[ "$RC" = 0 ] || bail_out "config does not validate: $OUT $ERR"

ckpt_fill 40
mkdir -p "$CKPT/sub/deep/er"
echo "deep" >"$CKPT/sub/deep/er/leaf.txt"
cp "$CKPT/state.txt" "$CKPT/sub/dup-of-state.txt"
chmod 700 "$CKPT/empty-dir"
ln -s ../big.bin "$CKPT/sub/big-link"
touch "$CKPT/.trainsupd-commit"

# record ID, restore_is ID [ARGS...]: lib.sh's; a restore of 40 MiB under faults may take a while.
RESTORE_RUN=(run_cmd --timeout 300 "$TRAINSUPD")

n_manifests() {
        rgw_aws s3api list-objects-v2 --bucket "$RGW_BUCKET" --prefix "$TASKP/manifests/" \
                --query 'length(Contents || `[]`)' --output text 2>&1
}
open_uploads() {
        rgw_aws s3api list-multipart-uploads --bucket "$RGW_BUCKET" --prefix "$PFX/" \
                --query 'length(Uploads || `[]`)' --output text 2>&1
}
abort_uploads() { # aborts every open upload under the prefix (cleanup after noting them)
        rgw_aws s3api list-multipart-uploads --bucket "$RGW_BUCKET" --prefix "$PFX/" \
                --query 'Uploads[].[Key, UploadId]' --output text 2>/dev/null |
                while read -r k u; do
                        [ -n "$u" ] && [ "$k" != None ] &&
                                rgw_aws s3api abort-multipart-upload --bucket "$RGW_BUCKET" --key "$k" --upload-id "$u" >/dev/null 2>&1
                done
}

# ---------------------------------------------------------------- 1. baseline

m0=$(log_mark)
t0=$(now_ms)
run_cmd --timeout 300 "$TRAINSUPD" snapshot --config "$CFG"
is "$RC" 0 "snapshot through the proxy: exit 0 ($(($(now_ms) - t0)) ms)"
[ "$RC" = 0 ] || diag "$ERR"
ID1=$OUT
n_parts_put=$(log_count "$m0" 'r["method"] == "PUT" and "partNumber=" in r["query"]')
n_data_get=$(log_count "$m0" 'r["method"] == "GET" and "/data/" in r["path"]')
like "$ID1" '^000000000001-[0-9]{8}T[0-9]{9}Z-[0-9a-f]{8}$' "snapshot prints the id of seq 1"
record "$ID1"

run_cmd "$TRAINSUPD" snapshots --config "$CFG" --json
printf '%s\n' "$OUT" >"$T/list.json"
want_bytes=$(find "$CKPT" -type f ! -name .trainsupd-commit -printf '%s\n' | awk '{ s += $1 } END { print s }')
is "$RC:$(json_get "$T/list.json" '[(s["id"], s["seq"], s["task"], s["bytes"]) for s in d]')" \
        "0:[[\"$ID1\", 1, \"main\", $want_bytes]]" "snapshots --json: id, seq, task, bytes"

check "restore --to: byte-exact, modes and symlinks (sha256sum -c, tree)" restore_is "$ID1"

# the manifest and every object, read back with the aws CLI
MAN=$T/manifest-1.json
rgw_aws s3 cp "s3://$RGW_BUCKET/$TASKP/manifests/$ID1.json" "$MAN" >/dev/null 2>&1
is "$(json_get "$MAN" '[d["format"], d["version"], d["id"], d["count"]]')" \
        "[\"trainsupd-snapshot\", 1, \"$ID1\", $(wc -l <"$T/want-$ID1.tree")]" "aws CLI reads the manifest: format, id, count"
bad=""
while read -r want path; do
        got=$(rgw_aws s3 cp "s3://$RGW_BUCKET/$TASKP/data/$want" - 2>/dev/null | sha256sum | cut -d' ' -f1)
        [ "$got" = "$want" ] || bad="$bad $path($got)"
done < <("$PYTHON" -c 'import json,sys
for e in json.load(open(sys.argv[1]))["files"]:
    if e["type"] == "file": print(e["sha256"], e["path"])' "$MAN")
is "$bad" "" "aws CLI: every data object's SHA-256 is the manifest's"
is "$("$PYTHON" -c 'import json,sys
m = {e["path"]: e["sha256"] for e in json.load(open(sys.argv[1]))["files"] if e["type"] == "file"}
print(m.get("big.bin"), m.get("sub/weights.bin"))' "$MAN")" "$(sha "$CKPT/big.bin") $(sha "$CKPT/sub/weights.bin")" \
        "the manifest's SHA-256 are the local files'"
is "$("$PYTHON" - "$MAN" "$CKPT/big.bin" <<'EOF'
import hashlib, json, sys
e = [e for e in json.load(open(sys.argv[1]))["files"] if e["path"] == "big.bin"][0]
data = open(sys.argv[2], "rb").read()
ps = e.get("part_size")
ok = ps == 5 * 1024 * 1024 and [p["sha256"] for p in e["parts"]] == \
    [hashlib.sha256(data[i:i + ps]).hexdigest() for i in range(0, len(data), ps)]
print("%s %d" % (ok, len(e.get("parts", []))))
EOF
)" "True 8" "big.bin: 8 parts of 5 MiB in the manifest, each part's SHA-256 right"
like "$(rgw_aws s3api head-object --bucket "$RGW_BUCKET" --key "$TASKP/data/$(sha "$CKPT/big.bin")" 2>&1)" \
        '"ETag": "\\"[0-9a-f]+-8\\""' "RGW holds big.bin as an 8-part multipart object"
is "$n_parts_put" 8 "the proxy saw 8 UploadPart requests"
is "$n_data_get" 0 "snapshot itself downloads no data"

# ---------------------------------------------------------------- 2. an unchanged re-snapshot

m0=$(log_mark)
run_cmd --timeout 120 "$TRAINSUPD" snapshot --config "$CFG"
ID2=$OUT
is "$RC" 0 "unchanged re-snapshot: exit 0"
cp "$T/want-$ID1.sha256" "$T/want-$ID2.sha256"
cp "$T/want-$ID1.tree" "$T/want-$ID2.tree"
is "$(log_count "$m0" 'r["method"] in ("PUT", "POST") and "/data/" in r["path"]'):$(log_count "$m0" 'r["method"] == "PUT" and "/manifests/" in r["path"]')" \
        "0:1" "unchanged re-snapshot: no data PUT/POST, one manifest PUT"
diag "unchanged re-snapshot requests: $(log_since "$m0" | "$PYTHON" -c 'import json,sys,collections
print(dict(collections.Counter(json.loads(l)["method"] for l in sys.stdin)))')"

# ---------------------------------------------------------------- 3. snapshots under faults

# change_data NAME: new content for the next snapshot (a multipart file among it).
change_data() {
        echo "step $1" >"$CKPT/state.txt"
        head -c 1048576 /dev/urandom | dd of="$CKPT/big.bin" bs=1M seek=$((RANDOM % 39)) conv=notrunc status=none
        head -c 2000000 /dev/urandom >"$CKPT/sub/fault-$1.bin"
}

# sweep_check NAME N: N uploads are open after case NAME, left by lost CreateMultipartUpload
# answers (nobody learnt their ids). Once they are older than the grace period, the retention after
# the next snapshot aborts them, and only them: an upload younger than the grace period (as another
# writer's, in flight; made with the aws CLI right before) is kept. One check.
SWEEP_GRACE_S=10
sweep_check() {
        local name=$1 n=$2 young_key young_id m0 t0 elapsed left aborts want_left want_aborts=$2
        sleep $((SWEEP_GRACE_S + 1))
        young_key=$TASKP/data/young-$name
        young_id=$(rgw_aws s3api create-multipart-upload --bucket "$RGW_BUCKET" --key "$young_key" \
                --query UploadId --output text 2>&1)
        want_left="$young_key $young_id"
        t0=$(now_ms)
        m0=$(log_mark)
        run_cmd --timeout 300 env TRAINSUPD_TEST_RETENTION_GRACE_S=$SWEEP_GRACE_S "$TRAINSUPD" snapshot --config "$CFG"
        elapsed=$(($(now_ms) - t0))
        [ "$RC" = 0 ] && record "$OUT"
        left=$(rgw_aws s3api list-multipart-uploads --bucket "$RGW_BUCKET" --prefix "$PFX/" \
                --query "Uploads[].join(' ', [Key, UploadId])" --output text 2>&1)
        [ "$left" = None ] && left=
        aborts=$(log_count "$m0" 'r["method"] == "DELETE" and "uploadId=" in r["query"]')
        diag "$name: $n orphaned; the snapshot with a $SWEEP_GRACE_S s grace took $elapsed ms, sent $aborts aborts; left open: $left"
        if [ "$elapsed" -ge $((SWEEP_GRACE_S * 1000)) ]; then
                # Too slow: the young upload aged past the grace period meanwhile and may go too.
                [ "$left" = "" ] && want_left= && want_aborts=$((n + 1))
        fi
        if [ "$RC" = 0 ] && ! grep -qi retention <<<"$ERR" && [ "$aborts" = "$want_aborts" ] && [ "$left" = "$want_left" ]; then
                ok "$name: the $n upload(s) a lost answer left open are aborted by retention after the grace period, a young one is kept"
        else
                not_ok "$name: the $n upload(s) a lost answer left open are aborted by retention after the grace period, a young one is kept"
                diag "exit $RC: $ERR"
        fi
}

# fault_case NAME JSON: five checks: the fault was injected; the snapshot either committed (exactly
# one new snapshot, the id printed, restoring byte-exact) or failed cleanly (an error, no new
# snapshot) (fault_snapshot); no multipart upload left open; the newest listed snapshot restores
# byte-exact; and it is the one the command printed (after a failure: the previous newest)
# (fault_snapshot_newest). Snapshots that appear during the case hold this case's data, whatever
# the command said (so one finding does not cascade into the next cases).
fault_case() {
        local name=$1 open
        fault_snapshot "$name" "$2" 300
        open=$(open_uploads)
        if [ "$open" = 0 ]; then
                ok "$name: no multipart upload left open"
        elif [ "$name" = lost-initiate ] || [ "$name" = lost-answer ]; then
                # The upload id was in the answer that never arrived: the client cannot abort what it
                # never learnt of at once; retention sweeps it after the grace period.
                sweep_check "$name" "$open"
        else
                not_ok "$name: no multipart upload left open"; diag "open uploads: $open"
        fi
        abort_uploads
        fault_snapshot_newest "$name"
}

fault_case slowdown '{"slowdown_every": 3}'
fault_case reset-request '{"reset_bytes": 1048576, "reset_side": "request", "reset_every": 3, "reset_match": "^PUT "}'
fault_case lost-answer '{"lost_answer_every": 3}'
fault_case lost-manifest-put '{"lost_answer_every": 1, "lost_answer_max": 1, "lost_answer_match": "^PUT .*/manifests/"}'
fault_case lost-initiate '{"lost_answer_every": 1, "lost_answer_max": 1, "lost_answer_match": "^POST .*\\?uploads"}'
fault_case lost-complete '{"lost_answer_every": 1, "lost_answer_max": 1, "lost_answer_match": "^POST .*uploadId="}'
fault_case stall '{"stall_s": 3, "stall_every": 2, "stall_match": "^PUT .*/data/"}'

# ---------------------------------------------------------------- 4. restore under faults

newest=$(listed_ids | tail -n 1)
restore_under_faults "$newest" '{"reset_bytes": 300, "reset_side": "response", "reset_every": 2, "reset_max": 8, "reset_match": "^GET "}' \
        "restore with every 2nd GET (8 in all) reset after 300 answer bytes: byte-exact"
num_cmp "$(log_count "$FS_MARK" 'r["fault"] == "reset-response"')" -gt 0 "answers were cut during that restore"
restore_under_faults "$newest" '{"slowdown_every": 3}' "restore with SlowDown on every 3rd request: byte-exact"
num_cmp "$(log_count "$FS_MARK" 'r["fault"] == "slowdown"')" -gt 0 "SlowDown was answered during that restore"

# ---------------------------------------------------------------- 5. SIGKILL mid-upload

change_data kill
before=$(n_manifests)
listed_ids >"$T/ids-before"
fp_set '{"stall_s": 600, "stall_match": "^(PUT|POST) .*/data/"}'
"$TRAINSUPD" snapshot --config "$CFG" >"$T/kill.out" 2>"$T/kill.err" &
KPID=$!
track_pid "$KPID"
stalled() { [ "$(fp_stat 'd["fired"]["stall"]')" -ge 2 ]; }
if wait_for 60 stalled; then ok "the snapshot's uploads reach the proxy and stall"; else not_ok "the snapshot's uploads reach the proxy and stall"; fi
kill -9 "$KPID" 2>/dev/null
wait "$KPID" 2>/dev/null
fp_off # releases the held requests (the killed client's bodies may be complete: RGW may store them)
sleep 1
is "$(n_manifests)" "$before" "no manifest from the killed snapshot"
is "$(listed_ids | tr '\n' ' ')" "$(tr '\n' ' ' <"$T/ids-before")" "snapshots lists the committed snapshots only"
check "the previous snapshot restores byte-exact after the kill" restore_is "$newest"
diag "multipart uploads left open by the killed process (retention aborts them after the grace period): $(open_uploads)"
abort_uploads
run_cmd --timeout 300 "$TRAINSUPD" snapshot --config "$CFG"
is "$RC" 0 "the next snapshot after the kill commits"
[ "$RC" = 0 ] && record "$OUT"
newest=$(listed_ids | tail -n 1)
check "and restores byte-exact" restore_is "$newest"

# ---------------------------------------------------------------- 6. hostile manifests

rgw_aws s3 cp "s3://$RGW_BUCKET/$TASKP/manifests/$newest.json" "$T/base.json" >/dev/null 2>&1
# hostile KIND N: writes $T/hostile-KIND.json (a next-seq id, consistent totals) and prints its id.
hostile() {
        "$PYTHON" - "$T/base.json" "$1" "$2" "$T/hostile-$1.json" <<'EOF'
import json, sys, time
m = json.load(open(sys.argv[1]))
kind, seq, out = sys.argv[2], int(sys.argv[3]), sys.argv[4]
t = time.time()
stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + "%03dZ" % (int(t * 1000) % 1000)
m["seq"] = seq
m["id"] = "%012d-%s-%s" % (seq, stamp, m["id"].rsplit("-", 1)[1])
m["created_at"] = "%s-%s-%sT%s:%s:%s.%s" % (stamp[0:4], stamp[4:6], stamp[6:8], stamp[9:11], stamp[11:13], stamp[13:15], stamp[15:19])
m["parent"] = None
files = m["files"]
state = [e for e in files if e["path"] == "state.txt"][0]
if kind == "traversal":      # a file two levels above the target
    e = dict(state); e["path"] = "../../escape-traversal.txt"; files.append(e)
elif kind == "absolute":
    e = dict(state); e["path"] = "/tmp/escape-absolute-trainsupd.txt"; files.append(e)
elif kind == "symlink":      # a link out of the snapshot, and a file written through it
    files.append({"path": "zz-out", "type": "symlink", "target": "../../.."})
    e = dict(state); e["path"] = "zz-out/escape-symlink.txt"; files.append(e)
elif kind == "size-bigger":  # state.txt claims more bytes than its object holds
    state["size"] += 4096
elif kind == "size-smaller":
    state["size"] -= 2
m["count"] = len(files)
m["bytes"] = sum(e.get("size", 0) for e in files if e["type"] == "file")
json.dump(m, open(out, "w"), indent=1)
print(m["id"])
EOF
}
seq=$((10#${newest%%-*}))
listed_ids >"$T/ids-before"
mkdir -p "$T/hx/sub"
: >"$T/hx/marker"
for kind in traversal absolute symlink size-bigger size-smaller; do
        seq=$((seq + 1))
        hid=$(hostile "$kind" "$seq")
        rgw_aws s3 cp "$T/hostile-$kind.json" "s3://$RGW_BUCKET/$TASKP/manifests/$hid.json" >/dev/null 2>&1 ||
                bail_out "cannot upload the hostile manifest"
        run_cmd --timeout 120 "$TRAINSUPD" restore --config "$CFG" --snapshot "$hid" --to "$T/hx/sub/out"
        escaped=$(find "$T" /tmp -maxdepth 4 \( -name escape-traversal.txt -o -name escape-absolute-trainsupd.txt \
                -o -name escape-symlink.txt \) 2>/dev/null | head -3)
        is "$RC:$(cd "$T/hx" && find . | LC_ALL=C sort | tr '\n' ' ')${escaped:+ escaped: $escaped}" "65:. ./marker ./sub " \
                "hostile manifest ($kind): restore --snapshot refuses with exit 65, writes nothing outside or in the target"
        [ "$RC" = 65 ] || diag "$kind: $OUT $ERR"
        diag "$kind: $(printf '%s\n' "$ERR" | tail -n 2)"
        rm -rf "$T/hx/sub/out"
done
listed_ids >"$T/ids-after"
invalid_listed=""
for kind in traversal absolute symlink; do
        hid=$(json_get "$T/hostile-$kind.json" 'd["id"]' | tr -d '"')
        grep -qx "$hid" "$T/ids-after" && invalid_listed="$invalid_listed $kind"
done
is "$invalid_listed" "" "snapshots does not list the invalid hostile manifests"
diag "snapshots lists these hostile manifests (valid JSON, objects of another size; restore refuses them): $(comm -13 "$T/ids-before" "$T/ids-after" | tr '\n' ' ')"
check "restore without --snapshot skips them and restores the newest valid one byte-exact" restore_is "$newest"
for f in "$T"/hostile-*.json; do
        hid=$(json_get "$f" 'd["id"]' | tr -d '"')
        rgw_aws s3 rm "s3://$RGW_BUCKET/$TASKP/manifests/$hid.json" >/dev/null 2>&1
done

# ---------------------------------------------------------------- 7. unchanged again, at the end

m0=$(log_mark)
run_cmd --timeout 120 "$TRAINSUPD" snapshot --config "$CFG"
is "$RC:$(log_count "$m0" 'r["method"] in ("PUT", "POST") and "/data/" in r["path"]')" "0:0" \
        "a final unchanged re-snapshot sends no data object"

sanitizers=$(sanitizer_report "$T/all-cmd.err" "$T/kill.err")
is "$sanitizers" "" "no sanitizer findings"
diag "proxy: $(fp_stat 'd["requests"]') requests in total; test took $(($(now_ms) - T_START)) ms"
rgw_aws s3 rm --recursive "s3://$RGW_BUCKET/$PFX/" >/dev/null 2>&1
