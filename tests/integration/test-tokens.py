#!/usr/bin/env python3
"""Access: API tokens with scopes on the TCP listener (127.0.0.1 only), the unix socket's peer
allow-list, and HTTPS. Checked: `aviary token create` prints the secret alone; only its SHA-256
is stored; each scope may do exactly its routes (read < deploy < admin) and a refused request
changes nothing; a revoked token is refused at once; no secret appears in the daemon's log,
the audit log, the database (idempotency replays included) or the token list; a unix-socket
peer that is not on the allow-list is refused, one that is gets in and its uid/gid is in the
event; with tls_cert/tls_key the TCP listener speaks HTTPS and nothing else."""
import hashlib
import json
import os
import re
import socket
import sqlite3
import ssl
import subprocess
import tempfile

from aviarytest import (Client, Daemon, aviary_path, check_error, free_tcp_port, is_, main, ok, push_version,
                        snapshot_diff, start_refused)

SECRET = re.compile(r"^avy_[0-9a-f]{64}$")


def cli(d, *args):
    return subprocess.run([aviary_path(), "--socket", d.socket_path, *args], capture_output=True, text=True, timeout=30)


def db_text(d):
    """Every row of every table, as text (the secret must be in none of them)."""
    conn = sqlite3.connect(os.path.join(d.state_dir, "aviary.db"))
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


SCOPES = ("read", "deploy", "admin")


def documented_scope(method, pattern):
    """docs/api.md: read for every GET, deploy for blobs, images, versions and rollouts (a
    rollback included), admin for services, instances and tokens; docs/security.md: which tokens
    exist is for admins. The web view's files need no credentials at all ("none")."""
    if pattern.startswith("/ui/"):
        return "none"
    if pattern == "/v1/tokens" or pattern.startswith("/v1/tokens/"):
        return "admin"
    if method in ("GET", "HEAD"):
        return "read"
    if pattern.startswith(("/v1/blobs", "/v1/images")) or "/rollouts" in pattern or pattern.endswith("/rollback"):
        return "deploy"
    return "admin"


def route_table():
    """(method, pattern) of every route, from `aviaryd --routes` (THE route table), plus HEAD
    for every GET (the router answers HEAD with the GET route)."""
    out = subprocess.run([os.environ.get("AVIARYD", "aviaryd"), "--routes"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    routes = [tuple(line.split(" ", 1)) for line in out.splitlines() if line.strip()]
    return routes + [("HEAD", p) for m, p in routes if m == "GET"]


def harmless_request(method, pattern):
    """A request to PATTERN that changes nothing whoever sends it: its parameters name nothing
    that exists, and a body is one the handler refuses. The scope is checked before any of that."""
    values = {"digest": "sha256:" + "0" * 64, "name": "no-such", "ref": "9.9.9", "id": "999999", "file": "app.js"}
    path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], pattern)
    if method == "PUT":  # a blob whose bytes do not hash to its name
        return path, {"body": b"x", "content_type": "application/octet-stream"}
    if method in ("POST", "PATCH") and not re.search(r"/(promote|pause|resume|abort|retry|restart|revoke)$", path):
        return path, {"json_body": {}}
    if path.endswith("/revoke"):
        return path, {"json_body": {}}
    return path, {}


def test_scope_matrix(d, c):
    """Every route of `aviaryd --routes` with a token of every scope: below the route's scope
    403 forbidden, at or above it anything but 401/403; and with no token at all, 401 but on the
    routes that need no credentials. Nothing changes either way."""
    routes = route_table()
    ok(len(routes) >= 37, f"aviaryd --routes lists the route table ({len(routes)} routes with HEAD)")
    snap = d.snapshot()
    order = {s: i for i, s in enumerate(SCOPES)}
    order["none"] = -1
    anonymous = Client(tcp_port=c["read"].tcp_port)
    wrong = []
    for method, pattern in routes:
        need = documented_scope(method, pattern)
        path, kw = harmless_request(method, pattern)
        r = anonymous.request(method, path, **kw)
        if not (r.status not in (401, 403) if need == "none" else r.status == 401):
            wrong.append(f"no token, {method} {path} (needs {need}): {r!r}")
        for scope in SCOPES:
            r = c[scope].request(method, path, **kw)
            if order[scope] < order[need]:
                good = r.status == 403 and (method == "HEAD" or r.error_code() == "forbidden")
            else:
                good = r.status not in (401, 403)
            if not good:
                wrong.append(f"{scope} token, {method} {path} (needs {need}): {r!r}")
    is_(wrong, [], f"each of the {len(routes)} routes refuses (403) exactly the tokens below its documented scope, "
        f"and lets the others through; without a token, 401 but where none is needed "
        f"({len(routes) * (len(SCOPES) + 1)} requests)")
    ok(d.snapshot() == snap, "none of them changed anything", lambda: snapshot_diff(snap, d.snapshot()))


