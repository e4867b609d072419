#!/bin/bash
# SPDX-License-Identifier: MIT
# The real daemon against the fake cloud's Azure Scheduled Events (scripts/fakecloud,
# docs/fakecloud.md): nothing at first; Preempt and Terminate (imminent) and Reboot, Redeploy,
# Freeze (advisory) give exactly one EVENT=notice each with DEADLINE_USEC = NotBefore and show in
# `status --json`; not again on later polls, nor when the event Starts and NotBefore goes blank;
# a vanished event gives EVENT=notice-cancelled. With poll_ms 100 the daemon stays within IMDS's
# 5 requests/s (the fake cloud's max_requests_per_s, no 429). Then cloud.provider "auto" with
# Azure's DMI asset tag, and a first call held for 3 s (the service being enabled).
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

plan 48
# ---------------------------------------------------------------- fake cloud and notice helpers
# (the same block is in each t-notice-*.sh; lib.sh stays provider-agnostic)

FAKECLOUD=$TOP_SRCDIR/scripts/fakecloud
POLL_MS=${POLL_MS:-200}
CURL=(curl -sS --noproxy '*' --max-time 10)

# fc_start [ARGS...]: the fake cloud on a free port (extra fakecloud flags in ARGS); sets FC_PID,
# FC_URL and FC_LOG (one line per request).
fc_start() {
        local pf=$T/fc.port
        rm -f "$pf"
        FC_LOG=$T/fc.log
        "$PYTHON" "$FAKECLOUD" --port 0 --port-file "$pf" --log "$FC_LOG" "$@" 2>"$T/fc.err" &
        FC_PID=$!
        track_pid "$FC_PID"
        wait_for 10 test -s "$pf" || bail_out "the fake cloud did not start: $(head -c 500 "$T/fc.err")"
        FC_URL=http://127.0.0.1:$(cat "$pf")
}

# fc METHOD PATH: a call to the fake cloud's control API, the reply on stdout; bails out unless 2xx.
fc() {
        "${CURL[@]}" --fail -X "$1" "$FC_URL$2" || bail_out "fake cloud: $1 $2 failed"
}

# fcq EXPR: Python EXPR over d = GET /_fake/state (json_get's output).
fcq() {
        fc GET /_fake/state >"$T/fc-state.json"
        json_get "$T/fc-state.json" "$1"
}

# fc_total CLOUD: metadata requests of that cloud answered so far.
fc_total() { fcq "d['requests']['$1']['total']"; }

# wait_requests CLOUD N: waits until the fake cloud answered N more requests of CLOUD (at most
# 15 s): "several polls later" without a fixed sleep.
wait_requests() {
        local target=$(($(fc_total "$1") + $2))
        wait_for 15 eval '[ "$(fc_total '"$1"')" -ge '"$target"' ]'
}

# cloud_config FILE PROVIDER [EXTRA CLOUD MEMBERS]: a config watching the fake cloud.
cloud_config() {
        CFG_JOB_ID=${CFG_JOB_ID:-t-notice} \
        CFG_TASKS='[{"name": "trainer", "runtime": "exec", "command": ["/bin/sleep", "600"]}]' \
                write_config "$1" "\"cloud\": {\"provider\": \"$2\", \"metadata_url\": \"$FC_URL\", \"poll_ms\": $POLL_MS${3:+, $3}}"
}

# n_events NAME: how many EVENT=NAME console lines the daemon wrote so far.
n_events() {
        local n
        n=$(grep -cE "^$RE_TIME EVENT=$1 " "$DAEMON_LOG" 2>/dev/null)
        echo "${n:-0}"
}

# nth_event NAME N: the N-th (from 1) EVENT=NAME line.
nth_event() { grep -E "^$RE_TIME EVENT=$1 " "$DAEMON_LOG" | sed -n "$2p"; }

# wait_events NAME N [SECONDS]: until there are at least N EVENT=NAME lines.
wait_events() { wait_for "${3:-10}" eval '[ "$(n_events '"$1"')" -ge '"$2"' ]'; }

