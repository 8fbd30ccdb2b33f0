/* control/controller.c through controller.h, against libvirt's test driver (test:///default:
 * domains run without QEMU) and a store in a temporary directory, in a network namespace of
 * the test's own (root; skipped otherwise) where the bridge is made and a fake guest server
 * answers for every address of the subnet (tests/unit/fakehttp.h), so that guests pass their
 * health checks. What happens to a guest is done from a second libvirt connection, as it would
 * happen behind aviaryd's back. Checked: boots become ready; a domain paused behind aviaryd's back
 * is a failure; backoff of 1 s then 2 s, crash-loop at the third quick failure and nothing
 * after it; a guest that served 60 s starts the count again; restart policies on-failure and
 * never; draining waits for requests in flight; rollouts: promotion and scaleDownDelay, the
 * progress deadline and abortScaleDownDelay, a canary paused behind aviaryd's back, and a
 * failed analysis. Behaviour, not internals: these hold when the rollout driver moves out.
 * libvirt calls run on the controller's libvirt worker (virt/virt-queue.h) and their results
 * come back on the loop, so nothing here is done when a call returns: every check runs the loop
 * until what it wants holds (wait_until), within the bound it names. */
#include <fcntl.h>
#include <inttypes.h>
#include <libvirt/libvirt.h>
#include <sched.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "macro.h"
#include "tap.h"
#include "fakehttp.h"
#include "loopclient.h"
#include "storefix.h"

#include "control/controller.h"
#include "control/rollout.h"
#include "settings.h"
#include "telemetry.h"

extern char **environ;

/* What the manager would lend the controller (ControllerContext), and the controller. */
static struct {
        Settings settings;
        Store *store;
        BlobFiles *blobs;
        Controller *controller;
} m;
static FakeHttp fake;
static virConnectPtr other; /* the second connection: what happens behind aviaryd's back */
static char state_dir[] = "/tmp/aviary-test-controller.XXXXXX";
static char kernel_digest[72];

/* ---- helpers ---- */

static int run_cmd(const char *const argv[]) {
        pid_t pid;
        int status;

        if (posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *) argv, environ) != 0)
                return -1;
        return waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs the loop until PRED(ARG) holds or MS pass; returns whether it holds. */
static bool wait_until(bool (*pred)(const void *arg), const void *arg, unsigned ms) {
        usec_t end = now_monotonic() + ms * USEC_PER_MSEC;

        while (!pred(arg) && now_monotonic() < end)
                step(-1, 20);
        return pred(arg);
}

static void kick(void) {
        controller_kick(m.controller);
}

typedef struct List {
        InstanceRecord item[64];
        size_t n;
} List;

static int list_add(const InstanceRecord *r, void *userdata) {
        List *l = userdata;
        if (l->n < ELEMENTSOF(l->item)) {
                l->item[l->n] = *r;
                l->item[l->n++].stop_reason = NULL; /* not kept */
        }
        return 0;
}

static List instances(int64_t service) {
        List l = {};
        store_instance_list(m.store, service, NULL, 64, list_add, &l);
        return l;
}

static InstanceRecord get(const char *id) {
        InstanceRecord r = {};
        store_instance_get(m.store, id, &r);
        return r;
}

typedef struct Want {
        int64_t service, version;
        const char *state;
        unsigned count;
} Want;

/* At least COUNT instances of SERVICE (of VERSION, unless 0) are in STATE. */
static bool have(const void *arg) {
        const Want *w = arg;
        List l = instances(w->service);
        unsigned n = 0;

        for (size_t i = 0; i < l.n; i++)
                n += streq(l.item[i].state, w->state) && (!w->version || l.item[i].version_id == w->version);
        return n >= w->count;
}

static unsigned count_state(int64_t service, int64_t version, const char *state) {
        List l = instances(service);
        unsigned n = 0;
        for (size_t i = 0; i < l.n; i++)
                n += streq(l.item[i].state, state) && (!version || l.item[i].version_id == version);
        return n;
}

typedef struct StateOf {
        const char *id;
        const char *not_state;   /* holds once the instance is no longer in this state... */
        const char *uuid_not;    /* ...or, for "ready again", ready with a domain other than this */
} StateOf;

static bool left_state(const void *arg) {
        const StateOf *s = arg;
        _cleanup_(instance_record_done) InstanceRecord r = get(s->id);
        if (s->uuid_not)
                return streq(r.state, "ready") && !streq(r.domain_uuid, s->uuid_not);
        return !streq(r.state, s->not_state);
}

typedef struct EventList {
        char action[32][40];
        char detail[32][200];
        usec_t time[32];
        size_t n;
} EventList;

