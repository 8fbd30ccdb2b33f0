#!/usr/bin/env python3
"""Real guests: aviaryd runs inside a network namespace this test creates (it makes its bridge
aviary0 there), boots the test image through libvirt's embedded QEMU driver, and every HTTP
request to a guest is sent from inside that namespace.

Checked: a 2-replica service serves HTTP from two guests; SIGKILL of aviaryd and a restart
keep both guests with the same QEMU pids; a guest whose QEMU is killed from outside is replaced
within 10 s and the exit is an event; scale up and down; restart policies with real crashes
(GET /fault/crash: the app exits, the kernel panics) and a clean power-off (GET /fault/poweroff):
on-failure boots the same instance again after a crash and not after a power-off, never does not
after a crash; backoff: 1 s after a first quick crash, 2 s after a second, crash-loop at the
third and no boot after it; a guest that served 60 s starts the count again (1 s); deleting the
services leaves no domain (libvirt's own list, read once aviaryd is stopped), no QEMU and no
lease."""
import json
import os
import signal
import sqlite3
import subprocess
import time

import datetime

from aviarytest import aviary_path, db_query, diag, is_, like, main, ok
from guesttest import GuestTest, instances, live, push, qemu_pids, sh, wait_for

gt = GuestTest("it")
in_netns = gt.in_netns
guest_get = gt.guest_get


