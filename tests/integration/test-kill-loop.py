#!/usr/bin/env python3
"""Kill loop: SIGKILL aviaryd at random moments of a workload, restart it, check, again.

--layer api (runtime = off; default 40 iterations): client threads push blobs and versions,
create, update, scale and delete services, start rollouts and act on them (pause, resume,
promote, abort, retry), every POST with an Idempotency-Key. A request cut by the kill is sent
again, with the same key, once the new aviaryd is up; every 2xx answer is an acknowledged
change. After each restart: PRAGMA integrity_check and foreign_key_check pass; every blob
file hashes to its name and has its row, every blob row its file, no other file is in the blob
directory (nothing half-written is visible); every acknowledged version, service (or its
deletion) and rollout is there as last acknowledged; no service has two rollouts in progress;
every acknowledged change has its audit event, found by its request id with its action and
resource (each logical request carries an X-Request-Id of its own on every attempt, so the event
of an attempt cut by the kill is found too); answers of acknowledged POSTs replay under their key.

--layer guests (inside a network namespace of its own; default 5 iterations): a service of 2
replicas and a rollout with steps and pauses; aviaryd is killed at random moments, some of
them while it starts a domain. After each restart: one QEMU per live instance (QEMU processes
whose command line names the state dir against instances booting/ready/draining, by pid);
leases unique per address and per instance, and no two live instances share an address; no
domain without its instance once the first pass is done; the rollout is where it was (same
id, step and weights; or, only when it was between pauses at the kill, a later step up to the
next pause with that step's weight) and later reaches the next pause when promoted.

--iterations N runs more (bench/kill-loop.sh); --seed S repeats a run's random choices."""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import signal
import sys
import threading
import time

from aviarytest import Client, Daemon, db_query, diag, integrity_check, is_, main, ok

BARRIER_TIMEOUT = 120


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--layer", choices=("api", "guests"), default="api")
    p.add_argument("--iterations", type=int, default=0, help="default: 40 (api), 5 (guests)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--seed", type=int, default=None)
    return p.parse_args()


ARGS = parse_args()
SEED = ARGS.seed if ARGS.seed is not None else int.from_bytes(os.urandom(4), "big")


# ============================================================================ layer api


class Loop:
    """What the main thread and the workers share: the daemon, the barriers of each kill."""

    def __init__(self, d, workers):
        self.d = d
        self.halt = threading.Event()
        self.finished = False
        self.iteration = -1
        n = workers + 1
        # A: everyone stopped (the daemon is dead); B: restarted; C: requests cut by the kill
        # were answered; D: checked, go on.
        self.a, self.b, self.c, self.d_ = (threading.Barrier(n, timeout=BARRIER_TIMEOUT) for _ in range(4))


