#!/usr/bin/env python3
"""Idempotency-Key on POST: the same key with the same request answers the first status and
body again (Idempotent-Replayed: true) with one effect, one row and one event; the same key
with another request is 422 idempotency-key-reused and changes nothing; 20 concurrent POSTs
with one key make exactly one service, as do a slow POST overtaken by a fast one with its
key and a race of one key with two bodies; keys survive a restart and belong to one caller: its
stable identity (uid, token id), whatever its address or its token's name; the query counts."""
import http.client
import json
import os
import socket
import sqlite3
import threading
import time

import fakeruntime

from aviarytest import (Client, Daemon, check_error, db_query, free_tcp_port, is_, isnt, main, ok, parse_raw_response,
                        push_version, random_bytes, skip, snapshot_diff, upload)


def post(c, path, obj, key, **kw):
    headers = dict(kw.pop("headers", {}))
    if key is not None:
        headers["Idempotency-Key"] = key
    return c.request("POST", path, body=json.dumps(obj).encode(), headers=headers, content_type="application/json",
                     **kw)


def events_for(d, resource, action):
    return [e for e in d.events() if e["resource"] == resource and e["action"] == action]


def unchanged(d, snap, desc):
    ok(d.snapshot() == snap, desc, lambda: snapshot_diff(snap, d.snapshot()))


def test_replay(d):
    c = d.client
    kernel = upload(c, random_bytes(3000)[0])
    body = {"version": "1.0.0", "kernel": kernel, "cmdline": "ip={ip}", "labels": {"a": "b"}}
    first = post(c, "/v1/images/web/versions", body, "key-version-1")
    is_(first.status, 201, "the first POST with a key answers 201", repr(first))
    is_(first.header("Idempotent-Replayed"), None, "the first answer is not marked replayed")

    again = post(c, "/v1/images/web/versions", body, "key-version-1")
    is_(again.status, first.status, "the same key and body answers the same status")
    ok(again.raw == first.raw, "the same key and body answers the same body, byte for byte",
       f"first: {first.raw[:300]!r}", f"again: {again.raw[:300]!r}")
    is_(again.header("Idempotent-Replayed"), "true", "the repeated answer carries Idempotent-Replayed: true")
    is_(again.header("Location"), first.header("Location"), "the repeated answer keeps the Location")
    isnt(again.header("X-Request-Id"), first.header("X-Request-Id"), "the repeated answer has its own request id")
    is_(len(d.snapshot()["versions"]), 1, "there is one version row")
    is_(len(events_for(d, "image/web/version/1.0.0", "version.create")), 1, "there is one version.create event")

    snap = d.snapshot()
    r = post(c, "/v1/images/web/versions", dict(body, cmdline="ip={ip} x"), "key-version-1")
    check_error(r, 422, "idempotency-key-reused", "the same key with another body: 422 idempotency-key-reused")
    r = post(c, "/v1/images/other/versions", body, "key-version-1")
    check_error(r, 422, "idempotency-key-reused", "the same key on another path: 422 idempotency-key-reused")
    r = post(c, "/v1/services", {"name": "svc"}, "key-version-1")
    check_error(r, 422, "idempotency-key-reused", "the same key on another route: 422 idempotency-key-reused")
    r = post(c, "/v1/images/web/versions", body, "key-version-1", headers={"X-Extra": "1"})
    is_(r.status, 201, "other headers do not make another request (still replayed)", repr(r))
    unchanged(d, snap, "the reused keys changed nothing")

    # A service: the replay carries the first ETag, even after the service changed.
    s1 = post(c, "/v1/services", {"name": "svc", "stable_version": "web:1.0.0"}, "key-service-1")
    is_(s1.status, 201, "creating a service with a key answers 201", repr(s1))
    r = c.patch("/v1/services/svc", {"replicas": 5})
    is_(r.status, 200, "the service is then changed (generation 2)", repr(r))
    s2 = post(c, "/v1/services", {"name": "svc", "stable_version": "web:1.0.0"}, "key-service-1")
    ok(s2.status == 201 and s2.raw == s1.raw and s2.header("ETag") == s1.header("ETag") == '"1"'
       and s2.header("Idempotent-Replayed") == "true",
       "the replay is the first answer (201, generation 1, ETag \"1\")", repr(s2))
    is_(len(events_for(d, "service/svc", "service.create")), 1, "there is one service.create event")
    r = post(c, "/v1/services", {"name": "svc", "stable_version": "web:1.0.0"}, None)
    check_error(r, 409, "service-exists", "the same POST without a key is done again: 409 service-exists")

    # A refused request is not remembered: it changed nothing, the key included.
    snap = d.snapshot()
    r = post(c, "/v1/services", {"name": "Bad Name"}, "key-service-2")
    check_error(r, 422, "invalid-field", "a refused POST with a key: 422")
    unchanged(d, snap, "the refused POST stored nothing, not even its key")
    r = post(c, "/v1/services", {"name": "good"}, "key-service-2")
    ok(r.status == 201 and r.header("Idempotent-Replayed") is None,
       "the key of a refused POST can carry a corrected request", repr(r))

    # Revocation is a POST too.
    r1 = post(c, "/v1/images/web/versions/1.0.0/revoke", {"reason": "r"}, "key-revoke")
    r2 = post(c, "/v1/images/web/versions/1.0.0/revoke", {"reason": "r"}, "key-revoke")
    ok(r1.status == r2.status == 200 and r1.raw == r2.raw and r2.header("Idempotent-Replayed") == "true",
       "a revoke with a key is replayed", repr(r1), repr(r2))
    return body, first


