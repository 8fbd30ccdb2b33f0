#!/usr/bin/env python3
"""The audit log: every change through the API writes exactly one event naming the actor
(uid:<our uid> gid:<our gid>), the action, the resource, result ok, the status and the request id;
requests that are refused, and successes that changed nothing, write none; paging with
after= and filtering by resource; retention by age and count."""
import datetime
import os
import sqlite3
import time

from aviarytest import (Daemon, RFC3339_MS, is_, like, main, ok, random_bytes, sha256_digest, snapshot_diff)

ACTOR = f"uid:{os.getuid()} gid:{os.getgid()}"
EVENT_FIELDS = ["action", "actor", "detail", "id", "request_id", "resource", "result", "status", "time"]


class Log:
    """Remembers the last event id seen, to check what each request added."""

    def __init__(self, d):
        self.d = d
        self.last = 0
        self.new()

    def new(self):
        items = self.d.client.list_all(f"/v1/events?after={self.last}" if self.last else "/v1/events", limit=1000)[0]
        if items:
            self.last = items[-1]["id"]
        return items


def change(log, desc, resp, status, action, resource, detail=None):
    """RESP made one change: exactly one new event with these fields."""
    ok(resp.status == status, f"{desc}: answers {status}", repr(resp))
    new = log.new()
    if not ok(len(new) == 1, f"{desc}: exactly one event", f"new events: {new!r}"):
        return None
    e = new[0]
    is_(sorted(e), EVENT_FIELDS, f"{desc}: the event has the documented fields")
    want = {"actor": ACTOR, "action": action, "resource": resource, "result": "ok", "status": status,
            "request_id": resp.header("X-Request-Id")}
    is_({k: e.get(k) for k in want}, want, f"{desc}: actor, action, resource, result, status and request id")
    if detail is not None:
        is_({k: (e.get("detail") or {}).get(k) for k in detail}, detail, f"{desc}: the event's detail")
    like(e.get("time"), RFC3339_MS, f"{desc}: the time is RFC 3339 with ms")
    try:
        t = datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        age = (datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()
    except (KeyError, TypeError, ValueError):
        age = None
    ok(age is not None and -5 < age < 60, f"{desc}: the time is now (UTC)", f"age {age} s")
    return e


def no_change(log, desc, resp, status):
    ok(resp.status == status, f"{desc}: answers {status}", repr(resp))
    new = log.new()
    is_(new, [], f"{desc}: no event")


def test_changes(d, log):
    c = d.client
    kdata, kernel = random_bytes(8000)
    r = c.put_blob(kdata, kernel)
    change(log, "blob upload", r, 201, "blob.upload", f"blob/{kernel}")
    idata, initrd = random_bytes(9000)
    change(log, "second blob upload", c.put_blob(idata, initrd), 201, "blob.upload", f"blob/{initrd}")
    no_change(log, "the same blob again", c.put_blob(kdata, kernel), 200)

    change(log, "image create", c.post("/v1/images", {"name": "bare"}), 201, "image.create", "image/bare")
    body = {"version": "1.0", "kernel": kernel, "initrd": initrd}
    r = c.post("/v1/images/web/versions", body, headers={"X-Request-Id": "my-own-id-1"})
    e = change(log, "version create", r, 201, "version.create", "image/web/version/1.0",
               detail={"digest": r.json and r.json.get("digest")})
    is_(e and e["request_id"], "my-own-id-1", "the event keeps the caller's X-Request-Id")
    no_change(log, "the same version again", c.post("/v1/images/web/versions", body), 200)
    change(log, "second version", c.post("/v1/images/web/versions", dict(body, version="2.0")), 201,
           "version.create", "image/web/version/2.0")
    change(log, "revoke", c.post("/v1/images/web/versions/1.0/revoke", {"reason": "old"}), 200, "version.revoke",
           "image/web/version/1.0", detail={"reason": "old"})
    no_change(log, "revoke again", c.post("/v1/images/web/versions/1.0/revoke"), 200)

    change(log, "service create", c.post("/v1/services", {"name": "svc", "stable_version": "web:2.0"}), 201,
           "service.create", "service/svc")
    change(log, "service update", c.patch("/v1/services/svc", {"replicas": 4}), 200, "service.update",
           "service/svc", detail={"replicas": 4})
    change(log, "service delete", c.delete("/v1/services/svc"), 204, "service.delete", "service/svc")
    change(log, "version delete", c.delete("/v1/images/web/versions/1.0"), 204, "version.delete",
           "image/web/version/1.0")
    change(log, "image delete", c.delete("/v1/images/web"), 204, "image.delete", "image/web")
    change(log, "blob delete", c.delete(f"/v1/blobs/{kernel}"), 204, "blob.delete", f"blob/{kernel}")
    change(log, "another image", c.post("/v1/images", {"name": "webx"}), 201, "image.create", "image/webx")
    change(log, "another image", c.post("/v1/images", {"name": "web"}), 201, "image.create", "image/web")


def test_refusals(d, log):
    c = d.client
    snap = d.snapshot()
    missing = sha256_digest(b"missing")
    refused = [
        ("bad JSON", lambda: c.request("POST", "/v1/images", body=b"{", content_type="application/json"), 400),
        ("image exists", lambda: c.post("/v1/images", {"name": "bare"}), 409),
        ("blob missing", lambda: c.post("/v1/images/x/versions", {"version": "1", "kernel": missing}), 422),
        ("digest mismatch", lambda: c.put_blob(b"abc", missing), 400),
        ("unknown version delete", lambda: c.delete("/v1/images/bare/versions/9"), 404),
        ("unknown service patch", lambda: c.patch("/v1/services/nope", {"replicas": 1}), 404),
        ("unknown blob delete", lambda: c.delete(f"/v1/blobs/{missing}"), 404),
        ("wrong method", lambda: c.request("DELETE", "/v1/events"), 405),
        ("unknown route", lambda: c.post("/v1/nope", {}), 404),
        ("unknown field", lambda: c.post("/v1/services", {"name": "a", "x": 1}), 422),
    ]
    for desc, fn, status in refused:
        no_change(log, f"refused: {desc}", fn(), status)
    ok(d.snapshot() == snap, "the refused requests changed nothing", lambda: snapshot_diff(snap, d.snapshot()))
    r = c.get("/v1/events")
    no_change(log, "reading the log", r, 200)


def test_paging(d):
    c = d.client
    everything = c.get("/v1/events?limit=1000").json["items"]
    ids = [e["id"] for e in everything]
    ok(len(ids) == 14 and ids == sorted(ids) and len(set(ids)) == len(ids), "the 14 changes made 14 events, ids increasing, oldest first",
       f"ids: {ids}")
    for limit in (1, 4):
        items, pages = c.list_all("/v1/events", limit=limit, max_pages=200)
        is_(items, everything, f"paging with limit={limit} and after= returns every event once, in order")
    mid = ids[len(ids) // 2]
    r = c.get(f"/v1/events?after={mid}")
    is_([e["id"] for e in r.json["items"]], [i for i in ids if i > mid], "after=ID starts right after ID")
    r = c.get(f"/v1/events?after={ids[-1]}")
    ok(r.status == 200 and r.json == {"items": [], "next": None}, "after the last id: no items, next null", repr(r))
    r = c.get("/v1/events?limit=2")
    ok(r.status == 200 and len(r.json["items"]) == 2 and r.json.get("next") is not None,
       "a full page has a next cursor", repr(r))

    r = c.get("/v1/events?resource=image/web")
    got = sorted({e["resource"] for e in r.json["items"]})
    is_(got, ["image/web", "image/web/version/1.0", "image/web/version/2.0"],
        "resource=image/web keeps image/web and what is under it, not image/webx")
    r = c.get("/v1/events?resource=image%2Fweb")
    is_(sorted({e["resource"] for e in r.json["items"]}) if r.status == 200 else r,
        ["image/web", "image/web/version/1.0", "image/web/version/2.0"],
        "resource=image%2Fweb (the slash percent-encoded) filters the same")
    r = c.get("/v1/events?resource=image%252Fweb")
    ok(r.status == 200 and r.json["items"] == [], "resource=image%252Fweb is the text image%2Fweb: decoded once, "
       "matching nothing", repr(r))
    r = c.get(f"/v1/events?resource=image/web&limit=1&after={ids[0]}")
    ok(r.status == 200 and len(r.json["items"]) == 1 and r.json["items"][0]["resource"].startswith("image/web/"),
       "resource= pages too", repr(r))


def wait_for(d, cond, timeout=10):
    """The events once COND(events) holds, or the last ones seen after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        items = d.events()
        if cond(items) or time.monotonic() > deadline:
            return items
        time.sleep(0.05)


def test_retention():
    """event_retention and event_retention_count (issue 14, item 13): events were never deleted.
    Events made 400 days old in the database go at the next start with event_retention = 30d,
    the younger stay; with event_retention_count = 5 only the newest 5 stay."""
    with Daemon() as d:
        for i in range(12):
            d.client.post("/v1/images", {"name": f"e{i}"})
        ids = [e["id"] for e in d.events()]
        is_(len(ids), 12, "12 events made")
        d.stop()
        day = 24 * 3600 * 1000000
        with sqlite3.connect(os.path.join(d.state_dir, "aviary.db")) as conn:
            conn.execute("UPDATE events SET time = time - 400 * ? WHERE id <= ?", (day, ids[3]))
        d.config_path = os.path.join(d.tmp, "retention.conf")
        with open(d.config_path, "w") as f:
            f.write("runtime = off\nevent_retention = 30d\nevent_retention_count = 0\n")
        d.start()
        got = [e["id"] for e in wait_for(d, lambda items: len(items) <= 8)]
        is_(got, ids[4:], "event_retention = 30d: the 4 events 400 days old are pruned, the 8 others kept")
        like(d.log(), r"Pruned 4 audit events", "the daemon logs what it pruned, once")
        d.stop()
        with open(d.config_path, "w") as f:
            f.write("runtime = off\nevent_retention = 0\nevent_retention_count = 5\n")
        d.start()
        got = [e["id"] for e in wait_for(d, lambda items: len(items) <= 5)]
        is_(got, ids[-5:], "event_retention_count = 5: the newest 5 are kept")
        d.client.post("/v1/images", {"name": "one-more"})
        is_(len(d.events()), 6, "pruning runs on a timer, off the request path: a new event is kept until then")


def body():
    test_retention()
    with Daemon() as d:
        log = Log(d)
        test_changes(d, log)
        test_refusals(d, log)
        test_paging(d)
        d.restart()
        is_(len(d.events()), len(d.snapshot()["events"]), "after a restart the log is all there")


main(body)
