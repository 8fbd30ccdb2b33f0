#!/usr/bin/env bash
# Scale to zero, measured in one run (issue 11), under TCG, rounds interleaved so every figure
# sees the same machine noise:
#   - the first request's latency after a sleep (wake: boot), against that wake's own
#     boot-to-ready time (aviaryd's service.awake wake_ms: wake start to first guest ready)
#     and the guest's boot_ms (domain running to ready);
#   - the same with wake: snapshot, and the ratio snapshot / cold;
#   - the fast-booting image (tests/guest/build-fast-image) against the Debian-kernel image
#     (tests/guest/build-image), both woken cold through the proxy;
#   - aviaryd's memory per sleeping service: VmRSS growth with 100 scale-to-zero services that
#     hold no guest (replicas 0: a listener, routing state and rows each, what a sleeping
#     service costs aviaryd; a sleeping guest costs it nothing more but its instance row).
# Prints medians and min/max, then the ratios. Requests go from inside a network namespace the
# script creates (and deletes), to aviaryd's proxy on its loopback.
# Usage: bench/wake.sh [ROUNDS]   (default 3, 1-20; needs root)   BUILD=build-x (build directory)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
rounds=${1:-3}
if ! [[ $rounds =~ ^[0-9]+$ ]] || ((rounds < 1 || rounds > 20)); then
        echo "usage: $0 [ROUNDS]   (1-20, default 3)" >&2
        exit 2
fi
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (network namespaces, libvirt)" >&2; exit 1; }
for tool in ip curl jq; do
        command -v "$tool" >/dev/null || { echo "$0: $tool is not installed (tests/setup.sh)" >&2; exit 1; }
done
build=${BUILD:-build}
[ -x "$build/daemon/aviaryd" ] || tests/setup.sh

readonly TIMEOUT_S=180 POLL_S=0.05 NS=aviary-wake-$$ SERVICES=100
fast_dir=${AVIARY_FAST_IMAGE_DIR:-/var/tmp/aviary-fast-image}
debian_dir=${AVIARY_GUEST_IMAGE_DIR:-/var/tmp/aviary-guest-image}
work=$(mktemp -d /tmp/aviary-wake.XXXXXX)
sock=$work/sock
daemon_pid='' failed=0