def test_concurrent(d):
    n = 20
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        try:
            barrier.wait(timeout=10)
            results[i] = post(Client(socket_path=d.socket_path), "/v1/services", {"name": "conc", "replicas": 2},
                              "key-concurrent")
        except Exception as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    errors = [r for r in results if not hasattr(r, "status")]
    ok(not errors, f"{n} concurrent POSTs with one key all got an answer", *map(repr, errors))
    answers = [r for r in results if hasattr(r, "status")]
    is_(sorted({r.status for r in answers}), [201], "every one of them answers 201",
        *[repr(r) for r in answers if r.status != 201][:3])
    is_(len({r.raw for r in answers}), 1, "every one answers the same body")
    is_(sum(r.header("Idempotent-Replayed") != "true" for r in answers), 1,
        "exactly one answer is the original, the others are replays")
    rows = [row for row in d.snapshot()["services"] if row[1] == "conc"]
    is_(len(rows), 1, "exactly one service row was made")
    is_(len(events_for(d, "service/conc", "service.create")), 1, "exactly one service.create event was written")


def test_interleaved(d):
    """Two requests with one key in flight together: the first to arrive is slow (its body
    trickles in over a second), the second overtakes it. Exactly one effect: the second is
    done, the first, once its body is in, is its replay. And a race of one key with two
    different bodies: one effect; every other answer is a replay of it or 422."""
    body = json.dumps({"name": "overtaken", "replicas": 3}).encode()
    head = (f"POST /v1/services HTTP/1.1\r\nHost: aviary\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: key-slow\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.settimeout(10)
    slow.connect(d.socket_path)
    slow.sendall(head + body[:5])
    time.sleep(0.3)
    fast = post(d.client, "/v1/services", {"name": "overtaken", "replicas": 3}, "key-slow")
    is_(fast.status, 201, "the request that overtook the slow one is done (201)", repr(fast))
    time.sleep(0.3)
    slow.sendall(body[5:])
    got = b""
    while parse_raw_response(got) is None:
        chunk = slow.recv(65536)
        if not chunk:
            break
        got += chunk
    slow.close()
    parsed = parse_raw_response(got)
    ok(parsed is not None and parsed[0] == 201 and parsed[1].get("idempotent-replayed") == "true"
       and parsed[2] == fast.raw, "the slow one, once in, answers the replay of the other", repr(got[:400]))
    is_(len([r for r in d.snapshot()["services"] if r[1] == "overtaken"]), 1, "one service row")
    is_(len(events_for(d, "service/overtaken", "service.create")), 1, "one service.create event")

    n = 16
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        try:
            barrier.wait(timeout=10)
            results[i] = post(Client(socket_path=d.socket_path), "/v1/services",
                              {"name": "race", "replicas": 1 + i % 2}, "key-race")
        except Exception as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    answers = [r for r in results if hasattr(r, "status")]
    is_(len(answers), n, f"{n} racing POSTs of one key with two bodies all got an answer")
    firsts = [r for r in answers if r.status == 201 and r.header("Idempotent-Replayed") is None]
    is_(len(firsts), 1, "exactly one of them was done")
    first = firsts[0] if firsts else None
    others = [r for r in answers if r is not first]
    ok(first is not None and all((r.status == 201 and r.raw == first.raw and r.header("Idempotent-Replayed") == "true")
                                 or (r.status == 422 and r.error_code() == "idempotency-key-reused") for r in others),
       "each other one is its replay (same body) or 422 idempotency-key-reused (the other body)",
       *[repr(r) for r in others][:3])
    is_(len([r for r in d.snapshot()["services"] if r[1] == "race"]), 1, "one service row")
    is_(len(events_for(d, "service/race", "service.create")), 1, "one service.create event")


def test_restart_and_callers(d, body, first):
    d.restart()
    again = post(d.client, "/v1/images/web/versions", body, "key-version-1")
    ok(again.status == first.status and again.raw == first.raw and again.header("Idempotent-Replayed") == "true",
       "a key is still remembered after a restart", repr(again))

    # Keys belong to one caller: over TCP the actor is the token's (token:NAME@127.0.0.1), not our uid.
    secret = d.client.post("/v1/tokens", {"name": "other", "scope": "admin"}).json["token"]
    tcp = Client(tcp_port=d.tcp_port, token=secret)
    r = post(tcp, "/v1/services", {"name": "from-tcp"}, "key-version-1")
    ok(r.status == 201 and r.header("Idempotent-Replayed") is None,
       "another caller's use of the same key is its own request (201, not reused)", repr(r))
    r2 = post(tcp, "/v1/services", {"name": "from-tcp"}, "key-version-1")
    ok(r2.status == 201 and r2.raw == r.raw and r2.header("Idempotent-Replayed") == "true",
       "and is replayed for that caller", repr(r2))


class SourceClient(Client):
    """Over TCP to 127.0.0.1 from another loopback address (127.0.0.2...)."""

    def __init__(self, port, token, source):
        super().__init__(tcp_port=port, token=token)
        self.source = source

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.tcp_port, timeout=self.timeout,
                                          source_address=(self.source, 0))


