#!/usr/bin/env python3
"""The TCP listener (only ever reached on 127.0.0.1): with token_file, requests without the
bearer token or with a wrong one get 401 unauthorized and change nothing, the right token
works, the unix socket never asks; start-up refuses a bad token file, and a non-loopback
listener without a token. Those start-ups run in a network namespace of their own
(unshare --net) so that nothing outside can ever reach them."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile

from aviarytest import (Client, Daemon, DaemonError, aviaryd_path, check_error, free_tcp_port, is_, like, main,
                        ok, parse_raw_response, random_bytes, skip, snapshot_diff, start_refused)

MiB = 1 << 20


def tcp_raw(port, data, timeout=10):
    """Sends DATA to 127.0.0.1:PORT, tolerating a peer that answers early and closes; returns
    the parsed response or None."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    got = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while parse_raw_response(got) is None:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            got += chunk
    finally:
        s.close()
    return parse_raw_response(got)


def test_token(tmp):
    token = os.urandom(16).hex()
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(token + "\n")
    os.chmod(token_file, 0o600)
    port = free_tcp_port()
    with Daemon(config={"token_file": token_file}, args=["--listen", f"127.0.0.1:{port}"]) as d:
        snap = d.snapshot()
        anon = Client(tcp_port=port)
        for desc, auth in (("no Authorization", None), ("a wrong token", "Bearer " + "0" * 32),
                           ("the token's first half", "Bearer " + token[:16]), ("the token plus one", f"Bearer {token}x"),
                           ("Basic credentials", "Basic dXNlcjpwYXNz"), ("the bare token", token),
                           ("an empty bearer", "Bearer "), ("the token with a space", f"Bearer  {token}")):
            hdrs = {"Authorization": auth} if auth else {}
            r = anon.get("/v1/health", headers=hdrs)
            check_error(r, 401, "unauthorized", f"GET /v1/health over TCP with {desc}: 401 unauthorized")
            like(r.header("WWW-Authenticate") or "", r"^Bearer\b", f"the 401 for {desc} asks for a Bearer token")
            r = anon.post("/v1/images", {"name": "sneaky"}, headers=hdrs)
            check_error(r, 401, "unauthorized", f"POST /v1/images over TCP with {desc}: 401 unauthorized")
        check_error(anon.get("/v1/nope"), 401, "unauthorized", "an unknown route over TCP without the token: 401")
        ok(d.snapshot() == snap, "the refused TCP requests changed nothing", lambda: snapshot_diff(snap, d.snapshot()))

        # A body the daemon will not read: the 401 must still reach the client.
        data, digest = random_bytes(4 * MiB)
        parsed = tcp_raw(port, (f"PUT /v1/blobs/{digest} HTTP/1.1\r\nHost: aviary\r\n"
                                f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n")
                         .encode() + data)
        ok(parsed is not None and parsed[0] == 401,
           "a 4 MiB PUT over TCP without the token gets its 401 (not a connection reset)",
           f"got {parsed!r}" if parsed else "no response: the connection was reset or closed first")
        ok(d.snapshot() == snap, "and it changed nothing", lambda: snapshot_diff(snap, d.snapshot()))

        authed = Client(tcp_port=port, token=token)
        r = authed.get("/v1/health")
        ok(r.status == 200 and r.json == {"status": "ok", "database": "ok", "accel": None, "kvm": None,
                                          "kvm_unusable": None}, "the right bearer token works", repr(r))
        r = anon.get("/v1/health", headers={"Authorization": f"bearer {token}"})
        is_(r.status, 200, "the auth scheme is case-insensitive (RFC 9110 11.1)", repr(r))
        r = authed.post("/v1/images", {"name": "via-tcp"})
        is_(r.status, 201, "a change over TCP with the token answers 201", repr(r))
        e = d.events()[-1]
        is_((e["actor"], e["action"], e["resource"]), ("token:bootstrap@127.0.0.1", "image.create", "image/via-tcp"),
            "its event names the bootstrap token and the TCP peer as the actor")
        r = d.client.get("/v1/health")
        is_(r.status, 200, "the unix socket needs no token")
        r = authed.put_blob(*random_bytes(64 * 1024))
        is_(r.status, 201, "a blob upload over TCP with the token answers 201", repr(r))


def test_open_loopback():
    port = free_tcp_port()
    with Daemon(args=["--listen", f"127.0.0.1:{port}"]) as d:
        check_error(Client(tcp_port=port).get("/v1/health"), 401, "unauthorized",
                    "without token_file a loopback TCP listener still wants a bearer token")
        r = d.client.post("/v1/tokens", {"name": "ci", "scope": "deploy"})
        is_(r.status, 201, "an API token is made over the unix socket", repr(r))
        r = Client(tcp_port=port, token=r.json["token"]).post("/v1/images", {"name": "open"})
        is_(r.status, 201, "and takes changes over TCP", repr(r))
        is_(d.events()[-1]["actor"], "token:ci@127.0.0.1", "whose actor is the token's name at the TCP peer")


def start_fails(tmp, desc, args, config=None, wrapper=(), want=r"token"):
    """aviaryd with ARGS must exit non-zero at start-up, saying why (WANT)."""
    state = tempfile.mkdtemp(dir=tmp)
    cmd = list(wrapper) + [aviaryd_path(), "--state-dir", os.path.join(state, "s"), "--socket",
                           os.path.join(state, "sock")] + list(args)
    # runtime = off: these daemons must never create a guest bridge in the host's namespace.
    path = os.path.join(state, "conf")
    with open(path, "w") as f:
        f.write("runtime = off\n" + (config or ""))
    cmd += ["--config", path]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = None, f"still running after 15 s (killed); stderr: {e.stderr!r}"
    start_refused(rc, err, f"{desc}: aviaryd refuses to start (exit status 1, no sanitizer report)")
    like(err, want, f"{desc}: and says why", err)


def test_refusals(tmp):
    port = free_tcp_port()
    short = os.path.join(tmp, "short-token")
    with open(short, "w") as f:
        f.write("tooshort\n")
    os.chmod(short, 0o600)
    start_fails(tmp, "a token shorter than 16 characters", ["--listen", f"127.0.0.1:{port}"],
                config=f"token_file = {short}\n", want=r"(?i)token.*(short|16)")
    start_fails(tmp, "a missing token file", ["--listen", f"127.0.0.1:{port}"],
                config=f"token_file = {tmp}/no-such-file\n", want=r"(?i)token")

    netns = ["unshare", "--net"]
    if not shutil.which("unshare") or subprocess.run(netns + ["true"], capture_output=True).returncode != 0:
        for what in ("0.0.0.0", "[::]", "192.0.2.1", "0.0.0.0 with a token"):
            skip(f"non-loopback listener {what}", "cannot make a network namespace (unshare --net)")
        return
    # In a network namespace of its own nothing can reach the daemon, whatever it binds.
    for addr in ("0.0.0.0", "[::]"):
        start_fails(tmp, f"--listen {addr}:PORT without a token", ["--listen", f"{addr}:{port}"], wrapper=netns,
                    want=r"(?i)non-loopback.*token|token.*non-loopback")
    # The refusal must come before the socket is bound (the 0.0.0.0 case must never be open,
    # not even for a moment). 192.0.2.1 (TEST-NET-1) is on no interface, so binding it fails at
    # once: if aviaryd binds before it checks, it fails with a message about binding instead of
    # the token. This runs in a namespace of the test's own whose lo is up: there, as on a host,
    # the bind of an address on no interface fails (with lo down, a fresh namespace lets it
    # succeed, which would hide the order), and nothing outside can reach it either way.
    ns = f"aviary-tcp-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode != 0:
        skip("--listen 192.0.2.1:PORT in a namespace of the test's own", "cannot make a network namespace (ip netns)")
    else:
        try:
            subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
            probe = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                                    "import socket; socket.socket().bind(('192.0.2.1', 0))"],
                                   capture_output=True, text=True)
            ok(probe.returncode != 0 and "Cannot assign requested address" in probe.stderr,
               "in the test's namespace (lo up) binding 192.0.2.1 fails (EADDRNOTAVAIL), as the next check needs",
               probe.stderr)
            start_fails(tmp, "--listen 192.0.2.1:PORT (on no interface) without a token is refused for the token, "
                        "before binding", ["--listen", f"192.0.2.1:{port}"], wrapper=["ip", "netns", "exec", ns],
                        want=r"(?i)non-loopback.*token|token.*non-loopback")
        finally:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)

    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(os.urandom(16).hex())
    os.chmod(token_file, 0o600)
    try:
        with Daemon(config={"token_file": token_file}, args=["--listen", f"0.0.0.0:{port}"], wrapper=netns) as d:
            ok(d.running(), "--listen 0.0.0.0:PORT with a token starts (in its own network namespace)")
            like(d.log(), r"bearer tokens? required", "and says the bearer token is required")
    except DaemonError as e:
        ok(False, "--listen 0.0.0.0:PORT with a token starts (in its own network namespace)", str(e))


def body():
    tmp = tempfile.mkdtemp(prefix="aviary-it-tcp-")
    try:
        test_token(tmp)
        test_open_loopback()
        test_refusals(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


main(body)
