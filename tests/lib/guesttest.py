"""Helpers for the tests that boot real guests: a network namespace of the test's own (aviaryd
makes its bridge there and every request to a guest or a service proxy is sent from inside it),
the test image, and waits.

Usage:
    from guesttest import GuestTest
    gt = GuestTest("rollouts")
    main(lambda: gt.run(body, config={...}))     # body(d) gets the running Daemon
"""
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time

from aviarytest import Daemon, diag, ok, skip

IMAGE_DIR = os.environ.get("AVIARY_GUEST_IMAGE_DIR", "/var/tmp/aviary-guest-image")
# The Lupine-style fast-booting image (tests/guest/build-fast-image): the same app on a minimal kernel.
FAST_IMAGE_DIR = os.environ.get("AVIARY_FAST_IMAGE_DIR", "/var/tmp/aviary-fast-image")
LOADGEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loadgen.py")
BURST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "burst.py")


def sh(*cmd, check=True, timeout=120):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)


def wait_for(what, predicate, timeout, interval=0.25):
    """PREDICATE's first true value within TIMEOUT seconds, else None (with a diagnostic)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    diag(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
    return None


def instances(d, service):
    r = d.request("GET", f"/v1/instances?service={service}&limit=1000")
    return r.json["items"] if r.status == 200 else []


def live(d, service, state="ready"):
    return [i for i in instances(d, service) if i["state"] == state]


def sticky_bucket(key, salt):
    """The bucket of a sticky KEY under a rollout's SALT (docs/design/traffic.md): HMAC-SHA256
    keyed with the salt's 8 bytes (little-endian), its first 8 bytes big-endian, mod 10000."""
    digest = hmac.new((salt & (2 ** 64 - 1)).to_bytes(8, "little"), key.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") % 10000


def traffic(d, service):
    r = d.request("GET", f"/v1/services/{service}/traffic")
    return r.json if r.status == 200 else {}


def extra_picks(before, after):
    """Picks the proxy made beyond one per request between two traffic views: a connect that
    failed and was retried on another pick shows as a connect error. The split can be off by
    at most these (each is one more pick), and by one for a window that does not start at a
    cycle's beginning."""
    def errors(t):
        return sum((g.get("by_status") or {}).get("connect-error", 0) for g in (t.get("versions") or {}).values())
    return errors(after) - errors(before)


def qemu_pids(state_dir):
    """QEMUs of this test's daemon: their -kernel lies under its state dir."""
    r = sh("pgrep", "-f", f"qemu-system-x86_64.*{state_dir}/", check=False)
    return sorted(int(p) for p in r.stdout.split())


def push(d, tag, cmdline_extra="", image="app", image_dir=None):
    """Pushes the test image (from IMAGE_DIR, or the one given) as IMAGE:TAG, with extra
    command-line keys (app.error_rate=...)."""
    image_dir = image_dir or IMAGE_DIR
    with open(os.path.join(image_dir, "cmdline.template"), encoding="utf-8") as f:
        template = f.read().strip()
    digests = {}
    for name in ("vmlinuz", "initrd.img"):
        r = d.client.put_blob_file(os.path.join(image_dir, name))
        assert r.status in (200, 201), repr(r)
        digests[name] = r.json["digest"]
    r = d.request("POST", f"/v1/images/{image}/versions",
                  json_body={"version": tag, "kernel": digests["vmlinuz"], "initrd": digests["initrd.img"],
                             "cmdline": (template + " " + cmdline_extra).strip(), "memory_mib": 128, "port": 8080})
    assert r.status in (200, 201), repr(r)


class GuestTest:
    def __init__(self, name):
        self.netns = f"aviary-{name}-{os.getpid()}"

    def in_netns(self, *cmd, timeout=10):
        return subprocess.run(["ip", "netns", "exec", self.netns, *cmd], capture_output=True, text=True,
                              timeout=timeout)

    def guest_get(self, ip, path="/", timeout=3):
        """GET from inside the namespace; (status, body) or (None, error)."""
        r = self.in_netns("curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", str(timeout),
                          f"http://{ip}:8080{path}", timeout=timeout + 5)
        if r.returncode != 0:
            return None, r.stderr.strip() or f"curl exit {r.returncode}"
        text, _, code = r.stdout.rpartition("\n")
        return int(code), text

    def load(self, url, count, concurrency=8, header=None, users=0, per_user=1, timeout=300, cookie=None,
             headers=()):
        """Runs tests/lib/loadgen.py inside the namespace; its JSON summary:
        {"requests", "by_status": {...}, "by_version": {...}, "by_instance": {...}, "errors",
        "users": {user: [versions]}}. HEADER/COOKIE: users' ids in that header or cookie;
        HEADERS: "Name: value" strings sent with every request."""
        cmd = [sys.executable, LOADGEN, "--url", url, "--count", str(count), "--concurrency", str(concurrency)]
        if header:
            cmd += ["--user-header", header, "--users", str(users), "--per-user", str(per_user)]
        if cookie:
            cmd += ["--user-cookie", cookie, "--users", str(users), "--per-user", str(per_user)]
        for h in headers:
            cmd += ["--header", h]
        r = self.in_netns(*cmd, timeout=timeout)
        if r.returncode != 0:
            diag(f"loadgen failed: {r.stderr[-2000:]}")
            return None
        return json.loads(r.stdout)

    def load_background(self, url, seconds, rate=50):
        """A steady trickle of requests for SECONDS (stops by itself); returns the Popen."""
        cmd = ["ip", "netns", "exec", self.netns, sys.executable, LOADGEN, "--url", url, "--seconds", str(seconds),
               "--rate", str(rate), "--concurrency", "4"]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def burst(self, url, count, host=None, timeout=120):
        """COUNT requests at once, each on a connection of its own (tests/lib/burst.py), from inside
        the namespace, with HOST as their Host header if given: a list of {"status", "retry_after",
        "code", "version", "body"}, or None."""
        r = self.in_netns(sys.executable, BURST, url, str(count), *([host] if host else []), timeout=timeout + 30)
        if r.returncode != 0:
            diag(f"burst failed: {r.stderr[-2000:]}")
            return None
        return json.loads(r.stdout)

    def run(self, body, config=None, services=(), fast=False):
        """Builds the image (FAST: the fast-booting one too), makes the namespace, runs aviaryd in
        it and BODY(d); cleans up every QEMU and the namespace whatever happens."""
        if os.geteuid() != 0:
            skip("guests", "needs root (network namespaces, libvirt)")
            return
        root = os.environ.get("AVIARY_SOURCE_ROOT", ".")
        r = sh(os.path.join(root, "tests/guest/build-image"), IMAGE_DIR, check=False, timeout=600)
        if not ok(r.returncode == 0, "the test guest image is built", r.stdout[-2000:], r.stderr[-2000:]):
            return
        if fast:
            r = sh(os.path.join(root, "tests/guest/build-fast-image"), FAST_IMAGE_DIR, check=False, timeout=1800)
            if not ok(r.returncode == 0, "the fast-booting test image is built", r.stdout[-2000:], r.stderr[-2000:]):
                return
        sh("ip", "netns", "add", self.netns)
        d = None
        try:
            sh("ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up")
            with Daemon(runtime=True, wrapper=["ip", "netns", "exec", self.netns], ready_timeout=60,
                        config={"subnet": "10.88.0.0/24", **(config or {})}) as daemon:
                d = daemon
                self.daemon = d
                body(d)
        finally:
            state_dir = d.state_dir if d else None
            for pid in (qemu_pids(state_dir) if state_dir else []):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            sh("ip", "netns", "delete", self.netns, check=False)
