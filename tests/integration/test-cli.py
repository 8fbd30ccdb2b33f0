#!/usr/bin/env python3
"""The aviary CLI against a real daemon: image push (uploading only what the daemon lacks),
image ls/show (tables and -o json), a refused push (exit 1, the server's message and code
on stderr), service create/ls, events, usage errors (exit 2); `aviary deploy --dry-run`
(the request bodies that --steps and the other options make) and the usage errors of deploy
and rollout, which need no daemon. Skipped when the CLI is not built."""
import json
import os
import re
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


def run_offline(tmp, *args):
    """The CLI aimed at a socket nobody listens on: a command that tried to reach a daemon
    would exit 1 ("cannot connect"), not 0 or 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVIARY_")}
    p = subprocess.run([aviary_path(), "--socket", os.path.join(tmp, "nobody-here")] + list(args),
                       capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def test_deploy_dry_run(tmp):
    def weight(p):
        return {"setWeight": p}

    def pause(d=None):
        return {"pause": {"duration": d} if d else {}}

    cases = [
        ([], {"version": "web:v2"}),
        (["--steps", "10%,30s,50%,pause,100%"],
         {"version": "web:v2", "strategy": {"canary": {"steps": [
             weight(10), pause("30s"), weight(50), pause(), weight(100)]}}}),
        (["--steps", "12.5%,500ms,5m,1h,analysis,0%,99.99%,100%"],
         {"version": "web:v2", "strategy": {"canary": {"steps": [
             weight(12.5), pause("500ms"), pause("5m"), pause("1h"), {"analysis": {}}, weight(0), weight(99.99),
             weight(100)]}}}),
        (["--steps=100%"], {"version": "web:v2", "strategy": {"canary": {"steps": [weight(100)]}}}),
        (["--preset", "Linear10PercentEvery1Minute", "--canary-replicas", "2", "--no-analysis",
          "--sticky-header", "X-User"],
         {"version": "web:v2", "strategy": {"preset": "Linear10PercentEvery1Minute", "canary": {
             "canaryReplicas": 2, "analysis": {"enabled": False}, "stickiness": {"header": "X-User"}}}}),
        (["--steps", "25%,analysis", "--sticky-cookie", "session", "--wait", "--timeout", "10m"],
         {"version": "web:v2", "strategy": {"canary": {
             "steps": [weight(25), {"analysis": {}}], "stickiness": {"cookie": "session"}}}}),
        (["--no-analysis"], {"version": "web:v2", "strategy": {"canary": {"analysis": {"enabled": False}}}}),
    ]
    for options, want in cases:
        rc, out, err = run_offline(tmp, "deploy", "web", "web:v2", *options, "--dry-run")
        desc = f"deploy --dry-run {' '.join(options)}".strip()
        is_((rc, parse_json(out)), (0, want), f"{desc}: exit 0 and the expected request body", f"stderr: {err}")
        # Pretty, keys sorted, and numbers as typed (12.5 is no 12.50000001, 10 no 10.0).
        is_(out, json.dumps(want, indent=2, sort_keys=True) + "\n", f"{desc}: printed indented, keys sorted")
    rc, out, err = run_offline(tmp, "deploy", "web", "web:v2", "--steps", "0.1%,0.03%,12.34%", "--dry-run")
    is_(re.findall(r'"setWeight": ([^\s]*)', out), ["0.1", "0.03", "12.34"],
        "decimals go out as typed (0.1, not jansson's 0.10000000000000001)", err)
    rc, out, err = run_offline(tmp, "-o", "json", "deploy", "web", "web@sha256:" + "a" * 64, "--dry-run")
    is_((rc, parse_json(out)), (0, {"version": "web@sha256:" + "a" * 64}), "deploy --dry-run takes IMAGE@sha256:DIGEST",
        err)


def test_rollout_usage(tmp):
    bad_steps = [
        ("10", '"10"'), ("150%", '"150%"'), ("abc", '"abc"'), ("10%,,20%", "item 2 is empty"), ("-5%", '"-5%"'),
        ("10%,30s,abc", '"abc"'), ("12.345%", '"12.345%"'), ("100.01%", '"100.01%"'), ("0s", '"0s"'),
        ("10 %", '"10 %"'), ("5x", '"5x"'), ("PAUSE", '"PAUSE"'), ("", "item 1 is empty"),
        ("10%,", "item 2 is empty"), (".5%", '".5%"'), ("1.%", '"1.%"'),
    ]
    for steps, named in bad_steps:
        rc, out, err = run_offline(tmp, "deploy", "web", "web:v2", "--steps", steps, "--dry-run")
        ok(rc == 2 and out == "" and named in err and "--steps" in err,
           f"deploy --steps {steps!r}: usage error (exit 2) naming {named}", f"exit status {rc}", f"stdout: {out}",
           f"stderr: {err}")

    usage_errors = [
        (["deploy", "web", "web:v2", "--preset", "AllAtOnce", "--steps", "10%,100%"], "exclude each other"),
        (["deploy", "web", "web:v2", "--steps", "100%", "--preset", "AllAtOnce"], "exclude each other"),
        (["deploy", "web", "web:v2", "--sticky-cookie", "a", "--sticky-header", "b"], "exclude each other"),
        (["deploy", "web", "web:v2", "--timeout", "5m"], "--timeout goes with --wait"),
        (["deploy", "web", "web:v2", "--wait", "--timeout", "soon"], '"soon"'),
        (["deploy", "web", "web:v2", "--wait", "--timeout", "0s"], '"0s"'),
        (["deploy", "web", "web:v2", "--canary-replicas", "-1"], '"-1"'),
        (["deploy", "web", "web"], "names no version"),
        (["deploy", "web"], "missing argument"),
        (["deploy", "web", "web:v2", "extra"], '"extra"'),
        (["deploy", "web", "web:v2", "--no-such-option"], "no-such-option"),
        (["rollout", "status"], "missing argument"),
        (["rollout", "status", "web", "abc"], '"abc"'),
        (["rollout", "status", "web", "--timeout", "1m"], "--timeout goes with --wait"),
        (["rollout", "ls", "web", "1"], '"1"'),
        (["rollout", "promote", "web", "1", "2"], '"2"'),
        (["rollout", "pause", "web", "--full"], "full"),
        (["rollout", "abort", "web", "-3"], 'unknown option "-3"'),
        (["rollout", "retry", "web", "x1"], '"x1"'),
        (["rollout", "resume"], "missing argument"),
        (["rollout", "nonsense", "web"], "usage: aviary rollout status"),
    ]
    for args, said in usage_errors:
        rc, out, err = run_offline(tmp, *args)
        ok(rc == 2 and said in err, f"aviary {' '.join(args)}: usage error (exit 2) saying {said}",
           f"exit status {rc}", f"stdout: {out}", f"stderr: {err}")

    rc, out, err = run_offline(tmp, "--help")
    ok(rc == 0 and all(re.search(rf"(?m)^  {c}\s", out) for c in (
        "deploy", "rollout status", "rollout ls", "rollout promote", "rollout pause", "rollout resume",
        "rollout abort", "rollout retry")), "--help lists deploy and every rollout command", out)
    rc, out, err = run_offline(tmp, "deploy", "--help")
    like(out, r"--steps LIST", "deploy --help shows its usage", err)


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
    with tempfile.TemporaryDirectory(prefix="aviary-it-cli-") as tmp:
        test_deploy_dry_run(tmp)
        test_rollout_usage(tmp)
    with Daemon() as d, tempfile.TemporaryDirectory(prefix="aviary-it-cli-") as tmp:
        test_cli(d, tmp)


main(body)
