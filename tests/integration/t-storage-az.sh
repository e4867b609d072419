#!/bin/bash
# SPDX-License-Identifier: MIT
# The Azure Blob backend (daemon/storage-az.c) against azurite (tests/integration/azurite-lib.sh),
# through tests/unit/store-probe. An independent client (azurite-lib.sh's azc, Python's
# hmac/hashlib/urllib) creates the container and reads back what the backend wrote; the SAS tokens
# are minted below.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"
. "$TESTS_DIR/azurite-lib.sh"

: "${STORE_PROBE:?STORE_PROBE must point at the built tests/unit/store-probe (make check sets it)}"

CONTAINER=ckpt
azurite_requirements

# sas PERMISSIONS: an account SAS (sv=2019-12-12) for the blob service.
cat >"$T/sas.py" <<'PY'
import base64, hashlib, hmac, sys, urllib.parse
key, acct, sp = base64.b64decode(sys.argv[1]), sys.argv[2], sys.argv[3]
f = dict(sv="2019-12-12", ss="b", srt="sco", sp=sp, se="2099-01-01T00:00:00Z", spr="https,http")
sts = "\n".join([acct, f["sp"], f["ss"], f["srt"], "", f["se"], "", f["spr"], f["sv"], ""])
f["sig"] = base64.b64encode(hmac.new(key, sts.encode(), hashlib.sha256).digest()).decode()
print(urllib.parse.urlencode(f))
PY
azc_sha() { azc GET "$CONTAINER/t-storage-az/$1" | sha256sum | cut -d' ' -f1; }
sas() { "$PYTHON" "$T/sas.py" "$AZ_KEY" "$AZ_ACCOUNT" "$1"; }

azurite_start
az_create_container "$CONTAINER"

plan 26

URL=az://$AZ_ACCOUNT/$CONTAINER/t-storage-az
export AZURE_STORAGE_KEY=$AZ_KEY
unset AZURE_STORAGE_SAS_TOKEN

# sp ARGS...: store-probe against azurite; OUT its stdout, LAST its last line, PRC its exit status.
sp() {
        timeout -k 2 120 "$STORE_PROBE" --debug --endpoint "$AZ_ENDPOINT" "$URL" "$@" >"$T/sp.out" 2>"$T/sp.err"
        PRC=$?
        OUT=$(cat "$T/sp.out")
        LAST=$(tail -n 1 "$T/sp.out")
}

head -c 3000001 /dev/urandom >"$T/small"
sp put 'dir/small b+c' "$T/small"
is "$PRC:$LAST" "0:ok" "Put Blob (SharedKey; key with space and plus)"
is "$(azc_sha 'dir/small%20b%2Bc')" "$(sha "$T/small")" "an independent client reads back the same bytes"
sp get 'dir/small b+c' "$T/small.out"
is "$PRC:$(sha "$T/small.out")" "0:$(sha "$T/small")" "get: byte-exact round trip"
sp get 'dir/small b+c' "$T/range.out" --offset 1000 --len 4096
cmp -s -i 1000:0 -n 4096 "$T/small" "$T/range.out" && [ "$(stat -c %s "$T/range.out")" = 4096 ]
is "$PRC:$?" "0:0" "ranged get (x-ms-range): exactly [1000, 5096)"
sp get 'dir/small b+c' "$T/tail.out" --offset 3000000
is "$PRC:$(od -An -tx1 "$T/tail.out" | tr -d ' ')" "0:$(tail -c 1 "$T/small" | od -An -tx1 | tr -d ' ')" "get from an offset to the end"
sp get 'dir/small b+c' "$T/beyond.out" --offset 3000001 --len 10
is "$PRC:$LAST" "1:error=ERANGE" "get beyond the end: ERANGE"
azc GET "$CONTAINER?restype=container&comp=list&prefix=t-storage-az/dir/&include=metadata" >"$T/meta.xml"
like "$(cat "$T/meta.xml")" "<sha256>$(sha "$T/small")</sha256>" "x-ms-meta-sha256 is stored with the blob"

