#!/usr/bin/env python3
"""Blue/green rollouts with real guests, inside a network namespace this test creates (see
tests/lib/guesttest.py). The public listener is 127.0.0.1:18080 in that namespace, the preview
127.0.0.1:18081; every answer names its guest's version (X-Guest-Version).

Checked: while a blue/green rollout runs, the preview serves the new version alone (its check
step and its analysis step run against it: the analysis passes only on the preview's traffic)
and the public listener the old one alone; the address is its own (another service may neither
listen there nor use it as a preview); `aviary rollout promote` switches the public listener with
no failed request under a steady load, and closes the preview; `aviary rollback` within
scaleDownDelay switches back to the kept guests with no new QEMU and no failed request; an abort
leaves the public listener alone: every public answer, before, during and after, is the old
version's; the rollout, the traffic view and /metrics say what happens."""
import json
import subprocess
import time

from aviarytest import aviary_path, diag, is_, like, main, ok
from guesttest import FAST_IMAGE_DIR, GuestTest, instances, live, push, qemu_pids, traffic, wait_for

gt = GuestTest("bg")
PUBLIC = "http://127.0.0.1:18080/"
PREVIEW = "http://127.0.0.1:18081/"


def rollout(d):
    r = d.request("GET", "/v1/services/web/rollouts/current")
    return r.json if r.status == 200 else {}


def wait_rollout(d, what, pred, timeout=120):
    return wait_for(what, lambda: (lambda ro: ro if ro and pred(ro) else None)(rollout(d)), timeout)


def cli(d, *args, timeout=180):
    return subprocess.run([aviary_path(), "--socket", d.socket_path, *args], capture_output=True, text=True,
                          timeout=timeout)


def finish(bg):
    """The JSON summary of a background load (tests/lib/loadgen.py), {} when it failed."""
    out, err = bg.communicate(timeout=120)
    try:
        return json.loads(out)
    except ValueError:
        diag(f"loadgen: {err[-1000:]}")
        return {}


def no_failure(res):
    return res.get("requests", 0) > 0 and set(res.get("by_status", {})) == {"200"} and not res.get("errors")


def refused(url):
    """Whether nothing listens at URL (inside the namespace): curl cannot connect."""
    r = gt.in_netns("curl", "-s", "-o", "/dev/null", "--max-time", "3", url, timeout=10)
    return r.returncode == 7  # curl: failed to connect


def preview_ready(d, n):
    """The traffic view's preview, once its canary group has N backends."""
    t = traffic(d, "web")
    p = t.get("preview") or {}
    backends = ((p.get("versions") or {}).get("canary") or {}).get("backends") or []
    return t if len(backends) >= n else None