static int event_add(const EventRecord *e, void *userdata) {
        EventList *l = userdata;
        if (l->n < 32) {
                snprintf(l->action[l->n], sizeof l->action[0], "%s", e->action);
                snprintf(l->detail[l->n], sizeof l->detail[0], "%s", e->detail ? e->detail : "");
                l->time[l->n++] = e->time;
        }
        return 0;
}

static EventList events_of(const char *resource) {
        EventList l = {};
        store_event_list(m.store, 0, 1000, resource, event_add, &l);
        return l;
}

static unsigned count_events(const char *id, const char *action, usec_t after) {
        char resource[96];
        snprintf(resource, sizeof resource, "instance/%s", id);
        EventList l = events_of(resource);
        unsigned n = 0;
        for (size_t i = 0; i < l.n; i++)
                n += streq(l.action[i], action) && l.time[i] > after;
        return n;
}

/* Something done to instance ID's domain from the other connection. */
static int behind_back(const char *id, const char *what) {
        _cleanup_(instance_record_done) InstanceRecord r = get(id);
        virDomainPtr d = virDomainLookupByUUIDString(other, r.domain_uuid);
        int k;

        if (!d)
                return -ENOENT;
        k = streq(what, "suspend")    ? virDomainSuspend(d)
            : streq(what, "destroy")  ? virDomainDestroy(d)
            : streq(what, "shutdown") ? virDomainShutdown(d)
                                      : -1;
        virDomainFree(d);
        return k;
}

static bool domain_exists(const char *uuid) {
        virDomainPtr d = virDomainLookupByUUIDString(other, uuid);
        if (d)
                virDomainFree(d);
        return d != NULL;
}

/* A destroy runs on the libvirt worker after the row has changed: wait for it, bounded. */
static bool domain_gone(const void *arg) {
        return !domain_exists(arg);
}

/* The id of the first instance of SERVICE in STATE (VERSION 0: any), into OUT. */
static bool pick(int64_t service, int64_t version, const char *state, char out[static 64]) {
        List l = instances(service);
        for (size_t i = 0; i < l.n; i++)
                if (streq(l.item[i].state, state) && (!version || l.item[i].version_id == version)) {
                        snprintf(out, 64, "%s", l.item[i].id);
                        return true;
                }
        return false;
}

/* ---- the guests of one service ---- */

static int64_t v1, web;
static int64_t ro_svc, rv2, rv3, rv4, rv5, rv6;
static char x_id[64], y_id[64];
static usec_t crash_loop_at;

static bool full_pass_since(const void *arg) {
        return telemetry_controller_passes(true) > *(const uint64_t *) arg;
}

static void test_boot(void) {
        Want w = { web, 0, "ready", 2 };
        ok(wait_until(have, &w, 10000), "a service of 2 replicas gets 2 ready guests (test driver, fake guests)");
        pick(web, 0, "ready", x_id);
        List l = instances(web);
        snprintf(y_id, sizeof y_id, "%s", streq(l.item[0].id, x_id) ? l.item[1].id : l.item[0].id);
        for (const char *id = x_id; id; id = id == x_id ? y_id : NULL) {
                char resource[96];
                snprintf(resource, sizeof resource, "instance/%s", id);
                EventList e = events_of(resource);
                ok(e.n >= 3 && streq(e.action[0], "instance.create") && streq(e.action[1], "instance.boot") &&
                           streq(e.action[2], "instance.ready"),
                   "%s: instance.create, instance.boot, instance.ready", id);
        }
        json_auto_t *t = controller_traffic_json(m.controller, "web");
        is_int(json_array_size(json_object_get(json_object_get(json_object_get(t, "versions"), "stable"), "backends")), 2,
               "the service's proxy routes to both");
}

/* ID left "ready": pending with RESTARTS and a backoff of BACKOFF_S seconds; returns it. */
static void check_backoff(const char *id, int64_t restarts, unsigned backoff_s, const char *why) {
        _cleanup_(instance_record_done) InstanceRecord r = get(id);
        is_str(r.state, "pending", "%s: the instance waits to boot again", why);
        is_int(r.restarts, restarts, "%s: restarts is %lld", why, (long long) restarts);
        is_int((long long) (r.next_start_at - r.stopped_at), (long long) backoff_s * USEC_PER_SEC,
               "%s: its backoff is exactly %u s (next_start_at - stopped_at)", why, backoff_s);
}

/* Waits until ID is ready on a domain other than OLD_UUID; checks it did not boot before its
 * backoff ended. */
static void check_boots_again(const char *id, const char *old_uuid, const char *why) {
        _cleanup_(instance_record_done) InstanceRecord before = get(id);
        StateOf s = { id, NULL, old_uuid };
        ok(wait_until(left_state, &s, 8000), "%s: it boots again and is ready, on a new domain", why);
        _cleanup_(instance_record_done) InstanceRecord after = get(id);
        ok(after.running_at >= before.next_start_at, "%s: not before its backoff ended (%.2f s after)", why,
           (double) ((int64_t) after.running_at - (int64_t) before.next_start_at) / USEC_PER_SEC);
}

