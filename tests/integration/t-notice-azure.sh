#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2016,SC2119,SC2120 # eval strings expand later; fc_start takes optional flags
# The real daemon against the fake cloud's Azure Scheduled Events (scripts/fakecloud,
# docs/fakecloud.md): nothing at first; Preempt and Terminate (imminent) and Reboot, Redeploy,
# Freeze (advisory) give exactly one EVENT=notice each with DEADLINE_USEC = NotBefore and show in
# `status --json`; not again on later polls, nor when the event Starts and NotBefore goes blank;
# a vanished event gives EVENT=notice-cancelled. With poll_ms 100 the daemon stays within IMDS's
# 5 requests/s (the fake cloud's max_requests_per_s, no 429). Then cloud.provider "auto" with
# Azure's DMI asset tag, and a first call held for 3 s (the service being enabled).
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

plan 48
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/notice-lib.sh"

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
# (advisory ones first: once an imminent notice was seen, status keeps showing it)
for spec in "reboot 0 in_s=900" "redeploy 0 in_s=600" "freeze 0 in_s=900" "preempt 1 in_s=30" "terminate 1 in_s=600"; do
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
