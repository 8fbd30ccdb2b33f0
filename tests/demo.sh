#!/usr/bin/env bash
# The main job: install, build, start aviaryd on a scratch state directory inside a network
# namespace made for the demo (its guest bridge lives there), walk through pushing, listing,
# refusing and revoking image versions with the CLI and with plain curl, then run a service of
# two real QEMU guests and talk to them. Exits 0 only when every step behaved as it should.
set -euo pipefail
cd "$(dirname "$0")/.."

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

step "The audit log"
aviary events

count=$(aviary -o json image ls web | jq '.items | length')
[ "$count" = 3 ] || fail "expected 3 versions of web, found $count"
printf '\n\033[32mdemo ok: 3 versions pushed, two guests served HTTP, the changed push and the revoked deploy refused\033[0m\n'
