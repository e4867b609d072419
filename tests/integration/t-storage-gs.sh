#!/bin/bash
# SPDX-License-Identifier: MIT
# The gs:// backend (daemon/storage-gs.c) through tests/unit/store-probe against a FAKE GCS:
# tests/integration/fake-gcs.py, a small in-memory imitation of the GCS XML API. There is no
# real Google Cloud Storage here, so this shows that the requests are the documented ones and
# that the backend handles the answers; it does not prove interoperability with GCS itself.
# The access token comes from the project's fake cloud (scripts/fakecloud, GCE service-account
# token endpoint); fake-gcs accepts only the tokens the test tells it about.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

: "${STORE_PROBE:?STORE_PROBE must point at the built tests/unit/store-probe (make check sets it)}"

plan 35

TOK_A=ya29.fake-gcs-A-$RANDOM$RANDOM$RANDOM
TOK_B=ya29.fake-gcs-B-$RANDOM$RANDOM$RANDOM
TOK_C=ya29.fake-gcs-C-$RANDOM$RANDOM$RANDOM
TOKEN_PATH="GET /computeMetadata/v1/instance/service-accounts/default/token"

"$PYTHON" "$TOP_SRCDIR/scripts/fakecloud" --port 0 --port-file "$T/fc.port" --log "$T/fc.log" \
        --set "gce.access_token=$TOK_A" >"$T/fc.out" 2>&1 &
track_pid $!
"$PYTHON" "$TESTS_DIR/fake-gcs.py" --port-file "$T/gcs.port" --log "$T/gcs.log" --token "$TOK_A" \
        >"$T/gcs.out" 2>&1 &
track_pid $!
wait_for 10 test -s "$T/fc.port" && wait_for 10 test -s "$T/gcs.port" || bail_out "the fake servers did not start"
MD=http://127.0.0.1:$(cat "$T/fc.port")
GCS=http://127.0.0.1:$(cat "$T/gcs.port")
URL=gs://test-bucket_1/t-storage-gs
: >"$T/all-output"

