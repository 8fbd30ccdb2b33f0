#!/usr/bin/env python3
"""Proxied latency while guests start, with the stall figure: a 2-replica service serves a steady
stream through its proxy (one keep-alive connection, a request every 10 ms, inside a network
namespace of its own) for 20 s idle, then while the service scales to 6 (libvirt starts 4
domains). Prints the idle p99, the worst latency during the starts, and the stall figure: that
worst minus the idle p99 (the goal: at most 50 ms). Root only; test guests (tests/guest).

The baseline, in the same run and at the same time: the same stream straight to one of the two
serving guests (no aviaryd on the path). Four TCG guests booting take both CPUs of a small host,
so the serving guests answer late too; the guest's own stall is what no proxy can hide, and the
difference is what aviaryd adds.
Usage: bench/proxy-stall.py   (BUILD=build-dp for another build directory)"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
os.environ.setdefault("AVIARYD", os.path.join(BUILD, "daemon", "aviaryd"))
os.environ.setdefault("AVIARY_SOURCE_ROOT", ROOT)
from guesttest import GuestTest, live, push, wait_for  # noqa: E402

LATENCY = os.path.join(ROOT, "tests", "lib", "latency.py")
gt = GuestTest("stall")
result = {}


def stream(seconds, url="http://127.0.0.1:18080/"):
    return subprocess.Popen(["ip", "netns", "exec", gt.netns, sys.executable, LATENCY, "--url",
                             url, "--seconds", str(seconds), "--gap", "0.01"],
                            stdout=subprocess.PIPE, text=True)


def summary(p):
    return json.loads(p.communicate()[0].strip().splitlines()[-1])


def body(d):
    push(d, "1.0")
    d.request("POST", "/v1/services", json_body={"name": "web", "stable_version": "app:1.0", "replicas": 2,
                                                 "listen": "127.0.0.1:18080"})
    if not wait_for("2 ready", lambda: len(live(d, "web")) == 2, 180):
        raise RuntimeError("the 2 guests did not come up")
    guest = f"http://{live(d, 'web')[0]['ip']}:8080/"
    idle, idle_guest = stream(20), stream(20, guest)
    result["idle"], result["idle_guest"] = summary(idle), summary(idle_guest)
    busy, busy_guest = stream(300), stream(300, guest)
    time.sleep(1)
    t0 = time.monotonic()
    d.request("PATCH", "/v1/services/web", json_body={"replicas": 6})
    wait_for("6 ready", lambda: len(live(d, "web")) == 6, 240)
    result["scale_s"] = time.monotonic() - t0
    time.sleep(1)
    busy.terminate()
    busy_guest.terminate()
    result["busy"], result["busy_guest"] = summary(busy), summary(busy_guest)


gt.run(body)
for name, suffix in (("through aviaryd's proxy", ""), ("straight to a serving guest", "_guest")):
    i, b = result["idle" + suffix], result["busy" + suffix]
    print(f"{name}:")
    print(f"  idle (20 s): {i['requests']} requests, p99 {i['p99_ms']} ms, worst {i['max_ms']} ms, {i['failed']} failed")
    print(f"  while 4 guests start ({result['scale_s']:.1f} s): {b['requests']} requests, p99 {b['p99_ms']} ms, "
          f"worst {b['max_ms']} ms, {b['failed']} failed")
    result["stall" + suffix] = b["max_ms"] - i["p99_ms"]
    print(f"  stall figure (worst while starting - idle p99): {result['stall' + suffix]:.1f} ms")
print(f"the proxy's own share (proxied stall - the guest's own stall): {result['stall'] - result['stall_guest']:.1f} ms")
