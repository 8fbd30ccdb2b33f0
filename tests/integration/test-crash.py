#!/usr/bin/env python3
"""Crash safety: rounds of acknowledged writes (blobs, versions, services, revocations), each
ended by SIGKILL right after the last acknowledgement, then a restart on the same state dir:
everything acknowledged is there (blob bytes match their digests), the database passes
integrity_check, and nothing else is. Also: SIGKILL in the middle of writes from several
threads, SIGKILL while a large upload is in flight (no row, no file, no temporary after the
restart), and the start-up sweep of blob files without rows."""
import hashlib
import os
import random
import socket
import threading
import time

from aviarytest import (Client, Daemon, blob_file_path, db_query, diag, integrity_check, is_, main, ok,
                        random_bytes, sha256_digest)

MiB = 1 << 20


class Acked:
    """What the daemon acknowledged, as it answered it."""

    def __init__(self):
        self.blobs = {}      # digest -> size
        self.versions = {}   # (image, tag) -> version JSON
        self.services = {}   # name -> service JSON
        self.deleted_services = set()
        self.request_ids = []
        # Events a request writes besides its own: (request id, action, resource).
        self.side_events = []

    def note(self, resp):
        self.request_ids.append(resp.header("X-Request-Id"))


def must(resp, statuses, what):
    if resp.status not in statuses:
        raise AssertionError(f"{what}: {resp!r}")
    return resp


def do_round(c, acked, n, rng):
    digests = []
    for _ in range(2):
        data, digest = random_bytes(rng.randint(1, 2 * MiB))
        r = must(c.put_blob(data, digest), (201,), "blob upload")
        acked.blobs[digest] = len(data)
        acked.note(r)
        digests.append(digest)
    r = must(c.post("/v1/images/app/versions", {"version": f"r{n}", "kernel": digests[0], "initrd": digests[1],
                                                "cmdline": f"ip={{ip}} round={n}", "labels": {"round": str(n)}}),
             (201,), "version create")
    acked.versions[("app", f"r{n}")] = r.json
    acked.note(r)
    r = must(c.post("/v1/services", {"name": f"svc-{n}", "stable_version": f"app:r{n}", "replicas": n % 3}), (201,),
             "service create")
    acked.services[f"svc-{n}"] = r.json
    acked.note(r)
    if n > 0:
        r = must(c.patch(f"/v1/services/svc-{n - 1}", {"replicas": 9, "listen": f"127.0.0.1:{20000 + n}"}), (200,),
                 "service update")
        acked.services[f"svc-{n - 1}"] = r.json
        acked.note(r)
        r = must(c.post(f"/v1/images/app/versions/r{n - 1}/revoke", {"reason": f"round {n}"}), (200,), "revoke")
        acked.versions[("app", f"r{n - 1}")] = r.json
        acked.note(r)
        # svc-(n-1) runs it as its stable version: the revocation flags the service and writes
        # a service.version-revoked event for it in the same transaction (docs/api.md).
        acked.services[f"svc-{n - 1}"]["revoked"]["stable"] = True
        acked.side_events.append((r.header("X-Request-Id"), "service.version-revoked", f"service/svc-{n - 1}"))
    if n > 1:
        r = must(c.delete(f"/v1/services/svc-{n - 2}"), (204,), "service delete")
        acked.services.pop(f"svc-{n - 2}")
        acked.deleted_services.add(f"svc-{n - 2}")
        acked.note(r)


def verify(d, acked, label):
    c = d.client
    is_(integrity_check(d.state_dir), "ok", f"{label}: PRAGMA integrity_check is ok")
    is_(db_query(d.state_dir, "PRAGMA foreign_key_check"), [], f"{label}: PRAGMA foreign_key_check finds nothing")

    bad = []
    for digest, size in acked.blobs.items():
        h = hashlib.sha256()
        r = c.get(f"/v1/blobs/{digest}", sink=h.update)
        if r.status != 200 or "sha256:" + h.hexdigest() != digest:
            bad.append(f"{digest}: {r.status}, read back sha256:{h.hexdigest()}")
    ok(not bad, f"{label}: all {len(acked.blobs)} acknowledged blobs are there with their bytes", *bad)
    want_files = sorted(dg.split(":")[1] for dg in acked.blobs)
    is_(d.blob_files(), want_files, f"{label}: the blob directory holds exactly the acknowledged blobs")

    bad = []
    for (image, tag), v in acked.versions.items():
        r = c.get(f"/v1/images/{image}/versions/{tag}")
        if r.status != 200 or r.json != v:
            bad.append(f"{image}:{tag}: {r!r}")
    ok(not bad, f"{label}: all {len(acked.versions)} acknowledged versions are there, as acknowledged", *bad)

    bad = []
    for name, s in acked.services.items():
        r = c.get(f"/v1/services/{name}")
        if r.status != 200 or r.json != s:
            bad.append(f"{name}: {r!r} (acknowledged generation {s['generation']})")
    for name in acked.deleted_services:
        if c.get(f"/v1/services/{name}").status != 404:
            bad.append(f"{name} was deleted but is back")
    ok(not bad, f"{label}: all acknowledged services are there at their generation, deleted ones gone", *bad)

    events = d.events()
    have = {e["request_id"] for e in events}
    missing = [rid for rid in acked.request_ids if rid not in have]
    ok(not missing, f"{label}: every acknowledged change has its event", f"missing request ids: {missing}")
    have = {(e["request_id"], e["action"], e["resource"]) for e in events}
    missing = [x for x in acked.side_events if x not in have]
    ok(not missing, f"{label}: every revocation's service.version-revoked event is there", f"missing: {missing}")
    is_(len(events), len(acked.request_ids) + len(acked.side_events), f"{label}: and there are no other events")


