#!/usr/bin/env bash
# Installs what is missing, builds, runs every test suite, and ends with one line
# "N passed, N failed" counting TAP test points across all suites.
# Usage: tests/run.sh [meson test options, e.g. --suite unit]
set -uo pipefail
cd "$(dirname "$0")/.."

tests/setup.sh ${AVIARY_MESON_OPTIONS:-} || { echo "0 passed, 1 failed"; exit 1; }
meson test -C build --print-errorlogs --num-processes 2 "$@"
status=$?
python3 tests/lib/tap-summary.py build/meson-logs/testlog.json
summary=$?
[ $status -eq 0 ] && [ $summary -eq 0 ]
