#!/usr/bin/env python3
"""Blobs: upload by plain HTTP, HEAD/GET the same bytes, idempotent re-upload, refused
uploads keep nothing (digest mismatch, bad digest, wrong type, over the size limit, decided
before the body), blobs in use cannot be deleted, and a 64 MiB blob streams through the
daemon without being held in its memory."""
import hashlib
import os
import socket
import tempfile
import time

from aviarytest import (Daemon, blob_file_path, check_error, db_query, diag, file_digest, is_, like, main, ok,
                        parse_raw_response, push_version, raw_request, random_blob, random_bytes, sha256_digest,
                        RFC3339_MS, snapshot_diff)

MiB = 1 << 20
# Uploads the daemon may refuse from their headers go through raw_request, which reads the
# early answer even when the daemon closes before the body is sent (see test_roundtrip).
OCTETS = {"Content-Type": "application/octet-stream"}


def blob_rows(d, digest):
    return db_query(d.state_dir, "SELECT digest, size FROM blobs WHERE digest = ?", (digest,))


def test_roundtrip(d):
    c = d.client
    data, digest = random_bytes(300_000)
    r = c.put_blob(data, digest)
    first = r.json or {}
    is_(r.status, 201, "PUT of a new blob answers 201", repr(r))
    is_(r.json and r.json.get("digest"), digest, "PUT answers the blob's digest")
    is_(r.json and r.json.get("size"), len(data), "PUT answers the blob's size")
    like(r.json and r.json.get("created_at"), RFC3339_MS, "PUT answers created_at as RFC 3339 with ms")
    is_(r.header("Location"), f"/v1/blobs/{digest}", "PUT answers a Location")
    is_(blob_rows(d, digest), [(digest, len(data))], "the blob has its row")
    is_(file_digest(blob_file_path(d.state_dir, digest)), digest, "the file under blobs/sha256 holds the bytes")

    r = c.head(f"/v1/blobs/{digest}")
    is_(r.status, 200, "HEAD of the blob answers 200")
    is_(r.header("Content-Length"), str(len(data)), "HEAD gives the blob's Content-Length")
    is_(r.raw, b"", "HEAD has no body")

    r = c.get(f"/v1/blobs/{digest}")
    is_(r.status, 200, "GET of the blob answers 200")
    is_(r.header("Content-Type"), "application/octet-stream", "GET is application/octet-stream")
    ok(r.raw == data, "GET returns the same bytes", f"got {len(r.raw)} bytes with digest {sha256_digest(r.raw)}")

    created = c.get("/v1/blobs").json
    listed = [b for b in created["items"] if b["digest"] == digest] if isinstance(created, dict) else []
    is_(len(listed), 1, "GET /v1/blobs lists the blob once")

    events_before = len(d.events())
    r2 = raw_request(d.socket_path, "PUT", f"/v1/blobs/{digest}", OCTETS, data)
    is_(r2.status, 200, "PUT of the same digest again answers 200", repr(r2))
    is_(r2.json and (r2.json.get("digest"), r2.json.get("size")), (digest, len(data)),
        "the second PUT answers the same digest and size")
    is_(r2.json and r2.json.get("created_at"), first.get("created_at"), "the second PUT keeps created_at")
    is_(blob_rows(d, digest), [(digest, len(data))], "still exactly one row for the blob")
    is_(len(d.events()), events_before, "the second PUT wrote no event")

    # A plain client sends the whole body and only then reads the answer. The daemon may
    # answer 200 early, but must not make such a client fail (RFC 9112 9.6: a server
    # closing while the body still arrives should drain it, or the client gets a reset).
    for size in (300_000, 4 * MiB):
        blob, blob_digest = random_bytes(size)
        c.put_blob(blob, blob_digest)
        try:
            r3 = c.put_blob(blob, blob_digest, strict=True)
            got = repr(r3)
            good = r3.status == 200
        except OSError as e:
            got, good = f"http.client raised {type(e).__name__}: {e}", False
        ok(good, f"a plain HTTP client re-sending a {size}-byte blob it already uploaded gets 200", got)

    # The empty blob is a blob too.
    empty = sha256_digest(b"")
    r = c.put_blob(b"", empty)
    is_(r.status, 201, "PUT of the empty blob answers 201", repr(r))
    r = c.get(f"/v1/blobs/{empty}")
    ok(r.status == 200 and r.raw == b"", "GET of the empty blob answers 200 and no bytes", repr(r))
    return digest


