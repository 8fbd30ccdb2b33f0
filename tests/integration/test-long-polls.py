#!/usr/bin/env python3
"""Long polls (?wait=) and the connections they hold (issue 14, item 3). 256 waits over TCP
from 16 loopback addresses (the per-peer limit each) must not keep the unix socket from waiting
(every unix ?wait= got 429); once those clients close, their connections and slots are free at
once (they were held for the wait's whole deadline, up to an hour, and their addresses refused);
and connection_timeout does not cut a wait, which ends at its own timeout (docs/api.md)."""
import os
import socket
import tempfile
import time

from aviarytest import Daemon, check_error, create_service, free_tcp_port, is_, main, ok, parse_raw_response, push_version

ADDRESSES = [f"127.0.0.{i}" for i in range(2, 18)]
PER_PEER = 16
WAIT = "/v1/services/web/rollouts/current?wait=done&timeout="


def rollout_in_progress(c):
    """A rollout paused at its first step: ?wait=done waits on it (runtime = off moves nothing)."""
    for tag in ("1", "2"):
        push_version(c, "app", tag)
    create_service(c, "web", listen="127.0.0.1:18097")
    c.post("/v1/services/web/rollouts", {"version": "app:1"})
    r = c.post("/v1/services/web/rollouts", {"version": "app:2", "strategy": {"canary": {"steps": [{"pause": {}}]}}})
    if r.status != 201:
        raise AssertionError(f"rollout: {r!r}")


def tcp_connect(port, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def request_bytes(path, token):
    return f"GET {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n\r\n".encode()


def read_answer(s):
    got = b""
    while parse_raw_response(got) is None:
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        got += chunk
    return parse_raw_response(got)


def served_from(port, source, token, deadline):
    """Polls GET /v1/health from SOURCE until it is answered 200 (the address has a free slot),
    or DEADLINE (monotonic) passes."""
    while time.monotonic() < deadline:
        try:
            with tcp_connect(port, source) as s:
                s.sendall(request_bytes("/v1/health", token))
                answer = read_answer(s)
                if answer and answer[0] == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def body():
    tmp = tempfile.mkdtemp(prefix="aviary-polls-")
    token = os.urandom(16).hex()
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    os.chmod(token_file, 0o600)
    port = free_tcp_port()
    with Daemon(config={"token_file": token_file}, args=["--listen", f"127.0.0.1:{port}"]) as d:
        rollout_in_progress(d.client)

        held = []
        for addr in ADDRESSES:
            for _ in range(PER_PEER):
                s = tcp_connect(port, addr)
                s.sendall(request_bytes(WAIT + "1h", token))
                held.append(s)
        ok(len(held) == len(ADDRESSES) * PER_PEER, f"{len(held)} waits over TCP from {len(ADDRESSES)} addresses")

        # The unix socket has its own slots.
        r = d.client.get(WAIT + "1s")
        check_error(r, 504, "wait-timeout", "a unix-socket wait while TCP holds 256 is served: 504 at its timeout "
                    "(not 429)")

        # The TCP clients leave: their slots and connections are free at once, not after an hour.
        for s in held:
            s.close()
        deadline = time.monotonic() + 10
        free = [addr for addr in ADDRESSES if served_from(port, addr, token, deadline)]
        is_(free, ADDRESSES, "every address is served again once its waiting clients closed")
        waits = [tcp_connect(port, ADDRESSES[0]) for _ in range(PER_PEER)]
        for s in waits:
            s.sendall(request_bytes(WAIT + "1s", token))
        answers = [read_answer(s) for s in waits]
        for s in waits:
            s.close()
        is_([a[0] if a else None for a in answers], [504] * PER_PEER,
            f"{PER_PEER} new waits from {ADDRESSES[0]} each end at their timeout (504)")
        ok("too-many-requests" not in d.log(), "no wait was ever refused 429", d.log()[-2000:])

    # connection_timeout idles out connections, not waits: a wait of 3 s with connection_timeout
    # 1 s gets its answer.
    with Daemon(config={"connection_timeout": 1}) as d:
        rollout_in_progress(d.client)
        r = d.client.get(WAIT + "3s")
        check_error(r, 504, "wait-timeout", "connection_timeout = 1: a 3 s wait still ends at its own timeout (504)")


main(body)
