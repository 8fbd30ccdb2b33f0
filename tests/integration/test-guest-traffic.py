#!/usr/bin/env python3
"""Traffic with real guests (tests/lib/guesttest.py: a network namespace of the test's own),
one daemon and one service of two guests for all of it. Each guest names itself in every answer
(X-Guest-Instance) and logs every request on its console.

- The console: GET /v1/instances/ID/console shows the guest's own lines.
- Passive ejection: a guest whose every GET / fails (GET /fault/errors?all=1 on the guest) is
  ejected after exactly 5 failed requests in a row, gets nothing for 10 s, and is taken back
  after them; the group's last guest is never ejected, however it fails.
- Active health (interval 1 s, fall 2, rise 2): a guest whose /health answers 503 leaves its
  group after its second failed check, not its first, and comes back after its second passing
  one; meanwhile the other guest serves everything.
- A rollout with testerHeader and cookie stickiness: X-Aviary-Version: canary|stable picks the
  group; without it, the split is exact to the request; each of 200 users (the session cookie)
  lands on the side its bucket (HMAC-SHA256 of the cookie with the rollout's salt) says, at 20%
  and at 60%, and nobody moves back to stable as the weight rises.
- Draining: a service scaled from 3 guests to 1, with requests in flight to every guest (answers
  whose bodies arrive over 8 s and 40 s): a draining guest whose last request ends at 8 s stops
  then (instance.stop, drain "done"), its answers whole; one with a 40 s request stops at the
  30 s drain timeout (drain "timeout"), that request cut; the guest that stays is not touched.
- A canary that stops answering its health check (its /health hangs) with traffic on it: the
  rollout aborts (Degraded, the reason names the health check), the canary weight is 0, and
  no request fails meanwhile.

One proxy worker (proxy_threads = 1). The rotation within a group, the split and the count of
failures in a row are each worker's own (docs/design/traffic.md, "Exact, with several
threads"), and each loadgen run is a new connection, which the next worker in turn takes: with
two workers, "8 requests in turn, 4 to A" and "ejected after exactly 5" would be about whichever
worker a run landed on. With one they are about the service, to the request. Several workers
are checked by tests/unit/test-proxy-plane.c (4, each thread's exact sequence) and
tests/unit/test-traffic.c (2), and test-rollouts and test-dataplane run the default."""
import json
import subprocess
import sys
import threading
import time

from aviarytest import db_query, diag, is_, like, main, ok
from guesttest import GuestTest, extra_picks, instances, live, push, sticky_bucket, traffic, wait_for

gt = GuestTest("gtraffic")
URL = "http://127.0.0.1:18080/"
EXTRA = "app.instance={instance} app.log_requests=1"
HEALTH = {"path": "/health", "interval": "1s", "timeout": "500ms", "rise": 2, "fall": 2}


def on_guest(ip, path):
    """GET PATH on a guest's own address (the test's fault controls)."""
    status, text = gt.guest_get(ip, path)
    return status


def backend(d, instance_id):
    for group in (traffic(d, "web").get("versions") or {}).values():
        for b in group.get("backends", []):
            if b["instance"] == instance_id:
                return b
    return {}


def rollout(d):
    r = d.request("GET", "/v1/services/web/rollouts/current")
    return r.json if r.status == 200 else {}


def wait_rollout(what, d, pred, timeout):
    return wait_for(what, lambda: (lambda ro: ro if ro and pred(ro) else None)(rollout(d)), timeout)


def console(d, instance_id, tail=10000):
    r = d.request("GET", f"/v1/instances/{instance_id}/console?tail={tail}")
    return r.raw.decode("utf-8", "replace") if r.status == 200 else ""


def health_answers(d, instance_id, status):
    """How many GET /health the guest answered with STATUS, by its console."""
    return len([ln for ln in console(d, instance_id).splitlines() if f"GET /health -> {status}" in ln])


# ---------------------------------------------------------------------------- console


def test_console(d, a):
    text = console(d, a["id"], 300)
    like(text, rf"guest-app: listening on {a['ip'].replace('.', '[.]')}:8080 version 1\.0",
         "the guest's console: its own 'listening' line, through GET /v1/instances/ID/console")
    like(text, r"request \d+: GET /health -> 200", "and the health checks it answered (app.log_requests=1)")


# ---------------------------------------------------------------------------- passive ejection


