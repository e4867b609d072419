#!/bin/bash
# SPDX-License-Identifier: MIT
# S3 credentials from the AWS instance role through IMDSv2 (daemon/storage-s3.c): Ceph RGW
# (tests/integration/rgw-lib.sh) behind tests/integration/faultproxy.py (no faults: its request
# log shows what authenticated each request, never a secret), trainsupd configured with s3://,
# storage.endpoint = the proxy, cloud.provider aws, cloud.metadata_url = the fake cloud, and no
# AWS_* environment, credentials file or storage.region. The fake cloud's role credentials are
# the RGW user's key and secret plus a session token. RGW (no STS configured) accepts and ignores
# an x-amz-security-token it does not know, so that the token is sent, and signed, is proved from
# the proxy's log (the SHA-256 of the header, SignedHeaders), not from RGW's answer. Also: the
# region comes from the instance identity when storage.region is null (INTERFACE.md), a role
# without a session token sends none, and failures (no role, a wrong secret) are clean.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/rgw-lib.sh"
. "$TESTS_DIR/faultproxy-lib.sh"
. "$TESTS_DIR/notice-lib.sh"

T_START=$(now_ms)
rgw_start
fc_start
plan 24

unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_REGION AWS_DEFAULT_REGION \
        AWS_SHARED_CREDENTIALS_FILE AWS_CONFIG_FILE AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_CREDENTIALS_FULL_URI
export HOME=$T/home # nothing of the caller's ~/.aws
mkdir -p "$HOME"

fp_start "$RGW_PORT"

SESSION_TOKEN="IQoJb3JpZ2luX2VjEFakeRoleSessionToken/$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
ROLE_REGION=eu-west-3
# set_role JSON: merges fields into the fake cloud's AWS identity
set_role() {
        printf '%s' "$1" >"$T/idn.json"
        "${CURL[@]}" --fail -X POST --data-binary @"$T/idn.json" "$FC_URL/_fake/identity?cloud=aws" >/dev/null ||
                bail_out "cannot set the fake cloud's AWS identity"
}
set_role "{\"access_key_id\": \"$RGW_KEY\", \"secret_access_key\": \"$RGW_SECRET\", \"session_token\": \"$SESSION_TOKEN\",
  \"region\": \"$ROLE_REGION\", \"iam_role\": \"trainsupd-ckpt-role\"}"

snapshot_job rolejob t-s3-role
mkdir -p "$CKPT/sub"
s3_config() { # s3_config FILE [EXTRA STORAGE MEMBERS]
        write_config "$1" "\"cloud\": {\"provider\": \"aws\", \"metadata_url\": \"$FC_URL\"}" \
                "\"storage\": {\"url\": \"s3://$RGW_BUCKET/$PFX\", \"endpoint\": \"$FP\", \"part_size_mb\": 5,
    \"concurrency\": 4, \"keep\": 100${2:+, $2}}"
}
s3_config "$CFG"
run_cmd "$TRAINSUPD" validate --config "$CFG"
[ "$RC" = 0 ] || bail_out "config does not validate: $OUT $ERR"

head -c $((11 * 1024 * 1024)) /dev/urandom >"$CKPT/big.bin"
head -c 50001 /dev/urandom >"$CKPT/sub/small.bin"
echo "step 1" >"$CKPT/state.txt"
ln -s state.txt "$CKPT/latest"

RESTORE_RUN=(tsd) # restores too at debug level, their output kept for the no-secret check
fc_path_count() { fcq "sum(v for k, v in d['requests']['aws']['by_path'].items() if k.startswith('$1'))"; }
TOKEN_SHA=$(printf '%s' "$SESSION_TOKEN" | sha256sum | cut -c1-16)

# ---------------------------------------------------------------- 1. the role's credentials, with a session token

m0=$(log_mark)
tsd snapshot --config "$CFG"
ID1=$OUT
is "$RC" 0 "snapshot with the instance role's credentials (IMDSv2): exit 0"
[ "$RC" = 0 ] || diag "$ERR"
record "$ID1"
is "$(fc_path_count 'PUT /latest/api/token'):$(fc_path_count 'GET /latest/meta-data/iam/security-credentials/trainsupd-ckpt-role')" \
        "1:1" "one IMDSv2 session token, the role's credentials read once"
is "$(fcq "d['tokens']['aws']['rejected']")" 0 "no IMDS request without a valid session token"
n_req=$(log_values "$m0" 'r["n"]' | wc -w)
is "$(log_values "$m0" '(r["auth"] or {}).get("scheme")')" "AWS4-HMAC-SHA256" "all $n_req S3 requests are SigV4-signed"
is "$(log_values "$m0" 'r["token_sha256"]')" "$TOKEN_SHA" "every request carries x-amz-security-token: the role's session token (by its SHA-256)"
is "$(log_values "$m0" '"x-amz-security-token" in (r["auth"] or {}).get("signed", [])')" "True" \
        "x-amz-security-token is among the SignedHeaders of every request"