def test_principals(d):
    """Keys belong to the caller's stable identity (issue 14, item 6): not to a token's name
    (a token re-created under an old name inherited its keys), nor to the caller's address (the
    same token from 127.0.0.2 ran the request again), and the query counts as part of the
    request (promote, then promote?full=true with the key, replayed the first)."""
    c = d.client
    secret = c.post("/v1/tokens", {"name": "ci", "scope": "admin"}).json["token"]
    a = SourceClient(d.tcp_port, secret, "127.0.0.1")
    b = SourceClient(d.tcp_port, secret, "127.0.0.2")
    r1 = post(a, "/v1/services", {"name": "from-a"}, "key-principal")
    r2 = post(b, "/v1/services", {"name": "from-a"}, "key-principal")
    is_(r1.status, 201, "token ci from 127.0.0.1: 201", repr(r1))
    ok(r2.status == 201 and r2.raw == r1.raw and r2.header("Idempotent-Replayed") == "true",
       "the same token and key from 127.0.0.2 is a replay, not a second request", repr(r2))
    is_(len(events_for(d, "service/from-a", "service.create")), 1, "one service.create event")

    is_(c.delete("/v1/tokens/ci").status, 204, "token ci revoked")
    secret = c.post("/v1/tokens", {"name": "ci", "scope": "admin"}).json["token"]
    fresh = SourceClient(d.tcp_port, secret, "127.0.0.1")
    r = post(fresh, "/v1/services", {"name": "from-new-ci"}, "key-principal")
    ok(r.status == 201 and r.header("Idempotent-Replayed") is None,
       "a new token under the old name does not inherit its keys (201, its own request)", repr(r))
    is_(c.get("/v1/services/from-new-ci").status, 200, "and its service exists")

    # The query: promote, then promote?full=true under the same key.
    for tag in ("1", "2"):
        push_version(c, "app", tag)
    c.post("/v1/services", {"name": "roll", "listen": "127.0.0.1:18098"})
    c.post("/v1/services/roll/rollouts", {"version": "app:1"})
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
    is_(c.post("/v1/services/roll/rollouts", {"version": "app:2", "strategy": {"canary": {"steps": steps}}}).status,
        201, "a rollout with pauses")
    base = "/v1/services/roll/rollouts/current"
    r = c.request("POST", base + "/promote", headers={"Idempotency-Key": "key-promote"})
    is_((r.status, (r.json or {}).get("currentStepIndex")), (200, 1), "promote with a key: step 1")
    r = c.request("POST", base + "/promote?full=true", headers={"Idempotency-Key": "key-promote"})
    check_error(r, 422, "idempotency-key-reused", "promote?full=true with the same key is another request: 422")
    r = c.request("POST", base + "/promote", headers={"Idempotency-Key": "key-promote"})
    ok(r.status == 200 and r.header("Idempotent-Replayed") == "true", "promote again with the key is a replay",
       repr(r))