def test_passive_ejection(d, a, b):
    ok(on_guest(a["ip"], "/fault/errors?all=1") == 200, f"guest A ({a['id']}) now fails every GET /")
    before = gt.load(URL, 8, concurrency=1) or {}
    is_(before.get("by_instance", {}).get(a["id"]), 4, "8 requests in turn: 4 reach A, each answered 500",
        repr(before))
    is_(backend(d, a["id"]).get("ejected"), False, "after 4 failures in a row A is not ejected")
    more = gt.load(URL, 2, concurrency=1) or {}
    t_ejected = time.monotonic()
    is_(more.get("by_instance", {}).get(a["id"]), 1, "the 5th request to A fails too", repr(more))
    is_(backend(d, a["id"]).get("ejected"), True, "after 5 in a row A is ejected (GET /traffic)")
    res = gt.load(URL, 20, concurrency=1) or {}
    is_(res.get("by_instance"), {b["id"]: 20}, "while A is out, B serves all of 20 requests", repr(res))

    # The last usable guest of a group stays, however it fails.
    ok(on_guest(b["ip"], "/fault/errors?all=1") == 200, "guest B now fails every GET / too")
    res = gt.load(URL, 12, concurrency=1) or {}
    is_((res.get("by_instance"), res.get("by_status")), ({b["id"]: 12}, {"500": 12}),
        "B, the group's last usable guest, still gets all of 12 requests (its 500s), none refused", repr(res))
    is_(backend(d, b["id"]).get("ejected"), False, "and is not ejected")
    on_guest(b["ip"], "/fault/errors?all=0")
    on_guest(a["ip"], "/fault/errors?all=0")

    # 10 s out. t_ejected is at or after the ejection, which happened during the last 2 requests
    # (well under a second): at t_ejected + 8 s fewer than 10 s have passed, at + 11 s more.
    time.sleep(max(0.0, t_ejected + 8 - time.monotonic()))
    res = gt.load(URL, 6, concurrency=1) or {}
    is_(res.get("by_instance"), {b["id"]: 6}, "8 s after the ejection A still gets nothing (6 of 6 to B)", repr(res))
    time.sleep(max(0.0, t_ejected + 11 - time.monotonic()))
    res = gt.load(URL, 6, concurrency=1) or {}
    is_(res.get("by_instance", {}).get(a["id"]), 3, "11 s after it, A is back: 3 of the next 6 requests", repr(res))
    is_(backend(d, a["id"]).get("ejected"), False, "and no longer shown ejected")


# ---------------------------------------------------------------------------- active health


def watch_health(d, instance_id, status, want_healthy_after):
    """Polls the guest's console (health checks it answered with STATUS since now) and its
    backend's "healthy" flag: returns (flag when exactly one such check was seen, checks the
    guest had answered when the flag became WANT_HEALTHY_AFTER). Checks are 1 s apart and a
    poll takes ~0.1 s. The console reaches its file through the emulated serial port, a little
    after the guest answered: the count at the change is read 0.5 s later, well before the
    next check (1 s after the one that changed the flag)."""
    base = health_answers(d, instance_id, status)
    flag_after_one, seen_at_change = None, None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and seen_at_change is None:
        n = health_answers(d, instance_id, status) - base
        healthy = backend(d, instance_id).get("healthy")
        if n == 1 and flag_after_one is None:
            flag_after_one = healthy
        if healthy == want_healthy_after:
            time.sleep(0.5)
            seen_at_change = health_answers(d, instance_id, status) - base
        time.sleep(0.1)
    return flag_after_one, seen_at_change


def test_active_health(d, a, b):
    ok(on_guest(a["ip"], "/fault/health?mode=fail") == 200, "guest A's /health now answers 503")
    flag, seen = watch_health(d, a["id"], 503, False)
    is_(flag, True, "after its first failed health check A is still in its group (fall 2)")
    is_(seen, 2, "it leaves the group at its second failed check (checks the guest had answered then)")
    res = gt.load(URL, 10, concurrency=1) or {}
    is_(res.get("by_instance"), {b["id"]: 10}, "while A fails its checks B serves all of 10 requests", repr(res))
    ok(on_guest(a["ip"], "/fault/health?mode=ok") == 200, "A's /health answers 200 again")
    flag, seen = watch_health(d, a["id"], 200, True)
    is_(flag, False, "after its first passing check A is still out (rise 2)")
    is_(seen, 2, "it is back at its second passing check (checks the guest had answered then)")
    res = gt.load(URL, 10, concurrency=1) or {}
    is_(res.get("by_instance", {}).get(a["id"]), 5, "and gets its half of 10 requests again", repr(res))


