#!/usr/bin/env python3
"""Scale to zero with real guests (issue 11), the fast-booting test image, inside the test's own
network namespace.

Checked: a service with scale_to_zero sleeps after its idle time (instance asleep, no QEMU left,
service.sleep); one request wakes it and gets 200 from a guest with the same IP and MAC; 20
concurrent requests during a wake all get 200; requests beyond wake_queue get 503 with
Retry-After at once while the others wake it; a SIGKILL of aviaryd while asleep leaves it asleep,
and a request wakes it; a rollout wakes the service and keeps it awake (sleep is refused, the idle
time passes without a sleep), and once the rollout is aborted it sleeps again.

Nothing asserts a duration: waits are for states, with generous limits (2 shared cores, TCG)."""
import json
import signal
import time

from aviarytest import diag, is_, main, ok
from guesttest import FAST_IMAGE_DIR, GuestTest, instances, push, qemu_pids, wait_for

gt = GuestTest("s2z")
URL = "http://127.0.0.1:18090/"
WAKE_QUEUE = 24


def states(d):
    return sorted(i["state"] for i in instances(d, "web"))


def asleep(d):
    s = states(d)
    return s and all(x == "asleep" for x in s)


def events(d, action):
    r = d.request("GET", "/v1/events?resource=service/web&limit=1000")
    return [e for e in r.json["items"] if e["action"] == action] if r.status == 200 else []


def wait_asleep(d, why, timeout=90):
    got = wait_for(f"web asleep ({why})", lambda: asleep(d), timeout)
    ok(got, f"the service sleeps ({why})", json.dumps(instances(d, "web"), indent=1), d.log()[-3000:])
    return got


