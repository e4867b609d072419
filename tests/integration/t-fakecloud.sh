#!/bin/bash
# t-fakecloud.sh - TAP: the fake cloud (scripts/fakecloud) keeps the metadata
# contracts the daemon relies on (shared/reference/cloud-apis.md).
# Environment: TOP_SRCDIR (source dir), PYTHON (default /usr/bin/python3).
set -u

PY=${PYTHON:-/usr/bin/python3}
SRC=${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
FAKECLOUD=$SRC/scripts/fakecloud
PLAN=52

echo "1..$PLAN"
n=0
ok() {  # ok CONDITION-EXIT-STATUS DESCRIPTION
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
}
check() {  # check DESCRIPTION COMMAND...
	local d=$1; shift
	"$@"; ok $? "$d"
}
eq() {  # eq DESCRIPTION GOT WANT
	n=$((n + 1))
	if [ "$2" = "$3" ]; then echo "ok $n - $1"
	else echo "not ok $n - $1"; echo "#   got:  '$2'"; echo "#   want: '$3'"; fi
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/t-fakecloud.XXXXXX")
FC_PID=
cleanup() {
	if [ -n "$FC_PID" ] && kill -0 "$FC_PID" 2>/dev/null; then
		kill "$FC_PID" 2>/dev/null
		wait "$FC_PID" 2>/dev/null
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

"$PY" "$FAKECLOUD" --port 0 --bind 127.0.0.1 --port-file "$TMP/port" --log "$TMP/log" \
	--state-dir "$TMP/state" --aws-region eu-west-1 --azure-first-delay-ms 0 \
	2>"$TMP/stderr" &
FC_PID=$!
for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.05; done
if ! [ -s "$TMP/port" ]; then
	echo "Bail out! fakecloud did not start: $(head -c 500 "$TMP/stderr")"
	exit 1
fi
PORT=$(cat "$TMP/port")
B=http://127.0.0.1:$PORT
C=(curl -s --noproxy '*' --max-time 5)

code() { "${C[@]}" -o /dev/null -w '%{http_code}' "$@"; }
body() { "${C[@]}" "$@"; }
post() { "${C[@]}" -o /dev/null -w '%{http_code}' -X POST "$@"; }
jget() {  # jget JSON-STRING PYTHON-EXPR-ON-d
	"$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2" \
		2>/dev/null || echo "<unparsable>"
}
near() {  # near EPOCH-GOT EPOCH-WANT TOLERANCE
	local d=$(( $1 - $2 )); [ "${d#-}" -le "$3" ]
}
state() { body "$B/_fake/state"; }

# ---------------------------------------------------------------- control
eq "health answers ok" "$(body "$B/_fake/health")" "ok"

# ---------------------------------------------------------------- AWS IMDSv2
eq "aws: GET without token is 401 (IMDSv1 never answers)" \
	"$(code "$B/latest/meta-data/instance-id")" 401
hdrs=$("${C[@]}" -D - -o "$TMP/tok" -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' \
	"$B/latest/api/token")
TOK=$(cat "$TMP/tok")
check "aws: PUT api/token gives a token and echoes the TTL" \
	bash -c '[ -n "$1" ] && grep -qi "^X-Aws-Ec2-Metadata-Token-Ttl-Seconds: 300" <<<"$2"' _ "$TOK" "$hdrs"
H="X-aws-ec2-metadata-token: $TOK"
eq "aws: TTL 0 and 21601 are 400" \
	"$(code -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 0' "$B/latest/api/token") $(code -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 21601' "$B/latest/api/token")" \
	"400 400"
eq "aws: token PUT with X-Forwarded-For is refused" \
	"$(code -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' -H 'X-Forwarded-For: 10.9.9.9' "$B/latest/api/token")" 403
eq "aws: GET with token is 200 and gives the instance id" \
	"$(body -H "$H" "$B/latest/meta-data/instance-id")" "i-0fa1ce0c1d0d0e5a7"
eq "aws: an unknown token is 401" "$(code -H 'X-aws-ec2-metadata-token: AQAEAbogus' "$B/latest/meta-data/instance-id")" 401
# short-lived token: checked again at the end, once 2 s have passed
SHORT=$(body -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 1' "$B/latest/api/token")
SHORT_AT=$(date +%s.%N)
eq "aws: a ttl=1 token works at once" \
	"$(code -H "X-aws-ec2-metadata-token: $SHORT" "$B/latest/meta-data/instance-id")" 200
eq "aws: --aws-region reaches placement/region" "$(body -H "$H" "$B/latest/meta-data/placement/region")" "eu-west-1"
doc=$(body -H "$H" "$B/2021-03-23/dynamic/instance-identity/document")
eq "aws: identity document is JSON with region and instanceId" \
	"$(jget "$doc" 'd["region"] + " " + d["instanceId"]')" "eu-west-1 i-0fa1ce0c1d0d0e5a7"

# version-prefixed paths and listings the way cloud-init's Ec2 datasource reads them
eq "aws: / lists versions incl. 2021-03-23 and latest" \
	"$(body -H "$H" "$B/" | grep -cxE '2021-03-23|latest')" 2
l1=$(body -H "$H" "$B/2021-03-23/meta-data")
l2=$(body -H "$H" "$B/2021-03-23/meta-data/")
check "aws: meta-data listing answered without and with trailing slash" \
	bash -c 'grep -qx instance-id <<<"$1" && grep -qx "placement/" <<<"$1" && [ "$1" = "$2" ]' _ "$l1" "$l2"
eq "aws: dynamic/instance-identity (no slash) lists document" \
	"$(body -H "$H" "$B/2021-03-23/dynamic/instance-identity" | grep -cx document)" 1
eq "aws: unknown version is 404" "$(code -H "$H" "$B/1999-01-01/meta-data/")" 404

# IAM role credentials
role=$(body -H "$H" "$B/latest/meta-data/iam/security-credentials/")
cred=$(body -H "$H" "$B/latest/meta-data/iam/security-credentials/$role")
eq "aws: role listing and credentials (AccessKeyId, Token, Expiration)" \
	"$(jget "$cred" 'str(bool(d["AccessKeyId"] and d["SecretAccessKey"] and d["Token"] and d["Expiration"].endswith("Z"))) + " " + d["Code"]')" \
	"True Success"

# spot interruption notice
eq "aws: spot/instance-action is 404 with no notice" \
	"$(code -H "$H" "$B/latest/meta-data/spot/instance-action")" 404
now=$(date +%s)
eq "aws: control posts a spot interruption" \
	"$(post "$B/_fake/notice?cloud=aws&kind=spot-interruption&in_s=120&action=stop")" 200
ia=$(body -H "$H" "$B/latest/meta-data/spot/instance-action")
t=$(jget "$ia" 'd["time"]')
check "aws: instance-action is {action:stop, time:now+120 (YYYY-MM-DDTHH:MM:SSZ)}" \
	bash -c '[ "$1" = stop ] && [[ $2 =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] &&
		d=$(( $(date -u -d "$2" +%s) - $3 - 120 )) && [ "${d#-}" -le 3 ]' \
	_ "$(jget "$ia" 'd["action"]')" "$t" "$now"
eq "aws: events/maintenance/scheduled is a JSON array" \
	"$(jget "$(body -H "$H" "$B/latest/meta-data/events/maintenance/scheduled")" 'type(d).__name__')" list

# user-data round trip (binary safe)
eq "aws: user-data is 404 when unset" "$(code -H "$H" "$B/latest/user-data")" 404
printf '#cloud-config\nruncmd: [echo hi]\n\001\377end' >"$TMP/ud"
post --data-binary @"$TMP/ud" "$B/_fake/userdata?cloud=aws" >/dev/null
body -H "$H" "$B/2021-03-23/user-data" >"$TMP/ud.back"
check "aws: user-data round trip is byte exact" cmp -s "$TMP/ud" "$TMP/ud.back"

# ---------------------------------------------------------------- GCE
GF='Metadata-Flavor: Google'
eq "gce: no Metadata-Flavor header is 403" "$(code "$B/computeMetadata/v1/instance/preempted")" 403
eq "gce: X-Forwarded-For is 403" \
	"$(code -H "$GF" -H 'X-Forwarded-For: 1.2.3.4' "$B/computeMetadata/v1/instance/preempted")" 403
hdrs=$("${C[@]}" -D - -o "$TMP/pre" -H "$GF" "$B/computeMetadata/v1/instance/preempted")
ET=$(awk -F': ' 'tolower($1)=="etag"{print $2}' <<<"$hdrs" | tr -d '\r')
check "gce: preempted is FALSE, with ETag and Metadata-Flavor: Google" \
	bash -c '[ "$(cat "$1")" = FALSE ] && [ -n "$2" ] && grep -qi "^Metadata-Flavor: Google" <<<"$3"' \
	_ "$TMP/pre" "$ET" "$hdrs"
# long-poll that times out: same value, same etag, after timeout_sec
t0=$(date +%s%N)
hdrs=$("${C[@]}" -D - -o "$TMP/pre2" -H "$GF" \
	"$B/computeMetadata/v1/instance/preempted?wait_for_change=true&last_etag=$ET&timeout_sec=1")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
ET2=$(awk -F': ' 'tolower($1)=="etag"{print $2}' <<<"$hdrs" | tr -d '\r')
check "gce: wait_for_change returns after timeout_sec with the same value and etag (${ms} ms)" \
	bash -c '[ "$1" -ge 900 ] && [ "$1" -lt 3000 ] && [ "$(cat "$2")" = FALSE ] && [ "$3" = "$4" ]' \
	_ "$ms" "$TMP/pre2" "$ET" "$ET2"
# long-poll woken by a notice posted from another process
t0=$(date +%s%N)
"${C[@]}" --max-time 15 -D "$TMP/lp.h" -o "$TMP/lp.b" -H "$GF" \
	"$B/computeMetadata/v1/instance/preempted?wait_for_change=true&last_etag=$ET&timeout_sec=10" &
LP=$!
sleep 0.4
( "${C[@]}" -X POST -o /dev/null "$B/_fake/notice?cloud=gce&kind=preempt" ) &
wait "$LP"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
ET3=$(awk -F': ' 'tolower($1)=="etag"{print $2}' "$TMP/lp.h" | tr -d '\r')
check "gce: wait_for_change returns TRUE with a new etag when preempted (${ms} ms)" \
	bash -c '[ "$(cat "$1")" = TRUE ] && [ -n "$2" ] && [ "$2" != "$3" ] && [ "$4" -lt 3000 ]' \
	_ "$TMP/lp.b" "$ET3" "$ET" "$ms"
eq "gce: a stale last_etag returns at once" \
	"$(body --max-time 2 -H "$GF" "$B/computeMetadata/v1/instance/preempted?wait_for_change=true&last_etag=$ET&timeout_sec=30")" TRUE
tokj=$(body -H "$GF" "$B/computeMetadata/v1/instance/service-accounts/default/token")
eq "gce: service-account token has access_token, int expires_in, Bearer" \
	"$(jget "$tokj" 'str(bool(d["access_token"])) + " " + type(d["expires_in"]).__name__ + " " + d["token_type"]')" \
	"True int Bearer"

# ---------------------------------------------------------------- Azure
AZ='Metadata: true'
SE="$B/metadata/scheduledevents?api-version=2020-07-01"
# at most 5 Azure requests in this first second (the limit is 5/s per source)
eq "azure: no Metadata header is 400" "$(code "$SE")" 400
eq "azure: no api-version is 400" "$(code -H "$AZ" "$B/metadata/scheduledevents")" 400
d0=$(body -H "$AZ" "$SE")
inc0=$(jget "$d0" 'd["DocumentIncarnation"]')
post "$B/_fake/notice?cloud=azure&kind=preempt&in_s=60" >/dev/null
now=$(date +%s)
d1=$(body -H "$AZ" "$SE")
inc1=$(jget "$d1" 'd["DocumentIncarnation"]')
EVID=$(jget "$d1" 'd["Events"][0]["EventId"]')
nb=$(jget "$d1" 'd["Events"][0]["NotBefore"]')
check "azure: a new event increments DocumentIncarnation ($inc0 -> $inc1)" \
	bash -c '[ "$1" -gt "$2" ] 2>/dev/null' _ "$inc1" "$inc0"
check "azure: event is Preempt/Scheduled/VirtualMachine, NotBefore RFC1123 ~now+60" \
	bash -c '[ "$1" = "Preempt Scheduled VirtualMachine" ] &&
		[[ $2 =~ ^[A-Z][a-z]{2},\ [0-9]{2}\ [A-Z][a-z]{2}\ [0-9]{4}\ [0-9:]{8}\ GMT$ ]] &&
		d=$(( $(date -u -d "$2" +%s) - $3 - 60 )) && [ "${d#-}" -le 3 ]' \
	_ "$(jget "$d1" 'd["Events"][0]["EventType"]+" "+d["Events"][0]["EventStatus"]+" "+d["Events"][0]["ResourceType"]')" \
	"$nb" "$now"
eq "azure: StartRequests acknowledge is 200" \
	"$(post -H "$AZ" -H 'Content-Type: application/json' \
		--data "{\"StartRequests\":[{\"EventId\":\"$EVID\"}]}" "$SE")" 200
eq "azure: acknowledge is recorded in /_fake/state" \
	"$(jget "$(state)" '[a["event_id"] for a in d["azure"]["acks"] if a["known"]][0]')" "$EVID"
sleep 1.1   # let the 5 requests/s window pass
d2=$(body -H "$AZ" "$SE")
check "azure: acknowledged event is Started with blank NotBefore, incarnation bumped" \
	bash -c '[ "$1" = "Started|" ] && [ "$2" -gt "$3" ] 2>/dev/null' \
	_ "$(jget "$d2" 'd["Events"][0]["EventStatus"]+"|"+d["Events"][0]["NotBefore"]')" \
	"$(jget "$d2" 'd["DocumentIncarnation"]')" "$inc1"
codes=$(for _ in 1 2 3 4 5 6 7 8; do code -H "$AZ" "$SE"; echo; done | sort | uniq -c | tr -s ' \n' ' ')
check "azure: more than 5 requests/s from one source get 429 ($codes)" \
	bash -c 'grep -q " 429" <<<"$1" && grep -q " 200" <<<"$1"' _ "$codes"
eq "azure: the limit is per source (127.0.0.2 still gets 200)" \
	"$(code --interface 127.0.0.2 -H "$AZ" "$SE")" 200
st=$(state)
check "azure: /_fake/state counts the 429s and the peak rate" \
	bash -c '[ "$1" -ge 3 ] && [ "$2" -ge 6 ]' _ \
	"$(jget "$st" 'd["azure"]["throttled"]')" "$(jget "$st" 'd["azure"]["max_requests_per_s"]')"

# ---------------------------------------------------------------- Alibaba
TT=$(body -X PUT -H 'X-aliyun-ecs-metadata-token-ttl-seconds: 60' "$B/latest/api/token")
AH="X-aliyun-ecs-metadata-token: $TT"
ALI="$B/latest/meta-data/instance/spot/termination-time"
eq "alibaba: hardened mode: no token is 401, token + no notice is 404" \
	"$(code "$ALI") $(code -H "$AH" "$ALI")" "401 404"
now=$(date +%s)
post "$B/_fake/notice?cloud=alibaba&kind=spot-interruption&in_s=300" >/dev/null
tt=$(body -H "$AH" "$ALI")
check "alibaba: termination-time is ISO8601 UTC ~now+300 ($tt)" \
	bash -c '[[ $1 =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$ ]] &&
		d=$(( $(date -u -d "$1" +%s) - $2 - 300 )) && [ "${d#-}" -le 3 ]' _ "$tt" "$now"
eq "alibaba: region-id" "$(body -H "$AH" "$B/latest/meta-data/region-id")" "cn-hangzhou"

# ---------------------------------------------------------------- faults
IA="$B/latest/meta-data/spot/instance-action"
post "$B/_fake/fault?cloud=aws&mode=status=503&count=1" >/dev/null
eq "fault status=503 count=1: one 503, then normal" "$(code -H "$H" "$IA") $(code -H "$H" "$IA")" "503 200"
post "$B/_fake/fault?cloud=aws&mode=garbage" >/dev/null
body -H "$H" "$IA" >"$TMP/garbage"
check "fault garbage: the body is not JSON" \
	bash -c '! "$1" -c "import json,sys; json.load(open(sys.argv[1]))" "$2" 2>/dev/null && [ -s "$2" ]' _ "$PY" "$TMP/garbage"
post "$B/_fake/fault?cloud=aws&mode=wrongtype" >/dev/null
eq "fault wrongtype: valid JSON, action is not a string" \
	"$(jget "$(body -H "$H" "$IA")" 'type(d["action"]).__name__')" int
post "$B/_fake/fault?cloud=aws&mode=reset" >/dev/null
"${C[@]}" -o /dev/null -H "$H" "$IA"; rc=$?
check "fault reset: connection closed without an answer (curl rc $rc)" bash -c '[ "$1" = 56 ] || [ "$1" = 52 ]' _ "$rc"
post "$B/_fake/fault?cloud=aws&mode=timeout&count=1" >/dev/null
"${C[@]}" --max-time 0.5 -o /dev/null -H "$H" "$IA"; rc=$?
eq "fault timeout: the request hangs past the client timeout" "$rc" 28
post "$B/_fake/fault?cloud=aws&mode=oversized&bytes=8000000" >/dev/null
sz=$("${C[@]}" -o /dev/null -w '%{size_download}' -H "$H" "$IA")
check "fault oversized: an 8 MB body is streamed ($sz bytes)" bash -c '[ "$1" -gt 8000000 ]' _ "$sz"
post "$B/_fake/fault?cloud=aws&mode=slow=400" >/dev/null
tt=$("${C[@]}" -o /dev/null -w '%{http_code} %{time_total}' -H "$H" "$IA")
check "fault slow=400: answered after >= 0.4 s ($tt)" \
	bash -c '[ "${1%% *}" = 200 ] && awk -v t="${1#* }" "BEGIN{exit !(t >= 0.39)}"' _ "$tt"
eq "control: a bad cloud is 400" "$(post "$B/_fake/notice?cloud=mars&kind=x")" 400

# ---------------------------------------------------------------- state, expiry, shutdown
st=$(state)
eq "state: counts requests per cloud/path and tokens issued" \
	"$(jget "$st" 'str(d["requests"]["aws"]["by_path"]["GET /latest/meta-data/spot/instance-action"] >= 8) + " " + str(d["tokens"]["aws"]["issued"] >= 2)')" \
	"True True"
left=$("$PY" -c 'import sys,time; print(max(0.0, 2.05 - (time.time() - float(sys.argv[1]))))' "$SHORT_AT")
sleep "$left"
eq "aws: the ttl=1 token is 401 after 2 s" \
	"$(code -H "X-aws-ec2-metadata-token: $SHORT" "$B/latest/meta-data/instance-id")" 401
kill -TERM "$FC_PID"
wait "$FC_PID"; rc=$?
FC_PID=
check "SIGTERM: clean exit 0, port file removed, state.json written" \
	bash -c '[ "$1" = 0 ] && ! [ -e "$2/port" ] && [ -s "$2/state/state.json" ]' _ "$rc" "$TMP"

if [ "$n" -ne "$PLAN" ]; then
	echo "# planned $PLAN tests but ran $n"
	exit 1
fi
