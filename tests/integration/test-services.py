#!/usr/bin/env python3
"""Services: create with defaults and with every field, list, show, update (PATCH), delete;
ETag/If-Match (a stale one is 412 and changes nothing; a right one moves the generation by
one); listen addresses are unique, also when written differently; paging with limit=1
follows "next" through every service exactly once."""
from aviarytest import (Daemon, RFC3339_MS, check_error, create_service, is_, like, main, ok, push_version,
                        snapshot_diff)

FIELDS = ["asleep", "boot_timeout", "created_at", "generation", "health_check", "last_request_at", "listen", "match",
          "name", "notify", "port", "replicas", "restart_policy", "revoked", "rollout", "scale_to_zero", "stable_digest",
          "stable_version", "updated_at"]


def unchanged(d, snap, desc):
    ok(d.snapshot() == snap, desc, lambda: snapshot_diff(snap, d.snapshot()))


def test_create_show(d, v):
    c = d.client
    r = c.post("/v1/services", {"name": "minimal"})
    is_(r.status, 201, "creating a service with only a name answers 201", repr(r))
    s = r.json or {}
    is_(sorted(s), FIELDS, "the service JSON has exactly the documented fields")
    is_({k: s.get(k) for k in ("name", "stable_version", "stable_digest", "listen", "port", "replicas",
                               "restart_policy", "generation")},
        {"name": "minimal", "stable_version": None, "stable_digest": None, "listen": None, "port": None,
         "replicas": 1, "restart_policy": "always", "generation": 1},
        "its defaults are the documented ones")
    is_(s.get("health_check"), {"path": "/", "interval": "2s", "timeout": "1s", "rise": 1, "fall": 3},
        "its default health check")
    is_(s.get("boot_timeout"), "1m", "its boot deadline is the daemon's default (60 s, normalised)")
    like(s.get("created_at"), RFC3339_MS, "created_at is RFC 3339 with ms")
    is_(s.get("updated_at"), s.get("created_at"), "updated_at equals created_at at first")
    is_(r.header("ETag"), '"1"', 'the answer carries ETag "1"')
    is_(r.header("Location"), "/v1/services/minimal", "the answer carries a Location")

    full = {"name": "full", "stable_version": "web:1.0.0", "listen": "127.0.0.1:18080", "port": 9090,
            "replicas": 2, "restart_policy": "on-failure", "boot_timeout": "90s",
            "health_check": {"path": "/healthz", "interval": "2000ms", "timeout": "500ms", "rise": 2, "fall": 5}}
    r = c.post("/v1/services", full)
    is_(r.status, 201, "creating a service with every field answers 201", repr(r))
    f = r.json or {}
    for k in ("name", "stable_version", "listen", "port", "replicas", "restart_policy", "boot_timeout"):
        is_(f.get(k), full[k], f"its {k} is what was sent")
    is_(f.get("stable_digest"), v["digest"], "its stable_digest is the version's digest")
    is_(f.get("health_check"), {"path": "/healthz", "interval": "2s", "timeout": "500ms", "rise": 2, "fall": 5},
        "its health check durations come back normalised")

    r = c.post("/v1/services", {"name": "bydigest", "stable_version": f"web@{v['digest']}"})
    is_(r.status, 201, "a stable_version given as IMAGE@sha256:DIGEST answers 201", repr(r))
    is_(r.json and (r.json.get("stable_version"), r.json.get("stable_digest")), ("web:1.0.0", v["digest"]),
        "it resolves to that version")

    r = c.get("/v1/services/full")
    is_(r.status, 200, "GET /v1/services/full answers 200")
    is_(r.json, f, "and shows the service as created")
    is_(r.header("ETag"), '"1"', 'with ETag "1"')

    r = c.get("/v1/services")
    names = [x["name"] for x in r.json["items"]] if r.status == 200 else None
    is_(names, ["bydigest", "full", "minimal"], "GET /v1/services lists the three services by name")
    is_(r.json and r.json.get("next"), None, "a list shorter than the page has next: null")

    snap = d.snapshot()
    check_error(c.post("/v1/services", {"name": "full"}), 409, "service-exists",
                "creating a service that exists: 409 service-exists")
    check_error(c.get("/v1/services/nosuch"), 404, "service-not-found", "an unknown service: 404 service-not-found")
    check_error(c.patch("/v1/services/nosuch", {"replicas": 1}), 404, "service-not-found",
                "PATCH of an unknown service: 404")
    check_error(c.delete("/v1/services/nosuch"), 404, "service-not-found", "DELETE of an unknown service: 404")
    unchanged(d, snap, "the refused requests changed nothing")


