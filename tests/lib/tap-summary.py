#!/usr/bin/env python3
"""Reads meson's testlog.json files (one per build: plain, sanitized) and bare TAP streams
(FILE.tap) and prints "N passed, N failed" over their TAP test points.
A test program that failed without reporting a failing point (crash, timeout, bad plan)
counts as one more failure. Skipped points and skipped programs are reported on stderr; with
AVIARY_REQUIRE_ALL=1 (CI sets it) they count as failures, so a run that could not do its guest,
namespace or mount tests cannot pass as green."""
import os
import json
import re
import sys

passed = failed = skipped = 0
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
    skips = len(re.findall(r"^ok\b.*#\s*skip", out, re.M | re.I))
    skipped += skips
    ok = len(re.findall(r"^ok\b", out, re.M)) - skips
    bad = len(re.findall(r"^not ok\b", out, re.M))
    passed += ok
    failed += bad
    if t.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP") and bad == 0:
        failed += 1
        print(f"# {t.get('name')}: {t.get('result')} without a failing test point", file=sys.stderr)
    if t.get("result") == "SKIP" or re.search(r"^1\.\.0\b.*#\s*skip", out, re.M | re.I):
        skipped += 1
        print(f"# {t.get('name')}: skipped", file=sys.stderr)
if skipped:
    print(f"# {skipped} skipped", file=sys.stderr)
    if os.environ.get("AVIARY_REQUIRE_ALL") == "1":
        failed += skipped
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
