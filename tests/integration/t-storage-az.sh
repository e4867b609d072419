#!/bin/bash
# SPDX-License-Identifier: MIT
# The Azure Blob backend (daemon/storage-az.c) against azurite, through tests/unit/store-probe.
# azurite comes from the repository's package.json (`npm ci` puts it in node_modules/); this test
# installs nothing. An independent client (Python's hmac/hashlib/urllib, below) creates the
# container, reads back what the backend wrote and mints the SAS tokens.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

: "${STORE_PROBE:?STORE_PROBE must point at the built tests/unit/store-probe (make check sets it)}"

# scripts/test.sh names the one it installed (make distcheck runs from an unpacked tarball).
AZURITE=${AZURITE:-$TOP_SRCDIR/node_modules/.bin/azurite-blob}
ACCOUNT=devstoreaccount1
KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==' # azurite's public dev key
CONTAINER=ckpt

az_skip() {
        if [ "${CI:-}" = true ]; then
                echo "1..1"
                echo "not ok 1 - azurite needed in CI: $1"
                exit 1
        fi
        echo "1..0 # SKIP $1"
        exit 0
}
[ -x "$AZURITE" ] || az_skip "azurite not installed (npm ci in $TOP_SRCDIR)"
command -v node >/dev/null || az_skip "node not installed"

# azc METHOD PATH [HEADER:VALUE...]: a SharedKey-signed request, body to stdout, status to $T/azc.status.
cat >"$T/azc.py" <<'PY'
import base64, email.utils, hashlib, hmac, sys, urllib.error, urllib.parse, urllib.request
key, ep, method, path = base64.b64decode(sys.argv[1]), sys.argv[2].rstrip("/"), sys.argv[3], sys.argv[4]
hdrs = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
for h in sys.argv[5:]:
    k, v = h.split(":", 1)
    hdrs[k] = v
url = ep + "/" + path
u = urllib.parse.urlsplit(url)
acct = urllib.parse.urlsplit(ep).path.strip("/").split("/")[0]
q = sorted(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
canon = "/" + acct + u.path + "".join(f"\n{k.lower()}:{v}" for k, v in q)
std = ["Content-Encoding", "Content-Language", "Content-Length", "Content-MD5", "Content-Type", "Date",
       "If-Modified-Since", "If-Match", "If-None-Match", "If-Unmodified-Since", "Range"]
sts = method + "\n" + "".join(hdrs.get(s, "") + "\n" for s in std) + "".join(
    f"{k.lower()}:{hdrs[k]}\n" for k in sorted(hdrs, key=str.lower) if k.lower().startswith("x-ms-")) + canon
sig = base64.b64encode(hmac.new(key, sts.encode(), hashlib.sha256).digest()).decode()
hdrs["Authorization"] = f"SharedKey {acct}:{sig}"
req = urllib.request.Request(url, method=method, headers=hdrs)
try:
    r = urllib.request.urlopen(req)
except urllib.error.HTTPError as e:
    r = e
sys.stderr.write(f"{r.status}\n")
sys.stdout.buffer.write(r.read())
PY
# sas PERMISSIONS: an account SAS (sv=2019-12-12) for the blob service.
cat >"$T/sas.py" <<'PY'
import base64, hashlib, hmac, sys, urllib.parse
key, acct, sp = base64.b64decode(sys.argv[1]), sys.argv[2], sys.argv[3]
f = dict(sv="2019-12-12", ss="b", srt="sco", sp=sp, se="2099-01-01T00:00:00Z", spr="https,http")
sts = "\n".join([acct, f["sp"], f["ss"], f["srt"], "", f["se"], "", f["spr"], f["sv"], ""])
f["sig"] = base64.b64encode(hmac.new(key, sts.encode(), hashlib.sha256).digest()).decode()
print(urllib.parse.urlencode(f))
PY
azc() { "$PYTHON" "$T/azc.py" "$KEY" "$ENDPOINT" "$@" 2>"$T/azc.status"; }
azc_sha() { azc GET "$CONTAINER/t-storage-az/$1" | sha256sum | cut -d' ' -f1; }
sas() { "$PYTHON" "$T/sas.py" "$KEY" "$ACCOUNT" "$1"; }

PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ENDPOINT=http://127.0.0.1:$PORT/$ACCOUNT
mkdir -p "$T/azurite"
"$AZURITE" --blobHost 127.0.0.1 --blobPort "$PORT" -l "$T/azurite" --loose --skipApiVersionCheck \
        --disableTelemetry >"$T/azurite.log" 2>&1 &
AZURITE_PID=$!
track_pid "$AZURITE_PID"
for _ in $(seq 1 100); do
        azc PUT "$CONTAINER?restype=container" >/dev/null 2>&1
        [ "$(cat "$T/azc.status" 2>/dev/null)" = 201 ] && break
        sleep 0.1
done
[ "$(cat "$T/azc.status" 2>/dev/null)" = 201 ] || bail_out "azurite did not come up: $(tail -5 "$T/azurite.log")"

plan 26

URL=az://$ACCOUNT/$CONTAINER/t-storage-az
export AZURE_STORAGE_KEY=$KEY
unset AZURE_STORAGE_SAS_TOKEN

# sp ARGS...: store-probe against azurite; OUT its stdout, LAST its last line, PRC its exit status.
sp() {
        timeout -k 2 120 "$STORE_PROBE" --debug --endpoint "$ENDPOINT" "$URL" "$@" >"$T/sp.out" 2>"$T/sp.err"
        PRC=$?
        OUT=$(cat "$T/sp.out")
        LAST=$(tail -n 1 "$T/sp.out")
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

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
unlike "$(cat "$T/sp.out" "$T/sp.err")" "bm90LXRoZS1yaWdodC1rZXktYXQtYWxsLXh5eg|${KEY:0:20}|SharedKey" "no key or signature in the output"

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

stop_pid "$AZURITE_PID"
