#!/usr/bin/env python3
"""Secrets and the database on disk (issue 14, item 12). aviaryd refuses to start with a
token_file or tls_key that others can read or write, or that belongs to another user (it said
nothing about a 0644 token file); a certificate may be public. The database and its -wal and
-shm files are 0600 whatever the umask (they were 0644 under umask 022), also when an older
aviaryd left them wider."""
import os
import stat
import subprocess
import tempfile

from aviarytest import Daemon, DaemonError, free_tcp_port, is_, like, main, ok

UMASK_0 = ["sh", "-c", 'umask 000; exec "$@"', "sh"]


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def start(tmp, config):
    """Starts aviaryd with CONFIG (text) until it answers or exits; returns (whether it started,
    its log)."""
    d = Daemon(config=config)
    try:
        d.start()
        started = True
    except DaemonError:
        started = False
    log = d.log()
    if d.running():
        d.stop()
    d.cleanup()
    return started, log


def test_secrets(tmp):
    port = free_tcp_port()
    listen = f"listen = 127.0.0.1:{port}\n"
    token = os.path.join(tmp, "token")
    with open(token, "w") as f:
        f.write(os.urandom(16).hex() + "\n")
    for m in (0o644, 0o640, 0o604, 0o620, 0o602):
        os.chmod(token, m)
        started, err = start(tmp, f"token_file = {token}\n" + listen)
        ok(not started, f"a token_file of mode {m:04o} is refused at start", err)
        like(err, rf"token_file .* mode {m:04o}", f"mode {m:04o}: the message names the setting and the mode")
    for m in (0o600, 0o400):
        os.chmod(token, m)
        started, err = start(tmp, f"token_file = {token}\n" + listen)
        ok(started, f"a token_file of mode {m:04o} is accepted", err)
    os.chmod(token, 0o600)
    os.chown(token, 65534, 65534)
    started, err = start(tmp, f"token_file = {token}\n" + listen)
    ok(not started, "a token_file of another user (nobody) is refused", err)
    like(err, r"belongs to uid 65534", "and the message says whose it is")
    os.chown(token, 0, 0)

    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=127.0.0.1"], capture_output=True, text=True, timeout=60)
    if not ok(r.returncode == 0, "a self-signed certificate is made", r.stderr):
        return
    os.chmod(cert, 0o644)
    os.chmod(key, 0o644)
    started, err = start(tmp, f"tls_cert = {cert}\ntls_key = {key}\n" + listen)
    ok(not started, "a tls_key of mode 0644 is refused", err)
    like(err, r"tls_key .* mode 0644", "and the message names tls_key")
    os.chmod(key, 0o600)
    started, err = start(tmp, f"tls_cert = {cert}\ntls_key = {key}\n" + listen)
    ok(started, "tls_key 0600 with a tls_cert of 0644 is accepted", err)


def test_database():
    with Daemon(wrapper=UMASK_0) as d:
        d.client.post("/v1/images", {"name": "web"})  # writes the WAL
        db = os.path.join(d.state_dir, "aviary.db")
        for suffix in ("", "-wal", "-shm"):
            ok(os.path.exists(db + suffix), f"aviary.db{suffix} exists")
            is_(f"{mode(db + suffix):04o}", "0600", f"aviary.db{suffix} is 0600 under umask 000")
        d.stop()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.chmod(db + suffix, 0o644)  # as an older aviaryd left them under umask 022
        d.start()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                is_(f"{mode(db + suffix):04o}", "0600", f"a 0644 aviary.db{suffix} is narrowed to 0600 at start")
        is_(d.client.get("/v1/images/web").status, 200, "and the data is all there")


def body():
    with tempfile.TemporaryDirectory(prefix="aviary-perm-") as tmp:
        test_secrets(tmp)
    test_database()


main(body)
