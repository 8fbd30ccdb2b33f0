"""A runtime without QEMU, for tests about what the controller writes and answers rather than
about guests: aviaryd with runtime = on against libvirt's test driver (test:///default: domains
"run" at once, no process), inside a network namespace of the test's own (aviaryd makes its
bridge there). With FAKE_GUESTS, a small HTTP server in the namespace answers for every address
of the guest subnet (a local route sends 10.88.0.0/24 to lo), so instances pass their health
check and become ready: GET / answers "fake <address>" with X-Guest-Instance: <address>.

Usage:
    with FakeRuntime("idem", config={...}) as rt:     # rt.daemon is the running Daemon
        ...
Needs root; FakeRuntime.available() says whether it can run (else the test skips).
"""
import os
import subprocess
import sys
import time

from aviarytest import Daemon

SUBNET = "10.88.0.0/24"

# The fake guests: one threaded HTTP server on 0.0.0.0:PORT; the address a request was sent to
# (getsockname) names the "guest".
SERVER = r"""
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        ip = self.connection.getsockname()[0]
        body = f"fake {ip}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Guest-Instance", ip)
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""


def available():
    return os.geteuid() == 0 and subprocess.run(["ip", "netns", "list"], capture_output=True).returncode == 0


class FakeRuntime:
    def __init__(self, name, config=None, fake_guests=True, port=8080, before_start=None, **daemon_kw):
        self.netns = f"aviary-{name}-{os.getpid()}"
        self.config = {"libvirt_uri": "test:///default", "accel": "tcg", "subnet": SUBNET, **(config or {})}
        self.fake_guests = fake_guests
        self.port = port
        self.daemon_kw = daemon_kw
        self.before_start = before_start  # called with the Daemon before it starts (mount its state dir...)
        self.server = None
        self.daemon = None

    def ns(self, *cmd, **kw):
        return subprocess.run(["ip", "netns", "exec", self.netns, *cmd], capture_output=True, text=True, **kw)

    def __enter__(self):
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        try:
            self.ns("ip", "link", "set", "lo", "up", check=True)
            if self.fake_guests:
                self.ns("ip", "route", "add", "local", SUBNET, "dev", "lo", "table", "local", check=True)
                self.server = subprocess.Popen(["ip", "netns", "exec", self.netns, sys.executable, "-c", SERVER,
                                                str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 10
                while self.ns("curl", "-s", "-o", "/dev/null", f"http://10.88.0.250:{self.port}/").returncode != 0:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the fake guests' server does not answer")
                    time.sleep(0.05)
            self.daemon = Daemon(runtime=True, wrapper=["ip", "netns", "exec", self.netns], ready_timeout=30,
                                 config=self.config, **self.daemon_kw)
            if self.before_start:
                self.before_start(self.daemon)
            self.daemon.__enter__()
            return self
        except BaseException:
            self._cleanup()
            raise

    def __exit__(self, *exc):
        try:
            if self.daemon is not None:
                self.daemon.__exit__(*exc)
        finally:
            self._cleanup()
        return False

    def _cleanup(self):
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
            self.server.wait()
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)

    def get(self, url, timeout=5):
        """curl URL from inside the namespace: (status or None, body)."""
        r = self.ns("curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", str(timeout), url,
                    timeout=timeout + 5)
        if r.returncode != 0:
            return None, r.stderr
        body, _, code = r.stdout.rpartition("\n")
        return int(code), body
