#!/usr/bin/env python3
"""Rollouts through the API, without guests (runtime = off: no controller moves them, so every
state seen here is what a request made). Checked: the first deploy is all at once; bad
strategies, unknown and revoked versions, the stable version again and analysis without a
listen address are refused with the documented code and change nothing; a new rollout aborts
the one in progress; every action's phase rules (pause, resume, promote, promote?full, abort,
retry) and their 409s; ?wait= answers (timeout 504, Healthy on a Degraded rollout 409); the
stable version cannot be changed under a rollout; a version in a rollout cannot be deleted;
every change is an event."""
import re
import subprocess

from aviarytest import Daemon, aviary_path, check_error, create_service, is_, like, main, ok, push_version, snapshot_diff


def unchanged(d, snap, desc):
    ok(d.snapshot() == snap, desc, lambda: snapshot_diff(snap, d.snapshot()))


def post(c, path, body=None):
    return c.post(path, body) if body is not None else c.request("POST", path)


def body(d):
    c = d.client
    for tag in ("1", "2", "3", "4"):
        push_version(c, "app", tag)
    create_service(c, "web", listen="127.0.0.1:18099", replicas=2)
    create_service(c, "quiet", replicas=1)

    r = c.post("/v1/services/web/rollouts", {"version": "app:1"})
    is_(r.status, 201, "the first rollout of a service answers 201", repr(r))
    first = r.json or {}
    is_((first.get("phase"), first.get("weights"), first.get("from")),
        ("Healthy", {"stable": 0, "canary": 10000}, None), "the first deploy is all at once: Healthy, no from")
    is_(r.header("Location"), f"/v1/services/web/rollouts/{first.get('id')}", "Location names it")
    is_(c.get("/v1/services/web").json["stable_version"], "app:1", "and app:1 is stable at once")

    snap = d.snapshot()
    bad = [
        ({"version": "app:1"}, 409, "rollout-state", "the stable version again"),
        ({"version": "app:9"}, 404, "version-not-found", "an unknown version"),
        ({"version": "nope"}, 422, "invalid-field", "a version without a tag"),
        ({}, 422, "missing-field", "no version"),
        ({"version": "app:2", "extra": 1}, 422, "unknown-field", "an unknown field"),
        ({"version": "app:2", "strategy": {"preset": "Fast"}}, 422, "invalid-field", "an unknown preset"),
        ({"version": "app:2", "strategy": {"canary": {"steps": [{"setWeight": 101}]}}}, 422, "invalid-field",
         "a weight over 100"),
        ({"version": "app:2", "strategy": {"canary": {"steps": [{"setWeight": 10, "pause": {}}]}}}, 422,
         "invalid-field", "a step with two kinds"),
        ({"version": "app:2", "strategy": {"canary": {"steps": []}}}, 422, "invalid-field", "no steps"),
        ({"version": "app:2", "strategy": {"canary": {"analysis": {"interval": "fast"}}}}, 422, "invalid-field",
         "a bad interval"),
        ({"version": "app:2", "strategy": {"canary": {"stickiness": {"header": "a b"}}}}, 422, "invalid-field",
         "a bad stickiness header"),
        ({"version": "app:2", "strategy": {"canary": {"bogus": True}}}, 422, "unknown-field", "an unknown canary field"),
        ({"version": "app:2", "strategy": "AllAtOnce"}, 422, "invalid-field", "a strategy that is not an object"),
    ]
    for req, status, code, what in bad:
        check_error(c.post("/v1/services/web/rollouts", req), status, code, f"refused: {what}")
    check_error(c.post("/v1/services/nope/rollouts", {"version": "app:2"}), 404, "service-not-found",
                "refused: an unknown service")
    unchanged(d, snap, "none of the refused rollouts changed anything")

    # A service without a listen address: analysis cannot see its traffic.
    is_(c.post("/v1/services/quiet/rollouts", {"version": "app:1"}).status, 201, "quiet's first deploy is fine")
    snap = d.snapshot()
    check_error(c.post("/v1/services/quiet/rollouts", {"version": "app:2"}), 422, "invalid-field",
                "analysis without a listen address is refused")
    unchanged(d, snap, "and changes nothing")
    r = c.post("/v1/services/quiet/rollouts",
               {"version": "app:2", "strategy": {"canary": {"analysis": {"enabled": False}}}})
    is_(r.status, 201, "with analysis off it is accepted", repr(r))

    # A rollout in progress, and the actions.
    r = c.post("/v1/services/web/rollouts", {"version": "app:2", "strategy": {"preset": "Linear10PercentEvery1Minute"}})
    is_(r.status, 201, "a rollout to app:2 starts", repr(r))
    ro = r.json or {}
    is_((ro.get("phase"), ro.get("from"), ro.get("to"), ro.get("currentStepIndex")),
        ("Progressing", "app:1", "app:2", 0), "Progressing from app:1 to app:2 at step 0")
    is_(len(ro.get("steps") or []), 19, "the preset expands to 19 steps")
    is_(ro.get("currentStep"), {"setWeight": 10}, "the current step is the first")
    is_(ro.get("strategy", {}).get("preset"), "Linear10PercentEvery1Minute", "the strategy keeps the preset's name")
    is_(c.get("/v1/services/web").json["rollout"]["id"], ro.get("id"), "the service shows the rollout in progress")
    rid = ro.get("id")
    base = f"/v1/services/web/rollouts/{rid}"

    snap = d.snapshot()
    check_error(c.patch("/v1/services/web", {"stable_version": "app:3"}), 409, "rollout-in-progress",
                "the stable version cannot change under a rollout")
    check_error(c.delete("/v1/images/app/versions/2"), 409, "version-in-use", "the canary version cannot be deleted")
    check_error(post(c, base + "/resume"), 409, "rollout-state", "resume without pause is refused")
    check_error(post(c, base + "/retry"), 409, "rollout-state", "retry of a rollout in progress is refused")
    check_error(post(c, base + "/abort?full=true"), 400, "invalid-query", "full is for promote only")
    check_error(post(c, "/v1/services/web/rollouts/99/abort"), 404, "rollout-not-found", "an unknown rollout")
    check_error(post(c, "/v1/services/web/rollouts/x1/abort"), 404, "rollout-not-found", "a rollout id that is not one")
    check_error(c.get(base + "?wait=maybe"), 400, "invalid-query", "wait must be done or Healthy")
    unchanged(d, snap, "refused actions change nothing")
    is_(c.patch("/v1/services/web", {"replicas": 3}).status, 200, "other service fields may change meanwhile")

    r = post(c, base + "/pause")
    is_((r.status, r.json.get("phase"), r.json.get("paused")), (200, "Paused", True), "pause: Paused")
    check_error(post(c, base + "/pause"), 409, "rollout-state", "pausing twice is refused")
    r = post(c, base + "/resume")
    is_((r.status, r.json.get("phase"), r.json.get("paused")), (200, "Progressing", False), "resume: Progressing")
    r = post(c, base + "/promote")
    is_((r.status, r.json.get("currentStepIndex")), (200, 1), "promote skips the current step")
    r = c.get(base + "?wait=done&timeout=1s")
    check_error(r, 504, "wait-timeout", "waiting 1 s on a rollout in progress times out with 504")

    # A new rollout supersedes the one in progress.
    r = c.post("/v1/services/web/rollouts", {"version": "app:3", "strategy": {"canary": {
        "steps": [{"setWeight": 12.5}, {"pause": {"duration": "30s"}}, {"pause": {}}, {"analysis": {}}],
        "stickiness": {"cookie": "session"}, "testerHeader": True}}})
    is_(r.status, 201, "a rollout to app:3 starts while app:2's is in progress", repr(r))
    old = c.get(base).json
    is_(old.get("phase"), "Degraded", "the rollout to app:2 was aborted")
    ok("superseded" in ((old.get("abortReason") or {}).get("detail") or ""), f"with the reason: {old.get('abortReason')}")
    is_((old.get("abortReason") or {}).get("kind"), "superseded", "abortReason.kind is superseded")
    is_(old.get("weights"), {"stable": 10000, "canary": 0}, "its weight is 0")
    cur = c.get("/v1/services/web/rollouts/current").json
    is_(cur.get("to"), "app:3", "current is the new rollout")
    is_(cur.get("steps", [{}])[0], {"setWeight": 12.5}, "a fractional weight is kept")
    check_error(post(c, base + "/retry"), 409, "rollout-state", "the superseded one cannot be retried meanwhile")

    r = post(c, "/v1/services/web/rollouts/current/abort")
    is_((r.status, r.json.get("phase"), r.json.get("weights")), (200, "Degraded", {"stable": 10000, "canary": 0}),
        "abort: Degraded, weight 0")
    ok("aborted by uid:" in ((r.json.get("abortReason") or {}).get("detail") or ""), "the reason names who aborted")
    is_((r.json.get("abortReason") or {}).get("kind"), "manual", "abortReason.kind is manual")
    abort_events = [e for e in c.get("/v1/events?limit=1000").json.get("items", []) if e["action"] == "rollout.abort"]
    is_(sorted((e.get("detail") or {}).get("kind") or "none" for e in abort_events), ["manual", "superseded"],
        "each rollout.abort event carries its kind", repr(abort_events))
    check_error(post(c, "/v1/services/web/rollouts/current/abort"), 409, "rollout-state", "aborting twice is refused")
    check_error(c.get("/v1/services/web/rollouts/current?wait=Healthy"), 409, "rollout-degraded",
                "wait=Healthy on a Degraded rollout answers 409 rollout-degraded")
    r = c.get("/v1/services/web/rollouts/current?wait=done")
    is_((r.status, r.json.get("phase")), (200, "Degraded"), "wait=done on a finished rollout answers at once")
    r = post(c, "/v1/services/web/rollouts/current/retry")
    is_((r.status, r.json.get("phase"), r.json.get("currentStepIndex"), r.json.get("abortReason")),
        (200, "Progressing", 0, None), "retry: Progressing from step 0")
    r = post(c, "/v1/services/web/rollouts/current/promote?full=true")
    is_((r.status, r.json.get("currentStepIndex")), (200, 4), "promote?full=true jumps past the last step")

    r = c.get("/v1/services/web/rollouts?limit=2")
    is_([x["to"] for x in r.json["items"]], ["app:1", "app:2"], "the list is oldest first, paged")
    r = c.get("/v1/services/web/rollouts?limit=2&after=" + str(r.json["next"]))
    is_([x["to"] for x in r.json["items"]], ["app:3"], "and the next page holds the rest")

    actions = [e["action"] for e in c.get("/v1/events?resource=service/web&limit=1000").json["items"]]
    for a in ("rollout.create", "rollout.pause", "rollout.resume", "rollout.promote", "rollout.abort",
              "rollout.retry"):
        ok(a in actions, f"event {a} was written")
    is_(actions.count("rollout.abort"), 2, "two aborts: the superseded one and the manual one")

    # Rollback: refusals change nothing; a named version is an all-at-once rollout without analysis.
    push_version(c, "app", "5")
    is_(c.post("/v1/images/app/versions/5/revoke", {"reason": "broken"}).status, 200, "app:5 is revoked")
    snap = d.snapshot()
    check_error(post(c, "/v1/services/quiet/rollback"), 409, "rollout-state",
                "rollback with no earlier successful rollout: nothing to go back to")
    check_error(post(c, "/v1/services/web/rollback", {"version": "app:1"}), 409, "rollout-state",
                "rollback to the stable version")
    check_error(post(c, "/v1/services/web/rollback", {"version": "app:5"}), 409, "version-revoked",
                "rollback to a revoked version")
    check_error(post(c, "/v1/services/web/rollback", {"version": "app:9"}), 404, "version-not-found",
                "rollback to an unknown version")
    check_error(post(c, "/v1/services/web/rollback", {"version": "app:4", "force": True}), 422, "unknown-field",
                "rollback with an unknown field")
    check_error(post(c, "/v1/services/nope/rollback"), 404, "service-not-found", "rollback of an unknown service")
    unchanged(d, snap, "none of the refused rollbacks changed anything")
    r = post(c, "/v1/services/web/rollback", {"version": "app:4"})
    is_(r.status, 201, "rollback to a named version answers 201", repr(r))
    ro = r.json or {}
    is_((ro.get("to"), ro.get("from"), ro.get("strategy", {}).get("preset"),
         ro.get("strategy", {}).get("canary", {}).get("analysis", {}).get("enabled")),
        ("app:4", "app:1", "AllAtOnce", False), "an all-at-once rollout from the stable version, without analysis")
    is_(r.header("Location"), f"/v1/services/web/rollouts/{ro.get('id')}", "Location names the rollout")
    events = c.get("/v1/events?resource=service/web&limit=1000").json["items"]
    ok(any(e["action"] == "rollout.rollback" and (e.get("detail") or {}).get("rollback") is True
           and (e.get("detail") or {}).get("to") == "app:4" for e in events), "the rollback is an event")
    ok(any(e["action"] == "rollout.abort" and (e.get("detail") or {}).get("kind") == "superseded"
           and e["id"] > max(x["id"] for x in events if x["action"] == "rollout.retry") for e in events),
       "the rollout in progress was superseded by the rollback")

    # A retried blue/green rollout needs its preview address free again: it was checked when the
    # rollout was made, and another service may have taken it since the abort closed it.
    create_service(c, "bg", listen="127.0.0.1:18093", replicas=1)
    is_(c.post("/v1/services/bg/rollouts", {"version": "app:2"}).status, 201, "bg's first deploy")
    r = c.post("/v1/services/bg/rollouts", {"version": "app:3", "strategy": {"blueGreen": {
        "previewListen": "127.0.0.1:18094"}}})
    is_((r.status, (r.json or {}).get("strategyKind")), (201, "blueGreen"), "a blue/green rollout of bg starts",
        repr(r))
    check_error(c.post("/v1/services", {"name": "squat", "listen": "127.0.0.1:18094"}), 409, "listen-in-use",
                "its preview address is taken while the rollout runs")
    is_(post(c, "/v1/services/bg/rollouts/current/abort").json.get("phase"), "Degraded", "bg's rollout aborted")
    create_service(c, "squat", listen="127.0.0.1:18094")
    snap = d.snapshot()
    check_error(post(c, "/v1/services/bg/rollouts/current/retry"), 409, "listen-in-use",
                "retry is refused once another service listens on the preview address")
    unchanged(d, snap, "and the refused retry changed nothing")
    is_(c.delete("/v1/services/squat").status, 204, "squat goes")
    is_(post(c, "/v1/services/bg/rollouts/current/retry").json.get("phase"), "Progressing",
        "then the retry is accepted")

    # Revoked versions stay visible: a service running one is flagged, with an event.
    is_(c.get("/v1/services/web").json.get("revoked"), {"stable": False, "canary": False}, "nothing revoked yet")
    last = max(e["id"] for e in c.get("/v1/events?limit=1000").json["items"])
    is_(c.post("/v1/images/app/versions/1/revoke", {"reason": "CVE-1"}).status, 200, "web's stable app:1 is revoked")
    is_(c.post("/v1/images/app/versions/4/revoke", {}).status, 200, "and the canary app:4 of its rollout")
    is_(c.get("/v1/services/web").json.get("revoked"), {"stable": True, "canary": True}, "the service is flagged for both")
    is_(c.get("/v1/services/web/traffic").json.get("revoked"), {"stable": True, "canary": True},
        "and so is its traffic view")
    is_(c.get("/v1/services/quiet").json.get("revoked"), {"stable": True, "canary": False},
        "quiet runs app:1 too: flagged")
    flagged = sorted((e["resource"], e["detail"]["version"], e["detail"]["role"], e["detail"].get("reason"))
                     for e in c.get(f"/v1/events?after={last}&limit=1000").json["items"]
                     if e["action"] == "service.version-revoked")
    is_(flagged, [("service/quiet", "app:1", "stable", "CVE-1"), ("service/web", "app:1", "stable", "CVE-1"),
                  ("service/web", "app:4", "canary", None)], "each flagged service got an event at the revocation")
    again = c.post("/v1/images/app/versions/1/revoke", {"reason": "CVE-1"})
    is_(again.status, 200, "revoking again is idempotent")
    n = len([e for e in c.get(f"/v1/events?after={last}&limit=1000").json["items"]
             if e["action"] == "service.version-revoked"])
    is_(n, 3, "and flags nothing twice")
    out = subprocess.run([aviary_path(), "--socket", d.socket_path, "service", "show", "web"], capture_output=True,
                         text=True, timeout=30).stdout
    like(out, r"(?m)^Revoked:\s+stable, canary$", "aviary service show says which versions are revoked")
    out = subprocess.run([aviary_path(), "--socket", d.socket_path, "service", "ls"], capture_output=True, text=True,
                         timeout=30).stdout
    ok(re.search(r"(?m)^quiet\s.*\sstable\s", out) and re.search(r"(?m)^REVOKED|\sREVOKED\s", out),
       "aviary service ls has a REVOKED column", out)


def run():
    with Daemon() as d:
        body(d)


main(run)