class Worker:
    """One client thread. It owns its images, services and rollouts, so it knows exactly what
    each of them must look like: the last acknowledged answer."""

    def __init__(self, n, loop, rng):
        self.n = n
        self.loop = loop
        self.rng = rng
        self.c = Client(socket_path=loop.d.socket_path, timeout=60)
        self.image = f"img-w{n}"
        self.seq = 0
        self.blobs = {}       # digest -> size
        self.versions = {}    # tag -> last acknowledged JSON
        self.services = {}    # name -> last acknowledged JSON (rollout changes applied)
        self.deleted = set()
        self.rollouts = {}    # (service, id) -> last acknowledged JSON
        self.acks = []        # (request id, action, resource, method, path, key, body, status)
        self.unexpected = []
        self.sent = 0
        self.retried = 0
        self.replayed = 0
        self.restart_seen = -1
        self.thread = threading.Thread(target=self.run, daemon=True)

    # -- the kill protocol

    def park_restart(self):
        if self.restart_seen != self.loop.iteration:
            self.loop.a.wait()
            self.loop.b.wait()
            self.restart_seen = self.loop.iteration
            return True
        return False

    def checkpoint(self):
        if self.loop.halt.is_set():
            self.park_restart()
            self.loop.c.wait()
            self.loop.d_.wait()
        return not self.loop.finished

    def request(self, method, path, action, resource, want, json_body=None, data=None, retry_ok=()):
        """Sends one change until it is answered; returns the Response (None when refused
        unexpectedly). A connection cut by the kill waits for the new aviaryd and sends the
        same request again (POSTs with the same Idempotency-Key)."""
        # One request id for every attempt: the event of whichever attempt made the change
        # carries it, also when its answer was lost to the kill (a retried PATCH or DELETE, a
        # blob already there, a POST answered from its key).
        self.seq += 1
        rid = f"kl{SEED}-w{self.n}-r{self.seq}"
        headers = {"X-Request-Id": rid}
        key = None
        if method == "POST":
            self.seq += 1
            key = f"kl{SEED}-w{self.n}-{self.seq}"
            headers["Idempotency-Key"] = key
        attempt = 0
        while True:
            try:
                self.sent += 1
                if data is not None:
                    r = self.c.put_blob(data, headers=headers)
                else:
                    r = self.c.request(method, path, json_body=json_body, headers=headers)
            except (OSError, http.client.HTTPException):
                if not self.park_restart():
                    time.sleep(0.05)  # the new aviaryd should answer: keep trying (its log shows why not)
                attempt += 1
                self.retried += attempt == 1
                continue
            replayed = r.header("Idempotent-Replayed") == "true"
            self.replayed += replayed
            if r.status in want or (attempt and r.status in retry_ok):
                body = json_body if data is None else None
                self.acks.append((rid, action, resource, method, path, key, body, r.status))
                return r
            self.unexpected.append(f"{method} {path} {json_body!r} (attempt {attempt}): {r!r}")
            return None

    # -- operations

    def push(self):
        digests = []
        for _ in range(self.rng.choice((1, 1, 2))):
            size = self.rng.choice((self.rng.randint(1, 64 << 10), self.rng.randint(64 << 10, 1 << 20),
                                    self.rng.randint(1 << 20, 3 << 20)))
            data = os.urandom(size)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            if not self.checkpoint():
                return
            if self.request("PUT", f"/v1/blobs/{digest}", "blob.upload", f"blob/{digest}", (201,), data=data,
                            retry_ok=(200,)) is None:
                return
            self.blobs[digest] = size
            digests.append(digest)
        tag = f"t{len(self.versions)}"
        body = {"version": tag, "kernel": digests[0], "cmdline": f"ip={{ip}} w={self.n}", "memory_mib": 64,
                "labels": {"worker": str(self.n)}}
        if len(digests) > 1:
            body["initrd"] = digests[1]
        if not self.checkpoint():
            return
        r = self.request("POST", f"/v1/images/{self.image}/versions", "version.create",
                         f"image/{self.image}/version/{tag}", (201,), json_body=body)
        if r is not None:
            self.versions[tag] = r.json

    def usable_versions(self):
        return [t for t, v in self.versions.items() if v["state"] == "active"]

    def active_rollout(self, name):
        for (svc, rid), ro in self.rollouts.items():
            if svc == name and ro["phase"] in ("Progressing", "Paused"):
                return rid
        return None

    def create_service(self):
        name = f"w{self.n}-s{len(self.services) + len(self.deleted)}"
        body = {"name": name, "replicas": self.rng.randint(0, 4),
                "listen": f"127.0.0.1:{20000 + self.n * 1000 + len(self.services) + len(self.deleted)}"}
        usable = self.usable_versions()
        if usable and self.rng.random() < 0.7:
            body["stable_version"] = f"{self.image}:{self.rng.choice(usable)}"
        r = self.request("POST", "/v1/services", "service.create", f"service/{name}", (201,), json_body=body)
        if r is not None:
            self.services[name] = r.json

    def update_service(self, name):
        body = {"replicas": self.rng.randint(0, 6)}
        usable = [t for t in self.usable_versions() if f"{self.image}:{t}" != self.services[name]["stable_version"]]
        if usable and self.active_rollout(name) is None and self.rng.random() < 0.3:
            body["stable_version"] = f"{self.image}:{self.rng.choice(usable)}"
        r = self.request("PATCH", f"/v1/services/{name}", "service.update", f"service/{name}", (200,), json_body=body)
        if r is not None:
            self.services[name] = r.json

    def delete_service(self, name):
        r = self.request("DELETE", f"/v1/services/{name}", "service.delete", f"service/{name}", (204,), retry_ok=(404,))
        if r is not None:
            del self.services[name]
            self.deleted.add(name)
            for key in [k for k in self.rollouts if k[0] == name]:
                del self.rollouts[key]

    def revoke(self):
        canaries = {ro["to"] for ro in self.rollouts.values() if ro["phase"] in ("Progressing", "Paused")}
        usable = [t for t in self.usable_versions() if f"{self.image}:{t}" not in canaries]
        if not usable:
            return
        tag = self.rng.choice(usable)
        r = self.request("POST", f"/v1/images/{self.image}/versions/{tag}/revoke", "version.revoke",
                         f"image/{self.image}/version/{tag}", (200,), json_body={"reason": f"kill loop {SEED}"})
        if r is not None:
            self.versions[tag] = r.json

    def start_rollout(self, name):
        svc = self.services[name]
        usable = [t for t in self.usable_versions() if f"{self.image}:{t}" != svc["stable_version"]]
        if not usable:
            return
        version = f"{self.image}:{self.rng.choice(usable)}"
        steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "1h"}},
                 {"setWeight": 100}]
        r = self.request("POST", f"/v1/services/{name}/rollouts", "rollout.create", f"service/{name}", (201,),
                         json_body={"version": version, "strategy": {"canary": {"steps": steps}}})
        if r is None:
            return
        old = self.active_rollout(name)
        if old is not None:  # superseded: aborted in the same transaction
            ro = dict(self.rollouts[(name, old)])
            ro.update(phase="Degraded", paused=False, weights={"stable": 10000, "canary": 0})
            self.rollouts[(name, old)] = ro
        self.rollouts[(name, r.json["id"])] = r.json
        svc = dict(svc, exact_generation=False)  # a rollout may move it; it never goes back
        if r.json["phase"] == "Healthy":  # the first deploy is all at once
            svc["stable_version"] = version
        self.services[name] = svc

    def act_on_rollout(self, name):
        mine = sorted(rid for svc, rid in self.rollouts if svc == name)
        if not mine:
            return
        rid = mine[-1]
        ro = self.rollouts[(name, rid)]
        if ro["phase"] == "Paused" and ro["paused"]:
            choices = ["resume", "abort"]
        elif ro["phase"] in ("Progressing", "Paused"):
            choices = ["pause", "abort"] + (["promote"] if ro["currentStepIndex"] < len(ro["steps"]) - 1 else [])
        elif ro["phase"] == "Degraded" and self.versions[ro["to"].split(":", 1)[1]]["state"] == "active" and \
                ro["from"] == self.services[name]["stable_version"]:  # else the service moved on: 409
            choices = ["retry"]
        else:
            return
        action = self.rng.choice(choices)
        r = self.request("POST", f"/v1/services/{name}/rollouts/{rid}/{action}", f"rollout.{action}", f"service/{name}",
                         (200,))
        if r is not None:
            self.rollouts[(name, rid)] = r.json

    def one_op(self):
        live = sorted(self.services)
        with_stable = [s for s in live if self.services[s]["stable_version"]]
        roll = self.rng.random()
        if not self.versions or roll < 0.2:
            self.push()
        elif not live or roll < 0.35:
            self.create_service()
        elif roll < 0.5:
            self.update_service(self.rng.choice(live))
        elif roll < 0.55:
            self.delete_service(self.rng.choice(live))
        elif roll < 0.6:
            self.revoke()
        elif roll < 0.75:
            self.start_rollout(self.rng.choice(live))
        elif with_stable:
            self.act_on_rollout(self.rng.choice(with_stable))

    def run(self):
        try:
            while self.checkpoint():
                self.one_op()
                time.sleep(self.rng.uniform(0, 0.01))  # a bounded data set, and room for the others on 2 cores
        except threading.BrokenBarrierError:
            if not self.loop.finished:
                self.unexpected.append("a barrier broke (another thread failed or timed out)")
        except Exception as e:  # noqa: B902 - the main thread reports it
            import traceback
            self.unexpected.append(f"worker {self.n} raised: {traceback.format_exc()}")
            for b in (self.loop.a, self.loop.b, self.loop.c, self.loop.d_):
                b.abort()


