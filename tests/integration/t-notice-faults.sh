#!/bin/bash
# SPDX-License-Identifier: MIT
# Failure behaviour of the metadata watch (issue "Failure behaviour"): for each provider (AWS,
# GCE, Azure, Alibaba, one daemon each against one fake cloud) and each fault of the fake cloud
# - HTTP 401, 403, 404, 429, 500, 503, timeout, connection reset, garbage, oversized and
# wrong-typed bodies, slow answers, connection refused (the fake cloud stopped for 1.5 s) -
# injected as a burst: the daemon keeps running, logs the problem once per change of condition
# (1..2 EVENT=error per channel and burst; none for answers that mean "no notice" or are merely
# slow), announces no notice out of a faulty answer, and a notice posted after the burst is seen
# within one poll interval + 1.5 s of its end. At the end: exit 0 on SIGTERM, no sanitizer findings.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

plan 113
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

# The four providers watch one fake cloud side by side (one daemon each); each round injects one
# fault into all four clouds at once, so the whole file stays well under a minute.
PROVIDERS=(aws gce azure alibaba)
declare -A PIDS LOGS KIND QUERY POST_AT CHANNELS
CHANNELS=([aws]=3 [gce]=2 [azure]=1 [alibaba]=1)        # metadata paths each provider polls
KIND=([aws]=spot-interruption [gce]=preempt [azure]=preempt [alibaba]=spot-interruption)
QUERY=([aws]="in_s=120" [gce]="" [azure]="in_s=30" [alibaba]="in_s=300")
MARGIN_MS=1500
# 300 ms between polls: long enough that "one poll interval + margin" still catches a
# back-off that outgrows the poll interval, short enough for a quick test.
POLL_MS=300

# GCE long-polls are capped at 1 s so that they are re-issued (and meet the faults) steadily.
FC_ARGS=(--gce-max-wait-s 1)
fc_start "${FC_ARGS[@]}"
FC_PORT=${FC_URL##*:}

for p in "${PROVIDERS[@]}"; do
        export TRAINSUPD_CONTROL=$T/run/$p.ctl TRAINSUPD_STATE_DIR=$T/state-$p
        cloud_config "$T/$p.json" "$p"
        start_daemon_ready "$T/$p.json"
        PIDS[$p]=$DAEMON_PID
        LOGS[$p]=$DAEMON_LOG
done
for p in "${PROVIDERS[@]}"; do
        wait_requests "$p" 4 || diag "$p: fewer polls than expected at start"
done

# faults_pending: faults queued and not fired yet, over all clouds.
faults_pending() { fcq "sum(len(v) for v in d['faults']['pending'].values())"; }

# lines_since FILE MARK: the lines after the first MARK ones.
lines_since() { tail -n +$(($2 + 1)) "$1"; }

# errors_per_channel FILE MARK: "MAX SUMMARY": the most EVENT=error lines any one channel logged
# since MARK (0 when none) and the per-channel counts (channel:count,...).
errors_per_channel() {
        lines_since "$1" "$2" | grep -E "^$RE_TIME EVENT=error " | sed -E 's/.* CHANNEL=([^ ]+).*/\1/' | sort | uniq -c |
                awk '{ if ($1 > m) m = $1; s = s (s ? "," : "") $2 ":" $1 } END { print m + 0, (s ? s : "none") }'
}

# expected_errors PROVIDER FAULT: "MIN MAX" EVENT=error lines per channel in one burst.
expected_errors() {
        case "$2" in
        mode=slow*) echo "0 0" ;;                               # answered within the timeout
        mode=status=404) case $1 in aws | alibaba) echo "0 0" ;; *) echo "1 2" ;; esac ;;   # 404 = no notice
        mode=status=401) case $1 in aws | alibaba) echo "0 2" ;; *) echo "1 2" ;; esac ;;   # re-token on 401
        *) echo "1 2" ;;
        esac
}

