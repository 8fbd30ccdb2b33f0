#!/usr/bin/env bash
# Blob upload throughput: aviaryd's streamed, hashed, fsynced PUT over its unix socket,
# against the same work done by hand in the same run (sha256sum + cp + sync of the same
# file to the same file system). Prints both medians and the ratio.
# Usage: bench/blob-upload.sh [SIZE_MB] [ROUNDS]   (defaults 64 and 5)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
size_mb=${1:-64}
rounds=${2:-5}
[ -x build/daemon/aviaryd ] || tests/setup.sh

work=$(mktemp -d /tmp/aviary-bench.XXXXXX)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
# runtime = off: uploads need no guests, and no bridge may appear in the host's namespace.
printf 'runtime = off\n' >"$work/conf"
build/daemon/aviaryd --config "$work/conf" --state-dir "$work/state" --socket "$work/sock" 2>"$work/log" &
pid=$!
for _ in $(seq 50); do curl -sf --unix-socket "$work/sock" http://a/v1/health >/dev/null && break; sleep 0.1; done

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$work/aviary.times"
: >"$work/baseline.times"
for i in $(seq "$rounds"); do
        head -c $((size_mb * 1024 * 1024)) /dev/urandom >"$work/blob"
        digest=sha256:$(sha256sum "$work/blob" | cut -d' ' -f1)

        t0=$(now)
        sha256sum "$work/blob" >/dev/null
        cp "$work/blob" "$work/copy"
        sync -f "$work/copy"
        t1=$(now)
        echo "$t1 - $t0" | bc -l >>"$work/baseline.times"
        rm -f "$work/copy"

        t0=$(now)
        code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$work/sock" -X PUT \
                -H 'Content-Type: application/octet-stream' --data-binary @"$work/blob" \
                "http://a/v1/blobs/$digest")
        t1=$(now)
        [ "$code" = 201 ] || { echo "upload failed: $code" >&2; exit 1; }
        echo "$t1 - $t0" | bc -l >>"$work/aviary.times"
done

a=$(median <"$work/aviary.times")
b=$(median <"$work/baseline.times")
printf '%-34s %10s %12s\n' "blob upload, ${size_mb} MiB, ${rounds} rounds" "median s" "MiB/s"
printf '%-34s %10.3f %12.1f\n' "baseline: sha256sum + cp + sync" "$b" "$(echo "$size_mb / $b" | bc -l)"
printf '%-34s %10.3f %12.1f\n' "aviaryd PUT /v1/blobs (curl)" "$a" "$(echo "$size_mb / $a" | bc -l)"
printf 'ratio aviaryd / baseline: %.2f\n' "$(echo "$a / $b" | bc -l)"
printf 'aviaryd peak RSS: %s\n' "$(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