class BlobChecker:
    """Hashes each blob file once (content-addressed files never change once named)."""

    def __init__(self, state_dir):
        self.dir = os.path.join(state_dir, "blobs", "sha256")
        self.known = {}

    def check(self, state_dir):
        problems = []
        rows = dict(db_query(state_dir, "SELECT digest, size FROM blobs"))
        files = sorted(os.listdir(self.dir)) if os.path.isdir(self.dir) else []
        for name in files:
            path = os.path.join(self.dir, name)
            st = os.stat(path)
            ident = (name, st.st_ino, st.st_size)
            if not re.fullmatch(r"[0-9a-f]{64}", name):
                problems.append(f"stray file in the blob directory: {name}")
                continue
            if self.known.get(name) != ident:
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                if h.hexdigest() != name:
                    problems.append(f"blob file {name} hashes to {h.hexdigest()}")
                    continue
                self.known[name] = ident
            if rows.get("sha256:" + name) != st.st_size:
                problems.append(f"blob file {name} ({st.st_size} bytes) has row size {rows.get('sha256:' + name)}")
        for digest in rows:
            if digest.split(":", 1)[1] not in files:
                problems.append(f"blob row {digest} has no file")
        return problems, len(files)


def verify_api(d, workers, blobs, label):
    c = d.client
    problems = []
    is_(integrity_check(d.state_dir), "ok", f"{label}: PRAGMA integrity_check is ok")
    fk = db_query(d.state_dir, "PRAGMA foreign_key_check")
    blob_problems, n_files = blobs.check(d.state_dir)
    problems += [f"fk: {row}" for row in fk] + blob_problems

    for w in workers:
        for digest in w.blobs:
            if not os.path.exists(os.path.join(blobs.dir, digest.split(":", 1)[1])):
                problems.append(f"acknowledged blob {digest} is missing")
        if w.versions:
            items, _ = c.list_all(f"/v1/images/{w.image}/versions", limit=1000)
            have = {v["version"]: v for v in items}
            for tag, v in w.versions.items():
                if have.get(tag) != v:
                    problems.append(f"version {w.image}:{tag}: have {have.get(tag)!r}, acknowledged {v!r}")
    services, _ = c.list_all("/v1/services", limit=1000)
    have = {s["name"]: s for s in services}
    fields = ("stable_version", "listen", "replicas")
    for w in workers:
        for name, s in w.services.items():
            got = have.get(name)
            if got is None or any(got[f] != s[f] for f in fields) or got["generation"] < s["generation"] or \
                    (s.get("exact_generation", True) and got["generation"] != s["generation"]):
                problems.append(f"service {name}: have {got!r}, acknowledged {s!r}")
                continue
            active = w.active_rollout(name)
            if (got["rollout"] or {}).get("id") != active:
                problems.append(f"service {name} shows rollout {got['rollout']!r}, acknowledged active {active}")
        for name in w.deleted:
            if name in have:
                problems.append(f"service {name} was deleted but is back")
        by_service = {}
        for (name, rid), ro in w.rollouts.items():
            by_service.setdefault(name, {})[rid] = ro
        for name, want in by_service.items():
            items, _ = c.list_all(f"/v1/services/{name}/rollouts", limit=1000)
            got = {ro["id"]: ro for ro in items}
            for rid, ro in want.items():
                g = got.get(rid)
                keys = ("phase", "currentStepIndex", "paused", "weights", "to")
                if g is None or any(g[k] != ro[k] for k in keys):
                    problems.append(f"rollout {name}/{rid}: have {g and {k: g[k] for k in keys}}, "
                                    f"acknowledged {({k: ro[k] for k in keys})}")
    double = db_query(d.state_dir, "SELECT service_id, count(*) FROM rollouts WHERE phase IN ('Progressing', 'Paused') "
                                   "GROUP BY service_id HAVING count(*) > 1")
    problems += [f"service id {sid} has {n} rollouts in progress" for sid, n in double]

    events = db_query(d.state_dir, "SELECT request_id, action, resource FROM events")
    triples = {(e[0], e[1], e[2]) for e in events}
    n_acks = 0
    for w in workers:
        for rid, action, resource, *_ in w.acks:
            n_acks += 1
            if (rid, action, resource) not in triples:
                problems.append(f"no {action} event for {resource} with request id {rid}")
    ok(not problems, f"{label}: {n_acks} acknowledged changes, {n_files} blob files, {len(events)} events all consistent",
       *problems[:30])
    return not problems


