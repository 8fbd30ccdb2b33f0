#!/usr/bin/env python3
"""Every boot has a deadline (real guests, in a network namespace this test creates, with the
daemon's default accel = auto).

A guest that never gets healthy, because it listens on 9999 while its version declares 8080,
is stopped at its service's boot_timeout with a stop reason naming the check and its failure,
an instance.boot-timeout event, a restart after the backoff, and finally crash-loop with no
QEMU left. A rollout whose canary misses its deadline aborts (an unhealthy canary), and the
stable guest keeps serving."""
import json
import re
import time

from aviarytest import is_, like, main, ok
from guesttest import GuestTest, instances, live, push, qemu_pids, wait_for

gt = GuestTest("deadline")
DEADLINE = 12  # s: under TCG a good guest answers in 3-6 s, so the 9999 guest is surely up by then


def events(d, action):
    r = d.request("GET", "/v1/events?limit=1000")
    return [e for e in r.json["items"] if e["action"] == action] if r.status == 200 else []


def body(d):
    push(d, "good")
    push(d, "wrongport", "app.port=9999")

    # ---- a service whose only guest never gets healthy
    r = d.request("POST", "/v1/services", json_body={"name": "never", "stable_version": "app:wrongport",
                                                     "replicas": 1, "boot_timeout": f"{DEADLINE}s"})
    is_(r.status, 201, "a service with boot_timeout is created", repr(r))
    is_(r.json.get("boot_timeout"), f"{DEADLINE}s", "the service shows its boot_timeout")
    bad = d.request("POST", "/v1/services", json_body={"name": "x", "boot_timeout": "forever"})
    is_((bad.status, bad.error_code()), (422, "invalid-field"), "a boot_timeout that is no duration is refused")
    is_(d.request("GET", "/v1/services/x").status, 404, "and nothing was created")

    booting = wait_for("a booting instance with a deadline",
                       lambda: [i for i in instances(d, "never") if i["state"] == "booting"], 60)
    ok(booting and booting[0]["timings"]["boot_deadline"], "a booting instance shows its boot deadline",
       json.dumps(booting))
    first = wait_for("the first boot-timeout event", lambda: events(d, "instance.boot-timeout"), DEADLINE + 60)
    ok(first, "an instance.boot-timeout event once the deadline passed", d.log()[-3000:])
    if not first:
        return
    reason = json.loads(first[0]["detail"])["reason"] if isinstance(first[0]["detail"], str) else \
        first[0]["detail"]["reason"]
    like(reason, rf"^not healthy {DEADLINE} s after boot: GET / on 10\.88\.0\.\d+:8080: connection refused$",
         "its reason names the deadline, the check, the address and the failure")
    inst = instances(d, "never")[0]
    ok(inst["restarts"] >= 1, f"the instance restarts ({inst['restarts']} so far)", json.dumps(inst))
    ok(inst["state"] in ("pending", "booting"), f"and boots again after its backoff (now {inst['state']})")

    looped = wait_for("crash-loop", lambda: [i for i in instances(d, "never") if i["state"] == "crash-loop"],
                      3 * (DEADLINE + 30))
    ok(looped, "after three misses in a row the instance is in crash-loop", json.dumps(instances(d, "never")))
    if looped:
        like(looped[0]["stop_reason"] or "", r"^crash-loop: .*not healthy \d+ s after boot: GET / on .*:8080",
             "crash-loop's reason carries the last miss")
        is_(looped[0]["restarts"], 3, "three failed boots counted")
        is_(len(events(d, "instance.boot-timeout")) + len(events(d, "instance.crash-loop")) >= 3, True,
            "every miss is an event")
        ok(wait_for("no QEMU for the crash-looping service",
                    lambda: all(i["qemu_pid"] is None for i in instances(d, "never")), 10),
           "no QEMU is left for it")
    d.request("DELETE", "/v1/services/never")

    # ---- a canary that misses its deadline aborts the rollout
    r = d.request("POST", "/v1/services", json_body={"name": "web", "stable_version": "app:good", "replicas": 1,
                                                     "listen": "127.0.0.1:18080", "boot_timeout": f"{DEADLINE}s"})
    is_(r.status, 201, "a service on the good version")
    ok(wait_for("the stable guest", lambda: live(d, "web"), 120), "its guest is ready")
    t0 = time.monotonic()
    r = d.request("POST", "/v1/services/web/rollouts",
                  json_body={"version": "app:wrongport", "strategy": {"canary": {"steps": [{"setWeight": 50},
                                                                                          {"pause": {}}]}}})
    is_(r.status, 201, "a rollout to the version that never gets healthy", repr(r))
    done = wait_for("the rollout to end", lambda: (lambda ro: ro if ro.get("phase") == "Degraded" else None)(
        d.request("GET", "/v1/services/web/rollouts/current").json or {}), DEADLINE + 60)
    ok(done, f"the rollout aborts ({time.monotonic() - t0:.1f} s), without waiting for a crash-loop",
       json.dumps(d.request("GET", "/v1/services/web/rollouts/current").json))
    if done:
        like((done.get("abortReason") or {}).get("detail") or "", r"not healthy \d+ s after boot",
             "the abort names the missed deadline")
        is_((done.get("abortReason") or {}).get("kind"), "unhealthy", "a canary that never came up: kind unhealthy")
        is_(done["weights"]["canary"], 0, "canary weight is 0")
    status, text = gt.guest_get(live(d, "web")[0]["ip"])
    is_((status, text.strip()), (200, "good"), "the stable guest still serves")
    d.request("DELETE", "/v1/services/web")
    ok(wait_for("no QEMU left", lambda: not qemu_pids(d.state_dir), 30), "no QEMU left after the services go")


main(lambda: gt.run(body))
