#!/usr/bin/env bash
# The API against a bare libmicrohttpd server (bench/bare-mhd.c: the same libmicrohttpd, epoll
# on one thread, the same connection limits and memory, a bearer token checked, the same JSON
# bytes as aviaryd answered), over TCP on 127.0.0.1 with a token, in one run: GET /v1/health and
# GET /v1/images with 50 images. aviaryd runs with runtime = off (no guests). Rounds alternate
# the two servers; medians. Loopback only; every load is bounded (wrk -d).
# Usage: bench/api-vs-mhd.sh [SECONDS] [ROUNDS]   (defaults 5 and 5; BUILD=build-dp for another build)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
secs=${1:-5}
rounds=${2:-5}
build=${BUILD:-build}
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
[ -x "$build/bench/bare-mhd" ] || ninja -C "$build" >/dev/null
work=$(mktemp -d /tmp/aviary-api-bench.XXXXXX)
pids=()
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
        rm -rf "$work"
}
trap cleanup EXIT
used=$(ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u)
ports=()
for p in $(seq $((30000 + $$ % 20000)) 65000); do
        grep -qx "$p" <<<"$used" || ports+=("$p")
        [ ${#ports[@]} -eq 2 ] && break
done
pavi=${ports[0]} pmhd=${ports[1]}
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$token" >"$work/token" && chmod 600 "$work/token"
cat >"$work/aviaryd.conf" <<CONF
runtime = off
state_dir = $work/state
socket = $work/sock
listen = 127.0.0.1:$pavi
token_file = $work/token
CONF
"$build/daemon/aviaryd" --config "$work/aviaryd.conf" 2>"$work/aviaryd.log" & pids+=($!)
for _ in $(seq 100); do [ -S "$work/sock" ] && break; sleep 0.05; done
api() { curl -s --unix-socket "$work/sock" "$@"; }
for i in $(seq -w 1 50); do api -o /dev/null -X POST -H 'Content-Type: application/json' \
        -d "{\"name\": \"image-$i\"}" http://aviaryd/v1/images; done
auth="Authorization: Bearer $token"
curl -s -H "$auth" "http://127.0.0.1:$pavi/v1/health" >"$work/health.json"
curl -s -H "$auth" "http://127.0.0.1:$pavi/v1/images" >"$work/images.json"
grep -q '"image-50"' "$work/images.json" || { echo "aviaryd did not list 50 images" >&2; exit 1; }
"$build/bench/bare-mhd" "$pmhd" "$token" "/v1/health=$work/health.json" "/v1/images=$work/images.json" & pids+=($!)
sleep 0.3

run() { # NAME URL -> appends req/s to $work/NAME
        local out rps
        out=$(wrk -t1 -c8 -d"$secs"s -H "$auth" "$2")
        if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then echo "$1: errors:" >&2; echo "$out" >&2; exit 1; fi
        rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
        printf '  %-16s %10.0f req/s\n' "$1" "$rps" >&2
        echo "$rps" >>"$work/$1"
}
median() { sort -g "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for i in $(seq "$rounds"); do
        echo "round $i/$rounds" >&2
        for route in health images; do
                if [ $((i % 2)) -eq 1 ]; then
                        run "aviary-$route" "http://127.0.0.1:$pavi/v1/$route"
                        run "mhd-$route" "http://127.0.0.1:$pmhd/v1/$route"
                else
                        run "mhd-$route" "http://127.0.0.1:$pmhd/v1/$route"
                        run "aviary-$route" "http://127.0.0.1:$pavi/v1/$route"
                fi
        done
done
printf '\nAPI over TCP with a bearer token, wrk -t1 -c8 -d%ss, %d rounds alternating, medians\n' "$secs" "$rounds"
for route in health images; do
        a=$(median "$work/aviary-$route") m=$(median "$work/mhd-$route")
        printf '/v1/%-8s aviaryd %8.0f req/s   bare libmicrohttpd %8.0f req/s   ratio %.3f\n' "$route" "$a" "$m" \
                "$(echo "$a / $m" | bc -l)"
done