/* API changes that come one after another (a client creating services one by one, each answer
 * after an fsync) are taken by passes over the services they name. A change that finds the
 * loop busy past the coalescing delay is taken by a pass at once; the coalescing timer armed for
 * an earlier change must then not run a pass of its own, which, finding nothing changed, went
 * over every service: about one full pass per two changes (a create rate 0.11x of libvirt's). */
static void test_changed_passes(void) {
        Want w = { ro_svc, 0, "ready", 2 };
        uint64_t all0, some0, all, some;

        ok(wait_until(have, &w, 10000), "ro's 2 guests are ready too: no probe will ask for a pass");
        all0 = telemetry_controller_passes(true);
        ok(wait_until(full_pass_since, &all0, 3000), "a periodic full pass ran: the next is 2 s away");
        all0 = telemetry_controller_passes(true);
        some0 = telemetry_controller_passes(false);
        for (unsigned i = 0; i < 60; i++) {
                controller_changed_service(m.controller, i % 2 ? "web" : "ro");
                while (sd_event_run(loop, 0) > 0)
                        ;
                usleep(3000); /* the next request's handling and its fsync: the loop is busy */
        }
        run_for(20);
        all = telemetry_controller_passes(true) - all0;
        some = telemetry_controller_passes(false) - some0;
        ok(some >= 10, "60 changes 3 ms apart: passes over the changed services (%" PRIu64 ")", some);
        ok(all <= 1, "and no full pass but the periodic one, 2 s apart (%" PRIu64 " full passes)", all);
}

static void test_paused(void) {
        _cleanup_(instance_record_done) InstanceRecord x = get(x_id);
        StateOf s = { x_id, "ready", NULL };

        is_int(behind_back(x_id, "suspend"), 0, "instance X's domain is suspended from another libvirt connection");
        ok(wait_until(left_state, &s, 3000), "aviaryd notices the paused domain");
        _cleanup_(instance_record_done) InstanceRecord r = get(x_id);
        ok(r.stop_reason && strncmp(r.stop_reason, "its vCPUs stopped (libvirt: ", 28) == 0,
           "it is a failure whose stop_reason says the vCPUs stopped: %s", r.stop_reason ? r.stop_reason : "(none)");
        check_backoff(x_id, 1, 1, "paused behind its back");
        ok(wait_until(domain_gone, x.domain_uuid, 3000), "the paused domain was destroyed");
        is_int(count_events(x_id, "instance.exit", 0), 1, "an instance.exit event records it");
        check_boots_again(x_id, x.domain_uuid, "after the pause");
}

static void test_backoff_and_crash_loop(void) {
        _cleanup_(instance_record_done) InstanceRecord x = get(x_id);
        StateOf s = { x_id, "ready", NULL };

        is_int(behind_back(x_id, "destroy"), 0, "X's domain is destroyed behind aviaryd's back, soon after it was ready");
        ok(wait_until(left_state, &s, 3000), "aviaryd notices");
        check_backoff(x_id, 2, 2, "the second quick failure");
        check_boots_again(x_id, x.domain_uuid, "after 2 s");

        s = (StateOf) { x_id, "ready", NULL };
        is_int(behind_back(x_id, "destroy"), 0, "and destroyed once more");
        ok(wait_until(left_state, &s, 3000), "aviaryd notices");
        _cleanup_(instance_record_done) InstanceRecord r = get(x_id);
        crash_loop_at = now_realtime();
        is_str(r.state, "crash-loop", "the third quick failure in a row: crash-loop");
        is_int(r.restarts, 3, "with restarts 3");
        ok(r.stop_reason && strstr(r.stop_reason, "crash-loop: failed 3 times in a row"), "stop_reason says so: %s",
           r.stop_reason ? r.stop_reason : "(none)");
        is_str(r.ip, "", "its address lease is released");
        is_int(count_events(x_id, "instance.crash-loop", 0), 1, "an instance.crash-loop event");
}

static void test_reset_after_60s(void) {
        _cleanup_(instance_record_done) InstanceRecord y = get(y_id);
        StateOf s = { y_id, "ready", NULL };

        /* Y has served for 61 s, after two quick failures: its next failure starts the count again. */
        y.ready_at = now_realtime() - 61 * USEC_PER_SEC;
        y.running_at = y.ready_at - USEC_PER_SEC;
        y.restarts = 2;
        is_int(store_instance_update(m.store, &y), 0, "Y has been ready 61 s, after 2 quick failures");
        is_int(behind_back(y_id, "destroy"), 0, "Y's domain is destroyed");
        ok(wait_until(left_state, &s, 3000), "aviaryd notices");
        check_backoff(y_id, 1, 1, "a failure after 60 s of service");
        check_boots_again(y_id, y.domain_uuid, "after the reset");
}

