#!/usr/bin/env python3
"""Image versions: create with blobs, a command-line template and labels; look up by tag and
by digest; the digest is sha256 of the canonical JSON of docs/api.md; pushing the same tag
again is harmless with the same content and refused with other content; versions are
immutable (405); revocation is idempotent and keeps a version from being deployed; a
version in use cannot be deleted; bad templates and missing blobs are refused."""
from aviarytest import (Daemon, RFC3339_MS, canonical_json, check_error, create_service, db_query, is_, like,
                        main, ok, random_bytes, sha256_digest, snapshot_diff, upload,
                        version_digest)

CMDLINE = "console=ttyS0 ip={ip}::{gateway}:{netmask}::eth0:off app.version={version} {{x}} net={prefix}"
LABELS = {"team": "web", "tier/front": "édge ☃", "a.b_c-d": ""}
FIELDS = ("image", "version", "digest", "kernel", "initrd", "cmdline", "memory_mib", "vcpus", "port", "labels",
          "state", "revoked_at", "revoke_reason", "created_at")


def manifest(image, body):
    """The canonical object of docs/api.md for a create BODY, with the documented defaults."""
    m = {"cmdline": body.get("cmdline", ""), "image": image, "kernel": body["kernel"],
         "labels": body.get("labels", {}), "memory_mib": body.get("memory_mib", 128),
         "port": body.get("port", 80), "vcpus": body.get("vcpus", 1), "version": body["version"]}
    if body.get("initrd") is not None:
        m["initrd"] = body["initrd"]
    return m


def count_events(d, action=None):
    return len([e for e in d.events() if action is None or e["action"] == action])


def unchanged(d, snap, desc):
    ok(d.snapshot() == snap, desc, lambda: snapshot_diff(snap, d.snapshot()))


def test_create_and_get(d):
    c = d.client
    kernel = upload(c, random_bytes(20000)[0])
    initrd = upload(c, random_bytes(30000)[0])
    body = {"version": "1.0.0", "kernel": kernel, "initrd": initrd, "cmdline": CMDLINE, "memory_mib": 256,
            "vcpus": 2, "port": 8080, "labels": LABELS}
    r = c.post("/v1/images/web/versions", body)
    is_(r.status, 201, "POST /v1/images/web/versions answers 201", repr(r))
    v = r.json or {}
    is_(r.header("Location"), "/v1/images/web/versions/1.0.0", "it answers a Location")
    is_(sorted(v), sorted(FIELDS), "the version JSON has exactly the documented fields")
    for k in ("kernel", "initrd", "cmdline", "memory_mib", "vcpus", "port", "labels"):
        is_(v.get(k), body[k], f"the version's {k} is what was pushed")
    is_((v.get("image"), v.get("version")), ("web", "1.0.0"), "image and version name it")
    is_((v.get("state"), v.get("revoked_at"), v.get("revoke_reason")), ("active", None, None),
        "a new version is active, not revoked")
    like(v.get("created_at"), RFC3339_MS, "created_at is RFC 3339 with ms")

    want = version_digest(manifest("web", body))
    is_(v.get("digest"), want, "the digest is sha256 of the canonical JSON (computed here)",
        f"canonical JSON: {canonical_json(manifest('web', body)).decode()}")
    stored = db_query(d.state_dir, "SELECT manifest FROM versions WHERE digest = ?", (v.get("digest"),))
    ok(stored and sha256_digest(stored[0][0].encode("utf-8")) == want, "the stored manifest hashes to the digest",
       f"stored: {stored!r}")

    r_tag = c.get("/v1/images/web/versions/1.0.0")
    r_dig = c.get(f"/v1/images/web/versions/{v.get('digest')}")
    is_(r_tag.status, 200, "GET by tag answers 200")
    is_(r_dig.status, 200, "GET by digest answers 200")
    is_(r_tag.json, v, "GET by tag answers the version as created")
    is_(r_dig.json, v, "GET by digest answers the same version")
    ok(r_tag.header("ETag"), "GET of a version carries an ETag")

    r = c.get("/v1/images/web")
    ok(r.status == 200 and r.json.get("version_count") == 1 and r.json.get("versions") == [v],
       "GET /v1/images/web shows the image with its one version", repr(r))

    # Defaults: no initrd, no cmdline, no labels.
    body2 = {"version": "min", "kernel": kernel}
    r = c.post("/v1/images/web/versions", body2)
    is_(r.status, 201, "a version with only version and kernel answers 201", repr(r))
    v2 = r.json or {}
    is_((v2.get("initrd"), v2.get("cmdline"), v2.get("memory_mib"), v2.get("vcpus"), v2.get("port"),
         v2.get("labels")), (None, "", 128, 1, 80, {}), "its defaults are the documented ones")
    is_(v2.get("digest"), version_digest(manifest("web", body2)),
        "its digest is that of the canonical JSON without initrd")

    # An explicit null initrd is the same as none.
    body3 = {"version": "min2", "kernel": kernel, "initrd": None}
    r = c.post("/v1/images/web/versions", body3)
    is_(r.status, 201, "initrd: null answers 201", repr(r))
    is_(r.json and r.json.get("digest"), version_digest(manifest("web", body3)), "and hashes without initrd")

    # The same content under another image is another version (the digest covers the name).
    r = c.post("/v1/images/other/versions", body)
    is_(r.status, 201, "the same manifest under another image answers 201", repr(r))
    other_digest = r.json and r.json.get("digest")
    ok(other_digest and other_digest != v.get("digest"), "and has its own digest")

    r = c.get("/v1/images/web/versions")
    ok(r.status == 200 and [x["version"] for x in r.json["items"]] == ["1.0.0", "min", "min2"],
       "GET /v1/images/web/versions lists the three versions in order", repr(r))
    return body, v