# ---------------------------------------------------------------------------- rollout: tester header, cookie


def test_tester_and_cookie(d):
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]
    r = d.request("POST", "/v1/services/web/rollouts", json_body={"version": "app:1.1", "strategy": {"canary": {
        "steps": steps, "canaryReplicas": 1, "testerHeader": True, "stickiness": {"cookie": "session"},
        "analysis": {"enabled": False}, "scaleDownDelay": "0s"}}})
    ok(r.status == 201, "a rollout to app:1.1 with testerHeader and cookie stickiness", repr(r))
    got = wait_rollout("paused at 20%", d, lambda ro: ro["phase"] == "Paused" and ro["weights"]["canary"] == 2000, 120)
    if not ok(got, "it holds at 20%", repr(rollout(d))):
        return False
    salt = db_query(d.state_dir, "SELECT salt FROM rollouts WHERE id = ?", (got["id"],))[0][0]

    res = gt.load(URL, 20, headers=["X-Aviary-Version: canary"]) or {}
    is_(res.get("by_version"), {"1.1": 20}, "X-Aviary-Version: canary: all of 20 to the canary", repr(res))
    res = gt.load(URL, 20, headers=["X-Aviary-Version: stable"]) or {}
    is_(res.get("by_version"), {"1.0": 20}, "X-Aviary-Version: stable: all of 20 to stable", repr(res))
    before = traffic(d, "web")
    res = gt.load(URL, 50, concurrency=1) or {}
    extra = extra_picks(before, traffic(d, "web"))
    # Tester and sticky requests pick no split: the 50 are the first picks of the cycle that
    # began at 20%; exact but for the retries a failed connect adds (none expected).
    canary = (res.get("by_version") or {}).get("1.1", 0)
    ok(abs(canary - 10) <= extra, f"without header or cookie the split is exact: {canary} of 50 to the canary "
       f"(10; retried connects: {extra})", repr(res))

    seen = {}
    for weight in (2000, 6000):
        if weight == 6000:
            is_(d.request("POST", "/v1/services/web/rollouts/current/promote").status, 200, "promote to 60%")
            ok(wait_rollout("paused at 60%", d, lambda ro: ro["phase"] == "Paused" and ro["weights"]["canary"] == 6000,
                            60), "it holds at 60%")
        res = gt.load(URL, 0, cookie="session", users=200, per_user=2) or {}
        users = res.get("users") or {}
        want = {u: ("1.1" if sticky_bucket(u, salt) < weight else "1.0") for u in (f"user-{n}" for n in range(200))}
        wrong = [u for u in want if set(users.get(u, [])) != {want[u]}]
        is_(wrong, [], f"at {weight // 100}%: each of 200 users (cookie session) saw only the version its bucket says, "
            f"twice ({sum(1 for v in want.values() if v == '1.1')} on the canary)", repr(res.get("by_status")))
        seen[weight] = {u for u, v in users.items() if v and v[0] == "1.1"}
    is_(sorted(seen[2000] - seen[6000]), [], "nobody on the canary at 20% is back on stable at 60%")

    is_(d.request("POST", "/v1/services/web/rollouts/current/promote?full=true").status, 200, "promote?full=true")
    ok(wait_rollout("Healthy", d, lambda ro: ro["phase"] == "Healthy", 120), "the rollout is Healthy")
    return ok(wait_for("two 1.1 guests", lambda: sorted(i["version"] for i in live(d, "web")) == ["app:1.1"] * 2, 120),
              "two app:1.1 guests serve", json.dumps(instances(d, "web"), indent=1))


# ---------------------------------------------------------------------------- draining

DRIP_CLIENT = r"""
import json, socket, sys, time
s = socket.create_connection(("127.0.0.1", 18080), timeout=120)
s.sendall(b"GET /drip?ms=" + sys.argv[1].encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    c = s.recv(4096)
    if not c:
        break
    buf += c
head, _, body = buf.partition(b"\r\n\r\n")
lines = head.decode("latin-1").split("\r\n")
fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
print(json.dumps({"status": lines[0][9:12], "instance": fields.get("x-guest-instance")}), flush=True)
try:
    while len(body) < 10:
        c = s.recv(16)
        if not c:
            break
        body += c
except OSError:
    pass
print(json.dumps({"body": len(body)}), flush=True)
"""


