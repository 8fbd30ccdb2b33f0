#!/usr/bin/env python3
"""Docs are code: every shell block a reader would copy from the given Markdown files is run,
or is marked as not runnable with a reason. TAP.

A shell block (```sh, ```bash, ```shell) must follow a directive line (blank lines between are
fine):

    <!-- doc-test: run -->                 run it, after the file's earlier run blocks
    <!-- doc-test: run fixture=NAME -->    the same; the file's session first sources
                                           tests/docs/fixtures/NAME.sh (say it once, on the
                                           first run block)
    <!-- doc-test: skip REASON -->         not runnable: REASON says why

Options of run, after it: session=NAME (a file may hold several sessions, each with its own
fixture; the default session is "main"), subshell (the block runs in ( ... ), for a block that
ends with `exit`, as a CI step does), and sub="OLD=>NEW" (every OLD in the block becomes NEW:
a CI example's two-minute pauses become seconds; the few placeholders a test needs).

Each file's run blocks form one session (per session name): one `bash -euo pipefail` script, in order, so a
variable or a background process from one block is there in the next, as for a reader who
pastes them one after another. The session runs as root in a private mount namespace with
its own /tmp and /run/netns (a namespace the doc makes with `ip netns add` is the test's
own), with a network namespace of its own (only its loopback, up), from a scratch directory whose entries link to the source tree's (`build/`, `tests/`,
...), so the docs' relative paths work and files they write land in the scratch directory.
At the end every process in a namespace the session made is killed, and the namespaces go;
the session is also a PID namespace of its own, so nothing it started outlives it.

Usage: run-docs.py [FILE.md ...]   (paths relative to the source root; default: README.md and
every docs/**/*.md)
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.environ.get("AVIARY_SOURCE_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "docs", "fixtures")
SHELLS = {"sh", "bash", "shell"}
DIRECTIVE = re.compile(r"^\s*<!--\s*doc-test:\s*(run|skip)\b(.*?)-->\s*$")
TIMEOUT = int(os.environ.get("AVIARY_DOCS_TIMEOUT", "900"))

count = 0
failed = 0


def tap(good, desc, detail=""):
    global count, failed
    count += 1
    if not good:
        failed += 1
    print(f"{'ok' if good else 'not ok'} {count} - {' '.join(desc.split())}")
    if not good and detail:
        for line in detail.rstrip("\n").splitlines()[-60:]:
            print(f"# {line}")
    sys.stdout.flush()


def blocks(path):
    """(line, info, directive kind, directive argument, code) for each fenced block."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        lines = f.read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group(1), m.group(2), m.group(3).lower()
        start = i
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        code = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:j])
        kind, arg = None, ""
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        d = DIRECTIVE.match(lines[k]) if k >= 0 else None
        if d:
            kind, arg = d.group(1), d.group(2).strip()
        out.append((start + 1, info, kind, arg, code))
        i = j + 1
    return out


RUNNER = r"""
set -uo pipefail
ip link set lo up
# A checkout under /tmp (git clone . /tmp/x) would vanish under the session's own /tmp: it is
# bound back at its path, through a bind kept in the session's work dir (under /var/tmp).
mkdir -p "$1/.root" && mount --bind "$4" "$1/.root"
mount -t tmpfs -o mode=1777 tmpfs /tmp
[ -d "$4" ] || { mkdir -p "$4" && mount --bind "$1/.root" "$4"; }
mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns
cleanup() {
        for ns in $(ls /run/netns 2>/dev/null); do
                ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
                ip netns delete "$ns" 2>/dev/null
        done
        # Everything else in the session's own network namespace: aviaryd, and the QEMUs it
        # started there, which left the session (libvirt daemonizes them).
        me=$(readlink /proc/$$/ns/net)
        for p in /proc/[0-9]*; do
                pid=${p#/proc/}
                [ "$pid" != $$ ] && [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$me" ] && kill -9 "$pid" 2>/dev/null
        done
}
trap cleanup EXIT
cd "$1"
bash -euo pipefail "$2" 3>"$3"
"""


