#!/bin/bash
# SPDX-License-Identifier: MIT
# The one-shot storage commands end to end with a file:// store: `trainsupd snapshot`,
# `snapshots [--json]`, `restore --to` (byte-exact, sha256sum -c), a snapshot killed with SIGKILL
# in the middle of a large upload (no half snapshot, the previous one restores), exit codes 64/65/69.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

plan 22

CKPT=$T/ckpt
STORE=$T/store
CFG=$T/config.json
mkdir -p "$CKPT/sub" "$TRAINSUPD_STATE_DIR"
echo "11111111-2222-3333-4444-555555555555" >"$TRAINSUPD_DMI_DIR/product_uuid"
CFG_TASKS="[{\"runtime\": \"exec\", \"command\": [\"/bin/true\"], \"checkpoint_dir\": \"$CKPT\"}]"
write_config "$CFG" "\"storage\": {\"url\": \"file://$STORE\"}"

head -c 5000000 /dev/urandom >"$CKPT/sub/weights.bin"
echo "step 100" >"$CKPT/state.txt"
: >"$CKPT/empty"
ln -s state.txt "$CKPT/latest"
touch "$CKPT/.trainsupd-commit"
(cd "$CKPT" && find . -type f ! -name .trainsupd-commit -print0 | sort -z | xargs -0 sha256sum) >"$T/first.sha256"

# ---- snapshot, snapshots, restore
run_cmd "$TRAINSUPD" snapshot --config "$CFG"
is "$RC" 0 "snapshot: exit 0"
ID1=$OUT
like "$ID1" '^000000000001-[0-9]{8}T[0-9]{9}Z-[0-9a-f]{8}$' "snapshot prints the id of seq 1"
has_manifest() { [ -f "$STORE/test-job/main/manifests/$1.json" ]; }
check "the manifest is in the store" has_manifest "$ID1"

run_cmd "$TRAINSUPD" snapshots --config "$CFG" --json
printf '%s\n' "$OUT" >"$T/list.json"
is "$RC" 0 "snapshots --json: exit 0"
is "$(json_get "$T/list.json" '[(s["id"], s["seq"], s["task"], s["files"], s["writer"]["instance_id"]) for s in d]')" \
        "[[\"$ID1\", 1, \"main\", 3, \"11111111-2222-3333-4444-555555555555\"]]" \
        "snapshots --json: id, seq, task, files, writer from DMI"
like "$(json_get "$T/list.json" 'd[0]["committed_at"]')" '^"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\.[0-9]{3}Z"$' \
        "snapshots --json: committed_at is RFC 3339 with ms"

run_cmd "$TRAINSUPD" restore --config "$CFG" --to "$T/out1"
is "$RC" 0 "restore --to a new dir: exit 0"
check "restore is byte-exact (sha256sum -c)" sh -c "cd '$T/out1' && sha256sum --quiet -c '$T/first.sha256'"
is "$(readlink "$T/out1/latest")" "state.txt" "the symlink is restored as a symlink"
check "the commit file is not snapshotted" test ! -e "$T/out1/.trainsupd-commit"

# ---- an unchanged re-snapshot adds a manifest, no data
n_data() { find "$STORE/test-job/main/data" -type f | wc -l; }
before=$(n_data)
run_cmd "$TRAINSUPD" snapshot --config "$CFG"
ID2=$OUT
is "$RC:$(n_data)" "0:$before" "an unchanged re-snapshot uploads no object"

# ---- SIGKILL in the middle of a large snapshot
truncate -s 400M "$CKPT/big.bin"
head -c 1000000 /dev/urandom | dd of="$CKPT/big.bin" bs=1M seek=200 conv=notrunc status=none
echo "step 200" >"$CKPT/state.txt"
"$TRAINSUPD" snapshot --config "$CFG" >"$T/kill.out" 2>"$T/kill.err" &
KPID=$!
track_pid "$KPID"
new_object() { [ "$(find "$STORE/test-job/main/data" -mindepth 1 | wc -l)" -gt "$before" ]; }
if wait_for 30 new_object; then ok "the large snapshot starts uploading"; else not_ok "the large snapshot starts uploading"; fi
kill -9 "$KPID" 2>/dev/null
wait "$KPID" 2>/dev/null
is "$(ls "$STORE/test-job/main/manifests" | wc -l)" 2 "no manifest from the killed snapshot"
run_cmd "$TRAINSUPD" snapshots --config "$CFG"
is "$RC:$(printf '%s\n' "$OUT" | wc -l)" "0:2" "snapshots lists the two committed snapshots only"
run_cmd "$TRAINSUPD" restore --config "$CFG" --to "$T/out2"
is "$RC" 0 "restore after the kill: exit 0"
check "restore after the kill gives the previous snapshot byte-exact" \
        sh -c "cd '$T/out2' && sha256sum --quiet -c '$T/first.sha256' && test ! -e big.bin"

# ---- exit codes
run_cmd "$TRAINSUPD" restore --config "$CFG" --to "$T/out2"
is "$RC" 64 "restore into a non-empty dir without --force: exit 64"
run_cmd "$TRAINSUPD" restore --config "$CFG" --to "$T/out2" --force
is "$RC" 0 "restore --force into a non-empty dir: exit 0"
check "--force moved the old content aside" sh -c "ls -d '$T'/out2.trainsupd-old-* >/dev/null"

for f in "$STORE"/test-job/main/data/*; do
        if [ "$(stat -c %s "$f")" = 9 ]; then printf 'step 666\n' >"$f"; fi # corrupt state.txt's object
done
run_cmd "$TRAINSUPD" restore --config "$CFG" --snapshot "$ID2" --to "$T/out3"
is "$RC" 65 "restore of a corrupted object: exit 65"
check "a failed restore leaves nothing behind" sh -c "! ls -d '$T'/out3* 2>/dev/null"

printf 'not a directory\n' >"$T/notdir"
write_config "$T/bad-store.json" "\"storage\": {\"url\": \"file://$T/notdir/store\"}"
run_cmd "$TRAINSUPD" snapshots --config "$T/bad-store.json"
is "$RC" 69 "an unreachable store: exit 69"