def test_push_again(d, body, v):
    c = d.client
    snap = d.snapshot()
    events = count_events(d)
    again = dict(body, labels=dict(reversed(list(body["labels"].items()))))
    r = c.post("/v1/images/web/versions", again)
    is_(r.status, 200, "pushing the same tag with the same content (labels in another order) answers 200", repr(r))
    is_(r.json, v, "and answers the existing version")
    is_(count_events(d), events, "no second event was written")
    unchanged(d, snap, "nothing changed in the database")

    other_kernel = upload(c, random_bytes(1000)[0])
    snap = d.snapshot()
    for what, change in (("kernel", {"kernel": other_kernel}), ("cmdline", {"cmdline": "console=ttyS1"}),
                         ("memory_mib", {"memory_mib": 512}), ("labels", {"labels": {"team": "ops"}}),
                         ("no initrd", {"initrd": None})):
        r = c.post("/v1/images/web/versions", dict(body, **change))
        check_error(r, 409, "version-exists", f"pushing the same tag with another {what}: 409 version-exists")
    unchanged(d, snap, "the refused pushes changed nothing (db_snapshot equal)")
    r = c.get("/v1/images/web/versions/1.0.0")
    is_(r.json, v, "the version is still the first one")


def test_immutable(d, v):
    c = d.client
    snap = d.snapshot()
    for method in ("PUT", "PATCH"):
        for path in ("/v1/images/web/versions/1.0.0", f"/v1/images/web/versions/{v['digest']}"):
            r = c.request(method, path, json_body={"cmdline": "changed"})
            check_error(r, 405, "version-immutable", f"{method} {path[:40]}...: 405 version-immutable")
            allow = sorted(m.strip() for m in (r.header("Allow") or "").split(","))
            is_(allow, ["DELETE", "GET", "HEAD"], f"{method} on a version: Allow lists GET, HEAD, DELETE")
    unchanged(d, snap, "PUT/PATCH on a version changed nothing")