def replay_sample(d, workers, rng):
    """Acknowledged POSTs answer again from their key: the idempotency records survived."""
    bad, n = [], 0
    for w in workers:
        posts = [a for a in w.acks if a[3] == "POST"]
        for rid, action, resource, method, path, key, body, status in rng.sample(posts, min(3, len(posts))):
            r = d.client.request("POST", path, json_body=body, headers={"Idempotency-Key": key})
            n += 1
            if r.status != status or r.header("Idempotent-Replayed") != "true":
                bad.append(f"{path} key {key}: {r!r}, first answered {status}")
    ok(not bad, f"{n} acknowledged POSTs replay their answer under their Idempotency-Key", *bad)


def layer_api(iterations):
    rng = random.Random(SEED)
    with Daemon() as d:
        loop = Loop(d, ARGS.workers)
        workers = [Worker(n, loop, random.Random(rng.random())) for n in range(ARGS.workers)]
        blobs = BlobChecker(d.state_dir)
        for w in workers:
            w.thread.start()
        t_start = time.monotonic()
        good = True
        try:
            for i in range(iterations):
                time.sleep(rng.uniform(0.02, 0.6))
                loop.iteration = i
                status = d.kill()
                loop.halt.set()
                if status != -9:
                    ok(False, f"iteration {i}: aviaryd was running until SIGKILL (exit status {status})", d.log()[-3000:])
                    good = False
                    break
                loop.a.wait()
                d.start()
                loop.b.wait()
                loop.c.wait()
                good = verify_api(d, workers, blobs, f"kill {i + 1}")
                if i == iterations - 1 or not good:
                    loop.finished = True
                loop.halt.clear()
                loop.d_.wait()
                if not good:
                    break
        except threading.BrokenBarrierError:
            ok(False, "the workers and the kill loop kept in step", *[u for w in workers for u in w.unexpected][:10])
            good = False
        finally:
            loop.finished = True
            for b in (loop.a, loop.b, loop.c, loop.d_):
                if not good:
                    b.abort()
            for w in workers:
                w.thread.join(timeout=30)
        elapsed = time.monotonic() - t_start
        unexpected = [u for w in workers for u in w.unexpected]
        ok(not unexpected, "no request was refused unexpectedly", *unexpected[:20])
        replay_sample(d, workers, rng)
        sent = sum(w.sent for w in workers)
        acks = sum(len(w.acks) for w in workers)
        diag(f"seed {SEED}: {iterations} kills in {elapsed:.1f} s; {sent} requests sent, {acks} changes acknowledged, "
             f"{sum(w.retried for w in workers)} cut by a kill and sent again "
             f"({sum(w.replayed for w in workers)} of those answered from their Idempotency-Key)")
        diag("SUMMARY " + f"layer=api iterations={iterations} seconds={elapsed:.1f} requests={sent} acked={acks} "
             f"retried={sum(w.retried for w in workers)} replayed={sum(w.replayed for w in workers)}")