# sp ARGS...: store-probe against the fake GCS; OUT its stdout, LAST its last line, PRC its exit
# status. Everything it printed is also kept in $T/all-output (checked for tokens at the end).
sp() {
        timeout -k 2 120 "$STORE_PROBE" --debug --endpoint "$GCS" --metadata-url "$MD" "$URL" "$@" \
                >"$T/sp.out" 2>"$T/sp.err"
        PRC=$?
        OUT=$(cat "$T/sp.out")
        LAST=$(tail -n 1 "$T/sp.out")
        cat "$T/sp.out" "$T/sp.err" >>"$T/all-output"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
fp() { printf '%s' "$1" | sha256sum | cut -c1-12; }
gcs_state() { curl -s "$GCS/_fake/state" >"$T/state.json"; json_get "$T/state.json" "$1"; }
obj() { gcs_state "d['objects'].get('test-bucket_1/t-storage-gs/$1', {}).get('$2')" | tr -d '"'; }
token_fetches() {
        curl -s "$MD/_fake/state" >"$T/fc-state.json"
        json_get "$T/fc-state.json" "d['requests']['gce']['by_path'].get('$TOKEN_PATH', 0)"
}
# logsel PY-EXPR: the fake-gcs log lines (since mark_log) for which EXPR over r is true, as
# "METHOD QUERY STATUS AUTH" lines.
mark_log() { LOGMARK=$(wc -l <"$T/gcs.log"); }
logsel() {
        tail -n +$((LOGMARK + 1)) "$T/gcs.log" | "$PYTHON" -c '
import json, sys
for l in sys.stdin:
    r = json.loads(l)
    if eval(sys.argv[1]):
        print(r["method"], r["query"] or "-", r["status"], r["auth"])' "$1"
}

# ---- single objects
head -c 3000001 /dev/urandom >"$T/small"
mark_log
sp put 'dir/small b+c' "$T/small"
is "$PRC:$LAST" "0:ok" "single put"
is "$(obj 'dir/small b+c' sha256)" "$(sha "$T/small")" "the fake holds the same bytes (key with space and plus)"
tail -n +$((LOGMARK + 1)) "$T/gcs.log" | grep '"method": "PUT"' >"$T/put.log"
like "$(cat "$T/put.log")" "\"path\": \"/test-bucket_1/t-storage-gs/dir/small%20b%2Bc\"" \
        "PUT /BUCKET/PREFIX/KEY path-style, key percent-encoded"
like "$(cat "$T/put.log")" "\"auth\": \"bearer:$(fp "$TOK_A")\"" "Authorization: Bearer with the metadata server's token"
like "$(cat "$T/put.log")" "\"x-goog-meta-sha256\": \"$(sha "$T/small")\"" "x-goog-meta-sha256 carries the SHA-256"
unlike "$(cat "$T/put.log")" "x-goog-if-generation-match" "no precondition on a plain put"

sp get 'dir/small b+c' "$T/small.out"
is "$PRC:$(sha "$T/small.out")" "0:$(sha "$T/small")" "get: byte-exact round trip"
sp get 'dir/small b+c' "$T/range.out" --offset 1000 --len 4096
cmp -s -i 1000:0 -n 4096 "$T/small" "$T/range.out" && [ "$(stat -c %s "$T/range.out")" = 4096 ]
is "$PRC:$?" "0:0" "ranged get: exactly [1000, 5096)"
has_line "$T/gcs.log" '"range": "bytes=1000-5095"' "the ranged get sent Range: bytes=1000-5095"
sp get 'dir/small b+c' "$T/tail.out" --offset 3000000
is "$PRC:$(od -An -tx1 "$T/tail.out" | tr -d ' ')" "0:$(tail -c 1 "$T/small" | od -An -tx1 | tr -d ' ')" \
        "get from an offset to the end"
sp get 'dir/small b+c' "$T/past.out" --offset 3000001 --len 10
is "$PRC:$LAST" "1:error=ERANGE" "a get past the end: ERANGE (416)"

# ---- create_only
echo manifest-1 >"$T/m1"
echo manifest-2 >"$T/m2"
mark_log
sp put manifest "$T/m1" --create-only
is "$PRC:$LAST" "0:ok" "create-only put of a new key"
sp put manifest "$T/m2" --create-only
is "$PRC:$LAST" "1:error=EEXIST" "create-only put of an existing key: EEXIST (412)"
is "$(tail -n +$((LOGMARK + 1)) "$T/gcs.log" | grep -c '"x-goog-if-generation-match": "0"')" 2 \
        "both create-only puts sent x-goog-if-generation-match: 0"
sp cat manifest
is "$OUT" "manifest-1${NL}ok" "the first manifest stays"

# ---- multipart
head -c $((40 * 1024 * 1024)) /dev/urandom >"$T/big"
curl -s -X POST "$GCS/_fake/config?part_delay_ms=100" >/dev/null
curl -s -X POST "$GCS/_fake/reset-stats" >/dev/null
mark_log
before=$(token_fetches)
sp put big "$T/big" --part-size $((5 * 1024 * 1024)) --concurrency 3
is "$PRC:$LAST" "0:ok" "multipart put: 40 MiB in 8 parts of 5 MiB"
is "$(obj big sha256)" "$(sha "$T/big")" "the fake assembled the same bytes"
is "$(logsel 'r["query"] == "uploads" and r["method"] == "POST"' | grep -c ' 200 '):$(logsel 'r["query"].startswith("partNumber=") and r["method"] == "PUT"' | grep -c ' 200 '):$(logsel 'r["query"].startswith("uploadId=") and r["method"] == "POST"' | grep -c ' 200 ')" \
        "1:8:1" "POST ?uploads, 8 x PUT ?partNumber=N&uploadId=U, POST ?uploadId=U"
inflight=$(gcs_state "d['max_parts_in_flight']")
is "$((inflight >= 2 && inflight <= 3))" 1 "parts in parallel, at most --concurrency 3 at a time ($inflight)"
is "$(($(token_fetches) - before))" 1 "one token fetch served all 10 requests"
sp get big "$T/big.out"
is "$PRC:$(sha "$T/big.out")" "0:$(sha "$T/big")" "get of the multipart object"

mark_log
sp put toosmall "$T/big" --part-size $((1024 * 1024))
is "$PRC:$LAST" "1:error=EINVAL" "parts below 5 MiB: EntityTooSmall is a failure"
is "$(logsel 'r["method"] == "DELETE" and r["query"].startswith("uploadId=")' | awk '{print $3}')" 204 \
        "the failed multipart upload was aborted"
is "$(gcs_state "d['uploads']")" 0 "no multipart upload left behind"
sp cat toosmall
is "$LAST" "error=ENOENT" "nothing half-visible after the failure"

# ---- list, remove
for i in 1 2 3 4 5 6 7; do sp put "list/k$i" "$T/m1"; done
TRAINSUPD_GS_TEST_MAX_KEYS=3 sp list list/
is "$(printf '%s\n' "$OUT" | cut -d' ' -f1,2 | tr '\n' ' ')" \
        "list/k1 11 list/k2 11 list/k3 11 list/k4 11 list/k5 11 list/k6 11 list/k7 11 ok " \
        "list: 7 keys over 3 pages of 3 (list-type=2 continuation), sizes, sorted"
sp rm list/k1
sp cat list/k1
is "$LAST" "error=ENOENT" "remove"
sp rm list/never-there
is "$PRC:$LAST" "0:ok" "removing a missing key is success"

# ---- the token
# A token GCS refuses: a new token is fetched and the request made again (twice), then EACCES.
printf '%s\n' "$TOK_B" | curl -s -X POST --data-binary @- "$GCS/_fake/tokens" >/dev/null
mark_log
before=$(token_fetches)
sp cat manifest
is "$PRC:$LAST:$(logsel 'r["status"] == 401' | wc -l):$(($(token_fetches) - before))" "1:error=EACCES:3:3" \
        "401: fetched a new token twice, then EACCES"

# Proactive refresh: tokens that live 4 s are fetched again before they run out, without a 401.
printf '%s\n' "$TOK_A" | curl -s -X POST --data-binary @- "$GCS/_fake/tokens" >/dev/null
curl -s -X POST "$MD/_fake/identity?cloud=gce" -d '{"token_lifetime_s": 4}' >/dev/null
curl -s -X POST "$MD/_fake/expire-tokens?cloud=gce" >/dev/null
curl -s -X POST "$GCS/_fake/config?part_delay_ms=800" >/dev/null
head -c $((30 * 1024 * 1024)) /dev/urandom >"$T/mid"
mark_log
before=$(token_fetches)
sp put mid "$T/mid" --part-size $((5 * 1024 * 1024)) --concurrency 1
is "$PRC:$LAST:$(logsel 'r["status"] == 401' | wc -l)" "0:ok:0" "a 6-part upload outliving its 4 s token: ok, no 401"
num_cmp "$(($(token_fetches) - before))" -ge 2 "the token was fetched again before it expired"

# Refresh after /_fake/expire-tokens: the token changes in the middle of an upload.
curl -s -X POST "$MD/_fake/identity?cloud=gce" -d '{"token_lifetime_s": 3599}' >/dev/null
curl -s -X POST "$MD/_fake/expire-tokens?cloud=gce" >/dev/null
mark_log
before=$(token_fetches)
( sp put mid2 "$T/mid" --part-size $((5 * 1024 * 1024)) --concurrency 1; echo "$PRC:$LAST" >"$T/bg.result" ) &
track_pid $!
part_done() { [ "$(logsel 'r["query"].startswith("partNumber=") and r["status"] == 200' | wc -l)" -ge 1 ]; }
wait_for 20 part_done || diag "no part finished in time"
curl -s -X POST "$MD/_fake/identity?cloud=gce" -d "{\"access_token\": \"$TOK_C\"}" >/dev/null
curl -s -X POST "$MD/_fake/expire-tokens?cloud=gce" >/dev/null
printf '%s\n' "$TOK_C" | curl -s -X POST --data-binary @- "$GCS/_fake/tokens" >/dev/null
wait_for 60 test -s "$T/bg.result"
is "$(cat "$T/bg.result" 2>/dev/null):$(obj mid2 sha256)" "0:ok:$(sha "$T/mid")" \
        "token replaced mid-upload (expire-tokens): the upload completes byte-exact"
like "$(logsel 'r["method"] in ("PUT", "POST")' | awk '{print $3, $4}' | tr '\n' ';')" \
        "401 bearer:$(fp "$TOK_A");(200 bearer:$(fp "$TOK_C");)+\$" \
        "the part refused with the old token went again with the new one"
is "$(($(token_fetches) - before))" 2 "exactly one more token fetch"

unlike "$(cat "$T/all-output")" "$TOK_A|$TOK_B|$TOK_C|ya29\\." "no token in any store-probe output (with --debug)"
