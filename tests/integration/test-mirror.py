#!/usr/bin/env python3
"""Shadow traffic (a rollout's mirror step) with real guests, inside a network namespace this test
creates (tests/lib/guesttest.py). One daemon, one service of one stable guest on 127.0.0.1:18080
in that namespace; every answer names its guest's version (X-Guest-Version).

- A canary that answers 500 on half its requests (app.error_rate=0.5), mirrored at 100% with
  background analysis on: every client answer is stable's 200, the canary's mirrored success
  rate is about 0.5, and analysis aborts the rollout (abortReason.kind analysis) before any
  weight is set: the weight is 0 throughout and the public listener served the canary nothing.
- A canary that takes 2 s per answer (app.delay_ms=2000), mirrored at 100%: the client's p99
  with copies going is at most 1.2x its p99 without, both measured here, interleaved (A B A B
  ... A, four B of 8 s each, the steps moved by promote; each B against the mean of the two A around it,
  median of the four ratios); copies past the bound are dropped and counted, in the traffic view and /metrics.

The service's health check path is /fault/health?mode=ok: a control the app answers at once
whatever app.delay_ms (tests/guest/README.md) and a no-op here, so the slow canary's 2 s apply to
the traffic (GET /), not to its readiness probe (aviaryd's is 500 ms)."""
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import Counter

from aviarytest import aviary_path, diag, is_, like, main, ok
from guesttest import GuestTest, push, traffic, wait_for

gt = GuestTest("mirror")
URL = "http://127.0.0.1:18080/"
LATENCY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib", "latency.py")
HEALTH = {"path": "/fault/health?mode=ok", "interval": "1s", "timeout": "1s", "rise": 1, "fall": 3}


def rollout(d):
    r = d.request("GET", "/v1/services/web/rollouts/current")
    return r.json if r.status == 200 else {}


def wait_rollout(d, what, pred, timeout):
    return wait_for(what, lambda: (lambda ro: ro if ro and pred(ro) else None)(rollout(d)), timeout)


def start(d, version, strategy):
    r = d.request("POST", "/v1/services/web/rollouts", json_body={"version": version, "strategy": strategy})
    ok(r.status == 201, f"a rollout to {version} is accepted", repr(r))
    return r.json if r.status == 201 else {}


def mirrored(d):
    return traffic(d, "web").get("mirrored") or {}


def settled(d, gap=0.5, timeout=15):
    """The traffic view's mirrored counts once two looks GAP seconds apart agree."""
    last = mirrored(d)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(gap)
        now = mirrored(d)
        if now.get("sent") == last.get("sent") and now.get("dropped") == last.get("dropped"):
            return now
        last = now
    return last


def canary_requests(d):
    return ((traffic(d, "web").get("versions") or {}).get("canary") or {}).get("requests", 0)


def events(d, rid, action):
    items = d.request("GET", "/v1/events?resource=service/web&limit=1000").json["items"]
    return [e for e in items if e["action"] == action and (e.get("detail") or {}).get("rollout") == rid]