def test_refusals(d):
    c = d.client
    data, digest = random_bytes(100_000)
    other = sha256_digest(b"something else" + data)
    files, snap = d.blob_files(), d.snapshot()

    r = c.put_blob(data, other)
    check_error(r, 400, "digest-mismatch", "PUT whose bytes do not match the digest: 400 digest-mismatch")
    is_(blob_rows(d, other), [], "no blob row for the mismatched digest")
    is_(blob_rows(d, digest), [], "no blob row for the bytes' own digest either")
    is_(d.blob_files(), files, "no file was left under blobs/sha256")
    is_(c.head(f"/v1/blobs/{other}").status, 404, "HEAD of the mismatched digest: 404")
    ok(d.snapshot() == snap, "the database is unchanged after the mismatch",
       lambda: snapshot_diff(snap, d.snapshot()))

    for bad in ("sha256:" + "A" * 64, "sha256:" + "0" * 63, "sha256:" + "0" * 65, "sha512:" + "0" * 64,
                "md5:d41d8cd98f00b204e9800998ecf8427e", "0" * 64, "sha256:" + "g" * 64, "sha256:"):
        r = raw_request(d.socket_path, "PUT", f"/v1/blobs/{bad}", OCTETS, data)
        check_error(r, 400, "invalid-digest", f"PUT /v1/blobs/{bad[:20]}...: 400 invalid-digest")
    for method in ("GET", "DELETE"):
        r = c.request(method, "/v1/blobs/sha256:XYZ")
        check_error(r, 400, "invalid-digest", f"{method} of a malformed digest: 400 invalid-digest")
    is_(c.head("/v1/blobs/sha256:XYZ").status, 400, "HEAD of a malformed digest: 400")

    for ctype in ("application/json", "text/plain", None):
        hdrs = {"Content-Type": ctype} if ctype else {}
        r = raw_request(d.socket_path, "PUT", f"/v1/blobs/{digest}", hdrs, data)
        check_error(r, 415, "unsupported-media-type", f"PUT with Content-Type {ctype}: 415 unsupported-media-type")
    is_(blob_rows(d, digest), [], "no blob row after the refused content types")

    r = c.get("/v1/blobs/" + digest)
    check_error(r, 404, "blob-not-found", "GET of an unknown blob: 404 blob-not-found")
    r = c.delete("/v1/blobs/" + digest)
    check_error(r, 404, "blob-not-found", "DELETE of an unknown blob: 404 blob-not-found")

    is_(d.blob_files(), files, "no refused upload left a file under blobs/sha256")
    ok(d.snapshot() == snap, "the database is unchanged after every refusal",
       lambda: snapshot_diff(snap, d.snapshot()))


def test_in_use(d):
    c = d.client
    kdata, kernel = random_bytes(5000)
    idata, initrd = random_bytes(6000)
    c.put_blob(kdata, kernel)
    c.put_blob(idata, initrd)
    push_version(c, "inuse", "1", kernel=kernel, initrd=initrd)
    snap = d.snapshot()
    for what, digest in (("kernel", kernel), ("initrd", initrd)):
        r = c.delete(f"/v1/blobs/{digest}")
        check_error(r, 409, "blob-in-use", f"DELETE of a blob a version uses as {what}: 409 blob-in-use")
        ok(os.path.exists(blob_file_path(d.state_dir, digest)), f"the {what} file is still there")
    ok(d.snapshot() == snap, "the refused DELETEs changed nothing", lambda: snapshot_diff(snap, d.snapshot()))

    r = c.delete("/v1/images/inuse/versions/1")
    is_(r.status, 204, "deleting the version answers 204", repr(r))
    r = c.delete(f"/v1/blobs/{kernel}")
    is_(r.status, 204, "DELETE of the now unused kernel blob answers 204", repr(r))
    is_(blob_rows(d, kernel), [], "the kernel's row is gone")
    ok(not os.path.exists(blob_file_path(d.state_dir, kernel)), "the kernel's file is gone")
    is_(c.head(f"/v1/blobs/{kernel}").status, 404, "HEAD of the deleted blob: 404")
    check_error(c.delete(f"/v1/blobs/{kernel}"), 404, "blob-not-found", "DELETE again: 404 blob-not-found")


