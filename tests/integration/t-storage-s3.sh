#!/bin/bash
# SPDX-License-Identifier: MIT
# The S3 backend (daemon/storage-s3.c) against a real S3 implementation, Ceph RGW
# (tests/integration/rgw-lib.sh), through tests/unit/store-probe; what it wrote is read back
# with an independent client, Debian's aws CLI.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/rgw-lib.sh"

: "${STORE_PROBE:?STORE_PROBE must point at the built tests/unit/store-probe (make check sets it)}"

rgw_start
plan 22

URL=s3://$RGW_BUCKET/t-storage-s3
export AWS_ACCESS_KEY_ID=$RGW_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET
unset AWS_SESSION_TOKEN AWS_PROFILE

# sp ARGS...: store-probe against RGW; OUT its stdout, LAST its last line, PRC its exit status.
sp() {
        timeout -k 2 120 "$STORE_PROBE" --debug --endpoint "$RGW_ENDPOINT" --region "$RGW_REGION" "$URL" "$@" \
                >"$T/sp.out" 2>"$T/sp.err"
        PRC=$?
        OUT=$(cat "$T/sp.out")
        LAST=$(tail -n 1 "$T/sp.out")
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
aws_sha() { rgw_aws s3 cp "s3://$RGW_BUCKET/t-storage-s3/$1" - 2>/dev/null | sha256sum | cut -d' ' -f1; }

head -c 3000001 /dev/urandom >"$T/small"
sp put 'dir/small b+c' "$T/small"
is "$PRC:$LAST" "0:ok" "single put"
is "$(aws_sha 'dir/small b+c')" "$(sha "$T/small")" "aws CLI reads back the same bytes (key with space and plus)"
sp get 'dir/small b+c' "$T/small.out"
is "$PRC:$(sha "$T/small.out")" "0:$(sha "$T/small")" "get: byte-exact round trip"
sp get 'dir/small b+c' "$T/range.out" --offset 1000 --len 4096
cmp -s -i 1000:0 -n 4096 "$T/small" "$T/range.out" && [ "$(stat -c %s "$T/range.out")" = 4096 ]
is "$PRC:$?" "0:0" "ranged get: exactly [1000, 5096)"
sp get 'dir/small b+c' "$T/tail.out" --offset 3000000
is "$PRC:$(od -An -tx1 "$T/tail.out" | tr -d ' ')" "0:$(tail -c 1 "$T/small" | od -An -tx1 | tr -d ' ')" "get from an offset to the end"

head -c $((40 * 1024 * 1024)) /dev/urandom >"$T/big"
t0=$(now_ms)
sp put big "$T/big" --part-size $((5 * 1024 * 1024)) --concurrency 4
ms=$(($(now_ms) - t0))
is "$PRC:$LAST" "0:ok" "multipart put: 40 MiB in 8 parts of 5 MiB ($ms ms)"
is "$(aws_sha big)" "$(sha "$T/big")" "aws CLI reads the multipart object back byte-exact"
like "$(rgw_aws s3api head-object --bucket "$RGW_BUCKET" --key t-storage-s3/big 2>&1)" '"ETag": "\\"[0-9a-f]+-8\\""' \
        "it is an 8-part object"
sp get big "$T/big.out"
is "$PRC:$(sha "$T/big.out")" "0:$(sha "$T/big")" "get of the multipart object"

sp put toosmall "$T/big" --part-size $((1024 * 1024))
is "$PRC:$LAST" "1:error=EINVAL" "parts below 5 MiB: RGW's EntityTooSmall is a failure"
like "$(cat "$T/sp.err")" "EntityTooSmall" "the S3 error code is logged"
is "$(rgw_aws s3api list-multipart-uploads --bucket "$RGW_BUCKET" --query 'length(Uploads || `[]`)' --output text 2>&1)" "0" \
        "the failed multipart upload was aborted"
sp cat toosmall
is "$LAST" "error=ENOENT" "nothing half-visible after the failure"

echo manifest-1 >"$T/m1"
echo manifest-2 >"$T/m2"
sp put manifest "$T/m1" --create-only
is "$PRC:$LAST" "0:ok" "create-only put of a new key"
sp put manifest "$T/m2" --create-only
is "$PRC:$LAST" "1:error=EEXIST" "create-only put of an existing key: EEXIST (RGW honours If-None-Match: *)"
sp cat manifest
is "$OUT" "manifest-1${NL}ok" "the first manifest stays"

for i in 1 2 3 4 5 6 7; do sp put "list/k$i" "$T/m1"; done
TRAINSUPD_S3_TEST_MAX_KEYS=3 sp list list/
is "$(printf '%s\n' "$OUT" | cut -d' ' -f1,2 | tr '\n' ' ')" \
        "list/k1 11 list/k2 11 list/k3 11 list/k4 11 list/k5 11 list/k6 11 list/k7 11 ok " \
        "list: 7 keys over 3 pages of 3, sizes, sorted"

sp rm list/k1
sp cat list/k1
is "$LAST" "error=ENOENT" "remove"
sp rm list/never-there
is "$PRC:$LAST" "0:ok" "removing a missing key is success"

AWS_SECRET_ACCESS_KEY=not-the-secret-xyz sp cat manifest
is "$PRC:$LAST" "1:error=EACCES" "wrong secret: EACCES"
unlike "$(cat "$T/sp.out" "$T/sp.err")" "not-the-secret-xyz|$RGW_SECRET" "no secret in the output"

TRAINSUPD_S3_TEST_CORRUPT_SHA256=1 sp put corrupt "$T/m1"
is "$PRC:$LAST" "1:error=EBADMSG" "a wrong x-amz-content-sha256: EBADMSG"

rgw_aws s3 rm --recursive "s3://$RGW_BUCKET/t-storage-s3/" >/dev/null 2>&1