def bad_canary(d):
    """Half the canary's answers are 500: analysis of its mirrored answers aborts at weight 0."""
    before = mirrored(d)
    canary_before = canary_requests(d)
    ro = start(d, "app:bad", {"canary": {
        "steps": [{"mirror": {"percent": 100, "duration": "10m"}}, {"setWeight": 50}, {"pause": {}}],
        "canaryReplicas": 1, "abortScaleDownDelay": "0s",
        # Success rate alone (min 0.99; the canary's p99 is the same as stable's here); two failed
        # windows of 2 s with at least 20 copies each abort.
        "analysis": {"interval": "2s", "minSampleSize": 20, "failureLimit": 1, "latencyP99": {"maxRatioToStable": 0}}}})
    by_status, by_version, errors, weights, steps_seen = Counter(), Counter(), 0, set(), set()
    status_text = None
    got = None
    deadline = time.monotonic() + 150
    # Client traffic in slices of 100 requests (4 connections) until the rollout ends.
    while time.monotonic() < deadline:
        res = gt.load(URL, 100, concurrency=4)
        if res:
            by_status.update(res["by_status"])
            by_version.update(res["by_version"])
            errors += res["errors"]
        cur = rollout(d)
        if cur.get("id") != ro.get("id"):
            break
        weights.add(cur["weights"]["canary"])
        steps_seen.add(cur["currentStepIndex"])
        if status_text is None and cur["phase"] == "Progressing" and "mirroring" in cur.get("message", ""):
            cli = subprocess.run([aviary_path(), "--socket", d.socket_path, "rollout", "status", "web"],
                                 capture_output=True, text=True, timeout=30)
            status_text = cli.stdout + cli.stderr
        if cur["phase"] in ("Degraded", "Healthy"):
            got = cur
            break
    reason = (got or {}).get("abortReason") or {}
    ok(got and got["phase"] == "Degraded", "the rollout of a canary failing half its answers is aborted",
       repr(got or rollout(d)))
    is_(reason.get("kind"), "analysis", "by analysis (abortReason.kind analysis)", repr(reason))
    like(reason.get("detail") or "", r"successRate", "the reason names the failing metric")
    is_(weights, {0}, "the canary's weight was 0 at every look, and is 0 after the abort")
    is_(steps_seen, {0}, "the rollout never left its mirror step")
    is_(events(d, ro.get("id"), "rollout.step"), [], "no rollout.step event: no weight was ever set")
    ok(events(d, ro.get("id"), "rollout.mirror"), "a rollout.mirror event says when the copies began")
    like(status_text or "", r"1/3 mirror 100% for 10m", "aviary rollout status prints the step as 'mirror 100% for 10m'",
         status_text)

    n = sum(by_status.values())
    ok(n > 0 and by_status == Counter({"200": n}) and errors == 0,
       f"every one of the {n} client requests got a 200", dict(by_status), errors)
    is_(dict(by_version), {"1.0": n}, "all of them from the stable version (X-Guest-Version 1.0)")
    is_(canary_requests(d) - canary_before, 0, "the public listener served the canary no client request")

    # The copies in flight at the abort end a moment later: the view is read once it stopped moving.
    after = settled(d)
    sent = after.get("sent", 0) - before.get("sent", 0)
    classes = {k: after["by_status"].get(k, 0) - before.get("by_status", {}).get(k, 0) for k in after.get("by_status", {})}
    failed = classes.get("5xx", 0) + classes.get("connect-error", 0)
    rate = (sent - failed) / sent if sent else float("nan")
    # The app's error_rate is deterministic (exactly floor(n/2) errors among its first n GET /),
    # so the rate is within 1/n of 0.5. The bound does not lean on that: it is the 3-sigma band
    # of a binomial(n, 0.5), 3 x sqrt(0.25 / n), which a random 50% failure would also meet
    # 99.7% of the time; and it fails for a canary answering all 200s or all 500s once n >= 10.
    tolerance = 3 * math.sqrt(0.25 / sent) if sent else 0
    ok(sent >= 40, f"the canary answered {sent} mirrored copies (at least two windows of 20)", after)
    ok(sent and abs(rate - 0.5) <= tolerance,
       f"its mirrored success rate is {rate:.3f}, 0.5 within the binomial 3-sigma {tolerance:.3f} (n = {sent})", classes)
    diag(f"copies dropped: {after.get('dropped', 0) - before.get('dropped', 0)}; mirrored p50 {after.get('p50_ms')} ms")
    last = (got or {}).get("analysis", {}).get("last") or {}
    sr = next((m for m in last.get("metrics", []) if m.get("name") == "successRate"), {})
    ok(sr.get("verdict") == "Fail" and sr.get("samples", 0) >= 20 and sr.get("value") is not None and
       abs(sr["value"] - 0.5) <= 3 * math.sqrt(0.25 / sr["samples"]),
       "the failing window measured the mirrored answers: success rate about 0.5 over its samples", sr)


def p99(seconds):
    """One run of tests/lib/latency.py: sequential GETs on one keep-alive connection for SECONDS."""
    r = gt.in_netns(sys.executable, LATENCY, "--url", URL, "--seconds", str(seconds), "--gap", "0.002",
                    timeout=seconds + 30)
    if r.returncode != 0:
        diag(f"latency.py failed: {r.stderr[-1000:]}")
        return None
    return json.loads(r.stdout)


def promote(d):
    r = d.request("POST", "/v1/services/web/rollouts/current/promote")
    return r.status == 200