head -c $((12 * 1024 * 1024 + 777)) /dev/urandom >"$T/big"
t0=$(now_ms)
sp put big "$T/big" --part-size $((1024 * 1024)) --concurrency 4
ms=$(($(now_ms) - t0))
is "$PRC:$LAST" "0:ok" "Put Block ×13 + Put Block List, 4 in flight ($ms ms)"
is "$(azc_sha big)" "$(sha "$T/big")" "the independent client reads the block blob back byte-exact"
azc GET "$CONTAINER/t-storage-az/big?comp=blocklist&blocklisttype=committed" >"$T/blocks.xml"
is "$(grep -o '<Block>' "$T/blocks.xml" | wc -l)" 13 "it is committed as 13 blocks"
sp get big "$T/big.out"
is "$PRC:$(sha "$T/big.out")" "0:$(sha "$T/big")" "get of the block blob"

TRAINSUPD_AZ_TEST_CORRUPT_MD5=1 sp put corrupt "$T/small"
is "$PRC:$LAST" "1:error=EBADMSG" "a wrong Content-MD5 on Put Blob: EBADMSG (the store checks it)"
TRAINSUPD_AZ_TEST_CORRUPT_MD5=1 sp put corrupt "$T/big" --part-size $((1024 * 1024))
is "$PRC:$LAST" "1:error=EBADMSG" "a wrong Content-MD5 on Put Block: EBADMSG"
sp cat corrupt
is "$LAST" "error=ENOENT" "nothing visible after the failed uploads"

echo manifest-1 >"$T/m1"
echo manifest-2 >"$T/m2"
sp put manifest "$T/m1" --create-only
is "$PRC:$LAST" "0:ok" "create-only put of a new key"
sp put manifest "$T/m2" --create-only
is "$PRC:$LAST" "1:error=EEXIST" "create-only Put Blob of an existing key: EEXIST (If-None-Match: *)"
sp put manifest "$T/big" --create-only --part-size $((1024 * 1024))
is "$PRC:$LAST" "1:error=EEXIST" "create-only Put Block List of an existing key: EEXIST"
sp cat manifest
is "$OUT" "manifest-1${NL}ok" "the first manifest stays"

for i in 1 2 3 4 5 6 7; do sp put "list/k$i" "$T/m1"; done
TRAINSUPD_AZ_TEST_MAX_RESULTS=3 sp list list/
is "$(printf '%s\n' "$OUT" | cut -d' ' -f1,2 | tr '\n' ' ')" \
        "list/k1 11 list/k2 11 list/k3 11 list/k4 11 list/k5 11 list/k6 11 list/k7 11 ok " \
        "list: 7 keys over 3 pages of 3 (NextMarker), sizes, sorted"

sp rm list/k1
sp cat list/k1
is "$LAST" "error=ENOENT" "Delete Blob"
sp rm list/never-there
is "$PRC:$LAST" "0:ok" "deleting a missing blob is success"

AZURE_STORAGE_KEY=bm90LXRoZS1yaWdodC1rZXktYXQtYWxsLXh5eg== sp cat manifest
is "$PRC:$LAST" "1:error=EACCES" "wrong account key: EACCES"
unlike "$(cat "$T/sp.out" "$T/sp.err")" "bm90LXRoZS1yaWdodC1rZXktYXQtYWxsLXh5eg|${AZ_KEY:0:20}|SharedKey" "no key or signature in the output"

SAS=$(sas rwdlac)
SAS_RO=$(sas rl)
AZURE_STORAGE_KEY='' AZURE_STORAGE_SAS_TOKEN="?$SAS" sp put sas-big "$T/big" --part-size $((4 * 1024 * 1024))
ok1=$PRC:$LAST
AZURE_STORAGE_KEY='' AZURE_STORAGE_SAS_TOKEN="$SAS_RO" sp get sas-big "$T/sas.out"
is "$ok1 $PRC:$(sha "$T/sas.out")" "0:ok 0:$(sha "$T/big")" "SAS token: block upload and get"
sig=${SAS##*sig=}
AZURE_STORAGE_KEY='' AZURE_STORAGE_SAS_TOKEN="$SAS_RO" sp put sas-denied "$T/m1"
like "$PRC:$LAST" "^1:error=EACCES$" "a read-only SAS cannot write: EACCES"
unlike "$(cat "$T/sp.out" "$T/sp.err")" "$sig|sig=" "no SAS signature in the output"

stop_pid "$AZ_PID"
