#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2016,SC2119,SC2120 # eval strings expand later; fc_start takes optional flags
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
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/notice-lib.sh"

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