def test_scopes(d, port):
    r = cli(d, "token", "create", "--scope", "deploy", "--name", "ci")
    ok(r.returncode == 0 and SECRET.match(r.stdout.strip()) and r.stdout.count("\n") == 1,
       "aviary token create prints the secret alone on stdout", repr(r.stdout), r.stderr)
    secrets = {"deploy": r.stdout.strip()}
    for scope in ("read", "admin"):
        r = d.client.post("/v1/tokens", {"name": f"t-{scope}", "scope": scope})
        is_(r.status, 201, f"a {scope} token is created", repr(r))
        secrets[scope] = r.json["token"]
    row = sqlite3.connect(os.path.join(d.state_dir, "aviary.db")).execute(
        "SELECT hash, prefix FROM tokens WHERE name = 'ci'").fetchone()
    is_(row[0], hashlib.sha256(secrets["deploy"].encode()).hexdigest(), "only the secret's SHA-256 is stored")
    is_(row[1], secrets["deploy"][:12], "and a 12-character prefix to recognise it")

    c = {scope: Client(tcp_port=port, token=secret) for scope, secret in secrets.items()}
    push_version(d.client, "web", "1")
    d.client.post("/v1/services", {"name": "svc", "stable_version": "web:1"})
    for client in c.values():  # records last use (to the minute) before the snapshot
        client.get("/v1/health")
    snap = d.snapshot()
    refused = [
        ("read", "POST", "/v1/images", {"name": "nope"}),
        ("read", "DELETE", "/v1/services/svc", None),
        ("read", "GET", "/v1/tokens", None),
        ("deploy", "POST", "/v1/services", {"name": "nope"}),
        ("deploy", "PATCH", "/v1/services/svc", {"replicas": 3}),
        ("deploy", "POST", "/v1/tokens", {"scope": "admin"}),
        ("deploy", "DELETE", "/v1/tokens/t-admin", None),
    ]
    for scope, method, path, body in refused:
        r = c[scope].request(method, path, json_body=body)
        check_error(r, 403, "forbidden", f"a {scope} token cannot {method} {path}")
    ok(d.snapshot() == snap, "the refused requests changed nothing", lambda: snapshot_diff(snap, d.snapshot()))
    allowed = [
        ("read", "GET", "/v1/images", None, 200),
        ("read", "GET", "/v1/services/svc/rollouts", None, 200),
        ("deploy", "POST", "/v1/images", {"name": "pushed"}, 201),
        ("deploy", "POST", "/v1/services/svc/rollouts", {"version": "web:1"}, 409),  # allowed, but already stable
        ("admin", "POST", "/v1/services", {"name": "made"}, 201),
        ("admin", "GET", "/v1/tokens", None, 200),
    ]
    for scope, method, path, body, want in allowed:
        r = c[scope].request(method, path, json_body=body)
        is_(r.status, want, f"a {scope} token may {method} {path}", repr(r))
    ev = [e for e in d.events() if e["resource"] == "image/pushed"]
    is_(ev and ev[0]["actor"], "token:ci@127.0.0.1", "the event names the token and the peer")
    test_scope_matrix(d, c)

    # Names the daemon writes in actors itself are reserved (issue 14, item 7): a token named
    # bootstrap had the actor token:bootstrap@ADDR of token_file's.
    snap = d.snapshot()
    for name in ("bootstrap", "aviaryd"):
        check_error(d.client.post("/v1/tokens", {"name": name, "scope": "read"}), 422, "invalid-field",
                    f"a token named {name} is refused")
    ok(d.snapshot() == snap, "and nothing was made", lambda: snapshot_diff(snap, d.snapshot()))

    listing = d.client.get("/v1/tokens").json["items"]
    is_(sorted(t["name"] for t in listing), ["ci", "t-admin", "t-read"], "the list shows the tokens")
    ok(all("token" not in t for t in listing), "and never a secret")

    # An Idempotency-Key replay of a creation does not carry the secret (it is stored).
    r1 = d.client.post("/v1/tokens", {"name": "replayed", "scope": "read"}, headers={"Idempotency-Key": "tok-1"})
    r2 = d.client.post("/v1/tokens", {"name": "replayed", "scope": "read"}, headers={"Idempotency-Key": "tok-1"})
    ok(r1.status == 201 and SECRET.match(r1.json["token"]), "a token created with an Idempotency-Key")
    ok(r2.header("Idempotent-Replayed") == "true" and not SECRET.match(r2.json.get("token", "")),
       "its replay says where the secret was, not the secret", repr(r2.json.get("token")))
    secrets["replayed"] = r1.json["token"]

    # Token details are admin-only in the audit log too (issue 14, item 16): a read token saw
    # every token's name, scope and prefix through /v1/events.
    items, _ = c["read"].list_all("/v1/events", limit=1000)
    token_events = [e for e in items if e["action"].startswith("token.")]
    ok(len(token_events) >= 4, f"a read token lists the token events ({len(token_events)})")
    is_({(e["resource"], json.dumps(e["detail"])) for e in token_events}, {("token", "null")},
        "each without the token's name or detail")
    text = json.dumps(items)
    leaked = [s[:12] for s in secrets.values() if s[:12] in text]
    is_(leaked, [], "no token prefix appears in the events a read token sees")
    check_error(c["read"].get("/v1/events?resource=token/t-admin"), 403, "forbidden",
                "a read token cannot ask for one token's events by name")
    admin_view = [e for e in d.client.list_all("/v1/events", limit=1000)[0] if e["action"] == "token.create"]
    ok(admin_view and all(e["resource"].startswith("token/") and e["detail"].get("prefix") for e in admin_view),
       "an admin sees them whole", repr(admin_view[:1]))

    r = cli(d, "token", "revoke", "ci")
    is_(r.returncode, 0, "aviary token revoke ci", r.stderr)
    check_error(c["deploy"].get("/v1/images"), 401, "unauthorized", "the revoked token is refused at once")
    check_error(Client(tcp_port=port, token="avy_" + "0" * 64).get("/v1/images"), 401, "unauthorized",
                "an unknown token is refused")

    text = "\n".join([d.log(), db_text(d), repr(d.events())])
    leaked = [s for s in secrets.values() if s in text]
    is_(leaked, [], "no secret appears in the daemon's log, the database or the audit log")