def replayed(first, again):
    """AGAIN is FIRST's answer replayed: same status and body byte for byte, marked."""
    return (again.status == first.status and again.raw == first.raw and again.header("Idempotent-Replayed") == "true"
            and first.header("Idempotent-Replayed") is None)


def test_every_post_route(d):
    """The POST routes test_replay leaves out: image create, rollout create, each rollout
    action and the rollback. A replay answers the first answer (status and body, byte for byte) and does nothing:
    one event, and the rollout's state is what later requests made it, not the replay's."""
    c = d.client

    def key_post(path, body, key):
        return c.request("POST", path, json_body=body, headers={"Idempotency-Key": key})

    def n_events(resource, action):
        return len(events_for(d, resource, action))

    r1 = key_post("/v1/images", {"name": "keyed"}, "key-image")
    r2 = key_post("/v1/images", {"name": "keyed"}, "key-image")
    is_(r1.status, 201, "POST /v1/images with a key: 201", repr(r1))
    ok(replayed(r1, r2), "the same POST /v1/images again is its replay (201, the same body)", repr(r2))
    is_(n_events("image/keyed", "image.create"), 1, "one image.create event")
    check_error(key_post("/v1/images", {"name": "keyed2"}, "key-image"), 422, "idempotency-key-reused",
                "the key with another image: 422")

    for tag in ("1", "2", "3"):
        push_version(c, "idem", tag)
    c.post("/v1/services", {"name": "idem", "listen": "127.0.0.1:18097"})
    c.post("/v1/services/idem/rollouts", {"version": "idem:1"})  # the first deploy: stable idem:1
    base = "/v1/services/idem/rollouts"
    body2 = {"version": "idem:2", "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {}},
                                                                    {"setWeight": 50}, {"pause": {}}]}}}
    r1 = key_post(base, body2, "key-rollout")
    r2 = key_post(base, body2, "key-rollout")
    is_(r1.status, 201, "a rollout created with a key: 201", repr(r1))
    ok(replayed(r1, r2), "the same rollout POST again is its replay (201, the same body)", repr(r2))
    rollouts = c.get(base).json["items"]
    is_(len(rollouts), 2, "no second rollout was made (the replay superseded nothing)", repr(rollouts))
    is_(n_events("service/idem", "rollout.create"), 2, "rollout.create events: the first deploy's and this one")
    rid = r1.json["id"]

    # Each action with a key of its own; its replay comes after another action changed the
    # rollout, and must neither answer today's state nor act again.
    def act(action, key, query=""):
        return key_post(f"{base}/{rid}/{action}{query}", None, key)

    def state():
        ro = c.get(f"{base}/{rid}").json
        return {k: ro[k] for k in ("phase", "paused", "currentStepIndex", "weights")}

    steps = [("pause", "", "rollout.pause"), ("resume", "", "rollout.resume"), ("promote", "", "rollout.promote"),
             ("abort", "", "rollout.abort"), ("retry", "", "rollout.retry"),
             ("promote", "?full=true", "rollout.promote")]
    firsts = []
    for action, query, event in steps:
        before_events = n_events("service/idem", event)
        first = act(action, f"every-{action}{query}", query)
        is_(first.status, 200, f"{action}{query} with a key: 200", repr(first))
        firsts.append((action, query, event, first, n_events("service/idem", event)))
        is_(firsts[-1][4], before_events + 1, f"{action}{query} wrote one {event} event")
    for action, query, event, first, _ in firsts:
        now = state()
        again = act(action, f"every-{action}{query}", query)
        ok(replayed(first, again), f"{action}{query} again with its key, after later actions: the first answer, "
           "byte for byte", repr(first), repr(again))
        is_(state(), now, f"and the replay of {action}{query} changed nothing")
    counts = {e: n_events("service/idem", e) for _, _, e, _, _ in firsts}
    is_(counts, {"rollout.pause": 1, "rollout.resume": 1, "rollout.promote": 2, "rollout.abort": 1,
                 "rollout.retry": 1}, "after all the replays: one event per action done (promote twice)")

    # The rollback route: a rollout too, made by the first request only.
    c.post("/v1/services", {"name": "back", "listen": "127.0.0.1:18096"})
    c.post("/v1/services/back/rollouts", {"version": "idem:1"})  # the first deploy: stable idem:1
    r1 = key_post("/v1/services/back/rollback", {"version": "idem:2"}, "key-rollback")
    r2 = key_post("/v1/services/back/rollback", {"version": "idem:2"}, "key-rollback")
    is_(r1.status, 201, "a rollback with a key: 201", repr(r1))
    ok(replayed(r1, r2), "the same rollback again is its replay (201, the same body)", repr(r2))
    is_(len(c.get("/v1/services/back/rollouts").json["items"]), 2,
        "no third rollout was made (the first deploy and the rollback)")
    is_(n_events("service/back", "rollout.rollback"), 1, "one rollout.rollback event")
    check_error(key_post("/v1/services/back/rollback", {"version": "idem:3"}, "key-rollback"), 422,
                "idempotency-key-reused", "the key with another version: 422")