# field LINE KEY: the value of KEY= among the fields of a console line (before MESSAGE), unquoted.
field() {
        local l=" ${1%% MESSAGE=*} " re=" $2=(\"([^\"\\\\]|\\\\.)*\"|[^ ]*) "
        if [[ $l =~ $re ]]; then
                local v=${BASH_REMATCH[1]}
                v=${v#\"}
                echo "${v%\"}"
        fi
}

# to_ms TIME: a time the fake cloud or the daemon printed (RFC 3339, RFC 1123, AWS's
# "21 Jan 2019 09:00:43 GMT") in ms since the epoch; empty when unparsable or empty.
to_ms() { [ -n "$1" ] && date -u -d "$1" +%s%3N 2>/dev/null; }

# near A B TOL: |A - B| <= TOL (integers); false when either is empty.
near() {
        [ -n "$1" ] && [ -n "$2" ] || return 1
        local d=$(($1 - $2))
        [ "${d#-}" -le "$3" ]
}

# status_notice: `status --json`'s notice as "KIND IMMINENT DEADLINE_MS RECEIVED_MS" ("null"
# when there is none); the raw document in $T/status.json.
status_notice() {
        run_cmd --timeout 15 "$TRAINSUPD" status --json
        printf '%s\n' "$OUT" >"$T/status.json"
        "$PYTHON" - "$T/status.json" <<'PY'
import json, sys, datetime
def ms(s):
    if s is None:
        return "none"
    return str(int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp() * 1000))
try:
    n = json.load(open(sys.argv[1]))["notice"]
    print("null" if n is None else "%s %s %s %s" % (n["kind"], str(n["imminent"]).lower(), ms(n["deadline"]), ms(n["received_at"])))
except Exception as e:
    print("ERROR: %s: %s" % (type(e).__name__, e))
PY
}

# post CLOUD KIND [QUERY]: posts a notice; the fake cloud's reply is in $T/reply.json, the
# counts of notice / notice-cancelled lines before it in N0 / C0, the post time in POST_MS.
post() {
        N0=$(n_events notice)
        C0=$(n_events notice-cancelled)
        POST_MS=$(now_ms)
        fc POST "/_fake/notice?cloud=$1&kind=$2${3:+&$3}" >"$T/reply.json"
}

# reply KEY: a string member of the last post's reply.
reply() { json_get "$T/reply.json" "d['$1']" | sed -e 's/^"//' -e 's/"$//'; }

# expect_notice LABEL PROVIDER KIND IMMINENT DEADLINE_MS|none [TOL_MS]: after post, checks the
# one new EVENT=notice line and status --json. 3 assertions.
expect_notice() {
        local label=$1 prov=$2 kind=$3 imm=$4 dl=$5 tol=${6:-1000} line got st now f
        if wait_events notice $((N0 + 1)) 10; then
                line=$(nth_event notice $((N0 + 1)))
                is "$(field "$line" PROVIDER) $(field "$line" NOTICE_KIND) $(field "$line" IMMINENT)" \
                        "$prov $kind $imm" "$label: EVENT=notice PROVIDER=$prov NOTICE_KIND=$kind IMMINENT=$imm"
        else
                not_ok "$label: EVENT=notice PROVIDER=$prov NOTICE_KIND=$kind IMMINENT=$imm"
                diag "no new EVENT=notice line within 10 s; daemon log tail:" "$(tail -n 15 "$DAEMON_LOG")"
        fi
        got=$(field "$line" DEADLINE_USEC)
        if [ "$dl" = none ]; then
                is "$got" "" "$label: no DEADLINE_USEC"
        elif [ -n "$got" ] && near $((got / 1000)) "$dl" "$tol"; then
                ok "$label: DEADLINE_USEC is the cloud's time (within $tol ms)"
        else
                not_ok "$label: DEADLINE_USEC is the cloud's time (within $tol ms)"
                diag "DEADLINE_USEC=$got, expected ${dl}000 (+-${tol}000)" "line: $line"
        fi
        st=$(status_notice)
        now=$(now_ms)
        read -r -a f <<<"$st"
        [ "$imm" = 1 ] && imm=true || imm=false
        if [ "${f[0]:-}" = "$kind" ] && [ "${f[1]:-}" = "$imm" ] &&
                { { [ "$dl" = none ] && [ "${f[2]:-}" = none ]; } || near "${f[2]:-}" "$dl" "$tol"; } &&
                [ "${f[3]:-0}" -ge $((POST_MS - 5)) ] && [ "${f[3]:-0}" -le $((now + 5)) ]; then
                ok "$label: status --json notice: kind $kind, imminent $imm, deadline, received_at"
        else
                not_ok "$label: status --json notice: kind $kind, imminent $imm, deadline, received_at"
                diag "status notice (kind imminent deadline_ms received_ms): $st" \
                        "expected deadline $dl, received between $POST_MS and $now" "$(cat "$T/status.json")"
        fi
}

