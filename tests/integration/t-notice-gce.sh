#!/bin/bash
# SPDX-License-Identifier: MIT
# shellcheck disable=SC2016,SC2119,SC2120 # eval strings expand later; fc_start takes optional flags
# The real daemon against the fake cloud's GCE metadata server (scripts/fakecloud,
# docs/fakecloud.md): nothing at first; it long-polls (wait_for_change + last ETag) with
# Metadata-Flavor: Google; instance/preempted TRUE and each maintenance-event value give exactly
# one EVENT=notice with the right PROVIDER / NOTICE_KIND / IMMINENT / DEADLINE_USEC (preempted:
# received + 30 s; TERMINATE/SHUTDOWN_ON_HOST_MAINTENANCE: received + 60 s; MIGRATE and unknown
# values: advisory, no deadline) and show in `status --json`; not again on later long-polls;
# a value going back gives EVENT=notice-cancelled. Then cloud.provider "auto" with GCE's DMI strings.
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/lib.sh"

plan 41
. "${TOP_SRCDIR:-$(dirname "$0")/../..}/tests/integration/notice-lib.sh"

GCE_PRE=/computeMetadata/v1/instance/preempted
GCE_MAINT=/computeMetadata/v1/instance/maintenance-event

# n_waits: long-polls (wait_for_change) the fake cloud has seen start.
n_waits() { fcq "d['gce']['wait_for_change']['started']"; }

# GCE answers a long-poll only on a change; the fake cloud caps each wait at 1 s here so that
# "later polls" (timed-out long-polls answering the same value and ETag) happen and can be counted.
fc_start --gce-max-wait-s 1

# ================================================================ cloud.provider "gce"
cloud_config "$T/gce.json" gce
start_daemon_ready "$T/gce.json"

# ---- quiet start; long-polls with Metadata-Flavor
wait_for 15 eval '[ "$(n_waits)" -ge 4 ]' || diag "fewer long-polls than expected at start"
is "$(status_notice)" null "no notice at first: status --json notice is null"
is "$(n_events notice)" 0 "no EVENT=notice line at first"
is "$(fcq "[d['requests']['gce']['by_path'].get(p, 0) >= 2 for p in ('GET $GCE_PRE', 'GET $GCE_MAINT')]")" "[true, true]" \
        "the daemon watches instance/preempted and instance/maintenance-event"
num_cmp "$(n_waits)" -ge 4 "the daemon long-polls (the fake cloud saw wait_for_change requests)"
like "$(cat "$FC_LOG")" "GET $GCE_PRE\\?wait_for_change=true&last_etag=[0-9a-f]{16}[^ ]* -> 200 gce" \
        "the long-poll carries wait_for_change=true and the last ETag"
is "$(fcq "[d['requests']['gce']['by_status'].get('403', 0), d['requests']['gce']['by_status'].get('400', 0)]")" "[0, 0]" \
        "every request carries Metadata-Flavor: Google (no 403)"

# gce_no_repeat LABEL: several more (timed-out) long-polls, still one notice line. 1 assertion.
gce_no_repeat() {
        local w=$(($(n_waits) + 4))
        wait_for 15 eval '[ "$(n_waits)" -ge '"$w"' ]' || diag "fewer long-polls than expected"
        is "$(n_events notice)" $((N0 + 1)) "$1: announced once, not again on later long-polls"
}

# ---- maintenance-event values (advisory ones first: once an imminent notice was seen, status
# keeps showing it)
post gce maintenance "value=SOME_FUTURE_VALUE"
expect_notice "an unknown maintenance value" gce maintenance 0 none
fc POST "/_fake/clear?cloud=gce&kind=maintenance" >/dev/null
expect_cancel "unknown value back to NONE" maintenance

post gce maintenance "value=MIGRATE_ON_HOST_MAINTENANCE"
expect_notice "MIGRATE_ON_HOST_MAINTENANCE" gce maintenance 0 none
gce_no_repeat "MIGRATE_ON_HOST_MAINTENANCE"
# Straight to another value: the migrate notice goes, the terminate one comes.
post gce maintenance "value=TERMINATE_ON_HOST_MAINTENANCE"
expect_notice "TERMINATE_ON_HOST_MAINTENANCE" gce maintenance 1 $((POST_MS + 60000)) 1500
expect_cancel "MIGRATE replaced by TERMINATE" maintenance
gce_no_repeat "TERMINATE_ON_HOST_MAINTENANCE"
fc POST "/_fake/clear?cloud=gce&kind=maintenance" >/dev/null
expect_cancel "TERMINATE back to NONE" maintenance

post gce maintenance "value=SHUTDOWN_ON_HOST_MAINTENANCE"
expect_notice "SHUTDOWN_ON_HOST_MAINTENANCE" gce maintenance 1 $((POST_MS + 60000)) 1500
fc POST "/_fake/clear?cloud=gce&kind=maintenance" >/dev/null
expect_cancel "SHUTDOWN back to NONE" maintenance

# ---- preempted: imminent, deadline = received + 30 s
post gce preempt
expect_notice "preempted" gce preempt 1 $((POST_MS + 30000)) 1500
rcv=$(status_notice | cut -d' ' -f4)
dl=$(status_notice | cut -d' ' -f3)
is "$((dl - rcv))" 30000 "preempted: deadline = received_at + 30 s"
gce_no_repeat "preempted"
fc POST "/_fake/clear?cloud=gce&kind=preempt" >/dev/null
expect_cancel "preempted back to FALSE" preempt

# ---- a long-poll parked for a long time still wakes at once (default wait: up to 60 s)
fc POST "/_fake/config?gce_max_wait_s=3600" >/dev/null
w=$(($(n_waits) + 2))
wait_for 10 eval '[ "$(n_waits)" -ge '"$w"' ]' || diag "no new long-poll after the config change"
post gce preempt
expect_notice "preempted during a parked long-poll" gce preempt 1 $((POST_MS + 30000)) 1500

is "$(n_events error)" 0 "a healthy metadata server gives no EVENT=error"
stop_daemon "gce (with long-polls parked)"

# ================================================================ cloud.provider "auto" on GCE's DMI strings
printf 'Google\n' >"$TRAINSUPD_DMI_DIR/sys_vendor"
printf 'Google Compute Engine\n' >"$TRAINSUPD_DMI_DIR/product_name"
fc POST "/_fake/reset" >/dev/null
fc POST "/_fake/config?gce_max_wait_s=1" >/dev/null
cloud_config "$T/auto.json" auto
start_daemon_ready "$T/auto.json"
like "$(nth_event started 1)" " PROVIDER=gce " "auto + GCE DMI: EVENT=started PROVIDER=gce"
wait_for 10 eval '[ "$(n_waits)" -ge 2 ]' || diag "no long-poll yet"
post gce preempt
expect_notice "auto: preempted" gce preempt 1 $((POST_MS + 30000)) 1500
stop_daemon "auto (gce)"

is "$(sanitizer_report "$T"/daemon-*.log "$T/all-cmd.err")" "" "no sanitizer findings"