def body(d):
    push(d, "1.0", image_dir=FAST_IMAGE_DIR)
    push(d, "2.0", image_dir=FAST_IMAGE_DIR)
    r = d.request("POST", "/v1/services", json_body={
        "name": "web", "stable_version": "app:1.0", "replicas": 1, "listen": "127.0.0.1:18090",
        "scale_to_zero": {"idle": "3s", "wake": "boot"}})
    is_(r.status, 201, "a service that scales to zero after 3 s is created")
    ready = wait_for("web ready", lambda: [i for i in instances(d, "web") if i["state"] == "ready"], 120)
    if not ok(ready, "its guest boots and is ready", json.dumps(instances(d, "web")), d.log()[-3000:]):
        return
    first = ready[0]

    # Idle: asleep, no QEMU, the address kept.
    if not wait_asleep(d, "3 s without a request"):
        return
    inst = instances(d, "web")[0]
    is_((inst["id"], inst["ip"], inst["mac"]), (first["id"], first["ip"], first["mac"]),
        "the asleep instance keeps its id, IP and MAC")
    ok(wait_for("no QEMU", lambda: not qemu_pids(d.state_dir), 30), "no QEMU is left for it")
    s = d.request("GET", "/v1/services/web").json
    is_(s.get("asleep"), True, "the service view says asleep")
    ok(events(d, "service.sleep"), "a service.sleep event is written")
    t = d.request("GET", "/v1/services/web/traffic").json
    is_(t.get("holding"), True, "its proxy holds requests")

    # One request wakes it.
    res = gt.burst(URL, 1)
    ok(res and res[0]["status"] == 200 and res[0]["body"].strip() == "1.0",
       "one request to the sleeping service wakes it and gets 200 from its guest", json.dumps(res))
    inst = [i for i in instances(d, "web") if i["state"] == "ready"]
    ok(inst and (inst[0]["id"], inst[0]["ip"], inst[0]["mac"]) == (first["id"], first["ip"], first["mac"]),
       "the woken guest is the same instance with the same IP and MAC", json.dumps(instances(d, "web")))
    ok(events(d, "service.wake") and events(d, "service.awake"), "service.wake and service.awake events are written")
    s = d.request("GET", "/v1/services/web").json
    ok(s.get("last_request_at") and s.get("asleep") is False, "the service view shows its last request, awake",
       json.dumps(s))

    # 20 concurrent requests during a wake: all 200.
    is_(d.request("POST", "/v1/services/web/sleep").status, 202, "POST /sleep puts it to sleep")
    wait_asleep(d, "the API")
    res = gt.burst(URL, 20)
    codes = [x["status"] for x in res or []]
    ok(res and codes == [200] * 20, "20 concurrent requests during the wake all get 200",
       json.dumps(res)[:3000])

    # Beyond wake_queue: 503 with Retry-After at once, the rest served.
    is_(d.request("POST", "/v1/services/web/sleep").status, 202, "asleep again")
    wait_asleep(d, "the API")
    res = gt.burst(URL, WAKE_QUEUE + 6) or []
    served = [x for x in res if x["status"] == 200]
    refused = [x for x in res if x["status"] == 503]
    ok(len(served) == WAKE_QUEUE and len(refused) == 6,
       f"{WAKE_QUEUE + 6} requests at once: {WAKE_QUEUE} held and served, 6 refused",
       json.dumps([(x["status"], x["code"]) for x in res]))
    ok(refused and all(x["retry_after"] and x["code"] == "wake_queue_full" for x in refused),
       "each refusal is a JSON 503 wake_queue_full with Retry-After", json.dumps(refused[:2]))

    # SIGKILL while asleep: still asleep after the restart, and wakeable.
    is_(d.request("POST", "/v1/services/web/sleep").status, 202, "asleep once more")
    wait_asleep(d, "the API")
    d.kill(signal.SIGKILL)
    d.start()
    time.sleep(4)  # more than the idle time and a pass: nothing may wake it by itself
    ok(asleep(d), "after a SIGKILL and a restart of aviaryd the service is still asleep", states(d))
    ok(not qemu_pids(d.state_dir), "and no QEMU was started for it")
    res = gt.burst(URL, 1)
    ok(res and res[0]["status"] == 200, "a request wakes it after the restart", json.dumps(res))

    # A rollout wakes the service and keeps it awake.
    is_(d.request("POST", "/v1/services/web/sleep").status, 202, "asleep before the rollout")
    wait_asleep(d, "the API")
    r = d.request("POST", "/v1/services/web/rollouts",
                  json_body={"version": "app:2.0", "strategy": {"canary": {
                      "steps": [{"setWeight": 50}, {"pause": {}}], "analysis": {"enabled": False}}}})
    is_(r.status, 201, "a rollout to 2.0 with an open pause starts", json.dumps(r.json))
    woke = wait_for("web awake for the rollout", lambda: "asleep" not in states(d) and "ready" in states(d), 120)
    ok(woke, "the rollout wakes the service", states(d))
    r = d.request("POST", "/v1/services/web/sleep")
    is_(r.error_code(), "rollout-in-progress", "sleep is refused during the rollout (409)")
    time.sleep(8)  # well past idle, without a request
    ok("asleep" not in states(d), "the service does not sleep during its rollout", states(d))
    r = d.request("POST", "/v1/services/web/rollouts/current/abort")
    is_(r.status, 200, "the rollout is aborted", json.dumps(r.json))
    wait_asleep(d, "idle after the rollout ended")

    # One listener, two services: api takes Host api.example.com under /v2/, web the rest.
    r = d.request("POST", "/v1/services", json_body={
        "name": "api", "stable_version": "app:2.0", "replicas": 1, "listen": "127.0.0.1:18090",
        "match": {"hosts": ["api.example.com"], "path_prefix": "/v2/"}})
    is_(r.status, 201, "a second service on the same listener, matched by host and path prefix", json.dumps(r.json))
    r = d.request("POST", "/v1/services", json_body={
        "name": "api2", "stable_version": "app:2.0", "listen": "127.0.0.1:18090",
        "match": {"hosts": ["api.example.com"], "path_prefix": "/v2/"}})
    is_(r.error_code(), "listen-in-use", "a third with the same match is refused (409)")
    ok(r.json and "api" in r.json["error"]["message"], "naming the other service", json.dumps(r.json))
    api_ready = wait_for("api ready", lambda: [i for i in instances(d, "api") if i["state"] == "ready"], 120)
    ok(api_ready, "api's guest is ready")
    res = gt.burst(URL + "v2/items", 3, host="api.example.com")
    ok(res and all(x["version"] == "2.0" for x in res),
       "requests for api.example.com under /v2/ reach api's guest (2.0)", json.dumps(res))
    ok(asleep(d), "web sleeps on meanwhile: its neighbour's requests do not wake it", states(d))
    res = gt.burst(URL, 1, host="api.example.com")
    ok(res and res[0]["status"] == 200 and res[0]["version"] == "1.0",
       "api.example.com outside /v2/ goes to web, and wakes it", json.dumps(res))
    t = d.request("GET", "/v1/services/api/traffic").json
    is_(t["versions"]["stable"]["requests"], 3, "api's proxy counted its 3 requests, not web's")


if __name__ == "__main__":
    main(lambda: gt.run(body, config={"wake_queue": str(WAKE_QUEUE), "accel": "tcg"}, fast=True))