# round LABEL FAULT-QUERY COUNT HOLD_MS [PRE-FAULT-QUERY]: the burst - COUNT faulty answers per
# polled path, or FAULT-QUERY "refused": the fake cloud goes away for 1.5 s -, then a notice for
# each cloud. PRE-FAULT-QUERY (a whole /_fake/fault query) is queued first. 2 assertions per provider.
round() {
        local label=$1 q=$2 count=$3 hold=$4 pre=${5:-} p mark t_end line seen n min max got summary deadline
        local -A MARK
        for p in "${PROVIDERS[@]}"; do MARK[$p]=$(wc -l <"${LOGS[$p]}"); done
        if [ "$q" = refused ]; then
                # Nothing listens for a while: connection refused, every request.
                stop_pid "$FC_PID"
                sleep 1.5
                fc_start --port "$FC_PORT" "${FC_ARGS[@]}"
        else
                [ -z "$pre" ] || fc POST "/_fake/fault?$pre" >/dev/null
                for p in "${PROVIDERS[@]}"; do
                        fc POST "/_fake/fault?cloud=$p&$q&count=$((count * CHANNELS[$p]))" >/dev/null
                done
                wait_for 30 eval '[ "$(faults_pending)" = 0 ]' || diag "$label: faults still pending after 30 s"
        fi
        t_end=$(($(now_ms) + hold))
        for p in "${PROVIDERS[@]}"; do
                POST_AT[$p]=$(now_ms)
                fc POST "/_fake/notice?cloud=$p&kind=${KIND[$p]}${QUERY[$p]:+&${QUERY[$p]}}" >/dev/null
        done
        deadline=$((t_end + POLL_MS + MARGIN_MS))
        for p in "${PROVIDERS[@]}"; do
                DAEMON_LOG=${LOGS[$p]}
                mark=${MARK[$p]}
                wait_for 15 eval 'lines_since "$DAEMON_LOG" '"$mark"' | grep -qE "^$RE_TIME EVENT=notice "' || true
                n=$(lines_since "$DAEMON_LOG" "$mark" | grep -cE "^$RE_TIME EVENT=notice ")
                line=$(lines_since "$DAEMON_LOG" "$mark" | grep -E "^$RE_TIME EVENT=notice " | head -n 1)
                seen=$(to_ms "${line%% *}")
                if [ "$n" = 1 ] && [ "$(field "$line" NOTICE_KIND)" = "${KIND[$p]}" ] &&
                        [ "$seen" -ge $((POST_AT[$p] - 5)) ] && [ "$seen" -le "$deadline" ]; then
                        ok "$p, $label: the notice posted after the burst is seen within poll + ${MARGIN_MS} ms ($((seen - t_end)) ms)"
                else
                        not_ok "$p, $label: the notice posted after the burst is seen within poll + ${MARGIN_MS} ms"
                        diag "notice lines since the burst: $n; first: $line" \
                                "posted at ${POST_AT[$p]}, burst ended at $t_end, deadline $deadline, seen ${seen:-never}" \
                                "log since the burst:" "$(lines_since "$DAEMON_LOG" "$mark" | tail -n 20)"
                fi
                read -r min max <<<"$(expected_errors "$p" "$q")"
                read -r got summary <<<"$(errors_per_channel "$DAEMON_LOG" "$mark")"
                if [ "$got" -ge "$min" ] && [ "$got" -le "$max" ]; then
                        ok "$p, $label: EVENT=error once per change of condition ($min..$max per channel; got $summary)"
                else
                        not_ok "$p, $label: EVENT=error once per change of condition ($min..$max per channel; got $summary)"
                        diag "$(lines_since "$DAEMON_LOG" "$mark" | grep -E 'EVENT=error|LEVEL=' | head -n 12)"
                fi
        done
        # Back to no notice everywhere before the next round.
        for p in "${PROVIDERS[@]}"; do MARK[$p]=$(wc -l <"${LOGS[$p]}"); done
        fc POST "/_fake/clear?cloud=all" >/dev/null
        for p in "${PROVIDERS[@]}"; do
                DAEMON_LOG=${LOGS[$p]}
                wait_for 10 eval 'lines_since "$DAEMON_LOG" '"${MARK[$p]}"' | grep -qE "^$RE_TIME EVENT=notice-cancelled "' ||
                        diag "$p: no notice-cancelled after the clear"
        done
}

round "HTTP 401" "mode=status=401" 3 0
round "HTTP 403" "mode=status=403" 3 0
round "HTTP 404" "mode=status=404" 3 0
round "HTTP 429" "mode=status=429" 3 0
round "HTTP 500" "mode=status=500" 3 0
round "HTTP 503" "mode=status=503" 3 0
# The fake cloud holds the request for 2.5 s, then closes the connection: longer than the 2 s a
# plain metadata GET may take. A GCE long-poll may legitimately stay silent for a minute, so there
# the timeouts are aimed at the plain GETs that follow two 503s.
round "timeout" "mode=timeout=2500" 2 2500 "cloud=gce&mode=status=503&count=2"
round "connection reset" "mode=reset" 3 0
round "garbage body" "mode=garbage" 3 0
round "oversized body" "mode=oversized=1048576" 3 0
round "wrong JSON types" "mode=wrongtype" 3 0
round "slow answers (1 s)" "mode=slow=1000" 3 1000
round "connection refused" refused 0 0

for p in "${PROVIDERS[@]}"; do
        export TRAINSUPD_CONTROL=$T/run/$p.ctl
        if is_running "${PIDS[$p]}" && status_ok; then ok "$p: still running and answering status after every fault"; else
                not_ok "$p: still running and answering status after every fault"; diag "$(tail -n 20 "${LOGS[$p]}")"; fi
done
for p in "${PROVIDERS[@]}"; do
        DAEMON_PID=${PIDS[$p]}
        stop_daemon "$p"
done
is "$(sanitizer_report "$T"/daemon-*.log "$T/all-cmd.err")" "" "no sanitizer findings"
