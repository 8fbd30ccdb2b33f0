#!/usr/bin/env bash
# What in the domain XML costs start time, and what the subreaper does to a destroy:
# bench/domain-start.c (aviaryd's own XML and variants through libvirt's embedded QEMU driver,
# interleaved rounds, medians) four times, one process each: as aviaryd runs (the child
# subreaper of its QEMUs), without the subreaper, with QEMU's seccomp sandbox off, and with
# libvirt's default of reading the guest CPU back one qom-get per property (--cpu-props). Runs in a
# network namespace of its own with a bridge for the NIC. Root only; the test guest image.
# Usage: bench/domain-start.sh [ROUNDS] [VARIANT...]   (default 3 rounds, every variant; BUILD=dir)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
rounds=${1:-3}
shift || true
build=${BUILD:-build}
image=${AVIARY_GUEST_IMAGE_DIR:-/var/tmp/aviary-guest-image}
[ -x "$build/bench/domain-start" ] || ninja -C "$build" >/dev/null
tests/guest/build-image "$image" >/dev/null
ns=aviary-dstart-$$
work=$(mktemp -d /tmp/aviary-dstart.XXXXXX)
cleanup() {
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns delete "$ns" 2>/dev/null || true
        rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" ip link add br0 type bridge
ip netns exec "$ns" ip addr add 10.99.0.1/24 dev br0
ip netns exec "$ns" ip link set br0 up
for mode in "--reaper" "" "--reaper --sandbox-off" "--reaper --cpu-props"; do
        root="$work/root$(echo "$mode" | tr -d ' -')"
        mkdir -p "$root"
        echo "== domain-start $mode" >&2
        # shellcheck disable=SC2086 # MODE is words on purpose
        ip netns exec "$ns" "$build/bench/domain-start" "$root" "$image/vmlinuz" "$image/initrd.img" br0 "$rounds" \
                $mode "$@" 2>>"$work/rounds.log" | tee -a "$work/out"
        echo
done
grep '^round' "$work/rounds.log" >&2 || true