# no_repeat LABEL CLOUD: after several more polls (N more requests), still exactly N0 + 1
# notice lines. 1 assertion.
no_repeat() {
        wait_requests "$2" "${3:-6}" || diag "the fake cloud saw fewer polls than expected"
        is "$(n_events notice)" $((N0 + 1)) "$1: announced once, not again on later polls"
}

# expect_cancel LABEL KIND: after a clear, exactly one new EVENT=notice-cancelled of KIND. 1 assertion.
expect_cancel() {
        local line
        if wait_events notice-cancelled $((C0 + 1)) 10; then
                line=$(nth_event notice-cancelled $((C0 + 1)))
                is "$(field "$line" NOTICE_KIND)" "$2" "$1: EVENT=notice-cancelled NOTICE_KIND=$2"
        else
                not_ok "$1: EVENT=notice-cancelled NOTICE_KIND=$2"
                diag "no EVENT=notice-cancelled within 10 s; daemon log tail:" "$(tail -n 15 "$DAEMON_LOG")"
        fi
}

# stop_daemon LABEL: SIGTERM, exit 0 within 10 s. 1 assertion.
stop_daemon() {
        kill -TERM "$DAEMON_PID" 2>/dev/null
        wait_exit "$DAEMON_PID" 10
        is "$EXIT_CODE" 0 "$1: the daemon exits 0 on SIGTERM"
}

# Every request counts against IMDS's 5 requests/s: poll_ms 100 asks for 10/s, the daemon must
# keep under the limit anyway.
POLL_MS=100
fc_start

# ================================================================ cloud.provider "azure", poll_ms 100
cloud_config "$T/azure.json" azure
start_daemon_ready "$T/azure.json"
t_start=$(now_ms)

# ---- quiet start
wait_requests azure 6 || diag "fewer polls than expected at start"
is "$(status_notice)" null "no notice at first: status --json notice is null"
is "$(n_events notice)" 0 "no EVENT=notice line at first"
is "$(fcq "[d['requests']['azure']['by_path'].get('GET /metadata/scheduledevents', 0) >= 6, d['requests']['azure']['by_status'].get('400', 0)]")" \
        "[true, 0]" "the daemon polls Scheduled Events with Metadata: true and a valid api-version (no 400)"

# ---- each event type: Preempt and Terminate imminent, Reboot / Redeploy / Freeze advisory;
# deadline = NotBefore
for spec in "preempt 1 in_s=30" "terminate 1 in_s=600" "reboot 0 in_s=900" "redeploy 0 in_s=600" "freeze 0 in_s=900"; do
        read -r kind imm q <<<"$spec"
        post azure "$kind" "$q"
        expect_notice "$kind" azure "$kind" "$imm" "$(to_ms "$(reply NotBefore)")"
        no_repeat "$kind" azure
        fc POST "/_fake/clear?cloud=azure&kind=$kind" >/dev/null
        expect_cancel "$kind event vanished" "$kind"
done

# ---- an event that starts by itself (NotBefore passes, then is blank): same notice, first deadline
post azure preempt "in_s=2"
dl=$(to_ms "$(reply NotBefore)")
expect_notice "preempt, 2 s ahead" azure preempt 1 "$dl"
wait_for 10 eval '[ "$(fcq "[e[\"EventStatus\"] for e in d[\"notices\"][\"azure\"][\"events\"]]")" = "[\"Started\"]" ]' ||
        diag "the event did not start"