def run_session(path, session, fixture):
    """Runs SESSION [(line, code)] of PATH; one test point per block."""
    work = tempfile.mkdtemp(prefix="aviary-docs-", dir="/var/tmp")
    try:
        for entry in os.listdir(ROOT):
            if not entry.startswith("."):
                os.symlink(os.path.join(ROOT, entry), os.path.join(work, entry))
        script = os.path.join(work, ".session.sh")
        marks = os.path.join(work, ".marks")
        with open(script, "w", encoding="utf-8") as f:
            f.write(f"export AVIARY_SOURCE_ROOT={ROOT!r}\n")
            if fixture:
                f.write(f"source {os.path.join(FIXTURES, fixture + '.sh')!r}\n")
            for line, code, opts in session:
                for old, new in opts.get("sub", []):
                    code = code.replace(old, new)
                if opts.get("subshell"):
                    code = f"(\n{code}\n)"
                f.write(f"echo 'start {line}' >&3\n{code}\necho 'done {line}' >&3\n")
        try:
            # A PID namespace too: when the session ends, the kernel kills whatever it started,
            # daemonized QEMUs included (libvirt's capability probe, guests whose namespace a
            # doc deleted), which the cleanup's scans can miss.
            r = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
                                "--propagation", "private", "setsid", "bash", "-c", RUNNER,
                                "runner", work, script, marks, ROOT], capture_output=True, text=True, timeout=TIMEOUT)
            output, timed_out = r.stdout + r.stderr, False
        except subprocess.TimeoutExpired as e:
            output = (e.stdout or b"").decode("utf-8", "replace") + (e.stderr or b"").decode("utf-8", "replace")
            timed_out = True
        with open(marks, encoding="utf-8") as f:
            done = {int(m.split()[1]) for m in f.read().split("\n") if m.startswith("done ")}
        reported = False
        for line, _, _ in session:
            if line in done:
                tap(True, f"{path}:{line}: the block runs")
            elif not reported:
                tap(False, f"{path}:{line}: the block runs" + (f" (timed out after {TIMEOUT} s)" if timed_out else ""),
                    output)
                reported = True
            else:
                tap(False, f"{path}:{line}: the block runs (not reached: an earlier block failed)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def options(arg):
    """The options of a run directive: {"session", "fixture", "subshell", "sub": [(old, new)]}."""
    opts = {"session": "main", "sub": []}
    for m in re.finditer(r'(\w+)(?:=("[^"]*"|\S+))?', arg):
        key, value = m.group(1), (m.group(2) or "").strip('"')
        if key == "sub" and "=>" in value:
            opts["sub"].append(tuple(value.split("=>", 1)))
        elif key == "subshell":
            opts["subshell"] = True
        else:
            opts[key] = value
    return opts


def main(paths):
    for path in paths:
        sessions = {}
        for line, info, kind, arg, code in blocks(path):
            if info not in SHELLS:
                continue
            if kind is None:
                tap(False, f"{path}:{line}: a shell block is run or marked `<!-- doc-test: skip REASON -->`")
                continue
            if kind == "skip":
                tap(bool(arg), f"{path}:{line}: not run" + (f": {arg}" if arg else " (a skip needs a reason)"))
                continue
            opts = options(arg)
            blocks_of, fixture = sessions.setdefault(opts["session"], ([], [None]))
            if opts.get("fixture"):
                fixture[0] = opts["fixture"]
            blocks_of.append((line, code, opts))
        for name, (blocks_of, fixture) in sessions.items():
            run_session(path, blocks_of, fixture[0])
    print(f"1..{count}")
    return 1 if failed else 0


if __name__ == "__main__":
    import glob
    if os.geteuid() != 0:
        print("1..0 # SKIP the docs' commands run as root (network namespaces, guests)")
        sys.exit(0)
    files = sys.argv[1:] or ["README.md"] + sorted(
        os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
    sys.exit(main(files))
