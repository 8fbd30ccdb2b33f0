#!/usr/bin/env bash
# The main job: install, build, start aviaryd on a scratch state directory inside a network
# namespace made for the demo (its guest bridge lives there), walk through pushing, listing,
# refusing and revoking image versions with the CLI and with plain curl, then run a service of
# two real QEMU guests and talk to them, roll out a good canary step by step while sending
# traffic through the service's proxy (printing the observed split), and a bad canary that
# aviaryd rolls back by itself; then a service that scales to zero falls asleep and a request
# wakes it, cold and from a memory snapshot (the wake latency printed). Exits 0 only when every
# step behaved as it should.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

tests/setup.sh ${AVIARY_MESON_OPTIONS:-}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\033[31mdemo failed: %s\033[0m\n' "$*" >&2; exit 1; }

image=/var/tmp/aviary-guest-image
step "Building the test guest image (Debian's cloud kernel + our one-program initramfs; cached)"
tests/guest/build-image "$image"

work=$(mktemp -d /tmp/aviary-demo.XXXXXX)
netns=aviary-demo-$$
sock=$work/aviaryd.sock
aviaryd=build/daemon/aviaryd
aviary() { build/client/aviary --socket "$sock" "$@"; }
api() { curl -sS --unix-socket "$sock" "$@"; }

cleanup() {
        set +e # every step runs, whatever the one before returned
        # Guests outlive aviaryd by design; the demo removes its own.
        if [ -S "$sock" ]; then
                for s in $(build/client/aviary --socket "$sock" -o json service ls 2>/dev/null | jq -r '.items[].name'); do
                        build/client/aviary --socket "$sock" service rm "$s" >/dev/null 2>&1
                done
                sleep 1
        fi
        [ -n "${daemon_pid:-}" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
        pkill -f "qemu-system-x86_64.*$work" 2>/dev/null
        ip netns delete "$netns" 2>/dev/null
        rm -rf "$work"
}
trap cleanup EXIT

step "Starting aviaryd in network namespace $netns (state $work/state, socket $sock)"
ip netns add "$netns"
ip netns exec "$netns" ip link set lo up
ip netns exec "$netns" "$aviaryd" --state-dir "$work/state" --socket "$sock" 2>"$work/aviaryd.log" &
daemon_pid=$!
for _ in $(seq 50); do api -f http://aviary/v1/health >/dev/null 2>&1 && break; sleep 0.1; done
api -f http://aviary/v1/health || fail "aviaryd did not come up: $(cat "$work/aviaryd.log")"
aviary version

template=$(cat "$image/cmdline.template")
step "aviary image push web:1.0 (uploads kernel and initrd, then creates the version)"
aviary image push web:1.0 --kernel "$image/vmlinuz" --initrd "$image/initrd.img" \
        --cmdline "$template" --memory 128 --vcpus 1 --port 8080 --label team=edge

step "aviary image push web:1.1 (same blobs: nothing is uploaded again)"
aviary image push web:1.1 --kernel "$image/vmlinuz" --initrd "$image/initrd.img" --cmdline "$template" --port 8080

step "Pushing web:1.0 again with another kernel is refused: versions are immutable"
head -c 3000000 /dev/urandom >"$work/vmlinuz-2"
if aviary image push web:1.0 --kernel "$work/vmlinuz-2" --port 8080; then
        fail "a changed web:1.0 was accepted"
fi

step "The same with plain curl: upload a blob, create web:2.0"
digest=sha256:$(sha256sum "$work/vmlinuz-2" | cut -d' ' -f1)
api -o /dev/null -w 'HEAD blob: %{http_code}\n' -I "http://aviary/v1/blobs/$digest"
api -X POST -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-web-2.0' \
        -d "{\"version\":\"2.0\",\"kernel\":\"$digest\",\"cmdline\":\"console=ttyS0\",\"port\":8080}" \
        http://aviary/v1/images/web/versions | jq -c '{image, version, digest, state}'
code=$(api -o /dev/null -w '%{http_code}' -X PUT http://aviary/v1/images/web/versions/2.0)
echo "PUT on a version: $code"
[ "$code" = 405 ] || fail "PUT on a version answered $code, not 405"
api -X POST -H 'Content-Type: application/json' -d '{"version":"bad tag!","kernel":"x"}' \
        http://aviary/v1/images/web/versions | jq -c .

step "Listing"
aviary image ls
aviary image ls web
aviary image show web:1.0

step "A service of two guests on web:1.1"
aviary service create web --image web:1.1 --replicas 2
printf 'waiting for two ready guests'
for _ in $(seq 240); do
        ready=$(aviary -o json instance ls --service web | jq '[.items[] | select(.state == "ready")] | length')
        [ "$ready" = 2 ] && break
        printf '.'
        sleep 0.5
done
echo
[ "$ready" = 2 ] || { aviary instance ls; fail "the guests did not become ready"; }
aviary instance ls --service web
echo "how the guests run (accel = auto: KVM is trusted once a guest comes up under it):"
aviary version | grep -E "^(Guests run under|KVM)"
for ip in $(aviary -o json instance ls --service web | jq -r '.items[].ip'); do
        answer=$(ip netns exec "$netns" curl -s --max-time 5 "http://$ip:8080/")
        echo "GET http://$ip:8080/ → $answer"
        [ "$answer" = 1.1 ] || fail "guest $ip answered '$answer'"
done
first=$(aviary -o json instance ls --service web | jq -r '.items[0].id')
echo "the console of $first (last 3 lines):"
aviary logs "$first" --tail 3

step "Revoking web:1.0: it can no longer be deployed"
aviary image revoke web:1.0 --reason "demo: pretend CVE"
if aviary service update web --image web:1.0; then
        fail "a revoked version was deployed"
fi
aviary service ls

step "Canary rollouts: the service gets a proxy on 127.0.0.1:18080 (inside the namespace)"
aviary service update web --listen 127.0.0.1:18080
aviary image push web:1.2 --kernel "$image/vmlinuz" --initrd "$image/initrd.img" --cmdline "$template" --port 8080
aviary image push web:1.3 --kernel "$image/vmlinuz" --initrd "$image/initrd.img" --port 8080 \
        --cmdline "$template app.error_rate=0.5" --label note=bad-build

# COUNT requests through the proxy from inside the namespace; prints the observed split.
load() {
        ip netns exec "$netns" python3 tests/lib/loadgen.py --url http://127.0.0.1:18080/ --count "$1" --concurrency 8
}
wait_phase() { # PHASE WEIGHT: until the rollout is in PHASE at canary WEIGHT (basis points)
        for _ in $(seq 360); do
                aviary -o json rollout status web | jq -e --arg p "$1" --argjson w "$2" \
                        '.phase == $p and .weights.canary == $w' >/dev/null && return 0
                sleep 0.5
        done
        aviary rollout status web
        fail "the rollout did not reach $1 at $(($2 / 100))%"
}

step "aviary deploy web web:1.2 --steps \"10%,pause,50%,pause,90%,pause,100%\": a good canary, step by step"
aviary deploy web web:1.2 --steps "10%,pause,50%,pause,90%,pause,100%"
for weight in 1000 5000 9000; do
        wait_phase Paused "$weight"
        out=$(load 1000)
        canary=$(jq '.by_version["1.2"] // 0' <<<"$out")
        printf 'canary weight %3d%%: 1000 requests → %s (observed canary share %d%%)\n' "$((weight / 100))" \
                "$(jq -c .by_version <<<"$out")" "$((canary / 10))"
        [ "$(jq '.by_status["200"]' <<<"$out")" = 1000 ] || fail "not every request was answered 200: $out"
        delta=$((canary - weight / 10))
        [ "${delta#-}" -le 30 ] || fail "observed split $canary/1000 is off the weight $weight"
        aviary rollout promote web
done
echo "100%: aviaryd promotes once an analysis window passes; traffic keeps flowing meanwhile"
ip netns exec "$netns" python3 tests/lib/loadgen.py --url http://127.0.0.1:18080/ --seconds 60 --rate 50 \
        >/dev/null 2>&1 &
load_pid=$!
aviary rollout status web --wait --timeout 90s || fail "the good canary was not promoted"
kill "$load_pid" 2>/dev/null; wait "$load_pid" 2>/dev/null || true
aviary service show web | grep -E 'stable|rollout' || true
[ "$(aviary -o json service show web | jq -r .stable_version)" = web:1.2 ] || fail "web:1.2 is not stable"

step "aviary deploy web web:1.3 --wait: a bad canary (half its answers are 500) is rolled back by itself"
ip netns exec "$netns" python3 tests/lib/loadgen.py --url http://127.0.0.1:18080/ --seconds 120 --rate 50 \
        >/dev/null 2>&1 &
load_pid=$!
if aviary deploy web web:1.3 --steps "20%,5m,100%" --wait --timeout 5m; then
        fail "the bad canary was not rolled back"
fi
kill "$load_pid" 2>/dev/null; wait "$load_pid" 2>/dev/null || true
aviary rollout status web
[ "$(aviary -o json rollout status web | jq -r .phase)" = Degraded ] || fail "the rollout is not Degraded"
out=$(load 500)
echo "after the rollback, 500 requests → $(jq -c .by_version <<<"$out"), statuses $(jq -c .by_status <<<"$out")"
[ "$(jq -c .by_version <<<"$out")" = '{"1.2":500}' ] || fail "the bad canary still gets traffic: $out"

step "Scale to zero: a service of the fast-booting image falls asleep after 3 s and a request wakes it"
fast=/var/tmp/aviary-fast-image
tests/guest/build-fast-image "$fast"
aviary image push nap:1 --kernel "$fast/vmlinuz" --initrd "$fast/initrd.img" --cmdline "$(cat "$fast/cmdline.template")" \
        --port 8080 >/dev/null
aviary service create nap --image nap:1 --listen 127.0.0.1:18090 --scale-to-zero 3s >/dev/null
asleep() { [ "$(aviary -o json service show nap | jq -r .asleep)" = true ]; }
for _ in $(seq 600); do asleep && break; sleep 0.2; done
asleep || fail "the service did not fall asleep"
aviary instance ls --service nap
# wake_latency: one request through the proxy to the sleeping service; prints its status and time.
wake_latency() {
        ip netns exec "$netns" curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 60 http://127.0.0.1:18090/
}
read -r code secs < <(wake_latency)
[ "$code" = 200 ] || fail "the request that woke the service got $code"
printf 'asleep → one request woke it (cold boot): 200 after %.0f ms\n' "$(echo "$secs * 1000" | bc)"
aviary service update nap --scale-to-zero 1h --wake snapshot >/dev/null
aviary service sleep nap >/dev/null
for _ in $(seq 600); do [ -n "$(ls "$work/state/snapshots" 2>/dev/null)" ] && break; sleep 0.2; done
[ -n "$(ls "$work/state/snapshots" 2>/dev/null)" ] || fail "no snapshot was taken"
read -r code secs < <(wake_latency)
[ "$code" = 200 ] || fail "the request that woke the service from its snapshot got $code"
printf 'asleep with its memory saved → one request woke it (restored): 200 after %.0f ms\n' "$(echo "$secs * 1000" | bc)"
aviary service rm nap >/dev/null

step "The audit log"
aviary events

count=$(aviary -o json image ls web | jq '.items | length')
[ "$count" = 5 ] || fail "expected 5 versions of web, found $count"
printf '\n\033[32mdemo ok: versions pushed, two guests served HTTP, the changed push and the revoked deploy refused, a good canary promoted step by step, a bad one rolled back by itself, a sleeping service woken by a request (cold and from a snapshot)\033[0m\n'
