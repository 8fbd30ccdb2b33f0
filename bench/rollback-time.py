#!/usr/bin/env python3
"""How long a bad canary gets traffic: the time from the canary starting to fail (its first
requests, at the first weight step) to its weight being 0 again, measured from aviaryd's own
events (rollout.step, rollout.abort). Baseline, side by side: the least time the analysis
settings allow, (failureLimit + 1) x interval — a detector that needs that many failed
windows cannot be faster. Each round uses a canary that answers every request with 500
(app.error_rate=1.0) under a steady load through the service's proxy.

Usage: sudo bench/rollback-time.py [ROUNDS]   (default 3; about 1 minute per round under TCG)
Runs everything inside a network namespace it creates (tests/lib/guesttest.py); needs root,
QEMU, libvirt and a build (tests/setup.sh)."""
import datetime
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests/lib"))
os.environ.setdefault("AVIARY_SOURCE_ROOT", ROOT)
os.environ.setdefault("AVIARYD", os.path.join(ROOT, "build/daemon/aviaryd"))
os.environ.setdefault("AVIARY", os.path.join(ROOT, "build/client/aviary"))

import aviarytest  # noqa: E402
from guesttest import GuestTest, live, push, wait_for  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
SETTINGS = [("default analysis (5s, failureLimit 1)", {}, 5.0 * 2),
            ("fast analysis (1s, minSampleSize 10, failureLimit 0)",
             {"interval": "1s", "minSampleSize": 10, "failureLimit": 0}, 1.0)]
URL = "http://127.0.0.1:18080/"


def ts(s):
    return datetime.datetime.strptime(s.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def bench(d):
    push(d, "good")
    push(d, "bad", "app.error_rate=1.0")
    # The health check asks /health, which the test app answers even when it fails all else:
    # the bad canary becomes ready and gets its share, as a build that breaks only its real
    # work would.
    r = d.request("POST", "/v1/services", json_body={"name": "web", "replicas": 2, "listen": "127.0.0.1:18080",
                                                     "stable_version": "app:good",
                                                     "health_check": {"path": "/health"}})
    assert r.status == 201, repr(r)
    assert wait_for("2 ready", lambda: len(live(d, "web")) == 2, 180), "the stable guests did not start"
    results = []
    for name, analysis, floor in SETTINGS:
        times = []
        for n in range(ROUNDS):
            bg = gt.load_background(URL, 120, rate=100)
            r = d.request("POST", "/v1/services/web/rollouts", json_body={"version": "app:bad", "strategy": {
                "canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "10m"}}], "canaryReplicas": 1,
                           "analysis": analysis, "abortScaleDownDelay": "0s"}}})
            assert r.status == 201, repr(r)
            rid = r.json["id"]
            done = wait_for("Degraded", lambda: d.request("GET", f"/v1/services/web/rollouts/{rid}").json["phase"]
                            == "Degraded", 240)
            bg.kill()
            bg.wait()
            assert done, "the bad canary was not rolled back"
            events = d.request("GET", "/v1/events?resource=service/web&limit=1000").json["items"]
            mine = [e for e in events if (e.get("detail") or {}).get("rollout") == rid]
            step = next(e for e in mine if e["action"] == "rollout.step")
            abort = next(e for e in mine if e["action"] == "rollout.abort")
            times.append(ts(abort["time"]) - ts(step["time"]))
            log(f"{name}: round {n + 1}: {times[-1]:.2f} s ({abort['detail'].get('reason')})")
            wait_for("canary gone", lambda: not [i for i in live(d, "web") if i["version"].endswith(":bad")], 60)
        results.append((name, statistics.median(times), floor))
    print(f"bad canary: time from its first traffic to weight 0, median of {ROUNDS} rounds (TCG guests)")
    print(f"{'analysis':<55} {'aviaryd s':>10} {'floor s':>8} {'ratio':>6}")
    for name, t, floor in results:
        print(f"{name:<55} {t:>10.2f} {floor:>8.2f} {t / floor:>6.2f}")


gt = GuestTest("bench-rb")
if os.geteuid() != 0:
    sys.exit("needs root (network namespaces, libvirt)")
if not os.path.exists(os.environ["AVIARYD"]):
    subprocess.run([os.path.join(ROOT, "tests/setup.sh")], check=True)
aviarytest.TAP.out = sys.stderr  # the image build's check is progress, not a result
gt.run(bench)