def test_expiry(d):
    """Keys are kept 24 hours (docs/api.md): a key whose record is 23 h 59 min old still
    answers its replay; one 24 h 1 min old is forgotten, and the same key then carries a new
    request. The records' ages are set in SQLite while aviaryd is stopped."""
    c = d.client
    old = c.request("POST", "/v1/services", json_body={"name": "expiring"}, headers={"Idempotency-Key": "key-old"})
    young = c.request("POST", "/v1/services", json_body={"name": "young"}, headers={"Idempotency-Key": "key-young"})
    is_((old.status, young.status), (201, 201), "two services created with keys")
    d.stop()
    hour = 3600 * 1_000_000
    conn = sqlite3.connect(os.path.join(d.state_dir, "aviary.db"))
    with conn:
        conn.execute("UPDATE idempotency_keys SET created_at = created_at - ? WHERE key = 'key-old'",
                     (24 * hour + 60_000_000,))
        conn.execute("UPDATE idempotency_keys SET created_at = created_at - ? WHERE key = 'key-young'",
                     (24 * hour - 60_000_000,))
    conn.close()
    d.start()  # the hourly housekeeping's first run is a minute away: the request itself decides
    r = c.request("POST", "/v1/services", json_body={"name": "young"}, headers={"Idempotency-Key": "key-young"})
    ok(replayed(young, r), "a key 23 h 59 min old still answers its replay", repr(r))
    snap = d.snapshot()
    r = c.request("POST", "/v1/services", json_body={"name": "fresh-use"}, headers={"Idempotency-Key": "key-old"})
    ok(r.status == 201 and r.header("Idempotent-Replayed") is None,
       "a key 24 h 1 min old is forgotten: the same key carries a new request (201, not 422 reused)", repr(r))
    rows = db_query(d.state_dir, "SELECT path, request_hash != '' FROM idempotency_keys WHERE key = 'key-old'")
    is_(len(rows), 1, "and it is remembered for that new request alone", repr(rows))
    r2 = c.request("POST", "/v1/services", json_body={"name": "fresh-use"}, headers={"Idempotency-Key": "key-old"})
    ok(replayed(r, r2), "which it now replays", repr(r2))
    ok(snap != d.snapshot(), "(the new request did change the database)")


