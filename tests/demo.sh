#!/usr/bin/env bash
# The main job: install, build, start aviaryd on a scratch state directory, and walk through
# pushing, listing, refusing and revoking image versions with the CLI and with plain curl.
# Exits 0 only when every step behaved as it should.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/setup.sh ${AVIARY_MESON_OPTIONS:-}

work=$(mktemp -d /tmp/aviary-demo.XXXXXX)
sock=$work/aviaryd.sock
aviaryd=build/daemon/aviaryd
aviary() { build/client/aviary --socket "$sock" "$@"; }
api() { curl -sS --unix-socket "$sock" "$@"; }

cleanup() {
        [ -n "${daemon_pid:-}" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
        rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\033[31mdemo failed: %s\033[0m\n' "$*" >&2; exit 1; }

step "Starting aviaryd (state $work/state, socket $sock)"
"$aviaryd" --state-dir "$work/state" --socket "$sock" 2>"$work/aviaryd.log" &
daemon_pid=$!
for _ in $(seq 50); do api -f http://aviary/v1/health >/dev/null 2>&1 && break; sleep 0.1; done
api -f http://aviary/v1/health || fail "aviaryd did not come up: $(cat "$work/aviaryd.log")"
aviary version

step "Making two stand-in kernels and an initrd (the registry stores bytes; guests arrive in part 2)"
head -c 3000000 /dev/urandom >"$work/vmlinuz-1"
head -c 3000000 /dev/urandom >"$work/vmlinuz-2"
head -c 1000000 /dev/urandom >"$work/initrd.img"

step "aviary image push web:1.0 (uploads kernel and initrd, then creates the version)"
aviary image push web:1.0 --kernel "$work/vmlinuz-1" --initrd "$work/initrd.img" \
        --cmdline 'console=ttyS0 ip={ip}::{gateway}:{netmask}::eth0:off app.version={version}' \
        --memory 128 --vcpus 1 --port 8080 --label team=edge

step "aviary image push web:1.1 (the initrd is already there: only the new kernel is uploaded)"
aviary image push web:1.1 --kernel "$work/vmlinuz-2" --initrd "$work/initrd.img" \
        --cmdline 'console=ttyS0 ip={ip}::{gateway}:{netmask}::eth0:off app.version={version}' --port 8080

step "Pushing web:1.0 again with another kernel is refused: versions are immutable"
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

step "A service on web:1.1, then revoking web:1.0"
aviary service create web --image web:1.1 --replicas 2 --listen 127.0.0.1:18080
aviary image revoke web:1.0 --reason "demo: pretend CVE"
if aviary service update web --image web:1.0; then
        fail "a revoked version was deployed"
fi
aviary service ls

step "The audit log"
aviary events

count=$(aviary -o json image ls web | jq '.items | length')
[ "$count" = 3 ] || fail "expected 3 versions of web, found $count"
printf '\n\033[32mdemo ok: 3 versions pushed, the changed push and the revoked deploy refused\033[0m\n'