def test_update(d, v):
    c = d.client
    before = c.get("/v1/services/full").json

    r = c.patch("/v1/services/full", {"replicas": 3}, headers={"If-Match": '"1"'})
    is_(r.status, 200, "PATCH with the right If-Match answers 200", repr(r))
    s = r.json or {}
    is_((s.get("replicas"), s.get("generation")), (3, 2), "the change is applied and the generation is 2")
    is_(r.header("ETag"), '"2"', 'the answer carries ETag "2"')
    is_({k: s.get(k) for k in FIELDS if k not in ("replicas", "generation", "updated_at")},
        {k: before.get(k) for k in FIELDS if k not in ("replicas", "generation", "updated_at")},
        "nothing else changed")
    ok(s.get("updated_at", "") >= before["updated_at"], "updated_at did not go back")
    is_(c.get("/v1/services/full").json, s, "GET shows the update")

    snap = d.snapshot()
    for stale in ('"1"', '"3"', "1", "2", 'W/"2"', '"02"', '"1", "3"'):
        r = c.patch("/v1/services/full", {"replicas": 7}, headers={"If-Match": stale})
        check_error(r, 412, "precondition-failed", f"PATCH with If-Match {stale!r} at generation 2: 412")
    r = c.delete("/v1/services/full", headers={"If-Match": '"1"'})
    check_error(r, 412, "precondition-failed", "DELETE with a stale If-Match: 412")
    unchanged(d, snap, "the stale requests changed nothing")
    is_(c.get("/v1/services/full").json, s, "the service is as it was")

    r = c.patch("/v1/services/full", {"replicas": 0, "restart_policy": "never"}, headers={"If-Match": "*"})
    ok(r.status == 200 and r.json["generation"] == 3 and r.json["replicas"] == 0, "If-Match: * matches any", repr(r))
    r = c.patch("/v1/services/full", {"health_check": {"fall": 9}})
    ok(r.status == 200 and r.json["generation"] == 4, "PATCH without If-Match is applied (generation 4)", repr(r))
    is_(r.json and r.json.get("health_check"), {"path": "/healthz", "interval": "2s", "timeout": "500ms", "rise": 2,
                                                "fall": 9}, "a partial health_check changes only what it names")
    r = c.patch("/v1/services/full", {"listen": None, "port": None, "stable_version": None},
                headers={"If-Match": '"4"'})
    ok(r.status == 200 and (r.json["listen"], r.json["port"], r.json["stable_version"], r.json["stable_digest"])
       == (None, None, None, None), "null clears listen, port and stable_version", repr(r))
    r = c.patch("/v1/services/full", {"stable_version": "web:1.0.0", "listen": "127.0.0.1:18080"},
                headers={"If-Match": '"5"'})
    ok(r.status == 200 and r.json["stable_version"] == "web:1.0.0" and r.json["generation"] == 6,
       "a cleared service takes a version and address again (generation 6)", repr(r))

    r = c.patch("/v1/services/full", {"boot_timeout": None})
    ok(r.status == 200 and r.json["boot_timeout"] == "1m" and r.json["generation"] == 7,
       "boot_timeout null: back to the daemon's default (generation 7)", repr(r))
    for bad in ("0s", "999ms", "25h", "soon", 60):
        check_error(c.patch("/v1/services/full", {"boot_timeout": bad}), 422, "invalid-field",
                    f"boot_timeout {bad!r} is refused")
    is_(c.get("/v1/services/full").json["generation"], 7, "and changes nothing")

    r = c.delete("/v1/services/full", headers={"If-Match": '"7"'})
    is_(r.status, 204, "DELETE with the right If-Match answers 204", repr(r))
    is_(r.raw, b"", "with no body")
    check_error(c.get("/v1/services/full"), 404, "service-not-found", "the deleted service is gone")


