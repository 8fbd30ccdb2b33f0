#!/usr/bin/env python3
"""The instance routes' answers, on a runtime without QEMU (tests/lib/fakeruntime.py:
libvirt's test driver and fake guests in a network namespace of the test's own):

- GET /v1/instances?service=: 404 service-not-found for no such service, 400 invalid-query
  for a value that is no name; the list of a service is its instances.
- GET /v1/instances/{id}, .../console and POST .../restart of an id that does not exist:
  404 instance-not-found; of an id that is no instance id: 400 invalid-name.
- POST restart of a stopped instance (the service scaled down): 409 instance-stopped, and
  nothing changes.
- GET .../console?tail=N: the last N lines (default 100) of STATE/console/ID.log as text/plain,
  a final newline ending the last line, the guest's bytes unfiltered, an empty body before any
  output, the last MiB of a longer log; tail outside 1..10000 or not a number: 400
  invalid-query. (What a real guest writes there: test-guests.py.)
- With runtime = off on the same state: GET still answers, POST restart is 503 unavailable
  and changes nothing."""
import os
import time

import fakeruntime
from aviarytest import check_error, is_, main, ok, push_version, skip, snapshot_diff


def instances(c, service):
    r = c.get(f"/v1/instances?service={service}")
    return r.json["items"] if r.status == 200 else []


def wait(pred, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    return None


def console_path(d, instance_id):
    return os.path.join(d.state_dir, "console", f"{instance_id}.log")


def test_errors(d):
    c = d.client
    check_error(c.get("/v1/instances?service=nosuch"), 404, "service-not-found",
                "GET /v1/instances?service=nosuch: 404 service-not-found")
    for bad in ("Web", "we_b", "-web", "a" * 64, "web%0A"):
        check_error(c.get(f"/v1/instances?service={bad}"), 400, "invalid-query",
                    f"GET /v1/instances?service={bad[:16]}: 400 invalid-query")
    snap = d.snapshot()
    for method, suffix in (("GET", ""), ("GET", "/console"), ("POST", "/restart")):
        check_error(c.request(method, f"/v1/instances/web-00000000{suffix}"), 404, "instance-not-found",
                    f"{method} /v1/instances/web-00000000{suffix}: 404 instance-not-found")
        check_error(c.request(method, f"/v1/instances/Not_An_Id{suffix}"), 400, "invalid-name",
                    f"{method} /v1/instances/Not_An_Id{suffix}: 400 invalid-name")
    ok(d.snapshot() == snap, "none of them changed anything", lambda: snapshot_diff(snap, d.snapshot()))


def test_console(d, inst):
    c = d.client
    base = f"/v1/instances/{inst['id']}/console"
    path = console_path(d, inst["id"])
    try:
        os.unlink(path)  # the test driver writes nothing; this test writes what a guest would
    except FileNotFoundError:
        pass
    r = c.get(base)
    ok(r.status == 200 and r.raw == b"" and (r.header("Content-Type") or "").startswith("text/plain"),
       "no console output yet: 200, an empty text/plain body", repr(r))

    lines = [f"line {n} \x1b[1mbold\x1b[0m \xe9".encode("utf-8") for n in range(1, 151)]
    with open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    r = c.get(base)
    is_(r.raw, b"\n".join(lines[-100:]) + b"\n", "by default the last 100 lines, the final newline included, "
        "escape sequences and UTF-8 as the guest wrote them")
    r = c.get(base + "?tail=3")
    is_(r.raw, b"\n".join(lines[-3:]) + b"\n", "?tail=3: the last 3 lines")
    r = c.get(base + "?tail=10000")
    is_(r.raw, b"\n".join(lines) + b"\n", "?tail=10000: all 150 there are")
    with open(path, "ab") as f:
        f.write(b"nul \x00 and \xff\xfe, not UTF-8\n")
    is_(c.get(base + "?tail=2").raw, lines[-1] + b"\nnul \x00 and \xff\xfe, not UTF-8\n",
        "a NUL and bytes that are no UTF-8 come back as they are, and do not end the answer")
    with open(path, "ab") as f:
        f.write(b"partial")
    is_(c.get(base + "?tail=2").raw, b"nul \x00 and \xff\xfe, not UTF-8\npartial",
        "a last line without its newline is the last line")

    # The last MiB of a longer log: 3 MiB of numbered 64-byte lines.
    with open(path, "wb") as f:
        for n in range(3 * 16384):
            f.write(b"%063d\n" % n)
    r = c.get(base + "?tail=10000")
    ok(r.status == 200 and len(r.raw) == 10000 * 64 and r.raw.endswith(b"%063d\n" % (3 * 16384 - 1)),
       "of a 3 MiB log, ?tail=10000 is its last 10000 lines", f"{len(r.raw)} bytes")
    for tail in ("0", "10001", "-1", "abc", "", "1.5", "99999999999999999999"):
        check_error(c.get(base + f"?tail={tail}"), 400, "invalid-query", f"?tail={tail}: 400 invalid-query")


def body(rt):
    d = rt.daemon
    c = d.client
    push_version(c, "app", "1", port=8080)
    is_(c.post("/v1/services", {"name": "web", "stable_version": "app:1", "replicas": 2}).status, 201,
        "a service of 2 replicas")
    ready = wait(lambda: (lambda items: items if len([i for i in items if i["state"] == "ready"]) == 2 else None)(
        instances(c, "web")))
    if not ok(ready, "its 2 instances are ready (fake guests)", lambda: d.log()[-2000:]):
        return
    is_(sorted(i["service"] for i in instances(c, "web")), ["web", "web"], "?service=web lists them")
    test_errors(d)
    test_console(d, ready[0])

    # A stopped instance cannot be restarted.
    is_(c.patch("/v1/services/web", {"replicas": 1}).status, 200, "scaled down to 1")
    stopped = wait(lambda: [i for i in instances(c, "web") if i["state"] == "stopped"])
    if ok(stopped, "one instance is stopped"):
        snap = d.snapshot()
        check_error(c.post(f"/v1/instances/{stopped[0]['id']}/restart"), 409, "instance-stopped",
                    "POST restart of a stopped instance: 409 instance-stopped")
        ok(d.snapshot() == snap, "and nothing changed", lambda: snapshot_diff(snap, d.snapshot()))
    live = [i for i in instances(c, "web") if i["state"] == "ready"]

    # runtime = off on the same state: reads answer, a restart is 503.
    with open(d.config_path, "a", encoding="utf-8") as f:
        f.write("runtime = off\n")
    d.restart()
    is_(c.get(f"/v1/instances/{live[0]['id']}").status, 200, "runtime = off: GET of an instance answers")
    is_(c.get(f"/v1/instances/{live[0]['id']}/console?tail=1").status, 200, "and so does its console")
    snap = d.snapshot()
    check_error(c.post(f"/v1/instances/{live[0]['id']}/restart"), 503, "unavailable",
                "runtime = off: POST restart is 503 unavailable")
    ok(d.snapshot() == snap, "and changes nothing", lambda: snapshot_diff(snap, d.snapshot()))


def run():
    if not fakeruntime.available():
        skip("instance routes on a fake runtime", "needs root (a network namespace)")
        return
    with fakeruntime.FakeRuntime("inst") as rt:
        body(rt)


main(run)