static bool crash_loop_settled(const void *arg) {
        return now_realtime() >= crash_loop_at + 6 * USEC_PER_SEC;
}

static void test_crash_loop_is_final(void) {
        /* The longest it could take to boot again: the next backoff (4 s) and a full pass (2 s). */
        wait_until(crash_loop_settled, NULL, 8000);
        _cleanup_(instance_record_done) InstanceRecord r = get(x_id);
        is_str(r.state, "crash-loop", "6 s after (the next backoff, 4 s, and a pass): still crash-loop");
        is_int(count_events(x_id, "instance.boot", crash_loop_at), 0, "and no boot since");
        is_int(count_state(web, 0, "ready"), 1, "the crash-looping instance keeps its slot: one ready, no replacement");
}

/* ---- restart policies ---- */

static void test_policies(void) {
        int64_t onf = fix_service(m.store, "onf", NULL, v1, 1, "on-failure", 250, 1, 3);
        int64_t nev = fix_service(m.store, "nev", NULL, v1, 1, "never", 250, 1, 3);
        char a[64], b[64], c[64], d[64];
        Want wa = { onf, 0, "ready", 1 }, wb = { nev, 0, "ready", 1 };

        kick();
        ok(onf && nev && wait_until(have, &wa, 5000) && wait_until(have, &wb, 5000),
           "services on-failure and never each get a ready guest");
        pick(onf, 0, "ready", a);
        pick(nev, 0, "ready", b);
        _cleanup_(instance_record_done) InstanceRecord ra = get(a);
        StateOf sa = { a, "ready", NULL }, sb = { b, "ready", NULL };

        /* A failure (destroyed: not clean). */
        behind_back(a, "destroy");
        behind_back(b, "destroy");
        ok(wait_until(left_state, &sa, 3000) && wait_until(left_state, &sb, 3000), "both guests are destroyed");
        check_backoff(a, 1, 1, "on-failure, a failure");
        check_boots_again(a, ra.domain_uuid, "on-failure, a failure");
        _cleanup_(instance_record_done) InstanceRecord fb = get(b);
        is_str(fb.state, "failed", "never, a failure: the instance is failed");
        is_str(fb.ip, "", "its address released");
        usec_t b_exit = fb.stopped_at;
        ok(wait_until(have, &wb, 5000), "the service gets a new instance for its replica");

        /* A clean shutdown. */
        pick(nev, 0, "ready", d);
        sa = (StateOf) { a, "ready", NULL };
        StateOf sd = { d, "ready", NULL };
        behind_back(a, "shutdown");
        behind_back(d, "shutdown");
        ok(wait_until(left_state, &sa, 3000) && wait_until(left_state, &sd, 3000), "both are shut down (cleanly)");
        _cleanup_(instance_record_done) InstanceRecord fa = get(a);
        _cleanup_(instance_record_done) InstanceRecord fd = get(d);
        is_str(fa.state, "stopped", "on-failure, a clean shutdown: stopped, not restarted");
        is_str(fd.state, "stopped", "never, a clean shutdown: stopped");
        ok(fa.stop_reason && strstr(fa.stop_reason, "shutdown"), "its stop_reason: %s", fa.stop_reason ? fa.stop_reason : "");
        usec_t a_exit = fa.stopped_at;
        ok(wait_until(have, &wa, 5000) && pick(onf, 0, "ready", c) && !streq(c, a),
           "on-failure: a new instance takes the replica");
        run_for(2500); /* a pass and a backoff's worth: nothing boots them again */
        is_int(count_events(a, "instance.boot", a_exit), 0, "the stopped on-failure instance never boots again");
        is_int(count_events(b, "instance.boot", b_exit), 0, "nor the failed never instance");
        is_int(count_events(d, "instance.boot", fd.stopped_at), 0, "nor the stopped one");
}

/* ---- draining ---- */