# ============================================================================ layer guests

LIVE = ("booting", "ready", "draining")
STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}, {"pause": {}}, {"setWeight": 60}, {"pause": {}},
         {"setWeight": 80}, {"pause": {}}, {"setWeight": 100}]


def weight_at(step):
    """The canary weight (basis points) while the rollout is at step index STEP: the last
    setWeight before it (a setWeight step moves the weight and then the index on)."""
    weights = [x["setWeight"] * 100 for x in STEPS[:step] if "setWeight" in x]
    return weights[-1] if weights else 0


def next_pause(step):
    """The index of the first pause step at or after STEP (the end when none)."""
    return next((i for i in range(step, len(STEPS)) if "pause" in STEPS[i]), len(STEPS))


def guest_instances(d):
    r = d.request("GET", "/v1/instances?service=web&limit=1000")
    return r.json["items"] if r.status == 200 else None


def qemu_instances(state_dir):
    """{pid: instance id} of the QEMUs whose command line names STATE_DIR (zombies have none)."""
    from guesttest import qemu_pids
    out = {}
    for pid in qemu_pids(state_dir):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        m = re.search(r"guest=aviary-([^,\x00]+)", cmd)
        out[pid] = m.group(1) if m else "?"
    return out


def qemu_started(instance_id):
    """Whether a QEMU for INSTANCE_ID runs (by its -name), scanning /proc directly: quick."""
    needle = f"guest=aviary-{instance_id}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    return True
        except OSError:
            pass
    return False


