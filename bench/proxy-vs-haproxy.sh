#!/usr/bin/env bash
# Reverse proxy throughput and latency: aviary's proxy engine (daemon/proxy, run alone by
# bench/proxy-harness.c) against HAProxy in the same run, both single-threaded, both
# round-robin over the same two loopback keep-alive backends (bench/backend.c). Plus wrk
# straight at one backend, as the floor. Loopback only; every load is bounded (wrk -d).
# Usage: bench/proxy-vs-haproxy.sh [SECONDS] [ROUNDS]   (defaults 10 and 2)
# Needs: a build, haproxy, wrk (apt-get install -y haproxy wrk).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
secs=${1:-10}
rounds=${2:-2}
conns=32
for tool in haproxy wrk cc pkg-config; do
        command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y haproxy wrk)" >&2; exit 1; }
done
[ -f build/daemon/libaviaryd-core.a ] || tests/setup.sh

work=$(mktemp -d /tmp/aviary-bench.XXXXXX)
pids=()
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
        rm -rf "$work"
}
trap cleanup EXIT

# ---- the two helpers: from build/bench/ when meson built them, else a one-off cc ----
if [ -x build/bench/backend ] && [ -x build/bench/proxy-harness ]; then
        backend=build/bench/backend harness=build/bench/proxy-harness
else
        echo "building bench/backend.c and bench/proxy-harness.c into $work" >&2
        cflags="-std=c17 -O2 -g -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter"
        cc $cflags -o "$work/backend" bench/backend.c
        # shellcheck disable=SC2046
        cc $cflags -Ibuild -Idaemon -Idaemon/util -Idaemon/proxy -Iapi \
                $(pkg-config --cflags libsystemd) -o "$work/proxy-harness" bench/proxy-harness.c \
                -Wl,--start-group build/daemon/libaviaryd-core.a build/libaviary-api.a \
                $(pkg-config --libs jansson libcrypto libmicrohttpd sqlite3 libsystemd libnl-3.0 \
                        libnl-route-3.0 libvirt libxml-2.0) -lhttp_parser -Wl,--end-group
        backend=$work/backend harness=$work/proxy-harness
fi

# ---- free loopback ports ----
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

"$harness" "$pavi" "$pa" "$pb" 2>"$work/harness.log" & aviary_pid=$!; pids+=($aviary_pid)

# HAProxy, one process and one thread (our proxy runs on one sd-event loop), keep-alive on
# both sides, connections to backends reused across clients. It adds the two headers our
# proxy adds to every request (X-Forwarded-For and X-Request-Id), so both do the same work.
cat >"$work/haproxy.cfg" <<CFG
global
        nbthread 1
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

to_ms() { # wrk's "1.23ms" / "456.00us" / "1.02s" -> ms
        awk -v v="$1" 'BEGIN {
                if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
                else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
                else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
                else print v }'
}

run_wrk() { # NAME URL DURATION -> appends "rps p50 p99" to $work/NAME
        local out
        out=$(wrk -t1 -c"$conns" -d"$3"s --latency "$2")
        if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
                echo "$1: errors under load:" >&2
                echo "$out" >&2
                exit 1
        fi
        local rps p50 p99
        rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
        p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
        p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
        printf '  %-10s %12.0f req/s   p50 %7.3f ms   p99 %7.3f ms\n' "$1" "$rps" "$p50" "$p99" >&2
        echo "$rps $p50 $p99" >>"$work/$1"
}

mean_col() { awk -v c="$1" '{s += $c; n++} END {printf "%.6f", s / n}' "$2"; }

echo "warm-up (2 s each, not counted)" >&2
run_wrk warm-a "http://127.0.0.1:$pavi/" 2
run_wrk warm-h "http://127.0.0.1:$phap/" 2
echo "baseline: wrk straight at backend A (${secs} s)" >&2
run_wrk direct "http://127.0.0.1:$pa/" "$secs"
for i in $(seq "$rounds"); do
        echo "round $i/$rounds (${secs} s each)" >&2
        if [ $((i % 2)) -eq 1 ]; then
                run_wrk aviary "http://127.0.0.1:$pavi/" "$secs"
                run_wrk haproxy "http://127.0.0.1:$phap/" "$secs"
        else
                run_wrk haproxy "http://127.0.0.1:$phap/" "$secs"
                run_wrk aviary "http://127.0.0.1:$pavi/" "$secs"
        fi
done

aviary_rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$aviary_pid/status")
haproxy_rss=$(awk '/VmHWM/ {print $2, $3}' "/proc/$haproxy_pid/status")
kill "$aviary_pid"; wait "$aviary_pid" || true

printf 'HTTP/1.1 keep-alive proxy, GET / -> "ok\\n", wrk -t1 -c%d -d%ss --latency, %d rounds (mean), %s CPUs\n' \
        "$conns" "$secs" "$rounds" "$(nproc)"
echo "both proxies single-threaded (haproxy nbthread 1), round-robin over the same 2 loopback backends,"
echo "keep-alive + upstream connection reuse on both, both add X-Forwarded-For and X-Request-Id"
printf '%-40s %12s %10s %10s\n' "" "req/s" "p50 ms" "p99 ms"
row() { printf '%-40s %12.0f %10.3f %10.3f\n' "$1" "$(mean_col 1 "$work/$2")" "$(mean_col 2 "$work/$2")" "$(mean_col 3 "$work/$2")"; }
row "baseline: wrk -> backend (no proxy)" direct
row "haproxy $(haproxy -v | awk 'NR == 1 {print $3}') (nbthread 1)" haproxy
row "aviary proxy engine (1 sd-event loop)" aviary
ratio() { echo "$(mean_col "$1" "$work/aviary") / $(mean_col "$1" "$work/haproxy")" | bc -l; }
printf 'ratio aviary / haproxy: req/s %.2f, p50 %.2f, p99 %.2f\n' "$(ratio 1)" "$(ratio 2)" "$(ratio 3)"
printf 'peak RSS: aviary harness %s, haproxy %s\n' "$aviary_rss" "$haproxy_rss"
sed -n 's/^proxy-harness: clients/aviary counters: clients/p' "$work/harness.log"
