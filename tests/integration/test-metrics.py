#!/usr/bin/env python3
"""GET /metrics without guests (runtime = off): the text format 0.0.4 as promtool reads it on
a live scrape; API requests counted exactly by route template and status; each service's
newest rollout as a phase state set with its weight and step; scope read on TCP; the
metrics_listen listener serving /metrics alone (404 elsewhere), with and without
metrics_token; a non-loopback metrics_listen without a token refused at start-up, in a network
namespace of its own. The proxy's counters are checked with guests (test-metrics-guests.py)."""
import os
import re
import shutil
import subprocess
import tempfile

from aviarytest import (Client, Daemon, DaemonError, check_error, create_service, free_tcp_port, is_, like, main,
                        ok, push_version, skip)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, frozenset(labels.items())): value} of every sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError(f"not a sample line: {line!r}")
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def scrape(client, **kw):
    r = client.get("/metrics", **kw)
    if r.status != 200:
        raise AssertionError(f"GET /metrics: {r!r}")
    return r


def promtool(text):
    if not shutil.which("promtool"):
        return None
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)


def test_api(d):
    c = d.client
    push_version(c, "app", "1")
    push_version(c, "app", "2")
    create_service(c, "web", listen="127.0.0.1:18131", replicas=1)
    is_(c.post("/v1/services/web/rollouts", {"version": "app:1"}).status, 201, "app:1 is deployed to web")
    r = c.post("/v1/services/web/rollouts", {"version": "app:2", "strategy": {"preset": "Linear10PercentEvery1Minute"}})
    is_(r.status, 201, "a rollout to app:2 starts")
    rid = str(r.json["id"])

    r = scrape(c)
    is_(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8", "the text format, version 0.0.4")
    text = r.raw.decode()
    check = promtool(text)
    if check is None:
        skip("promtool check metrics on a live scrape", "promtool is not installed (tests/setup.sh installs it)")
    else:
        ok(check.returncode == 0, "promtool check metrics passes on a live scrape", check.stdout[-2000:],
           check.stderr[-2000:])
    for family in ("aviary_proxy_requests_total", "aviary_proxy_request_duration_seconds", "aviary_instances",
                   "aviary_rollout_phase", "aviary_api_requests_total", "aviary_api_request_duration_seconds",
                   "aviary_store_transaction_duration_seconds", "aviary_libvirt_call_duration_seconds",
                   "aviary_guest_boot_duration_seconds", "aviary_guest_restarts_total", "aviary_guest_crash_loops_total",
                   "aviary_controller_pass_duration_seconds", "process_open_fds", "process_resident_memory_bytes", "process_start_time_seconds",
                   "aviary_build_info"):
        like(text, rf"(?m)^# TYPE {family} \w+$", f"{family} has a TYPE line")
        like(text, rf"(?m)^# HELP {family} \S", f"{family} has a HELP line")

    s = parse(text)
    for phase, want in (("Progressing", 1), ("Paused", 0), ("Healthy", 0), ("Degraded", 0)):
        is_(value(s, "aviary_rollout_phase", service="web", rollout=rid, phase=phase), want,
            f"rollout phase state set: {phase} = {want}")
    weight = c.get(f"/v1/services/web/rollouts/{rid}").json["weights"]["canary"]
    is_(value(s, "aviary_rollout_canary_weight_ratio", service="web", rollout=rid), weight / 10000,
        "the canary weight is the rollout's, as a ratio")
    is_(value(s, "aviary_rollout_step", service="web", rollout=rid), 0, "at step 0")
    ok(value(s, "process_open_fds") and value(s, "process_open_fds") > 3, "process_open_fds is counted")
    ok((value(s, "process_resident_memory_bytes") or 0) > 1 << 20, "RSS is in bytes")
    ok(value(s, "aviary_store_transactions_total", outcome="commit") >= 4, "store transactions are counted")
    # No runtime here, so no controller: the series are there, at 0 (test-controller counts them).
    for scope in ("all", "changed"):
        is_(value(s, "aviary_controller_pass_duration_seconds_count", scope=scope), 0,
            f"controller passes have a series for scope {scope} (0: no runtime, no pass)")

    # Exact API counters: the difference between two scrapes is what was asked in between.
    before = s
    for _ in range(7):
        is_(c.get("/v1/services").status, 200, "GET /v1/services", )
    for _ in range(3):
        check_error(c.get("/v1/services/nope"), 404, "service-not-found", "GET /v1/services/nope: 404")
    c.get("/v1/no/such/route")
    after = parse(scrape(c).raw.decode())

    def grew(name, **labels):
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    is_(grew("aviary_api_requests_total", method="GET", route="/v1/services", code="200"), 7,
        "7 GET /v1/services: the counter grew by exactly 7")
    is_(grew("aviary_api_requests_total", method="GET", route="/v1/services/{name}", code="404"), 3,
        "3 GET /v1/services/nope: route /v1/services/{name} code 404 grew by exactly 3")
    is_(grew("aviary_api_requests_total", method="", route="unmatched", code="404"), 1, "an unknown path counts as unmatched")
    is_(grew("aviary_api_request_duration_seconds_count", method="GET", route="/v1/services"), 7,
        "the latency histogram saw the same 7")
    is_(grew("aviary_api_requests_total", method="GET", route="/metrics", code="200"), 1, "and the scrape before was counted")
    ok(not any(name == "aviary_api_requests_total" and ("route", "/v1/services/nope") in labels
               for name, labels in after), "no label holds a path as sent (route templates only)")

    # Revoked versions are flagged per role.
    is_((value(after, "aviary_service_version_revoked", service="web", role="stable"),
         value(after, "aviary_service_version_revoked", service="web", role="canary")), (0, 0), "nothing revoked: 0 and 0")
    is_(c.post("/v1/images/app/versions/2/revoke", {}).status, 200, "the canary app:2 is revoked")
    s = parse(scrape(c).raw.decode())
    is_((value(s, "aviary_service_version_revoked", service="web", role="stable"),
         value(s, "aviary_service_version_revoked", service="web", role="canary")), (0, 1),
        "aviary_service_version_revoked says the canary's version is")

    # Bad input changes nothing and answers JSON.
    snap = d.snapshot()
    check_error(c.request("POST", "/metrics"), 405, "method-not-allowed", "POST /metrics: 405")
    check_error(c.request("GET", "/metrics", body=b"x"), 400, "bad-request", "a body to GET /metrics: 400")
    ok(d.snapshot() == snap, "and nothing changed")


def test_tcp_scope(tmp):
    port = free_tcp_port()
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(os.urandom(16).hex() + "\n")
    os.chmod(token_file, 0o600)
    with Daemon(config={"listen": f"127.0.0.1:{port}", "token_file": token_file}) as d:
        secret = d.client.post("/v1/tokens", {"name": "scraper", "scope": "read"}).json["token"]
        r = Client(tcp_port=port, token=secret).get("/metrics")
        is_(r.status, 200, "a read token may GET /metrics on TCP")
        check_error(Client(tcp_port=port).get("/metrics"), 401, "unauthorized", "without a token: 401")


def test_metrics_listen(tmp):
    # What this listener answers is not the API's contract (404 everywhere but /metrics).
    os.environ["AVIARY_CONTRACT"] = "off"
    port = free_tcp_port()
    with Daemon(config={"metrics_listen": f"127.0.0.1:{port}"}) as d:
        scraper = Client(tcp_port=port)
        r = scraper.get("/metrics")
        is_(r.status, 200, "metrics_listen on loopback without a token serves /metrics")
        like(r.raw.decode(), r"(?m)^aviary_build_info\{version=", "the same metrics")
        for path in ("/v1/health", "/v1/services", "/v1/events"):
            check_error(scraper.get(path), 404, "not-found", f"metrics_listen answers {path} with 404")
        check_error(scraper.post("/v1/images", {"name": "x"}), 404, "not-found", "and refuses changes (404)")
        is_(d.client.get("/v1/images/x").status, 404, "no image was made")

    token = os.urandom(20).hex()
    token_file = os.path.join(tmp, "metrics-token")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    os.chmod(token_file, 0o600)
    port = free_tcp_port()
    with Daemon(config={"metrics_listen": f"127.0.0.1:{port}", "metrics_token": token_file}) as d:
        check_error(Client(tcp_port=port).get("/metrics"), 401, "unauthorized", "with metrics_token: no token, 401")
        check_error(Client(tcp_port=port, token="0" * 40).get("/metrics"), 401, "unauthorized", "a wrong token: 401")
        is_(Client(tcp_port=port, token=token).get("/metrics").status, 200, "the metrics_token: 200")

    # Off loopback without a token: refused before anything is served (in a namespace of its own).
    if not shutil.which("unshare") or subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode:
        skip("non-loopback metrics_listen without metrics_token is refused", "cannot unshare --net")
        return
    d = Daemon(config={"metrics_listen": "0.0.0.0:9464"}, wrapper=["unshare", "--net"], ready_timeout=5)
    try:
        d.start()
        ok(False, "non-loopback metrics_listen without metrics_token is refused")
    except DaemonError as e:
        like(str(e), r"(?i)metrics.*non-loopback|non-loopback.*metrics", "non-loopback metrics_listen without "
             "metrics_token is refused at start-up, saying why")
    finally:
        d.cleanup()
    d = Daemon(config={"metrics_listen": "nonsense"}, ready_timeout=5)
    try:
        d.start()
        ok(False, "a bad metrics_listen address is refused")
    except DaemonError:
        ok(True, "a bad metrics_listen address is refused at start-up")
    finally:
        d.cleanup()


def run():
    with Daemon() as d:
        test_api(d)
    tmp = tempfile.mkdtemp(prefix="aviary-metrics-")
    try:
        test_tcp_scope(tmp)
        test_metrics_listen(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


main(run)
