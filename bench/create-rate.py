#!/usr/bin/env python3
"""Create rate against raw libvirt on test:///default (no QEMU): how fast aviaryd turns a
service's replicas into running domains, against bench/libvirt-create (virDomainCreateXML in
a loop on aviaryd's own domain XML). Two shapes: one POST of a 50-replica service, and 50 POSTs
of 1-replica services. aviaryd runs in a network namespace of its own (it makes its bridge
there). Rounds alternate raw and aviaryd; medians. Root only.
Usage: bench/create-rate.py [ROUNDS]   (BUILD=build-dp for another build directory, N=200 for 200 domains)"""
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
os.environ.setdefault("AVIARYD", os.path.join(BUILD, "daemon", "aviaryd"))
from aviarytest import Daemon  # noqa: E402

MAX_REPLICAS = 64
N = int(os.environ.get("N", "50"))  # domains (N=200: where a pass per POST over every service shows)


def raw_rate():
    out = subprocess.run([os.path.join(BUILD, "bench", "libvirt-create"), str(N)], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip())


def booted(d):
    """How many instances have a running domain, and when aviaryd recorded the last of them as
    running (epoch seconds: libvirt had returned for it on aviaryd's loop)."""
    r = d.request("GET", "/v1/instances?limit=1000")
    done = [i for i in r.json["items"] if i["state"] in ("booting", "ready")]
    last = max((rfc3339(i["timings"]["running_at"]) for i in done), default=0.0)
    return len(done), last


def rfc3339(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def fsync_floor(directory):
    """Domains per second if each of N creates cost nothing but the one fdatasync its
    acknowledged POST needs (a 4 KiB write and fdatasync on the state directory's file system)."""
    path = os.path.join(directory, "fsync-floor")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        t0 = time.monotonic()
        for i in range(N):
            os.pwrite(fd, b"x" * 4096, i * 4096)
            os.fdatasync(fd)
        return N / (time.monotonic() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


def aviaryd_rate(shape):
    ns = f"aviary-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        with Daemon(runtime=True, wrapper=["ip", "netns", "exec", ns], ready_timeout=60,
                    config={"libvirt_uri": "test:///default", "accel": "tcg", "subnet": "10.88.0.0/16",
                            "boot_timeout": "1h"}) as d:
            kernel = d.client.put_blob(b"not a kernel: test:///default boots nothing").json["digest"]
            r = d.request("POST", "/v1/images/app/versions",
                          json_body={"version": "1.0", "kernel": kernel, "cmdline": "console=ttyS0", "memory_mib": 128,
                                     "port": 8080})
            assert r.status in (200, 201), r.json
            floor = fsync_floor(d.state_dir)
            t0 = time.time()
            if shape == "one":
                r = d.request("POST", "/v1/services", json_body={"name": "web", "stable_version": "app:1.0",
                                                                 "replicas": N})
                assert r.status == 201, r.json
            else:
                # One keep-alive connection and no contract check of each answer (the test
                # client's, a few ms of Python per request): the client's own cost stays small.
                conn = d.client.connection()
                for i in range(N):
                    body = json.dumps({"name": f"web{i}", "stable_version": "app:1.0", "replicas": 1})
                    conn.request("POST", "/v1/services", body=body, headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    text = resp.read()
                    assert resp.status == 201, text
                conn.close()
                print(f"  {N} POSTs answered in {(time.time() - t0) * 1000:.1f} ms", file=sys.stderr)
            # The poll competes with the work on aviaryd's loop, so not too often; the end is
            # when aviaryd recorded the last domain running, not when the poll saw it.
            while (n := booted(d))[0] < N:
                if time.time() - t0 > 120:
                    raise RuntimeError(f"only {n[0]} of {N} domains after 120 s")
                time.sleep(0.02)
            return N / (n[1] - t0), floor
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    shapes = ("one", "many") if N <= MAX_REPLICAS else ("many",)  # a service has at most 64 replicas
    raw, floor, rates = [], [], {s: [] for s in shapes}
    for i in range(rounds):
        raw.append(raw_rate())
        for shape in shapes:
            rate, f = aviaryd_rate(shape)
            rates[shape].append(rate)
            floor.append(f)
        print(f"round {i + 1}: raw {raw[-1]:.0f}/s, " +
              "".join(f"{label(s)}: {rates[s][-1]:.0f}/s, " for s in shapes) + f"fdatasync floor {floor[-1]:.0f}/s",
              file=sys.stderr)
    r, f = statistics.median(raw), statistics.median(floor)
    med = {s: statistics.median(rates[s]) for s in shapes}
    print(f"create rate on test:///default, {N} domains, {rounds} rounds, medians")
    print(f"  raw virDomainCreateXML loop      {r:8.0f} /s")
    if "one" in med:
        print(f"  aviaryd, 1 POST of {N} replicas   {med['one']:8.0f} /s   ratio {med['one'] / r:.2f}")
    else:
        print(f"  aviaryd, 1 POST of {N} replicas   (not run: a service has at most {MAX_REPLICAS} replicas)")
    m = med["many"]
    print(f"  aviaryd, {N} POSTs of 1 replica  {m:8.0f} /s   ratio {m / r:.2f}   ({m / f:.2f} of the fdatasync floor)")
    print(f"  fdatasync floor: {N} x (4 KiB write + fdatasync)  {f:8.0f} /s   ratio {f / r:.2f}"
          f"   (each acknowledged POST needs one)")
    print(json.dumps({"raw": r, "one_post": med.get("one"), "many_posts": m, "fdatasync_floor": f}))


def label(shape):
    return f"1 POST x {N}" if shape == "one" else f"{N} POSTs x 1"


if __name__ == "__main__":
    main()
