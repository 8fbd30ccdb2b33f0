#!/usr/bin/env python3
"""Live answers against the contract: every route of the route table (`aviaryd --routes`) is
called for a success and for errors, on a real aviaryd, and every answer is validated against
api/openapi.yaml with python3-jsonschema (tests/lib/contract.py: the status must be documented
for the operation, and the body must fit that status's schema). Every answer of every other
integration test is validated the same way (aviarytest.Client); this test makes sure none is
left out: at the end, each operation must have answered a 2xx and a 4xx here.

Two daemons: one without guests, with a TCP listener and tokens (401, 403); one with guests on
libvirt's test:///default driver inside a network namespace of the test's own, for the
instance routes (its domains "run" without QEMU: the answers are aviaryd's own)."""
import os
import subprocess
import tempfile

from aviarytest import Client, Daemon, free_tcp_port, main, ok, random_bytes

LOG = tempfile.NamedTemporaryFile(prefix="aviary-contract-", suffix=".log", delete=False).name
os.environ["AVIARY_CONTRACT_LOG"] = LOG
import contract  # noqa: E402  (after the log is set)

KERNEL, KDIGEST = random_bytes(4096)


def api_routes(d):
    for method, path in [("GET", "/v1/health"), ("GET", "/v1/version"), ("GET", "/v1/health?x=1"), ("GET", "/metrics")]:
        d.request(method, path)
    c = d.client
    # blobs
    c.put_blob(KERNEL)
    c.put_blob(KERNEL)                                                  # 200: already there
    c.put_blob(b"x", digest="sha256:" + "0" * 64)                       # 400 digest-mismatch
    c.get("/v1/blobs")
    c.get(f"/v1/blobs/{KDIGEST}")
    c.head(f"/v1/blobs/{KDIGEST}")
    c.get("/v1/blobs/sha256:" + "1" * 64)                               # 404
    c.head("/v1/blobs/sha256:" + "1" * 64)                              # 404
    c.get("/v1/blobs/nope")                                             # 400
    other, other_digest = random_bytes(100)
    c.put_blob(other)
    c.delete(f"/v1/blobs/{other_digest}")
    c.delete("/v1/blobs/sha256:" + "2" * 64)
    # images and versions
    c.post("/v1/images", {"name": "web"})
    c.post("/v1/images", {"name": "web"})                               # 409
    c.post("/v1/images", {"name": "Bad Name"})                          # 422
    c.get("/v1/images")
    c.get("/v1/images/web")
    c.get("/v1/images/nope")
    for tag in ("1", "2", "3"):
        c.post("/v1/images/web/versions", {"version": tag, "kernel": KDIGEST, "cmdline": "console=ttyS0", "port": 80})
    c.post("/v1/images/web/versions", {"version": "x", "kernel": "sha256:" + "3" * 64})   # 422 blob not found
    c.post("/v1/images/web/versions", "not json", content_type="application/json")  # 400
    c.get("/v1/images/web/versions")
    c.get("/v1/images/nope/versions")
    c.get("/v1/images/web/versions/1")
    c.get("/v1/images/web/versions/9")
    c.request("PUT", "/v1/images/web/versions/1")                       # 405 version-immutable
    c.post("/v1/images/web/versions/3/revoke", {"reason": "test"})
    c.post("/v1/images/web/versions/9/revoke", {})
    c.delete("/v1/images/web/versions/2")
    c.delete("/v1/images/web/versions/9")
    c.post("/v1/images", {"name": "gone"})
    c.delete("/v1/images/gone")
    c.delete("/v1/images/gone")
    # services
    c.post("/v1/services", {"name": "svc", "listen": "127.0.0.1:18081", "replicas": 0})
    c.post("/v1/services", {"name": "svc"})                             # 409
    c.post("/v1/services", {"name": "x", "replicas": 99})               # 422
    c.get("/v1/services")
    c.get("/v1/services/svc")
    c.get("/v1/services/nope")
    c.patch("/v1/services/svc", {"replicas": 0}, headers={"If-Match": '"1"'})
    c.patch("/v1/services/svc", {"replicas": 0}, headers={"If-Match": '"1"'})   # 412
    c.get("/v1/services/svc/traffic")
    c.get("/v1/services/nope/traffic")
    # rollouts
    c.post("/v1/services/svc/rollouts", {"version": "web:1"})          # first deploy
    c.post("/v1/services/svc/rollouts", {"version": "web:3"})          # 409 revoked
    c.post("/v1/services/svc/rollouts", {"version": "web:4"})          # 404... web:4 does not exist
    c.post("/v1/images/web/versions", {"version": "4", "kernel": KDIGEST, "port": 80})
    r = c.post("/v1/services/svc/rollouts", {"version": "web:4", "strategy": {"canary": {"steps": [
        {"setWeight": 10}, {"pause": {}}]}}})
    rid = r.json["id"] if r.status == 201 else 0
    c.get("/v1/services/svc/rollouts")
    c.get("/v1/services/nope/rollouts")
    c.get(f"/v1/services/svc/rollouts/{rid}")
    c.get("/v1/services/svc/rollouts/current")
    c.get("/v1/services/svc/rollouts/999")
    c.get(f"/v1/services/svc/rollouts/{rid}?wait=done&timeout=1ms")    # 504 wait-timeout
    c.get(f"/v1/services/svc/rollouts/{rid}?wait=bogus")                 # 400
    for action in ("pause", "pause", "resume", "resume", "promote", "abort", "abort", "retry", "retry"):
        c.post(f"/v1/services/svc/rollouts/{rid}/{action}")
    c.post("/v1/services/svc/rollouts/999/promote")
    c.get("/ui/")
    c.get("/ui/app.js")
    c.get("/ui/nope.js")                                               # 404
    c.post("/v1/services/svc/rollback", {"version": "web:3"})          # 409 revoked
    c.post("/v1/services/svc/rollback", {"bogus": 1})                  # 422
    c.post("/v1/services/svc/rollback")                                # 409: no earlier successful rollout
    c.post("/v1/services/svc/rollback", {"version": "web:4"})          # 201 (web:2 was deleted)
    c.delete("/v1/services/svc")
    c.delete("/v1/services/svc")                                        # 404
    # instances, without guests: 503 for a restart, 404 and 400 for lookups
    c.get("/v1/instances")
    c.get("/v1/instances?service=nope")
    c.get("/v1/instances?service=Bad!")
    c.get("/v1/instances/nope-12345678")
    c.post("/v1/instances/nope-12345678/restart")
    c.get("/v1/instances/nope-12345678/console")
    # events and tokens
    c.get("/v1/events")
    c.get("/v1/events?resource=image/web")
    c.get("/v1/events?after=x")
    r = c.post("/v1/tokens", {"scope": "read", "name": "reader"})
    reader = r.json.get("token") if r.status == 201 else None
    c.post("/v1/tokens", {"scope": "read", "name": "reader"})           # 409
    c.post("/v1/tokens", {"scope": "root"})                              # 422
    c.get("/v1/tokens")
    c.post("/v1/tokens", {"scope": "read", "name": "temp"})
    c.delete("/v1/tokens/temp")
    c.delete("/v1/tokens/temp")
    return reader


