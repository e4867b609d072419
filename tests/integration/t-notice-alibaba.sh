#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2016,SC2119,SC2120 # eval strings expand later; fc_start takes optional flags
# The real daemon against the fake cloud's Alibaba ECS metadata in hardened mode (scripts/fakecloud,
# docs/fakecloud.md): nothing at first; every GET carries the session token; a termination time
# gives exactly one imminent EVENT=notice with DEADLINE_USEC = that time and shows in
# `status --json`; not again on later polls nor when the time moves; gone (404) gives
# EVENT=notice-cancelled; a token expiry is survived. Then cloud.provider "auto" with
# Alibaba's DMI strings.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

plan 24
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/notice-lib.sh"

ALI_SPOT=/latest/meta-data/instance/spot/termination-time

fc_start --alibaba-hardened on

# ================================================================ cloud.provider "alibaba"
cloud_config "$T/alibaba.json" alibaba
start_daemon_ready "$T/alibaba.json"

# ---- quiet start, hardened mode
wait_requests alibaba 6 || diag "fewer polls than expected at start"
is "$(status_notice)" null "no notice at first: status --json notice is null"
is "$(n_events notice)" 0 "no EVENT=notice line at first"
is "$(fcq "[d['requests']['alibaba']['by_path'].get('GET $ALI_SPOT', 0) >= 4, d['requests']['aws']['total']]")" "[true, 0]" \
        "the daemon polls spot/termination-time, every request with Alibaba's token header (none went to AWS)"
is "$(fcq "[d['tokens']['alibaba']['issued'] >= 1, d['requests']['alibaba']['by_status'].get('401', 0), d['tokens']['alibaba']['rejected']]")" \
        "[true, 0, 0]" "hardened mode: a token was PUT and every GET carried it (no 401)"

# ---- the termination time: imminent, deadline = the time given; the first one counts
post alibaba spot-interruption "in_s=300"
dl=$(to_ms "$(reply termination-time)")
expect_notice "termination-time" alibaba spot-interruption 1 "$dl"
no_repeat "termination-time" alibaba
n0=$N0
post alibaba spot-interruption "in_s=120"
N0=$n0
wait_requests alibaba 6 || diag "fewer polls than expected"
is "$(n_events notice)" $((N0 + 1)) "a moved termination time is not announced again"
if near "$(status_notice | cut -d' ' -f3)" "$dl" 1000; then ok "the first deadline is kept"; else
        not_ok "the first deadline is kept"; diag "$(cat "$T/status.json")"; fi
fc POST "/_fake/clear?cloud=alibaba" >/dev/null
expect_cancel "termination-time gone (404)" spot-interruption

# ---- token expiry: a new token, the notice still seen
issued=$(fcq "d['tokens']['alibaba']['issued']")
fc POST "/_fake/expire-tokens?cloud=alibaba" >/dev/null
post alibaba spot-interruption "in_s=200"
expect_notice "after token expiry" alibaba spot-interruption 1 "$(to_ms "$(reply termination-time)")"
num_cmp "$(fcq "d['tokens']['alibaba']['issued']")" -gt "$issued" "after token expiry: a new token was PUT"
fc POST "/_fake/clear?cloud=alibaba" >/dev/null
expect_cancel "after token expiry, cleared" spot-interruption

is "$(n_events error)" 0 "a healthy metadata service (and a token expiry) gives no EVENT=error"
stop_daemon "alibaba"

# ================================================================ cloud.provider "auto" on Alibaba's DMI strings
printf 'Alibaba Cloud\n' >"$TRAINSUPD_DMI_DIR/sys_vendor"
printf 'Alibaba Cloud ECS\n' >"$TRAINSUPD_DMI_DIR/product_name"
fc POST "/_fake/reset" >/dev/null
cloud_config "$T/auto.json" auto
start_daemon_ready "$T/auto.json"
like "$(nth_event started 1)" " PROVIDER=alibaba " "auto + Alibaba DMI: EVENT=started PROVIDER=alibaba"
post alibaba spot-interruption "in_s=250"
expect_notice "auto: termination-time" alibaba spot-interruption 1 "$(to_ms "$(reply termination-time)")"
stop_daemon "auto (alibaba)"

is "$(sanitizer_report "$T"/daemon-*.log "$T/all-cmd.err")" "" "no sanitizer findings"