def rfc3339(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def the_one(d, service, state=None):
    """The service's newest instance (in STATE, when given), or None."""
    items = [i for i in instances(d, service) if state is None or i["state"] == state]
    return max(items, key=lambda i: i["timings"]["created_at"]) if items else None


def events_of(d, instance_id):
    r = d.request("GET", f"/v1/events?resource=instance/{instance_id}&limit=1000")
    return r.json["items"] if r.status == 200 else []


def crash(d, inst, how="crash"):
    """GET /fault/crash (or /fault/poweroff) on the guest; waits until aviaryd has recorded the
    exit (the instance left "ready"); returns the instance then."""
    status, _ = guest_get(inst["ip"], f"/fault/{how}")
    ok(status == 200, f"{inst['id']}: GET /fault/{how} on the guest")
    return wait_for(f"{inst['id']} to leave ready", lambda: (lambda i: i if i and i["state"] != "ready" else None)(
        next((i for i in instances(d, inst["service"]) if i["id"] == inst["id"]), None)), 30)


def backoff_of(inst):
    """next_start_at - stopped_at in seconds, or None when the instance has no next start."""
    t = inst["timings"]
    if not t.get("next_start_at") or not t.get("stopped_at"):
        return None
    return round(rfc3339(t["next_start_at"]) - rfc3339(t["stopped_at"]), 3)


def check_backoff(d, inst, restarts, seconds, label):
    """INST left ready: pending, RESTARTS in a row, next_start_at SECONDS after stopped_at; then
    ready again (same id) no sooner than next_start_at. Returns the ready instance."""
    after = crash(d, inst)
    if not ok(after, f"{label}: aviaryd records the crash", lambda: json.dumps(instances(d, inst["service"]))):
        return None
    is_((after["state"], after["restarts"], backoff_of(after)), ("pending", restarts, float(seconds)),
        f"{label}: pending, restarts {restarts}, backoff exactly {seconds} s (next_start_at - stopped_at)",
        after.get("stop_reason"))
    again = wait_for(f"{inst['id']} ready again", lambda: next(
        (i for i in live(d, inst["service"]) if i["id"] == inst["id"]), None), 60)
    ok(again and rfc3339(again["timings"]["running_at"]) >= rfc3339(after["timings"]["next_start_at"]) - 0.001,
       f"{label}: the same instance boots again, not before its backoff ended")
    return again


def policies(d):
    """on-failure and never, with real crashes and a clean power-off."""
    onf, nev = the_one(d, "onf", "ready"), the_one(d, "nev", "ready")
    if not ok(onf and nev, "the on-failure and never services each have a ready guest"):
        return
    again = check_backoff(d, onf, 1, 1, "on-failure, a crash")
    after = crash(d, nev)
    ok(after and after["state"] == "failed" and after["ip"] is None,
       "never, a crash: the instance is failed, its address released", repr(after))
    off = None
    if again:
        off = crash(d, again, "poweroff")
        ok(off and off["state"] == "stopped" and "shutdown" in (off["stop_reason"] or ""),
           "on-failure, a clean power-off: the instance is stopped (not booted again)", repr(off))
    for name, gone in (("onf", off), ("nev", after)):
        if not gone:
            continue
        new = wait_for(f"{name} replaced", lambda: (lambda i: i if i and i["id"] != gone["id"] else None)(
            the_one(d, name, "ready")), 60)
        ok(new, f"{name}: a new instance serves the replica instead")
        boots = [e for e in events_of(d, gone["id"]) if e["action"] == "instance.boot"
                 and e["time"] > (gone["timings"]["stopped_at"] or "")]
        is_(boots, [], f"{name}: the exited instance {gone['id']} never boots again")


def body(d):
    push(d, "1.0")
    push(d, "1.1")

    t0 = time.monotonic()
    r = d.request("POST", "/v1/services", json_body={"name": "web", "stable_version": "app:1.0", "replicas": 2,
                                                     "listen": "127.0.0.1:18080"})
    is_(r.status, 201, "a 2-replica service is created")
    for name, policy in (("cl", "always"), ("onf", "on-failure"), ("nev", "never")):
        r = d.request("POST", "/v1/services", json_body={"name": name, "stable_version": "app:1.0", "replicas": 1,
                                                         "restart_policy": policy})
        is_(r.status, 201, f"service {name} (restart_policy {policy}) is created")
    ready = wait_for("2 ready instances", lambda: len(live(d, "web")) == 2 and live(d, "web"), 120)
    ok(ready, f"both instances become ready ({time.monotonic() - t0:.1f} s after the API call)",
       json.dumps(instances(d, "web"), indent=1), d.log()[-3000:])
    if not ready:
        return
    ips = sorted(i["ip"] for i in ready)
    is_(len(set(ips)), 2, "the two guests have different addresses")
    for i in ready:
        status, text = guest_get(i["ip"])
        is_((status, text.strip()), (200, "1.0"), f"guest {i['id']} at {i['ip']} answers HTTP with its version")
        ok(i["qemu_pid"] and os.path.exists(f"/proc/{i['qemu_pid']}"), f"{i['id']} has a live QEMU pid")
        ok(i["timings"]["boot_ms"] is not None, f"{i['id']} reports its boot time ({i['timings']['boot_ms']} ms)")
    # The service's proxy (listening inside the namespace) spreads requests over both guests.
    def proxied(n):
        answers = []
        for _ in range(n):
            r = in_netns("curl", "-s", "--max-time", "5", "-w", " %{http_code}", "http://127.0.0.1:18080/")
            answers.append(" ".join(r.stdout.split()))
        return answers

    traffic = d.request("GET", "/v1/services/web/traffic").json
    is_(len(traffic["versions"]["stable"]["backends"]), 2, "the proxy routes to both ready guests",
        json.dumps(traffic))
    answers = proxied(20)
    is_(answers, ["1.0 200"] * 20, "20 requests through the service's proxy all answered by 1.0")
    traffic = d.request("GET", "/v1/services/web/traffic").json
    is_(traffic["versions"]["stable"]["requests"], 20, "the proxy counted them for the stable version",
        json.dumps(traffic))
    ok(traffic["versions"]["stable"]["success_rate"] == 1.0, "all of them successful")
    cli = subprocess.run([aviary_path(), "--socket", d.socket_path, "service", "traffic", "web"],
                         capture_output=True, text=True, timeout=10)
    like(cli.stdout, r"Stable requests:\s+20\b", "aviary service traffic shows them", cli.stderr)
    all_ready = wait_for("cl, onf and nev ready", lambda: all(live(d, n) for n in ("cl", "onf", "nev")), 120)
    ok(all_ready, "the guests of cl, onf and nev are ready too")
    leases = db_query(d.state_dir, "SELECT count(*) FROM leases")[0][0]
    is_(leases, 5, "five address leases are held")
    cl = the_one(d, "cl", "ready")
    cl = check_backoff(d, cl, 1, 1, "a first quick crash") if cl else None
    policies(d)

    # SIGKILL the daemon: guests keep running and are adopted, same pids, same addresses.
    before = {i["id"]: (i["qemu_pid"], i["ip"]) for i in ready}
    is_(d.kill(signal.SIGKILL), -9, "aviaryd is killed (SIGKILL)")
    d.start()  # seconds: it re-attaches to the guests before READY=1
    ok(all(os.path.exists(f"/proc/{pid}") for pid, _ in before.values()),
       "the guests outlived the SIGKILLed aviaryd (their QEMUs still run after its restart)")
    after = {i["id"]: (i["qemu_pid"], i["ip"]) for i in instances(d, "web") if i["state"] == "ready"}
    is_(after, before, "after the restart the same instances are ready with the same QEMU pids and addresses")
    for _, ip in before.values():
        status, _ = guest_get(ip)
        is_(status, 200, f"guest {ip} still serves after the daemon restart")

    # On a host whose /dev/kvm opens but which QEMU cannot use (nested virtualisation), the
    # first boot fell back to TCG and left a marker: the restarted aviaryd uses TCG at once.
    marker = os.path.join(d.state_dir, "kvm-unusable")
    if os.path.exists(marker):
        like(d.log(), r"KVM was found unusable here before", "the fallback to TCG is remembered across restarts")

    # SIGTERM is no different: guests keep running. (This aviaryd adopted its guests: SIGTERM
    # must still be its own signal, ending it cleanly.)
    is_(d.kill(signal.SIGTERM), 0, "aviaryd exits with status 0 on SIGTERM after adopting its guests")
    d.start()
    after = {i["id"]: (i["qemu_pid"], i["ip"]) for i in instances(d, "web") if i["state"] == "ready"}
    is_(after, before, "after a SIGTERM restart too: same instances, same QEMU pids")

    # Kill one guest's QEMU from outside: replaced within 10 s, and recorded.
    victim = ready[0]
    os.kill(victim["qemu_pid"], signal.SIGKILL)
    t0 = time.monotonic()
    back = wait_for("the killed guest to be booted again",
                    lambda: [i for i in instances(d, "web")
                             if i["id"] == victim["id"] and i["qemu_pid"] and i["qemu_pid"] != victim["qemu_pid"]
                             and i["state"] in ("booting", "ready")], 10)
    ok(back, f"a guest killed from outside is booting again within 10 s ({time.monotonic() - t0:.1f} s)",
       json.dumps(instances(d, "web"), indent=1))
    events = [e for e in d.events() if e["resource"] == f"instance/{victim['id']}" and e["action"] == "instance.exit"]
    ok(events, "its exit is an event", json.dumps(events))
    ok(wait_for("the replaced guest ready", lambda: len(live(d, "web")) == 2, 60), "and it becomes ready again")

    # An operator's restart: a new QEMU, the same address, no spurious exit from the old one.
    target = live(d, "web")[0]
    last_event = max(e["id"] for e in d.events())
    r = d.request("POST", f"/v1/instances/{target['id']}/restart")
    is_(r.status, 202, "POST /v1/instances/ID/restart is accepted")
    again = wait_for("the restarted guest ready", lambda: [i for i in live(d, "web") if i["id"] == target["id"]
                                                          and i["qemu_pid"] != target["qemu_pid"]], 60)
    ok(again, "the restarted instance is ready again with a new QEMU pid")
    if again:
        is_((again[0]["ip"], again[0]["restarts"]), (target["ip"], 0), "with the same address and no restart counted")
    # The old domain's stop event is queued by libvirt during the destroy, before the 202, and
    # handled on the loop's next rounds; the new boot's instance.ready comes seconds later, after
    # them. Once it is recorded, a stop taken for an exit of the new guest would be too.
    mine = [e for e in d.events() if e["id"] > last_event and e["resource"] == f"instance/{target['id']}"]
    ok(any(e["action"] == "instance.ready" for e in mine), "the new boot's instance.ready event is recorded",
       repr([e["action"] for e in mine]))
    spurious = [e for e in mine if e["action"] in ("instance.exit", "instance.crash-loop")]
    is_(spurious, [], "the old guest's stop is not taken for an exit of the new one")

    # A restart is desired state: the API writes the wish (pending, the old guest's domain
    # still in the row), the controller acts on it. Written while aviaryd is down, it is carried
    # out at the next start: the old QEMU stopped, the instance booted again at its address,
    # and the old domain never taken for an orphan.
    target = live(d, "web")[0]
    last_event = max(e["id"] for e in d.events())
    d.stop()
    with sqlite3.connect(os.path.join(d.state_dir, "aviary.db")) as conn:
        conn.execute("UPDATE instances SET state = 'pending', stop_reason = 'restart requested', restarts = 0, "
                     "next_start_at = 0 WHERE id = ?", (target["id"],))
    ok(os.path.exists(f"/proc/{target['qemu_pid']}"), "the old guest still runs while aviaryd is down")
    d.start()
    again = wait_for("the restarted guest ready", lambda: [i for i in live(d, "web") if i["id"] == target["id"]
                                                          and i["qemu_pid"] != target["qemu_pid"]], 60)
    ok(again, "a restart recorded while aviaryd was down is carried out at its start")
    if again:
        is_(again[0]["ip"], target["ip"], "at the same address")
    ok(wait_for("the old QEMU gone", lambda: not os.path.exists(f"/proc/{target['qemu_pid']}"), 10),
       "and the old QEMU is gone")
    orphans = [e for e in d.events() if e["id"] > last_event and e["action"] == "instance.orphan-removed"]
    is_(orphans, [], "the old guest was stopped for the restart, not removed as an orphan")

    # Scale up to 3, then down to 1.
    r = d.request("PATCH", "/v1/services/web", json_body={"replicas": 3})
    is_(r.status, 200, "scale to 3")
    ok(wait_for("3 ready", lambda: len(live(d, "web")) == 3, 90), "three instances become ready")
    r = d.request("PATCH", "/v1/services/web", json_body={"replicas": 1})
    ok(wait_for("1 live", lambda: len([i for i in instances(d, "web")
                                       if i["state"] in ("pending", "booting", "ready")]) == 1, 30),
       "scaled to 1: one instance is left")
    def web_qemus():
        """QEMUs of this state dir that are no other service's guest."""
        others = {i["qemu_pid"] for n in ("cl", "onf", "nev") for i in instances(d, n) if i["qemu_pid"]}
        return [p for p in qemu_pids(d.state_dir) if p not in others]

    ok(wait_for("2 QEMUs gone", lambda: len(web_qemus()) == 1, 30), "and only one QEMU of web runs", repr(web_qemus()))
    # The lease goes in the same step as the guest, just after QEMU exits.
    web_leases = "SELECT count(*) FROM leases JOIN instances ON instances.id = leases.instance_id " \
                 "JOIN services ON services.id = instances.service_id WHERE services.name = 'web'"
    ok(wait_for("1 lease", lambda: db_query(d.state_dir, web_leases)[0][0] == 1, 10),
       "only one lease of web is held", repr(db_query(d.state_dir, "SELECT * FROM leases")))

    # A new stable version converges new-first: the old guest goes only once a new one is ready.
    old_ids = {i["id"] for i in instances(d, "web") if i["state"] == "ready"}
    r = d.request("PATCH", "/v1/services/web", json_body={"stable_version": "app:1.1"})
    is_(r.status, 200, "the stable version changes to app:1.1")
    seen_gap = []

    def converged():
        now = instances(d, "web")
        ready = [i for i in now if i["state"] == "ready"]
        if not ready:
            seen_gap.append(True)
        new = [i for i in ready if i["version"] == "app:1.1"]
        return new if len(new) == 1 and not [i for i in now if i["id"] in old_ids and i["state"] != "stopped"] else None

    new = wait_for("the new version to replace the old", converged, 90, interval=0.2)
    ok(new, "one app:1.1 guest is ready and the old one is stopped", json.dumps(instances(d, "web"), indent=1))
    ok(not seen_gap, "at no time was the service without a ready guest")
    if new:
        status, text = guest_get(new[0]["ip"])
        is_((status, text.strip()), (200, "1.1"), "the new guest answers with the new version")

    # Backoff and crash-loop on cl: it has been ready since its first crash above. Once it has
    # served 60 s, a crash starts the count again: restarts 1, 1 s.
    if cl:
        since = rfc3339(cl["timings"]["ready_at"])
        wait = since + 61 - time.time()
        diag(f"waiting {max(0.0, wait):.0f} s more for cl to have served 61 s")
        time.sleep(max(0.0, wait))
        cl = check_backoff(d, cl, 1, 1, "a crash after 61 s of service (the count starts again)")
    if cl:
        cl = check_backoff(d, cl, 2, 2, "a second quick crash")
    if cl:
        looped = crash(d, cl)
        t_loop = time.time()
        ok(looped and looped["state"] == "crash-loop" and looped["restarts"] == 3 and looped["ip"] is None,
           "a third quick crash: crash-loop (restarts 3), its address released", repr(looped))
        if looped:
            like(looped["stop_reason"] or "", r"^crash-loop: failed 3 times in a row", "with the reason shown")
            # The longest a boot could take to come: the backoff a next restart would have (4 s)
            # and a pass (2 s).
            time.sleep(max(0.0, t_loop + 6 - time.time()))
            now = next((i for i in instances(d, "cl") if i["id"] == looped["id"]), {})
            boots = [e for e in events_of(d, looped["id"]) if e["action"] == "instance.boot"
                     and e["time"] > looped["timings"]["stopped_at"]]
            is_((now.get("state"), boots), ("crash-loop", []), "6 s later (4 s backoff and a pass) it is still "
                "crash-loop, with no boot since")

    # Deleting the services leaves no domain, no QEMU, no lease; versions stay.
    for name in ("web", "cl", "onf", "nev"):
        is_(d.request("DELETE", f"/v1/services/{name}").status, 204, f"service {name} is deleted")
    ok(wait_for("no QEMU", lambda: not qemu_pids(d.state_dir), 30), "no QEMU process is left", repr(qemu_pids(d.state_dir)))
    is_(db_query(d.state_dir, "SELECT count(*) FROM leases")[0][0], 0, "no lease is left")
    is_(db_query(d.state_dir, "SELECT count(*) FROM instances")[0][0], 0, "no instance row is left")
    is_(d.request("GET", "/v1/images/app/versions/1.0").status, 200, "the versions are intact")
    # libvirt's own list: only with aviaryd stopped can virsh open the embedded driver's root
    # (while aviaryd holds it, virsh fails and prints nothing), so its exit status counts.
    is_(d.stop(), 0, "aviaryd stops (SIGTERM) with status 0")
    dom = in_netns("virsh", "-c", f"qemu:///embed?root={d.state_dir}/libvirt", "list", "--all", "--name", timeout=60)
    is_((dom.returncode, dom.stdout.strip()), (0, ""), "libvirt (virsh, exit status 0) lists no domain", dom.stderr)


def run():
    def body_and_cleanup(d):
        try:
            body(d)
        finally:
            for i in (instances(d, "web") + instances(d, "cl") + instances(d, "onf") + instances(d, "nev")
                      if d.running() else []):
                if i.get("qemu_pid"):
                    try:
                        os.kill(i["qemu_pid"], signal.SIGKILL)
                    except OSError:
                        pass

    gt.run(body_and_cleanup)


main(run)