def test_allow_list():
    nobody = 65534
    for allowed in (False, True):
        conf = {"socket_mode": "0666", "allow_uids": f"4242 {nobody}" if allowed else "4242"}
        with Daemon(config=conf) as d:
            os.chmod(d.tmp, 0o755)
            r = subprocess.run(["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", "curl", "-s",
                                "-o", "-", "-w", "\n%{http_code}", "--unix-socket", d.socket_path, "-X", "POST",
                                "-H", "Content-Type: application/json", "-d", '{"name":"from-nobody"}',
                                "http://aviary/v1/images"], capture_output=True, text=True, timeout=30)
            code = r.stdout.rsplit("\n", 1)[-1]
            if allowed:
                is_(code, "201", "a peer on allow_uids may call", r.stdout)
                ev = [e for e in d.events() if e["resource"] == "image/from-nobody"]
                is_(ev and ev[0]["actor"], f"uid:{nobody} gid:{nobody}", "its uid and gid are in the event")
            else:
                is_(code, "403", "a peer not on allow_uids is refused with 403", r.stdout)
                ok('"forbidden"' in r.stdout and f"uid {nobody}" in r.stdout, "and told why", r.stdout)
                is_(d.client.get("/v1/images/from-nobody").status, 404, "nothing was made")
                is_(d.client.get("/v1/health").status, 200, "root is always allowed")