def guest_state(d):
    """A consistent view: instances, QEMUs and leases, read until two instance reads agree
    around the process listing (a boot may be under way). A domain start runs on aviaryd's
    libvirt worker: from QEMU's exec until libvirt returns (a second or so here) its instance is
    still pending, so a view with a QEMU for a pending instance is taken again, for up to 10 s:
    a start under way ends in booting, an orphan stays and is reported."""
    for _ in range(40):
        before = guest_instances(d)
        procs = qemu_instances(d.state_dir)
        leases = db_query(d.state_dir, "SELECT ip, instance_id FROM leases")
        after = guest_instances(d)
        starting = after is not None and any(i["state"] == "pending" and i["id"] in procs.values() for i in after)
        if before is not None and before == after and not starting:
            return after, procs, leases
        time.sleep(0.25)
    return after, procs, leases


def check_guests(d, label, gt):
    insts, procs, leases = guest_state(d)
    problems = []
    live = [i for i in insts if i["state"] in LIVE]
    by_instance = {}
    for pid, iid in procs.items():
        by_instance.setdefault(iid, []).append(pid)
    for iid, pids in by_instance.items():
        if len(pids) > 1:
            problems.append(f"instance {iid} runs {len(pids)} QEMUs: {pids}")
    live_ids = {i["id"] for i in live}
    for iid in set(by_instance) - live_ids:
        problems.append(f"QEMU {by_instance[iid]} runs for {iid}, which is not live: "
                        f"{[i for i in insts if i['id'] == iid]}")
    for i in live:
        if by_instance.get(i["id"]) != [i["qemu_pid"]]:
            problems.append(f"live instance {i['id']} ({i['state']}) has qemu_pid {i['qemu_pid']}, "
                            f"QEMUs running for it: {by_instance.get(i['id'])}")
    ips = [i["ip"] for i in live]
    if len(ips) != len(set(ips)) or None in ips:
        problems.append(f"live instances share or lack addresses: {ips}")
    lease_ips = [ip for ip, _ in leases]
    lease_ids = [iid for _, iid in leases]
    if len(lease_ips) != len(set(lease_ips)) or len(lease_ids) != len(set(lease_ids)):
        problems.append(f"a lease is doubled: {leases}")
    lease_of = {iid: ip for ip, iid in leases}
    for i in live:
        if lease_of.get(i["id"]) != i["ip"]:
            problems.append(f"live instance {i['id']} at {i['ip']} holds lease {lease_of.get(i['id'])}")
    ok(not problems, f"{label}: {len(live)} live instances, {len(procs)} QEMUs, one each; leases unique",
       *problems, lambda: json.dumps(insts, indent=1))
    return live


def rollout_row(d):
    rows = db_query(d.state_dir, "SELECT id, step_index, canary_weight, phase FROM rollouts "
                                 "WHERE phase IN ('Progressing', 'Paused') ORDER BY id DESC LIMIT 1")
    return rows[0] if rows else None


def current_rollout(d):
    r = d.request("GET", "/v1/services/web/rollouts/current")
    return r.json if r.status == 200 else {}


def wait_paused(d, timeout=180):
    from guesttest import wait_for
    return wait_for("the rollout paused", lambda: (lambda ro: ro if ro.get("phase") == "Paused" else None)(
        current_rollout(d)), timeout)


def start_job_recorded(state_dir, instance_id):
    """Whether libvirt's status file for INSTANCE_ID's domain records its "start" job."""
    path = os.path.join(state_dir, "libvirt", "run", "qemu", f"aviary-{instance_id}.xml")
    try:
        with open(path) as f:
            return "async='start'" in f.read()
    except OSError:
        return False


