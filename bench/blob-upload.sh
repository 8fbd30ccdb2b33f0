#!/usr/bin/env bash
# Blob upload throughput: aviaryd's streamed, hashed, fsynced PUT over its unix socket,
# against the same work done by hand in the same run, two ways: sha256sum then a copy fsynced
# alone (dd conv=fsync: only the copy is flushed, not the whole file system as sync -f did,
# which flushed the source file too), and one pass that hashes, copies and fsyncs (what aviaryd
# does). The source is written and flushed before each round's timings; the order of the three
# rotates from round to round. Prints medians and the ratios.
# Usage: bench/blob-upload.sh [SIZE_MB] [ROUNDS]   (defaults 64 and 5; BUILD=build-dp for another build)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
size_mb=${1:-64}
rounds=${2:-5}
build=${BUILD:-build}
[ -x "$build/daemon/aviaryd" ] || tests/setup.sh

work=$(mktemp -d /tmp/aviary-bench.XXXXXX)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
# runtime = off: uploads need no guests, and no bridge may appear in the host's namespace.
printf 'runtime = off\n' >"$work/conf"
"$build/daemon/aviaryd" --config "$work/conf" --state-dir "$work/state" --socket "$work/sock" 2>"$work/log" &
pid=$!
for _ in $(seq 50); do curl -sf --unix-socket "$work/sock" http://a/v1/health >/dev/null && break; sleep 0.1; done

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$work/aviary.times"
: >"$work/baseline.times"
: >"$work/onepass.times"
two_pass() {
        local t0 t1
        t0=$(now)
        sha256sum "$work/blob" >/dev/null
        dd if="$work/blob" of="$work/copy" bs=1M conv=fsync status=none
        t1=$(now)
        echo "$t1 - $t0" | bc -l >>"$work/baseline.times"
        rm -f "$work/copy"
}
one_pass() {
        local t0 t1
        t0=$(now)
        python3 - "$work/blob" "$work/copy" <<'PY'
import hashlib, os, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as dst:
    while chunk := src.read(1 << 20):
        h.update(chunk)
        dst.write(chunk)
    dst.flush()
    os.fsync(dst.fileno())
PY
        t1=$(now)
        echo "$t1 - $t0" | bc -l >>"$work/onepass.times"
        rm -f "$work/copy"
}
upload() {
        local t0 t1 code
        t0=$(now)
        code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$work/sock" -X PUT \
                -H 'Content-Type: application/octet-stream' --data-binary @"$work/blob" \
                "http://a/v1/blobs/$digest")
        t1=$(now)
        [ "$code" = 201 ] || { echo "upload failed: $code" >&2; exit 1; }
        echo "$t1 - $t0" | bc -l >>"$work/aviary.times"
}
for i in $(seq "$rounds"); do
        head -c $((size_mb * 1024 * 1024)) /dev/urandom >"$work/blob"
        sync "$work/blob" # flushed before anything is timed
        digest=sha256:$(sha256sum "$work/blob" | cut -d' ' -f1)
        case $((i % 3)) in
        1) two_pass; one_pass; upload ;;
        2) upload; two_pass; one_pass ;;
        0) one_pass; upload; two_pass ;;
        esac
done

a=$(median <"$work/aviary.times")
b=$(median <"$work/baseline.times")
o=$(median <"$work/onepass.times")
printf '%-40s %10s %12s\n' "blob upload, ${size_mb} MiB, ${rounds} rounds" "median s" "MiB/s"
printf '%-40s %10.3f %12.1f\n' "baseline: sha256sum + copy with fsync" "$b" "$(echo "$size_mb / $b" | bc -l)"
printf '%-40s %10.3f %12.1f\n' "baseline: one pass hash + copy + fsync" "$o" "$(echo "$size_mb / $o" | bc -l)"
printf '%-40s %10.3f %12.1f\n' "aviaryd PUT /v1/blobs (curl)" "$a" "$(echo "$size_mb / $a" | bc -l)"
printf 'time ratio aviaryd / two-pass: %.2f, aviaryd / one-pass: %.2f\n' "$(echo "$a / $b" | bc -l)" "$(echo "$a / $o" | bc -l)"
printf 'aviaryd peak RSS: %s\n' "$(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
