#!/usr/bin/env python3
"""aviaryd under systemd's protocols, without systemd (runtime = off throughout):

- watchdog: with NOTIFY_SOCKET (a datagram socket this test binds), WATCHDOG_USEC=2 s and
  WATCHDOG_PID set to aviaryd's pid, aviaryd sends READY=1 and then WATCHDOG=1 at least every
  half interval (two pings within 3 s, no gap longer than 1.25 s); none
  when WATCHDOG_PID names another process; STOPPING=1 on SIGTERM.
- socket activation through systemd-socket-activate: a unix and a TCP (127.0.0.1) socket
  passed by it serve the API, and aviaryd creates no socket of its own.
- hitless restart (docs/operations.md): this test holds the listening sockets, as systemd's
  socket unit does, and hands them to one aviaryd after another while clients keep connecting
  over unix and TCP; aviaryd is stopped with SIGTERM (systemctl restart) and with SIGKILL (a
  crash) and started again on the same descriptors: no connection is ever refused, and every
  request made after the new aviaryd is up is answered."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from aviarytest import Client, Daemon, diag, free_tcp_port, is_, main, ok, skip

# Execs aviaryd as systemd would: the sockets given in argv[1] ("7,9") become fds 3, 4...
# with LISTEN_FDS/LISTEN_PID; WATCHDOG_PID is set to our pid when WATCHDOG_USEC is present
# (unless AVIARY_TEST_WATCHDOG_PID overrides it). Exec keeps the pid, so it is aviaryd's.
LAUNCHER = r"""
import os, sys
fds = [int(x) for x in sys.argv[1].split(",") if x]
high = [os.dup(fd) for fd in fds]
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i, inheritable=True)
if fds:
    os.environ["LISTEN_FDS"] = str(len(fds))
    os.environ["LISTEN_PID"] = str(os.getpid())
if "WATCHDOG_USEC" in os.environ:
    os.environ["WATCHDOG_PID"] = os.environ.pop("AVIARY_TEST_WATCHDOG_PID", str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])
