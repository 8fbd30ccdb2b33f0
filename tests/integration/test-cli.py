#!/usr/bin/env python3
"""The aviary CLI against a real daemon: image push (uploading only what the daemon lacks),
image ls/show (tables and -o json), a refused push (exit 1, the server's message and code
on stderr), service create/ls, events, usage errors (exit 2). Skipped when the CLI is not
built."""
import json
import os
import subprocess
import tempfile

from aviarytest import Daemon, aviary_path, is_, like, main, ok, random_blob, skip


def run_cli(d, *args, timeout=30):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVIARY_") or k == "AVIARY_SOURCE_ROOT"}
    p = subprocess.run([aviary_path(), "--socket", d.socket_path] + list(args), capture_output=True, text=True,
                       timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def cli_ok(d, desc, *args):
    rc, out, err = run_cli(d, *args)
    ok(rc == 0, f"aviary {desc}: exit status 0", f"exit status {rc}", f"stdout: {out}", f"stderr: {err}")
    return out


def events(d, action=None):
    return [e for e in d.events() if action is None or e["action"] == action]


def parse_json(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


def test_cli(d, tmp):
    c = d.client
    kernel, kdigest = random_blob(tmp, 300_000, "kernel-")
    initrd, idigest = random_blob(tmp, 500_000, "initrd-")
    other, _ = random_blob(tmp, 300_000, "other-")
    cmdline = "console=ttyS0 ip={ip}::{gateway}:{netmask}::eth0:off app.version={version}"

    cli_ok(d, "image push web:1.0", "image", "push", "web:1.0", "--kernel", kernel, "--initrd", initrd,
           "--cmdline", cmdline, "--memory", "256M", "--port", "8080", "--label", "a=b", "--label", "team=edge")
    r = c.get("/v1/images/web/versions/1.0")
    is_(r.status, 200, "the pushed version is on the daemon", repr(r))
    v = r.json or {}
    is_({k: v.get(k) for k in ("kernel", "initrd", "cmdline", "memory_mib", "port", "labels")},
        {"kernel": kdigest, "initrd": idigest, "cmdline": cmdline, "memory_mib": 256, "port": 8080,
         "labels": {"a": "b", "team": "edge"}}, "with the files' digests and the options given")
    is_(sorted(e["resource"] for e in events(d, "blob.upload")), sorted([f"blob/{kdigest}", f"blob/{idigest}"]),
        "the first push uploaded the two files")

    out = cli_ok(d, "image ls", "image", "ls")
    like(out, r"(?m)^web\s", "image ls shows the image")
    out = cli_ok(d, "image show web:1.0", "image", "show", "web:1.0")
    ok(v.get("digest", "?") in out and kdigest in out, "image show web:1.0 shows the version's and kernel's digests",
       out)
    j = parse_json(cli_ok(d, "-o json image ls", "-o", "json", "image", "ls"))
    ok(isinstance(j, dict) and [i["name"] for i in j.get("items", [])] == ["web"] and "next" in j,
       "-o json image ls is the daemon's JSON list", repr(j))
    j = parse_json(cli_ok(d, "-o json image show web:1.0", "-o", "json", "image", "show", "web:1.0"))
    is_(j, v, "-o json image show web:1.0 is the daemon's version JSON")

    # Same version again: harmless, nothing uploaded or created.
    n_uploads, n_creates = len(events(d, "blob.upload")), len(events(d, "version.create"))
    cli_ok(d, "image push web:1.0 again", "image", "push", "web:1.0", "--kernel", kernel, "--initrd", initrd,
           "--cmdline", cmdline, "--memory", "256", "--port", "8080", "--label", "team=edge", "--label", "a=b")
    is_(len(events(d, "blob.upload")), n_uploads, "pushing the same version again uploaded nothing")
    is_(len(events(d, "version.create")), n_creates, "and created nothing")

    # A new version with the same files: the daemon has them, so nothing is uploaded.
    cli_ok(d, "image push web:1.1", "image", "push", "web:1.1", "--kernel", kernel, "--initrd", initrd)
    is_(len(events(d, "blob.upload")), n_uploads, "a second version with the same files uploaded no blob")
    is_(len(events(d, "version.create")), n_creates + 1, "and created the version")
    out = cli_ok(d, "image ls web", "image", "ls", "web")
    ok("1.0" in out and "1.1" in out, "image ls web lists both versions", out)

    # Other content under an existing tag: refused, exit 1, the server's message on stderr.
    snap_versions = d.snapshot()["versions"]
    rc, out, err = run_cli(d, "image", "push", "web:1.0", "--kernel", other, "--initrd", initrd, "--cmdline", cmdline)
    is_(rc, 1, "pushing web:1.0 with another kernel exits 1", f"stdout: {out}", f"stderr: {err}")
    like(err, r"already exists with other content", "stderr carries the server's message")
    like(err, r"\(version-exists\)", "stderr names the error code")
    is_(d.snapshot()["versions"], snap_versions, "no version changed")
    is_(c.get("/v1/images/web/versions/1.0").json, v, "web:1.0 is still the first push")

    cli_ok(d, "service create", "service", "create", "web", "--image", "web:1.0", "--replicas", "2", "--listen",
           "127.0.0.1:18080")
    r = c.get("/v1/services/web")
    ok(r.status == 200 and (r.json["stable_version"], r.json["replicas"], r.json["listen"])
       == ("web:1.0", 2, "127.0.0.1:18080"), "the service is on the daemon as asked", repr(r))
    out = cli_ok(d, "service ls", "service", "ls")
    like(out, r"(?m)^web\s", "service ls shows the service")
    j = parse_json(cli_ok(d, "-o json service ls", "-o", "json", "service", "ls"))
    ok(isinstance(j, dict) and [s["name"] for s in j.get("items", [])] == ["web"], "-o json service ls is JSON",
       repr(j))
    rc, out, err = run_cli(d, "service", "create", "web2", "--image", "web:9.9")
    ok(rc == 1 and "(version-not-found)" in err, "a service on an unknown version: exit 1 and version-not-found",
       f"exit status {rc}", err)

    out = cli_ok(d, "events", "events")
    for action in ("blob.upload", "version.create", "service.create"):
        like(out, rf"\b{action.replace('.', r'[.]')}\b", f"events shows {action}")
    j = parse_json(cli_ok(d, "-o json events", "-o", "json", "events"))
    is_(j and [e["id"] for e in j.get("items", [])], [e["id"] for e in d.events()],
        "-o json events lists every event of the daemon")
    out = cli_ok(d, "events --resource image/web", "events", "--resource", "image/web")
    ok("version.create" in out and "service.create" not in out, "events --resource keeps that resource", out)

    keys = d.snapshot()["idempotency_keys"]
    ok(len(keys) >= 4, "every POST of the CLI carried an Idempotency-Key (rows kept by the daemon)",
       f"{len(keys)} keys")

    rc, out, err = run_cli(d, "image", "push")
    is_(rc, 2, "image push without arguments is a usage error (exit 2)", err)
    rc, out, err = run_cli(d, "no-such-command")
    is_(rc, 2, "an unknown command is a usage error (exit 2)", err)
    p = subprocess.run([aviary_path(), "--socket", os.path.join(tmp, "nobody-here"), "image", "ls"],
                       capture_output=True, text=True, timeout=60)
    ok(p.returncode == 1 and p.stderr.startswith("aviary:"), "an unreachable daemon: exit 1 and a message",
       f"exit status {p.returncode}", p.stderr)


def body():
    path = aviary_path()
    try:
        usable = os.access(path, os.X_OK) and subprocess.run([path, "--version"], capture_output=True,
                                                             timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        usable = False
    if not usable:
        skip("the aviary CLI", f"{path} is not built or does not run")
        return
    with Daemon() as d, tempfile.TemporaryDirectory(prefix="aviary-it-cli-") as tmp:
        test_cli(d, tmp)


main(body)
