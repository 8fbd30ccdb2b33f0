#!/usr/bin/env python3
"""accel = auto on the host this runs on (real guests, in a network namespace this test
creates, no accel setting): guests come up whatever /dev/kvm can do, and what aviaryd found out
about KVM shows in /v1/version, /v1/health, `aviary version`, an event and STATE/kvm-unusable.

The host decides what must be seen, and is named in the output:
- no /dev/kvm: TCG from the start, "kvm": "absent";
- /dev/kvm from a nested, paravirtualised KVM (kvm_pvm loaded: our build machines), which
  cannot run the Debian kernel: the first guest fails under KVM and comes up under TCG, and KVM
  is marked unusable, with the reason;
- any other /dev/kvm: guests come up under KVM, "kvm": "works".

Two daemons run, each on a fresh state directory: one with the defaults (on the build machines
QEMU with host-passthrough aborts at start on some hosts and hangs silently on others: either
path), one with kvm_cpu = qemu64, which on those machines starts and then hangs silently after
the firmware (no console output, no health check): the "no sign of life" path. The first daemon is then SIGKILLed and restarted: the finding is kept
and new guests use TCG at once."""
import json
import os
import re
import signal
import subprocess

from aviarytest import aviary_path, diag, is_, like, main, ok
from guesttest import GuestTest, instances, live, push, wait_for

HOST = "none" if not os.path.exists("/dev/kvm") else "pvm" if os.path.isdir("/sys/module/kvm_pvm") else "kvm"
diag(f"host: {HOST} ({'no /dev/kvm' if HOST == 'none' else 'kvm_pvm: KVM cannot run our guests' if HOST == 'pvm' else '/dev/kvm, assumed to work'})")


# On a kvm_pvm host the default CPU (host-passthrough) fails under KVM in one of two ways,
# depending on the host's build: QEMU aborts at start ("failed to set MSR 0x10a"), or it
# starts and hangs silently after the firmware. Either is KVM's failure; the reason says which.
PVM_REASON = r"^(QEMU could not start the guest under KVM: .+|no sign of life under KVM 10 s after boot: .+)"


def events(d, action):
    r = d.request("GET", "/v1/events?limit=1000")
    return [e for e in r.json["items"] if e["action"] == action] if r.status == 200 else []


def detail(e):
    return json.loads(e["detail"]) if isinstance(e.get("detail"), str) else (e.get("detail") or {})


def check_host_view(d, label, reason_pattern):
    """After a guest came up: what /v1/version, /v1/health and the state dir say."""
    version = d.request("GET", "/v1/version").json
    health = d.request("GET", "/v1/health").json
    accels = {i["accel"] for i in live(d, "web")}
    marker = os.path.join(d.state_dir, "kvm-unusable")
    if HOST == "none":
        is_((version["accel"], version["kvm"], version["kvm_unusable"]), ("tcg", "absent", None),
            f"{label}: no /dev/kvm, so TCG", json.dumps(version))
        is_(accels, {"tcg"}, f"{label}: the guests run under TCG")
    elif HOST == "kvm":
        is_((version["accel"], version["kvm"]), ("kvm", "works"), f"{label}: KVM works", json.dumps(version))
        is_(accels, {"kvm"}, f"{label}: the guests run under KVM")
    else:
        is_((version["accel"], version["kvm"]), ("tcg", "unusable"), f"{label}: KVM is marked unusable",
            json.dumps(version))
        like(version.get("kvm_unusable") or "", reason_pattern, f"{label}: /v1/version says why")
        is_(health.get("kvm_unusable"), version.get("kvm_unusable"), f"{label}: /v1/health says the same")
        is_(accels, {"tcg"}, f"{label}: the guests run under TCG")
        ok(os.path.exists(marker) and version["kvm_unusable"] in open(marker, encoding="utf-8").read(),
           f"{label}: the finding is kept in STATE/kvm-unusable with its reason")
        marks = events(d, "host.kvm-unusable")
        is_(len(marks), 1, f"{label}: one host.kvm-unusable event", json.dumps(marks))
        like(d.log(), r"error: KVM is unusable on this host: ", f"{label}: one loud log line")
        is_(len(re.findall(r"KVM is unusable on this host", d.log())), 1, f"{label}: only one")