def slow_canary(d):
    """A canary taking 2 s per answer, mirrored at 100%, does not slow the clients: p99 with copies
    within 1.2x of p99 without, interleaved, the median of four runs with copies each against its
    neighbours without."""
    # Each promote moves one step: copies go during a mirror step and not during a pause.
    phases = ["off", "on"] * 4 + ["off"]  # four mirror steps: a strategy's most
    steps = []
    for phase in phases:
        steps.append({"pause": {}} if phase == "off" else {"mirror": {"percent": 100, "duration": "10m"}})
    steps.append({"pause": {}})
    ro = start(d, "app:slow", {"canary": {"steps": steps, "canaryReplicas": 1, "analysis": {"enabled": False},
                                          "abortScaleDownDelay": "0s"}})
    # The canary guest is up in every run, copies or not: only the copies differ.
    if not ok(wait_for("the canary guest", lambda: len(((traffic(d, "web").get("versions") or {}).get("canary") or {})
                                                       .get("backends", [])) == 1, 120),
              "the slow canary's guest is ready (at 0%)"):
        return
    runs = []
    start_view = mirrored(d)
    for i, phase in enumerate(phases):
        if i > 0 and not promote(d):
            ok(False, f"promote to step {i}", repr(rollout(d)))
            return
        want = 100 if phase == "on" else 0
        if not wait_for(f"mirroring {phase}", lambda: mirrored(d).get("percent") == want and
                        rollout(d).get("currentStepIndex") == i, 30):
            ok(False, f"step {i}: mirroring is {phase}", repr(rollout(d)), mirrored(d))
            return
        before = mirrored(d)
        res = p99(8)  # about 2,000 requests: a p99 that is not two or three of them
        after = mirrored(d)
        if not res:
            ok(False, f"run {i + 1} ({phase}) measured")
            return
        copies = (after.get("sent", 0) + after.get("dropped", 0)) - (before.get("sent", 0) + before.get("dropped", 0))
        diag(f"run {i + 1} ({phase}): {res['requests']} requests, p99 {res['p99_ms']} ms, max {res['max_ms']} ms, "
             f"failed {res['failed']}; copies sent+dropped {copies}, dropped {after.get('dropped', 0) - before.get('dropped', 0)}")
        is_(res["failed"], 0, f"run {i + 1} ({phase}): every request answered 200", res["errors"])
        if phase == "on":
            ok(copies > 0, f"run {i + 1}: copies went to the canary (sent or dropped: {copies})")
        runs.append(res["p99_ms"])
    # The bound is the issue's, 1.2x. The machine is shared and its load drifts within a minute
    # (p99 rising run after run in both kinds), so each run with copies is compared with the mean
    # of the runs without just before and after it, which cancels a steady drift, and the median
    # of the four ratios (the mean of the middle two) drops the highest and the lowest (a run
    # disturbed by another process on the machine). The canary guest runs in every run, so only
    # the copies differ. A client that waited for its copy would see a p99 of 2000 ms or more.
    ratios = [runs[i] / ((runs[i - 1] + runs[i + 1]) / 2) for i in range(1, len(runs) - 1, 2)]
    ratio = statistics.median(ratios)
    ok(ratio <= 1.2, f"client p99 with copies to a 2 s canary within 1.2x of without: median ratio {ratio:.2f} "
       f"(each run with copies to the mean of its neighbours without: {[round(r, 2) for r in ratios]}; "
       f"p99 per run in ms, off first: {runs})")
    r = d.request("POST", "/v1/services/web/rollouts/current/abort")
    m = settled(d, gap=2.5)  # a copy in flight at the abort takes the canary's 2 s
    dropped = m.get("dropped", 0) - start_view.get("dropped", 0)
    sent = m.get("sent", 0) - start_view.get("sent", 0)
    ok(dropped > 0, f"copies past the bound were dropped and counted ({dropped}, {sent} sent)", m)
    # The view's latency is over every copy since aviaryd started: the bad canary's fast ones,
    # then these. Once the slow ones are over 1% of all, its p99 is theirs: 2 s (to the bucket's
    # 3%), not the few ms of a copy that did not wait for the canary's answer.
    ok(sent > 0.01 * m.get("sent", 0) and (m.get("p99_ms") or 0) >= 1900,
       f"the copies waited for the canary's 2 s, the clients did not (mirrored p99 {m.get('p99_ms')} ms, "
       f"{sent} of {m.get('sent')} copies were the slow canary's)", m)
    is_(r.status, 200, "the slow canary's rollout is aborted", repr(r))
    text = d.request("GET", "/metrics").raw.decode()
    sample = {name: float(value) for name, value in
              (line.rsplit(" ", 1) for line in text.splitlines()
               if line.startswith("aviary_proxy_mirror_") and 'service="web"' in line and 'code=' not in line)}
    is_(sample.get('aviary_proxy_mirror_dropped_total{service="web"}'), float(m.get("dropped", -1)),
        "/metrics counts the dropped copies as the traffic view does", text[-300:])
    is_(sample.get('aviary_proxy_mirror_sent_total{service="web"}'), float(m.get("sent", -1)),
        "and the copies sent")


def body(d):
    for tag, extra in (("1.0", ""), ("bad", "app.error_rate=0.5"), ("slow", "app.delay_ms=2000")):
        push(d, tag, extra)
    r = d.request("POST", "/v1/services", json_body={"name": "web", "replicas": 1, "listen": "127.0.0.1:18080",
                                                     "health_check": HEALTH})
    is_(r.status, 201, "service web is created", repr(r))
    start(d, "app:1.0", None)
    if not ok(wait_rollout(d, "the first deploy", lambda ro: ro["phase"] == "Healthy", 150),
              "the first version serves", repr(rollout(d))):
        return
    bad_canary(d)
    slow_canary(d)


main(lambda: gt.run(body, config={"proxy_threads": 2}))
