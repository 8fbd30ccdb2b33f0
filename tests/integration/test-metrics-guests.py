#!/usr/bin/env python3
"""The proxy's Prometheus counters are exact (issue 12), with real guests in the test's own
network namespace: a service on app:1 with a rollout to app:2 held at 50% by a pause step.
N requests through the proxy (to / for 200, to /nope for 404, from inside the namespace) grow
aviary_proxy_requests_total by exactly what the load generator saw per version and status
class, and the duration histogram's count by the same; bytes and connections move; the stable
and canary groups carry their versions; promtool check metrics passes on this scrape too."""
import json
import re
import shutil
import subprocess

from aviarytest import diag, is_, main, ok, skip
from guesttest import GuestTest, live, push, wait_for

gt = GuestTest("metrics")
PORT = 18132
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(d):
    r = d.request("GET", "/metrics")
    assert r.status == 200, repr(r)
    text = r.raw.decode()
    out = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[(m.group(1), frozenset(LABEL.findall(m.group(3) or "")))] = float(m.group(4))
    return text, out


def v(s, name, **labels):
    return s.get((name, frozenset(labels.items())), 0)


def body(d):
    push(d, "1")
    push(d, "2")
    r = d.request("POST", "/v1/services", json_body={"name": "web", "stable_version": "app:1", "replicas": 1,
                                                     "listen": f"127.0.0.1:{PORT}"})
    is_(r.status, 201, "a 1-replica service on app:1")
    if not ok(wait_for("app:1 ready", lambda: live(d, "web"), 180), "its guest is ready", d.log()[-3000:]):
        return
    r = d.request("POST", "/v1/services/web/rollouts", json_body={"version": "app:2", "strategy": {"canary": {
        "steps": [{"setWeight": 50}, {"pause": {}}], "analysis": {"enabled": False}}}})
    is_(r.status, 201, "a rollout to app:2 at 50%, then a pause without end")
    split = wait_for("the canary at 50% with a ready guest", lambda: (
        d.request("GET", "/v1/services/web/traffic").json or {}).get("weights", {}).get("canary") == 5000 and all(
        (d.request("GET", "/v1/services/web/traffic").json["versions"][g]["backends"] or [None])[0]
        for g in ("stable", "canary")), 240)
    if not ok(split, "both groups have a ready guest and the split is 50/50",
              json.dumps(d.request("GET", "/v1/services/web/traffic").json, indent=1)):
        return

    _, before = scrape(d)
    ok_load = gt.load(f"http://127.0.0.1:{PORT}/", 60, concurrency=4)
    nf_load = gt.load(f"http://127.0.0.1:{PORT}/nope", 20, concurrency=2)
    if not ok(ok_load and nf_load, "the load generator ran"):
        return
    diag(f"/: {ok_load['by_status']} {ok_load['by_version']}; /nope: {nf_load['by_status']} {nf_load['by_version']}")
    is_(ok_load["errors"] + nf_load["errors"], 0, "no request failed")
    text, after = scrape(d)

    def grew(name, **labels):
        return v(after, name, **labels) - v(before, name, **labels)

    total = 0
    for version, group in (("app:1", "stable"), ("app:2", "canary")):
        want_2xx = ok_load["by_version"].get(version.split(":")[1], 0)
        want_4xx = nf_load["by_version"].get(version.split(":")[1], 0)
        total += want_2xx + want_4xx
        labels = dict(service="web", version=version, group=group)
        is_(grew("aviary_proxy_requests_total", code="2xx", **labels), want_2xx,
            f"{version} ({group}): 2xx grew by exactly the {want_2xx} the client got")
        is_(grew("aviary_proxy_requests_total", code="4xx", **labels), want_4xx,
            f"{version} ({group}): 4xx grew by exactly the {want_4xx} the client got")
        is_(grew("aviary_proxy_requests_total", code="5xx", **labels), 0, f"{version}: no 5xx")
        is_(grew("aviary_proxy_request_duration_seconds_count", **labels), want_2xx + want_4xx,
            f"{version}: the duration histogram counted the same {want_2xx + want_4xx}")
        is_(grew("aviary_proxy_upstream_connect_failures_total", **labels), 0, f"{version}: no connect failure")
    is_(total, 80, "the two versions together: all 80 requests")
    ok(v(after, "aviary_proxy_requests_total", service="web", version="app:1", group="stable", code="2xx") > 0 and
       v(after, "aviary_proxy_requests_total", service="web", version="app:2", group="canary", code="2xx") > 0,
       "both versions served (the split is 50/50)")
    ok(grew("aviary_proxy_received_bytes_total", service="web") >= 80 * 16, "bytes received from clients grew")
    ok(grew("aviary_proxy_sent_bytes_total", service="web") >= 80 * 16, "bytes sent to clients grew")
    ok(grew("aviary_proxy_connections_total", service="web") >= 1, "connections were accepted")
    is_(v(after, "aviary_instances", service="web", state="ready"), 2, "two ready instances")
    ok(v(after, "aviary_guest_boot_duration_seconds_count") >= 2, "two boots in the boot histogram")
    ok(v(after, "aviary_libvirt_call_duration_seconds_count", call="start") >= 2, "libvirt starts were timed")
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        ok(r.returncode == 0, "promtool check metrics passes with proxy series", r.stdout[-2000:], r.stderr[-2000:])
    else:
        skip("promtool check metrics", "promtool is not installed")

    # Promotion moves app:2 to the stable group: app:2's canary series keeps its count.
    canary_before = v(after, "aviary_proxy_requests_total", service="web", version="app:2", group="canary", code="2xx")
    r = d.request("POST", "/v1/services/web/rollouts/current/promote?full=true")
    is_(r.status, 200, "promote the rollout")
    wait_for("app:2 stable", lambda: d.request("GET", "/v1/services/web").json.get("stable_version") == "app:2", 60)
    _, later = scrape(d)
    is_(v(later, "aviary_proxy_requests_total", service="web", version="app:2", group="canary", code="2xx"),
        canary_before, "after the promotion app:2's canary counter is unchanged (it only grows)")


main(lambda: gt.run(body))