def default_cpu(d):
    push(d, "1.0")
    r = d.request("POST", "/v1/services", json_body={"name": "web", "stable_version": "app:1.0", "replicas": 2})
    is_(r.status, 201, "a 2-replica service")
    ready = wait_for("2 ready guests", lambda: len(live(d, "web")) == 2, 120)
    ok(ready, "both guests come up with the default settings", json.dumps(instances(d, "web")), d.log()[-3000:])
    if not ready:
        return
    check_host_view(d, "defaults", PVM_REASON)
    if HOST == "pvm":
        diag(f"defaults: KVM failed as: {d.request('GET', '/v1/version').json.get('kvm_unusable')}")
        boots = [detail(e) for e in events(d, "instance.boot")]
        ok(any(b.get("kvm_failed") and b.get("accel") == "tcg" for b in boots),
           "the boot under TCG names the KVM failure", json.dumps(boots))
    cli = subprocess.run([aviary_path(), "--socket", d.socket_path, "version"], capture_output=True, text=True,
                         timeout=30)
    like(cli.stdout, r"Guests run under:\s+(tcg|kvm)", "aviary version shows the accelerator", cli.stderr)
    if HOST == "pvm":
        like(cli.stdout, r"KVM unusable:\s+(QEMU could not start|no sign of life under KVM)",
             "aviary version shows why KVM is unusable")

    # The finding outlives the daemon: after SIGKILL and a restart, new guests use TCG at once.
    before = {i["id"]: i["qemu_pid"] for i in live(d, "web")}
    kvm_tries = len([b for b in (detail(e) for e in events(d, "instance.boot")) if b.get("accel") == "kvm"])
    d.restart(signal.SIGKILL)
    is_({i["id"]: i["qemu_pid"] for i in live(d, "web")}, before, "after a SIGKILL and restart: same guests adopted")
    version = d.request("GET", "/v1/version").json
    if HOST == "pvm":
        is_((version["accel"], version["kvm"]), ("tcg", "unusable"), "the restarted daemon reads the finding back")
        like(version.get("kvm_unusable") or "", PVM_REASON, "with its reason")
        d.request("PATCH", "/v1/services/web", json_body={"replicas": 3})
        ok(wait_for("3 ready guests", lambda: len(live(d, "web")) == 3, 120), "a new guest comes up")
        newest = [i for i in live(d, "web") if i["id"] not in before]
        is_([i["accel"] for i in newest], ["tcg"], "under TCG")
        is_(len([b for b in (detail(e) for e in events(d, "instance.boot")) if b.get("accel") == "kvm"]), kvm_tries,
            "without another try under KVM (no boot under KVM after the restart)")
    d.request("DELETE", "/v1/services/web")
    wait_for("the guests to go", lambda: not instances(d, "web"), 60)


def silent_kvm(d):
    """kvm_cpu = qemu64: on a kvm_pvm host QEMU starts, the vCPU runs, nothing is printed."""
    push(d, "1.0")
    r = d.request("POST", "/v1/services", json_body={"name": "web", "stable_version": "app:1.0", "replicas": 1})
    is_(r.status, 201, "a 1-replica service (kvm_cpu = qemu64)")
    ready = wait_for("a ready guest", lambda: live(d, "web"), 120)
    ok(ready, "the guest comes up", json.dumps(instances(d, "web")), d.log()[-3000:])
    if not ready:
        return
    check_host_view(d, "silent KVM", r"^no sign of life under KVM 10 s after boot: no console output, and .+")
    if HOST == "pvm":
        fallbacks = events(d, "instance.kvm-fallback")
        is_(len(fallbacks), 1, "one instance.kvm-fallback event", json.dumps(fallbacks))
        inst = live(d, "web")[0]
        is_(inst["restarts"], 0, "the fallback is not counted as a restart of the guest")
        boots = [detail(e) for e in events(d, "instance.boot")]
        is_([(b.get("accel"), bool(b.get("kvm_failed"))) for b in boots], [("kvm", False), ("tcg", True)],
            "one boot under KVM, then one under TCG that names the KVM failure", json.dumps(boots))
        like(boots[-1].get("kvm_failed") or "", r"^no sign of life under KVM 10 s after boot: ",
             "the TCG boot says how KVM failed")
    d.request("DELETE", "/v1/services/web")
    wait_for("the guests to go", lambda: not instances(d, "web"), 60)


def body():
    GuestTest("accel").run(default_cpu)
    GuestTest("accel-silent").run(silent_kvm, config={"kvm_cpu": "qemu64"})


main(body)