say() { printf 'wake: %s\n' "$*" >&2; }
die() {
        failed=1
        say "error: $*"
        [ -s "$work/aviaryd.log" ] && { say "aviaryd log (tail):"; tail -n 20 "$work/aviaryd.log" >&2; }
        exit 1
}
proc_alive() {
        local state
        state=$(awk '$1 == "State:" { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
        [[ -n $state && $state != Z ]]
}
cleanup() {
        local rc=$? pids
        trap - EXIT INT TERM
        if [[ -n $daemon_pid ]]; then
                kill "$daemon_pid" 2>/dev/null || true
                for _ in $(seq 50); do proc_alive "$daemon_pid" || break; sleep 0.1; done
                kill -9 "$daemon_pid" 2>/dev/null || true
                wait "$daemon_pid" 2>/dev/null || true
        fi
        # What still runs in our namespace is ours: the guests' QEMUs (they outlive aviaryd).
        mapfile -t pids < <(ip netns pids "$NS" 2>/dev/null)
        if ((${#pids[@]})); then
                kill "${pids[@]}" 2>/dev/null || true
                sleep 1
                kill -9 "${pids[@]}" 2>/dev/null || true
        fi
        ip netns del "$NS" 2>/dev/null || true
        if ((rc != 0 || failed)); then say "logs kept in $work"; else rm -rf "$work"; fi
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

api() {  # api METHOD PATH [JSON]: prints the status; the body is in $work/resp
        local args=(-s -o "$work/resp" -w '%{http_code}' --max-time 60 --unix-socket "$sock" -X "$1")
        [[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
        curl "${args[@]}" "http://aviary$2" || true
}
wait_until() {  # wait_until WHAT COMMAND...: polls COMMAND until it succeeds, or fails the run
        local what=$1 deadline=$((SECONDS + TIMEOUT_S))
        shift
        until "$@"; do
                ((SECONDS < deadline)) || die "$what: not within $TIMEOUT_S s"
                sleep "$POLL_S"
        done
}
all_state() {  # all_state SERVICE STATE: every instance of SERVICE is in STATE
        [[ $(api GET "/v1/instances?service=$1&limit=100") == 200 ]] &&
                jq -e --arg s "$2" '(.items | length) > 0 and all(.items[]; .state == $s)' "$work/resp" >/dev/null
}
events_count() {  # events_count RESOURCE ACTION
        api GET "/v1/events?resource=$1&limit=1000" >/dev/null
        jq --arg a "$2" '[.items[] | select(.action == $a)] | length' "$work/resp"
}
snapshot_taken() { (($(events_count "instance/$1" instance.snapshot) > $2)); }
push() {  # push IMAGE DIR
        local f code d=() body
        for f in vmlinuz initrd.img; do
                d+=("sha256:$(sha256sum "$2/$f" | cut -d' ' -f1)")
                code=$(curl -s -o "$work/resp" -w '%{http_code}' --unix-socket "$sock" -X PUT \
                        -H 'Content-Type: application/octet-stream' --data-binary @"$2/$f" \
                        "http://aviary/v1/blobs/${d[-1]}" || true)
                [[ $code == 200 || $code == 201 ]] || die "PUT blob $2/$f: $code"
        done
        body=$(jq -nc --arg k "${d[0]}" --arg i "${d[1]}" --arg c "$(cat "$2/cmdline.template")" \
                '{version: "1", kernel: $k, initrd: $i, cmdline: $c, memory_mib: 128, port: 8080}')
        code=$(api POST "/v1/images/$1/versions" "$body")
        [[ $code == 201 ]] || die "push $1: $code $(cat "$work/resp")"
}
# first_request SERVICE PORT: puts SERVICE to sleep (waits for it, and for its snapshot when it
# takes one), then times one GET through its proxy; prints "latency_ms wake_ms boot_ms".
first_request() {
        local svc=$1 port=$2 id snaps awakes t code wake boot
        id=$(api GET "/v1/instances?service=$svc" >/dev/null; jq -r '.items[0].id' "$work/resp")
        snaps=$(events_count "instance/$id" instance.snapshot)
        awakes=$(events_count "service/$svc" service.awake)
        [[ $(api POST "/v1/services/$svc/sleep") == 202 ]] || die "sleep $svc: $(cat "$work/resp")"
        wait_until "$svc asleep" all_state "$svc" asleep
        if [[ $(api GET "/v1/services/$svc" >/dev/null; jq -r '.scale_to_zero.wake' "$work/resp") == snapshot ]]; then
                wait_until "$svc's snapshot" snapshot_taken "$id" "$snaps"
        fi
        sleep 0.5 # the guest's QEMU is gone and the machine quiet
        read -r code t < <(ip netns exec "$NS" curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
                --max-time 120 "http://127.0.0.1:$port/")
        [[ $code == 200 ]] || die "first request to $svc: $code"
        wait_until "$svc's service.awake" awake_logged "$svc" "$awakes"
        wake=$(jq '[.items[] | select(.action == "service.awake")][-1].detail.wake_ms' "$work/resp")
        api GET "/v1/instances/$id" >/dev/null
        boot=$(jq '.timings.boot_ms' "$work/resp")
        awk -v t="$t" -v w="$wake" -v b="$boot" 'BEGIN { printf "%.0f %d %d\n", t * 1000, w, b }'
}
awake_logged() {  # awake_logged SERVICE N: more than N service.awake events (the last in $work/resp)
        api GET "/v1/events?resource=service/$1&limit=1000" >/dev/null
        jq -e --argjson n "$2" '[.items[] | select(.action == "service.awake")] | length > $n' "$work/resp" >/dev/null
}
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
summary() {  # summary FILE COLUMN: "median (min-max)"
        local m lo hi
        m=$(awk -v c="$2" '{ print $c }' "$1" | median)
        lo=$(awk -v c="$2" '{ print $c }' "$1" | sort -n | head -1)
        hi=$(awk -v c="$2" '{ print $c }' "$1" | sort -n | tail -1)
        printf '%s ms (%s-%s)' "$m" "$lo" "$hi"
}

# ---- images, namespace, aviaryd ------------------------------------------------------------
tests/guest/build-image "$debian_dir" >"$work/build.log" 2>&1 || die "tests/guest/build-image failed"
tests/guest/build-fast-image "$fast_dir" >>"$work/build.log" 2>&1 || die "tests/guest/build-fast-image failed"
ip netns add "$NS"
ip -n "$NS" link set lo up
printf 'subnet = 10.88.0.0/24\naccel = tcg\n' >"$work/aviaryd.conf"
ip netns exec "$NS" "$build/daemon/aviaryd" --state-dir "$work/state" --socket "$sock" \
        --config "$work/aviaryd.conf" </dev/null >"$work/aviaryd.log" 2>&1 &
daemon_pid=$!
wait_until "aviaryd's GET /v1/health" eval '[[ $(api GET /v1/health) == 200 ]]'
push fast "$fast_dir"
push debian "$debian_dir"
for spec in "cold fast 18201 boot" "snap fast 18202 snapshot" "deb debian 18203 boot"; do
        read -r name image port wake <<<"$spec"
        code=$(api POST /v1/services "{\"name\":\"$name\",\"stable_version\":\"$image:1\",\"listen\":\"127.0.0.1:$port\",
                \"health_check\":{\"path\":\"/health\"},\"scale_to_zero\":{\"idle\":\"1h\",\"wake\":\"$wake\"}}")
        [[ $code == 201 ]] || die "create $name: $code $(cat "$work/resp")"
done
for name in cold snap deb; do wait_until "$name ready" all_state "$name" ready; done

# ---- rounds, interleaved -------------------------------------------------------------------
say "$rounds rounds: cold wake (fast image), snapshot wake (fast image), cold wake (Debian image)"
for r in $(seq "$rounds"); do
        first_request cold 18201 >>"$work/cold"
        first_request snap 18202 >>"$work/snap"
        first_request deb 18203 >>"$work/deb"
        say "round $r: cold $(tail -1 "$work/cold"), snapshot $(tail -1 "$work/snap"), debian $(tail -1 "$work/deb") (latency wake boot, ms)"
done

# ---- memory per sleeping service -----------------------------------------------------------
rss() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$daemon_pid/status"; }
before=$(rss)
for i in $(seq "$SERVICES"); do
        code=$(api POST /v1/services "{\"name\":\"idle-$i\",\"stable_version\":\"fast:1\",\"replicas\":0,
                \"listen\":\"127.0.0.1:$((19000 + i))\",\"scale_to_zero\":{\"idle\":\"5m\"}}")
        [[ $code == 201 ]] || die "create idle-$i: $code $(cat "$work/resp")"
done
sleep 3 # a pass or two: every listener open, every table published
after=$(rss)

# ---- results -------------------------------------------------------------------------------
cold_ms=$(awk '{ print $1 }' "$work/cold" | median)
cold_wake=$(awk '{ print $2 }' "$work/cold" | median)
cold_boot=$(awk '{ print $3 }' "$work/cold" | median)
snap_ms=$(awk '{ print $1 }' "$work/snap" | median)
deb_ms=$(awk '{ print $1 }' "$work/deb" | median)
printf '\nscale to zero, %d rounds, TCG (%s)\n' "$rounds" "$(nproc) CPUs"
printf '  first request after sleep, wake: boot (fast image):      %s\n' "$(summary "$work/cold" 1)"
printf '    its wake to first guest ready (service.awake wake_ms): %s\n' "$(summary "$work/cold" 2)"
printf '    its guest boot to ready (boot_ms):                     %s\n' "$(summary "$work/cold" 3)"
printf '  first request after sleep, wake: snapshot (fast image):  %s\n' "$(summary "$work/snap" 1)"
printf '  first request after sleep, wake: boot (Debian image):    %s\n' "$(summary "$work/deb" 1)"
printf '    its guest boot to ready (boot_ms):                     %s\n' "$(summary "$work/deb" 3)"
printf '  aviaryd VmRSS: %d KiB before, %d KiB with %d more scale-to-zero services\n' "$before" "$after" "$SERVICES"
printf '\nratios (medians)\n'
awk -v a="$cold_ms" -v w="$cold_wake" -v b="$cold_boot" 'BEGIN {
        printf "  first request / its wake:             %.2fx (%+.0f ms; goal: at most +50 ms)\n", a / w, a - w
        printf "  first request / its guest boot_ms:    %.2fx (%+.0f ms: libvirt start and probe included)\n", a / b, a - b }'
awk -v s="$snap_ms" -v c="$cold_ms" 'BEGIN { printf "  snapshot wake / cold wake:            %.2fx (goal: at most 0.3x)\n", s / c }'
awk -v f="$cold_ms" -v d="$deb_ms" 'BEGIN { printf "  fast image / Debian image (cold wake): %.2fx\n", f / d }'
awk -v a="$after" -v b="$before" -v n="$SERVICES" 'BEGIN { printf "  aviaryd memory per sleeping service:  %.1f KiB\n", (a - b) / n }'
