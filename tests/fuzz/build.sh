#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz into build-fuzz/ with clang, ASan and UBSan.
# Shared by tests/fuzz/replay-asan.sh and bench/fuzz.sh; prints the build directory on stdout.
# Needs clang and libclang-rt-14-dev (libFuzzer). AVIARY_FUZZ_BUILD names another directory.
set -euo pipefail
cd "$(dirname "$0")/../.."

dir=${AVIARY_FUZZ_BUILD:-build-fuzz}
targets=(fuzz-router-json fuzz-template fuzz-domain-xml fuzz-proxy-http)

if ! command -v clang >/dev/null || [ ! -e "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]; then
        echo "tests/fuzz/build.sh: needs clang and libFuzzer: apt-get install clang libclang-rt-14-dev" >&2
        exit 1
fi
mkdir -p "$dir"
log=$dir/fuzz-build.log
{
        [ -f "$dir/build.ninja" ] ||
                CC=clang meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
        ninja -C "$dir" "${targets[@]/#/tests/fuzz/}"
} >"$log" 2>&1 || {
        cat "$log" >&2
        echo "tests/fuzz/build.sh: the build failed (log: $log)" >&2
        exit 1
}
echo "$dir"
