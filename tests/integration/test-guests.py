#!/usr/bin/env python3
"""Real guests: aviaryd runs inside a network namespace this test creates (it makes its bridge
aviary0 there), boots the test image through libvirt's embedded QEMU driver, and every HTTP
request to a guest is sent from inside that namespace.

Checked: a 2-replica service serves HTTP from two guests; SIGKILL of aviaryd and a restart
keep both guests with the same QEMU pids; a guest whose QEMU is killed from outside is replaced
within 10 s and the exit is an event; scale up and down; an image that crashes after one
request ends in crash-loop with the reason shown; deleting the service leaves no domain, no
QEMU and no lease."""
import json
import os
import signal
import sqlite3
import subprocess
import time

from aviarytest import aviary_path, db_query, diag, is_, like, main, ok
from guesttest import GuestTest, instances, live, push, qemu_pids, sh, wait_for

gt = GuestTest("it")
in_netns = gt.in_netns
guest_get = gt.guest_get


def body(d):
    push(d, "1.0")
    push(d, "1.1")
    push(d, "crashy", "app.crash_after=1")

    t0 = time.monotonic()
    r = d.request("POST", "/v1/services", json_body={"name": "web", "stable_version": "app:1.0", "replicas": 2,
                                                     "listen": "127.0.0.1:18080"})
    is_(r.status, 201, "a 2-replica service is created")
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
    leases = db_query(d.state_dir, "SELECT count(*) FROM leases")[0][0]
    is_(leases, 2, "two address leases are held")

    # SIGKILL the daemon: guests keep running and are adopted, same pids, same addresses.
    before = {i["id"]: (i["qemu_pid"], i["ip"]) for i in ready}
    d.kill(signal.SIGKILL)
    time.sleep(1)
    ok(all(os.path.exists(f"/proc/{pid}") for pid, _ in before.values()), "guests outlive a SIGKILLed aviaryd")
    d.start()
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

    # SIGTERM is no different: guests keep running.
    d.restart(signal.SIGTERM)
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
    time.sleep(1)
    spurious = [e for e in d.events() if e["id"] > last_event and e["resource"] == f"instance/{target['id']}"
                and e["action"] in ("instance.exit", "instance.crash-loop")]
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
    ok(wait_for("2 QEMUs gone", lambda: len(qemu_pids(d.state_dir)) == 1, 30), "and only one QEMU runs", repr(qemu_pids(d.state_dir)))
    # The lease goes in the same step as the guest, just after QEMU exits.
    ok(wait_for("1 lease", lambda: db_query(d.state_dir, "SELECT count(*) FROM leases")[0][0] == 1, 10),
       "only one lease is held", repr(db_query(d.state_dir, "SELECT * FROM leases")))

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

    # A version that crashes after one request ends in crash-loop.
    r = d.request("POST", "/v1/services", json_body={"name": "crashy", "stable_version": "app:crashy", "replicas": 1})
    is_(r.status, 201, "a service on the crashing image")

    def crash_once():
        for i in instances(d, "crashy"):
            if i["state"] == "crash-loop":
                return i
            if i["state"] == "ready":
                guest_get(i["ip"])  # the first request makes it exit
        return None

    looped = wait_for("crash-loop", crash_once, 150, interval=0.5)
    ok(looped, "an image that crashes after one request ends in crash-loop",
       json.dumps(instances(d, "crashy"), indent=1))
    if looped:
        ok("crash-loop" in (looped["stop_reason"] or ""), f"with the reason shown: {looped['stop_reason']}")
        time.sleep(3)
        is_(instances(d, "crashy")[0]["state"], "crash-loop", "and it is not restarted any more")

    # Deleting the services leaves no domain, no QEMU, no lease; versions stay.
    for name in ("web", "crashy"):
        is_(d.request("DELETE", f"/v1/services/{name}").status, 204, f"service {name} is deleted")
    ok(wait_for("no QEMU", lambda: not qemu_pids(d.state_dir), 30), "no QEMU process is left", repr(qemu_pids(d.state_dir)))
    is_(db_query(d.state_dir, "SELECT count(*) FROM leases")[0][0], 0, "no lease is left")
    is_(db_query(d.state_dir, "SELECT count(*) FROM instances")[0][0], 0, "no instance row is left")
    is_(d.request("GET", "/v1/images/app/versions/1.0").status, 200, "the versions are intact")
    dom = sh("virsh", "-c", f"qemu:///embed?root={d.state_dir}/libvirt", "list", "--all", "--name", check=False)
    is_(dom.stdout.strip(), "", "libvirt lists no domain")


def run():
    def body_and_cleanup(d):
        try:
            body(d)
        finally:
            for i in instances(d, "web") + instances(d, "crashy"):
                if i.get("qemu_pid"):
                    try:
                        os.kill(i["qemu_pid"], signal.SIGKILL)
                    except OSError:
                        pass

    gt.run(body_and_cleanup)


main(run)