def test_rounds(d):
    acked = Acked()
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    for n in range(5):
        do_round(d.client, acked, n, rng)
        status = d.kill()
        is_(status, -9, f"round {n}: aviaryd was killed by SIGKILL right after the last acknowledgement")
        d.start()
        verify(d, acked, f"round {n}")
    return acked


def test_kill_mid_traffic(d, acked):
    """Writers in threads; SIGKILL while they write. Every acknowledged write must survive."""
    stop = threading.Event()
    lock = threading.Lock()
    acked_names, acked_ids = [], []

    def writer(w):
        c = Client(socket_path=d.socket_path, timeout=10)
        i = 0
        while not stop.is_set():
            name = f"t{w}-{i}"
            try:
                r = c.post("/v1/services", {"name": name, "replicas": 1})
            except OSError:
                return
            if r.status == 201:
                with lock:
                    acked_names.append(name)
                    acked_ids.append(r.header("X-Request-Id"))
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    d.kill()
    stop.set()
    for t in threads:
        t.join(timeout=20)
    diag(f"{len(acked_names)} services were acknowledged before the SIGKILL")
    ok(len(acked_names) > 0, "some writes were acknowledged before the kill")
    d.start()
    names = {s["name"] for s in d.client.list_all("/v1/services", limit=1000)[0]}
    missing = [n for n in acked_names if n not in names]
    ok(not missing, "every service acknowledged before the SIGKILL is there", f"missing: {missing[:20]}")
    have = {e["request_id"] for e in d.events()}
    missing = [rid for rid in acked_ids if rid not in have]
    ok(not missing, "and each has its event", f"missing: {missing[:20]}")
    extra = names - set(acked_names) - set(acked.services)
    ok(len(extra) <= 4, "at most one unacknowledged service per writer was kept (in flight at the kill)",
       f"extra: {sorted(extra)}")
    is_(integrity_check(d.state_dir), "ok", "PRAGMA integrity_check is ok after the kill mid-traffic")


def upload_fds(pid, state_dir):
    """The daemon's open files in the blob directory (its upload temporaries)."""
    blob_dir = os.path.realpath(os.path.join(state_dir, "blobs", "sha256"))
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(blob_dir + "/"):
            out.append((fd, target))
    return out


def test_kill_mid_upload(d):
    files_before = d.blob_files()
    snap_blobs = d.snapshot()["blobs"]
    # The body would be HEAD 32 times over: its real digest, so only the kill keeps it out.
    head = random_bytes(8 * MiB)[0]
    size = 32 * len(head)
    h = hashlib.sha256()
    for _ in range(32):
        h.update(head)
    digest = "sha256:" + h.hexdigest()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(d.socket_path)
    s.sendall((f"PUT /v1/blobs/{digest} HTTP/1.1\r\nHost: aviary\r\nContent-Type: application/octet-stream\r\n"
               f"Content-Length: {size}\r\n\r\n").encode())
    s.sendall(head)
    # Wait until the daemon is writing the temporary file, with some bytes in it.
    deadline, seen = time.monotonic() + 10, []
    while time.monotonic() < deadline:
        seen = upload_fds(d.pid, d.state_dir)
        sizes = [os.stat(f"/proc/{d.pid}/fd/{fd}").st_size for fd, _ in seen]
        if sizes and max(sizes) > MiB:
            break
        time.sleep(0.01)
    ok(seen, "the upload is in flight: the daemon has a temporary file open in blobs/sha256", f"fds: {seen}")
    diag(f"temporary: {seen}")
    d.kill()
    s.close()
    d.start()
    is_(d.client.head(f"/v1/blobs/{digest}").status, 404, "after the restart the interrupted blob is unknown")
    is_(d.snapshot()["blobs"], snap_blobs, "no blob row was added")
    is_(d.blob_files(), files_before, "no file or temporary is left in blobs/sha256")


def test_sweep(d):
    """Files the database does not know (a crash between link and commit, a .tmp- file from a
    file system without O_TMPFILE) are removed at start; known blobs are kept."""
    keep = next(iter(d.snapshot()["blobs"]))[0]
    d.stop()
    orphan_data = b"orphan"
    orphan = blob_file_path(d.state_dir, sha256_digest(orphan_data))
    with open(orphan, "wb") as f:
        f.write(orphan_data)
    tmp = os.path.join(d.state_dir, "blobs", "sha256", ".tmp-0badf00d")
    with open(tmp, "wb") as f:
        f.write(b"half an upload")
    d.start()
    ok(not os.path.exists(orphan), "a blob file without a row is removed at start")
    ok(not os.path.exists(tmp), "a .tmp- leftover is removed at start")
    ok(os.path.exists(blob_file_path(d.state_dir, keep)), "a blob with its row is kept")


def body():
    with Daemon() as d:
        acked = test_rounds(d)
        test_kill_mid_traffic(d, acked)
        test_kill_mid_upload(d)
        test_sweep(d)


main(body)
