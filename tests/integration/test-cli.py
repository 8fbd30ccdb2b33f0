#!/usr/bin/env python3
"""The aviary CLI against a real daemon: image push (uploading only what the daemon lacks),
image ls/show (tables and -o json), a refused push (exit 1, the server's message and code
on stderr), service create/ls, events, usage errors (exit 2); `aviary deploy --dry-run`
(the request bodies that --steps and the other options make) and the usage errors of deploy
and rollout, which need no daemon.

The command line like kubectl's: global options anywhere and as --name=value; help for every
command listing every option its parser accepts, with defaults and allowed values (checked
against the command table as `aviary -o json help` prints it, and the presets against the
daemon's own list); "did you mean" for mistyped commands, options and values, exit 2;
completion scripts for bash (its function driven as bash would), zsh and fish, completing
commands and names from the daemon; JSON Lines from `events --follow -o json` and from a
followed rollout; the rollout view's units, relative thresholds and promoted state (against a
fake daemon serving canned rollouts, on a pseudo-terminal too); the hint for a socket we may
not use (run as nobody); `aviary version` without a daemon; bad names refused before any
request. Skipped when the CLI is not built."""
import fcntl
import grp
import http.server
import json
import os
import pty
import pwd
import re
import select
import shutil
import socketserver
import struct
import subprocess
import tempfile
import termios
import threading
import time

from aviarytest import Daemon, aviary_path, diag, is_, like, main, ok, random_blob, skip


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
        (["--scale-down-delay", "6h"], {"version": "web:v2", "strategy": {"canary": {"scaleDownDelay": "6h"}}}),
        (["--blue-green"], {"version": "web:v2", "strategy": {"blueGreen": {"autoPromote": False}}}),
        (["--blue-green", "--preview-listen", "127.0.0.1:8081", "--auto-promote", "--scale-down-delay", "2h",
          "--steps", "analysis,30s"],
         {"version": "web:v2", "strategy": {"blueGreen": {
             "previewListen": "127.0.0.1:8081", "autoPromote": True, "scaleDownDelay": "2h",
             "prePromotion": [{"analysis": {}}, pause("30s")]}}}),
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
        (["deploy", "web", "web:v2", "--blue-green", "--preset", "AllAtOnce"], "--blue-green excludes --preset"),
        (["deploy", "web", "web:v2", "--blue-green", "--canary-replicas", "1"], "excludes --canary-replicas"),
        (["deploy", "web", "web:v2", "--blue-green", "--sticky-cookie", "s"], "excludes --sticky-cookie"),
        (["deploy", "web", "web:v2", "--preview-listen", "127.0.0.1:8081"], "--preview-listen goes with --blue-green"),
        (["deploy", "web", "web:v2", "--auto-promote"], "--auto-promote goes with --blue-green"),
        (["deploy", "web", "web:v2", "--scale-down-delay", "soon"], '"soon"'),
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

# ---------------------------------------------------------------- the command line itself


