#!/bin/bash
# SPDX-License-Identifier: MIT
# The one-shot storage commands end to end against azurite (tests/integration/azurite-lib.sh)
# through tests/integration/faultproxy.py (--flavor azure: its own 503s are Azure's ServerBusy):
# `trainsupd snapshot`, `snapshots --json`, `restore --to`, byte-exact (sha256sum -c, modes,
# symlinks), a 20 MiB file as 4 Put Block + Put Block List. Then under faults (503 ServerBusy,
# resets mid-body, "stored but the answer was lost" on Put Block, Put Block List and the
# create-only manifest Put Blob, stalls, latency): every snapshot either commits and restores
# byte-exact or fails with a clear error and no new snapshot, and the previous one still restores.
# `trainsupd snapshot` killed with SIGKILL while a Put Block, the Put Block List or the manifest
# Put Blob is held leaves a complete verified snapshot or none; the previous one restores
# byte-exact and the next snapshot commits. Modelled on t-snapshot-s3.sh.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/azurite-lib.sh"
. "$TESTS_DIR/faultproxy-lib.sh"

T_START=$(now_ms)
azurite_requirements
unset AZURE_STORAGE_KEY AZURE_STORAGE_SAS_TOKEN AZURE_CLIENT_ID
azurite_start
CONTAINER=ckpt
az_create_container "$CONTAINER"
plan 65

# ---------------------------------------------------------------- the proxy

fp_start "$AZ_PORT" --flavor azure

# ---------------------------------------------------------------- config, data

snapshot_job azjob t-snapshot-az
printf '# test credentials\naccount_key = %s\n' "$AZ_KEY" >"$T/credentials"
chmod 600 "$T/credentials"
write_config "$CFG" "\"cloud\": {\"provider\": \"none\"}" \
        "\"storage\": {\"url\": \"az://$AZ_ACCOUNT/$CONTAINER/$PFX\", \"endpoint\": \"$FP/$AZ_ACCOUNT\",
    \"credentials_file\": \"$T/credentials\", \"part_size_mb\": 5, \"concurrency\": 4, \"keep\": 100}"
run_cmd "$TRAINSUPD" validate --config "$CFG"
[ "$RC" = 0 ] || bail_out "config does not validate: $OUT $ERR"

ckpt_fill 20
mkdir -p "$CKPT/sub/deep"
echo "deep" >"$CKPT/sub/deep/leaf.txt"

# n_manifests: manifest blobs under the task's prefix, counted by an independent client.
n_manifests() {
        azc GET "$CONTAINER?restype=container&comp=list&prefix=$TASKP/manifests/" | grep -o '<Name>' | wc -l
}
# uncommitted: blobs that exist only as uncommitted blocks (what failed or killed uploads leave).
uncommitted() {
        azc GET "$CONTAINER?restype=container&comp=list&prefix=$PFX/&include=uncommittedblobs" >"$T/unc.xml"
        azc GET "$CONTAINER?restype=container&comp=list&prefix=$PFX/" >"$T/com.xml"
        echo $(($(grep -o '<Name>' "$T/unc.xml" | wc -l) - $(grep -o '<Name>' "$T/com.xml" | wc -l)))
}

# ---------------------------------------------------------------- 1. baseline

m0=$(log_mark)
run_cmd --timeout 120 "$TRAINSUPD" snapshot --config "$CFG"
is "$RC" 0 "snapshot through the proxy: exit 0"
[ "$RC" = 0 ] || diag "$ERR"
ID1=$OUT
like "$ID1" '^000000000001-[0-9]{8}T[0-9]{9}Z-[0-9a-f]{8}$' "snapshot prints the id of seq 1"
record "$ID1"
is "$(log_count "$m0" 'r["method"] == "PUT" and r["query"].startswith("comp=block&")'):$(log_count "$m0" 'r["method"] == "PUT" and r["query"] == "comp=blocklist"')" \
        "4:1" "big.bin went as 4 Put Block and 1 Put Block List"
