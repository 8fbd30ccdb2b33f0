#!/usr/bin/env bash
# Set-up shared by the demo and the test run: installs what aviary needs from Debian's
# archive (on a bare Debian 12 machine too) and builds it into build/. (clang and its
# runtime are for the fuzz harnesses and their sanitizer replay: tests/fuzz/; zsh and fish
# for test-cli, which loads the CLI's completion scripts in them.)
# Usage: tests/setup.sh [extra meson options...]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

packages=(
        gcc libc6-dev meson ninja-build pkg-config
        libmicrohttpd-dev libjansson-dev libsqlite3-dev libsystemd-dev libcurl4-openssl-dev libssl-dev
        libnl-3-dev libnl-route-3-dev libvirt-dev libxml2-dev libhttp-parser-dev
        qemu-system-x86 libvirt-daemon-driver-qemu libvirt-daemon-system libvirt-clients
        iproute2 procps cpio gzip xz-utils zstd binutils mount
        python3 python3-yaml curl sqlite3 jq bc systemd openssl util-linux mandoc man-db
        clang libclang-rt-14-dev
        zsh fish
        nodejs python3-jsonschema prometheus
        chromium
)

# npm, for the contract's linters: Debian's nodejs comes without it (it is the package npm); a
# nodejs that bundles it (NodeSource's) conflicts with Debian's npm, so only when it is missing.
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
        echo "==> installing: ${missing[*]}"
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -q
        $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ -d build ]; then
        meson setup --reconfigure build "$@" >/dev/null
else
        meson setup build "$@" >/dev/null
fi
ninja -C build

# The contract's linters (tests/api/node: @redocly/cli, swagger-parser), pinned by its lock.
if [ ! -x tests/api/node/node_modules/.bin/redocly ] ||
        [ tests/api/node/package-lock.json -nt tests/api/node/node_modules/.package-lock.json ]; then
        command -v npm >/dev/null || { echo "setup: npm is missing (Debian package nodejs/npm)" >&2; exit 1; }
        (cd tests/api/node && npm ci --no-audit --no-fund --loglevel=error)
fi

# The test guest image (Debian's kernel + our one-program initramfs), cached in
# /var/tmp/aviary-guest-image: built here, with the other downloads, so no test fetches anything.
tests/guest/build-image "${AVIARY_GUEST_IMAGE_DIR:-/var/tmp/aviary-guest-image}"
# The fast-booting one (a Lupine-style kernel from Debian's linux-source-6.1, built here: a few
# minutes once, then cached by its inputs in /var/tmp/aviary-fast-image) for the scale-to-zero
# tests, the demo and bench/wake.sh.
tests/guest/build-fast-image "${AVIARY_FAST_IMAGE_DIR:-/var/tmp/aviary-fast-image}"
