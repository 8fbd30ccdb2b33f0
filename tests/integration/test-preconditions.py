#!/usr/bin/env python3
"""If-Match on updates and deletes, in both modes of require_if_match.

Off (the default): PATCH/DELETE of services and DELETE of images and versions are
unconditional without If-Match; with it, a stale tag is 412 precondition-failed and changes
nothing, the current tag, "*", or a list holding the current tag goes through, a weak tag
never matches. Images have an ETag that follows their versions: it changes whenever one is
pushed, revoked or deleted (also when a deleted version's tag comes back with other content).

On: the same requests without If-Match are 428 precondition-required and change nothing;
with the tag (or "*") they go through; creations, revocations and blob deletes need none;
the CLI, which sends the ETag it read, still updates and deletes."""
import os
import subprocess

from aviarytest import (Daemon, aviary_path, check_error, create_service, is_, main, ok, push_version, skip,
                        snapshot_diff)


def unchanged(d, snap, desc):
    ok(d.snapshot() == snap, desc, lambda: snapshot_diff(snap, d.snapshot()))


def etag(c, path):
    r = c.get(path)
    if r.status != 200 or not r.header("ETag"):
        raise AssertionError(f"GET {path}: {r!r}")
    return r.header("ETag")


def test_optional(d):
    c = d.client
    push_version(c, "web", "1")
    create_service(c, "svc", stable_version="web:1")

    # Services: generation ETags.
    tag = etag(c, "/v1/services/svc")
    is_(tag, '"1"', 'a new service has ETag "1"')
    r = c.patch("/v1/services/svc", {"replicas": 2})
    is_((r.status, r.header("ETag")), (200, '"2"'), "without If-Match a PATCH is unconditional", repr(r))
    snap = d.snapshot()
    for desc, value in (("a stale tag", '"1"'), ("a weak tag of the current generation", 'W/"2"'),
                        ("a list without the current tag", '"1", "3"'), ("an unquoted generation", "2")):
        check_error(c.patch("/v1/services/svc", {"replicas": 5}, headers={"If-Match": value}), 412,
                    "precondition-failed", f"PATCH with {desc} ({value}): 412")
        check_error(c.delete("/v1/services/svc", headers={"If-Match": value}), 412, "precondition-failed",
                    f"DELETE with {desc} ({value}): 412")
    unchanged(d, snap, "the refused PATCHes and DELETEs changed nothing")
    for desc, value, gen in (("the current tag", '"2"', 3), ("*", "*", 4), ("a list holding the current tag",
                                                                            '"1", "4" ,"9"', 5)):
        r = c.patch("/v1/services/svc", {"replicas": 1}, headers={"If-Match": value})
        is_((r.status, r.header("ETag")), (200, f'"{gen}"'), f"PATCH with {desc} goes through", repr(r))

    # Images: the ETag follows the versions.
    tags = [etag(c, "/v1/images/web")]
    push_version(c, "web", "2")
    tags.append(etag(c, "/v1/images/web"))
    is_(c.post("/v1/images/web/versions/2/revoke", {"reason": "r"}).status, 200, "web:2 is revoked")
    tags.append(etag(c, "/v1/images/web"))
    is_(c.delete("/v1/images/web/versions/2").status, 204, "web:2 is deleted (unconditionally)")
    tags.append(etag(c, "/v1/images/web"))
    push_version(c, "web", "2")
    tags.append(etag(c, "/v1/images/web"))
    is_(len({tags[0], tags[1], tags[2], tags[4]}), 4, "the image's ETag changes with every push and revocation, "
        "also when a deleted tag comes back with other content", repr(tags))
    is_(tags[3], tags[0], "deleting web:2 brings back the ETag of the image as it was before web:2: the same "
        "versions, the same representation")
    is_(etag(c, "/v1/images/web"), tags[-1], "and is stable while nothing changes")
    r = c.get("/v1/images")
    ok(r.status == 200, "the image list still answers", repr(r))

    is_(c.patch("/v1/services/svc", {"stable_version": None}).status, 200, "the service lets go of web:1")
    snap = d.snapshot()
    check_error(c.delete("/v1/images/web", headers={"If-Match": tags[1]}), 412, "precondition-failed",
                "DELETE of the image with an ETag from before the last push: 412")
    v_tag = etag(c, "/v1/images/web/versions/1")
    check_error(c.delete("/v1/images/web/versions/2", headers={"If-Match": v_tag}), 412, "precondition-failed",
                "DELETE of web:2 with web:1's ETag: 412")
    unchanged(d, snap, "neither changed anything")
    is_(c.delete("/v1/images/web/versions/1", headers={"If-Match": v_tag}).status, 204,
        "DELETE of web:1 with its ETag: 204")
    is_(c.delete("/v1/images/web", headers={"If-Match": etag(c, "/v1/images/web")}).status, 204,
        "DELETE of the image with its current ETag: 204")
    is_(c.delete("/v1/services/svc").status, 204, "without If-Match a DELETE is unconditional")