is "$(log_values "$m0" '(r["auth"] or {}).get("scope", "").split("/")[1:3]')" "['$ROLE_REGION', 's3']" \
        "storage.region null: the region is the instance identity's ($ROLE_REGION)"

tsd snapshots --config "$CFG" --json
printf '%s\n' "$OUT" >"$T/list.json"
is "$RC:$(json_get "$T/list.json" '[(s["id"], s["seq"]) for s in d]')" "0:[[\"$ID1\", 1]]" "snapshots --json lists it"
check "restore: byte-exact, modes and symlinks" restore_is "$ID1"
rgw_aws s3 cp "s3://$RGW_BUCKET/$TASKP/manifests/$ID1.json" "$T/manifest.json" >/dev/null 2>&1
is "$(json_get "$T/manifest.json" 'd["id"]')" "\"$ID1\"" "the aws CLI (the RGW user's own key) reads the manifest back"

# ---------------------------------------------------------------- 2. storage.region wins; no session token

s3_config "$T/region.json" '"region": "us-east-1"'
m0=$(log_mark)
tsd snapshots --config "$T/region.json"
is "$RC:$(log_values "$m0" '(r["auth"] or {}).get("scope", "").split("/")[1]')" "0:us-east-1" \
        "storage.region set: it is used, not the instance identity's"

set_role '{"session_token": ""}'
echo "step 2" >"$CKPT/state.txt"
m0=$(log_mark)
tsd snapshot --config "$CFG"
ID2=$OUT
is "$RC" 0 "a role without a session token: snapshot exit 0"
record "$ID2"
is "$(log_values "$m0" 'r["token_sha256"]')" "None" "and no x-amz-security-token is sent"
check "it restores byte-exact" restore_is "$ID2"
set_role "{\"session_token\": \"$SESSION_TOKEN\"}"

# ---------------------------------------------------------------- 3. failures

before=$(listed_ids | tr '\n' ' ')
echo "step 3" >"$CKPT/state.txt"
set_role '{"secret_access_key": "not-the-rgw-secret-0123456789abcdef"}'
tsd snapshot --config "$CFG"
src=$RC serr=$ERR
set_role "{\"secret_access_key\": \"$RGW_SECRET\"}"
is "$src:$(listed_ids | tr '\n' ' ')" "69:$before" "a wrong role secret: snapshot fails (exit 69), no new snapshot"
like "$serr" 'trainsupd: snapshot failed: .*Permission denied' "the error says permission denied"

set_role '{"iam_role": ""}'
tsd snapshot --config "$CFG"
# INTERFACE.md: 69 = store unreachable for a one-shot command, 70 = internal error. An instance
# without a role is the former (daemon/storage-s3.c passes the role listing's 404 on as -ENOENT,
# which `snapshot` maps to 70).
like "$RC:$ERR" '^69:.*Cannot get S3 credentials from the instance role' "no instance role: fails with exit 69, naming the instance role"
set_role '{"iam_role": "trainsupd-ckpt-role"}'

fc POST "/_fake/fault?cloud=aws&mode=status=500&count=-1&path=/latest/meta-data/iam" >/dev/null
tsd snapshots --config "$CFG"
fc POST "/_fake/fault?cloud=aws&count=0" >/dev/null
like "$RC:$ERR" '^69:.*Cannot get S3 credentials from the instance role' "IMDS answering 500: fails, naming the instance role"

tsd snapshot --config "$CFG"
ID3=$OUT
is "$RC" 0 "credentials right again: snapshot exit 0"
record "$ID3"
is "$(listed_ids | tr '\n' ' ')" "$ID1 $ID2 $ID3 " "three snapshots, none from the failed attempts"
check "the newest restores byte-exact" restore_is "$ID3"

# ---------------------------------------------------------------- secrets

leaks=""
grep -qF -- "$SESSION_TOKEN" "$T/all-output" "$T/all-cmd.err" && leaks="$leaks session-token"
grep -qF -- "$RGW_SECRET" "$T/all-output" "$T/all-cmd.err" "$FP_LOG" && leaks="$leaks secret"
grep -qF -- "not-the-rgw-secret" "$T/all-output" "$T/all-cmd.err" && leaks="$leaks wrong-secret"
grep -qF -- "$SESSION_TOKEN" "$FP_LOG" && leaks="$leaks token-in-proxy-log"
is "$leaks" "" "no secret key or session token in trainsupd's output (debug level) or the proxy log"
num_cmp "$(wc -l <"$T/all-output")" -gt 10 "(the output checked is not empty)"
is "$(sanitizer_report "$T/all-cmd.err")" "" "no sanitizer findings"
diag "test took $(($(now_ms) - T_START)) ms"
rgw_aws s3 rm --recursive "s3://$RGW_BUCKET/$PFX/" >/dev/null 2>&1