wait_requests azure 6 || diag "fewer polls than expected"
is "$(n_events notice) $(n_events notice-cancelled)" "$((N0 + 1)) $C0" \
        "the event Started (NotBefore blank): not announced again, not withdrawn"
if near "$(status_notice | cut -d' ' -f3)" "$dl" 1000; then ok "Started event: the deadline of the first sighting is kept"; else
        not_ok "Started event: the deadline of the first sighting is kept"; diag "$(cat "$T/status.json")"; fi
fc POST "/_fake/clear?cloud=azure" >/dev/null
expect_cancel "started event vanished" preempt

# ---- two events in one document: one notice each
post azure reboot "in_s=900"
n0=$N0
post azure freeze "in_s=900"
N0=$n0
wait_events notice $((N0 + 2)) 10
is "$(grep -E "^$RE_TIME EVENT=notice " "$DAEMON_LOG" | tail -n +$((N0 + 1)) | sed -E 's/.* NOTICE_KIND=([^ ]+) .*/\1/' | sort | tr '\n' ' ')" \
        "freeze reboot " "two events in one document: one EVENT=notice each (reboot, freeze)"
fc POST "/_fake/clear?cloud=azure" >/dev/null
wait_events notice-cancelled $((C0 + 2)) 10
is "$(n_events notice-cancelled)" $((C0 + 2)) "both vanished: two EVENT=notice-cancelled"

# ---- the 5 requests/s limit, with poll_ms 100
wait_requests azure 8 || diag "fewer polls than expected"
elapsed=$(($(now_ms) - t_start))
is "$(fcq "[d['azure']['max_requests_per_s'] <= 5, d['azure']['throttled'], d['requests']['azure']['by_status'].get('429', 0)]")" \
        "[true, 0, 0]" "poll_ms 100: never more than 5 requests in any second, no 429"
diag "azure: $(fcq "d['requests']['azure']['total']") requests in $elapsed ms, at most $(fcq "d['azure']['max_requests_per_s']") in one second"
is "$(n_events error)" 0 "a healthy IMDS gives no EVENT=error"
stop_daemon "azure"

# ================================================================ "auto" on Azure's DMI strings; a slow first call
# The first Scheduled Events call enables the service and may take long to answer (up to 2 min
# on Azure): 3 s here, longer than the daemon's usual 2 s request timeout.
printf 'Microsoft Corporation\n' >"$TRAINSUPD_DMI_DIR/sys_vendor"
printf 'Virtual Machine\n' >"$TRAINSUPD_DMI_DIR/product_name"
printf '7783-7084-3265-9085-8269-3286-77\n' >"$TRAINSUPD_DMI_DIR/chassis_asset_tag"
fc POST "/_fake/reset" >/dev/null
fc POST "/_fake/config?azure_first_delay_ms=3000" >/dev/null
cloud_config "$T/auto.json" auto
start_daemon_ready "$T/auto.json"
like "$(nth_event started 1)" " PROVIDER=azure " "auto + Azure DMI (chassis asset tag): EVENT=started PROVIDER=azure"
post azure preempt "in_s=30"    # while the first call is still being held
expect_notice "auto, slow first call: preempt" azure preempt 1 "$(to_ms "$(reply NotBefore)")"
like "$(cat "$FC_LOG")" "GET /metadata/scheduledevents\\?api-version=2020-07-01 -> 200 azure (3[0-9]{3}|[4-9][0-9]{3})\\.[0-9]ms" \
        "the first call was held for 3 s and answered 200 (the daemon waited for it)"
is "$(n_events error)" 0 "the slow first call is not an error"
is "$(fcq "[d['azure']['max_requests_per_s'] <= 5, d['azure']['throttled']]")" "[true, 0]" \
        "still within 5 requests/s, no 429"
stop_daemon "auto (azure)"

is "$(sanitizer_report "$T"/daemon-*.log "$T/all-cmd.err")" "" "no sanitizer findings"
