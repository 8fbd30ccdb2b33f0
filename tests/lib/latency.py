#!/usr/bin/env python3
"""A steady request stream for the guest tests, run inside the test's network namespace:
requests one after the other on one keep-alive connection (a new one after an error) for
SECONDS (bounded), with a pause of GAP seconds between them. Prints one JSON summary: requests,
failed (no 200), the worst and the 99th-percentile latency in ms, and the first errors."""
import argparse
import http.client
import json
import signal
import time
import urllib.parse


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--gap", type=float, default=0.01)
    a = p.parse_args()
    u = urllib.parse.urlsplit(a.url)
    deadline = [time.monotonic() + min(a.seconds, 600)]
    # SIGTERM ends the stream early, with its summary.
    signal.signal(signal.SIGTERM, lambda *_: deadline.__setitem__(0, 0))
    conn, latencies, failed, errors = None, [], 0, []
    while time.monotonic() < deadline[0]:
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
            conn.request("GET", u.path or "/")
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                failed += 1
                errors.append(f"HTTP {r.status}")
        except Exception as e:  # noqa: BLE001 - every failure counts, whatever it is
            failed += 1
            errors.append(repr(e))
            conn = None
        latencies.append((time.monotonic() - t0) * 1000)
        time.sleep(a.gap)
    latencies.sort()
    print(json.dumps({"requests": len(latencies), "failed": failed,
                      "max_ms": round(latencies[-1], 1) if latencies else None,
                      "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 1) if latencies else None,
                      "errors": errors[:5]}))


if __name__ == "__main__":
    main()
