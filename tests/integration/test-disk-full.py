#!/usr/bin/env python3
"""Disk full: the state directory on a 24 MiB tmpfs of the test's own (root only; skipped
otherwise), runtime off. Blobs are uploaded until one fails: that PUT is 507 storage-full
in the error envelope and leaves nothing behind (GET/HEAD of its digest 404, no file or
temporary in the blob directory beyond the acknowledged blobs). With the file system filled
to the last byte by a filler file of the test, JSON changes (an image version, a service)
are 507 too and change nothing, and so are an upload whose bytes do not fit and one whose
bytes fit but whose database row does not (its file must not stay behind). Through all of it the daemon keeps running, PRAGMA integrity_check is ok, every
acknowledged blob, version and service is there, and the blob files match their digests.
Once space is freed (the filler removed, blobs deleted through the API) everything works
again, also after a restart."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import fakeruntime

from aviarytest import (Daemon, blob_file_path, check_error, diag, file_digest, integrity_check, is_, like, main, ok,
                        push_version, random_bytes, skip, snapshot_diff)

MiB = 1 << 20
SIZE_MIB = 24


def acknowledged_state(d, blobs, versions, services, desc):
    """Every acknowledged thing is there and sound."""
    c = d.client
    is_(integrity_check(d.state_dir), "ok", f"{desc}: PRAGMA integrity_check is ok")
    missing = [dg for dg in blobs if c.head(f"/v1/blobs/{dg}").status != 200]
    is_(missing, [], f"{desc}: every acknowledged blob ({len(blobs)}) answers HEAD 200")
    bad = [dg for dg in blobs if not os.path.exists(blob_file_path(d.state_dir, dg))
           or file_digest(blob_file_path(d.state_dir, dg)) != dg]
    is_(bad, [], f"{desc}: every acknowledged blob's file matches its digest")
    names = sorted(os.listdir(os.path.join(d.state_dir, "blobs", "sha256")))
    is_(names, sorted(dg.split(":", 1)[1] for dg in blobs),
        f"{desc}: the blob directory holds exactly the acknowledged blobs (no temporary, no stray file)")
    lost = [v for v in versions if c.get(f"/v1/images/{v[0]}/versions/{v[1]}").status != 200]
    is_(lost, [], f"{desc}: every acknowledged version ({len(versions)}) is there")
    lost = [s for s in services if c.get(f"/v1/services/{s}").status != 200]
    is_(lost, [], f"{desc}: every acknowledged service ({len(services)}) is there")


def fill(path):
    """Writes to PATH until the file system is full; returns the bytes written."""
    n = 0
    chunk = b"\0" * (64 * 1024)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            try:
                n += os.write(fd, chunk)
            except OSError:
                break
        while True:  # the last few bytes
            try:
                if os.write(fd, b"\0") != 1:
                    break
                n += 1
            except OSError:
                break
    finally:
        os.close(fd)
    return n


def test_full(d, filler):
    c = d.client
    blobs, versions, services = [], [], []
    kernel = None

    # Some of everything first, while there is room.
    data, kernel = random_bytes(64 * 1024)
    is_(c.put_blob(data, kernel).status, 201, "a kernel blob is uploaded")
    blobs.append(kernel)
    for i in range(3):
        push_version(c, "web", f"1.{i}", kernel=kernel)
        versions.append(("web", f"1.{i}"))
    r = c.post("/v1/services", {"name": "svc", "stable_version": "web:1.0"})
    is_(r.status, 201, "a service is created", repr(r))
    services.append("svc")
    # Things for the other write paths to act on: an empty image, a second service, a rollout
    # with pauses, a token, an unreferenced blob.
    made = [c.post("/v1/images", {"name": "empty"}),
            c.post("/v1/services", {"name": "other", "listen": "127.0.0.1:18090"}),
            c.post("/v1/services", {"name": "roll", "stable_version": "web:1.0", "listen": "127.0.0.1:18091"}),
            c.post("/v1/services/roll/rollouts", {"version": "web:1.1", "strategy": {"canary": {"steps": [
                {"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]}}}),
            c.post("/v1/tokens", {"scope": "read", "name": "existing"})]
    ok(all(r.status == 201 for r in made), "an empty image, two more services, a rollout and a token are made",
       *[repr(r) for r in made if r.status != 201])
    services += ["other", "roll"]
    spare, spare_digest = random_bytes(4096)
    is_(c.put_blob(spare, spare_digest).status, 201, "an unreferenced blob is uploaded")
    blobs.append(spare_digest)

    # A reserve the operator frees later: the space the 1 MiB uploads leave over when one is
    # refused is whatever it happens to be (a few KiB or none at all), and a delete through
    # the API needs a few pages of WAL to run.
    reserve = filler + ".reserve"
    with open(reserve, "wb") as f:
        f.write(b"\0" * MiB)

    # Upload 1 MiB blobs until one is refused.
    failed = None
    for i in range(4 * SIZE_MIB):
        data, digest = random_bytes(MiB)
        r = c.put_blob(data, digest)
        if r.status == 201:
            blobs.append(digest)
            continue
        failed = (r, digest)
        break
    ok(failed is not None, f"uploads fail once the {SIZE_MIB} MiB file system is full "
       f"(after {len(blobs) - 1} blobs of 1 MiB)")
    if failed is None:
        return
    r, digest = failed
    check_error(r, 507, "storage-full", "the upload that does not fit: 507 storage-full in the error envelope")
    ok(d.running(), "the daemon is still running")
    is_(c.head(f"/v1/blobs/{digest}").status, 404, "HEAD of the refused blob: 404")
    is_(c.get(f"/v1/blobs/{digest}").status, 404, "GET of the refused blob: 404")
    acknowledged_state(d, blobs, versions, services, "after the refused upload")

    # Fill the file system to the last byte with a file of our own.
    n = fill(filler)
    diag(f"the filler took the last {n} bytes")
    snap = d.snapshot()
    r = c.post("/v1/images/web/versions", {"version": "2.0", "kernel": kernel})
    check_error(r, 507, "storage-full", "creating a version on a full disk: 507 storage-full")
    r = c.post("/v1/services", {"name": "later", "stable_version": "web:1.1"})
    check_error(r, 507, "storage-full", "creating a service on a full disk: 507 storage-full")
    r = c.patch("/v1/services/svc", {"replicas": 3})
    check_error(r, 507, "storage-full", "changing a service on a full disk: 507 storage-full")
    # Every other write path of the API (a full disk refuses deletes too: SQLite's WAL must
    # grow for any change).
    for method, path, body, desc in (
            ("POST", "/v1/images", {"name": "full"}, "creating an image"),
            ("DELETE", "/v1/images/empty", None, "deleting an image"),
            ("DELETE", "/v1/images/web/versions/1.2", None, "deleting a version"),
            ("POST", "/v1/images/web/versions/1.2/revoke", {"reason": "disk"}, "revoking a version"),
            ("DELETE", "/v1/services/other", None, "deleting a service"),
            ("POST", "/v1/services/svc/rollouts", {"version": "web:1.1", "strategy": {"canary": {"analysis": {
                "enabled": False}}}}, "starting a rollout"),
            ("POST", "/v1/services/roll/rollouts/current/pause", None, "pausing a rollout"),
            ("POST", "/v1/services/roll/rollouts/current/promote", None, "promoting a rollout"),
            ("POST", "/v1/services/roll/rollouts/current/abort", None, "aborting a rollout"),
            ("POST", "/v1/services/svc/rollback", {"version": "web:1.1"}, "rolling a service back"),
            ("POST", "/v1/tokens", {"scope": "read", "name": "full"}, "creating a token"),
            ("DELETE", "/v1/tokens/existing", None, "revoking a token"),
            ("DELETE", f"/v1/blobs/{spare_digest}", None, "deleting a blob")):
        r = c.request(method, path, json_body=body)
        check_error(r, 507, "storage-full", f"{desc} on a full disk: 507 storage-full")
    # The idempotency record is part of the transaction: a key whose request failed on a full
    # disk is not remembered, and carries the request again once there is room.
    r = c.request("POST", "/v1/images", json_body={"name": "keyed"}, headers={"Idempotency-Key": "full-key"})
    check_error(r, 507, "storage-full", "a POST with an Idempotency-Key on a full disk: 507 storage-full")
    small, small_digest = random_bytes(4096)
    r = c.put_blob(small, small_digest)
    check_error(r, 507, "storage-full", "a 4 KiB upload on a full disk: 507 storage-full")
    ok(d.snapshot() == snap, "none of them changed anything", lambda: snapshot_diff(snap, d.snapshot()))
    is_(c.head(f"/v1/blobs/{small_digest}").status, 404, "the 4 KiB blob is not there")

    # Room for a blob's bytes but not for its row: the file is written and linked before the
    # row's transaction fails. The link must go with the transaction.
    os.truncate(filler, os.path.getsize(filler) - 8192)
    tiny, tiny_digest = random_bytes(4096)
    r = c.put_blob(tiny, tiny_digest)
    check_error(r, 507, "storage-full", "an upload whose bytes fit but whose row does not: 507 storage-full")
    is_(c.head(f"/v1/blobs/{tiny_digest}").status, 404, "that blob is not there (HEAD 404)")
    ok(not os.path.exists(blob_file_path(d.state_dir, tiny_digest)), "and its file is gone with the transaction")
    fill(filler)
    ok(d.snapshot() == snap, "the database is still as it was", lambda: snapshot_diff(snap, d.snapshot()))
    r = c.get("/v1/services/svc")
    ok(r.status == 200 and r.json["replicas"] == 1, "reads still work on a full disk", repr(r))
    ok(d.running(), "the daemon is still running")
    acknowledged_state(d, blobs, versions, services, "on the full disk")

    # Free space: the filler goes, and blobs are deleted through the API.
    os.unlink(filler)
    os.unlink(reserve)
    for dg in blobs[-3:]:
        is_(c.delete(f"/v1/blobs/{dg}").status, 204, f"blob {dg[:15]}… is deleted through the API")
    del blobs[-3:]
    r = c.put_blob(small, small_digest)
    is_(r.status, 201, "with space again, the 4 KiB upload is accepted", repr(r))
    blobs.append(small_digest)
    data, digest = random_bytes(MiB)
    r = c.put_blob(data, digest)
    is_(r.status, 201, "and a 1 MiB one", repr(r))
    blobs.append(digest)
    r = c.post("/v1/images/web/versions", {"version": "2.0", "kernel": kernel})
    is_(r.status, 201, "a version is created", repr(r))
    versions.append(("web", "2.0"))
    r = c.post("/v1/services", {"name": "later", "stable_version": "web:2.0"})
    is_(r.status, 201, "a service is created", repr(r))
    services.append("later")
    r = c.request("POST", "/v1/images", json_body={"name": "keyed"}, headers={"Idempotency-Key": "full-key"})
    ok(r.status == 201 and r.header("Idempotent-Replayed") is None,
       "the key of the POST refused on the full disk carries it now (201, not a replayed 507)", repr(r))
    r = c.post("/v1/services/roll/rollouts/current/promote")
    is_((r.status, (r.json or {}).get("currentStepIndex")), (200, 1),
        "the rollout the full disk held back is promoted from where it was (step 0 to 1)", repr(r))
    acknowledged_state(d, blobs, versions, services, "after space was freed")

    d.restart()
    acknowledged_state(d, blobs, versions, services, "after a restart")


def test_full_runtime():
    """With the runtime on (libvirt's test driver and fake guests, tests/lib/fakeruntime.py;
    no QEMU). An instance restart on a full disk is 507 and changes nothing: a restart is a wish
    the API writes, and it could not be written, so the guest is not touched either. A
    controller write: a guest of service "late" boots while nothing answers on its port; with
    the disk full, its port starts answering, and the controller, which cannot record that it
    is ready, keeps running and leaves the database as it was; once there is room it records
    it (the next pass probes the guest again)."""
    if not fakeruntime.available():
        skip("disk full with the runtime on", "needs root (a network namespace)")
        return
    mounted = []
    late_server = []

    def mount(d):
        os.makedirs(d.state_dir)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MIB}m,mode=0750", "tmpfs", d.state_dir],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"cannot mount a tmpfs: {p.stderr.strip()}")
        mounted.append(d.state_dir)

    try:
        with fakeruntime.FakeRuntime("full", before_start=mount) as rt:
            d, c = rt.daemon, rt.daemon.client
            push_version(c, "app", "1", port=8080)
            push_version(c, "app", "2", port=8081)  # the fake guests answer on 8080 only, for now
            c.post("/v1/services", {"name": "web", "stable_version": "app:1", "replicas": 1})
            c.post("/v1/services", {"name": "late", "stable_version": "app:2", "replicas": 1})
            inst = wait_instance(d, lambda i: i["state"] == "ready")
            late = wait_instance(d, lambda i: i["state"] == "booting", service="late")
            if not ok(inst and late, "web's instance is ready, late's boots and is not ready (fake runtime)",
                      lambda: d.log()[-2000:]):
                return
            filler = os.path.join(d.state_dir, "filler")
            fill(filler)
            snap = d.snapshot()
            r = c.post(f"/v1/instances/{inst['id']}/restart")
            check_error(r, 507, "storage-full", "restarting an instance on a full disk: 507 storage-full")

            # late's guest answers from now on: its readiness probe (each pass, 2 s) passes, and
            # the controller cannot write it down. Two passes and the probes' answers are its
            # chance to do harm.
            late_server.append(subprocess.Popen(
                ["ip", "netns", "exec", rt.netns, sys.executable, "-c", fakeruntime.SERVER, "8081"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            tried = f"Instance {late['id']}: its guest answers, but that cannot be recorded"
            wait_for_log(d, tried, 10)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and d.running() and d.snapshot() == snap:
                time.sleep(0.5)
            like(d.log(), re.escape(tried), "the controller found late's guest ready and tried to record it "
                 "(its write failed, and it says so)")
            ok(d.running(), "the daemon keeps running while its controller cannot write", lambda: d.log()[-2000:])
            ok(d.snapshot() == snap, "nothing changed in the database, half-written or whole",
               lambda: snapshot_diff(snap, d.snapshot()))
            is_(integrity_check(d.state_dir), "ok", "PRAGMA integrity_check is ok on the full disk")
            r = c.get(f"/v1/instances/{late['id']}")
            is_((r.status, r.json and r.json.get("state")), (200, "booting"),
                "reads still answer, and late's instance is still booting there", repr(r))

            os.unlink(filler)
            ready = wait_instance(d, lambda i: i["id"] == late["id"] and i["state"] == "ready", 30, service="late")
            ok(ready and ready["domain_uuid"] == late["domain_uuid"],
               "with room again the controller records late's instance ready (the same guest, probed again)",
               lambda: d.log()[-2000:])
            acts = [e["action"] for e in d.events() if e["resource"] == f"instance/{late['id']}"]
            is_(acts.count("instance.ready"), 1, "its instance.ready event, once", repr(acts))
            now = c.get(f"/v1/instances/{inst['id']}").json or {}
            is_((now.get("state"), now.get("domain_uuid")), ("ready", inst["domain_uuid"]),
                "the refused restart touched nothing: web's instance is ready on the same guest")
            acts = [e["action"] for e in d.events() if e["resource"] == f"instance/{inst['id']}"]
            ok("instance.restart" not in acts, "the refused restart left no event", repr(acts))
            is_(integrity_check(d.state_dir), "ok", "PRAGMA integrity_check is ok afterwards")
    finally:
        for p in late_server:
            p.kill()
            p.wait()
        for m in mounted:
            subprocess.run(["umount", m], capture_output=True)


def wait_for_log(d, text, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and text not in d.log():
        time.sleep(0.1)


def wait_instance(d, pred, timeout=20, service="web"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i in d.client.get(f"/v1/instances?service={service}").json["items"]:
            if pred(i):
                return i
        time.sleep(0.1)
    return None


def body():
    if os.geteuid() != 0 or not shutil.which("mount"):
        skip("disk full on a tmpfs", "needs root to mount a tmpfs")
        return
    d = Daemon()
    os.makedirs(d.state_dir)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MIB}m,mode=0750", "tmpfs", d.state_dir],
                       capture_output=True, text=True)
    if p.returncode != 0:
        skip("disk full on a tmpfs", f"cannot mount a tmpfs: {p.stderr.strip()}")
        d.cleanup()
        return
    try:
        d.start()
        test_full(d, os.path.join(d.state_dir, "filler"))
        # What `with Daemon()` does, by hand (the tmpfs must be mounted before the start and
        # unmounted after the stop): a clean exit, and no sanitizer report in the log.
        is_(d.stop(), 0, "aviaryd exits with status 0 on SIGTERM after all of it", lambda: d.log()[-3000:])
        d.check_sanitizers()
    finally:
        if d.running():
            d.kill()
        subprocess.run(["umount", d.state_dir], capture_output=True)
        d.cleanup()
    test_full_runtime()


main(body)