def test_revoke(d, body, v):
    c = d.client
    svc = create_service(c, "keep", stable_version="web:min")
    ok(svc.get("stable_version") == "web:min", "a service can use an active version", repr(svc))

    events = count_events(d, "version.revoke")
    r = c.post("/v1/images/web/versions/1.0.0/revoke", {"reason": "CVE-2026-0001"})
    is_(r.status, 200, "revoke answers 200", repr(r))
    rv = r.json or {}
    is_((rv.get("state"), rv.get("revoke_reason")), ("revoked", "CVE-2026-0001"), "the version is revoked, with reason")
    like(rv.get("revoked_at"), RFC3339_MS, "revoked_at is set")
    is_({k: rv.get(k) for k in FIELDS if k not in ("state", "revoked_at", "revoke_reason")},
        {k: v[k] for k in FIELDS if k not in ("state", "revoked_at", "revoke_reason")},
        "revocation changes nothing else in the version")
    is_(count_events(d, "version.revoke"), events + 1, "revoke wrote one event")

    snap = d.snapshot()
    r = c.post("/v1/images/web/versions/1.0.0/revoke", {"reason": "another reason"})
    is_(r.status, 200, "revoking again answers 200 (idempotent)", repr(r))
    is_(r.json, rv, "and answers the version as first revoked (same time, same reason)")
    r = c.post(f"/v1/images/web/versions/{v['digest']}/revoke")
    is_(r.status, 200, "revoking by digest without a body answers 200", repr(r))
    is_(count_events(d, "version.revoke"), events + 1, "revoking again wrote no event")
    unchanged(d, snap, "revoking again changed nothing")
    is_(c.get("/v1/images/web/versions/1.0.0").json, rv, "GET shows the revoked version")

    snap = d.snapshot()
    for ref in ("web:1.0.0", f"web@{v['digest']}"):
        r = c.post("/v1/services", {"name": "svc", "stable_version": ref})
        check_error(r, 409, "version-revoked", f"creating a service on revoked {ref[:20]}: 409 version-revoked")
    r = c.patch("/v1/services/keep", {"stable_version": "web:1.0.0"})
    check_error(r, 409, "version-revoked", "moving a service onto a revoked version: 409 version-revoked")
    unchanged(d, snap, "the refused service changes changed nothing")


def test_delete(d):
    c = d.client
    snap = d.snapshot()
    r = c.delete("/v1/images/web/versions/min")
    check_error(r, 409, "version-in-use", "deleting a version a service uses: 409 version-in-use")
    r = c.delete("/v1/images/web")
    check_error(r, 409, "version-in-use", "deleting an image whose version a service uses: 409 version-in-use")
    unchanged(d, snap, "the refused deletes changed nothing")

    r = c.delete("/v1/images/web/versions/min2")
    is_(r.status, 204, "deleting an unused version answers 204", repr(r))
    check_error(c.get("/v1/images/web/versions/min2"), 404, "version-not-found",
                "the deleted version is gone: 404 version-not-found")
    check_error(c.delete("/v1/images/web/versions/min2"), 404, "version-not-found",
                "deleting it again: 404 version-not-found")
    check_error(c.get("/v1/images/nosuch/versions/1"), 404, "version-not-found",
                "a version of an unknown image: 404 version-not-found")
    check_error(c.get("/v1/images/nosuch"), 404, "image-not-found", "an unknown image: 404 image-not-found")
    check_error(c.get("/v1/images/nosuch/versions"), 404, "image-not-found",
                "versions of an unknown image: 404 image-not-found")

    r = c.delete("/v1/services/keep")
    is_(r.status, 204, "deleting the service answers 204", repr(r))
    r = c.delete("/v1/images/web/versions/min")
    is_(r.status, 204, "once the service is gone the version can be deleted", repr(r))


def test_refused_content(d):
    c = d.client
    kernel = upload(c, random_bytes(2000)[0])
    snap = d.snapshot()
    for tmpl in ("ip={foo}", "ip={IP}", "ip={ip", "ip=ip}", "x={}", "{{ip}", "{ip}}", "{ ip}", "{ip }", "{version"):
        r = c.post("/v1/images/tmpl/versions", {"version": "1", "kernel": kernel, "cmdline": tmpl})
        check_error(r, 422, "invalid-template", f"cmdline {tmpl!r}: 422 invalid-template")
    missing = sha256_digest(b"never uploaded")
    r = c.post("/v1/images/tmpl/versions", {"version": "1", "kernel": missing})
    check_error(r, 422, "blob-missing", "a kernel that was never uploaded: 422 blob-missing")
    r = c.post("/v1/images/tmpl/versions", {"version": "1", "kernel": kernel, "initrd": missing})
    check_error(r, 422, "blob-missing", "an initrd that was never uploaded: 422 blob-missing")
    unchanged(d, snap, "the refused versions changed nothing (no image was created either)")

    for tmpl in ("{{}}", "{{ip}}", "a={ip}{prefix}{netmask}{gateway}{instance}{service}{version}", ""):
        r = c.post("/v1/images/tmpl/versions", {"version": f"ok{len(tmpl)}", "kernel": kernel, "cmdline": tmpl})
        is_(r.status, 201, f"cmdline {tmpl!r} is a valid template", repr(r))


def body():
    with Daemon() as d:
        b, v = test_create_and_get(d)
        test_push_again(d, b, v)
        test_immutable(d, v)
        test_revoke(d, b, v)
        test_delete(d)
        test_refused_content(d)


main(body)
