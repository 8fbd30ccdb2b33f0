#!/usr/bin/env bash
# Fuzzing run: each libFuzzer harness of tests/fuzz (router + JSON bodies, command-line
# template, domain XML, HTTP proxy) for SECONDS, one process at a time, each from a copy of its
# seed corpus. Prints per target: executions, exec/s, coverage (cov: edges and ft: features from
# libFuzzer's last status line), corpus files it added and crashes it found (ASan, UBSan, LSan,
# a broken invariant, a timeout). Exits non-zero if any target found something.
# Usage: bench/fuzz.sh [SECONDS] [TARGET...]     (default 60 s, all four targets)
# Results (grown corpora, crash inputs, logs) stay in build-fuzz/fuzz-results/TARGET/.
set -uo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

seconds=${1:-60}
shift $(($# > 0 ? 1 : 0))
targets=("$@")
((${#targets[@]})) || targets=(fuzz-router-json fuzz-template fuzz-domain-xml fuzz-proxy-http)

dir=$(tests/fuzz/build.sh) || { echo "fuzz.sh: the build failed" >&2; exit 1; }
results=$PWD/$dir/fuzz-results
# Stop at the first sanitizer report, with a stack; LSan reports leaks at the end of each input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=0
printf '%-18s %8s %12s %9s %7s %7s %10s %8s\n' target seconds executions exec/s cov ft new-files crashes
for t in "${targets[@]}"; do
        bin=$PWD/$dir/tests/fuzz/$t
        out=$results/$t
        [ -d "tests/fuzz/corpus/$t" ] || { echo "fuzz.sh: no target $t" >&2; failed=1; continue; }
        rm -rf "$out"
        mkdir -p "$out/artifacts"
        cp -r "tests/fuzz/corpus/$t" "$out/corpus"
        before=$(find "$out/corpus" -type f | wc -l)
        echo "==> $t for ${seconds}s (log: $out/log)" >&2
        # One process: no -jobs/-workers/-fork, so nothing runs beside it. -timeout: an input
        # that runs 10 s counts as a hang.
        (cd "$out" && "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
                -artifact_prefix="$out/artifacts/" "$out/corpus" >"$out/log" 2>&1)
        status=$?
        after=$(find "$out/corpus" -type f | wc -l)
        crashes=$(find "$out/artifacts" -type f | wc -l)
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/log" | tail -1)
        last=$(grep -a ' cov: ' "$out/log" | tail -1)
        cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
        ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
        if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
                crashes="exit $status"
        fi
        printf '%-18s %8s %12s %9s %7s %7s %10s %8s\n' "$t" "$seconds" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
                "${ft:-?}" "$((after - before))" "$crashes"
        if [ "$status" -ne 0 ] || [ "$(find "$out/artifacts" -type f | wc -l)" -ne 0 ]; then
                failed=1
                grep -a -m1 -E 'ERROR: |runtime error|invariant broken' "$out/log" >&2
                ls "$out/artifacts" >&2
        fi
done
exit $failed
