#!/usr/bin/env bash
# The fuzz seeds under the sanitizers, for CI: builds build-fuzz/ (clang, libFuzzer, ASan +
# UBSan, see build.sh) and runs each harness once on every file of its seed corpus (libFuzzer's
# -runs=0). Prints one TAP line per target and exits non-zero on any report: a crash, a leak,
# undefined behaviour, a broken invariant. Needs clang and libclang-rt-14-dev besides what
# tests/setup.sh installs. Usage: tests/fuzz/replay-asan.sh
set -uo pipefail
cd "$(dirname "$0")/../.."

dir=$(tests/fuzz/build.sh) || exit 1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=0 n=0
for corpus in tests/fuzz/corpus/*/; do
        t=$(basename "$corpus")
        log=$dir/replay-$t.log
        n=$((n + 1))
        seeds=$(find "$corpus" -type f | wc -l)
        # Belt and braces: a report must also fail the target if some runtime did not exit non-zero.
        if "$dir/tests/fuzz/$t" -runs=0 -artifact_prefix="$dir/replay-$t-" "$corpus" >"$log" 2>&1 &&
                ! grep -aqE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|invariant broken' "$log"; then
                echo "ok $n - $t: $seeds seeds replayed under ASan and UBSan"
        else
                echo "not ok $n - $t (log: $log)"
                grep -aE -A30 'ERROR: |runtime error:|invariant broken' "$log" | head -60 | sed 's/^/# /'
                failed=1
        fi
done
echo "1..$n"
exit $failed