def test_size_limit():
    with Daemon(config="max_blob_size = 1M\n") as d:
        c = d.client
        data, digest = random_bytes(MiB + 1)
        files, snap = d.blob_files(), d.snapshot()

        # Headers only: the answer must come without a single byte of the body being sent.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(d.socket_path)
        s.sendall((f"PUT /v1/blobs/{digest} HTTP/1.1\r\nHost: aviary\r\n"
                   f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n").encode())
        got, start = b"", time.monotonic()
        try:
            while parse_raw_response(got) is None:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            pass
        finally:
            s.close()
        parsed = parse_raw_response(got)
        ok(parsed is not None and parsed[0] == 413,
           "an upload over max_blob_size is answered 413 from its headers, before any body byte",
           f"after {time.monotonic() - start:.1f} s got {got[:300]!r}")
        if parsed:
            like(parsed[2].decode("utf-8", "replace"), '"code": *"payload-too-large"',
                 "the early answer is payload-too-large")

        r = raw_request(d.socket_path, "PUT", f"/v1/blobs/{digest}", OCTETS, data)
        check_error(r, 413, "payload-too-large", "PUT of 1 MiB + 1 byte with max_blob_size = 1M: 413")

        # Without Content-Length the limit can only be found while reading: still 413, nothing kept.
        def chunks():
            for i in range(0, len(data), 64 * 1024):
                yield data[i:i + 64 * 1024]
        r = c.request("PUT", f"/v1/blobs/{digest}", body=chunks(), content_type="application/octet-stream")
        check_error(r, 413, "payload-too-large", "a chunked PUT over the limit: 413")
        is_(d.blob_files(), files, "no file (or temporary) was left by the refused uploads")
        ok(d.snapshot() == snap, "the refused uploads changed nothing in the database",
           lambda: snapshot_diff(snap, d.snapshot()))

        exact, exact_digest = random_bytes(MiB)
        r = c.put_blob(exact, exact_digest)
        is_(r.status, 201, "an upload of exactly max_blob_size is accepted", repr(r))


def test_large(d):
    c = d.client
    with tempfile.TemporaryDirectory(prefix="aviary-it-data-") as tmp:
        path, digest = random_blob(tmp, 64 * MiB)
        c.get("/v1/health")
        before = d.vm_hwm()
        t0 = time.monotonic()
        r = c.put_blob_file(path, digest)
        is_(r.status, 201, "a 64 MiB upload answers 201", repr(r))
        is_(r.json and r.json.get("size"), 64 * MiB, "its size is 64 MiB")
        h = hashlib.sha256()
        sizes = [0]

        def sink(chunk):
            h.update(chunk)
            sizes[0] += len(chunk)
        r = c.get(f"/v1/blobs/{digest}", sink=sink)
        is_(r.status, 200, "GET of the 64 MiB blob answers 200")
        is_(sizes[0], 64 * MiB, "GET returns 64 MiB")
        is_("sha256:" + h.hexdigest(), digest, "GET returns the same bytes (same sha256)")
        after = d.vm_hwm()
        growth = after - before
        diag(f"aviaryd VmHWM {before / MiB:.1f} MiB before, {after / MiB:.1f} MiB after the 64 MiB round-trip")
        ok(growth < 32 * MiB, "the daemon's peak RSS grew by less than 32 MiB over a 64 MiB round-trip",
           f"VmHWM {before / MiB:.1f} MiB -> {after / MiB:.1f} MiB (+{growth / MiB:.1f} MiB) "
           f"in {time.monotonic() - t0:.1f} s")


def body():
    with Daemon() as d:
        test_roundtrip(d)
        test_refusals(d)
        test_in_use(d)
        test_large(d)
    test_size_limit()


main(body)