def cli(d, *args):
    env = dict(os.environ, AVIARY_SOCKET=d.socket_path)
    env.pop("AVIARY_URL", None)
    return subprocess.run([aviary_path(), *args], capture_output=True, text=True, env=env, timeout=30)


def test_required(d):
    c = d.client
    push_version(c, "web", "1")
    push_version(c, "web", "2")
    push_version(c, "gone", "1")
    create_service(c, "svc", stable_version="web:1")
    r = c.post("/v1/images", {"name": "empty"})
    is_(r.status, 201, "creating an image needs no If-Match", repr(r))
    is_(c.post("/v1/images/web/versions/2/revoke", {}).status, 200, "neither does a revocation")

    snap = d.snapshot()
    for method, path in (("PATCH", "/v1/services/svc"), ("DELETE", "/v1/services/svc"),
                         ("DELETE", "/v1/images/gone"), ("DELETE", "/v1/images/web/versions/2")):
        body = {"replicas": 3} if method == "PATCH" else None
        r = c.request(method, path, json_body=body)
        check_error(r, 428, "precondition-required", f"{method} {path} without If-Match: 428")
    unchanged(d, snap, "none of them changed anything")
    check_error(c.delete("/v1/services/nosuch"), 404, "service-not-found",
                "a DELETE of what does not exist is still 404")
    check_error(c.patch("/v1/services/svc", {"replicas": 3}, headers={"If-Match": '"7"'}), 412,
                "precondition-failed", "a stale If-Match is still 412")

    r = c.patch("/v1/services/svc", {"replicas": 3}, headers={"If-Match": etag(c, "/v1/services/svc")})
    is_(r.status, 200, "PATCH with the service's ETag goes through", repr(r))
    is_(c.delete("/v1/images/web/versions/2", headers={"If-Match": "*"}).status, 204,
        "DELETE of a version with If-Match: * goes through")
    is_(c.delete("/v1/images/gone", headers={"If-Match": etag(c, "/v1/images/gone")}).status, 204,
        "DELETE of an image with its ETag goes through")
    digest = push_version(c, "blobby", "1")["kernel"]
    is_(c.delete("/v1/images/blobby", headers={"If-Match": "*"}).status, 204, "(an image to free a blob)")
    is_(c.delete(f"/v1/blobs/{digest}").status, 204, "a blob DELETE needs no If-Match (its name is its content)")

    if not os.access(aviary_path(), os.X_OK):
        for what in ("service update", "service rm", "image rm of a version", "image rm"):
            skip(f"the CLI's {what} under require_if_match", "the CLI is not built")
        return
    p = cli(d, "service", "update", "svc", "--replicas", "4")
    ok(p.returncode == 0 and c.get("/v1/services/svc").json["replicas"] == 4,
       "the CLI's service update sends If-Match and goes through", p.stderr)
    push_version(c, "web", "3")
    p = cli(d, "image", "rm", "web:3")
    ok(p.returncode == 0 and c.get("/v1/images/web/versions/3").status == 404,
       "the CLI's image rm of a version sends If-Match and goes through", p.stdout, p.stderr)
    p = cli(d, "service", "rm", "svc")
    ok(p.returncode == 0 and c.get("/v1/services/svc").status == 404,
       "the CLI's service rm sends If-Match and goes through", p.stderr)
    p = cli(d, "image", "rm", "web")
    ok(p.returncode == 0 and c.get("/v1/images/web").status == 404,
       "the CLI's image rm sends If-Match and goes through", p.stderr)


def body():
    with Daemon() as d:
        test_optional(d)
    with Daemon(config={"require_if_match": "yes"}) as d:
        test_required(d)


main(body)
