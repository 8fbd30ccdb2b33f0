#!/usr/bin/env bash
# The contract, checked by tools we did not write: Redocly's linter (recommended rules; the
# findings ignored on purpose are in .redocly.lint-ignore.yaml, each with its reason) and
# APIDevTools' swagger-parser validator. Both pinned in tests/api/node (tests/setup.sh runs
# npm ci there). TAP.
set -uo pipefail
src=$1
node_dir=$src/tests/api/node
n=0 failed=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi; }

[ -x "$node_dir/node_modules/.bin/redocly" ]
ok $? "redocly is installed (npm ci in tests/api/node)"
cd "$src"
totals=$("$node_dir/node_modules/.bin/redocly" lint api/openapi.yaml --format=json 2>/dev/null |
        python3 -c 'import json, sys; t = json.load(sys.stdin)["totals"]; print(t["errors"], t["warnings"])')
[ "$totals" = "0 0" ]
ok $? "redocly lint api/openapi.yaml: no error, no warning (errors and warnings: ${totals:-none})"
out=$(cd "$node_dir" && node -e "require('@apidevtools/swagger-parser').validate('$src/api/openapi.yaml')
        .then(() => console.log('valid')).catch(e => { console.error(e.message); process.exit(1); })" 2>&1)
ok $? "swagger-parser validates api/openapi.yaml"
[ "$out" = valid ] || echo "$out" | head -30 | sed 's/^/# /'
echo "1..$n"
[ $failed = 0 ]
