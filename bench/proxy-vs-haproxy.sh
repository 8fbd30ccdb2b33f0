#!/usr/bin/env bash
# The service proxy against HAProxy, in one run, at 1 and 2 threads: aviary's data plane as
# aviaryd runs it (bench/proxy-harness.c: proxy/routing.c with proxy_threads workers, the
# daemon's routing tables, metrics and callbacks) and HAProxy with nbthread 1 and 2, both
# round-robin over the same two loopback keep-alive backends (bench/backend.c), both adding the
# same headers (X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id), both
# keeping connections alive on both sides. wrk straight at a backend is the floor.
#
# Rounds are interleaved (direct, aviary, haproxy, in an order that rotates), and every figure
# is the median of the rounds: one disturbed round on a shared machine moves a mean, not a
# median. Loopback only; every load is bounded (wrk -d).
# Usage: bench/proxy-vs-haproxy.sh [SECONDS] [ROUNDS]   (defaults 8 and 5)
#        BUILD=build-dp bench/proxy-vs-haproxy.sh        (another build directory)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
secs=${1:-8}
rounds=${2:-5}
conns=32
build=${BUILD:-build}
if ! command -v haproxy >/dev/null || ! command -v wrk >/dev/null; then
        apt-get install -y haproxy wrk >/dev/null
fi
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
pa=${ports[0]} pb=${ports[1]} pavi=${ports[2]} phap=${ports[3]}

wait_http() { # URL: up to 5 s for a 200
        for _ in $(seq 50); do
                [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
                sleep 0.1
        done
        echo "no HTTP 200 from $1" >&2
        return 1
}

"$backend" "$pa" & pids+=($!)
"$backend" "$pb" & pids+=($!)
wait_http "http://127.0.0.1:$pa/"
wait_http "http://127.0.0.1:$pb/"

to_ms() { # wrk's "1.23ms" / "456.00us" / "1.02s" -> ms
        awk -v v="$1" 'BEGIN {
                if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
                else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
                else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
                else print v }'
}

run_wrk() { # NAME URL DURATION WRK_THREADS -> appends "rps p50 p99" to $work/NAME
        local out rps p50 p99
        out=$(wrk -t"$4" -c"$conns" -d"$3"s --latency "$2")
        if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
                echo "$1: errors under load:" >&2
                echo "$out" >&2
                exit 1
        fi
        rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
        p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
        p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
        printf '  %-12s %10.0f req/s   p50 %7.3f ms   p99 %7.3f ms\n' "$1" "$rps" "$p50" "$p99" >&2
        echo "$rps $p50 $p99" >>"$work/$1"
}

median_col() { sort -g -k"$1" "$2" | awk -v c="$1" '{v[NR] = $c} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

summary=()
for threads in 1 2; do
        "$harness" "$pavi" "$pa" "$pb" "$threads" 2>"$work/harness-$threads.log" & aviary_pid=$!; pids+=($aviary_pid)
        cat >"$work/haproxy.cfg" <<CFG
global
        nbthread $threads
        maxconn 4096
        pidfile $work/haproxy.pid
defaults
        mode http
        timeout connect 2s
        timeout client 30s
        timeout server 30s
        option http-keep-alive
        option forwardfor
        http-reuse always
frontend fe
        bind 127.0.0.1:$phap
        unique-id-format %{+X}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid
        unique-id-header X-Request-Id
        http-request set-header X-Forwarded-Proto http
        http-request set-header X-Forwarded-Host %[req.hdr(host)]
        default_backend be
backend be
        balance roundrobin
        server a 127.0.0.1:$pa
        server b 127.0.0.1:$pb
CFG
        haproxy -c -q -f "$work/haproxy.cfg"
        haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 & haproxy_pid=$!; pids+=($haproxy_pid)
        wait_http "http://127.0.0.1:$pavi/"
        wait_http "http://127.0.0.1:$phap/"
        # wrk gets as many threads as the proxies: the same client on both sides.
        echo "== $threads proxy thread(s): warm-up (2 s each, not counted)" >&2
        run_wrk "warm-a$threads" "http://127.0.0.1:$pavi/" 2 "$threads"
        run_wrk "warm-h$threads" "http://127.0.0.1:$phap/" 2 "$threads"
        for i in $(seq "$rounds"); do
                echo "round $i/$rounds (${secs} s each)" >&2
                case $((i % 3)) in
                1) order="direct aviary haproxy" ;;
                2) order="aviary haproxy direct" ;;
                0) order="haproxy direct aviary" ;;
                esac
                for who in $order; do
                        case $who in
                        direct) run_wrk "direct$threads" "http://127.0.0.1:$pa/" "$secs" "$threads" ;;
                        aviary) run_wrk "aviary$threads" "http://127.0.0.1:$pavi/" "$secs" "$threads" ;;
                        haproxy) run_wrk "haproxy$threads" "http://127.0.0.1:$phap/" "$secs" "$threads" ;;
                        esac
                done
        done
        aviary_rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$aviary_pid/status")
        haproxy_rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$haproxy_pid/status")
        kill "$aviary_pid" "$haproxy_pid"
        wait "$aviary_pid" "$haproxy_pid" 2>/dev/null || true
        summary+=("$threads|$aviary_rss|$haproxy_rss")
done

printf '\nHTTP/1.1 keep-alive proxy, GET / -> "ok\\n", wrk -c%d -d%ss --latency (wrk threads = proxy threads),\n' "$conns" "$secs"
printf '%d interleaved rounds, medians; %s CPUs; haproxy %s; aviary: its data plane as aviaryd runs it\n' \
        "$rounds" "$(nproc)" "$(haproxy -v | awk 'NR == 1 {print $3}')"
printf '%-36s %12s %10s %10s\n' "" "req/s" "p50 ms" "p99 ms"
row() { printf '%-36s %12.0f %10.3f %10.3f\n' "$1" "$(median_col 1 "$work/$2")" "$(median_col 2 "$work/$2")" "$(median_col 3 "$work/$2")"; }
ratio() { echo "$(median_col "$1" "$work/aviary$2") / $(median_col "$1" "$work/haproxy$2")" | bc -l; }
for s in "${summary[@]}"; do
        IFS='|' read -r threads arss hrss <<<"$s"
        row "baseline: wrk -> backend" "direct$threads"
        row "haproxy (nbthread $threads)" "haproxy$threads"
        row "aviary (proxy_threads $threads)" "aviary$threads"
        printf 'ratio aviary / haproxy, %d thread(s): req/s %.2f, p50 %.2f, p99 %.2f (peak RSS %s / %s)\n' "$threads" \
                "$(ratio 1 "$threads")" "$(ratio 2 "$threads")" "$(ratio 3 "$threads")" "$arss" "$hrss"
done
for threads in 1 2; do sed -n 's/^proxy-harness: requests/aviary counters ('"$threads"' thread(s)): requests/p' "$work/harness-$threads.log"; done
