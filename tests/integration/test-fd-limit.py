#!/usr/bin/env python3
"""The API at the file descriptor limit (issue 14, item 5). TCP clients use up aviaryd's last
descriptors (RLIMIT_NOFILE lowered with prlimit on the running daemon); then a client comes to
the unix socket, whose listener has no connection yet. libmicrohttpd retries such an accept
at every round ("busy waiting") with two log lines each time. aviaryd must stay nearly idle
and log a bounded number of lines while it lasts, and serve the waiting client once the TCP
clients leave. (The service proxy's own accept loop: tests/unit/test-proxy-fdlimit.c.)"""
import os
import socket
import subprocess
import tempfile
import time

from aviarytest import Daemon, free_tcp_port, is_, main, ok, parse_raw_response

HEADROOM = 6


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    """User plus system CPU time of PID, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_lines(d, word):
    return sum(1 for line in d.log().splitlines() if word in line)


def body():
    tmp = tempfile.mkdtemp(prefix="aviary-fdlimit-")
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(os.urandom(16).hex() + "\n")
    os.chmod(token_file, 0o600)
    port = free_tcp_port()
    config = {"token_file": token_file, "connection_limit_per_peer": 0, "request_timeout": 300,
              "connection_timeout": 300}
    with Daemon(config=config, args=["--listen", f"127.0.0.1:{port}"]) as d:
        limit = fd_count(d.pid) + HEADROOM
        r = subprocess.run(["prlimit", "--pid", str(d.pid), f"--nofile={limit}:{limit}"], capture_output=True,
                           text=True)
        if not ok(r.returncode == 0, f"RLIMIT_NOFILE of the running aviaryd lowered to {limit}", r.stderr):
            return
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(HEADROOM + 4)]
        deadline = time.monotonic() + 10
        while fd_count(d.pid) < limit and time.monotonic() < deadline:
            time.sleep(0.02)
        is_(fd_count(d.pid), limit, "idle TCP clients took every descriptor aviaryd may have")

        before_lines = log_lines(d, "accept")
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.settimeout(10)
        unix.connect(d.socket_path)  # into the listen backlog: aviaryd cannot accept it now
        unix.sendall(b"GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\n")
        cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
        time.sleep(1.0)  # the window measured: what aviaryd does meanwhile, not whether it answers
        cpu = cpu_seconds(d.pid) - cpu0
        window = time.monotonic() - t0
        ok(cpu < 0.5 * window, f"aviaryd used {cpu:.2f} s of CPU in {window:.2f} s at the limit (a busy loop uses it all)")
        lines = log_lines(d, "accept") - before_lines
        ok(1 <= lines <= 4, f"it logged {lines} lines about accepting, not one per attempt",
           "\n".join(d.log().splitlines()[-6:]))

        for s in held:
            s.close()
        got = b""
        while parse_raw_response(got) is None:
            try:
                chunk = unix.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            got += chunk
        unix.close()
        answer = parse_raw_response(got)
        is_(answer[0] if answer else None, 200, "once the TCP clients left, the waiting unix client is served")
        is_(d.client.get("/v1/health").status, 200, "and so is the next one")


main(body)
