# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034 # variables are for the sourcing tests
#
# tests/integration/faultproxy.py in front of a store, for the storage tests: faults switched on
# and off while a test runs, and its request log (one JSON record a line) to count what went
# through. Source it after lib.sh.
#
#   fp_start PORT [ARGS...]   starts the proxy for 127.0.0.1:PORT on a free loopback port (ARGS:
#                             more faultproxy.py options, e.g. --flavor azure) or bails out; sets
#                             FP_PORT, FP (its URL) and FP_LOG (its request log)
#   fp_set JSON               merges fault settings (through the control endpoint)
#   fp_off                    all faults off
#   fp_stat PYEXPR            prints PYEXPR over d, the proxy's stats
#   log_mark                  a mark in the request log (for log_since, log_count, log_values)
#   log_since MARK            the log's lines written after the mark
#   log_count MARK PYEXPR     how many of them PYEXPR (over r, the record) is true for
#   log_values MARK PYEXPR    the distinct values of PYEXPR over them, sorted, space-separated
#
# For the snapshot tests (lib.sh's snapshot helpers, and a change_data NAME of the test's):
#   fault_snapshot NAME JSON TIMEOUT_S   a snapshot of new data under the faults JSON; two checks
#   fault_snapshot_newest NAME           after it: which snapshot is the newest; two checks
#   restore_under_faults ID JSON DESC    restore_is ID under the faults JSON; one check

fp_start() {
        local upstream_port=$1
        shift
        FP_LOG=$T/fp.log
        : >"$FP_LOG"
        "$PYTHON" "$TESTS_DIR/faultproxy.py" --upstream "127.0.0.1:$upstream_port" --port-file "$T/fp.port" \
                --log "$FP_LOG" "$@" >"$T/fp.out" 2>"$T/fp.err" &
        track_pid $!
        wait_for 10 test -s "$T/fp.port" || bail_out "faultproxy did not start: $(cat "$T/fp.err")"
        FP_PORT=$(cat "$T/fp.port")
        FP=http://127.0.0.1:$FP_PORT
}

fp_set() { curl -sf -X PUT --data-binary "$1" "$FP/__faultproxy/config" >/dev/null || bail_out "fp_set $1 failed"; }
fp_off() { curl -sf -X POST "$FP/__faultproxy/reset" >/dev/null || bail_out "fp_off failed"; }
fp_stat() { curl -sf "$FP/__faultproxy/stats" | "$PYTHON" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

log_mark() { wc -l <"$FP_LOG"; }
log_since() { tail -n "+$(($1 + 1))" "$FP_LOG"; }
log_count() {
        log_since "$1" | "$PYTHON" -c "
import json, sys
n = 0
for line in sys.stdin:
    r = json.loads(line)
    if $2: n += 1
print(n)"
}
log_values() {
        log_since "$1" | "$PYTHON" -c "
import json, sys
print(' '.join(sorted({str($2) for r in map(json.loads, sys.stdin)})))"
}

# fault_snapshot NAME JSON TIMEOUT_S: change_data NAME (the test's: new content for the next
# snapshot), then `trainsupd snapshot` (TIMEOUT_S at most) with the faults JSON on. Two checks: the
# fault was injected; the snapshot either committed (exactly one new snapshot, the id printed,
# restoring byte-exact) or failed cleanly (an error, no new snapshot). Snapshots that appear
# meanwhile are recorded with this case's data, whatever the command said (so that one finding
# does not cascade into the next cases). Sets FS_RC, FS_OUT, FS_ERR (the snapshot's), FS_MARK (a
# log mark from before it), FS_PREV (the newest listed before) and FS_NEWEST (the newest after).
fault_snapshot() {
        local name=$1 settings=$2 secs=$3 t0 ms new_ids injected id
        change_data "$name"
        listed_ids >"$T/ids-before"
        FS_PREV=$(tail -n 1 "$T/ids-before")
        FS_MARK=$(log_mark)
        fp_set "$settings"
        t0=$(now_ms)
        run_cmd --timeout "$secs" "$TRAINSUPD" snapshot --config "$CFG"
        ms=$(($(now_ms) - t0))
        FS_RC=$RC FS_OUT=$OUT FS_ERR=$ERR
        fp_off
        listed_ids >"$T/ids-after"
        FS_NEWEST=$(tail -n 1 "$T/ids-after")
        new_ids=$(comm -13 "$T/ids-before" "$T/ids-after" | tr '\n' ' ')
        for id in $new_ids; do record "$id"; done
        injected=$(log_count "$FS_MARK" 'r["fault"] and "skipped" not in r["fault"]')
        num_cmp "$injected" -gt 0 "$name: the fault was injected ($injected of $(log_count "$FS_MARK" True) requests)"
        if [ "$FS_RC" = 0 ]; then
                diag "$name: committed $FS_OUT in $ms ms"
                if [ "$new_ids" = "$FS_OUT " ] && restore_is "$FS_OUT" --snapshot "$FS_OUT"; then
                        ok "$name: committed ($ms ms): exactly one new snapshot, restores byte-exact"
                else
                        not_ok "$name: committed ($ms ms): exactly one new snapshot, restores byte-exact"
                        diag "printed $FS_OUT; new snapshots: $new_ids"
                fi
        else
                diag "$name: snapshot failed in $ms ms, exit $FS_RC:" "$FS_ERR"
                if [ -z "$new_ids" ] && [ -n "$FS_ERR" ] && [ "$FS_RC" != 124 ]; then
                        ok "$name: failed cleanly (exit $FS_RC, an error message, no new snapshot)"
                else
                        not_ok "$name: failed cleanly (exit $FS_RC, an error message, no new snapshot)"
                        diag "new snapshots after the failure: $new_ids"
                fi
        fi
}

# restore_under_faults ID JSON DESC: one check, DESC: restore_is ID (byte-exact) with the faults JSON
# on. Sets FS_MARK, a log mark from before the restore.
restore_under_faults() {
        FS_MARK=$(log_mark)
        fp_set "$2"
        check "$3" restore_is "$1"
        fp_off
}

# fault_snapshot_newest NAME: after fault_snapshot NAME, two checks: the newest listed snapshot
# restores byte-exact; it is the one the command printed (after a failure: the previous newest).
# Then the faults injected are listed (diag).
fault_snapshot_newest() {
        local name=$1
        check "$name: the newest listed snapshot restores byte-exact" restore_is "$FS_NEWEST"
        if [ "$FS_RC" = 0 ]; then
                is "$FS_NEWEST" "$FS_OUT" "$name: the newest listed snapshot is the one the command printed"
        else
                is "$FS_NEWEST" "$FS_PREV" "$name: after the failure the newest listed snapshot is still the previous one"
        fi
        diag "$name: faults: $(log_since "$FS_MARK" | "$PYTHON" -c 'import json,sys
for l in sys.stdin:
    r = json.loads(l)
    if r["fault"]: print(r["fault"], r["method"], r["path"].split("/")[-2] + "/" + r["path"].split("/")[-1][:12], r["query"][:40], r["upstream_status"], r["detail"] or "")')"
}
