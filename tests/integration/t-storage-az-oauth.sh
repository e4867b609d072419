#!/bin/bash
# SPDX-License-Identifier: MIT
# Azure Blob through the VM's managed identity (daemon/storage-az.c, daemon/cloud-azure.c):
# azurite over HTTPS (a throwaway test CA made here with openssl) with `--oauth basic`, trainsupd
# configured with az://, storage.endpoint = azurite, storage.ca_file = the test CA and no key or
# SAS anywhere; the bearer token comes from the fake cloud's Azure identity endpoint
# (/metadata/identity/oauth2/token). azurite checks the JWT's audience, issuer prefix and times
# but not its signature, so the fake cloud's generated token (and the tokens minted here) pass or
# fail exactly on those. `snapshot` → `snapshots` → `restore` round-trips byte-exact; an expired
# token, a token for another audience and a failing identity endpoint fail with a clear error and
# no new snapshot; no token ever appears in trainsupd's output (debug level included).
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/azurite-lib.sh"
. "$TESTS_DIR/notice-lib.sh"

azurite_requirements
unset AZURE_STORAGE_KEY AZURE_STORAGE_SAS_TOKEN AZURE_CLIENT_ID
azurite_make_tls "$T/tls"
azurite_start --https "$T/tls"
CONTAINER=ckpt
az_create_container "$CONTAINER"
fc_start
plan 31

snapshot_job azjob t-az-oauth
mkdir -p "$CKPT/sub"
# az_config FILE ENDPOINT METADATA_URL
az_config() {
        write_config "$1" "\"cloud\": {\"provider\": \"azure\", \"metadata_url\": \"$3\"}" \
                "\"storage\": {\"url\": \"az://$AZ_ACCOUNT/$CONTAINER/$PFX\", \"endpoint\": \"$2\",
    \"ca_file\": \"$AZ_CA\", \"part_size_mb\": 5, \"concurrency\": 4, \"keep\": 100}"
}
az_config "$CFG" "$AZ_ENDPOINT" "$FC_URL"
run_cmd "$TRAINSUPD" validate --config "$CFG"
[ "$RC" = 0 ] || bail_out "config does not validate: $OUT $ERR"

head -c $((12 * 1024 * 1024 + 333)) /dev/urandom >"$CKPT/big.bin"
head -c 100001 /dev/urandom >"$CKPT/sub/small.bin"
echo "step 1" >"$CKPT/state.txt"
chmod 640 "$CKPT/state.txt"
ln -s state.txt "$CKPT/latest"

RESTORE_RUN=(tsd) # restores too at debug level, their output kept for the no-secret checks
n_token_requests() { fcq "d['requests']['azure']['by_path'].get('GET /metadata/identity/oauth2/token', 0)"; }
# set_token TOKEN: the fake cloud hands out TOKEN from now on ("" = its own generated JWT)
set_token() {
        printf '{"access_token": "%s"}' "$1" >"$T/idn.json"
        "${CURL[@]}" --fail -X POST --data-binary @"$T/idn.json" "$FC_URL/_fake/identity?cloud=azure" >/dev/null ||
                bail_out "cannot set the fake cloud's Azure token"
        fc POST "/_fake/expire-tokens?cloud=azure" >/dev/null
}

# ---------------------------------------------------------------- the environment is what it claims