static void test_drain(void) {
        int64_t dr = fix_service(m.store, "dr", "127.0.0.1:18081", v1, 2, NULL, 250, 1, 3);
        Want w = { dr, 0, "ready", 2 };
        int fds[4];
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(18081), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

        kick();
        if (!ok(dr && wait_until(have, &w, 5000), "a service of 2 ready guests behind a proxy"))
                return;
        /* Requests in flight to each guest, whose answers' bodies arrive over 3 s. Connections go
         * to the 2 proxy workers in turn and each worker has its own round-robin over the guests
         * (docs/design/traffic.md): 4 connections, 2 on each worker, one to each guest there. */
        usec_t t0 = now_monotonic();
        for (int i = 0; i < 4; i++) {
                fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                connect(fds[i], (struct sockaddr *) &sa, sizeof sa);
                const char *req = "GET /drip?ms=3000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
                (void) !send(fds[i], req, strlen(req), MSG_NOSIGNAL);
                run_for(50);
        }
        ServiceRecord s = {};
        store_service_get(m.store, "dr", &s);
        s.replicas = 1;
        store_service_update(m.store, &s);
        service_record_done(&s);
        kick();
        Want wd = { dr, 0, "draining", 1 };
        ok(wait_until(have, &wd, 2000), "scaled to 1: one guest drains");
        char id[64];
        pick(dr, 0, "draining", id);
        run_for((unsigned) ((t0 + 2500 * USEC_PER_MSEC - now_monotonic()) / USEC_PER_MSEC));
        _cleanup_(instance_record_done) InstanceRecord r = get(id);
        is_str(r.state, "draining", "2.5 s on, its request still in flight: it is still draining (guest not destroyed)");
        ok(domain_exists(r.domain_uuid), "and its domain still runs");
        StateOf st = { id, "draining", NULL };
        ok(wait_until(left_state, &st, 4000), "once the request is done it stops");
        double took = (double) (now_monotonic() - t0) / USEC_PER_SEC;
        ok(took >= 3.0 && took < 10.0, "after the request's 3 s, long before the 30 s drain timeout (%.1f s)", took);
        _cleanup_(instance_record_done) InstanceRecord done = get(id);
        is_str(done.state, "stopped", "stopped");
        ok(wait_until(domain_gone, r.domain_uuid, 3000), "its domain destroyed");
        char resource[96];
        snprintf(resource, sizeof resource, "instance/%s", id);
        EventList e = events_of(resource);
        bool drained = false;
        for (size_t i = 0; i < e.n; i++)
                drained |= streq(e.action[i], "instance.stop") && strstr(e.detail[i], "\"drain\":\"done\"");
        ok(drained, "its instance.stop event says drain: done");
        /* Both clients got their whole answer: nothing was cut. */
        unsigned whole = 0;
        for (int i = 0; i < 4; i++) {
                char buf[512] = "";
                size_t len = 0;
                usec_t end = now_monotonic() + 5 * USEC_PER_SEC;
                while (now_monotonic() < end) {
                        step(fds[i], 20);
                        ssize_t k = recv(fds[i], buf + len, sizeof buf - 1 - len, MSG_DONTWAIT);
                        if (k > 0)
                                len += (size_t) k;
                        buf[len] = 0;
                        if (k == 0 || strstr(buf, "ddddddddd\n"))
                                break;
                }
                whole += strstr(buf, "200 OK") && strstr(buf, "ddddddddd\n");
                close(fds[i]);
        }
        is_int(whole, 4, "the 4 requests in flight got their whole answer");
}

/* ---- rollouts ---- */

static int64_t start_rollout(int64_t to, const char *strategy) {
        ServiceRecord s = {};
        int64_t id = 0;
        store_service_get(m.store, "ro", &s);
        RolloutRecord old = {};
        if (store_rollout_get_active(m.store, ro_svc, &old) == 0) {
                rollout_abort(&old, ROLLOUT_ABORT_SUPERSEDED, "superseded", now_realtime());
                store_rollout_update(m.store, &old);
        }
        rollout_record_done(&old);
        fix_rollout(m.store, ro_svc, s.stable_version_id, to, 0, strategy, 99, &id);
        RolloutRecord r = {};
        store_rollout_get(m.store, ro_svc, id, &r);
        r.phase = ROLLOUT_PROGRESSING;
        r.step_started_at = now_realtime();
        store_rollout_update(m.store, &r);
        rollout_record_done(&r);
        service_record_done(&s);
        kick();
        return id;
}

typedef struct RolloutWant {
        int64_t id;
        RolloutPhase phase;
        int64_t weight; /* -1: any */
} RolloutWant;

static bool rollout_is(const void *arg) {
        const RolloutWant *w = arg;
        RolloutRecord r = {};
        bool yes = store_rollout_get(m.store, ro_svc, w->id, &r) == 0 && r.phase == w->phase &&
                   (w->weight < 0 || r.canary_weight == w->weight);
        rollout_record_done(&r);
        return yes;
}

static RolloutRecord rollout_row(int64_t id) {
        RolloutRecord r = {};
        store_rollout_get(m.store, ro_svc, id, &r);
        return r;
}

typedef struct Until {
        usec_t realtime;
} Until;

static bool time_reached(const void *arg) {
        return now_realtime() >= ((const Until *) arg)->realtime;
}

