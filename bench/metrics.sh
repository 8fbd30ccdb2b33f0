#!/usr/bin/env bash
# What metrics cost, in one run:
#  1. the service proxy (bench/proxy-harness: aviaryd's data plane) with its Prometheus request
#     histogram on against the same build with it off (AVIARY_BENCH_METRICS=off), interleaved
#     rounds, medians: the goal is within 3% of req/s;
#  2. GET /metrics with 100 services (each with a rollout), median scrape time over 50 scrapes,
#     beside GET /v1/health on the same daemon as a baseline.
# Loopback only; every load is bounded (wrk -d, a fixed number of scrapes).
# Usage: bench/metrics.sh [SECONDS] [ROUNDS]   (defaults 5 and 5)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
secs=${1:-5}
rounds=${2:-5}
conns=32
build=${BUILD:-build}
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
[ -x "$build/bench/proxy-harness" ] || { meson setup "$build" >/dev/null 2>&1 || true; ninja -C "$build" >/dev/null; }
backend=$build/bench/backend harness=$build/bench/proxy-harness

work=$(mktemp -d /tmp/aviary-bench.XXXXXX)
pids=()
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
        rm -rf "$work"
}
trap cleanup EXIT

used=$(ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u)
ports=()
for p in $(seq $((20000 + $$ % 20000)) 65000); do
        grep -qx "$p" <<<"$used" || ports+=("$p")
        [ ${#ports[@]} -eq 4 ] && break
done
pa=${ports[0]} pb=${ports[1]} pon=${ports[2]} poff=${ports[3]}

wait_http() {
        for _ in $(seq 50); do
                [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
                sleep 0.1
        done
        echo "no HTTP 200 from $1" >&2
        return 1
}

run_wrk() { # NAME URL -> appends req/s to $work/NAME
        local out
        out=$(wrk -t1 -c"$conns" -d"$secs"s "$2")
        if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
                echo "$1: errors under load:" >&2
                echo "$out" >&2
                exit 1
        fi
        awk '/^Requests\/sec:/ {print $2}' <<<"$out" | tee -a "$work/$1" | sed "s/^/  $1 /" >&2
}
median() { sort -g "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

"$backend" "$pa" & pids+=($!)
"$backend" "$pb" & pids+=($!)
"$harness" "$pon" "$pa" "$pb" 1 2>/dev/null & pids+=($!)
AVIARY_BENCH_METRICS=off "$harness" "$poff" "$pa" "$pb" 1 2>/dev/null & pids+=($!)
for p in "$pa" "$pb" "$pon" "$poff"; do wait_http "http://127.0.0.1:$p/"; done
echo "== proxy, 1 worker thread, wrk -t1 -c$conns -d${secs}s, $rounds interleaved rounds" >&2
for i in $(seq "$rounds"); do
        if ((i % 2)); then
                run_wrk on "http://127.0.0.1:$pon/"
                run_wrk off "http://127.0.0.1:$poff/"
        else
                run_wrk off "http://127.0.0.1:$poff/"
                run_wrk on "http://127.0.0.1:$pon/"
        fi
done
on=$(median "$work/on") off=$(median "$work/off")

echo "== GET /metrics with 100 services" >&2
state=$work/state
mkdir -p "$state"
printf 'runtime = off\n' >"$work/aviaryd.conf"
"$build/daemon/aviaryd" --state-dir "$state" --socket "$work/sock" -c "$work/aviaryd.conf" >"$work/aviaryd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/sock" ] && break; sleep 0.1; done
api() { curl -sS --unix-socket "$work/sock" -H 'Content-Type: application/json' "$@"; }
kernel=$(head -c 65536 /dev/urandom | tee "$work/kernel" | sha256sum | cut -d' ' -f1)
api -X PUT --data-binary @"$work/kernel" -H 'Content-Type: application/octet-stream' \
        "http://x/v1/blobs/sha256:$kernel" >/dev/null
for v in 1 2; do
        api -d "{\"version\": \"$v\", \"kernel\": \"sha256:$kernel\", \"port\": 8080}" http://x/v1/images/app/versions >/dev/null
done
for i in $(seq 100); do
        api -d "{\"name\": \"svc$i\", \"listen\": \"127.0.0.1:$((30000 + i))\"}" http://x/v1/services >/dev/null
        api -d '{"version": "app:1"}' "http://x/v1/services/svc$i/rollouts" >/dev/null
        api -d '{"version": "app:2", "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}}]}}}' \
                "http://x/v1/services/svc$i/rollouts" >/dev/null
done
lines=$(api http://x/metrics | wc -l)
for i in $(seq 50); do
        api -o /dev/null -w '%{time_total}\n' http://x/metrics >>"$work/scrape"
        api -o /dev/null -w '%{time_total}\n' http://x/v1/health >>"$work/health"
done
scrape=$(median "$work/scrape") health=$(median "$work/health")

printf '\nLoad while measuring: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'Proxy req/s, Prometheus histogram on: %.0f, off: %.0f; on/off = %.3f (goal >= 0.97)\n' "$on" "$off" \
        "$(bc -l <<<"$on / $off")"
printf 'GET /metrics, 100 services with rollouts (%s lines): median %.2f ms over 50; GET /v1/health %.2f ms\n' \
        "$lines" "$(bc -l <<<"$scrape * 1000")" "$(bc -l <<<"$health * 1000")"