"""


# TCP always wants a bearer token: every aviaryd here gets this bootstrap token.
TOKEN = "systemd-test-token-0123456789abcdef"
TOKEN_FILE = os.path.join(tempfile.mkdtemp(prefix="aviary-systemd-"), "token")
with open(TOKEN_FILE, "w", encoding="utf-8") as _f:
    _f.write(TOKEN + "\n")
os.chmod(TOKEN_FILE, 0o600)  # aviaryd refuses a secret others can read


class Launched(Daemon):
    """An aviaryd started through LAUNCHER with the listening sockets SOCKS (the first one a
    unix socket, which the client uses). Its own --socket path (self.own_socket) must stay
    unused."""

    def __init__(self, socks=(), **kw):
        self.socks = list(socks)
        kw.setdefault("config", {"token_file": TOKEN_FILE})
        super().__init__(pass_fds=[s.fileno() for s in self.socks], **kw)
        self.own_socket = self.socket_path
        if self.socks:
            self.socket_path = self.socks[0].getsockname()
            self.client = Client(socket_path=self.socket_path)

    def command(self):
        cmd = super().command()
        cmd[cmd.index("--socket") + 1] = self.own_socket
        return [sys.executable, "-c", LAUNCHER, ",".join(str(s.fileno()) for s in self.socks)] + cmd


class NotifySocket:
    """A bound AF_UNIX datagram socket collecting (monotonic time, message) pairs."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            for line in data.decode("utf-8", "replace").splitlines():
                self.messages.append((now, line))

    def first(self, message, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in list(self.messages):
                if m == message:
                    return t
            time.sleep(0.05)
        return None

    def times(self, message):
        return [t for t, m in list(self.messages) if m == message]

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


def test_watchdog(tmp):
    note = NotifySocket(os.path.join(tmp, "notify.sock"))
    try:
        env = {"NOTIFY_SOCKET": note.path, "WATCHDOG_USEC": "2000000"}
        with Launched(env=env) as d:
            ready = note.first("READY=1", 10)
            ok(ready is not None, "READY=1 arrives on NOTIFY_SOCKET", repr(note.messages))
            time.sleep(3.2)
            pings = [t - ready for t in note.times("WATCHDOG=1") if ready is not None and t >= ready]
            ok(len([t for t in pings if t <= 3.0]) >= 2, f"at least two WATCHDOG=1 within 3 s of READY=1 ({len(pings)} in 3.2 s)",
               f"ping times after READY=1: {pings}")
            gaps = [b - a for a, b in zip([0.0] + pings, pings)]
            diag("WATCHDOG=1 at " + ", ".join(f"{t:.2f}" for t in pings) + " s after READY=1")
            ok(gaps and max(gaps) <= 1.25, "pings come every half interval: no gap over 1 s (+0.25 s)", f"gaps: {gaps}")
            d.stop()
            ok(note.first("STOPPING=1", 5) is not None, "SIGTERM sends STOPPING=1")

        # WATCHDOG_PID names another process: the watchdog is not ours to ping.
        del note.messages[:]
        env["AVIARY_TEST_WATCHDOG_PID"] = "1"
        with Launched(env=env):
            ok(note.first("READY=1", 10) is not None, "READY=1 again")
            time.sleep(2.0)
            is_(note.times("WATCHDOG=1"), [], "no WATCHDOG=1 when WATCHDOG_PID is another process's")
    finally:
        note.close()


def test_socket_activate(tmp):
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        skip("socket activation through systemd-socket-activate", "systemd-socket-activate is not installed")
        return
    template = Launched()  # not started: a state dir, a config and a log of our own
    try:
        sock = os.path.join(template.tmp, "activated.sock")
        port = free_tcp_port()
        cmd = [tool, "-l", sock, "-l", f"127.0.0.1:{port}", template.binary, "--config", template.config_path,
               "--state-dir", template.state_dir, "--socket", template.own_socket]
        log = open(os.path.join(template.tmp, "activate.log"), "wb")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(sock) and time.monotonic() < deadline:
                time.sleep(0.02)
            r = Client(socket_path=sock, timeout=10).get("/v1/health")
            is_(r.status, 200, "the API answers on the unix socket systemd-socket-activate passed", repr(r))
            r = Client(tcp_port=port, token=TOKEN, timeout=10).get("/v1/health")
            is_(r.status, 200, "and on the passed TCP socket on 127.0.0.1", repr(r))
            r = Client(tcp_port=port, token=TOKEN, timeout=10).post("/v1/services", {"name": "tcp", "replicas": 0})
            is_(r.status, 201, "a change over the passed TCP socket is served too", repr(r))
            ok(not os.path.exists(template.own_socket), "aviaryd created no socket of its own at --socket")
            with open(f"/proc/{proc.pid}/comm", encoding="ascii") as f:
                is_(f.read().strip(), "aviaryd", "systemd-socket-activate exec'd aviaryd in its place")
            proc.send_signal(signal.SIGTERM)
            is_(proc.wait(timeout=10), 0, "aviaryd exits cleanly on SIGTERM")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        with open(os.path.join(template.tmp, "activate.log"), encoding="utf-8", errors="replace") as f:
            text = f.read()
        ok("Serving the API on 2 socket(s) from systemd." in text, "aviaryd says it serves the 2 passed sockets",
           text[-2000:])
    finally:
        template.cleanup()


class Pounder:
    """Threads that connect and GET /v1/health in a loop, classifying every attempt."""

    def __init__(self, clients):
        self.clients = clients
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes = []  # (start, end, transport, outcome)
        self.threads = [threading.Thread(target=self.run, args=(name, c), daemon=True) for name, c in clients]
        for t in self.threads:
            t.start()

    def run(self, name, client):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                r = client.get("/v1/health")
                outcome = "200" if r.status == 200 else f"status {r.status}"
            except ConnectionRefusedError:
                outcome = "refused"
            except FileNotFoundError:
                outcome = "socket file missing"
            except (OSError, Exception) as e:  # noqa: B014 - resets, EOF without answer, timeouts
                outcome = type(e).__name__
            with self.lock:
                self.outcomes.append((t0, time.monotonic(), name, outcome))
            time.sleep(0.005)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        return self.outcomes


def test_hitless_restart(tmp):
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(os.path.join(tmp, "api.sock"))
    unix.listen(128)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(128)
    port = tcp.getsockname()[1]
    try:
        with Launched(socks=[unix, tcp]) as d:
            pounder = Pounder([("unix", Client(socket_path=d.socket_path, timeout=30)),
                               ("tcp", Client(tcp_port=port, token=TOKEN, timeout=30))])
            restarts = []
            try:
                time.sleep(0.5)
                for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
                    old = d.pid
                    t0 = time.monotonic()
                    d.kill(sig)
                    time.sleep(0.3)  # connections pile up in the backlog meanwhile
                    d.start()
                    restarts.append((signal.Signals(sig).name, old, d.pid, t0, time.monotonic()))
                    time.sleep(0.5)
            finally:
                outcomes = pounder.finish()
            ok(os.path.exists(d.socket_path), "the passed unix socket's file is still there (nobody unlinked it)")
            ok(not os.path.exists(d.own_socket), "no aviaryd created a socket of its own")
            ok(all(old != new for _, old, new, _, _ in restarts), "each restart ran a new aviaryd process",
               repr(restarts))
            by = {}
            for _, _, name, outcome in outcomes:
                by.setdefault(name, {}).setdefault(outcome, 0)
                by[name][outcome] += 1
            diag(f"{len(restarts)} restarts; outcomes per transport: {by}")
            refused = [o for o in outcomes if o[3] == "refused"]
            is_(len(refused), 0, "no connection was refused across 4 restarts (unix and TCP)", repr(refused[:5]))
            for name in ("unix", "tcp"):
                ok(by.get(name, {}).get("200", 0) >= 20, f"{name}: requests were answered throughout",
                   repr(by.get(name)))
            # Every request that started once a new aviaryd answered got 200; only one that was
            # in flight at a kill may have been cut (SIGKILL, or SIGTERM closing an accepted
            # connection).
            late_bad = [o for o in outcomes if o[3] != "200" and
                        not any(t_kill <= o[1] and o[0] <= t_up for _, _, _, t_kill, t_up in restarts)]
            is_(late_bad, [], "no request outside a restart failed")
            waits = [o[1] - o[0] for o in outcomes if o[3] == "200"]
            diag(f"longest wait for an answer: {max(waits):.2f} s")
    finally:
        unix.close()
        tcp.close()


def body():
    tmp = os.environ.get("AVIARY_TEST_TMPDIR") or "/tmp"
    work = os.path.join(tmp, f"aviary-systemd-{os.getpid()}")
    os.makedirs(work)
    try:
        test_watchdog(work)
        test_socket_activate(work)
        test_hitless_restart(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


main(body)