static void test_promote_and_scale_down_delay(void) {
        int64_t id = start_rollout(rv2, "{\"canary\": {\"steps\": [{\"setWeight\": 50}, {\"pause\": {}}], "
                                        "\"canaryReplicas\": 1, \"analysis\": {\"enabled\": false}, "
                                        "\"scaleDownDelay\": \"3s\"}}");
        RolloutWant paused = { id, ROLLOUT_PAUSED, 5000 };
        ok(wait_until(rollout_is, &paused, 8000), "a rollout to v2 boots its canary and holds at 50%%");
        is_int(count_state(ro_svc, rv2, "ready"), 1, "with one canary guest ready");

        /* The API's promote?full=true, as handlers/rollouts.c does it. */
        RolloutRecord r = rollout_row(id);
        Strategy st;
        ApiError e = {};
        rollout_strategy(&r, &st);
        is_int(rollout_action(&r, &st, ROLLOUT_ACTION_PROMOTE, true, "uid:0", now_realtime(), &e), 0, "promote?full=true");
        store_rollout_update(m.store, &r);
        rollout_record_done(&r);
        kick();
        RolloutWant healthy = { id, ROLLOUT_HEALTHY, -1 };
        ok(wait_until(rollout_is, &healthy, 5000), "the rollout is Healthy");
        ServiceRecord s = {};
        store_service_get(m.store, "ro", &s);
        is_int(s.stable_version_id, rv2, "v2 is the service's stable version");
        service_record_done(&s);
        Want two = { ro_svc, rv2, "ready", 2 };
        ok(wait_until(have, &two, 5000), "v2 grows to the 2 replicas");

        /* scaleDownDelay 3s: the old guests stay, without traffic, until finished_at + 3 s. */
        r = rollout_row(id);
        Until almost = { r.finished_at + 2500 * USEC_PER_MSEC };
        wait_until(time_reached, &almost, 5000);
        is_int(count_state(ro_svc, v1, "ready"), 2, "2.5 s after the promotion both v1 guests are still there (ready)");
        Until after = { r.finished_at + 3 * USEC_PER_SEC };
        wait_until(time_reached, &after, 5000);
        Want gone = { ro_svc, v1, "stopped", 2 };
        ok(wait_until(have, &gone, 4000), "after the 3 s they are stopped (within a pass)");
        rollout_record_done(&r);
}

static void test_deadline_and_abort_delay(void) {
        /* v3's guests listen nowhere: never ready. The clock is read before the rollout starts:
         * its deadline counts from its creation, a little before start_rollout() returns. */
        usec_t t0 = now_realtime();
        int64_t id = start_rollout(rv3, "{\"canary\": {\"steps\": [{\"setWeight\": 50}, {\"pause\": {}}], "
                                        "\"canaryReplicas\": 1, \"analysis\": {\"enabled\": false}, "
                                        "\"progressDeadline\": \"2s\", \"abortScaleDownDelay\": \"3s\"}}");
        RolloutWant degraded = { id, ROLLOUT_DEGRADED, 0 };
        ok(wait_until(rollout_is, &degraded, 6000), "a canary that never gets ready: Degraded at its progressDeadline");
        RolloutRecord r = rollout_row(id);
        double after = (double) (r.finished_at - t0) / USEC_PER_SEC;
        ok(after >= 2.0 && after < 4.0, "2 s after it started, within a tick or few (%.2f s)", after);
        ok(r.abort_reason && strstr(r.abort_reason, "deadline"), "the reason names the deadline: %s",
           r.abort_reason ? r.abort_reason : "(none)");
        is_int(r.abort_kind, ROLLOUT_ABORT_DEADLINE, "its kind is deadline");
        is_int(r.canary_weight, 0, "the canary never got traffic: weight 0");
        /* abortScaleDownDelay 3s: the canary guest stays for inspection, then goes. */
        Until almost = { r.finished_at + 2500 * USEC_PER_MSEC };
        wait_until(time_reached, &almost, 5000);
        is_int(count_state(ro_svc, rv3, "booting"), 1, "2.5 s after the abort the canary guest is still there");
        Until later = { r.finished_at + 3 * USEC_PER_SEC };
        wait_until(time_reached, &later, 5000);
        Want gone = { ro_svc, rv3, "stopped", 1 };
        ok(wait_until(have, &gone, 4000), "after the 3 s it is stopped");
        rollout_record_done(&r);
}

