#!/usr/bin/env bash
# Installs what is missing, builds, runs every test suite, and ends with one line
# "N passed, N failed" counting TAP test points across all suites.
# With AVIARY_SANITIZE=1 (CI sets it) every suite but docs (which runs the docs' commands
# with build/, whatever the build) and slow runs on a build with AddressSanitizer and
# UndefinedBehaviorSanitizer (build-asan/), a second time but for the guest tests in the suite
# once, which run only there (each guest test runs once, to keep CI under 30 minutes:
# tests/meson.build); a report fails the test that caused it, and both runs
# count in the last line; so does the replay of the fuzz seed corpus under libFuzzer with the
# same sanitizers (tests/fuzz/replay-asan.sh), and a ThreadSanitizer build (build-tsan/) runs the
# proxy's unit tests, test-traffic and test-controller (routing on the loop with the proxy's
# workers; the controller with its libvirt worker and the proxy's) and the data-plane guest test
# (the proxy's worker threads, the libvirt worker and the control loop at once), where a report
# fails the test (tests/tsan.supp says what in uninstrumented libvirt and GLib is not reported).
# Usage: tests/run.sh [meson test options, e.g. --suite unit]
set -uo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

tests/setup.sh ${AVIARY_MESON_OPTIONS:-} || { echo "0 passed, 1 failed"; exit 1; }
# With the sanitizer passes below, tests in the suite `once` run only there (tests/meson.build).
plain_skip=()
[ -n "${AVIARY_SANITIZE:-}" ] && plain_skip=(--no-suite once)
meson test -C build --print-errorlogs --num-processes 2 "${plain_skip[@]}" "$@"
status=$?
logs=(build/meson-logs/testlog.json)

if [ -n "${AVIARY_SANITIZE:-}" ]; then
        echo "==> the same suites under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
        if [ -d build-asan ]; then
                meson setup --reconfigure build-asan -Db_sanitize=address,undefined -Db_lundef=false \
                        ${AVIARY_MESON_OPTIONS:-} >/dev/null
        else
                meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false ${AVIARY_MESON_OPTIONS:-} >/dev/null
        fi
        if ninja -C build-asan >/dev/null; then
                ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=0 \
                UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 AVIARY_SANITIZE=1 \
                        meson test -C build-asan --print-errorlogs --num-processes 2 --no-suite docs --no-suite slow "$@"
                [ $? -eq 0 ] || status=1
                logs+=(build-asan/meson-logs/testlog.json)
        else
                # Counted in the last line, not only in the exit status.
                printf 'not ok 1 - the ASan + UBSan build (build-asan/) compiles\n1..1\n' >build/asan-build.tap
                logs+=(build/asan-build.tap)
                status=1
        fi
fi

if [ -n "${AVIARY_SANITIZE:-}" ]; then
        echo "==> the fuzz seed corpus under libFuzzer + ASan + UBSan (tests/fuzz/replay-asan.sh)"
        tests/fuzz/replay-asan.sh | tee build/fuzz-replay.tap
        [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
        logs+=(build/fuzz-replay.tap)
fi

if [ -n "${AVIARY_SANITIZE:-}" ]; then
        echo "==> the proxy's threads under ThreadSanitizer (build-tsan/)"
        if [ -d build-tsan ]; then
                meson setup --reconfigure build-tsan -Db_sanitize=thread -Db_lundef=false ${AVIARY_MESON_OPTIONS:-} >/dev/null
        else
                meson setup build-tsan -Db_sanitize=thread -Db_lundef=false ${AVIARY_MESON_OPTIONS:-} >/dev/null
        fi
        if ninja -C build-tsan >/dev/null; then
                TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp" \
                AVIARY_SANITIZE=1 meson test -C build-tsan --print-errorlogs --num-processes 1 \
                        test-proxy test-proxy-plane test-proxy-hold test-proxy-listener test-proxy-framing \
                        test-proxy-fdlimit test-traffic test-controller dataplane
                [ $? -eq 0 ] || status=1
                logs+=(build-tsan/meson-logs/testlog.json)
        else
                printf 'not ok 1 - the ThreadSanitizer build (build-tsan/) compiles\n1..1\n' >build/tsan-build.tap
                logs+=(build/tsan-build.tap)
                status=1
        fi
fi

python3 tests/lib/tap-summary.py "${logs[@]}"
summary=$?
[ $status -eq 0 ] && [ $summary -eq 0 ]