def cut_start_kill(d):
    """The kill that once broke an instance for good: aviaryd killed while libvirt records a
    domain's start job. libvirt 9.0 then loads the domain with that job held by no thread, and
    the instance could neither boot ("already exists") nor be destroyed ("cannot acquire state
    change lock", 30 s each try; a SIGTERM waiting for it missed its 10 s)."""
    from guesttest import live as live_of, wait_for
    victim = live_of(d, "web")[0]["id"]
    d.request("POST", f"/v1/instances/{victim}/restart")
    seen = wait_for("the start job recorded", lambda: start_job_recorded(d.state_dir, victim), 30, interval=0.001)
    is_(d.kill(), -9, "aviaryd is killed while libvirt records the start of a domain")
    if not ok(seen, f"the kill landed while libvirt's status file for {victim} held its start job"):
        return
    d.start()
    ok(wait_for("2 ready", lambda: len(live_of(d, "web")) == 2, 120),
       f"the next aviaryd boots {victim} again: both guests ready", json.dumps(guest_instances(d), indent=1),
       d.log()[-3000:])
    log = d.log()
    ok(f"Domain aviary-{victim}: its start was cut short" in log, "the cut start is logged", log[-3000:])
    ok("cannot acquire state change lock" not in log, "no libvirt call waited for a start job nobody runs",
       log[-3000:])