static void test_canary_paused(void) {
        int64_t id = start_rollout(rv4, "{\"canary\": {\"steps\": [{\"setWeight\": 50}, {\"pause\": {}}], "
                                        "\"canaryReplicas\": 1, \"analysis\": {\"enabled\": false}}}");
        RolloutWant paused = { id, ROLLOUT_PAUSED, 5000 };
        char canary[64];
        ok(wait_until(rollout_is, &paused, 8000) && pick(ro_svc, rv4, "ready", canary), "a canary at 50%%");
        is_int(behind_back(canary, "suspend"), 0, "its domain is paused behind aviaryd's back");
        RolloutWant degraded = { id, ROLLOUT_DEGRADED, 0 };
        ok(wait_until(rollout_is, &degraded, 3000), "the rollout aborts: Degraded, weight 0");
        RolloutRecord r = rollout_row(id);
        ok(r.abort_reason && strstr(r.abort_reason, canary) && strstr(r.abort_reason, "vCPUs stopped"),
           "the reason names the canary and its stopped vCPUs: %s", r.abort_reason ? r.abort_reason : "(none)");
        is_int(r.abort_kind, ROLLOUT_ABORT_UNHEALTHY, "its kind is unhealthy");
        rollout_record_done(&r);
}

static void test_analysis_fails(void) {
        int64_t id = start_rollout(rv5, "{\"canary\": {\"steps\": [{\"setWeight\": 50}, {\"pause\": {}}], "
                                        "\"canaryReplicas\": 1, \"analysis\": {\"interval\": \"1s\", "
                                        "\"minSampleSize\": 5, \"failureLimit\": 0}}}");
        RolloutWant paused = { id, ROLLOUT_PAUSED, 5000 };
        char canary[64];
        ok(wait_until(rollout_is, &paused, 8000) && pick(ro_svc, rv5, "ready", canary), "a canary at 50%% with analysis");
        _cleanup_(instance_record_done) InstanceRecord c = get(canary);
        atomic_store(&fake_guest(&fake, c.ip)->status, 500); /* its health checks still pass */
        RolloutWant degraded = { id, ROLLOUT_DEGRADED, 0 };
        usec_t end = now_monotonic() + 6 * USEC_PER_SEC;
        unsigned sent = 0, errors = 0;
        while (!rollout_is(&degraded) && now_monotonic() < end) {
                errors += get_on(18082, "/", "").status == 500;
                sent++;
                run_for(40);
        }
        ok(rollout_is(&degraded), "traffic on a canary answering 500 fails the analysis: Degraded (%u of %u requests "
           "failed)", errors, sent);
        RolloutRecord r = rollout_row(id);
        ok(r.abort_reason && strstr(r.abort_reason, "analysis"), "the reason names the analysis: %s",
           r.abort_reason ? r.abort_reason : "(none)");
        is_int(r.abort_kind, ROLLOUT_ABORT_ANALYSIS, "its kind is analysis");
        rollout_record_done(&r);
        unsigned to_canary = 0;
        for (int i = 0; i < 10; i++)
                to_canary += streq(get_on(18082, "/", "").guest, c.ip);
        is_int(to_canary, 0, "after the abort no request reaches the canary");
}

/* Whether IP is the address of a ready guest of VERSION of the rollout service. */
static bool is_guest_of(const char *ip, int64_t version) {
        List l = instances(ro_svc);
        for (size_t i = 0; i < l.n; i++)
                if (l.item[i].version_id == version && streq(l.item[i].state, "ready") && streq(l.item[i].ip, ip))
                        return true;
        return false;
}

/* N requests to PORT on 127.0.0.1: how many a ready guest of VERSION answered. */
static unsigned answered_by(unsigned port, unsigned n, int64_t version) {
        unsigned hits = 0;
        for (unsigned i = 0; i < n; i++)
                hits += is_guest_of(get_on(port, "/", "").guest, version);
        return hits;
}

/* Blue/green through the controller: the new version gets every replica behind the preview
 * while the public listener keeps the old one; promote switches the public listener; the old
 * guests stay for scaleDownDelay. */
static void test_blue_green(void) {
        ServiceRecord s = {};
        store_service_get(m.store, "ro", &s);
        int64_t old = s.stable_version_id;
        service_record_done(&s);
        int64_t id = start_rollout(rv6, "{\"blueGreen\": {\"previewListen\": \"127.0.0.1:18083\", "
                                        "\"scaleDownDelay\": \"1h\"}}");
        RolloutWant waiting = { id, ROLLOUT_PAUSED, 0 };
        ok(wait_until(rollout_is, &waiting, 10000), "a blue/green rollout waits for promote, public weight 0");
        is_int(count_state(ro_svc, rv6, "ready"), 2, "with all 2 replicas of the new version ready");
        is_int(answered_by(18083, 10, rv6), 10, "the preview listener: 10 of 10 answers from the new version");
        is_int(answered_by(18082, 10, old), 10, "the public listener: 10 of 10 from the old one");

        RolloutRecord r = rollout_row(id);
        Strategy st;
        ApiError e = {};
        rollout_strategy(&r, &st);
        is_int(rollout_action(&r, &st, ROLLOUT_ACTION_PROMOTE, false, "uid:0", now_realtime(), &e), 0, "promote");
        store_rollout_update(m.store, &r);
        rollout_record_done(&r);
        kick();
        RolloutWant healthy = { id, ROLLOUT_HEALTHY, 10000 };
        ok(wait_until(rollout_is, &healthy, 5000), "Healthy");
        is_int(answered_by(18082, 10, rv6), 10, "the public listener: 10 of 10 answers from the new version");
        is_int(get_on(18083, "/", "").status, 0, "the preview listener is closed");
        /* Their going after scaleDownDelay is the same code as a canary's (test above). */
        is_int(count_state(ro_svc, old, "ready"), 2, "the old guests are kept (scaleDownDelay 1h)");
        is_int(count_state(ro_svc, rv6, "ready"), 2, "and the new version keeps its 2 replicas");
}

