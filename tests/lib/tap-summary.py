#!/usr/bin/env python3
"""Reads meson's testlog.json files (one per build: plain, sanitized) and bare TAP streams
(FILE.tap) and prints "N passed, N failed" over their TAP test points.
A test program that failed without reporting a failing point (crash, timeout, bad plan)
counts as one more failure."""
import json
import re
import sys

passed = failed = 0
lines = []
for path in sys.argv[1:]:
    if path.endswith(".tap"):  # a bare TAP stream (the fuzz replay), counted as one test
        with open(path, encoding="utf-8") as f:
            out = f.read()
        lines.append(json.dumps({"name": path, "stdout": out,
                                 "result": "OK" if "not ok" not in out and re.search(r"^1\.\.\d+", out, re.M)
                                 else "FAIL"}))
        continue
    with open(path, encoding="utf-8") as f:
        lines += f.readlines()
for line in lines:
    t = json.loads(line)
    out = t.get("stdout") or ""
    ok = len(re.findall(r"^ok\b", out, re.M))
    bad = len(re.findall(r"^not ok\b", out, re.M))
    passed += ok
    failed += bad
    if t.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP") and bad == 0:
        failed += 1
        print(f"# {t.get('name')}: {t.get('result')} without a failing test point", file=sys.stderr)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