class Drip:
    """A GET /drip?ms=MS through the service's proxy, from inside the namespace: INSTANCE is
    the guest that answers (known from the head), BODY the body bytes once it ended, ENDED the
    monotonic time it ended."""

    def __init__(self, ms):
        self.proc = subprocess.Popen(["ip", "netns", "exec", gt.netns, sys.executable, "-c", DRIP_CLIENT, str(ms)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = json.loads(self.proc.stdout.readline() or "{}")
        self.instance, self.status = first.get("instance"), first.get("status")
        self.body, self.ended = None, None
        self.thread = threading.Thread(target=self._rest, daemon=True)
        self.thread.start()

    def _rest(self):
        line = self.proc.stdout.readline()
        self.ended = time.monotonic()
        self.body = json.loads(line).get("body") if line else None

    def cancel(self):
        self.proc.kill()
        self.proc.wait()

    def join(self, timeout):
        self.thread.join(timeout)


class StateLog(threading.Thread):
    """Polls the instances of web and keeps when each changed state."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d, self.stop, self.changes, self.last = d, threading.Event(), [], {}

    def run(self):
        while not self.stop.is_set():
            now = time.monotonic()
            for i in instances(self.d, "web"):
                if self.last.get(i["id"]) != i["state"]:
                    self.last[i["id"]] = i["state"]
                    self.changes.append((now, i["id"], i["state"]))
            time.sleep(0.2)

    def first(self, instance_id, state):
        return next((t for t, i, s in self.changes if i == instance_id and s == state), None)


def drain_start(d):
    is_(d.request("PATCH", "/v1/services/web", json_body={"replicas": 3}).status, 200, "web scales to 3")
    three = wait_for("3 ready", lambda: len(live(d, "web")) == 3 and live(d, "web"), 120)
    if not ok(three, "three guests are ready"):
        return None
    long = [Drip(40000) for _ in range(3)]
    short = [Drip(8000) for _ in range(3)]
    ids = {x["id"] for x in three}
    ok({x.instance for x in long} == ids and {x.instance for x in short} == ids,
       "each guest has a request of 40 s and one of 8 s in flight (the rotation gives one to each)",
       repr([(x.instance, x.status) for x in long + short]))
    log = StateLog(d)
    log.start()
    t_drain = time.monotonic()
    is_(d.request("PATCH", "/v1/services/web", json_body={"replicas": 1}).status, 200, "web scales to 1")
    draining = wait_for("2 draining", lambda: (lambda x: x if len(x) == 2 else None)(
        [i for i in instances(d, "web") if i["state"] == "draining"]), 10)
    if not ok(draining, "two guests drain", lambda: repr(instances(d, "web")), lambda: d.log()[-3000:]):
        log.stop.set()
        return None
    done_id, timeout_id = sorted(i["id"] for i in draining)
    keeper = (ids - {done_id, timeout_id}).pop()
    # The first one's 40 s request ends now (its client goes): only its 8 s one keeps it.
    for x in long:
        if x.instance == done_id:
            x.cancel()
    return dict(long=long, short=short, log=log, t_drain=t_drain, done=done_id, timeout=timeout_id, keeper=keeper,
                pids={i["id"]: i["qemu_pid"] for i in draining})


def drain_finish(d, st):
    log, t_drain = st["log"], st["t_drain"]
    end = t_drain + 36
    while time.monotonic() < end and not (log.first(st["done"], "stopped") and log.first(st["timeout"], "stopped")):
        time.sleep(0.2)
    log.stop.set()
    log.join()
    short = {x.instance: x for x in st["short"]}
    long = {x.instance: x for x in st["long"]}
    for x in st["short"]:
        x.join(5)

    # The guest whose last request ended at 8 s.
    s = short[st["done"]]
    stopped = log.first(st["done"], "stopped")
    ok(s.body == 10, "draining guest 1: its 8 s request got its whole answer", repr(s.body))
    ok(stopped is not None and s.ended is not None and stopped >= s.ended - 0.3,
       "it was not stopped before that request ended",
       f"stopped {stopped and stopped - t_drain:.1f} s, request ended {s.ended and s.ended - t_drain:.1f} s after the "
       "drain began")
    ok(stopped is not None and s.ended is not None and stopped - s.ended < 5,
       f"and it stopped soon after ({stopped and s.ended and stopped - s.ended:.1f} s), not at the 30 s timeout")
    ev = [e for e in d.events() if e["resource"] == f"instance/{st['done']}" and e["action"] == "instance.stop"]
    is_([(e.get("detail") or {}).get("drain") for e in ev], ["done"], "its instance.stop event: drain done")

    # The guest with a request of 40 s: stopped at the drain timeout, that request cut.
    stopped = log.first(st["timeout"], "stopped")
    ok(stopped is not None and 29.5 <= stopped - t_drain <= 34,
       f"draining guest 2, its 40 s request in flight: stopped at the 30 s drain timeout "
       f"({stopped and stopped - t_drain:.1f} s after the drain began; a pass and this poll may add 2.5 s)")
    ev = [e for e in d.events() if e["resource"] == f"instance/{st['timeout']}" and e["action"] == "instance.stop"]
    is_([(e.get("detail") or {}).get("drain") for e in ev], ["timeout"], "its instance.stop event: drain timeout")
    lng = long[st["timeout"]]
    lng.join(5)
    ok(lng.body is not None and lng.body < 10, f"its 40 s request was cut ({lng.body} of 10 bytes)")
    ok(short[st["timeout"]].body == 10, "its 8 s request had got its whole answer before")

    # The guest that stays.
    is_(log.last.get(st["keeper"]), "ready", "the guest that stays is ready throughout")
    ok(short[st["keeper"]].body == 10 and long[st["keeper"]].body is None,
       "its 8 s request was answered whole, and its 40 s one is still going")
    for x in st["long"]:
        x.cancel()


# ---------------------------------------------------------------------------- a canary whose health hangs


def test_canary_health(d):
    r = d.request("POST", "/v1/services/web/rollouts", json_body={"version": "app:1.2", "strategy": {"canary": {
        "steps": [{"setWeight": 50}, {"pause": {}}], "canaryReplicas": 1, "analysis": {"enabled": False}}}})
    ok(r.status == 201, "a rollout to app:1.2", repr(r))
    got = wait_rollout("canary at 50%", d, lambda ro: ro["phase"] == "Paused" and ro["weights"]["canary"] == 5000, 120)
    canary = [i for i in live(d, "web") if i["version"] == "app:1.2"]
    if not ok(got and canary, "its canary guest serves half the traffic", repr(rollout(d))):
        return
    bg = gt.load_background(URL, 15, rate=20)
    time.sleep(1)
    ok(on_guest(canary[0]["ip"], "/fault/health?mode=hang") == 200, "the canary's /health stops answering")
    t0 = time.monotonic()
    got = wait_rollout("Degraded", d, lambda ro: ro["phase"] == "Degraded", 20)
    took = time.monotonic() - t0
    ok(got, f"the rollout aborts by itself ({took:.1f} s: two checks 1 s apart, each failing at its 500 ms timeout)",
       repr(rollout(d)))
    if got:
        like((got.get("abortReason") or {}).get("detail") or "", r"canary guests unhealthy.*health check",
             "the reason names the health check")
        is_((got.get("abortReason") or {}).get("kind"), "unhealthy", "abortReason.kind is unhealthy")
        is_(got["weights"], {"stable": 10000, "canary": 0}, "the canary weight is 0")
    out, _ = bg.communicate(timeout=60)
    res = json.loads(out) if out else {}
    ok(res.get("errors") == 0 and set(res.get("by_status", {})) == {"200"},
       f"none of the {res.get('requests')} requests sent meanwhile failed (the canary still answered GET /)", repr(res))
    res = gt.load(URL, 40) or {}
    is_(res.get("by_version"), {"1.1": 40}, "afterwards stable serves all of 40 requests", repr(res))
    on_guest(canary[0]["ip"], "/fault/health?mode=ok")


def body(d):
    for tag in ("1.0", "1.1", "1.2"):
        push(d, tag, EXTRA)
    r = d.request("POST", "/v1/services", json_body={"name": "web", "replicas": 2, "listen": "127.0.0.1:18080",
                                                     "health_check": HEALTH})
    is_(r.status, 201, "service web: 2 replicas, health checks every 1 s, fall 2, rise 2", repr(r))
    d.request("POST", "/v1/services/web/rollouts", json_body={"version": "app:1.0"})
    ready = wait_for("2 ready", lambda: (lambda x: x if len(x) == 2 else None)(live(d, "web")), 120)
    if not ok(ready, "two app:1.0 guests are ready", lambda: d.log()[-3000:]):
        return
    a, b = sorted(ready, key=lambda i: i["id"])
    test_console(d, a)
    test_passive_ejection(d, a, b)
    test_active_health(d, a, b)
    if not test_tester_and_cookie(d):
        return
    st = drain_start(d)
    test_canary_health(d)
    if st:
        drain_finish(d, st)


main(lambda: gt.run(body, config={"proxy_threads": 1}))