is "$(log_count "$m0" 'r["method"] == "GET" and "/data/" in r["path"]')" 0 "snapshot itself downloads no data"
is "$(log_count "$m0" '(r["auth"] or {}).get("scheme") != "SharedKey"')" 0 "every request is signed with SharedKey (credentials_file)"
run_cmd "$TRAINSUPD" snapshots --config "$CFG" --json
printf '%s\n' "$OUT" >"$T/list.json"
is "$RC:$(json_get "$T/list.json" '[(s["id"], s["seq"], s["task"]) for s in d]')" "0:[[\"$ID1\", 1, \"main\"]]" \
        "snapshots --json lists it"
check "restore --to: byte-exact, modes and symlinks" restore_is "$ID1"
azc GET "$CONTAINER/$TASKP/manifests/$ID1.json" >"$T/manifest-1.json"
is "$(json_get "$T/manifest-1.json" '[d["format"], d["id"]]')" "[\"trainsupd-snapshot\", \"$ID1\"]" \
        "an independent SharedKey client reads the manifest"
is "$(azc GET "$CONTAINER/$TASKP/data/$(sha "$CKPT/big.bin")" | sha256sum | cut -d' ' -f1)" "$(sha "$CKPT/big.bin")" \
        "and big.bin's data blob, byte-exact"

m0=$(log_mark)
run_cmd --timeout 120 "$TRAINSUPD" snapshot --config "$CFG"
ID2=$OUT
cp "$T/want-$ID1.sha256" "$T/want-$ID2.sha256"
cp "$T/want-$ID1.tree" "$T/want-$ID2.tree"
is "$RC:$(log_count "$m0" 'r["method"] == "PUT" and "/data/" in r["path"]'):$(log_count "$m0" 'r["method"] == "PUT" and "/manifests/" in r["path"]')" \
        "0:0:1" "unchanged re-snapshot: no data PUT, one manifest PUT"

# ---------------------------------------------------------------- 2. snapshots under faults

change_data() {
        echo "step $1" >"$CKPT/state.txt"
        head -c 1048576 /dev/urandom | dd of="$CKPT/big.bin" bs=1M seek=$((RANDOM % 19)) conv=notrunc status=none
        head -c 1500000 /dev/urandom >"$CKPT/sub/fault-$1.bin"
}

# fault_case NAME JSON: four checks (faultproxy-lib.sh): the fault was injected; the snapshot either
# committed (exactly one new snapshot, the id printed, restoring byte-exact) or failed cleanly (an
# error, no new snapshot); the newest listed snapshot restores byte-exact; it is the one printed
# (after a failure: the previous newest).
fault_case() {
        fault_snapshot "$1" "$2" 120
        fault_snapshot_newest "$1"
}

fault_case server-busy '{"slowdown_every": 3}'
fault_case reset-request '{"reset_bytes": 1048576, "reset_side": "request", "reset_every": 2, "reset_match": "^PUT "}'
fault_case lost-answer '{"lost_answer_every": 3}'
fault_case lost-put-block '{"lost_answer_every": 1, "lost_answer_max": 2, "lost_answer_match": "^PUT .*comp=block&"}'
fault_case lost-put-block-list '{"lost_answer_every": 1, "lost_answer_max": 1, "lost_answer_match": "^PUT .*comp=blocklist"}'
fault_case lost-manifest-put '{"lost_answer_every": 1, "lost_answer_max": 1, "lost_answer_match": "^PUT .*/manifests/"}'
fault_case stall '{"stall_s": 3, "stall_every": 2, "stall_match": "^PUT .*/data/"}'
fault_case manifest-always-busy '{"slowdown_every": 1, "slowdown_match": "^PUT .*/manifests/"}'
fault_case latency '{"latency_ms": 40, "slowdown_every": 5}'
diag "blobs left as uncommitted blocks only (invisible, Azure drops them after a week): $(uncommitted)"

# ---------------------------------------------------------------- 3. restore under faults

newest=$(listed_ids | tail -n 1)
restore_under_faults "$newest" '{"reset_bytes": 300, "reset_side": "response", "reset_every": 2, "reset_max": 8, "reset_match": "^GET "}' \
        "restore with every 2nd GET (8 in all) reset after 300 answer bytes: byte-exact"
