#!/usr/bin/env python3
"""Rollout notifications (runtime off, receivers on loopback): every rollout event of a service
with "notify" is POSTed, as GET /v1/events shows it, to each of its URLs and to the daemon-wide
notify URL, in event order, signed with each webhook's secret; the secret is never shown; a
receiver that keeps failing becomes a notify.failed event after bounded retries; bad notify
lists are refused and change nothing."""
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from aviarytest import (Daemon, check_error, create_service, free_tcp_port, is_, main, ok, push_version,
                        snapshot_diff)

HOOKSERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../lib/hookserver.py")


def requests_of(folder):
    try:
        with open(os.path.join(folder, "requests.jsonl"), encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    except FileNotFoundError:
        return []


def signed_with(secret, req):
    sig = {k: v for k, _, v in (p.partition("=") for p in req["headers"].get("X-Aviary-Signature", "").split(","))}
    want = hmac.new(secret.encode(), f"{sig.get('t')}.{req['body']}".encode(), hashlib.sha256).hexdigest()
    return "t" in sig and hmac.compare_digest(want, sig.get("v1", ""))


def wait_for(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    return pred()


def body(d, port, folder, global_folder):
    c = d.client
    for tag in ("1", "2", "3"):
        push_version(c, "app", tag)
    create_service(c, "web", listen="127.0.0.1:18311", replicas=1)

    # Bad notify lists: refused, nothing changed.
    snap = d.snapshot()
    for bad, what in (("http://x/", "not an array"), ([{"url": "ftp://x/"}], "a URL that is not http(s)"),
                      ([{"url": "http://x/", "bogus": 1}], "an unknown field"), ([{}], "no url"),
                      ([{"url": f"http://x/{i}"} for i in range(9)], "more than 8"), (["http://x/"], "not an object")):
        r = c.patch("/v1/services/web", {"notify": bad}, headers={"If-Match": "*"})
        ok(r.status == 422 and r.error_code() in ("invalid-field", "unknown-field", "missing-field"),
           f"notify refused: {what}", repr(r))
    ok(d.snapshot() == snap, "none of them changed anything", lambda: snapshot_diff(snap, d.snapshot()))

    hook = f"http://127.0.0.1:{port}/hook"
    r = c.patch("/v1/services/web", {"notify": [{"url": hook, "secret": "s3cret-web"},
                                                {"url": f"http://127.0.0.1:{port}/fail"}]}, headers={"If-Match": "*"})
    is_(r.status, 200, "a service gets two notify webhooks", repr(r))
    is_(r.json.get("notify"), [{"url": hook, "signed": True}, {"url": f"http://127.0.0.1:{port}/fail", "signed": False}],
        "the service shows their URLs and whether they are signed")
    ok("s3cret-web" not in json.dumps(c.get("/v1/services/web").json) and "s3cret-web" not in
       json.dumps(c.get("/v1/services").json), "never the secret")

    # Rollout events: the first deploy, a rollout, its actions.
    is_(c.post("/v1/services/web/rollouts", {"version": "app:1"}).status, 201, "first deploy")
    r = c.post("/v1/services/web/rollouts", {"version": "app:2", "strategy": {"canary": {
        "steps": [{"setWeight": 10}, {"pause": {}}], "analysis": {"enabled": False}}}})
    is_(r.status, 201, "a rollout to app:2")
    for action in ("pause", "resume", "abort", "retry"):
        is_(c.request("POST", f"/v1/services/web/rollouts/current/{action}").status, 200, f"rollout {action}")
    is_(c.post("/v1/services/web/rollouts", {"version": "app:3"}).status, 201, "a newer rollout supersedes it")

    want = [e for e in c.get("/v1/events?resource=service/web&limit=1000").json["items"]
            if e["action"].startswith("rollout.")]
    got = wait_for(lambda: (lambda x: x if len(x) >= len(want) else None)(
        [q for q in requests_of(folder) if q["path"] == "/hook"]), 30) or []
    bodies = [json.loads(q["body"]) for q in got]
    is_([b["id"] for b in bodies], [e["id"] for e in want], "every rollout event reached the receiver, in event order")
    is_(bodies, want, "each body is the event as GET /v1/events shows it")
    ok(got and all(signed_with("s3cret-web", q) for q in got), "each is signed with the service's secret")
    ok(got and all(q["headers"].get("X-Aviary-Event") == b["action"] for q, b in zip(got, bodies)),
       "X-Aviary-Event names the event's action")

    glob = wait_for(lambda: (lambda x: x if len(x) >= len(want) else None)(
        [q for q in requests_of(global_folder) if q["path"] == "/global"]), 30) or []
    is_([json.loads(q["body"])["id"] for q in glob], [e["id"] for e in want],
        "the daemon-wide notify URL got the same events, in order")
    ok(glob and all(signed_with("global-s3cret-0123456789", q) for q in glob), "signed with notify_secret")

    failed = wait_for(lambda: [e for e in c.get("/v1/events?resource=service/web&limit=1000").json["items"]
                               if e["action"] == "notify.failed"], 60)
    ok(failed, "a receiver that keeps answering 500 becomes a notify.failed event")
    if failed:
        det = failed[0].get("detail") or {}
        ok(det.get("url", "").endswith("/fail") and det.get("status") == 500 and det.get("attempts") == 4,
           "naming the URL, the status and the attempts (1 + 3 retries)", repr(det))
    if failed:
        first = failed[0]["detail"]["event"]
        attempts = [q for q in requests_of(folder) if q["path"] == "/fail" and json.loads(q["body"])["id"] == first]
        is_(len(attempts), 4, f"the failed delivery of event {first} was tried exactly 4 times")
        later = [q for q in requests_of(folder) if q["path"] == "/fail" and json.loads(q["body"])["id"] > first]
        ids = [json.loads(q["body"])["id"] for q in requests_of(folder) if q["path"] == "/fail"]
        ok(ids == sorted(ids) and later, "the failing receiver too gets the events in order, one at a time", repr(ids))
    nothing_else = [e for e in c.get("/v1/events?resource=service/web&limit=1000").json["items"]
                    if e["action"] == "notify.failed" and not e["detail"]["url"].endswith("/fail")]
    is_(nothing_else, [], "the working receiver never failed")


def run():
    folder, global_folder = tempfile.mkdtemp(prefix="aviary-notify-"), tempfile.mkdtemp(prefix="aviary-notify-g-")
    port, gport = free_tcp_port(), free_tcp_port()
    servers = [subprocess.Popen([sys.executable, HOOKSERVER, str(port), folder]),
               subprocess.Popen([sys.executable, HOOKSERVER, str(gport), global_folder])]
    secret_file = os.path.join(global_folder, "secret")
    with open(secret_file, "w") as f:
        f.write("global-s3cret-0123456789\n")
    os.chmod(secret_file, 0o600)
    try:
        time.sleep(0.5)
        with Daemon(config={"notify": f"http://127.0.0.1:{gport}/global", "notify_secret": secret_file}) as d:
            body(d, port, folder, global_folder)
    finally:
        for s in servers:
            s.kill()
            s.wait()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(global_folder, ignore_errors=True)


main(run)