/* ---- setup ---- */

static int kernel_file(void) {
        char path[4200];
        int fd;
        if (blobfiles_path(m.blobs, kernel_digest, path, sizeof path) < 0)
                return -1;
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -1;
        char zeros[4096] = {};
        (void) !write(fd, zeros, sizeof zeros);
        close(fd);
        return 0;
}

int main(void) {
        char path[256];

        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root (a network namespace of its own for the bridge)\n");
                return 0;
        }
        /* Before any thread exists: the whole test lives in a namespace of its own. */
        if (unshare(CLONE_NEWNET) < 0) {
                printf("1..0 # SKIP cannot make a network namespace: %s\n", strerror(errno));
                return 0;
        }
        unsetenv("NOTIFY_SOCKET");
        ok(run_cmd((const char *const[]) { "ip", "link", "set", "lo", "up", NULL }) == 0 &&
                   run_cmd((const char *const[]) { "ip", "route", "add", "local", "10.88.0.0/24", "dev", "lo", "table",
                                                   "local", NULL }) == 0,
           "a network namespace of the test's own: lo up, the guest subnet local");
        if (!mkdtemp(state_dir) || sd_event_new(&loop) < 0)
                return 1;
        settings_init_defaults(&m.settings);
        m.settings.state_dir = strdup(state_dir);
        m.settings.libvirt_uri = strdup("test:///default");
        m.settings.bridge = strdup("aviary0");
        m.settings.subnet = strdup("10.88.0.0/24");
        snprintf(m.settings.accel, sizeof m.settings.accel, "tcg");
        m.settings.proxy_threads = 2; /* not one per CPU: test_drain() counts on two */
        snprintf(path, sizeof path, "%s/aviary.db", state_dir);
        if (store_open(path, &m.store) < 0 || blobfiles_open(state_dir, &m.blobs) < 0)
                return 1;
        ok(fake_listen(&fake, "0.0.0.0", 8080) == 8080 && fake_start(&fake) == 0, "fake guests on every address, :8080");

        fix_digest("the kernel", kernel_digest);
        v1 = fix_version(m.store, "app", "1", 8080, 4096, kernel_digest);
        rv2 = fix_version(m.store, "app", "2", 8080, 4096, kernel_digest);
        rv3 = fix_version(m.store, "app", "3", 8099, 4096, kernel_digest); /* nothing listens there */
        rv4 = fix_version(m.store, "app", "4", 8080, 4096, kernel_digest);
        rv5 = fix_version(m.store, "app", "5", 8080, 4096, kernel_digest);
        rv6 = fix_version(m.store, "app", "6", 8080, 4096, kernel_digest);
        ok(v1 && rv2 && rv3 && rv4 && rv5 && rv6 && kernel_file() == 0, "versions and their kernel blob file");
        web = fix_service(m.store, "web", "127.0.0.1:18080", v1, 2, NULL, 250, 1, 3);
        ro_svc = fix_service(m.store, "ro", "127.0.0.1:18082", v1, 2, NULL, 250, 1, 3);

        ControllerContext ctx = { .event = loop, .store = m.store, .blobs = m.blobs, .settings = &m.settings };
        is_int(controller_new(&ctx, &m.controller), 0, "controller_new");
        is_int(controller_start(m.controller), 0, "controller_start: bridge, libvirt's test driver, the first pass");
        other = virConnectOpen("test:///default");
        ok(other != NULL, "a second connection to the same test driver");

        test_boot();
        test_changed_passes();
        test_paused();
        test_backoff_and_crash_loop();
        test_reset_after_60s();
        test_policies();
        test_crash_loop_is_final();
        test_drain();
        test_promote_and_scale_down_delay();
        test_deadline_and_abort_delay();
        test_canary_paused();
        test_analysis_fails();
        test_blue_green();

        virConnectClose(other);
        m.controller = controller_free(m.controller);
        fake_stop(&fake);
        blobfiles_free(m.blobs);
        store_close(m.store);
        settings_done(&m.settings);
        sd_event_unref(loop);
        snprintf(path, sizeof path, "rm -rf %s", state_dir);
        (void) !system(path);
        return tap_done();
}