def tls_handshake(port, cert, version):
    """Whether a TLS handshake with exactly VERSION (an ssl.TLSVersion name) succeeds."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cert)
    v = getattr(ssl.TLSVersion, version)
    ctx.minimum_version = ctx.maximum_version = v
    if v < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 would not offer TLS 1.0/1.1 otherwise
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.version() is not None
    except (ssl.SSLError, ConnectionError):
        return False


def test_tls_versions(port, cert, desc, refused, accepted):
    """TLS 1.0 and 1.1 are refused (issue 14, item 11: the listener negotiated them)."""
    for v in refused:
        ok(not tls_handshake(port, cert, v), f"{desc}: a {v} handshake is refused")
    for v in accepted:
        ok(tls_handshake(port, cert, v), f"{desc}: a {v} handshake succeeds")


def test_tls():
    port = free_tcp_port()
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                            "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                           capture_output=True, text=True, timeout=60)
        if not ok(r.returncode == 0, "a self-signed certificate is made", r.stderr):
            return
        with Daemon(config={"tls_cert": cert, "tls_key": key}, args=["--listen", f"127.0.0.1:{port}"]) as d:
            secret = d.client.post("/v1/tokens", {"name": "tls", "scope": "read"}).json["token"]
            r = subprocess.run(["curl", "-s", "--cacert", cert, "-H", f"Authorization: Bearer {secret}",
                                f"https://127.0.0.1:{port}/v1/health"], capture_output=True, text=True, timeout=30)
            ok(r.returncode == 0 and '"ok"' in r.stdout, "HTTPS with the CA certificate and a token answers",
               r.stdout, r.stderr)
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                                f"http://127.0.0.1:{port}/v1/health"], capture_output=True, text=True, timeout=30)
            is_(r.stdout, "000", "plain HTTP on the HTTPS port gets no HTTP answer at all")
            r = subprocess.run(["curl", "-s", "--max-time", "5", f"https://127.0.0.1:{port}/v1/health"],
                               capture_output=True, text=True, timeout=30)
            is_(r.returncode, 60, "an unknown certificate is refused by curl (60: the server presents ours)")
            test_tls_versions(port, cert, "the default tls_priorities", refused=("TLSv1", "TLSv1_1"),
                              accepted=("TLSv1_2", "TLSv1_3"))
        # tls_priorities is the operator's: GnuTLS's NORMAL brings TLS 1.0 back.
        with Daemon(config={"tls_cert": cert, "tls_key": key, "tls_priorities": "NORMAL"},
                    args=["--listen", f"127.0.0.1:{port}"]):
            test_tls_versions(port, cert, "tls_priorities = NORMAL", refused=(), accepted=("TLSv1", "TLSv1_2"))
        with tempfile.TemporaryDirectory() as t2:
            conf = os.path.join(t2, "c.conf")
            with open(conf, "w") as f:
                f.write(f"runtime = off\ntls_cert = {cert}\ntls_key = {key}\ntls_priorities = NOPE:+VERS-TLS9\n"
                        f"listen = 127.0.0.1:{port}\n")
            r = subprocess.run([os.environ.get("AVIARYD", "aviaryd"), "--state-dir", f"{t2}/s", "--socket",
                                f"{t2}/sock", "--config", conf], capture_output=True, text=True, timeout=30)
            start_refused(r.returncode, r.stderr, "an invalid tls_priorities stops aviaryd at start",
                          want="tls_priorities")
        # cert without key
        with tempfile.TemporaryDirectory() as t2:
            conf = os.path.join(t2, "c.conf")
            with open(conf, "w") as f:
                f.write(f"runtime = off\ntls_cert = {cert}\n")
            r = subprocess.run([os.environ.get("AVIARYD", "aviaryd"), "--state-dir", f"{t2}/s", "--socket",
                                f"{t2}/sock", "--config", conf], capture_output=True, text=True, timeout=30)
            start_refused(r.returncode, r.stderr, "tls_cert without tls_key is refused at start", want="tls_key")


def body():
    port = free_tcp_port()
    with Daemon(args=["--listen", f"127.0.0.1:{port}"]) as d:
        test_scopes(d, port)
    test_allow_list()
    test_tls()


main(body)