GOOD=$(az_jwt https://storage.azure.com/ https://sts.windows.net/trainsupd-test/ 3600)
EXPIRED=$(az_jwt https://storage.azure.com/ https://sts.windows.net/trainsupd-test/ -120)
WRONG_AUD=$(az_jwt https://vault.azure.net/ https://sts.windows.net/trainsupd-test/ 3600)
bearer() { curl -s -o /dev/null -w '%{http_code}' --cacert "$AZ_CA" -H "Authorization: Bearer $1" \
        -H 'x-ms-version: 2021-08-06' "$AZ_ENDPOINT/$CONTAINER?restype=container&comp=list"; }
is "$(bearer "$GOOD"):$(bearer "$EXPIRED"):$(bearer "$WRONG_AUD"):$(curl -s -o /dev/null -w '%{http_code}' --cacert "$AZ_CA" \
        "$AZ_ENDPOINT/$CONTAINER?restype=container&comp=list")" "200:403:403:403" \
        "azurite over https checks bearer tokens: a good one lists; expired, wrong audience or none: 403"

# ---------------------------------------------------------------- 1. round trip with the fake cloud's own token

tok0=$(n_token_requests)
tsd snapshot --config "$CFG"
ID1=$OUT
is "$RC" 0 "snapshot with the managed identity's token: exit 0"
[ "$RC" = 0 ] || diag "$ERR"
like "$ID1" '^000000000001-[0-9]{8}T[0-9]{9}Z-[0-9a-f]{8}$' "it prints the id of seq 1"
record "$ID1"
num_cmp "$(($(n_token_requests) - tok0))" -ge 1 "trainsupd fetched a token from the identity endpoint"
has_line "$FC_LOG" 'GET /metadata/identity/oauth2/token\?api-version=2018-02-01&resource=https%3A%2F%2Fstorage\.azure\.com%2F -> 200' \
        "for resource https://storage.azure.com/"
FC_TOKEN=$(curl -s -H 'Metadata: true' "$FC_URL/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fstorage.azure.com%2F" |
        "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
isnt "${FC_TOKEN:-x}" x "(the fake cloud's token, for the no-secret checks)"
azc GET "$CONTAINER?restype=container&comp=list&prefix=$TASKP/manifests/" >"$T/list.xml"
like "$(cat "$T/list.xml")" "<Name>$TASKP/manifests/$ID1.json</Name>" "an independent SharedKey client sees the manifest"
azc GET "$CONTAINER/$TASKP/data/$(sha256sum "$CKPT/big.bin" | cut -d' ' -f1)?comp=blocklist&blocklisttype=committed" >"$T/blocks.xml"
is "$(cat "$T/azc.status"):$(grep -o '<Block>' "$T/blocks.xml" | wc -l)" "200:3" "big.bin is committed as 3 blocks (Put Block ×3, Put Block List)"

tsd snapshots --config "$CFG" --json
printf '%s\n' "$OUT" >"$T/list.json"
is "$RC:$(json_get "$T/list.json" '[(s["id"], s["seq"], s["task"]) for s in d]')" "0:[[\"$ID1\", 1, \"main\"]]" \
        "snapshots --json lists it"
check "restore: byte-exact, modes and symlinks" restore_is "$ID1"

# ---------------------------------------------------------------- 2. a token of our own, and a second snapshot

set_token "$GOOD"
echo "step 2" >"$CKPT/state.txt"
head -c 2000000 /dev/urandom >"$CKPT/sub/two.bin"
tsd snapshot --config "$CFG"
ID2=$OUT
is "$RC" 0 "a second snapshot with another valid token: exit 0"
record "$ID2"
check "it restores byte-exact" restore_is "$ID2"
check "the first one still restores byte-exact (--snapshot)" restore_is "$ID1" --snapshot "$ID1"

# ---------------------------------------------------------------- 3. bad tokens fail clearly

# bad_case NAME COMMAND...: after COMMAND (which breaks the credentials) the snapshot fails with
# exit 69 (EX_UNAVAILABLE) and no snapshot appears; then a good token is set again.
bad_case() {
        local name=$1 before
        shift
        echo "step $name" >"$CKPT/state.txt"
        before=$(listed_ids | tr '\n' ' ')
        "$@"
        tsd snapshot --config "$CFG"
        local src=$RC serr=$ERR
        diag "$name: exit $src: $(printf '%s\n' "$serr" | grep -v 'LEVEL=debug' | tail -n 2)"
        set_token "$GOOD"
        fc POST "/_fake/fault?cloud=azure&count=0" >/dev/null
        is "$src:$(listed_ids | tr '\n' ' ')" "69:$before" "$name: snapshot fails (exit 69), no new snapshot"
        BAD_ERR=$serr
}
bad_case expired-token set_token "$EXPIRED"
like "$BAD_ERR" 'trainsupd: snapshot failed: .*Permission denied' "expired token: the error says permission denied"
like "$BAD_ERR" 'HTTP 403 AuthenticationFailed' "expired token: the debug log has Azure's error code"
bad_case wrong-audience set_token "$WRONG_AUD"
like "$BAD_ERR" 'trainsupd: snapshot failed: .*Permission denied' "wrong audience: the error says permission denied"

identity_500() { fc POST "/_fake/fault?cloud=azure&mode=status=500&count=-1&path=/metadata/identity" >/dev/null; }
bad_case identity-endpoint-500 identity_500
like "$BAD_ERR" 'Cannot get an Azure storage token from the managed identity' "identity endpoint failing: the error names the managed identity"

az_config "$T/dead.json" "$AZ_ENDPOINT" "http://127.0.0.1:$(free_port)"
run_cmd --timeout 60 "$TRAINSUPD" snapshot --config "$T/dead.json"
cat "$T/cmd.out" "$T/cmd.err" >>"$T/all-output"
like "$RC:$ERR" '^69:.*Cannot get an Azure storage token from the managed identity' \
        "no metadata service: fails, naming the managed identity (no other credential is used)"

tok0=$(n_token_requests)
az_config "$T/http.json" "http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT" "$FC_URL"
run_cmd --timeout 60 "$TRAINSUPD" snapshot --config "$T/http.json"
cat "$T/cmd.out" "$T/cmd.err" >>"$T/all-output"
like "$RC:$ERR" 'only sent over https' "an http endpoint: refused, a bearer token is never sent over http"
is "$(n_token_requests)" "$tok0" "and no token was even fetched"

AZURE_CLIENT_ID=1b7d5e0a-0000-4000-8000-00000000c1d0 tsd snapshots --config "$CFG"
has_line "$FC_LOG" 'oauth2/token\?.*client_id=1b7d5e0a-0000-4000-8000-00000000c1d0.* -> 200' \
        "AZURE_CLIENT_ID picks a user-assigned identity (client_id= on the token request)"

# ---------------------------------------------------------------- 4. good again

tsd snapshot --config "$CFG"
ID3=$OUT
is "$RC" 0 "with a valid token again: snapshot exit 0"
record "$ID3"
is "$(listed_ids | tr '\n' ' ')" "$ID1 $ID2 $ID3 " "three snapshots listed, the failed attempts left none"
check "the newest restores byte-exact (no --snapshot)" restore_is "$ID3"

# ---------------------------------------------------------------- secrets

leaks=""
for t in "$FC_TOKEN" "$GOOD" "$EXPIRED" "$WRONG_AUD"; do
        sig=${t##*.}
        grep -qF -- "$t" "$T/all-output" "$T/all-cmd.err" && leaks="$leaks token(${t:0:12}…)"
        grep -qF -- "$sig" "$T/all-output" "$T/all-cmd.err" && leaks="$leaks signature(${sig:0:8}…)"
        payload=${t#*.}
        grep -qF -- "${payload%%.*}" "$T/all-output" "$T/all-cmd.err" && leaks="$leaks payload(${payload:0:8}…)"
done
is "$leaks" "" "no token (nor a token's signature) in any trainsupd output, debug level included"
unlike "$(cat "$T/all-output")" 'Bearer [A-Za-z0-9_-]{8}' "no Authorization value in the output"
num_cmp "$(wc -l <"$T/all-output")" -gt 20 "(the output checked is not empty: $(wc -l <"$T/all-output") lines)"

is "$(sanitizer_report "$T/all-cmd.err")" "" "no sanitizer findings"
