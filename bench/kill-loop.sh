#!/usr/bin/env bash
# Kill loop, the long run: tests/integration/test-kill-loop.py with many more SIGKILLs than CI
# does (40 and 5). The API layer (runtime = off, client threads writing blobs, versions,
# services and rollouts) gets ITERATIONS kills; the guest layer (a 2-replica service and a
# rollout in a network namespace of its own, every other kill inside a domain start) gets
# ITERATIONS/10, and runs only as root. Every check of the test runs after every kill; this
# prints one summary line per layer and the failed checks, if any.
# Usage: bench/kill-loop.sh [ITERATIONS]   (default 200; 1-5000)
#        AVIARY_KILL_LOOP_SEED=N repeats a run's random choices.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
iterations=${1:-200}
if ! [[ $iterations =~ ^[0-9]+$ ]] || ((iterations < 1 || iterations > 5000)); then
        echo "usage: $0 [ITERATIONS]   (1-5000, default 200)" >&2
        exit 2
fi
[ -x build/daemon/aviaryd ] || tests/setup.sh
export AVIARYD=$PWD/build/daemon/aviaryd AVIARY_SOURCE_ROOT=$PWD PYTHONPATH=$PWD/tests/lib

work=$(mktemp -d /tmp/aviary-kill-loop.XXXXXX)
trap 'rm -rf "$work"' EXIT
seed_args=()
[ -n "${AVIARY_KILL_LOOP_SEED:-}" ] && seed_args=(--seed "$AVIARY_KILL_LOOP_SEED")
failed=0

say() { printf 'kill-loop: %s\n' "$*" >&2; }

# run LAYER KILLS: runs the test, then prints its summary line (and its failures to stderr).
run() {
        local layer=$1 kills=$2 rc=0 start end
        say "$layer layer: $kills kills..."
        start=$(date +%s.%N)
        python3 tests/integration/test-kill-loop.py --layer "$layer" --iterations "$kills" "${seed_args[@]}" \
                >"$work/$layer.tap" 2>&1 || rc=$?
        end=$(date +%s.%N)
        local checks bad summary seed
        checks=$(grep -cE '^(not )?ok ' "$work/$layer.tap" || true)
        bad=$(grep -cE '^not ok ' "$work/$layer.tap" || true)
        summary=$(sed -n 's/^# SUMMARY //p' "$work/$layer.tap" | tail -n 1)
        seed=$(sed -n 's/^# seed \([0-9]*\):.*/\1/p' "$work/$layer.tap" | tail -n 1)
        printf '%-7s %6d %9.1f %7d %7d  seed=%s %s\n' "$layer" "$kills" "$(echo "$end - $start" | bc)" \
                "$checks" "$bad" "${seed:-?}" "$summary"
        if ((rc != 0 || bad > 0)); then
                failed=1
                say "$layer layer failed (exit $rc); its failed checks:"
                grep -E -A8 '^not ok |^Bail out' "$work/$layer.tap" | head -n 80 >&2 || true
                ((checks > 0)) || tail -n 40 "$work/$layer.tap" >&2
        fi
}

printf '%-7s %6s %9s %7s %7s  %s\n' layer kills seconds checks failed details
run api "$iterations"
if [ "$(id -u)" -eq 0 ]; then
        guest_kills=$((iterations / 10))
        ((guest_kills >= 1)) || guest_kills=1
        run guests "$guest_kills"
else
        say "guest layer skipped: it needs root (network namespace, libvirt)"
fi
exit "$failed"
