#!/usr/bin/env python3
"""GET /v1/events?follow=true as Server-Sent Events (issue 12): each event's id: is its sequence
number; a client that disconnects and comes back with Last-Event-ID gets every event it missed,
none twice; ?service= and ?type= filter; an idle stream gets heartbeats; new events reach every
follower at the commit (no re-query loop); 64 followers at once while a plain GET still answers
(its latency is reported, not asserted); a listener lets half its connection_limit follow and
refuses one more with 429 while the API still answers; bad input is a JSON 4xx that changes
nothing; a rollout long poll answers when the change commits."""
import os
import socket
import threading
import time

from aviarytest import Daemon, check_error, diag, is_, like, main, ok, push_version, create_service


class Stream:
    """A raw SSE client on the unix socket: collects (id, event, data) as they arrive."""

    def __init__(self, sock_path, query="", last_id=None, timeout=30):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(sock_path)
        hdrs = "Accept: text/event-stream\r\n" + (f"Last-Event-ID: {last_id}\r\n" if last_id is not None else "")
        self.s.sendall(f"GET /v1/events?follow=true{query} HTTP/1.1\r\nHost: aviary\r\n{hdrs}\r\n".encode())
        self.buf = b""
        self.head = None
        self.events = []
        self.comments = 0

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("the stream closed")
        self.buf += chunk

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.head = head.decode("latin-1")
        return self.head

    def _parse(self):
        # Chunked transfer: strip the chunk framing, keep the payload.
        out = b""
        while True:
            line, sep, rest = self.buf.partition(b"\r\n")
            if not sep:
                break
            size = int(line.split(b";")[0], 16)
            if len(rest) < size + 2:
                break
            out += rest[:size]
            self.buf = rest[size + 2:]
        self.payload = getattr(self, "payload", b"") + out
        while b"\n\n" in self.payload:
            block, _, self.payload = self.payload.partition(b"\n\n")
            fields = {}
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    self.comments += 1
                    continue
                k, _, v = line.partition(": ")
                fields[k] = v
            if "id" in fields:
                self.events.append((int(fields["id"]), fields.get("event"), fields.get("data")))

    def wait(self, predicate, timeout=30):
        deadline = time.monotonic() + timeout
        if self.head is None:
            self.read_head()
        self._parse()
        while not predicate(self) and time.monotonic() < deadline:
            self.s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                self._fill()
            except socket.timeout:
                break
            self._parse()
        return predicate(self)

    def close(self):
        self.s.close()


def all_ids(d):
    return [e["id"] for e in d.events()]


def test_resume(d):
    c = d.client
    s = Stream(d.socket_path, "&after=0")
    head = s.read_head()
    like(head, r"^HTTP/1\.1 200", "the stream answers 200")
    like(head, r"(?im)^Content-Type: text/event-stream", "as text/event-stream")
    for i in range(5):
        c.post("/v1/images", {"name": f"a{i}"})
    ok(s.wait(lambda x: len(x.events) >= 5), "5 new events arrive on the stream", lambda: repr(s.events))
    is_([e[0] for e in s.events], all_ids(d)[:5], "their id: lines are the events' sequence numbers, in order")
    is_(s.events[0][1], "image.create", "event: is the action")
    last = s.events[-1][0]
    s.close()
    for i in range(7):  # while nobody listens
        c.post("/v1/images", {"name": f"b{i}"})
    s2 = Stream(d.socket_path, last_id=last)
    c.post("/v1/images", {"name": "c0"})
    ok(s2.wait(lambda x: len(x.events) >= 8), "after reconnecting with Last-Event-ID the 7 missed and 1 new arrive")
    got = [e[0] for e in s.events] + [e[0] for e in s2.events]
    is_(got, all_ids(d), "none missing, none twice, in order: exactly the event log")
    s2.close()


def test_filters(d):
    c = d.client
    push_version(c, "app", "1")
    push_version(c, "app", "2")
    create_service(c, "web", replicas=1)
    create_service(c, "api", replicas=1)
    only_web = Stream(d.socket_path, "&service=web")
    only_rollouts = Stream(d.socket_path, "&type=rollout")
    only_web.read_head()
    only_rollouts.read_head()
    c.patch("/v1/services/api", {"replicas": 2})
    c.post("/v1/services/web/rollouts", {"version": "app:1", "strategy": {"canary": {"analysis": {"enabled": False}}}})
    c.patch("/v1/services/web", {"replicas": 2})
    c.post("/v1/images", {"name": "marker"})
    ok(only_web.wait(lambda x: len(x.events) >= 2), "?service=web: web's events arrive")
    ok(only_rollouts.wait(lambda x: len(x.events) >= 1), "?type=rollout: the rollout event arrives")
    time.sleep(0.5)
    only_web.wait(lambda x: False, timeout=0.5)
    only_rollouts.wait(lambda x: False, timeout=0.5)
    is_(sorted({e[1] for e in only_web.events}), ["rollout.create", "service.update"],
        "?service=web kept web's events only", repr(only_web.events))
    is_([e[1] for e in only_rollouts.events], ["rollout.create"], "?type=rollout kept rollout.* only")
    only_web.close()
    only_rollouts.close()