def tcp_answers(port, reader):
    anonymous = Client(tcp_port=port)
    anonymous.get("/v1/images")                                          # 401
    if reader:
        low = Client(tcp_port=port, token=reader)
        low.post("/v1/images", {"name": "x"})                            # 403
        low.delete("/v1/tokens/reader")                                  # 403
        low.get("/v1/events")


def guest_routes(d):
    c = d.client
    c.put_blob(KERNEL)
    c.post("/v1/images/web/versions", {"version": "1", "kernel": KDIGEST, "port": 80})
    c.post("/v1/services", {"name": "g", "stable_version": "web:1", "replicas": 1, "listen": "127.0.0.1:18082"})
    import time
    deadline = time.monotonic() + 30
    items = []
    while time.monotonic() < deadline and not items:
        r = c.get("/v1/instances?service=g")
        items = [i for i in (r.json or {}).get("items", []) if i.get("domain_uuid")]
        time.sleep(0.2)
    ok(items, "an instance runs on the test driver")
    if items:
        iid = items[0]["id"]
        c.get(f"/v1/instances/{iid}")
        c.get(f"/v1/instances/{iid}/console?tail=5")
        c.get(f"/v1/instances/{iid}/console?tail=0")                    # 400
        c.post(f"/v1/instances/{iid}/restart")
    c.get("/v1/services/g/traffic")
    # scale to zero: sleep and wake (202), a service that does not scale to zero (409), none (404)
    c.post("/v1/services/g/sleep")                                      # 409 scale-to-zero-off
    c.patch("/v1/services/g", {"scale_to_zero": {"idle": "1h"}})
    c.post("/v1/services/g/sleep")
    c.get("/v1/services/g")
    c.post("/v1/services/g/wake")
    c.post("/v1/services/nope/wake")                                    # 404
    c.post("/v1/services/nope/sleep")                                   # 404


def coverage():
    contract.load()
    seen = {}
    with open(LOG, encoding="utf-8") as f:
        for line in f:
            method, template, status = line.split()
            seen.setdefault((method, template), set()).add(int(status))
    for regex, template, method, op in contract._operations:
        if set(op.get("responses", {})) == {"405"}:
            ok(405 in seen.get((method, template), set()), f"{method} {template}: its documented 405 was seen")
            continue
        statuses = seen.get((method, template), set())
        ok(any(200 <= s < 300 for s in statuses), f"{method} {template}: a 2xx was validated",
           f"seen: {sorted(statuses)}")
        ok(any(400 <= s < 500 for s in statuses) or method in ("GET", "HEAD") and template in (
            "/v1/health", "/v1/version", "/metrics", "/v1/blobs", "/v1/images", "/v1/services", "/v1/tokens", "/ui/"),
           f"{method} {template}: a 4xx was validated (or it has no input to get wrong)", f"seen: {sorted(statuses)}")


def body():
    port = free_tcp_port()
    with tempfile.NamedTemporaryFile("w", delete=False) as t:
        t.write("a-bootstrap-token-of-enough-length\n")
    os.chmod(t.name, 0o600)
    with Daemon(config={"listen": f"127.0.0.1:{port}", "token_file": t.name}) as d:
        reader = api_routes(d)
        tcp_answers(port, reader)
    os.unlink(t.name)
    if os.geteuid() == 0:
        netns = f"aviary-contract-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        try:
            subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
            with Daemon(runtime=True, wrapper=["ip", "netns", "exec", netns], ready_timeout=30,
                        config={"libvirt_uri": "test:///default", "boot_timeout": "1h"}) as d:
                guest_routes(d)
        finally:
            subprocess.run(["ip", "netns", "delete", netns], check=False)
    coverage()
    os.unlink(LOG)


main(body)