def run_plain(args, env_extra=None, timeout=30):
    """The CLI with exactly ARGS (no --socket added), the AVIARY_* environment cleared."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVIARY_")}
    env.update(env_extra or {})
    p = subprocess.run([aviary_path()] + list(args), capture_output=True, text=True, timeout=timeout, env=env,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def command_table():
    rc, out, err = run_plain(["-o", "json", "help"])
    table = parse_json(out)
    ok(rc == 0 and isinstance(table, dict) and table.get("commands"), "-o json help prints the command table",
       f"exit status {rc}", err, out[:2000])
    return table or {"commands": [], "globalOptions": []}


def option_lines(text):
    """The options an `aviary help` text lists: the "--name" at the start of each option line."""
    return re.findall(r"(?m)^  (?:-\w, )?--([a-z][a-z-]*)", text)


def test_help(tmp):
    table = command_table()
    commands, global_options = table["commands"], table["globalOptions"]
    names = [c["name"] for c in commands]
    ok({"image push", "deploy", "rollout status", "events", "completion", "help", "version"} <= set(names),
       "the table has every command", names)

    rc, out, err = run_plain(["help"])
    ok(rc == 0 and all(re.search(rf"(?m)^  {re.escape(n)}\s", out) for n in names),
       "aviary help: exit 0 and every command with its summary", out)
    rc2, out2, _ = run_plain(["--help"])
    is_((rc2, out2), (0, out), "aviary --help is the same global help")

    for c in commands:
        words = c["name"].split()
        rc, text, err = run_plain(["help"] + words)
        rc2, text2, err2 = run_plain(words + ["--help"])
        ok(rc == 0 and rc2 == 0 and text == text2 and text.startswith("usage: aviary " + c["name"]),
           f"help {c['name']} and {c['name']} --help: exit 0, the same text, its usage first",
           f"exit statuses {rc} {rc2}", err, err2, text[:500])
        want = [o["name"] for o in c["options"]] + [o["name"] for o in global_options]
        is_(sorted(option_lines(text)), sorted(want), f"help {c['name']} lists exactly its options and the global ones",
            text)
        missing = []
        for o in c["options"] + global_options:
            label = f"--{o['name']}" + (f" {o['argument']}" if o["argument"] else "")
            if label not in text:
                missing.append(label)
            if o["default"] and f"default: {o['default']}" not in " ".join(text.split()):
                missing.append(f"default of --{o['name']}: {o['default']}")
            for choice in o["choices"] or []:
                if choice not in text:
                    missing.append(f"value {choice} of --{o['name']}")
        ok(not missing, f"help {c['name']} shows every option with its value, default and allowed values", missing)

        # What the parser accepts is what the table (and so the help) says: each option is taken
        # (any error is another one), and an option that is not there is refused.
        refused = []
        for o in c["options"]:
            value = [(o["choices"] or ["1"])[0]] if o["argument"] else []
            rc, _, err = run_offline(tmp, *words, f"--{o['name']}", *value)
            if "unknown option" in err:
                refused.append((o["name"], err))
        ok(not refused, f"{c['name']} accepts every option of its table", refused)
        rc, _, err = run_offline(tmp, *words, "--no-such-flag-at-all")
        ok(rc == 2 and 'unknown option "--no-such-flag-at-all"' in err, f"{c['name']} refuses an option not in its table",
           f"exit status {rc}", err)

    deploy = next(c for c in commands if c["name"] == "deploy")
    preset = next(o for o in deploy["options"] if o["name"] == "preset")
    ok("Canary10Percent5Minutes" in preset["choices"] and "AllAtOnce" in preset["choices"]
       and "Linear10PercentEvery1Minute" in preset["choices"], "deploy's --preset lists the presets", preset)
    rc, out, _ = run_plain(["help", "deploy"])
    like(out, r"(?s)Exit status with --wait: 0 when the rollout is Healthy.*3 when --timeout passed first.*10\s+analysis"
              r".*11\s+check.*12\s+webhook.*13\s+unhealthy.*14\s+deadline.*15\s+manual.*16\s+superseded.*2 for wrong usage",
         "deploy's help documents the exit statuses of --wait, one per abort kind")
    service_create = next(c for c in commands if c["name"] == "service create")
    policy = next(o for o in service_create["options"] if o["name"] == "restart-policy")
    is_((policy["choices"], policy["default"]), (["always", "on-failure", "never"], "always"),
        "--restart-policy: always|on-failure|never, default always")

    rc, out, err = run_plain(["help", "nosuch"])
    ok(rc == 2 and out == "" and 'unknown command "nosuch"' in err, "help nosuch: exit 2 and an error",
       f"exit status {rc}", out, err)
    rc, out, err = run_plain(["image", "--help"])
    ok(rc == 0 and all(f"usage: aviary image {w}" in out for w in ("push", "ls", "show", "rm", "revoke")),
       "image --help: the usage of every image command", f"exit status {rc}", out, err)
    rc, out, err = run_plain(["image"])
    ok(rc == 2 and '"image" needs a command' in err, "image alone: exit 2 and an error line", f"exit status {rc}", err)
    rc, out, err = run_offline(tmp, "image", "push", "web:1", "--cmdline", "-h", "--kernel", os.path.join(tmp, "none"))
    ok(rc == 1 and "usage:" not in out and "cannot open kernel file" in err,
       "--cmdline -h: a value that looks like -h is a value, not a request for help", f"exit status {rc}", out, err)


def test_typos(tmp):
    cases = [
        (["image", "lst"], 'unknown command "image lst". Did you mean "image ls"?'),
        (["imgae", "ls"], 'unknown command "imgae ls". Did you mean "image ls"?'),
        (["depoly", "web", "web:2"], 'unknown command "depoly". Did you mean "deploy"?'),
        (["serv"], 'unknown command "serv". Did you mean "service"?'),
        (["help", "rollout", "stauts"], 'unknown command "rollout stauts". Did you mean "rollout status"?'),
        (["deploy", "web", "web:2", "--stesp", "10%"], 'unknown option "--stesp" for "aviary deploy". Did you mean "--steps"?'),
        (["service", "ls", "--ouptut", "json"], 'Did you mean "--output"?'),
        (["deploy", "web", "web:2", "--ste", "10%"], 'unknown option "--ste" for "aviary deploy". Did you mean "--steps"?'),
        (["service", "create", "web", "--restart-policy", "alwys"],
         '--restart-policy expects always, on-failure or never, not "alwys". Did you mean "always"?'),
        (["-o", "jsno", "service", "ls"], '--output expects table or json, not "jsno". Did you mean "json"?'),
        (["completion", "bsh"], 'SHELL expects bash, zsh or fish, not "bsh". Did you mean "bash"'),
        (["token", "create", "--scope", "deplyo"], 'Did you mean "deploy"?'),
        (["no-such-command"], 'unknown command "no-such-command".'),
        (["events", "--after"], "option --after needs a value (ID)"),
        (["rollout", "status", "web", "--wait=yes"], "option --wait takes no value"),
        (["service", "show"], "missing argument NAME"),
        (["service", "show", "a", "b"], 'unexpected argument "b"'),
        (["image", "push", "web:1"], "--kernel FILE is required"),
    ]
    for args, said in cases:
        rc, out, err = run_offline(tmp, *args)
        ok(rc == 2 and said in err and err.startswith("aviary: ") and out == "",
           f"aviary {' '.join(args)}: exit 2 and {said!r} on stderr", f"exit status {rc}", f"stdout: {out}",
           f"stderr: {err}")
    rc, out, err = run_offline(tmp, "completion", "tcsh")
    ok(rc == 2 and "Did you mean" not in err, "no suggestion for something far from every choice (tcsh)", err)


def test_global_options_anywhere(d, tmp):
    sock = d.socket_path
    want = [s["name"] for s in d.client.get("/v1/services").json["items"]]
    for args in (["service", "ls", "-o", "json", "--socket", sock],
                 ["service", "ls", f"--socket={sock}", "--output=json"],
                 ["service", "--socket", sock, "ls", "-ojson"],
                 ["-o", "json", "service", "ls", "--socket", sock],
                 ["--output", "json", f"--socket={sock}", "service", "ls"]):
        rc, out, err = run_plain(args)
        j = parse_json(out)
        ok(rc == 0 and isinstance(j, dict) and [s["name"] for s in j["items"]] == want,
           f"aviary {' '.join(args).replace(sock, 'SOCK')}: the JSON list", f"exit status {rc}", out, err)
    rc, out, err = run_plain(["image", "show", "web:1.0", "--socket", sock, "--output", "json"])
    ok(rc == 0 and parse_json(out) and parse_json(out).get("version") == "1.0",
       "options after a command's argument", err)
    rc, out, err = run_plain(["service", "ls", "--socket", sock, "--url", "http://127.0.0.1:1"])
    ok(rc == 2 and "exclusive" in err, "--socket and --url after the command are still exclusive", err)


def test_name_checks(d, tmp):
    kernel, _ = random_blob(tmp, 1000, "kernel-")
    # A socket that records whoever connects: nothing may reach it.
    path = os.path.join(tmp, "recorder.sock")
    with FakeDaemon(path, {}) as fake:
        for args, said in [
            (["image", "push", "WEB:1", "--kernel", kernel], '"WEB" is not a valid image name'),
            (["image", "push", "web:.1", "--kernel", kernel], '".1" is not a valid version'),
            (["image", "push", "web:1", "--kernel", kernel, "--label", "-x=1"], '"-x" is not a valid key'),
            (["image", "push", "web@sha256:" + "a" * 64, "--kernel", kernel], "needs a name"),
            (["service", "create", "Web_1"], '"Web_1" is not a valid service name'),
            (["deploy", "WEB", "web:1"], '"WEB" is not a valid service name'),
            (["deploy", "web", "web@sha256:abc"], "is not a digest"),
        ]:
            rc, out, err = run_plain(["--socket", path] + args)
            ok(rc == 2 and said in err, f"aviary {' '.join(args).replace(kernel, 'K')}: exit 2, {said!r}",
               f"exit status {rc}", err)
        is_(fake.requests, [], "none of them sent a request (no HEAD or PUT of a blob)")
    snap = d.snapshot()
    rc, out, err = run_cli(d, "image", "push", "WEB:1", "--kernel", kernel)
    ok(rc == 2 and "not a valid image name" in err, "against the daemon too: exit 2", err)
    ok(d.snapshot() == snap and not d.client.head(f"/v1/blobs/{file_sha256(kernel)}").status == 200,
       "and the daemon has no blob of the kernel and no new row", "snapshot changed")


def file_sha256(path):
    import hashlib
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def test_version_offline(tmp):
    rc, out, err = run_offline(tmp, "version")
    _, version_line, _ = run_plain(["--version"])
    client = version_line.split()[-1]
    ok(rc == 1 and re.match(rf"Client:\s+{re.escape(client)}\n", out) and "cannot connect" in err
       and "could not be reached" in err,
       "version without a daemon: the client's version on stdout first, exit 1, why on stderr",
       f"exit status {rc}", f"stdout: {out}", f"stderr: {err}")
    rc, out, err = run_offline(tmp, "-o", "json", "version")
    is_((rc, parse_json(out)), (1, {"client": client}), "-o json version without a daemon: {\"client\": ...}, exit 1",
        err)


def test_version_online(d):
    out = cli_ok(d, "version", "version")
    ok(re.match(r"Client:\s+\S+\nServer:\s+\S+\n", out), "version with the daemon: client then server", out)


def test_permission_hint(tmp):
    if os.getuid() != 0 or not shutil.which("setpriv"):
        skip("the hint for a socket we may not use", "needs root and setpriv")
        return
    nobody = pwd.getpwnam("nobody")
    group = next((g for g in grp.getgrall() if g.gr_gid not in (0, nobody.pw_gid) and "nobody" not in g.gr_mem),
                 None)
    with Daemon(config={"socket_group": group.gr_name, "socket_mode": "0660"}) as d:
        os.chmod(d.tmp, 0o711)  # nobody may reach the socket, not use it
        st = os.stat(d.socket_path)
        is_((st.st_gid, st.st_mode & 0o777), (group.gr_gid, 0o660), f"the socket is root:{group.gr_name} 0660")
        bindir = tempfile.mkdtemp(prefix="aviary-it-bin-")
        os.chmod(bindir, 0o755)
        binary = shutil.copy(aviary_path(), os.path.join(bindir, "aviary"))
        try:
            p = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                                binary, "--socket", d.socket_path, "service", "ls"],
                               capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        finally:
            shutil.rmtree(bindir, ignore_errors=True)
        ok(p.returncode == 1 and d.socket_path in p.stderr and "Permission denied" in p.stderr
           and f"root:{group.gr_name}" in p.stderr and "0660" in p.stderr
           and f"add yourself to group {group.gr_name}" in p.stderr and "sudo" in p.stderr,
           "as nobody: exit 1, and the message names the socket, its owner, group and mode, and what to do",
           f"exit status {p.returncode}", p.stderr)


# ---------------------------------------------------------------- completion


def test_completion(d, tmp):
    bindir = os.path.dirname(aviary_path())
    env = dict({k: v for k, v in os.environ.items() if not k.startswith("AVIARY_")},
               PATH=bindir + os.pathsep + os.environ.get("PATH", ""), AVIARY_SOCKET=d.socket_path)
    scripts = {}
    for shell in ("bash", "zsh", "fish"):
        rc, out, err = run_plain(["completion", shell])
        scripts[shell] = out
        ok(rc == 0 and "__complete" in out, f"completion {shell} prints a script", f"exit status {rc}", err)
    path = os.path.join(tmp, "aviary.bash")
    with open(path, "w") as f:
        f.write(scripts["bash"])

    def bash_complete(line):
        """COMPREPLY of the generated completion function for LINE, the cursor at its end,
        with COMP_WORDS split as bash does (COMP_WORDBREAKS included)."""
        driver = r'''
source "$1"
line=$2
COMP_LINE=$line
COMP_POINT=${#line}
COMP_WORDS=()
rest=$line
while [[ $rest =~ ^[[:space:]]*([^[:space:]=:]+|[=:])(.*)$ ]]; do
    COMP_WORDS+=("${BASH_REMATCH[1]}")
    rest=${BASH_REMATCH[2]}
done
[[ $line =~ [[:space:]=:]$ ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_aviary
printf '%s\n' "${COMPREPLY[@]}"
'''
        p = subprocess.run(["bash", "-c", driver, "bash", path, line], capture_output=True, text=True, timeout=30,
                           env=env)
        return p.returncode, [w for w in p.stdout.split("\n") if w], p.stderr

    for line, want in [
        ("aviary serv", ["service"]),
        ("aviary service show ", ["web"]),
        ("aviary service show w", ["web"]),
        ("aviary image ", ["push", "ls", "show", "rm", "revoke"]),
        ("aviary deploy web web:", ["1.0", "1.1"]),  # bash completes what follows the ':'
        ("aviary deploy web w", ["web:"]),
        ("aviary service create x --restart-policy ", ["always", "on-failure", "never"]),
        ("aviary service create x --restart-policy=on", ["on-failure"]),
        ("aviary completion ", ["bash", "zsh", "fish"]),
        ("aviary deploy web web:1.0 --pre", ["--preset", "--preview-listen"]),
        ("aviary deploy web web:1.0 --blue", ["--blue-green"]),
        ("aviary -o json service update ", ["web"]),
        ("aviary help rollout st", ["status"]),
        ("aviary nosuch ", []),
    ]:
        rc, got, err = bash_complete(line)
        is_(sorted(got), sorted(want), f"bash: {line!r}<TAB> completes to {want}", f"exit status {rc}", err)
    rc, got, err = bash_complete(f"aviary --socket {os.path.join(tmp, 'nobody-here')} service show ")
    is_(got, [], "bash: names come from the daemon that --socket names (none there)", err)

    if shutil.which("zsh"):
        p = subprocess.run(["zsh", "-n"], input=scripts["zsh"], capture_output=True, text=True, timeout=30)
        is_(p.returncode, 0, "zsh -n accepts the zsh script", p.stderr)
        # Outside the completion system: compadd stubbed to print its candidates.
        driver = '''compdef() { :; }
compadd() { while [[ $1 != -- ]]; do shift; done; shift; print -l -- "$@"; }
eval "$(aviary completion zsh)"
words=(aviary serv); CURRENT=2; PREFIX=serv; _aviary
words=(aviary service show ""); CURRENT=4; PREFIX=""; _aviary
'''
        p = subprocess.run(["zsh", "-f", "-c", driver], capture_output=True, text=True, timeout=30, env=env)
        is_(p.stdout.split(), ["service", "web"], "zsh: the function completes a command and a service name",
            p.stderr)
    else:
        skip("the zsh script", "zsh is not installed (tests/setup.sh installs it)")
    if shutil.which("fish"):
        p = subprocess.run(["fish", "-n"], input=scripts["fish"], capture_output=True, text=True, timeout=30)
        is_(p.returncode, 0, "fish -n accepts the fish script", p.stderr)
        p = subprocess.run(["fish", "--no-config", "-c", 'aviary completion fish | source; complete -C "aviary serv"; '
                            'complete -C "aviary service show "'], capture_output=True, text=True, timeout=30, env=env)
        is_([line.split("\t")[0] for line in p.stdout.split("\n") if line], ["service", "web"],
            "fish: complete -C completes a command and a service name", p.stderr)
    else:
        skip("the fish script", "fish is not installed (tests/setup.sh installs it)")


# ---------------------------------------------------------------- JSON Lines


class Lines:
    """The lines a process writes to a pipe, read from its descriptor as they come (not
    through Python's buffer, which select() cannot see)."""

    def __init__(self, stream):
        self.fd, self.buf = stream.fileno(), b""

    def next(self, deadline_s=30):
        """One line, or None when none came before the deadline (a stuck process, not a
        measurement) or the pipe closed."""
        end = time.monotonic() + deadline_s
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            r, _, _ = select.select([self.fd], [], [], max(left, 0))
            data = os.read(self.fd, 65536) if r else b""
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode() + "\n"

    def rest(self):
        data = self.buf
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return (data).decode()
            data += chunk


def test_events_follow_json(d):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVIARY_")}
    p = subprocess.Popen([aviary_path(), "--socket", d.socket_path, "events", "--follow", "-o", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    out = Lines(p.stdout)
    try:
        n = len(d.events())
        lines = [out.next() for _ in range(n)]
        objects = [parse_json(line) for line in lines if line]
        ok(len(objects) == n and all(isinstance(o, dict) for o in objects)
           and [o["id"] for o in objects] == [e["id"] for e in d.events()[:n]],
           "events --follow -o json: one JSON object per line, every event so far", lines[:5])
        r = d.client.post("/v1/services", {"name": "jsonl", "replicas": 0})
        is_(r.status, 201, "a new service while it follows", repr(r))
        line = out.next()
        event = parse_json(line or "")
        ok(isinstance(event, dict) and event.get("action") == "service.create" and line.count("\n") == 1,
           "the new event arrives as one more line, written as it came", line)
        followers = [x for x in d.client.get("/metrics").raw.decode().splitlines()
                     if x.startswith("aviary_event_stream_followers ")]
        is_(followers, ["aviary_event_stream_followers 1"], "events --follow uses the event stream (one follower)")
    finally:
        p.kill()
        p.wait(timeout=10)


# ---------------------------------------------------------------- a fake daemon for views


class FakeDaemon:
    """An HTTP server on a unix socket that answers GET PATH with the next of ROUTES[PATH] (a
    list of JSON bodies; the last repeats), POST PATH the same, and records every request.
    GATE: a threading.Event the second answer to any path waits for (to see a line written
    before the process has anything more to say)."""

    def __init__(self, path, routes, gate=None):
        self.path, self.routes, self.gate, self.requests = path, routes, gate, []
        self.served = {}

    def __enter__(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def address_string(self):
                return "fake"

            def log_message(self, *a):
                pass

            def answer(self):
                fake.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                bodies = fake.routes.get(self.path.split("?")[0])
                if bodies is None:
                    status, body = 404, {"error": {"code": "not-found", "message": "no such thing here"}}
                else:
                    n = fake.served.get(self.path, 0)
                    fake.served[self.path] = n + 1
                    if n == 1 and fake.gate is not None:
                        fake.gate.wait(60)
                    status, body = 200, bodies[min(n, len(bodies) - 1)]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = do_PUT = answer

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        if os.path.exists(self.path):
            os.unlink(self.path)
        self.server = Server(self.path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()
        return False


ANALYSIS_STEP = {"enabled": True, "interval": "5s", "minSampleSize": 20, "failureLimit": 1,
                 "consecutiveSuccessLimit": 3, "successRate": {"min": 0.95, "maxDropFromStable": 0.01},
                 "latencyP99": {"maxMs": 300, "maxRatioToStable": 2, "floorMs": 40}}
ANALYSIS_BACKGROUND = {"enabled": True, "interval": "5s", "minSampleSize": 20, "failureLimit": 1,
                       "consecutiveSuccessLimit": 3, "successRate": {"min": 0.99, "maxDropFromStable": 0},
                       "latencyP99": {"maxMs": 0, "maxRatioToStable": 1.5, "floorMs": 50}}


def fake_rollout(phase="Progressing", step=1, weights=(9000, 1000), message="step 2/3: analysis"):
    return {
        "id": 3, "service": "web", "from": "web:1.1", "to": "web:1.2", "phase": phase, "message": message,
        "currentStepIndex": step, "steps": [{"setWeight": 10}, {"analysis": ANALYSIS_STEP}, {"setWeight": 100}],
        "paused": False, "pausedUntil": None, "weights": {"stable": weights[0], "canary": weights[1]},
        "canary": {"replicas": 1, "ready": 1},
        "analysis": {"enabled": True, "windows": 4, "failures": 0, "inconclusive": 1, "last": {
            "verdict": "Pass", "canarySamples": 120, "stableSamples": 1080, "metrics": [
                {"name": "successRate", "verdict": "Pass", "value": 0.995, "threshold": 0.95, "samples": 120,
                 "detail": "0.995 >= 0.950"},
                {"name": "successRateVsStable", "verdict": "Pass", "value": 0.995, "threshold": 0.98, "samples": 120,
                 "detail": "0.995 >= 0.980 (stable 0.990 - 0.010)"},
                {"name": "latencyP99", "verdict": "Pass", "value": 12.5, "threshold": 300, "samples": 120,
                 "detail": "p99 12.5 ms <= 300.0 ms (max)"},
                {"name": "latencyP99VsStable", "verdict": "Pass", "value": 12.5, "threshold": 40, "samples": 120,
                 "detail": "p99 12.5 ms <= 40.0 ms floor"},
            ]}},
        "abortReason": {"kind": "unhealthy", "detail": "canary crashed"} if phase == "Degraded" else None,
        "strategy": {"canary": {"analysis": ANALYSIS_BACKGROUND, "steps": [{"setWeight": 10}, {"analysis": ANALYSIS_STEP},
                                                                           {"setWeight": 100}]}},
        "createdAt": "2026-12-01T10:00:00.000Z", "updatedAt": "2026-12-01T10:01:00.000Z", "finishedAt": None,
    }


def metric_row(text, name):
    m = re.search(rf"(?m)^\s*{name}\s+(.*)$", text)
    return m.group(1) if m else ""


def check_metric_rows(text, where):
    rows = {n: metric_row(text, n) for n in ("successRate", "successRateVsStable", "latencyP99",
                                              "latencyP99VsStable")}
    # METRIC VALUE VERDICT SAMPLES THRESHOLD: the long column last, where a narrow terminal cuts.
    like(rows["successRate"], r"^99\.50%\s+Pass\s+120 req\s+>= 95\.00%", f"{where}: successRate in % with its minimum",
         text)
    like(rows["successRateVsStable"], r"^99\.50%\s+Pass\s+120 req\s+>= stable - 1\.00% \(now 98\.00%\)",
         f"{where}: successRateVsStable held to the stable rate less the drop, in %", text)
    like(rows["latencyP99"], r"^12\.5 ms\s+Pass\s+120 req\s+<= 300\.0 ms", f"{where}: latencyP99 in ms", text)
    like(rows["latencyP99VsStable"], r"^12\.5 ms\s+Pass\s+120 req\s+<= 2x stable, floor 40 ms \(now 40\.0 ms\)",
         f"{where}: latencyP99VsStable as a ratio with its floor (the analysis step's, not the background's)", text)


def test_rollout_views(tmp):
    path = os.path.join(tmp, "fake.sock")
    base = "/v1/services/web/rollouts"
    progressing, healthy = fake_rollout(), fake_rollout("Healthy", 3, (0, 10000), "promoted")
    with FakeDaemon(path, {f"{base}/current": [progressing], f"{base}/3": [healthy]}):
        rc, out, err = run_plain(["--socket", path, "rollout", "status", "web"])
        is_(rc, 0, "rollout status against the fake daemon", err)
        like(out, r"(?m)^Weights:\s+stable 90% \| canary 10%$", "weights in %", out)
        check_metric_rows(out, "rollout status")

        rc, out, err = run_plain(["--socket", path, "rollout", "status", "web", "3"])
        like(out, r"(?m)^Weights:\s+promoted: web:1\.2 is stable \(100%\)$",
             "a Healthy rollout: the new version is stable at 100%", out)
        ok("canary 100%" not in out and "stable 0%" not in out, "not \"stable 0% | canary 100%\"", out)

        # Followed, not on a terminal: one line per change, the promotion said so.
        rc, out, err = run_plain(["--socket", path, "rollout", "status", "web", "--wait"], timeout=60)
        ok(rc == 0 and "promoted: web:1.2 is stable (100%)" in out and "canary 100%" not in out,
           "--wait lines: exit 0 at Healthy, the promotion in words", f"exit status {rc}", out, err)

        # Followed on a terminal: the live view, redrawn in place.
        rc, out = run_on_pty([aviary_path(), "--socket", path, "rollout", "status", "web", "--wait"])
        ok(rc == 0, "--wait on a terminal: exit 0 at Healthy", out)
        check_metric_rows(out, "the live view")
        like(out, r"weights\s+stable 90% \| canary 10%", "the live view: weights in %", out)
        like(out, r"weights\s+promoted: web:1\.2 is stable \(100%\)", "the live view after promotion", out)
        ok("canary 100%" not in out, "the live view never says canary 100%", out)
        like(out, r"canary\s+1/1 ready", "canary guests ready of wanted", out)

    # -o json while following: JSON Lines, each line out before the next state exists.
    gate = threading.Event()
    paused = fake_rollout(step=0, weights=(9000, 1000), message="step 1/3: canary at 10%")
    with FakeDaemon(path, {f"{base}/current": [paused], f"{base}/3": [progressing, healthy]}, gate=gate):
        p = subprocess.Popen([aviary_path(), "--socket", path, "-o", "json", "rollout", "status", "web", "--wait"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        out = Lines(p.stdout)
        try:
            first = out.next()
            gate.set()  # only now may the rollout move on
            rest, err = out.rest(), ""
            p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        lines = [first or ""] + rest.splitlines()
        objects = [parse_json(line) for line in lines]
        ok(first is not None and parse_json(first) == paused,
           "-o json --wait: the first state is a line of its own before the rollout moves", first)
        ok(all(isinstance(o, dict) for o in objects) and [o["phase"] for o in objects] ==
           ["Progressing", "Progressing", "Healthy"] and objects[-1] == healthy and p.returncode == 0,
           "then one JSON object per line per change, the last the final state; exit 0", lines, err)

    degraded = fake_rollout("Degraded", 1, (10000, 0), "aborted")
    with FakeDaemon(path, {f"{base}/current": [degraded], base: [degraded]}):
        rc, out, err = run_plain(["--socket", path, "rollout", "status", "web", "--wait"], timeout=60)
        ok(rc == 13 and "Degraded: canary crashed (unhealthy)" in err,
           "--wait on a Degraded rollout: the reason and its kind, exit 13 (unhealthy)", f"exit status {rc}", err)
        rc, out, err = run_plain(["--socket", path, "deploy", "web", "web:1.2", "--wait"], timeout=60)
        ok(rc == 13 and "Degraded: canary crashed (unhealthy)" in err, "deploy --wait ending Degraded: exit 13",
           f"exit status {rc}", err)
        rc, out, err = run_plain(["--socket", path, "-o", "json", "deploy", "web", "web:1.2", "--wait"], timeout=60)
        ok(rc == 13 and [parse_json(line) for line in out.splitlines()] == [degraded],
           "deploy -o json --wait: the final state as one JSON line, exit 13", out, err)
        rc, out, err = run_plain(["--socket", path, "rollout", "status", "web"])
        like(out, r"(?m)^Abort reason:\s+canary crashed \(unhealthy\)$", "rollout status shows the reason and its kind",
             out)

    # One exit status per abortReason.kind, as documented in docs/ci-cd.md and deploy's help.
    statuses = {"analysis": 10, "check": 11, "webhook": 12, "unhealthy": 13, "deadline": 14, "manual": 15,
                "superseded": 16}
    for kind, status in statuses.items():
        ro = fake_rollout("Degraded", 1, (10000, 0), "aborted")
        ro["abortReason"] = {"kind": kind, "detail": f"a {kind} failure"}
        with FakeDaemon(path, {f"{base}/current": [ro], base: [ro]}):
            rc, out, err = run_plain(["--socket", path, "deploy", "web", "web:1.2", "--wait"], timeout=60)
            is_(rc, status, f"deploy --wait: a Degraded rollout of kind {kind} exits {status}", err)
    # The wait ends first: exit 3, and how to go on.
    with FakeDaemon(path, {f"{base}/current": [progressing], f"{base}/3": [progressing]}):
        rc, out, err = run_plain(["--socket", path, "rollout", "status", "web", "--wait", "--timeout", "2s"],
                                 timeout=60)
        ok(rc == 3 and "goes on in aviaryd" in err, "--wait past --timeout: exit 3, the rollout goes on",
           f"exit status {rc}", err)
    ro = fake_rollout("Degraded", 1, (10000, 0), "aborted")
    ro["abortReason"] = {"kind": "something-newer", "detail": "a kind this client does not know"}
    with FakeDaemon(path, {f"{base}/current": [ro], base: [ro]}):
        rc, out, err = run_plain(["--socket", path, "deploy", "web", "web:1.2", "--wait"], timeout=60)
        is_(rc, 1, "a kind unknown to the client exits 1", err)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../docs/ci-cd.md")) as f:
        doc = f.read()
    for kind, status in statuses.items():
        like(doc, rf"\| {status} \| \| `Degraded`, (`abortReason.kind` )?(kind )?`{kind}`",
             f"docs/ci-cd.md lists exit status {status} for {kind}")


def run_on_pty(argv, deadline_s=60, columns=160):
    """Runs ARGV with stdout on a pseudo-terminal COLUMNS wide; its exit status and all it wrote."""
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AVIARY_")}
        os.execve(argv[0], argv, env)
    chunks, end = [], time.monotonic() + deadline_s
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 1)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace").replace("\r", "")


def test_presets_match_daemon(d):
    """deploy's --preset values are the daemon's presets (its refusal lists them)."""
    r = d.client.post("/v1/services/web/rollouts", {"version": "web:1.1", "strategy": {"preset": "NoSuchPreset"}})
    m = re.search(r"must be one of (.*)$", (r.json or {}).get("error", {}).get("message", ""))
    daemon_presets = [p.strip() for p in m.group(1).split(",")] if m else None
    table = command_table()
    deploy = next(c for c in table["commands"] if c["name"] == "deploy")
    preset = next(o for o in deploy["options"] if o["name"] == "preset")
    is_(preset["choices"], daemon_presets, "deploy --preset lists exactly the daemon's presets, in its order",
        repr(r))


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
        test_help(tmp)
        test_typos(tmp)
        test_version_offline(tmp)
        test_rollout_views(tmp)
        test_permission_hint(tmp)
    with Daemon() as d, tempfile.TemporaryDirectory(prefix="aviary-it-cli-") as tmp:
        test_cli(d, tmp)
        test_version_online(d)
        test_global_options_anywhere(d, tmp)
        test_name_checks(d, tmp)
        test_completion(d, tmp)
        test_events_follow_json(d)
        test_presets_match_daemon(d)


main(body)
