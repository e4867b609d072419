#!/bin/bash
# The whole test suite: installs what it needs, builds with warnings as errors, runs the unit and
# integration tests, `make distcheck`, and the unit + fast integration tests again under
# AddressSanitizer and UndefinedBehaviorSanitizer. Ends with "N passed, N failed".
#
#   scripts/test.sh            everything (what CI runs)
#   QUICK=1 scripts/test.sh    skip distcheck and the sanitizer run
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
jobs=$(nproc 2>/dev/null || echo 2)
passed=0
failed=0
failures=()

log() { printf '\n==== %s\n' "$*"; }

# Adds the PASS/FAIL counts of one automake test run to the totals.
count_suite() {
        local name=$1 file=$2 p f
        if [ ! -f "$file" ]; then
                failed=$((failed + 1)); failures+=("$name: no test-suite.log"); return
        fi
        p=$(sed -n 's/^# PASS: *//p' "$file" | head -1)
        f=$(sed -n 's/^# FAIL: *//p' "$file" | head -1)
        e=$(sed -n 's/^# ERROR: *//p' "$file" | head -1)
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0} + ${e:-0}))
        if [ "${f:-0}" != 0 ] || [ "${e:-0}" != 0 ]; then
                failures+=("$name: see $file")
                grep -E '^(FAIL|ERROR):' "$file" | head -20
        fi
}

# A step that is one test of its own (builds, distcheck).
step() {
        local name=$1; shift
        log "$name"
        if "$@"; then
                passed=$((passed + 1))
        else
                failed=$((failed + 1)); failures+=("$name")
                return 1
        fi
}

step "install dependencies" "$top/scripts/install-deps.sh" || { echo "0 passed, 1 failed"; exit 1; }
# The Azure tests' emulator, installed by install-deps.sh from package-lock.json.
export AZURITE="$top/node_modules/.bin/azurite-blob"

build() (
        autoreconf -fi >/dev/null 2>&1 || autoreconf -fi || exit 1
        mkdir -p build && cd build || exit 1
        ../configure --enable-werror >/dev/null || exit 1
        make -j"$jobs" >/dev/null || make || exit 1
)
if step "build (warnings are errors)" build; then
        log "make check"
        (cd build && make -j"$jobs" check >/dev/null 2>&1)
        count_suite "make check" build/test-suite.log
        if [ "${QUICK:-0}" != 1 ]; then
                step "make distcheck" bash -c "cd build && make -j$jobs distcheck >distcheck.out 2>&1 || { tail -50 distcheck.out; exit 1; }"

                sanitizers() (
                        mkdir -p "$top/build-asan" && cd "$top/build-asan" || exit 1
                        "$top/configure" --enable-werror --enable-sanitizers >/dev/null || exit 1
                        make -j"$jobs" >/dev/null || exit 1
                )
                if step "build with ASan+UBSan" sanitizers; then
                        log "make check under ASan+UBSan"
                        (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                                make -j"$jobs" check TESTS="\$(UNIT_TESTS) \$(FAST_INTEGRATION_TESTS)" >/dev/null 2>&1)
                        count_suite "ASan+UBSan" build-asan/test-suite.log
                fi
        fi
fi

# The end-to-end check in a real systemd guest (tests/e2e/check-vm.sh: bakes the image, five boots
# under qemu, ~6 minutes on 2 cores). Each check of each boot counts; CHECK_VM=0 skips it.
check_vm() {
        local out=$top/build/tests/e2e/out p f
        log "check-vm (a real systemd guest under qemu; evidence in $out)"
        E2E_OUT=$out bash "$top/tests/e2e/check-vm.sh" >"$top/build/check-vm.log" 2>&1
        local rc=$?
        if [ $rc = 77 ]; then echo "check-vm skipped: needs root"; return; fi
        p=$(cat "$out"/boot*/checks.txt 2>/dev/null | grep -c '^PASS:')
        f=$(cat "$out"/boot*/checks.txt 2>/dev/null | grep -c '^FAIL:')
        passed=$((passed + p)); failed=$((failed + f))
        grep -E '^\[check-vm|^  FAIL' "$top/build/check-vm.log" | grep -E 'boot [0-9]: (pass|FAIL)|FAIL|total|exposure'
        if [ "$f" != 0 ] || [ $rc != 0 ]; then
                [ "$f" != 0 ] || failed=$((failed + 1))
                failures+=("check-vm: see build/check-vm.log and $out")
                tail -30 "$top/build/check-vm.log"
        fi
}
if [ "${QUICK:-0}" != 1 ] && [ "${CHECK_VM:-1}" != 0 ] && [ -d "$top/build" ]; then
        check_vm
fi

log "summary"
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
