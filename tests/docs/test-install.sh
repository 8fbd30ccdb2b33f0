#!/usr/bin/env bash
# What `meson install` gives: the binaries, the systemd units made for the real prefix, the
# sysusers.d line for the socket's group, and man pages that lint clean. The installed units
# are checked at their real paths with `systemd-analyze verify` (in a private mount namespace
# where the install is bind-mounted over the prefix), and every key aviaryd knows is in its
# man page, docs/configuration.md and README's table. TAP.
# Usage: test-install.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$1 src=$2
n=0 failed=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi; }
diag() { sed 's/^/# /'; }

dest=$(mktemp -d /tmp/aviary-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT
prefix=$(meson introspect "$build" --buildoptions | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
DESTDIR=$dest meson install -C "$build" --no-rebuild --quiet >"$dest.log" 2>&1
ok $? "meson install --destdir works" || diag <"$dest.log"
rm -f "$dest.log"
root=$dest$prefix

for f in sbin/aviaryd bin/aviary lib/systemd/system/aviaryd.service lib/systemd/system/aviaryd.socket \
        lib/sysusers.d/aviary.conf share/man/man1/aviary.1 share/man/man8/aviaryd.8 share/man/man5/aviaryd.conf.5; do
        [ -e "$root/$f" ]
        ok $? "installed: $prefix/$f"
done

exec_start=$(sed -n 's/^ExecStart=//p' "$root/lib/systemd/system/aviaryd.service")
[ "$exec_start" = "$prefix/sbin/aviaryd" ]
ok $? "the unit starts the installed binary ($exec_start)"
grep -q '@' "$root/lib/systemd/system/aviaryd.service" "$root/lib/systemd/system/aviaryd.socket"
[ $? -ne 0 ]
ok $? "no template placeholder is left in the units"
grep -qx 'g aviary -' "$root/lib/sysusers.d/aviary.conf"
ok $? "sysusers.d makes the socket's group"

if [ "$(id -u)" = 0 ] && command -v systemd-analyze >/dev/null; then
        out=$(unshare -m sh -c "mount --bind '$root' '$prefix' && systemd-analyze verify \
                '$prefix/lib/systemd/system/aviaryd.socket' '$prefix/lib/systemd/system/aviaryd.service'" 2>&1)
        ok $? "systemd-analyze verify is clean on the installed units (binaries and man pages found)"
        [ -z "$out" ] || echo "$out" | diag
else
        ok 1 "systemd-analyze verify needs root (a private mount namespace) and systemd"
fi

for page in "$root"/share/man/man*/*; do
        out=$(mandoc -T lint -W warning "$page" 2>&1)
        ok $? "mandoc -T lint: $(basename "$page") has no warning"
        [ -z "$out" ] || echo "$out" | diag
        out=$(MANWIDTH=80 man -l "$page" 2>/dev/null | head -3)
        case $out in *'#'*|*'**'*) ok 1 "$(basename "$page") renders as a man page, not markdown" ;;
        *) ok 0 "$(basename "$page") renders as a man page, not markdown" ;; esac
done

# Every key aviaryd knows, from its own --help, is documented where people look.
keys=$("$build/daemon/aviaryd" --help | sed -n '/^Config file keys:/,$p' | sed 's/^Config file keys://' | tr -s ' \n' '\n' | grep .)
[ -n "$keys" ]
ok $? "aviaryd --help lists its config keys"
for doc in "$src/docs/man/aviaryd.conf.5" "$src/docs/configuration.md" "$src/README.md"; do
        missing=""
        for k in $keys; do
                case $doc in
                *.5) grep -qE "^\.It Cm $k( |$)|Cm $k No|, Cm $k " "$doc" || missing="$missing $k" ;;
                *) grep -q "\`$k\`" "$doc" || missing="$missing $k" ;;
                esac
        done
        [ -z "$missing" ]
        ok $? "every config key is in $(basename "$doc")${missing:+ (missing:$missing)}"
done

echo "1..$n"
[ $failed = 0 ]