num_cmp "$(log_count "$FS_MARK" 'r["fault"] == "reset-response"')" -gt 0 "answers were cut during that restore"
restore_under_faults "$newest" '{"slowdown_every": 3}' "restore with ServerBusy on every 3rd request: byte-exact"
like "$(log_since "$FS_MARK" | grep -c '"fault": "slowdown"')" '^[1-9]' "ServerBusy was answered during that restore"

# ---------------------------------------------------------------- 4. SIGKILL at several points

# kill_case NAME STALL_MATCH MIN_HELD: starts a snapshot of new data, holds every request matching
# STALL_MATCH, kills the snapshot with SIGKILL once MIN_HELD are held, releases them. Then: a
# complete snapshot or none (what the held requests stored once released may complete one);
# the previous newest still restores byte-exact; the next snapshot commits and restores.
kill_case() {
        local name=$1 match=$2 min=$3 prev new_ids kpid id
        change_data "kill-$name"
        listed_ids >"$T/ids-before"
        prev=$(tail -n 1 "$T/ids-before")
        fp_set "{\"stall_s\": 600, \"stall_match\": \"$match\"}"
        "$TRAINSUPD" snapshot --config "$CFG" >"$T/kill.out" 2>>"$T/kill.err" &
        kpid=$!
        track_pid "$kpid"
        if wait_for 60 eval "[ \"\$(fp_stat 'd[\"fired\"][\"stall\"]')\" -ge $min ]"; then
                ok "kill at $name: the snapshot reached it ($(fp_stat 'd["fired"]["stall"]') requests held)"
        else
                not_ok "kill at $name: the snapshot reached it"
        fi
        kill -9 "$kpid" 2>/dev/null
        wait "$kpid" 2>/dev/null
        fp_off # releases the held requests: what the killed client had sent may still be stored
        sleep 1
        listed_ids >"$T/ids-after"
        new_ids=$(comm -13 "$T/ids-before" "$T/ids-after" | tr '\n' ' ')
        for id in $new_ids; do record "$id"; done
        if [ -z "$new_ids" ]; then
                ok "kill at $name: no new snapshot ($(n_manifests) manifests in the container)"
        elif [ "$(echo "$new_ids" | wc -w)" = 1 ] && restore_is "${new_ids% }"; then
                ok "kill at $name: the released manifest completed one snapshot, and it restores byte-exact"
        else
                not_ok "kill at $name: a complete verified snapshot or none"
                diag "new snapshots: $new_ids"
        fi
        check "kill at $name: the previous snapshot restores byte-exact" restore_is "$prev" --snapshot "$prev"
        run_cmd --timeout 120 "$TRAINSUPD" snapshot --config "$CFG"
        [ "$RC" = 0 ] && record "$OUT"
        if [ "$RC" = 0 ] && restore_is "$OUT"; then
                ok "kill at $name: the next snapshot commits and restores byte-exact"
        else
                not_ok "kill at $name: the next snapshot commits and restores byte-exact"
                diag "exit $RC: $ERR"
        fi
}
kill_case put-block '^PUT .*/data/.*comp=block&' 2
kill_case put-block-list '^PUT .*comp=blocklist' 1
kill_case manifest-put '^PUT .*/manifests/' 1

# ---------------------------------------------------------------- 5. the end

m0=$(log_mark)
run_cmd --timeout 120 "$TRAINSUPD" snapshot --config "$CFG"
is "$RC:$(log_count "$m0" 'r["method"] == "PUT" and "/data/" in r["path"]')" "0:0" \
        "a final unchanged re-snapshot sends no data"
[ "$RC" = 0 ] && record "$OUT"
all_restore() {
        local id n=0
        for id in $(listed_ids); do
                restore_is "$id" --snapshot "$id" || return 1
                n=$((n + 1))
        done
        [ "$n" -ge 15 ] || { diag "only $n snapshots listed"; return 1; }
}
check "every listed snapshot (at least 15) restores byte-exact" all_restore
is "$(sanitizer_report "$T/all-cmd.err" "$T/kill.err")" "" "no sanitizer findings"
diag "proxy: $(fp_stat 'd["requests"]') requests in total; test took $(($(now_ms) - T_START)) ms"