def promote_under_load(d):
    """A blue/green rollout to 1.1 with a check and an analysis step on the preview, then a
    promote under load. Returns whether it was promoted."""
    strategy = {"blueGreen": {
        "previewListen": "127.0.0.1:18081", "scaleDownDelay": "10m",
        "prePromotion": [
            {"check": {"requests": [{"path": "/", "expect": {"status": 200, "bodyContains": "1.1"}}], "repeat": 3}},
            {"analysis": {"interval": "1s", "minSampleSize": 10, "consecutiveSuccessLimit": 2,
                          "latencyP99": {"maxRatioToStable": 0}}},
        ]}}
    r = d.request("POST", "/v1/services/web/rollouts", json_body={"version": "app:1.1", "strategy": strategy})
    if not ok(r.status == 201, "a blue/green rollout to app:1.1 is accepted", repr(r)):
        return False
    is_((r.json.get("strategyKind"), r.json.get("preview")), ("blueGreen", {"listen": "127.0.0.1:18081", "open": True}),
        "the rollout says blueGreen and where its preview is")
    t = wait_for("the preview's 2 guests", lambda: preview_ready(d, 2), 120)
    if not ok(t, "the new version gets both replicas behind the preview", lambda: d.log()[-3000:]):
        return False
    is_(len((((t.get("versions") or {}).get("canary") or {}).get("backends")) or []), 0,
        "the public listener's table has no new guest")
    is_((t.get("rollout") or {}).get("strategyKind"), "blueGreen", "the traffic view names the strategy")
    is_((t.get("rollout") or {}).get("previewListen"), "127.0.0.1:18081", "and the preview's address")

    # The preview's own traffic is what its analysis step reads.
    bg = gt.load_background(PREVIEW, 25, rate=40)
    ro = wait_rollout(d, "Paused (waiting for promote)", lambda x: x["phase"] in ("Paused", "Degraded"), 60)
    res = finish(bg)
    if not ok(ro and ro["phase"] == "Paused", "the check and the analysis on the preview pass; it waits for promote",
              repr(ro)):
        return False
    ok(res.get("by_version") == {"1.1": res.get("requests")} and no_failure(res),
       "every answer of the preview came from the new version", repr(res))
    last = (ro.get("analysis") or {}).get("last") or {}
    ok(last.get("canarySamples", 0) >= 10, "the analysis windows counted the preview's requests", repr(last))
    is_(ro["weights"], {"stable": 10000, "canary": 0}, "the public weights are all stable")
    events = d.request("GET", "/v1/events?resource=service/web&limit=1000").json["items"]
    ok(any(e["action"] == "rollout.preview" for e in events), "a rollout.preview event said when the preview served")
    ok(any(e["action"] == "rollout.step" and (e.get("detail") or {}).get("check") == "passed" for e in events),
       "the check step passed, as an event")
    metrics = d.client.get("/metrics").raw.decode()
    like(metrics, r'aviary_rollout_phase\{service="web",rollout="\d+",phase="Paused"\} 1',
         "/metrics shows the blue/green rollout Paused")
    out = cli(d, "rollout", "status", "web")
    like(out.stdout, r"Strategy:\s+blue/green, preview 127\.0\.0\.1:18081 \(open\)", "rollout status says so",
         out.stderr)

    public = gt.load(PUBLIC, 200, concurrency=4)
    ok(public and public["by_version"] == {"1.0": 200}, "the public listener: 200 of 200 answers from 1.0",
       repr(public))
    preview = gt.load(PREVIEW, 200, concurrency=4)
    ok(preview and preview["by_version"] == {"1.1": 200}, "the preview: 200 of 200 answers from 1.1", repr(preview))

    # Its address is its own while it runs.
    is_(d.request("POST", "/v1/services", json_body={"name": "api", "replicas": 0}).status, 201, "another service")
    r = d.request("POST", "/v1/services/api/rollouts", json_body={
        "version": "app:1.0", "strategy": {"blueGreen": {"previewListen": "127.0.0.1:18081"}}})
    is_((r.status, r.error_code()), (409, "listen-in-use"), "a second preview on the address: 409 listen-in-use",
        repr(r))
    r = d.request("PATCH", "/v1/services/api", json_body={"listen": "127.0.0.1:18081"})
    is_((r.status, r.error_code()), (409, "listen-in-use"), "a service listening there: 409 listen-in-use", repr(r))
    is_(d.request("DELETE", "/v1/services/api").status, 204, "the other service goes")

    bg = gt.load_background(PUBLIC, 12, rate=40)
    time.sleep(3)
    out = cli(d, "rollout", "promote", "web")
    is_(out.returncode, 0, "aviary rollout promote web", out.stdout, out.stderr)
    ro = wait_rollout(d, "Healthy", lambda x: x["phase"] in ("Healthy", "Degraded"), 30)
    res = finish(bg)
    ok(ro and ro["phase"] == "Healthy", "promoted: Healthy", repr(ro))
    ok(no_failure(res), "no failed request through the switch under load", repr(res))
    ok(set(res.get("by_version", {})) == {"1.0", "1.1"}, "the load saw 1.0, then 1.1", repr(res))
    public = gt.load(PUBLIC, 100, concurrency=4)
    ok(public and public["by_version"] == {"1.1": 100}, "after it, 100 of 100 public answers from 1.1", repr(public))
    ok(wait_for("the preview closed", lambda: refused(PREVIEW), 5), "the preview listener is closed")
    ok(traffic(d, "web").get("preview") is None, "and gone from the traffic view")
    is_(rollout(d).get("preview"), {"listen": "127.0.0.1:18081", "open": False}, "the rollout says it closed")
    is_(len(live(d, "web")), 4, "1.0's guests are kept for the scaleDownDelay", repr(instances(d, "web")))
    return True


