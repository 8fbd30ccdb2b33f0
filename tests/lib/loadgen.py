#!/usr/bin/env python3
"""A small, bounded HTTP load generator for the guest tests, run inside the test's network
namespace: COUNT requests (or a steady RATE for SECONDS) with keep-alive connections, counting
answers by status and by the guest version (the X-Guest-Version header). With --user-header,
requests are spread over USERS simulated users (PER-USER requests each) whose id goes in that
header (or, with --user-cookie, in that cookie), and the versions each user saw are reported;
--header adds a fixed header to every request. Answers are also counted by guest instance
(X-Guest-Instance). Prints one JSON summary (also when SIGTERM ends it early)."""
import argparse
import http.client
import json
import signal
import threading
import time
import urllib.parse
from collections import Counter


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--seconds", type=float, default=0)
    p.add_argument("--rate", type=float, default=50)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--user-header")
    p.add_argument("--user-cookie")
    p.add_argument("--header", action="append", default=[], help="NAME: VALUE, sent with every request")
    p.add_argument("--users", type=int, default=0)
    p.add_argument("--per-user", type=int, default=1)
    a = p.parse_args()
    u = urllib.parse.urlsplit(a.url)
    path = u.path or "/"
    lock = threading.Lock()
    by_status, by_version, by_instance, users = Counter(), Counter(), Counter(), {}
    fixed = dict(h.split(":", 1) for h in a.header)
    fixed = {k.strip(): v.strip() for k, v in fixed.items()}
    errors = [0]
    jobs = []
    if a.user_header or a.user_cookie:
        for n in range(a.users):
            jobs += [f"user-{n}"] * a.per_user
    else:
        jobs = [None] * a.count
    next_job = [0]
    deadline = time.monotonic() + a.seconds if a.seconds else None
    # SIGTERM ends the load early, still with its summary: a test stops it when it has seen enough.
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    interval = a.concurrency / a.rate if a.seconds else 0

    def take():
        with lock:
            if stopped.is_set():
                return False, None
            if deadline is not None:
                return (True, None) if time.monotonic() < deadline else (False, None)
            if next_job[0] >= len(jobs):
                return False, None
            job = jobs[next_job[0]]
            next_job[0] += 1
            return True, job

    def worker():
        conn = None
        while True:
            more, user = take()
            if not more:
                break
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
            headers = dict(fixed)
            if user and a.user_header:
                headers[a.user_header] = user
            elif user:
                headers["Cookie"] = f"theme=dark; {a.user_cookie}={user}"
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                version = resp.getheader("X-Guest-Version") or "-"
                instance = resp.getheader("X-Guest-Instance") or "-"
                with lock:
                    by_status[resp.status] += 1
                    by_version[version] += 1
                    by_instance[instance] += 1
                    if user:
                        users.setdefault(user, []).append(version)
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                if conn:
                    conn.close()
                conn = None
            if interval:
                time.sleep(interval)

    threads = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"requests": sum(by_status.values()), "by_status": {str(k): v for k, v in by_status.items()},
                      "by_version": dict(by_version), "by_instance": dict(by_instance), "errors": errors[0],
                      "users": users}))


if __name__ == "__main__":
    main()