def test_listen(d):
    c = d.client
    create_service(c, "la", listen="127.0.0.1:18090")
    create_service(c, "lb", listen="[::1]:18091")
    snap = d.snapshot()
    check_error(c.post("/v1/services", {"name": "lc", "listen": "127.0.0.1:18090"}), 409, "listen-in-use",
                "a second service on the same address: 409 listen-in-use")
    check_error(c.post("/v1/services", {"name": "lc", "listen": "[0:0:0:0:0:0:0:1]:18091"}), 409, "listen-in-use",
                "the same IPv6 address written another way: 409 listen-in-use")
    check_error(c.post("/v1/services", {"name": "lc", "listen": "[0::1]:18091"}), 409, "listen-in-use",
                "and written a third way: 409 listen-in-use")
    check_error(c.patch("/v1/services/lb", {"listen": "127.0.0.1:18090"}), 409, "listen-in-use",
                "moving a service onto another's address: 409 listen-in-use")
    unchanged(d, snap, "the conflicts changed nothing")

    r = c.post("/v1/services", {"name": "lc", "listen": "[0:0::1]:18092"})
    is_(r.json and r.json.get("listen"), "[::1]:18092", "an IPv6 listen address comes back normalised")
    r = c.post("/v1/services", {"name": "ld", "listen": "127.0.0.1:18091"})
    is_(r.status, 201, "the same port on another address is no conflict", repr(r))
    r = c.patch("/v1/services/la", {"listen": "127.0.0.1:18090"})
    is_(r.status, 200, "a service may PATCH its own address again", repr(r))

    # One listener, many services: told apart by host and path prefix.
    r = c.post("/v1/services", {"name": "api", "listen": "127.0.0.1:18095",
                                "match": {"hosts": ["api.example.com", "*.example.com"], "path_prefix": "/v2/"}})
    is_(r.status, 201, "a service with match rules", repr(r))
    is_(r.json and r.json.get("match"), {"hosts": ["api.example.com", "*.example.com"], "path_prefix": "/v2/"},
        "shows them")
    r = c.post("/v1/services", {"name": "site", "listen": "127.0.0.1:18095"})
    is_(r.status, 201, "a catch-all on the same listener: no conflict (a host rule beats any host)", repr(r))
    r = c.post("/v1/services", {"name": "api1", "listen": "127.0.0.1:18095",
                                "match": {"hosts": ["api.example.com"], "path_prefix": "/v1/"}})
    is_(r.status, 201, "the same host with another prefix: no conflict", repr(r))
    snap = d.snapshot()
    r = c.post("/v1/services", {"name": "dup", "listen": "127.0.0.1:18095",
                                "match": {"hosts": ["www.example.com", "api.example.com"], "path_prefix": "/v2/"}})
    check_error(r, 409, "listen-in-use", "the same host and prefix as another: 409 listen-in-use")
    like(r.json["error"]["message"], r"service 'api' .*host api\.example\.com, path prefix /v2/",
         "naming the other service and the overlap")
    check_error(c.post("/v1/services", {"name": "dup", "listen": "127.0.0.1:18095"}), 409, "listen-in-use",
                "a second catch-all: 409, naming the first", )
    check_error(c.patch("/v1/services/api1", {"match": {"hosts": ["api.example.com"], "path_prefix": "/v2/"}}),
                409, "listen-in-use", "a PATCH into a conflict: 409")
    for bad in ({"hosts": ["API.example.com"]}, {"hosts": ["a b"]}, {"hosts": "api.example.com"},
                {"path_prefix": "v2/"}, {"hosts": ["x"] * 17}, {"other": 1}):
        r = c.post("/v1/services", {"name": "bad", "listen": "127.0.0.1:18096", "match": bad})
        ok(r.status == 422 and r.error_code() in ("invalid-field", "unknown-field"), f"a bad match {bad!r}: 422",
           repr(r))
    unchanged(d, snap, "the refused ones changed nothing")
    r = c.patch("/v1/services/api1", {"match": None})
    check_error(r, 409, "listen-in-use", "without its rules api1 would be a second catch-all: 409")

    # Scale to zero: off by default, on with an idle time and a wake mode.
    r = c.post("/v1/services", {"name": "sleepy", "scale_to_zero": {"idle": "5m", "wake": "snapshot"}})
    is_(r.json and r.json.get("scale_to_zero"), {"idle": "5m", "wake": "snapshot"}, "scale_to_zero as set", repr(r))
    r = c.patch("/v1/services/sleepy", {"scale_to_zero": {"idle": "90s"}})
    is_(r.json and r.json.get("scale_to_zero"), {"idle": "90s", "wake": "boot"}, "wake defaults to boot")
    r = c.patch("/v1/services/sleepy", {"scale_to_zero": None})
    is_(r.json and r.json.get("scale_to_zero"), None, "null turns it off")
    for bad in ({"idle": "0s"}, {"idle": "soon"}, {"wake": "boot"}, {"idle": "5m", "wake": "hibernate"},
                {"idle": "31d"}):
        r = c.patch("/v1/services/sleepy", {"scale_to_zero": bad})
        ok(r.status == 422, f"a bad scale_to_zero {bad!r}: 422", repr(r))
    is_(c.get("/v1/services/sleepy").json.get("scale_to_zero"), None, "and they changed nothing")

    is_(c.delete("/v1/services/la").status, 204, "deleting the first service frees its address")
    r = c.patch("/v1/services/lb", {"listen": "127.0.0.1:18090"})
    ok(r.status == 200 and r.json["listen"] == "127.0.0.1:18090", "then another service can take it", repr(r))


def test_paging(d):
    c = d.client
    for i in range(7):
        create_service(c, f"page-{i}")
    everything = c.get("/v1/services?limit=1000").json["items"]
    want = [s["name"] for s in everything]
    is_(want, sorted(want), "services are listed in name order")
    for limit in (1, 3):
        try:
            items, pages = c.list_all("/v1/services", limit=limit, max_pages=100)
        except AssertionError as e:
            ok(False, f"paging with limit={limit} ends", str(e))
            continue
        names = [s["name"] for s in items]
        is_(names, want, f"paging with limit={limit} follows next through every service once, in order")
        full_pages = -(-len(want) // limit)
        ok(pages in (full_pages, full_pages + 1), f"limit={limit} takes {full_pages} pages (+1 empty at most)",
           f"{pages} pages for {len(want)} items")
        is_(items, everything, f"the items paged with limit={limit} are those of one big page")
    r = c.get("/v1/services?limit=1")
    ok(r.status == 200 and len(r.json["items"]) == 1 and isinstance(r.json["next"], str) and r.json["next"],
       "a full page of one has next set to a cursor", repr(r))


def body():
    with Daemon() as d:
        v = push_version(d.client, "web", "1.0.0", port=8080)
        test_create_show(d, v)
        test_update(d, v)
        test_listen(d)
        test_paging(d)


main(body)
