#!/usr/bin/env python3
"""Scale to zero with wake: snapshot, real guests (issue 11), the fast-booting test image, inside
the test's own network namespace.

The guest's PID 1 is the test app; with app.error_rate=0.5 it answers its root requests 200, 500,
200, 500... by its own count, so the status of a request says whether the process that answers
is the one that answered before (its count went on) or a fresh one (a cold boot starts at 200).
Its console (appended to, never truncated) shows one "started" line per boot.

Checked: a snapshot sleep leaves no QEMU and a snapshot file; a SIGKILL of aviaryd while asleep
keeps both; the wake restores the same process (same IP and MAC, its request count goes on, no
second "started" line) and removes the file (used once); a corrupted snapshot falls back to a
cold boot (instance.restore-failed; a fresh count, a second "started" line), and the request
that woke it still gets its answer; a snapshot of a version the service no longer runs is never
restored."""
import json
import os
import signal
import time

from aviarytest import is_, main, ok
from guesttest import FAST_IMAGE_DIR, GuestTest, instances, push, qemu_pids, wait_for

gt = GuestTest("s2zsnap")
URL = "http://127.0.0.1:18091/"


def asleep(d):
    s = [i["state"] for i in instances(d, "web") if i["state"] not in ("stopped", "failed")]
    return s and all(x == "asleep" for x in s)


def instance_events(d, iid, action):
    r = d.request("GET", f"/v1/events?resource=instance/{iid}&limit=1000")
    return [e for e in r.json["items"] if e["action"] == action] if r.status == 200 else []


def starts(d, iid):
    r = d.request("GET", f"/v1/instances/{iid}/console?tail=10000")
    return r.raw.decode(errors="replace").count("started (uptime") if r.status == 200 else -1


def snapshots(d):
    path = os.path.join(d.state_dir, "snapshots")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def sleep_with_snapshot(d, iid, why):
    is_(d.request("POST", "/v1/services/web/sleep").status, 202, f"POST /sleep ({why})")
    saved = wait_for("the snapshot", lambda: asleep(d) and instance_events(d, iid, "instance.snapshot")
                     and len(instance_events(d, iid, "instance.snapshot")) > sleep_with_snapshot.count, 90)
    sleep_with_snapshot.count += 1
    ok(saved, f"asleep with its memory saved ({why})", json.dumps(instances(d, "web")), d.log()[-3000:])
    ok(wait_for("no QEMU", lambda: not qemu_pids(d.state_dir), 30), "no QEMU is left")
    is_(snapshots(d), [f"{iid}.save"], "one snapshot file, the instance's")


sleep_with_snapshot.count = 0


def get(expect_desc):
    res = gt.burst(URL, 1)
    return res[0] if res else {"status": None, "body": "no answer"}


def body(d):
    push(d, "1.0", cmdline_extra="app.error_rate=0.5", image_dir=FAST_IMAGE_DIR)
    push(d, "2.0", image_dir=FAST_IMAGE_DIR)
    r = d.request("POST", "/v1/services", json_body={
        "name": "web", "stable_version": "app:1.0", "replicas": 1, "listen": "127.0.0.1:18091",
        "health_check": {"path": "/health"}, "scale_to_zero": {"idle": "1h", "wake": "snapshot"}})
    is_(r.status, 201, "a service that wakes from a snapshot is created")
    ready = wait_for("web ready", lambda: [i for i in instances(d, "web") if i["state"] == "ready"], 120)
    if not ok(ready, "its guest is ready", json.dumps(instances(d, "web")), d.log()[-3000:]):
        return
    first = ready[0]
    iid = first["id"]
    is_(get("first")["status"], 200, "its first root request gets 200 (the app's count: 1)")

    # Asleep with a snapshot, across a SIGKILL of aviaryd.
    sleep_with_snapshot(d, iid, "first")
    d.kill(signal.SIGKILL)
    d.start()
    time.sleep(3)
    ok(asleep(d) and not qemu_pids(d.state_dir), "after a SIGKILL and a restart of aviaryd it is still asleep")
    is_(snapshots(d), [f"{iid}.save"], "and its snapshot is kept")

    # The wake restores the same process.
    a = get("after the wake")
    is_(a["status"], 500, "the request that wakes it is the app's second (500 by its count): the same PID 1 "
        "went on", json.dumps(a))
    inst = [i for i in instances(d, "web") if i["state"] == "ready"]
    ok(inst and (inst[0]["id"], inst[0]["ip"], inst[0]["mac"]) == (iid, first["ip"], first["mac"]),
       "the restored guest has the same id, IP and MAC", json.dumps(instances(d, "web")))
    boots = instance_events(d, iid, "instance.boot")
    ok(boots and (boots[-1].get("detail") or {}).get("restored") is True, "its boot event says restored",
       json.dumps(boots[-1:]))
    is_(starts(d, iid), 1, "its console shows one start: the app never started again")
    is_(snapshots(d), [], "the snapshot was used once and removed")
    is_(get("third")["status"], 200, "and the count goes on (200)")

    # A corrupted snapshot: a cold boot, and the waking request is still answered.
    sleep_with_snapshot(d, iid, "second")
    with open(os.path.join(d.state_dir, "snapshots", f"{iid}.save"), "r+b") as f:
        f.write(b"\0" * 4096)
    a = get("after a corrupt snapshot")
    is_(a["status"], 200, "with a corrupted snapshot the waking request gets 200 from a fresh app (a cold boot)",
        json.dumps(a))
    ok(instance_events(d, iid, "instance.restore-failed"), "an instance.restore-failed event says why",
       d.log()[-2000:])
    is_(starts(d, iid), 2, "its console shows a second start")
    is_(snapshots(d), [], "the corrupted snapshot is removed")

    # A snapshot of a version the service no longer runs is never restored.
    sleep_with_snapshot(d, iid, "third")
    r = d.request("PATCH", "/v1/services/web", json_body={"stable_version": "app:2.0"})
    is_(r.status, 200, "the service moves to 2.0 while asleep")
    a = get("after the version change")
    ok(a["status"] == 200 and a["body"].strip() == "2.0", "the waking request is answered by a 2.0 guest",
       json.dumps(a))
    old = [i for i in instances(d, "web") if i["id"] == iid]
    ok(old and old[0]["state"] == "stopped", "the 1.0 instance was stopped, not restored", json.dumps(old))
    is_(snapshots(d), [], "and its snapshot removed")

    # A service deleted while asleep: its snapshot goes at the next start of aviaryd.
    new = [i for i in instances(d, "web") if i["state"] == "ready"]
    if ok(new, "the 2.0 guest is ready"):
        sleep_with_snapshot.count = len(instance_events(d, new[0]["id"], "instance.snapshot"))
        sleep_with_snapshot(d, new[0]["id"], "before the delete")
    is_(d.request("DELETE", "/v1/services/web").status, 204, "the sleeping service is deleted")
    d.kill(signal.SIGKILL)
    d.start()
    is_(snapshots(d), [], "after a restart of aviaryd no snapshot is left")


if __name__ == "__main__":
    main(lambda: gt.run(body, config={"accel": "tcg"}, fast=True))
