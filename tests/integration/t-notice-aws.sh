#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2016,SC2119,SC2120 # eval strings expand later; fc_start takes optional flags
# The real daemon against the fake cloud's AWS IMDSv2 (scripts/fakecloud, docs/fakecloud.md):
# nothing at first; each spot instance-action (terminate, stop, hibernate), the rebalance
# recommendation and scheduled maintenance events give exactly one EVENT=notice with the right
# PROVIDER / NOTICE_KIND / IMMINENT / DEADLINE_USEC and show in `status --json`; they are not
# announced again on later polls (nor when the instance-action's time moves: the first counts);
# cleared ones give EVENT=notice-cancelled. Only IMDSv2 requests (a token on every GET), a token
# expiry is survived. Then the same with cloud.provider "auto" and EC2's DMI strings.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

plan 52
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/notice-lib.sh"

AWS_SPOT=/latest/meta-data/spot/instance-action
AWS_REBALANCE=/latest/meta-data/events/recommendations/rebalance
AWS_MAINT=/latest/meta-data/events/maintenance/scheduled

# ================================================================ cloud.provider "aws"
fc_start
cloud_config "$T/aws.json" aws
start_daemon_ready "$T/aws.json"

# ---- quiet start: several polls, nothing announced
wait_requests aws 9 || diag "fewer polls than expected at start"
is "$(status_notice)" null "no notice at first: status --json notice is null"
is "$(n_events notice)" 0 "no EVENT=notice line at first"
is "$(fcq "[k for k in ('GET $AWS_SPOT', 'GET $AWS_REBALANCE', 'GET $AWS_MAINT') if d['requests']['aws']['by_path'].get(k, 0) < 2]")" "[]" \
        "the daemon polls spot/instance-action, rebalance and maintenance/scheduled"
is "$(fcq "[d['tokens']['aws']['issued'] >= 1, d['requests']['aws']['by_path'].get('PUT /latest/api/token', 0) >= 1, d['requests']['aws']['by_status'].get('401', 0), d['tokens']['aws']['rejected']]")" \
        "[true, true, 0, 0]" "IMDSv2 only: a token was PUT and no GET went without a valid one (no 401)"

# Advisory notices first: once an imminent notice was seen, status keeps showing it.
# ---- rebalance recommendation (advisory, no deadline)
post aws rebalance
expect_notice "rebalance" aws rebalance 0 none
no_repeat "rebalance" aws
fc POST "/_fake/clear?cloud=aws&kind=rebalance" >/dev/null
expect_cancel "rebalance cleared" rebalance

# ---- scheduled maintenance (advisory, deadline = NotBefore); a second event is one more notice
post aws maintenance "in_s=3600&code=instance-stop"
expect_notice "maintenance instance-stop" aws maintenance 0 "$(to_ms "$(reply NotBefore)")"
post aws maintenance "in_s=1800&code=instance-retirement"
expect_notice "second maintenance event" aws maintenance 0 "$(to_ms "$(reply NotBefore)")"
no_repeat "second maintenance event" aws
fc POST "/_fake/clear?cloud=aws&kind=maintenance" >/dev/null   # both become "canceled"
wait_events notice-cancelled $((C0 + 2)) 10
is "$(grep -E "^$RE_TIME EVENT=notice-cancelled " "$DAEMON_LOG" | tail -n +$((C0 + 1)) | grep -c 'NOTICE_KIND=maintenance')" 2 \
        "canceled maintenance events: two EVENT=notice-cancelled NOTICE_KIND=maintenance"

# ---- spot instance-action, each action
for action in terminate stop hibernate; do
        post aws spot-interruption "in_s=120&action=$action"
        dl=$(to_ms "$(reply time)")
        expect_notice "spot $action" aws spot-interruption 1 "$dl"
        no_repeat "spot $action" aws
        if [ "$action" = terminate ]; then
                # The time can move: the first one counts, and it is still the same notice.
                n0=$N0
                post aws spot-interruption "in_s=60&action=$action"
                N0=$n0
                wait_requests aws 9 || diag "fewer polls than expected"
                is "$(n_events notice)" $((N0 + 1)) "spot: a moved time is not announced again"
                st=$(status_notice)
                if near "$(echo "$st" | cut -d' ' -f3)" "$dl" 1000; then ok "spot: the first deadline is kept"; else
                        not_ok "spot: the first deadline is kept"; diag "status: $st, first deadline $dl"; fi
                # One stray 404 does not withdraw an interruption (AWS never takes one back).
                c0=$(n_events notice-cancelled)
                fc POST "/_fake/fault?cloud=aws&mode=404&count=1&path=$AWS_SPOT" >/dev/null
                wait_requests aws 9 || diag "fewer polls than expected"
                is "$(n_events notice-cancelled)" "$c0" "spot: a single 404 does not withdraw the interruption"
                is "$(n_events notice)" $((N0 + 1)) "spot: ... nor announce it again"
        fi
        fc POST "/_fake/clear?cloud=aws&kind=spot-interruption" >/dev/null
        expect_cancel "spot $action cleared" spot-interruption
done

# docs/notices.md: an imminent notice stays in status after it is withdrawn (it is why the job drains).
is "$(status_notice | cut -d' ' -f1,2)" "spot-interruption true" "a withdrawn imminent notice stays in status --json"

# ---- token expiry: re-token on 401, never IMDSv1
issued=$(fcq "d['tokens']['aws']['issued']")
fc POST "/_fake/expire-tokens?cloud=aws" >/dev/null
post aws spot-interruption "in_s=90"
expect_notice "after token expiry" aws spot-interruption 1 "$(to_ms "$(reply time)")"
num_cmp "$(fcq "d['tokens']['aws']['issued']")" -gt "$issued" "after token expiry: a new token was PUT"
wait_requests aws 6 || diag "fewer polls than expected"
u0=$(fcq "d['requests']['aws']['by_status'].get('401', 0)")
wait_requests aws 15 || diag "fewer polls than expected"
is "$(fcq "d['requests']['aws']['by_status'].get('401', 0)")" "$u0" "after token expiry: every later GET carries the new token (no more 401s)"
num_cmp "$u0" -le 4 "after token expiry: at most one 401 per channel (+ one), then a new token"
fc POST "/_fake/clear?cloud=aws" >/dev/null
expect_cancel "after token expiry, cleared" spot-interruption

is "$(n_events error)" 0 "a healthy metadata service (and a token expiry) gives no EVENT=error"
stop_daemon "aws"

# ================================================================ cloud.provider "auto" on EC2's DMI strings
printf 'Amazon EC2\n' >"$TRAINSUPD_DMI_DIR/sys_vendor"
printf 'Amazon EC2\n' >"$TRAINSUPD_DMI_DIR/bios_vendor"
printf 'm5.large\n' >"$TRAINSUPD_DMI_DIR/product_name"
fc POST "/_fake/reset" >/dev/null
cloud_config "$T/auto.json" auto
start_daemon_ready "$T/auto.json"
like "$(nth_event started 1)" " PROVIDER=aws " "auto + EC2 DMI: EVENT=started PROVIDER=aws"
post aws spot-interruption "in_s=100&action=stop"
expect_notice "auto: spot stop" aws spot-interruption 1 "$(to_ms "$(reply time)")"
stop_daemon "auto (aws)"

is "$(sanitizer_report "$T"/daemon-*.log "$T/all-cmd.err")" "" "no sanitizer findings"