def test_bad_input(d):
    c = d.client
    snap = d.snapshot()
    sse = {"Accept": "text/event-stream"}
    check_error(c.get("/v1/events?follow=true"), 400, "invalid-query", "follow=true without Accept: text/event-stream")
    check_error(c.get("/v1/events?follow=maybe", headers=sse), 400, "invalid-query", "follow=maybe")
    check_error(c.get("/v1/events?follow=true&service=Bad_Name", headers=sse), 400, "invalid-query", "a bad service")
    check_error(c.get("/v1/events?follow=true&type=a%20b", headers=sse), 400, "invalid-query", "a bad type")
    check_error(c.get("/v1/events?follow=true", headers=dict(sse, **{"Last-Event-ID": "x"})), 400, "bad-request",
                "a Last-Event-ID that is not an id")
    check_error(c.get("/v1/events?type=rollout"), 400, "invalid-query", "type without follow=true")
    ok(d.snapshot() == snap, "none of them changed anything")


def test_heartbeat_and_long_poll(d):
    s = Stream(d.socket_path)
    ok(s.wait(lambda x: x.comments >= 1, timeout=20), "an idle stream gets a heartbeat (event_heartbeat = 1)")
    s.close()
    c = d.client
    r = c.post("/v1/services/web/rollouts", {"version": "app:2", "strategy": {"canary": {
        "steps": [{"pause": {}}], "analysis": {"enabled": False}}}})
    is_(r.status, 201, "a rollout that waits at a pause")
    answer = {}

    def wait():
        t0 = time.monotonic()
        answer["r"] = c.get("/v1/services/web/rollouts/current?wait=done&timeout=60s")
        answer["s"] = time.monotonic() - t0

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    c.post("/v1/services/web/rollouts/current/abort")
    t.join(60)
    r = answer.get("r")
    ok(r is not None and r.status == 200 and r.json.get("phase") == "Degraded",
       "the long poll answers with the aborted rollout", repr(r))
    diag(f"long poll answered {1000 * (time.monotonic() - t0):.1f} ms after the abort was sent (woken at the commit)")


def test_many_followers(d):
    c = d.client
    streams = [Stream(d.socket_path) for _ in range(64)]
    for s in streams:
        s.read_head()
    gauge = [line for line in c.get("/metrics").raw.decode().splitlines()
             if line.startswith("aviary_event_stream_followers ")]
    is_(gauge, ["aviary_event_stream_followers 64"], "64 followers are counted")
    lat = []
    for _ in range(20):
        t0 = time.monotonic()
        r = c.get("/v1/services")
        lat.append((time.monotonic() - t0) * 1000)
        if r.status != 200:
            break
    is_(len(lat), 20, "with 64 followers a plain GET /v1/services still answers, 20 times in a row")
    lat.sort()
    diag(f"GET /v1/services with 64 followers: median {lat[len(lat) // 2]:.1f} ms, worst {lat[-1]:.1f} ms")
    c.post("/v1/images", {"name": "to-all"})
    got = sum(1 for s in streams if s.wait(lambda x: any(e[1] == "image.create" for e in x.events), timeout=30))
    is_(got, 64, "the new event reached all 64 followers")
    for s in streams:
        s.close()


def test_limit():
    with Daemon(config={"connection_limit": "40"}) as d:
        streams = [Stream(d.socket_path) for _ in range(20)]
        for s in streams:
            s.read_head()
        extra = Stream(d.socket_path)
        head = extra.read_head()
        like(head, r"^HTTP/1\.1 429", "connection_limit 40: the 21st follower gets 429 (half may follow)")
        extra.close()
        is_(d.client.get("/v1/health").status, 200, "and the API still answers")
        for s in streams:
            s.close()


def run():
    with Daemon(config={"event_heartbeat": "1"}) as d:
        test_resume(d)
        test_filters(d)
        test_bad_input(d)
        test_heartbeat_and_long_poll(d)
        test_many_followers(d)
    test_limit()


main(run)
