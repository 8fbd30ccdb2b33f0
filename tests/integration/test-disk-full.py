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
import shutil
import subprocess
import tempfile

from aviarytest import (Daemon, blob_file_path, check_error, diag, file_digest, integrity_check, is_, main, ok,
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
    acknowledged_state(d, blobs, versions, services, "after space was freed")

    d.restart()
    acknowledged_state(d, blobs, versions, services, "after a restart")


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
    finally:
        if d.running():
            d.stop()
        subprocess.run(["umount", d.state_dir], capture_output=True)
        d.cleanup()


main(body)