def test_instance_restart():
    """POST /v1/instances/{id}/restart with a key (it needs a runtime: libvirt's test driver
    and fake guests, tests/lib/fakeruntime.py): the replay answers the first 202 and body and
    does not restart the guest again."""
    if not fakeruntime.available():
        skip("instance restart with an Idempotency-Key", "needs root (a network namespace)")
        return
    with fakeruntime.FakeRuntime("idem") as rt:
        d = rt.daemon
        c = d.client
        push_version(c, "app", "1", port=8080)
        c.post("/v1/services", {"name": "web", "stable_version": "app:1", "replicas": 1})
        inst = wait_ready(d, "web")
        if not ok(inst, "an instance of web is ready (fake runtime)", lambda: d.log()[-2000:]):
            return
        path = f"/v1/instances/{inst['id']}/restart"
        first = c.request("POST", path, headers={"Idempotency-Key": "key-restart"})
        is_(first.status, 202, "POST restart with a key: 202", repr(first))
        again_ready = wait_ready(d, "web", newer_than=inst["timings"]["running_at"])
        ok(again_ready, "the instance boots again and is ready")
        boots = len(events_for(d, f"instance/{inst['id']}", "instance.boot"))
        again = c.request("POST", path, headers={"Idempotency-Key": "key-restart"})
        ok(replayed(first, again), "the same restart again is its replay (202, the first body)", repr(again))
        is_(len(events_for(d, f"instance/{inst['id']}", "instance.restart")), 1, "one instance.restart event")
        now = c.get(f"/v1/instances/{inst['id']}").json
        is_((now["state"], now["timings"]["running_at"]), ("ready", again_ready["timings"]["running_at"]),
            "and the guest was not restarted again (same start time)")
        is_(len(events_for(d, f"instance/{inst['id']}", "instance.boot")), boots, "no further instance.boot event")


def wait_ready(d, service, newer_than=None, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i in d.client.get(f"/v1/instances?service={service}").json["items"]:
            if i["state"] == "ready" and (newer_than is None or i["timings"]["running_at"] > newer_than):
                return i
        time.sleep(0.1)
    return None


def body():
    port = free_tcp_port()
    with Daemon(args=["--listen", f"127.0.0.1:{port}"]) as d:
        d.tcp_port = port
        b, first = test_replay(d)
        test_concurrent(d)
        test_interleaved(d)
        test_restart_and_callers(d, b, first)
        test_principals(d)
        test_every_post_route(d)
        test_expiry(d)
    test_instance_restart()


main(body)