def rollback(d):
    """Within scaleDownDelay, `aviary rollback` gives the traffic back to 1.0's kept guests."""
    pids = set(qemu_pids(d.state_dir))
    bg = gt.load_background(PUBLIC, 10, rate=40)
    time.sleep(2)
    out = cli(d, "rollback", "web", "--wait", "--timeout", "2m")
    is_(out.returncode, 0, "aviary rollback web --wait exits 0", out.stdout, out.stderr)
    res = finish(bg)
    is_(d.request("GET", "/v1/services/web").json["stable_version"], "app:1.0", "1.0 is stable again")
    is_(set(qemu_pids(d.state_dir)) - pids, set(), "no new QEMU process: the kept guests took the traffic back")
    ok(no_failure(res), "no failed request through the rollback under load", repr(res))
    public = gt.load(PUBLIC, 100, concurrency=4)
    ok(public and public["by_version"] == {"1.0": 100}, "100 of 100 public answers from 1.0 again", repr(public))


def abort(d):
    """A blue/green rollout to 1.2 (from the CLI, the preview at its default address) aborted
    while it waits for promote: the public listener answers from 1.0 throughout."""
    bg = gt.load_background(PUBLIC, 60, rate=30)
    out = cli(d, "deploy", "web", "app:1.2", "--blue-green")
    is_(out.returncode, 0, "aviary deploy web app:1.2 --blue-green", out.stdout, out.stderr)
    ro = wait_rollout(d, "Paused", lambda x: x["phase"] in ("Paused", "Degraded"), 120)
    ok(ro and ro["phase"] == "Paused" and (ro.get("preview") or {}).get("listen") == "127.0.0.1:18081",
       "it waits for promote, its preview at the service's port + 1", repr(ro))
    preview = gt.load(PREVIEW, 50, concurrency=4)
    ok(preview and preview["by_version"] == {"1.2": 50}, "the preview serves 1.2", repr(preview))
    out = cli(d, "rollout", "abort", "web")
    is_(out.returncode, 0, "aviary rollout abort web", out.stdout, out.stderr)
    ro = rollout(d)
    is_((ro.get("phase"), (ro.get("abortReason") or {}).get("kind")), ("Degraded", "manual"), "Degraded, kind manual")
    ok(wait_for("the preview closed", lambda: refused(PREVIEW), 5), "the preview listener is closed")
    time.sleep(3)  # the public load goes on after the abort
    bg.terminate()
    res = finish(bg)
    ok(no_failure(res) and res.get("by_version") == {"1.0": res.get("requests")},
       "every public answer before, during and after the abort came from 1.0, none failed", repr(res))
    kept = [i for i in live(d, "web") if i["version"] == "app:1.2"]
    is_(len(kept), 2, "the new guests are kept for abortScaleDownDelay (inspection)", repr(instances(d, "web")))


def body(d):
    for tag in ("1.0", "1.1", "1.2"):
        push(d, tag, image_dir=FAST_IMAGE_DIR)
    r = d.request("POST", "/v1/services", json_body={"name": "web", "replicas": 2, "listen": "127.0.0.1:18080"})
    is_(r.status, 201, "service web is created")
    out = cli(d, "deploy", "web", "app:1.0", "--wait", "--timeout", "3m", timeout=240)
    if not ok(out.returncode == 0 and len(live(d, "web")) == 2, "the first deploy serves on 2 guests", out.stderr):
        return
    if promote_under_load(d):
        rollback(d)
    abort(d)


main(lambda: gt.run(body, config={"accel": "tcg"}, fast=True))