def layer_guests(iterations):
    from guesttest import GuestTest, live as live_of, push, wait_for
    gt = GuestTest("kl")
    rng = random.Random(SEED)
    stats = {"kills": 0, "orphans_removed": 0, "restarts_requested": 0, "promotions": 0, "start_seconds": [],
             "mid_start": 0}

    def orphans(d):
        return sum(1 for e in d.events() if e["action"] == "instance.orphan-removed")

    def body(d):
        push(d, "1.0")
        push(d, "1.1")
        d.request("POST", "/v1/services", json_body={"name": "web", "replicas": 2, "listen": "127.0.0.1:18080"})
        d.request("POST", "/v1/services/web/rollouts", json_body={"version": "app:1.0"})
        if not ok(wait_for("2 ready", lambda: len(live_of(d, "web")) == 2, 180), "two 1.0 guests become ready",
                  d.log()[-3000:]):
            return
        cut_start_kill(d)
        r = d.request("POST", "/v1/services/web/rollouts", json_body={"version": "app:1.1", "strategy": {"canary": {
            "steps": STEPS, "canaryReplicas": 1, "analysis": {"enabled": False}, "scaleDownDelay": "0s"}}})
        ok(r.status == 201, "a rollout to app:1.1 with steps and pauses starts", repr(r))
        if not ok(wait_paused(d), "it reaches its first pause", repr(current_rollout(d))):
            return
        t_start = time.monotonic()
        for i in range(iterations):
            label = f"kill {i + 1}"
            # Every other kill lands inside a domain start: right after an instance restart
            # aviaryd boots it again, and it is killed as soon as the new QEMU exists, while
            # libvirt is still starting it.
            what = "mid-start" if i % 2 == 0 else rng.choice(("restart", "promote", "idle"))
            before_orphans = orphans(d)  # now: once a domain start is under way the API waits for it
            if what in ("mid-start", "restart"):
                stable = [x for x in live_of(d, "web") if x["version"] == "app:1.0"]
                if stable:
                    victim = rng.choice(stable)["id"]
                    d.request("POST", f"/v1/instances/{victim}/restart")
                    stats["restarts_requested"] += 1
                    if what == "mid-start":
                        started = wait_for(f"a new QEMU for {victim}", lambda: qemu_started(victim), 30, interval=0.005)
                        stats["mid_start"] += bool(started)
                    else:
                        time.sleep(rng.uniform(0.0, 1.2))
            elif what == "promote":
                if d.request("POST", "/v1/services/web/rollouts/current/promote").status == 200:
                    stats["promotions"] += 1
                time.sleep(rng.uniform(0.0, 1.5))
            else:
                time.sleep(rng.uniform(0.2, 2.0))
            status = d.kill()
            stats["kills"] += 1
            if not is_(status, -9, f"{label} ({what}): aviaryd was killed by SIGKILL"):
                return
            row = rollout_row(d)
            t0 = time.monotonic()
            d.start()
            stats["start_seconds"].append(time.monotonic() - t0)
            stats["orphans_removed"] += orphans(d) - before_orphans
            ro = current_rollout(d)
            got = (ro.get("id"), ro.get("currentStepIndex"), ro.get("weights", {}).get("canary"), ro.get("phase"))
            if row is None:
                ok(False, f"{label}: a rollout was in progress", repr(ro))
                return
            want = (row[0], row[1], row[2], row[3])
            # Paused at a pause step, only a promote moves it, and none is sent after the kill:
            # it must be exactly where it was. Between pauses (a setWeight waiting for its canary
            # guest) the new aviaryd may carry on, at most to the next pause, and then its
            # weight is that step's: the last setWeight before it.
            moved_on = (want[3] == "Progressing" and got[0] == want[0] and got[3] in ("Progressing", "Paused")
                        and want[1] < got[1] <= next_pause(want[1]) and got[2] == weight_at(got[1]))
            ok(got == want or moved_on,
               f"{label}: the rollout is where it was (step {want[1]}, canary weight {want[2]}, {want[3]}) "
               f"or, between pauses, has moved on to the next pause with that step's weight",
               f"got {got}", f"in SQLite at the kill: {want}",
               f"step {got[1]} has weight {weight_at(got[1]) if isinstance(got[1], int) else '?'}")
            check_guests(d, label, gt)
        elapsed = time.monotonic() - t_start

        # The rollout carries on: the next pause when promoted, Healthy at the end.
        ro = current_rollout(d)
        if ro.get("phase") == "Paused":
            step = ro["currentStepIndex"]
            is_(d.request("POST", "/v1/services/web/rollouts/current/promote").status, 200, "promote after the kills")
            got = wait_for("the next pause", lambda: (lambda x: x if x.get("phase") == "Paused" and
                                                      x["currentStepIndex"] > step or x.get("phase") == "Healthy"
                                                      else None)(current_rollout(d)), 180)
            ok(got, f"the rollout moves on from step {step} to the next pause (or the end)", repr(current_rollout(d)))
        r = d.request("POST", "/v1/services/web/rollouts/current/promote?full=true")
        done = wait_for("Healthy", lambda: (lambda x: x if x.get("phase") == "Healthy" else None)(current_rollout(d)),
                        60)
        ok(done, "promoted to the end it is Healthy", repr(current_rollout(d)))
        ok(wait_for("two 1.1 guests", lambda: sorted(x["version"] for x in live_of(d, "web")) == ["app:1.1"] * 2 and
                    len(qemu_instances(d.state_dir)) == 2, 180),
           "then two 1.1 guests serve, and only their two QEMUs run", json.dumps(guest_instances(d), indent=1))
        check_guests(d, "at the end", gt)
        res = gt.load("http://127.0.0.1:18080/", 100, concurrency=4)
        ok(res and res["by_status"] == {"200": 100}, "the service answers through its proxy", repr(res))
        failed = [line for line in d.log().splitlines() if "Reconcile pass failed" in line or " SQLite: " in line]
        ok(not failed, "no reconcile pass failed and no SQLite error was logged in all those lives", *failed[:10])
        ok(stats["mid_start"] >= 1, f"at least one kill landed while libvirt was starting a QEMU "
           f"({stats['mid_start']} of {stats['kills']})")
        st = stats["start_seconds"]
        diag(f"seed {SEED}: {stats['kills']} kills in {elapsed:.1f} s ({stats['mid_start']} while libvirt started a "
             f"QEMU, {stats['restarts_requested']} after an instance restart, {stats['promotions']} right after a "
             f"promotion); {stats['orphans_removed']} domains "
             f"started by a killed aviaryd were removed by the next one's first pass; restart to READY "
             f"{min(st):.2f}..{max(st):.2f} s")
        diag("SUMMARY " + f"layer=guests iterations={iterations} seconds={elapsed:.1f} "
             f"mid_start={stats['mid_start']} orphans_removed={stats['orphans_removed']} start_max={max(st):.2f}")

    gt.run(body)


# ============================================================================ main


def body():
    if ARGS.layer == "api":
        layer_api(ARGS.iterations or 40)
    else:
        layer_guests(ARGS.iterations or 5)


main(body)
